//! XEP-0313: Message Archive Management (`urn:xmpp:mam:2`, also `urn:xmpp:mam:1`), with
//! XEP-0359 stanza ids and XEP-0059 result set paging. Storage is the
//! [`crate::storage::archive::Archive`] part of the store.
//!
//! # Archiving (hooks)
//! - Sent by a local client ([`Direction::Sent`]): any `<stanza-id/>` whose `by` is on a
//!   hosted domain is removed first (a client cannot forge our ids); the message is archived
//!   in the sender's archive with the recipient as counterpart.
//! - Inbound to a local account ([`Direction::Inbound`]): archived in the recipient's archive
//!   and given `<stanza-id xmlns='urn:xmpp:sid:0' by='user@domain' id='…'/>` before delivery
//!   (and before offline storage). A message that already carries our id for this account
//!   was archived before (the router re-routes the queue of a closed session) and is not
//!   archived again.
//! - Archived: `chat` and `normal` messages with a body, an encrypted payload, a chat marker
//!   or a `<store/>` hint; never `error`, `headline` or `groupchat`, nor messages with a
//!   `<no-store/>` or `<no-permanent-store/>` hint (XEP-0334), nor carbons or MAM results.
//! - Preferences decide per counterpart: `<never/>` list, `<always/>` list, then the
//!   default (`always`, `roster`: contacts in the roster only, `never`). Accounts without
//!   preferences use `[mam] default`. Each account's stored preferences (or their absence)
//!   are cached in memory after the first read, so a message costs no storage read when the
//!   archive is off; the cache entry is replaced when the account sets preferences and
//!   dropped when the account is deleted ([`ModuleEvent::AccountDeleted`]).
//! - Retention: with `[mam] retention_days` set, messages older than that are deleted, checked
//!   at most hourly, off the reactor.
//!
//! # Queries
//! Only the account itself may query its archive (`forbidden` otherwise). Form fields:
//! `FORM_TYPE`, `with`, `start`, `end`, and (`#extended`) `before-id`, `after-id`, `ids`;
//! any other field is `feature-not-implemented`. RSM `<max/>` (default [`DEFAULT_PAGE`],
//! at most [`MAX_PAGE`]), `<after/>`, `<before/>` (empty: the last page); `<flip-page/>`
//! sends the page newest first. An unknown id anywhere is `item-not-found`. Results are
//! `<message>`s sent to the querying session before the IQ result, which carries
//! `<fin complete='true'>` when the page was not cut by its size, and the RSM `<first/>`,
//! `<last/>` (and `<count/>` when the whole result set is this page).
//!
//! # Ids
//! Archive ids are time-ordered, unique per account and never change; the same id is the
//! MAM result id and the `stanza-id` the recipient saw.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{ArchiveDefault, Config};
use crate::jid::{BareMap, BareOf, Jid};
use crate::modules::services::{load_stored, storage_failed};
use crate::modules::{
    Direction, Flow, HookPoint, IqRequest, IqResult, Module, ModuleContext, ModuleEvent,
};
use crate::proto::{ns, Stanza, StanzaError, StanzaKind};
use crate::storage::archive::{format_id, parse_id, ArchiveQuery, ArchivedMessage};
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:mam:2";
pub const NS1: &str = "urn:xmpp:mam:1";
pub const NS_EXTENDED: &str = "urn:xmpp:mam:2#extended";
pub const NS_SID: &str = "urn:xmpp:sid:0";
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// Keyed store of archiving preferences (key "", JSON).
pub const PREFS_STORE: &str = "mam-prefs";
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 250;
/// How often retention runs at most.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// `<metadata xmlns='urn:xmpp:mam:2'>` with the first and last archived message of an
/// account (also sent in XEP-0386 `<bound/>`).
pub fn archive_metadata(
    storage: &dyn crate::storage::Storage,
    account: &str,
) -> crate::storage::Result<Element> {
    let mut md = Element::new("metadata", NS);
    if let Some((first, last)) = storage.archive_bounds(account)? {
        for (name, m) in [("start", first), ("end", last)] {
            md.push_child(
                Element::new(name, NS)
                    .with_attr("id", format_id(m.id))
                    .with_attr("timestamp", format_stamp(m.id)),
            );
        }
    }
    Ok(md)
}

