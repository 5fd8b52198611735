//! One TCP client: a reader task that parses and routes what the client sends, and a writer task that sends
//! what is queued for it.
//!
//! - **Outbound buffer.** Everything for a client (its `MSG`s, `PONG`s, `+OK`s, `-ERR`s, server `PING`s) is
//!   appended to one coalescing buffer, under a short lock, by whichever task produced it. The writer swaps the
//!   whole buffer out and writes it with one `write_all` (normally one syscall), so a burst of small messages
//!   costs one write. Publishers wake the writer once per batch of input, not once per message.
//! - **Flow control.** When a batch pushes a client's buffer over three quarters of `max_pending`, the publisher
//!   stops and gives that client's writer up to 10 ms to drain before going on (as nats-server stalls fast
//!   producers), so a healthy subscriber is not cut off by a burst.
//! - **Slow consumers.** The buffer is bounded by `max_pending` bytes. A client that lets it fill up, or whose
//!   socket accepts nothing for `write_deadline`, is disconnected and its buffer freed at once; the broker and the
//!   other clients carry on. (nats-server does the same; the `-ERR 'Slow Consumer'` is only sent when it cannot
//!   land in the middle of a message.)
//! - **Pings.** The writer sends `PING` every `ping_interval`; a client with `max_pings_out` unanswered pings
//!   gets `-ERR 'Stale Connection'` and is disconnected.
//! - **Protocol errors** get nats-server's `-ERR` and a disconnect; subject errors on `SUB` (and on `PUB` for
//!   pedantic clients) get an `-ERR` and the connection stays up, as in nats-server.
//! - **Matching.** Each connection keeps its own small cache of match results in front of the shared
//!   [`super::sublist::Sublist`] (dropped whenever the index changes), so a publisher sending to a few subjects
//!   takes no shared lock per message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, ClientOp, ConnectOptions, Limits, Parsed, Span};
use super::router::{Batch, Outgoing, Rng, Router};
use super::subject;
use super::sublist::Matches;
use super::subscription::{Subscription, Target};

/// Initial size of read and write buffers.
const INITIAL_BUFFER: usize = 64 * 1024;
/// A spare write buffer grown past this is given back after use.
const MAX_IDLE_BUFFER: usize = 4 * 1024 * 1024;
/// How long the final flush of a closing connection may take, and how long to wait for shutdown.
const FINAL_WRITE: Duration = Duration::from_secs(1);
/// Entries in a connection's own match cache.
const CONNECTION_CACHE_MAX: usize = 256;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client closed its end.
    ClientClosed,
    /// A read or write failed.
    Io(String),
    /// A protocol violation; the `-ERR` text.
    Protocol(&'static str),
    /// The client sent `-ERR`.
    ClientError(String),
    /// The outbound buffer exceeded `max_pending`.
    SlowConsumer {
        /// Bytes pending when it happened.
        pending: usize,
    },
    /// A write did not complete within `write_deadline`.
    WriteTimeout,
    /// Too many unanswered pings.
    Stale,
    /// The broker is shutting down.
    Shutdown,
}

impl CloseReason {
    /// Whether the connection must stop at once, dropping what is queued (even mid-write).
    fn is_abortive(&self) -> bool {
        matches!(
            self,
            CloseReason::SlowConsumer { .. } | CloseReason::WriteTimeout | CloseReason::Io(_)
        )
    }

    /// The `-ERR` to queue as the connection's last words.
    fn error_text(&self) -> Option<&'static str> {
        match self {
            CloseReason::Protocol(text) => Some(text),
            CloseReason::Stale => Some(protocol::STALE_CONNECTION),
            _ => None,
        }
    }
}

/// The outcome of appending to a client's outbound buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Append {
    /// Queued; `first` if the buffer was empty, so its writer must be woken.
    Queued {
        /// The buffer was empty before.
        first: bool,
        /// The buffer is now over the stall threshold: the publisher should give the writer a moment.
        stall: bool,
    },
    /// The connection is closing; nothing was queued.
    Closed,
    /// The buffer would exceed `max_pending`: the client must be disconnected as a slow consumer.
    SlowConsumer {
        /// Bytes pending.
        pending: usize,
    },
}

