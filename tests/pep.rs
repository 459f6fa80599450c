//! PEP (XEP-0163 over XEP-0060) end to end: publish, retract, items, subscriptions, `+notify`
//! filtering by entity capabilities (XEP-0115), the last item on presence, access models,
//! publish-options preconditions, and the bookmark (XEP-0402/XEP-0048/XEP-0411) and avatar
//! (XEP-0084/XEP-0398) conversions.

mod common;

use base64::Engine as _;
use common::checks::subscribe_both_ways;
use common::*;
use sha1::Digest as _;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const CAPS: &str = "http://jabber.org/protocol/caps";
const TUNE: &str = "http://jabber.org/protocol/tune";
const NICK: &str = "http://jabber.org/protocol/nick";
const DEVICELIST: &str = "eu.siacs.conversations.axolotl.devicelist";
const BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";
const PRIVATE: &str = "jabber:iq:private";

fn publish_options(fields: &[(&str, &str)]) -> String {
    let mut x = String::from(
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>",
    );
    for (var, v) in fields {
        x.push_str(&format!("<field var='{var}'><value>{v}</value></field>"));
    }
    x.push_str("</x></publish-options>");
    x
}

fn tune(title: &str) -> String {
    format!(
        "<tune xmlns='{TUNE}'><title>{}</title></tune>",
        escape(title)
    )
}

/// Publish one item (own account); returns the IQ reply.
async fn publish(c: &mut Client, node: &str, id: &str, payload: &str, options: &str) -> Element {
    c.iq(
        "set",
        None,
        &format!(
            "<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{id}'>{payload}</item></publish>{options}</pubsub>"
        ),
    )
    .await
    .expect("publish reply")
}

async fn publish_ok(c: &mut Client, node: &str, id: &str, payload: &str, options: &str) {
    let r = publish(c, node, id, payload, options).await;
    assert_eq!(r.attr("type"), Some("result"), "publish to {node}: {r}");
}

/// Items of `node` on `owner`'s PEP service (the IQ reply, result or error).
async fn items(c: &mut Client, owner: &str, node: &str, extra: &str) -> Element {
    c.iq(
        "get",
        Some(owner),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='{node}'{extra}/></pubsub>"),
    )
    .await
    .expect("items reply")
}

