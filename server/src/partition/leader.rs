//! The partition leader actor: NATS messages in, one append per batch, acks out.
//!
//! The actor is the only writer of its log. It waits for the first message, then drains whatever else the
//! subscription already holds (up to `batch.max.messages`, optionally waiting `batch.max.time` for more), turns
//! each message into a record, checks size and expected offset, and then, per batch:
//!
//! 1. **append** the accepted records with one write;
//! 2. **advance the high watermark** over the batch once it is committed;
//! 3. **release the acks** — as one burst ([`AckOutbox::send`]), never one publish per message.
//!
//! On a single server the ISR is this server alone, so a batch is committed as soon as it is appended (one
//! [`Log::append_committed`], one wake-up for readers) and AckPolicy ALL is acknowledged like LEADER. Under
//! `sync=always` a batch is committed once it is durable: the actor appends it without waiting, hands the fsync to
//! a blocking thread and keeps appending the next batches meanwhile; when the fsync returns, every batch it
//! covers is committed at once (pipelined group commit: one fsync per round, however many batches arrived).
//!
//! When the partition has followers, the high watermark and the ALL acks wait for the ISR instead (see
//! [`super::replication`]): the batch is appended (and, under `sync=always`, fsynced) and the ISR moves the high
//! watermark as followers fetch; LEADER acks go out right after the append.
//!
//! [`Log::append_committed`]: crate::commitlog::Log::append_committed

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use liftbridge_proto::envelope::{self, EnvelopeError};
use liftbridge_proto::pb;
use tokio::sync::watch;

use super::outbox::AckOutbox;
use super::replication::{FetchServer, Isr};
use super::{CloseReason, PartitionHandle};
use crate::bus::{BusMessage, BusSubscription};
use crate::commitlog::{LogError, NewRecord, SyncPolicy};
use crate::metadata::{Metadata, Op, now_ns};

/// Counters of what the leader saw, for logs and tests.
#[derive(Debug, Default)]
pub struct LeaderStats {
    /// Messages appended.
    pub appended: AtomicU64,
    /// Envelopes that failed to decode (counted and logged, never fatal).
    pub malformed: AtomicU64,
    /// Messages refused (too large, wrong expected offset).
    pub refused: AtomicU64,
}

/// What one incoming message becomes.
struct Incoming {
    record: NewRecord,
    /// Where and how to ack, if the publisher asked for an ack.
    ack: Option<AckRoute>,
    /// Expected offset for OCC (-1 = no check).
    expected_offset: i64,
    /// The NATS subject it arrived on.
    subject: String,
}

struct AckRoute {
    inbox: String,
    correlation_id: String,
    policy: i32,
}

/// Batches appended under `sync=always` whose fsync has not returned yet, and the fsync in flight.
#[derive(Default)]
struct GroupCommit {
    /// Oldest first.
    waiting: VecDeque<Unsynced>,
    /// The running fsync; yields the written mark it made durable.
    syncing: Option<tokio::task::JoinHandle<Result<u64, LogError>>>,
}

/// One appended batch waiting to be durable.
struct Unsynced {
    /// The log's written mark right after the batch: durable once an fsync covered it.
    mark: u64,
    /// The batch's last offset (`None` when every message of the batch was refused).
    last_offset: Option<u64>,
    /// Its acks, sent once committed (commit timestamps are set then).
    acks: Vec<pb::Ack>,
}

impl GroupCommit {
    /// Starts an fsync covering everything appended so far, unless one is running or nothing waits.
    fn start(&mut self, partition: &PartitionHandle) {
        if self.syncing.is_some() || self.waiting.is_empty() {
            return;
        }
        let log = partition.log().clone();
        let mark = log.written_mark();
        self.syncing = Some(tokio::task::spawn_blocking(move || {
            log.sync_to(mark).map(|()| mark)
        }));
    }

