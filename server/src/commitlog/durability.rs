//! Group commit: fsyncs happen outside the write lock and one fsync covers every batch written before it.
//!
//! The writer counts every byte it appends (`written`, monotonic since open) and, after each write, records
//! which file is active and how many bytes had been written by then. A caller that needs its batch durable
//! waits until `synced >= its written mark`. If nobody is syncing, it becomes the syncer: it snapshots the
//! (file, written) pair, calls `fdatasync` without holding any lock, and publishes the new `synced` mark,
//! waking everyone whose batch it covered.
//!
//! A roll does not fsync the segment it seals (an fsync of a full segment took ~100 ms here, and it ran on the
//! append path): the segment joins a list of sealed segments waiting for their fsync ([`Durability::seal`]),
//! and the next fsync of any kind — a group commit, the owner's ticker ([`Durability::has_sealed`] makes
//! `sync_if_due` run under every policy), truncation, close — fsyncs them before the active file. Only then
//! does the recovery point move past them (the caller writes it from what [`Durability::sync_to`] returns), as in Kafka,
//! where a rolled segment is flushed in the background and the recovery point follows the flush.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::file::LogFile;

/// What the next fsync must cover.
#[derive(Debug, Clone)]
pub(crate) struct SyncTarget {
    /// The active segment's file.
    pub file: Arc<dyn LogFile>,
    /// Path of that file (for errors).
    pub path: std::path::PathBuf,
    /// Bytes written (since open) when the target was recorded.
    pub written: u64,
}

/// A segment sealed by a roll whose files have not been fsynced since.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    /// The segment's data file and its path.
    pub log: (Arc<dyn LogFile>, PathBuf),
    /// Its offset and time index files and their paths.
    pub indexes: [(Arc<dyn LogFile>, PathBuf); 2],
    /// The base offset of the segment after it: once this one is durable, the recovery point may move there.
    pub next_base: u64,
}

/// What the next fsync must cover: the sealed segments still waiting, oldest first, then the active file.
#[derive(Debug)]
struct Files {
    sealed: Vec<SealedSegment>,
    active: SyncTarget,
}

#[derive(Debug)]
struct SyncState {
    /// Every byte up to this written mark is durable.
    synced: u64,
    /// Someone is in `fdatasync` right now.
    syncing: bool,
    /// When the last successful fsync finished.
    last_sync: Instant,
    /// An fsync failed: nothing is ever marked durable again (after a failed fsync Linux may have dropped the
    /// dirty pages, so a later fsync that succeeds proves nothing). Set before `syncing` is cleared, so no
    /// waiter can become the next syncer in between.
    poisoned: bool,
}

/// Shared group-commit state of a log.
#[derive(Debug)]
pub(crate) struct Durability {
    state: Mutex<SyncState>,
    cond: Condvar,
    /// The active file (replaced only when it changes: roll, truncation) and the sealed segments waiting.
    files: Mutex<Files>,
    /// Bytes written since open: stored by the writer after every batch (no lock on the append path). A syncer
    /// loads it *before* it reads `files`, so the bytes are in the active file it then fsyncs, in a newer one, or
    /// in a segment sealed since — which is on the sealed list it takes with the active file.
    written: AtomicU64,
    /// An index file of a sealed segment failed its fsync (the log still works; a close is then not clean, so
    /// the next open checks the indexes).
    index_sync_failed: AtomicBool,
    /// Number of fsyncs of segment data issued (group commit, sealed segments, truncation, close).
    pub fsyncs: AtomicU64,
}

/// Why [`Durability::sync_to`] failed.
#[derive(Debug)]
pub(crate) enum SyncError {
    /// The log entered the failed state while waiting.
    Failed,
    /// The fsync itself failed.
    Io(std::path::PathBuf, std::io::Error),
}

impl Durability {
    /// Starts with everything up to `written` durable.
    pub fn new(target: SyncTarget) -> Self {
        Durability {
            state: Mutex::new(SyncState {
                synced: target.written,
                syncing: false,
                last_sync: Instant::now(),
                poisoned: false,
            }),
            cond: Condvar::new(),
            written: AtomicU64::new(target.written),
            files: Mutex::new(Files {
                sealed: Vec::new(),
                active: target,
            }),
            index_sync_failed: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
        }
    }

    /// Records a new active file and the written mark at that point (writer only, under the write lock).
    pub fn set_target(&self, target: SyncTarget) {
        let written = target.written;
        self.files.lock().active = target;
        self.written.store(written, Ordering::Release);
    }

    /// Records a roll (writer only, under the write lock): `sealed` waits for the next fsync, `target` is the new
    /// active file. Both change together, so a syncer sees the sealed segment on the list or as its active file.
    pub fn seal(&self, sealed: SealedSegment, target: SyncTarget) {
        let written = target.written;
        let mut files = self.files.lock();
        files.sealed.push(sealed);
        files.active = target;
        drop(files);
        self.written.store(written, Ordering::Release);
    }

