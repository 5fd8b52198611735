//! Replica placement: each partition's replicas go to the servers holding the fewest replicas, and its leader is
//! the replica leading the fewest partitions.

use std::collections::BTreeMap;

use super::MetadataState;

/// Places `partitions` partitions of `replication_factor` replicas each on `servers`, counting what `state`
/// already holds. Returns one replica list per partition, leader first. `servers` must hold at least
/// `replication_factor` entries.
pub fn place(
    state: &MetadataState,
    servers: &[String],
    partitions: i32,
    replication_factor: usize,
) -> Vec<Vec<String>> {
    // (replicas held, partitions led) per server.
    let mut load: BTreeMap<&str, (usize, usize)> =
        servers.iter().map(|s| (s.as_str(), (0, 0))).collect();
    for stream in state.streams.values() {
        for p in &stream.partitions {
            for r in &p.replicas {
                if let Some(l) = load.get_mut(r.as_str()) {
                    l.0 += 1;
                }
            }
            if let Some(l) = load.get_mut(p.leader.as_str()) {
                l.1 += 1;
            }
        }
    }
    let mut placement = Vec::new();
    for _ in 0..partitions.max(0) {
        let mut candidates: Vec<&str> = load.keys().copied().collect();
        candidates.sort_by_key(|s| (load[s].0, load[s].1, *s));
        candidates.truncate(replication_factor);
        let Some(&leader) = candidates
            .iter()
            .min_by_key(|s| (load[**s].1, load[**s].0, **s))
        else {
            break;
        };
        for s in &candidates {
            if let Some(l) = load.get_mut(s) {
                l.0 += 1;
            }
        }
        if let Some(l) = load.get_mut(leader) {
            l.1 += 1;
        }
        let mut replicas = vec![leader.to_string()];
        replicas.extend(
            candidates
                .iter()
                .filter(|s| **s != leader)
                .map(|s| s.to_string()),
        );
        placement.push(replicas);
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Op, StreamSettings};

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn spreads_leaders_and_replicas() {
        let state = MetadataState::default();
        let placed = place(&state, &servers(3), 3, 1);
        let mut leaders: Vec<&str> = placed.iter().map(|r| r[0].as_str()).collect();
        leaders.sort();
        assert_eq!(leaders, ["s0", "s1", "s2"]);

        let placed = place(&state, &servers(3), 3, 3);
        let mut leaders: Vec<&str> = placed.iter().map(|r| r[0].as_str()).collect();
        leaders.sort();
        assert_eq!(leaders, ["s0", "s1", "s2"], "{placed:?}");
        assert!(placed.iter().all(|r| r.len() == 3));
    }

    #[test]
    fn counts_existing_streams() {
        let mut state = MetadataState::default();
        state
            .apply(
                Op::CreateStream {
                    name: "a".into(),
                    subject: "a".into(),
                    group: None,
                    partitions: 2,
                    replicas: vec![vec!["s0".into()], vec!["s1".into()]],
                    settings: StreamSettings::default(),
                },
                1,
            )
            .unwrap();
        let placed = place(&state, &servers(3), 1, 1);
        assert_eq!(placed, vec![vec!["s2".to_string()]]);
    }
}
