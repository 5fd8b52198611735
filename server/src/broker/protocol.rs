//! The NATS client protocol on the wire: a parser for what clients send and encoders for what the server sends.
//!
//! Client → server:
//! - `CONNECT {json}`
//! - `PUB <subject> [reply] <size>`, then the payload
//! - `HPUB <subject> [reply] <header size> <total size>`, then the headers and the payload
//! - `SUB <subject> [queue] <sid>` and `UNSUB <sid> [max]`
//! - `PING`, `PONG` (and `INFO`, `+OK`, `-ERR`, which servers accept).
//!
//! Operation names are case-insensitive, arguments are separated by spaces or tabs, a control line ends with
//! `\n` (usually `\r\n`) and a payload is followed by exactly `\r\n`.
//!
//! [`parse`] looks at the front of a buffer and returns one complete operation (as [`Span`]s into the buffer, so
//! nothing is copied), says how many bytes it needs, or returns a [`ProtocolError`]. It is stateless: a command
//! split across reads is simply parsed again once more bytes arrived, so splits at any byte are handled by
//! construction. It never panics, whatever the input.

use serde::{Deserialize, Serialize};

/// A range of bytes in the buffer given to [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The bytes of this span in `buf` (empty if out of range, which [`parse`] never produces).
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Number of bytes.
    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the span is empty.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// One operation sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// `CONNECT {json}`: the JSON options.
    Connect {
        /// The JSON object.
        json: Span,
    },
    /// `PUB` or `HPUB`.
    Pub {
        /// The subject published to.
        subject: Span,
        /// The reply subject, if any.
        reply: Option<Span>,
        /// The header block (`NATS/1.0\r\n...\r\n\r\n`), for an `HPUB` with headers.
        headers: Option<Span>,
        /// The payload (after the headers).
        payload: Span,
    },
    /// `SUB`.
    Sub {
        /// The subject (wildcards allowed).
        subject: Span,
        /// The queue group, if any.
        queue: Option<Span>,
        /// The client's subscription id.
        sid: Span,
    },
    /// `UNSUB`.
    Unsub {
        /// The client's subscription id.
        sid: Span,
        /// Unsubscribe after this many messages in total, instead of now.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `INFO` (servers ignore it from clients).
    Info,
    /// `+OK`.
    Ok,
    /// `-ERR <message>`.
    Err {
        /// The error text.
        message: Span,
    },
    /// An empty line (tolerated and ignored).
    Empty,
}

/// The result of [`parse`] when the input is well-formed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete operation occupying the first `len` bytes.
    Op {
        /// The operation.
        op: ClientOp,
        /// Bytes consumed, including the payload and its `\r\n`.
        len: usize,
    },
    /// Not enough bytes yet; the operation needs at least `needed` bytes in total.
    Incomplete {
        /// Total bytes needed from the start of the buffer.
        needed: usize,
    },
}

/// A protocol violation. Each one closes the connection after the matching `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A control line longer than the limit.
    #[error("control line longer than {limit} bytes")]
    ControlLineTooLong {
        /// The limit.
        limit: usize,
    },
    /// An unknown operation, malformed arguments, or a payload not followed by `\r\n`.
    #[error("unknown protocol operation or malformed arguments")]
    UnknownOperation,
    /// A payload over `max_payload`.
    #[error("payload of {size} bytes exceeds max_payload of {max} bytes")]
    PayloadTooLarge {
        /// Announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The text of the `-ERR` nats-server sends for this violation.
    pub fn client_message(&self) -> &'static str {
        match self {
            ProtocolError::ControlLineTooLong { .. } => MAX_CONTROL_LINE_EXCEEDED,
            ProtocolError::UnknownOperation => UNKNOWN_PROTOCOL_OPERATION,
            ProtocolError::PayloadTooLarge { .. } => MAX_PAYLOAD_VIOLATION,
        }
    }
}

