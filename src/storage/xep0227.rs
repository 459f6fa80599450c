//! XEP-0227 (Portable Import/Export Format for XMPP-IM Servers, version 1.1) export and import,
//! through the [`Storage`] trait, so data moves between any two backends and to and from other
//! servers.
//!
//! # Export
//!
//! [`export`] writes one `<server-data xmlns='urn:xmpp:pie:0'>` document with a `<host
//! jid='…'>` per domain that has accounts and a `<user name='…'>` per account, containing:
//!
//! - `<offline-messages>` with the queued stanzas, oldest first, each in `jabber:client`
//!   (stanzas stored without a namespace declaration, or in `jabber:server`, are put into
//!   `jabber:client`). It comes first among the user's children, as the XEP's schema orders
//!   it.
//! - one `<scram-credentials xmlns='urn:xmpp:pie:0#scram'>` per hash: `SCRAM-SHA-1`,
//!   `SCRAM-SHA-256`, `SCRAM-SHA-512`, each with `<iter-count>`, `<salt>`, `<server-key>` and
//!   `<stored-key>` (base64). Hashes whose keys are empty (accounts imported with partial
//!   credentials) are left out; an account with no usable keys at all is written without
//!   credentials, and an import will not recreate it. No plaintext password is written.
//! - the roster as `<query xmlns='jabber:iq:roster' ver='…'>` in the RFC 6121 format: `jid`,
//!   `name`, `subscription`, `ask='subscribe'` for an outbound request awaiting an answer,
//!   `approved='true'` for a pre-approved subscription (RFC 6121 §3.4), and `<group>`s. `ver`
//!   is our roster version (omitted while it is 0).
//! - inbound subscription requests waiting for the user, as the XEP's `<presence
//!   xmlns='jabber:client' type='subscribe' from='…'/>` children of `<user>`: the request
//!   stanzas the presence code keeps in the keyed store [`PENDING_STORE`] (key: the contact's
//!   bare JID), plus a bare request for any roster item flagged [`RosterItem::pending_in`]
//!   without a stored request. (The presence code does not use that flag; on import, every
//!   request goes to [`PENDING_STORE`], so the flag becomes a stored request.)
//! - the vCard (store [`stores::VCARD`], key `""`) as `<vCard xmlns='vcard-temp'>`.
//! - private XML storage (store [`stores::PRIVATE`]) as `<query xmlns='jabber:iq:private'>`
//!   with every stored element.
//!
//! Not exported: keyed stores other than those three (the trait cannot enumerate stores; PEP,
//! privacy lists and archives need their own sections when modules store them), and offline
//! sequence numbers (import assigns new ones, in the same order).
//!
//! [`export`] fails on a stored document that does not parse (corrupt data); the error names
//! the account and the document. [`export_with_report`] skips such documents instead and lists
//! them. The whole document is built in memory; very large servers will want a streaming
//! writer (one `<user>` at a time to an `io::Write`, with the XInclude file-per-user layout)
//! later.
//!
//! # Import
//!
//! [`import`] reads a document from a string; [`import_file`] reads a file and also follows
//! the XEP's XInclude `<include href='relative'/>` elements that are children of
//! `<server-data>`, `<host>` or `<user>` (relative paths only, no `parse` or `xpointer`).
//! Host and user names are normalised like any JID. For each user:
//!
//! - Credentials: the `<scram-credentials>` for SCRAM-SHA-1, -256 and -512 are taken as they
//!   are. When some are missing (other servers often keep SHA-1 only) and there is no
//!   plaintext password, the account is created with empty keys for the missing hashes,
//!   which authenticate nobody ([`ScramKeys::is_usable`]); logins with those mechanisms fail
//!   until the password is changed, and `skipped` says so. When the SCRAM credentials are
//!   missing, incomplete or invalid and a plaintext `password` attribute is present, all
//!   three are derived from it ([`StoredCredentials::derive`], [`DEFAULT_ITERATIONS`]). A user
//!   with no usable credentials at all is not imported, and is listed in `skipped` with the
//!   reason.
//! - An account that exists already is merged: complete credentials in the file replace the
//!   stored ones (otherwise the stored ones stay, with a note in `skipped`); roster items in
//!   the file replace the stored items for the same contact (keeping a stored `pending_in`)
//!   and other stored items stay; the vCard, private elements and subscription requests in
//!   the file replace the stored ones with the same key and others stay; offline stanzas are
//!   appended, except
//!   that a stanza identical to one already queued before the import is not added twice, so
//!   running the same import again changes nothing (but credentials derived from a plaintext
//!   password get fresh salts). Imported stanzas (offline messages, subscription requests)
//!   are stored in `jabber:client` with the namespace declared (`Element::to_string`).
//! - The roster `ver` cannot be restored (the trait has no way to set it); the imported
//!   roster gets a version from the importing store. Oriole's versions never repeat within a
//!   store, but they can coincide with a number the old server used, so a client that cached
//!   the old server's roster might be told it is current; the roster module may want to make
//!   its `ver` strings server-specific.
//! - Everything the XEP or extensions define that Oriole does not keep (privacy lists, PEP,
//!   message archives, unknown elements) is listed in `skipped`, as the XEP asks importers to
//!   tell the operator.
//!
//! A storage error aborts the import where it happened; what was written so far stays, and
//! running the import again is safe (see the merge rules).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::sled_store::split_account;
use super::{stores, Result, RosterItem, Storage, StorageError, Subscription};
use crate::auth::credentials::{ScramHash, ScramKeys, StoredCredentials, DEFAULT_ITERATIONS};
use crate::im::presence::PENDING_STORE;
use crate::jid::Jid;
use crate::proto::ns;
use crate::xml::{escape_attr, rename_ns, Element, Node};

