//! PEP node data: configuration (XEP-0060 §16.4.4 `pubsub#node_config` fields), the
//! whitelist, explicit subscriptions and items, and how one node is kept in the keyed store.
//!
//! A node is one XML document in store [`STORE`] under key = node name:
//! `<node xmlns='urn:oriole:pep:0' access=… persist=… max=… send-last=… …>` with
//! `<member jid/>`, `<subscriber jid/>` and `<item id published>payload</item>` children,
//! items oldest first. One document per node keeps a publish atomic (one write).

use std::collections::BTreeSet;

use crate::proto::{ns, StanzaError};
use crate::xml::Element;

use super::{ERRORS, NODE_CONFIG};

/// The keyed store of PEP nodes (key: node name).
pub const STORE: &str = "pep";
/// What `max` means for `pubsub#max_items` (XEP-0223 asks for `max` on private nodes).
pub const MAX_ITEMS_LIMIT: usize = 256;
/// Most nodes one account may have.
pub const MAX_NODES_PER_ACCOUNT: usize = 512;
/// Largest stored node document, in bytes of XML.
pub const MAX_NODE_BYTES: usize = 4 * 1024 * 1024;

const DATA_NS: &str = "urn:oriole:pep:0";

/// `pubsub#access_model` values implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessModel {
    Open,
    Presence,
    Whitelist,
}

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Whitelist => "whitelist",
        }
    }

    fn parse(s: &str) -> Option<AccessModel> {
        Some(match s {
            "open" => AccessModel::Open,
            "presence" => AccessModel::Presence,
            "whitelist" => AccessModel::Whitelist,
            _ => return None,
        })
    }
}

/// `pubsub#send_last_published_item` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

impl SendLast {
    pub fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }

    fn parse(s: &str) -> Option<SendLast> {
        Some(match s {
            "never" => SendLast::Never,
            "on_sub" => SendLast::OnSub,
            "on_sub_and_presence" => SendLast::OnSubAndPresence,
            _ => return None,
        })
    }
}

/// A node's configuration. Defaults follow XEP-0163 §4.3.3 / XEP-0060 §16.4.4 for PEP:
/// presence access, one persistent item, last item sent on subscription and presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub access_model: AccessModel,
    pub persist_items: bool,
    pub max_items: usize,
    pub send_last: SendLast,
    pub deliver_notifications: bool,
    pub deliver_payloads: bool,
    pub notify_retract: bool,
    pub notify_delete: bool,
    pub title: String,
    pub payload_type: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            access_model: AccessModel::Presence,
            persist_items: true,
            max_items: 1,
            send_last: SendLast::OnSubAndPresence,
            deliver_notifications: true,
            deliver_payloads: true,
            notify_retract: true,
            notify_delete: true,
            title: String::new(),
            payload_type: String::new(),
        }
    }
}

/// Why a form field could not be applied.
#[derive(Debug, PartialEq, Eq)]
pub enum FieldError {
    /// Not a field this service knows.
    Unknown,
    /// A known field with a value it cannot take.
    BadValue,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn parse_max(v: &str) -> Option<usize> {
    match v.trim() {
        "max" => Some(MAX_ITEMS_LIMIT),
        n => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_ITEMS_LIMIT).contains(n)),
    }
}

