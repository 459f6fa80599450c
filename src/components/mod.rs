//! Services that live on their own JIDs beside the hosted domains (XMPP components run
//! inside the server process).
//!
//! - [`upload`]: file sharing and calls — HTTP File Upload at `upload.<domain>`, the SOCKS5
//!   bytestream proxy at `proxy.<domain>`, and the STUN/TURN server advertised by external
//!   service discovery on the domain itself.

pub mod upload;
