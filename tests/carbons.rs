//! XEP-0280 Message Carbons end to end: received and sent copies reach the other
//! carbons-enabled device, the `private`/`no-copy` hints are respected, a session that did
//! not enable carbons gets nothing.

mod common;

use common::*;

const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";

async fn enable(c: &mut Client) {
    c.iq_ok("set", None, &format!("<enable xmlns='{NS_CARBONS}'/>"))
        .await
        .expect("carbons enable");
}

/// The forwarded message inside a carbon of `kind` ("sent" or "received"), after checking
/// the wrapper (XEP-0280 §4, §5).
fn unwrap_carbon<'a>(wrapper: &'a Element, kind: &str, owner: &Client) -> &'a Element {
    assert_eq!(wrapper.attr("from"), Some(owner.bare_jid()), "{wrapper:?}");
    assert_eq!(wrapper.attr("to"), Some(owner.full_jid()), "{wrapper:?}");
    wrapper
        .child(kind, NS_CARBONS)
        .and_then(|k| k.child("forwarded", NS_FORWARD))
        .and_then(|f| f.child("message", NS_CLIENT))
        .unwrap_or_else(|| panic!("not a {kind} carbon: {}", wrapper.to_xml()))
}

async fn expect_carbon(c: &mut Client, kind: &str, id: &str) -> Element {
    let (k, i) = (kind.to_string(), id.to_string());
    c.recv_matching(W, &format!("{kind} carbon of {id}"), move |e| {
        e.name == "message"
            && e.child(&k, NS_CARBONS)
                .and_then(|s| s.child("forwarded", NS_FORWARD))
                .and_then(|f| f.child("message", NS_CLIENT))
                .is_some_and(|m| m.attr("id") == Some(i.as_str()))
    })
    .await
    .unwrap_or_else(|e| panic!("{kind} carbon {id}: {e}"))
}

/// Everything before the carbon of the marker message.
async fn before_carbon(c: &mut Client, kind: &str, marker: &str) -> Vec<Element> {
    let (k, m) = (kind.to_string(), marker.to_string());
    c.collect_until(W, move |e| {
        e.child(&k, NS_CARBONS)
            .and_then(|s| s.child("forwarded", NS_FORWARD))
            .and_then(|f| f.child("message", NS_CLIENT))
            .is_some_and(|msg| msg.attr("id") == Some(m.as_str()))
    })
    .await
    .unwrap_or_else(|e| panic!("marker {marker}: {e}"))
    .0
}

fn mentions(stanzas: &[Element], id: &str) -> bool {
    stanzas.iter().any(|e| {
        e.to_xml().contains(&format!("id='{id}'")) || e.to_xml().contains(&format!("id=\"{id}\""))
    })
}

