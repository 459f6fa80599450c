//! Unit tests of the push module: enable/disable, who gets notified, the rate limit, and
//! answers from the app server. The server is a fake that records routed stanzas.

use std::sync::{Arc, Mutex};

use super::*;
use crate::config::Config;
use crate::modules::test_support::{call, condition, jid, FakeStore};
use crate::modules::ServerApi;
use crate::xml::parser::parse_element;

#[derive(Default)]
struct Fake {
    routed: Mutex<Vec<Stanza>>,
    bound: Mutex<Vec<Jid>>,
}

impl ServerApi for Fake {
    fn route(&self, stanza: Stanza) {
        self.routed.lock().unwrap().push(stanza);
    }
    fn sessions_of(&self, bare: &Jid) -> Vec<Jid> {
        let bound = self.bound.lock().unwrap();
        bound
            .iter()
            .filter(|j| j.to_bare() == *bare)
            .cloned()
            .collect()
    }
    fn close_account_sessions(&self, _bare: &Jid) {}
    fn available_resources(&self, _bare: &Jid) -> Vec<(Jid, Element)> {
        Vec::new()
    }
    fn emit(&self, _event: &ModuleEvent<'_>) {}
}

impl Fake {
    fn take(&self) -> Vec<Stanza> {
        std::mem::take(&mut *self.routed.lock().unwrap())
    }
}

struct T {
    m: PushModule,
    ctx: ModuleContext,
    fake: Arc<Fake>,
    store: Arc<FakeStore>,
}

fn setup(push: PushConfig) -> T {
    let fake = Arc::new(Fake::default());
    let store = Arc::new(FakeStore::default());
    let mut config = Config::default();
    config.server.domains = vec!["example.org".into()];
    config.push = push.clone();
    let ctx = ModuleContext {
        config: Arc::new(config),
        storage: store.clone(),
        server: fake.clone(),
        server_features: Arc::new(Vec::new()),
        account_features: Arc::new(Vec::new()),
    };
    T {
        m: PushModule::new(&push),
        ctx,
        fake,
        store,
    }
}

fn el(xml: &str) -> Element {
    parse_element(xml).unwrap()
}

const ALICE: &str = "alice@example.org";
const PHONE: &str = "alice@example.org/phone";
const APP: &str = "push.app.example";

fn enable(t: &T, from: &str, node: &str) -> IqResult {
    call(
        &t.m,
        &t.ctx,
        from,
        None,
        true,
        el(&format!(
            "<enable xmlns='urn:xmpp:push:0' jid='{APP}' node='{node}'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='secret'><value>s3cret</value></field></x></enable>"
        )),
    )
}

fn regs(t: &T) -> Vec<Registration> {
    registrations::load(t.store.as_ref(), ALICE).unwrap()
}

fn chat(body: &str) -> Stanza {
    Stanza(el(&format!(
        "<message xmlns='jabber:client' from='bob@example.org/pc' to='{ALICE}' type='chat'>\
         <body>{body}</body></message>"
    )))
}

fn offline(t: &T, s: &Stanza) {
    t.m.on_message_delivered(&t.ctx, &jid(ALICE), s, &[]);
}

fn count_of(iq: &Stanza) -> String {
    let x = iq
        .el()
        .child("pubsub", crate::modules::pep::PUBSUB)
        .and_then(|p| p.child("publish", crate::modules::pep::PUBSUB))
        .and_then(|p| p.child("item", crate::modules::pep::PUBSUB))
        .and_then(|i| i.child("notification", NS))
        .and_then(|n| n.child("x", ns::DATA_FORMS))
        .unwrap();
    crate::modules::pep::node::form_fields(x)
        .into_iter()
        .find(|(v, _)| v == "message-count")
        .map(|(_, vals)| vals.join(","))
        .unwrap()
}

fn no_limit() -> PushConfig {
    PushConfig {
        min_interval_secs: 0,
        ..PushConfig::default()
    }
}

#[test]
fn enable_stores_and_disable_removes() {
    let t = setup(PushConfig::default());
    assert_eq!(enable(&t, PHONE, "n1").unwrap(), None);
    let r = regs(&t);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].jid, jid(APP));
    assert_eq!(r[0].node.as_deref(), Some("n1"));
    assert!(r[0].options.is_some());
    // The same again replaces; another node adds.
    enable(&t, PHONE, "n1").unwrap();
    enable(&t, PHONE, "n2").unwrap();
    assert_eq!(regs(&t).len(), 2);
    let disable = |node: Option<&str>| {
        let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
        call(
            &t.m,
            &t.ctx,
            PHONE,
            Some(ALICE),
            true,
            el(&format!(
                "<disable xmlns='urn:xmpp:push:0' jid='{APP}'{node}/>"
            )),
        )
    };
    disable(Some("n1")).unwrap();
    assert_eq!(regs(&t).len(), 1);
    disable(None).unwrap();
    assert!(regs(&t).is_empty());
    // Disabling what is not there is fine.
    disable(None).unwrap();
}

