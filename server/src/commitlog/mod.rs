//! The commit log: the segmented, checksummed, crash-recovering storage of one stream partition.
//!
//! # Layout
//!
//! - [`mod.rs`](self): [`Log`], the cheap cloneable handle, and the value types of its API.
//! - [`config`]: [`LogConfig`] (Liftbridge defaults), [`SyncPolicy`], [`RecoveryScan`].
//! - [`record`]: the record codec ([`NewRecord`] in, [`Record`] out; CRC-32C framed, big-endian).
//! - `segment`: one `.log` file plus its in-memory sparse index, shared with readers through `Arc`.
//! - [`index`]: the `.index` / `.timeindex` entry format, validation and lookups.
//! - `writer`: appends, rolls, truncation, index flushing (everything under the write lock).
//! - `durability`: group commit (fsync outside the write lock, one fsync for many batches).
//! - [`recovery`]: `Log::open` — leftover cleanup, tail scan or full scan, index repair, [`RecoveryReport`].
//! - [`reader`]: forward [`Reader`], [`ReverseReader`], async [`TailReader`], raw reads for followers,
//!   timestamp lookup.
//! - [`retention`]: deleting whole sealed segments by age, bytes and message count.
//! - [`compaction`]: keeping the newest record per key up to the high watermark.
//! - `checkpoint`: atomically rewritten text files (HW, recovery point, epochs, clean marker).
//! - [`leader_epoch`]: the KIP-101 leader-epoch cache.
//! - [`file`](mod@file): the [`LogFile`]/[`Storage`] seam every segment byte goes through.
//! - [`testing`]: [`FaultyStorage`](testing::FaultyStorage), failing writes, truncations and fsyncs on demand.
//! - [`error`]: [`LogError`], the typed errors.
//!
//! # Concurrency
//!
//! The partition actor is the only writer; its calls are serialized by a synchronous mutex that is never
//! held across an `.await`. Readers take no lock for I/O: they clone an `Arc` snapshot of the segment list,
//! then use positioned reads. Each segment publishes how many bytes are complete with a release store, and
//! readers never read beyond that. Async readers wait on a [`tokio::sync::watch`] channel of [`LogPosition`].
//!
//! The on-disk format is documented in `docs/storage.md`.
#![deny(missing_docs)]

pub mod compaction;
pub mod config;
mod durability;
pub mod error;
pub mod file;
pub mod index;
pub mod leader_epoch;
pub mod reader;
pub mod record;
pub mod recovery;
pub mod retention;
pub mod testing;

mod checkpoint;
mod segment;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

pub use checkpoint::{
    CLEAN_SHUTDOWN_FILE, FORMAT_FILE, HIGH_WATERMARK_FILE, LEADER_EPOCH_FILE, RECOVERY_POINT_FILE,
};
pub use compaction::CompactionReport;
pub use config::{LogConfig, RecoveryScan, SyncPolicy};
pub use error::{LogError, Result};
pub use file::{LogFile, OpenMode, OsStorage, Storage};
pub use leader_epoch::{EpochEndOffset, EpochEntry};
pub use reader::{ReadBound, Reader, ReverseReader, TailReader};
pub use record::{NewRecord, Record};
pub use recovery::RecoveryReport;
pub use retention::RetentionReport;

use durability::Durability;
use leader_epoch::LeaderEpochCache;
use segment::Segment;
use writer::Writer;

/// Where the log stands; broadcast on a watch channel after every append, high-watermark change,
/// truncation, retention pass and close, so async readers can wait without polling or locking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// Next offset to be written (log end offset, LEO).
    pub end_offset: u64,
    /// Last committed offset (inclusive); -1 when nothing is committed.
    pub high_watermark: i64,
    /// Oldest offset still in the log.
    pub oldest_offset: u64,
    /// Number of truncations since open; a reader that saw a different value re-checks its position.
    pub truncations: u64,
    /// The log was closed or deleted.
    pub closed: bool,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record of the batch.
    pub first_offset: u64,
    /// Offset of the last record of the batch.
    pub last_offset: u64,
    /// Number of records.
    pub records: usize,
    /// Bytes written to the segment.
    pub bytes: u64,
    /// Base offset of the segment that received the batch.
    pub segment_base_offset: u64,
    /// Whether the batch was fsynced before returning (policy `Always`, or an `Interval` that was due).
    pub synced: bool,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Successful `append`/`append_raw` calls.
    pub appends: u64,
    /// Records appended.
    pub records: u64,
    /// Bytes appended to segments.
    pub bytes: u64,
    /// Fsyncs of segment data (group commits, segments sealed by rolls, truncations, close).
    pub fsyncs: u64,
    /// Bytes written since open that are known durable.
    pub synced_bytes: u64,
    /// Bytes written since open.
    pub written_bytes: u64,
    /// Segment rolls since open.
    pub rolls: u64,
}

