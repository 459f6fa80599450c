//! XEP-0357: Push Notifications (`urn:xmpp:push:0`), the user's-server side: mobile clients
//! (Conversations, Monal, Siskin) register their app's push service, and the server tells
//! that service when a message waits for a client that is gone or asleep, so the phone is
//! woken up. On by default (`[push] enabled`).
//!
//! # Registrations
//! `<enable jid node>` (an IQ set to the account's own bare JID, optionally with a
//! `pubsub#publish-options` data form) stores a registration ([`registrations`]); the same
//! JID and node again replaces it (§5: the last publish options win). At most
//! `[push] max_registrations` (default 5) per account: enabling one more drops the oldest, as
//! Prosody's mod_cloud_notify does (apps re-register after a reinstall and never disable).
//! `<disable jid [node]>` removes that one, or every registration of that service.
//!
//! # When a notification goes out
//! Only for a message worth it ([`notification::is_important`]: a body, an encrypted payload,
//! a call proposal), to the account, in two cases:
//! - **Offline**: no resource could take it and it goes to offline storage
//!   ([`Module::on_message_delivered`] with no session): every registration of the account.
//! - **Hibernating**: it was queued for a session whose connection is gone and which waits
//!   for XEP-0198 resumption ([`Module::on_detached_messages`]), or such a session held
//!   unacknowledged messages when it began to hibernate. Notified: the registrations that
//!   session enabled, and those whose enabling session is no longer connected (a phone that is
//!   offline while a desktop hibernates); not those of another session that is still bound
//!   (that device is connected and gets messages itself).
//!
//! # Rate limit
//! At most one notification per registration every `[push] min_interval_secs` (default 5)
//! while the device has not come back: a burst of messages wakes the phone once, and the
//! phone then fetches them all. The window and the message count restart when the device is
//! seen again: it enables push again (Conversations and Monal do at each login), one of the
//! account's resources sends initial presence, or the session that enabled it starts to
//! hibernate. `message-count` is the number of messages since then (the XEP's "unread or
//! undelivered messages"). Suppressed messages are not sent later by a timer: the device the
//! first notification woke gets them when it connects.
//!
//! # Answers from the app server
//! The publish IQ goes out through [`crate::modules::ServerApi::route`] (so over s2s once
//! federation exists), from the account's domain; the answer reaches
//! [`ModuleEvent::IqResponse`]. An error (e.g. `item-not-found`: the app dropped the node)
//! disables the registration at once (§7.1, Prosody). Errors that say nothing about the
//! registration — of type `wait`, or `remote-server-not-found` / `remote-server-timeout` (the
//! path to the app server failed) — only count, and disable it after
//! [`MAX_TRANSIENT_ERRORS`] in a row; a result resets the count.
//!
//! # Not done
//! Pending subscription requests (`pending-subscription-count`), notifications for messages a
//! connected session does not acknowledge in time (Prosody's `smacks-ack-delayed`), the
//! affiliation-change notice of §7.2, and retrying a disabled registration later (§7.1 MAY).

pub mod notification;
pub mod registrations;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::jid::Jid;
use crate::modules::services::storage_failed;
use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext, ModuleEvent};
use crate::proto::{ns, Stanza, StanzaError, StanzaKind};
use crate::xml::Element;
use notification::Summary;
use registrations::Registration;

/// `urn:xmpp:push:0`.
pub const NS: &str = "urn:xmpp:push:0";
/// `http://jabber.org/protocol/pubsub#publish-options`.
pub const PUBLISH_OPTIONS: &str = crate::modules::pep::PUBLISH_OPTIONS;
/// Transient errors in a row after which a registration is disabled all the same.
pub const MAX_TRANSIENT_ERRORS: u32 = 16;
/// Longest node name accepted, in bytes.
pub const MAX_NODE_BYTES: usize = 1024;
/// Largest publish-options form accepted, serialised, in bytes.
pub const MAX_OPTIONS_BYTES: usize = 4096;
/// Notifications waiting for an answer are forgotten after this long.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Most notifications waiting for an answer; past this the oldest are forgotten.
const MAX_PENDING: usize = 10_000;

