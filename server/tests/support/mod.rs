//! Shared test fixtures: real processes started on loopback with random ports and stopped by pid.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `nats-server` child process on a random loopback port, killed when dropped.
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// The client port.
    pub port: u16,
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p -1` (or on `port` if given) and waits until it listens.
    /// Panics with an install hint if the binary is missing: these tests must not silently skip.
    pub fn start() -> NatsServer {
        Self::start_on(None)
    }

    /// Starts a server on a specific port (used to restart one on the same address).
    pub fn start_on(port: Option<u16>) -> NatsServer {
        let port_arg = port.map(|p| p.to_string()).unwrap_or_else(|| "-1".into());
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server must be installed (scripts/test installs it: apt-get install -y nats-server)");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                    let port = rest
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("nats-server did not report its port within 10 s: {other:?}");
            }
        };
        NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
        }
    }

    /// The process id, for tests that signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server now (and waits for it to exit).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
