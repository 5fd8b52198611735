//! Partitions: one actor per partition this server leads, owning the write side of its commit log.
//!
//! # Layout
//! - [`PartitionHandle`]: what the API holds — the log for readers, flags, counters, and a close signal that
//!   tells subscribers why the partition went away (paused, deleted, shutting down).
//! - [`leader`]: the actor — drains the NATS subscription in batches, appends each batch with one write (and at
//!   most one fsync), advances the high watermark and publishes acks.
//! - [`manager`]: starts and stops actors so that what runs always matches the metadata.
//! - [`controller`]: partition leader failover, run by the metadata leader.
//! - [`replication`]: the leader's side of replication (ISR, high watermark, ALL acks, fetch server).
//! - [`replicator`]: the follower's fetch loop.
//! - [`intake`]: how this server's API publishes reach NATS and, in-process, this server's own leaders.
//! - [`outbox`]: where acks go (in-process to this server's own ack inboxes, over NATS to the rest).
//! - [`settings`]: a stream's effective settings (server defaults overridden per stream).

pub mod controller;
pub mod intake;
pub mod leader;
pub mod manager;
pub mod outbox;
pub mod replication;
pub mod replicator;
pub mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::commitlog::Log;
use crate::metadata::state::EventTimestamps;

pub use self::manager::PartitionManager;
pub use self::settings::PartitionSettings;

/// Why a partition stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Paused through `PauseStream` or auto-pause.
    Paused,
    /// The stream was deleted.
    Deleted,
    /// The server is shutting down.
    Shutdown,
    /// The log failed (I/O error); see the server log.
    Failed,
    /// The partition's leader changed (this server now leads, follows, or no longer holds it).
    LeaderChanged,
}

/// A cheap handle on a running partition, shared by the actor, the manager and the API.
#[derive(Debug, Clone)]
pub struct PartitionHandle {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Stream name.
    stream: String,
    /// Partition id.
    id: i32,
    /// NATS subject the partition listens on.
    subject: String,
    /// The commit log; readers use it directly.
    log: Log,
    /// The metadata op index that created this partition instance (a recreated stream gets a new one).
    epoch: u64,
    /// Effective settings.
    settings: PartitionSettings,
    /// Readonly flag, mirrored from metadata so the write path can check it without a lookup and subscribers
    /// waiting at the end of the partition wake when it is set.
    readonly: watch::Sender<bool>,
    /// Live subscriptions (for auto-pause's `disable.if.subscribers`).
    subscribers: AtomicUsize,
    /// First and latest time a message was received.
    received: Mutex<EventTimestamps>,
    /// Set once the partition closes; subscribers end with a status derived from it.
    closed: watch::Sender<Option<CloseReason>>,
}

impl PartitionHandle {
    pub(crate) fn new(
        stream: String,
        id: i32,
        subject: String,
        log: Log,
        epoch: u64,
        settings: PartitionSettings,
        readonly: bool,
    ) -> PartitionHandle {
        let (closed, _) = watch::channel(None);
        PartitionHandle {
            inner: Arc::new(Shared {
                stream,
                id,
                subject,
                log,
                epoch,
                settings,
                readonly: watch::channel(readonly).0,
                subscribers: AtomicUsize::new(0),
                received: Mutex::new(EventTimestamps::default()),
                closed,
            }),
        }
    }

    /// Stream name.
    pub fn stream(&self) -> &str {
        &self.inner.stream
    }

    /// Partition id.
    pub fn id(&self) -> i32 {
        self.inner.id
    }

    /// The NATS subject this partition records.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The commit log.
    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    /// The metadata index this instance was created at.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// Effective settings.
    pub fn settings(&self) -> &PartitionSettings {
        &self.inner.settings
    }

    /// Whether publishes are refused.
    pub fn is_readonly(&self) -> bool {
        *self.inner.readonly.borrow()
    }

    /// A receiver that changes when the readonly flag does.
    pub fn readonly_watch(&self) -> watch::Receiver<bool> {
        self.inner.readonly.subscribe()
    }

    pub(crate) fn set_readonly(&self, readonly: bool) {
        self.inner.readonly.send_if_modified(|current| {
            let changed = *current != readonly;
            *current = readonly;
            changed
        });
    }

    /// When messages were first and last received.
    pub fn received_timestamps(&self) -> EventTimestamps {
        *self.inner.received.lock()
    }

    pub(crate) fn record_received(&self, now: i64) {
        self.inner.received.lock().record(now);
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers.load(Ordering::Acquire)
    }

    /// Counts a subscription for as long as the returned guard lives.
    pub fn track_subscriber(&self) -> SubscriberGuard {
        self.inner.subscribers.fetch_add(1, Ordering::AcqRel);
        SubscriberGuard {
            handle: self.clone(),
        }
    }

    /// A receiver that turns `Some(reason)` when the partition closes.
    pub fn closed(&self) -> watch::Receiver<Option<CloseReason>> {
        self.inner.closed.subscribe()
    }

    /// Why the partition closed, if it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.inner.closed.borrow()
    }

    pub(crate) fn mark_closed(&self, reason: CloseReason) {
        self.inner.closed.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// Keeps a subscription counted; dropping it uncounts it.
#[derive(Debug)]
pub struct SubscriberGuard {
    handle: PartitionHandle,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.handle.inner.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}
