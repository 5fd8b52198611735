//! Publishing over one long-lived `PublishAsync` stream per server.
//!
//! # How a message travels
//! 1. [`send`] takes a permit of the client's in-flight window (a semaphore: this is the backpressure), picks
//!    the partition and the server (the partition's leader), and hands the request to that server's
//!    [`Publisher`]: a bounded channel feeding the gRPC request stream.
//! 2. The publisher registers the message under a sequence number (parsed back out of the generated
//!    correlation id, so the ack lookup allocates nothing) with its ack deadline, then queues it.
//! 3. The publisher's task reads responses and completes the matching [`AckFuture`], releasing the permit.
//!    It also expires acks past their deadline (a FIFO of deadlines: every message of a client has the same
//!    ack timeout) and, when the stream breaks, fails every pending message at once with `Disconnected`.
//!    While a message is the only one waiting on its stream (a synchronous publish), its `AckFuture` also
//!    reads the responses itself, registering a waker that wakes both the caller and the task: the connection
//!    then wakes the caller directly instead of through the task, which stays woken on every response, so a
//!    future polled once and then left alone never holds back anything.
//!
//! A message refused before it entered the channel (the stream had already broken) is re-queued on a fresh
//! stream: it surely was not sent, so that cannot duplicate it.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::Stream as _;
use liftbridge_proto::pb;
use parking_lot::Mutex;
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, skip_field};
use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::client::{Inner, addr_in};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::event::Event;
use crate::message::{Ack, Message};
use crate::metadata::Metadata;
use crate::options::AckPolicy;
use crate::partition::Partitioning;
use crate::wire::{Malformed, Span, expect, slice};

/// Requests queued per publish stream ahead of the HTTP/2 writer. The in-flight window bounds acked
/// messages; this bounds AckPolicy NONE ones too.
const REQUEST_QUEUE: usize = 1024;

/// How many times a message that met a broken stream before being queued is re-queued on a new stream.
const REQUEUE_ATTEMPTS: usize = 3;

/// The gRPC method of `PublishAsync` (the same path the generated client uses).
const PUBLISH_ASYNC_PATH: &str = "/proto.API/PublishAsync";

/// A `PublishResponse` as the publish task needs it: the ack decoded without copying (see [`Ack`]), the
/// correlation id a range of the received buffer.
#[derive(Debug)]
struct PublishReply {
    raw: Bytes,
    correlation_id: Span,
    ack: Option<Ack>,
    async_error: Option<pb::PublishAsyncError>,
}

impl PublishReply {
    fn decode(raw: Bytes) -> std::result::Result<Self, Malformed> {
        let mut reply = PublishReply {
            raw: raw.clone(),
            correlation_id: Span::default(),
            ack: None,
            async_error: None,
        };
        let mut buf = raw;
        while buf.has_remaining() {
            let (tag, wire) = decode_key(&mut buf)?;
            match tag {
                1..=3 => {
                    expect(wire, WireType::LengthDelimited, tag)?;
                    let field = slice(&mut buf)?;
                    match tag {
                        1 => reply.ack = Some(Ack::decode(field)?),
                        2 => reply.async_error = Some(pb::PublishAsyncError::decode(field)?),
                        _ => reply.correlation_id = Span::of(&reply.raw, &field)?,
                    }
                }
                _ => skip_field(wire, tag, &mut buf, DecodeContext::default())?,
            }
        }
        Ok(reply)
    }

    fn correlation_id(&self) -> &str {
        self.correlation_id.get(&self.raw)
    }
}

/// The gRPC codec of `PublishAsync`: requests encoded by prost, responses decoded into [`PublishReply`].
#[derive(Debug, Default, Clone, Copy)]
struct PublishCodec;

impl Codec for PublishCodec {
    type Encode = pb::PublishRequest;
    type Decode = PublishReply;
    type Encoder = PublishCodec;
    type Decoder = PublishCodec;

    fn encoder(&mut self) -> Self::Encoder {
        PublishCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        PublishCodec
    }
}

impl Encoder for PublishCodec {
    type Item = pb::PublishRequest;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut EncodeBuf<'_>,
    ) -> std::result::Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("encoding a publish request: {e}")))
    }
}

