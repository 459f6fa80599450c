//! The session registry: which full JIDs are bound on this server, their send handles, and the
//! presence state the routing rules need (available or not, priority, last broadcast
//! presence, whether the client asked for its roster, directed presence targets).
//!
//! One connection task owns each socket; everyone else holds a [`SessionHandle`], the sending
//! side of a bounded queue ([`OutboundRx`] is the receiving side). [`SessionHandle::send`]
//! never waits: a full queue means the client is not reading, and the stanza is handed back so
//! the caller can fall back (offline storage, other resources) while the session is closed.
//! The queue allocates nothing while it is empty (most sessions are idle most of the time).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::jid::{BareMap, BareOf, Jid};
use crate::proto::shared::SharedStanza;
use crate::proto::{Stanza, StreamError};
use crate::xml::Element;

/// Depth of each session's outbound queue.
pub const SESSION_QUEUE: usize = 4096;

/// What other tasks ask a connection task to do.
#[derive(Debug)]
pub enum Outbound {
    /// Boxed: keeps the queue's slots small (a burst grows the queue to its size).
    Stanza(Box<Stanza>),
    /// Close the stream with this error (conflict, system-shutdown, …).
    Close(StreamError, Option<String>),
    /// A stanza serialised once for many recipients; written with this session's JID as `to`.
    Shared(Arc<SharedStanza>),
}

/// Why [`QueueTx::try_send`] refused an item (which it hands back).
enum TrySendError {
    /// The receiver is gone or closed.
    Closed(Outbound),
    /// [`SESSION_QUEUE`] items are waiting.
    Full(Outbound),
}

/// One session's outbound queue: a `VecDeque` under a lock (no memory while empty, unlike a
/// channel that allocates a block of slots up front), and under the same lock the waker of
/// the one receiver. The receiver polls it ([`OutboundRx::poll_recv`]), so a waiting session
/// keeps no wait-list entry of its own.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Live [`QueueTx`]es; the receiver sees the end once they are all gone.
    senders: AtomicUsize,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Outbound>,
    /// The receiver closed or dropped its side: nothing more is accepted.
    rx_closed: bool,
    /// A [`Outbound::Close`] is already queued (it does not count against the bound, so a
    /// full queue can still be closed; one is enough: the session ends at the first).
    close_queued: bool,
    /// The receiver found the queue empty and waits: woken (and cleared) by whoever changes
    /// what it would see (an item queued, the last sender gone).
    waiting: Option<Waker>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every update below leaves the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wake the receiver if it waits; the waker is taken under the lock, woken outside it.
    fn wake_receiver(&self) {
        let waker = self.lock().waiting.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The sending side of a session queue (counted: the receiver sees the end when the last one
/// is dropped).
#[derive(Debug)]
struct QueueTx(Arc<Queue>);

impl Clone for QueueTx {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        QueueTx(self.0.clone())
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.wake_receiver();
        }
    }
}

