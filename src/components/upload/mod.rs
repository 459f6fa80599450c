//! File sharing and calls, on by default: HTTP File Upload (XEP-0363) at `upload.<domain>`,
//! the SOCKS5 bytestream proxy (XEP-0065) at `proxy.<domain>`, and STUN/TURN advertised by
//! external service discovery (XEP-0215) on the domain, served by a built-in TURN server
//! unless an external one is configured.
//!
//! [`Services::start`] binds every socket (so a busy port fails the start with a clear
//! message), [`Services::spawn`] runs them under the server's task tracker and shutdown
//! token. The router hands stanzas for the two component JIDs to [`route`]; the XEP-0215
//! module is added to the server's modules by [`Services::extdisco_module`].

pub mod config;
pub mod extdisco;
pub mod http;
pub mod http_upload;
pub mod proxy65;
pub mod stun;
pub mod turn;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::jid::Jid;
use crate::proto::{ns, Stanza, StanzaError, StanzaKind};
use crate::router;
use crate::server::ServerState;
use crate::transport::TlsContext;
use crate::xml::Element;

use extdisco::{ExtdiscoModule, TurnAdvert};
use http_upload::UploadStore;
use proxy65::Proxy65;
use turn::TurnServer;

/// Prefix of the upload service's JID.
pub const UPLOAD_PREFIX: &str = "upload.";
/// Prefix of the proxy's JID.
pub const PROXY_PREFIX: &str = "proxy.";
/// How often old files are looked for.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(3600);

/// The running services (each `None` when turned off).
pub struct Services {
    pub upload: Option<Arc<UploadStore>>,
    http_listener: Mutex<Option<TcpListener>>,
    http_addr: Option<SocketAddr>,
    https: Arc<rustls::ServerConfig>,
    pub turn: Option<Arc<TurnServer>>,
    pub proxy: Option<Arc<Proxy65>>,
    advert: Option<Arc<TurnAdvert>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A secret kept in a file of the data folder (32 random bytes, mode 0600, created once).
pub fn load_or_create_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(b) if b.len() >= 16 => Ok(b),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is damaged (too short)", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(&secret)?;
            f.sync_all()?;
            Ok(secret.to_vec())
        }
        Err(e) => Err(e),
    }
}

impl Services {
    /// Bind what is turned on.
    pub async fn start(config: &Config, tls: &TlsContext) -> Result<Services, String> {
        let data_dir = &config.server.data_dir;
        let mut upload = None;
        let mut http_listener = None;
        let mut http_addr = None;
        if config.upload.enable {
            let l = TcpListener::bind(&config.upload.http_listen)
                .await
                .map_err(|e| format!("upload.http_listen {}: {e}", config.upload.http_listen))?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            let store = UploadStore::open(data_dir, config.upload.clone(), addr.port())
                .map_err(|e| format!("upload folder under {}: {e}", data_dir.display()))?;
            upload = Some(Arc::new(store));
            http_listener = Some(l);
            http_addr = Some(addr);
        }
        let mut turn = None;
        let mut advert = None;
        let t = &config.turn;
        if t.enable {
            let secret = if t.secret.is_empty() {
                load_or_create_secret(&data_dir.join("turn.secret"))
                    .map_err(|e| format!("turn secret: {e}"))?
            } else {
                t.secret.as_bytes().to_vec()
            };
            let host = if t.host.is_empty() {
                config.default_domain().to_string()
            } else {
                t.host.clone()
            };
            let mut port = if t.port == 0 { 3478 } else { t.port };
            if t.builtin {
                let listen: SocketAddr = t
                    .listen
                    .parse()
                    .map_err(|_| format!("turn.listen {:?} is not an address", t.listen))?;
                let realm = if t.realm.is_empty() {
                    config.default_domain().to_string()
                } else {
                    t.realm.clone()
                };
                let relay_ip = relay_ip(config, listen, &host).await;
                let ports = t
                    .relay_range()
                    .ok_or("turn.relay_ports is not FIRST-LAST")?;
                let server = TurnServer::bind(
                    listen,
                    secret.clone(),
                    realm,
                    relay_ip,
                    ports,
                    t.relay_private_peers,
                )
                .await
                .map_err(|e| format!("turn.listen {listen}: {e}"))?;
                if t.port == 0 {
                    port = server.local_addr().map_err(|e| e.to_string())?.port();
                }
                turn = Some(Arc::new(server));
            }
            advert = Some(Arc::new(TurnAdvert {
                host,
                port,
                secret,
                ttl_secs: t.credential_ttl_secs.max(60),
            }));
        }
        let mut proxy = None;
        if config.proxy65.enable {
            let host = if config.proxy65.host.is_empty() {
                config.default_domain().to_string()
            } else {
                config.proxy65.host.clone()
            };
            let p = Proxy65::bind(&config.proxy65.listen, host)
                .await
                .map_err(|e| format!("proxy65.listen {}: {e}", config.proxy65.listen))?;
            proxy = Some(Arc::new(p));
        }
        Ok(Services {
            upload,
            http_listener: Mutex::new(http_listener),
            http_addr,
            https: tls.https.clone(),
            turn,
            proxy,
            advert,
        })
    }

