//! The byte stream and XML framing under a federation connection: plain TCP, then TLS as
//! server (inbound) or as client (outbound), with the stream parser on top.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::proto::StreamError;
use crate::xml::parser::{Limits, StreamEvent, StreamParser, XmlError};

const READ_CHUNK: usize = 8192;
/// Longest a TLS handshake may take.
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(20);

pub enum Io {
    Plain(TcpStream),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Upgrading,
}

impl Io {
    pub fn is_tls(&self) -> bool {
        matches!(self, Io::ServerTls(_) | Io::ClientTls(_))
    }

    /// The certificate chain the peer presented (leaf first), empty if none.
    pub fn peer_chain(&self) -> Vec<CertificateDer<'static>> {
        let certs = match self {
            Io::ServerTls(t) => t.get_ref().1.peer_certificates(),
            Io::ClientTls(t) => t.get_ref().1.peer_certificates(),
            _ => None,
        };
        certs.map(|c| c.to_vec()).unwrap_or_default()
    }

    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match self {
            Io::ServerTls(t) => t.get_ref().1.protocol_version(),
            Io::ClientTls(t) => t.get_ref().1.protocol_version(),
            _ => None,
        }
    }
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream is being upgraded")
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// Why a federation stream ends.
#[derive(Debug)]
pub enum End {
    /// Send this stream error, then close.
    Stream(StreamError, Option<String>),
    /// The peer closed its stream.
    PeerClosed,
    /// The socket is gone.
    Io(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Stream(e, Some(t)) => write!(f, "{e}: {t}"),
            End::Stream(e, None) => write!(f, "{e}"),
            End::PeerClosed => f.write_str("the peer closed the stream"),
            End::Io(m) => f.write_str(m),
        }
    }
}

impl From<XmlError> for End {
    fn from(e: XmlError) -> End {
        let (err, text) = match e {
            XmlError::NotWellFormed(t) => (StreamError::NotWellFormed, t),
            XmlError::RestrictedXml(t) => (StreamError::RestrictedXml, t),
            XmlError::PolicyViolation(t) => (StreamError::PolicyViolation, t),
            XmlError::InvalidNamespace(t) => (StreamError::InvalidNamespace, t),
            XmlError::BadNamespacePrefix(t) => (StreamError::BadNamespacePrefix, t),
            XmlError::UnsupportedEncoding => {
                (StreamError::UnsupportedEncoding, "UTF-8 only".to_string())
            }
            XmlError::BadFormat(t) => (StreamError::BadFormat, t),
        };
        End::Stream(err, Some(text))
    }
}

/// A socket with its parser.
pub struct XmlStream {
    pub io: Io,
    pub parser: StreamParser,
    buf: Vec<u8>,
}

impl XmlStream {
    pub fn new(io: Io, limits: Limits) -> XmlStream {
        XmlStream {
            io,
            parser: StreamParser::new(limits),
            buf: vec![0u8; READ_CHUNK],
        }
    }

    pub async fn write(&mut self, data: &str) -> Result<(), End> {
        self.io
            .write_all(data.as_bytes())
            .await
            .map_err(|e| End::Io(e.to_string()))?;
        self.io.flush().await.map_err(|e| End::Io(e.to_string()))
    }

    /// Read once from the socket into the parser; `Err` when the socket closed.
    pub async fn fill(&mut self) -> Result<(), End> {
        let n = self
            .io
            .read(&mut self.buf)
            .await
            .map_err(|e| End::Io(e.to_string()))?;
        if n == 0 {
            return Err(End::Io("connection closed".into()));
        }
        self.parser.feed(&self.buf[..n])?;
        Ok(())
    }

    /// The next event, reading as needed.
    pub async fn next_event(&mut self) -> Result<StreamEvent, End> {
        loop {
            if let Some(ev) = self.parser.next_event()? {
                return Ok(ev);
            }
            self.fill().await?;
        }
    }

    /// Close our stream politely (bounded in time) and shut the socket.
    pub async fn close(&mut self, error: Option<(StreamError, Option<&str>)>) {
        let mut out = String::new();
        if let Some((e, text)) = error {
            out.push_str(&e.to_xml(text));
        }
        out.push_str("</stream:stream>");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.write(&out)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.io.shutdown()).await;
    }
}
