//! Modules: one file per XEP or RFC feature, each declaring what it serves (IQ payloads, disco
//! features, stream features) so that disco, `xeps/` and the dispatcher derive from one list.
//!
//! A module acts only through [`ModuleContext`]: storage, configuration, and the
//! [`ServerApi`] (route a stanza, list a user's sessions). It never touches router or session
//! internals. [`register_all`] is the list of modules the server runs.

pub mod blocking;
pub mod carbons;
pub mod disco;
pub mod hooks;
pub mod mam;
pub mod pep;
pub mod ping;
pub mod private;
pub mod push;
pub mod register;
pub mod services;
#[cfg(test)]
pub(crate) mod test_support;
pub mod time;
pub mod vcard;
pub mod version;

use std::sync::Arc;

use crate::config::Config;
use crate::jid::Jid;
use crate::proto::{Stanza, StanzaError};
use crate::session::SessionFlags;
use crate::storage::Storage;
use crate::xml::Element;
pub use hooks::{Direction, Flow, HookPoint};

/// What the server offers modules.
pub trait ServerApi: Send + Sync {
    /// Route a stanza as if the server sent it (roster pushes, notifications, replies).
    fn route(&self, stanza: Stanza);
    /// Full JIDs of the account's bound sessions (`bare` is `user@domain`).
    fn sessions_of(&self, bare: &Jid) -> Vec<Jid>;
    /// Close every session of an account (after it was deleted), with a stream error.
    fn close_account_sessions(&self, bare: &Jid);
    /// Queue a stanza on one bound session directly: no routing, no hooks. `false` when the
    /// session is gone or not reading. (The defaults below describe a server without
    /// sessions, for test doubles.)
    fn send_to_session(&self, _full: &Jid, _stanza: Stanza) -> bool {
        false
    }
    /// The account's bound sessions with their flags.
    fn session_flags(&self, _bare: &Jid) -> Vec<(Jid, SessionFlags)> {
        Vec::new()
    }
    /// The full JIDs of the account's sessions that enabled carbons (XEP-0280), except those
    /// in `exclude`.
    fn carbons_targets(&self, bare: &Jid, exclude: &[Jid]) -> Vec<Jid> {
        self.session_flags(bare)
            .into_iter()
            .filter(|(jid, flags)| flags.carbons && !exclude.contains(jid))
            .map(|(jid, _)| jid)
            .collect()
    }
    /// Change one session's flags; `false` when the session is gone.
    fn update_session_flags(&self, _full: &Jid, _f: &mut dyn FnMut(&mut SessionFlags)) -> bool {
        false
    }
    /// The last available presence of each of the account's available resources.
    fn available_presences(&self, _bare: &Jid) -> Vec<Element> {
        Vec::new()
    }
    /// The account's available resources with the last presence each broadcast.
    fn available_resources(&self, bare: &Jid) -> Vec<(Jid, Element)>;
    /// Tell every module about an event (see [`ModuleEvent`]).
    fn emit(&self, event: &ModuleEvent<'_>);
}

/// Something modules may react to, besides the IQs they declared.
#[derive(Debug, Clone, Copy)]
pub enum ModuleEvent<'a> {
    /// A local resource broadcast available presence; `initial` when it was unavailable before.
    AvailablePresence {
        from: &'a Jid,
        presence: &'a Element,
        initial: bool,
    },
    /// An IQ result or error addressed to a hosted domain: the answer to a server's request.
    IqResponse(&'a Stanza),
    /// An account stored a vCard (XEP-0054).
    VcardStored {
        account: &'a Jid,
        vcard: &'a Element,
    },
    /// The account was deleted (its stored data is gone; its sessions are being closed):
    /// modules drop what they cache about it.
    AccountDeleted { account: &'a Jid },
    /// An account stored an element in private XML storage (XEP-0049).
    PrivateStored {
        account: &'a Jid,
        element: &'a Element,
    },
}

/// Everything a module may use.
#[derive(Clone)]
pub struct ModuleContext {
    pub config: Arc<Config>,
    pub storage: Arc<dyn Storage>,
    pub server: Arc<dyn ServerApi>,
    /// Disco features of the server, from every module's declaration (sorted, deduplicated).
    pub server_features: Arc<Vec<&'static str>>,
    /// Disco features advertised on account bare JIDs.
    pub account_features: Arc<Vec<&'static str>>,
}

/// Where an IQ was addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IqTarget {
    /// A hosted domain (`to` = domain, or absent for pre-session requests).
    Server(Jid),
    /// An account's bare JID (`to` = user@domain, or absent: the sender's own account).
    Account(Jid),
}

/// An IQ request addressed to the server or to an account's bare JID.
pub struct IqRequest<'a> {
    pub stanza: &'a Stanza,
    /// The authenticated sender (a full JID for a local client).
    pub from: Jid,
    pub target: IqTarget,
    /// The single payload child.
    pub payload: &'a Element,
    /// `true` for type "set", `false` for "get".
    pub is_set: bool,
}