/// Bytes queued for a client.
struct Outbound {
    /// Encoded protocol, in order.
    buf: Vec<u8>,
    /// Set when the connection closes: further appends are refused.
    closed: bool,
}

/// The part of a connection other tasks see: its outbound buffer, its subscriptions and its close state.
pub(crate) struct Client {
    /// Unique id (≥ 1), also sent in `INFO`.
    pub(crate) id: u64,
    /// The client's address, for logs.
    pub(crate) peer: SocketAddr,
    /// Queued output.
    outbound: Mutex<Outbound>,
    /// Wakes the writer.
    wake: Notify,
    /// Limit of `outbound.buf`.
    max_pending: usize,
    /// Three quarters of `max_pending`: over this, publishers wait briefly for the writer.
    stall_threshold: usize,
    /// Notified after writes while a publisher waits (`stall_waiting`).
    drained: Notify,
    /// A publisher is waiting on `drained`.
    stall_waiting: AtomicBool,
    /// Cancelled when the connection starts closing: the reader stops, the writer flushes and stops.
    closing: CancellationToken,
    /// Cancelled when the connection must stop now (slow consumer, I/O error, shutdown grace over).
    abort: CancellationToken,
    /// Why it closed (first reason wins).
    reason: Mutex<Option<CloseReason>>,
    /// The client understands `HMSG` (from `CONNECT`).
    headers: AtomicBool,
    /// Unanswered server pings.
    pings_out: AtomicU32,
    /// Subscriptions by the client's sid.
    subs: Mutex<HashMap<Box<[u8]>, Arc<Subscription>>>,
    /// The name from `CONNECT`, for logs.
    name: Mutex<Option<String>>,
}

impl Client {
    fn new(id: u64, peer: SocketAddr, max_pending: usize) -> Self {
        Client {
            id,
            peer,
            outbound: Mutex::new(Outbound {
                buf: Vec::with_capacity(INITIAL_BUFFER),
                closed: false,
            }),
            wake: Notify::new(),
            max_pending,
            stall_threshold: max_pending / 4 * 3,
            drained: Notify::new(),
            stall_waiting: AtomicBool::new(false),
            closing: CancellationToken::new(),
            abort: CancellationToken::new(),
            reason: Mutex::new(None),
            headers: AtomicBool::new(false),
            pings_out: AtomicU32::new(0),
            subs: Mutex::new(HashMap::new()),
            name: Mutex::new(None),
        }
    }

    /// The client's name from `CONNECT`.
    pub(crate) fn name(&self) -> Option<String> {
        self.name.lock().clone()
    }

