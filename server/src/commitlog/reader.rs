//! Reading: sequential [`Reader`], newest-first [`ReverseReader`], async [`TailReader`], raw record bytes
//! for followers and timestamp lookup.
//!
//! Readers never take the write lock: they clone the `Arc` list of segments, look up the sparse index under
//! a briefly held read lock, and read with positioned reads. Records are zero-copy slices of one read
//! buffer per chunk, and every record is CRC-checked before it is returned.
//!
//! The index is a hint that is verified: the first record read at an indexed position must carry the
//! indexed offset, otherwise the read restarts from the beginning of the segment (and a warning is logged).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::error::{LogError, Result};
use super::record::{Record, build_record};
use super::segment::{MAX_CHUNK, Segment, Step};
use super::{Log, LogPosition};

/// Index of the segment that may hold `offset` (the first segment for offsets below the oldest).
fn locate(segs: &[Arc<Segment>], offset: u64) -> usize {
    segs.partition_point(|s| s.base <= offset).saturating_sub(1)
}

/// Chunk size for reading about `want` bytes of records after skipping up to one index interval.
fn chunk_for(want: usize, interval: u64) -> usize {
    want.saturating_add(usize::try_from(interval).unwrap_or(MAX_CHUNK))
        .saturating_add(1024)
        .clamp(4096, MAX_CHUNK)
}

/// Maps a corruption seen while the log was being truncated to [`LogError::Truncated`]: the bytes changed
/// under the reader, they are not damaged.
fn explain(log: &Log, err: LogError, generation: u64, position: u64) -> LogError {
    let inner = &log.inner;
    if err.is_corruption() && inner.generation.load(Ordering::Acquire) != generation {
        let end = inner
            .truncated_since(generation)
            .unwrap_or(inner.end_offset.load(Ordering::Acquire));
        return LogError::Truncated {
            position,
            end_offset: end,
        };
    }
    err
}

/// Reads records of `seg` from the index position for `offset`, verifying the hint: calls `visit` and, if
/// the indexed position turns out wrong, retries from the segment start. Returns the position after the
/// last consumed record.
fn visit_from_index(
    seg: &Segment,
    scratch: &mut BytesMut,
    offset: u64,
    end: u64,
    chunk: usize,
    mut f: impl FnMut(
        &Bytes,
        usize,
        u64,
        &super::record::RecordHeader,
        &super::record::BodyLayout,
    ) -> Step,
) -> Result<u64> {
    let entry = seg.index.read().floor(offset.saturating_sub(seg.base), end);
    if entry.pos > 0 {
        let expected = seg.base + u64::from(entry.rel);
        let mut first = true;
        let mut mismatch = false;
        let r = seg.visit_with(scratch, entry.pos, end, chunk, |b, at, p, h, l| {
            if first {
                first = false;
                if h.offset != expected {
                    mismatch = true;
                    return Step::StopBefore;
                }
            }
            f(b, at, p, h, l)
        });
        match r {
            Ok(p) if !mismatch => return Ok(p),
            Ok(_) | Err(LogError::Corrupt { .. }) => {
                tracing::warn!(path = %seg.paths.index.display(), entry = ?entry, "index entry does not match the log; reading the segment from its start");
            }
            Err(e) => return Err(e),
        }
    }
    seg.visit_with(scratch, 0, end, chunk, f)
}

/// A sequential reader. It remembers the segment and byte position it stopped at, so consecutive batches
/// need no index lookup.
#[derive(Debug)]
pub struct Reader {
    /// The log read from.
    log: Log,
    /// Next offset to return.
    next_offset: u64,
    /// Segment and byte position where the record with `next_offset` (or the next one) starts.
    cursor: Option<(Arc<Segment>, u64)>,
    /// Truncation generation the cursor is valid for.
    generation: u64,
}

impl Reader {
    pub(crate) fn new(log: Log, start_offset: u64) -> Self {
        let generation = log.inner.generation.load(Ordering::Acquire);
        Reader {
            log,
            next_offset: start_offset,
            cursor: None,
            generation,
        }
    }

