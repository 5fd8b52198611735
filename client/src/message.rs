//! Messages: [`Message`] to publish and the [`Ack`] of a publish —
//! plus the envelope helpers that let a plain NATS client publish to a stream and read its acks.
//!
//! Acks wrap the decoded protobuf directly: reading a field converts nothing. Received messages live in
//! `received.rs`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use liftbridge_proto::{envelope, pb};

use crate::error::{Error, ErrorKind, Result};
use crate::options::AckPolicy;
use crate::partition::Partitioning;

/// A message to publish.
///
/// Anything that turns into `Bytes` is a message with that value:
///
/// ```
/// use liftbridge::{AckPolicy, Message};
///
/// let plain: Message = "hello".into();
/// let full = Message::new("hello")
///     .key("user-42")
///     .header("trace-id", "abc")
///     .ack_policy(AckPolicy::All);
/// # let _ = (plain, full);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub(crate) value: Bytes,
    pub(crate) key: Bytes,
    pub(crate) headers: HashMap<String, Bytes>,
    pub(crate) partitioning: Option<Partitioning>,
    pub(crate) ack_policy: AckPolicy,
    pub(crate) ack_inbox: String,
    pub(crate) correlation_id: String,
    pub(crate) expected_offset: i64,
}

impl Message {
    /// A message with `value`, no key, no headers, ack policy LEADER, no expected offset.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Message {
            value: value.into(),
            expected_offset: -1,
            ..Default::default()
        }
    }

    /// The key (used by the key partitioner and by compaction).
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = key.into();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Adds headers.
    pub fn headers<K: Into<String>, V: Into<Bytes>>(
        mut self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.headers
            .extend(headers.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Publishes to this partition (overrides the client's partitioner).
    pub fn partition(mut self, partition: i32) -> Self {
        self.partitioning = Some(Partitioning::Partition(partition));
        self
    }

    /// Chooses the partition this way (overrides the client's partitioner).
    pub fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = Some(partitioning);
        self
    }

    /// When the server acknowledges the message. Default: [`AckPolicy::Leader`].
    pub fn ack_policy(mut self, policy: AckPolicy) -> Self {
        self.ack_policy = policy;
        self
    }

    /// The NATS subject the server also publishes the ack to (for acks read through NATS).
    pub fn ack_inbox(mut self, inbox: impl Into<String>) -> Self {
        self.ack_inbox = inbox.into();
        self
    }

    /// The correlation id echoed in the ack. Generated (unique per client) when not set; must be unique among
    /// this client's messages awaiting an ack.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = id.into();
        self
    }

    /// Optimistic concurrency control: the offset this message must be written at, or the publish fails with
    /// [`ErrorKind::IncorrectOffset`]. `-1` (the default) means no check.
    pub fn expected_offset(mut self, offset: i64) -> Self {
        self.expected_offset = offset;
        self
    }

    /// The value.
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// The message as a Liftbridge publish envelope (type 0, with a CRC-32C when `with_crc`), ready to be
    /// published with any NATS client to a stream's subject (partition `i > 0` listens on `<subject>.<i>`).
    /// Set an [`ack_inbox`](Message::ack_inbox) to receive the [`Ack`] envelope there.
    pub fn to_envelope(&self, with_crc: bool) -> Bytes {
        envelope::encode_message(&self.to_proto(), with_crc)
    }

    /// The protobuf of the envelope; its `offset` carries the expected offset.
    fn to_proto(&self) -> pb::Message {
        pb::Message {
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
            ack_inbox: self.ack_inbox.clone(),
            correlation_id: self.correlation_id.clone(),
            ack_policy: self.ack_policy.to_proto() as i32,
            offset: self.expected_offset,
            ..Default::default()
        }
    }

    /// The gRPC request for `stream`/`partition`, moving the fields (no copy of value, key or headers).
    pub(crate) fn into_request(
        self,
        stream: &str,
        partition: i32,
        correlation_id: String,
    ) -> pb::PublishRequest {
        pb::PublishRequest {
            key: self.key,
            value: self.value,
            stream: stream.to_string(),
            partition,
            headers: self.headers,
            ack_inbox: self.ack_inbox,
            correlation_id,
            ack_policy: self.ack_policy.to_proto() as i32,
            expected_offset: self.expected_offset,
        }
    }
}

impl From<Bytes> for Message {
    fn from(value: Bytes) -> Self {
        Message::new(value)
    }
}

