//! Compaction: keep the newest record per key up to the high watermark.
//!
//! 1. One pass over every segment (the active one included, up to its current length) records, for each
//!    key, the newest offset `<= hw`. Keys are remembered as 128-bit keyed hashes (two independently keyed
//!    SipHash instances with random keys), so memory is bounded by the number of distinct keys, not their
//!    size, and nobody can craft colliding keys.
//! 2. Each sealed segment that loses records is rewritten into `<base>.log.cleaned` (plus
//!    `.index.cleaned`, `.timeindex.cleaned`), keeping every unkeyed record, every record above `hw` and the
//!    newest record of each key; the new files are fsynced.
//! 3. Under the write lock (aborted if a truncation or retention changed the segments meanwhile) each
//!    rewritten segment is swapped in: delete its old index files, rename the new log over the old one,
//!    rename the new index files, fsync the directory. Segments left empty are deleted. Readers holding
//!    the old segment keep reading the old (unlinked) file.
//!
//! A crash at any point leaves either the old log (with `*.cleaned` files that recovery deletes and
//! possibly missing index files that recovery rebuilds) or the new log with its index missing (rebuilt) —
//! never a mix. The active segment is never compacted.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::LogInner;
use super::checkpoint::{self, LEADER_EPOCH_FILE};
use super::error::{LogError, Result};
use super::file::{LogFile, OpenMode, sync_dir};
use super::index::{IndexBuilder, SegmentIndex};
use super::segment::{CLEANED_SUFFIX, Segment, SegmentPaths, SegmentState, Step};
use super::writer::{unlink_segment, write_index_files};

/// What a compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// The high watermark used.
    pub high_watermark: i64,
    /// Distinct keys seen at or below the high watermark.
    pub distinct_keys: usize,
    /// Sealed segments rewritten.
    pub segments_rewritten: usize,
    /// Sealed segments deleted because nothing in them survived.
    pub segments_removed: usize,
    /// Records dropped.
    pub records_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// The pass was abandoned because the log was truncated or segments were deleted meanwhile.
    pub aborted: bool,
}

/// Two independently keyed hashers giving a 128-bit key fingerprint.
struct KeyHasher(RandomState, RandomState);

impl KeyHasher {
    fn hash(&self, key: &[u8]) -> u128 {
        let mut a = self.0.build_hasher();
        a.write(key);
        let mut b = self.1.build_hasher();
        b.write(key);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }
}

/// Decides whether a record (buffer, position in it, offset, layout) survives compaction.
type KeepFn<'a> = dyn Fn(&[u8], usize, u64, &super::record::BodyLayout) -> bool + 'a;

/// A rewritten segment waiting to be swapped in.
struct Rewrite {
    old: Arc<Segment>,
    /// `None` when nothing survived (the segment is deleted).
    new: Option<(Arc<dyn LogFile>, SegmentState, SegmentIndex)>,
    tmp: SegmentPaths,
    removed: u64,
    freed: u64,
}

fn cleaned_paths(paths: &SegmentPaths) -> SegmentPaths {
    let add = |p: &PathBuf| {
        let mut s = p.clone().into_os_string();
        s.push(CLEANED_SUFFIX);
        PathBuf::from(s)
    };
    SegmentPaths {
        log: add(&paths.log),
        index: add(&paths.index),
        time: add(&paths.time),
    }
}

fn remove_tmp(tmp: &SegmentPaths) {
    for p in [&tmp.log, &tmp.index, &tmp.time] {
        let _ = std::fs::remove_file(p);
    }
}

