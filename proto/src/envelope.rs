//! The Liftbridge envelope: how protobufs travel over NATS.
//!
//! Liftbridge wraps every protobuf it sends over NATS (published messages,
//! acks and its internal requests) in a small header. All integers are
//! big-endian:
//!
//! ```text
//! offset  size  field
//! 0       4     magic  B9 0E 43 B4
//! 4       1     version (0 is the only one)
//! 5       1     header length: 8, or 12 when a CRC is present
//! 6       1     flags: bit 0 set = CRC-32C present
//! 7       1     message type (see MsgType)
//! 8       4     CRC-32C (Castagnoli) of the payload, only when flag bit 0 is set
//! hdr     ..    protobuf payload
//! ```
//!
//! # What the decoder accepts
//!
//! The rules are Liftbridge's (`server/protocol/envelope.go`), minus its crash:
//!
//! * at least 8 bytes, the magic, version 0, a known message type;
//! * flag bit 0 set: the header length must be exactly 12 and the CRC-32C of
//!   the payload must match;
//! * flag bit 0 clear: like Go, any header length from 8 up to the data length
//!   is accepted and the bytes between offset 8 and the header length are
//!   skipped (room for future header fields). Go also "accepts" a length below
//!   8, which makes the payload overlap the header; we reject it;
//! * a header length past the end of the data is an error (Go panics);
//! * flag bits other than bit 0 are ignored, as in Go; they are reported in
//!   [`Envelope::flags`];
//! * an empty payload (exactly 8 bytes) is accepted, like the Go server. Note
//!   that go-liftbridge's client requires *more* than 8 bytes, so an all-default
//!   `Ack` (which encodes to nothing) would be rejected by it.
//!
//! Liftbridge's server treats any NATS message on a stream subject that fails
//! to decode as a `Message` envelope as a plain message and stores its bytes as
//! the value; [`is_envelope`] only looks at the magic.
//!
//! # Encoding
//!
//! The encoders make one allocation of exactly header + payload length. Go
//! never sets the CRC when it encodes; passing `with_crc = true` adds one,
//! which every Liftbridge decoder checks.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::pb;

/// The four bytes every envelope starts with.
pub const MAGIC: [u8; 4] = [0xB9, 0x0E, 0x43, 0xB4];

/// The only envelope protocol version.
pub const VERSION: u8 = 0x00;

/// Header length without a CRC (also the minimum envelope length).
pub const HEADER_LEN: usize = 8;

/// Header length with a CRC-32C.
pub const HEADER_LEN_WITH_CRC: usize = 12;

/// Flag bit 0: a CRC-32C of the payload follows the fixed header.
pub const FLAG_CRC32C: u8 = 0b0000_0001;

/// What an envelope's payload is. Values are fixed by Liftbridge; only
/// [`MsgType::Publish`] and [`MsgType::Ack`] are seen by clients, the rest are
/// server-to-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MsgType {
    /// 0: a [`pb::Message`] published to a stream subject.
    Publish = 0,
    /// 1: a [`pb::Ack`] published to an ack inbox.
    Ack = 1,
    /// 2: follower fetch request (internal).
    ReplicationRequest = 2,
    /// 3: leader's reply with message-set data; binary, not protobuf (internal).
    ReplicationResponse = 3,
    /// 4: request to join the Raft cluster (internal).
    RaftJoinRequest = 4,
    /// 5: reply to a Raft join (internal).
    RaftJoinResponse = 5,
    /// 6: leader-epoch end-offset request for log truncation (internal).
    LeaderEpochOffsetRequest = 6,
    /// 7: reply to a leader-epoch offset request (internal).
    LeaderEpochOffsetResponse = 7,
    /// 8: metadata request forwarded to the Raft leader (internal).
    PropagatedRequest = 8,
    /// 9: reply to a forwarded request (internal).
    PropagatedResponse = 9,
    /// 10: broker info survey request (internal).
    ServerInfoRequest = 10,
    /// 11: broker info survey reply (internal).
    ServerInfoResponse = 11,
    /// 12: partition status request (internal).
    PartitionStatusRequest = 12,
    /// 13: partition status reply (internal).
    PartitionStatusResponse = 13,
    /// 14: new-data notification to a waiting follower (internal).
    PartitionNotification = 14,
}

