//! Typed errors of the commit log.
//!
//! Every failure the log can report has its own variant so that callers (the partition actor, the
//! replication code, the gRPC layer) can react precisely: a corrupt record is not an I/O error, and a
//! follower's non-contiguous append is not a disk problem.

use std::io;
use std::path::PathBuf;

/// Result type of the commit log.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Everything that can go wrong in the commit log.
///
/// The enum is `#[non_exhaustive]` so that new failure modes can be added without breaking callers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file system operation failed. `op` names what the log was doing, `path` the file involved.
    #[error("commit log I/O error: {op} {path}: {source}")]
    Io {
        /// What the log was doing (for example "write segment" or "fsync index").
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Data read from disk failed a checksum or framing check. The bytes are never returned as records.
    #[error("corrupt commit log data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The file holding the damaged bytes.
        path: PathBuf,
        /// Byte position of the damaged record (or index entry) in that file.
        position: u64,
        /// What check failed.
        reason: String,
    },

    /// A record (or batch) exceeds `LogConfig::max_record_bytes`; nothing was written.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Encoded size of the offending record in bytes (header included).
        size: u64,
        /// The configured limit.
        max: u64,
    },

    /// A record cannot be encoded in the on-disk format (for example a header name longer than 65535 bytes).
    #[error("invalid record: {reason}")]
    InvalidRecord {
        /// Why the record was rejected.
        reason: String,
    },

    /// The requested offset is outside the log (below the oldest or above the end) where the caller asked for
    /// an exact position (for example a tail reader whose position was deleted by retention).
    #[error("offset {requested} is out of range (oldest {oldest}, end {end})")]
    OffsetOutOfRange {
        /// The offset that was asked for.
        requested: u64,
        /// The oldest offset the log holds.
        oldest: u64,
        /// The log end offset (next offset to be written).
        end: u64,
    },

    /// A replicated batch (`append_raw`) does not continue the log: its offsets are not strictly increasing or
    /// start below the log end offset.
    #[error("non-contiguous append: expected an offset >= {expected}, found {found}")]
    NonContiguousAppend {
        /// The smallest offset that would have been accepted.
        expected: u64,
        /// The offset found in the batch.
        found: u64,
    },

    /// A reader's position was removed by a truncation (replica truncation after a leader change).
    #[error("position {position} was truncated away (log now ends at {end_offset})")]
    Truncated {
        /// The reader's next offset.
        position: u64,
        /// The first offset that was removed by the truncation.
        end_offset: u64,
    },

    /// `set_high_watermark` was asked to move the high watermark past the newest offset.
    #[error("high watermark {requested} is beyond the newest offset {newest}")]
    HighWatermarkBeyondEnd {
        /// The requested high watermark.
        requested: i64,
        /// The newest offset in the log (-1 when empty).
        newest: i64,
    },

    /// An append carried a leader epoch older than the newest one the log knows (a deposed leader).
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    StaleLeaderEpoch {
        /// The epoch of the rejected append.
        epoch: u64,
        /// The newest epoch in the leader-epoch cache.
        latest: u64,
    },

    /// The log was closed or deleted.
    #[error("commit log is closed")]
    Closed,

    /// An earlier write or fsync failed in a way that could not be rolled back; the log refuses appends until
    /// it is reopened (reopening runs recovery).
    #[error("commit log is in a failed state until reopened: {reason}")]
    Failed {
        /// What failed first.
        reason: String,
    },

    /// Another `Log` (in this or another process) has the directory open.
    #[error("commit log directory {path} is locked by another user")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// The directory holds segment files this log did not write (no or a different `log-format` marker), for
    /// example a Liftbridge (Go) data directory. Nothing was changed.
    #[error("{path} is not a commit log of this format: {reason}")]
    UnknownFormat {
        /// The directory or marker file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },

    /// The configuration is unusable.
    #[error("invalid commit log configuration: {0}")]
    InvalidConfig(String),
}

impl LogError {
    /// Builds an [`LogError::Io`] from an operation name, a path and the OS error.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds a [`LogError::Corrupt`].
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> Self {
        LogError::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }

    /// True for errors that mean "this data on disk is damaged".
    pub fn is_corruption(&self) -> bool {
        matches!(self, LogError::Corrupt { .. })
    }
}
