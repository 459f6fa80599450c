//! Client stream negotiation and stream errors (RFC 6120 §4, §5, §11; XEP-0368).

mod common;

use common::*;
use std::time::Duration;

#[tokio::test]
async fn header_and_features_before_tls() {
    bounded(async {
        let s = TestServer::start().await;
        let mut c = s.tcp().await;
        let f = c.open_stream().await.unwrap();
        let h = c.header.clone().unwrap();
        // RFC 6120 §4.7: the response header carries from, id and version 1.0.
        assert!(h.is("stream", NS_STREAM), "{h}");
        assert_eq!(h.attr("from"), Some(DOMAIN));
        assert_eq!(h.attr("version"), Some("1.0"));
        assert!(h.attr("id").is_some_and(|id| id.len() >= 8), "{h}");
        checks::assert_starttls_mandatory(&f);
        // In-band registration is off by default (XEP-0077 stream feature absent).
        assert!(
            !f.has_child("register", "http://jabber.org/features/iq-register"),
            "{f}"
        );
    })
    .await
}

#[tokio::test]
async fn authentication_before_tls_is_refused() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        for mech in [Mechanism::Plain, Mechanism::Scram(Hash::Sha256)] {
            let mut c = s.tcp().await;
            c.open_stream().await.unwrap();
            let r = c.authenticate(mech, "alice", "alicepw").await;
            checks::assert_auth_refused_before_tls(r, &mut c).await;
        }
    })
    .await
}

#[tokio::test]
async fn stanza_before_authentication_is_not_authorized() {
    bounded(async {
        let s = TestServer::start().await;
        let mut c = s.connect().await;
        c.send("<message to='alice@localhost' id='early'><body>x</body></message>")
            .await
            .unwrap();
        // RFC 6120 §4.9.3.12: stanzas before the stream is authenticated.
        assert_eq!(c.expect_stream_error(W).await.unwrap(), "not-authorized");
        assert!(!c.pending.iter().any(|e| e.attr("id") == Some("early")));
    })
    .await
}

#[tokio::test]
async fn features_after_starttls_offer_sasl_and_not_starttls() {
    bounded(async {
        let s = TestServer::start().await;
        let c = s.connect().await;
        let f = c.features.clone().unwrap();
        // RFC 6120 §5.4.3.3: STARTTLS is not offered again on the encrypted stream.
        assert!(!f.has_child("starttls", NS_TLS), "{f}");
        let mechs = c.mechanisms();
        for m in ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
            assert!(mechs.iter().any(|x| x == m), "{m} not offered: {mechs:?}");
        }
        assert!(!f.has_child("bind", NS_BIND), "bind before SASL: {f}");
    })
    .await
}

#[tokio::test]
async fn bytes_pipelined_after_starttls_are_discarded() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.tcp().await;
        c.open_stream().await.unwrap();
        checks::starttls_pipelining(&mut c, "alice", "alicepw", false).await;
    })
    .await
}

#[tokio::test]
async fn direct_tls_negotiates_alpn_xmpp_client() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = Client::connect(s.direct_tls_addr(), DOMAIN, s.trust(), Security::DirectTls)
            .await
            .unwrap();
        let tls = c.tls.clone().unwrap();
        assert_eq!(tls.alpn.as_deref(), Some(&b"xmpp-client"[..]));
        assert_eq!(tls.version, Some(rustls::ProtocolVersion::TLSv1_3));
        let f = c.features.clone().unwrap();
        assert!(!f.has_child("starttls", NS_TLS), "{f}");
        c.authenticate(Mechanism::BestScram, "alice", "alicepw")
            .await
            .unwrap();
        let jid = c.bind(Some("direct")).await.unwrap();
        assert_eq!(jid, full("alice", "direct"));
        c.ping_server().await.unwrap();
        c.close().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn served_certificate_is_the_generated_one_in_the_data_dir() {
    bounded(async {
        let s = TestServer::start().await;
        let pem = s.data_dir().join("tls").join("cert.pem");
        let pinned = Trust::pin_pem_file(&pem).expect("generated certificate in <data_dir>/tls");
        for security in [Security::StartTls, Security::DirectTls] {
            let addr = match security {
                Security::StartTls => s.starttls_addr(),
                Security::DirectTls => s.direct_tls_addr(),
            };
            Client::connect(addr, DOMAIN, pinned.clone(), security)
                .await
                .unwrap_or_else(|e| panic!("{security:?} with the pinned certificate: {e}"));
        }
    })
    .await
}

