//! The server: wires configuration, storage, TLS, the session registry and the modules into
//! one shared [`ServerState`], runs the listeners, and shuts everything down cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::credentials::{StoredCredentials, DEFAULT_ITERATIONS};
use crate::config::Config;
use crate::im::roster;
use crate::jid::Jid;
use crate::modules::{
    Flow, HookPoint, IqRequest, IqTarget, Module, ModuleContext, ModuleEvent, ServerApi,
};
use crate::proto::{ns, Stanza, StanzaError, StreamError};
use crate::router;
use crate::session::SessionRegistry;
use crate::storage::{sled_store::SledStore, Storage};
use crate::transport::{ConnectionLimiter, TlsContext};

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The modules in dispatch order, with their payload index.
pub struct ModuleRegistry {
    modules: Vec<Box<dyn Module>>,
    /// Payload namespace -> (element name, module index).
    by_ns: std::collections::HashMap<&'static str, Vec<(&'static str, usize)>>,
    pub ctx: ModuleContext,
    /// The server's entity capabilities (XEP-0115), offered as a stream feature.
    pub caps: crate::xml::Element,
}

impl ModuleRegistry {
    fn new(
        modules: Vec<Box<dyn Module>>,
        config: Arc<Config>,
        storage: Arc<dyn Storage>,
        server: Arc<dyn ServerApi>,
    ) -> ModuleRegistry {
        let mut by_ns: std::collections::HashMap<&'static str, Vec<(&'static str, usize)>> =
            std::collections::HashMap::new();
        let mut server_features: Vec<&'static str> = vec![ns::DISCO_INFO, ns::DISCO_ITEMS];
        let mut account_features: Vec<&'static str> = Vec::new();
        for (i, m) in modules.iter().enumerate() {
            for &(name, ns) in m.iq_payloads() {
                by_ns.entry(ns).or_default().push((name, i));
            }
            server_features.extend_from_slice(m.server_features());
            account_features.extend_from_slice(m.account_features());
        }
        server_features.sort_unstable();
        server_features.dedup();
        account_features.sort_unstable();
        account_features.dedup();
        let ctx = ModuleContext {
            config,
            storage,
            server,
            server_features: Arc::new(server_features),
            account_features: Arc::new(account_features),
        };
        ModuleRegistry {
            modules,
            by_ns,
            caps: crate::modules::disco::server_caps(&ctx),
            ctx,
        }
    }

    /// Run every module's hook for a stanza at a hook point (`modules::hooks`), in order,
    /// until one consumes it.
    pub fn run_hooks(&self, at: HookPoint<'_>, stanza: &mut Stanza) -> Flow {
        for m in &self.modules {
            if m.on_stanza(&self.ctx, at, stanza) == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Tell every module a message to `account` was handed to these sessions.
    pub fn message_delivered(&self, account: &Jid, stanza: &Stanza, delivered_to: &[Jid]) {
        for m in &self.modules {
            m.on_message_delivered(&self.ctx, account, stanza, delivered_to);
        }
    }

    /// Tell every module about messages waiting for a hibernating session (XEP-0198); see
    /// [`Module::on_detached_messages`].
    pub fn detached_messages(&self, session: &Jid, messages: &[&Stanza], started: bool) {
        for m in &self.modules {
            m.on_detached_messages(&self.ctx, session, messages, started);
        }
    }

    /// Tell every module about an event, in dispatch order.
    pub fn emit(&self, event: &ModuleEvent<'_>) {
        for m in &self.modules {
            m.on_event(&self.ctx, event);
        }
    }

    fn find(&self, name: &str, ns: &str) -> Option<&dyn Module> {
        let &(_, i) = self.by_ns.get(ns)?.iter().find(|(n, _)| *n == name)?;
        self.modules.get(i).map(|m| m.as_ref())
    }
}

/// Everything the connection tasks and modules share.
pub struct ServerState {
    pub config: Arc<Config>,
    pub storage: Arc<dyn Storage>,
    pub sessions: SessionRegistry,
    /// Resumable sessions (XEP-0198), by SM-ID.
    pub sm: crate::c2s::SmSessions,
    pub modules: ModuleRegistry,
    /// Internal components (services on subdomains such as `conference.<domain>`).
    pub components: crate::components::ComponentRegistry,
    pub tls: TlsContext,
    /// Federation: outbound links, TLS and trust for peers.
    pub s2s: crate::s2s::S2s,
    pub limiter: ConnectionLimiter,
    pub auth_throttle: crate::c2s::AuthThrottle,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// HTTP File Upload, the SOCKS5 proxy and STUN/TURN (issue 6).
    pub media: crate::components::upload::Services,
}

impl ServerState {
    /// Whether an account exists (bare JID `user@domain` on a hosted domain): a key lookup,
    /// asked for every stanza to a local account. Storage is asked even when the account has
    /// bound sessions: a deleted account's sessions are closed only after the deletion.
    pub fn account_exists(&self, bare: &Jid) -> crate::storage::Result<bool> {
        self.storage.account_exists(bare.bare_text())
    }

    /// Whether `domain` is served here: a hosted domain or an internal component's domain
    /// (stanzas from the latter are generated by this server; no peer may claim them).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.config.hosts(domain) || self.components.serves(domain)
    }

    /// Queue a stanza for one bound session; dropped when it is gone.
    pub fn deliver_to_full(&self, full: &Jid, stanza: Stanza) {
        if let Some(h) = self.sessions.handle(full) {
            let _ = h.send(stanza);
        }
    }

    /// An IQ request addressed to a hosted domain or to an account's bare JID.
    pub fn handle_server_iq(self: &Arc<Self>, stanza: &Stanza, target: IqTarget) {
        let Ok(Some(from)) = stanza.from() else {
            return;
        };
        let Some(payload) = stanza.iq_payload() else {
            router::bounce(self, stanza, StanzaError::bad_request());
            return;
        };
        if stanza.el().elements().count() != 1 {
            router::bounce(self, stanza, StanzaError::bad_request());
            return;
        }
        if payload.is("query", ns::ROSTER) {
            match &target {
                IqTarget::Account(bare) if *bare == from.to_bare() => {
                    roster::handle_iq(self, &from, stanza)
                }
                // RFC 6121 §2.3.3: only the account itself may touch its roster.
                _ => router::bounce(self, stanza, StanzaError::forbidden()),
            }
            return;
        }
        let Some(module) = self.modules.find(&payload.name, &payload.ns) else {
            router::bounce(self, stanza, StanzaError::service_unavailable());
            return;
        };
        let req = IqRequest {
            stanza,
            from: from.clone(),
            target,
            payload,
            is_set: stanza.type_attr() == Some("set"),
        };
        let reply = match module.handle_iq(&self.modules.ctx, &req) {
            Ok(payload) => stanza.iq_result(payload),
            Err(e) => e.reply_to(stanza),
        };
        // The reply comes from the address the request was sent to.
        router::route(self, reply);
    }

    /// Create an account; `Ok(false)` if it exists.
    pub fn add_user(&self, jid: &Jid, password: &str) -> Result<bool, String> {
        check_new_account(&self.config, jid, password)?;
        let creds = StoredCredentials::derive(password, DEFAULT_ITERATIONS);
        self.storage
            .create_account(&jid.bare_string(), &creds)
            .map_err(|e| e.to_string())
    }
}

