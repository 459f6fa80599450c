//! Inbound federation: the s2s listeners and one task per accepted connection.
//!
//! Order on a stream: header (`jabber:server`, `to` hosted here, version 1.0) → STARTTLS
//! (required) or Direct TLS → SASL EXTERNAL when the peer's certificate verifies for the
//! `from` of its header (stream restart), or dialback: each `<db:result/>` is verified with
//! the claimed domain's authoritative server by [`super::outbound::verify_key`] while the
//! stream goes on. Stanzas need a (from domain, to domain) pair authenticated on this
//! stream: an unauthenticated `from` ends the stream with `<invalid-from/>`, a `to` we do
//! not host with `<host-unknown/>`. `<db:verify/>` (we are the authoritative server) is
//! answered at any time.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::dialback::{self, Db};
use super::stream::{End, Io, XmlStream, TLS_HANDSHAKE};
use super::S2s;
use crate::jid::Jid;
use crate::proto::{ns, Stanza, StreamError};
use crate::router;
use crate::server::ServerState;
use crate::xml::parser::{Limits, StreamEvent, StreamHeader};
use crate::xml::{self, Element};

/// Dialback verifications running at once on one stream.
const MAX_PENDING_DIALBACK: usize = 16;

pub async fn accept_loop(state: Arc<ServerState>, listener: TcpListener, direct_tls: bool) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = state.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(5);
                let _ = tcp.set_nodelay(true);
                state
                    .tasks
                    .spawn(serve(state.clone(), tcp, peer, direct_tls));
            }
            Err(e) => {
                tracing::warn!(error = %e, "s2s accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A dialback verification result: (originating, receiving, valid).
type Verdict = (String, String, bool);

struct Inbound {
    state: Arc<ServerState>,
    xs: XmlStream,
    peer: SocketAddr,
    /// Hosted domain from the current header's `to`.
    local: String,
    /// The peer's claimed domain from the header's `from`.
    claimed: Option<String>,
    stream_id: String,
    awaiting_header: bool,
    header_sent: bool,
    /// (remote domain, local domain) pairs authenticated on this stream.
    authed: HashSet<(String, String)>,
    /// Dialback requests being verified.
    pending: HashSet<(String, String)>,
    verdict_tx: mpsc::Sender<Verdict>,
}

pub async fn serve(state: Arc<ServerState>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let starts_with_tls = !direct_tls && {
        let mut first = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(30), tcp.peek(&mut first)).await,
            Ok(Ok(1))
        ) && first[0] == 0x16
    };
    let limits = Limits {
        max_stanza_bytes: state.config.limits.max_stanza_size,
        max_depth: state.config.limits.max_depth,
    };
    let (verdict_tx, mut verdict_rx) = mpsc::channel(MAX_PENDING_DIALBACK);
    let mut c = Inbound {
        xs: XmlStream::new(Io::Plain(tcp), limits),
        state,
        peer,
        local: String::new(),
        claimed: None,
        stream_id: String::new(),
        awaiting_header: true,
        header_sent: false,
        authed: HashSet::new(),
        pending: HashSet::new(),
        verdict_tx,
    };
    if direct_tls || starts_with_tls {
        if let Err(e) = c.upgrade(true).await {
            tracing::debug!(%peer, error = %e, "s2s Direct TLS handshake failed");
            return;
        }
    }
    let end = c.run(&mut verdict_rx).await;
    tracing::info!(
        peer = %c.peer, direction = "inbound",
        domains = ?c.authed.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        reason = %end, "s2s stream ended"
    );
    c.finish(end).await;
}

impl Inbound {
    async fn upgrade(&mut self, direct: bool) -> Result<(), String> {
        self.xs.parser.reset();
        let Io::Plain(tcp) = std::mem::replace(&mut self.xs.io, Io::Upgrading) else {
            return Err("already TLS".into());
        };
        let cfg = if direct {
            self.state.s2s.server_tls_direct.clone()
        } else {
            self.state.s2s.server_tls.clone()
        };
        let tls = tokio::time::timeout(
            TLS_HANDSHAKE,
            tokio_rustls::TlsAcceptor::from(cfg).accept(tcp),
        )
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
        self.xs.io = Io::ServerTls(Box::new(tls));
        self.awaiting_header = true;
        Ok(())
    }

