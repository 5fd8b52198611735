//! [`ReceivedMessage`]: a message read from a stream partition, decoded without copying.
//!
//! Subscriptions decode the server's `Message` protobuf with their own gRPC codec ([`MessageCodec`]) instead
//! of prost's generated one: the encoded message stays one reference-counted `Bytes` buffer, and key, value
//! and every string field are slices of it. Nothing is allocated per message for its strings or its headers
//! (Liftbridge servers put `subject` and `reply` headers on every message); the headers map and the full
//! protobuf are built on first use only.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use liftbridge_proto::{envelope, pb};
use prost::Message as _;
use prost::encoding::{WireType, decode_key, decode_varint, skip_field};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::error::{Error, ErrorKind, Result};
use crate::message::nanos_to_time;
use crate::wire::{Malformed, Span, expect, slice, utf8};

/// A message read from a stream partition.
///
/// Cheap to clone (the payloads are slices of one reference-counted buffer).
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    offset: i64,
    timestamp: i64,
    partition: i32,
    key: Bytes,
    value: Bytes,
    /// The whole encoded message: the string fields are ranges of it, and it is the source of the headers
    /// and of [`as_proto`](Self::as_proto).
    raw: Bytes,
    stream: Span,
    subject: Span,
    reply_subject: Span,
    correlation_id: Span,
    /// Boxed so that the message stays small to move (it is moved several times on its way to the consumer).
    #[expect(
        clippy::box_collection,
        reason = "one pointer instead of a 48-byte map in every message; most messages never build it"
    )]
    headers: OnceLock<Box<HashMap<String, Bytes>>>,
    proto: OnceLock<Box<pb::Message>>,
}

impl ReceivedMessage {
    fn empty(raw: Bytes) -> Self {
        ReceivedMessage {
            offset: 0,
            timestamp: 0,
            partition: 0,
            key: Bytes::new(),
            value: Bytes::new(),
            raw,
            stream: Span::default(),
            subject: Span::default(),
            reply_subject: Span::default(),
            correlation_id: Span::default(),
            headers: OnceLock::new(),
            proto: OnceLock::new(),
        }
    }

    /// Decodes an encoded `Message` protobuf, keeping `raw` and slicing fields out of it.
    pub(crate) fn decode(raw: Bytes) -> std::result::Result<Self, Malformed> {
        let mut m = Self::empty(raw.clone());
        let mut buf = raw;
        while buf.has_remaining() {
            let (tag, wire) = decode_key(&mut buf)?;
            match tag {
                // Integers: int64 / int32 varints, truncated as protobuf says for int32.
                1 | 4 | 6 | 12 => {
                    expect(wire, WireType::Varint, tag)?;
                    let v = decode_varint(&mut buf)?;
                    match tag {
                        1 => m.offset = v as i64,
                        4 => m.timestamp = v as i64,
                        6 => m.partition = v as i32,
                        _ => {}
                    }
                }
                2 | 3 | 5 | 7 | 8 | 9 | 10 | 11 => {
                    expect(wire, WireType::LengthDelimited, tag)?;
                    let field = slice(&mut buf)?;
                    match tag {
                        2 => m.key = field,
                        3 => m.value = field,
                        5 => m.stream = Span::of(&m.raw, &field)?,
                        7 => m.subject = Span::of(&m.raw, &field)?,
                        8 => m.reply_subject = Span::of(&m.raw, &field)?,
                        11 => m.correlation_id = Span::of(&m.raw, &field)?,
                        9 => drop(Self::header_entry(field)?),
                        _ => {} // 10: ack inbox, only in the full protobuf
                    }
                }
                _ => skip_field(
                    wire,
                    tag,
                    &mut buf,
                    prost::encoding::DecodeContext::default(),
                )?,
            }
        }
        Ok(m)
    }

    /// Reads one headers entry: the name (checked to be UTF-8) and the value, slices of the message. A bad
    /// entry is a decode error, as with prost; the map itself is built on first use.
    fn header_entry(mut entry: Bytes) -> std::result::Result<(Bytes, Bytes), Malformed> {
        let (mut name, mut value) = (Bytes::new(), Bytes::new());
        while entry.has_remaining() {
            let (t, w) = decode_key(&mut entry)?;
            match t {
                1 => {
                    expect(w, WireType::LengthDelimited, 9)?;
                    name = utf8(slice(&mut entry)?)?;
                }
                2 => {
                    expect(w, WireType::LengthDelimited, 9)?;
                    value = slice(&mut entry)?;
                }
                _ => skip_field(w, t, &mut entry, prost::encoding::DecodeContext::default())?,
            }
        }
        Ok((name, value))
    }

