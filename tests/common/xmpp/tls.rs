//! TLS for the test client: rustls with the ring provider, and a certificate verifier that
//! suits a server with a self-signed certificate. The handshake signature is always verified;
//! the certificate is either accepted as it is or pinned to known certificates.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Any certificate (the handshake signature is still checked against it).
    Any,
    /// Only these certificates, compared byte for byte with the server's end-entity certificate.
    Pinned(Vec<CertificateDer<'static>>),
}

impl Trust {
    /// Pin the certificates of a PEM file (e.g. `<data_dir>/tls/cert.pem`).
    pub fn pin_pem_file(path: &Path) -> Result<Trust, String> {
        let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect();
        let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", path.display()));
        }
        Ok(Trust::Pinned(certs))
    }
}

#[derive(Debug)]
struct Verifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            Trust::Any => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(certs) => {
                if certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::UnknownIssuer,
                    ))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration; `alpn` is offered in the handshake when given (Direct TLS uses
/// `xmpp-client`, XEP-0368).
pub fn client_config(trust: &Trust, alpn: Option<&[u8]>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            trust: trust.clone(),
            provider,
        }))
        .with_no_client_auth();
    if let Some(p) = alpn {
        config.alpn_protocols = vec![p.to_vec()];
    }
    Arc::new(config)
}

/// What the client learnt from a completed handshake.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub version: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
    /// RFC 9266 `tls-exporter` channel-binding data (32 bytes), when the protocol allows it.
    pub exporter: Option<Vec<u8>>,
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    pub fn from_connection(conn: &rustls::ClientConnection) -> TlsInfo {
        let exporter = conn
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
            .map(|k| k.to_vec());
        TlsInfo {
            version: conn.protocol_version(),
            alpn: conn.alpn_protocol().map(|p| p.to_vec()),
            exporter,
            peer_certificates: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        }
    }
}
