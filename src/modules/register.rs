//! XEP-0077: In-Band Registration
//!
//! Owns `jabber:iq:register`: account creation before authentication
//! ([`preauth_register`], called by the connection, only when `registration.allow` is on),
//! and for logged-in users ([`RegisterModule`]) the registration status, password change and
//! account removal.
//!
//! - Before authentication: get returns the fields (`<instructions/>`, `<username/>`,
//!   `<password/>`); set with both creates the account. A taken username gets `conflict`;
//!   a missing field, an empty password (§3.1), a password over [`MAX_PASSWORD_BYTES`] or a
//!   username that is not a valid JID localpart gets `not-acceptable`; `<remove/>` gets
//!   `unexpected-request` (§3.2: nobody is registered yet on this stream). With registration
//!   off, everything gets `service-unavailable` (§3.1).
//! - Logged in (to the own account or to its domain): get answers `<registered/>` with the
//!   username. A set with `<username/>` (the user's own) and `<password/>` changes the
//!   password, also when registration is off (§3.3); a missing or empty field gets
//!   `bad-request` and keeps the old password. A set with `<remove/>` as the only child
//!   deletes the account and closes its sessions (§3.2), also when registration is off.
//!   Another user's name, or any request to another account, gets `forbidden`.
//! - Error replies built here never carry the request payload back (§3.3: it holds a
//!   password).

use crate::auth::credentials::StoredCredentials;
use crate::jid::Jid;
use crate::modules::services::storage_failed;
use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext};
use crate::proto::{ns, Stanza, StanzaError};
use crate::xml::Element;

/// Longest password accepted, in bytes (the limit RFC 7622 sets on JID parts, a sane bound
/// for a PBKDF2 input).
pub const MAX_PASSWORD_BYTES: usize = 1023;

const INSTRUCTIONS: &str = "Choose a username and password for use with this service.";
const REGISTERED_INSTRUCTIONS: &str =
    "You are registered. Send a new password to change it, or <remove/> to delete the account.";

/// The registration module for logged-in users. `allow` mirrors `registration.allow` and
/// decides whether the server advertises `jabber:iq:register`; password change and removal
/// work either way.
pub struct RegisterModule {
    pub allow: bool,
}

impl Module for RegisterModule {
    fn name(&self) -> &'static str {
        "register"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("query", ns::REGISTER)]
    }

    /// Advertised whether or not sign-up is open: a logged-in user can always change the
    /// password (XEP-0077 §3.3), and clients such as Conversations offer that only when they
    /// see this feature. Sign-up itself is announced by the stream feature.
    fn server_features(&self) -> &'static [&'static str] {
        &[ns::REGISTER]
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        handle_logged_in(ctx, req, derive_credentials)
    }
}

/// SCRAM credentials for a new password.
///
/// Derive SCRAM credentials for a new password.
fn derive_credentials(password: &str) -> Result<StoredCredentials, StanzaError> {
    Ok(StoredCredentials::derive(
        password,
        crate::auth::credentials::DEFAULT_ITERATIONS,
    ))
}

/// How the module turns a password into stored credentials (tests pass a cheap one).
type Derive = fn(&str) -> Result<StoredCredentials, StanzaError>;

/// Answer a `jabber:iq:register` IQ received before authentication on a stream to `domain`.
/// Returns the reply stanza (a result or an error, never echoing the request payload).
pub fn preauth_register(ctx: &ModuleContext, domain: &str, request: &Stanza) -> Stanza {
    preauth_with(ctx, domain, request, derive_credentials)
}

fn preauth_with(ctx: &ModuleContext, domain: &str, request: &Stanza, derive: Derive) -> Stanza {
    match preauth_answer(ctx, domain, request, derive) {
        Ok(payload) => request.iq_result(payload),
        Err(e) => {
            let mut reply = e.reply_to(request);
            reply
                .el_mut()
                .remove_children(|c| !c.is("error", ns::CLIENT));
            reply
        }
    }
}

