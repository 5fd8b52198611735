//! Messages: [`Message`] to publish and the [`Ack`] of a publish —
//! plus the envelope helpers that let a plain NATS client publish to a stream and read its acks.
//!
//! Acks wrap the decoded protobuf directly: reading a field converts nothing. Received messages live in
//! `received.rs`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use std::sync::OnceLock;

use bytes::{Buf, Bytes};
use liftbridge_proto::{envelope, pb};
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::error::{Error, ErrorKind, Result};
use crate::options::AckPolicy;
use crate::partition::Partitioning;
use crate::wire::{Malformed, Span, expect, slice};

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
///
/// Decoded without copying: the string fields are ranges of the received buffer, the full protobuf is built
/// only if [`as_proto`](Self::as_proto) is called.
#[derive(Debug, Clone)]
pub struct Ack {
    offset: i64,
    reception_timestamp: i64,
    commit_timestamp: i64,
    ack_policy: i32,
    ack_error: i32,
    partition: Option<i32>,
    /// The encoded `Ack`.
    raw: Bytes,
    stream: Span,
    partition_subject: Span,
    msg_subject: Span,
    ack_inbox: Span,
    correlation_id: Span,
    proto: OnceLock<Box<pb::Ack>>,
}

impl Ack {
    fn empty(raw: Bytes) -> Self {
        Ack {
            offset: 0,
            reception_timestamp: 0,
            commit_timestamp: 0,
            ack_policy: 0,
            ack_error: 0,
            partition: None,
            raw,
            stream: Span::default(),
            partition_subject: Span::default(),
            msg_subject: Span::default(),
            ack_inbox: Span::default(),
            correlation_id: Span::default(),
            proto: OnceLock::new(),
        }
    }

    /// Decodes an encoded `Ack` protobuf, keeping `raw` and slicing the strings out of it.
    pub(crate) fn decode(raw: Bytes) -> std::result::Result<Self, Malformed> {
        let mut ack = Self::empty(raw.clone());
        let mut buf = raw;
        while buf.has_remaining() {
            let (tag, wire) = decode_key(&mut buf)?;
            match tag {
                4 | 7 | 8 | 9 | 10 => {
                    expect(wire, WireType::Varint, tag)?;
                    // int64 fields as they are, enums truncated to int32 as protobuf says.
                    let v = decode_varint(&mut buf)?;
                    match tag {
                        4 => ack.offset = v as i64,
                        7 => ack.ack_policy = v as i32,
                        8 => ack.reception_timestamp = v as i64,
                        9 => ack.commit_timestamp = v as i64,
                        _ => ack.ack_error = v as i32,
                    }
                }
                1 | 2 | 3 | 5 | 6 => {
                    expect(wire, WireType::LengthDelimited, tag)?;
                    let span = Span::of(&ack.raw, &slice(&mut buf)?)?;
                    match tag {
                        1 => ack.stream = span,
                        2 => ack.partition_subject = span,
                        3 => ack.msg_subject = span,
                        5 => ack.ack_inbox = span,
                        _ => ack.correlation_id = span,
                    }
                }
                _ => skip_field(wire, tag, &mut buf, DecodeContext::default())?,
            }
        }
        Ok(ack)
    }

    pub(crate) fn from_proto(inner: pb::Ack, partition: Option<i32>) -> Self {
        // Bytes prost has just encoded from a valid ack always decode; the fallback keeps the numbers if that
        // ever changes (and the full protobuf below answers every accessor through as_proto).
        let mut ack = Self::decode(Bytes::from(inner.encode_to_vec())).unwrap_or_else(|_| {
            let mut ack = Self::empty(Bytes::new());
            ack.offset = inner.offset;
            ack.reception_timestamp = inner.reception_timestamp;
            ack.commit_timestamp = inner.commit_timestamp;
            ack.ack_policy = inner.ack_policy;
            ack.ack_error = inner.ack_error;
            ack
        });
        ack.partition = partition;
        ack.proto = OnceLock::from(Box::new(inner));
        ack
    }

    /// The same ack, for a known partition.
    pub(crate) fn with_partition(mut self, partition: Option<i32>) -> Self {
        self.partition = partition;
        self
    }

    /// The error the partition reported for the message (`Ok` when none; unknown codes are `Unknown`).
    pub(crate) fn ack_error(&self) -> pb::ack::Error {
        pb::ack::Error::try_from(self.ack_error).unwrap_or(pb::ack::Error::Unknown)
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
        self.stream.get(&self.raw)
    }

