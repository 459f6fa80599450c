//! STUN messages (RFC 5389) with the TURN attributes (RFC 5766): parsing, building,
//! MESSAGE-INTEGRITY and FINGERPRINT, and the TURN REST shared-secret credentials. No I/O.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic cookie of every RFC 5389 message.
pub const MAGIC: u32 = 0x2112_A442;
const FINGERPRINT_XOR: u32 = 0x5354_554E;

pub const BINDING: u16 = 0x001;
pub const ALLOCATE: u16 = 0x003;
pub const REFRESH: u16 = 0x004;
pub const SEND: u16 = 0x006;
pub const DATA: u16 = 0x007;
pub const CREATE_PERMISSION: u16 = 0x008;
pub const CHANNEL_BIND: u16 = 0x009;

/// Message classes (RFC 5389 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// Comprehension-required attributes this server understands; any other one below 0x8000 in
/// a request gets 420 (RFC 5389 §7.3.1).
pub const KNOWN_REQUIRED: &[u16] = &[
    attr::MAPPED_ADDRESS,
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::UNKNOWN_ATTRIBUTES,
    attr::CHANNEL_NUMBER,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::REALM,
    attr::NONCE,
    attr::XOR_RELAYED_ADDRESS,
    attr::EVEN_PORT,
    attr::REQUESTED_TRANSPORT,
    attr::DONT_FRAGMENT,
    attr::XOR_MAPPED_ADDRESS,
];

/// A parsed STUN message. Attribute values are kept raw; `integrity_offset` is where the
/// MESSAGE-INTEGRITY attribute starts, for checking it against the bytes that precede it.
#[derive(Debug, Clone)]
pub struct Message {
    pub method: u16,
    pub class: Class,
    pub txid: [u8; 12],
    pub attrs: Vec<(u16, Vec<u8>)>,
    raw: Vec<u8>,
    integrity_offset: Option<usize>,
}

/// Whether a datagram looks like STUN (first two bits zero, magic cookie present).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] & 0xC0 == 0 && buf[4..8] == MAGIC.to_be_bytes()
}

fn class_bits(class: Class) -> u16 {
    match class {
        Class::Request => 0x0000,
        Class::Indication => 0x0010,
        Class::Success => 0x0100,
        Class::Error => 0x0110,
    }
}

fn message_type(method: u16, class: Class) -> u16 {
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class_bits(class)
}

impl Message {
    /// Parse one datagram; `None` for anything that is not a well-formed STUN message.
    pub fn parse(buf: &[u8]) -> Option<Message> {
        if !is_stun(buf) {
            return None;
        }
        let ty = u16::from_be_bytes([buf[0], buf[1]]);
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if len % 4 != 0 || buf.len() != 20 + len {
            return None;
        }
        let class = match ty & 0x0110 {
            0x0000 => Class::Request,
            0x0010 => Class::Indication,
            0x0100 => Class::Success,
            _ => Class::Error,
        };
        let method = (ty & 0x000F) | ((ty >> 1) & 0x0070) | ((ty >> 2) & 0x0F80);
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&buf[8..20]);
        let mut attrs = Vec::new();
        let mut integrity_offset = None;
        let mut pos = 20;
        while pos < buf.len() {
            let header = buf.get(pos..pos + 4)?;
            let at = u16::from_be_bytes([header[0], header[1]]);
            let alen = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let value = buf.get(pos + 4..pos + 4 + alen)?;
            if integrity_offset.is_some() && at != attr::FINGERPRINT {
                // Attributes after MESSAGE-INTEGRITY are ignored (RFC 5389 §15.4).
                break;
            }
            if at == attr::MESSAGE_INTEGRITY {
                integrity_offset = Some(pos);
            }
            attrs.push((at, value.to_vec()));
            pos += 4 + alen.div_ceil(4) * 4;
        }
        Some(Message {
            method,
            class,
            txid,
            attrs,
            raw: buf.to_vec(),
            integrity_offset,
        })
    }

    pub fn get(&self, at: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(t, _)| *t == at)
            .map(|(_, v)| v.as_slice())
    }

    pub fn get_all(&self, at: u16) -> impl Iterator<Item = &[u8]> {
        self.attrs
            .iter()
            .filter(move |(t, _)| *t == at)
            .map(|(_, v)| v.as_slice())
    }

    pub fn get_str(&self, at: u16) -> Option<&str> {
        self.get(at).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn get_u32(&self, at: u16) -> Option<u32> {
        let v = self.get(at)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// An XOR-encoded address attribute.
    pub fn get_xor_addr(&self, at: u16) -> Option<SocketAddr> {
        decode_xor_addr(self.get(at)?, &self.txid)
    }

    /// Comprehension-required attributes this server does not know.
    pub fn unknown_required(&self) -> Vec<u16> {
        self.attrs
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t < 0x8000 && !KNOWN_REQUIRED.contains(t))
            .collect()
    }

    /// Check MESSAGE-INTEGRITY with `key` (RFC 5389 §15.4). False when absent.
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        let Some(off) = self.integrity_offset else {
            return false;
        };
        let Some(given) = self.get(attr::MESSAGE_INTEGRITY) else {
            return false;
        };
        let mut head = self.raw[..off].to_vec();
        let len = (off - 20 + 24) as u16;
        head[2..4].copy_from_slice(&len.to_be_bytes());
        let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(key) else {
            return false;
        };
        mac.update(&head);
        mac.verify_slice(given).is_ok()
    }
}

