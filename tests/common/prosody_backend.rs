//! A reference backend for the fixture: with `ORIOLE_TEST_REFERENCE=prosody` every
//! `TestServer` is a private Prosody (Debian's `prosody` package) instead of Oriole, so that
//! the tests themselves can be checked against software nobody here wrote. Prosody 0.12 lacks
//! some of what the tests ask for (SCRAM-SHA-512, -PLUS on TLS 1.3, ALPN, `<restricted-xml/>`,
//! ...), so some tests fail there by design; `tests/README.md` lists them.
//!
//! Runs as the `prosody` user on `127.0.0.1` ports chosen by the system, with its own config,
//! data folder and certificate inside the test's data folder; stopped by its PID on drop.

use super::Options;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn wanted() -> bool {
    std::env::var("ORIOLE_TEST_REFERENCE").as_deref() == Ok("prosody")
}

pub struct ProsodyServer {
    dir: PathBuf,
    cfg: PathBuf,
    child: Option<Child>,
    starttls: SocketAddr,
    direct_tls: SocketAddr,
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

impl ProsodyServer {
    pub async fn start(dir: &Path, opts: &Options) -> ProsodyServer {
        let starttls = free_port();
        let direct_tls = free_port();
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::create_dir_all(dir.join("prosody-data")).unwrap();
        if !dir.join("tls/cert.pem").exists() {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            std::fs::write(dir.join("tls/cert.pem"), ck.cert.pem()).unwrap();
            std::fs::write(dir.join("tls/key.pem"), ck.signing_key.serialize_pem()).unwrap();
        }
        let d = dir.display();
        let register = if opts.registration {
            "\"register\";"
        } else {
            ""
        };
        let cfg = format!(
            "modules_enabled = {{ \"roster\"; \"saslauth\"; \"tls\"; \"disco\"; \"ping\"; \
             \"version\"; \"time\"; \"vcard\"; \"private\"; \"offline\"; {register} }}\n\
             modules_disabled = {{ \"s2s\" }}\n\
             allow_registration = {}\n\
             interfaces = {{ \"127.0.0.1\" }}\n\
             c2s_ports = {{ {} }}\n\
             c2s_direct_tls_ports = {{ {} }}\n\
             s2s_ports = {{ }}\nhttp_ports = {{ }}\nhttps_ports = {{ }}\n\
             data_path = \"{d}/prosody-data\"\n\
             pidfile = \"{d}/prosody.pid\"\n\
             c2s_require_encryption = true\n\
             authentication = \"internal_plain\"\n\
             c2s_stanza_size_limit = {}\n\
             log = {{ info = \"{d}/prosody.log\" }}\n\
             daemonize = false\n\
             ssl = {{ key = \"{d}/tls/key.pem\"; certificate = \"{d}/tls/cert.pem\" }}\n\
             c2s_direct_tls_ssl = {{ key = \"{d}/tls/key.pem\"; certificate = \"{d}/tls/cert.pem\" }}\n\
             VirtualHost \"localhost\"\n",
            opts.registration,
            starttls.port(),
            direct_tls.port(),
            opts.max_stanza_size.unwrap_or(256 * 1024)
        );
        let cfg_path = dir.join("prosody.cfg.lua");
        std::fs::write(&cfg_path, cfg).unwrap();
        let ok = Command::new("chown")
            .args(["-R", "prosody:prosody"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "chown to the prosody user (is Debian's prosody installed?)"
        );
        let child = Command::new("setpriv")
            .args(["--reuid=prosody", "--regid=prosody", "--init-groups", "--"])
            .args(["prosody", "--config"])
            .arg(&cfg_path)
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prosody");
        let server = ProsodyServer {
            dir: dir.to_path_buf(),
            cfg: cfg_path,
            child: Some(child),
            starttls,
            direct_tls,
        };
        for _ in 0..200 {
            let a = tokio::net::TcpStream::connect(starttls).await.is_ok();
            let b = tokio::net::TcpStream::connect(direct_tls).await.is_ok();
            if a && b {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("prosody did not listen; see {}/prosody.log", dir.display());
    }

    pub fn starttls_addr(&self) -> SocketAddr {
        self.starttls
    }

    pub fn direct_tls_addr(&self) -> SocketAddr {
        self.direct_tls
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn add_user(&self, jid: &str, password: &str) -> Result<(), String> {
        let (user, domain) = jid.split_once('@').ok_or("not a bare JID")?;
        let status = Command::new("runuser")
            .args(["-u", "prosody", "--", "prosodyctl", "--config"])
            .arg(&self.cfg)
            .args(["register", user, domain, password])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("prosodyctl register: {status}"))
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for ProsodyServer {
    fn drop(&mut self) {
        self.stop();
    }
}
