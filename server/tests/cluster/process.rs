//! Liftbridge servers as child processes (the `liftbridge` binary), so tests can SIGKILL them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use liftbridge_proto::pb::api_client::ApiClient;
use tonic::transport::Channel;

/// A `liftbridge` child process; killed (SIGKILL) when dropped.
pub struct Proc {
    child: Option<Child>,
    /// Server id.
    pub id: String,
    /// gRPC address.
    pub addr: std::net::SocketAddr,
    /// Data directory.
    pub dir: PathBuf,
    nats_url: String,
    namespace: String,
}

impl Proc {
    /// Starts server `id` on `nats_url` (seed when `seed`), with short clustering timeouts, and waits until it
    /// serves.
    pub fn start(nats_url: &str, namespace: &str, dir: &Path, id: &str, seed: bool) -> Proc {
        let mut proc = Proc {
            child: None,
            id: id.to_string(),
            addr: "127.0.0.1:1".parse().unwrap(),
            dir: dir.to_path_buf(),
            nats_url: nats_url.to_string(),
            namespace: namespace.to_string(),
        };
        proc.spawn(seed);
        proc
    }

    fn spawn(&mut self, seed: bool) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_liftbridge"));
        cmd.args([
            "--id",
            &self.id,
            "--host",
            "127.0.0.1",
            "-p",
            "0",
            "-n",
            &self.nats_url,
        ])
        .arg("-d")
        .arg(&self.dir)
        .args(["--ns", &self.namespace, "-l", "info"])
        .env("LIFTBRIDGE_LISTEN", "127.0.0.1:0")
        .env("LIFTBRIDGE_CLUSTERING_REPLICA_MAX_LEADER_TIMEOUT", "1500ms")
        .env("LIFTBRIDGE_CLUSTERING_REPLICA_MAX_LAG_TIME", "1500ms")
        .env("LIFTBRIDGE_CLUSTERING_REPLICA_MAX_IDLE_WAIT", "300ms")
        .env("LIFTBRIDGE_CLUSTERING_REPLICA_FETCH_TIMEOUT", "1s")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if seed {
            cmd.arg("--raft-bootstrap-seed");
        }
        let mut child = cmd.spawn().expect("spawn liftbridge");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let id = self.id.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("liftbridge is ready")
                    && let Some(addr) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                {
                    let _ = tx.send(Ok(addr));
                }
                if line.contains("ERROR") || std::env::var_os("LIFTBRIDGE_TEST_LOGS").is_some() {
                    eprintln!("[{id}] {line}");
                }
            }
            let _ = tx.send(Err(()));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addr)) => self.addr = addr,
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!("{} did not start: {other:?} {status:?}", self.id);
            }
        }
        self.child = Some(child);
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on its data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(false);
    }

    /// A gRPC client.
    pub async fn client(&self) -> ApiClient<Channel> {
        ApiClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect gRPC")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