fn item_ids(r: &Element) -> Vec<String> {
    r.child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .map(|i| {
            i.children_named("item", PUBSUB)
                .filter_map(|e| e.attr("id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn app_condition(r: &Element) -> Option<String> {
    r.child("error", NS_CLIENT)?
        .elements()
        .find(|e| e.ns == ERRORS)
        .map(|e| e.name.clone())
}

/// A PEP event message about `node`.
fn is_event(e: &Element, node: &str) -> bool {
    e.name == "message"
        && e.child("event", EVENT)
            .and_then(|ev| ev.elements().next())
            .and_then(|x| x.attr("node"))
            == Some(node)
}

/// The XEP-0115 §5.1 `ver` (SHA-1) of a client with one identity and these features.
fn caps_ver(features: &[String]) -> String {
    let mut sorted = features.to_vec();
    sorted.sort();
    let mut s = String::from("client/pc//Oriole tests<");
    for f in &sorted {
        s.push_str(f);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
}

fn client_features(notify: &[&str]) -> Vec<String> {
    let mut f = vec![DISCO_INFO.to_string(), CAPS.to_string()];
    f.extend(notify.iter().map(|n| format!("{n}+notify")));
    f
}

/// Available presence carrying caps for `notify`; answers the server's disco#info query if
/// one comes (the answer lists `answer_features`, which a test may make disagree with the
/// advertised `ver`). Returns what arrived meanwhile (e.g. last items).
async fn caps_presence(
    c: &mut Client,
    notify: &[&str],
    answer_features: &[String],
) -> Vec<Element> {
    let ver = caps_ver(&client_features(notify));
    c.presence(
        "",
        &format!(
            "<priority>0</priority><c xmlns='{CAPS}' hash='sha-1' node='urn:oriole:tests' ver='{ver}'/>"
        ),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let ping = c.new_id();
    c.send(&format!(
        "<iq type='get' id='{ping}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await
    .unwrap();
    let (before, _) = c
        .collect_until(W, |e| e.attr("id") == Some(ping.as_str()))
        .await
        .unwrap();
    let mut asked = false;
    for e in before {
        let query = e
            .child("query", DISCO_INFO)
            .filter(|_| e.name == "iq" && e.attr("type") == Some("get"));
        if let Some(q) = query {
            assert_eq!(
                q.attr("node"),
                Some(format!("urn:oriole:tests#{ver}").as_str())
            );
            let mut answer = format!(
                "<query xmlns='{DISCO_INFO}' node='urn:oriole:tests#{ver}'><identity category='client' type='pc' name='Oriole tests'/>"
            );
            for f in answer_features {
                answer.push_str(&format!("<feature var='{}'/>", escape(f)));
            }
            answer.push_str("</query>");
            c.send(&format!(
                "<iq type='result' id='{}' to='{}'>{answer}</iq>",
                escape(e.attr("id").unwrap_or_default()),
                escape(e.attr("from").unwrap_or_default())
            ))
            .await
            .unwrap();
            asked = true;
        } else {
            seen.push(e);
        }
    }
    if asked {
        let ping = c.new_id();
        c.send(&format!(
            "<iq type='get' id='{ping}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await
        .unwrap();
        let (before, _) = c
            .collect_until(W, |e| e.attr("id") == Some(ping.as_str()))
            .await
            .unwrap();
        seen.extend(before);
    }
    seen
}

/// Log in, get the roster, and come online with caps interested in `notify`.
async fn online_with_caps(
    s: &TestServer,
    user: &str,
    resource: &str,
    notify: &[&str],
) -> (Client, Vec<Element>) {
    let mut c = s.login(user, &format!("{user}pw"), resource).await;
    c.roster_get().await.unwrap();
    let seen = caps_presence(&mut c, notify, &client_features(notify)).await;
    (c, seen)
}

/// A chat message used as an ordering marker from `from` to `to`.
async fn marker(from: &mut Client, to: &str, id: &str) {
    send_chat(from, to, id, "marker").await;
}

#[tokio::test]
async fn publish_items_retract_and_max_items() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let multi = publish_options(&[("pubsub#max_items", "3")]);
        for (id, t) in [("1", "one"), ("2", "two"), ("3", "three")] {
            let r = publish(&mut a, TUNE, id, &tune(t), &multi).await;
            let published = r
                .child("pubsub", PUBSUB)
                .and_then(|p| p.child("publish", PUBSUB))
                .and_then(|p| p.child("item", PUBSUB))
                .and_then(|i| i.attr("id"));
            assert_eq!(published, Some(id), "{r}");
        }
        let own = bare("alice");
        assert_eq!(item_ids(&items(&mut a, &own, TUNE, "").await), ["1", "2", "3"]);
        // Newest N, and by id.
        assert_eq!(
            item_ids(&items(&mut a, &own, TUNE, " max_items='2'").await),
            ["2", "3"]
        );
        let r = a
            .iq_ok(
                "get",
                None,
                &format!("<pubsub xmlns='{PUBSUB}'><items node='{TUNE}'><item id='2'/></items></pubsub>"),
            )
            .await
            .unwrap();
        assert_eq!(item_ids(&r), ["2"]);
        let payload = r
            .child("pubsub", PUBSUB)
            .and_then(|p| p.child("items", PUBSUB))
            .and_then(|i| i.child("item", PUBSUB))
            .and_then(|i| i.child("tune", TUNE))
            .and_then(|t| t.child_text("title", TUNE));
        assert_eq!(payload.as_deref(), Some("two"));
        // A fourth item pushes out the oldest; republishing an id replaces it.
        publish_ok(&mut a, TUNE, "4", &tune("four"), &multi).await;
        publish_ok(&mut a, TUNE, "2", &tune("two again"), &multi).await;
        assert_eq!(item_ids(&items(&mut a, &own, TUNE, "").await), ["3", "4", "2"]);
        // Retract.
        a.iq_ok(
            "set",
            None,
            &format!("<pubsub xmlns='{PUBSUB}'><retract node='{TUNE}'><item id='3'/></retract></pubsub>"),
        )
        .await
        .unwrap();
        assert_eq!(item_ids(&items(&mut a, &own, TUNE, "").await), ["4", "2"]);
        let r = a
            .iq(
                "set",
                None,
                &format!("<pubsub xmlns='{PUBSUB}'><retract node='{TUNE}'><item id='3'/></retract></pubsub>"),
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"), "{r}");
        // An item without an id gets one from the server.
        let r = a
            .iq_ok(
                "set",
                None,
                &format!("<pubsub xmlns='{PUBSUB}'><publish node='{NICK}'><item><nick xmlns='{NICK}'>Al</nick></item></publish></pubsub>"),
            )
            .await
            .unwrap();
        let id = r
            .child("pubsub", PUBSUB)
            .and_then(|p| p.child("publish", PUBSUB))
            .and_then(|p| p.child("item", PUBSUB))
            .and_then(|i| i.attr("id"))
            .map(str::to_string)
            .expect("generated id");
        assert_eq!(item_ids(&items(&mut a, &own, NICK, "").await), [id]);
        // Unknown node.
        let r = items(&mut a, &own, "urn:example:none", "").await;
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"), "{r}");
        // Nobody publishes to someone else's service.
        s.add_users(&["mallory"]).await;
        let mut m = s.online("mallory", "m", 0).await;
        let r = m
            .iq(
                "set",
                Some(&own),
                &format!("<pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item id='x'>{}</item></publish></pubsub>", tune("evil")),
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("forbidden"), "{r}");
        assert_eq!(item_ids(&items(&mut a, &own, TUNE, "").await), ["4", "2"]);
    })
    .await
}

#[tokio::test]
async fn notifications_go_to_resources_whose_caps_ask_for_them() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        subscribe_both_ways(&mut a, &mut b).await;
        // bob/b now advertises interest in tunes; bob/plain has no caps at all; bob/nick
        // is interested in nicknames only.
        let seen = caps_presence(&mut b, &[TUNE], &client_features(&[TUNE])).await;
        assert!(!seen.iter().any(|e| is_event(e, TUNE)), "nothing published yet");
        let mut plain = s.online("bob", "plain", 0).await;
        let (mut nick, _) = online_with_caps(&s, "bob", "nick", &[NICK]).await;
        publish_ok(&mut a, TUNE, "t1", &tune("Finzi"), "").await;
        let ev = b
            .recv_matching(W, "tune event", |e| is_event(e, TUNE))
            .await
            .unwrap();
        assert_eq!(ev.attr("from"), Some(bare("alice").as_str()));
        assert_eq!(ev.attr("to"), Some(full("bob", "b").as_str()));
        assert_eq!(ev.attr("type"), Some("headline"));
        let title = ev
            .child("event", EVENT)
            .and_then(|e| e.child("items", EVENT))
            .and_then(|i| i.child("item", EVENT))
            .filter(|i| i.attr("id") == Some("t1"))
            .and_then(|i| i.child("tune", TUNE))
            .and_then(|t| t.child_text("title", TUNE));
        assert_eq!(title.as_deref(), Some("Finzi"), "{ev}");
        // The others got nothing before a marker sent after the publish.
        for (c, res) in [(&mut plain, "plain"), (&mut nick, "nick")] {
            let id = format!("m-{res}");
            marker(&mut a, &full("bob", res), &id).await;
            let before = received_before(c, &id).await;
            assert!(!before.iter().any(|e| is_event(e, TUNE)), "{res}: {before:?}");
        }
        // The owner's own resource with caps gets it as well (XEP-0163 §4.3.1).
        let (mut a2, _) = online_with_caps(&s, "alice", "a2", &[TUNE]).await;
        publish_ok(&mut a, TUNE, "t2", &tune("Holst"), "").await;
        a2.recv_matching(W, "own tune event", |e| is_event(e, TUNE))
            .await
            .unwrap();
        // Retraction notifications reach the same resources.
        a.iq_ok(
            "set",
            None,
            &format!("<pubsub xmlns='{PUBSUB}'><retract node='{TUNE}' notify='true'><item id='t2'/></retract></pubsub>"),
        )
        .await
        .unwrap();
        let ev = b
            .recv_matching(W, "retract event", |e| {
                is_event(e, TUNE)
                    && e.child("event", EVENT)
                        .and_then(|ev| ev.child("items", EVENT))
                        .is_some_and(|i| i.has_child("retract", EVENT))
            })
            .await
            .unwrap();
        assert!(ev.to_xml().contains("t2"), "{ev}");
    })
    .await
}

#[tokio::test]
async fn caps_that_do_not_match_their_hash_are_not_trusted() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        subscribe_both_ways(&mut a, &mut b).await;
        // The ver claims TUNE+notify; the disco answer lists other features, so the hash
        // does not verify and the server must not use the answer.
        let lying = vec![
            DISCO_INFO.to_string(),
            format!("{TUNE}+notify"),
            "urn:x".into(),
        ];
        caps_presence(&mut b, &[TUNE], &lying).await;
        publish_ok(&mut a, TUNE, "t1", &tune("x"), "").await;
        marker(&mut a, &full("bob", "b"), "after").await;
        let before = received_before(&mut b, "after").await;
        assert!(!before.iter().any(|e| is_event(e, TUNE)), "{before:?}");
    })
    .await
}

#[tokio::test]
async fn last_item_is_sent_on_initial_presence() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        subscribe_both_ways(&mut a, &mut b).await;
        publish_ok(&mut a, TUNE, "t1", &tune("first"), "").await;
        publish_ok(&mut a, TUNE, "t2", &tune("second"), "").await;
        publish_ok(
            &mut a,
            NICK,
            "n1",
            &format!("<nick xmlns='{NICK}'>Alice</nick>"),
            "",
        )
        .await;
        b.close().await.unwrap();
        // bob comes back interested in tunes: he gets the last tune (with a delay stamp),
        // not the nickname he did not ask for.
        let (mut b, seen) = online_with_caps(&s, "bob", "b2", &[TUNE]).await;
        let tunes: Vec<&Element> = seen.iter().filter(|e| is_event(e, TUNE)).collect();
        assert_eq!(tunes.len(), 1, "{seen:?}");
        let ev = tunes[0];
        assert_eq!(ev.attr("from"), Some(bare("alice").as_str()));
        assert!(
            ev.to_xml().contains("second") && !ev.to_xml().contains("first"),
            "{ev}"
        );
        assert!(ev.has_child("delay", "urn:xmpp:delay"), "{ev}");
        assert!(!seen.iter().any(|e| is_event(e, NICK)), "{seen:?}");
        // A later presence update is not initial presence: nothing is sent again.
        b.presence("", "<show>away</show>").await.unwrap();
        b.ping_server().await.unwrap();
        marker(&mut a, &full("bob", "b2"), "after-update").await;
        let before = received_before(&mut b, "after-update").await;
        assert!(!before.iter().any(|e| is_event(e, TUNE)), "{before:?}");
        // carol, a stranger, gets nothing from alice's presence-only node.
        let (_c, seen) = online_with_caps(&s, "carol", "c", &[TUNE]).await;
        assert!(!seen.iter().any(|e| is_event(e, TUNE)), "{seen:?}");
    })
    .await
}

