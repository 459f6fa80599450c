//! The conformance suite every [`Storage`] backend must pass: `conformance(&store)` on a fresh,
//! empty store. Backend-specific behaviour (durability, schema, corruption) is tested next to
//! each backend.

use crate::auth::credentials::{ScramKeys, StoredCredentials};
use crate::storage::{stores, RosterItem, Storage, Subscription};

/// Deterministic, distinguishable credentials.
pub(crate) fn creds(seed: u8) -> StoredCredentials {
    let keys = |len: usize, tag: u8| ScramKeys {
        salt: vec![seed, tag, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
        iterations: 4096 + u32::from(seed),
        stored_key: (0..len).map(|i| seed ^ tag ^ (i as u8)).collect(),
        server_key: (0..len)
            .map(|i| seed.wrapping_add(tag) ^ (i as u8) ^ 0x5a)
            .collect(),
    };
    StoredCredentials {
        sha1: keys(20, 1),
        sha256: keys(32, 2),
        sha512: keys(64, 3),
    }
}

pub(crate) fn item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.to_string(),
        ..Default::default()
    }
}

/// Run every check against `store`, which must start empty.
pub(crate) fn conformance(store: &dyn Storage) {
    accounts(store);
    roster(store);
    offline(store);
    items(store);
    delete_removes_everything(store);
    create_discards_leftovers(store);
    store.flush().expect("flush");
}

fn accounts(s: &dyn Storage) {
    assert_eq!(s.get_credentials("alice@example.org").unwrap(), None);
    assert!(!s.account_exists("alice@example.org").unwrap());
    assert!(s.create_account("alice@example.org", &creds(1)).unwrap());
    assert!(s.account_exists("alice@example.org").unwrap());
    assert!(!s.account_exists("Alice@example.org").unwrap());
    assert!(!s.account_exists("alice@example.org.uk").unwrap());
    assert!(!s.account_exists("example.org").unwrap());
    assert!(!s.create_account("alice@example.org", &creds(2)).unwrap());
    assert_eq!(
        s.get_credentials("alice@example.org").unwrap(),
        Some(creds(1)),
        "a duplicate create must not overwrite"
    );
    assert!(s.set_credentials("alice@example.org", &creds(3)).unwrap());
    assert_eq!(
        s.get_credentials("alice@example.org").unwrap(),
        Some(creds(3))
    );
    assert!(!s.set_credentials("nobody@example.org", &creds(3)).unwrap());
    assert_eq!(s.get_credentials("nobody@example.org").unwrap(), None);

    for a in [
        "zed@example.org",
        "a.b@example.org",
        "bob@example.org",
        "carol@other.example",
        "dave@example.org.uk",
        "erin@xexample.org",
    ] {
        assert!(s.create_account(a, &creds(4)).unwrap(), "{a}");
    }
    assert_eq!(
        s.list_accounts("example.org").unwrap(),
        [
            "a.b@example.org",
            "alice@example.org",
            "bob@example.org",
            "zed@example.org"
        ]
    );
    assert_eq!(
        s.list_accounts("other.example").unwrap(),
        ["carol@other.example"]
    );
    assert!(s.list_accounts("example").unwrap().is_empty());
    assert!(s.list_accounts("org").unwrap().is_empty());
    assert!(s.list_accounts("nowhere.example").unwrap().is_empty());

    // Not account JIDs.
    assert!(s.create_account("example.org", &creds(1)).is_err());
    assert!(s.create_account("@example.org", &creds(1)).is_err());
    assert!(s.create_account("x@", &creds(1)).is_err());
    assert!(s.create_account("x\0y@example.org", &creds(1)).is_err());
    assert_eq!(s.get_credentials("example.org").unwrap(), None);

    for a in [
        "zed@example.org",
        "a.b@example.org",
        "carol@other.example",
        "dave@example.org.uk",
        "erin@xexample.org",
    ] {
        assert!(s.account_exists(a).unwrap(), "{a}");
        assert!(s.delete_account(a).unwrap(), "{a}");
        assert!(!s.delete_account(a).unwrap(), "{a}");
        assert!(!s.account_exists(a).unwrap(), "{a}");
    }
    assert_eq!(
        s.list_accounts("example.org").unwrap(),
        ["alice@example.org", "bob@example.org"]
    );
    assert!(s.list_accounts("other.example").unwrap().is_empty());
}

