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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Jid {
    node: Option<String>,
    domain: String,
    resource: Option<String>,
}

// Written out (not derived) because [`BareOf`] must hash a JID's bare part exactly as this
// hashes a bare JID.
impl Hash for Jid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.node.hash(state);
        self.domain.hash(state);
        self.resource.hash(state);
    }
}

/// A hash map keyed by bare JIDs that any JID's bare part can be looked up in without
/// building the bare JID: `map.get(&BareOf(&full))`.
pub type BareMap<V> = hashbrown::HashMap<Jid, V>;

/// The bare part of a JID, as a [`BareMap`] key.
pub struct BareOf<'a>(pub &'a Jid);

impl Hash for BareOf<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.node.hash(state);
        self.0.domain.hash(state);
        None::<String>.hash(state);
    }
}

impl hashbrown::Equivalent<Jid> for BareOf<'_> {
    fn equivalent(&self, key: &Jid) -> bool {
        key.resource.is_none() && key.node == self.0.node && key.domain == self.0.domain
    }
}

/// A JID without a resource: an account (`user@domain`) or a domain.
pub type BareJid = Jid;

const LOCALPART_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

fn normalise_node(node: &str) -> Result<String, JidError> {
    if node.is_empty() {
        return Err(JidError::EmptyPart);
    }
    if node.len() > 1023 {
        return Err(JidError::TooLong);
    }
    if node
        .chars()
        .any(|c| LOCALPART_FORBIDDEN.contains(&c) || c.is_whitespace() || c.is_control())
    {
        return Err(JidError::ForbiddenCharacter);
    }
    Ok(node.to_lowercase())
}

fn normalise_domain(domain: &str) -> Result<String, JidError> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return Err(JidError::EmptyPart);
    }
    if domain.len() > 1023 {
        return Err(JidError::TooLong);
    }
    if domain
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "@/\\<>&'\"".contains(c))
    {
        return Err(JidError::ForbiddenCharacter);
    }
    Ok(domain.to_lowercase())
}

fn check_resource(resource: &str) -> Result<String, JidError> {
    if resource.is_empty() {
        return Err(JidError::EmptyPart);
    }
    if resource.len() > 1023 {
        return Err(JidError::TooLong);
    }
    if resource.chars().any(|c| c.is_control()) {
        return Err(JidError::ForbiddenCharacter);
    }
    Ok(resource.to_string())
}

impl Jid {
    /// Parse and normalise a JID string.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        let (bare, resource) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (node, domain) = match bare.find('@') {
            Some(i) => (Some(&bare[..i]), &bare[i + 1..]),
            None => (None, bare),
        };
        Ok(Jid {
            node: node.map(normalise_node).transpose()?,
            domain: normalise_domain(domain)?,
            resource: resource.map(check_resource).transpose()?,
        })
    }

    /// Build from parts, validating each.
    pub fn from_parts(
        node: Option<&str>,
        domain: &str,
        resource: Option<&str>,
    ) -> Result<Jid, JidError> {
        Ok(Jid {
            node: node.map(normalise_node).transpose()?,
            domain: normalise_domain(domain)?,
            resource: resource.map(check_resource).transpose()?,
        })
    }

    /// A domain JID.
    pub fn domain_jid(domain: &str) -> Result<Jid, JidError> {
        Self::from_parts(None, domain, None)
    }

    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    pub fn is_full(&self) -> bool {
        self.resource.is_some()
    }

    /// `node@domain` (or `domain`), dropping the resource.
    pub fn to_bare(&self) -> Jid {
        Jid {
            node: self.node.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    /// The same bare JID with this resource.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        Ok(Jid {
            node: self.node.clone(),
            domain: self.domain.clone(),
            resource: Some(check_resource(resource)?),
        })
    }

    /// The bare part as a string.
    pub fn bare_string(&self) -> String {
        match &self.node {
            Some(n) => {
                let mut s = String::with_capacity(n.len() + 1 + self.domain.len());
                s.push_str(n);
                s.push('@');
                s.push_str(&self.domain);
                s
            }
            None => self.domain.clone(),
        }
    }

    /// The whole JID as a string (what `to_string` gives, built without the formatter: this
    /// is done for every stanza a client sends).
    pub fn to_text(&self) -> String {
        let len = self.node.as_ref().map_or(0, |n| n.len() + 1)
            + self.domain.len()
            + self.resource.as_ref().map_or(0, |r| r.len() + 1);
        let mut s = String::with_capacity(len);
        if let Some(n) = &self.node {
            s.push_str(n);
            s.push('@');
        }
        s.push_str(&self.domain);
        if let Some(r) = &self.resource {
            s.push('/');
            s.push_str(r);
        }
        s
    }

    /// This JID without its resource, borrowed when it has none.
    pub fn as_bare(&self) -> std::borrow::Cow<'_, Jid> {
        if self.is_bare() {
            std::borrow::Cow::Borrowed(self)
        } else {
            std::borrow::Cow::Owned(self.to_bare())
        }
    }

    /// Whether `text` is exactly this JID's bare part as [`Jid::bare_string`] writes it
    /// (compared without building it).
    pub fn is_bare_text(&self, text: &str) -> bool {
        match &self.node {
            Some(node) => text
                .strip_prefix(node.as_str())
                .and_then(|rest| rest.strip_prefix('@'))
                .is_some_and(|d| d == self.domain),
            None => text == self.domain,
        }
    }

    /// Whether both JIDs have the same bare part (`to_bare() == other.to_bare()`, without
    /// building either).
    pub fn same_bare(&self, other: &Jid) -> bool {
        self.node == other.node && self.domain == other.domain
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.node {
            write!(f, "{n}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
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

    #[test]
    fn rejects_invalid() {
        assert_eq!(Jid::parse(""), Err(JidError::Empty));
        assert_eq!(Jid::parse("@example.com"), Err(JidError::EmptyPart));
        assert_eq!(Jid::parse("a@"), Err(JidError::EmptyPart));
        assert_eq!(Jid::parse("a@b/"), Err(JidError::EmptyPart));
        assert_eq!(Jid::parse("a b@c"), Err(JidError::ForbiddenCharacter));
        assert_eq!(Jid::parse("a'b@c"), Err(JidError::ForbiddenCharacter));
        assert_eq!(Jid::parse(&"x".repeat(1024)), Err(JidError::TooLong));
    }

    #[test]
    fn domain_only() {
        let j = Jid::parse("example.org").unwrap();
        assert!(j.node().is_none() && j.is_bare());
    }
}
