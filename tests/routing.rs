//! Stanza routing between local entities (RFC 6121 §8, RFC 6120 §8, §10).
//!
//! To show that a stanza was *not* delivered, the sender follows it with a marker message
//! along the same path; the server processes one stream's stanzas in order (RFC 6120 §10.1),
//! so the marker arriving without the stanza before it means the stanza was not delivered.

mod common;

use common::*;

fn body(m: &Element) -> Option<String> {
    m.child_text("body", NS_CLIENT)
}

#[tokio::test]
async fn message_to_full_jid_is_delivered_with_from_stamped() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        send_chat(&mut a, &full("bob", "b"), "m1", "hello").await;
        let m = expect_message(&mut b, "m1").await;
        assert_eq!(m.attr("from"), Some(full("alice", "a").as_str()));
        assert_eq!(m.attr("to"), Some(full("bob", "b").as_str()));
        assert_eq!(m.attr("type"), Some("chat"));
        assert_eq!(body(&m).as_deref(), Some("hello"));
    })
    .await
}

#[tokio::test]
async fn spoofed_from_is_overwritten() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        // RFC 6120 §8.1.2.1: the server stamps the full JID of the sending session.
        a.send(
            "<message to='carol@localhost/c' from='bob@localhost/b' type='chat' id='spoof'>\
             <body>I am bob</body></message>",
        )
        .await
        .unwrap();
        let m = expect_message(&mut c, "spoof").await;
        assert_eq!(m.attr("from"), Some(full("alice", "a").as_str()));
    })
    .await
}

#[tokio::test]
async fn chat_to_bare_jid_goes_to_the_highest_priority_resource_only() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut high = s.online("bob", "high", 5).await;
        let mut low = s.online("bob", "low", 1).await;
        let mut neg = s.online("bob", "neg", -1).await;
        send_chat(&mut a, &bare("bob"), "tobare", "hi").await;
        send_chat(&mut a, &full("bob", "low"), "mark-low", "").await;
        send_chat(&mut a, &full("bob", "neg"), "mark-neg", "").await;
        // RFC 6121 §8.5.2.1.1 (chat): the most available resource, here the highest priority.
        let m = expect_message(&mut high, "tobare").await;
        assert_eq!(m.attr("from"), Some(full("alice", "a").as_str()));
        assert_eq!(m.attr("to"), Some(bare("bob").as_str()));
        assert!(!has_id(
            &received_before(&mut low, "mark-low").await,
            "tobare"
        ));
        // Never to a resource with negative priority (RFC 6121 §4.7.2.3, §8.5.2.1).
        assert!(!has_id(
            &received_before(&mut neg, "mark-neg").await,
            "tobare"
        ));
    })
    .await
}

#[tokio::test]
async fn groupchat_to_bare_jid_is_refused() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        a.send("<message to='bob@localhost' type='groupchat' id='gc'><body>x</body></message>")
            .await
            .unwrap();
        send_chat(&mut a, &full("bob", "b"), "mark", "").await;
        // RFC 6121 §8.5.2.1.1: not delivered; an error, which SHOULD be service-unavailable.
        let e = expect_message(&mut a, "gc").await;
        assert_eq!(e.attr("type"), Some("error"), "{e}");
        assert_eq!(e.attr("from"), Some(bare("bob").as_str()), "{e}");
        assert_eq!(e.error_condition().as_deref(), Some("service-unavailable"));
        assert!(!has_id(&received_before(&mut b, "mark").await, "gc"));
    })
    .await
}

#[tokio::test]
async fn stanzas_to_an_unknown_account() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        // RFC 6121 §8.5.1: IQ -> service-unavailable.
        let r = a
            .iq(
                "get",
                Some("nobody@localhost"),
                "<ping xmlns='urn:xmpp:ping'/>",
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(r.attr("from"), Some("nobody@localhost"), "{r}");
        assert_eq!(r.error_condition().as_deref(), Some("service-unavailable"));
        let r = a
            .iq(
                "get",
                Some("nobody@localhost/res"),
                "<query xmlns='jabber:iq:version'/>",
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("service-unavailable"));
        // Message: silently dropped, or an error that is service-unavailable.
        send_chat(&mut a, "nobody@localhost", "m-unknown", "x").await;
        // Presence: silently dropped.
        a.send("<presence to='nobody@localhost' id='p-unknown'/>")
            .await
            .unwrap();
        a.ping_server().await.unwrap();
        for e in &a.pending {
            if e.attr("id") == Some("m-unknown") {
                assert_eq!(e.attr("type"), Some("error"), "{e}");
                assert_eq!(e.error_condition().as_deref(), Some("service-unavailable"));
            }
            assert_ne!(
                e.attr("id"),
                Some("p-unknown"),
                "presence was answered: {e}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn message_to_an_offline_resource_falls_back_to_the_bare_jid() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        // RFC 6121 §8.5.3.2.1: chat to a full JID with no such resource is handled as if
        // sent to the bare JID, so the online resource gets it.
        send_chat(&mut a, &full("bob", "gone"), "fb", "fallback").await;
        let m = expect_message(&mut b, "fb").await;
        assert_eq!(body(&m).as_deref(), Some("fallback"));
    })
    .await
}

#[tokio::test]
async fn message_to_a_resource_of_an_offline_account_is_stored() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        send_chat(&mut a, &full("bob", "gone"), "off1", "later").await;
        a.ping_server().await.unwrap();
        assert!(
            !has_id(a.pending.make_contiguous(), "off1"),
            "bounced: {:?}",
            a.pending
        );
        let mut b = s.online("bob", "b", 0).await;
        let m = expect_message(&mut b, "off1").await;
        assert_eq!(body(&m).as_deref(), Some("later"));
        assert!(m.has_child("delay", "urn:xmpp:delay"), "{m}");
    })
    .await
}

