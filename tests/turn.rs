//! XEP-0215 external service discovery and the built-in TURN server: the credentials the
//! server hands out over XMPP are used for a real Allocate over UDP on loopback, then data
//! is relayed both ways (Send/Data indications and a channel). The TURN client here is
//! written from RFC 5389/5766 for this test, independently of the server's codec.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use tokio::net::UdpSocket;

const NS: &str = "urn:xmpp:extdisco:2";
const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// A STUN message being built: type, transaction id, attributes.
struct Msg {
    ty: u16,
    tx: [u8; 12],
    attrs: Vec<(u16, Vec<u8>)>,
}

impl Msg {
    fn new(ty: u16) -> Msg {
        Msg {
            ty,
            tx: rand::random(),
            attrs: Vec::new(),
        }
    }
    fn with(mut self, t: u16, v: &[u8]) -> Msg {
        self.attrs.push((t, v.to_vec()));
        self
    }
    fn bytes(&self, key: Option<&[u8]>) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in &self.attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let head = |len: usize| {
            let mut h = Vec::new();
            h.extend_from_slice(&self.ty.to_be_bytes());
            h.extend_from_slice(&(len as u16).to_be_bytes());
            h.extend_from_slice(&MAGIC);
            h.extend_from_slice(&self.tx);
            h
        };
        match key {
            None => [head(body.len()), body].concat(),
            Some(key) => {
                let mut signed = [head(body.len() + 24), body.clone()].concat();
                let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
                mac.update(&signed);
                signed.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
                signed.extend_from_slice(&mac.finalize().into_bytes());
                signed
            }
        }
    }
}

/// A parsed response: type and attributes (including MESSAGE-INTEGRITY's offset).
#[derive(Debug)]
struct Resp {
    ty: u16,
    tx: [u8; 12],
    attrs: Vec<(u16, Vec<u8>)>,
    raw: Vec<u8>,
    mi_at: Option<usize>,
}

impl Resp {
    fn parse(b: &[u8]) -> Resp {
        assert!(b.len() >= 20 && b[4..8] == MAGIC, "not STUN: {b:?}");
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        assert_eq!(b.len(), 20 + len);
        let mut attrs = Vec::new();
        let mut mi_at = None;
        let mut p = 20;
        while p < b.len() {
            let t = u16::from_be_bytes([b[p], b[p + 1]]);
            let l = u16::from_be_bytes([b[p + 2], b[p + 3]]) as usize;
            if t == 0x0008 {
                mi_at = Some(p);
            }
            attrs.push((t, b[p + 4..p + 4 + l].to_vec()));
            p += 4 + l.div_ceil(4) * 4;
        }
        Resp {
            ty: u16::from_be_bytes([b[0], b[1]]),
            tx: b[8..20].try_into().unwrap(),
            attrs,
            raw: b.to_vec(),
            mi_at,
        }
    }
    fn get(&self, t: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(a, _)| *a == t)
            .map(|(_, v)| v.as_slice())
    }
    fn error_code(&self) -> Option<u16> {
        self.get(0x0009)
            .map(|v| u16::from(v[2]) * 100 + u16::from(v[3]))
    }
    fn xor_addr(&self, t: u16) -> Option<SocketAddr> {
        let v = self.get(t)?;
        assert_eq!(v[1], 1, "IPv4 expected on loopback");
        let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
        let ip: [u8; 4] = std::array::from_fn(|i| v[4 + i] ^ MAGIC[i]);
        Some(SocketAddr::from((ip, port)))
    }
    fn integrity_ok(&self, key: &[u8]) -> bool {
        let Some(at) = self.mi_at else { return false };
        let mut head = self.raw[..at].to_vec();
        head[2..4].copy_from_slice(&((at - 20 + 24) as u16).to_be_bytes());
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        mac.update(&head);
        mac.verify_slice(&self.raw[at + 4..at + 24]).is_ok()
    }
}

