//! Subscribing: every start and stop position, reverse, ISR reads, how subscriptions end, resubscribe after
//! failures, merged subscriptions over all partitions and cancellation.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use futures::StreamExt;
use liftbridge::testing::TestServer;
use liftbridge::{
    Client, ErrorKind, Event, Partitioning, ReceivedMessage, StartPosition, StopPosition,
    StreamOptions, SubscribeOptions,
};

/// Publishes `m0..m{n-1}` and returns the acks' reception timestamps (ns).
async fn fill(client: &Client, stream: &str, n: usize) -> Vec<SystemTime> {
    let mut times = Vec::new();
    for i in 0..n {
        let ack = client.publish(stream, format!("m{i}")).await.unwrap();
        times.push(ack.reception_timestamp());
    }
    times
}

fn offsets(msgs: &[ReceivedMessage]) -> Vec<i64> {
    msgs.iter().map(ReceivedMessage::offset).collect()
}

/// Reads until the subscription ends cleanly.
async fn drain<S>(sub: &mut S) -> Vec<ReceivedMessage>
where
    S: futures::Stream<Item = liftbridge::Result<ReceivedMessage>> + Unpin,
{
    let mut out = Vec::new();
    while let Some(item) = next(sub).await {
        out.push(item.unwrap_or_else(|e| panic!("error after {} messages: {e}", out.len())));
    }
    out
}

#[tokio::test]
async fn start_positions() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "s", 1).await;

    let mut new_only = client
        .subscribe("s", SubscribeOptions::new())
        .await
        .unwrap();
    let times = fill(&client, "s", 5).await;
    assert_eq!(offsets(&take(&mut new_only, 5).await), [0, 1, 2, 3, 4]);

    let cases = [
        (StartPosition::Earliest, 0),
        (StartPosition::Latest, 4),
        (StartPosition::Offset(2), 2),
        (StartPosition::Timestamp(times[3]), 3),
        (StartPosition::TimeDelta(Duration::from_secs(3600)), 0),
    ];
    for (start, first) in cases {
        let mut sub = client
            .subscribe("s", SubscribeOptions::new().start_at(start))
            .await
            .unwrap();
        let got = take(&mut sub, 1).await;
        assert_eq!(got[0].offset(), first, "{start:?}");
        assert_eq!(got[0].value(), &format!("m{first}").into_bytes()[..]);
    }

    // NewOnly after data: nothing old, the next new message only.
    let mut sub = client
        .subscribe("s", SubscribeOptions::new())
        .await
        .unwrap();
    client.publish("s", "m5").await.unwrap();
    assert_eq!(take(&mut sub, 1).await[0].offset(), 5);
}

#[tokio::test]
async fn stop_positions_end_the_stream_cleanly() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "s", 1).await;
    let times = fill(&client, "s", 5).await;
    let earliest = SubscribeOptions::new().start_at(StartPosition::Earliest);

    let mut sub = client
        .subscribe("s", earliest.clone().stop_at(StopPosition::Offset(2)))
        .await
        .unwrap();
    assert_eq!(offsets(&drain(&mut sub).await), [0, 1, 2]);

    let mut sub = client
        .subscribe("s", earliest.clone().stop_at(StopPosition::Latest))
        .await
        .unwrap();
    assert_eq!(offsets(&drain(&mut sub).await), [0, 1, 2, 3, 4]);

    let mut sub = client
        .subscribe(
            "s",
            earliest.clone().stop_at(StopPosition::Timestamp(times[1])),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&drain(&mut sub).await), [0, 1]);

    create(&client, "empty", 1).await;
    let mut sub = client
        .subscribe("empty", earliest.stop_at(StopPosition::Latest))
        .await
        .unwrap();
    assert!(
        drain(&mut sub).await.is_empty(),
        "an empty stream with a stop ends at once"
    );
}

