//! XEP-0357 Push Notifications end to end. The app server's push service is a local account's
//! session (`pushserver@localhost/app`) driven by the test client, so each test sees the
//! exact publish IQ the server sends and answers it with a result or an error.

mod common;

use common::*;

const NS_PUSH: &str = "urn:xmpp:push:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_DATA: &str = "jabber:x:data";
const APP: &str = "pushserver@localhost/app";
const SECRET: &str = "eruio234vzxc2kla-91";

fn enable_xml(node: &str) -> String {
    format!(
        "<enable xmlns='{NS_PUSH}' jid='{APP}' node='{node}'>\
         <x xmlns='{NS_DATA}' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='secret'><value>{SECRET}</value></field></x></enable>"
    )
}

async fn enable(c: &mut Client, node: &str) {
    c.iq_ok("set", None, &enable_xml(node))
        .await
        .expect("push enable");
}

fn is_publish(e: &Element) -> bool {
    e.name == "iq" && e.attr("type") == Some("set") && e.has_child("pubsub", NS_PUBSUB)
}

/// The next publish IQ the app server gets.
async fn expect_publish(app: &mut Client) -> Element {
    app.recv_matching(W, "push publish IQ", is_publish)
        .await
        .expect("a push notification")
}

/// Answer a publish with a result, or with an error of this type and condition.
async fn answer(app: &mut Client, iq: &Element, error: Option<(&str, &str)>) {
    let to = iq.attr("from").expect("publish from");
    let id = iq.attr("id").expect("publish id");
    let xml = match error {
        None => format!("<iq type='result' to='{to}' id='{id}'/>"),
        Some((kind, cond)) => format!(
            "<iq type='error' to='{to}' id='{id}'><error type='{kind}'>\
             <{cond} xmlns='{NS_STANZA_ERR}'/></error></iq>"
        ),
    };
    app.send(&xml).await.unwrap();
    // Barrier: the server handled the answer.
    app.ping_server().await.unwrap();
}

/// The summary form's fields: (var, value).
fn summary(iq: &Element) -> Vec<(String, String)> {
    let x = iq
        .child("pubsub", NS_PUBSUB)
        .and_then(|p| p.child("publish", NS_PUBSUB))
        .and_then(|p| p.child("item", NS_PUBSUB))
        .and_then(|i| i.child("notification", NS_PUSH))
        .and_then(|n| n.child("x", NS_DATA))
        .unwrap_or_else(|| panic!("no notification form: {}", iq.to_xml()));
    x.children_named("field", NS_DATA)
        .map(|f| {
            (
                f.attr("var").unwrap_or_default().to_string(),
                f.child_text("value", NS_DATA).unwrap_or_default(),
            )
        })
        .collect()
}

fn field(iq: &Element, var: &str) -> Option<String> {
    summary(iq)
        .into_iter()
        .find(|(v, _)| v == var)
        .map(|(_, val)| val)
}

fn node_of(iq: &Element) -> Option<String> {
    iq.child("pubsub", NS_PUBSUB)
        .and_then(|p| p.child("publish", NS_PUBSUB))
        .and_then(|p| p.attr("node"))
        .map(str::to_string)
}

/// No publish IQ reached the app server before a marker message bob sends it afterwards.
async fn assert_no_publish(app: &mut Client, bob: &mut Client, marker: &str) {
    send_chat(bob, APP, marker, "marker").await;
    let before = received_before(app, marker).await;
    let publishes: Vec<_> = before.iter().filter(|e| is_publish(e)).collect();
    assert!(
        publishes.is_empty(),
        "unexpected notifications: {publishes:?}"
    );
}

/// alice (phone, subscribed with bob), bob, and the app server's session.
async fn setup(s: &TestServer) -> (Client, Client, Client) {
    s.add_users(&["alice", "bob", "pushserver"]).await;
    let app = s.login("pushserver", "pushserverpw", "app").await;
    let mut a = s.online("alice", "phone", 0).await;
    let mut b = s.online("bob", "pc", 0).await;
    checks::subscribe_both_ways(&mut a, &mut b).await;
    for c in [&mut a, &mut b] {
        c.ping_server().await.unwrap();
        c.pending.clear();
    }
    (a, b, app)
}

/// alice's phone closes its stream (no stream management): the session ends, which bob sees.
async fn close_and_wait(a: Client, b: &mut Client) {
    a.close().await.unwrap();
    checks::expect_contact_unavailable(b, &full("alice", "phone")).await;
}

fn no_rate_limit() -> Options {
    Options {
        extra_config: Some("[push]\nmin_interval_secs = 0\n".into()),
        ..Options::default()
    }
}