fn xor_peer(addr: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4")
    };
    let mut v = vec![0, 1];
    v.extend_from_slice(&(a.port() ^ 0x2112).to_be_bytes());
    for (i, b) in a.ip().octets().iter().enumerate() {
        v.push(b ^ MAGIC[i]);
    }
    v
}

async fn exchange(sock: &UdpSocket, server: SocketAddr, bytes: &[u8], tx: &[u8; 12]) -> Resp {
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("TURN answer in time")
            .unwrap();
        let r = Resp::parse(&buf[..n]);
        if &r.tx == tx {
            return r;
        }
    }
}

async fn recv(sock: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

fn long_term_key(user: &str, realm: &str, pass: &str) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(format!("{user}:{realm}:{pass}")).to_vec()
}

struct Creds {
    host: String,
    port: u16,
    username: String,
    password: String,
}

async fn turn_credentials(c: &mut Client) -> Creds {
    let r = c
        .iq_ok("get", Some(DOMAIN), &format!("<services xmlns='{NS}'/>"))
        .await
        .expect("services");
    let services = r.child("services", NS).expect("services element");
    let stun = services
        .elements()
        .find(|s| s.attr("type") == Some("stun"))
        .expect("a STUN service");
    let turn = services
        .elements()
        .find(|s| s.attr("type") == Some("turn"))
        .expect("a TURN service");
    assert_eq!(stun.attr("host"), turn.attr("host"));
    assert_eq!(turn.attr("transport"), Some("udp"));
    let expires = turn.attr("expires").expect("expires");
    let t = time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
        .expect("XEP-0082 date-time");
    let left = t - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::hours(23) && left <= time::Duration::hours(24),
        "{left}"
    );
    let username = turn.attr("username").expect("username").to_string();
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, "alice@localhost");
    assert_eq!(expiry.parse::<i64>().unwrap(), t.unix_timestamp());
    Creds {
        host: turn.attr("host").unwrap().into(),
        port: turn.attr("port").unwrap().parse().unwrap(),
        username,
        password: turn.attr("password").expect("password").into(),
    }
}

/// A server whose built-in TURN listens on loopback with the default relay policy (upload and
/// proxy65 off), alice online, her XEP-0215 credentials and the TURN address. The server and
/// the client are returned so that they live as long as the test.
async fn default_turn_on_loopback() -> (TestServer, Client, Creds, SocketAddr) {
    let opts = Options {
        media_config: Some(
            "\n[upload]\nenable = false\n\n[proxy65]\nenable = false\n\
             \n[turn]\nlisten = \"127.0.0.1:0\"\nhost = \"127.0.0.1\"\n"
                .into(),
        ),
        ..Options::default()
    };
    let s = TestServer::start_with(opts).await;
    s.add_users(&["alice"]).await;
    let mut a = s.online("alice", "r", 0).await;
    let creds = turn_credentials(&mut a).await;
    let server: SocketAddr = format!("{}:{}", creds.host, creds.port).parse().unwrap();
    (s, a, creds, server)
}

const ALLOCATE: u16 = 0x0003;
const ALLOCATE_OK: u16 = 0x0103;
const ALLOCATE_ERR: u16 = 0x0113;