fn roster(s: &dyn Storage) {
    let a = "alice@example.org";
    let empty = s.get_roster(a).unwrap();
    assert_eq!(empty.version, 0);
    assert!(empty.items.is_empty());

    let romeo = RosterItem {
        jid: "romeo@montague.example".into(),
        name: Some("Romeo 'R' <3 & co".into()),
        subscription: Subscription::Both,
        ask_out: false,
        pending_in: false,
        approved: false,
        groups: vec!["Friends".into(), "Verona".into()],
    };
    let v1 = s.put_roster_item(a, &romeo).unwrap();
    assert!(v1 > 0);
    let mut nurse = item("nurse@capulet.example");
    nurse.ask_out = true;
    nurse.pending_in = true;
    nurse.approved = true;
    let v2 = s.put_roster_item(a, &nurse).unwrap();
    assert!(v2 > v1);

    let r = s.get_roster(a).unwrap();
    assert_eq!(r.version, v2);
    assert_eq!(r.items.len(), 2);
    assert_eq!(r.items["romeo@montague.example"], romeo);
    assert_eq!(r.items["nurse@capulet.example"], nurse);

    // Replacing bumps the version too.
    let mut romeo2 = romeo.clone();
    romeo2.subscription = Subscription::To;
    romeo2.groups.clear();
    let v3 = s.put_roster_item(a, &romeo2).unwrap();
    assert!(v3 > v2);
    assert_eq!(
        s.get_roster(a).unwrap().items["romeo@montague.example"],
        romeo2
    );

    let v4 = s.remove_roster_item(a, "nurse@capulet.example").unwrap();
    assert!(v4 > v3);
    // Removing what is not there changes nothing.
    assert_eq!(
        s.remove_roster_item(a, "nurse@capulet.example").unwrap(),
        v4
    );
    assert_eq!(s.remove_roster_item(a, "ghost@example.org").unwrap(), v4);
    let r = s.get_roster(a).unwrap();
    assert_eq!(r.version, v4);
    assert_eq!(r.items.len(), 1);

    // Rosters are per account; a name that extends another is a different account.
    let b = "bob@example.org";
    assert!(s.get_roster(b).unwrap().items.is_empty());
    let vb = s.put_roster_item(b, &item("x@y.example")).unwrap();
    assert!(vb > 0);
    assert_eq!(s.get_roster(a).unwrap().items.len(), 1);
    assert!(s.get_roster("alice@example.or").unwrap().items.is_empty());
    assert!(s
        .get_roster("alice@example.org.uk")
        .unwrap()
        .items
        .is_empty());
    // Removing the last item leaves an empty roster with a newer version.
    let v5 = s.remove_roster_item(a, "romeo@montague.example").unwrap();
    assert!(v5 > v4);
    let r = s.get_roster(a).unwrap();
    assert!(r.items.is_empty());
    assert_eq!(r.version, v5);
}

