//! XEP-0045 §7.10 registering with a room (`jabber:iq:register`, XEP-0077) and §7.7 the
//! reserved nickname it gives.
//!
//! - get: `<registered/><username>nick</username>` for a registered account, otherwise a form
//!   (`http://jabber.org/protocol/muc#register`, one required field `muc#register_roomnick`).
//! - set with the submitted form: reserves the nickname for the account and makes an
//!   unaffiliated account a member (occupants see the new affiliation). A nickname reserved
//!   by another account, or used in the room by another account, is a `conflict`; a missing
//!   or invalid one `bad-request`/`jid-malformed`. `<remove/>` ends the registration (and the
//!   membership, except in members-only rooms where admins give it).
//! - Who may register: not outcasts (`forbidden`); in members-only rooms only accounts that
//!   are already affiliated (`not-allowed`: registering must not open the room).
//! - A reserved nickname is refused (`conflict`) to every other account, on join and on a nick
//!   change ([`Room::nick_allowed`]). The reservation ends with the affiliation (set to none or
//!   outcast) and is kept with the persistent room ([`super::room::StoredRoom::nicks`]).
//! - disco#info with node `x-roomuser-item`: an identity whose name is the asker's reserved
//!   nickname, or an empty query.

use super::form::{self, form_value};
use super::room::{Affiliation, Extra, Out, Room};
use crate::jid::Jid;
use crate::proto::{ns, StanzaError};
use crate::xml::Element;

pub const NS_REGISTER: &str = "jabber:iq:register";
pub const FORM_REGISTER: &str = "http://jabber.org/protocol/muc#register";
pub const FIELD_ROOMNICK: &str = "muc#register_roomnick";
pub const NODE_ROOMUSER: &str = "x-roomuser-item";

impl Room {
    /// Whether `bare` may use `nick`: not when another account reserved it.
    pub(super) fn nick_allowed(&self, bare: &Jid, nick: &str) -> bool {
        let me = bare.bare_string();
        self.nicks.iter().all(|(who, n)| n != nick || *who == me)
    }

    fn may_register(&self, bare: &Jid) -> Result<Affiliation, StanzaError> {
        let aff = self.affiliation(bare);
        if aff == Affiliation::Outcast {
            return Err(StanzaError::forbidden().with_text("you are banned from this room"));
        }
        if self.config.members_only && aff < Affiliation::Member {
            return Err(StanzaError::not_allowed()
                .with_text("only members may register with a members-only room"));
        }
        Ok(aff)
    }

    /// `<query xmlns='jabber:iq:register'/>` get.
    pub fn register_get(&self, from: &Jid) -> Result<Element, StanzaError> {
        let bare = from.to_bare();
        self.may_register(&bare)?;
        let mut q = Element::new("query", NS_REGISTER);
        if let Some(nick) = self.nicks.get(&bare.bare_string()) {
            q.push_child(Element::new("registered", NS_REGISTER));
            q.push_child(Element::new("username", NS_REGISTER).with_text(nick.clone()));
            return Ok(q);
        }
        let mut nick = Element::new("field", ns::DATA_FORMS)
            .with_attr("var", FIELD_ROOMNICK)
            .with_attr("type", "text-single")
            .with_attr("label", "Desired nickname");
        nick.push_child(Element::new("required", ns::DATA_FORMS));
        q.push_child(
            Element::new("x", ns::DATA_FORMS)
                .with_attr("type", "form")
                .with_child(Element::new("title", ns::DATA_FORMS).with_text("Room registration"))
                .with_child(form::form_type(FORM_REGISTER))
                .with_child(nick),
        );
        Ok(q)
    }

    /// `<query xmlns='jabber:iq:register'>` set: a submitted form, a cancelled one, or
    /// `<remove/>`.
    pub fn register_set(
        &mut self,
        from: &Jid,
        q: &Element,
        out: &mut Vec<Out>,
    ) -> Result<(), StanzaError> {
        let bare = from.to_bare();
        let key = bare.bare_string();
        let aff = self.may_register(&bare)?;
        if q.child("remove", NS_REGISTER).is_some() {
            if self.nicks.remove(&key).is_none() {
                return Err(StanzaError::item_not_found().with_text("you are not registered"));
            }
            self.dirty = true;
            // The membership registration gave ends with it (not one given by an admin of a
            // members-only room).
            if aff == Affiliation::Member && !self.config.members_only {
                self.change_affiliation(&key, Affiliation::None, Extra::default(), out);
            }
            return Ok(());
        }
        let x = q
            .child("x", ns::DATA_FORMS)
            .ok_or_else(|| StanzaError::bad_request().with_text("submit the registration form"))?;
        match x.attr("type") {
            Some("cancel") => return Ok(()),
            Some("submit") => {}
            _ => return Err(StanzaError::bad_request().with_text("submit the registration form")),
        }
        if form_value(x, "FORM_TYPE").is_some_and(|t| t != FORM_REGISTER) {
            return Err(StanzaError::bad_request().with_text("not a muc#register form"));
        }
        let nick = form_value(x, FIELD_ROOMNICK)
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                StanzaError::bad_request().with_text("muc#register_roomnick is required")
            })?;
        // A nickname is the resource of an occupant JID.
        let nick = Jid::from_parts(self.jid.node(), self.jid.domain(), Some(&nick))
            .ok()
            .and_then(|j| j.resource().map(str::to_string))
            .ok_or_else(|| StanzaError::jid_malformed().with_text("not a valid nickname"))?;
        if !self.nick_allowed(&bare, &nick) || self.nick_used_by_other(&bare, &nick) {
            return Err(StanzaError::conflict().with_text("that nickname is taken"));
        }
        if self.nicks.get(&key) != Some(&nick) {
            self.nicks.insert(key.clone(), nick);
            self.dirty = true;
        }
        if aff < Affiliation::Member {
            self.change_affiliation(&key, Affiliation::Member, Extra::default(), out);
        }
        Ok(())
    }

    /// §7.7: disco#info node `x-roomuser-item`.
    pub fn reserved_nick_info(&self, from: &Jid) -> Element {
        let mut q = Element::new("query", ns::DISCO_INFO).with_attr("node", NODE_ROOMUSER);
        if let Some(nick) = self.nicks.get(&from.bare_string()) {
            q.push_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "conference")
                    .with_attr("type", "text")
                    .with_attr("name", nick.clone()),
            );
        }
        q
    }
}
