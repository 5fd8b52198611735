//! The embedded NATS broker: an in-process server speaking the core NATS client protocol, so that one
//! `liftbridge` process is the whole system (standalone mode), and any NATS client — `async-nats`, `nats-py`, the
//! Go client, the `nats` CLI — can connect to it.
//!
//! It is what the server uses when no NATS servers are configured. Production clusters use real NATS servers
//! through [`crate::bus::NatsBus`]; both sit behind [`crate::bus::Bus`].
//!
//! # What it speaks
//! Core NATS (nats-server 2.x client protocol): `INFO`, `CONNECT` (`verbose`, `pedantic`, `headers`,
//! `no_responders`, `echo`, `user`/`pass`/`auth_token`, `name`), `PUB`, `HPUB`, `SUB` (queue groups), `UNSUB`
//! (with max), `MSG`, `HMSG`, `PING`/`PONG`, `+OK`/`-ERR`; `*` and `>` wildcards; queue groups (one random member
//! per group); no-responders `503` status for requesters that ask for it; `max_payload`, control line limit and
//! subject checks with nats-server's `-ERR` texts; user/password or token auth; server pings and stale
//! connection detection; bounded outbound buffers with slow consumer disconnects. Not supported (use a real
//! nats-server): TLS, clustering/routes, leaf nodes, accounts, JetStream, monitoring endpoints.
//!
//! # Differences from nats-server (2.9/2.10) on the wire
//! Checked byte for byte against a real nats-server with the same inputs; where they differ:
//! - malformed arguments (`PUB foo`, `PUB foo -5`, too many arguments) and a `CONNECT` that is not JSON get
//!   `-ERR 'Unknown Protocol Operation'` before the disconnect (nats-server closes without a word);
//! - the control line error reads `Maximum Control Line Exceeded` (nats-server 2.9+ sends it lowercase);
//! - blank lines between operations are ignored (nats-server treats them as an unknown operation);
//! - `HPUB` is accepted from a client that did not announce `headers` in `CONNECT` (nats-server disconnects it);
//! - a slow consumer gets `-ERR 'Slow Consumer'` when that cannot land in the middle of a message;
//! - `INFO` reports `version` 2.10.0 (the protocol level we implement) and an empty `go`.
//!
//! Everything else seen in those comparisons matches: `+OK` placement (a `PUB`'s `+OK` precedes the message
//! it delivers to its own connection), `verbose`/`pedantic` defaulting to on when `CONNECT` omits them (and
//! before `CONNECT`), pedantic `-ERR 'Invalid Publish Subject'` with the message still routed, `Invalid
//! Subject` for structurally bad `SUB`s, duplicate sids ignored, `UNSUB` max, no-responders `HMSG`, header
//! blocks passed through unchecked.
//!
//! # Use
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use liftbridge_server::broker::{BrokerConfig, EmbeddedBroker};
//! use liftbridge_server::bus::Bus;
//!
//! // Defaults are nats-server's: 0.0.0.0:4222, max_payload 1 MiB, ... (see `BrokerConfig`).
//! // With `nats.embedded.config`: `BrokerConfig::from_file(path)?`.
//! let config = BrokerConfig { host: "127.0.0.1".into(), ..BrokerConfig::default() };
//! let broker = EmbeddedBroker::start(config, None).await?; // or Some(already bound TcpListener)
//! println!("NATS clients can connect to {}", broker.client_url());
//! let bus: Arc<dyn Bus> = Arc::new(broker.bus());        // in-process fast path
//! // ... run the server on `bus` ...
//! broker.shutdown().await;                                // closes clients, ends subscriptions
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`EmbeddedBroker`] (here): start (bind or take a listener), accept loop, shutdown, stats.
//! - [`config`]: [`BrokerConfig`] and the nats-server configuration file subset; `config_file`: its syntax.
//! - [`protocol`]: the client protocol parser and encoders.
//! - [`subject`]: subject validation and wildcard matching.
//! - [`sublist`]: the subscription index (token trie + match cache).
//! - `router`: shared broker state and delivery of a message to its subscriptions.
//! - `connection`: one TCP client (reader and writer tasks, outbound buffer, pings, slow consumers).
//! - `local`: [`EmbeddedBus`], the in-process fast path; `subscription`: a subscription and its target.

pub mod config;
mod config_file;
mod connection;
mod local;
pub mod protocol;
mod router;
pub mod subject;
pub mod sublist;
mod subscription;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

pub use self::config::{BrokerAuth, BrokerConfig, ConfigError};
pub use self::local::EmbeddedBus;
pub use self::router::NATS_PROTOCOL_VERSION;
use self::router::Router;

/// How long [`EmbeddedBroker::shutdown`] lets clients receive what is queued for them before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The port is taken — most likely by a NATS server already running there.
    #[error(
        "cannot start the embedded NATS broker: {addr} is already in use, probably by a NATS server; \
         to use that server instead of the embedded broker, start with `-n nats://127.0.0.1:{port}`"
    )]
    AddrInUse {
        /// The address we tried to bind.
        addr: String,
        /// Its port.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Binding failed for another reason.
    #[error("cannot start the embedded NATS broker on {addr}: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: String,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A snapshot of the broker's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerStats {
    /// TCP clients connected now.
    pub connections: usize,
    /// TCP clients accepted since start.
    pub total_connections: u64,
    /// Subscriptions (TCP and in-process).
    pub subscriptions: usize,
    /// TCP clients disconnected as slow consumers.
    pub slow_consumers: u64,
    /// Messages dropped because an in-process subscriber was too far behind.
    pub local_dropped: u64,
}

