//! TLS server configuration: certificates, SNI selection and channel-binding data.
//!
//! [`TlsContext::load`] builds two rustls server configurations sharing one certificate
//! store: one for STARTTLS (no ALPN) and one for Direct TLS (XEP-0368, ALPN
//! `xmpp-client`). Both use the ring provider explicitly and rustls' default protocol
//! versions, TLS 1.2 and 1.3.
//!
//! Certificates come from the `[[tls.certificate]]` PEM pairs of the configuration, or,
//! when none is configured, from a self-signed certificate kept in `<data_dir>/tls/`
//! (see `self_signed`). The names a certificate is served for are the DNS names of its
//! subjectAltName extension. A client's SNI name picks the certificate that names it
//! exactly, else one with a matching `*.parent` wildcard; without SNI, or for a name no
//! certificate covers, the certificate of the first hosted domain is served, so a
//! handshake never fails for want of a certificate.
//!
//! For SCRAM-PLUS, [`TlsContext::server_end_point`] gives RFC 5929 `tls-server-end-point`
//! data and [`tls_exporter`] gives RFC 9266 `tls-exporter` data.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::config::Config;

/// ALPN protocol name of XMPP client connections over Direct TLS (XEP-0368).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// Exporter label of the `tls-exporter` channel binding (RFC 9266).
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// Certificates expiring sooner than this many days are reported.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// A TLS setup problem, naming the files involved and the reason.
#[derive(Debug)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS configurations and the certificates they serve.
#[derive(Debug, Clone)]
pub struct TlsContext {
    /// For STARTTLS on c2s: no ALPN requirement.
    pub starttls: Arc<rustls::ServerConfig>,
    /// For Direct TLS c2s (XEP-0368): ALPN "xmpp-client" offered (clients that send no
    /// ALPN still connect).
    pub direct_tls: Arc<rustls::ServerConfig>,
    /// For the HTTPS upload service (XEP-0363): ALPN "http/1.1".
    pub https: Arc<rustls::ServerConfig>,
    store: Arc<CertStore>,
}

impl TlsContext {
    /// Load `config.tls.certificate` PEM files, or when none is configured generate (first
    /// start) / reuse a self-signed certificate kept in `<data_dir>/tls/` (cert.pem,
    /// key.pem with 0600 permissions) covering every hosted domain and `*.domain`
    /// (regenerate when the domain list changed).
    pub fn load(config: &Config) -> Result<TlsContext, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let entries = if config.tls.certificate.is_empty() {
            vec![super::self_signed::load_or_generate(
                &config.server.data_dir,
                &config.server.domains,
                &provider,
            )?]
        } else {
            config
                .tls
                .certificate
                .iter()
                .map(|c| load_pem_pair(&c.cert, &c.key, &provider))
                .collect::<Result<Vec<_>, _>>()?
        };
        let store = Arc::new(CertStore::new(entries, config.default_domain())?);
        store.log_warnings(config);
        let ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError(format!("cannot set up TLS session tickets: {e}")))?;
        let make = |alpn: &[&[u8]]| -> Result<Arc<rustls::ServerConfig>, TlsError> {
            let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError(format!("cannot set up TLS: {e}")))?
                .with_no_client_auth()
                .with_cert_resolver(Arc::clone(&store) as Arc<dyn ResolvesServerCert>);
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            cfg.ticketer = Arc::clone(&ticketer);
            Ok(Arc::new(cfg))
        };
        Ok(TlsContext {
            starttls: make(&[])?,
            direct_tls: make(&[ALPN_XMPP_CLIENT])?,
            https: make(&[b"http/1.1"])?,
            store,
        })
    }

    /// RFC 5929 tls-server-end-point data for the certificate served for this SNI name
    /// (None -> the default certificate): hash of the leaf DER with SHA-256 when the
    /// cert's signature uses MD5/SHA-1/SHA-256, else that signature's hash (SHA-224/384/512).
    ///
    /// `None` when the signature algorithm has no single hash function (Ed25519, Ed448) or
    /// is unknown: the binding is undefined for such certificates.
    pub fn server_end_point(&self, sni: Option<&str>) -> Option<Vec<u8>> {
        self.store.select(sni)?.leaf.end_point.clone()
    }

    /// [`Self::server_end_point`] for the certificate served on this connection.
    pub fn server_end_point_for(&self, conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
        self.server_end_point(conn.server_name())
    }

    /// The certificate and key served for `name` (the default one when none names it):
    /// what an outbound federation link presents for a hosted domain.
    pub fn certified_key(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.store.select(Some(name)).map(|e| Arc::clone(&e.key))
    }

    /// The SNI certificate resolver, for other server configurations (federation).
    pub fn cert_resolver(&self) -> Arc<dyn ResolvesServerCert> {
        Arc::clone(&self.store) as Arc<dyn ResolvesServerCert>
    }

    /// Whether some certificate names `name` (exactly or by wildcard).
    pub fn covers(&self, name: &str) -> bool {
        self.store.lookup(name).is_some()
    }

    /// Whether the certificate in use is the generated self-signed one.
    pub fn is_self_signed(&self) -> bool {
        self.store.entries.iter().any(|e| e.self_signed)
    }

    /// One line per certificate for `oriole check`: names covered, expiry, which hosted
    /// domains lack a certificate.
    pub fn describe(&self, config: &Config) -> Vec<String> {
        self.store.describe(config, OffsetDateTime::now_utc())
    }
}

