//! # liftbridge-node
//!
//! Skeleton. The Node bindings issue turns this into a napi-rs `cdylib` with Promises, async iterators and a
//! committed `index.d.ts`, wrapping the Rust client. It exports nothing yet.