    /// The headers map of an encoded message: every field-9 entry, a later duplicate key winning.
    fn parse_headers(raw: &Bytes) -> std::result::Result<HashMap<String, Bytes>, Malformed> {
        let mut headers = HashMap::new();
        let mut buf = raw.clone();
        while buf.has_remaining() {
            let (tag, wire) = decode_key(&mut buf)?;
            if tag != 9 {
                skip_field(
                    wire,
                    tag,
                    &mut buf,
                    prost::encoding::DecodeContext::default(),
                )?;
                continue;
            }
            expect(wire, WireType::LengthDelimited, tag)?;
            let (name, value) = Self::header_entry(slice(&mut buf)?)?;
            headers.insert(String::from_utf8_lossy(&name).into_owned(), value);
        }
        Ok(headers)
    }

    pub(crate) fn from_proto(inner: pb::Message) -> Self {
        // Bytes prost has just encoded from a valid message always decode; the fallback keeps what matters
        // most if that ever changes (and the full protobuf below answers every other accessor).
        let mut m = Self::decode(Bytes::from(inner.encode_to_vec())).unwrap_or_else(|_| {
            let mut m = Self::empty(Bytes::new());
            m.offset = inner.offset;
            m.timestamp = inner.timestamp;
            m.partition = inner.partition;
            m.key = inner.key.clone();
            m.value = inner.value.clone();
            m
        });
        m.headers = OnceLock::from(Box::new(inner.headers.clone()));
        m.proto = OnceLock::from(Box::new(inner));
        m
    }

    /// Decodes a message envelope read from NATS (for example from a stream subject).
    pub fn from_envelope(data: &Bytes) -> Result<Self> {
        envelope::decode_message_bytes(data)
            .map(ReceivedMessage::from_proto)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Protocol,
                    format!("not a Liftbridge message envelope: {e}"),
                )
                .with_source(e)
            })
    }

    /// Offset in the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The key (empty when none).
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The value.
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// Takes the value out without copying it.
    pub fn into_value(self) -> Bytes {
        self.value
    }

    /// When the server received the message, in nanoseconds since the Unix epoch.
    pub fn timestamp_nanos(&self) -> i64 {
        self.timestamp
    }

    /// When the server received the message.
    pub fn timestamp(&self) -> SystemTime {
        nanos_to_time(self.timestamp)
    }

    /// The stream.
    pub fn stream(&self) -> &str {
        self.stream.get(&self.raw)
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The NATS subject the message arrived on (set for messages published with plain NATS).
    pub fn subject(&self) -> &str {
        self.subject.get(&self.raw)
    }

    /// The NATS reply subject of the message, if it had one.
    pub fn reply_subject(&self) -> &str {
        self.reply_subject.get(&self.raw)
    }

    /// The headers (the map is built on first use).
    pub fn headers(&self) -> &HashMap<String, Bytes> {
        self.headers
            .get_or_init(|| Box::new(Self::parse_headers(&self.raw).unwrap_or_default()))
    }

    /// One header.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers().get(name)
    }

    /// The correlation id the publisher gave, if the server kept it.
    pub fn correlation_id(&self) -> &str {
        self.correlation_id.get(&self.raw)
    }

    /// The protobuf as received (decoded in full on first use).
    pub fn as_proto(&self) -> &pb::Message {
        self.proto
            .get_or_init(|| Box::new(pb::Message::decode(self.raw.clone()).unwrap_or_default()))
    }

    /// The protobuf as received, owned.
    pub fn into_proto(self) -> pb::Message {
        match self.proto.into_inner() {
            Some(p) => *p,
            None => pb::Message::decode(self.raw).unwrap_or_default(),
        }
    }
}

impl PartialEq for ReceivedMessage {
    fn eq(&self, other: &Self) -> bool {
        self.as_proto() == other.as_proto()
    }
}

/// The gRPC codec of the `Subscribe` call: requests encoded by prost, messages decoded into
/// [`ReceivedMessage`] without copying.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MessageCodec;

impl Codec for MessageCodec {
    type Encode = pb::SubscribeRequest;
    type Decode = ReceivedMessage;
    type Encoder = MessageCodec;
    type Decoder = MessageCodec;

    fn encoder(&mut self) -> Self::Encoder {
        MessageCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageCodec
    }
}

