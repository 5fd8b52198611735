//! The write side: appends, rolls, truncation, index flushing, epochs, close. Everything here runs under
//! the log's write mutex except the group-commit fsync (see `durability`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::checkpoint::{self, CLEAN_SHUTDOWN_FILE, LEADER_EPOCH_FILE, RECOVERY_POINT_FILE};
use super::config::SyncPolicy;
use super::durability::{SealedSegment, SyncError, SyncTarget};
use super::error::{LogError, Result};
use super::file::{LogFile, OpenMode, sync_dir};
use super::index::{
    INDEX_ENTRY_LEN, IndexBuilder, OffsetEntry, SegmentIndex, TimeEntry, encode_offsets,
    encode_times,
};
use super::leader_epoch::LeaderEpochCache;
use super::record::{FrameError, NewRecord, check_record, encode_into};
use super::segment::{Segment, SegmentPaths, SegmentState, Step};
use super::{AppendInfo, LogInner, MaintenanceReport};

/// Buffered index entries are written once this many are pending (and on roll, sync, maintain and close).
const INDEX_FLUSH_ENTRIES: usize = 256;

/// Writer-side state of the active segment.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    /// The segment (shared with readers).
    pub seg: Arc<Segment>,
    /// Its `.index` file.
    pub index_file: Arc<dyn LogFile>,
    /// Its `.timeindex` file.
    pub time_file: Arc<dyn LogFile>,
    /// Offset entries already written to `index_file`.
    pub flushed_offsets: usize,
    /// Time entries already written to `time_file`.
    pub flushed_times: usize,
    /// Places new index entries.
    pub builder: IndexBuilder,
    /// Relative offset and position of the last record (for the seal entries).
    pub last_record: Option<(u32, u64)>,
    /// Length of the `.log` file, which exceeds the segment's data by the preallocated zeros.
    pub allocated: u64,
}

/// Per-record facts gathered before a batch is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecMeta {
    offset: u64,
    ts: i64,
    len: usize,
}

/// State guarded by the write mutex.
#[derive(Debug)]
pub(crate) struct Writer {
    /// The active segment.
    pub active: ActiveSegment,
    /// Reused encode buffer (no allocation per batch once warm).
    buf: Vec<u8>,
    /// Reused per-record facts.
    meta: Vec<RecMeta>,
    /// Reused index entries of the current batch.
    new_offsets: Vec<OffsetEntry>,
    /// Reused time entries of the current batch.
    new_times: Vec<TimeEntry>,
    /// Bytes written since open (monotonic; the group-commit mark).
    pub written: u64,
    /// An index write failed: the next close must not claim a clean shutdown.
    pub index_dirty: bool,
    /// Zeros for preallocation (allocated on first use).
    zeros: Vec<u8>,
}

impl Writer {
    /// A writer for `active`.
    pub fn new(active: ActiveSegment) -> Self {
        Writer {
            active,
            buf: Vec::new(),
            meta: Vec::new(),
            new_offsets: Vec::new(),
            new_times: Vec::new(),
            written: 0,
            index_dirty: false,
            zeros: Vec::new(),
        }
    }
}

