//! The broker's shared state and message routing: the subscription index, the connected clients, and delivery
//! of one published message to every matching subscription (TCP or in-process).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::BrokerConfig;
use super::connection::{Append, Client, CloseReason};
use super::local::{LocalQueue, Push, ReplyMux};
use super::protocol::{self, ServerInfo};
use super::sublist::{Matches, Sublist};
use super::subscription::{Subscription, Target};
use crate::bus::{BusMessage, Headers};

/// The nats-server version whose client protocol the broker speaks, reported in `INFO` (clients gate features
/// such as headers and no-responders on the server version).
pub const NATS_PROTOCOL_VERSION: &str = "2.10.0";

/// Counters for [`super::BrokerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Connections accepted since start.
    pub(crate) total_connections: AtomicU64,
    /// Clients disconnected as slow consumers.
    pub(crate) slow_consumers: AtomicU64,
    /// Messages dropped because an in-process subscriber's queue was full.
    pub(crate) local_dropped: AtomicU64,
}

/// A message being routed, borrowed from wherever it came from (a client's read buffer or an in-process call).
pub(crate) struct Outgoing<'a> {
    /// The subject published to.
    pub(crate) subject: &'a [u8],
    /// The reply subject.
    pub(crate) reply: Option<&'a [u8]>,
    /// The encoded `NATS/1.0` header block, empty without headers.
    pub(crate) header_block: &'a [u8],
    /// The headers as pairs, when the publisher had them that way (in-process); otherwise decoded from
    /// `header_block` on the first in-process delivery.
    pub(crate) headers: Option<&'a Headers>,
    /// The payload, shared with in-process subscribers rather than copied.
    pub(crate) payload: &'a Bytes,
    /// The publishing client, or [`super::subscription::IN_PROCESS`].
    pub(crate) origin: u64,
    /// Whether the publisher's own subscriptions get the message.
    pub(crate) echo: bool,
}

impl Outgoing<'_> {
    /// The message as in-process subscribers see it.
    pub(crate) fn to_bus_message(&self) -> BusMessage {
        BusMessage {
            subject: String::from_utf8_lossy(self.subject).into_owned(),
            reply: self.reply.map(|r| String::from_utf8_lossy(r).into_owned()),
            headers: match self.headers {
                Some(headers) => headers.clone(),
                None if self.header_block.is_empty() => Vec::new(),
                None => protocol::decode_headers(self.header_block),
            },
            payload: self.payload.clone(),
        }
    }
}

/// The in-process form of a message being routed, built on the first in-process delivery and shared by the
/// rest.
struct LocalCopy {
    message: Option<BusMessage>,
    /// In-process plain subscriptions still to be offered the message (`usize::MAX`: unknown, always clone).
    plain_left: usize,
}

impl LocalCopy {
    /// The message for one in-process subscriber: moved out for the last one, cloned for the others.
    fn take(&mut self, msg: &Outgoing<'_>) -> BusMessage {
        if self.plain_left != usize::MAX {
            self.plain_left = self.plain_left.saturating_sub(1);
            if self.plain_left == 0 {
                return self.message.take().unwrap_or_else(|| msg.to_bus_message());
            }
        }
        self.message
            .get_or_insert_with(|| msg.to_bus_message())
            .clone()
    }
}

/// A small fast random number generator for picking queue group members (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded from the process's random hash keys.
    pub(crate) fn new() -> Self {
        Rng(random_u64() | 1)
    }

    /// A generator that is never used for picking (routes without queue groups): no seeding cost.
    pub(crate) fn unseeded() -> Self {
        Rng(1)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
    }
}

/// The longest a publisher waits, per batch of input, for nearly full subscribers to drain (see [`Batch`]).
const STALL_MAX: std::time::Duration = std::time::Duration::from_millis(10);

/// What one batch of publishing (a read's worth of a client's input, or one in-process publish) left to do.
///
/// - `wake`: clients whose outbound buffer went from empty to non-empty; their writers are woken once at the
///   end of the batch instead of once per message.
/// - `stalled`: clients whose buffer is over three quarters of `max_pending`, and in-process subscribers whose
///   queue is over three quarters of its bound. Like nats-server, the publisher then waits a little (at most
///   [`STALL_MAX`] per batch) for them to drain, so that a fast publisher does not push a healthy but momentarily
///   slower subscriber over its limit; a subscriber that stays stuck still reaches the limit (TCP clients are then
///   disconnected, in-process subscribers lose messages), and nobody waits on it for long.
#[derive(Default)]
pub(crate) struct Batch {
    /// Writers to wake.
    pub(crate) wake: Vec<Arc<Client>>,
    /// Nearly full clients to wait for.
    pub(crate) stalled: Vec<Arc<Client>>,
    /// Nearly full in-process queues to wait for.
    pub(crate) stalled_local: Vec<Arc<LocalQueue>>,
}

