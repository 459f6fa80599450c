//! XEP-0313 Message Archive Management for rooms (with XEP-0359 stanza ids) and XEP-0425
//! moderated retraction, end to end with the independent client: the stanza id on a live
//! broadcast equals the archive id, RSM paging through 120 room messages, `with`/`end`
//! filters, who may query a members-only room, join history from the archive after a
//! restart, a moderator's retraction replacing the archived message by a tombstone, an
//! author's own retraction (XEP-0424) doing the same while a retraction of someone else's
//! message changes nothing, and the archive of a destroyed or ended room being deleted.

mod common;

use common::*;

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_RSM: &str = "http://jabber.org/protocol/rsm";
const NS_SID: &str = "urn:xmpp:sid:0";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";
const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
const SERVICE: &str = "conference.localhost";

fn room(name: &str) -> String {
    format!("{name}@{SERVICE}")
}

fn occ(name: &str, nick: &str) -> String {
    format!("{name}@{SERVICE}/{nick}")
}

fn has_code(e: &Element, code: &str) -> bool {
    e.child("x", MUC_USER).is_some_and(|x| {
        x.elements()
            .any(|s| s.name == "status" && s.attr("code") == Some(code))
    })
}

/// Join; returns every stanza up to and including the subject that ends the join.
async fn join(c: &mut Client, r: &str, nick: &str) -> Vec<Element> {
    c.send(&format!(
        "<presence to='{}'><x xmlns='{MUC}'/></presence>",
        escape(&occ(r, nick))
    ))
    .await
    .unwrap();
    let prefix = room(r);
    let (mut before, subject) = c
        .collect_until(W, move |e| {
            e.name == "message"
                && e.attr("from").is_some_and(|f| f.starts_with(&prefix))
                && e.child("subject", NS_CLIENT).is_some()
                && e.child("body", NS_CLIENT).is_none()
        })
        .await
        .unwrap_or_else(|e| panic!("join {r} as {nick}: {e}"));
    let me = occ(r, nick);
    assert!(
        before
            .iter()
            .any(|p| p.attr("from") == Some(me.as_str()) && has_code(p, "110")),
        "no self-presence"
    );
    before.push(subject);
    before
}

async fn owner_submit(c: &mut Client, r: &str, fields: &[(&str, &str)]) {
    let mut x = String::new();
    for (var, v) in fields {
        x.push_str(&format!("<field var='{var}'><value>{v}</value></field>"));
    }
    c.iq_ok(
        "set",
        Some(&room(r)),
        &format!(
            "<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             {x}</x></query>"
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("configure {r}: {e}"));
}

async fn create(c: &mut Client, r: &str, nick: &str, fields: &[(&str, &str)]) {
    join(c, r, nick).await;
    owner_submit(c, r, fields).await;
}

/// Say something and return the room's broadcast of it as this client receives it.
async fn say(c: &mut Client, r: &str, id: &str, body: &str) -> Element {
    c.send(&format!(
        "<message to='{}' type='groupchat' id='{id}'><body>{}</body></message>",
        room(r),
        escape(body)
    ))
    .await
    .unwrap();
    recv_broadcast(c, id).await
}

async fn recv_broadcast(c: &mut Client, id: &str) -> Element {
    let id = id.to_string();
    c.recv_matching(W, &format!("broadcast {id}"), move |e| {
        e.name == "message" && e.attr("id") == Some(id.as_str())
    })
    .await
    .unwrap()
}

fn stanza_id(e: &Element, by: &str) -> Option<String> {
    e.elements()
        .find(|c| c.is("stanza-id", NS_SID) && c.attr("by") == Some(by))
        .and_then(|c| c.attr("id").map(String::from))
}

struct Page {
    /// (result id, forwarded message)
    items: Vec<(String, Element)>,
    fin: Element,
}

/// A MAM query to a room; `Err` with the IQ error.
async fn query(
    c: &mut Client,
    r: &str,
    fields: &[(&str, &str)],
    rsm: &str,
) -> Result<Page, Element> {
    let id = c.new_id();
    let qid = format!("q-{id}");
    let mut form = String::new();
    if !fields.is_empty() {
        form = format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"
        );
        for (var, v) in fields {
            form.push_str(&format!(
                "<field var='{var}'><value>{}</value></field>",
                escape(v)
            ));
        }
        form.push_str("</x>");
    }
    c.send(&format!(
        "<iq type='set' id='{id}' to='{}'><query xmlns='{NS_MAM}' queryid='{qid}'>{form}<set xmlns='{NS_RSM}'>{rsm}</set></query></iq>",
        room(r)
    ))
    .await
    .unwrap();
    let id2 = id.clone();
    let (before, reply) = c
        .collect_until(W, move |e| {
            e.name == "iq" && e.attr("id") == Some(id2.as_str())
        })
        .await
        .unwrap();
    if reply.attr("type") != Some("result") {
        return Err(reply);
    }
    let mut items = Vec::new();
    for m in before {
        let Some(res) = m.child("result", NS_MAM) else {
            c.pending.push_back(m);
            continue;
        };
        assert_eq!(
            m.attr("from"),
            Some(room(r).as_str()),
            "results come from the room"
        );
        assert_eq!(res.attr("queryid"), Some(qid.as_str()));
        let f = res.child("forwarded", NS_FORWARD).expect("forwarded");
        items.push((
            res.attr("id").expect("result id").to_string(),
            f.child("message", NS_CLIENT).expect("message").clone(),
        ));
    }
    let fin = reply.child("fin", NS_MAM).expect("fin").clone();
    Ok(Page { items, fin })
}