/// `[push]` in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Offer push notifications (the `urn:xmpp:push:0` account feature).
    pub enabled: bool,
    /// App push registrations kept per account; enabling one more drops the oldest.
    pub max_registrations: usize,
    /// Send the message text (`last-message-body`, cut to 512 characters). Off by default:
    /// the app push service's operator then never sees what was written.
    pub include_body: bool,
    /// Send the sender's address (`last-message-sender`).
    pub include_sender: bool,
    /// At most one notification per registration this often (seconds) while the device has
    /// not come back; 0: one per message.
    pub min_interval_secs: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: true,
            max_registrations: 5,
            include_body: false,
            include_sender: true,
            min_interval_secs: 5,
        }
    }
}

/// (account bare JID, registration key).
type RegKey = (String, String);

/// The rate-limit window of one registration.
#[derive(Debug, Default)]
struct Window {
    last_push: Option<Instant>,
    /// Messages since the device was last seen.
    count: u32,
}

/// A notification waiting for the app server's answer.
#[derive(Debug)]
struct Pending {
    reg: RegKey,
    to: Jid,
    sent: Instant,
}

#[derive(Default)]
struct Runtime {
    /// account -> registration key -> the session (full JID) that last enabled it.
    owners: HashMap<String, HashMap<String, Jid>>,
    /// account -> registration key -> its window.
    windows: HashMap<String, HashMap<String, Window>>,
    /// Transient errors in a row, per registration.
    errors: HashMap<RegKey, u32>,
    /// IQ id -> notification.
    pending: HashMap<String, Pending>,
}

impl Runtime {
    fn forget(&mut self, account: &str, key: &str) {
        if let Some(m) = self.owners.get_mut(account) {
            m.remove(key);
            if m.is_empty() {
                self.owners.remove(account);
            }
        }
        if let Some(m) = self.windows.get_mut(account) {
            m.remove(key);
            if m.is_empty() {
                self.windows.remove(account);
            }
        }
        let rk = (account.to_string(), key.to_string());
        self.errors.remove(&rk);
        self.pending.retain(|_, p| p.reg != rk);
    }

    fn prune_pending(&mut self, now: Instant) {
        if self.pending.len() < MAX_PENDING {
            return;
        }
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.sent) < PENDING_TTL);
        if self.pending.len() >= MAX_PENDING {
            // Still full: forget the oldest half.
            let mut ages: Vec<Instant> = self.pending.values().map(|p| p.sent).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.pending.retain(|_, p| p.sent > cut);
        }
    }
}

/// The push notifications module.
pub struct PushModule {
    config: PushConfig,
    rt: Mutex<Runtime>,
}

