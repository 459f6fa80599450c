//! XEP-0092: Software Version
//!
//! Owns `jabber:iq:version` queries to a hosted domain: the server's name and version, and no
//! `<os/>` (the operating system is not disclosed; XEP-0092 §5 asks for a way to turn it off,
//! and off is the only setting for now). A query to an account's bare JID gets
//! `service-unavailable`: software versions belong to clients, which answer at their full
//! JIDs (those IQs are routed to them, not here).

use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext};
use crate::proto::{ns, StanzaError};
use crate::xml::Element;

pub struct VersionModule;

/// The software name reported.
pub const SOFTWARE_NAME: &str = "Oriole";

impl Module for VersionModule {
    fn name(&self) -> &'static str {
        "version"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("query", ns::VERSION)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        &[ns::VERSION]
    }

    fn handle_iq(&self, _ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        match req.target {
            IqTarget::Account(_) => Err(StanzaError::service_unavailable()),
            IqTarget::Server(_) if req.is_set => {
                Err(StanzaError::bad_request().with_text("a version query is type get"))
            }
            IqTarget::Server(_) => Ok(Some(
                Element::new("query", ns::VERSION)
                    .with_child(Element::new("name", ns::VERSION).with_text(SOFTWARE_NAME))
                    .with_child(
                        Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")),
                    ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::*;

    fn query() -> Element {
        Element::new("query", ns::VERSION)
    }

    #[test]
    fn declares_payload_and_features() {
        assert_eq!(VersionModule.iq_payloads(), &[("query", ns::VERSION)]);
        assert_eq!(VersionModule.server_features(), &[ns::VERSION]);
        assert!(VersionModule.account_features().is_empty());
    }

    #[test]
    fn server_reports_name_and_version_without_os() {
        let h = harness(config());
        let q = call(
            &VersionModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            false,
            query(),
        )
        .expect("result")
        .expect("payload");
        assert_eq!(q.child_text("name", ns::VERSION).as_deref(), Some("Oriole"));
        assert_eq!(
            q.child_text("version", ns::VERSION).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(q.child("os", ns::VERSION).is_none());
    }

    #[test]
    fn accounts_do_not_answer() {
        let h = harness(config());
        h.add_account("a@example.org");
        for to in [None, Some("a@example.org")] {
            let r = call(
                &VersionModule,
                &h.ctx,
                "a@example.org/r",
                to,
                false,
                query(),
            );
            assert_eq!(condition(r), "service-unavailable");
        }
    }

    #[test]
    fn set_is_a_bad_request() {
        let h = harness(config());
        let r = call(
            &VersionModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            true,
            query(),
        );
        assert_eq!(condition(r), "bad-request");
    }
}
