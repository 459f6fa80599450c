//! Conversions that keep old and new storage of the same data in step.
//!
//! - XEP-0398 (User Avatar to vCard-Based Avatars Conversion), the store side: a vCard stored
//!   with a `PHOTO` is published as XEP-0084 `urn:xmpp:avatar:data` + `…:metadata` (item id =
//!   SHA-1 of the image, nodes created `open` like the vCard they come from); an avatar
//!   published with XEP-0084 becomes the vCard's `PHOTO` (empty metadata removes it). Every
//!   available presence a client sends carries the avatar's hash in `vcard-temp:x:update`
//!   (XEP-0398 §4, XEP-0153), unless the client sent an empty `<photo/>` (no avatar) or a hash
//!   of its own.
//! - Bookmarks: XEP-0049 private storage `<storage xmlns='storage:bookmarks'/>` (XEP-0048 1.0),
//!   the XEP-0048 1.1 PEP node `storage:bookmarks` (XEP-0411) and XEP-0402 `urn:xmpp:bookmarks:1`
//!   (one item per room) are one set: a write to any of them rewrites the other two
//!   (XEP-0402 §5.3 `#compat` and `#compat-pep`, XEP-0411 `urn:xmpp:bookmarks-conversion:0`).
//!   `<url/>` bookmarks exist only in the old format and are kept there.
//!
//! Conversions write the other stores directly (not through their modules), so they never
//! trigger each other; failures are logged and never fail the client's own request.

use std::collections::BTreeMap;

use base64::Engine as _;
use sha1::Digest as _;

use crate::jid::Jid;
use crate::modules::{vcard::MAX_VCARD_BYTES, ModuleContext};
use crate::proto::{ns, StanzaError};
use crate::storage::stores;
use crate::xml::Element;

use super::node::{AccessModel, NodeConfig, SendLast, MAX_ITEMS_LIMIT};
use super::{load, PepModule};

pub const BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";
pub const BOOKMARKS2_COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
pub const BOOKMARKS2_COMPAT_PEP: &str = "urn:xmpp:bookmarks:1#compat-pep";
pub const BOOKMARKS_CONVERSION: &str = "urn:xmpp:bookmarks-conversion:0";
/// XEP-0048: the namespace, and the name of its PEP node.
pub const LEGACY: &str = "storage:bookmarks";
/// The key XEP-0049 storage keeps `<storage xmlns='storage:bookmarks'/>` under.
pub const PRIVATE_KEY: &str = "{storage:bookmarks}storage";
pub const AVATAR_DATA: &str = "urn:xmpp:avatar:data";
pub const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
/// XEP-0398: advertised on the account when the server converts avatars.
pub const PEP_VCARD_CONVERSION: &str = "urn:xmpp:pep-vcard-conversion:0";
/// XEP-0153: the presence element carrying the avatar hash.
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";

/// XEP-0402 §3 publish-options, used when the server creates the node.
fn bookmarks2_config() -> NodeConfig {
    NodeConfig {
        access_model: AccessModel::Whitelist,
        persist_items: true,
        max_items: MAX_ITEMS_LIMIT,
        send_last: SendLast::Never,
        ..NodeConfig::default()
    }
}

/// XEP-0048 §3.2 / XEP-0223 private node.
fn legacy_pep_config() -> NodeConfig {
    NodeConfig {
        access_model: AccessModel::Whitelist,
        persist_items: true,
        ..NodeConfig::default()
    }
}

fn avatar_config() -> NodeConfig {
    NodeConfig {
        access_model: AccessModel::Open,
        ..NodeConfig::default()
    }
}

fn log_err(what: &str, owner: &Jid, r: Result<(), StanzaError>) {
    if let Err(e) = r {
        tracing::warn!(%owner, error = %e, "{what} failed");
    }
}

/// A private-storage element was stored.
pub fn private_stored(m: &PepModule, ctx: &ModuleContext, owner: &Jid, el: &Element) {
    if el.is("storage", LEGACY) {
        log_err(
            "bookmarks conversion",
            owner,
            legacy_changed(m, ctx, owner, el, false),
        );
    }
}

