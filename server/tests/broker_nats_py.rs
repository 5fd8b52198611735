//! The embedded broker against a second independent client: nats-py (Python). A Python script publishes,
//! subscribes (wildcards, queue groups, UNSUB max, headers), requests a service the Rust side serves in-process,
//! gets a no-responders error, and answers a request the Rust side makes through the in-process bus.
//!
//! Needs a Python with `nats-py`: `LIFTBRIDGE_TEST_PYTHON` (which `scripts/test` sets to its `target/pyenv`),
//! else `target/pyenv`, else `python3` (`pip install nats-py`). Without one the test is skipped with a note,
//! except when the `CI` environment variable is set: then it fails, so CI cannot pass without running it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_server::broker::{BrokerConfig, EmbeddedBroker};
use liftbridge_server::bus::Bus;

const WAIT: Duration = Duration::from_secs(20);

const SCRIPT: &str = r#"
import asyncio
import sys

import nats
from nats.errors import NoRespondersError, TimeoutError


async def main(url):
    nc = await nats.connect(url, max_reconnect_attempts=0)
    assert nc.max_payload == 262144, nc.max_payload

    # Publish and subscribe with a wildcard and headers.
    sub = await nc.subscribe("py.>")
    await nc.publish("py.hello", b"world", headers={"X-Lang": "python"})
    msg = await sub.next_msg(timeout=5)
    assert msg.subject == "py.hello" and msg.data == b"world", msg
    assert msg.headers and msg.headers.get("X-Lang") == "python", msg.headers
    await sub.unsubscribe()

    # Request a service the Rust side serves in-process.
    resp = await nc.request("rust.upper", b"shout", timeout=5)
    assert resp.data == b"SHOUT", resp.data

    # Nobody listens: no-responders, not a timeout.
    try:
        await nc.request("nobody.here", b"", timeout=5)
        raise AssertionError("expected no responders")
    except NoRespondersError:
        pass

    # Queue group: each message once.
    got = {"a": 0, "b": 0}

    def counter(name):
        async def cb(m):
            got[name] += 1
        return cb

    await nc.subscribe("py.work", queue="workers", cb=counter("a"))
    await nc.subscribe("py.work", queue="workers", cb=counter("b"))
    await nc.flush()
    for i in range(200):
        await nc.publish("py.work", str(i).encode())
    await nc.flush()
    for _ in range(100):
        if got["a"] + got["b"] == 200:
            break
        await asyncio.sleep(0.05)
    assert got["a"] + got["b"] == 200, got

    # UNSUB max: only two of five.
    limited = await nc.subscribe("py.limited")
    await limited.unsubscribe(limit=2)
    for i in range(5):
        await nc.publish("py.limited", str(i).encode())
    await nc.flush()
    assert (await limited.next_msg(timeout=5)).data == b"0"
    assert (await limited.next_msg(timeout=5)).data == b"1"

    # Serve a request from the Rust side, then finish when told to.
    done = asyncio.Event()

    async def serve(m):
        await nc.publish(m.reply, b"pong:" + m.data)

    async def finish(m):
        done.set()

    await nc.subscribe("py.svc", cb=serve)
    await nc.subscribe("py.done", cb=finish)
    await nc.flush()
    print("READY", flush=True)
    await asyncio.wait_for(done.wait(), 15)
    await nc.drain()
    print("OK", flush=True)


asyncio.run(main(sys.argv[1]))
"#;

/// The Python to use: `LIFTBRIDGE_TEST_PYTHON` (set by `scripts/test`), else the workspace's `target/pyenv`,
/// else `python3` from the PATH; `None` if it cannot import nats-py.
fn python_with_nats_py() -> Option<PathBuf> {
    let pyenv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
    let python = std::env::var_os("LIFTBRIDGE_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| pyenv.exists().then_some(pyenv))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&python)
        .args(["-c", "import nats"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_client_talks_to_the_embedded_broker() {
    let Some(python) = python_with_nats_py() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "Python with nats-py is required in CI (scripts/test makes target/pyenv; or set \
                 LIFTBRIDGE_TEST_PYTHON, or pip install nats-py)"
            );
        }
        eprintln!(
            "note: skipping the nats-py test: no Python with nats-py (LIFTBRIDGE_TEST_PYTHON, target/pyenv, \
             or python3 + pip install nats-py)"
        );
        return;
    };
    let broker = EmbeddedBroker::start(
        BrokerConfig {
            host: "127.0.0.1".into(),
            port: 0,
            max_payload: 256 * 1024,
            ..BrokerConfig::default()
        },
        None,
    )
    .await
    .expect("broker starts");
    let bus = broker.bus();

    // An in-process service for Python to call, and an in-process observer of Python's publishes.
    let mut service = bus.subscribe("rust.upper".into(), None).await.unwrap();
    let responder = bus.clone();
    tokio::spawn(async move {
        while let Some(request) = service.next().await {
            if let Some(reply) = request.reply {
                let upper = Bytes::from(request.payload.to_ascii_uppercase());
                responder
                    .publish(reply, None, Vec::new(), upper)
                    .await
                    .unwrap();
            }
        }
    });
    let mut observer = bus.subscribe("py.hello".into(), None).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(broker.client_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Python interpreter runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());

    let mut expect_line = async |want: &str| -> Result<(), String> {
        match tokio::time::timeout(WAIT, lines.recv()).await {
            Ok(Some(line)) if line == want => Ok(()),
            other => Err(format!("expected {want:?} from the script, got {other:?}")),
        }
    };
    let result: Result<(), String> = async {
        expect_line("READY").await?;
        let seen = tokio::time::timeout(WAIT, observer.next())
            .await
            .map_err(|_| "Python's publish never reached the in-process subscriber".to_string())?
            .ok_or("observer ended")?;
        if seen.payload != Bytes::from_static(b"world")
            || seen.headers != [("X-Lang".to_string(), "python".to_string())]
        {
            return Err(format!(
                "unexpected in-process view of Python's message: {seen:?}"
            ));
        }
        let reply = bus
            .request("py.svc".into(), Bytes::from_static(b"ping"), WAIT)
            .await
            .map_err(|e| format!("request to the Python service failed: {e}"))?;
        if reply.payload != Bytes::from_static(b"pong:ping") {
            return Err(format!("unexpected reply {reply:?}"));
        }
        bus.publish("py.done".into(), None, Vec::new(), Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        expect_line("OK").await
    }
    .await;

    if result.is_err() {
        let _ = child.kill();
    }
    // Never leave the script running: wait for it with a deadline, then kill it.
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                return child.wait();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
    .unwrap();
    let stderr = errors.join().unwrap_or_default();
    if let Err(message) = result {
        panic!("{message}\nscript exit: {status}\nscript stderr:\n{stderr}");
    }
    assert!(status.success(), "script exit: {status}\nstderr:\n{stderr}");
    broker.shutdown().await;
}
