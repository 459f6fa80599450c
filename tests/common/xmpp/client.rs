//! The test client: one TCP connection, plain or TLS, with stream negotiation (STARTTLS or
//! Direct TLS, SASL, resource binding) and helpers to send and await stanzas.
//!
//! Every read is bounded by a timeout, so a test that waits for something the server never
//! sends fails instead of hanging. Stanzas read while waiting for a particular one are kept
//! in a queue and handed out by later calls, so the order in which unrelated stanzas arrive
//! does not matter to tests unless they ask for it.

use super::scram::{self, ChannelBinding, Hash, ScramClient};
use super::tls::{client_config, TlsInfo, Trust};
use super::xml::*;
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// The timeout of one step when a call does not give its own.
pub const STEP: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum ClientError {
    Io(std::io::Error),
    Timeout(String),
    /// The TCP connection was closed; `unconsumed` is what had not been parsed.
    Closed {
        unconsumed: String,
    },
    /// The peer sent `</stream:stream>`.
    StreamEnded,
    /// The peer sent a stream error with this condition.
    StreamError {
        condition: String,
        element: Element,
    },
    /// A SASL `<failure/>` with its condition.
    SaslFailure {
        condition: String,
        text: Option<String>,
    },
    /// An IQ error or other unexpected stanza where a result was needed.
    Stanza(Element),
    Tls(String),
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::StreamError { element, .. } => write!(f, "stream error: {element}"),
            ClientError::Stanza(e) => write!(f, "unexpected stanza: {e}"),
            other => write!(f, "{other:?}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// The socket, before or after TLS.
pub enum Transport {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Between a failed or finished TLS upgrade and the next step.
    Gone,
}

impl Transport {
    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Tcp(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Transport::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Transport::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf).await,
            Transport::Tls(s) => s.read(buf).await,
            Transport::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown().await,
            Transport::Tls(s) => s.shutdown().await,
            Transport::Gone => Ok(()),
        }
    }

    /// Run a TLS client handshake over the TCP stream.
    pub async fn upgrade(
        &mut self,
        domain: &str,
        trust: &Trust,
        alpn: Option<&[u8]>,
    ) -> Result<TlsInfo> {
        let tcp = match std::mem::replace(self, Transport::Gone) {
            Transport::Tcp(t) => t,
            other => {
                *self = other;
                return Err(ClientError::Protocol("TLS is already on".into()));
            }
        };
        let connector = tokio_rustls::TlsConnector::from(client_config(trust, alpn));
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| ClientError::Tls(format!("server name {domain:?}: {e}")))?;
        let tls = timeout(STEP, connector.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout("TLS handshake".into()))?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let info = TlsInfo::from_connection(tls.get_ref().1);
        *self = Transport::Tls(Box::new(tls));
        Ok(info)
    }
}

/// What [`Client::next_event`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Element(Element),
    StreamEnd,
    /// TCP closed (EOF) or reset.
    Closed,
}

/// SASL mechanism choice for [`Client::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(Hash),
    /// SCRAM-…-PLUS with RFC 9266 tls-exporter binding.
    ScramPlusExporter(Hash),
    /// The best the server offers of SCRAM-SHA-512/256/1 (no -PLUS), signalling channel
    /// binding support ("y") when TLS exporter data exists and the server offers no -PLUS.
    BestScram,
}

/// How to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    StartTls,
    /// Direct TLS with ALPN `xmpp-client` (XEP-0368).
    DirectTls,
}

pub struct Client {
    pub io: Transport,
    reader: StreamReader,
    pub domain: String,
    pub trust: Trust,
    /// The server's last stream header.
    pub header: Option<Element>,
    /// The last `<stream:features/>` received.
    pub features: Option<Element>,
    /// The bound full JID.
    pub jid: Option<String>,
    pub tls: Option<TlsInfo>,
    /// Stanzas read but not yet handed out.
    pub pending: VecDeque<Element>,
    /// Details of the last SCRAM exchange (iteration count, salt).
    pub last_scram: Option<ScramClient>,
    next_id: u64,
    trace: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("domain", &self.domain)
            .field("jid", &self.jid)
            .finish()
    }
}

fn trace_enabled() -> bool {
    std::env::var_os("ORIOLE_TEST_TRACE").is_some()
}

