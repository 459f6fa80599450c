//! XEP-0115: Entity Capabilities (the server's side, for PEP's `+notify` filtering).
//!
//! Reads `<c xmlns='http://jabber.org/protocol/caps' hash node ver/>` from presence, builds the
//! §5.1 verification string from a disco#info result and checks the `ver` against it (§5.4:
//! duplicate identities or features, or a form without FORM_TYPE, fail). Verified feature
//! lists are cached by (hash, ver) in [`CapsCache`]; legacy caps without `hash` are ignored.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use sha1::Digest as _;

use crate::proto::ns;
use crate::xml::Element;

pub const CAPS: &str = "http://jabber.org/protocol/caps";

/// Most cached verification strings (a cache, not a record: it is cleared when full).
pub const MAX_CACHED: usize = 4096;

/// The caps element of a presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub hash: String,
    pub node: String,
    pub ver: String,
}

impl Caps {
    /// From `<c/>` in a presence stanza; `None` without one or for legacy caps.
    pub fn of_presence(presence: &Element) -> Option<Caps> {
        let c = presence.child("c", CAPS)?;
        Some(Caps {
            hash: c.attr("hash")?.to_ascii_lowercase(),
            node: c.attr("node").unwrap_or_default().to_string(),
            ver: c.attr("ver")?.to_string(),
        })
    }

    /// The cache key.
    pub fn key(&self) -> (String, String) {
        (self.hash.clone(), self.ver.clone())
    }
}

/// A form field: var and values.
type Field = (String, Vec<String>);

/// Whether the server can check this hash.
pub fn supported_hash(hash: &str) -> bool {
    matches!(hash, "sha-1" | "sha-256" | "sha-512")
}

/// Base64 of the hash of `s`.
pub fn hash(alg: &str, s: &str) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    Some(match alg {
        "sha-1" => b64.encode(sha1::Sha1::digest(s.as_bytes())),
        "sha-256" => b64.encode(sha2::Sha256::digest(s.as_bytes())),
        "sha-512" => b64.encode(sha2::Sha512::digest(s.as_bytes())),
        _ => return None,
    })
}

/// The XEP-0115 §5.1 verification string of a disco#info `<query/>`, or `None` when §5.4
/// says the result must not be accepted.
pub fn verification_string(query: &Element) -> Option<String> {
    let mut identities: Vec<(String, String, String, String)> = query
        .elements()
        .filter(|e| e.is("identity", ns::DISCO_INFO))
        .map(|e| {
            let a = |n: &str| e.attr(n).unwrap_or_default().to_string();
            let lang = e.attr("xml:lang").unwrap_or_default().to_string();
            (a("category"), a("type"), lang, a("name"))
        })
        .collect();
    identities.sort();
    if identities.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let mut features: Vec<String> = query
        .elements()
        .filter(|e| e.is("feature", ns::DISCO_INFO))
        .filter_map(|e| e.attr("var").map(str::to_string))
        .collect();
    features.sort();
    if features.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let mut forms: Vec<(String, Vec<Field>)> = Vec::new();
    for x in query
        .elements()
        .filter(|e| e.is("x", ns::DATA_FORMS) && e.attr("type") == Some("result"))
    {
        let mut form_type = None;
        let mut fields = Vec::new();
        for f in x.elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
            let var = f.attr("var").unwrap_or_default().to_string();
            let mut values: Vec<String> = f
                .elements()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(|v| v.text())
                .collect();
            if var == "FORM_TYPE" {
                if f.attr("type") != Some("hidden") || values.len() != 1 {
                    return None;
                }
                form_type = values.pop();
            } else {
                values.sort();
                fields.push((var, values));
            }
        }
        // §5.4 3.6: a form without a hidden FORM_TYPE is ignored.
        let Some(form_type) = form_type else { continue };
        fields.sort();
        forms.push((form_type, fields));
    }
    forms.sort_by(|a, b| a.0.cmp(&b.0));
    if forms.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let mut s = String::new();
    for (category, kind, lang, name) in &identities {
        s.push_str(&format!("{category}/{kind}/{lang}/{name}<"));
    }
    for f in &features {
        s.push_str(f);
        s.push('<');
    }
    for (form_type, fields) in &forms {
        s.push_str(form_type);
        s.push('<');
        for (var, values) in fields {
            s.push_str(var);
            s.push('<');
            for v in values {
                s.push_str(v);
                s.push('<');
            }
        }
    }
    Some(s)
}

