//! XEP-0388 SASL2 with XEP-0386 Bind 2, inline XEP-0198/0280/0352, XEP-0484 FAST tokens and
//! XEP-0474 SCRAM downgrade protection, driven by the independent test client.

mod common;

use common::xmpp::sasl2::*;
use common::xmpp::sm::{h_of, is_sm, NS_CSI, NS_SM};
use common::*;
use std::time::Duration;

const UA: &str = "d4565fa7-4d72-4749-b3d3-740edbf87770";
const UA2: &str = "0b1e7a52-21a4-4f0e-9a36-f0f1d1c4ae11";

fn scram256(user: &str) -> Sasl2Request {
    Sasl2Request::new(Sasl2Mech::Scram(Hash::Sha256), user, &format!("{user}pw"))
}

async fn sasl2_ok(c: &mut Client, req: &Sasl2Request) -> Sasl2Success {
    c.sasl2_authenticate(req)
        .await
        .expect("SASL2 exchange")
        .unwrap_or_else(|f| panic!("SASL2 failed: {f}"))
}

async fn sasl2_fail(c: &mut Client, req: &Sasl2Request) -> String {
    match c.sasl2_authenticate(req).await.expect("SASL2 exchange") {
        Ok(s) => panic!("SASL2 succeeded: {:?}", s.success),
        Err(f) => failure_condition(&f),
    }
}

fn bind2(tag: &str, extra: &str) -> String {
    format!("<bind xmlns='{NS_BIND2}'><tag>{tag}</tag>{extra}</bind>")
}

