//! The SCRAM server mechanism (RFC 5802, with SHA-256 per RFC 7677 and SHA-512 alike),
//! with and without channel binding (`-PLUS`), as a pure state machine.
//!
//! Exchange, server side:
//! 1. client-first `gs2-header client-first-message-bare`, where the GS2 header is `n,,`
//!    (no channel binding), `y,,` (client could bind but thinks we cannot) or
//!    `p=<type>,,` (binding to `<type>`), each optionally with `a=<authzid>` between the
//!    commas; the bare part is `n=<user>,r=<client nonce>[,<extensions>]`.
//! 2. server-first `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`.
//! 3. client-final `c=<base64(gs2-header + channel binding data)>,r=<nonce>[,ext],p=<proof>`.
//! 4. server-final `v=<server signature>`, which XMPP carries in `<success/>`.
//!
//! Unknown users get a server-first with a stable fake salt (see
//! `crypto::unknown_user_keys`) and fail only at the end, exactly like a wrong password.
//! Secrets are compared in constant time. See the module documentation of
//! [`crate::auth`] for which failure condition is used when.

use subtle::{Choice, ConstantTimeEq};

use super::credentials::{ScramHash, ScramKeys, StoredCredentials};
use super::{crypto, saslprep, ChannelBindings, SaslFailure, SaslStep, MAX_CLIENT_MESSAGE};

/// One SCRAM exchange.
pub struct ScramServer {
    hash: ScramHash,
    plus: bool,
    cb: ChannelBindings,
    /// Some `-PLUS` mechanism was offered on this connection (for the `y` flag check).
    server_supports_cb: bool,
    state: State,
    /// XEP-0474: the advertised mechanisms and channel-binding types, as the string whose
    /// hash goes into server-first as `h=`; `None` sends no `h=`.
    downgrade_protection: Option<String>,
    #[cfg(test)]
    test_server_nonce: Option<String>,
}

enum State {
    /// Nothing received yet.
    Start,
    /// We sent an empty challenge and wait for the client-first message.
    AwaitClientFirst,
    /// We sent server-first and wait for client-final.
    AwaitClientFinal(Box<Pending>),
    /// Succeeded or failed; no more messages are accepted.
    Done,
}

/// What client-final is checked against.
struct Pending {
    username: String,
    authzid: Option<String>,
    /// The bytes `c=` must decode to: the GS2 header followed by the channel binding data.
    cbind_input: Vec<u8>,
    /// Client nonce followed by server nonce.
    nonce: String,
    /// `client-first-message-bare "," server-first-message ","`: the start of AuthMessage.
    auth_message_prefix: String,
    keys: ScramKeys,
    /// The user exists and has usable keys for this hash.
    known: bool,
}

impl std::fmt::Debug for ScramServer {
    // Deliberately shows no exchange data: it holds keys and client data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Start => "start",
            State::AwaitClientFirst => "await-client-first",
            State::AwaitClientFinal(_) => "await-client-final",
            State::Done => "done",
        };
        f.debug_struct("ScramServer")
            .field("hash", &self.hash)
            .field("plus", &self.plus)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// The result of parsing a client message: on error, the failure to report and a fixed
