//! Sparse offset and time indexes of a segment.
//!
//! Both files are arrays of 16-byte big-endian entries, each carrying its own CRC-32C so that a damaged
//! entry is recognised on its own:
//!
//! ```text
//! .index      rel_offset u32 | position u64 | crc32c u32   (crc over the first 12 bytes)
//! .timeindex  max_timestamp_ns i64 | rel_offset u32 | crc32c u32
//! ```
//!
//! An offset entry says "the record with offset `base + rel_offset` starts at byte `position`". A time entry
//! says "no record with offset ≤ `base + rel_offset` has a timestamp above `max_timestamp_ns`, and the record
//! at `rel_offset` is where that maximum was reached"; its timestamps never decrease even when record
//! timestamps do (Kafka's max-timestamp-so-far rule), which keeps time lookups correct for non-monotonic
//! timestamps.
//!
//! The index is a *verified hint*: readers check that the record found at an indexed position carries the
//! expected offset (and its CRC), and recovery validates or rebuilds the files from the log.

use std::fmt;

/// Size of one index entry on disk (both files).
pub const INDEX_ENTRY_LEN: usize = 16;

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Offset relative to the segment's base offset.
    pub rel: u32,
    /// Byte position of the record in the segment's log file.
    pub pos: u64,
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// Largest timestamp of any record up to and including `rel`.
    pub ts: i64,
    /// Relative offset of the record at which `ts` was reached.
    pub rel: u32,
}

/// What is wrong with an index file (reported by recovery when it rebuilds one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexProblem {
    /// The file does not exist.
    Missing,
    /// The file exists but could not be read.
    Unreadable(String),
    /// The length is not a multiple of the entry size.
    Misaligned {
        /// File length in bytes.
        len: u64,
    },
    /// An entry's CRC does not match (zero-filled or damaged entry).
    BadChecksum {
        /// Entry number.
        entry: usize,
    },
    /// Entries are not strictly increasing (offsets, positions) or timestamps decrease.
    OutOfOrder {
        /// Entry number.
        entry: usize,
    },
    /// An entry points past the end of the log data (or past the segment's offset range).
    PastEnd {
        /// Entry number.
        entry: usize,
    },
    /// An entry does not match the log (no record starts at its position, or the offset or timestamp differ).
    Mismatch {
        /// Entry number.
        entry: usize,
    },
}

impl fmt::Display for IndexProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexProblem::Missing => write!(f, "missing"),
            IndexProblem::Unreadable(e) => write!(f, "unreadable: {e}"),
            IndexProblem::Misaligned { len } => {
                write!(f, "length {len} is not a multiple of {INDEX_ENTRY_LEN}")
            }
            IndexProblem::BadChecksum { entry } => write!(f, "entry {entry} fails its checksum"),
            IndexProblem::OutOfOrder { entry } => write!(f, "entry {entry} is out of order"),
            IndexProblem::PastEnd { entry } => {
                write!(f, "entry {entry} points past the end of the log")
            }
            IndexProblem::Mismatch { entry } => write!(f, "entry {entry} does not match the log"),
        }
    }
}

fn entry_crc(first12: &[u8]) -> u32 {
    crc32c::crc32c(first12)
}