#[tokio::test]
async fn push_feature_is_on_the_account() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "phone", 0).await;
        let r = a
            .iq_ok(
                "get",
                Some(&bare("alice")),
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await
            .unwrap();
        let q = r
            .child("query", "http://jabber.org/protocol/disco#info")
            .unwrap();
        assert!(
            q.children_named("feature", "http://jabber.org/protocol/disco#info")
                .any(|f| f.attr("var") == Some(NS_PUSH)),
            "{}",
            r.to_xml()
        );
        // Only the account itself may enable, and only with a service JID.
        s.add_users(&["bob"]).await;
        let mut b = s.online("bob", "pc", 0).await;
        let e = b
            .iq("set", Some(&bare("alice")), &enable_xml("x"))
            .await
            .unwrap();
        assert_eq!(
            e.error_condition().as_deref(),
            Some("forbidden"),
            "{}",
            e.to_xml()
        );
        let e = a
            .iq(
                "set",
                None,
                &format!("<enable xmlns='{NS_PUSH}' node='n'/>"),
            )
            .await
            .unwrap();
        assert_eq!(
            e.error_condition().as_deref(),
            Some("bad-request"),
            "{}",
            e.to_xml()
        );
    })
    .await
}

/// Enable, the session ends, a burst of messages arrives: exactly one notification, to the
/// node, with the summary form and the publish options, from the server.
#[tokio::test]
async fn offline_messages_wake_the_device_once() {
    bounded(async {
        let s = TestServer::start().await;
        let (mut a, mut b, mut app) = setup(&s).await;
        enable(&mut a, "node-1").await;
        close_and_wait(a, &mut b).await;

        for i in 1..=3 {
            send_chat(&mut b, &bare("alice"), &format!("m{i}"), "hello <there>").await;
        }
        let iq = expect_publish(&mut app).await;
        assert_eq!(iq.attr("from"), Some("localhost"), "{}", iq.to_xml());
        assert_eq!(iq.attr("to"), Some(APP));
        assert_eq!(node_of(&iq).as_deref(), Some("node-1"));
        assert_eq!(
            field(&iq, "FORM_TYPE").as_deref(),
            Some("urn:xmpp:push:summary")
        );
        assert_eq!(field(&iq, "message-count").as_deref(), Some("1"));
        assert_eq!(
            field(&iq, "last-message-sender").as_deref(),
            Some(full("bob", "pc").as_str())
        );
        assert_eq!(field(&iq, "last-message-body"), None, "no body by default");
        assert!(!iq.to_xml().contains("there"), "{}", iq.to_xml());
        let options = iq
            .child("pubsub", NS_PUBSUB)
            .and_then(|p| p.child("publish-options", NS_PUBSUB))
            .and_then(|p| p.child("x", NS_DATA))
            .unwrap_or_else(|| panic!("no publish-options: {}", iq.to_xml()));
        assert!(options
            .children_named("field", NS_DATA)
            .any(|f| f.attr("var") == Some("secret")
                && f.child_text("value", NS_DATA).as_deref() == Some(SECRET)));
        answer(&mut app, &iq, None).await;
        // The other two of the burst did not wake it again.
        assert_no_publish(&mut app, &mut b, "marker-1").await;

        // The messages themselves wait offline.
        let mut a = s.online("alice", "phone", 0).await;
        for i in 1..=3 {
            expect_message(&mut a, &format!("m{i}")).await;
        }
    })
    .await
}

/// With stream management, the phone vanishes without closing its stream (its session
/// hibernates, waiting for resumption): a message queued for it is notified, and bob never
/// sees alice go offline.
#[tokio::test]
async fn hibernating_session_is_notified() {
    bounded(async {
        let s = TestServer::start().await;
        let (mut a, mut b, mut app) = setup(&s).await;
        let enabled = a.sm_enable(true).await.unwrap();
        assert_eq!(enabled.attr("resume"), Some("true"));
        enable(&mut a, "sm-node").await;
        drop(a);

        send_chat(&mut b, &full("alice", "phone"), "h1", "are you there?").await;
        let iq = expect_publish(&mut app).await;
        assert_eq!(node_of(&iq).as_deref(), Some("sm-node"));
        assert_eq!(
            field(&iq, "last-message-sender").as_deref(),
            Some(full("bob", "pc").as_str())
        );
        answer(&mut app, &iq, None).await;
        b.ping_server().await.unwrap();
        assert!(
            !b.pending
                .iter()
                .any(|e| e.name == "presence" && e.attr("type") == Some("unavailable")),
            "the session ended instead of hibernating: {:?}",
            b.pending
        );
        // A chat state alone wakes nobody.
        b.send(&format!(
            "<message to='{}' type='chat' id='cs'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>",
            full("alice", "phone")
        ))
        .await
        .unwrap();
        assert_no_publish(&mut app, &mut b, "marker-h").await;
    })
    .await
}

