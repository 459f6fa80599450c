//! Client side of XEP-0198 (Stream Management) and XEP-0352 (Client State Indication): enable,
//! acks, resumption on a new connection, and reading stanzas with SM nonzas set aside.

use super::client::{Client, ClientError, Mechanism, Result, Security, STEP};
use super::tls::Trust;
use super::xml::*;
use std::net::SocketAddr;
use std::time::Duration;

pub const NS_SM: &str = "urn:xmpp:sm:3";
pub const NS_CSI: &str = "urn:xmpp:csi:0";

/// An XEP-0198 element (`<r/>`, `<a/>`, `<enabled/>`, …), which is not a stanza.
pub fn is_sm(e: &Element) -> bool {
    e.ns == NS_SM
}

/// The `h` attribute of an `<a/>`, `<resumed/>` or `<failed/>`.
pub fn h_of(e: &Element) -> Option<u32> {
    e.attr("h")?.parse().ok()
}

impl Client {
    /// Send `<enable/>` (with `resume='true'` when asked) and return `<enabled/>`; a
    /// `<failed/>` is an error.
    pub async fn sm_enable(&mut self, resume: bool) -> Result<Element> {
        let attr = if resume { " resume='true'" } else { "" };
        self.send(&format!("<enable xmlns='{NS_SM}'{attr}/>"))
            .await?;
        let e = self
            .recv_matching(STEP, "<enabled/>", |e| {
                is_sm(e) && (e.name == "enabled" || e.name == "failed")
            })
            .await?;
        if e.name == "enabled" {
            Ok(e)
        } else {
            Err(ClientError::Protocol(format!("SM enable failed: {e}")))
        }
    }

    /// Send `<r/>` and return the `h` of the server's `<a/>`.
    pub async fn sm_request_ack(&mut self) -> Result<u32> {
        self.send(&format!("<r xmlns='{NS_SM}'/>")).await?;
        let a = self
            .recv_matching(STEP, "<a/>", |e| e.is("a", NS_SM))
            .await?;
        h_of(&a).ok_or_else(|| ClientError::Protocol(format!("<a/> without a valid h: {a}")))
    }

    /// Send an `<a/>` with this `h`.
    pub async fn sm_ack(&mut self, h: u32) -> Result<()> {
        self.send(&format!("<a xmlns='{NS_SM}' h='{h}'/>")).await
    }

    /// The next stanza, setting SM nonzas aside (they are dropped).
    pub async fn next_stanza(&mut self, wait: Duration) -> Result<Element> {
        self.pending.retain(|e| !is_sm(e));
        self.recv_matching(wait, "a stanza", |e| !is_sm(e)).await
    }

    /// Stanzas received before the first one matching `marker` (consumed), without SM
    /// nonzas.
    pub async fn stanzas_until<F>(&mut self, wait: Duration, marker: F) -> Result<Vec<Element>>
    where
        F: Fn(&Element) -> bool,
    {
        let (before, _) = self.collect_until(wait, |e| !is_sm(e) && marker(e)).await?;
        Ok(before.into_iter().filter(|e| !is_sm(e)).collect())
    }

    /// `<inactive/>` or `<active/>` (XEP-0352).
    pub async fn csi(&mut self, active: bool) -> Result<()> {
        let name = if active { "active" } else { "inactive" };
        self.send(&format!("<{name} xmlns='{NS_CSI}'/>")).await
    }
}

/// Connect, authenticate, and send `<resume previd h/>` instead of binding. Returns the client
/// and the server's answer (`<resumed/>` or `<failed/>`).
pub async fn resume(
    addr: SocketAddr,
    domain: &str,
    trust: Trust,
    user: &str,
    password: &str,
    previd: &str,
    h: u32,
) -> Result<(Client, Element)> {
    let mut c = Client::connect(addr, domain, trust, Security::StartTls).await?;
    let features = c.authenticate(Mechanism::BestScram, user, password).await?;
    if !features.has_child("sm", NS_SM) {
        return Err(ClientError::Protocol(format!(
            "no SM feature after authentication: {features}"
        )));
    }
    c.send(&format!(
        "<resume xmlns='{NS_SM}' previd='{}' h='{h}'/>",
        escape(previd)
    ))
    .await?;
    let answer = c
        .recv_matching(STEP, "<resumed/> or <failed/>", |e| {
            is_sm(e) && (e.name == "resumed" || e.name == "failed")
        })
        .await?;
    Ok((c, answer))
}
