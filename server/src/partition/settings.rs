//! A partition's effective settings: the server's `streams.*` defaults, overridden by what `CreateStream` set.

use std::time::Duration;

use crate::commitlog::{LogConfig, SyncPolicy};
use crate::config::{Config, SyncPolicyKind};
use crate::metadata::StreamSettings;

/// Settings the partition actor and the API consult.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSettings {
    /// The commit log's configuration.
    pub log: LogConfig,
    /// Optimistic concurrency control: messages must carry the offset they will get (or -1).
    pub optimistic_concurrency_control: bool,
    /// Pause after this long without messages; zero = never.
    pub auto_pause_time: Duration,
    /// Do not auto-pause while subscribed.
    pub auto_pause_disable_if_subscribers: bool,
    /// How often retention and compaction run.
    pub cleaner_interval: Duration,
    /// Largest message value accepted (`clustering.replication.max.bytes`); larger ones get `TOO_LARGE`.
    pub max_message_bytes: u64,
    /// Most messages per append.
    pub batch_max_messages: usize,
    /// How long the leader may wait to fill a batch.
    pub batch_max_time: Duration,
    /// Smallest ISR that may commit (stored; on one node the ISR is always this server).
    pub min_isr: i32,
}

fn ms(value: Option<i64>) -> Option<Duration> {
    value.map(|v| Duration::from_millis(u64::try_from(v).unwrap_or(0)))
}

fn positive(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0)
}

impl PartitionSettings {
    /// Resolves the settings of a stream on this server.
    pub fn resolve(config: &Config, stream: &StreamSettings) -> PartitionSettings {
        let defaults = &config.streams;
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let retention_max_age = match stream.retention_max_age_ms {
            Some(v) => ms(Some(v)).and_then(nonzero),
            None => nonzero(defaults.retention_max_age),
        };
        let segment_max_age = ms(stream.segment_max_age_ms)
            .and_then(nonzero)
            .or(defaults.segment_max_age)
            .or(retention_max_age)
            .map(|d| d.max(Duration::from_secs(1)));
        let sync = match defaults.sync_policy {
            SyncPolicyKind::Never => SyncPolicy::Never,
            SyncPolicyKind::Interval => SyncPolicy::Interval(defaults.sync_interval),
            SyncPolicyKind::Always => SyncPolicy::Always,
        };
        // The log's record limit includes our record header; the message limit is on the value, like Liftbridge.
        let max_message_bytes = config.clustering.replication_max_bytes;
        let log = LogConfig {
            segment_max_bytes: positive(stream.segment_max_bytes)
                .unwrap_or(defaults.segment_max_bytes)
                .max(1024),
            segment_max_age,
            retention_max_bytes: match stream.retention_max_bytes {
                Some(v) => positive(Some(v)),
                None => (defaults.retention_max_bytes > 0).then_some(defaults.retention_max_bytes),
            },
            retention_max_messages: match stream.retention_max_messages {
                Some(v) => positive(Some(v)),
                None => {
                    (defaults.retention_max_messages > 0).then_some(defaults.retention_max_messages)
                }
            },
            retention_max_age,
            compact: stream.compact_enabled.unwrap_or(defaults.compact_enabled),
            sync,
            max_record_bytes: (max_message_bytes + 64 * 1024).min(u64::from(u32::MAX)),
            ..LogConfig::default()
        };
        PartitionSettings {
            log,
            optimistic_concurrency_control: stream
                .optimistic_concurrency_control
                .unwrap_or(defaults.concurrency_control),
            auto_pause_time: ms(stream.auto_pause_time_ms).unwrap_or(defaults.auto_pause_time),
            auto_pause_disable_if_subscribers: stream
                .auto_pause_disable_if_subscribers
                .unwrap_or(defaults.auto_pause_disable_if_subscribers),
            cleaner_interval: ms(stream.cleaner_interval_ms)
                .and_then(nonzero)
                .unwrap_or(defaults.cleaner_interval)
                .max(Duration::from_millis(100)),
            max_message_bytes,
            batch_max_messages: config.batch.max_messages.max(1),
            batch_max_time: config.batch.max_time,
            min_isr: stream
                .min_isr
                .unwrap_or(i32::try_from(config.clustering.min_insync_replicas).unwrap_or(1)),
        }
    }
}
