//! Incremental XMPP stream parser. (STUB: being written.)
use super::Element;

/// Bounds the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest stanza (top-level element below the stream root), in bytes of input.
    pub max_stanza_bytes: usize,
    /// Deepest nesting inside a stanza.
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

pub struct StreamParser {
    _limits: Limits,
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        StreamParser { _limits: limits }
    }
    pub fn feed(&mut self, _bytes: &[u8]) -> Result<(), XmlError> {
        todo!()
    }
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        todo!()
    }
    pub fn reset(&mut self) {}
}

/// Parse one complete element from a string (stored stanzas, XEP-0227 files). Same
/// restrictions as the stream parser.
pub fn parse_element(_text: &str) -> Result<Element, XmlError> {
    todo!()
}
