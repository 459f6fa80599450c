//! Finding a remote domain's servers (RFC 6120 §3.2, XEP-0368).
//!
//! SRV records `_xmpps-server._tcp.domain` (Direct TLS) and `_xmpp-server._tcp.domain`
//! (STARTTLS) are merged and ordered by priority, then by weight (RFC 2782's weighted random
//! choice); a target of "." means the domain offers no service. Without any SRV record the
//! domain itself is tried on port 5269. Addresses come from A and AAAA lookups (hickory
//! picks the order; both families are tried). The nameservers are the system's, or those
//! of `s2s.nameservers`.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use rand::Rng;

/// Default port of server connections (RFC 6120 §14.7).
pub const DEFAULT_PORT: u16 = 5269;

/// One place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Start with TLS (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
}

/// An SRV record as far as ordering is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub target: Target,
}

/// Why a domain could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The domain says it has no XMPP server service (SRV target ".") or does not exist.
    NotFound(String),
    /// The DNS did not answer usefully (timeout, SERVFAIL).
    Failed(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NotFound(m) | ResolveError::Failed(m) => f.write_str(m),
        }
    }
}

/// The DNS side of federation.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// The system's resolver, or one asking `nameservers` ("ip:port").
    pub fn new(nameservers: &[String]) -> Result<Resolver, String> {
        let builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the DNS configuration: {e}"))?
        } else {
            let mut servers = Vec::new();
            for ns in nameservers {
                let addr: SocketAddr = ns
                    .parse()
                    .map_err(|_| format!("s2s.nameservers: {ns:?} is not \"ip:port\""))?;
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                servers.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let mut builder = builder;
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        let inner = builder
            .build()
            .map_err(|e| format!("setting up the DNS resolver: {e}"))?;
        Ok(Resolver { inner })
    }

    /// The SRV records of one service, unordered. `Ok(None)`: no such records.
    async fn srv(&self, name: &str, direct_tls: bool) -> Result<Option<Vec<Srv>>, ResolveError> {
        match self.inner.srv_lookup(name).await {
            Ok(lookup) => {
                let mut out = Vec::new();
                for r in lookup.answers() {
                    if let RData::SRV(srv) = &r.data {
                        out.push(Srv {
                            priority: srv.priority,
                            weight: srv.weight,
                            target: Target {
                                host: srv.target.to_ascii().trim_end_matches('.').to_string(),
                                port: srv.port,
                                direct_tls,
                            },
                        });
                    }
                }
                Ok(if out.is_empty() { None } else { Some(out) })
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(None),
            Err(e) => Err(ResolveError::Failed(format!("DNS lookup of {name}: {e}"))),
        }
    }

    /// SRV records of both services, unordered. A service whose lookup fails counts as
    /// having no records (RFC 6120 §3.2.1 falls back to A/AAAA then); the error is
    /// returned only when both lookups failed.
    pub async fn srv_records(&self, domain: &str) -> Result<Vec<Srv>, ResolveError> {
        let mut all = Vec::new();
        let mut errors = Vec::new();
        for (prefix, tls) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
            match self.srv(&format!("{prefix}.{domain}."), tls).await {
                Ok(Some(mut v)) => all.append(&mut v),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(%domain, error = %e, "SRV lookup failed");
                    errors.push(e);
                }
            }
        }
        match errors.pop() {
            Some(e) if errors.len() == 1 => Err(e),
            _ => Ok(all),
        }
    }

    /// Where to connect for `domain`, best first.
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, ResolveError> {
        // Failed SRV lookups fall back to the domain itself, as RFC 6120 §3.2.1 says.
        let all = self.srv_records(domain).await.unwrap_or_default();
        if all.is_empty() {
            return Ok(vec![Target {
                host: domain.to_string(),
                port: DEFAULT_PORT,
                direct_tls: false,
            }]);
        }
        let usable: Vec<Srv> = all
            .into_iter()
            .filter(|s| !s.target.host.is_empty())
            .collect();
        if usable.is_empty() {
            return Err(ResolveError::NotFound(format!(
                "{domain} publishes no XMPP server service (SRV target \".\")"
            )));
        }
        Ok(order(usable, &mut rand::thread_rng()))
    }

    /// The addresses of a host (A and AAAA). An IP literal is returned as it is.
    pub async fn addrs(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = format!("{}.", host.trim_end_matches('.'));
        match self.inner.lookup_ip(name.as_str()).await {
            Ok(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                Err(ResolveError::NotFound(format!("{host} has no address")))
            }
            Err(e) => Err(ResolveError::Failed(format!("DNS lookup of {host}: {e}"))),
        }
    }
}

/// RFC 2782 ordering: ascending priority; within one priority, repeatedly pick a record
/// with probability proportional to its weight (weight 0 records get a small chance).
pub fn order(mut records: Vec<Srv>, rng: &mut impl Rng) -> Vec<Target> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let p = records[i].priority;
        let mut group: Vec<Srv> = records[i..]
            .iter()
            .take_while(|r| r.priority == p)
            .cloned()
            .collect();
        i += group.len();
        // Zero-weight records first, as RFC 2782 asks, so they are chosen rarely.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| r.weight as u32).sum();
            let pick = rng.gen_range(0..=total);
            let mut acc = 0u32;
            let mut chosen = group.len() - 1;
            for (j, r) in group.iter().enumerate() {
                acc += r.weight as u32;
                if acc >= pick {
                    chosen = j;
                    break;
                }
            }
            out.push(group.remove(chosen).target);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn srv(p: u16, w: u16, host: &str) -> Srv {
        Srv {
            priority: p,
            weight: w,
            target: Target {
                host: host.into(),
                port: 5269,
                direct_tls: false,
            },
        }
    }

    #[test]
    fn priority_orders_first() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let out = order(
            vec![
                srv(20, 0, "c"),
                srv(10, 5, "a"),
                srv(30, 100, "d"),
                srv(10, 5, "b"),
            ],
            &mut rng,
        );
        let hosts: Vec<_> = out.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(hosts.len(), 4);
        assert!(hosts[..2].contains(&"a") && hosts[..2].contains(&"b"));
        assert_eq!(&hosts[2..], &["c", "d"]);
    }

    #[test]
    fn weight_biases_the_choice() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let out = order(vec![srv(1, 1, "light"), srv(1, 99, "heavy")], &mut rng);
            if out[0].host == "heavy" {
                heavy_first += 1;
            }
        }
        assert!(heavy_first > 900, "{heavy_first}");
        assert!(heavy_first < 1000, "{heavy_first}");
    }
}