impl QueueTx {
    /// Queue a stanza unless the queue is closed or holds [`SESSION_QUEUE`] items already.
    fn try_send(&self, item: Outbound) -> Result<(), TrySendError> {
        let waker = {
            let mut st = self.0.lock();
            if st.rx_closed {
                return Err(TrySendError::Closed(item));
            }
            if st.items.len() >= SESSION_QUEUE {
                return Err(TrySendError::Full(item));
            }
            st.items.push_back(item);
            st.waiting.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queue a close request, past the bound if need be; a second one is dropped.
    fn send_close(&self, item: Outbound) {
        let waker = {
            let mut st = self.0.lock();
            if st.rx_closed || st.close_queued {
                return;
            }
            st.close_queued = true;
            st.items.push_back(item);
            st.waiting.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.0.lock().rx_closed
    }
}

/// The receiving side of a session queue, owned by the session's connection task.
#[derive(Debug)]
pub struct OutboundRx(Arc<Queue>);

impl OutboundRx {
    /// The next item; `None` once the queue is closed and drained, or every sender is gone.
    /// Cancellation-safe: an item is taken only in the poll that returns it.
    pub async fn recv(&mut self) -> Option<Outbound> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll for the next item (see [`OutboundRx::recv`]); when there is none, the task is
    /// woken by the next send, close request or the last sender leaving.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outbound>> {
        let mut st = self.0.lock();
        if let Some(item) = st.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if st.rx_closed || self.0.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(None);
        }
        // About to wait with nothing queued: give the burst's memory back.
        if st.items.capacity() > 0 {
            st.items = VecDeque::new();
        }
        // Registered under the lock that senders take to queue, so no send is missed.
        match &mut st.waiting {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        self.0.lock().items.pop_front()
    }

    /// Accept nothing more; what is queued can still be taken with [`OutboundRx::try_recv`].
    pub fn close(&mut self) {
        self.0.lock().rx_closed = true;
    }
}

impl Drop for OutboundRx {
    fn drop(&mut self) {
        let (items, waker) = {
            let mut st = self.0.lock();
            st.rx_closed = true;
            (std::mem::take(&mut st.items), st.waiting.take())
        };
        // Dropped outside the lock (a stanza's drop may be arbitrarily large).
        drop(items);
        drop(waker);
    }
}

/// A cheap, clonable handle to one bound session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: u64,
    pub jid: Jid,
    tx: QueueTx,
}

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

impl SessionHandle {
    /// A new handle and the receiver the connection task reads.
    pub fn new(jid: Jid) -> (SessionHandle, OutboundRx) {
        let queue = Arc::new(Queue {
            senders: AtomicUsize::new(1),
            ..Queue::default()
        });
        (
            SessionHandle {
                id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
                jid,
                tx: QueueTx(queue.clone()),
            },
            OutboundRx(queue),
        )
    }

    /// Queue a stanza; on a closed or full queue the stanza comes back. A full queue also
    /// asks the session to close (the client stopped reading).
    pub fn send(&self, stanza: Stanza) -> Result<(), Stanza> {
        match self.tx.try_send(Outbound::Stanza(Box::new(stanza))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(Outbound::Stanza(s))) => Err(*s),
            Err(TrySendError::Full(Outbound::Stanza(s))) => {
                tracing::warn!(jid = %self.jid, "outbound queue full; closing the session");
                self.close(
                    StreamError::PolicyViolation,
                    Some("too many stanzas waiting: the client is not reading"),
                );
                Err(*s)
            }
            Err(_) => Ok(()),
        }
    }