impl MsgType {
    /// Every message type, in wire-value order (`ALL[i] as u8 == i`).
    pub const ALL: [MsgType; 15] = [
        MsgType::Publish,
        MsgType::Ack,
        MsgType::ReplicationRequest,
        MsgType::ReplicationResponse,
        MsgType::RaftJoinRequest,
        MsgType::RaftJoinResponse,
        MsgType::LeaderEpochOffsetRequest,
        MsgType::LeaderEpochOffsetResponse,
        MsgType::PropagatedRequest,
        MsgType::PropagatedResponse,
        MsgType::ServerInfoRequest,
        MsgType::ServerInfoResponse,
        MsgType::PartitionStatusRequest,
        MsgType::PartitionStatusResponse,
        MsgType::PartitionNotification,
    ];

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Parses a wire value; `None` for values above 14.
    pub const fn from_u8(value: u8) -> Option<Self> {
        if (value as usize) < Self::ALL.len() {
            Some(Self::ALL[value as usize])
        } else {
            None
        }
    }

    /// Whether clients see this type (`Publish` and `Ack`); the others are
    /// exchanged between servers only.
    pub const fn is_client_facing(self) -> bool {
        matches!(self, MsgType::Publish | MsgType::Ack)
    }

    /// The type's name as in Liftbridge, e.g. `"Publish"`.
    pub const fn name(self) -> &'static str {
        match self {
            MsgType::Publish => "Publish",
            MsgType::Ack => "Ack",
            MsgType::ReplicationRequest => "ReplicationRequest",
            MsgType::ReplicationResponse => "ReplicationResponse",
            MsgType::RaftJoinRequest => "RaftJoinRequest",
            MsgType::RaftJoinResponse => "RaftJoinResponse",
            MsgType::LeaderEpochOffsetRequest => "LeaderEpochOffsetRequest",
            MsgType::LeaderEpochOffsetResponse => "LeaderEpochOffsetResponse",
            MsgType::PropagatedRequest => "PropagatedRequest",
            MsgType::PropagatedResponse => "PropagatedResponse",
            MsgType::ServerInfoRequest => "ServerInfoRequest",
            MsgType::ServerInfoResponse => "ServerInfoResponse",
            MsgType::PartitionStatusRequest => "PartitionStatusRequest",
            MsgType::PartitionStatusResponse => "PartitionStatusResponse",
            MsgType::PartitionNotification => "PartitionNotification",
        }
    }
}

impl TryFrom<u8> for MsgType {
    type Error = EnvelopeError;

    /// Fails with [`EnvelopeError::UnknownType`] for values above 14.
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::from_u8(value).ok_or(EnvelopeError::UnknownType(value))
    }
}

impl From<MsgType> for u8 {
    fn from(t: MsgType) -> u8 {
        t.as_u8()
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u8())
    }
}

/// What is wrong with an envelope's header-length byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderLengthProblem {
    /// Below the fixed 8-byte header.
    BelowMinimum,
    /// The CRC flag is set but the length is not 12.
    CrcFlagNeedsTwelve,
    /// The header would end past the end of the data.
    PastEndOfData,
}

impl fmt::Display for HeaderLengthProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderLengthProblem::BelowMinimum => "shorter than the 8-byte fixed header",
            HeaderLengthProblem::CrcFlagNeedsTwelve => "CRC flag set, so it must be 12",
            HeaderLengthProblem::PastEndOfData => "longer than the data",
        })
    }
}

/// Why bytes could not be decoded as an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Fewer than 8 bytes: no room for the fixed header.
    #[error("envelope too short: {len} bytes, the header alone needs 8")]
    TooShort {
        /// Length of the data.
        len: usize,
    },
    /// The first four bytes are not `B9 0E 43 B4`.
    #[error("not an envelope: magic is {found:02X?}, expected [B9, 0E, 43, B4]")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// A version other than 0.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The header-length byte is inconsistent with the flags or the data.
    #[error("invalid envelope header length {header_len} (data is {data_len} bytes): {problem}")]
    HeaderLength {
        /// The header-length byte.
        header_len: u8,
        /// Length of the data.
        data_len: usize,
        /// What is wrong with it.
        problem: HeaderLengthProblem,
    },
    /// The CRC-32C in the header does not match the payload.
    #[error("envelope CRC-32C mismatch: header says {expected:#010x}, payload has {actual:#010x}")]
    CrcMismatch {
        /// The CRC stored in the header.
        expected: u32,
        /// The CRC computed over the payload.
        actual: u32,
    },
    /// A known message type, but not the one the caller asked for.
    #[error("unexpected envelope message type: expected {expected}, got {actual}")]
    UnexpectedType {
        /// The type the caller wanted.
        expected: MsgType,
        /// The type in the header.
        actual: MsgType,
    },
    /// A message-type byte Liftbridge does not define (above 14).
    #[error("unknown envelope message type {0}")]
    UnknownType(u8),
    /// The header is fine but the payload is not a valid protobuf of the
    /// expected message.
    #[error("invalid envelope payload: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// A decoded envelope header and a view of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The message type.
    pub msg_type: MsgType,
    /// The raw flags byte (only bit 0, [`FLAG_CRC32C`], has a meaning).
    pub flags: u8,
    /// The header length, i.e. where the payload starts.
    pub header_len: usize,
    /// The CRC-32C from the header when flag bit 0 is set. It has been checked
    /// against the payload.
    pub crc32c: Option<u32>,
    /// The protobuf payload (for [`MsgType::ReplicationResponse`], binary data).
    pub payload: &'a [u8],
}

