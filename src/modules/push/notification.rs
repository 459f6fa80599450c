//! What is worth a push notification, and the XEP-0357 §7 publish request that carries one.
//! Pure functions: no storage, no routing.
//!
//! # Worth a notification ([`is_important`])
//! A message (not of type `error` or `headline`, not a MAM result) with a non-empty
//! `<body/>`, or with an encrypted payload a server cannot look into (OMEMO
//! `eu.siacs.conversations.axolotl`, `urn:xmpp:omemo:1`/`:2`, XEP-0373 `openpgp`, XEP-0027
//! `jabber:x:encrypted`), or a XEP-0353 call proposal (`<propose/>`). A group chat subject
//! change is not. A `<received/>` carbon is judged by the message it carries; a `<sent/>`
//! carbon (the user's own words) never is. Chat states, receipts and markers alone are not.
//!
//! # The publish request ([`publish_iq`])
//! ```xml
//! <iq type='set' from='example.org' to='push.app.example' id='push-…'>
//!   <pubsub xmlns='http://jabber.org/protocol/pubsub'>
//!     <publish node='…'><item><notification xmlns='urn:xmpp:push:0'>
//!       <x xmlns='jabber:x:data' type='submit'>
//!         FORM_TYPE urn:xmpp:push:summary, message-count,
//!         last-message-sender (unless turned off), last-message-body (only if turned on)
//!       </x>
//!     </notification></item></publish>
//!     <publish-options><x …>(the form given at enable time)</x></publish-options>
//!   </pubsub>
//! </iq>
//! ```
//! `from` is the account's domain: XEP-0357 0.3 moved the notification's sender from the
//! user's JID to the server's, and Prosody's mod_cloud_notify does the same. The body is cut
//! to [`MAX_BODY_CHARS`] characters (push payloads are small: APNs takes 4 KiB).

use crate::jid::Jid;
use crate::modules::carbons;
use crate::modules::pep::PUBSUB;
use crate::proto::{ns, Stanza, StanzaKind};
use crate::xml::Element;

use super::registrations::Registration;
use super::NS;

/// `urn:xmpp:push:summary`.
pub const SUMMARY: &str = "urn:xmpp:push:summary";
/// Longest `last-message-body` sent, in characters.
pub const MAX_BODY_CHARS: usize = 512;

const ENCRYPTED: &[(&str, &str)] = &[
    ("encrypted", "eu.siacs.conversations.axolotl"),
    ("encrypted", "urn:xmpp:omemo:1"),
    ("encrypted", "urn:xmpp:omemo:2"),
    ("openpgp", "urn:xmpp:openpgp:0"),
    ("x", "jabber:x:encrypted"),
];
const JINGLE_MESSAGE: &str = "urn:xmpp:jingle-message:0";

/// The message a notification is about: the stanza itself, or the one a `<received/>` carbon
/// carries. `None` when the stanza is not worth a notification.
pub fn is_important(stanza: &Stanza) -> Option<&Element> {
    if stanza.kind() != StanzaKind::Message {
        return None;
    }
    let mut el = stanza.el();
    if el.child("sent", carbons::NS).is_some() {
        return None;
    }
    if let Some(received) = el.child("received", carbons::NS) {
        el = received
            .child("forwarded", carbons::NS_FORWARD)?
            .child("message", ns::CLIENT)?;
    }
    if matches!(el.attr("type"), Some("error" | "headline")) {
        return None;
    }
    if el.child("result", crate::modules::mam::NS).is_some()
        || el.child("result", crate::modules::mam::NS1).is_some()
    {
        return None;
    }
    if ENCRYPTED.iter().any(|(n, ns)| el.child(n, ns).is_some())
        || el.child("propose", JINGLE_MESSAGE).is_some()
    {
        return Some(el);
    }
    if el.attr("type") == Some("groupchat") && el.child("subject", ns::CLIENT).is_some() {
        return None;
    }
    let body = el.child_text("body", ns::CLIENT)?;
    (!body.trim().is_empty()).then_some(el)
}

/// What one notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Messages since the device was last seen (XEP-0357 `message-count`).
    pub count: u32,
    pub sender: Option<String>,
    pub body: Option<String>,
}

