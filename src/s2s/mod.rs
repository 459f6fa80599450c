//! Federation (RFC 6120 server-to-server streams): links to other XMPP servers.
//!
//! - [`inbound`]: the `[s2s] listen` / `direct_tls` listeners and the task per accepted
//!   connection: STARTTLS or Direct TLS (XEP-0368), then the peer's domain is authenticated
//!   by SASL EXTERNAL (XEP-0178) when its certificate verifies, or by Server Dialback
//!   (XEP-0220) when allowed; stanzas are accepted only from a domain authenticated on that
//!   stream (`<invalid-from/>` otherwise) and only for a domain hosted here (`<host-unknown/>`).
//!   Dialback verification requests (`<db:verify/>`) from other servers are answered there.
//! - [`outbound`]: one task per (local domain, remote domain) with a bounded queue. The first
//!   stanza starts the link: discovery ([`resolve`]), TCP with a timeout, TLS, SASL EXTERNAL
//!   or dialback; queued stanzas then go out in order. A link that cannot be set up bounces
//!   its queue (`remote-server-not-found` when the domain cannot be found or reached,
//!   `remote-server-timeout` when setup timed out); an idle link is closed after
//!   `idle_timeout_secs`; a link is reused by every later stanza for that pair.
//! - [`verify`]: our certificate verifiers (serverAuth-only certificates accepted) and the
//!   RFC 6125 identity checks. [`dialback`]: keys (XEP-0185) and elements. [`check`]: what
//!   `oriole check` says about DNS records and certificates.
//!
//! Federation is on when `[s2s] listen` or `direct_tls` names an address. Without a
//! listener it stays off, and a stanza for another domain bounces with
//! `remote-server-not-found` as before: a server that cannot be reached back cannot pass
//! dialback, and most peers would refuse it anyway.
//!
//! Policy per remote domain (`[s2s.domains."name"]`): `block`, `require_valid_certificates`
//! (default off, as Prosody's `s2s_secure_auth`), `allow_dialback` (default on), and a static
//! `connect = "host:port"` that replaces DNS. Bidirectional streams (XEP-0288) are not
//! implemented: each direction has its own connection, as in RFC 6120.

pub mod check;
pub mod dialback;
pub mod inbound;
pub mod outbound;
pub mod resolve;
pub mod stream;
pub mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::proto::{Stanza, StanzaError, StanzaKind};
use crate::router;
use crate::server::ServerState;
use crate::transport::TlsContext;

/// ALPN protocol name of XMPP server connections over Direct TLS (XEP-0368).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// How a remote domain is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub block: bool,
    pub require_valid_certificates: bool,
    pub allow_dialback: bool,
}

/// A stream on which a remote domain was authenticated (kept for `link_log`, the last
/// [`LOG_SIZE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The peer connected to us (else we connected to it).
    pub inbound: bool,
    pub local: String,
    pub remote: String,
    /// "SASL EXTERNAL" or "dialback".
    pub method: &'static str,
}

const LOG_SIZE: usize = 256;

/// A queued link: its id (to tell one task's entry from its successor's) and its queue.
struct LinkHandle {
    id: u64,
    tx: mpsc::Sender<Stanza>,
}

/// The federation state held by [`ServerState`].
pub struct S2s {
    enabled: bool,
    pub(crate) resolver: Option<resolve::Resolver>,
    pub(crate) trust: verify::PeerTrust,
    /// Inbound: STARTTLS (no ALPN) and Direct TLS (ALPN xmpp-server).
    pub(crate) server_tls: Arc<rustls::ServerConfig>,
    pub(crate) server_tls_direct: Arc<rustls::ServerConfig>,
    /// Outbound per hosted domain (its certificate as client certificate): (STARTTLS, Direct).
    client_tls: HashMap<String, (Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>)>,
    pub(crate) secret: dialback::Secret,
    links: Mutex<HashMap<(String, String), LinkHandle>>,
    next_link: std::sync::atomic::AtomicU64,
    listeners: Mutex<Vec<(TcpListener, bool)>>,
    log: Mutex<std::collections::VecDeque<Authenticated>>,
    addrs: Vec<std::net::SocketAddr>,
}

