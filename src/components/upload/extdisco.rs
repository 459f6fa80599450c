//! XEP-0215: External Service Discovery — STUN and TURN on the server's domain.
//!
//! `<services xmlns='urn:xmpp:extdisco:2'/>` (optionally with `type='stun'|'turn'`) lists the
//! STUN service and the TURN service (UDP) with time-limited credentials of the TURN REST
//! shared-secret scheme: username `expiry:user@domain`, password
//! `base64(HMAC-SHA1(secret, username))`, `expires` in XEP-0082 format. `<credentials/>`
//! with a `<service host type/>` child returns fresh credentials for that service. Only the
//! server's own accounts are answered.

use std::sync::Arc;

use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext};
use crate::proto::StanzaError;
use crate::xml::Element;

use super::http_upload::unix_now;
use super::stun;

pub const NS_EXTDISCO: &str = "urn:xmpp:extdisco:2";

/// What is advertised.
#[derive(Debug, Clone)]
pub struct TurnAdvert {
    pub host: String,
    pub port: u16,
    pub secret: Vec<u8>,
    pub ttl_secs: u64,
}

pub struct ExtdiscoModule {
    pub advert: Option<Arc<TurnAdvert>>,
}

fn iso8601(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl TurnAdvert {
    fn services(&self, user: &str, filter: Option<&str>) -> Vec<Element> {
        let mut out = Vec::new();
        if filter.is_none_or(|f| f == "stun") {
            out.push(
                Element::new("service", NS_EXTDISCO)
                    .with_attr("type", "stun")
                    .with_attr("host", self.host.clone())
                    .with_attr("port", self.port.to_string())
                    .with_attr("transport", "udp"),
            );
        }
        if filter.is_none_or(|f| f == "turn") {
            out.push(self.turn(user));
        }
        out
    }

    fn turn(&self, user: &str) -> Element {
        let expiry = unix_now() + self.ttl_secs;
        let username = stun::rest_username(expiry, user);
        let password = stun::rest_password(&self.secret, &username);
        Element::new("service", NS_EXTDISCO)
            .with_attr("type", "turn")
            .with_attr("host", self.host.clone())
            .with_attr("port", self.port.to_string())
            .with_attr("transport", "udp")
            .with_attr("restricted", "1")
            .with_attr("username", username)
            .with_attr("password", password)
            .with_attr("expires", iso8601(expiry))
    }
}

impl Module for ExtdiscoModule {
    fn name(&self) -> &'static str {
        "extdisco"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("services", NS_EXTDISCO), ("credentials", NS_EXTDISCO)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        if self.advert.is_some() {
            &[NS_EXTDISCO]
        } else {
            &[]
        }
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        let IqTarget::Server(_) = req.target else {
            return Err(StanzaError::service_unavailable());
        };
        let Some(advert) = &self.advert else {
            return Err(StanzaError::service_unavailable());
        };
        if req.is_set {
            return Err(StanzaError::bad_request().with_text("use type get"));
        }
        if req.from.node().is_none() || !ctx.config.hosts(req.from.domain()) {
            return Err(StanzaError::forbidden());
        }
        let user = req.from.bare_string();
        if req.payload.name == "services" {
            let filter = req.payload.attr("type").filter(|t| !t.is_empty());
            let mut q = Element::new("services", NS_EXTDISCO).with_opt_attr("type", filter);
            for s in advert.services(&user, filter) {
                q.push_child(s);
            }
            return Ok(Some(q));
        }
        let wanted = req.payload.child("service", NS_EXTDISCO);
        let host = wanted.and_then(|s| s.attr("host"));
        let kind = wanted.and_then(|s| s.attr("type")).unwrap_or("turn");
        if host.is_some_and(|h| h != advert.host) || kind != "turn" {
            return Err(StanzaError::item_not_found());
        }
        Ok(Some(
            Element::new("credentials", NS_EXTDISCO).with_child(advert.turn(&user)),
        ))
    }
}