fn preauth_answer(ctx: &ModuleContext, domain: &str, request: &Stanza, derive: Derive) -> IqResult {
    if !ctx.config.registration.allow || !ctx.config.hosts(domain) {
        return Err(StanzaError::service_unavailable());
    }
    let is_set = match request.type_attr() {
        Some("get") => false,
        Some("set") => true,
        _ => return Err(StanzaError::bad_request()),
    };
    let query = match request.iq_payload() {
        Some(q) if q.is("query", ns::REGISTER) => q,
        _ => return Err(StanzaError::service_unavailable()),
    };
    if !is_set {
        return Ok(Some(
            Element::new("query", ns::REGISTER)
                .with_child(Element::new("instructions", ns::REGISTER).with_text(INSTRUCTIONS))
                .with_child(Element::new("username", ns::REGISTER))
                .with_child(Element::new("password", ns::REGISTER)),
        ));
    }
    if query.child("remove", ns::REGISTER).is_some() {
        return Err(StanzaError::unexpected_request().with_text("not registered"));
    }
    let (Some(username), Some(password)) = (
        query.child_text("username", ns::REGISTER),
        query.child_text("password", ns::REGISTER),
    ) else {
        return Err(StanzaError::not_acceptable().with_text("username and password are required"));
    };
    let account = Jid::from_parts(Some(&username), domain, None)
        .map_err(|_| StanzaError::not_acceptable().with_text("this username is not allowed"))?;
    check_password(&password).map_err(|e| e.with_text(password_rule()))?;
    let account = account.bare_string();
    let fail = |e| storage_failed("register", e);
    // Deriving keys is costly: refuse a taken name before doing it.
    if ctx
        .storage
        .get_credentials(&account)
        .map_err(fail)?
        .is_some()
    {
        return Err(StanzaError::conflict());
    }
    let creds = derive(&password)?;
    if !ctx.storage.create_account(&account, &creds).map_err(fail)? {
        return Err(StanzaError::conflict());
    }
    tracing::info!(%account, "account registered in-band");
    Ok(None)
}

fn password_rule() -> String {
    format!("a password must be 1 to {MAX_PASSWORD_BYTES} bytes long")
}

/// Empty (or absent text) and over-long passwords are refused with `not-acceptable`.
fn check_password(password: &str) -> Result<(), StanzaError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(StanzaError::not_acceptable());
    }
    Ok(())
}

fn handle_logged_in(ctx: &ModuleContext, req: &IqRequest<'_>, derive: Derive) -> IqResult {
    let own = req.from.to_bare();
    match &req.target {
        IqTarget::Account(_) if !req.is_self() => return Err(StanzaError::forbidden()),
        IqTarget::Server(domain) if domain.domain() != own.domain() => {
            return Err(StanzaError::service_unavailable())
        }
        _ => {}
    }
    let Some(username) = own.node() else {
        return Err(StanzaError::forbidden());
    };
    let account = own.bare_string();
    let fail = |e| storage_failed("register", e);

    if !req.is_set {
        return Ok(Some(
            Element::new("query", ns::REGISTER)
                .with_child(
                    Element::new("instructions", ns::REGISTER).with_text(REGISTERED_INSTRUCTIONS),
                )
                .with_child(Element::new("registered", ns::REGISTER))
                .with_child(Element::new("username", ns::REGISTER).with_text(username))
                .with_child(Element::new("password", ns::REGISTER)),
        ));
    }

    if req.payload.child("remove", ns::REGISTER).is_some() {
        if req.payload.elements().count() != 1 {
            return Err(StanzaError::bad_request().with_text("<remove/> must be alone"));
        }
        if !ctx.storage.delete_account(&account).map_err(fail)? {
            return Err(StanzaError::registration_required());
        }
        tracing::info!(%account, "account removed in-band");
        ctx.server.close_account_sessions(&own);
        return Ok(None);
    }

    let (Some(asked), Some(password)) = (
        req.payload.child_text("username", ns::REGISTER),
        req.payload.child_text("password", ns::REGISTER),
    ) else {
        return Err(StanzaError::bad_request().with_text("username and password are required"));
    };
    if !names_account(&asked, &own) {
        return Err(StanzaError::forbidden().with_text("you can only change your own password"));
    }
    if password.is_empty() {
        return Err(StanzaError::bad_request().with_text(password_rule()));
    }
    check_password(&password).map_err(|e| e.with_text(password_rule()))?;
    let creds = derive(&password)?;
    if !ctx
        .storage
        .set_credentials(&account, &creds)
        .map_err(fail)?
    {
        return Err(StanzaError::registration_required());
    }
    tracing::info!(%account, "password changed in-band");
    Ok(None)
}

