//! Jabber IDs (RFC 7622): `node@domain/resource`, split, validated and normalised.
//!
//! Normalisation here is a pragmatic subset of PRECIS: the node and domain are case-folded
//! (Unicode lowercase), a trailing dot on the domain is dropped, and the characters that
//! RFC 7622 forbids in a localpart are refused. Each part is limited to 1023 bytes. The full
//! PRECIS profiles (width mapping, NFC) are not applied yet; see `xeps/README.md`.

use std::fmt;
use std::hash::{Hash, Hasher};

/// Why a string is not a valid JID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JidError {
    Empty,
    EmptyPart,
    TooLong,
    ForbiddenCharacter,
}

impl fmt::Display for JidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JidError::Empty => "empty JID",
            JidError::EmptyPart => "empty localpart, domainpart or resourcepart",
            JidError::TooLong => "a JID part is longer than 1023 bytes",
            JidError::ForbiddenCharacter => "forbidden character in JID",
        })
    }
}

impl std::error::Error for JidError {}

/// Any JID: a bare or full address, or a bare domain.
///
/// Kept as its normalised text (`node@domain/resource`) in one allocation, with the
/// boundaries of the parts: routing parses, clones and compares JIDs for every stanza, and
/// one allocation instead of three per JID is measurable there. The text decides equality:
/// a node or domain cannot contain `@` or `/`, so the same text always means the same parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Jid {
    text: Box<str>,
    /// Length of the node (0: no node; a node is never empty).
    node_len: u16,
    /// Where the domain ends: the resource, if any, starts one byte (`/`) after it.
    domain_end: u16,
}

// Written out (not derived) because [`BareOf`] must hash a JID's bare part exactly as this
// hashes a bare JID.
impl Hash for Jid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bare_text().hash(state);
        self.resource().hash(state);
    }
}

/// Ordered by node (none first), then domain, then resource (none first).
impl Ord for Jid {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.node(), self.domain(), self.resource()).cmp(&(
            other.node(),
            other.domain(),
            other.resource(),
        ))
    }
}

impl PartialOrd for Jid {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jid")
            .field("node", &self.node())
            .field("domain", &self.domain())
            .field("resource", &self.resource())
            .finish()
    }
}

/// A hash map keyed by bare JIDs that any JID's bare part can be looked up in without
/// building the bare JID: `map.get(&BareOf(&full))`.
pub type BareMap<V> = hashbrown::HashMap<Jid, V>;

/// The bare part of a JID, as a [`BareMap`] key.
pub struct BareOf<'a>(pub &'a Jid);

impl Hash for BareOf<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.bare_text().hash(state);
        None::<&str>.hash(state);
    }
}

impl hashbrown::Equivalent<Jid> for BareOf<'_> {
    fn equivalent(&self, key: &Jid) -> bool {
        key.is_bare() && *key.text == *self.0.bare_text()
    }
}

/// A JID without a resource: an account (`user@domain`) or a domain.
pub type BareJid = Jid;

const LOCALPART_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

/// Each part's limit in bytes (RFC 7622 §3.1).
const MAX_PART: usize = 1023;

/// Append `part` case-folded: ASCII in place (the usual case, no intermediate string),
/// Unicode lowercase otherwise.
fn push_folded(out: &mut String, part: &str) {
    if part.is_ascii() {
        let start = out.len();
        out.push_str(part);
        out[start..].make_ascii_lowercase();
    } else {
        out.push_str(&part.to_lowercase());
    }
}

/// Whether an ASCII byte is white space or a control character (`char::is_whitespace` or
/// `char::is_control` for ASCII).
const fn is_ascii_space_or_control(b: u8) -> bool {
    b <= b' ' || b == 0x7f
}

/// A table of the ASCII bytes a part refuses: white space, controls and `also`.
const fn ascii_forbidden(also: &[char]) -> [bool; 128] {
    let mut t = [false; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = is_ascii_space_or_control(b as u8);
        b += 1;
    }
    let mut i = 0;
    while i < also.len() {
        t[also[i] as usize] = true;
        i += 1;
    }
    t
}

const LOCALPART_FORBIDDEN_ASCII: [bool; 128] = ascii_forbidden(LOCALPART_FORBIDDEN);
const DOMAIN_FORBIDDEN_ASCII: [bool; 128] = ascii_forbidden(DOMAIN_FORBIDDEN);
const RESOURCE_FORBIDDEN_ASCII: [bool; 128] = {
    // Resources may contain spaces and any printable character; controls are refused.
    let mut t = [false; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = b < 0x20 || b == 0x7f;
        b += 1;
    }
    t
};