    /// The XEP-0215 module for the server's module list.
    pub fn extdisco_module(&self) -> Box<dyn crate::modules::Module> {
        Box::new(ExtdiscoModule {
            advert: self.advert.clone(),
        })
    }

    /// Run the listeners and the expiry sweep.
    pub fn spawn(&self, state: &Arc<ServerState>) {
        let tasks = state.tasks.clone();
        let shutdown = state.shutdown.clone();
        if let (Some(store), Some(l)) = (&self.upload, lock(&self.http_listener).take()) {
            tasks.spawn(http::serve(
                l,
                self.https.clone(),
                store.clone(),
                tasks.clone(),
                shutdown.clone(),
            ));
            let store = store.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.cancelled() => return,
                    }
                    let s = store.clone();
                    let now = http_upload::unix_now();
                    if let Ok(n) = tokio::task::spawn_blocking(move || s.expire(now)).await {
                        if n > 0 {
                            tracing::info!(removed = n, "expired uploads removed");
                        }
                    }
                }
            });
        }
        if let Some(t) = &self.turn {
            tasks.spawn(t.clone().run(shutdown.clone()));
        }
        if let Some(p) = &self.proxy {
            tasks.spawn(p.clone().run(tasks.clone(), shutdown.clone()));
        }
    }

    /// Address of the HTTPS upload service.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Address of the built-in TURN server.
    pub fn turn_addr(&self) -> Option<SocketAddr> {
        self.turn.as_ref().and_then(|t| t.local_addr().ok())
    }

    /// Address of the SOCKS5 proxy.
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy.as_ref().map(|p| p.local_addr())
    }
}

