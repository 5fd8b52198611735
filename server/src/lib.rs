//! # liftbridge-server
//!
//! # Layout
//! - [`commitlog`]: the segmented, checksummed, crash-recovering log that stores every partition.
//! - [`bus`]: every use of NATS, behind one trait (`async-nats` to real servers; the embedded broker later).
//! - [`metadata`]: streams, partitions and flags; a state machine behind one handle (single node today).
//! - [`config`]: `liftbridge.yaml` keys, flags and environment overrides, with Liftbridge's defaults.
#![allow(missing_docs)]
pub mod bus;
pub mod commitlog;
pub mod config;
pub mod metadata;
