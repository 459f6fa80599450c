//! The three stanza kinds and cheap accessors the router needs (`to`, `from`, `type`, `id`).
//! Payloads stay as [`Element`]s and are parsed late by the module that owns them.

use crate::jid::Jid;
use crate::proto::ns;
use crate::xml::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

/// A stanza: an element in `jabber:client` named message, presence or iq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza(pub Element);

impl Stanza {
    /// Wrap an element if it is a stanza.
    pub fn from_element(el: Element) -> Result<Stanza, Element> {
        if el.ns == ns::CLIENT && matches!(&*el.name, "message" | "presence" | "iq") {
            Ok(Stanza(el))
        } else {
            Err(el)
        }
    }

    pub fn kind(&self) -> StanzaKind {
        match &*self.0.name {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            _ => StanzaKind::Iq,
        }
    }

    pub fn el(&self) -> &Element {
        &self.0
    }

    pub fn el_mut(&mut self) -> &mut Element {
        &mut self.0
    }

    pub fn into_element(self) -> Element {
        self.0
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.0.attr(name)
    }

    pub fn id(&self) -> Option<&str> {
        self.0.attr("id")
    }

    /// The `type` attribute, or the default for the kind (`normal` for messages,
    /// `available` for presence — represented as `None` here for presence).
    pub fn type_attr(&self) -> Option<&str> {
        self.0.attr("type")
    }

    /// Parsed `to`; `Ok(None)` when absent, `Err` when present but invalid.
    pub fn to(&self) -> Result<Option<Jid>, crate::jid::JidError> {
        self.0.attr("to").map(Jid::parse).transpose()
    }

    pub fn from(&self) -> Result<Option<Jid>, crate::jid::JidError> {
        self.0.attr("from").map(Jid::parse).transpose()
    }

    pub fn set_to(&mut self, to: &Jid) {
        self.set_jid_attr("to", to);
    }

    pub fn set_from(&mut self, from: &Jid) {
        self.set_jid_attr("from", from);
    }

    /// Set `to` or `from` (done for every stanza a client sends: no formatter, and the
    /// attribute's name is not allocated again when it is already there).
    fn set_jid_attr(&mut self, name: &'static str, jid: &Jid) {
        let value = jid.to_text();
        match self.0.attrs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.attrs.push((name.into(), value)),
        }
    }

    /// Whether the stanza may be answered with an error stanza: an IQ request or a message
    /// that is not itself an error (RFC 6120 §8.3.1). Presence is never answered this way.
    pub fn answerable_with_error(&self) -> bool {
        match self.kind() {
            StanzaKind::Iq => self.is_iq_request(),
            StanzaKind::Message => !self.is_error(),
            StanzaKind::Presence => false,
        }
    }

    pub fn is_error(&self) -> bool {
        self.type_attr() == Some("error")
    }

    /// An IQ of type get or set.
    pub fn is_iq_request(&self) -> bool {
        self.kind() == StanzaKind::Iq && matches!(self.type_attr(), Some("get" | "set"))
    }

    /// The single payload child of an IQ request.
    pub fn iq_payload(&self) -> Option<&Element> {
        self.0.elements().next()
    }

    /// Build an IQ result answering this request (`to`/`from` swapped, same id).
    pub fn iq_result(&self, payload: Option<Element>) -> Stanza {
        let mut el = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", self.id().unwrap_or(""));
        if let Some(from) = self.0.attr("to") {
            el.set_attr("from", from);
        }
        if let Some(to) = self.0.attr("from") {
            el.set_attr("to", to);
        }
        if let Some(p) = payload {
            el.push_child(p);
        }
        Stanza(el)
    }
}

/// A new stanza element.
pub fn new(kind: StanzaKind) -> Element {
    Element::new(
        match kind {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
        },
        ns::CLIENT,
    )
}