/// RFC 9266 tls-exporter channel binding: 32 bytes of exporter "EXPORTER-Channel-Binding",
/// empty context — only on TLS 1.3 (None otherwise, and before the handshake is done).
pub fn tls_exporter(conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
    if conn.is_handshaking() || conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material(vec![0u8; 32], TLS_EXPORTER_LABEL, Some(&[]))
        .ok()
}

/// One certificate chain with its key and what was read from its leaf.
#[derive(Debug)]
pub(super) struct CertEntry {
    pub(super) key: Arc<CertifiedKey>,
    /// Where it came from, for messages: the certificate file.
    pub(super) origin: String,
    pub(super) self_signed: bool,
    pub(super) leaf: LeafInfo,
}

/// Facts about a leaf certificate.
#[derive(Debug, Clone)]
pub(super) struct LeafInfo {
    /// subjectAltName DNS names (lowercase, possibly `*.parent`) and IP addresses.
    pub(super) names: Vec<String>,
    pub(super) not_before: OffsetDateTime,
    pub(super) not_after: OffsetDateTime,
    /// RFC 5929 tls-server-end-point data.
    pub(super) end_point: Option<Vec<u8>>,
}

/// The certificates and the SNI index over them; the rustls certificate resolver.
#[derive(Debug)]
struct CertStore {
    entries: Vec<CertEntry>,
    exact: HashMap<String, usize>,
    /// Parent domain of a `*.parent` name -> entry.
    wildcard: HashMap<String, usize>,
    /// Entry served without SNI or for unknown names.
    default: usize,
}

impl CertStore {
    /// Index the entries. A name claimed by several certificates goes to the first one.
    fn new(entries: Vec<CertEntry>, default_domain: &str) -> Result<CertStore, TlsError> {
        if entries.is_empty() {
            return Err(TlsError("no TLS certificate configured".into()));
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            for name in &entry.leaf.names {
                if let Some(parent) = name.strip_prefix("*.") {
                    if !parent.contains('*') {
                        wildcard.entry(parent.to_string()).or_insert(i);
                    }
                } else if !name.contains('*') {
                    exact.entry(name.clone()).or_insert(i);
                }
            }
        }
        let mut store = CertStore {
            entries,
            exact,
            wildcard,
            default: 0,
        };
        store.default = store.lookup(default_domain).unwrap_or(0);
        Ok(store)
    }

    /// The entry naming `name` exactly, else by a `*.parent` wildcard.
    fn lookup(&self, name: &str) -> Option<usize> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(i) = self.exact.get(&name) {
            return Some(*i);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }

    /// The entry served for this SNI name.
    fn select(&self, sni: Option<&str>) -> Option<&CertEntry> {
        let index = sni.and_then(|n| self.lookup(n)).unwrap_or(self.default);
        self.entries.get(index).or_else(|| self.entries.first())
    }