#[test]
fn bad_requests_are_refused() {
    let t = setup(PushConfig::default());
    let req = |from: &str, to: Option<&str>, set: bool, xml: &str| {
        condition(call(&t.m, &t.ctx, from, to, set, el(xml)))
    };
    let e = "xmlns='urn:xmpp:push:0'";
    assert_eq!(
        req(PHONE, None, true, &format!("<enable {e} node='n'/>")),
        "bad-request"
    );
    assert_eq!(
        req(
            PHONE,
            None,
            true,
            &format!("<enable {e} jid='@@' node='n'/>")
        ),
        "jid-malformed"
    );
    assert_eq!(
        req(
            PHONE,
            None,
            true,
            &format!("<enable {e} jid='{ALICE}' node='n'/>")
        ),
        "bad-request",
        "the account itself"
    );
    assert_eq!(
        req(PHONE, None, false, &format!("<enable {e} jid='{APP}'/>")),
        "bad-request"
    );
    assert_eq!(
        req(
            PHONE,
            Some("bob@example.org"),
            true,
            &format!("<enable {e} jid='{APP}'/>")
        ),
        "forbidden"
    );
    assert_eq!(
        req(
            PHONE,
            Some("example.org"),
            true,
            &format!("<enable {e} jid='{APP}'/>")
        ),
        "service-unavailable"
    );
    assert_eq!(
        req(
            PHONE,
            None,
            true,
            &format!(
                "<enable {e} jid='{APP}' node='n'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>urn:other</value></field></x></enable>"
            )
        ),
        "bad-request"
    );
    let huge = "v".repeat(MAX_OPTIONS_BYTES);
    assert_eq!(
        req(
            PHONE,
            None,
            true,
            &format!(
                "<enable {e} jid='{APP}' node='n'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='k'><value>{huge}</value></field></x></enable>"
            )
        ),
        "not-acceptable"
    );
    assert_eq!(
        req(PHONE, None, true, &format!("<disable {e}/>")),
        "bad-request"
    );
    assert!(regs(&t).is_empty(), "nothing was stored");
}

#[test]
fn at_most_max_registrations_oldest_dropped() {
    let t = setup(PushConfig::default());
    for i in 0..7 {
        enable(&t, PHONE, &format!("n{i}")).unwrap();
    }
    let nodes: Vec<_> = regs(&t).into_iter().filter_map(|r| r.node).collect();
    assert_eq!(nodes, ["n2", "n3", "n4", "n5", "n6"]);
    // Re-enabling an old one makes it the newest.
    enable(&t, PHONE, "n2").unwrap();
    enable(&t, PHONE, "n7").unwrap();
    let nodes: Vec<_> = regs(&t).into_iter().filter_map(|r| r.node).collect();
    assert_eq!(nodes, ["n4", "n5", "n6", "n2", "n7"]);
}