/// Checks shared by every way of creating an account.
pub fn check_new_account(config: &Config, jid: &Jid, password: &str) -> Result<(), String> {
    if jid.node().is_none() || jid.is_full() {
        return Err(format!("{jid} is not an account address (user@domain)"));
    }
    if !config.hosts(jid.domain()) {
        return Err(format!("{} is not a hosted domain", jid.domain()));
    }
    if password.is_empty() || password.len() > 1023 {
        return Err("the password must be 1 to 1023 bytes".into());
    }
    Ok(())
}

/// The [`ServerApi`] modules see: a weak reference, so modules do not keep the state alive.
struct ModuleServerApi(Weak<ServerState>);

impl ServerApi for ModuleServerApi {
    fn route(&self, stanza: Stanza) {
        if let Some(state) = self.0.upgrade() {
            router::route(&state, stanza);
        }
    }

    fn sessions_of(&self, bare: &Jid) -> Vec<Jid> {
        self.0
            .upgrade()
            .map(|s| {
                s.sessions
                    .resources(bare)
                    .into_iter()
                    .map(|r| r.handle.jid)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn available_resources(&self, bare: &Jid) -> Vec<(Jid, crate::xml::Element)> {
        let Some(state) = self.0.upgrade() else {
            return Vec::new();
        };
        state
            .sessions
            .resources(bare)
            .into_iter()
            .filter_map(|r| r.presence.map(|p| (r.handle.jid, p)))
            .collect()
    }

    fn emit(&self, event: &ModuleEvent<'_>) {
        if let Some(state) = self.0.upgrade() {
            state.modules.emit(event);
        }
    }

    /// The module's IQ result is routed after this returns, so the close is queued a moment
    /// later: the client then reads the result before the stream error.
    fn close_account_sessions(&self, bare: &Jid) {
        let Some(state) = self.0.upgrade() else {
            return;
        };
        state
            .modules
            .emit(&ModuleEvent::AccountDeleted { account: bare });
        let handles: Vec<_> = state
            .sessions
            .resources(bare)
            .into_iter()
            .map(|r| r.handle)
            .collect();
        state.tasks.spawn(async move {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            for h in handles {
                h.close(StreamError::NotAuthorized, Some("the account was deleted"));
            }
        });
    }

    fn send_to_session(&self, full: &Jid, stanza: Stanza) -> bool {
        let Some(state) = self.0.upgrade() else {
            return false;
        };
        match state.sessions.handle(full) {
            Some(h) => h.send(stanza).is_ok(),
            None => false,
        }
    }

    fn session_flags(&self, bare: &Jid) -> Vec<(Jid, crate::session::SessionFlags)> {
        self.0
            .upgrade()
            .map(|s| s.sessions.flags(bare))
            .unwrap_or_default()
    }

    fn carbons_targets(&self, bare: &Jid, exclude: &[Jid]) -> Vec<Jid> {
        self.0
            .upgrade()
            .map(|s| s.sessions.carbons_targets(bare, exclude))
            .unwrap_or_default()
    }

    fn update_session_flags(
        &self,
        full: &Jid,
        f: &mut dyn FnMut(&mut crate::session::SessionFlags),
    ) -> bool {
        self.0
            .upgrade()
            .and_then(|s| s.sessions.update(full, |r| f(&mut r.flags)))
            .is_some()
    }

    fn available_presences(&self, bare: &Jid) -> Vec<crate::xml::Element> {
        self.0
            .upgrade()
            .map(|s| {
                s.sessions
                    .resources(bare)
                    .into_iter()
                    .filter_map(|r| r.presence)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The server secret (32 random bytes in `<data_dir>/server.secret`, mode 0600), created on
/// first start. SCRAM derives the fake salts of unknown users from it, so that they stay the
/// same across restarts and a prober cannot tell which accounts exist.
fn load_server_secret(data_dir: &Path) -> Result<(), StartError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("server.secret");
    let secret: [u8; 32] = match std::fs::read(&path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| StartError(format!("{} is damaged (not 32 bytes)", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| StartError(format!("{}: {e}", path.display())))?;
            f.write_all(&secret)
                .and_then(|_| f.sync_all())
                .map_err(|e| StartError(format!("{}: {e}", path.display())))?;
            secret
        }
        Err(e) => return Err(StartError(format!("{}: {e}", path.display()))),
    };
    crate::auth::set_unknown_user_secret(secret);
    Ok(())
}

/// Open the configured storage (sled under `data_dir/db`).
pub fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, StartError> {
    let dir = config.server.data_dir.join("db");
    let store =
        SledStore::open(&dir).map_err(|e| StartError(format!("opening {}: {e}", dir.display())))?;
    Ok(Arc::new(store))
}

/// A started server.
pub struct RunningServer {
    state: Arc<ServerState>,
    starttls_addrs: Vec<SocketAddr>,
    direct_tls_addrs: Vec<SocketAddr>,
    data_dir: PathBuf,
}

impl RunningServer {
    /// Start with the sled store in the configured data folder.
    pub async fn start(config: Config) -> Result<RunningServer, StartError> {
        std::fs::create_dir_all(&config.server.data_dir).map_err(|e| {
            StartError(format!(
                "creating the data folder {}: {e}",
                config.server.data_dir.display()
            ))
        })?;
        load_server_secret(&config.server.data_dir)?;
        let storage = open_storage(&config)?;
        Self::start_with_storage(config, storage).await
    }

    /// Start with a given storage backend.
    pub async fn start_with_storage(
        config: Config,
        storage: Arc<dyn Storage>,
    ) -> Result<RunningServer, StartError> {
        let config = Arc::new(config);
        let tls = TlsContext::load(&config).map_err(|e| StartError(e.to_string()))?;
        let starttls = bind_listeners(&config.c2s.starttls).await?;
        let direct = bind_listeners(&config.c2s.direct_tls).await?;
        let s2s = crate::s2s::S2s::new(&config, &tls)
            .await
            .map_err(StartError)?;
        let limiter = ConnectionLimiter::new(
            config.limits.max_c2s_connections,
            config.limits.max_connections_per_ip,
        );
        let media = crate::components::upload::Services::start(&config, &tls)
            .await
            .map_err(StartError)?;
        let mut modules = crate::modules::register_all(&config);
        modules.push(media.extdisco_module());
        let state = Arc::new_cyclic(|weak: &Weak<ServerState>| {
            let api: Arc<dyn ServerApi> = Arc::new(ModuleServerApi(weak.clone()));
            ServerState {
                modules: ModuleRegistry::new(modules, config.clone(), storage.clone(), api),
                components: crate::components::ComponentRegistry::build(&config, &storage),
                config: config.clone(),
                storage,
                sessions: SessionRegistry::default(),
                sm: Default::default(),
                tls,
                s2s,
                limiter,
                auth_throttle: crate::c2s::AuthThrottle::default(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                media,
            }
        });
        state.media.spawn(&state);
        let addrs = |ls: &[TcpListener]| -> Vec<SocketAddr> {
            ls.iter().filter_map(|l| l.local_addr().ok()).collect()
        };
        let starttls_addrs = addrs(&starttls);
        let direct_tls_addrs = addrs(&direct);
        for l in starttls {
            state.tasks.spawn(accept_loop(state.clone(), l, false));
        }
        for l in direct {
            state.tasks.spawn(accept_loop(state.clone(), l, true));
        }
        crate::s2s::spawn(&state);
        crate::admin::spawn_socket(&state).map_err(|e| StartError(format!("admin socket: {e}")))?;
        tracing::info!(
            domains = ?config.server.domains,
            starttls = ?starttls_addrs,
            direct_tls = ?direct_tls_addrs,
            "Oriole is running"
        );
        Ok(RunningServer {
            data_dir: config.server.data_dir.clone(),
            state,
            starttls_addrs,
            direct_tls_addrs,
        })
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// First STARTTLS listener address (tests bind port 0).
    pub fn starttls_addr(&self) -> SocketAddr {
        self.starttls_addrs[0]
    }

    /// First Direct TLS listener address.
    pub fn direct_tls_addr(&self) -> SocketAddr {
        self.direct_tls_addrs[0]
    }

    pub fn starttls_addrs(&self) -> &[SocketAddr] {
        &self.starttls_addrs
    }

    pub fn direct_tls_addrs(&self) -> &[SocketAddr] {
        &self.direct_tls_addrs
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Create an account.
    pub async fn add_user(&self, jid: &str, password: &str) -> Result<(), String> {
        let jid = Jid::parse(jid).map_err(|e| e.to_string())?;
        let state = self.state.clone();
        let password = password.to_string();
        let created = tokio::task::spawn_blocking(move || state.add_user(&jid, &password))
            .await
            .map_err(|e| e.to_string())??;
        if created {
            Ok(())
        } else {
            Err("the account exists already".into())
        }
    }

    /// Wait until SIGTERM/SIGINT or until the server is shut down otherwise.
    pub async fn wait(&self) {
        self.state.shutdown.cancelled().await;
    }

    /// Close every stream with `<system-shutdown/>`, wait for the connection tasks (up to
    /// five seconds), and flush storage.
    pub async fn shutdown(self) {
        let state = self.state;
        for c in state.components.all() {
            c.shutdown(&state);
        }
        // Cancelled before the bound sessions are listed: a session bound after the list was
        // taken sees the cancellation when its loop starts (it does not watch the token while
        // it waits; the close request in its queue wakes it).
        state.shutdown.cancel();
        for h in state.sessions.all_handles() {
            h.close(StreamError::SystemShutdown, None);
        }
        state.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 5 s");
        }
        let storage = state.storage.clone();
        match tokio::task::spawn_blocking(move || storage.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "flushing storage at shutdown failed"),
            Err(e) => tracing::error!(error = %e, "flush task failed"),
        }
        crate::admin::remove_socket(&state.config);
        tracing::info!("Oriole stopped");
    }
}

/// Bind every address. A machine without IPv6 cannot bind `[::]`: that address is then
/// skipped with a warning as long as another one of the list was bound.
async fn bind_listeners(addrs: &[String]) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::new();
    let mut skipped = Vec::new();
    for addr in addrs {
        match crate::transport::listener::bind_all(std::slice::from_ref(addr)).await {
            Ok(mut l) => listeners.append(&mut l),
            Err(e) => {
                let unspecified_v6 = addr
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| a.is_ipv6() && a.ip().is_unspecified());
                if unspecified_v6 && addrs.len() > 1 {
                    skipped.push((addr.clone(), e));
                } else {
                    return Err(StartError(e.to_string()));
                }
            }
        }
    }
    if listeners.is_empty() && !addrs.is_empty() {
        return Err(StartError(format!("could not bind any of {addrs:?}")));
    }
    for (addr, e) in skipped {
        tracing::warn!(%addr, error = %e, "IPv6 address not available; skipped");
    }
    Ok(listeners)
}

async fn accept_loop(state: Arc<ServerState>, listener: TcpListener, direct_tls: bool) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = state.shutdown.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE and friends: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some(permit) = state.limiter.try_acquire(peer.ip()) else {
            tracing::warn!(%peer, "connection limit reached; refused");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // A peer that vanished without a FIN (a phone that lost its network) is detected by
        // TCP keepalive after about ten minutes instead of holding its session forever.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(300))
            .with_interval(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        state.tasks.spawn(crate::c2s::serve(
            state.clone(),
            tcp,
            peer,
            direct_tls,
            permit,
        ));
    }
}
