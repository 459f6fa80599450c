//! XEP-0163: Personal Eventing Protocol, a XEP-0060 subset on every account's bare JID.
//!
//! Owns `<pubsub xmlns='http://jabber.org/protocol/pubsub'/>` and `…#owner` on account JIDs,
//! the node store ([`node::STORE`]), the XEP-0115 caps cache and the server's own disco#info
//! requests to clients ([`caps`]), and the conversions of [`convert`] (XEP-0398 avatars,
//! XEP-0402/XEP-0411 bookmarks).
//!
//! What a request may do:
//! - Owner (the account itself): publish (nodes are created on first publish, with
//!   `publish-options` as preconditions, XEP-0060 §7.1.5), retract, create, configure, get the
//!   default configuration, delete, purge, get and set affiliations (`member` = whitelist) and
//!   subscriptions. Anyone else doing these gets `forbidden`.
//! - Anyone: items (all, by id, or the newest `max_items`), subscribe, unsubscribe, subject to
//!   the node's access model: `open`; `presence` (the owner's roster has the requester with
//!   subscription from/both, else `<not-authorized/>` + `<presence-subscription-required/>`);
//!   `whitelist` (a `member`, else `<not-allowed/>` + `<closed-node/>`).
//!
//! Notifications (XEP-0163 §4.3) are `<message type='headline'>` from the owner's bare JID to
//! the full JID of every available resource of the owner and of each contact with a presence
//! subscription to the owner (and the access model allows), whose XEP-0115 caps say
//! `node+notify`; plus explicit subscribers. A resource's caps are learned from its presence:
//! an unknown `ver` makes the server ask that resource for disco#info (from the domain), and
//! the answer is cached once its hash checks out. On initial presence (or once its caps are
//! known) a resource gets the last item of each `+notify` node of its own account and of the
//! contacts it is subscribed to (§4.3.2; `send_last_published_item` = `on_sub_and_presence`).
//!
//! Not done: collection nodes, item expiry, subscription options, `roster`/`authorize` access
//! models, the `publisher`/`outcast` affiliations, disco#items listing the nodes, RSM on
//! items, notifications to remote domains (federation is issue 3). Nodes are not in the
//! XEP-0227 export yet. A non-persistent node (`persist_items=false`) keeps its last item.

pub mod caps;
pub mod convert;
pub mod node;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::jid::Jid;
use crate::modules::services::{load_stored, storage_failed};
use crate::modules::{
    Direction, Flow, HookPoint, IqRequest, IqResult, IqTarget, Module, ModuleContext, ModuleEvent,
};
use crate::proto::{ns, Stanza, StanzaError};
use crate::storage::Roster;
use crate::xml::Element;

use caps::{Caps, CapsCache};
use node::{AccessModel, Item, Node, NodeConfig, SendLast};

pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// The feature whose presence on an account means "this account has a PEP service" (disco
/// adds the `pubsub/pep` identity for it).
pub const PEP_FEATURE: &str = "http://jabber.org/protocol/pubsub#publish";

const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#config-node-max",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#member-affiliation",
    "http://jabber.org/protocol/pubsub#modify-affiliations",
    "http://jabber.org/protocol/pubsub#multi-items",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    PEP_FEATURE,
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#subscribe",
    convert::BOOKMARKS2_COMPAT,
    convert::BOOKMARKS2_COMPAT_PEP,
    convert::BOOKMARKS_CONVERSION,
    convert::PEP_VCARD_CONVERSION,
];

/// How long the server waits for a client's disco#info answer.
const DISCO_TIMEOUT: Duration = Duration::from_secs(30);
/// Most outstanding disco#info requests.
const MAX_PENDING: usize = 1024;

/// An outstanding disco#info request to a client.
struct Pending {
    to: Jid,
    caps: Caps,
    sent: Instant,
    /// Resources that sent initial presence with these caps and wait for last items.
    waiting: Vec<Jid>,
}

#[derive(Default)]
struct CapsState {
    cache: CapsCache,
    /// By IQ id.
    pending: HashMap<String, Pending>,
}

