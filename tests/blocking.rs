//! XEP-0191 Blocking Command end to end: block, unblock, unblock all, pushes to every
//! interested resource; stanzas to and from a blocked JID are not delivered (presence both
//! ways), with the errors §3.3 names.

mod common;

use common::*;

const NS_BLOCKING: &str = "urn:xmpp:blocking";

async fn blocklist(c: &mut Client) -> Vec<String> {
    let r = c
        .iq_ok("get", None, &format!("<blocklist xmlns='{NS_BLOCKING}'/>"))
        .await
        .expect("blocklist");
    let list = r
        .child("blocklist", NS_BLOCKING)
        .unwrap_or_else(|| panic!("no blocklist: {}", r.to_xml()));
    let mut items: Vec<String> = list
        .elements()
        .filter(|e| e.is("item", NS_BLOCKING))
        .filter_map(|e| e.attr("jid").map(str::to_string))
        .collect();
    items.sort();
    items
}

async fn block(c: &mut Client, jids: &[&str]) {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    c.iq_ok(
        "set",
        None,
        &format!("<block xmlns='{NS_BLOCKING}'>{items}</block>"),
    )
    .await
    .expect("block");
}

async fn unblock(c: &mut Client, jids: &[&str]) {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    c.iq_ok(
        "set",
        None,
        &format!("<unblock xmlns='{NS_BLOCKING}'>{items}</unblock>"),
    )
    .await
    .expect("unblock");
}

/// The push IQ (`block` or `unblock`); answered with a result. Returns the item JIDs.
async fn expect_push(c: &mut Client, kind: &str) -> Vec<String> {
    let k = kind.to_string();
    let iq = c
        .recv_matching(W, &format!("{kind} push"), move |e| {
            e.name == "iq" && e.attr("type") == Some("set") && e.has_child(&k, NS_BLOCKING)
        })
        .await
        .unwrap_or_else(|e| panic!("{kind} push: {e}"));
    let from = iq.attr("from");
    assert!(
        from.is_none() || from == Some(c.bare_jid()),
        "push from {from:?}"
    );
    let id = iq.attr("id").unwrap_or("").to_string();
    c.send(&format!("<iq type='result' id='{id}'/>"))
        .await
        .unwrap();
    let mut items: Vec<String> = iq
        .child(kind, NS_BLOCKING)
        .map(|b| {
            b.elements()
                .filter_map(|e| e.attr("jid").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    items.sort();
    items
}

#[tokio::test]
async fn block_unblock_and_pushes_to_every_interested_resource() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a1 = s.online("alice", "a1", 0).await;
        let mut a2 = s.online("alice", "a2", 0).await;
        let info = a1
            .iq_ok(
                "get",
                Some(DOMAIN),
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await
            .unwrap();
        assert!(info.to_xml().contains(NS_BLOCKING), "{}", info.to_xml());
        assert!(blocklist(&mut a1).await.is_empty());
        assert!(blocklist(&mut a2).await.is_empty());

        block(&mut a1, &["bob@localhost", "spam.example"]).await;
        for c in [&mut a1, &mut a2] {
            assert_eq!(
                expect_push(c, "block").await,
                vec!["bob@localhost".to_string(), "spam.example".to_string()]
            );
        }
        assert_eq!(
            blocklist(&mut a2).await,
            vec!["bob@localhost".to_string(), "spam.example".to_string()]
        );

        // An empty block is a bad request (§3.3).
        let r = a1
            .iq("set", None, &format!("<block xmlns='{NS_BLOCKING}'/>"))
            .await
            .unwrap();
        assert_eq!(
            r.error_condition().as_deref(),
            Some("bad-request"),
            "{}",
            r.to_xml()
        );

        unblock(&mut a2, &["spam.example"]).await;
        for c in [&mut a1, &mut a2] {
            assert_eq!(
                expect_push(c, "unblock").await,
                vec!["spam.example".to_string()]
            );
        }
        assert_eq!(blocklist(&mut a1).await, vec!["bob@localhost".to_string()]);

        // Unblock all: an empty push.
        block(&mut a1, &["carol@localhost"]).await;
        for c in [&mut a1, &mut a2] {
            expect_push(c, "block").await;
        }
        unblock(&mut a1, &[]).await;
        for c in [&mut a1, &mut a2] {
            assert!(expect_push(c, "unblock").await.is_empty());
        }
        assert!(blocklist(&mut a1).await.is_empty());

        // The list survives a restart.
        block(&mut a1, &["bob@localhost"]).await;
        a1.close().await.unwrap();
        a2.close().await.unwrap();
        let s = s.restart().await;
        let mut a = s.online("alice", "a", 0).await;
        assert_eq!(blocklist(&mut a).await, vec!["bob@localhost".to_string()]);
    })
    .await
}

#[tokio::test]
async fn blocked_messages_presence_and_iqs_are_not_delivered() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        checks::subscribe_both_ways(&mut a, &mut b).await;

        block(&mut a, &[&bare("bob")]).await;
        // Bob was subscribed: he sees alice go offline (§3.3).
        checks::expect_presence(&mut b, a.full_jid(), Some("unavailable")).await;
        // Forget whatever arrived before the block.
        a.ping_server().await.unwrap();
        a.pending.clear();

        // Bob's message: service-unavailable to him, nothing to alice.
        send_chat(&mut b, &bare("alice"), "m1", "are you there?").await;
        let err = expect_message(&mut b, "m1").await;
        assert_eq!(err.attr("type"), Some("error"));
        assert_eq!(
            err.error_condition().as_deref(),
            Some("service-unavailable")
        );
        // Bob's IQ to alice's full JID: service-unavailable.
        let r = b
            .iq("get", Some(a.full_jid()), "<ping xmlns='urn:xmpp:ping'/>")
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("service-unavailable"));
        // Bob's presence change does not reach alice.
        b.presence("", "<status>blocked?</status>").await.unwrap();
        b.ping_server().await.unwrap();
        a.ping_server().await.unwrap();
        let seen: Vec<_> = a.pending.iter().cloned().collect();
        assert!(
            !seen
                .iter()
                .any(|e| e.attr("from").is_some_and(|f| f.starts_with("bob@"))),
            "alice got something from bob: {seen:?}"
        );

        // Alice's message to bob: not-acceptable with <blocked/>.
        send_chat(&mut a, &bare("bob"), "m2", "hi bob").await;
        let err = expect_message(&mut a, "m2").await;
        assert_eq!(err.attr("type"), Some("error"));
        assert_eq!(err.error_condition().as_deref(), Some("not-acceptable"));
        let e = err.child("error", NS_CLIENT).unwrap();
        assert!(
            e.has_child("blocked", "urn:xmpp:blocking:errors"),
            "{}",
            err.to_xml()
        );
        // Alice's presence change does not reach bob.
        b.ping_server().await.unwrap();
        b.pending.clear();
        a.presence("", "<status>busy</status>").await.unwrap();
        a.ping_server().await.unwrap();
        b.ping_server().await.unwrap();
        let seen: Vec<_> = b.pending.drain(..).collect();
        assert!(
            !seen
                .iter()
                .any(|e| e.name == "presence"
                    && e.attr("from").is_some_and(|f| f.starts_with("alice@"))),
            "bob got alice's presence: {seen:?}"
        );

        // Unblock: bob gets alice's current presence and messages flow again (§3.4).
        unblock(&mut a, &[&bare("bob")]).await;
        let p = checks::expect_presence(&mut b, a.full_jid(), None).await;
        assert_eq!(p.child_text("status", NS_CLIENT).as_deref(), Some("busy"));
        send_chat(&mut b, &bare("alice"), "m3", "again").await;
        expect_message(&mut a, "m3").await;
        send_chat(&mut a, &bare("bob"), "m4", "yes").await;
        let m = expect_message(&mut b, "m4").await;
        assert_eq!(m.attr("type"), Some("chat"));
    })
    .await
}

