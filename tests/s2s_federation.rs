//! Federation between two Oriole servers in this process, on loopback, finding each other
//! through a DNS server the test runs (SRV and A records on a UDP port of its own).
//!
//! Certificates come from a test CA made here, with the serverAuth usage only (as Let's
//! Encrypt issues them since February 2026). With the CA in `s2s.ca_file` the servers
//! authenticate each other with SASL EXTERNAL; without it, with dialback.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::checks::{expect_presence, subscribe_both_ways};
use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use oriole::config::Config;
use oriole::server::RunningServer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

// ---------------------------------------------------------------------------------------
// A small authoritative DNS server for the test's names.

#[derive(Default)]
struct Zone {
    /// name -> (priority, weight, port, target)
    srv: HashMap<String, Vec<(u16, u16, u16, String)>>,
    a: HashMap<String, Ipv4Addr>,
}

struct Dns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    async fn start() -> Dns {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS");
        let addr = sock.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let z = zone.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let resp = answer(&req, &z.lock().unwrap());
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, from).await;
                }
            }
        });
        Dns { addr, zone, task }
    }

    /// `_xmpp-server._tcp.domain` -> host:port, and host -> 127.0.0.1.
    fn publish(&self, domain: &str, port: u16) {
        let host = format!("xmpp.{domain}");
        let mut z = self.zone.lock().unwrap();
        z.srv.insert(
            format!("_xmpp-server._tcp.{domain}"),
            vec![(10, 5, port, host.clone())],
        );
        z.a.insert(host, Ipv4Addr::LOCALHOST);
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(req: &Message, zone: &Zone) -> Message {
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    let Some(q) = req.queries.first() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    };
    resp.add_query(q.clone());
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let known = zone.srv.contains_key(&name) || zone.a.contains_key(&name);
    match q.query_type() {
        RecordType::SRV => {
            for (p, w, port, target) in zone.srv.get(&name).into_iter().flatten() {
                let t = Name::from_ascii(format!("{target}.")).unwrap();
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::SRV(SRV::new(*p, *w, *port, t)),
                ));
            }
        }
        RecordType::A => {
            if let Some(ip) = zone.a.get(&name) {
                resp.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A(*ip))));
            }
        }
        _ => {}
    }
    if !known {
        resp.metadata.response_code = ResponseCode::NXDomain;
    }
    resp
}

// ---------------------------------------------------------------------------------------
// A test CA and servers.

struct Ca {
    dir: PathBuf,
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Oriole federation test CA");
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Ca {
            dir: dir.to_path_buf(),
            cert,
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A serverAuth-only certificate for `domain`: (cert file, key file).
    fn issue(&self, domain: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let cf = self.dir.join(format!("{domain}.crt"));
        let kf = self.dir.join(format!("{domain}.key"));
        std::fs::write(&cf, format!("{}{}", cert.pem(), self.cert.pem())).unwrap();
        std::fs::write(&kf, key.serialize_pem()).unwrap();
        (cf, kf)
    }
}

struct Node {
    domain: String,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(domain: &str, dns: &Dns, ca: &Ca, trust_ca: bool, extra: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.issue(domain);
        let ca_line = if trust_ca {
            format!("ca_file = '{}'\n", ca.ca_file().display())
        } else {
            String::new()
        };
        let text = format!(
            "[server]\ndomains = [\"{domain}\"]\ndata_dir = '{}'\n\n\
             [c2s]\nstarttls = [\"127.0.0.1:0\"]\ndirect_tls = [\"127.0.0.1:0\"]\n\n\
             [s2s]\nlisten = [\"127.0.0.1:0\"]\nnameservers = [\"{}\"]\n{ca_line}{extra}\n\
             [[tls.certificate]]\ncert = '{}'\nkey = '{}'\n\n[log]\nlevel = \"warn\"\n{}",
            dir.path().display(),
            dns.addr,
            cert.display(),
            key.display(),
            common::MEDIA_CONFIG
        );
        let config = Config::parse(&text, "test").expect("config");
        let server = tokio::time::timeout(Duration::from_secs(30), RunningServer::start(config))
            .await
            .expect("start in time")
            .expect("server starts");
        let port = server.state().s2s.listen_addrs()[0].port();
        dns.publish(domain, port);
        Node {
            domain: domain.to_string(),
            server: Some(server),
            _dir: dir,
        }
    }

    fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    fn s2s_addr(&self) -> SocketAddr {
        self.server().state().s2s.listen_addrs()[0]
    }

    async fn user(&self, name: &str) -> Client {
        let jid = format!("{name}@{}", self.domain);
        self.server().add_user(&jid, "pw").await.unwrap();
        let mut c = Client::login(
            self.server().starttls_addr(),
            &self.domain,
            Trust::Any,
            Security::StartTls,
            name,
            "pw",
            Some("r"),
        )
        .await
        .unwrap_or_else(|e| panic!("login {jid}: {e}"));
        c.roster_get().await.unwrap();
        c.available(0).await.unwrap();
        c.ping_server().await.unwrap();
        c
    }

    fn methods(&self) -> Vec<(bool, String, &'static str)> {
        self.server()
            .state()
            .s2s
            .link_log()
            .into_iter()
            .map(|a| (a.inbound, a.remote, a.method))
            .collect()
    }

    async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(20), s.shutdown())
                .await
                .expect("shutdown in time");
        }
    }
}

/// Bound on a whole federation test: two servers, DNS, TLS and dialback round trips.
async fn within<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(150), body)
        .await
        .expect("the test did not finish within 150 s")
}

const ALPHA: &str = "alpha.example";
const BETA: &str = "beta.example";

