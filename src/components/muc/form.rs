//! XEP-0045 §10.2 room configuration (the `muc#roomconfig` data form, XEP-0004), the room's
//! stored settings, and the small data-form helpers the room code shares.

use serde::{Deserialize, Serialize};

use crate::proto::{ns, StanzaError};
use crate::xml::Element;

pub const FORM_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const FORM_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
pub const FORM_REQUEST: &str = "http://jabber.org/protocol/muc#request";

/// Owner and admin JID lists from a submitted form, when present.
pub type ListFields = (Option<Vec<String>>, Option<Vec<String>>);

/// A room's settings (what the owner edits with the configuration form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    /// Kept when the last occupant leaves, and across restarts.
    pub persistent: bool,
    /// Listed in the service's disco#items.
    pub public: bool,
    pub members_only: bool,
    /// Only occupants with voice (participants, moderators) may speak.
    pub moderated: bool,
    /// Required to enter when not empty.
    pub password: String,
    /// Real JIDs visible to everyone (non-anonymous) instead of moderators only.
    pub whois_anyone: bool,
    /// Messages replayed on join.
    pub history_length: usize,
    /// Participants (not only moderators) may change the subject.
    pub change_subject: bool,
    /// Participants (not only admins) may invite, which in a members-only room grants
    /// membership.
    pub allow_invites: bool,
    /// Most occupants (admins and owners may always enter); 0 means no limit.
    pub max_users: usize,
    /// Groupchat messages are kept in the room's message archive (XEP-0313), the form field
    /// Prosody also uses: `muc#roomconfig_enablearchiving`.
    pub archiving: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: String::new(),
            whois_anyone: false,
            history_length: 20,
            change_subject: false,
            allow_invites: false,
            max_users: 0,
            archiving: true,
        }
    }
}

fn value(v: &str) -> Element {
    Element::new("value", ns::DATA_FORMS).with_text(v)
}

/// A form field with one value.
pub fn field(var: &str, kind: Option<&str>, label: Option<&str>, v: &str) -> Element {
    Element::new("field", ns::DATA_FORMS)
        .with_attr("var", var)
        .with_opt_attr("type", kind)
        .with_opt_attr("label", label)
        .with_child(value(v))
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// The FORM_TYPE hidden field.
pub fn form_type(t: &str) -> Element {
    field("FORM_TYPE", Some("hidden"), None, t)
}

impl RoomConfig {
    /// The configuration form (type `form`) with the current values.
    pub fn to_form(&self, owners: &[String], admins: &[String]) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "form")
            .with_child(Element::new("title", ns::DATA_FORMS).with_text("Room configuration"))
            .with_child(form_type(FORM_ROOMCONFIG))
            .with_child(field(
                "muc#roomconfig_roomname",
                Some("text-single"),
                Some("Name"),
                &self.name,
            ))
            .with_child(field(
                "muc#roomconfig_roomdesc",
                Some("text-single"),
                Some("Description"),
                &self.description,
            ))
            .with_child(field(
                "muc#roomconfig_persistentroom",
                Some("boolean"),
                Some("Keep the room when it is empty"),
                bool_str(self.persistent),
            ))
            .with_child(field(
                "muc#roomconfig_publicroom",
                Some("boolean"),
                Some("List the room publicly"),
                bool_str(self.public),
            ))
            .with_child(field(
                "muc#roomconfig_membersonly",
                Some("boolean"),
                Some("Members only"),
                bool_str(self.members_only),
            ))
            .with_child(field(
                "muc#roomconfig_moderatedroom",
                Some("boolean"),
                Some("Only participants with voice may speak"),
                bool_str(self.moderated),
            ))
            .with_child(field(
                "muc#roomconfig_passwordprotectedroom",
                Some("boolean"),
                Some("Password protected"),
                bool_str(!self.password.is_empty()),
            ))
            .with_child(field(
                "muc#roomconfig_roomsecret",
                Some("text-private"),
                Some("Password"),
                &self.password,
            ));
        let mut whois = field(
            "muc#roomconfig_whois",
            Some("list-single"),
            Some("Who may see real addresses"),
            if self.whois_anyone {
                "anyone"
            } else {
                "moderators"
            },
        );
        for opt in ["moderators", "anyone"] {
            whois.push_child(
                Element::new("option", ns::DATA_FORMS)
                    .with_attr("label", opt)
                    .with_child(value(opt)),
            );
        }
        x.push_child(whois);
        x.push_child(field(
            "muc#maxhistoryfetch",
            Some("text-single"),
            Some("Messages kept for history"),
            &self.history_length.to_string(),
        ));
        x.push_child(field(
            "muc#roomconfig_changesubject",
            Some("boolean"),
            Some("Participants may change the subject"),
            bool_str(self.change_subject),
        ));
        x.push_child(field(
            "muc#roomconfig_allowinvites",
            Some("boolean"),
            Some("Participants may invite"),
            bool_str(self.allow_invites),
        ));
        x.push_child(field(
            "muc#roomconfig_enablearchiving",
            Some("boolean"),
            Some("Archive messages (XEP-0313)"),
            bool_str(self.archiving),
        ));
        x.push_child(field(
            "muc#roomconfig_maxusers",
            Some("text-single"),
            Some("Most occupants (0: no limit)"),
            &self.max_users.to_string(),
        ));
        let mut o = Element::new("field", ns::DATA_FORMS)
            .with_attr("var", "muc#roomconfig_roomowners")
            .with_attr("type", "jid-multi");
        for j in owners {
            o.push_child(value(j));
        }
        x.push_child(o);
        let mut a = Element::new("field", ns::DATA_FORMS)
            .with_attr("var", "muc#roomconfig_roomadmins")
            .with_attr("type", "jid-multi");
        for j in admins {
            a.push_child(value(j));
        }
        x.push_child(a);
        x
    }

    /// Apply a submitted form (fields not present keep their value). `max_history` is the
    /// service's limit. Owner and admin list fields are returned for the caller to apply.
    pub fn apply_submit(
        &mut self,
        x: &Element,
        max_history: usize,
    ) -> Result<ListFields, StanzaError> {
        if let Some(t) = form_value(x, "FORM_TYPE") {
            if t != FORM_ROOMCONFIG {
                return Err(StanzaError::bad_request().with_text("FORM_TYPE is not muc#roomconfig"));
            }
        }
        let mut next = self.clone();
        let mut password_protected = None;
        let mut owners = None;
        let mut admins = None;
        for f in x.elements().filter(|e| e.is("field", ns::DATA_FORMS)) {
            let Some(var) = f.attr("var") else { continue };
            let values: Vec<String> = f
                .elements()
                .filter(|e| e.is("value", ns::DATA_FORMS))
                .map(|e| e.text())
                .collect();
            let v = values.first().cloned().unwrap_or_default();
            let b = || parse_bool(&v).ok_or_else(|| bad_field(var));
            let n = || v.trim().parse::<usize>().map_err(|_| bad_field(var));
            match var {
                "muc#roomconfig_roomname" => next.name = v,
                "muc#roomconfig_roomdesc" => next.description = v,
                "muc#roomconfig_persistentroom" => next.persistent = b()?,
                "muc#roomconfig_publicroom" => next.public = b()?,
                "muc#roomconfig_membersonly" => next.members_only = b()?,
                "muc#roomconfig_moderatedroom" => next.moderated = b()?,
                "muc#roomconfig_passwordprotectedroom" => password_protected = Some(b()?),
                "muc#roomconfig_roomsecret" => next.password = v,
                "muc#roomconfig_whois" => {
                    next.whois_anyone = match v.as_str() {
                        "anyone" => true,
                        "moderators" | "" => false,
                        _ => return Err(bad_field(var)),
                    }
                }
                "muc#maxhistoryfetch" | "muc#roomconfig_historylength" => {
                    next.history_length = n()?.min(max_history)
                }
                "muc#roomconfig_changesubject" => next.change_subject = b()?,
                "muc#roomconfig_allowinvites" => next.allow_invites = b()?,
                "muc#roomconfig_enablearchiving" => next.archiving = b()?,
                "muc#roomconfig_maxusers" => {
                    next.max_users = if v.trim() == "none" || v.trim().is_empty() {
                        0
                    } else {
                        n()?
                    }
                }
                "muc#roomconfig_roomowners" => owners = Some(values),
                "muc#roomconfig_roomadmins" => admins = Some(values),
                _ => {}
            }
        }
        match password_protected {
            Some(false) => next.password.clear(),
            Some(true) if next.password.is_empty() => {
                return Err(StanzaError::not_acceptable()
                    .with_text("a password-protected room needs muc#roomconfig_roomsecret"))
            }
            _ => {}
        }
        *self = next;
        Ok((owners, admins))
    }
}