impl Client {
    /// A plain TCP connection; nothing is sent yet.
    pub async fn tcp(addr: SocketAddr, domain: &str, trust: Trust) -> Result<Client> {
        let tcp = timeout(STEP, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(format!("connect to {addr}")))??;
        tcp.set_nodelay(true)?;
        Ok(Client {
            io: Transport::Tcp(tcp),
            reader: StreamReader::new(),
            domain: domain.to_string(),
            trust,
            header: None,
            features: None,
            jid: None,
            tls: None,
            pending: VecDeque::new(),
            last_scram: None,
            next_id: 0,
            trace: trace_enabled().then(|| addr.to_string()),
        })
    }

    /// A Direct TLS connection (ALPN as given; XEP-0368 uses `Some(b"xmpp-client")`); nothing
    /// is sent after the handshake.
    pub async fn direct_tls(
        addr: SocketAddr,
        domain: &str,
        trust: Trust,
        alpn: Option<&[u8]>,
    ) -> Result<Client> {
        let mut c = Client::tcp(addr, domain, trust).await?;
        let info = c.io.upgrade(domain, &c.trust.clone(), alpn).await?;
        c.tls = Some(info);
        Ok(c)
    }

    /// Connect and negotiate TLS (STARTTLS or Direct TLS); returns with the features of the
    /// encrypted stream read.
    pub async fn connect(
        addr: SocketAddr,
        domain: &str,
        trust: Trust,
        security: Security,
    ) -> Result<Client> {
        match security {
            Security::StartTls => {
                let mut c = Client::tcp(addr, domain, trust).await?;
                c.open_stream().await?;
                c.starttls().await?;
                Ok(c)
            }
            Security::DirectTls => {
                let mut c = Client::direct_tls(addr, domain, trust, Some(b"xmpp-client")).await?;
                c.open_stream().await?;
                Ok(c)
            }
        }
    }

    /// Connect, authenticate with the best SCRAM offered and bind `resource` (or let the
    /// server choose).
    pub async fn login(
        addr: SocketAddr,
        domain: &str,
        trust: Trust,
        security: Security,
        user: &str,
        password: &str,
        resource: Option<&str>,
    ) -> Result<Client> {
        let mut c = Client::connect(addr, domain, trust, security).await?;
        c.authenticate(Mechanism::BestScram, user, password).await?;
        c.bind(resource).await?;
        Ok(c)
    }

    fn trace(&self, dir: &str, data: &str) {
        if let Some(t) = &self.trace {
            eprintln!("[{t} {}] {dir} {data}", self.jid.as_deref().unwrap_or("-"));
        }
    }

