//! Partition leader failover, run by the controller (the metadata Raft leader).
//!
//! Every server runs this loop; only the current controller acts. A partition whose leader has not been heard
//! from (see [`Presence`]) for `clustering.replica.max.leader.timeout` gets a new leader chosen from its ISR
//! (minus the old leader), among live servers, preferring the one leading the fewest partitions. There is no
//! unclean election: with no live ISR member left the partition stays unavailable until one returns. A leader
//! that stopped cleanly announced it (see [`Presence::has_left`]) and is replaced on the next tick.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metadata::{Metadata, Op};
use crate::presence::Presence;

/// Runs the failover loop until `stop` fires.
pub async fn run(
    metadata: Metadata,
    presence: Presence,
    leader_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(
        (leader_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this server became controller: it first listens for a full timeout before judging anyone.
    let mut controller_since: Option<Instant> = None;
    let mut reported: HashMap<(String, i32), u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        if !metadata.is_controller() || metadata.raft().is_none() {
            controller_since = None;
            continue;
        }
        let since = *controller_since.get_or_insert_with(Instant::now);
        // A new controller listens for a full timeout before judging anyone by silence; a server that said
        // goodbye (clean stop) is gone at once.
        let judging = since.elapsed() >= leader_timeout;
        let dead = |server: &str| {
            presence.has_left(server)
                || (judging
                    && presence
                        .silent_for(server)
                        .is_none_or(|d| d > leader_timeout))
        };
        let snapshot = metadata.snapshot();
        let mut leading: HashMap<&str, usize> = HashMap::new();
        for s in snapshot.streams.values() {
            for p in &s.partitions {
                *leading.entry(p.leader.as_str()).or_default() += 1;
            }
        }
        let mut ops = Vec::new();
        for s in snapshot.streams.values() {
            for p in &s.partitions {
                if p.replicas.len() < 2 || !dead(&p.leader) {
                    continue;
                }
                let candidate = p
                    .isr
                    .iter()
                    .filter(|r| **r != p.leader && !dead(r))
                    .min_by_key(|r| (leading.get(r.as_str()).copied().unwrap_or(0), r.as_str()));
                match candidate {
                    Some(next) => ops.push(Op::ChangeLeader {
                        name: s.name.clone(),
                        partition: p.id,
                        leader: next.clone(),
                        leader_epoch: p.leader_epoch,
                    }),
                    None => {
                        if reported.insert((s.name.clone(), p.id), p.leader_epoch)
                            != Some(p.leader_epoch)
                        {
                            tracing::warn!(stream = s.name, partition = p.id, leader = p.leader, isr = ?p.isr,
                                "partition leader is gone and no other ISR member is alive: the partition stays \
                                 unavailable (no unclean leader election)");
                        }
                    }
                }
            }
        }
        for op in ops {
            match metadata.propose(op.clone()).await {
                Ok(_) => tracing::info!(?op, "partition leader replaced"),
                Err(e) => tracing::debug!(?op, error = %e, "partition leader change refused"),
            }
        }
    }
}