/// `-ERR` text: unknown operation or malformed command.
pub const UNKNOWN_PROTOCOL_OPERATION: &str = "Unknown Protocol Operation";
/// `-ERR` text: control line over the limit.
pub const MAX_CONTROL_LINE_EXCEEDED: &str = "Maximum Control Line Exceeded";
/// `-ERR` text: payload over `max_payload`.
pub const MAX_PAYLOAD_VIOLATION: &str = "Maximum Payload Violation";
/// `-ERR` text: bad credentials, or an operation before `CONNECT` when auth is required.
pub const AUTHORIZATION_VIOLATION: &str = "Authorization Violation";
/// `-ERR` text: no `CONNECT` within the auth timeout.
pub const AUTHENTICATION_TIMEOUT: &str = "Authentication Timeout";
/// `-ERR` text: invalid subscription subject.
pub const INVALID_SUBJECT: &str = "Invalid Subject";
/// `-ERR` text (pedantic): invalid publish subject.
pub const INVALID_PUBLISH_SUBJECT: &str = "Invalid Publish Subject";
/// `-ERR` text: the client did not answer pings.
pub const STALE_CONNECTION: &str = "Stale Connection";
/// `-ERR` text: the client did not read fast enough.
pub const SLOW_CONSUMER: &str = "Slow Consumer";
/// `-ERR` text: too many connections.
pub const MAX_CONNECTIONS_EXCEEDED: &str = "maximum connections exceeded";

/// Limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest control line accepted (without its line ending).
    pub max_control_line: usize,
    /// Largest payload (headers included) accepted.
    pub max_payload: usize,
}

const OPS: [&[u8]; 10] = [
    b"PUB", b"HPUB", b"SUB", b"UNSUB", b"PING", b"PONG", b"CONNECT", b"INFO", b"+OK", b"-ERR",
];

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether `buf` (a control line without its end) can still become a known operation, so that garbage is
/// refused as soon as its first word shows it, not only after a full line.
fn could_be_op(buf: &[u8]) -> bool {
    let word_end = buf.iter().position(|&b| is_space(b) || b == b'\r');
    let word = buf.get(..word_end.unwrap_or(buf.len())).unwrap_or_default();
    if word.is_empty() {
        return true;
    }
    OPS.iter().any(|op| match word_end {
        Some(_) => op.eq_ignore_ascii_case(word),
        None => {
            word.len() <= op.len()
                && op
                    .get(..word.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(word))
        }
    })
}

