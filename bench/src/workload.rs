//! What one run does: message count and size, how publishing is paced, and the stream it goes to.

use serde::Serialize;

use crate::{BenchError, Result};

/// Largest payload the bench sends (the client refuses more than 4 MiB per message by default).
pub const MAX_SIZE: usize = 4 << 20;

/// When the server acknowledges a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Once the partition leader stored it (JetStream: the stream stored it).
    #[default]
    Leader,
    /// Once every in-sync replica stored it (JetStream: the same as `leader`, its acks come after replication).
    All,
    /// No ack: fire and forget (JetStream: a core NATS publish to the stream's subject).
    None,
}

impl AckMode {
    /// The client's ack policy.
    pub fn to_client(self) -> liftbridge::AckPolicy {
        match self {
            AckMode::Leader => liftbridge::AckPolicy::Leader,
            AckMode::All => liftbridge::AckPolicy::All,
            AckMode::None => liftbridge::AckPolicy::None,
        }
    }
}

/// Durability the server was started with (`streams.sync.policy`). The bench cannot change a running server's
/// policy: this labels the results; `compare` starts each server with the policy of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// Whatever the server was configured with (not stated).
    #[default]
    Unstated,
    /// Page cache only.
    Never,
    /// fsync in the background every `streams.sync.interval` (our default: 1 s).
    Interval,
    /// fsync before every ack (group commit).
    Always,
}

/// One benchmark run's parameters (flags in the spirit of Liftbridge's `bench/producer` and `bench/consumer`).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Workload {
    /// Messages to publish, or to read back, in total (over all publishers).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Payload size in bytes (the first 12 carry the publisher id and a sequence number when it fits).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Partitions of the stream (message i of a publisher goes to partition i mod partitions).
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// When the server acknowledges a publish.
    #[arg(long, value_enum, default_value_t = AckMode::Leader)]
    pub ack_policy: AckMode,
    /// Publish B messages, then wait for all B acks, and repeat (Liftbridge's `--pub-batch`).
    #[arg(long, default_value_t = 1)]
    pub pub_batch: usize,
    /// Sliding window: at most W messages awaiting their ack per publisher (1 = synchronous publish).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Concurrent publishers, each on its own connection; the messages are split between them.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Fixed total rate in messages per second (0 = as fast as possible). Latency is then measured from
    /// each message's scheduled send time, so stalls are counted (no coordinated omission).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Replication factor of the stream the producer creates.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
    /// The server's sync policy, recorded with the results (see `compare` for runs that set it).
    #[arg(long, value_enum, default_value_t = SyncPolicy::Unstated)]
    pub sync: SyncPolicy,
    /// Stream name (also its subject).
    #[arg(long, default_value = "bench")]
    pub stream: String,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            messages: 100_000,
            size: 128,
            partitions: 1,
            ack_policy: AckMode::Leader,
            pub_batch: 1,
            window: 1,
            publishers: 1,
            rate: 0.0,
            replication: 1,
            sync: SyncPolicy::Unstated,
            stream: "bench".to_string(),
        }
    }
}

impl Workload {
    /// Refuses combinations that cannot be run, with the flag's name.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BenchError::Invalid(m));
        if self.messages == 0 {
            return bad("--messages must be at least 1".into());
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return bad(format!(
                "--size must be 1..={MAX_SIZE} bytes, got {}",
                self.size
            ));
        }
        if self.partitions == 0 || self.partitions > i32::MAX as u32 {
            return bad("--partitions must be at least 1".into());
        }
        if self.pub_batch == 0 || self.window == 0 || self.publishers == 0 {
            return bad("--pub-batch, --window and --publishers must be at least 1".into());
        }
        if self.pub_batch > 1 && self.window > 1 {
            return bad("use either --pub-batch or --window, not both".into());
        }
        if self.pub_batch.max(self.window) > u32::MAX as usize >> 4 {
            return bad("--pub-batch / --window too large".into());
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return bad(format!(
                "--rate must be a finite number ≥ 0, got {}",
                self.rate
            ));
        }
        if self.replication < 1 {
            return bad("--replication must be at least 1".into());
        }
        if self.stream.is_empty()
            || !self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!(
                "--stream must be letters, digits, '-' or '_' (it is also a JetStream name), got {:?}",
                self.stream
            ));
        }
        Ok(())
    }

    /// Messages for publisher `index` (the remainder goes to the first publishers).
    pub fn share(&self, index: usize) -> u64 {
        let n = self.publishers as u64;
        self.messages / n + u64::from((index as u64) < self.messages % n)
    }

    /// Unacknowledged messages one publisher may have: the window, or the batch.
    pub fn in_flight(&self) -> usize {
        self.window.max(self.pub_batch)
    }

    /// A short description such as `128 B, window 256, 4 publishers`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} B", self.size);
        if self.pub_batch > 1 {
            s += &format!(", batch {}", self.pub_batch);
        } else if self.window > 1 {
            s += &format!(", window {}", self.window);
        } else {
            s += ", sync";
        }
        if self.publishers > 1 {
            s += &format!(", {} publishers", self.publishers);
        }
        if self.partitions > 1 {
            s += &format!(", {} partitions", self.partitions);
        }
        if self.rate > 0.0 {
            s += &format!(", {} msg/s fixed", self.rate);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        let w = Workload {
            messages: 10,
            publishers: 4,
            ..Workload::default()
        };
        let shares: Vec<u64> = (0..4).map(|i| w.share(i)).collect();
        assert_eq!(shares, vec![3, 3, 2, 2]);
    }

    #[test]
    fn refuses_window_and_batch_together() {
        let w = Workload {
            window: 8,
            pub_batch: 8,
            ..Workload::default()
        };
        assert!(w.validate().is_err());
        assert!(Workload::default().validate().is_ok());
    }
}
