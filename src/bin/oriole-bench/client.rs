//! One XMPP client connection of the load generator: TCP from a chosen 127.x.y.z source
//! address, STARTTLS or Direct TLS (no certificate check: the servers use self-signed test
//! certificates; no session resumption, so every login pays a full handshake), SASL
//! SCRAM-SHA-1 or PLAIN, resource binding, the legacy session when a server requires it, and
//! initial presence. Independent of the server's code on purpose.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::framer::{self, Frame, Framer};

pub type Tls = TlsStream<TcpStream>;
/// SaltedPassword by (user, salt, iterations).
pub type ScramCache = HashMap<(String, Vec<u8>, u32), [u8; 20]>;
type R<T> = Result<T, String>;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum TlsMode {
    Starttls,
    Direct,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Mech {
    ScramSha1,
    Plain,
}

/// Where and how every client connects.
pub struct Target {
    pub addr: SocketAddr,
    pub domain: String,
    pub tls: TlsMode,
    pub mech: Mech,
    pub password: String,
    pub connector: TlsConnector,
    /// Spread client source addresses over 127.0.0.0/8 (only when the server is on loopback).
    pub spread: bool,
    /// SaltedPassword per (user, salt, iterations), as RFC 5802 §5.1 lets a client keep it.
    pub scram_cache: Mutex<ScramCache>,
}

/// A source address for client `i`: 127.1.0.1, 127.1.0.2, … (62,500 per /16, then the next).
pub fn source_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + ((i / 62_500) % 200) as u8,
        ((i / 250) % 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

pub fn tls_connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        })
        .unwrap_or_else(|e| {
            eprintln!("oriole-bench: TLS setup: {e}");
            std::process::exit(2)
        });
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    // The handshake signature is not checked either: the server signs all the same (its work
    // is what is measured), and checking it (ECDSA P-256) took about a fifth of the
    // generator's CPU per login (user time 0.23-0.32 s -> 0.17-0.23 s for 1,100 logins),
    // while the generator is the ceiling of the login scenario.
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TCP connection to `addr`, from source address `source_ip(i)` when `spread`.
pub async fn connect_tcp(addr: SocketAddr, i: usize, spread: bool) -> R<TcpStream> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if spread {
        sock.bind(SocketAddr::new(source_ip(i), 0))
            .map_err(|e| format!("bind {}: {e}", source_ip(i)))?;
    }
    let s = sock
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(s)
}

pub async fn tls_handshake(target: &Target, tcp: TcpStream) -> R<Tls> {
    let name = ServerName::try_from(target.domain.clone()).map_err(|e| e.to_string())?;
    target
        .connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}

/// An authenticated, bound client.
pub struct Conn {
    pub io: Tls,
    pub framer: Framer,
    /// The full JID the server bound.
    pub jid: String,
    /// Stanzas received during login that the scenario may want (e.g. the roster result).
    pub bytes_in: u64,
}

async fn read_frame<S: AsyncRead + Unpin>(io: &mut S, f: &mut Framer, bytes: &mut u64) -> R<Frame> {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(fr) = f.next_frame() {
            return Ok(fr);
        }
        let n = io.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        *bytes += n as u64;
        f.feed(&buf[..n]);
    }
}

