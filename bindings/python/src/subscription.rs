//! [`Subscription`]: an async iterator of messages that pulls them from the Rust subscription in batches.
//!
//! One trip through the event loop fetches every message already buffered (up to [`MAX_BATCH`]); the
//! following `__anext__` calls return from the local buffer without touching the loop. Each batch is one
//! await, so a subscription at full speed still lets other tasks run between batches.
//!
//! The Rust subscription is released when the iterator is closed (`close()`, `async with`), dropped
//! (breaking an `async for` drops it) or when the task awaiting it is cancelled (the fetch is aborted).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use liftbridge::{Error, ReceivedMessage, SubscribeOptions};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::errors::to_py_in;
use crate::message::Message;
use crate::runtime::{Bridge, Ready};

/// Most messages handed to Python in one trip through the event loop.
pub const MAX_BATCH: usize = 512;

/// The Rust side of a subscription, shared with the fetch task in flight.
struct Shared {
    client: liftbridge::Client,
    stream: String,
    options: SubscribeOptions,
    all_partitions: bool,
    /// Closing: ends the fetch in flight and drops the subscription.
    cancel: CancellationToken,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    sub: Option<liftbridge::Subscription>,
    /// The subscription ended (or could not open): iteration stops.
    ended: bool,
    /// An error met after the messages of the last batch: raised by the next fetch.
    error: Option<Error>,
}

impl Shared {
    /// The next batch of messages; empty when the subscription ended.
    async fn next_batch(&self) -> Result<Vec<ReceivedMessage>, Error> {
        let mut st = self.state.lock().await;
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        if st.ended || self.cancel.is_cancelled() {
            st.ended = true;
            st.sub = None;
            return Ok(Vec::new());
        }
        if st.sub.is_none() {
            let opened = tokio::select! {
                s = async {
                    if self.all_partitions {
                        self.client.subscribe_all(&self.stream, self.options.clone()).await
                    } else {
                        self.client.subscribe(&self.stream, self.options.clone()).await
                    }
                } => s,
                _ = self.cancel.cancelled() => {
                    st.ended = true;
                    return Ok(Vec::new());
                }
            };
            match opened {
                Ok(s) => st.sub = Some(s),
                Err(e) => {
                    st.ended = true;
                    return Err(e);
                }
            }
        }
        let Some(sub) = st.sub.as_mut() else {
            return Ok(Vec::new());
        };
        let first = tokio::select! {
            m = sub.next() => m,
            _ = self.cancel.cancelled() => None,
        };
        let mut batch = Vec::new();
        match first {
            None => {
                st.ended = true;
                st.sub = None;
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => {
                batch.push(m);
                while batch.len() < MAX_BATCH {
                    match sub.next().now_or_never() {
                        Some(Some(Ok(m))) => batch.push(m),
                        Some(Some(Err(e))) => {
                            st.error = Some(e);
                            break;
                        }
                        Some(None) => {
                            st.ended = true;
                            st.sub = None;
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        Ok(batch)
    }
}

/// An async iterator of `Message`s (see the module docs).
#[pyclass(module = "liftbridge", frozen, weakref)]
pub struct Subscription {
    shared: Arc<Shared>,
    /// Messages fetched and not yet returned (only touched on the event loop's thread).
    buffer: Arc<Mutex<VecDeque<ReceivedMessage>>>,
}

impl Subscription {
    /// A subscription that opens on first use.
    pub fn new(
        client: liftbridge::Client,
        stream: String,
        options: SubscribeOptions,
        all_partitions: bool,
    ) -> Subscription {
        Subscription {
            shared: Arc::new(Shared {
                client,
                stream,
                options,
                all_partitions,
                cancel: CancellationToken::new(),
                state: tokio::sync::Mutex::new(State::default()),
            }),
            buffer: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// An asyncio future of the next message (opening the subscription first if needed); `None` for
    /// `first_only = false` means "the next batch was buffered" (used by `__aenter__`).
    fn fetch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shared = self.shared.clone();
        let buffer = self.buffer.clone();
        Bridge::current(py)?.spawn(
            py,
            true,
            async move { shared.next_batch().await },
            move |py, _bridge, result| match result {
                Err(e) => Err(to_py_in(py, &e)),
                Ok(batch) => {
                    let mut it = batch.into_iter();
                    let Some(first) = it.next() else {
                        return Err(PyStopAsyncIteration::new_err(()));
                    };
                    buffer.lock().unwrap_or_else(|p| p.into_inner()).extend(it);
                    Ok(Py::new(py, Message(first))?.into_any())
                }
            },
        )
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

#[pymethods]
impl Subscription {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let next = self
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        match next {
            Some(m) => {
                Ok(Bound::new(py, Ready::new(Py::new(py, Message(m))?.into_any()))?.into_any())
            }
            None => self.fetch(py),
        }
    }

    /// `async with client.subscribe(...) as sub:` closes the subscription on exit.
    fn __aenter__(slf: Py<Self>) -> Ready {
        Ready::new(slf.into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Ready> {
        self.close();
        Ok(Ready::new(py.None()))
    }

    /// Releases the subscription now: the iteration ends (a fetch in flight ends with `StopAsyncIteration`).
    fn close(&self) {
        self.shared.cancel.cancel();
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Ok(mut st) = self.shared.state.try_lock() {
            st.sub = None;
            st.ended = true;
        }
    }

    /// Async form of `close()`, for `contextlib.aclosing`.
    fn aclose(&self, py: Python<'_>) -> Ready {
        self.close();
        Ready::new(py.None())
    }

    /// Whether the subscription was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// The stream subscribed to.
    #[getter]
    fn stream(&self) -> &str {
        &self.shared.stream
    }

    fn __repr__(&self) -> String {
        format!(
            "Subscription(stream={:?}, closed={})",
            self.shared.stream,
            self.shared.cancel.is_cancelled()
        )
    }
}
