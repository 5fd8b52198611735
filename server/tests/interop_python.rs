//! Interop with independent clients: gufo-liftbridge (PyPI), a grpcio-tools client generated from our
//! `api.proto`, and plain NATS publishers from nats-py — all against a real server over real sockets.
//!
//! The Python environment is made by `scripts/test` (`target/pyenv`); `LIFTBRIDGE_TEST_PYTHON` overrides it.
//! Without it the tests fail under CI and are skipped (with a note) elsewhere.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use liftbridge_proto::pb;
use support::{NatsServer, TestServer, create_request};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("LIFTBRIDGE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/pyenv/bin/python"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: scripts/test creates it (python3 -m venv target/pyenv + pip install)",
            path.display()
        );
    }
    eprintln!(
        "note: skipping Python interop test, {} not found (run scripts/test to create it)",
        path.display()
    );
    None
}

fn run_script(python: &PathBuf, args: &[&str]) {
    let output = Command::new(python)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("ok") || stdout.contains("published"),
        "{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gufo_liftbridge_client() {
    let Some(python) = python() else { return };
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
    let script = workspace().join("server/tests/interop/gufo_smoke.py");
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || run_script(&python, &[script.to_str().unwrap(), &addr]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_tools_generated_client() {
    let Some(python) = python() else { return };
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
    let script = workspace().join("server/tests/interop/grpc_generated.py");
    let proto_dir = workspace().join("proto");
    let out_dir = dir.path().join("generated");
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        run_script(
            &python,
            &[
                script.to_str().unwrap(),
                proto_dir.to_str().unwrap(),
                out_dir.to_str().unwrap(),
                &addr,
            ],
        )
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_plain_publisher() {
    let Some(python) = python() else { return };
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&nats.url, dir.path(), |_| {}).await;
    let mut client = server.client().await;
    client
        .create_stream(create_request("py.plain", "py-plain", 1))
        .await
        .unwrap();
    let script = workspace().join("server/tests/interop/nats_plain.py");
    let url = nats.url.clone();
    tokio::task::spawn_blocking(move || {
        run_script(&python, &[script.to_str().unwrap(), &url, "py.plain", "50"])
    })
    .await
    .unwrap();
    let req = pb::SubscribeRequest {
        stream: "py-plain".into(),
        start_position: pb::StartPosition::Earliest as i32,
        ..Default::default()
    };
    let mut sub = client.subscribe(req).await.unwrap().into_inner();
    let mut got = Vec::new();
    while got.len() < 51 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(m);
    }
    assert_eq!(got[1].value.as_ref(), b"py-0");
    assert_eq!(got[1].reply_subject, "py.reply");
    assert_eq!(got[50].offset, 49);
}
