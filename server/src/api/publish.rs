//! Publish, PublishAsync and PublishToSubject.
//!
//! Every gRPC publish goes out on NATS as a `Message` envelope, exactly like a NATS client using the envelope
//! would publish it: plain NATS subscribers on the subject see it, and every stream attached to the subject
//! records it. It leaves through the [`Intake`](crate::partition::intake::Intake), which hands it to this
//! server's own partition leaders in-process. The ack comes back on an inbox from the
//! [`AckRouter`](super::AckRouter).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use liftbridge_proto::{envelope, pb};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::{ApiContext, PUBLISH_ASYNC_DRAIN, ResponseStream, admin, status};
use crate::bus::validate_subject;
use crate::metadata::state::partition_subject;

/// Why a publish was refused before reaching NATS; becomes a gRPC status or a `PublishAsyncError`.
#[derive(Debug)]
struct Refusal {
    code: pb::publish_async_error::Code,
    status: Status,
}

impl Refusal {
    fn new(code: pb::publish_async_error::Code, status: Status) -> Self {
        Refusal { code, status }
    }
}

/// Checks a publish against the stream and partition, resuming a paused partition, and returns the subject to
/// publish to.
async fn prepare(ctx: &ApiContext, req: &pb::PublishRequest) -> Result<String, Refusal> {
    use pb::publish_async_error::Code;
    if req.stream.is_empty() {
        return Err(Refusal::new(
            Code::BadRequest,
            Status::invalid_argument("No stream provided"),
        ));
    }
    // A shared snapshot, not a copy of the stream: this runs for every published message.
    let snapshot = ctx.metadata.snapshot();
    let Some(stream) = snapshot.streams.get(&req.stream) else {
        return Err(Refusal::new(
            Code::NotFound,
            status::no_such_stream(&req.stream),
        ));
    };
    let Some(partition) = stream.partition(req.partition) else {
        return Err(Refusal::new(
            Code::NotFound,
            status::no_such_partition(&req.stream, req.partition),
        ));
    };
    if partition.readonly {
        return Err(Refusal::new(
            Code::Readonly,
            Status::failed_precondition(format!(
                "Partition {}/{} is readonly",
                req.stream, req.partition
            )),
        ));
    }
    if req.ack_policy == pb::AckPolicy::All as i32 {
        let min_isr = stream
            .settings
            .min_isr
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(ctx.config.clustering.min_insync_replicas as usize)
            .max(1);
        if partition.isr.len() < min_isr {
            return Err(Refusal::new(
                Code::Internal,
                Status::failed_precondition(format!(
                    "not enough in-sync replicas for {}/{}: the ISR {:?} has {} member(s), min.insync.replicas is \
                     {min_isr}; the message was not written (AckPolicy ALL)",
                    req.stream,
                    req.partition,
                    partition.isr,
                    partition.isr.len()
                )),
            ));
        }
    }
    let occ = stream
        .settings
        .optimistic_concurrency_control
        .unwrap_or(ctx.config.streams.concurrency_control);
    if occ && req.ack_policy == pb::AckPolicy::None as i32 {
        return Err(Refusal::new(
            Code::BadRequest,
            Status::invalid_argument(
                "stream uses optimistic concurrency control: AckPolicy NONE is not allowed (the result of the \
                 offset check could not be reported)",
            ),
        ));
    }
    let max = ctx.config.clustering.replication_max_bytes;
    if req.value.len() as u64 > max {
        return Err(Refusal::new(
            Code::BadRequest,
            Status::invalid_argument(format!(
                "message value of {} bytes exceeds clustering.replication.max.bytes ({max}) (TOO_LARGE)",
                req.value.len()
            )),
        ));
    }
    // The snapshot's flag is what `PartitionManager::why_unserved` would report as `Paused`; asking it again per
    // message cloned the stream's metadata every time.
    if partition.paused {
        admin::resume_partition(ctx, &req.stream, req.partition)
            .await
            .map_err(|s| Refusal::new(Code::Internal, s))?;
    }
    Ok(partition_subject(&stream.subject, req.partition))
}

