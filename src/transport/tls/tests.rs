//! Tests of TLS loading, SNI selection, the self-signed fallback and channel binding.
//!
//! Handshakes run in memory between a rustls client and the server configuration under
//! test; the client accepts any certificate and the test inspects which one it got.

use super::*;
use crate::config::CertificateConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, ServerConnection};
use std::path::PathBuf;

/// A generated certificate and key, as PEM, and the certificate's DER.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn make_cert_with(
    names: &[&str],
    alg: &'static rcgen::SignatureAlgorithm,
    not_after: Option<OffsetDateTime>,
) -> TestCert {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    if let Some(t) = not_after {
        params.not_before = t - time::Duration::days(30);
        params.not_after = t;
    }
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn make_cert(names: &[&str]) -> TestCert {
    make_cert_with(names, &rcgen::PKCS_ECDSA_P256_SHA256, None)
}

/// Write the pair as `<stem>.crt` / `<stem>.key` and return the configuration entry.
fn write_pair(dir: &Path, stem: &str, cert: &TestCert) -> CertificateConfig {
    let c = dir.join(format!("{stem}.crt"));
    let k = dir.join(format!("{stem}.key"));
    std::fs::write(&c, &cert.cert_pem).unwrap();
    std::fs::write(&k, &cert.key_pem).unwrap();
    CertificateConfig { cert: c, key: k }
}

fn config(dir: &Path, domains: &[&str], certs: Vec<CertificateConfig>) -> Config {
    let mut cfg = Config::default();
    cfg.server.domains = domains.iter().map(|s| s.to_string()).collect();
    cfg.server.data_dir = dir.to_path_buf();
    cfg.tls.certificate = certs;
    cfg
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate but checks handshake signatures properly.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct ClientOptions {
    tls12_only: bool,
    alpn: Vec<Vec<u8>>,
    sni: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls12_only: false,
            alpn: Vec::new(),
            sni: true,
        }
    }
}

fn client_config(opts: &ClientOptions) -> Arc<ClientConfig> {
    let p = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&p));
    let builder = if opts.tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .unwrap();
    let mut cfg = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(p)))
        .with_no_client_auth();
    cfg.alpn_protocols = opts.alpn.clone();
    cfg.enable_sni = opts.sni;
    Arc::new(cfg)
}

/// Move TLS records from one side to the other until neither has anything to send.
fn pump<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
) -> Result<bool, rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    if buf.is_empty() {
        return Ok(false);
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets()?;
    }
    Ok(true)
}

/// Run a handshake in memory; `Err` carries the first side's error.
fn try_handshake(
    server_cfg: &Arc<rustls::ServerConfig>,
    opts: &ClientOptions,
    name: &str,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut client = ClientConnection::new(client_config(opts), name).unwrap();
    let mut server = ServerConnection::new(Arc::clone(server_cfg)).unwrap();
    for _ in 0..20 {
        let a = pump(&mut client, &mut server)?;
        let b = pump(&mut server, &mut client)?;
        if !a && !b && !client.is_handshaking() && !server.is_handshaking() {
            return Ok((client, server));
        }
    }
    panic!("handshake did not finish");
}

fn handshake(
    server_cfg: &Arc<rustls::ServerConfig>,
    opts: &ClientOptions,
    name: &str,
) -> (ClientConnection, ServerConnection) {
    try_handshake(server_cfg, opts, name).unwrap()
}

fn served_cert(client: &ClientConnection) -> Vec<u8> {
    client.peer_certificates().unwrap()[0].to_vec()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(data).to_vec()
}

