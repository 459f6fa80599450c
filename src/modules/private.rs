//! XEP-0049: Private XML Storage
//!
//! Owns `<query xmlns='jabber:iq:private'/>` and the private store (`stores::PRIVATE`, one XML
//! document per key `{namespace}name` of the stored element).
//!
//! Rules (XEP-0049 §2 "Elements", §3 error conditions):
//! - Only the account itself may get or set its data (no `to`, or `to` = own bare JID);
//!   anything else gets `forbidden`, the preferred of the two conditions the XEP allows.
//! - A query without a child element gets `bad-request` (the XEP's "Bad Format").
//! - A child without a namespace, or in `jabber:client`, `jabber:server` or
//!   `jabber:iq:private`, gets `not-acceptable`: it has no "proper namespace" of its own.
//!   Other reserved namespaces (`jabber:*`, `vcard-temp`) are accepted; refusing them is
//!   optional, and clients do store data under some of them.
//! - A get may ask for several elements of one namespace, never of two (`bad-request`). Each
//!   element asked for comes back as stored, or echoed empty when nothing is stored.
//! - A set stores every child, each replacing what was stored under its key; nothing is
//!   stored unless every child is acceptable. An account keeps at most
//!   [`MAX_ITEMS_PER_ACCOUNT`] keys (`policy-violation` past that).

use crate::modules::services::{load_stored, storage_failed};
use crate::modules::{IqRequest, IqResult, Module, ModuleContext, ModuleEvent};
use crate::proto::{ns, StanzaError};
use crate::storage::stores;
use crate::xml::Element;

/// Most distinct elements (keys) one account may store; each is bounded by the stanza size.
pub const MAX_ITEMS_PER_ACCOUNT: usize = 256;

pub struct PrivateModule;

impl Module for PrivateModule {
    fn name(&self) -> &'static str {
        "private"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("query", ns::PRIVATE)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        &[ns::PRIVATE]
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        if !req.is_self() {
            return Err(StanzaError::forbidden());
        }
        let account = req.from.bare_string();
        let children: Vec<&Element> = req.payload.elements().collect();
        let Some(first) = children.first() else {
            return Err(StanzaError::bad_request().with_text("name the element to get or set"));
        };
        if let Some(bad) = children.iter().find(|c| reserved(&c.ns)) {
            return Err(StanzaError::not_acceptable()
                .with_text(format!("namespace {:?} cannot be stored", bad.ns)));
        }
        let fail = |e| storage_failed("private", e);
        if req.is_set {
            let keys: std::collections::BTreeSet<String> =
                children.iter().map(|c| key(c)).collect();
            let mut new_keys = 0;
            for k in &keys {
                if ctx
                    .storage
                    .get_item(stores::PRIVATE, &account, k)
                    .map_err(fail)?
                    .is_none()
                {
                    new_keys += 1;
                }
            }
            if new_keys > 0 {
                let have = ctx
                    .storage
                    .list_items(stores::PRIVATE, &account)
                    .map_err(fail)?
                    .len();
                if have + new_keys > MAX_ITEMS_PER_ACCOUNT {
                    return Err(StanzaError::policy_violation().with_text(format!(
                        "at most {MAX_ITEMS_PER_ACCOUNT} elements may be stored"
                    )));
                }
            }
            for c in &children {
                ctx.storage
                    .put_item(stores::PRIVATE, &account, &key(c), &c.to_string())
                    .map_err(fail)?;
            }
            let account = req.from.to_bare();
            for c in &children {
                ctx.server.emit(&ModuleEvent::PrivateStored {
                    account: &account,
                    element: c,
                });
            }
            return Ok(None);
        }
        if children.iter().any(|c| c.ns != first.ns) {
            return Err(StanzaError::bad_request().with_text("get one namespace at a time"));
        }
        let mut answer = Element::new("query", ns::PRIVATE);
        for c in &children {
            let stored = ctx
                .storage
                .get_item(stores::PRIVATE, &account, &key(c))
                .map_err(fail)?;
            let el = match stored {
                Some(xml) => {
                    let el = load_stored("private", &xml)?;
                    if !el.is(&c.name, &c.ns) {
                        tracing::error!(%account, key = %key(c), "stored element does not match its key");
                        return Err(StanzaError::internal_server_error());
                    }
                    el
                }
                None => Element::new(c.name.clone(), c.ns.clone()),
            };
            answer.push_child(el);
        }
        Ok(Some(answer))
    }
}

/// Namespaces that cannot be the namespace of a stored element.
fn reserved(namespace: &str) -> bool {
    matches!(namespace, "" | ns::CLIENT | ns::SERVER | ns::PRIVATE)
}

