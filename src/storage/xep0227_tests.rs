//! Tests of XEP-0227 export and import.

use super::*;
use crate::auth::credentials::ScramHash;
use crate::im::presence::PENDING_STORE;
use crate::storage::memory::conformance::{creds, item};
use crate::storage::memory::MemoryStore;
use crate::storage::sled_store::SledStore;

fn export_t(store: &dyn Storage, domains: &[&str]) -> String {
    let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    export(store, &domains).expect("export")
}

fn import_t(store: &dyn Storage, xml: &str) -> ImportReport {
    import(store, xml).expect("import")
}

const JULIET: &str = "juliet@capulet.example";
const NURSE: &str = "nurse@capulet.example";
const ROMEO: &str = "romeo@montague.example";
const MERCUTIO: &str = "mercutio@montague.example";

/// Credentials as an import from a server that keeps SCRAM-SHA-1 only leaves them.
fn sha1_only(seed: u8) -> StoredCredentials {
    let mut c = creds(seed);
    c.sha256 = no_keys();
    c.sha512 = no_keys();
    c
}

fn message(to: &str, body: &str) -> String {
    Element::new("message", ns::CLIENT)
        .with_attr("from", "romeo@montague.example/orchard")
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
        .with_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", "capulet.example")
                .with_attr("stamp", "1469-07-21T00:32:29Z")
                .with_text("Offline Storage"),
        )
        .to_string()
}

/// A store with every kind of data XEP-0227 carries, stored in canonical form (as
/// `Element::to_string` writes it), so a round trip must reproduce it byte for byte.
fn populate(s: &dyn Storage) {
    assert!(s.create_account(JULIET, &creds(1)).unwrap());
    assert!(s.create_account(NURSE, &creds(2)).unwrap());
    assert!(s.create_account(ROMEO, &creds(3)).unwrap());
    assert!(s.create_account(MERCUTIO, &sha1_only(5)).unwrap());
    // Another domain that is not exported.
    assert!(s
        .create_account("tybalt@elsewhere.example", &creds(4))
        .unwrap());

    let both = RosterItem {
        jid: ROMEO.into(),
        name: Some("Romeo <Montague> & 'co'".into()),
        subscription: Subscription::Both,
        groups: vec!["Friends".into(), "Verona & Mantua".into()],
        ..Default::default()
    };
    let asking = RosterItem {
        jid: "mercutio@montague.example".into(),
        ask_out: true,
        name: Some("Mercutio".into()),
        ..Default::default()
    };
    let approved = RosterItem {
        jid: NURSE.into(),
        approved: true,
        subscription: Subscription::To,
        ..Default::default()
    };
    let paris = RosterItem {
        jid: "paris@verona.example".into(),
        subscription: Subscription::To,
        groups: vec!["Suitors".into()],
        ..Default::default()
    };
    // A contact with a full JID, as RFC 6121 allows.
    let full = item("friar@church.example/cell");
    for i in [&both, &asking, &approved, &paris, &full] {
        s.put_roster_item(JULIET, i).unwrap();
    }
    let mut back = item(JULIET);
    back.subscription = Subscription::Both;
    s.put_roster_item(ROMEO, &back).unwrap();

    s.push_offline(
        JULIET,
        &message(
            "juliet@capulet.example/balcony",
            "Neither, fair saint, if either thee dislike.",
        ),
    )
    .unwrap();
    s.push_offline(JULIET, &message("juliet@capulet.example", "2nd <3 ünïcødé"))
        .unwrap();
    let presence = Element::new("presence", ns::CLIENT)
        .with_attr("from", "paris@verona.example")
        .with_attr("type", "subscribe")
        .with_child(Element::new("nick", "http://jabber.org/protocol/nick").with_text("Paris"))
        .to_string();
    s.push_offline(JULIET, &presence).unwrap();
    s.push_offline(
        JULIET,
        &message(
            "juliet@capulet.example",
            "Neither, fair saint, if either thee dislike.",
        ),
    )
    .unwrap();

    let vcard = Element::new("vCard", ns::VCARD)
        .with_child(Element::new("FN", ns::VCARD).with_text("Juliet Capulet"))
        .with_child(Element::new("NICKNAME", ns::VCARD).with_text("Jules & co"));
    s.put_item(stores::VCARD, JULIET, "", &vcard.to_string())
        .unwrap();
    let exodus = Element::new("exodus", "exodus:prefs")
        .with_child(Element::new("defaultnick", "exodus:prefs").with_text("Hamlet"));
    let bookmarks = Element::new("storage", "storage:bookmarks").with_child(
        Element::new("conference", "storage:bookmarks")
            .with_attr("jid", "balcony@rooms.capulet.example")
            .with_attr("autojoin", "true"),
    );
    s.put_item(
        stores::PRIVATE,
        JULIET,
        "{exodus:prefs}exodus",
        &exodus.to_string(),
    )
    .unwrap();
    s.put_item(
        stores::PRIVATE,
        JULIET,
        "{storage:bookmarks}storage",
        &bookmarks.to_string(),
    )
    .unwrap();
    // Inbound subscription requests, as the presence code keeps them: one from a contact
    // not in the roster, one (from a full JID, with a nickname) from a contact in it.
    let request = |from: &str| {
        Element::new("presence", ns::CLIENT)
            .with_attr("from", from)
            .with_attr("type", "subscribe")
    };
    s.put_item(
        PENDING_STORE,
        JULIET,
        "benvolio@montague.example",
        &request("benvolio@montague.example").to_string(),
    )
    .unwrap();
    let with_nick = request("paris@verona.example/home")
        .with_attr("id", "xk3h1v69")
        .with_child(Element::new("nick", "http://jabber.org/protocol/nick").with_text("Paris"));
    s.put_item(
        PENDING_STORE,
        JULIET,
        "paris@verona.example",
        &with_nick.to_string(),
    )
    .unwrap();
    let vcard_r = Element::new("vCard", ns::VCARD)
        .with_child(Element::new("FN", ns::VCARD).with_text("Romeo"));
    s.put_item(stores::VCARD, ROMEO, "", &vcard_r.to_string())
        .unwrap();
}

