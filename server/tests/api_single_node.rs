//! The gRPC API on one server: every RPC, its error codes and the NATS bridge. Every test runs twice: once on a
//! real `nats-server` (module `nats_server`) and once standalone on the embedded broker (module `embedded`).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_proto::pb::api_client::ApiClient;
use liftbridge_proto::{envelope, pb};
use support::{NatsServer, TestServer, create_request, nats_round_trip};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    _nats: Option<NatsServer>,
    _dir: tempfile::TempDir,
    server: TestServer,
    client: ApiClient<Channel>,
    nats_url: String,
}

/// Which NATS the server runs on.
#[derive(Clone, Copy)]
enum Mode {
    /// A real nats-server child process.
    NatsServer,
    /// The server's own embedded broker (standalone).
    Embedded,
}

async fn fixture(mode: Mode) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (nats, server) = match mode {
        Mode::NatsServer => {
            let nats = NatsServer::start();
            let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
            (Some(nats), server)
        }
        Mode::Embedded => (None, TestServer::start_standalone(dir.path(), |_| {}).await),
    };
    let client = server.client().await;
    let nats_url = match &nats {
        Some(n) => n.url.clone(),
        None => server
            .nats_url
            .clone()
            .expect("standalone servers report their broker URL"),
    };
    Fixture {
        _nats: nats,
        _dir: dir,
        server,
        client,
        nats_url,
    }
}

fn publish_request(stream: &str, value: &'static [u8]) -> pb::PublishRequest {
    pb::PublishRequest {
        stream: stream.into(),
        value: Bytes::from_static(value),
        expected_offset: -1,
        ..Default::default()
    }
}

async fn subscribe(
    client: &mut ApiClient<Channel>,
    req: pb::SubscribeRequest,
) -> Result<Streaming<pb::Message>, tonic::Status> {
    let mut stream = client.subscribe(req).await?.into_inner();
    let handshake = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("handshake in time");
    let handshake = handshake.expect("stream open").expect("handshake ok");
    assert_eq!(
        handshake,
        pb::Message::default(),
        "the first message is an empty handshake"
    );
    Ok(stream)
}

/// Reads `n` messages, failing on timeout or error.
async fn take(stream: &mut Streaming<pb::Message>, n: usize) -> Vec<pb::Message> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(m))) => out.push(m),
            other => panic!("after {} of {n} messages: {other:?}", out.len()),
        }
    }
    out
}

/// The status the stream ends with.
async fn end_status(stream: &mut Streaming<pb::Message>) -> tonic::Status {
    match tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream ends in time")
    {
        Some(Ok(m)) => panic!("expected the end, got message at offset {}", m.offset),
        Some(Err(status)) => status,
        None => panic!("stream ended without a status"),
    }
}

fn from(position: pb::StartPosition) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        start_position: position as i32,
        ..Default::default()
    }
}

async fn create_publish_subscribe_round_trip(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("orders", "orders-stream", 1))
        .await
        .unwrap();

    let mut req = publish_request("orders-stream", b"hello");
    req.key = Bytes::from_static(b"k1");
    req.headers = HashMap::from([("h".to_string(), Bytes::from_static(b"v"))]);
    req.correlation_id = "c-1".into();
    let resp = f.client.publish(req).await.unwrap().into_inner();
    let ack = resp
        .ack
        .expect("publish without a deadline still waits for its ack");
    assert_eq!(ack.offset, 0);
    assert_eq!(ack.stream, "orders-stream");
    assert_eq!(ack.correlation_id, "c-1");
    assert_eq!(ack.partition_subject, "orders");
    assert!(ack.commit_timestamp >= ack.reception_timestamp && ack.reception_timestamp > 0);

    let mut req = from(pb::StartPosition::Earliest);
    req.stream = "orders-stream".into();
    let mut sub = subscribe(&mut f.client, req).await.unwrap();
    let got = take(&mut sub, 1).await.remove(0);
    assert_eq!(got.offset, 0);
    assert_eq!(got.key, Bytes::from_static(b"k1"));
    assert_eq!(got.value, Bytes::from_static(b"hello"));
    assert_eq!(got.stream, "orders-stream");
    assert_eq!(got.subject, "orders");
    assert_eq!(got.headers.get("h"), Some(&Bytes::from_static(b"v")));
    assert_eq!(
        got.headers.get("subject"),
        Some(&Bytes::from_static(b"orders"))
    );
    assert!(got.timestamp > 0);

    // A live subscriber sees new messages as they are committed.
    f.client
        .publish(publish_request("orders-stream", b"second"))
        .await
        .unwrap();
    let got = take(&mut sub, 1).await.remove(0);
    assert_eq!((got.offset, got.value), (1, Bytes::from_static(b"second")));
}

