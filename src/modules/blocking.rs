//! XEP-0191: Blocking Command (`urn:xmpp:blocking`).
//!
//! The blocklist is kept in the keyed item store [`STORE`] (one entry per blocked JID, key =
//! the normalised JID, empty value) and cached in memory per hosted account, because it is
//! consulted for every stanza to and from the account.
//!
//! - `<blocklist/>` get returns the list and marks the session as interested
//!   ([`SessionFlags::blocklist`]); `<block/>` (at least one item, else `bad-request`) and
//!   `<unblock/>` (no items: everything) change it and push the change to every interested
//!   session of the account (§3.3, §3.4).
//! - Blocking sends unavailable presence from the user's available resources to a newly
//!   blocked contact that was subscribed to the user's presence; unblocking sends current
//!   presence to it (§3.3, §3.4).
//! - Inbound ([`Direction::Inbound`]), from a blocked JID: presence is dropped without an
//!   answer, messages get `service-unavailable`, IQ get/set get `service-unavailable`, IQ
//!   results and errors are dropped (§3.3). Presence from a local user who blocked the
//!   recipient is dropped too: that is how "blocked contacts don't receive presence" holds
//!   for broadcasts and probe answers, which the server generates on the user's behalf.
//! - Outbound ([`Direction::Sent`]), to a blocked JID: messages and IQ get/set get
//!   `<not-acceptable/>` with `<blocked xmlns='urn:xmpp:blocking:errors'/>`; presence is
//!   dropped.
//! - Leaving for another server ([`Direction::Leaving`]): presence to a blocked remote JID
//!   is dropped (broadcasts and probe answers included).
//! - Matching (§5): `user@domain/resource` exactly; `user@domain` any resource;
//!   `domain/resource` exactly; `domain` the domain and everything at it. Stanzas from the
//!   account itself or from a hosted domain (the server) are never blocked.

use std::sync::{Arc, Mutex};

use crate::jid::{BareMap, BareOf, Jid};
use crate::modules::services::storage_failed;
use crate::modules::{
    Direction, Flow, HookPoint, IqRequest, IqResult, Module, ModuleContext, ModuleEvent,
};
use crate::proto::{ns, Stanza, StanzaError, StanzaKind};
use crate::session::SessionFlags;
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:blocking";
pub const NS_ERRORS: &str = "urn:xmpp:blocking:errors";
/// Keyed store of blocked JIDs.
pub const STORE: &str = "blocklist";
/// Most JIDs one account may block.
pub const MAX_ITEMS: usize = 10_000;

#[derive(Default)]
pub struct BlockingModule {
    /// By bare JID (a `Jid` key: the per-stanza lookup builds no string).
    cache: Mutex<BareMap<Arc<Vec<Jid>>>>,
}

/// Whether `item` (a blocklist entry) covers `sender` (XEP-0191 §5).
pub fn matches(item: &Jid, sender: &Jid) -> bool {
    if item.domain() != sender.domain() {
        return false;
    }
    match (item.node(), item.resource()) {
        (Some(_), Some(_)) => item == sender,
        (Some(n), None) => sender.node() == Some(n),
        (None, Some(_)) => item == sender,
        (None, None) => true,
    }
}

