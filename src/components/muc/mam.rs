//! XEP-0313: Message Archive Management for rooms, with XEP-0359 stanza ids, XEP-0424 message
//! retraction and XEP-0425 moderated message retraction.
//!
//! # Archive
//! Each room's archive is the [`crate::storage::archive::Archive`] of the room's bare JID
//! (`room@conference.domain`), the counterpart being the sender's occupant JID. Archived:
//! groupchat messages with a body, an encrypted payload or a `<store/>` hint, unless they carry
//! a `<no-store/>`/`<no-permanent-store/>` hint; never subject changes alone. The copy
//! broadcast to occupants (and kept for history) carries `<stanza-id by='room' id='…'/>`,
//! equal to the archive id. The room option `muc#roomconfig_enablearchiving` (as in Prosody)
//! turns archiving off.
//!
//! # Queries
//! `<query xmlns='urn:xmpp:mam:2'>` (or `:1`) to the room, answered by the user archive's
//! query code ([`crate::modules::mam::run_query`]): results come from the room JID, then the
//! IQ result with `<fin/>`. Who may read: outcasts never; in members-only rooms, members,
//! admins and owners only; in open rooms with a password, occupants and affiliated users; in
//! other open rooms anyone (what the archive holds is what anyone may read by joining).
//!
//! # History
//! A persistent archived room loads its join history from the archive when the service
//! starts, so history survives a restart ([`Room::load_history`]).
//!
//! # Moderation (XEP-0425 `urn:xmpp:message-moderate:1`)
//! A moderator's `<moderate id='stanza-id'><retract xmlns='urn:xmpp:message-retract:1'/>`
//! replaces the archived message by a tombstone (`<retracted><moderated/></retracted>`, the
//! author's occupant id kept), replaces it in the join history too, and the room broadcasts
//! `<retract id><moderated by='room/nick'><occupant-id/></moderated></retract>`.
//!
//! # Retraction by the author (XEP-0424 `urn:xmpp:message-retract:1`)
//! An occupant's groupchat `<retract id='stanza-id'/>` is relayed (and archived) like any
//! message; when the archived message with that room stanza id has the sender's occupant id
//! (the same account), it becomes a tombstone `<retracted id='retraction id' stamp/>` in the
//! archive and the join history ([`Room::retract_own`]). Another occupant's message is left
//! as it is. Rooms advertise `#tombstone`.
//!
//! # End of a room
//! A destroyed room's archive is deleted, and so is a temporary room's when it ends
//! ([`super::MucService`]), as Prosody's muc_mam does: a new room of the same name starts empty.

use super::ns_muc::OCCUPANT_ID;
use super::room::{Ctx, HistoryItem, Out, Role, Room};
use crate::jid::Jid;
use crate::modules::mam::{format_stamp, now_micros, result_message, run_query, NS, NS1};
use crate::modules::services::{load_stored, storage_failed};
use crate::proto::shared::SharedStanza;
use crate::proto::{ns, Stanza, StanzaError};
use crate::storage::archive::{format_id, parse_id, ArchiveQuery};
use crate::storage::Storage;
use crate::xml::Element;

pub const NS_SID: &str = crate::modules::mam::NS_SID;
pub const NS_MAM: &str = NS;
pub const NS_MAM1: &str = NS1;
pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
pub const NS_TOMBSTONE: &str = "urn:xmpp:message-retract:1#tombstone";
const NS_HINTS: &str = crate::modules::mam::NS_HINTS;

/// Disco features of a room that archives.
pub const ROOM_FEATURES: &[&str] = &[NS, NS1, NS_SID, NS_MODERATE, NS_RETRACT, NS_TOMBSTONE];

/// Whether a groupchat message (as broadcast) goes into the room archive.
pub fn archivable(el: &Element) -> bool {
    if el.child("no-store", NS_HINTS).is_some()
        || el.child("no-permanent-store", NS_HINTS).is_some()
    {
        return false;
    }
    el.child("body", ns::CLIENT).is_some()
        || el.child("store", NS_HINTS).is_some()
        || el.child("retract", NS_RETRACT).is_some()
        || el
            .elements()
            .any(|c| ns::ENCRYPTED_PAYLOADS.contains(&&*c.ns))
}

/// Archive a broadcast message (its `from` is the occupant JID); its id, or `None` when
/// storage failed (the message is still delivered).
pub fn append(store: &dyn Storage, room: &Jid, el: &Element) -> Option<u64> {
    let with = el.attr("from").unwrap_or_default().to_string();
    match store.archive_append(&room.to_string(), &with, &el.to_string(), now_micros()) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(%room, error = %e, "archiving a room message failed");
            None
        }
    }
}

