//! Cluster fixtures: several liftbridge servers in this process sharing one NATS (a real `nats-server` or one
//! server's embedded broker), with short timeouts so failures are detected quickly.
#![allow(dead_code)]

pub mod checker;
pub mod process;

use std::time::Duration;

use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use liftbridge_server::config::Config;
use tonic::transport::Channel;

use crate::support::TestServer;

/// Short clustering timeouts for tests.
pub fn fast(config: &mut Config) {
    config.clustering.replica_max_leader_timeout = Duration::from_millis(1500);
    config.clustering.replica_max_lag_time = Duration::from_millis(1500);
    config.clustering.replica_max_idle_wait = Duration::from_millis(300);
    config.clustering.replica_fetch_timeout = Duration::from_millis(1000);
}

/// Starts server `id` on `nats_url` with its data in `dir`.
pub async fn start(
    nats_url: &str,
    dir: &std::path::Path,
    id: &str,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let id = id.to_string();
    TestServer::start(nats_url, dir, move |c| {
        c.clustering.server_id = Some(id);
        fast(c);
        tweak(c);
    })
    .await
}

/// Starts the seed `a` and joining servers `b`, `c`, … (`n` in all), and waits until the cluster has formed.
pub async fn start_cluster(nats_url: &str, root: &std::path::Path, n: usize) -> Vec<TestServer> {
    start_cluster_with(nats_url, root, n, |_| {}).await
}

/// [`start_cluster`] with `tweak` applied to every server's configuration (after the cluster defaults).
pub async fn start_cluster_with(
    nats_url: &str,
    root: &std::path::Path,
    n: usize,
    tweak: impl Fn(&mut Config),
) -> Vec<TestServer> {
    let mut servers = Vec::new();
    for i in 0..n {
        let id = ((b'a' + i as u8) as char).to_string();
        let seed = i == 0;
        servers.push(
            start(nats_url, &root.join(&id), &id, |c| {
                c.clustering.raft_bootstrap_seed = seed;
                tweak(c);
            })
            .await,
        );
    }
    wait_formed(nats_url, &servers).await;
    servers
}

/// Waits until every one of `servers` lists all of them as brokers and the metadata group has them all as voters.
pub async fn wait_formed(nats_url: &str, servers: &[TestServer]) {
    for s in servers {
        wait_brokers(s, servers.len()).await;
    }
    wait_voters(nats_url, "liftbridge-default", servers.len()).await;
}