impl NodeConfig {
    /// Apply one field of a `node_config` or `publish-options` form.
    pub fn apply(&mut self, var: &str, values: &[String]) -> Result<(), FieldError> {
        let one = values.first().map(String::as_str).unwrap_or("");
        let bad = FieldError::BadValue;
        match var {
            "pubsub#access_model" => self.access_model = AccessModel::parse(one).ok_or(bad)?,
            "pubsub#persist_items" => self.persist_items = parse_bool(one).ok_or(bad)?,
            "pubsub#max_items" => self.max_items = parse_max(one).ok_or(bad)?,
            "pubsub#send_last_published_item" => {
                self.send_last = SendLast::parse(one).ok_or(bad)?
            }
            "pubsub#deliver_notifications" => {
                self.deliver_notifications = parse_bool(one).ok_or(bad)?
            }
            "pubsub#deliver_payloads" => self.deliver_payloads = parse_bool(one).ok_or(bad)?,
            "pubsub#notify_retract" => self.notify_retract = parse_bool(one).ok_or(bad)?,
            "pubsub#notify_delete" => self.notify_delete = parse_bool(one).ok_or(bad)?,
            "pubsub#title" => self.title = one.to_string(),
            "pubsub#type" => self.payload_type = one.to_string(),
            // Only the owner publishes to a PEP node.
            "pubsub#publish_model" if one == "publishers" => {}
            "pubsub#publish_model" => return Err(bad),
            _ => return Err(FieldError::Unknown),
        }
        Ok(())
    }

    /// How many items the node keeps: `max_items`, or one for a transient node.
    pub fn item_limit(&self) -> usize {
        if self.persist_items {
            self.max_items
        } else {
            1
        }
    }

    /// The configuration as a data form (`type` form or result).
    pub fn to_form(&self, form_type: &str) -> Element {
        let value = |v: &str| Element::new("value", ns::DATA_FORMS).with_text(v);
        let field = |var: &str, kind: &str, label: &str, v: &str| {
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", var)
                .with_attr("type", kind)
                .with_attr("label", label)
                .with_child(value(v))
        };
        let b = |v: bool| if v { "1" } else { "0" };
        let with_options = |mut f: Element, opts: &[&str]| {
            for o in opts {
                f.push_child(Element::new("option", ns::DATA_FORMS).with_child(value(o)));
            }
            f
        };
        Element::new("x", ns::DATA_FORMS)
            .with_attr("type", form_type)
            .with_child(
                Element::new("field", ns::DATA_FORMS)
                    .with_attr("var", "FORM_TYPE")
                    .with_attr("type", "hidden")
                    .with_child(value(NODE_CONFIG)),
            )
            .with_child(field("pubsub#title", "text-single", "Title", &self.title))
            .with_child(field(
                "pubsub#type",
                "text-single",
                "Payload type",
                &self.payload_type,
            ))
            .with_child(with_options(
                field(
                    "pubsub#access_model",
                    "list-single",
                    "Who may subscribe and retrieve items",
                    self.access_model.as_str(),
                ),
                &["open", "presence", "whitelist"],
            ))
            .with_child(with_options(
                field(
                    "pubsub#publish_model",
                    "list-single",
                    "Who may publish",
                    "publishers",
                ),
                &["publishers"],
            ))
            .with_child(field(
                "pubsub#persist_items",
                "boolean",
                "Persist items",
                b(self.persist_items),
            ))
            .with_child(field(
                "pubsub#max_items",
                "text-single",
                "Most items kept (a number or max)",
                &self.max_items.to_string(),
            ))
            .with_child(with_options(
                field(
                    "pubsub#send_last_published_item",
                    "list-single",
                    "When to send the last published item",
                    self.send_last.as_str(),
                ),
                &["never", "on_sub", "on_sub_and_presence"],
            ))
            .with_child(field(
                "pubsub#deliver_notifications",
                "boolean",
                "Deliver event notifications",
                b(self.deliver_notifications),
            ))
            .with_child(field(
                "pubsub#deliver_payloads",
                "boolean",
                "Deliver payloads with notifications",
                b(self.deliver_payloads),
            ))
            .with_child(field(
                "pubsub#notify_retract",
                "boolean",
                "Notify when items are retracted",
                b(self.notify_retract),
            ))
            .with_child(field(
                "pubsub#notify_delete",
                "boolean",
                "Notify when the node is deleted",
                b(self.notify_delete),
            ))
    }
}

