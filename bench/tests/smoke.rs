//! Smoke test of the `liftbridge-bench` binary: a few thousand messages through producer and consumer, against
//! a real Liftbridge server (in-process, loopback) and a real `nats-server -js`. Asserts counts and that every
//! message came back in order; never asserts timing.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use liftbridge::testing::TestServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_liftbridge-bench");
/// Longest one bench invocation may take here.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the bench binary with `args` and returns its JSON report; fails with its stderr otherwise.
async fn bench(args: &[&str]) -> Value {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .args(["--json", "--quiet"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("liftbridge-bench {args:?} did not finish in {RUN_TIMEOUT:?}"))
        .expect("run liftbridge-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "liftbridge-bench {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn assert_produced(report: &Value, messages: u64) {
    assert_eq!(report["mode"], "producer", "{report}");
    assert_eq!(report["messages"], messages, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["latency_us"]["samples"], messages, "{report}");
    assert!(
        report["msgs_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
}

fn assert_consumed_in_order(report: &Value, messages: u64) {
    assert_eq!(report["mode"], "consumer", "{report}");
    assert_eq!(report["messages"], messages, "{report}");
    assert_eq!(report["in_order"], true, "{report}");
    assert_eq!(report["order_violations"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_against_liftbridge() {
    let server = TestServer::builder()
        .without_proxy()
        .start()
        .await
        .expect("start server");
    let addr = server.addr().to_string();

    // Pipelined, one publisher, one partition: every message back in publish order.
    let produced = bench(&[
        "producer",
        "--addr",
        &addr,
        "--stream",
        "smoke",
        "--messages",
        "3000",
        "--window",
        "64",
    ])
    .await;
    assert_produced(&produced, 3000);
    let consumed = bench(&[
        "consumer",
        "--addr",
        &addr,
        "--stream",
        "smoke",
        "--messages",
        "3000",
    ])
    .await;
    assert_consumed_in_order(&consumed, 3000);

    // Batches from two publishers over two partitions: per partition and publisher in order, offsets
    // without gaps.
    let produced = bench(&[
        "producer",
        "--addr",
        &addr,
        "--stream",
        "smoke2",
        "--partitions",
        "2",
        "--publishers",
        "2",
        "--messages",
        "2000",
        "--pub-batch",
        "50",
    ])
    .await;
    assert_produced(&produced, 2000);
    let consumed = bench(&[
        "consumer",
        "--addr",
        &addr,
        "--stream",
        "smoke2",
        "--partitions",
        "2",
        "--messages",
        "2000",
    ])
    .await;
    assert_consumed_in_order(&consumed, 2000);

    // Fixed rate (latency from the scheduled send time).
    let produced = bench(&[
        "producer",
        "--addr",
        &addr,
        "--stream",
        "smoke3",
        "--messages",
        "300",
        "--rate",
        "3000",
        "--window",
        "8",
    ])
    .await;
    assert_produced(&produced, 300);

    // Asking for more than the stream holds is reported as a failure, not as a result.
    let out = tokio::process::Command::new(BIN)
        .args([
            "consumer",
            "--addr",
            &addr,
            "--stream",
            "smoke3",
            "--messages",
            "301",
            "--quiet",
        ])
        .output()
        .await
        .expect("run liftbridge-bench");
    assert!(
        !out.status.success(),
        "reading 301 of 300 messages must fail"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("300 of 301"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nats-server -js` on a random loopback port, killed (by its pid) when dropped.
struct JetStreamServer {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl JetStreamServer {
    fn start() -> JetStreamServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server must be installed (scripts/test installs it: apt-get install -y nats-server)");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("Listening for client connections on ")
                    .nth(1)
                    .and_then(|rest| rest.trim().rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(port) => port,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nats-server did not report its port within 10 s: {e}");
            }
        };
        JetStreamServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for JetStreamServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_against_jetstream() {
    let server = JetStreamServer::start();
    let url = server.url.as_str();
    let produced = bench(&[
        "producer",
        "--system",
        "jetstream",
        "--url",
        url,
        "--stream",
        "smoke",
        "--messages",
        "3000",
        "--window",
        "64",
        "--fresh",
    ])
    .await;
    assert_produced(&produced, 3000);
    assert_eq!(produced["system"], "jetstream");
    let produced = bench(&[
        "producer",
        "--system",
        "jetstream",
        "--url",
        url,
        "--stream",
        "smoke",
        "--messages",
        "500",
        "--pub-batch",
        "100",
        "--fresh",
    ])
    .await;
    assert_produced(&produced, 500);
    let consumed = bench(&[
        "consumer",
        "--system",
        "jetstream",
        "--url",
        url,
        "--stream",
        "smoke",
        "--messages",
        "500",
    ])
    .await;
    assert_consumed_in_order(&consumed, 500);
}

/// `floor-server` started as a process; killed (by its pid) when dropped.
struct FloorServer {
    child: tokio::process::Child,
    addr: String,
}

impl FloorServer {
    async fn start() -> FloorServer {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = tokio::process::Command::new(BIN)
            .args(["floor-server", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start floor-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(RUN_TIMEOUT, lines.next_line())
            .await
            .expect("floor-server printed its address in time")
            .expect("read floor-server output")
            .expect("floor-server printed a line");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        FloorServer { child, addr }
    }
}

impl FloorServer {
    /// Kills the process and waits for it to exit.
    async fn stop(mut self) {
        tokio::time::timeout(RUN_TIMEOUT, self.child.kill())
            .await
            .expect("floor-server exits in time")
            .expect("kill floor-server");
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Runs `floor-client` against `addr` and returns its JSON result.
async fn floor_client(addr: &str, messages: u64, window: u64) -> Value {
    let out = tokio::time::timeout(
        RUN_TIMEOUT,
        tokio::process::Command::new(BIN)
            .args(["floor-client", "--addr", addr, "--json"])
            .args(["--messages", &messages.to_string()])
            .args(["--window", &window.to_string()])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("floor-client finished in time")
    .expect("run floor-client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "floor-client failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_server_answers_the_client_and_the_bare_tonic_publisher() {
    let floor = FloorServer::start().await;
    // The real client against the floor: stream creation, leader discovery, publishes and acks, sync and
    // pipelined; every message is acked once.
    for window in ["1", "64"] {
        let report = bench(&[
            "producer",
            "--addr",
            &floor.addr,
            "--stream",
            "floor",
            "--messages",
            "2000",
            "--window",
            window,
            "--partitions",
            "2",
        ])
        .await;
        assert_produced(&report, 2000);
    }
    for window in [1, 64] {
        let result = floor_client(&floor.addr, 2000, window).await;
        assert_eq!(result["messages"], 2000, "{result}");
        assert_eq!(result["latency_us"]["samples"], 2000, "{result}");
    }
    // What the floor does not serve is refused with an error that says so (reading is not served).
    let consumer = tokio::process::Command::new(BIN)
        .args(["consumer", "--addr", &floor.addr, "--stream", "floor"])
        .args(["--messages", "10", "--quiet"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_TIMEOUT, consumer)
        .await
        .expect("the consumer finished in time")
        .expect("run consumer");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("floor server only answers"), "{stderr}");
    floor.stop().await;
}