#[tokio::test]
async fn open_node_is_readable_by_a_stranger_and_presence_node_is_not() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        subscribe_both_ways(&mut a, &mut b).await;
        let devices =
            format!("<list xmlns='{DEVICELIST}'><device id='12345'/><device id='4223'/></list>");
        publish_ok(
            &mut a,
            DEVICELIST,
            "current",
            &devices,
            &publish_options(&[("pubsub#access_model", "open")]),
        )
        .await;
        publish_ok(
            &mut a,
            "urn:xmpp:omemo:2:devices",
            "current",
            "<devices xmlns='urn:xmpp:omemo:2'><device id='12345'/></devices>",
            &publish_options(&[("pubsub#access_model", "open")]),
        )
        .await;
        publish_ok(&mut a, TUNE, "t", &tune("private"), "").await;
        let mut c = s.online("carol", "c", 0).await;
        let alice = bare("alice");
        // Open: the stranger reads the device list, as OMEMO needs.
        let r = items(&mut c, &alice, DEVICELIST, "").await;
        assert_eq!(r.attr("type"), Some("result"), "{r}");
        assert_eq!(item_ids(&r), ["current"]);
        assert!(r.to_xml().contains("4223"), "{r}");
        let r = items(&mut c, &alice, "urn:xmpp:omemo:2:devices", "").await;
        assert_eq!(item_ids(&r), ["current"], "{r}");
        // Presence (the default): refused to the stranger with the XEP-0060 §6.5.9.3 error.
        let r = items(&mut c, &alice, TUNE, "").await;
        assert_eq!(
            r.error_condition().as_deref(),
            Some("not-authorized"),
            "{r}"
        );
        assert_eq!(r.error_type(), Some("auth"));
        assert_eq!(
            app_condition(&r).as_deref(),
            Some("presence-subscription-required")
        );
        assert!(!r.to_xml().contains("private"));
        // ... and granted to the contact with a presence subscription.
        let r = items(&mut b, &alice, TUNE, "").await;
        assert_eq!(item_ids(&r), ["t"], "{r}");
        // Subscribing is refused the same way.
        let r = c
            .iq(
                "set",
                Some(&alice),
                &format!(
                    "<pubsub xmlns='{PUBSUB}'><subscribe node='{TUNE}' jid='{}'/></pubsub>",
                    bare("carol")
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            r.error_condition().as_deref(),
            Some("not-authorized"),
            "{r}"
        );
    })
    .await
}

