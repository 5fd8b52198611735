//! Option types users pass in: [`AckPolicy`], [`PartitionBy`], [`StartPosition`], [`StopPosition`],
//! [`TlsOptions`], and the checked conversions of durations, datetimes, bytes and partition numbers.
//!
//! Bad input fails here, before any network call: `TypeError` for a wrong type, `ValueError` for a wrong value.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt};

/// When the server acknowledges a published message.
#[pyclass(module = "liftbridge", eq, eq_int, frozen, hash)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckPolicy {
    /// Once the partition leader has stored it (the default).
    #[pyo3(name = "LEADER")]
    Leader,
    /// Once every in-sync replica has stored it.
    #[pyo3(name = "ALL")]
    All,
    /// Never: the publish completes once the message is handed to the connection.
    #[pyo3(name = "NONE")]
    None,
}

impl From<AckPolicy> for liftbridge::AckPolicy {
    fn from(p: AckPolicy) -> Self {
        match p {
            AckPolicy::Leader => liftbridge::AckPolicy::Leader,
            AckPolicy::All => liftbridge::AckPolicy::All,
            AckPolicy::None => liftbridge::AckPolicy::None,
        }
    }
}

impl From<liftbridge::AckPolicy> for AckPolicy {
    fn from(p: liftbridge::AckPolicy) -> Self {
        match p {
            liftbridge::AckPolicy::All => AckPolicy::All,
            liftbridge::AckPolicy::None => AckPolicy::None,
            _ => AckPolicy::Leader,
        }
    }
}

/// How the client picks a message's partition when none is given.
#[pyclass(module = "liftbridge", eq, eq_int, frozen, hash)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionBy {
    /// By hashing the key (same key, same partition).
    #[pyo3(name = "KEY")]
    Key,
    /// Round-robin per stream.
    #[pyo3(name = "ROUND_ROBIN")]
    RoundRobin,
}

/// A custom partitioner: a Python callable `(stream, key, value, partitions) -> int`.
#[derive(Debug)]
pub struct PyPartitioner(Py<PyAny>);

impl liftbridge::Partitioner for PyPartitioner {
    fn partition(&self, stream: &str, key: &[u8], value: &[u8], partitions: u32) -> u32 {
        if crate::runtime::FINALIZING.load(std::sync::atomic::Ordering::Acquire) {
            return 0;
        }
        Python::attach(|py| {
            let result = self
                .0
                .bind(py)
                .call1((
                    stream,
                    PyBytes::new(py, key),
                    PyBytes::new(py, value),
                    partitions,
                ))
                .and_then(|r| r.extract::<i64>());
            match result {
                Ok(p) if p >= 0 && p < i64::from(partitions) => p as u32,
                Ok(p) => {
                    let err = PyValueError::new_err(format!(
                        "partitioner returned {p} for stream {stream:?} with {partitions} partitions; using 0"
                    ));
                    err.write_unraisable(py, Some(self.0.bind(py)));
                    0
                }
                Err(err) => {
                    err.write_unraisable(py, Some(self.0.bind(py)));
                    0
                }
            }
        })
    }
}

/// Reads a `partition_by` argument: `PartitionBy.KEY`, `PartitionBy.ROUND_ROBIN`, or a callable.
pub fn partitioning(obj: &Bound<'_, PyAny>) -> PyResult<liftbridge::Partitioning> {
    if let Ok(p) = obj.cast::<PartitionBy>().map(|b| *b.get()) {
        return Ok(match p {
            PartitionBy::Key => liftbridge::Partitioning::Key,
            PartitionBy::RoundRobin => liftbridge::Partitioning::RoundRobin,
        });
    }
    if obj.is_callable() {
        return Ok(liftbridge::Partitioning::Custom(std::sync::Arc::new(
            PyPartitioner(obj.clone().unbind()),
        )));
    }
    Err(PyTypeError::new_err(format!(
        "partition_by must be PartitionBy.KEY, PartitionBy.ROUND_ROBIN or a callable (stream, key, value, \
         partitions) -> int, got {}",
        type_name(obj)
    )))
}

