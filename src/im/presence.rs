//! Presence (RFC 6121 §3–4): broadcast of available/unavailable presence to subscribers,
//! probes, directed presence, and the subscription state machine with pre-approval.
//!
//! Subscription requests that wait for the user's answer are kept in the keyed store
//! [`PENDING_STORE`] (one entry per contact, the request stanza as XML), so they survive a
//! restart and are delivered again at each login until answered (RFC 6121 §3.1.3).

use std::sync::Arc;

use crate::im::{offline, roster};
use crate::jid::Jid;
use crate::proto::{ns, Stanza, StanzaError};
use crate::router;
use crate::server::ServerState;
use crate::storage::{RosterItem, Subscription};
use crate::xml::Element;

/// Keyed store holding inbound subscription requests waiting for an answer.
pub const PENDING_STORE: &str = "pending-subscriptions";

/// subscribe, subscribed, unsubscribe, unsubscribed.
pub fn is_subscription_type(stanza: &Stanza) -> bool {
    matches!(
        stanza.type_attr(),
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
    )
}

fn presence(from: &Jid, to: &Jid, kind: Option<&str>) -> Stanza {
    Stanza(
        Element::new("presence", ns::CLIENT)
            .with_attr("from", from.to_string())
            .with_attr("to", to.to_string())
            .with_opt_attr("type", kind),
    )
}

fn roster_of(state: &ServerState, account: &Jid) -> Vec<RosterItem> {
    match state.storage.get_roster(&account.bare_string()) {
        Ok(r) => r.items.into_values().collect(),
        Err(e) => {
            tracing::error!(error = %e, "reading a roster failed");
            Vec::new()
        }
    }
}

/// A presence stanza from a local client (its `from` already stamped with the full JID).
pub fn outbound(state: &Arc<ServerState>, from: &Jid, stanza: Stanza) {
    let to = match stanza.to() {
        Ok(to) => to,
        Err(_) => {
            router::bounce(state, &stanza, StanzaError::jid_malformed());
            return;
        }
    };
    match (to, stanza.type_attr()) {
        (None, None) => broadcast_available(state, from, stanza),
        (None, Some("unavailable")) => broadcast_unavailable(state, from, Some(stanza)),
        (None, Some(_)) => {}
        (Some(to), Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")) => {
            outbound_subscription(state, from, stanza, to.to_bare())
        }
        (Some(to), kind) => {
            // Directed presence: remember targets that are not subscribers, so they hear of
            // our unavailability later (RFC 6121 §4.6).
            if matches!(kind, None | Some("unavailable")) {
                let subscriber = roster::get_item(state, &from.to_bare(), &to)
                    .is_some_and(|i| i.subscription.has_from());
                if !subscriber && to.to_bare() != from.to_bare() {
                    state.sessions.update(from, |s| {
                        if kind.is_none() {
                            s.directed.insert(to.clone());
                        } else {
                            s.directed.remove(&to);
                        }
                    });
                }
            }
            router::route(state, stanza);
        }
    }
}

fn priority_of(el: &Element) -> i8 {
    el.child_text("priority", ns::CLIENT)
        .and_then(|p| p.trim().parse::<i8>().ok())
        .unwrap_or(0)
}

/// Available presence without `to`: store it, broadcast it, and on the first one probe
/// contacts and release offline messages and pending subscription requests.
fn broadcast_available(state: &Arc<ServerState>, from: &Jid, stanza: Stanza) {
    let mut el = stanza.into_element();
    el.remove_attr("to");
    el.set_attr("from", from.to_string());
    let priority = priority_of(&el);
    let Some(was_available) = state.sessions.update(from, |s| {
        let was = s.is_available();
        s.presence = Some(el.clone());
        s.priority = priority;
        was
    }) else {
        return;
    };
    let account = from.to_bare();
    let items = roster_of(state, &account);
    for item in items.iter().filter(|i| i.subscription.has_from()) {
        if let Ok(contact) = Jid::parse(&item.jid) {
            let mut p = el.clone();
            p.set_attr("to", contact.to_string());
            router::route(state, Stanza(p));
        }
    }
    for r in state.sessions.resources(&account) {
        if r.is_available() {
            let mut p = el.clone();
            p.set_attr("to", r.handle.jid.to_string());
            let _ = r.handle.send(Stanza(p));
        }
    }
    state
        .modules
        .emit(&crate::modules::ModuleEvent::AvailablePresence {
            from,
            presence: &el,
            initial: !was_available,
        });
    if was_available {
        return;
    }
    // Initial presence: the new resource learns the presence of its own other resources,
    // probes go to contacts we are subscribed to.
    for r in state.sessions.resources(&account) {
        if r.handle.jid != *from {
            if let Some(mut p) = r.presence.clone() {
                p.set_attr("to", from.to_string());
                state.deliver_to_full(from, Stanza(p));
            }
        }
    }
    for item in items.iter().filter(|i| i.subscription.has_to()) {
        if let Ok(contact) = Jid::parse(&item.jid) {
            router::route(state, presence(&account, &contact, Some("probe")));
        }
    }
    if priority >= 0 {
        offline::deliver(state, from);
    }
    deliver_pending_requests(state, from);
}

