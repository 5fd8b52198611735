//! The file seam: every byte of segment and index data goes through [`LogFile`], and every segment file is
//! opened through [`Storage`].
//!
//! Production uses [`OsStorage`] (positioned reads and writes on `std::fs::File`). Tests wrap it with
//! [`testing::FaultyStorage`](super::testing::FaultyStorage) to make writes, truncations or fsyncs fail on
//! demand, which is how "disk full in the middle of a batch" is exercised without a full disk.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One open segment or index file. All access is positioned (`pread`/`pwrite`), so readers and the writer
/// never share a file cursor and readers need no lock.
pub trait LogFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos` (may have written a prefix when it fails).
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Forces written data to stable storage (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file; fail if it already exists.
    CreateNew,
    /// Create the file if needed, truncating nothing.
    Create,
    /// Open an existing file for reading and writing.
    Existing,
}

/// Opens files for the log. A trait so that tests can inject faults into every file the log uses.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Opens `path` for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn LogFile>> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        match mode {
            OpenMode::CreateNew => {
                opts.create_new(true);
            }
            OpenMode::Create => {
                opts.create(true);
            }
            OpenMode::Existing => {}
        }
        let file = opts.open(path)?;
        // A directory opened read-only succeeds on Linux; opening it read-write fails with EISDIR, but be
        // explicit so that a directory in place of a segment is always an error.
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        Ok(Arc::new(OsFile { file }))
    }
}

/// A `std::fs::File` behind [`LogFile`].
#[derive(Debug)]
pub struct OsFile {
    /// The open file descriptor.
    file: File,
}

impl LogFile for OsFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(buf, pos)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// Reads exactly as many bytes as are available up to `buf.len()` at `pos`, retrying short reads; returns
/// the number of bytes read (less than `buf.len()` only at end of file).
pub(crate) fn read_full_at(file: &dyn LogFile, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], pos + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Fsyncs a directory so that renames, creations and deletions inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
