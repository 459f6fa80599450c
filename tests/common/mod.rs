//! Fixture for the integration tests: an Oriole server on loopback ports chosen by the system,
//! with a temporary data folder, driven by the independent client in [`xmpp`].
//!
//! Server API used (from `oriole::server`): `RunningServer::start(Config)`,
//! `starttls_addr()`, `direct_tls_addr()`, `add_user(jid, password)`, `data_dir()`,
//! `shutdown()`. Every await on it is bounded by a timeout.
//!
//! With `ORIOLE_TEST_REFERENCE=prosody` the same tests run against a private Prosody instead
//! (see [`prosody_backend`]), to check the tests against a reference server.
#![allow(dead_code, unused_imports)]

pub mod prosody_backend;
pub mod xmpp;

pub use xmpp::checks;
pub use xmpp::xml::*;
pub use xmpp::*;

use oriole::config::Config;
use oriole::server::RunningServer;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hosted domain of every test server.
pub const DOMAIN: &str = "localhost";
/// Timeout of one step.
pub const W: Duration = xmpp::STEP;
/// Limit for starting, stopping and seeding the server.
const ADMIN_LIMIT: Duration = Duration::from_secs(30);

/// What a test may change in the server's configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `[limits] max_stanza_size`.
    pub max_stanza_size: Option<usize>,
    /// `[registration] allow`.
    pub registration: bool,
    /// `[c2s] sm_resume_timeout_secs` (XEP-0198).
    pub sm_resume_timeout_secs: Option<u64>,
    /// The `[upload]`, `[turn]` and `[proxy65]` sections; `None`: [`MEDIA_CONFIG`].
    pub media_config: Option<String>,
    /// `[c2s] fast_token_lifetime_secs` (XEP-0484).
    pub fast_token_lifetime_secs: Option<u64>,
    /// More TOML appended to the file (whole sections, e.g. `[push]`; Oriole only).
    pub extra_config: Option<String>,
}

/// Upload, TURN and proxy65 on loopback ports chosen by the system.
pub const MEDIA_CONFIG: &str = "\n[upload]\nhttp_listen = \"127.0.0.1:0\"\n\
     \n[turn]\nlisten = \"127.0.0.1:0\"\nhost = \"127.0.0.1\"\nrelay_private_peers = true\n\
     \n[proxy65]\nlisten = \"127.0.0.1:0\"\nhost = \"127.0.0.1\"\n";

/// The configuration file a test server runs with.
pub fn config_text(data_dir: &Path, opts: &Options) -> String {
    let mut t = format!(
        "[server]\n\
         domains = [\"{DOMAIN}\"]\n\
         data_dir = '{}'\n\
         \n\
         [c2s]\n\
         starttls = [\"127.0.0.1:0\"]\n\
         direct_tls = [\"127.0.0.1:0\"]\n\
         {}\
         \n\
         [log]\n\
         level = \"warn\"\n",
        data_dir.display(),
        opts.sm_resume_timeout_secs
            .map(|t| format!("sm_resume_timeout_secs = {t}\n"))
            .unwrap_or_default()
            + &opts
                .fast_token_lifetime_secs
                .map(|t| format!("fast_token_lifetime_secs = {t}\n"))
                .unwrap_or_default()
    );
    if let Some(n) = opts.max_stanza_size {
        t.push_str(&format!("\n[limits]\nmax_stanza_size = {n}\n"));
    }
    if opts.registration {
        t.push_str("\n[registration]\nallow = true\n");
    }
    t.push_str(opts.media_config.as_deref().unwrap_or(MEDIA_CONFIG));
    if let Some(extra) = &opts.extra_config {
        t.push('\n');
        t.push_str(extra);
    }
    t
}

async fn limited<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(ADMIN_LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {ADMIN_LIMIT:?}"))
}

