//! The embedded on-disk backend, on sled 0.34.
//!
//! # Keyspace
//!
//! Keys are byte strings built from UTF-8 components joined by a single `0x00` byte. NUL can
//! never occur in a JID or in XML, so it cannot be confused with data; every component that is
//! followed by a separator is checked for NUL anyway and refused with a [`StorageError`]. The
//! last component of a key may hold any bytes. Because `0x00` sorts below every other byte,
//! the byte order of keys that share a prefix is the string order of their next component,
//! and a prefix ending in the separator (`alice@example.org\0`) never matches a longer name
//! (`alice@example.org.uk\0`).
//!
//! | tree               | key                                   | value                                    |
//! |--------------------|---------------------------------------|------------------------------------------|
//! | default            | `schema_version`                      | [`SCHEMA_VERSION`], u32 big-endian       |
//! | `accounts`         | `domain 0 local`                      | [`StoredCredentials`], [`credentials_codec`] |
//! | `roster_items`     | `account 0 contact`                   | [`RosterItem`] as JSON                   |
//! | `roster_versions`  | `account`                             | roster version, u64 big-endian           |
//! | `offline`          | `account 0 seq`                       | the stanza, UTF-8 (seq: u64 big-endian)  |
//! | `items`            | `account 0 store 0 key`               | the XML document, UTF-8                  |
//! | `archive`          | `account 0 id`                        | `with_len u16 BE, with, xml` (XEP-0313)  |
//! | `archive_with`     | `account 0 bare_with 0 id`            | empty: the counterpart index             |
//!
//! `account` is the bare JID (`local@domain`). Accounts are keyed domain first so that
//! [`Storage::list_accounts`] is a prefix scan over one domain; everything else is keyed by
//! the account first so that deleting an account is one prefix scan per tree, whatever stores
//! modules invent. Offline keys end in a fixed-width big-endian sequence number, so a prefix
//! scan returns an account's queue in arrival order. Archive ids (u64 big-endian, microseconds,
//! see [`super::archive`]) make an account's archive one time-ordered range, and the
//! `archive_with` index makes a query for one counterpart a range scan of its messages only
//! (code in [`super::archive_sled`]).
//!
//! Offline sequence numbers and roster versions come from sled's ID generator, which is
//! monotonic across restarts (after a crash it skips ahead rather than repeat). Roster
//! versions are therefore never reused, even when an account is deleted and created again,
//! so a client holding a cached roster of the old account never sees it confirmed as current.
//!
//! # Consistency
//!
//! Every mutating method flushes (fsync) before it returns. A roster item and its roster
//! version change in one multi-tree transaction. Account creation, deletion and credential
//! changes are serialised by a lock. Deletion removes the credentials first and flushes, then
//! the rest: a crash in between leaves orphaned data of an account that no longer
//! authenticates, and [`Storage::create_account`] purges any such leftovers before it creates
//! the account again, so a new owner of the name never sees them.
//!
//! [`Storage::get_roster`] reads the version before the items: a concurrent change can make
//! the answer carry an older version with newer items (the client just refetches later),
//! never a newer version with older items.
//!
//! # Schema
//!
//! The `schema_version` key is written when a new database is created. Opening refuses a
//! database with a newer version (written by a newer build), an unreadable version, or data
//! without any version. Schema 1 stored credentials as JSON: opening a schema-1 database
//! rewrites every account's credentials in the compact form of [`credentials_codec`] (one
//! atomic batch, flushed), then records schema 2, so a build that only knows schema 1 refuses
//! the database instead of misreading it. Credentials in JSON are still read, should any be
//! left. Values are decoded defensively: a corrupt value is reported as a
//! [`StorageError`] naming the tree and key, never a panic.
//!
//! sled allows one process per database; a second open fails with a clear error.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Db, Tree};

use super::credentials_codec;
use super::{Result, Roster, RosterItem, Storage, StorageError, SCHEMA_VERSION};
use crate::auth::credentials::StoredCredentials;

/// Separator between key components.
const SEP: u8 = 0;

/// Key of the schema version in the default tree.
const SCHEMA_KEY: &[u8] = b"schema_version";

const TREE_ACCOUNTS: &str = "accounts";
const TREE_ROSTER_ITEMS: &str = "roster_items";
const TREE_ROSTER_VERSIONS: &str = "roster_versions";
const TREE_OFFLINE: &str = "offline";
const TREE_ITEMS: &str = "items";
const TREE_ARCHIVE: &str = "archive";
const TREE_ARCHIVE_WITH: &str = "archive_with";

