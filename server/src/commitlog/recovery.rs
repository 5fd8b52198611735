//! Opening a log = recovering it.
//!
//! Rules (each problem found is logged with `tracing::warn!` and listed in the [`RecoveryReport`]):
//!
//! 1. Leftovers of interrupted operations are deleted: `*.tmp` (checkpoint writes), `*.cleaned`
//!    (compaction), `*.truncated`, `*.swap`, `*.deleted`, and index files without a `.log`.
//! 2. Which segments are scanned record by record (CRC and framing of every record, strictly increasing
//!    offsets inside the segment's range):
//!    - after a clean close (`clean-shutdown` present): only the tail of the last segment, from its last
//!      index entry;
//!    - after an unclean stop: every segment from the one containing the recovery point
//!      (`recovery-point-checkpoint`, advanced once segments sealed by a roll were fsynced) to the end, or every
//!      segment when the recovery point is unknown;
//!    - with [`RecoveryScan::Full`]: all of them.
//!
//!    Segments that are not scanned must have structurally valid indexes (per-entry CRC, ordering, in
//!    range) whose last entry points at a record that ends exactly at the end of the file; otherwise they
//!    are scanned too.
//! 3. A scan stops at the first record that is torn, zero-filled, fails its CRC or framing, or has an
//!    offset out of order. The segment is cut back to the last valid record (for the last segment that is a
//!    torn tail; for a sealed segment the later segments are kept — offset gaps are normal).
//! 4. Index entries are verified against the scan; damaged, misaligned, out-of-order, mismatching or
//!    past-the-end entries make the index get rebuilt from the log, missing tail entries are added.
//! 5. A segment or index file that cannot be opened or read (for example a directory in its place, or an
//!    I/O error) makes `open` fail with [`LogError::Io`] naming the path: the log refuses to start with
//!    data silently missing.
//! 6. The leader-epoch cache is loaded (rebuilt from the records' epochs if its file is missing or
//!    damaged) and clamped to the log's offsets; the high watermark is restored and clamped to the newest
//!    offset; the clean-shutdown marker is removed before the log accepts writes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::checkpoint::{
    self, CLEAN_SHUTDOWN_FILE, FORMAT_FILE, FORMAT_TAG, HIGH_WATERMARK_FILE, LEADER_EPOCH_FILE,
    LOCK_FILE, Loaded, RECOVERY_POINT_FILE, TMP_SUFFIX,
};
use super::config::{LogConfig, RecoveryScan};
use super::durability::{Durability, SyncTarget};
use super::error::{LogError, Result};
use super::file::{LogFile, OpenMode, Storage, read_full_at, sync_dir};
use super::index::{
    IndexBuilder, IndexProblem, OffsetEntry, SegmentIndex, parse_offsets, parse_times,
};
use super::leader_epoch::LeaderEpochCache;
use super::record::{FrameError, RECORD_HEADER_LEN, check_record};
use super::segment::{
    CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, Segment, SegmentPaths, SegmentState, Step,
    TIME_INDEX_SUFFIX, TRUNCATED_SUFFIX,
};
use super::writer::{ActiveSegment, Writer, open_index_files, write_index_files};
use super::{Counters, LogInner, LogPosition};

/// Size of the reads a recovery scan makes.
const SCAN_CHUNK: usize = 4 * 1024 * 1024;

/// What `Log::open` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log had been closed cleanly (a valid `clean-shutdown` marker was present).
    pub clean_shutdown: bool,
    /// The recovery point read from `recovery-point-checkpoint`, if any.
    pub recovery_point: Option<u64>,
    /// Number of segments after recovery.
    pub segments: usize,
    /// Segments scanned record by record (fully or from their last index entry).
    pub segments_scanned: usize,
    /// Records checked by the scans.
    pub records_scanned: u64,
    /// Bytes checked by the scans.
    pub bytes_scanned: u64,
    /// Segments that were cut back because of a torn or corrupt record.
    pub truncated_segments: Vec<TruncatedSegment>,
    /// Index files that were rebuilt or extended, and why.
    pub index_repairs: Vec<IndexRepair>,
    /// Files deleted as leftovers of interrupted operations.
    pub removed_files: Vec<RemovedFile>,
    /// Files in the directory that the log does not know (left alone).
    pub unknown_files: Vec<PathBuf>,
    /// Checkpoint files that were missing or damaged, with what was done.
    pub checkpoint_problems: Vec<String>,
    /// The leader-epoch cache was rebuilt from the records.
    pub leader_epochs_rebuilt: bool,
    /// Oldest offset after recovery.
    pub oldest_offset: u64,
    /// Log end offset after recovery.
    pub end_offset: u64,
    /// High watermark after recovery (restored and clamped).
    pub high_watermark: i64,
    /// How long recovery took.
    pub duration: Duration,
}

