//! Lexical helpers for the stream parser: XML names, character checks, the attribute list of a
//! complete tag, and turning raw attribute values and character data into strings (line-end
//! normalisation and entity expansion are delegated to quick-xml's helpers).
//!
//! Everything here works on one complete token that has already been cut out of the input
//! buffer and checked to be UTF-8; nothing here can panic on input.

use std::borrow::Cow;

use quick_xml::escape::{resolve_xml_entity, unescape_with, EscapeError};
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesCData, BytesText};
use quick_xml::name::QName;
use quick_xml::XmlVersion;

use super::XmlError;

/// Most attributes (namespace declarations included) accepted on one element.
pub const MAX_ATTRIBUTES: usize = 256;

/// XML white space (`S` production).
pub fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// `NameStartChar` for an ASCII byte.
fn is_ascii_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

/// `NameChar` for an ASCII byte.
fn is_ascii_name_char(b: u8) -> bool {
    is_ascii_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// An XML `Name` (colons allowed). Names are nearly always ASCII: those are checked byte by
/// byte, others character by character.
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_ascii() {
        return match b.split_first() {
            Some((&first, rest)) => {
                is_ascii_name_start(first) && rest.iter().all(|&c| is_ascii_name_char(c))
            }
            None => false,
        };
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_name_start(c) => chars.all(is_name_char),
        _ => false,
    }
}

/// A name without colon (`NCName` of Namespaces in XML).
pub fn is_ncname(s: &str) -> bool {
    !s.bytes().any(|b| b == b':') && is_name(s)
}

/// The start of `s`, for error messages (input can be huge).
pub fn excerpt(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// For an ASCII `QName` (nearly every name), checked in one pass: `Some(position of the
/// colon, if any)`. `None` for anything else, which the general path then looks at.
fn ascii_qname_colon(b: &[u8]) -> Option<Option<usize>> {
    let mut colon = None;
    let mut part_start = true;
    for (i, &c) in b.iter().enumerate() {
        if c == b':' {
            if colon.is_some() || part_start {
                return None;
            }
            colon = Some(i);
            part_start = true;
        } else if part_start {
            // Colons are handled above, so these are the NCName rules.
            if !is_ascii_name_start(c) {
                return None;
            }
            part_start = false;
        } else if !is_ascii_name_char(c) {
            return None;
        }
    }
    (!part_start).then_some(colon)
}

/// Split a qualified name into (prefix, local part), checking it is a `QName`.
pub fn split_qname(s: &str) -> Result<(Option<&str>, &str), XmlError> {
    if let Some(colon) = ascii_qname_colon(s.as_bytes()) {
        return Ok(split_at_colon(s, colon));
    }
    split_qname_general(s)
}

/// [`split_qname`] for any name.
fn split_qname_general(s: &str) -> Result<(Option<&str>, &str), XmlError> {
    let (prefix, local) = split_prefix(s);
    if !(prefix.is_none_or(is_ncname) && is_ncname(local)) {
        return Err(XmlError::NotWellFormed(format!(
            "invalid name {:?}",
            excerpt(s)
        )));
    }
    Ok((prefix, local))
}

/// Split a name at its first colon, if any: (prefix, local part). Not checked. (Names are
/// short: a plain loop costs less than a call to `memchr`, here and in the scans below.)
pub fn split_prefix(s: &str) -> (Option<&str>, &str) {
    split_at_colon(s, s.bytes().position(|b| b == b':'))
}

/// (prefix, local part) of a name with its colon at `colon`, if any.
fn split_at_colon(s: &str, colon: Option<usize>) -> (Option<&str>, &str) {
    match colon {
        // The colon is ASCII, so both sides are on character boundaries.
        Some(i) => (Some(&s[..i]), &s[i + 1..]),
        None => (None, s),
    }
}

/// Reject characters XML 1.0 does not allow (`Char` production). `s` is valid UTF-8, so only
/// C0 controls and U+FFFE/U+FFFF need looking for (surrogates cannot occur).
pub fn check_chars(s: &str) -> Result<(), XmlError> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let bad = (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r'))
            || (c == 0xEF
                && b.get(i + 1) == Some(&0xBF)
                && matches!(b.get(i + 2), Some(0xBE | 0xBF)));
        if bad {
            return Err(XmlError::NotWellFormed(
                "character not allowed in XML".to_string(),
            ));
        }
    }
    Ok(())
}

/// A start tag split into its name and raw (still escaped) attribute values.
#[derive(Debug)]
pub struct RawTag<'a> {
    pub name: &'a str,
    pub attrs: Vec<(&'a str, &'a str)>,
}

