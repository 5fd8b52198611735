//! # liftbridge-python
//!
//! The private native module `liftbridge._native` behind the Python package `liftbridge`: asyncio-native
//! bindings over the Rust client (`liftbridge` crate). The pure-Python package (`python/liftbridge`)
//! re-exports everything and ships the `.pyi` stubs.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `runtime.rs` | the tokio runtime, the per-event-loop [`runtime::Bridge`] that completes asyncio futures in batches, `Ready` (an already finished awaitable) |
//! | `client.rs` | `Client`: connect options, admin calls, publish/send/publish_to_subject, subscribe |
//! | `subscription.rs` | `Subscription`: the async iterator that pulls messages in batches |
//! | `event.rs` | `Event` and the `Events` async iterator (`Client.events()`) |
//! | `message.rs` | `Message` (received) and `Ack`, frozen |
//! | `metadata.rs` | `Metadata`, `BrokerInfo`, `StreamInfo`, `PartitionInfo`, `EventTimestamps` |
//! | `options.rs` | `AckPolicy`, `PartitionBy`, `StartPosition`, `StopPosition`, `TlsOptions`; checked argument conversions |
//! | `errors.rs` | `LiftbridgeError` and one subclass per client error kind; the one client-error → exception mapping |

mod client;
mod errors;
mod event;
mod message;
mod metadata;
mod options;
mod runtime;
mod subscription;

use pyo3::prelude::*;

/// Marks the interpreter as shutting down: tokio threads stop taking the GIL.
#[pyfunction]
fn _mark_finalizing() {
    runtime::FINALIZING.store(true, std::sync::atomic::Ordering::Release);
}

/// The module `liftbridge._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::Client>()?;
    m.add_class::<subscription::Subscription>()?;
    m.add_class::<event::Event>()?;
    m.add_class::<event::Events>()?;
    m.add_class::<message::Message>()?;
    m.add_class::<message::Ack>()?;
    m.add_class::<metadata::Metadata>()?;
    m.add_class::<metadata::BrokerInfo>()?;
    m.add_class::<metadata::StreamInfo>()?;
    m.add_class::<metadata::PartitionInfo>()?;
    m.add_class::<metadata::EventTimestamps>()?;
    m.add_class::<options::AckPolicy>()?;
    m.add_class::<options::PartitionBy>()?;
    m.add_class::<options::StartPosition>()?;
    m.add_class::<options::StopPosition>()?;
    m.add_class::<options::TlsOptions>()?;
    m.add_class::<runtime::Ready>()?;
    m.add_function(wrap_pyfunction!(_mark_finalizing, m)?)?;
    errors::register(m)?;
    // Stop taking the GIL from tokio threads once the interpreter starts shutting down.
    let atexit = m.py().import("atexit")?;
    atexit.call_method1("register", (m.getattr("_mark_finalizing")?,))?;
    Ok(())
}
