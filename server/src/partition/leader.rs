//! The partition leader actor: NATS messages in, one append per batch, acks out.
//!
//! The actor is the only writer of its log. It waits for the first message, then drains whatever else the
//! subscription already holds (up to `batch.max.messages`, optionally waiting `batch.max.time` for more), turns
//! each message into a record, checks size and expected offset, appends the accepted records with one write (and
//! at most one fsync, by the log's sync policy), moves the high watermark, and only then publishes the acks.
//! When the partition has followers, the high watermark and the ALL acks wait for the ISR (see
//! [`super::replication`]); with a one-member ISR, AckPolicy ALL is acknowledged like LEADER.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use liftbridge_proto::envelope::{self, EnvelopeError};
use liftbridge_proto::pb;
use tokio::sync::watch;

use super::replication::{Isr, SharedIsr};
use super::{CloseReason, PartitionHandle};
use crate::bus::{Bus, BusMessage, BusSubscription};
use crate::commitlog::{NewRecord, SyncPolicy};
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

/// Runs the leader of `partition` until `stop` fires or the log fails.
pub async fn run(
    partition: PartitionHandle,
    mut subscription: BusSubscription,
    bus: Arc<dyn Bus>,
    metadata: Metadata,
    stats: Arc<LeaderStats>,
    isr: Option<SharedIsr>,
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

    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            first = subscription.next() => {
                let Some(first) = first else {
                    tracing::warn!(stream = partition.stream(), partition = partition.id(), "NATS subscription ended");
                    break;
                };
                batch.push(first);
                fill_batch(&mut subscription, &mut batch, settings.batch_max_messages, settings.batch_max_time).await;
                last_activity = Instant::now();
                if let Err(e) = process_batch(&partition, &bus, &stats, leader_epoch, isr.as_deref(), &mut batch).await {
                    tracing::error!(stream = partition.stream(), partition = partition.id(), error = %e,
                        "append failed; the partition stops until it is restarted");
                    partition.mark_closed(CloseReason::Failed);
                    return;
                }
            }
            _ = tick.tick() => {
                maintain(&partition, &mut last_clean).await;
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

/// Periodic work: interval fsync, HW checkpoint, retention and compaction.
async fn maintain(partition: &PartitionHandle, last_clean: &mut Instant) {
    let log = partition.log().clone();
    let clean = last_clean.elapsed() >= partition.settings().cleaner_interval;
    if clean {
        *last_clean = Instant::now();
    }
    let compact = partition.settings().log.compact;
    let result = tokio::task::spawn_blocking(move || -> Result<(), crate::commitlog::LogError> {
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
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(stream = partition.stream(), partition = partition.id(), error = %e, "log maintenance failed")
        }
        Err(e) => tracing::warn!(error = %e, "log maintenance task failed"),
    }
}

/// Decodes one NATS message into a record. Plain messages become the value; envelopes keep key, headers and
/// ack routing. Both get `subject` and `reply` headers, as in Liftbridge.
fn decode(message: BusMessage, now: i64) -> Result<Incoming, EnvelopeError> {
    let BusMessage {
        subject,
        reply,
        payload,
        ..
    } = message;
    let reply = reply.unwrap_or_default();
    if !envelope::is_envelope(&payload) {
        let record = NewRecord {
            timestamp_ns: now,
            key: None,
            value: Some(payload),
            headers: vec![
                (Bytes::from_static(b"subject"), Bytes::from(subject.clone())),
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
    headers.push((Bytes::from_static(b"subject"), Bytes::from(subject.clone())));
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
    incoming_subject: &str,
    route: AckRoute,
    offset: i64,
    reception: i64,
    commit: i64,
    error: pb::ack::Error,
) -> pb::Ack {
    pb::Ack {
        stream: partition.stream().to_string(),
        partition_subject: partition.subject().to_string(),
        msg_subject: incoming_subject.to_string(),
        offset,
        ack_inbox: route.inbox,
        correlation_id: route.correlation_id,
        ack_policy: route.policy,
        reception_timestamp: reception,
        commit_timestamp: commit,
        ack_error: error as i32,
    }
}

async fn process_batch(
    partition: &PartitionHandle,
    bus: &Arc<dyn Bus>,
    stats: &LeaderStats,
    leader_epoch: u64,
    isr: Option<&Isr>,
    batch: &mut Vec<BusMessage>,
) -> Result<(), crate::commitlog::LogError> {
    let now = now_ns();
    let settings = partition.settings();
    let log = partition.log();
    let readonly = partition.is_readonly();
    let mut next_offset = log.end_offset();
    // Records to append, and beside each (same index) where its ack goes; offsets follow from the index.
    let mut records: Vec<NewRecord> = Vec::with_capacity(batch.len());
    let mut routes: Vec<Option<(AckRoute, String)>> = Vec::with_capacity(batch.len());
    let mut acks: Vec<pb::Ack> = Vec::new();

    for message in batch.drain(..) {
        let incoming = match decode(message, now) {
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
                    &incoming.subject,
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

    if !records.is_empty() {
        let count = records.len() as u64;
        let info = if matches!(settings.log.sync, SyncPolicy::Always) {
            let log = log.clone();
            tokio::task::spawn_blocking(move || log.append(leader_epoch, &records))
                .await
                .map_err(|e| crate::commitlog::LogError::Failed {
                    reason: e.to_string(),
                })??
        } else {
            log.append(leader_epoch, &records)?
        };
        // Without followers everything appended is committed; with them, the ISR moves the high watermark.
        if isr.is_none() {
            log.set_high_watermark(i64::try_from(info.last_offset).unwrap_or(i64::MAX))?;
        }
        stats.appended.fetch_add(count, Ordering::Relaxed);
        partition.record_received(now);
        let commit = now_ns();
        let mut held = Vec::new();
        for (offset, route) in (info.first_offset..).zip(routes) {
            if let Some((route, subject)) = route {
                let wait_for_isr = isr.is_some() && route.policy == pb::AckPolicy::All as i32;
                let ack = make_ack(
                    partition,
                    &subject,
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

    for ack in acks {
        let payload = envelope::encode_ack(&ack, false);
        if let Err(e) = bus.publish(ack.ack_inbox, None, Vec::new(), payload).await {
            tracing::debug!(error = %e, "could not publish ack");
        }
    }
    Ok(())
}
