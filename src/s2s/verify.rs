//! Peer certificates on federation links (RFC 6125, RFC 7590, XEP-0178).
//!
//! rustls only runs the handshake here: its verifiers ([`AcceptAnyServerCert`],
//! [`OptionalClientCert`]) check the handshake signatures and accept any chain, because a
//! link whose certificate does not verify may still authenticate with dialback. What the
//! certificate proves is judged afterwards by [`PeerTrust::check`], against the domain the
//! peer claims: the chain must lead to a trusted root (the system's plus `s2s.ca_file`) with
//! webpki, and the leaf must name the domain.
//!
//! Why our own: rustls' stock client-certificate verifier demands the clientAuth extended
//! key usage, but since February 2026 Let's Encrypt issues serverAuth-only certificates, and
//! servers present those same certificates when they connect out. A peer's chain is checked
//! here for serverAuth (or, failing that, clientAuth) in both directions.
//!
//! Identities (RFC 6125 §6, as profiled for XMPP by RFC 7590 and XEP-0178): SRV-ID
//! (`_xmpp-server.domain`, otherName id-on-dnsSRV), XmppAddr (otherName id-on-xmppAddr),
//! DNS-ID (exact, or `*.parent` matching one leftmost label). The subject CN is not used.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use x509_parser::extensions::GeneralName;

/// id-on-xmppAddr (RFC 6120 §13.7.1.4).
const OID_XMPP_ADDR: &str = "1.3.6.1.5.5.7.8.5";
/// id-on-dnsSRV (RFC 4985).
const OID_DNS_SRV: &str = "1.3.6.1.5.5.7.8.7";

/// The trusted roots and signature algorithms peer chains are checked with.
#[derive(Debug)]
pub struct PeerTrust {
    roots: Vec<TrustAnchor<'static>>,
    algs: WebPkiSupportedAlgorithms,
}

impl PeerTrust {
    /// Trust these roots (DER certificates); unusable ones are skipped and counted.
    pub fn new(certs: &[CertificateDer<'static>]) -> (PeerTrust, usize) {
        let mut roots = Vec::new();
        let mut skipped = 0;
        for c in certs {
            match webpki::anchor_from_trusted_cert(c) {
                Ok(a) => roots.push(a.to_owned()),
                Err(_) => skipped += 1,
            }
        }
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        (PeerTrust { roots, algs }, skipped)
    }

    pub fn root_count(&self) -> usize {
        self.roots.len()
    }

    /// Whether `chain` (leaf first) is a valid certificate for XMPP domain `domain` now.
    pub fn check(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), String> {
        self.check_at(chain, domain, UnixTime::now())
    }

    pub fn check_at(
        &self,
        chain: &[CertificateDer<'_>],
        domain: &str,
        now: UnixTime,
    ) -> Result<(), String> {
        let leaf = chain.first().ok_or("no certificate presented")?;
        let ee = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let intermediates = chain.get(1..).unwrap_or(&[]);
        let verify = |usage| {
            ee.verify_for_usage(
                self.algs.all,
                &self.roots,
                intermediates,
                now,
                usage,
                None,
                None,
            )
            .map(|_| ())
        };
        if let Err(e) = verify(webpki::KeyUsage::server_auth()) {
            verify(webpki::KeyUsage::client_auth())
                .map_err(|_| format!("certificate chain not trusted: {e}"))?;
        }
        let ids = identities(leaf)?;
        if ids.matches(domain) {
            Ok(())
        } else {
            Err(format!(
                "certificate is for {}, not {domain}",
                ids.describe()
            ))
        }
    }
}

/// The XMPP identities a certificate presents.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Identities {
    pub dns: Vec<String>,
    pub srv: Vec<String>,
    pub xmpp_addr: Vec<String>,
}

impl Identities {
    /// RFC 6125 §6.4 matching of an XMPP domain (ASCII, case-insensitive).
    pub fn matches(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if self.xmpp_addr.contains(&domain) {
            return true;
        }
        let srv = format!("_xmpp-server.{domain}");
        if self.srv.contains(&srv) {
            return true;
        }
        self.dns.iter().any(|d| dns_id_matches(d, &domain))
    }

    fn describe(&self) -> String {
        let all: Vec<&str> = self
            .dns
            .iter()
            .chain(&self.srv)
            .chain(&self.xmpp_addr)
            .map(String::as_str)
            .collect();
        if all.is_empty() {
            "no name".into()
        } else {
            all.join(", ")
        }
    }
}

/// DNS-ID matching: exact, or a `*` leftmost label standing for exactly one label.
pub fn dns_id_matches(pattern: &str, domain: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    if pattern == domain {
        return true;
    }
    match (pattern.strip_prefix("*."), domain.split_once('.')) {
        // The parent must have two labels or more: `*.com` names nothing.
        (Some(parent), Some((label, rest))) => {
            !label.is_empty() && parent == rest && parent.contains('.') && !parent.contains('*')
        }
        _ => false,
    }
}

/// Read the identities of a leaf certificate's subjectAltName.
pub fn identities(der: &CertificateDer<'_>) -> Result<Identities, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let mut ids = Identities::default();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    let Some(san) = san else {
        return Ok(ids);
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(n) => ids.dns.push(n.trim_end_matches('.').to_ascii_lowercase()),
            GeneralName::OtherName(oid, value) => {
                let oid = oid.to_id_string();
                let Some(text) = der_string(value) else {
                    continue;
                };
                if oid == OID_XMPP_ADDR {
                    ids.xmpp_addr.push(text.to_ascii_lowercase());
                } else if oid == OID_DNS_SRV {
                    ids.srv
                        .push(text.trim_end_matches('.').to_ascii_lowercase());
                }
            }
            _ => {}
        }
    }
    Ok(ids)
}