/// Whether a disco#info result proves `caps`; its feature list if so.
pub fn verify(caps: &Caps, query: &Element) -> Option<Vec<String>> {
    let s = verification_string(query)?;
    if hash(&caps.hash, &s)? != caps.ver {
        return None;
    }
    Some(
        query
            .elements()
            .filter(|e| e.is("feature", ns::DISCO_INFO))
            .filter_map(|e| e.attr("var").map(str::to_string))
            .collect(),
    )
}

/// Verified feature lists by (hash, ver).
#[derive(Default)]
pub struct CapsCache {
    map: HashMap<(String, String), Arc<Vec<String>>>,
}

impl CapsCache {
    pub fn get(&self, caps: &Caps) -> Option<Arc<Vec<String>>> {
        self.map.get(&caps.key()).cloned()
    }

    pub fn insert(&mut self, caps: &Caps, features: Vec<String>) {
        if self.map.len() >= MAX_CACHED {
            self.map.clear();
        }
        self.map.insert(caps.key(), Arc::new(features));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parser::parse_element;

    #[test]
    fn simple_generation_example_of_section_5_2() {
        let q = parse_element(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
             <identity category='client' name='Exodus 0.9.1' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/></query>",
        )
        .expect("xml");
        assert_eq!(
            verification_string(&q).as_deref(),
            Some("client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<")
        );
        let caps = Caps {
            hash: "sha-1".into(),
            node: "http://code.google.com/p/exodus".into(),
            ver: "QgayPKawpkPSDYmwT/WM94uAlu0=".into(),
        };
        assert_eq!(verify(&caps, &q).map(|f| f.len()), Some(4));
        let wrong = Caps {
            ver: "AAAAPKawpkPSDYmwT/WM94uAlu0=".into(),
            ..caps
        };
        assert_eq!(verify(&wrong, &q), None);
    }

    #[test]
    fn complex_generation_example_of_section_5_3() {
        let q = parse_element(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
             <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/>\
             <x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
             <field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>\
             <field var='os'><value>Mac</value></field>\
             <field var='os_version'><value>10.5.1</value></field>\
             <field var='software'><value>Psi</value></field>\
             <field var='software_version'><value>0.11</value></field>\
             </x></query>",
        )
        .expect("xml");
        let caps = Caps {
            hash: "sha-1".into(),
            node: "http://psi-im.org".into(),
            ver: "q07IKJEyjvHSyhy//CH0CxmKi8w=".into(),
        };
        assert!(verify(&caps, &q).is_some(), "{:?}", verification_string(&q));
    }

    #[test]
    fn duplicates_are_refused() {
        let q = parse_element(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <feature var='a'/><feature var='a'/></query>",
        )
        .expect("xml");
        assert_eq!(verification_string(&q), None);
    }

    #[test]
    fn presence_caps_are_read_and_legacy_caps_ignored() {
        let p = parse_element(
            "<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
        )
        .expect("xml");
        assert_eq!(
            Caps::of_presence(&p),
            Some(Caps {
                hash: "sha-1".into(),
                node: "n".into(),
                ver: "v".into()
            })
        );
        let legacy = parse_element(
            "<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' node='n' ver='1.0'/></presence>",
        )
        .expect("xml");
        assert_eq!(Caps::of_presence(&legacy), None);
    }
}