/// The next top-level element, skipping nothing but failing on the stream's end.
async fn read_element<S: AsyncRead + Unpin>(
    io: &mut S,
    f: &mut Framer,
    bytes: &mut u64,
) -> R<Vec<u8>> {
    loop {
        match read_frame(io, f, bytes).await? {
            Frame::Header => continue,
            Frame::End => return Err("stream closed by the server".into()),
            Frame::Element(r) => return Ok(f.get(r).to_vec()),
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(io: &mut S, data: &str) -> R<()> {
    io.write_all(data.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    io.flush().await.map_err(|e| format!("flush: {e}"))
}

fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xml:lang='en' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

fn err_text(el: &[u8]) -> String {
    let s = String::from_utf8_lossy(el);
    s.chars().take(300).collect()
}

/// What to do after binding.
#[derive(Clone, Copy)]
pub struct LoginOpts {
    /// Send initial presence and wait for the server to reflect it back.
    pub presence: bool,
    /// Fetch the roster (before presence) and wait for the result.
    pub roster: bool,
}

/// Connect, negotiate, authenticate as `user`, bind `resource`, and do what `opts` says.
pub async fn login(
    target: &Target,
    i: usize,
    user: &str,
    resource: &str,
    opts: LoginOpts,
) -> R<Conn> {
    let mut tcp = connect_tcp(target.addr, i, target.spread).await?;
    let mut bytes = 0u64;
    if target.tls == TlsMode::Starttls {
        let mut f = Framer::new();
        send(&mut tcp, &header(&target.domain)).await?;
        let features = read_element(&mut tcp, &mut f, &mut bytes).await?;
        if framer::find(&features, b"urn:ietf:params:xml:ns:xmpp-tls").is_none() {
            return Err(format!("no STARTTLS offered: {}", err_text(&features)));
        }
        send(
            &mut tcp,
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        )
        .await?;
        let proceed = read_element(&mut tcp, &mut f, &mut bytes).await?;
        if framer::local_name(&proceed) != b"proceed" {
            return Err(format!("STARTTLS refused: {}", err_text(&proceed)));
        }
    }
    let io = tls_handshake(target, tcp).await?;
    let mut c = Conn {
        io,
        framer: Framer::new(),
        jid: String::new(),
        bytes_in: bytes,
    };
    send(&mut c.io, &header(&target.domain)).await?;
    let features = c.element().await?;
    let mech_name = match target.mech {
        Mech::ScramSha1 => "SCRAM-SHA-1",
        Mech::Plain => "PLAIN",
    };
    if framer::find(&features, format!(">{mech_name}<").as_bytes()).is_none() {
        return Err(format!("{mech_name} not offered: {}", err_text(&features)));
    }
    match target.mech {
        Mech::Plain => {
            let cred = B64.encode(format!("\0{user}\0{}", target.password));
            c.send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{cred}</auth>"
            ))
            .await?;
            let r = c.element().await?;
            if framer::local_name(&r) != b"success" {
                return Err(format!("PLAIN failed for {user}: {}", err_text(&r)));
            }
        }
        Mech::ScramSha1 => scram_sha1(target, &mut c, user).await?,
    }
    c.framer = Framer::new();
    send(&mut c.io, &header(&target.domain)).await?;
    let features = c.element().await?;
    c.send(&format!(
        "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>{resource}</resource></bind></iq>"
    ))
    .await?;
    let r = c.reply("bind1").await?;
    c.jid = framer::child_text(&r, "jid")
        .map(|j| String::from_utf8_lossy(j).into_owned())
        .ok_or_else(|| format!("bind failed: {}", err_text(&r)))?;
    if let Some(at) = framer::find(&features, b"urn:ietf:params:xml:ns:xmpp-session") {
        // Only when the feature is not marked optional (RFC 3921 servers).
        let rest = &features[at..];
        let end = framer::find(rest, b"</session>").unwrap_or(0);
        if framer::find(&rest[..end], b"optional").is_none() {
            c.send("<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
                .await?;
            c.reply("sess1").await?;
        }
    }
    if opts.roster {
        c.send("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
            .await?;
        c.reply("roster1").await?;
    }
    if opts.presence {
        c.send("<presence/>").await?;
        let me = c.jid.clone();
        loop {
            let el = c.element().await?;
            if framer::local_name(&el) == b"presence"
                && framer::attr(&el, "from") == Some(me.as_str())
            {
                break;
            }
        }
    }
    Ok(c)
}

impl Conn {
    pub async fn send(&mut self, data: &str) -> R<()> {
        send(&mut self.io, data).await
    }

    pub async fn element(&mut self) -> R<Vec<u8>> {
        read_element(&mut self.io, &mut self.framer, &mut self.bytes_in).await
    }

    /// Waits for the IQ result with this id (other stanzas are dropped).
    pub async fn reply(&mut self, id: &str) -> R<Vec<u8>> {
        loop {
            let el = self.element().await?;
            if framer::local_name(&el) == b"iq" && framer::attr(&el, "id") == Some(id) {
                if framer::attr(&el, "type") == Some("result") {
                    return Ok(el);
                }
                return Err(format!("iq {id} failed: {}", err_text(&el)));
            }
        }
    }

    /// Ends the stream politely and closes the connection.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.io.write_all(b"</stream:stream>").await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}

type HmacSha1 = Hmac<Sha1>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut m = <HmacSha1 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    m.update(data);
    m.finalize().into_bytes().into()
}

fn unreachable_hmac() -> ! {
    // HMAC takes keys of any length; this cannot happen.
    eprintln!("oriole-bench: HMAC rejected its key");
    std::process::exit(2)
}

pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// SCRAM-SHA-1 keys (stored key, server key) for a salted password.
pub fn scram_keys(salted: &[u8; 20]) -> ([u8; 20], [u8; 20]) {
    let client_key = hmac(salted, b"Client Key");
    let stored: [u8; 20] = Sha1::digest(client_key).into();
    (stored, hmac(salted, b"Server Key"))
}

async fn scram_sha1(target: &Target, c: &mut Conn, user: &str) -> R<()> {
    let nonce: [u8; 18] = rand::random();
    let cnonce = B64.encode(nonce);
    let first_bare = format!("n={user},r={cnonce}");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
        B64.encode(format!("n,,{first_bare}"))
    ))
    .await?;
    let ch = c.element().await?;
    if framer::local_name(&ch) != b"challenge" {
        return Err(format!("SCRAM failed for {user}: {}", err_text(&ch)));
    }
    let server_first = decode_b64_body(&ch)?;
    let mut r = None;
    let mut s = None;
    let mut iters = None;
    for part in server_first.split(',') {
        if let Some(v) = part.strip_prefix("r=") {
            r = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("s=") {
            s = B64.decode(v).ok();
        } else if let Some(v) = part.strip_prefix("i=") {
            iters = v.parse::<u32>().ok();
        }
    }
    let (Some(r), Some(salt), Some(iters)) = (r, s, iters) else {
        return Err(format!("bad SCRAM challenge: {server_first}"));
    };
    if !r.starts_with(&cnonce) {
        return Err("SCRAM nonce mismatch".into());
    }
    let key = (user.to_string(), salt, iters);
    let cached = target
        .scram_cache
        .lock()
        .ok()
        .and_then(|m| m.get(&key).copied());
    let salted = match cached {
        Some(s) => s,
        None => {
            let s = salted_password(&target.password, &key.1, iters);
            if let Ok(mut m) = target.scram_cache.lock() {
                m.insert(key, s);
            }
            s
        }
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored: [u8; 20] = Sha1::digest(client_key).into();
    let without_proof = format!("c=biws,r={r}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let sig = hmac(&stored, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(sig.iter())
        .map(|(a, b)| a ^ b)
        .collect();
    c.send(&format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        B64.encode(format!("{without_proof},p={}", B64.encode(proof)))
    ))
    .await?;
    let server_sig = B64.encode(hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes()));
    let mut el = c.element().await?;
    if framer::local_name(&el) == b"challenge" {
        // Old servers send the verifier as a challenge and want an empty response.
        let v = decode_b64_body(&el)?;
        if v.strip_prefix("v=") != Some(server_sig.as_str()) {
            return Err("server signature mismatch".into());
        }
        c.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .await?;
        el = c.element().await?;
    } else if framer::local_name(&el) == b"success" {
        let v = decode_b64_body(&el)?;
        if !v.is_empty() && v.strip_prefix("v=") != Some(server_sig.as_str()) {
            return Err("server signature mismatch".into());
        }
    }
    if framer::local_name(&el) != b"success" {
        return Err(format!("SCRAM failed for {user}: {}", err_text(&el)));
    }
    Ok(())
}

fn decode_b64_body(el: &[u8]) -> R<String> {
    let gt = el.iter().position(|&b| b == b'>').unwrap_or(0);
    if el.get(gt.wrapping_sub(1)) == Some(&b'/') {
        return Ok(String::new());
    }
    let lt = el.iter().rposition(|&b| b == b'<').unwrap_or(el.len());
    let text: Vec<u8> = el[gt + 1..lt.max(gt + 1)]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text == b"=" {
        return Ok(String::new());
    }
    let raw = B64
        .decode(&text)
        .map_err(|e| format!("bad base64 from server: {e}"))?;
    String::from_utf8(raw).map_err(|_| "non-UTF-8 SASL data".to_string())
}

/// Loads SaltedPassword entries written by [`save_cache`]: `user salt-b64 iterations hex`.
pub fn load_cache(path: &std::path::Path) -> ScramCache {
    let mut m = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return m;
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 {
            continue;
        }
        let (Ok(salt), Ok(it)) = (B64.decode(f[1]), f[2].parse::<u32>()) else {
            continue;
        };
        let Some(bytes) = unhex(f[3]) else { continue };
        let Ok(arr) = <[u8; 20]>::try_from(bytes.as_slice()) else {
            continue;
        };
        m.insert((f[0].to_string(), salt, it), arr);
    }
    m
}

pub fn save_cache(
    path: &std::path::Path,
    m: &HashMap<(String, Vec<u8>, u32), [u8; 20]>,
) -> std::io::Result<()> {
    let mut out = String::new();
    for ((user, salt, it), v) in m {
        out.push_str(&format!("{user} {} {it} {}\n", B64.encode(salt), hex(v)));
    }
    std::fs::write(path, out)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_example_keys() {
        // RFC 5802 §5: user "user", password "pencil", salt QSXCR+Q6sek8bf92, 4096 iterations.
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap_or_default();
        let salted = salted_password("pencil", &salt, 4096);
        let auth = "n=user,r=fyko+d2lbbFgONRv9qkxdawL,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        let (_, server_key) = scram_keys(&salted);
        assert_eq!(
            B64.encode(hmac(&server_key, auth.as_bytes())),
            "rmF9pqV8S7suAoZWja4dJRkFsKQ="
        );
    }

    #[test]
    fn source_addresses_spread() {
        assert_eq!(source_ip(0).to_string(), "127.1.0.1");
        assert_eq!(source_ip(250).to_string(), "127.1.1.1");
        assert_eq!(source_ip(62_500).to_string(), "127.2.0.1");
        assert_ne!(source_ip(1), source_ip(2));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
    }
}
