//! Options as they arrive from JS (already normalised by `index.js`: durations in milliseconds, offsets and
//! timestamps as `bigint`, enums as strings) and their translation into the Rust client's option types.
//! Everything is checked here too, so a caller of the native module directly still gets a clear error.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use liftbridge::{
    AckPolicy, ClientBuilder, Partitioning, RetryPolicy, StartPosition, StopPosition,
    StreamOptions, SubscribeOptions, TlsOptions,
};
use napi::bindgen_prelude::{BigInt, Buffer};
use napi_derive::napi;

use crate::error::invalid;

/// Client options (`Client.connect(seeds, options)`). Durations are milliseconds.
#[napi(object)]
#[derive(Default)]
pub struct ConnectOptions {
    /// How long connecting to the seeds may take (default 5000).
    pub connect_timeout_ms: Option<f64>,
    /// Deadline of each request (default 10000).
    pub request_timeout_ms: Option<f64>,
    /// How long a publish waits for its ack (default 5000).
    pub ack_timeout_ms: Option<f64>,
    /// Messages awaiting their ack at most; further sends wait (default 1024).
    pub max_in_flight: Option<u32>,
    /// Metadata refresh period; 0 turns the periodic refresh off (default 30000).
    pub metadata_refresh_interval_ms: Option<f64>,
    /// How long a broken subscription keeps trying to resubscribe (default 30000).
    pub resubscribe_window_ms: Option<f64>,
    /// Messages buffered ahead of a subscriber (default 1024).
    pub prefetch: Option<u32>,
    /// How long `close()` waits for in-flight acks (default 5000).
    pub drain_grace_ms: Option<f64>,
    /// HTTP/2 keepalive ping interval; 0 turns keepalive off (default 30000).
    pub keepalive_interval_ms: Option<f64>,
    /// How long a keepalive ping may go unanswered (default 10000).
    pub keepalive_timeout_ms: Option<f64>,
    /// Retry attempts in total, the first included (default 10).
    pub retry_max_attempts: Option<u32>,
    /// Upper bound of the first retry backoff (default 50).
    pub retry_base_delay_ms: Option<f64>,
    /// Upper bound of any retry backoff (default 2000).
    pub retry_max_delay_ms: Option<f64>,
    /// Largest message received, bytes (default 16 MiB).
    pub max_recv_message_size: Option<u32>,
    /// Largest message sent, bytes (default 4 MiB).
    pub max_send_message_size: Option<u32>,
    /// Default partitioning of published messages: `"key"` or `"roundRobin"` (default: partition 0).
    pub partition_by: Option<String>,
    /// TLS settings; absent means plaintext.
    pub tls: Option<TlsConfig>,
}

/// TLS settings. PEM given inline (`ca`, `cert`, `key`) or as file paths (`caFile`, `certFile`, `keyFile`).
#[napi(object)]
#[derive(Default)]
pub struct TlsConfig {
    /// CA certificates (PEM) to trust.
    pub ca: Option<Buffer>,
    /// A file of CA certificates (PEM) to trust.
    pub ca_file: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub cert: Option<Buffer>,
    /// Client private key (PEM) for mutual TLS.
    pub key: Option<Buffer>,
    /// Client certificate chain file (PEM).
    pub cert_file: Option<String>,
    /// Client private key file (PEM).
    pub key_file: Option<String>,
    /// Also trust the operating system's roots.
    pub native_roots: Option<bool>,
    /// The name to check the server certificate against (default: the host of the address).
    pub server_name: Option<String>,
}

/// A duration option: finite, non-negative milliseconds.
pub(crate) fn millis(name: &str, ms: f64) -> napi::Result<Duration> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(invalid(format!(
            "{name} must be a non-negative number of milliseconds, got {ms}"
        )));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// Parses a partitioning name.
pub(crate) fn partitioning(name: &str) -> napi::Result<Partitioning> {
    match name {
        "key" => Ok(Partitioning::Key),
        "roundRobin" => Ok(Partitioning::RoundRobin),
        other => Err(invalid(format!(
            "partitionBy must be \"key\" or \"roundRobin\", got {other:?}"
        ))),
    }
}

/// Parses an ack policy name.
pub(crate) fn ack_policy(name: &str) -> napi::Result<AckPolicy> {
    match name {
        "leader" => Ok(AckPolicy::Leader),
        "all" => Ok(AckPolicy::All),
        "none" => Ok(AckPolicy::None),
        other => Err(invalid(format!(
            "ackPolicy must be \"leader\", \"all\" or \"none\", got {other:?}"
        ))),
    }
}

