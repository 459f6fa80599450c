//! XEP-0363: HTTP File Upload — slots, quotas and the files on disk.
//!
//! A slot request (`<request filename size content-type/>` to `upload.<domain>`) is checked
//! (size against `max_file_size`, type against `allowed_content_types`, the account's quota
//! counting files kept and slots not yet used) and answered with a GET URL
//! `<base>/upload/<id>/<filename>` (the 128-bit random id makes it unguessable) and a PUT
//! URL that adds `?e=<expiry>&t=<token>`, the token being HMAC-SHA256 over the slot under a
//! key of this run, so knowing the GET URL does not allow an upload. A slot is good for one
//! upload within five minutes.
//!
//! On disk: `<data_dir>/upload/<id>/data` and `<id>/meta.json` (owner, file name, size, type,
//! upload time), written in that order after the data is synced, so a file without its
//! metadata is an unfinished upload. Quota use is rebuilt from the metadata at start; files
//! older than `expire_after_days` are removed by a periodic sweep.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::UploadConfig;
use crate::jid::Jid;
use crate::proto::{ns, StanzaError};
use crate::xml::Element;

pub const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
/// How long a slot may wait for its PUT.
pub const SLOT_LIFETIME_SECS: u64 = 300;

/// A slot handed out and not yet used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub id: String,
    pub owner: String,
    pub filename: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub expires: u64,
}

/// What is stored beside each file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub owner: String,
    pub filename: String,
    pub size: u64,
    pub content_type: String,
    pub created: u64,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Slot>,
    /// Slots whose PUT is in progress.
    uploading: HashSet<String>,
    /// Bytes stored per owner.
    used: HashMap<String, u64>,
}

