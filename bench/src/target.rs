//! The systems under test: a Liftbridge server through the Rust client, or NATS JetStream through async-nats.
//! Both are driven by the same publish and read loops ([`crate::producer`], [`crate::consumer`]).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use liftbridge::{Client, Message, StreamOptions};

use crate::workload::{AckMode, Workload};
use crate::{BenchError, Result};

/// How long a publish may wait for its ack (fsync-before-ack runs on a busy disk can be slow).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pending ack: resolves when the server acknowledged the message.
pub type AckWait = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A system to benchmark.
#[derive(Debug, Clone)]
pub enum Target {
    /// A Liftbridge server (ours or Go's), reached through the seed addresses.
    Liftbridge {
        /// `host:port` of one or more servers.
        addrs: Vec<String>,
    },
    /// A NATS server with JetStream enabled.
    JetStream {
        /// `nats://host:port`.
        url: String,
    },
}

impl Target {
    /// `liftbridge` or `jetstream`.
    pub fn system(&self) -> &'static str {
        match self {
            Target::Liftbridge { .. } => "liftbridge",
            Target::JetStream { .. } => "jetstream",
        }
    }

    /// Creates the workload's stream; with `fresh`, deletes an existing one first.
    pub async fn prepare_stream(&self, w: &Workload, fresh: bool) -> Result<()> {
        match self {
            Target::Liftbridge { .. } => {
                let client = self.liftbridge_client(1).await?;
                if fresh {
                    match client.delete_stream(&w.stream).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == liftbridge::ErrorKind::NoSuchStream => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let opts = StreamOptions::new(w.stream.as_str(), w.stream.as_str())
                    .partitions(w.partitions)
                    .replication_factor(w.replication);
                client.create_stream_if_not_exists(opts).await?;
                client
                    .wait_for_stream(&w.stream, Duration::from_secs(20))
                    .await?;
                client.close().await;
                Ok(())
            }
            Target::JetStream { url } => {
                if w.partitions != 1 {
                    return Err(BenchError::Invalid(
                        "JetStream streams have no partitions: use --partitions 1".into(),
                    ));
                }
                let js = jetstream::new(nats_connect(url).await?);
                if fresh {
                    let _ = js.delete_stream(&w.stream).await;
                }
                js.get_or_create_stream(jetstream::stream::Config {
                    name: w.stream.clone(),
                    subjects: vec![w.stream.clone()],
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: usize::try_from(w.replication).unwrap_or(1),
                    ..Default::default()
                })
                .await
                .map_err(nats_err)?;
                Ok(())
            }
        }
    }

    /// A Liftbridge client sized for `in_flight` unacknowledged messages.
    pub async fn liftbridge_client(&self, in_flight: usize) -> Result<Client> {
        let Target::Liftbridge { addrs } = self else {
            return Err(BenchError::Invalid("not a Liftbridge target".into()));
        };
        Ok(Client::builder(addrs.iter().map(String::as_str))
            .connect_timeout(CONNECT_TIMEOUT)
            .ack_timeout(ACK_TIMEOUT)
            .max_in_flight(in_flight.max(1))
            .connect()
            .await?)
    }

    /// A publisher on its own connection.
    pub async fn publisher(&self, w: &Workload) -> Result<Publisher> {
        match self {
            Target::Liftbridge { .. } => Ok(Publisher::Liftbridge {
                client: self.liftbridge_client(w.in_flight()).await?,
                stream: w.stream.clone(),
                partitions: w.partitions,
                ack_policy: w.ack_policy.to_client(),
            }),
            Target::JetStream { url } => {
                let client = nats_connect(url).await?;
                let mut js = jetstream::new(client.clone());
                js.set_timeout(ACK_TIMEOUT);
                Ok(Publisher::JetStream {
                    client,
                    js: Box::new(js),
                    subject: w.stream.clone(),
                    no_ack: w.ack_policy == AckMode::None,
                })
            }
        }
    }
}

/// Connects to NATS with a bounded wait.
pub async fn nats_connect(url: &str) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .subscription_capacity(1 << 16)
        .connect(url)
        .await
        .map_err(nats_err)
}

/// Maps any NATS error into ours.
pub fn nats_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Nats(e.to_string())
}

/// One connection that publishes.
#[derive(Debug)]
pub enum Publisher {
    /// Liftbridge: `Client::send` on the partition leader's `PublishAsync` stream.
    Liftbridge {
        /// The connection.
        client: Client,
        /// Stream name.
        stream: String,
        /// Partitions to spread over.
        partitions: u32,
        /// Ack policy of every message.
        ack_policy: liftbridge::AckPolicy,
    },
    /// JetStream: `jetstream::Context::publish` (or a core publish without ack).
    JetStream {
        /// The connection.
        client: async_nats::Client,
        /// JetStream context on it.
        js: Box<jetstream::Context>,
        /// The stream's subject.
        subject: String,
        /// Core publish, no ack.
        no_ack: bool,
    },
}

impl Publisher {
    /// Hands message `index` (of this publisher) to the connection; the returned future resolves on its ack.
    pub async fn send(&self, index: u64, payload: Bytes) -> Result<AckWait> {
        match self {
            Publisher::Liftbridge {
                client,
                stream,
                partitions,
                ack_policy,
            } => {
                let partition = (index % u64::from(*partitions)) as i32;
                let msg = Message::new(payload)
                    .partition(partition)
                    .ack_policy(*ack_policy);
                let ack = client.send(stream, msg).await?;
                Ok(Box::pin(async move {
                    ack.await?;
                    Ok(())
                }))
            }
            Publisher::JetStream {
                client,
                js,
                subject,
                no_ack,
            } => {
                if *no_ack {
                    client
                        .publish(subject.clone(), payload)
                        .await
                        .map_err(nats_err)?;
                    return Ok(Box::pin(async { Ok(()) }));
                }
                // Boxed: the publish future is large, and this future (created and moved per message, for either
                // system) is as big as its largest branch.
                let ack = Box::pin(js.publish(subject.clone(), payload))
                    .await
                    .map_err(nats_err)?;
                Ok(Box::pin(async move {
                    ack.await.map_err(nats_err)?;
                    Ok(())
                }))
            }
        }
    }

    /// Flushes and closes the connection.
    pub async fn close(self) {
        match self {
            Publisher::Liftbridge { client, .. } => client.close().await,
            Publisher::JetStream { client, .. } => {
                let _ = client.flush().await;
            }
        }
    }
}
