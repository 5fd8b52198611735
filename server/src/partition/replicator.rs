//! Follower side of replication: one task per partition this server replicates but does not lead.
//!
//! It first asks the leader where its own latest leader epoch ends in the leader's log and truncates there
//! (KIP-101: a former leader drops what it appended but never committed; a follower never truncates by HW
//! alone). Then it long-polls the leader, appends the leader's record bytes unchanged and adopts the leader's
//! high watermark (up to what it holds), which is what `readISRReplica` subscribers here may read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::PartitionHandle;
use super::replication::{FetchRequest, decode_response, fetch_subject};
use crate::bus::Bus;
use crate::config::ClusteringConfig;

/// Counters of a follower, for tests and logs.
#[derive(Debug, Default)]
pub struct ReplicatorStats {
    /// Fetches answered with data.
    pub fetched: std::sync::atomic::AtomicU64,
    /// Truncations done.
    pub truncations: std::sync::atomic::AtomicU64,
}

/// Follows `leader` in `leader_epoch` until `stop` fires.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    partition: PartitionHandle,
    bus: Arc<dyn Bus>,
    namespace: String,
    me: String,
    leader_epoch: u64,
    clustering: ClusteringConfig,
    stats: Arc<ReplicatorStats>,
    mut stop: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    let log = partition.log().clone();
    let subject = fetch_subject(&namespace, partition.stream(), partition.id());
    let timeout = clustering.replica_max_idle_wait + clustering.replica_fetch_timeout;
    let mut truncated = log.latest_leader_epoch().is_none();
    let mut last_checkpoint = Instant::now();
    let mut failures = 0u32;
    let mut housekeeping: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let request = FetchRequest {
            replica: me.clone(),
            leader_epoch,
            offset: log.end_offset(),
            last_epoch: if truncated {
                None
            } else {
                log.latest_leader_epoch()
            },
        };
        let payload = Bytes::from(serde_json::to_vec(&request).unwrap_or_default());
        let reply = tokio::select! {
            _ = stop.changed() => break,
            reply = bus.request(subject.clone(), payload, timeout) => reply,
        };
        let problem = match reply {
            Err(e) => Some(e.to_string()),
            Ok(message) => match decode_response(&message.payload) {
                Err(e) => Some(e),
                Ok((header, _)) if header.error.is_some() => header.error,
                Ok((header, records)) => {
                    let mut problem = None;
                    if let Some(end) = header.truncate_to {
                        if end < log.end_offset() {
                            tracing::info!(
                                stream = partition.stream(),
                                partition = partition.id(),
                                from = log.end_offset(),
                                to = end,
                                "truncating to the leader's log"
                            );
                            if let Err(e) = log.truncate(end) {
                                problem = Some(e.to_string());
                            }
                            stats.truncations.fetch_add(1, Ordering::Relaxed);
                        }
                        truncated = problem.is_none();
                    } else if !records.is_empty() {
                        match log.append_raw(&records) {
                            Ok(_) => {
                                stats.fetched.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                // Out of step with the leader: ask where to truncate, then fetch again.
                                tracing::warn!(stream = partition.stream(), partition = partition.id(), error = %e,
                                    "cannot append the leader's records; re-checking the leader epoch");
                                truncated = false;
                                problem = Some(e.to_string());
                            }
                        }
                    }
                    let hw = header.high_watermark.min(log.newest_offset());
                    if hw > log.high_watermark()
                        && let Err(e) = log.set_high_watermark(hw)
                    {
                        problem = Some(e.to_string());
                    }
                    problem
                }
            },
        };
        // The interval fsync (and that of segments a roll sealed) and the HW checkpoint run on a blocking thread
        // beside the fetches: awaiting an fsync of a second's writes here held back the next fetch, and with
        // it the ISR's acks (AckPolicy ALL) and the high watermark.
        if last_checkpoint.elapsed() >= Duration::from_secs(1)
            && housekeeping.as_ref().is_none_or(|h| h.is_finished())
        {
            last_checkpoint = Instant::now();
            let log = log.clone();
            housekeeping = Some(tokio::task::spawn_blocking(move || {
                let _ = log.sync_if_due();
                let _ = log.checkpoint_high_watermark();
            }));
        }
        match problem {
            None => failures = 0,
            Some(why) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(50) {
                    tracing::debug!(
                        stream = partition.stream(),
                        partition = partition.id(),
                        error = why,
                        "fetch from the leader failed; retrying"
                    );
                }
                // Back off briefly before the next attempt (the leader may be starting or gone).
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50 * u64::from(failures.min(4)))) => {}
                }
            }
        }
    }
    // The log may be closed next: let the running fsync finish first.
    if let Some(handle) = housekeeping {
        let _ = handle.await;
    }
}
