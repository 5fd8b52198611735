//! FetchMetadata and FetchPartitionMetadata.

use liftbridge_proto::pb;
use tonic::Status;

use super::{ApiContext, status};
use crate::metadata::state::EventTimestamps;
use crate::metadata::{PartitionState, StreamState};

fn timestamps(t: EventTimestamps) -> Option<pb::PartitionEventTimestamps> {
    Some(pb::PartitionEventTimestamps {
        first_timestamp: t.first,
        latest_timestamp: t.latest,
    })
}

/// Metadata of one partition; offsets come from the running leader (-1 when it does not run here).
fn partition_metadata(
    ctx: &ApiContext,
    stream: &StreamState,
    p: &PartitionState,
) -> pb::PartitionMetadata {
    let running = ctx.partitions.get(&stream.name, p.id);
    let (high_watermark, newest_offset, received) = match &running {
        Some(h) => (
            h.log().high_watermark(),
            h.log().newest_offset(),
            h.received_timestamps(),
        ),
        None => (-1, -1, EventTimestamps::default()),
    };
    pb::PartitionMetadata {
        id: p.id,
        leader: p.leader.clone(),
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
        high_watermark,
        newest_offset,
        paused: p.paused,
        readonly: p.readonly,
        messages_received_timestamps: timestamps(received),
        pause_timestamps: timestamps(p.pause_timestamps),
        readonly_timestamps: timestamps(p.readonly_timestamps),
    }
}

fn stream_metadata(ctx: &ApiContext, stream: &StreamState) -> pb::StreamMetadata {
    pb::StreamMetadata {
        name: stream.name.clone(),
        subject: stream.subject.clone(),
        error: pb::stream_metadata::Error::Ok as i32,
        partitions: stream
            .partitions
            .iter()
            .map(|p| (p.id, partition_metadata(ctx, stream, p)))
            .collect(),
        creation_timestamp: stream.creation_timestamp,
    }
}

/// `FetchMetadata`: brokers, and the requested streams (all when none are named); unknown streams are
/// reported in-band with `UNKNOWN_STREAM`. Consumer groups are not implemented: named groups are reported as
/// `UNKNOWN_GROUP`.
pub fn fetch_metadata(
    ctx: &ApiContext,
    req: pb::FetchMetadataRequest,
) -> Result<pb::FetchMetadataResponse, Status> {
    let snapshot = ctx.metadata.snapshot();
    let brokers = ctx
        .presence
        .live()
        .into_iter()
        .map(|b| {
            let (mut partition_count, mut leader_count) = (0i32, 0i32);
            for stream in snapshot.streams.values() {
                for p in &stream.partitions {
                    if p.replicas.contains(&b.id) {
                        partition_count += 1;
                    }
                    if p.leader == b.id {
                        leader_count += 1;
                    }
                }
            }
            pb::Broker {
                id: b.id,
                host: b.host,
                port: i32::from(b.port),
                partition_count,
                leader_count,
            }
        })
        .collect();
    let stream_metadata = if req.streams.is_empty() {
        snapshot
            .streams
            .values()
            .map(|s| stream_metadata(ctx, s))
            .collect()
    } else {
        req.streams
            .iter()
            .map(|name| match snapshot.streams.get(name) {
                Some(s) => stream_metadata(ctx, s),
                None => pb::StreamMetadata {
                    name: name.clone(),
                    error: pb::stream_metadata::Error::UnknownStream as i32,
                    ..Default::default()
                },
            })
            .collect()
    };
    let group_metadata = req
        .groups
        .iter()
        .map(|g| pb::ConsumerGroupMetadata {
            group_id: g.clone(),
            error: pb::consumer_group_metadata::Error::UnknownGroup as i32,
            ..Default::default()
        })
        .collect();
    Ok(pb::FetchMetadataResponse {
        brokers,
        stream_metadata,
        group_metadata,
    })
}

/// `FetchPartitionMetadata`: served by the partition leader only.
pub fn fetch_partition_metadata(
    ctx: &ApiContext,
    req: pb::FetchPartitionMetadataRequest,
) -> Result<pb::FetchPartitionMetadataResponse, Status> {
    let stream = ctx
        .metadata
        .stream(&req.stream)
        .ok_or_else(|| status::no_such_stream(&req.stream))?;
    let p = stream
        .partition(req.partition)
        .ok_or_else(|| status::no_such_partition(&req.stream, req.partition))?;
    if p.leader != ctx.metadata.server_id() {
        return Err(Status::failed_precondition("Server not partition leader"));
    }
    Ok(pb::FetchPartitionMetadataResponse {
        metadata: Some(partition_metadata(ctx, &stream, p)),
    })
}