/// Reads an `ack_policy` argument.
pub fn ack_policy(obj: &Bound<'_, PyAny>) -> PyResult<liftbridge::AckPolicy> {
    obj.cast::<AckPolicy>()
        .map(|b| (*b.get()).into())
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "ack_policy must be AckPolicy.LEADER, AckPolicy.ALL or AckPolicy.NONE, got {}",
                describe(obj)
            ))
        })
}

/// The type name of `obj`, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `repr(obj)` and its type, for messages.
pub fn describe(obj: &Bound<'_, PyAny>) -> String {
    let repr = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    let repr = if repr.chars().count() > 60 {
        format!("{}...", repr.chars().take(60).collect::<String>())
    } else {
        repr
    };
    format!("{repr} ({})", type_name(obj))
}

/// Reads a `bytes`-like argument (`bytes`, `bytearray`, `memoryview`); `str` is refused with a hint.
pub fn bytes_arg(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<bytes::Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(bytes::Bytes::copy_from_slice(b.as_bytes()));
    }
    if obj.is_instance_of::<pyo3::types::PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be bytes, not str (encode it first, e.g. {what}.encode())"
        )));
    }
    if let Ok(v) = obj.extract::<Vec<u8>>()
        && !obj.is_instance_of::<pyo3::types::PyList>()
        && !obj.is_instance_of::<pyo3::types::PyTuple>()
    {
        return Ok(bytes::Bytes::from(v));
    }
    if let Ok(b) = obj
        .call_method0("__bytes__")
        .and_then(|b| b.cast_into::<PyBytes>().map_err(Into::into))
    {
        return Ok(bytes::Bytes::copy_from_slice(b.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes (or bytearray/memoryview), got {}",
        type_name(obj)
    )))
}

/// Reads an integer argument (no `bool`, no `float`).
pub fn int_arg(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, got {}",
            type_name(obj)
        )));
    }
    obj.extract::<i64>()
        .map_err(|_| PyValueError::new_err(format!("{what} is out of range: {}", describe(obj))))
}

/// Reads a partition number: an int in `0..=i32::MAX`.
pub fn partition_arg(obj: &Bound<'_, PyAny>) -> PyResult<i32> {
    let p = int_arg("partition", obj)?;
    if p < 0 {
        return Err(PyValueError::new_err(format!(
            "partition must not be negative, got {p}"
        )));
    }
    i32::try_from(p).map_err(|_| PyValueError::new_err(format!("partition {p} is out of range")))
}

/// Reads a non-negative int that fits `T`.
pub fn count_arg<T: TryFrom<i64>>(what: &str, obj: &Bound<'_, PyAny>, min: i64) -> PyResult<T> {
    let n = int_arg(what, obj)?;
    if n < min {
        return Err(PyValueError::new_err(format!(
            "{what} must be at least {min}, got {n}"
        )));
    }
    T::try_from(n).map_err(|_| PyValueError::new_err(format!("{what} {n} is out of range")))
}

/// Reads a duration: a `datetime.timedelta` or a number of seconds (int or float), not negative.
pub fn duration_arg(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let secs: f64 = if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a datetime.timedelta or a number of seconds, got bool"
        )));
    } else if obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>() {
        obj.extract::<f64>()?
    } else if obj.is_instance(timedelta_type(obj.py())?.bind(obj.py()))? {
        let days: i64 = obj.getattr("days")?.extract()?;
        let seconds: i64 = obj.getattr("seconds")?.extract()?;
        let micros: i64 = obj.getattr("microseconds")?.extract()?;
        if days < 0 {
            return Err(PyValueError::new_err(format!(
                "{what} must not be negative, got {}",
                describe(obj)
            )));
        }
        let total = Duration::from_secs(days as u64 * 86_400 + seconds as u64)
            + Duration::from_micros(micros as u64);
        return Ok(total);
    } else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a datetime.timedelta or a number of seconds, got {}",
            type_name(obj)
        )));
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a finite, non-negative number of seconds, got {secs}"
        )));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| PyValueError::new_err(format!("{what} is out of range: {secs}")))
}

fn timedelta_type(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static TIMEDELTA: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    TIMEDELTA.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("datetime")?.getattr("timedelta")?.unbind())
    })
}

fn datetime_type(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static DATETIME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    DATETIME.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("datetime")?.getattr("datetime")?.unbind())
    })
}