/// `<stanza-id xmlns='urn:xmpp:sid:0' by='room' id='…'/>`.
pub fn stanza_id(room: &Jid, id: u64) -> Element {
    Element::new("stanza-id", NS_SID)
        .with_attr("by", room.to_string())
        .with_attr("id", format_id(id))
}

fn stamp_of(micros: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The tombstone of an archived message: its envelope and author occupant id, nothing of its
/// content, and `retracted`.
fn tombstone(original: &Element, retracted: Element) -> Element {
    let mut tomb = Element::new("message", ns::CLIENT);
    tomb.attrs = original.attrs.clone();
    for c in original.elements().filter(|c| c.ns == OCCUPANT_ID) {
        tomb.push_child(c.clone());
    }
    tomb.with_child(retracted)
}

/// The author's occupant id on an archived message.
fn author_occupant_id(el: &Element) -> Option<&str> {
    el.child("occupant-id", OCCUPANT_ID)
        .and_then(|o| o.attr("id"))
}

impl Room {
    /// Replace archived message `id` (whose stanza is `original`) by its tombstone, in the
    /// archive and in the join history.
    fn replace_with_tombstone(
        &mut self,
        store: &dyn Storage,
        id: u64,
        original: &Element,
        retracted: Element,
    ) -> Result<(), StanzaError> {
        let tomb = tombstone(original, retracted);
        store
            .archive_replace(&self.jid.to_string(), id, &tomb.to_string())
            .map_err(|e| storage_failed("muc", e))?;
        for h in self.history.iter_mut().filter(|h| h.archive_id == Some(id)) {
            let mut el = tomb.clone();
            el.push_child(stanza_id(&self.jid, id));
            h.chars = el.approx_size();
            h.el = el;
        }
        Ok(())
    }

    /// XEP-0424: an occupant's `<retract id='stanza-id'/>` (already relayed to the room).
    /// The archived message becomes a tombstone `<retracted id='retraction id' stamp/>` when
    /// its author is the retracting occupant (same occupant id, i.e. same account); a
    /// retraction of someone else's message, of an unknown id, or of a message already
    /// retracted changes nothing.
    pub(super) fn retract_own(
        &mut self,
        store: &dyn Storage,
        retract: &Element,
        author: &str,
        retraction_id: Option<&str>,
    ) {
        let Some(id) = retract.attr("id").and_then(|i| parse_id(i.trim())) else {
            return;
        };
        let original = match store.archive_get(&self.jid.to_string(), id) {
            Ok(Some(m)) => match load_stored("muc", &m.xml) {
                Ok(el) => el,
                Err(_) => return,
            },
            Ok(None) => return,
            Err(e) => {
                tracing::error!(room = %self.jid, error = %e, "reading the room archive failed");
                return;
            }
        };
        if author_occupant_id(&original) != Some(author)
            || original.child("retracted", NS_RETRACT).is_some()
            || original.child("retract", NS_RETRACT).is_some()
        {
            return;
        }
        let retracted = Element::new("retracted", NS_RETRACT)
            .with_opt_attr("id", retraction_id)
            .with_attr("stamp", format_stamp(now_micros()));
        if let Err(e) = self.replace_with_tombstone(store, id, &original, retracted) {
            tracing::error!(room = %self.jid, error = ?e, "retracting an archived message failed");
        }
    }

    /// Fill the join history from the archive (a persistent room loaded at start).
    pub fn load_history(&mut self, store: &dyn Storage, max_history: usize) {
        if !self.config.archiving || !self.config.persistent {
            return;
        }
        let limit = self.config.history_length.min(max_history);
        if limit == 0 {
            return;
        }
        let q = ArchiveQuery {
            limit,
            from_end: true,
            ..Default::default()
        };
        let page = match store.archive_query(&self.jid.to_string(), &q) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(room = %self.jid, error = %e, "loading room history failed");
                return;
            }
        };
        for m in page.items {
            let Ok(mut el) = load_stored("muc", &m.xml) else {
                continue;
            };
            if el.child("body", ns::CLIENT).is_none() && el.child("retracted", NS_RETRACT).is_none()
            {
                continue;
            }
            el.push_child(stanza_id(&self.jid, m.id));
            self.archived_any = true;
            self.history.push_back(HistoryItem {
                chars: el.approx_size(),
                el,
                stamp: stamp_of(m.id),
                archive_id: Some(m.id),
            });
        }
    }

    /// Whether `from` may read the room archive.
    fn may_read_archive(&self, from: &Jid) -> Result<(), StanzaError> {
        let aff = self.affiliation(&from.to_bare());
        let present = self.nick_of(from).is_some();
        use super::room::Affiliation as A;
        let ok = match aff {
            A::Outcast => false,
            A::Member | A::Admin | A::Owner => true,
            A::None if self.config.members_only => false,
            A::None if !self.config.password.is_empty() => present,
            A::None => true,
        };
        if ok {
            Ok(())
        } else {
            Err(StanzaError::forbidden().with_text("you may not read this room's archive"))
        }
    }

    /// A MAM `<query/>` to the room: result messages first, then the IQ result.
    pub fn mam_query(&self, from: &Jid, stanza: &Stanza, ctx: &Ctx, out: &mut Vec<Out>) {
        let reply = self
            .mam_query_inner(from, stanza, ctx, out)
            .map(|p| stanza.iq_result(p))
            .unwrap_or_else(|e| e.reply_to(stanza));
        out.push(Out::One(reply));
    }

    fn mam_query_inner(
        &self,
        from: &Jid,
        stanza: &Stanza,
        ctx: &Ctx,
        out: &mut Vec<Out>,
    ) -> Result<Option<Element>, StanzaError> {
        let q = stanza.iq_payload().ok_or_else(StanzaError::bad_request)?;
        let xmlns = if q.ns == NS { NS } else { NS1 };
        self.may_read_archive(from)?;
        if stanza.type_attr() == Some("get") {
            return Ok(Some(crate::modules::mam::query_form(xmlns)));
        }
        let store = ctx
            .archive
            .as_ref()
            .ok_or_else(StanzaError::service_unavailable)?;
        let (items, fin) = run_query(&**store, &self.jid.to_string(), q, xmlns)?;
        let queryid = q.attr("queryid");
        for m in &items {
            if let Some(msg) = result_message(m, &self.jid, from, queryid, xmlns) {
                out.push(Out::One(msg));
            }
        }
        Ok(Some(fin))
    }

    /// XEP-0425: a moderator retracts a message by its stanza id.
    pub fn moderate(
        &mut self,
        from: &Jid,
        m: &Element,
        ctx: &Ctx,
        out: &mut Vec<Out>,
    ) -> Result<(), StanzaError> {
        let Some((nick, role, mod_occupant_id)) = self.occupant_of(from) else {
            return Err(StanzaError::forbidden().with_text("only moderators may moderate messages"));
        };
        if role != Role::Moderator {
            return Err(StanzaError::forbidden()
                .with_text("only moderators may moderate other participants' messages"));
        }
        if m.child("retract", NS_RETRACT).is_none() {
            return Err(
                StanzaError::feature_not_implemented().with_text("only retraction is supported")
            );
        }
        let id_text = m.attr("id").unwrap_or_default();
        let id = parse_id(id_text.trim())
            .ok_or_else(|| StanzaError::item_not_found().with_text("no such message"))?;
        let store = ctx
            .archive
            .as_ref()
            .ok_or_else(StanzaError::service_unavailable)?;
        let room = self.jid.to_string();
        let stored = store
            .archive_get(&room, id)
            .map_err(|e| storage_failed("muc", e))?
            .ok_or_else(|| StanzaError::item_not_found().with_text("no such message"))?;
        let original = load_stored("muc", &stored.xml)?;
        let reason = m.child_text("reason", NS_MODERATE);
        let by = self.occupant_jid(&nick).to_string();
        let moderated = Element::new("moderated", NS_MODERATE)
            .with_attr("by", by)
            .with_child(Element::new("occupant-id", OCCUPANT_ID).with_attr("id", mod_occupant_id));
        let reason_el = reason.map(|r| Element::new("reason", NS_RETRACT).with_text(r));

        let mut retracted = Element::new("retracted", NS_RETRACT)
            .with_attr("stamp", format_stamp(now_micros()))
            .with_child(moderated.clone());
        if let Some(r) = &reason_el {
            retracted.push_child(r.clone());
        }
        self.replace_with_tombstone(&**store, id, &original, retracted)?;

        let mut retract = Element::new("retract", NS_RETRACT)
            .with_attr("id", format_id(id))
            .with_child(moderated);
        if let Some(r) = reason_el {
            retract.push_child(r);
        }
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("from", room)
            .with_attr("id", crate::c2s::random_id())
            .with_child(retract)
            .with_child(
                Element::new("body", ns::CLIENT)
                    .with_text("This message was retracted by a moderator."),
            )
            .with_child(
                Element::new("fallback", "urn:xmpp:fallback:0").with_attr("for", NS_RETRACT),
            )
            .with_child(Element::new("no-permanent-store", NS_HINTS));
        let to = self.all_jids();
        if !to.is_empty() {
            out.push(Out::Many(SharedStanza::new(msg), to.into()));
        }
        Ok(())
    }
}
