//! The sled message archive (XEP-0313 storage) of [`SledStore`]; its trees are listed in the
//! keyspace table of [`super::sled_store`]:
//!
//! - `archive`: `account 0 id` → `with_len (u16 BE) | with | xml`; `id` is the u64 archive id,
//!   big-endian, so one account's messages are one contiguous key range in time order, and
//!   `start`/`end`/RSM bounds are a range scan.
//! - `archive_with`: `account 0 bare_with 0 id` → empty; the counterpart index, so a `with`
//!   query walks only that contact's messages.
//!
//! Appends hold a lock so the "last id + 1" bump of one account cannot race; an account's last
//! id is read from the tree once and then kept in memory (only appends add ids, so the cached
//! value never falls behind the tree). The index entry is written before the message, without
//! a transaction (a multi-tree transaction cost more than both inserts): sled's log keeps
//! write order, so a crash between the two leaves at most an index entry without a message,
//! which queries skip.

use sled::{Batch, IVec};

use super::archive::{
    bare_of, id_range, take_page, Archive, ArchivePage, ArchiveQuery, ArchivedMessage,
};
use super::sled_store::{check_component, require_account, SledStore};
use super::{Result, Storage, StorageError};

const TREE: &str = "archive";

fn db_err(e: sled::Error) -> StorageError {
    StorageError(format!("sled: {e}"))
}

fn prefix(account: &str) -> Result<Vec<u8>> {
    check_component("account", account)?;
    let mut k = Vec::with_capacity(account.len() + 9);
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    Ok(k)
}

fn with_prefix(account: &str, bare_with: &str) -> Result<Vec<u8>> {
    check_component("archive counterpart", bare_with)?;
    let mut k = prefix(account)?;
    k.extend_from_slice(bare_with.as_bytes());
    k.push(0);
    Ok(k)
}

fn with_id(mut prefix: Vec<u8>, id: u64) -> Vec<u8> {
    prefix.extend_from_slice(&id.to_be_bytes());
    prefix
}

fn id_of(key: &[u8]) -> Result<u64> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|n| key.get(n..))
        .and_then(|t| <[u8; 8]>::try_from(t).ok())
        .ok_or_else(|| corrupt(key, "key too short"))?;
    Ok(u64::from_be_bytes(tail))
}

fn corrupt(key: &[u8], what: &str) -> StorageError {
    StorageError(format!(
        "corrupt value in tree {TREE:?} at key {:?}: {what}",
        String::from_utf8_lossy(key)
    ))
}

fn encode(with: &str, xml: &str) -> Result<Vec<u8>> {
    let len = u16::try_from(with.len())
        .map_err(|_| StorageError("archive counterpart JID too long".into()))?;
    let mut v = Vec::with_capacity(2 + with.len() + xml.len());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(with.as_bytes());
    v.extend_from_slice(xml.as_bytes());
    Ok(v)
}

fn decode(key: &[u8], id: u64, v: &[u8]) -> Result<ArchivedMessage> {
    let (len, rest) = v
        .split_at_checked(2)
        .ok_or_else(|| corrupt(key, "short value"))?;
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    let (with, xml) = rest
        .split_at_checked(len)
        .ok_or_else(|| corrupt(key, "short value"))?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt(key, "not UTF-8"));
    Ok(ArchivedMessage {
        id,
        with: text(with)?,
        xml: text(xml)?,
    })
}

fn entry(kv: sled::Result<(IVec, IVec)>) -> Result<ArchivedMessage> {
    let (k, v) = kv.map_err(db_err)?;
    decode(&k, id_of(&k)?, &v)
}

impl SledStore {
    /// Remove an account's archive and index (no flush).
    pub(super) fn purge_archive(&self, account: &str) -> Result<()> {
        let p = prefix(account)?;
        // The remembered last id stays valid after a purge (ids only need to grow); dropped to
        // keep the map small.
        if let Ok(mut last_ids) = self.archive_lock.lock() {
            last_ids.remove(&p);
        }
        for tree in [&self.archive, &self.archive_with] {
            let mut batch = Batch::default();
            for key in tree.scan_prefix(&p).keys() {
                batch.remove(key.map_err(db_err)?);
            }
            tree.apply_batch(batch).map_err(db_err)?;
        }
        Ok(())
    }
}

impl Archive for SledStore {
    fn archive_append(&self, account: &str, with: &str, xml: &str, at_micros: u64) -> Result<u64> {
        require_account(account)?;
        let p = prefix(account)?;
        let wp = with_prefix(account, bare_of(with))?;
        let value = encode(with, xml)?;
        let mut last_ids = self
            .archive_lock
            .lock()
            .map_err(|_| StorageError("archive lock poisoned".into()))?;
        let last = match last_ids.get(&p) {
            Some(&last) => Some(last),
            None => match self.archive.scan_prefix(&p).keys().next_back() {
                Some(k) => Some(id_of(&k.map_err(db_err)?)?),
                None => None,
            },
        };
        let id = match last {
            Some(last) => at_micros.max(last.saturating_add(1)),
            None => at_micros,
        };
        let key = with_id(p.clone(), id);
        let ikey = with_id(wp, id);
        self.archive_with
            .insert(ikey.as_slice(), &[] as &[u8])
            .map_err(db_err)?;
        self.archive
            .insert(key.as_slice(), value.as_slice())
            .map_err(db_err)?;
        last_ids.insert(p, id);
        Ok(id)
    }

