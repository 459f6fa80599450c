//! XML for XMPP streams: the [`Element`] tree every stanza is held in, the writer that turns it
//! back into bytes with correct escaping and namespace declarations, and the incremental
//! [`parser`] that turns socket bytes into stream events.
//!
//! Nothing here does I/O. Namespaces are resolved at parse time: every element carries its own
//! namespace URI, so code never has to look at prefixes. Stanzas read from a server-to-server
//! stream (`jabber:server`) are normalised to `jabber:client` on the way in, and written back
//! as the stream's default namespace on the way out, so the router sees one namespace.

pub mod parser;

use std::fmt::Write as _;

/// Namespace of the XML `xml:` prefix (used for `xml:lang`).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// A child of an element: another element or a run of character data (already unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An XML element with its resolved namespace, attributes (qualified names, unescaped values)
/// and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name, without a prefix.
    pub name: Name,
    /// Namespace URI; empty only for elements in no namespace.
    pub ns: Name,
    /// Attributes in document order. `xmlns` declarations are not kept here; `xml:lang` is kept
    /// under that name.
    pub attrs: Vec<(Name, String)>,
    pub children: Vec<Node>,
}

/// An element's name or namespace: borrowed from the program for the names and namespaces it
/// knows (no allocation for the elements of ordinary stanzas), owned otherwise.
pub type Name = std::borrow::Cow<'static, str>;

impl Element {
    pub fn new(name: impl Into<Name>, ns: impl Into<Name>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: set an attribute.
    pub fn with_attr(mut self, name: impl Into<Name>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: set an attribute when `value` is `Some`.
    pub fn with_opt_attr(self, name: impl Into<Name>, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.with_attr(name, v),
            None => self,
        }
    }

    /// Builder: append a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: append text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, name: impl Into<Name>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(pos).1)
    }

    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Child elements, skipping text.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// First child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    pub fn child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.is(name, ns))
    }

    /// First child element in namespace `ns`, whatever its name.
    pub fn child_ns(&self, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.ns == ns)
    }

    /// Remove every child element matching `pred`; returns how many were removed.
    pub fn remove_children(&mut self, mut pred: impl FnMut(&Element) -> bool) -> usize {
        let before = self.children.len();
        self.children.retain(|n| match n {
            Node::Element(e) => !pred(e),
            Node::Text(_) => true,
        });
        before - self.children.len()
    }

    /// The concatenated direct text content.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Text of the first child `name` in `ns`.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.child(name, ns).map(|c| c.text())
    }

    /// Serialise, declaring `xmlns` wherever the namespace differs from `parent_ns`.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns='");
            escape_attr(&self.ns, out);
            out.push('\'');
        }
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            escape_attr(v, out);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_text(t, out),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }

    /// Serialise as a top-level element of a stream whose default namespace is `stream_ns`.
    /// Elements in `jabber:client` are written in the stream's namespace (`jabber:server` on
    /// s2s), so a stanza needs no translation when it crosses from one stream type to another.
    pub fn to_stream_string(&self, stream_ns: &'static str) -> String {
        let mut out = String::with_capacity(128);
        if self.ns == crate::proto::ns::CLIENT && stream_ns != crate::proto::ns::CLIENT {
            let mut copy = self.clone();
            rename_client_ns(&mut copy, stream_ns);
            copy.write_to(&mut out, stream_ns);
        } else {
            self.write_to(&mut out, stream_ns);
        }
        out
    }

    /// Total size estimate in bytes, used for limits.
    pub fn approx_size(&self) -> usize {
        let mut n = self.name.len() * 2 + 5;
        for (k, v) in &self.attrs {
            n += k.len() + v.len() + 4;
        }
        for c in &self.children {
            n += match c {
                Node::Element(e) => e.approx_size(),
                Node::Text(t) => t.len(),
            };
        }
        n
    }
}

fn rename_client_ns(el: &mut Element, to: &'static str) {
    if el.ns == crate::proto::ns::CLIENT {
        el.ns = Name::Borrowed(to);
        for c in el.elements_mut() {
            rename_client_ns(c, to);
        }
    }
}

/// Rename `from` namespace to `to` on this element and every descendant (used by the parser
/// to normalise `jabber:server` to `jabber:client`).
pub fn rename_ns(el: &mut Element, from: &str, to: &'static str) {
    if el.ns == from {
        el.ns = Name::Borrowed(to);
    }
    for c in el.elements_mut() {
        rename_ns(c, from, to);
    }
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write_to(&mut s, "");
        f.write_str(&s)
    }
}

/// Escape character data. A carriage return is written as a reference, or the reader would
/// turn it into a line feed (XML 1.0 §2.11). Text with nothing to replace (nearly all) is
/// checked 16 bytes at a time and copied whole.
pub fn escape_text(s: &str, out: &mut String) {
    if all_bytes(s, |b| {
        (b != b'&') & (b != b'<') & (b != b'>') & (b != b'\r')
    }) {
        out.push_str(s);
    } else {
        escape_with(s, out, &TEXT_ENTITIES);
    }
}