    /// Queue a shared stanza (fan-out); `false` when the queue is closed or full (a full
    /// queue also closes the session, as in [`SessionHandle::send`]).
    pub fn send_shared(&self, stanza: Arc<SharedStanza>) -> bool {
        match self.tx.try_send(Outbound::Shared(stanza)) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(_)) => {
                tracing::warn!(jid = %self.jid, "outbound queue full; closing the session");
                self.close(
                    StreamError::PolicyViolation,
                    Some("too many stanzas waiting: the client is not reading"),
                );
                false
            }
        }
    }

    /// Ask the session to close with a stream error, after what is already queued. A full
    /// queue still takes the request (it does not count against the bound).
    pub fn close(&self, err: StreamError, text: Option<&str>) {
        self.tx
            .send_close(Outbound::Close(err, text.map(str::to_string)));
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Session-level switches that modules set (see `modules::hooks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFlags {
    /// XEP-0280: the client enabled Message Carbons.
    pub carbons: bool,
    /// XEP-0191: the client retrieved its blocklist (it gets block/unblock pushes).
    pub blocklist: bool,
}

/// Per-resource state.
#[derive(Debug, Clone)]
pub struct ResourceState {
    pub handle: SessionHandle,
    /// The last available presence the client broadcast (None: not available).
    pub presence: Option<Element>,
    pub priority: i8,
    /// The client requested the roster (it gets roster pushes).
    pub interested: bool,
    /// Full or bare JIDs that got directed presence and are not roster subscribers.
    pub directed: HashSet<Jid>,
    /// Switches set by modules.
    pub flags: SessionFlags,
}

impl ResourceState {
    pub fn is_available(&self) -> bool {
        self.presence.is_some()
    }
}

/// The bound resources of one account. An account has a handful at most (`max_resources`),
/// so a vector searched in order is cheap, and much smaller than a hash table, which reserves
/// room for several entries of a few hundred bytes each, for every online account.
#[derive(Default)]
struct Resources(Vec<(String, ResourceState)>);

impl Resources {
    fn position(&self, resource: &str) -> Option<usize> {
        self.0.iter().position(|(r, _)| r == resource)
    }

    fn get(&self, resource: &str) -> Option<&ResourceState> {
        self.position(resource).map(|i| &self.0[i].1)
    }

    fn get_mut(&mut self, resource: &str) -> Option<&mut ResourceState> {
        self.position(resource).map(|i| &mut self.0[i].1)
    }

    fn contains_key(&self, resource: &str) -> bool {
        self.position(resource).is_some()
    }

    /// Binds `resource`, returning the state it replaces.
    fn insert(&mut self, resource: String, state: ResourceState) -> Option<ResourceState> {
        match self.position(&resource) {
            Some(i) => Some(std::mem::replace(&mut self.0[i].1, state)),
            None => {
                self.0.reserve_exact(1);
                self.0.push((resource, state));
                None
            }
        }
    }

    fn remove(&mut self, resource: &str) -> Option<ResourceState> {
        let i = self.position(resource)?;
        let (_, state) = self.0.swap_remove(i);
        self.0.shrink_to_fit();
        Some(state)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &ResourceState> {
        self.0.iter().map(|(_, s)| s)
    }
}

/// Bound sessions by account and resource.
#[derive(Default)]
pub struct SessionRegistry {
    accounts: Mutex<BareMap<Resources>>,
    /// How many bound sessions have carbons enabled (changed under the lock with the flags):
    /// when none has, the per-message carbons check does not take the lock at all.
    carbons: AtomicUsize,
    /// Bumped under the lock on every bind and unbind: a cache of send handles resolved at
    /// generation `g` (MUC fan-out) is still exact while the generation is `g`.
    generation: AtomicU64,
}

/// Why a bind was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    TooManyResources,
}

impl SessionRegistry {
    fn lock(&self) -> MutexGuard<'_, BareMap<Resources>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters more than losing every session, so recover the data.
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bind a full JID. An existing session with the same resource is returned so the caller
    /// can close it with `<conflict/>` (the newest session wins, as in Prosody's default).
    pub fn bind(
        &self,
        handle: SessionHandle,
        max_resources: usize,
    ) -> Result<Option<SessionHandle>, BindError> {
        let bare = handle.jid.to_bare();
        let resource = handle.jid.resource().unwrap_or_default().to_string();
        let mut map = self.lock();
        let resources = map.entry(bare).or_default();
        if !resources.contains_key(&resource) && resources.len() >= max_resources {
            return Err(BindError::TooManyResources);
        }
        let old = resources.insert(
            resource,
            ResourceState {
                handle,
                presence: None,
                priority: 0,
                interested: false,
                directed: HashSet::new(),
                flags: SessionFlags::default(),
            },
        );
        if old.as_ref().is_some_and(|s| s.flags.carbons) {
            self.carbons.fetch_sub(1, Ordering::AcqRel);
        }
        self.generation.fetch_add(1, Ordering::Release);
        Ok(old.map(|s| s.handle))
    }

    /// Remove a session if it is still the one bound (by id); returns its last state.
    pub fn unbind(&self, jid: &Jid, id: u64) -> Option<ResourceState> {
        let mut map = self.lock();
        let resources = map.get_mut(&BareOf(jid))?;
        let resource = jid.resource()?;
        if resources.get(resource).map(|s| s.handle.id) != Some(id) {
            return None;
        }
        let state = resources.remove(resource);
        if resources.is_empty() {
            map.remove(&BareOf(jid));
        }
        if state.as_ref().is_some_and(|s| s.flags.carbons) {
            self.carbons.fetch_sub(1, Ordering::AcqRel);
        }
        self.generation.fetch_add(1, Ordering::Release);
        state
    }

    /// The bind/unbind generation (see [`SessionRegistry`]'s `generation`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The state of one full JID.
    pub fn get(&self, full: &Jid) -> Option<ResourceState> {
        let map = self.lock();
        map.get(&BareOf(full))?.get(full.resource()?).cloned()
    }

    /// The send handle of one full JID (cheaper than [`SessionRegistry::get`]: the message
    /// path needs nothing else).
    pub fn handle(&self, full: &Jid) -> Option<SessionHandle> {
        self.handle_of(full, full.resource()?)
    }

    /// The send handle of `resource` of the account `jid` (whose own resource, if any, is
    /// ignored).
    pub fn handle_of(&self, jid: &Jid, resource: &str) -> Option<SessionHandle> {
        let map = self.lock();
        map.get(&BareOf(jid))?
            .get(resource)
            .map(|s| s.handle.clone())
    }

    /// The full JID and module flags of every bound resource of an account.
    pub fn flags(&self, bare: &Jid) -> Vec<(Jid, SessionFlags)> {
        let map = self.lock();
        map.get(&BareOf(bare))
            .map(|r| {
                r.values()
                    .map(|s| (s.handle.jid.clone(), s.flags))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every bound resource of an account.
    pub fn resources(&self, bare: &Jid) -> Vec<ResourceState> {
        let map = self.lock();
        map.get(&BareOf(bare))
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The full JIDs of the account's sessions that enabled carbons, except those in
    /// `exclude`. Allocates nothing when there is none (the common case), and takes no lock
    /// when no session on the server enabled carbons.
    pub fn carbons_targets(&self, bare: &Jid, exclude: &[Jid]) -> Vec<Jid> {
        if self.carbons.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let map = self.lock();
        let Some(resources) = map.get(&BareOf(bare)) else {
            return Vec::new();
        };
        resources
            .values()
            .filter(|s| s.flags.carbons && !exclude.contains(&s.handle.jid))
            .map(|s| s.handle.jid.clone())
            .collect()
    }

    /// Update one session's state under the lock; returns what `f` returned, or None when the
    /// session is gone.
    pub fn update<T>(&self, full: &Jid, f: impl FnOnce(&mut ResourceState) -> T) -> Option<T> {
        let mut map = self.lock();
        let state = map.get_mut(&BareOf(full))?.get_mut(full.resource()?)?;
        let had_carbons = state.flags.carbons;
        let out = f(state);
        match (had_carbons, state.flags.carbons) {
            (false, true) => {
                self.carbons.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.carbons.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        Some(out)
    }

    /// Number of bound sessions.
    pub fn count(&self) -> usize {
        self.lock().values().map(Resources::len).sum()
    }

    /// Every session handle (for shutdown).
    pub fn all_handles(&self) -> Vec<SessionHandle> {
        self.lock()
            .values()
            .flat_map(|r| r.values().map(|s| s.handle.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn bind_conflict_returns_old_handle_and_unbind_checks_id() {
        let reg = SessionRegistry::default();
        let (h1, _r1) = SessionHandle::new(jid("a@x/r"));
        let (h2, _r2) = SessionHandle::new(jid("a@x/r"));
        assert!(reg.bind(h1.clone(), 8).unwrap().is_none());
        let old = reg.bind(h2.clone(), 8).unwrap().unwrap();
        assert_eq!(old.id, h1.id);
        // The old session's late unbind must not remove the new one.
        assert!(reg.unbind(&jid("a@x/r"), h1.id).is_none());
        assert_eq!(reg.count(), 1);
        assert!(reg.unbind(&jid("a@x/r"), h2.id).is_some());
        assert_eq!(reg.count(), 0);
    }

    #[test]
    fn carbons_count_follows_flags_rebinds_and_unbinds() {
        let reg = SessionRegistry::default();
        let (h1, _r1) = SessionHandle::new(jid("a@x/1"));
        let (h2, _r2) = SessionHandle::new(jid("a@x/2"));
        let (h3, _r3) = SessionHandle::new(jid("a@x/2"));
        reg.bind(h1.clone(), 8).unwrap();
        reg.bind(h2.clone(), 8).unwrap();
        let g0 = reg.generation();
        assert!(reg.carbons_targets(&jid("a@x"), &[]).is_empty());
        for j in ["a@x/1", "a@x/2"] {
            reg.update(&jid(j), |s| s.flags.carbons = true).unwrap();
            // Enabling twice counts once.
            reg.update(&jid(j), |s| s.flags.carbons = true).unwrap();
        }
        assert_eq!(reg.carbons.load(Ordering::Acquire), 2);
        let mut t = reg.carbons_targets(&jid("a@x"), &[jid("a@x/1")]);
        assert_eq!(t, vec![jid("a@x/2")]);
        t = reg.carbons_targets(&jid("a@x/9"), &[]);
        assert_eq!(t.len(), 2);
        assert!(reg.carbons_targets(&jid("b@x"), &[]).is_empty());
        // A replacing bind drops the old session's flag; the new one starts without carbons.
        reg.bind(h3.clone(), 8).unwrap();
        assert!(reg.generation() > g0);
        assert_eq!(reg.carbons.load(Ordering::Acquire), 1);
        assert_eq!(reg.carbons_targets(&jid("a@x"), &[]), vec![jid("a@x/1")]);
        reg.update(&jid("a@x/1"), |s| s.flags.carbons = false)
            .unwrap();
        assert_eq!(reg.carbons.load(Ordering::Acquire), 0);
        reg.update(&jid("a@x/2"), |s| s.flags.carbons = true)
            .unwrap();
        let g1 = reg.generation();
        assert!(reg.unbind(&jid("a@x/2"), h3.id).is_some());
        assert!(reg.generation() > g1);
        assert_eq!(reg.carbons.load(Ordering::Acquire), 0);
        assert!(reg.carbons_targets(&jid("a@x"), &[]).is_empty());
    }

    #[test]
    fn several_resources_of_one_account_are_found_after_removals() {
        let reg = SessionRegistry::default();
        let mut receivers = Vec::new();
        let mut handles = Vec::new();
        for r in ["a", "b", "c", "d"] {
            let (h, rx) = SessionHandle::new(jid(&format!("u@x/{r}")));
            assert!(reg.bind(h.clone(), 8).unwrap().is_none());
            handles.push(h);
            receivers.push(rx);
        }
        assert_eq!(reg.count(), 4);
        assert_eq!(reg.resources(&jid("u@x")).len(), 4);
        // Removing one from the middle must leave the others reachable by name.
        assert!(reg.unbind(&jid("u@x/b"), handles[1].id).is_some());
        assert!(reg.get(&jid("u@x/b")).is_none());
        for (r, h) in [("a", 0), ("c", 2), ("d", 3)] {
            let found = reg.get(&jid(&format!("u@x/{r}"))).expect(r);
            assert_eq!(found.handle.id, handles[h].id);
        }
        // Rebinding an existing resource replaces it instead of adding a fifth entry.
        let (again, _rx) = SessionHandle::new(jid("u@x/c"));
        let old = reg.bind(again.clone(), 8).unwrap().expect("replaced");
        assert_eq!(old.id, handles[2].id);
        assert_eq!(reg.count(), 3);
        for (r, id) in [("a", handles[0].id), ("c", again.id), ("d", handles[3].id)] {
            assert!(reg.unbind(&jid(&format!("u@x/{r}")), id).is_some(), "{r}");
        }
        assert_eq!(reg.count(), 0);
        assert!(reg.resources(&jid("u@x")).is_empty());
    }

    #[test]
    fn resource_limit() {
        let reg = SessionRegistry::default();
        let (h1, _r1) = SessionHandle::new(jid("a@x/1"));
        let (h2, _r2) = SessionHandle::new(jid("a@x/2"));
        reg.bind(h1, 1).unwrap();
        assert_eq!(reg.bind(h2, 1).unwrap_err(), BindError::TooManyResources);
    }

    #[test]
    fn full_queue_hands_the_stanza_back() {
        let (h, _rx) = SessionHandle::new(jid("a@x/1"));
        let st = Stanza(crate::proto::stanza::new(crate::proto::StanzaKind::Message));
        for _ in 0..SESSION_QUEUE {
            h.send(st.clone()).unwrap();
        }
        assert!(h.send(st).is_err());
    }

    fn message() -> Stanza {
        Stanza(crate::proto::stanza::new(crate::proto::StanzaKind::Message))
    }

    #[tokio::test]
    async fn queue_is_fifo_and_frees_its_memory_when_drained() {
        let (h, mut rx) = SessionHandle::new(jid("a@x/1"));
        for _ in 0..10 {
            h.send(message()).unwrap();
        }
        h.close(StreamError::Conflict, None);
        assert!(rx.0.lock().items.capacity() >= 11);
        for _ in 0..10 {
            assert!(matches!(rx.recv().await, Some(Outbound::Stanza(_))));
        }
        assert!(matches!(
            rx.try_recv(),
            Some(Outbound::Close(StreamError::Conflict, None))
        ));
        assert!(rx.try_recv().is_none());
        // Waiting on an empty queue releases it; a later send wakes the waiter.
        let waiter = tokio::spawn(async move {
            let got = rx.recv().await;
            (got.is_some(), rx)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(h.tx.0.lock().items.capacity(), 0);
        h.send(message()).unwrap();
        let (got, rx) = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(got);
        let mut rx = rx;
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn a_full_queue_still_takes_one_close_request() {
        let (h, mut rx) = SessionHandle::new(jid("a@x/1"));
        for _ in 0..SESSION_QUEUE {
            h.send(message()).unwrap();
        }
        // The overflowing send asks for the close itself; an explicit one is not queued twice.
        assert!(h.send(message()).is_err());
        h.close(StreamError::Conflict, None);
        let mut stanzas = 0;
        let mut closes = Vec::new();
        while let Some(m) = rx.try_recv() {
            match m {
                Outbound::Stanza(_) => stanzas += 1,
                Outbound::Close(e, _) => closes.push(e),
                Outbound::Shared(_) => unreachable!(),
            }
        }
        assert_eq!(stanzas, SESSION_QUEUE);
        assert_eq!(closes, vec![StreamError::PolicyViolation]);
    }

    #[tokio::test]
    async fn closed_or_dropped_receiver_and_last_sender_gone() {
        let (h, mut rx) = SessionHandle::new(jid("a@x/1"));
        h.send(message()).unwrap();
        rx.close();
        assert!(h.is_closed());
        assert!(h.send(message()).is_err());
        assert!(rx.try_recv().is_some());
        assert!(rx.recv().await.is_none());
        let (h, rx) = SessionHandle::new(jid("a@x/2"));
        drop(rx);
        assert!(h.is_closed());
        assert!(!h.send_shared(SharedStanza::new(message().0)));
        let (h, mut rx) = SessionHandle::new(jid("a@x/3"));
        let h2 = h.clone();
        h.send(message()).unwrap();
        drop(h);
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await.is_some();
            let end = rx.recv().await.is_none();
            (first, end)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(h2);
        let (first, end) = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(first && end);
    }
}
