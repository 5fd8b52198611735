//! Reading configuration from a `liftbridge.yaml` file and from `LIFTBRIDGE_…` environment variables.
//!
//! Liftbridge reads its YAML through viper, so a key may be written dotted (`data.dir: /x`), nested
//! (`streams: {retention: {max: {bytes: 1}}}`) or any mix of the two (`batch.max: {messages: 10}`). We flatten the
//! document to dotted keys, then set each one through a single table ([`KEYS`]); anything not in the table is
//! refused with its name, like Liftbridge does.

use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::duration::parse_go_duration;
use super::{Config, ConfigError, SyncPolicyKind};

/// Every key the file and the environment accept, dotted.
pub const KEYS: &[&str] = &[
    "listen",
    "host",
    "port",
    "data.dir",
    "metadata.cache.max.age",
    "batch.max.messages",
    "batch.max.time",
    "logging.level",
    "logging.recovery",
    "logging.raft",
    "logging.nats",
    "streams.retention.max.bytes",
    "streams.retention.max.messages",
    "streams.retention.max.age",
    "streams.cleaner.interval",
    "streams.segment.max.bytes",
    "streams.segment.max.age",
    "streams.compact.enabled",
    "streams.compact.max.goroutines",
    "streams.auto.pause.time",
    "streams.auto.pause.disable.if.subscribers",
    "streams.concurrency.control",
    "streams.encryption",
    "streams.sync.policy",
    "streams.sync.interval",
    "tls.key",
    "tls.cert",
    "tls.client.auth",
    "tls.client.auth.enabled",
    "tls.client.auth.ca",
    "tls.client.authz.enabled",
    "tls.client.authz.model",
    "tls.client.authz.policy",
    "nats.servers",
    "nats.user",
    "nats.password",
    "nats.tls.cert",
    "nats.tls.key",
    "nats.tls.ca",
    "nats.embedded",
    "nats.embedded.config",
    "nats.embedded.host",
    "nats.embedded.port",
    "clustering.server.id",
    "clustering.namespace",
    "clustering.raft.snapshot.retain",
    "clustering.raft.snapshot.threshold",
    "clustering.raft.cache.size",
    "clustering.raft.bootstrap.seed",
    "clustering.raft.bootstrap.peers",
    "clustering.raft.max.quorum.size",
    "clustering.replica.max.lag.time",
    "clustering.replica.max.leader.timeout",
    "clustering.replica.max.idle.wait",
    "clustering.replica.fetch.timeout",
    "clustering.min.insync.replicas",
    "clustering.replication.max.bytes",
    "activity.stream.enabled",
    "activity.stream.publish.timeout",
    "activity.stream.publish.ack.policy",
    "cursors.stream.partitions",
    "cursors.stream.replication.factor",
    "cursors.stream.auto.pause.time",
    "groups.consumer.timeout",
    "groups.coordinator.timeout",
    "telemetry.enabled",
    "telemetry.interval.seconds",
    "runtime.worker.threads",
];

/// Reads `path` and applies every key in it to `config`.
pub fn apply_file(config: &mut Config, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    apply_yaml(config, &text, &path.display().to_string())
}

/// Applies a YAML document (the text of a `liftbridge.yaml`) to `config`; `origin` names it in errors.
pub fn apply_yaml(config: &mut Config, text: &str, origin: &str) -> Result<(), ConfigError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
        path: origin.into(),
        message: e.to_string(),
    })?;
    let mut entries = Vec::new();
    match doc {
        Value::Null => {}
        Value::Mapping(_) => flatten("", doc, &mut entries, origin)?,
        _ => {
            return Err(ConfigError::Yaml {
                path: origin.into(),
                message: "the top level must be a mapping of settings".into(),
            });
        }
    }
    for (key, value) in entries {
        set(config, &key, &value, origin)?;
    }
    Ok(())
}

/// Applies `LIFTBRIDGE_<KEY>` variables, where `<KEY>` is a known key upper-cased with `.` replaced by `_`
/// (`LIFTBRIDGE_CLUSTERING_SERVER_ID` sets `clustering.server.id`). Other variables are ignored, since the prefix
/// is also used for things that are not settings (`LIFTBRIDGE_ENCRYPTION_KEY`).
pub fn apply_env(
    config: &mut Config,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("LIFTBRIDGE_") else {
            continue;
        };
        let Some(key) = KEYS.iter().find(|k| env_suffix(k) == rest) else {
            continue;
        };
        // Parse like a YAML scalar so `true`, `10` and `1m` mean what they do in the file.
        let value = serde_yaml_ng::from_str::<Value>(&raw).unwrap_or(Value::String(raw.clone()));
        let value = if value.is_mapping() {
            Value::String(raw)
        } else {
            value
        };
        set(config, key, &value, &format!("environment variable {name}"))?;
    }
    Ok(())
}

