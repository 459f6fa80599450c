//! A stanza serialised once and shared by many recipients (MUC fan-out).
//!
//! A room message to 1,000 occupants differs between recipients only in its `to`. A
//! [`SharedStanza`] holds the stanza without `to` and its `jabber:client` serialisation; each
//! recipient's queue gets an `Arc` of it (one pointer, not a copy), and the connection task
//! writes the bytes before and after the point where `to='…'` goes, with its own full JID in
//! between. Anything that is not a local client stream (offline storage, a future s2s link)
//! calls [`SharedStanza::to_stanza`] to get an ordinary stanza with `to` set.

use std::sync::Arc;

use crate::jid::Jid;
use crate::proto::{ns, Stanza};
use crate::xml::{escape_attr, Element};

/// A stanza without `to`, serialised once.
#[derive(Debug)]
pub struct SharedStanza {
    el: Element,
    xml: String,
    /// Byte offset just after the element name (`<message`), where `to` is inserted.
    split: usize,
}

impl SharedStanza {
    /// Serialise `el` (its `to` is removed) for sharing.
    pub fn new(mut el: Element) -> Arc<SharedStanza> {
        el.remove_attr("to");
        let mut xml = String::with_capacity(el.approx_size() + 16);
        el.write_to(&mut xml, ns::CLIENT);
        let split = 1 + el.name.len();
        Arc::new(SharedStanza { el, xml, split })
    }

    /// The element (without `to`).
    pub fn el(&self) -> &Element {
        &self.el
    }

    /// Append the serialisation addressed to `to` (for a `jabber:client` stream).
    pub fn write_to(&self, out: &mut String, to: &Jid) {
        out.push_str(&self.xml[..self.split]);
        out.push_str(" to='");
        // The JID's parts are written one by one: no string is built per recipient.
        if let Some(node) = to.node() {
            escape_attr(node, out);
            out.push('@');
        }
        escape_attr(to.domain(), out);
        if let Some(resource) = to.resource() {
            out.push('/');
            escape_attr(resource, out);
        }
        out.push('\'');
        out.push_str(&self.xml[self.split..]);
    }

    /// An ordinary stanza addressed to `to` (a copy).
    pub fn to_stanza(&self, to: &Jid) -> Stanza {
        let mut el = self.el.clone();
        el.set_attr("to", to.to_string());
        Stanza(el)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_same_bytes_as_the_stanza_with_to() {
        let el = Element::new("message", ns::CLIENT)
            .with_attr("from", "room@conference.x/n'ck")
            .with_attr("type", "groupchat")
            .with_child(Element::new("body", ns::CLIENT).with_text("a < b"));
        let shared = SharedStanza::new(el);
        let to = Jid::parse("u@x/r&1").expect("jid");
        let mut out = String::new();
        shared.write_to(&mut out, &to);
        let mut expected = String::new();
        shared
            .to_stanza(&to)
            .el()
            .write_to(&mut expected, ns::CLIENT);
        // `to` comes first in ours, last in the copy; compare as parsed elements.
        let mut a = crate::xml::parser::parse_element(&out).expect("parses");
        let mut b = crate::xml::parser::parse_element(&expected).expect("parses");
        a.attrs.sort();
        b.attrs.sort();
        assert_eq!(a, b);
        assert_eq!(a.attr("to"), Some("u@x/r&1"));
    }

    #[test]
    fn empty_element_keeps_its_self_closing_form() {
        let shared = SharedStanza::new(Element::new("presence", ns::CLIENT));
        let mut out = String::new();
        shared.write_to(&mut out, &Jid::parse("a@b").expect("jid"));
        assert_eq!(out, "<presence to='a@b'/>");
    }
}
