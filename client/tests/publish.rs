//! Publishing: acks, partitioners, headers, ack policies, OCC, typed ack errors, publish to subject,
//! envelopes through plain NATS, pipelining, the in-flight window, ack timeouts and fail-fast on broken
//! connections.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use liftbridge::testing::TestServer;
use liftbridge::{
    Ack, AckPolicy, ErrorKind, Event, Message, Partitioner, Partitioning, StartPosition,
    StreamOptions, SubscribeOptions,
};

/// Asserts that `future` is still waiting after `wait` (for work the stalled server must hold back).
async fn assert_still_waiting<F: std::future::Future + Unpin>(
    future: &mut F,
    wait: Duration,
    why: &str,
) {
    assert!(tokio::time::timeout(wait, future).await.is_err(), "{why}");
}

fn earliest() -> SubscribeOptions {
    SubscribeOptions::new().start_at(StartPosition::Earliest)
}

#[tokio::test]
async fn publish_waits_for_the_ack() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "orders", 1).await;
    for i in 0..3 {
        let ack = client.publish("orders", format!("m{i}")).await.unwrap();
        assert_eq!(ack.offset(), i);
        assert_eq!(ack.stream(), "orders");
        assert_eq!(ack.partition(), Some(0));
        assert_eq!(ack.partition_subject(), "orders");
        assert_eq!(ack.ack_policy(), AckPolicy::Leader);
        assert!(!ack.correlation_id().is_empty());
        assert!(ack.commit_timestamp() >= ack.reception_timestamp());
    }
    client.close().await;
}

/// Keys land where go-liftbridge puts them: the golden vectors of the proto crate, through a real server.
#[tokio::test]
async fn key_partitioner_matches_golden_vectors() {
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .partitioning(Partitioning::Key)
        .connect()
        .await
        .unwrap();
    create(&client, "keyed", 3).await;
    let golden = include_str!("../../proto/tests/data/key_partition_golden.tsv");
    let mut checked = 0;
    for line in golden.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[2] != "3" {
            continue;
        }
        let key: Vec<u8> = (0..cols[0].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&cols[0][i..i + 2], 16).unwrap())
            .collect();
        let expected: i32 = cols[3].parse().unwrap();
        let ack = client
            .publish("keyed", Message::new("v").key(key))
            .await
            .unwrap();
        assert_eq!(ack.partition(), Some(expected), "key {}", cols[0]);
        let subject = if expected == 0 {
            "keyed".to_string()
        } else {
            format!("keyed.{expected}")
        };
        assert_eq!(ack.partition_subject(), subject);
        checked += 1;
    }
    assert!(checked >= 10);
}

#[derive(Debug)]
struct Last;

impl Partitioner for Last {
    fn partition(&self, _stream: &str, _key: &[u8], _value: &[u8], partitions: u32) -> u32 {
        partitions - 1
    }
}

#[tokio::test]
async fn round_robin_custom_and_explicit_partitions() {
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .partitioning(Partitioning::RoundRobin)
        .connect()
        .await
        .unwrap();
    create(&client, "rr", 3).await;
    let mut parts = Vec::new();
    for _ in 0..6 {
        parts.push(
            client
                .publish("rr", "x")
                .await
                .unwrap()
                .partition()
                .unwrap(),
        );
    }
    assert_eq!(parts, [0, 1, 2, 0, 1, 2]);
    // A client that has not cached the stream yet fetches its partition count on the first send; the round
    // robin still advances once per message.
    let fresh = server
        .client_builder()
        .partitioning(Partitioning::RoundRobin)
        .connect()
        .await
        .unwrap();
    let mut parts = Vec::new();
    for _ in 0..3 {
        let ack = fresh.send("rr", "x").await.unwrap().await.unwrap();
        parts.push(ack.partition().unwrap());
    }
    assert_eq!(parts, [0, 1, 2]);
    let custom = Message::new("x").partitioning(Partitioning::Custom(Arc::new(Last)));
    assert_eq!(
        client.publish("rr", custom).await.unwrap().partition(),
        Some(2)
    );
    let explicit = Message::new("x").partition(1);
    assert_eq!(
        client.publish("rr", explicit).await.unwrap().partition(),
        Some(1)
    );
}

#[tokio::test]
async fn headers_key_and_correlation_id_travel() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "h", 1).await;
    let ack = client
        .publish(
            "h",
            Message::new("value")
                .key("k1")
                .header("trace", "abc")
                .headers([("n", Bytes::from_static(b"1"))])
                .correlation_id("my-id"),
        )
        .await
        .unwrap();
    assert_eq!(ack.correlation_id(), "my-id");
    let mut sub = client.subscribe("h", earliest()).await.unwrap();
    let got = take(&mut sub, 1).await;
    let m = &got[0];
    assert_eq!(m.value(), &Bytes::from_static(b"value"));
    assert_eq!(m.key(), &Bytes::from_static(b"k1"));
    assert_eq!(m.header("trace"), Some(&Bytes::from_static(b"abc")));
    assert_eq!(m.header("n"), Some(&Bytes::from_static(b"1")));
    assert_eq!(m.stream(), "h");
    assert_eq!(m.partition(), 0);
    assert!(m.timestamp() > std::time::UNIX_EPOCH);
}

