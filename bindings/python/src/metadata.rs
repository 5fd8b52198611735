//! Cluster metadata as frozen objects: [`Metadata`], [`BrokerInfo`], [`StreamInfo`], [`PartitionInfo`],
//! [`EventTimestamps`].

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::options::datetime_from_time;

/// A snapshot of the cluster: servers and streams.
#[pyclass(module = "liftbridge", frozen)]
pub struct Metadata(pub liftbridge::Metadata);

#[pymethods]
impl Metadata {
    /// The servers.
    #[getter]
    fn brokers(&self) -> Vec<BrokerInfo> {
        self.0.brokers().iter().cloned().map(BrokerInfo).collect()
    }

    /// The streams, by name.
    #[getter]
    fn streams<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for s in self.0.streams() {
            d.set_item(s.name(), StreamInfo(s.clone()))?;
        }
        Ok(d)
    }

    /// One stream, or `None`.
    fn stream(&self, name: &str) -> Option<StreamInfo> {
        self.0.stream(name).cloned().map(StreamInfo)
    }

    /// Whether the stream exists.
    fn has_stream(&self, name: &str) -> bool {
        self.0.has_stream(name)
    }

    /// The partition count of a stream, or `None`.
    fn partition_count(&self, stream: &str) -> Option<usize> {
        self.0.partition_count(stream)
    }

    /// The server leading a partition, or `None`.
    fn leader(&self, stream: &str, partition: i32) -> Option<BrokerInfo> {
        self.0.leader(stream, partition).cloned().map(BrokerInfo)
    }

    fn __repr__(&self) -> String {
        format!(
            "Metadata(brokers={}, streams={})",
            self.0.brokers().len(),
            self.0.streams().count()
        )
    }
}

/// A server of the cluster.
#[pyclass(module = "liftbridge", frozen)]
pub struct BrokerInfo(pub liftbridge::BrokerInfo);

#[pymethods]
impl BrokerInfo {
    /// Server id.
    #[getter]
    fn id(&self) -> &str {
        self.0.id()
    }
    /// Host.
    #[getter]
    fn host(&self) -> &str {
        self.0.host()
    }
    /// Port.
    #[getter]
    fn port(&self) -> i32 {
        self.0.port()
    }
    /// `host:port`.
    #[getter]
    fn addr(&self) -> &str {
        self.0.addr()
    }
    /// Partitions it holds.
    #[getter]
    fn partition_count(&self) -> i32 {
        self.0.partition_count()
    }
    /// Partitions it leads.
    #[getter]
    fn leader_count(&self) -> i32 {
        self.0.leader_count()
    }
    fn __repr__(&self) -> String {
        format!("BrokerInfo(id={:?}, addr={:?})", self.0.id(), self.0.addr())
    }
}

/// A stream and its partitions.
#[pyclass(module = "liftbridge", frozen)]
pub struct StreamInfo(pub liftbridge::StreamInfo);

#[pymethods]
impl StreamInfo {
    /// Name.
    #[getter]
    fn name(&self) -> &str {
        self.0.name()
    }
    /// NATS subject.
    #[getter]
    fn subject(&self) -> &str {
        self.0.subject()
    }
    /// When it was created (UTC).
    #[getter]
    fn creation_time(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        datetime_from_time(py, self.0.creation_time())
    }
    /// Partitions by id.
    #[getter]
    fn partitions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (id, p) in self.0.partitions() {
            d.set_item(id, PartitionInfo(p.clone()))?;
        }
        Ok(d)
    }
    /// One partition, or `None`.
    fn partition(&self, id: i32) -> Option<PartitionInfo> {
        self.0.partition(id).cloned().map(PartitionInfo)
    }
    /// Every partition has a leader.
    #[getter]
    fn is_ready(&self) -> bool {
        self.0.is_ready()
    }
    fn __repr__(&self) -> String {
        format!(
            "StreamInfo(name={:?}, subject={:?}, partitions={})",
            self.0.name(),
            self.0.subject(),
            self.0.partitions().len()
        )
    }
}

/// A partition: leader, replicas, offsets, flags.
#[pyclass(module = "liftbridge", frozen)]
pub struct PartitionInfo(pub liftbridge::PartitionInfo);

#[pymethods]
impl PartitionInfo {
    /// Partition id.
    #[getter]
    fn id(&self) -> i32 {
        self.0.id()
    }
    /// Leader's server id.
    #[getter]
    fn leader(&self) -> &str {
        self.0.leader()
    }
    /// Replica server ids.
    #[getter]
    fn replicas(&self) -> Vec<String> {
        self.0.replicas().to_vec()
    }
    /// In-sync replica server ids.
    #[getter]
    fn isr(&self) -> Vec<String> {
        self.0.isr().to_vec()
    }
    /// High watermark (-1 when empty).
    #[getter]
    fn high_watermark(&self) -> i64 {
        self.0.high_watermark()
    }
    /// Newest offset (-1 when empty).
    #[getter]
    fn newest_offset(&self) -> i64 {
        self.0.newest_offset()
    }
    /// Whether it is paused.
    #[getter]
    fn paused(&self) -> bool {
        self.0.is_paused()
    }
    /// Whether it is readonly.
    #[getter]
    fn readonly(&self) -> bool {
        self.0.is_readonly()
    }
    /// When messages were first and last received.
    #[getter]
    fn messages_received(&self) -> EventTimestamps {
        EventTimestamps(self.0.messages_received())
    }
    /// When it was first and last paused.
    #[getter]
    fn paused_at(&self) -> EventTimestamps {
        EventTimestamps(self.0.paused_at())
    }
    /// When it was first and last made readonly.
    #[getter]
    fn readonly_at(&self) -> EventTimestamps {
        EventTimestamps(self.0.readonly_at())
    }
    fn __repr__(&self) -> String {
        format!(
            "PartitionInfo(id={}, leader={:?}, high_watermark={}, newest_offset={}, paused={}, readonly={})",
            self.0.id(),
            self.0.leader(),
            self.0.high_watermark(),
            self.0.newest_offset(),
            self.0.is_paused(),
            self.0.is_readonly()
        )
    }
}

/// The first and latest time an event happened (`None` when it never did).
#[pyclass(module = "liftbridge", frozen)]
pub struct EventTimestamps(pub liftbridge::EventTimestamps);

#[pymethods]
impl EventTimestamps {
    /// First time, or `None`.
    #[getter]
    fn first(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.0
            .first()
            .map(|t| datetime_from_time(py, t))
            .transpose()
    }
    /// Latest time, or `None`.
    #[getter]
    fn latest(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.0
            .latest()
            .map(|t| datetime_from_time(py, t))
            .transpose()
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let f = self.first(py)?;
        let l = self.latest(py)?;
        let show = |o: Option<Py<PyAny>>| -> PyResult<String> {
            Ok(match o {
                Some(v) => v.bind(py).repr()?.to_string(),
                None => "None".into(),
            })
        };
        Ok(format!(
            "EventTimestamps(first={}, latest={})",
            show(f)?,
            show(l)?
        ))
    }
}
