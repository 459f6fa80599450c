//! XEP-0352 Client State Indication: while inactive, presence updates and bare chat states
//! wait (only the latest per sender), messages with content go at once, `<active/>` flushes.

mod common;

use common::xmpp::sm::NS_CSI;
use common::*;

fn show_of(e: &Element) -> Option<String> {
    e.child_text("show", NS_CLIENT)
}

#[tokio::test]
async fn inactive_holds_presence_and_delivers_messages_then_active_flushes() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "phone", 0).await;
        assert!(
            a.features.as_ref().unwrap().has_child("csi", NS_CSI),
            "{:?}",
            a.features
        );
        let mut b = s.online("bob", "desk", 0).await;
        checks::subscribe_both_ways(&mut a, &mut b).await;
        for c in [&mut a, &mut b] {
            c.ping_server().await.unwrap();
            c.pending.clear();
        }
        let bob = full("bob", "desk");

        a.csi(false).await.unwrap();
        a.ping_server().await.unwrap();
        for show in ["away", "dnd", "xa"] {
            b.presence("", &format!("<show>{show}</show>")).await.unwrap();
        }
        // A bare chat state waits too; a message with a body does not.
        b.send(&format!(
            "<message to='{}' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            full("alice", "phone")
        ))
        .await
        .unwrap();
        b.ping_server().await.unwrap();
        send_chat(&mut b, &full("alice", "phone"), "hi", "hello").await;
        let before = received_before(&mut a, "hi").await;
        assert!(
            !before.iter().any(|e| e.name == "presence" || e.name == "message"),
            "held stanzas were delivered: {before:?}"
        );

        // The IQ reply below is processed after <active/> (RFC 6120 §10.1): everything held
        // arrives before it. Only bob's latest presence; the chat state is stale after his
        // message and is dropped.
        a.csi(true).await.unwrap();
        let id = a.new_id();
        a.send(&format!(
            "<iq type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await
        .unwrap();
        let flushed = received_before(&mut a, &id).await;
        let presences: Vec<_> = flushed
            .iter()
            .filter(|e| e.name == "presence" && e.attr("from") == Some(bob.as_str()))
            .collect();
        assert_eq!(presences.len(), 1, "{flushed:?}");
        assert_eq!(show_of(presences[0]).as_deref(), Some("xa"));
        assert!(!has_id(&flushed, "cs"), "{flushed:?}");

        // Active again: presence flows at once.
        b.presence("", "<show>chat</show>").await.unwrap();
        let p = checks::expect_presence(&mut a, &bob, None).await;
        assert_eq!(show_of(&p).as_deref(), Some("chat"));
    })
    .await
}

#[tokio::test]
async fn subscription_requests_are_not_held() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "phone", 0).await;
        let mut b = s.online("bob", "desk", 0).await;
        a.csi(false).await.unwrap();
        a.ping_server().await.unwrap();
        b.send(&format!(
            "<presence to='{}' type='subscribe'/>",
            bare("alice")
        ))
        .await
        .unwrap();
        checks::expect_presence(&mut a, &bare("bob"), Some("subscribe")).await;
    })
    .await
}