#[test]
fn loads_a_pem_pair() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(&["a.example", "*.a.example"]);
    let cfg = config(
        dir.path(),
        &["a.example"],
        vec![write_pair(dir.path(), "a", &a)],
    );
    let ctx = TlsContext::load(&cfg).unwrap();
    assert!(ctx.covers("a.example"));
    assert!(ctx.covers("Conference.A.Example."));
    assert!(!ctx.covers("a.a.a.example"));
    assert!(!ctx.covers("b.example"));
    assert!(!ctx.is_self_signed());
    let lines = ctx.describe(&cfg);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("a.crt"), "{lines:?}");
    assert!(lines[0].contains("a.example, *.a.example"), "{lines:?}");
    assert!(lines[0].contains("valid until"), "{lines:?}");
    // Nothing was generated.
    assert!(!dir.path().join("tls").exists());
    let (client, _) = handshake(&ctx.starttls, &ClientOptions::default(), "a.example");
    assert_eq!(served_cert(&client), a.der);
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(&["a.example"]);
    let b = make_cert(&["a.example"]);
    let mut pair = write_pair(dir.path(), "a", &a);
    pair.key = write_pair(dir.path(), "b", &b).key;
    let err = TlsContext::load(&config(dir.path(), &["a.example"], vec![pair]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not belong"), "{err}");
    assert!(err.contains("b.key") && err.contains("a.crt"), "{err}");
}

#[test]
fn missing_files_and_empty_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(&["a.example"]);
    let good = write_pair(dir.path(), "a", &a);

    let missing = CertificateConfig {
        cert: dir.path().join("nope.crt"),
        key: good.key.clone(),
    };
    let err = TlsContext::load(&config(dir.path(), &["a.example"], vec![missing]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.crt") && err.contains("not found"),
        "{err}"
    );

    let swapped = CertificateConfig {
        cert: good.key.clone(),
        key: good.cert.clone(),
    };
    let err = TlsContext::load(&config(dir.path(), &["a.example"], vec![swapped]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a.key") && err.contains("no certificate"),
        "{err}"
    );
    assert!(err.contains("swapped"), "{err}");

    let no_key = CertificateConfig {
        cert: good.cert.clone(),
        key: good.cert.clone(),
    };
    let err = TlsContext::load(&config(dir.path(), &["a.example"], vec![no_key]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a.crt") && err.contains("no private key"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bad = CertificateConfig {
        cert: garbage,
        key: good.key,
    };
    let err = TlsContext::load(&config(dir.path(), &["a.example"], vec![bad]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("garbage.crt"), "{err}");
}

/// Read one DER TLV at the start of `data`: (tag, contents, rest).
fn der_tlv(data: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = data[0];
    let (len, header) = if data[1] < 0x80 {
        (data[1] as usize, 2)
    } else {
        let n = (data[1] & 0x7f) as usize;
        let len = data[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    (tag, &data[header..header + len], &data[header + len..])
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[test]
fn loads_a_sec1_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(&["a.example"]);
    // PKCS#8 PrivateKeyInfo ::= SEQUENCE { version, algorithm, OCTET STRING privateKey };
    // for EC keys the octet string holds the SEC1 ECPrivateKey.
    let pkcs8 = PrivateKeyDer::from_pem_slice(a.key_pem.as_bytes()).unwrap();
    let (_, info, _) = der_tlv(pkcs8.secret_der());
    let (_, _, rest) = der_tlv(info); // version
    let (_, _, rest) = der_tlv(rest); // algorithm
    let (tag, sec1, _) = der_tlv(rest);
    assert_eq!(tag, 0x04);
    let sec1_pem = pem_block("EC PRIVATE KEY", sec1);
    let pair = write_pair(dir.path(), "a", &a);
    std::fs::write(&pair.key, sec1_pem).unwrap();
    let ctx = TlsContext::load(&config(dir.path(), &["a.example"], vec![pair])).unwrap();
    let (client, _) = handshake(&ctx.starttls, &ClientOptions::default(), "a.example");
    assert_eq!(served_cert(&client), a.der);
}

#[test]
fn sni_picks_the_certificate_and_falls_back_to_the_first_domain() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(&["a.example", "*.a.example"]);
    let b = make_cert(&["b.example"]);
    // b's certificate is configured first, but a.example is the first hosted domain.
    let cfg = config(
        dir.path(),
        &["a.example", "b.example"],
        vec![
            write_pair(dir.path(), "b", &b),
            write_pair(dir.path(), "a", &a),
        ],
    );
    let ctx = TlsContext::load(&cfg).unwrap();
    let cases: &[(&str, bool, &TestCert)] = &[
        ("b.example", true, &b),
        ("a.example", true, &a),
        ("B.Example", true, &b),
        ("conference.a.example", true, &a),
        ("x.b.example", true, &a),
        ("unknown.test", true, &a),
        ("b.example", false, &a), // no SNI sent
    ];
    for (name, sni, want) in cases {
        for server_cfg in [&ctx.starttls, &ctx.direct_tls] {
            let opts = ClientOptions {
                sni: *sni,
                ..Default::default()
            };
            let (client, server) = handshake(server_cfg, &opts, name);
            assert!(served_cert(&client) == want.der, "{name} (sni: {sni})");
            assert_eq!(
                ctx.server_end_point_for(&server),
                Some(sha256(&want.der)),
                "{name}"
            );
        }
    }
    assert_eq!(ctx.server_end_point(None), Some(sha256(&a.der)));
    assert_eq!(
        ctx.server_end_point(Some("b.example")),
        Some(sha256(&b.der))
    );
    let lines = ctx.describe(&cfg);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[1].contains("a.crt") && lines[1].contains("served when"),
        "{lines:?}"
    );
}

#[test]
fn describe_reports_uncovered_domains_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let expired = make_cert_with(
        &["a.example"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
        Some(OffsetDateTime::now_utc() - time::Duration::days(2)),
    );
    let cfg = config(
        dir.path(),
        &["a.example", "b.example"],
        vec![write_pair(dir.path(), "a", &expired)],
    );
    // An expired certificate still loads; describe() warns.
    let ctx = TlsContext::load(&cfg).unwrap();
    let lines = ctx.describe(&cfg);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("EXPIRED"), "{lines:?}");
    assert!(
        lines[1].contains("b.example") && lines[1].contains("no certificate"),
        "{lines:?}"
    );

    let soon = make_cert_with(
        &["a.example"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
        Some(OffsetDateTime::now_utc() + time::Duration::days(3)),
    );
    let cfg = config(
        dir.path(),
        &["a.example"],
        vec![write_pair(dir.path(), "s", &soon)],
    );
    let lines = TlsContext::load(&cfg).unwrap().describe(&cfg);
    assert!(lines[0].contains("expires in"), "{lines:?}");
}

#[test]
fn end_point_hash_follows_the_signature_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, len) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, Some(32)),
        (&rcgen::PKCS_ECDSA_P384_SHA384, Some(48)),
        (&rcgen::PKCS_ED25519, None),
    ] {
        let c = make_cert_with(&["a.example"], alg, None);
        let cfg = config(
            dir.path(),
            &["a.example"],
            vec![write_pair(dir.path(), "a", &c)],
        );
        let ctx = TlsContext::load(&cfg).unwrap();
        let ep = ctx.server_end_point(Some("a.example"));
        assert_eq!(ep.as_ref().map(Vec::len), len, "{alg:?}");
        if len == Some(48) {
            assert_eq!(ep, Some(sha2::Sha384::digest(&c.der).to_vec()));
        }
    }
}

