//! Configuration: the TOML file's types. The doc comment on each field is its reference;
//! `conf/oriole.toml` is the commented example and is checked by a test to parse.
//!
//! Unknown keys are refused (`deny_unknown_fields`) so a typo is caught at start, with the
//! key and line in the message (from the TOML parser's span).

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub c2s: C2sConfig,
    pub s2s: S2sConfig,
    /// `[[tls.certificate]]` entries; when empty a self-signed certificate is generated.
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub registration: RegistrationConfig,
    /// `[mam]`: the message archive (XEP-0313).
    pub mam: MamConfig,
    /// `[muc]`: Multi-User Chat (XEP-0045) at `<subdomain>.<domain>`.
    pub muc: MucConfig,
    /// `[push]`: push notifications (XEP-0357).
    pub push: crate::modules::push::PushConfig,
    pub log: LogConfig,
    /// HTTP File Upload (XEP-0363) at `upload.<domain>`.
    pub upload: UploadConfig,
    /// STUN/TURN for calls, advertised by external service discovery (XEP-0215).
    pub turn: TurnConfig,
    /// SOCKS5 bytestream proxy (XEP-0065) at `proxy.<domain>`.
    pub proxy65: Proxy65Config,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Hosted domains. The first is the default for the CLI and for clients without SNI.
    pub domains: Vec<String>,
    /// Folder for the database, generated certificates and the admin socket.
    pub data_dir: PathBuf,
    /// Contact addresses published in disco (XEP-0157), e.g. "mailto:admin@example.org".
    pub admin_contacts: Vec<String>,
    /// Where to report abuse (XEP-0157 abuse-addresses), e.g. "xmpp:abuse@example.org".
    /// Unset: `mailto:abuse@<first domain>`, the mailbox RFC 2142 expects every domain to
    /// have; `[]` publishes none. Read it through [`ServerConfig::abuse_addresses`].
    pub abuse_contacts: Option<Vec<String>>,
    /// Where to report security issues (XEP-0157 security-addresses).
    pub security_contacts: Vec<String>,
    /// Where users get help (XEP-0157 support-addresses).
    pub support_contacts: Vec<String>,
}

impl ServerConfig {
    /// The XEP-0157 abuse addresses to publish: the configured ones, or RFC 2142's
    /// `mailto:abuse@<first domain>` when the setting is absent.
    pub fn abuse_addresses(&self) -> Vec<String> {
        match &self.abuse_contacts {
            Some(list) => list.clone(),
            None => self
                .domains
                .first()
                .map(|d| vec![format!("mailto:abuse@{d}")])
                .unwrap_or_default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            domains: vec!["localhost".into()],
            data_dir: PathBuf::from("data"),
            admin_contacts: Vec::new(),
            abuse_contacts: None,
            security_contacts: Vec::new(),
            support_contacts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sConfig {
    /// Addresses for client connections that start in plain text and upgrade with STARTTLS.
    pub starttls: Vec<String>,
    /// Addresses for client connections that start with TLS (XEP-0368, ALPN `xmpp-client`).
    pub direct_tls: Vec<String>,
    /// Refuse authentication before TLS. Turning this off is for testing only.
    pub require_encryption: bool,
    /// Seconds a connection may take from accept to a bound resource.
    pub negotiation_timeout_secs: u64,
    /// Seconds a session whose connection broke is kept for XEP-0198 resumption, when the
    /// client does not ask for another time.
    pub sm_resume_timeout_secs: u64,
    /// Most seconds a client may ask a session to be kept for resumption (`max`).
    pub sm_max_resume_timeout_secs: u64,
    /// Lifetime in seconds of XEP-0484 FAST tokens (fast reconnection without the password);
    /// 0 turns FAST off. Default 14 days.
    pub fast_token_lifetime_secs: u64,
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            starttls: vec!["[::]:5222".into(), "0.0.0.0:5222".into()],
            direct_tls: vec!["[::]:5223".into(), "0.0.0.0:5223".into()],
            require_encryption: true,
            negotiation_timeout_secs: 60,
            sm_resume_timeout_secs: 300,
            sm_max_resume_timeout_secs: 3600,
            fast_token_lifetime_secs: 14 * 86_400,
        }
    }
}

/// `[s2s]`: federation (see `src/s2s/mod.rs`). Federation is on when `listen` or
/// `direct_tls` names an address; otherwise stanzas for other domains bounce with
/// `remote-server-not-found` and nothing is looked up or connected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Addresses for server-to-server connections that start in plain text (STARTTLS;
    /// a peer that starts with TLS is served Direct TLS too). Empty: no federation.
    pub listen: Vec<String>,
    /// Addresses for Direct TLS server connections (XEP-0368, ALPN `xmpp-server`).
    pub direct_tls: Vec<String>,
    /// Refuse peers whose certificate does not verify for their domain (no dialback
    /// fallback). Like Prosody's `s2s_secure_auth`, off by default: much of the network
    /// still federates with self-signed certificates and dialback.
    pub require_valid_certificates: bool,
    /// Allow Server Dialback (XEP-0220) when the certificate does not authenticate a peer.
    pub allow_dialback: bool,
    /// PEM file of extra trusted CA certificates, added to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Seconds without traffic after which a federation link is closed.
    pub idle_timeout_secs: u64,
    /// Seconds allowed for one TCP connect attempt.
    pub connect_timeout_secs: u64,
    /// Seconds allowed for a whole link setup (connect, TLS, authentication).
    pub negotiation_timeout_secs: u64,
    /// Stanzas queued per remote domain while its link is set up; more are bounced.
    pub queue_size: usize,
    /// DNS servers ("ip:port") instead of the system's resolv.conf.
    pub nameservers: Vec<String>,
    /// Per remote domain settings: `[s2s.domains."example.net"]`.
    pub domains: std::collections::BTreeMap<String, S2sDomainConfig>,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            listen: Vec::new(),
            direct_tls: Vec::new(),
            require_valid_certificates: false,
            allow_dialback: true,
            ca_file: None,
            idle_timeout_secs: 600,
            connect_timeout_secs: 10,
            negotiation_timeout_secs: 30,
            queue_size: 1000,
            nameservers: Vec::new(),
            domains: Default::default(),
        }
    }
}

