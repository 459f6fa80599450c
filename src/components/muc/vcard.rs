//! XEP-0486: MUC Avatars — a room's vcard-temp (XEP-0054) and the hash of its photo.
//!
//! - `<iq type='get'><vCard xmlns='vcard-temp'/></iq>` to the room's bare JID returns the
//!   room's vCard (an empty `<vCard/>` when none is set) to anyone the room answers disco#info
//!   for.
//! - `type='set'` is for owners only (others get `forbidden`); a vCard larger than
//!   [`MAX_VCARD_BYTES`] gets `policy-violation`, a `BINVAL` that is not base64 `bad-request`;
//!   an empty `<vCard/>` removes it. It is kept with the persistent room
//!   ([`super::room::StoredRoom::vcard`]).
//! - Each `PHOTO` with a `BINVAL` gives one avatar hash: the SHA-1 (hex) of the decoded bytes,
//!   as XEP-0153 computes it. The room's disco#info advertises `vcard-temp`, and its roominfo
//!   form carries the hashes as `muc#roominfo_avatarhash` (absent without an avatar).
//! - After a change the occupants get the status 104 message XEP-0486 asks for and, as
//!   Prosody sends it, a presence from the room's bare JID with
//!   `<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>` (`<photo/>` empty: no avatar).
//!   An occupant joining a room that has an avatar gets that presence too.

use base64::Engine as _;
use sha1::Digest as _;

use super::room::{Affiliation, Out, Room};
use crate::jid::Jid;
use crate::proto::shared::SharedStanza;
use crate::proto::{ns, StanzaError};
use crate::xml::Element;

/// Largest room vCard kept, in bytes of serialised XML (the limit of account vCards).
pub const MAX_VCARD_BYTES: usize = crate::modules::vcard::MAX_VCARD_BYTES;

/// XEP-0153's presence payload.
pub const NS_VCARD_UPDATE: &str = "vcard-temp:x:update";

/// The roominfo field XEP-0486 registers.
pub const FIELD_AVATAR_HASH: &str = "muc#roominfo_avatarhash";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The avatar hashes of a vCard: one per `PHOTO` with a non-empty `BINVAL`, in order;
/// `Err` when a `BINVAL` is not base64.
pub fn avatar_hashes(vcard: &Element) -> Result<Vec<String>, StanzaError> {
    let mut hashes = Vec::new();
    for photo in vcard.elements().filter(|c| c.is("PHOTO", ns::VCARD)) {
        let Some(binval) = photo.child_text("BINVAL", ns::VCARD) else {
            continue;
        };
        let b64: String = binval.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| StanzaError::bad_request().with_text("the PHOTO BINVAL is not base64"))?;
        if bytes.is_empty() {
            continue;
        }
        let h = hex(&sha1::Sha1::digest(&bytes));
        if !hashes.contains(&h) {
            hashes.push(h);
        }
    }
    Ok(hashes)
}

/// The hashes of a stored vCard (a damaged one has none, and is logged).
pub fn stored_hashes(room: &Jid, xml: &str) -> Vec<String> {
    match crate::xml::parser::parse_element(xml) {
        Ok(v) => avatar_hashes(&v).unwrap_or_default(),
        Err(e) => {
            tracing::error!(%room, error = ?e, "a stored room vCard does not parse");
            Vec::new()
        }
    }
}

/// Whitespace-only text, which an empty `<vCard>\n</vCard>` may carry.
fn is_blank(node: &crate::xml::Node) -> bool {
    matches!(node, crate::xml::Node::Text(t) if t.trim().is_empty())
}

impl Room {
    /// The room's vCard (empty when none is set).
    pub fn vcard_get(&self) -> Result<Element, StanzaError> {
        let Some(xml) = &self.vcard else {
            return Ok(Element::new("vCard", ns::VCARD));
        };
        let v = crate::modules::services::load_stored("muc", xml)?;
        if !v.is("vCard", ns::VCARD) {
            tracing::error!(room = %self.jid, "a stored room vCard is not a vCard");
            return Err(StanzaError::internal_server_error());
        }
        Ok(v)
    }

    /// An owner sets (or, with an empty vCard, removes) the room's vCard.
    pub fn vcard_set(
        &mut self,
        from: &Jid,
        v: &Element,
        out: &mut Vec<Out>,
    ) -> Result<(), StanzaError> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err(StanzaError::forbidden().with_text("only owners may set the room's vCard"));
        }
        let (vcard, hashes) = if v.children.iter().all(is_blank) {
            (None, Vec::new())
        } else {
            let xml = v.to_string();
            if xml.len() > MAX_VCARD_BYTES {
                return Err(StanzaError::policy_violation().with_text(format!(
                    "a room vCard may be {MAX_VCARD_BYTES} bytes at most"
                )));
            }
            (Some(xml), avatar_hashes(v)?)
        };
        if vcard == self.vcard {
            return Ok(());
        }
        self.vcard = vcard;
        self.avatar_hashes = hashes;
        self.dirty = true;
        let to = self.all_jids();
        if to.is_empty() {
            return Ok(());
        }
        out.push(Out::Many(
            SharedStanza::new(super::room::config_changed_message(&self.jid, &[104])),
            to.clone().into(),
        ));
        out.push(Out::Many(
            SharedStanza::new(self.avatar_presence()),
            to.into(),
        ));
        Ok(())
    }

    /// The XEP-0153 presence from the room's bare JID announcing its avatar.
    pub(super) fn avatar_presence(&self) -> Element {
        let mut photo = Element::new("photo", NS_VCARD_UPDATE);
        if let Some(h) = self.avatar_hashes.first() {
            photo = photo.with_text(h.clone());
        }
        Element::new("presence", ns::CLIENT)
            .with_attr("from", self.jid.to_string())
            .with_child(Element::new("x", NS_VCARD_UPDATE).with_child(photo))
    }

    /// `muc#roominfo_avatarhash` for the roominfo form, when the room has an avatar.
    pub(super) fn avatar_field(&self) -> Option<Element> {
        if self.avatar_hashes.is_empty() {
            return None;
        }
        let mut f = Element::new("field", ns::DATA_FORMS)
            .with_attr("var", FIELD_AVATAR_HASH)
            .with_attr("type", "text-multi")
            .with_attr("label", "Avatar hash");
        for h in &self.avatar_hashes {
            f.push_child(Element::new("value", ns::DATA_FORMS).with_text(h.clone()));
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vcard(photos: &[&str]) -> Element {
        let mut v = Element::new("vCard", ns::VCARD);
        for p in photos {
            v.push_child(
                Element::new("PHOTO", ns::VCARD)
                    .with_child(Element::new("TYPE", ns::VCARD).with_text("image/png"))
                    .with_child(Element::new("BINVAL", ns::VCARD).with_text(*p)),
            );
        }
        v
    }

    #[test]
    fn hashes_are_sha1_of_the_decoded_bytes() {
        // "abc" is YWJj; SHA-1("abc") is the FIPS 180 example value.
        assert_eq!(
            avatar_hashes(&vcard(&["YW\nJj"])).ok(),
            Some(vec!["a9993e364706816aba3e25717850c26c9cd0d89d".to_string()])
        );
        assert_eq!(avatar_hashes(&vcard(&[])).ok(), Some(vec![]));
        assert!(avatar_hashes(&vcard(&["not base64!"])).is_err());
    }
}
