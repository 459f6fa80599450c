//! The PLAIN server mechanism (RFC 4616) as a pure state machine: one client message
//! `[authzid] NUL authcid NUL passwd`, checked against the stored SCRAM keys by deriving them
//! from the offered password ([`StoredCredentials::verify_password`]).
//!
//! PLAIN sends the password itself, so it is only offered over TLS
//! ([`crate::auth::offered_mechanisms`]). For an unknown user the same PBKDF2 work is done
//! against fake keys, so response times do not tell whether an account exists.

use super::credentials::{ScramHash, StoredCredentials};
use super::{crypto, saslprep, SaslFailure, SaslStep, MAX_CLIENT_MESSAGE};

/// One PLAIN exchange.
pub struct PlainServer {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// We sent an empty challenge and wait for the message.
    AwaitResponse,
    Done,
}

impl std::fmt::Debug for PlainServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainServer")
            .field("state", &self.state)
            .finish()
    }
}

impl Default for PlainServer {
    fn default() -> Self {
        Self::new()
    }
}

impl PlainServer {
    pub fn new() -> PlainServer {
        PlainServer {
            state: State::Start,
        }
    }

    /// The client's initial response (see [`crate::auth::SaslServer::start`]).
    pub fn start(
        &mut self,
        initial: Option<&[u8]>,
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        if self.state != State::Start {
            return self.fail(SaslFailure::MalformedRequest, "exchange already started");
        }
        match initial {
            None => {
                self.state = State::AwaitResponse;
                SaslStep::Challenge(Vec::new())
            }
            Some(msg) => self.authenticate(msg, lookup),
        }
    }

    /// The response to our empty challenge (see [`crate::auth::SaslServer::step`]).
    pub fn step(
        &mut self,
        response: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        if self.state != State::AwaitResponse {
            return self.fail(SaslFailure::MalformedRequest, "unexpected response");
        }
        self.authenticate(response, lookup)
    }

    /// End the exchange with a failure; `reason` never contains client data.
    fn fail(&mut self, failure: SaslFailure, reason: &'static str) -> SaslStep {
        self.state = State::Done;
        tracing::debug!(
            mechanism = "PLAIN",
            condition = failure.condition(),
            reason,
            "SASL failure"
        );
        SaslStep::Failure(failure)
    }

    fn authenticate(
        &mut self,
        msg: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> SaslStep {
        use SaslFailure::{MalformedRequest as Malformed, NotAuthorized};
        self.state = State::Done;
        if msg.len() > MAX_CLIENT_MESSAGE {
            return self.fail(Malformed, "message too long");
        }
        let mut parts = msg.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.fail(Malformed, "not three NUL-separated fields");
        };
        let (Ok(authzid), Ok(authcid), Ok(password)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(authcid),
            std::str::from_utf8(password),
        ) else {
            return self.fail(Malformed, "field is not UTF-8");
        };
        let Some(username) = saslprep::prepare_username(authcid) else {
            return self.fail(Malformed, "bad authcid");
        };
        if password.is_empty() {
            return self.fail(NotAuthorized, "empty password");
        }

        let verified = match lookup(&username) {
            Some(creds) if creds.plain_hash().is_some() => creds.verify_password(password),
            _ => {
                // Same cost as a real check, against keys that never match.
                let fake = crypto::unknown_user_keys(ScramHash::Sha256, &username);
                std::hint::black_box(fake.verify_password(ScramHash::Sha256, password));
                false
            }
        };
        if !verified {
            return self.fail(NotAuthorized, "wrong password or unknown user");
        }
        SaslStep::Success {
            username,
            authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
            additional_data: None,
        }
    }
}
