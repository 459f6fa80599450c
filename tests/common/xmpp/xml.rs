//! A minimal XML element type and an incremental XMPP stream reader for the test client.
//!
//! Independent of the server's `oriole::xml`: it is built directly on quick-xml events and does
//! its own namespace resolution. It favours simplicity over speed: each call re-reads the
//! unconsumed tail of the buffer from the start of the next top-level element.

use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt;

pub const NS_CLIENT: &str = "jabber:client";
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
pub const NS_STREAM_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_STANZA_ERR: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_ROSTER: &str = "jabber:iq:roster";
pub const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// A child node: an element or character data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An XML element with resolved namespaces. Attribute names are kept as written (with their
/// prefix, e.g. `xml:lang`); namespace declarations are not kept as attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Element {
        Element {
            name: name.to_string(),
            ns: ns.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Whether this element has the given local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.child(name, ns).is_some()
    }

    /// Child elements with this name and namespace.
    pub fn children_named<'a>(
        &'a self,
        name: &'a str,
        ns: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.is(name, ns))
    }

    /// The concatenated character data of the direct children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|c| match c {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// `self.child(name, ns).text()`, if that child exists.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.child(name, ns).map(|c| c.text())
    }

    /// Stanza or stream error condition: the name of the first child of the `<error/>` (stanza)
    /// or of `<stream:error/>` in the errors namespace.
    pub fn error_condition(&self) -> Option<String> {
        if self.is("error", NS_STREAM) {
            return self
                .elements()
                .find(|e| e.ns == NS_STREAM_ERR && e.name != "text")
                .map(|e| e.name.clone());
        }
        let error = self.elements().find(|e| e.name == "error")?;
        error
            .elements()
            .find(|e| e.ns == NS_STANZA_ERR && e.name != "text")
            .map(|e| e.name.clone())
    }

    /// The `type` attribute of the stanza's `<error/>` child.
    pub fn error_type(&self) -> Option<&str> {
        self.elements().find(|e| e.name == "error")?.attr("type")
    }

    /// Serialise, declaring every namespace that differs from the parent's.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_xml(&mut out, "");
        out
    }

    fn write_xml(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns='");
            out.push_str(&escape(&self.ns));
            out.push('\'');
        }
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            out.push_str(&escape(v));
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write_xml(out, &self.ns),
                Node::Text(t) => out.push_str(&escape(t)),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

/// Escape text for use in character data or a single- or double-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// What the stream reader produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlEvent {
    /// The peer's stream header (`<stream:stream ...>`), as an element without children.
    Header(Element),
    /// A complete first-level element (stanza, features, stream error, SASL, ...).
    Element(Element),
    /// The closing `</stream:stream>`.
    StreamEnd,
}

type Scope = Vec<(Option<String>, String)>;

/// Incremental reader: feed bytes, then pull events until it returns `Ok(None)`.
#[derive(Debug, Default)]
pub struct StreamReader {
    buf: Vec<u8>,
    /// Root namespace scope from the stream header; `None` before the header.
    root: Option<Scope>,
    /// The last parse error seen; kept for diagnostics, since an error at the end of the
    /// buffer usually only means that more bytes are needed.
    pub last_error: Option<String>,
}

impl StreamReader {
    pub fn new() -> StreamReader {
        StreamReader::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Forget everything (after STARTTLS or SASL success the stream starts anew).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.root = None;
        self.last_error = None;
    }

    /// Bytes received but not consumed as an event yet.
    pub fn unconsumed(&self) -> &[u8] {
        &self.buf
    }

