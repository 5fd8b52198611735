//! The metadata state machine: streams, partitions and their flags, changed only by [`Op`]s.
//!
//! Every change goes through [`MetadataState::apply`], which validates the op against the current state and then
//! mutates it, so the same code serves the single-node store today and a Raft state machine later (each server
//! applies the same ops in the same order and reaches the same state). `index` counts applied ops, like a Raft
//! log index, and is what partition epochs are taken from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::MetadataError;

/// Per-stream settings from `CreateStream`; `None` means "use the server default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {
    /// Retention by bytes.
    pub retention_max_bytes: Option<i64>,
    /// Retention by message count.
    pub retention_max_messages: Option<i64>,
    /// Retention by age, in milliseconds.
    pub retention_max_age_ms: Option<i64>,
    /// Cleaner interval, in milliseconds.
    pub cleaner_interval_ms: Option<i64>,
    /// Segment roll size.
    pub segment_max_bytes: Option<i64>,
    /// Segment roll age, in milliseconds.
    pub segment_max_age_ms: Option<i64>,
    /// Compaction parallelism (accepted for compatibility).
    pub compact_max_goroutines: Option<i32>,
    /// Compaction on or off.
    pub compact_enabled: Option<bool>,
    /// Auto-pause time, in milliseconds.
    pub auto_pause_time_ms: Option<i64>,
    /// Do not auto-pause while subscribed.
    pub auto_pause_disable_if_subscribers: Option<bool>,
    /// Smallest ISR that may commit.
    pub min_isr: Option<i32>,
    /// Optimistic concurrency control.
    pub optimistic_concurrency_control: Option<bool>,
    /// Encryption at rest.
    pub encryption: Option<bool>,
}

/// First and latest time (ns since the epoch) an event happened; 0 = never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTimestamps {
    /// First occurrence.
    pub first: i64,
    /// Latest occurrence.
    pub latest: i64,
}

impl EventTimestamps {
    /// Records an occurrence at `now`.
    pub fn record(&mut self, now: i64) {
        if self.first == 0 {
            self.first = now;
        }
        self.latest = now;
    }
}

/// One partition's placement and flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Partition number, 0-based.
    pub id: i32,
    /// Servers holding a replica.
    pub replicas: Vec<String>,
    /// Replicas in sync with the leader.
    pub isr: Vec<String>,
    /// The leading server.
    pub leader: String,
    /// Index of the op that made the current leader leader (fences stale leaders).
    pub leader_epoch: u64,
    /// Index of the op that last changed this partition's placement.
    pub epoch: u64,
    /// Paused: the partition is closed until published to (or subscribed with `resume`).
    pub paused: bool,
    /// Readonly: publishes are refused; subscribers see the end.
    pub readonly: bool,
    /// When it was paused.
    pub pause_timestamps: EventTimestamps,
    /// When it was made readonly.
    pub readonly_timestamps: EventTimestamps,
}

/// One stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Unique name.
    pub name: String,
    /// NATS subject of partition 0; partition i > 0 uses `<subject>.<i>`.
    pub subject: String,
    /// NATS queue group the partition leaders join, if any.
    pub group: Option<String>,
    /// Replication factor after resolving 0 and -1.
    pub replication_factor: i32,
    /// Creation time, ns since the epoch.
    pub creation_timestamp: i64,
    /// Settings given at creation.
    pub settings: StreamSettings,
    /// When paused with `resumeAll`, a publish to any partition resumes every partition.
    pub resume_all: bool,
    /// Partitions in id order.
    pub partitions: Vec<PartitionState>,
}

impl StreamState {
    /// The NATS subject partition `id` listens on.
    pub fn partition_subject(&self, id: i32) -> String {
        partition_subject(&self.subject, id)
    }