/// Unavailable presence: explicit (with the client's status) or on disconnect.
pub fn broadcast_unavailable(state: &Arc<ServerState>, from: &Jid, stanza: Option<Stanza>) {
    let Some((was_available, directed)) = state.sessions.update(from, |s| {
        let was = s.is_available();
        s.presence = None;
        (was, std::mem::take(&mut s.directed))
    }) else {
        return;
    };
    send_unavailable(state, from, stanza, was_available, directed);
}

/// Called by the connection task after it unbound a session.
pub fn on_session_closed(state: &Arc<ServerState>, last: crate::session::ResourceState) {
    let from = last.handle.jid.clone();
    let was_available = last.is_available();
    send_unavailable(state, &from, None, was_available, last.directed);
}

fn send_unavailable(
    state: &Arc<ServerState>,
    from: &Jid,
    stanza: Option<Stanza>,
    was_available: bool,
    directed: std::collections::HashSet<Jid>,
) {
    let mut el = match stanza {
        Some(s) => s.into_element(),
        None => Element::new("presence", ns::CLIENT).with_attr("type", "unavailable"),
    };
    el.remove_attr("to");
    el.set_attr("from", from.to_string());
    let account = from.to_bare();
    if was_available {
        for item in roster_of(state, &account)
            .iter()
            .filter(|i| i.subscription.has_from())
        {
            if let Ok(contact) = Jid::parse(&item.jid) {
                let mut p = el.clone();
                p.set_attr("to", contact.to_string());
                router::route(state, Stanza(p));
            }
        }
        for r in state.sessions.resources(&account) {
            if r.is_available() || r.handle.jid == *from {
                let mut p = el.clone();
                p.set_attr("to", r.handle.jid.to_string());
                let _ = r.handle.send(Stanza(p));
            }
        }
    }
    for target in directed {
        let mut p = el.clone();
        p.set_attr("to", target.to_string());
        router::route(state, Stanza(p));
    }
}

/// Presence addressed to a local account's bare JID (or a subscription type to a full JID).
pub fn inbound_to_bare(state: &Arc<ServerState>, stanza: Stanza, account: &Jid) {
    match stanza.type_attr() {
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
            inbound_subscription(state, stanza, account)
        }
        Some("probe") => answer_probe(state, &stanza, account),
        kind => {
            // Available, unavailable or error presence to the bare JID: every available
            // resource gets it (RFC 6121 §8.5.2.1.2); unavailable also reaches connected ones.
            for r in state.sessions.resources(account) {
                if r.is_available() || kind == Some("unavailable") {
                    let mut s = stanza.clone();
                    s.set_to(&r.handle.jid);
                    let _ = r.handle.send(s);
                }
            }
        }
    }
}

fn answer_probe(state: &Arc<ServerState>, probe: &Stanza, account: &Jid) {
    let Ok(Some(prober)) = probe.from() else {
        return;
    };
    let subscribed = roster::get_item(state, account, &prober.to_bare())
        .is_some_and(|i| i.subscription.has_from());
    if !subscribed && prober.to_bare() != *account {
        return;
    }
    for r in state.sessions.resources(account) {
        if let Some(mut p) = r.presence.clone() {
            p.set_attr("to", prober.to_string());
            router::route(state, Stanza(p));
        }
    }
}