/// An `i64` from a JS bigint, refusing values out of range.
pub(crate) fn bigint_i64(name: &str, v: &BigInt) -> napi::Result<i64> {
    let (value, lossless) = v.get_i64();
    if !lossless {
        return Err(invalid(format!(
            "{name} does not fit a signed 64-bit integer"
        )));
    }
    Ok(value)
}

impl ConnectOptions {
    /// Applies the options to a client builder.
    pub(crate) fn apply(self, mut b: ClientBuilder) -> napi::Result<ClientBuilder> {
        if let Some(ms) = self.connect_timeout_ms {
            b = b.connect_timeout(millis("connectTimeoutMs", ms)?);
        }
        if let Some(ms) = self.request_timeout_ms {
            b = b.request_timeout(millis("requestTimeoutMs", ms)?);
        }
        if let Some(ms) = self.ack_timeout_ms {
            b = b.ack_timeout(millis("ackTimeoutMs", ms)?);
        }
        if let Some(n) = self.max_in_flight {
            if n == 0 {
                return Err(invalid("maxInFlight must be at least 1"));
            }
            b = b.max_in_flight(n as usize);
        }
        if let Some(ms) = self.metadata_refresh_interval_ms {
            b = b.metadata_refresh_interval(millis("metadataRefreshIntervalMs", ms)?);
        }
        if let Some(ms) = self.resubscribe_window_ms {
            b = b.resubscribe_window(millis("resubscribeWindowMs", ms)?);
        }
        if let Some(n) = self.prefetch {
            b = b.prefetch(n.max(1) as usize);
        }
        if let Some(ms) = self.drain_grace_ms {
            b = b.drain_grace(millis("drainGraceMs", ms)?);
        }
        if self.keepalive_interval_ms == Some(0.0) {
            b = b.no_keepalive();
        } else if self.keepalive_interval_ms.is_some() || self.keepalive_timeout_ms.is_some() {
            let interval = millis(
                "keepaliveIntervalMs",
                self.keepalive_interval_ms.unwrap_or(30_000.0),
            )?;
            let timeout = millis(
                "keepaliveTimeoutMs",
                self.keepalive_timeout_ms.unwrap_or(10_000.0),
            )?;
            b = b.keepalive(interval, timeout);
        }
        if self.retry_max_attempts.is_some()
            || self.retry_base_delay_ms.is_some()
            || self.retry_max_delay_ms.is_some()
        {
            let d = RetryPolicy::default();
            let policy = RetryPolicy {
                max_attempts: self.retry_max_attempts.unwrap_or(d.max_attempts).max(1),
                base_delay: match self.retry_base_delay_ms {
                    Some(ms) => millis("retryBaseDelayMs", ms)?,
                    None => d.base_delay,
                },
                max_delay: match self.retry_max_delay_ms {
                    Some(ms) => millis("retryMaxDelayMs", ms)?,
                    None => d.max_delay,
                },
            };
            b = b.retry_policy(policy);
        }
        if self.max_recv_message_size.is_some() || self.max_send_message_size.is_some() {
            b = b.max_message_sizes(
                self.max_recv_message_size.unwrap_or(16 << 20) as usize,
                self.max_send_message_size.unwrap_or(4 << 20) as usize,
            );
        }
        if let Some(p) = self.partition_by {
            b = b.partitioning(partitioning(&p)?);
        }
        if let Some(tls) = self.tls {
            b = b.tls(tls.into_options()?);
        }
        Ok(b)
    }
}

impl TlsConfig {
    fn into_options(self) -> napi::Result<TlsOptions> {
        let mut t = TlsOptions::new();
        if let Some(ca) = self.ca {
            t = t.ca_pem(ca.to_vec());
        }
        if let Some(f) = self.ca_file {
            t = t.ca_file(f);
        }
        if let Some(n) = self.native_roots {
            t = t.native_roots(n);
        }
        match (self.cert, self.key, self.cert_file, self.key_file) {
            (Some(c), Some(k), None, None) => t = t.client_identity_pem(c.to_vec(), k.to_vec()),
            (None, None, Some(c), Some(k)) => t = t.client_identity_files(c, k),
            (None, None, None, None) => {}
            _ => {
                return Err(invalid(
                    "tls: give a client certificate and its key together, both inline (cert, key) or both as files (certFile, keyFile)",
                ));
            }
        }
        if let Some(n) = self.server_name {
            t = t.server_name(n);
        }
        Ok(t)
    }
}