/// Everything XEP-0227 carries is equal in both stores (roster versions and offline
/// sequence numbers are the importing store's own).
fn assert_same(a: &dyn Storage, b: &dyn Storage, domains: &[&str]) {
    for d in domains {
        let accounts = a.list_accounts(d).unwrap();
        assert_eq!(accounts, b.list_accounts(d).unwrap(), "accounts of {d}");
        for acc in &accounts {
            assert_eq!(
                a.get_credentials(acc).unwrap(),
                b.get_credentials(acc).unwrap(),
                "credentials of {acc}"
            );
            assert_eq!(
                a.get_roster(acc).unwrap().items,
                b.get_roster(acc).unwrap().items,
                "roster of {acc}"
            );
            let texts = |s: &dyn Storage| -> Vec<String> {
                s.list_offline(acc)
                    .unwrap()
                    .into_iter()
                    .map(|p| p.1)
                    .collect()
            };
            assert_eq!(texts(a), texts(b), "offline queue of {acc}");
            for store in [stores::VCARD, stores::PRIVATE, PENDING_STORE] {
                assert_eq!(
                    a.list_items(store, acc).unwrap(),
                    b.list_items(store, acc).unwrap(),
                    "{store} of {acc}"
                );
            }
        }
    }
}

/// The export without the roster query lines, which carry the store's own roster versions.
fn strip_roster_ver(xml: &str) -> String {
    xml.lines()
        .filter(|l| !l.contains("<query xmlns='jabber:iq:roster'"))
        .collect::<Vec<_>>()
        .join("\n")
}

const DOMAINS: [&str; 2] = ["capulet.example", "montague.example"];

#[test]
fn round_trip_between_backends() {
    let source = MemoryStore::new();
    populate(&source);
    let xml = export_t(&source, &DOMAINS);

    let memory = MemoryStore::new();
    let report = import_t(&memory, &xml);
    assert_eq!(
        report.skipped,
        [
            "mercutio@montague.example: credentials only for SCRAM-SHA-1: other SCRAM mechanisms \
          fail until the password is changed"
        ]
    );
    assert_eq!(report.accounts, 4);
    assert_eq!(report.offline, 4);
    assert_eq!(report.items, 6);
    assert_eq!(report.hosts, DOMAINS);
    assert_same(&source, &memory, &DOMAINS);
    assert!(memory
        .list_accounts("elsewhere.example")
        .unwrap()
        .is_empty());

    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(&dir.path().join("db")).unwrap();
    let report = import_t(&sled, &xml);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_same(&source, &sled, &DOMAINS);

    // And out again: the export of the copy is the export of the original, except for the
    // roster versions.
    assert_eq!(
        strip_roster_ver(&export_t(&sled, &DOMAINS)),
        strip_roster_ver(&xml)
    );
}