    /// Takes the batches an fsync up to `mark` made durable: the high watermark to move to and their acks.
    fn durable(&mut self, mark: u64) -> (Option<u64>, Vec<pb::Ack>) {
        let mut hw = None;
        let mut acks = Vec::new();
        while self.waiting.front().is_some_and(|u| u.mark <= mark) {
            if let Some(batch) = self.waiting.pop_front() {
                hw = batch.last_offset.or(hw);
                acks.extend(batch.acks);
            }
        }
        (hw, acks)
    }
}

/// Waits for the blocking task in `slot` (pending forever when none runs), then empties the slot. Cancel-safe:
/// the handle stays in the slot until the task has finished.
async fn joined<T>(
    slot: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    let Some(handle) = slot.as_mut() else {
        return std::future::pending().await;
    };
    let result = handle.await;
    *slot = None;
    result
}

/// Waits for the running fsync of `commit` (pending forever when none runs).
async fn synced(commit: &mut GroupCommit) -> Result<u64, LogError> {
    joined(&mut commit.syncing).await.unwrap_or_else(|e| {
        Err(LogError::Failed {
            reason: e.to_string(),
        })
    })
}

/// Commits what an fsync up to `mark` made durable: moves the high watermark, then releases the acks.
async fn commit_durable(
    partition: &PartitionHandle,
    outbox: &AckOutbox,
    commit: &mut GroupCommit,
    mark: u64,
) -> Result<(), LogError> {
    let (hw, mut acks) = commit.durable(mark);
    if let Some(hw) = hw {
        partition
            .log()
            .set_high_watermark(i64::try_from(hw).unwrap_or(i64::MAX))?;
    }
    let now = now_ns();
    for ack in &mut acks {
        if ack.ack_error == pb::ack::Error::Ok as i32 {
            ack.commit_timestamp = now;
        }
    }
    outbox.send(acks).await;
    Ok(())
}

/// Runs the leader of `partition` until `stop` fires or the log fails.
pub async fn run(
    partition: PartitionHandle,
    mut subscription: BusSubscription,
    outbox: AckOutbox,
    metadata: Metadata,
    stats: Arc<LeaderStats>,
    replication: Option<Arc<FetchServer>>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = partition.settings().clone();
    let leader_epoch = partition.epoch();
    let mut batch: Vec<BusMessage> = Vec::with_capacity(settings.batch_max_messages);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_clean = Instant::now();
    let mut last_activity = Instant::now();
    let mut pause_requested = false;
    let mut group_commit = GroupCommit::default();
    let mut maintenance: Option<Maintenance> = None;

    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            synced = synced(&mut group_commit) => {
                let committed = match synced {
                    Ok(mark) => commit_durable(&partition, &outbox, &mut group_commit, mark).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = committed {
                    tracing::error!(stream = partition.stream(), partition = partition.id(), error = %e,
                        "fsync failed; the partition stops until it is restarted");
                    finish_maintenance(&partition, &mut maintenance).await;
                    partition.mark_closed(CloseReason::Failed);
                    return;
                }
                group_commit.start(&partition);
            }
            // Before the subscription: under a steady load it is always ready, and `biased` would starve these.
            () = maintained(&partition, &mut maintenance) => {}
            _ = tick.tick() => {
                if maintenance.is_none() {
                    maintenance = Some(start_maintenance(&partition, &mut last_clean));
                }
                if !pause_requested && should_auto_pause(&partition, last_activity) {
                    pause_requested = true;
                    let metadata = metadata.clone();
                    let op = Op::PauseStream {
                        name: partition.stream().to_string(),
                        partitions: vec![partition.id()],
                        resume_all: false,
                    };
                    tracing::info!(stream = partition.stream(), partition = partition.id(), "auto-pausing idle partition");
                    tokio::spawn(async move {
                        if let Err(e) = metadata.propose(op).await {
                            tracing::warn!(error = %e, "auto-pause failed");
                        }
                    });
                }
            }
            first = subscription.next() => {
                let Some(first) = first else {
                    tracing::warn!(stream = partition.stream(), partition = partition.id(), "NATS subscription ended");
                    break;
                };
                batch.push(first);
                fill_batch(&mut subscription, &mut batch, settings.batch_max_messages, settings.batch_max_time).await;
                last_activity = Instant::now();
                let isr = replication.as_ref().map(|r| &*r.isr);
                let processed = process_batch(&partition, &outbox, &stats, leader_epoch, isr, &mut batch).await;
                // Followers waiting at the end of the log get the new records now.
                if let Some(replication) = &replication {
                    replication.answer_waiting().await;
                }
                match processed {
                    Ok(Some(unsynced)) => {
                        group_commit.waiting.push_back(unsynced);
                        group_commit.start(&partition);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(stream = partition.stream(), partition = partition.id(), error = %e,
                            "append failed; the partition stops until it is restarted");
                        finish_maintenance(&partition, &mut maintenance).await;
                        partition.mark_closed(CloseReason::Failed);
                        return;
                    }
                }
            }
        }
    }
    // Stopping: the log work that runs finishes first (the log may be closed next).
    finish_maintenance(&partition, &mut maintenance).await;
    // Stopping: what was appended is committed once durable, so its publishers still get their acks.
    while !group_commit.waiting.is_empty() || group_commit.syncing.is_some() {
        group_commit.start(&partition);
        let done = match synced(&mut group_commit).await {
            Ok(mark) => commit_durable(&partition, &outbox, &mut group_commit, mark).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            tracing::warn!(stream = partition.stream(), partition = partition.id(), error = %e,
                "final fsync failed; unacknowledged messages stay uncommitted");
            break;
        }
    }
}

