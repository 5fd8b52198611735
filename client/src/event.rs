//! Connection and cluster events, delivered to every [`Client::events`](crate::Client::events) stream.
//!
//! Events are advisory (for logs, metrics, dashboards): the client already reacts to each of them itself
//! (reconnects, refreshes metadata, resubscribes). A receiver that falls more than
//! [`EVENT_BUFFER`] events behind skips the oldest ones.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::error::Error;

/// Events buffered per receiver before the oldest are dropped.
pub const EVENT_BUFFER: usize = 256;

/// Something that happened to the client's connections or to the cluster it talks to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A server answered (the first time, or again after failing).
    Connected {
        /// `host:port` of the server.
        addr: String,
    },
    /// Requests to a server failed because it could not be reached.
    Disconnected {
        /// `host:port` of the server.
        addr: String,
        /// Why.
        error: Error,
    },
    /// A `PublishAsync` stream broke; its in-flight publishes failed with
    /// [`Disconnected`](crate::ErrorKind::Disconnected).
    PublishStreamBroken {
        /// `host:port` of the server.
        addr: String,
        /// How many publishes were waiting for their ack.
        in_flight: usize,
    },
    /// The metadata cache was refreshed.
    MetadataRefreshed {
        /// Servers known.
        brokers: usize,
        /// Streams known.
        streams: usize,
    },
    /// A partition's leader changed.
    LeaderChanged {
        /// Stream.
        stream: String,
        /// Partition.
        partition: i32,
        /// Previous leader's server id (empty when it had none).
        old: String,
        /// New leader's server id (empty when it has none).
        new: String,
    },
    /// A subscription's stream broke and it is being re-established.
    Resubscribing {
        /// Stream.
        stream: String,
        /// Partition.
        partition: i32,
        /// Why it broke.
        error: Error,
    },
    /// A subscription was re-established, continuing after the last message delivered.
    Resubscribed {
        /// Stream.
        stream: String,
        /// Partition.
        partition: i32,
        /// The offset it resumed at (`None` when no message had been delivered yet, so the original start
        /// position was used again).
        offset: Option<i64>,
    },
    /// The client was closed.
    Closed,
}

/// The stream returned by [`Client::events`](crate::Client::events).
#[derive(Debug)]
pub struct Events {
    inner: BroadcastStream<Event>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Events {
            inner: BroadcastStream::new(rx),
        }
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                // Lagged: skip what was lost and keep going.
                Poll::Ready(Some(Err(_))) => continue,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
