//! Riding through a partition leader failover with the Rust client, against a real 3-server cluster (three
//! in-process Liftbridge servers sharing a real `nats-server`), one stream replicated 3 times, AckPolicy ALL:
//!
//! - a subscription opened before the failover (the same `Subscription`, no resubscribe by the application)
//!   delivers every acknowledged message exactly once, in offset order, offsets consecutive, including the
//!   ones published after the failover;
//! - `Client::publish` at full speed through the failover only ever returns an ack or a retryable
//!   (indeterminate) error, succeeds again against the new leader within a bound without recreating the
//!   client, and never writes a message twice: a reader finds every acked message exactly once at its acked
//!   offset, in order;
//! - the same subscription survives two leader changes in a row.
//!
//! Stopping a server cuts its client connections at once (the test server's proxy) and shuts it down. The
//! tests of this file run one at a time (three clusters at once on two shared cores would only measure the
//! machine).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use liftbridge::testing::TestServer;
use liftbridge::{
    AckPolicy, Client, ErrorKind, Event, Message, StartPosition, StopPosition, StreamOptions,
    SubscribeOptions, Subscription,
};
use liftbridge_testkit::NatsServer;
use parking_lot::Mutex;
use tokio::time::Instant;

/// How long publishes may fail after the leader stops before they must succeed again.
const RESUME_BOUND: Duration = Duration::from_secs(20);

/// The tests of this file take turns (see the module docs).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- cluster fixture ------------------------------------------------------------------------------------

/// Three Liftbridge servers (`a` bootstraps the metadata group, `b` and `c` join) on one `nats-server`, with
/// short failure-detection timeouts.
struct Cluster {
    /// Server ids and servers.
    servers: Vec<(String, TestServer)>,
    nats: NatsServer,
}

impl Cluster {
    async fn start() -> Cluster {
        let nats = NatsServer::start();
        let mut servers = Vec::new();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let url = nats.url.clone();
            let server = TestServer::builder()
                .config(move |c| {
                    c.nats.servers = vec![url.clone()];
                    c.nats.embedded_host = None;
                    c.nats.embedded_port = None;
                    c.clustering.server_id = Some(id.to_string());
                    c.clustering.raft_bootstrap_seed = i == 0;
                    c.clustering.replica_max_leader_timeout = Duration::from_millis(1500);
                    c.clustering.replica_max_lag_time = Duration::from_millis(1500);
                    c.clustering.replica_max_idle_wait = Duration::from_millis(300);
                    c.clustering.replica_fetch_timeout = Duration::from_millis(1000);
                })
                .start()
                .await
                .unwrap_or_else(|e| panic!("server {id} starts: {e}"));
            servers.push((id.to_string(), server));
        }
        let cluster = Cluster { servers, nats };
        cluster.wait_formed().await;
        cluster
    }

    /// Waits until every server lists all three brokers and the metadata group has three voters.
    async fn wait_formed(&self) {
        for (_, s) in &self.servers {
            let client = Client::builder([s.addr().to_string()])
                .metadata_refresh_interval(Duration::ZERO)
                .connect()
                .await
                .expect("connect to one server");
            common::wait_until("every server to list 3 brokers", || async {
                client
                    .fetch_metadata()
                    .await
                    .is_ok_and(|m| m.brokers().len() == 3)
            })
            .await;
            client.close().await;
        }
        let nats = async_nats::connect(&self.nats.url)
            .await
            .expect("connect NATS");
        common::wait_until("the metadata group to have 3 voters", || async {
            let reply = nats
                .request("liftbridge-default.raft.cluster", bytes::Bytes::new())
                .await;
            reply
                .ok()
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
                .and_then(|v| v["voters"].as_array().map(Vec::len))
                == Some(3)
        })
        .await;
    }

    /// Every server's client address, as seeds.
    fn seeds(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|(_, s)| s.addr().to_string())
            .collect()
    }

    /// The server with this id.
    fn server(&mut self, id: &str) -> &mut TestServer {
        self.servers
            .iter_mut()
            .find(|(i, _)| i == id)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("no server {id}"))
    }

    /// Stops every server (gracefully), then NATS.
    async fn stop(mut self) {
        for (_, s) in &mut self.servers {
            s.stop().await.expect("server stops");
        }
    }
}

