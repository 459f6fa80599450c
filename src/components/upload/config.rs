//! The `[upload]`, `[turn]` and `[proxy65]` configuration sections. Each service is on by
//! default so that a fresh install shares files and places calls with no configuration.

use serde::Deserialize;

use crate::config::{Config, ConfigError};

/// `[upload]`: HTTP File Upload (XEP-0363).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Serve `upload.<domain>` and the HTTPS service for PUT and GET.
    pub enable: bool,
    /// Address of the HTTPS service (TLS with the server's certificates).
    pub http_listen: String,
    /// Base URL clients use to reach the HTTPS service, e.g. "https://upload.example.org:5281".
    /// Empty: `https://<domain>:<port of http_listen>` (the certificate covers the domain).
    pub public_url: String,
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    /// Bytes one account may keep stored at once (0: no quota).
    pub quota_per_user: u64,
    /// Files are removed this many days after their upload (0: kept forever).
    pub expire_after_days: u64,
    /// MIME types accepted (e.g. "image/png", or "image/*"); empty: any.
    pub allowed_content_types: Vec<String>,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enable: true,
            http_listen: "0.0.0.0:5281".into(),
            public_url: String::new(),
            max_file_size: 100 * 1024 * 1024,
            quota_per_user: 1024 * 1024 * 1024,
            expire_after_days: 30,
            allowed_content_types: Vec::new(),
        }
    }
}

/// `[turn]`: STUN/TURN for calls, advertised with XEP-0215.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Advertise STUN and TURN with external service discovery (XEP-0215).
    pub enable: bool,
    /// Run the built-in STUN/TURN server; false to advertise an external one (e.g. coturn
    /// with `use-auth-secret` and the same `secret`).
    pub builtin: bool,
    /// UDP address of the built-in server.
    pub listen: String,
    /// Host name or address advertised to clients. Empty: the domain.
    pub host: String,
    /// Port advertised to clients. 0: the built-in server's port (3478 for an external one).
    pub port: u16,
    /// Shared secret of the TURN REST credential scheme. Empty: a random secret generated
    /// once and kept in `<data_dir>/turn.secret` (fine for the built-in server).
    pub secret: String,
    /// Realm of the long-term credentials. Empty: the first hosted domain.
    pub realm: String,
    /// UDP ports for relayed addresses, "FIRST-LAST".
    pub relay_ports: String,
    /// Address advertised for relayed transport addresses. Empty: the listen address, or the
    /// machine's primary address when listening on 0.0.0.0.
    pub relay_ip: String,
    /// How long advertised credentials stay valid, in seconds.
    pub credential_ttl_secs: u64,
    /// Let clients relay to loopback, private (RFC 1918, fc00::/7), link-local, shared
    /// (100.64.0.0/10) and other non-public peer addresses. Off by default, so that the TURN
    /// server cannot be used to reach this machine's own services or its LAN (coturn's
    /// `denied-peer-ip`); turn it on for calls between devices on a private network.
    pub relay_private_peers: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            enable: true,
            builtin: true,
            listen: "0.0.0.0:3478".into(),
            host: String::new(),
            port: 0,
            secret: String::new(),
            realm: String::new(),
            relay_ports: "49152-65535".into(),
            relay_ip: String::new(),
            credential_ttl_secs: 86400,
            relay_private_peers: false,
        }
    }
}

impl TurnConfig {
    /// The relay port range.
    pub fn relay_range(&self) -> Option<(u16, u16)> {
        let (a, b) = self.relay_ports.split_once('-')?;
        let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (a <= b && a > 0).then_some((a, b))
    }
}

/// `[proxy65]`: SOCKS5 bytestream proxy (XEP-0065).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy65Config {
    /// Serve `proxy.<domain>`.
    pub enable: bool,
    /// TCP address of the SOCKS5 listener.
    pub listen: String,
    /// Host name or address advertised in `<streamhost/>`. Empty: the domain.
    pub host: String,
}

impl Default for Proxy65Config {
    fn default() -> Self {
        Proxy65Config {
            enable: true,
            listen: "0.0.0.0:7777".into(),
            host: String::new(),
        }
    }
}

/// Checks of the three sections.
pub fn validate(cfg: &Config, origin: &str) -> Result<(), ConfigError> {
    let addr = |key: &str, v: &str| {
        v.parse::<std::net::SocketAddr>().map(|_| ()).map_err(|_| {
            ConfigError(format!(
                "{origin}: {key}: {v:?} is not an address such as \"0.0.0.0:5281\""
            ))
        })
    };
    if cfg.upload.enable {
        addr("upload.http_listen", &cfg.upload.http_listen)?;
        let url = cfg.upload.public_url.trim_end_matches('/');
        if !url.is_empty() && !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(ConfigError(format!(
                "{origin}: upload.public_url must start with https://"
            )));
        }
    }
    if cfg.turn.enable && cfg.turn.builtin {
        addr("turn.listen", &cfg.turn.listen)?;
        if cfg.turn.relay_range().is_none() {
            return Err(ConfigError(format!(
                "{origin}: turn.relay_ports must be \"FIRST-LAST\", e.g. \"49152-65535\""
            )));
        }
        if !cfg.turn.relay_ip.is_empty() && cfg.turn.relay_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError(format!(
                "{origin}: turn.relay_ip must be an IP address"
            )));
        }
    }
    if cfg.turn.enable && !cfg.turn.builtin && cfg.turn.secret.is_empty() {
        return Err(ConfigError(format!(
            "{origin}: turn.secret must be set (the external TURN server's shared secret) when turn.builtin = false"
        )));
    }
    if cfg.proxy65.enable {
        addr("proxy65.listen", &cfg.proxy65.listen)?;
    }
    Ok(())
}
