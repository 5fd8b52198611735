//! The in-process fast path: [`EmbeddedBus`], the server's own [`Bus`] on the embedded broker.
//!
//! The server's publishes and subscriptions never touch a socket or the protocol encoder: a publish looks up the
//! same subscription index TCP clients use, hands in-process subscribers a [`BusMessage`] whose payload is a
//! clone of the publisher's [`Bytes`] (no copy), and encodes `MSG` only for TCP subscribers. In the other
//! direction, a TCP client's `PUB` reaches in-process subscribers as a slice of the connection's read buffer:
//! no second encode and no payload copy.
//!
//! # Bounded in-process queues
//! Each in-process subscription has a queue bounded by `in_process_pending_msgs` messages and
//! `in_process_pending_bytes` payload bytes ([`super::BrokerConfig`]).
//! - Over three quarters of the bound, publishers (a TCP client's batch of input, or an in-process `publish`)
//!   wait briefly — at most 10 ms per batch — for the subscriber to catch up: bursts are absorbed by short
//!   backpressure instead of losses.
//! - At the bound, new messages for that subscriber are **dropped** and counted
//!   ([`super::BrokerStats::local_dropped`]), with a warning at most every few seconds — the policy nats-server
//!   applies to slow consumers, and what the server already gets on real NATS (the `async-nats` client drops
//!   when a subscription's channel is full).
//!
//! No publisher ever waits on a subscriber for more than those few milliseconds, so a stuck partition actor
//! cannot stall the broker, TCP clients or other partitions, and cannot take unbounded memory. The bounds are
//! approximate by the number of concurrent publishers (each checks, then adds).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

use super::protocol;
use super::router::{Batch, Counters, Outgoing, Rng, Router};
use super::subject;
use super::subscription::{IN_PROCESS, Subscription, Target};
use crate::bus::{
    Bus, BusError, BusHandler, BusMessage, BusSubscription, HandlerSubscription, Headers,
};

/// Minimum time between two warnings about drops on one in-process subscription.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(5);

/// The outcome of [`LocalQueue::push`].
pub(crate) enum Push {
    /// Queued; `stall` if the queue is now over three quarters of its bound.
    Queued {
        /// The publisher should give the subscriber a moment.
        stall: bool,
    },
    /// The queue is full (or the subscriber gone): the message was dropped.
    Dropped,
}

/// An in-process subscriber's bounded queue (see the module docs for the policy).
pub(crate) struct LocalQueue {
    /// The subscriber's end is a [`BusSubscription`].
    tx: mpsc::UnboundedSender<BusMessage>,
    /// Messages queued and not yet taken.
    pending_msgs: AtomicUsize,
    /// Payload bytes queued and not yet taken.
    pending_bytes: AtomicUsize,
    /// Limit of `pending_msgs`.
    max_msgs: usize,
    /// Limit of `pending_bytes`.
    max_bytes: usize,
    /// Messages dropped on this subscription.
    dropped: AtomicU64,
    /// Milliseconds since `created` of the last drop warning (u64::MAX: never warned).
    last_warning: AtomicU64,
    /// For the warning's rate limit.
    created: std::time::Instant,
    /// The subscription's subject, for the warning.
    subject: String,
    /// Notified when the subscriber takes messages while a publisher waits (`stall_waiting`).
    drained: Notify,
    /// A publisher is waiting on `drained`.
    stall_waiting: AtomicBool,
}