impl Summary {
    /// The summary of `message` (as returned by [`is_important`]), with what the configuration
    /// allows.
    pub fn of(message: &Element, count: u32, with_sender: bool, with_body: bool) -> Summary {
        let sender = with_sender
            .then(|| message.attr("from").map(str::to_string))
            .flatten();
        let body = with_body
            .then(|| message.child_text("body", ns::CLIENT))
            .flatten()
            .filter(|b| !b.trim().is_empty())
            .map(|b| match b.char_indices().nth(MAX_BODY_CHARS) {
                Some((cut, _)) => b[..cut].to_string(),
                None => b,
            });
        Summary {
            count,
            sender,
            body,
        }
    }
}

fn field(var: &str, value: &str) -> Element {
    Element::new("field", ns::DATA_FORMS)
        .with_attr("var", var)
        .with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
}

/// The `urn:xmpp:push:summary` form.
pub fn summary_form(s: &Summary) -> Element {
    let mut x = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "submit")
        .with_child(field("FORM_TYPE", SUMMARY).with_attr("type", "hidden"))
        .with_child(field("message-count", &s.count.to_string()));
    if let Some(sender) = &s.sender {
        x.push_child(field("last-message-sender", sender));
    }
    if let Some(body) = &s.body {
        x.push_child(field("last-message-body", body));
    }
    x
}