/// How often, and how long apart, opening retries a database that is locked.
const LOCK_RETRIES: u32 = 20;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Refuse a key component that would be ambiguous before a separator.
pub(crate) fn check_component(what: &str, s: &str) -> Result<()> {
    if s.as_bytes().contains(&SEP) {
        return Err(StorageError(format!(
            "{what} contains a NUL character: {s:?}"
        )));
    }
    Ok(())
}

/// Split a bare account JID into (local, domain). `None` if it is not `local@domain`.
pub(crate) fn split_account(account: &str) -> Option<(&str, &str)> {
    let (local, domain) = account.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    Some((local, domain))
}

/// The checked account JID, for errors on create.
pub(crate) fn require_account(account: &str) -> Result<(&str, &str)> {
    check_component("account", account)?;
    split_account(account)
        .ok_or_else(|| StorageError(format!("not an account JID (local@domain): {account:?}")))
}

/// `domain 0 local`, or `None` for a string that cannot name an account.
fn account_key(account: &str) -> Option<Vec<u8>> {
    if account.as_bytes().contains(&SEP) {
        return None;
    }
    let (local, domain) = split_account(account)?;
    let mut k = Vec::with_capacity(account.len());
    k.extend_from_slice(domain.as_bytes());
    k.push(SEP);
    k.extend_from_slice(local.as_bytes());
    Some(k)
}

/// `account 0`: the prefix of everything the account owns in the per-account trees.
fn account_prefix(account: &str) -> Result<Vec<u8>> {
    check_component("account", account)?;
    let mut k = Vec::with_capacity(account.len() + 1);
    k.extend_from_slice(account.as_bytes());
    k.push(SEP);
    Ok(k)
}

fn roster_key(account: &str, contact: &str) -> Result<Vec<u8>> {
    let mut k = account_prefix(account)?;
    k.extend_from_slice(contact.as_bytes());
    Ok(k)
}

fn offline_key(account: &str, seq: u64) -> Result<Vec<u8>> {
    let mut k = account_prefix(account)?;
    k.extend_from_slice(&seq.to_be_bytes());
    Ok(k)
}

fn items_prefix(store: &str, account: &str) -> Result<Vec<u8>> {
    check_component("store name", store)?;
    let mut k = account_prefix(account)?;
    k.extend_from_slice(store.as_bytes());
    k.push(SEP);
    Ok(k)
}

fn item_key(store: &str, account: &str, key: &str) -> Result<Vec<u8>> {
    let mut k = items_prefix(store, account)?;
    k.extend_from_slice(key.as_bytes());
    Ok(k)
}

fn db_err(e: sled::Error) -> StorageError {
    StorageError(format!("sled: {e}"))
}

fn corrupt(tree: &str, key: &[u8], what: impl std::fmt::Display) -> StorageError {
    StorageError(format!(
        "corrupt value in tree {tree:?} at key {:?}: {what}",
        String::from_utf8_lossy(key)
    ))
}

fn decode_u64(tree: &str, key: &[u8], bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        corrupt(
            tree,
            key,
            format!("expected 8 bytes, found {}", bytes.len()),
        )
    })?;
    Ok(u64::from_be_bytes(arr))
}

fn decode_utf8(tree: &str, key: &[u8], bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| corrupt(tree, key, e))
}

fn encode_json<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StorageError(format!("cannot encode {what}: {e}")))
}

fn encode_credentials(creds: &StoredCredentials) -> Result<Vec<u8>> {
    credentials_codec::encode(creds)
        .map_err(|e| StorageError(format!("cannot encode credentials: {e}")))
}

fn decode_credentials(key: &[u8], bytes: &[u8]) -> Result<StoredCredentials> {
    credentials_codec::decode(bytes).map_err(|e| corrupt(TREE_ACCOUNTS, key, e))
}

fn decode_json<T: serde::de::DeserializeOwned>(tree: &str, key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(tree, key, e))
}

/// Map the result of a transaction whose closure aborts with a [`StorageError`].
fn tx_result<T>(r: std::result::Result<T, TransactionError<StorageError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => db_err(e),
    })
}

