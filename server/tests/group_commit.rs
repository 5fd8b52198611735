//! `streams.sync.policy: always` through the API: the leader appends batches while earlier ones are being
//! fsynced (pipelined group commit) and acks a message only once an fsync covered it. These tests check what a
//! publisher and a subscriber can see: every pipelined message acked exactly once with consecutive offsets,
//! expected offsets (OCC) that count messages still waiting for their fsync, and subscribers that receive
//! everything that was acked.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_proto::pb;
use liftbridge_server::config::SyncPolicyKind;
use support::{TestServer, create_request};

const WAIT: Duration = Duration::from_secs(20);

async fn sync_always_server(dir: &std::path::Path) -> TestServer {
    TestServer::start_standalone(dir, |config| {
        config.streams.sync_policy = SyncPolicyKind::Always;
    })
    .await
}

/// Sends `requests` on one PublishAsync stream all at once and returns the responses in arrival order.
async fn publish_all(
    client: &mut pb::api_client::ApiClient<tonic::transport::Channel>,
    requests: Vec<pb::PublishRequest>,
) -> Vec<pb::PublishResponse> {
    let n = requests.len();
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    for req in requests {
        tx.send(req).await.unwrap();
    }
    drop(tx);
    let mut responses = client
        .publish_async(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(WAIT, responses.next()).await {
            Ok(Some(Ok(resp))) => out.push(resp),
            other => panic!("after {} of {n} responses: {other:?}", out.len()),
        }
    }
    out
}

fn request(stream: &str, i: usize, expected_offset: i64) -> pb::PublishRequest {
    pb::PublishRequest {
        stream: stream.into(),
        value: Bytes::from(format!("m{i}")),
        correlation_id: format!("c{i}"),
        expected_offset,
        ..Default::default()
    }
}

#[tokio::test]
async fn pipelined_publishes_are_acked_once_with_consecutive_offsets_and_reach_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let server = sync_always_server(dir.path()).await;
    let mut client = server.client().await;
    client
        .create_stream(create_request("gc", "gc", 1))
        .await
        .unwrap();

    // A subscriber from the start, reading while the publishes are committed.
    let mut sub_client = server.client().await;
    let mut subscription = sub_client
        .subscribe(pb::SubscribeRequest {
            stream: "gc".into(),
            start_position: pb::StartPosition::Earliest as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let handshake = tokio::time::timeout(WAIT, subscription.next()).await;
    assert!(matches!(handshake, Ok(Some(Ok(_)))), "{handshake:?}");

    const N: usize = 3000;
    let responses = publish_all(&mut client, (0..N).map(|i| request("gc", i, -1)).collect()).await;
    let mut offsets = Vec::with_capacity(N);
    let mut ids = HashSet::new();
    for resp in &responses {
        assert!(resp.async_error.is_none(), "{resp:?}");
        let ack = resp.ack.as_ref().expect("ack");
        assert!(
            ack.commit_timestamp >= ack.reception_timestamp,
            "committed after it was received: {ack:?}"
        );
        assert!(
            ids.insert(resp.correlation_id.clone()),
            "one ack per message"
        );
        offsets.push(ack.offset);
    }
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (0..N as i64).collect::<Vec<_>>(),
        "one offset per message"
    );

    for i in 0..N {
        match tokio::time::timeout(WAIT, subscription.next()).await {
            Ok(Some(Ok(m))) => {
                assert_eq!(m.offset, i as i64, "in order, no gaps");
                assert_eq!(
                    m.value,
                    Bytes::from(format!("m{i}")),
                    "pipelined order kept"
                );
            }
            other => panic!("subscriber got {i} of {N} messages, then {other:?}"),
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn expected_offsets_count_messages_still_waiting_for_their_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let server = sync_always_server(dir.path()).await;
    let mut client = server.client().await;
    let mut create = create_request("occ", "occ", 1);
    create.optimistic_concurrency_control = Some(pb::NullableBool { value: true });
    client.create_stream(create).await.unwrap();

    // Each message expects the offset right after the previous one, all in flight at once: they only succeed
    // if the leader counts appended-but-not-yet-durable messages.
    const N: usize = 3000;
    let mut requests: Vec<pb::PublishRequest> =
        (0..N).map(|i| request("occ", i, i as i64)).collect();
    // One stale expectation in the middle is refused and does not take an offset.
    requests.push(request("occ", N, 3));
    let responses = publish_all(&mut client, requests).await;
    let mut ok = 0;
    for resp in &responses {
        if resp.correlation_id == format!("c{N}") {
            let e = resp
                .async_error
                .as_ref()
                .expect("stale expected offset refused");
            assert_eq!(
                e.code,
                pb::publish_async_error::Code::IncorrectOffset as i32
            );
        } else {
            assert!(resp.async_error.is_none(), "{resp:?}");
            let i: i64 = resp.correlation_id[1..].parse().unwrap();
            assert_eq!(resp.ack.as_ref().unwrap().offset, i);
            ok += 1;
        }
    }
    assert_eq!(ok, N);
    server.stop().await.unwrap();
}
