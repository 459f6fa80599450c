//! Test-only fakes for module unit tests: a [`ServerApi`] that records what modules do, a
//! small in-memory [`Storage`] (until `storage::memory::MemoryStore` lands; methods no module
//! test needs are `unimplemented!()`), and helpers to build a [`ModuleContext`] and call
//! `handle_iq` with IQs built from [`Element`]s.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::auth::credentials::{ScramKeys, StoredCredentials};
use crate::config::Config;
use crate::jid::Jid;
use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext, ServerApi};
use crate::proto::{ns, Stanza};
use crate::storage::{self, Roster, RosterItem, Storage, StorageError};
use crate::xml::Element;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records routed stanzas and closed accounts.
#[derive(Default)]
pub struct FakeServer {
    pub routed: Mutex<Vec<Stanza>>,
    pub closed: Mutex<Vec<Jid>>,
    /// Available resources and their presence, as a test sets them.
    pub available: Mutex<Vec<(Jid, Element)>>,
    /// Events modules emitted (debug form).
    pub events: Mutex<Vec<String>>,
}

impl ServerApi for FakeServer {
    fn route(&self, stanza: Stanza) {
        lock(&self.routed).push(stanza);
    }
    fn sessions_of(&self, _bare: &Jid) -> Vec<Jid> {
        Vec::new()
    }
    fn close_account_sessions(&self, bare: &Jid) {
        lock(&self.closed).push(bare.clone());
    }
    fn available_resources(&self, bare: &Jid) -> Vec<(Jid, Element)> {
        lock(&self.available)
            .iter()
            .filter(|(j, _)| j.to_bare() == *bare)
            .cloned()
            .collect()
    }
    fn emit(&self, event: &crate::modules::ModuleEvent<'_>) {
        lock(&self.events).push(format!("{event:?}"));
    }
}

/// Just enough storage for the modules' tests.
#[derive(Default)]
pub struct FakeStore {
    pub accounts: Mutex<HashMap<String, StoredCredentials>>,
    pub rosters: Mutex<HashMap<String, Roster>>,
    /// (store, account, key) -> xml
    pub items: Mutex<BTreeMap<(String, String, String), String>>,
}

impl FakeStore {
    pub fn item(&self, store: &str, account: &str, key: &str) -> Option<String> {
        lock(&self.items)
            .get(&(store.into(), account.into(), key.into()))
            .cloned()
    }
}

impl crate::storage::archive::Archive for FakeStore {}

