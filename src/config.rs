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
    /// `[push]`: push notifications (XEP-0357).
    pub push: crate::modules::push::PushConfig,
    pub log: LogConfig,
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
    pub abuse_contacts: Vec<String>,
    /// Where to report security issues (XEP-0157 security-addresses).
    pub security_contacts: Vec<String>,
    /// Where users get help (XEP-0157 support-addresses).
    pub support_contacts: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            domains: vec!["localhost".into()],
            data_dir: PathBuf::from("data"),
            admin_contacts: Vec::new(),
            abuse_contacts: Vec::new(),
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
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Addresses for server-to-server connections (federation). Empty: no federation.
    pub listen: Vec<String>,
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
        ] {
            for addr in list {
                addr.parse::<std::net::SocketAddr>().map_err(|_| {
                    ConfigError(format!(
                        "{origin}: {key}: {addr:?} is not an address such as \"0.0.0.0:5222\""
                    ))
                })?;
            }
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(ConfigError(format!(
                "{origin}: log.format must be \"text\" or \"json\""
            )));
        }
        if self.limits.max_stanza_size < 10_000 {
            return Err(ConfigError(format!(
                "{origin}: limits.max_stanza_size must be at least 10000 (RFC 6120 §13.12)"
            )));
        }
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
