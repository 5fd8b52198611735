//! Record codec: the on-disk framing of one message.
//!
//! ```text
//! header (32 bytes, big-endian):
//!   offset u64 | timestamp_ns i64 | leader_epoch u64 | body_len u32 | crc32c u32
//! body (body_len bytes):
//!   attributes u8 (= 0 in format v1) | key_len i32 (-1 = none) | key | value_len i32 (-1 = none) | value |
//!   header_count u16 | { name_len u16 | name | value_len u32 | value } * header_count
//! ```
//!
//! The CRC-32C covers the first 28 header bytes (offset, timestamp, epoch, length) *and* the body, so a
//! flipped bit anywhere in a record except in the CRC field itself is caught — and a flip in the CRC field
//! is caught too, because it no longer matches. A zero-filled region never decodes: its length is below
//! the minimum body size and its CRC would not match.

use bytes::Bytes;

use super::error::{LogError, Result};

/// Size of the fixed record header in bytes.
pub const RECORD_HEADER_LEN: usize = 32;
/// Smallest possible body: attributes, two lengths and a header count.
pub const MIN_BODY_LEN: usize = 1 + 4 + 4 + 2;
/// Bytes of the header covered by the CRC (everything before the CRC field).
const CRC_COVERED_HEADER: usize = 28;

/// A record to append. The log assigns its offset and leader epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Timestamp in nanoseconds since the Unix epoch (Liftbridge stamps the leader's clock).
    pub timestamp_ns: i64,
    /// Optional key; compaction keeps the newest record per key.
    pub key: Option<Bytes>,
    /// Optional value (`None` is stored as length -1, like Liftbridge's nil value).
    pub value: Option<Bytes>,
    /// Message headers, in order. Names are bytes (Liftbridge uses UTF-8 strings) of at most 65535 bytes.
    pub headers: Vec<(Bytes, Bytes)>,
}

impl NewRecord {
    /// A record with a value and nothing else.
    pub fn new(timestamp_ns: i64, value: impl Into<Bytes>) -> Self {
        NewRecord {
            timestamp_ns,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
        }
    }

    /// Sets the key (builder style).
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header (builder style).
    pub fn with_header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Size of this record once encoded (header included), or an error if it cannot be encoded.
    pub fn encoded_len(&self) -> Result<usize> {
        let mut len = RECORD_HEADER_LEN + MIN_BODY_LEN;
        if let Some(k) = &self.key {
            check_i32_len("key", k.len())?;
            len += k.len();
        }
        if let Some(v) = &self.value {
            check_i32_len("value", v.len())?;
            len += v.len();
        }
        if self.headers.len() > usize::from(u16::MAX) {
            return Err(LogError::InvalidRecord {
                reason: format!("{} headers exceed the limit of 65535", self.headers.len()),
            });
        }
        for (name, value) in &self.headers {
            if name.len() > usize::from(u16::MAX) {
                return Err(LogError::InvalidRecord {
                    reason: format!("header name of {} bytes exceeds 65535", name.len()),
                });
            }
            if u32::try_from(value.len()).is_err() {
                return Err(LogError::InvalidRecord {
                    reason: "header value longer than 4 GiB".into(),
                });
            }
            len += 2 + name.len() + 4 + value.len();
        }
        if len - RECORD_HEADER_LEN > u32::MAX as usize {
            return Err(LogError::InvalidRecord {
                reason: "record body longer than 4 GiB".into(),
            });
        }
        Ok(len)
    }
}

fn check_i32_len(what: &str, len: usize) -> Result<()> {
    if i32::try_from(len).is_err() {
        return Err(LogError::InvalidRecord {
            reason: format!("{what} of {len} bytes exceeds 2 GiB"),
        });
    }
    Ok(())
}

/// A record read from the log. Key, value and headers are zero-copy slices of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position of the record in the partition.
    pub offset: u64,
    /// Timestamp in nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Leader epoch of the leader that appended the record.
    pub leader_epoch: u64,
    /// Key, if any.
    pub key: Option<Bytes>,
    /// Value, if any.
    pub value: Option<Bytes>,
    /// Headers in their stored order.
    pub headers: Vec<(Bytes, Bytes)>,
}

impl Record {
    /// Size of the record on disk (header included).
    pub fn encoded_len(&self) -> usize {
        let mut len = RECORD_HEADER_LEN + MIN_BODY_LEN;
        len += self.key.as_ref().map_or(0, Bytes::len);
        len += self.value.as_ref().map_or(0, Bytes::len);
        for (n, v) in &self.headers {
            len += 6 + n.len() + v.len();
        }
        len
    }
}

/// The decoded fixed header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub offset: u64,
    pub timestamp_ns: i64,
    pub leader_epoch: u64,
    pub body_len: u32,
}

impl RecordHeader {
    /// Total size of the framed record.
    pub fn total_len(&self) -> usize {
        RECORD_HEADER_LEN + self.body_len as usize
    }
}