/// A running embedded broker. Dropping it stops accepting and closes every connection (without waiting);
/// [`EmbeddedBroker::shutdown`] does the same and waits until everything has stopped.
pub struct EmbeddedBroker {
    /// Shared state (also held by connections and every [`EmbeddedBus`]).
    router: Arc<Router>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.router.local_addr)
            .field("server_id", &self.router.server_id)
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts the broker: validates `config`, binds `config.listen_addr()` unless a bound `listener` is given
    /// (then `config.host`/`config.port` are only reported in `INFO`), and starts accepting clients.
    ///
    /// A taken port is [`BrokerError::AddrInUse`], whose message suggests `-n nats://127.0.0.1:<port>` to use the
    /// NATS server that is probably listening there.
    pub async fn start(
        config: BrokerConfig,
        listener: Option<TcpListener>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        config.validate()?;
        let listener = match listener {
            Some(listener) => listener,
            None => {
                let addr = config.listen_addr();
                TcpListener::bind(&addr).await.map_err(|source| {
                    if source.kind() == std::io::ErrorKind::AddrInUse {
                        BrokerError::AddrInUse {
                            addr: addr.clone(),
                            port: config.port,
                            source,
                        }
                    } else {
                        BrokerError::Bind {
                            addr: addr.clone(),
                            source,
                        }
                    }
                })?
            }
        };
        let local_addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: config.listen_addr(),
            source,
        })?;
        let router = Arc::new(Router::new(config, local_addr));
        router.tasks.spawn(accept_loop(router.clone(), listener));
        tracing::info!(
            addr = %local_addr,
            server_id = %router.server_id,
            auth = router.config.auth.is_some(),
            "embedded NATS broker listening"
        );
        Ok(EmbeddedBroker { router })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.router.local_addr
    }

    /// A URL for NATS clients: `nats://<addr>`, with a wildcard host (`0.0.0.0`, `::`) replaced by loopback.
    pub fn client_url(&self) -> String {
        let addr = self.router.local_addr;
        let ip = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::IpAddr::from([127, 0, 0, 1]),
            ip if ip.is_unspecified() => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("nats://{}", SocketAddr::new(ip, addr.port()))
    }

    /// The in-process [`crate::bus::Bus`] on this broker (cheap to clone; `Arc::new(broker.bus())` gives an
    /// `Arc<dyn Bus>`).
    pub fn bus(&self) -> EmbeddedBus {
        EmbeddedBus::new(self.router.clone())
    }

    /// The settings in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.router.config
    }

    /// Current counters.
    pub fn stats(&self) -> BrokerStats {
        let counters = &self.router.counters;
        BrokerStats {
            connections: self.router.client_count(),
            total_connections: counters.total_connections.load(Ordering::Relaxed),
            subscriptions: self.router.sublist.len(),
            slow_consumers: counters.slow_consumers.load(Ordering::Relaxed),
            local_dropped: counters.local_dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, closes every client connection (each gets what was queued for it, for up to a second),
    /// ends every in-process subscription (after what is already queued) and fails pending requests, then
    /// waits for all of the broker's tasks. The port is free when this returns. Buses obtained from
    /// [`EmbeddedBroker::bus`] report `is_connected() == false` from then on.
    pub async fn shutdown(self) {
        self.router.begin_shutdown();
        let tasks = self.router.tasks.clone();
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            for client in self.router.clients() {
                client.abort();
            }
            tasks.wait().await;
        }
        self.router.clear_subscriptions();
        tracing::info!(addr = %self.router.local_addr, "embedded NATS broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if self.router.is_running() {
            self.router.begin_shutdown();
            for client in self.router.clients() {
                client.abort();
            }
        }
    }
}

impl Router {
    /// Marks the broker stopped, stops the accept loop and in-process subscriptions, and closes every client.
    fn begin_shutdown(&self) {
        self.running.store(false, Ordering::Release);
        self.shutdown.cancel();
        for client in self.clients() {
            client.close(connection::CloseReason::Shutdown);
        }
    }

    /// Drops every remaining subscription (their queues and the request inbox go with them).
    fn clear_subscriptions(&self) {
        let all = self.sublist.all();
        for sub in &all {
            sub.mark_closed();
        }
        self.sublist.remove_many(all.iter().map(|sub| sub.as_ref()));
    }
}

/// Accepts clients until shutdown.
async fn accept_loop(router: Arc<Router>, listener: TcpListener) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = router.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(error) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(%error, "embedded NATS broker: accept failed");
                tokio::select! {
                    _ = router.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if router.client_count() >= router.config.max_connections {
            tracing::warn!(%peer, max = router.config.max_connections, "embedded NATS broker: too many connections");
            router.tasks.spawn(async move {
                let line = protocol::err_line(protocol::MAX_CONNECTIONS_EXCEEDED);
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line)).await;
            });
            continue;
        }
        router
            .tasks
            .spawn(connection::serve(router.clone(), stream, peer));
    }
    tracing::debug!("embedded NATS broker: accept loop stopped");
}
