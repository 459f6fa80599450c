//! A loopback Direct TLS connector for `tokio-xmpp`, so that it can serve as a second,
//! independent client in tests: no DNS, our own rustls configuration (which accepts the test
//! server's self-signed certificate), optional RFC 9266 tls-exporter channel binding, and a
//! record of every byte the library wrote (to check which SASL mechanism it used).

use super::xmpp::tls::{client_config, TlsInfo, Trust};
use rustls::pki_types::ServerName;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::xmlstream::{initiate_stream, PendingFeaturesRecv, StreamHeader, Timeouts};

/// A stream that copies what is written to it into a shared log.
#[derive(Debug)]
pub struct Tap<S> {
    inner: S,
    written: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.written
                .lock()
                .expect("tap lock")
                .extend_from_slice(&buf[..*n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Direct TLS to a fixed loopback address.
#[derive(Debug, Clone)]
pub struct LoopbackDirectTls {
    pub addr: SocketAddr,
    pub trust: Trust,
    /// Offer SCRAM-…-PLUS with tls-exporter data (the library then asks for -PLUS).
    pub channel_binding: bool,
    /// Everything the library wrote, in plain text (above TLS).
    pub written: Arc<Mutex<Vec<u8>>>,
}

impl LoopbackDirectTls {
    pub fn new(addr: SocketAddr, trust: Trust, channel_binding: bool) -> Self {
        LoopbackDirectTls {
            addr,
            trust,
            channel_binding,
            written: Arc::default(),
        }
    }

    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.written.lock().expect("tap lock")).into_owned()
    }
}

impl ServerConnector for LoopbackDirectTls {
    type Stream = BufStream<Tap<tokio_rustls::client::TlsStream<TcpStream>>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<
        (
            PendingFeaturesRecv<Self::Stream>,
            sasl::common::ChannelBinding,
        ),
        tokio_xmpp::Error,
    > {
        let domain = jid.domain().as_str().to_string();
        let tcp = TcpStream::connect(self.addr).await?;
        let connector =
            tokio_rustls::TlsConnector::from(client_config(&self.trust, Some(b"xmpp-client")));
        let name = ServerName::try_from(domain.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = connector.connect(name, tcp).await?;
        let info = TlsInfo::from_connection(tls.get_ref().1);
        let cb = match (self.channel_binding, info.exporter) {
            (true, Some(data)) => sasl::common::ChannelBinding::TlsExporter(data),
            _ => sasl::common::ChannelBinding::None,
        };
        let tap = Tap {
            inner: tls,
            written: self.written.clone(),
        };
        let stream = initiate_stream(
            BufStream::new(tap),
            ns,
            StreamHeader {
                to: Some(Cow::Owned(domain)),
                from: None,
                id: None,
            },
            timeouts,
        )
        .await?;
        Ok((stream, cb))
    }
}