#[test]
fn export_follows_the_xep() {
    let s = MemoryStore::new();
    populate(&s);
    let xml = export_t(
        &s,
        &["capulet.example", "nowhere.example", "capulet.example"],
    );
    assert!(xml.starts_with(
        "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n  <host jid='capulet.example'>\n    <user name='juliet'>\n      <offline-messages>\n        <message xmlns='jabber:client' from='romeo@montague.example/orchard'"
    ), "{xml}");
    // Each host once; empty hosts left out.
    assert_eq!(xml.matches("<host ").count(), 1);
    assert!(!xml.contains("tybalt"));

    let c = creds(1);
    let expected = format!(
        "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>{}</iter-count><salt>{}</salt><server-key>{}</server-key><stored-key>{}</stored-key></scram-credentials>",
        c.sha1.iterations,
        BASE64.encode(&c.sha1.salt),
        BASE64.encode(&c.sha1.server_key),
        BASE64.encode(&c.sha1.stored_key),
    );
    assert!(xml.contains(&expected), "{xml}");
    assert!(xml.contains("mechanism='SCRAM-SHA-256'"));
    assert!(xml.contains("mechanism='SCRAM-SHA-512'"));
    // Only the usable hashes of an account imported with partial credentials.
    let montague = export_t(&s, &["montague.example"]);
    let mercutio = montague
        .split("<user name='mercutio'>")
        .nth(1)
        .and_then(|rest| rest.split("</user>").next())
        .unwrap();
    assert!(mercutio.contains("mechanism='SCRAM-SHA-1'"));
    assert!(!mercutio.contains("SCRAM-SHA-256"));
    assert!(!xml.contains("password"));

    let version = s.get_roster(JULIET).unwrap().version;
    assert!(xml.contains(&format!("<query xmlns='jabber:iq:roster' ver='{version}'>")));
    assert!(xml.contains(
        "<item jid='romeo@montague.example' name='Romeo &lt;Montague&gt; &amp; &apos;co&apos;' subscription='both'><group>Friends</group><group>Verona &amp; Mantua</group></item>"
    ), "{xml}");
    assert!(xml.contains(
        "<item jid='mercutio@montague.example' name='Mercutio' subscription='none' ask='subscribe'/>"
    ));
    assert!(xml.contains("<item jid='nurse@capulet.example' subscription='to' approved='true'/>"));
    assert!(!xml.contains("<item jid='benvolio@montague.example'"));
    assert!(xml.contains(
        "      <presence xmlns='jabber:client' from='benvolio@montague.example' type='subscribe'/>\n      <presence xmlns='jabber:client' from='paris@verona.example/home' type='subscribe' id='xk3h1v69'><nick xmlns='http://jabber.org/protocol/nick'>Paris</nick></presence>\n"
    ), "{xml}");
    assert!(xml.contains(
        "<item jid='paris@verona.example' subscription='to'><group>Suitors</group></item>"
    ));
    assert!(xml.contains(
        "      <vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>Jules &amp; co</NICKNAME></vCard>\n"
    ));
    assert!(xml.contains(
        "      <query xmlns='jabber:iq:private'>\n        <exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>\n"
    ));
    // The nurse has credentials and an empty roster only.
    assert!(xml.contains("<user name='nurse'>\n      <scram-credentials"));
    assert!(xml.contains("      <query xmlns='jabber:iq:roster'/>\n    </user>"));
    assert!(xml.ends_with("  </host>\n</server-data>\n"));
    // The whole document is well-formed.
    assert!(parse(&xml).is_ok());
}

#[test]
fn offline_stanzas_are_exported_in_jabber_client() {
    let s = MemoryStore::new();
    s.create_account(JULIET, &creds(1)).unwrap();
    // Stored as written on a c2s stream: no namespace declaration.
    let el = Element::new("message", ns::CLIENT)
        .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
    s.push_offline(JULIET, &el.to_stream_string(ns::CLIENT))
        .unwrap();
    // Stored from an s2s stream.
    s.push_offline(
        JULIET,
        "<message xmlns='jabber:server'><body>there</body></message>",
    )
    .unwrap();
    let xml = export_t(&s, &["capulet.example"]);
    assert!(
        xml.contains("<message xmlns='jabber:client'><body>hi</body></message>"),
        "{xml}"
    );
    assert!(xml.contains("<message xmlns='jabber:client'><body>there</body></message>"));

    let copy = MemoryStore::new();
    import_t(&copy, &xml);
    assert_eq!(
        copy.list_offline(JULIET).unwrap()[0].1,
        "<message xmlns='jabber:client'><body>hi</body></message>"
    );
}

