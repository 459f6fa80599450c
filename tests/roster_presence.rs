//! Roster management (RFC 6121 §2, XEP-0237 versioning), subscriptions (§3) and presence
//! (§4).

mod common;

use common::checks::{
    expect_contact_unavailable, expect_presence, expect_presence_where, expect_push, roster_item,
    subscribe_both_ways,
};
use common::*;

const ROSTER_VER: &str = "urn:xmpp:features:rosterver";
const PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";

fn items(iq: &Element) -> Vec<Element> {
    iq.child("query", NS_ROSTER)
        .map(|q| q.children_named("item", NS_ROSTER).cloned().collect())
        .unwrap_or_default()
}

/// Two available users with mutual ("both") subscriptions.
async fn friends(s: &TestServer) -> (Client, Client) {
    let mut a = s.online("alice", "a", 0).await;
    let mut b = s.online("bob", "b", 0).await;
    subscribe_both_ways(&mut a, &mut b).await;
    (a, b)
}

#[tokio::test]
async fn empty_roster() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let r = a.roster_get().await.unwrap();
        assert!(r.child("query", NS_ROSTER).is_some(), "{r}");
        assert!(items(&r).is_empty(), "{r}");
    })
    .await
}

#[tokio::test]
async fn roster_set_pushes_to_every_interested_resource_and_delete() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "carol"]).await;
        let mut a1 = s.login("alice", "alicepw", "a1").await;
        let mut a2 = s.login("alice", "alicepw", "a2").await;
        a1.roster_get().await.unwrap();
        a2.roster_get().await.unwrap();
        let carol = bare("carol");
        // RFC 6121 §2.3: set, result, then a push to every interested resource (§2.1.6).
        let r = a1
            .roster_set(&carol, " name='Carol'", "<group>Friends</group>")
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("result"), "{r}");
        for c in [&mut a1, &mut a2] {
            let push = expect_push(c, &carol, "none", None).await;
            let item = roster_item(&push, &carol).unwrap();
            assert_eq!(item.attr("name"), Some("Carol"));
            assert_eq!(
                item.child_text("group", NS_ROSTER).as_deref(),
                Some("Friends")
            );
        }
        let r = a2.roster_get().await.unwrap();
        let all = items(&r);
        assert_eq!(all.len(), 1, "{r}");
        assert_eq!(all[0].attr("jid"), Some(carol.as_str()));
        assert_eq!(all[0].attr("subscription"), Some("none"));
        // Update: a push with the new name.
        a2.roster_set(&carol, " name='C.'", "").await.unwrap();
        for c in [&mut a1, &mut a2] {
            let push = expect_push(c, &carol, "none", None).await;
            assert_eq!(roster_item(&push, &carol).unwrap().attr("name"), Some("C."));
        }
        // RFC 6121 §2.5: delete, with a push of subscription="remove".
        let r = a1
            .roster_set(&carol, " subscription='remove'", "")
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("result"), "{r}");
        for c in [&mut a1, &mut a2] {
            expect_push(c, &carol, "remove", None).await;
        }
        assert!(items(&a1.roster_get().await.unwrap()).is_empty());
    })
    .await
}

#[tokio::test]
async fn invalid_roster_sets_are_refused() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        // RFC 6121 §2.3.3: more than one item is bad-request.
        let r = a
            .iq(
                "set",
                None,
                "<query xmlns='jabber:iq:roster'><item jid='x@localhost'/>\
                 <item jid='y@localhost'/></query>",
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(r.error_condition().as_deref(), Some("bad-request"));
        // RFC 6121 §2.3.3: only the account itself may change its roster: forbidden (or
        // service-unavailable from a server that offers no roster service at other accounts'
        // JIDs, as Prosody does). Bob's roster stays empty either way.
        let r = a
            .iq(
                "set",
                Some("bob@localhost"),
                "<query xmlns='jabber:iq:roster'><item jid='x@localhost'/></query>",
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        let cond = r.error_condition().unwrap_or_default();
        assert!(cond == "forbidden" || cond == "service-unavailable", "{r}");
        let mut b = s.login("bob", "bobpw", "b").await;
        assert!(items(&b.roster_get().await.unwrap()).is_empty());
        // Removing an item that is not there is item-not-found (§2.5.3).
        let r = a
            .roster_set("nobody@localhost", " subscription='remove'", "")
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"));
        assert!(items(&a.roster_get().await.unwrap()).is_empty());
    })
    .await
}

