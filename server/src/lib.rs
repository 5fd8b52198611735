//! # liftbridge-server
//!
//! # Layout
//! - [`commitlog`]: the segmented, checksummed, crash-recovering log that stores every partition.
#![allow(missing_docs)]
pub mod commitlog;