/// Options of a new stream (`createStream(subject, name, options)`). Durations are milliseconds.
#[napi(object)]
#[derive(Default)]
pub struct NativeStreamOptions {
    /// NATS queue group the stream's partitions join.
    pub group: Option<String>,
    /// Replicas per partition; -1 means every server.
    pub replication_factor: Option<i32>,
    /// Number of partitions (default 1).
    pub partitions: Option<u32>,
    /// Retention by size, bytes.
    pub retention_max_bytes: Option<i64>,
    /// Retention by message count.
    pub retention_max_messages: Option<i64>,
    /// Retention by age.
    pub retention_max_age_ms: Option<f64>,
    /// How often retention and compaction run.
    pub cleaner_interval_ms: Option<f64>,
    /// Segment roll size, bytes.
    pub segment_max_bytes: Option<i64>,
    /// Segment roll age.
    pub segment_max_age_ms: Option<f64>,
    /// Keep only the newest message per key.
    pub compact_enabled: Option<bool>,
    /// Compaction parallelism.
    pub compact_max_goroutines: Option<i32>,
    /// Pause partitions idle this long.
    pub auto_pause_time_ms: Option<f64>,
    /// Do not auto-pause partitions with subscribers.
    pub auto_pause_disable_if_subscribers: Option<bool>,
    /// Minimum in-sync replicas for ALL acks.
    pub min_isr: Option<i32>,
    /// Optimistic concurrency control (expected offsets).
    pub optimistic_concurrency_control: Option<bool>,
    /// Encryption at rest.
    pub encryption: Option<bool>,
}

impl NativeStreamOptions {
    /// The Rust client's stream options for `subject` and `name`.
    pub(crate) fn into_options(self, subject: String, name: String) -> napi::Result<StreamOptions> {
        let mut o = StreamOptions::new(subject, name);
        if let Some(g) = self.group {
            o = o.group(g);
        }
        if let Some(n) = self.replication_factor {
            o = o.replication_factor(n);
        }
        if let Some(n) = self.partitions {
            if n == 0 {
                return Err(invalid("partitions must be at least 1"));
            }
            o = o.partitions(n);
        }
        if let Some(n) = self.retention_max_bytes {
            o = o.retention_max_bytes(n);
        }
        if let Some(n) = self.retention_max_messages {
            o = o.retention_max_messages(n);
        }
        if let Some(ms) = self.retention_max_age_ms {
            o = o.retention_max_age(millis("retentionMaxAgeMs", ms)?);
        }
        if let Some(ms) = self.cleaner_interval_ms {
            o = o.cleaner_interval(millis("cleanerIntervalMs", ms)?);
        }
        if let Some(n) = self.segment_max_bytes {
            o = o.segment_max_bytes(n);
        }
        if let Some(ms) = self.segment_max_age_ms {
            o = o.segment_max_age(millis("segmentMaxAgeMs", ms)?);
        }
        if let Some(v) = self.compact_enabled {
            o = o.compact_enabled(v);
        }
        if let Some(n) = self.compact_max_goroutines {
            o = o.compact_max_goroutines(n);
        }
        if let Some(ms) = self.auto_pause_time_ms {
            o = o.auto_pause_time(millis("autoPauseTimeMs", ms)?);
        }
        if let Some(v) = self.auto_pause_disable_if_subscribers {
            o = o.auto_pause_disable_if_subscribers(v);
        }
        if let Some(n) = self.min_isr {
            o = o.min_isr(n);
        }
        if let Some(v) = self.optimistic_concurrency_control {
            o = o.optimistic_concurrency_control(v);
        }
        if let Some(v) = self.encryption {
            o = o.encryption(v);
        }
        Ok(o)
    }
}

