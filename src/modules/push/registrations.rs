//! The push registrations of an account, kept in the storage trait's keyed per-account store
//! [`STORE`] (sled: tree `items`, key `account 0 push 0 jid LF node`), so both backends keep
//! them, they are durable before the client hears "enabled" (the store flushes), and they
//! go away with the account.
//!
//! One registration per (app server JID, node): the key is the JID, a line feed, and the node
//! (empty when there is none). A JID cannot contain a line feed (RFC 7622 forbids control
//! characters), so keys never collide. The value is
//! `<registration xmlns='urn:xmpp:push:0' jid='…' node='…' since='unix seconds'>` with the
//! publish-options form given at enable time as its child.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::jid::Jid;
use crate::proto::ns;
use crate::storage::{self, Storage};
use crate::xml::Element;

use super::NS;

/// The keyed store holding registrations.
pub const STORE: &str = "push";

/// One app server registration (XEP-0357 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The app server's XMPP push service.
    pub jid: Jid,
    /// Its node for this device; `None` when the client gave none.
    pub node: Option<String>,
    /// The publish-options data form to send with each notification.
    pub options: Option<Element>,
    /// When it was last enabled (seconds since the Unix epoch): the oldest is dropped first.
    pub since: u64,
}

impl Registration {
    /// Its storage key.
    pub fn key(&self) -> String {
        key_of(&self.jid, self.node.as_deref())
    }

    fn to_element(&self) -> Element {
        let mut el = Element::new("registration", NS)
            .with_attr("jid", self.jid.to_string())
            .with_opt_attr("node", self.node.as_deref())
            .with_attr("since", self.since.to_string());
        if let Some(o) = &self.options {
            el.push_child(o.clone());
        }
        el
    }

    fn from_element(el: &Element) -> Option<Registration> {
        if !el.is("registration", NS) {
            return None;
        }
        Some(Registration {
            jid: Jid::parse(el.attr("jid")?).ok()?,
            node: el.attr("node").map(str::to_string),
            options: el.child("x", ns::DATA_FORMS).cloned(),
            since: el.attr("since")?.parse().ok()?,
        })
    }
}

/// The storage key of (jid, node).
pub fn key_of(jid: &Jid, node: Option<&str>) -> String {
    format!("{jid}\n{}", node.unwrap_or(""))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The account's registrations, oldest first. A stored value that does not parse is skipped
/// (and logged): one damaged entry must not stop the others.
pub fn load(store: &dyn Storage, account: &str) -> storage::Result<Vec<Registration>> {
    let mut regs: Vec<Registration> = store
        .list_items(STORE, account)?
        .into_iter()
        .filter_map(|(key, xml)| {
            let reg = crate::xml::parser::parse_element(&xml)
                .ok()
                .and_then(|el| Registration::from_element(&el))
                .filter(|r| r.key() == key);
            if reg.is_none() {
                tracing::warn!(account, key = %key.escape_debug(), "damaged push registration skipped");
            }
            reg
        })
        .collect();
    regs.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.key().cmp(&b.key())));
    Ok(regs)
}

/// Store a registration (replacing the one for the same JID and node), keeping at most `max`:
/// the oldest others are removed first. Its `since` is raised above every other's if needed,
/// so the order of enables is kept within one second. Returns the keys removed to make room.
pub fn save(
    store: &dyn Storage,
    account: &str,
    reg: &Registration,
    max: usize,
) -> storage::Result<Vec<String>> {
    let key = reg.key();
    let others: Vec<Registration> = load(store, account)?
        .into_iter()
        .filter(|r| r.key() != key)
        .collect();
    let newest = others.iter().map(|r| r.since.saturating_add(1)).max();
    let reg = Registration {
        since: reg.since.max(newest.unwrap_or(0)),
        ..reg.clone()
    };
    let keep = max.saturating_sub(1);
    let mut dropped = Vec::new();
    for old in others.iter().take(others.len().saturating_sub(keep)) {
        store.delete_item(STORE, account, &old.key())?;
        dropped.push(old.key());
    }
    store.put_item(STORE, account, &key, &reg.to_element().to_string())?;
    Ok(dropped)
}

/// Remove the registrations for `jid` (only the one with `node` when given). Returns the keys
/// removed.
pub fn remove(
    store: &dyn Storage,
    account: &str,
    jid: &Jid,
    node: Option<&str>,
) -> storage::Result<Vec<String>> {
    let mut removed = Vec::new();
    for r in load(store, account)? {
        if r.jid == *jid && (node.is_none() || r.node.as_deref() == node) {
            let key = r.key();
            if store.delete_item(STORE, account, &key)? {
                removed.push(key);
            }
        }
    }
    Ok(removed)
}