/// Why bytes could not be decoded as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends before the record does; `needed` is the total record size if the header was readable.
    Incomplete { needed: usize },
    /// The bytes are not a valid record.
    Corrupt(&'static str),
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the fixed header without checking anything but its presence.
pub(crate) fn peek_header(buf: &[u8]) -> Option<RecordHeader> {
    if buf.len() < RECORD_HEADER_LEN {
        return None;
    }
    Some(RecordHeader {
        offset: be_u64(buf, 0),
        timestamp_ns: be_u64(buf, 8) as i64,
        leader_epoch: be_u64(buf, 16),
        body_len: be_u32(buf, 24),
    })
}

/// Field positions of a validated body, relative to the body start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyLayout {
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    headers_at: usize,
    header_count: u16,
}

impl BodyLayout {
    /// The key's byte range relative to the record start (header included), if the record has a key.
    pub fn key_range(&self) -> Option<(usize, usize)> {
        self.key
            .map(|(s, e)| (RECORD_HEADER_LEN + s, RECORD_HEADER_LEN + e))
    }
}

/// Byte range of an optional field (`None` = length -1).
type FieldRange = Option<(usize, usize)>;

/// Parses an optional `i32`-length-prefixed field at `at`; returns its range and the next position.
fn opt_field(body: &[u8], at: usize) -> std::result::Result<(FieldRange, usize), &'static str> {
    if at + 4 > body.len() {
        return Err("length field past end of body");
    }
    let len = be_u32(body, at) as i32;
    let start = at + 4;
    if len == -1 {
        return Ok((None, start));
    }
    if len < 0 {
        return Err("negative field length");
    }
    let end = start
        .checked_add(len as usize)
        .ok_or("field length overflow")?;
    if end > body.len() {
        return Err("field extends past end of body");
    }
    Ok((Some((start, end)), end))
}

/// Validates the body framing (attributes, lengths, header list consuming the body exactly).
fn parse_body(body: &[u8]) -> std::result::Result<BodyLayout, &'static str> {
    if body.len() < MIN_BODY_LEN {
        return Err("body shorter than the minimum");
    }
    if body[0] != 0 {
        return Err("unknown attributes (not format v1)");
    }
    let (key, at) = opt_field(body, 1)?;
    let (value, at) = opt_field(body, at)?;
    if at + 2 > body.len() {
        return Err("header count past end of body");
    }
    let header_count = be_u16(body, at);
    let headers_at = at + 2;
    let mut p = headers_at;
    for _ in 0..header_count {
        if p + 2 > body.len() {
            return Err("header name length past end of body");
        }
        let nl = usize::from(be_u16(body, p));
        p += 2 + nl;
        if p + 4 > body.len() {
            return Err("header value length past end of body");
        }
        let vl = be_u32(body, p) as usize;
        p = (p + 4).checked_add(vl).ok_or("header length overflow")?;
        if p > body.len() {
            return Err("header value past end of body");
        }
    }
    if p != body.len() {
        return Err("trailing bytes after the last header");
    }
    Ok(BodyLayout {
        key,
        value,
        headers_at,
        header_count,
    })
}

/// Checks one framed record at the start of `buf`: header present, sane length, CRC, body framing.
pub(crate) fn check_record(
    buf: &[u8],
) -> std::result::Result<(RecordHeader, BodyLayout), FrameError> {
    let header = peek_header(buf).ok_or(FrameError::Incomplete {
        needed: RECORD_HEADER_LEN,
    })?;
    if (header.body_len as usize) < MIN_BODY_LEN {
        return Err(FrameError::Corrupt("record length below the minimum"));
    }
    let total = header.total_len();
    if buf.len() < total {
        return Err(FrameError::Incomplete { needed: total });
    }
    let stored_crc = be_u32(buf, CRC_COVERED_HEADER);
    let body = &buf[RECORD_HEADER_LEN..total];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[..CRC_COVERED_HEADER]), body);
    if crc != stored_crc {
        return Err(FrameError::Corrupt("CRC-32C mismatch"));
    }
    let layout = parse_body(body).map_err(FrameError::Corrupt)?;
    Ok((header, layout))
}

/// Builds a [`Record`] from a record checked by [`check_record`] that starts at `at` in `chunk`.
pub(crate) fn build_record(
    chunk: &Bytes,
    at: usize,
    header: &RecordHeader,
    layout: &BodyLayout,
) -> Record {
    let body_at = at + RECORD_HEADER_LEN;
    let slice = |r: (usize, usize)| chunk.slice(body_at + r.0..body_at + r.1);
    let mut headers = Vec::new();
    if layout.header_count > 0 {
        headers.reserve(usize::from(layout.header_count));
        let body = &chunk[body_at..body_at + header.body_len as usize];
        let mut p = layout.headers_at;
        for _ in 0..layout.header_count {
            // Bounds were verified by parse_body.
            let nl = usize::from(be_u16(body, p));
            let name = (p + 2, p + 2 + nl);
            p = name.1;
            let vl = be_u32(body, p) as usize;
            let val = (p + 4, p + 4 + vl);
            p = val.1;
            headers.push((slice(name), slice(val)));
        }
    }
    Record {
        offset: header.offset,
        timestamp_ns: header.timestamp_ns,
        leader_epoch: header.leader_epoch,
        key: layout.key.map(slice),
        value: layout.value.map(slice),
        headers,
    }
}

