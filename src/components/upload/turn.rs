//! The built-in STUN/TURN server (RFC 5389 Binding; RFC 5766 over UDP: Allocate, Refresh,
//! CreatePermission, ChannelBind, Send and Data indications, ChannelData).
//!
//! Authentication is the long-term credential mechanism (RFC 5389 §10.2) with passwords of
//! the TURN REST shared-secret scheme: username `expiry:user`, password
//! `base64(HMAC-SHA1(secret, username))`, so that credentials handed out by external service
//! discovery (XEP-0215) are accepted without any per-user state, and expire by themselves.
//! Nonces are stateless too (a timestamp and its HMAC under a per-run key), valid one hour.
//!
//! Peers: CreatePermission and ChannelBind for a non-public peer address (loopback, private,
//! link-local, shared, documentation, multicast, …) are refused with 403 unless
//! `turn.relay_private_peers` is on; unspecified, multicast and broadcast addresses never.
//!
//! EVEN-PORT without the R bit gets an even relayed port (coturn's turnutils_uclient sends it
//! on every other Allocate); with the R bit (also reserve the next port) the server cannot
//! satisfy it and answers 508 (RFC 5766 §6.2).
//!
//! Not implemented: TCP/TLS transports to the server and to peers, port reservations
//! (EVEN-PORT's R bit: 508; RESERVATION-TOKEN: 420), IPv6 relayed addresses for IPv4 clients,
//! bandwidth quotas. Each allocation relays through its own UDP socket from `turn.relay_ports`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::stun::{self, attr, Builder, Class, Message};

const SOFTWARE: &[u8] = b"Oriole";
const DEFAULT_LIFETIME: u32 = 600;
const MAX_LIFETIME: u32 = 3600;
const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
const NONCE_LIFETIME_SECS: u64 = 3600;
/// Most allocations at once, and per client IP address.
const MAX_ALLOCATIONS: usize = 10_000;
const MAX_ALLOCATIONS_PER_IP: usize = 64;

/// Whether a client may relay to `ip`. Never to unspecified, multicast or broadcast
/// addresses; to non-public ones only with `private_ok`. IPv4-mapped IPv6 addresses are
/// judged as the IPv4 address they carry.
pub fn peer_allowed(ip: IpAddr, private_ok: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                return false;
            }
            let [a, b, ..] = v4.octets();
            let public = !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
                || a >= 240); // reserved
            public || private_ok
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() || v6.is_multicast() {
                return false;
            }
            let seg = v6.segments();
            let public = !(v6.is_loopback()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local, RFC 4193
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x0064 && seg[1] == 0xff9b)); // NAT64 to any IPv4 address
            public || private_ok
        }
    }
}

/// One allocation (RFC 5766 §5), keyed by the client's transport address.
struct Allocation {
    relay: Arc<UdpSocket>,
    /// The relayed transport address as advertised.
    relayed: SocketAddr,
    username: String,
    key: Vec<u8>,
    state: Mutex<AllocState>,
    cancel: CancellationToken,
}

struct AllocState {
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, SocketAddr>,
    channel_of: HashMap<SocketAddr, u16>,
}

impl AllocState {
    fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|t| *t > now)
    }
}

