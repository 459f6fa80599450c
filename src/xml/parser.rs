//! Incremental XMPP stream parser: turns socket bytes into [`StreamEvent`]s.
//!
//! This module owns the byte buffer between a connection and the router. Bytes are appended
//! with [`StreamParser::feed`]; [`StreamParser::next_event`] finds the next *complete* token in
//! the buffer itself (a tag ends at `>` outside quoted values, CDATA at `]]>`, character data
//! at the next `<`), remembering how far it scanned so input arriving one byte at a time costs
//! linear time, and only then parses it (quick-xml does attribute-value normalisation and
//! unescaping, see [`lex`]). Complete tokens are consumed at once and folded into the element
//! being built, so the buffer only ever holds one incomplete token, which is bounded by
//! [`Limits`]. Namespaces are resolved here, restricted XML (RFC 6120 §11.1) is enforced here,
//! and `jabber:server` stanzas are renamed to `jabber:client`. [`parse_element`] runs the same
//! machinery over one standalone document (stored stanzas, XEP-0227 files).

mod lex;

use std::borrow::Cow;

pub use lex::MAX_ATTRIBUTES;

use super::{rename_ns, Element, Name, Node, XML_NS};
use crate::proto::ns;

/// Largest stream prolog plus stream header (`<?xml ...?><stream:stream ...>`), in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Namespace of component streams (XEP-0114).
const COMPONENT_ACCEPT: &str = "jabber:component:accept";
/// Namespace reserved for `xmlns` attributes.
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";
/// Buffers with more spare capacity than this are shrunk once drained.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Bounds the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest stanza (top-level element below the stream root), in bytes of input.
    pub max_stanza_bytes: usize,
    /// Deepest nesting inside a stanza (the stanza element itself is at depth 1).
    pub max_depth: usize,
}

/// The stream header's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// Default namespace declared on the stream root (`jabber:client`, `jabber:server`).
    pub default_ns: String,
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// Other namespace prefixes declared on the root (e.g. `db` for dialback): (prefix, uri).
    pub prefixes: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Open(StreamHeader),
    /// A complete top-level element (stanza or stream-level element such as
    /// `<stream:features/>`, `<starttls/>`, `<auth/>`).
    Element(Element),
    Close,
}

/// What went wrong; each maps to one stream error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    NotWellFormed(String),
    RestrictedXml(String),
    PolicyViolation(String),
    InvalidNamespace(String),
    BadNamespacePrefix(String),
    UnsupportedEncoding,
    BadFormat(String),
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmlError::NotWellFormed(m) => write!(f, "not well-formed: {m}"),
            XmlError::RestrictedXml(m) => write!(f, "restricted XML: {m}"),
            XmlError::PolicyViolation(m) => write!(f, "policy violation: {m}"),
            XmlError::InvalidNamespace(m) => write!(f, "invalid namespace: {m}"),
            XmlError::BadNamespacePrefix(m) => write!(f, "bad namespace prefix: {m}"),
            XmlError::UnsupportedEncoding => f.write_str("unsupported encoding"),
            XmlError::BadFormat(m) => write!(f, "bad format: {m}"),
        }
    }
}

impl std::error::Error for XmlError {}

fn not_well_formed(msg: impl Into<String>) -> XmlError {
    XmlError::NotWellFormed(msg.into())
}

/// Stream (root is `<stream:stream>`, events for its children) or standalone document (the
/// root is the element returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Document,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Before the root start tag.
    Prolog,
    /// Inside the root (stream) or inside the document element.
    Content,
    /// The root has ended.
    Epilog,
    /// An error was reported; the same error is returned from now on.
    Failed(XmlError),
}

/// The kind of token being scanned, with how far the scan got (offsets from the token start).
#[derive(Debug, Clone, Copy)]
enum Scan {
    Text { off: usize },
    StartTag { off: usize, quote: Option<u8> },
    EndTag { off: usize },
    CData { off: usize },
    Decl { off: usize },
}

#[derive(Debug, Clone, Copy)]
enum Tok {
    Text,
    StartTag { empty: bool },
    EndTag,
    CData,
    Decl,
}

const CDATA_OPEN: &[u8] = b"<![CDATA[";
const DECL_OPEN: &[u8] = b"<?xml";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Most namespace bindings in scope at once. Lookups search the bindings from the innermost
/// outwards, so this bounds their cost; real documents have a handful (a stream root has two).
pub const MAX_NAMESPACE_BINDINGS: usize = 128;

/// Prefixes and namespace URIs that streams and ordinary stanzas declare, kept without an
/// allocation of their own: every connection holds its stream root's bindings for as long as
/// it lives, and every element parsed in one of these namespaces shares the URI.
fn well_known(text: &str) -> Option<&'static str> {
    use crate::components::muc::ns_muc::{MUC, MUC_USER};
    use crate::modules::{carbons, mam, pep};
    Some(match text {
        "" => "",
        "stream" => "stream",
        "db" => "db",
        ns::CLIENT => ns::CLIENT,
        ns::SERVER => ns::SERVER,
        ns::STREAM => ns::STREAM,
        COMPONENT_ACCEPT => COMPONENT_ACCEPT,
        crate::s2s::dialback::NS => crate::s2s::dialback::NS,
        ns::RECEIPTS => ns::RECEIPTS,
        ns::CHATSTATES => ns::CHATSTATES,
        ns::CHAT_MARKERS => ns::CHAT_MARKERS,
        mam::NS_SID => mam::NS_SID,
        carbons::NS_HINTS => carbons::NS_HINTS,
        ns::DELAY => ns::DELAY,
        carbons::NS => carbons::NS,
        carbons::NS_FORWARD => carbons::NS_FORWARD,
        crate::c2s::sm::NS => crate::c2s::sm::NS,
        ns::PING => ns::PING,
        mam::NS => mam::NS,
        ns::ROSTER => ns::ROSTER,
        pep::caps::CAPS => pep::caps::CAPS,
        MUC => MUC,
        MUC_USER => MUC_USER,
        ns::DISCO_INFO => ns::DISCO_INFO,
        ns::DISCO_ITEMS => ns::DISCO_ITEMS,
        pep::PUBSUB_EVENT => pep::PUBSUB_EVENT,
        ns::STANZAS_ERR => ns::STANZAS_ERR,
        _ => return None,
    })
}

/// Local names of the elements ordinary stanzas are made of, shared instead of allocated for
/// every element parsed.
fn common_element_name(local: &str) -> Option<&'static str> {
    Some(match local {
        "message" => "message",
        "presence" => "presence",
        "iq" => "iq",
        "body" => "body",
        "subject" => "subject",
        "thread" => "thread",
        "show" => "show",
        "status" => "status",
        "priority" => "priority",
        "error" => "error",
        "query" => "query",
        "item" => "item",
        "x" => "x",
        "c" => "c",
        "request" => "request",
        "received" => "received",
        "active" => "active",
        "composing" => "composing",
        "paused" => "paused",
        "inactive" => "inactive",
        "markable" => "markable",
        "displayed" => "displayed",
        "origin-id" => "origin-id",
        "stanza-id" => "stanza-id",
        "delay" => "delay",
        "store" => "store",
        "no-store" => "no-store",
        "no-copy" => "no-copy",
        "private" => "private",
        "sent" => "sent",
        "forwarded" => "forwarded",
        "ping" => "ping",
        "r" => "r",
        "a" => "a",
        _ => return None,
    })
}

/// Attribute names that stanzas carry, shared instead of allocated for every attribute.
fn common_attribute_name(key: &str) -> Option<&'static str> {
    Some(match key {
        "to" => "to",
        "from" => "from",
        "type" => "type",
        "id" => "id",
        "xml:lang" => "xml:lang",
        "by" => "by",
        "xmlns" => "xmlns",
        "var" => "var",
        "node" => "node",
        "jid" => "jid",
        "name" => "name",
        "stamp" => "stamp",
        "ver" => "ver",
        "hash" => "hash",
        "h" => "h",
        _ => return None,
    })
}

/// `text` as an element or attribute name or a namespace: shared when it is a common one,
/// copied otherwise.
fn shared_or_owned(text: &str, common: fn(&str) -> Option<&'static str>) -> Name {
    common(text).map_or_else(|| Cow::Owned(text.to_string()), Cow::Borrowed)
}