    /// The partition with this id.
    pub fn partition(&self, id: i32) -> Option<&PartitionState> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// The NATS subject of partition `id` of a stream on `subject`.
pub fn partition_subject(subject: &str, id: i32) -> String {
    if id == 0 {
        subject.to_string()
    } else {
        format!("{subject}.{id}")
    }
}

/// A change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create a stream with its partitions placed on `replicas`.
    CreateStream {
        /// Name.
        name: String,
        /// Subject.
        subject: String,
        /// Queue group.
        group: Option<String>,
        /// Partition count (≥ 1).
        partitions: i32,
        /// Replicas of each partition, leader first: one list per partition, or a single list used for every
        /// partition.
        replicas: Vec<Vec<String>>,
        /// Settings.
        settings: StreamSettings,
    },
    /// Delete a stream.
    DeleteStream {
        /// Name.
        name: String,
    },
    /// Pause partitions (all when empty).
    PauseStream {
        /// Name.
        name: String,
        /// Partitions to pause; empty = all.
        partitions: Vec<i32>,
        /// Resume all partitions when any is published to.
        resume_all: bool,
    },
    /// Resume partitions (all when empty).
    ResumeStream {
        /// Name.
        name: String,
        /// Partitions to resume; empty = all.
        partitions: Vec<i32>,
    },
    /// Set or clear the readonly flag of partitions (all when empty).
    SetReadonly {
        /// Name.
        name: String,
        /// Partitions; empty = all.
        partitions: Vec<i32>,
        /// The new flag.
        readonly: bool,
    },
    /// Remove a replica from a partition's ISR (proposed by the partition leader).
    ShrinkIsr {
        /// Stream.
        name: String,
        /// Partition.
        partition: i32,
        /// The replica leaving the ISR.
        replica: String,
        /// The proposing leader's epoch; a stale leader's proposal is refused.
        leader_epoch: u64,
    },
    /// Add a caught-up replica back to a partition's ISR (proposed by the partition leader).
    ExpandIsr {
        /// Stream.
        name: String,
        /// Partition.
        partition: i32,
        /// The replica rejoining the ISR.
        replica: String,
        /// The proposing leader's epoch; a stale leader's proposal is refused.
        leader_epoch: u64,
    },
    /// Make another ISR member the partition leader (proposed by the controller when the leader is gone). The
    /// old leader leaves the ISR; it rejoins once it has caught up with the new leader.
    ChangeLeader {
        /// Stream.
        name: String,
        /// Partition.
        partition: i32,
        /// The new leader, an ISR member.
        leader: String,
        /// The leader epoch being replaced; the op is refused if the partition moved on meanwhile.
        leader_epoch: u64,
    },
}

/// Every stream, plus the index of the last applied op.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    /// Number of ops applied so far.
    pub index: u64,
    /// Streams by name.
    pub streams: BTreeMap<String, StreamState>,
}

impl MetadataState {
    /// Validates `op` and applies it at time `now` (ns) as the next op. On error nothing changes.
    pub fn apply(&mut self, op: Op, now: i64) -> Result<(), MetadataError> {
        self.apply_at(op, now, self.index + 1)
    }