    async fn run(&mut self, verdicts: &mut mpsc::Receiver<Verdict>) -> End {
        let setup = Duration::from_secs(self.state.config.s2s.negotiation_timeout_secs.max(1));
        let idle = Duration::from_secs(self.state.config.s2s.idle_timeout_secs.max(1));
        let shutdown = self.state.shutdown.clone();
        let mut deadline = tokio::time::Instant::now() + setup;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return End::Stream(StreamError::SystemShutdown, None),
                Some(v) = verdicts.recv() => {
                    if let Err(e) = self.on_verdict(v).await {
                        return e;
                    }
                }
                r = self.xs.fill() => {
                    if let Err(e) = r {
                        return e;
                    }
                    if !self.authed.is_empty() {
                        deadline = tokio::time::Instant::now() + idle;
                    }
                    loop {
                        let ev = match self.xs.parser.next_event() {
                            Ok(Some(ev)) => ev,
                            Ok(None) => break,
                            Err(e) => return e.into(),
                        };
                        match self.on_event(ev).await {
                            Ok(true) => {}
                            // The parser was reset (TLS or SASL): buffered bytes are void.
                            Ok(false) => break,
                            Err(e) => return e,
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return if self.authed.is_empty() {
                        End::Stream(StreamError::ConnectionTimeout, Some("negotiation took too long".into()))
                    } else {
                        End::Stream(StreamError::ConnectionTimeout, Some("idle".into()))
                    };
                }
            }
        }
    }

    /// Handle one event; `Ok(false)` when the parser was reset.
    async fn on_event(&mut self, ev: StreamEvent) -> Result<bool, End> {
        match ev {
            StreamEvent::Open(h) => {
                if !self.awaiting_header {
                    return Err(End::Stream(
                        StreamError::InvalidXml,
                        Some("unexpected stream restart".into()),
                    ));
                }
                self.open(h).await?;
                Ok(true)
            }
            StreamEvent::Close => Err(End::PeerClosed),
            StreamEvent::Element(el) => self.on_element(el).await,
        }
    }

    async fn open(&mut self, h: StreamHeader) -> Result<(), End> {
        let to =
            h.to.as_deref()
                .and_then(|t| Jid::domain_jid(t).ok())
                .map(|j| j.domain().to_string());
        let hosted = to.as_deref().is_some_and(|d| self.state.is_local_domain(d));
        self.local = match (&to, hosted) {
            (Some(d), true) => d.clone(),
            _ => self.state.config.default_domain().to_string(),
        };
        self.claimed = h
            .from
            .as_deref()
            .and_then(|f| Jid::domain_jid(f).ok())
            .map(|j| j.domain().to_string());
        self.stream_id = crate::c2s::random_id();
        let header = xml::stream_header(
            ns::SERVER,
            Some(&self.local),
            self.claimed.as_deref(),
            Some(&self.stream_id),
            &[("db", dialback::NS)],
        );
        self.xs.write(&header).await?;
        self.header_sent = true;
        self.awaiting_header = false;
        if h.default_ns != ns::SERVER {
            return Err(End::Stream(
                StreamError::InvalidNamespace,
                Some("this port serves jabber:server".into()),
            ));
        }
        if !hosted {
            return Err(End::Stream(
                StreamError::HostUnknown,
                Some(format!("{} is not served here", to.unwrap_or_default())),
            ));
        }
        if let Some(c) = &self.claimed {
            if S2s::policy(&self.state.config, c).block {
                return Err(End::Stream(
                    StreamError::PolicyViolation,
                    Some(format!("federation with {c} is blocked here")),
                ));
            }
        }
        match h.version.as_deref() {
            Some(v) if v.split('.').next().and_then(|m| m.parse::<u32>().ok()) >= Some(1) => {}
            _ => {
                return Err(End::Stream(
                    StreamError::UnsupportedVersion,
                    Some("XMPP 1.0 streams only (TLS is required)".into()),
                ))
            }
        }
        let features = self.features();
        self.xs.write(&features).await
    }

    /// Whether the peer's certificate is valid for `domain`.
    fn cert_valid_for(&self, domain: &str) -> Result<(), String> {
        self.state.s2s.trust.check(&self.xs.io.peer_chain(), domain)
    }

    fn sasl_authed(&self) -> bool {
        self.claimed
            .as_ref()
            .is_some_and(|c| self.authed.contains(&(c.clone(), self.local.clone())))
    }

    fn features(&self) -> String {
        let mut f = String::from("<stream:features>");
        if !self.xs.io.is_tls() {
            f.push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>");
        } else if !self.sasl_authed() {
            if let Some(c) = &self.claimed {
                if self.cert_valid_for(c).is_ok() {
                    f.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>");
                }
            }
            let dialback = self
                .claimed
                .as_ref()
                .is_none_or(|c| S2s::policy(&self.state.config, c).allow_dialback);
            if dialback {
                f.push_str("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>");
            }
        }
        f.push_str("</stream:features>");
        f
    }

