//! Typed options: client defaults, the retry policy, stream creation and subscription options.
//!
//! Every default is a `DEFAULT_*` constant here, so the documentation, the bindings and the code agree.

use std::time::{Duration, SystemTime};

use liftbridge_proto::pb;

use crate::error::{Error, Result};

/// How long connecting to one server may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of every RPC that has no more specific one (admin, metadata, subscribe setup), retries included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a published message waits for its ack (go-liftbridge's `AckWaitTime`).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the metadata cache is refreshed in the background.
pub const DEFAULT_METADATA_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Most messages awaiting their ack at once, per client.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// HTTP/2 keepalive ping interval (also while idle), to find dead peers.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keepalive ping may go unanswered before the connection is dropped.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a subscription keeps trying to resubscribe after its stream broke (go-liftbridge's
/// `ResubscribeWaitTime`).
pub const DEFAULT_RESUBSCRIBE_WINDOW: Duration = Duration::from_secs(30);
/// Messages a subscription buffers ahead of its consumer.
pub const DEFAULT_PREFETCH: usize = 1024;
/// Largest gRPC message the client accepts (a subscription batch never exceeds one message, so this bounds the
/// largest message that can be read).
pub const DEFAULT_MAX_RECV_MESSAGE_SIZE: usize = 16 << 20;
/// Largest gRPC message the client sends (servers keep gRPC's default receive limit of 4 MiB).
pub const DEFAULT_MAX_SEND_MESSAGE_SIZE: usize = 4 << 20;
/// How long [`Client::close`](crate::Client::close) waits for in-flight acks.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Retries with exponential backoff and full jitter, always bounded by the operation's deadline.
///
/// Attempt `n` (from 0) waits a random duration in `[0, min(max_delay, base_delay × 2ⁿ)]` before the next
/// attempt ("full jitter", which spreads retrying clients apart). Only operations that are safe to repeat are
/// retried: reads and metadata on any retryable error, not-leader answers after a metadata refresh, and writes
/// only when the request surely never reached a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Upper bound of the first backoff.
    pub base_delay: Duration,
    /// Upper bound of any backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 10 attempts, 50 ms base, doubling, capped at 2 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The backoff before attempt `attempt + 1`, jittered.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
        let cap = exp.min(self.max_delay);
        jitter(cap)
    }
}

/// A uniformly random duration in `[0, cap]`.
pub(crate) fn jitter(cap: Duration) -> Duration {
    use rand::Rng;
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// When the server acknowledges a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AckPolicy {
    /// Once the partition leader has stored it (the default).
    #[default]
    Leader,
    /// Once every in-sync replica has stored it.
    All,
    /// Never: the publish completes once the message is handed to the connection.
    None,
}

impl AckPolicy {
    pub(crate) fn to_proto(self) -> pb::AckPolicy {
        match self {
            AckPolicy::Leader => pb::AckPolicy::Leader,
            AckPolicy::All => pb::AckPolicy::All,
            AckPolicy::None => pb::AckPolicy::None,
        }
    }

    pub(crate) fn from_proto(value: i32) -> AckPolicy {
        match pb::AckPolicy::try_from(value) {
            Ok(pb::AckPolicy::All) => AckPolicy::All,
            Ok(pb::AckPolicy::None) => AckPolicy::None,
            _ => AckPolicy::Leader,
        }
    }
}

/// Options of a new stream. Every option left unset is sent as "absent", so the server's default applies.
///
/// ```
/// use std::time::Duration;
/// use liftbridge::StreamOptions;
///
/// let opts = StreamOptions::new("orders.*", "orders")
///     .partitions(3)
///     .retention_max_age(Duration::from_secs(24 * 3600))
///     .compact_enabled(true);
/// assert_eq!(opts.name(), "orders");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamOptions {
    req: pb::CreateStreamRequest,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn nullable64(v: i64) -> Option<pb::NullableInt64> {
    Some(pb::NullableInt64 { value: v })
}

fn nullable_bool(v: bool) -> Option<pb::NullableBool> {
    Some(pb::NullableBool { value: v })
}

impl StreamOptions {
    /// A stream named `name` that records the NATS subject `subject` (the order of go-liftbridge's
    /// `CreateStream(ctx, subject, name)`).
    pub fn new(subject: impl Into<String>, name: impl Into<String>) -> Self {
        StreamOptions {
            req: pb::CreateStreamRequest {
                subject: subject.into(),
                name: name.into(),
                ..Default::default()
            },
        }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.req.name
    }

