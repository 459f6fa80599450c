//! Fuzz the XMPP stream parser: nothing may panic, and feeding the input in small chunks must
//! give exactly the events and error that feeding it whole gives.
//!
//! Run with `cargo +nightly fuzz run stream_parser` from the repository root (needs
//! cargo-fuzz).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oriole::xml::parser::{parse_element, Limits, StreamEvent, StreamParser, XmlError};

const LIMITS: Limits = Limits {
    max_stanza_bytes: 512,
    max_depth: 8,
};

/// Feed `input` in pieces of `chunk` bytes, draining events after each piece.
fn run(input: &[u8], chunk: usize) -> (Vec<StreamEvent>, Option<XmlError>) {
    let mut parser = StreamParser::new(LIMITS);
    let mut events = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        if let Err(e) = parser.feed(piece) {
            return (events, Some(e));
        }
        loop {
            match parser.next_event() {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
        assert!(parser.buffered_len() <= LIMITS.max_stanza_bytes.max(16 * 1024));
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size; the rest is the stream.
    let Some((&k, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len());
    let chunked = run(input, usize::from(k % 16) + 1);
    assert_eq!(whole, chunked);
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = parse_element(text);
    }
});
