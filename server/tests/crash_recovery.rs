//! Two partition leaders SIGKILLed in quick succession on a 5-server cluster (the metadata group keeps its
//! majority): the last ISR member leads, and the two killed servers restart, truncate by leader epoch what they
//! appended but never committed, catch up and rejoin. Every acknowledged message survives exactly once.

mod cluster;
mod support;

use std::time::Duration;

use cluster::process::Proc;
use cluster::{Publisher, check_replicas, wait_partition};
use support::NatsServer;

#[tokio::test]
async fn two_leader_changes_in_quick_succession() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut procs =
        cluster::start_procs(&nats.url, "crash", root.path(), &["a", "b", "c", "d", "e"]).await;
    let mut admin = procs[0].client().await;
    let p = cluster::create_with_isr(&mut admin, cluster::replicated("cr", 3), 3).await;
    let replicas = p.replicas.clone();
    let first = p.leader.clone();
    // Publish through a server that holds no replica, so it survives both kills.
    let outsider = procs
        .iter()
        .position(|p| !replicas.contains(&p.id))
        .unwrap();
    let mut c = procs[outsider].client().await;
    let publisher = Publisher::start(c.clone(), "cr");
    publisher.wait_acked(150, Duration::from_secs(30)).await;

    let at = |id: &str, procs: &[Proc]| procs.iter().position(|p| p.id == id).unwrap();
    let i = at(&first, &procs);
    procs[i].kill();
    let p = wait_partition(&mut c, "cr", Duration::from_secs(20), |p| p.leader != first).await;
    let second = p.leader.clone();
    // Kill the new leader as soon as it leads (a few acks at most in its epoch).
    let j = at(&second, &procs);
    procs[j].kill();
    let p = wait_partition(&mut c, "cr", Duration::from_secs(20), |p| {
        p.leader != second && p.leader != first
    })
    .await;
    let third = p.leader.clone();
    let acked = publisher.acked();
    publisher
        .wait_acked(acked + 200, Duration::from_secs(30))
        .await;

    // Both killed servers come back on their old logs.
    procs[i].restart();
    procs[j].restart();
    wait_partition(&mut c, "cr", Duration::from_secs(40), |p| p.isr.len() == 3).await;
    let acked = publisher.acked();
    publisher
        .wait_acked(acked + 50, Duration::from_secs(30))
        .await;
    let history = publisher.finish().await;
    let mut readers = Vec::new();
    for id in &replicas {
        readers.push((id.clone(), procs[at(id, &procs)].client().await));
    }
    check_replicas(&history, "cr", &third, readers).await;
}
