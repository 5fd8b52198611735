//! # liftbridge — the Rust client for Liftbridge
//!
//! Durable, replicated, Kafka-style message streams on NATS. This crate talks to any Liftbridge-compatible
//! server (ours, or Liftbridge's Go server) over gRPC, and runs on the caller's tokio runtime: it starts no
//! runtime and no thread of its own.
//!
//! ```no_run
//! use futures::StreamExt;
//! use liftbridge::{Client, Message, StartPosition, StreamOptions, SubscribeOptions};
//!
//! # async fn run() -> liftbridge::Result<()> {
//! let client = Client::connect(["127.0.0.1:9292"]).await?;
//! client
//!     .create_stream_if_not_exists(StreamOptions::new("orders", "orders").partitions(3))
//!     .await?;
//!
//! // Publish and wait for the ack.
//! let ack = client.publish("orders", Message::new("first").key("user-1")).await?;
//! println!("stored at offset {}", ack.offset());
//!
//! // Pipeline: many messages in flight, acks awaited later.
//! let mut acks = Vec::new();
//! for i in 0..100 {
//!     acks.push(client.send("orders", format!("msg {i}")).await?);
//! }
//! for ack in acks {
//!     ack.await?;
//! }
//!
//! // Read everything from the start.
//! let mut sub = client
//!     .subscribe("orders", SubscribeOptions::new().start_at(StartPosition::Earliest))
//!     .await?;
//! while let Some(msg) = sub.next().await {
//!     let msg = msg?;
//!     println!("{}: {:?}", msg.offset(), msg.value());
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`client`](Client) (`client.rs`) | [`Client`], [`ClientBuilder`]; admin operations; the request machinery: server choice, deadlines, retries with backoff and full jitter, leader routing, single-flight metadata refresh |
//! | `connection.rs` | one lazily connected HTTP/2 channel per server address, keepalive, TLS; connection events |
//! | `metadata.rs` | [`Metadata`], [`BrokerInfo`], [`StreamInfo`], [`PartitionInfo`] and the metadata cache |
//! | `publish.rs` | the `PublishAsync` stream per server, the in-flight window, [`AckFuture`] |
//! | `subscribe.rs` | [`Subscription`]: per-partition reader tasks, resubscribe, how a subscription ends |
//! | `message.rs` | [`Message`] (to publish), [`Ack`], NATS envelope helpers |
//! | `received.rs` | [`ReceivedMessage`], decoded without copying by the subscription's gRPC codec |
//! | `wire.rs` | protobuf wire reading shared by the zero-copy decoders (received messages, acks) |
//! | `partition.rs` | [`Partitioning`], the [`Partitioner`] trait, [`KeyPartitioner`], [`RoundRobinPartitioner`] |
//! | [`options`] | defaults (`DEFAULT_*`), [`RetryPolicy`], [`StreamOptions`], [`SubscribeOptions`], positions, [`AckPolicy`] |
//! | `tls.rs` | [`TlsOptions`]: rustls (ring), CA, mutual TLS, server name |
//! | `event.rs` | [`Event`]s and the [`Events`] stream |
//! | `error.rs` | [`Error`], [`ErrorKind`]: the one place gRPC statuses and ack errors are mapped |
//! | [`testing`] (feature `testing`) | [`testing::TestServer`]: an in-process server for integration tests |
//!
//! # Behaviour worth knowing
//!
//! - **Deadlines everywhere.** Every unary RPC carries a deadline ([`ClientBuilder::request_timeout`]), so
//!   no request hangs and no server works for a caller that gave up. Publishes wait at most the ack timeout.
//! - **Retries only where safe.** Reads, metadata and idempotent admin calls are retried on `Unavailable`
//!   with exponential backoff and full jitter, bounded by the deadline; leader-routed calls refresh the
//!   metadata (one refresh shared by all concurrent callers) and retry on not-leader answers. Writes are
//!   retried only when they surely never reached a server.
//! - **Pipelined publishing with backpressure.** [`Client::send`] returns once the message is queued on the
//!   server's `PublishAsync` stream and gives an [`AckFuture`]; at most
//!   [`max_in_flight`](ClientBuilder::max_in_flight) messages await acks, further sends wait. When a stream
//!   breaks, every pending ack fails at once with [`ErrorKind::Disconnected`] (retryable), not after a
//!   timeout.
//! - **Subscriptions survive failures.** A broken subscription resubscribes from the last offset + 1 (no gap,
//!   no duplicate) within the [resubscribe window](ClientBuilder::resubscribe_window). A stop position ends
//!   the stream with `None`; the end of a readonly partition, a pause and a deletion are distinct errors (see
//!   [`Subscription`]).
//! - **Errors say what to do**, and [`Error::kind`] / [`Error::is_retryable`] make them matchable.
//!
//! # Defaults
//! connect timeout 5 s · request timeout 10 s · ack timeout 5 s · ack policy LEADER · retry 10 attempts,
//! 50 ms base ×2, 2 s cap, full jitter · metadata refresh 30 s · keepalive 30 s / 10 s · max in flight 1024 ·
//! prefetch 1024 · resubscribe window 30 s · max message 16 MiB received / 4 MiB sent · close drain 5 s.

mod client;
mod connection;
mod error;
mod event;
mod message;
mod metadata;
pub mod options;
mod partition;
mod publish;
mod received;
mod subscribe;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod wire;

pub use crate::client::{Client, ClientBuilder};
pub use crate::connection::DEFAULT_PORT;
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::event::{EVENT_BUFFER, Event, Events};
pub use crate::message::{Ack, Message};
pub use crate::metadata::{BrokerInfo, EventTimestamps, Metadata, PartitionInfo, StreamInfo};
pub use crate::options::{
    AckPolicy, RetryPolicy, StartPosition, StopPosition, StreamOptions, SubscribeOptions,
};
pub use crate::partition::{KeyPartitioner, Partitioner, Partitioning, RoundRobinPartitioner};
pub use crate::publish::AckFuture;
pub use crate::received::ReceivedMessage;
pub use crate::subscribe::Subscription;
pub use crate::tls::TlsOptions;

/// The wire contract this client speaks (generated protobuf types, envelope codec, hashes), re-exported for
/// advanced uses such as reading acks through NATS.
pub use liftbridge_proto as proto;