/// Current wall-clock time in nanoseconds since the Unix epoch.
pub(crate) fn now_ns(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Opens the index files of a segment for writing.
pub(crate) fn open_index_files(
    inner_storage: &dyn super::file::Storage,
    paths: &SegmentPaths,
    mode: OpenMode,
) -> Result<(Arc<dyn LogFile>, Arc<dyn LogFile>)> {
    let index = inner_storage
        .open(&paths.index, mode)
        .map_err(|e| LogError::io("open index", &paths.index, e))?;
    let time = inner_storage
        .open(&paths.time, mode)
        .map_err(|e| LogError::io("open time index", &paths.time, e))?;
    Ok((index, time))
}

/// Rewrites both index files of a segment from `index` and fsyncs them.
pub(crate) fn write_index_files(
    index_file: &dyn LogFile,
    time_file: &dyn LogFile,
    paths: &SegmentPaths,
    index: &SegmentIndex,
) -> Result<()> {
    let mut buf = Vec::new();
    encode_offsets(&index.offsets, &mut buf);
    let w = |f: &dyn LogFile, b: &[u8], path: &PathBuf| -> Result<()> {
        f.set_len(0)
            .and_then(|()| f.write_all_at(b, 0))
            .and_then(|()| f.set_len(b.len() as u64))
            .and_then(|()| f.sync_data())
            .map_err(|e| LogError::io("write index", path, e))
    };
    w(index_file, &buf, &paths.index)?;
    buf.clear();
    encode_times(&index.times, &mut buf);
    w(time_file, &buf, &paths.time)
}

/// Writes buffered index entries of the active segment. A failure is logged and remembered (the index is
/// only a hint; the next open repairs it) but does not fail the caller.
fn flush_active_index(inner: &LogInner, w: &mut Writer) {
    let a = &mut w.active;
    let (offsets, times) = {
        let idx = a.seg.index.read();
        (
            idx.offsets
                .get(a.flushed_offsets..)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            idx.times
                .get(a.flushed_times..)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
        )
    };
    if !offsets.is_empty() {
        let mut buf = Vec::with_capacity(offsets.len() * INDEX_ENTRY_LEN);
        encode_offsets(&offsets, &mut buf);
        let at = (a.flushed_offsets * INDEX_ENTRY_LEN) as u64;
        match a.index_file.write_all_at(&buf, at) {
            Ok(()) => a.flushed_offsets += offsets.len(),
            Err(e) => {
                tracing::warn!(path = %a.seg.paths.index.display(), error = %e, "index write failed; it will be rebuilt on the next open");
                let _ = a.index_file.set_len(at);
                w.index_dirty = true;
                return;
            }
        }
    }
    if !times.is_empty() {
        let mut buf = Vec::with_capacity(times.len() * INDEX_ENTRY_LEN);
        encode_times(&times, &mut buf);
        let at = (a.flushed_times * INDEX_ENTRY_LEN) as u64;
        match a.time_file.write_all_at(&buf, at) {
            Ok(()) => a.flushed_times += times.len(),
            Err(e) => {
                tracing::warn!(path = %a.seg.paths.time.display(), error = %e, "time index write failed; it will be rebuilt on the next open");
                let _ = a.time_file.set_len(at);
                w.index_dirty = true;
            }
        }
    }
    let _ = inner;
}

/// Writes buffered index entries (public `sync` and `maintain` path).
pub(crate) fn flush_indexes(inner: &LogInner) -> Result<()> {
    let mut w = inner.writer.lock();
    if inner.closed.load(Ordering::Acquire) {
        return Ok(());
    }
    flush_active_index(inner, &mut w);
    Ok(())
}

/// Runs the group commit up to `target` and maps its errors (an fsync error fails the log); moves the recovery
/// point past the sealed segments it made durable.
fn sync_to(inner: &LogInner, target: u64) -> Result<()> {
    let generation = inner.generation.load(Ordering::Acquire);
    match inner
        .durability
        .sync_to(target, || inner.failed.load(Ordering::Acquire))
    {
        Ok(Some(point)) => {
            advance_recovery_point(inner, generation, point);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(sync_failed(inner, e)),
    }
}

/// The error of a failed fsync (which fails the log).
fn sync_failed(inner: &LogInner, e: SyncError) -> LogError {
    match e {
        SyncError::Failed => inner.check_writable().err().unwrap_or(LogError::Failed {
            reason: "fsync failed".into(),
        }),
        SyncError::Io(path, e) => {
            inner.set_failed(format!("fsync of {} failed: {e}", path.display()));
            LogError::io("fsync segment", path, e)
        }
    }
}

/// Writes the recovery point `point` after an fsync made every segment before it durable — unless a truncation
/// happened since `generation` was read (it wrote its own), a later fsync already wrote a newer point, or an
/// index file of a sealed segment failed its fsync (an unclean open then checks those indexes by scanning).
fn advance_recovery_point(inner: &LogInner, generation: u64, point: u64) {
    let mut written = inner.recovery_point.lock();
    if inner.generation.load(Ordering::Acquire) != generation
        || *written >= point
        || inner.durability.index_sync_failed()
    {
        return;
    }
    match checkpoint::write_value(&inner.dir, RECOVERY_POINT_FILE, point) {
        Ok(()) => *written = point,
        Err(e) => {
            tracing::warn!(error = %e, "could not write the recovery point; the next unclean open scans more")
        }
    }
}

/// Fsyncs the sealed segments still waiting (truncation and close, under the write lock, before they mark the
/// log durable); returns the new recovery point, if any.
fn settle_sealed(inner: &LogInner) -> Result<Option<u64>> {
    inner.durability.settle().map_err(|e| sync_failed(inner, e))
}

/// Fsyncs everything written so far.
pub(crate) fn sync_written(inner: &LogInner) -> Result<()> {
    let target = inner.durability.written();
    sync_to(inner, target)
}

/// Interval policy: fsync when due. Under every policy: fsync when a roll sealed a segment since the last fsync.
pub(crate) fn sync_if_due(inner: &LogInner) -> Result<bool> {
    let elapsed = matches!(inner.config.sync, SyncPolicy::Interval(d)
        if inner.durability.since_last_sync() >= d);
    if (elapsed && inner.durability.synced() < inner.durability.written())
        || inner.durability.has_sealed()
    {
        sync_written(inner)?;
        return Ok(true);
    }
    if elapsed {
        // Idle: everything written is durable as of now, so the interval restarts here (otherwise the first
        // append after a quiet spell would find it long elapsed and fsync on the append path).
        inner.durability.restart_interval_if_idle();
    }
    Ok(false)
}

/// Applies the sync policy after a batch was written (called without the write lock).
fn after_append(inner: &LogInner, written: u64) -> Result<bool> {
    match inner.config.sync {
        SyncPolicy::Never => Ok(false),
        SyncPolicy::Always => sync_to(inner, written).map(|()| true),
        SyncPolicy::Interval(d) => {
            // The owner's ticker runs this fsync off the append path (`Log::sync_if_due`; an fsync here stalls
            // every publisher of the partition). An append runs it only when no ticker did for a whole extra
            // interval (a late or missing ticker).
            if inner.durability.since_last_sync() >= d.saturating_mul(2) {
                sync_to(inner, written).map(|()| true)
            } else {
                Ok(false)
            }
        }
    }
}

/// Persists `cache` and installs it (the in-memory cache changes only if the file was written).
fn store_epochs(inner: &LogInner, cache: LeaderEpochCache) -> Result<()> {
    checkpoint::write_atomic(
        &inner.dir,
        LEADER_EPOCH_FILE,
        &checkpoint::render_epochs(&cache.pairs()),
    )?;
    *inner.epochs.write() = cache;
    Ok(())
}

/// Creates a new empty segment with `base` (files created exclusively, directory fsynced).
fn create_segment(inner: &LogInner, base: u64) -> Result<ActiveSegment> {
    let paths = SegmentPaths::new(&inner.dir, base);
    let file = inner
        .storage
        .open(&paths.log, OpenMode::CreateNew)
        .map_err(|e| LogError::io("create segment", &paths.log, e))?;
    let (index_file, time_file) =
        match open_index_files(inner.storage.as_ref(), &paths, OpenMode::Create) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&paths.log);
                return Err(e);
            }
        };
    for f in [&index_file, &time_file] {
        if let Err(e) = f.set_len(0) {
            let _ = std::fs::remove_file(&paths.log);
            return Err(LogError::io("reset index", &paths.index, e));
        }
    }
    sync_dir(&inner.dir).map_err(|e| LogError::io("fsync directory", &inner.dir, e))?;
    let index = SegmentIndex::default();
    let builder = IndexBuilder::resume(inner.config.index_interval_bytes, &index, i64::MIN, 0);
    Ok(ActiveSegment {
        seg: Arc::new(Segment::new(
            base,
            paths,
            file,
            SegmentState::empty(base),
            index,
        )),
        index_file,
        time_file,
        flushed_offsets: 0,
        flushed_times: 0,
        builder,
        last_record: None,
        allocated: 0,
    })
}

