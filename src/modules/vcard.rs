//! XEP-0054: vcard-temp
//!
//! Owns `<vCard xmlns='vcard-temp'/>` gets and sets answered by the server, and the vCard
//! store (`stores::VCARD`, key "": the whole `<vCard/>` element as XML).
//!
//! - Own account (no `to`, or `to` = own bare JID): get returns the stored vCard, or an empty
//!   `<vCard/>` when there is none (XEP-0054 §3.1 allows either that or an error; clients
//!   handle the empty one best). Set replaces the whole vCard; an empty `<vCard/>` deletes it.
//!   A vCard larger than [`MAX_VCARD_BYTES`] gets `policy-violation`.
//! - Another account: anyone may read (vCards are public, XEP-0054 §6). No vCard and no such
//!   account both give `service-unavailable`, the single answer XEP-0054 §3.3 requires so that
//!   a reply never tells whether an account exists. Set gets `forbidden` (§3.2).
//! - The server (`to` = a domain): get returns an empty `<vCard/>` (the server has none yet);
//!   set gets `forbidden`.

use crate::modules::services::{load_stored, storage_failed};
use crate::modules::{IqRequest, IqResult, IqTarget, Module, ModuleContext, ModuleEvent};
use crate::proto::{ns, StanzaError};
use crate::storage::stores;
use crate::xml::Element;

/// Largest vCard stored, in bytes of serialised XML (a photo of about 45 KiB still fits).
pub const MAX_VCARD_BYTES: usize = 64 * 1024;

/// The key of the single vCard document in `stores::VCARD`.
const KEY: &str = "";

pub struct VcardModule;

const FEATURES: &[&str] = &[ns::VCARD];

impl Module for VcardModule {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn iq_payloads(&self) -> &'static [(&'static str, &'static str)] {
        &[("vCard", ns::VCARD)]
    }

    fn server_features(&self) -> &'static [&'static str] {
        FEATURES
    }

    fn account_features(&self) -> &'static [&'static str] {
        FEATURES
    }

    fn handle_iq(&self, ctx: &ModuleContext, req: &IqRequest<'_>) -> IqResult {
        let fail = |e| storage_failed("vcard", e);
        match (&req.target, req.is_set) {
            (IqTarget::Server(_), false) => Ok(Some(empty_vcard())),
            (IqTarget::Server(_), true) => Err(StanzaError::forbidden()),
            (IqTarget::Account(_), true) if !req.is_self() => Err(StanzaError::forbidden()),
            (IqTarget::Account(account_jid), true) => {
                let account = account_jid.bare_string();
                if req.payload.children.iter().all(is_blank) {
                    ctx.storage
                        .delete_item(stores::VCARD, &account, KEY)
                        .map_err(fail)?;
                    return Ok(None);
                }
                let xml = req.payload.to_string();
                if xml.len() > MAX_VCARD_BYTES {
                    return Err(StanzaError::policy_violation()
                        .with_text(format!("a vCard may be {MAX_VCARD_BYTES} bytes at most")));
                }
                ctx.storage
                    .put_item(stores::VCARD, &account, KEY, &xml)
                    .map_err(fail)?;
                ctx.server.emit(&ModuleEvent::VcardStored {
                    account: account_jid,
                    vcard: req.payload,
                });
                Ok(None)
            }
            (IqTarget::Account(account), false) => {
                let stored = ctx
                    .storage
                    .get_item(stores::VCARD, &account.bare_string(), KEY)
                    .map_err(fail)?;
                match stored {
                    Some(xml) => {
                        let vcard = load_stored("vcard", &xml)?;
                        if !vcard.is("vCard", ns::VCARD) {
                            tracing::error!(%account, "stored vCard is not a vCard element");
                            return Err(StanzaError::internal_server_error());
                        }
                        Ok(Some(vcard))
                    }
                    None if req.is_self() => Ok(Some(empty_vcard())),
                    None => Err(StanzaError::service_unavailable()),
                }
            }
        }
    }
}

fn empty_vcard() -> Element {
    Element::new("vCard", ns::VCARD)
}