/// Parse the inside of a start tag (between `<` and `>` or `/>`).
pub fn parse_tag(content: &str) -> Result<RawTag<'_>, XmlError> {
    let name_end = content.bytes().position(is_ws).unwrap_or(content.len());
    let name = content.get(..name_end).unwrap_or_default();
    split_qname(name)?;
    let attrs = parse_attrs(content.get(name_end..).unwrap_or_default())?;
    Ok(RawTag { name, attrs })
}

fn malformed(msg: &str) -> XmlError {
    XmlError::NotWellFormed(msg.to_string())
}

/// Parse `S name='value' S name="value" ...` (attribute list or XML declaration
/// pseudo-attributes). Each attribute must be preceded by white space; values stay raw.
/// Duplicate names and more than [`MAX_ATTRIBUTES`] attributes are refused.
pub fn parse_attrs(s: &str) -> Result<Vec<(&str, &str)>, XmlError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let ws_start = i;
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        if i == ws_start {
            return Err(malformed("attributes must be separated by white space"));
        }
        if out.len() == MAX_ATTRIBUTES {
            return Err(XmlError::PolicyViolation(format!(
                "more than {MAX_ATTRIBUTES} attributes on one element"
            )));
        }
        let name_start = i;
        while i < b.len() && b[i] != b'=' && !is_ws(b[i]) {
            i += 1;
        }
        // All cut points below sit on ASCII bytes, so `get` never fails on a char boundary.
        let name = s.get(name_start..i).unwrap_or_default();
        split_qname(name)?;
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(malformed("expected '=' after an attribute name"));
        }
        i += 1;
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        let quote = match b.get(i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(malformed("attribute value must be quoted")),
        };
        i += 1;
        let Some(len) = b[i..].iter().position(|&c| c == quote || c == b'<') else {
            return Err(malformed("unterminated attribute value"));
        };
        if b[i + len] == b'<' {
            return Err(malformed("'<' in an attribute value"));
        }
        let value = s.get(i..i + len).unwrap_or_default();
        i += len + 1;
        out.push((name, value));
    }
    // Elements have a few attributes: comparing each with those before it costs less than
    // sorting a copy; long lists (up to MAX_ATTRIBUTES) are sorted.
    let duplicate = if out.len() <= 8 {
        out.iter()
            .enumerate()
            .find(|(i, (n, _))| out[..*i].iter().any(|(m, _)| m == n))
            .map(|(_, (n, _))| *n)
    } else {
        let mut names: Vec<&str> = out.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    };
    if let Some(name) = duplicate {
        return Err(XmlError::NotWellFormed(format!(
            "duplicate attribute {:?}",
            excerpt(name)
        )));
    }
    Ok(out)
}

fn escape_error(e: EscapeError) -> XmlError {
    match e {
        EscapeError::UnrecognizedEntity(_, name) if is_name(&name) => XmlError::RestrictedXml(
            format!("entity reference &{}; is not allowed", excerpt(&name)),
        ),
        EscapeError::UnrecognizedEntity(..) | EscapeError::UnterminatedEntity(_) => {
            malformed("malformed entity or character reference")
        }
        EscapeError::InvalidCharRef(e) => {
            XmlError::NotWellFormed(format!("invalid character reference: {e}"))
        }
        EscapeError::TooManyNestedEntities => {
            XmlError::RestrictedXml("nested entity expansion".to_string())
        }
    }
}

/// Normalise and unescape a raw attribute value (XML 1.0 §3.3.3: literal tab, CR and LF
/// become spaces; the five predefined entities and character references are expanded).
pub fn attr_value(raw: &str) -> Result<String, XmlError> {
    // Most values (JIDs, ids, types) have nothing to normalise, expand or refuse.
    if crate::xml::all_bytes(raw, |b| (b >= 0x20) & (b != b'&') & (b != 0xEF)) {
        return Ok(raw.to_owned());
    }
    attr_value_general(raw)
}

/// [`attr_value`] for any value: quick-xml normalises and expands, then the result is checked.
fn attr_value_general(raw: &str) -> Result<String, XmlError> {
    let attr = Attribute {
        key: QName("a"),
        value: Cow::Borrowed(raw),
    };
    let value = attr
        .normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_xml_entity)
        .map_err(|e| match e {
            quick_xml::Error::Escape(e) => escape_error(e),
            other => XmlError::NotWellFormed(other.to_string()),
        })?;
    check_chars(&value)?;
    Ok(value.into_owned())
}

/// Character data between tags: line ends normalised, references expanded.
pub fn text_value(raw: &str) -> Result<String, XmlError> {
    // Most text has no references, no CR, no `]` and no character to refuse: copy it as is.
    if crate::xml::all_bytes(raw, |b| {
        ((b >= 0x20) | (b == b'\t') | (b == b'\n')) & (b != b'&') & (b != b']') & (b != 0xEF)
    }) {
        return Ok(raw.to_owned());
    }
    text_value_general(raw)
}