/// Seals the active segment (seal entries, index flush) and starts a new one at `new_base`. The sealed segment is
/// fsynced by the next fsync of the log, not here (see the `durability` module): a roll does not wait for the disk.
fn roll(inner: &LogInner, w: &mut Writer, new_base: u64) -> Result<()> {
    let new_active = create_segment(inner, new_base)?;
    // Seal the old one: entries that make it self-describing, then flush its indexes.
    {
        let a = &mut w.active;
        if let Some((last_rel, last_pos)) = a.last_record {
            let mut idx = a.seg.index.write();
            let (o, t) = a.builder.seal_entries(&idx, last_rel, last_pos);
            idx.offsets.extend(o);
            idx.times.extend(t);
        }
    }
    flush_active_index(inner, w);
    if let Err(e) = trim_preallocation(&mut w.active) {
        let _ = unlink_segment(&new_active.seg.paths);
        inner.set_failed(format!("{e}"));
        return Err(e);
    }
    let old = &w.active;
    let sealed = SealedSegment {
        log: (old.seg.file.clone(), old.seg.paths.log.clone()),
        indexes: [
            (old.index_file.clone(), old.seg.paths.index.clone()),
            (old.time_file.clone(), old.seg.paths.time.clone()),
        ],
        next_base: new_base,
    };
    let new_seg = new_active.seg.clone();
    w.active = new_active;
    {
        let mut segs = inner.segments.write();
        let mut list: Vec<Arc<Segment>> = segs.as_ref().clone();
        list.push(new_seg.clone());
        *segs = Arc::new(list);
    }
    inner.durability.seal(
        sealed,
        SyncTarget {
            file: new_seg.file.clone(),
            path: new_seg.paths.log.clone(),
            written: w.written,
        },
    );
    inner.counters.rolls.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(dir = %inner.dir.display(), base = new_base, "rolled segment");
    Ok(())
}

