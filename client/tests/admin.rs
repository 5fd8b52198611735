//! Connecting, stream administration, metadata and its helpers, events.

mod common;

use std::time::Duration;

use common::*;
use liftbridge::testing::TestServer;
use liftbridge::{Client, ErrorKind, Event, StreamOptions};

#[tokio::test]
async fn create_exists_and_delete() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    client
        .create_stream(StreamOptions::new("orders.*", "orders").partitions(2))
        .await
        .unwrap();
    let err = client
        .create_stream(StreamOptions::new("orders.*", "orders"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StreamExists);
    assert!(
        err.to_string().contains("create_stream_if_not_exists"),
        "{err}"
    );
    assert!(
        !client
            .create_stream_if_not_exists(StreamOptions::new("orders.*", "orders"))
            .await
            .unwrap()
    );
    let info = client.fetch_stream_metadata("orders").await.unwrap();
    assert_eq!(info.subject(), "orders.*");
    assert_eq!(info.partitions().len(), 2);
    assert!(info.is_ready());
    assert!(info.creation_time() > std::time::UNIX_EPOCH);

    client.delete_stream("orders").await.unwrap();
    let err = client.delete_stream("orders").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream, "{err}");
    let err = client.fetch_stream_metadata("orders").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream);
    assert!(
        client
            .create_stream_if_not_exists(StreamOptions::new("orders.*", "orders"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn every_stream_option_is_accepted() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let opts = StreamOptions::new("full", "full")
        .group("workers")
        .replication_factor(1)
        .partitions(3)
        .retention_max_bytes(1 << 30)
        .retention_max_messages(1_000_000)
        .retention_max_age(Duration::from_secs(3600))
        .cleaner_interval(Duration::from_secs(60))
        .segment_max_bytes(1 << 20)
        .segment_max_age(Duration::from_secs(600))
        .compact_enabled(true)
        .compact_max_goroutines(2)
        .auto_pause_time(Duration::from_secs(600))
        .auto_pause_disable_if_subscribers(true)
        .min_isr(1)
        .optimistic_concurrency_control(false)
        .encryption(false);
    client.create_stream(opts).await.unwrap();
    assert_eq!(client.partition_count("full").await.unwrap(), 3);
    client
        .create_stream(StreamOptions::new("all", "all").max_replication())
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_requests_are_typed() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let err = client
        .create_stream(StreamOptions::new("s", ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = client
        .create_stream(StreamOptions::new("s", "bad.name"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = client
        .create_stream(StreamOptions::new("s", "big").replication_factor(3))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = client
        .create_stream(StreamOptions::new("s", "enc").encryption(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
    let err = client.pause_stream("nope", &[], false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream, "{err}");
    create(&client, "p", 1).await;
    let err = client.pause_stream("p", &[4], false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchPartition, "{err}");
    let err = client
        .set_stream_readonly("nope", &[], true)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream, "{err}");
}

#[tokio::test]
async fn pause_readonly_and_partition_metadata() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "m", 2).await;
    for i in 0..3 {
        client.publish("m", format!("m{i}")).await.unwrap();
    }
    let p = client.fetch_partition_metadata("m", 0).await.unwrap();
    assert_eq!(p.high_watermark(), 2);
    assert_eq!(p.newest_offset(), 2);
    assert_eq!(p.leader(), server.server_id().unwrap());
    assert_eq!(p.isr(), [server.server_id().unwrap().to_string()]);
    assert!(p.messages_received().latest().is_some());
    let err = client.fetch_partition_metadata("m", 9).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchPartition, "{err}");
    let err = client.fetch_partition_metadata("zz", 0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream, "{err}");

    client.pause_stream("m", &[1], true).await.unwrap();
    let info = client.fetch_stream_metadata("m").await.unwrap();
    assert!(!info.partition(0).unwrap().is_paused());
    assert!(info.partition(1).unwrap().is_paused());
    assert!(info.partition(1).unwrap().paused_at().first().is_some());
    // Publishing resumes a paused partition.
    client
        .publish("m", liftbridge::Message::new("x").partition(1))
        .await
        .unwrap();
    let info = client.fetch_stream_metadata("m").await.unwrap();
    assert!(!info.partition(1).unwrap().is_paused());

    client.set_stream_readonly("m", &[], true).await.unwrap();
    let info = client.fetch_stream_metadata("m").await.unwrap();
    assert!(info.partitions().values().all(|p| p.is_readonly()));
    client.set_stream_readonly("m", &[], false).await.unwrap();
    let info = client.fetch_stream_metadata("m").await.unwrap();
    assert!(info.partitions().values().all(|p| !p.is_readonly()));
}

#[tokio::test]
async fn metadata_helpers() {
    let server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .metadata_refresh_interval(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let md = client.fetch_metadata().await.unwrap();
    assert_eq!(md.brokers().len(), 1);
    let broker = &md.brokers()[0];
    assert_eq!(broker.addr(), server.addr().to_string());
    assert_eq!(Some(broker.id()), server.server_id());

    // Another client creates a stream; the periodic refresh brings it into this client's cache.
    let other = server.client().await.unwrap();
    create(&other, "seen", 4).await;
    wait_until("the background refresh to see the stream", || async {
        client.metadata().has_stream("seen")
    })
    .await;
    assert_eq!(client.metadata().partition_count("seen"), Some(4));
    assert_eq!(client.partition_count("seen").await.unwrap(), 4);
    let leader = client.leader_of("seen", 3).await.unwrap();
    assert_eq!(leader.addr(), server.addr().to_string());
    let err = client.partition_count("unseen").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream);
    let err = client.leader_of("seen", 4).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchPartition);
}

#[tokio::test]
async fn wait_for_stream_sees_a_stream_created_elsewhere() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let other = server.client().await.unwrap();
    let creator = tokio::spawn(async move {
        other
            .wait_for_stream("later", Duration::from_millis(50))
            .await
            .unwrap_err();
        create(&other, "later", 2).await;
    });
    let info = client
        .wait_for_stream("later", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(info.partitions().len(), 2);
    creator.await.unwrap();
    let err = client
        .wait_for_stream("never", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn connect_succeeds_if_any_seed_answers() {
    let server = TestServer::start().await.unwrap();
    // A socket bound but never listening: its port refuses connections for as long as the test holds it, so
    // no other test can take it over.
    let dead_socket = tokio::net::TcpSocket::new_v4().unwrap();
    dead_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = dead_socket.local_addr().unwrap().to_string();
    let client = Client::builder([dead.clone(), server.addr().to_string()])
        .connect()
        .await
        .unwrap();
    create(&client, "ok", 1).await;

    let started = tokio::time::Instant::now();
    let err = Client::builder([dead.as_str()])
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&dead), "names the address: {err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let err = Client::builder(Vec::<String>::new())
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = Client::connect(["host:notaport"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

/// Connection events: a server that goes away is reported, and reported again when it is back.
#[tokio::test]
async fn connection_events() {
    let mut server = TestServer::start().await.unwrap();
    let client = server
        .client_builder()
        .request_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    client.fetch_metadata().await.unwrap();
    wait_event(&mut events, |e| {
        matches!(e, Event::MetadataRefreshed { brokers: 1, .. })
    })
    .await;
    server.stop().await.unwrap();
    let err = client.fetch_metadata().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let addr = server.addr().to_string();
    wait_event(
        &mut events,
        |e| matches!(e, Event::Disconnected { addr: a, .. } if *a == addr),
    )
    .await;
    server.restart().await.unwrap();
    client.fetch_metadata().await.unwrap();
    wait_event(
        &mut events,
        |e| matches!(e, Event::Connected { addr: a } if *a == addr),
    )
    .await;
    client.close().await;
    wait_event(&mut events, |e| matches!(e, Event::Closed)).await;
}

/// A client keeps working across a server restart (same port): RPCs retry through the outage.
#[tokio::test]
async fn rpcs_retry_through_a_restart() {
    let mut server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "x", 1).await;
    server.stop().await.unwrap();
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.fetch_stream_metadata("x").await })
    };
    server.restart().await.unwrap();
    let info = pending.await.unwrap().unwrap();
    assert_eq!(info.name(), "x");
}
