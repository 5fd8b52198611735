//! Deliveries: the messages a subscription sends, written as `proto.Message` straight from the stored record.
//!
//! Building a `pb::Message` per record costs several allocations (the stream name, a headers map with a `String`
//! per header name, the subject strings) that prost then walks and frees again; on a subscription reading from
//! the start that was about half of the server's CPU per message (1.38 µs before, 0.70 µs after, measured with
//! `liftbridge-bench consumer`; docs/performance.md). A [`Delivery`] keeps the record as read
//! from the log and [`SubscribeCodec`] encodes it into the response buffer directly: the same fields, the same
//! values, no intermediate message. The bytes are ordinary protobuf; any client decodes them as `Message`.
//!
//! [`ApiRoutes`] serves the API with `Subscribe` answered through this codec and every other method by the
//! generated service.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BufMut;
use liftbridge_proto::pb;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{Body, Service, StdError, http};
use tonic_prost::ProstDecoder;

use super::ApiContext;
use crate::commitlog::Record;

/// One message of a subscription: the empty handshake, or a stored record of a partition.
#[derive(Debug, Clone)]
pub struct Delivery {
    stream: Arc<str>,
    partition: i32,
    record: Option<Record>,
}

impl Delivery {
    /// The empty message a subscription starts with.
    pub fn handshake() -> Delivery {
        Delivery {
            stream: Arc::from(""),
            partition: 0,
            record: None,
        }
    }

    /// `record` of `stream`/`partition`.
    pub fn new(stream: Arc<str>, partition: i32, record: Record) -> Delivery {
        Delivery {
            stream,
            partition,
            record: Some(record),
        }
    }

    /// The same message as a `pb::Message` (what the encoder writes).
    pub fn into_message(self) -> pb::Message {
        let Some(record) = self.record else {
            return pb::Message::default();
        };
        let mut headers = HashMap::with_capacity(record.headers.len());
        let (mut subject, mut reply) = (String::new(), String::new());
        for (name, value) in record.headers {
            let name = String::from_utf8_lossy(&name).into_owned();
            match name.as_str() {
                "subject" => subject = String::from_utf8_lossy(&value).into_owned(),
                "reply" => reply = String::from_utf8_lossy(&value).into_owned(),
                _ => {}
            }
            headers.insert(name, value);
        }
        pb::Message {
            offset: i64::try_from(record.offset).unwrap_or(i64::MAX),
            key: record.key.unwrap_or_default(),
            value: record.value.unwrap_or_default(),
            timestamp: record.timestamp_ns,
            stream: self.stream.to_string(),
            partition: self.partition,
            subject,
            reply_subject: reply,
            headers,
            ..Default::default()
        }
    }

    /// Writes the message's protobuf encoding (fields as prost writes them: defaults left out; the header map in
    /// stored order, a later duplicate name overriding an earlier one when decoded, as in the map).
    fn encode(&self, buf: &mut impl BufMut) {
        let Some(record) = &self.record else { return };
        let offset = i64::try_from(record.offset).unwrap_or(i64::MAX);
        if offset != 0 {
            encode_key(1, WireType::Varint, buf);
            encode_varint(offset as u64, buf);
        }
        put_bytes_field(buf, 2, record.key.as_deref().unwrap_or_default());
        put_bytes_field(buf, 3, record.value.as_deref().unwrap_or_default());
        if record.timestamp_ns != 0 {
            encode_key(4, WireType::Varint, buf);
            encode_varint(record.timestamp_ns as u64, buf);
        }
        put_bytes_field(buf, 5, self.stream.as_bytes());
        if self.partition != 0 {
            encode_key(6, WireType::Varint, buf);
            // int32: negative values are sign-extended to ten bytes, as prost does.
            encode_varint(i64::from(self.partition) as u64, buf);
        }
        let header = |name: &str| {
            record
                .headers
                .iter()
                .rev()
                .find(|(n, _)| n.as_ref() == name.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v))
        };
        if let Some(subject) = header("subject") {
            put_bytes_field(buf, 7, subject.as_bytes());
        }
        if let Some(reply) = header("reply") {
            put_bytes_field(buf, 8, reply.as_bytes());
        }
        for (name, value) in &record.headers {
            // Strings are the bytes when UTF-8 (always, for what this server stores), else the lossy text.
            let name = String::from_utf8_lossy(name);
            // A map entry: key (field 1) and value (field 2), each left out when empty.
            let entry_len = field_len(1, name.len()) + field_len(2, value.len());
            encode_key(9, WireType::LengthDelimited, buf);
            encode_varint(entry_len as u64, buf);
            put_bytes_field(buf, 1, name.as_bytes());
            put_bytes_field(buf, 2, value);
        }
    }
}

/// Encoded size of length-delimited field `field` of `len` bytes, or 0 when it is left out (empty).
fn field_len(field: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        key_len(field) + encoded_len_varint(len as u64) + len
    }
}

