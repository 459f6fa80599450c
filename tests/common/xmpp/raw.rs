//! A raw connection for protocol edge cases: write arbitrary bytes, read until the server
//! closes the connection, and look at what came back.

use super::client::{Client, ClientError, Transport};
use super::tls::Trust;
use super::xml::{parse_transcript, XmlEvent, NS_STREAM};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

pub struct RawConn {
    io: Transport,
    /// Everything received so far (including bytes a [`Client`] had read but not parsed).
    pub received: Vec<u8>,
}

/// What a server sent until it closed the connection (or the wait ended).
#[derive(Debug, Clone)]
pub struct Transcript {
    pub bytes: Vec<u8>,
    /// The server closed the TCP connection (EOF or reset).
    pub closed: bool,
}

impl Transcript {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The parsed events, as far as the bytes parse.
    pub fn events(&self) -> Vec<XmlEvent> {
        parse_transcript(&self.bytes).0
    }

    /// The condition of the first stream error, if any.
    pub fn stream_error(&self) -> Option<String> {
        self.events().into_iter().find_map(|e| match e {
            XmlEvent::Element(el) if el.is("error", NS_STREAM) => el.error_condition(),
            _ => None,
        })
    }

    /// Whether `</stream:stream>` was received.
    pub fn stream_ended(&self) -> bool {
        self.events().contains(&XmlEvent::StreamEnd)
    }

    /// Panic unless the transcript ends with the stream error `condition`, the stream close
    /// and the TCP close.
    pub fn assert_stream_error(&self, condition: &str) {
        assert_eq!(
            self.stream_error().as_deref(),
            Some(condition),
            "expected stream error <{condition}/>; received: {}",
            self.text()
        );
        assert!(
            self.closed,
            "connection not closed after the stream error: {}",
            self.text()
        );
    }
}

impl RawConn {
    pub async fn tcp(addr: SocketAddr) -> Result<RawConn, ClientError> {
        let tcp = timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(format!("connect to {addr}")))??;
        tcp.set_nodelay(true)?;
        Ok(RawConn {
            io: Transport::Tcp(tcp),
            received: Vec::new(),
        })
    }

    /// A Direct TLS connection with the given ALPN protocol, if any.
    pub async fn tls(
        addr: SocketAddr,
        domain: &str,
        trust: &Trust,
        alpn: Option<&[u8]>,
    ) -> Result<RawConn, ClientError> {
        let mut c = RawConn::tcp(addr).await?;
        c.io.upgrade(domain, trust, alpn).await?;
        Ok(c)
    }

    /// Take over a client's connection (e.g. after TLS and authentication).
    pub fn from_client(c: Client) -> RawConn {
        let received = c.pending_bytes();
        RawConn { io: c.io, received }
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        timeout(Duration::from_secs(10), self.io.write_all(data))
            .await
            .map_err(|_| ClientError::Timeout("write".into()))??;
        Ok(())
    }

    /// Read until the received bytes contain `needle`; `false` if the wait ended or the
    /// connection closed first.
    pub async fn read_until(&mut self, wait: Duration, needle: &str) -> bool {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 16384];
        loop {
            if String::from_utf8_lossy(&self.received).contains(needle) {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.received.extend_from_slice(&buf[..n]),
                _ => return false,
            }
        }
    }

    /// Read until the server closes the connection or `wait` passes; never fails.
    pub async fn read_until_close(&mut self, wait: Duration) -> Transcript {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 16384];
        let closed = loop {
            match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Err(_) => break false,
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => self.received.extend_from_slice(&buf[..n]),
            }
        };
        Transcript {
            bytes: self.received.clone(),
            closed,
        }
    }
}
