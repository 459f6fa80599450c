//! Roster management (RFC 6121 §2) with versioning (XEP-0237): get, set, remove, and the
//! roster pushes that follow every change, whoever made it (the client, or a subscription).

use std::sync::Arc;

use rand::Rng;

use crate::jid::Jid;
use crate::proto::{ns, Stanza, StanzaError};
use crate::router;
use crate::server::ServerState;
use crate::storage::{RosterItem, Subscription};
use crate::xml::Element;

/// Most items one roster may hold.
pub const MAX_ROSTER_ITEMS: usize = 2000;

/// The `<item/>` element for a roster item (as clients see it).
pub fn item_element(item: &RosterItem) -> Element {
    let mut el = Element::new("item", ns::ROSTER)
        .with_attr("jid", item.jid.clone())
        .with_attr("subscription", item.subscription.as_str());
    if let Some(name) = &item.name {
        el.set_attr("name", name.clone());
    }
    if item.ask_out {
        el.set_attr("ask", "subscribe");
    }
    if item.approved {
        el.set_attr("approved", "true");
    }
    for g in &item.groups {
        el.push_child(Element::new("group", ns::ROSTER).with_text(g.clone()));
    }
    el
}

/// Send a roster push for one item (or its removal) to every resource of the account that
/// asked for the roster.
pub fn push(state: &Arc<ServerState>, account: &Jid, item: Element, version: u64) {
    for r in state.sessions.resources(account) {
        if !r.interested {
            continue;
        }
        let id: u64 = rand::thread_rng().gen();
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push{id:x}"))
            .with_attr("to", r.handle.jid.to_string())
            .with_child(
                Element::new("query", ns::ROSTER)
                    .with_attr("ver", version.to_string())
                    .with_child(item.clone()),
            );
        let _ = r.handle.send(Stanza(iq));
    }
}

/// Save an item changed by the server (subscriptions) and push it.
pub fn save_and_push(state: &Arc<ServerState>, account: &Jid, item: &RosterItem) {
    match state.storage.put_roster_item(&account.bare_string(), item) {
        Ok(version) => push(state, account, item_element(item), version),
        Err(e) => tracing::error!(error = %e, "saving a roster item failed"),
    }
}

/// One roster item of an account, if present.
pub fn get_item(state: &ServerState, account: &Jid, contact: &Jid) -> Option<RosterItem> {
    match state.storage.get_roster(&account.bare_string()) {
        Ok(mut roster) => roster.items.remove(&contact.bare_string()),
        Err(e) => {
            tracing::error!(error = %e, "reading a roster failed");
            None
        }
    }
}

/// Handle a `jabber:iq:roster` IQ from a local client about its own roster.
pub fn handle_iq(state: &Arc<ServerState>, from: &Jid, stanza: &Stanza) {
    let reply = match stanza.type_attr() {
        Some("get") => roster_get(state, from, stanza),
        Some("set") => roster_set(state, from, stanza),
        _ => return,
    };
    let reply = match reply {
        Ok(r) => r,
        Err(e) => e.reply_to(stanza),
    };
    router::route(state, reply);
}

fn roster_get(
    state: &Arc<ServerState>,
    from: &Jid,
    stanza: &Stanza,
) -> Result<Stanza, StanzaError> {
    let account = from.to_bare();
    let roster = state
        .storage
        .get_roster(&account.bare_string())
        .map_err(|_| StanzaError::internal_server_error())?;
    state.sessions.update(from, |s| s.interested = true);
    let version = roster.version.to_string();
    let asked = stanza.iq_payload().and_then(|q| q.attr("ver"));
    if asked == Some(version.as_str()) {
        // XEP-0237 §3: up to date; changes come as pushes.
        return Ok(stanza.iq_result(None));
    }
    let mut query = Element::new("query", ns::ROSTER).with_attr("ver", version);
    for item in roster.items.values() {
        query.push_child(item_element(item));
    }
    Ok(stanza.iq_result(Some(query)))
}

fn roster_set(
    state: &Arc<ServerState>,
    from: &Jid,
    stanza: &Stanza,
) -> Result<Stanza, StanzaError> {
    let account = from.to_bare();
    let query = stanza.iq_payload().ok_or_else(StanzaError::bad_request)?;
    let items: Vec<&Element> = query
        .elements()
        .filter(|e| e.is("item", ns::ROSTER))
        .collect();
    if items.len() != 1 || query.elements().count() != 1 {
        return Err(StanzaError::bad_request().with_text("a roster set carries exactly one item"));
    }
    let item_el = items[0];
    let contact = item_el
        .attr("jid")
        .map(Jid::parse)
        .transpose()
        .map_err(|_| StanzaError::jid_malformed())?
        .ok_or_else(|| StanzaError::bad_request().with_text("the item has no jid"))?;
    if contact.is_full() {
        return Err(StanzaError::jid_malformed().with_text("roster items are bare JIDs"));
    }
    let key = account.bare_string();
    let roster = state
        .storage
        .get_roster(&key)
        .map_err(|_| StanzaError::internal_server_error())?;
    let existing = roster.items.get(&contact.bare_string()).cloned();

    if item_el.attr("subscription") == Some("remove") {
        let Some(old) = existing else {
            return Err(StanzaError::item_not_found());
        };
        let version = state
            .storage
            .remove_roster_item(&key, &old.jid)
            .map_err(|_| StanzaError::internal_server_error())?;
        let removed = Element::new("item", ns::ROSTER)
            .with_attr("jid", old.jid.clone())
            .with_attr("subscription", "remove");
        push(state, &account, removed, version);
        // RFC 6121 §2.5.2: cancel the subscriptions in both directions.
        super::presence::after_roster_remove(state, &account, &contact, &old);
        return Ok(stanza.iq_result(None));
    }

    let name = item_el
        .attr("name")
        .map(str::to_string)
        .filter(|n| !n.is_empty());
    let mut groups: Vec<String> = Vec::new();
    for g in item_el.elements().filter(|e| e.is("group", ns::ROSTER)) {
        let text = g.text();
        if text.is_empty() {
            return Err(StanzaError::not_acceptable().with_text("empty group name"));
        }
        if text.len() > 1024 {
            return Err(StanzaError::not_acceptable().with_text("group name too long"));
        }
        if groups.contains(&text) {
            return Err(StanzaError::bad_request().with_text("duplicate group"));
        }
        groups.push(text);
    }
    if name.as_ref().is_some_and(|n| n.len() > 1024) {
        return Err(StanzaError::not_acceptable().with_text("name too long"));
    }
    if existing.is_none() && roster.items.len() >= MAX_ROSTER_ITEMS {
        return Err(StanzaError::not_allowed().with_text("the roster is full"));
    }
    // Clients may not change subscription state through a roster set (RFC 6121 §2.1.2.5).
    let mut item = existing.unwrap_or_else(|| RosterItem {
        jid: contact.bare_string(),
        subscription: Subscription::None,
        ..Default::default()
    });
    item.name = name;
    item.groups = groups;
    let version = state
        .storage
        .put_roster_item(&key, &item)
        .map_err(|_| StanzaError::internal_server_error())?;
    push(state, &account, item_element(&item), version);
    Ok(stanza.iq_result(None))
}
