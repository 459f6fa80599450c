//! XEP-0198 Stream Management: acks, resumption after a lost connection, and what happens to
//! unacknowledged stanzas when a session is never resumed.

mod common;

use common::xmpp::sm::{self, h_of, is_sm, NS_SM};
use common::*;
use std::time::Duration;

/// Log in, subscribe both ways, make both available, and leave nothing pending.
async fn pair(s: &TestServer) -> (Client, Client) {
    s.add_users(&["alice", "bob"]).await;
    let mut a = s.online("alice", "phone", 0).await;
    let mut b = s.online("bob", "desk", 0).await;
    checks::subscribe_both_ways(&mut a, &mut b).await;
    for c in [&mut a, &mut b] {
        c.ping_server().await.unwrap();
        c.pending.clear();
    }
    (a, b)
}

fn body_of(e: &Element) -> String {
    e.child_text("body", NS_CLIENT).unwrap_or_default()
}

#[tokio::test]
async fn feature_is_offered_after_authentication_only() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut c = s.connect().await;
        assert!(
            !c.features.as_ref().unwrap().has_child("sm", NS_SM),
            "offered before authentication"
        );
        let f = c
            .authenticate(Mechanism::BestScram, "alice", "alicepw")
            .await
            .unwrap();
        assert!(f.has_child("sm", NS_SM), "{f}");
        // <enable/> before binding is refused, and binding still works afterwards.
        c.send(&format!("<enable xmlns='{NS_SM}'/>")).await.unwrap();
        let failed = c
            .recv_matching(W, "failed", |e| e.is("failed", NS_SM))
            .await
            .unwrap();
        assert!(
            failed.has_child("unexpected-request", NS_STANZA_ERR),
            "{failed}"
        );
        c.bind(Some("r")).await.unwrap();
        let enabled = c.sm_enable(false).await.unwrap();
        assert_eq!(enabled.attr("resume"), None, "{enabled}");
        // A second <enable/> ends the stream.
        c.send(&format!("<enable xmlns='{NS_SM}'/>")).await.unwrap();
        assert_eq!(c.expect_stream_error(W).await.unwrap(), "policy-violation");
    })
    .await
}

#[tokio::test]
async fn acks_count_stanzas_both_ways() {
    bounded(async {
        let s = TestServer::start().await;
        let (mut a, mut b) = pair(&s).await;
        let enabled = a.sm_enable(false).await.unwrap();
        assert!(enabled.attr("id").is_none());
        // Nothing counted yet; nonzas are not stanzas.
        assert_eq!(a.sm_request_ack().await.unwrap(), 0);
        assert_eq!(a.sm_request_ack().await.unwrap(), 0);
        // Three stanzas: a message, a presence update and an IQ.
        send_chat(&mut a, &full("bob", "desk"), "c1", "one").await;
        a.presence("", "<show>away</show>").await.unwrap();
        a.ping_server().await.unwrap();
        assert_eq!(a.sm_request_ack().await.unwrap(), 3);

        // Server to client: after enabling, the server counts what it sends (the presence
        // reflection and the ping result above are 2) and asks for an ack by itself after
        // five stanzas without one.
        a.sm_ack(2).await.unwrap();
        assert_eq!(a.sm_request_ack().await.unwrap(), 3, "acks are not stanzas");
        a.pending.clear();
        for i in 0..5 {
            send_chat(&mut b, &full("alice", "phone"), &format!("m{i}"), "x").await;
        }
        a.recv_matching(W, "server <r/>", |e| e.is("r", NS_SM))
            .await
            .unwrap();
        let got: Vec<_> = a.pending.drain(..).filter(|e| !is_sm(e)).collect();
        let ids: Vec<_> = got.iter().filter_map(|e| e.attr("id")).collect();
        assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"], "{got:?}");
        a.sm_ack(7).await.unwrap();
        a.ping_server().await.unwrap();
        // An ack for more than was sent (8 so far, with the ping result) is a stream error.
        a.sm_ack(50).await.unwrap();
        let err = a.expect_stream_error(W).await;
        assert_eq!(err.unwrap(), "undefined-condition");
    })
    .await
}