/// description for debug logs (never containing client data).
type Parsed<T> = Result<T, (SaslFailure, &'static str)>;

impl ScramServer {
    /// A SCRAM exchange with `hash`; `plus` for the channel-binding variant.
    /// `server_supports_cb` tells whether any `-PLUS` mechanism was offered.
    pub fn new(
        hash: ScramHash,
        plus: bool,
        cb: ChannelBindings,
        server_supports_cb: bool,
    ) -> ScramServer {
        ScramServer {
            hash,
            plus,
            cb,
            server_supports_cb,
            state: State::Start,
            downgrade_protection: None,
            #[cfg(test)]
            test_server_nonce: None,
        }
    }

    /// XEP-0474: add `h=` (the hash of `advertised`, see [`crate::auth::ssdp_input`]) to
    /// server-first. `None` leaves it out.
    pub fn set_downgrade_protection(&mut self, advertised: Option<String>) {
        self.downgrade_protection = advertised;
    }

    #[cfg(test)]
    pub(crate) fn set_test_server_nonce(&mut self, nonce: &str) {
        self.test_server_nonce = Some(nonce.to_owned());
    }

    fn mechanism_name(&self) -> &'static str {
        match (self.hash, self.plus) {
            (ScramHash::Sha1, false) => "SCRAM-SHA-1",
            (ScramHash::Sha1, true) => "SCRAM-SHA-1-PLUS",
            (ScramHash::Sha256, false) => "SCRAM-SHA-256",
            (ScramHash::Sha256, true) => "SCRAM-SHA-256-PLUS",
            (ScramHash::Sha512, false) => "SCRAM-SHA-512",
            (ScramHash::Sha512, true) => "SCRAM-SHA-512-PLUS",
        }
    }

    /// End the exchange with a failure. `reason` is a fixed description for debugging; it
    /// never contains client data.
    fn fail(&mut self, failure: SaslFailure, reason: &'static str) -> SaslStep {
        self.state = State::Done;
        tracing::debug!(
            mechanism = self.mechanism_name(),
            condition = failure.condition(),
            reason,
            "SASL failure"
        );
        SaslStep::Failure(failure)
    }

    /// The client's initial response (see [`crate::auth::SaslServer::start`]).
    pub fn start(
        &mut self,
        initial: Option<&[u8]>,
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        if !matches!(self.state, State::Start) {
            return self.fail(SaslFailure::MalformedRequest, "exchange already started");
        }
        match initial {
            None => {
                self.state = State::AwaitClientFirst;
                SaslStep::Challenge(Vec::new())
            }
            Some(msg) => self.client_first(msg, lookup),
        }
    }

    /// A response to our challenge (see [`crate::auth::SaslServer::step`]).
    pub fn step(
        &mut self,
        response: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitClientFirst => self.client_first(response, lookup),
            State::AwaitClientFinal(pending) => self.client_final(response, *pending),
            State::Start | State::Done => {
                self.fail(SaslFailure::MalformedRequest, "unexpected response")
            }
        }
    }

    fn client_first(
        &mut self,
        msg: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        let first = match self.parse_client_first(msg) {
            Ok(first) => first,
            Err((failure, reason)) => return self.fail(failure, reason),
        };

        let stored = lookup(&first.username);
        let (keys, known) = match stored {
            Some(creds) if creds.keys(self.hash).is_usable(self.hash) => {
                (creds.keys(self.hash).clone(), true)
            }
            _ => (crypto::unknown_user_keys(self.hash, &first.username), false),
        };

        #[cfg(test)]
        let server_nonce = self
            .test_server_nonce
            .clone()
            .unwrap_or_else(crypto::server_nonce);
        #[cfg(not(test))]
        let server_nonce = crypto::server_nonce();

        let nonce = format!("{}{}", first.client_nonce, server_nonce);
        let mut server_first = format!(
            "r={},s={},i={}",
            nonce,
            crypto::b64_encode(&keys.salt),
            keys.iterations
        );
        if let Some(advertised) = &self.downgrade_protection {
            // An optional attribute (RFC 5802 §5.1 extensions): part of AuthMessage, so the
            // client proof and the server signature both cover it.
            server_first.push_str(",h=");
            server_first.push_str(&crypto::b64_encode(&crypto::h(
                self.hash,
                advertised.as_bytes(),
            )));
        }
        let auth_message_prefix = format!("{},{},", first.bare, server_first);
        self.state = State::AwaitClientFinal(Box::new(Pending {
            username: first.username,
            authzid: first.authzid,
            cbind_input: first.cbind_input,
            nonce,
            auth_message_prefix,
            keys,
            known,
        }));
        SaslStep::Challenge(server_first.into_bytes())
    }

    fn parse_client_first(&self, msg: &[u8]) -> Parsed<ClientFirst> {
        use SaslFailure::{MalformedRequest as Malformed, NotAuthorized};
        let msg = message_str(msg)?;

        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let (flag, rest) = msg.split_once(',').ok_or((Malformed, "no GS2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or((Malformed, "incomplete GS2 header"))?;
        let gs2_header = &msg[..flag.len() + authzid.len() + 2];

        let cb_data: &[u8] = match flag {
            "n" if self.plus => return Err((Malformed, "flag n with a -PLUS mechanism")),
            "y" if self.plus => return Err((Malformed, "flag y with a -PLUS mechanism")),
            "n" => &[],
            "y" if self.server_supports_cb => {
                return Err((NotAuthorized, "flag y while channel binding was offered"))
            }
            "y" => &[],
            _ => {
                let cb_name = flag
                    .strip_prefix("p=")
                    .filter(|name| is_cb_name(name))
                    .ok_or((Malformed, "bad GS2 channel binding flag"))?;
                if !self.plus {
                    return Err((Malformed, "flag p without a -PLUS mechanism"));
                }
                self.cb
                    .get(cb_name)
                    .ok_or((Malformed, "unsupported channel binding type"))?
            }
        };

        let authzid = if authzid.is_empty() {
            None
        } else {
            let name = authzid
                .strip_prefix("a=")
                .ok_or((Malformed, "bad authzid attribute"))?;
            Some(saslprep::decode_saslname(name).ok_or((Malformed, "bad authzid"))?)
        };

        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(',');
        let user_attr = attrs.next().unwrap_or_default();
        if user_attr.starts_with("m=") {
            return Err((Malformed, "unsupported mandatory extension"));
        }
        let username = user_attr
            .strip_prefix("n=")
            .and_then(saslprep::decode_saslname)
            .and_then(|name| saslprep::prepare_username(&name))
            .ok_or((Malformed, "bad username"))?;
        let client_nonce = attrs
            .next()
            .and_then(|attr| attr.strip_prefix("r="))
            .filter(|nonce| is_nonce(nonce))
            .ok_or((Malformed, "bad client nonce"))?;
        if !attrs.all(is_extension) {
            return Err((Malformed, "bad extension attribute"));
        }

        let mut cbind_input = Vec::with_capacity(gs2_header.len() + cb_data.len());
        cbind_input.extend_from_slice(gs2_header.as_bytes());
        cbind_input.extend_from_slice(cb_data);
        Ok(ClientFirst {
            bare: bare.to_owned(),
            username,
            authzid,
            client_nonce: client_nonce.to_owned(),
            cbind_input,
        })
    }

    fn client_final(&mut self, msg: &[u8], pending: Pending) -> SaslStep {
        let parsed = match parse_client_final(msg, self.hash) {
            Ok(parsed) => parsed,
            Err((failure, reason)) => return self.fail(failure, reason),
        };

        // Every check runs, and they are combined without branching on secrets.
        let cb_ok = parsed.cbind_input.ct_eq(&pending.cbind_input);
        let nonce_ok = parsed.nonce.as_bytes().ct_eq(pending.nonce.as_bytes());

        let mut auth_message = pending.auth_message_prefix;
        auth_message.push_str(&parsed.without_proof);
        let keys = &pending.keys;
        let client_signature = crypto::hmac(self.hash, &keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = parsed
            .proof
            .iter()
            .zip(client_signature.iter())
            .map(|(p, s)| p ^ s)
            .collect();
        let proof_ok = crypto::h(self.hash, &client_key).ct_eq(&keys.stored_key);
        let server_signature = crypto::hmac(self.hash, &keys.server_key, auth_message.as_bytes());

        let ok = cb_ok & nonce_ok & proof_ok & Choice::from(u8::from(pending.known));
        if !bool::from(ok) {
            let reason = if !bool::from(cb_ok) {
                "channel binding mismatch"
            } else if !bool::from(nonce_ok) {
                "nonce mismatch"
            } else {
                "invalid proof or unknown user"
            };
            return self.fail(SaslFailure::NotAuthorized, reason);
        }

        self.state = State::Done;
        let mut server_final = b"v=".to_vec();
        server_final.extend_from_slice(crypto::b64_encode(&server_signature).as_bytes());
        SaslStep::Success {
            username: pending.username,
            authzid: pending.authzid,
            additional_data: Some(server_final),
        }
    }
}

/// The parts of client-first kept for the rest of the exchange.
struct ClientFirst {
    bare: String,
    username: String,
    authzid: Option<String>,
    client_nonce: String,
    cbind_input: Vec<u8>,
}

/// The parts of client-final that are checked.
struct ClientFinal {
    without_proof: String,
    cbind_input: Vec<u8>,
    nonce: String,
    proof: Vec<u8>,
}

fn parse_client_final(msg: &[u8], hash: ScramHash) -> Parsed<ClientFinal> {
    use SaslFailure::{IncorrectEncoding, MalformedRequest as Malformed};
    let msg = message_str(msg)?;

    // client-final-message = client-final-message-without-proof "," proof; base64 has no ','
    // so the proof is after the last one.
    let (without_proof, proof) = msg.rsplit_once(',').ok_or((Malformed, "no proof"))?;
    let proof = proof
        .strip_prefix("p=")
        .ok_or((Malformed, "proof is not last"))?;
    let mut attrs = without_proof.split(',');
    let cbind = attrs
        .next()
        .and_then(|attr| attr.strip_prefix("c="))
        .ok_or((Malformed, "no channel binding attribute"))?;
    let nonce = attrs
        .next()
        .and_then(|attr| attr.strip_prefix("r="))
        .filter(|nonce| is_nonce(nonce))
        .ok_or((Malformed, "bad nonce attribute"))?;
    if !attrs.all(is_extension) {
        return Err((Malformed, "bad extension attribute"));
    }

    let cbind_input = crypto::b64_decode(cbind).ok_or((IncorrectEncoding, "bad base64 in c="))?;
    let proof = crypto::b64_decode(proof).ok_or((IncorrectEncoding, "bad base64 in p="))?;
    if proof.len() != hash.output_len() {
        return Err((Malformed, "proof has the wrong length"));
    }
    Ok(ClientFinal {
        without_proof: without_proof.to_owned(),
        cbind_input,
        nonce: nonce.to_owned(),
        proof,
    })
}

/// The size and encoding checks every client message gets.
fn message_str(msg: &[u8]) -> Parsed<&str> {
    if msg.len() > MAX_CLIENT_MESSAGE {
        return Err((SaslFailure::MalformedRequest, "message too long"));
    }
    std::str::from_utf8(msg).map_err(|_| (SaslFailure::MalformedRequest, "message is not UTF-8"))
}

/// `cb-name = 1*(ALPHA / DIGIT / "." / "-")`
fn is_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// `c-nonce = printable`: one or more of %x21-2B / %x2D-7E.
fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// `attr-val = ALPHA "=" value` with a non-empty value without NUL (',' was split on).
fn is_extension(attr: &str) -> bool {
    let mut bytes = attr.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.next() == Some(b'=')
        && attr.len() > 2
        && !attr.contains('\0')
}