/// In-scope namespace bindings, innermost last: (prefix (`""` for the default namespace),
/// URI). Leaving an element truncates back to the mark taken when it started, which pops
/// exactly what it declared. At most [`MAX_NAMESPACE_BINDINGS`], so a lookup (a search from
/// the innermost binding) stays cheap whatever the input.
#[derive(Debug, Default)]
struct Namespaces {
    scope: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl Namespaces {
    fn mark(&self) -> usize {
        self.scope.len()
    }

    fn declare(&mut self, prefix: &str, uri: String) -> Result<(), XmlError> {
        if self.scope.len() >= MAX_NAMESPACE_BINDINGS {
            return Err(XmlError::PolicyViolation(format!(
                "more than {MAX_NAMESPACE_BINDINGS} namespace declarations in scope"
            )));
        }
        let prefix = shared_or_owned(prefix, well_known);
        let uri = well_known(&uri).map_or(Cow::Owned(uri), Cow::Borrowed);
        self.scope.push((prefix, uri));
        Ok(())
    }

    fn pop_to(&mut self, mark: usize) {
        self.scope.truncate(mark);
        // A stanza that declared many namespaces does not leave its room behind for the
        // rest of the stream (the usual few are kept: no reallocation per stanza).
        if self.scope.capacity() > 16 && self.scope.len() <= 4 {
            self.scope.shrink_to(4);
        }
    }

    /// The binding of `prefix`: `xml` is always bound, and the default namespace (`""`) is
    /// the empty URI when undeclared.
    fn binding(&self, prefix: &str) -> Option<&Name> {
        const XML: Name = Cow::Borrowed(XML_NS);
        const NO_NAMESPACE: Name = Cow::Borrowed("");
        if prefix == "xml" {
            return Some(&XML);
        }
        match self.scope.iter().rev().find(|(p, _)| p == prefix) {
            Some((_, uri)) => Some(uri),
            None if prefix.is_empty() => Some(&NO_NAMESPACE),
            None => None,
        }
    }

    /// URI bound to `prefix` (see [`Self::binding`]).
    fn lookup(&self, prefix: &str) -> Option<&str> {
        self.binding(prefix).map(|uri| &**uri)
    }

    /// [`Self::lookup`] as an element's namespace: shared with the binding when that is a
    /// well-known URI (no allocation), copied otherwise.
    fn lookup_name(&self, prefix: &str) -> Option<Name> {
        self.binding(prefix).cloned()
    }

    fn clear(&mut self) {
        self.scope = Vec::new();
    }
}

/// An element whose end tag has not been seen yet.
#[derive(Debug)]
struct Open {
    el: Element,
    /// The prefix as written (with the local name in `el.name`, what the end tag must
    /// repeat); `None` for an unprefixed name, which needs no copy of its own.
    prefix: Option<String>,
    /// Namespace mark to pop back to when the element ends.
    ns_mark: usize,
}

impl Open {
    /// Whether `name` (an end tag's qualified name) closes this element.
    fn matches(&self, name: &str) -> bool {
        match &self.prefix {
            None => name == self.el.name,
            Some(prefix) => name
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|local| local == self.el.name),
        }
    }

    /// The qualified name as written (for error messages).
    fn qname(&self) -> String {
        match &self.prefix {
            None => self.el.name.to_string(),
            Some(prefix) => format!("{prefix}:{}", self.el.name),
        }
    }
}

/// Resolve a start tag against the bindings in scope, declaring its own. Returns the element
/// (no children yet) and the namespace mark to pop to when it ends.
fn build_element(
    nss: &mut Namespaces,
    tag: &lex::RawTag<'_>,
) -> Result<(Element, usize), XmlError> {
    let mark = nss.mark();
    for &(key, raw) in &tag.attrs {
        let prefix = if key == "xmlns" {
            ""
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            p
        } else {
            continue;
        };
        let uri = lex::attr_value(raw)?;
        if prefix == "xml" {
            if uri != XML_NS {
                return Err(not_well_formed("the xml prefix cannot be rebound"));
            }
            continue;
        }
        if prefix == "xmlns" || uri == XML_NS || uri == XMLNS_NS {
            return Err(not_well_formed("reserved namespace declaration"));
        }
        if !prefix.is_empty() && uri.is_empty() {
            return Err(not_well_formed("a namespace prefix cannot be undeclared"));
        }
        nss.declare(prefix, uri)?;
    }

    // The name is a QName: `lex::parse_tag` checked it.
    let (prefix, local) = lex::split_prefix(tag.name);
    let el_ns = match prefix {
        Some("xmlns") => return Err(not_well_formed("element names cannot use the xmlns prefix")),
        Some(p) => nss.lookup_name(p).ok_or_else(|| {
            XmlError::BadNamespacePrefix(format!("unbound prefix {:?}", lex::excerpt(p)))
        })?,
        None => nss.lookup_name("").unwrap_or_default(),
    };
    let mut el = Element::new(shared_or_owned(local, common_element_name), el_ns);

    // (uri, local) of namespaced attributes, to refuse two that expand to the same name.
    let mut expanded: Vec<(&str, &str)> = Vec::new();
    for &(key, raw) in &tag.attrs {
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = lex::attr_value(raw)?;
        if let (Some(p), l) = lex::split_prefix(key) {
            if p != "xml" {
                let uri = nss.lookup(p).ok_or_else(|| {
                    XmlError::BadNamespacePrefix(format!("unbound prefix {:?}", lex::excerpt(p)))
                })?;
                if expanded.contains(&(uri, l)) {
                    return Err(XmlError::NotWellFormed(format!(
                        "duplicate attribute {:?}",
                        lex::excerpt(key)
                    )));
                }
                expanded.push((uri, l));
                // Keep the declaration so the element can be written back as is.
                let decl = format!("xmlns:{p}");
                if el.attr(&decl).is_none() {
                    el.attrs.push((decl.into(), uri.to_string()));
                }
            }
        }
        el.attrs
            .push((shared_or_owned(key, common_attribute_name), value));
    }
    Ok((el, mark))
}

