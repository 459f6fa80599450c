//! Wire types shared by every stream: namespaces, stanza helpers, and the stanza and stream
//! errors of RFC 6120 §8.3 and §4.9. No I/O.

pub mod ns;
pub mod shared;
pub mod stanza;
pub mod stanza_error;
pub mod stream_error;

pub use stanza::{Stanza, StanzaKind};
pub use stanza_error::{ErrorType, StanzaError};
pub use stream_error::StreamError;
