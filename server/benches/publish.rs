//! End-to-end publish and subscribe through the gRPC API, standalone (embedded broker) versus the same server on
//! an external `nats-server`, measured back to back in one run.
//!
//! `cargo bench -p liftbridge-server --bench publish` (`PUBLISH_BENCH_SCALE=0.1` for a quick run). Each workload
//! runs 3 rounds per deployment on a fresh server and data directory; the median is printed with the ratio
//! standalone / external. Workloads: pipelined `PublishAsync` (128 B, window 256), synchronous `Publish` round
//! trips (128 B; p50/p99), and `Subscribe` of the whole stream from the earliest offset.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use liftbridge_server::config::Config;
use liftbridge_server::server::{Server, ServerInfo};
use tokio::sync::mpsc;
use tonic::transport::Channel;

struct NatsServer {
    child: Child,
    url: String,
}

impl NatsServer {
    fn start() -> NatsServer {
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server must be installed (apt-get install -y nats-server)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                    let _ = tx.send(
                        rest.trim()
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.parse::<u16>().ok()),
                    );
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .flatten()
            .expect("nats-server port");
        NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Deployment {
    Standalone,
    External,
}

struct Running {
    addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _nats: Option<NatsServer>,
    _dir: tempfile::TempDir,
}

async fn start(deployment: Deployment) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = (deployment == Deployment::External).then(NatsServer::start);
    let mut config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        port: 0,
        ..Config::default()
    };
    config.host = "127.0.0.1".into();
    match &nats {
        Some(n) => config.nats.servers = vec![n.url.clone()],
        None => {
            config.nats.embedded_host = Some("127.0.0.1".into());
            config.nats.embedded_port = Some(0);
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<ServerInfo>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = shutdown_rx.await;
        };
        let ready = move |info| {
            let _ = ready_tx.send(info);
        };
        if let Err(e) = Server::run_with(listener, config, shutdown, ready).await {
            eprintln!("server failed: {e}");
        }
    });
    let info = ready_rx.await.expect("server ready");
    Running {
        addr: info.addr,
        shutdown: Some(shutdown),
        task,
        _nats: nats,
        _dir: dir,
    }
}

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn client(addr: std::net::SocketAddr) -> ApiClient<Channel> {
    ApiClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
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
    p50: Vec<f64>,
    p99: Vec<f64>,
    subscribe: Vec<f64>,
}

async fn round(deployment: Deployment, n: usize, figures: &mut Figures) {
    let server = start(deployment).await;
    let mut c = client(server.addr).await;
    create(&mut c, "bench").await;
    figures.pipelined.push(pipelined(&mut c, n, 256).await);
    let (p50, p99) = round_trips(&mut c, (n / 20).max(200)).await;
    figures.p50.push(p50);
    figures.p99.push(p99);
    figures.subscribe.push(subscribe_all(&mut c, n).await);
    server.stop().await;
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
    runtime.block_on(async {
        let mut standalone = Figures::default();
        let mut external = Figures::default();
        for r in 1..=3 {
            eprintln!("round {r}/3 ({n} messages)");
            round(Deployment::Standalone, n, &mut standalone).await;
            round(Deployment::External, n, &mut external).await;
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