    /// The NATS subject the stream records.
    pub fn subject(&self) -> &str {
        &self.req.subject
    }

    /// Joins the NATS queue group `group`, so several streams on one subject share its messages.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.req.group = group.into();
        self
    }

    /// Replicas per partition; `-1` means every server. Server default: 1.
    pub fn replication_factor(mut self, n: i32) -> Self {
        self.req.replication_factor = n;
        self
    }

    /// Replicates on every server of the cluster (replication factor -1).
    pub fn max_replication(self) -> Self {
        self.replication_factor(-1)
    }

    /// Number of partitions. Server default: 1.
    pub fn partitions(mut self, n: u32) -> Self {
        self.req.partitions = i32::try_from(n).unwrap_or(i32::MAX);
        self
    }

    /// Bytes kept per partition before old segments are deleted.
    pub fn retention_max_bytes(mut self, bytes: i64) -> Self {
        self.req.retention_max_bytes = nullable64(bytes);
        self
    }

    /// Messages kept per partition before old segments are deleted.
    pub fn retention_max_messages(mut self, messages: i64) -> Self {
        self.req.retention_max_messages = nullable64(messages);
        self
    }

    /// Age after which segments are deleted.
    pub fn retention_max_age(mut self, age: Duration) -> Self {
        self.req.retention_max_age = nullable64(ms(age));
        self
    }

    /// How often retention and compaction run.
    pub fn cleaner_interval(mut self, interval: Duration) -> Self {
        self.req.cleaner_interval = nullable64(ms(interval));
        self
    }

    /// Size at which a segment is rolled.
    pub fn segment_max_bytes(mut self, bytes: i64) -> Self {
        self.req.segment_max_bytes = nullable64(bytes);
        self
    }

    /// Age at which a segment is rolled.
    pub fn segment_max_age(mut self, age: Duration) -> Self {
        self.req.segment_max_age = nullable64(ms(age));
        self
    }

    /// Enables or disables compaction (keep the newest message per key).
    pub fn compact_enabled(mut self, enabled: bool) -> Self {
        self.req.compact_enabled = nullable_bool(enabled);
        self
    }

    /// Parallelism of compaction (only meaningful with compaction enabled).
    pub fn compact_max_goroutines(mut self, n: i32) -> Self {
        self.req.compact_max_goroutines = Some(pb::NullableInt32 { value: n });
        self
    }

    /// Pauses a partition after this long without messages (zero disables auto-pause).
    pub fn auto_pause_time(mut self, idle: Duration) -> Self {
        self.req.auto_pause_time = nullable64(ms(idle));
        self
    }

    /// Never auto-pause a partition while it has subscribers.
    pub fn auto_pause_disable_if_subscribers(mut self, disable: bool) -> Self {
        self.req.auto_pause_disable_if_subscribers = nullable_bool(disable);
        self
    }

    /// Replicas that must be in sync for a write to be accepted.
    pub fn min_isr(mut self, n: i32) -> Self {
        self.req.min_isr = Some(pb::NullableInt32 { value: n });
        self
    }

    /// Optimistic concurrency control: publishes must name the offset they expect to be written at
    /// ([`Message::expected_offset`](crate::Message::expected_offset)), and AckPolicy NONE is refused.
    pub fn optimistic_concurrency_control(mut self, enabled: bool) -> Self {
        self.req.optimistic_concurrency_control = nullable_bool(enabled);
        self
    }

    /// Encryption of stored data at rest.
    pub fn encryption(mut self, enabled: bool) -> Self {
        self.req.encryption = nullable_bool(enabled);
        self
    }

    /// Checks what the client can check before asking the server.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.req.name.trim().is_empty() {
            return Err(Error::invalid("a stream needs a name"));
        }
        if self.req.subject.trim().is_empty() {
            return Err(Error::invalid(format!(
                "stream {:?} needs a NATS subject to record",
                self.req.name
            )));
        }
        if self.req.replication_factor < -1 {
            return Err(Error::invalid(format!(
                "replication factor must be -1 (all servers) or positive, got {}",
                self.req.replication_factor
            )));
        }
        if self.req.compact_max_goroutines.is_some()
            && self.req.compact_enabled.as_ref().is_some_and(|c| !c.value)
        {
            tracing::warn!(
                stream = self.req.name,
                "compact_max_goroutines is set but compaction is disabled"
            );
        }
        Ok(())
    }

    pub(crate) fn to_request(&self) -> pb::CreateStreamRequest {
        self.req.clone()
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartPosition {
    /// Only messages that arrive after subscribing (the default).
    #[default]
    NewOnly,
    /// The oldest message still stored.
    Earliest,
    /// The newest message (then everything after it).
    Latest,
    /// This offset (the oldest stored one if it was removed by retention).
    Offset(i64),
    /// The first message received at or after this time.
    Timestamp(SystemTime),
    /// The first message received at or after `now − delta` (computed when subscribing).
    TimeDelta(Duration),
}

/// Where a subscription stops. Reaching it ends the subscription's stream cleanly (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopPosition {
    /// After this offset (inclusive).
    Offset(i64),
    /// After the newest message at subscribe time.
    Latest,
    /// After the last message received at or before this time (must not be in the future).
    Timestamp(SystemTime),
}

