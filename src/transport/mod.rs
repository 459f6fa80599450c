//! Transport: TLS certificates and configurations, listening sockets and connection limits.
//!
//! - [`tls`]: [`TlsContext`] (rustls server configurations for STARTTLS and Direct TLS, SNI
//!   certificate selection, self-signed fallback) and channel-binding data.
//! - [`listener`]: [`bind_all`] for the configured addresses and [`ConnectionLimiter`].

pub mod listener;
mod self_signed;
pub mod tls;

pub use listener::{bind_all, ConnectionLimiter, ConnectionPermit};
pub use self_signed::{tls_dir, CERT_FILE, KEY_FILE};
pub use tls::{tls_exporter, TlsContext, TlsError, ALPN_XMPP_CLIENT, TLS_EXPORTER_LABEL};
