//! SASL authentication (RFC 6120 §6, RFC 5802, RFC 7677, RFC 9266, XEP-0440) and resource
//! binding (RFC 6120 §7).

mod common;

use common::xmpp::scram::{ChannelBinding, ScramClient};
use common::*;

async fn scram_login(hash: Hash) {
    let s = TestServer::start().await;
    s.add_user("alice", "alicepw").await;
    let mut c = s.connect().await;
    assert!(
        c.mechanisms().iter().any(|m| m == hash.scram_name()),
        "{} not offered: {:?}",
        hash.scram_name(),
        c.mechanisms()
    );
    // The client verifies the server signature (v=), proving the server holds the keys.
    let f = c
        .authenticate(Mechanism::Scram(hash), "alice", "alicepw")
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", hash.scram_name()));
    assert!(f.has_child("bind", NS_BIND), "{f}");
    // RFC 7677 §4 / RFC 5802 §9: an iteration count of at least 4096.
    let iterations = c.last_scram.as_ref().unwrap().iterations.unwrap();
    assert!(iterations >= 4096, "iteration count {iterations}");
    assert_eq!(c.bind(Some("scram")).await.unwrap(), full("alice", "scram"));
    c.ping_server().await.unwrap();
}

#[tokio::test]
async fn scram_sha1_login() {
    bounded(scram_login(Hash::Sha1)).await
}

#[tokio::test]
async fn scram_sha256_login() {
    bounded(scram_login(Hash::Sha256)).await
}

#[tokio::test]
async fn scram_sha512_login() {
    bounded(scram_login(Hash::Sha512)).await
}

#[tokio::test]
async fn plain_login_over_tls() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.connect().await;
        c.authenticate(Mechanism::Plain, "alice", "alicepw")
            .await
            .unwrap();
        assert_eq!(c.bind(Some("plain")).await.unwrap(), full("alice", "plain"));
        c.ping_server().await.unwrap();
    })
    .await
}

fn assert_sasl_failure(r: Result<Element, ClientError>, condition: &str) {
    match r {
        Err(ClientError::SaslFailure { condition: c, .. }) => assert_eq!(c, condition),
        other => panic!("expected SASL failure <{condition}/>, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_password_is_not_authorized_and_a_retry_is_allowed() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.connect().await;
        // RFC 6120 §6.5.10.
        let r = c
            .authenticate(Mechanism::Scram(Hash::Sha256), "alice", "nope")
            .await;
        assert_sasl_failure(r, "not-authorized");
        let r = c.authenticate(Mechanism::Plain, "alice", "nope").await;
        assert_sasl_failure(r, "not-authorized");
        // RFC 6120 §6.4.5: the server allows retries on the same stream.
        c.authenticate(Mechanism::Scram(Hash::Sha256), "alice", "alicepw")
            .await
            .unwrap();
        c.bind(None).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn unknown_user_is_not_authorized() {
    bounded(async {
        let s = TestServer::start().await;
        let mut c = s.connect().await;
        let r = c
            .authenticate(Mechanism::Scram(Hash::Sha256), "nobody", "pw")
            .await;
        assert_sasl_failure(r, "not-authorized");
        let r = c.authenticate(Mechanism::Plain, "nobody", "pw").await;
        assert_sasl_failure(r, "not-authorized");
    })
    .await
}

#[tokio::test]
async fn unknown_mechanism_is_invalid_mechanism() {
    bounded(async {
        let s = TestServer::start().await;
        let mut c = s.connect().await;
        // RFC 6120 §6.5.6.
        c.send(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='X-ORIOLE-NONE'>=</auth>"
        ))
        .await
        .unwrap();
        let e = c.recv_stanza(W).await.unwrap();
        assert!(e.is("failure", NS_SASL), "{e}");
        assert!(e.has_child("invalid-mechanism", NS_SASL), "{e}");
    })
    .await
}

#[tokio::test]
async fn bad_base64_is_incorrect_encoding() {
    bounded(async {
        let s = TestServer::start().await;
        let mut c = s.connect().await;
        // RFC 6120 §6.5.2.
        c.send(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>!!not*base64!!</auth>"
        ))
        .await
        .unwrap();
        let e = c.recv_stanza(W).await.unwrap();
        assert!(e.is("failure", NS_SASL), "{e}");
        assert!(e.has_child("incorrect-encoding", NS_SASL), "{e}");
    })
    .await
}

#[tokio::test]
async fn abort_is_answered_with_aborted() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.connect().await;
        let scram = ScramClient::new(
            Hash::Sha256,
            "alice",
            "alicepw",
            ChannelBinding::Unsupported,
        );
        c.send(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{}</auth>",
            common::xmpp::scram::b64(scram.client_first().as_bytes())
        ))
        .await
        .unwrap();
        let ch = c.recv_stanza(W).await.unwrap();
        assert!(ch.is("challenge", NS_SASL), "{ch}");
        // RFC 6120 §6.4.4.
        c.send(&format!("<abort xmlns='{NS_SASL}'/>"))
            .await
            .unwrap();
        let e = c.recv_stanza(W).await.unwrap();
        assert!(e.is("failure", NS_SASL), "{e}");
        assert!(e.has_child("aborted", NS_SASL), "{e}");
        c.authenticate(Mechanism::Scram(Hash::Sha256), "alice", "alicepw")
            .await
            .unwrap();
    })
    .await
}

