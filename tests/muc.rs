//! XEP-0045 Multi-User Chat at conference.localhost, end to end with the independent client:
//! room lifecycle, nick changes, roles and affiliations, bans, passwords, members-only rooms,
//! invitations (mediated and XEP-0249 direct), history, private messages, self-ping
//! (XEP-0410), occupant ids (XEP-0421), destruction, persistence across a restart, and room
//! avatars (XEP-0486: the room's vCard, its hash in disco, the update presence).

mod common;

use common::*;

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
const SERVICE: &str = "conference.localhost";

fn room(name: &str) -> String {
    format!("{name}@{SERVICE}")
}

fn occ(name: &str, nick: &str) -> String {
    format!("{name}@{SERVICE}/{nick}")
}

/// Status codes of a MUC presence or message.
fn codes(e: &Element) -> Vec<String> {
    e.child("x", MUC_USER)
        .map(|x| {
            x.elements()
                .filter(|s| s.name == "status")
                .filter_map(|s| s.attr("code").map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn has_code(e: &Element, code: &str) -> bool {
    codes(e).iter().any(|c| c == code)
}

/// The `<item/>` of a MUC presence.
fn item(e: &Element) -> Element {
    e.child("x", MUC_USER)
        .and_then(|x| x.child("item", MUC_USER))
        .unwrap_or_else(|| panic!("no muc#user item: {}", e.to_xml()))
        .clone()
}

fn features(q: &Element) -> Vec<String> {
    q.elements()
        .filter(|f| f.name == "feature")
        .filter_map(|f| f.attr("var").map(String::from))
        .collect()
}

/// Send join presence (with `inner` inside the MUC `<x/>`).
async fn send_join(c: &mut Client, r: &str, nick: &str, inner: &str) {
    c.send(&format!(
        "<presence to='{}'><x xmlns='{MUC}'>{inner}</x></presence>",
        escape(&occ(r, nick))
    ))
    .await
    .unwrap();
}

/// Join and return the occupant's own presence (status 110).
async fn join(c: &mut Client, r: &str, nick: &str, inner: &str) -> Element {
    send_join(c, r, nick, inner).await;
    let me = occ(r, nick);
    let p = c
        .recv_matching(W, &format!("self-presence from {me}"), |e| {
            e.name == "presence"
                && (e.attr("from") == Some(me.as_str()) && has_code(e, "110")
                    || e.attr("type") == Some("error"))
        })
        .await
        .unwrap();
    assert_ne!(
        p.attr("type"),
        Some("error"),
        "join refused: {}",
        p.to_xml()
    );
    p
}

/// Join expecting an error; returns its condition.
async fn join_refused(c: &mut Client, r: &str, nick: &str, inner: &str) -> String {
    send_join(c, r, nick, inner).await;
    let me = occ(r, nick);
    let p = c
        .recv_matching(W, &format!("error presence from {me}"), |e| {
            e.name == "presence" && e.attr("from") == Some(me.as_str())
        })
        .await
        .unwrap();
    assert_eq!(p.attr("type"), Some("error"), "{}", p.to_xml());
    p.error_condition().unwrap_or_default()
}

/// Read the subject message that ends a join.
async fn subject(c: &mut Client, r: &str) -> Element {
    let prefix = room(r);
    c.recv_matching(W, "subject message", move |e| {
        e.name == "message"
            && e.attr("from").is_some_and(|f| f.starts_with(&prefix))
            && e.child("subject", NS_CLIENT).is_some()
            && e.child("body", NS_CLIENT).is_none()
    })
    .await
    .unwrap()
}

/// Create a room as its owner and accept the default configuration (an instant room).
async fn create(c: &mut Client, r: &str, nick: &str) {
    let p = join(c, r, nick, "").await;
    assert!(has_code(&p, "201"), "created: {}", p.to_xml());
    assert_eq!(item(&p).attr("affiliation"), Some("owner"));
    assert_eq!(item(&p).attr("role"), Some("moderator"));
    subject(c, r).await;
    owner_submit(c, r, "").await;
}

async fn owner_submit(c: &mut Client, r: &str, fields: &str) {
    c.iq_ok(
        "set",
        Some(&room(r)),
        &format!(
            "<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             {fields}</x></query>"
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("configure {r}: {e}"));
}

fn field(var: &str, value: &str) -> String {
    format!(
        "<field var='{var}'><value>{}</value></field>",
        escape(value)
    )
}

async fn admin_set(c: &mut Client, r: &str, item: &str) -> Element {
    c.iq(
        "set",
        Some(&room(r)),
        &format!("<query xmlns='{MUC_ADMIN}'>{item}</query>"),
    )
    .await
    .unwrap()
}

async fn say(c: &mut Client, r: &str, id: &str, body: &str) {
    c.send(&format!(
        "<message to='{}' type='groupchat' id='{id}'><body>{}</body></message>",
        room(r),
        escape(body)
    ))
    .await
    .unwrap();
}

async fn presence_from(c: &mut Client, from: &str, kind: Option<&str>) -> Element {
    checks::expect_presence(c, from, kind).await
}

#[tokio::test]
async fn lifecycle_create_join_talk_nick_change_leave() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;

        // Server disco lists the service; the service is a text conference.
        let items = a
            .iq_ok(
                "get",
                Some(DOMAIN),
                &format!("<query xmlns='{DISCO_ITEMS}'/>"),
            )
            .await
            .unwrap();
        let q = items.child("query", DISCO_ITEMS).unwrap();
        assert!(
            q.elements().any(|i| i.attr("jid") == Some(SERVICE)),
            "{}",
            items.to_xml()
        );
        let info = a
            .iq_ok(
                "get",
                Some(SERVICE),
                &format!("<query xmlns='{DISCO_INFO}'/>"),
            )
            .await
            .unwrap();
        let q = info.child("query", DISCO_INFO).unwrap();
        let id = q.child("identity", DISCO_INFO).unwrap();
        assert_eq!(
            (id.attr("category"), id.attr("type")),
            (Some("conference"), Some("text"))
        );
        assert!(features(q).contains(&MUC.to_string()));

        // Creation: 201 and a locked room until configured.
        let p = join(&mut a, "tea", "Alice", "").await;
        assert!(has_code(&p, "201") && has_code(&p, "110"), "{}", p.to_xml());
        assert!(
            p.child("occupant-id", OCCUPANT_ID).is_some(),
            "{}",
            p.to_xml()
        );
        subject(&mut a, "tea").await;
        assert_eq!(
            join_refused(&mut b, "tea", "Bob", "").await,
            "item-not-found"
        );
        let form = a
            .iq_ok(
                "get",
                Some(&room("tea")),
                &format!("<query xmlns='{MUC_OWNER}'/>"),
            )
            .await
            .unwrap();
        let x = form
            .child("query", MUC_OWNER)
            .and_then(|q| q.child("x", "jabber:x:data"))
            .expect("config form");
        assert!(x
            .elements()
            .any(|f| f.attr("var") == Some("muc#roomconfig_persistentroom")));
        owner_submit(&mut a, "tea", "").await;

        // Bob joins: he sees Alice first, then himself; Alice sees Bob.
        let pb = join(&mut b, "tea", "Bob", "").await;
        assert_eq!(item(&pb).attr("role"), Some("participant"));
        assert_eq!(item(&pb).attr("affiliation"), Some("none"));
        assert!(!has_code(&pb, "201"));
        let seen = presence_from(&mut b, &occ("tea", "Alice"), None).await;
        assert_eq!(item(&seen).attr("affiliation"), Some("owner"));
        // Semi-anonymous by default: Bob (a participant) does not see Alice's real JID;
        // Alice (a moderator) sees Bob's.
        assert_eq!(item(&seen).attr("jid"), None);
        let pa = presence_from(&mut a, &occ("tea", "Bob"), None).await;
        assert_eq!(item(&pa).attr("jid"), Some(full("bob", "b").as_str()));
        subject(&mut b, "tea").await;

        // Talk: reflected to everyone (the sender too), from the occupant JID, with the
        // same occupant id as the presence.
        say(&mut b, "tea", "m1", "hello <room>").await;
        for c in [&mut a, &mut b] {
            let m = expect_message(c, "m1").await;
            assert_eq!(m.attr("from"), Some(occ("tea", "Bob").as_str()));
            assert_eq!(m.attr("type"), Some("groupchat"));
            assert_eq!(
                m.child_text("body", NS_CLIENT).as_deref(),
                Some("hello <room>")
            );
            let oid = m
                .child("occupant-id", OCCUPANT_ID)
                .and_then(|o| o.attr("id"))
                .map(String::from);
            assert_eq!(
                oid.as_deref(),
                pb.child("occupant-id", OCCUPANT_ID)
                    .and_then(|o| o.attr("id"))
            );
        }

        // Subject: a participant may not change it by default; the owner may.
        b.send(&format!(
            "<message to='{}' type='groupchat' id='s1'><subject>x</subject></message>",
            room("tea")
        ))
        .await
        .unwrap();
        let err = expect_message(&mut b, "s1").await;
        assert_eq!(err.error_condition().as_deref(), Some("forbidden"));
        a.send(&format!(
            "<message to='{}' type='groupchat' id='s2'><subject>Tea time</subject></message>",
            room("tea")
        ))
        .await
        .unwrap();
        let sm = expect_message(&mut b, "s2").await;
        assert_eq!(
            sm.child_text("subject", NS_CLIENT).as_deref(),
            Some("Tea time")
        );

        // Nick change: unavailable with 303 and the new nick, then available from the new one.
        b.send(&format!("<presence to='{}'/>", occ("tea", "Robert")))
            .await
            .unwrap();
        let gone = presence_from(&mut a, &occ("tea", "Bob"), Some("unavailable")).await;
        assert!(has_code(&gone, "303"), "{}", gone.to_xml());
        assert_eq!(item(&gone).attr("nick"), Some("Robert"));
        presence_from(&mut a, &occ("tea", "Robert"), None).await;
        let mine = presence_from(&mut b, &occ("tea", "Bob"), Some("unavailable")).await;
        assert!(has_code(&mine, "303") && has_code(&mine, "110"));
        // A nick in use is a conflict.
        b.send(&format!("<presence to='{}'/>", occ("tea", "Alice")))
            .await
            .unwrap();
        let err = presence_from(&mut b, &occ("tea", "Alice"), Some("error")).await;
        assert_eq!(err.error_condition().as_deref(), Some("conflict"));

        // Private message between occupants.
        send_chat(&mut a, &occ("tea", "Robert"), "pm1", "psst").await;
        let pm = expect_message(&mut b, "pm1").await;
        assert_eq!(pm.attr("from"), Some(occ("tea", "Alice").as_str()));
        assert!(pm.child("x", MUC_USER).is_some());
        send_chat(&mut a, &occ("tea", "Nobody"), "pm2", "?").await;
        let e = expect_message(&mut a, "pm2").await;
        assert_eq!(e.error_condition().as_deref(), Some("item-not-found"));

        // Self-ping (XEP-0410) answered by the service.
        a.iq_ok(
            "get",
            Some(&occ("tea", "Alice")),
            "<ping xmlns='urn:xmpp:ping'/>",
        )
        .await
        .unwrap();

        // Bob leaves; then Alice; the temporary room is gone.
        b.send(&format!(
            "<presence to='{}' type='unavailable'/>",
            occ("tea", "Robert")
        ))
        .await
        .unwrap();
        let left = presence_from(&mut a, &occ("tea", "Robert"), Some("unavailable")).await;
        assert_eq!(item(&left).attr("role"), Some("none"));
        let own = presence_from(&mut b, &occ("tea", "Robert"), Some("unavailable")).await;
        assert!(has_code(&own, "110"));
        // Not an occupant any more: self-ping and messages are refused.
        let r = b
            .iq(
                "get",
                Some(&occ("tea", "Robert")),
                "<ping xmlns='urn:xmpp:ping'/>",
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("not-acceptable"));
        say(&mut b, "tea", "m2", "still here?").await;
        let e = expect_message(&mut b, "m2").await;
        assert_eq!(e.error_condition().as_deref(), Some("not-acceptable"));
        a.send(&format!(
            "<presence to='{}' type='unavailable'/>",
            occ("tea", "Alice")
        ))
        .await
        .unwrap();
        presence_from(&mut a, &occ("tea", "Alice"), Some("unavailable")).await;
        let r = a
            .iq(
                "get",
                Some(&room("tea")),
                &format!("<query xmlns='{DISCO_INFO}'/>"),
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"));
    })
    .await
}

#[tokio::test]
async fn leaving_by_the_bare_room_jid() {
    // aioxmpp's Room.leave sends its unavailable presence to room@service (no nick).
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        create(&mut a, "r", "A").await;
        join(&mut b, "r", "B", "").await;
        presence_from(&mut a, &occ("r", "B"), None).await;
        b.send(&format!(
            "<presence to='{}' type='unavailable'/>",
            room("r")
        ))
        .await
        .unwrap();
        let mine = presence_from(&mut b, &occ("r", "B"), Some("unavailable")).await;
        assert!(has_code(&mine, "110"), "own leave: {}", mine.to_xml());
        let gone = presence_from(&mut a, &occ("r", "B"), Some("unavailable")).await;
        assert!(!has_code(&gone, "110"), "leave at alice: {}", gone.to_xml());
    })
    .await
}

#[tokio::test]
async fn a_closed_session_leaves_the_room() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        create(&mut a, "r", "A").await;
        join(&mut b, "r", "B", "").await;
        presence_from(&mut a, &occ("r", "B"), None).await;
        b.close().await.unwrap();
        presence_from(&mut a, &occ("r", "B"), Some("unavailable")).await;
    })
    .await
}

