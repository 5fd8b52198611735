//! # liftbridge — the Rust client for Liftbridge
//!
//! This crate will hold the full-featured async client (leader discovery, retries, acks, subscriptions as
//! `Stream`s) described in the project's DESIGN.md §5. It is an empty skeleton today: the client SDK issue fills
//! it, on top of the wire contract in `liftbridge-proto`. Nothing here is usable yet, and nothing pretends to be.
