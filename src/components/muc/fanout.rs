//! Recipients of a room broadcast, and their delivery.
//!
//! A groupchat message goes to every occupant's real JIDs. The room keeps that list as one
//! shared [`FanOut`], built when the occupancy changes (join, leave, nick change, removal), not
//! per message. The local sessions' send handles are resolved once per session-registry
//! generation ([`crate::session::SessionRegistry::generation`], bumped on every bind and
//! unbind): while no session binds or unbinds anywhere, a message costs no registry look-up
//! per occupant. A JID without a local session (a remote occupant over federation, or a session
//! that is gone) goes through the router, as before.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use crate::jid::Jid;
use crate::proto::shared::SharedStanza;
use crate::router;
use crate::server::ServerState;
use crate::session::SessionHandle;

/// Who gets an [`super::room::Out::Many`].
pub enum Recipients {
    /// A list built for this one stanza.
    List(Vec<Jid>),
    /// Every occupant of a room, shared between messages.
    Room(Arc<FanOut>),
}

impl From<Vec<Jid>> for Recipients {
    fn from(v: Vec<Jid>) -> Recipients {
        Recipients::List(v)
    }
}

impl Deref for Recipients {
    type Target = [Jid];
    fn deref(&self) -> &[Jid] {
        match self {
            Recipients::List(v) => v,
            Recipients::Room(f) => &f.jids,
        }
    }
}

/// A room's occupant JIDs and, once resolved, their session handles.
pub struct FanOut {
    jids: Vec<Jid>,
    resolved: Mutex<Resolved>,
}

#[derive(Default)]
struct Resolved {
    /// The registry generation read before `handles` were looked up (`None`: never resolved).
    generation: Option<u64>,
    handles: Vec<Option<SessionHandle>>,
}

impl FanOut {
    pub fn new(jids: Vec<Jid>) -> Arc<FanOut> {
        Arc::new(FanOut {
            jids,
            resolved: Mutex::new(Resolved::default()),
        })
    }

    /// Queue `shared` on every recipient's session; a recipient without a local session gets
    /// an ordinary copy through the router (after the cache's lock is released: routing may
    /// come back into the room).
    fn deliver(&self, state: &Arc<ServerState>, shared: &Arc<SharedStanza>) {
        let mut unresolved: Vec<usize> = Vec::new();
        {
            let mut r = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            let generation = state.sessions.generation();
            if r.generation != Some(generation) {
                r.handles.clear();
                r.handles
                    .extend(self.jids.iter().map(|j| state.sessions.handle(j)));
                r.generation = Some(generation);
            }
            for (i, h) in r.handles.iter().enumerate() {
                match h {
                    Some(h) => {
                        h.send_shared(shared.clone());
                    }
                    None => unresolved.push(i),
                }
            }
        }
        for i in unresolved {
            if let Some(jid) = self.jids.get(i) {
                router::route(state, shared.to_stanza(jid));
            }
        }
    }
}

/// Deliver a shared stanza: straight into local sessions' queues, through the router for
/// anyone else.
pub fn deliver(state: &Arc<ServerState>, shared: &Arc<SharedStanza>, to: &Recipients) {
    match to {
        Recipients::Room(f) => f.deliver(state, shared),
        Recipients::List(jids) => {
            for jid in jids {
                match state.sessions.handle(jid) {
                    Some(h) => {
                        h.send_shared(shared.clone());
                    }
                    None => router::route(state, shared.to_stanza(jid)),
                }
            }
        }
    }
}