#[tokio::test]
async fn roles_affiliations_kick_ban_and_voice() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol", "dave"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        let mut d = s.online("dave", "d", 0).await;
        create(&mut a, "mod", "A").await;
        owner_submit(&mut a, "mod", &field("muc#roomconfig_moderatedroom", "1")).await;
        let disco = a
            .iq_ok(
                "get",
                Some(&room("mod")),
                &format!("<query xmlns='{DISCO_INFO}'/>"),
            )
            .await
            .unwrap();
        assert!(
            features(disco.child("query", DISCO_INFO).unwrap()).contains(&"muc_moderated".into())
        );

        // Moderated: a newcomer without affiliation is a visitor and may not speak.
        let pb = join(&mut b, "mod", "B", "").await;
        assert_eq!(item(&pb).attr("role"), Some("visitor"));
        say(&mut b, "mod", "v1", "may I?").await;
        assert_eq!(
            expect_message(&mut b, "v1")
                .await
                .error_condition()
                .as_deref(),
            Some("forbidden")
        );

        // Voice request reaches the moderator as a form; approving it gives voice.
        b.send(&format!(
            "<message to='{}' id='vr'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
             <field var='muc#role'><value>participant</value></field></x></message>",
            room("mod")
        ))
        .await
        .unwrap();
        let req = a
            .recv_matching(W, "voice request", |e| {
                e.name == "message" && e.child("x", "jabber:x:data").is_some()
            })
            .await
            .unwrap();
        let form = req.child("x", "jabber:x:data").unwrap();
        let nick_field = form
            .elements()
            .find(|f| f.attr("var") == Some("muc#roomnick"))
            .unwrap();
        assert_eq!(
            nick_field.child_text("value", "jabber:x:data").as_deref(),
            Some("B")
        );
        a.send(&format!(
            "<message to='{}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
             <field var='muc#role'><value>participant</value></field>\
             <field var='muc#roomnick'><value>B</value></field>\
             <field var='muc#request_allow'><value>true</value></field></x></message>",
            room("mod")
        ))
        .await
        .unwrap();
        let p = checks::expect_presence_where(&mut b, &occ("mod", "B"), None, "voice", |e| {
            item(e).attr("role") == Some("participant")
        })
        .await;
        assert!(has_code(&p, "110"));
        say(&mut b, "mod", "v2", "thanks").await;
        assert_eq!(
            expect_message(&mut a, "v2")
                .await
                .child_text("body", NS_CLIENT)
                .as_deref(),
            Some("thanks")
        );

        // Revoke voice, grant it back, then moderator (only admins+ may).
        let r = admin_set(&mut a, "mod", "<item nick='B' role='visitor'/>").await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        checks::expect_presence_where(&mut b, &occ("mod", "B"), None, "visitor", |e| {
            item(e).attr("role") == Some("visitor")
        })
        .await;
        let pc = join(&mut c, "mod", "C", "").await;
        assert_eq!(item(&pc).attr("role"), Some("visitor"));
        // Affiliations: member -> participant; admin -> moderator.
        let r = admin_set(
            &mut a,
            "mod",
            &format!("<item jid='{}' affiliation='member'/>", bare("carol")),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        let p = checks::expect_presence_where(&mut c, &occ("mod", "C"), None, "member", |e| {
            item(e).attr("affiliation") == Some("member")
        })
        .await;
        assert_eq!(item(&p).attr("role"), Some("participant"));
        let r = admin_set(
            &mut a,
            "mod",
            &format!("<item jid='{}' affiliation='admin'/>", bare("carol")),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        let p = checks::expect_presence_where(&mut c, &occ("mod", "C"), None, "admin", |e| {
            item(e).attr("affiliation") == Some("admin")
        })
        .await;
        assert_eq!(item(&p).attr("role"), Some("moderator"));
        // An admin may not make owners, nor act on the owner.
        let r = admin_set(
            &mut c,
            "mod",
            &format!("<item jid='{}' affiliation='owner'/>", bare("bob")),
        )
        .await;
        assert_eq!(r.error_condition().as_deref(), Some("not-allowed"));
        let r = admin_set(&mut c, "mod", "<item nick='A' role='none'/>").await;
        assert_eq!(r.error_condition().as_deref(), Some("not-allowed"));
        // A visitor may do nothing.
        let r = admin_set(&mut b, "mod", "<item nick='C' role='none'/>").await;
        assert_eq!(r.error_condition().as_deref(), Some("forbidden"));
        // The moderator role directly.
        let r = admin_set(&mut c, "mod", "<item nick='B' role='moderator'/>").await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        checks::expect_presence_where(&mut b, &occ("mod", "B"), None, "moderator", |e| {
            item(e).attr("role") == Some("moderator")
        })
        .await;
        let r = admin_set(&mut c, "mod", "<item nick='B' role='participant'/>").await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        // Role lists (moderators) and affiliation lists (admins+).
        let r = a
            .iq_ok(
                "get",
                Some(&room("mod")),
                &format!("<query xmlns='{MUC_ADMIN}'><item role='moderator'/></query>"),
            )
            .await
            .unwrap();
        let nicks: Vec<_> = r
            .child("query", MUC_ADMIN)
            .unwrap()
            .elements()
            .filter_map(|i| i.attr("nick").map(String::from))
            .collect();
        assert_eq!(nicks, vec!["A".to_string(), "C".to_string()]);
        let r = a
            .iq_ok(
                "get",
                Some(&room("mod")),
                &format!("<query xmlns='{MUC_ADMIN}'><item affiliation='admin'/></query>"),
            )
            .await
            .unwrap();
        let jids: Vec<_> = r
            .child("query", MUC_ADMIN)
            .unwrap()
            .elements()
            .filter_map(|i| i.attr("jid").map(String::from))
            .collect();
        assert_eq!(jids, vec![bare("carol")]);

        // Kick (307) with actor and reason; everyone sees it.
        let r = admin_set(
            &mut c,
            "mod",
            "<item nick='B' role='none'><reason>noise</reason></item>",
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        let k = presence_from(&mut b, &occ("mod", "B"), Some("unavailable")).await;
        assert!(has_code(&k, "307") && has_code(&k, "110"), "{}", k.to_xml());
        assert_eq!(
            item(&k).child_text("reason", MUC_USER).as_deref(),
            Some("noise")
        );
        assert_eq!(
            item(&k)
                .child("actor", MUC_USER)
                .and_then(|a| a.attr("nick")),
            Some("C")
        );
        let k = presence_from(&mut a, &occ("mod", "B"), Some("unavailable")).await;
        assert!(has_code(&k, "307") && !has_code(&k, "110"));

        // Ban (301) of someone present, then the banned user cannot come back.
        join(&mut d, "mod", "D", "").await;
        let r = admin_set(
            &mut a,
            "mod",
            &format!(
                "<item jid='{}' affiliation='outcast'><reason>spam</reason></item>",
                bare("dave")
            ),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        let banned = presence_from(&mut d, &occ("mod", "D"), Some("unavailable")).await;
        assert!(has_code(&banned, "301"), "{}", banned.to_xml());
        assert_eq!(item(&banned).attr("affiliation"), Some("outcast"));
        assert_eq!(join_refused(&mut d, "mod", "D2", "").await, "forbidden");
        let r = a
            .iq_ok(
                "get",
                Some(&room("mod")),
                &format!("<query xmlns='{MUC_ADMIN}'><item affiliation='outcast'/></query>"),
            )
            .await
            .unwrap();
        assert!(r.to_xml().contains(&bare("dave")));
        // Unban.
        let r = admin_set(
            &mut a,
            "mod",
            &format!("<item jid='{}' affiliation='none'/>", bare("dave")),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"));
        join(&mut d, "mod", "D", "").await;

        // The last owner cannot leave ownership; a second owner makes it possible.
        let r = admin_set(
            &mut a,
            "mod",
            &format!("<item jid='{}' affiliation='admin'/>", bare("alice")),
        )
        .await;
        assert_eq!(r.error_condition().as_deref(), Some("conflict"));
        let r = admin_set(
            &mut a,
            "mod",
            &format!("<item jid='{}' affiliation='owner'/>", bare("carol")),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"));
        let r = admin_set(
            &mut a,
            "mod",
            &format!("<item jid='{}' affiliation='member'/>", bare("alice")),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        // A non-owner cannot read the configuration any more.
        let r = a
            .iq(
                "get",
                Some(&room("mod")),
                &format!("<query xmlns='{MUC_OWNER}'/>"),
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("forbidden"));
    })
    .await
}

#[tokio::test]
async fn passwords_members_only_and_invitations() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        create(&mut a, "secret", "A").await;
        owner_submit(&mut a, "secret", &format!("{}{}",
            field("muc#roomconfig_passwordprotectedroom", "1"),
            field("muc#roomconfig_roomsecret", "s3cret"))).await;
        let disco = b.iq_ok("get", Some(&room("secret")), &format!("<query xmlns='{DISCO_INFO}'/>")).await.unwrap();
        assert!(features(disco.child("query", DISCO_INFO).unwrap()).contains(&"muc_passwordprotected".into()));
        assert_eq!(join_refused(&mut b, "secret", "B", "").await, "not-authorized");
        assert_eq!(join_refused(&mut b, "secret", "B", "<password>wrong</password>").await, "not-authorized");
        join(&mut b, "secret", "B", "<password>s3cret</password>").await;

        // Members-only: outsiders get registration-required.
        create(&mut a, "club", "A").await;
        owner_submit(&mut a, "club", &field("muc#roomconfig_membersonly", "1")).await;
        assert_eq!(join_refused(&mut c, "club", "C", "").await, "registration-required");
        // A mediated invitation from the owner makes Carol a member.
        a.send(&format!(
            "<message to='{}' id='inv'><x xmlns='{MUC_USER}'><invite to='{}'><reason>join us</reason></invite></x></message>",
            room("club"), bare("carol"))).await.unwrap();
        let inv = c.recv_matching(W, "invitation", |e| {
            e.name == "message" && e.child("x", MUC_USER).is_some_and(|x| x.child("invite", MUC_USER).is_some())
        }).await.unwrap();
        assert_eq!(inv.attr("from"), Some(room("club").as_str()));
        let i = inv.child("x", MUC_USER).unwrap().child("invite", MUC_USER).unwrap();
        assert_eq!(i.attr("from"), Some(bare("alice").as_str()));
        assert_eq!(i.child_text("reason", MUC_USER).as_deref(), Some("join us"));
        join(&mut c, "club", "C", "").await;
        // A member (not admin) may not invite to a members-only room by default.
        c.send(&format!(
            "<message to='{}' id='inv2'><x xmlns='{MUC_USER}'><invite to='{}'/></x></message>",
            room("club"), bare("bob"))).await.unwrap();
        assert_eq!(expect_message(&mut c, "inv2").await.error_condition().as_deref(), Some("forbidden"));
        // Decline is passed back to the inviter.
        b.send(&format!(
            "<message to='{}'><x xmlns='{MUC_USER}'><decline to='{}'><reason>busy</reason></decline></x></message>",
            room("club"), bare("alice"))).await.unwrap();
        let dec = a.recv_matching(W, "decline", |e| {
            e.child("x", MUC_USER).is_some_and(|x| x.child("decline", MUC_USER).is_some())
        }).await.unwrap();
        let dl = dec.child("x", MUC_USER).unwrap().child("decline", MUC_USER).unwrap();
        assert_eq!(dl.attr("from"), Some(bare("bob").as_str()));
        // Revoking membership in a members-only room removes the occupant (321).
        let r = admin_set(&mut a, "club", &format!("<item jid='{}' affiliation='none'/>", bare("carol"))).await;
        assert_eq!(r.attr("type"), Some("result"));
        let gone = presence_from(&mut c, &occ("club", "C"), Some("unavailable")).await;
        assert!(has_code(&gone, "321"), "{}", gone.to_xml());

        // XEP-0249 direct invitation: passed from client to client untouched.
        a.send(&format!(
            "<message to='{}' id='direct'><x xmlns='jabber:x:conference' jid='{}' password='s3cret' reason='come'/></message>",
            full("carol", "c"), room("secret"))).await.unwrap();
        let m = expect_message(&mut c, "direct").await;
        let x = m.child("x", "jabber:x:conference").expect("direct invitation");
        assert_eq!(x.attr("jid"), Some(room("secret").as_str()));
        let pw = x.attr("password").unwrap().to_string();
        join(&mut c, "secret", "C", &format!("<password>{pw}</password>")).await;
    })
    .await
}

#[tokio::test]
async fn history_on_join_with_limits() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        create(&mut a, "h", "A").await;
        for i in 1..=5 {
            say(&mut a, "h", &format!("h{i}"), &format!("message {i}")).await;
            expect_message(&mut a, &format!("h{i}")).await;
        }
        let history = |c: &Vec<Element>| -> Vec<String> {
            c.iter()
                .filter(|e| e.name == "message" && e.child("body", NS_CLIENT).is_some())
                .map(|e| {
                    let d = e
                        .child("delay", "urn:xmpp:delay")
                        .unwrap_or_else(|| panic!("no delay: {}", e.to_xml()));
                    assert_eq!(d.attr("from"), Some(room("h").as_str()));
                    e.attr("id").unwrap_or_default().to_string()
                })
                .collect()
        };
        async fn join_and_collect(b: &mut Client, inner: &str) -> Vec<Element> {
            send_join(b, "h", "B", inner).await;
            let (before, _subject) = b
                .collect_until(W, |e| {
                    e.name == "message" && e.child("subject", NS_CLIENT).is_some()
                })
                .await
                .unwrap();
            b.send(&format!(
                "<presence to='{}' type='unavailable'/>",
                occ("h", "B")
            ))
            .await
            .unwrap();
            presence_from(b, &occ("h", "B"), Some("unavailable")).await;
            before
        }
        let all = join_and_collect(&mut b, "").await;
        assert_eq!(history(&all), ["h1", "h2", "h3", "h4", "h5"]);
        let two = join_and_collect(&mut b, "<history maxstanzas='2'/>").await;
        assert_eq!(history(&two), ["h4", "h5"]);
        let none = join_and_collect(&mut b, "<history maxchars='0'/>").await;
        assert!(history(&none).is_empty());
        let future = join_and_collect(&mut b, "<history since='2999-01-01T00:00:00Z'/>").await;
        assert!(history(&future).is_empty());
        let past = join_and_collect(
            &mut b,
            "<history since='2000-01-01T00:00:00Z' maxstanzas='3'/>",
        )
        .await;
        assert_eq!(history(&past), ["h3", "h4", "h5"]);
        let recent = join_and_collect(&mut b, "<history seconds='600'/>").await;
        assert_eq!(history(&recent).len(), 5);
        // The room's own limit.
        owner_submit(&mut a, "h", &field("muc#maxhistoryfetch", "1")).await;
        let one = join_and_collect(&mut b, "").await;
        assert_eq!(history(&one), ["h5"]);
    })
    .await
}

