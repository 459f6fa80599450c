//! Storage: the narrow trait every backend implements, and the data types it stores.
//!
//! Backends: [`sled_store::SledStore`] (the embedded default, on disk) and
//! [`memory::MemoryStore`] (for tests). [`xep0227`] moves all data between backends in the
//! XEP-0227 portable import/export format.
//!
//! The trait is synchronous: sled answers point lookups in microseconds, so they run inline
//! on the reactor; bulk work (export, import) runs in `spawn_blocking`. A networked backend
//! later would sit behind the same trait with its own thread pool.
//!
//! Durability rule: every method that changes data returns only after the change is durable
//! (the backend flushes before returning), because callers report success to clients.

pub mod archive;
mod archive_memory;
mod archive_sled;
pub mod credentials_codec;
pub mod memory;
pub mod sled_store;
pub mod xep0227;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::auth::credentials::StoredCredentials;

/// The data layout version this build writes. Stored under a schema key; a backend refuses to
/// open data with a newer version. 2: credentials in [`credentials_codec`]'s compact form
/// (schema 1 stored them as JSON; the sled backend migrates it when it opens it).
pub const SCHEMA_VERSION: u32 = 2;

/// A storage failure (I/O, corruption, a newer schema).
#[derive(Debug)]
pub struct StorageError(pub String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage error: {}", self.0)
    }
}

impl std::error::Error for StorageError {}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Subscription> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }
}

/// One roster item, with the server-side state RFC 6121 needs beyond what clients see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// The user asked to subscribe to the contact and no answer came yet (`ask='subscribe'`).
    pub ask_out: bool,
    /// The contact asked to subscribe to the user; the request is waiting for the user.
    pub pending_in: bool,
    /// The user pre-approved a subscription from the contact (RFC 6121 §3.4).
    pub approved: bool,
    pub groups: Vec<String>,
}

/// A user's roster: items by contact bare JID, and the roster version (XEP-0237).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Roster {
    pub version: u64,
    pub items: BTreeMap<String, RosterItem>,
}

/// The per-account keyed stores kept as XML strings.
pub mod stores {
    /// vcard-temp (XEP-0054): key "".
    pub const VCARD: &str = "vcard";
    /// Private XML storage (XEP-0049): key "{ns}name".
    pub const PRIVATE: &str = "private";
}

/// The storage backend contract. Accounts are identified by their bare JID string
/// (`user@domain`, already normalised).
pub trait Storage: archive::Archive + Send + Sync + 'static {
    // --- accounts ---
    /// Create an account; `Ok(false)` if it exists already.
    fn create_account(&self, account: &str, creds: &StoredCredentials) -> Result<bool>;
    fn get_credentials(&self, account: &str) -> Result<Option<StoredCredentials>>;
    /// Whether the account exists, without decoding its credentials (the router asks this
    /// for every stanza to a local account). Backends override the default with a key lookup.
    fn account_exists(&self, account: &str) -> Result<bool> {
        Ok(self.get_credentials(account)?.is_some())
    }
    /// Replace the credentials of an existing account; `Ok(false)` if there is none.
    fn set_credentials(&self, account: &str, creds: &StoredCredentials) -> Result<bool>;
    /// Delete an account and everything stored for it; `Ok(false)` if there was none.
    fn delete_account(&self, account: &str) -> Result<bool>;
    /// All accounts of a domain, sorted.
    fn list_accounts(&self, domain: &str) -> Result<Vec<String>>;

    // --- rosters ---
    fn get_roster(&self, account: &str) -> Result<Roster>;
    /// Insert or replace an item; returns the new roster version.
    fn put_roster_item(&self, account: &str, item: &RosterItem) -> Result<u64>;
    /// Remove an item; returns the new roster version (unchanged if there was none).
    fn remove_roster_item(&self, account: &str, contact: &str) -> Result<u64>;

    // --- offline messages (XEP-0160), in arrival order ---
    /// Append a stanza (serialised XML); returns its sequence number.
    fn push_offline(&self, account: &str, stanza_xml: &str) -> Result<u64>;
    /// All queued stanzas with their sequence numbers, oldest first.
    fn list_offline(&self, account: &str) -> Result<Vec<(u64, String)>>;
    /// Remove the given stanzas once they were delivered.
    fn remove_offline(&self, account: &str, seqs: &[u64]) -> Result<()>;
    fn count_offline(&self, account: &str) -> Result<usize>;

    // --- keyed per-account XML documents (vCard, private storage, …) ---
    fn get_item(&self, store: &str, account: &str, key: &str) -> Result<Option<String>>;
    fn put_item(&self, store: &str, account: &str, key: &str, xml: &str) -> Result<()>;
    fn delete_item(&self, store: &str, account: &str, key: &str) -> Result<bool>;
    /// All (key, xml) pairs of one store for an account, sorted by key.
    fn list_items(&self, store: &str, account: &str) -> Result<Vec<(String, String)>>;

    /// Make everything written so far durable.
    fn flush(&self) -> Result<()>;
}