    /// Queues a `MSG` (or `HMSG` when there are headers and the client understands them; a client that does
    /// not gets the payload alone, as from nats-server).
    pub(crate) fn append_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        header_block: &[u8],
        payload: &[u8],
    ) -> Append {
        let header_block = if self.headers.load(Ordering::Relaxed) {
            header_block
        } else {
            &[]
        };
        let size = protocol::msg_len(subject, sid, reply, header_block, payload);
        self.append_with(size, |buf| {
            protocol::put_msg(buf, subject, sid, reply, header_block, payload)
        })
    }

    /// Queues raw protocol bytes (`PONG`, `+OK`, `-ERR`, `PING`, `INFO`).
    pub(crate) fn append_control(&self, bytes: &[u8]) -> Append {
        self.append_with(bytes.len(), |buf| buf.extend_from_slice(bytes))
    }

    fn append_with(&self, size: usize, write: impl FnOnce(&mut Vec<u8>)) -> Append {
        let mut outbound = self.outbound.lock();
        if outbound.closed {
            return Append::Closed;
        }
        let pending = outbound.buf.len();
        if pending.saturating_add(size) > self.max_pending {
            return Append::SlowConsumer { pending };
        }
        write(&mut outbound.buf);
        Append::Queued {
            first: pending == 0,
            stall: outbound.buf.len() > self.stall_threshold,
        }
    }

    fn pending(&self) -> usize {
        self.outbound.lock().buf.len()
    }

    /// Waits until the outbound buffer is back under the stall threshold, the connection closes, or `deadline`.
    pub(crate) async fn wait_drained(&self, deadline: tokio::time::Instant) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.pending() <= self.stall_threshold || self.closing.is_cancelled() {
                return;
            }
            self.stall_waiting.store(true, Ordering::Release);
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
    }

    /// Tells waiting publishers that the buffer shrank (or the connection closed).
    fn signal_drained(&self) {
        if self.stall_waiting.swap(false, Ordering::AcqRel) {
            self.drained.notify_waiters();
        }
    }

    /// Wakes the writer.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts closing the connection (the first reason wins). Protocol errors and stale connections get their
    /// `-ERR` queued last; abortive reasons drop everything queued.
    pub(crate) fn close(&self, reason: CloseReason) {
        let mut slot = self.reason.lock();
        if slot.is_some() {
            return;
        }
        {
            let mut outbound = self.outbound.lock();
            if reason.is_abortive() {
                outbound.buf = Vec::new();
            } else if let Some(text) = reason.error_text() {
                outbound.buf.extend_from_slice(&protocol::err_line(text));
            }
            outbound.closed = true;
        }
        if reason.is_abortive() {
            self.abort.cancel();
        }
        *slot = Some(reason);
        drop(slot);
        self.closing.cancel();
        self.wake.notify_one();
        self.drained.notify_waiters();
    }

    /// Stops the connection now, even mid-write (shutdown grace period over).
    pub(crate) fn abort(&self) {
        self.close(CloseReason::Shutdown);
        self.abort.cancel();
    }

    fn reason(&self) -> Option<CloseReason> {
        self.reason.lock().clone()
    }

    /// Drops `sub` from the sid table (after an auto-unsubscribe), unless the sid was reused since.
    pub(crate) fn forget_sub(&self, sub: &Arc<Subscription>) {
        let mut subs = self.subs.lock();
        if subs.get(&sub.sid).is_some_and(|s| Arc::ptr_eq(s, sub)) {
            subs.remove(&sub.sid);
        }
    }

    /// Moves everything queued into `spare` (which must be empty), leaving `spare`'s old allocation behind.
    fn take_outbound(&self, spare: &mut Vec<u8>) {
        let mut outbound = self.outbound.lock();
        std::mem::swap(&mut outbound.buf, spare);
    }
}

/// Serves one accepted TCP connection until it closes.
pub(crate) async fn serve(router: Arc<Router>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let id = router.next_client_id();
    let client = Arc::new(Client::new(id, peer, router.config.max_pending));
    router.register(client.clone());
    tracing::debug!(client = id, %peer, "embedded NATS broker: client connected");
    client.append_control(&router.info_for(id, peer).to_line());
    if !router.is_running() {
        // Raced with shutdown: the shutdown sweep may have missed this client.
        client.close(CloseReason::Shutdown);
    }

    let (read_half, write_half) = stream.into_split();
    let writer = tokio::spawn(write_loop(
        client.clone(),
        write_half,
        WriterSettings {
            ping_interval: router.config.ping_interval,
            max_pings_out: router.config.max_pings_out,
            write_deadline: router.config.write_deadline,
        },
    ));
    let mut reader = Reader::new(router.clone(), client.clone());
    if let Some(reason) = reader.run(read_half).await {
        client.close(reason);
    }
    drop(reader);

    let subs: Vec<Arc<Subscription>> = client.subs.lock().drain().map(|(_, sub)| sub).collect();
    for sub in &subs {
        sub.mark_closed();
    }
    router
        .sublist
        .remove_many(subs.iter().map(|sub| sub.as_ref()));
    drop(subs);
    router.deregister(id);
    let _ = writer.await;
    client.outbound.lock().buf = Vec::new();
    let reason = client.reason();
    match &reason {
        Some(CloseReason::Stale) => {
            tracing::info!(client = id, %peer, "embedded NATS broker: stale connection closed")
        }
        Some(CloseReason::Protocol(text)) => {
            tracing::info!(client = id, %peer, error = text, "embedded NATS broker: client closed for a protocol error")
        }
        _ => {
            tracing::debug!(client = id, %peer, ?reason, "embedded NATS broker: client disconnected")
        }
    }
}

/// The writer's settings.
struct WriterSettings {
    ping_interval: Duration,
    max_pings_out: u32,
    write_deadline: Duration,
}