impl S2s {
    /// Set up federation for `config`: trust store, TLS configurations, resolver, and the
    /// bound listeners (started by [`spawn`]).
    pub async fn new(config: &Config, tls: &TlsContext) -> Result<S2s, String> {
        let c = &config.s2s;
        let enabled = !c.listen.is_empty() || !c.direct_tls.is_empty();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let trust = if enabled {
            load_trust(config)?
        } else {
            verify::PeerTrust::new(&[]).0
        };
        let server = |alpn: bool| -> Result<Arc<rustls::ServerConfig>, String> {
            let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(Arc::new(verify::OptionalClientCert))
                .with_cert_resolver(tls.cert_resolver());
            if alpn {
                cfg.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
            }
            Ok(Arc::new(cfg))
        };
        let mut client_tls = HashMap::new();
        // Hosted domains and the internal components' domains (conference.<domain>, …):
        // a room answering a remote occupant opens its own link.
        let local_domains = config.server.domains.iter().cloned().chain(
            crate::components::service_domains(config)
                .into_iter()
                .map(|s| s.domain),
        );
        for domain in local_domains {
            let Some(key) = tls.certified_key(&domain) else {
                continue;
            };
            let client = |alpn: bool| -> Result<Arc<rustls::ClientConfig>, String> {
                let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verify::AcceptAnyServerCert))
                    .with_client_cert_resolver(Arc::new(verify::FixedClientCert(key.clone())));
                if alpn {
                    cfg.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
                }
                Ok(Arc::new(cfg))
            };
            client_tls.insert(domain, (client(false)?, client(true)?));
        }
        let resolver = if enabled {
            Some(resolve::Resolver::new(&c.nameservers)?)
        } else {
            None
        };
        let server_secret = std::fs::read(config.server.data_dir.join("server.secret"))
            .unwrap_or_else(|_| rand::random::<[u8; 32]>().to_vec());
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for (list, direct) in [(&c.listen, false), (&c.direct_tls, true)] {
            for l in crate::transport::listener::bind_all(list)
                .await
                .map_err(|e| e.to_string())?
            {
                if let Ok(a) = l.local_addr() {
                    addrs.push(a);
                }
                listeners.push((l, direct));
            }
        }
        Ok(S2s {
            enabled,
            resolver,
            trust,
            server_tls: server(false)?,
            server_tls_direct: server(true)?,
            client_tls,
            secret: dialback::Secret::new(&server_secret),
            links: Mutex::new(HashMap::new()),
            next_link: std::sync::atomic::AtomicU64::new(1),
            listeners: Mutex::new(listeners),
            log: Mutex::new(Default::default()),
            addrs,
        })
    }

    /// Whether federation is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The addresses the s2s listeners are bound to (tests bind port 0).
    pub fn listen_addrs(&self) -> &[std::net::SocketAddr] {
        &self.addrs
    }

    /// The policy for a remote domain.
    pub fn policy(config: &Config, remote: &str) -> Policy {
        let c = &config.s2s;
        let d = c.domains.get(remote);
        Policy {
            block: d.is_some_and(|d| d.block),
            require_valid_certificates: d
                .and_then(|d| d.require_valid_certificates)
                .unwrap_or(c.require_valid_certificates),
            allow_dialback: d.and_then(|d| d.allow_dialback).unwrap_or(c.allow_dialback),
        }
    }

    pub(crate) fn client_tls(
        &self,
        local: &str,
        direct: bool,
    ) -> Option<Arc<rustls::ClientConfig>> {
        self.client_tls
            .get(local)
            .map(|(s, d)| if direct { d.clone() } else { s.clone() })
    }

    /// The latest authenticated streams, oldest first.
    pub fn link_log(&self) -> Vec<Authenticated> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn record(&self, inbound: bool, local: &str, remote: &str, method: &'static str) {
        if let Ok(mut l) = self.log.lock() {
            if l.len() >= LOG_SIZE {
                l.pop_front();
            }
            l.push_back(Authenticated {
                inbound,
                local: local.to_string(),
                remote: remote.to_string(),
                method,
            });
        }
    }

    /// Number of outbound links currently open or being set up.
    pub fn link_count(&self) -> usize {
        self.links.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Remove a finished link's entry (if it is still its own) and close its queue, under
    /// the same lock senders take, so that no stanza is queued to a dead link.
    pub(crate) fn retire(&self, key: &(String, String), id: u64, rx: &mut mpsc::Receiver<Stanza>) {
        if let Ok(mut links) = self.links.lock() {
            if links.get(key).is_some_and(|h| h.id == id) {
                links.remove(key);
            }
            rx.close();
        }
    }
}

