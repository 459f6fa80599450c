//! Stanza errors (RFC 6120 §8.3): the conditions, their default types, and building an error
//! reply from the stanza that caused it.

use crate::proto::{ns, Stanza};
use crate::xml::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza error condition with its type and optional text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub condition: &'static str,
    pub kind: ErrorType,
    pub text: Option<String>,
    /// An application-specific condition (element name, namespace), e.g. XEP-0060's
    /// `<precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>`.
    pub app: Option<(&'static str, &'static str)>,
}

macro_rules! conditions {
    ($($fn_name:ident => $cond:literal, $kind:ident;)*) => {
        impl StanzaError {
            $(
                #[doc = concat!("`<", $cond, "/>` (type ", stringify!($kind), ")")]
                pub fn $fn_name() -> StanzaError {
                    StanzaError { condition: $cond, kind: ErrorType::$kind, text: None, app: None }
                }
            )*
        }
    };
}

conditions! {
    bad_request => "bad-request", Modify;
    conflict => "conflict", Cancel;
    feature_not_implemented => "feature-not-implemented", Cancel;
    forbidden => "forbidden", Auth;
    gone => "gone", Cancel;
    internal_server_error => "internal-server-error", Cancel;
    item_not_found => "item-not-found", Cancel;
    jid_malformed => "jid-malformed", Modify;
    not_acceptable => "not-acceptable", Modify;
    not_allowed => "not-allowed", Cancel;
    not_authorized => "not-authorized", Auth;
    policy_violation => "policy-violation", Modify;
    recipient_unavailable => "recipient-unavailable", Wait;
    registration_required => "registration-required", Auth;
    remote_server_not_found => "remote-server-not-found", Cancel;
    remote_server_timeout => "remote-server-timeout", Wait;
    resource_constraint => "resource-constraint", Wait;
    service_unavailable => "service-unavailable", Cancel;
    subscription_required => "subscription-required", Auth;
    undefined_condition => "undefined-condition", Cancel;
    unexpected_request => "unexpected-request", Wait;
}

impl StanzaError {
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Add an application-specific condition element (RFC 6120 §8.3.2).
    pub fn with_app(mut self, name: &'static str, ns: &'static str) -> Self {
        self.app = Some((name, ns));
        self
    }

    /// The `<error/>` element.
    pub fn to_element(&self, by: Option<&str>) -> Element {
        let mut err = Element::new("error", ns::CLIENT)
            .with_attr("type", self.kind.as_str())
            .with_opt_attr("by", by)
            .with_child(Element::new(self.condition, ns::STANZAS_ERR));
        if let Some(t) = &self.text {
            err.push_child(
                Element::new("text", ns::STANZAS_ERR)
                    .with_attr("xml:lang", "en")
                    .with_text(t.clone()),
            );
        }
        if let Some((name, ns)) = self.app {
            err.push_child(Element::new(name, ns));
        }
        err
    }

    /// An error reply to `stanza`: same name and id, `to`/`from` swapped, type `error`. The
    /// original payload is not echoed (RFC 6120 §8.3.1 makes it optional): it could carry a
    /// password (XEP-0077) or a large upload back to the sender.
    pub fn reply_to(&self, stanza: &Stanza) -> Stanza {
        let orig = stanza.el();
        let mut el = Element::new(orig.name.clone(), ns::CLIENT).with_attr("type", "error");
        if let Some(id) = orig.attr("id") {
            el.set_attr("id", id);
        }
        if let Some(to) = orig.attr("from") {
            el.set_attr("to", to);
        }
        if let Some(from) = orig.attr("to") {
            el.set_attr("from", from);
        }
        el.push_child(self.to_element(None));
        Stanza(el)
    }
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.condition)?;
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}