/// The sled backend. See the module documentation for the keyspace.
pub struct SledStore {
    db: Db,
    path: PathBuf,
    accounts: Tree,
    roster_items: Tree,
    roster_versions: Tree,
    offline: Tree,
    items: Tree,
    pub(super) archive: Tree,
    pub(super) archive_with: Tree,
    /// Serialises archive appends (the per-account id bump) and remembers each account's last
    /// archive id once it was looked up, so an append does not scan for it.
    pub(super) archive_lock: Mutex<std::collections::HashMap<Vec<u8>, u64>>,
    /// Serialises account creation, deletion and credential changes.
    account_lock: Mutex<()>,
    /// Accounts known to exist: the router asks [`Storage::account_exists`] for every stanza
    /// to a local account, and a sled lookup was most of that. Filled by lookups that found
    /// the account (under `account_lock`, so a deletion cannot slip between the lookup and
    /// the insertion), emptied by `delete_account` under the same lock; nothing else
    /// removes accounts. Only existing accounts are remembered.
    /// Looked up for every stanza routed to a local account: hashed with foldhash (seeded per
    /// process) rather than SipHash, which was ~1 % of a routed message's instructions.
    known_accounts: std::sync::RwLock<hashbrown::HashSet<String>>,
    /// Number of stored offline messages per account, for the accounts counted since they were
    /// last emptied: the quota check before every offline store would otherwise scan the
    /// account's whole queue. Held while an offline message is inserted, so a count and the
    /// tree never disagree; an entry is dropped when messages are removed (the next count
    /// scans again, once).
    offline_counts: Mutex<std::collections::HashMap<String, usize>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Open (or create) the database in directory `path`.
    pub fn open(path: &Path) -> Result<SledStore> {
        // sled's background I/O threads can hold the file lock for a moment after a database
        // in this process was closed, so a lock conflict is retried briefly before it is
        // reported.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) && attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                Err(e) if is_lock_error(&e) => {
                    return Err(StorageError(format!(
                        "database {} is locked by another process (is the server running?)",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(StorageError(format!(
                        "cannot open database {}: {e}",
                        path.display()
                    )));
                }
            }
        };
        let found = check_schema(&db, path)?;
        let tree = |name: &str| db.open_tree(name).map_err(db_err);
        let store = SledStore {
            accounts: tree(TREE_ACCOUNTS)?,
            roster_items: tree(TREE_ROSTER_ITEMS)?,
            roster_versions: tree(TREE_ROSTER_VERSIONS)?,
            offline: tree(TREE_OFFLINE)?,
            items: tree(TREE_ITEMS)?,
            archive: tree(TREE_ARCHIVE)?,
            archive_with: tree(TREE_ARCHIVE_WITH)?,
            archive_lock: Mutex::new(Default::default()),
            path: path.to_path_buf(),
            db,
            account_lock: Mutex::new(()),
            known_accounts: Default::default(),
            offline_counts: Mutex::new(Default::default()),
        };
        if found == SCHEMA_CREDENTIALS_JSON {
            store.migrate_credentials()?;
        }
        Ok(store)
    }

    /// Schema 1 → 2: rewrite every account's JSON credentials in the compact form, in one
    /// batch, flush, then record the new schema version (see the module documentation).
    fn migrate_credentials(&self) -> Result<()> {
        let mut batch = Batch::default();
        let mut rewritten = 0usize;
        for kv in self.accounts.iter() {
            let (key, value) = kv.map_err(db_err)?;
            if credentials_codec::is_json(&value) {
                let creds = decode_credentials(&key, &value)?;
                batch.insert(key, encode_credentials(&creds)?);
                rewritten += 1;
            }
        }
        self.accounts.apply_batch(batch).map_err(db_err)?;
        self.flush_db()?;
        self.db
            .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
            .map_err(db_err)?;
        self.flush_db()?;
        tracing::info!(
            accounts = rewritten,
            "storage schema 1 -> {SCHEMA_VERSION}: credentials stored compactly"
        );
        Ok(())
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_accounts(&self) -> Result<MutexGuard<'_, ()>> {
        self.account_lock
            .lock()
            .map_err(|_| StorageError("account lock poisoned".into()))
    }

