//! Client side of XEP-0388 (SASL2), XEP-0386 (Bind 2), XEP-0484 (FAST, the HT-SHA-256
//! mechanisms of draft-schmaus-kitten-sasl-ht) and the client check of XEP-0474 (the `h=`
//! downgrade-protection hash in SCRAM server-first). Written from the specifications; shares
//! no code with the server.

use super::client::{Client, ClientError, Event, Result, STEP};
use super::scram::{self, ChannelBinding, Hash, ScramClient};
use super::xml::*;

pub const NS_SASL2: &str = "urn:xmpp:sasl:2";
pub const NS_BIND2: &str = "urn:xmpp:bind:0";
pub const NS_FAST: &str = "urn:xmpp:fast:0";
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";

/// The mechanism a SASL2 authentication uses.
#[derive(Debug, Clone)]
pub enum Sasl2Mech {
    Scram(Hash),
    /// SCRAM-…-PLUS with tls-exporter channel binding.
    ScramPlusExporter(Hash),
    Plain,
    /// An HT mechanism (`HT-SHA-256-NONE` or `HT-SHA-256-EXPR`) with a FAST token.
    Fast {
        mechanism: String,
        token: String,
    },
}

/// One `<authenticate/>`.
#[derive(Debug, Clone)]
pub struct Sasl2Request {
    pub mech: Sasl2Mech,
    pub user: String,
    pub password: String,
    /// `<user-agent id/>`.
    pub client_id: Option<String>,
    /// Extra children of `<authenticate/>` (`<bind/>`, `<resume/>`, `<request-token/>`, …).
    pub inline: String,
}

impl Sasl2Request {
    pub fn new(mech: Sasl2Mech, user: &str, password: &str) -> Sasl2Request {
        Sasl2Request {
            mech,
            user: user.into(),
            password: password.into(),
            client_id: None,
            inline: String::new(),
        }
    }

    pub fn client_id(mut self, id: &str) -> Self {
        self.client_id = Some(id.into());
        self
    }

    pub fn inline(mut self, xml: &str) -> Self {
        self.inline.push_str(xml);
        self
    }
}

/// A successful SASL2 authentication: `<success/>` and the features that followed it.
#[derive(Debug, Clone)]
pub struct Sasl2Success {
    pub success: Element,
    pub features: Element,
}

impl Sasl2Success {
    pub fn authorization_identifier(&self) -> String {
        self.success
            .child_text("authorization-identifier", NS_SASL2)
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The `<token/>` FAST issued: (token, expiry).
    pub fn token(&self) -> Option<(String, String)> {
        let t = self.success.child("token", NS_FAST)?;
        Some((t.attr("token")?.to_string(), t.attr("expiry")?.to_string()))
    }
}

/// XEP-0474 §"Server Sends Downgrade Protection Hash", computed by the client from what it
/// saw advertised: base64(H(sorted mechanisms joined by 0x1E [0x1F sorted cb types joined by
/// 0x1E])).
pub fn ssdp_hash(hash: Hash, mechanisms: &[String], cb_types: &[String]) -> String {
    let mut m = mechanisms.to_vec();
    m.sort();
    let mut s = m.join("\u{1e}");
    if !cb_types.is_empty() {
        let mut t = cb_types.to_vec();
        t.sort();
        s.push('\u{1f}');
        s.push_str(&t.join("\u{1e}"));
    }
    scram::b64(&hash.hash(s.as_bytes()))
}

/// The `h=` attribute of a SCRAM server-first-message.
pub fn server_first_h(server_first: &str) -> Option<&str> {
    server_first.split(',').find_map(|a| a.strip_prefix("h="))
}

impl Client {
    /// The `<authentication/>` feature of the last features.
    pub fn sasl2_feature(&self) -> Option<Element> {
        self.features
            .as_ref()?
            .child("authentication", NS_SASL2)
            .cloned()
    }

