//! The parts of SASLprep (RFC 4013, a profile of stringprep, RFC 3454) that the server
//! applies to SASL usernames and passwords, plus the SCRAM `saslname` escaping of RFC 5802
//! §5.1.
//!
//! Applied: the mapping steps (RFC 3454 table B.1 "commonly mapped to nothing" is removed,
//! table C.1.2 non-ASCII spaces become U+0020) and, for usernames, the prohibited-output
//! check (control characters, private use, non-characters, surrogates cannot occur in a
//! `str`, change-display and tagging characters).
//!
//! Not applied: NFKC normalisation (it needs the Unicode tables, which the crate does not
//! carry). For ASCII input, and for input that is already in NFKC, the result is identical
//! to SASLprep. Usernames are normalised further by the caller (as a JID localpart), and
//! passwords are prepared identically when credentials are derived and when PLAIN
//! passwords are checked, so the server is consistent with itself; only a SCRAM client that
//! NFKC-normalises a password that is not already in NFKC would derive different keys.

use std::borrow::Cow;

/// RFC 3454 table B.1: characters commonly mapped to nothing.
fn mapped_to_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{1806}'
            | '\u{180B}'..='\u{180D}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
    )
}

/// RFC 3454 table C.1.2: non-ASCII space characters (U+200B is in B.1 and removed first).
fn non_ascii_space(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// Characters SASLprep prohibits in its output (RFC 4013 §2.3) that we check for.
fn prohibited(c: char) -> bool {
    c.is_control() // C.2.1 and the C0/C1 part of C.2.2
        || matches!(
            c,
            '\u{06DD}' | '\u{070F}' | '\u{180E}' | '\u{2028}' | '\u{2029}' // C.2.2
                | '\u{2061}'..='\u{2063}' | '\u{FFF9}'..='\u{FFFC}'          // C.2.2
                | '\u{1D173}'..='\u{1D17A}'                                 // C.2.2
                | '\u{E000}'..='\u{F8FF}'                                   // C.3
                | '\u{F0000}'..='\u{FFFFD}'                                 // C.3
                | '\u{100000}'..='\u{10FFFD}'                               // C.3
                | '\u{FDD0}'..='\u{FDEF}'                                   // C.4
                | '\u{FFFE}'..='\u{FFFF}'                                   // C.4
                | '\u{FFFD}'                                               // C.6
                | '\u{2FF0}'..='\u{2FFB}'                                   // C.7
                | '\u{0340}' | '\u{0341}' | '\u{200E}' | '\u{200F}'        // C.8
                | '\u{202A}'..='\u{202E}' | '\u{206A}'..='\u{206F}'        // C.8
                | '\u{E0001}' | '\u{E0020}'..='\u{E007F}'                  // C.9
        )
        || (c as u32 & 0xFFFE) == 0xFFFE // C.4: the last two code points of every plane
}

/// The SASLprep mapping steps: remove B.1 characters, turn non-ASCII spaces into U+0020.
fn map(input: &str) -> Cow<'_, str> {
    if input.is_ascii() {
        return Cow::Borrowed(input);
    }
    Cow::Owned(
        input
            .chars()
            .filter(|&c| !mapped_to_nothing(c))
            .map(|c| if non_ascii_space(c) { ' ' } else { c })
            .collect(),
    )
}

/// Prepare a password before key derivation: the SASLprep mapping steps only. Prohibited
/// characters are not refused here (a password containing them simply never matches what a
/// conforming client derives), so that deriving credentials cannot fail.
pub fn prepare_password(password: &str) -> Cow<'_, str> {
    map(password)
}

/// Prepare an authentication identity (username): the mapping steps, then refuse an empty
/// result or prohibited characters. `None` means the name is unacceptable.
pub fn prepare_username(name: &str) -> Option<String> {
    let mapped = map(name);
    if mapped.is_empty() || mapped.chars().any(prohibited) {
        return None;
    }
    Some(mapped.into_owned())
}

/// Decode a SCRAM `saslname` (RFC 5802 §5.1): `=2C` stands for ',' and `=3D` for '='; any
/// other '=' is an error, as are an empty name, ',' and NUL.
pub fn decode_saslname(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find(['=', ',', '\0']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_escapes() {
        assert_eq!(decode_saslname("user").as_deref(), Some("user"));
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("=3D=3D").as_deref(), Some("=="));
        assert_eq!(decode_saslname(""), None);
        assert_eq!(decode_saslname("a=2"), None);
        assert_eq!(decode_saslname("a=2c"), None);
        assert_eq!(decode_saslname("a=41"), None);
        assert_eq!(decode_saslname("a="), None);
        assert_eq!(decode_saslname("a,b"), None);
        assert_eq!(decode_saslname("a\0b"), None);
        assert_eq!(decode_saslname("é=2C").as_deref(), Some("é,"));
    }

    #[test]
    fn username_mapping_and_prohibition() {
        assert_eq!(prepare_username("alice").as_deref(), Some("alice"));
        assert_eq!(prepare_username("al\u{00AD}ice").as_deref(), Some("alice"));
        assert_eq!(prepare_username("a\u{00A0}b").as_deref(), Some("a b"));
        assert_eq!(prepare_username("\u{00AD}"), None);
        assert_eq!(prepare_username(""), None);
        assert_eq!(prepare_username("a\u{0007}b"), None);
        assert_eq!(prepare_username("a\u{007F}"), None);
        assert_eq!(prepare_username("a\u{E000}"), None);
        assert_eq!(prepare_username("a\u{202E}"), None);
        assert_eq!(prepare_username("a\u{1FFFF}"), None);
        assert_eq!(prepare_username("jürgen").as_deref(), Some("jürgen"));
    }

    #[test]
    fn password_mapping() {
        assert_eq!(prepare_password("pencil"), "pencil");
        assert_eq!(prepare_password("I\u{00AD}X"), "IX");
        assert_eq!(prepare_password("a\u{2003}b"), "a b");
        assert!(matches!(prepare_password("ascii only"), Cow::Borrowed(_)));
    }
}