impl Envelope<'_> {
    /// Decodes the payload as the protobuf `M`, whatever the message type.
    /// Prefer [`decode_proto`], which also checks the type.
    pub fn decode_payload<M: prost::Message + Default>(&self) -> Result<M, EnvelopeError> {
        Ok(M::decode(self.payload)?)
    }
}

/// Whether `data` starts with the envelope magic number.
///
/// This is the cheap test for "was this NATS message sent by a Liftbridge
/// client?". It does not validate anything else: the Go server stores any
/// message that fails [`decode_message`] as a plain value, even with the magic.
pub fn is_envelope(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() && data[..MAGIC.len()] == MAGIC
}

/// Wraps an already encoded payload in an envelope of type `msg_type`, with a
/// CRC-32C of the payload when `with_crc` is true.
pub fn encode(msg_type: MsgType, payload: &[u8], with_crc: bool) -> Bytes {
    let mut buf = BytesMut::with_capacity(header_len(with_crc) + payload.len());
    put_header(
        &mut buf,
        msg_type,
        with_crc.then(|| crc32c::crc32c(payload)),
    );
    buf.put_slice(payload);
    buf.freeze()
}

/// Encodes any protobuf `msg` and wraps it in an envelope of type `msg_type`,
/// in a single allocation. Used for the internal message types, whose
/// protobufs live outside this crate.
pub fn encode_proto<M: prost::Message>(msg_type: MsgType, msg: &M, with_crc: bool) -> Bytes {
    let header = header_len(with_crc);
    let mut buf = BytesMut::with_capacity(header + msg.encoded_len());
    // Write a zero CRC placeholder first; it is filled in once the payload is
    // in place, so the payload is serialized only once.
    put_header(&mut buf, msg_type, with_crc.then_some(0));
    // `BytesMut` grows on demand (`remaining_mut()` is `usize::MAX - len`), and
    // prost only fails when the buffer cannot take `encoded_len()` more bytes,
    // so this cannot fail.
    msg.encode(&mut buf)
        .expect("encoding into a growable BytesMut cannot run out of space");
    if with_crc {
        let crc = crc32c::crc32c(&buf[HEADER_LEN_WITH_CRC..]);
        buf[HEADER_LEN..HEADER_LEN_WITH_CRC].copy_from_slice(&crc.to_be_bytes());
    }
    buf.freeze()
}

/// Encodes a published message (type [`MsgType::Publish`]).
pub fn encode_message(msg: &pb::Message, with_crc: bool) -> Bytes {
    encode_proto(MsgType::Publish, msg, with_crc)
}

/// Encodes an ack (type [`MsgType::Ack`]).
pub fn encode_ack(ack: &pb::Ack, with_crc: bool) -> Bytes {
    encode_proto(MsgType::Ack, ack, with_crc)
}

/// Parses and validates an envelope of any known type. The payload is not
/// decoded. Never panics, whatever `data` holds.
pub fn decode(data: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    parse(data, None)
}

/// Like [`decode`], but fails with [`EnvelopeError::UnexpectedType`] unless
/// the envelope is of type `expected`. Returns the payload.
pub fn decode_expecting(data: &[u8], expected: MsgType) -> Result<&[u8], EnvelopeError> {
    parse(data, Some(expected)).map(|env| env.payload)
}

