use super::*;
use crate::modules::test_support::*;
use crate::storage::{RosterItem, Storage, Subscription};
use std::sync::Arc;

fn publish_el(node: &str, id: &str, payload: Element) -> Element {
    Element::new("pubsub", PUBSUB).with_child(
        Element::new("publish", PUBSUB)
            .with_attr("node", node)
            .with_child(
                Element::new("item", PUBSUB)
                    .with_attr("id", id)
                    .with_child(payload),
            ),
    )
}

fn items_el(node: &str) -> Element {
    Element::new("pubsub", PUBSUB).with_child(Element::new("items", PUBSUB).with_attr("node", node))
}

fn payload(text: &str) -> Element {
    Element::new("p", "urn:example:p").with_text(text)
}

fn routed(h: &Harness) -> Vec<Stanza> {
    h.server
        .routed
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default()
}

#[test]
fn declares_payloads_and_account_features() {
    let m = PepModule::default();
    assert_eq!(
        m.iq_payloads(),
        &[("pubsub", PUBSUB), ("pubsub", PUBSUB_OWNER)]
    );
    assert!(m.server_features().is_empty());
    assert!(m.account_features().contains(&PEP_FEATURE));
    assert!(m
        .account_features()
        .contains(&"http://jabber.org/protocol/pubsub#publish-options"));
}

#[test]
fn publish_then_items_and_the_domain_has_no_service() {
    let h = harness(config());
    let m = PepModule::default();
    let r = call(
        &m,
        &h.ctx,
        "a@example.org/r",
        None,
        true,
        publish_el("n", "1", payload("x")),
    );
    assert!(r.is_ok(), "{r:?}");
    let r = call(&m, &h.ctx, "a@example.org/r", None, false, items_el("n"))
        .expect("result")
        .expect("payload");
    let item = r
        .child("items", PUBSUB)
        .and_then(|i| i.child("item", PUBSUB))
        .expect("item");
    assert_eq!(item.attr("id"), Some("1"));
    assert_eq!(
        item.child("p", "urn:example:p").map(|p| p.text()),
        Some("x".into())
    );
    let r = call(
        &m,
        &h.ctx,
        "a@example.org/r",
        Some("example.org"),
        false,
        items_el("n"),
    );
    assert_eq!(condition(r), "service-unavailable");
}

#[test]
fn bad_publishes_are_refused() {
    let h = harness(config());
    let m = PepModule::default();
    let no_payload = Element::new("pubsub", PUBSUB).with_child(
        Element::new("publish", PUBSUB)
            .with_attr("node", "n")
            .with_child(Element::new("item", PUBSUB).with_attr("id", "1")),
    );
    let r = call(&m, &h.ctx, "a@example.org/r", None, true, no_payload);
    let e = r.expect_err("no payload");
    assert_eq!(e.app, Some(("payload-required", ERRORS)));
    let no_node = Element::new("pubsub", PUBSUB).with_child(Element::new("publish", PUBSUB));
    let e = call(&m, &h.ctx, "a@example.org/r", None, true, no_node).expect_err("no node");
    assert_eq!(e.app, Some(("nodeid-required", ERRORS)));
    let r = call(
        &m,
        &h.ctx,
        "a@example.org/r",
        None,
        true,
        Element::new("pubsub", PUBSUB),
    );
    assert_eq!(condition(r), "bad-request");
}

#[test]
fn notification_follows_caps_and_subscription() {
    let h = harness(config());
    let m = PepModule::default();
    h.store
        .put_roster_item(
            "a@example.org",
            &RosterItem {
                jid: "b@example.org".into(),
                subscription: Subscription::Both,
                ..Default::default()
            },
        )
        .expect("roster");
    let caps = Caps {
        hash: "sha-1".into(),
        node: "n".into(),
        ver: "v1".into(),
    };
    lock(&m.caps)
        .cache
        .insert(&caps, vec!["urn:example:n+notify".into()]);
    let with_caps = Element::new("presence", ns::CLIENT).with_child(
        Element::new("c", caps::CAPS)
            .with_attr("hash", "sha-1")
            .with_attr("node", "n")
            .with_attr("ver", "v1"),
    );
    let without = Element::new("presence", ns::CLIENT);
    {
        let mut avail = h.server.available.lock().expect("lock");
        avail.push((jid("b@example.org/caps"), with_caps.clone()));
        avail.push((jid("b@example.org/plain"), without));
        // A stranger with the right caps gets nothing from a presence node.
        avail.push((jid("c@example.org/caps"), with_caps));
    }
    call(
        &m,
        &h.ctx,
        "a@example.org/r",
        None,
        true,
        publish_el("urn:example:n", "1", payload("x")),
    )
    .expect("publish");
    let to: Vec<String> = routed(&h)
        .iter()
        .filter(|s| s.el().child("event", PUBSUB_EVENT).is_some())
        .filter_map(|s| s.attr("to").map(str::to_string))
        .collect();
    assert_eq!(to, ["b@example.org/caps"]);
}

#[test]
fn storage_failure_is_an_internal_error() {
    let h = harness(config()).with_storage(Arc::new(BrokenStore));
    let m = PepModule::default();
    let r = call(
        &m,
        &h.ctx,
        "a@example.org/r",
        None,
        true,
        publish_el("n", "1", payload("x")),
    );
    assert_eq!(condition(r), "internal-server-error");
    let r = call(&m, &h.ctx, "a@example.org/r", None, false, items_el("n"));
    assert_eq!(condition(r), "internal-server-error");
}

#[test]
fn private_bookmarks_become_0402_items() {
    let h = harness(config());
    let m = PepModule::default();
    let storage = Element::new("storage", convert::LEGACY).with_child(
        Element::new("conference", convert::LEGACY)
            .with_attr("jid", "Room@muc.example.org")
            .with_attr("autojoin", "1")
            .with_child(Element::new("nick", convert::LEGACY).with_text("A")),
    );
    let owner = jid("a@example.org");
    m.on_event(
        &h.ctx,
        &ModuleEvent::PrivateStored {
            account: &owner,
            element: &storage,
        },
    );
    let n = load(&h.ctx, &owner, convert::BOOKMARKS2)
        .expect("load")
        .expect("node");
    assert_eq!(n.config.access_model, AccessModel::Whitelist);
    assert_eq!(n.items.len(), 1);
    assert_eq!(n.items[0].id, "room@muc.example.org");
    let conf = n.items[0].payload.clone().expect("payload");
    assert_eq!(conf.attr("autojoin"), Some("true"));
    assert_eq!(
        conf.child_text("nick", convert::BOOKMARKS2).as_deref(),
        Some("A")
    );
    // The same document once more changes nothing (no second publish).
    let before = routed(&h).len();
    m.on_event(
        &h.ctx,
        &ModuleEvent::PrivateStored {
            account: &owner,
            element: &storage,
        },
    );
    assert_eq!(routed(&h).len(), before);
}