#[tokio::test]
async fn roster_versioning() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let f = a.features.clone().unwrap();
        // XEP-0237 / RFC 6121 §2.6.1: advertised as a stream feature.
        assert!(f.has_child("ver", ROSTER_VER), "{f}");
        let r = a
            .iq_ok("get", None, "<query xmlns='jabber:iq:roster' ver=''/>")
            .await
            .unwrap();
        let v1 = r
            .child("query", NS_ROSTER)
            .and_then(|q| q.attr("ver"))
            .unwrap_or_else(|| panic!("no ver: {r}"))
            .to_string();
        // Same version: an empty result (no <query/>), changes come as pushes (§2.6.3).
        let r = a
            .iq_ok(
                "get",
                None,
                &format!("<query xmlns='jabber:iq:roster' ver='{}'/>", escape(&v1)),
            )
            .await
            .unwrap();
        assert!(r.children.is_empty(), "unchanged roster not empty: {r}");
        a.roster_set("carol@localhost", "", "").await.unwrap();
        let push = expect_push(&mut a, "carol@localhost", "none", None).await;
        let v2 = push
            .child("query", NS_ROSTER)
            .and_then(|q| q.attr("ver"))
            .unwrap_or_else(|| panic!("push without ver: {push}"))
            .to_string();
        assert_ne!(v1, v2);
        // Old version: either the whole roster at v2, or an empty result and pushes.
        let r = a
            .iq_ok(
                "get",
                None,
                &format!("<query xmlns='jabber:iq:roster' ver='{}'/>", escape(&v1)),
            )
            .await
            .unwrap();
        match r.child("query", NS_ROSTER) {
            Some(q) => {
                assert_eq!(q.attr("ver"), Some(v2.as_str()), "{r}");
                assert!(roster_item(&r, "carol@localhost").is_some(), "{r}");
            }
            None => {
                let push = expect_push(&mut a, "carol@localhost", "none", None).await;
                assert_eq!(
                    push.child("query", NS_ROSTER).unwrap().attr("ver"),
                    Some(v2.as_str())
                );
            }
        }
        // Current version again: empty.
        let r = a
            .iq_ok(
                "get",
                None,
                &format!("<query xmlns='jabber:iq:roster' ver='{}'/>", escape(&v2)),
            )
            .await
            .unwrap();
        assert!(r.children.is_empty(), "{r}");
    })
    .await
}

#[tokio::test]
async fn subscription_handshake_to_both() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let (mut a, mut b) = friends(&s).await;
        for (c, other) in [(&mut a, bare("bob")), (&mut b, bare("alice"))] {
            let r = c.roster_get().await.unwrap();
            let item = roster_item(&r, &other).unwrap_or_else(|| panic!("{r}"));
            assert_eq!(item.attr("subscription"), Some("both"), "{r}");
            assert_eq!(item.attr("ask"), None, "{r}");
        }
    })
    .await
}

#[tokio::test]
async fn subscription_request_while_contact_offline_is_delivered_on_login() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        a.send("<presence to='bob@localhost' type='subscribe'/>")
            .await
            .unwrap();
        expect_push(&mut a, &bare("bob"), "none", Some("subscribe")).await;
        a.ping_server().await.unwrap();
        // RFC 6121 §3.1.3: kept and delivered when the contact becomes available.
        let mut b = s.online("bob", "b", 0).await;
        expect_presence(&mut b, &bare("alice"), Some("subscribe")).await;
    })
    .await
}