#[tokio::test]
async fn whitelist_node_is_for_members_only() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        subscribe_both_ways(&mut a, &mut b).await;
        let node = "urn:example:secret";
        publish_ok(
            &mut a,
            node,
            "s",
            "<secret xmlns='urn:example:secret'>42</secret>",
            &publish_options(&[("pubsub#access_model", "whitelist")]),
        )
        .await;
        let alice = bare("alice");
        // Even a contact is refused.
        let r = items(&mut b, &alice, node, "").await;
        assert_eq!(r.error_condition().as_deref(), Some("not-allowed"), "{r}");
        assert_eq!(app_condition(&r).as_deref(), Some("closed-node"));
        // The owner makes bob a member.
        a.iq_ok(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{OWNER}'><affiliations node='{node}'><affiliation jid='{}' affiliation='member'/></affiliations></pubsub>",
                bare("bob")
            ),
        )
        .await
        .unwrap();
        let r = a
            .iq_ok(
                "get",
                None,
                &format!("<pubsub xmlns='{OWNER}'><affiliations node='{node}'/></pubsub>"),
            )
            .await
            .unwrap();
        assert!(r.to_xml().contains("member"), "{r}");
        let r = items(&mut b, &alice, node, "").await;
        assert_eq!(item_ids(&r), ["s"], "{r}");
        // And removes him again.
        a.iq_ok(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{OWNER}'><affiliations node='{node}'><affiliation jid='{}' affiliation='none'/></affiliations></pubsub>",
                bare("bob")
            ),
        )
        .await
        .unwrap();
        let r = items(&mut b, &alice, node, "").await;
        assert_eq!(r.error_condition().as_deref(), Some("not-allowed"), "{r}");
    })
    .await
}

