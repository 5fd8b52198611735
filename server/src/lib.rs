//! # liftbridge-server
//!
//! # Layout
//! - [`commitlog`]: the segmented, checksummed, crash-recovering log that stores every partition.
//! - [`bus`]: every use of NATS, behind one trait (`async-nats` to real servers, or the embedded broker).
//! - [`broker`]: the embedded NATS broker (core NATS client protocol over TCP + in-process `EmbeddedBus`).
//! - [`metadata`]: streams, partitions and flags; a state machine behind one handle (a local file on one server,
//!   an openraft group over NATS in a cluster).
//! - [`presence`]: which servers are alive and their client addresses.
//! - [`config`]: `liftbridge.yaml` keys, flags and environment overrides, with Liftbridge's defaults.
//! - [`partition`]: one actor per led partition (NATS in, batched appends, acks out) and their manager.
//! - [`api`]: the gRPC `proto.API` service.
//! - [`server`]: wiring and lifecycle (`Server::run(listener, config, shutdown)`); [`signal`], [`logging`].
pub mod api;
pub mod broker;
pub mod bus;
pub mod commitlog;
pub mod config;
pub mod logging;
pub mod metadata;
pub mod partition;
pub mod presence;
pub mod server;
pub mod signal;
pub mod tls;