/// Options of a subscription.
///
/// ```
/// use liftbridge::{StartPosition, StopPosition, SubscribeOptions};
///
/// let opts = SubscribeOptions::new()
///     .partition(2)
///     .start_at(StartPosition::Earliest)
///     .stop_at(StopPosition::Latest);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeOptions {
    pub(crate) partition: i32,
    pub(crate) start: StartPosition,
    pub(crate) stop: Option<StopPosition>,
    pub(crate) reverse: bool,
    pub(crate) read_isr_replica: bool,
    pub(crate) resume: bool,
    pub(crate) prefetch: Option<usize>,
    pub(crate) resubscribe: bool,
}

impl SubscribeOptions {
    /// Fixes a [`StartPosition::TimeDelta`] to the timestamp it means now, once per subscription, so that a
    /// resubscribe (or each partition of a merged subscription) starts from the same point instead of skipping
    /// what arrived meanwhile.
    pub(crate) fn with_fixed_start(mut self) -> Self {
        if let StartPosition::TimeDelta(d) = self.start {
            let at = SystemTime::now()
                .checked_sub(d)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            self.start = StartPosition::Timestamp(at);
        }
        self
    }

    /// Partition 0, new messages only, no stop, resubscribing after failures.
    pub fn new() -> Self {
        SubscribeOptions {
            resubscribe: true,
            ..Default::default()
        }
    }