impl Decoder for PublishCodec {
    type Item = PublishReply;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> std::result::Result<Option<PublishReply>, tonic::Status> {
        let raw = src.copy_to_bytes(src.remaining());
        PublishReply::decode(raw)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("decoding a publish response: {e}")))
    }
}

/// The future of one message's ack, returned by [`Client::send`](crate::Client::send).
///
/// Resolves to the [`Ack`], or to the error the server reported for the message (typed: incorrect offset,
/// too large, readonly...), [`ErrorKind::AckTimeout`], or [`ErrorKind::Disconnected`] when the stream broke.
/// Dropping it discards the ack; the message still counts against the in-flight window until its ack comes
/// or times out.
#[derive(Debug)]
#[must_use = "the ack future does nothing unless awaited; drop it to ignore the ack"]
pub struct AckFuture {
    state: AckState,
}

#[derive(Debug)]
enum AckState {
    Waiting {
        rx: oneshot::Receiver<Result<Ack>>,
        shared: Arc<Shared>,
    },
    Ready(Option<Result<Ack>>),
}

impl AckFuture {
    fn ready(result: Result<Ack>) -> Self {
        AckFuture {
            state: AckState::Ready(Some(result)),
        }
    }
}

impl Future for AckFuture {
    type Output = Result<Ack>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Ack>> {
        let settled = |r: std::result::Result<Result<Ack>, oneshot::error::RecvError>| match r {
            Ok(result) => result,
            Err(_) => Err(Error::disconnected("waiting for an ack")),
        };
        match &mut self.state {
            AckState::Waiting { rx, shared } => {
                let mut ready = Pin::new(&mut *rx).poll(cx);
                // The only message waiting on its stream reads the responses itself, so that the connection
                // wakes this task directly rather than through the publisher task (which it wakes too).
                if ready.is_pending()
                    && let Some(task) = shared.lone_reader_task()
                {
                    let both = Waker::from(Arc::new(BothWaker {
                        task,
                        caller: cx.waker().clone(),
                    }));
                    shared.read_responses(&mut Context::from_waker(&both));
                    ready = Pin::new(&mut *rx).poll(cx);
                }
                let Poll::Ready(r) = ready else {
                    return Poll::Pending;
                };
                self.state = AckState::Ready(None);
                Poll::Ready(settled(r))
            }
            AckState::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::Closed,
                    "ack future polled after completion",
                ))
            })),
        }
    }
}

/// Wakes the publisher task and a caller waiting for its ack, the caller last (tokio runs the task a thread woke
/// last next on that thread, so the caller reads its ack without changing threads).
struct BothWaker {
    task: Waker,
    caller: Waker,
}

impl std::task::Wake for BothWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.task.wake_by_ref();
        self.caller.wake_by_ref();
    }
}

/// Correlation ids: a random per-client prefix and a counter. The counter is the key of the pending map,
/// so matching an ack parses a number instead of hashing and cloning strings.
#[derive(Debug)]
struct CorrelationIds {
    prefix: String,
    next: AtomicU64,
}

impl CorrelationIds {
    fn new() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let mut prefix: String = (0..16)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        prefix.push('.');
        CorrelationIds {
            prefix,
            next: AtomicU64::new(0),
        }
    }

    fn next_seq(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn format(&self, seq: u64) -> String {
        let mut id = String::with_capacity(self.prefix.len() + 20);
        id.push_str(&self.prefix);
        let _ = write!(id, "{seq}");
        id
    }

    fn parse(&self, id: &str) -> Option<u64> {
        id.strip_prefix(self.prefix.as_str())?.parse().ok()
    }
}

/// The client's publish streams (one per server address) and its in-flight window.
#[derive(Debug)]
pub(crate) struct Publishers {
    map: Mutex<HashMap<String, Arc<Publisher>>>,
    window: Arc<Semaphore>,
    ids: Arc<CorrelationIds>,
}