/// A client of the whole cluster (every server a seed), with a short metadata refresh so a test never waits
/// on it.
async fn cluster_client(cluster: &Cluster) -> Client {
    Client::builder(cluster.seeds())
        .metadata_refresh_interval(Duration::from_secs(1))
        .connect()
        .await
        .expect("connect to the cluster")
}

/// Creates `name` with one partition replicated 3 times and waits until all 3 replicas are in sync; returns
/// the partition leader's id.
async fn create_replicated(client: &Client, name: &str) -> String {
    // Placement counts the servers the metadata leader heard from lately; on a loaded 2-core box one
    // server's presence announcements can lag for a moment right after start, which the server answers
    // (correctly) with "replicationFactor 3 is larger than the cluster". Retry that, and only that, briefly.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client
            .create_stream(StreamOptions::new(name, name).replication_factor(3))
            .await
        {
            Ok(_) => break,
            Err(e)
                if e.message().contains("larger than the cluster") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create RF=3 stream: {e}"),
        }
    }
    wait_isr(client, name, 3, |_| true).await
}

/// Waits until partition 0 of `stream` has `isr` in-sync replicas and a leader satisfying `leader_ok`;
/// returns the leader.
async fn wait_isr(
    client: &Client,
    stream: &str,
    isr: usize,
    leader_ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.fetch_stream_metadata(stream).await;
        if let Some(p) = md.as_ref().ok().and_then(|s| s.partition(0))
            && p.isr().len() == isr
            && !p.leader().is_empty()
            && leader_ok(p.leader())
        {
            return p.leader().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{stream}/0 never reached {isr} in-sync replicas with the expected leader: {md:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- what the application saw ---------------------------------------------------------------------------

/// Publishes of one publisher (each with a value of its own, so a stored duplicate can only come from the
/// client resending a message).
#[derive(Debug, Default)]
struct Publishes {
    /// Acked: value, offset.
    acked: Vec<(String, i64)>,
    /// Failed with a retryable error (indeterminate: may or may not be stored): value, error kind.
    indeterminate: Vec<(String, ErrorKind)>,
    /// How often each retryable error (kind: message) was seen.
    retryable: std::collections::BTreeMap<String, usize>,
    /// Failed with an error that is not retryable (must not happen).
    fatal: Vec<String>,
}

impl Publishes {
    fn record(&mut self, value: String, result: liftbridge::Result<liftbridge::Ack>) {
        match result {
            Ok(ack) => self.acked.push((value, ack.offset())),
            Err(e) if e.is_retryable() => {
                *self
                    .retryable
                    .entry(format!("{}: {e}", e.kind().code()))
                    .or_default() += 1;
                self.indeterminate.push((value, e.kind()));
            }
            Err(e) => self
                .fatal
                .push(format!("{value}: {} ({e})", e.kind().code())),
        }
    }
}

/// Publishes one message with AckPolicy ALL.
async fn publish(
    client: &Client,
    stream: &str,
    value: &str,
) -> liftbridge::Result<liftbridge::Ack> {
    client
        .publish(
            stream,
            Message::new(value.to_string()).ack_policy(AckPolicy::All),
        )
        .await
}

/// Publishes until `n` more messages are acked (values `{prefix}{i}`), failing when publishes do not succeed
/// for [`RESUME_BOUND`].
async fn publish_acked(client: &Client, stream: &str, prefix: &str, n: usize, log: &mut Publishes) {
    let target = log.acked.len() + n;
    let mut i = 0;
    let mut last_ack = Instant::now();
    while log.acked.len() < target {
        let value = format!("{prefix}{i}");
        i += 1;
        let result = publish(client, stream, &value).await;
        if result.is_ok() {
            last_ack = Instant::now();
        }
        log.record(value, result);
        assert!(
            log.fatal.is_empty(),
            "non-retryable publish errors: {:?}",
            log.fatal
        );
        assert!(
            last_ack.elapsed() < RESUME_BOUND,
            "no publish succeeded for {RESUME_BOUND:?}: {:?}",
            &log.indeterminate[log.indeterminate.len().saturating_sub(5)..]
        );
    }
}

/// Checks what a reader got (offset, value), from offset 0, against what was published: offsets consecutive
/// from 0 (no gap, no duplicate), no value twice (nothing stored or delivered twice), every acked message at
/// its acked offset, acks in publish order, and nothing that was not published. Returns every violation.
fn check(log: &Publishes, read: &[(i64, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut at: HashMap<&str, Vec<i64>> = HashMap::new();
    for (i, (offset, value)) in read.iter().enumerate() {
        if *offset != i as i64 {
            problems.push(format!(
                "message #{i} has offset {offset}: gap, duplicate or disorder"
            ));
        }
        at.entry(value.as_str()).or_default().push(*offset);
    }
    for (value, offsets) in &at {
        if offsets.len() > 1 {
            problems.push(format!("{value} read {} times: {offsets:?}", offsets.len()));
        }
    }
    let mut previous = -1;
    for (value, offset) in &log.acked {
        match at.get(value.as_str()).map(Vec::as_slice) {
            None => problems.push(format!("acked {value} (offset {offset}) never read")),
            Some([found]) if found != offset => {
                problems.push(format!("acked {value} at {offset} read at {found}"));
            }
            _ => {}
        }
        if *offset <= previous {
            problems.push(format!(
                "acked {value} at {offset} after an ack at {previous}"
            ));
        }
        previous = *offset;
    }
    let published: std::collections::HashSet<&str> = log
        .acked
        .iter()
        .map(|a| a.0.as_str())
        .chain(log.indeterminate.iter().map(|a| a.0.as_str()))
        .collect();
    for (offset, value) in read {
        if !published.contains(value.as_str()) {
            problems.push(format!("{value} at {offset} was never published"));
        }
    }
    problems
}

/// A subscription read in the background, as an application would: every message and every error.
struct Reader {
    read: Arc<Mutex<Vec<(i64, String)>>>,
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(mut sub: Subscription) -> Reader {
        let read = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (read, errors) = (read.clone(), errors.clone());
            tokio::spawn(async move {
                while let Some(item) = sub.next().await {
                    match item {
                        Ok(m) => read
                            .lock()
                            .push((m.offset(), String::from_utf8_lossy(m.value()).into_owned())),
                        Err(e) => errors.lock().push(format!("{}: {e}", e.kind().code())),
                    }
                }
                errors.lock().push("the subscription ended".into());
            })
        };
        Reader { read, errors, task }
    }

    /// Waits until the message at `offset` has been delivered (or an error), then returns everything read.
    async fn wait_through(&self, offset: i64) -> Vec<(i64, String)> {
        let what = format!("the subscription to deliver offset {offset}");
        common::wait_until(&what, || async {
            self.read.lock().last().is_some_and(|m| m.0 >= offset) || !self.errors.lock().is_empty()
        })
        .await;
        let errors = self.errors.lock().clone();
        assert!(errors.is_empty(), "the subscription failed: {errors:?}");
        self.read.lock().clone()
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// Every event of `client` and when it came, collected in the background.
fn record_events(client: &Client) -> Arc<Mutex<Vec<(Instant, Event)>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut stream = client.events();
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = stream.next().await {
            sink.lock().push((Instant::now(), e));
        }
    });
    events
}

/// The `Resubscribed` events: when, and the offset resumed at.
fn resubscribed(events: &Mutex<Vec<(Instant, Event)>>) -> Vec<(Instant, Option<i64>)> {
    events
        .lock()
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Resubscribed { offset, .. } => Some((*at, *offset)),
            _ => None,
        })
        .collect()
}

// ---- tests ----------------------------------------------------------------------------------------------

/// A subscription opened before the leader stops delivers every acked message exactly once, in order, with
/// consecutive offsets, through the failover, by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_rides_through_leader_failover() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start().await;
    let client = cluster_client(&cluster).await;
    let leader = create_replicated(&client, "rt").await;
    let events = record_events(&client);
    let sub = client
        .subscribe(
            "rt",
            SubscribeOptions::new().start_at(StartPosition::Earliest),
        )
        .await
        .expect("subscribe");
    let reader = Reader::start(sub);

    let mut log = Publishes::default();
    publish_acked(&client, "rt", "before", 200, &mut log).await;
    assert!(
        log.indeterminate.is_empty(),
        "publishes failed before any failure: {:?}",
        log.indeterminate
    );
    // The subscription is live on the leader before it goes.
    reader.wait_through(log.acked[99].1).await;

    let stopped_at = Instant::now();
    cluster.server(&leader).stop().await.expect("leader stops");
    publish_acked(&client, "rt", "after", 200, &mut log).await;
    let new_leader = wait_isr(&client, "rt", 2, |l| l != leader).await;

    let end = log.acked.last().unwrap().1;
    let read = reader.wait_through(end).await;
    let problems = check(&log, &read);
    assert!(
        problems.is_empty(),
        "{} acked, {} indeterminate, {} read, leader {leader} -> {new_leader}: {problems:?}",
        log.acked.len(),
        log.indeterminate.len(),
        read.len()
    );
    let resumed = resubscribed(&events);
    let after = resumed.iter().find(|(_, o)| o.is_some_and(|o| o > 0));
    assert!(
        after.is_some(),
        "the subscription resubscribed after a delivered offset: {resumed:?}"
    );
    let moved = events.lock().iter().find_map(|(at, e)| {
        matches!(e, Event::LeaderChanged { new, .. } if !new.is_empty() && *new != leader)
            .then(|| at.saturating_duration_since(stopped_at))
    });
    eprintln!(
        "the client saw the new leader {moved:?} and the subscription resubscribed {:?} after the leader \
         stopped, at offset {:?}",
        after.unwrap().0.saturating_duration_since(stopped_at),
        after.unwrap().1
    );
    reader.stop();
    client.close().await;
    cluster.stop().await;
}