/// A vCard was stored.
pub fn vcard_stored(m: &PepModule, ctx: &ModuleContext, owner: &Jid, vcard: &Element) {
    log_err(
        "vCard to avatar conversion",
        owner,
        vcard_to_avatar(m, ctx, owner, vcard),
    );
}

/// The account published to or retracted from `node` itself.
pub fn after_client_change(m: &PepModule, ctx: &ModuleContext, owner: &Jid, node: &str) {
    let r = match node {
        BOOKMARKS2 => bookmarks2_changed(m, ctx, owner),
        LEGACY => match load(ctx, owner, LEGACY) {
            Ok(Some(n)) => match n.last().and_then(|i| i.payload.clone()) {
                Some(storage) if storage.is("storage", LEGACY) => {
                    legacy_changed(m, ctx, owner, &storage, true)
                }
                _ => Ok(()),
            },
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        AVATAR_METADATA => avatar_to_vcard(ctx, owner),
        _ => Ok(()),
    };
    log_err("conversion", owner, r);
}

// ---- bookmarks ----

/// XEP-0048 conference -> XEP-0402 item (id = room JID).
fn conference_to_item(c: &Element) -> Option<(String, Element)> {
    let jid = Jid::parse(c.attr("jid")?).ok()?.to_bare().to_string();
    let autojoin = matches!(c.attr("autojoin"), Some("1" | "true"));
    let mut el = Element::new("conference", BOOKMARKS2)
        .with_attr("autojoin", if autojoin { "true" } else { "false" })
        .with_opt_attr("name", c.attr("name"));
    for child in ["nick", "password"] {
        if let Some(t) = c.child_text(child, LEGACY) {
            el.push_child(Element::new(child, BOOKMARKS2).with_text(t));
        }
    }
    Some((jid, el))
}

/// XEP-0402 item -> XEP-0048 conference.
fn item_to_conference(id: &str, c: &Element) -> Element {
    let autojoin = matches!(c.attr("autojoin"), Some("1" | "true"));
    let mut el = Element::new("conference", LEGACY)
        .with_attr("jid", id)
        .with_attr("autojoin", if autojoin { "true" } else { "false" })
        .with_opt_attr("name", c.attr("name"));
    for child in ["nick", "password"] {
        if let Some(t) = c.child_text(child, BOOKMARKS2) {
            el.push_child(Element::new(child, LEGACY).with_text(t));
        }
    }
    el
}

/// The XEP-0048 document was written (in private storage, or in its PEP node when
/// `from_pep`): write it to the other old place and bring the XEP-0402 node in line.
fn legacy_changed(
    m: &PepModule,
    ctx: &ModuleContext,
    owner: &Jid,
    storage: &Element,
    from_pep: bool,
) -> Result<(), StanzaError> {
    if from_pep {
        ctx.storage
            .put_item(
                stores::PRIVATE,
                &owner.bare_string(),
                PRIVATE_KEY,
                &storage.to_string(),
            )
            .map_err(super::fail)?;
    } else {
        publish_legacy_pep(m, ctx, owner, storage)?;
    }
    let desired: BTreeMap<String, Element> = storage
        .elements()
        .filter(|c| c.is("conference", LEGACY))
        .filter_map(conference_to_item)
        .collect();
    let current: BTreeMap<String, Option<Element>> = match load(ctx, owner, BOOKMARKS2)? {
        Some(n) => n
            .items
            .iter()
            .map(|i| (i.id.clone(), i.payload.clone()))
            .collect(),
        None => BTreeMap::new(),
    };
    for (id, el) in &desired {
        if current.get(id).and_then(Option::as_ref) != Some(el) {
            m.publish(
                ctx,
                owner,
                BOOKMARKS2,
                id,
                el.clone(),
                None,
                Some(bookmarks2_config()),
            )?;
        }
    }
    let gone: Vec<String> = current
        .keys()
        .filter(|id| !desired.contains_key(*id))
        .cloned()
        .collect();
    if !gone.is_empty() {
        m.retract(ctx, owner, BOOKMARKS2, &gone, true)?;
    }
    Ok(())
}

fn publish_legacy_pep(
    m: &PepModule,
    ctx: &ModuleContext,
    owner: &Jid,
    storage: &Element,
) -> Result<(), StanzaError> {
    let same = load(ctx, owner, LEGACY)?
        .and_then(|n| n.last().and_then(|i| i.payload.clone()))
        .is_some_and(|p| p == *storage);
    if same {
        return Ok(());
    }
    m.publish(
        ctx,
        owner,
        LEGACY,
        "current",
        storage.clone(),
        None,
        Some(legacy_pep_config()),
    )
}

/// The XEP-0402 node changed: rewrite the old document in both old places, keeping its
/// `<url/>` bookmarks.
fn bookmarks2_changed(m: &PepModule, ctx: &ModuleContext, owner: &Jid) -> Result<(), StanzaError> {
    let Some(n) = load(ctx, owner, BOOKMARKS2)? else {
        return Ok(());
    };
    let account = owner.bare_string();
    let old = ctx
        .storage
        .get_item(stores::PRIVATE, &account, PRIVATE_KEY)
        .map_err(super::fail)?
        .and_then(|xml| crate::xml::parser::parse_element(&xml).ok());
    let mut storage = Element::new("storage", LEGACY);
    for i in &n.items {
        if let Some(p) = i
            .payload
            .as_ref()
            .filter(|p| p.is("conference", BOOKMARKS2))
        {
            storage.push_child(item_to_conference(&i.id, p));
        }
    }
    if let Some(old) = old {
        for url in old.elements().filter(|e| e.is("url", LEGACY)) {
            storage.push_child(url.clone());
        }
    }
    ctx.storage
        .put_item(stores::PRIVATE, &account, PRIVATE_KEY, &storage.to_string())
        .map_err(super::fail)?;
    publish_legacy_pep(m, ctx, owner, &storage)
}

// ---- avatars ----

/// The SHA-1 (hex) of the account's current avatar: the id of the metadata item's first
/// `<info/>` hosted here (the item id XEP-0084 makes the image's SHA-1). `None` without one.
pub fn current_avatar_hash(ctx: &ModuleContext, owner: &Jid) -> Option<String> {
    let node = load(ctx, owner, AVATAR_METADATA).ok().flatten()?;
    let meta = node.last()?.payload.as_ref()?;
    let hash = meta
        .elements()
        .find(|e| e.is("info", AVATAR_METADATA) && e.attr("url").is_none())
        .and_then(|i| i.attr("id").map(str::to_string));
    hash
}

/// XEP-0398 §4: put `hash` into an available presence's `vcard-temp:x:update` element.
/// Left alone: an empty `<photo/>` (the client says it has no avatar) and a non-empty one
/// (the client's own hash, which the XEP allows to keep). Returns whether it changed.
pub fn inject_avatar_hash(presence: &mut Element, hash: &str) -> bool {
    let photo = Element::new("photo", VCARD_UPDATE).with_text(hash);
    match presence.child_mut("x", VCARD_UPDATE) {
        Some(x) => {
            if x.child("photo", VCARD_UPDATE).is_some() {
                return false;
            }
            x.push_child(photo);
        }
        None => presence.push_child(Element::new("x", VCARD_UPDATE).with_child(photo)),
    }
    true
}

fn vcard_to_avatar(
    m: &PepModule,
    ctx: &ModuleContext,
    owner: &Jid,
    vcard: &Element,
) -> Result<(), StanzaError> {
    let Some(photo) = vcard.child("PHOTO", ns::VCARD) else {
        return Ok(());
    };
    let Some(binval) = photo.child_text("BINVAL", ns::VCARD) else {
        return Ok(());
    };
    let b64: String = binval.chars().filter(|c| !c.is_whitespace()).collect();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&b64) else {
        return Ok(());
    };
    if bytes.is_empty() {
        return Ok(());
    }
    let id = hex(&sha1::Sha1::digest(&bytes));
    let current = load(ctx, owner, AVATAR_METADATA)?.and_then(|n| n.last().map(|i| i.id.clone()));
    if current.as_deref() == Some(id.as_str()) {
        return Ok(());
    }
    let mime = photo
        .child_text("TYPE", ns::VCARD)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "image/png".into());
    m.publish(
        ctx,
        owner,
        AVATAR_DATA,
        &id,
        Element::new("data", AVATAR_DATA).with_text(b64),
        None,
        Some(avatar_config()),
    )?;
    m.publish(
        ctx,
        owner,
        AVATAR_METADATA,
        &id,
        Element::new("metadata", AVATAR_METADATA).with_child(
            Element::new("info", AVATAR_METADATA)
                .with_attr("id", id.clone())
                .with_attr("bytes", bytes.len().to_string())
                .with_attr("type", mime),
        ),
        None,
        Some(avatar_config()),
    )
}