/// Send `stanza` (a subscription presence) from the user's bare JID.
fn route_from_bare(state: &Arc<ServerState>, from: &Jid, to: &Jid, mut stanza: Stanza) {
    stanza.set_from(&from.to_bare());
    stanza.set_to(to);
    router::route(state, stanza);
}

/// RFC 6121 §3: a user's subscription request or answer.
fn outbound_subscription(state: &Arc<ServerState>, from: &Jid, stanza: Stanza, contact: Jid) {
    let account = from.to_bare();
    if contact == account {
        return;
    }
    let existing = roster::get_item(state, &account, &contact);
    let mut item = existing.clone().unwrap_or_else(|| RosterItem {
        jid: contact.bare_string(),
        ..Default::default()
    });
    match stanza.type_attr() {
        Some("subscribe") => {
            if !item.subscription.has_to() && !item.ask_out {
                item.ask_out = true;
                roster::save_and_push(state, &account, &item);
            }
            route_from_bare(state, from, &contact, stanza);
        }
        Some("subscribed") => {
            let pending = take_pending(state, &account, &contact);
            if item.subscription.has_from() {
                // Already subscribed: just repeat the answer.
                route_from_bare(state, from, &contact, stanza);
            } else if pending {
                item.subscription = match item.subscription {
                    Subscription::To => Subscription::Both,
                    _ => Subscription::From,
                };
                item.approved = false;
                roster::save_and_push(state, &account, &item);
                route_from_bare(state, from, &contact, stanza);
                send_current_presence(state, &account, &contact);
            } else if !item.approved {
                // Pre-approval (RFC 6121 §3.4).
                item.approved = true;
                roster::save_and_push(state, &account, &item);
            }
        }
        Some("unsubscribe") => {
            if item.subscription.has_to() || item.ask_out {
                item.subscription = match item.subscription {
                    Subscription::Both => Subscription::From,
                    Subscription::To => Subscription::None,
                    s => s,
                };
                item.ask_out = false;
                if existing.is_some() {
                    roster::save_and_push(state, &account, &item);
                }
            }
            route_from_bare(state, from, &contact, stanza);
        }
        Some("unsubscribed") => {
            let pending = take_pending(state, &account, &contact);
            if item.subscription.has_from() || item.approved {
                let had_from = item.subscription.has_from();
                item.subscription = match item.subscription {
                    Subscription::Both => Subscription::To,
                    Subscription::From => Subscription::None,
                    s => s,
                };
                item.approved = false;
                if existing.is_some() {
                    roster::save_and_push(state, &account, &item);
                }
                route_from_bare(state, from, &contact, stanza);
                if had_from {
                    send_unavailable_from_resources(state, &account, &contact);
                }
            } else if pending {
                route_from_bare(state, from, &contact, stanza);
            }
        }
        _ => {}
    }
}