    /// The next offset this reader will return (or skip forward from).
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Moves the reader to `offset`.
    pub fn seek(&mut self, offset: u64) {
        self.next_offset = offset;
        self.cursor = None;
        self.generation = self.log.inner.generation.load(Ordering::Acquire);
    }

    /// Reads the next records with offsets below `limit_offset`, about `max_bytes` of them (at least one
    /// record if any is available). Empty when the reader is at the end (or at `limit_offset`).
    pub fn read_batch(&mut self, max_bytes: usize, limit_offset: u64) -> Result<Vec<Record>> {
        let generation = self.log.inner.generation.load(Ordering::Acquire);
        let mut scratch = self.log.inner.take_buffer();
        let res = self.read_inner(&mut scratch, max_bytes, limit_offset, generation);
        self.log.inner.give_buffer(scratch);
        res.map_err(|e| explain(&self.log, e, generation, self.next_offset))
    }

    fn read_inner(
        &mut self,
        scratch: &mut BytesMut,
        max_bytes: usize,
        limit: u64,
        generation: u64,
    ) -> Result<Vec<Record>> {
        let inner = &self.log.inner;
        let snap = inner.snapshot();
        if generation != self.generation {
            self.cursor = None;
            self.generation = generation;
        }
        let mut out = Vec::new();
        if self.next_offset >= limit || snap.is_empty() {
            return Ok(out);
        }
        let interval = inner.config.index_interval_bytes;
        // Where to start: the remembered cursor if its segment is still current, else an index lookup.
        let cached = self.cursor.as_ref().and_then(|(seg, pos)| {
            snap.iter()
                .position(|s| Arc::ptr_eq(s, seg))
                .map(|i| (i, *pos))
        });
        let (mut idx, mut pos) = match cached {
            Some(c) => c,
            None => (locate(&snap, self.next_offset), u64::MAX),
        };
        let mut used = 0usize;
        let mut next = self.next_offset;
        while let Some(seg) = snap.get(idx) {
            let len = seg.len();
            let mut done = false;
            let from = next;
            let chunk = chunk_for(max_bytes.saturating_sub(used), interval);
            let mut visitor = |buf: &Bytes,
                               at: usize,
                               _p: u64,
                               h: &super::record::RecordHeader,
                               l: &super::record::BodyLayout| {
                if h.offset < next {
                    return Step::Next;
                }
                if h.offset >= limit {
                    done = true;
                    return Step::StopBefore;
                }
                let size = h.total_len();
                if !out.is_empty() && used.saturating_add(size) > max_bytes {
                    done = true;
                    return Step::StopBefore;
                }
                out.push(build_record(buf, at, h, l));
                used += size;
                next = h.offset + 1;
                if used >= max_bytes {
                    done = true;
                    Step::Done
                } else {
                    Step::Next
                }
            };
            let visited = if pos == u64::MAX {
                visit_from_index(seg, scratch, from, len, chunk, &mut visitor)
            } else if pos < len {
                seg.visit_with(scratch, pos, len, chunk, &mut visitor)
            } else {
                Ok(pos)
            };
            pos = match visited {
                Ok(p) => p,
                // Return the valid records before the damage; the next call reports it.
                Err(e) if e.is_corruption() && !out.is_empty() => {
                    self.cursor = None;
                    self.next_offset = next;
                    return Ok(out);
                }
                Err(e) => return Err(e),
            };
            if done || idx + 1 >= snap.len() {
                break;
            }
            idx += 1;
            pos = 0;
        }
        if let Some(seg) = snap.get(idx) {
            self.cursor = Some((seg.clone(), pos.min(seg.len())));
        }
        self.next_offset = next;
        Ok(out)
    }
}

/// Reads from newest to oldest.
#[derive(Debug)]
pub struct ReverseReader {
    /// The log read from.
    log: Log,
    /// The next (largest) offset to return; `None` once the oldest record was returned.
    upper: Option<u64>,
}

