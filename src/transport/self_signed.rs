//! The self-signed certificate used when no `[[tls.certificate]]` is configured.
//!
//! It lives in `<data_dir>/tls/cert.pem` and `key.pem` (mode 0600, in a 0700 folder). It
//! is generated on first start with an ECDSA P-256 key and names every hosted domain and
//! `*.domain` (an IP-literal domain is named as an IP address, without a wildcard). On
//! later starts it is reused as long as it names exactly those, loads, its key matches
//! and it is more than [`RENEW_BEFORE_DAYS`] days from expiry; otherwise it is replaced,
//! which changes the fingerprint clients may have pinned.
//!
//! Both files are written through a temporary file and a rename, key first. A crash
//! between the two renames leaves a key that does not match the certificate, which the
//! next start sees and repairs by generating again.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustls::crypto::CryptoProvider;
use time::{Duration, OffsetDateTime};

use super::tls::{load_pem_pair, CertEntry, TlsError};

/// Validity of a generated certificate.
const VALIDITY_DAYS: i64 = 3650;
/// A reused certificate closer than this to expiry is replaced.
const RENEW_BEFORE_DAYS: i64 = 30;

/// File names inside `<data_dir>/tls/`.
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// The folder holding the generated certificate.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// Reuse the certificate in `<data_dir>/tls/` when it still fits `domains`, else generate.
pub(super) fn load_or_generate(
    data_dir: &Path,
    domains: &[String],
    provider: &CryptoProvider,
) -> Result<CertEntry, TlsError> {
    let dir = tls_dir(data_dir);
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let wanted = wanted_names(domains);
    for domain in domains.iter().filter(|d| !d.is_ascii()) {
        tracing::warn!(
            domain = %domain,
            "the self-signed certificate cannot name a non-ASCII domain; write it in ASCII (xn--) form"
        );
    }
    if cert_path.exists() || key_path.exists() {
        match load_pem_pair(&cert_path, &key_path, provider) {
            Ok(mut entry) => {
                let have: BTreeSet<String> = entry.leaf.names.iter().cloned().collect();
                let renew_at = OffsetDateTime::now_utc() + Duration::days(RENEW_BEFORE_DAYS);
                if have != wanted {
                    tracing::info!(
                        "hosted domains changed: generating a new self-signed certificate"
                    );
                } else if entry.leaf.not_after <= renew_at {
                    tracing::info!("self-signed certificate expires soon: generating a new one");
                } else {
                    restrict_key_file(&key_path)?;
                    entry.self_signed = true;
                    return Ok(entry);
                }
            }
            Err(e) => {
                tracing::warn!("replacing the generated certificate: {e}");
            }
        }
    }
    generate(&dir, &cert_path, &key_path, &wanted)?;
    tracing::info!(
        certificate = %cert_path.display(),
        "generated a self-signed TLS certificate; configure [[tls.certificate]] for one clients trust"
    );
    let mut entry = load_pem_pair(&cert_path, &key_path, provider)?;
    entry.self_signed = true;
    Ok(entry)
}

/// IP-literal domains may be written in brackets.
fn domain_ip(domain: &str) -> Option<IpAddr> {
    let bare = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .unwrap_or(domain);
    bare.parse().ok()
}

/// The names the certificate must carry, as [`super::tls::inspect_leaf`] reports them.
fn wanted_names(domains: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for domain in domains {
        match domain_ip(domain) {
            Some(ip) => {
                names.insert(ip.to_string());
            }
            // Certificates carry ASCII (A-label) names; an internationalized domain written
            // in Unicode cannot be named without IDNA conversion and is left out.
            None if !domain.is_ascii() => {}
            None => {
                let d = domain.trim_end_matches('.').to_ascii_lowercase();
                names.insert(format!("*.{d}"));
                names.insert(d);
            }
        }
    }
    names
}

fn generate(
    dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    names: &BTreeSet<String>,
) -> Result<(), TlsError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        TlsError(format!(
            "cannot generate a self-signed certificate: {what}: {e}"
        ))
    };
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail("key", &e))?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
            Err(_) => rcgen::string::Ia5String::try_from(name.as_str())
                .map(rcgen::SanType::DnsName)
                .map_err(|e| fail(name, &e)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut dn = rcgen::DistinguishedName::new();
    // The first non-wildcard name, for people reading the certificate.
    let common_name = names
        .iter()
        .find(|n| !n.starts_with('*'))
        .map(String::as_str)
        .unwrap_or("oriole");
    dn.push(rcgen::DnType::CommonName, common_name);
    dn.push(rcgen::DnType::OrganizationName, "Oriole self-signed");
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(VALIDITY_DAYS);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| fail("certificate", &e))?;

    create_private_dir(dir)?;
    write_atomically(key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| TlsError(format!("{}: cannot create folder: {e}", dir.display())))
}

/// Write `data` to `path` via a temporary file in the same folder and a rename, so the
/// file is either the old or the new one, never a partial one. `mode` applies on Unix.
fn write_atomically(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |e: std::io::Error| TlsError(format!("{}: cannot write: {e}", path.display()));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        // The umask may have narrowed the mode; make it exact.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // Make the rename durable; not all systems allow syncing a folder, so failure is ignored.
    if let Some(parent) = path.parent() {
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Narrow a reused key file to 0600 if someone widened it.
fn restrict_key_file(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| TlsError(format!("{}: cannot read: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(key = %path.display(), "private key was readable by others: setting mode 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| TlsError(format!("{}: cannot set mode 0600: {e}", path.display())))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_names_cover_domains_and_wildcards() {
        let names = wanted_names(&[
            "Example.org".into(),
            "[::1]".into(),
            "127.0.0.1".into(),
            "bücher.example".into(),
        ]);
        let expected: BTreeSet<String> = ["example.org", "*.example.org", "::1", "127.0.0.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.pem");
        write_atomically(&path, b"one", 0o600).unwrap();
        write_atomically(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
