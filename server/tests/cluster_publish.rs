//! API publishes on a cluster over a real nats-server, where a partition leader gets the publishes its own
//! server takes in-process (the intake) rather than back from NATS: plain NATS subscribers still see every
//! publish, every stream on the subject — led by the same server or another one — records each exactly once,
//! and acks (in-process to the server's own inboxes) still arrive.

mod cluster;
mod support;

use std::time::Duration;

use futures::StreamExt;
use liftbridge_proto::{envelope, pb};
use support::NatsServer;

/// Publishes through `client`: `n` synchronous publishes to `stream` and `n` more through one `PublishAsync`
/// session, values `<prefix>0..`; returns every value in order.
async fn publish_both_ways(
    client: &mut pb::api_client::ApiClient<tonic::transport::Channel>,
    stream: &str,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    let mut values = Vec::new();
    for i in 0..n {
        let value = format!("{prefix}{i}");
        // Every stream on the subject acks to the same inbox; the first ack answers the publish.
        let offset = cluster::publish_all(client, stream, &value)
            .await
            .expect("publish");
        assert!(offset >= 0, "{value} acked at {offset}");
        values.push(value);
    }
    let requests: Vec<pb::PublishRequest> = (n..2 * n)
        .map(|i| pb::PublishRequest {
            stream: stream.into(),
            value: format!("{prefix}{i}").into_bytes().into(),
            ack_policy: pb::AckPolicy::All as i32,
            correlation_id: format!("c{i}"),
            ..Default::default()
        })
        .collect();
    values.extend((n..2 * n).map(|i| format!("{prefix}{i}")));
    let mut responses = client
        .publish_async(tokio_stream::iter(requests))
        .await
        .expect("publish async")
        .into_inner();
    let mut acked = 0;
    while acked < n {
        let resp = tokio::time::timeout(Duration::from_secs(10), responses.next())
            .await
            .expect("ack within 10 s")
            .expect("response stream open")
            .expect("response");
        assert!(resp.async_error.is_none(), "{resp:?}");
        acked += 1;
    }
    values
}

#[tokio::test]
async fn api_publishes_reach_nats_subscribers_and_every_stream_once() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let servers = cluster::start_cluster(&nats.url, root.path(), 2).await;
    let mut admin = servers[0].client().await;
    // Three one-replica streams on one subject: placement spreads them over both servers, so one server leads
    // two of them and the other one.
    let mut leaders = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let request = pb::CreateStreamRequest {
            subject: "orders".into(),
            ..cluster::replicated(name, 1)
        };
        let p = cluster::create_with_isr(&mut admin, request, 1).await;
        leaders.push((name, p.leader));
    }
    let busy = leaders
        .iter()
        .find(|(_, l)| leaders.iter().filter(|(_, m)| m == l).count() == 2)
        .map(|(_, l)| l.clone())
        .expect("one server leads two of the three streams");
    let (own, _) = *leaders.iter().find(|(_, l)| *l == busy).unwrap();
    assert!(
        leaders.iter().any(|(_, l)| *l != busy),
        "another server leads a stream on the subject: {leaders:?}"
    );

    let watcher = async_nats::connect(&nats.url).await.unwrap();
    let mut plain = watcher.subscribe("orders").await.unwrap();
    support::nats_round_trip(&watcher).await;

    // Through the server leading two of the streams (its own leaders get the publishes in-process), then
    // through the other one.
    let mut values = Vec::new();
    let mut client = cluster::by_id(&servers, &busy).client().await;
    values.extend(publish_both_ways(&mut client, own, "a", 20).await);
    let other = servers.iter().find(|s| s.server_id != busy).unwrap();
    let mut client = other.client().await;
    values.extend(publish_both_ways(&mut client, own, "b", 20).await);
    // PublishToSubject: every stream acks; the first ack is returned.
    let resp = client
        .publish_to_subject(pb::PublishToSubjectRequest {
            subject: "orders".into(),
            value: b"t0".to_vec().into(),
            ack_policy: pb::AckPolicy::Leader as i32,
            ..Default::default()
        })
        .await
        .expect("publish to subject")
        .into_inner();
    assert!(resp.ack.is_some(), "{resp:?}");
    values.push("t0".into());

    // The plain subscriber sees every publish exactly once (publishes through two servers may interleave).
    let mut seen = Vec::new();
    while seen.len() < values.len() {
        let m = tokio::time::timeout(Duration::from_secs(10), plain.next())
            .await
            .expect("plain subscriber gets every publish")
            .expect("subscription open");
        let msg = envelope::decode_message(&m.payload).expect("an envelope");
        seen.push(String::from_utf8_lossy(&msg.value).into_owned());
    }
    let mut sorted = values.clone();
    sorted.sort();
    seen.sort();
    assert_eq!(seen, sorted);

    // NATS has delivered every publish to every subscriber (the streams' leaders included) before the plain
    // subscriber's last one; a marker published now from another connection reaches every stream after them.
    watcher
        .publish("orders", bytes::Bytes::from_static(b"end"))
        .await
        .unwrap();
    support::nats_round_trip(&watcher).await;
    for (stream, leader) in &leaders {
        let mut reader = cluster::by_id(&servers, leader).client().await;
        let end = values.len() as i64 + 1;
        let log = cluster::checker::read_all(&mut reader, stream, 0, end, false)
            .await
            .expect("read stream");
        let mut got: Vec<String> = log.iter().map(|(_, v)| v.clone()).collect();
        // Each publish once, then the marker: a duplicate would push the marker further out.
        assert_eq!(
            got.pop().as_deref(),
            Some("end"),
            "stream {stream} (led by {leader}): {got:?}"
        );
        got.sort();
        assert_eq!(got, sorted, "stream {stream} (led by {leader})");
    }
    for s in servers {
        s.stop().await.unwrap();
    }
}
