//! XEP-0160 offline messages: stored when no resource can take them, stamped with a XEP-0203
//! `<delay/>`, and released on the first available presence with a non-negative priority.
//! Storage is durable before the sender could learn anything of it (the store flushes; on the
//! server's runtime concurrent flushes share one fsync, see `SledStore::flush_db`).

use std::sync::Arc;

use crate::jid::Jid;
use crate::proto::{ns, Stanza, StanzaError};
use crate::router;
use crate::server::ServerState;
use crate::xml::Element;

/// Whether a message is worth keeping: chat states alone are not (XEP-0160 §3, XEP-0085).
fn worth_storing(stanza: &Stanza) -> bool {
    let el = stanza.el();
    el.elements().any(|c| c.ns != crate::proto::ns::CHATSTATES)
}

/// Store a message for an account with no available resource.
pub fn store(state: &Arc<ServerState>, mut stanza: Stanza, account: &Jid) {
    if !worth_storing(&stanza) {
        return;
    }
    let key = account.bare_string();
    let count = match state.storage.count_offline(&key) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "offline count failed");
            router::bounce(state, &stanza, StanzaError::internal_server_error());
            return;
        }
    };
    if count >= state.config.limits.max_offline_messages {
        router::bounce(
            state,
            &stanza,
            StanzaError::service_unavailable().with_text("the recipient's offline storage is full"),
        );
        return;
    }
    if stanza.el().child("delay", ns::DELAY).is_none() {
        stanza.el_mut().push_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", account.domain())
                .with_attr("stamp", super::utc_timestamp())
                .with_text("Offline storage"),
        );
    }
    let xml = stanza.el().to_string();
    if let Err(e) = state.storage.push_offline(&key, &xml) {
        tracing::error!(error = %e, "storing an offline message failed");
        router::bounce(state, &stanza, StanzaError::internal_server_error());
    }
}

/// Deliver every stored message to a session that just became available. Messages are removed
/// from storage only once they were queued on the session.
pub fn deliver(state: &Arc<ServerState>, full: &Jid) {
    let key = full.bare_string();
    let Some(session) = state.sessions.get(full) else {
        return;
    };
    let stored = match state.storage.list_offline(&key) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reading offline messages failed");
            return;
        }
    };
    if stored.is_empty() {
        return;
    }
    let mut delivered = Vec::with_capacity(stored.len());
    for (seq, xml) in stored {
        let el = match crate::xml::parser::parse_element(&xml) {
            Ok(el) => el,
            Err(e) => {
                tracing::error!(seq, error = ?e, "a stored offline message does not parse; kept");
                continue;
            }
        };
        let stanza = match Stanza::from_element(el) {
            Ok(s) => s,
            Err(_) => continue,
        };
        if session.handle.send(stanza).is_err() {
            break;
        }
        delivered.push(seq);
    }
    if let Err(e) = state.storage.remove_offline(&key, &delivered) {
        tracing::error!(error = %e, "removing delivered offline messages failed");
    }
}