/// Log server traces to the test output when `ORIOLE_TEST_LOG` is set (e.g. `oriole=debug`).
fn init_logging() {
    if let Ok(filter) = std::env::var("ORIOLE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// What runs behind a [`TestServer`].
enum Backend {
    Oriole(RunningServer),
    Prosody(prosody_backend::ProsodyServer),
}

/// A running server and its data folder (removed when this is dropped).
pub struct TestServer {
    server: Option<Backend>,
    dir: tempfile::TempDir,
    opts: Options,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary folder");
        Self::start_in(dir, opts).await
    }

    async fn start_in(dir: tempfile::TempDir, opts: Options) -> TestServer {
        init_logging();
        let backend = if prosody_backend::wanted() {
            Backend::Prosody(
                limited(
                    "prosody start",
                    prosody_backend::ProsodyServer::start(dir.path(), &opts),
                )
                .await,
            )
        } else {
            let config =
                Config::parse(&config_text(dir.path(), &opts), "test config").expect("test config");
            Backend::Oriole(
                limited("server start", RunningServer::start(config))
                    .await
                    .expect("the server starts"),
            )
        };
        TestServer {
            server: Some(backend),
            dir,
            opts,
        }
    }

    fn backend(&self) -> &Backend {
        self.server.as_ref().expect("server running")
    }

    /// The Oriole server (panics on the reference backend).
    pub fn server(&self) -> &RunningServer {
        match self.backend() {
            Backend::Oriole(s) => s,
            Backend::Prosody(_) => panic!("not an Oriole server"),
        }
    }

    /// Stop the server (streams closed, storage flushed); the data folder is kept.
    pub async fn shutdown(&mut self) {
        match self.server.take() {
            Some(Backend::Oriole(server)) => {
                // A block moves the server into a temporary, which suits `shutdown(self)`,
                // `shutdown(&self)` and `shutdown(&mut self)` alike.
                limited("server shutdown", { server }.shutdown()).await;
            }
            Some(Backend::Prosody(mut p)) => p.stop(),
            None => {}
        }
    }

    /// Shut down and start again on the same data folder (new ports).
    pub async fn restart(mut self) -> TestServer {
        self.shutdown().await;
        let TestServer { dir, opts, .. } = self;
        Self::start_in(dir, opts).await
    }

    pub fn starttls_addr(&self) -> SocketAddr {
        match self.backend() {
            Backend::Oriole(s) => s.starttls_addr(),
            Backend::Prosody(p) => p.starttls_addr(),
        }
    }

    pub fn direct_tls_addr(&self) -> SocketAddr {
        match self.backend() {
            Backend::Oriole(s) => s.direct_tls_addr(),
            Backend::Prosody(p) => p.direct_tls_addr(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        match self.backend() {
            Backend::Oriole(s) => s.data_dir().to_path_buf(),
            Backend::Prosody(p) => p.data_dir().to_path_buf(),
        }
    }

    /// Create `user@localhost`.
    pub async fn add_user(&self, user: &str, password: &str) {
        let jid = format!("{user}@{DOMAIN}");
        match self.backend() {
            Backend::Oriole(s) => {
                limited("add_user", s.add_user(&jid, password))
                    .await
                    .unwrap_or_else(|e| panic!("add_user {jid}: {e:?}"));
            }
            Backend::Prosody(p) => {
                p.add_user(&jid, password)
                    .unwrap_or_else(|e| panic!("add_user {jid}: {e}"));
            }
        }
    }

    /// Create several users, each with the password `<user>pw`.
    pub async fn add_users(&self, users: &[&str]) {
        for u in users {
            self.add_user(u, &format!("{u}pw")).await;
        }
    }

    /// How the client trusts the server: pinned to the generated `<data_dir>/tls/cert.pem`
    /// when it exists, otherwise any certificate.
    pub fn trust(&self) -> Trust {
        let pem = self.data_dir().join("tls").join("cert.pem");
        if pem.exists() {
            Trust::pin_pem_file(&pem).expect("readable certificate")
        } else {
            Trust::Any
        }
    }

    /// A plain TCP connection to the STARTTLS port; nothing sent yet.
    pub async fn tcp(&self) -> Client {
        Client::tcp(self.starttls_addr(), DOMAIN, self.trust())
            .await
            .expect("TCP connect")
    }

    /// A raw TCP connection to the STARTTLS port.
    pub async fn raw(&self) -> RawConn {
        RawConn::tcp(self.starttls_addr())
            .await
            .expect("TCP connect")
    }

    /// A stream with TLS negotiated (STARTTLS) and the encrypted stream's features read.
    pub async fn connect(&self) -> Client {
        Client::connect(
            self.starttls_addr(),
            DOMAIN,
            self.trust(),
            Security::StartTls,
        )
        .await
        .expect("STARTTLS")
    }

    /// Log in over STARTTLS with the best SCRAM and bind `resource`.
    pub async fn login(&self, user: &str, password: &str, resource: &str) -> Client {
        Client::login(
            self.starttls_addr(),
            DOMAIN,
            self.trust(),
            Security::StartTls,
            user,
            password,
            Some(resource),
        )
        .await
        .unwrap_or_else(|e| panic!("login {user}/{resource}: {e}"))
    }

    /// Log in with the password `<user>pw`, request the roster (an interested resource),
    /// send available presence with `priority` and wait until the server processed it.
    pub async fn online(&self, user: &str, resource: &str, priority: i32) -> Client {
        let mut c = self.login(user, &format!("{user}pw"), resource).await;
        c.roster_get().await.expect("roster get");
        c.available(priority).await.expect("presence");
        c.ping_server().await.expect("ping barrier");
        c
    }
}

/// `user@localhost`.
pub fn bare(user: &str) -> String {
    format!("{user}@{DOMAIN}")
}

/// `user@localhost/resource`.
pub fn full(user: &str, resource: &str) -> String {
    format!("{user}@{DOMAIN}/{resource}")
}

/// The message with this id (awaited, others kept for later).
pub async fn expect_message(c: &mut Client, id: &str) -> Element {
    let id_owned = id.to_string();
    c.recv_matching(W, &format!("message {id}"), move |e| {
        e.name == "message" && e.attr("id") == Some(id_owned.as_str())
    })
    .await
    .unwrap_or_else(|e| panic!("message {id}: {e}"))
}

/// Send a chat message with this id and body.
pub async fn send_chat(c: &mut Client, to: &str, id: &str, body: &str) {
    c.send(&format!(
        "<message to='{}' type='chat' id='{id}'><body>{}</body></message>",
        escape(to),
        escape(body)
    ))
    .await
    .expect("send message");
}

/// Everything `c` receives before the message with id `marker` arrives.
pub async fn received_before(c: &mut Client, marker: &str) -> Vec<Element> {
    let m = marker.to_string();
    c.collect_until(W, move |e| e.attr("id") == Some(m.as_str()))
        .await
        .unwrap_or_else(|e| panic!("marker {marker}: {e}"))
        .0
}

/// Whether any of `stanzas` has this id.
pub fn has_id(stanzas: &[Element], id: &str) -> bool {
    stanzas.iter().any(|e| e.attr("id") == Some(id))
}