/// Waits until the metadata group of `namespace` has `n` voters (asked over NATS, as an operator would).
pub async fn wait_voters(nats_url: &str, namespace: &str, n: usize) {
    let nats = async_nats::connect(nats_url).await.expect("connect NATS");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = nats
            .request(format!("{namespace}.raft.cluster"), bytes::Bytes::new())
            .await;
        let voters = reply
            .ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
            .and_then(|v| v["voters"].as_array().map(Vec::len));
        if voters == Some(n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the metadata group never reached {n} voters: {voters:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `server` lists `n` brokers in FetchMetadata.
pub async fn wait_brokers(server: &TestServer, n: usize) {
    let mut client = server.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let md = client
            .fetch_metadata(pb::FetchMetadataRequest::default())
            .await
            .map(|r| r.into_inner());
        if md.as_ref().is_ok_and(|m| m.brokers.len() == n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} does not list {n} brokers: {md:?}",
            server.server_id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Retries `f` while it fails with `Unavailable` (no metadata leader yet), up to 20 s.
pub async fn retry_unavailable<T, F, Fut>(mut f: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match f().await {
            Err(s)
                if s.code() == tonic::Code::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// The metadata of `stream` as `client` sees it.
pub async fn stream_metadata(client: &mut ApiClient<Channel>, stream: &str) -> pb::StreamMetadata {
    let md = client
        .fetch_metadata(pb::FetchMetadataRequest {
            streams: vec![stream.to_string()],
            ..Default::default()
        })
        .await
        .expect("metadata")
        .into_inner();
    md.stream_metadata
        .into_iter()
        .next()
        .expect("stream listed")
}

/// Waits until `server`'s metadata satisfies `check` for `stream`.
pub async fn wait_stream(
    server: &TestServer,
    stream: &str,
    timeout: Duration,
    check: impl Fn(&pb::StreamMetadata) -> bool,
) -> pb::StreamMetadata {
    let mut client = server.client().await;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let md = stream_metadata(&mut client, stream).await;
        if check(&md) {
            return md;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: stream {stream} never reached the expected state: {md:?}",
            server.server_id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server in `servers` with this id.
pub fn by_id<'a>(servers: &'a [TestServer], id: &str) -> &'a TestServer {
    servers
        .iter()
        .find(|s| s.server_id == id)
        .unwrap_or_else(|| panic!("no server {id}"))
}

/// Publishes `value` with AckPolicy ALL (3 s deadline); returns the acked offset.
pub async fn publish_all(
    client: &mut ApiClient<Channel>,
    stream: &str,
    value: &str,
) -> Result<i64, tonic::Status> {
    let mut req = tonic::Request::new(pb::PublishRequest {
        stream: stream.into(),
        value: value.as_bytes().to_vec().into(),
        ack_policy: pb::AckPolicy::All as i32,
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    let resp = client.publish(req).await?.into_inner();
    Ok(resp.ack.map_or(-1, |a| a.offset))
}

/// Waits until `client` lists `n` brokers.
pub async fn wait_brokers_at(client: &mut ApiClient<Channel>, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let md = client
            .fetch_metadata(pb::FetchMetadataRequest::default())
            .await;
        if md.as_ref().is_ok_and(|m| m.get_ref().brokers.len() == n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "brokers never reached {n}: {md:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A one-partition stream named `name` (also its subject) replicated `rf` times.
pub fn replicated(name: &str, rf: i32) -> pb::CreateStreamRequest {
    pb::CreateStreamRequest {
        replication_factor: rf,
        ..crate::support::create_request(name, name, 1)
    }
}

/// Creates the stream of `request` through `client` (retrying while there is no metadata leader), then waits
/// until its partition 0 has `isr` in-sync replicas and returns that partition.
pub async fn create_with_isr(
    client: &mut ApiClient<Channel>,
    request: pb::CreateStreamRequest,
    isr: usize,
) -> pb::PartitionMetadata {
    let name = request.name.clone();
    retry_unavailable(|| {
        let mut c = client.clone();
        let request = request.clone();
        async move { c.create_stream(request).await }
    })
    .await
    .expect("create stream");
    wait_partition(client, &name, Duration::from_secs(15), |p| {
        p.isr.len() == isr
    })
    .await
}

/// Starts one child process per id (the first bootstraps as the Raft seed) in `namespace`, and waits until each
/// lists all of them and all are Raft voters.
pub async fn start_procs(
    nats_url: &str,
    namespace: &str,
    root: &std::path::Path,
    ids: &[&str],
) -> Vec<process::Proc> {
    let procs: Vec<process::Proc> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| process::Proc::start(nats_url, namespace, &root.join(id), id, i == 0))
        .collect();
    for p in &procs {
        wait_brokers_at(&mut p.client().await, ids.len()).await;
    }
    wait_voters(nats_url, namespace, ids.len()).await;
    procs
}

/// Waits until partition 0 of `stream`, as `client` sees it, satisfies `check`.
pub async fn wait_partition(
    client: &mut ApiClient<Channel>,
    stream: &str,
    timeout: Duration,
    check: impl Fn(&pb::PartitionMetadata) -> bool,
) -> pb::PartitionMetadata {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let md = stream_metadata(client, stream).await;
        if let Some(p) = md.partitions.get(&0)
            && check(p)
        {
            return p.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partition never reached the expected state: {md:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A background publisher: one synchronous AckPolicy ALL publish after another, each with a fresh value (so
/// a retry after an indeterminate failure can never duplicate an acked message).
pub struct Publisher {
    /// What was acked and how many publishes were indeterminate.
    pub history: std::sync::Arc<parking_lot::Mutex<checker::History>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Starts publishing to `stream` through `client`.
    pub fn start(client: ApiClient<Channel>, stream: &str) -> Publisher {
        use std::sync::atomic::Ordering;
        let history = std::sync::Arc::new(parking_lot::Mutex::new(checker::History::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let (history, stop, stream) = (history.clone(), stop.clone(), stream.to_string());
            let mut client = client;
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let value = format!("v{i}");
                    i += 1;
                    match publish_all(&mut client, &stream, &value).await {
                        Ok(offset) => history.lock().acked.push((value, offset)),
                        Err(_) => {
                            history.lock().indeterminate += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        };
        Publisher {
            history,
            stop,
            task,
        }
    }

    /// Acked so far.
    pub fn acked(&self) -> usize {
        self.history.lock().acked.len()
    }

    /// Waits until `n` messages are acked (panics after `timeout`).
    pub async fn wait_acked(&self, n: usize, timeout: Duration) {
        let ok = crate::support::wait_until(timeout, || self.acked() >= n).await;
        assert!(
            ok,
            "only {} of {n} acked; {} indeterminate",
            self.acked(),
            self.history.lock().indeterminate
        );
    }

    /// Stops and returns the history.
    pub async fn finish(self) -> checker::History {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        self.history.lock().clone()
    }
}

/// Reads partition 0 of `stream` from every server in `readers` (as the leader, or as an ISR replica when it
/// does not lead; retried while a server's view of the metadata converges) and checks it against `history`.
pub async fn check_replicas(
    history: &checker::History,
    stream: &str,
    _leader: &str,
    readers: Vec<(String, ApiClient<Channel>)>,
) {
    let end = history.acked.last().map_or(0, |a| a.1 + 1);
    for (id, mut client) in readers {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let log = loop {
            let mut result = checker::read_all(&mut client, stream, 0, end, false).await;
            if result
                .as_ref()
                .is_err_and(|e| e.code() == tonic::Code::FailedPrecondition)
            {
                result = checker::read_all(&mut client, stream, 0, end, true).await;
            }
            match result {
                Ok(log) => break log,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("read {id}: {e:?}"),
            }
        };
        let problems = checker::check(history, &log);
        assert!(
            problems.is_empty(),
            "replica {id} ({} acked, {} indeterminate): {problems:?}",
            history.acked.len(),
            history.indeterminate
        );
    }
}
