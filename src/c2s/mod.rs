//! Client-to-server connections (RFC 6120): one task per connection owns the socket, runs
//! stream negotiation (header → STARTTLS → SASL → restart → bind), then loops over inbound
//! stanzas, its outbound queue and the shutdown signal.
//!
//! Negotiation order is enforced: nothing but STARTTLS before TLS (when TLS is required),
//! nothing but SASL (and in-band registration when enabled) before authentication, nothing
//! but resource binding before a resource is bound. Every violation ends the stream with the
//! stream error RFC 6120 names.
//!
//! After binding, the task owns a [`Live`] session: its handle, the receiver of its outbound
//! queue, its stream management state ([`sm`], XEP-0198) and its client state ([`csi`],
//! XEP-0352). With resumption enabled, a broken socket does not end the session: the task
//! keeps it ("hibernates") until the resumption timeout or until a new connection takes the
//! `Live` session over (see [`sm`]).
//!
//! Besides legacy SASL and binding, the same negotiation accepts XEP-0388 SASL2 with Bind 2,
//! inline stream management and FAST tokens ([`sasl2`]); both paths share the mechanisms,
//! `bind_session`, `sm_enable`, `take_over` and `complete_resume`.

mod conn;
pub mod csi;
pub mod sasl2;
pub mod sm;
mod throttle;

pub use throttle::AuthThrottle;

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::auth::{self, ChannelBindings, Mechanism, SaslFailure, SaslServer, SaslStep};
use crate::im::presence;
use crate::jid::Jid;
use crate::modules::{Direction, Flow, HookPoint, IqTarget};
use crate::proto::{ns, Stanza, StanzaError, StanzaKind, StreamError};
use crate::router;
use crate::server::ServerState;
use crate::session::{BindError, Outbound, OutboundRx, SessionHandle};
use crate::transport::ConnectionPermit;
use crate::xml::parser::{Limits, StreamEvent, StreamParser, XmlError};
use crate::xml::{self, Element};
use conn::Conn;

/// Read buffer size of a plain (not yet TLS) connection. TLS connections have none: the
/// parser reads rustls's plaintext buffer directly (see [`read_into_parser`]).
const READ_CHUNK: usize = 4096;
/// SASL failures allowed on one connection before it is closed.
const MAX_AUTH_ATTEMPTS: u32 = 5;
/// Outbound stanzas written in one batch before flushing.
const WRITE_BATCH: usize = 64;

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// Send this stream error, then close.
    Stream(StreamError, Option<String>),
    /// The peer closed its stream; answer with ours.
    PeerClosed,
    /// The socket is gone or broken; nothing more can be written.
    Io,
    /// Send this prebuilt `<stream:error>`, then close.
    Raw(String),
    /// A new connection resumed this session (XEP-0198): hand it over, then close this
    /// stream with `<conflict/>`.
    TakenOver(oneshot::Sender<Box<Live>>),
}

impl From<XmlError> for End {
    fn from(e: XmlError) -> End {
        let (err, text) = match e {
            XmlError::NotWellFormed(t) => (StreamError::NotWellFormed, t),
            XmlError::RestrictedXml(t) => (StreamError::RestrictedXml, t),
            XmlError::PolicyViolation(t) => (StreamError::PolicyViolation, t),
            XmlError::InvalidNamespace(t) => (StreamError::InvalidNamespace, t),
            XmlError::BadNamespacePrefix(t) => (StreamError::BadNamespacePrefix, t),
            XmlError::UnsupportedEncoding => (
                StreamError::UnsupportedEncoding,
                "only UTF-8 is supported".into(),
            ),
            XmlError::BadFormat(t) => (StreamError::BadFormat, t),
        };
        End::Stream(err, Some(text))
    }
}

/// Serve one accepted connection until it ends.
pub async fn serve(
    state: Arc<ServerState>,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    permit: ConnectionPermit,
) {
    let mut c = Connection {
        parser: StreamParser::new(Limits {
            max_stanza_bytes: state.config.limits.max_stanza_size,
            max_depth: state.config.limits.max_depth,
        }),
        state,
        conn: Conn::Plain(tcp),
        peer,
        header_sent: false,
        domain: String::new(),
        read_buf: Vec::new(),
        cb: ChannelBindings::default(),
        out: String::new(),
    };
    // A client that starts TLS on the STARTTLS port (some try XEP-0368 first) is served
    // Direct TLS instead of a not-well-formed error: a TLS handshake record starts with 0x16,
    // an XMPP stream with '<' or whitespace.
    let starts_with_tls = !direct_tls && {
        let mut first = [0u8; 1];
        let peeked = match &c.conn {
            Conn::Plain(tcp) => tokio::time::timeout(Duration::from_secs(30), tcp.peek(&mut first))
                .await
                .ok()
                .and_then(Result::ok),
            _ => None,
        };
        peeked == Some(1) && first[0] == 0x16
    };
    // This task's future lives as long as the session and is as large as its largest await
    // point: the short-lived ones with large state (TLS handshake, negotiation, resumption,
    // hibernation) are boxed so that an idle session does not carry their size.
    if direct_tls || starts_with_tls {
        if let Err(e) = Box::pin(c.upgrade_tls(true)).await {
            tracing::debug!(%peer, error = %e, "Direct TLS handshake failed");
            return;
        }
    }
    let deadline = Duration::from_secs(c.state.config.c2s.negotiation_timeout_secs);
    let negotiated = match tokio::time::timeout(deadline, Box::pin(c.negotiate())).await {
        Ok(r) => r,
        Err(_) => Err(End::Stream(
            StreamError::ConnectionTimeout,
            Some("negotiation took too long".into()),
        )),
    };
    let (mut live, resume_h) = match negotiated {
        Ok(n) => n,
        Err(end) => {
            c.finish(end).await;
            return;
        }
    };
    // Only SASL uses the channel bindings: not kept for the session's life.
    c.cb = ChannelBindings::default();
    // A SASL2 success (XEP-0388) with inline binding waits in `c.out` until here.
    let resumed = match resume_h {
        Some(r) => Box::pin(c.complete_resume(&mut live, r)).await,
        None => c.flush_out().await,
    };
    let end = match resumed {
        Ok(()) => c.session_loop(&mut live).await,
        Err(e) => e,
    };
    let state = c.state.clone();
    match end {
        End::TakenOver(reply) => {
            // Hand over first: the old socket may be slow to close.
            let back = reply.send(Box::new(live)).err();
            let close = c.finish(End::Stream(
                StreamError::Conflict,
                Some("the session was resumed on another connection".into()),
            ));
            // The old peer may not be reading at all.
            let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
            drop(c);
            drop(permit);
            if let Some(live) = back {
                Box::pin(hibernate(state, *live)).await;
            }
        }
        End::Io if live.resumable() => {
            c.finish(End::Io).await;
            drop(c);
            drop(permit);
            Box::pin(hibernate(state, live)).await;
        }
        end => {
            c.finish(end).await;
            drop(c);
            drop(permit);
            end_session(&state, live);
        }
    }
}

