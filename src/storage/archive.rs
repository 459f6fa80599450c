//! The message archive contract (XEP-0313 storage): per-account, append-only, time-ordered.
//!
//! # Ids
//! An archive id is a `u64`: microseconds since the Unix epoch at which the message was
//! archived, bumped by one microsecond when two messages of one account would collide. So
//! ids are unique within an account, never change, sort in archive order, and the id *is* the
//! message's archive timestamp (`start`/`end` filters are id ranges). Clients see the id as 16
//! lowercase hex digits ([`format_id`]); [`parse_id`] refuses anything else.
//!
//! # Queries
//! [`ArchiveQuery`] selects a range (start/end timestamps, RSM after/before ids) and optional
//! counterpart (`with`: a bare JID matches every resource, a full JID only itself, a domain
//! only itself), then takes `limit` items from the front, or from the back for RSM
//! `<before/>` paging (`from_end`). Results are always returned oldest first.
//! [`ArchivePage::complete`] is true when the page was not cut by `limit`, i.e. nothing more
//! matches in the paging direction.
//!
//! Backends keep a counterpart index (account, bare `with`, id), so a `with` query is a range
//! scan over that contact's messages only, whatever the archive's size.
//!
//! # Durability
//! Unlike the rest of [`super::Storage`], an append returns before it is fsynced: the backend's
//! periodic flush (sled: 500 ms) makes it durable. The archive is a copy of traffic that is
//! delivered or stored offline (durably) anyway; a per-message fsync would cap chat
//! throughput at the disk's sync rate.

use super::Result;

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// Archive id; also the archive timestamp in microseconds since the epoch.
    pub id: u64,
    /// The counterpart's JID as it appeared on the message (full or bare).
    pub with: String,
    /// The message stanza, serialised.
    pub xml: String,
}

/// What to fetch from an archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Counterpart filter: a bare JID (any resource), a full JID (exactly), or a domain.
    pub with: Option<String>,
    /// Earliest timestamp (µs, inclusive).
    pub start: Option<u64>,
    /// Latest timestamp (µs, inclusive).
    pub end: Option<u64>,
    /// Only ids strictly greater (RSM `<after/>`, MAM `after-id`).
    pub after: Option<u64>,
    /// Only ids strictly smaller (RSM `<before/>`, MAM `before-id`).
    pub before: Option<u64>,
    /// Most items returned.
    pub limit: usize,
    /// Take the last `limit` matching items instead of the first (RSM `<before/>` paging).
    pub from_end: bool,
}

/// One page of results, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePage {
    pub items: Vec<ArchivedMessage>,
    /// Nothing more matches beyond this page in the paging direction.
    pub complete: bool,
}

/// The archive backend contract. `account` is a bare JID string (`user@domain`). The
/// default methods describe a backend that keeps no archive (every call fails), so test
/// doubles of [`super::Storage`] need only `impl Archive for X {}`.
pub trait Archive {
    /// Append a message exchanged with `with` (a JID string, full or bare), archived at
    /// `at_micros` (or one microsecond after the account's last id, whichever is later).
    /// Returns its id.
    fn archive_append(
        &self,
        _account: &str,
        _with: &str,
        _xml: &str,
        _at_micros: u64,
    ) -> Result<u64> {
        Err(no_archive())
    }
    /// Query one account's archive.
    fn archive_query(&self, _account: &str, _q: &ArchiveQuery) -> Result<ArchivePage> {
        Err(no_archive())
    }
    /// One message by id.
    fn archive_get(&self, _account: &str, _id: u64) -> Result<Option<ArchivedMessage>> {
        Err(no_archive())
    }
    /// Replace the stored stanza of one message, keeping its id and counterpart (XEP-0425
    /// tombstones). Returns whether the message existed.
    fn archive_replace(&self, _account: &str, _id: u64, _xml: &str) -> Result<bool> {
        Err(no_archive())
    }
    /// The oldest and newest message of an account's archive.
    fn archive_bounds(&self, _account: &str) -> Result<Option<(ArchivedMessage, ArchivedMessage)>> {
        Err(no_archive())
    }
    /// Delete every archived message (all accounts) older than `cutoff_micros`; returns how
    /// many were removed.
    fn archive_delete_older_than(&self, _cutoff_micros: u64) -> Result<usize> {
        Err(no_archive())
    }
    /// Delete an account's whole archive.
    fn archive_clear(&self, _account: &str) -> Result<()> {
        Err(no_archive())
    }
}