/// Takes what the subscription already has, up to `max`, waiting at most `max_time` for more.
async fn fill_batch(
    subscription: &mut BusSubscription,
    batch: &mut Vec<BusMessage>,
    max: usize,
    max_time: Duration,
) {
    while batch.len() < max {
        match subscription.next().now_or_never() {
            Some(Some(message)) => batch.push(message),
            Some(None) => return,
            None if max_time.is_zero() => return,
            None => break,
        }
    }
    if batch.len() < max && !max_time.is_zero() {
        let deadline = tokio::time::Instant::now() + max_time;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, subscription.next()).await {
                Ok(Some(message)) => batch.push(message),
                _ => return,
            }
        }
    }
}

fn should_auto_pause(partition: &PartitionHandle, last_activity: Instant) -> bool {
    let settings = partition.settings();
    !settings.auto_pause_time.is_zero()
        && last_activity.elapsed() >= settings.auto_pause_time
        && !(settings.auto_pause_disable_if_subscribers && partition.subscriber_count() > 0)
}

/// The leader's periodic log work while it runs: started on the tick, finished beside the loop.
type Maintenance = tokio::task::JoinHandle<Result<(), LogError>>;

/// Starts the periodic work — interval fsync and the fsync of segments a roll sealed, HW checkpoint, retention
/// and compaction — on a blocking thread. The leader keeps appending meanwhile: an fsync of a second's writes
/// took tens of milliseconds here, and awaiting it stalled every publisher of the partition.
fn start_maintenance(partition: &PartitionHandle, last_clean: &mut Instant) -> Maintenance {
    let log = partition.log().clone();
    let clean = last_clean.elapsed() >= partition.settings().cleaner_interval;
    if clean {
        *last_clean = Instant::now();
    }
    let compact = partition.settings().log.compact;
    tokio::task::spawn_blocking(move || -> Result<(), LogError> {
        log.sync_if_due()?;
        log.checkpoint_high_watermark()?;
        if clean {
            log.maintain(std::time::SystemTime::now())?;
            log.enforce_retention(std::time::SystemTime::now())?;
            if compact {
                log.compact(log.high_watermark())?;
            }
        }
        Ok(())
    })
}

