//! XEP-0484: Fast Authentication Streamlining Tokens (`urn:xmpp:fast:0`), pure logic: the
//! server side of the HT-* SASL mechanisms (draft-schmaus-kitten-sasl-ht) and the token
//! record kept per account and client (SASL2 user-agent id). No I/O: the connection code
//! loads and stores a [`TokenRecord`] through the storage trait's keyed per-account store
//! [`STORE`] (key: the user-agent id), so both backends keep it and deleting an account
//! deletes its tokens.
//!
//! # Tokens at rest
//! HT uses the token itself as its HMAC key, so a server cannot keep only a one-way hash of
//! a token and still verify it. Instead the record keeps, per token, a random 16-byte salt,
//! and the token is `base64url(HMAC-SHA-256(server secret, label ‖ account ‖ user-agent id ‖
//! salt))`, recomputed on each use. The database alone therefore holds no usable token
//! (the server secret lives in `<data_dir>/server.secret`), and a token is only valid for the
//! account and client it was issued to.
//!
//! # Slots, rotation, replay
//! Two slots per client (§"Server-side handling of multiple active tokens"): a new token goes
//! into `new`; a successful use of `new` moves it to `current` (dropping the older one), so a
//! client that missed the rotated token can still log in with the previous one. A token is
//! bound to the mechanism it was requested for. A `count` on `<fast/>` must be higher than any
//! count already processed for that token (the replay counter); the highest is stored.
//! Verification computes the HMAC for both slots and compares in constant time.

use std::time::Duration;

use subtle::ConstantTimeEq;

use super::credentials::ScramHash;
use super::{crypto, saslprep, ChannelBindings, SaslFailure, MAX_CLIENT_MESSAGE};
use crate::xml::Element;

/// `urn:xmpp:fast:0`.
pub const NS: &str = "urn:xmpp:fast:0";
/// The keyed per-account store holding token records (key: user-agent id).
pub const STORE: &str = "fast";
/// Longest user-agent id accepted for FAST (XEP-0388 asks for a UUID: 36 characters).
pub const MAX_CLIENT_ID: usize = 128;
/// Salt bytes per token.
const SALT_LEN: usize = 16;

/// The HT mechanisms offered (SHA-256 with each channel-binding type we can provide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HtMechanism {
    /// `HT-SHA-256-NONE`: no channel binding.
    Sha256None,
    /// `HT-SHA-256-ENDP`: tls-server-end-point (RFC 5929).
    Sha256Endp,
    /// `HT-SHA-256-EXPR`: tls-exporter (RFC 9266).
    Sha256Expr,
}

impl HtMechanism {
    pub const ALL: [HtMechanism; 3] = [
        HtMechanism::Sha256Expr,
        HtMechanism::Sha256Endp,
        HtMechanism::Sha256None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HtMechanism::Sha256None => "HT-SHA-256-NONE",
            HtMechanism::Sha256Endp => "HT-SHA-256-ENDP",
            HtMechanism::Sha256Expr => "HT-SHA-256-EXPR",
        }
    }

    pub fn from_name(s: &str) -> Option<HtMechanism> {
        HtMechanism::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The channel binding data this mechanism hashes in: empty for NONE, `None` when the
    /// connection lacks that binding type.
    pub fn cb_data(self, cb: &ChannelBindings) -> Option<&[u8]> {
        match self {
            HtMechanism::Sha256None => Some(&[]),
            HtMechanism::Sha256Endp => cb.tls_server_end_point.as_deref(),
            HtMechanism::Sha256Expr => cb.tls_exporter.as_deref(),
        }
    }

    /// The mechanisms usable on a connection with these bindings, strongest first.
    pub fn offered(cb: &ChannelBindings) -> Vec<HtMechanism> {
        HtMechanism::ALL
            .into_iter()
            .filter(|m| m.cb_data(cb).is_some())
            .collect()
    }
}

/// `HMAC(token, "Initiator" || cb-data)`: what the client proves it holds.
pub fn initiator_hash(token: &str, cb_data: &[u8]) -> Vec<u8> {
    let mut input = b"Initiator".to_vec();
    input.extend_from_slice(cb_data);
    crypto::hmac(ScramHash::Sha256, token.as_bytes(), &input)
}

/// `HMAC(token, "Responder" || cb-data)`: the server's proof, sent as additional data.
pub fn responder_hash(token: &str, cb_data: &[u8]) -> Vec<u8> {
    let mut input = b"Responder".to_vec();
    input.extend_from_slice(cb_data);
    crypto::hmac(ScramHash::Sha256, token.as_bytes(), &input)
}

