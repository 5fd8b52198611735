//! The stamp in every payload (publisher id and sequence number) and the check that messages came back
//! complete and in order.

use std::collections::HashMap;

use bytes::Bytes;

/// Bytes of the stamp: publisher id (u32, big-endian) then sequence number (u64, big-endian).
pub const STAMP_LEN: usize = 12;

/// A payload of `size` bytes for message `seq` of `publisher`: the stamp, then `x` filler. Payloads shorter than
/// the stamp are filler only (and cannot be checked on the way back).
pub fn stamped(size: usize, publisher: u32, seq: u64) -> Bytes {
    let mut v = vec![b'x'; size];
    if size >= STAMP_LEN {
        v[..4].copy_from_slice(&publisher.to_be_bytes());
        v[4..STAMP_LEN].copy_from_slice(&seq.to_be_bytes());
    }
    Bytes::from(v)
}

/// Reads a stamp back.
pub fn read_stamp(payload: &[u8]) -> Option<(u32, u64)> {
    let publisher = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
    let seq = u64::from_be_bytes(payload.get(4..STAMP_LEN)?.try_into().ok()?);
    Some((publisher, seq))
}

/// Watches messages read back: per partition and publisher the sequence numbers must rise, and per partition
/// the offsets (when known) must follow each other without a gap.
#[derive(Debug, Default)]
pub struct OrderCheck {
    last_seq: HashMap<(i32, u32), u64>,
    last_offset: HashMap<i32, i64>,
    received: u64,
    unstamped: u64,
    violations: u64,
    first_violation: Option<String>,
}

impl OrderCheck {
    /// A check that has seen nothing.
    pub fn new() -> Self {
        OrderCheck::default()
    }

    /// Records one message.
    pub fn observe(&mut self, partition: i32, offset: Option<i64>, payload: &[u8]) {
        self.received += 1;
        if let Some(offset) = offset
            && let Some(prev) = self.last_offset.insert(partition, offset)
            && offset != prev + 1
        {
            self.violation(format!(
                "partition {partition}: offset {offset} after {prev}"
            ));
        }
        match read_stamp(payload) {
            Some((publisher, seq)) => {
                if let Some(prev) = self.last_seq.insert((partition, publisher), seq)
                    && seq <= prev
                {
                    self.violation(format!(
                        "partition {partition}, publisher {publisher}: sequence {seq} after {prev}"
                    ));
                }
            }
            None => self.unstamped += 1,
        }
    }

    fn violation(&mut self, what: String) {
        self.violations += 1;
        self.first_violation.get_or_insert(what);
    }

    /// Messages seen.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Order violations seen.
    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// The first violation, described.
    pub fn first_violation(&self) -> Option<&str> {
        self.first_violation.as_deref()
    }

    /// `Some(true)` when every message was stamped and in order, `None` when payloads were too short to check.
    pub fn in_order(&self) -> Option<bool> {
        if self.unstamped > 0 && self.violations == 0 {
            None
        } else {
            Some(self.violations == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let p = stamped(128, 7, 123_456_789);
        assert_eq!(p.len(), 128);
        assert_eq!(read_stamp(&p), Some((7, 123_456_789)));
        assert_eq!(read_stamp(&stamped(8, 1, 1)), None);
    }

    #[test]
    fn finds_reordering_and_gaps() {
        let mut c = OrderCheck::new();
        c.observe(0, Some(0), &stamped(16, 0, 0));
        c.observe(0, Some(1), &stamped(16, 0, 1));
        assert_eq!(c.in_order(), Some(true));
        c.observe(0, Some(3), &stamped(16, 0, 2));
        c.observe(0, Some(4), &stamped(16, 0, 2));
        assert_eq!(c.violations(), 2);
        assert_eq!(c.in_order(), Some(false));
        assert_eq!(c.received(), 4);
    }
}