fn rsm(fin: &Element, name: &str) -> Option<String> {
    fin.child("set", NS_RSM)
        .and_then(|s| s.child_text(name, NS_RSM))
}

fn body(e: &Element) -> String {
    e.child_text("body", NS_CLIENT).unwrap_or_default()
}

/// A server with alice (owner, nick Alice, resource a) and bob (nick Bob, resource b) in a new
/// room `name`; returns the server, both clients and the room's JID.
async fn alice_and_bob_in(name: &str) -> (TestServer, Client, Client, String) {
    let s = TestServer::start().await;
    s.add_users(&["alice", "bob"]).await;
    let mut a = s.online("alice", "a", 0).await;
    let mut b = s.online("bob", "b", 0).await;
    create(&mut a, name, "Alice", &[]).await;
    join(&mut b, name, "Bob").await;
    (s, a, b, room(name))
}

#[tokio::test]
async fn room_archive_pages_and_stanza_ids_match() {
    bounded(async {
        let (_s, mut a, mut b, r) = alice_and_bob_in("talk").await;

        // The service and the room advertise MAM and stanza ids.
        let info = a
            .iq_ok("get", Some(&r), &format!("<query xmlns='{DISCO_INFO}'/>"))
            .await
            .unwrap();
        let feats: Vec<String> = info
            .child("query", DISCO_INFO)
            .unwrap()
            .elements()
            .filter_map(|f| f.attr("var").map(String::from))
            .collect();
        for f in [NS_MAM, NS_SID, NS_MODERATE] {
            assert!(feats.iter().any(|x| x == f), "room lacks {f}: {feats:?}");
        }

        // 120 messages; each live broadcast carries the room's stanza id.
        let mut live = Vec::new();
        for i in 0..120 {
            let (c, who) = if i % 3 == 0 {
                (&mut b, "b")
            } else {
                (&mut a, "a")
            };
            let id = format!("m{i}");
            let got = say(c, "talk", &id, &format!("message {i} from {who}")).await;
            let sid = stanza_id(&got, &r).unwrap_or_else(|| panic!("no stanza-id: {}", got.to_xml()));
            // The other occupant sees the same id.
            let other = if who == "b" { &mut a } else { &mut b };
            let seen = recv_broadcast(other, &id).await;
            assert_eq!(stanza_id(&seen, &r), Some(sid.clone()));
            live.push((sid, format!("message {i} from {who}")));
        }

        // Page forwards 50 at a time (bob, a participant, queries).
        let mut got: Vec<(String, String)> = Vec::new();
        let mut after = String::new();
        let mut pages = 0;
        loop {
            let rsm_q = if after.is_empty() {
                "<max>50</max>".to_string()
            } else {
                format!("<max>50</max><after>{after}</after>")
            };
            let p = query(&mut b, "talk", &[], &rsm_q).await.unwrap();
            pages += 1;
            for (id, m) in &p.items {
                assert_eq!(m.attr("type"), Some("groupchat"));
                assert!(m.attr("from").is_some_and(|f| f.starts_with(&format!("{r}/"))));
                got.push((id.clone(), body(m)));
            }
            if p.fin.attr("complete") == Some("true") {
                break;
            }
            after = rsm(&p.fin, "last").expect("rsm last");
            assert!(pages < 5, "paging does not end");
        }
        assert_eq!(pages, 3);
        assert_eq!(got, live, "archive ids and order equal the live stanza ids");

        // The last page, backwards.
        let p = query(&mut a, "talk", &[], "<max>10</max><before/>").await.unwrap();
        let ids: Vec<String> = p.items.iter().map(|(i, _)| i.clone()).collect();
        let want: Vec<String> = live[110..].iter().map(|(i, _)| i.clone()).collect();
        assert_eq!(ids, want);
        assert_ne!(p.fin.attr("complete"), Some("true"));

        // with = one occupant JID.
        let p = query(&mut a, "talk", &[("with", &occ("talk", "Bob"))], "<max>100</max>")
            .await
            .unwrap();
        assert_eq!(p.items.len(), 40);
        assert!(p.items.iter().all(|(_, m)| body(m).ends_with("from b")));
        // end before the first message: nothing.
        let p = query(&mut a, "talk", &[("end", "2000-01-01T00:00:00Z")], "")
            .await
            .unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.fin.attr("complete"), Some("true"));
        // An unknown id is item-not-found.
        let e = query(&mut a, "talk", &[], "<after>00000000000000ff</after>")
            .await
            .err()
            .expect("error");
        assert_eq!(e.error_condition().as_deref(), Some("item-not-found"));
        // A chat state is not archived and gets no stanza id.
        a.send(&format!(
            "<message to='{r}' type='groupchat' id='cs'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ))
        .await
        .unwrap();
        let cs = recv_broadcast(&mut a, "cs").await;
        assert_eq!(stanza_id(&cs, &r), None);
        let p = query(&mut a, "talk", &[], "<max>1</max><before/>").await.unwrap();
        assert_eq!(p.items[0].0, live[119].0);

        // A client cannot forge the room's stanza id.
        a.send(&format!(
            "<message to='{r}' type='groupchat' id='forge'><body>x</body><stanza-id xmlns='{NS_SID}' by='{r}' id='0000000000000001'/></message>"
        ))
        .await
        .unwrap();
        let f = recv_broadcast(&mut a, "forge").await;
        let ids: Vec<&Element> = f.elements().filter(|c| c.is("stanza-id", NS_SID)).collect();
        assert_eq!(ids.len(), 1);
        assert_ne!(ids[0].attr("id"), Some("0000000000000001"));
    })
    .await;
}

#[tokio::test]
async fn members_only_archive_is_closed_to_strangers_and_archiving_can_be_off() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        create(
            &mut a,
            "club",
            "Alice",
            &[("muc#roomconfig_membersonly", "1")],
        )
        .await;
        a.iq_ok(
            "set",
            Some(&room("club")),
            &format!(
                "<query xmlns='{MUC_ADMIN}'><item affiliation='member' jid='{}'/></query>",
                bare("bob")
            ),
        )
        .await
        .unwrap();
        say(&mut a, "club", "c1", "members only talk").await;
        let e = query(&mut c, "club", &[], "")
            .await
            .err()
            .expect("forbidden");
        assert_eq!(e.error_condition().as_deref(), Some("forbidden"));
        // A member who is not in the room may read it.
        let p = query(&mut b, "club", &[], "").await.unwrap();
        assert_eq!(p.items.len(), 1);
        assert_eq!(body(&p.items[0].1), "members only talk");

        // Archiving off: no stanza id, nothing archived, no MAM feature.
        owner_submit(&mut a, "club", &[("muc#roomconfig_enablearchiving", "0")]).await;
        let m = say(&mut a, "club", "c2", "off the record").await;
        assert_eq!(stanza_id(&m, &room("club")), None);
        let p = query(&mut b, "club", &[], "").await.unwrap();
        assert_eq!(p.items.len(), 1);
        let info = a
            .iq_ok(
                "get",
                Some(&room("club")),
                &format!("<query xmlns='{DISCO_INFO}'/>"),
            )
            .await
            .unwrap();
        assert!(!info.to_xml().contains(NS_MAM));
    })
    .await;
}