    /// Whether sealed segments wait for their fsync.
    pub fn has_sealed(&self) -> bool {
        !self.files.lock().sealed.is_empty()
    }

    /// Whether an index file of a sealed segment failed its fsync since open.
    pub fn index_sync_failed(&self) -> bool {
        self.index_sync_failed.load(Ordering::Acquire)
    }

    /// Records the written mark after a batch went to the active file (writer only, under the write lock).
    pub fn set_written(&self, written: u64) {
        self.written.store(written, Ordering::Release);
    }

    /// The latest written mark.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The durable mark.
    pub fn synced(&self) -> u64 {
        self.state.lock().synced
    }

    /// Marks everything up to `written` durable (after the writer fsynced it itself: truncation, close).
    pub fn mark_synced(&self, written: u64) {
        let mut st = self.state.lock();
        if written > st.synced {
            st.synced = written;
        }
        st.last_sync = Instant::now();
        drop(st);
        self.cond.notify_all();
    }

    /// When everything written is durable, counts now as the time of the last fsync (an idle log).
    pub fn restart_interval_if_idle(&self) {
        let mut st = self.state.lock();
        if !st.poisoned && st.synced >= self.written.load(Ordering::Acquire) {
            st.last_sync = Instant::now();
        }
    }

    /// Time since the last successful fsync.
    pub fn since_last_sync(&self) -> std::time::Duration {
        self.state.lock().last_sync.elapsed()
    }

    /// Waits until every byte up to `target` is durable and no sealed segment waits for its fsync, running the
    /// fsync if nobody else is. `is_failed` is consulted while waiting so that waiters give up once the log
    /// failed. Returns the base offset after the newest sealed segment this call fsynced, if it fsynced any: the
    /// new recovery point.
    pub fn sync_to(
        &self,
        target: u64,
        is_failed: impl Fn() -> bool,
    ) -> Result<Option<u64>, SyncError> {
        // Sealed segments this call fsynced, over every round: the recovery point it may move to.
        let mut sealed_to: Option<u64> = None;
        loop {
            let mut st = self.state.lock();
            if st.poisoned {
                return Err(SyncError::Failed);
            }
            // Covered only once no sealed segment waits either (an idle log still gets them fsynced).
            if st.synced >= target && self.files.lock().sealed.is_empty() {
                return Ok(sealed_to);
            }
            if is_failed() {
                return Err(SyncError::Failed);
            }
            if st.syncing {
                self.cond.wait(&mut st);
                continue;
            }
            st.syncing = true;
            drop(st);
            let written = self.written.load(Ordering::Acquire);
            let (sealed, active) = {
                let mut files = self.files.lock();
                (std::mem::take(&mut files.sealed), files.active.clone())
            };
            let res = self.sync_sealed(&sealed).and_then(|round| {
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
                active
                    .file
                    .sync_data()
                    .map(|()| round)
                    .map_err(|e| (active.path, e))
            });
            let mut st = self.state.lock();
            match &res {
                Ok(round) => {
                    if written > st.synced {
                        st.synced = written;
                    }
                    st.last_sync = Instant::now();
                    sealed_to = sealed_to.max(*round);
                }
                Err(_) => st.poisoned = true,
            }
            st.syncing = false;
            drop(st);
            self.cond.notify_all();
            if let Err((path, e)) = res {
                return Err(SyncError::Io(path, e));
            }
        }
    }

    /// Fsyncs the sealed segments still waiting, and nothing else, after any fsync in progress finished (so
    /// every sealed segment is durable when it returns); for truncation and close, which then mark the active
    /// file durable themselves. Returns the new recovery point, if there were any.
    pub fn settle(&self) -> Result<Option<u64>, SyncError> {
        let mut st = self.state.lock();
        while st.syncing {
            self.cond.wait(&mut st);
        }
        if st.poisoned {
            return Err(SyncError::Failed);
        }
        st.syncing = true;
        drop(st);
        let sealed = std::mem::take(&mut self.files.lock().sealed);
        let res = self.sync_sealed(&sealed);
        let mut st = self.state.lock();
        st.poisoned |= res.is_err();
        st.syncing = false;
        drop(st);
        self.cond.notify_all();
        res.map_err(|(path, e)| SyncError::Io(path, e))
    }

    /// Fsyncs `sealed` (data files; an index file that fails is only noted); returns the base offset after the
    /// newest of them.
    fn sync_sealed(
        &self,
        sealed: &[SealedSegment],
    ) -> Result<Option<u64>, (PathBuf, std::io::Error)> {
        for segment in sealed {
            for (file, path) in &segment.indexes {
                if let Err(e) = file.sync_data() {
                    tracing::warn!(path = %path.display(), error = %e, "index fsync of a sealed segment failed");
                    self.index_sync_failed.store(true, Ordering::Release);
                }
            }
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            let (file, path) = &segment.log;
            file.sync_data().map_err(|e| (path.clone(), e))?;
        }
        Ok(sealed.last().map(|s| s.next_base))
    }
}