fn to_message(req: pb::PublishRequest, inbox: String) -> pb::Message {
    pb::Message {
        key: req.key,
        value: req.value,
        headers: req.headers,
        ack_inbox: inbox,
        correlation_id: req.correlation_id,
        ack_policy: req.ack_policy,
        // In a publish envelope the offset field carries the expected offset (OCC).
        offset: req.expected_offset,
        ..Default::default()
    }
}

/// Turns an ack's error into the status a `Publish` answers with.
fn ack_status(ack: &pb::Ack) -> Option<Status> {
    use pb::ack::Error;
    match Error::try_from(ack.ack_error).unwrap_or(Error::Unknown) {
        Error::Ok => None,
        Error::IncorrectOffset => Some(Status::failed_precondition(format!(
            "incorrect expected offset for {}: the message was not written (INCORRECT_OFFSET)",
            ack.stream
        ))),
        Error::TooLarge => Some(Status::invalid_argument("message is too large (TOO_LARGE)")),
        Error::Encryption => Some(Status::internal("message could not be encrypted")),
        Error::Unknown => Some(Status::unknown("the partition leader refused the message")),
    }
}

fn async_error_code(ack: &pb::Ack) -> Option<pb::publish_async_error::Code> {
    use pb::ack::Error;
    use pb::publish_async_error::Code;
    match Error::try_from(ack.ack_error).unwrap_or(Error::Unknown) {
        Error::Ok => None,
        Error::IncorrectOffset => Some(Code::IncorrectOffset),
        Error::TooLarge => Some(Code::BadRequest),
        Error::Encryption => Some(Code::EncryptionFailed),
        Error::Unknown => Some(Code::Unknown),
    }
}

/// Publishes `message` to `subject` and waits up to `wait` for its ack on `inbox` (a router inbox, or the
/// caller's own inbox when it gave one).
async fn publish_and_wait(
    ctx: &ApiContext,
    subject: String,
    message: pb::Message,
    wait: Duration,
) -> Result<Option<pb::Ack>, Status> {
    let no_ack = message.ack_policy == pb::AckPolicy::None as i32;
    let inbox = message.ack_inbox.clone();
    let payload = envelope::encode_message(&message, false);
    if no_ack {
        ctx.intake
            .publish(subject, payload)
            .await
            .map_err(status::from_bus)?;
        return Ok(None);
    }
    let own_inbox = !ctx.acks.owns(&inbox);
    if own_inbox {
        // The caller named its own ack inbox: listen there for this one ack.
        let mut sub = ctx
            .bus
            .subscribe(inbox.clone(), None)
            .await
            .map_err(status::from_bus)?;
        ctx.bus.flush().await.map_err(status::from_bus)?;
        ctx.intake
            .publish(subject, payload)
            .await
            .map_err(status::from_bus)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, sub.next()).await;
            match next {
                Ok(Some(m)) => match envelope::decode_ack(&m.payload) {
                    Ok(ack) => return Ok(Some(ack)),
                    Err(_) => continue,
                },
                Ok(None) => return Err(Status::unavailable("ack subscription closed")),
                Err(_) => return Err(Status::deadline_exceeded(format!("no ack within {wait:?}"))),
            }
        }
    }
    let rx = ctx.acks.expect_one(&inbox);
    if let Err(e) = ctx.intake.publish(subject, payload).await {
        ctx.acks.forget(&inbox);
        return Err(status::from_bus(e));
    }
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(ack)) => Ok(Some(ack)),
        Ok(Err(_)) => Err(Status::unavailable("ack router stopped")),
        Err(_) => {
            ctx.acks.forget(&inbox);
            Err(Status::deadline_exceeded(format!("no ack within {wait:?}")))
        }
    }
}

