//! Oriole, an XMPP server.
pub mod auth;
pub mod config;
pub mod jid;
pub mod modules;
pub mod proto;
pub mod storage;
pub mod transport;
pub mod xml;