/// The XEP-0227 namespace.
pub const NS_PIE: &str = ns::XEP0227;
/// SCRAM credentials inside `<user>` (XEP-0227 1.1).
pub const NS_SCRAM: &str = "urn:xmpp:pie:0#scram";
/// XInclude, for files split per host and per user.
pub const NS_XINCLUDE: &str = "http://www.w3.org/2001/XInclude";

/// The SCRAM mechanisms exported and imported, in the order they are written.
const MECHANISMS: [(&str, ScramHash); 3] = [
    ("SCRAM-SHA-1", ScramHash::Sha1),
    ("SCRAM-SHA-256", ScramHash::Sha256),
    ("SCRAM-SHA-512", ScramHash::Sha512),
];

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Accounts created or merged.
    pub accounts: usize,
    /// Roster items written.
    pub roster_items: usize,
    /// Offline stanzas queued.
    pub offline: usize,
    /// vCards, private XML elements and pending subscription requests written.
    pub items: usize,
    /// Everything not imported, one line each with the reason.
    pub skipped: Vec<String>,
    /// The (normalised) host JIDs found in the file, so the caller can warn about hosts the
    /// server is not configured for.
    pub hosts: Vec<String>,
}

fn parse(text: &str) -> std::result::Result<Element, String> {
    crate::xml::parser::parse_element(text).map_err(|e| format!("{e:?}"))
}

// ------------------------------------------------------------------------------------------
// Export
// ------------------------------------------------------------------------------------------

/// Export all accounts of `domains` as a XEP-0227 document. Fails on stored XML that does not
/// parse.
pub fn export(store: &dyn Storage, domains: &[String]) -> Result<String> {
    export_impl(store, domains, None)
}

/// Like [`export`], but skips stored documents that do not parse and lists them.
pub fn export_with_report(
    store: &dyn Storage,
    domains: &[String],
) -> Result<(String, Vec<String>)> {
    let mut skipped = Vec::new();
    let out = export_impl(store, domains, Some(&mut skipped))?;
    Ok((out, skipped))
}

