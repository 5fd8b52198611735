//! A follower is SIGKILLed while AckPolicy ALL publishes go on, and restarted on its old log: it catches up from
//! where its log ends, rejoins the ISR, and serves exactly what was acked.

mod cluster;
mod support;

use std::time::Duration;

use cluster::process::Proc;
use cluster::{Publisher, check_replicas, retry_unavailable, wait_brokers_at, wait_partition};
use liftbridge_proto::pb;
use support::{NatsServer, create_request};

#[tokio::test]
async fn killed_follower_restarts_with_old_log_and_rejoins() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut procs: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, id)| Proc::start(&nats.url, "catchup", &root.path().join(id), id, i == 0))
        .collect();
    for p in &procs {
        wait_brokers_at(&mut p.client().await, 3).await;
    }
    cluster::wait_voters(&nats.url, "catchup", 3).await;
    let mut admin = procs[0].client().await;
    retry_unavailable(|| {
        let mut c = admin.clone();
        async move {
            c.create_stream(pb::CreateStreamRequest {
                replication_factor: 3,
                ..create_request("cu", "cu", 1)
            })
            .await
        }
    })
    .await
    .expect("create");
    let p = wait_partition(&mut admin, "cu", Duration::from_secs(15), |p| {
        p.isr.len() == 3
    })
    .await;
    let leader = p.leader.clone();
    let follower = procs.iter().position(|p| p.id != leader).unwrap();
    let publish_via = procs.iter().position(|p| p.id == leader).unwrap();
    let publisher = Publisher::start(procs[publish_via].client().await, "cu");
    publisher.wait_acked(100, Duration::from_secs(30)).await;

    procs[follower].kill();
    let mut c = procs[publish_via].client().await;
    wait_partition(&mut c, "cu", Duration::from_secs(15), |p| p.isr.len() == 2).await;
    let acked = publisher.acked();
    publisher
        .wait_acked(acked + 300, Duration::from_secs(30))
        .await;

    procs[follower].restart();
    wait_partition(&mut c, "cu", Duration::from_secs(30), |p| p.isr.len() == 3).await;
    let acked = publisher.acked();
    publisher
        .wait_acked(acked + 50, Duration::from_secs(30))
        .await;
    let history = publisher.finish().await;
    let mut readers = Vec::new();
    for p in &procs {
        readers.push((p.id.clone(), p.client().await));
    }
    check_replicas(&history, "cu", &leader, readers).await;
}