/// A bound session, owned by one connection task at a time.
pub struct Live {
    handle: SessionHandle,
    rx: OutboundRx,
    /// Stream management, once the client enabled it (boxed: most sessions never do, and
    /// this lives in every session's task).
    sm: Option<Box<SmSession>>,
    csi: csi::CsiState,
}

/// A resumption (XEP-0198) accepted during negotiation, to be completed by
/// [`Connection::complete_resume`]: the client's `h`, and what surrounds `<resumed/>` (empty
/// for legacy `<resume/>`; the SASL2 `<success>` around it and the stream features after it
/// for an inline resumption).
struct Resume {
    h: u32,
    before: String,
    after: String,
}

/// The registry of resumable sessions ([`ServerState::sm`]).
pub type SmSessions = sm::SmRegistry<Box<Live>>;

struct SmSession {
    state: sm::SmState,
    resume: Option<Resumable>,
    /// Fires at [`sm::SmState::next_deadline`] (ack request or ack timeout); armed before
    /// each wait by [`SmSession::arm_timer`].
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    timer_armed: bool,
}

impl SmSession {
    fn new(resume: Option<Resumable>) -> SmSession {
        SmSession {
            state: sm::SmState::new(),
            resume,
            timer: None,
            timer_armed: false,
        }
    }

    /// Point the timer at the next deadline, if there is one.
    fn arm_timer(&mut self) {
        let Some(deadline) = self.state.next_deadline() else {
            self.timer_armed = false;
            return;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        match self.timer.as_mut() {
            Some(t) if t.deadline() == deadline => {}
            Some(t) => t.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.timer_armed = true;
    }

    fn timer_if_armed(&mut self) -> Option<Pin<&mut tokio::time::Sleep>> {
        if self.timer_armed {
            self.timer.as_mut().map(|t| t.as_mut())
        } else {
            None
        }
    }
}

struct Resumable {
    id: String,
    takeover: mpsc::Receiver<sm::Takeover<Box<Live>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("jid", &self.handle.jid)
            .field("sm", &self.sm.is_some())
            .finish()
    }
}

impl Live {
    fn new(handle: SessionHandle, rx: OutboundRx) -> Live {
        Live {
            handle,
            rx,
            sm: None,
            csi: csi::CsiState::default(),
        }
    }