async fn create_stream_bad_input(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("a", "a", 1))
        .await
        .unwrap();
    let exists = f
        .client
        .create_stream(create_request("a", "a", 1))
        .await
        .unwrap_err();
    assert_eq!(exists.code(), Code::AlreadyExists, "{exists:?}");

    for bad_name in [
        "",
        "   ",
        "__reserved",
        "a.b",
        "a*",
        "a>",
        "a/b",
        "a\\b",
        "a b",
    ] {
        let err = f
            .client
            .create_stream(create_request("s", bad_name, 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad_name:?}: {err:?}");
    }
    for bad_subject in ["", "a..b", "a b", "a.>.b"] {
        let err = f
            .client
            .create_stream(create_request(bad_subject, "ok-name", 1))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{bad_subject:?}: {err:?}"
        );
    }
    let mut req = create_request("wild.>", "full-wildcard", 2);
    let err = f.client.create_stream(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    req.partitions = 1;
    f.client
        .create_stream(req)
        .await
        .expect("one partition on a '>' subject is fine");
    let err = f
        .client
        .create_stream(create_request("s", "neg", -1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut req = create_request("s", "rf", 1);
    req.replication_factor = 3;
    let err = f.client.create_stream(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("larger than the cluster"),
        "{}",
        err.message()
    );
    let mut req = create_request("s", "enc", 1);
    req.encryption = Some(pb::NullableBool { value: true });
    let err = f.client.create_stream(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    // Nothing was created by the refused requests.
    let md = f
        .client
        .fetch_metadata(pb::FetchMetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        md.stream_metadata.len(),
        2,
        "only `a` and `full-wildcard` exist"
    );
}

async fn publish_errors_have_precise_codes(mode: Mode) {
    let mut f = fixture(mode).await;
    let err = f
        .client
        .publish(publish_request("", b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = f
        .client
        .publish(publish_request("nope", b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    f.client
        .create_stream(create_request("p", "p", 2))
        .await
        .unwrap();
    let mut req = publish_request("p", b"x");
    req.partition = 5;
    assert_eq!(
        f.client.publish(req).await.unwrap_err().code(),
        Code::NotFound
    );

    let big = vec![0u8; 1024 * 1024 + 1];
    let mut req = publish_request("p", b"");
    req.value = Bytes::from(big);
    let err = f.client.publish(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("TOO_LARGE"), "{}", err.message());

    f.client
        .set_stream_readonly(pb::SetStreamReadonlyRequest {
            name: "p".into(),
            partitions: vec![1],
            readonly: true,
        })
        .await
        .unwrap();
    let mut req = publish_request("p", b"x");
    req.partition = 1;
    assert_eq!(
        f.client.publish(req).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    // Partition 0 is still writable.
    f.client.publish(publish_request("p", b"x")).await.unwrap();
}

async fn optimistic_concurrency_control(mode: Mode) {
    let mut f = fixture(mode).await;
    let mut req = create_request("occ", "occ", 1);
    req.optimistic_concurrency_control = Some(pb::NullableBool { value: true });
    f.client.create_stream(req).await.unwrap();

    let mut req = publish_request("occ", b"first");
    req.expected_offset = 0;
    assert_eq!(
        f.client
            .publish(req)
            .await
            .unwrap()
            .into_inner()
            .ack
            .unwrap()
            .offset,
        0
    );
    let mut req = publish_request("occ", b"stale");
    req.expected_offset = 0;
    let err = f.client.publish(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("INCORRECT_OFFSET"));
    let mut req = publish_request("occ", b"second");
    req.expected_offset = 1;
    assert_eq!(
        f.client
            .publish(req)
            .await
            .unwrap()
            .into_inner()
            .ack
            .unwrap()
            .offset,
        1
    );
    // -1 skips the check.
    assert_eq!(
        f.client
            .publish(publish_request("occ", b"any"))
            .await
            .unwrap()
            .into_inner()
            .ack
            .unwrap()
            .offset,
        2
    );
    let mut req = publish_request("occ", b"x");
    req.ack_policy = pb::AckPolicy::None as i32;
    assert_eq!(
        f.client.publish(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

async fn publish_async_pipelines_and_reports_errors(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("pa", "pa", 1))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(2048);
    let responses = f
        .client
        .publish_async(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    let mut responses = responses.into_inner();
    const N: usize = 1000;
    for i in 0..N {
        let mut req = publish_request("pa", b"v");
        req.correlation_id = format!("c{i}");
        tx.send(req).await.unwrap();
    }
    let mut bad = publish_request("missing-stream", b"v");
    bad.correlation_id = "bad".into();
    tx.send(bad).await.unwrap();
    drop(tx); // half-close: the server still delivers the in-flight acks

    let mut offsets = HashMap::new();
    let mut bad_seen = false;
    while let Some(resp) = tokio::time::timeout(WAIT, responses.next())
        .await
        .expect("responses in time")
    {
        let resp = resp.unwrap();
        if resp.correlation_id == "bad" {
            let e = resp.async_error.expect("async error");
            assert_eq!(e.code, pb::publish_async_error::Code::NotFound as i32);
            bad_seen = true;
            continue;
        }
        assert!(resp.async_error.is_none(), "{resp:?}");
        offsets.insert(resp.correlation_id.clone(), resp.ack.unwrap().offset);
    }
    assert!(bad_seen);
    assert_eq!(
        offsets.len(),
        N,
        "every message acked before the stream ended"
    );
    let mut all: Vec<i64> = offsets.values().copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..N as i64).collect::<Vec<_>>(),
        "one offset per message"
    );
    // Pipelined order is kept.
    assert_eq!(offsets["c0"], 0);
    assert_eq!(offsets[&format!("c{}", N - 1)], N as i64 - 1);
}

/// A client that sends far more than the server keeps in flight per session (16,384 messages, plus what HTTP/2
/// buffers) without reading a single ack: the server stops taking its requests instead of queueing acks without
/// bound, and once the client reads, every message is acked exactly once.
async fn publish_async_client_reading_acks_late_gets_all_of_them(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("late", "late", 1))
        .await
        .unwrap();
    const N: usize = 100_000;
    let requests = (0..N).map(|i| {
        let mut req = publish_request("late", b"v");
        req.correlation_id = format!("c{i}");
        req
    });
    let responses = f
        .client
        .publish_async(tokio_stream::iter(requests))
        .await
        .unwrap();
    let mut responses = responses.into_inner();
    // Nothing is read until the server stops taking messages (its newest offset holds still for a while).
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut newest, mut still) = (-1, 0);
    while still < 5 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = f
            .client
            .fetch_partition_metadata(pb::FetchPartitionMetadataRequest {
                stream: "late".into(),
                partition: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .metadata
            .unwrap()
            .newest_offset;
        still = if now == newest { still + 1 } else { 0 };
        newest = now;
    }
    assert!(
        newest + 1 < N as i64,
        "the server took all {N} messages while none of their acks was read"
    );
    let mut seen = std::collections::HashSet::new();
    while let Some(resp) = tokio::time::timeout(WAIT, responses.next())
        .await
        .expect("responses in time")
    {
        let resp = resp.unwrap();
        assert!(resp.async_error.is_none(), "{resp:?}");
        assert!(
            seen.insert(resp.correlation_id.clone()),
            "acked twice: {}",
            resp.correlation_id
        );
    }
    assert_eq!(seen.len(), N, "every message acked once");
}

async fn nats_bridge_plain_and_envelope_publishers(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("bridge", "s1", 1))
        .await
        .unwrap();
    f.client
        .create_stream(create_request("bridge", "s2", 1))
        .await
        .unwrap();
    let nats = async_nats::connect(&f.nats_url).await.unwrap();

    // A plain NATS subscriber sees gRPC publishes.
    let mut plain_sub = nats.subscribe("bridge").await.unwrap();
    nats_round_trip(&nats).await;
    f.client
        .publish(publish_request("s1", b"from-grpc"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(WAIT, plain_sub.next())
        .await
        .unwrap()
        .unwrap();
    let msg = envelope::decode_message(&seen.payload).expect("gRPC publishes travel as envelopes");
    assert_eq!(msg.value, Bytes::from_static(b"from-grpc"));

    // A plain NATS message is stored as the value, with subject and reply headers.
    nats.publish_with_reply("bridge", "my.reply", Bytes::from_static(b"plain"))
        .await
        .unwrap();
    // An envelope with an ack inbox gets an Ack envelope back.
    let mut acks = nats.subscribe("my.acks").await.unwrap();
    nats_round_trip(&nats).await;
    let env = envelope::encode_message(
        &pb::Message {
            key: Bytes::from_static(b"ek"),
            value: Bytes::from_static(b"enveloped"),
            ack_inbox: "my.acks".into(),
            correlation_id: "e1".into(),
            offset: -1,
            ..Default::default()
        },
        true,
    );
    nats.publish("bridge", env).await.unwrap();
    nats_round_trip(&nats).await;
    let mut ack_streams = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(WAIT, acks.next())
            .await
            .unwrap()
            .unwrap();
        let ack = envelope::decode_ack(&m.payload).unwrap();
        assert_eq!(ack.correlation_id, "e1");
        assert_eq!(ack.offset, 2);
        ack_streams.push(ack.stream);
    }
    ack_streams.sort();
    assert_eq!(
        ack_streams,
        ["s1", "s2"],
        "both streams on the subject record and ack it"
    );

    // Both streams recorded all three messages.
    for name in ["s1", "s2"] {
        let mut req = from(pb::StartPosition::Earliest);
        req.stream = name.into();
        let mut sub = subscribe(&mut f.client, req).await.unwrap();
        let got = take(&mut sub, 3).await;
        assert_eq!(got[0].value, Bytes::from_static(b"from-grpc"));
        assert_eq!(got[1].value, Bytes::from_static(b"plain"));
        assert_eq!(got[1].subject, "bridge");
        assert_eq!(got[1].reply_subject, "my.reply");
        assert_eq!(
            got[1].headers.get("reply"),
            Some(&Bytes::from_static(b"my.reply"))
        );
        assert_eq!(got[2].key, Bytes::from_static(b"ek"));
        assert_eq!(got[2].value, Bytes::from_static(b"enveloped"));
    }
}

async fn wildcard_subjects(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("wild.*", "wild", 2))
        .await
        .unwrap();
    let nats = async_nats::connect(&f.nats_url).await.unwrap();
    nats.publish("wild.a", Bytes::from_static(b"p0"))
        .await
        .unwrap();
    nats.publish("wild.b.1", Bytes::from_static(b"p1"))
        .await
        .unwrap();
    nats.publish("other", Bytes::from_static(b"no"))
        .await
        .unwrap();
    nats_round_trip(&nats).await;
    for (partition, value, subject) in [(0, &b"p0"[..], "wild.a"), (1, &b"p1"[..], "wild.b.1")] {
        let mut req = from(pb::StartPosition::Earliest);
        req.stream = "wild".into();
        req.partition = partition;
        let mut sub = subscribe(&mut f.client, req).await.unwrap();
        let got = take(&mut sub, 1).await.remove(0);
        assert_eq!((got.value.as_ref(), got.subject.as_str()), (value, subject));
    }
}

async fn malformed_envelopes_are_dropped_not_fatal(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("mal", "mal", 1))
        .await
        .unwrap();
    let nats = async_nats::connect(&f.nats_url).await.unwrap();
    // Magic, then a header length larger than the data (crashes Liftbridge's Go server).
    nats.publish(
        "mal",
        Bytes::from_static(&[0xB9, 0x0E, 0x43, 0xB4, 0, 200, 0, 0]),
    )
    .await
    .unwrap();
    // Valid magic, bad CRC.
    let mut bad_crc = envelope::encode_message(&pb::Message::default(), true).to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[8] ^= 0xFF;
    bad_crc[last] ^= 0x01;
    nats.publish("mal", Bytes::from(bad_crc)).await.unwrap();
    nats_round_trip(&nats).await;
    let ack = f
        .client
        .publish(publish_request("mal", b"after"))
        .await
        .unwrap()
        .into_inner()
        .ack
        .unwrap();
    assert_eq!(ack.offset, 0, "malformed envelopes were not stored");
}

async fn subscribe_start_and_stop_positions(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("pos", "pos", 1))
        .await
        .unwrap();
    let mut timestamps = Vec::new();
    for i in 0..10u8 {
        let mut req = publish_request("pos", b"");
        req.value = Bytes::from(vec![i]);
        f.client.publish(req).await.unwrap();
        let mut req = from(pb::StartPosition::Offset);
        req.stream = "pos".into();
        req.start_offset = i64::from(i);
        let mut sub = subscribe(&mut f.client, req).await.unwrap();
        timestamps.push(take(&mut sub, 1).await[0].timestamp);
    }
    let base = |p: pb::StartPosition| pb::SubscribeRequest {
        stream: "pos".into(),
        ..from(p)
    };

    let mut sub = subscribe(&mut f.client, base(pb::StartPosition::Earliest))
        .await
        .unwrap();
    assert_eq!(
        take(&mut sub, 10)
            .await
            .iter()
            .map(|m| m.offset)
            .collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );

    let mut sub = subscribe(&mut f.client, base(pb::StartPosition::Latest))
        .await
        .unwrap();
    assert_eq!(take(&mut sub, 1).await[0].offset, 9);

    let mut sub = subscribe(&mut f.client, base(pb::StartPosition::NewOnly))
        .await
        .unwrap();
    f.client
        .publish(publish_request("pos", b"new"))
        .await
        .unwrap();
    assert_eq!(take(&mut sub, 1).await[0].offset, 10);

    let mut req = base(pb::StartPosition::Timestamp);
    req.start_timestamp = timestamps[4];
    let mut sub = subscribe(&mut f.client, req).await.unwrap();
    assert_eq!(take(&mut sub, 1).await[0].offset, 4);

    // Stop at an offset.
    let mut req = base(pb::StartPosition::Offset);
    req.start_offset = 2;
    req.stop_position = pb::StopPosition::StopOffset as i32;
    req.stop_offset = 4;
    let mut sub = subscribe(&mut f.client, req).await.unwrap();
    assert_eq!(
        take(&mut sub, 3)
            .await
            .iter()
            .map(|m| m.offset)
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(end_status(&mut sub).await.code(), Code::ResourceExhausted);

    // Stop at the latest offset at subscribe time.
    let mut req = base(pb::StartPosition::Offset);
    req.start_offset = 9;
    req.stop_position = pb::StopPosition::StopLatest as i32;
    let mut sub = subscribe(&mut f.client, req).await.unwrap();
    assert_eq!(
        take(&mut sub, 2)
            .await
            .iter()
            .map(|m| m.offset)
            .collect::<Vec<_>>(),
        vec![9, 10]
    );
    assert_eq!(end_status(&mut sub).await.code(), Code::ResourceExhausted);

    // Stop at a timestamp.
    let mut req = base(pb::StartPosition::Earliest);
    req.stop_position = pb::StopPosition::StopTimestamp as i32;
    req.stop_timestamp = timestamps[1];
    let mut sub = subscribe(&mut f.client, req).await.unwrap();
    assert_eq!(
        take(&mut sub, 2)
            .await
            .iter()
            .map(|m| m.offset)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(end_status(&mut sub).await.code(), Code::ResourceExhausted);

    // Reverse from the newest.
    let mut req = base(pb::StartPosition::Latest);
    req.reverse = true;
    let mut sub = subscribe(&mut f.client, req).await.unwrap();
    let got = take(&mut sub, 11).await;
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..=10).rev().collect::<Vec<_>>()
    );
    assert_eq!(end_status(&mut sub).await.code(), Code::ResourceExhausted);

    // Bad input.
    let mut req = base(pb::StartPosition::Offset);
    req.start_offset = 5;
    req.stop_position = pb::StopPosition::StopOffset as i32;
    req.stop_offset = 3;
    assert_eq!(
        f.client.subscribe(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut req = base(pb::StartPosition::Earliest);
    req.stop_position = pb::StopPosition::StopTimestamp as i32;
    req.stop_timestamp = i64::MAX;
    assert_eq!(
        f.client.subscribe(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut req = base(pb::StartPosition::Earliest);
    req.start_position = 42;
    assert_eq!(
        f.client.subscribe(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut req = base(pb::StartPosition::Earliest);
    req.partition = 3;
    assert_eq!(
        f.client.subscribe(req).await.unwrap_err().code(),
        Code::NotFound
    );
    let mut req = base(pb::StartPosition::Earliest);
    req.stream = "unknown".into();
    assert_eq!(
        f.client.subscribe(req).await.unwrap_err().code(),
        Code::NotFound
    );
}

async fn stop_latest_on_empty_stream(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("empty", "empty", 1))
        .await
        .unwrap();
    let mut req = from(pb::StartPosition::Earliest);
    req.stream = "empty".into();
    req.stop_position = pb::StopPosition::StopLatest as i32;
    let err = f.client.subscribe(req).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
}

async fn pause_resume_and_readonly(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("pz", "pz", 2))
        .await
        .unwrap();
    f.client.publish(publish_request("pz", b"0")).await.unwrap();
    let mut req = from(pb::StartPosition::Earliest);
    req.stream = "pz".into();
    let mut live = subscribe(&mut f.client, req.clone()).await.unwrap();
    take(&mut live, 1).await;

    f.client
        .pause_stream(pb::PauseStreamRequest {
            name: "pz".into(),
            partitions: vec![],
            resume_all: true,
        })
        .await
        .unwrap();
    assert_eq!(
        end_status(&mut live).await.code(),
        Code::FailedPrecondition,
        "pause ends subscriptions"
    );
    let err = f.client.subscribe(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let md = f.client.fetch_metadata(pb::FetchMetadataRequest {
        streams: vec!["pz".into()],
        groups: vec![],
    });
    let md = md.await.unwrap().into_inner();
    assert!(md.stream_metadata[0].partitions.values().all(|p| p.paused));
    assert!(
        md.stream_metadata[0].partitions[&0]
            .pause_timestamps
            .unwrap()
            .first_timestamp
            > 0
    );

    // A publish resumes (all partitions, because of resumeAll), and nothing stored was lost.
    let ack = f
        .client
        .publish(publish_request("pz", b"1"))
        .await
        .unwrap()
        .into_inner()
        .ack
        .unwrap();
    assert_eq!(ack.offset, 1);
    let md = f.client.fetch_metadata(pb::FetchMetadataRequest {
        streams: vec!["pz".into()],
        groups: vec![],
    });
    assert!(
        md.await.unwrap().into_inner().stream_metadata[0]
            .partitions
            .values()
            .all(|p| !p.paused)
    );

    // Subscribe with resume.
    f.client
        .pause_stream(pb::PauseStreamRequest {
            name: "pz".into(),
            partitions: vec![0],
            resume_all: false,
        })
        .await
        .unwrap();
    let mut resume = req.clone();
    resume.resume = true;
    let mut sub = subscribe(&mut f.client, resume).await.unwrap();
    assert_eq!(take(&mut sub, 2).await[1].value, Bytes::from_static(b"1"));

    // Readonly: subscribers reach the end instead of waiting.
    f.client
        .set_stream_readonly(pb::SetStreamReadonlyRequest {
            name: "pz".into(),
            partitions: vec![],
            readonly: true,
        })
        .await
        .unwrap();
    assert_eq!(end_status(&mut sub).await.code(), Code::ResourceExhausted);
    let mut sub = subscribe(&mut f.client, req.clone()).await.unwrap();
    take(&mut sub, 2).await;
    let end = end_status(&mut sub).await;
    assert_eq!(end.code(), Code::ResourceExhausted);
    assert!(end.message().contains("readonly"), "{}", end.message());

    // Errors.
    let missing = pb::PauseStreamRequest {
        name: "missing".into(),
        ..Default::default()
    };
    assert_eq!(
        f.client.pause_stream(missing).await.unwrap_err().code(),
        Code::NotFound
    );
    let bad = pb::PauseStreamRequest {
        name: "pz".into(),
        partitions: vec![7],
        resume_all: false,
    };
    assert_eq!(
        f.client.pause_stream(bad).await.unwrap_err().code(),
        Code::NotFound
    );
    let missing = pb::SetStreamReadonlyRequest {
        name: "missing".into(),
        ..Default::default()
    };
    assert_eq!(
        f.client
            .set_stream_readonly(missing)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

async fn delete_stream_ends_subscriptions_and_removes_data(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("del", "del", 1))
        .await
        .unwrap();
    f.client
        .publish(publish_request("del", b"x"))
        .await
        .unwrap();
    let stream_dir = f.server.data_dir.join("streams").join("del");
    assert!(stream_dir.exists());
    let mut req = from(pb::StartPosition::Earliest);
    req.stream = "del".into();
    let mut sub = subscribe(&mut f.client, req.clone()).await.unwrap();
    take(&mut sub, 1).await;

    f.client
        .delete_stream(pb::DeleteStreamRequest { name: "del".into() })
        .await
        .unwrap();
    assert_eq!(end_status(&mut sub).await.code(), Code::NotFound);
    assert!(!stream_dir.exists(), "data is deleted with the stream");
    let err = f
        .client
        .delete_stream(pb::DeleteStreamRequest { name: "del".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = f
        .client
        .delete_stream(pb::DeleteStreamRequest {
            name: "__cursors".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Recreated under the same name: a new, empty stream.
    f.client
        .create_stream(create_request("del", "del", 1))
        .await
        .unwrap();
    let ack = f
        .client
        .publish(publish_request("del", b"new"))
        .await
        .unwrap()
        .into_inner()
        .ack
        .unwrap();
    assert_eq!(ack.offset, 0);
}

async fn metadata_rpcs(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("md", "md", 3))
        .await
        .unwrap();
    f.client.publish(publish_request("md", b"x")).await.unwrap();
    let md = f
        .client
        .fetch_metadata(pb::FetchMetadataRequest {
            streams: vec!["md".into(), "ghost".into()],
            groups: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.brokers.len(), 1);
    let broker = &md.brokers[0];
    assert_eq!(broker.id, f.server.server_id);
    assert_eq!(broker.port, i32::from(f.server.addr.port()));
    assert_eq!((broker.partition_count, broker.leader_count), (3, 3));
    assert_eq!(md.stream_metadata.len(), 2);
    let s = md.stream_metadata.iter().find(|s| s.name == "md").unwrap();
    assert_eq!(s.subject, "md");
    assert_eq!(s.partitions.len(), 3);
    let p0 = &s.partitions[&0];
    assert_eq!((p0.high_watermark, p0.newest_offset), (0, 0));
    assert_eq!(p0.leader, f.server.server_id);
    assert_eq!(p0.isr, vec![f.server.server_id.clone()]);
    assert!(p0.messages_received_timestamps.unwrap().latest_timestamp > 0);
    assert_eq!(s.partitions[&1].newest_offset, -1);
    let ghost = md
        .stream_metadata
        .iter()
        .find(|s| s.name == "ghost")
        .unwrap();
    assert_eq!(
        ghost.error,
        pb::stream_metadata::Error::UnknownStream as i32
    );

    let pm = f
        .client
        .fetch_partition_metadata(pb::FetchPartitionMetadataRequest {
            stream: "md".into(),
            partition: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pm.metadata.unwrap().high_watermark, 0);
    let err = f
        .client
        .fetch_partition_metadata(pb::FetchPartitionMetadataRequest {
            stream: "md".into(),
            partition: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

async fn cursors_and_groups_are_not_implemented_yet(mode: Mode) {
    let mut f = fixture(mode).await;
    let err = f
        .client
        .set_cursor(pb::SetCursorRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("Cursors"));
    let err = f
        .client
        .fetch_cursor(pb::FetchCursorRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let err = f
        .client
        .join_consumer_group(pb::JoinConsumerGroupRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("Consumer groups"));
}

async fn health_service_reports_serving(mode: Mode) {
    let f = fixture(mode).await;
    let channel = Channel::from_shared(format!("http://{}", f.server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "proto.API".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

async fn publish_to_subject(mode: Mode) {
    let mut f = fixture(mode).await;
    f.client
        .create_stream(create_request("pts", "pts", 1))
        .await
        .unwrap();
    let resp = f
        .client
        .publish_to_subject(pb::PublishToSubjectRequest {
            subject: "pts".into(),
            value: Bytes::from_static(b"v"),
            headers: HashMap::from([("x".into(), Bytes::from_static(b"y"))]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.ack.unwrap().stream, "pts");
    let mut req = from(pb::StartPosition::Earliest);
    req.stream = "pts".into();
    let mut sub = subscribe(&mut f.client, req).await.unwrap();
    assert_eq!(
        take(&mut sub, 1).await[0].headers.get("x"),
        Some(&Bytes::from_static(b"y"))
    );
    let err = f
        .client
        .publish_to_subject(pb::PublishToSubjectRequest {
            subject: "a..b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// Runs every scenario on both kinds of NATS.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod nats_server {
            $(#[tokio::test] async fn $name() { super::$name(super::Mode::NatsServer).await })*
        }
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name(super::Mode::Embedded).await })*
        }
    };
}

on_both!(
    create_publish_subscribe_round_trip,
    create_stream_bad_input,
    publish_errors_have_precise_codes,
    optimistic_concurrency_control,
    publish_async_pipelines_and_reports_errors,
    publish_async_client_reading_acks_late_gets_all_of_them,
    nats_bridge_plain_and_envelope_publishers,
    malformed_envelopes_are_dropped_not_fatal,
    wildcard_subjects,
    subscribe_start_and_stop_positions,
    stop_latest_on_empty_stream,
    pause_resume_and_readonly,
    delete_stream_ends_subscriptions_and_removes_data,
    metadata_rpcs,
    cursors_and_groups_are_not_implemented_yet,
    health_service_reports_serving,
    publish_to_subject,
);
