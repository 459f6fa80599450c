//! The test client proven against a reference server (Prosody), so that the Oriole tests rest
//! on a client known to speak XMPP. Ignored by default; `tests/interop/prosody.sh` starts a
//! private Prosody on loopback and runs them:
//!
//! ```text
//! ORIOLE_TEST_PROSODY=127.0.0.1:15222 ORIOLE_TEST_PROSODY_TLS=127.0.0.1:15223 \
//!     cargo test --test prosody -- --ignored
//! ```
//!
//! Expected accounts on the domain (`ORIOLE_TEST_PROSODY_DOMAIN`, default `localhost`):
//! alice/alicepw and bob/bobpw. Prosody 0.12 offers PLAIN, SCRAM-SHA-1 and SCRAM-SHA-256 with
//! `authentication = "internal_plain"`.

#[path = "common/xmpp/mod.rs"]
pub mod xmpp;
// The connector refers to `super::xmpp`, so it is mounted under a module that has `xmpp`.
mod common {
    pub use super::xmpp;
    #[path = "../common/tokio_xmpp_connector.rs"]
    pub mod tokio_xmpp_connector;
}

use std::net::SocketAddr;
use std::time::Duration;
use xmpp::xml::*;
use xmpp::*;

struct Target {
    starttls: SocketAddr,
    direct_tls: Option<SocketAddr>,
    domain: String,
}

fn target() -> Target {
    let addr = std::env::var("ORIOLE_TEST_PROSODY")
        .expect("set ORIOLE_TEST_PROSODY=host:port (see tests/interop/prosody.sh)");
    Target {
        starttls: addr.parse().expect("ORIOLE_TEST_PROSODY is host:port"),
        direct_tls: std::env::var("ORIOLE_TEST_PROSODY_TLS")
            .ok()
            .map(|a| a.parse().expect("ORIOLE_TEST_PROSODY_TLS is host:port")),
        domain: std::env::var("ORIOLE_TEST_PROSODY_DOMAIN").unwrap_or_else(|_| "localhost".into()),
    }
}

const W: Duration = Duration::from_secs(10);

impl Target {
    async fn login(&self, user: &str, pw: &str, resource: &str) -> Client {
        Client::login(
            self.starttls,
            &self.domain,
            Trust::Any,
            Security::StartTls,
            user,
            pw,
            Some(resource),
        )
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
    }