#[tokio::test]
async fn stream_restarts_after_sasl_with_bind_offered() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.connect().await;
        let f = c
            .authenticate(Mechanism::Scram(Hash::Sha256), "alice", "alicepw")
            .await
            .unwrap();
        let h = c.header.clone().unwrap();
        assert_eq!(h.attr("from"), Some(DOMAIN));
        assert_eq!(h.attr("version"), Some("1.0"));
        // RFC 6120 §6.4.6 / §7.1: after SASL, bind is offered and SASL no longer is.
        assert!(f.has_child("bind", NS_BIND), "{f}");
        assert!(!f.has_child("mechanisms", NS_SASL), "{f}");
        assert!(!f.has_child("starttls", NS_TLS), "{f}");
        c.bind(Some("r")).await.unwrap();
        c.ping_server().await.unwrap();
    })
    .await
}

/// Open a plain stream by hand, write `after_header`, and return what came back.
async fn plain_stream_then(s: &TestServer, before_header: &str, after_header: &str) -> Transcript {
    let mut r = s.raw().await;
    let data = format!(
        "{before_header}{}{after_header}",
        checks::client_header(DOMAIN)
    );
    r.write(data.as_bytes()).await.unwrap();
    r.read_until_close(W).await
}

#[tokio::test]
async fn comment_is_restricted_xml() {
    bounded(async {
        let s = TestServer::start().await;
        // RFC 6120 §11.1: comments, processing instructions, DTDs are restricted-xml.
        plain_stream_then(&s, "", "<!-- a comment -->")
            .await
            .assert_stream_error("restricted-xml");
    })
    .await
}

#[tokio::test]
async fn processing_instruction_is_restricted_xml() {
    bounded(async {
        let s = TestServer::start().await;
        plain_stream_then(&s, "", "<?oriole-test data?>")
            .await
            .assert_stream_error("restricted-xml");
    })
    .await
}

#[tokio::test]
async fn doctype_is_restricted_xml() {
    bounded(async {
        let s = TestServer::start().await;
        let mut r = s.raw().await;
        r.write(
            b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]>\
              <stream:stream to='localhost' version='1.0' xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams'>",
        )
        .await
        .unwrap();
        let t = r.read_until_close(W).await;
        t.assert_stream_error("restricted-xml");
        // RFC 6120 §4.9.1.1: a stream header comes before the error even when the error is
        // found before the client's header was complete.
        assert!(
            matches!(t.events().first(), Some(XmlEvent::Header(_))),
            "{}",
            t.text()
        );
    })
    .await
}

#[tokio::test]
async fn comment_inside_a_stanza_after_login_is_restricted_xml() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.login("alice", "alicepw", "r").await;
        c.send("<message to='alice@localhost' id='c1'><!-- x --><body>b</body></message>")
            .await
            .unwrap();
        assert_eq!(c.expect_stream_error(W).await.unwrap(), "restricted-xml");
    })
    .await
}

#[tokio::test]
async fn oversized_stanza_is_a_policy_violation() {
    bounded(async {
        let s = TestServer::start_with(Options {
            max_stanza_size: Some(10_000),
            ..Options::default()
        })
        .await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.login("alice", "alicepw", "r").await;
        // Under the limit: delivered (to itself).
        let me = c.full_jid().to_string();
        send_chat(&mut c, &me, "small", &"a".repeat(5_000)).await;
        let m = expect_message(&mut c, "small").await;
        assert_eq!(m.child_text("body", NS_CLIENT).unwrap().len(), 5_000);
        // Over the limit: RFC 6120 §4.9.3.16 policy-violation.
        send_chat(&mut c, &me, "big", &"a".repeat(20_000)).await;
        assert_eq!(c.expect_stream_error(W).await.unwrap(), "policy-violation");
        assert!(!c.pending.iter().any(|e| e.attr("id") == Some("big")));
    })
    .await
}

