//! A second independent client: `tokio-xmpp` (xmpp-rs) logs in to Oriole over Direct TLS with
//! SCRAM-SHA-256-PLUS (tls-exporter) and exchanges messages with the test client.

mod common;
#[path = "common/tokio_xmpp_connector.rs"]
mod connector;

use common::*;
use connector::LoopbackDirectTls;
use futures::StreamExt;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::{Event as TxEvent, Stanza};

#[tokio::test]
async fn tokio_xmpp_logs_in_with_plus_and_exchanges_messages() {
    bounded(async {
        let s = TestServer::start().await;
        s.add_users(&["alice", "bob"]).await;
        let mut bob = s.online("bob", "b", 0).await;

        let conn = LoopbackDirectTls::new(s.direct_tls_addr(), s.trust(), true);
        let jid: Jid = "alice@localhost/tx".parse().unwrap();
        let mut alice = tokio_xmpp::Client::new_with_connector(
            jid,
            "alicepw",
            conn.clone(),
            tokio_xmpp::xmlstream::Timeouts::tight(),
        );
        let bound = loop {
            match tokio::time::timeout(W, alice.next()).await {
                Ok(Some(TxEvent::Online { bound_jid, .. })) => break bound_jid,
                Ok(Some(TxEvent::Disconnected(e))) => panic!("tokio-xmpp disconnected: {e}"),
                Ok(Some(TxEvent::Stanza(_))) => {}
                Ok(None) => panic!("tokio-xmpp stream ended"),
                Err(_) => panic!("tokio-xmpp not online; it wrote: {}", conn.transcript()),
            }
        };
        assert_eq!(bound.to_string(), "alice@localhost/tx");
        let sent = conn.transcript();
        assert!(
            sent.contains("SCRAM-SHA-256-PLUS"),
            "tokio-xmpp did not use SCRAM-SHA-256-PLUS: {sent}"
        );

        // tokio-xmpp -> our client.
        let to: Jid = full("bob", "b").parse().unwrap();
        let mut m =
            Message::chat(Some(to)).with_body(Lang(String::new()), "from tokio-xmpp".into());
        m.id = Some(tokio_xmpp::parsers::message::Id("tx1".into()));
        tokio::time::timeout(W, alice.send_stanza(m.into()))
            .await
            .expect("send in time")
            .unwrap();
        let got = expect_message(&mut bob, "tx1").await;
        assert_eq!(got.attr("from"), Some("alice@localhost/tx"));
        assert_eq!(
            got.child_text("body", NS_CLIENT).as_deref(),
            Some("from tokio-xmpp")
        );

        // Our client -> tokio-xmpp.
        send_chat(
            &mut bob,
            "alice@localhost/tx",
            "tx2",
            "from the test client",
        )
        .await;
        let reply = loop {
            match tokio::time::timeout(W, alice.next()).await {
                Ok(Some(TxEvent::Stanza(Stanza::Message(m))))
                    if m.id.as_ref().map(|i| i.0.as_str()) == Some("tx2") =>
                {
                    break m
                }
                Ok(Some(TxEvent::Disconnected(e))) => panic!("tokio-xmpp disconnected: {e}"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("tokio-xmpp stream ended"),
                Err(_) => panic!("tokio-xmpp got no message"),
            }
        };
        assert_eq!(
            reply.from.as_ref().map(|j| j.to_string()),
            Some(full("bob", "b"))
        );
        assert_eq!(
            reply.get_best_body(vec![]).map(|(_, b)| b.as_str()),
            Some("from the test client")
        );
        tokio::time::timeout(W, alice.send_end())
            .await
            .expect("close in time")
            .unwrap();
    })
    .await
}