/// Description of one segment, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Base offset (file name).
    pub base_offset: u64,
    /// Offset after the last record in the segment.
    pub next_offset: u64,
    /// Size of the `.log` file data in bytes.
    pub size_bytes: u64,
    /// Largest record timestamp (`None` when empty).
    pub max_timestamp_ns: Option<i64>,
    /// Path of the `.log` file.
    pub path: PathBuf,
}

/// Result of a [`Log::maintain`] pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// The active segment was rolled because of its age.
    pub rolled: bool,
    /// An interval fsync was due and ran.
    pub synced: bool,
}

/// Monotonic counters kept by the log.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    appends: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    rolls: AtomicU64,
}

/// Shared state behind every [`Log`] handle.
#[derive(Debug)]
pub(crate) struct LogInner {
    /// The partition directory.
    dir: PathBuf,
    /// Configuration the log was opened with.
    config: LogConfig,
    /// Opens segment and index files (the fault-injection seam).
    storage: Arc<dyn Storage>,
    /// Serializes every mutation (appends, rolls, truncation, retention, compaction swaps).
    writer: Mutex<Writer>,
    /// Snapshot of the segments, oldest first; the last one is active. Readers clone the `Arc`.
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    /// Log end offset.
    end_offset: AtomicU64,
    /// High watermark (inclusive, -1 = none).
    high_watermark: AtomicI64,
    /// Truncation counter.
    generation: AtomicU64,
    /// Offset each truncation cut to, indexed by generation - 1.
    truncation_points: Mutex<Vec<u64>>,
    /// Serializes recovery point writes (fsyncs that made sealed segments durable, truncation, close); holds the
    /// value this `Log` last wrote (0 before the first), so a slower syncer never moves it back.
    recovery_point: Mutex<u64>,
    /// Broadcasts [`LogPosition`].
    position_tx: watch::Sender<LogPosition>,
    /// Group commit.
    durability: Durability,
    /// Set by close/delete.
    closed: AtomicBool,
    /// Set when a write or fsync failed in a way that could not be undone.
    failed: AtomicBool,
    /// Why the log failed.
    failure: Mutex<Option<String>>,
    /// Leader-epoch cache (mutated under the write lock, read by anyone).
    epochs: RwLock<LeaderEpochCache>,
    /// Serializes high watermark checkpoint writes that happen outside the write lock; holds the value last
    /// written (`None` until this `Log` wrote one), so an unchanged high watermark is not rewritten.
    checkpointed_hw: Mutex<Option<i64>>,
    /// Serializes compaction passes (their rewrite phase runs outside the write lock).
    compaction_lock: Mutex<()>,
    /// Read buffers handed back by readers, reused once the records cut from them are dropped.
    read_buffers: Mutex<Vec<bytes::BytesMut>>,
    /// Counters.
    counters: Counters,
    /// Held for the life of the log: an exclusive lock on `<dir>/.lock`.
    _lock: std::fs::File,
}

/// A partition's commit log. Cheap to clone (an `Arc`), `Send + Sync`.
///
/// See the [module documentation](self) for the layout and the concurrency model.
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<LogInner>,
}