#[tokio::test]
async fn publish_options_that_conflict_are_a_precondition_not_met() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let node = "urn:example:prefs";
        publish_ok(
            &mut a,
            node,
            "1",
            "<p xmlns='urn:example:prefs'>1</p>",
            &publish_options(&[("pubsub#access_model", "open")]),
        )
        .await;
        // Matching options publish; conflicting ones are refused and change nothing.
        publish_ok(
            &mut a,
            node,
            "2",
            "<p xmlns='urn:example:prefs'>2</p>",
            &publish_options(&[("pubsub#access_model", "open")]),
        )
        .await;
        let r = publish(
            &mut a,
            node,
            "3",
            "<p xmlns='urn:example:prefs'>3</p>",
            &publish_options(&[("pubsub#access_model", "whitelist")]),
        )
        .await;
        assert_eq!(r.error_condition().as_deref(), Some("conflict"), "{r}");
        assert_eq!(app_condition(&r).as_deref(), Some("precondition-not-met"));
        assert_eq!(item_ids(&items(&mut a, &bare("alice"), node, "").await), ["2"]);
        // An option the service does not know is refused too (XEP-0060 §7.1.5).
        let r = publish(
            &mut a,
            node,
            "3",
            "<p xmlns='urn:example:prefs'>3</p>",
            &publish_options(&[("pubsub#frobnicate", "1")]),
        )
        .await;
        assert_eq!(app_condition(&r).as_deref(), Some("precondition-not-met"), "{r}");
        // The owner reconfigures the node, as clients do after this error, and the
        // publish then succeeds.
        let r = a
            .iq_ok(
                "get",
                None,
                &format!("<pubsub xmlns='{OWNER}'><configure node='{node}'/></pubsub>"),
            )
            .await
            .unwrap();
        let access = r
            .child("pubsub", OWNER)
            .and_then(|p| p.child("configure", OWNER))
            .and_then(|c| c.child("x", "jabber:x:data"))
            .and_then(|x| {
                x.children_named("field", "jabber:x:data")
                    .find(|f| f.attr("var") == Some("pubsub#access_model"))
                    .and_then(|f| f.child_text("value", "jabber:x:data"))
            });
        assert_eq!(access.as_deref(), Some("open"), "{r}");
        a.iq_ok(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{OWNER}'><configure node='{node}'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
                 <field var='pubsub#access_model'><value>whitelist</value></field>\
                 <field var='pubsub#max_items'><value>max</value></field></x></configure></pubsub>"
            ),
        )
        .await
        .unwrap();
        publish_ok(
            &mut a,
            node,
            "3",
            "<p xmlns='urn:example:prefs'>3</p>",
            &publish_options(&[("pubsub#access_model", "whitelist"), ("pubsub#max_items", "max")]),
        )
        .await;
        assert_eq!(item_ids(&items(&mut a, &bare("alice"), node, "").await), ["2", "3"]);
        // Delete the node.
        a.iq_ok(
            "set",
            None,
            &format!("<pubsub xmlns='{OWNER}'><delete node='{node}'/></pubsub>"),
        )
        .await
        .unwrap();
        let r = items(&mut a, &bare("alice"), node, "").await;
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"), "{r}");
    })
    .await
}