impl From<Vec<u8>> for Message {
    fn from(value: Vec<u8>) -> Self {
        Message::new(value)
    }
}

impl From<&'static [u8]> for Message {
    fn from(value: &'static [u8]) -> Self {
        Message::new(value)
    }
}

impl From<&'static str> for Message {
    fn from(value: &'static str) -> Self {
        Message::new(value)
    }
}

impl From<String> for Message {
    fn from(value: String) -> Self {
        Message::new(value)
    }
}

pub(crate) fn nanos_to_time(nanos: i64) -> SystemTime {
    match u64::try_from(nanos) {
        Ok(n) => SystemTime::UNIX_EPOCH + Duration::from_nanos(n),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// The acknowledgement of a published message: where and when it was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    inner: pb::Ack,
    partition: Option<i32>,
}

impl Ack {
    pub(crate) fn from_proto(inner: pb::Ack, partition: Option<i32>) -> Self {
        Ack { inner, partition }
    }

    /// Decodes an ack envelope read from a NATS ack inbox. An ack that reports an error (for example
    /// INCORRECT_OFFSET) is returned as that error.
    pub fn from_envelope(data: &[u8]) -> Result<Self> {
        let ack = envelope::decode_ack(data).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("not a Liftbridge ack envelope: {e}"),
            )
            .with_source(e)
        })?;
        match pb::ack::Error::try_from(ack.ack_error).unwrap_or(pb::ack::Error::Unknown) {
            pb::ack::Error::Ok => Ok(Ack::from_proto(ack, None)),
            err => Err(crate::error::from_ack_error(err, &ack.stream)),
        }
    }

    /// The stream.
    pub fn stream(&self) -> &str {
        &self.inner.stream
    }

    /// The partition, when known (always for acks of this client's publishes; not for decoded envelopes).
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    /// The offset the message was stored at.
    pub fn offset(&self) -> i64 {
        self.inner.offset
    }

    /// The NATS subject of the partition.
    pub fn partition_subject(&self) -> &str {
        &self.inner.partition_subject
    }

    /// The NATS subject the message was published on.
    pub fn msg_subject(&self) -> &str {
        &self.inner.msg_subject
    }

    /// The ack inbox.
    pub fn ack_inbox(&self) -> &str {
        &self.inner.ack_inbox
    }

    /// The correlation id of the message.
    pub fn correlation_id(&self) -> &str {
        &self.inner.correlation_id
    }

    /// The ack policy the message was published with.
    pub fn ack_policy(&self) -> AckPolicy {
        AckPolicy::from_proto(self.inner.ack_policy)
    }

    /// When the leader received the message.
    pub fn reception_timestamp(&self) -> SystemTime {
        nanos_to_time(self.inner.reception_timestamp)
    }

    /// When the message was committed.
    pub fn commit_timestamp(&self) -> SystemTime {
        nanos_to_time(self.inner.commit_timestamp)
    }

    /// The protobuf as received.
    pub fn as_proto(&self) -> &pb::Ack {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReceivedMessage;

    #[test]
    fn envelope_round_trip() {
        let msg = Message::new("v")
            .key("k")
            .header("h", "1")
            .ack_inbox("acks")
            .correlation_id("c1")
            .expected_offset(7);
        let wire = msg.to_envelope(true);
        let decoded = ReceivedMessage::from_envelope(&wire).unwrap();
        assert_eq!(decoded.value(), &Bytes::from_static(b"v"));
        assert_eq!(decoded.key(), &Bytes::from_static(b"k"));
        assert_eq!(decoded.header("h"), Some(&Bytes::from_static(b"1")));
        assert_eq!(decoded.as_proto().ack_inbox, "acks");
        assert_eq!(decoded.offset(), 7);

        let ack = pb::Ack {
            stream: "s".into(),
            offset: 3,
            correlation_id: "c1".into(),
            ..Default::default()
        };
        let ack = Ack::from_envelope(&envelope::encode_ack(&ack, false)).unwrap();
        assert_eq!(ack.offset(), 3);
        assert_eq!(ack.correlation_id(), "c1");
        let bad = pb::Ack {
            ack_error: pb::ack::Error::IncorrectOffset as i32,
            ..Default::default()
        };
        assert_eq!(
            Ack::from_envelope(&envelope::encode_ack(&bad, false))
                .unwrap_err()
                .kind(),
            ErrorKind::IncorrectOffset
        );
        assert_eq!(
            Ack::from_envelope(b"junk").unwrap_err().kind(),
            ErrorKind::Protocol
        );
    }
}
