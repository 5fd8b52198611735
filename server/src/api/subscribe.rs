//! Subscribe: stream a partition's committed messages from a start position, optionally until a stop position,
//! forwards or in reverse.
//!
//! Liftbridge's contract: errors found before the subscription starts are the RPC's status; once it starts, the
//! first message is an empty handshake; a stop position (or the end of a readonly partition) ends the stream with
//! `ResourceExhausted`; a pause ends it with `FailedPrecondition` and a deletion with `NotFound`.

use std::sync::Arc;

use futures::StreamExt;
use liftbridge_proto::pb;
use tokio::sync::mpsc;
use tonic::Status;

use super::delivery::Delivery;
use super::{ApiContext, ResponseStream, admin, status};
use crate::commitlog::{Log, ReadBound};
use crate::metadata::now_ns;
use crate::partition::manager::Unserved;
use crate::partition::{CloseReason, PartitionHandle};

/// Most bytes read from the log per batch sent to a subscriber. A batch becomes one message per record (a few
/// hundred bytes each for small records), and up to [`SEND_BUFFER`] + 2 batches are alive per subscription, so
/// this bounds a subscription's memory (about 4 MiB at 128 B records) as much as it amortises the hand-over.
const READ_BATCH_BYTES: usize = 256 << 10;
/// Batches (each up to [`READ_BATCH_BYTES`] of records) buffered between the reader task and the HTTP/2 stream.
/// The reader hands over whole batches: one channel operation and at most one wake-up per batch, not per message.
const SEND_BUFFER: usize = 2;