/// Rolls before a batch if the active segment is full, too old, or cannot address the batch's offsets.
fn maybe_roll(
    inner: &LogInner,
    w: &mut Writer,
    first: u64,
    last: u64,
    batch_bytes: u64,
    now: i64,
) -> Result<()> {
    let seg = &w.active.seg;
    if seg.is_empty() {
        if last - seg.base > u64::from(u32::MAX) {
            return Err(LogError::NonContiguousAppend {
                expected: seg.base,
                found: first,
            });
        }
        return Ok(());
    }
    let cfg = &inner.config;
    let full = seg.len().saturating_add(batch_bytes) > cfg.segment_max_bytes;
    let old = cfg.segment_max_age.is_some_and(|age| {
        let started = seg.first_write();
        started != i64::MIN && now.saturating_sub(started) >= duration_ns(age)
    });
    let unaddressable = last - seg.base > u64::from(u32::MAX);
    if full || old || unaddressable {
        roll(inner, w, first)?;
    }
    Ok(())
}

/// Under `SyncPolicy::Always`, keeps at least half a chunk of zeros written beyond `end` so that batches
/// overwrite existing blocks. Failures are ignored (it is only an optimization; recovery trims zeros).
fn preallocate(inner: &LogInner, w: &mut Writer, end: u64) {
    let chunk = inner.config.preallocate_bytes;
    if inner.config.sync != SyncPolicy::Always || chunk == 0 {
        return;
    }
    let a = &mut w.active;
    if a.allocated >= end + chunk / 2 {
        return;
    }
    const ZEROS: usize = 1 << 20;
    if w.zeros.len() != ZEROS {
        w.zeros = vec![0u8; ZEROS];
    }
    let target = end + chunk;
    let mut at = a.allocated.max(end);
    while at < target {
        let n = ((target - at) as usize).min(ZEROS);
        if let Err(e) = a.seg.file.write_all_at(&w.zeros[..n], at) {
            tracing::debug!(error = %e, "preallocation failed");
            break;
        }
        at += n as u64;
    }
    a.allocated = at;
}

/// Cuts preallocated zeros off the active segment's file (before it is sealed or closed).
fn trim_preallocation(a: &mut ActiveSegment) -> Result<()> {
    let len = a.seg.len();
    if a.allocated > len {
        a.seg
            .file
            .set_len(len)
            .map_err(|e| LogError::io("trim segment", &a.seg.paths.log, e))?;
        a.allocated = len;
    }
    Ok(())
}

/// Writes `data` (records described by `meta`) at the end of the active segment and publishes it.
/// On a write error the file is cut back to where it was; if that fails too, the log enters the failed state.
fn write_batch(inner: &LogInner, w: &mut Writer, data: &[u8], now: i64) -> Result<AppendInfo> {
    let Writer {
        active,
        meta,
        new_offsets,
        new_times,
        ..
    } = w;
    let (Some(first), Some(last)) = (meta.first().copied(), meta.last().copied()) else {
        return Err(LogError::InvalidRecord {
            reason: "empty batch".into(),
        });
    };
    let seg = active.seg.clone();
    let pos0 = seg.len();
    let saved_builder = active.builder.clone();
    new_offsets.clear();
    new_times.clear();
    let mut pos = pos0;
    let mut max_ts = i64::MIN;
    for m in meta.iter() {
        // maybe_roll guaranteed that every offset is addressable from the base.
        let rel = (m.offset - seg.base) as u32;
        active
            .builder
            .on_record(rel, pos, m.ts, new_offsets, new_times);
        max_ts = max_ts.max(m.ts);
        pos += m.len as u64;
    }
    if let Err(e) = seg.file.write_all_at(data, pos0) {
        active.builder = saved_builder;
        let path = seg.paths.log.clone();
        active.allocated = pos0;
        match seg.file.set_len(pos0) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), error = %e, "append failed; partial write rolled back")
            }
            Err(e2) => inner.set_failed(format!(
                "write to {} failed ({e}) and could not be rolled back ({e2})",
                path.display()
            )),
        }
        return Err(LogError::io("write segment", path, e));
    }
    active.allocated = active.allocated.max(pos);
    if !new_offsets.is_empty() || !new_times.is_empty() {
        let mut idx = seg.index.write();
        idx.offsets.extend_from_slice(new_offsets);
        idx.times.extend_from_slice(new_times);
    }
    let last_pos = pos - last.len as u64;
    seg.publish_append(pos, last.offset + 1, max_ts, now);
    active.last_record = Some(((last.offset - seg.base) as u32, last_pos));
    let bytes = data.len() as u64;
    w.written += bytes;
    // The active file is already the durability target (set when the segment became active).
    inner.durability.set_written(w.written);
    inner.end_offset.store(last.offset + 1, Ordering::Release);
    let c = &inner.counters;
    c.appends.fetch_add(1, Ordering::Relaxed);
    c.records.fetch_add(w.meta.len() as u64, Ordering::Relaxed);
    c.bytes.fetch_add(bytes, Ordering::Relaxed);
    preallocate(inner, w, pos);
    let pending = {
        let idx = seg.index.read();
        (idx.offsets.len() - w.active.flushed_offsets).max(idx.times.len() - w.active.flushed_times)
    };
    if pending >= INDEX_FLUSH_ENTRIES {
        flush_active_index(inner, w);
    }
    // The caller publishes the new position (once, possibly together with a new high watermark).
    Ok(AppendInfo {
        first_offset: first.offset,
        last_offset: last.offset,
        records: w.meta.len(),
        bytes,
        segment_base_offset: seg.base,
        synced: false,
    })
}

