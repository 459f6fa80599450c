//! Stored credentials: SCRAM salted keys per hash (RFC 5802 / RFC 7677), never the password.
//! PLAIN logins are verified by deriving the same keys from the offered password.

use serde::{Deserialize, Serialize};

/// The hash functions SCRAM is offered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScramHash {
    Sha1,
    Sha256,
    Sha512,
}

/// SCRAM keys for one hash: what RFC 5802 §3 calls StoredKey and ServerKey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// All credentials of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredentials {
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
    pub sha512: ScramKeys,
}

impl StoredCredentials {
    pub fn keys(&self, hash: ScramHash) -> &ScramKeys {
        match hash {
            ScramHash::Sha1 => &self.sha1,
            ScramHash::Sha256 => &self.sha256,
            ScramHash::Sha512 => &self.sha512,
        }
    }
}
// TEMPORARY STUB
pub const DEFAULT_ITERATIONS: u32 = 4096;
impl StoredCredentials {
    pub fn derive(_password: &str, _iterations: u32) -> StoredCredentials {
        todo!()
    }
    pub fn verify_password(&self, _password: &str) -> bool {
        todo!()
    }
}