#[tokio::test]
async fn persistent_room_survives_a_restart_and_destroy_removes_it() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.online("alice", "a", 0).await;
        create(&mut a, "keep", "A").await;
        owner_submit(&mut a, "keep", &format!("{}{}{}",
            field("muc#roomconfig_persistentroom", "1"),
            field("muc#roomconfig_roomname", "Kept room"),
            field("muc#roomconfig_membersonly", "1"))).await;
        let r = admin_set(&mut a, "keep", &format!("<item jid='{}' affiliation='member'/>", bare("bob"))).await;
        assert_eq!(r.attr("type"), Some("result"));
        a.send(&format!("<message to='{}' type='groupchat' id='s'><subject>Still here</subject></message>", room("keep"))).await.unwrap();
        expect_message(&mut a, "s").await;
        // A temporary room next to it is not kept.
        create(&mut a, "gone", "A").await;
        a.close().await.unwrap();

        let s = s.restart().await;
        let mut b = s.online("bob", "b", 0).await;
        let info = b.iq_ok("get", Some(&room("keep")), &format!("<query xmlns='{DISCO_INFO}'/>")).await.unwrap();
        let q = info.child("query", DISCO_INFO).unwrap();
        assert_eq!(q.child("identity", DISCO_INFO).unwrap().attr("name"), Some("Kept room"));
        let f = features(q);
        assert!(f.contains(&"muc_persistent".into()) && f.contains(&"muc_membersonly".into()), "{f:?}");
        let r = b.iq("get", Some(&room("gone")), &format!("<query xmlns='{DISCO_INFO}'/>")).await.unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"));
        let items = b.iq_ok("get", Some(SERVICE), &format!("<query xmlns='{DISCO_ITEMS}'/>")).await.unwrap();
        assert!(items.to_xml().contains(&room("keep")), "{}", items.to_xml());
        // Bob is still a member (members-only) and the subject is kept.
        let p = join(&mut b, "keep", "B", "").await;
        assert_eq!(item(&p).attr("affiliation"), Some("member"));
        let sub = subject(&mut b, "keep").await;
        assert_eq!(sub.child_text("subject", NS_CLIENT).as_deref(), Some("Still here"));
        assert_eq!(sub.attr("from"), Some(occ("keep", "A").as_str()));
        // Alice is still the owner: she destroys it with a reason.
        let mut a = s.online("alice", "a", 0).await;
        join(&mut a, "keep", "A", "").await;
        let r = a.iq("set", Some(&room("keep")), &format!(
            "<query xmlns='{MUC_OWNER}'><destroy jid='{}'><reason>moving</reason></destroy></query>", room("new"))).await.unwrap();
        assert_eq!(r.attr("type"), Some("result"), "{}", r.to_xml());
        let p = presence_from(&mut b, &occ("keep", "B"), Some("unavailable")).await;
        let d = p.child("x", MUC_USER).and_then(|x| x.child("destroy", MUC_USER)).unwrap_or_else(|| panic!("{}", p.to_xml()));
        assert_eq!(d.attr("jid"), Some(room("new").as_str()));
        assert_eq!(d.child_text("reason", MUC_USER).as_deref(), Some("moving"));
        let r = b.iq("get", Some(&room("keep")), &format!("<query xmlns='{DISCO_INFO}'/>")).await.unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"));
        a.close().await.unwrap();
        let s = s.restart().await;
        let mut b = s.online("bob", "b", 0).await;
        let r = b.iq("get", Some(&room("keep")), &format!("<query xmlns='{DISCO_INFO}'/>")).await.unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"), "destroyed rooms stay destroyed");
    })
    .await
}

