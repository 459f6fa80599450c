//! XEP-0352: Client State Indication (`urn:xmpp:csi:0`). While a client says it is
//! `<inactive/>`, its connection task holds back what can wait; `<active/>` sends it all.
//!
//! What is held, and what goes at once:
//! - Presence broadcasts (available and unavailable): held, only the latest per sender (full
//!   JID) is kept, so a contact who changes status ten times costs one stanza on `<active/>`.
//!   Subscription requests and answers, probes and presence errors go at once.
//! - Messages that carry nothing but chat states (XEP-0085), with or without hints, delay,
//!   stanza ids or a thread: held, only the latest per sender, and dropped when a message that
//!   matters arrives from that sender (the chat state is stale by then). Carbon copies and
//!   forwarded messages are judged by the message inside.
//! - Everything else (messages with a body, subject, encrypted payload or any other content,
//!   errors, IQs): delivered at once. Held stanzas are not sent along with them.
//!
//! The state is per stream: a new or resumed stream starts active (XEP-0352 §5), so the
//! connection task flushes on resumption. At most [`MAX_HELD`] stanzas are held; past that
//! everything is flushed.

use crate::proto::{ns, Stanza, StanzaKind};

/// `urn:xmpp:csi:0`.
pub const NS: &str = "urn:xmpp:csi:0";
/// Most stanzas held for one inactive client before they are all sent.
pub const MAX_HELD: usize = 1000;

const FORWARD: &str = "urn:xmpp:forward:0";
const CARBONS: &str = "urn:xmpp:carbons:2";
/// Payloads that do not make a message worth waking a phone for.
const NOT_CONTENT: &[&str] = &[
    ns::CHATSTATES,
    "urn:xmpp:hints",
    ns::DELAY,
    "urn:xmpp:sid:0",
    ns::RECEIPTS,
    ns::CHAT_MARKERS,
];

/// The client state of one stream.
#[derive(Debug, Default)]
pub struct CsiState {
    inactive: bool,
    /// Held stanzas with the sender they are kept per, oldest first.
    held: Vec<(String, Stanza)>,
}

impl CsiState {
    pub fn is_inactive(&self) -> bool {
        self.inactive
    }

    /// `<inactive/>`.
    pub fn set_inactive(&mut self) {
        self.inactive = true;
    }

