//! XEP-0045: Multi-User Chat, as an internal component at `conference.<domain>`.
//!
//! Also: XEP-0249 direct invitations (client to client; the room needs nothing but they are
//! tested end to end), XEP-0410 self-ping answered by the service, XEP-0421 occupant ids,
//! XEP-0486 room avatars ([`vcard`]), XEP-0313/0424/0425 room archives ([`mam`]), nickname
//! registration ([`register`]).
//!
//! # Shape
//! [`MucService`] holds the rooms of one service domain: a map from room name to a
//! [`room::Room`] behind its own mutex, so rooms work in parallel. A stanza is dispatched by
//! its `to` (service, room, or occupant), the room appends what must be sent to a list, the
//! room lock is released, then the list is delivered ([`MucService::deliver`]).
//!
//! # Fan-out
//! A message to a room of N occupants is cloned once (to set `from` and the occupant id),
//! serialised once into a [`SharedStanza`], and each occupant's session queue receives an
//! `Arc` of it: N pointer copies, no N copies of the stanza. Presence needs at most three
//! serialisations (with real JIDs, without, and the occupant's own with status 110).
//!
//! # Storage
//! Persistent rooms (configuration, affiliations, subject, occupant-id salt) are kept as JSON
//! in the keyed item store [`ROOM_STORE`] under the service domain, one key per room, saved
//! after every change and loaded at start. Messages are archived per room ([`mam`], XEP-0313);
//! the join history of a persistent room is reloaded from its archive at start. A destroyed
//! room's archive is deleted, and a temporary room's when its last occupant leaves.

pub mod fanout;
pub mod form;
pub mod mam;
pub mod register;
pub mod room;
pub mod vcard;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::components::Component;
use crate::config::Config;
use crate::jid::Jid;
use crate::proto::{ns, Stanza, StanzaError, StanzaKind};
use crate::router;
use crate::server::ServerState;
use crate::storage::Storage;
use crate::xml::Element;
use room::{Affiliation, Ctx, Out, Room, StoredRoom};

/// The keyed store holding persistent rooms (account = service domain, key = room name).
pub const ROOM_STORE: &str = "muc-rooms";

/// MUC namespaces.
pub mod ns_muc {
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
    pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
    pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
    pub const SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
    pub const CONFERENCE: &str = "jabber:x:conference";
}
use ns_muc::*;

/// Disco features of the service (rooms add the `muc_*` room features and XEP-0410; rooms
/// archive, XEP-0313, unless configured not to).
pub const SERVICE_FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    MUC,
    OCCUPANT_ID,
    ns::PING,
    mam::NS_MAM,
];

type RoomRef = Arc<Mutex<Room>>;

