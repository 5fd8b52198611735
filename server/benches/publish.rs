//! End-to-end publish and subscribe through the gRPC API, standalone (embedded broker) versus the same server on
//! an external `nats-server`, measured back to back in one run.
//!
//! `cargo bench -p liftbridge-server --bench publish` (`PUBLISH_BENCH_SCALE=0.1` for a quick run;
//! `PUBLISH_BENCH_EXTERNAL=0` to skip the external nats-server deployment). Each workload runs 3 rounds per
//! deployment on a fresh server and data directory; the median is printed with the ratio standalone / external.
//! Workloads: pipelined `PublishAsync` (128 B, windows 256 and 10,000), the same with `streams.sync.policy:
//! always` (fsync before ack, window 10,000), synchronous `Publish` round trips (128 B; p50/p99), and
//! `Subscribe` of the whole stream from the earliest offset.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use tokio::sync::mpsc;
use tonic::transport::Channel;

#[path = "../tests/support/mod.rs"]
mod support;
use support::{NatsServer, TestServer};

#[derive(Clone, Copy, PartialEq)]
enum Deployment {
    Standalone,
    External,
}

/// A server of the given deployment (the test fixtures' `TestServer`, plus its nats-server for `External`).
struct Running {
    server: TestServer,
    _nats: Option<NatsServer>,
    _dir: tempfile::TempDir,
}

async fn start(deployment: Deployment, sync_always: bool) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let tweak = move |config: &mut liftbridge_server::config::Config| {
        if sync_always {
            config.streams.sync_policy = liftbridge_server::config::SyncPolicyKind::Always;
        }
    };
    let (server, nats) = match deployment {
        Deployment::External => {
            let nats = NatsServer::start();
            (
                TestServer::start(&nats.url, dir.path(), tweak).await,
                Some(nats),
            )
        }
        Deployment::Standalone => (TestServer::start_standalone(dir.path(), tweak).await, None),
    };
    Running {
        server,
        _nats: nats,
        _dir: dir,
    }
}

async fn create(client: &mut ApiClient<Channel>, name: &str) {
    let req = pb::CreateStreamRequest {
        subject: name.into(),
        name: name.into(),
        partitions: 1,
        ..Default::default()
    };
    client.create_stream(req).await.expect("create stream");
}

fn request(stream: &str, value: &Bytes, i: usize) -> pb::PublishRequest {
    pb::PublishRequest {
        stream: stream.into(),
        value: value.clone(),
        correlation_id: i.to_string(),
        expected_offset: -1,
        ..Default::default()
    }
}

/// Pipelined PublishAsync with at most `window` messages awaiting their ack; returns msgs/s.
async fn pipelined(client: &mut ApiClient<Channel>, n: usize, window: usize) -> f64 {
    let value = Bytes::from(vec![b'x'; 128]);
    let (tx, rx) = mpsc::channel(window);
    let mut responses = client
        .publish_async(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("publish_async")
        .into_inner();
    let started = Instant::now();
    let mut sent = 0;
    let mut acked = 0;
    while acked < n {
        while sent < n && sent - acked < window {
            tx.send(request("bench", &value, sent)).await.expect("send");
            sent += 1;
        }
        match responses.next().await {
            Some(Ok(resp)) if resp.async_error.is_none() => acked += 1,
            other => panic!("publish failed: {other:?}"),
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Synchronous Publish round trips; returns (p50, p99) in µs.
async fn round_trips(client: &mut ApiClient<Channel>, n: usize) -> (f64, f64) {
    let value = Bytes::from(vec![b'x'; 128]);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        client
            .publish(request("bench", &value, i))
            .await
            .expect("publish");
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (samples[n / 2], samples[n * 99 / 100])
}

/// Reads `n` messages from the earliest offset; returns msgs/s.
async fn subscribe_all(client: &mut ApiClient<Channel>, n: usize) -> f64 {
    let req = pb::SubscribeRequest {
        stream: "bench".into(),
        start_position: pb::StartPosition::Earliest as i32,
        ..Default::default()
    };
    let started = Instant::now();
    let mut stream = client.subscribe(req).await.expect("subscribe").into_inner();
    let _handshake = stream.next().await;
    for i in 0..n {
        let m = stream.next().await.expect("message").expect("ok");
        assert_eq!(m.offset, i as i64, "one message per offset, in order");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Default)]
struct Figures {
    pipelined: Vec<f64>,
    pipelined_10k: Vec<f64>,
    sync_always: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    subscribe: Vec<f64>,
}

async fn round(deployment: Deployment, n: usize, figures: &mut Figures) {
    let running = start(deployment, true).await;
    let mut c = running.server.client().await;
    create(&mut c, "bench").await;
    figures
        .sync_always
        .push(pipelined(&mut c, n, 10_000.min(n)).await);
    running.server.stop().await.expect("server stops");

    let running = start(deployment, false).await;
    let mut c = running.server.client().await;
    create(&mut c, "bench").await;
    figures.pipelined.push(pipelined(&mut c, n, 256).await);
    figures
        .pipelined_10k
        .push(pipelined(&mut c, n, 10_000.min(n)).await);
    let (p50, p99) = round_trips(&mut c, (n / 20).max(200)).await;
    figures.p50.push(p50);
    figures.p99.push(p99);
    figures.subscribe.push(subscribe_all(&mut c, 2 * n).await);
    running.server.stop().await.expect("server stops");
}

fn main() {
    let scale: f64 = std::env::var("PUBLISH_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = ((100_000.0 * scale) as usize).max(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let with_external = std::env::var("PUBLISH_BENCH_EXTERNAL").map_or(true, |v| v != "0");
    runtime.block_on(async {
        let mut standalone = Figures::default();
        let mut external = Figures::default();
        for r in 1..=3 {
            eprintln!("round {r}/3 ({n} messages)");
            round(Deployment::Standalone, n, &mut standalone).await;
            if with_external {
                round(Deployment::External, n, &mut external).await;
            }
        }
        if !with_external {
            external = Figures {
                pipelined: vec![f64::NAN],
                pipelined_10k: vec![f64::NAN],
                sync_always: vec![f64::NAN],
                p50: vec![f64::NAN],
                p99: vec![f64::NAN],
                subscribe: vec![f64::NAN],
            };
        }
        println!(
            "| workload (median of 3) | standalone (embedded NATS) | external nats-server | ratio |"
        );
        println!("|---|---|---|---|");
        let row = |name: &str, a: &[f64], b: &[f64], unit: &str| {
            let (a, b) = (median(a.to_vec()), median(b.to_vec()));
            println!("| {name} | {a:.0} {unit} | {b:.0} {unit} | {:.2} |", a / b);
        };
        row(
            "PublishAsync pipelined, 128 B, window 256",
            &standalone.pipelined,
            &external.pipelined,
            "msg/s",
        );
        row(
            "PublishAsync pipelined, 128 B, window 10000",
            &standalone.pipelined_10k,
            &external.pipelined_10k,
            "msg/s",
        );
        row(
            "PublishAsync pipelined, 128 B, window 10000, sync=always",
            &standalone.sync_always,
            &external.sync_always,
            "msg/s",
        );
        row(
            "Publish round trip p50, 128 B",
            &standalone.p50,
            &external.p50,
            "µs",
        );
        row(
            "Publish round trip p99, 128 B",
            &standalone.p99,
            &external.p99,
            "µs",
        );
        row(
            "Subscribe from earliest, 128 B",
            &standalone.subscribe,
            &external.subscribe,
            "msg/s",
        );
    });
}
