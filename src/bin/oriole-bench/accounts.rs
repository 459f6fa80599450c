//! The benchmark's accounts, written once per server in a format it imports: a XEP-0227 file
//! (Oriole's `oriole import`, ejabberd's `import_piefxis`) or Prosody's internal storage
//! (`<data>/<host>/accounts/<user>.dat` with SCRAM-SHA-1 keys, `roster/<user>.dat`).
//!
//! Accounts: `u0 … u<users-1>` plain; `r0 … r<roster_users-1>` each with `roster_size`
//! contacts `u<k>` in subscription `both` (the `u` accounts do not list them back).

use std::fmt::Write as _;
use std::path::Path;

use crate::client::{hex, salted_password, scram_keys};

pub struct Accounts {
    pub domain: String,
    pub password: String,
    pub users: usize,
    pub roster_users: usize,
    pub roster_size: usize,
}

impl Accounts {
    fn contacts(&self, r: usize) -> impl Iterator<Item = String> + '_ {
        let n = self.users.max(1);
        (0..self.roster_size.min(n)).map(move |k| format!("u{}@{}", (r * 7 + k) % n, self.domain))
    }

    pub fn xep0227(&self) -> String {
        let mut out =
            String::with_capacity(self.users * 64 + self.roster_users * self.roster_size * 64);
        let _ = write!(
            out,
            "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='{}'>\n",
            self.domain
        );
        for i in 0..self.users {
            let _ = writeln!(out, "<user name='u{i}' password='{}'/>", self.password);
        }
        for r in 0..self.roster_users {
            let _ = write!(
                out,
                "<user name='r{r}' password='{}'><query xmlns='jabber:iq:roster'>",
                self.password
            );
            for c in self.contacts(r) {
                let _ = write!(out, "<item jid='{c}' subscription='both'/>");
            }
            out.push_str("</query></user>\n");
        }
        out.push_str("</host>\n</server-data>\n");
        out
    }

    /// Prosody's `internal_hashed` accounts and `internal` rosters under `data`.
    pub fn prosody(&self, data: &Path, iterations: u32) -> std::io::Result<()> {
        let host = data.join(prosody_escape(&self.domain));
        std::fs::create_dir_all(host.join("accounts"))?;
        std::fs::create_dir_all(host.join("roster"))?;
        let names = (0..self.users)
            .map(|i| format!("u{i}"))
            .chain((0..self.roster_users).map(|r| format!("r{r}")));
        for name in names {
            let salt = hex(&rand::random::<[u8; 12]>());
            let salted = salted_password(&self.password, salt.as_bytes(), iterations);
            let (stored, server) = scram_keys(&salted);
            std::fs::write(
                host.join("accounts").join(format!("{name}.dat")),
                format!(
                    "return {{\n\t[\"iteration_count\"] = {iterations};\n\t[\"salt\"] = \"{salt}\";\n\t\
                     [\"server_key\"] = \"{}\";\n\t[\"stored_key\"] = \"{}\";\n}};\n",
                    hex(&server),
                    hex(&stored)
                ),
            )?;
        }
        for r in 0..self.roster_users {
            let mut s = String::from(
                "return {\n\t[false] = {\n\t\t[\"version\"] = 1;\n\t\t[\"pending\"] = {};\n\t};\n",
            );
            for c in self.contacts(r) {
                let _ = write!(
                    s,
                    "\t[\"{c}\"] = {{\n\t\t[\"subscription\"] = \"both\";\n\t\t[\"groups\"] = {{}};\n\t}};\n"
                );
            }
            s.push_str("};\n");
            std::fs::write(host.join("roster").join(format!("r{r}.dat")), s)?;
        }
        Ok(())
    }
}

/// Prosody's file-name escaping: every character outside [A-Za-z0-9_] as `%xx`.
fn prosody_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep0227_lists_every_account_and_roster() {
        let a = Accounts {
            domain: "b.example".into(),
            password: "pw".into(),
            users: 3,
            roster_users: 1,
            roster_size: 2,
        };
        let x = a.xep0227();
        assert_eq!(x.matches("<user ").count(), 4);
        assert!(x.contains("<user name='r0' password='pw'><query xmlns='jabber:iq:roster'><item jid='u0@b.example' subscription='both'/><item jid='u1@b.example'"));
        assert_eq!(prosody_escape("b.example"), "b%2eexample");
    }
}
