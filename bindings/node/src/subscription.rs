//! Subscriptions as seen from JS: `nextBatch()` resolves with every message ready at that moment (at least
//! one, waiting for the first), so a fast stream crosses into JS once per batch rather than per message.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use liftbridge::{Error, Subscription};
use napi_derive::napi;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::to_napi;
use crate::message::{BatchBuilder, MessageBatch};

/// Upper bound of the payload bytes of one batch (a batch always holds at least one message).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// The state behind the JS object.
struct State {
    /// `None` once closed or ended: dropping the Rust subscription cancels its server streams.
    sub: Option<Subscription>,
    /// An error met after some messages of a batch: reported by the next call.
    pending_error: Option<Error>,
}

/// A subscription: `index.js` wraps it in an async iterator.
#[napi]
pub struct NativeSubscription {
    stream: String,
    partitions: Vec<i32>,
    state: Arc<Mutex<State>>,
    /// Cancelled by `close()`: wakes a pending `nextBatch` at once.
    closed: CancellationToken,
}

impl NativeSubscription {
    pub(crate) fn new(sub: Subscription) -> Self {
        NativeSubscription {
            stream: sub.stream().to_string(),
            partitions: sub.partitions().to_vec(),
            state: Arc::new(Mutex::new(State {
                sub: Some(sub),
                pending_error: None,
            })),
            closed: CancellationToken::new(),
        }
    }
}

#[napi]
impl NativeSubscription {
    /// The stream subscribed to.
    #[napi(getter)]
    pub fn stream(&self) -> String {
        self.stream.clone()
    }

    /// The partitions subscribed to.
    #[napi(getter)]
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.clone()
    }

    /// The next messages, up to `max` (at least 1): waits for the first, then takes whatever else is ready.
    /// `null` when the subscription has ended (stop position reached, closed); rejects with the error that
    /// ended it otherwise (after delivering the messages before it).
    #[napi]
    pub async fn next_batch(&self, max: u32) -> napi::Result<Option<MessageBatch>> {
        let max = max.max(1) as usize;
        let closed = self.closed.clone();
        let mut state = tokio::select! {
            _ = closed.cancelled() => return Ok(None),
            s = self.state.lock() => s,
        };
        if let Some(e) = state.pending_error.take() {
            state.sub = None;
            return Err(to_napi(e));
        }
        let Some(sub) = state.sub.as_mut() else {
            return Ok(None);
        };
        let first = tokio::select! {
            _ = closed.cancelled() => None,
            m = sub.next() => m,
        };
        let mut batch = BatchBuilder::with_capacity(max.min(1024));
        match first {
            None => {
                state.sub = None;
                return Ok(None);
            }
            Some(Err(e)) => {
                state.sub = None;
                return Err(to_napi(e));
            }
            Some(Ok(m)) => batch.push(&m),
        }
        while batch.len() < max && batch.bytes() < MAX_BATCH_BYTES {
            match sub.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(&m),
                Some(Some(Err(e))) => {
                    state.pending_error = Some(e);
                    break;
                }
                Some(None) => {
                    state.sub = None;
                    break;
                }
                None => break,
            }
        }
        Ok(Some(batch.build(self.stream.clone())))
    }

    /// Ends the subscription now (idempotent): a pending `nextBatch` resolves with `null` and the server
    /// streams are cancelled.
    #[napi]
    pub fn close(&self) {
        self.closed.cancel();
        let state = self.state.clone();
        napi::bindgen_prelude::spawn(async move {
            state.lock().await.sub = None;
        });
    }
}
