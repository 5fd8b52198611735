//! Wiring and lifecycle: one `liftbridge` server from a bound listener, a configuration and a shutdown signal.
//!
//! `Server::run` opens the data directory (server id, metadata), connects the Bus, starts the partition manager
//! and the ack router, and serves the gRPC API (with the gRPC health service) until `shutdown` completes. Then
//! it stops accepting RPCs, stops every partition at a batch boundary (flushing and checkpointing its log) and
//! returns.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use liftbridge_proto::pb::api_server::ApiServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::delivery::ApiRoutes;
use crate::api::{AckRouter, ApiContext, ApiService};
use crate::broker::{BrokerConfig, EmbeddedBroker};
use crate::bus::nats::NatsOptions;
use crate::bus::{Bus, NatsBus};
use crate::config::Config;
use crate::metadata::raft::{self, Bootstrap};
use crate::metadata::{Metadata, write_atomically};
use crate::partition::PartitionManager;
use crate::partition::intake::Intake;
use crate::presence::{BrokerInfo, Presence};

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory is unusable.
    #[error("data directory {path}: {message}")]
    DataDir {
        /// The directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// NATS could not be reached.
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// The embedded NATS broker could not start (its message says why and what to do instead).
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// The metadata could not be loaded.
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
    /// The configuration asks for something this server cannot do yet.
    #[error("{0}")]
    Unsupported(String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(String),
    /// The TLS settings (`tls.*`) cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A running server's handles, for tests and embedding.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// This server's id.
    pub server_id: String,
    /// The gRPC address actually bound.
    pub addr: std::net::SocketAddr,
    /// `nats://…` of the embedded broker, when the server runs one (standalone mode).
    pub nats_url: Option<String>,
}

/// HTTP/2 connection flow-control window of the gRPC API (see where it is set).
const GRPC_CONNECTION_WINDOW: u32 = 4 << 20;

/// Largest gRPC request the API decodes (a publish of a large message, with room for its envelope).
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The Liftbridge server.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Runs a server on `listener` until `shutdown` completes.
    pub async fn run(
        listener: TcpListener,
        config: Config,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        Self::run_with(listener, config, shutdown, |_| {}).await
    }

    /// Like [`Server::run`], calling `on_ready` once the API accepts requests.
    pub async fn run_with(
        listener: TcpListener,
        config: Config,
        shutdown: impl Future<Output = ()> + Send + 'static,
        on_ready: impl FnOnce(ServerInfo),
    ) -> Result<(), ServerError> {
        let config = Arc::new(config);
        // Checked first: a bad certificate path stops the server before it touches NATS or the data dir.
        let tls = crate::tls::server_tls(&config.tls)?;
        let data_dir = config.data_dir();
        std::fs::create_dir_all(&data_dir).map_err(|e| ServerError::DataDir {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let server_id = server_id(&config, &data_dir)?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::Transport(e.to_string()))?;

        let (bus, broker): (Arc<dyn Bus>, Option<EmbeddedBroker>) = if config.nats.use_embedded() {
            let broker = start_broker(&config).await?;
            (Arc::new(broker.bus()), Some(broker))
        } else {
            let nats = NatsBus::connect(&NatsOptions {
                servers: config.nats.servers.clone(),
                user: config.nats.user.clone(),
                password: config.nats.password.clone(),
                name: Some(format!(
                    "LIFT.{}.{}",
                    config.clustering.namespace, server_id
                )),
                no_echo: false,
            })
            .await?;
            (Arc::new(nats), None)
        };
        let nats_url = broker.as_ref().map(EmbeddedBroker::client_url);
        // API publishes leave on a `no_echo` connection of their own so this server's leaders take them
        // in-process (see `partition::intake`); the embedded broker's in-process path needs no such help.
        let intake = if broker.is_some() {
            Intake::pass_through(bus.clone())
        } else {
            let conn = NatsBus::connect(&NatsOptions {
                servers: config.nats.servers.clone(),
                user: config.nats.user.clone(),
                password: config.nats.password.clone(),
                name: Some(format!(
                    "LIFT.{}.{}.intake",
                    config.clustering.namespace, server_id
                )),
                no_echo: true,
            })
            .await?;
            Intake::local(Arc::new(conn))
        };

        let advertised_port = if config.port == 0 {
            addr.port()
        } else {
            config.port
        };
        let me = BrokerInfo {
            id: server_id.clone(),
            host: config.host.clone(),
            port: advertised_port,
        };
        let (metadata, presence) = match cluster_bootstrap(&config, &data_dir, &bus).await {
            Some(bootstrap) => {
                let metadata = Metadata::open_clustered(
                    &data_dir,
                    server_id.clone(),
                    bus.clone(),
                    &config.clustering,
                    bootstrap,
                )
                .await?;
                let presence = Presence::start(
                    bus.clone(),
                    &config.clustering.namespace,
                    me,
                    presence_interval(&config),
                )
                .await?;
                (metadata, presence)
            }
            None => (
                Metadata::open(&data_dir, server_id.clone())?,
                Presence::local(me),
            ),
        };
        let acks = AckRouter::start(bus.clone(), &config.clustering.namespace).await?;
        let partitions = PartitionManager::new(
            config.clone(),
            data_dir.clone(),
            bus.clone(),
            Some(acks.clone() as Arc<dyn crate::partition::outbox::LocalInboxes>),
            intake.clone(),
            metadata.clone(),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        partitions.reconcile().await;
        let manager_task = tokio::spawn(partitions.clone().run(stop_rx.clone()));
        let query_task = if metadata.raft().is_some() {
            Some(partitions.serve_queries().await?)
        } else {
            None
        };
        let controller_task = metadata.raft().is_some().then(|| {
            tokio::spawn(crate::partition::controller::run(
                metadata.clone(),
                presence.clone(),
                config.clustering.replica_max_leader_timeout,
                stop_rx.clone(),
            ))
        });

        let ctx = Arc::new(ApiContext {
            config: config.clone(),
            metadata: metadata.clone(),
            partitions,
            bus: bus.clone(),
            intake: intake.clone(),
            acks,
            presence: presence.clone(),
            advertised_port,
            shutdown: stop_rx,
        });
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<ApiServer<ApiService>>().await;

        let nats = nats_url.as_deref().unwrap_or("external");
        tracing::info!(server_id, %addr, data_dir = %data_dir.display(), nats, "liftbridge is ready");
        on_ready(ServerInfo {
            server_id: server_id.clone(),
            addr,
            nats_url,
        });

        // On shutdown, first end every open stream (partitions close, so subscriptions end with Unavailable;
        // PublishAsync sessions end), because tonic's graceful shutdown waits for open streams to finish.
        let stopping = {
            let stop_tx = stop_tx.clone();
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            }
        };
        let mut grpc = tonic::transport::Server::builder()
            // A connection window well above the per-stream one (64 KiB): h2 allows small unread DATA frames up
            // to half the connection window in framing overhead, so a client streaming many small PublishAsync
            // requests one frame each (grpcio does) must not trip its "too_many_data_frames" GOAWAY while
            // this server briefly lags; each stream's own flow control still bounds what it buffers.
            .initial_connection_window_size(Some(GRPC_CONNECTION_WINDOW));
        if let Some(tls) = tls {
            grpc = grpc
                .tls_config(tls)
                .map_err(|e| ServerError::Transport(format!("TLS: {e}")))?;
        }
        let served = grpc
            .add_service(health_service)
            .add_service(ApiRoutes::new(
                ApiServer::new(ApiService::new(ctx.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
                ctx,
                MAX_REQUEST_BYTES,
            ))
            // TCP_NODELAY on every accepted connection: without it Nagle holds back small HTTP/2 frames (acks,
            // subscribe batches) while earlier ones are unacknowledged, adding milliseconds to pipelined publishes.
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                stopping,
            )
            .await;

        tracing::info!("shutting down: stopping partitions");
        let _ = stop_tx.send(true);
        // Every step below may wait on NATS (a final flush, a Raft message, a follower's fetch); with NATS gone
        // those waits never end, so each step gets a deadline and shutdown always completes.
        shutdown_step("partitions", manager_task).await;
        // Leading nothing now: say goodbye, so the controller moves leadership without waiting out the timeout.
        shutdown_step("presence", async {
            if let Err(e) = presence.leave().await {
                tracing::debug!(error = %e, "could not announce leaving");
            }
        })
        .await;
        if let Some(task) = query_task {
            task.abort();
        }
        if let Some(task) = controller_task {
            shutdown_step("controller", task).await;
        }
        shutdown_step("metadata", metadata.shutdown()).await;
        shutdown_step("NATS flush", async {
            let _ = futures::join!(bus.flush(), intake.flush());
        })
        .await;
        if let Some(broker) = broker {
            broker.shutdown().await;
        }
        served.map_err(|e| ServerError::Transport(e.to_string()))
    }
}

/// How long one shutdown step may take before the server goes on without it.
const SHUTDOWN_STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs one shutdown step, giving up (with a warning) after [`SHUTDOWN_STEP`].
async fn shutdown_step<T>(what: &str, step: impl Future<Output = T>) {
    if tokio::time::timeout(SHUTDOWN_STEP, step).await.is_err() {
        tracing::warn!(
            step = what,
            "shutdown step did not finish in {SHUTDOWN_STEP:?}; going on without it"
        );
    }
}

/// Whether this server runs clustered, and how it enters the cluster: it has Raft state already (a restart), it
/// is the seed or one of the bootstrap peers, or a cluster answers in its namespace (it joins). Otherwise it runs
/// alone with its metadata in `metadata.json`.
async fn cluster_bootstrap(
    config: &Config,
    data_dir: &Path,
    bus: &Arc<dyn Bus>,
) -> Option<Bootstrap> {
    let clustering = &config.clustering;
    if clustering.raft_bootstrap_seed {
        Some(Bootstrap::Seed)
    } else if !clustering.raft_bootstrap_peers.is_empty() {
        Some(Bootstrap::Peers(clustering.raft_bootstrap_peers.clone()))
    } else if raft::has_state(&data_dir.join("raft")) {
        Some(Bootstrap::Join)
    } else {
        raft::cluster_exists(bus, &clustering.namespace)
            .await
            .map(|_| Bootstrap::Join)
    }
}

/// How often a clustered server announces itself: often enough that a silent partition leader is noticed well
/// within `clustering.replica.max.leader.timeout`.
fn presence_interval(config: &Config) -> std::time::Duration {
    (config.clustering.replica_max_leader_timeout / 5).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(1),
    )
}

/// Starts the embedded broker: the broker config file (`nats.embedded.config`) if any, then our
/// `nats.embedded.host`/`.port` keys.
async fn start_broker(config: &Config) -> Result<EmbeddedBroker, ServerError> {
    let mut broker_config = match &config.nats.embedded_config {
        Some(path) => BrokerConfig::from_file(path).map_err(crate::broker::BrokerError::from)?,
        None => BrokerConfig::default(),
    };
    if let Some(host) = &config.nats.embedded_host {
        broker_config.host = host.clone();
    }
    if let Some(port) = config.nats.embedded_port {
        broker_config.port = port;
    }
    if !config.nats.servers.is_empty() {
        tracing::warn!(servers = ?config.nats.servers, "nats.embedded is set: using the embedded broker, not nats.servers");
    }
    Ok(EmbeddedBroker::start(broker_config, None).await?)
}

/// The configured server id, or the one generated on first start and kept in `<data.dir>/server-id`.
fn server_id(config: &Config, data_dir: &Path) -> Result<String, ServerError> {
    let path = data_dir.join("server-id");
    let data_err = |message: String| ServerError::DataDir {
        path: path.display().to_string(),
        message,
    };
    let id = match &config.clustering.server_id {
        Some(id) => id.clone(),
        None => match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
            Ok(_) => generate_id(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate_id(),
            Err(e) => return Err(data_err(e.to_string())),
        },
    };
    if id.is_empty() || id.contains(['.', '*', '>', ' ', '/']) {
        return Err(ServerError::Unsupported(format!(
            "server id {id:?} must be non-empty and free of '.', '*', '>', '/' and spaces"
        )));
    }
    write_atomically(&path, id.as_bytes()).map_err(|e| data_err(e.to_string()))?;
    Ok(id)
}

fn generate_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
