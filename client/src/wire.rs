//! Protobuf wire reading for the messages the client decodes without copying ([`ReceivedMessage`] and
//! [`Ack`]): length-delimited fields become slices of the one received buffer, `string` fields become
//! [`Span`]s of it, checked to be UTF-8 once.
//!
//! [`ReceivedMessage`]: crate::ReceivedMessage
//! [`Ack`]: crate::Ack

use bytes::{Buf, Bytes};
use prost::encoding::{WireType, decode_varint};

/// A `string` field: a range of the raw message, checked to be UTF-8 when the message was decoded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    pub(crate) fn of(raw: &Bytes, field: &Bytes) -> std::result::Result<Self, Malformed> {
        std::str::from_utf8(field).map_err(|_| malformed("a string field is not valid UTF-8"))?;
        let start = field.as_ptr() as usize - raw.as_ptr() as usize;
        Ok(Span {
            start: u32::try_from(start).map_err(|_| malformed("message over 4 GiB"))?,
            len: u32::try_from(field.len()).map_err(|_| malformed("message over 4 GiB"))?,
        })
    }

    pub(crate) fn get(self, raw: &Bytes) -> &str {
        let (start, len) = (self.start as usize, self.len as usize);
        raw.get(start..start + len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

/// Why the bytes the server sent are not the protobuf message they should be.
#[derive(Debug, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub(crate) struct Malformed(String);

impl From<prost::DecodeError> for Malformed {
    fn from(e: prost::DecodeError) -> Self {
        Malformed(e.to_string())
    }
}

pub(crate) fn malformed(what: &str) -> Malformed {
    Malformed(what.to_string())
}

/// Reads a length-delimited field as a slice of `buf` (no copy when `buf` is `Bytes`).
pub(crate) fn slice(buf: &mut Bytes) -> std::result::Result<Bytes, Malformed> {
    let len = decode_varint(buf)?;
    let len = usize::try_from(len).map_err(|_| malformed("field length"))?;
    if len > buf.remaining() {
        return Err(malformed("field longer than the message"));
    }
    Ok(buf.split_to(len))
}

pub(crate) fn utf8(b: Bytes) -> std::result::Result<Bytes, Malformed> {
    std::str::from_utf8(&b).map_err(|_| malformed("a string field is not valid UTF-8"))?;
    Ok(b)
}

/// Checks that a length-delimited field has the wire type it must have.
pub(crate) fn expect(
    wire: WireType,
    want: WireType,
    tag: u32,
) -> std::result::Result<(), Malformed> {
    if wire == want {
        Ok(())
    } else {
        Err(malformed(&format!(
            "field {tag} has wire type {wire:?}, expected {want:?}"
        )))
    }
}
