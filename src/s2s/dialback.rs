//! XEP-0220: Server Dialback, with keys generated as XEP-0185 recommends.
//!
//! key = HEX( HMAC-SHA256( HEX(SHA256(secret)), receiving + ' ' + originating + ' ' + id ) )
//!
//! The secret is ours alone: only this server (the authoritative one for its domains) can
//! tell whether a key it is asked about (`<db:verify/>`) is one it made for that stream.
//! Pure functions; the exchanges themselves live in `inbound` and `outbound`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::xml::{escape, Element};

/// `jabber:server:dialback`, the `db:` prefix.
pub const NS: &str = "jabber:server:dialback";
/// The stream feature announcing dialback (XEP-0220 §2.4).
pub const FEATURE_NS: &str = "urn:xmpp:features:dialback";

/// The dialback secret: derived from the server secret so that keys stay valid across
/// restarts.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A dialback secret of its own, derived from the server secret.
    pub fn new(server_secret: &[u8]) -> Secret {
        let mut h = Sha256::new();
        h.update(b"oriole dialback\0");
        h.update(server_secret);
        Secret(h.finalize().to_vec())
    }

    /// The secret as XEP-0185 names it (for its test vector).
    pub fn from_raw(secret: &[u8]) -> Secret {
        Secret(secret.to_vec())
    }

    /// The key `originating` presents to `receiving` on the stream with this id.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let k = hex(&Sha256::digest(&self.0));
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(k.as_bytes()) else {
            // HMAC accepts keys of any length.
            return String::new();
        };
        mac.update(receiving.as_bytes());
        mac.update(b" ");
        mac.update(originating.as_bytes());
        mac.update(b" ");
        mac.update(stream_id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `key` is the one we made (constant time).
    pub fn check(&self, receiving: &str, originating: &str, stream_id: &str, key: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.key(receiving, originating, stream_id);
        expected.len() == key.len() && bool::from(expected.as_bytes().ct_eq(key.as_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A dialback element read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    /// `<db:result from to>key</db:result>` (request) or with `type` (answer).
    Result {
        from: String,
        to: String,
        kind: Option<String>,
        key: String,
    },
    /// `<db:verify from to id>key</db:verify>` (request) or with `type` (answer).
    Verify {
        from: String,
        to: String,
        id: String,
        kind: Option<String>,
        key: String,
    },
}

impl Db {
    /// Read a dialback element; `None` for anything else or without `from`/`to`.
    pub fn parse(el: &Element) -> Option<Db> {
        if el.ns != NS {
            return None;
        }
        let from = el.attr("from")?.to_ascii_lowercase();
        let to = el.attr("to")?.to_ascii_lowercase();
        let kind = el.attr("type").map(str::to_string);
        let key = el.text().trim().to_string();
        match &*el.name {
            "result" => Some(Db::Result {
                from,
                to,
                kind,
                key,
            }),
            "verify" => Some(Db::Verify {
                from,
                to,
                id: el.attr("id")?.to_string(),
                kind,
                key,
            }),
            _ => None,
        }
    }
}

/// `<db:result>` with a key (request) or a type (answer), written with the `db` prefix our
/// stream headers declare.
pub fn result(from: &str, to: &str, kind: Option<&str>, key: Option<&str>) -> String {
    let mut s = format!("<db:result from='{}' to='{}'", escape(from), escape(to));
    if let Some(k) = kind {
        s.push_str(&format!(" type='{}'", escape(k)));
    }
    match key {
        Some(key) => s.push_str(&format!(">{}</db:result>", escape(key))),
        None => s.push_str("/>"),
    }
    s
}

/// `<db:verify>` with a key (request) or a type (answer).
pub fn verify(from: &str, to: &str, id: &str, kind: Option<&str>, key: Option<&str>) -> String {
    let mut s = format!(
        "<db:verify from='{}' to='{}' id='{}'",
        escape(from),
        escape(to),
        escape(id)
    );
    if let Some(k) = kind {
        s.push_str(&format!(" type='{}'", escape(k)));
    }
    match key {
        Some(key) => s.push_str(&format!(">{}</db:verify>", escape(key))),
        None => s.push_str("/>"),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parser::parse_element;

    #[test]
    fn keys_depend_on_every_input() {
        let s = Secret::new(b"one");
        let k = s.key("r.example", "o.example", "id1");
        assert_eq!(k.len(), 64);
        assert!(s.check("r.example", "o.example", "id1", &k));
        assert!(!s.check("r.example", "o.example", "id2", &k));
        assert!(!s.check("x.example", "o.example", "id1", &k));
        assert!(!s.check("r.example", "x.example", "id1", &k));
        assert!(!Secret::new(b"two").check("r.example", "o.example", "id1", &k));
        assert!(!s.check("r.example", "o.example", "id1", ""));
    }

    #[test]
    fn xep0185_example_key() {
        let s = Secret::from_raw(b"s3cr3tf0rd14lb4ck");
        assert_eq!(
            s.key("xmpp.example.com", "example.org", "D60000229F"),
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
    }

    #[test]
    fn elements_round_trip() {
        let el = parse_element(&format!(
            "<db:result xmlns:db='{NS}' from='A.example' to='b.example'>k1</db:result>"
        ))
        .unwrap();
        assert_eq!(
            Db::parse(&el),
            Some(Db::Result {
                from: "a.example".into(),
                to: "b.example".into(),
                kind: None,
                key: "k1".into()
            })
        );
        let el = parse_element(&format!(
            "<db:verify xmlns:db='{NS}' from='a' to='b' id='i' type='valid'/>"
        ))
        .unwrap();
        assert_eq!(
            Db::parse(&el),
            Some(Db::Verify {
                from: "a".into(),
                to: "b".into(),
                id: "i".into(),
                kind: Some("valid".into()),
                key: String::new()
            })
        );
        let el = parse_element(&format!("<db:verify xmlns:db='{NS}' from='a' to='b'/>")).unwrap();
        assert_eq!(Db::parse(&el), None);
        assert_eq!(
            result("a", "b", Some("valid"), None),
            "<db:result from='a' to='b' type='valid'/>"
        );
        assert_eq!(
            verify("a", "b", "i'd", None, Some("k")),
            "<db:verify from='a' to='b' id='i&apos;d'>k</db:verify>"
        );
    }
}
