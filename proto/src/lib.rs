//! # liftbridge-proto
//!
//! The wire contract (being written).
