//! The exception hierarchy: `LiftbridgeError` and one subclass per [`ErrorKind`], and the one place a client
//! [`Error`] becomes a Python exception.
//!
//! Every class carries `code` (the kind's stable string, as in the Rust client) and `retryable` as class
//! attributes; instances also get `grpc_code` (the gRPC status name, or `None`). The Rust error's cause chain
//! (transport errors) becomes the exception's `__cause__` chain.

use liftbridge::{Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;

create_exception!(
    liftbridge,
    LiftbridgeError,
    PyException,
    "Base class of every error the Liftbridge client raises; `code` is a stable string, `retryable` says \
     whether trying again later can succeed."
);

macro_rules! kinds {
    ($( $kind:ident => $class:ident : $doc:literal ),* $(,)?) => {
        $( create_exception!(liftbridge, $class, LiftbridgeError, $doc); )*

        /// The exception class of `kind`.
        fn class_of(py: Python<'_>, kind: ErrorKind) -> Bound<'_, pyo3::types::PyType> {
            match kind {
                $( ErrorKind::$kind => py.get_type::<$class>(), )*
                _ => py.get_type::<LiftbridgeError>(),
            }
        }

        /// Adds every exception class to the module, with its `code` and `retryable` class attributes.
        pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = m.py();
            let base = py.get_type::<LiftbridgeError>();
            base.setattr("code", ErrorKind::Unknown.code())?;
            base.setattr("retryable", false)?;
            m.add("LiftbridgeError", base)?;
            $(
                let class = py.get_type::<$class>();
                class.setattr("code", ErrorKind::$kind.code())?;
                class.setattr("retryable", ErrorKind::$kind.is_retryable())?;
                m.add(stringify!($class), class)?;
            )*
            Ok(())
        }
    };
}

kinds! {
    StreamExists => StreamExistsError: "A stream with this name exists already.",
    NoSuchStream => NoSuchStreamError: "The stream does not exist.",
    NoSuchPartition => NoSuchPartitionError: "The stream exists but not this partition.",
    StreamDeleted => StreamDeletedError: "The stream was deleted while subscribed to it.",
    NotLeader => NotLeaderError: "The server asked does not lead the partition (after retries).",
    Unavailable => UnavailableError: "No server could be reached, or it could not serve the request now.",
    Disconnected => DisconnectedError: "The connection broke with the request in flight: it may or may not have been applied.",
    Timeout => RequestTimeoutError: "The request did not complete within its deadline.",
    AckTimeout => AckTimeoutError: "No ack arrived within the ack timeout; the message may still have been written.",
    IncorrectOffset => IncorrectOffsetError: "Optimistic concurrency control: the expected offset did not match; nothing was written.",
    TooLarge => MessageTooLargeError: "The message is larger than the server (or the client's send limit) accepts.",
    Readonly => ReadonlyPartitionError: "The partition is readonly and refuses publishes.",
    EndOfReadonlyPartition => EndOfReadonlyPartitionError: "A subscription read every message of a readonly partition.",
    Paused => PartitionPausedError: "The partition is (or was, mid-subscription) paused.",
    PermissionDenied => PermissionDeniedError: "The server refused the request for lack of permission.",
    Encryption => EncryptionError: "The server could not encrypt the message.",
    InvalidArgument => InvalidArgumentError: "The server refused the request as invalid.",
    Unimplemented => UnimplementedError: "The server does not implement this RPC or option.",
    Internal => InternalServerError: "The server failed.",
    Closed => ClientClosedError: "The client was closed.",
    Config => ConfigError: "The client configuration is invalid (address, option value).",
    Tls => TlsError: "The TLS configuration is invalid (PEM, certificate, key).",
    Protocol => ProtocolError: "The server sent something this client does not understand.",
    Cancelled => RequestCancelledError: "The request was cancelled.",
}

/// Converts a client error into the exception of its kind, with `grpc_code` set and its causes chained.
pub fn to_py_in(py: Python<'_>, err: &Error) -> PyErr {
    let class = class_of(py, err.kind());
    let py_err = PyErr::from_type(class, err.to_string());
    let value = py_err.value(py);
    let grpc = err.grpc_code().map(|c| format!("{c:?}"));
    let _ = value.setattr("grpc_code", grpc);
    // The cause chain, innermost last: each becomes the __cause__ of the one before.
    // A cause whose text the outer message already quotes adds nothing and is skipped.
    let mut causes: Vec<String> = Vec::new();
    let mut outer = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let text = s.to_string();
        if !outer.contains(&text) {
            causes.push(text.clone());
        }
        outer = text;
        source = s.source();
    }
    let mut cause: Option<PyErr> = None;
    for text in causes.into_iter().rev() {
        let e = PyRuntimeError::new_err(text);
        if let Some(inner) = cause.take() {
            e.set_cause(py, Some(inner));
        }
        cause = Some(e);
    }
    if let Some(c) = cause {
        py_err.set_cause(py, Some(c));
    }
    py_err
}