impl PushModule {
    pub fn new(config: &PushConfig) -> PushModule {
        PushModule {
            config: config.clone(),
            rt: Mutex::new(Runtime::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Runtime> {
        self.rt.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle_enable(&self, ctx: &ModuleContext, req: &IqRequest<'_>, account: &Jid) -> IqResult {
        let el = req.payload;
        let jid = parse_service_jid(el.attr("jid"))?;
        if jid.to_bare() == *account {
            return Err(StanzaError::bad_request()
                .with_text("the push service cannot be the account itself"));
        }
        let node = el.attr("node").filter(|n| !n.is_empty());
        if node.is_some_and(|n| n.len() > MAX_NODE_BYTES) {
            return Err(StanzaError::not_acceptable().with_text("the node name is too long"));
        }
        let options = match el.child("x", ns::DATA_FORMS) {
            None => None,
            Some(x) => Some(check_options(x)?),
        };
        let reg = Registration {
            jid,
            node: node.map(str::to_string),
            options,
            since: registrations::now_secs(),
        };
        let acct = account.bare_string();
        let dropped = registrations::save(
            ctx.storage.as_ref(),
            &acct,
            &reg,
            self.config.max_registrations.max(1),
        )
        .map_err(|e| storage_failed("push", e))?;
        let key = reg.key();
        let mut rt = self.lock();
        for k in &dropped {
            rt.forget(&acct, k);
        }
        rt.forget(&acct, &key);
        rt.owners
            .entry(acct.clone())
            .or_default()
            .insert(key, req.from.clone());
        drop(rt);
        tracing::info!(account = %acct, service = %reg.jid, node = ?reg.node, dropped = dropped.len(), "push notifications enabled");
        Ok(None)
    }

    fn handle_disable(&self, ctx: &ModuleContext, req: &IqRequest<'_>, account: &Jid) -> IqResult {
        let el = req.payload;
        let jid = parse_service_jid(el.attr("jid"))?;
        let node = el.attr("node").filter(|n| !n.is_empty());
        let acct = account.bare_string();
        let removed = registrations::remove(ctx.storage.as_ref(), &acct, &jid, node)
            .map_err(|e| storage_failed("push", e))?;
        let mut rt = self.lock();
        for k in &removed {
            rt.forget(&acct, k);
        }
        drop(rt);
        tracing::info!(account = %acct, service = %jid, node = ?node, removed = removed.len(), "push notifications disabled");
        Ok(None)
    }

    /// Send notifications for `stanza` to `account`'s registrations. `detached`: the
    /// hibernating session it was queued for (None: stored offline).
    fn notify(&self, ctx: &ModuleContext, account: &Jid, stanza: &Stanza, detached: Option<&Jid>) {
        let Some(message) = notification::is_important(stanza) else {
            return;
        };
        let acct = account.bare_string();
        let regs = match registrations::load(ctx.storage.as_ref(), &acct) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(account = %acct, error = %e, "push registrations unreadable");
                return;
            }
        };
        if regs.is_empty() {
            return;
        }
        let bound = match detached {
            Some(_) => ctx.server.sessions_of(&account.to_bare()),
            None => Vec::new(),
        };
        let Ok(domain) = Jid::domain_jid(account.domain()) else {
            return;
        };
        let interval = Duration::from_secs(self.config.min_interval_secs);
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut rt = self.lock();
            for reg in regs {
                let key = reg.key();
                if let Some(session) = detached {
                    let owner = rt.owners.get(&acct).and_then(|m| m.get(&key));
                    if owner.is_some_and(|o| o != session && bound.contains(o)) {
                        continue;
                    }
                }
                let w = rt
                    .windows
                    .entry(acct.clone())
                    .or_default()
                    .entry(key.clone())
                    .or_default();
                w.count = w.count.saturating_add(1);
                let due = w
                    .last_push
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval);
                if !due {
                    continue;
                }
                w.last_push = Some(now);
                let summary = Summary::of(
                    message,
                    w.count,
                    self.config.include_sender,
                    self.config.include_body,
                );
                let id = format!("push-{:016x}", rand::random::<u64>());
                rt.prune_pending(now);
                rt.pending.insert(
                    id.clone(),
                    Pending {
                        reg: (acct.clone(), key),
                        to: reg.jid.clone(),
                        sent: now,
                    },
                );
                out.push(notification::publish_iq(&domain, &reg, &summary, &id));
            }
        }
        // Routed with no lock held: the app server may be local and answer at once.
        for iq in out {
            tracing::debug!(account = %acct, to = ?iq.attr("to"), "push notification sent");
            ctx.server.route(iq);
        }
    }