/// `<username/>` names the account: its localpart, or its bare JID (as some clients send).
fn names_account(asked: &str, own: &Jid) -> bool {
    let parsed = if asked.contains('@') {
        Jid::parse(asked)
    } else {
        Jid::from_parts(Some(asked), own.domain(), None)
    };
    parsed.is_ok_and(|j| j.is_bare() && &j == own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::*;
    use crate::storage::Storage;
    use std::sync::Arc;

    fn fake_derive(password: &str) -> Result<StoredCredentials, StanzaError> {
        Ok(fake_credentials(password))
    }

    fn reg_config(allow: bool) -> crate::config::Config {
        let mut c = config();
        c.registration.allow = allow;
        c
    }

    fn query(children: Vec<Element>) -> Element {
        let mut q = Element::new("query", ns::REGISTER);
        for c in children {
            q.push_child(c);
        }
        q
    }

    fn field(name: &'static str, value: &str) -> Element {
        Element::new(name, ns::REGISTER).with_text(value)
    }

    fn preauth_iq(is_set: bool, payload: Element) -> Stanza {
        Stanza(
            Element::new("iq", ns::CLIENT)
                .with_attr("type", if is_set { "set" } else { "get" })
                .with_attr("id", "reg1")
                .with_child(payload),
        )
    }

    fn preauth(h: &Harness, is_set: bool, payload: Element) -> Stanza {
        preauth_with(
            &h.ctx,
            "example.org",
            &preauth_iq(is_set, payload),
            fake_derive,
        )
    }

    fn error_condition(reply: &Stanza) -> Option<String> {
        assert_eq!(reply.type_attr(), Some("error"), "{}", reply.el());
        // The payload (with a password in it) is never sent back.
        assert!(reply.el().child("query", ns::REGISTER).is_none());
        reply
            .el()
            .child("error", ns::CLIENT)?
            .elements()
            .find(|e| e.ns == ns::STANZAS_ERR && e.name != "text")
            .map(|e| e.name.to_string())
    }

    fn creds(h: &Harness, account: &str) -> Option<StoredCredentials> {
        h.store.get_credentials(account).expect("storage")
    }

    fn signup(user: &str, password: &str) -> Element {
        query(vec![field("username", user), field("password", password)])
    }

    #[test]
    fn declares_payload_and_features() {
        let on = RegisterModule { allow: true };
        let off = RegisterModule { allow: false };
        assert_eq!(on.iq_payloads(), &[("query", ns::REGISTER)]);
        // Advertised either way: password change is always available.
        assert_eq!(on.server_features(), &[ns::REGISTER]);
        assert_eq!(off.server_features(), &[ns::REGISTER]);
        assert!(on.account_features().is_empty());
    }

    #[test]
    fn preauth_get_lists_the_fields() {
        let h = harness(reg_config(true));
        let reply = preauth(&h, false, query(vec![]));
        assert_eq!(reply.type_attr(), Some("result"));
        assert_eq!(reply.id(), Some("reg1"));
        let q = reply.el().child("query", ns::REGISTER).expect("query");
        let names: Vec<&str> = q.elements().map(|e| &*e.name).collect();
        assert_eq!(names, ["instructions", "username", "password"]);
    }

    #[test]
    fn preauth_set_creates_the_account() {
        let h = harness(reg_config(true));
        let reply = preauth(&h, true, signup("Juliet", "R0m30"));
        assert_eq!(reply.type_attr(), Some("result"), "{}", reply.el());
        assert_eq!(reply.el().elements().count(), 0);
        assert_eq!(
            creds(&h, "juliet@example.org"),
            Some(fake_credentials("R0m30"))
        );
    }

    #[test]
    fn preauth_refuses_when_registration_is_off_or_domain_not_hosted() {
        let h = harness(reg_config(false));
        for (is_set, q) in [(false, query(vec![])), (true, signup("juliet", "pw"))] {
            assert_eq!(
                error_condition(&preauth(&h, is_set, q)).as_deref(),
                Some("service-unavailable")
            );
        }
        assert_eq!(creds(&h, "juliet@example.org"), None);
        let h = harness(reg_config(true));
        let reply = preauth_with(
            &h.ctx,
            "elsewhere.example",
            &preauth_iq(false, query(vec![])),
            fake_derive,
        );
        assert_eq!(
            error_condition(&reply).as_deref(),
            Some("service-unavailable")
        );
    }

    #[test]
    fn preauth_taken_username_is_a_conflict() {
        let h = harness(reg_config(true));
        h.add_account("juliet@example.org");
        let reply = preauth(&h, true, signup("JULIET", "other"));
        assert_eq!(error_condition(&reply).as_deref(), Some("conflict"));
        assert_eq!(
            creds(&h, "juliet@example.org"),
            Some(fake_credentials("initial"))
        );
    }

    #[test]
    fn preauth_bad_fields_are_not_acceptable() {
        let h = harness(reg_config(true));
        let long = "p".repeat(MAX_PASSWORD_BYTES + 1);
        for q in [
            query(vec![field("username", "juliet")]),
            query(vec![field("password", "pw")]),
            query(vec![
                field("username", "juliet"),
                Element::new("password", ns::REGISTER),
            ]),
            signup("juliet", &long),
            signup("", "pw"),
            signup("jul iet", "pw"),
            signup("juliet@example.org", "pw"),
            signup("a/b", "pw"),
            signup(&"u".repeat(1024), "pw"),
        ] {
            let reply = preauth(&h, true, q.clone());
            assert_eq!(
                error_condition(&reply).as_deref(),
                Some("not-acceptable"),
                "{q}"
            );
        }
        assert!(h.store.accounts.lock().expect("lock").is_empty());
        // The longest password allowed is fine.
        let ok = preauth(&h, true, signup("juliet", &"p".repeat(MAX_PASSWORD_BYTES)));
        assert_eq!(ok.type_attr(), Some("result"));
    }

    #[test]
    fn preauth_remove_is_unexpected() {
        let h = harness(reg_config(true));
        let reply = preauth(&h, true, query(vec![Element::new("remove", ns::REGISTER)]));
        assert_eq!(
            error_condition(&reply).as_deref(),
            Some("unexpected-request")
        );
    }

    #[test]
    fn preauth_wrong_payload_or_type() {
        let h = harness(reg_config(true));
        let reply = preauth(&h, false, Element::new("query", ns::VERSION));
        assert_eq!(
            error_condition(&reply).as_deref(),
            Some("service-unavailable")
        );
        let mut iq = preauth_iq(false, query(vec![]));
        iq.el_mut().set_attr("type", "result");
        let reply = preauth_with(&h.ctx, "example.org", &iq, fake_derive);
        assert_eq!(error_condition(&reply).as_deref(), Some("bad-request"));
    }

    #[test]
    fn preauth_storage_failure_is_an_internal_error() {
        let h = harness(reg_config(true)).with_storage(Arc::new(BrokenStore));
        let reply = preauth(&h, true, signup("juliet", "pw"));
        assert_eq!(
            error_condition(&reply).as_deref(),
            Some("internal-server-error")
        );
    }

    fn logged_in(h: &Harness, to: Option<&str>, is_set: bool, payload: Element) -> IqResult {
        let stanza = iq("juliet@example.org/balcony", to, is_set, payload);
        let payload = stanza.iq_payload().expect("payload").clone();
        let req = IqRequest {
            stanza: &stanza,
            from: jid("juliet@example.org/balcony"),
            target: target_of("juliet@example.org/balcony", to),
            payload: &payload,
            is_set,
        };
        handle_logged_in(&h.ctx, &req, fake_derive)
    }

    #[test]
    fn logged_in_get_says_registered() {
        let h = harness(reg_config(false));
        h.add_account("juliet@example.org");
        for to in [None, Some("example.org"), Some("juliet@example.org")] {
            let q = call(
                &RegisterModule { allow: false },
                &h.ctx,
                "juliet@example.org/balcony",
                to,
                false,
                query(vec![]),
            )
            .expect("result")
            .expect("payload");
            assert!(q.child("registered", ns::REGISTER).is_some());
            assert_eq!(
                q.child_text("username", ns::REGISTER).as_deref(),
                Some("juliet")
            );
        }
    }

    #[test]
    fn password_change_works_with_registration_off() {
        let h = harness(reg_config(false));
        h.add_account("juliet@example.org");
        for (n, user) in ["juliet", "Juliet", "juliet@example.org"]
            .iter()
            .enumerate()
        {
            let pw = format!("new{n}");
            let r = logged_in(&h, Some("example.org"), true, signup(user, &pw));
            assert_eq!(r, Ok(None), "{user}");
            assert_eq!(creds(&h, "juliet@example.org"), Some(fake_credentials(&pw)));
        }
        assert!(h.server.closed.lock().expect("lock").is_empty());
    }

    #[test]
    fn password_change_errors_keep_the_old_password() {
        let h = harness(reg_config(true));
        h.add_account("juliet@example.org");
        let long = "p".repeat(MAX_PASSWORD_BYTES + 1);
        for (q, expected) in [
            (query(vec![field("password", "x")]), "bad-request"),
            (query(vec![field("username", "juliet")]), "bad-request"),
            (signup("juliet", ""), "bad-request"),
            (signup("juliet", &long), "not-acceptable"),
            (signup("romeo", "x"), "forbidden"),
            (signup("juliet@other.example", "x"), "forbidden"),
            (signup("juliet@example.org/balcony", "x"), "forbidden"),
            (signup("jul iet", "x"), "forbidden"),
        ] {
            assert_eq!(
                condition(logged_in(&h, None, true, q.clone())),
                expected,
                "{q}"
            );
        }
        assert_eq!(
            creds(&h, "juliet@example.org"),
            Some(fake_credentials("initial"))
        );
    }

    #[test]
    fn requests_about_other_accounts_are_forbidden() {
        let h = harness(reg_config(true));
        h.add_account("juliet@example.org");
        h.add_account("romeo@example.org");
        for is_set in [false, true] {
            let r = logged_in(&h, Some("romeo@example.org"), is_set, signup("romeo", "x"));
            assert_eq!(condition(r), "forbidden");
        }
        let r = logged_in(&h, Some("other.example"), false, query(vec![]));
        assert_eq!(condition(r), "service-unavailable");
        assert_eq!(
            creds(&h, "romeo@example.org"),
            Some(fake_credentials("initial"))
        );
    }

    #[test]
    fn remove_deletes_the_account_and_closes_sessions() {
        let h = harness(reg_config(false));
        h.add_account("juliet@example.org");
        let module = RegisterModule { allow: false };
        let r = call(
            &module,
            &h.ctx,
            "juliet@example.org/balcony",
            None,
            true,
            query(vec![Element::new("remove", ns::REGISTER)]),
        );
        assert_eq!(r, Ok(None));
        assert_eq!(creds(&h, "juliet@example.org"), None);
        assert_eq!(
            *h.server.closed.lock().expect("lock"),
            vec![jid("juliet@example.org")]
        );
        // Again: the account is gone.
        let r = call(
            &module,
            &h.ctx,
            "juliet@example.org/balcony",
            None,
            true,
            query(vec![Element::new("remove", ns::REGISTER)]),
        );
        assert_eq!(condition(r), "registration-required");
    }

    #[test]
    fn remove_must_be_alone() {
        let h = harness(reg_config(true));
        h.add_account("juliet@example.org");
        let r = call(
            &RegisterModule { allow: true },
            &h.ctx,
            "juliet@example.org/balcony",
            None,
            true,
            query(vec![
                Element::new("remove", ns::REGISTER),
                field("username", "juliet"),
            ]),
        );
        assert_eq!(condition(r), "bad-request");
        assert!(creds(&h, "juliet@example.org").is_some());
        assert!(h.server.closed.lock().expect("lock").is_empty());
    }
}
