//! Group commit: fsyncs happen outside the write lock and one fsync covers every batch written before it.
//!
//! The writer counts every byte it appends (`written`, monotonic since open) and, after each write, records
//! which file is active and how many bytes had been written by then. A caller that needs its batch durable
//! waits until `synced >= its written mark`. If nobody is syncing, it becomes the syncer: it snapshots the
//! (file, written) pair, calls `fdatasync` without holding any lock, and publishes the new `synced` mark,
//! waking everyone whose batch it covered. Bytes in older segments are durable because a roll fsyncs the old
//! segment before the active file changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

#[derive(Debug)]
struct SyncState {
    /// Every byte up to this written mark is durable.
    synced: u64,
    /// Someone is in `fdatasync` right now.
    syncing: bool,
    /// When the last successful fsync finished.
    last_sync: Instant,
}

/// Shared group-commit state of a log.
#[derive(Debug)]
pub(crate) struct Durability {
    state: Mutex<SyncState>,
    cond: Condvar,
    /// The active file; replaced only when it changes (roll, truncation).
    target: Mutex<SyncTarget>,
    /// Bytes written since open: stored by the writer after every batch (no lock on the append path). A syncer
    /// loads it *before* it reads `target`, so the file it then fsyncs is the one holding those bytes, or a newer
    /// one (bytes before a roll were fsynced by the roll).
    written: AtomicU64,
    /// Number of fsyncs of segment data issued (group commit, rolls, truncation, close).
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

/// Outcome of [`Durability::sync_to`].
pub(crate) enum SyncOutcome {
    /// Already durable.
    Covered,
    /// This call ran the fsync.
    Synced,
}

impl Durability {
    /// Starts with everything up to `written` durable.
    pub fn new(target: SyncTarget) -> Self {
        Durability {
            state: Mutex::new(SyncState {
                synced: target.written,
                syncing: false,
                last_sync: Instant::now(),
            }),
            cond: Condvar::new(),
            written: AtomicU64::new(target.written),
            target: Mutex::new(target),
            fsyncs: AtomicU64::new(0),
        }
    }

    /// Records a new active file and the written mark at that point (writer only, under the write lock).
    pub fn set_target(&self, target: SyncTarget) {
        let written = target.written;
        *self.target.lock() = target;
        self.written.store(written, Ordering::Release);
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

    /// Marks everything up to `written` durable (after the writer fsynced it itself, e.g. on roll).
    pub fn mark_synced(&self, written: u64) {
        let mut st = self.state.lock();
        if written > st.synced {
            st.synced = written;
        }
        st.last_sync = Instant::now();
        drop(st);
        self.cond.notify_all();
    }

    /// Time since the last successful fsync.
    pub fn since_last_sync(&self) -> std::time::Duration {
        self.state.lock().last_sync.elapsed()
    }

    /// Waits until every byte up to `target` is durable, running the fsync if nobody else is.
    /// `is_failed` is consulted while waiting so that waiters give up once the log failed.
    pub fn sync_to(
        &self,
        target: u64,
        is_failed: impl Fn() -> bool,
    ) -> Result<SyncOutcome, SyncError> {
        loop {
            let mut st = self.state.lock();
            if st.synced >= target {
                return Ok(SyncOutcome::Covered);
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
            let t = self.target.lock().clone();
            let res = t.file.sync_data();
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            let mut st = self.state.lock();
            st.syncing = false;
            if res.is_ok() {
                if written > st.synced {
                    st.synced = written;
                }
                st.last_sync = Instant::now();
            }
            drop(st);
            self.cond.notify_all();
            match res {
                Ok(()) if written >= target => return Ok(SyncOutcome::Synced),
                Ok(()) => continue,
                Err(e) => return Err(SyncError::Io(t.path, e)),
            }
        }
    }
}
