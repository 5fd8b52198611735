//! Keeps the running partitions equal to what the metadata says this server should lead or replicate.
//!
//! One task reconciles after every metadata change: for every partition this server holds a replica of (and
//! that is not paused) it runs a leader actor (with a fetch server and ISR upkeep when there are followers) or a
//! follower's replicator; it stops what was paused, deleted or changed role (a new leader epoch restarts the
//! partition in its new role), deletes a deleted stream's data, and mirrors the readonly flag and the ISR.
//! Lookups by the API read a map behind a short lock; only the reconcile task writes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::intake::Intake;
use super::leader::{self, LeaderStats};
use super::outbox::{AckOutbox, LocalInboxes};
use super::replication::{FetchServer, Isr, IsrChange, SharedIsr, fetch_subject};
use super::replicator::{self, ReplicatorStats};
use super::{CloseReason, PartitionHandle, PartitionSettings};
use crate::bus::Bus;
use crate::commitlog::Log;
use crate::config::Config;
use crate::metadata::{Metadata, Op, PartitionState, StreamState};

type Key = (String, i32);

/// What this server does for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It leads: takes publishes, serves fetches, moves the high watermark.
    Leader,
    /// It replicates the leader's log.
    Follower,
}

struct Running {
    handle: PartitionHandle,
    /// Creation time of the stream instance this partition belongs to (a recreated stream is a new instance).
    instance: i64,
    role: Role,
    stop: watch::Sender<bool>,
    /// The main task (leader actor or replicator) and helpers (fetch server, ISR upkeep).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<LeaderStats>,
    /// Follower counters.
    replicator: Arc<ReplicatorStats>,
    /// Leader replication state, when the partition has followers.
    isr: Option<SharedIsr>,
}

struct Inner {
    config: Arc<Config>,
    data_dir: PathBuf,
    bus: Arc<dyn Bus>,
    /// Where acks go.
    outbox: AckOutbox,
    /// Subscriptions of ungrouped leaders (they get this server's API publishes in-process).
    intake: Arc<Intake>,
    metadata: Metadata,
    running: RwLock<HashMap<Key, Arc<Running>>>,
    /// Streams present at the last reconcile, to notice deletions (and delete their data).
    known_streams: Mutex<HashSet<String>>,
    /// The metadata index the last reconcile pass acted on, so callers can wait for a change to take effect.
    generation: watch::Sender<u64>,
}

/// Starts, stops and finds partition leaders.
#[derive(Clone)]
pub struct PartitionManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PartitionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionManager")
            .field("running", &self.inner.running.read().len())
            .finish()
    }
}

/// Why a partition is not served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unserved {
    /// No such stream or partition.
    Missing,
    /// The partition is paused.
    Paused,
    /// Another server leads it.
    NotLeader,
    /// It should run but has not started (or failed to start).
    NotStarted,
}

impl PartitionManager {
    /// A manager for partitions stored under `<data_dir>/streams`; acks for `local_inboxes` are delivered
    /// in-process, all others over `bus`.
    pub fn new(
        config: Arc<Config>,
        data_dir: PathBuf,
        bus: Arc<dyn Bus>,
        local_inboxes: Option<Arc<dyn LocalInboxes>>,
        intake: Arc<Intake>,
        metadata: Metadata,
    ) -> Self {
        let outbox = AckOutbox::new(bus.clone(), local_inboxes);
        let (generation, _) = watch::channel(0);
        let known_streams = Mutex::new(metadata.snapshot().streams.keys().cloned().collect());
        PartitionManager {
            inner: Arc::new(Inner {
                config,
                data_dir,
                bus,
                outbox,
                intake,
                metadata,
                running: RwLock::new(HashMap::new()),
                known_streams,
                generation,
            }),
        }
    }

    /// The running partition, if this server leads it.
    pub fn get(&self, stream: &str, partition: i32) -> Option<PartitionHandle> {
        self.inner
            .running
            .read()
            .get(&(stream.to_string(), partition))
            .filter(|r| r.role == Role::Leader)
            .map(|r| r.handle.clone())
    }

    /// The partition's replica on this server, whether it leads or follows.
    pub fn get_replica(&self, stream: &str, partition: i32) -> Option<(PartitionHandle, Role)> {
        self.inner
            .running
            .read()
            .get(&(stream.to_string(), partition))
            .map(|r| (r.handle.clone(), r.role))
    }

    /// Follower counters of a partition replicated here.
    pub fn replicator_stats(&self, stream: &str, partition: i32) -> Option<Arc<ReplicatorStats>> {
        self.inner
            .running
            .read()
            .get(&(stream.to_string(), partition))
            .map(|r| r.replicator.clone())
    }