/// The environment-variable suffix of a dotted key.
pub fn env_suffix(key: &str) -> String {
    key.to_ascii_uppercase().replace('.', "_")
}

fn flatten(
    prefix: &str,
    value: Value,
    out: &mut Vec<(String, Value)>,
    origin: &str,
) -> Result<(), ConfigError> {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                let part = match k {
                    Value::String(s) => s,
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(ConfigError::Yaml {
                            path: origin.into(),
                            message: format!("unsupported key {other:?} under {prefix:?}"),
                        });
                    }
                };
                let key = if prefix.is_empty() {
                    part
                } else {
                    format!("{prefix}.{part}")
                };
                // `nats.embedded: true` is a leaf while `nats.embedded.config` is a longer key: a mapping
                // always means "more key", a scalar is always a value.
                flatten(&key, v, out, origin)?;
            }
            Ok(())
        }
        Value::Tagged(tagged) => flatten(prefix, tagged.value, out, origin),
        leaf => {
            out.push((prefix.to_string(), leaf));
            Ok(())
        }
    }
}

struct Setter<'a> {
    key: &'a str,
    value: &'a Value,
    origin: &'a str,
}

impl Setter<'_> {
    fn invalid(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: self.key.into(),
            origin: self.origin.into(),
            message: message.into(),
        }
    }

    fn string(&self) -> Result<String, ConfigError> {
        match self.value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.invalid("expected a string")),
        }
    }

    fn opt_string(&self) -> Result<Option<String>, ConfigError> {
        match self.value {
            Value::Null => Ok(None),
            _ => Ok(Some(self.string()?).filter(|s| !s.is_empty())),
        }
    }

    fn bool(&self) -> Result<bool, ConfigError> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "t" | "yes" | "on" => Ok(true),
                "false" | "0" | "f" | "no" | "off" => Ok(false),
                _ => Err(self.invalid(format!("expected true or false, got {s:?}"))),
            },
            Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
            _ => Err(self.invalid("expected true or false")),
        }
    }

    fn i64(&self) -> Result<i64, ConfigError> {
        match self.value {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| self.invalid(format!("expected a whole number, got {n}"))),
            // Quoted numbers (`min.insync.replicas: '1'`) are numbers to viper too.
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| self.invalid(format!("expected a whole number, got {s:?}"))),
            _ => Err(self.invalid("expected a whole number")),
        }
    }

    fn u64(&self) -> Result<u64, ConfigError> {
        let n = self.i64()?;
        u64::try_from(n).map_err(|_| self.invalid(format!("must not be negative, got {n}")))
    }

    fn u32(&self) -> Result<u32, ConfigError> {
        let n = self.u64()?;
        u32::try_from(n).map_err(|_| self.invalid(format!("too large: {n}")))
    }

    fn duration(&self) -> Result<Duration, ConfigError> {
        match self.value {
            Value::String(s) => parse_go_duration(s).map_err(|e| self.invalid(e)),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
            Value::Number(n) => Err(self.invalid(format!(
                "expected a duration with a unit such as \"{n}s\" or \"{n}ms\", got the bare number {n}"
            ))),
            _ => Err(self.invalid("expected a duration such as \"30s\" or \"1h\"")),
        }
    }

    fn list(&self) -> Result<Vec<String>, ConfigError> {
        match self.value {
            Value::Null => Ok(Vec::new()),
            Value::Sequence(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(self.invalid("expected a list of strings")),
                })
                .collect(),
            Value::String(s) => Ok(s
                .split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()),
            _ => Err(self.invalid("expected a list of strings")),
        }
    }
}