    /// A fresh id for a request.
    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("t{}", self.next_id)
    }

    /// The bound full JID (panics before binding).
    pub fn full_jid(&self) -> &str {
        self.jid.as_deref().expect("resource bound")
    }

    /// The bare JID of the bound session.
    pub fn bare_jid(&self) -> &str {
        let j = self.full_jid();
        j.split('/').next().unwrap_or(j)
    }

    // ---- raw I/O ----

    /// Write bytes as they are.
    pub async fn send_raw(&mut self, data: &[u8]) -> Result<()> {
        self.trace("SEND", &String::from_utf8_lossy(data));
        timeout(STEP, self.io.write_all(data))
            .await
            .map_err(|_| ClientError::Timeout("write".into()))??;
        Ok(())
    }

    /// Send XML text (a stanza or other element) as it is.
    pub async fn send(&mut self, xml: &str) -> Result<()> {
        self.send_raw(xml.as_bytes()).await
    }

    /// Read more bytes into the reader; `false` on EOF. A connection reset counts as EOF.
    async fn fill(&mut self, deadline: Instant, what: &str) -> Result<bool> {
        let mut buf = vec![0u8; 16384];
        let n = match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
            Err(_) => {
                return Err(ClientError::Timeout(format!(
                    "waiting for {what}; unparsed: {:?}; last parse error: {:?}",
                    String::from_utf8_lossy(self.reader.unconsumed()),
                    self.reader.last_error
                )))
            }
            Ok(Ok(n)) => n,
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                0
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(false);
        }
        self.trace("RECV", &String::from_utf8_lossy(&buf[..n]));
        self.reader.feed(&buf[..n]);
        Ok(true)
    }

    /// The next parsed item, whatever it is (the stream header is returned as an element
    /// named `stream`). Does not look at the pending queue.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Event> {
        let deadline = Instant::now() + wait;
        loop {
            match self.reader.next_event().map_err(ClientError::Protocol)? {
                Some(XmlEvent::Header(h)) => {
                    self.header = Some(h.clone());
                    return Ok(Event::Element(h));
                }
                Some(XmlEvent::Element(e)) => return Ok(Event::Element(e)),
                Some(XmlEvent::StreamEnd) => return Ok(Event::StreamEnd),
                None => {}
            }
            if !self.fill(deadline, "data").await? {
                return Ok(Event::Closed);
            }
        }
    }

    /// The next first-level element, turning a stream error, the stream's end or EOF into an
    /// error. Does not look at the pending queue.
    async fn next_element(&mut self, deadline: Instant) -> Result<Element> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.next_event(wait).await? {
            Event::Element(e) if e.is("error", NS_STREAM) => Err(ClientError::StreamError {
                condition: e.error_condition().unwrap_or_default(),
                element: e,
            }),
            Event::Element(e) => Ok(e),
            Event::StreamEnd => Err(ClientError::StreamEnded),
            Event::Closed => Err(ClientError::Closed {
                unconsumed: String::from_utf8_lossy(self.reader.unconsumed()).into_owned(),
            }),
        }
    }

    // ---- stream negotiation ----

    /// Send a stream header and read the server's header and features.
    pub async fn open_stream(&mut self) -> Result<Element> {
        let header = format!(
            "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' \
             xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'>",
            escape(&self.domain)
        );
        self.send(&header).await?;
        self.read_header_and_features().await
    }

    /// Read the server's stream header and `<stream:features/>` (after sending a header).
    pub async fn read_header_and_features(&mut self) -> Result<Element> {
        let deadline = Instant::now() + STEP;
        let h = self.next_element(deadline).await?;
        if !h.is("stream", NS_STREAM) {
            return Err(ClientError::Protocol(format!(
                "expected a stream header, got {h}"
            )));
        }
        let f = self.next_element(deadline).await?;
        if !f.is("features", NS_STREAM) {
            return Err(ClientError::Protocol(format!(
                "expected stream features, got {f}"
            )));
        }
        self.features = Some(f.clone());
        Ok(f)
    }

    /// The SASL mechanisms offered in the last features.
    pub fn mechanisms(&self) -> Vec<String> {
        self.features
            .as_ref()
            .and_then(|f| f.child("mechanisms", NS_SASL))
            .map(|m| {
                m.children_named("mechanism", NS_SASL)
                    .map(|e| e.text().trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Channel-binding types listed in XEP-0440 `<sasl-channel-binding/>`.
    pub fn channel_binding_types(&self) -> Vec<String> {
        self.features
            .as_ref()
            .and_then(|f| f.child("sasl-channel-binding", NS_SASL_CB))
            .map(|m| {
                m.children_named("channel-binding", NS_SASL_CB)
                    .filter_map(|e| e.attr("type").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `<starttls/>`, `<proceed/>`, handshake, new stream; returns the new features.
    pub async fn starttls(&mut self) -> Result<Element> {
        self.send(&format!("<starttls xmlns='{NS_TLS}'/>")).await?;
        let e = self.next_element(Instant::now() + STEP).await?;
        if !e.is("proceed", NS_TLS) {
            return Err(ClientError::Protocol(format!(
                "expected <proceed/>, got {e}"
            )));
        }
        self.tls_handshake_and_restart().await
    }

    /// After `<proceed/>`: handshake (no ALPN), reset the parser, open the new stream.
    pub async fn tls_handshake_and_restart(&mut self) -> Result<Element> {
        if !self.reader.unconsumed().is_empty() {
            return Err(ClientError::Protocol(format!(
                "bytes after <proceed/> in plain text: {:?}",
                String::from_utf8_lossy(self.reader.unconsumed())
            )));
        }
        let trust = self.trust.clone();
        let domain = self.domain.clone();
        let info = self.io.upgrade(&domain, &trust, None).await?;
        self.tls = Some(info);
        self.reader.reset();
        self.open_stream().await
    }

    /// SASL authentication, then the stream restart; returns the new features.
    pub async fn authenticate(
        &mut self,
        mech: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<Element> {
        let offered = self.mechanisms();
        let exporter = self.tls.as_ref().and_then(|t| t.exporter.clone());
        let scram = match mech {
            Mechanism::Plain => {
                let initial = scram::plain_initial(user, password);
                self.send(&format!(
                    "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
                    scram::b64(&initial)
                ))
                .await?;
                return self.finish_sasl(None).await;
            }
            Mechanism::Scram(h) => ScramClient::new(h, user, password, ChannelBinding::Unsupported),
            Mechanism::ScramPlusExporter(h) => {
                let data =
                    exporter.ok_or_else(|| ClientError::Protocol("no TLS exporter data".into()))?;
                ScramClient::new(
                    h,
                    user,
                    password,
                    ChannelBinding::Bound {
                        name: "tls-exporter".into(),
                        data,
                    },
                )
            }
            Mechanism::BestScram => {
                let h = [Hash::Sha512, Hash::Sha256, Hash::Sha1]
                    .into_iter()
                    .find(|h| offered.iter().any(|m| m == h.scram_name()))
                    .ok_or_else(|| {
                        ClientError::Protocol(format!("no SCRAM offered: {offered:?}"))
                    })?;
                let any_plus = offered.iter().any(|m| m.ends_with("-PLUS"));
                let cb = if exporter.is_some() && !any_plus {
                    ChannelBinding::NotAdvertised
                } else {
                    ChannelBinding::Unsupported
                };
                ScramClient::new(h, user, password, cb)
            }
        };
        self.authenticate_scram(scram).await
    }

    /// Run one SCRAM exchange as configured (any hash and channel-binding choice), then the
    /// stream restart; returns the new features.
    pub async fn authenticate_scram(&mut self, mut scram: ScramClient) -> Result<Element> {
        let first = scram.client_first();
        self.send(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='{}'>{}</auth>",
            scram.mechanism_name(),
            scram::b64(first.as_bytes())
        ))
        .await?;
        let challenge = self.next_element(Instant::now() + STEP).await?;
        if challenge.is("failure", NS_SASL) {
            return Err(sasl_failure(&challenge));
        }
        if !challenge.is("challenge", NS_SASL) {
            return Err(ClientError::Protocol(format!(
                "expected a SASL challenge, got {challenge}"
            )));
        }
        let server_first =
            String::from_utf8(scram::unb64(&challenge.text()).map_err(ClientError::Protocol)?)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let fin = scram
            .client_final(&server_first)
            .map_err(ClientError::Protocol)?;
        self.send(&format!(
            "<response xmlns='{NS_SASL}'>{}</response>",
            scram::b64(fin.as_bytes())
        ))
        .await?;
        let r = self.finish_sasl(Some(&scram)).await;
        self.last_scram = Some(scram);
        r
    }

    /// Await `<success/>` (verifying the SCRAM server signature), then restart the stream.
    async fn finish_sasl(&mut self, scram: Option<&ScramClient>) -> Result<Element> {
        let mut e = self.next_element(Instant::now() + STEP).await?;
        // RFC 6120 §6.4.6 sends the server-final data with <success/>; RFC 3920 servers sent
        // it in a challenge answered by an empty response.
        if e.is("challenge", NS_SASL) {
            if let Some(s) = scram {
                let data = scram::unb64(&e.text()).map_err(ClientError::Protocol)?;
                s.verify_server_final(&String::from_utf8_lossy(&data))
                    .map_err(ClientError::Protocol)?;
            }
            self.send(&format!("<response xmlns='{NS_SASL}'/>")).await?;
            e = self.next_element(Instant::now() + STEP).await?;
            if e.is("success", NS_SASL) {
                return self.restart().await;
            }
        }
        if e.is("failure", NS_SASL) {
            return Err(sasl_failure(&e));
        }
        if !e.is("success", NS_SASL) {
            return Err(ClientError::Protocol(format!(
                "expected SASL success, got {e}"
            )));
        }
        if let Some(s) = scram {
            let data = scram::unb64(&e.text()).map_err(ClientError::Protocol)?;
            s.verify_server_final(&String::from_utf8_lossy(&data))
                .map_err(ClientError::Protocol)?;
        }
        self.restart().await
    }

    async fn restart(&mut self) -> Result<Element> {
        if !self.reader.unconsumed().is_empty() {
            return Err(ClientError::Protocol(format!(
                "bytes after SASL success before the restart: {:?}",
                String::from_utf8_lossy(self.reader.unconsumed())
            )));
        }
        self.reader.reset();
        self.open_stream().await
    }

    /// Resource binding (RFC 6120 §7); returns the full JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> Result<String> {
        let id = self.new_id();
        let payload = match resource {
            Some(r) => format!(
                "<bind xmlns='{NS_BIND}'><resource>{}</resource></bind>",
                escape(r)
            ),
            None => format!("<bind xmlns='{NS_BIND}'/>"),
        };
        self.send(&format!("<iq type='set' id='{id}'>{payload}</iq>"))
            .await?;
        let reply = self.recv_iq_reply(&id, STEP).await?;
        if reply.attr("type") != Some("result") {
            return Err(ClientError::Stanza(reply));
        }
        let jid = reply
            .child("bind", NS_BIND)
            .and_then(|b| b.child_text("jid", NS_BIND))
            .ok_or_else(|| ClientError::Protocol(format!("bind result without a JID: {reply}")))?;
        self.jid = Some(jid.trim().to_string());
        Ok(jid.trim().to_string())
    }

    // ---- stanzas ----

    /// The next stanza (pending ones first).
    pub async fn recv_stanza(&mut self, wait: Duration) -> Result<Element> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(e);
        }
        self.next_element(Instant::now() + wait).await
    }

    /// The first stanza for which `pred` holds; others are kept for later calls.
    pub async fn recv_matching<F>(&mut self, wait: Duration, what: &str, pred: F) -> Result<Element>
    where
        F: Fn(&Element) -> bool,
    {
        if let Some(pos) = self.pending.iter().position(&pred) {
            return Ok(self.pending.remove(pos).expect("index from position"));
        }
        let deadline = Instant::now() + wait;
        loop {
            let e = match self.next_element(deadline).await {
                Err(ClientError::Timeout(_)) => {
                    return Err(ClientError::Timeout(format!(
                        "{what}; other stanzas received meanwhile: [{}]",
                        self.pending
                            .iter()
                            .map(|e| e.to_xml())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
                r => r?,
            };
            if pred(&e) {
                return Ok(e);
            }
            self.pending.push_back(e);
        }
    }

    /// Every stanza received before the first one matching `marker` (which is consumed and
    /// returned last). Used to show that something was *not* delivered: the sender sends the
    /// stanza under test, then a marker along the same path; the server processes one
    /// stream's stanzas in order (RFC 6120 §10.1).
    pub async fn collect_until<F>(
        &mut self,
        wait: Duration,
        marker: F,
    ) -> Result<(Vec<Element>, Element)>
    where
        F: Fn(&Element) -> bool,
    {
        let mut before = Vec::new();
        let deadline = Instant::now() + wait;
        loop {
            let e = match self.pending.pop_front() {
                Some(e) => e,
                None => self.next_element(deadline).await?,
            };
            if marker(&e) {
                return Ok((before, e));
            }
            before.push(e);
        }
    }

    /// The reply (result or error) to the IQ with this id.
    pub async fn recv_iq_reply(&mut self, id: &str, wait: Duration) -> Result<Element> {
        let id = id.to_string();
        self.recv_matching(wait, &format!("reply to IQ {id}"), move |e| {
            e.name == "iq"
                && e.attr("id") == Some(id.as_str())
                && matches!(e.attr("type"), Some("result") | Some("error"))
        })
        .await
    }

    /// The reply to the IQ with this id, which must be a result.
    pub async fn expect_iq_result(&mut self, id: &str) -> Result<Element> {
        let r = self.recv_iq_reply(id, STEP).await?;
        if r.attr("type") == Some("result") {
            Ok(r)
        } else {
            Err(ClientError::Stanza(r))
        }
    }

    /// Send an IQ and return its reply (result or error). `to` None omits the attribute.
    pub async fn iq(&mut self, kind: &str, to: Option<&str>, payload: &str) -> Result<Element> {
        let id = self.new_id();
        let to = to
            .map(|t| format!(" to='{}'", escape(t)))
            .unwrap_or_default();
        self.send(&format!("<iq type='{kind}' id='{id}'{to}>{payload}</iq>"))
            .await?;
        self.recv_iq_reply(&id, STEP).await
    }

    /// An IQ get/set that must succeed; returns the result.
    pub async fn iq_ok(&mut self, kind: &str, to: Option<&str>, payload: &str) -> Result<Element> {
        let r = self.iq(kind, to, payload).await?;
        if r.attr("type") == Some("result") {
            Ok(r)
        } else {
            Err(ClientError::Stanza(r))
        }
    }

    /// Send `<presence>` with the given inner XML and attributes (e.g. `" type='unavailable'"`).
    pub async fn presence(&mut self, attrs: &str, inner: &str) -> Result<()> {
        if inner.is_empty() {
            self.send(&format!("<presence{attrs}/>")).await
        } else {
            self.send(&format!("<presence{attrs}>{inner}</presence>"))
                .await
        }
    }

    /// Available presence with a priority.
    pub async fn available(&mut self, priority: i32) -> Result<()> {
        self.presence("", &format!("<priority>{priority}</priority>"))
            .await
    }

    /// The roster (RFC 6121 §2.1.3); returns the IQ result.
    pub async fn roster_get(&mut self) -> Result<Element> {
        self.iq_ok("get", None, &format!("<query xmlns='{NS_ROSTER}'/>"))
            .await
    }

    /// Roster set of one item (inner XML of `<item/>` such as groups may be given).
    pub async fn roster_set(&mut self, jid: &str, attrs: &str, inner: &str) -> Result<Element> {
        self.iq(
            "set",
            None,
            &format!(
                "<query xmlns='{NS_ROSTER}'><item jid='{}'{attrs}>{inner}</item></query>",
                escape(jid)
            ),
        )
        .await
    }

    /// A ping to the server (XEP-0199) that must be answered with a result: a barrier
    /// showing that the server processed everything this client sent before.
    pub async fn ping_server(&mut self) -> Result<()> {
        let domain = self.domain.clone();
        self.iq_ok("get", Some(&domain), "<ping xmlns='urn:xmpp:ping'/>")
            .await
            .map(|_| ())
    }

    /// Await a stream error; returns its condition. The connection must then close.
    pub async fn expect_stream_error(&mut self, wait: Duration) -> Result<String> {
        let deadline = Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next_event(remaining).await? {
                Event::Element(e) if e.is("error", NS_STREAM) => {
                    let cond = e.error_condition().unwrap_or_default();
                    self.expect_closed(deadline.saturating_duration_since(Instant::now()))
                        .await?;
                    return Ok(cond);
                }
                Event::Element(e) => self.pending.push_back(e),
                Event::StreamEnd => return Err(ClientError::StreamEnded),
                Event::Closed => {
                    return Err(ClientError::Closed {
                        unconsumed: String::from_utf8_lossy(self.reader.unconsumed()).into_owned(),
                    })
                }
            }
        }
    }

    /// Await the end of the stream and of the connection: `</stream:stream>` then EOF, or
    /// EOF alone. Any stanza on the way is kept in `pending`.
    pub async fn expect_closed(&mut self, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next_event(remaining).await? {
                Event::Element(e) => self.pending.push_back(e),
                Event::StreamEnd => {
                    // The TCP connection must follow; answer with our own close.
                    let _ = self.io.write_all(b"</stream:stream>").await;
                }
                Event::Closed => return Ok(()),
            }
        }
    }

    /// Close the stream cleanly: `</stream:stream>`, then wait for the server's close.
    pub async fn close(mut self) -> Result<()> {
        self.send("</stream:stream>").await?;
        loop {
            match self.next_event(STEP).await? {
                Event::StreamEnd | Event::Closed => break,
                Event::Element(_) => {}
            }
        }
        let _ = timeout(STEP, self.io.shutdown()).await;
        Ok(())
    }

    /// Bytes read but not parsed yet.
    pub fn pending_bytes(&self) -> Vec<u8> {
        self.reader.unconsumed().to_vec()
    }

    /// Whether bytes arrive (and are buffered, unparsed) within `wait`; for checking that a
    /// peer sends nothing at a point where it must stay silent.
    pub async fn pending_bytes_after(&mut self, wait: Duration) -> bool {
        if !self.reader.unconsumed().is_empty() {
            return true;
        }
        let deadline = Instant::now() + wait;
        matches!(self.fill(deadline, "anything").await, Ok(true))
            || !self.reader.unconsumed().is_empty()
    }

    /// Read everything until the peer closes the connection (or `wait` passes), returning
    /// what had not been parsed yet followed by all bytes received.
    pub async fn read_to_close(&mut self, wait: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut out = self.reader.unconsumed().to_vec();
        self.reader.reset();
        let mut buf = vec![0u8; 16384];
        loop {
            match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Err(_) => {
                    return Err(ClientError::Timeout(format!(
                        "connection still open; received {:?}",
                        String::from_utf8_lossy(&out)
                    )))
                }
                Ok(Ok(0)) => return Ok(out),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Ok(Err(_)) => return Ok(out),
            }
        }
    }
}

fn sasl_failure(e: &Element) -> ClientError {
    ClientError::SaslFailure {
        condition: e
            .elements()
            .find(|c| c.ns == NS_SASL && c.name != "text")
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        text: e.child_text("text", NS_SASL),
    }
}
