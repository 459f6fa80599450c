//! XEP-0388: Extensible SASL Profile (`urn:xmpp:sasl:2`), with what can be negotiated inline
//! in it: XEP-0386 Bind 2 (`urn:xmpp:bind:0`, with XEP-0280 carbons, XEP-0352 client state
//! and XEP-0198 `<enable/>` inside `<bind/>`), XEP-0198 `<resume/>`, and XEP-0484 FAST tokens
//! (`urn:xmpp:fast:0`). Legacy SASL (RFC 6120 §6) and resource binding stay as they are; a
//! client picks one or the other from the same stream features.
//!
//! # One `<authenticate/>`
//! 1. The mechanism runs: SCRAM or PLAIN through the same [`SaslServer`] state machines as
//!    legacy SASL (so `-PLUS`, XEP-0440 and XEP-0474 `h=` behave the same), or an HT-*
//!    mechanism with a FAST token ([`crate::auth::fast`]). `<challenge/>`/`<response/>` carry
//!    the rounds; `<failure/>` ends a failed attempt (no inline request is processed).
//! 2. FAST: a used token is promoted, invalidated on request, rotated when past half its
//!    life; `<request-token/>` issues one. Tokens belong to the account and the client's
//!    `<user-agent id/>`.
//! 3. `<resume/>` (XEP-0198) is tried first; it takes the old session over with the same
//!    machinery as legacy resumption and skips binding. A failed resumption puts its
//!    `<failed/>` in `<success/>` and binding goes on.
//! 4. `<bind/>`: the resource is `tag/suffix`, the suffix derived from the account, the
//!    user-agent id and the tag (stable for one client installation, never showing the id),
//!    or random without an id. A session of the same client on that resource is replaced.
//!    Inline carbons, CSI state and SM `<enable/>` apply before `<success/>` is sent;
//!    `<bound/>` carries the MAM archive metadata and SM's `<enabled/>`.
//! 5. `<success/>` (additional data, authorization identifier, inline results), then the
//!    stream features, without a stream restart.
//!
//! Offline messages are not cleared on Bind 2 (XEP-0386 asks for it because MAM has them):
//! an account may archive nothing, and a lost message is worse than a duplicate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{csi, sm, Connection, End, Live, Resume};
use crate::auth::fast::{self, HtMechanism, TokenRecord, Which};
use crate::auth::{Mechanism, SaslFailure, SaslServer, SaslStep};
use crate::jid::Jid;
use crate::proto::{ns, StreamError};
use crate::xml::{self, Element};

/// `urn:xmpp:sasl:2`.
pub const NS: &str = "urn:xmpp:sasl:2";
/// `urn:xmpp:bind:0` (XEP-0386).
pub const NS_BIND2: &str = "urn:xmpp:bind:0";
/// Longest Bind 2 `<tag/>` kept in a resource, in bytes.
const MAX_TAG: usize = 64;

/// How one `<authenticate/>` ended.
pub(super) enum Outcome {
    /// `<failure/>` was sent; the client may try again.
    Failed,
    /// `<success/>` and the features were sent; nothing is bound yet.
    Authenticated(Jid),
    /// A resource was bound; `<success/>` waits in the connection's output.
    Bound(Box<Live>),
    /// A session was taken over; `<success/>` surrounds `<resumed/>`.
    Resumed(Box<Live>, Resume),
}

/// `<failure xmlns='urn:xmpp:sasl:2'>` with an RFC 6120 condition and optional text.
pub fn failure_xml(f: SaslFailure, text: Option<&str>) -> String {
    let text = text
        .map(|t| format!("<text>{}</text>", xml::escape(t)))
        .unwrap_or_default();
    format!(
        "<failure xmlns='{NS}'><{} xmlns='{}'/>{text}</failure>",
        f.condition(),
        ns::SASL
    )
}

/// What the client asked for inline in `<bind/>`.
#[derive(Debug, Default)]
struct BindRequest {
    tag: Option<String>,
    carbons: bool,
    /// XEP-0352: `Some(true)` for `<active/>`, `Some(false)` for `<inactive/>`.
    active: Option<bool>,
    sm_enable: Option<Element>,
}

/// FAST parameters of an authentication with a token.
#[derive(Debug, Default)]
struct FastUse {
    count: Option<u64>,
    invalidate: bool,
}

