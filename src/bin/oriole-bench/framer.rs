//! Splits a server's XML stream into top-level elements (stanzas, features, SASL and TLS
//! nonzas) without building a tree: the load generator only needs the bytes of each element
//! and a few attributes, and must stay cheap enough never to be the bottleneck. It trusts the
//! server to send well-formed XML (it is a benchmark client, not a validator).

use std::ops::Range;

/// One thing read from the stream.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// The `<stream:stream …>` header.
    Header,
    /// A complete top-level element: its bytes in [`Framer::get`].
    Element(Range<usize>),
    /// `</stream:stream>`.
    End,
}

#[derive(Default)]
pub struct Framer {
    buf: Vec<u8>,
    scan: usize,
    depth: u32,
    start: usize,
    done: usize,
}

impl Framer {
    /// A framer expecting a stream header first.
    pub fn new() -> Self {
        Framer::default()
    }

    /// A framer already inside a stream (the relay reference sends bare stanzas).
    pub fn inside_stream() -> Self {
        Framer {
            depth: 1,
            ..Framer::default()
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.done > 0 {
            self.buf.drain(..self.done);
            self.scan -= self.done;
            self.start = self.start.saturating_sub(self.done);
            self.done = 0;
        }
        self.buf.extend_from_slice(data);
    }

    pub fn get(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// The next complete frame, or `None` until more bytes are fed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let lt = self.scan + self.buf[self.scan..].iter().position(|&b| b == b'<')?;
            let end = tag_end(&self.buf[lt..])? + lt;
            self.scan = end + 1;
            let tag = &self.buf[lt..=end];
            if tag.len() >= 2 && (tag[1] == b'?' || tag[1] == b'!') {
                if self.depth <= 1 {
                    self.done = self.scan;
                }
                continue;
            }
            if tag.len() >= 2 && tag[1] == b'/' {
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    0 => {
                        self.done = self.scan;
                        return Some(Frame::End);
                    }
                    1 => {
                        self.done = self.scan;
                        return Some(Frame::Element(self.start..self.scan));
                    }
                    _ => continue,
                }
            }
            let self_closing = tag.len() >= 2 && tag[tag.len() - 2] == b'/';
            match (self.depth, self_closing) {
                (0, _) => {
                    self.depth = 1;
                    self.done = self.scan;
                    return Some(Frame::Header);
                }
                (1, true) => {
                    self.done = self.scan;
                    return Some(Frame::Element(lt..self.scan));
                }
                (1, false) => {
                    self.start = lt;
                    self.depth = 2;
                }
                (_, true) => {}
                (_, false) => self.depth += 1,
            }
        }
    }
}

/// Index of the `>` ending the tag that starts at `b[0]`, skipping quoted attribute values.
fn tag_end(b: &[u8]) -> Option<usize> {
    let mut quote = 0u8;
    for (i, &c) in b.iter().enumerate().skip(1) {
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
        } else if c == b'\'' || c == b'"' {
            quote = c;
        } else if c == b'>' {
            return Some(i);
        }
    }
    None
}

/// The local name of an element (`stream:features` → `features`).
pub fn local_name(el: &[u8]) -> &[u8] {
    let end = el
        .iter()
        .position(|&c| {
            c == b' ' || c == b'>' || c == b'/' || c == b'\t' || c == b'\n' || c == b'\r'
        })
        .unwrap_or(el.len());
    let name = &el[1.min(end)..end];
    match name.iter().position(|&c| c == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// An attribute of the element's start tag.
pub fn attr<'a>(el: &'a [u8], name: &str) -> Option<&'a str> {
    let head_end = tag_end(el).unwrap_or(el.len());
    let head = &el[..head_end];
    let n = name.as_bytes();
    let mut i = 0;
    while i + n.len() + 2 < head.len() {
        if (head[i] == b' ' || head[i] == b'\t' || head[i] == b'\n')
            && &head[i + 1..i + 1 + n.len()] == n
            && head[i + 1 + n.len()] == b'='
        {
            let q = head[i + 2 + n.len()];
            let from = i + 3 + n.len();
            let len = head[from..].iter().position(|&c| c == q)?;
            return std::str::from_utf8(&head[from..from + len]).ok();
        }
        i += 1;
    }
    None
}

/// The text between the first `open` and the following `close`.
pub fn between<'a>(el: &'a [u8], open: &str, close: &str) -> Option<&'a [u8]> {
    let a = find(el, open.as_bytes())? + open.len();
    let b = find(&el[a..], close.as_bytes())? + a;
    Some(&el[a..b])
}

/// Text of the first element named `name` (any attributes), e.g. `<jid>…</jid>`.
pub fn child_text<'a>(el: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let open = format!("<{name}");
    let a = find(el, open.as_bytes())?;
    let gt = a + el[a..].iter().position(|&c| c == b'>')? + 1;
    let close = format!("</{name}>");
    let b = find(&el[gt..], close.as_bytes())? + gt;
    Some(&el[gt..b])
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(fr) = f.next_frame() {
            out.push(match fr {
                Frame::Header => "H".to_string(),
                Frame::End => "E".to_string(),
                Frame::Element(r) => String::from_utf8_lossy(f.get(r)).into_owned(),
            });
        }
        out
    }

    #[test]
    fn splits_stream_in_pieces() {
        let text = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' a=\"x>y\"><stream:features><bind/></stream:features><message to='a' b='>'><body>1 2</body></message><presence/></stream:stream>";
        // Feed byte by byte: every split point must work.
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in text.as_bytes() {
            f.feed(std::slice::from_ref(b));
            got.extend(all(&mut f));
        }
        assert_eq!(
            got,
            vec![
                "H",
                "<stream:features><bind/></stream:features>",
                "<message to='a' b='>'><body>1 2</body></message>",
                "<presence/>",
                "E"
            ]
        );
    }

    #[test]
    fn helpers() {
        let m = b"<message from='a@b/c' type=\"chat\"><body>17 x</body></message>";
        assert_eq!(local_name(m), b"message");
        assert_eq!(local_name(b"<stream:features>"), b"features");
        assert_eq!(attr(m, "type"), Some("chat"));
        assert_eq!(attr(m, "from"), Some("a@b/c"));
        assert_eq!(attr(m, "to"), None);
        assert_eq!(between(m, "<body>", "</body>"), Some(&b"17 x"[..]));
        assert_eq!(
            child_text(b"<iq><bind x='1'><jid>a@b/c</jid></bind></iq>", "jid"),
            Some(&b"a@b/c"[..])
        );
    }
}
