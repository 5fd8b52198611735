//! # liftbridge-bench
//!
//! Measures a Liftbridge server through the Rust client, and NATS JetStream with the same workloads, so the
//! two can be compared on one machine in one run.
//!
//! - `producer`: publishes `--messages` messages of `--size` bytes, synchronously (`--window 1`), pipelined
//!   (`--window W`: at most W unacknowledged), in batches (`--pub-batch B`: send B, wait for all B acks) or at
//!   a fixed `--rate` (latency measured from each message's intended send time, so a stall is not hidden by
//!   coordinated omission). Latencies go into an HDR histogram (p50/p90/p99/p99.9/max).
//! - `consumer`: reads a stream from the start and checks that every message came back, in order.
//! - `compare`: starts fresh servers (standalone `liftbridge`, `liftbridge` on an external `nats-server`,
//!   `nats-server -js`), runs a suite of workloads on each back to back, repeats, and writes medians, ratios
//!   and server memory as a markdown table.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`workload`] | what one run does: sizes, counts, window, batch, publishers, rate, stream settings |
//! | [`payload`] | the sequence stamp in each payload and the order check on the way back |
//! | [`latency`] | the HDR histogram and its summary |
//! | [`report`] | the result of one run: human table and JSON |
//! | [`progress`] | the progress line of long runs |
//! | [`target`] | the systems under test: a Liftbridge server (Rust client) or JetStream (async-nats) |
//! | [`producer`] | the publish loops: synchronous, windowed, batched, fixed rate |
//! | [`consumer`] | reading a stream back |
//! | [`server`] | server processes started by `compare`: readiness, memory (`/proc`), stopping |
//! | [`compare`] | the side-by-side suite, medians and the markdown table |
//! | [`floor`] | the gRPC floor: a server that acks at once and stores nothing, and a bare tonic publisher |

pub mod compare;
pub mod consumer;
pub mod floor;
pub mod latency;
pub mod payload;
pub mod producer;
pub mod progress;
pub mod report;
pub mod server;
pub mod target;
pub mod workload;

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The Liftbridge client returned an error.
    #[error("liftbridge: {0}")]
    Liftbridge(#[from] liftbridge::Error),
    /// NATS or JetStream returned an error.
    #[error("nats: {0}")]
    Nats(String),
    /// A gRPC call of the floor (server or bare client) failed.
    #[error("grpc: {0}")]
    Grpc(String),
    /// The workload asks for something that cannot be done.
    #[error("invalid workload: {0}")]
    Invalid(String),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A server process could not be started or watched.
    #[error("server process: {0}")]
    Process(String),
    /// Reading or writing a file failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, BenchError>;
