//! Oriole, an XMPP server.
pub mod admin;
pub mod auth;
pub mod c2s;
pub mod config;
pub mod im;
pub mod jid;
pub mod modules;
pub mod proto;
pub mod router;
pub mod server;
pub mod session;
pub mod storage;
pub mod transport;
pub mod xml;