/// Splits `line[from..]` into at most `N` arguments; `None` if there are more.
fn split_args<const N: usize>(line: &[u8], from: usize) -> Option<([Span; N], usize)> {
    let mut out = [Span { start: 0, end: 0 }; N];
    let mut count = 0;
    let mut i = from;
    while i < line.len() {
        if line.get(i).copied().is_some_and(is_space) {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && !line.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        let slot = out.get_mut(count)?;
        *slot = Span { start, end: i };
        count += 1;
    }
    Some((out, count))
}

/// Parses a decimal size: digits only, at most 18 of them.
pub fn parse_size(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// Parses one operation from the front of `buf`. See the module docs.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let search = buf
        .get(..buf.len().min(limits.max_control_line.saturating_add(2)))
        .unwrap_or(buf);
    let Some(newline) = memchr::memchr(b'\n', search) else {
        if buf.len() >= limits.max_control_line.saturating_add(2) {
            return Err(ProtocolError::ControlLineTooLong {
                limit: limits.max_control_line,
            });
        }
        if !could_be_op(buf) {
            return Err(ProtocolError::UnknownOperation);
        }
        return Ok(Parsed::Incomplete {
            needed: buf.len() + 1,
        });
    };
    let line_end = if newline > 0 && buf.get(newline - 1) == Some(&b'\r') {
        newline - 1
    } else {
        newline
    };
    if line_end > limits.max_control_line {
        return Err(ProtocolError::ControlLineTooLong {
            limit: limits.max_control_line,
        });
    }
    let line = buf.get(..line_end).unwrap_or_default();
    let after = newline + 1;
    let name_end = line.iter().position(|&b| is_space(b)).unwrap_or(line.len());
    let name = line.get(..name_end).unwrap_or_default();
    let op = |op| Ok(Parsed::Op { op, len: after });
    let rest_span = || {
        let start = line
            .iter()
            .skip(name_end)
            .position(|&b| !is_space(b))
            .map_or(line.len(), |p| name_end + p);
        let mut end = line.len();
        while end > start && line.get(end - 1).copied().is_some_and(is_space) {
            end -= 1;
        }
        Span { start, end }
    };
    let size_of = |span: Span| parse_size(span.get(line)).ok_or(ProtocolError::UnknownOperation);
    let bad = Err(ProtocolError::UnknownOperation);

    if name.is_empty() {
        return if line.iter().all(|&b| is_space(b)) {
            op(ClientOp::Empty)
        } else {
            bad
        };
    }
    if name.eq_ignore_ascii_case(b"PUB") || name.eq_ignore_ascii_case(b"HPUB") {
        let with_headers = name.len() == 4;
        let (args, n) = split_args::<4>(line, name_end).ok_or(ProtocolError::UnknownOperation)?;
        let (subject, reply, header_size, total) = match (with_headers, n, args) {
            (false, 2, [s, size, ..]) => (s, None, 0, size_of(size)?),
            (false, 3, [s, r, size, _]) => (s, Some(r), 0, size_of(size)?),
            (true, 3, [s, h, t, _]) => (s, None, size_of(h)?, size_of(t)?),
            (true, 4, [s, r, h, t]) => (s, Some(r), size_of(h)?, size_of(t)?),
            _ => return bad,
        };
        if header_size > total {
            return bad;
        }
        if total > limits.max_payload as u64 {
            return Err(ProtocolError::PayloadTooLarge {
                size: usize::try_from(total).unwrap_or(usize::MAX),
                max: limits.max_payload,
            });
        }
        // Both fit in usize: total <= max_payload.
        let (header_size, total) = (header_size as usize, total as usize);
        let body_end = after
            .checked_add(total)
            .ok_or(ProtocolError::UnknownOperation)?;
        let needed = body_end
            .checked_add(2)
            .ok_or(ProtocolError::UnknownOperation)?;
        if buf.len() < needed {
            return Ok(Parsed::Incomplete { needed });
        }
        if buf.get(body_end..needed) != Some(b"\r\n") {
            return bad;
        }
        // Like nats-server, the header block is passed on as it is (subscribers parse it).
        let headers = (header_size > 0).then_some(Span {
            start: after,
            end: after + header_size,
        });
        return Ok(Parsed::Op {
            op: ClientOp::Pub {
                subject,
                reply,
                headers,
                payload: Span {
                    start: after + header_size,
                    end: body_end,
                },
            },
            len: needed,
        });
    }
    if name.eq_ignore_ascii_case(b"SUB") {
        let (args, n) = split_args::<3>(line, name_end).ok_or(ProtocolError::UnknownOperation)?;
        return match (n, args) {
            (2, [subject, sid, _]) => op(ClientOp::Sub {
                subject,
                queue: None,
                sid,
            }),
            (3, [subject, queue, sid]) => op(ClientOp::Sub {
                subject,
                queue: Some(queue),
                sid,
            }),
            _ => bad,
        };
    }
    if name.eq_ignore_ascii_case(b"UNSUB") {
        let (args, n) = split_args::<2>(line, name_end).ok_or(ProtocolError::UnknownOperation)?;
        return match (n, args) {
            (1, [sid, _]) => op(ClientOp::Unsub { sid, max: None }),
            (2, [sid, max]) => op(ClientOp::Unsub {
                sid,
                max: Some(size_of(max)?),
            }),
            _ => bad,
        };
    }
    if name.eq_ignore_ascii_case(b"PING") {
        // Like nats-server, trailing arguments are ignored.
        return op(ClientOp::Ping);
    }
    if name.eq_ignore_ascii_case(b"PONG") {
        return op(ClientOp::Pong);
    }
    if name.eq_ignore_ascii_case(b"CONNECT") {
        let json = rest_span();
        return if json.is_empty() {
            bad
        } else {
            op(ClientOp::Connect { json })
        };
    }
    if name.eq_ignore_ascii_case(b"INFO") {
        return op(ClientOp::Info);
    }
    if name.eq_ignore_ascii_case(b"+OK") {
        return op(ClientOp::Ok);
    }
    if name.eq_ignore_ascii_case(b"-ERR") {
        return op(ClientOp::Err {
            message: rest_span(),
        });
    }
    bad
}

/// The options of a client's `CONNECT`. Unknown fields are ignored; missing ones take nats-server's defaults
/// (see the `Default` impl).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConnectOptions {
    /// Acknowledge every operation with `+OK`.
    pub verbose: bool,
    /// Check subjects strictly.
    pub pedantic: bool,
    /// The client insists on TLS (which the embedded broker does not offer).
    pub tls_required: bool,
    /// Token auth.
    pub auth_token: Option<String>,
    /// User for user/password auth.
    pub user: Option<String>,
    /// Password for user/password auth.
    pub pass: Option<String>,
    /// The client's name, for logs.
    pub name: Option<String>,
    /// The client's language.
    pub lang: Option<String>,
    /// The client library's version.
    pub version: Option<String>,
    /// Protocol version (0 or 1).
    pub protocol: Option<i64>,
    /// Deliver the client's own publishes to its own subscriptions (default true).
    pub echo: bool,
    /// The client understands `HMSG`.
    pub headers: bool,
    /// The client wants a `503` status message when a request finds no subscriber.
    pub no_responders: bool,
}

