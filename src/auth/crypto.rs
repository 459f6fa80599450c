//! Cryptographic building blocks shared by the SCRAM and PLAIN servers: the hash, HMAC and
//! PBKDF2 functions of RFC 5802 §2.2 for each [`ScramHash`], random nonces and salts, the
//! base64 flavours we speak, and the "unknown user" masking keys.
//!
//! Nothing here touches client input beyond hashing it, and nothing here panics.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::credentials::{ScramHash, ScramKeys, DEFAULT_ITERATIONS};

/// Base64 as we send it: the standard alphabet with padding (RFC 4648 §4).
pub(crate) fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Base64 decoding of client data: the standard alphabet; padding may be present or absent
/// (some clients strip it), but non-canonical trailing bits and any other byte are refused.
pub(crate) fn b64_decode(data: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(data).ok()
}

fn hmac_with<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails; should it ever, the empty result
    // can never match a stored key, so authentication fails closed.
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// `HMAC(key, str)` of RFC 5802 §2.2.
pub(crate) fn hmac(hash: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        ScramHash::Sha1 => hmac_with::<Hmac<Sha1>>(key, data),
        ScramHash::Sha256 => hmac_with::<Hmac<Sha256>>(key, data),
        ScramHash::Sha512 => hmac_with::<Hmac<Sha512>>(key, data),
    }
}

/// `H(str)` of RFC 5802 §2.2.
pub(crate) fn h(hash: ScramHash, data: &[u8]) -> Vec<u8> {
    match hash {
        ScramHash::Sha1 => Sha1::digest(data).to_vec(),
        ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        ScramHash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// `Hi(str, salt, i)` of RFC 5802 §2.2, which is PBKDF2 with HMAC as the PRF and an output
/// of one hash length. `iterations` of 0 is treated as 1.
pub(crate) fn hi(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let rounds = iterations.max(1);
    let mut out = vec![0u8; hash.output_len()];
    match hash {
        ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, rounds, &mut out),
        ScramHash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out),
        ScramHash::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out),
    }
    out
}

/// `len` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    OsRng.fill_bytes(&mut out);
    out
}

/// Number of random bytes in a server nonce (RFC 5802 asks for enough entropy; 24 bytes give
/// 192 bits and 32 printable base64 characters).
pub(crate) const NONCE_BYTES: usize = 24;

/// A fresh server nonce: random bytes as base64, which is printable and contains no ','.
pub(crate) fn server_nonce() -> String {
    b64_encode(&random_bytes(NONCE_BYTES))
}

static UNKNOWN_USER_SECRET: OnceLock<[u8; 32]> = OnceLock::new();
static UNKNOWN_USER_ITERATIONS: AtomicU32 = AtomicU32::new(DEFAULT_ITERATIONS);

/// See [`crate::auth::set_unknown_user_secret`].
pub(crate) fn set_unknown_user_secret(secret: [u8; 32]) -> bool {
    UNKNOWN_USER_SECRET.set(secret).is_ok()
}

/// See [`crate::auth::set_unknown_user_iterations`].
pub(crate) fn set_unknown_user_iterations(iterations: u32) {
    UNKNOWN_USER_ITERATIONS.store(iterations.max(1), Ordering::Relaxed);
}

pub(crate) fn unknown_user_secret() -> &'static [u8; 32] {
    UNKNOWN_USER_SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        secret
    })
}

/// Plausible, stable keys for an account that does not exist (or has no usable keys for this
/// hash): the salt and keys are HMACs of the username under the server secret, so repeated
/// probes for the same name see the same salt, and nothing distinguishes them from a real
/// account's. They never verify: callers also carry a "known" flag that is false for these.
pub(crate) fn unknown_user_keys(hash: ScramHash, username: &str) -> ScramKeys {
    let secret = unknown_user_secret();
    let derive = |label: &str, len: usize| {
        let mut input = Vec::with_capacity(label.len() + username.len() + 16);
        input.extend_from_slice(b"oriole-unknown-user\0");
        input.extend_from_slice(label.as_bytes());
        input.push(0);
        input.extend_from_slice(hash.label().as_bytes());
        input.push(0);
        input.extend_from_slice(username.as_bytes());
        let mut out = hmac(ScramHash::Sha512, secret, &input);
        out.truncate(len);
        out
    };
    ScramKeys {
        salt: derive("salt", super::credentials::SALT_LEN),
        iterations: UNKNOWN_USER_ITERATIONS.load(Ordering::Relaxed),
        stored_key: derive("stored-key", hash.output_len()),
        server_key: derive("server-key", hash.output_len()),
    }
}