impl Publishers {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Publishers {
            map: Mutex::new(HashMap::new()),
            window: Arc::new(Semaphore::new(max_in_flight)),
            ids: Arc::new(CorrelationIds::new()),
        }
    }

    /// The open publisher for `addr`, opening one when there is none or the last one broke.
    fn get(&self, inner: &Inner, addr: &str) -> Result<Arc<Publisher>> {
        let mut map = self.map.lock();
        // `close()` cancels first and then drains under this lock, so checking here (under the lock) means no
        // publisher is opened, and nothing sent, after the drain.
        if inner.closed.is_cancelled() {
            return Err(Error::closed());
        }
        if let Some(p) = map.get(addr)
            && p.shared.state.lock().open
        {
            return Ok(p.clone());
        }
        let grpc = inner.connections.grpc(addr)?;
        let publisher = Publisher::open(
            addr.to_string(),
            grpc,
            self.ids.clone(),
            inner.events.clone(),
            inner.opts.ack_timeout,
        );
        map.insert(addr.to_string(), publisher.clone());
        Ok(publisher)
    }

    /// Waits up to `grace` for every pending ack, then fails what is left with `Closed` and closes the streams.
    pub(crate) async fn drain(&self, grace: Duration) {
        let publishers: Vec<Arc<Publisher>> = self.map.lock().drain().map(|(_, p)| p).collect();
        let deadline = Instant::now() + grace;
        for p in &publishers {
            p.wait_idle(deadline).await;
        }
        for p in &publishers {
            p.shared.fail_all(&Error::closed(), true);
        }
    }
}

/// One message waiting for its ack.
#[derive(Debug)]
struct Pending {
    tx: oneshot::Sender<Result<Ack>>,
    partition: i32,
    /// The user's own correlation id, when it gave one (to unregister it).
    custom_id: Option<String>,
    /// Holds the message's place in the in-flight window until the ack is settled.
    _permit: OwnedSemaphorePermit,
}

/// The hasher of the pending map, whose keys are sequence numbers: one multiplication (Fibonacci hashing) spreads
/// consecutive numbers over the table, where the default SipHash cost more than the rest of the lookup. The
/// numbers are ours, not the server's, so there is nothing for anyone to collide on purpose.
#[derive(Default)]
struct SeqHasher(u64);

/// 2^64 divided by the golden ratio, odd: multiplying by it permutes the low bits and mixes the high ones.
const GOLDEN_RATIO_64: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits, which a product draws from the key's low bits only: the
        // rotation brings the mixed high bits down, so keys with equal low bits (a stride of a power of two, as
        // one publisher of many sees) still spread.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are `u64`); fold anything else in rather than lose it.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(GOLDEN_RATIO_64);
    }
}

/// Bookkeeping shared by a publisher's senders and its task.
#[derive(Debug, Default)]
struct State {
    /// False once the stream broke or the client closed: nothing may be registered any more.
    open: bool,
    /// Set by `close()`: the stream ending is then expected, not an event.
    closing: bool,
    pending: HashMap<u64, Pending, BuildHasherDefault<SeqHasher>>,
    /// User-given correlation id → sequence number.
    custom_ids: HashMap<String, u64>,
    /// Ack deadlines in send order (all messages share the ack timeout, so this is also deadline order).
    /// Entries already acked are skipped lazily.
    deadlines: VecDeque<(Instant, u64)>,
    /// How the response stream ended, once it did and the publisher task has not reported it yet.
    ended: Option<std::result::Result<(), tonic::Status>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the task when a deadline is queued while none was (it then arms its timer).
    wake: Notify,
    /// Signalled whenever no message is pending any more (for draining).
    idle: Notify,
    ids: Arc<CorrelationIds>,
    /// For the ack timeout error message.
    ack_timeout: Duration,
    /// The response stream once it is open. Read by the publisher task, or by the ack future of the only message
    /// waiting (a synchronous publish), so that the connection wakes the waiting caller directly.
    responses: Mutex<Option<Streaming<PublishReply>>>,
    /// The publisher task's waker: a caller reading the response stream registers it along with its own.
    task: Mutex<Option<Waker>>,
}

impl Shared {
    /// Reads every response that has arrived, completing the messages they are for; registers `cx` to be woken
    /// by the next one. When the stream has ended, records how and wakes the publisher task. Does nothing when
    /// someone else is reading (their waker wakes the publisher task too) or the stream is not open yet.
    fn read_responses(&self, cx: &mut Context<'_>) {
        if let Some(responses) = self.responses.try_lock() {
            self.read_locked(responses, cx);
        }
    }