/// Chat both ways, presence subscriptions both ways, a presence update, and 30 messages
/// sent before the link existed arriving in order.
async fn federate(trust_ca: bool, method: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let dns = Dns::start().await;
    let mut alpha = Node::start(ALPHA, &dns, &ca, trust_ca, "").await;
    let mut beta = Node::start(BETA, &dns, &ca, trust_ca, "").await;
    let mut a = alpha.user("anna").await;
    let mut b = beta.user("bob").await;
    let a_bare = format!("anna@{ALPHA}");
    let b_bare = format!("bob@{BETA}");

    // Queued while the link is set up, delivered in order.
    for i in 0..30 {
        send_chat(&mut a, &b_bare, &format!("q{i}"), &format!("queued {i}")).await;
    }
    for i in 0..30 {
        let m = b
            .recv_matching(Duration::from_secs(30), "queued message", |e| {
                e.name == "message"
            })
            .await
            .unwrap();
        assert_eq!(m.attr("id"), Some(format!("q{i}").as_str()), "order");
        assert_eq!(m.attr("from"), Some(format!("{a_bare}/r").as_str()));
    }

    // Subscriptions both ways across servers, with presence.
    subscribe_both_ways(&mut a, &mut b).await;

    // Chat both ways.
    send_chat(&mut b, &a_bare, "m1", "hello anna").await;
    let m = expect_message(&mut a, "m1").await;
    assert_eq!(
        m.child_text("body", NS_CLIENT).as_deref(),
        Some("hello anna")
    );
    send_chat(&mut a, &format!("{b_bare}/r"), "m2", "hello bob").await;
    let m = expect_message(&mut b, "m2").await;
    assert_eq!(
        m.child_text("body", NS_CLIENT).as_deref(),
        Some("hello bob")
    );

    // A presence change reaches the contact on the other server.
    a.send("<presence><show>away</show></presence>")
        .await
        .unwrap();
    let p = expect_presence(&mut b, &format!("{a_bare}/r"), None).await;
    assert_eq!(p.child_text("show", NS_CLIENT).as_deref(), Some("away"));

    // XEP-0191 across servers: once anna blocks bob, he gets her unavailable presence and
    // then none of her broadcasts; unblocked, her presence flows again.
    a.send(&format!(
        "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='{b_bare}'/></block></iq>"
    ))
    .await
    .unwrap();
    let p = expect_presence(&mut b, &format!("{a_bare}/r"), Some("unavailable")).await;
    assert_eq!(p.attr("type"), Some("unavailable"));
    a.send("<presence><show>dnd</show></presence>")
        .await
        .unwrap();
    // Anna's server has handled the presence once it answers her ping; bob's message then
    // bounces (blocked) over the same alpha -> beta link, behind anything that leaked.
    a.ping_server().await.unwrap();
    send_chat(&mut b, &a_bare, "after-block", "are you there?").await;
    let before = received_before(&mut b, "after-block").await;
    assert!(
        !before
            .iter()
            .any(|e| e.name == "presence" && e.attr("from") == Some(format!("{a_bare}/r").as_str())),
        "no presence from anna while bob is blocked: {before:?}"
    );
    a.send(&format!(
        "<iq type='set' id='unblk'><unblock xmlns='urn:xmpp:blocking'><item jid='{b_bare}'/></unblock></iq>"
    ))
    .await
    .unwrap();
    let p = expect_presence(&mut b, &format!("{a_bare}/r"), None).await;
    assert_eq!(p.child_text("show", NS_CLIENT).as_deref(), Some("dnd"));

    // Which authentication ran, both ways.
    for (node, remote) in [(&alpha, BETA), (&beta, ALPHA)] {
        let m = node.methods();
        assert!(
            m.contains(&(false, remote.to_string(), method)),
            "{}: outbound to {remote} by {method}: {m:?}",
            node.domain
        );
        assert!(
            m.contains(&(true, remote.to_string(), method)),
            "{}: inbound from {remote} by {method}: {m:?}",
            node.domain
        );
        assert!(
            m.iter().all(|(_, _, mm)| *mm == method),
            "only {method} expected: {m:?}"
        );
    }
    // One outbound link each way, reused by everything above.
    assert_eq!(alpha.server().state().s2s.link_count(), 1);
    assert_eq!(beta.server().state().s2s.link_count(), 1);
    alpha.stop().await;
    beta.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_presence_over_sasl_external() {
    within(federate(true, "SASL EXTERNAL")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_presence_over_dialback() {
    within(federate(false, "dialback")).await;
}

// ---------------------------------------------------------------------------------------
// A hand-driven peer for the refusal tests.

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Peer {
    io: Box<dyn Stream>,
    seen: String,
}

impl Peer {
    async fn send(&mut self, s: &str) {
        self.io.write_all(s.as_bytes()).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// Read until `pat` appears in what arrived since the last call; returns that text.
    async fn until(&mut self, pat: &str) -> String {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = self.seen.find(pat) {
                let out = self.seen[..i + pat.len()].to_string();
                self.seen.drain(..i + pat.len());
                return out;
            }
            let n = tokio::time::timeout_at(deadline, self.io.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("waiting for {pat:?}; got {:?}", self.seen))
                .unwrap_or(0);
            if n == 0 {
                panic!("closed while waiting for {pat:?}; got {:?}", self.seen);
            }
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    fn header(from: &str, to: &str) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
             xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
             from='{from}' to='{to}' version='1.0'>"
        )
    }

    /// Connect, STARTTLS (presenting `client_cert` if given), restart; features read.
    async fn connect(
        addr: SocketAddr,
        from: &str,
        to: &str,
        client_cert: Option<(&Path, &Path)>,
    ) -> (Peer, String) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut p = Peer {
            io: Box::new(tcp),
            seen: String::new(),
        };
        p.send(&Self::header(from, to)).await;
        p.until("</stream:features>").await;
        p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        p.until("<proceed").await;
        p.until(">").await;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(oriole::s2s::verify::AcceptAnyServerCert));
        let cfg = match client_cert {
            Some((c, k)) => {
                use rustls_pki_types::pem::PemObject;
                let chain = rustls_pki_types::CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = rustls_pki_types::PrivateKeyDer::from_pem_file(k).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls_pki_types::ServerName::try_from(to.to_string()).unwrap(),
                p.io,
            )
            .await
            .unwrap();
        let mut p = Peer {
            io: Box::new(tls),
            seen: String::new(),
        };
        p.send(&Self::header(from, to)).await;
        let features = p.until("</stream:features>").await;
        (p, features)
    }
}

/// A peer authenticated as alpha (its real certificate, SASL EXTERNAL) may send from
/// alpha only: another `from` ends the stream with `<invalid-from/>`; and a forged
/// dialback key is refused by asking the real alpha.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_from_is_refused() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path());
        let dns = Dns::start().await;
        let mut alpha = Node::start(ALPHA, &dns, &ca, true, "").await;
        let mut beta = Node::start(BETA, &dns, &ca, true, "").await;
        let mut b = beta.user("bob").await;
        let (cert, key) = ca.issue(ALPHA);

        // Before authentication: no stanza is accepted.
        let (mut p, features) = Peer::connect(beta.s2s_addr(), ALPHA, BETA, None).await;
        assert!(!features.contains("EXTERNAL"), "no certificate, no EXTERNAL: {features}");
        assert!(features.contains("urn:xmpp:features:dialback"), "{features}");
        // A forged dialback key: beta asks alpha, which says no.
        p.send(&format!(
            "<db:result from='{ALPHA}' to='{BETA}'>{}</db:result>",
            "0".repeat(64)
        ))
        .await;
        let r = p.until("/>").await;
        assert!(r.contains("type='invalid'"), "{r}");
        p.send(&format!(
            "<message from='mallory@{ALPHA}' to='bob@{BETA}' id='x0'><body>forged</body></message>"
        ))
        .await;
        let e = p.until("</stream:error>").await;
        assert!(e.contains("<not-authorized"), "{e}");

        // With alpha's certificate: SASL EXTERNAL, then alpha may speak, nobody else.
        let (mut p, features) =
            Peer::connect(beta.s2s_addr(), ALPHA, BETA, Some((cert.as_path(), key.as_path()))).await;
        assert!(features.contains("<mechanism>EXTERNAL</mechanism>"), "{features}");
        p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
            .await;
        p.until("<success").await;
        p.seen.clear();
        p.send(&Peer::header(ALPHA, BETA)).await;
        p.until("</stream:features>").await;
        p.send(&format!(
            "<message from='anna@{ALPHA}/x' to='bob@{BETA}' id='ok1' type='chat'><body>real</body></message>"
        ))
        .await;
        let m = expect_message(&mut b, "ok1").await;
        assert_eq!(m.attr("from"), Some(format!("anna@{ALPHA}/x").as_str()));
        p.send(&format!(
            "<message from='eve@gamma.example' to='bob@{BETA}' id='bad1' type='chat'><body>spoof</body></message>"
        ))
        .await;
        let e = p.until("</stream:error>").await;
        assert!(e.contains("<invalid-from"), "{e}");
        assert!(
            !b.pending_bytes_after(Duration::from_millis(300)).await,
            "the spoofed message must not arrive"
        );

        // A certificate for another domain does not authenticate alpha.
        let (gc, gk) = ca.issue("gamma.example");
        let (mut p, features) = Peer::connect(beta.s2s_addr(), ALPHA, BETA, Some((gc.as_path(), gk.as_path()))).await;
        assert!(!features.contains("EXTERNAL"), "{features}");
        p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
            .await;
        let f = p.until("</failure>").await;
        assert!(f.contains("not-authorized"), "{f}");

        // A stanza for a domain beta does not host.
        let (mut p, _) = Peer::connect(beta.s2s_addr(), ALPHA, BETA, Some((cert.as_path(), key.as_path()))).await;
        p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
            .await;
        p.until("<success").await;
        p.send(&Peer::header(ALPHA, BETA)).await;
        p.until("</stream:features>").await;
        p.send(&format!(
            "<message from='anna@{ALPHA}' to='x@delta.example' id='d1'><body>?</body></message>"
        ))
        .await;
        let e = p.until("</stream:error>").await;
        assert!(e.contains("<host-unknown"), "{e}");
        alpha.stop().await;
        beta.stop().await;
    })
    .await;
}

