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

/// The PBKDF2 iteration count new credentials get unless configured otherwise: the minimum
/// RFC 7677 §4 recommends for SCRAM-SHA-256.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Length in bytes of the random salts [`StoredCredentials::derive`] draws.
pub const SALT_LEN: usize = 16;

impl ScramHash {
    /// All hashes, strongest first.
    pub const ALL: [ScramHash; 3] = [ScramHash::Sha512, ScramHash::Sha256, ScramHash::Sha1];

    /// Output length of the hash (and so of every SCRAM key and proof) in bytes.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
            ScramHash::Sha512 => 64,
        }
    }

    /// The hash's name as it appears in SCRAM mechanism names ("SHA-256").
    pub fn label(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SHA-1",
            ScramHash::Sha256 => "SHA-256",
            ScramHash::Sha512 => "SHA-512",
        }
    }
}

impl ScramKeys {
    /// Derive the keys for `hash` from a password, a salt and an iteration count
    /// (RFC 5802 §3): SaltedPassword = Hi(password, salt, i), ClientKey = HMAC(SaltedPassword,
    /// "Client Key"), StoredKey = H(ClientKey), ServerKey = HMAC(SaltedPassword, "Server Key").
    ///
    /// The password goes through the mapping steps of SASLprep first (see
    /// [`super::saslprep::prepare_password`]). An iteration count of 0 is raised to 1.
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        let iterations = iterations.max(1);
        let prepared = super::saslprep::prepare_password(password);
        let salted = super::crypto::hi(hash, prepared.as_bytes(), salt, iterations);
        let client_key = super::crypto::hmac(hash, &salted, b"Client Key");
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: super::crypto::h(hash, &client_key),
            server_key: super::crypto::hmac(hash, &salted, b"Server Key"),
        }
    }

    /// Whether these keys can authenticate anyone with `hash`: both keys have the hash's
    /// length and the iteration count is not 0. Credentials imported from elsewhere may lack
    /// some hashes (stored as empty keys); those behave like a wrong password.
    pub fn is_usable(&self, hash: ScramHash) -> bool {
        self.iterations > 0
            && self.stored_key.len() == hash.output_len()
            && self.server_key.len() == hash.output_len()
    }

    /// Check a plaintext password against these keys in constant time (with respect to the
    /// key contents). Unusable keys never match.
    pub fn verify_password(&self, hash: ScramHash, password: &str) -> bool {
        use subtle::ConstantTimeEq;
        if !self.is_usable(hash) {
            return false;
        }
        let derived = ScramKeys::derive(hash, password, &self.salt, self.iterations);
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }
}

impl StoredCredentials {
    /// Derive all three SCRAM key sets from a password with fresh random 16-byte salts.
    pub fn derive(password: &str, iterations: u32) -> StoredCredentials {
        let keys = |hash| {
            ScramKeys::derive(
                hash,
                password,
                &super::crypto::random_bytes(SALT_LEN),
                iterations,
            )
        };
        StoredCredentials {
            sha1: keys(ScramHash::Sha1),
            sha256: keys(ScramHash::Sha256),
            sha512: keys(ScramHash::Sha512),
        }
    }

    /// The hash PLAIN logins are checked with: SHA-256 when its keys are usable (a good
    /// balance of strength and PBKDF2 cost), else SHA-512, else SHA-1.
    pub fn plain_hash(&self) -> Option<ScramHash> {
        [ScramHash::Sha256, ScramHash::Sha512, ScramHash::Sha1]
            .into_iter()
            .find(|&hash| self.keys(hash).is_usable(hash))
    }

    /// Check a plaintext password (PLAIN) against the stored keys, constant-time.
    ///
    /// This costs one PBKDF2 run with the stored iteration count (of the hash
    /// [`Self::plain_hash`] picks).
    pub fn verify_password(&self, password: &str) -> bool {
        match self.plain_hash() {
            Some(hash) => self.keys(hash).verify_password(hash, password),
            None => false,
        }
    }
}