/// The upload service's state and its folder.
pub struct UploadStore {
    dir: PathBuf,
    key: [u8; 32],
    pub cfg: UploadConfig,
    /// Port of the HTTPS service, for the default public URL.
    port: u16,
    state: Mutex<State>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode percent-escapes; `None` for a bad escape or invalid UTF-8.
pub fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A MIME type such as `image/png` (parameters allowed), lowercased type/subtype.
pub fn valid_content_type(ct: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    ct.len() <= 255
        && !ct.bytes().any(|b| b.is_ascii_control())
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

/// The `type/subtype` part, lowercase.
pub fn essence(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A slot request refused: the stanza error and an optional application-specific child.
pub type SlotError = Box<(StanzaError, Option<Element>)>;

impl UploadStore {
    /// Open (create) `<data_dir>/upload` and count what each account stores.
    pub fn open(data_dir: &Path, cfg: UploadConfig, port: u16) -> std::io::Result<UploadStore> {
        let dir = data_dir.join("upload");
        std::fs::create_dir_all(&dir)?;
        let store = UploadStore {
            dir,
            key: rand::random(),
            cfg,
            port,
            state: Mutex::new(State::default()),
        };
        let mut used: HashMap<String, u64> = HashMap::new();
        for (_, meta) in store.scan() {
            *used.entry(meta.owner).or_default() += meta.size;
        }
        store.lock().used = used;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every finished upload: (id, metadata).
    fn scan(&self) -> Vec<(String, Meta)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let id = e.file_name().to_str()?.to_string();
                let meta = self.read_meta(&id)?;
                Some((id, meta))
            })
            .collect()
    }

    /// The metadata of a finished upload.
    pub fn read_meta(&self, id: &str) -> Option<Meta> {
        if !valid_id(id) {
            return None;
        }
        let text = std::fs::read(self.dir.join(id).join("meta.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(id).join("data")
    }

    /// Bytes an account stores now.
    pub fn used_by(&self, owner: &str) -> u64 {
        self.lock().used.get(owner).copied().unwrap_or(0)
    }

    /// The base URL for a hosted domain.
    pub fn base_url(&self, domain: &str) -> String {
        let url = self.cfg.public_url.trim_end_matches('/');
        if url.is_empty() {
            format!("https://{domain}:{}", self.port)
        } else {
            url.to_string()
        }
    }

    fn token(&self, slot: &Slot) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        for part in [
            slot.id.as_bytes(),
            slot.filename.as_bytes(),
            &slot.size.to_be_bytes(),
            slot.content_type.as_deref().unwrap_or("").as_bytes(),
            &slot.expires.to_be_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        hex(&mac.finalize().into_bytes())
    }

    fn type_allowed(&self, ct: &str) -> bool {
        let allowed = &self.cfg.allowed_content_types;
        if allowed.is_empty() {
            return true;
        }
        let e = essence(ct);
        allowed.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            match a.strip_suffix("/*") {
                Some(major) => e.split('/').next() == Some(major),
                None => a == e,
            }
        })
    }

    /// Answer a slot request from `from` (a local account) addressed to the upload service of
    /// `domain`.
    pub fn request_slot(
        &self,
        from: &Jid,
        domain: &str,
        req: &Element,
    ) -> Result<Element, SlotError> {
        let plain = |e: StanzaError| Box::new((e, None));
        let filename = req.attr("filename").unwrap_or_default();
        if filename.is_empty()
            || filename.len() > 255
            || filename.contains(['/', '\\'])
            || filename.chars().any(char::is_control)
            || filename == "."
            || filename == ".."
        {
            return Err(plain(
                StanzaError::bad_request().with_text("a file name (no slashes) is required"),
            ));
        }
        let size: u64 = req
            .attr("size")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| plain(StanzaError::bad_request().with_text("size must be a number")))?;
        let max = self.cfg.max_file_size;
        if size > max {
            let detail = Element::new("file-too-large", NS_UPLOAD)
                .with_child(Element::new("max-file-size", NS_UPLOAD).with_text(max.to_string()));
            return Err(Box::new((
                StanzaError::not_acceptable()
                    .with_text(format!("the file is larger than the limit of {max} bytes")),
                Some(detail),
            )));
        }
        let content_type = match req.attr("content-type").filter(|c| !c.is_empty()) {
            Some(ct) if !valid_content_type(ct) => {
                return Err(plain(
                    StanzaError::bad_request().with_text("content-type is not a MIME type"),
                ))
            }
            Some(ct) if !self.type_allowed(ct) => {
                return Err(plain(
                    StanzaError::not_acceptable()
                        .with_text(format!("files of type {ct} are not accepted")),
                ))
            }
            other => other.map(str::to_string),
        };
        let owner = from.bare_string();
        let now = unix_now();
        let mut st = self.lock();
        st.pending.retain(|_, s| s.expires > now);
        let quota = self.cfg.quota_per_user;
        if quota > 0 {
            let reserved: u64 = st
                .pending
                .values()
                .filter(|s| s.owner == owner)
                .map(|s| s.size)
                .sum();
            let used = st.used.get(&owner).copied().unwrap_or(0);
            if used.saturating_add(reserved).saturating_add(size) > quota {
                return Err(plain(StanzaError::resource_constraint().with_text(
                    format!("upload quota reached ({used} of {quota} bytes used)"),
                )));
            }
        }
        if st.pending.len() >= 100_000 {
            return Err(plain(StanzaError::resource_constraint()));
        }
        let id = hex(&rand::random::<[u8; 16]>());
        let slot = Slot {
            id: id.clone(),
            owner,
            filename: filename.to_string(),
            size,
            content_type,
            expires: now + SLOT_LIFETIME_SECS,
        };
        let get = format!(
            "{}/upload/{id}/{}",
            self.base_url(domain),
            pct_encode(filename)
        );
        let put = format!("{get}?e={}&t={}", slot.expires, self.token(&slot));
        st.pending.insert(id, slot);
        Ok(Element::new("slot", NS_UPLOAD)
            .with_child(Element::new("put", NS_UPLOAD).with_attr("url", put))
            .with_child(Element::new("get", NS_UPLOAD).with_attr("url", get)))
    }

