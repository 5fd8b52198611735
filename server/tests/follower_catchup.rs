//! A follower is SIGKILLed while AckPolicy ALL publishes go on, and restarted on its old log: it catches up from
//! where its log ends, rejoins the ISR, and serves exactly what was acked.

mod cluster;
mod support;

use std::time::Duration;

use cluster::{Publisher, check_replicas, wait_partition};
use support::NatsServer;

#[tokio::test]
async fn killed_follower_restarts_with_old_log_and_rejoins() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut procs = cluster::start_procs(&nats.url, "catchup", root.path(), &["a", "b", "c"]).await;
    let mut admin = procs[0].client().await;
    let p = cluster::create_with_isr(&mut admin, cluster::replicated("cu", 3), 3).await;
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
