//! The durable Raft log: vote, committed id and entries in `<data.dir>/raft/`.
//!
//! Entries live in one append-only file of records (`[len u32][crc32c u32][json]`): an appended entry, a
//! truncation point or a purge point. Opening replays the file and cuts a torn or corrupt tail (a crash mid-write
//! loses only records whose append was never reported as flushed). A purge rewrites the file with the live
//! entries only, atomically. The vote and the committed id are small JSON files written atomically.

// openraft's StorageError is large by design; the storage traits return it, so our helpers do too.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Entry, TypeConfig};
use crate::metadata::write_atomically;

type NodeId = u64;

#[derive(Serialize, Deserialize)]
enum Record {
    /// An appended entry.
    Entry(Box<Entry>),
    /// Entries at this index and after were removed.
    Truncate(u64),
    /// Entries up to this id were purged.
    Purge(LogId<NodeId>),
}

struct LogFile {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

/// The Raft log store (cheap to clone; every clone shares the same file).
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogFile>>,
}

fn io_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

fn encode(record: &Record) -> Result<Vec<u8>, StorageError<NodeId>> {
    let json = serde_json::to_vec(record).map_err(io_error)?;
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(&u32::try_from(json.len()).map_err(io_error)?.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying it and cutting a torn tail.
    pub(crate) fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("log");
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut last_purged = None;
        let mut pos = 0usize;
        while pos + 8 <= bytes.len() {
            let len =
                u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
            let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if crc32c::crc32c(body) != crc {
                break;
            }
            let Ok(record) = serde_json::from_slice::<Record>(body) else {
                break;
            };
            match record {
                Record::Entry(e) => {
                    entries.insert(e.log_id.index, *e);
                }
                Record::Truncate(index) => {
                    entries.split_off(&index);
                }
                Record::Purge(id) => {
                    entries = entries.split_off(&(id.index + 1));
                    last_purged = Some(id);
                }
            }
            pos += 8 + len;
        }
        if pos < bytes.len() {
            tracing::warn!(path = %path.display(), kept = pos, size = bytes.len(), "cutting a torn Raft log tail");
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(pos as u64)?;
        file.sync_all()?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogFile {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
                vote: read_json(&dir.join("vote.json"))?,
                committed: read_json(&dir.join("committed.json"))?,
            })),
        })
    }

    /// Whether anything was ever stored (a vote or an entry): the server is part of a cluster.
    pub(crate) fn has_state(&self) -> bool {
        let inner = self.inner.lock();
        inner.vote.is_some() || !inner.entries.is_empty() || inner.last_purged.is_some()
    }
}

impl LogFile {
    fn write(&mut self, records: &[Record]) -> Result<(), StorageError<NodeId>> {
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&encode(r)?);
        }
        self.file.write_all(&buf).map_err(io_error)?;
        self.file.sync_data().map_err(io_error)
    }

    fn rewrite(&mut self) -> Result<(), StorageError<NodeId>> {
        let mut buf = Vec::new();
        if let Some(id) = self.last_purged {
            buf.extend_from_slice(&encode(&Record::Purge(id))?);
        }
        for e in self.entries.values() {
            buf.extend_from_slice(&encode(&Record::Entry(Box::new(e.clone())))?);
        }
        let path = self.dir.join("log");
        write_atomically(&path, &buf).map_err(io_error)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_error)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        let bytes = serde_json::to_vec(vote).map_err(io_error)?;
        write_atomically(&inner.dir.join("vote.json"), &bytes).map_err(io_error)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        let bytes = serde_json::to_vec(&committed).map_err(io_error)?;
        write_atomically(&inner.dir.join("committed.json"), &bytes).map_err(io_error)?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock();
        let entries: Vec<Entry> = entries.into_iter().collect();
        let records: Vec<Record> = entries
            .iter()
            .map(|e| Record::Entry(Box::new(e.clone())))
            .collect();
        let result = inner.write(&records);
        if result.is_ok() {
            for e in entries {
                inner.entries.insert(e.log_id.index, e);
            }
        }
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        inner.write(&[Record::Truncate(log_id.index)])?;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.last_purged = Some(log_id);
        inner.rewrite()
    }
}