/// The pubsub publish IQ to the registration's app server, from the account's domain.
pub fn publish_iq(domain: &Jid, reg: &Registration, summary: &Summary, id: &str) -> Stanza {
    let notification = Element::new("notification", NS).with_child(summary_form(summary));
    let publish = Element::new("publish", PUBSUB)
        .with_opt_attr("node", reg.node.as_deref())
        .with_child(Element::new("item", PUBSUB).with_child(notification));
    let mut pubsub = Element::new("pubsub", PUBSUB).with_child(publish);
    if let Some(options) = &reg.options {
        pubsub.push_child(Element::new("publish-options", PUBSUB).with_child(options.clone()));
    }
    Stanza(
        Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("from", domain.to_string())
            .with_attr("to", reg.jid.to_string())
            .with_attr("id", id)
            .with_child(pubsub),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::pep::node::form_fields;

    fn msg(xml: &str) -> Stanza {
        Stanza::from_element(crate::xml::parser::parse_element(xml).unwrap()).unwrap()
    }

    const C: &str = "xmlns='jabber:client'";

    #[test]
    fn bodies_and_encrypted_payloads_are_important() {
        let yes = [
            format!("<message {C} type='chat'><body>hi</body></message>"),
            format!("<message {C}><body>normal</body></message>"),
            format!("<message {C} type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted></message>"),
            format!("<message {C} type='chat'><encrypted xmlns='urn:xmpp:omemo:2'/></message>"),
            format!("<message {C} type='chat'><openpgp xmlns='urn:xmpp:openpgp:0'>x</openpgp></message>"),
            format!("<message {C}><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>"),
            format!("<message {C} type='groupchat'><body>all</body></message>"),
        ];
        for m in &yes {
            assert!(is_important(&msg(m)).is_some(), "{m}");
        }
        let no = [
            format!("<message {C} type='chat'/>"),
            format!("<message {C} type='chat'><body>  </body></message>"),
            format!("<message {C} type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"),
            format!("<message {C}><received xmlns='urn:xmpp:receipts' id='1'/></message>"),
            format!("<message {C} type='headline'><body>news</body></message>"),
            format!("<message {C} type='error'><body>x</body></message>"),
            format!("<message {C} type='groupchat'><subject>topic</subject><body>x</body></message>"),
            format!("<message {C}><result xmlns='urn:xmpp:mam:2' id='1'/><body>x</body></message>"),
            format!("<presence {C}/>"),
            format!("<iq {C} type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"),
        ];
        for m in &no {
            assert!(is_important(&msg(m)).is_none(), "{m}");
        }
    }

    #[test]
    fn carbons_are_judged_by_what_they_carry() {
        let wrap = |kind: &str, inner: &str| {
            msg(&format!(
                "<message {C} from='a@x' to='a@x/phone'><{kind} xmlns='urn:xmpp:carbons:2'>\
                 <forwarded xmlns='urn:xmpp:forward:0'>{inner}</forwarded></{kind}></message>"
            ))
        };
        let with_body = format!("<message {C} from='b@x/pc' type='chat'><body>yo</body></message>");
        let state_only = format!(
            "<message {C} from='b@x/pc' type='chat'><gone xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
        let received = wrap("received", &with_body);
        let inner = is_important(&received).expect("a received carbon with a body");
        assert_eq!(inner.attr("from"), Some("b@x/pc"));
        assert!(is_important(&wrap("received", &state_only)).is_none());
        assert!(is_important(&wrap("sent", &with_body)).is_none());
        // A plain message carrying the carbons <private/> hint is still judged by its body.
        assert!(is_important(&msg(&format!(
            "<message {C} type='chat'><body>p</body><private xmlns='urn:xmpp:carbons:2'/></message>"
        )))
        .is_some());
    }

    fn reg(node: Option<&str>, options: Option<Element>) -> Registration {
        Registration {
            jid: Jid::parse("push.app.example").unwrap(),
            node: node.map(str::to_string),
            options,
            since: 1,
        }
    }

    #[test]
    fn summary_follows_the_configuration() {
        let m = msg(&format!(
            "<message {C} from='juliet@capulet.example/balcony' type='chat'><body>Wherefore art thou?</body></message>"
        ));
        let el = is_important(&m).unwrap();
        let s = Summary::of(el, 3, true, false);
        assert_eq!(s.count, 3);
        assert_eq!(s.sender.as_deref(), Some("juliet@capulet.example/balcony"));
        assert_eq!(s.body, None, "no body unless configured");
        let s = Summary::of(el, 1, false, true);
        assert_eq!(s.sender, None);
        assert_eq!(s.body.as_deref(), Some("Wherefore art thou?"));
        // Long bodies are cut on a character boundary.
        let long = "é".repeat(MAX_BODY_CHARS + 10);
        let m = msg(&format!(
            "<message {C} from='a@x'><body>{long}</body></message>"
        ));
        let s = Summary::of(is_important(&m).unwrap(), 1, true, true);
        assert_eq!(s.body.unwrap().chars().count(), MAX_BODY_CHARS);
        // An encrypted message has no body to send even when bodies are allowed.
        let m = msg(&format!(
            "<message {C} from='a@x'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>"
        ));
        assert_eq!(
            Summary::of(is_important(&m).unwrap(), 1, true, true).body,
            None
        );
    }

    #[test]
    fn publish_iq_has_the_summary_form_node_and_publish_options() {
        let options = crate::xml::parser::parse_element(
            "<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='secret'><value>eruio234vzxc2kla-91</value></field></x>",
        )
        .unwrap();
        let summary = Summary {
            count: 2,
            sender: Some("juliet@capulet.example/balcony".into()),
            body: None,
        };
        let domain = Jid::parse("example.org").unwrap();
        let iq = publish_iq(
            &domain,
            &reg(Some("yxs32"), Some(options.clone())),
            &summary,
            "n12",
        );
        assert_eq!(iq.type_attr(), Some("set"));
        assert_eq!(iq.attr("from"), Some("example.org"));
        assert_eq!(iq.attr("to"), Some("push.app.example"));
        assert_eq!(iq.id(), Some("n12"));
        let pubsub = iq.el().child("pubsub", PUBSUB).unwrap();
        let publish = pubsub.child("publish", PUBSUB).unwrap();
        assert_eq!(publish.attr("node"), Some("yxs32"));
        let x = publish
            .child("item", PUBSUB)
            .and_then(|i| i.child("notification", NS))
            .and_then(|n| n.child("x", ns::DATA_FORMS))
            .unwrap();
        assert_eq!(x.attr("type"), Some("submit"));
        let fields = form_fields(x);
        let get = |v: &str| {
            fields
                .iter()
                .find(|(var, _)| var == v)
                .map(|(_, vals)| vals.clone())
        };
        assert_eq!(get("FORM_TYPE"), Some(vec![SUMMARY.to_string()]));
        assert_eq!(get("message-count"), Some(vec!["2".to_string()]));
        assert_eq!(
            get("last-message-sender"),
            Some(vec!["juliet@capulet.example/balcony".to_string()])
        );
        assert_eq!(get("last-message-body"), None);
        let po = pubsub
            .child("publish-options", PUBSUB)
            .and_then(|p| p.child("x", ns::DATA_FORMS))
            .unwrap();
        assert_eq!(po, &options);
        // Serialised, it parses back to the same element (escaping is the writer's job).
        let again = crate::xml::parser::parse_element(&iq.el().to_string()).unwrap();
        assert_eq!(&again, iq.el());

        // Without a node or options: no node attribute, no publish-options.
        let iq = publish_iq(&domain, &reg(None, None), &summary, "n13");
        let pubsub = iq.el().child("pubsub", PUBSUB).unwrap();
        assert_eq!(pubsub.child("publish", PUBSUB).unwrap().attr("node"), None);
        assert!(pubsub.child("publish-options", PUBSUB).is_none());
    }
}
