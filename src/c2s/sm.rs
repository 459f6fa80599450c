//! XEP-0198: Stream Management (`urn:xmpp:sm:3`): stanza counters and the unacknowledged
//! queue of one session ([`SmState`], pure logic), and the registry of resumable sessions
//! ([`SmRegistry`]) through which a new connection takes a session over.
//!
//! # How a session survives its connection
//! A session with resumption enabled is registered here under its SM-ID with the sending end
//! of a small "takeover" channel; the connection task that owns the session holds the
//! receiving end. When the socket breaks, that same task keeps the session bound (presence
//! unchanged) and keeps reading the session's outbound queue into the unacknowledged queue
//! ("hibernating") until the resumption timeout. A new connection that authenticates as the
//! same account and sends `<resume previd h/>` asks through the channel; the owner (live or
//! hibernating) closes its stream with `<conflict/>` if it still has one and hands the whole
//! session over: the [`SessionHandle`](crate::session::SessionHandle) (same id, same JID,
//! same queue, so routing never sees a gap), the counters and the unacknowledged stanzas.
//! The new task acknowledges up to the client's `h`, answers `<resumed/>`, and sends the
//! rest again.
//!
//! When the timeout passes first, the session ends like a closed one (unbound, unavailable
//! presence broadcast), and every unacknowledged stanza is treated as one sent to an
//! unavailable resource (§4 "Acks" and RFC 6121 §8.5.3.2): messages go back through the
//! router (another resource or offline storage) with a XEP-0203 delay stamp of when they were
//! first queued; IQ requests get `service-unavailable`; presence and IQ responses are dropped.
//!
//! # Counting
//! `h` counts the stanzas (message, presence, iq) handled in each direction since `<enable/>`,
//! modulo 2^32. Nonzas (SM and CSI elements) are not counted. Stanzas held back by CSI are
//! counted when they are finally written. The server asks for an ack (`<r/>`) after
//! [`REQUEST_EVERY`] stanzas or when [`REQUEST_IDLE`] has passed with stanzas unacknowledged;
//! an ack request unanswered for [`ACK_TIMEOUT`] counts as a dead connection (the session
//! hibernates).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::jid::Jid;
use crate::proto::Stanza;

/// `urn:xmpp:sm:3`.
pub const NS: &str = "urn:xmpp:sm:3";
/// Ask for an ack after this many stanzas without one requested.
pub const REQUEST_EVERY: u32 = 5;
/// Ask for an ack once this long has passed since the last stanza with some unacknowledged.
pub const REQUEST_IDLE: Duration = Duration::from_secs(2);
/// An ack request unanswered this long means the connection is dead.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Most stanzas a session keeps unacknowledged; past this a live session gets a stream error
/// (the client does not ack) and a hibernating one ends (its stanzas are rerouted).
pub const MAX_UNACKED: usize = 5000;

/// A stanza sent (or queued while hibernating) and not yet acknowledged.
#[derive(Debug, Clone)]
pub struct Unacked {
    pub stanza: Stanza,
    /// When it was queued, for the delay stamp if it has to be rerouted.
    pub queued: SystemTime,
}

/// The client acknowledged more stanzas than it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooHigh {
    pub h: u32,
    pub sent: u32,
}

/// Counters and the unacknowledged queue of one stream management session.
#[derive(Debug)]
pub struct SmState {
    /// Stanzas received from the client and handled (the `h` we report).
    pub inbound: u32,
    /// The last `h` the client reported.
    acked: u32,
    unacked: VecDeque<Unacked>,
    since_request: u32,
    /// When the outstanding `<r/>` was sent.
    request_sent: Option<Instant>,
    /// When the last stanza was written.
    last_sent: Option<Instant>,
}

impl Default for SmState {
    fn default() -> Self {
        Self::new()
    }
}

impl SmState {
    pub fn new() -> SmState {
        SmState {
            inbound: 0,
            acked: 0,
            unacked: VecDeque::new(),
            since_request: 0,
            request_sent: None,
            last_sent: None,
        }
    }

    /// One more stanza from the client was handled.
    pub fn handled(&mut self) {
        self.inbound = self.inbound.wrapping_add(1);
    }

    /// A stanza was written to the client (or queued for it while hibernating).
    pub fn sent(&mut self, stanza: Stanza, now: Instant) {
        self.unacked.push_back(Unacked {
            stanza,
            queued: SystemTime::now(),
        });
        self.since_request = self.since_request.saturating_add(1);
        self.last_sent = Some(now);
    }

    /// Stanzas sent so far (modulo 2^32).
    pub fn sent_count(&self) -> u32 {
        self.acked.wrapping_add(self.unacked.len() as u32)
    }