    /// [`Shared::read_responses`] with the lock already taken.
    fn read_locked(
        &self,
        mut responses: parking_lot::MutexGuard<'_, Option<Streaming<PublishReply>>>,
        cx: &mut Context<'_>,
    ) {
        let Some(stream) = responses.as_mut() else {
            return;
        };
        let end = loop {
            match Pin::new(&mut *stream).poll_next(cx) {
                Poll::Ready(Some(Ok(reply))) => self.complete(reply),
                Poll::Ready(Some(Err(status))) => break Err(status),
                Poll::Ready(None) => break Ok(()),
                Poll::Pending => return,
            }
        };
        *responses = None;
        drop(responses);
        self.state.lock().ended = Some(end);
        self.wake_task();
    }

    fn wake_task(&self) {
        if let Some(task) = self.task.lock().as_ref() {
            task.wake_by_ref();
        }
    }

    /// The publisher task's waker, when a caller should read the response stream itself: its message is the only
    /// one waiting (a synchronous publish), and the stream is open.
    fn lone_reader_task(&self) -> Option<Waker> {
        {
            let state = self.state.lock();
            if !state.open || state.ended.is_some() || state.pending.len() != 1 {
                return None;
            }
        }
        self.task.lock().clone()
    }

    /// Pops deadline entries of messages that are no longer pending.
    fn trim(state: &mut State) {
        while let Some(&(_, seq)) = state.deadlines.front() {
            if state.pending.contains_key(&seq) {
                break;
            }
            state.deadlines.pop_front();
        }
    }

    /// Completes the message a response is for.
    fn complete(&self, resp: PublishReply) {
        let corr = match (resp.correlation_id(), &resp.ack) {
            ("", Some(ack)) => ack.correlation_id(),
            (id, _) => id,
        };
        let pending = {
            let mut state = self.state.lock();
            let seq = match self.ids.parse(corr) {
                Some(seq) => Some(seq),
                None => state.custom_ids.remove(corr),
            };
            let pending = seq.and_then(|seq| state.pending.remove(&seq));
            if let Some(id) = pending.as_ref().and_then(|p| p.custom_id.as_deref()) {
                state.custom_ids.remove(id);
            }
            Self::trim(&mut state);
            if state.pending.is_empty() {
                self.idle.notify_waiters();
            }
            pending
        };
        let Some(pending) = pending else {
            // An ack that timed out already, or a refusal of an AckPolicy NONE message.
            if let Some(err) = &resp.async_error {
                tracing::warn!(
                    correlation_id = corr,
                    code = err.code,
                    message = err.message,
                    "publish refused"
                );
            }
            return;
        };
        let result = match (&resp.async_error, resp.ack) {
            (Some(err), ack) => {
                let stream = ack.as_ref().map(|a| a.stream()).unwrap_or("");
                let ack_error = ack.as_ref().map(Ack::ack_error);
                Err(crate::error::from_async_error(err, ack_error, stream))
            }
            (None, Some(ack)) => match ack.ack_error() {
                pb::ack::Error::Ok => Ok(ack.with_partition(Some(pending.partition))),
                err => Err(crate::error::from_ack_error(err, ack.stream())),
            },
            (None, None) => Err(Error::new(
                ErrorKind::Protocol,
                "the server answered a publish with neither an ack nor an error",
            )),
        };
        let _ = pending.tx.send(result);
    }

    /// Fails the messages whose ack deadline passed.
    fn expire(&self, now: Instant) {
        let ack_timeout = self.ack_timeout;
        let mut expired = Vec::new();
        {
            let mut state = self.state.lock();
            while let Some(&(deadline, seq)) = state.deadlines.front() {
                if deadline > now {
                    break;
                }
                state.deadlines.pop_front();
                if let Some(p) = state.pending.remove(&seq) {
                    if let Some(id) = &p.custom_id {
                        state.custom_ids.remove(id);
                    }
                    expired.push(p);
                }
            }
            Self::trim(&mut state);
            if state.pending.is_empty() {
                self.idle.notify_waiters();
            }
        }
        for p in expired {
            let _ = p.tx.send(Err(Error::new(
                ErrorKind::AckTimeout,
                format!(
                    "no ack within {ack_timeout:?}: the message may or may not have been written (retry with an \
                     expected offset to avoid duplicates, or raise the ack timeout)"
                ),
            )));
        }
    }

