//! # liftbridge-node
//!
//! The native half of the npm package `liftbridge`: a napi-rs addon over the Rust client (crate `liftbridge`).
//! Every behaviour (leader routing, retries, acks, resubscribe) lives in the Rust client; this crate only
//! translates types, errors and async styles. The JavaScript half (`index.js`) validates arguments, turns
//! errors into `LiftbridgeError` subclasses and shapes the native batches into the public API (async
//! iterators, `AbortSignal`, `Symbol.asyncDispose`).
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `client.rs` | [`NativeClient`](client::NativeClient): connect, admin calls, publish, subscribe, close |
//! | `publisher.rs` | the ordered send queue behind pipelined `send()`: batches from JS, acks back per batch |
//! | `subscription.rs` | [`NativeSubscription`](subscription::NativeSubscription): messages handed to JS in columnar batches |
//! | `message.rs` | messages in (JS objects → `liftbridge::Message`), acks and message batches out |
//! | `metadata.rs` | cluster, stream and partition metadata as plain JS objects |
//! | `options.rs` | connect, stream and subscribe options from JS objects, checked before any network call |
//! | `event.rs` | [`NativeEvents`](event::NativeEvents): the client's events for `client.events()` |
//! | `error.rs` | `liftbridge::Error` → JS error whose message carries the stable error code |
//!
//! # Crossing the boundary
//!
//! Each crossing between the JS thread and the tokio runtime costs a few microseconds (a promise, a
//! threadsafe-function call, one napi call per property), so the hot paths cross once per *batch*:
//! pipelined sends arrive as arrays and resolve as arrays, and subscriptions deliver every message ready at
//! the time of the call as typed arrays plus one buffer, which the JS side slices into message objects.

// napi-derive expands `#[napi]` items into `unsafe` FFI glue; this crate itself writes no `unsafe` block.
#![allow(unsafe_code)]
// Under `cfg(test)` napi-derive registers nothing, so the exported items look unused there.
#![cfg_attr(test, allow(dead_code))]

mod client;
mod error;
mod event;
mod message;
mod metadata;
mod options;
mod publisher;
mod subscription;