/// A length-delimited field (bytes or string), left out when empty.
fn put_bytes_field(buf: &mut impl BufMut, field: u32, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

/// The codec of `Subscribe`: prost decodes the request, [`Delivery`] encodes the messages.
#[derive(Debug, Default, Clone, Copy)]
pub struct SubscribeCodec;

impl Encoder for SubscribeCodec {
    type Item = Delivery;
    type Error = Status;

    fn encode(&mut self, item: Delivery, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst);
        Ok(())
    }
}

impl Codec for SubscribeCodec {
    type Encode = Delivery;
    type Decode = pb::SubscribeRequest;
    type Encoder = SubscribeCodec;
    type Decoder = ProstDecoder<pb::SubscribeRequest>;

    fn encoder(&mut self) -> SubscribeCodec {
        SubscribeCodec
    }

    fn decoder(&mut self) -> ProstDecoder<pb::SubscribeRequest> {
        ProstDecoder::default()
    }
}

/// The gRPC path of `Subscribe`.
const SUBSCRIBE_PATH: &str = "/proto.API/Subscribe";

/// The API as served: `Subscribe` through [`SubscribeCodec`], every other method by `api` (the generated
/// service).
#[derive(Clone)]
pub struct ApiRoutes<S> {
    api: S,
    ctx: Arc<ApiContext>,
    max_decoding_message_size: usize,
}

impl<S> ApiRoutes<S> {
    /// Serves `api`, answering `Subscribe` itself from `ctx`; requests are limited to `max_decoding_message_size`.
    pub fn new(api: S, ctx: Arc<ApiContext>, max_decoding_message_size: usize) -> Self {
        ApiRoutes {
            api,
            ctx,
            max_decoding_message_size,
        }
    }
}

/// `Subscribe` as a tonic server-streaming service.
struct SubscribeService(Arc<ApiContext>);

impl tonic::server::ServerStreamingService<pb::SubscribeRequest> for SubscribeService {
    type Response = Delivery;
    type ResponseStream = super::ResponseStream<Delivery>;
    type Future = futures::future::BoxFuture<
        'static,
        Result<tonic::Response<super::ResponseStream<Delivery>>, Status>,
    >;

    fn call(&mut self, request: tonic::Request<pb::SubscribeRequest>) -> Self::Future {
        let ctx = self.0.clone();
        Box::pin(async move {
            super::subscribe::subscribe(&ctx, request.into_inner())
                .await
                .map(tonic::Response::new)
        })
    }
}

impl<S> tonic::server::NamedService for ApiRoutes<S>
where
    S: tonic::server::NamedService,
{
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for ApiRoutes<S>
where
    S: Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.api.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SUBSCRIBE_PATH {
            return Box::pin(self.api.call(request));
        }
        let service = SubscribeService(self.ctx.clone());
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(SubscribeCodec)
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.server_streaming(service, request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message as _;

    use super::*;

    fn record(offset: u64, headers: Vec<(&'static [u8], &'static [u8])>) -> Record {
        Record {
            offset,
            timestamp_ns: 1_700_000_000_123_456_789,
            leader_epoch: 3,
            key: Some(Bytes::from_static(b"key")),
            value: Some(Bytes::from_static(b"value")),
            headers: headers
                .into_iter()
                .map(|(n, v)| (Bytes::from_static(n), Bytes::from_static(v)))
                .collect(),
        }
    }

    fn decoded(delivery: &Delivery) -> pb::Message {
        let mut buf = Vec::new();
        delivery.encode(&mut buf);
        pb::Message::decode(buf.as_slice()).expect("valid protobuf")
    }

    #[test]
    fn encodes_what_the_message_holds() {
        let cases = vec![
            Delivery::handshake(),
            Delivery::new(Arc::from("s"), 0, record(0, vec![])),
            Delivery::new(
                Arc::from("orders"),
                7,
                record(
                    12_345_678_901,
                    vec![
                        (b"subject", b"orders.eu"),
                        (b"reply", b""),
                        (b"trace", b"abc"),
                        (b"", b"empty name"),
                        (b"empty value", b""),
                    ],
                ),
            ),
            Delivery::new(
                Arc::from("big"),
                -1,
                Record {
                    key: None,
                    value: Some(Bytes::from(vec![7u8; 300])),
                    timestamp_ns: -5,
                    ..record(u64::MAX, vec![(b"subject", b"x"), (b"subject", b"y")])
                },
            ),
            Delivery::new(
                Arc::from("bad utf8"),
                1,
                record(1, vec![(b"subject", b"\xff\xfe"), (b"\xc3", b"v")]),
            ),
        ];
        for delivery in cases {
            assert_eq!(decoded(&delivery), delivery.clone().into_message());
        }
    }

    #[test]
    fn prost_and_this_encoder_agree_byte_for_byte_without_headers() {
        let delivery = Delivery::new(Arc::from("s"), 2, record(99, vec![]));
        let mut ours = Vec::new();
        delivery.encode(&mut ours);
        assert_eq!(ours, delivery.into_message().encode_to_vec());
    }
}