/// Remove one registration by its key; `true` if it was there.
pub fn remove_key(store: &dyn Storage, account: &str, key: &str) -> storage::Result<bool> {
    store.delete_item(STORE, account, key)
}

/// The checks every backend must pass for push registrations (run on a fresh store).
#[cfg(test)]
pub(crate) fn conformance(store: &dyn Storage) {
    use crate::storage::memory::conformance::creds;
    let a = "alice@example.org";
    let b = "bob@example.org";
    assert!(store.create_account(a, &creds(1)).unwrap());
    assert!(store.create_account(b, &creds(2)).unwrap());
    assert!(load(store, a).unwrap().is_empty());

    let app = Jid::parse("push.app.example").unwrap();
    let form = crate::xml::parser::parse_element(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='secret'><value>s&lt;e&amp;cret</value></field></x>",
    )
    .unwrap();
    let reg = |jid: &Jid, node: Option<&str>, since: u64| Registration {
        jid: jid.clone(),
        node: node.map(str::to_string),
        options: Some(form.clone()),
        since,
    };
    let r1 = reg(&app, Some("n1"), 10);
    assert!(save(store, a, &r1, 5).unwrap().is_empty());
    assert_eq!(load(store, a).unwrap(), vec![r1.clone()]);
    assert!(
        load(store, b).unwrap().is_empty(),
        "other accounts see nothing"
    );

    // Same JID and node: replaced, not added. Another node of the same service: added.
    let r1b = Registration {
        options: None,
        ..reg(&app, Some("n1"), 11)
    };
    save(store, a, &r1b, 5).unwrap();
    let r2 = reg(&app, Some("n2"), 12);
    save(store, a, &r2, 5).unwrap();
    // No node, and a full JID with a space in its resource.
    let r3 = reg(&app, None, 13);
    save(store, a, &r3, 5).unwrap();
    let odd = Jid::parse("pushserver@example.org/app server").unwrap();
    let r4 = reg(&odd, Some("x\ny"), 14);
    save(store, a, &r4, 5).unwrap();
    assert_eq!(
        load(store, a).unwrap(),
        vec![r1b.clone(), r2.clone(), r3.clone(), r4.clone()]
    );

    // At the limit, the oldest goes first.
    let dropped = save(store, a, &reg(&odd, Some("z"), 15), 3).unwrap();
    assert_eq!(dropped, vec![r1b.key(), r2.key()]);
    let left: Vec<_> = load(store, a).unwrap().iter().map(|r| r.since).collect();
    assert_eq!(left, [13, 14, 15]);

    // Disable one node, then every node of a service.
    assert_eq!(
        remove(store, a, &odd, Some("x\ny")).unwrap(),
        vec![r4.key()]
    );
    save(store, a, &r2, 5).unwrap();
    let mut removed = remove(store, a, &app, None).unwrap();
    removed.sort();
    let mut want = vec![r2.key(), r3.key()];
    want.sort();
    assert_eq!(removed, want);
    assert!(remove(store, a, &app, None).unwrap().is_empty());
    let left: Vec<_> = load(store, a).unwrap().iter().map(|r| r.since).collect();
    assert_eq!(left, [15]);

    // A damaged value is skipped, not fatal.
    store.put_item(STORE, a, "junk", "<not xml").unwrap();
    assert_eq!(load(store, a).unwrap().len(), 1);
    assert!(remove_key(store, a, "junk").unwrap());

    // They go away with the account.
    save(store, b, &r1, 5).unwrap();
    assert!(store.delete_account(b).unwrap());
    assert!(store.create_account(b, &creds(2)).unwrap());
    assert!(load(store, b).unwrap().is_empty());
    store.flush().unwrap();
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_backend() {
        super::conformance(&crate::storage::memory::MemoryStore::new());
    }

    #[test]
    fn sled_backend_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let app = crate::jid::Jid::parse("push.app.example").unwrap();
        {
            let store = crate::storage::sled_store::SledStore::open(&path).unwrap();
            super::conformance(&store);
            let reg = super::Registration {
                jid: app.clone(),
                node: Some("kept".into()),
                options: None,
                since: 99,
            };
            super::save(&store, "alice@example.org", &reg, 5).unwrap();
        }
        let store = crate::storage::sled_store::SledStore::open(&path).unwrap();
        let regs = super::load(&store, "alice@example.org").unwrap();
        assert!(regs
            .iter()
            .any(|r| r.jid == app && r.node.as_deref() == Some("kept") && r.since == 99));
    }
}
