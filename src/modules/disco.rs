//! XEP-0030: Service Discovery
//!
//! Owns disco#info and disco#items answered by the server: on a hosted domain (identity
//! server/im, every module's server features, and the XEP-0157 contact addresses as a
//! XEP-0128 extended-info form) and on behalf of an account's bare JID (identity
//! account/registered and the account features).
//!
//! Access to an account's disco#info follows XEP-0030 §8 (security considerations): the
//! answer goes to the account itself and to entities the account shares its presence with
//! (a roster item with subscription `from` or `both`); everyone else, and any request about an
//! account that does not exist, gets `service-unavailable`, so the reply never tells a
//! stranger whether an account exists. disco#items on an account is always an empty list
//! (no items are published yet, and §8 requires an empty list for strangers anyway).
//!
//! No nodes are published: a request with a non-empty `node` gets `item-not-found` (on an
//! account, only once the requester passed the access check).

use crate::modules::services::storage_failed;
use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext};
use crate::proto::{ns, StanzaError};
use crate::xml::Element;

/// FORM_TYPE of the XEP-0157 contact-address form.
pub const SERVERINFO_FORM_TYPE: &str = "http://jabber.org/network/serverinfo";

/// The name in the server's identity.
pub const SERVER_NAME: &str = "Oriole";

pub struct DiscoModule;

const FEATURES: &[&str] = &[ns::DISCO_INFO, ns::DISCO_ITEMS];

impl Module for DiscoModule {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("query", ns::DISCO_INFO), ("query", ns::DISCO_ITEMS)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        FEATURES
    }

    fn account_features(&self) -> &'static [&'static str] {
        FEATURES
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        if req.is_set {
            return Err(StanzaError::bad_request().with_text("disco queries are type get"));
        }
        let node = req.payload.attr("node").filter(|n| !n.is_empty());
        let info = req.payload.ns == ns::DISCO_INFO;
        match (&req.target, info) {
            (IqTarget::Server(_), true) => {
                let info = server_info(ctx);
                match node {
                    None => Ok(Some(info)),
                    // XEP-0115 §6.2: the caps node#ver we advertise must be answerable.
                    Some(n) if n == caps_node(&info) => Ok(Some(info.with_attr("node", n))),
                    Some(_) => Err(StanzaError::item_not_found()),
                }
            }
            (IqTarget::Server(host), false) => {
                if node.is_some() {
                    return Err(StanzaError::item_not_found());
                }
                // Internal components of this domain (XEP-0030 §4: services as items).
                let mut q = Element::new("query", ns::DISCO_ITEMS);
                for s in crate::components::services_of_host(&ctx.config, host.domain()) {
                    q.push_child(
                        Element::new("item", ns::DISCO_ITEMS)
                            .with_attr("jid", s.domain)
                            .with_attr("name", s.name),
                    );
                }
                Ok(Some(q))
            }
            (IqTarget::Account(_), true) => {
                if !may_see_account(ctx, req)? {
                    return Err(StanzaError::service_unavailable());
                }
                if node.is_some() {
                    return Err(StanzaError::item_not_found());
                }
                Ok(Some(account_info(ctx)))
            }
            (IqTarget::Account(_), false) => Ok(Some(
                Element::new("query", ns::DISCO_ITEMS).with_opt_attr("node", node),
            )),
        }
    }
}

fn feature(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).with_attr("var", var)
}

fn server_info(ctx: &ModuleContext) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "server")
            .with_attr("type", "im")
            .with_attr("name", SERVER_NAME),
    );
    for f in ctx.server_features.iter() {
        q.push_child(feature(f));
    }
    let server = &ctx.config.server;
    let abuse = server.abuse_addresses();
    let fields = [
        ("abuse-addresses", &abuse),
        ("admin-addresses", &server.admin_contacts),
        ("security-addresses", &server.security_contacts),
        ("support-addresses", &server.support_contacts),
    ];
    if fields.iter().any(|(_, list)| !list.is_empty()) {
        q.push_child(contact_form(&fields));
    }
    q
}