#[tokio::test]
async fn history_after_a_restart_comes_from_the_archive() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        create(
            &mut a,
            "keep",
            "Alice",
            &[
                ("muc#roomconfig_persistentroom", "1"),
                ("muc#roomconfig_historylength", "5"),
            ],
        )
        .await;
        let mut sids = Vec::new();
        for i in 0..8 {
            let m = say(&mut a, "keep", &format!("k{i}"), &format!("kept {i}")).await;
            sids.push(stanza_id(&m, &room("keep")).expect("stanza id"));
        }
        drop(a);
        let s = s.restart().await;
        let mut b = s.online("bob", "b", 0).await;
        let got = join(&mut b, "keep", "Bob").await;
        let hist: Vec<&Element> = got
            .iter()
            .filter(|e| e.name == "message" && e.child("body", NS_CLIENT).is_some())
            .collect();
        let bodies: Vec<String> = hist.iter().map(|e| body(e)).collect();
        assert_eq!(bodies, ["kept 3", "kept 4", "kept 5", "kept 6", "kept 7"]);
        for (h, sid) in hist.iter().zip(&sids[3..]) {
            assert_eq!(stanza_id(h, &room("keep")).as_ref(), Some(sid));
            assert!(h.child("delay", "urn:xmpp:delay").is_some());
        }
    })
    .await;
}