#[tokio::test]
async fn too_high_ack_names_the_counts() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "r").await;
        a.sm_enable(false).await.unwrap();
        a.sm_ack(3).await.unwrap();
        let e = loop {
            match a.next_event(W).await.unwrap() {
                Event::Element(e) if e.is("error", NS_STREAM) => break e,
                Event::Element(_) => continue,
                other => panic!("stream ended without an error: {other:?}"),
            }
        };
        assert!(e.has_child("undefined-condition", NS_STREAM_ERR), "{e}");
        let t = e
            .child("handled-count-too-high", NS_SM)
            .unwrap_or_else(|| panic!("{e}"));
        assert_eq!(t.attr("h"), Some("3"));
        assert_eq!(t.attr("send-count"), Some("0"));
    })
    .await
}

/// The client reads 3 of 10 messages, loses its connection, resumes from a new TCP connection
/// with h=3, and gets exactly the other 7, once each, then new traffic. Its contact never sees
/// it go offline.
#[tokio::test]
async fn resumed_session_gets_exactly_what_it_missed() {
    bounded(async {
        let s = TestServer::start().await;
        let (mut a, mut b) = pair(&s).await;
        let enabled = a.sm_enable(true).await.unwrap();
        assert_eq!(enabled.attr("resume"), Some("true"), "{enabled}");
        assert_eq!(enabled.attr("max"), Some("300"), "{enabled}");
        let previd = enabled.attr("id").expect("an SM-ID").to_string();
        // One stanza from alice, handled by the server.
        send_chat(&mut a, &full("bob", "desk"), "from-a", "before").await;
        expect_message(&mut b, "from-a").await;
        assert_eq!(a.sm_request_ack().await.unwrap(), 1);

        for i in 1..=10 {
            send_chat(
                &mut b,
                &full("alice", "phone"),
                &format!("m{i}"),
                &format!("{i}"),
            )
            .await;
        }
        b.ping_server().await.unwrap();
        for i in 1..=3 {
            let m = a.next_stanza(W).await.unwrap();
            assert_eq!(m.attr("id"), Some(format!("m{i}").as_str()), "{m}");
        }
        // Cut off: the socket closes without </stream:stream>.
        drop(a);

        let (mut a2, resumed) = sm::resume(
            s.starttls_addr(),
            DOMAIN,
            s.trust(),
            "alice",
            "alicepw",
            &previd,
            3,
        )
        .await
        .unwrap();
        assert_eq!(resumed.name, "resumed", "{resumed}");
        assert_eq!(resumed.attr("previd"), Some(previd.as_str()));
        assert_eq!(h_of(&resumed), Some(1), "the server handled one stanza");
        send_chat(&mut b, &full("alice", "phone"), "after", "new").await;
        let got = a2
            .stanzas_until(W, |e| e.attr("id") == Some("after"))
            .await
            .unwrap();
        let ids: Vec<_> = got.iter().filter_map(|e| e.attr("id")).collect();
        let want: Vec<String> = (4..=10).map(|i| format!("m{i}")).collect();
        assert_eq!(ids, want, "{got:?}");
        for (m, i) in got.iter().zip(4..) {
            assert_eq!(body_of(m), i.to_string());
        }
        // The resumed stream counts on from the old one: 10 + "after" sent.
        a2.sm_ack(11).await.unwrap();
        // Same session: stanzas from it carry the same full JID, and bob saw no unavailable.
        send_chat(&mut a2, &full("bob", "desk"), "back", "back").await;
        let seen = b
            .stanzas_until(W, |e| e.attr("id") == Some("back"))
            .await
            .unwrap();
        assert!(
            !seen
                .iter()
                .any(|e| e.name == "presence" && e.attr("type") == Some("unavailable")),
            "bob saw alice leave: {seen:?}"
        );
        assert_eq!(a2.sm_request_ack().await.unwrap(), 2);
    })
    .await
}