/// Finds the running partition, resuming it when asked to.
async fn partition(
    ctx: &ApiContext,
    req: &pb::SubscribeRequest,
) -> Result<PartitionHandle, Status> {
    if let Some(handle) = ctx.partitions.get(&req.stream, req.partition) {
        return Ok(handle);
    }
    if req.read_isr_replica {
        // A follower serves reads up to its own high watermark, and only while it is in the ISR.
        let in_isr = ctx
            .metadata
            .stream(&req.stream)
            .and_then(|s| s.partition(req.partition).cloned())
            .is_some_and(|p| p.isr.iter().any(|r| r == ctx.metadata.server_id()));
        if in_isr && let Some((handle, _)) = ctx.partitions.get_replica(&req.stream, req.partition)
        {
            return Ok(handle);
        }
    }
    match ctx.partitions.why_unserved(&req.stream, req.partition) {
        Unserved::Missing => Err(status::no_such_partition(&req.stream, req.partition)),
        Unserved::Paused if req.resume => {
            admin::resume_partition(ctx, &req.stream, req.partition).await?;
            ctx.partitions
                .get(&req.stream, req.partition)
                .ok_or_else(|| Status::unavailable("partition did not resume"))
        }
        Unserved::Paused => Err(Status::failed_precondition(format!(
            "Partition {}/{} is paused (subscribe with resume to resume it)",
            req.stream, req.partition
        ))),
        Unserved::NotLeader => Err(Status::failed_precondition("Server not partition leader")),
        Unserved::NotStarted => Err(Status::unavailable(format!(
            "partition {}/{} is not available yet",
            req.stream, req.partition
        ))),
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// Where a forward subscription starts.
fn start_offset(log: &Log, req: &pb::SubscribeRequest) -> Result<u64, Status> {
    use pb::StartPosition;
    let hw = log.high_watermark();
    let next_after_hw = u64::try_from(hw + 1).unwrap_or(0);
    let position = StartPosition::try_from(req.start_position).map_err(|_| {
        Status::invalid_argument(format!("unknown start position {}", req.start_position))
    })?;
    Ok(match position {
        StartPosition::NewOnly => next_after_hw,
        StartPosition::Offset => {
            let offset = u64::try_from(req.start_offset).map_err(|_| {
                Status::invalid_argument(format!(
                    "start offset must not be negative, got {}",
                    req.start_offset
                ))
            })?;
            offset.max(log.oldest_offset())
        }
        StartPosition::Earliest => log.oldest_offset(),
        StartPosition::Latest => u64::try_from(hw).unwrap_or(0).max(log.oldest_offset()),
        StartPosition::Timestamp => match log
            .offset_for_timestamp(req.start_timestamp)
            .map_err(internal)?
        {
            Some(offset) => offset,
            None => next_after_hw,
        },
    })
}

/// The last offset a forward subscription delivers, if it stops.
fn stop_offset(log: &Log, req: &pb::SubscribeRequest) -> Result<Option<u64>, Status> {
    use pb::StopPosition;
    let hw = log.high_watermark();
    let position = StopPosition::try_from(req.stop_position).map_err(|_| {
        Status::invalid_argument(format!("unknown stop position {}", req.stop_position))
    })?;
    let empty = || Status::resource_exhausted("Stream is empty");
    match position {
        StopPosition::StopOnCancel => Ok(None),
        StopPosition::StopOffset => u64::try_from(req.stop_offset).map(Some).map_err(|_| {
            Status::invalid_argument(format!(
                "stop offset must not be negative, got {}",
                req.stop_offset
            ))
        }),
        StopPosition::StopLatest => u64::try_from(hw).map(Some).map_err(|_| empty()),
        StopPosition::StopTimestamp => {
            if req.stop_timestamp > now_ns() {
                return Err(Status::invalid_argument(format!(
                    "stop timestamp {} is in the future",
                    req.stop_timestamp
                )));
            }
            let after = req.stop_timestamp.saturating_add(1);
            match log.offset_for_timestamp(after).map_err(internal)? {
                Some(0) => Err(Status::invalid_argument(
                    "stop timestamp is before the first message",
                )),
                Some(first_after) => Ok(Some(first_after - 1)),
                None => u64::try_from(hw).map(Some).map_err(|_| empty()),
            }
        }
    }
}

fn close_status(reason: Option<CloseReason>) -> Status {
    match reason {
        Some(CloseReason::Paused) => Status::failed_precondition("Partition was paused"),
        Some(CloseReason::Deleted) => Status::not_found("Stream was deleted"),
        Some(CloseReason::Shutdown) => Status::unavailable("Server is shutting down"),
        Some(CloseReason::Failed) => Status::internal("Partition failed; see the server log"),
        Some(CloseReason::LeaderChanged) => {
            Status::unavailable("Partition leader changed; resubscribe from the new leader")
        }
        None => Status::internal("Partition closed"),
    }
}

/// `Subscribe`.
pub async fn subscribe(
    ctx: &ApiContext,
    req: pb::SubscribeRequest,
) -> Result<ResponseStream<Delivery>, Status> {
    if req.consumer.is_some() {
        return Err(status::not_implemented(
            "Consumer groups (Subscribe with consumer)",
        ));
    }
    if req.stream.is_empty() {
        return Err(Status::invalid_argument("No stream provided"));
    }
    let handle = partition(ctx, &req).await?;
    let log = handle.log().clone();
    let (tx, rx) = mpsc::channel::<Vec<Result<Delivery, Status>>>(SEND_BUFFER);
    if req.reverse {
        let hw = log.high_watermark();
        let start = match pb::StartPosition::try_from(req.start_position) {
            Ok(pb::StartPosition::Offset) => req.start_offset.min(hw),
            Ok(pb::StartPosition::Timestamp) => match log
                .offset_for_timestamp(req.start_timestamp)
                .map_err(internal)?
            {
                Some(o) => i64::try_from(o).unwrap_or(i64::MAX).min(hw),
                None => hw,
            },
            Ok(_) => hw,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown start position {}",
                    req.start_position
                )));
            }
        };
        let lower = match pb::StopPosition::try_from(req.stop_position) {
            Ok(pb::StopPosition::StopOffset) => req.stop_offset.max(0),
            _ => 0,
        };
        if start >= 0 && lower > start {
            return Err(Status::invalid_argument(format!(
                "stop offset {lower} is after start offset {start} for a reverse subscription"
            )));
        }
        let _ = tx.send(vec![Ok(Delivery::handshake())]).await;
        tokio::spawn(reverse(handle, req, start, lower, tx));
    } else {
        let start = start_offset(&log, &req)?;
        let stop = stop_offset(&log, &req)?;
        if let Some(stop) = stop
            && stop < start
        {
            return Err(Status::invalid_argument(format!(
                "stop offset {stop} is before start offset {start}"
            )));
        }
        let _ = tx.send(vec![Ok(Delivery::handshake())]).await;
        tokio::spawn(forward(handle, req, start, stop, tx));
    }
    Ok(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx).flat_map(futures::stream::iter),
    ))
}

