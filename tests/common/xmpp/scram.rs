//! SASL client mechanisms for the test client: SCRAM (RFC 5802, RFC 7677) with SHA-1, SHA-256
//! and SHA-512, with or without channel binding, and PLAIN (RFC 4616).
//!
//! Written from the RFCs for the tests; it shares no code with the server. Passwords are used
//! as given (no SASLprep): the tests use ASCII passwords.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha512,
}

impl Hash {
    pub fn scram_name(self) -> &'static str {
        match self {
            Hash::Sha1 => "SCRAM-SHA-1",
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any size");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha1 => run::<Hmac<Sha1>>(key, data),
            Hash::Sha256 => run::<Hmac<Sha256>>(key, data),
            Hash::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    /// Hi() of RFC 5802: PBKDF2 with HMAC of this hash, one block.
    pub fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the client says about channel binding in the GS2 header (RFC 5802 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelBinding {
    /// "n": the client does not support channel binding.
    Unsupported,
    /// "y": the client supports it but thinks the server does not (no -PLUS offered).
    NotAdvertised,
    /// "p=<name>": the client binds to the channel with this type and data.
    Bound { name: String, data: Vec<u8> },
}

impl ChannelBinding {
    fn gs2_header(&self) -> String {
        match self {
            ChannelBinding::Unsupported => "n,,".into(),
            ChannelBinding::NotAdvertised => "y,,".into(),
            ChannelBinding::Bound { name, .. } => format!("p={name},,"),
        }
    }
}

/// One SCRAM exchange, client side.
#[derive(Debug)]
pub struct ScramClient {
    hash: Hash,
    username: String,
    password: String,
    cnonce: String,
    cb: ChannelBinding,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
    /// The iteration count the server asked for (for tests asserting a minimum).
    pub iterations: Option<u32>,
    /// The salt the server sent.
    pub salt: Option<Vec<u8>>,
    /// The server-first-message as received (for XEP-0474 checks).
    pub server_first: Option<String>,
}

/// `saslname` escaping of RFC 5802 §5.1.
pub fn escape_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    pub fn new(hash: Hash, username: &str, password: &str, cb: ChannelBinding) -> ScramClient {
        use rand::Rng;
        let raw: [u8; 18] = rand::thread_rng().gen();
        Self::with_nonce(hash, username, password, cb, &B64.encode(raw))
    }

    /// With a fixed client nonce (for the RFC test vectors).
    pub fn with_nonce(
        hash: Hash,
        username: &str,
        password: &str,
        cb: ChannelBinding,
        cnonce: &str,
    ) -> ScramClient {
        let client_first_bare = format!("n={},r={}", escape_saslname(username), cnonce);
        ScramClient {
            hash,
            username: username.to_string(),
            password: password.to_string(),
            cnonce: cnonce.to_string(),
            cb,
            client_first_bare,
            server_signature: None,
            iterations: None,
            salt: None,
            server_first: None,
        }
    }

    pub fn mechanism_name(&self) -> String {
        match self.cb {
            ChannelBinding::Bound { .. } => format!("{}-PLUS", self.hash.scram_name()),
            _ => self.hash.scram_name().to_string(),
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// client-first-message.
    pub fn client_first(&self) -> String {
        format!("{}{}", self.cb.gs2_header(), self.client_first_bare)
    }

    /// Takes server-first-message, returns client-final-message.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                nonce = Some(v.to_string());
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(B64.decode(v).map_err(|e| format!("bad salt: {e}"))?);
            } else if let Some(v) = part.strip_prefix("i=") {
                iterations = Some(
                    v.parse::<u32>()
                        .map_err(|e| format!("bad iteration count: {e}"))?,
                );
            } else if part.starts_with("m=") {
                return Err("server sent a mandatory extension (m=)".into());
            }
        }
        let nonce = nonce.ok_or("server-first without r=")?;
        let salt = salt.ok_or("server-first without s=")?;
        let iterations = iterations.ok_or("server-first without i=")?;
        if !nonce.starts_with(&self.cnonce) || nonce.len() <= self.cnonce.len() {
            return Err(format!(
                "server nonce {nonce:?} does not extend client nonce {:?}",
                self.cnonce
            ));
        }
        if iterations == 0 {
            return Err("iteration count 0".into());
        }
        self.iterations = Some(iterations);
        self.salt = Some(salt.clone());
        self.server_first = Some(server_first.to_string());

        let mut cbind_input = self.cb.gs2_header().into_bytes();
        if let ChannelBinding::Bound { data, .. } = &self.cb {
            cbind_input.extend_from_slice(data);
        }
        let without_proof = format!("c={},r={}", B64.encode(&cbind_input), nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, server_first, without_proof
        );

        let h = self.hash;
        let salted = h.hi(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let client_signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{},p={}", without_proof, B64.encode(proof)))
    }

    /// Checks server-final-message (`v=` must match; `e=` is a failure).
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), String> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(format!("server-error {e}"));
        }
        let v = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| format!("server-final without v=: {server_final:?}"))?;
        let v = B64.decode(v).map_err(|e| format!("bad v=: {e}"))?;
        let expected = self
            .server_signature
            .as_ref()
            .ok_or("server-final before client-final")?;
        if &v != expected {
            return Err("server signature mismatch: the server does not know the key".into());
        }
        Ok(())
    }
}

/// The PLAIN initial response: `authzid NUL authcid NUL password` with an empty authzid.
pub fn plain_initial(username: &str, password: &str) -> Vec<u8> {
    format!("\0{username}\0{password}").into_bytes()
}

pub fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

pub fn unb64(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    if t == "=" {
        return Ok(Vec::new());
    }
    B64.decode(t).map_err(|e| format!("bad base64 {t:?}: {e}"))
}