    /// Mechanisms listed in `<authentication/>`.
    pub fn sasl2_mechanisms(&self) -> Vec<String> {
        self.sasl2_feature()
            .map(|a| {
                a.children_named("mechanism", NS_SASL2)
                    .map(|m| m.text().trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// FAST mechanisms listed in `<inline><fast/></inline>`.
    pub fn fast_mechanisms(&self) -> Vec<String> {
        self.sasl2_feature()
            .and_then(|a| a.child("inline", NS_SASL2).cloned())
            .and_then(|i| i.child("fast", NS_FAST).cloned())
            .map(|f| {
                f.children_named("mechanism", NS_FAST)
                    .map(|m| m.text().trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The next top-level element; stream errors and the stream's end become errors.
    async fn sasl2_next(&mut self) -> Result<Element> {
        match self.next_event(STEP).await? {
            Event::Element(e) if e.is("error", NS_STREAM) => Err(ClientError::StreamError {
                condition: e.error_condition().unwrap_or_default(),
                element: e,
            }),
            Event::Element(e) => Ok(e),
            Event::StreamEnd => Err(ClientError::StreamEnded),
            Event::Closed => Err(ClientError::Closed {
                unconsumed: String::new(),
            }),
        }
    }

    /// Run one SASL2 authentication. `Ok(Err(failure))` when the server answered
    /// `<failure/>`. Verifies the SCRAM server signature or the HT responder message in
    /// `<additional-data/>`, and the XEP-0474 `h=` against the advertised lists (a missing or
    /// wrong `h=` is an error). On success the features after it are read and stored, and a
    /// full JID in `<authorization-identifier/>` becomes the client's JID.
    pub async fn sasl2_authenticate(
        &mut self,
        req: &Sasl2Request,
    ) -> Result<std::result::Result<Sasl2Success, Element>> {
        let advertised = self.sasl2_mechanisms();
        let cb_types = self.channel_binding_types();
        let exporter = self.tls.as_ref().and_then(|t| t.exporter.clone());
        let mut scram_client = None;
        let mut ht_expect = None;
        let (mech_name, initial) = match &req.mech {
            Sasl2Mech::Plain => (
                "PLAIN".to_string(),
                scram::plain_initial(&req.user, &req.password),
            ),
            Sasl2Mech::Scram(h) | Sasl2Mech::ScramPlusExporter(h) => {
                let cb = match &req.mech {
                    Sasl2Mech::ScramPlusExporter(_) => ChannelBinding::Bound {
                        name: "tls-exporter".into(),
                        data: exporter
                            .clone()
                            .ok_or_else(|| ClientError::Protocol("no TLS exporter".into()))?,
                    },
                    _ => ChannelBinding::Unsupported,
                };
                let s = ScramClient::new(*h, &req.user, &req.password, cb);
                let r = (s.mechanism_name(), s.client_first().into_bytes());
                scram_client = Some(s);
                r
            }
            Sasl2Mech::Fast { mechanism, token } => {
                let cb: Vec<u8> = match mechanism.as_str() {
                    "HT-SHA-256-NONE" => Vec::new(),
                    "HT-SHA-256-EXPR" => exporter
                        .clone()
                        .ok_or_else(|| ClientError::Protocol("no TLS exporter".into()))?,
                    other => return Err(ClientError::Protocol(format!("unsupported {other}"))),
                };
                let mut initiator = b"Initiator".to_vec();
                initiator.extend_from_slice(&cb);
                let mut responder = b"Responder".to_vec();
                responder.extend_from_slice(&cb);
                let mut msg = req.user.clone().into_bytes();
                msg.push(0);
                msg.extend_from_slice(&Hash::Sha256.hmac(token.as_bytes(), &initiator));
                ht_expect = Some(Hash::Sha256.hmac(token.as_bytes(), &responder));
                (mechanism.clone(), msg)
            }
        };
        let ua = req
            .client_id
            .as_ref()
            .map(|id| {
                format!(
                    "<user-agent id='{}'><software>oriole-tests</software></user-agent>",
                    escape(id)
                )
            })
            .unwrap_or_default();
        self.send(&format!(
            "<authenticate xmlns='{NS_SASL2}' mechanism='{mech_name}'>\
             <initial-response>{}</initial-response>{ua}{}</authenticate>",
            scram::b64(&initial),
            req.inline
        ))
        .await?;
        let mut e = self.sasl2_next().await?;
        if e.is("challenge", NS_SASL2) {
            let s = scram_client
                .as_mut()
                .ok_or_else(|| ClientError::Protocol(format!("unexpected challenge {e}")))?;
            let server_first =
                String::from_utf8(scram::unb64(&e.text()).map_err(ClientError::Protocol)?)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let hash = match &req.mech {
                Sasl2Mech::Scram(h) | Sasl2Mech::ScramPlusExporter(h) => *h,
                _ => Hash::Sha256,
            };
            let expected = ssdp_hash(hash, &advertised, &cb_types);
            match server_first_h(&server_first) {
                Some(h) if h == expected => {}
                other => {
                    return Err(ClientError::Protocol(format!(
                        "XEP-0474: server-first h={other:?}, expected {expected} for {advertised:?} / {cb_types:?}"
                    )))
                }
            }
            let fin = s
                .client_final(&server_first)
                .map_err(ClientError::Protocol)?;
            self.send(&format!(
                "<response xmlns='{NS_SASL2}'>{}</response>",
                scram::b64(fin.as_bytes())
            ))
            .await?;
            e = self.sasl2_next().await?;
        }
        if e.is("failure", NS_SASL2) {
            return Ok(Err(e));
        }
        if !e.is("success", NS_SASL2) {
            return Err(ClientError::Protocol(format!(
                "expected SASL2 success, got {e}"
            )));
        }
        let data = e
            .child_text("additional-data", NS_SASL2)
            .map(|t| scram::unb64(&t))
            .transpose()
            .map_err(ClientError::Protocol)?;
        if let Some(s) = &scram_client {
            let data = data.clone().ok_or_else(|| {
                ClientError::Protocol("SCRAM success without additional data".into())
            })?;
            s.verify_server_final(&String::from_utf8_lossy(&data))
                .map_err(ClientError::Protocol)?;
        }
        if let Some(expect) = ht_expect {
            if data.as_deref() != Some(&expect[..]) {
                return Err(ClientError::Protocol(
                    "HT responder message does not match: the server does not know the token"
                        .into(),
                ));
            }
        }
        if let Some(s) = scram_client {
            self.last_scram = Some(s);
        }
        let f = self.sasl2_next().await?;
        if !f.is("features", NS_STREAM) {
            return Err(ClientError::Protocol(format!(
                "expected stream features after SASL2 success, got {f}"
            )));
        }
        self.features = Some(f.clone());
        let success = Sasl2Success {
            success: e,
            features: f,
        };
        let authz = success.authorization_identifier();
        if authz.contains('/') {
            self.jid = Some(authz);
        }
        Ok(Ok(success))
    }
}

/// The RFC 6120 condition inside a SASL2 `<failure/>`.
pub fn failure_condition(f: &Element) -> String {
    f.elements()
        .find(|c| c.ns == NS_SASL)
        .map(|c| c.name.clone())
        .unwrap_or_default()
}
