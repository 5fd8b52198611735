//! Two partition leaders SIGKILLed in quick succession on a 5-server cluster (the metadata group keeps its
//! majority): the last ISR member leads, and the two killed servers restart, truncate by leader epoch what they
//! appended but never committed, catch up and rejoin. Every acknowledged message survives exactly once.

mod cluster;
mod support;

use std::time::Duration;

use cluster::process::Proc;
use cluster::{Publisher, check_replicas, retry_unavailable, wait_brokers_at, wait_partition};
use liftbridge_proto::pb;
use support::{NatsServer, create_request};

#[tokio::test]
async fn two_leader_changes_in_quick_succession() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut procs: Vec<Proc> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, id)| Proc::start(&nats.url, "crash", &root.path().join(id), id, i == 0))
        .collect();
    for p in &procs {
        wait_brokers_at(&mut p.client().await, 5).await;
    }
    cluster::wait_voters(&nats.url, "crash", 5).await;
    let mut admin = procs[0].client().await;
    retry_unavailable(|| {
        let mut c = admin.clone();
        async move {
            c.create_stream(pb::CreateStreamRequest {
                replication_factor: 3,
                ..create_request("cr", "cr", 1)
            })
            .await
        }
    })
    .await
    .expect("create");
    let p = wait_partition(&mut admin, "cr", Duration::from_secs(15), |p| {
        p.isr.len() == 3
    })
    .await;
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