#[test]
fn subscription_requests_in_both_representations() {
    let s = MemoryStore::new();
    s.create_account(JULIET, &creds(1)).unwrap();
    // As the presence code stores a request: no namespace declaration.
    let request = Element::new("presence", ns::CLIENT)
        .with_attr("from", "paris@verona.example")
        .with_attr("type", "subscribe");
    s.put_item(
        PENDING_STORE,
        JULIET,
        "paris@verona.example",
        &request.to_stream_string(ns::CLIENT),
    )
    .unwrap();
    // The storage model's flag, with no stored request, and with one (exported once).
    let mut flagged = item("benvolio@montague.example");
    flagged.pending_in = true;
    s.put_roster_item(JULIET, &flagged).unwrap();
    let mut both = item("paris@verona.example");
    both.pending_in = true;
    s.put_roster_item(JULIET, &both).unwrap();

    let xml = export_t(&s, &["capulet.example"]);
    assert!(xml.contains(
        "<presence xmlns='jabber:client' type='subscribe' from='benvolio@montague.example'/>"
    ));
    assert!(xml.contains(
        "<presence xmlns='jabber:client' from='paris@verona.example' type='subscribe'/>"
    ));
    assert_eq!(xml.matches("<presence ").count(), 2, "{xml}");

    // On import every request lands in the pending store; the flag is not set on new items.
    let copy = MemoryStore::new();
    import_t(&copy, &xml);
    let requests = copy.list_items(PENDING_STORE, JULIET).unwrap();
    assert_eq!(
        requests,
        vec![
            (
                "benvolio@montague.example".to_string(),
                "<presence xmlns='jabber:client' type='subscribe' from='benvolio@montague.example'/>"
                    .to_string()
            ),
            (
                "paris@verona.example".to_string(),
                request.to_string()
            ),
        ]
    );
    let roster = copy.get_roster(JULIET).unwrap().items;
    assert!(roster.values().all(|i| !i.pending_in));
    assert_eq!(roster.len(), 2);
}

#[test]
fn corrupt_stored_xml_fails_export_or_is_reported() {
    let s = MemoryStore::new();
    s.create_account(JULIET, &creds(1)).unwrap();
    s.push_offline(JULIET, "<message><body>ok</body></message>")
        .unwrap();
    s.push_offline(JULIET, "<message><body>cut").unwrap();
    s.put_item(stores::VCARD, JULIET, "", "not xml").unwrap();
    let domains = vec!["capulet.example".to_string()];
    let err = export(&s, &domains).unwrap_err();
    assert!(err.0.contains("offline stanza"), "{err}");
    assert!(err.0.contains(JULIET), "{err}");

    let (xml, skipped) = export_with_report(&s, &domains).unwrap();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[1].contains("vCard of juliet@capulet.example"));
    assert!(xml.contains("<body>ok</body>"));
    assert!(!xml.contains("<vCard"));
    assert!(parse(&xml).is_ok());
}

fn scram_xml(mechanism: &str, hash_len: usize, seed: u8) -> String {
    format!(
        "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='{mechanism}'>
           <iter-count>10000</iter-count>
           <salt>{}</salt>
           <server-key>{}</server-key>
           <stored-key>{}</stored-key>
         </scram-credentials>",
        BASE64.encode([seed; 16]),
        BASE64.encode(vec![seed; hash_len]),
        BASE64.encode(vec![seed ^ 0xff; hash_len]),
    )
}