/// `Log::compact`.
pub(crate) fn compact(inner: &LogInner, hw: i64) -> Result<CompactionReport> {
    let _one_at_a_time = inner.compaction_lock.lock();
    inner.check_writable()?;
    let generation = inner.generation.load(Ordering::Acquire);
    let snap = inner.snapshot();
    let newest = inner.end_offset.load(Ordering::Acquire) as i64 - 1;
    let hw = hw.min(newest);
    let mut report = CompactionReport {
        high_watermark: hw,
        ..CompactionReport::default()
    };
    if hw < 0 || snap.len() < 2 {
        return Ok(report);
    }
    let hw = hw as u64;
    let hasher = KeyHasher(RandomState::new(), RandomState::new());

    // Pass 1: newest offset per key at or below hw.
    let mut latest: HashMap<u128, u64> = HashMap::new();
    for seg in snap.iter() {
        if seg.base > hw {
            break;
        }
        seg.visit(0, seg.len(), 1 << 20, |buf, at, _, h, l| {
            if h.offset > hw {
                return Step::StopBefore;
            }
            if let Some((s, e)) = l.key_range()
                && let Some(key) = buf.get(at + s..at + e)
            {
                latest.insert(hasher.hash(key), h.offset);
            }
            Step::Next
        })?;
    }
    report.distinct_keys = latest.len();
    let keep = |buf: &[u8], at: usize, offset: u64, l: &super::record::BodyLayout| -> bool {
        if offset > hw {
            return true;
        }
        match l.key_range().and_then(|(s, e)| buf.get(at + s..at + e)) {
            None => true,
            Some(key) => latest.get(&hasher.hash(key)) == Some(&offset),
        }
    };

    // Pass 2: rewrite sealed segments that lose records.
    let sealed = snap.len() - 1;
    let mut rewrites: Vec<Rewrite> = Vec::new();
    for seg in snap.iter().take(sealed) {
        if seg.base > hw {
            break;
        }
        let mut removed = 0u64;
        seg.visit(0, seg.len(), 1 << 20, |buf, at, _, h, l| {
            if !keep(buf, at, h.offset, l) {
                removed += 1;
            }
            Step::Next
        })?;
        if removed == 0 {
            continue;
        }
        match rewrite_segment(inner, seg, &keep) {
            Ok(r) => rewrites.push(Rewrite { removed, ..r }),
            Err(e) => {
                for r in &rewrites {
                    remove_tmp(&r.tmp);
                }
                return Err(e);
            }
        }
    }
    if rewrites.is_empty() {
        return Ok(report);
    }

    // Swap under the write lock.
    let _w = inner.writer.lock();
    let current = inner.snapshot();
    let still_there = rewrites
        .iter()
        .all(|r| current.iter().any(|s| Arc::ptr_eq(s, &r.old)));
    if inner.generation.load(Ordering::Acquire) != generation
        || !still_there
        || inner.closed.load(Ordering::Acquire)
    {
        for r in &rewrites {
            remove_tmp(&r.tmp);
        }
        report.aborted = true;
        return Ok(report);
    }
    let mut list: Vec<Arc<Segment>> = current.as_ref().clone();
    for r in rewrites {
        let paths = r.old.paths.clone();
        report.records_removed += r.removed;
        report.bytes_freed += r.freed;
        let pos = list.iter().position(|s| Arc::ptr_eq(s, &r.old));
        match r.new {
            None => {
                unlink_segment(&paths)?;
                remove_tmp(&r.tmp);
                if let Some(i) = pos {
                    list.remove(i);
                }
                report.segments_removed += 1;
            }
            Some((file, state, index)) => {
                for p in [&paths.index, &paths.time] {
                    match std::fs::remove_file(p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(LogError::io("delete index", p, e)),
                    }
                }
                for (from, to) in [
                    (&r.tmp.log, &paths.log),
                    (&r.tmp.index, &paths.index),
                    (&r.tmp.time, &paths.time),
                ] {
                    std::fs::rename(from, to)
                        .map_err(|e| LogError::io("rename compacted file", to, e))?;
                }
                let seg = Arc::new(Segment::new(r.old.base, paths, file, state, index));
                if let Some(i) = pos
                    && let Some(slot) = list.get_mut(i)
                {
                    *slot = seg;
                }
                report.segments_rewritten += 1;
            }
        }
    }
    sync_dir(&inner.dir).map_err(|e| LogError::io("fsync directory", &inner.dir, e))?;
    let oldest = list.first().map_or(0, |s| s.base);
    *inner.segments.write() = Arc::new(list);
    let mut cache = inner.epochs.read().clone();
    if cache.truncate_from_start(oldest) {
        checkpoint::write_atomic(
            &inner.dir,
            LEADER_EPOCH_FILE,
            &checkpoint::render_epochs(&cache.pairs()),
        )?;
        *inner.epochs.write() = cache;
    }
    inner.publish_position();
    tracing::info!(
        dir = %inner.dir.display(), rewritten = report.segments_rewritten, removed = report.segments_removed,
        records_removed = report.records_removed, "compacted log"
    );
    Ok(report)
}

