//! Offline messages (RFC 6121 §8.5.2.2, XEP-0160) with delay stamps (XEP-0203).

mod common;

use common::*;
use std::time::Duration;

/// XEP-0203: `<delay xmlns='urn:xmpp:delay' from='<domain>' stamp='...Z'/>`.
fn assert_delay(m: &Element) {
    let d = m
        .child("delay", "urn:xmpp:delay")
        .unwrap_or_else(|| panic!("no delay: {m}"));
    assert_eq!(d.attr("from"), Some(DOMAIN), "{m}");
    let stamp = d.attr("stamp").unwrap_or_else(|| panic!("no stamp: {m}"));
    checks::assert_utc_stamp_near_now(stamp, Duration::from_secs(300));
}

#[tokio::test]
async fn stored_and_delivered_on_first_available_presence_with_delay() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut b = s.online("bob", "b", 0).await;
        send_chat(&mut b, &bare("alice"), "o1", "first").await;
        b.send("<message to='alice@localhost' id='o2'><body>second</body></message>")
            .await
            .unwrap();
        b.ping_server().await.unwrap();
        // No bounce to the sender.
        assert!(
            !has_id(b.pending.make_contiguous(), "o1"),
            "{:?}",
            b.pending
        );

        let mut a = s.login("alice", "alicepw", "a").await;
        a.roster_get().await.unwrap();
        // Not before the initial presence (XEP-0160 §3).
        a.ping_server().await.unwrap();
        assert!(
            !a.pending.iter().any(|e| e.name == "message"),
            "delivered before presence: {:?}",
            a.pending
        );
        a.available(0).await.unwrap();
        let m1 = expect_message(&mut a, "o1").await;
        let m2 = expect_message(&mut a, "o2").await;
        for (m, text) in [(&m1, "first"), (&m2, "second")] {
            assert_eq!(m.attr("from"), Some(full("bob", "b").as_str()), "{m}");
            assert_eq!(m.child_text("body", NS_CLIENT).as_deref(), Some(text));
            assert_delay(m);
        }
        assert_eq!(m1.attr("type"), Some("chat"));
        // Delivered once: a new session does not get them again.
        a.close().await.unwrap();
        let mut a2 = s.online("alice", "a2", 0).await;
        send_chat(&mut b, &full("alice", "a2"), "mark", "").await;
        let before = received_before(&mut a2, "mark").await;
        assert!(
            !has_id(&before, "o1") && !has_id(&before, "o2"),
            "{before:?}"
        );
    })
    .await
}

#[tokio::test]
async fn offline_messages_survive_a_restart() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut b = s.online("bob", "b", 0).await;
        send_chat(&mut b, &bare("alice"), "persist", "kept").await;
        b.ping_server().await.unwrap();
        b.close().await.unwrap();

        let s = s.restart().await;
        let mut a = s.online("alice", "a", 0).await;
        let m = expect_message(&mut a, "persist").await;
        assert_eq!(m.child_text("body", NS_CLIENT).as_deref(), Some("kept"));
        assert_eq!(m.attr("from"), Some(full("bob", "b").as_str()));
        assert_delay(&m);
    })
    .await
}

#[tokio::test]
async fn not_delivered_to_negative_priority() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut b = s.online("bob", "b", 0).await;
        send_chat(&mut b, &bare("alice"), "neg1", "one").await;
        b.ping_server().await.unwrap();

        // XEP-0160 §3 / RFC 6121 §4.7.2.3: a negative priority gets no offline messages...
        let mut low = s.online("alice", "low", -1).await;
        // ...and while it is the only resource, new messages are stored too (§8.5.2.2).
        send_chat(&mut b, &bare("alice"), "neg2", "two").await;
        send_chat(&mut b, &full("alice", "low"), "mark", "").await;
        let before = received_before(&mut low, "mark").await;
        assert!(
            !has_id(&before, "neg1") && !has_id(&before, "neg2"),
            "delivered to a negative priority: {before:?}"
        );

        let mut a = s.online("alice", "a", 1).await;
        for (id, text) in [("neg1", "one"), ("neg2", "two")] {
            let m = expect_message(&mut a, id).await;
            assert_eq!(m.child_text("body", NS_CLIENT).as_deref(), Some(text));
            assert_delay(&m);
        }
    })
    .await
}
