//! Messages in (JS objects → [`liftbridge::Message`]), acks out ([`JsAck`]) and received messages out, in
//! columnar batches ([`MessageBatch`]).

use std::time::SystemTime;

use bytes::Bytes;
use liftbridge::{Ack, Message, ReceivedMessage};
use napi::bindgen_prelude::{BigInt, BigInt64Array, Buffer, Int32Array, Uint32Array};
use napi_derive::napi;

use crate::options::{JsHeaders, ack_policy, bigint_i64, partitioning};

/// A message to publish, as `index.js` hands it over (value already a `Buffer`).
#[napi(object)]
pub struct NativeMessage {
    /// The payload.
    pub value: Buffer,
    /// The key (used by key partitioning and compaction).
    pub key: Option<Buffer>,
    /// Headers.
    pub headers: Option<JsHeaders>,
    /// An explicit partition.
    pub partition: Option<i32>,
    /// `"key"` or `"roundRobin"` partitioning for this message.
    pub partition_by: Option<String>,
    /// `"leader"` (default), `"all"` or `"none"`.
    pub ack_policy: Option<String>,
    /// Optimistic concurrency control: the offset the message must get.
    pub expected_offset: Option<BigInt>,
    /// The correlation id the ack carries (generated when absent).
    pub correlation_id: Option<String>,
    /// A NATS subject to also receive the ack on.
    pub ack_inbox: Option<String>,
}

impl NativeMessage {
    /// The Rust client's message. Copies the payload out of the JS heap once.
    pub(crate) fn into_message(self) -> napi::Result<Message> {
        let mut m = Message::new(Bytes::copy_from_slice(&self.value));
        if let Some(k) = self.key {
            m = m.key(Bytes::copy_from_slice(&k));
        }
        if let Some(h) = self.headers {
            m = m.headers(h.into_iter().map(|(k, v)| (k, Bytes::copy_from_slice(&v))));
        }
        if let Some(p) = self.partition {
            if p < 0 {
                return Err(crate::error::invalid(format!(
                    "partition must not be negative, got {p}"
                )));
            }
            m = m.partition(p);
        }
        if let Some(p) = self.partition_by {
            m = m.partitioning(partitioning(&p)?);
        }
        if let Some(a) = self.ack_policy {
            m = m.ack_policy(ack_policy(&a)?);
        }
        if let Some(o) = self.expected_offset {
            m = m.expected_offset(bigint_i64("expectedOffset", &o)?);
        }
        if let Some(c) = self.correlation_id {
            m = m.correlation_id(c);
        }
        if let Some(i) = self.ack_inbox {
            m = m.ack_inbox(i);
        }
        Ok(m)
    }
}

/// Nanoseconds since the epoch (0 for times before it).
pub(crate) fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The acknowledgement of a published message.
#[napi(object)]
pub struct JsAck {
    /// The stream.
    pub stream: String,
    /// The partition, when known (acks read from NATS do not say).
    pub partition: Option<i32>,
    /// The offset the message was stored at (-1 with ack policy `none`).
    pub offset: BigInt,
    /// The NATS subject of the partition.
    pub partition_subject: String,
    /// The NATS subject the message was published on.
    pub msg_subject: String,
    /// The ack inbox.
    pub ack_inbox: String,
    /// The correlation id.
    pub correlation_id: String,
    /// `"leader"`, `"all"` or `"none"`.
    pub ack_policy: String,
    /// When the leader received the message (ns since the epoch).
    pub reception_timestamp: BigInt,
    /// When the leader committed the message (ns since the epoch).
    pub commit_timestamp: BigInt,
}

impl From<Ack> for JsAck {
    fn from(a: Ack) -> Self {
        JsAck {
            stream: a.stream().to_string(),
            partition: a.partition(),
            offset: BigInt::from(a.offset()),
            partition_subject: a.partition_subject().to_string(),
            msg_subject: a.msg_subject().to_string(),
            ack_inbox: a.ack_inbox().to_string(),
            correlation_id: a.correlation_id().to_string(),
            ack_policy: match a.ack_policy() {
                liftbridge::AckPolicy::All => "all",
                liftbridge::AckPolicy::None => "none",
                _ => "leader",
            }
            .to_string(),
            reception_timestamp: BigInt::from(nanos(a.reception_timestamp())),
            commit_timestamp: BigInt::from(nanos(a.commit_timestamp())),
        }
    }
}

