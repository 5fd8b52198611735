//! An in-process Liftbridge server for integration tests (cargo feature `testing`).
//!
//! [`TestServer::start`] runs a standalone server (with its embedded NATS broker) on loopback, in a temporary
//! directory, on the test's tokio runtime. Clients reach it through a small TCP proxy owned by the
//! `TestServer`, which is what makes faults easy to stage:
//!
//! - [`stop`](TestServer::stop) cuts every client connection at once (clients see what a crash looks like:
//!   the connection drops) and shuts the server down; the port is then closed (connection refused).
//! - [`restart`](TestServer::restart) starts the server again on the same data directory and **the same
//!   port** (the proxy re-binds it), so clients reconnect to the address they know.
//! - [`kill_connections`](TestServer::kill_connections) drops every connection, the server keeps running.
//! - [`set_stalled`](TestServer::set_stalled) holds all traffic (connections stay open, nothing moves), for
//!   slow-server and timeout tests.
//! - [`TestServerBuilder::tls`] makes the proxy terminate TLS (optionally requiring client certificates), so
//!   TLS clients can be tested although the server itself speaks plain gRPC.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use liftbridge::testing::TestServer;
//! use liftbridge::StreamOptions;
//!
//! let server = TestServer::start().await?;
//! let client = server.client().await?;
//! client.create_stream(StreamOptions::new("events", "events")).await?;
//! let ack = client.publish("events", "hello").await?;
//! assert_eq!(ack.offset(), 0);
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use liftbridge_server::config::Config;
use liftbridge_server::server::{Server, ServerError, ServerInfo};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientBuilder};

/// How long a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping server may take before its task is aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a restart keeps trying to re-bind the port.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a test server could not start, stop or restart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestServerError {
    /// A socket or the temporary directory failed.
    #[error("test server I/O: {0}")]
    Io(#[from] io::Error),
    /// The server failed to start or stopped with an error.
    #[error("test server: {0}")]
    Server(String),
    /// The TLS material is unusable.
    #[error("test server TLS: {0}")]
    Tls(String),
}

/// Server-side TLS of the proxy: certificate chain and key (PEM), and optionally the CA client certificates
/// must be signed by (mutual TLS).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The server's private key, PEM.
    pub key_pem: Vec<u8>,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca_pem: Option<Vec<u8>>,
}

type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// Options of a [`TestServer`].
#[must_use = "a builder does nothing until .start() is awaited"]
pub struct TestServerBuilder {
    tweak: Option<Tweak>,
    tls: Option<ServerTls>,
    proxy: bool,
}

impl std::fmt::Debug for TestServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServerBuilder")
            .field("tls", &self.tls.is_some())
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl TestServerBuilder {
    /// Adjusts the server configuration (applied at every start and restart).
    pub fn config(mut self, tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        self.tweak = Some(Arc::new(tweak));
        self
    }

    /// Terminates TLS in front of the server.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self.proxy = true;
        self
    }

    /// Serves clients directly, without the proxy: slightly faster (for benchmarks), but
    /// [`stop`](TestServer::stop) then waits for clients to disconnect (up to 10 s) and the fault switches
    /// ([`kill_connections`](TestServer::kill_connections), [`set_stalled`](TestServer::set_stalled)) do
    /// nothing.
    pub fn without_proxy(mut self) -> Self {
        self.proxy = false;
        self.tls = None;
        self
    }

    /// Starts the server.
    pub async fn start(self) -> Result<TestServer, TestServerError> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        let acceptor = self.tls.as_ref().map(tls_acceptor).transpose()?;
        let front = TcpListener::bind("127.0.0.1:0").await?;
        let port = front.local_addr()?.port();
        let mut server = TestServer {
            _dir: dir,
            data_dir,
            port,
            nats_port: None,
            tweak: self.tweak,
            proxy: self.proxy.then(|| Proxy::new(acceptor)),
            running: None,
        };
        server.launch(front).await?;
        Ok(server)
    }
}

/// A running in-process Liftbridge server; stopped when dropped. See the [module docs](self).
pub struct TestServer {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    /// The port clients use; kept across restarts.
    port: u16,
    /// The embedded NATS broker's port, reused across restarts when possible.
    nats_port: Option<u16>,
    tweak: Option<Tweak>,
    proxy: Option<Proxy>,
    running: Option<Running>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr())
            .field("data_dir", &self.data_dir)
            .field("running", &self.running.is_some())
            .finish()
    }
}