#[tokio::test]
async fn a_blocked_domain_covers_its_users() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        // Blocking bob's full JID only covers that resource.
        block(&mut a, &[&full("bob", "elsewhere")]).await;
        send_chat(&mut b, &bare("alice"), "ok1", "passes").await;
        expect_message(&mut a, "ok1").await;
        // The domain blocks every user at it (§5), but never the server itself.
        block(&mut a, &[DOMAIN]).await;
        send_chat(&mut b, &bare("alice"), "no1", "blocked").await;
        let err = expect_message(&mut b, "no1").await;
        assert_eq!(
            err.error_condition().as_deref(),
            Some("service-unavailable")
        );
        a.ping_server().await.unwrap();
        assert!(!a.pending.iter().any(|e| e.attr("id") == Some("no1")));
        // Roster pushes from the account itself still arrive.
        a.roster_set(&bare("carol"), "", "").await.unwrap();
    })
    .await
}

/// A deleted account takes its blocklist with it: a new account of the same name starts
/// with an empty one (the module's cache included).
#[tokio::test]
async fn a_new_account_of_a_deleted_name_blocks_nobody() {
    bounded(async {
        let s = TestServer::start_with(Options {
            registration: true,
            ..Options::default()
        })
        .await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        block(&mut a, &[&bare("bob")]).await;
        assert_eq!(blocklist(&mut a).await, [bare("bob")]);
        // XEP-0077 §3.2: the result first, then the stream closes.
        a.iq_ok(
            "set",
            None,
            "<query xmlns='jabber:iq:register'><remove/></query>",
        )
        .await
        .expect("the removal is answered before the stream closes");
        drop(a);
        assert!(
            s.server()
                .state()
                .storage
                .get_credentials(&bare("alice"))
                .expect("storage")
                .is_none(),
            "alice was deleted"
        );
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a2", 0).await;
        assert!(blocklist(&mut a).await.is_empty());
    })
    .await
}