    /// The device behind these registrations was seen: restart their windows.
    fn reset_windows(&self, account: &str, owned_by: Option<&Jid>) {
        let mut rt = self.lock();
        match owned_by {
            None => {
                rt.windows.remove(account);
            }
            Some(session) => {
                let keys: Vec<String> = rt
                    .owners
                    .get(account)
                    .map(|m| {
                        m.iter()
                            .filter(|(_, o)| *o == session)
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(w) = rt.windows.get_mut(account) {
                    for k in keys {
                        w.remove(&k);
                    }
                }
            }
        }
    }

    fn on_iq_response(&self, ctx: &ModuleContext, stanza: &Stanza) {
        let Some(id) = stanza.id() else { return };
        let Ok(Some(from)) = stanza.from() else {
            return;
        };
        let pending = {
            let mut rt = self.lock();
            match rt.pending.get(id) {
                Some(p) if p.to == from => rt.pending.remove(id),
                _ => None,
            }
        };
        let Some(p) = pending else { return };
        let (account, key) = &p.reg;
        if stanza.type_attr() != Some("error") {
            self.lock().errors.remove(&p.reg);
            return;
        }
        let error = stanza.el().child("error", ns::CLIENT);
        let kind = error.and_then(|e| e.attr("type")).unwrap_or("cancel");
        let condition = error
            .and_then(|e| e.elements().find(|c| c.ns == ns::STANZAS_ERR))
            .map(|c| c.name.to_string())
            .unwrap_or_else(|| "undefined-condition".into());
        let transient = kind == "wait"
            || matches!(
                condition.as_str(),
                "remote-server-not-found" | "remote-server-timeout"
            );
        if transient {
            let mut rt = self.lock();
            let n = rt.errors.entry(p.reg.clone()).or_insert(0);
            *n += 1;
            let n = *n;
            drop(rt);
            tracing::info!(%account, service = %from, %condition, errors = n, "push notification failed");
            if n < MAX_TRANSIENT_ERRORS {
                return;
            }
        }
        match registrations::remove_key(ctx.storage.as_ref(), account, key) {
            Ok(_) => {
                self.lock().forget(account, key);
                tracing::info!(%account, service = %from, %condition, "push registration disabled after an error");
            }
            Err(e) => {
                tracing::error!(%account, error = %e, "could not disable a push registration")
            }
        }
    }
}

/// The `jid` attribute of `<enable/>` or `<disable/>`.
fn parse_service_jid(attr: Option<&str>) -> Result<Jid, StanzaError> {
    let Some(raw) = attr.filter(|j| !j.is_empty()) else {
        return Err(StanzaError::bad_request().with_text("the 'jid' attribute is missing"));
    };
    Jid::parse(raw).map_err(|_| StanzaError::jid_malformed().with_text("invalid 'jid'"))
}

/// Check a publish-options form: its FORM_TYPE, if any, is `pubsub#publish-options`; it is
/// not too large. Returns the form to store.
fn check_options(x: &Element) -> Result<Element, StanzaError> {
    let fields = crate::modules::pep::node::form_fields(x);
    if let Some(t) = crate::modules::pep::node::form_type(&fields) {
        if t != PUBLISH_OPTIONS {
            return Err(StanzaError::bad_request()
                .with_text(format!("the form's FORM_TYPE must be {PUBLISH_OPTIONS}")));
        }
    }
    if x.to_string().len() > MAX_OPTIONS_BYTES {
        return Err(
            StanzaError::not_acceptable().with_text("the publish-options form is too large")
        );
    }
    Ok(x.clone())
}

impl Module for PushModule {
    fn name(&self) -> &'static str {
        "push"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("enable", NS), ("disable", NS)]
    }

    fn account_features(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        let account = match &req.target {
            IqTarget::Account(bare) if req.is_self() => bare.clone(),
            IqTarget::Account(_) => {
                return Err(StanzaError::forbidden()
                    .with_text("push notifications are set up by the account itself"))
            }
            IqTarget::Server(_) => {
                return Err(
                    StanzaError::service_unavailable().with_text("send this to your own bare JID")
                )
            }
        };
        if !req.is_set {
            return Err(StanzaError::bad_request());
        }
        match &*req.payload.name {
            "enable" => self.handle_enable(ctx, req, &account),
            "disable" => self.handle_disable(ctx, req, &account),
            _ => Err(StanzaError::feature_not_implemented()),
        }
    }

    fn on_message_delivered(
        &self,
        ctx: &ModuleContext,
        account: &Jid,
        stanza: &Stanza,
        delivered_to: &[Jid],
    ) {
        // No session took it: it goes to offline storage (headlines are dropped instead).
        if delivered_to.is_empty()
            && stanza.kind() == StanzaKind::Message
            && stanza.type_attr() != Some("headline")
        {
            self.notify(ctx, account, stanza, None);
        }
    }

    fn on_detached_messages(
        &self,
        ctx: &ModuleContext,
        session: &Jid,
        messages: &[&Stanza],
        started: bool,
    ) {
        let account = session.to_bare();
        if started {
            self.reset_windows(&account.bare_string(), Some(session));
        }
        for m in messages {
            self.notify(ctx, &account, m, Some(session));
        }
    }

    fn on_event(&self, ctx: &ModuleContext, event: &ModuleEvent<'_>) {
        match *event {
            ModuleEvent::IqResponse(stanza) => self.on_iq_response(ctx, stanza),
            ModuleEvent::AvailablePresence {
                from,
                initial: true,
                ..
            } => self.reset_windows(&from.bare_string(), None),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