#[tokio::test]
async fn feature_lists_mechanisms_and_inline_features() {
    bounded(async {
        let s = TestServer::start().await;
        // Not offered before TLS (encryption is required).
        let mut plain = s.tcp().await;
        let f = plain.open_stream().await.unwrap();
        assert!(!f.has_child("authentication", NS_SASL2), "{f}");

        let c = s.connect().await;
        let a = c.sasl2_feature().expect("<authentication/> after STARTTLS");
        assert_eq!(
            c.sasl2_mechanisms(),
            c.mechanisms(),
            "same list as legacy SASL"
        );
        assert!(c
            .sasl2_mechanisms()
            .iter()
            .any(|m| m == "SCRAM-SHA-256-PLUS"));
        let inline = a.child("inline", NS_SASL2).expect("inline");
        let vars: Vec<_> = inline
            .child("bind", NS_BIND2)
            .and_then(|b| b.child("inline", NS_BIND2))
            .map(|i| {
                i.children_named("feature", NS_BIND2)
                    .filter_map(|f| f.attr("var").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for v in [NS_CARBONS, NS_CSI, NS_SM] {
            assert!(vars.iter().any(|x| x == v), "{v} missing in {a}");
        }
        assert!(inline.has_child("sm", NS_SM), "{a}");
        let fast = c.fast_mechanisms();
        assert!(fast.iter().any(|m| m == "HT-SHA-256-NONE"), "{fast:?}");
        assert!(fast.iter().any(|m| m == "HT-SHA-256-EXPR"), "{fast:?}");
        // XEP-0440 stays next to it.
        assert!(!c.channel_binding_types().is_empty());
    })
    .await
}

#[tokio::test]
async fn scram_sha256_and_plus_succeed_then_legacy_bind() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        for mech in [
            Sasl2Mech::Scram(Hash::Sha256),
            Sasl2Mech::ScramPlusExporter(Hash::Sha256),
            Sasl2Mech::ScramPlusExporter(Hash::Sha512),
            Sasl2Mech::Plain,
        ] {
            let mut c = s.connect().await;
            let ok = sasl2_ok(&mut c, &Sasl2Request::new(mech.clone(), "alice", "alicepw")).await;
            assert_eq!(ok.authorization_identifier(), bare("alice"), "{mech:?}");
            // No restart: the features that follow offer resource binding.
            assert!(ok.features.has_child("bind", NS_BIND), "{:?}", ok.features);
            c.bind(Some("legacy")).await.unwrap();
            c.ping_server().await.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn failure_is_clear_and_inline_requests_are_not_processed() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut c = s.connect().await;
        let bad = Sasl2Request::new(Sasl2Mech::Scram(Hash::Sha256), "alice", "wrong")
            .inline(&bind2("T", ""));
        assert_eq!(sasl2_fail(&mut c, &bad).await, "not-authorized");
        let unknown = Sasl2Request::new(Sasl2Mech::Scram(Hash::Sha256), "nobody", "x");
        assert_eq!(sasl2_fail(&mut c, &unknown).await, "not-authorized");
        // A mechanism that was not offered.
        c.send(&format!(
            "<authenticate xmlns='{NS_SASL2}' mechanism='DIGEST-MD5'/>"
        ))
        .await
        .unwrap();
        let f = c
            .recv_matching(W, "failure", |e| e.is("failure", NS_SASL2))
            .await
            .unwrap();
        assert_eq!(failure_condition(&f), "invalid-mechanism", "{f}");
        // Nothing was bound by the failed attempt with <bind/>.
        assert_eq!(s.server().state().sessions.count(), 0);
        // The same stream can still authenticate.
        let ok = sasl2_ok(&mut c, &scram256("alice").inline(&bind2("T", ""))).await;
        assert!(ok
            .authorization_identifier()
            .starts_with(&full("alice", "T/")));
    })
    .await
}

#[tokio::test]
async fn bind2_resource_from_tag_is_stable_per_client_and_replaces_the_old_session() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut c1 = s.connect().await;
        let ok = sasl2_ok(
            &mut c1,
            &scram256("alice").client_id(UA).inline(&bind2("Oriole", "")),
        )
        .await;
        let jid = ok.authorization_identifier();
        assert!(jid.starts_with(&full("alice", "Oriole/")), "{jid}");
        assert!(
            !jid.contains("d4565fa7"),
            "the user-agent id must not show: {jid}"
        );
        let bound = ok.success.child("bound", NS_BIND2).expect("<bound/>");
        assert!(bound.has_child("metadata", "urn:xmpp:mam:2"), "{bound}");
        assert!(!ok.features.has_child("bind", NS_BIND), "already bound");
        assert_eq!(c1.full_jid(), jid);
        c1.ping_server().await.unwrap();
        // A stanza reaches the bound resource.
        let mut b = s.login("bob", "bobpw", "desk").await;
        send_chat(&mut b, &jid, "hello", "hi").await;
        expect_message(&mut c1, "hello").await;

        // Another client of the same account gets another resource...
        let mut c2 = s.connect().await;
        let ok2 = sasl2_ok(
            &mut c2,
            &scram256("alice")
                .client_id(UA2)
                .inline(&bind2("Oriole", "")),
        )
        .await;
        assert_ne!(ok2.authorization_identifier(), jid);
        // ...and the same client installation gets the same one back; the old stream ends.
        let mut c3 = s.connect().await;
        let ok3 = sasl2_ok(
            &mut c3,
            &scram256("alice").client_id(UA).inline(&bind2("Oriole", "")),
        )
        .await;
        assert_eq!(ok3.authorization_identifier(), jid);
        assert_eq!(c1.expect_stream_error(W).await.unwrap(), "conflict");
        // Without a user-agent id the suffix is random.
        let mut c4 = s.connect().await;
        let ok4 = sasl2_ok(&mut c4, &scram256("alice").inline(&bind2("Oriole", ""))).await;
        let mut c5 = s.connect().await;
        let ok5 = sasl2_ok(&mut c5, &scram256("alice").inline(&bind2("Oriole", ""))).await;
        assert_ne!(
            ok4.authorization_identifier(),
            ok5.authorization_identifier()
        );
    })
    .await
}