pub fn decode_xor_addr(v: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    match v[1] {
        0x01 if v.len() == 8 => {
            let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        0x02 if v.len() == 20 => {
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC.to_be_bytes());
            mask[4..].copy_from_slice(txid);
            let mut ip = [0u8; 16];
            for i in 0..16 {
                ip[i] = v[4 + i] ^ mask[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

pub fn encode_xor_addr(addr: SocketAddr, txid: &[u8; 12]) -> Vec<u8> {
    let port = addr.port() ^ (MAGIC >> 16) as u16;
    let mut v = vec![0u8];
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.push(0x01);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            v.push(0x02);
            v.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC.to_be_bytes());
            mask[4..].copy_from_slice(txid);
            for (b, m) in ip.octets().iter().zip(mask) {
                v.push(b ^ m);
            }
        }
    }
    v
}

/// Builds a message attribute by attribute.
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    pub fn new(method: u16, class: Class, txid: &[u8; 12]) -> Builder {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC.to_be_bytes());
        buf.extend_from_slice(txid);
        Builder { buf }
    }

    pub fn attr(mut self, at: u16, value: &[u8]) -> Builder {
        self.buf.extend_from_slice(&at.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len().min(0xFFFF) as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = value.len().div_ceil(4) * 4 - value.len();
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self.set_len(self.buf.len() - 20);
        self
    }

    pub fn u32(self, at: u16, v: u32) -> Builder {
        self.attr(at, &v.to_be_bytes())
    }

    pub fn xor_addr(self, at: u16, addr: SocketAddr) -> Builder {
        let txid: [u8; 12] = self.buf[8..20].try_into().unwrap_or([0; 12]);
        self.attr(at, &encode_xor_addr(addr, &txid))
    }

    pub fn error(self, code: u16, reason: &str) -> Builder {
        let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &v)
    }

    fn set_len(&mut self, len: usize) {
        let len = (len as u16).to_be_bytes();
        self.buf[2..4].copy_from_slice(&len);
    }

    /// Append MESSAGE-INTEGRITY computed with `key`.
    pub fn integrity(mut self, key: &[u8]) -> Builder {
        self.set_len(self.buf.len() - 20 + 24);
        let digest = match <Hmac<Sha1> as Mac>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(&self.buf);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => vec![0; 20],
        };
        self.attr(attr::MESSAGE_INTEGRITY, &digest)
    }

    /// Append FINGERPRINT and return the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.set_len(self.buf.len() - 20 + 8);
        let crc = crc32(&self.buf) ^ FINGERPRINT_XOR;
        self.attr(attr::FINGERPRINT, &crc.to_be_bytes()).buf
    }

    /// The bytes without FINGERPRINT.
    pub fn finish_plain(self) -> Vec<u8> {
        self.buf
    }
}

/// CRC-32 (ISO-HDLC, the one FINGERPRINT uses).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// RFC 5389 §15.4 long-term credential key: MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    use md5::{Digest, Md5};
    Md5::digest(format!("{username}:{realm}:{password}").as_bytes()).to_vec()
}