    /// Marks the stream unusable and fails every pending message with `err`; returns how many there were.
    fn fail_all(&self, err: &Error, closing: bool) -> usize {
        let pending: Vec<Pending> = {
            let mut state = self.state.lock();
            state.open = false;
            state.closing |= closing;
            state.custom_ids.clear();
            state.deadlines.clear();
            let drained = state.pending.drain().map(|(_, p)| p).collect();
            self.idle.notify_waiters();
            drained
        };
        let n = pending.len();
        for p in pending {
            let _ = p.tx.send(Err(err.clone()));
        }
        n
    }
}

/// One server's `PublishAsync` stream.
#[derive(Debug)]
pub(crate) struct Publisher {
    requests: mpsc::Sender<pb::PublishRequest>,
    shared: Arc<Shared>,
}

/// A message on its way into a publish stream, with what registering it needs.
struct Outgoing {
    req: pb::PublishRequest,
    /// Its sequence number (the key of the pending map).
    seq: u64,
    /// The user's own correlation id, when it gave one.
    custom_id: Option<String>,
    partition: i32,
    /// Its place in the in-flight window (`None`: AckPolicy NONE, no ack awaited).
    permit: Option<OwnedSemaphorePermit>,
}

/// Why a message could not be queued. The message comes back boxed: refusals are rare, and a small result is
/// cheaper to return on every send.
enum Refused {
    /// The stream broke before the message entered it: safe to queue on a new stream.
    NotSent(Box<Outgoing>),
    /// The request queue is full: wait for room.
    Full(Box<Outgoing>),
    /// The message itself is wrong.
    Invalid(Error),
}

/// What queuing a message gives: its ack receiver (`None` for AckPolicy NONE), or why it was not queued.
type Enqueued = std::result::Result<Option<oneshot::Receiver<Result<Ack>>>, Refused>;

impl Publisher {
    /// Opens the stream (lazily: the call is made by the task; messages queue meanwhile).
    fn open(
        addr: String,
        grpc: tonic::client::Grpc<tonic::transport::Channel>,
        ids: Arc<CorrelationIds>,
        events: tokio::sync::broadcast::Sender<Event>,
        ack_timeout: Duration,
    ) -> Arc<Publisher> {
        let (requests, rx) = mpsc::channel(REQUEST_QUEUE);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                open: true,
                ..State::default()
            }),
            wake: Notify::new(),
            idle: Notify::new(),
            ids,
            ack_timeout,
            responses: Mutex::new(None),
            task: Mutex::new(None),
        });
        tokio::spawn(run(grpc, rx, shared.clone(), addr, events));
        Arc::new(Publisher { requests, shared })
    }

    /// Registers and queues one message when the request queue has room (it nearly always has), or answers
    /// [`Refused::Full`] to wait for room with [`Publisher::enqueue`].
    fn try_enqueue(&self, msg: Outgoing) -> Enqueued {
        match self.requests.try_reserve() {
            Ok(slot) => self.register(slot, msg),
            Err(mpsc::error::TrySendError::Closed(())) => Err(Refused::NotSent(Box::new(msg))),
            Err(mpsc::error::TrySendError::Full(())) => Err(Refused::Full(Box::new(msg))),
        }
    }

    /// [`Publisher::try_enqueue`] waiting for room in the request queue, for at most the ack timeout: a server
    /// that stops reading must not hang `send` forever (the message was surely not sent, so the error says so).
    async fn enqueue(&self, msg: Outgoing) -> Enqueued {
        match tokio::time::timeout(self.shared.ack_timeout, self.requests.reserve()).await {
            Ok(Ok(slot)) => self.register(slot, msg),
            Ok(Err(_)) => Err(Refused::NotSent(Box::new(msg))),
            Err(_) => Err(Refused::Invalid(Error::new(
                ErrorKind::AckTimeout,
                format!(
                    "the publish stream accepted nothing for {:?}; the message was not sent (retry it, or check \
                     the server)",
                    self.shared.ack_timeout
                ),
            ))),
        }
    }

    /// Registers the message as pending (unless it wants no ack) and queues it in its reserved `slot`.
    fn register(&self, slot: mpsc::Permit<'_, pb::PublishRequest>, msg: Outgoing) -> Enqueued {
        let mut state = self.shared.state.lock();
        if !state.open {
            return Err(Refused::NotSent(Box::new(msg)));
        }
        let Outgoing {
            req,
            seq,
            custom_id,
            partition,
            permit,
        } = msg;
        let Some(permit) = permit else {
            drop(state);
            slot.send(req);
            return Ok(None);
        };
        if let Some(id) = &custom_id {
            if state.custom_ids.contains_key(id) {
                return Err(Refused::Invalid(Error::invalid(format!(
                    "correlation id {id:?} is already used by a message awaiting its ack; correlation ids must be \
                     unique"
                ))));
            }
            state.custom_ids.insert(id.clone(), seq);
        }
        let (tx, rx) = oneshot::channel();
        let was_empty = state.deadlines.is_empty();
        state.pending.insert(
            seq,
            Pending {
                tx,
                partition,
                custom_id,
                _permit: permit,
            },
        );
        // Taken under the lock, so the FIFO stays in deadline order whatever the interleaving.
        let deadline = Instant::now() + self.shared.ack_timeout;
        state.deadlines.push_back((deadline, seq));
        drop(state);
        if was_empty {
            self.shared.wake.notify_one();
        }
        slot.send(req);
        Ok(Some(rx))
    }

    /// Waits until nothing is pending or `deadline` passes.
    async fn wait_idle(&self, deadline: Instant) {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.state.lock().pending.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }
}