/// Encodes offset entries for the `.index` file.
pub(crate) fn encode_offsets(entries: &[OffsetEntry], out: &mut Vec<u8>) {
    out.reserve(entries.len() * INDEX_ENTRY_LEN);
    for e in entries {
        let start = out.len();
        out.extend_from_slice(&e.rel.to_be_bytes());
        out.extend_from_slice(&e.pos.to_be_bytes());
        let crc = entry_crc(&out[start..start + 12]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
}

/// Encodes time entries for the `.timeindex` file.
pub(crate) fn encode_times(entries: &[TimeEntry], out: &mut Vec<u8>) {
    out.reserve(entries.len() * INDEX_ENTRY_LEN);
    for e in entries {
        let start = out.len();
        out.extend_from_slice(&e.ts.to_be_bytes());
        out.extend_from_slice(&e.rel.to_be_bytes());
        let crc = entry_crc(&out[start..start + 12]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
}

/// Splits an index file into checked 12-byte payloads.
fn entries(bytes: &[u8]) -> Result<impl Iterator<Item = (usize, &[u8])>, IndexProblem> {
    if !bytes.len().is_multiple_of(INDEX_ENTRY_LEN) {
        return Err(IndexProblem::Misaligned {
            len: bytes.len() as u64,
        });
    }
    for (i, e) in bytes.chunks_exact(INDEX_ENTRY_LEN).enumerate() {
        let stored = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
        if entry_crc(&e[..12]) != stored {
            return Err(IndexProblem::BadChecksum { entry: i });
        }
    }
    Ok(bytes
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|e| &e[..12])
        .enumerate())
}

/// Parses and structurally validates an offset index: checksums, strictly increasing offsets and positions,
/// positions below `log_len` and relative offsets not above `max_rel`.
pub(crate) fn parse_offsets(
    bytes: &[u8],
    log_len: u64,
    max_rel: u32,
) -> Result<Vec<OffsetEntry>, IndexProblem> {
    let mut out: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / INDEX_ENTRY_LEN);
    for (i, e) in entries(bytes)? {
        let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let mut p = [0u8; 8];
        p.copy_from_slice(&e[4..12]);
        let pos = u64::from_be_bytes(p);
        if let Some(prev) = out.last()
            && (rel <= prev.rel || pos <= prev.pos)
        {
            return Err(IndexProblem::OutOfOrder { entry: i });
        }
        if pos >= log_len || rel > max_rel {
            return Err(IndexProblem::PastEnd { entry: i });
        }
        out.push(OffsetEntry { rel, pos });
    }
    Ok(out)
}

/// Parses and structurally validates a time index: checksums, strictly increasing relative offsets,
/// non-decreasing timestamps and relative offsets not above `max_rel`.
pub(crate) fn parse_times(bytes: &[u8], max_rel: u32) -> Result<Vec<TimeEntry>, IndexProblem> {
    let mut out: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / INDEX_ENTRY_LEN);
    for (i, e) in entries(bytes)? {
        let mut t = [0u8; 8];
        t.copy_from_slice(&e[..8]);
        let ts = i64::from_be_bytes(t);
        let rel = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
        if let Some(prev) = out.last()
            && (rel <= prev.rel || ts < prev.ts)
        {
            return Err(IndexProblem::OutOfOrder { entry: i });
        }
        if rel > max_rel {
            return Err(IndexProblem::PastEnd { entry: i });
        }
        out.push(TimeEntry { ts, rel });
    }
    Ok(out)
}

/// The in-memory index of one segment.
#[derive(Debug, Default, Clone)]
pub(crate) struct SegmentIndex {
    /// Offset entries, strictly increasing in `rel` and `pos`.
    pub offsets: Vec<OffsetEntry>,
    /// Time entries, strictly increasing in `rel`, non-decreasing in `ts`.
    pub times: Vec<TimeEntry>,
}

impl SegmentIndex {
    /// The last entry with `rel <= target_rel` and `pos < len_bound`, or the segment start.
    pub fn floor(&self, target_rel: u64, len_bound: u64) -> OffsetEntry {
        let idx = self
            .offsets
            .partition_point(|e| u64::from(e.rel) <= target_rel && e.pos < len_bound);
        match idx.checked_sub(1).and_then(|i| self.offsets.get(i)) {
            Some(e) => *e,
            None => OffsetEntry { rel: 0, pos: 0 },
        }
    }

    /// Relative offset after which a scan for the first timestamp `>= ts` may start: every record with a
    /// relative offset `<=` the returned value has a timestamp `< ts`.
    pub fn skip_before_time(&self, ts: i64) -> Option<u32> {
        let idx = self.times.partition_point(|e| e.ts < ts);
        idx.checked_sub(1)
            .and_then(|i| self.times.get(i))
            .map(|e| e.rel)
    }

    /// Drops entries at or beyond relative offset `rel` (used by truncation).
    pub fn truncate_from(&mut self, rel: u64) {
        self.offsets.retain(|e| u64::from(e.rel) < rel);
        self.times.retain(|e| u64::from(e.rel) < rel);
    }
}

/// Decides where index entries go while records are appended or scanned: an offset entry for a record
/// whenever at least `interval` bytes were written since the last entry (or the segment start), and a time
/// entry alongside it whenever the running maximum timestamp grew.
#[derive(Debug, Clone)]
pub(crate) struct IndexBuilder {
    /// Index interval in bytes.
    interval: u64,
    /// Position of the last offset entry (0 = segment start).
    last_entry_pos: u64,
    /// Timestamp of the last time entry (`i64::MIN` if none).
    last_time_ts: i64,
    /// Largest timestamp seen so far in the segment.
    pub max_ts: i64,
    /// Relative offset of the record holding `max_ts`.
    pub max_ts_rel: u32,
}

impl IndexBuilder {
    /// Starts a builder for a segment whose index currently is `index`, after records with maximum
    /// timestamp `max_ts` (at `max_ts_rel`).
    pub fn resume(interval: u64, index: &SegmentIndex, max_ts: i64, max_ts_rel: u32) -> Self {
        IndexBuilder {
            interval,
            last_entry_pos: index.offsets.last().map_or(0, |e| e.pos),
            last_time_ts: index.times.last().map_or(i64::MIN, |e| e.ts),
            max_ts,
            max_ts_rel,
        }
    }

    /// Accounts for a record at `pos` with relative offset `rel`; pushes the entries it earns.
    pub fn on_record(
        &mut self,
        rel: u32,
        pos: u64,
        ts: i64,
        offsets: &mut Vec<OffsetEntry>,
        times: &mut Vec<TimeEntry>,
    ) {
        if ts > self.max_ts {
            self.max_ts = ts;
            self.max_ts_rel = rel;
        }
        if pos >= self.last_entry_pos + self.interval {
            offsets.push(OffsetEntry { rel, pos });
            self.last_entry_pos = pos;
            if self.max_ts > self.last_time_ts {
                times.push(TimeEntry {
                    ts: self.max_ts,
                    rel: self.max_ts_rel,
                });
                self.last_time_ts = self.max_ts;
            }
        }
    }

    /// Entries that make a sealed segment self-describing: an offset entry for its last record (so its last
    /// offset is known without a scan) and a time entry for its maximum timestamp (so retention by age and
    /// time lookups are exact).
    pub fn seal_entries(
        &mut self,
        index: &SegmentIndex,
        last_rel: u32,
        last_pos: u64,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let off = match index.offsets.last() {
            Some(e) if e.rel >= last_rel => None,
            _ => Some(OffsetEntry {
                rel: last_rel,
                pos: last_pos,
            }),
        };
        let time = match index.times.last() {
            Some(e) if e.ts >= self.max_ts => None,
            _ if self.max_ts == i64::MIN => None,
            _ => Some(TimeEntry {
                ts: self.max_ts,
                rel: self.max_ts_rel,
            }),
        };
        if let Some(o) = off {
            self.last_entry_pos = o.pos;
        }
        if let Some(t) = time {
            self.last_time_ts = t.ts;
        }
        (off, time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_validate() {
        let e = vec![
            OffsetEntry { rel: 3, pos: 100 },
            OffsetEntry { rel: 9, pos: 5000 },
        ];
        let mut b = Vec::new();
        encode_offsets(&e, &mut b);
        assert_eq!(parse_offsets(&b, 6000, 20).unwrap(), e);
        assert_eq!(
            parse_offsets(&b, 5000, 20),
            Err(IndexProblem::PastEnd { entry: 1 })
        );
        assert_eq!(
            parse_offsets(&b, 6000, 8),
            Err(IndexProblem::PastEnd { entry: 1 })
        );
        assert_eq!(
            parse_offsets(&b[..20], 6000, 20),
            Err(IndexProblem::Misaligned { len: 20 })
        );
        let mut z = b.clone();
        z[16..].fill(0);
        assert_eq!(
            parse_offsets(&z, 6000, 20),
            Err(IndexProblem::BadChecksum { entry: 1 })
        );
        let mut rev = Vec::new();
        encode_offsets(&[e[1], e[0]], &mut rev);
        assert_eq!(
            parse_offsets(&rev, 6000, 20),
            Err(IndexProblem::OutOfOrder { entry: 1 })
        );
    }

    #[test]
    fn time_lookup_skips_only_older_records() {
        let idx = SegmentIndex {
            offsets: vec![],
            times: vec![
                TimeEntry { ts: 10, rel: 0 },
                TimeEntry { ts: 20, rel: 5 },
                TimeEntry { ts: 30, rel: 9 },
            ],
        };
        assert_eq!(idx.skip_before_time(5), None);
        assert_eq!(idx.skip_before_time(10), None);
        assert_eq!(idx.skip_before_time(11), Some(0));
        assert_eq!(idx.skip_before_time(30), Some(5));
        assert_eq!(idx.skip_before_time(31), Some(9));
    }

    #[test]
    fn floor_respects_length_bound() {
        let idx = SegmentIndex {
            offsets: vec![
                OffsetEntry { rel: 4, pos: 10 },
                OffsetEntry { rel: 8, pos: 20 },
            ],
            times: vec![],
        };
        assert_eq!(idx.floor(3, 100), OffsetEntry { rel: 0, pos: 0 });
        assert_eq!(idx.floor(9, 100), OffsetEntry { rel: 8, pos: 20 });
        assert_eq!(idx.floor(9, 20), OffsetEntry { rel: 4, pos: 10 });
    }

    #[test]
    fn builder_places_entries_by_interval() {
        let mut b = IndexBuilder::resume(100, &SegmentIndex::default(), i64::MIN, 0);
        let (mut o, mut t) = (Vec::new(), Vec::new());
        for i in 0..10u32 {
            b.on_record(i, u64::from(i) * 40, 100 - i64::from(i), &mut o, &mut t);
        }
        // Entries at positions >= 100 bytes apart: 120, 240, 360.
        assert_eq!(
            o.iter().map(|e| e.pos).collect::<Vec<_>>(),
            vec![120, 240, 360]
        );
        // Timestamps only decrease after the first record: one time entry with the max (100 at rel 0).
        assert_eq!(t, vec![TimeEntry { ts: 100, rel: 0 }]);
    }
}