/// TURN REST shared-secret password: base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &[u8], username: &str) -> String {
    use base64::Engine as _;
    let digest = match <Hmac<Sha1> as Mac>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// TURN REST username: "<expiry unix seconds>:<user>".
pub fn rest_username(expiry_unix: u64, user: &str) -> String {
    format!("{expiry_unix}:{user}")
}

/// The expiry of a TURN REST username, when it has one.
pub fn rest_expiry(username: &str) -> Option<u64> {
    username.split(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn rfc5769_sample_request_integrity() {
        // RFC 5769 §2.1: short-term credential, password "VOkJxbRl1RmTxUk/WvJxBt".
        let hex = concat!(
            "000100582112a442b7e7a701bc34d686fa87dfae",
            "802200105354554e207465737420636c69656e74",
            "002400046e0001ff80290008932ff9b151263b36",
            "000600096576746a3a68367659202020",
            "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2",
            "80280004e57a3bcf"
        );
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let m = Message::parse(&bytes).expect("parses");
        assert_eq!(m.method, BINDING);
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.get_str(attr::USERNAME), Some("evtj:h6vY"));
        assert!(m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!m.check_integrity(b"wrong"));
        // The builder reproduces the same fingerprint over the same bytes.
        let fp = m.get_u32(attr::FINGERPRINT).unwrap();
        let body = &bytes[..bytes.len() - 8];
        let mut head = body.to_vec();
        head[2..4].copy_from_slice(&((bytes.len() - 20) as u16).to_be_bytes());
        assert_eq!(crc32(&head) ^ FINGERPRINT_XOR, fp);
    }

    #[test]
    fn xor_address_round_trip_and_rfc5769_response() {
        let txid = [1u8; 12];
        for a in [
            "192.0.2.1:32853",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(
                decode_xor_addr(&encode_xor_addr(addr, &txid), &txid),
                Some(addr)
            );
        }
        // RFC 5769 §2.2: X-Port 0xa147 X-Address 0xe112a643 -> 192.0.2.1:32853.
        let v = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        assert_eq!(
            decode_xor_addr(&v, &txid),
            Some("192.0.2.1:32853".parse().unwrap())
        );
    }

    #[test]
    fn builder_output_parses_and_verifies() {
        let txid = [7u8; 12];
        let key = long_term_key("u", "r", "p");
        let bytes = Builder::new(ALLOCATE, Class::Success, &txid)
            .u32(attr::LIFETIME, 600)
            .attr(attr::SOFTWARE, b"x")
            .integrity(&key)
            .finish();
        let m = Message::parse(&bytes).unwrap();
        assert_eq!((m.method, m.class), (ALLOCATE, Class::Success));
        assert_eq!(m.get_u32(attr::LIFETIME), Some(600));
        assert!(m.check_integrity(&key));
        for method in [
            BINDING,
            ALLOCATE,
            REFRESH,
            SEND,
            DATA,
            CREATE_PERMISSION,
            CHANNEL_BIND,
        ] {
            for class in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                let m = Message::parse(&Builder::new(method, class, &txid).finish_plain()).unwrap();
                assert_eq!((m.method, m.class), (method, class));
            }
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Message::parse(&[0u8; 19]).is_none());
        let mut b = Builder::new(BINDING, Class::Request, &[0; 12]).finish_plain();
        b[2] = 0;
        b[3] = 4; // length says 4 but nothing follows
        assert!(Message::parse(&b).is_none());
        let mut b = Builder::new(BINDING, Class::Request, &[0; 12])
            .attr(attr::SOFTWARE, b"abcd")
            .finish_plain();
        b[22] = 0;
        b[23] = 200; // attribute longer than the message
        assert!(Message::parse(&b).is_none());
    }

    #[test]
    fn rest_credentials() {
        let u = rest_username(1_700_000_000, "alice@example.org");
        assert_eq!(u, "1700000000:alice@example.org");
        assert_eq!(rest_expiry(&u), Some(1_700_000_000));
        // HMAC-SHA1("secret", u), checked with `openssl dgst -sha1 -hmac secret -binary | base64`.
        assert_eq!(rest_password(b"secret", &u), "ilWZzF8c6jFH+3PGJYYE0l3dlMI=");
    }
}