struct Running {
    info: ServerInfo,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    /// Starts a server with the default configuration.
    pub async fn start() -> Result<TestServer, TestServerError> {
        TestServer::builder().start().await
    }

    /// A builder for a server with options.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            tweak: None,
            tls: None,
            proxy: true,
        }
    }

    /// The address clients connect to (`127.0.0.1:<port>`), the same across restarts.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `nats://…` of the server's embedded NATS broker (for publishing with a plain NATS client). It may change
    /// across restarts if the old port was taken meanwhile.
    pub fn nats_url(&self) -> Option<&str> {
        self.running.as_ref()?.info.nats_url.as_deref()
    }

    /// The server id (kept across restarts).
    pub fn server_id(&self) -> Option<&str> {
        self.running.as_ref().map(|r| r.info.server_id.as_str())
    }

    /// The server's data directory (inside a temporary directory removed on drop).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the server runs.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// A client builder aimed at this server.
    pub fn client_builder(&self) -> ClientBuilder {
        Client::builder([self.addr().to_string()])
    }

    /// A client with default options (for a TLS server, use [`client_builder`](TestServer::client_builder)
    /// and add the TLS options).
    pub async fn client(&self) -> crate::Result<Client> {
        self.client_builder().connect().await
    }

    /// Cuts every client connection and stops the server (its data stays for [`restart`](TestServer::restart)).
    pub async fn stop(&mut self) -> Result<(), TestServerError> {
        if let Some(proxy) = &self.proxy {
            proxy.close();
        }
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        if let Some(tx) = running.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(STOP_TIMEOUT, &mut running.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(TestServerError::Server(e.to_string())),
            Ok(Err(e)) => Err(TestServerError::Server(format!("server task failed: {e}"))),
            Err(_) => {
                running.task.abort();
                Ok(())
            }
        }
    }

    /// Stops the server if it runs, then starts it again on the same data directory and port.
    pub async fn restart(&mut self) -> Result<(), TestServerError> {
        self.stop().await?;
        let front = bind_port(self.port).await?;
        self.launch(front).await
    }

    /// Drops every open client connection; the server keeps running and clients reconnect.
    pub fn kill_connections(&self) {
        if let Some(proxy) = &self.proxy {
            proxy.kill_connections();
        }
    }

    /// Holds (`true`) or releases (`false`) all traffic between clients and the server, without closing
    /// connections: requests and acks wait in the proxy.
    pub fn set_stalled(&self, stalled: bool) {
        if let Some(proxy) = &self.proxy {
            proxy.stalled.send_replace(stalled);
        }
    }

    /// Starts the server behind `front` (the listener clients use).
    async fn launch(&mut self, front: TcpListener) -> Result<(), TestServerError> {
        let (mut proxy_front, mut server_front) = if self.proxy.is_some() {
            (Some(front), None)
        } else {
            (None, Some(front))
        };
        let mut nats_port = self.nats_port;
        let running = loop {
            let listener = match server_front.take() {
                Some(l) => l,
                None if self.proxy.is_some() => TcpListener::bind("127.0.0.1:0").await?,
                None => bind_port(self.port).await?,
            };
            match self.spawn_server(listener, nats_port).await {
                Ok(r) => break r,
                Err(e) if nats_port.is_some() => {
                    tracing::debug!(error = %e, "embedded NATS port taken; using a new one");
                    nats_port = None;
                }
                Err(e) => return Err(e),
            }
        };
        self.nats_port = running
            .info
            .nats_url
            .as_deref()
            .and_then(|u| u.rsplit(':').next())
            .and_then(|p| p.parse().ok());
        if let (Some(proxy), Some(front)) = (&mut self.proxy, proxy_front.take()) {
            proxy.open(front, running.info.addr);
        }
        self.running = Some(running);
        Ok(())
    }

    async fn spawn_server(
        &self,
        listener: TcpListener,
        nats_port: Option<u16>,
    ) -> Result<Running, TestServerError> {
        let mut config = Config {
            data_dir: Some(self.data_dir.clone()),
            port: self.port,
            host: "127.0.0.1".into(),
            ..Config::default()
        };
        config.nats.embedded_host = Some("127.0.0.1".into());
        config.nats.embedded_port = Some(nats_port.unwrap_or(0));
        if let Some(tweak) = &self.tweak {
            tweak(&mut config);
        }
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<ServerInfo>();
        let mut task = tokio::spawn(async move {
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
        let info = match tokio::time::timeout(START_TIMEOUT, ready_rx).await {
            Ok(Ok(info)) => info,
            Ok(Err(_)) => {
                let why = match (&mut task).await {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "it stopped before becoming ready".to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(TestServerError::Server(format!(
                    "the server did not start: {why}"
                )));
            }
            Err(_) => {
                task.abort();
                return Err(TestServerError::Server(format!(
                    "the server was not ready within {START_TIMEOUT:?}"
                )));
            }
        };
        Ok(Running {
            info,
            shutdown: Some(shutdown),
            task,
        })
    }
}

/// Binds `127.0.0.1:port`, retrying for a while (the previous socket may still be closing).
async fn bind_port(port: u16) -> io::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(port, error = %e, "port not free yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(proxy) = &self.proxy {
            proxy.close();
        }
        if let Some(mut running) = self.running.take() {
            if let Some(tx) = running.shutdown.take() {
                let _ = tx.send(());
            }
            // Let it stop in the background; abort if the runtime goes away first.
            drop(running.task);
        }
    }
}