fn avatar_to_vcard(ctx: &ModuleContext, owner: &Jid) -> Result<(), StanzaError> {
    let Some(meta) = load(ctx, owner, AVATAR_METADATA)?.and_then(|n| n.last().cloned()) else {
        return Ok(());
    };
    let info = meta.payload.as_ref().and_then(|p| {
        p.elements()
            .find(|e| e.is("info", AVATAR_METADATA) && e.attr("url").is_none())
            .cloned()
    });
    let photo = match info {
        None => None,
        Some(info) => {
            let Some(id) = info.attr("id") else {
                return Ok(());
            };
            let data = load(ctx, owner, AVATAR_DATA)?
                .and_then(|n| n.item(id).and_then(|i| i.payload.clone()));
            let Some(data) = data else {
                // The data is not on this server (an external URL, or not published yet).
                return Ok(());
            };
            Some(
                Element::new("PHOTO", ns::VCARD)
                    .with_child(
                        Element::new("TYPE", ns::VCARD)
                            .with_text(info.attr("type").unwrap_or("image/png")),
                    )
                    .with_child(Element::new("BINVAL", ns::VCARD).with_text(data.text().trim())),
            )
        }
    };
    let account = owner.bare_string();
    let stored = ctx
        .storage
        .get_item(stores::VCARD, &account, "")
        .map_err(super::fail)?;
    let mut vcard = match stored {
        Some(xml) => crate::modules::services::load_stored("pep", &xml)?,
        None if photo.is_none() => return Ok(()),
        None => Element::new("vCard", ns::VCARD),
    };
    let old_photo = vcard.child("PHOTO", ns::VCARD).cloned();
    if old_photo == photo {
        return Ok(());
    }
    vcard.remove_children(|e| e.is("PHOTO", ns::VCARD));
    if let Some(p) = photo {
        vcard.push_child(p);
    }
    let xml = vcard.to_string();
    if xml.len() > MAX_VCARD_BYTES {
        tracing::info!(%owner, "avatar too large for the vCard; vCard left unchanged");
        return Ok(());
    }
    ctx.storage
        .put_item(stores::VCARD, &account, "", &xml)
        .map_err(super::fail)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod avatar_hash_tests {
    use super::*;

    fn presence() -> Element {
        Element::new("presence", "jabber:client")
    }

    #[test]
    fn hash_is_added_where_there_is_no_photo() {
        let mut p = presence();
        assert!(inject_avatar_hash(&mut p, "abc"));
        let x = p.child("x", VCARD_UPDATE).expect("x added");
        assert_eq!(x.child_text("photo", VCARD_UPDATE).as_deref(), Some("abc"));

        // An empty x (no photo child) is completed, not duplicated.
        let mut p = presence().with_child(Element::new("x", VCARD_UPDATE));
        assert!(inject_avatar_hash(&mut p, "abc"));
        assert_eq!(p.elements().filter(|e| e.is("x", VCARD_UPDATE)).count(), 1);
        let x = p.child("x", VCARD_UPDATE).expect("x");
        assert_eq!(x.child_text("photo", VCARD_UPDATE).as_deref(), Some("abc"));
    }

    #[test]
    fn client_photo_elements_are_kept() {
        for given in ["", "0123"] {
            let mut p = presence().with_child(
                Element::new("x", VCARD_UPDATE)
                    .with_child(Element::new("photo", VCARD_UPDATE).with_text(given)),
            );
            assert!(!inject_avatar_hash(&mut p, "abc"));
            let x = p.child("x", VCARD_UPDATE).expect("x");
            assert_eq!(x.child_text("photo", VCARD_UPDATE).as_deref(), Some(given));
        }
    }
}
