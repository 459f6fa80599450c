//! The in-memory message archive (for tests): per account, messages by id and an index of
//! ids by bare counterpart, behaving like the sled archive (the shared conformance checks in
//! [`super::archive`] run against both).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::archive::{
    bare_of, id_range, take_page, Archive, ArchivePage, ArchiveQuery, ArchivedMessage,
};
use super::memory::MemoryStore;
use super::{Result, StorageError};

#[derive(Default)]
struct Account {
    messages: BTreeMap<u64, (String, String)>,
    by_with: HashMap<String, BTreeSet<u64>>,
}

/// Archives of every account, behind one mutex.
#[derive(Default)]
pub struct MemoryArchive {
    inner: Mutex<HashMap<String, Account>>,
}

impl MemoryArchive {
    fn lock(&self) -> Result<MutexGuard<'_, HashMap<String, Account>>> {
        self.inner
            .lock()
            .map_err(|_| StorageError("memory archive lock poisoned".into()))
    }

    /// Drop an account's archive.
    pub fn clear(&self, account: &str) -> Result<()> {
        self.lock()?.remove(account);
        Ok(())
    }
}

fn message(id: u64, (with, xml): &(String, String)) -> ArchivedMessage {
    ArchivedMessage {
        id,
        with: with.clone(),
        xml: xml.clone(),
    }
}

impl Archive for MemoryStore {
    fn archive_append(&self, account: &str, with: &str, xml: &str, at_micros: u64) -> Result<u64> {
        super::sled_store::require_account(account)?;
        let mut map = self.archive.lock()?;
        let acct = map.entry(account.to_string()).or_default();
        let id = match acct.messages.last_key_value() {
            Some((&last, _)) => at_micros.max(last.saturating_add(1)),
            None => at_micros,
        };
        acct.messages
            .insert(id, (with.to_string(), xml.to_string()));
        acct.by_with
            .entry(bare_of(with).to_string())
            .or_default()
            .insert(id);
        Ok(id)
    }

    fn archive_query(&self, account: &str, q: &ArchiveQuery) -> Result<ArchivePage> {
        let map = self.archive.lock()?;
        let (Some(acct), Some((lo, hi))) = (map.get(account), id_range(q)) else {
            return Ok(ArchivePage {
                items: Vec::new(),
                complete: true,
            });
        };
        match &q.with {
            Some(w) => {
                let Some(ids) = acct.by_with.get(bare_of(w)) else {
                    return Ok(ArchivePage {
                        items: Vec::new(),
                        complete: true,
                    });
                };
                let it = ids
                    .range(lo..=hi)
                    .filter_map(|id| acct.messages.get(id).map(|m| Ok(message(*id, m))));
                take_page(it, q)
            }
            None => take_page(
                acct.messages
                    .range(lo..=hi)
                    .map(|(id, m)| Ok(message(*id, m))),
                q,
            ),
        }
    }

    fn archive_get(&self, account: &str, id: u64) -> Result<Option<ArchivedMessage>> {
        let map = self.archive.lock()?;
        Ok(map
            .get(account)
            .and_then(|a| a.messages.get(&id))
            .map(|m| message(id, m)))
    }

    fn archive_replace(&self, account: &str, id: u64, xml: &str) -> Result<bool> {
        let mut map = self.archive.lock()?;
        match map.get_mut(account).and_then(|a| a.messages.get_mut(&id)) {
            Some(m) => {
                m.1 = xml.to_string();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn archive_bounds(&self, account: &str) -> Result<Option<(ArchivedMessage, ArchivedMessage)>> {
        let map = self.archive.lock()?;
        let Some(a) = map.get(account) else {
            return Ok(None);
        };
        match (a.messages.first_key_value(), a.messages.last_key_value()) {
            (Some((f, fm)), Some((l, lm))) => Ok(Some((message(*f, fm), message(*l, lm)))),
            _ => Ok(None),
        }
    }

    fn archive_delete_older_than(&self, cutoff_micros: u64) -> Result<usize> {
        let mut map = self.archive.lock()?;
        let mut removed = 0;
        for acct in map.values_mut() {
            let keep = acct.messages.split_off(&cutoff_micros);
            let old = std::mem::replace(&mut acct.messages, keep);
            removed += old.len();
            for (id, (with, _)) in old {
                if let Some(ids) = acct.by_with.get_mut(bare_of(&with)) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        acct.by_with.remove(bare_of(&with));
                    }
                }
            }
        }
        map.retain(|_, a| !a.messages.is_empty());
        Ok(removed)
    }

    fn archive_clear(&self, account: &str) -> Result<()> {
        self.archive.clear(account)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::archive::conformance(&super::MemoryStore::new());
    }
}