impl Encoder for MessageCodec {
    type Item = pb::SubscribeRequest;
    type Error = Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut EncodeBuf<'_>,
    ) -> std::result::Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding a subscribe request: {e}")))
    }
}

impl Decoder for MessageCodec {
    type Item = ReceivedMessage;
    type Error = Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> std::result::Result<Option<ReceivedMessage>, Status> {
        let raw = src.copy_to_bytes(src.remaining());
        ReceivedMessage::decode(raw)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding a message from the server: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::Message {
        pb::Message {
            offset: 42,
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"hello"),
            timestamp: 1_700_000_000_123_456_789,
            stream: "orders".into(),
            partition: 3,
            subject: "orders.eu".into(),
            reply_subject: "_INBOX.x".into(),
            headers: [
                ("subject".to_string(), Bytes::from_static(b"orders.eu")),
                ("reply".to_string(), Bytes::new()),
                ("trace".to_string(), Bytes::from_static(b"\x00\xff")),
            ]
            .into(),
            ack_inbox: "acks".into(),
            correlation_id: "c-1".into(),
            ack_policy: 2,
        }
    }

    #[test]
    fn decodes_every_field_like_prost() {
        let pb = sample();
        let m = ReceivedMessage::decode(Bytes::from(pb.encode_to_vec())).unwrap();
        assert_eq!(m.offset(), 42);
        assert_eq!(m.key(), &Bytes::from_static(b"k"));
        assert_eq!(m.value(), &Bytes::from_static(b"hello"));
        assert_eq!(m.timestamp_nanos(), 1_700_000_000_123_456_789);
        assert_eq!(m.stream(), "orders");
        assert_eq!(m.partition(), 3);
        assert_eq!(m.subject(), "orders.eu");
        assert_eq!(m.reply_subject(), "_INBOX.x");
        assert_eq!(m.correlation_id(), "c-1");
        assert_eq!(m.headers(), &pb.headers);
        assert_eq!(m.header("trace"), Some(&Bytes::from_static(b"\x00\xff")));
        assert_eq!(m.as_proto(), &pb);
        assert_eq!(m.clone().into_proto(), pb);
        assert_eq!(m, ReceivedMessage::from_proto(pb));
    }

    /// Messages are moved several times between the decoder and the consumer: they stay small.
    #[test]
    fn stays_small_to_move() {
        assert!(
            std::mem::size_of::<ReceivedMessage>() <= 192,
            "{} bytes",
            std::mem::size_of::<ReceivedMessage>()
        );
    }

    #[test]
    fn negative_integers_and_empty_messages() {
        let pb = pb::Message {
            offset: -1,
            timestamp: -5,
            partition: -2,
            ..Default::default()
        };
        let m = ReceivedMessage::decode(Bytes::from(pb.encode_to_vec())).unwrap();
        assert_eq!(
            (m.offset(), m.timestamp_nanos(), m.partition()),
            (-1, -5, -2)
        );
        let empty = ReceivedMessage::decode(Bytes::new()).unwrap();
        assert_eq!(empty.offset(), 0);
        assert!(empty.headers().is_empty());
        assert_eq!(empty.stream(), "");
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut wire = sample().encode_to_vec();
        // field 99, varint 7; field 100, length-delimited "xyz"
        wire.extend_from_slice(&[0x98, 0x06, 0x07, 0xa2, 0x06, 0x03, b'x', b'y', b'z']);
        let m = ReceivedMessage::decode(Bytes::from(wire)).unwrap();
        assert_eq!(m.value(), &Bytes::from_static(b"hello"));
        assert_eq!(m.headers().len(), 3);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let wire = sample().encode_to_vec();
        // Every truncation either decodes (cut at a field boundary) or fails cleanly, like prost.
        for cut in 0..wire.len() {
            let ours = ReceivedMessage::decode(Bytes::copy_from_slice(&wire[..cut]));
            let theirs = pb::Message::decode(&wire[..cut]);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "cut at {cut}");
        }
        // A string field that is not UTF-8.
        let bad = [0x2a, 0x02, 0xff, 0xfe];
        assert!(ReceivedMessage::decode(Bytes::copy_from_slice(&bad)).is_err());
        assert!(pb::Message::decode(&bad[..]).is_err());
        // A length past the end.
        let long = [0x1a, 0x10, b'a'];
        assert!(ReceivedMessage::decode(Bytes::copy_from_slice(&long)).is_err());
        // The value field with a varint wire type.
        let wrong = [0x18, 0x01];
        assert!(ReceivedMessage::decode(Bytes::copy_from_slice(&wrong)).is_err());
    }
}