/// The storage key of an element: `{namespace}name`.
fn key(el: &Element) -> String {
    format!("{{{}}}{}", el.ns, el.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::*;
    use std::sync::Arc;

    const BOOKMARKS: &str = "storage:bookmarks";

    fn query(children: Vec<Element>) -> Element {
        let mut q = Element::new("query", ns::PRIVATE);
        for c in children {
            q.push_child(c);
        }
        q
    }

    fn bookmarks() -> Element {
        Element::new("storage", BOOKMARKS).with_child(
            Element::new("conference", BOOKMARKS)
                .with_attr("jid", "room@muc.example.org")
                .with_attr("autojoin", "true"),
        )
    }

    fn prefs() -> Element {
        Element::new("exodus", "exodus:prefs")
            .with_child(Element::new("defaultnick", "exodus:prefs").with_text("Hamlet"))
    }

    #[test]
    fn declares_payload_and_features() {
        assert_eq!(PrivateModule.iq_payloads(), &[("query", ns::PRIVATE)]);
        assert_eq!(PrivateModule.server_features(), &[ns::PRIVATE]);
        assert!(PrivateModule.account_features().is_empty());
    }

    #[test]
    fn set_stores_each_child_under_its_key() {
        let h = harness(config());
        h.add_account("a@example.org");
        let r = call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            query(vec![bookmarks(), prefs()]),
        );
        assert_eq!(r, Ok(None));
        assert_eq!(
            h.store.item(
                stores::PRIVATE,
                "a@example.org",
                "{storage:bookmarks}storage"
            ),
            Some(bookmarks().to_string())
        );
        assert_eq!(
            h.store
                .item(stores::PRIVATE, "a@example.org", "{exodus:prefs}exodus"),
            Some(prefs().to_string())
        );
    }

    #[test]
    fn get_of_nothing_stored_echoes_the_empty_element() {
        let h = harness(config());
        h.add_account("a@example.org");
        let asked = Element::new("storage", BOOKMARKS);
        let r = call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            Some("a@example.org"),
            false,
            query(vec![asked.clone()]),
        );
        assert_eq!(r, Ok(Some(query(vec![asked]))));
    }

    #[test]
    fn get_returns_what_was_stored() {
        let h = harness(config());
        h.add_account("a@example.org");
        call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            query(vec![bookmarks()]),
        )
        .expect("set");
        let r = call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            false,
            query(vec![Element::new("storage", BOOKMARKS)]),
        );
        assert_eq!(r, Ok(Some(query(vec![bookmarks()]))));
    }

    #[test]
    fn others_are_forbidden() {
        let h = harness(config());
        h.add_account("a@example.org");
        h.add_account("b@example.org");
        for (to, is_set) in [
            ("b@example.org", false),
            ("b@example.org", true),
            ("example.org", false),
        ] {
            let r = call(
                &PrivateModule,
                &h.ctx,
                "a@example.org/r",
                Some(to),
                is_set,
                query(vec![bookmarks()]),
            );
            assert_eq!(condition(r), "forbidden", "{to}");
        }
        assert!(h
            .store
            .item(
                stores::PRIVATE,
                "b@example.org",
                "{storage:bookmarks}storage"
            )
            .is_none());
    }

    #[test]
    fn empty_query_is_a_bad_request() {
        let h = harness(config());
        for is_set in [false, true] {
            let r = call(
                &PrivateModule,
                &h.ctx,
                "a@example.org/r",
                None,
                is_set,
                query(vec![]),
            );
            assert_eq!(condition(r), "bad-request");
        }
    }

    #[test]
    fn reserved_namespaces_are_not_acceptable() {
        let h = harness(config());
        for namespace in ["", ns::CLIENT, ns::SERVER, ns::PRIVATE] {
            for is_set in [false, true] {
                let r = call(
                    &PrivateModule,
                    &h.ctx,
                    "a@example.org/r",
                    None,
                    is_set,
                    // A good child first: nothing may be stored when any child is refused.
                    query(vec![prefs(), Element::new("x", namespace)]),
                );
                assert_eq!(condition(r), "not-acceptable", "{namespace:?}");
            }
        }
        assert!(h
            .store
            .item(stores::PRIVATE, "a@example.org", "{exodus:prefs}exodus")
            .is_none());
    }

    #[test]
    fn get_of_two_namespaces_is_a_bad_request() {
        let h = harness(config());
        let r = call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            false,
            query(vec![
                Element::new("storage", BOOKMARKS),
                Element::new("exodus", "exodus:prefs"),
            ]),
        );
        assert_eq!(condition(r), "bad-request");
    }

    #[test]
    fn number_of_keys_is_bounded() {
        let h = harness(config());
        let many: Vec<Element> = (0..MAX_ITEMS_PER_ACCOUNT)
            .map(|i| Element::new(format!("e{i}"), "urn:example:many"))
            .collect();
        call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            query(many),
        )
        .expect("set");
        // Replacing an existing key is still fine; a new one is not.
        let r = call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            query(vec![Element::new("e0", "urn:example:many").with_text("v2")]),
        );
        assert_eq!(r, Ok(None));
        let r = call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            query(vec![prefs()]),
        );
        assert_eq!(condition(r), "policy-violation");
        // Two elements under one key count once.
        let h = harness(config());
        let many: Vec<Element> = (0..MAX_ITEMS_PER_ACCOUNT - 1)
            .map(|i| Element::new(format!("e{i}"), "urn:example:many"))
            .collect();
        call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            query(many),
        )
        .expect("set");
        let r = call(
            &PrivateModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            query(vec![prefs(), prefs()]),
        );
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn storage_failure_is_an_internal_error() {
        let h = harness(config()).with_storage(Arc::new(BrokenStore));
        for is_set in [false, true] {
            let r = call(
                &PrivateModule,
                &h.ctx,
                "a@example.org/r",
                None,
                is_set,
                query(vec![prefs()]),
            );
            assert_eq!(condition(r), "internal-server-error");
        }
    }
}