fn single_cert_context(dir: &Path) -> TlsContext {
    let a = make_cert(&["a.example"]);
    TlsContext::load(&config(dir, &["a.example"], vec![write_pair(dir, "a", &a)])).unwrap()
}

#[test]
fn tls_exporter_only_on_tls13() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = single_cert_context(dir.path());

    let (client, server) = handshake(&ctx.starttls, &ClientOptions::default(), "a.example");
    assert_eq!(
        server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let cb = tls_exporter(&server).unwrap();
    assert_eq!(cb.len(), 32);
    let client_cb = client
        .export_keying_material(vec![0u8; 32], TLS_EXPORTER_LABEL, Some(&[]))
        .unwrap();
    assert_eq!(cb, client_cb);

    let opts = ClientOptions {
        tls12_only: true,
        ..Default::default()
    };
    let (_, server) = handshake(&ctx.starttls, &opts, "a.example");
    assert_eq!(
        server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(tls_exporter(&server), None);
    // tls-server-end-point is available on TLS 1.2 too.
    assert_eq!(ctx.server_end_point_for(&server).map(|v| v.len()), Some(32));

    // Before the handshake there is nothing to export.
    let fresh = ServerConnection::new(Arc::clone(&ctx.starttls)).unwrap();
    assert_eq!(tls_exporter(&fresh), None);
}

#[test]
fn direct_tls_offers_xmpp_client_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = single_cert_context(dir.path());
    assert_eq!(ctx.direct_tls.alpn_protocols, vec![b"xmpp-client".to_vec()]);
    assert!(ctx.starttls.alpn_protocols.is_empty());

    let opts = ClientOptions {
        alpn: vec![b"xmpp-client".to_vec()],
        ..Default::default()
    };
    let (client, server) = handshake(&ctx.direct_tls, &opts, "a.example");
    assert_eq!(server.alpn_protocol(), Some(&b"xmpp-client"[..]));
    assert_eq!(client.alpn_protocol(), Some(&b"xmpp-client"[..]));

    // A client that sends no ALPN still connects.
    let (_, server) = handshake(&ctx.direct_tls, &ClientOptions::default(), "a.example");
    assert_eq!(server.alpn_protocol(), None);

    // Over TLS 1.2 as well.
    let opts = ClientOptions {
        alpn: vec![b"xmpp-client".to_vec()],
        tls12_only: true,
        ..Default::default()
    };
    let (_, server) = handshake(&ctx.direct_tls, &opts, "a.example");
    assert_eq!(server.alpn_protocol(), Some(&b"xmpp-client"[..]));
}