#[tokio::test]
async fn ack_policies_all_and_none() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "p", 1).await;
    let ack = client
        .publish("p", Message::new("all").ack_policy(AckPolicy::All))
        .await
        .unwrap();
    assert_eq!(ack.offset(), 0);
    assert_eq!(ack.ack_policy(), AckPolicy::All);
    let ack = client
        .publish("p", Message::new("none").ack_policy(AckPolicy::None))
        .await
        .unwrap();
    assert_eq!(ack.offset(), -1, "no ack comes for NONE: the ack is local");
    let mut sub = client.subscribe("p", earliest()).await.unwrap();
    let got = take(&mut sub, 2).await;
    assert_eq!(got[1].value(), &Bytes::from_static(b"none"));
}

#[tokio::test]
async fn optimistic_concurrency_control() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    client
        .create_stream(StreamOptions::new("occ", "occ").optimistic_concurrency_control(true))
        .await
        .unwrap();
    let ack = client
        .publish("occ", Message::new("a").expected_offset(0))
        .await
        .unwrap();
    assert_eq!(ack.offset(), 0);
    let err = client
        .publish("occ", Message::new("dup").expected_offset(0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IncorrectOffset, "{err}");
    assert!(!err.is_retryable());
    let ack = client
        .publish("occ", Message::new("b").expected_offset(1))
        .await
        .unwrap();
    assert_eq!(ack.offset(), 1);
    // NONE is refused by the server; the refusal cannot be reported to a NONE publish, so the publish itself
    // succeeds locally and nothing is written.
    client
        .publish("occ", Message::new("c").ack_policy(AckPolicy::None))
        .await
        .unwrap();
    // Proof that "c" was not written: offset 2 is still free (the same stream keeps publish order, so "c"
    // would have taken it first).
    let ack = client
        .publish("occ", Message::new("d").expected_offset(2))
        .await
        .unwrap();
    assert_eq!(ack.offset(), 2);
}

#[tokio::test]
async fn typed_refusals() {
    let server = TestServer::builder()
        .config(|c| c.clustering.replication_max_bytes = 64)
        .start()
        .await
        .unwrap();
    let client = server.client().await.unwrap();
    create(&client, "t", 2).await;

    let err = client.publish("t", vec![0u8; 100]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    // Over the gRPC limit: refused by the client without breaking the stream for others.
    let pending = client.send("t", "small").await.unwrap();
    let err = client.publish("t", vec![0u8; 5 << 20]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    pending.await.unwrap();

    let err = client.publish("missing", "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream, "{err}");
    assert!(err.to_string().contains("create"), "says what to do: {err}");

    let err = client
        .publish("t", Message::new("x").partition(7))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchPartition, "{err}");

    client.set_stream_readonly("t", &[1], true).await.unwrap();
    let err = client
        .publish("t", Message::new("x").partition(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Readonly, "{err}");
    client
        .publish("t", "partition 0 still writable")
        .await
        .unwrap();
    client.set_stream_readonly("t", &[1], false).await.unwrap();
    client
        .publish("t", Message::new("x").partition(1))
        .await
        .unwrap();

    // A correlation id already awaiting its ack is refused (acks are matched by it).
    server.set_stalled(true);
    let first = client
        .send("t", Message::new("x").correlation_id("same"))
        .await
        .unwrap();
    let err = client
        .send("t", Message::new("y").correlation_id("same"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    server.set_stalled(false);
    first.await.unwrap();
    let err = client.publish("", "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn publish_to_subject_keeps_headers() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "events", 1).await;
    let ack = client
        .publish_to_subject(
            "events",
            Message::new("via subject").header("h", "1").key("k"),
        )
        .await
        .unwrap()
        .expect("an ack");
    assert_eq!(ack.stream(), "events");
    assert_eq!(ack.offset(), 0);
    let none = client
        .publish_to_subject("events", Message::new("x").ack_policy(AckPolicy::None))
        .await
        .unwrap();
    assert!(none.is_none());
    let mut sub = client.subscribe("events", earliest()).await.unwrap();
    let got = take(&mut sub, 1).await;
    assert_eq!(got[0].header("h"), Some(&Bytes::from_static(b"1")));
    assert_eq!(got[0].key(), &Bytes::from_static(b"k"));
}

/// `Message::to_envelope` and `Ack::from_envelope` let a plain NATS client publish to a stream.
#[tokio::test]
async fn envelopes_through_plain_nats() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "env", 1).await;
    let nats = async_nats::connect(server.nats_url().unwrap())
        .await
        .unwrap();
    let mut acks = nats.subscribe("my.acks").await.unwrap();
    nats.flush().await.unwrap();
    let msg = Message::new("from nats")
        .key("k")
        .header("h", "v")
        .ack_inbox("my.acks")
        .correlation_id("c-1");
    nats.publish("env", msg.to_envelope(true)).await.unwrap();
    nats.flush().await.unwrap();
    let raw = next(&mut acks).await.expect("an ack on the inbox");
    let ack = Ack::from_envelope(&raw.payload).unwrap();
    assert_eq!(ack.stream(), "env");
    assert_eq!(ack.offset(), 0);
    assert_eq!(ack.correlation_id(), "c-1");
    let mut sub = client.subscribe("env", earliest()).await.unwrap();
    let got = take(&mut sub, 1).await;
    assert_eq!(got[0].value(), &Bytes::from_static(b"from nats"));
    assert_eq!(got[0].header("h"), Some(&Bytes::from_static(b"v")));
}

#[tokio::test]
async fn pipelined_sends_are_acked_in_order() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "pipe", 1).await;
    let mut futures = Vec::new();
    for i in 0..2000 {
        futures.push(client.send("pipe", format!("m{i}")).await.unwrap());
    }
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.await.unwrap().offset(), i as i64);
    }
}