    /// The partition, when known (always for acks of this client's publishes; not for decoded envelopes).
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    /// The offset the message was stored at.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The NATS subject of the partition.
    pub fn partition_subject(&self) -> &str {
        self.partition_subject.get(&self.raw)
    }

    /// The NATS subject the message was published on.
    pub fn msg_subject(&self) -> &str {
        self.msg_subject.get(&self.raw)
    }

    /// The ack inbox.
    pub fn ack_inbox(&self) -> &str {
        self.ack_inbox.get(&self.raw)
    }

    /// The correlation id of the message.
    pub fn correlation_id(&self) -> &str {
        self.correlation_id.get(&self.raw)
    }

    /// The ack policy the message was published with.
    pub fn ack_policy(&self) -> AckPolicy {
        AckPolicy::from_proto(self.ack_policy)
    }

    /// When the leader received the message.
    pub fn reception_timestamp(&self) -> SystemTime {
        nanos_to_time(self.reception_timestamp)
    }

    /// When the message was committed.
    pub fn commit_timestamp(&self) -> SystemTime {
        nanos_to_time(self.commit_timestamp)
    }

    /// The protobuf as received (decoded in full on first use).
    pub fn as_proto(&self) -> &pb::Ack {
        self.proto
            .get_or_init(|| Box::new(pb::Ack::decode(self.raw.clone()).unwrap_or_default()))
    }
}

impl PartialEq for Ack {
    fn eq(&self, other: &Self) -> bool {
        self.partition == other.partition && self.as_proto() == other.as_proto()
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

    fn full_ack() -> pb::Ack {
        pb::Ack {
            stream: "orders".into(),
            partition_subject: "orders.2".into(),
            msg_subject: "orders".into(),
            offset: 99,
            ack_inbox: "_INBOX.a".into(),
            correlation_id: "c-9".into(),
            ack_policy: pb::AckPolicy::All as i32,
            reception_timestamp: 1_700_000_000_000_000_001,
            commit_timestamp: 1_700_000_000_000_000_002,
            ack_error: pb::ack::Error::TooLarge as i32,
        }
    }

    #[test]
    fn acks_decode_every_field_like_prost() {
        let pb = full_ack();
        let ack = Ack::decode(Bytes::from(pb.encode_to_vec())).unwrap();
        assert_eq!(ack.stream(), "orders");
        assert_eq!(ack.partition_subject(), "orders.2");
        assert_eq!(ack.msg_subject(), "orders");
        assert_eq!(ack.offset(), 99);
        assert_eq!(ack.ack_inbox(), "_INBOX.a");
        assert_eq!(ack.correlation_id(), "c-9");
        assert_eq!(ack.ack_policy(), AckPolicy::All);
        assert_eq!(
            ack.reception_timestamp(),
            nanos_to_time(1_700_000_000_000_000_001)
        );
        assert_eq!(
            ack.commit_timestamp(),
            nanos_to_time(1_700_000_000_000_000_002)
        );
        assert_eq!(ack.ack_error(), pb::ack::Error::TooLarge);
        assert_eq!(ack.partition(), None);
        assert_eq!(ack.as_proto(), &pb);
        assert_eq!(ack.clone().with_partition(Some(2)).partition(), Some(2));
        assert_eq!(ack, Ack::from_proto(pb, None));
    }

    #[test]
    fn bad_acks_are_errors_like_prost() {
        let wire = full_ack().encode_to_vec();
        for cut in 0..wire.len() {
            let ours = Ack::decode(Bytes::copy_from_slice(&wire[..cut]));
            let theirs = pb::Ack::decode(&wire[..cut]);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "cut at {cut}");
        }
        // stream (field 1) that is not UTF-8; offset (field 4) sent length-delimited.
        for bad in [&[0x0a, 0x01, 0xff][..], &[0x22, 0x01, 0x00][..]] {
            assert!(Ack::decode(Bytes::copy_from_slice(bad)).is_err());
            assert!(pb::Ack::decode(bad).is_err());
        }
        // An unknown code reads as Unknown.
        let odd = pb::Ack {
            ack_error: 77,
            ..Default::default()
        };
        let ack = Ack::decode(Bytes::from(odd.encode_to_vec())).unwrap();
        assert_eq!(ack.ack_error(), pb::ack::Error::Unknown);
    }
}