    /// `<active/>` (or a new stream): everything held, in order.
    pub fn set_active(&mut self) -> Vec<Stanza> {
        self.inactive = false;
        self.held.drain(..).map(|(_, s)| s).collect()
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// A stanza about to be written: `Some` to write it now, `None` when it is held. May
    /// return held stanzas to write first when the limit is reached.
    pub fn filter(&mut self, stanza: Stanza) -> (Vec<Stanza>, Option<Stanza>) {
        if !self.inactive {
            return (Vec::new(), Some(stanza));
        }
        let sender = stanza.attr("from").unwrap_or("").to_string();
        match classify(&stanza) {
            Class::Urgent => {
                if stanza.kind() == StanzaKind::Message {
                    // A stale chat state from this sender is not worth sending any more.
                    self.held
                        .retain(|(from, s)| !(from == &sender && s.kind() == StanzaKind::Message));
                }
                (Vec::new(), Some(stanza))
            }
            Class::Presence | Class::ChatState => {
                let kind = stanza.kind();
                self.held
                    .retain(|(from, s)| !(from == &sender && s.kind() == kind));
                self.held.push((sender, stanza));
                if self.held.len() > MAX_HELD {
                    return (self.held.drain(..).map(|(_, s)| s).collect(), None);
                }
                (Vec::new(), None)
            }
        }
    }
}

enum Class {
    Urgent,
    Presence,
    ChatState,
}

fn classify(stanza: &Stanza) -> Class {
    match stanza.kind() {
        StanzaKind::Iq => Class::Urgent,
        StanzaKind::Presence => match stanza.type_attr() {
            None | Some("unavailable") => Class::Presence,
            _ => Class::Urgent,
        },
        StanzaKind::Message => {
            if stanza.is_error() || message_has_content(stanza.el()) {
                Class::Urgent
            } else {
                Class::ChatState
            }
        }
    }
}

/// Whether a message carries anything besides chat states and such (looking inside carbons
/// and forwards).
fn message_has_content(msg: &crate::xml::Element) -> bool {
    let mut saw_chat_state = false;
    for child in msg.elements() {
        if child.ns == ns::CHATSTATES {
            saw_chat_state = true;
            continue;
        }
        if NOT_CONTENT.contains(&&*child.ns) || child.is("thread", ns::CLIENT) {
            continue;
        }
        if child.ns == CARBONS && matches!(&*child.name, "received" | "sent") {
            let inner = child
                .child("forwarded", FORWARD)
                .and_then(|f| f.child("message", ns::CLIENT));
            match inner {
                Some(m) if !message_has_content(m) => {
                    saw_chat_state = true;
                    continue;
                }
                _ => return true,
            }
        }
        return true;
    }
    // A message with no payload at all is odd but harmless to deliver.
    !saw_chat_state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parser::parse_element;

    fn st(xml: &str) -> Stanza {
        Stanza::from_element(parse_element(xml).unwrap()).unwrap()
    }

    #[test]
    fn active_passes_everything() {
        let mut c = CsiState::default();
        let (f, s) = c.filter(st("<presence xmlns='jabber:client' from='a@x/1'/>"));
        assert!(f.is_empty() && s.is_some());
    }

    #[test]
    fn inactive_keeps_latest_presence_per_sender_and_flushes_in_order() {
        let mut c = CsiState::default();
        c.set_inactive();
        for (from, show) in [("a@x/1", "away"), ("b@x/1", "dnd"), ("a@x/1", "xa")] {
            let p = st(&format!(
                "<presence xmlns='jabber:client' from='{from}'><show>{show}</show></presence>"
            ));
            assert!(c.filter(p).1.is_none());
        }
        let sub = st("<presence xmlns='jabber:client' from='c@x' type='subscribe'/>");
        assert!(c.filter(sub).1.is_some());
        let iq = st("<iq xmlns='jabber:client' from='x' type='get' id='1'/>");
        assert!(c.filter(iq).1.is_some());
        let out = c.set_active();
        let shows: Vec<_> = out
            .iter()
            .map(|s| s.el().child_text("show", ns::CLIENT).unwrap())
            .collect();
        assert_eq!(shows, ["dnd", "xa"]);
        assert!(!c.is_inactive());
    }

    #[test]
    fn messages_with_content_go_at_once_and_chat_states_wait() {
        let mut c = CsiState::default();
        c.set_inactive();
        let cs = "<message xmlns='jabber:client' from='a@x/1'><composing xmlns='http://jabber.org/protocol/chatstates'/><no-store xmlns='urn:xmpp:hints'/></message>";
        assert!(c.filter(st(cs)).1.is_none());
        let other = "<message xmlns='jabber:client' from='b@x/1'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>";
        assert!(c.filter(st(other)).1.is_none());
        let body = "<message xmlns='jabber:client' from='a@x/1'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
        assert!(c.filter(st(body)).1.is_some());
        let enc = "<message xmlns='jabber:client' from='d@x/1'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>";
        assert!(c.filter(st(enc)).1.is_some());
        let carbon_cs = "<message xmlns='jabber:client' from='me@x'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><gone xmlns='http://jabber.org/protocol/chatstates'/></message></forwarded></received></message>";
        assert!(c.filter(st(carbon_cs)).1.is_none());
        let carbon_body = "<message xmlns='jabber:client' from='me@x'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>x</body></message></forwarded></sent></message>";
        assert!(c.filter(st(carbon_body)).1.is_some());
        // a's chat state was dropped by a's message, the carbon's by the carbon with a body
        // (same sender); b's is kept.
        let out = c.set_active();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].attr("from"), Some("b@x/1"));
    }

    #[test]
    fn limit_flushes_everything() {
        let mut c = CsiState::default();
        c.set_inactive();
        for i in 0..MAX_HELD {
            let p = st(&format!(
                "<presence xmlns='jabber:client' from='u{i}@x/1'/>"
            ));
            assert!(c.filter(p).0.is_empty());
        }
        let (flushed, now) = c.filter(st("<presence xmlns='jabber:client' from='last@x/1'/>"));
        assert!(now.is_none());
        assert_eq!(flushed.len(), MAX_HELD + 1);
        assert_eq!(c.held_len(), 0);
    }
}
