//! Choosing the partition a message goes to.
//!
//! The key partitioner is bit-for-bit go-liftbridge v2's: CRC-32 (IEEE) of the key taken as an unsigned 32-bit
//! integer, modulo the partition count (`liftbridge_proto::hash::partition_for_key`), so keyed messages land on
//! the same partitions whichever client publishes them. An empty key hashes like go-liftbridge's nil key.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use liftbridge_proto::hash;
use parking_lot::Mutex;

/// Picks a partition for a message. Implement it for custom routing.
pub trait Partitioner: Send + Sync + fmt::Debug {
    /// The partition in `0..partitions` (`partitions` is at least 1) for a message to `stream`. Returning a
    /// number out of range makes the publish fail with [`ErrorKind::NoSuchPartition`](crate::ErrorKind).
    fn partition(&self, stream: &str, key: &[u8], value: &[u8], partitions: u32) -> u32;
}

/// CRC-32 (IEEE) of the key modulo the partition count, like go-liftbridge.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyPartitioner;

impl Partitioner for KeyPartitioner {
    fn partition(&self, _stream: &str, key: &[u8], _value: &[u8], partitions: u32) -> u32 {
        hash::partition_for_key(key, partitions).unwrap_or(0)
    }
}

/// Cycles through the partitions, one counter per stream (like go-liftbridge).
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    /// Next counter value per stream. A map lookup by `&str` allocates only the first time a stream is seen.
    counters: Mutex<HashMap<String, u32>>,
}

impl RoundRobinPartitioner {
    /// A partitioner with every stream's counter at 0.
    pub fn new() -> Self {
        RoundRobinPartitioner::default()
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&self, stream: &str, _key: &[u8], _value: &[u8], partitions: u32) -> u32 {
        let mut counters = self.counters.lock();
        let counter = match counters.get_mut(stream) {
            Some(c) => c,
            None => counters.entry(stream.to_string()).or_insert(0),
        };
        let n = *counter;
        *counter = counter.wrapping_add(1);
        n % partitions.max(1)
    }
}

/// How the client picks a message's partition.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Partitioning {
    /// Always this partition. The client default is partition 0, as in go-liftbridge.
    Partition(i32),
    /// By key ([`KeyPartitioner`]).
    Key,
    /// Round-robin per stream ([`RoundRobinPartitioner`], one shared by the client).
    RoundRobin,
    /// A partitioner of your own.
    Custom(Arc<dyn Partitioner>),
}

impl Default for Partitioning {
    fn default() -> Self {
        Partitioning::Partition(0)
    }
}

impl Partitioning {
    /// Whether choosing needs the stream's partition count.
    pub(crate) fn needs_count(&self) -> bool {
        !matches!(self, Partitioning::Partition(_))
    }

    /// The partition for a message, given the stream's partition count (`None` when not needed).
    pub(crate) fn choose(
        &self,
        round_robin: &RoundRobinPartitioner,
        stream: &str,
        key: &[u8],
        value: &[u8],
        partitions: u32,
    ) -> i32 {
        let pick = match self {
            Partitioning::Partition(p) => return *p,
            Partitioning::Key => KeyPartitioner.partition(stream, key, value, partitions),
            Partitioning::RoundRobin => round_robin.partition(stream, key, value, partitions),
            Partitioning::Custom(p) => p.partition(stream, key, value, partitions),
        };
        i32::try_from(pick).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden vectors shared with the proto crate (generated with zlib.crc32, the algorithm Go uses).
    const GOLDEN: &str = include_str!("../../proto/tests/data/key_partition_golden.tsv");

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn key_partitioner_matches_golden_vectors() {
        let mut checked = 0;
        for line in GOLDEN.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split('\t').collect();
            let (key, partitions, expected) = (
                unhex(cols[0]),
                cols[2].parse::<u32>().unwrap(),
                cols[3].parse::<u32>().unwrap(),
            );
            assert_eq!(
                KeyPartitioner.partition("s", &key, b"", partitions),
                expected,
                "key {:?} over {partitions}",
                cols[0]
            );
            // Partition numbers are i32 on the wire; huge counts only exercise the hash above.
            if let Ok(expected) = i32::try_from(expected) {
                let rr = RoundRobinPartitioner::new();
                assert_eq!(
                    Partitioning::Key.choose(&rr, "s", &key, b"", partitions),
                    expected
                );
            }
            checked += 1;
        }
        assert!(checked > 20, "only {checked} vectors");
    }

    #[test]
    fn round_robin_cycles_per_stream() {
        let rr = RoundRobinPartitioner::new();
        let a: Vec<u32> = (0..5).map(|_| rr.partition("a", b"", b"", 3)).collect();
        assert_eq!(a, [0, 1, 2, 0, 1]);
        assert_eq!(rr.partition("b", b"", b"", 3), 0);
    }
}