#[tokio::test]
async fn extdisco_credentials_allocate_and_relay() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        let info = a
            .iq_ok(
                "get",
                Some(DOMAIN),
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await
            .unwrap();
        assert!(info.to_xml().contains(NS), "extdisco feature advertised");
        let creds = turn_credentials(&mut a).await;
        let server_addr = s.server().state().media.turn_addr().expect("built-in TURN");
        assert_eq!(creds.host, "127.0.0.1");
        assert_eq!(creds.port, server_addr.port());
        let server: SocketAddr = format!("{}:{}", creds.host, creds.port).parse().unwrap();

        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // STUN Binding: our own address, reflected.
        let m = Msg::new(0x0001);
        let r = exchange(&sock, server, &m.bytes(None), &m.tx).await;
        assert_eq!(r.ty, 0x0101);
        assert_eq!(r.xor_addr(0x0020), Some(sock.local_addr().unwrap()));

        // Allocate without credentials: 401 with realm and nonce.
        let m = Msg::new(ALLOCATE).with(0x0019, &[17, 0, 0, 0]);
        let r = exchange(&sock, server, &m.bytes(None), &m.tx).await;
        assert_eq!((r.ty, r.error_code()), (ALLOCATE_ERR, Some(401)));
        let realm = String::from_utf8(r.get(0x0014).expect("REALM").to_vec()).unwrap();
        let nonce = r.get(0x0015).expect("NONCE").to_vec();
        assert_eq!(realm, "localhost");

        let auth = |m: Msg, user: &str| {
            m.with(0x0006, user.as_bytes())
                .with(0x0014, realm.as_bytes())
                .with(0x0015, &nonce)
        };
        // A wrong password is refused.
        let bad_key = long_term_key(&creds.username, &realm, "not-the-password");
        let m = auth(
            Msg::new(ALLOCATE).with(0x0019, &[17, 0, 0, 0]),
            &creds.username,
        );
        let r = exchange(&sock, server, &m.bytes(Some(&bad_key)), &m.tx).await;
        assert_eq!(r.error_code(), Some(401));
        // So is a user name whose expiry has passed, even with its right password.
        let stale_user = "1000:alice@localhost";
        let m = auth(Msg::new(ALLOCATE).with(0x0019, &[17, 0, 0, 0]), stale_user);
        let r = exchange(&sock, server, &m.bytes(Some(&bad_key)), &m.tx).await;
        assert_eq!(r.error_code(), Some(401));

        // The advertised credentials work.
        let key = long_term_key(&creds.username, &realm, &creds.password);
        let m = auth(
            Msg::new(ALLOCATE).with(0x0019, &[17, 0, 0, 0]),
            &creds.username,
        );
        let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
        assert_eq!(r.ty, ALLOCATE_OK, "error {:?}", r.error_code());
        assert!(
            r.integrity_ok(&key),
            "the response is signed with the same key"
        );
        let relayed = r.xor_addr(0x0016).expect("XOR-RELAYED-ADDRESS");
        assert_eq!(relayed.ip(), server.ip());
        assert_eq!(r.xor_addr(0x0020), Some(sock.local_addr().unwrap()));
        assert_eq!(
            s.server()
                .state()
                .media
                .turn
                .as_ref()
                .unwrap()
                .allocation_count(),
            1
        );
        // A second Allocate on the same 5-tuple is a mismatch.
        let m = auth(
            Msg::new(ALLOCATE).with(0x0019, &[17, 0, 0, 0]),
            &creds.username,
        );
        let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
        assert_eq!(r.error_code(), Some(437));

        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        // Before a permission, nothing from the peer reaches the client.
        peer.send_to(b"too early", relayed).await.unwrap();
        assert!(recv(&sock, Duration::from_millis(300)).await.is_none());

        let m = auth(
            Msg::new(0x0008).with(0x0012, &xor_peer(peer_addr)),
            &creds.username,
        );
        let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
        assert_eq!(r.ty, 0x0108, "CreatePermission: {:?}", r.error_code());

        // Send indication -> the peer gets the data from the relayed address.
        let m = Msg::new(0x0016)
            .with(0x0012, &xor_peer(peer_addr))
            .with(0x0013, b"hello peer");
        sock.send_to(&m.bytes(None), server).await.unwrap();
        let (data, from) = recv(&peer, Duration::from_secs(5))
            .await
            .expect("relayed to peer");
        assert_eq!((data.as_slice(), from), (&b"hello peer"[..], relayed));

        // The peer answers -> a Data indication to the client.
        peer.send_to(b"hello client", relayed).await.unwrap();
        let (data, _) = recv(&sock, Duration::from_secs(5))
            .await
            .expect("Data indication");
        let ind = Resp::parse(&data);
        assert_eq!(ind.ty, 0x0017);
        assert_eq!(ind.get(0x0013), Some(&b"hello client"[..]));
        assert_eq!(ind.xor_addr(0x0012), Some(peer_addr));

        // ChannelBind, then ChannelData both ways.
        let m = auth(
            Msg::new(0x0009)
                .with(0x000C, &[0x40, 0x01, 0, 0])
                .with(0x0012, &xor_peer(peer_addr)),
            &creds.username,
        );
        let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
        assert_eq!(r.ty, 0x0109, "ChannelBind: {:?}", r.error_code());
        let mut cd = vec![0x40, 0x01, 0, 5];
        cd.extend_from_slice(b"chan!");
        cd.extend_from_slice(&[0, 0, 0]);
        sock.send_to(&cd, server).await.unwrap();
        let (data, _) = recv(&peer, Duration::from_secs(5))
            .await
            .expect("channel to peer");
        assert_eq!(data, b"chan!");
        peer.send_to(b"back", relayed).await.unwrap();
        let (data, _) = recv(&sock, Duration::from_secs(5))
            .await
            .expect("ChannelData");
        assert_eq!(&data[..4], &[0x40, 0x01, 0, 4]);
        assert_eq!(&data[4..8], b"back");

        // Refresh with lifetime 0 ends the allocation.
        let m = auth(
            Msg::new(0x0004).with(0x000D, &0u32.to_be_bytes()),
            &creds.username,
        );
        let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
        assert_eq!(r.ty, 0x0104);
        assert_eq!(
            s.server()
                .state()
                .media
                .turn
                .as_ref()
                .unwrap()
                .allocation_count(),
            0
        );
        peer.send_to(b"gone", relayed).await.unwrap();
        assert!(recv(&sock, Duration::from_millis(300)).await.is_none());
    })
    .await
}

