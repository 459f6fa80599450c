//! Authentication: SASL server mechanisms as small pure state machines (no I/O, no async),
//! and the stored credentials they check against.
//!
//! Mechanisms: SCRAM-SHA-1, SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), each also
//! as a `-PLUS` variant with channel binding (`tls-exporter`, RFC 9266, and
//! `tls-server-end-point`, RFC 5929), and PLAIN (RFC 4616), which is only ever offered over
//! TLS.
//!
//! The connection code advertises [`offered_mechanisms`], creates a [`SaslServer`] for the
//! mechanism the client picks, feeds it the client's (base64-decoded) messages through
//! [`SaslServer::start`] and [`SaslServer::step`], and turns each [`SaslStep`] into a
//! `<challenge/>`, `<success/>` or `<failure/>`. The state machines look credentials up
//! through a callback and never log passwords or SASL payloads.
//!
//! Failure conditions (RFC 6120 §6.5), as used by both mechanisms:
//! - `invalid-mechanism`: the mechanism was not among those offered on this connection.
//! - `malformed-request`: a client message is longer than [`MAX_CLIENT_MESSAGE`], is not
//!   UTF-8, violates the mechanism's syntax (missing or misplaced attribute, bad `saslname`
//!   escape, unprintable nonce, a mandatory `m=` extension, a proof of the wrong length, a
//!   PLAIN message without exactly two NULs or with an empty authcid); a GS2 header that
//!   contradicts the mechanism (`n`/`y` with a `-PLUS` mechanism, `p=` without one); a
//!   channel binding type we did not announce; a message after the exchange ended.
//! - `incorrect-encoding`: the base64 inside a SCRAM message (`c=`, `p=`) does not decode.
//! - `not-authorized`: wrong password, unknown user, account without keys for this hash,
//!   channel binding data or nonce that does not match, an empty PLAIN password, and the
//!   downgrade case of RFC 5802 §6 (GS2 flag `y` while a `-PLUS` mechanism was offered).
//!
//! The caller adds the conditions that need context the mechanisms lack: `invalid-authzid`
//! (checking the returned authzid), `account-disabled`, `temporary-auth-failure` (storage
//! errors), `encryption-required`, `aborted`.

pub mod credentials;
mod crypto;
pub mod fast;
pub mod plain;
pub mod saslprep;
pub mod scram;

pub use credentials::{ScramHash, ScramKeys, StoredCredentials, DEFAULT_ITERATIONS};

/// The longest client message (after base64 decoding) the mechanisms accept, in bytes.
/// Anything longer fails with `malformed-request`.
pub const MAX_CLIENT_MESSAGE: usize = 4096;

/// Channel binding data of the current TLS connection, for the `-PLUS` mechanisms.
#[derive(Debug, Clone, Default)]
pub struct ChannelBindings {
    /// RFC 9266: the 32-byte TLS exporter value with label "EXPORTER-Channel-Binding" and an
    /// empty context. Only filled on TLS 1.3.
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 §4: the hash of the server's end-entity certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// The channel binding type name of RFC 9266.
    pub const TLS_EXPORTER: &'static str = "tls-exporter";
    /// The channel binding type name of RFC 5929.
    pub const TLS_SERVER_END_POINT: &'static str = "tls-server-end-point";

    /// XEP-0440 names of the types available, e.g. `["tls-exporter","tls-server-end-point"]`,
    /// strongest first.
    pub fn type_names(&self) -> Vec<&'static str> {
        let mut names = Vec::with_capacity(2);
        if self.tls_exporter.is_some() {
            names.push(Self::TLS_EXPORTER);
        }
        if self.tls_server_end_point.is_some() {
            names.push(Self::TLS_SERVER_END_POINT);
        }
        names
    }

    /// Whether any channel binding type is available.
    pub fn is_empty(&self) -> bool {
        self.tls_exporter.is_none() && self.tls_server_end_point.is_none()
    }

    /// The channel binding data for a type name, if we have that type.
    pub fn get(&self, type_name: &str) -> Option<&[u8]> {
        match type_name {
            Self::TLS_EXPORTER => self.tls_exporter.as_deref(),
            Self::TLS_SERVER_END_POINT => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }
}

/// The SASL mechanisms the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    ScramSha512,
    ScramSha512Plus,
    Plain,
}

impl Mechanism {
    /// All mechanisms, strongest first (the order [`offered_mechanisms`] uses).
    pub const ALL: [Mechanism; 7] = [
        Mechanism::ScramSha512Plus,
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha512,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA-registered mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::ScramSha512Plus => "SCRAM-SHA-512-PLUS",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism with this exact name (SASL mechanism names are upper case).
    pub fn from_name(s: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether this is a channel-binding (`-PLUS`) variant.
    pub fn is_plus(self) -> bool {
        matches!(
            self,
            Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus | Mechanism::ScramSha512Plus
        )
    }

    /// The hash of a SCRAM mechanism; `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            Mechanism::ScramSha512 | Mechanism::ScramSha512Plus => Some(ScramHash::Sha512),
            Mechanism::Plain => None,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Mechanisms to advertise, strongest first: -PLUS only when some channel binding is
/// available; PLAIN only when `tls` is true.
///
/// Channel binding data only exists on TLS, so `-PLUS` variants also require `tls`.
pub fn offered_mechanisms(tls: bool, cb: &ChannelBindings) -> Vec<Mechanism> {
    Mechanism::ALL
        .into_iter()
        .filter(|m| match m {
            Mechanism::Plain => tls,
            m if m.is_plus() => tls && !cb.is_empty(),
            _ => true,
        })
        .collect()
}

/// The SASL failure conditions of RFC 6120 §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslFailure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The element name of the condition inside `<failure/>`, e.g. "not-authorized".
    pub fn condition(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

impl std::fmt::Display for SaslFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition())
    }
}

/// What the server answers to one client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send `<challenge/>` with this data (base64-encoded by the caller; empty data is sent
    /// as "=").
    Challenge(Vec<u8>),
    /// Authentication succeeded for `username` (the authcid, unescaped and SASLprep-mapped,
    /// not yet normalised as a localpart). `authzid` is what the client asked to act as, if
    /// anything; the caller must check it. `additional_data` goes into `<success/>` (SCRAM's
    /// server-final message `v=…`).
    Success {
        username: String,
        authzid: Option<String>,
        additional_data: Option<Vec<u8>>,
    },
    /// Send `<failure/>` with this condition; the exchange is over.
    Failure(SaslFailure),
}