/// A parsed `<authenticate/>`.
#[derive(Debug)]
struct Request {
    mechanism: String,
    initial: Option<Vec<u8>>,
    client_id: Option<String>,
    bind: Option<BindRequest>,
    resume: Option<Element>,
    request_token: Option<String>,
    fast: Option<FastUse>,
}

/// Decode SASL2 base64 data: empty text is empty data (no "=" special case).
fn decode(text: &str) -> Result<Vec<u8>, SaslFailure> {
    let t: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .map_err(|_| SaslFailure::IncorrectEncoding)
}

fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("true") | Some("1"))
}

impl Request {
    fn parse(el: &Element) -> Result<Request, (SaslFailure, &'static str)> {
        let mechanism = el
            .attr("mechanism")
            .filter(|m| !m.is_empty())
            .ok_or((SaslFailure::InvalidMechanism, "no mechanism named"))?
            .to_string();
        let initial = match el.child("initial-response", NS) {
            Some(i) => {
                Some(decode(&i.text()).map_err(|f| (f, "the initial response is not base64"))?)
            }
            None => None,
        };
        let client_id = el
            .child("user-agent", NS)
            .and_then(|u| u.attr("id"))
            .filter(|id| fast::valid_client_id(id))
            .map(str::to_string);
        let bind = el.child("bind", NS_BIND2).map(|b| {
            let mut r = BindRequest {
                tag: b.child_text("tag", NS_BIND2).map(|t| t.trim().to_string()),
                ..BindRequest::default()
            };
            for c in b.elements() {
                match (&*c.ns, &*c.name) {
                    (crate::modules::carbons::NS, "enable") => r.carbons = true,
                    (csi::NS, "active") => r.active = Some(true),
                    (csi::NS, "inactive") => r.active = Some(false),
                    (sm::NS, "enable") => r.sm_enable = Some(c.clone()),
                    _ => {}
                }
            }
            r
        });
        let fast_use = el.child("fast", fast::NS).map(|f| FastUse {
            count: f.attr("count").and_then(|c| c.parse().ok()),
            invalidate: is_true(f.attr("invalidate")),
        });
        Ok(Request {
            mechanism,
            initial,
            client_id,
            bind,
            resume: el.child("resume", sm::NS).cloned(),
            request_token: el
                .child("request-token", fast::NS)
                .and_then(|r| r.attr("mechanism"))
                .map(str::to_string),
            fast: fast_use,
        })
    }
}

