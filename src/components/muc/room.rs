//! One room (XEP-0045): occupants, roles and affiliations, presence and message fan-out,
//! history, subject, the muc#admin and muc#owner protocols, invitations, voice requests and
//! destruction.
//!
//! Room logic never sends anything itself: it appends [`Out`]s that the service delivers once
//! the room's lock is released (an error bounced back to the room must not find it locked).
//! A broadcast is one [`Out::Many`]: the stanza serialised once ([`SharedStanza`]) and the
//! list of recipients; presence needs at most three variants (with real JIDs for those who
//! may see them, without, and the occupant's own with status 110).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::fanout::{FanOut, Recipients};
use super::form::{self, form_value, RoomConfig};
use super::ns_muc::*;
use crate::jid::Jid;
use crate::proto::shared::SharedStanza;
use crate::proto::{ns, Stanza, StanzaError};
use crate::storage::Storage;
use crate::xml::Element;

/// What the room asks the service to send.
pub enum Out {
    /// One stanza, routed normally.
    One(Stanza),
    /// One stanza for many recipients, serialised once.
    Many(Arc<SharedStanza>, Recipients),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }
    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// The subject and who set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub text: String,
    /// The setter's nick (None: set by the room).
    pub nick: Option<String>,
}

/// What a persistent room keeps in storage.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StoredRoom {
    pub config: RoomConfig,
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    pub salt: String,
    /// The room's vCard (XEP-0486), serialised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcard: Option<String>,
    /// Reserved nicknames (XEP-0045 §7.10): bare JID to nickname.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nicks: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Occupant {
    nick: String,
    bare: Jid,
    /// The real full JIDs joined under this nick (one account, possibly several clients).
    jids: Vec<Jid>,
    role: Role,
    /// The client's presence payload (show, status, caps, …) without MUC elements.
    presence: Vec<Element>,
    occupant_id: String,
}

pub(super) struct HistoryItem {
    pub(super) el: Element,
    pub(super) stamp: OffsetDateTime,
    pub(super) chars: usize,
    /// The message's id in the room archive (XEP-0313), when archived.
    pub(super) archive_id: Option<u64>,
}

/// Service-wide values a room needs.
pub struct Ctx {
    pub max_history: usize,
    pub now: OffsetDateTime,
    /// The store holding room archives (XEP-0313); `None`: nothing is archived.
    pub archive: Option<Arc<dyn Storage>>,
}

/// Extra content of the `<item/>` and `<x/>` in a presence.
#[derive(Default, Clone)]
pub(super) struct Extra {
    new_nick: Option<String>,
    actor: Option<String>,
    reason: Option<String>,
    destroy: Option<Element>,
}

pub struct Room {
    pub jid: Jid,
    pub config: RoomConfig,
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    pub salt: String,
    /// A new room waiting for its owner's configuration (XEP-0045 §10.1.1).
    pub locked: bool,
    /// Stored state changed since the last save.
    pub dirty: bool,
    pub destroyed: bool,
    /// The room's vCard, serialised ([`super::vcard`]).
    pub(super) vcard: Option<String>,
    /// The avatar hashes of [`Room::vcard`].
    pub(super) avatar_hashes: Vec<String>,
    /// The room archive may hold messages (something was archived or loaded).
    pub archived_any: bool,
    /// Reserved nicknames ([`super::register`]): bare JID to nickname.
    pub(super) nicks: BTreeMap<String, String>,
    occupants: BTreeMap<String, Occupant>,
    by_jid: HashMap<Jid, String>,
    /// Every occupant's real JIDs for message fan-out, built on the first message after the
    /// occupancy changed; `None` after any change to `occupants` or an occupant's `jids`.
    fanout: Option<Arc<FanOut>>,
    pub(super) history: VecDeque<HistoryItem>,
}

fn muc_user_x() -> Element {
    Element::new("x", MUC_USER)
}

fn status(code: u16) -> Element {
    Element::new("status", MUC_USER).with_attr("code", code.to_string())
}