    fn bare(&self, user: &str) -> String {
        format!("{user}@{}", self.domain)
    }
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY=host:port"]
async fn prosody_plain_features_make_starttls_mandatory() {
    bounded(async {
        let t = target();
        let mut c = Client::tcp(t.starttls, &t.domain, Trust::Any)
            .await
            .unwrap();
        let f = c.open_stream().await.unwrap();
        let h = c.header.clone().unwrap();
        assert_eq!(h.attr("version"), Some("1.0"));
        assert_eq!(h.attr("from"), Some(t.domain.as_str()));
        assert!(h.attr("id").is_some_and(|id| !id.is_empty()));
        checks::assert_starttls_mandatory(&f);
        // Auth before TLS: Prosody answers with the SASL failure <encryption-required/>.
        let r = c.authenticate(Mechanism::Plain, "alice", "alicepw").await;
        checks::assert_auth_refused_before_tls(r, &mut c).await;
    })
    .await
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY=host:port"]
async fn prosody_scram_sha1_sha256_and_plain() {
    bounded(async {
        let t = target();
        for mech in [
            Mechanism::Scram(Hash::Sha1),
            Mechanism::Scram(Hash::Sha256),
            Mechanism::Plain,
            Mechanism::BestScram,
        ] {
            let mut c = Client::connect(t.starttls, &t.domain, Trust::Any, Security::StartTls)
                .await
                .unwrap();
            assert!(c.tls.is_some());
            let f = c
                .authenticate(mech.clone(), "alice", "alicepw")
                .await
                .unwrap_or_else(|e| panic!("{mech:?}: {e}"));
            assert!(f.has_child("bind", NS_BIND), "{f}");
            let jid = c.bind(Some("scram")).await.unwrap();
            assert_eq!(jid, format!("alice@{}/scram", t.domain));
            c.ping_server().await.unwrap();
            c.close().await.unwrap();
        }
    })
    .await
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY=host:port"]
async fn prosody_wrong_password_and_unknown_mechanism() {
    bounded(async {
        let t = target();
        let mut c = Client::connect(t.starttls, &t.domain, Trust::Any, Security::StartTls)
            .await
            .unwrap();
        match c
            .authenticate(Mechanism::Scram(Hash::Sha256), "alice", "wrong")
            .await
        {
            Err(ClientError::SaslFailure { condition, .. }) => {
                assert_eq!(condition, "not-authorized")
            }
            other => panic!("{other:?}"),
        }
        c.send(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='X-NOPE'>=</auth>"
        ))
        .await
        .unwrap();
        let e = c.recv_stanza(W).await.unwrap();
        assert!(e.is("failure", NS_SASL), "{e}");
        assert!(e.has_child("invalid-mechanism", NS_SASL), "{e}");
        // The stream survives failures: a correct login still works.
        c.authenticate(Mechanism::Scram(Hash::Sha1), "alice", "alicepw")
            .await
            .unwrap();
    })
    .await
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY=host:port"]
async fn prosody_server_generated_resource_and_bind_conflict() {
    bounded(async {
        let t = target();
        let mut c = Client::connect(t.starttls, &t.domain, Trust::Any, Security::StartTls)
            .await
            .unwrap();
        c.authenticate(Mechanism::BestScram, "bob", "bobpw")
            .await
            .unwrap();
        let jid = c.bind(None).await.unwrap();
        let prefix = format!("bob@{}/", t.domain);
        assert!(
            jid.starts_with(&prefix) && jid.len() > prefix.len(),
            "{jid}"
        );

        let mut old = t.login("bob", "bobpw", "same").await;
        let new = t.login("bob", "bobpw", "same").await;
        checks::assert_bind_conflict_resolved(&mut old, &new, &format!("{prefix}same")).await;
    })
    .await
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY_TLS=host:port"]
async fn prosody_direct_tls_with_alpn() {
    bounded(async {
        let t = target();
        let addr = t.direct_tls.expect("set ORIOLE_TEST_PROSODY_TLS");
        let mut c = Client::login(
            addr,
            &t.domain,
            Trust::Any,
            Security::DirectTls,
            "alice",
            "alicepw",
            Some("direct"),
        )
        .await
        .unwrap();
        let tls = c.tls.clone().unwrap();
        assert!(tls.exporter.is_some());
        assert!(!tls.peer_certificates.is_empty());
        c.ping_server().await.unwrap();
        c.close().await.unwrap();
    })
    .await
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY=host:port"]
async fn prosody_starttls_pipelined_bytes_are_not_processed() {
    bounded(async {
        let t = target();
        let mut c = Client::tcp(t.starttls, &t.domain, Trust::Any)
            .await
            .unwrap();
        c.open_stream().await.unwrap();
        // Prosody 0.12 does not discard the bytes: it parses them as a new plain-text stream,
        // answers with <invalid-namespace/> and closes, so the refusal is allowed here.
        checks::starttls_pipelining(&mut c, "alice", "alicepw", true).await;
    })
    .await
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY=host:port"]
async fn prosody_stream_errors() {
    bounded(async {
        let t = target();
        let d = t.domain.clone();
        let header = checks::client_header(&d);
        // host-unknown for an unhosted domain.
        let mut r = RawConn::tcp(t.starttls).await.unwrap();
        r.write(checks::client_header("unhosted.example").as_bytes())
            .await
            .unwrap();
        r.read_until_close(W)
            .await
            .assert_stream_error("host-unknown");
        // invalid-namespace for a wrong stream namespace.
        let mut r = RawConn::tcp(t.starttls).await.unwrap();
        r.write(
            format!(
                "<stream:stream to='{d}' version='1.0' xmlns='jabber:client' \
                 xmlns:stream='urn:wrong'>"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        r.read_until_close(W)
            .await
            .assert_stream_error("invalid-namespace");
        // not-well-formed.
        let mut r = RawConn::tcp(t.starttls).await.unwrap();
        r.write(format!("{header}<iq type='get' id='1'><ping></iq>").as_bytes())
            .await
            .unwrap();
        r.read_until_close(W)
            .await
            .assert_stream_error("not-well-formed");
        // A comment inside the stream: Prosody's parser refuses it (restricted XML; Prosody
        // names it not-well-formed).
        let mut r = RawConn::tcp(t.starttls).await.unwrap();
        r.write(format!("{header}<!-- hi -->").as_bytes())
            .await
            .unwrap();
        let tr = r.read_until_close(W).await;
        assert!(tr.closed && tr.stream_error().is_some(), "{}", tr.text());
        // </stream:stream> is answered with the server's close.
        let mut c = t.login("alice", "alicepw", "closer").await;
        c.send("</stream:stream>").await.unwrap();
        match c.next_event(W).await.unwrap() {
            Event::StreamEnd | Event::Closed => {}
            other => panic!("{other:?}"),
        }
        c.expect_closed(W).await.unwrap();
    })
    .await
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY=host:port"]
async fn prosody_roster_subscription_presence_and_messages() {
    bounded(async {
        let t = target();
        let alice_bare = t.bare("alice");
        let bob_bare = t.bare("bob");
        let mut a = t.login("alice", "alicepw", "a1").await;
        let mut b = t.login("bob", "bobpw", "b1").await;
        // Start from no roster entries between them.
        for (c, other) in [(&mut a, &bob_bare), (&mut b, &alice_bare)] {
            c.roster_get().await.unwrap();
            let r = c
                .roster_set(other, " subscription='remove'", "")
                .await
                .unwrap();
            assert!(matches!(r.attr("type"), Some("result") | Some("error")));
        }
        a.ping_server().await.unwrap();
        b.ping_server().await.unwrap();
        a.pending.clear();
        b.pending.clear();
        a.available(1).await.unwrap();
        b.available(1).await.unwrap();

        checks::subscribe_both_ways(&mut a, &mut b).await;

        // Messages to full and bare JIDs.
        let bfull = b.full_jid().to_string();
        a.send(&format!(
            "<message to='{bfull}' type='chat' id='m1' from='mallory@evil.example/x'>\
             <body>hi</body></message>"
        ))
        .await
        .unwrap();
        let m = b
            .recv_matching(W, "message m1", |e| {
                e.name == "message" && e.attr("id") == Some("m1")
            })
            .await
            .unwrap();
        assert_eq!(m.attr("from"), Some(a.full_jid()));
        assert_eq!(m.child_text("body", NS_CLIENT).as_deref(), Some("hi"));

        // Server services used by the Oriole suite.
        let d = t.domain.clone();
        let info = a
            .iq_ok(
                "get",
                Some(&d),
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await
            .unwrap();
        let q = info
            .child("query", "http://jabber.org/protocol/disco#info")
            .unwrap();
        assert!(q
            .children_named("identity", "http://jabber.org/protocol/disco#info")
            .any(|i| i.attr("category") == Some("server") && i.attr("type") == Some("im")));
        let v = a
            .iq_ok("get", Some(&d), "<query xmlns='jabber:iq:version'/>")
            .await
            .unwrap();
        assert!(v
            .child("query", "jabber:iq:version")
            .unwrap()
            .has_child("name", "jabber:iq:version"));
        let time = a
            .iq_ok("get", Some(&d), "<time xmlns='urn:xmpp:time'/>")
            .await
            .unwrap();
        checks::assert_entity_time(&time);
        a.iq_ok(
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Alice A</FN></vCard>",
        )
        .await
        .unwrap();
        let vc = b
            .iq_ok("get", Some(&alice_bare), "<vCard xmlns='vcard-temp'/>")
            .await
            .unwrap();
        assert_eq!(
            vc.child("vCard", "vcard-temp")
                .unwrap()
                .child_text("FN", "vcard-temp")
                .as_deref(),
            Some("Alice A")
        );
        a.iq_ok(
            "set",
            None,
            "<query xmlns='jabber:iq:private'><p xmlns='urn:test:p'>v1</p></query>",
        )
        .await
        .unwrap();
        let p = a
            .iq_ok(
                "get",
                None,
                "<query xmlns='jabber:iq:private'><p xmlns='urn:test:p'/></query>",
            )
            .await
            .unwrap();
        assert_eq!(
            p.child("query", "jabber:iq:private")
                .unwrap()
                .child_text("p", "urn:test:p")
                .as_deref(),
            Some("v1")
        );
        // Unknown namespace to the server: service-unavailable.
        let e = a
            .iq("get", Some(&d), "<nothing xmlns='urn:test:unknown'/>")
            .await
            .unwrap();
        assert_eq!(e.attr("type"), Some("error"));
        assert_eq!(e.error_condition().as_deref(), Some("service-unavailable"));

        // Unavailable on disconnect reaches the subscriber.
        let afull = a.full_jid().to_string();
        a.close().await.unwrap();
        let u = b
            .recv_matching(W, "alice's unavailable presence", |e| {
                e.name == "presence"
                    && e.attr("from") == Some(afull.as_str())
                    && e.attr("type") == Some("unavailable")
            })
            .await
            .unwrap();
        assert!(u.attr("to").is_some());
    })
    .await
}

#[tokio::test]
#[ignore = "needs Prosody: ORIOLE_TEST_PROSODY_TLS=host:port"]
async fn prosody_tokio_xmpp_through_the_loopback_connector() {
    use futures::StreamExt;
    bounded(async {
        let t = target();
        let addr = t.direct_tls.expect("set ORIOLE_TEST_PROSODY_TLS");
        let mut bob = t.login("bob", "bobpw", "txpeer").await;
        // Prosody 0.12 has no -PLUS on TLS 1.3, so no channel binding here.
        let conn = common::tokio_xmpp_connector::LoopbackDirectTls::new(addr, Trust::Any, false);
        let jid: tokio_xmpp::jid::Jid = format!("alice@{}/tx", t.domain).parse().unwrap();
        let mut alice = tokio_xmpp::Client::new_with_connector(
            jid,
            "alicepw",
            conn.clone(),
            tokio_xmpp::xmlstream::Timeouts::tight(),
        );
        loop {
            match tokio::time::timeout(W, alice.next()).await {
                Ok(Some(tokio_xmpp::Event::Online { bound_jid, .. })) => {
                    assert_eq!(bound_jid.to_string(), format!("alice@{}/tx", t.domain));
                    break;
                }
                Ok(Some(tokio_xmpp::Event::Disconnected(e))) => panic!("{e}"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("ended"),
                Err(_) => panic!("not online; wrote: {}", conn.transcript()),
            }
        }
        assert!(
            conn.transcript().contains("SCRAM-SHA-256"),
            "{}",
            conn.transcript()
        );
        let to: tokio_xmpp::jid::Jid = bob.full_jid().parse().unwrap();
        let mut m = tokio_xmpp::parsers::message::Message::chat(Some(to)).with_body(
            tokio_xmpp::parsers::message::Lang(String::new()),
            "hi from tokio-xmpp".into(),
        );
        m.id = Some(tokio_xmpp::parsers::message::Id("tx1".into()));
        tokio::time::timeout(W, alice.send_stanza(m.into()))
            .await
            .unwrap()
            .unwrap();
        let got = bob
            .recv_matching(W, "tx1", |e| e.attr("id") == Some("tx1"))
            .await
            .unwrap();
        assert_eq!(
            got.child_text("body", NS_CLIENT).as_deref(),
            Some("hi from tokio-xmpp")
        );
        tokio::time::timeout(W, alice.send_end())
            .await
            .unwrap()
            .unwrap();
    })
    .await
}