/// Validates an envelope of type `expected` and decodes its payload as `M`.
pub fn decode_proto<M: prost::Message + Default>(
    data: &[u8],
    expected: MsgType,
) -> Result<M, EnvelopeError> {
    Ok(M::decode(decode_expecting(data, expected)?)?)
}

/// Decodes a published message (type [`MsgType::Publish`]).
pub fn decode_message(data: &[u8]) -> Result<pb::Message, EnvelopeError> {
    decode_proto(data, MsgType::Publish)
}

/// Decodes an ack (type [`MsgType::Ack`]).
pub fn decode_ack(data: &[u8]) -> Result<pb::Ack, EnvelopeError> {
    decode_proto(data, MsgType::Ack)
}

/// Like [`decode_message`], but the `key`, `value` and header values of the
/// result share `data`'s buffer instead of being copied.
pub fn decode_message_bytes(data: &Bytes) -> Result<pb::Message, EnvelopeError> {
    let header_len = parse(data, Some(MsgType::Publish))?.header_len;
    Ok(pb::Message::decode(data.slice(header_len..))?)
}

fn header_len(with_crc: bool) -> usize {
    if with_crc {
        HEADER_LEN_WITH_CRC
    } else {
        HEADER_LEN
    }
}

fn put_header(buf: &mut BytesMut, msg_type: MsgType, crc: Option<u32>) {
    buf.put_slice(&MAGIC);
    buf.put_u8(VERSION);
    match crc {
        Some(crc) => {
            buf.put_u8(HEADER_LEN_WITH_CRC as u8);
            buf.put_u8(FLAG_CRC32C);
            buf.put_u8(msg_type.as_u8());
            buf.put_u32(crc);
        }
        None => {
            buf.put_u8(HEADER_LEN as u8);
            buf.put_u8(0);
            buf.put_u8(msg_type.as_u8());
        }
    }
}