    fn resumable(&self) -> bool {
        self.sm.as_ref().is_some_and(|s| s.resume.is_some())
    }
}

/// The next takeover request of a resumable session; never resolves for another one.
async fn next_takeover(sm: &mut Option<Box<SmSession>>) -> sm::Takeover<Box<Live>> {
    std::future::poll_fn(|cx| poll_takeover(sm, cx)).await
}

/// Poll for a takeover request (see [`next_takeover`]).
fn poll_takeover(
    sm: &mut Option<Box<SmSession>>,
    cx: &mut Context<'_>,
) -> Poll<sm::Takeover<Box<Live>>> {
    match sm.as_mut().and_then(|s| s.resume.as_mut()) {
        Some(r) => match r.takeover.poll_recv(cx) {
            Poll::Ready(Some(t)) => Poll::Ready(t),
            // Every sender gone: no takeover can come any more.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        },
        None => Poll::Pending,
    }
}

/// What woke the session loop ([`Connection::poll_event`]).
enum Event {
    Takeover(sm::Takeover<Box<Live>>),
    SmTimer,
    Outbound(Option<Outbound>),
    Read(Result<(), End>),
}

/// What woke a hibernating session.
enum Wake {
    Stanza(Stanza),
    End,
    Takeover(sm::Takeover<Box<Live>>),
}

/// Keep a session whose connection broke until it is resumed or its time is up. Stanzas for it
/// are counted into the unacknowledged queue so a resuming client gets them.
async fn hibernate(state: Arc<ServerState>, mut live: Live) {
    let Some(timeout) = live
        .sm
        .as_ref()
        .and_then(|s| s.resume.as_ref())
        .map(|r| r.timeout)
    else {
        end_session(&state, live);
        return;
    };
    tracing::info!(jid = %live.handle.jid, timeout_secs = timeout.as_secs(), "session hibernating");
    if let Some(sm) = live.sm.as_ref() {
        let unacked: Vec<&Stanza> = sm
            .state
            .unacked()
            .map(|u| &u.stanza)
            .filter(|s| s.kind() == StanzaKind::Message)
            .collect();
        state
            .modules
            .detached_messages(&live.handle.jid, &unacked, true);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let wake = tokio::select! {
            _ = state.shutdown.cancelled() => Wake::End,
            _ = tokio::time::sleep_until(deadline) => Wake::End,
            msg = live.rx.recv() => match msg {
                Some(Outbound::Stanza(s)) => Wake::Stanza(*s),
                Some(Outbound::Shared(s)) => Wake::Stanza(s.to_stanza(&live.handle.jid)),
                Some(Outbound::Close(..)) | None => Wake::End,
            },
            t = next_takeover(&mut live.sm) => Wake::Takeover(t),
        };
        match wake {
            Wake::End => break,
            Wake::Stanza(s) => {
                if s.kind() == StanzaKind::Message {
                    state
                        .modules
                        .detached_messages(&live.handle.jid, &[&s], false);
                }
                let (flushed, now) = live.csi.filter(s);
                let Some(sm) = live.sm.as_mut() else { break };
                for s in flushed.into_iter().chain(now) {
                    sm.state.sent(s, std::time::Instant::now());
                }
                if sm.state.unacked_len() > sm::MAX_UNACKED {
                    tracing::info!(jid = %live.handle.jid, "hibernating session queue full");
                    break;
                }
            }
            Wake::Takeover(t) => match t.reply.send(Box::new(live)) {
                Ok(()) => return,
                Err(back) => live = *back,
            },
        }
    }
    end_session(&state, live);
}

/// End a session for good: unbind it, tell contacts it left, and treat whatever it did not
/// get (unacknowledged or still queued) like stanzas for an unavailable resource.
fn end_session(state: &Arc<ServerState>, mut live: Live) {
    let handle = live.handle.clone();
    if let Some(r) = live.sm.as_ref().and_then(|s| s.resume.as_ref()) {
        state.sm.remove(&r.id);
    }
    let last = state.sessions.unbind(&handle.jid, handle.id);
    // Rerouted (stored offline) before contacts hear the session left.
    let unacked = live
        .sm
        .as_mut()
        .map(|s| s.state.take_unacked())
        .unwrap_or_default();
    let rerouted = unacked.len();
    for u in unacked {
        reroute(state, u.stanza, Some(u.queued));
    }
    requeue(state, live.rx);
    if let Some(last) = last {
        presence::on_session_closed(state, last);
    }
    tracing::info!(jid = %handle.jid, unacked = rerouted, "session closed");
}

struct Connection {
    state: Arc<ServerState>,
    conn: Conn,
    parser: StreamParser,
    peer: SocketAddr,
    /// Our stream header was written or queued in `out`.
    header_sent: bool,
    /// The hosted domain this stream is for (from the header's `to`).
    domain: String,
    /// Allocated on the first plain read, released at STARTTLS.
    read_buf: Vec<u8>,
    cb: ChannelBindings,
    /// Output waiting to be written, in order: our stream header until the features follow
    /// it, then the session loop's stanzas and nonzas between flushes.
    out: String,
}

impl Connection {
    /// Write `data` after whatever [`Connection::out`] holds, in one write (a stream header
    /// waits there for the features that follow it: one TLS record and one system call
    /// instead of two, three times per login).
    async fn write(&mut self, data: &str) -> Result<(), End> {
        if self.out.is_empty() {
            return self.write_now(data).await;
        }
        let mut all = std::mem::take(&mut self.out);
        all.push_str(data);
        self.write_now(&all).await
    }

    async fn write_now(&mut self, data: &str) -> Result<(), End> {
        self.conn
            .write_all(data.as_bytes())
            .await
            .map_err(|_| End::Io)?;
        self.conn.flush().await.map_err(|_| End::Io)
    }

    /// Next parser event, reading from the socket as needed.
    async fn next_event(&mut self) -> Result<StreamEvent, End> {
        loop {
            if let Some(ev) = self.parser.next_event()? {
                return Ok(ev);
            }
            read_into_parser(&mut self.conn, &mut self.read_buf, &mut self.parser).await?;
        }
    }

    async fn next_element(&mut self) -> Result<Element, End> {
        match self.next_event().await? {
            StreamEvent::Element(el) => Ok(el),
            StreamEvent::Close => Err(End::PeerClosed),
            StreamEvent::Open(_) => Err(End::Stream(
                StreamError::InvalidXml,
                Some("unexpected stream restart".into()),
            )),
        }
    }

    /// Read the client's stream header and answer with ours.
    async fn open_stream(&mut self) -> Result<(), End> {
        let header = match self.next_event().await? {
            StreamEvent::Open(h) => h,
            StreamEvent::Close => return Err(End::PeerClosed),
            StreamEvent::Element(_) => {
                return Err(End::Stream(
                    StreamError::NotWellFormed,
                    Some("expected a stream header".into()),
                ))
            }
        };
        let to = header
            .to
            .as_deref()
            .map(|t| Jid::domain_jid(t).map(|j| j.domain().to_string()));
        let domain = match to {
            Some(Ok(d)) => d,
            Some(Err(_)) => String::new(),
            None => self.state.config.default_domain().to_string(),
        };
        let hosted = self.state.config.hosts(&domain);
        self.domain = if hosted {
            domain
        } else {
            self.state.config.default_domain().to_string()
        };
        let id = random_id();
        // Written with what follows it (the features, or a stream error).
        let ours = xml::stream_header(ns::CLIENT, Some(&self.domain), None, Some(&id), &[]);
        self.out.push_str(&ours);
        self.header_sent = true;
        if header.default_ns != ns::CLIENT {
            return Err(End::Stream(
                StreamError::InvalidNamespace,
                Some("this port serves jabber:client".into()),
            ));
        }
        if !hosted {
            return Err(End::Stream(
                StreamError::HostUnknown,
                Some("that domain is not served here".into()),
            ));
        }
        match header.version.as_deref() {
            Some(v) if v.split('.').next().and_then(|m| m.parse::<u32>().ok()) >= Some(1) => {}
            _ => {
                return Err(End::Stream(
                    StreamError::UnsupportedVersion,
                    Some("XMPP 1.0 streams only".into()),
                ))
            }
        }
        Ok(())
    }

    /// Run negotiation up to a bound or resumed session; a resumed one comes with the `h` the
    /// client sent in `<resume/>`.
    async fn negotiate(&mut self) -> Result<(Live, Option<Resume>), End> {
        let config = self.state.config.clone();
        let mut account: Option<Jid> = None;
        let mut auth_failures = 0u32;
        loop {
            self.open_stream().await?;
            let tls = self.conn.is_tls();
            let tls_needed = !tls && config.c2s.require_encryption;
            let offered = if account.is_some() || tls_needed {
                Vec::new()
            } else {
                auth::offered_mechanisms(tls, &self.cb)
            };
            self.write(&self.features(account.is_some(), &offered))
                .await?;
            // Elements until the next stream restart.
            loop {
                let el = self.next_element().await?;
                if account.is_none() && !tls && el.is("starttls", ns::TLS) {
                    self.write("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                        .await?;
                    self.upgrade_tls(false).await.map_err(|_| End::Io)?;
                    break;
                }
                if let Some(acct) = &account {
                    if el.ns == sm::NS {
                        if let Some((live, h)) = self.try_resume(acct, &el).await? {
                            let (before, after) = (String::new(), String::new());
                            return Ok((live, Some(Resume { h, before, after })));
                        }
                        continue;
                    }
                    if let Some(live) = self.try_bind(acct, el).await? {
                        return Ok((live, None));
                    }
                    continue;
                }
                if tls_needed {
                    if el.is("authenticate", sasl2::NS) {
                        self.write(&sasl2::failure_xml(SaslFailure::EncryptionRequired, None))
                            .await?;
                        continue;
                    }
                    if el.is("auth", ns::SASL) {
                        self.write(&sasl_failure(SaslFailure::EncryptionRequired))
                            .await?;
                        continue;
                    }
                    return Err(End::Stream(
                        StreamError::PolicyViolation,
                        Some("STARTTLS is required first".into()),
                    ));
                }
                if el.is("auth", ns::SASL) {
                    match self.authenticate(&el, &offered).await? {
                        Some(jid) => {
                            self.parser.reset();
                            account = Some(jid);
                            break;
                        }
                        None => {
                            auth_failures += 1;
                            if auth_failures >= MAX_AUTH_ATTEMPTS {
                                return Err(End::Stream(
                                    StreamError::PolicyViolation,
                                    Some("too many failed authentication attempts".into()),
                                ));
                            }
                        }
                    }
                    continue;
                }
                if el.is("authenticate", sasl2::NS) {
                    match self.sasl2(&el, &offered).await? {
                        sasl2::Outcome::Failed => {
                            auth_failures += 1;
                            if auth_failures >= MAX_AUTH_ATTEMPTS {
                                return Err(End::Stream(
                                    StreamError::PolicyViolation,
                                    Some("too many failed authentication attempts".into()),
                                ));
                            }
                        }
                        sasl2::Outcome::Authenticated(jid) => account = Some(jid),
                        sasl2::Outcome::Bound(live) => return Ok((*live, None)),
                        sasl2::Outcome::Resumed(live, r) => return Ok((*live, Some(r))),
                    }
                    continue;
                }
                if el.is("iq", ns::CLIENT)
                    && el.child("query", ns::REGISTER).is_some()
                    && config.registration.allow
                {
                    if let Ok(st) = Stanza::from_element(el) {
                        let reply = crate::modules::register::preauth_register(
                            &self.state.modules.ctx,
                            &self.domain,
                            &st,
                        );
                        self.write(&reply.el().to_stream_string(ns::CLIENT)).await?;
                    }
                    continue;
                }
                return Err(End::Stream(
                    StreamError::NotAuthorized,
                    Some("authenticate first".into()),
                ));
            }
        }
    }

    fn features(&self, authenticated: bool, offered: &[Mechanism]) -> String {
        let mut f = Element::new("features", ns::STREAM);
        if authenticated {
            f.push_child(Element::new("bind", ns::BIND));
            f.push_child(
                Element::new("session", ns::SESSION)
                    .with_child(Element::new("optional", ns::SESSION)),
            );
            f.push_child(Element::new("ver", ns::ROSTER_VER));
            f.push_child(Element::new("sub", ns::PRE_APPROVAL));
            f.push_child(Element::new("sm", sm::NS));
            f.push_child(Element::new("csi", csi::NS));
        } else if !self.conn.is_tls() {
            let mut starttls = Element::new("starttls", ns::TLS);
            if self.state.config.c2s.require_encryption {
                starttls.push_child(Element::new("required", ns::TLS));
            }
            f.push_child(starttls);
            if !offered.is_empty() {
                f.push_child(mechanisms_element(offered));
                f.push_child(self.sasl2_feature(offered));
            }
        } else {
            f.push_child(mechanisms_element(offered));
            f.push_child(self.sasl2_feature(offered));
            let types = self.cb.type_names();
            if !types.is_empty() {
                let mut cb = Element::new("sasl-channel-binding", ns::CHANNEL_BINDING);
                for t in types {
                    cb.push_child(
                        Element::new("channel-binding", ns::CHANNEL_BINDING).with_attr("type", t),
                    );
                }
                f.push_child(cb);
            }
            if self.state.config.registration.allow {
                f.push_child(Element::new("register", ns::REGISTER_FEATURE));
            }
        }
        // XEP-0115 §6.3: the server's own capabilities, so clients can cache its features.
        f.push_child(self.state.modules.caps.clone());
        // The `stream:` prefix is declared by our header.
        let mut s = String::from("<stream:features>");
        for c in f.elements() {
            c.write_to(&mut s, ns::CLIENT);
        }
        s.push_str("</stream:features>");
        s
    }

    /// Replace the plain stream by TLS. The parser is reset first: bytes the client sent
    /// after `<starttls/>` and before the handshake are never parsed.
    async fn upgrade_tls(&mut self, direct: bool) -> std::io::Result<()> {
        // `<proceed/>` went out with everything queued before it.
        debug_assert!(self.out.is_empty());
        self.parser.reset();
        self.read_buf = Vec::new();
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Upgrading) else {
            return Err(std::io::Error::other("already TLS"));
        };
        let config = if direct {
            self.state.tls.direct_tls.clone()
        } else {
            self.state.tls.starttls.clone()
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let tls = tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        let session = tls.get_ref().1;
        self.cb = ChannelBindings {
            tls_exporter: crate::transport::tls_exporter(session),
            tls_server_end_point: self.state.tls.server_end_point(session.server_name()),
        };
        tracing::debug!(
            peer = %self.peer,
            version = ?session.protocol_version(),
            sni = ?session.server_name(),
            "TLS established"
        );
        self.conn = Conn::Tls(Box::new(tls));
        Ok(())
    }

    /// One SASL exchange. `Ok(Some(jid))` on success, `Ok(None)` on a failure the client may
    /// retry after.
    async fn authenticate(
        &mut self,
        auth_el: &Element,
        offered: &[Mechanism],
    ) -> Result<Option<Jid>, End> {
        let ip = self.peer.ip();
        let delay = self.state.auth_throttle.delay_for(ip);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mech = auth_el
            .attr("mechanism")
            .and_then(Mechanism::from_name)
            .filter(|m| offered.contains(m));
        let Some(mech) = mech else {
            self.write(&sasl_failure(SaslFailure::InvalidMechanism))
                .await?;
            return Ok(None);
        };
        let initial = match decode_sasl(&auth_el.text()) {
            Ok(i) => i,
            Err(()) => {
                self.write(&sasl_failure(SaslFailure::IncorrectEncoding))
                    .await?;
                return Ok(None);
            }
        };
        let state = self.state.clone();
        let domain = self.domain.clone();
        let lookup = move |username: &str| {
            let jid = Jid::from_parts(Some(username), &domain, None).ok()?;
            state
                .storage
                .get_credentials(&jid.bare_string())
                .ok()
                .flatten()
        };
        let mut sasl = SaslServer::new(mech, self.cb.clone(), offered);
        let mut step = sasl.start(initial.as_deref(), &lookup);
        loop {
            match step {
                SaslStep::Challenge(data) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
                    self.write(&format!(
                        "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{b64}</challenge>"
                    ))
                    .await?;
                    let el = self.next_element().await?;
                    if el.is("abort", ns::SASL) {
                        self.write(&sasl_failure(SaslFailure::Aborted)).await?;
                        return Ok(None);
                    }
                    if !el.is("response", ns::SASL) {
                        return Err(End::Stream(
                            StreamError::NotAuthorized,
                            Some("expected a SASL response".into()),
                        ));
                    }
                    step = match decode_sasl(&el.text()) {
                        Ok(data) => sasl.step(&data.unwrap_or_default(), &lookup),
                        Err(()) => SaslStep::Failure(SaslFailure::IncorrectEncoding),
                    };
                }
                SaslStep::Success {
                    username,
                    authzid,
                    additional_data,
                } => {
                    let jid = match Jid::from_parts(Some(&username), &self.domain, None) {
                        Ok(j) => j,
                        Err(_) => {
                            self.write(&sasl_failure(SaslFailure::NotAuthorized))
                                .await?;
                            return Ok(None);
                        }
                    };
                    if let Some(z) = authzid.filter(|z| !z.is_empty()) {
                        if Jid::parse(&z).ok().as_ref() != Some(&jid) {
                            self.write(&sasl_failure(SaslFailure::InvalidAuthzid))
                                .await?;
                            return Ok(None);
                        }
                    }
                    let body = additional_data
                        .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
                        .unwrap_or_default();
                    self.write(&format!(
                        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{body}</success>"
                    ))
                    .await?;
                    self.state.auth_throttle.record_success(ip);
                    tracing::info!(peer = %self.peer, %jid, mechanism = mech.name(), "authenticated");
                    return Ok(Some(jid));
                }
                SaslStep::Failure(f) => {
                    self.state.auth_throttle.record_failure(ip);
                    tracing::info!(peer = %self.peer, mechanism = mech.name(), reason = f.condition(), "authentication failed");
                    self.write(&sasl_failure(f)).await?;
                    return Ok(None);
                }
            }
        }
    }

    /// An XEP-0198 element after authentication and before binding: `<resume/>` takes a
    /// hibernating (or still connected) session of the same account over; `<enable/>` is
    /// refused until a resource is bound; acks are ignored (nothing is counted yet).
    async fn try_resume(
        &mut self,
        account: &Jid,
        el: &Element,
    ) -> Result<Option<(Live, u32)>, End> {
        match &*el.name {
            "resume" => {}
            "enable" => {
                self.write(&sm::failed_xml("unexpected-request", None))
                    .await?;
                return Ok(None);
            }
            _ => return Ok(None),
        }
        match self.take_over(account, el).await {
            Ok(taken) => Ok(Some(taken)),
            Err(condition) => {
                self.write(&sm::failed_xml(condition, None)).await?;
                Ok(None)
            }
        }
    }

    /// Take the session named by `<resume previd h/>` over from its owner (live or
    /// hibernating); on failure, the XEP-0198 `<failed/>` condition.
    async fn take_over(
        &mut self,
        account: &Jid,
        el: &Element,
    ) -> Result<(Live, u32), &'static str> {
        let (Some(h), Some(previd)) = (sm::parse_h(el.attr("h")), el.attr("previd")) else {
            return Err("bad-request");
        };
        let Some(tx) = self.state.sm.lookup(previd, account) else {
            tracing::debug!(peer = %self.peer, "resumption of an unknown session");
            return Err("item-not-found");
        };
        let (reply, answer) = oneshot::channel();
        let asked = tokio::time::timeout(Duration::from_secs(5), tx.send(sm::Takeover { reply }))
            .await
            .is_ok_and(|r| r.is_ok());
        // The owner answers at once (it hands over before closing its old socket), or drops
        // the request when the session just ended.
        let live = if asked { answer.await.ok() } else { None };
        match live {
            Some(live) => Ok((*live, h)),
            None => Err("item-not-found"),
        }
    }

    /// Finish a resumption: acknowledge up to the client's `h`, answer `<resumed/>`, send the
    /// unacknowledged stanzas again, and whatever CSI held (a resumed stream starts active).
    async fn complete_resume(&mut self, live: &mut Live, r: Resume) -> Result<(), End> {
        let Resume { h, before, after } = r;
        let Some(sm) = live.sm.as_mut() else {
            return Err(End::Stream(StreamError::InternalServerError, None));
        };
        if let Err(t) = sm.state.ack(h) {
            return Err(End::Raw(sm::too_high_stream_error(t)));
        }
        sm.state.reset_request();
        let previd = sm.resume.as_ref().map(|r| r.id.clone()).unwrap_or_default();
        self.out.clear();
        self.out.push_str(&before);
        self.out.push_str(&format!(
            "<resumed xmlns='{}' previd='{}' h='{}'/>",
            sm::NS,
            xml::escape(&previd),
            sm.state.inbound
        ));
        self.out.push_str(&after);
        let resent = sm.state.unacked_len();
        for u in sm.state.unacked() {
            u.stanza.el().write_to(&mut self.out, ns::CLIENT);
        }
        for s in live.csi.set_active() {
            self.emit(live, s);
        }
        tracing::info!(peer = %self.peer, jid = %live.handle.jid, resent, "session resumed");
        self.flush_out().await
    }

    /// Queue a stanza for the client in [`Connection::out`], counting it for XEP-0198.
    fn emit(&mut self, live: &mut Live, stanza: Stanza) {
        // Room for a typical stanza at once: the buffer starts empty after every flush, and
        // growing it piece by piece from nothing cost five reallocations per burst.
        self.out.reserve(256);
        stanza.el().write_to(&mut self.out, ns::CLIENT);
        if let Some(sm) = live.sm.as_mut() {
            sm.state.sent(stanza, std::time::Instant::now());
        }
    }

    /// Write what [`Connection::out`] holds.
    async fn flush_out(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Not kept for the next burst: an idle session holds no output buffer.
        let data = std::mem::take(&mut self.out);
        self.write_now(&data).await
    }

    /// Handle an element after authentication and before binding.
    async fn try_bind(&mut self, account: &Jid, el: Element) -> Result<Option<Live>, End> {
        let stanza = match Stanza::from_element(el) {
            Ok(s) if s.kind() == StanzaKind::Iq => s,
            _ => {
                return Err(End::Stream(
                    StreamError::NotAuthorized,
                    Some("bind a resource first".into()),
                ))
            }
        };
        let Some(bind) = stanza.el().child("bind", ns::BIND) else {
            if stanza.is_iq_request() {
                let reply = StanzaError::not_authorized()
                    .with_text("bind a resource first")
                    .reply_to(&stanza);
                self.write(&reply.el().to_stream_string(ns::CLIENT)).await?;
            }
            return Ok(None);
        };
        if stanza.type_attr() != Some("set") {
            let reply = StanzaError::bad_request().reply_to(&stanza);
            self.write(&reply.el().to_stream_string(ns::CLIENT)).await?;
            return Ok(None);
        }
        let requested = bind
            .child_text("resource", ns::BIND)
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        let full = match requested {
            Some(r) => match account.with_resource(&r) {
                Ok(j) => j,
                Err(_) => {
                    let reply = StanzaError::bad_request()
                        .with_text("invalid resource")
                        .reply_to(&stanza);
                    self.write(&reply.el().to_stream_string(ns::CLIENT)).await?;
                    return Ok(None);
                }
            },
            None => match account.with_resource(&format!("oriole-{}", random_id())) {
                Ok(j) => j,
                Err(_) => return Err(End::Stream(StreamError::InternalServerError, None)),
            },
        };
        let live = match self.bind_session(full.clone()) {
            Ok(live) => live,
            Err(BindError::TooManyResources) => {
                let reply = StanzaError::resource_constraint()
                    .with_text("too many resources bound for this account")
                    .reply_to(&stanza);
                self.write(&reply.el().to_stream_string(ns::CLIENT)).await?;
                return Ok(None);
            }
        };
        let result = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", stanza.id().unwrap_or(""))
            .with_child(
                Element::new("bind", ns::BIND)
                    .with_child(Element::new("jid", ns::BIND).with_text(full.to_string())),
            );
        if let Err(e) = self.write(&result.to_stream_string(ns::CLIENT)).await {
            if let Some(last) = self.state.sessions.unbind(&full, live.handle.id) {
                presence::on_session_closed(&self.state, last);
            }
            return Err(e);
        }
        tracing::info!(peer = %self.peer, jid = %full, tls = ?self.conn.tls().and_then(|t| t.protocol_version()), "session bound");
        Ok(Some(live))
    }

    /// Bind a full JID to a new session (RFC 6120 §7 and XEP-0386 alike); a session already
    /// bound to that resource is closed with `<conflict/>`.
    fn bind_session(&self, full: Jid) -> Result<Live, BindError> {
        let (handle, rx) = SessionHandle::new(full);
        let old = self.state.sessions.bind(
            handle.clone(),
            self.state.config.limits.max_resources_per_account,
        )?;
        if let Some(old) = old {
            old.close(
                StreamError::Conflict,
                Some("replaced by a new connection with the same resource"),
            );
        }
        Ok(Live::new(handle, rx))
    }

    /// The established session: stanzas in, queued stanzas out, until something ends it.
    ///
    /// The loop waits in [`Connection::poll_event`], a plain poll over its event sources, so a
    /// waiting session holds no sub-futures (a `select!` would keep one per branch alive in
    /// this task for the whole life of the session).
    async fn session_loop(&mut self, live: &mut Live) -> End {
        // `Server::shutdown` cancels first and then closes every bound session through its
        // queue; a session bound after that sees the cancellation here, once (the token
        // takes a lock: not a check for every event).
        if self.state.shutdown.is_cancelled() {
            return End::Stream(StreamError::SystemShutdown, None);
        }
        let mut reads_first = false;
        loop {
            if let Some(sm) = live.sm.as_mut() {
                sm.arm_timer();
            }
            // Neither side can starve the other under load: they take turns going first.
            reads_first = !reads_first;
            let event = std::future::poll_fn(|cx| self.poll_event(live, cx, reads_first)).await;
            match event {
                Event::Takeover(t) => {
                    let _ = self.flush_out().await;
                    return End::TakenOver(t.reply);
                }
                Event::SmTimer => {
                    if let Some(e) = self.sm_timer(live) {
                        return e;
                    }
                    if let Err(e) = self.flush_out().await {
                        return e;
                    }
                }
                Event::Outbound(msg) => {
                    let mut msg = msg;
                    let mut n = 0;
                    while let Some(m) = msg.take() {
                        match m {
                            Outbound::Stanza(s) => {
                                let (flushed, now) = live.csi.filter(*s);
                                for s in flushed.into_iter().chain(now) {
                                    self.emit(live, s);
                                }
                            }
                            // Written straight from the shared bytes unless SM must keep it
                            // for resending or CSI may hold it back.
                            Outbound::Shared(s) if live.sm.is_none() && !live.csi.is_inactive() => {
                                s.write_to(&mut self.out, &live.handle.jid)
                            }
                            Outbound::Shared(s) => {
                                let st = s.to_stanza(&live.handle.jid);
                                let (flushed, now) = live.csi.filter(st);
                                for s in flushed.into_iter().chain(now) {
                                    self.emit(live, s);
                                }
                            }
                            Outbound::Close(e, text) => {
                                if self.flush_out().await.is_err() {
                                    return End::Io;
                                }
                                return End::Stream(e, text);
                            }
                        }
                        n += 1;
                        if n < WRITE_BATCH {
                            msg = live.rx.try_recv();
                        }
                    }
                    if let Some(e) = self.sm_after_write(live) {
                        return e;
                    }
                    if let Err(e) = self.flush_out().await {
                        return e;
                    }
                }
                Event::Read(r) => {
                    if let Err(e) = r {
                        return e;
                    }
                    loop {
                        match self.parser.next_event() {
                            Ok(None) => break,
                            Ok(Some(StreamEvent::Element(el))) => {
                                if let Err(e) = self.handle_element(live, el) {
                                    let _ = self.flush_out().await;
                                    return e;
                                }
                            }
                            Ok(Some(StreamEvent::Close)) => {
                                let _ = self.flush_out().await;
                                return End::PeerClosed;
                            }
                            Ok(Some(StreamEvent::Open(_))) => {
                                return End::Stream(
                                    StreamError::InvalidXml,
                                    Some("unexpected stream restart".into()),
                                );
                            }
                            Err(e) => return e.into(),
                        }
                    }
                    if let Err(e) = self.flush_out().await {
                        return e;
                    }
                }
            }
        }
    }

    /// The next thing the session loop must act on. A takeover (XEP-0198 resumption
    /// elsewhere) and the stream management timer come first; the outbound queue and the
    /// socket follow in the order `reads_first` says. Read bytes are fed to the parser in the
    /// same poll, so nothing is lost if this is not polled again.
    fn poll_event(
        &mut self,
        live: &mut Live,
        cx: &mut Context<'_>,
        reads_first: bool,
    ) -> Poll<Event> {
        if let Poll::Ready(t) = poll_takeover(&mut live.sm, cx) {
            return Poll::Ready(Event::Takeover(t));
        }
        if let Some(timer) = live.sm.as_mut().and_then(|s| s.timer_if_armed()) {
            if timer.poll(cx).is_ready() {
                return Poll::Ready(Event::SmTimer);
            }
        }
        if reads_first {
            if let Poll::Ready(r) = self.poll_read(cx) {
                return Poll::Ready(Event::Read(r));
            }
        }
        if let Poll::Ready(m) = live.rx.poll_recv(cx) {
            return Poll::Ready(Event::Outbound(m));
        }
        if !reads_first {
            if let Poll::Ready(r) = self.poll_read(cx) {
                return Poll::Ready(Event::Read(r));
            }
        }
        Poll::Pending
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), End>> {
        poll_read_into_parser(&mut self.conn, &mut self.read_buf, &mut self.parser, cx)
    }

    /// After stanzas were queued for writing: ask for an ack when due; a client that never
    /// acks cannot grow the queue without end.
    fn sm_after_write(&mut self, live: &mut Live) -> Option<End> {
        let sm = live.sm.as_mut()?;
        if sm.state.unacked_len() > sm::MAX_UNACKED {
            return Some(End::Stream(
                StreamError::PolicyViolation,
                Some("too many stanzas left unacknowledged".into()),
            ));
        }
        let now = std::time::Instant::now();
        if sm.state.should_request(now) {
            sm.state.requested(now);
            self.out.push_str(&sm::request_xml());
        }
        None
    }

    /// The stream management timer fired: an overdue ack means a dead connection; otherwise
    /// an idle ack request may be due.
    fn sm_timer(&mut self, live: &mut Live) -> Option<End> {
        let sm = live.sm.as_mut()?;
        let now = std::time::Instant::now();
        if sm.state.ack_overdue(now) {
            tracing::info!(peer = %self.peer, jid = %live.handle.jid, "no ack from the client; connection considered dead");
            return Some(End::Io);
        }
        if sm.state.should_request(now) {
            sm.state.requested(now);
            self.out.push_str(&sm::request_xml());
        }
        None
    }

    /// An XEP-0198 element from a bound client.
    fn handle_sm(&mut self, live: &mut Live, el: Element) -> Result<(), End> {
        match &*el.name {
            "r" => {
                if let Some(sm) = &live.sm {
                    self.out.push_str(&sm::ack_xml(sm.state.inbound));
                }
                Ok(())
            }
            "a" => {
                let Some(sm) = live.sm.as_mut() else {
                    return Ok(());
                };
                let Some(h) = sm::parse_h(el.attr("h")) else {
                    return Err(End::Stream(
                        StreamError::BadFormat,
                        Some("<a/> needs an 'h' attribute (an unsigned 32-bit integer)".into()),
                    ));
                };
                sm.state
                    .ack(h)
                    .map_err(|t| End::Raw(sm::too_high_stream_error(t)))
            }
            "enable" => {
                if live.sm.is_some() {
                    return Err(End::Stream(
                        StreamError::PolicyViolation,
                        Some("stream management is already enabled".into()),
                    ));
                }
                let enabled = self.sm_enable(live, &el);
                self.out.push_str(&enabled);
                Ok(())
            }
            "resume" => {
                self.out.push_str(&sm::failed_xml(
                    "unexpected-request",
                    live.sm.as_ref().map(|s| s.state.inbound),
                ));
                Ok(())
            }
            other => Err(End::Stream(
                StreamError::UnsupportedStanzaType,
                Some(format!("<{other}/> in {} is not understood", sm::NS)),
            )),
        }
    }

    /// Enable stream management on a session that has none (`<enable/>`, legacy or inline in
    /// XEP-0386 Bind 2); returns the `<enabled/>` answer.
    fn sm_enable(&self, live: &mut Live, el: &Element) -> String {
        let c2s = &self.state.config.c2s;
        let (answer, resume) = if sm::parse_bool(el.attr("resume")) {
            let secs = sm::resume_timeout(
                el.attr("max"),
                c2s.sm_resume_timeout_secs,
                c2s.sm_max_resume_timeout_secs,
            );
            let (id, takeover) = self.state.sm.register(live.handle.jid.clone());
            let answer = format!(
                "<enabled xmlns='{}' id='{}' resume='true' max='{secs}'/>",
                sm::NS,
                xml::escape(&id)
            );
            let resumable = Resumable {
                id,
                takeover,
                timeout: Duration::from_secs(secs),
            };
            (answer, Some(resumable))
        } else {
            (format!("<enabled xmlns='{}'/>", sm::NS), None)
        };
        tracing::debug!(jid = %live.handle.jid, resumable = resume.is_some(), "stream management enabled");
        live.sm = Some(Box::new(SmSession::new(resume)));
        answer
    }

    /// One element from a bound client: a nonza (XEP-0198, XEP-0352) or a stanza. A stanza
    /// handled without ending the stream counts for XEP-0198.
    fn handle_element(&mut self, live: &mut Live, el: Element) -> Result<(), End> {
        if el.ns == sm::NS {
            return self.handle_sm(live, el);
        }
        if el.ns == csi::NS {
            match &*el.name {
                "active" => {
                    for s in live.csi.set_active() {
                        self.emit(live, s);
                    }
                }
                "inactive" => live.csi.set_inactive(),
                other => {
                    return Err(End::Stream(
                        StreamError::UnsupportedStanzaType,
                        Some(format!("<{other}/> in {} is not understood", csi::NS)),
                    ))
                }
            }
            return Ok(());
        }
        self.handle_stanza(&live.handle.jid, el)?;
        if let Some(sm) = live.sm.as_mut() {
            sm.state.handled();
        }
        Ok(())
    }

    /// One stanza from a bound client.
    fn handle_stanza(&mut self, full: &Jid, el: Element) -> Result<(), End> {
        let mut stanza = match Stanza::from_element(el) {
            Ok(s) => s,
            Err(el) => {
                return Err(End::Stream(
                    StreamError::UnsupportedStanzaType,
                    Some(format!("<{}/> in {} is not a stanza", el.name, el.ns)),
                ))
            }
        };
        // RFC 6120 §8.1.2.1: the server adds `from` or overrides whatever the client wrote
        // with the session's full JID (subscription presence is re-stamped with the bare JID
        // by the presence code). A client cannot speak for anyone else.
        stanza.set_from(full);
        let to = match stanza.to() {
            Ok(t) => t,
            Err(_) => {
                router::bounce(&self.state, &stanza, StanzaError::jid_malformed());
                return Ok(());
            }
        };
        let state = &self.state;
        let at = HookPoint {
            dir: Direction::Sent,
            account: &full.to_bare(),
            session: Some(full),
            to: to.as_ref(),
            from: Some(full),
        };
        if state.modules.run_hooks(at, &mut stanza) == Flow::Stop {
            return Ok(());
        }
        match stanza.kind() {
            StanzaKind::Presence => presence::outbound(state, full, stanza),
            StanzaKind::Message => {
                let to = match to {
                    Some(to) => to,
                    None => {
                        let own = full.to_bare();
                        stanza.set_to(&own);
                        own
                    }
                };
                router::route_parsed(state, stanza, to, full);
            }
            StanzaKind::Iq => {
                let own_bare = full.to_bare();
                match to {
                    None => {
                        if stanza.el().child("session", ns::SESSION).is_some()
                            && stanza.is_iq_request()
                        {
                            let reply = stanza.iq_result(None);
                            state.deliver_to_full(full, reply_to_self(reply, full));
                            return Ok(());
                        }
                        if stanza.is_iq_request() {
                            state.handle_server_iq(&stanza, IqTarget::Account(own_bare));
                        }
                    }
                    Some(t) if t == own_bare && stanza.is_iq_request() => {
                        state.handle_server_iq(&stanza, IqTarget::Account(own_bare));
                    }
                    Some(_) => router::route(state, stanza),
                }
            }
        }
        Ok(())
    }

    /// Our stream header, for an error before we sent one.
    fn late_header(&self) -> String {
        let domain = if self.domain.is_empty() {
            self.state.config.default_domain()
        } else {
            &self.domain
        };
        xml::stream_header(ns::CLIENT, Some(domain), None, Some(&random_id()), &[])
    }

    /// Send a final stream error or close, and shut the socket.
    async fn finish(&mut self, end: End) {
        match end {
            End::Io => {}
            End::PeerClosed => {
                let _ = self.write("</stream:stream>").await;
            }
            End::TakenOver(_) => {}
            End::Raw(error) => {
                let mut out = String::new();
                if !self.header_sent {
                    out.push_str(&self.late_header());
                }
                out.push_str(&error);
                out.push_str("</stream:stream>");
                let _ = self.write(&out).await;
            }
            End::Stream(err, text) => {
                tracing::debug!(peer = %self.peer, error = %err, text = ?text, "closing with a stream error");
                let mut out = String::new();
                if !self.header_sent {
                    out.push_str(&self.late_header());
                }
                out.push_str(&err.to_xml(text.as_deref()));
                out.push_str("</stream:stream>");
                let _ = self.write(&out).await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.shutdown()).await;
    }
}

/// Read what the peer sent and feed it to the parser (see [`poll_read_into_parser`]).
async fn read_into_parser(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    parser: &mut StreamParser,
) -> Result<(), End> {
    std::future::poll_fn(|cx| poll_read_into_parser(conn, buf, parser, cx)).await
}

/// Read what the peer sent and feed it to the parser. Over TLS the parser reads rustls's
/// plaintext buffer in place, so a connection waiting for data holds no read buffer of its
/// own (most sessions are idle most of the time); a plain connection reads through `buf`.
/// Bytes are consumed in the same poll that feeds them, so dropping the wait loses nothing.
fn poll_read_into_parser(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    parser: &mut StreamParser,
    cx: &mut Context<'_>,
) -> Poll<Result<(), End>> {
    use tokio::io::{AsyncBufRead, AsyncRead};
    if let Conn::Tls(tls) = conn {
        let mut tls = Pin::new(&mut **tls);
        let data = match tls.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(data)) => data,
            Poll::Ready(Err(_)) => return Poll::Ready(Err(End::Io)),
            Poll::Pending => return Poll::Pending,
        };
        let n = data.len();
        if n == 0 {
            return Poll::Ready(Err(End::Io));
        }
        let fed = parser.feed(data);
        tls.consume(n);
        return Poll::Ready(fed.map_err(End::from));
    }
    if buf.is_empty() {
        buf.resize(READ_CHUNK, 0);
    }
    let mut read = tokio::io::ReadBuf::new(buf);
    match Pin::new(conn).poll_read(cx, &mut read) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(_)) => return Poll::Ready(Err(End::Io)),
        Poll::Pending => return Poll::Pending,
    }
    let n = read.filled().len();
    if n == 0 {
        return Poll::Ready(Err(End::Io));
    }
    Poll::Ready(parser.feed(&buf[..n]).map_err(End::from))
}