/// Waits for the running maintenance, if any, before the leader stops (the log may be closed next).
async fn finish_maintenance(partition: &PartitionHandle, maintenance: &mut Option<Maintenance>) {
    if maintenance.is_some() {
        maintained(partition, maintenance).await;
    }
}

/// Waits for the running maintenance (pending forever when none runs) and reports how it ended.
async fn maintained(partition: &PartitionHandle, maintenance: &mut Option<Maintenance>) {
    match joined(maintenance).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(stream = partition.stream(), partition = partition.id(), error = %e, "log maintenance failed")
        }
        Err(e) => tracing::warn!(error = %e, "log maintenance task failed"),
    }
}

/// Decodes one NATS message into a record. Plain messages become the value; envelopes keep key, headers and
/// ack routing. Both get `subject` and `reply` headers, as in Liftbridge.
///
/// `subject_header` caches the `subject` header value of the previous message: a partition's messages nearly
/// always arrive on one subject, so they share one buffer instead of copying the subject per message.
fn decode(
    message: BusMessage,
    now: i64,
    subject_header: &mut Bytes,
) -> Result<Incoming, EnvelopeError> {
    let BusMessage {
        subject,
        reply,
        payload,
        ..
    } = message;
    let reply = reply.unwrap_or_default();
    if subject_header.as_ref() != subject.as_bytes() {
        *subject_header = Bytes::copy_from_slice(subject.as_bytes());
    }
    if !envelope::is_envelope(&payload) {
        let record = NewRecord {
            timestamp_ns: now,
            key: None,
            value: Some(payload),
            headers: vec![
                (Bytes::from_static(b"subject"), subject_header.clone()),
                (Bytes::from_static(b"reply"), Bytes::from(reply)),
            ],
        };
        // A plain message carries no expected offset; on an OCC stream it is checked as offset 0, exactly as
        // Liftbridge does, so unchecked writes cannot slip into a stream that asked for OCC.
        return Ok(Incoming {
            record,
            ack: None,
            expected_offset: 0,
            subject,
        });
    }
    // Zero copy: key, value and header values share the NATS payload's buffer.
    let msg = envelope::decode_message_bytes(&payload)?;
    let mut headers: Vec<(Bytes, Bytes)> = msg
        .headers
        .into_iter()
        .filter(|(name, _)| name != "subject" && name != "reply")
        .map(|(name, value)| (Bytes::from(name), value))
        .collect();
    headers.push((Bytes::from_static(b"subject"), subject_header.clone()));
    headers.push((Bytes::from_static(b"reply"), Bytes::from(reply)));
    let wants_ack = !msg.ack_inbox.is_empty() && msg.ack_policy != pb::AckPolicy::None as i32;
    let ack = wants_ack.then_some(AckRoute {
        inbox: msg.ack_inbox,
        correlation_id: msg.correlation_id,
        policy: msg.ack_policy,
    });
    let record = NewRecord {
        timestamp_ns: now,
        key: (!msg.key.is_empty()).then_some(msg.key),
        value: Some(msg.value),
        headers,
    };
    Ok(Incoming {
        record,
        ack,
        expected_offset: msg.offset,
        subject,
    })
}

fn make_ack(
    partition: &PartitionHandle,
    incoming_subject: String,
    route: AckRoute,
    offset: i64,
    reception: i64,
    commit: i64,
    error: pb::ack::Error,
) -> pb::Ack {
    pb::Ack {
        stream: partition.stream().to_string(),
        partition_subject: partition.subject().to_string(),
        msg_subject: incoming_subject,
        offset,
        ack_inbox: route.inbox,
        correlation_id: route.correlation_id,
        ack_policy: route.policy,
        reception_timestamp: reception,
        commit_timestamp: commit,
        ack_error: error as i32,
    }
}