impl BlockingModule {
    /// The account's blocklist (cached). Accounts of domains we do not host have none.
    fn list(&self, ctx: &ModuleContext, account: &Jid) -> Result<Arc<Vec<Jid>>, StanzaError> {
        if let Some(l) = self.lock().get(&BareOf(account)) {
            return Ok(l.clone());
        }
        let account = account.as_bare();
        if account.node().is_none() || !ctx.config.hosts(account.domain()) {
            return Ok(Arc::new(Vec::new()));
        }
        let key = account.bare_string();
        let items = ctx
            .storage
            .list_items(STORE, &key)
            .map_err(|e| storage_failed("blocking", e))?;
        let list: Arc<Vec<Jid>> = Arc::new(
            items
                .into_iter()
                .filter_map(|(k, _)| Jid::parse(&k).ok())
                .collect(),
        );
        self.lock().insert(account.into_owned(), list.clone());
        Ok(list)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BareMap<Arc<Vec<Jid>>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop the account's cached list (it changed, or the account is gone).
    fn forget(&self, account: &Jid) {
        self.lock().remove(&account.to_bare());
    }

    /// Whether `account` blocks `other`. A storage failure counts as not blocked (logged).
    fn blocks(&self, ctx: &ModuleContext, account: &Jid, other: &Jid) -> bool {
        if other.same_bare(account) {
            return false;
        }
        match self.list(ctx, account) {
            Ok(l) => l.iter().any(|item| matches(item, other)),
            Err(_) => false,
        }
    }

    fn push(&self, ctx: &ModuleContext, account: &Jid, payload: Element) {
        for (jid, flags) in ctx.server.session_flags(account) {
            if flags.blocklist {
                let iq = Element::new("iq", ns::CLIENT)
                    .with_attr("type", "set")
                    .with_attr("id", format!("push-{}", crate::c2s::random_id()))
                    .with_attr("from", account.to_string())
                    .with_attr("to", jid.to_string())
                    .with_child(payload.clone());
                ctx.server.send_to_session(&jid, Stanza(iq));
            }
        }
    }

    /// Presence from each available resource to a contact subscribed to the user's presence:
    /// unavailable (`available == false`) or the current presence.
    fn presence_to(&self, ctx: &ModuleContext, account: &Jid, contact: &Jid, available: bool) {
        if contact.node().is_none() {
            return;
        }
        let subscribed = ctx
            .storage
            .get_roster(&account.bare_string())
            .ok()
            .and_then(|r| r.items.get(&contact.bare_string()).cloned())
            .is_some_and(|i| i.subscription.has_from());
        if !subscribed {
            return;
        }
        for p in ctx.server.available_presences(account) {
            let mut p = p;
            p.set_attr("to", contact.to_string());
            if !available {
                p = Element::new("presence", ns::CLIENT)
                    .with_opt_attr("from", p.attr("from"))
                    .with_attr("to", contact.to_string())
                    .with_attr("type", "unavailable");
            }
            ctx.server.route(Stanza(p));
        }
    }

    fn items_of(payload: &Element) -> Result<Vec<Jid>, StanzaError> {
        payload
            .elements()
            .filter(|e| e.is("item", NS))
            .map(|e| {
                let j = e
                    .attr("jid")
                    .ok_or_else(|| StanzaError::bad_request().with_text("an item needs a jid"))?;
                Jid::parse(j).map_err(|_| StanzaError::jid_malformed())
            })
            .collect()
    }

    fn list_element(name: &'static str, jids: &[Jid]) -> Element {
        let mut el = Element::new(name, NS);
        for j in jids {
            el.push_child(Element::new("item", NS).with_attr("jid", j.to_string()));
        }
        el
    }

    fn block(&self, ctx: &ModuleContext, account: &Jid, jids: Vec<Jid>) -> IqResult {
        if jids.is_empty() {
            return Err(StanzaError::bad_request().with_text("block at least one JID"));
        }
        let current = self.list(ctx, account)?;
        let new: Vec<Jid> = jids
            .iter()
            .filter(|j| !current.contains(j))
            .cloned()
            .collect();
        if current.len() + new.len() > MAX_ITEMS {
            return Err(StanzaError::resource_constraint().with_text("the blocklist is full"));
        }
        // Unavailable presence goes out while the contact is not blocked yet, so it passes.
        for j in &new {
            self.presence_to(ctx, account, j, false);
        }
        let key = account.bare_string();
        for j in &new {
            if let Err(e) = ctx.storage.put_item(STORE, &key, &j.to_string(), "") {
                self.forget(account);
                return Err(storage_failed("blocking", e));
            }
        }
        self.forget(account);
        self.push(ctx, account, Self::list_element("block", &jids));
        Ok(None)
    }

    fn unblock(&self, ctx: &ModuleContext, account: &Jid, jids: Vec<Jid>) -> IqResult {
        let current = self.list(ctx, account)?;
        let all = jids.is_empty();
        let removed: Vec<Jid> = if all {
            current.to_vec()
        } else {
            jids.iter()
                .filter(|j| current.contains(j))
                .cloned()
                .collect()
        };
        let key = account.bare_string();
        for j in &removed {
            if let Err(e) = ctx.storage.delete_item(STORE, &key, &j.to_string()) {
                self.forget(account);
                return Err(storage_failed("blocking", e));
            }
        }
        self.forget(account);
        for j in &removed {
            self.presence_to(ctx, account, j, true);
        }
        self.push(ctx, account, Self::list_element("unblock", &jids));
        Ok(None)
    }
}

/// `<not-acceptable/>` with the `<blocked/>` application condition (§3.3).
fn blocked_error(stanza: &Stanza) -> Stanza {
    let mut reply = StanzaError::not_acceptable().reply_to(stanza);
    if let Some(err) = reply.el_mut().child_mut("error", ns::CLIENT) {
        err.set_attr("type", "cancel");
        err.push_child(Element::new("blocked", NS_ERRORS));
    }
    reply
}

impl Module for BlockingModule {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("blocklist", NS), ("block", NS), ("unblock", NS)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden());
        }
        let account = req.from.to_bare();
        match (&*req.payload.name, req.is_set) {
            ("blocklist", false) => {
                let list = self.list(ctx, &account)?;
                let mut set = |f: &mut SessionFlags| f.blocklist = true;
                ctx.server.update_session_flags(&req.from, &mut set);
                Ok(Some(Self::list_element("blocklist", &list)))
            }
            ("block", true) => self.block(ctx, &account, Self::items_of(req.payload)?),
            ("unblock", true) => self.unblock(ctx, &account, Self::items_of(req.payload)?),
            _ => Err(StanzaError::bad_request()),
        }
    }

    /// A deleted account's cached list must not outlive it (a new account of the same name
    /// starts with an empty list).
    fn on_event(&self, _ctx: &ModuleContext, event: &ModuleEvent<'_>) {
        if let ModuleEvent::AccountDeleted { account } = event {
            self.forget(account);
        }
    }

    fn on_stanza(&self, ctx: &ModuleContext, at: HookPoint<'_>, stanza: &mut Stanza) -> Flow {
        match at.dir {
            Direction::Sent => {
                let Some(to) = at.to else {
                    return Flow::Continue;
                };
                if to.node().is_none() && ctx.config.hosts(to.domain()) {
                    return Flow::Continue;
                }
                // Subscription answers and unavailable presence still leave (a user may
                // cancel a subscription with a blocked contact); everything else is held.
                if cancels_subscription(stanza) {
                    return Flow::Continue;
                }
                if !self.blocks(ctx, at.account, to) {
                    return Flow::Continue;
                }
                if stanza.answerable_with_error() {
                    if let Some(session) = at.session {
                        ctx.server.send_to_session(session, blocked_error(stanza));
                    }
                }
                Flow::Stop
            }
            // Presence the server sends for the account to another server: not to a JID the
            // account blocked (local recipients are covered by their Inbound check).
            Direction::Leaving => {
                let Some(to) = at.to else {
                    return Flow::Continue;
                };
                if cancels_subscription(stanza) {
                    return Flow::Continue;
                }
                if self.blocks(ctx, at.account, to) {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            }
            Direction::Inbound => {
                let Some(from) = at.from else {
                    return Flow::Continue;
                };
                if from.same_bare(at.account)
                    || (from.node().is_none() && ctx.config.hosts(from.domain()))
                {
                    return Flow::Continue;
                }
                let blocked = self.blocks(ctx, at.account, from)
                    || (stanza.kind() == StanzaKind::Presence
                        && self.blocks(ctx, &from.to_bare(), at.account));
                if !blocked {
                    return Flow::Continue;
                }
                if stanza.answerable_with_error() {
                    ctx.server
                        .route(StanzaError::service_unavailable().reply_to(stanza));
                }
                Flow::Stop
            }
        }
    }
}

