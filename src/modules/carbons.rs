//! XEP-0280: Message Carbons (`urn:xmpp:carbons:2`), with the XEP-0334 `<no-copy/>` hint.
//!
//! A client enables or disables carbons for its own session (a [`SessionFlags`] switch);
//! enabling twice or disabling twice is not an error (§8.1).
//!
//! Eligible messages (§6.1): not containing `<private xmlns='urn:xmpp:carbons:2'/>` or a
//! `<no-copy xmlns='urn:xmpp:hints'/>`, not a carbon or a MAM result itself, not of type
//! `groupchat`, `headline` or `error`, and either of type `chat`, or `normal` with a `<body/>`,
//! or carrying an IM payload (receipts XEP-0184, chat states XEP-0085, markers XEP-0333).
//! The `<private/>` element is left on the message (§7 interoperability note).
//!
//! - Sent (hook [`Direction::Sent`]): a `<sent/>` copy to each carbons-enabled session of the
//!   sender except the sending one, whether or not that one enabled carbons (§5).
//! - Received ([`Module::on_message_delivered`]): a `<received/>` copy to each
//!   carbons-enabled session of the recipient that did not get the original under RFC 6121
//!   (§4). The copy carries the archive `stanza-id` the MAM hook added.
//!
//! Copies go straight to the sessions (never through the router), wrapped as XEP-0297
//! forwards, `from` the account's bare JID, `to` the receiving session, same `type`.
//! Messages between two resources of one account are not copied.

use crate::jid::Jid;
use crate::modules::{
    Direction, Flow, HookPoint, IqRequest, IqResult, IqTarget, Module, ModuleContext,
};
use crate::proto::{ns, Stanza, StanzaError, StanzaKind};
use crate::session::SessionFlags;
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:carbons:2";
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
pub const NS_HINTS: &str = "urn:xmpp:hints";

pub struct CarbonsModule;

/// Whether a message is copied (XEP-0280 §6.1).
pub fn eligible(stanza: &Stanza) -> bool {
    let el = stanza.el();
    if el.child("private", NS).is_some() || el.child("no-copy", NS_HINTS).is_some() {
        return false;
    }
    // Never copy a carbon (a forged one from outside, or a loop) or an archive result.
    if el.child_ns(NS).is_some() || el.child("result", crate::modules::mam::NS).is_some() {
        return false;
    }
    match stanza.type_attr().unwrap_or("normal") {
        "chat" => true,
        "normal" => {
            el.child("body", ns::CLIENT).is_some()
                || el.elements().any(|c| {
                    matches!(
                        &*c.ns,
                        ns::RECEIPTS | ns::CHATSTATES | ns::CHAT_MARKERS | "jabber:x:conference"
                    )
                })
        }
        _ => false,
    }
}

/// The wrapper `<message from=bare to=full type=…><{kind} xmlns=carbons><forwarded>…`.
fn wrap(kind: &'static str, account: &Jid, to: &Jid, original: &Stanza) -> Stanza {
    let mut inner = original.el().clone();
    // The forwarded stanza keeps its own namespace declaration.
    inner.ns = ns::CLIENT.into();
    let forwarded = Element::new("forwarded", NS_FORWARD).with_child(inner);
    Stanza(
        Element::new("message", ns::CLIENT)
            .with_attr("from", account.to_string())
            .with_attr("to", to.to_string())
            .with_opt_attr("type", original.type_attr())
            .with_child(Element::new(kind, NS).with_child(forwarded)),
    )
}

fn copy_to_others(
    ctx: &ModuleContext,
    kind: &'static str,
    account: &Jid,
    stanza: &Stanza,
    exclude: &[Jid],
) {
    // One registry look-up, no allocation when no session of the account enabled carbons
    // (and no lock when no session on the server did).
    let targets = ctx.server.carbons_targets(account, exclude);
    // Checked after the cheap test above: most accounts have no other carbons session.
    if targets.is_empty() || !eligible(stanza) || same_account(stanza) {
        return;
    }
    for jid in targets {
        ctx.server
            .send_to_session(&jid, wrap(kind, account, &jid, stanza));
    }
}