#[tokio::test]
async fn pre_approval() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        let f = b.features.clone().unwrap();
        // RFC 6121 §3.4: advertised as a stream feature.
        assert!(f.has_child("sub", PRE_APPROVAL), "{f}");
        b.send("<presence to='alice@localhost' type='subscribed'/>")
            .await
            .unwrap();
        let push = expect_push(&mut b, &bare("alice"), "none", None).await;
        assert_eq!(
            roster_item(&push, &bare("alice")).unwrap().attr("approved"),
            Some("true"),
            "{push}"
        );
        // Alice's request is approved by the server without asking Bob.
        a.send("<presence to='bob@localhost' type='subscribe'/>")
            .await
            .unwrap();
        // RFC 6121 §3.1.2: the outbound request is pushed first (ask='subscribe').
        expect_push(&mut a, &bare("bob"), "none", Some("subscribe")).await;
        expect_presence(&mut a, &bare("bob"), Some("subscribed")).await;
        expect_push(&mut a, &bare("bob"), "to", None).await;
        expect_presence(&mut a, &full("bob", "b"), None).await;
        expect_push(&mut b, &bare("alice"), "from", None).await;
        send_chat(&mut a, &full("bob", "b"), "mark", "").await;
        let before = received_before(&mut b, "mark").await;
        assert!(
            !before
                .iter()
                .any(|e| e.name == "presence" && e.attr("type") == Some("subscribe")),
            "the pre-approved request reached bob: {before:?}"
        );
    })
    .await
}

#[tokio::test]
async fn unsubscribe() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let (mut a, mut b) = friends(&s).await;
        // RFC 6121 §3.3: alice stops her subscription to bob's presence.
        a.send("<presence to='bob@localhost' type='unsubscribe'/>")
            .await
            .unwrap();
        expect_push(&mut a, &bare("bob"), "from", None).await;
        expect_presence(&mut b, &bare("alice"), Some("unsubscribe")).await;
        expect_push(&mut b, &bare("alice"), "to", None).await;
        // Alice learns that bob's resources are unavailable to her.
        expect_contact_unavailable(&mut a, &full("bob", "b")).await;
        // Bob's later presence changes do not reach alice any more.
        b.presence("", "<status>after-unsubscribe</status>")
            .await
            .unwrap();
        send_chat(&mut b, &full("alice", "a"), "mark", "").await;
        let before = received_before(&mut a, "mark").await;
        assert!(
            !before.iter().any(|e| e.name == "presence"
                && e.child_text("status", NS_CLIENT).as_deref() == Some("after-unsubscribe")),
            "presence after unsubscribe: {before:?}"
        );
    })
    .await
}

#[tokio::test]
async fn unsubscribed_cancels_a_subscription() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let (mut a, mut b) = friends(&s).await;
        // RFC 6121 §3.2: bob cancels alice's subscription to his presence.
        b.send("<presence to='alice@localhost' type='unsubscribed'/>")
            .await
            .unwrap();
        expect_push(&mut b, &bare("alice"), "to", None).await;
        expect_presence(&mut a, &bare("bob"), Some("unsubscribed")).await;
        expect_push(&mut a, &bare("bob"), "from", None).await;
        expect_contact_unavailable(&mut a, &full("bob", "b")).await;
    })
    .await
}

