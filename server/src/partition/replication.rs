//! Leader side of replication: the ISR, follower progress, the high watermark and the ALL-acks waiting for it,
//! and the fetch protocol followers use over NATS.
//!
//! Followers long-poll `<ns>.repl.<stream>.<partition>` with a [`FetchRequest`] naming the offset they need next
//! (everything before it is in their log). The leader records that as the follower's progress, moves the high
//! watermark to the smallest end offset of the ISR (so an ALL ack costs one fetch round trip), and answers with
//! the raw bytes of the records from that offset — at once when it has them, or as soon as they are appended
//! (the leader actor answers held fetches itself right after the append), or empty after
//! `clustering.replica.max.idle.wait`. A follower that just became one first asks where its
//! latest leader epoch ends in the leader's log and truncates there (KIP-101; never by HW alone).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use liftbridge_proto::pb;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::commitlog::Log;

/// The NATS subject followers fetch a partition from.
pub fn fetch_subject(namespace: &str, stream: &str, partition: i32) -> String {
    format!("{namespace}.repl.{stream}.{partition}")
}

/// A follower's fetch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The follower's server id.
    pub replica: String,
    /// The leader epoch the follower follows.
    pub leader_epoch: u64,
    /// The next offset the follower needs (its log end offset).
    pub offset: u64,
    /// Set on the first fetch after becoming a follower: "where does this epoch end in your log?"
    pub last_epoch: Option<u64>,
}

/// The leader's answer; record bytes follow it on the wire.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FetchResponse {
    /// The leader's epoch.
    pub leader_epoch: u64,
    /// The leader's high watermark.
    pub high_watermark: i64,
    /// Truncate your log to this offset (exclusive end) before fetching again.
    pub truncate_to: Option<u64>,
    /// Why the fetch was refused (stale epoch, not a replica, not the leader).
    pub error: Option<String>,
}

/// `[u32 header length][header json][records]`.
pub fn encode_response(header: &FetchResponse, records: &[u8]) -> Bytes {
    let json = serde_json::to_vec(header).unwrap_or_default();
    let mut out = BytesMut::with_capacity(4 + json.len() + records.len());
    out.put_u32_le(u32::try_from(json.len()).unwrap_or(0));
    out.put_slice(&json);
    out.put_slice(records);
    out.freeze()
}

/// Splits a response into its header and record bytes.
pub fn decode_response(payload: &Bytes) -> Result<(FetchResponse, Bytes), String> {
    let len = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("short fetch response")?;
    let json = payload.get(4..4 + len).ok_or("truncated fetch response")?;
    let header = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    Ok((header, payload.slice(4 + len..)))
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's log end offset, as of its last fetch.
    end: u64,
    /// When it last fetched.
    last_fetch: Instant,
    /// When it was last caught up: its fetch asked for at least what the leader had when it answered the
    /// previous fetch.
    caught_up: Instant,
    /// The leader's end offset when it answered the previous fetch.
    target: u64,
    /// Whether the latest fetch was caught up.
    in_sync: bool,
}

#[derive(Debug)]
struct State {
    isr: Vec<String>,
    replicas: Vec<String>,
    progress: HashMap<String, Progress>,
    /// ALL acks waiting for the high watermark to pass their offset, in offset order.
    pending: VecDeque<(u64, pb::Ack)>,
    min_isr: usize,
}

/// A change of the ISR the leader wants the controller to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrChange {
    /// Drop a lagging replica.
    Shrink(String),
    /// Re-admit a caught-up replica.
    Expand(String),
}

/// The leader's replication state, shared by the leader actor and the fetch handlers.
#[derive(Debug)]
pub struct Isr {
    me: String,
    log: Log,
    state: Mutex<State>,
}