#[tokio::test]
async fn inline_carbons_are_really_enabled() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut with = s.connect().await;
        sasl2_ok(
            &mut with,
            &scram256("alice").client_id(UA).inline(&bind2(
                "Carbons",
                &format!("<enable xmlns='{NS_CARBONS}'/>"),
            )),
        )
        .await;
        let mut without = s.connect().await;
        sasl2_ok(
            &mut without,
            &scram256("alice").client_id(UA2).inline(&bind2("Plain", "")),
        )
        .await;
        let mut phone = s.login("alice", "alicepw", "phone").await;
        let mut b = s.login("bob", "bobpw", "desk").await;
        send_chat(&mut b, &full("alice", "phone"), "m1", "to the phone").await;
        expect_message(&mut phone, "m1").await;
        let copy = with
            .recv_matching(W, "received carbon", |e| {
                e.name == "message" && e.has_child("received", NS_CARBONS)
            })
            .await
            .unwrap();
        assert_eq!(copy.attr("from"), Some(bare("alice").as_str()), "{copy}");
        assert!(copy.to_xml().contains("to the phone"), "{copy}");
        // The session without inline carbons gets nothing: a marker sent straight to it
        // arrives first.
        let marker_to = without.full_jid().to_string();
        send_chat(&mut b, &marker_to, "marker", "x").await;
        let before = received_before(&mut without, "marker").await;
        assert!(
            before.iter().all(|e| !e.has_child("received", NS_CARBONS)),
            "{before:?}"
        );
    })
    .await
}

#[tokio::test]
async fn inline_csi_starts_inactive() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.connect().await;
        sasl2_ok(
            &mut a,
            &scram256("alice").inline(&bind2("Csi", &format!("<inactive xmlns='{NS_CSI}'/>"))),
        )
        .await;
        let to = a.full_jid().to_string();
        let mut b = s.login("bob", "bobpw", "desk").await;
        // A chat state alone is held while inactive, and dropped as stale when a message
        // with a body from the same sender comes (an active session gets both, in order).
        b.send(&format!(
            "<message to='{to}' type='chat' id='cs'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ))
        .await
        .unwrap();
        send_chat(&mut b, &to, "urgent", "body").await;
        let first = a.next_stanza(W).await.unwrap();
        assert_eq!(first.attr("id"), Some("urgent"), "{first}");
    })
    .await
}

