//! XEP-0065: SOCKS5 Bytestreams — the proxy (streamhost) at `proxy.<domain>`.
//!
//! Both parties connect over SOCKS5 (RFC 1928, no authentication, CONNECT to the domain name
//! `SHA1(SID + requester JID + target JID)` in hex, port 0); the target first, then the
//! requester. The requester then sends `<activate/>` to the proxy's JID; the proxy checks
//! that both connections for that hash are waiting and relays bytes between them until one
//! side closes. Connections not activated within two minutes are dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::jid::Jid;
use crate::proto::StanzaError;
use crate::xml::Element;

pub const NS_BYTESTREAMS: &str = "http://jabber.org/protocol/bytestreams";
const PENDING_LIMIT: Duration = Duration::from_secs(120);
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(20);
const MAX_PENDING: usize = 10_000;

struct Pending {
    since: Instant,
    conns: Vec<TcpStream>,
}

/// The proxy: its listener and the connections waiting for activation.
pub struct Proxy65 {
    listener: Mutex<Option<TcpListener>>,
    addr: SocketAddr,
    /// Advertised host.
    host: String,
    pending: Mutex<HashMap<String, Pending>>,
    tasks: Mutex<Option<(TaskTracker, CancellationToken)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `SHA1(SID + requester + target)` in lowercase hex (XEP-0065 §5.3.2).
pub fn dst_hash(sid: &str, requester: &str, target: &str) -> String {
    let mut h = Sha1::new();
    h.update(sid.as_bytes());
    h.update(requester.as_bytes());
    h.update(target.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Proxy65 {
    pub async fn bind(listen: &str, host: String) -> std::io::Result<Proxy65> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        Ok(Proxy65 {
            listener: Mutex::new(Some(listener)),
            addr,
            host,
            pending: Mutex::new(HashMap::new()),
            tasks: Mutex::new(None),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accept SOCKS5 connections until `shutdown`.
    pub async fn run(self: Arc<Self>, tasks: TaskTracker, shutdown: CancellationToken) {
        let Some(listener) = lock(&self.listener).take() else {
            return;
        };
        *lock(&self.tasks) = Some((tasks.clone(), shutdown.clone()));
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "proxy65 accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let me = self.clone();
            tasks.spawn(async move {
                match tokio::time::timeout(HANDSHAKE_LIMIT, socks5_handshake(tcp)).await {
                    Ok(Ok((hash, tcp))) => me.park(hash, tcp),
                    Ok(Err(e)) => tracing::debug!(error = %e, "proxy65 handshake failed"),
                    Err(_) => tracing::debug!("proxy65 handshake timed out"),
                }
            });
        }
    }

    fn park(&self, hash: String, tcp: TcpStream) {
        let mut p = lock(&self.pending);
        p.retain(|_, v| v.since.elapsed() < PENDING_LIMIT);
        if p.len() >= MAX_PENDING && !p.contains_key(&hash) {
            return;
        }
        let entry = p.entry(hash).or_insert_with(|| Pending {
            since: Instant::now(),
            conns: Vec::new(),
        });
        if entry.conns.len() < 2 {
            entry.conns.push(tcp);
        }
    }

    /// disco#info of the proxy.
    pub fn disco_info(&self) -> Element {
        Element::new("query", crate::proto::ns::DISCO_INFO)
            .with_child(
                Element::new("identity", crate::proto::ns::DISCO_INFO)
                    .with_attr("category", "proxy")
                    .with_attr("type", "bytestreams")
                    .with_attr("name", "SOCKS5 Bytestreams Service"),
            )
            .with_child(
                Element::new("feature", crate::proto::ns::DISCO_INFO)
                    .with_attr("var", crate::proto::ns::DISCO_INFO),
            )
            .with_child(
                Element::new("feature", crate::proto::ns::DISCO_INFO)
                    .with_attr("var", NS_BYTESTREAMS),
            )
    }

    /// A bytestreams IQ to the proxy: `get` asks for the streamhost, `set` with
    /// `<activate/>` starts relaying.
    pub fn handle_iq(
        &self,
        proxy_jid: &Jid,
        from: &Jid,
        is_set: bool,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        if !is_set {
            return Ok(Some(
                Element::new("query", NS_BYTESTREAMS).with_child(
                    Element::new("streamhost", NS_BYTESTREAMS)
                        .with_attr("jid", proxy_jid.to_string())
                        .with_attr("host", self.host.clone())
                        .with_attr("port", self.addr.port().to_string()),
                ),
            ));
        }
        let sid = query.attr("sid").unwrap_or_default();
        let target = query
            .child_text("activate", NS_BYTESTREAMS)
            .unwrap_or_default();
        if sid.is_empty() || target.is_empty() {
            return Err(StanzaError::bad_request().with_text("sid and <activate/> are required"));
        }
        let target = Jid::parse(target.trim())
            .map_err(|_| StanzaError::jid_malformed().with_text("bad <activate/> JID"))?;
        let hash = dst_hash(sid, &from.to_string(), &target.to_string());
        let conns = {
            let mut p = lock(&self.pending);
            match p.get(&hash) {
                Some(e) if e.conns.len() == 2 => p.remove(&hash).map(|e| e.conns),
                Some(_) => {
                    return Err(StanzaError::not_allowed()
                        .with_text("both parties must be connected before activation"))
                }
                None => None,
            }
        };
        let Some(mut conns) = conns else {
            return Err(StanzaError::item_not_found().with_text("no such bytestream"));
        };
        let (Some(mut b), Some(mut a)) = (conns.pop(), conns.pop()) else {
            return Err(StanzaError::internal_server_error());
        };
        let Some((tasks, shutdown)) = lock(&self.tasks).clone() else {
            return Err(StanzaError::service_unavailable());
        };
        tasks.spawn(async move {
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut a, &mut b) => {
                    if let Ok((ab, ba)) = r {
                        tracing::debug!(ab, ba, "proxy65 bytestream closed");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
        });
        Ok(None)
    }
}

/// The server side of a SOCKS5 handshake; returns the requested domain name (the hash).
async fn socks5_handshake(mut tcp: TcpStream) -> std::io::Result<(String, TcpStream)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(bad("not SOCKS5"));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    tcp.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        tcp.write_all(&[5, 0xFF]).await?;
        return Err(bad("no acceptable method"));
    }
    tcp.write_all(&[5, 0]).await?;
    let mut req = [0u8; 5];
    tcp.read_exact(&mut req).await?;
    // VER CMD RSV ATYP LEN: CONNECT to a domain name.
    if req[0] != 5 || req[1] != 1 || req[3] != 3 {
        tcp.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Err(bad("only CONNECT to a domain name is supported"));
    }
    let mut name = vec![0u8; usize::from(req[4])];
    tcp.read_exact(&mut name).await?;
    let mut port = [0u8; 2];
    tcp.read_exact(&mut port).await?;
    let hash = String::from_utf8(name).map_err(|_| bad("name is not UTF-8"))?;
    if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        tcp.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Err(bad("not a SHA-1 hash"));
    }
    let mut reply = vec![5, 0, 0, 3, hash.len() as u8];
    reply.extend_from_slice(hash.as_bytes());
    reply.extend_from_slice(&[0, 0]);
    tcp.write_all(&reply).await?;
    Ok((hash.to_ascii_lowercase(), tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_xep_example() {
        // XEP-0065 §5.3.2 example: SID vxf9n471bn46, requester romeo@montague.example/home,
        // target juliet@capulet.example/balcony.
        let h = dst_hash(
            "vxf9n471bn46",
            "romeo@montague.example/home",
            "juliet@capulet.example/balcony",
        );
        // Computed independently with `printf %s ... | sha1sum`.
        assert_eq!(h, "a598ef48db2a71cab54ebd7425932bdbdabe586f");
    }
}