impl LocalQueue {
    /// Queues `message` unless the subscriber is too far behind.
    pub(crate) fn push(&self, message: BusMessage, counters: &Counters) -> Push {
        let size = message.payload.len();
        let over = self.pending_msgs.load(Ordering::Acquire) >= self.max_msgs
            || self
                .pending_bytes
                .load(Ordering::Acquire)
                .saturating_add(size)
                > self.max_bytes;
        if !over {
            let msgs = self.pending_msgs.fetch_add(1, Ordering::AcqRel) + 1;
            let bytes = self.pending_bytes.fetch_add(size, Ordering::AcqRel) + size;
            if self.tx.send(message).is_ok() {
                return Push::Queued {
                    stall: self.over_threshold(msgs, bytes),
                };
            }
            // The subscriber is gone; its guard is removing the subscription.
            self.taken(size);
            return Push::Dropped;
        }
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        counters.local_dropped.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_warning.load(Ordering::Relaxed);
        let due =
            last == u64::MAX || now.saturating_sub(last) >= DROP_WARN_INTERVAL.as_millis() as u64;
        if due
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                subject = %self.subject,
                dropped,
                pending_msgs = self.pending_msgs.load(Ordering::Relaxed),
                pending_bytes = self.pending_bytes.load(Ordering::Relaxed),
                "embedded NATS broker: in-process subscriber is too slow, dropping messages"
            );
        }
        Push::Dropped
    }

    fn over_threshold(&self, msgs: usize, bytes: usize) -> bool {
        msgs > self.max_msgs / 4 * 3 || bytes > self.max_bytes / 4 * 3
    }

    /// The subscriber took a message of `size` bytes.
    fn taken(&self, size: usize) {
        let msgs = self
            .pending_msgs
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        let bytes = self
            .pending_bytes
            .fetch_sub(size, Ordering::AcqRel)
            .saturating_sub(size);
        if self.stall_waiting.load(Ordering::Acquire)
            && !self.over_threshold(msgs, bytes)
            && self.stall_waiting.swap(false, Ordering::AcqRel)
        {
            self.drained.notify_waiters();
        }
    }

    /// Waits until the queue is back under its stall threshold, the subscriber is gone, or `deadline`.
    pub(crate) async fn wait_drained(&self, deadline: tokio::time::Instant) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let (msgs, bytes) = (
                self.pending_msgs.load(Ordering::Acquire),
                self.pending_bytes.load(Ordering::Acquire),
            );
            if !self.over_threshold(msgs, bytes) || self.tx.is_closed() {
                return;
            }
            self.stall_waiting.store(true, Ordering::Release);
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
    }
}

/// The in-process request/reply inbox: one wildcard subscription, `_INBOX.<prefix>.r.*`, and the requests
/// waiting on it by their last token.
pub(crate) struct ReplyMux {
    /// `_INBOX.<prefix>.r.`
    prefix: String,
    /// Next request token.
    next: AtomicU64,
    /// Waiting requests by token.
    waiting: Mutex<HashMap<String, oneshot::Sender<BusMessage>>>,
}

impl ReplyMux {
    /// Hands a reply to the request waiting on `subject`; returns whether one was waiting.
    pub(crate) fn resolve(&self, subject: &[u8], message: impl FnOnce() -> BusMessage) -> bool {
        let Some(token) = subject.strip_prefix(self.prefix.as_bytes()) else {
            return false;
        };
        let Ok(token) = std::str::from_utf8(token) else {
            return false;
        };
        let Some(waiter) = self.waiting.lock().remove(token) else {
            return false;
        };
        waiter.send(message()).is_ok()
    }
}

/// Removes its waiting entry if the request ends without a reply.
struct WaitingRequest<'a> {
    mux: &'a ReplyMux,
    token: String,
}

impl Drop for WaitingRequest<'_> {
    fn drop(&mut self) {
        self.mux.waiting.lock().remove(&self.token);
    }
}

/// Removes an in-process subscription when its [`BusSubscription`] is dropped.
struct SubscriptionGuard {
    router: Arc<Router>,
    sub: Arc<Subscription>,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.router.unsubscribe(&self.sub);
    }
}

/// A [`Bus`] on the embedded broker, in-process. Cheap to clone; every clone shares the broker.
///
/// - `publish` delivers synchronously into in-process queues and TCP outbound buffers, so when it returns the
///   message is routed; `flush` therefore has nothing to wait for.
/// - `subscribe` returns a stream that ends when the broker shuts down (after what is already queued).
/// - `request` uses one shared inbox subscription; a request that matches no subscriber fails at once with
///   [`BusError::NoResponders`].
/// - After shutdown every call fails with [`BusError::Unavailable`] and `is_connected` is false.
/// - Publish subjects must be literal (no `*`/`>`), which the real-NATS bus leaves to the server.
#[derive(Clone)]
pub struct EmbeddedBus {
    router: Arc<Router>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("addr", &self.router.local_addr)
            .field("running", &self.router.is_running())
            .finish()
    }
}