fn all_scram(seed: u8) -> String {
    MECHANISMS
        .iter()
        .map(|(m, hash)| scram_xml(m, hash.output_len(), seed))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A document in the style of the XEP's examples, from another server.
fn foreign_document() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- exported by some other server -->
<server-data xmlns="urn:xmpp:pie:0">
  <host jid="Capulet.Example">
    <user name="Juliet" password="ignored-when-scram-is-present">
      {scram}
      <query xmlns="jabber:iq:roster">
        <item jid="Romeo@Montague.Example" name="Romeo" subscription="both">
          <group>Friends</group>
          <group>Friends</group>
        </item>
        <item jid="mercutio@montague.example" subscription="none" ask="subscribe"/>
        <item jid="bad jid@x" subscription="both"/>
        <item jid="tybalt@capulet.example" subscription="remove"/>
      </query>
      <offline-messages>
        <message xmlns="jabber:client" from="romeo@montague.example/orchard"
                 to="juliet@capulet.example/balcony" type="chat">
          <body>Neither, fair saint, if either thee dislike.</body>
          <delay xmlns="urn:xmpp:delay" from="capulet.example"
                 stamp="1469-07-21T00:32:29Z">Offline Storage</delay>
        </message>
        <iq xmlns="jabber:client" type="get" id="x"/>
      </offline-messages>
      <vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN></vCard>
      <query xmlns="jabber:iq:private">
        <exodus xmlns="exodus:prefs"><defaultnick>Hamlet</defaultnick></exodus>
      </query>
      <query xmlns="jabber:iq:privacy"><default name="public"/></query>
      <presence xmlns="jabber:client" type="subscribe" id="xk3h1v69" from="romeo@montague.example/orchard">
        <nick xmlns="http://jabber.org/protocol/nick">Romeo</nick>
      </presence>
      <presence xmlns="jabber:client" type="subscribe" from="mercutio@montague.example"/>
      <pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="urn:xmpp:bookmarks:1"/></pubsub>
      <archive xmlns="urn:xmpp:pie:0#mam"/>
    </user>
    <user name="romeo">
      {sha1_only}
    </user>
    <user name="mercutio" password="plain"/>
    <user name="benvolio"/>
    <user name="a b"/>
    <user name="nurse">{scram_nurse}<scram-credentials xmlns="urn:xmpp:pie:0#scram" mechanism="SCRAM-SHA3-512"/></user>
    <xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="capulet.example/paris.xml"/>
  </host>
  <host jid="bad@host"/>
  <something xmlns="urn:example:extension"/>
</server-data>
"#,
        scram = all_scram(1),
        sha1_only = scram_xml("SCRAM-SHA-1", 20, 2),
        scram_nurse = all_scram(3),
    )
}

