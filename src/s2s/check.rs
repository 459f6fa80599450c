//! `oriole check` for federation: for each hosted domain, the DNS records it has, the ones
//! it should have for the configured listeners, and whether its certificate will let peers
//! authenticate it (SASL EXTERNAL) or leave them to dialback.

use super::resolve::{Resolver, DEFAULT_PORT};
use crate::config::Config;
use crate::transport::TlsContext;

fn port_of(addr: &str) -> Option<u16> {
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

/// Lines describing the federation setup.
pub async fn report(config: &Config, tls: &TlsContext) -> Vec<String> {
    let c = &config.s2s;
    let mut lines = Vec::new();
    if c.listen.is_empty() && c.direct_tls.is_empty() {
        lines.push(
            "federation: off (no [s2s] listen address); stanzas to other domains bounce".into(),
        );
        return lines;
    }
    lines.push(format!(
        "federation: on; STARTTLS {:?}, Direct TLS {:?}; valid certificates {}, dialback {}",
        c.listen,
        c.direct_tls,
        if c.require_valid_certificates {
            "required"
        } else {
            "preferred"
        },
        if c.allow_dialback { "allowed" } else { "off" },
    ));
    let trust = match super::load_trust(config) {
        Ok(t) => t,
        Err(e) => {
            lines.push(format!("error: {e}"));
            return lines;
        }
    };
    let resolver = match Resolver::new(&c.nameservers) {
        Ok(r) => Some(r),
        Err(e) => {
            lines.push(format!("DNS: {e}"));
            None
        }
    };
    let starttls_port = c.listen.iter().find_map(|a| port_of(a));
    let direct_port = c.direct_tls.iter().find_map(|a| port_of(a));
    for domain in &config.server.domains {
        if let Some(r) = &resolver {
            match r.srv_records(domain).await {
                Ok(records) if !records.is_empty() => {
                    for s in records {
                        lines.push(format!(
                            "{domain}: has {}._tcp.{domain}. SRV {} {} {} {}.",
                            if s.target.direct_tls {
                                "_xmpps-server"
                            } else {
                                "_xmpp-server"
                            },
                            s.priority,
                            s.weight,
                            s.target.port,
                            if s.target.host.is_empty() {
                                ""
                            } else {
                                &s.target.host
                            }
                        ));
                    }
                }
                Ok(_) => {
                    let addrs = r.addrs(domain, DEFAULT_PORT).await;
                    match addrs {
                        Ok(a) => lines.push(format!(
                            "{domain}: no SRV records; peers connect to {} on port {DEFAULT_PORT}",
                            a.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
                        )),
                        Err(e) => lines.push(format!(
                            "{domain}: no SRV records and no address: peers cannot find this server ({e})"
                        )),
                    }
                }
                Err(e) => lines.push(format!("{domain}: DNS lookup failed: {e}")),
            }
        }
        if let Some(p) = starttls_port {
            let hint = if p == DEFAULT_PORT {
                " (or just A/AAAA records for the domain)"
            } else {
                ""
            };
            lines.push(format!(
                "{domain}: should have _xmpp-server._tcp.{domain}. SRV 0 5 {p} <this host>.{hint}"
            ));
        }
        if let Some(p) = direct_port {
            lines.push(format!(
                "{domain}: should have _xmpps-server._tcp.{domain}. SRV 0 5 {p} <this host>."
            ));
        }
        let chain = tls
            .certified_key(domain)
            .map(|k| k.cert.clone())
            .unwrap_or_default();
        match trust.check(&chain, domain) {
            Ok(()) => lines.push(format!(
                "{domain}: certificate valid for federation (peers can use SASL EXTERNAL)"
            )),
            Err(e) => lines.push(format!(
                "{domain}: certificate not valid for federation ({e}); peers fall back to dialback, and those requiring valid certificates refuse this domain"
            )),
        }
    }
    lines
}