/// Presence cancelling a subscription: it leaves even to a blocked JID (a user may end a
/// subscription with a contact they blocked).
fn cancels_subscription(stanza: &Stanza) -> bool {
    stanza.kind() == StanzaKind::Presence
        && matches!(stanza.type_attr(), Some("unsubscribe" | "unsubscribed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn matching_follows_the_four_forms() {
        assert!(matches(&j("a@x/r"), &j("a@x/r")));
        assert!(!matches(&j("a@x/r"), &j("a@x/s")));
        assert!(!matches(&j("a@x/r"), &j("a@x")));
        assert!(matches(&j("a@x"), &j("a@x/s")));
        assert!(matches(&j("a@x"), &j("a@x")));
        assert!(!matches(&j("a@x"), &j("b@x")));
        assert!(matches(&j("x/r"), &j("x/r")));
        assert!(!matches(&j("x/r"), &j("a@x/r")));
        assert!(matches(&j("x"), &j("a@x/r")));
        assert!(matches(&j("x"), &j("x")));
        assert!(!matches(&j("x"), &j("a@y")));
        assert!(!matches(&j("x"), &j("a@sub.x")));
    }

    #[test]
    fn blocked_error_has_the_application_condition() {
        let m = Stanza::from_element(
            crate::xml::parser::parse_element(
                "<message xmlns='jabber:client' from='a@x/1' to='b@x' id='m1'><body>x</body></message>",
            )
            .unwrap(),
        )
        .unwrap();
        let e = blocked_error(&m);
        let err = e.el().child("error", ns::CLIENT).unwrap();
        assert_eq!(err.attr("type"), Some("cancel"));
        assert!(err.child("not-acceptable", ns::STANZAS_ERR).is_some());
        assert!(err.child("blocked", NS_ERRORS).is_some());
        assert_eq!(e.attr("to"), Some("a@x/1"));
        assert_eq!(e.attr("from"), Some("b@x"));
    }
}