#[test]
fn import_of_a_foreign_document() {
    let s = MemoryStore::new();
    let report = import_t(&s, &foreign_document());
    assert_eq!(report.accounts, 4, "{report:#?}");
    assert_eq!(report.hosts, ["capulet.example"]);
    assert_eq!(
        s.list_accounts("capulet.example").unwrap(),
        [
            JULIET,
            "mercutio@capulet.example",
            NURSE,
            "romeo@capulet.example"
        ],
        "names are normalised"
    );
    // SHA-1 only: the other hashes are unusable.
    let romeo = s.get_credentials("romeo@capulet.example").unwrap().unwrap();
    assert!(romeo.sha1.is_usable(ScramHash::Sha1));
    assert!(!romeo.sha256.is_usable(ScramHash::Sha256));
    assert!(!romeo.sha512.is_usable(ScramHash::Sha512));
    assert_eq!(romeo.plain_hash(), Some(ScramHash::Sha1));
    // A plaintext password only: all three derived.
    let mercutio = s
        .get_credentials("mercutio@capulet.example")
        .unwrap()
        .unwrap();
    assert!(mercutio.verify_password("plain"));
    assert!(ScramHash::ALL
        .iter()
        .all(|h| mercutio.keys(*h).is_usable(*h)));
    let c = s.get_credentials(JULIET).unwrap().unwrap();
    assert_eq!(c.sha1.iterations, 10000);
    assert_eq!(c.sha256.server_key, vec![1; 32]);
    assert_eq!(c.sha512.stored_key, vec![0xfe; 64]);
    assert_eq!(c.sha1.salt, vec![1; 16]);

    let roster = s.get_roster(JULIET).unwrap().items;
    assert_eq!(roster.len(), 2, "{roster:#?}");
    let romeo = &roster[ROMEO];
    assert_eq!(romeo.subscription, Subscription::Both);
    assert_eq!(romeo.name.as_deref(), Some("Romeo"));
    assert_eq!(romeo.groups, ["Friends"]);
    assert!(!romeo.pending_in);
    assert!(roster["mercutio@montague.example"].ask_out);
    // Subscription requests, keyed by the bare JID of the contact, whole.
    let requests = s.list_items(PENDING_STORE, JULIET).unwrap();
    let keys: Vec<&str> = requests.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["mercutio@montague.example", ROMEO]);
    let romeo_request = parse(&requests[1].1).unwrap();
    assert!(romeo_request.is("presence", ns::CLIENT));
    assert_eq!(
        romeo_request.attr("from"),
        Some("romeo@montague.example/orchard")
    );
    assert!(romeo_request
        .child("nick", "http://jabber.org/protocol/nick")
        .is_some());

    let queue = s.list_offline(JULIET).unwrap();
    assert_eq!(queue.len(), 1);
    let stanza = parse(&queue[0].1).unwrap();
    assert!(stanza.is("message", ns::CLIENT));
    assert_eq!(
        stanza.child_text("body", ns::CLIENT).as_deref(),
        Some("Neither, fair saint, if either thee dislike.")
    );
    assert!(stanza.child("delay", ns::DELAY).is_some());

    assert_eq!(
        s.get_item(stores::VCARD, JULIET, "").unwrap().as_deref(),
        Some("<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN></vCard>")
    );
    assert_eq!(
        s.list_items(stores::PRIVATE, JULIET).unwrap(),
        vec![(
            "{exodus:prefs}exodus".to_string(),
            "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>".to_string()
        )]
    );

    let skipped = report.skipped.join("\n");
    for expected in [
        "romeo@capulet.example: credentials only for SCRAM-SHA-1: other SCRAM mechanisms fail",
        "benvolio@capulet.example: not imported: no credentials",
        "<user name='a b'> of capulet.example: not a valid JID",
        "juliet@capulet.example: roster item skipped: jid \"bad jid@x\"",
        "juliet@capulet.example: roster item skipped: subscription \"remove\"",
        "juliet@capulet.example: offline <iq xmlns='jabber:client'>",
        "juliet@capulet.example: <query xmlns='jabber:iq:privacy'>: privacy lists are not supported",
        "juliet@capulet.example: <pubsub xmlns='http://jabber.org/protocol/pubsub'>: PEP data is not supported",
        "juliet@capulet.example: <archive xmlns='urn:xmpp:pie:0#mam'>: message archives are not supported",
        "nurse@capulet.example: SCRAM credentials for mechanism \"SCRAM-SHA3-512\": not supported",
        "capulet.example: <include href='capulet.example/paris.xml'>: XInclude is followed only when importing from a file",
        "<host jid='bad@host'>: not a domain",
        "<something xmlns='urn:example:extension'> under <server-data>: not understood",
    ] {
        assert!(skipped.contains(expected), "missing {expected:?} in\n{skipped}");
    }
    assert_eq!(report.skipped.len(), 13, "{skipped}");
}