/// Re-route what a closed session never wrote (see [`reroute`]).
fn requeue(state: &Arc<ServerState>, mut rx: OutboundRx) {
    rx.close();
    while let Some(msg) = rx.try_recv() {
        if let Outbound::Stanza(s) = msg {
            reroute(state, *s, None);
        }
    }
}

/// A stanza the ended session never got, treated as one for an unavailable resource
/// (RFC 6121 §8.5.3.2, XEP-0198 §4): messages go to other resources or offline storage
/// (stamped with when they were first queued, XEP-0203), IQ requests get
/// `service-unavailable`, the rest is dropped. Call after the session was unbound.
fn reroute(state: &Arc<ServerState>, mut stanza: Stanza, queued: Option<std::time::SystemTime>) {
    match stanza.kind() {
        StanzaKind::Message => {
            if stanza.is_error() {
                return;
            }
            if let Some(t) = queued {
                if stanza.el().child("delay", ns::DELAY).is_none() {
                    let domain = state.config.default_domain().to_string();
                    let from = stanza
                        .to()
                        .ok()
                        .flatten()
                        .map(|j| j.domain().to_string())
                        .unwrap_or(domain);
                    stanza.el_mut().push_child(
                        Element::new("delay", ns::DELAY)
                            .with_attr("from", from)
                            .with_attr("stamp", sm::utc_stamp(t))
                            .with_text("Resent after a lost connection"),
                    );
                }
            }
            router::route(state, stanza);
        }
        StanzaKind::Iq if stanza.is_iq_request() => {
            router::bounce(state, &stanza, StanzaError::service_unavailable());
        }
        _ => {}
    }
}

fn reply_to_self(mut reply: Stanza, full: &Jid) -> Stanza {
    reply.set_to(full);
    reply
}

fn mechanisms_element(offered: &[Mechanism]) -> Element {
    let mut m = Element::new("mechanisms", ns::SASL);
    for mech in offered {
        m.push_child(Element::new("mechanism", ns::SASL).with_text(mech.name()));
    }
    m
}

fn sasl_failure(f: SaslFailure) -> String {
    format!(
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{}/></failure>",
        f.condition()
    )
}

/// Decode a SASL payload: empty text means no data, "=" means empty data.
fn decode_sasl(text: &str) -> Result<Option<Vec<u8>>, ()> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t == "=" {
        return Ok(Some(Vec::new()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .map(Some)
        .map_err(|_| ())
}

/// A random identifier for stream ids and generated resources.
pub fn random_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}