#[tokio::test]
async fn credentials_request_and_type_filter() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        let r = a
            .iq_ok("get", Some(DOMAIN), &format!("<services xmlns='{NS}' type='stun'/>"))
            .await
            .unwrap();
        let kinds: Vec<_> = r
            .child("services", NS)
            .unwrap()
            .elements()
            .map(|e| e.attr("type").unwrap_or("").to_string())
            .collect();
        assert_eq!(kinds, vec!["stun"]);
        let r = a
            .iq_ok(
                "get",
                Some(DOMAIN),
                &format!("<credentials xmlns='{NS}'><service host='127.0.0.1' type='turn'/></credentials>"),
            )
            .await
            .unwrap();
        let svc = r.child("credentials", NS).unwrap().child("service", NS).unwrap();
        assert!(svc.attr("username").is_some() && svc.attr("password").is_some());
        let r = a
            .iq(
                "get",
                Some(DOMAIN),
                &format!("<credentials xmlns='{NS}'><service host='elsewhere.example' type='turn'/></credentials>"),
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"));
    })
    .await
}

#[tokio::test]
async fn external_turn_server_is_advertised_with_its_secret() {
    bounded(async {
        let s = TestServer::start_with(Options {
            media_config: Some(
                "\n[upload]\nenable = false\n\n[proxy65]\nenable = false\n\
                 \n[turn]\nbuiltin = false\nhost = \"turn.example.net\"\nport = 3479\nsecret = \"s3cret\"\n"
                    .into(),
            ),
            ..Options::default()
        })
        .await;
        assert!(s.server().state().media.turn_addr().is_none(), "no built-in server");
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "r", 0).await;
        let r = a
            .iq_ok("get", Some(DOMAIN), &format!("<services xmlns='{NS}' type='turn'/>"))
            .await
            .unwrap();
        let turn = r.child("services", NS).unwrap().child("service", NS).unwrap();
        assert_eq!(turn.attr("host"), Some("turn.example.net"));
        assert_eq!(turn.attr("port"), Some("3479"));
        // What coturn with static-auth-secret = s3cret computes for this user name.
        let user = turn.attr("username").unwrap();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
        mac.update(user.as_bytes());
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(turn.attr("password"), Some(expected.as_str()));
    })
    .await
}