/// `Publish`: waits for the ack (up to the gRPC deadline, or [`super::DEFAULT_ACK_WAIT`] without one) unless the
/// ack policy is NONE.
pub async fn publish(
    ctx: &ApiContext,
    req: pb::PublishRequest,
    wait: Duration,
) -> Result<pb::PublishResponse, Status> {
    let subject = prepare(ctx, &req).await.map_err(|r| r.status)?;
    let inbox = if req.ack_inbox.is_empty() {
        ctx.acks.new_inbox()
    } else {
        req.ack_inbox.clone()
    };
    let correlation_id = req.correlation_id.clone();
    let ack = publish_and_wait(ctx, subject, to_message(req, inbox), wait).await?;
    if let Some(status) = ack.as_ref().and_then(ack_status) {
        return Err(status);
    }
    Ok(pb::PublishResponse {
        ack,
        async_error: None,
        correlation_id,
    })
}

/// `PublishToSubject`: publishes to any subject and returns the first ack, if any stream records it.
pub async fn publish_to_subject(
    ctx: &ApiContext,
    req: pb::PublishToSubjectRequest,
    wait: Duration,
) -> Result<pb::PublishToSubjectResponse, Status> {
    validate_subject(&req.subject).map_err(|e| Status::invalid_argument(e.to_string()))?;
    if req.subject.contains(['*', '>']) {
        return Err(Status::invalid_argument(
            "cannot publish to a wildcard subject",
        ));
    }
    let inbox = if req.ack_inbox.is_empty() {
        ctx.acks.new_inbox()
    } else {
        req.ack_inbox.clone()
    };
    let message = pb::Message {
        key: req.key,
        value: req.value,
        headers: req.headers,
        ack_inbox: inbox,
        correlation_id: req.correlation_id,
        ack_policy: req.ack_policy,
        offset: -1,
        ..Default::default()
    };
    let ack = publish_and_wait(ctx, req.subject, message, wait).await?;
    Ok(pb::PublishToSubjectResponse { ack })
}

fn async_error(
    correlation_id: String,
    code: pb::publish_async_error::Code,
    message: String,
) -> pb::PublishResponse {
    pb::PublishResponse {
        // Older clients look for the correlation id in the ack.
        ack: Some(pb::Ack {
            correlation_id: correlation_id.clone(),
            ..Default::default()
        }),
        async_error: Some(pb::PublishAsyncError {
            code: code as i32,
            message,
        }),
        correlation_id,
    }
}

/// Most requests a `PublishAsync` session takes from its input before publishing them as one batch.
const PUBLISH_ASYNC_BATCH: usize = 512;

/// Most messages of one `PublishAsync` session whose ack has not been handed to the response stream yet; the
/// session stops reading requests beyond it until acks go out (so a client that never reads its acks is held
/// back by HTTP/2 flow control instead of growing the server's memory).
const PUBLISH_ASYNC_MAX_IN_FLIGHT: usize = 16_384;

/// Correlation ids of a session's messages whose ack has not come back yet, counted per id (ids may repeat).
///
/// An id is kept as a randomly keyed 64-bit hash ([`Session::key`]), not as a string: no copy and no string hashing
/// inside the map per message. Two ids in flight at once that share a hash are counted together, which still
/// balances (each ack takes one); only an ack for an id not in flight whose hash equals one that is could be
/// miscounted — a 2^-64 chance per pair with a keyed SipHash, and the cost of a miscount is at most an early end of
/// the final drain. The hash must stay keyed: the map uses it as it is ([`Prehashed`]), so with a fixed hash a
/// client could choose ids that all land in one bucket.
#[derive(Default)]
struct InFlight {
    ids: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    total: usize,
    /// The request task waits for the last ack (its input has ended).
    wake_when_empty: bool,
    /// The request task waits for room (it stopped reading at [`PUBLISH_ASYNC_MAX_IN_FLIGHT`]).
    wake_when_room: bool,
}

impl InFlight {
    /// Counts one message under `key` (its correlation id's [`Session::key`]).
    fn add(&mut self, key: u64) {
        *self.ids.entry(key).or_default() += 1;
        self.total += 1;
    }

    /// Accounts for one ack (nothing happens if no message waits under that key).
    fn remove_one(&mut self, key: u64) {
        if let Some(n) = self.ids.get_mut(&key) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.ids.remove(&key);
            }
        }
    }
}