impl RecoveryReport {
    /// True when nothing was damaged: no segment was cut and no index had to be rebuilt because of damage.
    pub fn found_no_damage(&self) -> bool {
        self.truncated_segments.is_empty()
            && self
                .index_repairs
                .iter()
                .all(|r| matches!(r.reason, IndexRepairReason::MissingTailEntries { .. }))
    }

    /// True when recovery had anything to report: damage cut or rebuilt, leftovers removed, unknown files,
    /// checkpoint problems. Callers log the report when this is set.
    pub fn has_problems(&self) -> bool {
        !self.found_no_damage()
            || !self.removed_files.is_empty()
            || !self.unknown_files.is_empty()
            || !self.checkpoint_problems.is_empty()
            || self.leader_epochs_rebuilt
    }

    /// Total bytes cut from segments.
    pub fn bytes_truncated(&self) -> u64 {
        self.truncated_segments
            .iter()
            .map(|t| t.bytes_removed)
            .sum()
    }
}

/// A segment cut back by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedSegment {
    /// The `.log` file.
    pub path: PathBuf,
    /// Its base offset.
    pub base_offset: u64,
    /// Byte position of the first bad record (the new file length).
    pub position: u64,
    /// Bytes removed.
    pub bytes_removed: u64,
    /// First offset that may have been lost (the offset after the last valid record).
    pub first_lost_offset: u64,
    /// The first offset kept after the cut (the next segment's base), `None` for the last segment.
    pub next_kept_offset: Option<u64>,
    /// What was wrong.
    pub reason: String,
}

/// An index file repaired by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRepair {
    /// The `.index` or `.timeindex` file.
    pub path: PathBuf,
    /// Why it was rewritten.
    pub reason: IndexRepairReason,
}

/// Why an index file was rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexRepairReason {
    /// The file was damaged (or missing) and was rebuilt from the log.
    Rebuilt(IndexProblem),
    /// The file was valid but lacked entries for records at the end (it is written lazily); they were added.
    MissingTailEntries {
        /// Number of entries added.
        added: usize,
    },
}

/// A file removed by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was removed.
    pub reason: String,
}

/// How a segment is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Indexes validated structurally plus a check of the last record.
    Trust,
    /// Scan from the last index entry.
    Tail,
    /// Scan everything.
    Full,
}

/// Result of verifying existing index entries during a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Ok,
    Bad { keep: usize, problem: IndexProblem },
}

/// What a scan found.
#[derive(Debug)]
struct Scan {
    valid_len: u64,
    records: u64,
    bytes: u64,
    last: Option<(u64, u64)>,
    damage: Option<(u64, String)>,
    fresh: SegmentIndex,
    builder: IndexBuilder,
    offsets: Verdict,
    times: Verdict,
}

