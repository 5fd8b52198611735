//! # liftbridge-python
//!
//! Skeleton. The Python bindings issue turns this into a pyo3 `cdylib` (module `liftbridge._native`) that wraps
//! the Rust client with asyncio-native types. It exports nothing yet.
