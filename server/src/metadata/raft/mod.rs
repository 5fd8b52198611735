//! The metadata Raft group (openraft 0.9, `storage-v2`), transported over NATS request/reply.
//!
//! This is the only module that names openraft types, so an openraft upgrade touches nothing else.
//!
//! # Layout
//! - [`Group`]: one server's Raft node — start-up and bootstrap (seed, peer list, or joining an existing
//!   cluster), proposals (applied here when this server leads, forwarded to the leader otherwise), and the NATS
//!   service answering the other servers' Raft RPCs, forwarded proposals and join requests.
//! - `store`: the durable log, vote and committed id in `<data.dir>/raft/`.
//! - `machine`: the state machine ([`MetadataState`](crate::metadata::MetadataState)) and its snapshots.
//! - `network`: openraft's network over NATS.
//!
//! Subjects (`<ns>` = `clustering.namespace`): `<ns>.raft.<server id>.{append,vote,snapshot,propose,join,ping}`
//! address one server; `<ns>.raft.join` (a queue group) reaches any member; `<ns>.raft.cluster` asks whether a
//! cluster exists (members answer `{"server": id, "leader": id, "voters": [id]}`, which also tells operators who
//! leads).

mod machine;
mod network;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use self::machine::StateMachine;
use self::network::Network;
use self::store::LogStore;
use super::{MetadataError, Op, View};
use crate::bus::{Bus, BusMessage};
use crate::config::ClusteringConfig;

/// A metadata change as it travels through the Raft log: the op and the time it was proposed (so every server
/// applies the same timestamps).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal {
    /// The change.
    pub op: Op,
    /// Proposal time, ns since the Unix epoch.
    pub now: i64,
}

/// The result of applying one entry: the op's refusal, if it was refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// Why the op was refused (the state did not change).
    pub error: Option<MetadataError>,
}

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata group.
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = BasicNode,
);

type Entry = openraft::Entry<TypeConfig>;

/// How long a proposal may wait for a Raft leader before failing with `Unavailable`.
pub const PROPOSE_WAIT: Duration = Duration::from_secs(4);
/// How long a forwarded proposal or a join request waits for its reply.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the start-up probes (is there a cluster? is my id taken?) wait for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// The Raft node id of a server: a stable 64-bit hash (FNV-1a) of its id.
pub fn node_id(server_id: &str) -> u64 {
    server_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How a server without Raft state enters a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Start a new cluster of one (`--raft-bootstrap-seed`).
    Seed,
    /// Start a new cluster of exactly these servers (`--raft-bootstrap-peers`).
    Peers(Vec<String>),
    /// Ask a running cluster to add this server.
    Join,
}

/// Reply to a forwarded proposal.
#[derive(Serialize, Deserialize)]
enum ProposeReply {
    Applied(u64),
    Refused(u64, MetadataError),
    Unavailable(String),
}

/// One server's member of the metadata Raft group.
pub struct Group {
    raft: Raft<TypeConfig>,
    me: String,
    bus: Arc<dyn Bus>,
    /// `<ns>.raft`.
    prefix: String,
    /// Most voters (`clustering.raft.max.quorum.size`, 0 = all servers vote).
    max_voters: usize,
    view: Arc<View>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("me", &self.me).finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Unavailable(e.to_string())
}

/// Whether `dir` holds Raft state (the server was part of a cluster before).
pub fn has_state(dir: &Path) -> bool {
    // Looked at without opening (which would create the directory).
    dir.join("vote.json").exists()
        || dir.join("snapshot.json").exists()
        || std::fs::metadata(dir.join("log")).is_ok_and(|m| m.len() > 0)
}

/// Whether a running cluster answers in `namespace` (used to decide between standalone and joining).
pub async fn cluster_exists(bus: &Arc<dyn Bus>, namespace: &str) -> Option<String> {
    let reply = bus
        .request(
            format!("{namespace}.raft.cluster"),
            Bytes::new(),
            PROBE_TIMEOUT,
        )
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&reply.payload).into_owned())
}

