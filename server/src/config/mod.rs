//! Server configuration: Liftbridge's `liftbridge.yaml` keys and defaults, its command-line flags and
//! `LIFTBRIDGE_…` environment overrides, plus our own keys (sync policy, embedded broker port).
//!
//! # Layout
//! - [`Config`] and its sections: typed settings with Liftbridge's defaults (`Config::default()`).
//! - [`source`]: reading a YAML file (dotted and nested keys mixed) and the environment; every key Liftbridge
//!   knows is accepted, unknown keys are refused by name.
//! - [`flags`]: the command-line flags (`-c`, `-d`, `-p`, `-n`, `-e`, …) applied over the file.
//! - [`duration`]: Go-style durations (`1h30m`).
//!
//! Precedence, lowest first: defaults, the config file, `LIFTBRIDGE_…` environment variables, flags.

pub mod duration;
pub mod flags;
pub mod source;

use std::path::PathBuf;
use std::time::Duration;

pub use flags::Flags;

/// Default gRPC port, as in Liftbridge.
pub const DEFAULT_PORT: u16 = 9292;
/// Default NATS server URL used by Liftbridge when none is configured. We use the embedded broker instead in that
/// case (see `docs/compatibility.md`), but keep the constant for the `-n` hint and for documentation.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default cluster namespace; prefixes internal NATS subjects and the default data directory.
pub const DEFAULT_NAMESPACE: &str = "liftbridge-default";

/// A configuration problem, always naming the key or file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The configuration file is not valid YAML.
    #[error("config file {path} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key Liftbridge does not know.
    #[error("unknown configuration setting {key:?}{}", origin_suffix(.origin))]
    UnknownKey {
        /// The dotted key.
        key: String,
        /// Where it came from (file path or environment variable).
        origin: String,
    },
    /// A known key with a value of the wrong type or out of range.
    #[error("invalid value for {key:?}{}: {message}", origin_suffix(.origin))]
    InvalidValue {
        /// The dotted key.
        key: String,
        /// Where it came from.
        origin: String,
        /// What was wrong and what is expected.
        message: String,
    },
}

fn origin_suffix(origin: &str) -> String {
    if origin.is_empty() {
        String::new()
    } else {
        format!(" (in {origin})")
    }
}

/// How the commit log makes appended data durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicyKind {
    /// Never fsync; the OS writes pages back when it likes (Liftbridge's only behaviour).
    Never,
    /// fsync at most every `streams.sync.interval`.
    Interval,
    /// fsync every batch before acking it (group commit).
    Always,
}

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the gRPC API binds (`listen`, `host:port`); when unset, `0.0.0.0:<port>`.
    pub listen: Option<String>,
    /// Host advertised to clients in metadata (`host`).
    pub host: String,
    /// gRPC port (`port`, `-p`), also the port advertised.
    pub port: u16,
    /// Where streams and server state live (`data.dir`); `None` = `/tmp/liftbridge/<namespace>`.
    pub data_dir: Option<PathBuf>,
    /// How long broker metadata may be cached (`metadata.cache.max.age`).
    pub metadata_cache_max_age: Duration,
    /// Leader write batching.
    pub batch: BatchConfig,
    /// Logging.
    pub logging: LoggingConfig,
    /// Defaults for every stream (overridable per stream in `CreateStream`).
    pub streams: StreamsConfig,
    /// gRPC TLS.
    pub tls: TlsConfig,
    /// NATS connection or embedded broker.
    pub nats: NatsConfig,
    /// Clustering and replication.
    pub clustering: ClusteringConfig,
    /// The `__activity` stream.
    pub activity: ActivityConfig,
    /// The `__cursors` stream.
    pub cursors: CursorsConfig,
    /// Consumer groups.
    pub groups: GroupsConfig,
    /// Threads of the async runtime that runs the server (ours: `runtime.worker.threads`); `None` = tokio's
    /// default, one per CPU (or `TOKIO_WORKER_THREADS`). Applied by the `liftbridge` binary, which builds the
    /// runtime; a server started in-process with `Server::run` runs on its caller's runtime and ignores it.
    pub worker_threads: Option<usize>,
}

/// Leader write batching (`batch.max.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Most messages written in one append (`batch.max.messages`).
    pub max_messages: usize,
    /// How long the leader may wait to fill a batch (`batch.max.time`); zero = write what is there.
    pub max_time: Duration,
}