/// `datetime(1970, 1, 1, tzinfo=timezone.utc)`.
fn epoch(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static EPOCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    EPOCH.get_or_try_init(py, || {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("tzinfo", utc)?;
        Ok::<_, PyErr>(
            dt.getattr("datetime")?
                .call((1970, 1, 1), Some(&kwargs))?
                .unbind(),
        )
    })
}

/// A timezone-aware UTC `datetime` for `nanos` since the Unix epoch (microsecond precision, like `datetime`).
pub fn datetime_from_nanos(py: Python<'_>, nanos: i64) -> PyResult<Py<PyAny>> {
    let delta = timedelta_type(py)?
        .bind(py)
        .call((0, 0, nanos.div_euclid(1000)), None)?;
    Ok(epoch(py)?.bind(py).add(delta)?.unbind())
}

/// A `datetime` for a `SystemTime`.
pub fn datetime_from_time(py: Python<'_>, t: SystemTime) -> PyResult<Py<PyAny>> {
    datetime_from_nanos(py, nanos_of(t))
}

/// Nanoseconds since the epoch of `t` (negative before it).
pub fn nanos_of(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Reads a point in time: a `datetime` (naive ones are local time, as `datetime.timestamp()` has it).
pub fn time_arg(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<SystemTime> {
    if !obj.is_instance(datetime_type(obj.py())?.bind(obj.py()))? {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a datetime.datetime, got {}",
            type_name(obj)
        )));
    }
    let secs: f64 = obj.call_method0("timestamp")?.extract()?;
    if secs < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must not be before 1970-01-01, got {}",
            describe(obj)
        )));
    }
    Ok(UNIX_EPOCH + Duration::from_secs_f64(secs))
}

/// Where a subscription starts: `StartPosition.NEW_ONLY` (default), `EARLIEST`, `LATEST`, or
/// `StartPosition.offset(n)`, `.timestamp(datetime)`, `.time_delta(timedelta)`.
#[pyclass(module = "liftbridge", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct StartPosition(pub liftbridge::StartPosition);

#[pymethods]
impl StartPosition {
    /// Only messages that arrive after subscribing.
    #[classattr]
    #[pyo3(name = "NEW_ONLY")]
    fn new_only() -> Self {
        StartPosition(liftbridge::StartPosition::NewOnly)
    }

    /// The oldest message still stored.
    #[classattr]
    #[pyo3(name = "EARLIEST")]
    fn earliest() -> Self {
        StartPosition(liftbridge::StartPosition::Earliest)
    }

    /// The newest message, then everything after it.
    #[classattr]
    #[pyo3(name = "LATEST")]
    fn latest() -> Self {
        StartPosition(liftbridge::StartPosition::Latest)
    }

    /// From this offset (the oldest stored one if it was removed by retention).
    #[staticmethod]
    fn offset(offset: &Bound<'_, PyAny>) -> PyResult<Self> {
        let o = int_arg("offset", offset)?;
        if o < 0 {
            return Err(PyValueError::new_err(format!(
                "start offset must not be negative, got {o}"
            )));
        }
        Ok(StartPosition(liftbridge::StartPosition::Offset(o)))
    }

    /// From the first message received at or after this time.
    #[staticmethod]
    fn timestamp(at: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(StartPosition(liftbridge::StartPosition::Timestamp(
            time_arg("timestamp", at)?,
        )))
    }

    /// From the first message received at or after `now - delta`.
    #[staticmethod]
    fn time_delta(delta: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(StartPosition(liftbridge::StartPosition::TimeDelta(
            duration_arg("time_delta", delta)?,
        )))
    }

    fn __repr__(&self) -> String {
        match self.0 {
            liftbridge::StartPosition::NewOnly => "StartPosition.NEW_ONLY".into(),
            liftbridge::StartPosition::Earliest => "StartPosition.EARLIEST".into(),
            liftbridge::StartPosition::Latest => "StartPosition.LATEST".into(),
            liftbridge::StartPosition::Offset(o) => format!("StartPosition.offset({o})"),
            liftbridge::StartPosition::Timestamp(t) => {
                format!("StartPosition.timestamp(<{} ns>)", nanos_of(t))
            }
            liftbridge::StartPosition::TimeDelta(d) => {
                format!("StartPosition.time_delta(<{} s>)", d.as_secs_f64())
            }
            _ => "StartPosition(?)".into(),
        }
    }
}