pub struct MamModule {
    /// What accounts without stored preferences get (`[mam] default`).
    default_prefs: Arc<Prefs>,
    retention: Option<Duration>,
    last_purge: Mutex<Option<Instant>>,
    /// Stored preferences by account bare JID once read; `None`: the account stored none.
    /// Reads from storage and writes to it happen under this lock, so a concurrent change
    /// of preferences cannot be overwritten in the cache by an older read.
    /// Keyed by `Jid`: the per-message lookup builds no string.
    prefs_cache: Mutex<BareMap<Option<Arc<Prefs>>>>,
}

impl MamModule {
    pub fn new(config: &Config) -> MamModule {
        let default: ArchiveDefault = config.mam.default;
        MamModule {
            default_prefs: Arc::new(Prefs {
                default: default.as_str().to_string(),
                always: Vec::new(),
                never: Vec::new(),
            }),
            prefs_cache: Mutex::new(BareMap::new()),
            retention: (config.mam.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(config.mam.retention_days) * 86_400)),
            last_purge: Mutex::new(None),
        }
    }
}

/// An account's archiving preferences.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Prefs {
    pub default: String,
    pub always: Vec<String>,
    pub never: Vec<String>,
}

pub fn now_micros() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// XEP-0082 DateTime with microseconds.
pub fn format_stamp(micros: u64) -> String {
    let nanos = i128::from(micros) * 1000;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Parse a XEP-0082 DateTime into microseconds since the epoch (before 1970: 0).
pub fn parse_stamp(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    let micros = t.unix_timestamp_nanos() / 1000;
    Some(u64::try_from(micros.max(0)).unwrap_or(u64::MAX))
}

/// Whether a message is worth archiving (see the module documentation).
pub fn should_archive(stanza: &Stanza) -> bool {
    if !matches!(stanza.type_attr().unwrap_or("normal"), "chat" | "normal") {
        return false;
    }
    // One pass over the children (this runs twice for every routed message): a reason not to
    // store anywhere wins over content worth keeping.
    let mut worth_keeping = false;
    for c in stanza.el().elements() {
        let (name, uri) = (&*c.name, &*c.ns);
        if (uri == NS_HINTS && matches!(name, "no-store" | "no-permanent-store"))
            || uri == crate::modules::carbons::NS
            || (name == "result" && (uri == NS || uri == NS1))
        {
            return false;
        }
        worth_keeping |= (name == "body" && uri == ns::CLIENT)
            || (name == "store" && uri == NS_HINTS)
            || (name != "markable"
                && (uri == ns::CHAT_MARKERS || ns::ENCRYPTED_PAYLOADS.contains(&uri)));
    }
    worth_keeping
}

impl MamModule {
    fn cache(&self) -> MutexGuard<'_, BareMap<Option<Arc<Prefs>>>> {
        self.prefs_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account's preferences: cached, else read from storage (and cached). A storage or
    /// decoding failure is not cached.
    fn prefs(&self, ctx: &ModuleContext, account: &Jid) -> Result<Arc<Prefs>, StanzaError> {
        let mut cache = self.cache();
        let stored = match cache.get(&BareOf(account)) {
            Some(cached) => cached.clone(),
            None => {
                let stored = Self::read_prefs(ctx, &account.bare_string())?;
                cache.insert(account.to_bare(), stored.clone());
                stored
            }
        };
        Ok(stored.unwrap_or_else(|| self.default_prefs.clone()))
    }

    fn read_prefs(ctx: &ModuleContext, account: &str) -> Result<Option<Arc<Prefs>>, StanzaError> {
        let stored = ctx
            .storage
            .get_item(PREFS_STORE, account, "")
            .map_err(|e| storage_failed("mam", e))?;
        stored
            .map(|json| {
                serde_json::from_str(&json).map(Arc::new).map_err(|e| {
                    tracing::error!(error = %e, "stored MAM preferences do not parse");
                    StanzaError::internal_server_error()
                })
            })
            .transpose()
    }

    /// Store new preferences and put them in the cache.
    fn store_prefs(
        &self,
        ctx: &ModuleContext,
        account: &Jid,
        prefs: Prefs,
    ) -> Result<(), StanzaError> {
        let json =
            serde_json::to_string(&prefs).map_err(|_| StanzaError::internal_server_error())?;
        let key = account.to_bare();
        let account = key.bare_string();
        let mut cache = self.cache();
        // Whatever happens to the write, the cached entry may be stale now.
        cache.remove(&key);
        ctx.storage
            .put_item(PREFS_STORE, &account, "", &json)
            .map_err(|e| storage_failed("mam", e))?;
        cache.insert(key, Some(Arc::new(prefs)));
        Ok(())
    }

    /// Whether `account` archives messages exchanged with `with`.
    fn wanted(&self, ctx: &ModuleContext, account: &Jid, with: &Jid) -> bool {
        let Ok(prefs) = self.prefs(ctx, account) else {
            return true;
        };
        // The common case (no per-JID rules) needs no string for `with`.
        if prefs.never.is_empty() && prefs.always.is_empty() {
            match prefs.default.as_str() {
                "always" => return true,
                "roster" => {}
                _ => return false,
            }
        }
        let bare = with.bare_string();
        if prefs.never.contains(&bare) {
            return false;
        }
        if prefs.always.contains(&bare) {
            return true;
        }
        match prefs.default.as_str() {
            "always" => true,
            "roster" => ctx
                .storage
                .get_roster(&account.bare_string())
                .map(|r| r.items.contains_key(&bare))
                .unwrap_or(false),
            _ => false,
        }
    }

    fn archive(
        &self,
        ctx: &ModuleContext,
        account: &Jid,
        with: &Jid,
        stanza: &Stanza,
    ) -> Option<u64> {
        self.maybe_purge(ctx);
        if !self.wanted(ctx, account, with) {
            return None;
        }
        match ctx.storage.archive_append(
            &account.bare_string(),
            &with.to_string(),
            &stanza.el().to_string(),
            now_micros(),
        ) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, "archiving a message failed");
                None
            }
        }
    }

    fn maybe_purge(&self, ctx: &ModuleContext) {
        let Some(keep) = self.retention else {
            return;
        };
        {
            let mut last = self.last_purge.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < PURGE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let storage = ctx.storage.clone();
        let cutoff =
            now_micros().saturating_sub(u64::try_from(keep.as_micros()).unwrap_or(u64::MAX));
        rt.spawn_blocking(move || match storage.archive_delete_older_than(cutoff) {
            Ok(n) => tracing::info!(removed = n, "MAM retention ran"),
            Err(e) => tracing::error!(error = %e, "MAM retention failed"),
        });
    }

    fn handle_prefs(
        &self,
        ctx: &ModuleContext,
        req: &IqRequest<'_>,
        xmlns: &'static str,
    ) -> IqResult {
        let account = req.from.to_bare();
        if req.is_set {
            let default = req
                .payload
                .attr("default")
                .filter(|d| matches!(*d, "always" | "never" | "roster"))
                .ok_or_else(|| {
                    StanzaError::bad_request().with_text("default must be always, never or roster")
                })?;
            let list = |name: &str| -> Result<Vec<String>, StanzaError> {
                req.payload
                    .child(name, xmlns)
                    .map(|l| {
                        l.elements()
                            .filter(|e| e.is("jid", xmlns))
                            .map(|e| {
                                Jid::parse(e.text().trim())
                                    .map(|j| j.bare_string())
                                    .map_err(|_| StanzaError::jid_malformed())
                            })
                            .collect()
                    })
                    .unwrap_or(Ok(Vec::new()))
            };
            let prefs = Prefs {
                default: default.to_string(),
                always: list("always")?,
                never: list("never")?,
            };
            if prefs.always.len() + prefs.never.len() > 10_000 {
                return Err(StanzaError::resource_constraint());
            }
            self.store_prefs(ctx, &account, prefs)?;
        }
        let prefs = self.prefs(ctx, &account)?;
        let list = |name: &'static str, jids: &[String]| {
            let mut l = Element::new(name, xmlns);
            for j in jids {
                l.push_child(Element::new("jid", xmlns).with_text(j.clone()));
            }
            l
        };
        Ok(Some(
            Element::new("prefs", xmlns)
                .with_attr("default", prefs.default.clone())
                .with_child(list("always", &prefs.always))
                .with_child(list("never", &prefs.never)),
        ))
    }

    fn handle_metadata(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        let md = archive_metadata(&*ctx.storage, &req.from.bare_string())
            .map_err(|e| storage_failed("mam", e))?;
        Ok(Some(md))
    }

    fn handle_query(
        &self,
        ctx: &ModuleContext,
        req: &IqRequest<'_>,
        xmlns: &'static str,
    ) -> IqResult {
        if !req.is_set {
            return Ok(Some(query_form(xmlns)));
        }
        let (items, fin) = run_query(&*ctx.storage, &req.from.bare_string(), req.payload, xmlns)?;
        let queryid = req.payload.attr("queryid");
        let owner = req.from.to_bare();
        for m in &items {
            let Some(msg) = result_message(m, &owner, &req.from, queryid, xmlns) else {
                continue;
            };
            if !ctx.server.send_to_session(&req.from, msg) {
                return Err(StanzaError::resource_constraint());
            }
        }
        Ok(Some(fin))
    }
}