/// A finished mechanism exchange.
struct Authed {
    /// The account (bare JID).
    jid: Jid,
    additional: Option<Vec<u8>>,
    /// With a FAST token: the updated record and which slot matched.
    token: Option<(TokenRecord, Which, u64)>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The Bind 2 resource: `tag/suffix`, or the suffix alone without a usable tag. With a
/// user-agent id the suffix is stable for (account, id, tag) and reveals nothing of the id.
pub fn bind2_resource(account: &Jid, tag: Option<&str>, client_id: Option<&str>) -> Vec<String> {
    let tag = tag
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_TAG && !t.chars().any(char::is_control));
    let suffix = match client_id {
        Some(id) => {
            let mut h = Sha256::new();
            h.update(b"oriole-bind2-resource\0");
            h.update(account.bare_string().as_bytes());
            h.update([0]);
            h.update(id.as_bytes());
            h.update([0]);
            h.update(tag.unwrap_or_default().as_bytes());
            h.finalize()[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        None => super::random_id()[..12].to_string(),
    };
    // Candidates in order of preference; the caller takes the first valid resource.
    let mut out = Vec::with_capacity(2);
    if let Some(t) = tag {
        out.push(format!("{t}/{suffix}"));
    }
    out.push(suffix);
    out
}

impl Connection {
    /// The `<authentication/>` stream feature (XEP-0388) with its inline features.
    pub(super) fn sasl2_feature(&self, offered: &[Mechanism]) -> Element {
        let mut a = Element::new("authentication", NS);
        for m in offered {
            a.push_child(Element::new("mechanism", NS).with_text(m.name()));
        }
        let mut bind_inline = Element::new("inline", NS_BIND2);
        for var in [crate::modules::carbons::NS, csi::NS, sm::NS] {
            bind_inline.push_child(Element::new("feature", NS_BIND2).with_attr("var", var));
        }
        let mut inline = Element::new("inline", NS)
            .with_child(Element::new("bind", NS_BIND2).with_child(bind_inline))
            .with_child(Element::new("sm", sm::NS));
        if self.fast_enabled() {
            let mut f = Element::new("fast", fast::NS);
            for m in HtMechanism::offered(&self.cb) {
                f.push_child(Element::new("mechanism", fast::NS).with_text(m.name()));
            }
            inline.push_child(f);
        }
        a.push_child(inline);
        a
    }

    /// FAST is configured and the connection is encrypted (XEP-0484 §Security).
    fn fast_enabled(&self) -> bool {
        self.state.config.c2s.fast_token_lifetime_secs > 0 && self.conn.is_tls()
    }

    async fn sasl2_fail(&mut self, f: SaslFailure, text: Option<&str>) -> Result<(), End> {
        self.state.auth_throttle.record_failure(self.peer.ip());
        tracing::info!(peer = %self.peer, reason = f.condition(), "SASL2 authentication failed");
        self.write(&failure_xml(f, text)).await
    }

    /// Handle one `<authenticate/>` (see the module documentation).
    pub(super) async fn sasl2(
        &mut self,
        el: &Element,
        offered: &[Mechanism],
    ) -> Result<Outcome, End> {
        let delay = self.state.auth_throttle.delay_for(self.peer.ip());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let req = match Request::parse(el) {
            Ok(r) => r,
            Err((f, text)) => {
                self.sasl2_fail(f, Some(text)).await?;
                return Ok(Outcome::Failed);
            }
        };
        let authed = match HtMechanism::from_name(&req.mechanism) {
            Some(ht) if self.fast_enabled() => self.sasl2_fast(&req, ht).await?,
            _ => self.sasl2_exchange(&req, offered).await?,
        };
        let Some(authed) = authed else {
            return Ok(Outcome::Failed);
        };
        self.state.auth_throttle.record_success(self.peer.ip());
        tracing::info!(peer = %self.peer, jid = %authed.jid, mechanism = %req.mechanism, "authenticated (SASL2)");
        let token = self.fast_after_success(&req, &authed);
        let additional = authed
            .additional
            .as_ref()
            .map(|d| {
                format!(
                    "<additional-data>{}</additional-data>",
                    base64::engine::general_purpose::STANDARD.encode(d)
                )
            })
            .unwrap_or_default();
        let head = |authz: &Jid| {
            format!(
                "<success xmlns='{NS}'>{additional}<authorization-identifier>{}</authorization-identifier>",
                xml::escape(&authz.to_string())
            )
        };
        let jid = authed.jid;
        let mut inline = String::new();

        if let Some(resume) = &req.resume {
            match self.take_over(&jid, resume).await {
                Ok((live, h)) => {
                    let before = head(&live.handle.jid);
                    let after = format!("{token}</success>{}", self.bound_features());
                    return Ok(Outcome::Resumed(
                        Box::new(live),
                        Resume { h, before, after },
                    ));
                }
                Err(condition) => inline.push_str(&sm::failed_xml(condition, None)),
            }
        }

        if let Some(b) = &req.bind {
            let full = bind2_resource(&jid, b.tag.as_deref(), req.client_id.as_deref())
                .into_iter()
                .find_map(|r| jid.with_resource(&r).ok());
            let bound = match full {
                Some(full) => self.bind_session(full).ok(),
                None => None,
            };
            if let Some(mut live) = bound {
                let full = live.handle.jid.clone();
                let mut bound = format!("<bound xmlns='{NS_BIND2}'>");
                match crate::modules::mam::archive_metadata(
                    &*self.state.storage,
                    &jid.bare_string(),
                ) {
                    Ok(md) => bound.push_str(&md.to_string()),
                    Err(e) => tracing::warn!(error = %e, "archive metadata for Bind 2"),
                }
                if b.carbons {
                    self.state
                        .sessions
                        .update(&full, |r| r.flags.carbons = true);
                }
                if b.active == Some(false) {
                    live.csi.set_inactive();
                }
                if let Some(en) = &b.sm_enable {
                    bound.push_str(&self.sm_enable(&mut live, en));
                }
                bound.push_str("</bound>");
                tracing::info!(peer = %self.peer, jid = %full, "session bound (Bind 2)");
                self.out.clear();
                self.out.push_str(&head(&full));
                self.out.push_str(&inline);
                self.out.push_str(&bound);
                self.out.push_str(&token);
                self.out.push_str("</success>");
                self.out.push_str(&self.bound_features());
                return Ok(Outcome::Bound(Box::new(live)));
            }
            tracing::info!(peer = %self.peer, jid = %jid, "Bind 2 refused (resource limit)");
        }

        let mut out = head(&jid);
        out.push_str(&inline);
        out.push_str(&token);
        out.push_str("</success>");
        out.push_str(&self.features(true, &[]));
        self.write(&out).await?;
        Ok(Outcome::Authenticated(jid))
    }

    /// Features after `<success/>` for a bound or resumed session.
    fn bound_features(&self) -> String {
        let mut s = String::from("<stream:features>");
        Element::new("sm", sm::NS).write_to(&mut s, ns::CLIENT);
        Element::new("csi", csi::NS).write_to(&mut s, ns::CLIENT);
        self.state.modules.caps.write_to(&mut s, ns::CLIENT);
        s.push_str("</stream:features>");
        s
    }

    /// SCRAM or PLAIN over SASL2, through the legacy state machines.
    async fn sasl2_exchange(
        &mut self,
        req: &Request,
        offered: &[Mechanism],
    ) -> Result<Option<Authed>, End> {
        let Some(mech) = Mechanism::from_name(&req.mechanism).filter(|m| offered.contains(m))
        else {
            self.sasl2_fail(
                SaslFailure::InvalidMechanism,
                Some("that mechanism is not offered here"),
            )
            .await?;
            return Ok(None);
        };
        let state = self.state.clone();
        let domain = self.domain.clone();
        let lookup = move |username: &str| {
            let jid = Jid::from_parts(Some(username), &domain, None).ok()?;
            state
                .storage
                .get_credentials(&jid.bare_string())
                .ok()
                .flatten()
        };
        let mut sasl = SaslServer::new(mech, self.cb.clone(), offered);
        let mut step = sasl.start(req.initial.as_deref(), &lookup);
        loop {
            match step {
                SaslStep::Challenge(data) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
                    self.write(&format!("<challenge xmlns='{NS}'>{b64}</challenge>"))
                        .await?;
                    let el = self.next_element().await?;
                    if el.is("abort", NS) {
                        self.sasl2_fail(SaslFailure::Aborted, None).await?;
                        return Ok(None);
                    }
                    if !el.is("response", NS) {
                        return Err(End::Stream(
                            StreamError::NotAuthorized,
                            Some("expected a SASL2 <response/>".into()),
                        ));
                    }
                    step = match decode(&el.text()) {
                        Ok(data) => sasl.step(&data, &lookup),
                        Err(f) => SaslStep::Failure(f),
                    };
                }
                SaslStep::Success {
                    username,
                    authzid,
                    additional_data,
                } => {
                    let Ok(jid) = Jid::from_parts(Some(&username), &self.domain, None) else {
                        self.sasl2_fail(SaslFailure::NotAuthorized, None).await?;
                        return Ok(None);
                    };
                    if let Some(z) = authzid.filter(|z| !z.is_empty()) {
                        if Jid::parse(&z).ok().as_ref() != Some(&jid) {
                            self.sasl2_fail(SaslFailure::InvalidAuthzid, None).await?;
                            return Ok(None);
                        }
                    }
                    return Ok(Some(Authed {
                        jid,
                        additional: additional_data,
                        token: None,
                    }));
                }
                SaslStep::Failure(f) => {
                    self.sasl2_fail(f, None).await?;
                    return Ok(None);
                }
            }
        }
    }

    /// An HT-* mechanism with a FAST token (one round trip).
    async fn sasl2_fast(
        &mut self,
        req: &Request,
        mech: HtMechanism,
    ) -> Result<Option<Authed>, End> {
        let Some(cb_data) = mech.cb_data(&self.cb).map(<[u8]>::to_vec) else {
            self.sasl2_fail(
                SaslFailure::InvalidMechanism,
                Some("that channel binding is not available on this connection"),
            )
            .await?;
            return Ok(None);
        };
        let Some(initial) = &req.initial else {
            self.sasl2_fail(
                SaslFailure::MalformedRequest,
                Some("HT mechanisms need an initial response"),
            )
            .await?;
            return Ok(None);
        };
        let (username, hashed) = match fast::parse_initiator(initial) {
            Ok(p) => p,
            Err(f) => {
                self.sasl2_fail(f, None).await?;
                return Ok(None);
            }
        };
        let Some(client_id) = req.client_id.as_deref() else {
            self.sasl2_fail(
                SaslFailure::NotAuthorized,
                Some("FAST needs a <user-agent/> id"),
            )
            .await?;
            return Ok(None);
        };
        let Ok(jid) = Jid::from_parts(Some(&username), &self.domain, None) else {
            self.sasl2_fail(SaslFailure::NotAuthorized, None).await?;
            return Ok(None);
        };
        let account = jid.bare_string();
        let storage = self.state.storage.clone();
        // The account must still exist (deleting it deletes its tokens, but not atomically).
        let stored = match storage.get_credentials(&account) {
            Ok(Some(_)) => storage.get_item(fast::STORE, &account, client_id),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        let mut rec = match stored {
            Ok(Some(text)) => TokenRecord::from_xml(&text).unwrap_or_else(|| {
                tracing::warn!(%account, "unreadable FAST token record; ignored");
                TokenRecord::default()
            }),
            Ok(None) => TokenRecord::default(),
            Err(e) => {
                tracing::warn!(error = %e, "FAST token lookup");
                self.sasl2_fail(SaslFailure::TemporaryAuthFailure, None)
                    .await?;
                return Ok(None);
            }
        };
        let count = req.fast.as_ref().and_then(|f| f.count);
        let now = now_secs();
        match rec.verify(
            &account,
            client_id,
            fast::Attempt {
                mechanism: mech,
                hashed: &hashed,
                cb_data: &cb_data,
                count,
            },
            now,
        ) {
            Ok(v) => {
                // Store at once: the replay counter and the slot promotion must persist even
                // if the connection breaks before <success/>.
                if let Err(e) = storage.put_item(fast::STORE, &account, client_id, &rec.to_xml()) {
                    tracing::warn!(error = %e, "FAST token update");
                    self.sasl2_fail(SaslFailure::TemporaryAuthFailure, None)
                        .await?;
                    return Ok(None);
                }
                Ok(Some(Authed {
                    jid,
                    additional: Some(v.responder),
                    token: Some((rec, v.which, v.expiry)),
                }))
            }
            Err(f) => {
                self.sasl2_fail(f, None).await?;
                Ok(None)
            }
        }
    }

    /// XEP-0484 after a successful authentication: invalidate, rotate or issue a token;
    /// returns the `<token/>` element to put in `<success/>` (or nothing).
    fn fast_after_success(&self, req: &Request, authed: &Authed) -> String {
        if !self.fast_enabled() {
            return String::new();
        }
        let Some(client_id) = req.client_id.as_deref() else {
            return String::new();
        };
        let account = authed.jid.bare_string();
        let storage = &self.state.storage;
        let lifetime = Duration::from_secs(self.state.config.c2s.fast_token_lifetime_secs);
        let now = now_secs();
        let invalidate = req.fast.as_ref().is_some_and(|f| f.invalidate);
        let (mut rec, mut changed) = match &authed.token {
            Some((rec, _, _)) => (rec.clone(), false),
            None => match storage.get_item(fast::STORE, &account, client_id) {
                Ok(text) => (
                    text.and_then(|t| TokenRecord::from_xml(&t))
                        .unwrap_or_default(),
                    false,
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "FAST token lookup");
                    return String::new();
                }
            },
        };
        let offered = HtMechanism::offered(&self.cb);
        let requested = req
            .request_token
            .as_deref()
            .and_then(HtMechanism::from_name)
            .filter(|m| offered.contains(m));
        let mut issue = requested;
        if let Some((_, which, expiry)) = &authed.token {
            if invalidate {
                rec.invalidate(*which);
                changed = true;
            } else if issue.is_none() && expiry.saturating_sub(now) <= lifetime.as_secs() / 2 {
                // Rotation: past half its life, the token is replaced (the old one keeps
                // working until the new one is used).
                issue = HtMechanism::from_name(&req.mechanism);
            }
        }
        let mut token = String::new();
        if let Some(m) = issue {
            let slot = rec.issue(m, lifetime, now);
            let expiry = UNIX_EPOCH + Duration::from_secs(slot.expiry);
            token = format!(
                "<token xmlns='{}' expiry='{}' token='{}'/>",
                fast::NS,
                sm::utc_stamp(expiry),
                xml::escape(&slot.token(&account, client_id))
            );
            changed = true;
        }
        let before = rec.clone();
        rec.prune(now);
        changed |= rec != before;
        if changed {
            let r = if rec.is_empty() {
                storage
                    .delete_item(fast::STORE, &account, client_id)
                    .map(|_| ())
            } else {
                storage.put_item(fast::STORE, &account, client_id, &rec.to_xml())
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "FAST token store");
                return String::new();
            }
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        crate::xml::parser::parse_element(xml).unwrap()
    }

    #[test]
    fn authenticate_request_parsing() {
        let el = parse(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'>\
             <initial-response>biwsbj11c2VyLHI9YWJj</initial-response>\
             <user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>x</software></user-agent>\
             <bind xmlns='urn:xmpp:bind:0'><tag>Awesome</tag><enable xmlns='urn:xmpp:carbons:2'/>\
             <inactive xmlns='urn:xmpp:csi:0'/><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>\
             <request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/></authenticate>",
        );
        let r = Request::parse(&el).unwrap();
        assert_eq!(r.mechanism, "SCRAM-SHA-256");
        assert_eq!(r.initial.as_deref(), Some(&b"n,,n=user,r=abc"[..]));
        assert_eq!(
            r.client_id.as_deref(),
            Some("d4565fa7-4d72-4749-b3d3-740edbf87770")
        );
        let b = r.bind.unwrap();
        assert_eq!(b.tag.as_deref(), Some("Awesome"));
        assert!(b.carbons);
        assert_eq!(b.active, Some(false));
        assert!(b.sm_enable.is_some());
        assert_eq!(r.request_token.as_deref(), Some("HT-SHA-256-NONE"));
        // An empty initial response is empty data; bad base64 is incorrect-encoding.
        let r = Request::parse(&parse(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response/></authenticate>",
        ))
        .unwrap();
        assert_eq!(r.initial, Some(vec![]));
        assert!(r.bind.is_none() && r.client_id.is_none());
        assert_eq!(
            Request::parse(&parse(
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>=</initial-response></authenticate>",
            ))
            .unwrap_err()
            .0,
            SaslFailure::IncorrectEncoding
        );
        assert_eq!(
            Request::parse(&parse("<authenticate xmlns='urn:xmpp:sasl:2'/>"))
                .unwrap_err()
                .0,
            SaslFailure::InvalidMechanism
        );
    }

    #[test]
    fn bind2_resources() {
        let a = Jid::parse("alice@example.org").unwrap();
        let id = "d4565fa7-4d72-4749-b3d3-740edbf87770";
        let r1 = bind2_resource(&a, Some("Awesome"), Some(id));
        assert_eq!(r1, bind2_resource(&a, Some("Awesome"), Some(id)), "stable");
        assert!(r1[0].starts_with("Awesome/"), "{r1:?}");
        assert!(!r1[0].contains(id) && !r1[0].contains("d4565fa7"));
        assert_ne!(r1, bind2_resource(&a, Some("Awesome"), Some("other-id")));
        let b = Jid::parse("bob@example.org").unwrap();
        assert_ne!(r1, bind2_resource(&b, Some("Awesome"), Some(id)));
        // Without an id: random each time.
        assert_ne!(
            bind2_resource(&a, Some("T"), None),
            bind2_resource(&a, Some("T"), None)
        );
        // A useless tag is dropped.
        assert_eq!(bind2_resource(&a, Some("  "), Some(id)).len(), 1);
        assert_eq!(bind2_resource(&a, Some(&"x".repeat(65)), None).len(), 1);
    }

    #[test]
    fn failure_element() {
        assert_eq!(
            failure_xml(SaslFailure::NotAuthorized, Some("a<b")),
            "<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><text>a&lt;b</text></failure>"
        );
    }
}
