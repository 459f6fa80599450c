//! Server services: disco (XEP-0030), ping (XEP-0199), version (XEP-0092), time (XEP-0202),
//! vcard-temp (XEP-0054), private XML storage (XEP-0049), in-band registration (XEP-0077).

mod common;

use common::*;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const VCARD: &str = "vcard-temp";
const PRIVATE: &str = "jabber:iq:private";
const REGISTER: &str = "jabber:iq:register";
const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";

fn features(info: &Element) -> Vec<String> {
    info.child("query", DISCO_INFO)
        .map(|q| {
            q.children_named("feature", DISCO_INFO)
                .filter_map(|f| f.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn disco_info_of_the_server() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let r = a
            .iq_ok(
                "get",
                Some(DOMAIN),
                &format!("<query xmlns='{DISCO_INFO}'/>"),
            )
            .await
            .unwrap();
        assert_eq!(r.attr("from"), Some(DOMAIN));
        let q = r.child("query", DISCO_INFO).unwrap();
        assert!(
            q.children_named("identity", DISCO_INFO)
                .any(|i| i.attr("category") == Some("server") && i.attr("type") == Some("im")),
            "{r}"
        );
        let fs = features(&r);
        for f in [
            DISCO_INFO,
            DISCO_ITEMS,
            "urn:xmpp:ping",
            "jabber:iq:version",
            "urn:xmpp:time",
            VCARD,
        ] {
            assert!(fs.iter().any(|x| x == f), "{f} not advertised: {fs:?}");
        }
        // XEP-0030 §3.1: every var appears once.
        let mut sorted = fs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), fs.len(), "duplicate features: {fs:?}");
        // jabber:iq:register is advertised even with sign-up off: logged-in users can change
        // their password (XEP-0077 §3.3), and clients look for this feature to offer it.
        // Sign-up itself is announced by the stream feature, absent by default.
        assert!(fs.iter().any(|x| x == REGISTER), "{fs:?}");
    })
    .await
}

#[tokio::test]
async fn disco_info_of_an_unknown_node_is_item_not_found() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let r = a
            .iq(
                "get",
                Some(DOMAIN),
                &format!("<query xmlns='{DISCO_INFO}' node='urn:example:no-such-node'/>"),
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(
            r.error_condition().as_deref(),
            Some("item-not-found"),
            "{r}"
        );
    })
    .await
}

#[tokio::test]
async fn disco_info_of_an_account() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        // XEP-0030 on the own account's bare JID, answered by the server with the registered
        // identity of an account (category "account").
        let r = a
            .iq_ok(
                "get",
                Some(&bare("alice")),
                &format!("<query xmlns='{DISCO_INFO}'/>"),
            )
            .await
            .unwrap();
        assert_eq!(r.attr("from"), Some(bare("alice").as_str()));
        let q = r.child("query", DISCO_INFO).unwrap();
        assert!(
            q.children_named("identity", DISCO_INFO)
                .any(|i| i.attr("category") == Some("account")),
            "{r}"
        );
    })
    .await
}

#[tokio::test]
async fn disco_items_of_the_server() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let r = a
            .iq_ok(
                "get",
                Some(DOMAIN),
                &format!("<query xmlns='{DISCO_ITEMS}'/>"),
            )
            .await
            .unwrap();
        let q = r
            .child("query", DISCO_ITEMS)
            .unwrap_or_else(|| panic!("{r}"));
        for item in q.children_named("item", DISCO_ITEMS) {
            assert!(item.attr("jid").is_some(), "item without jid: {r}");
        }
    })
    .await
}