/// The roots peer certificates are checked against: the system's plus `s2s.ca_file`.
pub fn load_trust(config: &Config) -> Result<verify::PeerTrust, String> {
    let mut roots: Vec<CertificateDer<'static>> = rustls_native_certs::load_native_certs().certs;
    if let Some(path) = &config.s2s.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("s2s.ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "s2s.ca_file {}: no certificate found",
                path.display()
            ));
        }
        roots.extend(certs);
    }
    Ok(verify::PeerTrust::new(&roots).0)
}

/// Start the accept loops of the bound s2s listeners.
pub fn spawn(state: &Arc<ServerState>) {
    let listeners = match state.s2s.listeners.lock() {
        Ok(mut l) => std::mem::take(&mut *l),
        Err(_) => return,
    };
    for (l, direct) in listeners {
        state
            .tasks
            .spawn(inbound::accept_loop(state.clone(), l, direct));
    }
}

/// Hand a stanza for a domain not hosted here to federation. Without federation it bounces
/// with `remote-server-not-found` (presence other than subscription requests is dropped).
pub fn send(state: &Arc<ServerState>, stanza: Stanza) {
    let (Ok(Some(to)), Ok(Some(from))) = (stanza.to(), stanza.from()) else {
        return;
    };
    let remote = to.domain().to_string();
    let local = from.domain().to_string();
    if !state.s2s.enabled || !state.is_local_domain(&local) {
        if stanza.kind() == StanzaKind::Presence && stanza.type_attr() != Some("subscribe") {
            return;
        }
        router::bounce(
            state,
            &stanza,
            StanzaError::remote_server_not_found()
                .with_text(format!("{remote} is not served here")),
        );
        return;
    }
    if S2s::policy(&state.config, &remote).block {
        router::bounce(
            state,
            &stanza,
            StanzaError::remote_server_not_found()
                .with_text(format!("federation with {remote} is blocked here")),
        );
        return;
    }
    let key = (local, remote);
    let full = {
        let Ok(mut links) = state.s2s.links.lock() else {
            return;
        };
        let mut pending = Some(stanza);
        let mut full = None;
        if let Some(h) = links.get(&key) {
            if let Some(s) = pending.take() {
                match h.tx.try_send(s) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Full(s)) => full = Some(s),
                    Err(mpsc::error::TrySendError::Closed(s)) => pending = Some(s),
                }
            }
        }
        if let Some(s) = pending {
            let (tx, rx) = mpsc::channel(state.config.s2s.queue_size.max(1));
            let id = state
                .s2s
                .next_link
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            full = tx.try_send(s).err().map(|e| e.into_inner());
            links.insert(key.clone(), LinkHandle { id, tx });
            state
                .tasks
                .spawn(outbound::run_link(state.clone(), key, id, rx));
        }
        full
    };
    if let Some(s) = full {
        router::bounce(
            state,
            &s,
            StanzaError::resource_constraint().with_text("too many stanzas queued for that server"),
        );
    }
}

/// Bounce every stanza left in a closed queue.
pub(crate) fn bounce_all(
    state: &Arc<ServerState>,
    rx: &mut mpsc::Receiver<Stanza>,
    error: &StanzaError,
) {
    while let Ok(s) = rx.try_recv() {
        router::bounce(state, &s, error.clone());
    }
}