/// nats-server's defaults for fields a `CONNECT` leaves out (and before any `CONNECT`): `verbose` and
/// `pedantic` on, `echo` on. Real clients send all of them explicitly.
impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            tls_required: false,
            auth_token: None,
            user: None,
            pass: None,
            name: None,
            lang: None,
            version: None,
            protocol: None,
            echo: true,
            headers: false,
            no_responders: false,
        }
    }
}

/// The server's `INFO`, sent when a client connects.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// Unique id of this broker instance.
    pub server_id: String,
    /// Name of this broker.
    pub server_name: String,
    /// The nats-server version whose client protocol we implement (clients gate features on it).
    pub version: String,
    /// Always empty: not a Go server.
    pub go: String,
    /// The host we listen on.
    pub host: String,
    /// The port we listen on.
    pub port: u16,
    /// We understand `HPUB` and send `HMSG`.
    pub headers: bool,
    /// Largest payload accepted.
    pub max_payload: usize,
    /// Protocol version 1 (echo, async INFO).
    pub proto: i32,
    /// Credentials are required.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// The connection's id.
    pub client_id: u64,
    /// The client's address as seen by us.
    pub client_ip: String,
}

impl ServerInfo {
    /// The `INFO {...}\r\n` line.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = b"INFO ".to_vec();
        // Serializing a struct of strings and numbers cannot fail.
        if serde_json::to_writer(&mut line, self).is_err() {
            line.extend_from_slice(b"{}");
        }
        line.extend_from_slice(b"\r\n");
        line
    }
}

/// `-ERR '<message>'\r\n`.
pub fn err_line(message: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len() + 9);
    line.extend_from_slice(b"-ERR '");
    line.extend_from_slice(message.as_bytes());
    line.extend_from_slice(b"'\r\n");
    line
}

/// Appends a decimal number.
pub fn put_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Bytes [`put_msg`] will append for these parts.
pub fn msg_len(
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) -> usize {
    // "HMSG " + 3 spaces + 2 numbers (<= 20 digits each) + 2 CRLF, generously.
    subject.len()
        + sid.len()
        + reply.map_or(0, |r| r.len() + 1)
        + headers.len()
        + payload.len()
        + 56
}