/// Scans `file` from `from` (a verified-or-trusted index entry, or the segment start) to `file_len`.
#[allow(clippy::too_many_arguments)]
fn scan(
    file: &dyn LogFile,
    path: &Path,
    base: u64,
    next_base: Option<u64>,
    from: OffsetEntry,
    file_len: u64,
    existing: &SegmentIndex,
    mut builder: IndexBuilder,
) -> Result<Scan> {
    let mut fresh = SegmentIndex::default();
    let mut oi = existing.offsets.partition_point(|e| e.pos < from.pos);
    let mut ti = existing.times.partition_point(|e| e.rel < from.rel);
    let mut offsets = Verdict::Ok;
    let mut times = Verdict::Ok;
    let mut records = 0u64;
    let mut last: Option<(u64, u64)> = None;
    let mut damage = None;
    let mut running_max = builder.max_ts;
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = from.pos;
    let mut want = SCAN_CHUNK;
    let mut file_len = file_len;
    'outer: while pos < file_len {
        let n = usize::try_from(file_len - pos)
            .unwrap_or(usize::MAX)
            .min(want);
        buf.resize(n, 0);
        let got =
            read_full_at(file, &mut buf, pos).map_err(|e| LogError::io("read segment", path, e))?;
        buf.truncate(got);
        if got < n {
            // The file is shorter than its length said a moment ago; scan what is there.
            file_len = pos + got as u64;
        }
        let mut at = 0usize;
        while at < buf.len() {
            let rpos = pos + at as u64;
            let (h, total) = match check_record(&buf[at..]) {
                Ok((h, _)) => (h, h.total_len()),
                Err(FrameError::Incomplete { needed }) => {
                    if rpos + needed as u64 > file_len {
                        let reason = if buf.len() - at < RECORD_HEADER_LEN {
                            "incomplete record header at the end of the file (torn write)"
                        } else {
                            "record extends past the end of the file (torn write)"
                        };
                        damage = Some((rpos, reason.to_string()));
                        pos = rpos;
                        break 'outer;
                    }
                    want = want.max(needed);
                    break;
                }
                Err(FrameError::Corrupt(reason)) => {
                    damage = Some((rpos, reason.to_string()));
                    pos = rpos;
                    break 'outer;
                }
            };
            let o = h.offset;
            let bad_offset = if o < base {
                Some("record offset below the segment's base offset")
            } else if next_base.is_some_and(|nb| o >= nb) {
                Some("record offset at or beyond the next segment's base offset")
            } else if last.is_some_and(|(p, _)| o <= p) {
                Some("record offsets not increasing")
            } else if o - base > u64::from(u32::MAX) {
                Some("record offset too far from the segment's base offset")
            } else {
                None
            };
            if let Some(reason) = bad_offset {
                damage = Some((rpos, reason.to_string()));
                pos = rpos;
                break 'outer;
            }
            let rel = (o - base) as u32;
            // Verify the next existing offset entry against this record.
            if offsets == Verdict::Ok
                && let Some(e) = existing.offsets.get(oi)
                && e.pos <= rpos
            {
                if e.pos == rpos && e.rel == rel {
                    oi += 1;
                } else {
                    offsets = Verdict::Bad {
                        keep: oi,
                        problem: IndexProblem::Mismatch { entry: oi },
                    };
                }
            }
            running_max = running_max.max(h.timestamp_ns);
            if times == Verdict::Ok
                && let Some(e) = existing.times.get(ti)
                && e.rel <= rel
            {
                if e.rel == rel && e.ts == running_max {
                    ti += 1;
                } else {
                    times = Verdict::Bad {
                        keep: ti,
                        problem: IndexProblem::Mismatch { entry: ti },
                    };
                }
            }
            builder.on_record(
                rel,
                rpos,
                h.timestamp_ns,
                &mut fresh.offsets,
                &mut fresh.times,
            );
            last = Some((o, rpos));
            records += 1;
            at += total;
        }
        pos += at as u64;
    }
    let valid_len = pos.min(file_len);
    if offsets == Verdict::Ok && oi < existing.offsets.len() {
        offsets = Verdict::Bad {
            keep: oi,
            problem: IndexProblem::PastEnd { entry: oi },
        };
    }
    if times == Verdict::Ok && ti < existing.times.len() {
        times = Verdict::Bad {
            keep: ti,
            problem: IndexProblem::PastEnd { entry: ti },
        };
    }
    Ok(Scan {
        valid_len,
        records,
        bytes: valid_len - from.pos,
        last,
        damage,
        fresh,
        builder,
        offsets,
        times,
    })
}

/// Reads an index file; `Err` only when the file exists but cannot be opened or read.
fn read_index_file(storage: &dyn Storage, path: &Path) -> Result<Option<Vec<u8>>> {
    let f = match storage.open(path, OpenMode::Existing) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("open index", path, e)),
    };
    let len = f.len().map_err(|e| LogError::io("stat index", path, e))?;
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let got =
        read_full_at(f.as_ref(), &mut buf, 0).map_err(|e| LogError::io("read index", path, e))?;
    buf.truncate(got);
    Ok(Some(buf))
}

/// Checks that `entry` points at a valid record with the right offset that ends exactly at `file_len`.
fn last_entry_ends_file(file: &dyn LogFile, base: u64, entry: OffsetEntry, file_len: u64) -> bool {
    let Some(n) = file_len.checked_sub(entry.pos) else {
        return false;
    };
    if n > 64 * 1024 * 1024 {
        return false;
    }
    let mut buf = vec![0u8; n as usize];
    match read_full_at(file, &mut buf, entry.pos) {
        Ok(got) if got == buf.len() => {}
        _ => return false,
    }
    match check_record(&buf) {
        Ok((h, _)) => h.offset == base + u64::from(entry.rel) && h.total_len() == buf.len(),
        Err(_) => false,
    }
}

/// Whether every byte of `file` in `[pos, end)` is zero.
fn zeros_to_end(file: &dyn LogFile, path: &Path, mut pos: u64, end: u64) -> Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    while pos < end {
        let n = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let got = read_full_at(file, &mut buf[..n], pos)
            .map_err(|e| LogError::io("read segment", path, e))?;
        if got == 0 {
            break;
        }
        if buf[..got].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += got as u64;
    }
    Ok(true)
}

