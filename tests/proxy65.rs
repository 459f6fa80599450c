//! XEP-0065 SOCKS5 Bytestreams through the server's proxy: disco, the streamhost, both
//! parties' SOCKS5 connections (a client written here from RFC 1928), activation, and bytes
//! relayed both ways.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NS: &str = "http://jabber.org/protocol/bytestreams";
const PROXY: &str = "proxy.localhost";

fn hash(sid: &str, requester: &str, target: &str) -> String {
    Sha1::digest(format!("{sid}{requester}{target}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Connect and ask for CONNECT to `hash`:0; returns the stream after the reply.
async fn socks5(addr: SocketAddr, hash: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0], "no-authentication method chosen");
    let mut req = vec![5, 1, 0, 3, hash.len() as u8];
    req.extend_from_slice(hash.as_bytes());
    req.extend_from_slice(&[0, 0]);
    s.write_all(&req).await.unwrap();
    let mut reply = vec![0u8; 5 + hash.len() + 2];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply[..2], &[5, 0], "SOCKS5 success");
    assert_eq!(&reply[5..5 + hash.len()], hash.as_bytes());
    s
}

async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("relayed in time")
        .expect("read");
    buf
}

#[tokio::test]
async fn proxy_relays_between_two_clients() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut alice = s.online("alice", "a", 0).await;
        let bob_client = s.online("bob", "b", 0).await;

        let items = alice
            .iq_ok(
                "get",
                Some(DOMAIN),
                "<query xmlns='http://jabber.org/protocol/disco#items'/>",
            )
            .await
            .unwrap();
        assert!(items.to_xml().contains(PROXY), "{}", items.to_xml());
        let info = alice
            .iq_ok(
                "get",
                Some(PROXY),
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await
            .unwrap();
        let q = info
            .child("query", "http://jabber.org/protocol/disco#info")
            .unwrap();
        let id = q
            .child("identity", "http://jabber.org/protocol/disco#info")
            .unwrap();
        assert_eq!(
            (id.attr("category"), id.attr("type")),
            (Some("proxy"), Some("bytestreams"))
        );
        assert!(q.elements().any(|f| f.attr("var") == Some(NS)));

        let r = alice
            .iq_ok("get", Some(PROXY), &format!("<query xmlns='{NS}'/>"))
            .await
            .unwrap();
        let sh = r
            .child("query", NS)
            .unwrap()
            .child("streamhost", NS)
            .expect("streamhost");
        assert_eq!(sh.attr("jid"), Some(PROXY));
        let proxy_addr = s.server().state().media.proxy_addr().unwrap();
        let addr: SocketAddr = format!("{}:{}", sh.attr("host").unwrap(), sh.attr("port").unwrap())
            .parse()
            .expect("host and port");
        assert_eq!(addr, proxy_addr);

        let (a_jid, b_jid) = (full("alice", "a"), full("bob", "b"));
        let sid = "s5b-test-1";
        let h = hash(sid, &a_jid, &b_jid);
        let activate =
            format!("<query xmlns='{NS}' sid='{sid}'><activate>{b_jid}</activate></query>");

        // Nothing connected yet: unknown stream.
        let r = alice.iq("set", Some(PROXY), &activate).await.unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"));
        // Only the target connected: not allowed yet.
        let mut target = socks5(addr, &h).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = alice.iq("set", Some(PROXY), &activate).await.unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("not-allowed"));
        let mut requester = socks5(addr, &h).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Bob cannot activate alice's stream: the hash includes the requester's JID.
        let mut bob_client = bob_client;
        let r = bob_client
            .iq(
                "set",
                Some(PROXY),
                &format!("<query xmlns='{NS}' sid='{sid}'><activate>{b_jid}</activate></query>"),
            )
            .await
            .unwrap();
        assert_eq!(r.error_condition().as_deref(), Some("item-not-found"));
        alice
            .iq_ok("set", Some(PROXY), &activate)
            .await
            .expect("activated");

        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let send = payload.clone();
        let writer = tokio::spawn(async move {
            requester.write_all(&send).await.unwrap();
            requester
        });
        assert!(read_n(&mut target, payload.len()).await == payload);
        let mut requester = writer.await.unwrap();
        target.write_all(b"thanks").await.unwrap();
        assert_eq!(read_n(&mut requester, 6).await, b"thanks");
        // Closing one side closes the other.
        drop(requester);
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), target.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap();
        assert_eq!(n, 0);
    })
    .await
}

#[tokio::test]
async fn bad_socks_requests_are_refused() {
    bounded(async {
        let s = TestServer::start().await;
        let addr = s.server().state().media.proxy_addr().unwrap();
        // Not a hash.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&[5, 1, 0]).await.unwrap();
        let mut m = [0u8; 2];
        c.read_exact(&mut m).await.unwrap();
        c.write_all(&[5, 1, 0, 3, 3, b'a', b'b', b'c', 0, 0])
            .await
            .unwrap();
        let mut reply = [0u8; 2];
        c.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply[0], 5);
        assert_ne!(reply[1], 0, "refused");
        // Only username/password offered: no acceptable method.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&[5, 1, 2]).await.unwrap();
        c.read_exact(&mut m).await.unwrap();
        assert_eq!(m, [5, 0xFF]);
    })
    .await
}