/// The PEP service of every account.
#[derive(Default)]
pub struct PepModule {
    caps: Mutex<CapsState>,
    /// Serialises changes to nodes (each is a read, a change and a write).
    writes: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail(e: crate::storage::StorageError) -> StanzaError {
    storage_failed("pep", e)
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn node_attr(el: &Element) -> Result<&str, StanzaError> {
    el.attr("node").filter(|n| !n.is_empty()).ok_or_else(|| {
        StanzaError::bad_request()
            .with_app("nodeid-required", ERRORS)
            .with_text("name the node")
    })
}

/// What a notification carries.
pub enum Event<'a> {
    Items(&'a [Item]),
    Retract(&'a [String]),
    Delete,
    Purge,
}

/// Load a node.
pub fn load(ctx: &ModuleContext, owner: &Jid, name: &str) -> Result<Option<Node>, StanzaError> {
    let Some(xml) = ctx
        .storage
        .get_item(node::STORE, &owner.bare_string(), name)
        .map_err(fail)?
    else {
        return Ok(None);
    };
    let el = load_stored("pep", &xml)?;
    match Node::from_stored(&el) {
        Some(n) => Ok(Some(n)),
        None => {
            tracing::error!(%owner, node = name, "stored PEP node is damaged");
            Err(StanzaError::internal_server_error())
        }
    }
}

fn save(ctx: &ModuleContext, owner: &Jid, n: &Node) -> Result<(), StanzaError> {
    let xml = n.to_stored().to_string();
    if xml.len() > node::MAX_NODE_BYTES {
        return Err(StanzaError::not_acceptable()
            .with_app("payload-too-big", ERRORS)
            .with_text("the node would be too large"));
    }
    ctx.storage
        .put_item(node::STORE, &owner.bare_string(), &n.name, &xml)
        .map_err(fail)
}

fn check_node_count(ctx: &ModuleContext, owner: &Jid) -> Result<(), StanzaError> {
    let n = ctx
        .storage
        .list_items(node::STORE, &owner.bare_string())
        .map_err(fail)?
        .len();
    if n >= node::MAX_NODES_PER_ACCOUNT {
        return Err(StanzaError::policy_violation().with_text(format!(
            "an account may have {} nodes at most",
            node::MAX_NODES_PER_ACCOUNT
        )));
    }
    Ok(())
}

/// Whether `who` (a bare JID) may see the node under its access model (the owner always).
fn allowed(n: &Node, owner: &Jid, owner_roster: &Roster, who: &Jid) -> Result<(), StanzaError> {
    let who = who.to_bare();
    if who == *owner {
        return Ok(());
    }
    match n.config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence => {
            let subscribed = owner_roster
                .items
                .get(&who.bare_string())
                .is_some_and(|i| i.subscription.has_from());
            if subscribed {
                Ok(())
            } else {
                Err(StanzaError::not_authorized()
                    .with_app("presence-subscription-required", ERRORS))
            }
        }
        AccessModel::Whitelist => {
            if n.members.contains(&who.bare_string()) {
                Ok(())
            } else {
                Err(StanzaError::not_allowed().with_app("closed-node", ERRORS))
            }
        }
    }
}

fn pubsub(child: Element) -> Element {
    Element::new("pubsub", PUBSUB).with_child(child)
}

fn owner_pubsub(child: Element) -> Element {
    Element::new("pubsub", PUBSUB_OWNER).with_child(child)
}

impl Module for PepModule {
    fn name(&self) -> &'static str {
        "pep"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("pubsub", PUBSUB), ("pubsub", PUBSUB_OWNER)]
    }