#[tokio::test]
async fn removing_a_contact_cancels_both_subscriptions() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let (mut a, mut b) = friends(&s).await;
        // RFC 6121 §2.5.2: the server sends unsubscribe and unsubscribed to the contact.
        a.roster_set(&bare("bob"), " subscription='remove'", "")
            .await
            .unwrap();
        expect_push(&mut a, &bare("bob"), "remove", None).await;
        expect_presence(&mut b, &bare("alice"), Some("unsubscribe")).await;
        expect_presence(&mut b, &bare("alice"), Some("unsubscribed")).await;
        // Bob's item goes from "both" to "none", possibly through "to" or "from" (one push
        // per change).
        let push = checks::roster_push(&mut b, &bare("alice")).await;
        let sub = roster_item(&push, &bare("alice"))
            .unwrap()
            .attr("subscription")
            .map(str::to_string);
        if sub.as_deref() == Some("to") || sub.as_deref() == Some("from") {
            expect_push(&mut b, &bare("alice"), "none", None).await;
        } else {
            assert_eq!(sub.as_deref(), Some("none"), "{push}");
        }
        expect_contact_unavailable(&mut b, &full("alice", "a")).await;
    })
    .await
}

#[tokio::test]
async fn initial_presence_gets_the_contacts_current_presence() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let (a, mut b) = friends(&s).await;
        a.close().await.unwrap();
        b.presence("", "<show>away</show><status>lunch</status>")
            .await
            .unwrap();
        b.ping_server().await.unwrap();
        // RFC 6121 §4.2.2: the server probes (locally: looks up) the contacts' presence.
        let mut a2 = s.online("alice", "a2", 0).await;
        let p = expect_presence(&mut a2, &full("bob", "b"), None).await;
        assert_eq!(
            p.child_text("show", NS_CLIENT).as_deref(),
            Some("away"),
            "{p}"
        );
        assert_eq!(
            p.child_text("status", NS_CLIENT).as_deref(),
            Some("lunch"),
            "{p}"
        );
        // And bob sees alice's new resource come online.
        expect_presence(&mut b, &full("alice", "a2"), None).await;
    })
    .await
}

#[tokio::test]
async fn presence_is_broadcast_to_subscribers_and_own_resources_only() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol"]).await;
        let (mut a, mut b) = friends(&s).await;
        let mut b2 = s.online("bob", "b2", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        b.presence("", "<show>dnd</show>").await.unwrap();
        // RFC 6121 §4.4.2: to subscribers and to the user's other available resources.
        for c in [&mut a, &mut b2] {
            expect_presence_where(c, &full("bob", "b"), None, "show dnd", |p| {
                p.child_text("show", NS_CLIENT).as_deref() == Some("dnd")
            })
            .await;
        }
        send_chat(&mut b, &full("carol", "c"), "mark", "").await;
        let before = received_before(&mut c, "mark").await;
        assert!(
            !before
                .iter()
                .any(|e| e.name == "presence"
                    && e.attr("from").is_some_and(|f| f.starts_with("bob@"))),
            "presence reached a non-subscriber: {before:?}"
        );
    })
    .await
}

#[tokio::test]
async fn directed_presence_and_its_unavailable() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        // RFC 6121 §4.6: directed presence to a non-contact.
        a.send("<presence to='carol@localhost/c'><status>hi carol</status></presence>")
            .await
            .unwrap();
        let p = expect_presence(&mut c, &full("alice", "a"), None).await;
        assert_eq!(
            p.child_text("status", NS_CLIENT).as_deref(),
            Some("hi carol")
        );
        // §4.6.3: unavailable presence reaches entities that got directed presence.
        a.presence(" type='unavailable'", "").await.unwrap();
        expect_presence(&mut c, &full("alice", "a"), Some("unavailable")).await;
    })
    .await
}

#[tokio::test]
async fn disconnect_sends_unavailable_to_subscribers() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let (a, mut b) = friends(&s).await;
        // Clean close (RFC 6121 §4.5.2: the server generates unavailable presence).
        a.close().await.unwrap();
        expect_presence(&mut b, &full("alice", "a"), Some("unavailable")).await;
        // Abrupt close: the TCP connection just goes away.
        let a2 = s.online("alice", "a2", 0).await;
        expect_presence(&mut b, &full("alice", "a2"), None).await;
        drop(a2);
        expect_presence(&mut b, &full("alice", "a2"), Some("unavailable")).await;
    })
    .await
}