    /// Claim the slot for a PUT: the token must be right and the slot unused. The slot is
    /// consumed (one upload per slot) until [`Self::finish_upload`] or [`Self::fail_upload`].
    pub fn claim(&self, id: &str, filename: &str, query: &str) -> Result<Slot, u16> {
        let mut expires = None;
        let mut token = None;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("e", v)) => expires = v.parse::<u64>().ok(),
                Some(("t", v)) => token = Some(v),
                _ => {}
            }
        }
        let (Some(expires), Some(token)) = (expires, token) else {
            return Err(403);
        };
        let mut st = self.lock();
        if st.uploading.contains(id) || self.dir.join(id).exists() {
            return Err(409);
        }
        let Some(slot) = st.pending.get(id) else {
            return Err(403);
        };
        let expected = self.token(slot);
        let good: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), token.as_bytes()).into();
        if !good || slot.expires != expires || slot.filename != filename {
            return Err(403);
        }
        if slot.expires <= unix_now() {
            st.pending.remove(id);
            return Err(403);
        }
        let slot = st.pending.remove(id).ok_or(403u16)?;
        st.uploading.insert(id.to_string());
        *st.used.entry(slot.owner.clone()).or_default() += slot.size;
        Ok(slot)
    }

    /// The PUT failed: remove what was written and give the quota back.
    pub fn fail_upload(&self, slot: &Slot) {
        let _ = std::fs::remove_dir_all(self.dir.join(&slot.id));
        let mut st = self.lock();
        st.uploading.remove(&slot.id);
        if let Some(u) = st.used.get_mut(&slot.owner) {
            *u = u.saturating_sub(slot.size);
        }
    }

    /// The data is in `<id>/data.part`, synced: move it in place and write the metadata.
    pub fn finish_upload(&self, slot: &Slot, content_type: &str) -> std::io::Result<()> {
        let d = self.dir.join(&slot.id);
        std::fs::rename(d.join("data.part"), d.join("data"))?;
        let meta = Meta {
            owner: slot.owner.clone(),
            filename: slot.filename.clone(),
            size: slot.size,
            content_type: content_type.to_string(),
            created: unix_now(),
        };
        let json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
        std::fs::write(d.join("meta.json.tmp"), json)?;
        std::fs::rename(d.join("meta.json.tmp"), d.join("meta.json"))?;
        self.lock().uploading.remove(&slot.id);
        Ok(())
    }

    /// Remove files older than `expire_after_days` and unfinished uploads older than a day.
    /// Returns how many were removed.
    pub fn expire(&self, now: u64) -> usize {
        let days = self.cfg.expire_after_days;
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in rd.flatten() {
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_id(&id) || self.lock().uploading.contains(&id) {
                continue;
            }
            match self.read_meta(&id) {
                Some(meta) => {
                    if days > 0
                        && meta.created.saturating_add(days * 86400) <= now
                        && std::fs::remove_dir_all(e.path()).is_ok()
                    {
                        removed += 1;
                        if let Some(u) = self.lock().used.get_mut(&meta.owner) {
                            *u = u.saturating_sub(meta.size);
                        }
                    }
                }
                None => {
                    let old = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(86400));
                    if old && std::fs::remove_dir_all(e.path()).is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }

    /// disco#info of the service, with the XEP-0128 form announcing the size limit.
    pub fn disco_info(&self) -> Element {
        let field = |var: &str, value: &str| {
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", var)
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
        };
        Element::new("query", ns::DISCO_INFO)
            .with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "store")
                    .with_attr("type", "file")
                    .with_attr("name", "HTTP File Upload"),
            )
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_INFO))
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", NS_UPLOAD))
            .with_child(
                Element::new("x", ns::DATA_FORMS)
                    .with_attr("type", "result")
                    .with_child(field("FORM_TYPE", NS_UPLOAD).with_attr("type", "hidden"))
                    .with_child(field("max-file-size", &self.cfg.max_file_size.to_string())),
            )
    }
}