impl ReverseReader {
    pub(crate) fn new(log: Log, start_offset: u64) -> Self {
        let newest = log.newest_offset();
        let upper = (newest >= 0).then(|| start_offset.min(newest as u64));
        ReverseReader { log, upper }
    }

    /// The next offset this reader will look at (going down), `None` when exhausted.
    pub fn next_offset(&self) -> Option<u64> {
        self.upper
    }

    /// The next batch, newest first: about `max_bytes` of records (at least one), empty when exhausted.
    pub fn next_batch(&mut self, max_bytes: usize) -> Result<Vec<Record>> {
        let generation = self.log.inner.generation.load(Ordering::Acquire);
        let pos = self.upper.unwrap_or(0);
        let mut scratch = self.log.inner.take_buffer();
        let res = self.next_inner(&mut scratch, max_bytes);
        self.log.inner.give_buffer(scratch);
        res.map_err(|e| explain(&self.log, e, generation, pos))
    }

    fn next_inner(&mut self, scratch: &mut BytesMut, max_bytes: usize) -> Result<Vec<Record>> {
        let mut out: Vec<Record> = Vec::new();
        let Some(mut upper) = self.upper else {
            return Ok(out);
        };
        let snap = self.log.inner.snapshot();
        let Some(first) = snap.first() else {
            return Ok(out);
        };
        if upper < first.base {
            self.upper = None;
            return Ok(out);
        }
        let mut idx = locate(&snap, upper);
        let mut used = 0usize;
        let mut exhausted = false;
        'segments: while let Some(seg) = snap.get(idx) {
            let len = seg.len();
            // End of the last record <= upper, found by scanning from the (verified) index floor.
            let mut hi = 0u64;
            visit_from_index(seg, scratch, upper, len, 64 * 1024, |_, _, p, h, _| {
                if h.offset <= upper {
                    hi = p + h.total_len() as u64;
                    Step::Next
                } else {
                    Step::StopBefore
                }
            })?;
            while hi > 0 {
                let remaining = max_bytes.saturating_sub(used).max(1) as u64;
                let entry = {
                    let index = seg.index.read();
                    let target = hi.saturating_sub(remaining);
                    let i = index.offsets.partition_point(|e| e.pos <= target);
                    i.checked_sub(1).and_then(|i| index.offsets.get(i)).copied()
                };
                let mut lo = entry.map_or(0, |e| e.pos);
                let expect = entry.map(|e| seg.base + u64::from(e.rel));
                let piece = match collect_piece(seg, scratch, lo, hi, upper, expect) {
                    Ok(Some(p)) => p,
                    Ok(None) | Err(LogError::Corrupt { .. }) if lo > 0 => {
                        tracing::warn!(path = %seg.paths.index.display(), "index entry does not match the log; re-reading the segment from its start");
                        lo = 0;
                        collect_piece(seg, scratch, 0, hi, upper, None)?.unwrap_or_default()
                    }
                    Ok(None) => Vec::new(),
                    Err(e) => return Err(e),
                };
                for r in piece.into_iter().rev() {
                    let size = r.encoded_len();
                    if !out.is_empty() && used.saturating_add(size) > max_bytes {
                        break 'segments;
                    }
                    used += size;
                    match r.offset.checked_sub(1) {
                        Some(u) => upper = u,
                        None => exhausted = true,
                    }
                    out.push(r);
                    if exhausted || used >= max_bytes {
                        break 'segments;
                    }
                }
                hi = lo;
            }
            // Segment done: continue with the previous one.
            match idx.checked_sub(1) {
                Some(i) => {
                    idx = i;
                    if let Some(prev) = snap.get(i) {
                        upper = upper.min(prev.next_offset().saturating_sub(1));
                    }
                }
                None => {
                    exhausted = true;
                    break;
                }
            }
        }
        self.upper = if exhausted { None } else { Some(upper) };
        Ok(out)
    }
}

