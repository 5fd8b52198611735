//! Fault injection for tests (also usable from integration tests and by the server's own fault tests).
//!
//! [`FaultyStorage`] wraps the real file system and can make writes fail after a number of bytes (the
//! failing write still writes its prefix, like a disk that fills up mid-write), make the n-th write fail,
//! make truncation (`set_len`) fail — so a partial write cannot be rolled back — and make `fdatasync` fail.
//! It also counts writes and fsyncs.
//!
//! ```
//! use std::sync::Arc;
//! use liftbridge_server::commitlog::{Log, LogConfig, NewRecord, testing::FaultyStorage};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let faults = FaultyStorage::new();
//! let (log, _) = Log::open_with_storage(dir.path(), LogConfig::default(), Arc::new(faults.clone())).unwrap();
//! faults.fail_writes_after(10); // the disk is full after 10 more bytes
//! assert!(log.append(1, &[NewRecord::new(0, "hello")]).is_err());
//! faults.heal();
//! assert_eq!(log.append(1, &[NewRecord::new(0, "hello")]).unwrap().first_offset, 0);
//! ```

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::file::{LogFile, OpenMode, OsStorage, Storage};

/// Which files faults apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultTarget {
    /// Only segment data (`.log` files, including compaction's `.log.cleaned`).
    #[default]
    SegmentData,
    /// Only index files.
    Indexes,
    /// Every file opened through the storage.
    All,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Files faults apply to.
    target: Mutex<FaultTarget>,
    /// Remaining bytes before writes fail with "no space".
    bytes_left: Mutex<Option<u64>>,
    /// Writes to targeted files before one fails.
    writes_until_failure: Mutex<Option<u64>>,
    /// `set_len` fails on targeted files.
    fail_set_len: AtomicBool,
    /// `sync_data` fails on targeted files.
    fail_sync: AtomicBool,
    /// Writes to targeted files.
    writes: AtomicU64,
    /// Fsyncs of targeted files.
    syncs: AtomicU64,
    /// Failures injected so far.
    injected: AtomicU64,
}

/// A [`Storage`] that injects faults; cheap to clone (clones share the fault plan).
#[derive(Debug, Clone)]
pub struct FaultyStorage {
    /// The real storage underneath.
    inner: Arc<dyn Storage>,
    /// Shared fault plan and counters.
    state: Arc<FaultState>,
}

impl Default for FaultyStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultyStorage {
    /// Wraps the real file system, with no fault armed.
    pub fn new() -> Self {
        FaultyStorage {
            inner: Arc::new(OsStorage),
            state: Arc::new(FaultState::default()),
        }
    }

    /// Chooses which files faults (and counters) apply to.
    pub fn target(&self, target: FaultTarget) {
        *self.state.target.lock() = target;
    }

    /// After `bytes` more bytes, writes fail with "no space left on device"; the write that crosses the
    /// limit writes its prefix first.
    pub fn fail_writes_after(&self, bytes: u64) {
        *self.state.bytes_left.lock() = Some(bytes);
    }

    /// The `n`-th write from now (1 = the next) fails without writing anything; later writes succeed.
    pub fn fail_nth_write(&self, n: u64) {
        *self.state.writes_until_failure.lock() = Some(n.max(1));
    }

    /// Makes `set_len` (truncation, used to roll back a partial write) fail or succeed.
    pub fn fail_set_len(&self, on: bool) {
        self.state.fail_set_len.store(on, Ordering::SeqCst);
    }

    /// Makes `fdatasync` fail or succeed.
    pub fn fail_sync(&self, on: bool) {
        self.state.fail_sync.store(on, Ordering::SeqCst);
    }

    /// Disarms every fault.
    pub fn heal(&self) {
        *self.state.bytes_left.lock() = None;
        *self.state.writes_until_failure.lock() = None;
        self.fail_set_len(false);
        self.fail_sync(false);
    }

    /// Writes to targeted files so far.
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }

    /// Fsyncs of targeted files so far.
    pub fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::SeqCst)
    }

    /// Failures injected so far.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }
}

impl Storage for FaultyStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>> {
        let file = self.inner.open(path, mode)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_data = name.ends_with(".log") || name.ends_with(".log.cleaned");
        Ok(Arc::new(FaultyFile {
            file,
            is_data,
            state: self.state.clone(),
        }))
    }
}

/// A file whose operations consult the shared fault plan.
#[derive(Debug)]
struct FaultyFile {
    file: Arc<dyn LogFile>,
    is_data: bool,
    state: Arc<FaultState>,
}

impl FaultyFile {
    fn targeted(&self) -> bool {
        match *self.state.target.lock() {
            FaultTarget::SegmentData => self.is_data,
            FaultTarget::Indexes => !self.is_data,
            FaultTarget::All => true,
        }
    }

    fn injected(&self, what: &str) -> io::Error {
        self.state.injected.fetch_add(1, Ordering::SeqCst);
        io::Error::new(
            io::ErrorKind::StorageFull,
            format!("injected fault: {what}"),
        )
    }
}

impl LogFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.file.read_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if !self.targeted() {
            return self.file.write_all_at(buf, pos);
        }
        self.state.writes.fetch_add(1, Ordering::SeqCst);
        {
            let mut n = self.state.writes_until_failure.lock();
            if let Some(left) = n.as_mut() {
                *left -= 1;
                if *left == 0 {
                    *n = None;
                    return Err(self.injected("write failed"));
                }
            }
        }
        let mut left = self.state.bytes_left.lock();
        if let Some(l) = left.as_mut() {
            if (buf.len() as u64) > *l {
                let prefix = usize::try_from(*l).unwrap_or(0).min(buf.len());
                *l = 0;
                drop(left);
                self.file.write_all_at(&buf[..prefix], pos)?;
                return Err(self.injected("no space left on device"));
            }
            *l -= buf.len() as u64;
        }
        drop(left);
        self.file.write_all_at(buf, pos)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.targeted() && self.state.fail_set_len.load(Ordering::SeqCst) {
            return Err(self.injected("set_len failed"));
        }
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.targeted() {
            self.state.syncs.fetch_add(1, Ordering::SeqCst);
            if self.state.fail_sync.load(Ordering::SeqCst) {
                return Err(self.injected("fsync failed"));
            }
        }
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
}
