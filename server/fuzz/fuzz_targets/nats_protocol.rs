//! Feeds arbitrary bytes to the embedded broker's client-protocol parser, the way a connection does: parse an
//! operation, consume it, repeat. The parser must never panic, never claim more bytes than it was given, and
//! always make progress.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liftbridge_server::broker::protocol::{Limits, Parsed, parse};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_control_line: 4096, max_payload: 1 << 20 };
    let mut rest = data;
    while let Ok(Parsed::Op { len, .. }) = parse(rest, &limits) {
        assert!(len > 0 && len <= rest.len(), "an operation consumes some of the input and no more");
        rest = &rest[len..];
    }
});