fn export_impl(
    store: &dyn Storage,
    domains: &[String],
    mut lenient: Option<&mut Vec<String>>,
) -> Result<String> {
    let mut out = String::from("<?xml version='1.0' encoding='UTF-8'?>\n");
    out.push_str("<server-data xmlns='");
    escape_attr(NS_PIE, &mut out);
    out.push_str("'>\n");
    let mut seen = BTreeSet::new();
    for domain in domains {
        if !seen.insert(domain.as_str()) {
            continue;
        }
        let accounts = store.list_accounts(domain)?;
        if accounts.is_empty() {
            // The schema requires at least one user per host.
            continue;
        }
        out.push_str("  <host jid='");
        escape_attr(domain, &mut out);
        out.push_str("'>\n");
        for account in &accounts {
            export_user(&mut out, store, account, &mut lenient)?;
        }
        out.push_str("  </host>\n");
    }
    out.push_str("</server-data>\n");
    Ok(out)
}

/// Parse a stored document; on failure, fail or (lenient) note it and go on.
fn stored_element(
    text: &str,
    what: impl FnOnce() -> String,
    lenient: &mut Option<&mut Vec<String>>,
) -> Result<Option<Element>> {
    match parse(text) {
        Ok(el) => Ok(Some(el)),
        Err(e) => {
            let msg = format!("{}: stored XML does not parse: {e}", what());
            match lenient {
                Some(skipped) => {
                    skipped.push(msg);
                    Ok(None)
                }
                None => Err(StorageError(format!("cannot export {msg}"))),
            }
        }
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Write `el` on one line at indentation `n`.
fn write_line(out: &mut String, el: &Element, parent_ns: &str, n: usize) {
    indent(out, n);
    el.write_to(out, parent_ns);
    out.push('\n');
}

/// Write `el` with each child element on its own line (text children are not expected).
fn write_block(out: &mut String, el: &Element, parent_ns: &str, n: usize) {
    indent(out, n);
    out.push('<');
    out.push_str(&el.name);
    if el.ns != parent_ns {
        out.push_str(" xmlns='");
        escape_attr(&el.ns, out);
        out.push('\'');
    }
    for (k, v) in &el.attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("='");
        escape_attr(v, out);
        out.push('\'');
    }
    if el.children.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    for child in el.elements() {
        write_line(out, child, &el.ns, n + 2);
    }
    indent(out, n);
    out.push_str("</");
    out.push_str(&el.name);
    out.push_str(">\n");
}

/// Put a stored stanza into `jabber:client`, as the XEP requires.
fn normalise_stanza_ns(el: &mut Element) {
    if el.ns.is_empty() {
        rename_ns(el, "", ns::CLIENT);
    } else if el.ns == ns::SERVER {
        rename_ns(el, ns::SERVER, ns::CLIENT);
    }
}

fn scram_element(mechanism: &str, keys: &ScramKeys) -> Element {
    Element::new("scram-credentials", NS_SCRAM)
        .with_attr("mechanism", mechanism)
        .with_child(Element::new("iter-count", NS_SCRAM).with_text(keys.iterations.to_string()))
        .with_child(Element::new("salt", NS_SCRAM).with_text(BASE64.encode(&keys.salt)))
        .with_child(Element::new("server-key", NS_SCRAM).with_text(BASE64.encode(&keys.server_key)))
        .with_child(Element::new("stored-key", NS_SCRAM).with_text(BASE64.encode(&keys.stored_key)))
}

fn roster_item_element(item: &RosterItem) -> Element {
    let mut el = Element::new("item", ns::ROSTER)
        .with_attr("jid", item.jid.as_str())
        .with_opt_attr("name", item.name.as_deref())
        .with_attr("subscription", item.subscription.as_str());
    if item.ask_out {
        el.set_attr("ask", "subscribe");
    }
    if item.approved {
        el.set_attr("approved", "true");
    }
    for g in &item.groups {
        el.push_child(Element::new("group", ns::ROSTER).with_text(g.as_str()));
    }
    el
}

fn export_user(
    out: &mut String,
    store: &dyn Storage,
    account: &str,
    lenient: &mut Option<&mut Vec<String>>,
) -> Result<()> {
    let Some(creds) = store.get_credentials(account)? else {
        // Deleted while we were exporting.
        return Ok(());
    };
    let local = split_account(account).map_or(account, |(l, _)| l);
    out.push_str("    <user name='");
    escape_attr(local, out);
    out.push_str("'>\n");

    let queue = store.list_offline(account)?;
    if !queue.is_empty() {
        out.push_str("      <offline-messages>\n");
        for (seq, xml) in &queue {
            let what = || format!("offline stanza {seq} of {account}");
            if let Some(mut el) = stored_element(xml, what, lenient)? {
                normalise_stanza_ns(&mut el);
                write_line(out, &el, NS_PIE, 8);
            }
        }
        out.push_str("      </offline-messages>\n");
    }

    for (mechanism, hash) in MECHANISMS {
        let keys = creds.keys(hash);
        // Hashes an import could not fill are stored empty; they have nothing to export.
        if keys.is_usable(hash) {
            write_line(out, &scram_element(mechanism, keys), NS_PIE, 6);
        }
    }

    let roster = store.get_roster(account)?;
    let mut query = Element::new("query", ns::ROSTER);
    if roster.version > 0 {
        query.set_attr("ver", roster.version.to_string());
    }
    for item in roster.items.values() {
        query.push_child(roster_item_element(item));
    }
    write_block(out, &query, NS_PIE, 6);

    // Inbound subscription requests: the stored request stanzas, and a bare request for an
    // item flagged `pending_in` that has none.
    let mut requests = BTreeMap::new();
    for (contact, xml) in store.list_items(PENDING_STORE, account)? {
        let what = || format!("subscription request from {contact} to {account}");
        if let Some(mut el) = stored_element(&xml, what, lenient)? {
            normalise_stanza_ns(&mut el);
            requests.insert(contact, el);
        }
    }
    for item in roster.items.values().filter(|i| i.pending_in) {
        requests.entry(item.jid.clone()).or_insert_with(|| {
            Element::new("presence", ns::CLIENT)
                .with_attr("type", "subscribe")
                .with_attr("from", item.jid.as_str())
        });
    }
    for presence in requests.values() {
        write_line(out, presence, NS_PIE, 6);
    }

    if let Some(xml) = store.get_item(stores::VCARD, account, "")? {
        let what = || format!("vCard of {account}");
        if let Some(el) = stored_element(&xml, what, lenient)? {
            write_line(out, &el, NS_PIE, 6);
        }
    }

    let private = store.list_items(stores::PRIVATE, account)?;
    if !private.is_empty() {
        let mut query = Element::new("query", ns::PRIVATE);
        for (key, xml) in &private {
            let what = || format!("private XML {key} of {account}");
            if let Some(el) = stored_element(xml, what, lenient)? {
                query.push_child(el);
            }
        }
        write_block(out, &query, NS_PIE, 6);
    }

    out.push_str("    </user>\n");
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Import
// ------------------------------------------------------------------------------------------

/// Import a XEP-0227 document. `<include>` elements are not followed (see [`import_file`]).
pub fn import(store: &dyn Storage, xml: &str) -> Result<ImportReport> {
    let root = parse_document(xml, "the XEP-0227 document")?;
    import_element(store, &root)
}

/// Import a XEP-0227 file, following XInclude `<include href='…'/>` elements relative to the
/// including file.
pub fn import_file(store: &dyn Storage, path: &Path) -> Result<ImportReport> {
    let mut root = load_file(path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    // <server-data> → <host> → <user> → user data: includes are followed at those three levels.
    resolve_includes(&mut root, &dir, 3)?;
    import_element(store, &root)
}

/// Import an already parsed `<server-data>` element.
pub fn import_element(store: &dyn Storage, root: &Element) -> Result<ImportReport> {
    if !root.is("server-data", NS_PIE) {
        return Err(StorageError(format!(
            "not a XEP-0227 document: the root element is {}, expected <server-data xmlns='{NS_PIE}'>",
            describe(root)
        )));
    }
    let mut report = ImportReport::default();
    for child in root.elements() {
        if child.is("host", NS_PIE) {
            import_host(store, child, &mut report)?;
        } else if child.is("include", NS_XINCLUDE) {
            report.skipped.push(include_not_followed(child));
        } else {
            report.skipped.push(format!(
                "{} under <server-data>: not understood",
                describe(child)
            ));
        }
    }
    Ok(report)
}

/// `<name xmlns='ns'>` for messages.
fn describe(el: &Element) -> String {
    if el.ns.is_empty() {
        format!("<{}>", el.name)
    } else {
        format!("<{} xmlns='{}'>", el.name, el.ns)
    }
}

fn include_not_followed(el: &Element) -> String {
    format!(
        "<include href='{}'>: XInclude is followed only when importing from a file",
        el.attr("href").unwrap_or("")
    )
}

/// Parse a whole document: skip a byte-order mark, the XML declaration, comments and
/// whitespace around the root element, which the element parser does not expect.
fn parse_document(text: &str, what: &str) -> Result<Element> {
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    loop {
        rest = rest.trim_start();
        let end = if rest.starts_with("<?") {
            rest.find("?>").map(|i| i + 2)
        } else if rest.starts_with("<!--") {
            rest.find("-->").map(|i| i + 3)
        } else {
            break;
        };
        match end {
            Some(i) => rest = &rest[i..],
            None => return Err(StorageError(format!("{what} is not well-formed XML"))),
        }
    }
    parse(rest.trim_end()).map_err(|e| StorageError(format!("{what} is not well-formed XML: {e}")))
}

fn load_file(path: &Path) -> Result<Element> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StorageError(format!("cannot read {}: {e}", path.display())))?;
    parse_document(&text, &path.display().to_string())
}

/// Replace `<include>` children of `el` by the root element of the file they name; go down
/// `levels` levels of XEP-0227 structure (includes deeper inside user data are user data).
fn resolve_includes(el: &mut Element, dir: &Path, levels: usize) -> Result<()> {
    if levels == 0 {
        return Ok(());
    }
    let children = std::mem::take(&mut el.children);
    for node in children {
        let node = match node {
            Node::Element(child) if child.is("include", NS_XINCLUDE) => {
                let path = include_path(&child, dir)?;
                let mut included = load_file(&path)?;
                let inc_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                resolve_includes(&mut included, &inc_dir, levels - 1)?;
                Node::Element(included)
            }
            Node::Element(mut child) => {
                if child.is("host", NS_PIE) || child.is("user", NS_PIE) {
                    resolve_includes(&mut child, dir, levels - 1)?;
                }
                Node::Element(child)
            }
            text => text,
        };
        el.children.push(node);
    }
    Ok(())
}

/// The file an `<include>` names: a relative URI reference, percent-decoded.
fn include_path(el: &Element, dir: &Path) -> Result<PathBuf> {
    let href = el
        .attr("href")
        .ok_or_else(|| StorageError("<include> without href".into()))?;
    if let Some(p) = el.attr("parse") {
        if p != "xml" {
            return Err(StorageError(format!(
                "<include href='{href}' parse='{p}'>: only parse='xml' is supported"
            )));
        }
    }
    if el.attr("xpointer").is_some() {
        return Err(StorageError(format!(
            "<include href='{href}' xpointer=…>: xpointer is not supported"
        )));
    }
    let first_segment = href.split('/').next().unwrap_or("");
    if href.is_empty()
        || href.starts_with('/')
        || first_segment.contains(':')
        || href.contains(['?', '#'])
    {
        return Err(StorageError(format!(
            "<include href='{href}'>: only relative paths are supported"
        )));
    }
    let decoded = percent_decode(href)
        .ok_or_else(|| StorageError(format!("<include href='{href}'>: bad percent-encoding")))?;
    Ok(dir.join(decoded))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn import_host(store: &dyn Storage, host: &Element, report: &mut ImportReport) -> Result<()> {
    let raw = host.attr("jid").unwrap_or("");
    let domain = match Jid::domain_jid(raw) {
        Ok(j) => j.domain().to_string(),
        Err(e) => {
            report.skipped.push(format!(
                "<host jid='{raw}'>: not a domain ({e}); the whole host skipped"
            ));
            return Ok(());
        }
    };
    if !report.hosts.contains(&domain) {
        report.hosts.push(domain.clone());
    }
    for child in host.elements() {
        if child.is("user", NS_PIE) {
            import_user(store, &domain, child, report)?;
        } else if child.is("include", NS_XINCLUDE) {
            report
                .skipped
                .push(format!("{domain}: {}", include_not_followed(child)));
        } else {
            report
                .skipped
                .push(format!("{domain}: {}: not understood", describe(child)));
        }
    }
    Ok(())
}

/// What the file says about a user's credentials.
enum Credentials {
    /// Keys for every hash, from the file or derived from a plaintext password.
    Complete(Box<StoredCredentials>),
    /// Keys for some hashes only; the others are empty (unusable). The note says which.
    Partial(Box<StoredCredentials>, String),
    /// Present but not usable; the reason.
    Unusable(String),
    Absent,
}

/// Keys that authenticate nobody, for a hash the file has no credentials for (the convention
/// of [`ScramKeys::is_usable`]).
fn no_keys() -> ScramKeys {
    ScramKeys {
        salt: Vec::new(),
        iterations: 0,
        stored_key: Vec::new(),
        server_key: Vec::new(),
    }
}

fn read_credentials(user: &Element, notes: &mut Vec<String>) -> Credentials {
    let mut found: [Option<ScramKeys>; 3] = [None, None, None];
    let mut invalid = None;
    for el in user
        .elements()
        .filter(|e| e.is("scram-credentials", NS_SCRAM))
    {
        let mechanism = el.attr("mechanism").unwrap_or("");
        let Some(i) = MECHANISMS.iter().position(|(m, _)| *m == mechanism) else {
            notes.push(format!(
                "SCRAM credentials for mechanism {mechanism:?}: not supported"
            ));
            continue;
        };
        if found[i].is_some() {
            invalid = Some(format!("{mechanism} credentials appear twice"));
            break;
        }
        match read_scram_keys(el, MECHANISMS[i].1.output_len()) {
            Ok(keys) => found[i] = Some(keys),
            Err(e) => {
                invalid = Some(format!("invalid {mechanism} credentials: {e}"));
                break;
            }
        }
    }
    let complete = invalid.is_none() && found.iter().all(Option::is_some);
    if !complete {
        if let Some(password) = user.attr("password") {
            let had_scram = invalid.is_some() || found.iter().any(Option::is_some);
            if had_scram {
                notes.push(format!(
                    "SCRAM credentials {}; all three derived from the plaintext password",
                    invalid.as_deref().unwrap_or("incomplete")
                ));
            }
            return Credentials::Complete(Box::new(StoredCredentials::derive(
                password,
                DEFAULT_ITERATIONS,
            )));
        }
    }
    if let Some(why) = invalid {
        return Credentials::Unusable(why);
    }
    let have: Vec<&str> = MECHANISMS
        .iter()
        .zip(&found)
        .filter(|(_, k)| k.is_some())
        .map(|((m, _), _)| *m)
        .collect();
    let [sha1, sha256, sha512] = found;
    if have.is_empty() {
        return Credentials::Absent;
    }
    let creds = Box::new(StoredCredentials {
        sha1: sha1.unwrap_or_else(no_keys),
        sha256: sha256.unwrap_or_else(no_keys),
        sha512: sha512.unwrap_or_else(no_keys),
    });
    if complete {
        Credentials::Complete(creds)
    } else {
        Credentials::Partial(
            creds,
            format!(
                "credentials only for {}: other SCRAM mechanisms fail until the password is \
                 changed",
                have.join(", ")
            ),
        )
    }
}

fn read_scram_keys(el: &Element, hash_len: usize) -> std::result::Result<ScramKeys, String> {
    let text = |name: &str| {
        el.child_text(name, NS_SCRAM)
            .ok_or_else(|| format!("no <{name}>"))
    };
    let b64 = |name: &str| -> std::result::Result<Vec<u8>, String> {
        let t: String = text(name)?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        BASE64
            .decode(t)
            .map_err(|e| format!("<{name}> is not base64: {e}"))
    };
    let iterations: u32 = text("iter-count")?
        .trim()
        .parse()
        .map_err(|_| "<iter-count> is not a number".to_string())?;
    if iterations == 0 {
        return Err("<iter-count> is 0".into());
    }
    let salt = b64("salt")?;
    if salt.is_empty() {
        return Err("<salt> is empty".into());
    }
    let server_key = b64("server-key")?;
    let stored_key = b64("stored-key")?;
    if server_key.len() != hash_len || stored_key.len() != hash_len {
        return Err(format!("keys must be {hash_len} bytes"));
    }
    Ok(ScramKeys {
        salt,
        iterations,
        stored_key,
        server_key,
    })
}

fn read_roster_item(el: &Element) -> std::result::Result<RosterItem, String> {
    let raw = el.attr("jid").ok_or("no jid")?;
    let jid = Jid::parse(raw).map_err(|e| format!("jid {raw:?}: {e}"))?;
    let subscription = match el.attr("subscription") {
        None => Subscription::None,
        Some(s) => Subscription::parse(s).ok_or_else(|| format!("subscription {s:?}"))?,
    };
    let mut groups: Vec<String> = Vec::new();
    for g in el.elements().filter(|g| g.is("group", ns::ROSTER)) {
        let name = g.text();
        if !name.is_empty() && !groups.contains(&name) {
            groups.push(name);
        }
    }
    Ok(RosterItem {
        jid: jid.to_string(),
        name: el.attr("name").map(str::to_string),
        subscription,
        ask_out: el.attr("ask") == Some("subscribe"),
        pending_in: false,
        approved: matches!(el.attr("approved"), Some("true" | "1")),
        groups,
    })
}

/// An offline stanza as the XEP has it, put into `jabber:client`; `None` if it is not one.
fn offline_stanza(el: &Element) -> Option<Element> {
    let mut el = el.clone();
    for from in [ns::SERVER, NS_PIE, ""] {
        if el.ns == from {
            // NS_PIE: an exporter that forgot the xmlns; the stanza inherited <user>'s.
            rename_ns(&mut el, from, ns::CLIENT);
        }
    }
    (el.ns == ns::CLIENT && matches!(&*el.name, "message" | "presence")).then_some(el)
}

fn import_user(
    store: &dyn Storage,
    domain: &str,
    user: &Element,
    report: &mut ImportReport,
) -> Result<()> {
    let name = user.attr("name").unwrap_or("");
    let account = match Jid::from_parts(Some(name), domain, None) {
        Ok(j) => j.bare_string(),
        Err(e) => {
            report.skipped.push(format!(
                "<user name='{name}'> of {domain}: not a valid JID ({e})"
            ));
            return Ok(());
        }
    };
    let mut notes = Vec::new();
    let creds = read_credentials(user, &mut notes);
    let exists = store.get_credentials(&account)?.is_some();
    match creds {
        Credentials::Complete(c) => {
            if exists || !store.create_account(&account, &c)? {
                store.set_credentials(&account, &c)?;
            }
        }
        Credentials::Partial(_, why) | Credentials::Unusable(why) if exists => {
            notes.push(format!(
                "credentials not imported, the stored ones stay: {why}"
            ));
        }
        Credentials::Absent if exists => {}
        Credentials::Partial(c, why) => {
            if !store.create_account(&account, &c)? {
                notes.push(format!(
                    "credentials not imported, the stored ones stay: {why}"
                ));
            } else {
                notes.push(why);
            }
        }
        Credentials::Unusable(why) => {
            report
                .skipped
                .push(format!("{account}: not imported: {why}"));
            return Ok(());
        }
        Credentials::Absent => {
            report
                .skipped
                .push(format!("{account}: not imported: no credentials"));
            return Ok(());
        }
    }
    report.accounts += 1;

    // Stored items keep a `pending_in` flag the file cannot express.
    let stored_roster = store.get_roster(&account)?.items;
    for el in user.elements() {
        if el.is("scram-credentials", NS_SCRAM) {
            // Done above.
        } else if el.is("query", ns::ROSTER) {
            for el in el.elements() {
                if !el.is("item", ns::ROSTER) {
                    notes.push(format!("{} in the roster: not understood", describe(el)));
                    continue;
                }
                match read_roster_item(el) {
                    Ok(mut item) => {
                        item.pending_in = stored_roster
                            .get(&item.jid)
                            .is_some_and(|old| old.pending_in);
                        store.put_roster_item(&account, &item)?;
                        report.roster_items += 1;
                    }
                    Err(e) => notes.push(format!("roster item skipped: {e}")),
                }
            }
        } else if el.is("presence", ns::CLIENT) || el.is("presence", ns::SERVER) {
            import_pending(store, &account, el, report, &mut notes)?;
        } else if el.is("offline-messages", NS_PIE) {
            import_offline(store, &account, el, report, &mut notes)?;
        } else if el.is("vCard", ns::VCARD) {
            store.put_item(stores::VCARD, &account, "", &el.to_string())?;
            report.items += 1;
        } else if el.is("query", ns::PRIVATE) {
            for item in el.elements() {
                if item.ns.is_empty() || item.ns == ns::PRIVATE {
                    notes.push(format!(
                        "private XML {}: needs a namespace of its own",
                        describe(item)
                    ));
                    continue;
                }
                let key = format!("{{{}}}{}", item.ns, item.name);
                store.put_item(stores::PRIVATE, &account, &key, &item.to_string())?;
                report.items += 1;
            }
        } else if el.is("include", NS_XINCLUDE) {
            notes.push(include_not_followed(el));
        } else {
            notes.push(format!("{}: {}", describe(el), unsupported(el)));
        }
    }

    report
        .skipped
        .extend(notes.into_iter().map(|n| format!("{account}: {n}")));
    Ok(())
}

fn unsupported(el: &Element) -> &'static str {
    match &*el.ns {
        "jabber:iq:privacy" => "privacy lists are not supported",
        "http://jabber.org/protocol/pubsub" | "http://jabber.org/protocol/pubsub#owner" => {
            "PEP data is not supported"
        }
        "urn:xmpp:pie:0#mam" => "message archives are not supported",
        _ => "not understood",
    }
}

/// `<presence type='subscribe' from='…'/>`: an inbound request waiting for the user, kept
/// where the presence code keeps them ([`PENDING_STORE`], keyed by the contact's bare JID),
/// replacing a stored request from the same contact.
fn import_pending(
    store: &dyn Storage,
    account: &str,
    el: &Element,
    report: &mut ImportReport,
    notes: &mut Vec<String>,
) -> Result<()> {
    if el.attr("type") != Some("subscribe") {
        notes.push(format!(
            "presence of type {:?}: only subscription requests (type='subscribe') are kept",
            el.attr("type").unwrap_or("available")
        ));
        return Ok(());
    }
    let raw = el.attr("from").unwrap_or("");
    let contact = match Jid::parse(raw) {
        Ok(j) => j.to_bare().to_string(),
        Err(e) => {
            notes.push(format!("subscription request from {raw:?}: bad JID ({e})"));
            return Ok(());
        }
    };
    let mut request = el.clone();
    normalise_stanza_ns(&mut request);
    store.put_item(PENDING_STORE, account, &contact, &request.to_string())?;
    report.items += 1;
    Ok(())
}

fn import_offline(
    store: &dyn Storage,
    account: &str,
    el: &Element,
    report: &mut ImportReport,
    notes: &mut Vec<String>,
) -> Result<()> {
    // Stanzas queued before this import, to make running it twice harmless.
    let mut queued: HashMap<String, usize> = HashMap::new();
    for (_, xml) in store.list_offline(account)? {
        *queued.entry(xml).or_default() += 1;
    }
    for child in el.elements() {
        let Some(stanza) = offline_stanza(child) else {
            notes.push(format!(
                "offline {}: not a message or presence stanza",
                describe(child)
            ));
            continue;
        };
        let xml = stanza.to_string();
        if let Some(n) = queued.get_mut(&xml).filter(|n| **n > 0) {
            *n -= 1;
            continue;
        }
        store.push_offline(account, &xml)?;
        report.offline += 1;
    }
    Ok(())
}

#[cfg(test)]
#[path = "xep0227_tests.rs"]
mod tests;