/// Records of `seg` in `[from, hi)` with offsets `<= upper`, in file order; `None` if the first record is
/// not `expect` (a lying index entry).
fn collect_piece(
    seg: &Segment,
    scratch: &mut BytesMut,
    from: u64,
    hi: u64,
    upper: u64,
    expect: Option<u64>,
) -> Result<Option<Vec<Record>>> {
    let mut piece = Vec::new();
    let mut first = true;
    let mut mismatch = false;
    seg.visit_with(
        scratch,
        from,
        hi,
        chunk_for((hi - from) as usize, 0),
        |b, at, _p, h, l| {
            if first {
                first = false;
                if expect.is_some_and(|x| x != h.offset) {
                    mismatch = true;
                    return Step::StopBefore;
                }
            }
            if h.offset <= upper {
                piece.push(build_record(b, at, h, l));
            }
            Step::Next
        },
    )?;
    Ok((!mismatch).then_some(piece))
}

/// Which records a [`TailReader`] may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// Only committed records (offset `<=` high watermark) — what subscribers see.
    HighWatermark,
    /// Everything appended (offset `<` log end offset) — what a follower fetch or the leader's own
    /// uncommitted reader sees.
    LogEnd,
}

/// An async reader that follows the log as it grows.
///
/// It waits on the log's watch channel (holding no lock) until records below its bound exist past its
/// position. If its position is removed by a truncation it returns [`LogError::Truncated`]; if retention
/// deletes it, [`LogError::OffsetOutOfRange`]. In both cases it keeps returning that error until the caller
/// decides where to continue with [`TailReader::seek`] (for example the new end offset, or the oldest
/// offset). A reader created below the oldest offset starts at the oldest.
#[derive(Debug)]
pub struct TailReader {
    /// Sequential reader doing the I/O.
    reader: Reader,
    /// Position updates of the log.
    rx: watch::Receiver<LogPosition>,
    /// Truncation count already accounted for.
    seen_truncations: u64,
}

impl TailReader {
    pub(crate) fn new(log: Log, start_offset: u64) -> Self {
        let rx = log.subscribe();
        let start = start_offset.max(log.oldest_offset());
        let seen_truncations = log.inner.generation.load(Ordering::Acquire);
        TailReader {
            reader: Reader::new(log, start),
            rx,
            seen_truncations,
        }
    }

    /// The next offset this reader will return.
    pub fn position(&self) -> u64 {
        self.reader.next_offset()
    }

    /// Continues from `offset` (after a [`LogError::Truncated`] or [`LogError::OffsetOutOfRange`]).
    pub fn seek(&mut self, offset: u64) {
        self.seen_truncations = self.reader.log.inner.generation.load(Ordering::Acquire);
        self.reader.seek(offset);
    }

    /// Waits for and returns the next records (about `max_bytes`, at least one) within `bound`.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next_batch(&mut self, max_bytes: usize, bound: ReadBound) -> Result<Vec<Record>> {
        loop {
            let pos = *self.rx.borrow_and_update();
            if pos.closed {
                return Err(LogError::Closed);
            }
            let next = self.reader.next_offset();
            if pos.truncations != self.seen_truncations
                && let Some(cut) = self.reader.log.inner.truncated_since(self.seen_truncations)
            {
                if cut < next {
                    return Err(LogError::Truncated {
                        position: next,
                        end_offset: cut,
                    });
                }
                self.seen_truncations = pos.truncations;
            }
            if next < pos.oldest_offset {
                return Err(LogError::OffsetOutOfRange {
                    requested: next,
                    oldest: pos.oldest_offset,
                    end: pos.end_offset,
                });
            }
            let limit = match bound {
                ReadBound::HighWatermark => (pos.high_watermark + 1).max(0) as u64,
                ReadBound::LogEnd => pos.end_offset,
            };
            if next < limit {
                let records = self.reader.read_batch(max_bytes, limit)?;
                if !records.is_empty() {
                    return Ok(records);
                }
                // Nothing below the limit: those offsets are a compaction gap.
                if self.reader.next_offset() < limit && self.reader.log.end_offset() >= limit {
                    self.reader.next_offset = limit;
                    self.reader.cursor = None;
                }
                continue;
            }
            if self.rx.changed().await.is_err() {
                return Err(LogError::Closed);
            }
        }
    }
}