/// The outcome of one message of a pipelined batch: an ack, or the error message (with its code prefix).
#[napi(object)]
pub struct SendOutcome {
    /// The ack, when the message was stored.
    pub ack: Option<JsAck>,
    /// `[code] message` when it failed.
    pub error: Option<String>,
}

/// Positions per message in [`MessageBatch::bounds`]: where its key starts in `data`, then the end of key,
/// value, subject, reply subject and correlation id (each starts where the previous ends). Its headers follow.
pub(crate) const BOUNDS_PER_MESSAGE: usize = 6;

/// Received messages, columnar: one crossing for the whole batch; `index.js` builds message objects from it
/// (and a message's headers object only when it is read).
#[napi(object)]
pub struct MessageBatch {
    /// The stream.
    pub stream: String,
    /// Offsets.
    pub offsets: BigInt64Array,
    /// Timestamps, ns since the epoch.
    pub timestamps: BigInt64Array,
    /// Partitions.
    pub partitions: Int32Array,
    /// Keys, values, subjects, reply subjects, correlation ids and header names and values, back to back.
    pub data: Buffer,
    /// [`BOUNDS_PER_MESSAGE`] end positions in `data` per message.
    pub bounds: Uint32Array,
    /// Number of headers per message.
    pub header_counts: Uint32Array,
    /// Per header, in message order: the end of its name and the end of its value in `data` (each starts
    /// where the previous ends, the first at the message's correlation id end).
    pub header_bounds: Uint32Array,
}

/// Builds a [`MessageBatch`].
#[derive(Default)]
pub(crate) struct BatchBuilder {
    offsets: Vec<i64>,
    timestamps: Vec<i64>,
    partitions: Vec<i32>,
    data: Vec<u8>,
    bounds: Vec<u32>,
    header_counts: Vec<u32>,
    header_bounds: Vec<u32>,
}

impl BatchBuilder {
    /// An empty batch with room for `n` messages.
    pub(crate) fn with_capacity(n: usize) -> Self {
        BatchBuilder {
            offsets: Vec::with_capacity(n),
            timestamps: Vec::with_capacity(n),
            partitions: Vec::with_capacity(n),
            data: Vec::with_capacity(n * 64),
            bounds: Vec::with_capacity(n * BOUNDS_PER_MESSAGE),
            header_counts: Vec::with_capacity(n),
            header_bounds: Vec::new(),
        }
    }

    /// Messages in the batch.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Bytes of payload in the batch.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Appends a message.
    pub(crate) fn push(&mut self, m: &ReceivedMessage) {
        self.offsets.push(m.offset());
        self.timestamps.push(m.timestamp_nanos());
        self.partitions.push(m.partition());
        self.bounds.push(self.data.len() as u32);
        for part in [
            m.key().as_ref(),
            m.value().as_ref(),
            m.subject().as_bytes(),
            m.reply_subject().as_bytes(),
            m.correlation_id().as_bytes(),
        ] {
            self.data.extend_from_slice(part);
            self.bounds.push(self.data.len() as u32);
        }
        let headers = m.headers();
        self.header_counts.push(headers.len() as u32);
        for (name, value) in headers {
            self.data.extend_from_slice(name.as_bytes());
            self.header_bounds.push(self.data.len() as u32);
            self.data.extend_from_slice(value);
            self.header_bounds.push(self.data.len() as u32);
        }
    }

    /// The finished batch.
    pub(crate) fn build(self, stream: String) -> MessageBatch {
        MessageBatch {
            stream,
            offsets: self.offsets.into(),
            timestamps: self.timestamps.into(),
            partitions: self.partitions.into(),
            data: self.data.into(),
            bounds: self.bounds.into(),
            header_counts: self.header_counts.into(),
            header_bounds: self.header_bounds.into(),
        }
    }
}