#[test]
fn offline_message_is_notified_once_per_registration() {
    let t = setup(PushConfig::default());
    enable(&t, PHONE, "n1").unwrap();
    enable(&t, "alice@example.org/tablet", "n2").unwrap();
    offline(&t, &chat("hello"));
    let sent = t.fake.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let mut nodes = Vec::new();
    for iq in &sent {
        assert_eq!(iq.attr("from"), Some("example.org"));
        assert_eq!(iq.attr("to"), Some(APP));
        assert_eq!(count_of(iq), "1");
        let publish = iq
            .el()
            .child("pubsub", crate::modules::pep::PUBSUB)
            .and_then(|p| p.child("publish", crate::modules::pep::PUBSUB))
            .unwrap();
        nodes.push(publish.attr("node").unwrap().to_string());
        assert!(!iq.el().to_string().contains("hello"), "no body by default");
    }
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"]);
    // Nothing for messages without content, for headlines, or when delivered.
    offline(
        &t,
        &Stanza(el(
            "<message xmlns='jabber:client' from='b@x' type='chat'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        )),
    );
    let headline = Stanza(el(
        "<message xmlns='jabber:client' from='b@x' type='headline'><body>n</body></message>",
    ));
    offline(&t, &headline);
    t.m.on_message_delivered(&t.ctx, &jid(ALICE), &chat("x"), &[jid(PHONE)]);
    assert!(t.fake.take().is_empty());
}

#[test]
fn body_only_when_configured() {
    let t = setup(PushConfig {
        include_body: true,
        include_sender: false,
        ..PushConfig::default()
    });
    enable(&t, PHONE, "n1").unwrap();
    offline(&t, &chat("secret words"));
    let sent = t.fake.take();
    let xml = sent[0].el().to_string();
    assert!(xml.contains("secret words"), "{xml}");
    assert!(!xml.contains("bob@example.org"), "{xml}");
}

#[test]
fn bursts_are_limited_until_the_device_is_seen() {
    let t = setup(PushConfig::default());
    enable(&t, PHONE, "n1").unwrap();
    offline(&t, &chat("1"));
    offline(&t, &chat("2"));
    offline(&t, &chat("3"));
    let sent = t.fake.take();
    assert_eq!(sent.len(), 1, "one notification for a burst");
    assert_eq!(count_of(&sent[0]), "1");
    // The device comes online (initial presence): the window restarts.
    let p = el("<presence xmlns='jabber:client'/>");
    t.m.on_event(
        &t.ctx,
        &ModuleEvent::AvailablePresence {
            from: &jid(PHONE),
            presence: &p,
            initial: true,
        },
    );
    offline(&t, &chat("4"));
    let sent = t.fake.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(count_of(&sent[0]), "1");
    offline(&t, &chat("5"));
    assert!(t.fake.take().is_empty());
    // Enabling again restarts it too.
    enable(&t, PHONE, "n1").unwrap();
    offline(&t, &chat("6"));
    assert_eq!(t.fake.take().len(), 1);
}

#[test]
fn without_a_limit_the_count_grows() {
    let t = setup(no_limit());
    enable(&t, PHONE, "n1").unwrap();
    offline(&t, &chat("1"));
    offline(&t, &chat("2"));
    let sent = t.fake.take();
    assert_eq!(sent.iter().map(count_of).collect::<Vec<_>>(), ["1", "2"]);
}

#[test]
fn detached_session_notifies_its_own_and_unbound_registrations() {
    let t = setup(no_limit());
    let desk = "alice@example.org/desk";
    enable(&t, PHONE, "phone-node").unwrap();
    enable(&t, desk, "desk-node").unwrap();
    // Both sessions bound; the phone hibernates: only its own registration.
    *t.fake.bound.lock().unwrap() = vec![jid(PHONE), jid(desk)];
    let m = chat("hi");
    t.m.on_detached_messages(&t.ctx, &jid(PHONE), &[&m], false);
    let sent = t.fake.take();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].el().to_string().contains("phone-node"));
    // The phone is gone for good and the desk hibernates: both (the phone is offline).
    *t.fake.bound.lock().unwrap() = vec![jid(desk)];
    t.m.on_detached_messages(&t.ctx, &jid(desk), &[&m], false);
    assert_eq!(t.fake.take().len(), 2);
    // Unimportant messages queued for it are not notified.
    let receipt = Stanza(el(
        "<message xmlns='jabber:client' from='b@x'><received xmlns='urn:xmpp:receipts' id='1'/></message>",
    ));
    t.m.on_detached_messages(&t.ctx, &jid(desk), &[&receipt], true);
    assert!(t.fake.take().is_empty());
}