/// Logging (`logging.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    /// Level: `debug`, `info`, `warn`, `error` (`logging.level`, `-l`).
    pub level: String,
    /// Log recovery of logs at start-up (`logging.recovery`).
    pub recovery: bool,
    /// Log Raft internals (`logging.raft`).
    pub raft: bool,
    /// Log NATS (embedded broker) internals (`logging.nats`).
    pub nats: bool,
}

/// Per-stream defaults (`streams.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamsConfig {
    /// Delete old segments past this many bytes; 0 = no limit.
    pub retention_max_bytes: u64,
    /// Delete old segments past this many messages; 0 = no limit.
    pub retention_max_messages: u64,
    /// Delete segments older than this; zero = no limit.
    pub retention_max_age: Duration,
    /// How often retention and compaction run.
    pub cleaner_interval: Duration,
    /// Roll a segment past this size.
    pub segment_max_bytes: u64,
    /// Roll a segment this long after its first write; `None` = the retention age (at least 1 s).
    pub segment_max_age: Option<Duration>,
    /// Compact streams by key.
    pub compact_enabled: bool,
    /// Parallelism of compaction (kept for compatibility; we compact one partition at a time per task).
    pub compact_max_goroutines: u32,
    /// Pause a partition that received nothing for this long; zero = never.
    pub auto_pause_time: Duration,
    /// Do not auto-pause while a partition has subscribers.
    pub auto_pause_disable_if_subscribers: bool,
    /// Optimistic concurrency control by default.
    pub concurrency_control: bool,
    /// Encrypt values at rest by default.
    pub encryption: bool,
    /// Durability of appends (ours: `streams.sync.policy`).
    pub sync_policy: SyncPolicyKind,
    /// fsync period for the `interval` policy (ours: `streams.sync.interval`).
    pub sync_interval: Duration,
}

/// gRPC TLS (`tls.*`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsConfig {
    /// Server private key (PEM).
    pub key: Option<PathBuf>,
    /// Server certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Require client certificates.
    pub client_auth_enabled: bool,
    /// CA that signs client certificates.
    pub client_auth_ca: Option<PathBuf>,
    /// Authorization by client certificate CN (Liftbridge's experimental ACLs).
    pub client_authz_enabled: bool,
    /// Authorization model file.
    pub client_authz_model: Option<PathBuf>,
    /// Authorization policy file.
    pub client_authz_policy: Option<PathBuf>,
}

/// NATS (`nats.*`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NatsConfig {
    /// External NATS servers; empty = use the embedded broker.
    pub servers: Vec<String>,
    /// NATS user.
    pub user: Option<String>,
    /// NATS password.
    pub password: Option<String>,
    /// Client certificate for NATS TLS.
    pub tls_cert: Option<PathBuf>,
    /// Client key for NATS TLS.
    pub tls_key: Option<PathBuf>,
    /// CA for NATS TLS.
    pub tls_ca: Option<PathBuf>,
    /// Run the embedded broker even if servers are given (`nats.embedded`, `-e`).
    pub embedded: bool,
    /// A nats-server style config file for the embedded broker (`nats.embedded.config`).
    pub embedded_config: Option<PathBuf>,
    /// Host the embedded broker listens on (ours: `nats.embedded.host`); overrides the broker config file.
    pub embedded_host: Option<String>,
    /// Port the embedded broker listens on (ours: `nats.embedded.port`, 0 = any free port); overrides the
    /// broker config file. Default 4222.
    pub embedded_port: Option<u16>,
}

impl NatsConfig {
    /// Whether the embedded broker runs: asked for, or no external servers configured.
    pub fn use_embedded(&self) -> bool {
        self.embedded || self.embedded_config.is_some() || self.servers.is_empty()
    }
}

/// Clustering (`clustering.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusteringConfig {
    /// Server id; `None` = generated once and kept in the data dir.
    pub server_id: Option<String>,
    /// Namespace prefixing internal subjects.
    pub namespace: String,
    /// Raft snapshots to keep.
    pub raft_snapshot_retain: u32,
    /// Raft log entries between snapshots.
    pub raft_snapshot_threshold: u64,
    /// Raft log cache size.
    pub raft_cache_size: u32,
    /// Bootstrap a new cluster from this server.
    pub raft_bootstrap_seed: bool,
    /// Bootstrap with this fixed set of server ids.
    pub raft_bootstrap_peers: Vec<String>,
    /// Most Raft voters; 0 = no limit.
    pub raft_max_quorum_size: u32,
    /// Drop a follower from the ISR after this long behind.
    pub replica_max_lag_time: Duration,
    /// Report a silent leader after this long.
    pub replica_max_leader_timeout: Duration,
    /// Longest a leader holds a caught-up follower's fetch.
    pub replica_max_idle_wait: Duration,
    /// Follower fetch request timeout.
    pub replica_fetch_timeout: Duration,
    /// Smallest ISR that may commit.
    pub min_insync_replicas: u32,
    /// Largest replication batch and largest message (`TOO_LARGE` above it).
    pub replication_max_bytes: u64,
}