#[tokio::test]
async fn iq_to_a_full_jid_is_routed_to_that_resource() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        a.send(
            "<iq type='get' id='q1' to='bob@localhost/b'><query xmlns='urn:example:custom'/></iq>",
        )
        .await
        .unwrap();
        let q = b
            .recv_matching(W, "iq q1", |e| e.name == "iq" && e.attr("id") == Some("q1"))
            .await
            .unwrap();
        assert_eq!(q.attr("from"), Some(full("alice", "a").as_str()));
        assert_eq!(q.attr("type"), Some("get"));
        assert!(q.has_child("query", "urn:example:custom"));
        b.send(
            "<iq type='result' id='q1' to='alice@localhost/a'>\
             <query xmlns='urn:example:custom'><v>1</v></query></iq>",
        )
        .await
        .unwrap();
        let r = a.expect_iq_result("q1").await.unwrap();
        assert_eq!(r.attr("from"), Some(full("bob", "b").as_str()));
        assert!(r.has_child("query", "urn:example:custom"), "{r}");
    })
    .await
}

#[tokio::test]
async fn iq_to_an_offline_full_jid_is_service_unavailable() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let _b = s.online("bob", "b", 0).await;
        // RFC 6121 §8.5.3.2.1 (IQ).
        let r = a
            .iq(
                "get",
                Some(&full("bob", "gone")),
                "<query xmlns='jabber:iq:version'/>",
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(r.attr("from"), Some(full("bob", "gone").as_str()));
        assert_eq!(r.error_condition().as_deref(), Some("service-unavailable"));
    })
    .await
}

#[tokio::test]
async fn iq_to_a_bare_jid_is_answered_by_the_server() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        // RFC 6121 §8.5.2.1.3 and XEP-0199 §4.3: the server answers for the account.
        let r = a
            .iq_ok("get", Some(&bare("bob")), "<ping xmlns='urn:xmpp:ping'/>")
            .await
            .unwrap();
        assert_eq!(r.attr("from"), Some(bare("bob").as_str()));
        send_chat(&mut a, &full("bob", "b"), "mark", "").await;
        let before = received_before(&mut b, "mark").await;
        assert!(
            !before.iter().any(|e| e.name == "iq"),
            "IQ to the bare JID reached a resource: {before:?}"
        );
    })
    .await
}

#[tokio::test]
async fn unknown_iq_namespace_is_service_unavailable() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        // RFC 6120 §8.4: to the server, to the own account, and without `to`.
        for to in [Some(DOMAIN.to_string()), Some(bare("alice")), None] {
            for kind in ["get", "set"] {
                let r = a
                    .iq(
                        kind,
                        to.as_deref(),
                        "<nothing xmlns='urn:example:unknown'/>",
                    )
                    .await
                    .unwrap();
                assert_eq!(r.attr("type"), Some("error"), "{r}");
                assert_eq!(
                    r.error_condition().as_deref(),
                    Some("service-unavailable"),
                    "{r}"
                );
                assert_eq!(r.error_type(), Some("cancel"), "{r}");
            }
        }
    })
    .await
}

#[tokio::test]
async fn results_and_errors_are_never_answered_with_errors() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        // RFC 6120 §8.2.3 and §8.3.1: no reply to results or errors.
        let err = "<error type='cancel'>\
                   <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>";
        a.send("<iq type='result' id='r1' to='localhost'/>")
            .await
            .unwrap();
        a.send(&format!(
            "<iq type='error' id='e1' to='localhost'>{err}</iq>"
        ))
        .await
        .unwrap();
        a.send("<iq type='result' id='r2' to='nobody@localhost'/>")
            .await
            .unwrap();
        a.send("<iq type='result' id='r3' to='bob@localhost/gone'/>")
            .await
            .unwrap();
        a.send("<iq type='result' id='r4' to='bob@localhost'/>")
            .await
            .unwrap();
        a.send(&format!(
            "<message type='error' id='e2' to='nobody@localhost'>{err}</message>"
        ))
        .await
        .unwrap();
        a.ping_server().await.unwrap();
        for id in ["r1", "e1", "r2", "r3", "r4", "e2"] {
            assert!(
                !has_id(a.pending.make_contiguous(), id),
                "{id} was answered: {:?}",
                a.pending
            );
        }
        send_chat(&mut a, &full("bob", "b"), "mark", "").await;
        let before = received_before(&mut b, "mark").await;
        assert!(
            !has_id(&before, "r4"),
            "result to the bare JID reached a resource"
        );
    })
    .await
}

#[tokio::test]
async fn presence_to_a_bare_jid_reaches_all_available_resources() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b1 = s.online("bob", "b1", 1).await;
        let mut b2 = s.online("bob", "b2", -1).await;
        // RFC 6121 §8.5.2.1.2: presence to the bare JID goes to every available resource.
        a.send("<presence to='bob@localhost' id='dp'><status>here</status></presence>")
            .await
            .unwrap();
        for c in [&mut b1, &mut b2] {
            let p = c
                .recv_matching(W, "directed presence", |e| {
                    e.name == "presence" && e.attr("id") == Some("dp")
                })
                .await
                .unwrap();
            assert_eq!(p.attr("from"), Some(full("alice", "a").as_str()));
            assert_eq!(p.child_text("status", NS_CLIENT).as_deref(), Some("here"));
        }
    })
    .await
}