/// The default policy: no relaying to loopback (or any non-public address), so that the TURN
/// server is no way into this machine's own services.
#[tokio::test]
async fn relaying_to_loopback_is_refused_by_default() {
    bounded(async {
        let (_s, _a, creds, server) = default_turn_on_loopback().await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let m = Msg::new(ALLOCATE).with(0x0019, &[17, 0, 0, 0]);
        let r = exchange(&sock, server, &m.bytes(None), &m.tx).await;
        let realm = String::from_utf8(r.get(0x0014).expect("REALM").to_vec()).unwrap();
        let nonce = r.get(0x0015).expect("NONCE").to_vec();
        let key = long_term_key(&creds.username, &realm, &creds.password);
        let auth = |m: Msg| {
            m.with(0x0006, creds.username.as_bytes())
                .with(0x0014, realm.as_bytes())
                .with(0x0015, &nonce)
        };
        let m = auth(Msg::new(ALLOCATE).with(0x0019, &[17, 0, 0, 0]));
        let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
        assert_eq!(r.ty, ALLOCATE_OK, "error {:?}", r.error_code());
        let relayed = r.xor_addr(0x0016).expect("XOR-RELAYED-ADDRESS");

        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        // CreatePermission and ChannelBind to a loopback peer: 403 Forbidden.
        let m = auth(Msg::new(0x0008).with(0x0012, &xor_peer(peer_addr)));
        let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
        assert_eq!((r.ty, r.error_code()), (0x0118, Some(403)));
        let m = auth(
            Msg::new(0x0009)
                .with(0x000C, &[0x40, 0x00, 0, 0])
                .with(0x0012, &xor_peer(peer_addr)),
        );
        let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
        assert_eq!((r.ty, r.error_code()), (0x0119, Some(403)));
        // Nothing reaches the peer, and nothing from the peer reaches the client.
        let m = Msg::new(0x0016)
            .with(0x0012, &xor_peer(peer_addr))
            .with(0x0013, b"let me in");
        sock.send_to(&m.bytes(None), server).await.unwrap();
        assert!(recv(&peer, Duration::from_millis(300)).await.is_none());
        peer.send_to(b"hello", relayed).await.unwrap();
        assert!(recv(&sock, Duration::from_millis(300)).await.is_none());
    })
    .await
}

#[tokio::test]
async fn even_port_is_honoured_and_reservations_are_refused() {
    // coturn's turnutils_uclient puts EVEN-PORT (R bit clear) in about half its Allocates.
    bounded(async {
        let (_s, _a, creds, server) = default_turn_on_loopback().await;
        for _ in 0..4 {
            for (flags, reserve) in [(0x00u8, false), (0x80, true)] {
                let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let m = Msg::new(ALLOCATE).with(0x0019, &[17, 0, 0, 0]);
                let r = exchange(&sock, server, &m.bytes(None), &m.tx).await;
                let realm = r.get(0x0014).expect("REALM").to_vec();
                let nonce = r.get(0x0015).expect("NONCE").to_vec();
                let realm_s = String::from_utf8(realm.clone()).unwrap();
                let key = long_term_key(&creds.username, &realm_s, &creds.password);
                let m = Msg::new(ALLOCATE)
                    .with(0x0019, &[17, 0, 0, 0])
                    .with(0x0018, &[flags])
                    .with(0x0006, creds.username.as_bytes())
                    .with(0x0014, &realm)
                    .with(0x0015, &nonce);
                let r = exchange(&sock, server, &m.bytes(Some(&key)), &m.tx).await;
                if reserve {
                    assert_eq!((r.ty, r.error_code()), (0x0113, Some(508)));
                } else {
                    assert_eq!(r.ty, ALLOCATE_OK, "error {:?}", r.error_code());
                    let relayed = r.xor_addr(0x0016).expect("XOR-RELAYED-ADDRESS");
                    assert_eq!(relayed.port() % 2, 0, "odd relayed port {relayed}");
                }
            }
        }
    })
    .await
}