fn tls_acceptor(tls: &ServerTls) -> Result<tokio_rustls::TlsAcceptor, TestServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| TestServerError::Tls(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("server certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| bad("server key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocol versions", &e))?;
    let builder = match &tls.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(cert.map_err(|e| bad("client CA", &e))?)
                    .map_err(|e| bad("client CA", &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad("client verifier", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad("server certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The TCP (or TLS) proxy in front of the server.
struct Proxy {
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// Cancels the accept loop and, through child tokens, every connection.
    listening: Mutex<CancellationToken>,
    /// Cancels the current connections only.
    connections: Arc<Mutex<CancellationToken>>,
    stalled: watch::Sender<bool>,
}

impl Proxy {
    fn new(acceptor: Option<tokio_rustls::TlsAcceptor>) -> Self {
        Proxy {
            acceptor,
            listening: Mutex::new(CancellationToken::new()),
            connections: Arc::new(Mutex::new(CancellationToken::new())),
            stalled: watch::channel(false).0,
        }
    }

    /// Accepts on `front` and forwards to `upstream`.
    fn open(&mut self, front: TcpListener, upstream: SocketAddr) {
        let listening = CancellationToken::new();
        *self.listening.lock() = listening.clone();
        *self.connections.lock() = listening.child_token();
        let connections = self.connections.clone();
        let acceptor = self.acceptor.clone();
        let stalled = self.stalled.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = listening.cancelled() => return,
                    accepted = front.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let cancel = connections.lock().clone();
                let acceptor = acceptor.clone();
                let stalled = stalled.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = forward(client, upstream, acceptor, stalled) => {}
                    }
                });
            }
        });
    }

    fn kill_connections(&self) {
        let mut current = self.connections.lock();
        current.cancel();
        *current = self.listening.lock().child_token();
    }

    fn close(&self) {
        self.listening.lock().cancel();
    }
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stalled: watch::Receiver<bool>,
) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let server = TcpStream::connect(upstream).await?;
    let _ = server.set_nodelay(true);
    let (server_read, server_write) = server.into_split();
    match acceptor {
        None => {
            let (client_read, client_write) = client.into_split();
            tokio::select! {
                r = pipe(client_read, server_write, stalled.clone()) => r,
                r = pipe(server_read, client_write, stalled) => r,
            }
        }
        Some(acceptor) => {
            let tls = acceptor.accept(client).await?;
            let (client_read, client_write) = tokio::io::split(tls);
            tokio::select! {
                r = pipe(client_read, server_write, stalled.clone()) => r,
                r = pipe(server_read, client_write, stalled) => r,
            }
        }
    }
}

/// Copies `from` to `to`, holding data while the proxy is stalled.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut stalled: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                break;
            }
        }
        to.write_all(&buf[..n]).await?;
    }
}