/// The built-in TURN server.
pub struct TurnServer {
    socket: Arc<UdpSocket>,
    secret: Vec<u8>,
    realm: String,
    bind_ip: IpAddr,
    relay_ip: IpAddr,
    ports: (u16, u16),
    /// `turn.relay_private_peers`: see [`peer_allowed`].
    relay_private_peers: bool,
    nonce_key: [u8; 32],
    allocations: Mutex<HashMap<SocketAddr, Arc<Allocation>>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TurnServer {
    /// Bind the UDP socket. `relay_ip` is advertised in relayed addresses.
    pub async fn bind(
        listen: SocketAddr,
        secret: Vec<u8>,
        realm: String,
        relay_ip: IpAddr,
        ports: (u16, u16),
        relay_private_peers: bool,
    ) -> std::io::Result<TurnServer> {
        let socket = UdpSocket::bind(listen).await?;
        Ok(TurnServer {
            relay_private_peers,
            socket: Arc::new(socket),
            secret,
            realm,
            bind_ip: listen.ip(),
            relay_ip,
            ports,
            nonce_key: rand::random(),
            allocations: Mutex::new(HashMap::new()),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Number of live allocations.
    pub fn allocation_count(&self) -> usize {
        lock(&self.allocations).len()
    }

    /// Serve until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; 65536];
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.handle(&buf[..n], from).await,
                    Err(e) => {
                        // ICMP errors surface here on some systems; keep serving.
                        tracing::debug!(error = %e, "TURN receive error");
                    }
                },
                _ = sweep.tick() => self.sweep(),
                _ = shutdown.cancelled() => break,
            }
        }
        for (_, a) in lock(&self.allocations).drain() {
            a.cancel.cancel();
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        lock(&self.allocations).retain(|_, a| {
            let mut st = lock(&a.state);
            st.permissions.retain(|_, t| *t > now);
            let live = st.expires > now;
            if !live {
                a.cancel.cancel();
            }
            live
        });
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(bytes, to).await {
            tracing::debug!(error = %e, %to, "TURN send failed");
        }
    }

    async fn handle(self: &Arc<Self>, buf: &[u8], from: SocketAddr) {
        if buf.len() >= 4 && buf[0] & 0xC0 == 0x40 {
            self.channel_data(buf, from).await;
            return;
        }
        let Some(msg) = Message::parse(buf) else {
            return;
        };
        match msg.class {
            Class::Indication if msg.method == stun::SEND => self.send_indication(&msg, from).await,
            Class::Request => {
                if let Some(reply) = self.request(&msg, from).await {
                    self.send(&reply, from).await;
                }
            }
            _ => {}
        }
    }

    fn nonce(&self) -> String {
        let ts = unix_now();
        format!("{ts:x}-{}", self.nonce_mac(ts))
    }

    fn nonce_mac(&self, ts: u64) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.nonce_key).expect("HMAC takes any key");
        mac.update(&ts.to_be_bytes());
        mac.finalize().into_bytes()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn nonce_valid(&self, nonce: &str) -> bool {
        let Some((ts, tag)) = nonce.split_once('-') else {
            return false;
        };
        let Ok(ts) = u64::from_str_radix(ts, 16) else {
            return false;
        };
        let fresh = unix_now().saturating_sub(ts) < NONCE_LIFETIME_SECS;
        let expected = self.nonce_mac(ts);
        fresh && subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), tag.as_bytes()).into()
    }

    fn challenge(&self, msg: &Message, code: u16, reason: &str) -> Vec<u8> {
        Builder::new(msg.method, Class::Error, &msg.txid)
            .error(code, reason)
            .attr(attr::REALM, self.realm.as_bytes())
            .attr(attr::NONCE, self.nonce().as_bytes())
            .attr(attr::SOFTWARE, SOFTWARE)
            .finish()
    }

    /// The long-term credential check (RFC 5389 §10.2.2). `Ok((username, key))` or the error
    /// response to send.
    fn authenticate(&self, msg: &Message) -> Result<(String, Vec<u8>), Vec<u8>> {
        if msg.get(attr::MESSAGE_INTEGRITY).is_none() {
            return Err(self.challenge(msg, 401, "Unauthorized"));
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            msg.get_str(attr::USERNAME),
            msg.get_str(attr::REALM),
            msg.get_str(attr::NONCE),
        ) else {
            return Err(Builder::new(msg.method, Class::Error, &msg.txid)
                .error(400, "Bad Request")
                .finish());
        };
        if !self.nonce_valid(nonce) {
            return Err(self.challenge(msg, 438, "Stale Nonce"));
        }
        if realm != self.realm || stun::rest_expiry(username).is_none_or(|e| e < unix_now()) {
            return Err(self.challenge(msg, 401, "Unauthorized"));
        }
        let password = stun::rest_password(&self.secret, username);
        let key = stun::long_term_key(username, &self.realm, &password);
        if !msg.check_integrity(&key) {
            return Err(self.challenge(msg, 401, "Unauthorized"));
        }
        Ok((username.to_string(), key))
    }

    async fn request(self: &Arc<Self>, msg: &Message, from: SocketAddr) -> Option<Vec<u8>> {
        if msg.method == stun::BINDING {
            return Some(
                Builder::new(stun::BINDING, Class::Success, &msg.txid)
                    .xor_addr(attr::XOR_MAPPED_ADDRESS, from)
                    .attr(attr::SOFTWARE, SOFTWARE)
                    .finish(),
            );
        }
        if ![
            stun::ALLOCATE,
            stun::REFRESH,
            stun::CREATE_PERMISSION,
            stun::CHANNEL_BIND,
        ]
        .contains(&msg.method)
        {
            return Some(
                Builder::new(msg.method, Class::Error, &msg.txid)
                    .error(400, "Bad Request")
                    .finish(),
            );
        }
        let unknown = msg.unknown_required();
        if !unknown.is_empty() {
            let list: Vec<u8> = unknown.iter().flat_map(|a| a.to_be_bytes()).collect();
            return Some(
                Builder::new(msg.method, Class::Error, &msg.txid)
                    .error(420, "Unknown Attribute")
                    .attr(attr::UNKNOWN_ATTRIBUTES, &list)
                    .finish(),
            );
        }
        let (username, key) = match self.authenticate(msg) {
            Ok(c) => c,
            Err(reply) => return Some(reply),
        };
        let fail = |code: u16, reason: &str| {
            Builder::new(msg.method, Class::Error, &msg.txid)
                .error(code, reason)
                .integrity(&key)
                .finish()
        };
        if msg.method == stun::ALLOCATE {
            return Some(
                self.allocate(msg, from, username, &key)
                    .await
                    .unwrap_or_else(|(code, reason)| fail(code, reason)),
            );
        }
        let alloc = lock(&self.allocations).get(&from).cloned();
        let Some(alloc) = alloc else {
            return Some(fail(437, "Allocation Mismatch"));
        };
        if alloc.username != username {
            return Some(fail(441, "Wrong Credentials"));
        }
        let ok = || Builder::new(msg.method, Class::Success, &msg.txid);
        let now = Instant::now();
        match msg.method {
            stun::REFRESH => {
                let asked = msg.get_u32(attr::LIFETIME).unwrap_or(DEFAULT_LIFETIME);
                if asked == 0 {
                    lock(&self.allocations).remove(&from);
                    alloc.cancel.cancel();
                    return Some(ok().u32(attr::LIFETIME, 0).integrity(&alloc.key).finish());
                }
                let life = asked.clamp(DEFAULT_LIFETIME, MAX_LIFETIME);
                lock(&alloc.state).expires = now + Duration::from_secs(life.into());
                Some(
                    ok().u32(attr::LIFETIME, life)
                        .integrity(&alloc.key)
                        .finish(),
                )
            }
            stun::CREATE_PERMISSION => {
                let peers: Vec<_> = msg
                    .get_all(attr::XOR_PEER_ADDRESS)
                    .map(|v| stun::decode_xor_addr(v, &msg.txid))
                    .collect();
                if peers.is_empty() || peers.iter().any(Option::is_none) {
                    return Some(fail(400, "Bad Request"));
                }
                if peers
                    .iter()
                    .flatten()
                    .any(|p| p.is_ipv4() != alloc.relayed.is_ipv4())
                {
                    return Some(fail(443, "Peer Address Family Mismatch"));
                }
                if peers
                    .iter()
                    .flatten()
                    .any(|p| !peer_allowed(p.ip(), self.relay_private_peers))
                {
                    return Some(fail(403, "Forbidden"));
                }
                let mut st = lock(&alloc.state);
                for p in peers.into_iter().flatten() {
                    st.permissions.insert(p.ip(), now + PERMISSION_LIFETIME);
                }
                Some(ok().integrity(&alloc.key).finish())
            }
            stun::CHANNEL_BIND => {
                let channel = msg
                    .get(attr::CHANNEL_NUMBER)
                    .and_then(|v| v.get(..2))
                    .map(|v| u16::from_be_bytes([v[0], v[1]]));
                let peer = msg.get_xor_addr(attr::XOR_PEER_ADDRESS);
                let (Some(channel), Some(peer)) = (channel, peer) else {
                    return Some(fail(400, "Bad Request"));
                };
                if !(0x4000..=0x7FFE).contains(&channel) {
                    return Some(fail(400, "Bad Request"));
                }
                if !peer_allowed(peer.ip(), self.relay_private_peers) {
                    return Some(fail(403, "Forbidden"));
                }
                let mut st = lock(&alloc.state);
                let taken = st.channels.get(&channel).is_some_and(|p| *p != peer)
                    || st.channel_of.get(&peer).is_some_and(|c| *c != channel);
                if taken {
                    return Some(fail(400, "Bad Request"));
                }
                st.channels.insert(channel, peer);
                st.channel_of.insert(peer, channel);
                st.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
                Some(ok().integrity(&alloc.key).finish())
            }
            _ => Some(fail(400, "Bad Request")),
        }
    }

    async fn allocate(
        self: &Arc<Self>,
        msg: &Message,
        from: SocketAddr,
        username: String,
        key: &[u8],
    ) -> Result<Vec<u8>, (u16, &'static str)> {
        {
            let allocs = lock(&self.allocations);
            if allocs.contains_key(&from) {
                return Err((437, "Allocation Mismatch"));
            }
            if allocs.len() >= MAX_ALLOCATIONS
                || allocs.keys().filter(|a| a.ip() == from.ip()).count() >= MAX_ALLOCATIONS_PER_IP
            {
                return Err((486, "Allocation Quota Reached"));
            }
        }
        match msg.get(attr::REQUESTED_TRANSPORT) {
            None => return Err((400, "Bad Request")),
            Some(v) if v.first() != Some(&17) => {
                return Err((442, "Unsupported Transport Protocol"))
            }
            Some(_) => {}
        }
        // EVEN-PORT (RFC 5766 §14.6): an even port; with the R bit also a reservation of
        // the next one, which this server does not make.
        let even = match msg.get(attr::EVEN_PORT) {
            None => false,
            Some(v) if v.first().is_some_and(|b| b & 0x80 != 0) => {
                return Err((508, "Insufficient Capacity"))
            }
            Some(_) => true,
        };
        let relay = self
            .bind_relay(even)
            .await
            .ok_or((508, "Insufficient Capacity"))?;
        let port = relay
            .local_addr()
            .map_err(|_| (508, "Insufficient Capacity"))?
            .port();
        let relayed = SocketAddr::new(self.relay_ip, port);
        let life = msg
            .get_u32(attr::LIFETIME)
            .unwrap_or(DEFAULT_LIFETIME)
            .clamp(DEFAULT_LIFETIME, MAX_LIFETIME);
        let alloc = Arc::new(Allocation {
            relay: Arc::new(relay),
            relayed,
            username,
            key: key.to_vec(),
            state: Mutex::new(AllocState {
                expires: Instant::now() + Duration::from_secs(life.into()),
                permissions: HashMap::new(),
                channels: HashMap::new(),
                channel_of: HashMap::new(),
            }),
            cancel: CancellationToken::new(),
        });
        {
            let mut allocs = lock(&self.allocations);
            if allocs.contains_key(&from) {
                return Err((437, "Allocation Mismatch"));
            }
            allocs.insert(from, alloc.clone());
        }
        tokio::spawn(relay_loop(self.socket.clone(), alloc.clone(), from));
        Ok(Builder::new(stun::ALLOCATE, Class::Success, &msg.txid)
            .xor_addr(attr::XOR_RELAYED_ADDRESS, relayed)
            .u32(attr::LIFETIME, life)
            .xor_addr(attr::XOR_MAPPED_ADDRESS, from)
            .attr(attr::SOFTWARE, SOFTWARE)
            .integrity(key)
            .finish())
    }

    async fn bind_relay(&self, even: bool) -> Option<UdpSocket> {
        let (lo, hi) = self.ports;
        let span = u32::from(hi - lo) + 1;
        for _ in 0..64 {
            let port = lo + (rand::random::<u32>() % span) as u16;
            let port = if even { port & !1 } else { port };
            if port < lo {
                continue;
            }
            if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.bind_ip, port)).await {
                return Some(s);
            }
        }
        None
    }

    async fn send_indication(&self, msg: &Message, from: SocketAddr) {
        let alloc = lock(&self.allocations).get(&from).cloned();
        let (Some(alloc), Some(peer), Some(data)) = (
            alloc,
            msg.get_xor_addr(attr::XOR_PEER_ADDRESS),
            msg.get(attr::DATA),
        ) else {
            return;
        };
        if lock(&alloc.state).permitted(peer.ip(), Instant::now()) {
            let _ = alloc.relay.send_to(data, peer).await;
        }
    }

    async fn channel_data(&self, buf: &[u8], from: SocketAddr) {
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let Some(data) = buf.get(4..4 + len) else {
            return;
        };
        let alloc = lock(&self.allocations).get(&from).cloned();
        let Some(alloc) = alloc else {
            return;
        };
        let peer = {
            let st = lock(&alloc.state);
            st.channels
                .get(&channel)
                .copied()
                .filter(|p| st.permitted(p.ip(), Instant::now()))
        };
        if let Some(peer) = peer {
            let _ = alloc.relay.send_to(data, peer).await;
        }
    }
}

