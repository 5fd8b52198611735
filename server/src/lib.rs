//! # liftbridge-server
//!
//! # Layout
//! - [`commitlog`]: the segmented, checksummed, crash-recovering log that stores every partition.
//! - [`config`]: `liftbridge.yaml` keys, flags and environment overrides, with Liftbridge's defaults.
#![allow(missing_docs)]
pub mod commitlog;
pub mod config;