    fn account_features(&self) -> &'static [&'static str] {
        FEATURES
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        let IqTarget::Account(owner) = &req.target else {
            // The domain runs no pubsub service of its own.
            return Err(StanzaError::service_unavailable());
        };
        let owner = owner.to_bare();
        if req.payload.ns == PUBSUB_OWNER {
            if !req.is_self() {
                return Err(StanzaError::forbidden());
            }
            return self.handle_owner(ctx, req, &owner);
        }
        let Some(action) = req
            .payload
            .elements()
            .find(|e| !matches!(&*e.name, "configure" | "publish-options" | "options"))
        else {
            return Err(StanzaError::bad_request().with_text("an empty pubsub request"));
        };
        match (&*action.name, req.is_set) {
            ("publish", true) => {
                self.require_owner(req)?;
                let options = req
                    .payload
                    .child("publish-options", PUBSUB)
                    .and_then(|p| p.child("x", ns::DATA_FORMS));
                self.handle_publish(ctx, &owner, action, options)
            }
            ("retract", true) => {
                self.require_owner(req)?;
                self.handle_retract(ctx, &owner, action)
            }
            ("create", true) => {
                self.require_owner(req)?;
                let form = req
                    .payload
                    .child("configure", PUBSUB)
                    .and_then(|c| c.child("x", ns::DATA_FORMS));
                self.handle_create(ctx, &owner, action, form)
            }
            ("items", false) => self.handle_items(ctx, &owner, &req.from, action),
            ("subscribe", true) => self.handle_subscribe(ctx, &owner, &req.from, action),
            ("unsubscribe", true) => self.handle_unsubscribe(ctx, &owner, &req.from, action),
            _ => Err(StanzaError::feature_not_implemented()
                .with_app("unsupported", ERRORS)
                .with_text(format!("<{}/> is not supported here", action.name))),
        }
    }

    /// XEP-0398 §4: the avatar hash goes into every available presence an account's client
    /// sends, broadcast or directed (MUC joins included).
    fn on_stanza(&self, ctx: &ModuleContext, at: HookPoint<'_>, stanza: &mut Stanza) -> Flow {
        if at.dir == Direction::Sent
            && stanza.el().name == "presence"
            && stanza.type_attr().is_none()
        {
            if let Some(hash) = convert::current_avatar_hash(ctx, at.account) {
                convert::inject_avatar_hash(stanza.el_mut(), &hash);
            }
        }
        Flow::Continue
    }

    fn on_event(&self, ctx: &ModuleContext, event: &ModuleEvent<'_>) {
        match *event {
            ModuleEvent::AvailablePresence {
                from,
                presence,
                initial,
            } => self.on_presence(ctx, from, presence, initial),
            ModuleEvent::IqResponse(stanza) => self.on_iq_response(ctx, stanza),
            ModuleEvent::VcardStored { account, vcard } => {
                convert::vcard_stored(self, ctx, account, vcard)
            }
            ModuleEvent::PrivateStored { account, element } => {
                convert::private_stored(self, ctx, account, element)
            }
            ModuleEvent::AccountDeleted { .. } => {}
        }
    }
}

impl PepModule {
    fn require_owner(&self, req: &IqRequest<'_>) -> Result<(), StanzaError> {
        if req.is_self() {
            Ok(())
        } else {
            Err(StanzaError::forbidden().with_text("only the account publishes to its PEP nodes"))
        }
    }

    fn handle_publish(
        &self,
        ctx: &ModuleContext,
        owner: &Jid,
        publish: &Element,
        options: Option<&Element>,
    ) -> IqResult {
        let name = node_attr(publish)?;
        let mut items = publish.elements().filter(|e| e.is("item", PUBSUB));
        let item = items.next();
        if items.next().is_some() {
            return Err(StanzaError::bad_request()
                .with_app("invalid-payload", ERRORS)
                .with_text("publish one item at a time"));
        }
        let Some(item) = item else {
            return Err(StanzaError::bad_request().with_app("item-required", ERRORS));
        };
        let mut payloads = item.elements();
        let payload = payloads.next().cloned();
        if payloads.next().is_some() {
            return Err(StanzaError::bad_request().with_app("invalid-payload", ERRORS));
        }
        let Some(payload) = payload else {
            return Err(StanzaError::bad_request().with_app("payload-required", ERRORS));
        };
        let id = item
            .attr("id")
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .unwrap_or_else(random_id);
        self.publish(ctx, owner, name, &id, payload, options, None)?;
        convert::after_client_change(self, ctx, owner, name);
        Ok(Some(pubsub(
            Element::new("publish", PUBSUB)
                .with_attr("node", name)
                .with_child(Element::new("item", PUBSUB).with_attr("id", id)),
        )))
    }