/// Incremental parser for one XMPP stream (one direction of one connection).
///
/// Use: [`feed`](Self::feed) what the socket returned, then call
/// [`next_event`](Self::next_event) until it returns `Ok(None)`, then read again. The buffer
/// holds at most one incomplete token, bounded by the limits; `feed` refuses input when a
/// caller keeps feeding without draining events. After an error the stream is dead and every
/// call returns the same error (until [`reset`](Self::reset)).
#[derive(Debug)]
pub struct StreamParser {
    limits: Limits,
    mode: Mode,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// The token being scanned at `pos`, when a previous call found it incomplete.
    scan: Option<Scan>,
    phase: Phase,
    /// The encoding sniff (BOM, UTF-16) has been done.
    sniffed: bool,
    /// Nothing but a BOM consumed yet: an XML declaration may still come.
    at_start: bool,
    /// Bytes consumed before the stream root was complete.
    prolog_bytes: usize,
    /// Bytes consumed for the stanza being built.
    stanza_bytes: usize,
    /// Default namespace of the stream (one of the three a stream root may have).
    stream_ns: &'static str,
    /// Qualified name of the stream root, to match `</stream:stream>`.
    root_qname: Cow<'static, str>,
    nss: Namespaces,
    stack: Vec<Open>,
    pending: Option<StreamEvent>,
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        Self::with_mode(limits, Mode::Stream)
    }

    fn with_mode(limits: Limits, mode: Mode) -> Self {
        StreamParser {
            limits,
            mode,
            buf: Vec::new(),
            pos: 0,
            scan: None,
            phase: Phase::Prolog,
            sniffed: false,
            at_start: true,
            prolog_bytes: 0,
            stanza_bytes: 0,
            stream_ns: "",
            root_qname: Cow::Borrowed(""),
            nss: Namespaces::default(),
            stack: Vec::new(),
            pending: None,
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Append bytes read from the socket. Fails (and the stream is dead) when more than the
    /// limits allow is already buffered, i.e. the caller did not drain `next_event` first.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), XmlError> {
        match self.phase {
            Phase::Failed(ref e) => return Err(e.clone()),
            // The stream is over: whatever follows is never parsed.
            Phase::Epilog if self.mode == Mode::Stream => return Ok(()),
            _ => {}
        }
        self.compact();
        let bound = self.limits.max_stanza_bytes.max(MAX_HEADER_BYTES);
        if self.buf.len() > bound {
            let e = XmlError::PolicyViolation(format!(
                "more than {bound} bytes of unparsed input buffered"
            ));
            self.fail(e.clone());
            return Err(e);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete event, or `Ok(None)` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        match self.step() {
            Ok(ev) => Ok(ev),
            Err(e) => {
                self.fail(e.clone());
                Err(e)
            }
        }
    }

    /// Forget all buffered bytes and state: a new stream header is expected next. Used after
    /// STARTTLS and SASL success, so bytes received before the restart are never parsed.
    pub fn reset(&mut self) {
        *self = Self::with_mode(self.limits, self.mode);
    }

    /// Bytes received but not yet consumed (at most one incomplete token once drained).
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn fail(&mut self, e: XmlError) {
        self.phase = Phase::Failed(e);
        self.buf = Vec::new();
        self.pos = 0;
        self.scan = None;
        self.stack.clear();
        self.nss.clear();
        self.pending = None;
    }

    /// Everything fed has been parsed: free the input buffer, and the element stack when no
    /// stanza is open, so that an idle stream holds no buffers (most sessions are idle most
    /// of the time; the next `feed` allocates what it needs).
    fn release_if_idle(&mut self) {
        if self.pos == self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
        if self.stack.is_empty() && self.stack.capacity() > 0 {
            self.stack = Vec::new();
        }
    }

    /// Bytes the parser holds allocated (input buffer and element stack), for tests.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.buf.capacity() + self.stack.capacity() * std::mem::size_of::<Open>()
    }

    /// Drop consumed bytes (scan offsets are relative to `pos`, so they stay valid) and give
    /// back memory after a large token.
    fn compact(&mut self) {
        if self.pos > 0 {
            if self.pos >= self.buf.len() {
                self.buf.clear();
            } else {
                self.buf.drain(..self.pos);
            }
            self.pos = 0;
        }
        if self.buf.capacity() > SHRINK_ABOVE && self.buf.len() < self.buf.capacity() / 4 {
            self.buf.shrink_to(self.buf.len().max(4096));
        }
    }

    fn step(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        loop {
            if let Some(ev) = self.pending.take() {
                return Ok(Some(ev));
            }
            match self.phase {
                Phase::Failed(ref e) => return Err(e.clone()),
                Phase::Epilog if self.mode == Mode::Stream => {
                    self.buf.clear();
                    self.pos = 0;
                    return Ok(None);
                }
                _ => {}
            }
            if self.pos == self.buf.len() {
                self.release_if_idle();
                return Ok(None);
            }
            if !self.sniffed && !self.sniff()? {
                return Ok(None);
            }
            if self.stack.is_empty() && self.scan.is_none() && !self.skip_outside_elements()? {
                return Ok(None);
            }
            let Some((tok, len)) = self.scan_token()? else {
                self.check_incomplete()?;
                return Ok(None);
            };
            self.account(tok, len)?;
            let buf = std::mem::take(&mut self.buf);
            let token = buf.get(self.pos..self.pos + len).unwrap_or_default();
            let res = self.handle(tok, token);
            self.buf = buf;
            self.pos += len;
            self.scan = None;
            if let Some(ev) = res? {
                return Ok(Some(ev));
            }
        }
    }

    /// Look at the first bytes of the stream: skip a UTF-8 byte order mark, refuse UTF-16 and
    /// UTF-32. Returns false when more bytes are needed to decide.
    fn sniff(&mut self) -> Result<bool, XmlError> {
        let avail = &self.buf[self.pos..];
        if avail.len() < 4 {
            return Ok(false);
        }
        self.sniffed = true;
        if avail.starts_with(b"\xFE\xFF")
            || avail.starts_with(b"\xFF\xFE")
            || avail[..2].contains(&0)
        {
            return Err(XmlError::UnsupportedEncoding);
        }
        if avail.starts_with(UTF8_BOM) {
            self.pos += UTF8_BOM.len();
            self.prolog_bytes += UTF8_BOM.len();
        }
        Ok(true)
    }

    /// Outside any element (prolog, between stanzas, epilog): consume white space; anything
    /// else must start markup. Returns false when the buffer has been used up.
    fn skip_outside_elements(&mut self) -> Result<bool, XmlError> {
        let avail = &self.buf[self.pos..];
        let n = avail.iter().take_while(|&&b| lex::is_ws(b)).count();
        let next = avail.get(n).copied();
        self.pos += n;
        if self.phase == Phase::Prolog && n > 0 {
            self.at_start = false;
            self.prolog_bytes += n;
            self.check_header_size(0)?;
        }
        match next {
            None => Ok(false),
            Some(b'<') => Ok(true),
            Some(_) => Err(match self.phase {
                Phase::Content => XmlError::BadFormat("character data at the stream level".into()),
                Phase::Prolog => not_well_formed("character data before the root element"),
                _ => not_well_formed("character data after the root element"),
            }),
        }
    }

    /// Decide what the token at `pos` is (once enough bytes are there), then scan for its end,
    /// resuming where the last call stopped. Returns the token and its length in bytes.
    fn scan_token(&mut self) -> Result<Option<(Tok, usize)>, XmlError> {
        let avail = &self.buf[self.pos..];
        let scan = match self.scan {
            Some(s) => s,
            None => match classify(avail, self.phase == Phase::Prolog && self.at_start)? {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        let (found, next) = match scan {
            Scan::Text { off } => match find_byte(avail, off, b'<') {
                Some(i) => (Some((Tok::Text, i)), scan),
                None => (None, Scan::Text { off: avail.len() }),
            },
            Scan::EndTag { off } => match avail.iter().skip(off).position(|&b| b == b'>') {
                Some(i) => (Some((Tok::EndTag, off + i + 1)), scan),
                None => (None, Scan::EndTag { off: avail.len() }),
            },
            Scan::StartTag { off, mut quote } => {
                // A `>` inside a quoted value does not end the tag. (Tags are short: a byte
                // loop costs less than `memchr` calls from quote to quote.)
                let mut end = None;
                for (i, &b) in avail.iter().enumerate().skip(off) {
                    match quote {
                        Some(q) if b == q => quote = None,
                        Some(_) => {}
                        None if b == b'\'' || b == b'"' => quote = Some(b),
                        None if b == b'>' => {
                            end = Some(i);
                            break;
                        }
                        None => {}
                    }
                }
                match end {
                    Some(i) => {
                        let empty = avail[i - 1] == b'/';
                        (Some((Tok::StartTag { empty }, i + 1)), scan)
                    }
                    None => (
                        None,
                        Scan::StartTag {
                            off: avail.len(),
                            quote,
                        },
                    ),
                }
            }
            Scan::CData { off } => {
                let from = off.saturating_sub(2).max(CDATA_OPEN.len());
                match find_seq(avail, from, b"]]>") {
                    Some(i) => (Some((Tok::CData, i + 3)), scan),
                    None => (None, Scan::CData { off: avail.len() }),
                }
            }
            Scan::Decl { off } => {
                let from = off.saturating_sub(1).max(DECL_OPEN.len());
                match find_seq(avail, from, b"?>") {
                    Some(i) => (Some((Tok::Decl, i + 2)), scan),
                    None => (None, Scan::Decl { off: avail.len() }),
                }
            }
        };
        self.scan = if found.is_some() { None } else { Some(next) };
        Ok(found)
    }

    fn check_header_size(&self, pending: usize) -> Result<(), XmlError> {
        if self.mode == Mode::Stream && self.prolog_bytes.saturating_add(pending) > MAX_HEADER_BYTES
        {
            return Err(XmlError::PolicyViolation(format!(
                "stream header larger than {MAX_HEADER_BYTES} bytes"
            )));
        }
        Ok(())
    }

    fn check_stanza_size(&self, pending: usize) -> Result<(), XmlError> {
        let max = self.limits.max_stanza_bytes;
        if self.stanza_bytes.saturating_add(pending) > max {
            return Err(XmlError::PolicyViolation(format!(
                "stanza larger than {max} bytes"
            )));
        }
        Ok(())
    }

    /// The buffered tail is an incomplete token: refuse it already if it is too big.
    fn check_incomplete(&self) -> Result<(), XmlError> {
        let pending = self.buffered_len();
        match self.phase {
            Phase::Prolog => self.check_header_size(pending),
            Phase::Content => self.check_stanza_size(pending),
            _ => Ok(()),
        }
    }

    /// Count a complete token against the header or stanza limit.
    fn account(&mut self, tok: Tok, len: usize) -> Result<(), XmlError> {
        match self.phase {
            Phase::Prolog => {
                self.prolog_bytes += len;
                self.check_header_size(0)
            }
            Phase::Content if !self.stack.is_empty() || matches!(tok, Tok::StartTag { .. }) => {
                self.stanza_bytes += len;
                self.check_stanza_size(0)
            }
            _ => Ok(()),
        }
    }

    fn handle(&mut self, tok: Tok, token: &[u8]) -> Result<Option<StreamEvent>, XmlError> {
        let s = std::str::from_utf8(token).map_err(|_| not_well_formed("invalid UTF-8"))?;
        let inner = |start: usize, end_trim: usize| {
            s.get(start..s.len().saturating_sub(end_trim))
                .ok_or_else(|| not_well_formed("malformed markup"))
        };
        match tok {
            Tok::Text => {
                let text = lex::text_value(s)?;
                self.push_text(text);
                Ok(None)
            }
            Tok::CData => {
                if self.stack.is_empty() {
                    return Err(match self.phase {
                        Phase::Content => XmlError::BadFormat("CDATA at the stream level".into()),
                        _ => not_well_formed("CDATA outside the root element"),
                    });
                }
                let text = lex::cdata_value(inner(CDATA_OPEN.len(), 3)?)?;
                self.push_text(text);
                Ok(None)
            }
            Tok::Decl => {
                self.at_start = false;
                xml_declaration(inner(DECL_OPEN.len(), 2)?)?;
                Ok(None)
            }
            Tok::EndTag => self.end_tag(inner(2, 1)?),
            Tok::StartTag { empty } => self.start_tag(inner(1, if empty { 2 } else { 1 })?, empty),
        }
    }

    fn push_text(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        if let Some(open) = self.stack.last_mut() {
            match open.el.children.last_mut() {
                Some(Node::Text(prev)) => prev.push_str(&text),
                _ => open.el.children.push(Node::Text(text)),
            }
        }
    }

    fn start_tag(&mut self, content: &str, empty: bool) -> Result<Option<StreamEvent>, XmlError> {
        self.at_start = false;
        let tag = lex::parse_tag(content)?;
        match (self.phase.clone(), self.mode) {
            (Phase::Prolog, Mode::Stream) => self.stream_root(&tag, empty).map(Some),
            (Phase::Prolog | Phase::Content, _) => {
                if self.stack.len() >= self.limits.max_depth {
                    return Err(XmlError::PolicyViolation(format!(
                        "elements nested deeper than {}",
                        self.limits.max_depth
                    )));
                }
                self.phase = Phase::Content;
                let (el, ns_mark) = build_element(&mut self.nss, &tag)?;
                if empty {
                    self.nss.pop_to(ns_mark);
                    Ok(self.attach(el))
                } else {
                    let prefix = lex::split_prefix(tag.name).0.map(str::to_string);
                    self.stack.push(Open {
                        el,
                        prefix,
                        ns_mark,
                    });
                    Ok(None)
                }
            }
            _ => Err(not_well_formed("element after the root element")),
        }
    }

    fn end_tag(&mut self, content: &str) -> Result<Option<StreamEvent>, XmlError> {
        let name = content.trim_end_matches(|c: char| c.is_ascii() && lex::is_ws(c as u8));
        // A name equal to the open element's was checked at its start tag.
        let closes_open = self.stack.last().is_some_and(|open| open.matches(name));
        if !closes_open {
            lex::split_qname(name)?;
        }
        match self.stack.pop() {
            Some(open) => {
                if !closes_open {
                    return Err(XmlError::NotWellFormed(format!(
                        "end tag </{}> does not match <{}>",
                        lex::excerpt(name),
                        lex::excerpt(&open.qname())
                    )));
                }
                self.nss.pop_to(open.ns_mark);
                Ok(self.attach(open.el))
            }
            None if self.phase == Phase::Content && self.mode == Mode::Stream => {
                if name != self.root_qname {
                    return Err(XmlError::NotWellFormed(format!(
                        "end tag </{}> does not match <{}>",
                        lex::excerpt(name),
                        self.root_qname
                    )));
                }
                self.phase = Phase::Epilog;
                Ok(Some(StreamEvent::Close))
            }
            None => Err(not_well_formed("end tag without a start tag")),
        }
    }

    /// A finished element goes into its parent, or out as an event.
    fn attach(&mut self, mut el: Element) -> Option<StreamEvent> {
        if let Some(parent) = self.stack.last_mut() {
            parent.el.children.push(Node::Element(el));
            return None;
        }
        self.stanza_bytes = 0;
        match self.mode {
            Mode::Stream => {
                if self.stream_ns == ns::SERVER {
                    rename_ns(&mut el, ns::SERVER, ns::CLIENT);
                }
            }
            Mode::Document => self.phase = Phase::Epilog,
        }
        Some(StreamEvent::Element(el))
    }

    /// `<stream:stream ...>`: check namespaces, keep the root bindings, emit the header.
    fn stream_root(&mut self, tag: &lex::RawTag<'_>, empty: bool) -> Result<StreamEvent, XmlError> {
        let (root, _) = build_element(&mut self.nss, tag)?;
        if root.ns != ns::STREAM {
            return Err(XmlError::InvalidNamespace(format!(
                "stream root in namespace {:?}",
                lex::excerpt(&root.ns)
            )));
        }
        if root.name != "stream" {
            return Err(XmlError::BadFormat(format!(
                "stream root is <{}>",
                lex::excerpt(&root.name)
            )));
        }
        let default_ns = self.nss.lookup("").unwrap_or_default().to_string();
        let Some(stream_ns) = [ns::CLIENT, ns::SERVER, COMPONENT_ACCEPT]
            .into_iter()
            .find(|n| *n == default_ns)
        else {
            return Err(XmlError::InvalidNamespace(format!(
                "unsupported stream content namespace {:?}",
                lex::excerpt(&default_ns)
            )));
        };
        let root_prefix = tag.name.split_once(':').map(|(p, _)| p);
        let prefixes = tag
            .attrs
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("xmlns:"))
            .filter(|p| Some(*p) != root_prefix && *p != "xml")
            .filter_map(|p| Some((p.to_string(), self.nss.lookup(p)?.to_string())))
            .collect();
        let attr = |name: &str| root.attr(name).map(str::to_string);
        let header = StreamHeader {
            default_ns: default_ns.clone(),
            to: attr("to"),
            from: attr("from"),
            id: attr("id"),
            version: attr("version"),
            lang: attr("xml:lang"),
            prefixes,
        };
        self.stream_ns = stream_ns;
        self.root_qname = match tag.name {
            "stream:stream" => Cow::Borrowed("stream:stream"),
            other => Cow::Owned(other.to_string()),
        };
        if empty {
            self.phase = Phase::Epilog;
            self.pending = Some(StreamEvent::Close);
        } else {
            self.phase = Phase::Content;
        }
        Ok(StreamEvent::Open(header))
    }
}

/// What the markup starting at `avail[0]` is. `Ok(None)`: too few bytes to tell yet.
fn classify(avail: &[u8], decl_allowed: bool) -> Result<Option<Scan>, XmlError> {
    if avail.first() != Some(&b'<') {
        return Ok(Some(Scan::Text { off: 0 }));
    }
    let Some(&second) = avail.get(1) else {
        return Ok(None);
    };
    match second {
        b'/' => Ok(Some(Scan::EndTag { off: 2 })),
        b'!' => {
            let n = avail.len().min(CDATA_OPEN.len());
            if avail[..n] == CDATA_OPEN[..n] {
                return Ok((n == CDATA_OPEN.len()).then_some(Scan::CData { off: n }));
            }
            match avail.get(2) {
                Some(b'-') => match avail.get(3) {
                    None => Ok(None),
                    Some(b'-') => Err(XmlError::RestrictedXml("comments are not allowed".into())),
                    Some(_) => Err(not_well_formed("malformed markup after '<!'")),
                },
                Some(c) if c.is_ascii_uppercase() || *c == b'[' => Err(XmlError::RestrictedXml(
                    "DTDs and markup declarations are not allowed".into(),
                )),
                _ => Err(not_well_formed("malformed markup after '<!'")),
            }
        }
        b'?' => {
            if decl_allowed {
                let n = avail.len().min(DECL_OPEN.len());
                if avail[..n] == DECL_OPEN[..n] {
                    return match avail.get(DECL_OPEN.len()) {
                        None => Ok(None),
                        Some(&b) if lex::is_ws(b) => Ok(Some(Scan::Decl {
                            off: DECL_OPEN.len() + 1,
                        })),
                        Some(_) => Err(XmlError::RestrictedXml(
                            "processing instructions are not allowed".into(),
                        )),
                    };
                }
            }
            Err(XmlError::RestrictedXml(
                "processing instructions are not allowed".into(),
            ))
        }
        _ => Ok(Some(Scan::StartTag {
            off: 1,
            quote: None,
        })),
    }
}

fn find_byte(hay: &[u8], from: usize, b: u8) -> Option<usize> {
    memchr::memchr(b, hay.get(from..)?).map(|i| i + from)
}

fn find_seq(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| i + from)
}