#[tokio::test]
async fn explicit_subscription_gets_last_item_and_notifications_until_unsubscribed() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        let node = "urn:example:blog";
        let open = publish_options(&[("pubsub#access_model", "open")]);
        publish_ok(
            &mut a,
            node,
            "p1",
            "<post xmlns='urn:example:blog'>one</post>",
            &open,
        )
        .await;
        let alice = bare("alice");
        let me = full("carol", "c");
        let r = c
            .iq_ok(
                "set",
                Some(&alice),
                &format!("<pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{me}'/></pubsub>"),
            )
            .await
            .unwrap();
        let sub = r
            .child("pubsub", PUBSUB)
            .and_then(|p| p.child("subscription", PUBSUB))
            .expect("subscription");
        assert_eq!(sub.attr("subscription"), Some("subscribed"));
        // The last item comes on subscription (no caps needed for an explicit subscriber).
        let ev = c
            .recv_matching(W, "last item", |e| is_event(e, node))
            .await
            .unwrap();
        assert!(ev.to_xml().contains("one"), "{ev}");
        publish_ok(
            &mut a,
            node,
            "p2",
            "<post xmlns='urn:example:blog'>two</post>",
            &open,
        )
        .await;
        let ev = c
            .recv_matching(W, "new item", |e| is_event(e, node))
            .await
            .unwrap();
        assert!(ev.to_xml().contains("two"), "{ev}");
        // Subscribing for someone else is refused.
        let r = c
            .iq(
                "set",
                Some(&alice),
                &format!(
                    "<pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{}'/></pubsub>",
                    bare("alice")
                ),
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("bad-request"), "{r}");
        assert_eq!(app_condition(&r).as_deref(), Some("invalid-jid"));
        c.iq_ok(
            "set",
            Some(&alice),
            &format!("<pubsub xmlns='{PUBSUB}'><unsubscribe node='{node}' jid='{me}'/></pubsub>"),
        )
        .await
        .unwrap();
        publish_ok(
            &mut a,
            node,
            "p3",
            "<post xmlns='urn:example:blog'>three</post>",
            &open,
        )
        .await;
        marker(&mut a, &me, "after-unsub").await;
        let before = received_before(&mut c, "after-unsub").await;
        assert!(!before.iter().any(|e| is_event(e, node)), "{before:?}");
    })
    .await
}

