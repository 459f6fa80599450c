//! The router: where a stanza goes once its sender is known (its `from` is trusted).
//!
//! Rules (RFC 6121 §8), for a stanza addressed to a hosted domain:
//!
//! | to                         | message                                   | presence                         | iq (get/set)                  |
//! |----------------------------|-------------------------------------------|----------------------------------|-------------------------------|
//! | domain                     | dropped (errors silently)                 | dropped                          | server modules                |
//! | user@domain, no account    | `service-unavailable`                     | dropped                          | `service-unavailable`         |
//! | user@domain (bare)         | chat/normal: top-priority non-negative resources, else offline; headline: all non-negative, else dropped; groupchat: `service-unavailable` | subscription types: roster state machine; probe: answered; others: every available resource | server answers for the account (modules) |
//! | user@domain/res, bound     | delivered                                 | delivered (subscription types as bare) | delivered               |
//! | user@domain/res, not bound | chat/normal/headline: as bare; groupchat: `service-unavailable` | subscription types as bare; others dropped | `service-unavailable` |
//!
//! A stanza to an internal component's domain (e.g. `conference.<domain>`, see
//! [`crate::components`]) goes to that component, whatever its type.
//!
//! A stanza of type `error` is never answered with an error; an IQ result/error is never
//! answered at all. A domain we do not host goes to federation ([`crate::s2s::send`]), which
//! bounces with `remote-server-not-found` when federation is off.

use std::sync::Arc;

use crate::im::{offline, presence};
use crate::jid::Jid;
use crate::modules::{Direction, Flow, HookPoint, IqTarget, ModuleEvent};
use crate::proto::{Stanza, StanzaError, StanzaKind};
use crate::server::ServerState;

/// Route a stanza whose `from` has been set by the server.
pub fn route(state: &Arc<ServerState>, stanza: Stanza) {
    let to = match stanza.to() {
        Ok(Some(to)) => to,
        Ok(None) => {
            // Callers resolve a missing `to` before routing; treat it as the sender's account.
            match stanza.from() {
                Ok(Some(from)) => from.to_bare(),
                _ => return,
            }
        }
        Err(_) => {
            bounce(state, &stanza, StanzaError::jid_malformed());
            return;
        }
    };
    route_to(state, stanza, to, None);
}

/// Route a stanza whose addresses the caller has parsed already (a client's stanza: its
/// `from` was just stamped, its `to` parsed for the hooks): `to` is the stanza's `to`, `from`
/// its `from`. Parsing them once per stanza instead of three times is measurable.
pub fn route_parsed(state: &Arc<ServerState>, stanza: Stanza, to: Jid, from: &Jid) {
    route_to(state, stanza, to, Some(from));
}

/// [`route`] once `to` is known; `from` is parsed from the stanza when the caller did not
/// give it.
fn route_to(state: &Arc<ServerState>, mut stanza: Stanza, to: Jid, from: Option<&Jid>) {
    let parsed_from;
    let from = match from {
        Some(f) => Some(f),
        None => {
            parsed_from = stanza.from().ok().flatten();
            parsed_from.as_ref()
        }
    };
    if let Some(component) = state.components.get(to.domain()) {
        component.handle(state, stanza);
        return;
    }
    if !state.config.hosts(to.domain()) {
        if stanza.kind() == StanzaKind::Presence {
            if let Some(from) = from {
                if from.node().is_some() && state.config.hosts(from.domain()) {
                    let account = from.to_bare();
                    let at = HookPoint {
                        dir: Direction::Leaving,
                        account: &account,
                        session: None,
                        to: Some(&to),
                        from: Some(from),
                    };
                    if state.modules.run_hooks(at, &mut stanza) == Flow::Stop {
                        return;
                    }
                }
            }
        }
        crate::s2s::send(state, stanza);
        return;
    }
    if to.node().is_none() {
        route_to_domain(state, stanza, to);
        return;
    }
    let bare = to.to_bare();
    match state.account_exists(&bare) {
        Ok(true) => {}
        Ok(false) => {
            // An account deleted a moment ago (XEP-0077 `<remove/>`) keeps its sessions until
            // they close: the answer to that request still reaches the session that sent it.
            if stanza.kind() == StanzaKind::Iq
                && !stanza.is_iq_request()
                && to.is_full()
                && state.sessions.handle(&to).is_some()
            {
                route_to_full(state, stanza, to, bare);
                return;
            }
            if stanza.kind() != StanzaKind::Presence {
                bounce(state, &stanza, StanzaError::service_unavailable());
            }
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "storage lookup failed while routing");
            bounce(state, &stanza, StanzaError::internal_server_error());
            return;
        }
    }
    let at = HookPoint {
        dir: Direction::Inbound,
        account: &bare,
        session: None,
        to: Some(&to),
        from,
    };
    if state.modules.run_hooks(at, &mut stanza) == Flow::Stop {
        return;
    }
    if to.is_full() {
        route_to_full(state, stanza, to, bare);
    } else {
        route_to_bare(state, stanza, bare);
    }
}