    fn lock_offline_counts(
        &self,
    ) -> Result<MutexGuard<'_, std::collections::HashMap<String, usize>>> {
        self.offline_counts
            .lock()
            .map_err(|_| StorageError("offline count lock poisoned".into()))
    }

    /// Make every write so far durable (sled's flush: write the log and fsync it).
    ///
    /// The fsync takes milliseconds. On tokio's multi-threaded runtime the call tells the
    /// runtime first (`block_in_place`), so the worker's other sessions move to another thread
    /// instead of waiting behind the disk; concurrent callers then wait on the same log
    /// position and share one fsync (sled's flush is a group commit). Elsewhere (the command
    /// line tools, current-thread runtimes in tests) it simply blocks.
    fn flush_db(&self) -> Result<()> {
        let flush = || self.db.flush().map(|_| ()).map_err(db_err);
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(flush),
            _ => flush(),
        }
    }

    /// Remove every key under `prefix` in `tree`, as one batch.
    fn remove_prefix(tree: &Tree, prefix: &[u8]) -> Result<()> {
        let mut batch = Batch::default();
        for key in tree.scan_prefix(prefix).keys() {
            batch.remove(key.map_err(db_err)?);
        }
        tree.apply_batch(batch).map_err(db_err)
    }

    /// Remove everything stored for `account` except its credentials. Does not flush.
    fn purge_account_data(&self, account: &str) -> Result<()> {
        let prefix = account_prefix(account)?;
        Self::remove_prefix(&self.roster_items, &prefix)?;
        self.roster_versions
            .remove(account.as_bytes())
            .map_err(db_err)?;
        {
            let mut counts = self.lock_offline_counts()?;
            Self::remove_prefix(&self.offline, &prefix)?;
            counts.remove(account);
        }
        Self::remove_prefix(&self.items, &prefix)?;
        self.purge_archive(account)?;
        Ok(())
    }

    fn read_version(&self, account: &str) -> Result<u64> {
        match self
            .roster_versions
            .get(account.as_bytes())
            .map_err(db_err)?
        {
            Some(v) => decode_u64(TREE_ROSTER_VERSIONS, account.as_bytes(), &v),
            None => Ok(0),
        }
    }

    /// Change (or remove, with `item: None`) one roster item and bump the version, atomically.
    /// Returns the resulting version; unchanged if removing an absent item.
    fn change_roster(
        &self,
        account: &str,
        contact: &str,
        item: Option<&RosterItem>,
    ) -> Result<u64> {
        let key = roster_key(account, contact)?;
        let value = item.map(|i| encode_json("roster item", i)).transpose()?;
        let vkey = account.as_bytes();
        let r = (&self.roster_items, &self.roster_versions).transaction(|(items, versions)| {
            let old = match versions.get(vkey)? {
                Some(v) => decode_u64(TREE_ROSTER_VERSIONS, vkey, &v)
                    .map_err(ConflictableTransactionError::Abort)?,
                None => 0,
            };
            match &value {
                Some(v) => {
                    items.insert(key.as_slice(), v.as_slice())?;
                }
                None => {
                    if items.remove(key.as_slice())?.is_none() {
                        return Ok((old, false));
                    }
                }
            }
            let id = items.generate_id()?;
            let new = old.max(id).saturating_add(1);
            versions.insert(vkey, &new.to_be_bytes())?;
            Ok((new, true))
        });
        let (version, changed) = tx_result(r)?;
        if changed {
            self.flush_db()?;
        }
        Ok(version)
    }
}

/// The schema that stored credentials as JSON; opened and migrated.
const SCHEMA_CREDENTIALS_JSON: u32 = 1;

/// Write the schema version into a new database, or check the one found. Returns the
/// version found (the current one for a new database).
fn check_schema(db: &Db, path: &Path) -> Result<u32> {
    match db.get(SCHEMA_KEY).map_err(db_err)? {
        Some(v) => {
            let arr: [u8; 4] = v.as_ref().try_into().map_err(|_| {
                StorageError(format!(
                    "database {} has an unreadable schema version ({} bytes); refusing to open it",
                    path.display(),
                    v.len()
                ))
            })?;
            let found = u32::from_be_bytes(arr);
            if found > SCHEMA_VERSION {
                return Err(StorageError(format!(
                    "database {} has schema version {found}, newer than this build \
                     supports ({SCHEMA_VERSION}); use a newer Oriole",
                    path.display()
                )));
            }
            if found != SCHEMA_VERSION && found != SCHEMA_CREDENTIALS_JSON {
                return Err(StorageError(format!(
                    "database {} has unknown schema version {found} (this build supports \
                     {SCHEMA_VERSION}); refusing to open it",
                    path.display()
                )));
            }
            Ok(found)
        }
        None => {
            // A new database holds only the (empty) default tree.
            let default_name: &[u8] = b"__sled__default";
            let foreign = db.tree_names().iter().any(|n| n.as_ref() != default_name);
            if foreign || !db.is_empty() {
                return Err(StorageError(format!(
                    "database {} holds data but no schema version; refusing to open it",
                    path.display()
                )));
            }
            db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                .map_err(db_err)?;
            db.flush().map_err(db_err)?;
            Ok(SCHEMA_VERSION)
        }
    }
}

impl Storage for SledStore {
    fn create_account(&self, account: &str, creds: &StoredCredentials) -> Result<bool> {
        require_account(account)?;
        let key = account_key(account)
            .ok_or_else(|| StorageError(format!("not an account JID: {account:?}")))?;
        let value = encode_credentials(creds)?;
        let _guard = self.lock_accounts()?;
        if self.accounts.contains_key(&key).map_err(db_err)? {
            return Ok(false);
        }
        // Leftovers of an interrupted deletion (or data written for a name that had no
        // account) must not be inherited by the new account.
        self.purge_account_data(account)?;
        self.accounts.insert(key, value).map_err(db_err)?;
        self.flush_db()?;
        Ok(true)
    }