    async fn on_element(&mut self, el: Element) -> Result<bool, End> {
        if self.awaiting_header {
            return Err(End::Stream(
                StreamError::NotWellFormed,
                Some("expected a stream header".into()),
            ));
        }
        if el.is("error", ns::STREAM) {
            let cond = el
                .elements()
                .find(|c| c.ns == ns::STREAMS_ERR && c.name != "text")
                .map(|c| c.name.clone())
                .unwrap_or_default();
            tracing::info!(peer = %self.peer, condition = %cond, "s2s stream error from peer");
            return Err(End::PeerClosed);
        }
        if el.is("starttls", ns::TLS) {
            if self.xs.io.is_tls() {
                return Err(End::Stream(
                    StreamError::PolicyViolation,
                    Some("TLS is already on".into()),
                ));
            }
            self.xs
                .write("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .await?;
            self.upgrade(false)
                .await
                .map_err(|e| End::Io(format!("STARTTLS: {e}")))?;
            return Ok(false);
        }
        if let Some(db) = Db::parse(&el) {
            self.on_dialback(db).await?;
            return Ok(true);
        }
        if !self.xs.io.is_tls() {
            return Err(End::Stream(
                StreamError::PolicyViolation,
                Some("STARTTLS is required first".into()),
            ));
        }
        if el.is("auth", ns::SASL) {
            return self.on_sasl(&el).await;
        }
        match Stanza::from_element(el) {
            Ok(stanza) => {
                self.on_stanza(stanza)?;
                Ok(true)
            }
            Err(el) => Err(End::Stream(
                StreamError::UnsupportedStanzaType,
                Some(format!("<{}/> in {} is not handled here", el.name, el.ns)),
            )),
        }
    }

    async fn on_sasl(&mut self, el: &Element) -> Result<bool, End> {
        let fail = |cond: &str| {
            format!("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{cond}/></failure>")
        };
        if el.attr("mechanism") != Some("EXTERNAL") {
            self.xs.write(&fail("invalid-mechanism")).await?;
            return Ok(true);
        }
        let Some(claimed) = self.claimed.clone() else {
            self.xs.write(&fail("not-authorized")).await?;
            return Ok(true);
        };
        let text = el.text();
        let t = text.trim();
        let authzid = if t.is_empty() || t == "=" {
            None
        } else {
            match base64::engine::general_purpose::STANDARD.decode(t) {
                Ok(b) => Some(String::from_utf8_lossy(&b).to_ascii_lowercase()),
                Err(_) => {
                    self.xs.write(&fail("incorrect-encoding")).await?;
                    return Ok(true);
                }
            }
        };
        if authzid.as_deref().is_some_and(|a| a != claimed) {
            self.xs.write(&fail("invalid-authzid")).await?;
            return Ok(true);
        }
        if let Err(e) = self.cert_valid_for(&claimed) {
            tracing::info!(peer = %self.peer, remote = %claimed, error = %e, "s2s SASL EXTERNAL refused");
            self.xs.write(&fail("not-authorized")).await?;
            return Ok(true);
        }
        self.xs
            .write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .await?;
        self.authed.insert((claimed.clone(), self.local.clone()));
        self.state
            .s2s
            .record(true, &self.local, &claimed, "SASL EXTERNAL");
        tracing::info!(
            peer = %self.peer, local = %self.local, remote = %claimed, direction = "inbound",
            tls = ?self.xs.io.tls_version(), auth = "SASL EXTERNAL", "s2s stream authenticated"
        );
        self.xs.parser.reset();
        self.awaiting_header = true;
        Ok(false)
    }

    async fn on_dialback(&mut self, db: Db) -> Result<(), End> {
        match db {
            // We are the authoritative server: is this a key we made?
            Db::Verify {
                from,
                to,
                id,
                kind: None,
                key,
            } => {
                if !self.state.is_local_domain(&to) {
                    return Err(End::Stream(
                        StreamError::HostUnknown,
                        Some(format!("{to} is not served here")),
                    ));
                }
                let valid = self.state.s2s.secret.check(&from, &to, &id, &key);
                self.xs
                    .write(&dialback::verify(
                        &to,
                        &from,
                        &id,
                        Some(if valid { "valid" } else { "invalid" }),
                        None,
                    ))
                    .await
            }
            // A peer claims a domain: verify with that domain's authoritative server.
            Db::Result {
                from,
                to,
                kind: None,
                key,
            } => {
                if !self.state.is_local_domain(&to) {
                    return Err(End::Stream(
                        StreamError::HostUnknown,
                        Some(format!("{to} is not served here")),
                    ));
                }
                if !self.xs.io.is_tls() {
                    return Err(End::Stream(
                        StreamError::PolicyViolation,
                        Some("STARTTLS is required first".into()),
                    ));
                }
                let policy = S2s::policy(&self.state.config, &from);
                let cert = self.cert_valid_for(&from);
                let refusal = if policy.block {
                    Some("blocked")
                } else if policy.require_valid_certificates && cert.is_err() {
                    Some("a valid certificate is required")
                } else if !policy.allow_dialback && cert.is_err() {
                    Some("dialback is not allowed")
                } else {
                    None
                };
                if let Some(why) = refusal {
                    tracing::info!(peer = %self.peer, remote = %from, why, "s2s dialback refused");
                    return self
                        .xs
                        .write(&format!(
                            "<db:result from='{}' to='{}' type='error'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
                            xml::escape(&to), xml::escape(&from)
                        ))
                        .await;
                }
                if cert.is_ok() {
                    // The certificate already proves the domain (as XEP-0344 allows).
                    return self.on_verdict((from, to, true)).await;
                }
                let pair = (from.clone(), to.clone());
                if self.pending.contains(&pair) || self.pending.len() >= MAX_PENDING_DIALBACK {
                    return Ok(());
                }
                self.pending.insert(pair);
                let state = self.state.clone();
                let tx = self.verdict_tx.clone();
                let id = self.stream_id.clone();
                self.state.tasks.spawn(async move {
                    let setup =
                        Duration::from_secs(state.config.s2s.negotiation_timeout_secs.max(1));
                    let r = tokio::time::timeout(
                        setup,
                        super::outbound::verify_key(&state, &to, &from, &id, &key),
                    )
                    .await;
                    let valid = match r {
                        Ok(Ok(v)) => v,
                        Ok(Err(e)) => {
                            tracing::info!(remote = %from, error = %e, "dialback verification failed");
                            false
                        }
                        Err(_) => {
                            tracing::info!(remote = %from, "dialback verification timed out");
                            false
                        }
                    };
                    let _ = tx.send((from, to, valid)).await;
                });
                Ok(())
            }
            // Answers belong on our outbound streams; ignore them here.
            _ => Ok(()),
        }
    }

    async fn on_verdict(&mut self, (from, to, valid): Verdict) -> Result<(), End> {
        self.pending.remove(&(from.clone(), to.clone()));
        let kind = if valid { "valid" } else { "invalid" };
        self.xs
            .write(&dialback::result(&to, &from, Some(kind), None))
            .await?;
        if valid {
            tracing::info!(
                peer = %self.peer, local = %to, remote = %from, direction = "inbound",
                tls = ?self.xs.io.tls_version(), auth = "dialback", "s2s stream authenticated"
            );
            self.state.s2s.record(true, &to, &from, "dialback");
            self.authed.insert((from, to));
        } else {
            tracing::info!(peer = %self.peer, remote = %from, "s2s dialback key invalid");
        }
        Ok(())
    }

    fn on_stanza(&mut self, stanza: Stanza) -> Result<(), End> {
        if self.authed.is_empty() {
            return Err(End::Stream(
                StreamError::NotAuthorized,
                Some("authenticate first".into()),
            ));
        }
        let from = match stanza.from() {
            Ok(Some(f)) => f,
            _ => {
                return Err(End::Stream(
                    StreamError::InvalidFrom,
                    Some("a stanza needs a valid from".into()),
                ))
            }
        };
        let to = match stanza.to() {
            Ok(Some(t)) => t,
            _ => {
                return Err(End::Stream(
                    StreamError::ImproperAddressing,
                    Some("a stanza needs a valid to".into()),
                ))
            }
        };
        if !self.state.is_local_domain(to.domain()) {
            return Err(End::Stream(
                StreamError::HostUnknown,
                Some(format!("{} is not served here", to.domain())),
            ));
        }
        let pair = (from.domain().to_string(), to.domain().to_string());
        if !self.authed.contains(&pair) {
            return Err(End::Stream(
                StreamError::InvalidFrom,
                Some(format!(
                    "{} is not authenticated on this stream for {}",
                    pair.0, pair.1
                )),
            ));
        }
        router::route(&self.state, stanza);
        Ok(())
    }

    async fn finish(&mut self, end: End) {
        match end {
            End::Io(_) => {}
            End::PeerClosed => self.xs.close(None).await,
            End::Stream(e, text) => {
                if !self.header_sent {
                    let h = xml::stream_header(
                        ns::SERVER,
                        Some(self.state.config.default_domain()),
                        None,
                        Some(&crate::c2s::random_id()),
                        &[],
                    );
                    let _ = self.xs.write(&h).await;
                }
                self.xs.close(Some((e, text.as_deref()))).await;
            }
        }
    }
}