/// What `append` does besides writing, beyond the plain `Log::append`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AppendMode {
    /// Move the high watermark to the batch's last offset, published together with the new end (one wake-up
    /// for readers). Under `SyncPolicy::Always` the watermark moves only after the fsync.
    pub commit: bool,
    /// Leave the fsync `SyncPolicy::Always` asks for to the caller (`Log::sync_to`).
    pub defer_sync: bool,
}

/// `Log::append` and its variants.
pub(crate) fn append(
    inner: &LogInner,
    epoch: u64,
    records: &[NewRecord],
    mode: AppendMode,
) -> Result<AppendInfo> {
    if records.is_empty() {
        return Err(LogError::InvalidRecord {
            reason: "empty batch".into(),
        });
    }
    let mut guard = inner.writer.lock();
    inner.check_writable()?;
    let w = &mut *guard;
    let max = inner.config.max_record_bytes;
    let first = inner.end_offset.load(Ordering::Acquire);
    w.meta.clear();
    let mut total = 0u64;
    for (i, r) in records.iter().enumerate() {
        let len = r.encoded_len()?;
        if len as u64 > max {
            return Err(LogError::RecordTooLarge {
                size: len as u64,
                max,
            });
        }
        total += len as u64;
        w.meta.push(RecMeta {
            offset: first + i as u64,
            ts: r.timestamp_ns,
            len,
        });
    }
    let latest = inner.epochs.read().latest();
    if let Some(l) = latest
        && epoch < l.epoch
    {
        return Err(LogError::StaleLeaderEpoch {
            epoch,
            latest: l.epoch,
        });
    }
    let last = first + records.len() as u64 - 1;
    let now = now_ns(SystemTime::now());
    maybe_roll(inner, w, first, last, total, now)?;
    if latest.is_none_or(|l| epoch > l.epoch) {
        let mut cache = inner.epochs.read().clone();
        cache.assign(epoch, first);
        store_epochs(inner, cache)?;
    }
    let mut buf = std::mem::take(&mut w.buf);
    buf.clear();
    for (r, m) in records.iter().zip(w.meta.iter()) {
        encode_into(&mut buf, m.offset, epoch, r, m.len);
    }
    let res = write_batch(inner, w, &buf, now);
    if buf.capacity() <= 64 * 1024 * 1024 {
        w.buf = buf;
    }
    let mut info = res?;
    let always = inner.config.sync == SyncPolicy::Always;
    let last = i64::try_from(info.last_offset).unwrap_or(i64::MAX);
    if mode.commit && !always {
        inner.high_watermark.store(last, Ordering::Release);
    }
    inner.publish_position();
    let written = w.written;
    drop(guard);
    if always && mode.defer_sync {
        return Ok(info);
    }
    info.synced = after_append(inner, written)?;
    if mode.commit && always {
        set_high_watermark(inner, last)?;
    }
    Ok(info)
}

/// `Log::sync_to`: waits until every byte up to `mark` (a `Log::written_mark`) is durable.
pub(crate) fn sync_to_mark(inner: &LogInner, mark: u64) -> Result<()> {
    sync_to(inner, mark)
}