#[tokio::test]
async fn bookmarks_are_converted_between_0402_and_private_storage() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let own = bare("alice");
        // A XEP-0048 client stores bookmarks in private XML storage.
        a.iq_ok(
            "set",
            None,
            &format!(
                "<query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'>\
                 <conference jid='council@conference.localhost' name='Council' autojoin='true'><nick>Al</nick></conference>\
                 <conference jid='tea@conference.localhost' autojoin='false'/>\
                 <url name='Home' url='https://example.org/'/>\
                 </storage></query>"
            ),
        )
        .await
        .unwrap();
        // A XEP-0402 client sees them as items.
        let r = items(&mut a, &own, BOOKMARKS2, "").await;
        let mut ids = item_ids(&r);
        ids.sort();
        assert_eq!(
            ids,
            ["council@conference.localhost", "tea@conference.localhost"],
            "{r}"
        );
        let council = r
            .child("pubsub", PUBSUB)
            .and_then(|p| p.child("items", PUBSUB))
            .and_then(|i| {
                i.children_named("item", PUBSUB)
                    .find(|it| it.attr("id") == Some("council@conference.localhost"))
            })
            .and_then(|it| it.child("conference", BOOKMARKS2))
            .expect("council conference")
            .clone();
        assert_eq!(council.attr("name"), Some("Council"));
        assert!(matches!(council.attr("autojoin"), Some("true" | "1")));
        assert_eq!(council.child_text("nick", BOOKMARKS2).as_deref(), Some("Al"));
        // The node is private (XEP-0402 §3: whitelist).
        s.add_users(&["eve"]).await;
        let mut e = s.online("eve", "e", 0).await;
        let r = items(&mut e, &own, BOOKMARKS2, "").await;
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        // The XEP-0402 client adds one room and removes another.
        publish_ok(
            &mut a,
            BOOKMARKS2,
            "orchard@conference.localhost",
            &format!("<conference xmlns='{BOOKMARKS2}' name='Orchard' autojoin='true'><nick>Juliet</nick></conference>"),
            &publish_options(&[
                ("pubsub#persist_items", "true"),
                ("pubsub#max_items", "max"),
                ("pubsub#send_last_published_item", "never"),
                ("pubsub#access_model", "whitelist"),
            ]),
        )
        .await;
        a.iq_ok(
            "set",
            None,
            &format!("<pubsub xmlns='{PUBSUB}'><retract node='{BOOKMARKS2}' notify='true'><item id='tea@conference.localhost'/></retract></pubsub>"),
        )
        .await
        .unwrap();
        // The XEP-0048 client reads the result from private storage; its URL is kept.
        let r = a
            .iq_ok(
                "get",
                None,
                &format!("<query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'/></query>"),
            )
            .await
            .unwrap();
        let storage = r
            .child("query", PRIVATE)
            .and_then(|q| q.child("storage", "storage:bookmarks"))
            .expect("storage");
        let rooms: Vec<&str> = storage
            .children_named("conference", "storage:bookmarks")
            .filter_map(|c| c.attr("jid"))
            .collect();
        assert!(rooms.contains(&"council@conference.localhost"), "{r}");
        assert!(rooms.contains(&"orchard@conference.localhost"), "{r}");
        assert!(!rooms.contains(&"tea@conference.localhost"), "{r}");
        let orchard = storage
            .children_named("conference", "storage:bookmarks")
            .find(|c| c.attr("jid") == Some("orchard@conference.localhost"))
            .unwrap();
        assert_eq!(orchard.attr("name"), Some("Orchard"));
        assert_eq!(
            orchard.child_text("nick", "storage:bookmarks").as_deref(),
            Some("Juliet")
        );
        assert!(storage.has_child("url", "storage:bookmarks"), "{r}");
        // And the XEP-0048 PEP node (XEP-0411) holds the same document.
        let r = items(&mut a, &own, "storage:bookmarks", "").await;
        assert_eq!(item_ids(&r), ["current"], "{r}");
        assert!(r.to_xml().contains("orchard@conference.localhost"), "{r}");
        // The account advertises the conversions.
        let info = a
            .iq_ok("get", Some(&own), &format!("<query xmlns='{DISCO_INFO}'/>"))
            .await
            .unwrap();
        let xml = info.to_xml();
        for f in [
            "urn:xmpp:bookmarks:1#compat",
            "urn:xmpp:bookmarks-conversion:0",
        ] {
            assert!(xml.contains(&format!("'{f}'")) || xml.contains(&format!("\"{f}\"")), "{f}: {info}");
        }
    })
    .await
}

#[tokio::test]
async fn vcard_photo_and_user_avatar_are_converted() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let own = bare("alice");
        let image = b"\x89PNG\r\n\x1a\n not really a png";
        let b64 = base64::engine::general_purpose::STANDARD.encode(image);
        let sha = hex(&sha1::Sha1::digest(image));
        a.iq_ok(
            "set",
            None,
            &format!(
                "<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO></vCard>"
            ),
        )
        .await
        .unwrap();
        let r = items(&mut a, &own, "urn:xmpp:avatar:metadata", "").await;
        assert_eq!(item_ids(&r), [sha], "{r}");
        let info = r
            .child("pubsub", PUBSUB)
            .and_then(|p| p.child("items", PUBSUB))
            .and_then(|i| i.child("item", PUBSUB))
            .and_then(|i| i.child("metadata", "urn:xmpp:avatar:metadata"))
            .and_then(|m| m.child("info", "urn:xmpp:avatar:metadata"))
            .expect("info")
            .clone();
        assert_eq!(info.attr("bytes"), Some(image.len().to_string().as_str()));
        assert_eq!(info.attr("type"), Some("image/png"));
        let r = items(&mut a, &own, "urn:xmpp:avatar:data", " max_items='1'").await;
        let data = r
            .child("pubsub", PUBSUB)
            .and_then(|p| p.child("items", PUBSUB))
            .and_then(|i| i.child("item", PUBSUB))
            .and_then(|i| i.child_text("data", "urn:xmpp:avatar:data"));
        assert_eq!(data.as_deref(), Some(b64.as_str()), "{r}");
        // A XEP-0084 client publishes a new avatar: the vCard follows, other fields kept.
        let image2 = b"GIF89a another image";
        let b64_2 = base64::engine::general_purpose::STANDARD.encode(image2);
        let sha2 = hex(&sha1::Sha1::digest(image2));
        publish_ok(
            &mut a,
            "urn:xmpp:avatar:data",
            &sha2,
            &format!("<data xmlns='urn:xmpp:avatar:data'>{b64_2}</data>"),
            "",
        )
        .await;
        publish_ok(
            &mut a,
            "urn:xmpp:avatar:metadata",
            &sha2,
            &format!("<metadata xmlns='urn:xmpp:avatar:metadata'><info id='{sha2}' bytes='{}' type='image/gif'/></metadata>", image2.len()),
            "",
        )
        .await;
        let r = a
            .iq_ok("get", None, "<vCard xmlns='vcard-temp'/>")
            .await
            .unwrap();
        let v = r.child("vCard", "vcard-temp").expect("vCard");
        assert_eq!(v.child_text("FN", "vcard-temp").as_deref(), Some("Alice"));
        let photo = v.child("PHOTO", "vcard-temp").expect("PHOTO");
        assert_eq!(photo.child_text("TYPE", "vcard-temp").as_deref(), Some("image/gif"));
        assert_eq!(photo.child_text("BINVAL", "vcard-temp").as_deref(), Some(b64_2.as_str()));
    })
    .await
}