/// Where a subscription stops (the iteration then ends): `StopPosition.LATEST`, `StopPosition.offset(n)`,
/// `StopPosition.timestamp(datetime)`.
#[pyclass(module = "liftbridge", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct StopPosition(pub liftbridge::StopPosition);

#[pymethods]
impl StopPosition {
    /// After the newest message at subscribe time.
    #[classattr]
    #[pyo3(name = "LATEST")]
    fn latest() -> Self {
        StopPosition(liftbridge::StopPosition::Latest)
    }

    /// After this offset (inclusive).
    #[staticmethod]
    fn offset(offset: &Bound<'_, PyAny>) -> PyResult<Self> {
        let o = int_arg("offset", offset)?;
        if o < 0 {
            return Err(PyValueError::new_err(format!(
                "stop offset must not be negative, got {o}"
            )));
        }
        Ok(StopPosition(liftbridge::StopPosition::Offset(o)))
    }

    /// After the last message received at or before this time (not in the future).
    #[staticmethod]
    fn timestamp(at: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(StopPosition(liftbridge::StopPosition::Timestamp(time_arg(
            "timestamp",
            at,
        )?)))
    }

    fn __repr__(&self) -> String {
        match self.0 {
            liftbridge::StopPosition::Latest => "StopPosition.LATEST".into(),
            liftbridge::StopPosition::Offset(o) => format!("StopPosition.offset({o})"),
            liftbridge::StopPosition::Timestamp(t) => {
                format!("StopPosition.timestamp(<{} ns>)", nanos_of(t))
            }
            _ => "StopPosition(?)".into(),
        }
    }
}

/// TLS settings for `Client.connect(tls=...)`: trusted CAs (PEM text or file, and/or the system roots), an
/// optional client identity for mutual TLS, and the server name to verify.
#[pyclass(module = "liftbridge", frozen)]
#[derive(Debug, Clone)]
pub struct TlsOptions(pub liftbridge::TlsOptions);

#[pymethods]
impl TlsOptions {
    #[new]
    #[pyo3(signature = (*, ca_pem=None, ca_file=None, native_roots=None, client_cert_pem=None, client_key_pem=None, client_cert_file=None, client_key_file=None, server_name=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        ca_pem: Option<&Bound<'_, PyAny>>,
        ca_file: Option<PathBuf>,
        native_roots: Option<bool>,
        client_cert_pem: Option<&Bound<'_, PyAny>>,
        client_key_pem: Option<&Bound<'_, PyAny>>,
        client_cert_file: Option<PathBuf>,
        client_key_file: Option<PathBuf>,
        server_name: Option<String>,
    ) -> PyResult<Self> {
        let pem = |what: &str, o: &Bound<'_, PyAny>| -> PyResult<Vec<u8>> {
            if let Ok(s) = o.extract::<String>() {
                return Ok(s.into_bytes());
            }
            bytes_arg(what, o).map(|b| b.to_vec())
        };
        let mut tls = liftbridge::TlsOptions::new();
        if let Some(ca) = ca_pem {
            tls = tls.ca_pem(pem("ca_pem", ca)?);
        }
        if let Some(path) = ca_file {
            tls = tls.ca_file(path);
        }
        if let Some(native) = native_roots {
            tls = tls.native_roots(native);
        }
        match (client_cert_pem, client_key_pem) {
            (Some(c), Some(k)) => {
                tls = tls.client_identity_pem(pem("client_cert_pem", c)?, pem("client_key_pem", k)?)
            }
            (None, None) => {}
            _ => {
                return Err(PyValueError::new_err(
                    "mutual TLS needs both client_cert_pem and client_key_pem",
                ));
            }
        }
        match (client_cert_file, client_key_file) {
            (Some(c), Some(k)) => tls = tls.client_identity_files(c, k),
            (None, None) => {}
            _ => {
                return Err(PyValueError::new_err(
                    "mutual TLS needs both client_cert_file and client_key_file",
                ));
            }
        }
        if let Some(name) = server_name {
            tls = tls.server_name(name);
        }
        Ok(TlsOptions(tls))
    }
}