#[tokio::test]
async fn a_moderator_retracts_a_message() {
    bounded(async {
        let (s, mut a, mut b, r) = alice_and_bob_in("mod").await;
        let m = say(&mut b, "mod", "bad", "something awful").await;
        let sid = stanza_id(&m, &r).expect("stanza id");
        recv_broadcast(&mut a, "bad").await;
        say(&mut b, "mod", "good", "something fine").await;

        // A participant may not moderate.
        let e = b
            .iq(
                "set",
                Some(&r),
                &format!("<moderate xmlns='{NS_MODERATE}' id='{sid}'><retract xmlns='{NS_RETRACT}'/></moderate>"),
            )
            .await
            .unwrap();
        assert_eq!(e.error_condition().as_deref(), Some("forbidden"));
        // An unknown id is item-not-found.
        let e = a
            .iq(
                "set",
                Some(&r),
                &format!("<moderate xmlns='{NS_MODERATE}' id='00000000000000aa'><retract xmlns='{NS_RETRACT}'/></moderate>"),
            )
            .await
            .unwrap();
        assert_eq!(e.error_condition().as_deref(), Some("item-not-found"));

        a.iq_ok(
            "set",
            Some(&r),
            &format!("<moderate xmlns='{NS_MODERATE}' id='{sid}'><retract xmlns='{NS_RETRACT}'/><reason>spam</reason></moderate>"),
        )
        .await
        .unwrap();
        for c in [&mut a, &mut b] {
            let ret = c
                .recv_matching(W, "retraction", |e| {
                    e.name == "message" && e.child("retract", NS_RETRACT).is_some()
                })
                .await
                .unwrap();
            assert_eq!(ret.attr("from"), Some(r.as_str()));
            let rt = ret.child("retract", NS_RETRACT).unwrap();
            assert_eq!(rt.attr("id"), Some(sid.as_str()));
            let md = rt.child("moderated", NS_MODERATE).expect("moderated");
            assert_eq!(md.attr("by"), Some(occ("mod", "Alice").as_str()));
            assert_eq!(rt.child_text("reason", NS_RETRACT).as_deref(), Some("spam"));
        }

        // The archive holds a tombstone in its place; the other message is untouched.
        let p = query(&mut a, "mod", &[], "").await.unwrap();
        assert_eq!(p.items.len(), 2);
        let (id, tomb) = &p.items[0];
        assert_eq!(id, &sid);
        assert!(tomb.child("body", NS_CLIENT).is_none(), "{}", tomb.to_xml());
        assert!(!tomb.to_xml().contains("awful"));
        let rd = tomb.child("retracted", NS_RETRACT).expect("tombstone");
        assert!(rd.child("moderated", NS_MODERATE).is_some());
        assert!(tomb.child("occupant-id", "urn:xmpp:occupant-id:0").is_some());
        assert_eq!(body(&p.items[1].1), "something fine");

        // Join history shows the tombstone, not the message.
        let mut c = s.online("alice", "other", 0).await;
        let got = join(&mut c, "mod", "Alice").await;
        let all: String = got.iter().map(|e| e.to_xml()).collect();
        assert!(!all.contains("awful"), "{all}");
        assert!(all.contains("something fine"));
    })
    .await;
}

