//! A segment: one `.log` file of framed records plus its in-memory sparse index.
//!
//! Readers share segments through `Arc<Segment>` and read with positioned reads, so a segment that retention
//! or compaction unlinks stays readable for as long as a reader holds it. The mutable parts readers look at
//! are atomics (`len`, `next_offset`, `max_ts`) and a briefly held `RwLock` around the in-memory index; the
//! writer publishes `len` last (release) so that a reader never reads bytes that are not fully written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;

use super::error::{LogError, Result};
use super::file::{LogFile, read_full_at};
use super::index::SegmentIndex;
use super::record::{BodyLayout, FrameError, RecordHeader, check_record};

/// Suffix of segment data files.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Suffix of files being written by compaction (deleted by recovery when left behind).
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix Liftbridge uses for truncation copies (deleted by recovery when left behind).
pub const TRUNCATED_SUFFIX: &str = ".truncated";

/// Largest chunk a reader reads with one `pread`.
pub(crate) const MAX_CHUNK: usize = 8 * 1024 * 1024;

/// File name stem of a segment: its base offset as 20 decimal digits.
pub(crate) fn stem(base: u64) -> String {
    format!("{base:020}")
}

/// The three paths of a segment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentPaths {
    /// `<base>.log`
    pub log: PathBuf,
    /// `<base>.index`
    pub index: PathBuf,
    /// `<base>.timeindex`
    pub time: PathBuf,
}

impl SegmentPaths {
    /// Paths of the segment with `base` in `dir`.
    pub fn new(dir: &Path, base: u64) -> Self {
        let s = stem(base);
        SegmentPaths {
            log: dir.join(format!("{s}{LOG_SUFFIX}")),
            index: dir.join(format!("{s}{INDEX_SUFFIX}")),
            time: dir.join(format!("{s}{TIME_INDEX_SUFFIX}")),
        }
    }
}

/// What a visitor does with the record it was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Consume it and continue.
    Next,
    /// Consume it and stop.
    Done,
    /// Stop without consuming it.
    StopBefore,
}

/// One segment shared by the writer and readers.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset the segment is named after; every record in it has an offset `>=` this.
    pub base: u64,
    /// File paths.
    pub paths: SegmentPaths,
    /// The open `.log` file.
    pub file: Arc<dyn LogFile>,
    /// Bytes of complete, valid records (readers never read past it).
    len: AtomicU64,
    /// Offset after the last record in this segment (`base` when empty).
    next_offset: AtomicU64,
    /// Largest record timestamp (`i64::MIN` when empty).
    max_ts: AtomicI64,
    /// Wall-clock time (ns since the epoch) of the first write into this segment, `i64::MIN` when empty or
    /// unknown; drives roll by age.
    first_write: AtomicI64,
    /// Sparse offset and time index.
    pub index: RwLock<SegmentIndex>,
}

/// The values a segment is created with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentState {
    /// Valid bytes.
    pub len: u64,
    /// Offset after the last record.
    pub next_offset: u64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// Wall-clock time of the first write (`i64::MIN` when empty or unknown).
    pub first_write: i64,
}

impl SegmentState {
    /// State of an empty segment.
    pub fn empty(base: u64) -> Self {
        SegmentState {
            len: 0,
            next_offset: base,
            max_ts: i64::MIN,
            first_write: i64::MIN,
        }
    }
}

impl Segment {
    /// Wraps an open file.
    pub fn new(
        base: u64,
        paths: SegmentPaths,
        file: Arc<dyn LogFile>,
        state: SegmentState,
        index: SegmentIndex,
    ) -> Self {
        Segment {
            base,
            paths,
            file,
            len: AtomicU64::new(state.len),
            next_offset: AtomicU64::new(state.next_offset),
            max_ts: AtomicI64::new(state.max_ts),
            first_write: AtomicI64::new(state.first_write),
            index: RwLock::new(index),
        }
    }

    /// Bytes readers may read.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the segment holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    /// Largest record timestamp (`i64::MIN` when empty).
    pub fn max_ts(&self) -> i64 {
        self.max_ts.load(Ordering::Acquire)
    }

