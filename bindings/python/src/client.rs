//! [`Client`]: the asyncio face of `liftbridge::Client`. Every coroutine-like method checks its arguments
//! with the GIL held (so bad input fails before any network call), then runs the Rust operation on the
//! runtime and returns an asyncio future (see [`crate::runtime`]).

use std::sync::Arc;

use liftbridge::{Error, Message as RsMessage, StreamOptions, SubscribeOptions};
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::to_py_in;
use crate::message::Ack;
use crate::metadata::{Metadata, PartitionInfo, StreamInfo};
use crate::options::{
    StartPosition, StopPosition, TlsOptions, ack_policy, bytes_arg, count_arg, duration_arg,
    int_arg, partition_arg, partitioning, type_name,
};
use crate::runtime::{Bridge, Ready};
use crate::subscription::Subscription;

/// Converts a finished `Result<T>` into a Python value (or the exception of its error kind).
fn convert<T, P>(
    wrap: impl FnOnce(T) -> P + Send + 'static,
) -> impl FnOnce(Python<'_>, &Arc<Bridge>, Result<T, Error>) -> PyResult<Py<PyAny>> + Send + 'static
where
    P: for<'py> IntoPyObject<'py>,
{
    move |py, _bridge, result| match result {
        Ok(v) => wrap(v).into_py_any(py),
        Err(e) => Err(to_py_in(py, &e)),
    }
}

/// A Liftbridge client. Create it with `await Client.connect([...])`; use it as `async with` to close it.
#[pyclass(module = "liftbridge", frozen)]
pub struct Client {
    inner: liftbridge::Client,
}

/// Reads a name argument: a non-empty `str`.
fn name_arg(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = obj.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!("{what} must be a str, got {}", type_name(obj)))
    })?;
    let s: String = s.extract()?;
    if s.trim().is_empty() {
        return Err(PyValueError::new_err(format!("{what} must not be empty")));
    }
    Ok(s)
}

/// Reads an optional list of partition numbers (`None`: all).
fn partitions_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<i32>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "partitions must be an iterable of ints, not str",
        ));
    }
    let mut out = Vec::new();
    for item in obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "partitions must be an iterable of ints, got {}",
            type_name(obj)
        ))
    })? {
        out.push(partition_arg(&item?)?);
    }
    Ok(out)
}

/// Everything a publish can carry, checked.
#[allow(clippy::too_many_arguments)]
fn build_message(
    value: &Bound<'_, PyAny>,
    key: Option<&Bound<'_, PyAny>>,
    headers: Option<&Bound<'_, PyAny>>,
    ack_policy_arg: Option<&Bound<'_, PyAny>>,
    partition: Option<&Bound<'_, PyAny>>,
    partition_by: Option<&Bound<'_, PyAny>>,
    correlation_id: Option<&Bound<'_, PyAny>>,
    ack_inbox: Option<&Bound<'_, PyAny>>,
    expected_offset: Option<&Bound<'_, PyAny>>,
) -> PyResult<RsMessage> {
    let mut msg = RsMessage::new(bytes_arg("value", value)?);
    if let Some(k) = key.filter(|k| !k.is_none()) {
        msg = msg.key(bytes_arg("key", k)?);
    }
    if let Some(h) = headers.filter(|h| !h.is_none()) {
        let dict = h.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "headers must be a dict[str, bytes], got {}",
                type_name(h)
            ))
        })?;
        for (k, v) in dict.iter() {
            let name = k.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!("header names must be str, got {}", type_name(&k)))
            })?;
            let name: String = name.extract()?;
            let value = bytes_arg(&format!("header {name:?}"), &v)?;
            msg = msg.header(name, value);
        }
    }
    if let Some(p) = ack_policy_arg.filter(|p| !p.is_none()) {
        msg = msg.ack_policy(ack_policy(p)?);
    }
    match (
        partition.filter(|p| !p.is_none()),
        partition_by.filter(|p| !p.is_none()),
    ) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "give either partition or partition_by, not both",
            ));
        }
        (Some(p), None) => msg = msg.partition(partition_arg(p)?),
        (None, Some(by)) => msg = msg.partitioning(partitioning(by)?),
        (None, None) => {}
    }
    if let Some(c) = correlation_id.filter(|c| !c.is_none()) {
        msg = msg.correlation_id(name_arg("correlation_id", c)?);
    }
    if let Some(i) = ack_inbox.filter(|i| !i.is_none()) {
        msg = msg.ack_inbox(name_arg("ack_inbox", i)?);
    }
    if let Some(o) = expected_offset.filter(|o| !o.is_none()) {
        let o = int_arg("expected_offset", o)?;
        if o < -1 {
            return Err(PyValueError::new_err(format!(
                "expected_offset must be -1 (none) or a non-negative offset, got {o}"
            )));
        }
        msg = msg.expected_offset(o);
    }
    Ok(msg)
}