/// Resolves when the response stream has ended (read by the task or by a waiting caller), with how it ended.
fn ended(shared: &Shared, cx: &mut Context<'_>) -> Poll<std::result::Result<(), tonic::Status>> {
    {
        let mut task = shared.task.lock();
        if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            *task = Some(cx.waker().clone());
        }
    }
    // The task waits for the lock rather than skipping (as callers do): a caller holding it may have had its
    // waker taken by a response that came in after it last looked, so only this read is sure to see it.
    shared.read_locked(shared.responses.lock(), cx);
    match shared.state.lock().ended.take() {
        Some(end) => Poll::Ready(end),
        None => Poll::Pending,
    }
}

/// However the publisher task ends — even cancelled with its runtime — drops the response stream held in the
/// shared state and fails what is still pending (after a normal end nothing is: the task failed it already).
struct ClearResponses<'a>(&'a Shared);

impl Drop for ClearResponses<'_> {
    fn drop(&mut self) {
        *self.0.responses.lock() = None;
        self.0.fail_all(
            &Error::disconnected("waiting for an ack (the publish task stopped with its runtime)"),
            false,
        );
    }
}

/// The publisher task: opens the stream, matches responses to pending messages, expires late acks, and fails
/// everything when the stream breaks.
async fn run(
    mut grpc: tonic::client::Grpc<tonic::transport::Channel>,
    rx: mpsc::Receiver<pb::PublishRequest>,
    shared: Arc<Shared>,
    addr: String,
    events: tokio::sync::broadcast::Sender<Event>,
) {
    let call = async move {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connecting: {e}")))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(PUBLISH_ASYNC_PATH);
        grpc.streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            path,
            PublishCodec,
        )
        .await
    };
    tokio::pin!(call);
    let mut open = false;
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let op = Op::Publish { stream: "" };
    // However the task ends (even cancelled with its runtime), the response stream goes with it.
    let _stream = ClearResponses(&shared);
    let failure: Error = loop {
        // The timer is armed at the oldest deadline when it is not armed yet, and never moved while armed:
        // an ack that removes the oldest message leaves it to fire early once (then it re-arms at the new
        // oldest). Resetting it on every ack took the runtime's timer lock once per message.
        if armed.is_none() {
            armed = shared.state.lock().deadlines.front().map(|d| d.0);
            if let Some(t) = armed {
                timer.as_mut().reset(t);
            }
        }
        tokio::select! {
            opened = &mut call, if !open => match opened {
                Ok(resp) => {
                    *shared.responses.lock() = Some(resp.into_inner());
                    open = true;
                }
                Err(status) => {
                    let err = crate::error::from_status(status, op);
                    break if err.not_sent() { err } else { Error::disconnected(&format!("publish stream to {addr}")).with_source(err) };
                }
            },
            end = std::future::poll_fn(|cx| ended(&shared, cx)), if open => match end {
                Ok(()) => break Error::disconnected(&format!("publish stream to {addr} ended")),
                Err(status) => {
                    let err = crate::error::from_status(status, op);
                    break Error::disconnected(&format!("publish stream to {addr}")).with_source(err);
                }
            },
            _ = &mut timer, if armed.is_some() => {
                shared.expire(Instant::now());
                armed = None;
            }
            _ = shared.wake.notified(), if armed.is_none() => {}
        }
    };
    let closing = shared.state.lock().closing;
    let failed = shared.fail_all(&failure, false);
    drop(_stream);
    if !closing {
        tracing::debug!(addr, error = %failure, failed, "publish stream broke");
        let _ = events.send(Event::PublishStreamBroken {
            addr,
            in_flight: failed,
        });
    }
}