    /// The partition to read (ignored by [`Client::subscribe_all`](crate::Client::subscribe_all)).
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = partition;
        self
    }

    /// Where to start.
    pub fn start_at(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Where to stop; the stream then ends with `None`.
    ///
    /// A resubscription (after a failure) keeps the stop position. [`StopPosition::Latest`] is then evaluated
    /// again by the server, so it may include messages published during the outage; use
    /// [`StopPosition::Offset`] for an exact end.
    pub fn stop_at(mut self, stop: StopPosition) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Reads from newest to oldest (Liftbridge API v2 servers only). The start position is where reading
    /// starts going backwards (default: the newest message) and a stop offset is the lowest offset read.
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }

    /// Reads from any in-sync replica instead of the leader (spreads read load; may lag the leader slightly).
    pub fn read_isr_replica(mut self, enabled: bool) -> Self {
        self.read_isr_replica = enabled;
        self
    }

    /// Resumes the partition if it is paused (otherwise subscribing to a paused partition fails with
    /// [`ErrorKind::Paused`](crate::ErrorKind::Paused)).
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Messages buffered ahead of the consumer (default: the client's prefetch, [`DEFAULT_PREFETCH`]).
    /// A full buffer stops reading from the server, so a slow consumer slows the server stream down instead of
    /// growing memory.
    pub fn prefetch(mut self, messages: usize) -> Self {
        self.prefetch = Some(messages.max(1));
        self
    }

    /// Whether to resubscribe automatically (from the last offset + 1) when the stream breaks or the leader
    /// moves. On by default; the client's resubscribe window bounds how long it tries.
    ///
    /// A subscription that breaks before delivering any message resubscribes with its original start
    /// position; with [`StartPosition::NewOnly`] messages published during the outage are then not read
    /// (start at an offset, a timestamp or the earliest message where that matters).
    pub fn auto_resubscribe(mut self, enabled: bool) -> Self {
        self.resubscribe = enabled;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.partition < 0 {
            return Err(Error::invalid(format!(
                "partition must not be negative, got {}",
                self.partition
            )));
        }
        if let StartPosition::Offset(o) = self.start
            && o < 0
        {
            return Err(Error::invalid(format!(
                "start offset must not be negative, got {o}"
            )));
        }
        match self.stop {
            Some(StopPosition::Offset(o)) if o < 0 => Err(Error::invalid(format!(
                "stop offset must not be negative, got {o}"
            ))),
            Some(StopPosition::Timestamp(t)) if t > SystemTime::now() => Err(Error::invalid(
                "the stop timestamp is in the future: a subscription can only stop at a time that has passed",
            )),
            _ => Ok(()),
        }
    }

    /// The request for the first subscription, or for a resubscription after `last` was delivered.
    pub(crate) fn to_request(
        &self,
        stream: &str,
        partition: i32,
        last: Option<i64>,
    ) -> pb::SubscribeRequest {
        let mut req = pb::SubscribeRequest {
            stream: stream.to_string(),
            partition,
            read_isr_replica: self.read_isr_replica,
            resume: self.resume,
            reverse: self.reverse,
            ..Default::default()
        };
        match last {
            Some(last) => {
                req.start_position = pb::StartPosition::Offset as i32;
                req.start_offset = if self.reverse { last - 1 } else { last + 1 };
            }
            None => match self.start {
                StartPosition::NewOnly => req.start_position = pb::StartPosition::NewOnly as i32,
                StartPosition::Earliest => req.start_position = pb::StartPosition::Earliest as i32,
                StartPosition::Latest => req.start_position = pb::StartPosition::Latest as i32,
                StartPosition::Offset(o) => {
                    req.start_position = pb::StartPosition::Offset as i32;
                    req.start_offset = o;
                }
                StartPosition::Timestamp(t) => {
                    req.start_position = pb::StartPosition::Timestamp as i32;
                    req.start_timestamp = unix_nanos(t);
                }
                StartPosition::TimeDelta(d) => {
                    req.start_position = pb::StartPosition::Timestamp as i32;
                    req.start_timestamp = unix_nanos(
                        SystemTime::now()
                            .checked_sub(d)
                            .unwrap_or(SystemTime::UNIX_EPOCH),
                    );
                }
            },
        }
        match self.stop {
            None => {}
            Some(StopPosition::Offset(o)) => {
                req.stop_position = pb::StopPosition::StopOffset as i32;
                req.stop_offset = o;
            }
            Some(StopPosition::Latest) => req.stop_position = pb::StopPosition::StopLatest as i32,
            Some(StopPosition::Timestamp(t)) => {
                req.stop_position = pb::StopPosition::StopTimestamp as i32;
                req.stop_timestamp = unix_nanos(t);
            }
        }
        req
    }
}

/// Nanoseconds since the Unix epoch (0 before it, saturating far after it).
pub(crate) fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            assert!(p.backoff(attempt) <= p.max_delay);
        }
        assert!(p.backoff(0) <= p.base_delay);
    }

    #[test]
    fn unset_stream_options_are_absent() {
        let req = StreamOptions::new("s", "n").to_request();
        assert!(req.retention_max_age.is_none());
        assert!(req.encryption.is_none());
        let req = StreamOptions::new("s", "n")
            .retention_max_age(Duration::from_secs(2))
            .to_request();
        assert_eq!(req.retention_max_age.map(|v| v.value), Some(2000));
    }

    #[test]
    fn resubscribe_starts_after_the_last_offset() {
        let opts = SubscribeOptions::new()
            .start_at(StartPosition::Earliest)
            .stop_at(StopPosition::Offset(9));
        let req = opts.to_request("s", 1, Some(4));
        assert_eq!(req.start_position, pb::StartPosition::Offset as i32);
        assert_eq!(req.start_offset, 5);
        assert_eq!(req.stop_offset, 9);
        assert_eq!(req.partition, 1);
        let req = opts.clone().reverse(true).to_request("s", 0, Some(4));
        assert_eq!(req.start_offset, 3);
    }

    #[test]
    fn validation() {
        assert!(SubscribeOptions::new().partition(-1).validate().is_err());
        let future = SystemTime::now() + Duration::from_secs(3600);
        assert!(
            SubscribeOptions::new()
                .stop_at(StopPosition::Timestamp(future))
                .validate()
                .is_err()
        );
        assert!(StreamOptions::new("", "n").validate().is_err());
    }
}
