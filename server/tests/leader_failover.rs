//! Partition leader failover: with AckPolicy ALL, every acknowledged message survives the loss of the leader,
//! readable exactly once at its acked offset, in order, on every ISR member.

mod cluster;
mod support;

use std::time::Duration;

use cluster::checker::{self, History};
use cluster::{publish_all, wait_partition};
use liftbridge_proto::pb;
use support::{NatsServer, create_request};

#[tokio::test]
async fn graceful_leader_loss_keeps_every_acked_message() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut servers = cluster::start_cluster(&nats.url, root.path(), 3).await;
    let mut c = servers[0].client().await;
    cluster::retry_unavailable(|| {
        let mut c = c.clone();
        async move {
            c.create_stream(pb::CreateStreamRequest {
                replication_factor: 3,
                ..create_request("fo", "fo", 1)
            })
            .await
        }
    })
    .await
    .expect("create RF=3");
    let md = cluster::wait_stream(&servers[0], "fo", Duration::from_secs(10), |s| {
        s.partitions.get(&0).is_some_and(|p| p.isr.len() == 3)
    })
    .await;
    let leader = md.partitions[&0].leader.clone();

    let mut history = History::default();
    for i in 0..200 {
        let value = format!("a{i}");
        let offset = publish_all(&mut c, "fo", &value)
            .await
            .expect("publish before failover");
        history.acked.push((value, offset));
    }
    // Every ISR member holds what was acked.
    for s in &servers {
        let mut client = s.client().await;
        let log = checker::read_all(&mut client, "fo", 0, 200, s.server_id != leader)
            .await
            .expect("read replica");
        assert_eq!(
            checker::check(&history, &log),
            Vec::<String>::new(),
            "{}",
            s.server_id
        );
    }

    // The leader goes away; a new leader is elected from the ISR.
    let index = servers.iter().position(|s| s.server_id == leader).unwrap();
    let old = servers.remove(index);
    old.stop().await.unwrap();
    let md = cluster::wait_stream(&servers[0], "fo", Duration::from_secs(15), |s| {
        s.partitions[&0].leader != leader
    })
    .await;
    let new_leader = md.partitions[&0].leader.clone();
    assert!(md.partitions[&0].isr.contains(&new_leader));

    let mut c = servers[0].client().await;
    let mut i = 0;
    while history.acked.len() < 300 {
        let value = format!("b{i}");
        i += 1;
        match publish_all(&mut c, "fo", &value).await {
            Ok(offset) => history.acked.push((value, offset)),
            Err(_) => history.indeterminate += 1,
        }
        assert!(i < 2000, "publishes keep failing after failover");
    }
    let end = history.acked.last().unwrap().1 + 1;
    let new = cluster::by_id(&servers, &new_leader);
    let mut client = new.client().await;
    let log = checker::read_all(&mut client, "fo", 0, end, false)
        .await
        .expect("read new leader");
    assert_eq!(checker::check(&history, &log), Vec::<String>::new());
    for s in servers {
        s.stop().await.unwrap();
    }
}

/// A partition leader that stops cleanly says goodbye, and the controller hands its partition to an ISR member
/// at once — well before `clustering.replica.max.leader.timeout` (a minute here, so only the goodbye can explain
/// a quick failover; a new controller would not even judge silence for that long).
#[tokio::test]
async fn clean_stop_hands_leadership_over_before_the_leader_timeout() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut servers = cluster::start_cluster_with(&nats.url, root.path(), 3, |c| {
        c.clustering.replica_max_leader_timeout = Duration::from_secs(60);
    })
    .await;
    let mut admin = servers[0].client().await;
    let p = cluster::create_with_isr(&mut admin, cluster::replicated("bye", 3), 3).await;
    let leader = p.leader.clone();

    let index = servers.iter().position(|s| s.server_id == leader).unwrap();
    let old = servers.remove(index);
    let stopped = tokio::time::Instant::now();
    old.stop().await.unwrap();
    let mut client = servers[0].client().await;
    let p = wait_partition(&mut client, "bye", Duration::from_secs(30), |p| {
        p.leader != leader && !p.leader.is_empty()
    })
    .await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "leadership moved after {took:?}, not before the 60 s leader timeout"
    );
    assert!(p.isr.contains(&p.leader), "{p:?}");
    // The new leader takes AckPolicy ALL publishes once the ISR has dropped the stopped server.
    let mut c = cluster::by_id(&servers, &p.leader).client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = publish_all(&mut c, "bye", "after").await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader takes no publish: {e}"
        );
    }
    for s in servers {
        s.stop().await.unwrap();
    }
}

/// The core check: publish with AckPolicy ALL as fast as one synchronous publisher goes while the partition
/// leader is SIGKILLed; then every acked message must be readable exactly once, at its acked offset, in order,
/// on every ISR member (the killed server included, once it has restarted and caught up). Runs once in CI;
/// `LIFTBRIDGE_FAILOVER_RUNS=N` repeats it with different kill timings.
#[tokio::test]
async fn sigkill_partition_leader_during_all_publishes() {
    let runs: usize = std::env::var("LIFTBRIDGE_FAILOVER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for run in 0..runs {
        sigkill_run(run).await;
    }
}

async fn sigkill_run(run: usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let ns = format!("kill{run}");
    let mut procs = cluster::start_procs(&nats.url, &ns, root.path(), &["a", "b", "c"]).await;
    let mut admin = procs[1].client().await;
    let p = cluster::create_with_isr(&mut admin, cluster::replicated("core", 3), 3).await;
    let leader = p.leader.clone();
    let publisher_at = procs.iter().position(|p| p.id != leader).unwrap();
    let mut client = procs[publisher_at].client().await;

    let history = Arc::new(parking_lot::Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let history = history.clone();
        let stop = stop.clone();
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("v{i}");
                i += 1;
                match publish_all(&mut client, "core", &value).await {
                    Ok(offset) => history.lock().acked.push((value, offset)),
                    Err(_) => {
                        history.lock().indeterminate += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        })
    };

    // Kill the leader after a varying number of acks.
    let kill_after = 50 + (run * 97) % 250;
    let acked = || history.lock().acked.len();
    assert!(
        support::wait_until(Duration::from_secs(30), || acked() >= kill_after).await,
        "publishing stalled"
    );
    let victim = procs.iter().position(|p| p.id == leader).unwrap();
    procs[victim].kill();
    let killed_at = acked();
    let p = wait_partition(&mut client, "core", Duration::from_secs(20), |p| {
        p.leader != leader
    })
    .await;
    assert!(
        p.isr.contains(&p.leader),
        "new leader {} comes from the ISR {:?}",
        p.leader,
        p.isr
    );
    assert!(
        support::wait_until(Duration::from_secs(30), || acked() >= killed_at + 200).await,
        "publishes did not resume after failover: {:?}",
        history.lock().indeterminate
    );
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();

    // The killed server restarts with its old log, catches up and rejoins the ISR.
    procs[victim].restart();
    wait_partition(&mut client, "core", Duration::from_secs(30), |p| {
        p.isr.len() == 3
    })
    .await;

    let history = history.lock().clone();
    let mut readers = Vec::new();
    for proc in &procs {
        readers.push((proc.id.clone(), proc.client().await));
    }
    cluster::check_replicas(&history, "core", &p.leader, readers).await;
    drop(procs);
}