/// Writes whatever is queued, sends pings, and closes the socket when the connection closes.
async fn write_loop(client: Arc<Client>, mut socket: OwnedWriteHalf, settings: WriterSettings) {
    let mut spare: Vec<u8> = Vec::with_capacity(INITIAL_BUFFER);
    let start = tokio::time::Instant::now() + settings.ping_interval;
    let mut ping = tokio::time::interval_at(start, settings.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cut_mid_write = false;
    'run: loop {
        loop {
            client.take_outbound(&mut spare);
            if spare.is_empty() {
                break;
            }
            let deadline = if client.closing.is_cancelled() {
                settings.write_deadline.min(FINAL_WRITE)
            } else {
                settings.write_deadline
            };
            let written = tokio::select! {
                biased;
                _ = client.abort.cancelled() => None,
                result = tokio::time::timeout(deadline, socket.write_all(&spare)) => Some(result),
            };
            match written {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    client.close(CloseReason::Io(e.to_string()));
                    cut_mid_write = true;
                    break 'run;
                }
                Some(Err(_elapsed)) => {
                    tracing::warn!(
                        client = client.id,
                        peer = %client.peer,
                        deadline = ?deadline,
                        "embedded NATS broker: write deadline exceeded (slow consumer), disconnecting client"
                    );
                    client.close(CloseReason::WriteTimeout);
                    cut_mid_write = true;
                    break 'run;
                }
                None => {
                    cut_mid_write = true;
                    break 'run;
                }
            }
            client.signal_drained();
            spare.clear();
            if spare.capacity() > MAX_IDLE_BUFFER {
                spare = Vec::with_capacity(INITIAL_BUFFER);
            }
        }
        if client.closing.is_cancelled() {
            break;
        }
        tokio::select! {
            biased;
            _ = client.closing.cancelled() => {}
            _ = client.wake.notified() => {}
            _ = ping.tick() => {
                if client.pings_out.load(Ordering::Acquire) >= settings.max_pings_out {
                    client.close(CloseReason::Stale);
                } else {
                    client.pings_out.fetch_add(1, Ordering::AcqRel);
                    client.append_control(b"PING\r\n");
                }
            }
        }
    }
    if !cut_mid_write && matches!(client.reason(), Some(CloseReason::SlowConsumer { .. })) {
        // Nothing was half-written, so the client can still parse a last error.
        let line = protocol::err_line(protocol::SLOW_CONSUMER);
        let _ = tokio::time::timeout(Duration::from_millis(100), socket.write_all(&line)).await;
    }
    let _ = tokio::time::timeout(FINAL_WRITE, socket.shutdown()).await;
}

/// A connection's private cache of match results, valid while the index's generation is unchanged.
struct MatchCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, Arc<Matches<Subscription>>>,
}

impl MatchCache {
    fn lookup(&mut self, router: &Router, subject: &[u8]) -> Arc<Matches<Subscription>> {
        let generation = router.sublist.generation();
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
        if let Some(hit) = self.entries.get(subject) {
            return hit.clone();
        }
        let result = router.sublist.matches(subject);
        if self.entries.len() >= CONNECTION_CACHE_MAX {
            self.entries.clear();
        }
        self.entries.insert(subject.into(), result.clone());
        result
    }
}

/// The reading side of a connection.
struct Reader {
    router: Arc<Router>,
    client: Arc<Client>,
    /// Options from the last `CONNECT` (defaults before).
    options: ConnectOptions,
    /// A `CONNECT` was received (and accepted).
    connected: bool,
    limits: Limits,
    cache: MatchCache,
    /// Clients to wake (or wait for) when the current batch of input is done.
    batch: Batch,
    rng: Rng,
}

impl Reader {
    fn new(router: Arc<Router>, client: Arc<Client>) -> Self {
        let limits = Limits {
            max_control_line: router.config.max_control_line,
            max_payload: router.config.max_payload,
        };
        Reader {
            router,
            client,
            options: ConnectOptions::default(),
            connected: false,
            limits,
            cache: MatchCache {
                generation: u64::MAX,
                entries: HashMap::new(),
            },
            batch: Batch::default(),
            rng: Rng::new(),
        }
    }