/// Undeliverable stanzas bounce: a domain that does not exist, one whose server refuses
/// connections (remote-server-not-found), one whose server never answers
/// (remote-server-timeout), and a blocked domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_domains_bounce() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path());
        let dns = Dns::start().await;
        // A port with nothing listening, and a listener that never says a word.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        dns.publish("closed.example", closed_port);
        dns.publish("silent.example", silent.local_addr().unwrap().port());
        let mut held = Vec::new();
        let mut alpha = Node::start(
            ALPHA,
            &dns,
            &ca,
            true,
            "negotiation_timeout_secs = 3\n[s2s.domains.\"blocked.example\"]\nblock = true\n",
        )
        .await;
        let mut a = alpha.user("anna").await;
        let silent_task = tokio::spawn(async move {
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        for (to, condition) in [
            ("x@nowhere.example", "remote-server-not-found"),
            ("x@closed.example", "remote-server-not-found"),
            ("x@silent.example", "remote-server-timeout"),
            ("x@blocked.example", "remote-server-not-found"),
        ] {
            let id = format!("u-{to}");
            send_chat(&mut a, to, &id, "hello?").await;
            let e = a
                .recv_matching(Duration::from_secs(20), "bounce", |e| {
                    e.attr("id") == Some(id.as_str())
                })
                .await
                .unwrap();
            assert_eq!(e.attr("type"), Some("error"), "{to}: {}", e.to_xml());
            assert_eq!(
                e.error_condition().as_deref(),
                Some(condition),
                "{to}: {}",
                e.to_xml()
            );
            assert_eq!(e.attr("from"), Some(to));
        }
        // Failed links are gone; a later stanza tries again (and bounces again).
        assert_eq!(alpha.server().state().s2s.link_count(), 0);
        send_chat(&mut a, "y@nowhere.example", "again", "?").await;
        let e = expect_message(&mut a, "again").await;
        assert_eq!(
            e.error_condition().as_deref(),
            Some("remote-server-not-found")
        );
        silent_task.abort();
        alpha.stop().await;
    })
    .await;
}