    /// Validates `op` and applies it as the op at log index `index` (the Raft log index in a cluster; epochs set
    /// by the op are this index). On success `self.index` becomes `index`; on error nothing changes.
    pub fn apply_at(&mut self, op: Op, now: i64, index: u64) -> Result<(), MetadataError> {
        match op {
            Op::CreateStream {
                name,
                subject,
                group,
                partitions,
                replicas,
                settings,
            } => {
                if self.streams.contains_key(&name) {
                    return Err(MetadataError::StreamExists(name));
                }
                if partitions < 1 {
                    return Err(MetadataError::Invalid(format!(
                        "a stream needs at least one partition, got {partitions}"
                    )));
                }
                let count = usize::try_from(partitions).unwrap_or(0);
                if replicas.len() != 1 && replicas.len() != count {
                    return Err(MetadataError::Invalid(format!(
                        "placement names {} replica lists for {partitions} partitions",
                        replicas.len()
                    )));
                }
                if replicas.iter().any(|r| r.is_empty()) {
                    return Err(MetadataError::Invalid(
                        "no replicas to place the stream on".into(),
                    ));
                }
                let partitions: Vec<PartitionState> = (0..partitions)
                    .map(|id| {
                        let replicas = &replicas[usize::try_from(id).unwrap_or(0) % replicas.len()];
                        PartitionState {
                            id,
                            replicas: replicas.clone(),
                            isr: replicas.clone(),
                            leader: replicas[0].clone(),
                            leader_epoch: index,
                            epoch: index,
                            paused: false,
                            readonly: false,
                            pause_timestamps: EventTimestamps::default(),
                            readonly_timestamps: EventTimestamps::default(),
                        }
                    })
                    .collect();
                let replication_factor =
                    i32::try_from(partitions[0].replicas.len()).unwrap_or(i32::MAX);
                self.streams.insert(
                    name.clone(),
                    StreamState {
                        name,
                        subject,
                        group,
                        replication_factor,
                        creation_timestamp: now,
                        settings,
                        resume_all: false,
                        partitions,
                    },
                );
            }
            Op::DeleteStream { name } => {
                if self.streams.remove(&name).is_none() {
                    return Err(MetadataError::NoSuchStream(name));
                }
            }
            Op::PauseStream {
                name,
                partitions,
                resume_all,
            } => {
                let stream = self.stream_mut(&name)?;
                let ids = select(stream, &partitions)?;
                for id in ids {
                    let p = &mut stream.partitions[id];
                    if !p.paused {
                        p.paused = true;
                        p.pause_timestamps.record(now);
                    }
                }
                stream.resume_all = resume_all;
            }
            Op::ResumeStream { name, partitions } => {
                let stream = self.stream_mut(&name)?;
                let ids = select(stream, &partitions)?;
                for id in ids {
                    stream.partitions[id].paused = false;
                }
                if stream.partitions.iter().all(|p| !p.paused) {
                    stream.resume_all = false;
                }
            }
            Op::SetReadonly {
                name,
                partitions,
                readonly,
            } => {
                let stream = self.stream_mut(&name)?;
                let ids = select(stream, &partitions)?;
                for id in ids {
                    let p = &mut stream.partitions[id];
                    if p.readonly != readonly {
                        p.readonly = readonly;
                        p.readonly_timestamps.record(now);
                    }
                }
            }
            Op::ShrinkIsr {
                name,
                partition,
                replica,
                leader_epoch,
            } => {
                let p = self.partition_mut(&name, partition, leader_epoch)?;
                if replica == p.leader {
                    return Err(MetadataError::Invalid(format!(
                        "{replica} leads {name}/{partition} and cannot leave its ISR"
                    )));
                }
                if p.isr.contains(&replica) {
                    p.isr.retain(|r| *r != replica);
                    p.epoch = index;
                }
            }
            Op::ExpandIsr {
                name,
                partition,
                replica,
                leader_epoch,
            } => {
                let p = self.partition_mut(&name, partition, leader_epoch)?;
                if !p.replicas.contains(&replica) {
                    return Err(MetadataError::Invalid(format!(
                        "{replica} is not a replica of {name}/{partition}"
                    )));
                }
                if !p.isr.contains(&replica) {
                    p.isr.push(replica);
                    p.epoch = index;
                }
            }
            Op::ChangeLeader {
                name,
                partition,
                leader,
                leader_epoch,
            } => {
                let p = self.partition_mut(&name, partition, leader_epoch)?;
                if !p.isr.contains(&leader) {
                    return Err(MetadataError::Invalid(format!(
                        "{leader} is not in the ISR of {name}/{partition}: no unclean leader election"
                    )));
                }
                let old = std::mem::replace(&mut p.leader, leader);
                if old != p.leader {
                    p.isr.retain(|r| *r != old);
                }
                p.leader_epoch = index;
                p.epoch = index;
            }
        }
        self.index = index;
        Ok(())
    }