fn offline(s: &dyn Storage) {
    let a = "alice@example.org";
    assert_eq!(s.count_offline(a).unwrap(), 0);
    assert!(s.list_offline(a).unwrap().is_empty());
    let texts = [
        "<message xmlns='jabber:client' from='r@m.example/x'><body>1</body></message>",
        "<message xmlns='jabber:client'><body>deux — ünïcödé &amp; 'q'</body></message>",
        "<message xmlns='jabber:client'><body>3</body></message>",
    ];
    let seqs: Vec<u64> = texts
        .iter()
        .map(|t| s.push_offline(a, t).unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let listed = s.list_offline(a).unwrap();
    assert_eq!(
        listed,
        seqs.iter()
            .zip(texts)
            .map(|(s, t)| (*s, t.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(s.count_offline(a).unwrap(), 3);

    // Other accounts, including one whose name extends this one, are separate.
    let other = s
        .push_offline("alice@example.org.uk", "<message/>")
        .unwrap();
    assert!(other > seqs[2]);
    assert_eq!(s.count_offline(a).unwrap(), 3);
    assert_eq!(s.count_offline("bob@example.org").unwrap(), 0);

    s.remove_offline(a, &[seqs[1], 999_999_999]).unwrap();
    assert_eq!(
        s.list_offline(a).unwrap(),
        vec![
            (seqs[0], texts[0].to_string()),
            (seqs[2], texts[2].to_string())
        ]
    );
    assert_eq!(s.count_offline(a).unwrap(), 2);
    s.remove_offline(a, &[]).unwrap();
    assert_eq!(s.count_offline(a).unwrap(), 2);

    // Numbers keep growing after removals.
    let next = s
        .push_offline(a, "<message><body>4</body></message>")
        .unwrap();
    assert!(next > other);
    let listed: Vec<u64> = s.list_offline(a).unwrap().iter().map(|p| p.0).collect();
    assert_eq!(listed, [seqs[0], seqs[2], next]);
    // A count taken, then a store: the count follows (backends may keep counts).
    assert_eq!(s.count_offline(a).unwrap(), 3);
    s.push_offline(a, "<message><body>5</body></message>")
        .unwrap();
    assert_eq!(s.count_offline(a).unwrap(), 4);
    let listed: Vec<u64> = s.list_offline(a).unwrap().iter().map(|p| p.0).collect();
    assert_eq!(listed.len(), 4);

    s.remove_offline(a, &listed).unwrap();
    assert_eq!(s.count_offline(a).unwrap(), 0);
    assert!(s.list_offline(a).unwrap().is_empty());
    s.remove_offline("alice@example.org.uk", &[other]).unwrap();
    assert_eq!(s.count_offline("alice@example.org.uk").unwrap(), 0);
}

fn items(s: &dyn Storage) {
    let a = "alice@example.org";
    assert_eq!(s.get_item(stores::VCARD, a, "").unwrap(), None);
    assert!(s.list_items(stores::PRIVATE, a).unwrap().is_empty());
    assert!(!s.delete_item(stores::VCARD, a, "").unwrap());

    let vcard = "<vCard xmlns='vcard-temp'><FN>Alice &amp; Co</FN></vCard>";
    s.put_item(stores::VCARD, a, "", vcard).unwrap();
    assert_eq!(
        s.get_item(stores::VCARD, a, "").unwrap().as_deref(),
        Some(vcard)
    );
    let vcard2 = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
    s.put_item(stores::VCARD, a, "", vcard2).unwrap();
    assert_eq!(
        s.get_item(stores::VCARD, a, "").unwrap().as_deref(),
        Some(vcard2)
    );

    // Keys sort by string order, whatever the insertion order.
    let entries = [
        (
            "{storage:bookmarks}storage",
            "<storage xmlns='storage:bookmarks'/>",
        ),
        ("{exodus:prefs}exodus", "<exodus xmlns='exodus:prefs'/>"),
        ("{exodus:prefs}a", "<a xmlns='exodus:prefs'/>"),
        ("{exodus}z", "<z xmlns='exodus'/>"),
    ];
    for (k, v) in entries {
        s.put_item(stores::PRIVATE, a, k, v).unwrap();
    }
    let mut expected: Vec<(String, String)> = entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    expected.sort();
    assert_eq!(s.list_items(stores::PRIVATE, a).unwrap(), expected);

    // Stores, and stores whose name extends another, are separate.
    s.put_item("priv", a, "{exodus}z", "<other/>").unwrap();
    assert_eq!(s.list_items("priv", a).unwrap().len(), 1);
    assert_eq!(s.list_items(stores::PRIVATE, a).unwrap(), expected);
    assert_eq!(
        s.list_items(stores::VCARD, a).unwrap(),
        vec![(String::new(), vcard2.to_string())]
    );
    assert!(s
        .list_items(stores::PRIVATE, "bob@example.org")
        .unwrap()
        .is_empty());
    assert_eq!(
        s.get_item(stores::PRIVATE, "bob@example.org", "{exodus}z")
            .unwrap(),
        None
    );

    assert!(s.delete_item(stores::PRIVATE, a, "{exodus}z").unwrap());
    assert!(!s.delete_item(stores::PRIVATE, a, "{exodus}z").unwrap());
    expected.retain(|(k, _)| k != "{exodus}z");
    assert_eq!(s.list_items(stores::PRIVATE, a).unwrap(), expected);
    assert_eq!(
        s.get_item("priv", a, "{exodus}z").unwrap().as_deref(),
        Some("<other/>")
    );

    // A NUL in a component that is followed by a separator is refused, not misfiled.
    assert!(s.put_item("a\0b", a, "k", "<x/>").is_err());
    assert!(s
        .put_item(stores::VCARD, "a\0@example.org", "", "<x/>")
        .is_err());
}

/// Everything `alice` owns goes with her account; neighbours keep theirs.
fn delete_removes_everything(s: &dyn Storage) {
    let a = "alice@example.org";
    let neighbour = "alice@example.org.uk";
    assert!(s.create_account(neighbour, &creds(9)).unwrap());
    s.put_roster_item(a, &item("romeo@montague.example"))
        .unwrap();
    s.put_roster_item(neighbour, &item("romeo@montague.example"))
        .unwrap();
    s.push_offline(a, "<message/>").unwrap();
    s.push_offline(neighbour, "<message/>").unwrap();
    assert_eq!(s.count_offline(a).unwrap(), 1); // counted before the deletion
    s.put_item(stores::VCARD, neighbour, "", "<vCard xmlns='vcard-temp'/>")
        .unwrap();
    assert!(s.get_item(stores::VCARD, a, "").unwrap().is_some());
    let old_version = s.get_roster(a).unwrap().version;

    assert!(s.delete_account(a).unwrap());
    assert_eq!(s.get_credentials(a).unwrap(), None);
    let r = s.get_roster(a).unwrap();
    assert!(r.items.is_empty());
    assert_eq!(s.count_offline(a).unwrap(), 0);
    assert!(s.list_offline(a).unwrap().is_empty());
    assert_eq!(s.get_item(stores::VCARD, a, "").unwrap(), None);
    assert!(s.list_items(stores::PRIVATE, a).unwrap().is_empty());
    assert!(s.list_items("priv", a).unwrap().is_empty());
    assert_eq!(s.list_accounts("example.org").unwrap(), ["bob@example.org"]);
    assert!(!s.delete_account(a).unwrap());

    assert_eq!(s.get_credentials(neighbour).unwrap(), Some(creds(9)));
    assert_eq!(s.get_roster(neighbour).unwrap().items.len(), 1);
    assert_eq!(s.count_offline(neighbour).unwrap(), 1);
    assert!(s.get_item(stores::VCARD, neighbour, "").unwrap().is_some());

    // A new account of the same name starts empty, and its roster versions never repeat
    // the old account's (a client's cached roster of the old account stays stale).
    assert!(s.create_account(a, &creds(5)).unwrap());
    assert!(s.get_roster(a).unwrap().items.is_empty());
    assert_eq!(s.count_offline(a).unwrap(), 0);
    let v = s.put_roster_item(a, &item("x@y.example")).unwrap();
    assert!(v > old_version);
    assert!(s.delete_account(a).unwrap());
    assert!(s.delete_account(neighbour).unwrap());
}

/// Data stored under a name without an account is not inherited when the account is created.
fn create_discards_leftovers(s: &dyn Storage) {
    let g = "ghost@example.org";
    s.put_roster_item(g, &item("x@y.example")).unwrap();
    s.push_offline(g, "<message/>").unwrap();
    s.put_item(stores::PRIVATE, g, "{a}b", "<b xmlns='a'/>")
        .unwrap();
    assert!(s.create_account(g, &creds(6)).unwrap());
    assert!(s.get_roster(g).unwrap().items.is_empty());
    assert_eq!(s.count_offline(g).unwrap(), 0);
    assert!(s.list_items(stores::PRIVATE, g).unwrap().is_empty());
    assert!(s.delete_account(g).unwrap());
}
