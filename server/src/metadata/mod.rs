//! Cluster metadata: which streams exist, how their partitions are placed, and their pause/readonly flags.
//!
//! # Layout
//! - [`state`]: the state machine ([`MetadataState`]) and the [`Op`]s that change it.
//! - [`Metadata`]: the handle the rest of the server uses — read a snapshot, propose an op, watch for changes.
//!   Today it is the single-node store: ops apply locally and the state is persisted atomically to
//!   `<data.dir>/metadata.json` before the proposal returns, so a restart recovers every stream and flag. The
//!   clustering work puts an openraft group behind the same handle.
//!   In a cluster the same handle fronts [`raft::Group`]: proposals go through the Raft log (forwarded to the
//!   leader from any server) and every server's state machine publishes the state it applied.
//! - [`placement`]: which servers hold a new partition's replicas, and which one leads it.
//! - [`validate_stream_name`]: the naming rules that keep stream names safe as NATS tokens and directory names.

pub mod placement;
pub mod raft;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::{Mutex, watch};

pub use self::state::{MetadataState, Op, PartitionState, StreamSettings, StreamState};

/// Why a metadata operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum MetadataError {
    /// No metadata leader could be reached (an election is under way, or no quorum); retry.
    #[error("metadata unavailable: {0}")]
    Unavailable(String),
    /// A stream with that name exists.
    #[error("stream {0:?} already exists")]
    StreamExists(String),
    /// No stream with that name.
    #[error("no such stream {0:?}")]
    NoSuchStream(String),
    /// The stream has no such partition.
    #[error("no such partition {partition} in stream {stream:?}")]
    NoSuchPartition {
        /// Stream.
        stream: String,
        /// Partition asked for.
        partition: i32,
    },
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The op was proposed under a leader epoch that is no longer current.
    #[error("stale leader epoch: {0}")]
    StaleEpoch(String),
    /// The state could not be made durable; the op was not applied.
    #[error("cannot persist metadata: {0}")]
    Storage(String),
}

/// The metadata handle: cheap to clone, shared by the API and the partition manager.
#[derive(Debug, Clone)]
pub struct Metadata {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// This server's id.
    server_id: String,
    /// The state readers see.
    view: Arc<View>,
    /// Where changes go.
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    /// One server: ops apply here and persist to `metadata.json`.
    Local {
        /// Serializes proposals so persisting and publishing happen in apply order.
        write_lock: Mutex<()>,
        /// Where the state is persisted.
        path: PathBuf,
    },
    /// A cluster: ops go through the Raft group.
    Raft(Arc<raft::Group>),
}

/// The state as last applied, shared by the handle (readers) and whatever applies ops (the local store or the
/// Raft state machine).
#[derive(Debug)]
pub(crate) struct View {
    /// The current state; replaced whole on every change.
    state: RwLock<Arc<MetadataState>>,
    /// The index of the last applied op, for watchers (the partition manager reconciles on change).
    changes: watch::Sender<u64>,
}

impl View {
    fn new(state: MetadataState) -> Arc<View> {
        let (changes, _) = watch::channel(state.index);
        Arc::new(View {
            state: RwLock::new(Arc::new(state)),
            changes,
        })
    }

    /// Replaces the state and wakes watchers.
    pub(crate) fn publish(&self, state: Arc<MetadataState>) {
        let index = state.index;
        *self.state.write() = state;
        self.changes.send_replace(index);
    }
}

