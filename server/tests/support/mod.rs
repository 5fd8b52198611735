//! Shared test fixtures: real processes started on loopback with random ports and stopped by pid.
#![allow(dead_code)]

use std::time::Duration;

/// A `nats-server` child process on a free loopback port, killed when dropped.
#[allow(
    unused_imports,
    reason = "every test binary includes this module; not all of them start NATS"
)]
pub use liftbridge_testkit::NatsServer;

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use liftbridge_server::config::Config;
use liftbridge_server::server::{Server, ServerError, ServerInfo};
use tonic::transport::Channel;

/// A liftbridge server running in this process on `127.0.0.1:0`, stopped when dropped.
pub struct TestServer {
    /// The gRPC address.
    pub addr: std::net::SocketAddr,
    /// The server id.
    pub server_id: String,
    /// The embedded broker's `nats://` URL (standalone servers only).
    pub nats_url: Option<String>,
    /// The data directory (kept by the caller's `TempDir`).
    pub data_dir: std::path::PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server on `nats_url` storing into `data_dir`, with `tweak` applied to the config.
    pub async fn start(
        nats_url: &str,
        data_dir: &std::path::Path,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let nats_url = nats_url.to_string();
        Self::start_with(data_dir, move |config| {
            config.nats.servers = vec![nats_url];
            tweak(config);
        })
        .await
    }

    /// Starts a standalone server: its own embedded NATS broker on a free loopback port.
    pub async fn start_standalone(
        data_dir: &std::path::Path,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        Self::start_with(data_dir, move |config| {
            config.nats.embedded_host = Some("127.0.0.1".into());
            config.nats.embedded_port = Some(0);
            tweak(config);
        })
        .await
    }

    async fn start_with(data_dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            data_dir: Some(data_dir.to_path_buf()),
            port: 0,
            host: "127.0.0.1".into(),
            ..Config::default()
        };
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<ServerInfo>();
        let task = tokio::spawn(async move {
            Server::run_with(
                listener,
                config,
                async move {
                    let _ = shutdown_rx.await;
                },
                move |info| {
                    let _ = ready_tx.send(info);
                },
            )
            .await
        });
        let info = match tokio::time::timeout(Duration::from_secs(20), ready_rx).await {
            Ok(Ok(info)) => info,
            _ => {
                let result = task.await;
                panic!("server did not become ready: {result:?}");
            }
        };
        TestServer {
            nats_url: info.nats_url,
            addr: info.addr,
            server_id: info.server_id,
            data_dir: data_dir.to_path_buf(),
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// A gRPC client for the server.
    pub async fn client(&self) -> ApiClient<Channel> {
        ApiClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect gRPC")
    }

    /// Stops the server gracefully and returns how `Server::run` ended.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.stop_inner().await
    }

    async fn stop_inner(&mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops within 30 s")
                .expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A `CreateStreamRequest` with just subject, name and partitions.
pub fn create_request(subject: &str, name: &str, partitions: i32) -> pb::CreateStreamRequest {
    pb::CreateStreamRequest {
        subject: subject.into(),
        name: name.into(),
        partitions,
        ..Default::default()
    }
}

/// Waits until the NATS server has processed everything `client` sent so far (async-nats' `flush` only empties
/// the socket buffer): a request to an inbox nobody listens on returns "no responders" after a round trip.
pub async fn nats_round_trip(client: &async_nats::Client) {
    client.flush().await.expect("flush");
    match client
        .request(client.new_inbox(), bytes::Bytes::new())
        .await
    {
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        other => panic!("expected no responders from the round-trip probe, got {other:?}"),
    }
}

/// Embedded-broker settings for tests: loopback, any free port, defaults otherwise.
pub fn broker_config() -> liftbridge_server::broker::BrokerConfig {
    liftbridge_server::broker::BrokerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..Default::default()
    }
}

/// Starts an embedded broker with `config`.
pub async fn start_broker(
    config: liftbridge_server::broker::BrokerConfig,
) -> liftbridge_server::broker::EmbeddedBroker {
    liftbridge_server::broker::EmbeddedBroker::start(config, None)
        .await
        .expect("broker starts")
}
