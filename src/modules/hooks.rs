//! Stanza hooks: where modules see (and may change or stop) stanzas on their way through the
//! server, besides the IQs addressed to them.
//!
//! # Hook points
//!
//! | point | called from | stanza state | used by |
//! |---|---|---|---|
//! | [`Direction::Sent`] | `c2s` `handle_element`, once per stanza a bound client sends | `from` stamped with the session's full JID; `to` as the client wrote it | blocking (refuse stanzas to blocked JIDs with `<not-acceptable/>` + `<blocked/>`), MAM (archive outgoing messages, strip forged `stanza-id`s), carbons (`<sent/>` copies) |
//! | [`Direction::Inbound`] | `router::route`, once per stanza addressed to a local account (bare or full), after the account was found to exist | `to` is that account | blocking (drop or refuse stanzas from blocked JIDs, and presence from a local user who blocked the recipient), MAM (archive incoming messages, add `<stanza-id by='user@domain'/>`) |
//! | [`Direction::Leaving`] | `router::route`, once per presence from a local account to another server, before federation | final | blocking (no presence to a remote JID the account blocked) |
//! | [`Module::on_message_delivered`] | `router` bare and full delivery, after the RFC 6121 §8.5 targets were chosen | final | carbons (`<received/>` copies to the carbons-enabled resources that did not get the original) |
//! | [`Module::on_detached_messages`] | `c2s` `hibernate`: when a XEP-0198 session whose connection is gone starts waiting for resumption (its unacknowledged messages), then for each message queued for it | final | push (XEP-0357 notifications) |
//!
//! Modules run in [`super::register_all`] order; the first that returns [`Flow::Stop`] ends
//! the stanza's journey (it has answered or dropped it itself). Blocking is registered before
//! MAM and carbons, so a blocked stanza is neither archived nor copied.
//!
//! Stanzas a module sends itself (carbon copies, MAM results, blocklist pushes) go to the
//! session directly through [`super::ServerApi::send_to_session`], not through the router, so
//! they never re-enter the hooks. A message the router routes a second time (the queue of a
//! session that closed is re-routed to other resources or offline storage) does pass
//! [`Direction::Inbound`] again: MAM recognises its own `stanza-id` and does not archive it
//! twice.
//!
//! Session-level state modules need (carbons enabled, blocklist requested) lives in
//! [`crate::session::SessionFlags`], read and changed through the [`super::ServerApi`].
//!
//! Federation: stanzas arriving from another server go through `router::route` and so pass
//! [`Direction::Inbound`] (which also strips forged `stanza-id`s); presence a local user's
//! server sends to remote contacts passes [`Direction::Leaving`].

use crate::jid::Jid;

/// Which way a stanza is going, from the local account's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by one of the account's own clients (the account is the sender).
    Sent,
    /// About to be delivered to the account (the account is the recipient).
    Inbound,
    /// Presence from the account about to leave for another server (`router::route`, just
    /// before federation): the broadcasts and probe answers the server sends on the account's
    /// behalf, which no local recipient's [`Direction::Inbound`] hook gets to see.
    Leaving,
}

/// Whether the stanza goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The module consumed the stanza (dropped it or answered it).
    Stop,
}

/// Where a hook runs: the direction and the local account concerned (`user@domain`), for
/// [`Direction::Sent`] the sending session's full JID, and the stanza's addresses.
///
/// `to` and `from` are parsed once by the caller for all the hooks (parsing them again in
/// each hook was ~13 % of a chat message's CPU); `None` when the attribute is absent or not a
/// valid JID. Hooks do not change a stanza's `to` or `from`.
#[derive(Debug, Clone, Copy)]
pub struct HookPoint<'a> {
    pub dir: Direction,
    pub account: &'a Jid,
    /// The sending session (for [`Direction::Sent`]).
    pub session: Option<&'a Jid>,
    /// The stanza's `to`.
    pub to: Option<&'a Jid>,
    /// The stanza's `from`.
    pub from: Option<&'a Jid>,
}