/// `Log::append_raw`.
pub(crate) fn append_raw(inner: &LogInner, bytes: &[u8]) -> Result<AppendInfo> {
    // Validate every record before taking the lock.
    let batch_path = || PathBuf::from("<replicated batch>");
    let mut meta = Vec::new();
    let mut epochs: Vec<(u64, u64)> = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let h = match check_record(&bytes[at..]) {
            Ok((h, _)) => h,
            Err(FrameError::Incomplete { .. }) => {
                return Err(LogError::corrupt(
                    batch_path(),
                    at as u64,
                    "batch ends inside a record",
                ));
            }
            Err(FrameError::Corrupt(reason)) => {
                return Err(LogError::corrupt(batch_path(), at as u64, reason));
            }
        };
        if let Some(prev) = meta.last().map(|m: &RecMeta| m.offset)
            && h.offset <= prev
        {
            return Err(LogError::NonContiguousAppend {
                expected: prev + 1,
                found: h.offset,
            });
        }
        if epochs.last().is_none_or(|&(e, _)| h.leader_epoch > e) {
            epochs.push((h.leader_epoch, h.offset));
        }
        meta.push(RecMeta {
            offset: h.offset,
            ts: h.timestamp_ns,
            len: h.total_len(),
        });
        at += h.total_len();
    }
    let (Some(first), Some(last)) = (meta.first().copied(), meta.last().copied()) else {
        return Err(LogError::InvalidRecord {
            reason: "empty batch".into(),
        });
    };
    if last.offset - first.offset > u64::from(u32::MAX) {
        return Err(LogError::NonContiguousAppend {
            expected: first.offset,
            found: last.offset,
        });
    }
    let mut guard = inner.writer.lock();
    inner.check_writable()?;
    let w = &mut *guard;
    let end = inner.end_offset.load(Ordering::Acquire);
    if first.offset < end {
        return Err(LogError::NonContiguousAppend {
            expected: end,
            found: first.offset,
        });
    }
    let now = now_ns(SystemTime::now());
    maybe_roll(inner, w, first.offset, last.offset, bytes.len() as u64, now)?;
    let mut cache = inner.epochs.read().clone();
    let mut changed = false;
    for (e, start) in epochs {
        if cache.latest().is_none_or(|l| e > l.epoch) {
            changed |= cache.assign(e, start);
        }
    }
    if changed {
        store_epochs(inner, cache)?;
    }
    w.meta = meta;
    let mut info = write_batch(inner, w, bytes, now)?;
    inner.publish_position();
    let written = w.written;
    drop(guard);
    info.synced = after_append(inner, written)?;
    Ok(info)
}

/// `Log::set_high_watermark`.
pub(crate) fn set_high_watermark(inner: &LogInner, hw: i64) -> Result<()> {
    let _w = inner.writer.lock();
    if inner.closed.load(Ordering::Acquire) {
        return Err(LogError::Closed);
    }
    let newest = inner.end_offset.load(Ordering::Acquire) as i64 - 1;
    if hw > newest {
        return Err(LogError::HighWatermarkBeyondEnd {
            requested: hw,
            newest,
        });
    }
    inner.high_watermark.store(hw.max(-1), Ordering::Release);
    inner.publish_position();
    Ok(())
}

/// `Log::assign_leader_epoch`.
pub(crate) fn assign_leader_epoch(inner: &LogInner, epoch: u64, start_offset: u64) -> Result<bool> {
    let _w = inner.writer.lock();
    inner.check_writable()?;
    let end = inner.end_offset.load(Ordering::Acquire);
    if start_offset > end {
        return Err(LogError::OffsetOutOfRange {
            requested: start_offset,
            oldest: inner.oldest_offset(),
            end,
        });
    }
    let mut cache = inner.epochs.read().clone();
    if !cache.assign(epoch, start_offset) {
        return Ok(false);
    }
    store_epochs(inner, cache)?;
    Ok(true)
}

/// `Log::maintain`.
pub(crate) fn maintain(inner: &LogInner, now: SystemTime) -> Result<MaintenanceReport> {
    let mut report = MaintenanceReport::default();
    {
        let mut guard = inner.writer.lock();
        inner.check_writable()?;
        let w = &mut *guard;
        let seg = &w.active.seg;
        if let Some(age) = inner.config.segment_max_age
            && !seg.is_empty()
            && seg.first_write() != i64::MIN
            && now_ns(now).saturating_sub(seg.first_write()) >= duration_ns(age)
        {
            let base = inner.end_offset.load(Ordering::Acquire);
            roll(inner, w, base)?;
            report.rolled = true;
        }
        flush_active_index(inner, w);
    }
    report.synced = sync_if_due(inner)?;
    Ok(report)
}

/// Unlinks a segment's files: the log first, so that a crash in between leaves only orphan indexes (which
/// recovery deletes), never a log without its deletion being visible.
pub(crate) fn unlink_segment(paths: &SegmentPaths) -> Result<()> {
    for p in [&paths.log, &paths.index, &paths.time] {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("delete segment file", p, e)),
        }
    }
    Ok(())
}