#[tokio::test]
async fn malformed_xml_is_not_well_formed() {
    bounded(async {
        let s = TestServer::start().await;
        // RFC 6120 §4.9.3.13.
        plain_stream_then(&s, "", "<message><body>x</message>")
            .await
            .assert_stream_error("not-well-formed");
        plain_stream_then(&s, "", "<message to='a@localhost' to='b@localhost'/>")
            .await
            .assert_stream_error("not-well-formed");
        s.add_user("alice", "alicepw").await;
        let mut c = s.login("alice", "alicepw", "r").await;
        c.send("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'></iq>")
            .await
            .unwrap();
        assert_eq!(c.expect_stream_error(W).await.unwrap(), "not-well-formed");
    })
    .await
}

#[tokio::test]
async fn wrong_stream_namespace_is_invalid_namespace() {
    bounded(async {
        let s = TestServer::start().await;
        // RFC 6120 §4.9.3.10: the streams namespace is not http://etherx.jabber.org/streams.
        let mut r = s.raw().await;
        r.write(
            b"<stream:stream to='localhost' version='1.0' xmlns='jabber:client' \
              xmlns:stream='urn:example:wrong'>",
        )
        .await
        .unwrap();
        r.read_until_close(W)
            .await
            .assert_stream_error("invalid-namespace");
        // ... or the content namespace is not jabber:client on a client port.
        let mut r = s.raw().await;
        r.write(
            b"<stream:stream to='localhost' version='1.0' xmlns='urn:example:content' \
              xmlns:stream='http://etherx.jabber.org/streams'>",
        )
        .await
        .unwrap();
        r.read_until_close(W)
            .await
            .assert_stream_error("invalid-namespace");
    })
    .await
}

#[tokio::test]
async fn unhosted_domain_is_host_unknown() {
    bounded(async {
        let s = TestServer::start().await;
        // RFC 6120 §4.9.3.6.
        let mut r = s.raw().await;
        r.write(checks::client_header("unhosted.example").as_bytes())
            .await
            .unwrap();
        let t = r.read_until_close(W).await;
        t.assert_stream_error("host-unknown");
        assert!(!t.text().contains("<stream:features"), "{}", t.text());
    })
    .await
}

#[tokio::test]
async fn stream_close_is_answered_by_close() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.login("alice", "alicepw", "r").await;
        c.send("</stream:stream>").await.unwrap();
        // RFC 6120 §4.4: the other party closes its stream too, then the TCP connection.
        let mut ended = false;
        loop {
            match c.next_event(W).await.unwrap() {
                Event::StreamEnd => ended = true,
                Event::Closed => break,
                Event::Element(e) => panic!("after </stream:stream>: {e}"),
            }
        }
        assert!(ended, "TCP closed without </stream:stream>");
        // Before authentication as well.
        let mut r = s.raw().await;
        r.write(format!("{}</stream:stream>", checks::client_header(DOMAIN)).as_bytes())
            .await
            .unwrap();
        let t = r.read_until_close(W).await;
        assert!(t.closed && t.stream_ended(), "{}", t.text());
        assert_eq!(t.stream_error(), None);
    })
    .await
}

#[tokio::test]
async fn silent_client_does_not_block_others() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        // A connection that never sends anything must not stop other clients.
        let _idle = s.raw().await;
        let _half = {
            let mut r = s.raw().await;
            r.write(b"<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xml")
                .await
                .unwrap();
            r
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = s.login("alice", "alicepw", "r").await;
        c.ping_server().await.unwrap();
    })
    .await
}
