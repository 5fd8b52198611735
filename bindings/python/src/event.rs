//! [`Events`]: the client's connection and cluster events as an async iterator of frozen [`Event`]s.

use std::sync::Arc;

use futures::StreamExt;
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;

use crate::errors::to_py_in;
use crate::runtime::{Bridge, Ready};

/// Something that happened to the client's connections or to the cluster (frozen). `kind` is one of
/// `connected`, `disconnected`, `publish_stream_broken`, `metadata_refreshed`, `leader_changed`,
/// `resubscribing`, `resubscribed`, `closed`; the other attributes are set where they apply (else `None`).
#[pyclass(module = "liftbridge", frozen)]
pub struct Event(liftbridge::Event);

#[pymethods]
impl Event {
    /// What happened.
    #[getter]
    fn kind(&self) -> &'static str {
        use liftbridge::Event as E;
        match &self.0 {
            E::Connected { .. } => "connected",
            E::Disconnected { .. } => "disconnected",
            E::PublishStreamBroken { .. } => "publish_stream_broken",
            E::MetadataRefreshed { .. } => "metadata_refreshed",
            E::LeaderChanged { .. } => "leader_changed",
            E::Resubscribing { .. } => "resubscribing",
            E::Resubscribed { .. } => "resubscribed",
            E::Closed => "closed",
            _ => "other",
        }
    }

    /// The server's `host:port` (connected, disconnected, publish_stream_broken).
    #[getter]
    fn addr(&self) -> Option<&str> {
        use liftbridge::Event as E;
        match &self.0 {
            E::Connected { addr } | E::Disconnected { addr, .. } => Some(addr),
            E::PublishStreamBroken { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// The stream (leader_changed, resubscribing, resubscribed).
    #[getter]
    fn stream(&self) -> Option<&str> {
        use liftbridge::Event as E;
        match &self.0 {
            E::LeaderChanged { stream, .. }
            | E::Resubscribing { stream, .. }
            | E::Resubscribed { stream, .. } => Some(stream),
            _ => None,
        }
    }

    /// The partition (leader_changed, resubscribing, resubscribed).
    #[getter]
    fn partition(&self) -> Option<i32> {
        use liftbridge::Event as E;
        match &self.0 {
            E::LeaderChanged { partition, .. }
            | E::Resubscribing { partition, .. }
            | E::Resubscribed { partition, .. } => Some(*partition),
            _ => None,
        }
    }

    /// Why (disconnected, resubscribing): the exception the error maps to.
    #[getter]
    fn error(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        use liftbridge::Event as E;
        match &self.0 {
            E::Disconnected { error, .. } | E::Resubscribing { error, .. } => {
                Some(to_py_in(py, error).into_value(py).into_any())
            }
            _ => None,
        }
    }

    /// Publishes that were waiting for their ack (publish_stream_broken).
    #[getter]
    fn in_flight(&self) -> Option<usize> {
        match &self.0 {
            liftbridge::Event::PublishStreamBroken { in_flight, .. } => Some(*in_flight),
            _ => None,
        }
    }

    /// Servers and streams known (metadata_refreshed).
    #[getter]
    fn counts(&self) -> Option<(usize, usize)> {
        match &self.0 {
            liftbridge::Event::MetadataRefreshed { brokers, streams } => Some((*brokers, *streams)),
            _ => None,
        }
    }

    /// Previous and new leader ids (leader_changed).
    #[getter]
    fn leaders(&self) -> Option<(&str, &str)> {
        match &self.0 {
            liftbridge::Event::LeaderChanged { old, new, .. } => Some((old, new)),
            _ => None,
        }
    }

    /// The offset a resubscription resumed at (resubscribed; `None` when it used the start position again).
    #[getter]
    fn offset(&self) -> Option<i64> {
        match &self.0 {
            liftbridge::Event::Resubscribed { offset, .. } => *offset,
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        format!("Event({:?})", self.0)
    }
}

/// An async iterator of [`Event`]s from the moment it was created (see `Client.events()`).
#[pyclass(module = "liftbridge", frozen)]
pub struct Events {
    inner: Arc<tokio::sync::Mutex<liftbridge::Events>>,
}

impl Events {
    /// Wraps the client's event stream.
    pub fn new(events: liftbridge::Events) -> Events {
        Events {
            inner: Arc::new(tokio::sync::Mutex::new(events)),
        }
    }
}

#[pymethods]
impl Events {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        // An event already buffered comes back without a trip through the loop.
        if let Ok(mut guard) = inner.try_lock()
            && let Some(next) = futures::FutureExt::now_or_never(guard.next())
        {
            return match next {
                Some(e) => {
                    Ok(Bound::new(py, Ready::new(Py::new(py, Event(e))?.into_any()))?.into_any())
                }
                None => Err(PyStopAsyncIteration::new_err(())),
            };
        }
        Bridge::current(py)?.spawn(
            py,
            true,
            async move { inner.lock().await.next().await },
            |py, _bridge, event| match event {
                Some(e) => Ok(Py::new(py, Event(e))?.into_any()),
                None => Err(PyStopAsyncIteration::new_err(())),
            },
        )
    }
}
