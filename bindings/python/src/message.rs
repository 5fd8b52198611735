//! What comes back: [`Message`] (read from a stream) and [`Ack`] (of a publish), frozen objects whose
//! attributes are converted on access from the client's zero-copy types.

use liftbridge::{Ack as RsAck, ReceivedMessage};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::options::{AckPolicy, datetime_from_nanos, datetime_from_time, nanos_of};

/// A message read from a stream partition (frozen).
#[pyclass(module = "liftbridge", frozen)]
pub struct Message(pub ReceivedMessage);

#[pymethods]
impl Message {
    /// Offset in the partition.
    #[getter]
    fn offset(&self) -> i64 {
        self.0.offset()
    }

    /// The key (`b""` when none).
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.key())
    }

    /// The value.
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.value())
    }

    /// When the server received the message (UTC, microsecond precision).
    #[getter]
    fn timestamp(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        datetime_from_nanos(py, self.0.timestamp_nanos())
    }

    /// When the server received the message, in nanoseconds since the Unix epoch.
    #[getter]
    fn timestamp_ns(&self) -> i64 {
        self.0.timestamp_nanos()
    }

    /// The headers.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.0.headers() {
            d.set_item(k, PyBytes::new(py, v))?;
        }
        Ok(d)
    }

    /// The partition.
    #[getter]
    fn partition(&self) -> i32 {
        self.0.partition()
    }

    /// The stream.
    #[getter]
    fn stream(&self) -> &str {
        self.0.stream()
    }

    /// The NATS subject the message arrived on.
    #[getter]
    fn subject(&self) -> &str {
        self.0.subject()
    }

    /// The NATS reply subject, if any (`""` otherwise).
    #[getter]
    fn reply_subject(&self) -> &str {
        self.0.reply_subject()
    }

    /// The correlation id the publisher gave, if the server kept it.
    #[getter]
    fn correlation_id(&self) -> &str {
        self.0.correlation_id()
    }

    fn __repr__(&self) -> String {
        format!(
            "Message(stream={:?}, partition={}, offset={}, key={:?}, value=<{} bytes>)",
            self.0.stream(),
            self.0.partition(),
            self.0.offset(),
            String::from_utf8_lossy(self.0.key()),
            self.0.value().len()
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Message>()
            .map(|o| o.get().0 == self.0)
            .unwrap_or(false)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.stream().hash(&mut h);
        self.0.partition().hash(&mut h);
        self.0.offset().hash(&mut h);
        h.finish()
    }
}

/// The acknowledgement of a published message: where and when it was stored (frozen).
#[pyclass(module = "liftbridge", frozen)]
pub struct Ack(pub RsAck);

#[pymethods]
impl Ack {
    /// The stream.
    #[getter]
    fn stream(&self) -> &str {
        self.0.stream()
    }

    /// The partition (`None` when unknown).
    #[getter]
    fn partition(&self) -> Option<i32> {
        self.0.partition()
    }

    /// The offset the message was stored at (-1 for `AckPolicy.NONE`).
    #[getter]
    fn offset(&self) -> i64 {
        self.0.offset()
    }

    /// The NATS subject of the partition.
    #[getter]
    fn partition_subject(&self) -> &str {
        self.0.partition_subject()
    }

    /// The NATS subject the message was published on.
    #[getter]
    fn msg_subject(&self) -> &str {
        self.0.msg_subject()
    }

    /// The ack inbox.
    #[getter]
    fn ack_inbox(&self) -> &str {
        self.0.ack_inbox()
    }

    /// The message's correlation id.
    #[getter]
    fn correlation_id(&self) -> &str {
        self.0.correlation_id()
    }

    /// The ack policy the message was published with.
    #[getter]
    fn ack_policy(&self) -> AckPolicy {
        self.0.ack_policy().into()
    }

    /// When the leader received the message (UTC).
    #[getter]
    fn reception_timestamp(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        datetime_from_time(py, self.0.reception_timestamp())
    }

    /// When the message was committed (UTC).
    #[getter]
    fn commit_timestamp(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        datetime_from_time(py, self.0.commit_timestamp())
    }

    /// When the leader received the message, in nanoseconds since the epoch.
    #[getter]
    fn reception_timestamp_ns(&self) -> i64 {
        nanos_of(self.0.reception_timestamp())
    }

    /// When the message was committed, in nanoseconds since the epoch.
    #[getter]
    fn commit_timestamp_ns(&self) -> i64 {
        nanos_of(self.0.commit_timestamp())
    }

    fn __repr__(&self) -> String {
        format!(
            "Ack(stream={:?}, partition={:?}, offset={})",
            self.0.stream(),
            self.0.partition(),
            self.0.offset()
        )
    }
}