/// Whitespace-only text, which an empty `<vCard>\n</vCard>` may carry.
fn is_blank(node: &crate::xml::Node) -> bool {
    matches!(node, crate::xml::Node::Text(t) if t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::*;
    use std::sync::Arc;

    fn vcard() -> Element {
        empty_vcard()
    }

    fn full_vcard() -> Element {
        vcard()
            .with_child(Element::new("FN", ns::VCARD).with_text("Juliet Capulet"))
            .with_child(Element::new("NICKNAME", ns::VCARD).with_text("jc & co"))
    }

    fn stored(h: &Harness, account: &str) -> Option<String> {
        h.store.item(stores::VCARD, account, "")
    }

    #[test]
    fn declares_payload_and_features() {
        assert_eq!(VcardModule.iq_payloads(), &[("vCard", ns::VCARD)]);
        assert_eq!(VcardModule.server_features(), &[ns::VCARD]);
        assert_eq!(VcardModule.account_features(), &[ns::VCARD]);
    }

    #[test]
    fn own_vcard_is_empty_when_none_was_set() {
        let h = harness(config());
        h.add_account("a@example.org");
        for to in [None, Some("a@example.org")] {
            let r = call(&VcardModule, &h.ctx, "a@example.org/r", to, false, vcard());
            assert_eq!(r, Ok(Some(empty_vcard())));
        }
    }

    #[test]
    fn set_stores_the_whole_vcard() {
        let h = harness(config());
        h.add_account("a@example.org");
        let r = call(
            &VcardModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            full_vcard(),
        );
        assert_eq!(r, Ok(None));
        assert_eq!(stored(&h, "a@example.org"), Some(full_vcard().to_string()));
        assert!(stored(&h, "a@example.org")
            .is_some_and(|x| x.starts_with("<vCard xmlns='vcard-temp'><FN>")));
    }

    #[test]
    fn empty_set_deletes_the_vcard() {
        let h = harness(config());
        h.add_account("a@example.org");
        call(
            &VcardModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            full_vcard(),
        )
        .expect("set");
        let r = call(
            &VcardModule,
            &h.ctx,
            "a@example.org/r",
            Some("a@example.org"),
            true,
            vcard().with_text("\n  "),
        );
        assert_eq!(r, Ok(None));
        assert_eq!(stored(&h, "a@example.org"), None);
    }

    #[test]
    fn oversized_vcard_is_refused() {
        let h = harness(config());
        h.add_account("a@example.org");
        let big =
            vcard().with_child(Element::new("PHOTO", ns::VCARD).with_child(
                Element::new("BINVAL", ns::VCARD).with_text("A".repeat(MAX_VCARD_BYTES)),
            ));
        let r = call(&VcardModule, &h.ctx, "a@example.org/r", None, true, big);
        assert_eq!(condition(r), "policy-violation");
        assert_eq!(stored(&h, "a@example.org"), None);
    }

    #[test]
    fn nobody_sets_another_accounts_or_the_servers_vcard() {
        let h = harness(config());
        h.add_account("a@example.org");
        h.add_account("b@example.org");
        for to in ["b@example.org", "example.org"] {
            let r = call(
                &VcardModule,
                &h.ctx,
                "a@example.org/r",
                Some(to),
                true,
                full_vcard(),
            );
            assert_eq!(condition(r), "forbidden", "{to}");
        }
        assert_eq!(stored(&h, "b@example.org"), None);
    }

    #[test]
    fn missing_vcard_and_missing_account_look_the_same() {
        let h = harness(config());
        h.add_account("b@example.org");
        for to in ["b@example.org", "nobody@example.org"] {
            let r = call(
                &VcardModule,
                &h.ctx,
                "a@remote.example/r",
                Some(to),
                false,
                vcard(),
            );
            assert_eq!(condition(r), "service-unavailable", "{to}");
        }
    }

    #[test]
    fn server_vcard_is_empty() {
        let h = harness(config());
        let r = call(
            &VcardModule,
            &h.ctx,
            "a@example.org/r",
            Some("example.org"),
            false,
            vcard(),
        );
        assert_eq!(r, Ok(Some(empty_vcard())));
    }

    #[test]
    fn anyone_reads_a_stored_vcard() {
        let h = harness(config());
        h.add_account("b@example.org");
        call(
            &VcardModule,
            &h.ctx,
            "b@example.org/r",
            None,
            true,
            full_vcard(),
        )
        .expect("set");
        for from in ["b@example.org/r", "a@remote.example/r"] {
            let r = call(
                &VcardModule,
                &h.ctx,
                from,
                Some("b@example.org"),
                false,
                vcard(),
            );
            assert_eq!(r, Ok(Some(full_vcard())), "{from}");
        }
    }

    #[test]
    fn storage_failure_is_an_internal_error() {
        let h = harness(config()).with_storage(Arc::new(BrokenStore));
        let r = call(
            &VcardModule,
            &h.ctx,
            "a@example.org/r",
            None,
            false,
            vcard(),
        );
        assert_eq!(condition(r), "internal-server-error");
        let r = call(
            &VcardModule,
            &h.ctx,
            "a@example.org/r",
            None,
            true,
            full_vcard(),
        );
        assert_eq!(condition(r), "internal-server-error");
    }
}
