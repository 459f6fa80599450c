//! Internal components: services on their own subdomains that run inside the server:
//! [`muc`] at `conference.<domain>`, and from [`upload`] HTTP File Upload at
//! `upload.<domain>` and the SOCKS5 bytestream proxy at `proxy.<domain>` (the STUN/TURN
//! server of [`upload`] is advertised on the hosted domain itself, by XEP-0215).
//!
//! A component owns every stanza addressed to its domain (or to a JID on it): the router
//! hands such stanzas to [`Component::handle`] before any other rule. Stanzas a component
//! sends carry its domain (or a JID on it) as `from`; they are generated here, so the server
//! treats component domains as local ([`ComponentRegistry::serves`]) and a remote peer may
//! never claim them.
//!
//! The registry is derived from the configuration alone ([`service_domains`]), so server
//! disco#items (which lists the components of a hosted domain) and the registry cannot
//! disagree.

pub mod muc;
pub mod upload;

use std::sync::Arc;

use crate::config::Config;
use crate::proto::Stanza;
use crate::server::ServerState;
use crate::storage::Storage;

/// A service on its own domain.
pub trait Component: Send + Sync {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// The domain this instance serves.
    fn domain(&self) -> &str;
    /// A stanza addressed to the component's domain or to a JID on it; its `from` is trusted.
    fn handle(&self, state: &Arc<ServerState>, stanza: Stanza);
    /// Called once when the server shuts down, before client streams close.
    fn shutdown(&self, _state: &Arc<ServerState>) {}
}

/// What kind of service a component domain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Muc,
    /// XEP-0363 slots (the HTTP service itself runs in [`upload::Services`]).
    Upload,
    /// XEP-0065 proxy (its SOCKS5 listener runs in [`upload::Services`]).
    Proxy65,
}

/// A component domain derived from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDomain {
    pub kind: ServiceKind,
    /// The component's domain, e.g. `conference.example.org`.
    pub domain: String,
    /// The hosted domain it belongs to.
    pub host: String,
    /// A human-readable name for disco#items.
    pub name: &'static str,
}

/// Every component domain the configuration asks for, in hosted-domain order.
pub fn service_domains(config: &Config) -> Vec<ServiceDomain> {
    let mut out = Vec::new();
    if config.muc.enabled {
        for host in &config.server.domains {
            out.push(ServiceDomain {
                kind: ServiceKind::Muc,
                domain: format!("{}.{host}", config.muc.subdomain),
                host: host.clone(),
                name: "Chatrooms",
            });
        }
    }
    for host in &config.server.domains {
        if config.upload.enable {
            out.push(ServiceDomain {
                kind: ServiceKind::Upload,
                domain: format!("{}{host}", upload::UPLOAD_PREFIX),
                host: host.clone(),
                name: "HTTP File Upload",
            });
        }
        if config.proxy65.enable {
            out.push(ServiceDomain {
                kind: ServiceKind::Proxy65,
                domain: format!("{}{host}", upload::PROXY_PREFIX),
                host: host.clone(),
                name: "SOCKS5 Bytestreams Service",
            });
        }
    }
    out
}

/// The components of one hosted domain (for its disco#items).
pub fn services_of_host(config: &Config, host: &str) -> Vec<ServiceDomain> {
    service_domains(config)
        .into_iter()
        .filter(|s| s.host == host)
        .collect()
}

/// The running components, by domain.
#[derive(Default)]
pub struct ComponentRegistry {
    /// Looked up for every routed stanza: foldhash (seeded per process), not SipHash.
    by_domain: hashbrown::HashMap<String, Arc<dyn Component>>,
}

impl ComponentRegistry {
    /// Build every configured component (rooms of persistent MUCs are loaded from storage).
    pub fn build(config: &Arc<Config>, storage: &Arc<dyn Storage>) -> ComponentRegistry {
        let mut by_domain: hashbrown::HashMap<String, Arc<dyn Component>> =
            hashbrown::HashMap::new();
        for s in service_domains(config) {
            // A hosted domain may itself be a component domain of another: the account
            // domain wins, as its users would otherwise become unreachable.
            if config.hosts(&s.domain) {
                tracing::warn!(domain = %s.domain, "component domain is also a hosted domain; component not started");
                continue;
            }
            let c: Arc<dyn Component> = match s.kind {
                ServiceKind::Muc => Arc::new(muc::MucService::new(
                    s.domain.clone(),
                    config.clone(),
                    storage.clone(),
                )),
                ServiceKind::Upload | ServiceKind::Proxy65 => Arc::new(MediaComponent {
                    domain: s.domain.clone(),
                    name: if s.kind == ServiceKind::Upload {
                        "upload"
                    } else {
                        "proxy65"
                    },
                }),
            };
            by_domain.insert(s.domain, c);
        }
        ComponentRegistry { by_domain }
    }

    /// The component serving `domain`.
    pub fn get(&self, domain: &str) -> Option<Arc<dyn Component>> {
        self.by_domain.get(domain).cloned()
    }

    /// Whether `domain` is a component domain of this server.
    pub fn serves(&self, domain: &str) -> bool {
        self.by_domain.contains_key(domain)
    }

    /// Every component.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Component>> {
        self.by_domain.values()
    }
}

/// The stanza side of the upload slot service and the SOCKS5 proxy: IQs answered by
/// [`upload::route`] from the sockets [`upload::Services`] runs.
struct MediaComponent {
    domain: String,
    name: &'static str,
}

impl Component for MediaComponent {
    fn name(&self) -> &'static str {
        self.name
    }
    fn domain(&self) -> &str {
        &self.domain
    }
    fn handle(&self, state: &Arc<ServerState>, stanza: Stanza) {
        match stanza.to() {
            Ok(Some(to)) => {
                upload::route(state, &stanza, &to);
            }
            _ => crate::router::bounce(state, &stanza, crate::proto::StanzaError::jid_malformed()),
        }
    }
}
