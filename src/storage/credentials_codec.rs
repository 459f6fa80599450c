//! The stored form of an account's SCRAM credentials: a compact binary record with a version
//! marker. Schema 1 stored them as JSON (every key an array of numbers, ~1.2 KB an account,
//! which sled keeps in its page cache for every account that logged in); that form is still
//! read, and [`super::sled_store`] rewrites it when it opens a schema-1 database.
//!
//! Record version 1 (the first byte, [`VERSION`]), then for SHA-1, SHA-256 and SHA-512 in
//! that order: the iteration count (u32 big-endian), then the salt, the StoredKey and the
//! ServerKey, each as a length (u16 big-endian) and its bytes. 311 bytes with 16-byte salts.
//! A JSON record starts with `{` (possibly after whitespace), never with byte 1, so the first
//! byte tells the two apart.

use crate::auth::credentials::{ScramKeys, StoredCredentials};

/// The first byte of a binary credentials record.
pub const VERSION: u8 = 1;

/// Encode credentials as a version-1 record. Fails only for a salt or key longer than
/// 65,535 bytes (nothing Oriole derives; an import could carry one).
pub fn encode(creds: &StoredCredentials) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(1 + 3 * 10 + 2 * (20 + 32 + 64) + 3 * 16);
    out.push(VERSION);
    for keys in [&creds.sha1, &creds.sha256, &creds.sha512] {
        out.extend_from_slice(&keys.iterations.to_be_bytes());
        for field in [&keys.salt, &keys.stored_key, &keys.server_key] {
            let len = u16::try_from(field.len())
                .map_err(|_| format!("a SCRAM salt or key of {} bytes", field.len()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
    }
    Ok(out)
}

/// Whether a stored record is the JSON of schema 1.
pub fn is_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// Decode a stored record: a binary record, or the JSON of schema 1.
pub fn decode(bytes: &[u8]) -> Result<StoredCredentials, String> {
    if is_json(bytes) {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    }
    let mut r = Reader(bytes);
    match r.take(1)? {
        [VERSION] => {}
        [v] => return Err(format!("unknown credentials record version {v}")),
        _ => return Err("empty credentials record".into()),
    }
    let creds = StoredCredentials {
        sha1: r.keys()?,
        sha256: r.keys()?,
        sha512: r.keys()?,
    };
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the credentials record", r.0.len()));
    }
    Ok(creds)
}

/// The unread rest of a record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated credentials record".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<Vec<u8>, String> {
        let len = u16::from_be_bytes(self.array()?);
        Ok(self.take(usize::from(len))?.to_vec())
    }

    fn keys(&mut self) -> Result<ScramKeys, String> {
        Ok(ScramKeys {
            iterations: u32::from_be_bytes(self.array()?),
            salt: self.field()?,
            stored_key: self.field()?,
            server_key: self.field()?,
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredCredentials {
        StoredCredentials::derive("pencil", 8)
    }

    #[test]
    fn round_trip_and_size() {
        let c = sample();
        let bytes = encode(&c).unwrap();
        assert_eq!(bytes[0], VERSION);
        assert_eq!(bytes.len(), 311);
        assert!(!is_json(&bytes));
        assert_eq!(decode(&bytes).unwrap(), c);
        let json = serde_json::to_vec(&c).unwrap();
        assert!(json.len() > 3 * bytes.len(), "json {} bytes", json.len());
    }

    #[test]
    fn schema_1_json_is_still_read() {
        let c = sample();
        let json = serde_json::to_vec(&c).unwrap();
        assert!(is_json(&json));
        assert_eq!(decode(&json).unwrap(), c);
        let mut spaced = b"  \n".to_vec();
        spaced.extend_from_slice(&json);
        assert_eq!(decode(&spaced).unwrap(), c);
    }

    #[test]
    fn unusable_imported_keys_round_trip() {
        // XEP-0227 imports may lack a hash: empty keys, iteration count 0.
        let mut c = sample();
        c.sha512 = ScramKeys {
            salt: Vec::new(),
            iterations: 0,
            stored_key: Vec::new(),
            server_key: Vec::new(),
        };
        assert_eq!(decode(&encode(&c).unwrap()).unwrap(), c);
        c.sha1.salt = vec![7; 70_000];
        assert!(encode(&c).is_err());
    }

    #[test]
    fn damaged_records_are_errors() {
        let bytes = encode(&sample()).unwrap();
        for cut in [0, 1, 5, 100, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after"));
        let mut other = bytes;
        other[0] = 2;
        assert!(decode(&other).unwrap_err().contains("version 2"));
        assert!(decode(b"{not json").is_err());
    }
}