/// A XEP-0424 retraction of `sid` sent to the room; returns the room's relay of it.
async fn retract(c: &mut Client, r: &str, id: &str, sid: &str) -> Element {
    c.send(&format!(
        "<message to='{}' type='groupchat' id='{id}'><retract xmlns='{NS_RETRACT}' id='{sid}'/>\
         <fallback xmlns='urn:xmpp:fallback:0' for='{NS_RETRACT}'/>\
         <body>/me retracted a previous message, but it's unsupported by your client.</body></message>",
        room(r)
    ))
    .await
    .unwrap();
    recv_broadcast(c, id).await
}

#[tokio::test]
async fn an_author_retracts_only_their_own_message() {
    bounded(async {
        let (s, mut a, mut b, r) = alice_and_bob_in("oops").await;

        // Retraction and tombstones are advertised.
        let info = a
            .iq_ok("get", Some(&r), &format!("<query xmlns='{DISCO_INFO}'/>"))
            .await
            .unwrap();
        for f in [NS_RETRACT, "urn:xmpp:message-retract:1#tombstone"] {
            assert!(
                info.to_xml().contains(&format!("'{f}'")),
                "room lacks {f}: {}",
                info.to_xml()
            );
        }

        let m = say(&mut b, "oops", "b1", "typo by bob").await;
        let bob_sid = stanza_id(&m, &r).expect("stanza id");
        recv_broadcast(&mut a, "b1").await;
        let m = say(&mut a, "oops", "a1", "words by alice").await;
        let alice_sid = stanza_id(&m, &r).expect("stanza id");
        recv_broadcast(&mut b, "a1").await;

        // Bob retracts Alice's message: relayed as sent, the archive keeps the message.
        let rel = retract(&mut b, "oops", "r-other", &alice_sid).await;
        let seen = recv_broadcast(&mut a, "r-other").await;
        for x in [&rel, &seen] {
            assert_eq!(x.attr("from"), Some(occ("oops", "Bob").as_str()));
            assert_eq!(
                x.child("retract", NS_RETRACT).and_then(|t| t.attr("id")),
                Some(alice_sid.as_str())
            );
        }

        // Bob's own message, retracted from another client of his account under another
        // nick (same occupant id): it becomes a tombstone.
        let mut b2 = s.online("bob", "b2", 0).await;
        join(&mut b2, "oops", "Bobby").await;
        retract(&mut b2, "oops", "r-own", &bob_sid).await;
        recv_broadcast(&mut a, "r-own").await;

        let p = query(&mut a, "oops", &[], "").await.unwrap();
        let ids: Vec<&str> = p.items.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(ids.len(), 4, "two messages and two retractions: {ids:?}");
        assert_eq!(ids[0], bob_sid);
        let tomb = &p.items[0].1;
        assert!(tomb.child("body", NS_CLIENT).is_none(), "{}", tomb.to_xml());
        assert!(!tomb.to_xml().contains("typo"), "{}", tomb.to_xml());
        let rd = tomb.child("retracted", NS_RETRACT).expect("tombstone");
        assert_eq!(rd.attr("id"), Some("r-own"));
        assert!(rd.attr("stamp").is_some());
        assert!(rd.child("moderated", NS_MODERATE).is_none());
        assert!(tomb
            .child("occupant-id", "urn:xmpp:occupant-id:0")
            .is_some());
        // Alice's message is intact; the retractions themselves are archived.
        assert_eq!(ids[1], alice_sid);
        assert_eq!(body(&p.items[1].1), "words by alice");
        for (_, m) in &p.items[2..] {
            assert!(m.child("retract", NS_RETRACT).is_some(), "{}", m.to_xml());
        }

        // Join history shows the tombstone, not the message.
        let mut c = s.online("alice", "other", 0).await;
        let got = join(&mut c, "oops", "Alice").await;
        let all: String = got.iter().map(|e| e.to_xml()).collect();
        assert!(!all.contains("typo by bob"), "{all}");
        assert!(all.contains("words by alice"));
    })
    .await;
}