#[test]
fn import_merges_into_existing_accounts_and_can_run_twice() {
    let s = MemoryStore::new();
    s.create_account(JULIET, &creds(9)).unwrap();
    let mut kept = item("kept@example.org");
    kept.name = Some("Kept".into());
    s.put_roster_item(JULIET, &kept).unwrap();
    let mut romeo = item(ROMEO);
    romeo.pending_in = true;
    romeo.name = Some("Old name".into());
    s.put_roster_item(JULIET, &romeo).unwrap();
    s.put_item(stores::PRIVATE, JULIET, "{other}x", "<x xmlns='other'/>")
        .unwrap();
    s.put_item(stores::VCARD, JULIET, "", "<vCard xmlns='vcard-temp'/>")
        .unwrap();
    s.push_offline(
        JULIET,
        "<message xmlns='jabber:client'><body>already here</body></message>",
    )
    .unwrap();

    let doc = foreign_document();
    let first = import_t(&s, &doc);
    // Complete credentials in the file replace the stored ones.
    let c = s.get_credentials(JULIET).unwrap().unwrap();
    assert_eq!(c.sha1.iterations, 10000);
    let roster = s.get_roster(JULIET).unwrap().items;
    assert_eq!(roster.len(), 3);
    assert_eq!(roster["kept@example.org"], kept);
    assert_eq!(roster[ROMEO].name.as_deref(), Some("Romeo"));
    assert!(roster[ROMEO].pending_in);
    assert_eq!(s.list_items(stores::PRIVATE, JULIET).unwrap().len(), 2);
    assert!(s
        .get_item(stores::VCARD, JULIET, "")
        .unwrap()
        .unwrap()
        .contains("Juliet Capulet"));
    assert_eq!(s.count_offline(JULIET).unwrap(), 2);
    assert_eq!(first.offline, 1);

    // Running it again changes nothing.
    let snapshot = |s: &MemoryStore| {
        (
            s.get_credentials(JULIET).unwrap(),
            s.get_roster(JULIET).unwrap().items,
            s.list_offline(JULIET).unwrap(),
            s.list_items(stores::PRIVATE, JULIET).unwrap(),
            s.list_items(stores::VCARD, JULIET).unwrap(),
        )
    };
    let before = snapshot(&s);
    let second = import_t(&s, &doc);
    assert_eq!(second.offline, 0);
    assert_eq!(snapshot(&s), before);

    // A file with incomplete credentials merges data into an existing account and keeps its
    // credentials.
    let doc = |password: &str| {
        format!(
            "<server-data xmlns='urn:xmpp:pie:0'><host jid='capulet.example'><user name='juliet'{password}>{}<query xmlns='jabber:iq:roster'><item jid='new@example.org'/></query></user></host></server-data>",
            scram_xml("SCRAM-SHA-1", 20, 5)
        )
    };
    let report = import_t(&s, &doc(""));
    assert_eq!(report.accounts, 1);
    assert_eq!(s.get_credentials(JULIET).unwrap(), before.0);
    assert!(s
        .get_roster(JULIET)
        .unwrap()
        .items
        .contains_key("new@example.org"));
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(report.skipped[0].contains("credentials not imported, the stored ones stay"));
    // With a plaintext password, credentials derived from it replace the stored ones.
    let report = import_t(&s, &doc(" password='x'"));
    assert!(s
        .get_credentials(JULIET)
        .unwrap()
        .unwrap()
        .verify_password("x"));
    assert!(
        report.skipped[0].contains("SCRAM credentials incomplete; all three derived"),
        "{:?}",
        report.skipped
    );
}

#[test]
fn invalid_credentials_are_refused() {
    let s = MemoryStore::new();
    let wrong_len = MECHANISMS
        .iter()
        .map(|(m, hash)| {
            scram_xml(
                m,
                if *m == "SCRAM-SHA-256" {
                    20
                } else {
                    hash.output_len()
                },
                1,
            )
        })
        .collect::<String>();
    let twice = format!("{}{}", all_scram(1), scram_xml("SCRAM-SHA-1", 20, 1));
    let zero = all_scram(1).replace("<iter-count>10000<", "<iter-count>0<");
    let not_b64 = all_scram(1).replacen("<salt>", "<salt>*", 1);
    for (name, creds) in [("a", wrong_len), ("b", twice), ("c", zero), ("d", not_b64)] {
        let doc = format!(
            "<server-data xmlns='urn:xmpp:pie:0'><host jid='x.example'><user name='{name}'>{creds}</user></host></server-data>"
        );
        let report = import_t(&s, &doc);
        assert_eq!(report.accounts, 0, "{name}");
        assert!(
            report.skipped[0].contains("not imported"),
            "{:?}",
            report.skipped
        );
    }
    assert!(s.list_accounts("x.example").unwrap().is_empty());

    // The same with a plaintext password: derived from it instead.
    let doc = format!(
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='x.example'><user name='e' password='pw'>{}</user></host></server-data>",
        all_scram(1).replace("<iter-count>10000<", "<iter-count>0<")
    );
    let report = import_t(&s, &doc);
    assert_eq!(report.accounts, 1);
    assert!(report.skipped[0].contains("SCRAM credentials invalid SCRAM-SHA-1 credentials"));
    assert!(s
        .get_credentials("e@x.example")
        .unwrap()
        .unwrap()
        .verify_password("pw"));
}

#[test]
fn not_a_xep0227_document() {
    let s = MemoryStore::new();
    let err = import(&s, "<foo xmlns='bar'/>").unwrap_err();
    assert!(err.0.contains("not a XEP-0227 document"), "{err}");
    let err = import(&s, "<server-data xmlns='urn:xmpp:pie:0'>").unwrap_err();
    assert!(err.0.contains("not well-formed"), "{err}");
    let err = import(&s, "<?xml version='1.0'").unwrap_err();
    assert!(err.0.contains("not well-formed"), "{err}");
}