/// [`text_value`] for any text: quick-xml normalises and expands, then the result is checked.
fn text_value_general(raw: &str) -> Result<String, XmlError> {
    if raw.contains("]]>") {
        return Err(malformed("']]>' in character data"));
    }
    let text = BytesText::from_escaped(raw);
    let normalized = text.xml10_content();
    let value = unescape_with(&normalized, resolve_xml_entity).map_err(escape_error)?;
    check_chars(&value)?;
    Ok(value.into_owned())
}

/// The content of a CDATA section: line ends normalised, nothing else.
pub fn cdata_value(raw: &str) -> Result<String, XmlError> {
    let value = BytesCData::new(raw).xml10_content().into_owned();
    check_chars(&value)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("stream:stream"));
        assert!(is_ncname("héllo-1.x"));
        assert!(!is_name("1abc"));
        assert!(!is_name(""));
        assert!(split_qname("a:b:c").is_err());
        assert!(split_qname(":a").is_err());
        assert!(split_qname("a:").is_err());
        assert_eq!(split_qname("db:result").unwrap(), (Some("db"), "result"));
    }

    #[test]
    fn attribute_lists() {
        let a = parse_attrs(" a='1'\tb = \"2'\" ").unwrap();
        assert_eq!(a, vec![("a", "1"), ("b", "2'")]);
        assert!(parse_attrs(" a='1'b='2'").is_err());
        assert!(parse_attrs(" a=1").is_err());
        assert!(parse_attrs(" a").is_err());
        assert!(parse_attrs(" a='1").is_err());
        assert!(parse_attrs(" a='<'").is_err());
        assert!(matches!(
            parse_attrs(" a='1' a='2'"),
            Err(XmlError::NotWellFormed(m)) if m.contains("duplicate")
        ));
    }

    proptest::proptest! {
        /// The copy-as-is shortcuts give what the general path gives, for any mix of plain
        /// text and the bytes that need work (references, line ends, `]`, controls, U+FFFE).
        #[test]
        fn shortcuts_agree_with_the_general_path(
            s in "([a-z <>'\"]|&amp;|&#1;|&bogus;|&|\\]|\\]\\]>|\r|\n|\t|\u{1}|\u{FFFE}|\u{FFFD}|é)*"
        ) {
            let err = |r: Result<String, XmlError>| r.map_err(|e| format!("{e:?}"));
            proptest::prop_assert_eq!(err(text_value(&s)), err(text_value_general(&s)));
            if !s.contains('<') {
                proptest::prop_assert_eq!(err(attr_value(&s)), err(attr_value_general(&s)));
            }
        }

        /// The one-pass check of ASCII names agrees with the general one.
        #[test]
        fn ascii_qnames_agree_with_the_general_path(s in "[a-c0-9_.:\\-\u{e9} ]{0,6}") {
            let fast = split_qname(&s).map_err(|e| format!("{e:?}"));
            let general = split_qname_general(&s).map_err(|e| format!("{e:?}"));
            proptest::prop_assert_eq!(fast, general);
        }

        /// What the writer escapes, the parser reads back unchanged (any text without the
        /// characters XML refuses).
        #[test]
        fn escaped_text_and_values_read_back(s in "([a-z <>'\"&;#\\]\r\n\t]|\u{FFFD}|é)*") {
            let mut text = String::new();
            crate::xml::escape_text(&s, &mut text);
            proptest::prop_assert_eq!(text_value(&text).ok(), Some(s.clone()));
            let mut value = String::new();
            crate::xml::escape_attr(&s, &mut value);
            proptest::prop_assert_eq!(attr_value(&value).ok(), Some(s.clone()));
        }
    }

    #[test]
    fn values() {
        assert_eq!(attr_value("a\tb\r\nc&#10;&amp;&lt;").unwrap(), "a b c\n&<");
        assert_eq!(text_value("a\r\nb\rc&#13;&gt;").unwrap(), "a\nb\nc\r>");
        assert_eq!(cdata_value("x\r\n&amp;").unwrap(), "x\n&amp;");
        assert!(matches!(
            text_value("&nbsp;"),
            Err(XmlError::RestrictedXml(_))
        ));
        assert!(matches!(
            text_value("a & b"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            text_value("&#0;"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            text_value("&#1;"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            text_value("&#xFFFE;"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            text_value("&#xD800;"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            text_value("\u{1}"),
            Err(XmlError::NotWellFormed(_))
        ));
    }
}
