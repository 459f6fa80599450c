//! Listening sockets and connection admission.
//!
//! [`bind_all`] opens one TCP listener per configured address. Sockets are prepared with
//! `socket2` before tokio gets them so that an IPv6 wildcard (`[::]`) is IPv6-only
//! (`IPV6_V6ONLY`) and can share its port with `0.0.0.0`, as the default configuration
//! asks, and so that the backlog is [`LISTEN_BACKLOG`] rather than the standard library's.
//!
//! [`ConnectionLimiter`] caps simultaneous connections, both overall and per remote IP
//! address. A connection holds a [`ConnectionPermit`] for its lifetime; dropping the
//! permit gives the slot back.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Pending connections the kernel queues per listener before `accept`.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Bind and listen on every address, in order.
///
/// Each address must be a socket address such as `0.0.0.0:5222` or `[::]:5222`
/// (`Config::validate` checks this). IPv6 sockets are made IPv6-only so that `[::]:p` and
/// `0.0.0.0:p` can both be listed. Fails on the first address that cannot be used, with
/// that address in the message; listeners opened before it are closed again.
pub async fn bind_all(addrs: &[String]) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(bind_one(addr)?);
    }
    Ok(listeners)
}

fn bind_one(text: &str) -> io::Result<TcpListener> {
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot listen on {text:?}: not an address such as \"0.0.0.0:5222\""),
        )
    })?;
    let socket = open_socket(addr).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => {
                " (another program, or another entry of the configuration, already uses it)"
            }
            io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
            io::ErrorKind::AddrNotAvailable => " (no network interface has this address)",
            _ => "",
        };
        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}{hint}"))
    })?;
    let std_listener: std::net::TcpListener = socket.into();
    TcpListener::from_std(std_listener)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

fn open_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Lets a restarted server bind while old connections linger in TIME_WAIT. On Unix this
    // does not allow two live listeners on one port.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// Caps simultaneous connections overall and per remote IP address.
///
/// Cheap to clone; clones share the counts. A limit of 0 means "no limit".
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as their IPv4 address.
#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    inner: Arc<LimiterInner>,
}

#[derive(Debug)]
struct LimiterInner {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl LimiterInner {
    /// The counts stay consistent even if a holder panicked, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted connection; its slot is released when this is dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    inner: Arc<LimiterInner>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// A limiter allowing `max_total` connections in all and `max_per_ip` from one address
    /// (0: unlimited).
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimiter {
            inner: Arc::new(LimiterInner {
                max_total,
                max_per_ip,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// From `limits.max_c2s_connections` and `limits.max_connections_per_ip`.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(
            config.limits.max_c2s_connections,
            config.limits.max_connections_per_ip,
        )
    }

    /// Admit a connection from `ip`, or `None` when a limit is reached.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<ConnectionPermit> {
        let ip = canonical_ip(ip);
        let mut counts = self.inner.lock();
        if self.inner.max_total != 0 && counts.total >= self.inner.max_total {
            return None;
        }
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if self.inner.max_per_ip != 0 && from_ip >= self.inner.max_per_ip {
            return None;
        }
        counts.total += 1;
        counts.per_ip.insert(ip, from_ip + 1);
        Some(ConnectionPermit {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Connections currently admitted.
    pub fn active(&self) -> usize {
        self.inner.lock().total
    }

    /// Connections currently admitted from `ip`.
    pub fn active_from(&self, ip: IpAddr) -> usize {
        let ip = canonical_ip(ip);
        self.inner.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }
}

impl ConnectionPermit {
    /// The address this permit counts against.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.inner.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[tokio::test]
    async fn binds_ipv4_loopback() {
        let ls = bind_all(&["127.0.0.1:0".to_string()]).await.unwrap();
        assert_eq!(ls.len(), 1);
        let addr = ls[0].local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), ls[0].accept());
        client.unwrap();
        accepted.unwrap();
    }

    #[tokio::test]
    async fn binds_ipv6_loopback() {
        match bind_all(&["[::1]:0".to_string()]).await {
            Ok(ls) => {
                let addr = ls[0].local_addr().unwrap();
                assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
                let (client, accepted) =
                    tokio::join!(tokio::net::TcpStream::connect(addr), ls[0].accept());
                client.unwrap();
                accepted.unwrap();
            }
            // A machine without IPv6 cannot run this test.
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {}
            Err(e) if e.raw_os_error() == Some(97) => {} // EAFNOSUPPORT on Linux
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn ipv6_wildcard_and_ipv4_wildcard_share_a_port() {
        let v6 = match bind_all(&["[::]:0".to_string()]).await {
            Ok(mut ls) => ls.remove(0),
            Err(_) => return, // no IPv6 here
        };
        let port = v6.local_addr().unwrap().port();
        let v4 = bind_all(&[format!("0.0.0.0:{port}")]).await;
        assert!(v4.is_ok(), "{:?}", v4.err());
    }

    #[tokio::test]
    async fn error_names_the_address() {
        let first = bind_all(&["127.0.0.1:0".to_string()]).await.unwrap();
        let taken = first[0].local_addr().unwrap().to_string();
        let err = bind_all(std::slice::from_ref(&taken)).await.unwrap_err();
        assert!(err.to_string().contains(&taken), "{err}");
        let err = bind_all(&["nonsense".to_string()]).await.unwrap_err();
        assert!(err.to_string().contains("nonsense"), "{err}");
    }

    #[test]
    fn per_ip_limit_and_release() {
        let limiter = ConnectionLimiter::new(10, 2);
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let p1 = limiter.try_acquire(a).unwrap();
        let p2 = limiter.try_acquire(a).unwrap();
        assert!(limiter.try_acquire(a).is_none());
        // The mapped form of the same address counts against it too.
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert!(limiter.try_acquire(mapped).is_none());
        let q = limiter.try_acquire(b).unwrap();
        assert_eq!(limiter.active(), 3);
        assert_eq!(limiter.active_from(a), 2);
        drop(p1);
        assert_eq!(limiter.active_from(a), 1);
        let p3 = limiter.try_acquire(a).unwrap();
        drop((p2, p3, q));
        assert_eq!(limiter.active(), 0);
        assert_eq!(limiter.active_from(a), 0);
    }

    #[test]
    fn global_limit_and_release() {
        let limiter = ConnectionLimiter::new(3, 0);
        let ips: Vec<IpAddr> = (1..=4)
            .map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)))
            .collect();
        let held: Vec<_> = ips[..3]
            .iter()
            .map(|ip| limiter.try_acquire(*ip).unwrap())
            .collect();
        assert!(limiter.try_acquire(ips[3]).is_none());
        let clone = limiter.clone();
        drop(held);
        assert_eq!(clone.active(), 0);
        assert!(clone.try_acquire(ips[3]).is_some());
    }

    #[test]
    fn limits_come_from_the_configuration() {
        let mut config = crate::config::Config::default();
        config.limits.max_c2s_connections = 1;
        config.limits.max_connections_per_ip = 1;
        let limiter = ConnectionLimiter::from_config(&config);
        let _p = limiter
            .try_acquire(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .unwrap();
        assert!(limiter
            .try_acquire(IpAddr::V6(Ipv6Addr::LOCALHOST))
            .is_none());
    }
}