fn stamp(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// A new random salt for occupant ids.
pub fn new_salt() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

impl Room {
    pub fn new(jid: Jid, stored: StoredRoom) -> Room {
        let avatar_hashes = stored
            .vcard
            .as_deref()
            .map(|v| super::vcard::stored_hashes(&jid, v))
            .unwrap_or_default();
        Room {
            jid,
            config: stored.config,
            affiliations: stored.affiliations,
            subject: stored.subject,
            salt: if stored.salt.is_empty() {
                new_salt()
            } else {
                stored.salt
            },
            locked: false,
            dirty: false,
            destroyed: false,
            vcard: stored.vcard,
            avatar_hashes,
            archived_any: false,
            nicks: stored.nicks,
            occupants: BTreeMap::new(),
            by_jid: HashMap::new(),
            fanout: None,
            history: VecDeque::new(),
        }
    }

    pub fn stored(&self) -> StoredRoom {
        StoredRoom {
            config: self.config.clone(),
            affiliations: self.affiliations.clone(),
            subject: self.subject.clone(),
            salt: self.salt.clone(),
            vcard: self.vcard.clone(),
            nicks: self.nicks.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    pub fn occupant_count(&self) -> usize {
        self.occupants.len()
    }

    pub fn affiliation(&self, bare: &Jid) -> Affiliation {
        self.affiliations
            .get(&bare.bare_string())
            .copied()
            .unwrap_or(Affiliation::None)
    }

    fn set_affiliation(&mut self, bare: &str, aff: Affiliation) {
        if aff <= Affiliation::None {
            // A registration (reserved nickname) ends with the affiliation.
            self.nicks.remove(bare);
        }
        if aff == Affiliation::None {
            self.affiliations.remove(bare);
        } else {
            self.affiliations.insert(bare.to_string(), aff);
        }
        self.dirty = true;
    }

    fn default_role(&self, aff: Affiliation) -> Role {
        match aff {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.config.moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    pub(super) fn occupant_jid(&self, nick: &str) -> Jid {
        Jid::from_parts(self.jid.node(), self.jid.domain(), Some(nick))
            .unwrap_or_else(|_| self.jid.clone())
    }

    pub(super) fn occupant_id(&self, bare: &Jid) -> String {
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        h.update(b"\0");
        h.update(bare.bare_string().as_bytes());
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&h.finalize()[..18])
    }

    /// The nick of a real JID in the room.
    pub fn nick_of(&self, real: &Jid) -> Option<&str> {
        self.by_jid.get(real).map(String::as_str)
    }

    /// The nick, role and occupant id of a real JID in the room.
    pub(super) fn occupant_of(&self, real: &Jid) -> Option<(String, Role, String)> {
        let o = self.occupants.get(self.by_jid.get(real)?)?;
        Some((o.nick.clone(), o.role, o.occupant_id.clone()))
    }

    fn sees_jids(&self, viewer: &Occupant) -> bool {
        self.config.whois_anyone || viewer.role == Role::Moderator
    }

    /// The shared recipient list of a message to everyone ([`FanOut`]).
    fn fanout(&mut self) -> Arc<FanOut> {
        if let Some(f) = &self.fanout {
            return f.clone();
        }
        let f = FanOut::new(self.all_jids());
        self.fanout = Some(f.clone());
        f
    }

    pub(super) fn all_jids(&self) -> Vec<Jid> {
        self.occupants
            .values()
            .flat_map(|o| o.jids.iter().cloned())
            .collect()
    }

    // ---------------------------------------------------------------- presence building

    fn presence_of(
        &self,
        occ: &Occupant,
        unavailable: bool,
        show_jid: Option<&Jid>,
        codes: &[u16],
        extra: &Extra,
    ) -> Element {
        let aff = self.affiliation(&occ.bare);
        let role = if unavailable { Role::None } else { occ.role };
        let mut item = Element::new("item", MUC_USER)
            .with_attr("affiliation", aff.as_str())
            .with_attr("role", role.as_str())
            .with_opt_attr("jid", show_jid.map(|j| j.to_string()))
            .with_opt_attr("nick", extra.new_nick.clone());
        if let Some(actor) = &extra.actor {
            item.push_child(Element::new("actor", MUC_USER).with_attr("nick", actor.clone()));
        }
        if let Some(reason) = &extra.reason {
            item.push_child(Element::new("reason", MUC_USER).with_text(reason.clone()));
        }
        let mut x = muc_user_x().with_child(item);
        if let Some(d) = &extra.destroy {
            x.push_child(d.clone());
        }
        for c in codes {
            x.push_child(status(*c));
        }
        let mut p = Element::new("presence", ns::CLIENT)
            .with_attr("from", self.occupant_jid(&occ.nick).to_string())
            .with_opt_attr("type", unavailable.then_some("unavailable"));
        for c in &occ.presence {
            p.push_child(c.clone());
        }
        p.push_child(x);
        p.push_child(
            Element::new("occupant-id", OCCUPANT_ID).with_attr("id", occ.occupant_id.clone()),
        );
        p
    }

    /// Send `occ`'s presence to every occupant: others get it with or without the real JID,
    /// `self_jids` get it with 110 and `self_codes` added.
    #[allow(clippy::too_many_arguments)]
    fn broadcast_presence(
        &self,
        occ: &Occupant,
        unavailable: bool,
        codes: &[u16],
        self_codes: &[u16],
        self_jids: &[Jid],
        extra: &Extra,
        out: &mut Vec<Out>,
    ) {
        let mut with_jid = Vec::new();
        let mut without = Vec::new();
        for o in self.occupants.values() {
            if o.nick == occ.nick {
                continue;
            }
            if self.sees_jids(o) {
                with_jid.extend(o.jids.iter().cloned());
            } else {
                without.extend(o.jids.iter().cloned());
            }
        }
        let real = occ.jids.first().or(self_jids.first());
        if !with_jid.is_empty() {
            let p = self.presence_of(occ, unavailable, real, codes, extra);
            out.push(Out::Many(SharedStanza::new(p), with_jid.into()));
        }
        if !without.is_empty() {
            let p = self.presence_of(occ, unavailable, None, codes, extra);
            out.push(Out::Many(SharedStanza::new(p), without.into()));
        }
        if !self_jids.is_empty() {
            let mut all: Vec<u16> = codes.to_vec();
            all.extend_from_slice(self_codes);
            all.push(110);
            all.sort_unstable();
            all.dedup();
            let p = self.presence_of(occ, unavailable, real, &all, extra);
            out.push(Out::Many(SharedStanza::new(p), self_jids.to_vec().into()));
        }
    }

    fn error(stanza: &Stanza, e: StanzaError, out: &mut Vec<Out>) {
        if !stanza.is_error() {
            out.push(Out::One(e.reply_to(stanza)));
        }
    }

    // ---------------------------------------------------------------- presence in

    /// Presence from `from` to `room/nick`. `creator` is set when the service created the
    /// room for this presence.
    pub fn presence_in(
        &mut self,
        from: &Jid,
        nick: &str,
        stanza: &Stanza,
        creator: bool,
        ctx: &Ctx,
        out: &mut Vec<Out>,
    ) {
        match stanza.type_attr() {
            Some("unavailable") => self.leave(from, Some(stanza), out),
            // The occupant's client or server bounced a room stanza: it is gone.
            Some("error") if self.by_jid.contains_key(from) => {
                self.remove_session(from, &[333], &Extra::default(), out);
            }
            None => {
                let payload = client_payload(stanza.el());
                match self.by_jid.get(from).cloned() {
                    Some(cur) if cur == nick => self.presence_update(&cur, payload, out),
                    Some(cur) => self.change_nick(from, &cur, nick, payload, stanza, out),
                    None => self.join(from, nick, payload, stanza, creator, ctx, out),
                }
            }
            _ => {}
        }
    }

    fn presence_update(&mut self, nick: &str, payload: Vec<Element>, out: &mut Vec<Out>) {
        let Some(occ) = self.occupants.get_mut(nick) else {
            return;
        };
        occ.presence = payload;
        let occ = occ.clone();
        self.broadcast_presence(&occ, false, &[], &[], &occ.jids, &Extra::default(), out);
    }

    fn change_nick(
        &mut self,
        from: &Jid,
        cur: &str,
        new: &str,
        payload: Vec<Element>,
        stanza: &Stanza,
        out: &mut Vec<Out>,
    ) {
        if self.occupants.contains_key(new) {
            return Self::error(
                stanza,
                StanzaError::conflict().with_text("that nickname is in use"),
                out,
            );
        }
        if !self.nick_allowed(&from.to_bare(), new) {
            return Self::error(
                stanza,
                StanzaError::conflict().with_text("that nickname is reserved"),
                out,
            );
        }
        let Some(mut occ) = self.occupants.remove(cur) else {
            return;
        };
        self.fanout = None;
        let extra = Extra {
            new_nick: Some(new.to_string()),
            ..Default::default()
        };
        // Unavailable from the old nick with 303 to everyone (the occupant included).
        self.occupants.insert(cur.to_string(), occ.clone());
        self.broadcast_presence(&occ, true, &[303], &[], &occ.jids, &extra, out);
        self.occupants.remove(cur);
        occ.nick = new.to_string();
        occ.presence = payload;
        for j in &occ.jids {
            self.by_jid.insert(j.clone(), new.to_string());
        }
        self.occupants.insert(new.to_string(), occ.clone());
        self.broadcast_presence(&occ, false, &[], &[], &occ.jids, &Extra::default(), out);
    }

    /// Whether another account is in the room under `nick`.
    pub(super) fn nick_used_by_other(&self, bare: &Jid, nick: &str) -> bool {
        self.occupants.get(nick).is_some_and(|o| o.bare != *bare)
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        from: &Jid,
        nick: &str,
        payload: Vec<Element>,
        stanza: &Stanza,
        creator: bool,
        ctx: &Ctx,
        out: &mut Vec<Out>,
    ) {
        let bare = from.to_bare();
        let aff = self.affiliation(&bare);
        let muc_x = stanza.el().child("x", MUC);
        if !creator {
            if self.locked {
                return Self::error(
                    stanza,
                    StanzaError::item_not_found().with_text("the room is being created"),
                    out,
                );
            }
            if aff == Affiliation::Outcast {
                return Self::error(
                    stanza,
                    StanzaError::forbidden().with_text("you are banned from this room"),
                    out,
                );
            }
            if self.config.members_only && aff < Affiliation::Member {
                return Self::error(
                    stanza,
                    StanzaError::registration_required().with_text("this room is for members only"),
                    out,
                );
            }
            if !self.config.password.is_empty() && aff < Affiliation::Owner {
                let given = muc_x.and_then(|x| x.child_text("password", MUC));
                if given.as_deref() != Some(self.config.password.as_str()) {
                    return Self::error(
                        stanza,
                        StanzaError::not_authorized().with_text("a password is required"),
                        out,
                    );
                }
            }
        }
        if !self.nick_allowed(&bare, nick) {
            return Self::error(
                stanza,
                StanzaError::conflict().with_text("that nickname is reserved"),
                out,
            );
        }
        if let Some(other) = self.occupants.get(nick) {
            if other.bare != bare {
                return Self::error(
                    stanza,
                    StanzaError::conflict().with_text("that nickname is in use"),
                    out,
                );
            }
        } else if !creator
            && self.config.max_users > 0
            && self.occupants.len() >= self.config.max_users
            && aff < Affiliation::Admin
        {
            return Self::error(
                stanza,
                StanzaError::service_unavailable().with_text("the room is full"),
                out,
            );
        }
        // Everyone already present, to the newcomer.
        let newcomer_sees = self.config.whois_anyone || self.default_role(aff) == Role::Moderator;
        let existing_session = self.occupants.contains_key(nick);
        for o in self.occupants.values() {
            if o.nick == nick {
                continue;
            }
            let mut p = self.presence_of(
                o,
                false,
                newcomer_sees.then(|| o.jids.first()).flatten(),
                &[],
                &Extra::default(),
            );
            p.set_attr("to", from.to_string());
            out.push(Out::One(Stanza(p)));
        }
        let occ = if existing_session {
            // Another client of the same account joins under the same nick.
            let Some(occ) = self.occupants.get_mut(nick) else {
                return;
            };
            occ.jids.push(from.clone());
            self.fanout = None;
            occ.clone()
        } else {
            let occ = Occupant {
                nick: nick.to_string(),
                bare: bare.clone(),
                jids: vec![from.clone()],
                role: self.default_role(aff),
                presence: payload,
                occupant_id: self.occupant_id(&bare),
            };
            self.occupants.insert(nick.to_string(), occ.clone());
            self.fanout = None;
            occ
        };
        self.by_jid.insert(from.clone(), nick.to_string());
        let mut self_codes = Vec::new();
        if self.config.whois_anyone {
            self_codes.push(100);
        }
        if creator {
            self_codes.push(201);
        }
        if existing_session {
            let p = self.presence_of(&occ, false, Some(from), &[110], &Extra::default());
            out.push(Out::Many(SharedStanza::new(p), vec![from.clone()].into()));
        } else {
            self.broadcast_presence(
                &occ,
                false,
                &[],
                &self_codes,
                std::slice::from_ref(from),
                &Extra::default(),
                out,
            );
        }
        // The room's avatar (XEP-0486 §"presence", as Prosody sends it).
        if !self.avatar_hashes.is_empty() {
            let mut p = self.avatar_presence();
            p.set_attr("to", from.to_string());
            out.push(Out::One(Stanza(p)));
        }
        // History, then the subject (XEP-0045 §7.2.15, §7.2.16).
        let hist = muc_x.and_then(|x| x.child("history", MUC));
        for item in self.history_for(hist, ctx) {
            let mut el = item.el.clone();
            el.set_attr("to", from.to_string());
            el.push_child(
                Element::new("delay", ns::DELAY)
                    .with_attr("from", self.jid.to_string())
                    .with_attr("stamp", stamp(item.stamp)),
            );
            out.push(Out::One(Stanza(el)));
        }
        let subject_from = match self.subject.as_ref().and_then(|s| s.nick.as_deref()) {
            Some(n) => self.occupant_jid(n),
            None => self.jid.clone(),
        };
        let text = self
            .subject
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default();
        out.push(Out::One(Stanza(
            Element::new("message", ns::CLIENT)
                .with_attr("type", "groupchat")
                .with_attr("from", subject_from.to_string())
                .with_attr("to", from.to_string())
                .with_attr("id", crate::c2s::random_id())
                .with_child(Element::new("subject", ns::CLIENT).with_text(text)),
        )));
    }

    fn history_for(&self, hist: Option<&Element>, ctx: &Ctx) -> Vec<&HistoryItem> {
        let num = |a: &str| -> Option<u64> { hist?.attr(a)?.trim().parse().ok() };
        let max_stanzas = num("maxstanzas").map(|n| n as usize);
        let max_chars = num("maxchars").map(|n| n as usize);
        let seconds = num("seconds");
        let since = hist.and_then(|h| h.attr("since")).and_then(|s| {
            OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()
        });
        let limit = self.config.history_length.min(ctx.max_history);
        let mut picked = Vec::new();
        let mut chars = 0usize;
        for item in self.history.iter().rev() {
            if picked.len() >= limit || max_stanzas.is_some_and(|m| picked.len() >= m) {
                break;
            }
            if let Some(s) = seconds {
                if (ctx.now - item.stamp).whole_seconds() > s as i64 {
                    break;
                }
            }
            if since.is_some_and(|t| item.stamp <= t) {
                break;
            }
            chars += item.chars;
            if max_chars.is_some_and(|m| chars > m) {
                break;
            }
            picked.push(item);
        }
        picked.reverse();
        picked
    }

    /// An occupant's session leaves (unavailable presence, or its session closed).
    pub fn leave(&mut self, from: &Jid, stanza: Option<&Stanza>, out: &mut Vec<Out>) {
        let Some(nick) = self.by_jid.get(from).cloned() else {
            return;
        };
        if let (Some(s), Some(occ)) = (stanza, self.occupants.get_mut(&nick)) {
            occ.presence = client_payload(s.el());
        }
        self.remove_session(from, &[], &Extra::default(), out);
    }

    /// Remove one session; the occupant leaves when it was the last one.
    fn remove_session(&mut self, from: &Jid, codes: &[u16], extra: &Extra, out: &mut Vec<Out>) {
        let Some(nick) = self.by_jid.remove(from) else {
            return;
        };
        let Some(occ) = self.occupants.get_mut(&nick) else {
            return;
        };
        occ.jids.retain(|j| j != from);
        self.fanout = None;
        let occ = occ.clone();
        if occ.jids.is_empty() {
            // Announce while still listed, so `real` is known, then remove.
            let mut gone = occ.clone();
            gone.jids = vec![from.clone()];
            self.occupants.remove(&nick);
            self.broadcast_presence(
                &gone,
                true,
                codes,
                &[],
                std::slice::from_ref(from),
                extra,
                out,
            );
        } else {
            let p = self.presence_of(&occ, true, Some(from), &[110], extra);
            out.push(Out::Many(SharedStanza::new(p), vec![from.clone()].into()));
        }
    }

    /// Remove an occupant (all sessions) with status codes: kick, ban, affiliation change.
    fn remove_occupant(&mut self, nick: &str, codes: &[u16], extra: &Extra, out: &mut Vec<Out>) {
        self.fanout = None;
        let Some(occ) = self.occupants.remove(nick) else {
            return;
        };
        for j in &occ.jids {
            self.by_jid.remove(j);
        }
        self.broadcast_presence(&occ, true, codes, &[], &occ.jids, extra, out);
    }

    // ---------------------------------------------------------------- messages

    /// A message to the room's bare JID.
    pub fn message_to_room(&mut self, from: &Jid, stanza: &Stanza, ctx: &Ctx, out: &mut Vec<Out>) {
        if stanza.is_error() {
            return;
        }
        let el = stanza.el();
        if stanza.type_attr() == Some("groupchat") {
            return self.groupchat(from, stanza, ctx, out);
        }
        if let Some(x) = el.child("x", MUC_USER) {
            if x.child("invite", MUC_USER).is_some() {
                return self.invite(from, stanza, x, out);
            }
            if let Some(d) = x.child("decline", MUC_USER) {
                return self.decline(from, d, out);
            }
        }
        if let Some(x) = el.child("x", ns::DATA_FORMS) {
            if form_value(x, "FORM_TYPE").as_deref() == Some(form::FORM_REQUEST) {
                return self.voice_request(from, stanza, x, out);
            }
        }
        Self::error(
            stanza,
            StanzaError::bad_request().with_text("send type groupchat to talk in the room"),
            out,
        );
    }

    fn groupchat(&mut self, from: &Jid, stanza: &Stanza, ctx: &Ctx, out: &mut Vec<Out>) {
        let Some(nick) = self.by_jid.get(from).cloned() else {
            return Self::error(
                stanza,
                StanzaError::not_acceptable().with_text("you are not in this room"),
                out,
            );
        };
        let Some(occ) = self.occupants.get(&nick) else {
            // Listed by JID but not by nickname: should not happen; answer rather than drop.
            tracing::warn!(room = %self.jid, nick = %nick, "occupant listed by JID only");
            return Self::error(
                stanza,
                StanzaError::not_acceptable().with_text("you are not in this room"),
                out,
            );
        };
        let occupant_id = occ.occupant_id.clone();
        let el = stanza.el();
        let subject = el.child("subject", ns::CLIENT);
        let body = el.child("body", ns::CLIENT);
        if let (Some(subject), None) = (subject, body) {
            let may = occ.role == Role::Moderator
                || (self.config.change_subject && occ.role == Role::Participant);
            if !may {
                return Self::error(
                    stanza,
                    StanzaError::forbidden().with_text("you may not change the subject"),
                    out,
                );
            }
            self.subject = Some(Subject {
                text: subject.text(),
                nick: Some(nick.clone()),
            });
            self.dirty = true;
        } else if occ.role < Role::Participant {
            return Self::error(
                stanza,
                StanzaError::forbidden().with_text("you have no voice in this room"),
                out,
            );
        }
        let mut el = el.clone();
        el.remove_attr("to");
        el.set_attr("from", self.occupant_jid(&nick).to_string());
        el.remove_children(|c| c.ns == OCCUPANT_ID || c.ns == ns::DELAY);
        el.push_child(
            Element::new("occupant-id", OCCUPANT_ID).with_attr("id", occ.occupant_id.clone()),
        );
        // XEP-0359: only the room may claim its own stanza ids.
        let room_bare = self.jid.to_string();
        el.remove_children(|c| {
            c.is("stanza-id", super::mam::NS_SID) && c.attr("by") == Some(room_bare.as_str())
        });
        let archive_id = match (&ctx.archive, self.config.archiving) {
            (Some(store), true) if super::mam::archivable(&el) => {
                super::mam::append(&**store, &self.jid, &el)
            }
            _ => None,
        };
        if let Some(id) = archive_id {
            self.archived_any = true;
            el.push_child(super::mam::stanza_id(&self.jid, id));
        }
        // XEP-0424: an author retracting their own message turns it into a tombstone.
        if let (Some(store), Some(r)) = (&ctx.archive, el.child("retract", super::mam::NS_RETRACT))
        {
            self.retract_own(&**store, r, &occupant_id, el.attr("id"));
        }
        if body.is_some() && self.config.history_length > 0 {
            let chars = el.approx_size();
            self.history.push_back(HistoryItem {
                el: el.clone(),
                stamp: ctx.now,
                chars,
                archive_id,
            });
            let keep = self.config.history_length.min(ctx.max_history);
            while self.history.len() > keep {
                self.history.pop_front();
            }
        }
        let to = Recipients::Room(self.fanout());
        out.push(Out::Many(SharedStanza::new(el), to));
    }

    /// A private message to `room/nick` (or an error bounced from an occupant).
    pub fn message_to_occupant(
        &mut self,
        from: &Jid,
        nick: &str,
        stanza: &Stanza,
        out: &mut Vec<Out>,
    ) {
        if stanza.is_error() {
            return;
        }
        if stanza.type_attr() == Some("groupchat") {
            return Self::error(
                stanza,
                StanzaError::bad_request().with_text("groupchat messages go to the room's address"),
                out,
            );
        }
        let Some(sender) = self.by_jid.get(from).cloned() else {
            return Self::error(
                stanza,
                StanzaError::not_acceptable().with_text("only occupants may send private messages"),
                out,
            );
        };
        let Some(target) = self.occupants.get(nick) else {
            return Self::error(
                stanza,
                StanzaError::item_not_found().with_text("no occupant with that nickname"),
                out,
            );
        };
        let mut el = stanza.el().clone();
        el.set_attr("from", self.occupant_jid(&sender).to_string());
        if el.child("x", MUC_USER).is_none() {
            el.push_child(muc_user_x());
        }
        let shared = SharedStanza::new(el);
        // Messages may reach someone not connected any more: they go through the router.
        for j in &target.jids {
            out.push(Out::One(shared.to_stanza(j)));
        }
    }

    /// An IQ to `room/nick`: self-ping answered here (XEP-0410), anything else forwarded
    /// between occupants with the sender's occupant JID.
    pub fn iq_to_occupant(&mut self, from: &Jid, nick: &str, stanza: &Stanza, out: &mut Vec<Out>) {
        let Some(sender) = self.by_jid.get(from).cloned() else {
            if stanza.is_iq_request() {
                Self::error(
                    stanza,
                    StanzaError::not_acceptable().with_text("you are not in this room"),
                    out,
                );
            }
            return;
        };
        if stanza.is_iq_request() && sender == nick && stanza.el().child("ping", ns::PING).is_some()
        {
            out.push(Out::One(stanza.iq_result(None)));
            return;
        }
        let Some(target) = self.occupants.get(nick) else {
            if stanza.is_iq_request() {
                Self::error(stanza, StanzaError::item_not_found(), out);
            }
            return;
        };
        let Some(real) = target.jids.first() else {
            return;
        };
        let mut el = stanza.el().clone();
        el.set_attr("from", self.occupant_jid(&sender).to_string());
        el.set_attr("to", real.to_string());
        out.push(Out::One(Stanza(el)));
    }

    fn invite(&mut self, from: &Jid, stanza: &Stanza, x: &Element, out: &mut Vec<Out>) {
        let bare = from.to_bare();
        let aff = self.affiliation(&bare);
        let Some(nick) = self.by_jid.get(from).cloned() else {
            return Self::error(
                stanza,
                StanzaError::not_acceptable().with_text("only occupants may invite"),
                out,
            );
        };
        let role = self
            .occupants
            .get(&nick)
            .map(|o| o.role)
            .unwrap_or(Role::None);
        if self.config.members_only && aff < Affiliation::Admin && !self.config.allow_invites {
            return Self::error(
                stanza,
                StanzaError::forbidden().with_text("only admins may invite to this room"),
                out,
            );
        }
        if role < Role::Participant {
            return Self::error(stanza, StanzaError::forbidden(), out);
        }
        for inv in x.elements().filter(|e| e.is("invite", MUC_USER)) {
            let Some(to) = inv.attr("to").and_then(|t| Jid::parse(t).ok()) else {
                return Self::error(stanza, StanzaError::jid_malformed(), out);
            };
            if self.config.members_only && self.affiliation(&to) < Affiliation::Member {
                if self.affiliation(&to) == Affiliation::Outcast {
                    continue;
                }
                self.set_affiliation(&to.bare_string(), Affiliation::Member);
            }
            let reason = inv.child_text("reason", MUC_USER);
            let mut ix = muc_user_x().with_child(
                Element::new("invite", MUC_USER)
                    .with_attr("from", bare.to_string())
                    .with_children_opt(
                        reason
                            .clone()
                            .map(|r| Element::new("reason", MUC_USER).with_text(r)),
                    ),
            );
            if !self.config.password.is_empty() {
                ix.push_child(
                    Element::new("password", MUC_USER).with_text(self.config.password.clone()),
                );
            }
            let body = format!(
                "{bare} invites you to the room {}{}",
                self.jid,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
            out.push(Out::One(Stanza(
                Element::new("message", ns::CLIENT)
                    .with_attr("from", self.jid.to_string())
                    .with_attr("to", to.to_string())
                    .with_opt_attr("id", stanza.id())
                    .with_child(ix)
                    .with_child(Element::new("body", ns::CLIENT).with_text(body)),
            )));
        }
    }

    fn decline(&mut self, from: &Jid, d: &Element, out: &mut Vec<Out>) {
        let Some(to) = d.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return;
        };
        let mut decline =
            Element::new("decline", MUC_USER).with_attr("from", from.to_bare().to_string());
        if let Some(r) = d.child_text("reason", MUC_USER) {
            decline.push_child(Element::new("reason", MUC_USER).with_text(r));
        }
        out.push(Out::One(Stanza(
            Element::new("message", ns::CLIENT)
                .with_attr("from", self.jid.to_string())
                .with_attr("to", to.to_string())
                .with_child(muc_user_x().with_child(decline)),
        )));
    }

    /// XEP-0045 §7.13 voice request (from a visitor) and §8.6 its approval (from a moderator).
    fn voice_request(&mut self, from: &Jid, stanza: &Stanza, x: &Element, out: &mut Vec<Out>) {
        let Some(nick) = self.by_jid.get(from).cloned() else {
            return Self::error(stanza, StanzaError::not_acceptable(), out);
        };
        let Some(role) = self.occupants.get(&nick).map(|o| o.role) else {
            return;
        };
        let allow = form_value(x, "muc#request_allow").and_then(|v| form::parse_bool(&v));
        if role == Role::Moderator && allow.is_some() {
            if allow != Some(true) {
                return;
            }
            let Some(target) = form_value(x, "muc#roomnick") else {
                return Self::error(stanza, StanzaError::bad_request(), out);
            };
            let Some(occ) = self.occupants.get_mut(&target) else {
                return Self::error(stanza, StanzaError::item_not_found(), out);
            };
            if occ.role == Role::Visitor {
                occ.role = Role::Participant;
                let occ = occ.clone();
                self.broadcast_presence(&occ, false, &[], &[], &occ.jids, &Extra::default(), out);
            }
            return;
        }
        if role != Role::Visitor {
            return;
        }
        let form = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "form")
            .with_child(Element::new("title", ns::DATA_FORMS).with_text("Voice request"))
            .with_child(form::form_type(form::FORM_REQUEST))
            .with_child(form::field(
                "muc#role",
                Some("list-single"),
                Some("Requested role"),
                "participant",
            ))
            .with_child(form::field(
                "muc#jid",
                Some("jid-single"),
                Some("User ID"),
                &from.to_string(),
            ))
            .with_child(form::field(
                "muc#roomnick",
                Some("text-single"),
                Some("Room nickname"),
                &nick,
            ))
            .with_child(form::field(
                "muc#request_allow",
                Some("boolean"),
                Some("Grant voice to this person?"),
                "false",
            ));
        let moderators: Vec<Jid> = self
            .occupants
            .values()
            .filter(|o| o.role == Role::Moderator)
            .flat_map(|o| o.jids.iter().cloned())
            .collect();
        if moderators.is_empty() {
            return;
        }
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("from", self.jid.to_string())
            .with_attr("id", crate::c2s::random_id())
            .with_child(form);
        out.push(Out::Many(SharedStanza::new(msg), moderators.into()));
    }

    // ---------------------------------------------------------------- muc#admin

    /// `<query xmlns='…muc#admin'>` get.
    pub fn admin_get(&self, from: &Jid, q: &Element) -> Result<Element, StanzaError> {
        let item = q
            .child("item", MUC_ADMIN)
            .ok_or_else(StanzaError::bad_request)?;
        let mut res = Element::new("query", MUC_ADMIN);
        if let Some(aff) = item.attr("affiliation") {
            let aff = Affiliation::parse(aff).ok_or_else(StanzaError::bad_request)?;
            if aff == Affiliation::None {
                return Err(StanzaError::bad_request().with_text("the none list is not kept"));
            }
            let mine = self.affiliation(&from.to_bare());
            let allowed = match aff {
                Affiliation::Owner | Affiliation::Admin | Affiliation::Member => {
                    mine >= Affiliation::Member
                }
                _ => mine >= Affiliation::Admin,
            };
            if !allowed {
                return Err(StanzaError::forbidden());
            }
            for (jid, a) in &self.affiliations {
                if *a == aff {
                    res.push_child(
                        Element::new("item", MUC_ADMIN)
                            .with_attr("affiliation", a.as_str())
                            .with_attr("jid", jid.clone()),
                    );
                }
            }
            return Ok(res);
        }
        if let Some(role) = item.attr("role") {
            let role = Role::parse(role).ok_or_else(StanzaError::bad_request)?;
            let me = self.nick_of(from).and_then(|n| self.occupants.get(n));
            if me.map(|o| o.role) != Some(Role::Moderator) {
                return Err(StanzaError::forbidden());
            }
            for o in self.occupants.values().filter(|o| o.role == role) {
                res.push_child(
                    Element::new("item", MUC_ADMIN)
                        .with_attr("nick", o.nick.clone())
                        .with_attr("role", o.role.as_str())
                        .with_attr("affiliation", self.affiliation(&o.bare).as_str())
                        .with_opt_attr("jid", o.jids.first().map(|j| j.to_string())),
                );
            }
            return Ok(res);
        }
        Err(StanzaError::bad_request())
    }

    /// `<query xmlns='…muc#admin'>` set: every item is checked before any is applied.
    pub fn admin_set(
        &mut self,
        from: &Jid,
        q: &Element,
        out: &mut Vec<Out>,
    ) -> Result<(), StanzaError> {
        enum Change {
            Role(String, Role, Option<String>),
            Aff(String, Affiliation, Option<String>),
        }
        let actor_bare = from.to_bare();
        let actor_aff = self.affiliation(&actor_bare);
        let actor_nick = self.nick_of(from).map(str::to_string);
        let actor_role = actor_nick
            .as_deref()
            .and_then(|n| self.occupants.get(n))
            .map(|o| o.role)
            .unwrap_or(Role::None);
        let mut changes = Vec::new();
        let mut owners_after: Vec<String> = self
            .affiliations
            .iter()
            .filter(|(_, a)| **a == Affiliation::Owner)
            .map(|(j, _)| j.clone())
            .collect();
        for item in q.elements().filter(|e| e.is("item", MUC_ADMIN)) {
            let reason = item.child_text("reason", MUC_ADMIN);
            if let Some(aff) = item.attr("affiliation") {
                let aff = Affiliation::parse(aff).ok_or_else(StanzaError::bad_request)?;
                let target = match (item.attr("jid"), item.attr("nick")) {
                    (Some(j), _) => Jid::parse(j)
                        .map_err(|_| StanzaError::jid_malformed())?
                        .to_bare(),
                    (None, Some(n)) => self
                        .occupants
                        .get(n)
                        .map(|o| o.bare.clone())
                        .ok_or_else(StanzaError::item_not_found)?,
                    _ => {
                        return Err(
                            StanzaError::bad_request().with_text("an affiliation item needs a jid")
                        )
                    }
                };
                let current = self.affiliation(&target);
                if actor_aff < Affiliation::Admin {
                    return Err(StanzaError::forbidden());
                }
                let touches_high = aff >= Affiliation::Admin || current >= Affiliation::Admin;
                if touches_high && actor_aff < Affiliation::Owner {
                    return Err(StanzaError::not_allowed()
                        .with_text("only owners may change owner and admin affiliations"));
                }
                let t = target.bare_string();
                if aff == Affiliation::Owner {
                    if !owners_after.contains(&t) {
                        owners_after.push(t.clone());
                    }
                } else {
                    owners_after.retain(|o| *o != t);
                }
                changes.push(Change::Aff(t, aff, reason));
            } else if let Some(role) = item.attr("role") {
                let role = Role::parse(role).ok_or_else(StanzaError::bad_request)?;
                let nick = item.attr("nick").ok_or_else(|| {
                    StanzaError::bad_request().with_text("a role item needs a nick")
                })?;
                let target = self
                    .occupants
                    .get(nick)
                    .ok_or_else(StanzaError::item_not_found)?;
                if actor_role != Role::Moderator {
                    return Err(StanzaError::forbidden());
                }
                let target_aff = self.affiliation(&target.bare);
                if role < Role::Moderator
                    && target_aff >= Affiliation::Admin
                    && target_aff >= actor_aff
                {
                    return Err(StanzaError::not_allowed()
                        .with_text("an admin or owner cannot be kicked, muted or demoted"));
                }
                if (role == Role::Moderator || target.role == Role::Moderator)
                    && actor_aff < Affiliation::Admin
                {
                    return Err(
                        StanzaError::not_allowed().with_text("only admins may change moderators")
                    );
                }
                changes.push(Change::Role(nick.to_string(), role, reason));
            } else {
                return Err(StanzaError::bad_request());
            }
        }
        if changes.is_empty() {
            return Err(StanzaError::bad_request());
        }
        if owners_after.is_empty() {
            return Err(StanzaError::conflict().with_text("a room needs at least one owner"));
        }
        for change in changes {
            match change {
                Change::Role(nick, role, reason) => {
                    let extra = Extra {
                        actor: actor_nick.clone(),
                        reason,
                        ..Default::default()
                    };
                    if role == Role::None {
                        self.remove_occupant(&nick, &[307], &extra, out);
                    } else if let Some(occ) = self.occupants.get_mut(&nick) {
                        occ.role = role;
                        let occ = occ.clone();
                        self.broadcast_presence(&occ, false, &[], &[], &occ.jids, &extra, out);
                    }
                }
                Change::Aff(bare, aff, reason) => {
                    let extra = Extra {
                        actor: actor_nick.clone(),
                        reason,
                        ..Default::default()
                    };
                    self.change_affiliation(&bare, aff, extra, out);
                }
            }
        }
        Ok(())
    }

    /// Set an affiliation and apply it to the account's occupants: removed when banned (301)
    /// or no longer allowed in a members-only room (321), otherwise their presence is updated.
    pub(super) fn change_affiliation(
        &mut self,
        bare: &str,
        aff: Affiliation,
        extra: Extra,
        out: &mut Vec<Out>,
    ) {
        self.set_affiliation(bare, aff);
        let present: Vec<String> = self
            .occupants
            .values()
            .filter(|o| o.bare.bare_string() == bare)
            .map(|o| o.nick.clone())
            .collect();
        for nick in present {
            if aff == Affiliation::Outcast {
                self.remove_occupant(&nick, &[301], &extra, out);
            } else if self.config.members_only && aff < Affiliation::Member {
                self.remove_occupant(&nick, &[321], &extra, out);
            } else {
                let role = self.default_role(aff);
                if let Some(occ) = self.occupants.get_mut(&nick) {
                    occ.role = role;
                    let occ = occ.clone();
                    self.broadcast_presence(&occ, false, &[], &[], &occ.jids, &extra, out);
                }
            }
        }
    }

    // ---------------------------------------------------------------- muc#owner

    pub fn config_form(&self) -> Element {
        let list = |want: Affiliation| -> Vec<String> {
            self.affiliations
                .iter()
                .filter(|(_, a)| **a == want)
                .map(|(j, _)| j.clone())
                .collect()
        };
        Element::new("query", MUC_OWNER).with_child(
            self.config
                .to_form(&list(Affiliation::Owner), &list(Affiliation::Admin)),
        )
    }

    /// A submitted configuration form; status 104 (and 172/173 when anonymity changed) are
    /// announced to the occupants.
    pub fn configure(
        &mut self,
        x: &Element,
        ctx: &Ctx,
        out: &mut Vec<Out>,
    ) -> Result<(), StanzaError> {
        let before = self.config.clone();
        let (owners, admins) = self.config.apply_submit(x, ctx.max_history)?;
        for (list, aff) in [(owners, Affiliation::Owner), (admins, Affiliation::Admin)] {
            for j in list.unwrap_or_default() {
                if let Ok(j) = Jid::parse(&j) {
                    if self.affiliation(&j) < aff {
                        self.set_affiliation(&j.bare_string(), aff);
                    }
                }
            }
        }
        let was_locked = self.locked;
        self.locked = false;
        self.dirty = true;
        while self.history.len() > self.config.history_length {
            self.history.pop_front();
        }
        if self.config.members_only && !before.members_only {
            let outsiders: Vec<String> = self
                .occupants
                .values()
                .filter(|o| self.affiliation(&o.bare) < Affiliation::Member)
                .map(|o| o.nick.clone())
                .collect();
            for nick in outsiders {
                self.remove_occupant(&nick, &[322], &Extra::default(), out);
            }
        }
        if was_locked || before == self.config {
            return Ok(());
        }
        let mut codes = vec![104];
        if self.config.whois_anyone != before.whois_anyone {
            codes.push(if self.config.whois_anyone { 172 } else { 173 });
        }
        let msg = config_changed_message(&self.jid, &codes);
        let to = self.all_jids();
        if !to.is_empty() {
            out.push(Out::Many(SharedStanza::new(msg), to.into()));
        }
        Ok(())
    }

    /// Destroy the room: every occupant gets unavailable presence with `<destroy/>`.
    pub fn destroy(&mut self, d: &Element, out: &mut Vec<Out>) {
        let mut destroy = Element::new("destroy", MUC_USER);
        if let Some(j) = d.attr("jid") {
            destroy.set_attr("jid", j);
        }
        if let Some(r) = d.child_text("reason", MUC_OWNER) {
            destroy.push_child(Element::new("reason", MUC_USER).with_text(r));
        }
        self.destroy_with(destroy, &[], out);
    }

    fn destroy_with(&mut self, destroy: Element, codes: &[u16], out: &mut Vec<Out>) {
        let extra = Extra {
            destroy: Some(destroy),
            ..Default::default()
        };
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        for nick in nicks {
            self.fanout = None;
            if let Some(occ) = self.occupants.remove(&nick) {
                for j in &occ.jids {
                    self.by_jid.remove(j);
                }
                let mut all = codes.to_vec();
                all.push(110);
                let p = self.presence_of(&occ, true, occ.jids.first(), &all, &extra);
                out.push(Out::Many(SharedStanza::new(p), occ.jids.clone().into()));
            }
        }
        self.destroyed = true;
    }

    /// Server shutdown: everyone is told with status 332. The room is kept (in storage when
    /// persistent).
    pub fn shutdown(&mut self, out: &mut Vec<Out>) {
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        for nick in nicks {
            self.fanout = None;
            if let Some(occ) = self.occupants.remove(&nick) {
                for j in &occ.jids {
                    self.by_jid.remove(j);
                }
                let p =
                    self.presence_of(&occ, true, occ.jids.first(), &[110, 332], &Extra::default());
                out.push(Out::Many(SharedStanza::new(p), occ.jids.clone().into()));
            }
        }
    }

    // ---------------------------------------------------------------- disco

    pub fn features(&self) -> Vec<&'static str> {
        let c = &self.config;
        let mut f = if c.archiving {
            super::mam::ROOM_FEATURES.to_vec()
        } else {
            Vec::new()
        };
        f.extend([
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            MUC,
            form::FORM_REQUEST,
            SELF_PING,
            OCCUPANT_ID,
            ns::VCARD,
            super::register::NS_REGISTER,
            if c.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if c.password.is_empty() {
                "muc_unsecured"
            } else {
                "muc_passwordprotected"
            },
            if c.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if c.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if c.whois_anyone {
                "muc_nonanonymous"
            } else {
                "muc_semianonymous"
            },
            if c.public { "muc_public" } else { "muc_hidden" },
        ]);
        f
    }

    pub fn disco_info(&self) -> Element {
        let name = if self.config.name.is_empty() {
            self.jid.node().unwrap_or_default().to_string()
        } else {
            self.config.name.clone()
        };
        let mut q = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr("name", name),
        );
        let mut features = self.features();
        features.sort_unstable();
        for f in features {
            q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        let mut form = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "result")
            .with_child(form::form_type(form::FORM_ROOMINFO))
            .with_child(form::field(
                "muc#roominfo_description",
                None,
                Some("Description"),
                &self.config.description,
            ))
            .with_child(form::field(
                "muc#roominfo_occupants",
                None,
                Some("Number of occupants"),
                &self.occupants.len().to_string(),
            ))
            .with_child(form::field(
                "muc#roominfo_subject",
                None,
                Some("Subject"),
                &self
                    .subject
                    .as_ref()
                    .map(|s| s.text.clone())
                    .unwrap_or_default(),
            ))
            .with_child(form::field(
                "muc#roomconfig_roomname",
                None,
                Some("Name"),
                &self.config.name,
            ));
        if let Some(f) = self.avatar_field() {
            form.push_child(f);
        }
        q.push_child(form);
        q
    }
}

/// The message telling occupants the room's configuration changed (status 104, …).
pub(super) fn config_changed_message(room: &Jid, codes: &[u16]) -> Element {
    let mut x = muc_user_x();
    for c in codes {
        x.push_child(status(*c));
    }
    Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("from", room.to_string())
        .with_attr("id", crate::c2s::random_id())
        .with_child(x)
}

/// The parts of a client's presence the room repeats: everything but MUC elements.
fn client_payload(el: &Element) -> Vec<Element> {
    el.elements()
        .filter(|c| c.ns != MUC && c.ns != MUC_USER && c.ns != OCCUPANT_ID)
        .cloned()
        .collect()
}

trait WithChildrenOpt {
    fn with_children_opt(self, c: Option<Element>) -> Self;
}

impl WithChildrenOpt for Element {
    fn with_children_opt(self, c: Option<Element>) -> Self {
        match c {
            Some(c) => self.with_child(c),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).expect("jid")
    }

    fn ctx() -> Ctx {
        Ctx {
            max_history: 50,
            now: OffsetDateTime::now_utc(),
            archive: None,
        }
    }

    fn join_presence(from: &Jid, nick: &str) -> Stanza {
        Stanza(
            Element::new("presence", ns::CLIENT)
                .with_attr("from", from.to_string())
                .with_attr("to", format!("r@conference.x/{nick}"))
                .with_child(Element::new("x", MUC)),
        )
    }

    /// A room of `n` occupants, built without the network.
    fn room_of(n: usize) -> (Room, Vec<Jid>) {
        let mut room = Room::new(jid("r@conference.x"), StoredRoom::default());
        let mut jids = Vec::new();
        for i in 0..n {
            let j = jid(&format!("u{i}@x/r"));
            if i == 0 {
                room.affiliations
                    .insert(j.bare_string(), Affiliation::Owner);
            }
            let mut out = Vec::new();
            room.presence_in(
                &j,
                &format!("n{i}"),
                &join_presence(&j, &format!("n{i}")),
                i == 0,
                &ctx(),
                &mut out,
            );
            jids.push(j);
        }
        (room, jids)
    }

    #[test]
    fn fan_out_to_a_thousand_occupants_shares_one_serialisation() {
        let (mut room, jids) = room_of(1000);
        assert_eq!(room.occupant_count(), 1000);
        let msg = Stanza(
            Element::new("message", ns::CLIENT)
                .with_attr("from", jids[5].to_string())
                .with_attr("to", "r@conference.x")
                .with_attr("type", "groupchat")
                .with_child(Element::new("body", ns::CLIENT).with_text("hello all")),
        );
        let mut out = Vec::new();
        let t = std::time::Instant::now();
        room.message_to_room(&jids[5], &msg, &ctx(), &mut out);
        let took = t.elapsed();
        // One shared stanza for everyone: the room made no per-occupant copy.
        assert_eq!(out.len(), 1);
        let Out::Many(shared, to) = &out[0] else {
            panic!("not a shared fan-out")
        };
        assert_eq!(to.len(), 1000);
        assert_eq!(Arc::strong_count(shared), 1);
        assert_eq!(shared.el().attr("from"), Some("r@conference.x/n5"));
        eprintln!("fan-out of one message to 1000 occupants prepared in {took:?}");
    }

    /// The recipients of one groupchat message (sorted).
    fn message_recipients(room: &mut Room, from: &Jid) -> (Vec<Jid>, Option<Arc<FanOut>>) {
        let msg = Stanza(
            Element::new("message", ns::CLIENT)
                .with_attr("from", from.to_string())
                .with_attr("to", "r@conference.x")
                .with_attr("type", "groupchat")
                .with_child(Element::new("body", ns::CLIENT).with_text("hi")),
        );
        let mut out = Vec::new();
        room.message_to_room(from, &msg, &ctx(), &mut out);
        let Some(Out::Many(_, to)) = out.pop() else {
            panic!("no fan-out")
        };
        let mut v = to.to_vec();
        v.sort();
        let shared = match to {
            Recipients::Room(f) => Some(f),
            Recipients::List(_) => None,
        };
        (v, shared)
    }

    #[test]
    fn message_recipients_follow_joins_leaves_and_nick_changes() {
        let (mut room, mut jids) = room_of(3);
        jids.sort();
        let (to, f1) = message_recipients(&mut room, &jids[0]);
        assert_eq!(to, jids);
        // Nothing changed: the same list is shared by the next message.
        let (to, f2) = message_recipients(&mut room, &jids[0]);
        assert_eq!(to, jids);
        assert!(Arc::ptr_eq(&f1.unwrap(), &f2.unwrap()));
        // A newcomer and a second client of an occupant are included at once.
        let late = jid("late@x/r");
        let second = jid("u1@x/other");
        let mut out = Vec::new();
        room.presence_in(
            &late,
            "late",
            &join_presence(&late, "late"),
            false,
            &ctx(),
            &mut out,
        );
        room.presence_in(
            &second,
            "n1",
            &join_presence(&second, "n1"),
            false,
            &ctx(),
            &mut out,
        );
        let mut expect = jids.clone();
        expect.push(late.clone());
        expect.push(second.clone());
        expect.sort();
        assert_eq!(message_recipients(&mut room, &jids[0]).0, expect);
        // A nick change keeps the recipients; a leave removes one.
        room.presence_in(
            &late,
            "later",
            &join_presence(&late, "later"),
            false,
            &ctx(),
            &mut out,
        );
        assert_eq!(message_recipients(&mut room, &late).0, expect);
        room.leave(&second, None, &mut out);
        expect.retain(|j| j != &second);
        assert_eq!(message_recipients(&mut room, &jids[0]).0, expect);
        room.leave(&jids[2], None, &mut out);
        expect.retain(|j| j != &jids[2]);
        assert_eq!(message_recipients(&mut room, &jids[0]).0, expect);
    }

    #[test]
    fn presence_fan_out_needs_at_most_three_serialisations() {
        let (mut room, jids) = room_of(300);
        let j = jid("late@x/r");
        let mut out = Vec::new();
        room.presence_in(
            &j,
            "late",
            &join_presence(&j, "late"),
            false,
            &ctx(),
            &mut out,
        );
        let many: Vec<usize> = out
            .iter()
            .filter_map(|o| match o {
                Out::Many(_, to) => Some(to.len()),
                Out::One(_) => None,
            })
            .collect();
        // Moderators (the creator) with real JIDs, the others without, and the newcomer.
        assert_eq!(many, vec![1, 299, 1]);
        assert_eq!(jids.len(), 300);
    }

    #[test]
    fn history_limits() {
        let (mut room, jids) = room_of(1);
        for i in 0..5 {
            let msg = Stanza(
                Element::new("message", ns::CLIENT)
                    .with_attr("type", "groupchat")
                    .with_child(Element::new("body", ns::CLIENT).with_text(format!("m{i}"))),
            );
            room.message_to_room(&jids[0], &msg, &ctx(), &mut Vec::new());
        }
        let h = |attrs: &[(&'static str, &str)]| {
            let mut e = Element::new("history", MUC);
            for (k, v) in attrs {
                e.set_attr(*k, *v);
            }
            room.history_for(Some(&e), &ctx())
                .iter()
                .map(|i| i.el.child_text("body", ns::CLIENT).unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(h(&[("maxstanzas", "2")]), ["m3", "m4"]);
        assert!(h(&[("maxchars", "0")]).is_empty());
        assert_eq!(h(&[]).len(), 5);
        let one = room.history.back().map(|i| i.chars).unwrap_or_default();
        assert_eq!(h(&[("maxchars", &(one * 2).to_string())]), ["m3", "m4"]);
    }
}
