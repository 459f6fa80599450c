//! Instant messaging core (RFC 6121): rosters, presence and subscriptions, offline messages.
//!
//! These three share the session registry's presence state and the roster, so they live in
//! the core rather than behind the module contract: a presence broadcast reads the roster, a
//! subscription changes it and pushes it, the first available presence releases offline
//! messages.

pub mod offline;
pub mod presence;
pub mod roster;

/// The current time as an XEP-0082 UTC timestamp (`2026-11-22T10:00:00.123Z`).
pub fn utc_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}