/// The query form a `get` of `<query/>` answers (XEP-0313 §5.1).
pub fn query_form(xmlns: &'static str) -> Element {
    let field = |var: &str, kind: &str| {
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_attr("type", kind)
    };
    let mut x = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(
            field("FORM_TYPE", "hidden")
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(xmlns)),
        )
        .with_child(field("with", "jid-single"))
        .with_child(field("start", "text-single"))
        .with_child(field("end", "text-single"));
    if xmlns == NS {
        x.push_child(field("before-id", "text-single"));
        x.push_child(field("after-id", "text-single"));
        x.push_child(field("ids", "text-multi"));
    }
    Element::new("query", xmlns).with_child(x)
}

/// Run one MAM query (`q`, a `<query/>` of namespace `xmlns`) on the archive of `account`
/// (a user's bare JID, or a room's): the messages to send, in order, and the `<fin/>` for the
/// IQ result. Shared by the user archive and MUC rooms.
pub fn run_query(
    storage: &dyn crate::storage::Storage,
    account: &str,
    q: &Element,
    xmlns: &'static str,
) -> Result<(Vec<ArchivedMessage>, Element), StanzaError> {
    let exists = |id: u64| -> Result<(), StanzaError> {
        match storage.archive_get(account, id) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StanzaError::item_not_found().with_text("no such archive id")),
            Err(e) => Err(storage_failed("mam", e)),
        }
    };
    let id_value = |s: &str| -> Result<u64, StanzaError> {
        let id = parse_id(s.trim())
            .ok_or_else(|| StanzaError::item_not_found().with_text("no such archive id"))?;
        exists(id)?;
        Ok(id)
    };
    let mut query = ArchiveQuery {
        limit: DEFAULT_PAGE,
        ..Default::default()
    };
    let mut ids: Option<Vec<u64>> = None;
    if let Some(form) = q.child("x", ns::DATA_FORMS) {
        for field in form.elements().filter(|e| e.is("field", ns::DATA_FORMS)) {
            let values: Vec<String> = field
                .elements()
                .filter(|e| e.is("value", ns::DATA_FORMS))
                .map(|v| v.text())
                .collect();
            let value = values
                .first()
                .map(|v| v.trim().to_string())
                .unwrap_or_default();
            let extended = xmlns == NS;
            match field.attr("var").unwrap_or("") {
                "FORM_TYPE" => {
                    if value != xmlns {
                        return Err(StanzaError::bad_request().with_text("wrong FORM_TYPE"));
                    }
                }
                "with" if !value.is_empty() => {
                    let j = Jid::parse(&value).map_err(|_| StanzaError::jid_malformed())?;
                    query.with = Some(j.to_string());
                }
                "start" if !value.is_empty() => {
                    query.start = Some(parse_stamp(&value).ok_or_else(|| {
                        StanzaError::bad_request().with_text("start is not a XEP-0082 DateTime")
                    })?);
                }
                "end" if !value.is_empty() => {
                    query.end = Some(parse_stamp(&value).ok_or_else(|| {
                        StanzaError::bad_request().with_text("end is not a XEP-0082 DateTime")
                    })?);
                }
                "after-id" if extended && !value.is_empty() => {
                    query.after = Some(id_value(&value)?);
                }
                "before-id" if extended && !value.is_empty() => {
                    query.before = Some(id_value(&value)?);
                }
                "ids" if extended => {
                    ids = Some(
                        values
                            .iter()
                            .map(|v| id_value(v))
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                "with" | "start" | "end" | "after-id" | "before-id" if xmlns == NS => {}
                "with" | "start" | "end" => {}
                other => {
                    return Err(StanzaError::feature_not_implemented()
                        .with_text(format!("unknown field {other:?}")))
                }
            }
        }
    }
    if let Some(set) = q.child("set", NS_RSM) {
        if let Some(max) = set.child_text("max", NS_RSM) {
            let max: usize = max
                .trim()
                .parse()
                .map_err(|_| StanzaError::bad_request().with_text("max is not a number"))?;
            query.limit = max.min(MAX_PAGE);
        }
        if let Some(after) = set.child_text("after", NS_RSM) {
            let id = id_value(&after)?;
            query.after = Some(query.after.map_or(id, |a| a.max(id)));
        }
        if let Some(before) = set.child("before", NS_RSM) {
            query.from_end = true;
            let text = before.text();
            if !text.trim().is_empty() {
                let id = id_value(&text)?;
                query.before = Some(query.before.map_or(id, |b| b.min(id)));
            }
        }
    }
    let flip = q.child("flip-page", xmlns).is_some();
    let (mut items, complete) = match ids {
        Some(ids) => {
            let mut items = Vec::new();
            for id in ids {
                if let Some(m) = storage
                    .archive_get(account, id)
                    .map_err(|e| storage_failed("mam", e))?
                {
                    items.push(m);
                }
            }
            items.sort_by_key(|m| m.id);
            items.dedup_by_key(|m| m.id);
            (items, true)
        }
        None => {
            let page = storage
                .archive_query(account, &query)
                .map_err(|e| storage_failed("mam", e))?;
            (page.items, page.complete)
        }
    };
    let whole = complete && query.after.is_none() && query.before.is_none();
    if flip {
        items.reverse();
    }
    let mut set = Element::new("set", NS_RSM);
    if let (Some(first), Some(last)) = (items.first(), items.last()) {
        set.push_child(Element::new("first", NS_RSM).with_text(format_id(first.id)));
        set.push_child(Element::new("last", NS_RSM).with_text(format_id(last.id)));
    }
    if whole {
        set.push_child(Element::new("count", NS_RSM).with_text(items.len().to_string()));
    }
    let mut fin = Element::new("fin", xmlns).with_child(set);
    if complete {
        fin.set_attr("complete", "true");
    }
    Ok((items, fin))
}

/// `<message from=archive to=requester><result queryid id><forwarded><delay/><message/>
/// </forwarded>` (`None` when the stored stanza is damaged).
pub fn result_message(
    m: &ArchivedMessage,
    from: &Jid,
    to: &Jid,
    queryid: Option<&str>,
    xmlns: &'static str,
) -> Option<Stanza> {
    let stored = match load_stored("mam", &m.xml) {
        Ok(el) => el,
        Err(_) => return None,
    };
    let forwarded = Element::new("forwarded", crate::modules::carbons::NS_FORWARD)
        .with_child(Element::new("delay", ns::DELAY).with_attr("stamp", format_stamp(m.id)))
        .with_child(stored);
    let result = Element::new("result", xmlns)
        .with_opt_attr("queryid", queryid)
        .with_attr("id", format_id(m.id))
        .with_child(forwarded);
    Some(Stanza(
        Element::new("message", ns::CLIENT)
            .with_attr("from", from.to_string())
            .with_attr("to", to.to_string())
            .with_attr("id", crate::c2s::random_id())
            .with_child(result),
    ))
}

/// Remove `<stanza-id/>`s claiming to be from `by` (or, with `None`, from any hosted JID).
fn strip_stanza_ids(stanza: &mut Stanza, by: impl Fn(&str) -> bool) {
    stanza
        .el_mut()
        .remove_children(|c| c.is("stanza-id", NS_SID) && c.attr("by").is_some_and(&by));
}

impl Module for MamModule {
    fn name(&self) -> &'static str {
        "mam"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("query", NS),
            ("prefs", NS),
            ("metadata", NS),
            ("query", NS1),
            ("prefs", NS1),
        ]
    }

    fn account_features(&self) -> &'static [&'static str] {
        &[NS, NS1, NS_EXTENDED, NS_SID]
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden().with_text("only your own archive"));
        }
        let xmlns = if req.payload.ns == NS { NS } else { NS1 };
        match &*req.payload.name {
            "query" => self.handle_query(ctx, req, xmlns),
            "prefs" => self.handle_prefs(ctx, req, xmlns),
            "metadata" if !req.is_set => self.handle_metadata(ctx, req),
            _ => Err(StanzaError::bad_request()),
        }
    }

    /// A deleted account's cached preferences must not outlive it (a new account of the same
    /// name starts with the configured default).
    fn on_event(&self, _ctx: &ModuleContext, event: &ModuleEvent<'_>) {
        if let ModuleEvent::AccountDeleted { account } = event {
            self.cache().remove(&account.to_bare());
        }
    }

    fn on_stanza(&self, ctx: &ModuleContext, at: HookPoint<'_>, stanza: &mut Stanza) -> Flow {
        if stanza.kind() != StanzaKind::Message {
            return Flow::Continue;
        }
        match at.dir {
            Direction::Sent => {
                strip_stanza_ids(stanza, |by| {
                    Jid::parse(by).is_ok_and(|j| ctx.config.hosts(j.domain()))
                });
                let Some(to) = at.to else {
                    return Flow::Continue;
                };
                // A message to the account itself is archived once, as inbound.
                if !to.same_bare(at.account) && should_archive(stanza) {
                    self.archive(ctx, at.account, to, stanza);
                }
            }
            Direction::Inbound => {
                if stanza.el().elements().any(|c| {
                    c.is("stanza-id", NS_SID)
                        && c.attr("by").is_some_and(|by| at.account.is_bare_text(by))
                }) {
                    // Ours already: archived when it first arrived.
                    return Flow::Continue;
                }
                let Some(from) = at.from else {
                    return Flow::Continue;
                };
                if !should_archive(stanza) {
                    return Flow::Continue;
                }
                if let Some(id) = self.archive(ctx, at.account, from, stanza) {
                    stanza.el_mut().push_child(
                        Element::new("stanza-id", NS_SID)
                            .with_attr("by", at.account.bare_string())
                            .with_attr("id", format_id(id)),
                    );
                }
            }
            // Only presence leaves through this point.
            Direction::Leaving => {}
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(xml: &str) -> Stanza {
        Stanza::from_element(crate::xml::parser::parse_element(xml).unwrap()).unwrap()
    }

    #[test]
    fn stamps_round_trip() {
        let t = 1_700_000_000_123_456;
        assert_eq!(format_stamp(t), "2023-11-14T22:13:20.123456Z");
        assert_eq!(parse_stamp(&format_stamp(t)), Some(t));
        assert_eq!(
            parse_stamp("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(
            parse_stamp("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(parse_stamp("yesterday"), None);
    }

    #[test]
    fn what_is_archived() {
        let c = "xmlns='jabber:client'";
        assert!(should_archive(&msg(&format!(
            "<message {c} type='chat'><body>x</body></message>"
        ))));
        assert!(should_archive(&msg(&format!(
            "<message {c}><body>x</body></message>"
        ))));
        assert!(!should_archive(&msg(&format!("<message {c} type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"))));
        assert!(should_archive(&msg(&format!(
            "<message {c} type='chat'><store xmlns='urn:xmpp:hints'/></message>"
        ))));
        assert!(!should_archive(&msg(&format!(
            "<message {c} type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>"
        ))));
        assert!(!should_archive(&msg(&format!(
            "<message {c} type='headline'><body>x</body></message>"
        ))));
        assert!(!should_archive(&msg(&format!(
            "<message {c} type='error'><body>x</body></message>"
        ))));
        assert!(should_archive(&msg(&format!("<message {c} type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>"))));
        // A reason not to store wins wherever it stands among the children.
        assert!(!should_archive(&msg(&format!(
            "<message {c}><body>x</body><sent xmlns='urn:xmpp:carbons:2'/></message>"
        ))));
        assert!(!should_archive(&msg(&format!(
            "<message {c}><result xmlns='urn:xmpp:mam:2'/><body>x</body></message>"
        ))));
        assert!(!should_archive(&msg(&format!(
            "<message {c}><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        ))));
        assert!(should_archive(&msg(&format!(
            "<message {c}><displayed xmlns='urn:xmpp:chat-markers:0' id='m'/></message>"
        ))));
    }

    /// Preferences are cached: a change is seen by the next message, and a deleted account's
    /// preferences do not outlive it.
    #[test]
    fn cached_prefs_follow_changes_and_deletion() {
        use crate::modules::test_support::{call, config, harness, jid};
        use crate::storage::{archive::Archive, Storage};
        let mut cfg = config();
        cfg.mam.default = ArchiveDefault::Always;
        let mam = MamModule::new(&cfg);
        let store = std::sync::Arc::new(crate::storage::memory::MemoryStore::new());
        let h = harness(cfg).with_storage(store.clone());
        let creds = crate::modules::test_support::fake_credentials("x");
        store.create_account("alice@example.org", &creds).unwrap();
        let (account, session, bob) = (
            jid("alice@example.org"),
            jid("alice@example.org/r"),
            jid("bob@example.org"),
        );
        // Sends one message; returns the id of the newest archived message.
        let send = |n: u32| {
            let mut m = msg(&format!(
                "<message xmlns='jabber:client' type='chat' from='alice@example.org/r' \
                 to='bob@example.org'><body>{n}</body></message>"
            ));
            let at = HookPoint {
                dir: Direction::Sent,
                account: &account,
                session: Some(&session),
                to: Some(&bob),
                from: Some(&session),
            };
            mam.on_stanza(&h.ctx, at, &mut m);
            store
                .archive_bounds("alice@example.org")
                .unwrap()
                .map(|(_, last)| last.id)
        };
        let first = send(1).expect("archived by default");
        let prefs = Element::new("prefs", NS).with_attr("default", "never");
        call(&mam, &h.ctx, "alice@example.org/r", None, true, prefs).unwrap();
        assert_eq!(send(2), Some(first), "prefs set to never");

        // Deleted and created again: the configured default applies again.
        store.delete_account("alice@example.org").unwrap();
        mam.on_event(&h.ctx, &ModuleEvent::AccountDeleted { account: &account });
        store.create_account("alice@example.org", &creds).unwrap();
        assert!(send(3).is_some(), "a new account archives by default");
    }

    #[test]
    fn forged_ids_are_stripped() {
        let mut m = msg("<message xmlns='jabber:client'><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='1'/><stanza-id xmlns='urn:xmpp:sid:0' by='other.example' id='2'/></message>");
        strip_stanza_ids(&mut m, |by| by.ends_with("@x") || by == "x");
        let left: Vec<_> = m.el().elements().filter_map(|e| e.attr("by")).collect();
        assert_eq!(left, vec!["other.example"]);
    }
}