#[test]
fn import_file_follows_xinclude() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("main.xml"),
        "<?xml version='1.0' encoding='UTF-8'?>
<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>
  <xi:include href='capulet.example.xml'/>
</server-data>",
    )
    .unwrap();
    std::fs::write(
        root.join("capulet.example.xml"),
        "<?xml version='1.0' encoding='UTF-8'?>
<host xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude' jid='capulet.example'>
  <xi:include href='capulet.example/juliet.xml'/>
  <xi:include href='capulet.example/n%C3%BCrse.xml'/>
</host>",
    )
    .unwrap();
    std::fs::create_dir(root.join("capulet.example")).unwrap();
    std::fs::write(
        root.join("capulet.example/juliet.xml"),
        format!(
            "<user xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude' name='juliet'>
  {}
  <xi:include href='juliet-roster.xml'/>
  <query xmlns='jabber:iq:private'><xi:include href='not-followed.xml'/></query>
</user>",
            all_scram(1)
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("capulet.example/juliet-roster.xml"),
        "<query xmlns='jabber:iq:roster'><item jid='romeo@montague.example' subscription='both'/></query>",
    )
    .unwrap();
    std::fs::write(
        root.join("capulet.example/nürse.xml"),
        format!(
            "<user xmlns='urn:xmpp:pie:0' name='Nürse'>{}</user>",
            all_scram(2)
        ),
    )
    .unwrap();

    let s = MemoryStore::new();
    let report = import_file(&s, &root.join("main.xml")).unwrap();
    assert_eq!(report.accounts, 2, "{report:#?}");
    assert_eq!(
        s.list_accounts("capulet.example").unwrap(),
        [JULIET, "nürse@capulet.example"]
    );
    assert!(s.get_roster(JULIET).unwrap().items.contains_key(ROMEO));
    // An include inside user data is user data: it is not followed but kept as it is.
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(
        s.list_items(stores::PRIVATE, JULIET).unwrap(),
        vec![(
            format!("{{{NS_XINCLUDE}}}include"),
            format!("<include xmlns='{NS_XINCLUDE}' href='not-followed.xml'/>")
        )]
    );

    // A missing file or an absolute href is an error.
    std::fs::write(
        root.join("bad.xml"),
        "<server-data xmlns='urn:xmpp:pie:0'><include xmlns='http://www.w3.org/2001/XInclude' href='missing.xml'/></server-data>",
    )
    .unwrap();
    let err = import_file(&s, &root.join("bad.xml")).unwrap_err();
    assert!(err.0.contains("missing.xml"), "{err}");
    std::fs::write(
        root.join("abs.xml"),
        "<server-data xmlns='urn:xmpp:pie:0'><include xmlns='http://www.w3.org/2001/XInclude' href='/etc/passwd'/></server-data>",
    )
    .unwrap();
    let err = import_file(&s, &root.join("abs.xml")).unwrap_err();
    assert!(err.0.contains("only relative paths"), "{err}");
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%27b%2Fc").as_deref(), Some("a'b/c"));
    assert_eq!(percent_decode("%C3%BC").as_deref(), Some("ü"));
    assert_eq!(percent_decode("%zz"), None);
    assert_eq!(percent_decode("%4"), None);
}

// ------------------------------------------------------------------------------------------
// Through the public API.
// ------------------------------------------------------------------------------------------

#[test]
fn public_api_round_trip() {
    let source = MemoryStore::new();
    populate(&source);
    let domains: Vec<String> = DOMAINS.iter().map(|d| d.to_string()).collect();
    let xml = export(&source, &domains).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = SledStore::open(&dir.path().join("db")).unwrap();
    let report = import(&target, &xml).unwrap();
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.accounts, 4);
    assert_same(&source, &target, &DOMAINS);
    let (again, skipped) = export_with_report(&target, &domains).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(strip_roster_ver(&again), strip_roster_ver(&xml));
}

#[test]
fn public_api_import_of_a_foreign_document() {
    let s = MemoryStore::new();
    let report = import(&s, &foreign_document()).unwrap();
    assert_eq!(report.accounts, 4, "{report:#?}");
    assert_eq!(report.skipped.len(), 13, "{:#?}", report.skipped);
    assert_eq!(s.count_offline(JULIET).unwrap(), 1);
    assert_eq!(s.get_roster(JULIET).unwrap().items.len(), 2);
}