/// The one header parser. Checks happen in Go's order (length, magic,
/// version, type, header length, CRC) so the same input fails for the same
/// reason, except that a header past the end is an error instead of a panic.
fn parse(data: &[u8], expected: Option<MsgType>) -> Result<Envelope<'_>, EnvelopeError> {
    let Some(&[m0, m1, m2, m3, version, raw_header_len, flags, raw_type]) = data.first_chunk()
    else {
        return Err(EnvelopeError::TooShort { len: data.len() });
    };
    let magic = [m0, m1, m2, m3];
    if magic != MAGIC {
        return Err(EnvelopeError::BadMagic { found: magic });
    }
    if version != VERSION {
        return Err(EnvelopeError::UnsupportedVersion(version));
    }
    let msg_type = MsgType::try_from(raw_type)?;
    if let Some(expected) = expected
        && expected != msg_type
    {
        return Err(EnvelopeError::UnexpectedType {
            expected,
            actual: msg_type,
        });
    }

    let header_len = usize::from(raw_header_len);
    let has_crc = flags & FLAG_CRC32C != 0;
    let bad_len = |problem| EnvelopeError::HeaderLength {
        header_len: raw_header_len,
        data_len: data.len(),
        problem,
    };
    if has_crc && header_len != HEADER_LEN_WITH_CRC {
        return Err(bad_len(HeaderLengthProblem::CrcFlagNeedsTwelve));
    }
    if header_len < HEADER_LEN {
        return Err(bad_len(HeaderLengthProblem::BelowMinimum));
    }
    let (Some(header), Some(payload)) = (data.get(..header_len), data.get(header_len..)) else {
        return Err(bad_len(HeaderLengthProblem::PastEndOfData));
    };

    let crc32c = if has_crc {
        let stored = match header.get(HEADER_LEN..HEADER_LEN_WITH_CRC) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
            // Unreachable: header_len == 12 was checked above; kept as an
            // error rather than a panic.
            _ => return Err(bad_len(HeaderLengthProblem::CrcFlagNeedsTwelve)),
        };
        let computed = crc32c::crc32c(payload);
        if computed != stored {
            return Err(EnvelopeError::CrcMismatch {
                expected: stored,
                actual: computed,
            });
        }
        Some(stored)
    } else {
        None
    };

    Ok(Envelope {
        msg_type,
        flags,
        header_len,
        crc32c,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(header_len: u8, flags: u8, msg_type: u8) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[VERSION, header_len, flags, msg_type]);
        v
    }

    fn sample_message() -> pb::Message {
        pb::Message {
            offset: 41,
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"hello"),
            ack_inbox: "inbox".into(),
            correlation_id: "c1".into(),
            ack_policy: pb::AckPolicy::All as i32,
            ..Default::default()
        }
    }

    #[test]
    fn header_layout_without_crc() {
        let wire = encode(MsgType::Ack, b"xyz", false);
        assert_eq!(
            &wire[..],
            &[0xB9, 0x0E, 0x43, 0xB4, 0, 8, 0, 1, b'x', b'y', b'z']
        );
    }

    #[test]
    fn header_layout_with_crc() {
        let wire = encode(MsgType::Publish, b"123456789", true);
        // CRC-32C check value of "123456789" is 0xE3069283.
        assert_eq!(
            &wire[..12],
            &[0xB9, 0x0E, 0x43, 0xB4, 0, 12, 1, 0, 0xE3, 0x06, 0x92, 0x83]
        );
        assert_eq!(&wire[12..], b"123456789");
    }

    #[test]
    fn encode_allocates_exactly_once() {
        let msg = sample_message();
        for with_crc in [false, true] {
            let wire = encode_message(&msg, with_crc);
            assert_eq!(wire.len(), header_len(with_crc) + msg.encoded_len());
            assert_eq!(decode_message(&wire).as_ref(), Ok(&msg));
            assert_eq!(
                encode(MsgType::Publish, &msg.encode_to_vec(), with_crc),
                wire
            );
        }
    }

    #[test]
    fn msg_type_round_trips_every_value() {
        for b in 0..=u8::MAX {
            match MsgType::try_from(b) {
                Ok(t) => {
                    assert_eq!(u8::from(t), b);
                    assert_eq!(MsgType::ALL[usize::from(b)], t);
                }
                Err(e) => {
                    assert!(b > 14);
                    assert_eq!(e, EnvelopeError::UnknownType(b));
                }
            }
        }
        assert!(MsgType::Publish.is_client_facing());
        assert!(MsgType::Ack.is_client_facing());
        assert!(!MsgType::PartitionNotification.is_client_facing());
        assert_eq!(
            MsgType::PartitionNotification.to_string(),
            "PartitionNotification (14)"
        );
    }

    #[test]
    fn err_too_short() {
        for len in 0..HEADER_LEN {
            let data = &encode(MsgType::Publish, b"", false)[..len];
            assert_eq!(decode(data), Err(EnvelopeError::TooShort { len }));
        }
    }

    #[test]
    fn empty_payload_is_accepted() {
        let wire = encode_ack(&pb::Ack::default(), false);
        assert_eq!(wire.len(), HEADER_LEN);
        assert_eq!(decode_ack(&wire), Ok(pb::Ack::default()));
    }

    #[test]
    fn err_bad_magic() {
        let mut data = header(8, 0, 0);
        data[0] = 0xB8;
        assert_eq!(
            decode(&data),
            Err(EnvelopeError::BadMagic {
                found: [0xB8, 0x0E, 0x43, 0xB4]
            })
        );
        assert!(!is_envelope(&data));
        assert!(!is_envelope(b"hello world"));
        assert!(!is_envelope(&MAGIC[..3]));
        assert!(is_envelope(&MAGIC));
    }

    #[test]
    fn err_unsupported_version() {
        let mut data = header(8, 0, 0);
        data[4] = 1;
        assert_eq!(decode(&data), Err(EnvelopeError::UnsupportedVersion(1)));
    }

    #[test]
    fn err_unknown_type() {
        assert_eq!(
            decode(&header(8, 0, 15)),
            Err(EnvelopeError::UnknownType(15))
        );
        assert_eq!(
            decode_message(&header(8, 0, 255)),
            Err(EnvelopeError::UnknownType(255))
        );
    }

    #[test]
    fn err_unexpected_type() {
        let wire = encode_ack(&pb::Ack::default(), true);
        assert_eq!(
            decode_message(&wire),
            Err(EnvelopeError::UnexpectedType {
                expected: MsgType::Publish,
                actual: MsgType::Ack
            })
        );
        let wire = encode_message(&sample_message(), false);
        assert_eq!(
            decode_ack(&wire),
            Err(EnvelopeError::UnexpectedType {
                expected: MsgType::Ack,
                actual: MsgType::Publish
            })
        );
    }

    #[test]
    fn err_header_length_below_minimum() {
        let mut data = header(7, 0, 0);
        data.extend_from_slice(b"payload");
        assert_eq!(
            decode(&data),
            Err(EnvelopeError::HeaderLength {
                header_len: 7,
                data_len: 15,
                problem: HeaderLengthProblem::BelowMinimum,
            })
        );
    }

    #[test]
    fn err_header_length_crc_needs_twelve() {
        for bad in [8u8, 11, 13, 255] {
            let mut data = header(bad, FLAG_CRC32C, 0);
            data.resize(64, 0);
            assert_eq!(
                decode(&data),
                Err(EnvelopeError::HeaderLength {
                    header_len: bad,
                    data_len: 64,
                    problem: HeaderLengthProblem::CrcFlagNeedsTwelve,
                })
            );
        }
    }

    #[test]
    fn err_header_length_past_end_does_not_panic() {
        // Liftbridge's Go server panics on exactly this input.
        let data = header(200, 0, 0);
        assert_eq!(
            decode(&data),
            Err(EnvelopeError::HeaderLength {
                header_len: 200,
                data_len: 8,
                problem: HeaderLengthProblem::PastEndOfData,
            })
        );
        let data = header(12, FLAG_CRC32C, 1);
        assert_eq!(
            decode_ack(&data),
            Err(EnvelopeError::HeaderLength {
                header_len: 12,
                data_len: 8,
                problem: HeaderLengthProblem::PastEndOfData,
            })
        );
    }

    #[test]
    fn longer_header_without_crc_is_skipped_like_go() {
        let msg = sample_message();
        let mut data = header(10, 0, 0);
        data.extend_from_slice(&[0xAA, 0xBB]);
        data.extend_from_slice(&msg.encode_to_vec());
        let env = decode(&data).expect("valid");
        assert_eq!(env.header_len, 10);
        assert_eq!(env.crc32c, None);
        assert_eq!(decode_message(&data), Ok(msg));
    }

    #[test]
    fn unknown_flag_bits_are_ignored() {
        let msg = sample_message();
        let mut wire = encode_message(&msg, true).to_vec();
        wire[6] |= 0b1111_0000;
        let env = decode(&wire).expect("valid");
        assert_eq!(env.flags, 0b1111_0001);
        assert_eq!(decode_message(&wire), Ok(msg));
    }

    #[test]
    fn err_crc_mismatch() {
        let mut wire = encode(MsgType::Publish, b"123456789", true).to_vec();
        wire[12] ^= 0x01;
        let actual = crc32c::crc32c(&wire[12..]);
        assert_eq!(
            decode(&wire),
            Err(EnvelopeError::CrcMismatch {
                expected: 0xE306_9283,
                actual
            })
        );
    }

    #[test]
    fn err_protobuf() {
        // Field 1 (offset, varint) with a truncated varint.
        let wire = encode(MsgType::Publish, &[0x08, 0xFF], false);
        assert!(matches!(
            decode_message(&wire),
            Err(EnvelopeError::Protobuf(_))
        ));
        let env = decode(&wire).expect("header is valid");
        assert!(matches!(
            env.decode_payload::<pb::Message>(),
            Err(EnvelopeError::Protobuf(_))
        ));
    }

    #[test]
    fn zero_copy_decode_shares_the_buffer() {
        let msg = sample_message();
        let wire = encode_message(&msg, true);
        let decoded = decode_message_bytes(&wire).expect("valid");
        assert_eq!(decoded, msg);
        let range = wire.as_ptr_range();
        assert!(range.contains(&decoded.value.as_ptr()));
        assert_eq!(
            decode_message_bytes(&Bytes::from_static(b"nope")),
            Err(EnvelopeError::TooShort { len: 4 })
        );
    }

    #[test]
    fn errors_display() {
        let e = EnvelopeError::HeaderLength {
            header_len: 200,
            data_len: 8,
            problem: HeaderLengthProblem::PastEndOfData,
        };
        assert_eq!(
            e.to_string(),
            "invalid envelope header length 200 (data is 8 bytes): longer than the data"
        );
        let e = EnvelopeError::BadMagic {
            found: [1, 2, 3, 4],
        };
        assert_eq!(
            e.to_string(),
            "not an envelope: magic is [01, 02, 03, 04], expected [B9, 0E, 43, B4]"
        );
        let e = EnvelopeError::CrcMismatch {
            expected: 1,
            actual: 0xE306_9283,
        };
        assert_eq!(
            e.to_string(),
            "envelope CRC-32C mismatch: header says 0x00000001, payload has 0xe3069283"
        );
    }
}
