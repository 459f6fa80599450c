//! Outbound federation: the link task per (local domain, remote domain), and the short
//! connections that ask a domain's authoritative server to verify a dialback key.
//!
//! Setup: targets from `[s2s.domains."x"] connect` or DNS ([`super::resolve`]); each address
//! gets a TCP connect with `connect_timeout_secs`; then our stream header, STARTTLS (or TLS
//! at once for Direct TLS targets, ALPN `xmpp-server`, SNI = the remote domain); a stream
//! without TLS is refused. The peer's certificate is judged by [`super::verify`]. We then
//! authenticate with SASL EXTERNAL when offered, else with dialback when our policy allows
//! it and the peer supports it. Any failure moves on to the next address or target.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dialback::{self, Db};
use super::resolve::{ResolveError, Target};
use super::stream::{End, Io, XmlStream, TLS_HANDSHAKE};
use super::S2s;
use crate::proto::{ns, Stanza, StanzaError};
use crate::server::ServerState;
use crate::xml::parser::{Limits, StreamEvent};
use crate::xml::{self, Element};

/// Stanzas written in one batch before flushing.
const WRITE_BATCH: usize = 64;

/// Why a link could not be set up; decides the bounce condition.
#[derive(Debug)]
pub enum LinkError {
    /// The domain has no server we could find or reach.
    NotFound(String),
    /// We reached a server but it would not take our stream (TLS, authentication, policy).
    Refused(String),
}

impl LinkError {
    fn stanza_error(&self) -> StanzaError {
        match self {
            LinkError::NotFound(t) | LinkError::Refused(t) => {
                StanzaError::remote_server_not_found().with_text(t.clone())
            }
        }
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::NotFound(t) | LinkError::Refused(t) => f.write_str(t),
        }
    }
}

/// An outbound stream with TLS up, before authentication.
pub struct OutStream {
    pub xs: XmlStream,
    pub stream_id: String,
    pub features: Element,
    /// Whether the peer speaks dialback (feature, or `db` declared on its header).
    pub peer_dialback: bool,
    /// The peer certificate's verdict for the remote domain.
    pub peer_cert: Result<(), String>,
    pub target: String,
}

fn limits(state: &ServerState) -> Limits {
    Limits {
        max_stanza_bytes: state.config.limits.max_stanza_size,
        max_depth: state.config.limits.max_depth,
    }
}

/// Where to connect for `remote`.
async fn targets(state: &ServerState, remote: &str) -> Result<Vec<Target>, LinkError> {
    if let Some(d) = state.config.s2s.domains.get(remote) {
        if let Some(c) = &d.connect {
            if let Some((host, port)) = c.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    return Ok(vec![Target {
                        host: host.to_string(),
                        port,
                        direct_tls: d.direct_tls,
                    }]);
                }
            }
        }
    }
    let Some(resolver) = &state.s2s.resolver else {
        return Err(LinkError::NotFound("federation is off".into()));
    };
    resolver.targets(remote).await.map_err(|e| match e {
        ResolveError::NotFound(t) | ResolveError::Failed(t) => LinkError::NotFound(t),
    })
}

