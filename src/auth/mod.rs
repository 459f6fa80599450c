//! Authentication: SASL mechanisms as pure state machines, and stored credentials.
//! (STUB: being written.)
pub mod credentials;