    /// The client reports `h`: drop what it acknowledged.
    pub fn ack(&mut self, h: u32) -> Result<(), TooHigh> {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(TooHigh {
                h,
                sent: self.sent_count(),
            });
        }
        self.unacked.drain(..newly);
        self.acked = h;
        self.request_sent = None;
        self.since_request = 0;
        Ok(())
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// The unacknowledged stanzas, oldest first.
    pub fn unacked(&self) -> impl Iterator<Item = &Unacked> {
        self.unacked.iter()
    }

    /// Take every unacknowledged stanza (the session is ending).
    pub fn take_unacked(&mut self) -> Vec<Unacked> {
        self.acked = self.sent_count();
        self.unacked.drain(..).collect()
    }

    /// Whether to send `<r/>` now.
    pub fn should_request(&self, now: Instant) -> bool {
        if self.request_sent.is_some() || self.unacked.is_empty() {
            return false;
        }
        self.since_request >= REQUEST_EVERY
            || self
                .last_sent
                .is_some_and(|t| now.saturating_duration_since(t) >= REQUEST_IDLE)
    }

    /// `<r/>` was sent.
    pub fn requested(&mut self, now: Instant) {
        self.since_request = 0;
        self.request_sent = Some(now);
    }

    /// The ack request has gone unanswered too long.
    pub fn ack_overdue(&self, now: Instant) -> bool {
        self.request_sent
            .is_some_and(|t| now.saturating_duration_since(t) >= ACK_TIMEOUT)
    }

    /// When the connection task must look at this state again (next `<r/>` or ack timeout).
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.request_sent {
            Some(t) => Some(t + ACK_TIMEOUT),
            None if !self.unacked.is_empty() => self.last_sent.map(|t| t + REQUEST_IDLE),
            None => None,
        }
    }

    /// A resumed stream starts with no request outstanding.
    pub fn reset_request(&mut self) {
        self.request_sent = None;
        self.since_request = 0;
    }
}

/// `<a xmlns='urn:xmpp:sm:3' h='…'/>`.
pub fn ack_xml(h: u32) -> String {
    format!("<a xmlns='{NS}' h='{h}'/>")
}

/// `<r xmlns='urn:xmpp:sm:3'/>`.
pub fn request_xml() -> String {
    format!("<r xmlns='{NS}'/>")
}

/// `<failed/>` with a stanza error condition (and `h` when known).
pub fn failed_xml(condition: &str, h: Option<u32>) -> String {
    let h = h.map(|h| format!(" h='{h}'")).unwrap_or_default();
    format!(
        "<failed xmlns='{NS}'{h}><{condition} xmlns='{}'/></failed>",
        crate::proto::ns::STANZAS_ERR
    )
}

/// The stream error for an `h` that is too high (XEP-0198 §5).
pub fn too_high_stream_error(t: TooHigh) -> String {
    format!(
        "<stream:error><undefined-condition xmlns='{}'/>\
         <handled-count-too-high xmlns='{NS}' h='{}' send-count='{}'/>\
         <text xmlns='{}' xml:lang='en'>You acknowledged {} stanzas, but I only sent you {} so far.</text>\
         </stream:error>",
        crate::proto::ns::STREAMS_ERR,
        t.h,
        t.sent,
        crate::proto::ns::STREAMS_ERR,
        t.h,
        t.sent
    )
}

/// Parse an `h` attribute (an unsigned 32-bit integer).
pub fn parse_h(value: Option<&str>) -> Option<u32> {
    value?.trim().parse::<u32>().ok()
}

/// `true`/`1` (XML Schema boolean).
pub fn parse_bool(value: Option<&str>) -> bool {
    matches!(value.map(str::trim), Some("true" | "1"))
}

/// The resumption timeout for a client's `max` wish: its wish up to `maximum`, or `default`.
pub fn resume_timeout(client_max: Option<&str>, default: u64, maximum: u64) -> u64 {
    let wish = client_max.and_then(|m| m.trim().parse::<u64>().ok());
    match wish {
        Some(w) if w > 0 => w.min(maximum),
        _ => default.min(maximum),
    }
}

/// A request to hand a session over to a new connection. The owner answers with the session
/// (or drops `reply` when it cannot).
pub struct Takeover<T> {
    pub reply: oneshot::Sender<T>,
}

struct Entry<T> {
    owner: Jid,
    tx: mpsc::Sender<Takeover<T>>,
}

