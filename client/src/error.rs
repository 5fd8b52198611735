//! The one error type of the crate, and the one place where gRPC statuses, `PublishAsyncError`s and ack errors
//! become [`ErrorKind`]s.
//!
//! Liftbridge reports most conditions through a gRPC code whose meaning depends on the RPC (a `NotFound` from
//! `DeleteStream` is "no such stream", mid-subscription it is "the stream was deleted"), so every mapping takes
//! the [`Op`] it happened in. Messages are written for the person reading a log: what failed, and what to do.

use std::fmt;
use std::sync::Arc;

use liftbridge_proto::pb;
use tonic::{Code, Status};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, for matching. New kinds may be added in minor releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `create_stream`: a stream with this name exists already.
    StreamExists,
    /// The stream does not exist.
    NoSuchStream,
    /// The stream exists but not this partition.
    NoSuchPartition,
    /// The stream was deleted while subscribed to it.
    StreamDeleted,
    /// The server asked is not the partition's leader (the client refreshes its metadata and retries first).
    NotLeader,
    /// No server could be reached, or the server could not serve the request right now.
    Unavailable,
    /// The connection (or the `PublishAsync` stream) broke with the request in flight: it may or may not have
    /// been applied.
    Disconnected,
    /// The request did not complete within its deadline.
    Timeout,
    /// No ack arrived within the ack timeout. The message may still have been written.
    AckTimeout,
    /// Optimistic concurrency control: the expected offset did not match; the message was not written.
    IncorrectOffset,
    /// The message is larger than the server accepts.
    TooLarge,
    /// The partition is readonly and refuses publishes.
    Readonly,
    /// A subscription read every message of a readonly partition: no more will ever come.
    EndOfReadonlyPartition,
    /// The partition is (or was, mid-subscription) paused.
    Paused,
    /// The server refused the request for lack of permission.
    PermissionDenied,
    /// The server could not encrypt the message.
    Encryption,
    /// The request was invalid (bad name, bad option, stop position in the future...).
    InvalidArgument,
    /// The server does not implement this RPC or option.
    Unimplemented,
    /// The server failed.
    Internal,
    /// The client was closed.
    Closed,
    /// The client configuration is invalid (address, option value).
    Config,
    /// The TLS configuration is invalid (PEM, certificate, key).
    Tls,
    /// The server sent something this client does not understand.
    Protocol,
    /// The request was cancelled.
    Cancelled,
    /// Anything else the server reported.
    Unknown,
}

impl ErrorKind {
    /// A stable `snake_case` code for this kind, for logs, metrics and language bindings.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::StreamExists => "stream_exists",
            ErrorKind::NoSuchStream => "no_such_stream",
            ErrorKind::NoSuchPartition => "no_such_partition",
            ErrorKind::StreamDeleted => "stream_deleted",
            ErrorKind::NotLeader => "not_leader",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::Timeout => "timeout",
            ErrorKind::AckTimeout => "ack_timeout",
            ErrorKind::IncorrectOffset => "incorrect_offset",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Readonly => "readonly",
            ErrorKind::EndOfReadonlyPartition => "end_of_readonly_partition",
            ErrorKind::Paused => "paused",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Encryption => "encryption",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unimplemented => "unimplemented",
            ErrorKind::Internal => "internal",
            ErrorKind::Closed => "closed",
            ErrorKind::Config => "config",
            ErrorKind::Tls => "tls",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unknown => "unknown",
        }
    }

    /// Whether trying again later can succeed. See [`Error::is_retryable`].
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable
                | ErrorKind::Disconnected
                | ErrorKind::Timeout
                | ErrorKind::AckTimeout
                | ErrorKind::NotLeader
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The error of every fallible operation in this crate.
///
/// Match on [`kind`](Error::kind); the [`Display`](fmt::Display) text says what failed and what to do, and
/// [`source`](std::error::Error::source) keeps the underlying transport error when there is one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// The gRPC code the server answered with, when the error came from a status.
    code: Option<Code>,
    #[source]
    source: Option<Source>,
    /// The request surely never left this process (the connection could not be established), so resending it
    /// cannot duplicate it. Lets the client retry publishes safely.
    not_sent: bool,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            code: None,
            source: None,
            not_sent: false,
        }
    }

    /// Attaches the underlying cause.
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The gRPC status code the server answered with, if the error came from one.
    pub fn grpc_code(&self) -> Option<Code> {
        self.code
    }

    /// Whether trying the same operation again later can succeed: the server was unreachable or busy, a
    /// connection broke, a deadline passed, or the leader moved.
    ///
    /// For publishes this means "a retry can succeed", not "a retry cannot duplicate": after
    /// [`Disconnected`](ErrorKind::Disconnected) or [`AckTimeout`](ErrorKind::AckTimeout) the message may
    /// already be written. Streams with optimistic concurrency control turn such duplicates into
    /// [`IncorrectOffset`](ErrorKind::IncorrectOffset) when the retry carries the same expected offset.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Marks the request as surely never sent (safe to resend).
    pub(crate) fn mark_not_sent(&mut self) {
        self.not_sent = true;
    }

    /// True when the request surely never reached a server.
    pub(crate) fn not_sent(&self) -> bool {
        self.not_sent
    }

    pub(crate) fn closed() -> Error {
        Error::new(
            ErrorKind::Closed,
            "the client was closed; build a new one with Client::builder",
        )
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn disconnected(what: &str) -> Error {
        Error::new(
            ErrorKind::Disconnected,
            format!(
                "{what}: the connection to the server broke before the answer came; the request may or may not \
                 have been applied (retry; for publishes use an expected offset to avoid duplicates)"
            ),
        )
    }

    pub(crate) fn timeout(what: &str, after: std::time::Duration) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "{what}: no answer within {after:?} (the server may be overloaded or unreachable; retry or raise \
                 the request timeout)"
            ),
        )
    }
}