/// Re-derives the writer state of `seg` cut at `offset`: finds the cut position, the last record kept and
/// the maximum timestamp.
struct CutPoint {
    pos: u64,
    last: Option<(u64, u64)>,
    max_ts: i64,
    max_ts_rel: u32,
}

fn find_cut(seg: &Segment, offset: u64) -> Result<CutPoint> {
    let len = seg.len();
    if offset <= seg.base {
        return Ok(CutPoint {
            pos: 0,
            last: None,
            max_ts: i64::MIN,
            max_ts_rel: 0,
        });
    }
    let (start, mut max_ts, mut max_ts_rel) = {
        let idx = seg.index.read();
        let start = idx.floor(offset - 1 - seg.base, len);
        let t = idx
            .times
            .iter()
            .rfind(|t| u64::from(t.rel) < offset - seg.base)
            .copied();
        (start, t.map_or(i64::MIN, |t| t.ts), t.map_or(0, |t| t.rel))
    };
    let mut last = None;
    let pos = seg.visit(start.pos, len, 256 * 1024, |_, _, rpos, h, _| {
        if h.offset < offset {
            last = Some((h.offset, rpos));
            if h.timestamp_ns > max_ts {
                max_ts = h.timestamp_ns;
                max_ts_rel = (h.offset - seg.base) as u32;
            }
            Step::Next
        } else {
            Step::StopBefore
        }
    })?;
    Ok(CutPoint {
        pos,
        last,
        max_ts,
        max_ts_rel,
    })
}

/// `Log::truncate`.
pub(crate) fn truncate(inner: &LogInner, offset: u64) -> Result<()> {
    let mut guard = inner.writer.lock();
    inner.check_writable()?;
    let w = &mut *guard;
    let end = inner.end_offset.load(Ordering::Acquire);
    if offset >= end {
        return Ok(());
    }
    flush_active_index(inner, w);
    // Segments sealed by a roll are fsynced first: the log is marked durable below, and the recovery point
    // written below must not count a segment that is not durable.
    let mut recovery_point = inner.recovery_point.lock();
    settle_sealed(inner)?;
    let snap = inner.snapshot();
    let Some(first) = snap.first() else {
        return Ok(());
    };
    let keep = if offset < first.base {
        0
    } else {
        snap.partition_point(|s| s.base <= offset)
    };
    // The recovery point goes back to the segment being cut before anything changes (everything before it is
    // durable: settled above). Left beyond the cut, it would let an unclean open trust segments rolled after
    // this truncation before their fsync; if it cannot be written, nothing is truncated.
    let cut_base = if keep == 0 {
        offset
    } else {
        snap[keep - 1].base
    };
    checkpoint::write_value(&inner.dir, RECOVERY_POINT_FILE, cut_base)?;
    *recovery_point = cut_base;
    // Remove later segments from the list first (newest first on disk), so a crash leaves a prefix.
    {
        let mut segs = inner.segments.write();
        let list: Vec<Arc<Segment>> = snap.iter().take(keep.max(1)).cloned().collect();
        *segs = Arc::new(list);
    }
    for s in snap.iter().skip(keep.max(1)).rev() {
        if let Err(e) = unlink_segment(&s.paths) {
            inner.set_failed(format!("truncation could not delete a segment: {e}"));
            return Err(e);
        }
    }
    let new_active = if keep == 0 {
        // Everything goes: delete the first segment too and restart at `offset`.
        if let Err(e) = unlink_segment(&first.paths) {
            inner.set_failed(format!("truncation could not delete a segment: {e}"));
            return Err(e);
        }
        let a = create_segment(inner, offset)?;
        *inner.segments.write() = Arc::new(vec![a.seg.clone()]);
        a
    } else {
        let seg = snap[keep - 1].clone();
        let cut = find_cut(&seg, offset)?;
        if let Err(e) = seg
            .file
            .set_len(cut.pos)
            .and_then(|()| seg.file.sync_data())
        {
            inner.set_failed(format!(
                "truncation of {} failed: {e}",
                seg.paths.log.display()
            ));
            return Err(LogError::io("truncate segment", &seg.paths.log, e));
        }
        inner.durability.fsyncs.fetch_add(1, Ordering::Relaxed);
        let index = {
            let mut idx = seg.index.write();
            idx.truncate_from(offset - seg.base);
            idx.clone()
        };
        let (index_file, time_file) = if Arc::ptr_eq(&seg, &w.active.seg) {
            (w.active.index_file.clone(), w.active.time_file.clone())
        } else {
            open_index_files(inner.storage.as_ref(), &seg.paths, OpenMode::Create)?
        };
        if let Err(e) =
            write_index_files(index_file.as_ref(), time_file.as_ref(), &seg.paths, &index)
        {
            tracing::warn!(error = %e, "index rewrite after truncation failed; it will be rebuilt on the next open");
            w.index_dirty = true;
        }
        let first_write = match (cut.pos, seg.first_write()) {
            (0, _) => i64::MIN,
            (_, i64::MIN) => now_ns(SystemTime::now()),
            (_, t) => t,
        };
        seg.publish_truncate(SegmentState {
            len: cut.pos,
            next_offset: cut.last.map_or(seg.base, |(o, _)| o + 1),
            max_ts: cut.max_ts,
            first_write,
        });
        let builder = IndexBuilder::resume(
            inner.config.index_interval_bytes,
            &index,
            cut.max_ts,
            cut.max_ts_rel,
        );
        ActiveSegment {
            last_record: cut.last.map(|(o, p)| ((o - seg.base) as u32, p)),
            allocated: cut.pos,
            flushed_offsets: index.offsets.len(),
            flushed_times: index.times.len(),
            seg,
            index_file,
            time_file,
            builder,
        }
    };
    let _ = sync_dir(&inner.dir);
    inner.durability.set_target(SyncTarget {
        file: new_active.seg.file.clone(),
        path: new_active.seg.paths.log.clone(),
        written: w.written,
    });
    inner.durability.mark_synced(w.written);
    w.active = new_active;
    inner.end_offset.store(offset, Ordering::Release);
    let hw = inner.high_watermark.load(Ordering::Acquire);
    if hw >= offset as i64 {
        inner
            .high_watermark
            .store(offset as i64 - 1, Ordering::Release);
    }
    let mut cache = inner.epochs.read().clone();
    if cache.truncate_from_end(offset) {
        store_epochs(inner, cache)?;
    }
    inner.truncation_points.lock().push(offset);
    inner.generation.fetch_add(1, Ordering::AcqRel);
    inner.publish_position();
    tracing::info!(dir = %inner.dir.display(), offset, "truncated log");
    Ok(())
}