/// Check every character of a part: a table look-up per byte when it is ASCII (nearly
/// always), characters otherwise.
fn check_chars(
    part: &str,
    ascii_forbidden: &[bool; 128],
    forbidden: impl Fn(char) -> bool,
) -> Result<(), JidError> {
    let bad = if part.is_ascii() {
        part.bytes().any(|b| ascii_forbidden[usize::from(b & 0x7f)])
    } else {
        part.chars().any(forbidden)
    };
    if bad {
        Err(JidError::ForbiddenCharacter)
    } else {
        Ok(())
    }
}

fn check_length(part: &str) -> Result<(), JidError> {
    if part.is_empty() {
        return Err(JidError::EmptyPart);
    }
    if part.len() > MAX_PART {
        return Err(JidError::TooLong);
    }
    Ok(())
}

fn check_node(node: &str) -> Result<(), JidError> {
    check_length(node)?;
    check_chars(node, &LOCALPART_FORBIDDEN_ASCII, |c| {
        LOCALPART_FORBIDDEN.contains(&c) || c.is_whitespace() || c.is_control()
    })
}

/// Characters refused in a domain besides white space and controls.
const DOMAIN_FORBIDDEN: &[char] = &['@', '/', '\\', '<', '>', '&', '\'', '"'];

/// The domain without its trailing dot, checked.
fn check_domain(domain: &str) -> Result<&str, JidError> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    check_length(domain)?;
    check_chars(domain, &DOMAIN_FORBIDDEN_ASCII, |c| {
        c.is_whitespace() || c.is_control() || DOMAIN_FORBIDDEN.contains(&c)
    })?;
    Ok(domain)
}

fn check_resource(resource: &str) -> Result<(), JidError> {
    check_length(resource)?;
    check_chars(resource, &RESOURCE_FORBIDDEN_ASCII, |c| c.is_control())
}