#[tokio::test]
async fn presence_carries_the_avatar_hash() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        subscribe_both_ways(&mut a, &mut b).await;
        let image = b"\x89PNG\r\n\x1a\n avatar";
        let b64 = base64::engine::general_purpose::STANDARD.encode(image);
        let sha = hex(&sha1::Sha1::digest(image));
        a.iq_ok(
            "set",
            None,
            &format!(
                "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO></vCard>"
            ),
        )
        .await
        .unwrap();
        let x_update = |p: &Element| {
            p.child("x", "vcard-temp:x:update")
                .map(|x| x.child_text("photo", "vcard-temp:x:update"))
        };
        // A presence without x:update gets the hash of the avatar the server converted.
        a.presence("", "<show>away</show>").await.unwrap();
        marker(&mut a, &full("bob", "b"), "m1").await;
        let seen = received_before(&mut b, "m1").await;
        let p = seen
            .iter()
            .rev()
            .find(|e| e.name == "presence" && e.attr("from") == Some(full("alice", "a").as_str()))
            .expect("alice's presence");
        assert_eq!(x_update(p), Some(Some(sha.clone())), "{p}");
        // An empty <photo/> (no avatar, says the client) is left alone.
        a.presence("", "<x xmlns='vcard-temp:x:update'><photo/></x>")
            .await
            .unwrap();
        marker(&mut a, &full("bob", "b"), "m2").await;
        let seen = received_before(&mut b, "m2").await;
        let p = seen
            .iter()
            .rev()
            .find(|e| e.name == "presence" && e.attr("from") == Some(full("alice", "a").as_str()))
            .expect("alice's presence");
        assert_eq!(x_update(p), Some(Some(String::new())), "{p}");
        // The account advertises the conversion (XEP-0398 §3).
        let r = a
            .iq_ok(
                "get",
                Some(&bare("alice")),
                &format!("<query xmlns='{DISCO_INFO}'/>"),
            )
            .await
            .unwrap();
        assert!(
            r.to_xml().contains("urn:xmpp:pep-vcard-conversion:0"),
            "{r}"
        );
    })
    .await
}

#[tokio::test]
async fn account_disco_has_the_pep_identity_and_features() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let r = a
            .iq_ok(
                "get",
                Some(&bare("alice")),
                &format!("<query xmlns='{DISCO_INFO}'/>"),
            )
            .await
            .unwrap();
        let q = r.child("query", DISCO_INFO).expect("query");
        assert!(
            q.children_named("identity", DISCO_INFO)
                .any(|i| i.attr("category") == Some("pubsub") && i.attr("type") == Some("pep")),
            "{r}"
        );
        let features: Vec<&str> = q
            .children_named("feature", DISCO_INFO)
            .filter_map(|f| f.attr("var"))
            .collect();
        for f in [
            "http://jabber.org/protocol/pubsub#publish",
            "http://jabber.org/protocol/pubsub#publish-options",
            "http://jabber.org/protocol/pubsub#auto-create",
            "http://jabber.org/protocol/pubsub#access-open",
            "http://jabber.org/protocol/pubsub#access-presence",
            "http://jabber.org/protocol/pubsub#access-whitelist",
            "http://jabber.org/protocol/pubsub#persistent-items",
            "http://jabber.org/protocol/pubsub#retrieve-items",
            "http://jabber.org/protocol/pubsub#subscribe",
            "http://jabber.org/protocol/pubsub#last-published",
        ] {
            assert!(features.contains(&f), "{f} missing: {features:?}");
        }
    })
    .await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