const VCARD: &str = "vcard-temp";
const VCARD_UPDATE: &str = "vcard-temp:x:update";

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The room's disco#info features and its `muc#roominfo_avatarhash` values.
async fn disco_avatar(c: &mut Client, r: &str) -> (Vec<String>, Vec<String>) {
    let info = c
        .iq_ok(
            "get",
            Some(&room(r)),
            &format!("<query xmlns='{DISCO_INFO}'/>"),
        )
        .await
        .unwrap();
    let q = info.child("query", DISCO_INFO).unwrap();
    let form = q
        .child("x", "jabber:x:data")
        .unwrap_or_else(|| panic!("no roominfo form: {}", q.to_xml()));
    let hashes = form
        .elements()
        .filter(|f| f.name == "field" && f.attr("var") == Some("muc#roominfo_avatarhash"))
        .flat_map(|f| f.elements().filter(|v| v.name == "value").map(|v| v.text()))
        .collect();
    (features(q), hashes)
}

/// The room's vCard as anyone reads it.
async fn room_vcard(c: &mut Client, r: &str) -> Element {
    let v = c
        .iq_ok("get", Some(&room(r)), &format!("<vCard xmlns='{VCARD}'/>"))
        .await
        .unwrap_or_else(|e| panic!("vCard get: {e}"));
    v.child("vCard", VCARD)
        .unwrap_or_else(|| panic!("no vCard: {}", v.to_xml()))
        .clone()
}