#[tokio::test]
async fn reverse_and_isr_reads() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "s", 1).await;
    fill(&client, "s", 5).await;

    let mut sub = client
        .subscribe("s", SubscribeOptions::new().reverse(true))
        .await
        .unwrap();
    assert_eq!(offsets(&drain(&mut sub).await), [4, 3, 2, 1, 0]);

    let mut sub = client
        .subscribe(
            "s",
            SubscribeOptions::new()
                .reverse(true)
                .start_at(StartPosition::Offset(3))
                .stop_at(StopPosition::Offset(1)),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&drain(&mut sub).await), [3, 2, 1]);

    let mut sub = client
        .subscribe(
            "s",
            SubscribeOptions::new()
                .read_isr_replica(true)
                .start_at(StartPosition::Earliest)
                .stop_at(StopPosition::Latest),
        )
        .await
        .unwrap();
    assert_eq!(drain(&mut sub).await.len(), 5);
}

#[tokio::test]
async fn readonly_end_pause_and_deletion_are_distinct() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();

    create(&client, "ro", 1).await;
    fill(&client, "ro", 3).await;
    client.set_stream_readonly("ro", &[], true).await.unwrap();
    let mut sub = client
        .subscribe(
            "ro",
            SubscribeOptions::new().start_at(StartPosition::Earliest),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&take(&mut sub, 3).await), [0, 1, 2]);
    let err = next(&mut sub).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EndOfReadonlyPartition, "{err}");
    assert!(next(&mut sub).await.is_none());

    create(&client, "pa", 1).await;
    let mut sub = client
        .subscribe("pa", SubscribeOptions::new())
        .await
        .unwrap();
    client.pause_stream("pa", &[], false).await.unwrap();
    let err = next(&mut sub).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Paused, "{err}");
    assert!(next(&mut sub).await.is_none());
    // Subscribing to the paused partition is refused unless asked to resume it.
    let err = client
        .subscribe("pa", SubscribeOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Paused, "{err}");
    let mut sub = client
        .subscribe("pa", SubscribeOptions::new().resume(true))
        .await
        .unwrap();
    client.publish("pa", "after resume").await.unwrap();
    assert_eq!(take(&mut sub, 1).await[0].offset(), 0);

    create(&client, "del", 1).await;
    let mut sub = client
        .subscribe("del", SubscribeOptions::new())
        .await
        .unwrap();
    client.delete_stream("del").await.unwrap();
    let err = next(&mut sub).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StreamDeleted, "{err}");
    assert!(next(&mut sub).await.is_none());
}