/// Settings for one remote domain; unset keys take the `[s2s]` value.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct S2sDomainConfig {
    /// Connect here ("host:port") instead of looking the domain up in DNS.
    pub connect: Option<String>,
    /// With `connect`: start with TLS (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
    /// Refuse all traffic with this domain, both ways.
    pub block: bool,
    pub require_valid_certificates: Option<bool>,
    pub allow_dialback: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub certificate: Vec<CertificateConfig>,
}

/// A certificate chain and key in PEM files, served for the names it covers (SNI).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza accepted, in bytes (policy-violation above it).
    pub max_stanza_size: usize,
    /// Deepest element nesting accepted inside a stanza.
    pub max_depth: usize,
    /// Most simultaneous client connections.
    pub max_c2s_connections: usize,
    /// Most simultaneous connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Failed authentications from one IP address before it is slowed down.
    pub auth_failures_before_delay: u32,
    /// Most stanzas kept offline per account.
    pub max_offline_messages: usize,
    /// Most resources bound per account.
    pub max_resources_per_account: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_size: 256 * 1024,
            max_depth: 64,
            max_c2s_connections: 100_000,
            max_connections_per_ip: 1000,
            auth_failures_before_delay: 5,
            max_offline_messages: 1000,
            max_resources_per_account: 32,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Allow anyone to create an account in-band (XEP-0077). Off by default.
    pub allow: bool,
}

/// Which messages are archived for an account that set no preference of its own.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveDefault {
    /// Every message.
    #[default]
    Always,
    /// Messages exchanged with contacts in the roster.
    Roster,
    /// None (a user may still opt in).
    Never,
}