#[tokio::test]
async fn disable_stops_notifications() {
    bounded(async {
        let s = TestServer::start_with(no_rate_limit()).await;
        let (mut a, mut b, mut app) = setup(&s).await;
        enable(&mut a, "n1").await;
        enable(&mut a, "n2").await;
        a.iq_ok(
            "set",
            None,
            &format!("<disable xmlns='{NS_PUSH}' jid='{APP}' node='n1'/>"),
        )
        .await
        .unwrap();
        close_and_wait(a, &mut b).await;
        send_chat(&mut b, &bare("alice"), "d1", "one").await;
        let iq = expect_publish(&mut app).await;
        assert_eq!(node_of(&iq).as_deref(), Some("n2"), "only n2 is left");
        answer(&mut app, &iq, None).await;
        assert_no_publish(&mut app, &mut b, "marker-d1").await;

        // Disable every node of the service.
        let mut a = s.online("alice", "phone", 0).await;
        a.iq_ok(
            "set",
            None,
            &format!("<disable xmlns='{NS_PUSH}' jid='{APP}'/>"),
        )
        .await
        .unwrap();
        close_and_wait(a, &mut b).await;
        send_chat(&mut b, &bare("alice"), "d2", "two").await;
        assert_no_publish(&mut app, &mut b, "marker-d2").await;
    })
    .await
}

#[tokio::test]
async fn an_error_from_the_app_server_disables_the_registration() {
    bounded(async {
        let s = TestServer::start_with(no_rate_limit()).await;
        let (mut a, mut b, mut app) = setup(&s).await;
        enable(&mut a, "gone-node").await;
        close_and_wait(a, &mut b).await;

        // Two messages, two notifications (no rate limit here), counted.
        send_chat(&mut b, &bare("alice"), "e1", "one").await;
        let iq = expect_publish(&mut app).await;
        assert_eq!(field(&iq, "message-count").as_deref(), Some("1"));
        answer(&mut app, &iq, None).await;
        send_chat(&mut b, &bare("alice"), "e2", "two").await;
        let iq = expect_publish(&mut app).await;
        assert_eq!(field(&iq, "message-count").as_deref(), Some("2"));
        // The app dropped the node.
        answer(&mut app, &iq, Some(("cancel", "item-not-found"))).await;
        send_chat(&mut b, &bare("alice"), "e3", "three").await;
        assert_no_publish(&mut app, &mut b, "marker-e").await;
    })
    .await
}

#[tokio::test]
async fn registrations_survive_a_restart() {
    bounded(async {
        let s = TestServer::start().await;
        let (mut a, b, app) = setup(&s).await;
        enable(&mut a, "kept-node").await;
        drop((a, b, app));
        let s = s.restart().await;
        let mut app = s.login("pushserver", "pushserverpw", "app").await;
        let mut b = s.online("bob", "pc", 0).await;
        send_chat(&mut b, &bare("alice"), "r1", "after the restart").await;
        let iq = expect_publish(&mut app).await;
        assert_eq!(node_of(&iq).as_deref(), Some("kept-node"));
        assert_eq!(
            field(&iq, "last-message-sender").as_deref(),
            Some(full("bob", "pc").as_str())
        );
        answer(&mut app, &iq, None).await;
    })
    .await
}

/// An app server on a domain this server cannot reach yet (federation is issue 3): the
/// publish bounces with `remote-server-not-found` straight back into the module while it is
/// notifying. That is a transient error: nothing hangs, the other registration keeps
/// working message after message, and the sender sees no error.
#[tokio::test]
async fn unreachable_app_server_is_a_transient_error() {
    bounded(async {
        let s = TestServer::start_with(no_rate_limit()).await;
        let (mut a, mut b, mut app) = setup(&s).await;
        a.iq_ok(
            "set",
            None,
            &format!("<enable xmlns='{NS_PUSH}' jid='push.remote.example' node='far'/>"),
        )
        .await
        .unwrap();
        enable(&mut a, "near").await;
        close_and_wait(a, &mut b).await;
        for i in 1..=2 {
            send_chat(&mut b, &bare("alice"), &format!("u{i}"), "hi").await;
            let iq = expect_publish(&mut app).await;
            assert_eq!(node_of(&iq).as_deref(), Some("near"));
            assert_eq!(
                field(&iq, "message-count").as_deref(),
                Some(&*i.to_string())
            );
            answer(&mut app, &iq, None).await;
        }
        // bob is not bounced anything: the error went to the server, not to him.
        b.ping_server().await.unwrap();
        assert!(
            !b.pending.iter().any(|e| e.attr("type") == Some("error")),
            "{:?}",
            b.pending
        );
    })
    .await
}