fn route_to_domain(state: &Arc<ServerState>, stanza: Stanza, to: Jid) {
    match stanza.kind() {
        StanzaKind::Iq if stanza.is_iq_request() && to.is_bare() => {
            state.handle_server_iq(&stanza, IqTarget::Server(to));
        }
        StanzaKind::Iq => {
            if stanza.is_iq_request() {
                bounce(state, &stanza, StanzaError::service_unavailable());
            } else if to.is_bare() {
                // An answer to a request the server sent (e.g. XEP-0115 disco#info).
                state.modules.emit(&ModuleEvent::IqResponse(&stanza));
            }
        }
        StanzaKind::Message | StanzaKind::Presence => {}
    }
}

/// `bare` is `to` without its resource.
fn route_to_full(state: &Arc<ServerState>, stanza: Stanza, to: Jid, bare: Jid) {
    if stanza.kind() == StanzaKind::Presence && presence::is_subscription_type(&stanza) {
        route_to_bare(state, stanza, bare);
        return;
    }
    let handle = to
        .resource()
        .and_then(|resource| state.sessions.handle_of(&bare, resource));
    let stanza = match handle {
        Some(handle) => {
            // Presence to a full JID that is not available is still delivered: directed
            // presence reaches connected resources (RFC 6121 §8.5.3.1).
            if stanza.kind() == StanzaKind::Message {
                state
                    .modules
                    .message_delivered(&bare, &stanza, std::slice::from_ref(&to));
            }
            match handle.send(stanza) {
                Ok(()) => return,
                Err(s) => s,
            }
        }
        None => stanza,
    };
    match stanza.kind() {
        StanzaKind::Message => match stanza.type_attr() {
            Some("groupchat") => bounce(state, &stanza, StanzaError::service_unavailable()),
            Some("error") => {}
            _ => route_to_bare(state, stanza, bare),
        },
        StanzaKind::Presence => {}
        StanzaKind::Iq => {
            if stanza.is_iq_request() {
                bounce(state, &stanza, StanzaError::service_unavailable());
            }
        }
    }
}

fn route_to_bare(state: &Arc<ServerState>, stanza: Stanza, bare: Jid) {
    match stanza.kind() {
        StanzaKind::Iq => {
            if stanza.is_iq_request() {
                state.handle_server_iq(&stanza, IqTarget::Account(bare));
            }
        }
        StanzaKind::Presence => presence::inbound_to_bare(state, stanza, &bare),
        StanzaKind::Message => deliver_message_to_bare(state, stanza, &bare),
    }
}

/// Deliver a message addressed to an account's bare JID (RFC 6121 §8.5.2.1).
pub fn deliver_message_to_bare(state: &Arc<ServerState>, stanza: Stanza, bare: &Jid) {
    let msg_type = stanza.type_attr().unwrap_or("normal").to_string();
    match msg_type.as_str() {
        "groupchat" => {
            bounce(state, &stanza, StanzaError::service_unavailable());
            return;
        }
        "error" => return,
        _ => {}
    }
    let available: Vec<_> = state
        .sessions
        .resources(bare)
        .into_iter()
        .filter(|r| r.is_available() && r.priority >= 0)
        .collect();
    let targets: Vec<_> = if msg_type == "headline" {
        available
    } else {
        let top = available.iter().map(|r| r.priority).max();
        available
            .into_iter()
            .filter(|r| Some(r.priority) == top)
            .collect()
    };
    let mut delivered = Vec::new();
    let mut last = None;
    for target in targets {
        match target.handle.send(stanza.clone()) {
            Ok(()) => delivered.push(target.handle.jid),
            Err(s) => last = Some(s),
        }
    }
    state.modules.message_delivered(bare, &stanza, &delivered);
    if !delivered.is_empty() {
        return;
    }
    let _ = last;
    if msg_type == "headline" {
        return;
    }
    offline::store(state, stanza, bare);
}

/// Send an error reply for `stanza` back to its sender, unless it is itself an error or an
/// IQ response (RFC 6120 §8.3.1).
pub fn bounce(state: &Arc<ServerState>, stanza: &Stanza, error: StanzaError) {
    if stanza.is_error() {
        return;
    }
    if stanza.kind() == StanzaKind::Iq && !stanza.is_iq_request() {
        return;
    }
    if stanza.attr("from").is_none() {
        return;
    }
    let reply = error.reply_to(stanza);
    route(state, reply);
}