/// Fire-and-forget sends are bounded by the publish stream's request queue, not by the in-flight window: with the
/// connection stalled the sender waits once the queue (and the socket buffers) are full, and every message is
/// delivered, in order, once traffic moves again.
#[tokio::test]
async fn fire_and_forget_sends_wait_for_room_in_the_request_queue() {
    const COUNT: usize = 5_000;
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "ff", 1).await;
    client.publish("ff", "warm up").await.unwrap();
    server.set_stalled(true);
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..COUNT {
                let payload = format!("{i:01024}");
                let ack = client
                    .send("ff", Message::new(payload).ack_policy(AckPolicy::None))
                    .await
                    .unwrap();
                assert_eq!(ack.await.unwrap().offset(), -1);
            }
        })
    };
    tokio::pin!(sender);
    assert_still_waiting(
        &mut sender,
        Duration::from_millis(500),
        "5 MB of sends cannot all be queued while the connection is stalled",
    )
    .await;
    server.set_stalled(false);
    tokio::time::timeout(WAIT, sender)
        .await
        .expect("the sender finishes once traffic moves")
        .unwrap();
    let mut sub = client.subscribe("ff", earliest()).await.unwrap();
    let got = take(&mut sub, COUNT + 1).await;
    for (i, m) in got[1..].iter().enumerate() {
        assert_eq!(m.value(), format!("{i:01024}").as_bytes());
    }
}

/// With a window of 4 and acks held back, four sends go through and the fifth waits until an ack frees room.
#[tokio::test]
async fn in_flight_window_applies_backpressure() {
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .max_in_flight(4)
        .ack_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    create(&client, "bp", 1).await;
    client.publish("bp", "warm up").await.unwrap();
    server.set_stalled(true);
    let mut pending = Vec::new();
    for i in 0..4 {
        pending.push(client.send("bp", format!("m{i}")).await.unwrap());
    }
    let fifth = client.send("bp", "m4");
    tokio::pin!(fifth);
    assert_still_waiting(
        &mut fifth,
        Duration::from_millis(300),
        "the fifth send must wait for room in the window",
    )
    .await;
    server.set_stalled(false);
    let fifth = tokio::time::timeout(WAIT, fifth)
        .await
        .expect("room after acks")
        .unwrap();
    for (i, f) in pending.into_iter().enumerate() {
        assert_eq!(f.await.unwrap().offset(), i as i64 + 1);
    }
    assert_eq!(fifth.await.unwrap().offset(), 5);
}

/// Stopping the server with acks in flight fails every pending ack at once with a retryable error, long
/// before the ack timeout; publishing works again after a restart.
#[tokio::test]
async fn broken_stream_fails_in_flight_acks_fast() {
    let mut server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .ack_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    create(&client, "ff", 1).await;
    client.publish("ff", "warm up").await.unwrap();
    server.set_stalled(true);
    let mut pending = Vec::new();
    for i in 0..10 {
        pending.push(client.send("ff", format!("m{i}")).await.unwrap());
    }
    let started = tokio::time::Instant::now();
    server.stop().await.unwrap();
    for f in pending {
        let err = tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("fails fast, not after the ack timeout")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
        assert!(err.is_retryable());
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_event(
        &mut events,
        |e| matches!(e, Event::PublishStreamBroken { in_flight, .. } if *in_flight == 10),
    )
    .await;
    server.set_stalled(false);
    server.restart().await.unwrap();
    let ack = client.publish("ff", "after restart").await.unwrap();
    assert!(ack.offset() >= 1);
}

#[tokio::test]
async fn killed_connection_fails_acks_and_recovers() {
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .ack_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    create(&client, "kc", 1).await;
    client.publish("kc", "warm up").await.unwrap();
    server.set_stalled(true);
    let f = client.send("kc", "lost?").await.unwrap();
    server.kill_connections();
    let err = tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("fails fast")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected);
    server.set_stalled(false);
    client.publish("kc", "again").await.unwrap();
}