#[tokio::test]
async fn carbons_feature_is_advertised() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let info = a
            .iq_ok(
                "get",
                Some(DOMAIN),
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await
            .unwrap();
        assert!(info.to_xml().contains(NS_CARBONS), "{}", info.to_xml());
        // Enabling twice and disabling twice are not errors (§8.1).
        enable(&mut a).await;
        enable(&mut a).await;
        for _ in 0..2 {
            a.iq_ok("set", None, &format!("<disable xmlns='{NS_CARBONS}'/>"))
                .await
                .unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn received_and_sent_copies_reach_the_second_device() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut phone = s.online("alice", "phone", 1).await;
        let mut desk = s.online("alice", "desk", 0).await;
        let mut other = s.online("alice", "other", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        enable(&mut phone).await;
        enable(&mut desk).await;

        // Received: the original goes to the top-priority resource, a copy to the other
        // carbons-enabled one (§4), with the archive id the recipient's server assigned.
        send_chat(&mut b, &bare("alice"), "in1", "hello alice").await;
        let original = expect_message(&mut phone, "in1").await;
        assert_eq!(
            original.child_text("body", NS_CLIENT).as_deref(),
            Some("hello alice")
        );
        let w = expect_carbon(&mut desk, "received", "in1").await;
        assert_eq!(w.attr("type"), Some("chat"), "the wrapper keeps the type");
        let fwd = unwrap_carbon(&w, "received", &desk);
        assert_eq!(fwd.attr("from"), Some(b.full_jid()));
        assert_eq!(fwd.attr("to"), Some(bare("alice").as_str()));
        assert_eq!(
            fwd.child_text("body", NS_CLIENT).as_deref(),
            Some("hello alice")
        );
        let sid = |m: &Element| {
            m.child("stanza-id", "urn:xmpp:sid:0")
                .and_then(|s| s.attr("id"))
                .map(str::to_string)
        };
        assert!(sid(fwd).is_some(), "{}", fwd.to_xml());
        assert_eq!(sid(fwd), sid(&original));

        // A message to the phone's full JID: the desk gets a received copy.
        send_chat(&mut b, &full("alice", "phone"), "in2", "to the phone").await;
        expect_message(&mut phone, "in2").await;
        expect_carbon(&mut desk, "received", "in2").await;

        // Sent: the desk gets a copy of what the phone sent (§5); the phone gets none.
        send_chat(&mut phone, &bare("bob"), "out1", "hello bob").await;
        let m = expect_message(&mut b, "out1").await;
        assert_eq!(m.attr("from"), Some(phone.full_jid()));
        let w = expect_carbon(&mut desk, "sent", "out1").await;
        let fwd = unwrap_carbon(&w, "sent", &desk);
        assert_eq!(fwd.attr("from"), Some(phone.full_jid()));
        assert_eq!(fwd.attr("to"), Some(bare("bob").as_str()));
        assert_eq!(
            fwd.child_text("body", NS_CLIENT).as_deref(),
            Some("hello bob")
        );

        // The resource that never enabled carbons got none of this; the sender no copy of
        // its own message. Markers: a message to each full JID.
        send_chat(&mut b, &full("alice", "other"), "mark-other", "").await;
        let seen = received_before(&mut other, "mark-other").await;
        for id in ["in1", "in2", "out1"] {
            assert!(
                !mentions(&seen, id),
                "{id} reached a session without carbons: {seen:?}"
            );
        }
        send_chat(&mut b, &full("alice", "phone"), "mark-phone", "").await;
        let seen = received_before(&mut phone, "mark-phone").await;
        assert!(
            !seen.iter().any(|e| e.has_child("sent", NS_CARBONS)),
            "the sender got a copy of its own message: {seen:?}"
        );

        // After disable, no more copies.
        desk.iq_ok("set", None, &format!("<disable xmlns='{NS_CARBONS}'/>"))
            .await
            .unwrap();
        send_chat(&mut b, &bare("alice"), "in3", "after disable").await;
        expect_message(&mut phone, "in3").await;
        send_chat(&mut b, &full("alice", "desk"), "mark-desk", "").await;
        let seen = received_before(&mut desk, "mark-desk").await;
        assert!(!mentions(&seen, "in3"), "{seen:?}");
    })
    .await
}

#[tokio::test]
async fn private_and_no_copy_hints_are_respected() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut phone = s.online("alice", "phone", 1).await;
        let mut desk = s.online("alice", "desk", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        enable(&mut phone).await;
        enable(&mut desk).await;

        let private = "<private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/>";
        // Outbound private message: delivered, not copied.
        phone
            .send(&format!(
                "<message to='{}' type='chat' id='p-out'><body>secret</body>{private}</message>",
                bare("bob")
            ))
            .await
            .unwrap();
        let m = expect_message(&mut b, "p-out").await;
        assert!(m.has_child("private", NS_CARBONS), "the element is left in place");
        send_chat(&mut phone, &bare("bob"), "mark-out", "").await;
        let seen = before_carbon(&mut desk, "sent", "mark-out").await;
        assert!(!mentions(&seen, "p-out"), "private message copied: {seen:?}");

        // Inbound private message: delivered to the phone, not copied to the desk.
        b.send(&format!(
            "<message to='{}' type='chat' id='p-in'><body>secret</body>{private}</message>",
            bare("alice")
        ))
        .await
        .unwrap();
        expect_message(&mut phone, "p-in").await;
        send_chat(&mut b, &bare("alice"), "mark-in", "").await;
        let seen = before_carbon(&mut desk, "received", "mark-in").await;
        assert!(!mentions(&seen, "p-in"), "private message copied: {seen:?}");

        // `<private/>` alone is enough (§6.1).
        b.send(&format!(
            "<message to='{}' type='chat' id='p2'><body>x</body><private xmlns='urn:xmpp:carbons:2'/></message>",
            bare("alice")
        ))
        .await
        .unwrap();
        expect_message(&mut phone, "p2").await;
        send_chat(&mut b, &bare("alice"), "mark-2", "").await;
        let seen = before_carbon(&mut desk, "received", "mark-2").await;
        assert!(!mentions(&seen, "p2"), "{seen:?}");
    })
    .await
}