impl Group {
    /// Starts this server's Raft node with its state in `dir`; without state, enters the cluster as `bootstrap`
    /// says. Refuses a server id that a running server already uses, and a second seed.
    pub(crate) async fn start(
        dir: &Path,
        me: String,
        bus: Arc<dyn Bus>,
        clustering: &ClusteringConfig,
        view: Arc<View>,
        bootstrap: Bootstrap,
    ) -> Result<Arc<Group>, MetadataError> {
        let prefix = format!("{}.raft", clustering.namespace);
        if bus
            .request(format!("{prefix}.{me}.ping"), Bytes::new(), PROBE_TIMEOUT)
            .await
            .is_ok()
        {
            return Err(MetadataError::Invalid(format!(
                "server id {me:?} is already used by a running server in namespace {:?}; give each server its own \
                 --id",
                clustering.namespace
            )));
        }
        let log = LogStore::open(dir).map_err(|e| MetadataError::Storage(e.to_string()))?;
        let fresh = !log.has_state();
        if fresh
            && bootstrap == Bootstrap::Seed
            && let Some(other) = cluster_exists(&bus, &clustering.namespace).await
        {
            return Err(MetadataError::Invalid(format!(
                "a cluster already exists in namespace {:?} (server {other} answered): a second seed would split \
                 it; start this server without --raft-bootstrap-seed and it joins",
                clustering.namespace
            )));
        }
        if let Bootstrap::Peers(peers) = &bootstrap
            && !peers.contains(&me)
        {
            return Err(MetadataError::Invalid(format!(
                "--raft-bootstrap-peers {peers:?} does not name this server ({me:?}); list every server of the new \
                 cluster, this one included"
            )));
        }
        let machine = StateMachine::open(dir.to_path_buf(), view.clone())
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        let config = openraft::Config {
            cluster_name: clustering.namespace.clone(),
            heartbeat_interval: 150,
            election_timeout_min: 800,
            election_timeout_max: 1600,
            install_snapshot_timeout: 2000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                clustering.raft_snapshot_threshold.max(16),
            ),
            max_in_snapshot_log_to_keep: 64,
            snapshot_max_chunk_size: 256 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetadataError::Invalid(format!("Raft configuration: {e}")))?;
        let network = Network {
            bus: bus.clone(),
            prefix: prefix.clone(),
        };
        let raft = Raft::new(node_id(&me), Arc::new(config), network, log, machine)
            .await
            .map_err(unavailable)?;
        let group = Arc::new(Group {
            raft,
            me: me.clone(),
            bus: bus.clone(),
            prefix: prefix.clone(),
            max_voters: clustering.raft_max_quorum_size as usize,
            view,
            tasks: Mutex::new(Vec::new()),
        });
        group.serve().await?;
        if fresh {
            match &bootstrap {
                Bootstrap::Seed => {
                    let members = BTreeMap::from([(node_id(&me), BasicNode::new(&me))]);
                    group.raft.initialize(members).await.map_err(unavailable)?;
                }
                Bootstrap::Peers(peers) => {
                    let members: BTreeMap<u64, BasicNode> = peers
                        .iter()
                        .map(|p| (node_id(p), BasicNode::new(p)))
                        .collect();
                    group.raft.initialize(members).await.map_err(unavailable)?;
                }
                Bootstrap::Join => {}
            }
        }
        if bootstrap == Bootstrap::Join {
            // New, or restarting as a non-voter: make sure the leader has (re)admitted this server.
            let joiner = group.clone();
            let task = tokio::spawn(async move { joiner.join_loop().await });
            group.tasks.lock().push(task);
        }
        tracing::info!(
            server_id = me,
            node_id = node_id(&me),
            fresh,
            "metadata Raft node started"
        );
        Ok(group)
    }

    /// This server's id.
    pub fn server_id(&self) -> &str {
        &self.me
    }

    /// The current Raft leader's server id, if one is known.
    pub fn leader(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .nodes()
            .find(|(id, _)| **id == leader)
            .map(|(_, n)| n.addr.clone())
    }

    /// Whether this server is the Raft leader (the controller).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Every member of the group (voters and non-voters), by server id, sorted.
    pub fn members(&self) -> Vec<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let mut ids: Vec<String> = metrics
            .membership_config
            .nodes()
            .map(|(_, n)| n.addr.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The voting members, by server id, sorted.
    pub fn voters(&self) -> Vec<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voter_ids: BTreeSet<u64> = membership.voter_ids().collect();
        let mut ids: Vec<String> = membership
            .nodes()
            .filter(|(id, _)| voter_ids.contains(id))
            .map(|(_, n)| n.addr.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Proposes `op`: applied through this server when it leads, forwarded to the leader otherwise. Returns the
    /// Raft log index of the op once it is applied here too. Fails with `Unavailable` when no leader can be
    /// reached within [`PROPOSE_WAIT`].
    pub async fn propose(&self, op: Op) -> Result<u64, MetadataError> {
        let proposal = Proposal {
            op,
            now: super::now_ns(),
        };
        let deadline = tokio::time::Instant::now() + PROPOSE_WAIT;
        let mut last_problem = String::from("no metadata leader is elected");
        loop {
            match self.raft.client_write(proposal.clone()).await {
                Ok(resp) => {
                    let index = resp.log_id.index;
                    return match resp.data.error {
                        None => Ok(index),
                        Some(e) => Err(e),
                    };
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    if let Some(node) = f.leader_node
                        && node.addr != self.me
                    {
                        match self.forward(&node.addr, &proposal).await {
                            Ok(ProposeReply::Applied(index)) => {
                                self.wait_applied(index, deadline).await;
                                return Ok(index);
                            }
                            Ok(ProposeReply::Refused(index, e)) => {
                                self.wait_applied(index, deadline).await;
                                return Err(e);
                            }
                            Ok(ProposeReply::Unavailable(why)) => last_problem = why,
                            Err(why) => last_problem = why,
                        }
                    }
                }
                Err(e) => last_problem = e.to_string(),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MetadataError::Unavailable(format!(
                    "metadata change not committed within {PROPOSE_WAIT:?}: {last_problem}; retry"
                )));
            }
            // Retry with a short pause while an election settles.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn forward(&self, leader: &str, proposal: &Proposal) -> Result<ProposeReply, String> {
        let payload = serde_json::to_vec(proposal).map_err(|e| e.to_string())?;
        let reply = self
            .bus
            .request(
                format!("{}.{leader}.propose", self.prefix),
                Bytes::from(payload),
                FORWARD_TIMEOUT,
            )
            .await
            .map_err(|e| format!("forwarding to the metadata leader {leader}: {e}"))?;
        serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())
    }

    /// Waits until the local state has applied `index` (a forwarded op becomes visible here too).
    async fn wait_applied(&self, index: u64, deadline: tokio::time::Instant) {
        let mut changes = self.view.changes.subscribe();
        let _ = tokio::time::timeout_at(deadline, changes.wait_for(|i| *i >= index)).await;
    }

    /// Subscribes to this server's Raft subjects and answers them.
    async fn serve(self: &Arc<Self>) -> Result<(), MetadataError> {
        let mine = self
            .bus
            .subscribe(format!("{}.{}.*", self.prefix, self.me), None)
            .await
            .map_err(unavailable)?;
        let join = self
            .bus
            .subscribe(
                format!("{}.join", self.prefix),
                Some(format!("{}.join", self.prefix)),
            )
            .await
            .map_err(unavailable)?;
        let cluster = self
            .bus
            .subscribe(format!("{}.cluster", self.prefix), None)
            .await
            .map_err(unavailable)?;
        self.bus.flush().await.map_err(unavailable)?;
        let mut incoming = futures::stream::select_all([mine, join, cluster]);
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while let Some(message) = incoming.next().await {
                let Some(group) = weak.upgrade() else { break };
                tokio::spawn(async move { group.handle(message).await });
            }
        });
        self.tasks.lock().push(task);
        Ok(())
    }

    async fn handle(self: Arc<Self>, message: BusMessage) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let verb = message.subject.rsplit('.').next().unwrap_or_default();
        let is_cluster_probe = message.subject == format!("{}.cluster", self.prefix);
        let is_any_join = message.subject == format!("{}.join", self.prefix);
        let body: Option<Vec<u8>> = if is_cluster_probe {
            // Only members answer: a server still waiting to join is not a cluster.
            if self.members().is_empty() {
                return;
            }
            let answer = serde_json::json!({
                "server": self.me,
                "leader": self.leader(),
                "voters": self.voters(),
            });
            Some(answer.to_string().into_bytes())
        } else if is_any_join || verb == "join" {
            Some(self.handle_join(&message.payload).await)
        } else {
            match verb {
                "ping" => Some(self.me.clone().into_bytes()),
                "append" => match serde_json::from_slice(&message.payload) {
                    Ok(req) => serde_json::to_vec(&self.raft.append_entries(req).await).ok(),
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed Raft append");
                        None
                    }
                },
                "vote" => match serde_json::from_slice(&message.payload) {
                    Ok(req) => serde_json::to_vec(&self.raft.vote(req).await).ok(),
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed Raft vote");
                        None
                    }
                },
                "snapshot" => match serde_json::from_slice(&message.payload) {
                    Ok(req) => serde_json::to_vec(&self.raft.install_snapshot(req).await).ok(),
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed Raft snapshot chunk");
                        None
                    }
                },
                "propose" => {
                    let reply = match serde_json::from_slice::<Proposal>(&message.payload) {
                        Ok(p) => match self.raft.client_write(p).await {
                            Ok(resp) => match resp.data.error {
                                None => ProposeReply::Applied(resp.log_id.index),
                                Some(e) => ProposeReply::Refused(resp.log_id.index, e),
                            },
                            Err(e) => ProposeReply::Unavailable(e.to_string()),
                        },
                        Err(e) => ProposeReply::Unavailable(format!("malformed proposal: {e}")),
                    };
                    serde_json::to_vec(&reply).ok()
                }
                _ => None,
            }
        };
        if let Some(body) = body
            && let Err(e) = self
                .bus
                .publish(reply, None, Vec::new(), Bytes::from(body))
                .await
        {
            tracing::debug!(error = %e, "could not answer a Raft request");
        }
    }

    /// Adds a joining server: as a non-voter first (it catches up), then as a voter while there are fewer than
    /// `clustering.raft.max.quorum.size` voters. A non-leader forwards the request to the leader.
    async fn handle_join(&self, payload: &[u8]) -> Vec<u8> {
        let joiner = String::from_utf8_lossy(payload).into_owned();
        let result: Result<(), String> = async {
            if joiner.is_empty() {
                return Err("empty server id".to_string());
            }
            if !self.is_leader() {
                let leader = self.leader().ok_or("no metadata leader is elected")?;
                if leader == self.me {
                    return Err("leadership is changing".into());
                }
                let reply = self
                    .bus
                    .request(
                        format!("{}.{leader}.join", self.prefix),
                        Bytes::from(joiner.clone()),
                        FORWARD_TIMEOUT,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&reply.payload).into_owned();
                return if text == "ok" { Ok(()) } else { Err(text) };
            }
            let id = node_id(&joiner);
            let members = self.members();
            if !members.contains(&joiner) {
                self.raft
                    .add_learner(id, BasicNode::new(&joiner), true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let voters = self.voters();
            if !voters.contains(&joiner) && (self.max_voters == 0 || voters.len() < self.max_voters)
            {
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tracing::info!(server_id = joiner, "server joined the metadata group");
            Ok(())
        }
        .await;
        match result {
            Ok(()) => b"ok".to_vec(),
            Err(e) => e.into_bytes(),
        }
    }

    /// Asks the cluster to add this server until the leader confirms it (as a voter, or as a non-voter when the
    /// voters are capped). Joining is idempotent, so a server added only as a non-voter (a membership change was
    /// under way) asks again and is promoted.
    async fn join_loop(self: Arc<Self>) {
        let mut attempt = 0u32;
        loop {
            if self.voters().contains(&self.me) {
                return;
            }
            let result = self
                .bus
                .request(
                    format!("{}.join", self.prefix),
                    Bytes::from(self.me.clone()),
                    FORWARD_TIMEOUT * 2,
                )
                .await;
            match result {
                Ok(reply) if reply.payload.as_ref() == b"ok" => return,
                Ok(reply) => {
                    attempt += 1;
                    if attempt % 10 == 1 {
                        tracing::info!(reason = %String::from_utf8_lossy(&reply.payload), "join refused; retrying");
                    }
                }
                Err(e) => {
                    attempt += 1;
                    if attempt % 10 == 1 {
                        tracing::info!(error = %e, "no cluster answered the join request; retrying");
                    }
                }
            }
            // Back off briefly before asking again.
            tokio::time::sleep(Duration::from_millis(200 + 50 * u64::from(attempt.min(10)))).await;
        }
    }

    /// Stops the Raft node and its service.
    pub async fn shutdown(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        let _ = self.raft.shutdown().await;
    }
}

// `Cursor` is the snapshot data type named by `declare_raft_types!`.
#[allow(dead_code)]
type SnapshotData = Cursor<Vec<u8>>;