/// Appends the framed encoding of `rec` to `buf`. The caller has validated the record with
/// [`NewRecord::encoded_len`] (which returned `total_len`).
pub(crate) fn encode_into(
    buf: &mut Vec<u8>,
    offset: u64,
    leader_epoch: u64,
    rec: &NewRecord,
    total_len: usize,
) {
    let start = buf.len();
    let body_len = (total_len - RECORD_HEADER_LEN) as u32;
    buf.reserve(total_len);
    buf.extend_from_slice(&offset.to_be_bytes());
    buf.extend_from_slice(&rec.timestamp_ns.to_be_bytes());
    buf.extend_from_slice(&leader_epoch.to_be_bytes());
    buf.extend_from_slice(&body_len.to_be_bytes());
    buf.extend_from_slice(&[0u8; 4]); // CRC, patched below
    buf.push(0); // attributes
    put_opt(buf, rec.key.as_deref());
    put_opt(buf, rec.value.as_deref());
    buf.extend_from_slice(&(rec.headers.len() as u16).to_be_bytes());
    for (name, value) in &rec.headers {
        buf.extend_from_slice(&(name.len() as u16).to_be_bytes());
        buf.extend_from_slice(name);
        buf.extend_from_slice(&(value.len() as u32).to_be_bytes());
        buf.extend_from_slice(value);
    }
    debug_assert_eq!(buf.len() - start, total_len);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&buf[start..start + CRC_COVERED_HEADER]),
        &buf[start + RECORD_HEADER_LEN..],
    );
    buf[start + CRC_COVERED_HEADER..start + RECORD_HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
}

fn put_opt(buf: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            buf.extend_from_slice(&(b.len() as i32).to_be_bytes());
            buf.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(offset: u64, epoch: u64, rec: &NewRecord) -> Vec<u8> {
        let len = rec.encoded_len().unwrap();
        let mut buf = Vec::new();
        encode_into(&mut buf, offset, epoch, rec, len);
        assert_eq!(buf.len(), len);
        buf
    }

    #[test]
    fn round_trip_all_fields() {
        let rec = NewRecord::new(-5, "value")
            .with_key("k")
            .with_header("subject", "foo")
            .with_header("", "");
        let buf = Bytes::from(encode(42, 7, &rec));
        let (h, layout) = check_record(&buf).unwrap();
        let out = build_record(&buf, 0, &h, &layout);
        assert_eq!(out.offset, 42);
        assert_eq!(out.leader_epoch, 7);
        assert_eq!(out.timestamp_ns, -5);
        assert_eq!(out.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(out.value.as_deref(), Some(&b"value"[..]));
        assert_eq!(out.headers, rec.headers);
        assert_eq!(out.encoded_len(), buf.len());
    }

    #[test]
    fn none_and_empty_are_distinct() {
        let rec = NewRecord {
            timestamp_ns: 1,
            key: Some(Bytes::new()),
            value: None,
            headers: vec![],
        };
        let buf = Bytes::from(encode(0, 0, &rec));
        let (h, layout) = check_record(&buf).unwrap();
        let out = build_record(&buf, 0, &h, &layout);
        assert_eq!(out.key, Some(Bytes::new()));
        assert_eq!(out.value, None);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let rec = NewRecord::new(99, "hello world")
            .with_key("key")
            .with_header("h", "v");
        let buf = encode(3, 1, &rec);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                match check_record(&b) {
                    Err(_) => {}
                    Ok((h, _)) => panic!("flip at {byte}:{bit} not detected: {h:?}"),
                }
            }
        }
    }

    #[test]
    fn zeros_and_short_buffers() {
        assert_eq!(
            check_record(&[0u8; 10]),
            Err(FrameError::Incomplete {
                needed: RECORD_HEADER_LEN
            })
        );
        assert!(matches!(
            check_record(&[0u8; 64]),
            Err(FrameError::Corrupt(_))
        ));
        let buf = encode(0, 0, &NewRecord::new(0, "abc"));
        for cut in 0..buf.len() {
            assert!(matches!(
                check_record(&buf[..cut]),
                Err(FrameError::Incomplete { .. })
            ));
        }
    }

    #[test]
    fn oversize_names_rejected() {
        let rec = NewRecord::new(0, "").with_header(vec![b'a'; 70_000], "");
        assert!(matches!(
            rec.encoded_len(),
            Err(LogError::InvalidRecord { .. })
        ));
    }
}
