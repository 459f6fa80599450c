//! In-memory backend, for tests: every map behind one mutex, nothing survives the process.
//!
//! It behaves like [`super::sled_store::SledStore`] in everything the [`Storage`] trait
//! promises (the shared conformance suite runs against both): the same account JID
//! validation, offline sequence numbers and roster versions from one store-wide counter (so
//! they never repeat, even after an account is deleted and created again), and
//! `create_account` discarding data left under a name that had no account.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::sled_store::{check_component, require_account, split_account};
use super::{Result, Roster, RosterItem, Storage, StorageError};
use crate::auth::credentials::StoredCredentials;

#[derive(Default)]
struct Inner {
    accounts: HashMap<String, StoredCredentials>,
    rosters: HashMap<String, Roster>,
    offline: HashMap<String, BTreeMap<u64, String>>,
    /// account → store → key → xml
    items: HashMap<String, HashMap<String, BTreeMap<String, String>>>,
    /// Last value handed out as an offline sequence number or roster version.
    counter: u64,
}

impl Inner {
    fn next_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn purge(&mut self, account: &str) {
        self.rosters.remove(account);
        self.offline.remove(account);
        self.items.remove(account);
    }
}

/// The in-memory backend.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Message archives (XEP-0313), in [`super::archive_memory`].
    pub(super) archive: super::archive_memory::MemoryArchive,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| StorageError("memory store lock poisoned".into()))
    }
}

/// The same checks the sled backend applies to its key components.
fn check_account(account: &str) -> Result<()> {
    check_component("account", account)
}

fn check_store(store: &str, account: &str) -> Result<()> {
    check_component("store name", store)?;
    check_account(account)
}

impl Storage for MemoryStore {
    fn create_account(&self, account: &str, creds: &StoredCredentials) -> Result<bool> {
        require_account(account)?;
        let mut inner = self.lock()?;
        if inner.accounts.contains_key(account) {
            return Ok(false);
        }
        inner.purge(account);
        self.archive.clear(account)?;
        inner.accounts.insert(account.to_string(), creds.clone());
        Ok(true)
    }

    fn get_credentials(&self, account: &str) -> Result<Option<StoredCredentials>> {
        Ok(self.lock()?.accounts.get(account).cloned())
    }

    fn account_exists(&self, account: &str) -> Result<bool> {
        Ok(self.lock()?.accounts.contains_key(account))
    }

    fn set_credentials(&self, account: &str, creds: &StoredCredentials) -> Result<bool> {
        let mut inner = self.lock()?;
        match inner.accounts.get_mut(account) {
            Some(slot) => {
                *slot = creds.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn delete_account(&self, account: &str) -> Result<bool> {
        check_account(account)?;
        let mut inner = self.lock()?;
        let existed = inner.accounts.remove(account).is_some();
        inner.purge(account);
        self.archive.clear(account)?;
        Ok(existed)
    }

    fn list_accounts(&self, domain: &str) -> Result<Vec<String>> {
        check_component("domain", domain)?;
        let inner = self.lock()?;
        let mut out: Vec<String> = inner
            .accounts
            .keys()
            .filter(|a| split_account(a).is_some_and(|(_, d)| d == domain))
            .cloned()
            .collect();
        out.sort();
        Ok(out)
    }

    fn get_roster(&self, account: &str) -> Result<Roster> {
        check_account(account)?;
        Ok(self
            .lock()?
            .rosters
            .get(account)
            .cloned()
            .unwrap_or_default())
    }

    fn put_roster_item(&self, account: &str, item: &RosterItem) -> Result<u64> {
        check_account(account)?;
        let mut inner = self.lock()?;
        let id = inner.next_id();
        let roster = inner.rosters.entry(account.to_string()).or_default();
        roster.items.insert(item.jid.clone(), item.clone());
        roster.version = roster.version.max(id - 1) + 1;
        Ok(roster.version)
    }

    fn remove_roster_item(&self, account: &str, contact: &str) -> Result<u64> {
        check_account(account)?;
        let mut inner = self.lock()?;
        let present = inner
            .rosters
            .get(account)
            .is_some_and(|r| r.items.contains_key(contact));
        if !present {
            return Ok(inner.rosters.get(account).map_or(0, |r| r.version));
        }
        let id = inner.next_id();
        let Some(roster) = inner.rosters.get_mut(account) else {
            return Ok(0);
        };
        roster.items.remove(contact);
        roster.version = roster.version.max(id - 1) + 1;
        Ok(roster.version)
    }

    fn push_offline(&self, account: &str, stanza_xml: &str) -> Result<u64> {
        check_account(account)?;
        let mut inner = self.lock()?;
        let seq = inner.next_id();
        inner
            .offline
            .entry(account.to_string())
            .or_default()
            .insert(seq, stanza_xml.to_string());
        Ok(seq)
    }

    fn list_offline(&self, account: &str) -> Result<Vec<(u64, String)>> {
        check_account(account)?;
        Ok(self
            .lock()?
            .offline
            .get(account)
            .map(|q| q.iter().map(|(s, x)| (*s, x.clone())).collect())
            .unwrap_or_default())
    }

    fn remove_offline(&self, account: &str, seqs: &[u64]) -> Result<()> {
        check_account(account)?;
        let mut inner = self.lock()?;
        if let Some(q) = inner.offline.get_mut(account) {
            for s in seqs {
                q.remove(s);
            }
            if q.is_empty() {
                inner.offline.remove(account);
            }
        }
        Ok(())
    }

    fn count_offline(&self, account: &str) -> Result<usize> {
        check_account(account)?;
        Ok(self.lock()?.offline.get(account).map_or(0, |q| q.len()))
    }

    fn get_item(&self, store: &str, account: &str, key: &str) -> Result<Option<String>> {
        check_store(store, account)?;
        Ok(self
            .lock()?
            .items
            .get(account)
            .and_then(|s| s.get(store))
            .and_then(|m| m.get(key))
            .cloned())
    }

    fn put_item(&self, store: &str, account: &str, key: &str, xml: &str) -> Result<()> {
        check_store(store, account)?;
        self.lock()?
            .items
            .entry(account.to_string())
            .or_default()
            .entry(store.to_string())
            .or_default()
            .insert(key.to_string(), xml.to_string());
        Ok(())
    }

    fn delete_item(&self, store: &str, account: &str, key: &str) -> Result<bool> {
        check_store(store, account)?;
        let mut inner = self.lock()?;
        Ok(inner
            .items
            .get_mut(account)
            .and_then(|s| s.get_mut(store))
            .and_then(|m| m.remove(key))
            .is_some())
    }

    fn list_items(&self, store: &str, account: &str) -> Result<Vec<(String, String)>> {
        check_store(store, account)?;
        Ok(self
            .lock()?
            .items
            .get(account)
            .and_then(|s| s.get(store))
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "conformance.rs"]
pub(crate) mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        conformance::conformance(&MemoryStore::new());
    }
}
