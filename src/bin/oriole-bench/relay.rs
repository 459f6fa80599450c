//! The physical-limit reference for the chat scenario: a TLS byte forwarder with no XML and
//! no routing. Clients connect with Direct TLS and send one line `PAIR <n>\n`; the two
//! connections that name the same pair are joined and every byte one sends is copied to the
//! other. The chat scenario then runs unchanged over it (same stanza bytes, same framing).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::client::{self, Target};
use crate::framer::Framer;

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<TlsStream<tokio::net::TcpStream>>>>>;

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the relay until the process is stopped.
pub async fn serve(listen: SocketAddr, cert: &Path, key: &Path) -> Result<(), String> {
    let acceptor = acceptor(cert, key)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listen {listen}: {e}"))?;
    eprintln!("oriole-bench relay listening on {listen}");
    let waiting: Waiting = Arc::default();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let waiting = waiting.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Some(pair) = read_pair_line(&mut tls).await else {
                return;
            };
            let rx = {
                let Ok(mut w) = waiting.lock() else { return };
                match w.remove(&pair) {
                    Some(tx) => {
                        // Second of the pair: hand the stream to the first, which copies.
                        let _ = tx.send(tls);
                        return;
                    }
                    None => {
                        let (tx, rx) = oneshot::channel();
                        w.insert(pair, tx);
                        rx
                    }
                }
            };
            if let Ok(mut other) = rx.await {
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut other).await;
            }
        });
    }
}

async fn read_pair_line(tls: &mut TlsStream<tokio::net::TcpStream>) -> Option<u64> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 40 {
        if tls.read(&mut b).await.ok()? == 0 {
            return None;
        }
        if b[0] == b'\n' {
            let s = std::str::from_utf8(&line).ok()?;
            return s.strip_prefix("PAIR ")?.trim().parse().ok();
        }
        line.push(b[0]);
    }
    None
}

/// A chat client connection through the relay: Direct TLS, then the pair line.
pub async fn connect(target: &Target, i: usize, pair: u64) -> Result<client::Conn, String> {
    let tcp = client::connect_tcp(target.addr, i, target.spread).await?;
    let mut io = client::tls_handshake(target, tcp).await?;
    io.write_all(format!("PAIR {pair}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())?;
    Ok(client::Conn {
        io,
        framer: Framer::inside_stream(),
        jid: format!("relay{i}"),
        bytes_in: 0,
    })
}
