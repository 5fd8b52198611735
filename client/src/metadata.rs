//! Cluster metadata: the public snapshot types ([`Metadata`], [`BrokerInfo`], [`StreamInfo`],
//! [`PartitionInfo`]) and the client's cache of them.
//!
//! The cache is one immutable [`Metadata`] behind an `Arc`, swapped whole on refresh: readers never wait for a
//! refresh and never see half of one. A generation counter lets concurrent refreshes coalesce (single flight,
//! see `Inner::refresh_metadata` in `client.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use liftbridge_proto::pb;
use parking_lot::RwLock;

use crate::connection::broker_addr;
use crate::event::Event;

/// A snapshot of the cluster: its servers and streams.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    brokers: Vec<BrokerInfo>,
    streams: HashMap<String, StreamInfo>,
}

impl Metadata {
    /// Builds the snapshot from a `FetchMetadata` response; streams reported as unknown are left out.
    pub(crate) fn from_proto(resp: pb::FetchMetadataResponse) -> Metadata {
        let mut brokers: Vec<BrokerInfo> = resp
            .brokers
            .into_iter()
            .map(BrokerInfo::from_proto)
            .collect();
        brokers.sort_by(|a, b| a.id.cmp(&b.id));
        let streams = resp
            .stream_metadata
            .into_iter()
            .filter(|s| s.error == pb::stream_metadata::Error::Ok as i32)
            .map(|s| (s.name.clone(), StreamInfo::from_proto(s)))
            .collect();
        Metadata { brokers, streams }
    }

    /// The servers of the cluster, by id.
    pub fn brokers(&self) -> &[BrokerInfo] {
        &self.brokers
    }

    /// The server with this id.
    pub fn broker(&self, id: &str) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// Every stream known.
    pub fn streams(&self) -> impl Iterator<Item = &StreamInfo> {
        self.streams.values()
    }

    /// One stream.
    pub fn stream(&self, name: &str) -> Option<&StreamInfo> {
        self.streams.get(name)
    }

    /// Whether the stream exists.
    pub fn has_stream(&self, name: &str) -> bool {
        self.streams.contains_key(name)
    }

    /// The number of partitions of a stream.
    pub fn partition_count(&self, stream: &str) -> Option<usize> {
        self.streams.get(stream).map(|s| s.partitions.len())
    }

    /// The server leading a partition.
    pub fn leader(&self, stream: &str, partition: i32) -> Option<&BrokerInfo> {
        let leader = &self.streams.get(stream)?.partitions.get(&partition)?.leader;
        self.broker(leader)
    }

    /// Addresses of every server.
    pub(crate) fn broker_addrs(&self) -> Vec<String> {
        self.brokers.iter().map(|b| b.addr.to_string()).collect()
    }

    /// A copy of `self` with the streams of `fresh` (named in `asked`) replacing the ones cached: a stream
    /// asked for and missing from `fresh` no longer exists. Brokers are always taken from `fresh`.
    pub(crate) fn merged(&self, fresh: Metadata, asked: &[String]) -> Metadata {
        let mut streams = self.streams.clone();
        for name in asked {
            streams.remove(name);
        }
        streams.extend(fresh.streams);
        Metadata {
            brokers: fresh.brokers,
            streams,
        }
    }
}

/// One server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    id: String,
    /// `host:port`, formatted once: publishes look it up per message.
    addr: Arc<str>,
    host: String,
    port: i32,
    partition_count: i32,
    leader_count: i32,
}

impl BrokerInfo {
    fn from_proto(b: pb::Broker) -> Self {
        BrokerInfo {
            addr: broker_addr(&b.host, b.port).into(),
            id: b.id,
            host: b.host,
            port: b.port,
            partition_count: b.partition_count,
            leader_count: b.leader_count,
        }
    }