/// Connect to `remote` for `local`, with TLS up and the features read.
pub async fn connect(
    state: &ServerState,
    local: &str,
    remote: &str,
) -> Result<OutStream, LinkError> {
    let targets = targets(state, remote).await?;
    let connect_timeout = Duration::from_secs(state.config.s2s.connect_timeout_secs.max(1));
    let mut errors = Vec::new();
    for t in &targets {
        let addrs = match &state.s2s.resolver {
            Some(r) => r.addrs(&t.host, t.port).await,
            None => Err(ResolveError::NotFound("federation is off".into())),
        };
        let addrs = match addrs {
            Ok(a) => a,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        for addr in addrs {
            let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    errors.push(format!("{}:{} ({addr}): {e}", t.host, t.port));
                    continue;
                }
                Err(_) => {
                    errors.push(format!("{}:{} ({addr}): connect timed out", t.host, t.port));
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match open(state, tcp, t, local, remote).await {
                Ok(s) => return Ok(s),
                Err(e) => {
                    tracing::debug!(%local, %remote, %addr, error = %e, "s2s connection attempt failed");
                    errors.push(format!("{}:{} ({addr}): {e}", t.host, t.port));
                }
            }
        }
    }
    Err(LinkError::NotFound(format!(
        "cannot reach {remote}: {}",
        if errors.is_empty() {
            "no address".to_string()
        } else {
            errors.join("; ")
        }
    )))
}

async fn tls_client(
    state: &ServerState,
    tcp: TcpStream,
    local: &str,
    remote: &str,
    direct: bool,
) -> Result<Io, String> {
    let cfg = state
        .s2s
        .client_tls(local, direct)
        .ok_or_else(|| format!("no TLS certificate for {local}"))?;
    let name = ServerName::try_from(remote.to_string()).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        TLS_HANDSHAKE,
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_string())?
    .map_err(|e| format!("TLS handshake: {e}"))?;
    Ok(Io::ClientTls(Box::new(tls)))
}

/// Send our header, read the peer's header and features.
async fn restart(
    xs: &mut XmlStream,
    local: &str,
    remote: &str,
) -> Result<(String, Element, bool), String> {
    xs.parser.reset();
    xs.write(&xml::stream_header(
        ns::SERVER,
        Some(local),
        Some(remote),
        None,
        &[("db", dialback::NS)],
    ))
    .await
    .map_err(|e| e.to_string())?;
    let header = match xs.next_event().await.map_err(|e| e.to_string())? {
        StreamEvent::Open(h) => h,
        _ => return Err("expected a stream header".into()),
    };
    if header.default_ns != ns::SERVER {
        return Err(format!("peer answered with a {} stream", header.default_ns));
    }
    let db = header.prefixes.iter().any(|(_, u)| u == dialback::NS);
    let id = header.id.unwrap_or_default();
    let features = next_element(xs).await?;
    if !features.is("features", ns::STREAM) {
        return Err(format!(
            "expected stream features, got <{}/>",
            features.name
        ));
    }
    Ok((id, features, db))
}

async fn next_element(xs: &mut XmlStream) -> Result<Element, String> {
    match xs.next_event().await.map_err(|e| e.to_string())? {
        StreamEvent::Element(el) => {
            if el.is("error", ns::STREAM) {
                let cond = el
                    .elements()
                    .find(|c| c.ns == ns::STREAMS_ERR && c.name != "text")
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                return Err(format!("stream error from peer: {cond}"));
            }
            Ok(el)
        }
        StreamEvent::Close => Err("the peer closed the stream".into()),
        StreamEvent::Open(_) => Err("unexpected stream header".into()),
    }
}

/// Stream header, TLS, features.
async fn open(
    state: &ServerState,
    tcp: TcpStream,
    target: &Target,
    local: &str,
    remote: &str,
) -> Result<OutStream, String> {
    let io = if target.direct_tls {
        tls_client(state, tcp, local, remote, true).await?
    } else {
        Io::Plain(tcp)
    };
    let mut xs = XmlStream::new(io, limits(state));
    let (mut id, mut features, mut db) = restart(&mut xs, local, remote).await?;
    if !xs.io.is_tls() {
        if features.child("starttls", ns::TLS).is_none() {
            return Err("the server offers no STARTTLS; unencrypted federation is refused".into());
        }
        xs.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await
            .map_err(|e| e.to_string())?;
        let answer = next_element(&mut xs).await?;
        if !answer.is("proceed", ns::TLS) {
            return Err("STARTTLS refused".into());
        }
        let Io::Plain(tcp) = std::mem::replace(&mut xs.io, Io::Upgrading) else {
            return Err("internal: not a plain stream".into());
        };
        xs.io = tls_client(state, tcp, local, remote, false).await?;
        (id, features, db) = restart(&mut xs, local, remote).await?;
    }
    let chain = xs.io.peer_chain();
    let peer_cert = state.s2s.trust.check(&chain, remote);
    let peer_dialback = db || features.child("dialback", dialback::FEATURE_NS).is_some();
    Ok(OutStream {
        xs,
        stream_id: id,
        features,
        peer_dialback,
        peer_cert,
        target: format!("{}:{}", target.host, target.port),
    })
}

