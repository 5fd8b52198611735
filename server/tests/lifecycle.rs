//! Lifecycle: restart recovery, NATS outages, auto-pause, retention in the background, and the `liftbridge`
//! binary shutting down gracefully on SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use support::{NatsServer, TestServer, create_request, wait_until};
use tonic::Code;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(10);

fn publish_request(stream: &str, value: Vec<u8>) -> pb::PublishRequest {
    pb::PublishRequest {
        stream: stream.into(),
        value: Bytes::from(value),
        expected_offset: -1,
        ..Default::default()
    }
}

async fn read_all(
    client: &mut ApiClient<Channel>,
    stream: &str,
    partition: i32,
) -> Vec<pb::Message> {
    let req = pb::SubscribeRequest {
        stream: stream.into(),
        partition,
        start_position: pb::StartPosition::Earliest as i32,
        stop_position: pb::StopPosition::StopLatest as i32,
        ..Default::default()
    };
    let mut sub = match client.subscribe(req).await {
        Ok(s) => s.into_inner(),
        Err(status) if status.code() == Code::ResourceExhausted => return Vec::new(),
        Err(status) => panic!("subscribe: {status:?}"),
    };
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("in time")
        {
            Some(Ok(m)) if m == pb::Message::default() => {}
            Some(Ok(m)) => out.push(m),
            Some(Err(status)) if status.code() == Code::ResourceExhausted => return out,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn restart_recovers_streams_offsets_and_flags() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
    let first_id = server.server_id.clone();
    let mut client = server.client().await;
    client
        .create_stream(create_request("r", "r", 2))
        .await
        .unwrap();
    client
        .create_stream(create_request("q", "q", 1))
        .await
        .unwrap();
    for i in 0..100u32 {
        let mut req = publish_request("r", i.to_be_bytes().to_vec());
        req.partition = (i % 2) as i32;
        client.publish(req).await.unwrap();
    }
    client
        .pause_stream(pb::PauseStreamRequest {
            name: "q".into(),
            partitions: vec![],
            resume_all: false,
        })
        .await
        .unwrap();
    client
        .set_stream_readonly(pb::SetStreamReadonlyRequest {
            name: "r".into(),
            partitions: vec![1],
            readonly: true,
        })
        .await
        .unwrap();
    server.stop().await.expect("graceful stop");

    let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
    assert_eq!(
        server.server_id, first_id,
        "the server id is sticky across restarts"
    );
    let mut client = server.client().await;
    let md = client
        .fetch_metadata(pb::FetchMetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    let r = md
        .stream_metadata
        .iter()
        .find(|s| s.name == "r")
        .expect("stream r recovered");
    let q = md
        .stream_metadata
        .iter()
        .find(|s| s.name == "q")
        .expect("stream q recovered");
    assert!(q.partitions[&0].paused, "paused state survives a restart");
    assert!(
        r.partitions[&1].readonly && !r.partitions[&0].readonly,
        "readonly state survives a restart"
    );
    assert_eq!(r.partitions[&0].high_watermark, 49);
    assert_eq!(r.partitions[&0].newest_offset, 49);

    let p0 = read_all(&mut client, "r", 0).await;
    assert_eq!(p0.len(), 50);
    assert!(p0.iter().enumerate().all(|(i, m)| m.offset == i as i64));
    assert_eq!(p0[1].value.as_ref(), 2u32.to_be_bytes());
    // New publishes continue the offsets.
    let ack = client
        .publish(publish_request("r", vec![1]))
        .await
        .unwrap()
        .into_inner()
        .ack
        .unwrap();
    assert_eq!(ack.offset, 50);
}

#[tokio::test]
async fn nats_outage_fails_publishes_then_recovers() {
    let mut nats = NatsServer::start();
    let port = nats.port;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
    let mut client = server.client().await;
    client
        .create_stream(create_request("o", "o", 1))
        .await
        .unwrap();
    client
        .publish(publish_request("o", b"before".to_vec()))
        .await
        .unwrap();

    nats.stop();
    let mut saw_unavailable = false;
    for _ in 0..50 {
        match client
            .publish(publish_request("o", b"during".to_vec()))
            .await
        {
            Err(status) if status.code() == Code::Unavailable => {
                saw_unavailable = true;
                break;
            }
            // Before the client notices the connection is gone the publish times out waiting for its ack.
            Err(status) if status.code() == Code::DeadlineExceeded => {}
            other => panic!("publish during the outage must fail, got {other:?}"),
        }
    }
    assert!(
        saw_unavailable,
        "publishes during an outage fail with Unavailable"
    );

    let _nats = NatsServer::start_on(Some(port));
    let mut recovered = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        match client
            .publish(publish_request("o", b"after".to_vec()))
            .await
        {
            Ok(resp) => {
                recovered = resp.into_inner().ack;
                break;
            }
            Err(status) => assert!(
                matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
                "unexpected {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ack = recovered.expect("publishing works again after NATS comes back");
    let values: Vec<_> = read_all(&mut client, "o", 0)
        .await
        .into_iter()
        .map(|m| m.value)
        .collect();
    assert_eq!(values.first().map(|v| v.as_ref()), Some(&b"before"[..]));
    assert_eq!(values.last().map(|v| v.as_ref()), Some(&b"after"[..]));
    assert_eq!(
        ack.offset as usize,
        values.len() - 1,
        "one offset per stored message"
    );
}

#[tokio::test]
async fn auto_pause_and_background_retention() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
    let mut client = server.client().await;

    let mut req = create_request("ap", "ap", 1);
    req.auto_pause_time = Some(pb::NullableInt64 { value: 300 });
    client.create_stream(req).await.unwrap();
    client
        .publish(publish_request("ap", b"x".to_vec()))
        .await
        .unwrap();
    let mut paused = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !paused && tokio::time::Instant::now() < deadline {
        let md = client.fetch_metadata(pb::FetchMetadataRequest {
            streams: vec!["ap".into()],
            groups: vec![],
        });
        paused = md.await.unwrap().into_inner().stream_metadata[0].partitions[&0].paused;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(paused, "an idle partition pauses itself");
    let ack = client
        .publish(publish_request("ap", b"y".to_vec()))
        .await
        .unwrap()
        .into_inner()
        .ack
        .unwrap();
    assert_eq!(ack.offset, 1, "a publish resumes it without losing data");

    // Retention by messages, run by the background cleaner.
    let mut req = create_request("ret", "ret", 1);
    req.retention_max_messages = Some(pb::NullableInt64 { value: 10 });
    req.segment_max_bytes = Some(pb::NullableInt64 { value: 1024 });
    req.cleaner_interval = Some(pb::NullableInt64 { value: 100 });
    client.create_stream(req).await.unwrap();
    for i in 0..200u32 {
        client
            .publish(publish_request("ret", vec![i as u8; 64]))
            .await
            .unwrap();
    }
    let mut oldest = 0;
    let ok = wait_until_async(
        WAIT,
        || {
            let mut client = client.clone();
            async move {
                let req = pb::SubscribeRequest {
                    stream: "ret".into(),
                    start_position: pb::StartPosition::Earliest as i32,
                    ..Default::default()
                };
                let mut sub = client.subscribe(req).await.unwrap().into_inner();
                let _handshake = sub.next().await;
                sub.next().await.unwrap().unwrap().offset
            }
        },
        |o| {
            oldest = o;
            o > 100
        },
    )
    .await;
    assert!(
        ok,
        "retention deleted old segments in the background (oldest offset is {oldest})"
    );
}

/// Polls an async probe until `done` accepts its value or `timeout` passes.
async fn wait_until_async<T, F, Fut>(
    timeout: Duration,
    mut probe: F,
    mut done: impl FnMut(T) -> bool,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done(probe().await) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn binary_starts_serves_and_stops_on_sigterm() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_liftbridge"))
        .args([
            "-n",
            &nats.url,
            "-p",
            "0",
            "-d",
            dir.path().to_str().unwrap(),
            "--host",
            "127.0.0.1",
        ])
        .args(["--id", "bin-test", "-l", "info"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start liftbridge");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("liftbridge is ready")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                let _ = tx.send(
                    addr.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server reports it is ready");
    let mut client = ApiClient::connect(format!("http://{addr}")).await.unwrap();
    client
        .create_stream(create_request("bin", "bin", 1))
        .await
        .unwrap();
    client
        .publish(publish_request("bin", b"x".to_vec()))
        .await
        .unwrap();
    let md = client
        .fetch_metadata(pb::FetchMetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.brokers[0].id, "bin-test");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = wait_until(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    })
    .await;
    if !exited {
        let _ = child.kill();
        panic!("liftbridge did not exit on SIGTERM");
    }
    let code = child.wait().unwrap();
    assert!(code.success(), "graceful shutdown exits 0, got {code:?}");
    assert!(dir.path().join("streams/bin/0").exists());
}

#[tokio::test]
async fn missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_liftbridge"))
        .args([
            "-p",
            "0",
            "-d",
            dir.path().to_str().unwrap(),
            "--config",
            "/nonexistent/liftbridge.yaml",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/liftbridge.yaml"), "{stderr}");
}

#[tokio::test]
async fn shutdown_ends_open_streams_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_standalone(dir.path(), |_| {}).await;
    let mut client = server.client().await;
    client
        .create_stream(create_request("open", "open", 1))
        .await
        .unwrap();
    let req = pb::SubscribeRequest {
        stream: "open".into(),
        start_position: pb::StartPosition::NewOnly as i32,
        ..Default::default()
    };
    let mut sub = client.subscribe(req).await.unwrap().into_inner();
    let _handshake = sub.next().await.unwrap().unwrap();
    let (_keep_open, rx) = tokio::sync::mpsc::channel::<pb::PublishRequest>(1);
    let mut session = client
        .publish_async(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("the server stops within 5 s with streams open")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let end = tokio::time::timeout(WAIT, sub.next()).await.unwrap();
    assert!(
        matches!(end, Some(Err(ref s)) if s.code() == Code::Unavailable) || end.is_none(),
        "{end:?}"
    );
    let end = tokio::time::timeout(WAIT, session.next()).await.unwrap();
    assert!(matches!(end, Some(Err(_)) | None), "{end:?}");
}

#[tokio::test]
async fn stops_promptly_when_nats_is_already_gone() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
    let mut client = server.client().await;
    client
        .create_stream(create_request("gone", "gone", 1))
        .await
        .unwrap();
    nats.stop();
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("the server stops within 20 s although NATS is unreachable")
        .unwrap();
}