/// Activity stream (`activity.stream.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityConfig {
    /// Publish metadata events to `__activity`.
    pub enabled: bool,
    /// Publish timeout.
    pub publish_timeout: Duration,
    /// Ack policy of activity publishes: `none`, `leader` or `all`.
    pub publish_ack_policy: String,
}

/// Cursors stream (`cursors.stream.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct CursorsConfig {
    /// Partitions of `__cursors`; 0 = cursors disabled.
    pub stream_partitions: u32,
    /// Replication factor of `__cursors`; -1 = all servers.
    pub stream_replication_factor: i32,
    /// Auto-pause time of `__cursors` partitions.
    pub stream_auto_pause_time: Duration,
}

/// Consumer groups (`groups.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupsConfig {
    /// A consumer that has not fetched its assignments for this long is removed.
    pub consumer_timeout: Duration,
    /// A coordinator that has not answered for this long may be replaced.
    pub coordinator_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: None,
            host: "localhost".into(),
            port: DEFAULT_PORT,
            data_dir: None,
            metadata_cache_max_age: Duration::from_secs(120),
            batch: BatchConfig {
                max_messages: 1024,
                max_time: Duration::ZERO,
            },
            logging: LoggingConfig {
                level: "info".into(),
                recovery: false,
                raft: false,
                nats: false,
            },
            streams: StreamsConfig {
                retention_max_bytes: 0,
                retention_max_messages: 0,
                retention_max_age: Duration::from_secs(168 * 3600),
                cleaner_interval: Duration::from_secs(300),
                segment_max_bytes: 256 * 1024 * 1024,
                segment_max_age: None,
                compact_enabled: false,
                compact_max_goroutines: 10,
                auto_pause_time: Duration::ZERO,
                auto_pause_disable_if_subscribers: false,
                concurrency_control: false,
                encryption: false,
                sync_policy: SyncPolicyKind::Interval,
                sync_interval: Duration::from_secs(1),
            },
            tls: TlsConfig::default(),
            nats: NatsConfig::default(),
            clustering: ClusteringConfig {
                server_id: None,
                namespace: DEFAULT_NAMESPACE.into(),
                raft_snapshot_retain: 2,
                raft_snapshot_threshold: 8192,
                raft_cache_size: 512,
                raft_bootstrap_seed: false,
                raft_bootstrap_peers: Vec::new(),
                raft_max_quorum_size: 0,
                replica_max_lag_time: Duration::from_secs(15),
                replica_max_leader_timeout: Duration::from_secs(15),
                replica_max_idle_wait: Duration::from_secs(10),
                replica_fetch_timeout: Duration::from_secs(3),
                min_insync_replicas: 1,
                replication_max_bytes: 1024 * 1024,
            },
            activity: ActivityConfig {
                enabled: false,
                publish_timeout: Duration::from_secs(5),
                publish_ack_policy: "all".into(),
            },
            cursors: CursorsConfig {
                stream_partitions: 0,
                stream_replication_factor: -1,
                stream_auto_pause_time: Duration::from_secs(60),
            },
            groups: GroupsConfig {
                consumer_timeout: Duration::from_secs(15),
                coordinator_timeout: Duration::from_secs(15),
            },
            worker_threads: None,
        }
    }
}

impl Config {
    /// Loads the configuration the way `liftbridge` does at start-up: defaults, then the file (if any), then the
    /// `LIFTBRIDGE_…` environment, then the flags. Fails with the offending key named.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = &flags.config {
            source::apply_file(&mut config, path)?;
        }
        source::apply_env(&mut config, std::env::vars())?;
        flags.apply(&mut config)?;
        Ok(config)
    }

    /// The directory holding everything this server stores.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/tmp/liftbridge").join(&self.clustering.namespace))
    }

    /// The address the gRPC listener binds, as `host:port` (resolved when binding).
    pub fn listen_addr(&self) -> String {
        self.listen
            .clone()
            .unwrap_or_else(|| format!("0.0.0.0:{}", self.port))
    }

    /// The segment roll age in effect: the configured one, else the retention age, never below one second.
    pub fn segment_max_age(&self) -> Duration {
        self.streams
            .segment_max_age
            .unwrap_or(self.streams.retention_max_age)
            .max(Duration::from_secs(1))
    }
}