/// Subscribe options, normalised by `index.js` (`start`/`stop` objects flattened into a kind and a value).
#[napi(object)]
#[derive(Default)]
pub struct NativeSubscribeOptions {
    /// The partition (ignored with `allPartitions`).
    pub partition: Option<i32>,
    /// Subscribe to every partition, merged.
    pub all_partitions: Option<bool>,
    /// `newOnly` (default), `earliest`, `latest`, `offset`, `timestamp` or `timeDelta`.
    pub start: Option<String>,
    /// The start offset for `start: "offset"`.
    pub start_offset: Option<BigInt>,
    /// The start time (ns since the epoch) for `start: "timestamp"`.
    pub start_timestamp: Option<BigInt>,
    /// How far back to start (ms) for `start: "timeDelta"`.
    pub start_time_delta_ms: Option<f64>,
    /// `offset`, `latest` or `timestamp`; absent: never stop.
    pub stop: Option<String>,
    /// The last offset for `stop: "offset"`.
    pub stop_offset: Option<BigInt>,
    /// The last time (ns since the epoch) for `stop: "timestamp"`.
    pub stop_timestamp: Option<BigInt>,
    /// Read newest to oldest.
    pub reverse: Option<bool>,
    /// Read from any in-sync replica.
    pub read_isr_replica: Option<bool>,
    /// Resume a paused partition.
    pub resume: Option<bool>,
    /// Messages buffered ahead of the consumer.
    pub prefetch: Option<u32>,
    /// Resubscribe automatically after failures (default true).
    pub auto_resubscribe: Option<bool>,
}

fn time_from_nanos(name: &str, v: &BigInt) -> napi::Result<SystemTime> {
    let ns = bigint_i64(name, v)?;
    let ns = u64::try_from(ns).map_err(|_| invalid(format!("{name} must not be negative")))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
}

impl NativeSubscribeOptions {
    /// The Rust client's subscribe options, and whether to subscribe to all partitions.
    pub(crate) fn into_options(self) -> napi::Result<(SubscribeOptions, bool)> {
        let mut o = SubscribeOptions::new();
        if let Some(p) = self.partition {
            if p < 0 {
                return Err(invalid(format!("partition must not be negative, got {p}")));
            }
            o = o.partition(p);
        }
        let start = match self.start.as_deref().unwrap_or("newOnly") {
            "newOnly" => StartPosition::NewOnly,
            "earliest" => StartPosition::Earliest,
            "latest" => StartPosition::Latest,
            "offset" => {
                let v = self
                    .start_offset
                    .as_ref()
                    .ok_or_else(|| invalid("start offset missing"))?;
                StartPosition::Offset(bigint_i64("start offset", v)?)
            }
            "timestamp" => {
                let v = self
                    .start_timestamp
                    .as_ref()
                    .ok_or_else(|| invalid("start timestamp missing"))?;
                StartPosition::Timestamp(time_from_nanos("start timestamp", v)?)
            }
            "timeDelta" => {
                let ms = self
                    .start_time_delta_ms
                    .ok_or_else(|| invalid("start timeDelta missing"))?;
                StartPosition::TimeDelta(millis("start timeDelta", ms)?)
            }
            other => {
                return Err(invalid(format!(
                    "start must be \"newOnly\", \"earliest\", \"latest\" or {{ offset | timestamp | timeDelta }}, got {other:?}"
                )));
            }
        };
        o = o.start_at(start);
        if let Some(stop) = self.stop.as_deref() {
            let stop = match stop {
                "latest" => StopPosition::Latest,
                "offset" => {
                    let v = self
                        .stop_offset
                        .as_ref()
                        .ok_or_else(|| invalid("stop offset missing"))?;
                    StopPosition::Offset(bigint_i64("stop offset", v)?)
                }
                "timestamp" => {
                    let v = self
                        .stop_timestamp
                        .as_ref()
                        .ok_or_else(|| invalid("stop timestamp missing"))?;
                    StopPosition::Timestamp(time_from_nanos("stop timestamp", v)?)
                }
                other => {
                    return Err(invalid(format!(
                        "stop must be \"latest\" or {{ offset | timestamp }}, got {other:?}"
                    )));
                }
            };
            o = o.stop_at(stop);
        }
        if let Some(v) = self.reverse {
            o = o.reverse(v);
        }
        if let Some(v) = self.read_isr_replica {
            o = o.read_isr_replica(v);
        }
        if let Some(v) = self.resume {
            o = o.resume(v);
        }
        if let Some(n) = self.prefetch {
            o = o.prefetch(n as usize);
        }
        if let Some(v) = self.auto_resubscribe {
            o = o.auto_resubscribe(v);
        }
        Ok((o, self.all_partitions.unwrap_or(false)))
    }
}

/// Headers as they arrive from JS.
pub(crate) type JsHeaders = HashMap<String, Buffer>;