impl ArchiveDefault {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveDefault::Always => "always",
            ArchiveDefault::Roster => "roster",
            ArchiveDefault::Never => "never",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MamConfig {
    /// "always", "roster" or "never": the archiving default of accounts without preferences.
    pub default: ArchiveDefault,
    /// Archived messages older than this many days are deleted (checked hourly). 0 keeps
    /// them forever.
    pub retention_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucConfig {
    /// Run a chatroom service for every hosted domain. On by default.
    pub enabled: bool,
    /// The service lives at `<subdomain>.<domain>` ("conference").
    pub subdomain: String,
    /// Most messages a room keeps for history on join (a room's own setting may be lower).
    pub max_history: usize,
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            enabled: true,
            subdomain: "conference".into(),
            max_history: 50,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// "text" (readable) or "json".
    pub format: String,
    /// A tracing filter, e.g. "info" or "oriole=debug". RUST_LOG overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

pub use crate::components::upload::config::{Proxy65Config, TurnConfig, UploadConfig};

/// A configuration error with the file, line and key where known.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parse configuration text; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => ConfigError(format!("{origin}, line {l}: {}", e.message())),
                None => ConfigError(format!("{origin}: {}", e.message())),
            }
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Load from a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Checks that serde cannot express.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        if self.server.domains.is_empty() {
            return Err(ConfigError(format!(
                "{origin}: server.domains must name at least one domain"
            )));
        }
        for d in &self.server.domains {
            let jid = crate::jid::Jid::domain_jid(d).map_err(|e| {
                ConfigError(format!(
                    "{origin}: server.domains: {d:?} is not a domain: {e}"
                ))
            })?;
            if jid.domain() != d {
                return Err(ConfigError(format!(
                    "{origin}: server.domains: write {d:?} as {:?}",
                    jid.domain()
                )));
            }
        }
        for (key, list) in [
            ("c2s.starttls", &self.c2s.starttls),
            ("c2s.direct_tls", &self.c2s.direct_tls),
            ("s2s.listen", &self.s2s.listen),
            ("s2s.direct_tls", &self.s2s.direct_tls),
            ("s2s.nameservers", &self.s2s.nameservers),
        ] {
            for addr in list {
                addr.parse::<std::net::SocketAddr>().map_err(|_| {
                    ConfigError(format!(
                        "{origin}: {key}: {addr:?} is not an address such as \"0.0.0.0:5222\""
                    ))
                })?;
            }
        }
        for (domain, d) in &self.s2s.domains {
            if let Some(c) = &d.connect {
                let port = c.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
                if port.is_none() {
                    return Err(ConfigError(format!(
                        "{origin}: s2s.domains.\"{domain}\".connect: {c:?} is not \"host:port\""
                    )));
                }
            }
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(ConfigError(format!(
                "{origin}: log.format must be \"text\" or \"json\""
            )));
        }
        if self.muc.enabled
            && (self.muc.subdomain.is_empty()
                || crate::jid::Jid::domain_jid(&self.muc.subdomain)
                    .map(|j| j.domain() != self.muc.subdomain || j.domain().contains('.'))
                    .unwrap_or(true))
        {
            return Err(ConfigError(format!(
                "{origin}: muc.subdomain must be one lowercase DNS label such as \"conference\""
            )));
        }
        if self.limits.max_stanza_size < 10_000 {
            return Err(ConfigError(format!(
                "{origin}: limits.max_stanza_size must be at least 10000 (RFC 6120 §13.12)"
            )));
        }
        crate::components::upload::config::validate(self, origin)?;
        Ok(())
    }

    /// The default domain (the first hosted one).
    pub fn default_domain(&self) -> &str {
        self.server
            .domains
            .first()
            .map(String::as_str)
            .unwrap_or("localhost")
    }

    pub fn hosts(&self, domain: &str) -> bool {
        self.server.domains.iter().any(|d| d == domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::parse(
            "[server]\ndomains = [\"a.example\"]\ndomian = 1\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("domian"), "{err}");
    }

    #[test]
    fn bad_address_is_refused() {
        let err = Config::parse("[c2s]\nstarttls = [\"nope\"]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c2s.starttls"), "{err}");
    }

    #[test]
    fn empty_file_is_the_default() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.server.domains, vec!["localhost".to_string()]);
        assert!(c.c2s.require_encryption);
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The commented example in conf/ must stay valid and must set every section.
    #[test]
    fn example_configuration_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/oriole.toml");
        let cfg = Config::load(Path::new(path)).expect("conf/oriole.toml is valid");
        assert_eq!(cfg.server.domains, vec!["example.org".to_string()]);
        assert_eq!(cfg.c2s.starttls, vec!["0.0.0.0:5222".to_string()]);
        assert_eq!(cfg.c2s.direct_tls, vec!["0.0.0.0:5223".to_string()]);
        assert_eq!(cfg.s2s.listen, vec!["0.0.0.0:5269".to_string()]);
        assert_eq!(cfg.limits.max_stanza_size, 256 * 1024);
        assert!(!cfg.registration.allow);
    }
}