impl Storage for FakeStore {
    fn create_account(&self, account: &str, creds: &StoredCredentials) -> storage::Result<bool> {
        let mut a = lock(&self.accounts);
        if a.contains_key(account) {
            return Ok(false);
        }
        a.insert(account.into(), creds.clone());
        Ok(true)
    }
    fn get_credentials(&self, account: &str) -> storage::Result<Option<StoredCredentials>> {
        Ok(lock(&self.accounts).get(account).cloned())
    }
    fn set_credentials(&self, account: &str, creds: &StoredCredentials) -> storage::Result<bool> {
        match lock(&self.accounts).get_mut(account) {
            Some(c) => {
                *c = creds.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn delete_account(&self, account: &str) -> storage::Result<bool> {
        let existed = lock(&self.accounts).remove(account).is_some();
        lock(&self.rosters).remove(account);
        lock(&self.items).retain(|(_, a, _), _| a != account);
        Ok(existed)
    }
    fn list_accounts(&self, _domain: &str) -> storage::Result<Vec<String>> {
        unimplemented!()
    }
    fn get_roster(&self, account: &str) -> storage::Result<Roster> {
        Ok(lock(&self.rosters)
            .get(account)
            .cloned()
            .unwrap_or_default())
    }
    fn put_roster_item(&self, account: &str, item: &RosterItem) -> storage::Result<u64> {
        let mut r = lock(&self.rosters);
        let roster = r.entry(account.into()).or_default();
        roster.version += 1;
        roster.items.insert(item.jid.clone(), item.clone());
        Ok(roster.version)
    }
    fn remove_roster_item(&self, _account: &str, _contact: &str) -> storage::Result<u64> {
        unimplemented!()
    }
    fn push_offline(&self, _account: &str, _stanza_xml: &str) -> storage::Result<u64> {
        unimplemented!()
    }
    fn list_offline(&self, _account: &str) -> storage::Result<Vec<(u64, String)>> {
        unimplemented!()
    }
    fn remove_offline(&self, _account: &str, _seqs: &[u64]) -> storage::Result<()> {
        unimplemented!()
    }
    fn count_offline(&self, _account: &str) -> storage::Result<usize> {
        unimplemented!()
    }
    fn get_item(&self, store: &str, account: &str, key: &str) -> storage::Result<Option<String>> {
        Ok(self.item(store, account, key))
    }
    fn put_item(&self, store: &str, account: &str, key: &str, xml: &str) -> storage::Result<()> {
        lock(&self.items).insert((store.into(), account.into(), key.into()), xml.into());
        Ok(())
    }
    fn delete_item(&self, store: &str, account: &str, key: &str) -> storage::Result<bool> {
        Ok(lock(&self.items)
            .remove(&(store.into(), account.into(), key.into()))
            .is_some())
    }
    fn list_items(&self, store: &str, account: &str) -> storage::Result<Vec<(String, String)>> {
        Ok(lock(&self.items)
            .iter()
            .filter(|((s, a, _), _)| s == store && a == account)
            .map(|((_, _, k), v)| (k.clone(), v.clone()))
            .collect())
    }
    fn flush(&self) -> storage::Result<()> {
        Ok(())
    }
}

/// A storage whose every call fails, for internal-server-error paths.
pub struct BrokenStore;

impl crate::storage::archive::Archive for BrokenStore {}

impl Storage for BrokenStore {
    fn create_account(&self, _: &str, _: &StoredCredentials) -> storage::Result<bool> {
        Err(StorageError("broken".into()))
    }
    fn get_credentials(&self, _: &str) -> storage::Result<Option<StoredCredentials>> {
        Err(StorageError("broken".into()))
    }
    fn set_credentials(&self, _: &str, _: &StoredCredentials) -> storage::Result<bool> {
        Err(StorageError("broken".into()))
    }
    fn delete_account(&self, _: &str) -> storage::Result<bool> {
        Err(StorageError("broken".into()))
    }
    fn list_accounts(&self, _: &str) -> storage::Result<Vec<String>> {
        Err(StorageError("broken".into()))
    }
    fn get_roster(&self, _: &str) -> storage::Result<Roster> {
        Err(StorageError("broken".into()))
    }
    fn put_roster_item(&self, _: &str, _: &RosterItem) -> storage::Result<u64> {
        Err(StorageError("broken".into()))
    }
    fn remove_roster_item(&self, _: &str, _: &str) -> storage::Result<u64> {
        Err(StorageError("broken".into()))
    }
    fn push_offline(&self, _: &str, _: &str) -> storage::Result<u64> {
        Err(StorageError("broken".into()))
    }
    fn list_offline(&self, _: &str) -> storage::Result<Vec<(u64, String)>> {
        Err(StorageError("broken".into()))
    }
    fn remove_offline(&self, _: &str, _: &[u64]) -> storage::Result<()> {
        Err(StorageError("broken".into()))
    }
    fn count_offline(&self, _: &str) -> storage::Result<usize> {
        Err(StorageError("broken".into()))
    }
    fn get_item(&self, _: &str, _: &str, _: &str) -> storage::Result<Option<String>> {
        Err(StorageError("broken".into()))
    }
    fn put_item(&self, _: &str, _: &str, _: &str, _: &str) -> storage::Result<()> {
        Err(StorageError("broken".into()))
    }
    fn delete_item(&self, _: &str, _: &str, _: &str) -> storage::Result<bool> {
        Err(StorageError("broken".into()))
    }
    fn list_items(&self, _: &str, _: &str) -> storage::Result<Vec<(String, String)>> {
        Err(StorageError("broken".into()))
    }
    fn flush(&self) -> storage::Result<()> {
        Err(StorageError("broken".into()))
    }
}

/// Distinct, cheap credentials standing in for derived ones (`tag` ends up in the salt).
pub fn fake_credentials(tag: &str) -> StoredCredentials {
    let keys = ScramKeys {
        salt: tag.as_bytes().to_vec(),
        iterations: 1,
        stored_key: vec![1],
        server_key: vec![2],
    };
    StoredCredentials {
        sha1: keys.clone(),
        sha256: keys.clone(),
        sha512: keys,
    }
}

/// A context like the server builds: features collected from `services::all(config)`.
pub struct Harness {
    pub ctx: ModuleContext,
    pub server: Arc<FakeServer>,
    pub store: Arc<FakeStore>,
}

pub fn config() -> Config {
    let mut c = Config::default();
    c.server.domains = vec!["example.org".into(), "other.example".into()];
    c
}

pub fn harness(config: Config) -> Harness {
    let mods = crate::modules::services::all(&config);
    let collect = |f: &dyn Fn(&dyn Module) -> &'static [&'static str]| {
        let mut v: Vec<&'static str> = mods
            .iter()
            .flat_map(|m| f(m.as_ref()).iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        Arc::new(v)
    };
    let server_features = collect(&|m| m.server_features());
    let account_features = collect(&|m| m.account_features());
    let server = Arc::new(FakeServer::default());
    let store = Arc::new(FakeStore::default());
    let ctx = ModuleContext {
        config: Arc::new(config),
        storage: store.clone(),
        server: server.clone(),
        server_features,
        account_features,
    };
    Harness { ctx, server, store }
}

impl Harness {
    /// Create an account with fake credentials.
    pub fn add_account(&self, bare: &str) {
        lock(&self.store.accounts).insert(bare.into(), fake_credentials("initial"));
    }

    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.ctx.storage = storage;
        self
    }
}

pub fn jid(s: &str) -> Jid {
    Jid::parse(s).expect("test JID")
}

/// An IQ stanza as a client would send it (after the server stamped `from`).
pub fn iq(from: &str, to: Option<&str>, is_set: bool, payload: Element) -> Stanza {
    Stanza(
        Element::new("iq", ns::CLIENT)
            .with_attr("type", if is_set { "set" } else { "get" })
            .with_attr("id", "q1")
            .with_attr("from", from)
            .with_opt_attr("to", to)
            .with_child(payload),
    )
}

/// The target the dispatcher would compute for `to` (absent: the sender's own account).
pub fn target_of(from: &str, to: Option<&str>) -> IqTarget {
    match to {
        None => IqTarget::Account(jid(from).to_bare()),
        Some(t) => {
            let t = jid(t);
            if t.node().is_some() {
                IqTarget::Account(t.to_bare())
            } else {
                IqTarget::Server(t)
            }
        }
    }
}

/// Call `module.handle_iq` the way the dispatcher does.
pub fn call(
    module: &dyn Module,
    ctx: &ModuleContext,
    from: &str,
    to: Option<&str>,
    is_set: bool,
    payload: Element,
) -> IqResult {
    let stanza = iq(from, to, is_set, payload);
    let payload = stanza.iq_payload().expect("payload").clone();
    let req = IqRequest {
        stanza: &stanza,
        from: jid(from),
        target: target_of(from, to),
        payload: &payload,
        is_set,
    };
    module.handle_iq(ctx, &req)
}

/// The condition of an error result (panics on success: tests only).
pub fn condition(r: IqResult) -> &'static str {
    match r {
        Err(e) => e.condition,
        Ok(p) => panic!("expected an error, got {p:?}"),
    }
}