/// The XEP-0157 form (XEP-0128 extended information) listing the contact addresses, one
/// field per kind that has any.
fn contact_form(fields: &[(&str, &Vec<String>)]) -> Element {
    let value = |v: &str| Element::new("value", ns::DATA_FORMS).with_text(v);
    let mut form = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "result")
        .with_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", "FORM_TYPE")
                .with_attr("type", "hidden")
                .with_child(value(SERVERINFO_FORM_TYPE)),
        );
    for (var, addresses) in fields.iter().filter(|(_, l)| !l.is_empty()) {
        let mut field = Element::new("field", ns::DATA_FORMS).with_attr("var", *var);
        for a in addresses.iter() {
            field.push_child(value(a));
        }
        form.push_child(field);
    }
    form
}

/// The node URI of Oriole's entity capabilities (XEP-0115).
pub const CAPS_NODE: &str = "urn:oriole:server";

/// `node#ver` for a disco#info answer.
fn caps_node(info: &Element) -> String {
    format!("{CAPS_NODE}#{}", caps_ver(info))
}

/// The XEP-0115 §5.1 verification string of a disco#info `<query/>`, hashed with SHA-1 and
/// base64-encoded.
pub fn caps_ver(info: &Element) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut identities: Vec<String> = info
        .elements()
        .filter(|e| e.is("identity", ns::DISCO_INFO))
        .map(|e| {
            format!(
                "{}/{}/{}/{}<",
                e.attr("category").unwrap_or(""),
                e.attr("type").unwrap_or(""),
                e.attr("xml:lang").unwrap_or(""),
                e.attr("name").unwrap_or("")
            )
        })
        .collect();
    identities.sort();
    let mut features: Vec<&str> = info
        .elements()
        .filter(|e| e.is("feature", ns::DISCO_INFO))
        .filter_map(|e| e.attr("var"))
        .collect();
    features.sort_unstable();
    let mut s = identities.concat();
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    // (FORM_TYPE, [(var, values)]) per form, each part sorted as §5.1 requires.
    type Fields = Vec<(String, Vec<String>)>;
    let mut forms: Vec<(String, Fields)> = Vec::new();
    for form in info.elements().filter(|e| e.is("x", ns::DATA_FORMS)) {
        let mut form_type = String::new();
        let mut fields = Vec::new();
        for field in form.elements().filter(|e| e.is("field", ns::DATA_FORMS)) {
            let var = field.attr("var").unwrap_or("").to_string();
            let mut values: Vec<String> = field
                .elements()
                .filter(|e| e.is("value", ns::DATA_FORMS))
                .map(|v| v.text())
                .collect();
            if var == "FORM_TYPE" {
                form_type = values.first().cloned().unwrap_or_default();
                continue;
            }
            values.sort();
            fields.push((var, values));
        }
        fields.sort();
        forms.push((form_type, fields));
    }
    forms.sort();
    for (form_type, fields) in forms {
        s.push_str(&form_type);
        s.push('<');
        for (var, values) in fields {
            s.push_str(&var);
            s.push('<');
            for v in values {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
}

/// The `<c/>` element advertising the server's own capabilities as a stream feature
/// (XEP-0115 §6.3).
pub fn server_caps(ctx: &ModuleContext) -> Element {
    let info = server_info(ctx);
    Element::new("c", "http://jabber.org/protocol/caps")
        .with_attr("hash", "sha-1")
        .with_attr("node", CAPS_NODE)
        .with_attr("ver", caps_ver(&info))
}

fn account_info(ctx: &ModuleContext) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "account")
            .with_attr("type", "registered"),
    );
    // XEP-0163 §6.1: an account with a PEP service is also a pubsub/pep entity.
    if ctx
        .account_features
        .contains(&crate::modules::pep::PEP_FEATURE)
    {
        q.push_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "pubsub")
                .with_attr("type", "pep"),
        );
    }
    for f in ctx.account_features.iter() {
        q.push_child(feature(f));
    }
    q
}