/// The fields of a data form: (var, values), FORM_TYPE included.
pub fn form_fields(x: &Element) -> Vec<(String, Vec<String>)> {
    x.elements()
        .filter(|f| f.is("field", ns::DATA_FORMS))
        .filter_map(|f| {
            let var = f.attr("var")?.to_string();
            let values = f
                .elements()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(|v| v.text())
                .collect();
            Some((var, values))
        })
        .collect()
}

/// The FORM_TYPE of a form, if it has one.
pub fn form_type(fields: &[(String, Vec<String>)]) -> Option<&str> {
    fields
        .iter()
        .find(|(var, _)| var == "FORM_TYPE")
        .and_then(|(_, v)| v.first())
        .map(|s| s.trim())
}

/// Apply a submitted configuration form. Unknown fields are ignored (XEP-0060 §8.2.4 lets a
/// service ignore what it does not support); a bad value is `not-acceptable`.
pub fn apply_config_form(cfg: &mut NodeConfig, x: &Element) -> Result<(), StanzaError> {
    let fields = form_fields(x);
    if form_type(&fields).is_some_and(|t| t != NODE_CONFIG) {
        return Err(StanzaError::bad_request().with_text("the form is not a node_config form"));
    }
    for (var, values) in fields.iter().filter(|(v, _)| v != "FORM_TYPE") {
        match cfg.apply(var, values) {
            Ok(()) | Err(FieldError::Unknown) => {}
            Err(FieldError::BadValue) => {
                return Err(StanzaError::not_acceptable()
                    .with_text(format!("{var} cannot take the value {values:?}")))
            }
        }
    }
    Ok(())
}

/// The XEP-0060 §7.1.5 precondition check. On an existing node every field must name a
/// known option and equal the node's value; for a new node the fields become its
/// configuration. Returns the configuration the publish runs under.
pub fn check_publish_options(
    existing: Option<&NodeConfig>,
    x: &Element,
) -> Result<NodeConfig, StanzaError> {
    let fields = form_fields(x);
    let precondition = |why: String| {
        StanzaError::conflict()
            .with_app("precondition-not-met", ERRORS)
            .with_text(why)
    };
    if form_type(&fields).is_some_and(|t| t != super::PUBLISH_OPTIONS) {
        return Err(StanzaError::bad_request().with_text("the form is not publish-options"));
    }
    let base = existing.cloned().unwrap_or_default();
    let mut wanted = base.clone();
    for (var, values) in fields.iter().filter(|(v, _)| v != "FORM_TYPE") {
        match wanted.apply(var, values) {
            Ok(()) => {}
            Err(FieldError::Unknown) => {
                return Err(precondition(format!("{var} is not supported")))
            }
            Err(FieldError::BadValue) => {
                return Err(precondition(format!("{var} cannot be {values:?}")))
            }
        }
    }
    if existing.is_some() && wanted != base {
        return Err(precondition(
            "the node's configuration differs from the publish options".into(),
        ));
    }
    Ok(wanted)
}

/// One published item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    /// XEP-0082 timestamp of publication.
    pub published: String,
    pub payload: Option<Element>,
}

impl Item {
    /// `<item id>payload</item>` in `namespace` (pubsub or pubsub#event).
    pub fn to_element(&self, namespace: &'static str, with_payload: bool) -> Element {
        let mut el = Element::new("item", namespace).with_attr("id", self.id.clone());
        if with_payload {
            if let Some(p) = &self.payload {
                el.push_child(p.clone());
            }
        }
        el
    }
}

/// A node with everything stored about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub config: NodeConfig,
    /// Whitelist (affiliation `member`), bare JIDs.
    pub members: BTreeSet<String>,
    /// Explicit subscriptions (bare or full JIDs).
    pub subscribers: BTreeSet<String>,
    /// Oldest first.
    pub items: Vec<Item>,
}