/// The operation an error happened in: the same gRPC code means different things in different RPCs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    /// `FetchMetadata` (the only RPC any server answers alike).
    Metadata,
    /// `FetchPartitionMetadata` on a partition leader.
    PartitionMetadata { stream: &'a str, partition: i32 },
    /// `CreateStream`.
    CreateStream { stream: &'a str },
    /// `DeleteStream`.
    DeleteStream { stream: &'a str },
    /// `PauseStream` or `SetStreamReadonly`.
    AlterStream { stream: &'a str, what: &'a str },
    /// Opening a subscription (before the handshake).
    Subscribe { stream: &'a str, partition: i32 },
    /// A subscription that was running.
    Subscription { stream: &'a str, partition: i32 },
    /// A publish (`PublishAsync` stream or unary).
    Publish { stream: &'a str },
    /// `PublishToSubject`.
    PublishToSubject { subject: &'a str },
}

impl fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Metadata => f.write_str("fetching metadata"),
            Op::PartitionMetadata { stream, partition } => {
                write!(f, "fetching metadata of partition {stream}/{partition}")
            }
            Op::CreateStream { stream } => write!(f, "creating stream {stream:?}"),
            Op::DeleteStream { stream } => write!(f, "deleting stream {stream:?}"),
            Op::AlterStream { stream, what } => write!(f, "{what} stream {stream:?}"),
            Op::Subscribe { stream, partition } => {
                write!(f, "subscribing to {stream}/{partition}")
            }
            Op::Subscription { stream, partition } => {
                write!(f, "subscription to {stream}/{partition}")
            }
            Op::Publish { stream } => write!(f, "publishing to stream {stream:?}"),
            Op::PublishToSubject { subject } => write!(f, "publishing to subject {subject:?}"),
        }
    }
}

/// True when `status` comes from failing to establish the connection: nothing was sent.
fn is_connect_error(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Maps a gRPC status from `op` to an [`Error`].
pub(crate) fn from_status(status: Status, op: Op<'_>) -> Error {
    let code = status.code();
    let server = status.message().to_string();
    let not_sent = code == Code::Unavailable && is_connect_error(&status);
    let lower = server.to_ascii_lowercase();
    let (kind, hint): (ErrorKind, &str) = match (code, op) {
        (Code::AlreadyExists, _) => (
            ErrorKind::StreamExists,
            "pick another name, delete the stream first, or use create_stream_if_not_exists",
        ),
        (Code::NotFound, Op::Subscription { .. }) => (
            ErrorKind::StreamDeleted,
            "the stream was deleted while subscribed",
        ),
        (Code::NotFound, _) if lower.contains("partition") => (
            ErrorKind::NoSuchPartition,
            "check the partition number against the stream's partition count",
        ),
        (Code::NotFound, _) => (
            ErrorKind::NoSuchStream,
            "create the stream first (create_stream), or check its name",
        ),
        (Code::FailedPrecondition, Op::Subscription { .. }) => (
            ErrorKind::Paused,
            "the partition was paused; subscribe again with resume(true) to resume it",
        ),
        (Code::FailedPrecondition, _) if lower.contains("incorrect_offset") => (
            ErrorKind::IncorrectOffset,
            "the expected offset did not match the partition's next offset; the message was not written \
             (fetch the partition's newest offset and retry)",
        ),
        (Code::FailedPrecondition, _) if lower.contains("paused") => (
            ErrorKind::Paused,
            "the partition is paused; subscribe with resume(true) or publish to it to resume it",
        ),
        (Code::FailedPrecondition, _) if lower.contains("readonly") => (
            ErrorKind::Readonly,
            "the partition is readonly; clear the flag with set_stream_readonly(.., false)",
        ),
        (Code::FailedPrecondition, Op::Publish { .. } | Op::PublishToSubject { .. }) => (
            ErrorKind::Readonly,
            "the partition refused the message (Liftbridge uses this code for readonly partitions)",
        ),
        (Code::FailedPrecondition, _) if lower.contains("leader") => (
            ErrorKind::NotLeader,
            "the partition's leader moved; the client refreshes its metadata and retries",
        ),
        (Code::FailedPrecondition, _) => {
            (ErrorKind::InvalidArgument, "the request does not apply now")
        }
        (Code::ResourceExhausted, Op::Subscribe { .. } | Op::Subscription { .. })
            if lower.contains("readonly") =>
        {
            (
                ErrorKind::EndOfReadonlyPartition,
                "every message of the readonly partition was read",
            )
        }
        (Code::ResourceExhausted, Op::Publish { .. } | Op::PublishToSubject { .. }) => (
            ErrorKind::TooLarge,
            "the message exceeds the gRPC message size limit; send smaller messages or raise the limits",
        ),
        (Code::ResourceExhausted, _) => (ErrorKind::Unavailable, "the server is out of a resource"),
        (Code::InvalidArgument, _)
            if lower.contains("too_large") || lower.contains("too large") =>
        {
            (
                ErrorKind::TooLarge,
                "the message exceeds the server's limit (clustering.replication.max.bytes); send smaller messages",
            )
        }
        (Code::InvalidArgument, _) | (Code::OutOfRange, _) => {
            (ErrorKind::InvalidArgument, "fix the request")
        }
        (Code::Unavailable, _) => (
            ErrorKind::Unavailable,
            "no server answered; check that the servers run and are reachable (retried with backoff first)",
        ),
        (Code::DeadlineExceeded, _) => (
            ErrorKind::Timeout,
            "the deadline passed; the server may be overloaded, retry or raise the timeout",
        ),
        (Code::Cancelled, _) => (ErrorKind::Cancelled, "the request was cancelled"),
        (Code::PermissionDenied | Code::Unauthenticated, _) => (
            ErrorKind::PermissionDenied,
            "the server refused this identity; check the client certificate and the server's ACLs",
        ),
        (Code::Unimplemented, _) => (
            ErrorKind::Unimplemented,
            "the server does not support this yet",
        ),
        (Code::Internal | Code::DataLoss, _) => (ErrorKind::Internal, "see the server log"),
        (Code::Aborted, _) => (
            ErrorKind::Unavailable,
            "the server aborted the request; retry",
        ),
        (Code::Unknown, Op::Publish { .. }) if lower.contains("permission") => (
            ErrorKind::PermissionDenied,
            "the server refused this identity; check the server's ACLs",
        ),
        (Code::Unknown, _) | (Code::Ok, _) => (ErrorKind::Unknown, "see the server log"),
    };
    let message = if server.is_empty() {
        format!("{op}: {hint} ({code:?})")
    } else {
        format!("{op}: {hint} (server: {server})")
    };
    Error {
        kind,
        message,
        code: Some(code),
        source: Some(Arc::new(status)),
        not_sent,
    }
}

/// Maps a `PublishAsyncError` (a refused publish) to an [`Error`]; `ack_error` is the ack's own error code when
/// the response carried one (it is more precise: TOO_LARGE arrives as BAD_REQUEST otherwise).
pub(crate) fn from_async_error(
    err: &pb::PublishAsyncError,
    ack_error: Option<pb::ack::Error>,
    stream: &str,
) -> Error {
    use pb::publish_async_error::Code as C;
    if let Some(e) = ack_error.filter(|e| *e != pb::ack::Error::Ok) {
        let mut out = from_ack_error(e, stream);
        if !err.message.is_empty() {
            out.message = format!("{} (server: {})", out.message, err.message);
        }
        return out;
    }
    let lower = err.message.to_ascii_lowercase();
    let (kind, hint) = match C::try_from(err.code).unwrap_or(C::Unknown) {
        C::BadRequest if lower.contains("too_large") || lower.contains("too large") => (
            ErrorKind::TooLarge,
            "the message exceeds the server's limit; send smaller messages",
        ),
        C::BadRequest => (ErrorKind::InvalidArgument, "fix the request"),
        C::NotFound if lower.contains("partition") => (
            ErrorKind::NoSuchPartition,
            "check the partition number against the stream's partition count",
        ),
        C::NotFound => (
            ErrorKind::NoSuchStream,
            "create the stream first (create_stream), or check its name",
        ),
        C::Internal => (ErrorKind::Internal, "see the server log"),
        C::Readonly => (
            ErrorKind::Readonly,
            "the partition is readonly; clear the flag with set_stream_readonly(.., false)",
        ),
        C::IncorrectOffset => (
            ErrorKind::IncorrectOffset,
            "the expected offset did not match; the message was not written",
        ),
        C::EncryptionFailed => (
            ErrorKind::Encryption,
            "the server could not encrypt the message",
        ),
        C::PermissionDenied => (
            ErrorKind::PermissionDenied,
            "the server refused this identity; check the server's ACLs",
        ),
        C::Unknown => (ErrorKind::Unknown, "see the server log"),
    };
    let message = if err.message.is_empty() {
        format!("{}: {hint}", publishing(stream))
    } else {
        format!("{}: {hint} (server: {})", publishing(stream), err.message)
    };
    Error::new(kind, message)
}

/// Maps an ack's error code (non-OK) to an [`Error`].
pub(crate) fn from_ack_error(err: pb::ack::Error, stream: &str) -> Error {
    use pb::ack::Error as A;
    let (kind, hint) = match err {
        A::Ok => (ErrorKind::Unknown, "no error"),
        A::IncorrectOffset => (
            ErrorKind::IncorrectOffset,
            "the expected offset did not match the partition's next offset; the message was not written \
             (fetch the newest offset and retry)",
        ),
        A::TooLarge => (
            ErrorKind::TooLarge,
            "the message exceeds the server's limit; send smaller messages",
        ),
        A::Encryption => (
            ErrorKind::Encryption,
            "the server could not encrypt the message",
        ),
        A::Unknown => (
            ErrorKind::Unknown,
            "the partition leader refused the message",
        ),
    };
    Error::new(kind, format!("{}: {hint}", publishing(stream)))
}

/// "publishing to stream X", or just "publishing" when the stream is not known.
fn publishing(stream: &str) -> String {
    if stream.is_empty() {
        "publishing".to_string()
    } else {
        format!("publishing to stream {stream:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping_depends_on_the_operation() {
        let nf = || Status::not_found("No such stream: s");
        assert_eq!(
            from_status(nf(), Op::DeleteStream { stream: "s" }).kind(),
            ErrorKind::NoSuchStream
        );
        assert_eq!(
            from_status(
                nf(),
                Op::Subscription {
                    stream: "s",
                    partition: 0
                }
            )
            .kind(),
            ErrorKind::StreamDeleted
        );
        assert_eq!(
            from_status(
                Status::not_found("No such partition: s/3"),
                Op::Publish { stream: "s" }
            )
            .kind(),
            ErrorKind::NoSuchPartition
        );
        assert_eq!(
            from_status(
                Status::failed_precondition("Server not partition leader"),
                Op::Subscribe {
                    stream: "s",
                    partition: 0
                }
            )
            .kind(),
            ErrorKind::NotLeader
        );
        assert_eq!(
            from_status(
                Status::failed_precondition(
                    "Partition s/0 is paused (subscribe with resume to resume it)"
                ),
                Op::Subscribe {
                    stream: "s",
                    partition: 0
                }
            )
            .kind(),
            ErrorKind::Paused
        );
        assert_eq!(
            from_status(
                Status::failed_precondition("incorrect expected offset (INCORRECT_OFFSET)"),
                Op::Publish { stream: "s" }
            )
            .kind(),
            ErrorKind::IncorrectOffset
        );
        assert_eq!(
            from_status(
                Status::resource_exhausted("End of readonly partition"),
                Op::Subscription {
                    stream: "s",
                    partition: 0
                }
            )
            .kind(),
            ErrorKind::EndOfReadonlyPartition
        );
        let e = from_status(
            Status::already_exists("exists"),
            Op::CreateStream { stream: "s" },
        );
        assert_eq!(e.kind(), ErrorKind::StreamExists);
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("create_stream_if_not_exists"));
        let e = from_status(Status::unavailable("down"), Op::Metadata);
        assert!(e.is_retryable());
        assert!(!e.not_sent());
    }

    #[test]
    fn async_errors_prefer_the_ack_code() {
        let err = pb::PublishAsyncError {
            code: pb::publish_async_error::Code::BadRequest as i32,
            message: "message is too large (TOO_LARGE)".into(),
        };
        assert_eq!(
            from_async_error(&err, Some(pb::ack::Error::TooLarge), "s").kind(),
            ErrorKind::TooLarge
        );
        assert_eq!(
            from_async_error(&err, None, "s").kind(),
            ErrorKind::TooLarge
        );
        let err = pb::PublishAsyncError {
            code: pb::publish_async_error::Code::Readonly as i32,
            message: String::new(),
        };
        assert_eq!(
            from_async_error(&err, None, "s").kind(),
            ErrorKind::Readonly
        );
        assert_eq!(
            from_ack_error(pb::ack::Error::IncorrectOffset, "s").kind(),
            ErrorKind::IncorrectOffset
        );
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(ErrorKind::AckTimeout.code(), "ack_timeout");
        assert_eq!(ErrorKind::NoSuchStream.to_string(), "no_such_stream");
    }
}