/// RFC 6121 §3: a subscription request or answer arriving for a local user.
fn inbound_subscription(state: &Arc<ServerState>, stanza: Stanza, account: &Jid) {
    let Ok(Some(contact)) = stanza.from() else {
        return;
    };
    let contact = contact.to_bare();
    let existing = roster::get_item(state, account, &contact);
    let Some(kind) = stanza.type_attr().map(str::to_string) else {
        return;
    };
    match kind.as_str() {
        "subscribe" => {
            if let Some(mut item) = existing {
                if item.subscription.has_from() {
                    // Already subscribed: answer for the user (RFC 6121 §3.1.3).
                    router::route(state, presence(account, &contact, Some("subscribed")));
                    return;
                }
                if item.approved {
                    item.subscription = match item.subscription {
                        Subscription::To => Subscription::Both,
                        _ => Subscription::From,
                    };
                    item.approved = false;
                    roster::save_and_push(state, account, &item);
                    router::route(state, presence(account, &contact, Some("subscribed")));
                    send_current_presence(state, account, &contact);
                    return;
                }
            }
            let mut request = stanza.clone();
            request.set_to(account);
            let xml = request.el().to_string();
            if let Err(e) = state.storage.put_item(
                PENDING_STORE,
                &account.bare_string(),
                &contact.bare_string(),
                &xml,
            ) {
                tracing::error!(error = %e, "storing a subscription request failed");
                return;
            }
            deliver_to_available(state, account, &request);
        }
        "subscribed" => {
            let Some(mut item) = existing else { return };
            if !item.ask_out || item.subscription.has_to() {
                return;
            }
            item.ask_out = false;
            item.subscription = match item.subscription {
                Subscription::From => Subscription::Both,
                _ => Subscription::To,
            };
            // RFC 6121 §3.1.6: the approval reaches the user, then the roster push.
            deliver_to_available(state, account, &stanza);
            roster::save_and_push(state, account, &item);
        }
        "unsubscribe" => {
            let pending = take_pending(state, account, &contact);
            if let Some(mut item) = existing {
                if item.subscription.has_from() || item.approved {
                    let had_from = item.subscription.has_from();
                    item.subscription = match item.subscription {
                        Subscription::Both => Subscription::To,
                        Subscription::From => Subscription::None,
                        s => s,
                    };
                    item.approved = false;
                    roster::save_and_push(state, account, &item);
                    deliver_to_available(state, account, &stanza);
                    // RFC 6121 §3.3.3: the contact no longer sees the user's presence.
                    if had_from {
                        send_unavailable_from_resources(state, account, &contact);
                    }
                    return;
                }
            }
            if pending {
                deliver_to_available(state, account, &stanza);
            }
        }
        "unsubscribed" => {
            let Some(mut item) = existing else { return };
            if !item.subscription.has_to() && !item.ask_out {
                return;
            }
            item.ask_out = false;
            item.subscription = match item.subscription {
                Subscription::Both => Subscription::From,
                Subscription::To => Subscription::None,
                s => s,
            };
            deliver_to_available(state, account, &stanza);
            roster::save_and_push(state, account, &item);
        }
        _ => {}
    }
}

/// After a roster item was removed by the user (RFC 6121 §2.5.2).
pub fn after_roster_remove(
    state: &Arc<ServerState>,
    account: &Jid,
    contact: &Jid,
    old: &RosterItem,
) {
    take_pending(state, account, contact);
    if old.subscription.has_to() || old.ask_out {
        router::route(state, presence(account, contact, Some("unsubscribe")));
    }
    if old.subscription.has_from() {
        router::route(state, presence(account, contact, Some("unsubscribed")));
        send_unavailable_from_resources(state, account, contact);
    }
}

/// RFC 6121 §3.2.2, §3.3.3: when a contact loses its subscription to the user's presence,
/// it gets unavailable presence from each of the user's available resources.
fn send_unavailable_from_resources(state: &Arc<ServerState>, account: &Jid, contact: &Jid) {
    for r in state.sessions.resources(account) {
        if r.is_available() {
            router::route(state, presence(&r.handle.jid, contact, Some("unavailable")));
        }
    }
}

fn take_pending(state: &ServerState, account: &Jid, contact: &Jid) -> bool {
    state
        .storage
        .delete_item(
            PENDING_STORE,
            &account.bare_string(),
            &contact.bare_string(),
        )
        .unwrap_or(false)
}

fn deliver_to_available(state: &Arc<ServerState>, account: &Jid, stanza: &Stanza) {
    for r in state.sessions.resources(account) {
        if r.is_available() {
            let mut s = stanza.clone();
            s.set_to(&r.handle.jid);
            let _ = r.handle.send(s);
        }
    }
}

/// Send the user's current presence (every available resource) to a contact.
fn send_current_presence(state: &Arc<ServerState>, account: &Jid, contact: &Jid) {
    for r in state.sessions.resources(account) {
        if let Some(mut p) = r.presence.clone() {
            p.set_attr("to", contact.to_string());
            router::route(state, Stanza(p));
        }
    }
}

/// Re-deliver waiting subscription requests to a resource that became available.
fn deliver_pending_requests(state: &Arc<ServerState>, full: &Jid) {
    let pending = match state.storage.list_items(PENDING_STORE, &full.bare_string()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "reading pending subscription requests failed");
            return;
        }
    };
    for (_, xml) in pending {
        if let Ok(el) = crate::xml::parser::parse_element(&xml) {
            if let Ok(mut s) = Stanza::from_element(el) {
                s.set_to(full);
                state.deliver_to_full(full, s);
            }
        }
    }
}
