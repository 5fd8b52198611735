//! Command-line flags of the `liftbridge` binary: Liftbridge's own flags, applied over the file and environment.

use std::path::PathBuf;

use clap::Parser;
use serde_yaml_ng::Value;

use super::{Config, ConfigError, source};

/// `liftbridge` — durable, replicated message streams for NATS (Liftbridge-compatible).
///
/// Starts one server. With no NATS servers configured it runs its own embedded NATS broker, so one process is a
/// whole system; point it at real NATS servers with `-n nats://host:4222`. Settings come from `liftbridge.yaml`
/// (`-c`), then `LIFTBRIDGE_<KEY>` environment variables (e.g. `LIFTBRIDGE_CLUSTERING_SERVER_ID`), then these
/// flags. See docs/configuration.md for every key.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "liftbridge", version, about, long_about = None)]
pub struct Flags {
    /// Load settings from this liftbridge.yaml file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Store streams and server state here (default /tmp/liftbridge/<namespace>).
    #[arg(short = 'd', long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Port for the gRPC API (default 9292; 0 picks a free port).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,

    /// Host name advertised to clients (default localhost).
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<String>,

    /// Comma-separated NATS server URLs to use instead of the embedded broker.
    #[arg(
        short = 'n',
        long = "nats-servers",
        value_name = "URLS",
        value_delimiter = ','
    )]
    pub nats_servers: Vec<String>,

    /// Run the embedded NATS broker (the default when no NATS servers are given).
    #[arg(short = 'e', long = "embedded-nats")]
    pub embedded_nats: bool,

    /// Configuration file for the embedded NATS broker (implies --embedded-nats).
    #[arg(long = "embedded-nats-config", alias = "nc", value_name = "FILE")]
    pub embedded_nats_config: Option<PathBuf>,

    /// Server id (default: generated once, then kept in the data directory).
    #[arg(long = "id", value_name = "ID")]
    pub id: Option<String>,

    /// Cluster namespace (default liftbridge-default).
    #[arg(long = "ns", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Bootstrap a new cluster with this server as its seed.
    #[arg(long = "raft-bootstrap-seed")]
    pub raft_bootstrap_seed: bool,

    /// Bootstrap a new cluster with this comma-separated list of server ids.
    #[arg(
        long = "raft-bootstrap-peers",
        value_name = "IDS",
        value_delimiter = ','
    )]
    pub raft_bootstrap_peers: Vec<String>,

    /// Log level: debug, info, warn or error (default info).
    #[arg(short = 'l', long = "level", value_name = "LEVEL")]
    pub level: Option<String>,

    /// TLS certificate (PEM) for the gRPC API.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for the gRPC API.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

impl Flags {
    /// Applies every flag that was given over `config`, validating like the file loader does.
    pub fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        let origin = "command-line flags";
        let mut set = |key: &str, value: Value| source::set(config, key, &value, origin);
        let path = |p: &PathBuf| Value::String(p.display().to_string());
        if let Some(dir) = &self.data_dir {
            set("data.dir", path(dir))?;
        }
        if let Some(port) = self.port {
            set("port", Value::Number(port.into()))?;
        }
        if let Some(host) = &self.host {
            set("host", Value::String(host.clone()))?;
        }
        if !self.nats_servers.is_empty() {
            let list = self
                .nats_servers
                .iter()
                .cloned()
                .map(Value::String)
                .collect();
            set("nats.servers", Value::Sequence(list))?;
        }
        if self.embedded_nats {
            set("nats.embedded", Value::Bool(true))?;
        }
        if let Some(file) = &self.embedded_nats_config {
            set("nats.embedded.config", path(file))?;
        }
        if let Some(id) = &self.id {
            set("clustering.server.id", Value::String(id.clone()))?;
        }
        if let Some(ns) = &self.namespace {
            set("clustering.namespace", Value::String(ns.clone()))?;
        }
        if self.raft_bootstrap_seed {
            set("clustering.raft.bootstrap.seed", Value::Bool(true))?;
        }
        if !self.raft_bootstrap_peers.is_empty() {
            let list = self
                .raft_bootstrap_peers
                .iter()
                .cloned()
                .map(Value::String)
                .collect();
            set("clustering.raft.bootstrap.peers", Value::Sequence(list))?;
        }
        if let Some(level) = &self.level {
            set("logging.level", Value::String(level.clone()))?;
        }
        if let Some(cert) = &self.tls_cert {
            set("tls.cert", path(cert))?;
        }
        if let Some(key) = &self.tls_key {
            set("tls.key", path(key))?;
        }
        Ok(())
    }
}