#[tokio::test]
async fn ping_the_server() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        // XEP-0199 §4.2: an empty result.
        let r = a
            .iq_ok("get", Some(DOMAIN), "<ping xmlns='urn:xmpp:ping'/>")
            .await
            .unwrap();
        assert_eq!(r.attr("from"), Some(DOMAIN));
        assert_eq!(r.attr("to"), Some(full("alice", "a").as_str()));
        assert!(r.children.is_empty(), "{r}");
        // Without `to` the server answers too (RFC 6120 §10.3.3).
        let r = a
            .iq_ok("get", None, "<ping xmlns='urn:xmpp:ping'/>")
            .await
            .unwrap();
        assert!(r.children.is_empty(), "{r}");
        // A ping of type set is not the protocol: an error.
        let r = a
            .iq("set", Some(DOMAIN), "<ping xmlns='urn:xmpp:ping'/>")
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
    })
    .await
}

#[tokio::test]
async fn software_version() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let r = a
            .iq_ok("get", Some(DOMAIN), "<query xmlns='jabber:iq:version'/>")
            .await
            .unwrap();
        let q = r.child("query", "jabber:iq:version").unwrap();
        let name = q
            .child_text("name", "jabber:iq:version")
            .unwrap_or_default();
        let version = q
            .child_text("version", "jabber:iq:version")
            .unwrap_or_default();
        assert!(!name.trim().is_empty(), "{r}");
        assert!(!version.trim().is_empty(), "{r}");
    })
    .await
}

#[tokio::test]
async fn entity_time() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let r = a
            .iq_ok("get", Some(DOMAIN), "<time xmlns='urn:xmpp:time'/>")
            .await
            .unwrap();
        checks::assert_entity_time(&r);
    })
    .await
}

#[tokio::test]
async fn vcard_set_get_and_read_by_another_user() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let mut b = s.login("bob", "bobpw", "b").await;
        a.iq_ok(
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al</NICKNAME>\
             <EMAIL><USERID>alice@example.org</USERID></EMAIL></vCard>",
        )
        .await
        .unwrap();
        // XEP-0054 §3.1: own vCard with no `to`.
        let r = a
            .iq_ok("get", None, "<vCard xmlns='vcard-temp'/>")
            .await
            .unwrap();
        let v = r.child("vCard", VCARD).unwrap_or_else(|| panic!("{r}"));
        assert_eq!(v.child_text("FN", VCARD).as_deref(), Some("Alice Liddell"));
        assert_eq!(v.child_text("NICKNAME", VCARD).as_deref(), Some("al"));
        assert_eq!(
            v.child("EMAIL", VCARD)
                .and_then(|e| e.child_text("USERID", VCARD))
                .as_deref(),
            Some("alice@example.org")
        );
        // XEP-0054 §3.2: another user's vCard, answered by the server for the bare JID.
        let r = b
            .iq_ok("get", Some(&bare("alice")), "<vCard xmlns='vcard-temp'/>")
            .await
            .unwrap();
        assert_eq!(r.attr("from"), Some(bare("alice").as_str()));
        let v = r.child("vCard", VCARD).unwrap_or_else(|| panic!("{r}"));
        assert_eq!(v.child_text("FN", VCARD).as_deref(), Some("Alice Liddell"));
        // Replacing it replaces everything.
        a.iq_ok("set", None, "<vCard xmlns='vcard-temp'><FN>A.</FN></vCard>")
            .await
            .unwrap();
        let r = b
            .iq_ok("get", Some(&bare("alice")), "<vCard xmlns='vcard-temp'/>")
            .await
            .unwrap();
        let v = r.child("vCard", VCARD).unwrap();
        assert_eq!(v.child_text("FN", VCARD).as_deref(), Some("A."));
        assert!(v.child("NICKNAME", VCARD).is_none(), "{r}");
        // Nobody sets another user's vCard.
        let r = b
            .iq(
                "set",
                Some(&bare("alice")),
                "<vCard xmlns='vcard-temp'><FN>Bob was here</FN></vCard>",
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        let r = b
            .iq_ok("get", Some(&bare("alice")), "<vCard xmlns='vcard-temp'/>")
            .await
            .unwrap();
        assert_eq!(
            r.child("vCard", VCARD)
                .unwrap()
                .child_text("FN", VCARD)
                .as_deref(),
            Some("A.")
        );
    })
    .await
}