    /// The server id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host it advertises.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The gRPC port it advertises.
    pub fn port(&self) -> i32 {
        self.port
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn shared_addr(&self) -> Arc<str> {
        self.addr.clone()
    }

    /// Partitions it holds a replica of.
    pub fn partition_count(&self) -> i32 {
        self.partition_count
    }

    /// Partitions it leads.
    pub fn leader_count(&self) -> i32 {
        self.leader_count
    }
}

/// One stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    name: String,
    subject: String,
    creation_timestamp: i64,
    partitions: BTreeMap<i32, PartitionInfo>,
}

impl StreamInfo {
    fn from_proto(s: pb::StreamMetadata) -> Self {
        StreamInfo {
            name: s.name,
            subject: s.subject,
            creation_timestamp: s.creation_timestamp,
            partitions: s
                .partitions
                .into_iter()
                .map(|(id, p)| (id, PartitionInfo::from_proto(p)))
                .collect(),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The NATS subject it records.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// When it was created (the Unix epoch when the server does not say).
    pub fn creation_time(&self) -> SystemTime {
        nanos(self.creation_timestamp)
    }

    /// Its partitions, by id.
    pub fn partitions(&self) -> &BTreeMap<i32, PartitionInfo> {
        &self.partitions
    }

    /// One partition.
    pub fn partition(&self, id: i32) -> Option<&PartitionInfo> {
        self.partitions.get(&id)
    }

    /// Whether every partition has a leader (the stream is ready for publishes and subscriptions).
    pub fn is_ready(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.values().all(|p| !p.leader.is_empty())
    }
}

fn nanos(ns: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// First and latest time an event (message, pause, readonly change) happened on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventTimestamps {
    /// First time, ns since the Unix epoch (0 = never).
    pub first_nanos: i64,
    /// Latest time, ns since the Unix epoch (0 = never).
    pub latest_nanos: i64,
}

impl EventTimestamps {
    fn from_proto(t: Option<pb::PartitionEventTimestamps>) -> Self {
        t.map(|t| EventTimestamps {
            first_nanos: t.first_timestamp,
            latest_nanos: t.latest_timestamp,
        })
        .unwrap_or_default()
    }

    /// The first time, if it ever happened.
    pub fn first(&self) -> Option<SystemTime> {
        (self.first_nanos > 0).then(|| nanos(self.first_nanos))
    }

    /// The latest time, if it ever happened.
    pub fn latest(&self) -> Option<SystemTime> {
        (self.latest_nanos > 0).then(|| nanos(self.latest_nanos))
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    id: i32,
    leader: String,
    replicas: Vec<String>,
    isr: Vec<String>,
    high_watermark: i64,
    newest_offset: i64,
    paused: bool,
    readonly: bool,
    messages_received: EventTimestamps,
    paused_at: EventTimestamps,
    readonly_at: EventTimestamps,
}

impl PartitionInfo {
    pub(crate) fn from_proto(p: pb::PartitionMetadata) -> Self {
        PartitionInfo {
            id: p.id,
            leader: p.leader,
            replicas: p.replicas,
            isr: p.isr,
            high_watermark: p.high_watermark,
            newest_offset: p.newest_offset,
            paused: p.paused,
            readonly: p.readonly,
            messages_received: EventTimestamps::from_proto(p.messages_received_timestamps),
            paused_at: EventTimestamps::from_proto(p.pause_timestamps),
            readonly_at: EventTimestamps::from_proto(p.readonly_timestamps),
        }
    }

    /// The partition id.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The leader's server id (empty when it has none).
    pub fn leader(&self) -> &str {
        &self.leader
    }

    /// Server ids of its replicas.
    pub fn replicas(&self) -> &[String] {
        &self.replicas
    }

    /// Server ids of its in-sync replicas.
    pub fn isr(&self) -> &[String] {
        &self.isr
    }

    /// The high watermark: the newest committed offset (-1 when empty). Only meaningful from
    /// [`Client::fetch_partition_metadata`](crate::Client::fetch_partition_metadata) (from the leader).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The newest offset in the leader's log (-1 when empty).
    pub fn newest_offset(&self) -> i64 {
        self.newest_offset
    }

    /// Whether the partition is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether the partition is readonly.
    pub fn is_readonly(&self) -> bool {
        self.readonly
    }

    /// When messages were received.
    pub fn messages_received(&self) -> EventTimestamps {
        self.messages_received
    }

    /// When the partition was paused.
    pub fn paused_at(&self) -> EventTimestamps {
        self.paused_at
    }

    /// When the readonly flag changed.
    pub fn readonly_at(&self) -> EventTimestamps {
        self.readonly_at
    }
}

/// The client's metadata cache.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    current: RwLock<Arc<Metadata>>,
    /// Bumped by every refresh; a refresh that finds it changed while it waited for its turn returns the
    /// newer data instead of fetching again.
    generation: AtomicU64,
    /// Serializes refreshes (the single flight).
    pub(crate) refresh_lock: tokio::sync::Mutex<()>,
}

impl MetadataCache {
    pub(crate) fn snapshot(&self) -> Arc<Metadata> {
        self.current.read().clone()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Installs `new`, returning the leader-change events it implies.
    pub(crate) fn install(&self, new: Metadata) -> Vec<Event> {
        let mut events = Vec::new();
        let mut current = self.current.write();
        for stream in new.streams.values() {
            let Some(old) = current.streams.get(&stream.name) else {
                continue;
            };
            for (id, p) in &stream.partitions {
                if let Some(before) = old.partitions.get(id)
                    && before.leader != p.leader
                {
                    events.push(Event::LeaderChanged {
                        stream: stream.name.clone(),
                        partition: *id,
                        old: before.leader.clone(),
                        new: p.leader.clone(),
                    });
                }
            }
        }
        events.push(Event::MetadataRefreshed {
            brokers: new.brokers.len(),
            streams: new.streams.len(),
        });
        *current = Arc::new(new);
        self.generation.fetch_add(1, Ordering::AcqRel);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(leader: &str) -> pb::FetchMetadataResponse {
        pb::FetchMetadataResponse {
            brokers: vec![pb::Broker {
                id: "b1".into(),
                host: "127.0.0.1".into(),
                port: 9292,
                ..Default::default()
            }],
            stream_metadata: vec![
                pb::StreamMetadata {
                    name: "s".into(),
                    subject: "s".into(),
                    partitions: [(
                        0,
                        pb::PartitionMetadata {
                            id: 0,
                            leader: leader.into(),
                            ..Default::default()
                        },
                    )]
                    .into_iter()
                    .collect(),
                    ..Default::default()
                },
                pb::StreamMetadata {
                    name: "gone".into(),
                    error: pb::stream_metadata::Error::UnknownStream as i32,
                    ..Default::default()
                },
            ],
            group_metadata: vec![],
        }
    }

    #[test]
    fn snapshot_and_leader_changes() {
        let cache = MetadataCache::default();
        let m = Metadata::from_proto(response("b1"));
        assert!(!m.has_stream("gone"));
        assert_eq!(
            m.leader("s", 0).map(BrokerInfo::addr),
            Some("127.0.0.1:9292")
        );
        assert!(m.stream("s").unwrap().is_ready());
        cache.install(m);
        let g = cache.generation();
        let events = cache.install(Metadata::from_proto(response("b2")));
        assert!(cache.generation() > g);
        assert!(events.iter().any(
            |e| matches!(e, Event::LeaderChanged { old, new, .. } if old == "b1" && new == "b2")
        ));
        assert!(
            !cache.snapshot().stream("s").unwrap().is_ready()
                || cache.snapshot().leader("s", 0).is_none()
        );
    }

    #[test]
    fn merge_drops_streams_that_vanished() {
        let base = Metadata::from_proto(response("b1"));
        let fresh = Metadata::from_proto(pb::FetchMetadataResponse {
            brokers: vec![],
            stream_metadata: vec![],
            group_metadata: vec![],
        });
        let merged = base.merged(fresh, &["s".to_string()]);
        assert!(!merged.has_stream("s"));
    }
}
