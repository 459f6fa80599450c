//! XEP-0202: Entity Time
//!
//! Owns `urn:xmpp:time` queries to a hosted domain: the server answers with its clock in UTC
//! (`<tzo>+00:00</tzo>`, `<utc>` in the XEP-0082 DateTime profile). The server does not tell
//! its local time zone. Queries to an account's bare JID get `service-unavailable`: entity
//! time belongs to clients, which answer at their full JIDs.

use time::macros::format_description;
use time::OffsetDateTime;

use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext};
use crate::proto::{ns, StanzaError};
use crate::xml::Element;

pub struct TimeModule;

impl Module for TimeModule {
    fn name(&self) -> &'static str {
        "time"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("time", ns::TIME)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        &[ns::TIME]
    }

    fn handle_iq(&self, _ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        match req.target {
            IqTarget::Account(_) => Err(StanzaError::service_unavailable()),
            IqTarget::Server(_) if req.is_set => {
                Err(StanzaError::bad_request().with_text("a time query is type get"))
            }
            IqTarget::Server(_) => time_payload(OffsetDateTime::now_utc()).map(Some),
        }
    }
}

/// The `<time/>` answer for the instant `now` (converted to UTC, whole seconds).
pub fn time_payload(now: OffsetDateTime) -> Result<Element, StanzaError> {
    let utc = now
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .map_err(|e| {
            tracing::error!(error = %e, "cannot format the time");
            StanzaError::internal_server_error()
        })?;
    Ok(Element::new("time", ns::TIME)
        .with_child(Element::new("tzo", ns::TIME).with_text("+00:00"))
        .with_child(Element::new("utc", ns::TIME).with_text(utc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::*;
    use time::macros::datetime;

    fn query() -> Element {
        Element::new("time", ns::TIME)
    }

    #[test]
    fn declares_payload_and_features() {
        assert_eq!(TimeModule.iq_payloads(), &[("time", ns::TIME)]);
        assert_eq!(TimeModule.server_features(), &[ns::TIME]);
        assert!(TimeModule.account_features().is_empty());
    }

    #[test]
    fn formats_utc_and_offset() {
        let el = time_payload(datetime!(2026-11-22 01:02:03.456 +02:00)).expect("time");
        assert_eq!(
            el.to_string(),
            "<time xmlns='urn:xmpp:time'><tzo>+00:00</tzo><utc>2026-11-21T23:02:03Z</utc></time>"
        );
    }

    #[test]
    fn server_answers_with_the_current_time() {
        let h = harness(config());
        let before = OffsetDateTime::now_utc().unix_timestamp();
        let q = call(
            &TimeModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            false,
            query(),
        )
        .expect("result")
        .expect("payload");
        assert_eq!(q.child_text("tzo", ns::TIME).as_deref(), Some("+00:00"));
        let utc = q.child_text("utc", ns::TIME).expect("utc");
        let parsed = OffsetDateTime::parse(&utc, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
        assert!((parsed.unix_timestamp() - before).abs() <= 2, "{utc}");
    }

    #[test]
    fn accounts_do_not_answer_and_set_is_refused() {
        let h = harness(config());
        let r = call(&TimeModule, &h.ctx, "a@example.org/r", None, false, query());
        assert_eq!(condition(r), "service-unavailable");
        let r = call(
            &TimeModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            true,
            query(),
        );
        assert_eq!(condition(r), "bad-request");
    }
}