    fn get_credentials(&self, account: &str) -> Result<Option<StoredCredentials>> {
        let Some(key) = account_key(account) else {
            return Ok(None);
        };
        match self.accounts.get(&key).map_err(db_err)? {
            Some(v) => decode_credentials(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn account_exists(&self, account: &str) -> Result<bool> {
        if self
            .known_accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(account)
        {
            return Ok(true);
        }
        let Some(key) = account_key(account) else {
            return Ok(false);
        };
        let _guard = self.lock_accounts()?;
        let exists = self.accounts.contains_key(&key).map_err(db_err)?;
        if exists {
            self.known_accounts
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(account.to_string());
        }
        Ok(exists)
    }

    fn set_credentials(&self, account: &str, creds: &StoredCredentials) -> Result<bool> {
        let Some(key) = account_key(account) else {
            return Ok(false);
        };
        let value = encode_credentials(creds)?;
        let _guard = self.lock_accounts()?;
        if !self.accounts.contains_key(&key).map_err(db_err)? {
            return Ok(false);
        }
        self.accounts.insert(key, value).map_err(db_err)?;
        self.flush_db()?;
        Ok(true)
    }

    fn delete_account(&self, account: &str) -> Result<bool> {
        let _guard = self.lock_accounts()?;
        self.known_accounts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account);
        let existed = match account_key(account) {
            Some(key) => self.accounts.remove(key).map_err(db_err)?.is_some(),
            None => false,
        };
        // Credentials go first and durably: from here on the account cannot log in, whatever
        // happens to the rest.
        self.flush_db()?;
        self.purge_account_data(account)?;
        self.flush_db()?;
        Ok(existed)
    }

    fn list_accounts(&self, domain: &str) -> Result<Vec<String>> {
        check_component("domain", domain)?;
        let mut prefix = domain.as_bytes().to_vec();
        prefix.push(SEP);
        let mut out = Vec::new();
        for key in self.accounts.scan_prefix(&prefix).keys() {
            let key = key.map_err(db_err)?;
            let local = decode_utf8(TREE_ACCOUNTS, &key, &key[prefix.len()..])?;
            out.push(format!("{local}@{domain}"));
        }
        out.sort();
        Ok(out)
    }

    fn get_roster(&self, account: &str) -> Result<Roster> {
        // Version first: see the module documentation.
        let version = self.read_version(account)?;
        let prefix = account_prefix(account)?;
        let mut roster = Roster {
            version,
            items: Default::default(),
        };
        for kv in self.roster_items.scan_prefix(&prefix) {
            let (key, value) = kv.map_err(db_err)?;
            let contact = decode_utf8(TREE_ROSTER_ITEMS, &key, &key[prefix.len()..])?;
            let item: RosterItem = decode_json(TREE_ROSTER_ITEMS, &key, &value)?;
            if item.jid != contact {
                return Err(corrupt(
                    TREE_ROSTER_ITEMS,
                    &key,
                    format!("item for {:?} stored under another key", item.jid),
                ));
            }
            roster.items.insert(contact, item);
        }
        Ok(roster)
    }

    fn put_roster_item(&self, account: &str, item: &RosterItem) -> Result<u64> {
        self.change_roster(account, &item.jid, Some(item))
    }

    fn remove_roster_item(&self, account: &str, contact: &str) -> Result<u64> {
        self.change_roster(account, contact, None)
    }

    fn push_offline(&self, account: &str, stanza_xml: &str) -> Result<u64> {
        // Validate the key before spending an ID.
        account_prefix(account)?;
        let seq = self.db.generate_id().map_err(db_err)?.saturating_add(1);
        {
            let mut counts = self.lock_offline_counts()?;
            self.offline
                .insert(offline_key(account, seq)?, stanza_xml.as_bytes())
                .map_err(db_err)?;
            if let Some(n) = counts.get_mut(account) {
                *n += 1;
            }
        }
        self.flush_db()?;
        Ok(seq)
    }

    fn list_offline(&self, account: &str) -> Result<Vec<(u64, String)>> {
        let prefix = account_prefix(account)?;
        let mut out = Vec::new();
        for kv in self.offline.scan_prefix(&prefix) {
            let (key, value) = kv.map_err(db_err)?;
            let seq = decode_u64(TREE_OFFLINE, &key, &key[prefix.len()..])?;
            out.push((seq, decode_utf8(TREE_OFFLINE, &key, &value)?));
        }
        Ok(out)
    }

    fn remove_offline(&self, account: &str, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for &seq in seqs {
            batch.remove(offline_key(account, seq)?);
        }
        {
            let mut counts = self.lock_offline_counts()?;
            self.offline.apply_batch(batch).map_err(db_err)?;
            counts.remove(account);
        }
        self.flush_db()
    }

    fn count_offline(&self, account: &str) -> Result<usize> {
        let prefix = account_prefix(account)?;
        let mut counts = self.lock_offline_counts()?;
        if let Some(&n) = counts.get(account) {
            return Ok(n);
        }
        let mut n = 0;
        for key in self.offline.scan_prefix(&prefix).keys() {
            key.map_err(db_err)?;
            n += 1;
        }
        counts.insert(account.to_string(), n);
        Ok(n)
    }

    fn get_item(&self, store: &str, account: &str, key: &str) -> Result<Option<String>> {
        let k = item_key(store, account, key)?;
        match self.items.get(&k).map_err(db_err)? {
            Some(v) => decode_utf8(TREE_ITEMS, &k, &v).map(Some),
            None => Ok(None),
        }
    }

    fn put_item(&self, store: &str, account: &str, key: &str, xml: &str) -> Result<()> {
        self.items
            .insert(item_key(store, account, key)?, xml.as_bytes())
            .map_err(db_err)?;
        self.flush_db()
    }

    fn delete_item(&self, store: &str, account: &str, key: &str) -> Result<bool> {
        let existed = self
            .items
            .remove(item_key(store, account, key)?)
            .map_err(db_err)?
            .is_some();
        if existed {
            self.flush_db()?;
        }
        Ok(existed)
    }

    fn list_items(&self, store: &str, account: &str) -> Result<Vec<(String, String)>> {
        let prefix = items_prefix(store, account)?;
        let mut out = Vec::new();
        for kv in self.items.scan_prefix(&prefix) {
            let (key, value) = kv.map_err(db_err)?;
            let k = decode_utf8(TREE_ITEMS, &key, &key[prefix.len()..])?;
            out.push((k, decode_utf8(TREE_ITEMS, &key, &value)?));
        }
        Ok(out)
    }

    fn flush(&self) -> Result<()> {
        self.flush_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::conformance::{conformance, creds, item};
    use crate::storage::stores;

    fn open(dir: &tempfile::TempDir) -> SledStore {
        SledStore::open(&dir.path().join("db")).expect("open")
    }

    #[test]
    fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        conformance(&open(&dir));
    }

    /// Stores from many tasks of the multi-threaded runtime at once (each flush leaves its
    /// worker with `block_in_place`): nothing panics, every message is kept, in order per
    /// sender, and the per-account count agrees.
    #[test]
    fn concurrent_stores_on_the_multi_threaded_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(open(&dir));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for sender in 0..8 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for n in 0..25 {
                        store
                            .push_offline("bob@example.org", &format!("<m s='{sender}' n='{n}'/>"))
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let stored = store.list_offline("bob@example.org").unwrap();
        assert_eq!(stored.len(), 200);
        for sender in 0..8 {
            let mine: Vec<String> = stored
                .iter()
                .map(|(_, xml)| xml.clone())
                .filter(|xml| xml.starts_with(&format!("<m s='{sender}' ")))
                .collect();
            let expected: Vec<String> = (0..25)
                .map(|n| format!("<m s='{sender}' n='{n}'/>"))
                .collect();
            assert_eq!(mine, expected);
        }
        assert_eq!(store.count_offline("bob@example.org").unwrap(), 200);
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = "alice@example.org";
        let (version, last_seq) = {
            let s = open(&dir);
            assert!(s.create_account(a, &creds(1)).unwrap());
            let mut romeo = item("romeo@montague.example");
            romeo.groups = vec!["Friends".into()];
            s.put_roster_item(a, &romeo).unwrap();
            let version = s
                .put_roster_item(a, &item("nurse@capulet.example"))
                .unwrap();
            s.push_offline(a, "<message><body>1</body></message>")
                .unwrap();
            let last_seq = s
                .push_offline(a, "<message><body>2</body></message>")
                .unwrap();
            s.put_item(stores::VCARD, a, "", "<vCard xmlns='vcard-temp'/>")
                .unwrap();
            (version, last_seq)
            // dropped: the database is closed
        };
        let s = open(&dir);
        assert_eq!(s.get_credentials(a).unwrap(), Some(creds(1)));
        assert_eq!(s.list_accounts("example.org").unwrap(), [a]);
        let r = s.get_roster(a).unwrap();
        assert_eq!(r.version, version);
        assert_eq!(r.items.len(), 2);
        assert_eq!(r.items["romeo@montague.example"].groups, ["Friends"]);
        let queue = s.list_offline(a).unwrap();
        assert_eq!(queue.len(), 2);
        assert_eq!(
            queue[1],
            (last_seq, "<message><body>2</body></message>".into())
        );
        assert_eq!(
            s.get_item(stores::VCARD, a, "").unwrap().as_deref(),
            Some("<vCard xmlns='vcard-temp'/>")
        );
        // Counters keep growing across restarts.
        assert!(s.push_offline(a, "<message/>").unwrap() > last_seq);
        assert!(s.put_roster_item(a, &item("x@y.example")).unwrap() > version);
    }

    #[test]
    fn second_open_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open(&dir);
        let err = SledStore::open(&dir.path().join("db")).unwrap_err();
        assert!(
            err.0
                .contains("locked by another process (is the server running?)"),
            "{err}"
        );
    }

    fn set_schema(dir: &tempfile::TempDir, value: &[u8]) {
        let s = open(dir);
        s.db.insert(SCHEMA_KEY, value).unwrap();
        s.db.flush().unwrap();
    }

    #[test]
    fn schema_version_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(&dir);
            let v = s.db.get(SCHEMA_KEY).unwrap().unwrap();
            assert_eq!(v.as_ref(), SCHEMA_VERSION.to_be_bytes());
        }
        // Reopening a current database works.
        drop(open(&dir));