/// Split an initiator message `authcid NUL initiator-hashed-token`; the username comes back
/// SASLprep-mapped. Failures: `malformed-request`.
pub fn parse_initiator(msg: &[u8]) -> Result<(String, Vec<u8>), SaslFailure> {
    if msg.len() > MAX_CLIENT_MESSAGE {
        return Err(SaslFailure::MalformedRequest);
    }
    let nul = msg
        .iter()
        .position(|b| *b == 0)
        .ok_or(SaslFailure::MalformedRequest)?;
    let (user, rest) = msg.split_at(nul);
    let hashed = &rest[1..];
    if user.is_empty() || hashed.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    let user = std::str::from_utf8(user).map_err(|_| SaslFailure::MalformedRequest)?;
    let user = saslprep::prepare_username(user).ok_or(SaslFailure::MalformedRequest)?;
    Ok((user, hashed.to_vec()))
}

/// Whether a user-agent id can key a token record.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// One issued token: what is needed to recompute and check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    salt: Vec<u8>,
    pub mechanism: HtMechanism,
    /// Seconds since the Unix epoch.
    pub expiry: u64,
    /// The highest replay counter processed for this token.
    pub count: Option<u64>,
}

impl Slot {
    /// The token string for this slot.
    pub fn token(&self, account: &str, client_id: &str) -> String {
        let mut input = b"oriole-fast-token\0".to_vec();
        input.extend_from_slice(account.as_bytes());
        input.push(0);
        input.extend_from_slice(client_id.as_bytes());
        input.push(0);
        input.extend_from_slice(&self.salt);
        let mac = crypto::hmac(ScramHash::Sha256, crypto::unknown_user_secret(), &input);
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
    }
}

/// Which slot a token matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Current,
    New,
}

/// The tokens of one client of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRecord {
    pub current: Option<Slot>,
    pub new: Option<Slot>,
}

/// One authentication attempt with a token.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub mechanism: HtMechanism,
    /// The client's `initiator-hashed-token`.
    pub hashed: &'a [u8],
    /// The channel binding data of the mechanism (empty for NONE).
    pub cb_data: &'a [u8],
    /// The `count` of `<fast/>`, if any.
    pub count: Option<u64>,
}

/// A successful token check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub which: Which,
    /// The server's answer (`<additional-data/>`).
    pub responder: Vec<u8>,
    pub expiry: u64,
}

