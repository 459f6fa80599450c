//! An independent XMPP client for tests: its own XML stream reader, SCRAM and PLAIN, STARTTLS
//! and Direct TLS, resource binding and stanza helpers. It uses nothing from the `oriole`
//! crate, so it can be pointed at any server (see `tests/prosody.rs`).
#![allow(dead_code, unused_imports)]

pub mod checks;
pub mod client;
pub mod raw;
pub mod sasl2;
pub mod scram;
pub mod sm;
pub mod tls;
pub mod xml;

pub use client::{Client, ClientError, Event, Mechanism, Security, STEP};
pub use raw::{RawConn, Transcript};
pub use scram::Hash;
pub use tls::Trust;
pub use xml::{escape, parse_element, Element, Node, XmlEvent};

/// The longest one test may run.
pub const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Run a whole test body under [`TEST_LIMIT`], so that it stops by itself.
pub async fn bounded<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("the test did not finish within its time limit")
}
