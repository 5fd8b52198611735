//! Client events (connections, metadata refreshes, leader moves, resubscriptions) for the JS async iterator
//! `client.events()`.

use std::sync::Arc;

use futures::StreamExt;
use liftbridge::{Event, Events};
use napi::bindgen_prelude::BigInt;
use napi_derive::napi;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// One event. `type` says which; the other fields are set as that type has them.
#[napi(object)]
pub struct JsEvent {
    /// `connected`, `disconnected`, `publishStreamBroken`, `metadataRefreshed`, `leaderChanged`,
    /// `resubscribing`, `resubscribed` or `closed`.
    #[napi(js_name = "type")]
    pub kind: String,
    /// `host:port` of the server (connected, disconnected, publishStreamBroken).
    pub addr: Option<String>,
    /// `[code] message` of the error (disconnected, resubscribing).
    pub error: Option<String>,
    /// Publishes that were waiting for their ack (publishStreamBroken).
    pub in_flight: Option<u32>,
    /// Servers known (metadataRefreshed).
    pub brokers: Option<u32>,
    /// Streams known (metadataRefreshed).
    pub streams: Option<u32>,
    /// Stream (leaderChanged, resubscribing, resubscribed).
    pub stream: Option<String>,
    /// Partition (leaderChanged, resubscribing, resubscribed).
    pub partition: Option<i32>,
    /// Previous leader (leaderChanged).
    pub old_leader: Option<String>,
    /// New leader (leaderChanged).
    pub new_leader: Option<String>,
    /// Offset resumed at (resubscribed; absent when no message had been delivered).
    pub offset: Option<BigInt>,
}

impl JsEvent {
    fn new(kind: &str) -> Self {
        JsEvent {
            kind: kind.to_string(),
            addr: None,
            error: None,
            in_flight: None,
            brokers: None,
            streams: None,
            stream: None,
            partition: None,
            old_leader: None,
            new_leader: None,
            offset: None,
        }
    }

    fn from_event(e: Event) -> Self {
        let count = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
        match e {
            Event::Connected { addr } => JsEvent {
                addr: Some(addr),
                ..JsEvent::new("connected")
            },
            Event::Disconnected { addr, error } => JsEvent {
                addr: Some(addr),
                error: Some(crate::error::to_napi(error).reason),
                ..JsEvent::new("disconnected")
            },
            Event::PublishStreamBroken { addr, in_flight } => JsEvent {
                addr: Some(addr),
                in_flight: count(in_flight),
                ..JsEvent::new("publishStreamBroken")
            },
            Event::MetadataRefreshed { brokers, streams } => JsEvent {
                brokers: count(brokers),
                streams: count(streams),
                ..JsEvent::new("metadataRefreshed")
            },
            Event::LeaderChanged {
                stream,
                partition,
                old,
                new,
            } => JsEvent {
                stream: Some(stream),
                partition: Some(partition),
                old_leader: Some(old),
                new_leader: Some(new),
                ..JsEvent::new("leaderChanged")
            },
            Event::Resubscribing {
                stream,
                partition,
                error,
            } => JsEvent {
                stream: Some(stream),
                partition: Some(partition),
                error: Some(crate::error::to_napi(error).reason),
                ..JsEvent::new("resubscribing")
            },
            Event::Resubscribed {
                stream,
                partition,
                offset,
            } => JsEvent {
                stream: Some(stream),
                partition: Some(partition),
                offset: offset.map(BigInt::from),
                ..JsEvent::new("resubscribed")
            },
            Event::Closed => JsEvent::new("closed"),
            _ => JsEvent::new("unknown"),
        }
    }
}

/// The events of a client from the moment `events()` was called.
#[napi]
pub struct NativeEvents {
    events: Arc<Mutex<Option<Events>>>,
    closed: CancellationToken,
}

impl NativeEvents {
    pub(crate) fn new(events: Events) -> Self {
        NativeEvents {
            events: Arc::new(Mutex::new(Some(events))),
            closed: CancellationToken::new(),
        }
    }
}

#[napi]
impl NativeEvents {
    /// The next event; `null` once closed (by `close()` or after the client's `closed` event).
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<JsEvent>> {
        let closed = self.closed.clone();
        let mut guard = tokio::select! {
            _ = closed.cancelled() => return Ok(None),
            g = self.events.lock() => g,
        };
        let Some(events) = guard.as_mut() else {
            return Ok(None);
        };
        let next = tokio::select! {
            _ = closed.cancelled() => None,
            e = events.next() => e,
        };
        match next {
            Some(e) => Ok(Some(JsEvent::from_event(e))),
            None => {
                *guard = None;
                Ok(None)
            }
        }
    }

    /// Stops listening (idempotent); a pending `next()` resolves with `null`.
    #[napi]
    pub fn close(&self) {
        self.closed.cancel();
    }
}