/// Sends one message: window permit, partition, server, queue. See the module docs.
///
/// This future is created and moved once per message, and a future is as big as everything it may wait on: the
/// common case (a free window slot, the route cached, room in the queue) therefore waits on nothing, and each
/// wait that can happen is a boxed future awaited only when it does (before, the inlined metadata fetches made
/// this future 3 KB, copied several times per message).
pub(crate) async fn send(inner: &Arc<Inner>, stream: &str, message: Message) -> Result<AckFuture> {
    inner.check_open()?;
    if stream.is_empty() {
        return Err(Error::invalid("publishing needs a stream name"));
    }
    let publishers = &inner.publishers;
    let permit = if message.ack_policy == AckPolicy::None {
        None
    } else {
        match publishers.window.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::NoPermits) => Some(Box::pin(window_slot(inner)).await?),
            Err(TryAcquireError::Closed) => return Err(Error::closed()),
        }
    };
    // One snapshot for the partition count and the leader: a fetch (rare) makes it stale, and the address is then
    // looked up afresh.
    let metadata = inner.metadata.snapshot();
    let partition = match cached_partition(inner, &metadata, stream, &message) {
        Some(partition) => partition,
        None => Box::pin(fetched_partition(inner, stream, &message)).await?,
    };
    let addr = match addr_in(&metadata, stream, partition, false) {
        Some(addr) => addr,
        None => Box::pin(inner.partition_addr(stream, partition, false)).await?,
    };
    drop(metadata);
    let ids = &publishers.ids;
    let seq = ids.next_seq();
    let mut message = message;
    let custom_id = Some(std::mem::take(&mut message.correlation_id)).filter(|id| !id.is_empty());
    let correlation_id = match &custom_id {
        Some(id) => id.clone(),
        None => ids.format(seq),
    };
    let ack_policy = message.ack_policy;
    let req = message.into_request(stream, partition, correlation_id);
    // An oversized message would fail the encoder of the shared stream, breaking it for every message in
    // flight: refuse it here instead.
    let size = prost::Message::encoded_len(&req);
    if size > inner.opts.max_send_message_size {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "publishing to stream {stream:?}: the message is {size} bytes encoded, over the client's limit of \
                 {} bytes (servers accept 4 MiB by default); send smaller messages or raise max_message_sizes",
                inner.opts.max_send_message_size
            ),
        ));
    }
    let mut msg = Outgoing {
        req,
        seq,
        custom_id,
        partition,
        permit,
    };
    for _ in 0..REQUEUE_ATTEMPTS {
        let publisher = publishers.get(inner, &addr)?;
        let queued = match publisher.try_enqueue(msg) {
            Err(Refused::Full(msg)) => Box::pin(publisher.enqueue(*msg)).await,
            queued => queued,
        };
        match queued {
            Ok(Some(rx)) => {
                return Ok(AckFuture {
                    state: AckState::Waiting {
                        rx,
                        shared: publisher.shared.clone(),
                    },
                });
            }
            Ok(None) => {
                return Ok(AckFuture::ready(Ok(Ack::from_proto(
                    pb::Ack {
                        stream: stream.to_string(),
                        offset: -1,
                        ack_policy: ack_policy.to_proto() as i32,
                        ..Default::default()
                    },
                    Some(partition),
                ))));
            }
            Err(Refused::NotSent(back) | Refused::Full(back)) => msg = *back,
            Err(Refused::Invalid(e)) => return Err(e),
        }
    }
    let mut err = Error::new(
        ErrorKind::Unavailable,
        format!(
            "publishing to stream {stream:?}: the publish stream to {addr} keeps breaking; retry later"
        ),
    );
    err.mark_not_sent();
    Err(err)
}