impl TokenRecord {
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.new.is_none()
    }

    /// Check a client's hashed token (`hashed`) sent with `mech` on a connection with `cb`
    /// data, at `now` (Unix seconds). On success the record is updated (slot promotion,
    /// replay counter) and must be stored. Failures: `not-authorized` (no match, wrong
    /// mechanism, replayed count), `credentials-expired` (the token matched but expired).
    pub fn verify(
        &mut self,
        account: &str,
        client_id: &str,
        attempt: Attempt<'_>,
        now: u64,
    ) -> Result<Verified, SaslFailure> {
        let Attempt {
            mechanism: mech,
            hashed,
            cb_data,
            count,
        } = attempt;
        let mut matched = None;
        for (which, slot) in [(Which::New, &self.new), (Which::Current, &self.current)] {
            let Some(slot) = slot else { continue };
            let token = slot.token(account, client_id);
            let expected = initiator_hash(&token, cb_data);
            let same = bool::from(expected.ct_eq(hashed));
            if same && matched.is_none() {
                matched = Some((which, slot.clone(), token));
            }
        }
        let Some((which, mut slot, token)) = matched else {
            return Err(SaslFailure::NotAuthorized);
        };
        if slot.mechanism != mech {
            return Err(SaslFailure::NotAuthorized);
        }
        if slot.expiry <= now {
            return Err(SaslFailure::CredentialsExpired);
        }
        if let Some(c) = count {
            if slot.count.is_some_and(|seen| c <= seen) {
                return Err(SaslFailure::NotAuthorized);
            }
            slot.count = Some(c);
        }
        let expiry = slot.expiry;
        match which {
            Which::New => {
                self.current = Some(slot);
                self.new = None;
            }
            Which::Current => self.current = Some(slot),
        }
        Ok(Verified {
            which,
            responder: responder_hash(&token, cb_data),
            expiry,
        })
    }

    /// Issue a token for `mech` valid for `lifetime` from `now` into the `new` slot (an
    /// unused earlier new token is dropped); returns the slot (see [`Slot::token`]).
    pub fn issue(&mut self, mech: HtMechanism, lifetime: Duration, now: u64) -> Slot {
        let slot = Slot {
            salt: crypto::random_bytes(SALT_LEN),
            mechanism: mech,
            expiry: now.saturating_add(lifetime.as_secs()),
            count: None,
        };
        self.new = Some(slot.clone());
        slot
    }

    /// Forget the token that was just used (`invalidate='true'`).
    pub fn invalidate(&mut self, which: Which) {
        match which {
            Which::New => self.new = None,
            Which::Current => self.current = None,
        }
    }

    /// Drop expired tokens.
    pub fn prune(&mut self, now: u64) {
        if self.current.as_ref().is_some_and(|s| s.expiry <= now) {
            self.current = None;
        }
        if self.new.as_ref().is_some_and(|s| s.expiry <= now) {
            self.new = None;
        }
    }

    /// The stored form: `<fast xmlns='urn:xmpp:fast:0'><slot name=… …/></fast>`.
    pub fn to_xml(&self) -> String {
        let mut el = Element::new("fast", NS);
        for (name, slot) in [("current", &self.current), ("new", &self.new)] {
            if let Some(s) = slot {
                el.push_child(
                    Element::new("slot", NS)
                        .with_attr("name", name)
                        .with_attr("mechanism", s.mechanism.name())
                        .with_attr("salt", crypto::b64_encode(&s.salt))
                        .with_attr("expiry", s.expiry.to_string())
                        .with_opt_attr("count", s.count.map(|c| c.to_string())),
                );
            }
        }
        el.to_string()
    }

    /// Read the stored form; unreadable data gives `None` (the caller treats it as no token).
    pub fn from_xml(text: &str) -> Option<TokenRecord> {
        let el = crate::xml::parser::parse_element(text).ok()?;
        if !el.is("fast", NS) {
            return None;
        }
        let mut rec = TokenRecord::default();
        for s in el.elements().filter(|e| e.is("slot", NS)) {
            let slot = Slot {
                salt: crypto::b64_decode(s.attr("salt")?)?,
                mechanism: HtMechanism::from_name(s.attr("mechanism")?)?,
                expiry: s.attr("expiry")?.parse().ok()?,
                count: match s.attr("count") {
                    Some(c) => Some(c.parse().ok()?),
                    None => None,
                },
            };
            match s.attr("name")? {
                "current" => rec.current = Some(slot),
                "new" => rec.new = Some(slot),
                _ => return None,
            }
        }
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "alice@example.org";
    const ID: &str = "d4565fa7-4d72-4749-b3d3-740edbf87770";
    const DAY: Duration = Duration::from_secs(86_400);

    fn client_hash(slot: &Slot, cb: &[u8]) -> Vec<u8> {
        initiator_hash(&slot.token(A, ID), cb)
    }

    #[test]
    fn ht_hashes_follow_the_draft() {
        // HMAC-SHA-256 with the token as key over "Initiator"/"Responder" || cb-data,
        // checked against the RFC 4231 style construction done by hand with the hmac crate.
        use hmac::{Hmac, Mac};
        let mut m = <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(b"tok").unwrap();
        m.update(b"Initiatorcb");
        assert_eq!(
            initiator_hash("tok", b"cb"),
            m.finalize().into_bytes().to_vec()
        );
        assert_ne!(initiator_hash("tok", b"cb"), responder_hash("tok", b"cb"));
    }

    #[test]
    fn initiator_message_parsing() {
        assert_eq!(
            parse_initiator(b"alice\0\x01\x02").unwrap(),
            ("alice".to_string(), vec![1, 2])
        );
        for bad in [&b"alice"[..], b"\0x", b"alice\0", b"\xff\0x"] {
            assert_eq!(parse_initiator(bad), Err(SaslFailure::MalformedRequest));
        }
    }

    #[test]
    fn token_is_bound_to_account_client_and_mechanism() {
        let mut rec = TokenRecord::default();
        let slot = rec.issue(HtMechanism::Sha256None, DAY, 1000);
        let token = slot.token(A, ID);
        assert!(token.len() >= 43, "256 bits of HMAC output");
        assert_ne!(token, slot.token("bob@example.org", ID));
        assert_ne!(token, slot.token(A, "other"));
        let h = client_hash(&slot, b"");
        // The wrong mechanism fails even though the HMAC matches.
        let mut r2 = rec.clone();
        assert_eq!(
            r2.verify(
                A,
                ID,
                Attempt {
                    mechanism: HtMechanism::Sha256Endp,
                    hashed: &h,
                    cb_data: b"",
                    count: None
                },
                1001
            ),
            Err(SaslFailure::NotAuthorized)
        );
        let ok = rec
            .verify(
                A,
                ID,
                Attempt {
                    mechanism: HtMechanism::Sha256None,
                    hashed: &h,
                    cb_data: b"",
                    count: None,
                },
                1001,
            )
            .unwrap();
        assert_eq!(ok.which, Which::New);
        assert_eq!(ok.responder, responder_hash(&token, b""));
        assert!(rec.new.is_none() && rec.current.is_some(), "promoted");
        // A wrong hash fails.
        assert_eq!(
            rec.verify(
                A,
                ID,
                Attempt {
                    mechanism: HtMechanism::Sha256None,
                    hashed: &[0; 32],
                    cb_data: b"",
                    count: None
                },
                1002
            ),
            Err(SaslFailure::NotAuthorized)
        );
    }

    #[test]
    fn expiry_and_replay_counter() {
        let mut rec = TokenRecord::default();
        let slot = rec.issue(HtMechanism::Sha256None, Duration::from_secs(10), 100);
        let h = client_hash(&slot, b"");
        assert_eq!(
            rec.clone().verify(
                A,
                ID,
                Attempt {
                    mechanism: HtMechanism::Sha256None,
                    hashed: &h,
                    cb_data: b"",
                    count: None
                },
                110
            ),
            Err(SaslFailure::CredentialsExpired)
        );
        rec.verify(
            A,
            ID,
            Attempt {
                mechanism: HtMechanism::Sha256None,
                hashed: &h,
                cb_data: b"",
                count: Some(5),
            },
            101,
        )
        .unwrap();
        for replay in [5, 4] {
            assert_eq!(
                rec.verify(
                    A,
                    ID,
                    Attempt {
                        mechanism: HtMechanism::Sha256None,
                        hashed: &h,
                        cb_data: b"",
                        count: Some(replay)
                    },
                    102
                ),
                Err(SaslFailure::NotAuthorized)
            );
        }
        rec.verify(
            A,
            ID,
            Attempt {
                mechanism: HtMechanism::Sha256None,
                hashed: &h,
                cb_data: b"",
                count: Some(6),
            },
            102,
        )
        .unwrap();
    }

    #[test]
    fn rotation_keeps_the_old_token_until_the_new_one_is_used() {
        let mut rec = TokenRecord::default();
        let first = rec.issue(HtMechanism::Sha256None, DAY, 0);
        let h1 = client_hash(&first, b"");
        rec.verify(
            A,
            ID,
            Attempt {
                mechanism: HtMechanism::Sha256None,
                hashed: &h1,
                cb_data: b"",
                count: None,
            },
            1,
        )
        .unwrap();
        let second = rec.issue(HtMechanism::Sha256None, DAY, 2);
        let h2 = client_hash(&second, b"");
        // The client missed the new token: the old one still works.
        assert_eq!(
            rec.verify(
                A,
                ID,
                Attempt {
                    mechanism: HtMechanism::Sha256None,
                    hashed: &h1,
                    cb_data: b"",
                    count: None
                },
                3
            )
            .unwrap()
            .which,
            Which::Current
        );
        // Using the new one retires the old one.
        assert_eq!(
            rec.verify(
                A,
                ID,
                Attempt {
                    mechanism: HtMechanism::Sha256None,
                    hashed: &h2,
                    cb_data: b"",
                    count: None
                },
                4
            )
            .unwrap()
            .which,
            Which::New
        );
        assert_eq!(
            rec.verify(
                A,
                ID,
                Attempt {
                    mechanism: HtMechanism::Sha256None,
                    hashed: &h1,
                    cb_data: b"",
                    count: None
                },
                5
            ),
            Err(SaslFailure::NotAuthorized)
        );
        rec.invalidate(Which::Current);
        assert!(rec.is_empty());
    }

    #[test]
    fn stored_form_round_trips_and_bad_data_is_refused() {
        let mut rec = TokenRecord::default();
        rec.issue(HtMechanism::Sha256Expr, DAY, 7);
        let mut s = rec.new.clone().unwrap();
        s.count = Some(3);
        rec.current = Some(s);
        assert_eq!(TokenRecord::from_xml(&rec.to_xml()), Some(rec));
        assert_eq!(TokenRecord::from_xml("<x/>"), None);
        assert_eq!(TokenRecord::from_xml("not xml"), None);
        assert_eq!(
            TokenRecord::from_xml(
                "<fast xmlns='urn:xmpp:fast:0'><slot name='new' mechanism='HT-SHA-256-NONE' salt='!' expiry='1'/></fast>"
            ),
            None
        );
    }

    #[test]
    fn offered_mechanisms_follow_the_bindings() {
        let none = ChannelBindings::default();
        assert_eq!(HtMechanism::offered(&none), [HtMechanism::Sha256None]);
        let both = ChannelBindings {
            tls_exporter: Some(vec![1; 32]),
            tls_server_end_point: Some(vec![2; 32]),
        };
        assert_eq!(HtMechanism::offered(&both).len(), 3);
        assert!(valid_client_id(ID));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a\0b"));
    }
}