    /// A partition for an op proposed under `leader_epoch`, refused when the partition has a newer leader.
    fn partition_mut(
        &mut self,
        name: &str,
        partition: i32,
        leader_epoch: u64,
    ) -> Result<&mut PartitionState, MetadataError> {
        let stream = self.stream_mut(name)?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| stream.partitions.get_mut(i))
            .ok_or_else(|| MetadataError::NoSuchPartition {
                stream: name.to_string(),
                partition,
            })?;
        if p.leader_epoch != leader_epoch {
            return Err(MetadataError::StaleEpoch(format!(
                "{name}/{partition} is in leader epoch {}, not {leader_epoch}",
                p.leader_epoch
            )));
        }
        Ok(p)
    }

    fn stream_mut(&mut self, name: &str) -> Result<&mut StreamState, MetadataError> {
        self.streams
            .get_mut(name)
            .ok_or_else(|| MetadataError::NoSuchStream(name.into()))
    }
}

/// Resolves a partition list (empty = all) to indexes, refusing unknown ids.
fn select(stream: &StreamState, partitions: &[i32]) -> Result<Vec<usize>, MetadataError> {
    if partitions.is_empty() {
        return Ok((0..stream.partitions.len()).collect());
    }
    partitions
        .iter()
        .map(|&id| {
            usize::try_from(id)
                .ok()
                .filter(|&i| i < stream.partitions.len())
                .ok_or_else(|| MetadataError::NoSuchPartition {
                    stream: stream.name.clone(),
                    partition: id,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, partitions: i32) -> Op {
        Op::CreateStream {
            name: name.into(),
            subject: format!("subj.{name}"),
            group: None,
            partitions,
            replicas: vec![vec!["s1".into()]],
            settings: StreamSettings::default(),
        }
    }

    #[test]
    fn create_pause_resume_readonly_delete() {
        let mut state = MetadataState::default();
        state.apply(create("a", 3), 10).unwrap();
        assert_eq!(state.index, 1);
        let a = &state.streams["a"];
        assert_eq!(a.partitions.len(), 3);
        assert_eq!(a.partition_subject(0), "subj.a");
        assert_eq!(a.partition_subject(2), "subj.a.2");
        assert_eq!(a.partitions[1].leader_epoch, 1);

        assert!(matches!(
            state.apply(create("a", 1), 11),
            Err(MetadataError::StreamExists(_))
        ));
        assert_eq!(state.index, 1, "a refused op does not advance the index");

        state
            .apply(
                Op::PauseStream {
                    name: "a".into(),
                    partitions: vec![1],
                    resume_all: true,
                },
                20,
            )
            .unwrap();
        let a = &state.streams["a"];
        assert!(a.partitions[1].paused && !a.partitions[0].paused && a.resume_all);
        assert_eq!(
            a.partitions[1].pause_timestamps,
            EventTimestamps {
                first: 20,
                latest: 20
            }
        );

        assert!(matches!(
            state.apply(
                Op::PauseStream {
                    name: "a".into(),
                    partitions: vec![3],
                    resume_all: false
                },
                21
            ),
            Err(MetadataError::NoSuchPartition { partition: 3, .. })
        ));
        state
            .apply(
                Op::ResumeStream {
                    name: "a".into(),
                    partitions: vec![],
                },
                30,
            )
            .unwrap();
        assert!(state.streams["a"].partitions.iter().all(|p| !p.paused));
        assert!(!state.streams["a"].resume_all);

        state
            .apply(
                Op::SetReadonly {
                    name: "a".into(),
                    partitions: vec![],
                    readonly: true,
                },
                40,
            )
            .unwrap();
        assert!(state.streams["a"].partitions.iter().all(|p| p.readonly));

        state
            .apply(Op::DeleteStream { name: "a".into() }, 50)
            .unwrap();
        assert!(state.streams.is_empty());
        assert!(matches!(
            state.apply(Op::DeleteStream { name: "a".into() }, 51),
            Err(MetadataError::NoSuchStream(_))
        ));
    }

    #[test]
    fn zero_partitions_refused() {
        let mut state = MetadataState::default();
        assert!(matches!(
            state.apply(create("a", 0), 1),
            Err(MetadataError::Invalid(_))
        ));
    }
}