/// Check `<?xml version='1.x' encoding='UTF-8' standalone='yes|no'?>` (the part after
/// `<?xml`).
fn xml_declaration(content: &str) -> Result<(), XmlError> {
    let mut version = None;
    for (name, value) in lex::parse_attrs(content)? {
        match name {
            "version" => version = Some(value),
            "encoding" => {
                if !value.eq_ignore_ascii_case("UTF-8") && !value.eq_ignore_ascii_case("UTF8") {
                    return Err(XmlError::UnsupportedEncoding);
                }
            }
            "standalone" if value == "yes" || value == "no" => {}
            _ => return Err(not_well_formed("malformed XML declaration")),
        }
    }
    match version.and_then(|v| v.strip_prefix("1.")) {
        Some(minor) if !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(not_well_formed("XML declaration without version 1.x")),
    }
}

/// Parse one complete element from a string (stored stanzas, XEP-0227 files). Same
/// restrictions as the stream parser.
///
/// The text may start with an XML declaration and have white space around the element.
/// The element's namespace comes from its own declarations (no namespace when there is
/// none); nesting is limited to 256 levels, size only by the string.
pub fn parse_element(text: &str) -> Result<Element, XmlError> {
    let limits = Limits {
        max_stanza_bytes: usize::MAX,
        max_depth: 256,
    };
    let mut p = StreamParser::with_mode(limits, Mode::Document);
    p.buf = text.as_bytes().to_vec();
    let el = match p.next_event()? {
        Some(StreamEvent::Element(el)) => el,
        _ => return Err(not_well_formed("unexpected end of input")),
    };
    // Drive the parser over the rest: only white space may follow.
    if p.next_event()?.is_some() || p.buffered_len() > 0 {
        return Err(not_well_formed("content after the root element"));
    }
    Ok(el)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM_NS: &str = "http://etherx.jabber.org/streams";
    const DIALBACK: &str = "jabber:server:dialback";
    const C2S: &str = "<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
    const S2S: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
        xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
        from='a.example' to='b.example' version='1.0' id='s2s-1'>";

    /// A stream exercising most of the syntax: declaration, entities, multi-byte UTF-8,
    /// CR LF, CDATA with `]]` inside, namespaces and prefixes, keepalives, close.
    const SAMPLE: &str = "<?xml version='1.0' encoding='UTF-8'?>\n\
        <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
        to='example.com' version='1.0' xml:lang='en' id=\"x&amp;y\">\
        <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
        </stream:features> \n\
        <message to='juliet@example.com' id='m1' xml:lang='fr'>\
        <body>Caf\u{e9} \u{1F600} &lt;3 &amp; &#x263A;&#65; a\r\nb &quot;q&apos;</body>\
        <x xmlns='urn:x' xmlns:y='urn:y' y:attr='v&#9;w'><y:inner/><plain/></x>\
        <body2><![CDATA[<not a tag> ]] ]]]]><![CDATA[>]]>tail</body2></message>\
        \n \t\r\n<iq type='get' id=\"p'>\"><ping xmlns='urn:xmpp:ping'/></iq> </stream:stream>";

    fn limits() -> Limits {
        Limits {
            max_stanza_bytes: 64 * 1024,
            max_depth: 16,
        }
    }

    /// Drain every available event.
    fn drain(p: &mut StreamParser, out: &mut Vec<StreamEvent>) -> Result<(), XmlError> {
        while let Some(ev) = p.next_event()? {
            out.push(ev);
        }
        Ok(())
    }

    /// Feed `input` cut at `cuts` (sorted or not), draining after each feed.
    fn parse_chunked(input: &[u8], cuts: &[usize]) -> Result<Vec<StreamEvent>, XmlError> {
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
        cuts.sort_unstable();
        let mut p = StreamParser::new(limits());
        let mut out = Vec::new();
        let mut start = 0;
        for c in cuts.into_iter().chain([input.len()]) {
            p.feed(&input[start..c])?;
            drain(&mut p, &mut out)?;
            start = c;
        }
        Ok(out)
    }

    fn parse_all(input: &str) -> Result<Vec<StreamEvent>, XmlError> {
        parse_chunked(input.as_bytes(), &[])
    }

    /// The error `input` produces, fed whole and byte by byte (both must agree).
    fn error_of(input: impl AsRef<[u8]>) -> XmlError {
        let input = input.as_ref();
        let whole = parse_chunked(input, &[]).expect_err("input should be refused");
        let cuts: Vec<usize> = (1..input.len()).collect();
        let bytewise = parse_chunked(input, &cuts).expect_err("input should be refused");
        assert_eq!(whole, bytewise);
        whole
    }

    fn stanza_error(stanza: &str) -> XmlError {
        error_of(format!("{C2S}{stanza}"))
    }

    fn elements(events: &[StreamEvent]) -> Vec<&Element> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Element(el) => Some(el),
                _ => None,
            })
            .collect()
    }

    fn only_element(input: &str) -> Element {
        let events = parse_all(input).unwrap();
        let els = elements(&events);
        assert_eq!(els.len(), 1, "{events:?}");
        els[0].clone()
    }

    #[test]
    fn sample_stream_events() {
        let events = parse_all(SAMPLE).unwrap();
        assert_eq!(events.len(), 5, "{events:?}");
        assert_eq!(
            events[0],
            StreamEvent::Open(StreamHeader {
                default_ns: ns::CLIENT.into(),
                to: Some("example.com".into()),
                from: None,
                id: Some("x&y".into()),
                version: Some("1.0".into()),
                lang: Some("en".into()),
                prefixes: vec![],
            })
        );
        let features = Element::new("features", STREAM_NS).with_child(
            Element::new("starttls", ns::TLS).with_child(Element::new("required", ns::TLS)),
        );
        assert_eq!(events[1], StreamEvent::Element(features));
        let message = Element::new("message", ns::CLIENT)
            .with_attr("to", "juliet@example.com")
            .with_attr("id", "m1")
            .with_attr("xml:lang", "fr")
            .with_child(
                Element::new("body", ns::CLIENT)
                    .with_text("Caf\u{e9} \u{1F600} <3 & \u{263A}A a\nb \"q'"),
            )
            .with_child(
                Element::new("x", "urn:x")
                    .with_attr("xmlns:y", "urn:y")
                    .with_attr("y:attr", "v\tw")
                    .with_child(Element::new("inner", "urn:y"))
                    .with_child(Element::new("plain", "urn:x")),
            )
            .with_child(Element::new("body2", ns::CLIENT).with_text("<not a tag> ]] ]]>tail"));
        assert_eq!(events[2], StreamEvent::Element(message));
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "p'>")
            .with_child(Element::new("ping", ns::PING));
        assert_eq!(events[3], StreamEvent::Element(iq));
        assert_eq!(events[4], StreamEvent::Close);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let input = SAMPLE.as_bytes();
        let whole = parse_chunked(input, &[]).unwrap();
        for i in 0..=input.len() {
            assert_eq!(parse_chunked(input, &[i]).unwrap(), whole, "split at {i}");
        }
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(parse_chunked(input, &bytewise).unwrap(), whole);
    }

    #[test]
    fn split_utf8_and_entities_are_kept_for_later() {
        let mut p = StreamParser::new(limits());
        let mut out = Vec::new();
        p.feed(C2S.as_bytes()).unwrap();
        drain(&mut p, &mut out).unwrap();
        // "é" is C3 A9, the emoji F0 9F 98 80; cut inside both and inside "&amp;" / "&#x263A;".
        let chunks: [&[u8]; 8] = [
            b"<message><body>Caf\xC3",
            b"\xA9 \xF0\x9F",
            b"\x98\x80 &am",
            b"p; &#x26",
            b"3A; <![CDATA[x]",
            b"]]",
            b"><![CDATA[]]></bo",
            b"dy></message>",
        ];
        for c in chunks {
            p.feed(c).unwrap();
            drain(&mut p, &mut out).unwrap();
        }
        assert_eq!(out.len(), 2);
        let StreamEvent::Element(msg) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(
            msg.child_text("body", ns::CLIENT).unwrap(),
            "Caf\u{e9} \u{1F600} & \u{263A} x]"
        );
    }

    #[test]
    fn keepalive_whitespace_is_ignored_and_not_buffered() {
        let mut p = StreamParser::new(limits());
        let mut out = Vec::new();
        p.feed(C2S.as_bytes()).unwrap();
        drain(&mut p, &mut out).unwrap();
        for _ in 0..1000 {
            p.feed(b" \n\t\r\n").unwrap();
            drain(&mut p, &mut out).unwrap();
            assert_eq!(p.buffered_len(), 0);
        }
        p.feed(b"<presence/>\n \n<presence/>  ").unwrap();
        drain(&mut p, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(p.buffered_len(), 0);
        // Whitespace inside a stanza is content, not a keepalive.
        let el = only_element(&format!("{C2S}<message><body> </body> </message>"));
        assert_eq!(el.child_text("body", ns::CLIENT).unwrap(), " ");
        assert_eq!(el.text(), " ");
    }

    #[test]
    fn s2s_stanzas_are_normalised_to_jabber_client() {
        let input = format!(
            "{S2S}<db:result from='a.example' to='b.example'>key</db:result>\
             <message from='x@a.example' to='y@b.example'><body>hi</body>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:server'><body>inner</body>\
             </message></forwarded></message>"
        );
        let events = parse_all(&input).unwrap();
        assert_eq!(
            events[0],
            StreamEvent::Open(StreamHeader {
                default_ns: ns::SERVER.into(),
                to: Some("b.example".into()),
                from: Some("a.example".into()),
                id: Some("s2s-1".into()),
                version: Some("1.0".into()),
                lang: None,
                prefixes: vec![("db".into(), DIALBACK.into())],
            })
        );
        let els = elements(&events);
        assert_eq!(
            *els[0],
            Element::new("result", DIALBACK)
                .with_attr("from", "a.example")
                .with_attr("to", "b.example")
                .with_text("key")
        );
        let msg = els[1];
        assert_eq!(msg.ns, ns::CLIENT);
        assert_eq!(msg.child_text("body", ns::CLIENT).unwrap(), "hi");
        let inner = msg
            .child("forwarded", "urn:xmpp:forward:0")
            .and_then(|f| f.child("message", ns::CLIENT))
            .unwrap();
        assert_eq!(inner.child_text("body", ns::CLIENT).unwrap(), "inner");
        // Written back for an s2s stream, it is in jabber:server again.
        assert!(msg
            .to_stream_string(ns::SERVER)
            .starts_with("<message from='x@a.example' to='y@b.example'><body>hi</body>"));
    }

    #[test]
    fn c2s_streams_are_not_renamed() {
        let el = only_element(&format!(
            "{C2S}<message><x xmlns='jabber:server'/></message>"
        ));
        assert_eq!(el.elements().next().unwrap().ns, ns::SERVER);
    }

    #[test]
    fn prefixed_attributes_keep_their_declaration() {
        let el = only_element(&format!(
            "{S2S}<message db:type='x' xmlns:foo='urn:foo'><foo:a foo:b='1'/>\
             <c xmlns:foo='urn:other' foo:d='2'/></message>"
        ));
        assert_eq!(
            el.attrs,
            vec![
                (Name::from("xmlns:db"), DIALBACK.to_string()),
                (Name::from("db:type"), "x".to_string()),
            ]
        );
        let a = el.child("a", "urn:foo").unwrap();
        assert_eq!(a.attr("xmlns:foo"), Some("urn:foo"));
        assert_eq!(a.attr("foo:b"), Some("1"));
        let c = el.child("c", ns::CLIENT).unwrap();
        assert_eq!(c.attr("xmlns:foo"), Some("urn:other"));
        // What was parsed can be written back and parsed to the same tree.
        assert_eq!(parse_element(&el.to_string()).unwrap(), el);
    }

    #[test]
    fn xml_lang_is_an_attribute_and_xmlns_is_not() {
        let el = only_element(&format!(
            "{C2S}<message xml:lang='de' xmlns:unused='urn:u'><body xmlns='jabber:client'/></message>"
        ));
        assert_eq!(el.attrs, vec![(Name::from("xml:lang"), "de".to_string())]);
        assert!(el.child("body", ns::CLIENT).unwrap().attrs.is_empty());
    }

    #[test]
    fn component_and_other_stream_prefixes() {
        let events = parse_all(
            "<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' \
             to='comp.example'><s:error/></s:stream>",
        )
        .unwrap();
        assert!(matches!(&events[0], StreamEvent::Open(h) if h.default_ns == COMPONENT_ACCEPT));
        assert_eq!(
            events[1],
            StreamEvent::Element(Element::new("error", STREAM_NS))
        );
        assert_eq!(events[2], StreamEvent::Close);
    }

    #[test]
    fn self_closing_root_opens_and_closes() {
        let events = parse_all(&C2S.replace("'1.0'>", "'1.0'/>")).unwrap();
        assert!(matches!(events[0], StreamEvent::Open(_)));
        assert_eq!(events[1], StreamEvent::Close);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn bytes_after_close_are_never_parsed() {
        let mut p = StreamParser::new(limits());
        let mut out = Vec::new();
        p.feed(format!("{C2S}</stream:stream><junk &bad;").as_bytes())
            .unwrap();
        drain(&mut p, &mut out).unwrap();
        assert_eq!(out.last(), Some(&StreamEvent::Close));
        p.feed(b"\x00\xFFmore junk").unwrap();
        assert_eq!(p.next_event(), Ok(None));
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn cdata_sections_become_text() {
        let el = only_element(&format!(
            "{C2S}<message><body>a<![CDATA[ <b>&amp;</b> ]]>c<![CDATA[]]></body></message>"
        ));
        let body = el.child("body", ns::CLIENT).unwrap();
        assert_eq!(body.children, vec![Node::Text("a <b>&amp;</b> c".into())]);
    }

    #[test]
    fn numeric_character_references() {
        let el = only_element(&format!(
            "{C2S}<message id='&#x41;&#66;&#x1F600;'><body>&#x48;&#105;&#xa;&#x10FFFF;&#13;</body>\
             </message>"
        ));
        assert_eq!(el.attr("id"), Some("AB\u{1F600}"));
        assert_eq!(
            el.child_text("body", ns::CLIENT).unwrap(),
            "Hi\n\u{10FFFF}\r"
        );
        for bad in [
            "&#0;",
            "&#x0;",
            "&#1;",
            "&#xFFFF;",
            "&#xD800;",
            "&#x110000;",
            "&#X41;",
            "&#;",
            "&#-1;",
        ] {
            let e = stanza_error(&format!("<message><body>{bad}</body></message>"));
            assert!(matches!(e, XmlError::NotWellFormed(_)), "{bad}: {e:?}");
            let e = stanza_error(&format!("<message id='{bad}'/>"));
            assert!(matches!(e, XmlError::NotWellFormed(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn attribute_values_are_normalised() {
        let el = only_element(&format!(
            "{C2S}<message id='a\tb\r\nc\nd&#10;e' to=\"&apos;\"/>"
        ));
        assert_eq!(el.attr("id"), Some("a b c d\ne"));
        assert_eq!(el.attr("to"), Some("'"));
        // '>' and '/>' inside quoted values do not end the tag.
        let el = only_element(&format!("{C2S}<message id='a>b' to=\"x'/>y\"/>"));
        assert_eq!(el.attr("id"), Some("a>b"));
        assert_eq!(el.attr("to"), Some("x'/>y"));
    }

    // ---- errors ------------------------------------------------------------------------

    #[test]
    fn wrong_stream_namespace_is_invalid_namespace() {
        let e = error_of(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://wrong.example/streams'>",
        );
        assert!(
            matches!(e, XmlError::InvalidNamespace(ref m) if m.contains("wrong.example")),
            "{e:?}"
        );
        let e = error_of("<stream xmlns='http://etherx.jabber.org/streams'><message/></stream>");
        assert!(
            matches!(e, XmlError::InvalidNamespace(ref m) if m.contains("content namespace")),
            "{e:?}"
        );
        let e = error_of(
            "<stream:stream xmlns='urn:nope' xmlns:stream='http://etherx.jabber.org/streams'>",
        );
        assert!(
            matches!(e, XmlError::InvalidNamespace(ref m) if m.contains("urn:nope")),
            "{e:?}"
        );
        let e = error_of("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>");
        assert!(matches!(e, XmlError::InvalidNamespace(_)), "{e:?}");
        let e = error_of(
            "<stream:flow xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        );
        assert!(
            matches!(e, XmlError::BadFormat(ref m) if m.contains("flow")),
            "{e:?}"
        );
    }

    #[test]
    fn unbound_prefixes_are_bad_namespace_prefix() {
        let e = error_of("<stream:stream xmlns='jabber:client' to='x'>");
        assert_eq!(
            e,
            XmlError::BadNamespacePrefix("unbound prefix \"stream\"".into())
        );
        let e = stanza_error("<db:result>k</db:result>");
        assert_eq!(
            e,
            XmlError::BadNamespacePrefix("unbound prefix \"db\"".into())
        );
        let e = stanza_error("<message><body foo:x='1'/></message>");
        assert_eq!(
            e,
            XmlError::BadNamespacePrefix("unbound prefix \"foo\"".into())
        );
        // A prefix declared on an element is out of scope after it.
        let e = stanza_error("<message><a xmlns:p='urn:p'/><p:b/></message>");
        assert_eq!(
            e,
            XmlError::BadNamespacePrefix("unbound prefix \"p\"".into())
        );
        let e = error_of(format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='{STREAM_NS}' x:y='1'>"
        ));
        assert_eq!(
            e,
            XmlError::BadNamespacePrefix("unbound prefix \"x\"".into())
        );
    }

    #[test]
    fn encodings_other_than_utf8_are_unsupported() {
        let e = error_of(format!("<?xml version='1.0' encoding='ISO-8859-1'?>{C2S}"));
        assert_eq!(e, XmlError::UnsupportedEncoding);
        let utf16: Vec<u8> = "\u{FEFF}<stream:stream>"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(error_of(&utf16), XmlError::UnsupportedEncoding);
        let utf16le: Vec<u8> = "<stream:stream>"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(error_of(&utf16le), XmlError::UnsupportedEncoding);
        // UTF-8, with or without a byte order mark, in any letter case.
        for prolog in [
            "<?xml version='1.0' encoding='utf-8'?>",
            "\u{FEFF}",
            "\u{FEFF}<?xml version=\"1.0\" standalone='yes'?>\n",
        ] {
            let events = parse_all(&format!("{prolog}{C2S}")).unwrap();
            assert!(matches!(events[0], StreamEvent::Open(_)), "{prolog:?}");
        }
    }

    #[test]
    fn top_level_text_is_bad_format() {
        let e = stanza_error("<presence/>hello");
        assert_eq!(
            e,
            XmlError::BadFormat("character data at the stream level".into())
        );
        let e = stanza_error("&amp;");
        assert!(matches!(e, XmlError::BadFormat(_)), "{e:?}");
        let e = stanza_error("<![CDATA[x]]>");
        assert_eq!(e, XmlError::BadFormat("CDATA at the stream level".into()));
        // Before the header it is not XML at all.
        let e = error_of("GET / HTTP/1.1\r\n\r\n");
        assert!(matches!(e, XmlError::NotWellFormed(_)), "{e:?}");
    }

    #[test]
    fn restricted_xml_is_refused() {
        let doctype = format!("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>{C2S}");
        assert_eq!(
            error_of(doctype),
            XmlError::RestrictedXml("DTDs and markup declarations are not allowed".into())
        );
        let comment = XmlError::RestrictedXml("comments are not allowed".into());
        assert_eq!(error_of(format!("<!-- hi -->{C2S}")), comment);
        assert_eq!(stanza_error("<!-- hi -->"), comment);
        assert_eq!(stanza_error("<message><!-- hi --></message>"), comment);
        let pi = XmlError::RestrictedXml("processing instructions are not allowed".into());
        assert_eq!(stanza_error("<message><?php x ?></message>"), pi);
        assert_eq!(stanza_error("<?xml version='1.0'?>"), pi);
        assert_eq!(error_of(format!("<?xml-stylesheet href='a'?>{C2S}")), pi);
        // The declaration must come first.
        assert_eq!(error_of(format!(" <?xml version='1.0'?>{C2S}")), pi);
        assert_eq!(
            stanza_error("<message><body>&nbsp;</body></message>"),
            XmlError::RestrictedXml("entity reference &nbsp; is not allowed".into())
        );
        assert_eq!(
            stanza_error("<message to='&foo;'/>"),
            XmlError::RestrictedXml("entity reference &foo; is not allowed".into())
        );
        assert!(matches!(
            stanza_error("<message><!ELEMENT x ANY></message>"),
            XmlError::RestrictedXml(_)
        ));
    }

    #[test]
    fn malformed_input_is_not_well_formed() {
        let cases: &[(&[u8], &str)] = &[
            (b"<message><body>\xFF\xFE</body></message>", "invalid UTF-8"),
            (b"<message><body>\xC3</body></message>", "invalid UTF-8"),
            (b"<message to='\xED\xA0\x80'/>", "invalid UTF-8"),
            (
                b"<message><body>\x01</body></message>",
                "character not allowed",
            ),
            (b"<message to='\x1B'/>", "character not allowed"),
            (
                b"<message><body>\xEF\xBF\xBF</body></message>",
                "character not allowed",
            ),
            (b"<message><body></message>", "does not match"),
            (b"<message></body>", "does not match"),
            (b"<message to='a' to='b'/>", "duplicate attribute"),
            (
                b"<message xmlns:a='urn:x' xmlns:b='urn:x' a:t='1' b:t='2'/>",
                "duplicate attribute",
            ),
            (b"<message to>", "expected '='"),
            (b"<message to=a>", "must be quoted"),
            (b"<message to='a'id='b'>", "separated by white space"),
            (b"<message to='<'/>", "'<' in an attribute"),
            (b"<1message/>", "invalid name"),
            (b"<a:b:c xmlns:a='u'/>", "invalid name"),
            (b"< message/>", "invalid name"),
            (b"<message><body>a ]]> b</body></message>", "']]>'"),
            (b"<message><body>a & b</body></message>", "malformed entity"),
            (b"<message><body>&amp</body></message>", "malformed entity"),
            (b"<message xmlns:p=''/>", "cannot be undeclared"),
            (b"<message xmlns:xml='urn:x'/>", "xml prefix"),
            (b"<!x>", "malformed markup"),
        ];
        for (stanza, needle) in cases {
            let mut input = C2S.as_bytes().to_vec();
            input.extend_from_slice(stanza);
            let e = error_of(&input);
            assert!(
                matches!(&e, XmlError::NotWellFormed(m) if m.contains(needle)),
                "{}: {e:?}",
                String::from_utf8_lossy(stanza)
            );
        }
        let e = stanza_error("</stream:strem>");
        assert!(
            matches!(e, XmlError::NotWellFormed(ref m) if m.contains("does not match")),
            "{e:?}"
        );
        let e = error_of("</stream:stream>");
        assert!(matches!(e, XmlError::NotWellFormed(_)), "{e:?}");
        let e = error_of(format!("<?xml version='2.0'?>{C2S}"));
        assert!(
            matches!(e, XmlError::NotWellFormed(ref m) if m.contains("version")),
            "{e:?}"
        );
    }

    #[test]
    fn errors_are_sticky_and_do_not_loop() {
        let mut p = StreamParser::new(limits());
        p.feed(format!("{C2S}<message><!-- x --></message><presence/>").as_bytes())
            .unwrap();
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        let e = p.next_event().unwrap_err();
        assert!(matches!(e, XmlError::RestrictedXml(_)));
        assert_eq!(p.buffered_len(), 0);
        for _ in 0..3 {
            assert_eq!(p.next_event(), Err(e.clone()));
            assert_eq!(p.feed(b"<presence/>"), Err(e.clone()));
        }
        p.reset();
        p.feed(C2S.as_bytes()).unwrap();
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    }

    // ---- limits ------------------------------------------------------------------------

    #[test]
    fn unterminated_huge_tag_is_refused_without_buffering_it() {
        const LIMIT: usize = 256 * 1024;
        const READ: usize = 64 * 1024;
        let mut p = StreamParser::new(Limits {
            max_stanza_bytes: LIMIT,
            max_depth: 16,
        });
        p.feed(C2S.as_bytes()).unwrap();
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        p.feed(b"<message to='").unwrap();
        let chunk = vec![b'a'; READ];
        let mut fed = 0usize;
        let mut most_buffered = 0;
        let err = loop {
            assert!(fed < 32 << 20, "a 32 MiB tag was accepted");
            if let Err(e) = p.feed(&chunk) {
                break e;
            }
            fed += READ;
            most_buffered = most_buffered.max(p.buffered_len());
            match p.next_event() {
                Err(e) => break e,
                Ok(None) => {}
                Ok(Some(ev)) => panic!("unexpected {ev:?}"),
            }
        };
        assert_eq!(
            err,
            XmlError::PolicyViolation(format!("stanza larger than {LIMIT} bytes"))
        );
        assert!(fed <= LIMIT + READ, "fed {fed}");
        assert!(most_buffered <= LIMIT + READ, "buffered {most_buffered}");
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn an_idle_stream_holds_no_buffers() {
        let mut p = StreamParser::new(Limits {
            max_stanza_bytes: 64 * 1024,
            max_depth: 16,
        });
        let mut events = Vec::new();
        let mut drain = |p: &mut StreamParser| {
            while let Some(ev) = p.next_event().unwrap() {
                events.push(ev);
            }
        };
        p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
            .unwrap();
        drain(&mut p);
        assert_eq!(p.held_bytes(), 0);
        let stanza = b"<iq type='set' id='1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>";
        // Split inside the stanza: the incomplete part is kept, then released once parsed.
        p.feed(&stanza[..40]).unwrap();
        drain(&mut p);
        assert!(p.held_bytes() > 0);
        p.feed(&stanza[40..]).unwrap();
        drain(&mut p);
        assert_eq!(p.held_bytes(), 0);
        // Two stanzas in one read, the second incomplete: its bytes stay.
        p.feed(b"<presence/><message><body>hi</bo").unwrap();
        drain(&mut p);
        assert!(p.held_bytes() > 0);
        p.feed(b"dy></message>").unwrap();
        drain(&mut p);
        assert_eq!(p.held_bytes(), 0);
        let names: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Element(el) => Some(&*el.name),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["iq", "presence", "message"]);
        let StreamEvent::Element(msg) = &events[3] else {
            panic!("expected the message")
        };
        assert_eq!(
            msg.child_text("body", "jabber:client").as_deref(),
            Some("hi")
        );
    }

    #[test]
    fn feeding_without_draining_is_bounded() {
        const LIMIT: usize = 32 * 1024;
        let mut p = StreamParser::new(Limits {
            max_stanza_bytes: LIMIT,
            max_depth: 16,
        });
        let chunk = vec![b' '; 8 * 1024];
        let mut fed = 0;
        let err = loop {
            assert!(fed < 1 << 20);
            if let Err(e) = p.feed(&chunk) {
                break e;
            }
            fed += chunk.len();
        };
        assert!(matches!(err, XmlError::PolicyViolation(_)));
        assert!(fed <= LIMIT + chunk.len());
    }

    #[test]
    fn stanza_size_limit_counts_input_bytes() {
        let lim = Limits {
            max_stanza_bytes: 100,
            max_depth: 16,
        };
        let fits = format!("<message><body>{}</body></message>", "x".repeat(100 - 32));
        assert_eq!(fits.len(), 100);
        let run = |stanza: &str| {
            let mut p = StreamParser::new(lim);
            let mut out = Vec::new();
            p.feed(C2S.as_bytes())?;
            p.feed(stanza.as_bytes())?;
            p.feed(stanza.as_bytes())?;
            drain(&mut p, &mut out).map(|_| out.len())
        };
        assert_eq!(run(&fits), Ok(3));
        let too_big = fits.replace("<body>", "<body>x");
        assert_eq!(
            run(&too_big),
            Err(XmlError::PolicyViolation(
                "stanza larger than 100 bytes".into()
            ))
        );
        // Many small stanzas are fine: the count restarts with each one.
        let mut p = StreamParser::new(lim);
        p.feed(C2S.as_bytes()).unwrap();
        let mut out = Vec::new();
        for _ in 0..100 {
            p.feed(fits.as_bytes()).unwrap();
            drain(&mut p, &mut out).unwrap();
        }
        assert_eq!(out.len(), 101);
    }

    #[test]
    fn depth_limit() {
        let lim = Limits {
            max_stanza_bytes: 64 * 1024,
            max_depth: 4,
        };
        let nest = |n: usize| {
            let mut s = String::new();
            for i in 0..n {
                s.push_str(&format!("<e{i}>"));
            }
            for i in (0..n).rev() {
                s.push_str(&format!("</e{i}>"));
            }
            s
        };
        let run = |stanza: String| {
            let mut p = StreamParser::new(lim);
            let mut out = Vec::new();
            p.feed(format!("{C2S}{stanza}").as_bytes())?;
            drain(&mut p, &mut out).map(|_| out.len())
        };
        assert_eq!(run(nest(4)), Ok(2));
        assert_eq!(run("<a><b><c><d/></c></b></a>".into()), Ok(2));
        assert_eq!(
            run(nest(5)),
            Err(XmlError::PolicyViolation(
                "elements nested deeper than 4".into()
            ))
        );
        assert_eq!(
            run("<a><b><c><d><e/></d></c></b></a>".into()),
            Err(XmlError::PolicyViolation(
                "elements nested deeper than 4".into()
            ))
        );
    }

    #[test]
    fn namespace_bindings_in_scope_are_bounded_and_popped() {
        // The c2s root binds two (the default namespace and `stream`).
        let declaring = |n: usize| {
            let decls: String = (0..n).map(|i| format!(" xmlns:p{i}='urn:p{i}'")).collect();
            format!(
                "<message{decls}><p{last}:x/></message>",
                last = n.saturating_sub(1)
            )
        };
        let room = MAX_NAMESPACE_BINDINGS - 2;
        let el = only_element(&format!("{C2S}{}", declaring(room)));
        let last = format!("urn:p{}", room - 1);
        assert!(el.child("x", &last).is_some(), "{el:?}");
        assert_eq!(
            stanza_error(&declaring(room + 1)),
            XmlError::PolicyViolation(format!(
                "more than {MAX_NAMESPACE_BINDINGS} namespace declarations in scope"
            ))
        );
        // Siblings' declarations leave scope with them: many in one stanza are fine.
        let siblings: String = (0..3 * MAX_NAMESPACE_BINDINGS)
            .map(|i| format!("<c xmlns='urn:c{i}'/>"))
            .collect();
        let el = only_element(&format!("{C2S}<message>{siblings}</message>"));
        assert_eq!(el.children.len(), 3 * MAX_NAMESPACE_BINDINGS);
        assert!(el.child("c", "urn:c300").is_some());
        // And so do a stanza's: the next stanza sees only the root's bindings.
        let events = parse_all(&format!(
            "{C2S}<message xmlns:q='urn:q'><q:a/></message><message><q:a/></message>"
        ));
        assert!(
            matches!(events, Err(XmlError::BadNamespacePrefix(_))),
            "{events:?}"
        );
    }

    #[test]
    fn header_and_attribute_count_limits() {
        let e = error_of(format!(
            "<stream:stream a='{}'",
            "x".repeat(MAX_HEADER_BYTES)
        ));
        assert_eq!(
            e,
            XmlError::PolicyViolation(format!(
                "stream header larger than {MAX_HEADER_BYTES} bytes"
            ))
        );
        let e = error_of(" ".repeat(MAX_HEADER_BYTES + 1));
        assert!(matches!(e, XmlError::PolicyViolation(_)));
        let attrs = |n: usize| (0..n).map(|i| format!(" a{i}=''")).collect::<String>();
        let el = only_element(&format!("{C2S}<message{}/>", attrs(MAX_ATTRIBUTES)));
        assert_eq!(el.attrs.len(), MAX_ATTRIBUTES);
        let e = stanza_error(&format!("<message{}/>", attrs(MAX_ATTRIBUTES + 1)));
        assert_eq!(
            e,
            XmlError::PolicyViolation(format!(
                "more than {MAX_ATTRIBUTES} attributes on one element"
            ))
        );
    }

    #[test]
    fn big_stanza_in_one_byte_chunks_is_linear() {
        let body = "y".repeat(200 * 1024);
        let stanza = format!("<message to='{body}'><body>{body}</body></message>");
        let mut p = StreamParser::new(Limits {
            max_stanza_bytes: 512 * 1024,
            max_depth: 16,
        });
        let mut out = Vec::new();
        p.feed(C2S.as_bytes()).unwrap();
        for b in stanza.as_bytes() {
            p.feed(std::slice::from_ref(b)).unwrap();
            drain(&mut p, &mut out).unwrap();
        }
        assert_eq!(out.len(), 2);
        let StreamEvent::Element(msg) = &out[1] else {
            panic!()
        };
        assert_eq!(
            msg.child_text("body", ns::CLIENT).unwrap().len(),
            body.len()
        );
        assert_eq!(p.buffered_len(), 0);
    }

    // ---- reset -------------------------------------------------------------------------

    #[test]
    fn reset_discards_buffered_bytes() {
        let mut p = StreamParser::new(limits());
        // A client that pipelines plaintext after <starttls/>: none of it may be parsed.
        p.feed(
            format!(
                "{C2S}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
                 <message to='evil'><body>injected</body></message>\x16\x03\x01"
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        assert!(
            matches!(p.next_event(), Ok(Some(StreamEvent::Element(ref e))) if e.name == "starttls")
        );
        assert!(p.buffered_len() > 0);
        p.reset();
        assert_eq!(p.buffered_len(), 0);
        assert_eq!(p.next_event(), Ok(None));
        // A new stream, with a new XML declaration, is expected.
        let mut out = Vec::new();
        p.feed(format!("<?xml version='1.0'?>{C2S}<presence/>").as_bytes())
            .unwrap();
        drain(&mut p, &mut out).unwrap();
        assert!(matches!(out[0], StreamEvent::Open(_)));
        assert_eq!(
            out[1],
            StreamEvent::Element(Element::new("presence", ns::CLIENT))
        );
        assert_eq!(out.len(), 2);

        // Reset in the middle of a stanza forgets the partial element and its namespaces.
        p.feed(b"<message xmlns:x='urn:x'><x:a>").unwrap();
        assert_eq!(p.next_event(), Ok(None));
        p.reset();
        p.feed(format!("{C2S}<x:a/>").as_bytes()).unwrap();
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        assert!(matches!(
            p.next_event(),
            Err(XmlError::BadNamespacePrefix(_))
        ));
    }

    // ---- parse_element -----------------------------------------------------------------

    #[test]
    fn parse_element_documents() {
        let el = parse_element(
            "<?xml version='1.0' encoding='UTF-8'?>\n\
             <server-data xmlns='urn:xmpp:pie:0'>\n  <host jid='example.com'>\
             <user name='a'><query xmlns='jabber:iq:roster'><item jid='b@example.com'/></query>\
             <offline-messages><message xmlns='jabber:client' to='a@example.com'><body>x</body>\
             </message></offline-messages></user></host>\n</server-data>\n",
        )
        .unwrap();
        assert!(el.is("server-data", ns::XEP0227));
        let user = el
            .child("host", ns::XEP0227)
            .and_then(|h| h.child("user", ns::XEP0227))
            .unwrap();
        assert!(user.child("query", ns::ROSTER).is_some());
        let msg = user
            .child("offline-messages", ns::XEP0227)
            .and_then(|o| o.child("message", ns::CLIENT))
            .unwrap();
        assert_eq!(msg.child_text("body", ns::CLIENT).unwrap(), "x");

        assert_eq!(parse_element("<a/>").unwrap(), Element::new("a", ""));
        assert_eq!(
            parse_element(" <a xmlns='jabber:server'><b/></a> ").unwrap(),
            Element::new("a", ns::SERVER).with_child(Element::new("b", ns::SERVER))
        );
        // Large documents have no size limit.
        let big = format!("<a>{}</a>", "z".repeat(1 << 20));
        assert_eq!(parse_element(&big).unwrap().text().len(), 1 << 20);
    }

    #[test]
    fn parse_element_errors() {
        let nwf = |s: &str| matches!(parse_element(s), Err(XmlError::NotWellFormed(_)));
        assert!(nwf(""));
        assert!(nwf("   "));
        assert!(nwf("<a>"));
        assert!(nwf("<a></a"));
        assert!(nwf("<a/><b/>"));
        assert!(nwf("<a/>x"));
        assert!(nwf("<a/><"));
        assert!(nwf("<a></b>"));
        assert!(nwf("text"));
        assert_eq!(
            parse_element("<a/><!-- c -->"),
            Err(XmlError::RestrictedXml("comments are not allowed".into()))
        );
        assert!(matches!(
            parse_element("<!DOCTYPE a><a/>"),
            Err(XmlError::RestrictedXml(_))
        ));
        assert!(matches!(
            parse_element("<a>&ent;</a>"),
            Err(XmlError::RestrictedXml(_))
        ));
        assert!(matches!(
            parse_element("<p:a/>"),
            Err(XmlError::BadNamespacePrefix(_))
        ));
        assert_eq!(
            parse_element("<?xml version='1.0' encoding='latin1'?><a/>"),
            Err(XmlError::UnsupportedEncoding)
        );
        let deep = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(parse_element(&deep(256)).is_ok());
        assert_eq!(
            parse_element(&deep(257)),
            Err(XmlError::PolicyViolation(
                "elements nested deeper than 256".into()
            ))
        );
    }

    // ---- property test -----------------------------------------------------------------

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn xml_text() -> impl Strategy<Value = String> {
            proptest::collection::vec(any::<char>(), 0..24).prop_map(|cs| {
                cs.into_iter()
                    .filter(|&c| {
                        !matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}'
                            | '\u{FFFE}' | '\u{FFFF}' | '\r')
                    })
                    .collect()
            })
        }

        /// Events produced before the end or the first error, and that error.
        fn outcome(input: &[u8], cuts: &[usize]) -> (Vec<StreamEvent>, Option<XmlError>) {
            let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
            cuts.sort_unstable();
            let mut p = StreamParser::new(limits());
            let mut out = Vec::new();
            let mut start = 0;
            for c in cuts.into_iter().chain([input.len()]) {
                let res = p
                    .feed(&input[start..c])
                    .and_then(|_| drain(&mut p, &mut out));
                if let Err(e) = res {
                    return (out, Some(e));
                }
                start = c;
            }
            (out, None)
        }

        /// SAMPLE with random edits, biased towards bytes that matter to XML.
        fn mutated_sample() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![
                proptest::sample::select(b"<>/'\"&;!?[]-:= x\r\n\t".to_vec()),
                any::<u8>(),
            ];
            let edit = (any::<usize>(), 0u8..3, byte);
            proptest::collection::vec(edit, 1..6).prop_map(|edits| {
                let mut v = SAMPLE.as_bytes().to_vec();
                for (at, op, b) in edits {
                    let i = at % (v.len() + 1);
                    match op {
                        0 => v.insert(i, b),
                        1 if i < v.len() => v[i] = b,
                        _ if i < v.len() => {
                            v.remove(i);
                        }
                        _ => {}
                    }
                }
                v
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            #[test]
            fn random_chunkings_give_the_same_events(
                cuts in proptest::collection::vec(0usize..SAMPLE.len(), 0..40)
            ) {
                let whole = parse_chunked(SAMPLE.as_bytes(), &[]).unwrap();
                prop_assert_eq!(parse_chunked(SAMPLE.as_bytes(), &cuts).unwrap(), whole);
            }

            #[test]
            fn random_text_round_trips_through_any_chunking(
                body in xml_text(),
                attr in xml_text(),
                cuts in proptest::collection::vec(0usize..4096, 0..24),
            ) {
                let stanza = Element::new("message", ns::CLIENT)
                    .with_attr("id", attr.clone())
                    .with_child(Element::new("body", ns::CLIENT).with_text(body.clone()));
                let input = format!(
                    "{C2S}{} {}</stream:stream>",
                    stanza.to_stream_string(ns::CLIENT),
                    stanza.to_stream_string(ns::CLIENT)
                );
                let whole = parse_chunked(input.as_bytes(), &[]).unwrap();
                let mut expected = stanza.clone();
                if body.is_empty() {
                    expected.children[0] = Node::Element(Element::new("body", ns::CLIENT));
                }
                prop_assert_eq!(whole.len(), 4);
                prop_assert_eq!(&whole[1], &StreamEvent::Element(expected));
                let cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
                prop_assert_eq!(parse_chunked(input.as_bytes(), &cuts).unwrap(), whole);
            }

            /// Whatever the input, chunking never changes the outcome (events and error), and
            /// nothing panics.
            #[test]
            fn mutated_input_is_chunking_independent(
                input in mutated_sample(),
                cuts in proptest::collection::vec(any::<usize>(), 0..24),
            ) {
                let whole = outcome(&input, &[]);
                prop_assert_eq!(outcome(&input, &cuts), whole.clone());
                let bytewise: Vec<usize> = (1..input.len()).collect();
                prop_assert_eq!(outcome(&input, &bytewise), whole);
            }

            #[test]
            fn arbitrary_bytes_never_panic(
                input in proptest::collection::vec(any::<u8>(), 0..256),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let whole = outcome(&input, &[]);
                prop_assert_eq!(outcome(&input, &cuts), whole);
                if let Ok(text) = std::str::from_utf8(&input) {
                    let _ = parse_element(text);
                }
            }
        }
    }
}