#[tokio::test]
async fn private_xml_storage() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        let mut b = s.login("bob", "bobpw", "b").await;
        // XEP-0049 §2: store and fetch by namespace.
        a.iq_ok(
            "set",
            None,
            "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'>\
             <colour>blue</colour></prefs></query>",
        )
        .await
        .unwrap();
        a.iq_ok(
            "set",
            None,
            "<query xmlns='jabber:iq:private'><other xmlns='urn:example:other'>o</other></query>",
        )
        .await
        .unwrap();
        let r = a
            .iq_ok(
                "get",
                None,
                "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>",
            )
            .await
            .unwrap();
        let p = r
            .child("query", PRIVATE)
            .and_then(|q| q.child("prefs", "urn:example:prefs"))
            .unwrap_or_else(|| panic!("{r}"));
        assert_eq!(
            p.child_text("colour", "urn:example:prefs").as_deref(),
            Some("blue")
        );
        assert!(
            r.child("query", PRIVATE)
                .unwrap()
                .child("other", "urn:example:other")
                .is_none(),
            "another namespace came back: {r}"
        );
        // Nothing stored: the empty element comes back.
        let r = a
            .iq_ok(
                "get",
                None,
                "<query xmlns='jabber:iq:private'><none xmlns='urn:example:none'/></query>",
            )
            .await
            .unwrap();
        let n = r
            .child("query", PRIVATE)
            .and_then(|q| q.child("none", "urn:example:none"))
            .unwrap_or_else(|| panic!("{r}"));
        assert!(n.children.is_empty(), "{r}");
        // Namespaces that cannot be an element's own are not-acceptable (XEP-0049 §3 makes
        // refusing the other reserved `jabber:*` namespaces optional; Oriole accepts them).
        for ns in ["jabber:client", PRIVATE, "jabber:server"] {
            let r = a
                .iq(
                    "set",
                    None,
                    &format!("<query xmlns='jabber:iq:private'><x xmlns='{ns}'/></query>"),
                )
                .await
                .unwrap();
            assert_eq!(r.attr("type"), Some("error"), "{ns}: {r}");
            assert_eq!(
                r.error_condition().as_deref(),
                Some("not-acceptable"),
                "{ns}: {r}"
            );
        }
        // Another user's private data is forbidden (XEP-0049 §3).
        let r = b
            .iq(
                "get",
                Some(&bare("alice")),
                "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>",
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(r.error_condition().as_deref(), Some("forbidden"), "{r}");
        // Bob's own storage is separate from Alice's.
        let r = b
            .iq_ok(
                "get",
                None,
                "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>",
            )
            .await
            .unwrap();
        let p = r
            .child("query", PRIVATE)
            .and_then(|q| q.child("prefs", "urn:example:prefs"))
            .unwrap();
        assert!(p.children.is_empty(), "{r}");
    })
    .await
}

#[tokio::test]
async fn in_band_registration_is_off_by_default() {
    bounded(async {
        let s = TestServer::start().await;
        let mut c = s.connect().await;
        let f = c.features.clone().unwrap();
        assert!(!f.has_child("register", REGISTER_FEATURE), "{f}");
        c.send("<iq type='get' id='reg1'><query xmlns='jabber:iq:register'/></iq>")
            .await
            .unwrap();
        // Refused: service-unavailable, or the stream closed as not authenticated.
        match c.recv_stanza(W).await {
            Ok(r) => {
                assert_eq!(r.attr("id"), Some("reg1"), "{r}");
                assert_eq!(r.attr("type"), Some("error"), "{r}");
                assert_eq!(r.error_condition().as_deref(), Some("service-unavailable"));
            }
            Err(ClientError::StreamError { condition, .. }) => {
                assert_eq!(condition, "not-authorized")
            }
            Err(e) => panic!("{e}"),
        }
        // No account was created by trying.
        let mut c = s.connect().await;
        c.send(
            "<iq type='set' id='reg2'><query xmlns='jabber:iq:register'>\
             <username>mallory</username><password>pw</password></query></iq>",
        )
        .await
        .unwrap();
        let _ = c.recv_stanza(W).await;
        let mut c = s.connect().await;
        match c.authenticate(Mechanism::Plain, "mallory", "pw").await {
            Err(ClientError::SaslFailure { condition, .. }) => {
                assert_eq!(condition, "not-authorized")
            }
            other => panic!("{other:?}"),
        }
    })
    .await
}

