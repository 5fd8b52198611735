//! # liftbridge-server
//!
//! # Layout
//! - [`commitlog`]: the segmented, checksummed, crash-recovering log that stores every partition.
//! - [`bus`]: every use of NATS, behind one trait (`async-nats` to real servers; the embedded broker later).
//! - [`config`]: `liftbridge.yaml` keys, flags and environment overrides, with Liftbridge's defaults.
#![allow(missing_docs)]
pub mod bus;
pub mod commitlog;
pub mod config;