    /// Publish one item (creating the node if needed) and notify. `options` are publish
    /// preconditions; `create_with` is the configuration of a node the server creates itself.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        ctx: &ModuleContext,
        owner: &Jid,
        name: &str,
        id: &str,
        payload: Element,
        options: Option<&Element>,
        create_with: Option<NodeConfig>,
    ) -> Result<(), StanzaError> {
        let n = {
            let _w = lock(&self.writes);
            let existing = load(ctx, owner, name)?;
            let config = match options {
                Some(x) => Some(node::check_publish_options(
                    existing.as_ref().map(|n| &n.config),
                    x,
                )?),
                None => None,
            };
            let mut n = match existing {
                Some(n) => n,
                None => {
                    check_node_count(ctx, owner)?;
                    Node::new(name, config.or(create_with).unwrap_or_default())
                }
            };
            n.publish(Item {
                id: id.to_string(),
                published: crate::im::utc_timestamp(),
                payload: Some(payload),
            });
            save(ctx, owner, &n)?;
            n
        };
        if let Some(last) = n.items.last() {
            self.notify(ctx, owner, &n, Event::Items(std::slice::from_ref(last)));
        }
        Ok(())
    }

    fn handle_retract(&self, ctx: &ModuleContext, owner: &Jid, retract: &Element) -> IqResult {
        let name = node_attr(retract)?;
        let ids: Vec<String> = retract
            .elements()
            .filter(|e| e.is("item", PUBSUB))
            .filter_map(|e| e.attr("id").map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Err(StanzaError::bad_request().with_app("item-required", ERRORS));
        }
        let notify = matches!(retract.attr("notify"), Some("1" | "true"));
        self.retract(ctx, owner, name, &ids, notify)?;
        convert::after_client_change(self, ctx, owner, name);
        Ok(None)
    }

    /// Retract items; `item-not-found` if the node or any item is missing (nothing changes).
    pub fn retract(
        &self,
        ctx: &ModuleContext,
        owner: &Jid,
        name: &str,
        ids: &[String],
        notify: bool,
    ) -> Result<(), StanzaError> {
        let n = {
            let _w = lock(&self.writes);
            let mut n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
            for id in ids {
                if !n.retract(id) {
                    return Err(StanzaError::item_not_found()
                        .with_text(format!("no item {id:?} in node {name:?}")));
                }
            }
            save(ctx, owner, &n)?;
            n
        };
        if notify || n.config.notify_retract {
            self.notify(ctx, owner, &n, Event::Retract(ids));
        }
        Ok(())
    }

    fn handle_create(
        &self,
        ctx: &ModuleContext,
        owner: &Jid,
        create: &Element,
        form: Option<&Element>,
    ) -> IqResult {
        let Some(name) = create.attr("node").filter(|n| !n.is_empty()) else {
            return Err(StanzaError::not_acceptable()
                .with_app("nodeid-required", ERRORS)
                .with_text("PEP nodes need a name"));
        };
        let mut config = NodeConfig::default();
        if let Some(x) = form {
            node::apply_config_form(&mut config, x)?;
        }
        let _w = lock(&self.writes);
        if load(ctx, owner, name)?.is_some() {
            return Err(StanzaError::conflict().with_text("the node exists"));
        }
        check_node_count(ctx, owner)?;
        save(ctx, owner, &Node::new(name, config))?;
        Ok(None)
    }

    fn handle_items(
        &self,
        ctx: &ModuleContext,
        owner: &Jid,
        from: &Jid,
        items: &Element,
    ) -> IqResult {
        let name = node_attr(items)?;
        let n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
        let roster = ctx.storage.get_roster(&owner.bare_string()).map_err(fail)?;
        allowed(&n, owner, &roster, from)?;
        let wanted: Vec<&str> = items
            .elements()
            .filter(|e| e.is("item", PUBSUB))
            .filter_map(|e| e.attr("id"))
            .collect();
        let selected: Vec<&Item> = if !wanted.is_empty() {
            wanted.iter().filter_map(|id| n.item(id)).collect()
        } else {
            let max = match items.attr("max_items") {
                Some(m) => m.trim().parse::<usize>().map_err(|_| {
                    StanzaError::bad_request().with_text("max_items is not a number")
                })?,
                None => n.items.len(),
            };
            let skip = n.items.len().saturating_sub(max);
            n.items.iter().skip(skip).collect()
        };
        let mut out = Element::new("items", PUBSUB).with_attr("node", name);
        for i in selected {
            out.push_child(i.to_element(PUBSUB, true));
        }
        Ok(Some(pubsub(out)))
    }

    fn handle_subscribe(
        &self,
        ctx: &ModuleContext,
        owner: &Jid,
        from: &Jid,
        sub: &Element,
    ) -> IqResult {
        let name = node_attr(sub)?;
        let jid = subscriber_jid(sub, from)?;
        let n = {
            let _w = lock(&self.writes);
            let mut n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
            let roster = ctx.storage.get_roster(&owner.bare_string()).map_err(fail)?;
            allowed(&n, owner, &roster, from)?;
            if n.subscribers.insert(jid.to_string()) {
                save(ctx, owner, &n)?;
            }
            n
        };
        if n.config.send_last != SendLast::Never && n.config.deliver_notifications {
            if let Some(last) = n.last() {
                self.send_event(
                    ctx,
                    owner,
                    &jid,
                    &n,
                    &Event::Items(std::slice::from_ref(last)),
                    true,
                );
            }
        }
        Ok(Some(pubsub(
            Element::new("subscription", PUBSUB)
                .with_attr("node", name)
                .with_attr("jid", jid.to_string())
                .with_attr("subscription", "subscribed"),
        )))
    }

    fn handle_unsubscribe(
        &self,
        ctx: &ModuleContext,
        owner: &Jid,
        from: &Jid,
        unsub: &Element,
    ) -> IqResult {
        let name = node_attr(unsub)?;
        let jid = subscriber_jid(unsub, from)?;
        let _w = lock(&self.writes);
        let mut n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
        if !n.subscribers.remove(&jid.to_string()) {
            return Err(StanzaError::unexpected_request().with_app("not-subscribed", ERRORS));
        }
        save(ctx, owner, &n)?;
        Ok(None)
    }

    fn handle_owner(&self, ctx: &ModuleContext, req: &IqRequest<'_>, owner: &Jid) -> IqResult {
        let Some(action) = req.payload.elements().next() else {
            return Err(StanzaError::bad_request().with_text("an empty pubsub#owner request"));
        };
        match (&*action.name, req.is_set) {
            ("default", false) => Ok(Some(owner_pubsub(
                Element::new("default", PUBSUB_OWNER)
                    .with_child(NodeConfig::default().to_form("form")),
            ))),
            ("configure", false) => {
                let name = node_attr(action)?;
                let n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
                Ok(Some(owner_pubsub(
                    Element::new("configure", PUBSUB_OWNER)
                        .with_attr("node", name)
                        .with_child(n.config.to_form("form")),
                )))
            }
            ("configure", true) => {
                let name = node_attr(action)?;
                let Some(x) = action.child("x", ns::DATA_FORMS) else {
                    return Err(StanzaError::bad_request().with_text("no configuration form"));
                };
                let _w = lock(&self.writes);
                let mut n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
                if x.attr("type") == Some("cancel") {
                    return Ok(None);
                }
                node::apply_config_form(&mut n.config, x)?;
                n.trim();
                save(ctx, owner, &n)?;
                Ok(None)
            }
            ("delete", true) => {
                let name = node_attr(action)?;
                let n = {
                    let _w = lock(&self.writes);
                    let n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
                    ctx.storage
                        .delete_item(node::STORE, &owner.bare_string(), name)
                        .map_err(fail)?;
                    n
                };
                if n.config.notify_delete {
                    self.notify(ctx, owner, &n, Event::Delete);
                }
                Ok(None)
            }
            ("purge", true) => {
                let name = node_attr(action)?;
                let n = {
                    let _w = lock(&self.writes);
                    let mut n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
                    n.items.clear();
                    save(ctx, owner, &n)?;
                    n
                };
                self.notify(ctx, owner, &n, Event::Purge);
                Ok(None)
            }
            ("affiliations", false) => {
                let name = node_attr(action)?;
                let n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
                let aff = |jid: &str, a: &str| {
                    Element::new("affiliation", PUBSUB_OWNER)
                        .with_attr("jid", jid)
                        .with_attr("affiliation", a)
                };
                let mut out = Element::new("affiliations", PUBSUB_OWNER)
                    .with_attr("node", name)
                    .with_child(aff(&owner.bare_string(), "owner"));
                for m in &n.members {
                    out.push_child(aff(m, "member"));
                }
                Ok(Some(owner_pubsub(out)))
            }
            ("affiliations", true) => {
                let name = node_attr(action)?;
                let _w = lock(&self.writes);
                let mut n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
                for a in action
                    .elements()
                    .filter(|e| e.is("affiliation", PUBSUB_OWNER))
                {
                    let jid = a
                        .attr("jid")
                        .and_then(|j| Jid::parse(j).ok())
                        .ok_or_else(|| StanzaError::bad_request().with_text("a bad jid"))?
                        .to_bare();
                    if jid == *owner {
                        return Err(StanzaError::not_acceptable()
                            .with_text("the owner's affiliation cannot change"));
                    }
                    match a.attr("affiliation") {
                        Some("member") => {
                            n.members.insert(jid.bare_string());
                        }
                        Some("none") => {
                            n.members.remove(&jid.bare_string());
                        }
                        _ => {
                            return Err(StanzaError::not_acceptable()
                                .with_text("only member and none are supported"))
                        }
                    }
                }
                save(ctx, owner, &n)?;
                Ok(None)
            }
            ("subscriptions", false) => {
                let name = node_attr(action)?;
                let n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
                let mut out = Element::new("subscriptions", PUBSUB_OWNER).with_attr("node", name);
                for s in &n.subscribers {
                    out.push_child(
                        Element::new("subscription", PUBSUB_OWNER)
                            .with_attr("jid", s.clone())
                            .with_attr("subscription", "subscribed"),
                    );
                }
                Ok(Some(owner_pubsub(out)))
            }
            ("subscriptions", true) => {
                let name = node_attr(action)?;
                let _w = lock(&self.writes);
                let mut n = load(ctx, owner, name)?.ok_or_else(StanzaError::item_not_found)?;
                for s in action
                    .elements()
                    .filter(|e| e.is("subscription", PUBSUB_OWNER))
                {
                    let jid = s
                        .attr("jid")
                        .and_then(|j| Jid::parse(j).ok())
                        .ok_or_else(|| StanzaError::bad_request().with_text("a bad jid"))?;
                    match s.attr("subscription") {
                        Some("subscribed") => {
                            n.subscribers.insert(jid.to_string());
                        }
                        Some("none") => {
                            n.subscribers.remove(&jid.to_string());
                        }
                        _ => {
                            return Err(StanzaError::not_acceptable()
                                .with_text("only subscribed and none are supported"))
                        }
                    }
                }
                save(ctx, owner, &n)?;
                Ok(None)
            }
            _ => Err(StanzaError::feature_not_implemented()
                .with_app("unsupported", ERRORS)
                .with_text(format!("<{}/> is not supported here", action.name))),
        }
    }

    // ---- notifications ----

    /// Whether a resource's presence advertises interest in `node` (`node+notify`).
    fn wants(&self, presence: &Element, node: &str) -> bool {
        let Some(c) = Caps::of_presence(presence) else {
            return false;
        };
        let Some(features) = lock(&self.caps).cache.get(&c) else {
            return false;
        };
        let want = format!("{node}+notify");
        features.contains(&want)
    }

    /// Who gets a notification about `n`: full JIDs of interested available resources, and
    /// bare JIDs of explicit subscribers with no such resource.
    fn recipients(&self, ctx: &ModuleContext, owner: &Jid, n: &Node) -> BTreeSet<Jid> {
        let mut out = BTreeSet::new();
        let roster = match ctx.storage.get_roster(&owner.bare_string()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading a roster for PEP notifications failed");
                return out;
            }
        };
        let mut candidates = vec![owner.clone()];
        for item in roster.items.values().filter(|i| i.subscription.has_from()) {
            if let Ok(j) = Jid::parse(&item.jid) {
                candidates.push(j);
            }
        }
        for bare in candidates {
            if allowed(n, owner, &roster, &bare).is_err() {
                continue;
            }
            for (full, presence) in ctx.server.available_resources(&bare) {
                if self.wants(&presence, &n.name) {
                    out.insert(full);
                }
            }
        }
        for s in &n.subscribers {
            let Ok(jid) = Jid::parse(s) else { continue };
            if allowed(n, owner, &roster, &jid).is_err() {
                continue;
            }
            if jid.is_full() {
                out.insert(jid);
                continue;
            }
            let interested: Vec<Jid> = ctx
                .server
                .available_resources(&jid)
                .into_iter()
                .filter(|(_, p)| self.wants(p, &n.name))
                .map(|(f, _)| f)
                .collect();
            if interested.is_empty() {
                if !out.iter().any(|o| o.to_bare() == jid) {
                    out.insert(jid);
                }
            } else {
                out.extend(interested);
            }
        }
        out
    }

    /// Notify everyone concerned about a change to `n`.
    pub fn notify(&self, ctx: &ModuleContext, owner: &Jid, n: &Node, event: Event<'_>) {
        if !n.config.deliver_notifications {
            return;
        }
        for to in self.recipients(ctx, owner, n) {
            self.send_event(ctx, owner, &to, n, &event, false);
        }
    }

    /// One `<message type='headline'>` event from the owner's bare JID.
    fn send_event(
        &self,
        ctx: &ModuleContext,
        owner: &Jid,
        to: &Jid,
        n: &Node,
        event: &Event<'_>,
        delayed: bool,
    ) {
        let body = match event {
            Event::Items(items) => {
                let mut el = Element::new("items", PUBSUB_EVENT).with_attr("node", n.name.clone());
                for i in *items {
                    el.push_child(i.to_element(PUBSUB_EVENT, n.config.deliver_payloads));
                }
                el
            }
            Event::Retract(ids) => {
                let mut el = Element::new("items", PUBSUB_EVENT).with_attr("node", n.name.clone());
                for id in *ids {
                    el.push_child(
                        Element::new("retract", PUBSUB_EVENT).with_attr("id", id.clone()),
                    );
                }
                el
            }
            Event::Delete => Element::new("delete", PUBSUB_EVENT).with_attr("node", n.name.clone()),
            Event::Purge => Element::new("purge", PUBSUB_EVENT).with_attr("node", n.name.clone()),
        };
        let mut msg = Element::new("message", ns::CLIENT)
            .with_attr("from", owner.to_string())
            .with_attr("to", to.to_string())
            .with_attr("type", "headline")
            .with_attr("id", random_id())
            .with_child(Element::new("event", PUBSUB_EVENT).with_child(body));
        if delayed {
            if let Event::Items([item]) = event {
                if !item.published.is_empty() {
                    msg.push_child(
                        Element::new("delay", ns::DELAY)
                            .with_attr("from", owner.to_string())
                            .with_attr("stamp", item.published.clone()),
                    );
                }
            }
        }
        ctx.server.route(Stanza(msg));
    }

    /// XEP-0163 §4.3.2: the last item of each node `full` is interested in, from its own
    /// account and from each contact it is subscribed to.
    fn send_last_items(&self, ctx: &ModuleContext, full: &Jid, features: &[String]) {
        let nodes: Vec<&str> = features
            .iter()
            .filter_map(|f| f.strip_suffix("+notify"))
            .filter(|n| !n.is_empty())
            .collect();
        if nodes.is_empty() {
            return;
        }
        let account = full.to_bare();
        let mut owners = vec![account.clone()];
        match ctx.storage.get_roster(&account.bare_string()) {
            Ok(r) => {
                for item in r.items.values().filter(|i| i.subscription.has_to()) {
                    if let Ok(j) = Jid::parse(&item.jid) {
                        if ctx.config.hosts(j.domain()) {
                            owners.push(j);
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading a roster failed"),
        }
        for owner in owners {
            let roster = if owner == account {
                Roster::default()
            } else {
                match ctx.storage.get_roster(&owner.bare_string()) {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            };
            for name in &nodes {
                let Ok(Some(n)) = load(ctx, &owner, name) else {
                    continue;
                };
                if n.config.send_last != SendLast::OnSubAndPresence
                    || !n.config.deliver_notifications
                    || allowed(&n, &owner, &roster, &account).is_err()
                {
                    continue;
                }
                if let Some(last) = n.last() {
                    self.send_event(
                        ctx,
                        &owner,
                        full,
                        &n,
                        &Event::Items(std::slice::from_ref(last)),
                        true,
                    );
                }
            }
        }
    }

    // ---- XEP-0115 ----

    fn on_presence(&self, ctx: &ModuleContext, from: &Jid, presence: &Element, initial: bool) {
        let Some(c) = Caps::of_presence(presence) else {
            return;
        };
        if !caps::supported_hash(&c.hash) {
            return;
        }
        let query = {
            let mut st = lock(&self.caps);
            if let Some(features) = st.cache.get(&c) {
                drop(st);
                if initial {
                    self.send_last_items(ctx, from, &features);
                }
                return;
            }
            let now = Instant::now();
            st.pending
                .retain(|_, p| now.duration_since(p.sent) < DISCO_TIMEOUT);
            if let Some(p) = st.pending.values_mut().find(|p| p.caps.key() == c.key()) {
                if initial && !p.waiting.contains(from) {
                    p.waiting.push(from.clone());
                }
                return;
            }
            if st.pending.len() >= MAX_PENDING {
                tracing::warn!("too many outstanding caps queries; not asking {from}");
                return;
            }
            let id = format!("caps-{}", random_id());
            st.pending.insert(
                id.clone(),
                Pending {
                    to: from.clone(),
                    caps: c.clone(),
                    sent: now,
                    waiting: if initial {
                        vec![from.clone()]
                    } else {
                        Vec::new()
                    },
                },
            );
            id
        };
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", query)
            .with_attr("from", from.domain())
            .with_attr("to", from.to_string())
            .with_child(
                Element::new("query", ns::DISCO_INFO)
                    .with_attr("node", format!("{}#{}", c.node, c.ver)),
            );
        ctx.server.route(Stanza(iq));
    }

    fn on_iq_response(&self, ctx: &ModuleContext, stanza: &Stanza) {
        let Some(id) = stanza.id() else { return };
        let Ok(Some(from)) = stanza.from() else {
            return;
        };
        let pending = {
            let mut st = lock(&self.caps);
            match st.pending.get(id) {
                Some(p) if p.to == from => st.pending.remove(id),
                _ => None,
            }
        };
        let Some(p) = pending else { return };
        if stanza.type_attr() != Some("result") {
            return;
        }
        let Some(query) = stanza.el().child("query", ns::DISCO_INFO) else {
            return;
        };
        let Some(features) = caps::verify(&p.caps, query) else {
            tracing::debug!(%from, ver = %p.caps.ver, "caps hash does not match disco#info");
            return;
        };
        lock(&self.caps).cache.insert(&p.caps, features.clone());
        for full in p.waiting {
            // Still there with the same caps?
            let current = ctx
                .server
                .available_resources(&full.to_bare())
                .into_iter()
                .find(|(j, _)| *j == full);
            if let Some((_, presence)) = current {
                if Caps::of_presence(&presence).is_some_and(|c| c.key() == p.caps.key()) {
                    self.send_last_items(ctx, &full, &features);
                }
            }
        }
    }
}

/// The `jid` of a subscribe/unsubscribe: it must be the sender's bare or full JID.
fn subscriber_jid(el: &Element, from: &Jid) -> Result<Jid, StanzaError> {
    let invalid = || {
        StanzaError::bad_request()
            .with_app("invalid-jid", ERRORS)
            .with_text("subscribe with your own JID")
    };
    let jid = el
        .attr("jid")
        .and_then(|j| Jid::parse(j).ok())
        .ok_or_else(invalid)?;
    if jid.to_bare() != from.to_bare() || (jid.is_full() && jid != *from) {
        return Err(invalid());
    }
    Ok(jid)
}

#[cfg(test)]
mod tests;