/// Writes the surviving records of `seg` into `.cleaned` files (fsynced) and builds their index.
fn rewrite_segment(inner: &LogInner, seg: &Arc<Segment>, keep: &KeepFn<'_>) -> Result<Rewrite> {
    let tmp = cleaned_paths(&seg.paths);
    remove_tmp(&tmp);
    let result = (|| -> Result<Rewrite> {
        let file = inner
            .storage
            .open(&tmp.log, OpenMode::CreateNew)
            .map_err(|e| LogError::io("create compacted segment", &tmp.log, e))?;
        let mut index = SegmentIndex::default();
        let mut builder =
            IndexBuilder::resume(inner.config.index_interval_bytes, &index, i64::MIN, 0);
        let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut written = 0u64;
        let mut last: Option<(u64, u64)> = None;
        let mut write_err: Option<LogError> = None;
        seg.visit(0, seg.len(), 1 << 20, |buf, at, _, h, l| {
            if !keep(buf, at, h.offset, l) {
                return Step::Next;
            }
            let size = h.total_len();
            let pos = written + out.len() as u64;
            builder.on_record(
                (h.offset - seg.base) as u32,
                pos,
                h.timestamp_ns,
                &mut index.offsets,
                &mut index.times,
            );
            last = Some((h.offset, pos));
            if let Some(bytes) = buf.get(at..at + size) {
                out.extend_from_slice(bytes);
            }
            if out.len() >= 1 << 20 {
                if let Err(e) = file.write_all_at(&out, written) {
                    write_err = Some(LogError::io("write compacted segment", &tmp.log, e));
                    return Step::Done;
                }
                written += out.len() as u64;
                out.clear();
            }
            Step::Next
        })?;
        if let Some(e) = write_err {
            return Err(e);
        }
        file.write_all_at(&out, written)
            .map_err(|e| LogError::io("write compacted segment", &tmp.log, e))?;
        written += out.len() as u64;
        let Some((last_offset, last_pos)) = last else {
            drop(file);
            remove_tmp(&tmp);
            return Ok(Rewrite {
                old: seg.clone(),
                new: None,
                tmp: tmp.clone(),
                removed: 0,
                freed: seg.len(),
            });
        };
        let (eo, et) = builder.seal_entries(&index, (last_offset - seg.base) as u32, last_pos);
        index.offsets.extend(eo);
        index.times.extend(et);
        file.sync_data()
            .map_err(|e| LogError::io("fsync compacted segment", &tmp.log, e))?;
        let index_file = inner
            .storage
            .open(&tmp.index, OpenMode::CreateNew)
            .map_err(|e| LogError::io("create compacted index", &tmp.index, e))?;
        let time_file = inner
            .storage
            .open(&tmp.time, OpenMode::CreateNew)
            .map_err(|e| LogError::io("create compacted index", &tmp.time, e))?;
        write_index_files(index_file.as_ref(), time_file.as_ref(), &tmp, &index)?;
        let state = SegmentState {
            len: written,
            next_offset: last_offset + 1,
            max_ts: builder.max_ts,
            first_write: i64::MIN,
        };
        Ok(Rewrite {
            old: seg.clone(),
            new: Some((file, state, index)),
            tmp: tmp.clone(),
            removed: 0,
            freed: seg.len() - written,
        })
    })();
    if result.is_err() {
        remove_tmp(&tmp);
    }
    result
}