impl Node {
    pub fn new(name: &str, config: NodeConfig) -> Node {
        Node {
            name: name.to_string(),
            config,
            members: BTreeSet::new(),
            subscribers: BTreeSet::new(),
            items: Vec::new(),
        }
    }

    /// Add or replace an item (a replaced one becomes the newest), then keep at most the
    /// configured number.
    pub fn publish(&mut self, item: Item) {
        self.items.retain(|i| i.id != item.id);
        self.items.push(item);
        self.trim();
    }

    /// Drop the oldest items beyond the configured limit.
    pub fn trim(&mut self) {
        let limit = self.config.item_limit();
        if self.items.len() > limit {
            let excess = self.items.len() - limit;
            self.items.drain(..excess);
        }
    }

    /// Remove an item; whether it was there.
    pub fn retract(&mut self, id: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|i| i.id != id);
        self.items.len() != before
    }

    pub fn last(&self) -> Option<&Item> {
        self.items.last()
    }

    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The stored form.
    pub fn to_stored(&self) -> Element {
        let c = &self.config;
        let b = |v: bool| if v { "1" } else { "0" };
        let mut el = Element::new("node", DATA_NS)
            .with_attr("name", self.name.clone())
            .with_attr("access", c.access_model.as_str())
            .with_attr("persist", b(c.persist_items))
            .with_attr("max", c.max_items.to_string())
            .with_attr("send-last", c.send_last.as_str())
            .with_attr("notify", b(c.deliver_notifications))
            .with_attr("payloads", b(c.deliver_payloads))
            .with_attr("notify-retract", b(c.notify_retract))
            .with_attr("notify-delete", b(c.notify_delete))
            .with_attr("title", c.title.clone())
            .with_attr("type", c.payload_type.clone());
        for m in &self.members {
            el.push_child(Element::new("member", DATA_NS).with_attr("jid", m.clone()));
        }
        for s in &self.subscribers {
            el.push_child(Element::new("subscriber", DATA_NS).with_attr("jid", s.clone()));
        }
        for i in &self.items {
            let mut item = Element::new("item", DATA_NS)
                .with_attr("id", i.id.clone())
                .with_attr("published", i.published.clone());
            if let Some(p) = &i.payload {
                item.push_child(p.clone());
            }
            el.push_child(item);
        }
        el
    }

    /// Read the stored form back; `None` if it is not one.
    pub fn from_stored(el: &Element) -> Option<Node> {
        if !el.is("node", DATA_NS) {
            return None;
        }
        let flag = |name: &str, default: bool| el.attr(name).map_or(default, |v| v == "1");
        let d = NodeConfig::default();
        let config = NodeConfig {
            access_model: AccessModel::parse(el.attr("access")?)?,
            persist_items: flag("persist", d.persist_items),
            max_items: el.attr("max").and_then(parse_max).unwrap_or(d.max_items),
            send_last: el
                .attr("send-last")
                .and_then(SendLast::parse)
                .unwrap_or(d.send_last),
            deliver_notifications: flag("notify", d.deliver_notifications),
            deliver_payloads: flag("payloads", d.deliver_payloads),
            notify_retract: flag("notify-retract", d.notify_retract),
            notify_delete: flag("notify-delete", d.notify_delete),
            title: el.attr("title").unwrap_or_default().to_string(),
            payload_type: el.attr("type").unwrap_or_default().to_string(),
        };
        let mut node = Node::new(el.attr("name")?, config);
        for c in el.elements() {
            match &*c.name {
                "member" => {
                    node.members.insert(c.attr("jid")?.to_string());
                }
                "subscriber" => {
                    node.subscribers.insert(c.attr("jid")?.to_string());
                }
                "item" => node.items.push(Item {
                    id: c.attr("id")?.to_string(),
                    published: c.attr("published").unwrap_or_default().to_string(),
                    payload: c.elements().next().cloned(),
                }),
                _ => {}
            }
        }
        Some(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
        for (var, v) in fields {
            x.push_child(
                Element::new("field", ns::DATA_FORMS)
                    .with_attr("var", *var)
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text(*v)),
            );
        }
        x
    }

    #[test]
    fn stored_form_round_trips() {
        let cfg = NodeConfig {
            access_model: AccessModel::Whitelist,
            max_items: MAX_ITEMS_LIMIT,
            send_last: SendLast::Never,
            title: "t & 'q'".into(),
            ..NodeConfig::default()
        };
        let mut n = Node::new("urn:xmpp:bookmarks:1", cfg);
        n.members.insert("b@example.org".into());
        n.subscribers.insert("c@example.org/r".into());
        n.publish(Item {
            id: "x".into(),
            published: "2026-01-01T00:00:00Z".into(),
            payload: Some(Element::new("p", "urn:p").with_text("1")),
        });
        n.publish(Item {
            id: "y".into(),
            published: "2026-01-01T00:00:01Z".into(),
            payload: None,
        });
        let xml = n.to_stored().to_string();
        let back = crate::xml::parser::parse_element(&xml).expect("parses");
        assert_eq!(Node::from_stored(&back), Some(n));
    }

    #[test]
    fn publish_replaces_by_id_and_trims_to_max_items() {
        let cfg = NodeConfig {
            max_items: 2,
            ..NodeConfig::default()
        };
        let mut n = Node::new("n", cfg);
        for id in ["a", "b", "a", "c"] {
            n.publish(Item {
                id: id.into(),
                published: String::new(),
                payload: None,
            });
        }
        let ids: Vec<_> = n.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        n.config.persist_items = false;
        n.trim();
        assert_eq!(n.items.len(), 1);
        assert_eq!(n.last().map(|i| i.id.as_str()), Some("c"));
    }

    #[test]
    fn publish_options_create_a_node_or_must_match_it() {
        let opts = form(&[
            ("FORM_TYPE", super::super::PUBLISH_OPTIONS),
            ("pubsub#access_model", "open"),
            ("pubsub#max_items", "max"),
        ]);
        let cfg = check_publish_options(None, &opts).expect("new node");
        assert_eq!(cfg.access_model, AccessModel::Open);
        assert_eq!(cfg.max_items, MAX_ITEMS_LIMIT);
        assert!(check_publish_options(Some(&cfg), &opts).is_ok());
        let other = NodeConfig::default();
        let e = check_publish_options(Some(&other), &opts).expect_err("differs");
        assert_eq!(e.condition, "conflict");
        assert_eq!(e.app, Some(("precondition-not-met", ERRORS)));
        let unknown = form(&[("pubsub#frobnicate", "1")]);
        let e = check_publish_options(None, &unknown).expect_err("unknown field");
        assert_eq!(e.app, Some(("precondition-not-met", ERRORS)));
        let bad = form(&[("pubsub#max_items", "0")]);
        assert!(check_publish_options(None, &bad).is_err());
    }

    #[test]
    fn config_form_sets_and_rejects_bad_values() {
        let mut cfg = NodeConfig::default();
        apply_config_form(
            &mut cfg,
            &form(&[
                ("FORM_TYPE", NODE_CONFIG),
                ("pubsub#access_model", "whitelist"),
                ("pubsub#persist_items", "true"),
                ("pubsub#max_items", "10"),
                ("pubsub#unknown_thing", "x"),
            ]),
        )
        .expect("applies");
        assert_eq!(cfg.access_model, AccessModel::Whitelist);
        assert_eq!(cfg.max_items, 10);
        let e = apply_config_form(&mut cfg, &form(&[("pubsub#access_model", "roster")]))
            .expect_err("unsupported model");
        assert_eq!(e.condition, "not-acceptable");
        // The form a client gets back reads as the same configuration.
        let mut again = NodeConfig::default();
        apply_config_form(&mut again, &cfg.to_form("submit")).expect("own form applies");
        assert_eq!(again, cfg);
    }
}