#[test]
fn hibernation_start_restarts_the_window() {
    let t = setup(PushConfig::default());
    enable(&t, PHONE, "n1").unwrap();
    *t.fake.bound.lock().unwrap() = vec![jid(PHONE)];
    let m = chat("x");
    t.m.on_detached_messages(&t.ctx, &jid(PHONE), &[&m], true);
    t.m.on_detached_messages(&t.ctx, &jid(PHONE), &[&m], false);
    assert_eq!(t.fake.take().len(), 1);
    // Resumed and hibernating again with an unacknowledged message: notified again.
    t.m.on_detached_messages(&t.ctx, &jid(PHONE), &[&m], true);
    assert_eq!(t.fake.take().len(), 1);
}

fn answer(t: &T, iq: &Stanza, from: &str, error: Option<(&str, &str)>) {
    let err = error
        .map(|(kind, cond)| {
            format!(
                "<error type='{kind}'><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
            )
        })
        .unwrap_or_default();
    let kind = if error.is_some() { "error" } else { "result" };
    let reply = Stanza(el(&format!(
        "<iq xmlns='jabber:client' type='{kind}' id='{}' from='{from}' to='example.org'>{err}</iq>",
        iq.id().unwrap()
    )));
    t.m.on_event(&t.ctx, &ModuleEvent::IqResponse(&reply));
}

#[test]
fn an_error_answer_disables_the_registration() {
    let t = setup(no_limit());
    enable(&t, PHONE, "n1").unwrap();
    offline(&t, &chat("1"));
    let iq = t.fake.take().remove(0);
    // A result changes nothing; an answer from someone else is ignored.
    answer(&t, &iq, APP, None);
    offline(&t, &chat("2"));
    let iq = t.fake.take().remove(0);
    answer(&t, &iq, "evil.example", Some(("cancel", "item-not-found")));
    assert_eq!(regs(&t).len(), 1);
    answer(&t, &iq, APP, Some(("cancel", "item-not-found")));
    assert!(regs(&t).is_empty(), "disabled");
    offline(&t, &chat("3"));
    assert!(t.fake.take().is_empty());
}

#[test]
fn transient_errors_disable_only_after_many_in_a_row() {
    let t = setup(no_limit());
    enable(&t, PHONE, "n1").unwrap();
    for i in 1..MAX_TRANSIENT_ERRORS {
        offline(&t, &chat("x"));
        let iq = t.fake.take().remove(0);
        let (kind, cond) = if i % 2 == 0 {
            ("wait", "resource-constraint")
        } else {
            ("cancel", "remote-server-not-found")
        };
        answer(&t, &iq, APP, Some((kind, cond)));
        assert_eq!(regs(&t).len(), 1, "after {i} transient errors");
    }
    // A success resets the count.
    offline(&t, &chat("x"));
    let iq = t.fake.take().remove(0);
    answer(&t, &iq, APP, None);
    for _ in 1..MAX_TRANSIENT_ERRORS {
        offline(&t, &chat("x"));
        let iq = t.fake.take().remove(0);
        answer(&t, &iq, APP, Some(("wait", "resource-constraint")));
    }
    assert_eq!(regs(&t).len(), 1);
    offline(&t, &chat("x"));
    let iq = t.fake.take().remove(0);
    answer(&t, &iq, APP, Some(("wait", "resource-constraint")));
    assert!(regs(&t).is_empty(), "disabled after {MAX_TRANSIENT_ERRORS}");
}

#[test]
fn config_defaults_and_parsing() {
    let c = PushConfig::default();
    assert!(c.enabled && c.include_sender && !c.include_body);
    assert_eq!(c.max_registrations, 5);
    let cfg = Config::parse(
        "[push]\nenabled = false\ninclude_body = true\nmin_interval_secs = 0\n",
        "test",
    )
    .unwrap();
    assert!(!cfg.push.enabled && cfg.push.include_body);
    assert_eq!(cfg.push.min_interval_secs, 0);
    assert!(Config::parse("[push]\nbogus = 1\n", "test").is_err());
}