    fn uncovered<'a>(&self, config: &'a Config) -> Vec<&'a str> {
        config
            .server
            .domains
            .iter()
            .filter(|d| self.lookup(d).is_none())
            .map(String::as_str)
            .collect()
    }

    fn describe(&self, config: &Config, now: OffsetDateTime) -> Vec<String> {
        let mut lines = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            let names = if entry.leaf.names.is_empty() {
                "no DNS names (subjectAltName)".to_string()
            } else {
                entry.leaf.names.join(", ")
            };
            let mut line = format!(
                "{}{}: {names}; {}",
                entry.origin,
                if entry.self_signed {
                    " (self-signed)"
                } else {
                    ""
                },
                validity_text(&entry.leaf, now)
            );
            if i == self.default && self.entries.len() > 1 {
                line.push_str("; served when the client names no known domain");
            }
            lines.push(line);
        }
        let default_origin = self
            .entries
            .get(self.default)
            .map(|e| e.origin.as_str())
            .unwrap_or("");
        for domain in self.uncovered(config) {
            lines.push(format!(
                "no certificate covers hosted domain {domain}: its clients get {default_origin}, which they will refuse"
            ));
        }
        lines
    }

    fn log_warnings(&self, config: &Config) {
        let now = OffsetDateTime::now_utc();
        for entry in &self.entries {
            if let Some(problem) = validity_problem(&entry.leaf, now) {
                tracing::warn!(certificate = %entry.origin, "TLS certificate {problem}");
            }
        }
        for domain in self.uncovered(config) {
            tracing::warn!(domain, "no TLS certificate covers this hosted domain");
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.select(client_hello.server_name())
            .map(|e| Arc::clone(&e.key))
    }
}