/// Appends `MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n`, or `HMSG ... <header size> <total size>` with
/// the header block first when `headers` is non-empty.
pub fn put_msg(
    out: &mut Vec<u8>,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    out.extend_from_slice(if headers.is_empty() {
        b"MSG "
    } else {
        b"HMSG "
    });
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.push(b' ');
    if let Some(reply) = reply {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
    if !headers.is_empty() {
        put_decimal(out, headers.len());
        out.push(b' ');
    }
    put_decimal(out, headers.len() + payload.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The header block of a `503` no-responders status message.
pub const NO_RESPONDERS_HEADERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// Encodes `(name, value)` pairs as a `NATS/1.0` header block; `None` if a name or value contains a line break
/// (or a name contains `:` or whitespace), which would corrupt the block.
pub fn encode_headers(headers: &[(String, String)]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(
        16 + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.extend_from_slice(b"NATS/1.0\r\n");
    for (name, value) in headers {
        let bad_name = name.is_empty() || name.bytes().any(|b| b == b':' || b <= b' ' || b == 0x7f);
        let bad_value = value.bytes().any(|b| b == b'\r' || b == b'\n');
        if bad_name || bad_value {
            return None;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// Decodes a `NATS/1.0` header block into `(name, value)` pairs (the status line is skipped; malformed lines are
/// ignored). Names and values are trimmed; invalid UTF-8 is replaced.
pub fn decode_headers(block: &[u8]) -> Vec<(String, String)> {
    let mut lines = block
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let _status = lines.next();
    lines
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(line.get(..colon)?)
                .trim()
                .to_string();
            let value = String::from_utf8_lossy(line.get(colon + 1..)?)
                .trim()
                .to_string();
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LIMITS: Limits = Limits {
        max_control_line: 4096,
        max_payload: 1024,
    };

    fn one(input: &[u8]) -> Result<Parsed, ProtocolError> {
        parse(input, &LIMITS)
    }

    fn op(input: &[u8]) -> (ClientOp, usize) {
        match one(input) {
            Ok(Parsed::Op { op, len }) => (op, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn pub_with_and_without_reply() {
        let input = b"PUB foo.bar 5\r\nhello\r\nPING\r\n";
        let (parsed, len) = op(input);
        assert_eq!(len, 22);
        let ClientOp::Pub {
            subject,
            reply,
            headers,
            payload,
        } = parsed
        else {
            panic!("{parsed:?}")
        };
        assert_eq!(subject.get(input), b"foo.bar");
        assert_eq!(reply, None);
        assert_eq!(headers, None);
        assert_eq!(payload.get(input), b"hello");

        let input = b"pub\tfoo  INBOX.1\t 0\r\n\r\n";
        let (parsed, len) = op(input);
        assert_eq!(len, input.len());
        let ClientOp::Pub { reply, payload, .. } = parsed else {
            panic!()
        };
        assert_eq!(reply.map(|r| r.get(input)), Some(&b"INBOX.1"[..]));
        assert!(payload.is_empty());
    }

    #[test]
    fn hpub() {
        let input = b"HPUB foo r 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n";
        let (parsed, len) = op(input);
        assert_eq!(len, input.len());
        let ClientOp::Pub {
            headers, payload, ..
        } = parsed
        else {
            panic!()
        };
        assert_eq!(
            headers.map(|h| h.get(input)),
            Some(&b"NATS/1.0\r\nA: b\r\n\r\n"[..])
        );
        assert_eq!(payload.get(input), b"hello");
        // Header size larger than total.
        assert_eq!(
            one(b"HPUB foo 30 27\r\n"),
            Err(ProtocolError::UnknownOperation)
        );
        // The header block itself is not checked (as in nats-server).
        assert!(matches!(
            one(b"HPUB foo 2 2\r\nxx\r\n"),
            Ok(Parsed::Op { .. })
        ));
    }

    #[test]
    fn sub_unsub_and_simple_ops() {
        let input = b"SUB foo.* q 7\r\n";
        let (parsed, _) = op(input);
        let ClientOp::Sub {
            subject,
            queue,
            sid,
        } = parsed
        else {
            panic!()
        };
        assert_eq!(
            (
                subject.get(input),
                queue.map(|q| q.get(input)),
                sid.get(input)
            ),
            (&b"foo.*"[..], Some(&b"q"[..]), &b"7"[..])
        );
        assert_eq!(
            op(b"UNSUB 7 10\r\n").0,
            ClientOp::Unsub {
                sid: Span { start: 6, end: 7 },
                max: Some(10)
            }
        );
        assert_eq!(op(b"ping\r\n"), (ClientOp::Ping, 6));
        assert_eq!(op(b"PONG\n"), (ClientOp::Pong, 5));
        assert_eq!(op(b"\r\n"), (ClientOp::Empty, 2));
        assert_eq!(op(b"+OK\r\n").0, ClientOp::Ok);
        let input = b"CONNECT {\"verbose\":true}\r\n";
        let ClientOp::Connect { json } = op(input).0 else {
            panic!()
        };
        assert_eq!(json.get(input), b"{\"verbose\":true}");
    }

    #[test]
    fn incomplete_inputs_ask_for_more() {
        assert_eq!(one(b""), Ok(Parsed::Incomplete { needed: 1 }));
        assert_eq!(one(b"PU"), Ok(Parsed::Incomplete { needed: 3 }));
        assert_eq!(
            one(b"PUB foo 5\r\nhel"),
            Ok(Parsed::Incomplete { needed: 18 })
        );
        assert_eq!(
            one(b"PUB foo 5\r\nhello"),
            Ok(Parsed::Incomplete { needed: 18 })
        );
        assert_eq!(
            one(b"PUB foo 5\r\nhello\r"),
            Ok(Parsed::Incomplete { needed: 18 })
        );
    }

    #[test]
    fn violations() {
        assert_eq!(one(b"FOO bar\r\n"), Err(ProtocolError::UnknownOperation));
        assert_eq!(one(b"GARBAGE"), Err(ProtocolError::UnknownOperation));
        assert_eq!(one(b"PUBX"), Err(ProtocolError::UnknownOperation));
        assert_eq!(one(b"PUB foo\r\n"), Err(ProtocolError::UnknownOperation));
        assert_eq!(one(b"PUB foo -1\r\n"), Err(ProtocolError::UnknownOperation));
        assert_eq!(one(b"PUB foo 1x\r\n"), Err(ProtocolError::UnknownOperation));
        assert_eq!(
            one(b"PUB a b c d\r\n"),
            Err(ProtocolError::UnknownOperation)
        );
        assert_eq!(
            one(b"PUB foo 3\r\nhello\r\n"),
            Err(ProtocolError::UnknownOperation)
        );
        assert_eq!(one(b"SUB foo\r\n"), Err(ProtocolError::UnknownOperation));
        assert_eq!(one(b"UNSUB\r\n"), Err(ProtocolError::UnknownOperation));
        assert_eq!(one(b"UNSUB 1 x\r\n"), Err(ProtocolError::UnknownOperation));
        assert_eq!(op(b"PING x\r\n").0, ClientOp::Ping);
        assert_eq!(one(b"CONNECT\r\n"), Err(ProtocolError::UnknownOperation));
        assert_eq!(
            one(b"PUB foo 1025\r\n"),
            Err(ProtocolError::PayloadTooLarge {
                size: 1025,
                max: 1024
            })
        );
        assert_eq!(
            one(b"PUB foo 99999999999999999\r\n"),
            Err(ProtocolError::PayloadTooLarge {
                size: 99999999999999999,
                max: 1024
            })
        );
        let long = [b'P', b'U', b'B', b' ']
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'a', 5000))
            .collect::<Vec<_>>();
        assert_eq!(
            one(&long),
            Err(ProtocolError::ControlLineTooLong { limit: 4096 })
        );
        let mut long_line = long.clone();
        long_line.extend_from_slice(b" 1\r\n");
        assert_eq!(
            one(&long_line),
            Err(ProtocolError::ControlLineTooLong { limit: 4096 })
        );
    }

    #[test]
    fn control_line_limit_is_exact() {
        let limits = Limits {
            max_control_line: 10,
            max_payload: 10,
        };
        assert!(matches!(
            parse(b"SUB abc 12\r\n", &limits),
            Ok(Parsed::Op { .. })
        ));
        assert!(matches!(
            parse(b"SUB abc 12\n", &limits),
            Ok(Parsed::Op { .. })
        ));
        assert!(parse(b"SUB abcd 12\r\n", &limits).is_err());
        assert!(parse(b"SUB abcd 12\n", &limits).is_err());
        assert!(matches!(
            parse(b"SUB abc 12\r", &limits),
            Ok(Parsed::Incomplete { .. })
        ));
        assert!(parse(b"SUB abcd 12\r", &limits).is_err());
    }

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        put_msg(&mut out, b"a.b", b"7", None, b"", b"hello");
        assert_eq!(out, b"MSG a.b 7 5\r\nhello\r\n");
        out.clear();
        put_msg(&mut out, b"a", b"1", Some(b"r"), NO_RESPONDERS_HEADERS, b"");
        assert_eq!(out, b"HMSG a 1 r 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
        assert!(msg_len(b"a", b"1", Some(b"r"), NO_RESPONDERS_HEADERS, b"") >= out.len());
        out.clear();
        for n in [0usize, 7, 10, 12345, usize::MAX] {
            out.clear();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let headers = vec![
            ("A".to_string(), "1".to_string()),
            ("B".into(), "x y".into()),
        ];
        let block = encode_headers(&headers).unwrap();
        assert_eq!(block, b"NATS/1.0\r\nA: 1\r\nB: x y\r\n\r\n");
        assert_eq!(decode_headers(&block), headers);
        assert_eq!(encode_headers(&[("A".into(), "1\r\n".into())]), None);
        assert_eq!(encode_headers(&[("A:".into(), "1".into())]), None);
        assert_eq!(err_line("Stale Connection"), b"-ERR 'Stale Connection'\r\n");
    }

    #[test]
    fn connect_options() {
        let opts: ConnectOptions =
            serde_json::from_str("{\"verbose\":true,\"unknown\":[1]}").unwrap();
        assert!(opts.verbose && opts.echo && !opts.headers);
        let opts: ConnectOptions =
            serde_json::from_str("{\"echo\":false,\"headers\":true,\"no_responders\":true}")
                .unwrap();
        assert!(!opts.echo && opts.headers && opts.no_responders);
    }

    /// Feeds `input` to the parser the way a connection does (in the given chunks), collecting the operations
    /// as owned bytes, until the input ends or an error.
    fn drive(
        input: &[u8],
        cuts: &[usize],
        limits: &Limits,
    ) -> (Vec<(ClientOp, Vec<u8>)>, Option<ProtocolError>) {
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        for cut in cuts {
            if cut > fed {
                buf.extend_from_slice(&input[fed..cut]);
                fed = cut;
            }
            loop {
                match parse(&buf, limits) {
                    Ok(Parsed::Op { op, len }) => {
                        assert!(len > 0 && len <= buf.len());
                        out.push((op, buf[..len].to_vec()));
                        buf.drain(..len);
                    }
                    Ok(Parsed::Incomplete { needed }) => {
                        assert!(needed > buf.len());
                        break;
                    }
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn command() -> impl Strategy<Value = Vec<u8>> {
        let token = "[a-z0-9_]{1,6}";
        prop_oneof![
            (
                token,
                prop::option::of(token),
                prop::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(s, r, p)| {
                    let mut c = format!(
                        "PUB {s}{} {}\r\n",
                        r.map(|r| format!(" {r}")).unwrap_or_default(),
                        p.len()
                    )
                    .into_bytes();
                    c.extend_from_slice(&p);
                    c.extend_from_slice(b"\r\n");
                    c
                }),
            (token, prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(s, p)| {
                let h = b"NATS/1.0\r\nK: v\r\n\r\n";
                let mut c = format!("HPUB {s} {} {}\r\n", h.len(), h.len() + p.len()).into_bytes();
                c.extend_from_slice(h);
                c.extend_from_slice(&p);
                c.extend_from_slice(b"\r\n");
                c
            }),
            (token, prop::option::of(token), 1u32..1000).prop_map(|(s, q, sid)| format!(
                "SUB {s}{} {sid}\r\n",
                q.map(|q| format!(" {q}")).unwrap_or_default()
            )
            .into_bytes()),
            (1u32..1000, prop::option::of(0u32..5)).prop_map(|(sid, max)| format!(
                "UNSUB {sid}{}\r\n",
                max.map(|m| format!(" {m}")).unwrap_or_default()
            )
            .into_bytes()),
            Just(b"PING\r\n".to_vec()),
            Just(b"PONG\r\n".to_vec()),
            Just(b"CONNECT {\"verbose\":false}\r\n".to_vec()),
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
            let limits = Limits { max_control_line: 64, max_payload: 128 };
            let _ = drive(&input, &cuts, &limits);
        }

        #[test]
        fn protocol_like_noise_never_panics(
            parts in prop::collection::vec(prop::sample::select(vec![
                &b"PUB "[..], b"HPUB ", b"SUB ", b"UNSUB ", b"PING", b"\r\n", b"\n", b" ", b"\t", b"a", b"1", b"99",
                b"NATS/1.0", b"-1", b"*", b">", b"CONNECT {}", b"+OK", b"-ERR x", b"\r",
            ]), 0..60),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let input = parts.concat();
            let limits = Limits { max_control_line: 32, max_payload: 64 };
            let _ = drive(&input, &cuts, &limits);
        }

        #[test]
        fn splits_do_not_change_the_result(commands in prop::collection::vec(command(), 1..20), cuts in prop::collection::vec(any::<usize>(), 0..16)) {
            let input = commands.concat();
            let whole = drive(&input, &[], &LIMITS);
            prop_assert_eq!(whole.1, None);
            prop_assert_eq!(whole.0.len(), commands.len());
            for ((_, bytes), command) in whole.0.iter().zip(&commands) {
                prop_assert_eq!(bytes, command);
            }
            let split = drive(&input, &cuts, &LIMITS);
            prop_assert_eq!(split, whole);
        }
    }
}