impl IqRequest<'_> {
    /// The sender asks about its own account.
    pub fn is_self(&self) -> bool {
        match &self.target {
            IqTarget::Account(bare) => bare == &self.from.to_bare(),
            IqTarget::Server(_) => false,
        }
    }
}

/// A module's answer to an IQ: a result with an optional payload, or an error.
pub type IqResult = Result<Option<Element>, StanzaError>;

/// A server module.
pub trait Module: Send + Sync {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// IQ payloads this module answers: (element name, namespace).
    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Disco features the server advertises because of this module.
    fn server_features(&self) -> &'static [&'static str] {
        &[]
    }
    /// Disco features advertised on account bare JIDs because of this module.
    fn account_features(&self) -> &'static [&'static str] {
        &[]
    }
    /// Answer an IQ whose payload this module declared.
    fn handle_iq(&self, _ctx: &ModuleContext, _req: &IqRequest<'_>) -> IqResult {
        Err(StanzaError::service_unavailable())
    }
    /// See a stanza at a hook point ([`hooks`]); may change it, or consume it with
    /// [`Flow::Stop`].
    fn on_stanza(&self, _ctx: &ModuleContext, _at: HookPoint<'_>, _stanza: &mut Stanza) -> Flow {
        Flow::Continue
    }
    /// A message to `account` was handed to these sessions (none: stored offline or
    /// dropped) under the RFC 6121 rules.
    fn on_message_delivered(
        &self,
        _ctx: &ModuleContext,
        _account: &Jid,
        _stanza: &Stanza,
        _delivered_to: &[Jid],
    ) {
    }
    /// React to an event (presence, IQ responses, data other modules stored).
    fn on_event(&self, _ctx: &ModuleContext, _event: &ModuleEvent<'_>) {}
    /// Messages wait for `session`, whose connection is gone while the session is kept for
    /// XEP-0198 resumption ("hibernating"): with `started`, the messages it had not
    /// acknowledged when it began to hibernate (possibly none); then each message queued for
    /// it while it waits. Used by push notifications (XEP-0357).
    fn on_detached_messages(
        &self,
        _ctx: &ModuleContext,
        _session: &Jid,
        _messages: &[&Stanza],
        _started: bool,
    ) {
    }
}

/// Every module the server runs, in dispatch order.
pub fn register_all(config: &Config) -> Vec<Box<dyn Module>> {
    // Hook order matters: blocking first (a blocked stanza is neither archived nor copied),
    // then the archive (it adds the stanza-id carbon copies carry), then carbons.
    let mut modules: Vec<Box<dyn Module>> = vec![
        Box::new(blocking::BlockingModule::default()),
        Box::new(mam::MamModule::new(config)),
        Box::new(carbons::CarbonsModule),
        Box::new(OfflineFeature),
    ];
    modules.extend(services::all(config));
    modules
}

/// XEP-0160 offline storage lives in the IM core; this declares its disco feature.
struct OfflineFeature;

impl Module for OfflineFeature {
    fn name(&self) -> &'static str {
        "offline"
    }
    fn server_features(&self) -> &'static [&'static str] {
        &[crate::proto::ns::OFFLINE]
    }
}