impl Isr {
    /// State for a leader of `log` with this placement.
    pub fn new(
        me: String,
        log: Log,
        replicas: Vec<String>,
        isr: Vec<String>,
        min_isr: usize,
    ) -> Isr {
        let now = Instant::now();
        // Followers get a grace period: they are assumed caught up at zero until they first fetch.
        let progress = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                (
                    r.clone(),
                    Progress {
                        end: 0,
                        last_fetch: now,
                        caught_up: now,
                        target: 0,
                        in_sync: false,
                    },
                )
            })
            .collect();
        Isr {
            me,
            log,
            state: Mutex::new(State {
                isr,
                replicas,
                progress,
                pending: VecDeque::new(),
                min_isr: min_isr.max(1),
            }),
        }
    }

    /// Adopts the ISR from new metadata.
    pub fn set_isr(&self, isr: Vec<String>) {
        self.state.lock().isr = isr;
    }

    /// The ISR as the leader knows it.
    pub fn isr(&self) -> Vec<String> {
        self.state.lock().isr.clone()
    }

    /// Whether `replica` is a follower of this partition.
    pub fn is_follower(&self, replica: &str) -> bool {
        replica != self.me && self.state.lock().replicas.iter().any(|r| r == replica)
    }

    /// Holds ALL acks until the high watermark passes their offsets, then returns whatever is committed now
    /// (with a one-member ISR: everything).
    pub fn hold(&self, acks: Vec<(u64, pb::Ack)>) -> Vec<pb::Ack> {
        let mut state = self.state.lock();
        state.pending.extend(acks);
        self.advance_locked(&mut state)
    }

    /// Records a follower's fetch at `offset`; returns the acks this commits.
    pub fn record_fetch(&self, replica: &str, offset: u64) -> Vec<pb::Ack> {
        let leader_end = self.log.end_offset();
        let now = Instant::now();
        let mut state = self.state.lock();
        let progress = state
            .progress
            .entry(replica.to_string())
            .or_insert(Progress {
                end: offset,
                last_fetch: now,
                caught_up: now,
                target: 0,
                in_sync: false,
            });
        progress.end = offset;
        progress.last_fetch = now;
        progress.in_sync = offset >= progress.target || offset >= leader_end;
        if progress.in_sync {
            progress.caught_up = now;
        }
        progress.target = leader_end;
        self.advance_locked(&mut state)
    }

    /// Re-computes the high watermark (after an append with a one-member ISR, or an ISR change).
    pub fn advance(&self) -> Vec<pb::Ack> {
        let mut state = self.state.lock();
        self.advance_locked(&mut state)
    }

    fn advance_locked(&self, state: &mut State) -> Vec<pb::Ack> {
        if state.isr.len() < state.min_isr {
            return Vec::new();
        }
        let mut end = self.log.end_offset();
        for r in &state.isr {
            if *r != self.me {
                end = end.min(state.progress.get(r).map_or(0, |p| p.end));
            }
        }
        let hw = end as i64 - 1;
        if hw > self.log.high_watermark()
            && let Err(e) = self.log.set_high_watermark(hw)
        {
            tracing::warn!(error = %e, "cannot move the high watermark");
            return Vec::new();
        }
        let hw = self.log.high_watermark();
        let mut released = Vec::new();
        while state
            .pending
            .front()
            .is_some_and(|(offset, _)| *offset as i64 <= hw)
        {
            if let Some((_, ack)) = state.pending.pop_front() {
                released.push(ack);
            }
        }
        released
    }

    /// The ISR changes due now: followers silent or behind for longer than `lag`, and caught-up replicas outside
    /// the ISR.
    pub fn due_changes(&self, lag: Duration) -> Vec<IsrChange> {
        let state = self.state.lock();
        let leader_end = self.log.end_offset();
        let mut changes = Vec::new();
        for (replica, p) in &state.progress {
            let in_isr = state.isr.contains(replica);
            if in_isr && (p.last_fetch.elapsed() > lag || p.caught_up.elapsed() > lag) {
                changes.push(IsrChange::Shrink(replica.clone()));
            } else if !in_isr
                && p.in_sync
                && (p.end >= leader_end || p.last_fetch.elapsed() <= lag / 2)
            {
                changes.push(IsrChange::Expand(replica.clone()));
            }
        }
        changes
    }

    /// The ISR size below which ALL publishes are refused.
    pub fn min_isr(&self) -> usize {
        self.state.lock().min_isr
    }
}

/// Shared handle type.
pub type SharedIsr = Arc<Isr>;

/// What the fetch server needs to answer followers.
pub struct FetchServer {
    /// The leader's replication state.
    pub isr: SharedIsr,
    /// The partition's log.
    pub log: Log,
    /// NATS.
    pub bus: Arc<dyn crate::bus::Bus>,
    /// Where released ALL acks go.
    pub outbox: super::outbox::AckOutbox,
    /// This leader's epoch.
    pub leader_epoch: u64,
    /// Longest a caught-up fetch is held.
    pub idle_wait: Duration,
    /// Most record bytes per answer.
    pub max_bytes: usize,
    /// Fetches of caught-up followers, answered by the leader right after its next append.
    pub waiting: WaitingFetches,
}

/// A caught-up follower's fetch, held until the leader appends or the idle wait passes.
#[derive(Debug)]
struct Waiting {
    offset: u64,
    reply: String,
    deadline: tokio::time::Instant,
}

/// The fetches a leader holds (long polls). The leader actor answers them itself right after an append, so a
/// commit does not wait for another task to wake, read and reply.
#[derive(Debug, Default)]
pub struct WaitingFetches(Mutex<Vec<Waiting>>);

impl WaitingFetches {
    /// Holds a fetch at `offset` unless the log already goes past it (checked under the lock the leader takes
    /// after appending, so an append is never missed); returns the reply subject when it was not held.
    fn hold_unless_ready(
        &self,
        log: &Log,
        offset: u64,
        reply: String,
        deadline: tokio::time::Instant,
    ) -> Option<String> {
        let mut waiting = self.0.lock();
        if log.end_offset() > offset {
            return Some(reply);
        }
        waiting.push(Waiting {
            offset,
            reply,
            deadline,
        });
        None
    }