fn format_date(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// "EXPIRED …", "not valid before …" or "expires in N days", or None when fine for now.
fn validity_problem(leaf: &LeafInfo, now: OffsetDateTime) -> Option<String> {
    if leaf.not_after <= now {
        Some(format!("EXPIRED on {}", format_date(leaf.not_after)))
    } else if leaf.not_before > now {
        Some(format!("not valid before {}", format_date(leaf.not_before)))
    } else {
        let days = (leaf.not_after - now).whole_days();
        (days < EXPIRY_WARNING_DAYS).then(|| {
            format!(
                "expires in {days} days (on {})",
                format_date(leaf.not_after)
            )
        })
    }
}

fn validity_text(leaf: &LeafInfo, now: OffsetDateTime) -> String {
    match validity_problem(leaf, now) {
        Some(p) => format!("WARNING: {p}"),
        None => format!(
            "valid until {} ({} days left)",
            format_date(leaf.not_after),
            (leaf.not_after - now).whole_days()
        ),
    }
}

/// Load a PEM certificate chain (leaf first) and its private key, checking they match.
pub(super) fn load_pem_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertEntry, TlsError> {
    let chain = read_chain(cert_path)?;
    let key = read_key(key_path)?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        TlsError(format!(
            "{}: unsupported private key: {e}",
            key_path.display()
        ))
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // The ring provider always knows the public key; a provider that did not could not
        // be checked here, and a wrong key would then fail each handshake instead.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError(format!(
                "{}: the private key does not belong to the certificate in {}",
                key_path.display(),
                cert_path.display()
            )))
        }
        Err(e) => {
            return Err(TlsError(format!(
                "{}: unusable certificate: {e}",
                cert_path.display()
            )))
        }
    }
    let leaf = certified
        .cert
        .first()
        .ok_or_else(|| TlsError(format!("{}: no certificate found", cert_path.display())))?;
    let leaf = inspect_leaf(leaf).map_err(|e| TlsError(format!("{}: {e}", cert_path.display())))?;
    Ok(CertEntry {
        key: Arc::new(certified),
        origin: cert_path.display().to_string(),
        self_signed: false,
        leaf,
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    match e {
        pem::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            TlsError(format!("{}: file not found", path.display()))
        }
        pem::Error::Io(io) => TlsError(format!("{}: cannot read: {io}", path.display())),
        other => TlsError(format!("{}: not a valid PEM file: {other}", path.display())),
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        let hint = if PrivateKeyDer::from_pem_file(path).is_ok() {
            " (it holds a private key: are the cert and key files swapped?)"
        } else {
            ""
        };
        return Err(TlsError(format!(
            "{}: no certificate found, expected a \"BEGIN CERTIFICATE\" block{hint}",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_file(path) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let encrypted = std::fs::read(path)
                .map(|b| b.windows(23).any(|w| w == b"ENCRYPTED PRIVATE KEY--"))
                .unwrap_or(false);
            let hint = if encrypted {
                " (encrypted keys are not supported: store it without a passphrase)"
            } else {
                ""
            };
            Err(TlsError(format!(
                "{}: no private key found, expected a PKCS#8 \"BEGIN PRIVATE KEY\", PKCS#1 \"BEGIN RSA PRIVATE KEY\" or SEC1 \"BEGIN EC PRIVATE KEY\" block{hint}",
                path.display()
            )))
        }
        Err(e) => Err(pem_error(path, e)),
    }
}

/// Read names, validity and the tls-server-end-point hash from a leaf certificate.
pub(super) fn inspect_leaf(der: &CertificateDer<'_>) -> Result<LeafInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let mut names = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("cannot read the certificate's subjectAltName: {e}"))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.trim_end_matches('.').to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let end_point = end_point_hash(&cert).map(|h| h.digest(der.as_ref()));
    Ok(LeafInfo {
        names,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        end_point,
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
    }
}

/// Hash functions of tls-server-end-point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndPointHash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl EndPointHash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            EndPointHash::Sha224 => sha2::Sha224::digest(data).to_vec(),
            EndPointHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            EndPointHash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            EndPointHash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5929 §4.1: MD5 and SHA-1 are replaced by SHA-256.
    fn for_hash_oid(oid: &str) -> Option<EndPointHash> {
        match oid {
            "1.2.840.113549.2.5" | "1.3.14.3.2.26" | "2.16.840.1.101.3.4.2.1" => {
                Some(EndPointHash::Sha256)
            }
            "2.16.840.1.101.3.4.2.4" => Some(EndPointHash::Sha224),
            "2.16.840.1.101.3.4.2.2" => Some(EndPointHash::Sha384),
            "2.16.840.1.101.3.4.2.3" => Some(EndPointHash::Sha512),
            _ => None,
        }
    }
}

/// The tls-server-end-point hash for a certificate, from its signature algorithm.
fn end_point_hash(cert: &X509Certificate<'_>) -> Option<EndPointHash> {
    let alg = &cert.signature_algorithm;
    let oid = alg.algorithm.to_id_string();
    let hash_oid = match oid.as_str() {
        // md5WithRSAEncryption, sha1WithRSAEncryption, ecdsa-with-SHA1, dsa-with-sha1
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.10045.4.1"
        | "1.2.840.10040.4.3" => "1.3.14.3.2.26",
        // sha256WithRSAEncryption, ecdsa-with-SHA256, dsa-with-sha256
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" | "2.16.840.1.101.3.4.3.2" => {
            "2.16.840.1.101.3.4.2.1"
        }
        // sha224WithRSAEncryption, ecdsa-with-SHA224, dsa-with-sha224
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" | "2.16.840.1.101.3.4.3.1" => {
            "2.16.840.1.101.3.4.2.4"
        }
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => "2.16.840.1.101.3.4.2.2",
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => "2.16.840.1.101.3.4.2.3",
        // RSASSA-PSS: the hash is in the parameters.
        "1.2.840.113549.1.1.10" => {
            use x509_parser::signature_algorithm::SignatureAlgorithm;
            return match SignatureAlgorithm::try_from(alg) {
                Ok(SignatureAlgorithm::RSASSA_PSS(params)) => {
                    EndPointHash::for_hash_oid(&params.hash_algorithm_oid().to_id_string())
                }
                _ => None,
            };
        }
        // Ed25519, Ed448 and anything unknown: no single hash function.
        _ => return None,
    };
    EndPointHash::for_hash_oid(hash_oid)
}

#[cfg(test)]
pub(super) mod tests;