/// The address put in relayed transport addresses: `turn.relay_ip`, else the listen address,
/// else an address of the advertised host name, else loopback (with a warning).
async fn relay_ip(config: &Config, listen: SocketAddr, host: &str) -> IpAddr {
    if let Ok(ip) = config.turn.relay_ip.parse() {
        return ip;
    }
    if !listen.ip().is_unspecified() {
        return listen.ip();
    }
    if let Ok(mut addrs) = tokio::net::lookup_host((host, 0)).await {
        if let Some(a) = addrs.find(|a| a.is_ipv4() == listen.is_ipv4()) {
            return a.ip();
        }
    }
    tracing::warn!(
        host,
        "cannot tell the TURN server's public address; set turn.relay_ip"
    );
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Which component a domain names.
enum Component {
    Upload,
    Proxy,
}

fn component_of(config: &Config, domain: &str) -> Option<(Component, String)> {
    if config.upload.enable {
        if let Some(base) = domain.strip_prefix(UPLOAD_PREFIX) {
            if config.hosts(base) {
                return Some((Component::Upload, base.to_string()));
            }
        }
    }
    if config.proxy65.enable {
        if let Some(base) = domain.strip_prefix(PROXY_PREFIX) {
            if config.hosts(base) {
                return Some((Component::Proxy, base.to_string()));
            }
        }
    }
    None
}

/// Handle a stanza addressed to one of the components; `false` when `to` is not one.
pub fn route(state: &Arc<ServerState>, stanza: &Stanza, to: &Jid) -> bool {
    let Some((component, base)) = component_of(&state.config, to.domain()) else {
        return false;
    };
    match stanza.kind() {
        StanzaKind::Iq if stanza.is_iq_request() => {
            let reply = if to.node().is_some() || to.is_full() {
                StanzaError::service_unavailable().reply_to(stanza)
            } else {
                handle_iq(state, &component, &base, to, stanza)
            };
            router::route(state, reply);
        }
        StanzaKind::Message if !stanza.is_error() => {
            router::bounce(state, stanza, StanzaError::service_unavailable());
        }
        _ => {}
    }
    true
}

fn handle_iq(
    state: &Arc<ServerState>,
    component: &Component,
    base: &str,
    to: &Jid,
    stanza: &Stanza,
) -> Stanza {
    let fail = |e: StanzaError| e.reply_to(stanza);
    let Ok(Some(from)) = stanza.from() else {
        return fail(StanzaError::bad_request());
    };
    let (Some(payload), 1) = (stanza.iq_payload(), stanza.el().elements().count()) else {
        return fail(StanzaError::bad_request());
    };
    let is_set = stanza.type_attr() == Some("set");
    if payload.is("query", ns::DISCO_INFO) || payload.is("query", ns::DISCO_ITEMS) {
        if is_set {
            return fail(StanzaError::bad_request());
        }
        if payload.attr("node").is_some_and(|n| !n.is_empty()) {
            return fail(StanzaError::item_not_found());
        }
        if payload.ns == ns::DISCO_ITEMS {
            return stanza.iq_result(Some(Element::new("query", ns::DISCO_ITEMS)));
        }
        let info = match component {
            Component::Upload => state.media.upload.as_ref().map(|u| u.disco_info()),
            Component::Proxy => state.media.proxy.as_ref().map(|p| p.disco_info()),
        };
        return match info {
            Some(i) => stanza.iq_result(Some(i)),
            None => fail(StanzaError::service_unavailable()),
        };
    }
    // The services are for the server's own accounts.
    if from.node().is_none() || !state.config.hosts(from.domain()) {
        return fail(StanzaError::forbidden());
    }
    match component {
        Component::Upload => {
            let Some(store) = &state.media.upload else {
                return fail(StanzaError::service_unavailable());
            };
            if !payload.is("request", http_upload::NS_UPLOAD) {
                return fail(StanzaError::service_unavailable());
            }
            if is_set {
                return fail(StanzaError::bad_request().with_text("slot requests are type get"));
            }
            match store.request_slot(&from, base, payload) {
                Ok(slot) => stanza.iq_result(Some(slot)),
                Err(refused) => {
                    let (err, detail) = *refused;
                    let mut reply = err.reply_to(stanza);
                    if let (Some(detail), Some(e)) =
                        (detail, reply.el_mut().child_mut("error", ns::CLIENT))
                    {
                        e.push_child(detail);
                    }
                    reply
                }
            }
        }
        Component::Proxy => {
            let Some(proxy) = &state.media.proxy else {
                return fail(StanzaError::service_unavailable());
            };
            if !payload.is("query", proxy65::NS_BYTESTREAMS) {
                return fail(StanzaError::service_unavailable());
            }
            match proxy.handle_iq(to, &from, is_set, payload) {
                Ok(p) => stanza.iq_result(p),
                Err(e) => fail(e),
            }
        }
    }
}

/// Every disco feature these services advertise with this configuration (on the domain and
/// on the component JIDs), for the compliance record.
pub fn features(config: &Config) -> Vec<&'static str> {
    let mut f = Vec::new();
    if config.turn.enable {
        f.push(extdisco::NS_EXTDISCO);
    }
    if config.upload.enable {
        f.push(http_upload::NS_UPLOAD);
    }
    if config.proxy65.enable {
        f.push(proxy65::NS_BYTESTREAMS);
    }
    f
}