impl Log {
    /// Opens (creating if needed) the log in `dir` and recovers it. See [`recovery`] for the rules.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<(Log, RecoveryReport)> {
        Self::open_with_storage(dir, config, Arc::new(OsStorage))
    }

    /// Like [`Log::open`], with every segment and index file opened through `storage` (fault injection).
    pub fn open_with_storage(
        dir: impl AsRef<Path>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<(Log, RecoveryReport)> {
        let (inner, report) = recovery::open(dir.as_ref(), config, storage)?;
        Ok((
            Log {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Appends a batch as the leader in `leader_epoch`. The batch is encoded into one buffer and written
    /// with one write; offsets are assigned consecutively from [`Log::end_offset`]. A record larger than
    /// `max_record_bytes` fails the whole batch before anything is written. A newer epoch is recorded in the
    /// leader-epoch cache; an older one is rejected ([`LogError::StaleLeaderEpoch`]).
    pub fn append(&self, leader_epoch: u64, records: &[NewRecord]) -> Result<AppendInfo> {
        writer::append(
            &self.inner,
            leader_epoch,
            records,
            writer::AppendMode::default(),
        )
    }

    /// Like [`Log::append`], then moves the high watermark to the batch's last offset — for a leader whose
    /// in-sync replicas are itself alone. Readers are woken once for both. Under [`SyncPolicy::Always`] the high
    /// watermark moves after the fsync.
    pub fn append_committed(&self, leader_epoch: u64, records: &[NewRecord]) -> Result<AppendInfo> {
        let mode = writer::AppendMode {
            commit: true,
            defer_sync: false,
        };
        writer::append(&self.inner, leader_epoch, records, mode)
    }

    /// Like [`Log::append`], but under [`SyncPolicy::Always`] returns without the fsync: the caller makes the
    /// batch durable with [`Log::sync_to`]`(`[`Log::written_mark`]`())` — typically on another thread while it
    /// appends the next batch (pipelined group commit) — and only then treats it as committed. Under the other
    /// policies it is [`Log::append`].
    pub fn append_deferred(&self, leader_epoch: u64, records: &[NewRecord]) -> Result<AppendInfo> {
        let mode = writer::AppendMode {
            commit: false,
            defer_sync: true,
        };
        writer::append(&self.inner, leader_epoch, records, mode)
    }

    /// The group-commit mark of everything appended so far (bytes written since open), for [`Log::sync_to`].
    pub fn written_mark(&self) -> u64 {
        self.inner.durability.written()
    }

    /// Waits until everything up to `mark` (from [`Log::written_mark`]) is durable, running one fsync for all
    /// callers waiting at the same time (group commit). Blocking: call it off the async runtime.
    pub fn sync_to(&self, mark: u64) -> Result<()> {
        writer::sync_to_mark(&self.inner, mark)
    }

    /// Appends records exactly as a leader stored them (replication follower path). Every record is
    /// CRC-checked, offsets must be strictly increasing and start at or after [`Log::end_offset`] (gaps from
    /// compaction are allowed). Leader epochs newer than the cache's latest are recorded.
    pub fn append_raw(&self, bytes: &[u8]) -> Result<AppendInfo> {
        writer::append_raw(&self.inner, bytes)
    }

    /// Oldest offset in the log (the first segment's base offset).
    pub fn oldest_offset(&self) -> u64 {
        self.inner.oldest_offset()
    }

    /// Newest offset in the log, -1 when the log has never held a record.
    pub fn newest_offset(&self) -> i64 {
        self.end_offset() as i64 - 1
    }

    /// Next offset to be assigned (log end offset).
    pub fn end_offset(&self) -> u64 {
        self.inner.end_offset.load(Ordering::Acquire)
    }

    /// Last committed offset (inclusive), -1 when none.
    pub fn high_watermark(&self) -> i64 {
        self.inner.high_watermark.load(Ordering::Acquire)
    }

    /// Sets the high watermark. It may move backwards (a follower adopting its leader's HW) but not past
    /// [`Log::newest_offset`]. Call [`Log::checkpoint_high_watermark`] to persist it.
    pub fn set_high_watermark(&self, hw: i64) -> Result<()> {
        writer::set_high_watermark(&self.inner, hw)
    }

    /// Writes the high watermark to `replication-offset-checkpoint` atomically. Restored (clamped to the
    /// newest offset) by [`Log::open`].
    ///
    /// Does nothing when the high watermark has not changed since this `Log` last wrote it (an idle partition
    /// costs no file writes or fsyncs).
    pub fn checkpoint_high_watermark(&self) -> Result<()> {
        let mut written = self.inner.checkpointed_hw.lock();
        let hw = self.high_watermark();
        if *written == Some(hw) {
            return Ok(());
        }
        checkpoint::write_value(&self.inner.dir, HIGH_WATERMARK_FILE, hw)?;
        *written = Some(hw);
        Ok(())
    }

    /// The current position, as broadcast on [`Log::subscribe`].
    pub fn position(&self) -> LogPosition {
        *self.inner.position_tx.borrow()
    }

    /// A watch receiver that sees every change of [`LogPosition`].
    pub fn subscribe(&self) -> watch::Receiver<LogPosition> {
        self.inner.position_tx.subscribe()
    }

    /// Fsyncs everything appended so far (group commit: returns at once if another fsync already covered
    /// it). Also flushes buffered index entries.
    pub fn sync(&self) -> Result<()> {
        writer::flush_indexes(&self.inner)?;
        writer::sync_written(&self.inner)
    }

    /// Under [`SyncPolicy::Interval`], fsyncs if the interval has elapsed since the last fsync; under every
    /// policy, fsyncs when a roll sealed a segment since the last fsync (and then moves the recovery point).
    /// Returns whether it did. Meant for the owner's ticker, off the append path (it blocks: run it off the
    /// async runtime).
    pub fn sync_if_due(&self) -> Result<bool> {
        writer::sync_if_due(&self.inner)
    }

    /// Periodic housekeeping at time `now`: rolls the active segment when it is older than
    /// `segment_max_age`, flushes buffered index entries and runs a due interval fsync.
    pub fn maintain(&self, now: SystemTime) -> Result<MaintenanceReport> {
        writer::maintain(&self.inner, now)
    }

    /// Deletes whole sealed segments, oldest first, that fall outside the retention limits at time `now`.
    pub fn enforce_retention(&self, now: SystemTime) -> Result<RetentionReport> {
        retention::enforce(&self.inner, now)
    }

    /// Compacts sealed segments: keeps the newest record per key among offsets `<= hw`, every unkeyed
    /// record and everything above `hw`. `hw` is clamped to the current high watermark's bound (newest).
    pub fn compact(&self, hw: i64) -> Result<CompactionReport> {
        compaction::compact(&self.inner, hw)
    }

    /// Removes `offset` and everything after it (replica truncation). The high watermark and the
    /// leader-epoch cache are cut accordingly. Truncating at or past the end is a no-op; truncating below
    /// the oldest offset empties the log and restarts it at `offset`.
    pub fn truncate(&self, offset: u64) -> Result<()> {
        writer::truncate(&self.inner, offset)
    }

    /// Records that `epoch` starts at `start_offset` (a new leader calls it with [`Log::end_offset`]).
    /// Persisted atomically; returns whether the cache changed.
    pub fn assign_leader_epoch(&self, epoch: u64, start_offset: u64) -> Result<bool> {
        writer::assign_leader_epoch(&self.inner, epoch, start_offset)
    }

    /// KIP-101 lookup answering a follower's "last offset for leader epoch" request (Liftbridge's
    /// `LastOffsetForLeaderEpoch`), in Kafka's convention: `end_offset` is **exclusive** — the follower
    /// truncates to it. `None` when the epoch is newer than any known one or the cache is empty.
    pub fn end_offset_for_leader_epoch(&self, epoch: u64) -> Option<EpochEndOffset> {
        let end = self.end_offset();
        self.inner.epochs.read().end_offset_for(epoch, end)
    }

    /// The leader-epoch cache entries, oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.inner.epochs.read().entries().to_vec()
    }

    /// The newest leader epoch known to the log.
    pub fn latest_leader_epoch(&self) -> Option<u64> {
        self.inner.epochs.read().latest().map(|e| e.epoch)
    }

    /// Reads records with offsets in `[start_offset, limit_offset)`, at most about `max_bytes` of encoded
    /// records (the first record is always returned whole, so a reader always progresses). Offsets below the
    /// oldest start at the oldest; offsets in compaction gaps skip forward. Returns an empty vector at the end.
    pub fn read(
        &self,
        start_offset: u64,
        max_bytes: usize,
        limit_offset: u64,
    ) -> Result<Vec<Record>> {
        let mut r = self.reader(start_offset);
        r.read_batch(max_bytes, limit_offset)
    }

    /// A sequential reader starting at `start_offset`; it remembers its byte position between batches.
    pub fn reader(&self, start_offset: u64) -> Reader {
        Reader::new(self.clone(), start_offset)
    }

    /// Reads records from `start_offset` (clamped to the newest) towards the oldest, newest first, up to
    /// about `max_bytes` (at least one record).
    pub fn read_reverse(&self, start_offset: u64, max_bytes: usize) -> Result<Vec<Record>> {
        self.reverse_reader(start_offset).next_batch(max_bytes)
    }

    /// A reader going from `start_offset` (clamped to the newest) towards the oldest, in batches.
    pub fn reverse_reader(&self, start_offset: u64) -> ReverseReader {
        ReverseReader::new(self.clone(), start_offset)
    }

    /// An async reader that follows the log from `start_offset` (clamped up to the oldest offset), waiting
    /// for new records up to the high watermark or the log end.
    pub fn tail_reader(&self, start_offset: u64) -> TailReader {
        TailReader::new(self.clone(), start_offset)
    }

    /// The bytes of whole records from `start_offset` (records before it in the same segment are skipped)
    /// up to about `max_bytes` and before `limit_offset`, exactly as stored, for a follower's fetch. Stops at
    /// a segment boundary; every record is CRC-checked first. Empty at the end of the log.
    pub fn read_raw(
        &self,
        start_offset: u64,
        max_bytes: usize,
        limit_offset: u64,
    ) -> Result<bytes::Bytes> {
        reader::read_raw(self, start_offset, max_bytes, limit_offset)
    }

    /// The first offset whose record timestamp is `>= timestamp_ns`, or `None` if there is none. Correct
    /// for non-monotonic timestamps.
    pub fn offset_for_timestamp(&self, timestamp_ns: i64) -> Result<Option<u64>> {
        reader::offset_for_timestamp(self, timestamp_ns)
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.inner
            .snapshot()
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base,
                next_offset: s.next_offset(),
                size_bytes: s.len(),
                max_timestamp_ns: (s.max_ts() != i64::MIN).then(|| s.max_ts()),
                path: s.paths.log.clone(),
            })
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        let c = &self.inner.counters;
        LogStats {
            appends: c.appends.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            fsyncs: self.inner.durability.fsyncs.load(Ordering::Relaxed),
            synced_bytes: self.inner.durability.synced(),
            written_bytes: self.inner.durability.written(),
            rolls: c.rolls.load(Ordering::Relaxed),
        }
    }

    /// Whether an earlier failure put the log into the failed state (appends refused until reopened).
    pub fn is_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    /// Flushes indexes, fsyncs, checkpoints the high watermark and the recovery point and writes the
    /// clean-shutdown marker, so the next open only checks the tail. Further appends fail with
    /// [`LogError::Closed`]; reads of existing data keep working while handles exist.
    pub fn close(&self) -> Result<()> {
        writer::close(&self.inner)
    }

    /// Closes the log and removes its directory.
    pub fn delete(&self) -> Result<()> {
        writer::delete(&self.inner)
    }
}

impl LogInner {
    /// Clones the current segment list.
    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().clone()
    }

    /// Oldest offset.
    pub(crate) fn oldest_offset(&self) -> u64 {
        self.segments
            .read()
            .first()
            .map_or_else(|| self.end_offset.load(Ordering::Acquire), |s| s.base)
    }

    /// Broadcasts the current position (if it changed).
    pub(crate) fn publish_position(&self) {
        let pos = LogPosition {
            end_offset: self.end_offset.load(Ordering::Acquire),
            high_watermark: self.high_watermark.load(Ordering::Acquire),
            oldest_offset: self.oldest_offset(),
            truncations: self.generation.load(Ordering::Acquire),
            closed: self.closed.load(Ordering::Acquire),
        };
        self.position_tx.send_if_modified(|p| {
            if *p == pos {
                false
            } else {
                *p = pos;
                true
            }
        });
    }

    /// Fails with [`LogError::Closed`] or [`LogError::Failed`] when appends are not allowed.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(LogError::Failed {
                reason: self
                    .failure
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            });
        }
        Ok(())
    }

    /// A read buffer from the pool (or a new one).
    pub(crate) fn take_buffer(&self) -> bytes::BytesMut {
        self.read_buffers.lock().pop().unwrap_or_default()
    }

    /// Returns a read buffer to the pool (a few are kept).
    pub(crate) fn give_buffer(&self, buf: bytes::BytesMut) {
        let mut pool = self.read_buffers.lock();
        if pool.len() < 4 {
            pool.push(buf);
        }
    }

    /// Puts the log into the failed state.
    pub(crate) fn set_failed(&self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "commit log failed; appends refused until reopened");
        let mut f = self.failure.lock();
        if f.is_none() {
            *f = Some(reason);
        }
        self.failed.store(true, Ordering::Release);
    }

    /// The smallest truncation point among truncations with generation in `(since, now]`.
    pub(crate) fn truncated_since(&self, since: u64) -> Option<u64> {
        let pts = self.truncation_points.lock();
        let from = usize::try_from(since).unwrap_or(usize::MAX);
        pts.get(from..).and_then(|s| s.iter().copied().min())
    }
}
