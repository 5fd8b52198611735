//! The Raft state machine: applies committed [`Proposal`]s to a [`MetadataState`] and publishes every new state
//! to the [`View`] the rest of the server reads. Snapshots are the serialized state, kept in
//! `<data.dir>/raft/snapshot.json`.

// openraft's StorageError is large by design; the storage traits return it, so our helpers do too.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Entry, Outcome, TypeConfig};
use crate::metadata::{MetadataState, View, write_atomically};

type NodeId = u64;

/// A snapshot as stored on disk: its meta and the serialized state.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: String,
}

struct Machine {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: MetadataState,
    snapshot: Option<StoredSnapshot>,
}

/// The state machine (cheap to clone; clones share state).
#[derive(Clone)]
pub(crate) struct StateMachine {
    inner: Arc<Mutex<Machine>>,
    view: Arc<View>,
    dir: PathBuf,
}

fn sm_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the stored snapshot if there is one.
    pub(crate) fn open(dir: PathBuf, view: Arc<View>) -> std::io::Result<StateMachine> {
        let path = dir.join("snapshot.json");
        let snapshot: Option<StoredSnapshot> = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::other(format!("{} is damaged: {e}", path.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut machine = Machine {
            last_applied: None,
            membership: StoredMembership::default(),
            state: MetadataState::default(),
            snapshot: None,
        };
        if let Some(s) = snapshot {
            machine.state = serde_json::from_str(&s.data).map_err(|e| {
                std::io::Error::other(format!("{} is damaged: {e}", path.display()))
            })?;
            machine.last_applied = s.meta.last_log_id;
            machine.membership = s.meta.last_membership.clone();
            machine.snapshot = Some(s);
        }
        view.publish(Arc::new(machine.state.clone()));
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(machine)),
            view,
            dir,
        })
    }

    fn store_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let bytes = serde_json::to_vec(snapshot).map_err(sm_error)?;
        write_atomically(&self.dir.join("snapshot.json"), &bytes).map_err(sm_error)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let stored = {
            let inner = self.inner.lock();
            let data = serde_json::to_string(&inner.state).map_err(sm_error)?;
            let snapshot_id = match inner.last_applied {
                Some(id) => format!("{}-{}", id.leader_id, id.index),
                None => "empty".to_string(),
            };
            StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: inner.last_applied,
                    last_membership: inner.membership.clone(),
                    snapshot_id,
                },
                data,
            }
        };
        self.store_snapshot(&stored)?;
        self.inner.lock().snapshot = Some(stored.clone());
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data.into_bytes())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let inner = self.inner.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        let published = {
            let mut inner = self.inner.lock();
            for entry in entries {
                inner.last_applied = Some(entry.log_id);
                let index = entry.log_id.index;
                let outcome = match entry.payload {
                    EntryPayload::Blank => Outcome { error: None },
                    EntryPayload::Normal(proposal) => {
                        let error = inner.state.apply_at(proposal.op, proposal.now, index).err();
                        Outcome { error }
                    }
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(entry.log_id), m);
                        Outcome { error: None }
                    }
                };
                // Every entry counts, so the index watchers wait on is the Raft log index.
                inner.state.index = index;
                outcomes.push(outcome);
            }
            Arc::new(inner.state.clone())
        };
        self.view.publish(published);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = String::from_utf8(snapshot.into_inner()).map_err(sm_error)?;
        let state: MetadataState = serde_json::from_str(&data).map_err(sm_error)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.store_snapshot(&stored)?;
        let published = {
            let mut inner = self.inner.lock();
            inner.state = state;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            inner.snapshot = Some(stored);
            Arc::new(inner.state.clone())
        };
        self.view.publish(published);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        Ok(inner.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone().into_bytes())),
        }))
    }
}