/// `Log::read_raw`.
pub(crate) fn read_raw(log: &Log, start: u64, max_bytes: usize, limit: u64) -> Result<Bytes> {
    let inner = &log.inner;
    let generation = inner.generation.load(Ordering::Acquire);
    let snap = inner.snapshot();
    if start >= limit {
        return Ok(Bytes::new());
    }
    let mut idx = locate(&snap, start);
    let chunk = chunk_for(max_bytes, inner.config.index_interval_bytes);
    let mut scratch = inner.take_buffer();
    let res = read_raw_from(
        &snap,
        &mut idx,
        start,
        max_bytes,
        limit,
        chunk,
        &mut scratch,
    );
    inner.give_buffer(scratch);
    res.map_err(|e| explain(log, e, generation, start))
}

/// The body of [`read_raw`], reading into `scratch`.
#[allow(clippy::too_many_arguments)]
fn read_raw_from(
    snap: &[Arc<Segment>],
    idx: &mut usize,
    start: u64,
    max_bytes: usize,
    limit: u64,
    chunk: usize,
    scratch: &mut BytesMut,
) -> Result<Bytes> {
    while let Some(seg) = snap.get(*idx) {
        let len = seg.len();
        // Contiguous slices of the chunks the records came from.
        let mut parts: Vec<Bytes> = Vec::new();
        let mut current: Option<(Bytes, usize, usize)> = None;
        let mut used = 0usize;
        let mut stop = false;
        visit_from_index(seg, scratch, start, len, chunk, |buf, at, _p, h, _l| {
            if h.offset < start {
                return Step::Next;
            }
            let size = h.total_len();
            if h.offset >= limit || (used > 0 && used.saturating_add(size) > max_bytes) {
                stop = true;
                return Step::StopBefore;
            }
            match &mut current {
                Some((b, _, end)) if b.as_ptr() == buf.as_ptr() && *end == at => *end = at + size,
                _ => {
                    if let Some((b, s, e)) = current.take() {
                        parts.push(b.slice(s..e));
                    }
                    current = Some((buf.clone(), at, at + size));
                }
            }
            used += size;
            if used >= max_bytes {
                stop = true;
                Step::Done
            } else {
                Step::Next
            }
        })?;
        if let Some((b, s, e)) = current.take() {
            parts.push(b.slice(s..e));
        }
        if used > 0 || stop {
            return Ok(match parts.len() {
                0 => Bytes::new(),
                1 => parts.pop().unwrap_or_default(),
                _ => {
                    let mut all = BytesMut::with_capacity(used);
                    for p in parts {
                        all.extend_from_slice(&p);
                    }
                    all.freeze()
                }
            });
        }
        *idx += 1;
    }
    Ok(Bytes::new())
}

/// `Log::offset_for_timestamp`.
pub(crate) fn offset_for_timestamp(log: &Log, ts: i64) -> Result<Option<u64>> {
    let inner = &log.inner;
    let generation = inner.generation.load(Ordering::Acquire);
    let snap = inner.snapshot();
    for seg in snap.iter() {
        if seg.is_empty() || seg.max_ts() < ts {
            continue;
        }
        let len = seg.len();
        // Records up to `skip` are all older than `ts` (max-timestamp-so-far rule).
        let start = match seg.index.read().skip_before_time(ts) {
            Some(rel) => seg.base + u64::from(rel) + 1,
            None => seg.base,
        };
        let mut found = None;
        visit_from_index(
            seg,
            &mut BytesMut::new(),
            start,
            len,
            256 * 1024,
            |_, _, _, h, _| {
                if h.offset >= start && h.timestamp_ns >= ts {
                    found = Some(h.offset);
                    Step::StopBefore
                } else {
                    Step::Next
                }
            },
        )
        .map_err(|e| explain(log, e, generation, start))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}