fn invalid(subject: &str, error: subject::SubjectError) -> BusError {
    BusError::InvalidSubject {
        subject: subject.to_string(),
        reason: match error {
            subject::SubjectError::Empty => "empty",
            subject::SubjectError::EmptyToken => "empty token",
            subject::SubjectError::FullWildcardNotLast => "'>' must be the last token",
            subject::SubjectError::PartialWildcard => "wildcards must be whole tokens",
            subject::SubjectError::WildcardInPublish => {
                "wildcards are not allowed in a publish subject"
            }
            subject::SubjectError::Whitespace => "contains whitespace",
        },
    }
}

impl EmbeddedBus {
    pub(crate) fn new(router: Arc<Router>) -> Self {
        EmbeddedBus { router }
    }

    fn check_running(&self) -> Result<(), BusError> {
        if self.router.is_running() {
            Ok(())
        } else {
            Err(BusError::Unavailable(
                "the embedded NATS broker has shut down".into(),
            ))
        }
    }

    /// Routes a message; returns how many subscriptions took it, and what is left to do (wake writers, wait for
    /// nearly full clients).
    fn route(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &Headers,
        payload: &Bytes,
        batch: &mut Batch,
    ) -> Result<usize, BusError> {
        subject::check_in_process_publish(subject.as_bytes()).map_err(|e| invalid(subject, e))?;
        if let Some(reply) = reply {
            // It is written into MSG lines of TCP subscribers: no whitespace, no empty tokens.
            subject::check_publish(reply.as_bytes(), false).map_err(|e| invalid(reply, e))?;
        }
        self.check_running()?;
        let header_block = if headers.is_empty() {
            Vec::new()
        } else {
            protocol::encode_headers(headers).ok_or_else(|| {
                BusError::Other("header names and values must not contain line breaks".into())
            })?
        };
        let size = header_block.len() + payload.len();
        let max = self.router.config.max_payload;
        if size > max {
            return Err(BusError::PayloadTooLarge { size, max });
        }
        let matches = self.router.sublist.matches(subject.as_bytes());
        if matches.is_empty() {
            return Ok(0);
        }
        let msg = Outgoing {
            subject: subject.as_bytes(),
            reply: reply.map(str::as_bytes),
            header_block: &header_block,
            headers: Some(headers),
            payload,
            origin: IN_PROCESS,
            echo: true,
        };
        let mut rng = if matches.groups.is_empty() {
            Rng::unseeded()
        } else {
            Rng::new()
        };
        Ok(self.router.route(&matches, &msg, batch, &mut rng))
    }

    fn subscribe_with(
        &self,
        subject: &str,
        queue: Option<&str>,
        target: Target,
    ) -> Result<Arc<Subscription>, BusError> {
        subject::check_filter(subject.as_bytes(), true).map_err(|e| invalid(subject, e))?;
        if let Some(queue) = queue
            && (queue.is_empty() || queue.chars().any(char::is_whitespace))
        {
            return Err(BusError::InvalidSubject {
                subject: queue.to_string(),
                reason: "queue group names must be non-empty, without whitespace",
            });
        }
        self.check_running()?;
        let sub = Arc::new(Subscription::new(
            self.router.next_sub_id(),
            IN_PROCESS,
            subject.as_bytes(),
            queue.map(str::as_bytes),
            b"",
            target,
        ));
        self.router
            .sublist
            .insert(sub.clone())
            .map_err(|e| invalid(subject, e))?;
        Ok(sub)
    }

    /// The shared reply inbox, subscribed on first use.
    fn replies(&self) -> Result<Arc<ReplyMux>, BusError> {
        if let Some(mux) = self.router.replies.get() {
            return Ok(mux.clone());
        }
        let prefix = format!("_INBOX.{}.r.", self.router.inbox_prefix);
        let mux = Arc::new(ReplyMux {
            prefix: prefix.clone(),
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        });
        // Two first requests may race: only the winner subscribes.
        let winner = self.router.replies.get_or_init(|| mux.clone()).clone();
        if Arc::ptr_eq(&winner, &mux) {
            self.subscribe_with(&format!("{prefix}*"), None, Target::Replies(mux))?;
        }
        Ok(winner)
    }

    /// Messages dropped so far because in-process subscribers were too slow (all subscriptions).
    pub fn dropped(&self) -> u64 {
        self.router.counters.local_dropped.load(Ordering::Relaxed)
    }
}