/// Checks a `host:port` listen address without resolving the host.
pub fn validate_listen(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("listen address {addr:?} must be host:port"))?;
    if host.trim().is_empty() && !addr.starts_with(':') {
        return Err(format!("listen address {addr:?} has an empty host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("listen address {addr:?} has an invalid port {port:?}"))?;
    Ok(())
}

/// Sets one dotted key.
pub fn set(config: &mut Config, key: &str, value: &Value, origin: &str) -> Result<(), ConfigError> {
    let v = Setter { key, value, origin };
    let c = config;
    match key {
        "listen" => {
            let addr = v.string()?;
            validate_listen(&addr).map_err(|m| v.invalid(m))?;
            c.listen = Some(addr);
        }
        "host" => c.host = v.string()?,
        "port" => {
            let port = v.i64()?;
            c.port = u16::try_from(port)
                .map_err(|_| v.invalid(format!("port must be 0..=65535, got {port}")))?;
        }
        "data.dir" => c.data_dir = v.opt_string()?.map(Into::into),
        "metadata.cache.max.age" => c.metadata_cache_max_age = v.duration()?,
        "batch.max.messages" => {
            let n = v.u64()?;
            if n == 0 {
                return Err(v.invalid("must be at least 1"));
            }
            c.batch.max_messages = usize::try_from(n).map_err(|_| v.invalid("too large"))?;
        }
        "batch.max.time" => c.batch.max_time = v.duration()?,
        "logging.level" => {
            let level = v.string()?.to_ascii_lowercase();
            if !["trace", "debug", "info", "warn", "warning", "error"].contains(&level.as_str()) {
                return Err(v.invalid(format!(
                    "unknown level {level:?}; use debug, info, warn or error"
                )));
            }
            c.logging.level = level;
        }
        "logging.recovery" => c.logging.recovery = v.bool()?,
        "logging.raft" => c.logging.raft = v.bool()?,
        "logging.nats" => c.logging.nats = v.bool()?,
        "streams.retention.max.bytes" => c.streams.retention_max_bytes = v.u64()?,
        "streams.retention.max.messages" => c.streams.retention_max_messages = v.u64()?,
        "streams.retention.max.age" => c.streams.retention_max_age = v.duration()?,
        "streams.cleaner.interval" => c.streams.cleaner_interval = v.duration()?,
        "streams.segment.max.bytes" => c.streams.segment_max_bytes = v.u64()?,
        "streams.segment.max.age" => c.streams.segment_max_age = Some(v.duration()?),
        "streams.compact.enabled" => c.streams.compact_enabled = v.bool()?,
        "streams.compact.max.goroutines" => c.streams.compact_max_goroutines = v.u32()?,
        "streams.auto.pause.time" => c.streams.auto_pause_time = v.duration()?,
        "streams.auto.pause.disable.if.subscribers" => {
            c.streams.auto_pause_disable_if_subscribers = v.bool()?
        }
        "streams.concurrency.control" => c.streams.concurrency_control = v.bool()?,
        "streams.encryption" => c.streams.encryption = v.bool()?,
        "streams.sync.policy" => {
            c.streams.sync_policy = match v.string()?.to_ascii_lowercase().as_str() {
                "never" => SyncPolicyKind::Never,
                "interval" => SyncPolicyKind::Interval,
                "always" => SyncPolicyKind::Always,
                other => {
                    return Err(v.invalid(format!(
                        "unknown sync policy {other:?}; use never, interval or always"
                    )));
                }
            }
        }
        "streams.sync.interval" => {
            let d = v.duration()?;
            if d.is_zero() {
                return Err(
                    v.invalid("must be above zero (use streams.sync.policy: always instead)")
                );
            }
            c.streams.sync_interval = d;
        }
        "tls.key" => c.tls.key = v.opt_string()?.map(Into::into),
        "tls.cert" => c.tls.cert = v.opt_string()?.map(Into::into),
        // Older spelling of `tls.client.auth.enabled`.
        "tls.client.auth" | "tls.client.auth.enabled" => c.tls.client_auth_enabled = v.bool()?,
        "tls.client.auth.ca" => c.tls.client_auth_ca = v.opt_string()?.map(Into::into),
        "tls.client.authz.enabled" => c.tls.client_authz_enabled = v.bool()?,
        "tls.client.authz.model" => c.tls.client_authz_model = v.opt_string()?.map(Into::into),
        "tls.client.authz.policy" => c.tls.client_authz_policy = v.opt_string()?.map(Into::into),
        "nats.servers" => c.nats.servers = v.list()?,
        "nats.user" => c.nats.user = v.opt_string()?,
        "nats.password" => c.nats.password = v.opt_string()?,
        "nats.tls.cert" => c.nats.tls_cert = v.opt_string()?.map(Into::into),
        "nats.tls.key" => c.nats.tls_key = v.opt_string()?.map(Into::into),
        "nats.tls.ca" => c.nats.tls_ca = v.opt_string()?.map(Into::into),
        "nats.embedded" => c.nats.embedded = v.bool()?,
        "nats.embedded.config" => c.nats.embedded_config = v.opt_string()?.map(Into::into),
        "nats.embedded.host" => c.nats.embedded_host = v.opt_string()?,
        "nats.embedded.port" => {
            let port = v.i64()?;
            c.nats.embedded_port = Some(
                u16::try_from(port)
                    .map_err(|_| v.invalid(format!("port must be 0..=65535, got {port}")))?,
            );
        }
        "clustering.server.id" => c.clustering.server_id = v.opt_string()?,
        "clustering.namespace" => {
            let ns = v.string()?;
            if ns.is_empty() || ns.contains(['.', '*', '>', ' ', '/']) {
                return Err(v.invalid(format!(
                    "namespace {ns:?} must be non-empty and free of '.', '*', '>', '/' and spaces"
                )));
            }
            c.clustering.namespace = ns;
        }
        "clustering.raft.snapshot.retain" => c.clustering.raft_snapshot_retain = v.u32()?,
        "clustering.raft.snapshot.threshold" => c.clustering.raft_snapshot_threshold = v.u64()?,
        "clustering.raft.cache.size" => c.clustering.raft_cache_size = v.u32()?,
        "clustering.raft.bootstrap.seed" => c.clustering.raft_bootstrap_seed = v.bool()?,
        "clustering.raft.bootstrap.peers" => c.clustering.raft_bootstrap_peers = v.list()?,
        "clustering.raft.max.quorum.size" => c.clustering.raft_max_quorum_size = v.u32()?,
        "clustering.replica.max.lag.time" => c.clustering.replica_max_lag_time = v.duration()?,
        "clustering.replica.max.leader.timeout" => {
            c.clustering.replica_max_leader_timeout = v.duration()?
        }
        "clustering.replica.max.idle.wait" => c.clustering.replica_max_idle_wait = v.duration()?,
        "clustering.replica.fetch.timeout" => c.clustering.replica_fetch_timeout = v.duration()?,
        "clustering.min.insync.replicas" => {
            let n = v.u32()?;
            if n == 0 {
                return Err(v.invalid("must be at least 1"));
            }
            c.clustering.min_insync_replicas = n;
        }
        "clustering.replication.max.bytes" => {
            let n = v.u64()?;
            if n == 0 {
                return Err(v.invalid("must be above zero"));
            }
            c.clustering.replication_max_bytes = n;
        }
        "activity.stream.enabled" => c.activity.enabled = v.bool()?,
        "activity.stream.publish.timeout" => c.activity.publish_timeout = v.duration()?,
        "activity.stream.publish.ack.policy" => {
            let policy = v.string()?.to_ascii_lowercase();
            if !["none", "leader", "all"].contains(&policy.as_str()) {
                return Err(v.invalid(format!(
                    "unknown ack policy {policy:?}; use none, leader or all"
                )));
            }
            c.activity.publish_ack_policy = policy;
        }
        "cursors.stream.partitions" => c.cursors.stream_partitions = v.u32()?,
        "cursors.stream.replication.factor" => {
            let n = v.i64()?;
            if n == 0 || n < -1 {
                return Err(v.invalid(format!("must be -1 (all servers) or at least 1, got {n}")));
            }
            c.cursors.stream_replication_factor =
                i32::try_from(n).map_err(|_| v.invalid("too large"))?;
        }
        "cursors.stream.auto.pause.time" => c.cursors.stream_auto_pause_time = v.duration()?,
        "groups.consumer.timeout" => c.groups.consumer_timeout = v.duration()?,
        "groups.coordinator.timeout" => c.groups.coordinator_timeout = v.duration()?,
        "runtime.worker.threads" => {
            let n = v.u64()?;
            c.worker_threads = match n {
                0 => None,
                1..=1024 => Some(n as usize),
                _ => {
                    return Err(v.invalid(format!(
                        "at most 1024 threads, got {n}; 0 means one per CPU"
                    )));
                }
            };
        }
        // Liftbridge phones home; we do not. The keys are accepted so existing files load unchanged.
        "telemetry.enabled" => {
            v.bool()?;
        }
        "telemetry.interval.seconds" => {
            v.i64()?;
        }
        _ => {
            return Err(ConfigError::UnknownKey {
                key: key.into(),
                origin: origin.into(),
            });
        }
    }
    Ok(())
}
