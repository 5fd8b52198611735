//! Client benchmarks against an in-process standalone server (embedded NATS, loopback, no proxy):
//! publish round trip, pipelined publishing with a window of 256, and subscribe throughput over 100k messages.
//!
//! ```sh
//! CARGO_TARGET_DIR=target-client cargo bench -p liftbridge --bench client
//! ```
//!
//! Server and client share the process and the machine's cores, so the figures are end-to-end figures of
//! the pair; they bound the client's cost from above.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use liftbridge::proto::pb;
use liftbridge::proto::pb::api_client::ApiClient;
use liftbridge::testing::TestServer;
use liftbridge::{Client, StartPosition, StopPosition, StreamOptions, SubscribeOptions};

const PAYLOAD: usize = 128;
const WINDOW: usize = 256;
const PIPELINED_BATCH: usize = 10_000;
const SUBSCRIBE_MESSAGES: usize = 100_000;

fn payload() -> Bytes {
    Bytes::from(vec![b'x'; PAYLOAD])
}

/// Publishes `n` messages keeping up to `window` acks outstanding.
async fn pipelined(client: &Client, stream: &str, n: usize, window: usize, value: &Bytes) {
    let mut acks = VecDeque::with_capacity(window);
    for _ in 0..n {
        if acks.len() >= window
            && let Some(ack) = acks.pop_front()
        {
            let ack: liftbridge::AckFuture = ack;
            ack.await.expect("ack");
        }
        acks.push_back(client.send(stream, value.clone()).await.expect("send"));
    }
    for ack in acks {
        ack.await.expect("ack");
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (server, client) = rt.block_on(async {
        let server = TestServer::builder()
            .without_proxy()
            .start()
            .await
            .expect("server");
        let client = server
            .client_builder()
            .max_in_flight(WINDOW)
            .connect()
            .await
            .expect("client");
        for name in ["rtt", "pipelined", "read"] {
            client
                .create_stream(StreamOptions::new(name, name))
                .await
                .expect("create");
        }
        (server, client)
    });
    let value = payload();

    let mut group = c.benchmark_group("publish");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    group.bench_function("round_trip_128B", |b| {
        b.to_async(&rt).iter(|| async {
            client.publish("rtt", value.clone()).await.expect("publish");
        })
    });
    group.throughput(Throughput::Elements(PIPELINED_BATCH as u64));
    group.bench_function("pipelined_window_256_128B", |b| {
        b.to_async(&rt)
            .iter(|| pipelined(&client, "pipelined", PIPELINED_BATCH, WINDOW, &value))
    });
    // The window as large as the batch: comparable with the raw gRPC stream below.
    let unbounded = rt.block_on(
        server
            .client_builder()
            .max_in_flight(PIPELINED_BATCH)
            .connect(),
    );
    let unbounded = unbounded.expect("client");
    group.bench_function("pipelined_window_10000_128B", |b| {
        b.to_async(&rt).iter(|| {
            pipelined(
                &unbounded,
                "pipelined",
                PIPELINED_BATCH,
                PIPELINED_BATCH,
                &value,
            )
        })
    });
    // The same load through a bare generated gRPC client (no window, no correlation bookkeeping): the
    // floor the client's own overhead is measured against.
    let addr = server.addr();
    group.bench_function("raw_grpc_publish_async_128B", |b| {
        b.to_async(&rt).iter(|| async {
            let mut api = ApiClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            let value = value.clone();
            let requests =
                futures::stream::iter((0..PIPELINED_BATCH).map(move |i| pb::PublishRequest {
                    value: value.clone(),
                    stream: "pipelined".into(),
                    correlation_id: i.to_string(),
                    expected_offset: -1,
                    ..Default::default()
                }));
            let mut responses = api
                .publish_async(requests)
                .await
                .expect("stream")
                .into_inner();
            let mut n = 0;
            while n < PIPELINED_BATCH {
                responses.message().await.expect("response").expect("open");
                n += 1;
            }
        })
    });
    group.finish();

    rt.block_on(pipelined(
        &client,
        "read",
        SUBSCRIBE_MESSAGES,
        WINDOW,
        &value,
    ));
    let mut group = c.benchmark_group("subscribe");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(SUBSCRIBE_MESSAGES as u64));
    group.bench_function("read_100k_128B", |b| {
        b.to_async(&rt).iter(|| async {
            let mut sub = client
                .subscribe(
                    "read",
                    SubscribeOptions::new()
                        .start_at(StartPosition::Earliest)
                        .stop_at(StopPosition::Latest),
                )
                .await
                .expect("subscribe");
            let mut n = 0;
            while let Some(m) = sub.next().await {
                m.expect("message");
                n += 1;
            }
            assert_eq!(n, SUBSCRIBE_MESSAGES);
        })
    });
    group.finish();

    rt.block_on(async {
        client.close().await;
        drop(server);
    });
}

criterion_group!(client_benches, benches);
criterion_main!(client_benches);