/// Without an s2s listener federation is off: no DNS, an immediate bounce.
#[tokio::test]
async fn federation_off_bounces_at_once() {
    within(async {
        let s = TestServer::start().await;
        s.add_users(&["anna"]).await;
        let mut a = s.online("anna", "r", 0).await;
        assert!(!s.server().state().s2s.enabled());
        send_chat(&mut a, "x@elsewhere.example", "off1", "hi").await;
        let e = expect_message(&mut a, "off1").await;
        assert_eq!(
            e.error_condition().as_deref(),
            Some("remote-server-not-found")
        );
    })
    .await;
}

/// An idle link closes after `idle_timeout_secs`, and the next stanza opens a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_links_close_and_reopen() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path());
        let dns = Dns::start().await;
        let mut alpha = Node::start(ALPHA, &dns, &ca, true, "idle_timeout_secs = 1\n").await;
        let mut beta = Node::start(BETA, &dns, &ca, true, "").await;
        let mut a = alpha.user("anna").await;
        let mut b = beta.user("bob").await;
        let b_bare = format!("bob@{BETA}");
        send_chat(&mut a, &b_bare, "i1", "first").await;
        expect_message(&mut b, "i1").await;
        assert_eq!(alpha.server().state().s2s.link_count(), 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while alpha.server().state().s2s.link_count() != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the idle link stayed open"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        send_chat(&mut a, &b_bare, "i2", "second").await;
        expect_message(&mut b, "i2").await;
        let outbound = alpha
            .methods()
            .iter()
            .filter(|(inbound, _, _)| !inbound)
            .count();
        assert_eq!(outbound, 2, "a second link was set up");
        alpha.stop().await;
        beta.stop().await;
    })
    .await;
}
