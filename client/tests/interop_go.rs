//! Interop: this client against the Go Liftbridge server.
//!
//! The binary comes from `LIFTBRIDGE_GO_BIN`, or `target/go-bin/liftbridge` in the workspace (build it with
//! `GOBIN=$PWD/target/go-bin go install github.com/liftbridge-io/liftbridge@v1.9.0`; when the module proxy
//! refuses `go install` for lack of a version list, `go mod download` the module and `go build` it from the
//! module cache). Without the binary the test prints why and passes, unless `LIFTBRIDGE_REQUIRE_GO_INTEROP`
//! is set.
//!
//! The server runs with `--embedded-nats`-style config (`nats.embedded: true` plus a generated nats-server
//! config on a free port) and `clustering.raft.bootstrap.seed: true`, in a temporary directory.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use liftbridge::{
    AckPolicy, Client, ErrorKind, Message, Partitioning, StartPosition, StopPosition,
    StreamOptions, SubscribeOptions,
};

fn go_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LIFTBRIDGE_GO_BIN") {
        return Some(PathBuf::from(path));
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/go-bin/liftbridge");
    path.exists().then_some(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Go server process, killed on drop.
struct GoServer {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_go(bin: &PathBuf) -> GoServer {
    let dir = tempfile::tempdir().unwrap();
    let (port, nats_port) = (free_port(), free_port());
    let nats_conf = dir.path().join("nats.conf");
    std::fs::write(&nats_conf, format!("host: 127.0.0.1\nport: {nats_port}\n")).unwrap();
    let config = dir.path().join("liftbridge.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nhost: 127.0.0.1\nport: {port}\ndata.dir: {data}\nlogging.level: warn\n\
             nats.embedded: true\nnats.embedded.config: {nats}\nnats.servers: [\"nats://127.0.0.1:{nats_port}\"]\n\
             clustering.raft.bootstrap.seed: true\n",
            data = dir.path().join("data").display(),
            nats = nats_conf.display(),
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    GoServer {
        child,
        addr: format!("127.0.0.1:{port}"),
        _dir: dir,
    }
}

#[tokio::test]
async fn client_suite_against_the_go_server() {
    let Some(bin) = go_binary() else {
        let why = "Go Liftbridge server not found (set LIFTBRIDGE_GO_BIN or build target/go-bin/liftbridge)";
        if std::env::var_os("LIFTBRIDGE_REQUIRE_GO_INTEROP").is_some() {
            panic!("{why}, and LIFTBRIDGE_REQUIRE_GO_INTEROP is set");
        }
        eprintln!("SKIPPED interop_go: {why}");
        return;
    };
    let server = start_go(&bin);
    // `connect` keeps trying until the server listens.
    let client = Client::builder([server.addr.as_str()])
        .connect_timeout(Duration::from_secs(30))
        .partitioning(Partitioning::Key)
        .connect()
        .await
        .expect("the Go server answers");

    // The metadata leader is elected shortly after start: retry creation until then.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client
            .create_stream_if_not_exists(StreamOptions::new("interop", "interop").partitions(2))
            .await
        {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("waiting for the Go server to elect itself: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create_stream on the Go server: {e}"),
        }
    }
    let err = client
        .create_stream(StreamOptions::new("interop", "interop"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StreamExists, "{err}");
    let info = client.wait_for_stream("interop", WAIT).await.unwrap();
    assert_eq!(info.partitions().len(), 2);

    // Publish with acks; keys route like go-liftbridge.
    let mut per_partition = [0i64; 2];
    for i in 0..10 {
        let key = format!("key-{i}");
        let expected = liftbridge_proto_partition(&key, 2);
        let ack = client
            .publish(
                "interop",
                Message::new(format!("v{i}"))
                    .key(key)
                    .header("n", i.to_string()),
            )
            .await
            .unwrap();
        assert_eq!(ack.partition(), Some(expected));
        assert_eq!(ack.offset(), per_partition[expected as usize]);
        per_partition[expected as usize] += 1;
    }
    // Pipelined publishes.
    let mut acks = Vec::new();
    for i in 0..100 {
        acks.push(
            client
                .send("interop", Message::new(format!("p{i}")).partition(0))
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    per_partition[0] += 100;
    let none = client
        .publish(
            "interop",
            Message::new("none")
                .partition(1)
                .ack_policy(AckPolicy::None),
        )
        .await
        .unwrap();
    assert_eq!(none.offset(), -1);
    per_partition[1] += 1;
    let by_subject = client
        .publish_to_subject("interop.1", Message::new("subject").header("h", "1"))
        .await
        .unwrap();
    assert!(by_subject.is_some());
    per_partition[1] += 1;

    // Subscribe from the start to the latest, per partition and merged.
    for p in 0..2 {
        let mut sub = client
            .subscribe(
                "interop",
                SubscribeOptions::new()
                    .partition(p)
                    .start_at(StartPosition::Earliest)
                    .stop_at(StopPosition::Latest),
            )
            .await
            .unwrap();
        let mut n = 0;
        while let Some(m) = next(&mut sub).await {
            let m = m.unwrap();
            assert_eq!(m.offset(), n);
            assert_eq!(m.partition(), p);
            n += 1;
        }
        assert_eq!(n, per_partition[p as usize], "partition {p}");
    }
    let mut sub = client
        .subscribe_all(
            "interop",
            SubscribeOptions::new()
                .start_at(StartPosition::Earliest)
                .stop_at(StopPosition::Offset(1)),
        )
        .await
        .unwrap();
    let got = take(&mut sub, 4).await;
    assert!(
        got.iter()
            .any(|m| m.header("n") == Some(&Bytes::from_static(b"0")) || m.offset() <= 1)
    );
    assert!(next(&mut sub).await.is_none());

    // Metadata.
    let md = client.fetch_metadata().await.unwrap();
    assert_eq!(md.brokers().len(), 1);
    assert_eq!(md.brokers()[0].addr(), server.addr);
    let p0 = client.fetch_partition_metadata("interop", 0).await.unwrap();
    assert_eq!(p0.high_watermark(), per_partition[0] - 1);
    assert_eq!(
        client.leader_of("interop", 1).await.unwrap().addr(),
        server.addr
    );

    // Readonly, then delete.
    client
        .set_stream_readonly("interop", &[1], true)
        .await
        .unwrap();
    let err = client
        .publish("interop", Message::new("x").partition(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Readonly, "{err}");
    client.delete_stream("interop").await.unwrap();
    let err = client.delete_stream("interop").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchStream, "{err}");
    client.close().await;
}

/// go-liftbridge's key partitioner, via the proto crate.
fn liftbridge_proto_partition(key: &str, partitions: u32) -> i32 {
    liftbridge::proto::hash::partition_for_key(key.as_bytes(), partitions).unwrap() as i32
}