        set_schema(&dir, &(SCHEMA_VERSION + 1).to_be_bytes());
        let err = SledStore::open(&dir.path().join("db")).unwrap_err();
        assert!(err.0.contains("newer than this build"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        set_schema(&dir, &0u32.to_be_bytes());
        let err = SledStore::open(&dir.path().join("db")).unwrap_err();
        assert!(err.0.contains("unknown schema version 0"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        set_schema(&dir, b"garbage");
        let err = SledStore::open(&dir.path().join("db")).unwrap_err();
        assert!(err.0.contains("unreadable schema version"), "{err}");
    }

    #[test]
    fn schema_1_json_credentials_are_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("alice@example.org", "bob@example.org");
        let alice = StoredCredentials::derive("alice-pw", 16);
        let json = serde_json::to_vec(&alice).unwrap();
        {
            // What schema 1 left: credentials as JSON, schema version 1.
            let s = open(&dir);
            s.create_account(a, &alice).unwrap();
            s.create_account(b, &creds(2)).unwrap();
            s.accounts
                .insert(account_key(a).unwrap(), json.as_slice())
                .unwrap();
            s.db.insert(SCHEMA_KEY, &1u32.to_be_bytes()).unwrap();
            s.db.flush().unwrap();
            // Read transparently even before the migration.
            assert_eq!(s.get_credentials(a).unwrap(), Some(alice.clone()));
        }
        let s = open(&dir);
        let v = s.db.get(SCHEMA_KEY).unwrap().unwrap();
        assert_eq!(v.as_ref(), SCHEMA_VERSION.to_be_bytes());
        let raw = s.accounts.get(account_key(a).unwrap()).unwrap().unwrap();
        assert_eq!(raw[0], credentials_codec::VERSION);
        assert!(
            raw.len() * 3 < json.len(),
            "{} vs {}",
            raw.len(),
            json.len()
        );
        let migrated = s.get_credentials(a).unwrap().unwrap();
        assert_eq!(migrated, alice);
        assert!(migrated.verify_password("alice-pw"));
        assert!(!migrated.verify_password("alice-pw "));
        assert_eq!(s.get_credentials(b).unwrap(), Some(creds(2)));
        drop(s);
        // Opening again finds schema 2 and nothing to do.
        assert_eq!(open(&dir).get_credentials(a).unwrap(), Some(alice));
    }

    #[test]
    fn data_without_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(&dir);
            s.create_account("a@b.example", &creds(1)).unwrap();
            s.db.remove(SCHEMA_KEY).unwrap();
            s.db.flush().unwrap();
        }
        let err = SledStore::open(&dir.path().join("db")).unwrap_err();
        assert!(err.0.contains("no schema version"), "{err}");
    }