impl Jid {
    /// Parse and normalise a JID string.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        let (bare, resource) = match s.bytes().position(|b| b == b'/') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (node, domain) = match bare.bytes().position(|b| b == b'@') {
            Some(i) => (Some(&bare[..i]), &bare[i + 1..]),
            None => (None, bare),
        };
        Self::from_parts(node, domain, resource)
    }

    /// Build from parts, validating and normalising each.
    pub fn from_parts(
        node: Option<&str>,
        domain: &str,
        resource: Option<&str>,
    ) -> Result<Jid, JidError> {
        if let Some(node) = node {
            check_node(node)?;
        }
        let domain = check_domain(domain)?;
        if let Some(resource) = resource {
            check_resource(resource)?;
        }
        let mut text = String::with_capacity(
            node.map_or(0, |n| n.len() + 1) + domain.len() + resource.map_or(0, |r| r.len() + 1),
        );
        if let Some(node) = node {
            push_folded(&mut text, node);
        }
        // Unicode case folding can lengthen a part; the text stays far below u16::MAX
        // (three parts of at most 1023 bytes, each at most tripled).
        let node_len = u16::try_from(text.len()).map_err(|_| JidError::TooLong)?;
        if node.is_some() {
            text.push('@');
        }
        push_folded(&mut text, domain);
        let domain_end = u16::try_from(text.len()).map_err(|_| JidError::TooLong)?;
        if let Some(resource) = resource {
            text.push('/');
            text.push_str(resource);
        }
        Ok(Jid {
            text: text.into_boxed_str(),
            node_len,
            domain_end,
        })
    }

    /// A domain JID.
    pub fn domain_jid(domain: &str) -> Result<Jid, JidError> {
        Self::from_parts(None, domain, None)
    }

    pub fn node(&self) -> Option<&str> {
        match self.node_len {
            0 => None,
            n => Some(&self.text[..usize::from(n)]),
        }
    }

    fn domain_start(&self) -> usize {
        match self.node_len {
            0 => 0,
            n => usize::from(n) + 1,
        }
    }

    pub fn domain(&self) -> &str {
        &self.text[self.domain_start()..usize::from(self.domain_end)]
    }

    pub fn resource(&self) -> Option<&str> {
        self.text.get(usize::from(self.domain_end) + 1..)
    }

    pub fn is_bare(&self) -> bool {
        usize::from(self.domain_end) == self.text.len()
    }

    pub fn is_full(&self) -> bool {
        !self.is_bare()
    }

    /// `node@domain` or `domain`: the text without the resource, borrowed.
    pub fn bare_text(&self) -> &str {
        &self.text[..usize::from(self.domain_end)]
    }

    /// `node@domain` (or `domain`), dropping the resource.
    pub fn to_bare(&self) -> Jid {
        Jid {
            text: self.bare_text().into(),
            node_len: self.node_len,
            domain_end: self.domain_end,
        }
    }

    /// The same bare JID with this resource.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        check_resource(resource)?;
        let bare = self.bare_text();
        let mut text = String::with_capacity(bare.len() + 1 + resource.len());
        text.push_str(bare);
        text.push('/');
        text.push_str(resource);
        Ok(Jid {
            text: text.into_boxed_str(),
            node_len: self.node_len,
            domain_end: self.domain_end,
        })
    }

    /// The bare part as a string.
    pub fn bare_string(&self) -> String {
        self.bare_text().to_string()
    }

    /// The whole JID as a string (what `to_string` gives, without the formatter).
    pub fn to_text(&self) -> String {
        String::from(&*self.text)
    }

    /// The whole JID as text, borrowed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// This JID without its resource, borrowed when it has none.
    pub fn as_bare(&self) -> std::borrow::Cow<'_, Jid> {
        if self.is_bare() {
            std::borrow::Cow::Borrowed(self)
        } else {
            std::borrow::Cow::Owned(self.to_bare())
        }
    }

    /// Whether `text` is exactly this JID's bare part as [`Jid::bare_string`] writes it.
    pub fn is_bare_text(&self, text: &str) -> bool {
        text == self.bare_text()
    }

    /// Whether both JIDs have the same bare part (`to_bare() == other.to_bare()`, without
    /// building either).
    pub fn same_bare(&self, other: &Jid) -> bool {
        self.bare_text() == other.bare_text()
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_map_is_queried_with_any_jid_of_the_account() {
        let mut map = BareMap::new();
        for key in ["a@b", "b", "a@c", "x@b/r"] {
            map.insert(Jid::parse(key).unwrap(), key);
        }
        let find = |q: &str| map.get(&BareOf(&Jid::parse(q).unwrap())).copied();
        assert_eq!(find("a@b/phone"), Some("a@b"));
        assert_eq!(find("A@b"), Some("a@b"));
        assert_eq!(find("b/r"), Some("b"));
        assert_eq!(find("a@c/x"), Some("a@c"));
        // Only bare keys are found, and only the same account's.
        assert_eq!(find("x@b/r"), None);
        assert_eq!(find("x@b"), None);
        assert_eq!(find("c@b/r"), None);
        // Ordinary lookups with the key type still work.
        assert_eq!(
            map.get(&Jid::parse("x@b/r").unwrap()).copied(),
            Some("x@b/r")
        );
    }

    #[test]
    fn text_forms_and_bare_comparison() {
        for s in ["a@b/c", "a@b", "b", "b/c", "x@y/r/s@t"] {
            let j = Jid::parse(s).unwrap();
            assert_eq!(j.to_text(), j.to_string());
            assert_eq!(j.bare_string(), j.to_bare().to_string());
        }
        let a = Jid::parse("a@b/c").unwrap();
        assert!(a.same_bare(&Jid::parse("A@b/d").unwrap()));
        assert!(a.same_bare(&Jid::parse("a@b").unwrap()));
        assert!(!a.same_bare(&Jid::parse("b/c").unwrap()));
        assert!(!a.same_bare(&Jid::parse("a@c/c").unwrap()));
        assert!(!Jid::parse("b")
            .unwrap()
            .same_bare(&Jid::parse("x@b").unwrap()));
    }

    #[test]
    fn bare_text_comparison() {
        let a = Jid::parse("alice@example.org").unwrap();
        assert!(a.is_bare_text("alice@example.org"));
        for t in [
            "alice@example.org/r",
            "alice@example.or",
            "alicе@example.org",
            "example.org",
            "alice",
            "@example.org",
            "",
        ] {
            assert!(!a.is_bare_text(t), "{t}");
        }
        let d = Jid::parse("example.org").unwrap();
        assert!(d.is_bare_text("example.org"));
        assert!(!d.is_bare_text("x@example.org"));
    }

    #[test]
    fn parses_and_normalises() {
        let j = Jid::parse("Juliet@Example.COM./balcony/Room").unwrap();
        assert_eq!(j.node(), Some("juliet"));
        assert_eq!(j.domain(), "example.com");
        assert_eq!(j.resource(), Some("balcony/Room"));
        assert_eq!(j.to_string(), "juliet@example.com/balcony/Room");
        assert_eq!(j.to_bare().to_string(), "juliet@example.com");
    }

    /// Every ASCII character: the byte table (ASCII parts) and the character rules (other
    /// parts) give the same answer for nodes, domains and resources.
    #[test]
    fn ascii_tables_agree_with_the_character_rules() {
        for b in 0u8..128 {
            let c = char::from(b);
            let (ascii, unicode) = (format!("a{c}"), format!("\u{e9}{c}"));
            assert_eq!(
                check_node(&ascii).is_ok(),
                check_node(&unicode).is_ok(),
                "{b}"
            );
            assert_eq!(
                check_domain(&ascii).is_ok(),
                check_domain(&unicode).is_ok(),
                "{b}"
            );
            assert_eq!(
                check_resource(&ascii).is_ok(),
                check_resource(&unicode).is_ok(),
                "{b}"
            );
        }
        assert!(check_node("a b").is_err() && check_domain("a<b").is_err());
        assert!(check_resource("a b").is_ok() && check_resource("a\u{7f}").is_err());
    }

    #[test]
    fn rejects_invalid() {
        assert_eq!(Jid::parse(""), Err(JidError::Empty));
        assert_eq!(Jid::parse("@example.com"), Err(JidError::EmptyPart));
        assert_eq!(Jid::parse("a@"), Err(JidError::EmptyPart));
        assert_eq!(Jid::parse("a@b/"), Err(JidError::EmptyPart));
        assert_eq!(Jid::parse("a b@c"), Err(JidError::ForbiddenCharacter));
        assert_eq!(Jid::parse("a'b@c"), Err(JidError::ForbiddenCharacter));
        assert_eq!(Jid::parse(&"x".repeat(1024)), Err(JidError::TooLong));
        // The byte-wise (ASCII) and character-wise checks refuse the same characters.
        for bad in [
            "a\u{7f}@b",
            "a\tb@c",
            "a:b@c",
            "a@b\\c",
            "a@b\"c",
            "a@b/x\u{1}",
        ] {
            assert_eq!(
                Jid::parse(bad),
                Err(JidError::ForbiddenCharacter),
                "{bad:?}"
            );
            let unicode = format!("é{bad}");
            assert_eq!(
                Jid::parse(&unicode),
                Err(JidError::ForbiddenCharacter),
                "{unicode:?}"
            );
        }
        assert!(Jid::parse("é@b/x\u{85}y").is_err());
        assert!(Jid::parse("a@b/x y:z@w").is_ok());
    }

    #[test]
    fn parts_survive_case_folding_that_changes_lengths() {
        // 'İ' (2 bytes) folds to "i̇" (3 bytes): the part boundaries follow the folded text.
        let j = Jid::parse("İx@ÉXAMPLE.org/Res").unwrap();
        assert_eq!(j.node(), Some("i\u{307}x"));
        assert_eq!(j.domain(), "éxample.org");
        assert_eq!(j.resource(), Some("Res"));
        assert_eq!(j.to_bare().to_string(), "i\u{307}x@éxample.org");
        let r = j.to_bare().with_resource("other").unwrap();
        assert_eq!(r.resource(), Some("other"));
        assert!(r.same_bare(&j));
    }

    #[test]
    fn ordered_by_node_then_domain_then_resource() {
        let mut v: Vec<Jid> = ["b@a", "a", "a@b/r", "a@b", "a/r", "c"]
            .iter()
            .map(|s| Jid::parse(s).unwrap())
            .collect();
        v.sort();
        let texts: Vec<String> = v.iter().map(|j| j.to_string()).collect();
        assert_eq!(texts, ["a", "a/r", "c", "a@b", "a@b/r", "b@a"]);
    }

    #[test]
    fn domain_only() {
        let j = Jid::parse("example.org").unwrap();
        assert!(j.node().is_none() && j.is_bare());
    }
}