impl Bus for EmbeddedBus {
    fn publish(
        &self,
        subject: String,
        reply: Option<String>,
        headers: Headers,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            let mut batch = Batch::default();
            let routed = self.route(&subject, reply.as_deref(), &headers, &payload, &mut batch);
            batch.finish().await;
            routed.map(|_| ())
        })
    }

    fn publish_batch(
        &self,
        messages: Vec<(String, Bytes)>,
    ) -> BoxFuture<'_, Vec<Result<(), BusError>>> {
        Box::pin(async move {
            let mut batch = Batch::default();
            let no_headers = Vec::new();
            let mut results = Vec::with_capacity(messages.len());
            for (subject, payload) in &messages {
                results.push(
                    self.route(subject, None, &no_headers, payload, &mut batch)
                        .map(|_| ()),
                );
                if batch.is_stalled() {
                    // A nearly full subscriber: give it its moment before routing more.
                    batch.finish().await;
                }
            }
            batch.finish().await;
            results
        })
    }

    fn subscribe_handler(
        &self,
        subject: String,
        handler: BusHandler,
    ) -> BoxFuture<'_, Result<HandlerSubscription, BusError>> {
        Box::pin(async move {
            let sub = self.subscribe_with(&subject, None, Target::Handler(handler))?;
            Ok(HandlerSubscription::new(SubscriptionGuard {
                router: self.router.clone(),
                sub,
            }))
        })
    }

    fn subscribe(
        &self,
        subject: String,
        queue_group: Option<String>,
    ) -> BoxFuture<'_, Result<BusSubscription, BusError>> {
        Box::pin(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let queue = Arc::new(LocalQueue {
                tx,
                pending_msgs: AtomicUsize::new(0),
                pending_bytes: AtomicUsize::new(0),
                max_msgs: self.router.config.in_process_pending_msgs,
                max_bytes: self.router.config.in_process_pending_bytes,
                dropped: AtomicU64::new(0),
                last_warning: AtomicU64::new(u64::MAX),
                created: std::time::Instant::now(),
                subject: subject.clone(),
                drained: Notify::new(),
                stall_waiting: AtomicBool::new(false),
            });
            let sub = self.subscribe_with(
                &subject,
                queue_group.as_deref(),
                Target::Local(queue.clone()),
            )?;
            let guard = SubscriptionGuard {
                router: self.router.clone(),
                sub,
            };
            let shutdown = self.router.shutdown.clone();
            let stream = futures::stream::unfold(
                (rx, queue, guard, shutdown),
                |(mut rx, queue, guard, shutdown)| async move {
                    let next = tokio::select! {
                        biased;
                        message = rx.recv() => message,
                        _ = shutdown.cancelled() => None,
                    };
                    let message = next?;
                    queue.taken(message.payload.len());
                    Some((message, (rx, queue, guard, shutdown)))
                },
            );
            Ok(BusSubscription::new(stream.boxed()))
        })
    }

    fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<BusMessage, BusError>> {
        Box::pin(async move {
            let mux = self.replies()?;
            let token = mux.next.fetch_add(1, Ordering::Relaxed).to_string();
            let inbox = format!("{}{token}", mux.prefix);
            let (tx, rx) = oneshot::channel();
            mux.waiting.lock().insert(token.clone(), tx);
            let _waiting = WaitingRequest { mux: &mux, token };
            let mut batch = Batch::default();
            let routed = self.route(&subject, Some(&inbox), &Vec::new(), &payload, &mut batch);
            batch.finish().await;
            if routed? == 0 {
                return Err(BusError::NoResponders(subject));
            }
            tokio::select! {
                reply = tokio::time::timeout(timeout, rx) => match reply {
                    Ok(Ok(message)) => Ok(message),
                    Ok(Err(_)) => Err(BusError::Unavailable("the embedded NATS broker has shut down".into())),
                    Err(_) => Err(BusError::Timeout { subject, timeout }),
                },
                _ = self.router.shutdown.cancelled() => {
                    Err(BusError::Unavailable("the embedded NATS broker has shut down".into()))
                }
            }
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move { self.check_running() })
    }

    fn new_inbox(&self) -> String {
        let n = self.router.next_inbox.fetch_add(1, Ordering::Relaxed);
        format!("_INBOX.{}.{n}", self.router.inbox_prefix)
    }

    fn is_connected(&self) -> bool {
        self.router.is_running()
    }
}