/// Resuming while the old connection is still open moves the session and closes the old
/// stream with <conflict/>.
#[tokio::test]
async fn resumption_replaces_a_connection_still_open() {
    bounded(async {
        let s = TestServer::start().await;
        let (mut a, mut b) = pair(&s).await;
        let enabled = a.sm_enable(true).await.unwrap();
        let previd = enabled.attr("id").unwrap().to_string();
        send_chat(&mut b, &full("alice", "phone"), "x1", "1").await;
        b.ping_server().await.unwrap();
        let (mut a2, resumed) = sm::resume(
            s.starttls_addr(),
            DOMAIN,
            s.trust(),
            "alice",
            "alicepw",
            &previd,
            0,
        )
        .await
        .unwrap();
        assert_eq!(resumed.name, "resumed", "{resumed}");
        assert_eq!(a.expect_stream_error(W).await.unwrap(), "conflict");
        // x1 was not acknowledged: sent again.
        let m = a2.next_stanza(W).await.unwrap();
        assert_eq!(m.attr("id"), Some("x1"));
        // Another account cannot take the session.
        s.add_users(&["eve"]).await;
        let (_e, failed) = sm::resume(
            s.starttls_addr(),
            DOMAIN,
            s.trust(),
            "eve",
            "evepw",
            &previd,
            0,
        )
        .await
        .unwrap();
        assert_eq!(failed.name, "failed");
        assert!(
            failed.has_child("item-not-found", NS_STANZA_ERR),
            "{failed}"
        );
        send_chat(&mut b, &full("alice", "phone"), "x2", "2").await;
        assert_eq!(a2.next_stanza(W).await.unwrap().attr("id"), Some("x2"));
    })
    .await
}

/// A clean close ends the session: nothing to resume, and the client can bind instead.
#[tokio::test]
async fn clean_close_ends_the_session() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "r").await;
        let previd = a
            .sm_enable(true)
            .await
            .unwrap()
            .attr("id")
            .unwrap()
            .to_string();
        a.close().await.unwrap();
        let (mut c, failed) = sm::resume(
            s.starttls_addr(),
            DOMAIN,
            s.trust(),
            "alice",
            "alicepw",
            &previd,
            0,
        )
        .await
        .unwrap();
        assert_eq!(failed.name, "failed", "{failed}");
        assert!(
            failed.has_child("item-not-found", NS_STANZA_ERR),
            "{failed}"
        );
        c.bind(Some("r")).await.unwrap();
        c.ping_server().await.unwrap();
    })
    .await
}

/// When the resumption time passes, contacts see the session leave and the unacknowledged
/// messages are stored offline (with a delay stamp), delivered at the next login.
#[tokio::test]
async fn unresumed_session_loses_nothing() {
    bounded(async {
        let s = TestServer::start_with(Options {
            sm_resume_timeout_secs: Some(1),
            ..Options::default()
        })
        .await;
        let (mut a, mut b) = pair(&s).await;
        let enabled = a.sm_enable(true).await.unwrap();
        assert_eq!(enabled.attr("max"), Some("1"));
        for i in 1..=3 {
            send_chat(
                &mut b,
                &full("alice", "phone"),
                &format!("u{i}"),
                &format!("{i}"),
            )
            .await;
        }
        b.ping_server().await.unwrap();
        // Alice read one but never acknowledged anything.
        assert_eq!(a.next_stanza(W).await.unwrap().attr("id"), Some("u1"));
        drop(a);
        // A message to the bare JID while hibernating goes to the session too.
        send_chat(&mut b, &bare("alice"), "u4", "4").await;
        checks::expect_contact_unavailable(&mut b, &full("alice", "phone")).await;

        let mut a = s.online("alice", "laptop", 0).await;
        for i in 1..=4 {
            let m = expect_message(&mut a, &format!("u{i}")).await;
            assert_eq!(body_of(&m), i.to_string());
            let d = m
                .child("delay", "urn:xmpp:delay")
                .unwrap_or_else(|| panic!("{m}"));
            checks::assert_utc_stamp_near_now(d.attr("stamp").unwrap(), Duration::from_secs(60));
        }
        // Exactly once each.
        send_chat(&mut b, &full("alice", "laptop"), "mark", "").await;
        let rest = received_before(&mut a, "mark").await;
        assert!(
            !rest.iter().any(|e| e.name == "message"),
            "delivered twice: {rest:?}"
        );
    })
    .await
}