    /// Reads and handles input until the connection closes; returns the reason unless someone else closed it.
    async fn run(&mut self, mut socket: OwnedReadHalf) -> Option<CloseReason> {
        let mut buf = BytesMut::with_capacity(INITIAL_BUFFER);
        let mut needed = 0usize;
        let auth_required = self.router.config.auth.is_some();
        let auth_deadline = tokio::time::sleep(self.router.config.auth_timeout);
        tokio::pin!(auth_deadline);
        loop {
            let free = buf.capacity() - buf.len();
            let want = needed.saturating_sub(buf.len()).max(4096);
            if free < want {
                buf.reserve(want.max(INITIAL_BUFFER));
            }
            let read = tokio::select! {
                biased;
                _ = self.client.closing.cancelled() => return None,
                _ = &mut auth_deadline, if auth_required && !self.connected => {
                    return Some(CloseReason::Protocol(protocol::AUTHENTICATION_TIMEOUT));
                }
                read = socket.read_buf(&mut buf) => read,
            };
            match read {
                Ok(0) => return Some(CloseReason::ClientClosed),
                Ok(_) => {}
                Err(e) => return Some(CloseReason::Io(e.to_string())),
            }
            loop {
                let outcome = self.process(&mut buf);
                self.batch.finish().await;
                match outcome {
                    Ok(Some(more)) => {
                        needed = more;
                        break;
                    }
                    // A subscriber is nearly full: it had its moment to drain; go on with the buffered input.
                    Ok(None) => {}
                    Err(reason) => return Some(reason),
                }
            }
        }
    }

    /// Handles the complete operations in `buf`; returns how many bytes the next one needs, or `None` if it
    /// stopped early because a subscriber's buffer is nearly full (the batch must be finished first).
    fn process(&mut self, buf: &mut BytesMut) -> Result<Option<usize>, CloseReason> {
        loop {
            if self.batch.is_stalled() {
                return Ok(None);
            }
            match protocol::parse(buf, &self.limits) {
                Ok(Parsed::Incomplete { needed }) => return Ok(Some(needed)),
                Ok(Parsed::Op { op, len }) => {
                    let frame = buf.split_to(len.min(buf.len())).freeze();
                    self.handle(op, &frame)?;
                }
                Err(error) => {
                    tracing::debug!(client = self.client.id, %error, "embedded NATS broker: protocol error");
                    return Err(CloseReason::Protocol(error.client_message()));
                }
            }
        }
    }

    /// Queues a reply for this client.
    fn reply(&mut self, bytes: &[u8]) -> Result<(), CloseReason> {
        match self.client.append_control(bytes) {
            Append::Queued { first, stall } => {
                self.batch.queued(&self.client, first, stall);
                Ok(())
            }
            Append::Closed => Ok(()),
            Append::SlowConsumer { pending } => {
                self.router.slow_consumer(&self.client, pending);
                Ok(())
            }
        }
    }

    fn ok(&mut self) -> Result<(), CloseReason> {
        if self.options.verbose {
            self.reply(b"+OK\r\n")?;
        }
        Ok(())
    }

    fn handle(&mut self, op: ClientOp, frame: &Bytes) -> Result<(), CloseReason> {
        if self.router.config.auth.is_some()
            && !self.connected
            && !matches!(op, ClientOp::Connect { .. })
        {
            return Err(CloseReason::Protocol(protocol::AUTHORIZATION_VIOLATION));
        }
        match op {
            ClientOp::Connect { json } => self.connect(json.get(frame)),
            ClientOp::Pub {
                subject,
                reply,
                headers,
                payload,
            } => self.publish(frame, subject, reply, headers, payload),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.subscribe(
                subject.get(frame),
                queue.map(|q| q.get(frame)),
                sid.get(frame),
            ),
            ClientOp::Unsub { sid, max } => {
                let sub = self.client.subs.lock().get(sid.get(frame)).cloned();
                if let Some(sub) = sub {
                    match max {
                        Some(max) if max > 0 => {
                            if sub.set_max(max) {
                                self.router.unsubscribe(&sub);
                            }
                        }
                        _ => self.router.unsubscribe(&sub),
                    }
                }
                self.ok()
            }
            ClientOp::Ping => self.reply(b"PONG\r\n"),
            ClientOp::Pong => {
                self.client.pings_out.store(0, Ordering::Release);
                Ok(())
            }
            ClientOp::Info | ClientOp::Ok | ClientOp::Empty => Ok(()),
            ClientOp::Err { message } => Err(CloseReason::ClientError(
                String::from_utf8_lossy(message.get(frame)).into_owned(),
            )),
        }
    }

