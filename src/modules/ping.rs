//! XEP-0199: XMPP Ping
//!
//! Owns pings addressed to a hosted domain (client-to-server pings) and to an account's bare
//! JID, which the server answers on behalf of the account (RFC 6121 §8.5.3.1) when the
//! account exists; a ping to an account that does not exist gets `service-unavailable`, the
//! same answer RFC 6121 §8.5.2 gives for any IQ to a missing account. Pings to full JIDs are
//! routed to the client and never reach this module.

use crate::modules::services::storage_failed;
use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext};
use crate::proto::{ns, StanzaError};

pub struct PingModule;

const FEATURES: &[&str] = &[ns::PING];

impl Module for PingModule {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("ping", ns::PING)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        FEATURES
    }

    fn account_features(&self) -> &'static [&'static str] {
        FEATURES
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        if req.is_set {
            return Err(StanzaError::bad_request().with_text("a ping is type get"));
        }
        match &req.target {
            IqTarget::Server(_) => Ok(None),
            IqTarget::Account(_) if req.is_self() => Ok(None),
            IqTarget::Account(bare) => {
                let exists = ctx
                    .storage
                    .get_credentials(&bare.bare_string())
                    .map_err(|e| storage_failed("ping", e))?
                    .is_some();
                if exists {
                    Ok(None)
                } else {
                    Err(StanzaError::service_unavailable())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::*;
    use crate::xml::Element;
    use std::sync::Arc;

    fn ping() -> Element {
        Element::new("ping", ns::PING)
    }

    #[test]
    fn declares_payload_and_features() {
        assert_eq!(PingModule.iq_payloads(), &[("ping", ns::PING)]);
        assert_eq!(PingModule.server_features(), &[ns::PING]);
        assert_eq!(PingModule.account_features(), &[ns::PING]);
    }

    #[test]
    fn server_answers_pings() {
        let h = harness(config());
        let r = call(
            &PingModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            false,
            ping(),
        );
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn bare_jid_pings_are_answered_for_existing_accounts() {
        let h = harness(config());
        h.add_account("a@example.org");
        assert_eq!(
            call(&PingModule, &h.ctx, "a@example.org/r", None, false, ping()),
            Ok(None)
        );
        assert_eq!(
            call(
                &PingModule,
                &h.ctx,
                "b@remote.example/r",
                Some("a@example.org"),
                false,
                ping()
            ),
            Ok(None)
        );
        let r = call(
            &PingModule,
            &h.ctx,
            "b@remote.example/r",
            Some("nobody@example.org"),
            false,
            ping(),
        );
        assert_eq!(condition(r), "service-unavailable");
    }

    #[test]
    fn set_is_a_bad_request() {
        let h = harness(config());
        let r = call(
            &PingModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            true,
            ping(),
        );
        assert_eq!(condition(r), "bad-request");
    }

    #[test]
    fn storage_failure_is_an_internal_error() {
        let h = harness(config()).with_storage(Arc::new(BrokenStore));
        let r = call(
            &PingModule,
            &h.ctx,
            "b@remote.example/r",
            Some("a@example.org"),
            false,
            ping(),
        );
        assert_eq!(condition(r), "internal-server-error");
    }
}