#[tokio::test]
async fn plus_mechanisms_are_advertised_with_tls_exporter() {
    bounded(async {
        let s = TestServer::start().await;
        let c = s.connect().await;
        let mechs = c.mechanisms();
        assert!(
            mechs.iter().any(|m| m == "SCRAM-SHA-256-PLUS"),
            "no SCRAM-SHA-256-PLUS: {mechs:?}"
        );
        // XEP-0440: the channel-binding types the server supports.
        let types = c.channel_binding_types();
        assert!(
            types.iter().any(|t| t == "tls-exporter"),
            "tls-exporter not listed in <sasl-channel-binding/>: {types:?} in {}",
            c.features.clone().unwrap()
        );
    })
    .await
}

#[tokio::test]
async fn scram_sha256_plus_with_tls_exporter() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        for security in [Security::StartTls, Security::DirectTls] {
            let addr = match security {
                Security::StartTls => s.starttls_addr(),
                Security::DirectTls => s.direct_tls_addr(),
            };
            let mut c = Client::connect(addr, DOMAIN, s.trust(), security)
                .await
                .unwrap();
            c.authenticate(
                Mechanism::ScramPlusExporter(Hash::Sha256),
                "alice",
                "alicepw",
            )
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}"));
            c.bind(None).await.unwrap();
            c.ping_server().await.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn scram_plus_with_wrong_binding_data_fails() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.connect().await;
        let mut data = c.tls.as_ref().unwrap().exporter.clone().unwrap();
        data[0] ^= 0xff;
        let scram = ScramClient::new(
            Hash::Sha256,
            "alice",
            "alicepw",
            ChannelBinding::Bound {
                name: "tls-exporter".into(),
                data,
            },
        );
        assert_sasl_failure(c.authenticate_scram(scram).await, "not-authorized");
    })
    .await
}

#[tokio::test]
async fn scram_downgrade_flag_y_is_refused_when_plus_is_offered() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.connect().await;
        assert!(c.mechanisms().iter().any(|m| m.ends_with("-PLUS")));
        // RFC 5802 §6: "y" means the client thinks the server has no channel binding; a
        // server that offers it MUST fail the authentication (a downgrade attack).
        let scram = ScramClient::new(
            Hash::Sha256,
            "alice",
            "alicepw",
            ChannelBinding::NotAdvertised,
        );
        assert_sasl_failure(c.authenticate_scram(scram).await, "not-authorized");
    })
    .await
}

// ---- resource binding ----

#[tokio::test]
async fn bind_client_resource() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.connect().await;
        c.authenticate(Mechanism::BestScram, "alice", "alicepw")
            .await
            .unwrap();
        assert_eq!(c.bind(Some("phone")).await.unwrap(), full("alice", "phone"));
    })
    .await
}

#[tokio::test]
async fn bind_server_generated_resource() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut jids = Vec::new();
        for _ in 0..2 {
            let mut c = s.connect().await;
            c.authenticate(Mechanism::BestScram, "alice", "alicepw")
                .await
                .unwrap();
            let jid = c.bind(None).await.unwrap();
            let resource = jid
                .strip_prefix("alice@localhost/")
                .unwrap_or_else(|| panic!("{jid}"));
            assert!(!resource.is_empty());
            jids.push((jid, c));
        }
        assert_ne!(jids[0].0, jids[1].0, "two generated resources are equal");
    })
    .await
}

#[tokio::test]
async fn bind_conflict_replaces_the_old_session() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut old = s.login("alice", "alicepw", "same").await;
        let new = s.login("alice", "alicepw", "same").await;
        checks::assert_bind_conflict_resolved(&mut old, &new, &full("alice", "same")).await;
        // The server's plan (RFC 6120 §7.7.2.2, first option): the new session takes the
        // resource and the old one is closed with <conflict/>.
        assert_eq!(new.full_jid(), full("alice", "same"));
    })
    .await
}

#[tokio::test]
async fn several_resources_per_account() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a1 = s.login("alice", "alicepw", "one").await;
        let mut a2 = s.login("alice", "alicepw", "two").await;
        let mut a3 = s.login("alice", "alicepw", "three").await;
        let mut b = s.login("bob", "bobpw", "b").await;
        for (i, r) in ["one", "two", "three"].iter().enumerate() {
            send_chat(&mut b, &full("alice", r), &format!("m{i}"), r).await;
        }
        for (i, (c, r)) in [(&mut a1, "one"), (&mut a2, "two"), (&mut a3, "three")]
            .into_iter()
            .enumerate()
        {
            let m = expect_message(c, &format!("m{i}")).await;
            assert_eq!(m.attr("to"), Some(full("alice", r).as_str()));
            assert_eq!(m.child_text("body", NS_CLIENT).as_deref(), Some(r));
        }
        // Every session still answers.
        for c in [&mut a1, &mut a2, &mut a3] {
            c.ping_server().await.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn bind_of_an_invalid_resource_is_bad_request() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_user("alice", "alicepw").await;
        let mut c = s.connect().await;
        c.authenticate(Mechanism::BestScram, "alice", "alicepw")
            .await
            .unwrap();
        // A resource that cannot be processed (over 1023 bytes, RFC 7622 §3.4) is
        // bad-request (RFC 6120 §7.7.2.1), unless the server overrides the requested
        // resourcepart with one of its own, which §7.6.2.2 allows (Prosody does that).
        let long = "r".repeat(1100);
        match c.bind(Some(&long)).await {
            Err(ClientError::Stanza(e)) => {
                assert_eq!(e.attr("type"), Some("error"), "{e}");
                assert_eq!(e.error_condition().as_deref(), Some("bad-request"), "{e}");
            }
            Ok(jid) => {
                let resource = jid.strip_prefix("alice@localhost/").unwrap();
                assert!(
                    !resource.is_empty() && resource.len() <= 1023,
                    "invalid resource bound: {jid}"
                );
                return;
            }
            Err(e) => panic!("{e}"),
        }
        // The stream stays usable: a valid bind follows.
        c.bind(Some("ok")).await.unwrap();
    })
    .await
}