/// Datagrams from peers to the relayed address go to the client, as ChannelData when a
/// channel is bound to the peer, else as a Data indication; only from permitted peers.
async fn relay_loop(server: Arc<UdpSocket>, alloc: Arc<Allocation>, client: SocketAddr) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = tokio::select! {
            r = alloc.relay.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = alloc.cancel.cancelled() => return,
        };
        let channel = {
            let st = lock(&alloc.state);
            if !st.permitted(peer.ip(), Instant::now()) {
                continue;
            }
            st.channel_of.get(&peer).copied()
        };
        let out = match channel {
            Some(ch) => {
                let mut v = Vec::with_capacity(4 + n);
                v.extend_from_slice(&ch.to_be_bytes());
                v.extend_from_slice(&(n as u16).to_be_bytes());
                v.extend_from_slice(&buf[..n]);
                v
            }
            None => {
                let txid: [u8; 12] = rand::random();
                Builder::new(stun::DATA, Class::Indication, &txid)
                    .xor_addr(attr::XOR_PEER_ADDRESS, peer)
                    .attr(attr::DATA, &buf[..n])
                    .finish_plain()
            }
        };
        let _ = server.send_to(&out, client).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_peers_are_refused_unless_allowed() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("test address");
        for p in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.1.2.3",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:192.168.0.1",
        ] {
            assert!(!peer_allowed(ip(p), false), "{p} refused by default");
            assert!(peer_allowed(ip(p), true), "{p} allowed when configured");
        }
        for p in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
            assert!(!peer_allowed(ip(p), true), "{p} never");
        }
        for p in ["8.8.8.8", "203.0.114.1", "2a01:4f8::1", "::ffff:1.1.1.1"] {
            assert!(peer_allowed(ip(p), false), "{p} is public");
        }
    }
}