    /// Wall-clock time of the first write (`i64::MIN` when empty or unknown).
    pub fn first_write(&self) -> i64 {
        self.first_write.load(Ordering::Acquire)
    }

    /// Publishes appended records (writer only). `len` is stored last so that readers that see it also see
    /// the bytes and the other fields.
    pub fn publish_append(&self, new_len: u64, next_offset: u64, batch_max_ts: i64, now_ns: i64) {
        self.max_ts.fetch_max(batch_max_ts, Ordering::AcqRel);
        if self.first_write.load(Ordering::Acquire) == i64::MIN {
            self.first_write.store(now_ns, Ordering::Release);
        }
        self.next_offset.store(next_offset, Ordering::Release);
        self.len.store(new_len, Ordering::Release);
    }

    /// Resets the published state after a truncation (writer only).
    pub fn publish_truncate(&self, state: SegmentState) {
        self.len.store(state.len, Ordering::Release);
        self.next_offset.store(state.next_offset, Ordering::Release);
        self.max_ts.store(state.max_ts, Ordering::Release);
        self.first_write.store(state.first_write, Ordering::Release);
    }

    /// Reads up to `n` bytes at `pos` (fewer only if the file is shorter: it was truncated meanwhile), reusing
    /// `scratch`'s allocation when no earlier chunk cut from it is still alive (avoids fresh pages — and their
    /// page faults — on every read).
    pub fn read_chunk_into(&self, pos: u64, n: usize, scratch: &mut BytesMut) -> Result<Bytes> {
        scratch.clear();
        scratch.reserve(n);
        scratch.resize(n, 0);
        let got = read_full_at(self.file.as_ref(), &mut scratch[..], pos)
            .map_err(|e| LogError::io("read segment", &self.paths.log, e))?;
        scratch.truncate(got);
        Ok(scratch.split().freeze())
    }

    /// Visits the valid records in `[pos, end)`, reading `chunk` bytes at a time. Returns the position after
    /// the last consumed record. A record failing its checks is a [`LogError::Corrupt`]; a file that is
    /// shorter than `end` (truncated concurrently) ends the visit early.
    pub fn visit(
        &self,
        pos: u64,
        end: u64,
        chunk: usize,
        f: impl FnMut(&Bytes, usize, u64, &RecordHeader, &BodyLayout) -> Step,
    ) -> Result<u64> {
        self.visit_with(&mut BytesMut::new(), pos, end, chunk, f)
    }

    /// [`Segment::visit`] reading into `scratch` (see [`Segment::read_chunk_into`]).
    pub fn visit_with(
        &self,
        scratch: &mut BytesMut,
        mut pos: u64,
        end: u64,
        chunk: usize,
        mut f: impl FnMut(&Bytes, usize, u64, &RecordHeader, &BodyLayout) -> Step,
    ) -> Result<u64> {
        let mut want = chunk.clamp(4096, MAX_CHUNK);
        while pos < end {
            let n = usize::try_from(end - pos).unwrap_or(usize::MAX).min(want);
            let buf = self.read_chunk_into(pos, n, scratch)?;
            if buf.is_empty() {
                return Ok(pos);
            }
            let mut at = 0usize;
            while at < buf.len() {
                let rpos = pos + at as u64;
                match check_record(&buf[at..]) {
                    Ok((h, l)) => {
                        let total = h.total_len();
                        match f(&buf, at, rpos, &h, &l) {
                            Step::Next => at += total,
                            Step::Done => return Ok(rpos + total as u64),
                            Step::StopBefore => return Ok(rpos),
                        }
                    }
                    Err(FrameError::Incomplete { needed }) => {
                        if buf.len() < n {
                            // The file ended early: it was truncated under us.
                            return Ok(rpos);
                        }
                        if rpos + needed as u64 > end {
                            return Err(LogError::corrupt(
                                &self.paths.log,
                                rpos,
                                "record extends past the end of the segment data",
                            ));
                        }
                        want = want.max(needed);
                        break;
                    }
                    Err(FrameError::Corrupt(reason)) => {
                        return Err(LogError::corrupt(&self.paths.log, rpos, reason));
                    }
                }
            }
            pos += at as u64;
        }
        Ok(pos)
    }
}