/// Decodes, checks and appends one batch, then commits it and releases its acks — or, under `sync=always`,
/// returns it to wait for its fsync (see the module docs).
async fn process_batch(
    partition: &PartitionHandle,
    outbox: &AckOutbox,
    stats: &LeaderStats,
    leader_epoch: u64,
    isr: Option<&Isr>,
    batch: &mut Vec<BusMessage>,
) -> Result<Option<Unsynced>, LogError> {
    let now = now_ns();
    let settings = partition.settings();
    let log = partition.log();
    let readonly = partition.is_readonly();
    let mut next_offset = log.end_offset();
    // Records to append, and beside each (same index) where its ack goes; offsets follow from the index.
    let mut records: Vec<NewRecord> = Vec::with_capacity(batch.len());
    let mut routes: Vec<Option<(AckRoute, String)>> = Vec::with_capacity(batch.len());
    let mut acks: Vec<pb::Ack> = Vec::new();
    let mut subject_header = Bytes::new();

    for message in batch.drain(..) {
        let incoming = match decode(message, now, &mut subject_header) {
            Ok(incoming) => incoming,
            Err(e) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stream = partition.stream(), partition = partition.id(), error = %e,
                    "dropping malformed envelope");
                continue;
            }
        };
        if readonly {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let value_len = incoming.record.value.as_ref().map_or(0, Bytes::len) as u64;
        let error = if value_len > settings.max_message_bytes {
            Some(pb::ack::Error::TooLarge)
        } else if settings.optimistic_concurrency_control
            && incoming.expected_offset != -1
            && incoming.expected_offset != next_offset as i64
        {
            Some(pb::ack::Error::IncorrectOffset)
        } else {
            None
        };
        if let Some(error) = error {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(route) = incoming.ack {
                acks.push(make_ack(
                    partition,
                    incoming.subject,
                    route,
                    -1,
                    now,
                    now,
                    error,
                ));
            }
            continue;
        }
        next_offset += 1;
        records.push(incoming.record);
        routes.push(incoming.ack.map(|route| (route, incoming.subject)));
    }

    let always = matches!(settings.log.sync, SyncPolicy::Always);
    // With followers the ISR commits (below); the pipelined group commit is the one-server path.
    let deferred = always && isr.is_none();
    let mut last_offset = None;
    if !records.is_empty() {
        let count = records.len() as u64;
        // 1. Append. On one server the ISR is this server, so outside `sync=always` the batch is committed
        //    (2. high watermark) by the same call; under `sync=always` it is committed after its fsync.
        let info = if isr.is_some() {
            let info = log.append(leader_epoch, &records)?;
            if always {
                let log = log.clone();
                tokio::task::spawn_blocking(move || log.sync())
                    .await
                    .map_err(|e| LogError::Failed {
                        reason: e.to_string(),
                    })??;
            }
            info
        } else if deferred {
            log.append_deferred(leader_epoch, &records)?
        } else {
            log.append_committed(leader_epoch, &records)?
        };
        stats.appended.fetch_add(count, Ordering::Relaxed);
        partition.record_received(now);
        last_offset = Some(info.last_offset);
        let commit = now_ns();
        let mut held = Vec::new();
        for (offset, route) in (info.first_offset..).zip(routes) {
            if let Some((route, subject)) = route {
                let wait_for_isr = isr.is_some() && route.policy == pb::AckPolicy::All as i32;
                let ack = make_ack(
                    partition,
                    subject,
                    route,
                    i64::try_from(offset).unwrap_or(i64::MAX),
                    now,
                    commit,
                    pb::ack::Error::Ok,
                );
                if wait_for_isr {
                    held.push((offset, ack));
                } else {
                    acks.push(ack);
                }
            }
        }
        if let Some(isr) = isr {
            acks.extend(isr.hold(held));
        }
    }
    if deferred && last_offset.is_some() {
        return Ok(Some(Unsynced {
            mark: log.written_mark(),
            last_offset,
            acks,
        }));
    }
    // 3. Release the acks.
    outbox.send(acks).await;
    Ok(None)
}