/// Waits for a slot of the in-flight window (the client's backpressure), or for the client to close.
async fn window_slot(inner: &Inner) -> Result<OwnedSemaphorePermit> {
    let acquire = inner.publishers.window.clone().acquire_owned();
    tokio::select! {
        permit = acquire => permit.map_err(|_| Error::closed()),
        _ = inner.closed.cancelled() => Err(Error::closed()),
    }
}

/// The message's partition when it can be chosen without fetching metadata (a fixed partition, or the stream's
/// partition count cached).
fn cached_partition(
    inner: &Inner,
    metadata: &Metadata,
    stream: &str,
    message: &Message,
) -> Option<i32> {
    let partitioning = message.partitioning.as_ref().unwrap_or(&inner.partitioning);
    if !partitioning.needs_count() {
        return Some(partitioning.choose(&inner.round_robin, stream, &[], &[], 1));
    }
    let count = metadata.partition_count(stream)?;
    Some(choose_among(inner, partitioning, stream, message, count))
}

/// The message's partition, fetching the stream's partition count.
async fn fetched_partition(inner: &Inner, stream: &str, message: &Message) -> Result<i32> {
    let partitioning = message.partitioning.as_ref().unwrap_or(&inner.partitioning);
    let count = inner.partition_count(stream).await?;
    Ok(choose_among(inner, partitioning, stream, message, count))
}

/// The partition of `message` among the stream's `count` partitions (at least one), by its partitioning.
fn choose_among(
    inner: &Inner,
    partitioning: &Partitioning,
    stream: &str,
    message: &Message,
    count: usize,
) -> i32 {
    let count = u32::try_from(count).unwrap_or(u32::MAX).max(1);
    partitioning.choose(
        &inner.round_robin,
        stream,
        &message.key,
        &message.value,
        count,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_spread_over_buckets() {
        use std::hash::BuildHasher;
        let hasher = BuildHasherDefault::<SeqHasher>::default();
        // Consecutive numbers, and numbers 64 apart (one of many publishers' share of a client's sequence):
        // the low 10 bits (a 1,024-bucket table) must take nearly every value.
        for stride in [1u64, 64] {
            let buckets: std::collections::HashSet<u64> = (0..1024u64)
                .map(|i| hasher.hash_one(i * stride) & 1023)
                .collect();
            assert!(
                buckets.len() > 600,
                "stride {stride}: {} buckets",
                buckets.len()
            );
        }
    }

    #[test]
    fn publish_replies_decode_like_prost() {
        let resp = pb::PublishResponse {
            ack: Some(pb::Ack {
                stream: "s".into(),
                offset: 5,
                correlation_id: "inner".into(),
                ..Default::default()
            }),
            async_error: Some(pb::PublishAsyncError {
                code: pb::publish_async_error::Code::Readonly as i32,
                message: "read only".into(),
            }),
            correlation_id: "outer".into(),
        };
        let wire = resp.encode_to_vec();
        let reply = PublishReply::decode(Bytes::from(wire.clone())).unwrap();
        assert_eq!(reply.correlation_id(), "outer");
        let ack = reply.ack.as_ref().unwrap();
        assert_eq!(
            (ack.stream(), ack.offset(), ack.correlation_id()),
            ("s", 5, "inner")
        );
        assert_eq!(reply.async_error, resp.async_error);
        for cut in 0..wire.len() {
            let ours = PublishReply::decode(Bytes::copy_from_slice(&wire[..cut]));
            let theirs = pb::PublishResponse::decode(&wire[..cut]);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "cut at {cut}");
        }
        let empty = PublishReply::decode(Bytes::new()).unwrap();
        assert_eq!(empty.correlation_id(), "");
        assert!(empty.ack.is_none() && empty.async_error.is_none());
    }
}