/// Parses `<20 digits><suffix>`.
fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.get(..20)?;
    if !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, name.get(20..)?))
}

/// Everything recovered about one segment.
struct Recovered {
    seg: Arc<Segment>,
    active: Option<ActiveParts>,
}

/// Writer-side state of the last segment.
struct ActiveParts {
    index_file: Arc<dyn LogFile>,
    time_file: Arc<dyn LogFile>,
    builder: IndexBuilder,
    last: Option<(u64, u64)>,
}

/// Recovers one segment.
#[allow(clippy::too_many_arguments)]
fn recover_segment(
    dir: &Path,
    config: &LogConfig,
    storage: &dyn Storage,
    base: u64,
    next_base: Option<u64>,
    mode: Mode,
    report: &mut RecoveryReport,
) -> Result<Option<Recovered>> {
    let paths = SegmentPaths::new(dir, base);
    let is_last = next_base.is_none();
    let file = storage
        .open(&paths.log, OpenMode::Existing)
        .map_err(|e| LogError::io("open segment", &paths.log, e))?;
    let file_len = file
        .len()
        .map_err(|e| LogError::io("stat segment", &paths.log, e))?;
    let max_rel = next_base.map_or(u32::MAX, |nb| {
        u32::try_from(nb.saturating_sub(base).saturating_sub(1)).unwrap_or(u32::MAX)
    });

    // Load and structurally validate both index files.
    let parsed_offsets = match read_index_file(storage, &paths.index)? {
        None => Err(IndexProblem::Missing),
        Some(b) => parse_offsets(&b, file_len, max_rel),
    };
    let parsed_times = match read_index_file(storage, &paths.time)? {
        None => Err(IndexProblem::Missing),
        Some(b) => parse_times(&b, max_rel),
    };
    let (offset_problem, existing_offsets) = match parsed_offsets {
        Ok(v) => (None, v),
        Err(p) => (Some(p), Vec::new()),
    };
    let (time_problem, existing_times) = match parsed_times {
        Ok(v) => (None, v),
        Err(p) => (Some(p), Vec::new()),
    };
    let existing = SegmentIndex {
        offsets: existing_offsets,
        times: existing_times,
    };
    let structurally_ok = offset_problem.is_none() && time_problem.is_none();

    let mut mode = mode;
    if file_len == 0 {
        mode = Mode::Full;
    }
    if mode == Mode::Trust {
        let ok = structurally_ok
            && match (existing.offsets.last(), existing.times.last()) {
                (Some(o), Some(t)) => {
                    t.rel <= o.rel && last_entry_ends_file(file.as_ref(), base, *o, file_len)
                }
                _ => false,
            };
        if ok && !is_last {
            let last = existing
                .offsets
                .last()
                .copied()
                .unwrap_or(OffsetEntry { rel: 0, pos: 0 });
            let max_ts = existing.times.last().map_or(i64::MIN, |t| t.ts);
            let state = SegmentState {
                len: file_len,
                next_offset: base + u64::from(last.rel) + 1,
                max_ts,
                first_write: i64::MIN,
            };
            return Ok(Some(Recovered {
                seg: Arc::new(Segment::new(base, paths, file, state, existing)),
                active: None,
            }));
        }
        mode = if ok { Mode::Tail } else { Mode::Full };
        if !ok {
            tracing::debug!(path = %paths.log.display(), "index of an unscanned segment failed validation; scanning it");
        }
    }
    if mode == Mode::Tail && !structurally_ok {
        mode = Mode::Full;
    }

    let interval = config.index_interval_bytes;
    let mut scanned = if mode == Mode::Tail {
        let from = existing
            .offsets
            .last()
            .copied()
            .unwrap_or(OffsetEntry { rel: 0, pos: 0 });
        let prior_time = existing.times.iter().rfind(|t| t.rel <= from.rel);
        let builder = IndexBuilder::resume(
            interval,
            &existing,
            prior_time.map_or(i64::MIN, |t| t.ts),
            prior_time.map_or(0, |t| t.rel),
        );
        let s = scan(
            file.as_ref(),
            &paths.log,
            base,
            next_base,
            from,
            file_len,
            &existing,
            builder,
        )?;
        let tail_ok = s.damage.is_none() && s.offsets == Verdict::Ok && s.times == Verdict::Ok;
        if tail_ok { Some(s) } else { None }
    } else {
        None
    };
    let full_scan = scanned.is_none();
    if full_scan {
        let builder = IndexBuilder::resume(interval, &SegmentIndex::default(), i64::MIN, 0);
        scanned = Some(scan(
            file.as_ref(),
            &paths.log,
            base,
            next_base,
            OffsetEntry { rel: 0, pos: 0 },
            file_len,
            &existing,
            builder,
        )?);
    }
    let Some(s) = scanned else {
        return Ok(None);
    };
    report.segments_scanned += 1;
    report.records_scanned += s.records;
    report.bytes_scanned += s.bytes;

    // Cut damage.
    if let Some((pos, reason)) = &s.damage {
        let reason = if zeros_to_end(file.as_ref(), &paths.log, *pos, file_len)? {
            "zero-filled tail (preallocated or never-written space)".to_string()
        } else {
            reason.clone()
        };
        let removed = file_len - s.valid_len;
        let first_lost = s.last.map_or(base, |(o, _)| o + 1);
        tracing::warn!(
            path = %paths.log.display(), position = pos, bytes_removed = removed, first_lost_offset = first_lost,
            next_kept_offset = ?next_base, %reason, "commit log recovery: cutting segment at damaged record"
        );
        file.set_len(s.valid_len)
            .and_then(|()| file.sync_data())
            .map_err(|e| LogError::io("truncate damaged segment", &paths.log, e))?;
        report.truncated_segments.push(TruncatedSegment {
            path: paths.log.clone(),
            base_offset: base,
            position: *pos,
            bytes_removed: removed,
            first_lost_offset: first_lost,
            next_kept_offset: next_base,
            reason,
        });
    }

    if !is_last && s.last.is_none() {
        // A sealed segment with no valid record: drop it.
        drop(file);
        super::writer::unlink_segment(&paths)?;
        let reason = "sealed segment without any valid record".to_string();
        tracing::warn!(path = %paths.log.display(), %reason, "commit log recovery: removing segment");
        report.removed_files.push(RemovedFile {
            path: paths.log.clone(),
            reason,
        });
        return Ok(None);
    }

    // Reconcile the indexes.
    let (keep_o, o_problem) = match (&offset_problem, &s.offsets) {
        (Some(p), _) => (0, Some(p.clone())),
        (None, Verdict::Ok) => (existing.offsets.len(), None),
        (None, Verdict::Bad { keep, problem }) => (*keep, Some(problem.clone())),
    };
    let (keep_t, t_problem) = match (&time_problem, &s.times) {
        (Some(p), _) => (0, Some(p.clone())),
        (None, Verdict::Ok) => (existing.times.len(), None),
        (None, Verdict::Bad { keep, problem }) => (*keep, Some(problem.clone())),
    };
    let mut index = SegmentIndex {
        offsets: existing
            .offsets
            .get(..keep_o)
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        times: existing
            .times
            .get(..keep_t)
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
    };
    let last_kept_pos = index.offsets.last().map(|e| e.pos);
    index.offsets.extend(
        s.fresh
            .offsets
            .iter()
            .filter(|e| last_kept_pos.is_none_or(|p| e.pos > p)),
    );
    let last_kept_time = index.times.last().copied();
    index.times.extend(
        s.fresh
            .times
            .iter()
            .filter(|e| last_kept_time.is_none_or(|t| e.rel > t.rel && e.ts >= t.ts)),
    );
    let mut builder =
        IndexBuilder::resume(interval, &index, s.builder.max_ts, s.builder.max_ts_rel);
    if !is_last && let Some((o, p)) = s.last {
        let (eo, et) = builder.seal_entries(&index, (o - base) as u32, p);
        index.offsets.extend(eo);
        index.times.extend(et);
    }
    let offsets_changed = index.offsets != existing.offsets;
    let times_changed = index.times != existing.times;
    let (index_file, time_file) = if is_last
        || offsets_changed
        || times_changed
        || offset_problem.is_some()
        || time_problem.is_some()
    {
        let (fi, ft) = open_index_files(storage, &paths, OpenMode::Create)?;
        (Some(fi), Some(ft))
    } else {
        (None, None)
    };
    if let (Some(fi), Some(ft)) = (&index_file, &time_file)
        && (offsets_changed || times_changed || offset_problem.is_some() || time_problem.is_some())
    {
        write_index_files(fi.as_ref(), ft.as_ref(), &paths, &index)?;
        for (path, changed, problem, before, after) in [
            (
                &paths.index,
                offsets_changed,
                o_problem,
                existing.offsets.len(),
                index.offsets.len(),
            ),
            (
                &paths.time,
                times_changed,
                t_problem,
                existing.times.len(),
                index.times.len(),
            ),
        ] {
            let reason = match problem {
                Some(p) => IndexRepairReason::Rebuilt(p),
                None if changed => IndexRepairReason::MissingTailEntries {
                    added: after.saturating_sub(before),
                },
                None => continue,
            };
            match &reason {
                IndexRepairReason::Rebuilt(p) => {
                    tracing::warn!(path = %path.display(), problem = %p, "commit log recovery: rebuilt index")
                }
                IndexRepairReason::MissingTailEntries { added } => {
                    tracing::debug!(path = %path.display(), added, "commit log recovery: added missing index entries")
                }
            }
            report.index_repairs.push(IndexRepair {
                path: path.clone(),
                reason,
            });
        }
    }

    // The first write into the active segment: the file's creation time is the best estimate left.
    let first_write = if is_last && s.valid_len > 0 {
        let meta = fs::metadata(&paths.log).ok();
        let t = meta
            .as_ref()
            .and_then(|m| m.created().or_else(|_| m.modified()).ok())
            .unwrap_or_else(std::time::SystemTime::now);
        super::writer::now_ns(t)
    } else {
        i64::MIN
    };
    let state = SegmentState {
        len: s.valid_len,
        next_offset: s.last.map_or(base, |(o, _)| o + 1),
        max_ts: builder.max_ts,
        first_write,
    };
    let seg = Arc::new(Segment::new(base, paths, file, state, index));
    let active = match (is_last, index_file, time_file) {
        (true, Some(index_file), Some(time_file)) => Some(ActiveParts {
            index_file,
            time_file,
            builder,
            last: s.last,
        }),
        _ => None,
    };
    Ok(Some(Recovered { seg, active }))
}