#[tokio::test]
async fn a_destroyed_rooms_archive_is_deleted() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.online("alice", "a", 0).await;
        create(
            &mut a,
            "doomed",
            "Alice",
            &[("muc#roomconfig_persistentroom", "1")],
        )
        .await;
        for i in 0..3 {
            say(&mut a, "doomed", &format!("d{i}"), &format!("doomed {i}")).await;
        }
        assert_eq!(
            query(&mut a, "doomed", &[], "").await.unwrap().items.len(),
            3
        );
        a.iq_ok(
            "set",
            Some(&room("doomed")),
            &format!("<query xmlns='{MUC_OWNER}'><destroy/></query>"),
        )
        .await
        .unwrap();
        let me = occ("doomed", "Alice");
        a.recv_matching(W, "destroyed", |e| {
            e.name == "presence"
                && e.attr("from") == Some(me.as_str())
                && e.attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
        // A new room of the same name starts with an empty archive.
        create(
            &mut a,
            "doomed",
            "Alice",
            &[("muc#roomconfig_persistentroom", "1")],
        )
        .await;
        let p = query(&mut a, "doomed", &[], "").await.unwrap();
        assert!(
            p.items.is_empty(),
            "{:?}",
            p.items.iter().map(|(_, m)| m.to_xml()).collect::<Vec<_>>()
        );
        assert_eq!(p.fin.attr("complete"), Some("true"));
        say(&mut a, "doomed", "n0", "new life").await;
        let p = query(&mut a, "doomed", &[], "").await.unwrap();
        assert_eq!(p.items.len(), 1);
        assert_eq!(body(&p.items[0].1), "new life");

        // A temporary room's archive ends with the room.
        create(&mut a, "brief", "Alice", &[]).await;
        say(&mut a, "brief", "t0", "short-lived").await;
        assert_eq!(
            query(&mut a, "brief", &[], "").await.unwrap().items.len(),
            1
        );
        a.send(&format!(
            "<presence to='{}' type='unavailable'/>",
            occ("brief", "Alice")
        ))
        .await
        .unwrap();
        let me = occ("brief", "Alice");
        a.recv_matching(W, "left", |e| {
            e.name == "presence"
                && e.attr("from") == Some(me.as_str())
                && e.attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
        let e = query(&mut a, "brief", &[], "")
            .await
            .err()
            .expect("no such room");
        assert_eq!(e.error_condition().as_deref(), Some("item-not-found"));
        create(&mut a, "brief", "Alice", &[]).await;
        assert!(query(&mut a, "brief", &[], "")
            .await
            .unwrap()
            .items
            .is_empty());
    })
    .await;
}