fn offers_external(features: &Element) -> bool {
    features
        .child("mechanisms", ns::SASL)
        .is_some_and(|m| m.elements().any(|c| c.text().trim() == "EXTERNAL"))
}

/// Authenticate `local` to `remote` on an open stream; the method used.
async fn authenticate(
    state: &ServerState,
    s: &mut OutStream,
    local: &str,
    remote: &str,
) -> Result<&'static str, String> {
    let policy = S2s::policy(&state.config, remote);
    if let Err(e) = &s.peer_cert {
        if policy.require_valid_certificates {
            return Err(format!("{remote}'s certificate is not valid: {e}"));
        }
    }
    if offers_external(&s.features) {
        let authzid = base64::engine::general_purpose::STANDARD.encode(local);
        s.xs.write(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{authzid}</auth>"
        ))
        .await
        .map_err(|e| e.to_string())?;
        let answer = next_element(&mut s.xs).await?;
        if answer.is("success", ns::SASL) {
            restart(&mut s.xs, local, remote).await?;
            return Ok("SASL EXTERNAL");
        }
        tracing::debug!(%local, %remote, "SASL EXTERNAL refused; trying dialback");
    }
    if !policy.allow_dialback {
        return Err(format!(
            "{remote} did not accept our certificate and dialback is off for it"
        ));
    }
    if !s.peer_dialback {
        return Err(format!(
            "{remote} accepts neither our certificate nor dialback"
        ));
    }
    let key = state.s2s.secret.key(remote, local, &s.stream_id);
    s.xs.write(&dialback::result(local, remote, None, Some(&key)))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let el = next_element(&mut s.xs).await?;
        if let Some(Db::Result { from, to, kind, .. }) = Db::parse(&el) {
            if from == remote && to == local {
                return match kind.as_deref() {
                    Some("valid") => Ok("dialback"),
                    other => Err(format!(
                        "{remote} refused our dialback key ({})",
                        other.unwrap_or("no type")
                    )),
                };
            }
        }
    }
}

/// Connect and authenticate.
async fn establish(
    state: &ServerState,
    local: &str,
    remote: &str,
) -> Result<(OutStream, &'static str), LinkError> {
    let mut s = connect(state, local, remote).await?;
    match authenticate(state, &mut s, local, remote).await {
        Ok(method) => Ok((s, method)),
        Err(e) => {
            s.xs.close(None).await;
            Err(LinkError::Refused(format!("{remote}: {e}")))
        }
    }
}