/// The hasher of [`InFlight`]'s map, whose keys are hashes already: it passes them through.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are `u64`); fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// What a `PublishAsync` session's request task and its response stream share: the messages waiting for an
/// ack, and a wake-up for the request task when acks went out.
#[derive(Default)]
struct Session {
    in_flight: parking_lot::Mutex<InFlight>,
    acked: tokio::sync::Notify,
    /// Keys [`InFlight`]'s hashes (randomly, per session).
    keys: RandomState,
}

impl Session {
    /// The key of a correlation id in [`InFlight`] (hashed outside its lock).
    fn key(&self, correlation_id: &str) -> u64 {
        self.keys.hash_one(correlation_id)
    }
}

/// The `PublishAsync` response for an ack.
fn ack_response(ack: pb::Ack) -> pb::PublishResponse {
    let correlation_id = ack.correlation_id.clone();
    match async_error_code(&ack) {
        None => pb::PublishResponse {
            ack: Some(ack),
            async_error: None,
            correlation_id,
        },
        Some(code) => {
            let message = ack_status(&ack)
                .map(|s| s.message().to_string())
                .unwrap_or_default();
            pb::PublishResponse {
                ack: Some(ack),
                async_error: Some(pb::PublishAsyncError {
                    code: code as i32,
                    message,
                }),
                correlation_id,
            }
        }
    }
}

