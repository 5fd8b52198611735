//! Leader-epoch cache (Kafka KIP-101 / KIP-279 semantics).
//!
//! The cache maps each leader epoch to the **first offset written in that epoch** (`start_offset`, Kafka's
//! convention; Liftbridge stores the last offset *before* the epoch instead). A follower that becomes a
//! replica of a new leader asks the leader for
//! [`Log::end_offset_for_leader_epoch`](super::Log::end_offset_for_leader_epoch) of its own latest epoch
//! and truncates its log to the returned `end_offset` (removing `end_offset` and everything after it). That
//! is correct even when the follower's HW lags, which HW truncation (Liftbridge's fallback) is not.

/// One entry of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: u64,
    /// The first offset appended in this epoch.
    pub start_offset: u64,
}

/// Answer to "where does epoch E end?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The largest epoch `<=` the requested one that this log knows (or the requested epoch itself when it
    /// is older than every known epoch).
    pub epoch: u64,
    /// Exclusive end: the first offset *after* that epoch — the start offset of the next known epoch, or the
    /// log end offset when the epoch is the latest.
    pub end_offset: u64,
}

/// The in-memory cache. Persistence is done by the log (atomic checkpoint on every change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    /// Entries with strictly increasing epochs and non-decreasing start offsets.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Builds a cache from persisted `(epoch, start_offset)` pairs (already validated as increasing).
    pub fn from_pairs(pairs: &[(u64, u64)]) -> Self {
        LeaderEpochCache {
            entries: pairs
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        }
    }

    /// The entries as `(epoch, start_offset)` pairs, for the checkpoint file.
    pub fn pairs(&self) -> Vec<(u64, u64)> {
        self.entries
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// All entries.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Returns whether the cache changed.
    ///
    /// An epoch older than the latest is ignored (a deposed leader cannot rewrite history); the latest
    /// epoch again is a no-op unless it moves the start earlier; a newer epoch removes entries that claim to
    /// start at or after `start_offset` (they were never written or were truncated) and is appended.
    pub fn assign(&mut self, epoch: u64, start_offset: u64) -> bool {
        if let Some(latest) = self.entries.last_mut() {
            if epoch < latest.epoch {
                return false;
            }
            if epoch == latest.epoch {
                if start_offset < latest.start_offset {
                    latest.start_offset = start_offset;
                    return true;
                }
                return false;
            }
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// KIP-101 lookup: the end of the largest epoch `<= requested`. `None` when the cache is empty or the
    /// requested epoch is newer than every known epoch (Kafka's UNDEFINED answer).
    pub fn end_offset_for(&self, requested: u64, log_end_offset: u64) -> Option<EpochEndOffset> {
        let latest = self.entries.last()?;
        if requested == latest.epoch {
            return Some(EpochEndOffset {
                epoch: requested,
                end_offset: log_end_offset,
            });
        }
        let higher_idx = self.entries.partition_point(|e| e.epoch <= requested);
        let higher = self.entries.get(higher_idx)?;
        let floor = higher_idx.checked_sub(1).and_then(|i| self.entries.get(i));
        Some(EpochEndOffset {
            epoch: floor.map_or(requested, |f| f.epoch),
            end_offset: higher.start_offset,
        })
    }

    /// Removes entries starting at or after `end_offset` (the log was truncated to `end_offset`).
    pub fn truncate_from_end(&mut self, end_offset: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Drops entries wholly below `start_offset` (retention removed them); the newest of them is kept with
    /// its start moved up to `start_offset`, so the epoch of the oldest remaining record stays known.
    pub fn truncate_from_start(&mut self, start_offset: u64) -> bool {
        let below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if below == 0 {
            return false;
        }
        let Some(mut keep) = self.entries.get(below - 1).copied() else {
            return false;
        };
        if below == 1 && keep.start_offset == start_offset {
            return false;
        }
        keep.start_offset = start_offset;
        self.entries.drain(..below);
        self.entries.insert(0, keep);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(p: &[(u64, u64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_pairs(p)
    }

    #[test]
    fn assign_rules() {
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5));
        assert!(c.assign(3, 10));
        assert!(!c.assign(2, 20));
        // A newer epoch at an earlier offset removes entries that start at or after it.
        assert!(c.assign(4, 10));
        assert_eq!(c.pairs(), vec![(1, 0), (4, 10)]);
    }

    #[test]
    fn end_offset_kip101() {
        let c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(
            c.end_offset_for(5, 33),
            Some(EpochEndOffset {
                epoch: 5,
                end_offset: 33
            })
        );
        assert_eq!(
            c.end_offset_for(3, 33),
            Some(EpochEndOffset {
                epoch: 3,
                end_offset: 20
            })
        );
        // Unknown epoch between known ones: the floor epoch and the next start.
        assert_eq!(
            c.end_offset_for(4, 33),
            Some(EpochEndOffset {
                epoch: 3,
                end_offset: 20
            })
        );
        // Older than every epoch: the requested epoch ends where the first known one starts.
        assert_eq!(
            c.end_offset_for(0, 33),
            Some(EpochEndOffset {
                epoch: 0,
                end_offset: 0
            })
        );
        assert_eq!(c.end_offset_for(6, 33), None);
        assert_eq!(LeaderEpochCache::default().end_offset_for(1, 0), None);
    }

    #[test]
    fn truncation() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(c.truncate_from_end(20));
        assert_eq!(c.pairs(), vec![(1, 0), (3, 10)]);
        assert!(!c.truncate_from_end(20));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.pairs(), vec![(3, 12)]);
        assert!(!c.truncate_from_start(12));
        assert!(!c.truncate_from_start(5));
    }
}