fn registration() -> Options {
    Options {
        registration: true,
        ..Options::default()
    }
}

#[tokio::test]
async fn in_band_registration_creates_an_account() {
    bounded(async {
        let s = TestServer::start_with(registration()).await;
        s.add_users(&["alice"]).await;
        let mut c = s.connect().await;
        let f = c.features.clone().unwrap();
        assert!(f.has_child("register", REGISTER_FEATURE), "{f}");
        // XEP-0077 §3.1: the form asks for a username and a password.
        let r = c
            .iq_ok("get", None, "<query xmlns='jabber:iq:register'/>")
            .await
            .unwrap();
        let q = r.child("query", REGISTER).unwrap_or_else(|| panic!("{r}"));
        assert!(
            q.has_child("username", REGISTER) && q.has_child("password", REGISTER),
            "{r}"
        );
        c.iq_ok(
            "set",
            None,
            "<query xmlns='jabber:iq:register'><username>dave</username>\
             <password>davepw</password></query>",
        )
        .await
        .unwrap();
        // An existing username is a conflict (XEP-0077 §3.1).
        let r = c
            .iq(
                "set",
                None,
                "<query xmlns='jabber:iq:register'><username>alice</username>\
                 <password>x</password></query>",
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(r.error_condition().as_deref(), Some("conflict"), "{r}");
        // The new account works.
        let mut d = s.login("dave", "davepw", "d").await;
        d.ping_server().await.unwrap();
        // And alice's password did not change.
        s.login("alice", "alicepw", "a").await;
    })
    .await
}

#[tokio::test]
async fn password_change_when_logged_in() {
    bounded(async {
        let s = TestServer::start_with(registration()).await;
        s.add_users(&["alice"]).await;
        let mut a = s.login("alice", "alicepw", "a").await;
        // XEP-0077 §3.3.
        a.iq_ok(
            "set",
            None,
            "<query xmlns='jabber:iq:register'><username>alice</username>\
             <password>newpw</password></query>",
        )
        .await
        .unwrap();
        let mut c = s.connect().await;
        match c
            .authenticate(Mechanism::Scram(Hash::Sha256), "alice", "alicepw")
            .await
        {
            Err(ClientError::SaslFailure { condition, .. }) => {
                assert_eq!(condition, "not-authorized")
            }
            other => panic!("old password still works: {other:?}"),
        }
        for mech in [
            Mechanism::Scram(Hash::Sha1),
            Mechanism::Scram(Hash::Sha256),
            Mechanism::Scram(Hash::Sha512),
            Mechanism::Plain,
        ] {
            let mut c = s.connect().await;
            c.authenticate(mech.clone(), "alice", "newpw")
                .await
                .unwrap_or_else(|e| panic!("{mech:?} with the new password: {e}"));
        }
        // Changing another account's password is not allowed.
        s.add_user("bob", "bobpw").await;
        let r = a
            .iq(
                "set",
                None,
                "<query xmlns='jabber:iq:register'><username>bob</username>\
                 <password>stolen</password></query>",
            )
            .await
            .unwrap();
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        s.login("bob", "bobpw", "b").await;
    })
    .await
}