    /// Takes the held fetches `keep` returns false for.
    fn take(&self, keep: impl Fn(&Waiting) -> bool) -> Vec<Waiting> {
        let mut waiting = self.0.lock();
        let (keep, take): (Vec<Waiting>, Vec<Waiting>) = waiting.drain(..).partition(keep);
        *waiting = keep;
        take
    }

    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.0.lock().iter().map(|w| w.deadline).min()
    }
}

impl FetchServer {
    /// Answers fetches from `subscription` until `stop` fires.
    pub async fn run(
        self: Arc<Self>,
        mut subscription: crate::bus::BusSubscription,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        use futures::StreamExt;
        loop {
            let next_deadline = self.waiting.next_deadline();
            let expiry = async {
                match next_deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => break,
                _ = expiry => {
                    // Idle: nothing was appended within the idle wait; answer empty.
                    let now = tokio::time::Instant::now();
                    for w in self.waiting.take(|w| w.deadline > now) {
                        let answer = encode_response(&self.header(None), &[]);
                        let _ = self.bus.publish(w.reply, None, Vec::new(), answer).await;
                    }
                }
                message = subscription.next() => {
                    let Some(message) = message else { break };
                    let Some(reply) = message.reply else { continue };
                    // The follower's progress is recorded here, inline: this fetch may commit ALL acks, which
                    // then leave without waiting for another task to be scheduled.
                    let (reply, answer) = match self.record(&message.payload).await {
                        Err(answer) => (reply, answer),
                        Ok(req) => {
                            // Caught up: held until the leader's next append (see `answer_waiting`).
                            let deadline = tokio::time::Instant::now() + self.idle_wait;
                            match self.waiting.hold_unless_ready(&self.log, req.offset, reply, deadline) {
                                None => continue,
                                Some(reply) => (reply, self.read(req.offset)),
                            }
                        }
                    };
                    let _ = self.bus.publish(reply, None, Vec::new(), answer).await;
                }
            }
        }
        for w in self.waiting.take(|_| false) {
            let answer = encode_response(&self.header(Some("leader stopped".into())), &[]);
            let _ = self.bus.publish(w.reply, None, Vec::new(), answer).await;
        }
    }

    /// Answers every held fetch the log now goes past; the leader actor calls it after each append.
    pub async fn answer_waiting(&self) {
        let end = self.log.end_offset();
        // Caught-up followers wait at the same offset: one read answers them all.
        let mut last: Option<(u64, Bytes)> = None;
        for w in self.waiting.take(|w| w.offset >= end) {
            let answer = match &last {
                Some((offset, answer)) if *offset == w.offset => answer.clone(),
                _ => {
                    let answer = self.read(w.offset);
                    last = Some((w.offset, answer.clone()));
                    answer
                }
            };
            let _ = self.bus.publish(w.reply, None, Vec::new(), answer).await;
        }
    }

    fn header(&self, error: Option<String>) -> FetchResponse {
        FetchResponse {
            leader_epoch: self.leader_epoch,
            high_watermark: self.log.high_watermark(),
            truncate_to: None,
            error,
        }
    }

    /// Checks a fetch and records the follower's progress (releasing the ALL acks it commits). Returns the
    /// request to serve, or the answer when there is nothing to serve (refusal, truncation point).
    async fn record(&self, payload: &[u8]) -> Result<FetchRequest, Bytes> {
        let req: FetchRequest = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                return Err(encode_response(
                    &self.header(Some(format!("malformed fetch: {e}"))),
                    &[],
                ));
            }
        };
        if req.leader_epoch != self.leader_epoch {
            let why = format!(
                "leader epoch {} is not the current one ({})",
                req.leader_epoch, self.leader_epoch
            );
            return Err(encode_response(&self.header(Some(why)), &[]));
        }
        if !self.isr.is_follower(&req.replica) {
            let why = format!("{} is not a follower of this partition", req.replica);
            return Err(encode_response(&self.header(Some(why)), &[]));
        }
        if let Some(epoch) = req.last_epoch {
            let end = self
                .log
                .end_offset_for_leader_epoch(epoch)
                .map_or(self.log.end_offset(), |e| e.end_offset);
            let mut header = self.header(None);
            header.truncate_to = Some(end.min(self.log.end_offset()));
            return Err(encode_response(&header, &[]));
        }
        let end = self.log.end_offset();
        if req.offset > end {
            // The follower has records the leader does not: it must truncate (epoch query next time).
            let mut header = self.header(None);
            header.truncate_to = Some(end);
            return Err(encode_response(&header, &[]));
        }
        let acks = self.isr.record_fetch(&req.replica, req.offset);
        self.outbox.send(acks).await;
        Ok(req)
    }

    /// The answer with the records from `offset` on (up to `max_bytes`).
    fn read(&self, offset: u64) -> Bytes {
        let limit = self.log.end_offset();
        match self.log.read_raw(offset, self.max_bytes, limit) {
            Ok(bytes) => encode_response(&self.header(None), &bytes),
            Err(e) => encode_response(&self.header(Some(format!("read failed: {e}"))), &[]),
        }
    }
}