/// Rebuilds the leader-epoch cache from the records' epochs.
fn rebuild_epochs(segments: &[Arc<Segment>]) -> LeaderEpochCache {
    let mut cache = LeaderEpochCache::default();
    for seg in segments {
        let res = seg.visit(0, seg.len(), SCAN_CHUNK, |_, _, _, h, _| {
            if cache.latest().is_none_or(|l| h.leader_epoch > l.epoch) {
                cache.assign(h.leader_epoch, h.offset);
            }
            Step::Next
        });
        if let Err(e) = res {
            tracing::warn!(error = %e, "unreadable records while rebuilding the leader-epoch cache");
        }
    }
    cache
}

fn remove_file_reported(path: PathBuf, reason: &str, report: &mut RecoveryReport) -> Result<()> {
    let res = if path.is_dir() {
        fs::remove_dir_all(&path)
    } else {
        fs::remove_file(&path)
    };
    res.map_err(|e| LogError::io("remove leftover file", &path, e))?;
    tracing::warn!(path = %path.display(), reason, "commit log recovery: removed leftover file");
    report.removed_files.push(RemovedFile {
        path,
        reason: reason.to_string(),
    });
    Ok(())
}

/// `Log::open`.
pub(crate) fn open(
    dir: &Path,
    config: LogConfig,
    storage: Arc<dyn Storage>,
) -> Result<(LogInner, RecoveryReport)> {
    let started = Instant::now();
    config.validate()?;
    fs::create_dir_all(dir).map_err(|e| LogError::io("create log directory", dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| LogError::io("open lock file", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(LogError::Locked { path: lock_path }),
        Err(fs::TryLockError::Error(e)) => {
            return Err(LogError::io("lock log directory", &lock_path, e));
        }
    }

    // Only touch segments this format wrote: recovery "repairs" anything else away.
    let format_path = dir.join(FORMAT_FILE);
    match fs::read(&format_path) {
        Ok(tag) if tag == FORMAT_TAG.as_bytes() => {}
        Ok(tag) => {
            return Err(LogError::UnknownFormat {
                path: format_path,
                reason: format!("unknown marker {:?}", String::from_utf8_lossy(&tag)),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let segments = fs::read_dir(dir)
                .map_err(|e| LogError::io("list log directory", dir, e))?
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(parse_name)
                        .is_some_and(|(_, suffix)| suffix == LOG_SUFFIX)
                })
                .count();
            if segments > 0 {
                return Err(LogError::UnknownFormat {
                    path: dir.to_path_buf(),
                    reason: format!("{segments} segment files but no {FORMAT_FILE} marker"),
                });
            }
            checkpoint::write_atomic(dir, FORMAT_FILE, FORMAT_TAG)?;
        }
        Err(e) => return Err(LogError::io("read format marker", &format_path, e)),
    }

    let mut report = RecoveryReport::default();

    // 1. Inventory and leftovers.
    let mut log_bases = BTreeSet::new();
    let mut index_files: Vec<(u64, PathBuf)> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("list log directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list log directory", dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            report.unknown_files.push(path);
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            remove_file_reported(path, "unfinished checkpoint write", &mut report)?;
            continue;
        }
        if [CLEANED_SUFFIX, TRUNCATED_SUFFIX, ".swap", ".deleted"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            remove_file_reported(
                path,
                "leftover of an interrupted compaction, truncation or deletion",
                &mut report,
            )?;
            continue;
        }
        if [
            LOCK_FILE,
            FORMAT_FILE,
            CLEAN_SHUTDOWN_FILE,
            HIGH_WATERMARK_FILE,
            LEADER_EPOCH_FILE,
            RECOVERY_POINT_FILE,
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        match parse_name(&name) {
            Some((base, LOG_SUFFIX)) => {
                log_bases.insert(base);
            }
            Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX)) => index_files.push((base, path)),
            _ => {
                tracing::warn!(path = %path.display(), "unknown file in commit log directory (left alone)");
                report.unknown_files.push(path);
            }
        }
    }
    for (base, path) in index_files {
        if !log_bases.contains(&base) {
            remove_file_reported(path, "index file without its segment", &mut report)?;
        }
    }

    // 2. Checkpoints that decide the scan.
    let clean_path = checkpoint::path(dir, CLEAN_SHUTDOWN_FILE);
    let clean_end = match checkpoint::read_value::<u64>(&clean_path)? {
        Loaded::Value(v) => Some(v),
        Loaded::Missing => None,
        Loaded::Damaged(why) => {
            report.checkpoint_problems.push(format!(
                "{CLEAN_SHUTDOWN_FILE}: {why}; treated as an unclean stop"
            ));
            None
        }
    };
    report.clean_shutdown = clean_end.is_some();
    let recovery_point =
        match checkpoint::read_value::<u64>(&checkpoint::path(dir, RECOVERY_POINT_FILE))? {
            Loaded::Value(v) => Some(v),
            Loaded::Missing => None,
            Loaded::Damaged(why) => {
                report.checkpoint_problems.push(format!(
                    "{RECOVERY_POINT_FILE}: {why}; scanning every segment"
                ));
                None
            }
        };
    report.recovery_point = recovery_point;

    // 3. Segments.
    let bases: Vec<u64> = log_bases.into_iter().collect();
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len().max(1));
    let mut active_parts = None;
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let mode = if config.recovery_scan == RecoveryScan::Full {
            Mode::Full
        } else if clean_end.is_some() {
            if next_base.is_none() {
                Mode::Tail
            } else {
                Mode::Trust
            }
        } else {
            match (recovery_point, next_base) {
                (Some(rp), Some(nb)) if nb <= rp => Mode::Trust,
                _ => Mode::Full,
            }
        };
        if let Some(r) = recover_segment(
            dir,
            &config,
            storage.as_ref(),
            base,
            next_base,
            mode,
            &mut report,
        )? {
            if r.active.is_some() {
                active_parts = r.active;
            }
            segments.push(r.seg);
        }
    }
    let active = match (segments.last(), active_parts) {
        (Some(seg), Some(parts)) => ActiveSegment {
            seg: seg.clone(),
            index_file: parts.index_file,
            time_file: parts.time_file,
            flushed_offsets: seg.index.read().offsets.len(),
            flushed_times: seg.index.read().times.len(),
            builder: parts.builder,
            last_record: parts.last.map(|(o, p)| ((o - seg.base) as u32, p)),
            allocated: seg.len(),
        },
        _ => {
            // No segment at all (new log, or every segment was removed): start one.
            let base = segments.last().map_or(0, |s| s.next_offset());
            let paths = SegmentPaths::new(dir, base);
            let file = storage
                .open(&paths.log, OpenMode::Create)
                .map_err(|e| LogError::io("create segment", &paths.log, e))?;
            let (index_file, time_file) =
                open_index_files(storage.as_ref(), &paths, OpenMode::Create)?;
            sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))?;
            let index = SegmentIndex::default();
            let builder = IndexBuilder::resume(config.index_interval_bytes, &index, i64::MIN, 0);
            let seg = Arc::new(Segment::new(
                base,
                paths,
                file,
                SegmentState::empty(base),
                index,
            ));
            segments.push(seg.clone());
            ActiveSegment {
                seg,
                index_file,
                time_file,
                flushed_offsets: 0,
                flushed_times: 0,
                builder,
                last_record: None,
                allocated: 0,
            }
        }
    };
    let end_offset = active.seg.next_offset();
    let oldest = segments.first().map_or(end_offset, |s| s.base);
    if let Some(expected) = clean_end
        && expected != end_offset
        && report.truncated_segments.is_empty()
    {
        report.checkpoint_problems.push(format!(
            "{CLEAN_SHUTDOWN_FILE} says the log ended at {expected}, recovery found {end_offset}"
        ));
    }

    // Make what was scanned durable (it may have been only in the page cache of a crashed process).
    if !report.clean_shutdown {
        for seg in &segments {
            seg.file
                .sync_data()
                .map_err(|e| LogError::io("fsync segment", &seg.paths.log, e))?;
        }
        if let Err(e) = checkpoint::write_value(dir, RECOVERY_POINT_FILE, active.seg.base) {
            tracing::warn!(error = %e, "could not write the recovery point");
        }
    }

    // 4. Leader epochs.
    let epoch_path = checkpoint::path(dir, LEADER_EPOCH_FILE);
    let has_records = segments.iter().any(|s| !s.is_empty());
    let loaded = checkpoint::read_epochs(&epoch_path)?;
    let (mut cache, mut dirty) = match loaded {
        Loaded::Value(pairs) => (LeaderEpochCache::from_pairs(&pairs), false),
        Loaded::Missing if !has_records => (LeaderEpochCache::default(), false),
        Loaded::Missing | Loaded::Damaged(_) => {
            let why = match loaded {
                Loaded::Damaged(w) => w,
                _ => "missing".into(),
            };
            report.checkpoint_problems.push(format!(
                "{LEADER_EPOCH_FILE}: {why}; rebuilt from the records"
            ));
            tracing::warn!(reason = %why, "commit log recovery: rebuilding the leader-epoch cache");
            report.leader_epochs_rebuilt = true;
            (rebuild_epochs(&segments), true)
        }
    };
    dirty |= cache.truncate_from_end(end_offset);
    if has_records {
        dirty |= cache.truncate_from_start(oldest);
    }
    if dirty {
        checkpoint::write_atomic(
            dir,
            LEADER_EPOCH_FILE,
            &checkpoint::render_epochs(&cache.pairs()),
        )?;
    }

    // 5. High watermark.
    let newest = end_offset as i64 - 1;
    let hw = match checkpoint::read_value::<i64>(&checkpoint::path(dir, HIGH_WATERMARK_FILE))? {
        Loaded::Value(v) => {
            if v > newest {
                report.checkpoint_problems.push(format!(
                    "{HIGH_WATERMARK_FILE}: {v} is beyond the newest offset {newest}; clamped"
                ));
            }
            v.clamp(-1, newest.max(-1))
        }
        Loaded::Missing => -1,
        Loaded::Damaged(why) => {
            report
                .checkpoint_problems
                .push(format!("{HIGH_WATERMARK_FILE}: {why}; starting from -1"));
            -1
        }
    };

    // 6. The log is about to accept writes: it is no longer cleanly shut down.
    if clean_path.exists() {
        fs::remove_file(&clean_path)
            .map_err(|e| LogError::io("remove clean-shutdown marker", &clean_path, e))?;
        sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))?;
    }

    for p in &report.checkpoint_problems {
        tracing::warn!(dir = %dir.display(), problem = %p, "commit log recovery");
    }
    report.segments = segments.len();
    report.oldest_offset = oldest;
    report.end_offset = end_offset;
    report.high_watermark = hw;
    report.duration = started.elapsed();

    let target = SyncTarget {
        file: active.seg.file.clone(),
        path: active.seg.paths.log.clone(),
        written: 0,
    };
    let (position_tx, _) = watch::channel(LogPosition {
        end_offset,
        high_watermark: hw,
        oldest_offset: oldest,
        truncations: 0,
        closed: false,
    });
    let inner = LogInner {
        dir: dir.to_path_buf(),
        config,
        storage,
        writer: Mutex::new(Writer::new(active)),
        segments: RwLock::new(Arc::new(segments)),
        end_offset: AtomicU64::new(end_offset),
        high_watermark: AtomicI64::new(hw),
        generation: AtomicU64::new(0),
        truncation_points: Mutex::new(Vec::new()),
        recovery_point: Mutex::new(0),
        position_tx,
        durability: Durability::new(target),
        closed: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        failure: Mutex::new(None),
        epochs: RwLock::new(cache),
        checkpointed_hw: Mutex::new(None),
        compaction_lock: Mutex::new(()),
        read_buffers: Mutex::new(Vec::new()),
        counters: Counters::default(),
        _lock: lock,
    };
    Ok((inner, report))
}