/// XEP-0030 §8: the account itself, or a contact the account shares presence with, provided
/// the account exists.
fn may_see_account(ctx: &ModuleContext, req: &IqRequest<'_>) -> Result<bool, StanzaError> {
    if req.is_self() {
        return Ok(true);
    }
    let IqTarget::Account(account) = &req.target else {
        return Ok(false);
    };
    let account = account.bare_string();
    let fail = |e| storage_failed("disco", e);
    let roster = ctx.storage.get_roster(&account).map_err(fail)?;
    let shares_presence = roster
        .items
        .get(&req.from.bare_string())
        .is_some_and(|item| item.subscription.has_from());
    Ok(shares_presence
        && ctx
            .storage
            .get_credentials(&account)
            .map_err(fail)?
            .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::*;
    use crate::storage::{RosterItem, Subscription};
    use std::sync::Arc;

    fn info() -> Element {
        Element::new("query", ns::DISCO_INFO)
    }

    fn items() -> Element {
        Element::new("query", ns::DISCO_ITEMS)
    }

    fn features(q: &Element) -> Vec<String> {
        q.elements()
            .filter(|e| e.is("feature", ns::DISCO_INFO))
            .filter_map(|e| e.attr("var").map(String::from))
            .collect()
    }

    fn identity(q: &Element) -> (String, String) {
        let id = q.child("identity", ns::DISCO_INFO).expect("identity");
        (
            id.attr("category").unwrap_or_default().into(),
            id.attr("type").unwrap_or_default().into(),
        )
    }

    fn share_presence(h: &Harness, account: &str, contact: &str, sub: Subscription) {
        use crate::storage::Storage;
        h.store
            .put_roster_item(
                account,
                &RosterItem {
                    jid: contact.into(),
                    subscription: sub,
                    ..Default::default()
                },
            )
            .expect("roster");
    }

    #[test]
    fn declares_payloads_and_features() {
        let m = DiscoModule;
        assert_eq!(
            m.iq_payloads(),
            &[("query", ns::DISCO_INFO), ("query", ns::DISCO_ITEMS)]
        );
        assert_eq!(m.server_features(), &[ns::DISCO_INFO, ns::DISCO_ITEMS]);
        assert_eq!(m.account_features(), &[ns::DISCO_INFO, ns::DISCO_ITEMS]);
    }

    #[test]
    fn server_info_has_identity_and_every_feature() {
        let h = harness(config());
        let q = call(
            &DiscoModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            false,
            info(),
        )
        .expect("result")
        .expect("payload");
        assert!(q.is("query", ns::DISCO_INFO));
        assert_eq!(identity(&q), ("server".into(), "im".into()));
        let id = q.child("identity", ns::DISCO_INFO).expect("identity");
        assert_eq!(id.attr("name"), Some("Oriole"));
        let f = features(&q);
        let expected: Vec<String> = h
            .ctx
            .server_features
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(f, expected);
        for needed in [
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            ns::PING,
            ns::VERSION,
            ns::TIME,
        ] {
            assert!(f.iter().any(|x| x == needed), "{needed} missing");
        }
        // Nothing configured: only the RFC 2142 abuse mailbox of the first domain.
        let x = q.child("x", ns::DATA_FORMS).expect("contact form");
        let fields: Vec<&Element> = x.elements().collect();
        assert_eq!(fields.len(), 2, "FORM_TYPE and abuse-addresses only");
        assert_eq!(fields[1].attr("var"), Some("abuse-addresses"));
        let first = h.ctx.config.server.domains[0].clone();
        assert_eq!(
            fields[1].child_text("value", ns::DATA_FORMS),
            Some(format!("mailto:abuse@{first}"))
        );
    }

    #[test]
    fn an_empty_abuse_list_publishes_no_form() {
        let mut cfg = config();
        cfg.server.abuse_contacts = Some(Vec::new());
        let h = harness(cfg);
        let q = call(
            &DiscoModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            false,
            info(),
        )
        .expect("result")
        .expect("payload");
        assert!(q.child("x", ns::DATA_FORMS).is_none());
    }

    #[test]
    fn server_info_publishes_admin_contacts() {
        let mut cfg = config();
        cfg.server.abuse_contacts = Some(Vec::new());
        cfg.server.admin_contacts = vec![
            "mailto:admin@example.org".into(),
            "xmpp:admin@example.org".into(),
        ];
        let h = harness(cfg);
        let q = call(
            &DiscoModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            false,
            info(),
        )
        .expect("result")
        .expect("payload");
        let x = q.child("x", ns::DATA_FORMS).expect("form");
        assert_eq!(x.attr("type"), Some("result"));
        let fields: Vec<&Element> = x.elements().collect();
        assert_eq!(fields[0].attr("var"), Some("FORM_TYPE"));
        assert_eq!(fields[0].attr("type"), Some("hidden"));
        assert_eq!(
            fields[0].child_text("value", ns::DATA_FORMS).as_deref(),
            Some(SERVERINFO_FORM_TYPE)
        );
        assert_eq!(fields[1].attr("var"), Some("admin-addresses"));
        let values: Vec<String> = fields[1].elements().map(|v| v.text()).collect();
        assert_eq!(
            values,
            ["mailto:admin@example.org", "xmpp:admin@example.org"]
        );
    }

    #[test]
    fn nodes_are_not_found_on_the_server() {
        let h = harness(config());
        for q in [info(), items()] {
            let r = call(
                &DiscoModule,
                &h.ctx,
                "a@example.org/r",
                Some("example.org"),
                false,
                q.with_attr("node", "x"),
            );
            assert_eq!(condition(r), "item-not-found");
        }
        // An empty node is treated as no node.
        let r = call(
            &DiscoModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            false,
            info().with_attr("node", ""),
        );
        assert!(r.is_ok());
    }

    #[test]
    fn server_items_list_the_components_of_the_domain() {
        let server_items = |cfg| {
            let h = harness(cfg);
            call(
                &DiscoModule,
                &h.ctx,
                "a@example.org/r",
                Some("example.org"),
                false,
                items(),
            )
            .expect("result")
            .expect("payload")
        };
        let q = server_items(config());
        assert!(q.is("query", ns::DISCO_ITEMS));
        let jids: Vec<_> = q.elements().filter_map(|i| i.attr("jid")).collect();
        assert_eq!(
            jids,
            [
                "conference.example.org",
                "upload.example.org",
                "proxy.example.org"
            ]
        );
        let mut off = config();
        off.muc.enabled = false;
        off.upload.enable = false;
        off.proxy65.enable = false;
        assert_eq!(server_items(off).elements().count(), 0);
    }

    #[test]
    fn set_is_a_bad_request() {
        let h = harness(config());
        let r = call(
            &DiscoModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            true,
            info(),
        );
        assert_eq!(condition(r), "bad-request");
    }

    #[test]
    fn owner_gets_account_info() {
        let h = harness(config());
        h.add_account("a@example.org");
        for to in [None, Some("a@example.org")] {
            let q = call(&DiscoModule, &h.ctx, "a@example.org/r", to, false, info())
                .expect("result")
                .expect("payload");
            assert_eq!(identity(&q), ("account".into(), "registered".into()));
            let expected: Vec<String> = h
                .ctx
                .account_features
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(features(&q), expected);
            assert!(features(&q).iter().any(|f| f == ns::DISCO_INFO));
        }
    }

    #[test]
    fn contact_with_presence_subscription_gets_account_info() {
        let h = harness(config());
        h.add_account("a@example.org");
        share_presence(&h, "a@example.org", "b@remote.example", Subscription::From);
        let q = call(
            &DiscoModule,
            &h.ctx,
            "b@remote.example/x",
            Some("a@example.org"),
            false,
            info(),
        )
        .expect("result")
        .expect("payload");
        assert_eq!(identity(&q), ("account".into(), "registered".into()));
    }

    #[test]
    fn strangers_and_missing_accounts_get_service_unavailable() {
        let h = harness(config());
        h.add_account("a@example.org");
        // Subscription the wrong way: a receives b's presence, not the other way round.
        share_presence(&h, "a@example.org", "b@example.org", Subscription::To);
        for (from, to) in [
            ("b@example.org/r", "a@example.org"),
            ("c@remote.example/r", "a@example.org"),
            ("c@remote.example/r", "nobody@example.org"),
        ] {
            let r = call(&DiscoModule, &h.ctx, from, Some(to), false, info());
            assert_eq!(condition(r), "service-unavailable", "{from} -> {to}");
        }
        // A stale roster entry of a deleted account does not reveal anything either.
        share_presence(&h, "gone@example.org", "b@example.org", Subscription::Both);
        let r = call(
            &DiscoModule,
            &h.ctx,
            "b@example.org/r",
            Some("gone@example.org"),
            false,
            info(),
        );
        assert_eq!(condition(r), "service-unavailable");
    }

    #[test]
    fn account_info_node_is_not_found_for_the_owner() {
        let h = harness(config());
        h.add_account("a@example.org");
        let r = call(
            &DiscoModule,
            &h.ctx,
            "a@example.org/r",
            None,
            false,
            info().with_attr("node", "n"),
        );
        assert_eq!(condition(r), "item-not-found");
        let r = call(
            &DiscoModule,
            &h.ctx,
            "c@remote.example/r",
            Some("a@example.org"),
            false,
            info().with_attr("node", "n"),
        );
        assert_eq!(condition(r), "service-unavailable");
    }

    #[test]
    fn account_items_are_empty_for_everyone() {
        let h = harness(config());
        h.add_account("a@example.org");
        for from in ["a@example.org/r", "c@remote.example/r"] {
            let q = call(
                &DiscoModule,
                &h.ctx,
                from,
                Some("a@example.org"),
                false,
                items(),
            )
            .expect("result")
            .expect("payload");
            assert!(q.is("query", ns::DISCO_ITEMS));
            assert_eq!(q.elements().count(), 0);
        }
        let q = call(
            &DiscoModule,
            &h.ctx,
            "c@remote.example/r",
            Some("nobody@example.org"),
            false,
            items().with_attr("node", "n"),
        )
        .expect("result")
        .expect("payload");
        assert_eq!(q.attr("node"), Some("n"), "node mirrored");
    }

    #[test]
    fn storage_failure_is_an_internal_error() {
        let h = harness(config()).with_storage(Arc::new(BrokenStore));
        let r = call(
            &DiscoModule,
            &h.ctx,
            "c@remote.example/r",
            Some("a@example.org"),
            false,
            info(),
        );
        assert_eq!(condition(r), "internal-server-error");
    }

    #[test]
    fn caps_ver_matches_the_xep_0115_simple_example() {
        // XEP-0115 §5.2: identity client/pc//Exodus 0.9.1 and four features.
        let info = Element::new("query", ns::DISCO_INFO)
            .with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "client")
                    .with_attr("type", "pc")
                    .with_attr("name", "Exodus 0.9.1"),
            )
            .with_child(feature("http://jabber.org/protocol/caps"))
            .with_child(feature("http://jabber.org/protocol/disco#info"))
            .with_child(feature("http://jabber.org/protocol/disco#items"))
            .with_child(feature("http://jabber.org/protocol/muc"));
        assert_eq!(caps_ver(&info), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }
}