enum Inner {
    Scram(scram::ScramServer),
    Plain(plain::PlainServer),
    /// The mechanism was not offered on this connection.
    NotOffered,
}

/// One SASL exchange on the server side. Create one per `<auth/>`.
pub struct SaslServer {
    mechanism: Mechanism,
    inner: Inner,
}

impl std::fmt::Debug for SaslServer {
    // Deliberately shows no exchange state: it holds keys and client data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslServer")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl SaslServer {
    /// `offered` = the mechanisms that were advertised on this connection (for SCRAM
    /// downgrade detection: a client that says 'y' in the GS2 header while we offered a
    /// -PLUS variant must fail).
    ///
    /// A `mech` that is not in `offered` fails on [`SaslServer::start`] with
    /// `invalid-mechanism`, so PLAIN can never run where it was not offered (without TLS).
    pub fn new(mech: Mechanism, cb: ChannelBindings, offered: &[Mechanism]) -> SaslServer {
        let inner = if !offered.contains(&mech) {
            Inner::NotOffered
        } else {
            match mech.scram_hash() {
                Some(hash) => {
                    let server_supports_cb = offered.iter().any(|m| m.is_plus());
                    let advertised = ssdp_input(offered, &cb.type_names());
                    let mut scram =
                        scram::ScramServer::new(hash, mech.is_plus(), cb, server_supports_cb);
                    scram.set_downgrade_protection(Some(advertised));
                    Inner::Scram(scram)
                }
                None => Inner::Plain(plain::PlainServer::new()),
            }
        };
        SaslServer {
            mechanism: mech,
            inner,
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The client's initial response: `None` if the client sent none (then send an empty
    /// challenge), `Some(bytes)` already base64-decoded ("=" meaning empty is decoded by the
    /// caller to `Some(vec![])`).
    pub fn start(
        &mut self,
        initial: Option<&[u8]>,
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        match &mut self.inner {
            Inner::Scram(s) => s.start(initial, lookup),
            Inner::Plain(p) => p.start(initial, lookup),
            Inner::NotOffered => SaslStep::Failure(SaslFailure::InvalidMechanism),
        }
    }

    /// The client's response to a challenge, already base64-decoded.
    pub fn step(
        &mut self,
        response: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        match &mut self.inner {
            Inner::Scram(s) => s.step(response, lookup),
            Inner::Plain(p) => p.step(response, lookup),
            Inner::NotOffered => SaslStep::Failure(SaslFailure::InvalidMechanism),
        }
    }

    /// Test hook: leave XEP-0474 `h=` out of server-first (for the RFC test vectors).
    #[cfg(test)]
    pub(crate) fn without_downgrade_protection(&mut self) {
        if let Inner::Scram(s) = &mut self.inner {
            s.set_downgrade_protection(None);
        }
    }

    /// Test hook: use this server nonce instead of a random one (SCRAM only).
    #[cfg(test)]
    pub(crate) fn set_test_server_nonce(&mut self, nonce: &str) {
        if let Inner::Scram(s) = &mut self.inner {
            s.set_test_server_nonce(nonce);
        }
    }
}

/// XEP-0474 (SASL SCRAM Downgrade Protection, §"Server Sends Downgrade Protection Hash"):
/// the string whose hash the server sends as `h=` in SCRAM server-first. The advertised
/// mechanism names sorted by octets and joined by U+001E; then, when channel-binding types
/// were advertised (XEP-0440, `cb_types` not empty), U+001F and the sorted types joined by
/// U+001E. Legacy SASL and SASL2 advertise the same mechanisms here, so one list serves both.
pub fn ssdp_input(offered: &[Mechanism], cb_types: &[&str]) -> String {
    let mut mechs: Vec<&str> = offered.iter().map(|m| m.name()).collect();
    mechs.sort_unstable();
    let mut s = mechs.join("\u{1e}");
    if !cb_types.is_empty() {
        let mut types = cb_types.to_vec();
        types.sort_unstable();
        s.push('\u{1f}');
        s.push_str(&types.join("\u{1e}"));
    }
    s
}

/// Set the secret from which fake salts and keys for unknown users are derived, so that
/// they stay the same across restarts (otherwise a random secret is drawn once per process,
/// and a prober who watches a name's salt change after a restart learns that it does not
/// exist). Call once at startup, before the first exchange; returns `false` (and changes
/// nothing) if a secret is already in use.
pub fn set_unknown_user_secret(secret: [u8; 32]) -> bool {
    crypto::set_unknown_user_secret(secret)
}

/// Set the iteration count announced for unknown users (and used for the dummy PBKDF2 run
/// of PLAIN logins for them). Set it to the count new accounts get, so that unknown users
/// look like real ones; the default is [`DEFAULT_ITERATIONS`].
pub fn set_unknown_user_iterations(iterations: u32) {
    crypto::set_unknown_user_iterations(iterations)
}

#[cfg(test)]
mod tests;