/// The photo hash of the room's XEP-0153 presence from its bare JID.
async fn avatar_presence(c: &mut Client, r: &str) -> String {
    let r = room(r);
    let p = c
        .recv_matching(W, &format!("avatar presence from {r}"), |e| {
            e.name == "presence" && e.attr("from") == Some(r.as_str())
        })
        .await
        .unwrap();
    p.child("x", VCARD_UPDATE)
        .and_then(|x| x.child("photo", VCARD_UPDATE))
        .unwrap_or_else(|| panic!("no photo: {}", p.to_xml()))
        .text()
}

async fn config_changed(c: &mut Client, r: &str) -> Element {
    let r = room(r);
    c.recv_matching(W, "status 104", |e| {
        e.name == "message" && e.attr("from") == Some(r.as_str()) && has_code(e, "104")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn room_avatar_is_set_by_owners_advertised_and_kept() {
    use base64::Engine as _;
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        create(&mut a, "pics", "A").await;
        owner_submit(&mut a, "pics", &field("muc#roomconfig_persistentroom", "1")).await;
        join(&mut b, "pics", "B", "").await;
        subject(&mut b, "pics").await;
        let r = room("pics");

        // No avatar yet: an empty vCard, vcard-temp advertised, no hash.
        assert_eq!(room_vcard(&mut b, "pics").await.elements().count(), 0);
        let (feats, hashes) = disco_avatar(&mut b, "pics").await;
        assert!(feats.iter().any(|f| f == VCARD), "{feats:?}");
        assert!(hashes.is_empty(), "{hashes:?}");

        let image: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&image);
        let want = sha1_hex(&image);
        let set = format!(
            "<vCard xmlns='{VCARD}'><FN>Pictures</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO></vCard>"
        );
        // Only owners may set it.
        let e = b.iq("set", Some(&r), &set).await.unwrap();
        assert_eq!(e.error_condition().as_deref(), Some("forbidden"), "{}", e.to_xml());
        assert!(disco_avatar(&mut b, "pics").await.1.is_empty());

        a.iq_ok("set", Some(&r), &set).await.unwrap();
        for c in [&mut a, &mut b] {
            config_changed(c, "pics").await;
            assert_eq!(avatar_presence(c, "pics").await, want);
        }
        // The hash in disco is the SHA-1 of the uploaded bytes; the photo reads back whole.
        assert_eq!(disco_avatar(&mut b, "pics").await.1, vec![want.clone()]);
        let v = room_vcard(&mut b, "pics").await;
        assert_eq!(v.child_text("FN", VCARD).as_deref(), Some("Pictures"));
        let got = v
            .child("PHOTO", VCARD)
            .and_then(|p| p.child_text("BINVAL", VCARD))
            .expect("BINVAL");
        let got: String = got.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(got).unwrap(), image);

        // Too large, or not base64: refused, and the avatar stays.
        let big = "A".repeat(70_000);
        let e = a
            .iq("set", Some(&r), &format!("<vCard xmlns='{VCARD}'><PHOTO><BINVAL>{big}</BINVAL></PHOTO></vCard>"))
            .await
            .unwrap();
        assert_eq!(e.error_condition().as_deref(), Some("policy-violation"), "{}", e.to_xml());
        let e = a
            .iq("set", Some(&r), &format!("<vCard xmlns='{VCARD}'><PHOTO><BINVAL>!!not base64</BINVAL></PHOTO></vCard>"))
            .await
            .unwrap();
        assert_eq!(e.error_condition().as_deref(), Some("bad-request"), "{}", e.to_xml());
        assert_eq!(disco_avatar(&mut b, "pics").await.1, vec![want.clone()]);

        // A newcomer learns the avatar when joining.
        let mut c = s.online("carol", "c", 0).await;
        send_join(&mut c, "pics", "C", "").await;
        assert_eq!(avatar_presence(&mut c, "pics").await, want);
        subject(&mut c, "pics").await;

        // Kept with the persistent room across a restart.
        drop((a, b, c));
        let s = s.restart().await;
        let mut b = s.online("bob", "b", 0).await;
        assert_eq!(disco_avatar(&mut b, "pics").await.1, vec![want.clone()]);
        assert_eq!(room_vcard(&mut b, "pics").await.child("PHOTO", VCARD).and_then(|p| p.child_text("BINVAL", VCARD)).map(|t| t.split_whitespace().collect::<String>()), Some(b64));

        // An empty vCard removes it: occupants are told, disco has no hash any more.
        join(&mut b, "pics", "B", "").await;
        assert_eq!(avatar_presence(&mut b, "pics").await, want);
        subject(&mut b, "pics").await;
        let mut a = s.online("alice", "a", 0).await;
        a.iq_ok("set", Some(&r), &format!("<vCard xmlns='{VCARD}'/>")).await.unwrap();
        config_changed(&mut b, "pics").await;
        assert_eq!(avatar_presence(&mut b, "pics").await, "");
        assert!(disco_avatar(&mut b, "pics").await.1.is_empty());
        assert_eq!(room_vcard(&mut a, "pics").await.elements().count(), 0);
    })
    .await
}