impl Batch {
    /// Notes a successful append to `client`.
    pub(crate) fn queued(&mut self, client: &Arc<Client>, first: bool, stall: bool) {
        if first {
            self.wake.push(client.clone());
        }
        if stall && !self.stalled.iter().any(|c| Arc::ptr_eq(c, client)) {
            self.stalled.push(client.clone());
        }
    }

    /// Wakes the writers that have new data.
    pub(crate) fn wake(&mut self) {
        for client in self.wake.drain(..) {
            client.wake();
        }
    }

    /// Notes an in-process queue over its stall threshold.
    pub(crate) fn stalled_local(&mut self, queue: &Arc<LocalQueue>) {
        if !self.stalled_local.iter().any(|q| Arc::ptr_eq(q, queue)) {
            self.stalled_local.push(queue.clone());
        }
    }

    /// Whether a subscriber is nearly full (the batch should be finished before routing more).
    pub(crate) fn is_stalled(&self) -> bool {
        !self.stalled.is_empty() || !self.stalled_local.is_empty()
    }

    /// Wakes writers, then waits (briefly) for nearly full subscribers to drain.
    pub(crate) async fn finish(&mut self) {
        self.wake();
        if !self.is_stalled() {
            return;
        }
        let deadline = tokio::time::Instant::now() + STALL_MAX;
        for client in self.stalled.drain(..) {
            client.wait_drained(deadline).await;
        }
        for queue in self.stalled_local.drain(..) {
            queue.wait_drained(deadline).await;
        }
    }
}

/// State shared by the accept loop, every connection and every [`super::EmbeddedBus`].
pub(crate) struct Router {
    /// The broker's settings.
    pub(crate) config: BrokerConfig,
    /// Random id of this broker instance.
    pub(crate) server_id: String,
    /// The address we listen on.
    pub(crate) local_addr: SocketAddr,
    /// Every subscription.
    pub(crate) sublist: Sublist<Subscription>,
    /// Connected clients by id (for shutdown and stats).
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    /// Next client id (starts at 1: 0 is the in-process owner).
    next_client_id: AtomicU64,
    /// Next subscription id.
    next_sub_id: AtomicU64,
    /// Cancelled when the broker shuts down: stops the accept loop and ends in-process subscriptions.
    pub(crate) shutdown: CancellationToken,
    /// True from start until shutdown begins.
    pub(crate) running: AtomicBool,
    /// Every task the broker spawned, awaited by shutdown.
    pub(crate) tasks: TaskTracker,
    /// Statistics.
    pub(crate) counters: Counters,
    /// Random part of the in-process inboxes (`_INBOX.<prefix>.<n>`).
    pub(crate) inbox_prefix: String,
    /// Next in-process inbox number.
    pub(crate) next_inbox: AtomicU64,
    /// The in-process request/reply inbox, subscribed on first use.
    pub(crate) replies: OnceLock<Arc<ReplyMux>>,
}

impl Router {
    /// State for a broker listening on `local_addr`.
    pub(crate) fn new(config: BrokerConfig, local_addr: SocketAddr) -> Self {
        Router {
            config,
            server_id: random_token(22),
            local_addr,
            sublist: Sublist::new(),
            clients: Mutex::new(HashMap::new()),
            next_client_id: AtomicU64::new(1),
            next_sub_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            running: AtomicBool::new(true),
            tasks: TaskTracker::new(),
            counters: Counters::default(),
            inbox_prefix: random_token(22),
            next_inbox: AtomicU64::new(1),
            replies: OnceLock::new(),
        }
    }