fn bad_field(var: &str) -> StanzaError {
    StanzaError::not_acceptable().with_text(format!("invalid value for {var}"))
}

/// XEP-0004 boolean.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "true" => Some(true),
        "0" | "false" | "" => Some(false),
        _ => None,
    }
}

/// The first value of a field of a form.
pub fn form_value(x: &Element, var: &str) -> Option<String> {
    x.elements()
        .find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))
        .and_then(|f| f.child_text("value", ns::DATA_FORMS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_round_trip_keeps_every_setting() {
        let c = RoomConfig {
            name: "Coven".into(),
            description: "d".into(),
            persistent: true,
            public: false,
            members_only: true,
            moderated: true,
            password: "pw".into(),
            whois_anyone: true,
            history_length: 7,
            change_subject: true,
            allow_invites: true,
            max_users: 30,
            archiving: false,
        };
        let mut form = c.to_form(&[], &[]);
        form.set_attr("type", "submit");
        let mut d = RoomConfig::default();
        d.apply_submit(&form, 50).expect("valid");
        assert_eq!(c, d);
    }

    #[test]
    fn bad_values_are_refused_and_nothing_changes() {
        let mut c = RoomConfig::default();
        let x = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "submit")
            .with_child(field("muc#roomconfig_persistentroom", None, None, "1"))
            .with_child(field("muc#roomconfig_membersonly", None, None, "maybe"));
        assert_eq!(
            c.apply_submit(&x, 50).unwrap_err().condition,
            "not-acceptable"
        );
        assert!(!c.persistent);
        let x = Element::new("x", ns::DATA_FORMS).with_child(field(
            "muc#roomconfig_passwordprotectedroom",
            None,
            None,
            "1",
        ));
        assert!(c.apply_submit(&x, 50).is_err());
    }

    #[test]
    fn history_length_is_capped_by_the_service() {
        let mut c = RoomConfig::default();
        let x = Element::new("x", ns::DATA_FORMS).with_child(field(
            "muc#maxhistoryfetch",
            None,
            None,
            "1000",
        ));
        c.apply_submit(&x, 50).expect("valid");
        assert_eq!(c.history_length, 50);
    }
}