fn generated_paths(dir: &Path) -> (PathBuf, PathBuf) {
    let tls = dir.join("tls");
    (tls.join("cert.pem"), tls.join("key.pem"))
}

#[test]
fn self_signed_is_generated_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["a.example", "b.example"], Vec::new());
    let ctx = TlsContext::load(&cfg).unwrap();
    assert!(ctx.is_self_signed());
    let (cert_path, key_path) = generated_paths(dir.path());
    let cert1 = std::fs::read(&cert_path).unwrap();
    let key1 = std::fs::read(&key_path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for name in ["a.example", "*.a.example", "b.example", "*.b.example"] {
        assert!(ctx.describe(&cfg)[0].contains(name), "{name}");
    }
    assert!(ctx.covers("conference.b.example"));
    let (client, _) = handshake(&ctx.starttls, &ClientOptions::default(), "upload.a.example");
    let served = served_cert(&client);
    assert_eq!(ctx.server_end_point(None), Some(sha256(&served)));

    // A second start reuses the files.
    let ctx2 = TlsContext::load(&cfg).unwrap();
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert1);
    assert_eq!(std::fs::read(&key_path).unwrap(), key1);
    let (client, _) = handshake(&ctx2.starttls, &ClientOptions::default(), "a.example");
    assert_eq!(served_cert(&client), served);

    // Only the two files are in the folder (no temporary files left).
    assert_eq!(
        std::fs::read_dir(dir.path().join("tls")).unwrap().count(),
        2
    );
}

#[test]
fn self_signed_is_regenerated_when_domains_change() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, _) = generated_paths(dir.path());
    TlsContext::load(&config(dir.path(), &["a.example"], Vec::new())).unwrap();
    let cert1 = std::fs::read(&cert_path).unwrap();

    let cfg = config(dir.path(), &["a.example", "c.example"], Vec::new());
    let ctx = TlsContext::load(&cfg).unwrap();
    assert_ne!(std::fs::read(&cert_path).unwrap(), cert1);
    assert!(ctx.covers("c.example") && ctx.covers("x.c.example"));
    assert_eq!(ctx.describe(&cfg).len(), 1);
}

#[cfg(unix)]
#[test]
fn self_signed_key_mode_is_narrowed_on_reuse() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, key_path) = generated_paths(dir.path());
    let cfg = config(dir.path(), &["a.example"], Vec::new());
    TlsContext::load(&cfg).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    TlsContext::load(&cfg).unwrap();
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn damaged_self_signed_files_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = generated_paths(dir.path());
    let cfg = config(dir.path(), &["a.example"], Vec::new());
    TlsContext::load(&cfg).unwrap();

    std::fs::write(&cert_path, "not a certificate").unwrap();
    let ctx = TlsContext::load(&cfg).unwrap();
    assert!(ctx.covers("a.example"));

    // A key left from another generation (as after a crash between the two renames).
    let other = make_cert(&["a.example", "*.a.example"]);
    std::fs::write(&key_path, other.key_pem).unwrap();
    let ctx = TlsContext::load(&cfg).unwrap();
    let (client, _) = handshake(&ctx.starttls, &ClientOptions::default(), "a.example");
    assert_eq!(
        ctx.server_end_point(None),
        Some(sha256(&served_cert(&client)))
    );
}

#[test]
fn encrypted_keys_get_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(&["a.example"]);
    let pair = write_pair(dir.path(), "a", &a);
    std::fs::write(
        &pair.key,
        pem_block("ENCRYPTED PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]),
    )
    .unwrap();
    let err = TlsContext::load(&config(dir.path(), &["a.example"], vec![pair]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a.key") && err.contains("encrypted"), "{err}");
}

/// The configurations as the connection code uses them: tokio-rustls over a byte stream.
#[tokio::test]
async fn works_with_tokio_rustls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ctx = single_cert_context(dir.path());
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&ctx.direct_tls));
    let connector = tokio_rustls::TlsConnector::from(client_config(&ClientOptions {
        alpn: vec![ALPN_XMPP_CLIENT.to_vec()],
        ..Default::default()
    }));
    let name = ServerName::try_from("a.example").unwrap();
    let (client, server) = tokio::join!(
        connector.connect(name, client_io),
        acceptor.accept(server_io)
    );
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let conn = server.get_ref().1;
    assert_eq!(conn.server_name(), Some("a.example"));
    assert_eq!(conn.alpn_protocol(), Some(ALPN_XMPP_CLIENT));
    assert_eq!(tls_exporter(conn).map(|v| v.len()), Some(32));
    assert!(ctx.server_end_point_for(conn).is_some());
    client.write_all(b"<stream:stream>").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 15];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"<stream:stream>");
}