/// Checks and publishes a batch of `PublishAsync` requests (one bus batch, in order); refusals and publish
/// failures are answered at once. Returns false once the response stream is gone.
async fn publish_requests(
    ctx: &ApiContext,
    inbox: &str,
    batch: Vec<pb::PublishRequest>,
    session: &Session,
    out: &mpsc::Sender<Result<pb::PublishResponse, Status>>,
) -> bool {
    let mut messages = Vec::with_capacity(batch.len());
    // Beside each message: its correlation id and, if it waits for an ack, the id's in-flight key.
    let mut sent = Vec::with_capacity(batch.len());
    for req in batch {
        let wants_ack = req.ack_policy != pb::AckPolicy::None as i32;
        match prepare(ctx, &req).await {
            Ok(subject) => {
                let message = to_message(req, inbox.to_string());
                messages.push((subject, envelope::encode_message(&message, false)));
                // The id is taken back from the encoded message (no copy per message).
                let key = wants_ack.then(|| session.key(&message.correlation_id));
                sent.push((message.correlation_id, key));
            }
            Err(refusal) => {
                let resp = async_error(
                    req.correlation_id,
                    refusal.code,
                    refusal.status.message().to_string(),
                );
                if out.send(Ok(resp)).await.is_err() {
                    return false;
                }
            }
        }
    }
    if messages.is_empty() {
        return true;
    }
    // Counted before they leave: an ack may reach the response stream before `publish_batch` returns.
    {
        let mut in_flight = session.in_flight.lock();
        for key in sent.iter().filter_map(|(_, key)| *key) {
            in_flight.add(key);
        }
    }
    let results = ctx.intake.publish_batch(messages).await;
    for ((correlation_id, key), result) in sent.into_iter().zip(results) {
        if let Err(e) = result {
            if let Some(key) = key {
                session.in_flight.lock().remove_one(key);
            }
            let status = status::from_bus(e);
            let resp = async_error(
                correlation_id,
                pb::publish_async_error::Code::Internal,
                status.message().to_string(),
            );
            if out.send(Ok(resp)).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// The response stream of a `PublishAsync` session. Acks go from the ack router straight into it (the task that
/// reads the requests is not woken for them: one hand-over less per ack); refusals, publish failures and the final
/// status come from that task through `answers`. It ends after the task ends (and what it had queued is sent).
struct Responses {
    acks: mpsc::UnboundedReceiver<pb::Ack>,
    answers: mpsc::Receiver<Result<pb::PublishResponse, Status>>,
    session: Arc<Session>,
    answers_done: bool,
}

impl futures::Stream for Responses {
    type Item = Result<pb::PublishResponse, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        if !this.answers_done {
            match this.answers.poll_recv(cx) {
                Poll::Ready(Some(answer)) => return Poll::Ready(Some(answer)),
                Poll::Ready(None) => this.answers_done = true,
                Poll::Pending => {}
            }
        }
        let ack = if this.answers_done {
            // The request task has ended: send what already came back, then end.
            this.acks.try_recv().ok()
        } else {
            match this.acks.poll_recv(cx) {
                Poll::Ready(ack) => ack,
                Poll::Pending => return Poll::Pending,
            }
        };
        match ack {
            Some(ack) => {
                // A duplicate or late ack is forwarded too, as before.
                let key = this.session.key(&ack.correlation_id);
                let wake = {
                    let mut in_flight = this.session.in_flight.lock();
                    in_flight.remove_one(key);
                    let wake = (in_flight.wake_when_empty && in_flight.total == 0)
                        || (in_flight.wake_when_room
                            && in_flight.total < PUBLISH_ASYNC_MAX_IN_FLIGHT);
                    if wake {
                        in_flight.wake_when_empty = false;
                        in_flight.wake_when_room = false;
                    }
                    wake
                };
                // The request task is woken only when it waits for this (not once per ack).
                if wake {
                    this.session.acked.notify_one();
                }
                Poll::Ready(Some(Ok(ack_response(ack))))
            }
            None if this.answers_done => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

/// `PublishAsync`: pipelined publishes on one stream. Each message with an ack policy other than NONE gets one
/// response, matched by correlation id; refusals come back as `asyncError`. When the client half-closes, acks
/// still in flight are awaited for up to [`PUBLISH_ASYNC_DRAIN`].
pub fn publish_async(
    ctx: Arc<ApiContext>,
    mut requests: Streaming<pb::PublishRequest>,
) -> ResponseStream<pb::PublishResponse> {
    let (out, answers) = mpsc::channel::<Result<pb::PublishResponse, Status>>(1024);
    let inbox = ctx.acks.new_inbox();
    let acks = ctx.acks.expect_many(&inbox);
    let session = Arc::new(Session::default());
    let mut shutdown = ctx.shutdown.clone();
    let task_session = session.clone();
    tokio::spawn(async move {
        let session = task_session;
        let mut input_open = true;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            let drain = async {
                match drain_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            // Created before the check, so a notification in between is not lost.
            let acked = session.acked.notified();
            let room = {
                let mut in_flight = session.in_flight.lock();
                if !input_open && in_flight.total == 0 {
                    break;
                }
                let room = in_flight.total < PUBLISH_ASYNC_MAX_IN_FLIGHT;
                in_flight.wake_when_empty = !input_open;
                in_flight.wake_when_room = input_open && !room;
                room
            };
            tokio::select! {
                request = requests.next(), if input_open && room => {
                    // Take every request that has already arrived (up to a bound) and publish them as one batch.
                    let mut batch = Vec::new();
                    let mut next = Some(request);
                    let mut input_failed = false;
                    while let Some(request) = next.take() {
                        match request {
                            Some(Ok(req)) => batch.push(req),
                            Some(Err(status)) => {
                                tracing::debug!(%status, "PublishAsync input failed");
                                input_failed = true;
                                break;
                            }
                            None => {
                                input_open = false;
                                drain_deadline = Some(tokio::time::Instant::now() + PUBLISH_ASYNC_DRAIN);
                                break;
                            }
                        }
                        if batch.len() < PUBLISH_ASYNC_BATCH {
                            next = requests.next().now_or_never();
                        }
                    }
                    if !publish_requests(&ctx, &inbox, batch, &session, &out).await || input_failed {
                        break;
                    }
                }
                _ = acked => {}
                _ = drain => break,
                _ = out.closed() => break,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        let _ = out.send(Err(Status::unavailable("Server is shutting down"))).await;
                        break;
                    }
                }
            }
        }
        ctx.acks.forget(&inbox);
    });
    Box::pin(Responses {
        acks,
        answers,
        session,
        answers_done: false,
    })
}