/// The chatroom service of one domain.
pub struct MucService {
    domain: String,
    config: Arc<Config>,
    storage: Arc<dyn Storage>,
    rooms: Mutex<HashMap<String, RoomRef>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Room state stays consistent between statements; recover it after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MucService {
    /// A service; persistent rooms are loaded from storage.
    pub fn new(domain: String, config: Arc<Config>, storage: Arc<dyn Storage>) -> MucService {
        let mut rooms = HashMap::new();
        match storage.list_items(ROOM_STORE, &domain) {
            Ok(items) => {
                for (name, json) in items {
                    let stored: StoredRoom = match serde_json::from_str(&json) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(room = %name, error = %e, "a stored room is damaged; skipped");
                            continue;
                        }
                    };
                    let Ok(jid) = Jid::from_parts(Some(&name), &domain, None) else {
                        tracing::error!(room = %name, "a stored room has an invalid name; skipped");
                        continue;
                    };
                    let mut room = Room::new(jid, stored);
                    room.load_history(&*storage, config.muc.max_history);
                    rooms.insert(name, Arc::new(Mutex::new(room)));
                }
            }
            Err(e) => tracing::error!(error = %e, %domain, "loading rooms failed"),
        }
        if !rooms.is_empty() {
            tracing::info!(%domain, rooms = rooms.len(), "persistent rooms loaded");
        }
        MucService {
            domain,
            config,
            storage,
            rooms: Mutex::new(rooms),
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            max_history: self.config.muc.max_history,
            now: time::OffsetDateTime::now_utc(),
            archive: Some(self.storage.clone()),
        }
    }

    fn room(&self, name: &str) -> Option<RoomRef> {
        lock(&self.rooms).get(name).cloned()
    }

    /// Deliver what a room produced: shared stanzas straight into local sessions' queues,
    /// everything else through the router.
    pub fn deliver(state: &Arc<ServerState>, out: Vec<Out>) {
        for o in out {
            match o {
                Out::One(s) => router::route(state, s),
                Out::Many(shared, to) => fanout::deliver(state, &shared, &to),
            }
        }
    }

    /// Save, forget or delete a room after it changed.
    fn settle(&self, name: &str, room: &mut Room) {
        if room.destroyed {
            // The archive goes first, while the room is still listed and locked: a new room
            // of the same name cannot start archiving before it is gone.
            self.clear_archive(room);
            lock(&self.rooms).remove(name);
            self.delete_stored(name);
            return;
        }
        if room.dirty {
            room.dirty = false;
            if room.config.persistent {
                match serde_json::to_string(&room.stored()) {
                    Ok(json) => {
                        if let Err(e) = self.storage.put_item(ROOM_STORE, &self.domain, name, &json)
                        {
                            tracing::error!(room = %name, error = %e, "saving a room failed");
                        }
                    }
                    Err(e) => {
                        tracing::error!(room = %name, error = %e, "serialising a room failed")
                    }
                }
            } else {
                self.delete_stored(name);
            }
        }
        if room.is_empty() && !room.config.persistent {
            // A temporary room ends with its last occupant, and its archive with it.
            room.destroyed = true;
            if room.archived_any {
                self.clear_archive(room);
            }
            lock(&self.rooms).remove(name);
        }
    }

    /// Delete a room's archive (the room is destroyed or ended), as Prosody's muc_mam does.
    fn clear_archive(&self, room: &Room) {
        if let Err(e) = self.storage.archive_clear(&room.jid.to_string()) {
            tracing::error!(room = %room.jid, error = %e, "deleting a room archive failed");
        }
    }

    fn delete_stored(&self, name: &str) {
        if let Err(e) = self.storage.delete_item(ROOM_STORE, &self.domain, name) {
            tracing::error!(room = %name, error = %e, "deleting a stored room failed");
        }
    }

    fn service_iq(&self, stanza: &Stanza) -> Result<Option<Element>, StanzaError> {
        let payload = stanza.iq_payload().ok_or_else(StanzaError::bad_request)?;
        let get = stanza.type_attr() == Some("get");
        if payload.is("query", ns::DISCO_INFO) && get {
            if payload.attr("node").is_some_and(|n| !n.is_empty()) {
                return Err(StanzaError::item_not_found());
            }
            let mut q = Element::new("query", ns::DISCO_INFO).with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "conference")
                    .with_attr("type", "text")
                    .with_attr("name", "Chatrooms"),
            );
            for &f in SERVICE_FEATURES {
                q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
            }
            return Ok(Some(q));
        }
        if payload.is("query", ns::DISCO_ITEMS) && get {
            let mut q = Element::new("query", ns::DISCO_ITEMS);
            let rooms: Vec<(String, RoomRef)> = lock(&self.rooms)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut listed = Vec::new();
            for (name, r) in rooms {
                let r = lock(&r);
                if r.config.public && !r.locked {
                    let title = if r.config.name.is_empty() {
                        name.clone()
                    } else {
                        r.config.name.clone()
                    };
                    listed.push((r.jid.to_string(), title));
                }
            }
            listed.sort();
            for (jid, title) in listed {
                q.push_child(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", jid)
                        .with_attr("name", title),
                );
            }
            return Ok(Some(q));
        }
        if payload.is("ping", ns::PING) && get {
            return Ok(None);
        }
        Err(StanzaError::service_unavailable())
    }

    fn room_iq(
        &self,
        room: &mut Room,
        from: &Jid,
        stanza: &Stanza,
        out: &mut Vec<Out>,
    ) -> Result<Option<Element>, StanzaError> {
        let payload = stanza.iq_payload().ok_or_else(StanzaError::bad_request)?;
        let get = stanza.type_attr() == Some("get");
        let owner = room.affiliation(&from.to_bare()) == Affiliation::Owner;
        if room.locked && !owner {
            return Err(StanzaError::item_not_found());
        }
        match (&*payload.name, &*payload.ns, get) {
            ("query", ns::DISCO_INFO, true) => match payload.attr("node") {
                Some(register::NODE_ROOMUSER) => Ok(Some(room.reserved_nick_info(from))),
                Some(n) if !n.is_empty() => Err(StanzaError::item_not_found()),
                _ => Ok(Some(room.disco_info())),
            },
            ("query", register::NS_REGISTER, true) => room.register_get(from).map(Some),
            ("query", register::NS_REGISTER, false) => {
                room.register_set(from, payload, out).map(|_| None)
            }
            ("query", ns::DISCO_ITEMS, true) => Ok(Some(Element::new("query", ns::DISCO_ITEMS))),
            ("ping", ns::PING, true) => Ok(None),
            ("vCard", ns::VCARD, true) => room.vcard_get().map(Some),
            ("vCard", ns::VCARD, false) => room.vcard_set(from, payload, out).map(|_| None),
            ("moderate", mam::NS_MODERATE, false) => {
                room.moderate(from, payload, &self.ctx(), out).map(|_| None)
            }
            ("query", MUC_ADMIN, true) => room.admin_get(from, payload).map(Some),
            ("query", MUC_ADMIN, false) => room.admin_set(from, payload, out).map(|_| None),
            ("query", MUC_OWNER, get) => {
                if !owner {
                    return Err(StanzaError::forbidden().with_text("only owners may do that"));
                }
                if get {
                    return Ok(Some(room.config_form()));
                }
                if let Some(d) = payload.child("destroy", MUC_OWNER) {
                    room.destroy(d, out);
                    return Ok(None);
                }
                let x = payload
                    .child("x", ns::DATA_FORMS)
                    .ok_or_else(StanzaError::bad_request)?;
                match x.attr("type") {
                    Some("submit") => room.configure(x, &self.ctx(), out).map(|_| None),
                    Some("cancel") => {
                        if room.locked {
                            // Cancelling a new room's configuration destroys it (§10.1.3).
                            room.destroy(&Element::new("destroy", MUC_OWNER), out);
                        }
                        Ok(None)
                    }
                    _ => Err(StanzaError::bad_request()),
                }
            }
            _ => Err(StanzaError::service_unavailable()),
        }
    }

    fn handle_stanza(&self, stanza: Stanza) -> Vec<Out> {
        let mut out = Vec::new();
        let (Ok(Some(from)), Ok(Some(to))) = (stanza.from(), stanza.to()) else {
            return out;
        };
        let Some(name) = to.node().map(str::to_string) else {
            if stanza.is_iq_request() {
                let reply = match self.service_iq(&stanza) {
                    Ok(p) => stanza.iq_result(p),
                    Err(e) => e.reply_to(&stanza),
                };
                out.push(Out::One(reply));
            }
            // Messages and presence to the service itself are not used by XEP-0045.
            return out;
        };
        // A room found destroyed (it ended while this stanza waited for its lock) is looked
        // up again: the stanza then goes to its successor, or creates one.
        let mut tries = 0;
        let (room_ref, created) = loop {
            let existing = self.room(&name);
            let (r, created) = match existing {
                Some(r) => (r, false),
                None => {
                    let joining = stanza.kind() == StanzaKind::Presence
                        && stanza.type_attr().is_none()
                        && to.resource().is_some();
                    if !joining {
                        if stanza.answerable_with_error() {
                            out.push(Out::One(
                                StanzaError::item_not_found()
                                    .with_text("no such room")
                                    .reply_to(&stanza),
                            ));
                        }
                        return out;
                    }
                    // Rooms are created by users of this server's domains.
                    if !self.config.hosts(from.domain()) {
                        out.push(Out::One(
                            StanzaError::not_allowed()
                                .with_text("only local users may create rooms")
                                .reply_to(&stanza),
                        ));
                        return out;
                    }
                    let mut room = Room::new(to.to_bare(), StoredRoom::default());
                    room.affiliations
                        .insert(from.bare_string(), Affiliation::Owner);
                    // A client speaking MUC gets a locked room to configure; an old groupchat
                    // client gets an instant room (§10.1.2, §7.2.1).
                    room.locked = stanza.el().child("x", MUC).is_some();
                    let r = Arc::new(Mutex::new(room));
                    let mut rooms = lock(&self.rooms);
                    // Another join may have created it meanwhile.
                    match rooms.get(&name) {
                        Some(existing) => (existing.clone(), false),
                        None => {
                            rooms.insert(name.clone(), r.clone());
                            (r, true)
                        }
                    }
                }
            };
            if tries >= 3 || !lock(&r).destroyed {
                break (r, created);
            }
            tries += 1;
        };
        let mut room = lock(&room_ref);
        if room.destroyed {
            // The room ended again on every lookup (rooms ending and being re-created as fast
            // as this stanza is looked up): say so rather than drop it; the sender may retry.
            // A leave needs no answer: the room is gone.
            let available_presence =
                stanza.kind() == StanzaKind::Presence && stanza.type_attr().is_none();
            if available_presence || stanza.answerable_with_error() {
                out.push(Out::One(
                    StanzaError::recipient_unavailable()
                        .with_text("the room ended while this stanza waited; try again")
                        .reply_to(&stanza),
                ));
            }
            return out;
        }
        let ctx = self.ctx();
        match (stanza.kind(), to.resource()) {
            (StanzaKind::Presence, Some(nick)) => {
                room.presence_in(&from, nick, &stanza, created, &ctx, &mut out);
            }
            (StanzaKind::Presence, None) => match stanza.type_attr() {
                None => out.push(Out::One(
                    StanzaError::jid_malformed()
                        .with_text("join with room@service/nickname")
                        .reply_to(&stanza),
                )),
                // Leaving by the bare room JID (aioxmpp's Room.leave does so; Prosody
                // accepts it): the same as to room@service/nick.
                Some("unavailable") => room.leave(&from, Some(&stanza), &mut out),
                Some(_) => {}
            },
            (StanzaKind::Message, None) => room.message_to_room(&from, &stanza, &ctx, &mut out),
            (StanzaKind::Message, Some(nick)) => {
                room.message_to_occupant(&from, nick, &stanza, &mut out)
            }
            (StanzaKind::Iq, None) if is_mam_query(&stanza) && !room.locked => {
                room.mam_query(&from, &stanza, &ctx, &mut out);
            }
            (StanzaKind::Iq, None) => {
                if stanza.is_iq_request() {
                    let reply = match self.room_iq(&mut room, &from, &stanza, &mut out) {
                        Ok(p) => stanza.iq_result(p),
                        Err(e) => e.reply_to(&stanza),
                    };
                    // The result first, then the presence changes it caused.
                    out.insert(0, Out::One(reply));
                }
            }
            (StanzaKind::Iq, Some(nick)) => room.iq_to_occupant(&from, nick, &stanza, &mut out),
        }
        self.settle(&name, &mut room);
        out
    }
}

/// A XEP-0313 query to a room (answered with messages before the IQ result).
fn is_mam_query(stanza: &Stanza) -> bool {
    stanza.is_iq_request()
        && stanza
            .iq_payload()
            .is_some_and(|p| p.name == "query" && (p.ns == mam::NS_MAM || p.ns == mam::NS_MAM1))
}

impl Component for MucService {
    fn name(&self) -> &'static str {
        "muc"
    }

    fn domain(&self) -> &str {
        &self.domain
    }

    fn handle(&self, state: &Arc<ServerState>, stanza: Stanza) {
        let out = self.handle_stanza(stanza);
        Self::deliver(state, out);
    }

    fn shutdown(&self, state: &Arc<ServerState>) {
        let rooms: Vec<RoomRef> = lock(&self.rooms).values().cloned().collect();
        let mut out = Vec::new();
        for r in rooms {
            lock(&r).shutdown(&mut out);
        }
        Self::deliver(state, out);
    }
}