type Sender = mpsc::Sender<Vec<Result<Delivery, Status>>>;

/// Sends the final status of a subscription.
async fn end(tx: &Sender, status: Status) {
    let _ = tx.send(vec![Err(status)]).await;
}

async fn forward(
    handle: PartitionHandle,
    req: pb::SubscribeRequest,
    start: u64,
    stop: Option<u64>,
    tx: Sender,
) {
    let _guard = handle.track_subscriber();
    let stream: Arc<str> = Arc::from(req.stream.as_str());
    let log = handle.log().clone();
    let mut closed = handle.closed();
    let mut readonly = handle.readonly_watch();
    let mut reader = log.tail_reader(start);
    let mut next = start;
    loop {
        if closed.borrow().is_some() {
            end(&tx, close_status(handle.close_reason())).await;
            return;
        }
        if handle.is_readonly() && i64::try_from(next).unwrap_or(i64::MAX) > log.newest_offset() {
            end(&tx, Status::resource_exhausted("End of readonly partition")).await;
            return;
        }
        tokio::select! {
            batch = reader.next_batch(READ_BATCH_BYTES, ReadBound::HighWatermark) => match batch {
                Ok(records) => {
                    let mut out = Vec::with_capacity(records.len() + 1);
                    let mut stopped = false;
                    for record in records {
                        let offset = record.offset;
                        if stop.is_some_and(|s| offset > s) {
                            stopped = true;
                            break;
                        }
                        out.push(Ok(Delivery::new(stream.clone(), req.partition, record)));
                        next = offset + 1;
                        if stop == Some(offset) {
                            stopped = true;
                            break;
                        }
                    }
                    if stopped {
                        out.push(Err(Status::resource_exhausted("Stop offset reached")));
                    }
                    if tx.send(out).await.is_err() || stopped {
                        return;
                    }
                }
                Err(e) => {
                    let status = match handle.close_reason() {
                        Some(reason) => close_status(Some(reason)),
                        None => Status::internal(format!("reading the partition failed: {e}")),
                    };
                    end(&tx, status).await;
                    return;
                }
            },
            _ = closed.changed() => {}
            _ = readonly.changed() => {}
            _ = tx.closed() => return,
        }
    }
}

async fn reverse(
    handle: PartitionHandle,
    req: pb::SubscribeRequest,
    start: i64,
    lower: i64,
    tx: Sender,
) {
    let _guard = handle.track_subscriber();
    let stream: Arc<str> = Arc::from(req.stream.as_str());
    if start >= 0 {
        let mut reader = handle
            .log()
            .reverse_reader(u64::try_from(start).unwrap_or(0));
        loop {
            let batch = match reader.next_batch(READ_BATCH_BYTES) {
                Ok(batch) => batch,
                Err(e) => {
                    end(
                        &tx,
                        Status::internal(format!("reading the partition failed: {e}")),
                    )
                    .await;
                    return;
                }
            };
            if batch.is_empty() {
                break;
            }
            let mut out = Vec::with_capacity(batch.len() + 1);
            let mut stopped = false;
            for record in batch {
                if i64::try_from(record.offset).unwrap_or(i64::MAX) < lower {
                    out.push(Err(Status::resource_exhausted("Stop offset reached")));
                    stopped = true;
                    break;
                }
                out.push(Ok(Delivery::new(stream.clone(), req.partition, record)));
            }
            if tx.send(out).await.is_err() || stopped {
                return;
            }
        }
    }
    end(
        &tx,
        Status::resource_exhausted("End of partition reached (reverse)"),
    )
    .await;
}