#[tokio::test]
async fn ack_timeout_is_typed_and_the_stream_survives() {
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .ack_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    create(&client, "at", 1).await;
    client.publish("at", "warm up").await.unwrap();
    server.set_stalled(true);
    let started = tokio::time::Instant::now();
    let err = client.publish("at", "late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AckTimeout, "{err}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(5));
    server.set_stalled(false);
    let ack = client.publish("at", "on time").await.unwrap();
    assert_eq!(
        ack.offset(),
        2,
        "the late message was written, its ack discarded"
    );
}

/// Dropping ack futures neither breaks the publish stream nor leaks window permits.
#[tokio::test]
async fn dropped_ack_futures_are_harmless() {
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .max_in_flight(4)
        .connect()
        .await
        .unwrap();
    create(&client, "drop", 1).await;
    for i in 0..50 {
        drop(client.send("drop", format!("m{i}")).await.unwrap());
    }
    let ack = client.publish("drop", "last").await.unwrap();
    assert_eq!(ack.offset(), 50);
}

/// Polls `ack` once in a task of its own, then holds it without polling until `release` fires, and awaits it.
/// Returns once the first poll happened.
async fn hold_after_one_poll(
    ack: liftbridge::AckFuture,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<liftbridge::Result<Ack>>,
) {
    let (polled_tx, polled_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        let mut ack = ack;
        let first = futures::poll!(&mut ack);
        let _ = polled_tx.send(());
        let _ = release_rx.await;
        match first {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => ack.await,
        }
    });
    polled_rx.await.expect("the holder polled its ack future");
    (release_tx, holder)
}

/// A synchronous publish's ack future reads the publish stream itself while its message is the only one waiting.
/// One polled once and then left alone (neither awaited nor dropped, in a task that does not come back to it) must
/// not hold back anything: the next message's ack, a send waiting for the in-flight window, or `close()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_ack_future_does_not_hold_back_other_acks() {
    const PROMPT: Duration = Duration::from_secs(5);
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .ack_timeout(Duration::from_secs(60))
        .drain_grace(Duration::from_secs(30))
        .max_in_flight(1)
        .connect()
        .await
        .unwrap();
    create(&client, "idle", 1).await;
    client.publish("idle", "open the stream").await.unwrap();
    for round in 0..10 {
        let first = client.send("idle", format!("a{round}")).await.unwrap();
        let (release, holder) = hold_after_one_poll(first).await;
        // With a window of one, this publish waits for the first message's ack to come in.
        let second = tokio::time::timeout(PROMPT, client.publish("idle", format!("b{round}")))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the second publish was held back"))
            .unwrap();
        release.send(()).unwrap();
        let first = tokio::time::timeout(PROMPT, holder)
            .await
            .expect("the first ack")
            .unwrap()
            .unwrap();
        assert_eq!(first.offset() + 1, second.offset());
    }
    for round in 0..10 {
        let dropped = client.send("idle", format!("d{round}")).await.unwrap();
        let (release, holder) = hold_after_one_poll(dropped).await;
        holder.abort();
        drop(release);
        let ack = tokio::time::timeout(PROMPT, client.publish("idle", format!("p{round}")))
            .await
            .unwrap_or_else(|_| panic!("round {round}: no ack after a dropped ack future"))
            .unwrap();
        assert_eq!(ack.offset(), 22 + 2 * round);
    }
    // Closing waits for pending acks: the held one's comes in and is delivered, and close does not wait out its
    // grace period for it.
    let last = client.send("idle", "last").await.unwrap();
    let (release, holder) = hold_after_one_poll(last).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(PROMPT, client.close())
        .await
        .expect("close in time");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "close waited {:?} for an ack that had come in",
        started.elapsed()
    );
    release.send(()).unwrap();
    let last = holder.await.unwrap().unwrap();
    assert_eq!(last.offset(), 41);
}

#[tokio::test]
async fn closed_client_refuses_work_and_drains() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "cl", 1).await;
    let mut pending = Vec::new();
    for i in 0..20 {
        pending.push(client.send("cl", format!("m{i}")).await.unwrap());
    }
    client.close().await;
    for f in pending {
        f.await.expect("in-flight acks are drained by close");
    }
    let err = client.publish("cl", "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(client.is_closed());
    client.close().await;
}