    /// Whether the broker is running (not shutting down).
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// A fresh subscription id.
    pub(crate) fn next_sub_id(&self) -> u64 {
        self.next_sub_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh client id.
    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a connected client.
    pub(crate) fn register(&self, client: Arc<Client>) {
        self.counters
            .total_connections
            .fetch_add(1, Ordering::Relaxed);
        self.clients.lock().insert(client.id, client);
    }

    /// Forgets a disconnected client.
    pub(crate) fn deregister(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    /// Number of connected clients.
    pub(crate) fn client_count(&self) -> usize {
        self.clients.lock().len()
    }

    /// Every connected client.
    pub(crate) fn clients(&self) -> Vec<Arc<Client>> {
        self.clients.lock().values().cloned().collect()
    }

    /// The `INFO` for a new client.
    pub(crate) fn info_for(&self, client_id: u64, peer: SocketAddr) -> ServerInfo {
        ServerInfo {
            server_id: self.server_id.clone(),
            server_name: self
                .config
                .server_name
                .clone()
                .unwrap_or_else(|| self.server_id.clone()),
            version: NATS_PROTOCOL_VERSION.to_string(),
            go: String::new(),
            host: self.config.host.clone(),
            port: self.local_addr.port(),
            headers: true,
            max_payload: self.config.max_payload,
            proto: 1,
            auth_required: self.config.auth.is_some(),
            client_id,
            client_ip: peer.ip().to_string(),
        }
    }

    /// Removes a subscription from the index and from its client's table.
    pub(crate) fn unsubscribe(&self, sub: &Arc<Subscription>) {
        if !sub.mark_closed() {
            return;
        }
        self.sublist.remove(sub);
        if let Target::Client(client) = &sub.target {
            client.forget_sub(sub);
        }
    }

    /// Delivers `msg` to every plain match and one member of each queue group; returns the number of
    /// subscriptions that took it. Clients to wake or wait for are added to `batch`.
    pub(crate) fn route(
        &self,
        matches: &Matches<Subscription>,
        msg: &Outgoing<'_>,
        batch: &mut Batch,
        rng: &mut Rng,
    ) -> usize {
        let mut local = LocalCopy {
            message: None,
            // The last in-process plain subscriber gets the message moved rather than cloned (queue group
            // members are picked at random, so with groups every in-process delivery clones).
            plain_left: if matches.groups.is_empty() {
                matches
                    .plain
                    .iter()
                    .filter(|s| s.target.is_in_process())
                    .count()
            } else {
                usize::MAX
            },
        };
        let mut delivered = 0;
        for sub in &matches.plain {
            if self.deliver(sub, msg, &mut local, batch) {
                delivered += 1;
            }
        }
        for group in &matches.groups {
            let n = group.members.len();
            if n == 0 {
                continue;
            }
            let start = rng.below(n);
            // Start at a random member; fall through to the next one if it cannot take the message.
            let members = group.members.iter().cycle().skip(start).take(n);
            for sub in members {
                if self.deliver(sub, msg, &mut local, batch) {
                    delivered += 1;
                    break;
                }
            }
        }
        delivered
    }

    fn deliver(
        &self,
        sub: &Arc<Subscription>,
        msg: &Outgoing<'_>,
        local: &mut LocalCopy,
        batch: &mut Batch,
    ) -> bool {
        if sub.is_closed() || (!msg.echo && sub.owner == msg.origin) {
            return false;
        }
        let Some(last) = sub.take_delivery() else {
            return false;
        };
        let taken = match &sub.target {
            Target::Client(client) => {
                match client.append_msg(
                    msg.subject,
                    &sub.sid,
                    msg.reply,
                    msg.header_block,
                    msg.payload,
                ) {
                    Append::Queued { first, stall } => {
                        batch.queued(client, first, stall);
                        true
                    }
                    Append::Closed => false,
                    Append::SlowConsumer { pending } => {
                        self.slow_consumer(client, pending);
                        false
                    }
                }
            }
            Target::Local(queue) => {
                let message = local.take(msg);
                match queue.push(message, &self.counters) {
                    Push::Queued { stall } => {
                        if stall {
                            batch.stalled_local(queue);
                        }
                        true
                    }
                    Push::Dropped => false,
                }
            }
            Target::Replies(mux) => mux.resolve(msg.subject, || local.take(msg)),
            Target::Handler(handler) => {
                handler(local.take(msg));
                true
            }
        };
        if last {
            self.unsubscribe(sub);
        }
        taken
    }

    /// Disconnects a client whose outbound buffer is full.
    pub(crate) fn slow_consumer(&self, client: &Client, pending: usize) {
        self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            client = client.id,
            peer = %client.peer,
            name = client.name().as_deref().unwrap_or(""),
            pending_bytes = pending,
            max_pending = self.config.max_pending,
            "embedded NATS broker: slow consumer detected, disconnecting client"
        );
        client.close(CloseReason::SlowConsumer { pending });
    }
}

/// A random number from the standard library's per-process random hash keys (seeded by the OS) mixed with a
/// counter and the time: unpredictable enough for ids and inbox names, with no extra dependency.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    hasher.write_u64(nanos);
    hasher.finish()
}

/// A random string of `len` letters and digits.
pub(crate) fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = Rng::new();
    (0..len)
        .map(|_| {
            char::from(
                ALPHABET
                    .get(rng.below(ALPHABET.len()))
                    .copied()
                    .unwrap_or(b'x'),
            )
        })
        .collect()
}