fn no_archive() -> super::StorageError {
    super::StorageError("this storage backend keeps no message archive".into())
}

/// The client-visible form of an id: 16 lowercase hex digits.
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Parse a client-supplied id; `None` unless it is exactly what [`format_id`] writes.
pub fn parse_id(s: &str) -> Option<u64> {
    if s.len() != 16
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The bare part of a JID string (everything before the first '/').
pub fn bare_of(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

/// Whether a stored counterpart matches a `with` filter: a full JID filter matches exactly,
/// a bare (or domain) filter matches the bare part.
pub fn with_matches(filter: &str, stored: &str) -> bool {
    if filter.contains('/') {
        filter == stored
    } else {
        filter == bare_of(stored)
    }
}

/// The inclusive id range a query allows, or `None` when it is empty.
pub fn id_range(q: &ArchiveQuery) -> Option<(u64, u64)> {
    let mut lo = q.start.unwrap_or(0);
    let mut hi = q.end.unwrap_or(u64::MAX);
    if let Some(a) = q.after {
        lo = lo.max(a.checked_add(1)?);
    }
    if let Some(b) = q.before {
        hi = hi.min(b.checked_sub(1)?);
    }
    (lo <= hi).then_some((lo, hi))
}

/// Take one page from candidates in id order (a double-ended iterator over the id range),
/// keeping those that match the `with` filter.
pub fn take_page<I>(candidates: I, q: &ArchiveQuery) -> Result<ArchivePage>
where
    I: DoubleEndedIterator<Item = Result<ArchivedMessage>>,
{
    let keep = |m: &Result<ArchivedMessage>| match (m, &q.with) {
        (Ok(m), Some(w)) => with_matches(w, &m.with),
        _ => true,
    };
    let mut items = Vec::with_capacity(q.limit.min(1024));
    let mut complete = true;
    if q.from_end {
        for m in candidates.rev().filter(keep) {
            if items.len() == q.limit {
                complete = false;
                break;
            }
            items.push(m?);
        }
        items.reverse();
    } else {
        for m in candidates.filter(keep) {
            if items.len() == q.limit {
                complete = false;
                break;
            }
            items.push(m?);
        }
    }
    Ok(ArchivePage { items, complete })
}

/// Shared behaviour checks, run against every backend.
#[cfg(test)]
pub(crate) fn conformance(store: &dyn Archive) {
    let a = "alice@example.org";
    let mut ids = Vec::new();
    for i in 0..20u64 {
        let with = if i % 2 == 0 {
            "bob@example.org/phone"
        } else {
            "carol@example.org"
        };
        ids.push(
            store
                .archive_append(a, with, &format!("<message id='{i}'/>"), 1_000 + i * 10)
                .unwrap(),
        );
    }
    // Colliding timestamps are bumped, never reordered.
    let late = store
        .archive_append(a, "bob@example.org", "<m/>", 5)
        .unwrap();
    assert!(late > ids[19]);
    assert_eq!(ids[0], 1_000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // Other accounts do not see it.
    let other = store
        .archive_query(
            "alice@example.org.uk",
            &ArchiveQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(other.items.is_empty() && other.complete);

    let q = |q: ArchiveQuery| store.archive_query(a, &q).unwrap();
    let all = q(ArchiveQuery {
        limit: 100,
        ..Default::default()
    });
    assert_eq!(all.items.len(), 21);
    assert!(all.complete);
    let first = q(ArchiveQuery {
        limit: 5,
        ..Default::default()
    });
    assert_eq!(
        first.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[..5]
    );
    assert!(!first.complete);
    let next = q(ArchiveQuery {
        limit: 5,
        after: Some(ids[4]),
        ..Default::default()
    });
    assert_eq!(next.items[0].id, ids[5]);
    let last = q(ArchiveQuery {
        limit: 3,
        from_end: true,
        ..Default::default()
    });
    assert_eq!(
        last.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[18], ids[19], late]
    );
    assert!(!last.complete);
    let before = q(ArchiveQuery {
        limit: 3,
        from_end: true,
        before: Some(ids[3]),
        ..Default::default()
    });
    assert_eq!(
        before.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[..3]
    );
    assert!(before.complete);
    // with: bare matches every resource; full matches exactly.
    let bob = q(ArchiveQuery {
        limit: 100,
        with: Some("bob@example.org".into()),
        ..Default::default()
    });
    assert_eq!(bob.items.len(), 11);
    let bob_phone = q(ArchiveQuery {
        limit: 100,
        with: Some("bob@example.org/phone".into()),
        ..Default::default()
    });
    assert_eq!(bob_phone.items.len(), 10);
    let bob_page = q(ArchiveQuery {
        limit: 4,
        with: Some("bob@example.org".into()),
        after: Some(ids[2]),
        ..Default::default()
    });
    assert_eq!(
        bob_page.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[4], ids[6], ids[8], ids[10]]
    );
    assert!(!bob_page.complete);
    let carol_end = q(ArchiveQuery {
        limit: 2,
        with: Some("carol@example.org".into()),
        from_end: true,
        ..Default::default()
    });
    assert_eq!(
        carol_end.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[17], ids[19]]
    );
    // start/end are inclusive timestamps.
    let window = q(ArchiveQuery {
        limit: 100,
        start: Some(1_050),
        end: Some(1_090),
        ..Default::default()
    });
    assert_eq!(
        window.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[5..10]
    );
    assert!(window.complete);
    let carol_window = q(ArchiveQuery {
        limit: 100,
        start: Some(1_050),
        end: Some(1_090),
        with: Some("carol@example.org".into()),
        ..Default::default()
    });
    // i = 5, 7, 9.
    assert_eq!(carol_window.items.len(), 3);
    // Stored data comes back as written.
    let m = store.archive_get(a, ids[7]).unwrap().unwrap();
    assert_eq!(m.xml, "<message id='7'/>");
    assert_eq!(m.with, "carol@example.org");
    assert!(store.archive_get(a, 3).unwrap().is_none());
    // Replacing keeps id and counterpart.
    assert!(store.archive_replace(a, ids[7], "<tomb/>").unwrap());
    let m = store.archive_get(a, ids[7]).unwrap().unwrap();
    assert_eq!(
        (m.xml.as_str(), m.with.as_str()),
        ("<tomb/>", "carol@example.org")
    );
    assert!(!store.archive_replace(a, 3, "<tomb/>").unwrap());
    let (lo, hi) = store.archive_bounds(a).unwrap().unwrap();
    assert_eq!((lo.id, hi.id), (ids[0], late));
    // Retention.
    assert_eq!(store.archive_delete_older_than(1_100).unwrap(), 10);
    let rest = q(ArchiveQuery {
        limit: 100,
        ..Default::default()
    });
    assert_eq!(rest.items.len(), 11);
    let bob = q(ArchiveQuery {
        limit: 100,
        with: Some("bob@example.org".into()),
        ..Default::default()
    });
    assert_eq!(bob.items.len(), 6, "the index follows deletions");
    store.archive_clear(a).unwrap();
    assert!(store.archive_bounds(a).unwrap().is_none());
    let bob = q(ArchiveQuery {
        limit: 100,
        with: Some("bob@example.org".into()),
        ..Default::default()
    });
    assert!(bob.items.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_other_forms() {
        for id in [0, 1, 1_700_000_000_000_000, u64::MAX] {
            assert_eq!(parse_id(&format_id(id)), Some(id));
        }
        for bad in [
            "",
            "123",
            "000000000000000G",
            "00000000000000000",
            "+00000000000000f",
            "000000000000000F",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn with_matching() {
        assert!(with_matches("b@x", "b@x/r"));
        assert!(with_matches("b@x", "b@x"));
        assert!(with_matches("b@x/r", "b@x/r"));
        assert!(!with_matches("b@x/r", "b@x/s"));
        assert!(!with_matches("b@x/r", "b@x"));
        assert!(!with_matches("b@x", "b@xy"));
    }

    #[test]
    fn ranges() {
        let q = ArchiveQuery {
            after: Some(5),
            before: Some(6),
            ..Default::default()
        };
        assert_eq!(id_range(&q), None);
        let q = ArchiveQuery {
            after: Some(5),
            before: Some(7),
            ..Default::default()
        };
        assert_eq!(id_range(&q), Some((6, 6)));
        let q = ArchiveQuery {
            before: Some(0),
            ..Default::default()
        };
        assert_eq!(id_range(&q), None);
    }
}