fn same_account(stanza: &Stanza) -> bool {
    match (stanza.from(), stanza.to()) {
        (Ok(Some(f)), Ok(Some(t))) => f.to_bare() == t.to_bare(),
        (_, Ok(None)) => true,
        _ => false,
    }
}

impl Module for CarbonsModule {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("enable", NS), ("disable", NS)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        if !req.is_set {
            return Err(StanzaError::bad_request());
        }
        let own = match &req.target {
            IqTarget::Account(_) => req.is_self(),
            IqTarget::Server(domain) => domain.domain() == req.from.domain(),
        };
        if !own || !req.from.is_full() {
            return Err(StanzaError::forbidden());
        }
        let on = req.payload.name == "enable";
        let mut set = |f: &mut SessionFlags| f.carbons = on;
        if !ctx.server.update_session_flags(&req.from, &mut set) {
            return Err(StanzaError::not_allowed().with_text("no such session"));
        }
        Ok(None)
    }

    fn on_stanza(&self, ctx: &ModuleContext, at: HookPoint<'_>, stanza: &mut Stanza) -> Flow {
        // Eligibility is checked by `copy_to_others` once it found a carbons session.
        if at.dir == Direction::Sent && stanza.kind() == StanzaKind::Message {
            if let Some(session) = at.session {
                copy_to_others(
                    ctx,
                    "sent",
                    at.account,
                    stanza,
                    std::slice::from_ref(session),
                );
            }
        }
        Flow::Continue
    }

    fn on_message_delivered(
        &self,
        ctx: &ModuleContext,
        account: &Jid,
        stanza: &Stanza,
        delivered_to: &[Jid],
    ) {
        copy_to_others(ctx, "received", account, stanza, delivered_to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(xml: &str) -> Stanza {
        Stanza::from_element(crate::xml::parser::parse_element(xml).unwrap()).unwrap()
    }

    #[test]
    fn eligibility_rules() {
        let c = "xmlns='jabber:client'";
        assert!(eligible(&msg(&format!("<message {c} type='chat'/>"))));
        assert!(eligible(&msg(&format!(
            "<message {c}><body>x</body></message>"
        ))));
        assert!(!eligible(&msg(&format!("<message {c}/>"))));
        assert!(eligible(&msg(&format!(
            "<message {c}><received xmlns='urn:xmpp:receipts' id='1'/></message>"
        ))));
        for t in ["groupchat", "headline", "error"] {
            assert!(!eligible(&msg(&format!(
                "<message {c} type='{t}'><body>x</body></message>"
            ))));
        }
        assert!(!eligible(&msg(&format!(
            "<message {c} type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/></message>"
        ))));
        assert!(!eligible(&msg(&format!(
            "<message {c} type='chat'><body>x</body><no-copy xmlns='urn:xmpp:hints'/></message>"
        ))));
        assert!(!eligible(&msg(&format!(
            "<message {c} type='chat'><sent xmlns='urn:xmpp:carbons:2'/></message>"
        ))));
    }

    #[test]
    fn copy_is_wrapped_from_the_bare_jid() {
        let original = msg("<message xmlns='jabber:client' type='chat' from='a@x/1' to='b@x'><body>hi</body></message>");
        let account = Jid::parse("a@x").unwrap();
        let to = Jid::parse("a@x/2").unwrap();
        let w = wrap("sent", &account, &to, &original);
        assert_eq!(w.attr("from"), Some("a@x"));
        assert_eq!(w.attr("to"), Some("a@x/2"));
        assert_eq!(w.type_attr(), Some("chat"));
        let inner = w
            .el()
            .child("sent", NS)
            .and_then(|s| s.child("forwarded", NS_FORWARD))
            .and_then(|f| f.child("message", ns::CLIENT))
            .unwrap();
        assert_eq!(inner, original.el());
    }
}