    fn connect(&mut self, json: &[u8]) -> Result<(), CloseReason> {
        let Ok(options) = serde_json::from_slice::<ConnectOptions>(json) else {
            return Err(CloseReason::Protocol(protocol::UNKNOWN_PROTOCOL_OPERATION));
        };
        if let Some(auth) = &self.router.config.auth
            && !auth.accepts(&options)
        {
            tracing::info!(
                client = self.client.id,
                peer = %self.client.peer,
                user = options.user.as_deref().unwrap_or(""),
                "embedded NATS broker: authorization violation"
            );
            return Err(CloseReason::Protocol(protocol::AUTHORIZATION_VIOLATION));
        }
        self.client
            .headers
            .store(options.headers, Ordering::Relaxed);
        if let Some(name) = &options.name {
            *self.client.name.lock() = Some(name.clone());
        }
        self.options = options;
        self.connected = true;
        self.ok()
    }

    fn publish(
        &mut self,
        frame: &Bytes,
        subject: Span,
        reply: Option<Span>,
        headers: Option<Span>,
        payload: Span,
    ) -> Result<(), CloseReason> {
        let subject = subject.get(frame);
        if self.options.pedantic && subject::check_publish(subject, true).is_err() {
            // nats-server reports it and still routes the message (a wildcard is matched as a literal token).
            self.reply(&protocol::err_line(protocol::INVALID_PUBLISH_SUBJECT))?;
        }
        // As from nats-server, the +OK comes before any message this PUB delivers to the publisher itself.
        self.ok()?;
        let reply = reply.map(|r| r.get(frame));
        let payload = if payload.start <= payload.end && payload.end <= frame.len() {
            frame.slice(payload.start..payload.end)
        } else {
            return Err(CloseReason::Protocol(protocol::UNKNOWN_PROTOCOL_OPERATION));
        };
        let matches = self.cache.lookup(&self.router, subject);
        let delivered = if matches.is_empty() {
            0
        } else {
            let msg = Outgoing {
                subject,
                reply,
                header_block: headers.map(|h| h.get(frame)).unwrap_or_default(),
                headers: None,
                payload: &payload,
                origin: self.client.id,
                echo: self.options.echo,
            };
            self.router
                .route(&matches, &msg, &mut self.batch, &mut self.rng)
        };
        if delivered == 0
            && self.options.headers
            && self.options.no_responders
            && let Some(reply) = reply
        {
            self.no_responders(reply);
        }
        Ok(())
    }

    /// Sends the requester a `503` status on its own subscription for `reply`, like nats-server.
    fn no_responders(&mut self, reply: &[u8]) {
        let matches = self.cache.lookup(&self.router, reply);
        let own = matches
            .plain
            .iter()
            .chain(matches.groups.iter().flat_map(|g| g.members.iter()))
            .find(|sub| sub.owner == self.client.id && !sub.is_closed());
        if let Some(sub) = own
            && let Append::Queued { first, stall } =
                self.client
                    .append_msg(reply, &sub.sid, None, protocol::NO_RESPONDERS_HEADERS, b"")
        {
            self.batch.queued(&self.client, first, stall);
        }
    }

    fn subscribe(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) -> Result<(), CloseReason> {
        // As nats-server, structural checks only (`a*` is a literal token, pedantic or not).
        if subject::check_filter(subject, false).is_err() {
            return self.reply(&protocol::err_line(protocol::INVALID_SUBJECT));
        }
        if self.client.subs.lock().contains_key(sid) {
            // nats-server ignores a SUB that reuses a live sid.
            return self.ok();
        }
        let sub = Arc::new(Subscription::new(
            self.router.next_sub_id(),
            self.client.id,
            subject,
            queue,
            sid,
            Target::Client(self.client.clone()),
        ));
        self.client.subs.lock().insert(sid.into(), sub.clone());
        if self.router.sublist.insert(sub.clone()).is_err() {
            self.client.subs.lock().remove(sid);
            return self.reply(&protocol::err_line(protocol::INVALID_SUBJECT));
        }
        self.ok()
    }
}