    /// Next complete event, or `Ok(None)` when more bytes are needed. `Err` reports content
    /// that cannot be part of an XMPP stream (such as a comment or a DOCTYPE from the peer).
    pub fn next_event(&mut self) -> Result<Option<XmlEvent>, String> {
        let valid = match std::str::from_utf8(&self.buf) {
            Ok(s) => s.len(),
            Err(e) => {
                if e.error_len().is_some() {
                    return Err(format!("invalid UTF-8 from the peer: {e}"));
                }
                e.valid_up_to()
            }
        };
        let text = std::str::from_utf8(&self.buf[..valid]).expect("checked above");
        let mut reader = Reader::from_str(text);
        {
            let cfg = reader.config_mut();
            cfg.check_end_names = false;
            cfg.allow_unmatched_ends = true;
            cfg.expand_empty_elements = false;
        }
        // Stack of open elements with their scopes; empty at the stream level.
        let mut stack: Vec<(Element, Scope)> = Vec::new();
        loop {
            let before = reader.buffer_position() as usize;
            let event = match reader.read_event() {
                Ok(ev) => ev,
                Err(e) => {
                    self.last_error = Some(format!("at byte {before}: {e}"));
                    return Ok(None);
                }
            };
            let after = reader.buffer_position() as usize;
            match event {
                Event::Eof => return Ok(None),
                Event::Decl(_) if stack.is_empty() && self.root.is_none() => {
                    self.consume(after);
                    return self.next_event();
                }
                Event::Text(t) if stack.is_empty() => {
                    if !t.xml10_content().trim().is_empty() {
                        return Err(format!(
                            "character data at the stream level: {:?}",
                            t.xml10_content()
                        ));
                    }
                    self.consume(after);
                    return self.next_event();
                }
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::Decl(_) => {
                    return Err(format!(
                        "restricted XML from the peer: {:?}",
                        &text[before..after]
                    ));
                }
                Event::Start(s) | Event::Empty(s) if self.root.is_none() => {
                    let scope = parent_scope(&stack, &None);
                    let (el, decls) = open_element(&s, &scope)?;
                    if !el.is("stream", NS_STREAM) {
                        return Err(format!("expected a stream header, got <{}>", el.name));
                    }
                    let mut root = scope;
                    root.extend(decls);
                    self.root = Some(root);
                    self.consume(after);
                    return Ok(Some(XmlEvent::Header(el)));
                }
                Event::Start(s) => {
                    let scope = parent_scope(&stack, &self.root);
                    let (el, decls) = open_element(&s, &scope)?;
                    let mut sc = scope;
                    sc.extend(decls);
                    stack.push((el, sc));
                }
                Event::Empty(s) => {
                    let scope = parent_scope(&stack, &self.root);
                    let (el, _) = open_element(&s, &scope)?;
                    match stack.last_mut() {
                        Some((parent, _)) => parent.children.push(Node::Element(el)),
                        None => {
                            self.consume(after);
                            return Ok(Some(XmlEvent::Element(el)));
                        }
                    }
                }
                Event::End(_) => match stack.pop() {
                    Some((el, _)) => match stack.last_mut() {
                        Some((parent, _)) => parent.children.push(Node::Element(el)),
                        None => {
                            self.consume(after);
                            return Ok(Some(XmlEvent::Element(el)));
                        }
                    },
                    None => {
                        self.consume(after);
                        self.root = None;
                        return Ok(Some(XmlEvent::StreamEnd));
                    }
                },
                Event::Text(t) => push_text(&mut stack, &t.xml10_content()),
                Event::CData(c) => push_text(&mut stack, &c.xml10_content()),
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match r.xml10_content().as_ref() {
                            "lt" => "<".into(),
                            "gt" => ">".into(),
                            "amp" => "&".into(),
                            "apos" => "'".into(),
                            "quot" => "\"".into(),
                            other => return Err(format!("unknown entity &{other};")),
                        },
                        Err(e) => return Err(format!("bad character reference: {e}")),
                    };
                    push_text(&mut stack, &resolved);
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
    }
}

fn push_text(stack: &mut [(Element, Scope)], t: &str) {
    if let Some((el, _)) = stack.last_mut() {
        if let Some(Node::Text(prev)) = el.children.last_mut() {
            prev.push_str(t);
        } else {
            el.children.push(Node::Text(t.to_string()));
        }
    }
}

fn parent_scope(stack: &[(Element, Scope)], root: &Option<Scope>) -> Scope {
    match stack.last() {
        Some((_, s)) => s.clone(),
        None => root.clone().unwrap_or_default(),
    }
}

fn resolve(scope: &Scope, prefix: &Option<String>) -> Option<String> {
    if prefix.as_deref() == Some("xml") {
        return Some(NS_XML.to_string());
    }
    scope
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u.clone())
}

fn open_element(
    s: &quick_xml::events::BytesStart<'_>,
    scope: &Scope,
) -> Result<(Element, Scope), String> {
    let qname = s.name().as_ref().to_string();
    let mut decls: Scope = Vec::new();
    let mut attrs = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| format!("bad attribute in <{qname}>: {e}"))?;
        let key = a.key.as_ref().to_string();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value in <{qname}>: {e}"))?
            .into_owned();
        if key == "xmlns" {
            decls.push((None, value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            decls.push((Some(p.to_string()), value));
        } else {
            attrs.push((key, value));
        }
    }
    let mut full = scope.clone();
    full.extend(decls.iter().cloned());
    let (prefix, local) = match qname.split_once(':') {
        Some((p, l)) => (Some(p.to_string()), l.to_string()),
        None => (None, qname.clone()),
    };
    let ns =
        resolve(&full, &prefix).ok_or_else(|| format!("unbound prefix {prefix:?} on <{qname}>"))?;
    Ok((
        Element {
            name: local,
            ns,
            attrs,
            children: Vec::new(),
        },
        decls,
    ))
}

/// Parse one standalone element (for building expected values in tests).
pub fn parse_element(xml: &str) -> Result<Element, String> {
    let mut r = StreamReader::new();
    r.feed(
        format!("<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'>{xml}").as_bytes(),
    );
    match r.next_event()? {
        Some(XmlEvent::Header(_)) => {}
        other => return Err(format!("unexpected {other:?}")),
    }
    match r.next_event()? {
        Some(XmlEvent::Element(e)) => Ok(e),
        other => Err(format!("not one complete element: {other:?}")),
    }
}

/// Everything in a transcript of bytes received from a server, as far as it parses.
pub fn parse_transcript(bytes: &[u8]) -> (Vec<XmlEvent>, Option<String>) {
    let mut r = StreamReader::new();
    r.feed(bytes);
    let mut events = Vec::new();
    loop {
        match r.next_event() {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}