/// Slot ids are 32 lowercase hex digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, max: u64, quota: u64) -> UploadStore {
        let cfg = UploadConfig {
            max_file_size: max,
            quota_per_user: quota,
            ..UploadConfig::default()
        };
        UploadStore::open(dir, cfg, 5281).unwrap()
    }

    fn request(name: &str, size: u64, ct: Option<&str>) -> Element {
        Element::new("request", NS_UPLOAD)
            .with_attr("filename", name)
            .with_attr("size", size.to_string())
            .with_opt_attr("content-type", ct)
    }

    fn urls(slot: &Element) -> (String, String) {
        let put = slot.child("put", NS_UPLOAD).unwrap().attr("url").unwrap();
        let get = slot.child("get", NS_UPLOAD).unwrap().attr("url").unwrap();
        (put.to_string(), get.to_string())
    }

    #[test]
    fn slot_urls_token_and_single_use() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1000, 0);
        let alice = Jid::parse("alice@example.org/phone").unwrap();
        let slot = s
            .request_slot(
                &alice,
                "example.org",
                &request("a b.png", 10, Some("image/png")),
            )
            .unwrap();
        let (put, get) = urls(&slot);
        assert!(get.starts_with("https://example.org:5281/upload/"), "{get}");
        assert!(get.ends_with("/a%20b.png"), "{get}");
        assert!(put.starts_with(&get) && put.len() > get.len() + 60, "{put}");
        let rest = get.trim_start_matches("https://example.org:5281/upload/");
        let id = rest.split('/').next().unwrap();
        let query = put.split_once('?').unwrap().1;
        assert_eq!(s.claim(id, "a b.png", "e=1&t=00"), Err(403));
        let forged = query.replace("t=", "t=0");
        assert_eq!(s.claim(id, "a b.png", &forged), Err(403));
        assert_eq!(s.claim(id, "other.png", query), Err(403));
        let claimed = s.claim(id, "a b.png", query).unwrap();
        assert_eq!(claimed.size, 10);
        assert_eq!(claimed.owner, "alice@example.org");
        assert_eq!(s.claim(id, "a b.png", query), Err(409));
        s.fail_upload(&claimed);
        assert_eq!(s.used_by("alice@example.org"), 0);
    }

    #[test]
    fn too_large_and_quota() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, 150);
        let a = Jid::parse("a@example.org/r").unwrap();
        let (err, detail) = *s
            .request_slot(&a, "example.org", &request("x", 101, None))
            .unwrap_err();
        assert_eq!(err.condition, "not-acceptable");
        let detail = detail.unwrap();
        assert_eq!(
            detail.child_text("max-file-size", NS_UPLOAD).as_deref(),
            Some("100")
        );
        s.request_slot(&a, "example.org", &request("x", 100, None))
            .unwrap();
        // The unused slot counts against the quota.
        let (err, _) = *s
            .request_slot(&a, "example.org", &request("y", 60, None))
            .unwrap_err();
        assert_eq!(err.condition, "resource-constraint");
        // Another account has its own quota.
        let b = Jid::parse("b@example.org/r").unwrap();
        s.request_slot(&b, "example.org", &request("y", 60, None))
            .unwrap();
    }

    #[test]
    fn bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path(), 100, 0);
        s.cfg.allowed_content_types = vec!["image/*".into(), "text/plain".into()];
        let a = Jid::parse("a@example.org/r").unwrap();
        for req in [
            request("", 1, None),
            request("../x", 1, None),
            request("x", 1, Some("nonsense")),
            Element::new("request", NS_UPLOAD).with_attr("filename", "x"),
        ] {
            let (e, _) = *s.request_slot(&a, "d", &req).unwrap_err();
            assert_eq!(e.condition, "bad-request");
        }
        let (e, _) = *s
            .request_slot(&a, "d", &request("x", 1, Some("application/x-sh")))
            .unwrap_err();
        assert_eq!(e.condition, "not-acceptable");
        s.request_slot(&a, "d", &request("x", 1, Some("image/jpeg")))
            .unwrap();
        s.request_slot(&a, "d", &request("x", 1, Some("Text/Plain; charset=utf-8")))
            .unwrap();
    }

    #[test]
    fn expiry_and_quota_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, 0);
        let a = Jid::parse("a@example.org/r").unwrap();
        let slot = s.request_slot(&a, "d", &request("f", 3, None)).unwrap();
        let (put, _) = urls(&slot);
        let id = put
            .split("/upload/")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let query = put.split_once('?').unwrap().1;
        let claimed = s.claim(id, "f", query).unwrap();
        std::fs::create_dir_all(s.dir().join(id)).unwrap();
        std::fs::write(s.dir().join(id).join("data.part"), b"abc").unwrap();
        s.finish_upload(&claimed, "application/octet-stream")
            .unwrap();
        assert_eq!(s.used_by("a@example.org"), 3);
        let reopened = store(dir.path(), 100, 0);
        assert_eq!(reopened.used_by("a@example.org"), 3);
        assert_eq!(reopened.expire(unix_now()), 0);
        assert_eq!(reopened.expire(unix_now() + 31 * 86400), 1);
        assert_eq!(reopened.used_by("a@example.org"), 0);
        assert!(!reopened.dir().join(id).exists());
    }

    #[test]
    fn percent_coding() {
        assert_eq!(pct_encode("é x/y"), "%C3%A9%20x%2Fy");
        assert_eq!(pct_decode("%C3%A9%20x%2Fy").as_deref(), Some("é x/y"));
        assert_eq!(pct_decode("%G0"), None);
        assert_eq!(pct_decode("%4"), None);
    }
}