/// Resumable sessions by SM-ID.
pub struct SmRegistry<T> {
    map: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> Default for SmRegistry<T> {
    fn default() -> Self {
        SmRegistry {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> SmRegistry<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a session of `owner` (its full JID); returns the new SM-ID and the receiver
    /// of takeover requests.
    pub fn register(&self, owner: Jid) -> (String, mpsc::Receiver<Takeover<T>>) {
        let (tx, rx) = mpsc::channel(4);
        let mut map = self.lock();
        loop {
            let id = new_sm_id();
            if !map.contains_key(&id) {
                map.insert(id.clone(), Entry { owner, tx });
                return (id, rx);
            }
        }
    }

    /// The takeover channel of a session, if `account` (a bare JID) owns it.
    pub fn lookup(&self, id: &str, account: &Jid) -> Option<mpsc::Sender<Takeover<T>>> {
        let map = self.lock();
        let e = map.get(id)?;
        (e.owner.to_bare() == account.to_bare()).then(|| e.tx.clone())
    }

    /// Forget a session (it ended).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Number of resumable sessions.
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

/// An XEP-0082 UTC timestamp for a point in time (for XEP-0203 delay stamps).
pub fn utc_stamp(t: SystemTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// An unguessable SM-ID (128 random bits, base64url).
fn new_sm_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::StanzaKind;

    fn msg(id: &str) -> Stanza {
        Stanza(crate::proto::stanza::new(StanzaKind::Message).with_attr("id", id))
    }

    #[test]
    fn acks_drop_exactly_what_was_acknowledged() {
        let now = Instant::now();
        let mut s = SmState::new();
        for i in 0..10 {
            s.sent(msg(&i.to_string()), now);
        }
        assert_eq!(s.sent_count(), 10);
        s.ack(3).unwrap();
        assert_eq!(s.unacked_len(), 7);
        assert_eq!(s.unacked().next().unwrap().stanza.id(), Some("3"));
        // The same h again changes nothing.
        s.ack(3).unwrap();
        assert_eq!(s.unacked_len(), 7);
        assert_eq!(s.ack(11), Err(TooHigh { h: 11, sent: 10 }));
        s.ack(10).unwrap();
        assert_eq!(s.unacked_len(), 0);
    }

    #[test]
    fn counters_wrap_at_two_to_the_32() {
        let now = Instant::now();
        let mut s = SmState::new();
        s.acked = u32::MAX - 1;
        s.inbound = u32::MAX;
        s.handled();
        assert_eq!(s.inbound, 0);
        for i in 0..4 {
            s.sent(msg(&i.to_string()), now);
        }
        assert_eq!(s.sent_count(), 2);
        s.ack(1).unwrap();
        assert_eq!(s.unacked_len(), 1);
        assert_eq!(s.unacked().next().unwrap().stanza.id(), Some("3"));
    }

    #[test]
    fn requests_after_n_stanzas_or_idle_and_times_out() {
        let t0 = Instant::now();
        let mut s = SmState::new();
        assert!(!s.should_request(t0));
        s.sent(msg("a"), t0);
        assert!(!s.should_request(t0));
        assert!(s.should_request(t0 + REQUEST_IDLE));
        for _ in 1..REQUEST_EVERY {
            s.sent(msg("b"), t0);
        }
        assert!(s.should_request(t0));
        s.requested(t0);
        assert!(!s.should_request(t0 + REQUEST_IDLE));
        assert_eq!(s.next_deadline(), Some(t0 + ACK_TIMEOUT));
        assert!(!s.ack_overdue(t0));
        assert!(s.ack_overdue(t0 + ACK_TIMEOUT));
        s.ack(5).unwrap();
        assert!(!s.ack_overdue(t0 + ACK_TIMEOUT));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn resume_timeout_is_bounded() {
        assert_eq!(resume_timeout(None, 300, 3600), 300);
        assert_eq!(resume_timeout(Some("60"), 300, 3600), 60);
        assert_eq!(resume_timeout(Some("99999"), 300, 3600), 3600);
        assert_eq!(resume_timeout(Some("x"), 300, 3600), 300);
        assert_eq!(resume_timeout(Some("0"), 300, 3600), 300);
        assert_eq!(resume_timeout(None, 300, 100), 100);
    }

    #[test]
    fn registry_checks_the_account() {
        let reg: SmRegistry<()> = SmRegistry::default();
        let (id, _rx) = reg.register(Jid::parse("a@x/r").unwrap());
        assert!(reg.lookup(&id, &Jid::parse("a@x").unwrap()).is_some());
        assert!(reg.lookup(&id, &Jid::parse("b@x").unwrap()).is_none());
        assert!(reg.lookup("nope", &Jid::parse("a@x").unwrap()).is_none());
        reg.remove(&id);
        assert!(reg.lookup(&id, &Jid::parse("a@x").unwrap()).is_none());
    }

    #[test]
    fn parses_h_and_booleans() {
        assert_eq!(parse_h(Some("4294967295")), Some(u32::MAX));
        assert_eq!(parse_h(Some("-1")), None);
        assert_eq!(parse_h(None), None);
        assert!(parse_bool(Some("1")) && parse_bool(Some("true")));
        assert!(!parse_bool(Some("yes")) && !parse_bool(None));
    }
}