/// Escape an attribute value written between single quotes (the same shortcut).
pub fn escape_attr(s: &str, out: &mut String) {
    let plain = all_bytes(s, |b| {
        (b != b'&') & (b != b'<') & (b != b'>') & (b != b'\'') & (b != b'"') & (b >= 0x20)
    });
    if plain {
        out.push_str(s);
    } else {
        escape_with(s, out, &ATTR_ENTITIES);
    }
}

/// Whether `ok` holds for every byte of `s`. Checked 16 bytes at a time without stopping
/// early inside a block, which the compiler turns into vector instructions.
/// `ok` must be branch-free (`&`, `|` on comparisons, not `&&`, `||`) for that.
#[inline(always)]
pub(crate) fn all_bytes(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    let mut blocks = s.as_bytes().chunks_exact(16);
    for block in &mut blocks {
        if !block.iter().fold(true, |all, &b| all & ok(b)) {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| ok(b))
}

/// The entity written for each byte of character data, or "" for bytes copied as they are.
const TEXT_ENTITIES: [&str; 256] = {
    let mut t = [""; 256];
    t[b'&' as usize] = "&amp;";
    t[b'<' as usize] = "&lt;";
    t[b'>' as usize] = "&gt;";
    t[b'\r' as usize] = "&#xD;";
    t
};

/// The same for attribute values: quotes, and the white space the reader would normalise.
const ATTR_ENTITIES: [&str; 256] = {
    let mut t = TEXT_ENTITIES;
    t[b'\'' as usize] = "&apos;";
    t[b'"' as usize] = "&quot;";
    t[b'\n' as usize] = "&#xA;";
    t[b'\t' as usize] = "&#x9;";
    t
};

/// Copy `s` to `out`, replacing the bytes that have an entry in `entities` (all ASCII) and
/// copying the runs between them whole. Values are short (JIDs, ids): a look-up per byte.
fn escape_with(s: &str, out: &mut String, entities: &[&'static str; 256]) {
    out.reserve(s.len());
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let entity = entities[usize::from(b)];
        if !entity.is_empty() {
            // `i` is at an ASCII byte, so both slices end on character boundaries.
            out.push_str(&s[start..i]);
            out.push_str(entity);
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
}

/// Escape a string for use anywhere (text or attribute).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_attr(s, &mut out);
    out
}

/// Write a stream header (the opening `<stream:stream>` tag, never closed here).
pub fn stream_header(
    default_ns: &str,
    from: Option<&str>,
    to: Option<&str>,
    id: Option<&str>,
    extra_ns: &[(&str, &str)],
) -> String {
    let mut s = String::from("<?xml version='1.0'?><stream:stream xmlns='");
    escape_attr(default_ns, &mut s);
    s.push_str("' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'");
    for (prefix, ns) in extra_ns {
        let _ = write!(s, " xmlns:{prefix}='");
        escape_attr(ns, &mut s);
        s.push('\'');
    }
    for (k, v) in [("from", from), ("to", to), ("id", id)] {
        if let Some(v) = v {
            let _ = write!(s, " {k}='");
            escape_attr(v, &mut s);
            s.push('\'');
        }
    }
    s.push('>');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_namespaces_only_where_they_change() {
        let el = Element::new("message", "jabber:client")
            .with_attr("to", "a@b")
            .with_child(Element::new("body", "jabber:client").with_text("1 < 2 & 'x'"))
            .with_child(Element::new("x", "urn:x"));
        assert_eq!(
            el.to_stream_string("jabber:client"),
            "<message to='a@b'><body>1 &lt; 2 &amp; 'x'</body><x xmlns='urn:x'/></message>"
        );
    }

    #[test]
    fn client_stanzas_take_the_server_namespace_on_s2s() {
        let el = Element::new("message", "jabber:client")
            .with_child(Element::new("body", "jabber:client").with_text("hi"));
        assert_eq!(
            el.to_stream_string("jabber:server"),
            "<message><body>hi</body></message>"
        );
    }

    #[test]
    fn attribute_values_are_escaped() {
        let el = Element::new("a", "").with_attr("v", "x'\"<&\n");
        assert_eq!(el.to_string(), "<a v='x&apos;&quot;&lt;&amp;&#xA;'/>");
    }

    #[test]
    fn escaping_copies_runs_and_keeps_multibyte_text() {
        let mut out = String::new();
        escape_text("é<ü>&\u{1F600}'\"\t", &mut out);
        assert_eq!(out, "é&lt;ü&gt;&amp;\u{1F600}'\"\t");
        out.clear();
        escape_attr("\r\tü'", &mut out);
        assert_eq!(out, "&#xD;&#x9;ü&apos;");
        out.clear();
        escape_text("", &mut out);
        escape_attr("plain", &mut out);
        assert_eq!(out, "plain");
    }
}