    fn archive_query(&self, account: &str, q: &ArchiveQuery) -> Result<ArchivePage> {
        let Some((lo, hi)) = id_range(q) else {
            prefix(account)?;
            return Ok(ArchivePage {
                items: Vec::new(),
                complete: true,
            });
        };
        match &q.with {
            None => {
                let p = prefix(account)?;
                let range = self.archive.range(with_id(p.clone(), lo)..=with_id(p, hi));
                take_page(range.map(entry), q)
            }
            Some(w) => {
                let wp = with_prefix(account, bare_of(w))?;
                let p = prefix(account)?;
                let range = self
                    .archive_with
                    .range(with_id(wp.clone(), lo)..=with_id(wp, hi));
                // An index entry without its message (a crash between the two inserts of
                // an append, or an append still in progress) is skipped.
                let it = range.keys().filter_map(|k| {
                    let found = k.map_err(db_err).and_then(|k| {
                        let id = id_of(&k)?;
                        let key = with_id(p.clone(), id);
                        match self.archive.get(&key).map_err(db_err)? {
                            Some(v) => decode(&key, id, &v).map(Some),
                            None => Ok(None),
                        }
                    });
                    found.transpose()
                });
                take_page(it, q)
            }
        }
    }

    fn archive_get(&self, account: &str, id: u64) -> Result<Option<ArchivedMessage>> {
        let key = with_id(prefix(account)?, id);
        match self.archive.get(&key).map_err(db_err)? {
            Some(v) => decode(&key, id, &v).map(Some),
            None => Ok(None),
        }
    }

    fn archive_replace(&self, account: &str, id: u64, xml: &str) -> Result<bool> {
        let key = with_id(prefix(account)?, id);
        // Under the append lock, so a replace cannot interleave with an append's two inserts.
        let _guard = self
            .archive_lock
            .lock()
            .map_err(|_| StorageError("archive lock poisoned".into()))?;
        let Some(old) = self.archive.get(key.as_slice()).map_err(db_err)? else {
            return Ok(false);
        };
        let m = decode(&key, id, &old)?;
        let value = encode(&m.with, xml)?;
        self.archive
            .insert(key.as_slice(), value.as_slice())
            .map_err(db_err)?;
        Ok(true)
    }

    fn archive_bounds(&self, account: &str) -> Result<Option<(ArchivedMessage, ArchivedMessage)>> {
        let p = prefix(account)?;
        let mut it = self.archive.scan_prefix(&p);
        let Some(first) = it.next() else {
            return Ok(None);
        };
        let first = entry(first)?;
        let last = match it.next_back() {
            Some(l) => entry(l)?,
            None => first.clone(),
        };
        Ok(Some((first, last)))
    }

    fn archive_delete_older_than(&self, cutoff_micros: u64) -> Result<usize> {
        let mut removed = 0;
        // Walk account by account: find the next account's first key, remove its old range,
        // then jump past every key of that account (`account 0x01` sorts after them all).
        let mut from: Vec<u8> = Vec::new();
        loop {
            let Some(kv) = self.archive.range(from.clone()..).next() else {
                break;
            };
            let (key, _) = kv.map_err(db_err)?;
            let Some(sep) = key.iter().position(|&b| b == 0) else {
                return Err(corrupt(&key, "no account separator"));
            };
            let account = &key[..sep];
            let mut p = account.to_vec();
            p.push(0);
            let end = with_id(p.clone(), cutoff_micros);
            let mut batch = Batch::default();
            let mut index = Batch::default();
            for kv in self.archive.range(p.clone()..end) {
                let (k, v) = kv.map_err(db_err)?;
                let id = id_of(&k)?;
                let m = decode(&k, id, &v)?;
                let mut ik = p.clone();
                ik.extend_from_slice(bare_of(&m.with).as_bytes());
                ik.push(0);
                index.remove(with_id(ik, id));
                batch.remove(k);
                removed += 1;
            }
            self.archive_with.apply_batch(index).map_err(db_err)?;
            self.archive.apply_batch(batch).map_err(db_err)?;
            from = account.to_vec();
            from.push(1);
        }
        self.flush()?;
        Ok(removed)
    }

    fn archive_clear(&self, account: &str) -> Result<()> {
        self.purge_archive(account)?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SledStore::open(dir.path()).unwrap();
        super::super::archive::conformance(&store);
    }
}
