//! Retention: deleting whole sealed segments, oldest first.
//!
//! A sealed segment is deleted when any rule says so, and deletion stops at the first segment no rule
//! applies to (only a prefix of the log is ever deleted, never the active segment):
//! - **age**: the segment's newest record timestamp is more than `retention_max_age` before `now`;
//! - **bytes**: the log (all segments) is larger than `retention_max_bytes`;
//! - **messages**: the log spans more than `retention_max_messages` offsets (end offset − segment base).
//!
//! Like Liftbridge, limits are upper bounds for the sealed part: after a pass, the log holds at most the
//! limit unless the active segment alone exceeds it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::LogInner;
use super::checkpoint::{self, LEADER_EPOCH_FILE};
use super::error::{LogError, Result};
use super::writer::{now_ns, unlink_segment};

/// What a retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Base offsets of the deleted segments.
    pub deleted_segments: Vec<u64>,
    /// Bytes of the deleted segments.
    pub deleted_bytes: u64,
    /// Segments deleted because of their age.
    pub by_age: usize,
    /// Segments deleted because of the byte limit (and not their age).
    pub by_bytes: usize,
    /// Segments deleted because of the message limit (and neither age nor bytes).
    pub by_messages: usize,
    /// Oldest offset after the pass.
    pub oldest_offset: u64,
}

/// `Log::enforce_retention`.
pub(crate) fn enforce(inner: &LogInner, now: SystemTime) -> Result<RetentionReport> {
    let cfg = &inner.config;
    let mut report = RetentionReport::default();
    let doomed = {
        let _w = inner.writer.lock();
        inner.check_writable()?;
        let snap = inner.snapshot();
        let sealed = snap.len().saturating_sub(1);
        let end = inner.end_offset.load(Ordering::Acquire);
        let now = now_ns(now);
        let mut total: u64 = snap.iter().map(|s| s.len()).sum();
        let mut n = 0;
        while n < sealed {
            let Some(seg) = snap.get(n) else { break };
            let by_age = cfg.retention_max_age.is_some_and(|age| {
                let max = seg.max_ts();
                let age = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
                max != i64::MIN && now.saturating_sub(max) > age
            });
            let by_bytes = cfg.retention_max_bytes.is_some_and(|max| total > max);
            let by_messages = cfg
                .retention_max_messages
                .is_some_and(|max| end.saturating_sub(seg.base) > max);
            if by_age {
                report.by_age += 1;
            } else if by_bytes {
                report.by_bytes += 1;
            } else if by_messages {
                report.by_messages += 1;
            } else {
                break;
            }
            total -= seg.len();
            report.deleted_segments.push(seg.base);
            report.deleted_bytes += seg.len();
            n += 1;
        }
        if n == 0 {
            report.oldest_offset = inner.oldest_offset();
            return Ok(report);
        }
        let remaining: Vec<_> = snap.iter().skip(n).cloned().collect();
        let oldest = remaining.first().map_or(end, |s| s.base);
        *inner.segments.write() = Arc::new(remaining);
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
        report.oldest_offset = oldest;
        snap.iter().take(n).cloned().collect::<Vec<_>>()
    };
    // Unlink outside the write lock; readers holding the segments keep reading the open files.
    let mut first_err: Option<LogError> = None;
    for seg in doomed {
        if let Err(e) = unlink_segment(&seg.paths) {
            tracing::warn!(error = %e, "retention could not delete a segment; it will be retried");
            first_err.get_or_insert(e);
        }
    }
    tracing::debug!(dir = %inner.dir.display(), deleted = report.deleted_segments.len(), "retention pass");
    match first_err {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
