//! # liftbridge-proto
//!
//! The Liftbridge wire contract, shared by the server, the client SDK and the
//! bindings. Everything here is pinned by tests against facts taken from
//! Liftbridge itself (see `proto/README.md`).
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`pb`] | Code generated from `proto/api.proto` (package `proto`, service `API`): prost messages, [`pb::api_client::ApiClient`] and [`pb::api_server::ApiServer`]. Wire-compatible with Liftbridge API v1.9.0 plus `SubscribeRequest.reverse` (field 12) from API v2.0.0. `bytes` fields are [`bytes::Bytes`]. |
//! | [`envelope`] | The NATS envelope codec: magic `B9 0E 43 B4`, version, header length, flags, message type, optional CRC-32C, then a protobuf payload. Decoding never panics. |
//! | [`hash`] | Key partitioning (CRC-32 IEEE of the key modulo the partition count), cursor keys and cursor routing over `__cursors`, consumer-group cursor ids. |
//! | [`FILE_DESCRIPTOR_SET`] | The encoded `FileDescriptorSet` of `api.proto`, for gRPC reflection. |
//!
//! The `.proto` file is compiled at build time by `protox` (pure Rust), so no
//! `protoc` is needed.
//!
//! # Example
//!
//! ```
//! use liftbridge_proto::{envelope, hash, pb};
//!
//! let msg = pb::Message {
//!     key: "user-42".into(),
//!     value: "hello".into(),
//!     ack_inbox: "acks.1".into(),
//!     ..Default::default()
//! };
//! let wire = envelope::encode_message(&msg, true);
//! assert!(envelope::is_envelope(&wire));
//! assert_eq!(envelope::decode_message(&wire)?, msg);
//!
//! // Which of 3 partitions the key goes to.
//! assert_eq!(hash::partition_for_key(b"user-42", 3), Some(hash::key_hash(b"user-42") % 3));
//! # Ok::<(), liftbridge_proto::envelope::EnvelopeError>(())
//! ```

pub mod envelope;
pub mod hash;

/// Code generated from `proto/api.proto`: every message and enum of the
/// Liftbridge API (package `proto`), the tonic client [`pb::api_client::ApiClient`]
/// and the server trait [`pb::api_server::Api`] with its [`pb::api_server::ApiServer`].
///
/// Wire paths are `/proto.API/<Method>`, exactly as Liftbridge's.
pub mod pb {
    #![allow(
        missing_docs,
        unreachable_pub,
        clippy::all,
        clippy::pedantic,
        clippy::nursery,
        rustdoc::all
    )]

    tonic::include_proto!("proto");
}

/// The encoded `google.protobuf.FileDescriptorSet` of `api.proto` (file name
/// `api.proto`, package `proto`, with source info), as produced by `protox` at
/// build time. Feed it to a gRPC reflection service so tools like `grpcurl`
/// can list and call the API.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/liftbridge_descriptor.bin"));