/// Sets an optional duration option.
fn opt_duration(
    what: &str,
    obj: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<std::time::Duration>> {
    obj.filter(|o| !o.is_none())
        .map(|o| duration_arg(what, o))
        .transpose()
}

/// Sets an optional integer option with a minimum.
fn opt_count<T: TryFrom<i64>>(
    what: &str,
    obj: Option<&Bound<'_, PyAny>>,
    min: i64,
) -> PyResult<Option<T>> {
    obj.filter(|o| !o.is_none())
        .map(|o| count_arg::<T>(what, o, min))
        .transpose()
}

/// Reads an optional bool (no ints).
fn opt_bool(what: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<bool>> {
    obj.filter(|o| !o.is_none())
        .map(|o| {
            if o.is_instance_of::<pyo3::types::PyBool>() {
                o.extract::<bool>()
            } else {
                Err(PyTypeError::new_err(format!(
                    "{what} must be a bool, got {}",
                    type_name(o)
                )))
            }
        })
        .transpose()
}

#[pymethods]
impl Client {
    /// Connects to the cluster through `seeds` (`"host:port"` strings); resolves to a `Client`.
    #[staticmethod]
    #[pyo3(signature = (seeds, *, connect_timeout=None, request_timeout=None, ack_timeout=None,
        retry_max_attempts=None, retry_base_delay=None, retry_max_delay=None, metadata_refresh_interval=None,
        max_in_flight=None, keepalive_interval=None, keepalive_timeout=None, keepalive=true,
        resubscribe_window=None, prefetch=None, max_recv_message_size=None, max_send_message_size=None,
        drain_grace=None, tls=None, partition_by=None))]
    #[allow(clippy::too_many_arguments)]
    fn connect<'py>(
        py: Python<'py>,
        seeds: &Bound<'py, PyAny>,
        connect_timeout: Option<&Bound<'py, PyAny>>,
        request_timeout: Option<&Bound<'py, PyAny>>,
        ack_timeout: Option<&Bound<'py, PyAny>>,
        retry_max_attempts: Option<&Bound<'py, PyAny>>,
        retry_base_delay: Option<&Bound<'py, PyAny>>,
        retry_max_delay: Option<&Bound<'py, PyAny>>,
        metadata_refresh_interval: Option<&Bound<'py, PyAny>>,
        max_in_flight: Option<&Bound<'py, PyAny>>,
        keepalive_interval: Option<&Bound<'py, PyAny>>,
        keepalive_timeout: Option<&Bound<'py, PyAny>>,
        keepalive: bool,
        resubscribe_window: Option<&Bound<'py, PyAny>>,
        prefetch: Option<&Bound<'py, PyAny>>,
        max_recv_message_size: Option<&Bound<'py, PyAny>>,
        max_send_message_size: Option<&Bound<'py, PyAny>>,
        drain_grace: Option<&Bound<'py, PyAny>>,
        tls: Option<&Bound<'py, PyAny>>,
        partition_by: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if seeds.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "seeds must be a list of \"host:port\" strings, not a single str (wrap it in a list)",
            ));
        }
        let mut addrs = Vec::new();
        for s in seeds.try_iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "seeds must be a list of \"host:port\" strings, got {}",
                type_name(seeds)
            ))
        })? {
            addrs.push(name_arg("each seed", &s?)?);
        }
        if addrs.is_empty() {
            return Err(PyValueError::new_err(
                "seeds must name at least one server (\"host:port\")",
            ));
        }
        let mut b = liftbridge::Client::builder(addrs);
        if let Some(d) = opt_duration("connect_timeout", connect_timeout)? {
            b = b.connect_timeout(d);
        }
        if let Some(d) = opt_duration("request_timeout", request_timeout)? {
            b = b.request_timeout(d);
        }
        if let Some(d) = opt_duration("ack_timeout", ack_timeout)? {
            b = b.ack_timeout(d);
        }
        let mut retry = liftbridge::RetryPolicy::default();
        if let Some(n) = opt_count::<u32>("retry_max_attempts", retry_max_attempts, 1)? {
            retry.max_attempts = n;
        }
        if let Some(d) = opt_duration("retry_base_delay", retry_base_delay)? {
            retry.base_delay = d;
        }
        if let Some(d) = opt_duration("retry_max_delay", retry_max_delay)? {
            retry.max_delay = d;
        }
        b = b.retry_policy(retry);
        if let Some(d) = opt_duration("metadata_refresh_interval", metadata_refresh_interval)? {
            b = b.metadata_refresh_interval(d);
        }
        if let Some(n) = opt_count::<usize>("max_in_flight", max_in_flight, 1)? {
            b = b.max_in_flight(n);
        }
        if keepalive {
            let interval = opt_duration("keepalive_interval", keepalive_interval)?
                .unwrap_or(liftbridge::options::DEFAULT_KEEPALIVE_INTERVAL);
            let timeout = opt_duration("keepalive_timeout", keepalive_timeout)?
                .unwrap_or(liftbridge::options::DEFAULT_KEEPALIVE_TIMEOUT);
            b = b.keepalive(interval, timeout);
        } else {
            b = b.no_keepalive();
        }
        if let Some(d) = opt_duration("resubscribe_window", resubscribe_window)? {
            b = b.resubscribe_window(d);
        }
        if let Some(n) = opt_count::<usize>("prefetch", prefetch, 1)? {
            b = b.prefetch(n);
        }
        let recv = opt_count::<usize>("max_recv_message_size", max_recv_message_size, 1)?;
        let send = opt_count::<usize>("max_send_message_size", max_send_message_size, 1)?;
        if recv.is_some() || send.is_some() {
            b = b.max_message_sizes(
                recv.unwrap_or(liftbridge::options::DEFAULT_MAX_RECV_MESSAGE_SIZE),
                send.unwrap_or(liftbridge::options::DEFAULT_MAX_SEND_MESSAGE_SIZE),
            );
        }
        if let Some(d) = opt_duration("drain_grace", drain_grace)? {
            b = b.drain_grace(d);
        }
        if let Some(t) = tls.filter(|t| !t.is_none()) {
            let t = t.cast::<TlsOptions>().map_err(|_| {
                PyTypeError::new_err(format!("tls must be a TlsOptions, got {}", type_name(t)))
            })?;
            b = b.tls(t.get().0.clone());
        }
        if let Some(p) = partition_by.filter(|p| !p.is_none()) {
            b = b.partitioning(partitioning(p)?);
        }
        let bridge = Bridge::current(py)?;
        bridge.spawn(py, true, b.connect(), convert(|inner| Client { inner }))
    }

    fn __aenter__(slf: Py<Self>) -> Ready {
        Ready::new(slf.into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py)
    }

    /// Closes the client: new operations fail with `ClientClosedError`, in-flight publishes get the drain
    /// grace period to be acked, subscriptions end. Idempotent.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            false,
            async move { client.close().await },
            |py, _b, ()| Ok(py.None()),
        )
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Creates a stream recording `subject`. Resolves to `True` when created; with `if_not_exists=True` an
    /// existing stream resolves to `False` instead of raising `StreamExistsError`.
    #[pyo3(signature = (subject, name, *, group=None, replication_factor=None, partitions=None,
        retention_max_bytes=None, retention_max_messages=None, retention_max_age=None, cleaner_interval=None,
        segment_max_bytes=None, segment_max_age=None, compact_enabled=None, compact_max_goroutines=None,
        auto_pause_time=None, auto_pause_disable_if_subscribers=None, min_isr=None,
        optimistic_concurrency_control=None, encryption=None, if_not_exists=false))]
    #[allow(clippy::too_many_arguments)]
    fn create_stream<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
        group: Option<&Bound<'py, PyAny>>,
        replication_factor: Option<&Bound<'py, PyAny>>,
        partitions: Option<&Bound<'py, PyAny>>,
        retention_max_bytes: Option<&Bound<'py, PyAny>>,
        retention_max_messages: Option<&Bound<'py, PyAny>>,
        retention_max_age: Option<&Bound<'py, PyAny>>,
        cleaner_interval: Option<&Bound<'py, PyAny>>,
        segment_max_bytes: Option<&Bound<'py, PyAny>>,
        segment_max_age: Option<&Bound<'py, PyAny>>,
        compact_enabled: Option<&Bound<'py, PyAny>>,
        compact_max_goroutines: Option<&Bound<'py, PyAny>>,
        auto_pause_time: Option<&Bound<'py, PyAny>>,
        auto_pause_disable_if_subscribers: Option<&Bound<'py, PyAny>>,
        min_isr: Option<&Bound<'py, PyAny>>,
        optimistic_concurrency_control: Option<&Bound<'py, PyAny>>,
        encryption: Option<&Bound<'py, PyAny>>,
        if_not_exists: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut o = StreamOptions::new(name_arg("subject", subject)?, name_arg("name", name)?);
        if let Some(g) = group.filter(|g| !g.is_none()) {
            o = o.group(name_arg("group", g)?);
        }
        if let Some(r) = replication_factor.filter(|r| !r.is_none()) {
            let r = int_arg("replication_factor", r)?;
            if r == 0 || r < -1 {
                return Err(PyValueError::new_err(format!(
                    "replication_factor must be -1 (all servers) or positive, got {r}"
                )));
            }
            o = o.replication_factor(i32::try_from(r).map_err(|_| {
                PyValueError::new_err(format!("replication_factor {r} is out of range"))
            })?);
        }
        if let Some(n) = opt_count::<u32>("partitions", partitions, 1)? {
            o = o.partitions(n);
        }
        if let Some(n) = opt_count::<i64>("retention_max_bytes", retention_max_bytes, 0)? {
            o = o.retention_max_bytes(n);
        }
        if let Some(n) = opt_count::<i64>("retention_max_messages", retention_max_messages, 0)? {
            o = o.retention_max_messages(n);
        }
        if let Some(d) = opt_duration("retention_max_age", retention_max_age)? {
            o = o.retention_max_age(d);
        }
        if let Some(d) = opt_duration("cleaner_interval", cleaner_interval)? {
            o = o.cleaner_interval(d);
        }
        if let Some(n) = opt_count::<i64>("segment_max_bytes", segment_max_bytes, 1)? {
            o = o.segment_max_bytes(n);
        }
        if let Some(d) = opt_duration("segment_max_age", segment_max_age)? {
            o = o.segment_max_age(d);
        }
        if let Some(b) = opt_bool("compact_enabled", compact_enabled)? {
            o = o.compact_enabled(b);
        }
        if let Some(n) = opt_count::<i32>("compact_max_goroutines", compact_max_goroutines, 1)? {
            o = o.compact_max_goroutines(n);
        }
        if let Some(d) = opt_duration("auto_pause_time", auto_pause_time)? {
            o = o.auto_pause_time(d);
        }
        if let Some(b) = opt_bool(
            "auto_pause_disable_if_subscribers",
            auto_pause_disable_if_subscribers,
        )? {
            o = o.auto_pause_disable_if_subscribers(b);
        }
        if let Some(n) = opt_count::<i32>("min_isr", min_isr, 1)? {
            o = o.min_isr(n);
        }
        if let Some(b) = opt_bool(
            "optimistic_concurrency_control",
            optimistic_concurrency_control,
        )? {
            o = o.optimistic_concurrency_control(b);
        }
        if let Some(b) = opt_bool("encryption", encryption)? {
            o = o.encryption(b);
        }
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            false,
            async move {
                if if_not_exists {
                    client.create_stream_if_not_exists(o).await
                } else {
                    client.create_stream(o).await.map(|()| true)
                }
            },
            convert(|created: bool| created),
        )
    }

    /// Deletes a stream and its data (`NoSuchStreamError` if it does not exist).
    fn delete_stream<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = name_arg("name", name)?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            false,
            async move { client.delete_stream(&name).await },
            convert(|()| ()),
        )
    }

    /// Pauses `partitions` of a stream (all when `None`); with `resume_all`, publishing to one resumes all.
    #[pyo3(signature = (name, partitions=None, *, resume_all=false))]
    fn pause_stream<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        partitions: Option<&Bound<'py, PyAny>>,
        resume_all: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = name_arg("name", name)?;
        let partitions = partitions_arg(partitions)?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            false,
            async move { client.pause_stream(&name, &partitions, resume_all).await },
            convert(|()| ()),
        )
    }

    /// Sets (or with `readonly=False` clears) the readonly flag of `partitions` of a stream (all when `None`).
    #[pyo3(signature = (name, partitions=None, *, readonly=true))]
    fn set_stream_readonly<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        partitions: Option<&Bound<'py, PyAny>>,
        readonly: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = name_arg("name", name)?;
        let partitions = partitions_arg(partitions)?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            false,
            async move {
                client
                    .set_stream_readonly(&name, &partitions, readonly)
                    .await
            },
            convert(|()| ()),
        )
    }

    /// Fetches the whole cluster's metadata.
    fn fetch_metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            true,
            async move { client.fetch_metadata().await },
            convert(Metadata),
        )
    }

    /// Fetches one stream's metadata (`NoSuchStreamError` if it does not exist).
    fn fetch_stream_metadata<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = name_arg("name", name)?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            true,
            async move { client.fetch_stream_metadata(&name).await },
            convert(StreamInfo),
        )
    }

    /// Fetches a partition's metadata from its leader (high watermark, newest offset, flags).
    fn fetch_partition_metadata<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
        partition: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stream = name_arg("stream", stream)?;
        let partition = partition_arg(partition)?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            true,
            async move { client.fetch_partition_metadata(&stream, partition).await },
            convert(PartitionInfo),
        )
    }

    /// The cached metadata (no request).
    fn metadata(&self) -> Metadata {
        Metadata((*self.inner.metadata()).clone())
    }

    /// The number of partitions of a stream (from the cache, fetched when missing).
    fn partition_count<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stream = name_arg("stream", stream)?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            true,
            async move { client.partition_count(&stream).await },
            convert(|n: usize| n),
        )
    }

    /// Waits until a stream exists and every partition has a leader (`RequestTimeoutError` after `timeout`).
    fn wait_for_stream<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        timeout: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = name_arg("name", name)?;
        let timeout = duration_arg("timeout", timeout)?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            true,
            async move { client.wait_for_stream(&name, timeout).await },
            convert(StreamInfo),
        )
    }

    /// Publishes `value` to a stream and resolves to its `Ack` once stored (per `ack_policy`).
    #[pyo3(signature = (stream, value, *, key=None, headers=None, ack_policy=None, partition=None,
        partition_by=None, correlation_id=None, ack_inbox=None, expected_offset=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        key: Option<&Bound<'py, PyAny>>,
        headers: Option<&Bound<'py, PyAny>>,
        ack_policy: Option<&Bound<'py, PyAny>>,
        partition: Option<&Bound<'py, PyAny>>,
        partition_by: Option<&Bound<'py, PyAny>>,
        correlation_id: Option<&Bound<'py, PyAny>>,
        ack_inbox: Option<&Bound<'py, PyAny>>,
        expected_offset: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stream = name_arg("stream", stream)?;
        let msg = build_message(
            value,
            key,
            headers,
            ack_policy,
            partition,
            partition_by,
            correlation_id,
            ack_inbox,
            expected_offset,
        )?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            false,
            async move { client.publish(&stream, msg).await },
            convert(Ack),
        )
    }

    /// Queues `value` on the stream's publish pipeline; resolves (once queued, which waits while the in-flight
    /// window is full) to an `asyncio.Future` of the `Ack`. This is how to pipeline publishes.
    #[pyo3(signature = (stream, value, *, key=None, headers=None, ack_policy=None, partition=None,
        partition_by=None, correlation_id=None, ack_inbox=None, expected_offset=None))]
    #[allow(clippy::too_many_arguments)]
    fn send<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        key: Option<&Bound<'py, PyAny>>,
        headers: Option<&Bound<'py, PyAny>>,
        ack_policy: Option<&Bound<'py, PyAny>>,
        partition: Option<&Bound<'py, PyAny>>,
        partition_by: Option<&Bound<'py, PyAny>>,
        correlation_id: Option<&Bound<'py, PyAny>>,
        ack_inbox: Option<&Bound<'py, PyAny>>,
        expected_offset: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stream = name_arg("stream", stream)?;
        let msg = build_message(
            value,
            key,
            headers,
            ack_policy,
            partition,
            partition_by,
            correlation_id,
            ack_inbox,
            expected_offset,
        )?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn_eager(
            py,
            async move { client.send(&stream, msg).await },
            |py, bridge, result| match result {
                Ok(ack) => Ok(bridge.spawn(py, false, ack, convert(Ack))?.unbind()),
                Err(e) => Err(to_py_in(py, &e)),
            },
        )
    }

    /// Publishes `value` to a NATS subject through the server; resolves to the first stream's `Ack`, or `None`
    /// with `AckPolicy.NONE`.
    #[pyo3(signature = (subject, value, *, key=None, headers=None, ack_policy=None, correlation_id=None,
        ack_inbox=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_to_subject<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        key: Option<&Bound<'py, PyAny>>,
        headers: Option<&Bound<'py, PyAny>>,
        ack_policy: Option<&Bound<'py, PyAny>>,
        correlation_id: Option<&Bound<'py, PyAny>>,
        ack_inbox: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let subject = name_arg("subject", subject)?;
        let msg = build_message(
            value,
            key,
            headers,
            ack_policy,
            None,
            None,
            correlation_id,
            ack_inbox,
            None,
        )?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            false,
            async move { client.publish_to_subject(&subject, msg).await },
            convert(|ack: Option<liftbridge::Ack>| ack.map(Ack)),
        )
    }

    /// Subscribes to a stream partition (or, with `all_partitions=True`, to every partition merged). Returns
    /// at once an async iterator of `Message`s; the subscription opens on the first iteration (or in
    /// `async with`). Breaking the loop, `close()` or cancelling the task releases it.
    #[pyo3(signature = (stream, *, start=None, stop=None, partition=None, all_partitions=false,
        reverse=false, read_isr_replica=false, resume=false, prefetch=None, auto_resubscribe=true))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &self,
        stream: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        stop: Option<&Bound<'_, PyAny>>,
        partition: Option<&Bound<'_, PyAny>>,
        all_partitions: bool,
        reverse: bool,
        read_isr_replica: bool,
        resume: bool,
        prefetch: Option<&Bound<'_, PyAny>>,
        auto_resubscribe: bool,
    ) -> PyResult<Subscription> {
        let stream = name_arg("stream", stream)?;
        let mut opts = SubscribeOptions::new()
            .reverse(reverse)
            .read_isr_replica(read_isr_replica)
            .resume(resume)
            .auto_resubscribe(auto_resubscribe);
        if let Some(s) = start.filter(|s| !s.is_none()) {
            let s = s.cast::<StartPosition>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "start must be a StartPosition (StartPosition.EARLIEST, StartPosition.offset(n), ...), got {}",
                    type_name(s)
                ))
            })?;
            opts = opts.start_at(s.get().0);
        }
        if let Some(s) = stop.filter(|s| !s.is_none()) {
            let s = s.cast::<StopPosition>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "stop must be a StopPosition (StopPosition.LATEST, StopPosition.offset(n), ...), got {}",
                    type_name(s)
                ))
            })?;
            opts = opts.stop_at(s.get().0);
        }
        if let Some(p) = partition.filter(|p| !p.is_none()) {
            if all_partitions {
                return Err(PyValueError::new_err(
                    "give either partition or all_partitions=True, not both",
                ));
            }
            opts = opts.partition(partition_arg(p)?);
        }
        if let Some(n) = opt_count::<usize>("prefetch", prefetch, 1)? {
            opts = opts.prefetch(n);
        }
        Ok(Subscription::new(
            self.inner.clone(),
            stream,
            opts,
            all_partitions,
        ))
    }

    /// The client's connection and cluster events from now on, as an async iterator of `Event`s.
    fn events(&self) -> crate::event::Events {
        crate::event::Events::new(self.inner.events())
    }

    /// The server leading a partition (from the cache; fetched when not cached).
    fn leader_of<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
        partition: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stream = name_arg("stream", stream)?;
        let partition = partition_arg(partition)?;
        let client = self.inner.clone();
        Bridge::current(py)?.spawn(
            py,
            true,
            async move { client.leader_of(&stream, partition).await },
            convert(crate::metadata::BrokerInfo),
        )
    }

    fn __repr__(&self) -> String {
        format!("Client(closed={})", self.inner.is_closed())
    }
}