#[tokio::test]
async fn setup_errors_come_from_subscribe() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "s", 2).await;
    let err = client
        .subscribe("nope", SubscribeOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream, "{err}");
    let err = client
        .subscribe("s", SubscribeOptions::new().partition(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchPartition, "{err}");
    let future = SystemTime::now() + Duration::from_secs(3600);
    let err = client
        .subscribe(
            "s",
            SubscribeOptions::new().stop_at(StopPosition::Timestamp(future)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = client
        .subscribe(
            "s",
            SubscribeOptions::new().start_at(StartPosition::Offset(-1)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// The server restarts (same port): the subscription resubscribes from the last offset + 1 by itself, with
/// no gap and no duplicate, and reports it as events.
#[tokio::test]
async fn resubscribes_after_server_restart() {
    let mut server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let mut events = client.events();
    create(&client, "r", 1).await;
    let mut sub = client
        .subscribe(
            "r",
            SubscribeOptions::new().start_at(StartPosition::Earliest),
        )
        .await
        .unwrap();
    fill(&client, "r", 5).await;
    assert_eq!(offsets(&take(&mut sub, 5).await), [0, 1, 2, 3, 4]);

    server.restart().await.unwrap();
    wait_event(&mut events, |e| {
        matches!(e, Event::Resubscribing { partition: 0, .. })
    })
    .await;
    for i in 5..10 {
        client.publish("r", format!("m{i}")).await.unwrap();
    }
    assert_eq!(offsets(&take(&mut sub, 5).await), [5, 6, 7, 8, 9]);
    let e = wait_event(&mut events, |e| matches!(e, Event::Resubscribed { .. })).await;
    assert!(
        matches!(
            e,
            Event::Resubscribed {
                offset: Some(5),
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn resubscribes_after_a_dropped_connection() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let mut events = client.events();
    create(&client, "k", 1).await;
    let mut sub = client
        .subscribe(
            "k",
            SubscribeOptions::new().start_at(StartPosition::Earliest),
        )
        .await
        .unwrap();
    fill(&client, "k", 3).await;
    assert_eq!(offsets(&take(&mut sub, 3).await), [0, 1, 2]);
    server.kill_connections();
    // Publishing right away could race the publish stream noticing the cut (the message would fail with
    // Disconnected, as it should); wait until both streams saw it.
    let (mut broken, mut resubscribed) = (false, false);
    while !(broken && resubscribed) {
        match wait_event(&mut events, |e| {
            matches!(
                e,
                Event::PublishStreamBroken { .. } | Event::Resubscribed { .. }
            )
        })
        .await
        {
            Event::PublishStreamBroken { .. } => broken = true,
            _ => resubscribed = true,
        }
    }
    fill(&client, "k", 3).await;
    assert_eq!(offsets(&take(&mut sub, 3).await), [3, 4, 5]);
}

#[tokio::test]
async fn gives_up_after_the_resubscribe_window() {
    let mut server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .resubscribe_window(Duration::from_millis(800))
        .request_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    create(&client, "g", 1).await;
    let mut sub = client
        .subscribe("g", SubscribeOptions::new())
        .await
        .unwrap();
    server.stop().await.unwrap();
    let err = next(&mut sub).await.unwrap().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("gave up resubscribing"), "{err}");
    assert!(next(&mut sub).await.is_none());
}

#[tokio::test]
async fn subscribe_all_merges_partitions() {
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .partitioning(Partitioning::RoundRobin)
        .connect()
        .await
        .unwrap();
    create(&client, "all", 3).await;
    fill(&client, "all", 30).await;
    let mut sub = client
        .subscribe_all(
            "all",
            SubscribeOptions::new()
                .start_at(StartPosition::Earliest)
                .stop_at(StopPosition::Latest),
        )
        .await
        .unwrap();
    assert_eq!(sub.partitions(), [0, 1, 2]);
    let got = drain(&mut sub).await;
    assert_eq!(got.len(), 30);
    for p in 0..3 {
        let per: Vec<i64> = got
            .iter()
            .filter(|m| m.partition() == p)
            .map(|m| m.offset())
            .collect();
        assert_eq!(per, (0..10).collect::<Vec<_>>(), "partition {p} in order");
    }
}

/// A small prefetch buffer holds the reader back instead of losing or reordering messages.
#[tokio::test]
async fn slow_consumer_with_small_prefetch() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "slow", 1).await;
    let mut acks = Vec::new();
    for i in 0..500 {
        acks.push(client.send("slow", format!("m{i}")).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
    let mut sub = client
        .subscribe(
            "slow",
            SubscribeOptions::new()
                .start_at(StartPosition::Earliest)
                .stop_at(StopPosition::Latest)
                .prefetch(2),
        )
        .await
        .unwrap();
    let mut expected = 0;
    while let Some(m) = next(&mut sub).await {
        assert_eq!(m.unwrap().offset(), expected);
        expected += 1;
        if expected % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(expected, 500);
}

/// Dropping a subscription ends the server-side stream: the partition, which must not auto-pause while it
/// has subscribers, auto-pauses once the subscription is dropped.
#[tokio::test]
async fn dropping_a_subscription_releases_the_server_stream() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    client
        .create_stream(
            StreamOptions::new("ap", "ap")
                .auto_pause_time(Duration::from_millis(300))
                .auto_pause_disable_if_subscribers(true),
        )
        .await
        .unwrap();
    let sub = client
        .subscribe("ap", SubscribeOptions::new())
        .await
        .unwrap();
    // Observed for well over the auto-pause time: the subscriber keeps the partition running.
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while tokio::time::Instant::now() < until {
        let p = client.fetch_stream_metadata("ap").await.unwrap();
        assert!(
            !p.partition(0).unwrap().is_paused(),
            "paused while subscribed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(sub);
    wait_until(
        "the partition to auto-pause after the subscription was dropped",
        || async {
            let p = client.fetch_stream_metadata("ap").await.unwrap();
            p.partition(0).unwrap().is_paused()
        },
    )
    .await;
}

#[tokio::test]
async fn closing_the_client_ends_subscriptions() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "c", 1).await;
    let mut sub = client
        .subscribe("c", SubscribeOptions::new())
        .await
        .unwrap();
    client.close().await;
    let err = next(&mut sub).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(next(&mut sub).await.is_none());
    let err = client
        .subscribe("c", SubscribeOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    let _ = sub.next().await;
}