/// Inline `<enable/>` in Bind 2, then the connection vanishes; an inline `<resume/>` in SASL2
/// from a new connection gets exactly what was not acknowledged, inside one round trip.
#[tokio::test]
async fn inline_sm_enable_then_inline_resume_gets_exactly_the_missed_stanzas() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.connect().await;
        let ok = sasl2_ok(
            &mut a,
            &scram256("alice").client_id(UA).inline(&bind2(
                "Sm",
                &format!("<enable xmlns='{NS_SM}' resume='true'/>"),
            )),
        )
        .await;
        let enabled = ok
            .success
            .child("bound", NS_BIND2)
            .and_then(|b| b.child("enabled", NS_SM))
            .unwrap_or_else(|| panic!("no <enabled/> in {:?}", ok.success))
            .clone();
        assert_eq!(enabled.attr("resume"), Some("true"));
        let previd = enabled.attr("id").expect("SM-ID").to_string();
        let jid = a.full_jid().to_string();
        let mut b = s.login("bob", "bobpw", "desk").await;
        for i in 1..=4 {
            send_chat(&mut b, &jid, &format!("m{i}"), &format!("{i}")).await;
        }
        for i in 1..=4 {
            let m = a.next_stanza(W).await.unwrap();
            assert_eq!(m.attr("id"), Some(format!("m{i}").as_str()));
        }
        // The client processed two of them, then its network vanishes.
        a.sm_ack(2).await.unwrap();
        drop(a);
        send_chat(&mut b, &jid, "m5", "while away").await;
        b.ping_server().await.unwrap();

        let mut n = s.connect().await;
        let ok = sasl2_ok(
            &mut n,
            &scram256("alice")
                .client_id(UA)
                .inline(&format!(
                    "<resume xmlns='{NS_SM}' previd='{previd}' h='2'/>"
                ))
                .inline(&bind2("Sm", "")),
        )
        .await;
        let resumed = ok
            .success
            .child("resumed", NS_SM)
            .unwrap_or_else(|| panic!("no <resumed/> in {:?}", ok.success));
        assert_eq!(resumed.attr("previd"), Some(previd.as_str()));
        assert_eq!(h_of(resumed), Some(0), "alice sent no stanza: {resumed}");
        assert!(!ok.success.has_child("bound", NS_BIND2), "bind skipped");
        assert_eq!(ok.authorization_identifier(), jid);
        // Exactly m3, m4 (unacknowledged) and m5 (queued while away), in order, then live
        // traffic.
        send_chat(&mut b, &jid, "after", "live").await;
        let got = n
            .stanzas_until(W, |e| e.attr("id") == Some("after"))
            .await
            .unwrap();
        let ids: Vec<_> = got.iter().filter_map(|e| e.attr("id")).collect();
        assert_eq!(ids, ["m3", "m4", "m5"], "{got:?}");
        // Counting continues from the old session.
        assert_eq!(n.sm_request_ack().await.unwrap(), 0);
        n.pending.retain(|e| !is_sm(e));

        // A wrong previd fails inside <success/> and binding goes on.
        let mut x = s.connect().await;
        let ok = sasl2_ok(
            &mut x,
            &scram256("alice")
                .inline(&format!("<resume xmlns='{NS_SM}' previd='nope' h='0'/>"))
                .inline(&bind2("Fresh", "")),
        )
        .await;
        let failed = ok.success.child("failed", NS_SM).expect("<failed/>");
        assert!(
            failed.has_child("item-not-found", NS_STANZA_ERR),
            "{failed}"
        );
        assert!(ok.success.has_child("bound", NS_BIND2));
        x.ping_server().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn fast_token_login_without_password() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut c = s.connect().await;
        let ok = sasl2_ok(
            &mut c,
            &scram256("alice").client_id(UA).inline(&format!(
                "<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-NONE'/>"
            )),
        )
        .await;
        let (token, expiry) = ok.token().expect("<token/> in success");
        assert!(token.len() >= 32, "{token}");
        // Default lifetime: 14 days.
        let days = expiry_in_secs(&expiry) / 86_400;
        assert!((13..=14).contains(&days), "{expiry}");

        let fast = |t: &str, mech: &str| Sasl2Mech::Fast {
            mechanism: mech.into(),
            token: t.into(),
        };
        // Token only (the password given is garbage and unused), with Bind 2.
        let mut n = s.connect().await;
        let ok = sasl2_ok(
            &mut n,
            &Sasl2Request::new(fast(&token, "HT-SHA-256-NONE"), "alice", "")
                .client_id(UA)
                .inline(&format!("<fast xmlns='{NS_FAST}'/>"))
                .inline(&bind2("Fast", "")),
        )
        .await;
        assert!(ok
            .authorization_identifier()
            .starts_with(&full("alice", "Fast/")));
        assert!(ok.token().is_none(), "no rotation for a fresh token");
        n.ping_server().await.unwrap();

        // Refused: a wrong token, the right token from another client, with another mechanism.
        let mut w = s.connect().await;
        let wrong =
            Sasl2Request::new(fast("not-the-token", "HT-SHA-256-NONE"), "alice", "").client_id(UA);
        assert_eq!(sasl2_fail(&mut w, &wrong).await, "not-authorized");
        let other = Sasl2Request::new(fast(&token, "HT-SHA-256-NONE"), "alice", "").client_id(UA2);
        assert_eq!(sasl2_fail(&mut w, &other).await, "not-authorized");
        let expr = Sasl2Request::new(fast(&token, "HT-SHA-256-EXPR"), "alice", "").client_id(UA);
        assert_eq!(sasl2_fail(&mut w, &expr).await, "not-authorized");

        // Replay counter: a count must grow.
        let counted = |n: u32| {
            Sasl2Request::new(fast(&token, "HT-SHA-256-NONE"), "alice", "")
                .client_id(UA)
                .inline(&format!("<fast xmlns='{NS_FAST}' count='{n}'/>"))
        };
        let mut r = s.connect().await;
        sasl2_ok(&mut r, &counted(5)).await;
        let mut r = s.connect().await;
        assert_eq!(sasl2_fail(&mut r, &counted(5)).await, "not-authorized");
        sasl2_ok(&mut r, &counted(6)).await;

        // A channel-bound token (tls-exporter), and invalidation.
        let mut r = s.connect().await;
        let ok = sasl2_ok(
            &mut r,
            &Sasl2Request::new(fast(&token, "HT-SHA-256-NONE"), "alice", "")
                .client_id(UA)
                .inline(&format!("<fast xmlns='{NS_FAST}' invalidate='true'/>"))
                .inline(&format!(
                    "<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-EXPR'/>"
                )),
        )
        .await;
        let (bound_token, _) = ok.token().expect("token requested with invalidate");
        let mut r = s.connect().await;
        let old = Sasl2Request::new(fast(&token, "HT-SHA-256-NONE"), "alice", "").client_id(UA);
        assert_eq!(
            sasl2_fail(&mut r, &old).await,
            "not-authorized",
            "invalidated"
        );
        sasl2_ok(
            &mut r,
            &Sasl2Request::new(fast(&bound_token, "HT-SHA-256-EXPR"), "alice", "").client_id(UA),
        )
        .await;
    })
    .await
}