    /// The leader's counters for a running partition.
    pub fn stats(&self, stream: &str, partition: i32) -> Option<Arc<LeaderStats>> {
        self.inner
            .running
            .read()
            .get(&(stream.to_string(), partition))
            .map(|r| r.stats.clone())
    }

    /// Partitions currently running here.
    pub fn running_count(&self) -> usize {
        self.inner.running.read().len()
    }

    /// Why `stream/partition` is not running here, judged from the metadata.
    pub fn why_unserved(&self, stream: &str, partition: i32) -> Unserved {
        let Some(s) = self.inner.metadata.stream(stream) else {
            return Unserved::Missing;
        };
        let Some(p) = s.partition(partition) else {
            return Unserved::Missing;
        };
        if p.paused {
            Unserved::Paused
        } else if p.leader != self.inner.metadata.server_id() {
            Unserved::NotLeader
        } else {
            Unserved::NotStarted
        }
    }

    /// Waits until every partition in `partitions` of `stream` runs on its leader (here, or on another server,
    /// which is asked over NATS), or `timeout` passes. Returns whether they do.
    pub async fn wait_running(&self, stream: &str, partitions: &[i32], timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let me = self.inner.metadata.server_id().to_string();
        let mut remote: HashMap<String, Vec<i32>> = HashMap::new();
        let mut local = Vec::new();
        let state = self.inner.metadata.stream(stream);
        for &id in partitions {
            match state.as_ref().and_then(|s| s.partition(id)) {
                Some(p) if p.leader != me => remote.entry(p.leader.clone()).or_default().push(id),
                _ => local.push(id),
            }
        }
        let mut generation = self.inner.generation.subscribe();
        while !local.iter().all(|&p| self.get(stream, p).is_some()) {
            match tokio::time::timeout_at(deadline, generation.changed()).await {
                Ok(Ok(())) => {}
                _ => return local.iter().all(|&p| self.get(stream, p).is_some()),
            }
        }
        for (server, ids) in remote {
            let query = RunningQuery {
                stream: stream.to_string(),
                partitions: ids,
            };
            let payload = bytes::Bytes::from(serde_json::to_vec(&query).unwrap_or_default());
            let subject = running_subject(&self.inner.config.clustering.namespace, &server);
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return false;
                }
                let answer = self
                    .inner
                    .bus
                    .request(
                        subject.clone(),
                        payload.clone(),
                        left.min(Duration::from_secs(1)),
                    )
                    .await;
                if answer.is_ok_and(|m| m.payload.as_ref() == b"true") {
                    break;
                }
                // The leader has not started them yet: ask again shortly.
                tokio::time::sleep(Duration::from_millis(20).min(left)).await;
            }
        }
        true
    }

    /// Answers other servers asking whether partitions run here (see [`PartitionManager::wait_running`]).
    pub async fn serve_queries(&self) -> Result<JoinHandle<()>, crate::bus::BusError> {
        let subject = running_subject(
            &self.inner.config.clustering.namespace,
            self.inner.metadata.server_id(),
        );
        let mut requests = self.inner.bus.subscribe(subject, None).await?;
        let manager = self.clone();
        Ok(tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(message) = requests.next().await {
                let Some(reply) = message.reply else { continue };
                let running =
                    serde_json::from_slice::<RunningQuery>(&message.payload).is_ok_and(|q| {
                        q.partitions
                            .iter()
                            .all(|&p| manager.get(&q.stream, p).is_some())
                    });
                let answer = bytes::Bytes::from_static(if running { b"true" } else { b"false" });
                let _ = manager
                    .inner
                    .bus
                    .publish(reply, None, Vec::new(), answer)
                    .await;
            }
        }))
    }

    /// Reconciles after every metadata change until `shutdown` fires, then stops every partition.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.inner.metadata.watch();
        loop {
            self.reconcile().await;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        self.stop_all(CloseReason::Shutdown).await;
    }

    /// One reconcile pass.
    pub async fn reconcile(&self) {
        let snapshot = self.inner.metadata.snapshot();
        let me = self.inner.metadata.server_id().to_string();
        let mut wanted: HashMap<Key, (&StreamState, &PartitionState, Role)> = HashMap::new();
        for stream in snapshot.streams.values() {
            for p in &stream.partitions {
                if p.replicas.contains(&me) && !p.paused {
                    let role = if p.leader == me {
                        Role::Leader
                    } else {
                        Role::Follower
                    };
                    wanted.insert((stream.name.clone(), p.id), (stream, p, role));
                }
            }
        }

        // Stop what should no longer run (or runs an older instance of a recreated stream).
        let running: Vec<(Key, Arc<Running>)> = self
            .inner
            .running
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, run) in running {
            let keep = wanted.get(&key).is_some_and(|(s, p, role)| {
                s.creation_timestamp == run.instance
                    && p.leader_epoch == run.handle.epoch()
                    && *role == run.role
            });
            if keep {
                continue;
            }
            let reason = match snapshot.streams.get(&key.0) {
                Some(s) if s.creation_timestamp == run.instance => match s.partition(key.1) {
                    Some(p) if p.paused => CloseReason::Paused,
                    _ => CloseReason::LeaderChanged,
                },
                _ => CloseReason::Deleted,
            };
            self.stop(&key, reason).await;
        }
        // A deleted stream's data goes with it, whether or not its partitions were running here.
        let gone: Vec<String> = {
            let mut known = self.inner.known_streams.lock();
            let gone = known
                .iter()
                .filter(|name| !snapshot.streams.contains_key(*name))
                .cloned()
                .collect();
            *known = snapshot.streams.keys().cloned().collect();
            gone
        };
        for name in &gone {
            let dir = self.inner.data_dir.join("streams").join(name);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(stream = name, error = %e, "could not delete stream data");
            }
        }

        // Start what should run.
        for (key, (stream, p, role)) in wanted {
            let existing = self.inner.running.read().get(&key).cloned();
            if let Some(run) = existing {
                run.handle.set_readonly(p.readonly);
                if let Some(isr) = &run.isr {
                    isr.set_isr(p.isr.clone());
                    let acks = isr.advance();
                    self.inner.outbox.send(acks).await;
                }
                continue;
            }
            if let Err(e) = self.start(stream, p, role).await {
                tracing::error!(stream = key.0, partition = key.1, error = %e, "cannot start partition");
            }
        }
        self.inner
            .generation
            .send_modify(|g| *g = (*g).max(snapshot.index));
    }

    /// Waits until a reconcile pass has acted on metadata index `index` (or later), or `timeout` passes.
    /// Returns whether it has.
    pub async fn wait_reconciled(&self, index: u64, timeout: Duration) -> bool {
        let mut generation = self.inner.generation.subscribe();
        tokio::time::timeout(timeout, generation.wait_for(|g| *g >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn start(
        &self,
        stream: &StreamState,
        p: &PartitionState,
        role: Role,
    ) -> Result<(), String> {
        let settings = PartitionSettings::resolve(&self.inner.config, &stream.settings);
        let stream_dir = self.inner.data_dir.join("streams").join(&stream.name);
        claim_stream_dir(&stream_dir, stream.creation_timestamp).map_err(|e| e.to_string())?;
        let dir = stream_dir.join(p.id.to_string());
        let log_config = settings.log.clone();
        let (log, report) = tokio::task::spawn_blocking(move || Log::open(&dir, log_config))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if self.inner.config.logging.recovery || report.has_problems() {
            tracing::info!(stream = stream.name, partition = p.id, report = ?report, "opened partition log");
        }
        let subject = stream.partition_subject(p.id);
        let me = self.inner.metadata.server_id().to_string();
        let namespace = self.inner.config.clustering.namespace.clone();
        let min_isr = usize::try_from(settings.min_isr).unwrap_or(1);
        let handle = PartitionHandle::new(
            stream.name.clone(),
            p.id,
            subject.clone(),
            log.clone(),
            p.leader_epoch,
            settings,
            p.readonly,
        );
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(LeaderStats::default());
        let replicator_stats = Arc::new(ReplicatorStats::default());
        let mut tasks = Vec::new();
        let mut isr = None;
        let mut replication = None;
        match role {
            Role::Leader => {
                if p.replicas.len() > 1 {
                    // The new epoch starts where this log ends: followers truncate to here (KIP-101).
                    if log.latest_leader_epoch().is_none_or(|e| e < p.leader_epoch) {
                        let log = log.clone();
                        let (epoch, end) = (p.leader_epoch, log.end_offset());
                        tokio::task::spawn_blocking(move || log.assign_leader_epoch(epoch, end))
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())?;
                    }
                    let shared: SharedIsr = Arc::new(Isr::new(
                        me.clone(),
                        log.clone(),
                        p.replicas.clone(),
                        p.isr.clone(),
                        min_isr,
                    ));
                    let fetches = self
                        .inner
                        .bus
                        .subscribe(fetch_subject(&namespace, &stream.name, p.id), None)
                        .await
                        .map_err(|e| e.to_string())?;
                    let clustering = &self.inner.config.clustering;
                    let server = Arc::new(FetchServer {
                        isr: shared.clone(),
                        log: log.clone(),
                        bus: self.inner.bus.clone(),
                        outbox: self.inner.outbox.clone(),
                        leader_epoch: p.leader_epoch,
                        idle_wait: clustering.replica_max_idle_wait,
                        max_bytes: usize::try_from(clustering.replication_max_bytes)
                            .unwrap_or(1 << 20)
                            .max(64 * 1024),
                        waiting: Default::default(),
                    });
                    tasks.push(tokio::spawn(server.clone().run(fetches, stop_rx.clone())));
                    tasks.push(tokio::spawn(isr_upkeep(
                        shared.clone(),
                        self.inner.metadata.clone(),
                        stream.name.clone(),
                        p.id,
                        p.leader_epoch,
                        clustering.replica_max_lag_time,
                        stop_rx.clone(),
                    )));
                    isr = Some(shared);
                    replication = Some(server);
                }
                // A queue group is NATS' to balance: such a leader gets every message from NATS.
                let subscription = if stream.group.is_none() && self.inner.intake.is_local() {
                    self.inner.intake.subscribe(subject).await
                } else {
                    self.inner
                        .bus
                        .subscribe(subject, stream.group.clone())
                        .await
                }
                .map_err(|e| e.to_string())?;
                // Make sure NATS has the subscriptions before anyone is told the partition runs.
                self.inner.bus.flush().await.map_err(|e| e.to_string())?;
                if self.inner.intake.is_local() {
                    self.inner.intake.flush().await.map_err(|e| e.to_string())?;
                }
                tasks.insert(
                    0,
                    tokio::spawn(leader::run(
                        handle.clone(),
                        subscription,
                        self.inner.outbox.clone(),
                        self.inner.metadata.clone(),
                        stats.clone(),
                        replication,
                        stop_rx,
                    )),
                );
            }
            Role::Follower => {
                tasks.push(tokio::spawn(replicator::run(
                    handle.clone(),
                    self.inner.bus.clone(),
                    namespace,
                    me,
                    p.leader_epoch,
                    self.inner.config.clustering.clone(),
                    replicator_stats.clone(),
                    stop_rx,
                )));
            }
        }
        self.inner.running.write().insert(
            (stream.name.clone(), p.id),
            Arc::new(Running {
                handle,
                instance: stream.creation_timestamp,
                role,
                stop,
                tasks: Mutex::new(tasks),
                stats,
                replicator: replicator_stats,
                isr,
            }),
        );
        Ok(())
    }

    async fn stop(&self, key: &Key, reason: CloseReason) {
        let Some(run) = self.inner.running.write().remove(key) else {
            return;
        };
        // Subscribers learn why first, so they end with the right status rather than "log closed".
        run.handle.mark_closed(reason);
        let _ = run.stop.send(true);
        // The tasks only exit at a batch boundary, so no append is cut in half.
        let tasks: Vec<JoinHandle<()>> = run.tasks.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        let log = run.handle.log().clone();
        let closed = tokio::task::spawn_blocking(move || log.close()).await;
        if let Ok(Err(e)) = closed {
            tracing::warn!(stream = key.0, partition = key.1, error = %e, "error closing log");
        }
    }

    /// Stops every running partition.
    pub async fn stop_all(&self, reason: CloseReason) {
        let keys: Vec<Key> = self.inner.running.read().keys().cloned().collect();
        for key in keys {
            self.stop(&key, reason).await;
        }
    }
}

/// Proposes the ISR changes the leader's view calls for, every quarter of `lag`, until `stop` fires.
async fn isr_upkeep(
    isr: SharedIsr,
    metadata: Metadata,
    stream: String,
    partition: i32,
    leader_epoch: u64,
    lag: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick =
        tokio::time::interval((lag / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        for change in isr.due_changes(lag) {
            let op = match &change {
                IsrChange::Shrink(replica) => Op::ShrinkIsr {
                    name: stream.clone(),
                    partition,
                    replica: replica.clone(),
                    leader_epoch,
                },
                IsrChange::Expand(replica) => Op::ExpandIsr {
                    name: stream.clone(),
                    partition,
                    replica: replica.clone(),
                    leader_epoch,
                },
            };
            match metadata.propose(op).await {
                Ok(_) => tracing::info!(stream, partition, ?change, "ISR changed"),
                Err(e) => {
                    tracing::debug!(stream, partition, ?change, error = %e, "ISR change refused")
                }
            }
        }
    }
}

/// "Do these partitions run on your server?"
#[derive(serde::Serialize, serde::Deserialize)]
struct RunningQuery {
    stream: String,
    partitions: Vec<i32>,
}

fn running_subject(namespace: &str, server: &str) -> String {
    format!("{namespace}.partitions.{server}.running")
}

/// Makes `dir` belong to the stream instance created at `instance`: data left by an older stream of the same
/// name (deleted while this server was not running it) is removed first. The instance is recorded in a marker
/// file written atomically.
fn claim_stream_dir(dir: &std::path::Path, instance: i64) -> std::io::Result<()> {
    let marker = dir.join("stream-instance");
    match std::fs::read_to_string(&marker) {
        Ok(text) if text.trim() == instance.to_string() => return Ok(()),
        Ok(_) => std::fs::remove_dir_all(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    crate::metadata::write_atomically(&marker, instance.to_string().as_bytes())
}