/// `Log::close`.
pub(crate) fn close(inner: &LogInner) -> Result<()> {
    let mut guard = inner.writer.lock();
    if inner.closed.load(Ordering::Acquire) {
        return Ok(());
    }
    let w = &mut *guard;
    flush_active_index(inner, w);
    let mut recovery_point = inner.recovery_point.lock();
    if let Err(e) = settle_sealed(inner) {
        // Closed all the same (readers and maintenance see it), but neither durable nor clean.
        inner.closed.store(true, Ordering::Release);
        inner.publish_position();
        return Err(e);
    }
    let trimmed = trim_preallocation(&mut w.active);
    let a = &w.active;
    let mut clean = trimmed.is_ok()
        && !w.index_dirty
        && !inner.durability.index_sync_failed()
        && !inner.failed.load(Ordering::Acquire);
    for (f, p) in [
        (&a.index_file, &a.seg.paths.index),
        (&a.time_file, &a.seg.paths.time),
    ] {
        if let Err(e) = f.sync_data() {
            tracing::warn!(path = %p.display(), error = %e, "index fsync failed on close");
            clean = false;
        }
    }
    inner.closed.store(true, Ordering::Release);
    inner.publish_position();
    inner.durability.fsyncs.fetch_add(1, Ordering::Relaxed);
    a.seg
        .file
        .sync_data()
        .map_err(|e| LogError::io("fsync segment", &a.seg.paths.log, e))?;
    inner.durability.mark_synced(w.written);
    let end = inner.end_offset.load(Ordering::Acquire);
    checkpoint::write_value(&inner.dir, RECOVERY_POINT_FILE, end)?;
    *recovery_point = end;
    {
        let mut written = inner.checkpointed_hw.lock();
        let hw = inner.high_watermark.load(Ordering::Acquire);
        checkpoint::write_value(&inner.dir, checkpoint::HIGH_WATERMARK_FILE, hw)?;
        *written = Some(hw);
    }
    if clean {
        checkpoint::write_value(&inner.dir, CLEAN_SHUTDOWN_FILE, end)?;
    }
    Ok(())
}

/// `Log::delete`.
pub(crate) fn delete(inner: &LogInner) -> Result<()> {
    let _w = inner.writer.lock();
    inner.closed.store(true, Ordering::Release);
    inner.publish_position();
    std::fs::remove_dir_all(&inner.dir)
        .map_err(|e| LogError::io("delete log directory", &inner.dir, e))
}
