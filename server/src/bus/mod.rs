//! The Bus: every use the server makes of NATS goes through one small trait.
//!
//! Liftbridge's data path rides on NATS: partition leaders subscribe to their stream's subject, acks go to ack
//! inboxes, and the cluster's internal RPCs are NATS request/reply. Keeping all of that behind [`Bus`] lets the
//! server run on real NATS servers (through `async-nats`, see [`nats`]) or on the embedded broker (standalone
//! mode) without any other module knowing which.
//!
//! # Layout
//! - [`Bus`]: publish (one message or a batch), subscribe (optionally in a queue group, or with a handler called
//!   for each message), request, flush, connection state.
//! - [`BusMessage`] / [`BusSubscription`] / [`HandlerSubscription`]: what comes out of a subscription.
//! - [`nats`]: the `async-nats` implementation.

pub mod nats;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};

pub use self::nats::NatsBus;

/// NATS message headers: a list of `(name, value)` pairs; a name may repeat.
pub type Headers = Vec<(String, String)>;

/// A message received from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// The subject it was published to.
    pub subject: String,
    /// Where the publisher wants replies, if anywhere.
    pub reply: Option<String>,
    /// NATS headers, empty when the publisher sent none.
    pub headers: Headers,
    /// The payload, shared rather than copied.
    pub payload: Bytes,
}

/// Errors from the bus, sorted by what a caller can do about them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The connection to NATS is down (reconnecting); retry later. Publishes are refused rather than buffered so
    /// that a publisher hears about an outage instead of losing messages silently.
    #[error("NATS is unavailable: {0}")]
    Unavailable(String),
    /// A request got no reply in time.
    #[error("no reply on {subject} within {timeout:?}")]
    Timeout {
        /// The subject requested.
        subject: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// A request found nobody subscribed to its subject.
    #[error("no responders on {0}")]
    NoResponders(String),
    /// The subject or queue group is not valid NATS.
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The subject given.
        subject: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The payload is larger than the server's `max_payload`.
    #[error("payload of {size} bytes exceeds the NATS maximum of {max} bytes")]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// The server's limit.
        max: usize,
    },
    /// Connecting failed.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The servers tried.
        url: String,
        /// Why.
        message: String,
    },
    /// Any other failure of the underlying client.
    #[error("NATS error: {0}")]
    Other(String),
}

/// A live subscription: a stream of messages that unsubscribes when dropped.
pub struct BusSubscription {
    inner: Pin<Box<dyn Stream<Item = BusMessage> + Send>>,
}

impl BusSubscription {
    /// Wraps any stream of messages; dropping the stream must end the subscription.
    pub fn new(stream: impl Stream<Item = BusMessage> + Send + 'static) -> Self {
        BusSubscription {
            inner: Box::pin(stream),
        }
    }
}

impl Stream for BusSubscription {
    type Item = BusMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BusMessage>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for BusSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusSubscription")
    }
}

/// A function called with every message of a [`Bus::subscribe_handler`] subscription. It must return quickly
/// and never block: on the embedded broker it runs inside the publisher's call.
pub type BusHandler = Arc<dyn Fn(BusMessage) + Send + Sync>;

/// A live handler subscription; dropping it unsubscribes.
pub struct HandlerSubscription {
    _guard: Box<dyn Send + Sync>,
}

impl HandlerSubscription {
    /// Wraps whatever keeps the subscription alive; dropping `guard` must end it.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        HandlerSubscription {
            _guard: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for HandlerSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandlerSubscription")
    }
}

/// Aborts the task driving a default [`Bus::subscribe_handler`] subscription when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything the server needs from NATS.
///
/// Methods return boxed futures so the server can hold an `Arc<dyn Bus>` and pick the implementation at start-up.
pub trait Bus: Send + Sync + 'static {
    /// Publishes `payload` to `subject`, with an optional reply subject and headers.
    fn publish(
        &self,
        subject: String,
        reply: Option<String>,
        headers: Headers,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), BusError>>;

    /// Publishes `(subject, payload)` pairs in order, without reply subject or headers, and reports each one's
    /// outcome (same order). Implementations route the whole batch at once where they can (the embedded broker
    /// wakes each subscriber once per batch, not once per message); the default publishes one after another.
    fn publish_batch(
        &self,
        messages: Vec<(String, Bytes)>,
    ) -> BoxFuture<'_, Vec<Result<(), BusError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(messages.len());
            for (subject, payload) in messages {
                results.push(self.publish(subject, None, Vec::new(), payload).await);
            }
            results
        })
    }

    /// Subscribes to `subject` (wildcards allowed) and calls `handler` with every message, in order, until the
    /// returned subscription is dropped. The embedded broker calls it directly from the publisher (no task hop);
    /// the default drives a [`Bus::subscribe`] stream on a task.
    fn subscribe_handler(
        &self,
        subject: String,
        handler: BusHandler,
    ) -> BoxFuture<'_, Result<HandlerSubscription, BusError>> {
        Box::pin(async move {
            let mut subscription = self.subscribe(subject, None).await?;
            let task = tokio::spawn(async move {
                while let Some(message) = subscription.next().await {
                    handler(message);
                }
            });
            Ok(HandlerSubscription::new(AbortOnDrop(task)))
        })
    }

    /// Subscribes to `subject` (wildcards allowed); with `queue_group`, each message goes to one member only.
    fn subscribe(
        &self,
        subject: String,
        queue_group: Option<String>,
    ) -> BoxFuture<'_, Result<BusSubscription, BusError>>;

    /// Sends a request and waits up to `timeout` for the first reply.
    fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<BusMessage, BusError>>;

    /// Waits until NATS has processed everything sent so far (a round trip): subscriptions made before the call
    /// are in effect, and messages published before it have reached the server.
    fn flush(&self) -> BoxFuture<'_, Result<(), BusError>>;

    /// A fresh, unique inbox subject for replies and acks.
    fn new_inbox(&self) -> String;

    /// Whether the bus can carry messages right now.
    fn is_connected(&self) -> bool;
}

/// Checks that `subject` is a valid NATS subject to publish or subscribe to: non-empty, no whitespace, no empty
/// tokens, and `>` only as the last token. `*` and `>` must be whole tokens.
pub fn validate_subject(subject: &str) -> Result<(), BusError> {
    let invalid = |reason| {
        Err(BusError::InvalidSubject {
            subject: subject.into(),
            reason,
        })
    };
    if subject.is_empty() {
        return invalid("empty");
    }
    if subject.chars().any(char::is_whitespace) {
        return invalid("contains whitespace");
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        if token.is_empty() {
            return invalid("empty token");
        }
        if token.len() > 1 && (token.contains('*') || token.contains('>')) {
            return invalid("wildcards must be whole tokens");
        }
        if token == ">" && tokens.peek().is_some() {
            return invalid("'>' must be the last token");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        for ok in ["a", "a.b.c", "a.*.c", "a.>", ">", "*", "foo-bar_baz.1"] {
            assert!(validate_subject(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", ".a", "a.", "a b", "a.>.b", "a*.b", "a.b>", "\t"] {
            assert!(validate_subject(bad).is_err(), "{bad:?}");
        }
    }
}