    #[test]
    fn corrupt_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir);
        let a = "alice@example.org";
        s.create_account(a, &creds(1)).unwrap();
        s.put_roster_item(a, &item("romeo@montague.example"))
            .unwrap();
        s.push_offline(a, "<message/>").unwrap();

        // Credentials that are not JSON.
        s.accounts
            .insert(account_key(a).unwrap(), &b"{not json"[..])
            .unwrap();
        let err = s.get_credentials(a).unwrap_err();
        assert!(
            err.0.contains("corrupt value in tree \"accounts\""),
            "{err}"
        );
        // The listing does not read values, deleting still works.
        assert_eq!(s.list_accounts("example.org").unwrap(), [a]);

        // A roster item that is not a RosterItem, or filed under another contact.
        let key = roster_key(a, "romeo@montague.example").unwrap();
        s.roster_items.insert(&key, &b"[1,2]"[..]).unwrap();
        assert!(s.get_roster(a).is_err());
        let wrong = encode_json("item", &item("juliet@capulet.example")).unwrap();
        s.roster_items.insert(&key, wrong).unwrap();
        assert!(s.get_roster(a).unwrap_err().0.contains("another key"));
        s.roster_items.remove(&key).unwrap();

        // A roster version of the wrong width: reading and bumping both fail cleanly.
        s.roster_versions.insert(a, &b"abc"[..]).unwrap();
        assert!(s.get_roster(a).is_err());
        assert!(s.put_roster_item(a, &item("x@y.example")).is_err());
        assert!(s.remove_roster_item(a, "x@y.example").is_err());
        s.roster_versions.remove(a).unwrap();

        // Offline: a stanza that is not UTF-8, and a key without a proper sequence number.
        let seq_key = offline_key(a, 77).unwrap();
        s.offline.insert(&seq_key, &[0xff, 0xfe][..]).unwrap();
        assert!(s.list_offline(a).is_err());
        s.offline.remove(&seq_key).unwrap();
        let mut short = account_prefix(a).unwrap();
        short.extend_from_slice(b"xyz");
        s.offline.insert(&short, &b"<message/>"[..]).unwrap();
        assert!(s.list_offline(a).is_err());
        assert_eq!(s.count_offline(a).unwrap(), 2);
        s.offline.remove(&short).unwrap();

        // Items that are not UTF-8, in the value or the key.
        let k = item_key(stores::VCARD, a, "").unwrap();
        s.items.insert(&k, &[0xc3][..]).unwrap();
        assert!(s.get_item(stores::VCARD, a, "").is_err());
        assert!(s.list_items(stores::VCARD, a).is_err());
        s.items.remove(&k).unwrap();
        let mut bad_key = items_prefix(stores::PRIVATE, a).unwrap();
        bad_key.push(0xff);
        s.items.insert(&bad_key, &b"<x/>"[..]).unwrap();
        assert!(s.list_items(stores::PRIVATE, a).is_err());

        // Deleting the account clears all of it, corrupt values included.
        assert!(s.delete_account(a).unwrap());
        assert_eq!(s.get_credentials(a).unwrap(), None);
        assert!(s.list_items(stores::PRIVATE, a).unwrap().is_empty());
        assert_eq!(s.count_offline(a).unwrap(), 0);
    }

    #[test]
    fn interrupted_delete_leaves_nothing_that_authenticates_or_leaks() {
        let dir = tempfile::tempdir().unwrap();
        let a = "alice@example.org";
        {
            let s = open(&dir);
            s.create_account(a, &creds(1)).unwrap();
            s.put_roster_item(a, &item("romeo@montague.example"))
                .unwrap();
            s.push_offline(a, "<message/>").unwrap();
            // What a crash after the first step of delete_account leaves behind.
            s.accounts.remove(account_key(a).unwrap()).unwrap();
            s.db.flush().unwrap();
        }
        let s = open(&dir);
        assert_eq!(s.get_credentials(a).unwrap(), None);
        assert!(s.create_account(a, &creds(2)).unwrap());
        assert!(s.get_roster(a).unwrap().items.is_empty());
        assert_eq!(s.count_offline(a).unwrap(), 0);
    }

    #[test]
    fn keyspace_layout() {
        assert_eq!(
            account_key("alice@example.org").unwrap(),
            b"example.org\0alice"
        );
        assert_eq!(account_key("example.org"), None);
        assert_eq!(
            item_key("private", "a@b", "{ns}x").unwrap(),
            b"a@b\0private\0{ns}x"
        );
        let k = offline_key("a@b", 258).unwrap();
        assert_eq!(k, b"a@b\0\0\0\0\0\0\0\x01\x02");
        assert!(roster_key("a\0@b", "c").is_err());
        assert!(item_key("st\0re", "a@b", "k").is_err());
        // The last component may contain anything.
        assert!(item_key("store", "a@b", "k\0k").is_ok());
    }
}