/// The string inside an otherName value: `[0] EXPLICIT` around a UTF8String or IA5String
/// (x509-parser hands over the value with or without the explicit tag).
fn der_string(mut bytes: &[u8]) -> Option<String> {
    for _ in 0..3 {
        let (&tag, rest) = bytes.split_first()?;
        let (len, rest) = der_len(rest)?;
        let body = rest.get(..len)?;
        match tag {
            0x0c | 0x16 => return std::str::from_utf8(body).ok().map(str::to_string),
            0xa0 => bytes = body,
            _ => return None,
        }
    }
    None
}

fn der_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first < 0x80 {
        return Some((first as usize, rest));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 3 {
        return None;
    }
    let len_bytes = rest.get(..n)?;
    let len = len_bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | *b as usize);
    Some((len, rest.get(n..)?))
}

fn sig_algs() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// Outbound TLS: any server certificate is accepted during the handshake (signatures are
/// checked); [`PeerTrust::check`] decides afterwards what it proves.
#[derive(Debug)]
pub struct AcceptAnyServerCert;

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &sig_algs())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &sig_algs())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        sig_algs().supported_schemes()
    }
}

/// Inbound TLS: a client certificate is asked for but optional, and any chain is accepted
/// during the handshake; [`PeerTrust::check`] decides afterwards.
#[derive(Debug)]
pub struct OptionalClientCert;

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &sig_algs())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &sig_algs())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        sig_algs().supported_schemes()
    }
}

/// Presents the certificate of one hosted domain when a peer asks for a client certificate.
#[derive(Debug)]
pub struct FixedClientCert(pub Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
    };

    struct Ca {
        cert: rcgen::Certificate,
        issuer: rcgen::Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    fn leaf(
        ca: &Ca,
        sans: Vec<SanType>,
        eku: Vec<ExtendedKeyUsagePurpose>,
    ) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.extended_key_usages = eku;
        p.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn dns(n: &str) -> SanType {
        SanType::DnsName(n.try_into().unwrap())
    }

    fn other(oid: &[u64], v: &str) -> SanType {
        SanType::OtherName((oid.to_vec(), rcgen::OtherNameValue::Utf8String(v.into())))
    }

    fn trust(ca: &Ca) -> PeerTrust {
        PeerTrust::new(&[ca.cert.der().clone()]).0
    }

    #[test]
    fn server_auth_only_certificates_are_accepted() {
        let ca = ca();
        let cert = leaf(
            &ca,
            vec![dns("a.example")],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        );
        trust(&ca).check(&[cert], "a.example").unwrap();
    }

    #[test]
    fn client_auth_only_and_no_eku_certificates_are_accepted() {
        let ca = ca();
        let c1 = leaf(
            &ca,
            vec![dns("a.example")],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        let c2 = leaf(&ca, vec![dns("a.example")], vec![]);
        trust(&ca).check(&[c1], "a.example").unwrap();
        trust(&ca).check(&[c2], "a.example").unwrap();
    }

    #[test]
    fn wrong_name_and_untrusted_chain_are_refused() {
        let ca1 = ca();
        let ca2 = ca();
        let cert = leaf(&ca1, vec![dns("a.example")], vec![]);
        let e = trust(&ca1)
            .check(std::slice::from_ref(&cert), "b.example")
            .unwrap_err();
        assert!(e.contains("not b.example"), "{e}");
        let e = trust(&ca2).check(&[cert], "a.example").unwrap_err();
        assert!(e.contains("not trusted"), "{e}");
        let e = trust(&ca1).check(&[], "a.example").unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn srv_id_and_xmpp_addr_are_read_and_matched() {
        let ca = ca();
        let cert = leaf(
            &ca,
            vec![
                other(&[1, 3, 6, 1, 5, 5, 7, 8, 7], "_xmpp-server.srv.example"),
                other(&[1, 3, 6, 1, 5, 5, 7, 8, 5], "addr.example"),
            ],
            vec![],
        );
        let ids = identities(&cert).unwrap();
        assert_eq!(ids.srv, vec!["_xmpp-server.srv.example".to_string()]);
        assert_eq!(ids.xmpp_addr, vec!["addr.example".to_string()]);
        let t = trust(&ca);
        t.check(std::slice::from_ref(&cert), "srv.example").unwrap();
        t.check(std::slice::from_ref(&cert), "ADDR.example")
            .unwrap();
        assert!(t.check(&[cert], "other.example").is_err());
    }

    #[test]
    fn wildcards_match_one_label() {
        assert!(dns_id_matches("*.example.org", "chat.example.org"));
        assert!(!dns_id_matches("*.example.org", "example.org"));
        assert!(!dns_id_matches("*.example.org", "a.b.example.org"));
        assert!(!dns_id_matches("*.org", "example.org"));
        assert!(!dns_id_matches("a*.example.org", "ab.example.org"));
        assert!(dns_id_matches("Example.ORG.", "example.org"));
    }

    #[test]
    fn der_strings_with_and_without_explicit_tag() {
        assert_eq!(der_string(&[0x0c, 2, b'h', b'i']).as_deref(), Some("hi"));
        assert_eq!(
            der_string(&[0xa0, 4, 0x0c, 2, b'h', b'i']).as_deref(),
            Some("hi")
        );
        assert_eq!(der_string(&[0xa0, 9, 0x0c]), None);
        assert_eq!(der_string(&[]), None);
    }
}