const REGISTER: &str = "jabber:iq:register";

async fn register_nick(c: &mut Client, r: &str, nick: &str) -> Element {
    c.iq(
        "set",
        Some(&room(r)),
        &format!(
            "<query xmlns='{REGISTER}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>\
             {}</x></query>",
            field("muc#register_roomnick", nick)
        ),
    )
    .await
    .unwrap()
}

/// The reserved nickname from disco#info node `x-roomuser-item`.
async fn reserved_nick(c: &mut Client, r: &str) -> Option<String> {
    let info = c
        .iq_ok(
            "get",
            Some(&room(r)),
            &format!("<query xmlns='{DISCO_INFO}' node='x-roomuser-item'/>"),
        )
        .await
        .unwrap();
    let q = info.child("query", DISCO_INFO).expect("query");
    assert_eq!(q.attr("node"), Some("x-roomuser-item"));
    q.child("identity", DISCO_INFO)
        .map(|i| i.attr("name").unwrap_or_default().to_string())
}

#[tokio::test]
async fn nickname_registration_reserves_the_nick() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob", "carol"]).await;
        let mut a = s.online("alice", "a", 0).await;
        let mut b = s.online("bob", "b", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        create(&mut a, "club", "A").await;
        owner_submit(&mut a, "club", &field("muc#roomconfig_persistentroom", "1")).await;
        let r = room("club");
        let info = a
            .iq_ok("get", Some(&r), &format!("<query xmlns='{DISCO_INFO}'/>"))
            .await
            .unwrap();
        assert!(features(info.child("query", DISCO_INFO).unwrap())
            .iter()
            .any(|f| f == REGISTER));

        // Not registered: the form, and no reserved nick.
        let f = b
            .iq_ok("get", Some(&r), &format!("<query xmlns='{REGISTER}'/>"))
            .await
            .unwrap();
        let q = f.child("query", REGISTER).expect("query");
        assert!(q.child("registered", REGISTER).is_none());
        assert!(
            q.to_xml().contains("muc#register_roomnick"),
            "{}",
            q.to_xml()
        );
        assert_eq!(reserved_nick(&mut b, "club").await, None);

        let ok = register_nick(&mut b, "club", "Bobby").await;
        assert_eq!(ok.attr("type"), Some("result"), "{}", ok.to_xml());
        let f = b
            .iq_ok("get", Some(&r), &format!("<query xmlns='{REGISTER}'/>"))
            .await
            .unwrap();
        let q = f.child("query", REGISTER).expect("query");
        assert!(q.child("registered", REGISTER).is_some(), "{}", q.to_xml());
        assert_eq!(q.child_text("username", REGISTER).as_deref(), Some("Bobby"));
        assert_eq!(
            reserved_nick(&mut b, "club").await.as_deref(),
            Some("Bobby")
        );
        // Registering made Bob a member.
        let m = a
            .iq_ok(
                "get",
                Some(&r),
                &format!("<query xmlns='{MUC_ADMIN}'><item affiliation='member'/></query>"),
            )
            .await
            .unwrap();
        assert!(m.to_xml().contains(&bare("bob")), "{}", m.to_xml());

        // Carol can neither register Bobby nor enter or change nick to it.
        let e = register_nick(&mut c, "club", "Bobby").await;
        assert_eq!(
            e.error_condition().as_deref(),
            Some("conflict"),
            "{}",
            e.to_xml()
        );
        let e = register_nick(&mut c, "club", "").await;
        assert_eq!(
            e.error_condition().as_deref(),
            Some("bad-request"),
            "{}",
            e.to_xml()
        );
        assert_eq!(join_refused(&mut c, "club", "Bobby", "").await, "conflict");
        join(&mut c, "club", "C", "").await;
        subject(&mut c, "club").await;
        c.send(&format!("<presence to='{}'/>", occ("club", "Bobby")))
            .await
            .unwrap();
        let bobby = occ("club", "Bobby");
        let p = c
            .recv_matching(W, "nick change refused", |e| {
                e.name == "presence"
                    && e.attr("from") == Some(bobby.as_str())
                    && e.attr("type") == Some("error")
            })
            .await
            .unwrap();
        assert_eq!(p.error_condition().as_deref(), Some("conflict"));
        // Bob enters under it, as a member.
        let p = join(&mut b, "club", "Bobby", "").await;
        assert_eq!(item(&p).attr("affiliation"), Some("member"));

        // The reservation is kept with the room.
        drop((a, b, c));
        let s = s.restart().await;
        let mut b = s.online("bob", "b", 0).await;
        let mut c = s.online("carol", "c", 0).await;
        assert_eq!(join_refused(&mut c, "club", "Bobby", "").await, "conflict");
        assert_eq!(
            reserved_nick(&mut b, "club").await.as_deref(),
            Some("Bobby")
        );

        // Unregistering frees the nickname.
        b.iq_ok(
            "set",
            Some(&r),
            &format!("<query xmlns='{REGISTER}'><remove/></query>"),
        )
        .await
        .unwrap();
        assert_eq!(reserved_nick(&mut b, "club").await, None);
        join(&mut c, "club", "Bobby", "").await;
    })
    .await
}