impl Metadata {
    /// Opens (or creates) the store in `data_dir`, recovering the persisted state.
    pub fn open(data_dir: &Path, server_id: String) -> Result<Metadata, MetadataError> {
        let path = data_dir.join("metadata.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<MetadataState>(&bytes).map_err(|e| {
                MetadataError::Storage(format!("{} is damaged: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetadataState::default(),
            Err(e) => return Err(MetadataError::Storage(format!("{}: {e}", path.display()))),
        };
        Ok(Metadata {
            inner: Arc::new(Inner {
                server_id,
                view: View::new(state),
                backend: Backend::Local {
                    write_lock: Mutex::new(()),
                    path,
                },
            }),
        })
    }

    /// Opens the clustered store: this server's member of the metadata Raft group, with its state in
    /// `<data_dir>/raft/`.
    pub async fn open_clustered(
        data_dir: &Path,
        server_id: String,
        bus: Arc<dyn crate::bus::Bus>,
        clustering: &crate::config::ClusteringConfig,
        bootstrap: raft::Bootstrap,
    ) -> Result<Metadata, MetadataError> {
        let view = View::new(MetadataState::default());
        let group = raft::Group::start(
            &data_dir.join("raft"),
            server_id.clone(),
            bus,
            clustering,
            view.clone(),
            bootstrap,
        )
        .await?;
        Ok(Metadata {
            inner: Arc::new(Inner {
                server_id,
                view,
                backend: Backend::Raft(group),
            }),
        })
    }

    /// The Raft group, when this server is part of a cluster.
    pub fn raft(&self) -> Option<&Arc<raft::Group>> {
        match &self.inner.backend {
            Backend::Raft(group) => Some(group),
            Backend::Local { .. } => None,
        }
    }

    /// Whether this server is the metadata leader (the controller); always true on a single server.
    pub fn is_controller(&self) -> bool {
        self.raft().is_none_or(|g| g.is_leader())
    }

    /// Stops the Raft node, if any.
    pub async fn shutdown(&self) {
        if let Some(group) = self.raft() {
            group.shutdown().await;
        }
    }

    /// This server's id.
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// The servers of the cluster, sorted (this server alone when it is not clustered).
    pub fn servers(&self) -> Vec<String> {
        match &self.inner.backend {
            Backend::Raft(group) => group.members(),
            Backend::Local { .. } => vec![self.inner.server_id.clone()],
        }
    }

    /// A consistent snapshot of the whole state.
    pub fn snapshot(&self) -> Arc<MetadataState> {
        self.inner.view.state.read().clone()
    }

    /// One stream, if it exists.
    pub fn stream(&self, name: &str) -> Option<StreamState> {
        self.inner.view.state.read().streams.get(name).cloned()
    }

    /// A receiver that changes whenever an op is applied.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.view.changes.subscribe()
    }

    /// Applies `op` and notifies watchers; returns the index of the applied op. On one server the new state is
    /// persisted before this returns; in a cluster the op is committed through Raft (from any server) and applied
    /// here. On any error nothing changes.
    pub async fn propose(&self, op: Op) -> Result<u64, MetadataError> {
        let (write_lock, path) = match &self.inner.backend {
            Backend::Raft(group) => return group.propose(op).await,
            Backend::Local { write_lock, path } => (write_lock, path),
        };
        let _guard = write_lock.lock().await;
        let mut next = (**self.inner.view.state.read()).clone();
        next.apply(op, now_ns())?;
        let bytes =
            serde_json::to_vec_pretty(&next).map_err(|e| MetadataError::Storage(e.to_string()))?;
        let path = path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| MetadataError::Storage(e.to_string()))?
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        let index = next.index;
        self.inner.view.publish(Arc::new(next));
        Ok(index)
    }
}

/// Wall-clock time in ns since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content: temp file, fsync, rename,
/// fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Checks a stream name: non-empty, not reserved (`__` prefix), and free of characters that would break NATS
/// subjects or directory names (`.`, `*`, `>`, `/`, `\`, whitespace, control characters).
pub fn validate_stream_name(name: &str) -> Result<(), MetadataError> {
    let invalid = |why: &str| {
        Err(MetadataError::Invalid(format!(
            "invalid stream name {name:?}: {why}"
        )))
    };
    if name.trim().is_empty() {
        return invalid("it is empty");
    }
    if name.starts_with("__") {
        return invalid("names starting with \"__\" are reserved for internal streams");
    }
    if name == "." || name == ".." {
        return invalid("it is a path component");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control())
    {
        return invalid(&format!("it contains {c:?}"));
    }
    if name.len() > 255 {
        return invalid("it is longer than 255 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        for ok in ["orders", "a-b_c", "Stream9", "ünïcode"] {
            assert!(validate_stream_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "  ", "__x", "a.b", "a*", "a>", "a/b", "a\\b", "a b", "a\nb", "..",
        ] {
            assert!(validate_stream_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let md = Metadata::open(dir.path(), "s1".into()).unwrap();
        let changes = md.watch();
        md.propose(Op::CreateStream {
            name: "a".into(),
            subject: "a".into(),
            group: None,
            partitions: 2,
            replicas: vec![vec!["s1".into()]],
            settings: StreamSettings::default(),
        })
        .await
        .unwrap();
        assert!(changes.has_changed().unwrap());
        md.propose(Op::PauseStream {
            name: "a".into(),
            partitions: vec![1],
            resume_all: false,
        })
        .await
        .unwrap();
        let reopened = Metadata::open(dir.path(), "s1".into()).unwrap();
        assert_eq!(*reopened.snapshot(), *md.snapshot());
        assert!(reopened.stream("a").unwrap().partitions[1].paused);
    }

    #[test]
    fn damaged_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metadata.json"), b"{not json").unwrap();
        let err = Metadata::open(dir.path(), "s1".into()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