/// `Client::publish` in a tight loop while the leader stops: only acks and retryable errors, publishes succeed
/// again within the bound on the same client, and every acked message is stored exactly once at its acked
/// offset (no unsafe retry wrote anything twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_ride_through_leader_failover() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start().await;
    let client = cluster_client(&cluster).await;
    let leader = create_replicated(&client, "pub").await;

    let log = Arc::new(Mutex::new(Publishes::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (client, log, stop) = (client.clone(), log.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let value = format!("v{i}");
                i += 1;
                let result = publish(&client, "pub", &value).await;
                log.lock().record(value, result);
            }
        })
    };
    let acked = || log.lock().acked.len();
    common::wait_until("300 acks before the failover", || async { acked() >= 300 }).await;
    assert!(
        log.lock().indeterminate.is_empty(),
        "publishes failed before any failure: {:?}",
        log.lock().indeterminate
    );

    let stopped_at = Instant::now();
    cluster.server(&leader).stop().await.expect("leader stops");
    let acked_at_stop = acked();
    // The first ack after the leader stopped marks the resume (an ack of a publish already past the old leader
    // before it went would only make this faster, so wait for a clear margin of new acks).
    let deadline = stopped_at + RESUME_BOUND;
    while acked() < acked_at_stop + 50 {
        let fatal = log.lock().fatal.clone();
        assert!(fatal.is_empty(), "non-retryable publish errors: {fatal:?}");
        assert!(
            Instant::now() < deadline,
            "publishes did not resume within {RESUME_BOUND:?} of the leader stopping: {} acked since, {:?}",
            acked() - acked_at_stop,
            log.lock().indeterminate
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resumed_after = stopped_at.elapsed();
    common::wait_until("200 more acks after the failover", || async {
        acked() >= acked_at_stop + 200
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.await.expect("publisher task");
    let log = std::mem::take(&mut *log.lock());
    assert!(
        log.fatal.is_empty(),
        "non-retryable publish errors: {:?}",
        log.fatal
    );
    // Publishes that surely never reached a server (no leader known, connection refused) are retried inside
    // `publish` until its deadline: the application sees the one publish in flight when the leader went, and
    // at most a few that used up their deadline during the election, not one error per loop iteration.
    assert!(
        log.indeterminate.len() <= 10,
        "{} publishes failed through one failover: {:#?}",
        log.indeterminate.len(),
        log.retryable
    );
    let new_leader = wait_isr(&client, "pub", 2, |l| l != leader).await;

    // A fresh reader over the whole partition, up to what the new leader holds now.
    let end = log.acked.last().unwrap().1;
    let mut sub = client
        .subscribe(
            "pub",
            SubscribeOptions::new()
                .start_at(StartPosition::Earliest)
                .stop_at(StopPosition::Latest),
        )
        .await
        .expect("subscribe to read back");
    let mut read = Vec::new();
    while let Some(item) = common::next(&mut sub).await {
        let m =
            item.unwrap_or_else(|e| panic!("read back failed after {} messages: {e}", read.len()));
        read.push((m.offset(), String::from_utf8_lossy(m.value()).into_owned()));
    }
    assert!(
        read.last().is_some_and(|m| m.0 >= end),
        "read back ends before the last ack at {end}: {:?}",
        read.last()
    );
    let problems = check(&log, &read);
    assert!(
        problems.is_empty(),
        "{} acked, {} indeterminate ({:?}), {} read, leader {leader} -> {new_leader}: {problems:?}",
        log.acked.len(),
        log.indeterminate.len(),
        log.indeterminate,
        read.len()
    );
    eprintln!(
        "publishes resumed {resumed_after:?} after the leader stopped; {} acked, {} indeterminate: {:#?}",
        log.acked.len(),
        log.indeterminate.len(),
        log.retryable
    );
    client.close().await;
    cluster.stop().await;
}

/// Two leader changes in a row (the first leader stops, comes back and catches up, then the second leader
/// stops): the same subscription still delivers every acked message exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_rides_through_two_leader_changes() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start().await;
    let client = cluster_client(&cluster).await;
    let first = create_replicated(&client, "two").await;
    let events = record_events(&client);
    let reader = Reader::start(
        client
            .subscribe(
                "two",
                SubscribeOptions::new().start_at(StartPosition::Earliest),
            )
            .await
            .expect("subscribe"),
    );

    let mut log = Publishes::default();
    publish_acked(&client, "two", "one", 100, &mut log).await;
    cluster
        .server(&first)
        .stop()
        .await
        .expect("first leader stops");
    publish_acked(&client, "two", "two", 100, &mut log).await;
    let second = wait_isr(&client, "two", 2, |l| l != first).await;

    // The first leader comes back, catches up and rejoins the ISR; then the second leader stops.
    cluster
        .server(&first)
        .restart()
        .await
        .expect("first leader restarts");
    wait_isr(&client, "two", 3, |l| l == second).await;
    reader.wait_through(log.acked.last().unwrap().1).await;
    cluster
        .server(&second)
        .stop()
        .await
        .expect("second leader stops");
    publish_acked(&client, "two", "three", 100, &mut log).await;
    let third = wait_isr(&client, "two", 2, |l| l != second).await;

    let read = reader.wait_through(log.acked.last().unwrap().1).await;
    let problems = check(&log, &read);
    assert!(
        problems.is_empty(),
        "{} acked, {} indeterminate, {} read, leaders {first} -> {second} -> {third}: {problems:?}",
        log.acked.len(),
        log.indeterminate.len(),
        read.len()
    );
    let resumed = resubscribed(&events);
    assert!(
        resumed
            .iter()
            .filter(|(_, o)| o.is_some_and(|o| o > 0))
            .count()
            >= 2,
        "the subscription resubscribed after each leader change: {resumed:?}"
    );
    reader.stop();
    client.close().await;
    cluster.stop().await;
}

/// The checker itself: it must see gaps, duplicates, lost or moved acks and strangers, or the tests above
/// could pass on a broken client.
#[test]
fn checker_finds_every_kind_of_violation() {
    let log = Publishes {
        acked: vec![("a".into(), 0), ("b".into(), 1), ("d".into(), 3)],
        indeterminate: vec![("c".into(), ErrorKind::Disconnected)],
        ..Default::default()
    };
    let read = |pairs: &[(i64, &str)]| -> Vec<(i64, String)> {
        pairs.iter().map(|(o, v)| (*o, v.to_string())).collect()
    };
    assert_eq!(
        check(&log, &read(&[(0, "a"), (1, "b"), (2, "c"), (3, "d")])),
        Vec::<String>::new()
    );
    // An acked message read at another offset than its ack named.
    assert_eq!(
        check(&log, &read(&[(0, "a"), (1, "b"), (2, "d")])),
        ["acked d at 3 read at 2"]
    );
    // A gap (and the acked message at it lost).
    assert!(!check(&log, &read(&[(0, "a"), (1, "b"), (3, "d")])).is_empty());
    // A duplicate delivery.
    assert!(
        !check(
            &log,
            &read(&[(0, "a"), (1, "b"), (1, "b"), (2, "c"), (3, "d")])
        )
        .is_empty()
    );
    // A message stored twice.
    assert!(!check(&log, &read(&[(0, "a"), (1, "b"), (2, "b"), (3, "d")])).is_empty());
    // Something never published.
    assert!(!check(&log, &read(&[(0, "a"), (1, "b"), (2, "x"), (3, "d")])).is_empty());
}