fn expiry_in_secs(stamp: &str) -> u64 {
    let t = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("expiry {stamp}: {e}"));
    (t - time::OffsetDateTime::now_utc()).whole_seconds().max(0) as u64
}

#[tokio::test]
async fn fast_tokens_expire_and_rotate() {
    bounded(async {
        let s = TestServer::start_with(Options {
            fast_token_lifetime_secs: Some(4),
            ..Options::default()
        })
        .await;
        s.add_users(&["alice"]).await;
        let req_token = format!("<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-NONE'/>");
        let fast = |t: &str| {
            Sasl2Request::new(
                Sasl2Mech::Fast {
                    mechanism: "HT-SHA-256-NONE".into(),
                    token: t.into(),
                },
                "alice",
                "",
            )
            .client_id(UA)
        };
        let mut c = s.connect().await;
        let (t1, _) = sasl2_ok(&mut c, &scram256("alice").client_id(UA).inline(&req_token))
            .await
            .token()
            .unwrap();
        // Past half its life the token is rotated; the old one works until the new is used.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut c = s.connect().await;
        let (t2, _) = sasl2_ok(&mut c, &fast(&t1)).await.token().expect("rotated");
        assert_ne!(t1, t2);
        // The client missed t2: t1 still works, and the answer carries a replacement t3
        // (t2, never used, is dropped).
        let mut c = s.connect().await;
        let (t3, _) = sasl2_ok(&mut c, &fast(&t1))
            .await
            .token()
            .expect("rotated again");
        let mut c = s.connect().await;
        assert_eq!(sasl2_fail(&mut c, &fast(&t2)).await, "not-authorized");
        // Using t3 retires t1.
        sasl2_ok(&mut c, &fast(&t3)).await;
        let mut c = s.connect().await;
        assert_eq!(sasl2_fail(&mut c, &fast(&t1)).await, "not-authorized");
        let t2 = t3;
        // Expired.
        tokio::time::sleep(Duration::from_millis(5000)).await;
        assert_eq!(sasl2_fail(&mut c, &fast(&t2)).await, "credentials-expired");
        // Password login still works and gives a new token.
        assert!(
            sasl2_ok(&mut c, &scram256("alice").client_id(UA).inline(&req_token))
                .await
                .token()
                .is_some()
        );
    })
    .await
}

/// XEP-0474 on legacy SASL: the client recomputes `h=` from the advertised mechanisms and
/// channel-binding types (the SASL2 path checks it inside `sasl2_authenticate`).
#[tokio::test]
async fn legacy_scram_server_first_has_the_ssdp_hash() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        for (mech, hash) in [
            (Mechanism::Scram(Hash::Sha256), Hash::Sha256),
            (Mechanism::ScramPlusExporter(Hash::Sha1), Hash::Sha1),
            (Mechanism::Scram(Hash::Sha512), Hash::Sha512),
        ] {
            let mut c = s.connect().await;
            let mechs = c.mechanisms();
            let types = c.channel_binding_types();
            assert!(!types.is_empty());
            c.authenticate(mech, "alice", "alicepw").await.unwrap();
            let first = c
                .last_scram
                .as_ref()
                .and_then(|s| s.server_first.clone())
                .unwrap();
            assert_eq!(
                server_first_h(&first),
                Some(ssdp_hash(hash, &mechs, &types).as_str()),
                "{first}"
            );
            // A list other than the advertised one gives another hash (the check can fail).
            assert_ne!(
                server_first_h(&first),
                Some(ssdp_hash(hash, &mechs[1..], &types).as_str())
            );
        }
    })
    .await
}