/// The link task: set up, send the queue in order, keep the link while it is used.
pub async fn run_link(
    state: Arc<ServerState>,
    key: (String, String),
    id: u64,
    mut rx: mpsc::Receiver<Stanza>,
) {
    let (local, remote) = key.clone();
    let setup = Duration::from_secs(state.config.s2s.negotiation_timeout_secs.max(1));
    let idle = Duration::from_secs(state.config.s2s.idle_timeout_secs.max(1));
    loop {
        let attempt = tokio::select! {
            r = tokio::time::timeout(setup, establish(&state, &local, &remote)) => r,
            _ = state.shutdown.cancelled() => {
                state.s2s.retire(&key, id, &mut rx);
                super::bounce_all(&state, &mut rx, &StanzaError::remote_server_timeout());
                return;
            }
        };
        let (mut s, method) = match attempt {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(%local, %remote, direction = "outbound", error = %e, "s2s link failed");
                state.s2s.retire(&key, id, &mut rx);
                super::bounce_all(&state, &mut rx, &e.stanza_error());
                return;
            }
            Err(_) => {
                tracing::warn!(%local, %remote, direction = "outbound", "s2s link setup timed out");
                state.s2s.retire(&key, id, &mut rx);
                super::bounce_all(
                    &state,
                    &mut rx,
                    &StanzaError::remote_server_timeout()
                        .with_text(format!("no link to {remote} within {setup:?}")),
                );
                return;
            }
        };
        state.s2s.record(false, &local, &remote, method);
        tracing::info!(
            %local, %remote, direction = "outbound", target = %s.target,
            tls = ?s.xs.io.tls_version(), auth = method,
            "s2s link established"
        );
        let mut last = Instant::now();
        let mut out = String::with_capacity(1024);
        let lost = loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => {
                    s.xs.close(Some((crate::proto::StreamError::SystemShutdown, None))).await;
                    state.s2s.retire(&key, id, &mut rx);
                    return;
                }
                m = rx.recv() => {
                    let Some(first) = m else {
                        s.xs.close(None).await;
                        return;
                    };
                    out.clear();
                    first.el().write_to_stream(&mut out);
                    let mut n = 1;
                    while n < WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(st) => st.el().write_to_stream(&mut out),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    if let Err(e) = s.xs.write(&out).await {
                        break e;
                    }
                    last = Instant::now();
                }
                r = s.xs.fill() => {
                    if let Err(e) = r {
                        break e;
                    }
                    last = Instant::now();
                    let mut closed = None;
                    loop {
                        match s.xs.parser.next_event() {
                            Ok(None) => break,
                            Ok(Some(StreamEvent::Close)) => { closed = Some(End::PeerClosed); break; }
                            Ok(Some(StreamEvent::Element(el))) => {
                                tracing::debug!(%local, %remote, element = %el.name, "ignored element on an outbound link");
                            }
                            Ok(Some(StreamEvent::Open(_))) => {
                                closed = Some(End::Stream(crate::proto::StreamError::InvalidXml, None));
                                break;
                            }
                            Err(e) => { closed = Some(e.into()); break; }
                        }
                    }
                    if let Some(c) = closed {
                        s.xs.close(None).await;
                        break c;
                    }
                }
                _ = tokio::time::sleep_until(last + idle) => {
                    // Closing the queue first: whatever slipped in is still written here.
                    state.s2s.retire(&key, id, &mut rx);
                    out.clear();
                    while let Ok(st) = rx.try_recv() {
                        st.el().write_to_stream(&mut out);
                    }
                    if !out.is_empty() {
                        let _ = s.xs.write(&out).await;
                    }
                    tracing::info!(%local, %remote, direction = "outbound", "s2s link idle; closed");
                    s.xs.close(None).await;
                    return;
                }
            }
        };
        tracing::info!(%local, %remote, direction = "outbound", reason = %lost, "s2s link lost");
        if rx.is_empty() {
            state.s2s.retire(&key, id, &mut rx);
            if rx.is_empty() {
                return;
            }
        }
        // Stanzas are waiting: set the link up again for them.
    }
}

/// Ask `remote`'s authoritative server whether `key` is the one it made for the stream
/// `stream_id` it opened to `local` (XEP-0220 §2.2).
pub async fn verify_key(
    state: &ServerState,
    local: &str,
    remote: &str,
    stream_id: &str,
    key: &str,
) -> Result<bool, String> {
    let mut s = connect(state, local, remote)
        .await
        .map_err(|e| e.to_string())?;
    s.xs.write(&dialback::verify(local, remote, stream_id, None, Some(key)))
        .await
        .map_err(|e| e.to_string())?;
    let answer = loop {
        let el = next_element(&mut s.xs).await?;
        if let Some(Db::Verify {
            from, to, id, kind, ..
        }) = Db::parse(&el)
        {
            if from == remote && to == local && id == stream_id {
                break kind.as_deref() == Some("valid");
            }
        }
    };
    s.xs.close(None).await;
    Ok(answer)
}

trait WriteToStream {
    fn write_to_stream(&self, out: &mut String);
}

impl WriteToStream for Element {
    /// A stanza as written on a `jabber:server` stream.
    fn write_to_stream(&self, out: &mut String) {
        out.push_str(&self.to_stream_string(ns::SERVER));
    }
}
