//! Cluster, stream and partition metadata as plain JS objects.

use std::collections::HashMap;
use std::time::SystemTime;

use liftbridge::{BrokerInfo, EventTimestamps, Metadata, PartitionInfo, StreamInfo};
use napi::bindgen_prelude::BigInt;
use napi_derive::napi;

use crate::message::nanos;

fn opt_nanos(t: Option<SystemTime>) -> Option<BigInt> {
    t.map(|t| BigInt::from(nanos(t)))
}

/// One server of the cluster.
#[napi(object)]
pub struct JsBroker {
    /// Server id.
    pub id: String,
    /// Host.
    pub host: String,
    /// gRPC port.
    pub port: i32,
    /// Partitions it replicates.
    pub partition_count: i32,
    /// Partitions it leads.
    pub leader_count: i32,
}

impl From<&BrokerInfo> for JsBroker {
    fn from(b: &BrokerInfo) -> Self {
        JsBroker {
            id: b.id().to_string(),
            host: b.host().to_string(),
            port: b.port(),
            partition_count: b.partition_count(),
            leader_count: b.leader_count(),
        }
    }
}

/// First and latest time of an event (ns since the epoch), absent when it never happened.
#[napi(object)]
pub struct JsEventTimes {
    /// The first time.
    pub first: Option<BigInt>,
    /// The latest time.
    pub latest: Option<BigInt>,
}

impl From<EventTimestamps> for JsEventTimes {
    fn from(t: EventTimestamps) -> Self {
        JsEventTimes {
            first: opt_nanos(t.first()),
            latest: opt_nanos(t.latest()),
        }
    }
}

/// One partition of a stream.
#[napi(object)]
pub struct JsPartitionInfo {
    /// Partition number.
    pub id: i32,
    /// Leader's server id (empty when it has none).
    pub leader: String,
    /// Replicas' server ids.
    pub replicas: Vec<String>,
    /// In-sync replicas' server ids.
    pub isr: Vec<String>,
    /// High watermark (from `fetchPartitionMetadata`; -1 otherwise or when empty).
    pub high_watermark: BigInt,
    /// Newest offset (from `fetchPartitionMetadata`; -1 otherwise or when empty).
    pub newest_offset: BigInt,
    /// Whether it is paused.
    pub paused: bool,
    /// Whether it is readonly.
    pub readonly: bool,
    /// When messages were received.
    pub messages_received: JsEventTimes,
    /// When it was paused.
    pub paused_at: JsEventTimes,
    /// When it was made readonly.
    pub readonly_at: JsEventTimes,
}

impl From<&PartitionInfo> for JsPartitionInfo {
    fn from(p: &PartitionInfo) -> Self {
        JsPartitionInfo {
            id: p.id(),
            leader: p.leader().to_string(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
            high_watermark: BigInt::from(p.high_watermark()),
            newest_offset: BigInt::from(p.newest_offset()),
            paused: p.is_paused(),
            readonly: p.is_readonly(),
            messages_received: p.messages_received().into(),
            paused_at: p.paused_at().into(),
            readonly_at: p.readonly_at().into(),
        }
    }
}

/// One stream.
#[napi(object)]
pub struct JsStreamInfo {
    /// Name.
    pub name: String,
    /// NATS subject.
    pub subject: String,
    /// Creation time (ns since the epoch).
    pub creation_time: BigInt,
    /// Partitions by number.
    pub partitions: HashMap<String, JsPartitionInfo>,
}

impl From<&StreamInfo> for JsStreamInfo {
    fn from(s: &StreamInfo) -> Self {
        JsStreamInfo {
            name: s.name().to_string(),
            subject: s.subject().to_string(),
            creation_time: BigInt::from(nanos(s.creation_time())),
            partitions: s
                .partitions()
                .iter()
                .map(|(id, p)| (id.to_string(), p.into()))
                .collect(),
        }
    }
}

/// The cluster's metadata.
#[napi(object)]
pub struct JsMetadata {
    /// Servers, by id.
    pub brokers: Vec<JsBroker>,
    /// Streams, by name.
    pub streams: HashMap<String, JsStreamInfo>,
}

impl From<&Metadata> for JsMetadata {
    fn from(m: &Metadata) -> Self {
        JsMetadata {
            brokers: m.brokers().iter().map(Into::into).collect(),
            streams: m
                .streams()
                .map(|s| (s.name().to_string(), s.into()))
                .collect(),
        }
    }
}
