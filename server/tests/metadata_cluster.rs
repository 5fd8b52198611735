//! The metadata Raft group: seed bootstrap and automatic join, forwarding of metadata RPCs from any server,
//! placement across servers, the broker list, restart of the whole cluster, and the bad inputs (second seed,
//! server id collision, peer list without this server, replication factor larger than the cluster, no quorum).

mod cluster;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use liftbridge_proto::pb;
use support::{NatsServer, create_request};

#[tokio::test]
async fn seed_join_forward_place_and_restart() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let servers = cluster::start_cluster(&nats.url, root.path(), 3).await;

    // Brokers carry their addresses.
    let mut c = servers[2].client().await;
    let md = c
        .fetch_metadata(pb::FetchMetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    let listed: BTreeSet<(String, i32)> =
        md.brokers.iter().map(|b| (b.id.clone(), b.port)).collect();
    let expected: BTreeSet<(String, i32)> = servers
        .iter()
        .map(|s| (s.server_id.clone(), i32::from(s.addr.port())))
        .collect();
    assert_eq!(listed, expected);

    // Created through a follower (forwarded to the Raft leader); partitions spread over the servers.
    let created = cluster::retry_unavailable(|| {
        let mut c = c.clone();
        async move { c.create_stream(create_request("orders", "orders", 3)).await }
    })
    .await;
    created.expect("create through any server");
    let md = cluster::wait_stream(&servers[0], "orders", Duration::from_secs(10), |s| {
        s.partitions.len() == 3
    })
    .await;
    let leaders: BTreeSet<String> = md.partitions.values().map(|p| p.leader.clone()).collect();
    assert_eq!(leaders.len(), 3, "one partition leader per server: {md:?}");

    // A second create of the same name is refused wherever it lands.
    let mut c0 = servers[0].client().await;
    let err = c0
        .create_stream(create_request("orders", "orders", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);

    // Publish through server a to every partition; each leader (on its own server) acks.
    for p in 0..3 {
        let ack = c0
            .publish(pb::PublishRequest {
                stream: "orders".into(),
                partition: p,
                value: format!("m{p}").into_bytes().into(),
                ack_policy: pb::AckPolicy::Leader as i32,
                ..Default::default()
            })
            .await
            .expect("publish")
            .into_inner();
        assert_eq!(ack.ack.unwrap().offset, 0);
    }
    // Only the leader holds a partition's log.
    for (id, p) in &md.partitions {
        for s in &servers {
            let dir = s.data_dir.join("streams/orders").join(id.to_string());
            assert_eq!(
                dir.exists(),
                s.server_id == p.leader,
                "{} partition {id}",
                s.server_id
            );
        }
    }

    // Pause/readonly through yet another server, visible everywhere.
    let mut c1 = servers[1].client().await;
    c1.set_stream_readonly(pb::SetStreamReadonlyRequest {
        name: "orders".into(),
        partitions: vec![1],
        readonly: true,
    })
    .await
    .expect("readonly");
    for s in &servers {
        cluster::wait_stream(s, "orders", Duration::from_secs(5), |m| {
            m.partitions[&1].readonly
        })
        .await;
    }

    // Bad input: more replicas than servers.
    let err = c0
        .create_stream(pb::CreateStreamRequest {
            replication_factor: 4,
            ..create_request("big", "big", 1)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("larger than the cluster"), "{err:?}");

    // The whole cluster restarts: streams and flags survive.
    let ports: Vec<String> = servers.iter().map(|s| s.server_id.clone()).collect();
    for s in servers {
        s.stop().await.expect("clean stop");
    }
    let mut restarted = Vec::new();
    for id in &ports {
        restarted.push(cluster::start(&nats.url, &root.path().join(id), id, |_| {}).await);
    }
    for s in &restarted {
        cluster::wait_stream(s, "orders", Duration::from_secs(20), |m| {
            m.partitions.len() == 3 && m.partitions[&1].readonly
        })
        .await;
    }
    let mut c = restarted[1].client().await;
    let created = cluster::retry_unavailable(|| {
        let mut c = c.clone();
        async move { c.create_stream(create_request("after", "after", 1)).await }
    })
    .await;
    created.expect("create after restart");
    let _ = c
        .fetch_metadata(pb::FetchMetadataRequest::default())
        .await
        .unwrap();
    for s in restarted {
        s.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn bad_bootstrap_is_refused_clearly() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let seed = cluster::start(&nats.url, &root.path().join("a"), "a", |c| {
        c.clustering.raft_bootstrap_seed = true;
    })
    .await;
    cluster::wait_brokers(&seed, 1).await;

    let run = |dir: std::path::PathBuf,
               id: &'static str,
               tweak: fn(&mut liftbridge_server::config::Config)| {
        let url = nats.url.clone();
        async move {
            let mut config = liftbridge_server::config::Config {
                data_dir: Some(dir),
                port: 0,
                host: "127.0.0.1".into(),
                ..Default::default()
            };
            config.nats.servers = vec![url];
            config.clustering.server_id = Some(id.into());
            cluster::fast(&mut config);
            tweak(&mut config);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tokio::time::timeout(
                Duration::from_secs(20),
                liftbridge_server::server::Server::run(listener, config, std::future::pending()),
            )
            .await
            .expect("start-up fails fast")
            .expect_err("start-up is refused")
            .to_string()
        }
    };

    // A second seed would split the cluster.
    let err = run(root.path().join("s2"), "s2", |c| {
        c.clustering.raft_bootstrap_seed = true
    })
    .await;
    assert!(
        err.contains("already exists") && err.contains("without --raft-bootstrap-seed"),
        "{err}"
    );
    // Two servers with one id.
    let err = run(root.path().join("a2"), "a", |_| {}).await;
    assert!(err.contains("already used by a running server"), "{err}");
    // A peer list that does not name this server.
    let err = run(root.path().join("p"), "p", |c| {
        c.clustering.raft_bootstrap_peers = vec!["x".into(), "y".into()];
    })
    .await;
    assert!(err.contains("does not name this server"), "{err}");
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn no_quorum_is_unavailable() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    // A peer list naming servers that never start: no quorum, so no leader.
    let lone = cluster::start(&nats.url, &root.path().join("a"), "a", |c| {
        c.clustering.namespace = "quorum-test".into();
        c.clustering.raft_bootstrap_peers = vec!["a".into(), "ghost1".into(), "ghost2".into()];
    })
    .await;
    let mut c = lone.client().await;
    let started = tokio::time::Instant::now();
    let err = c
        .create_stream(create_request("s", "s", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("retry"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    lone.stop().await.unwrap();
}

#[tokio::test]
async fn cluster_on_one_servers_embedded_broker() {
    let root = tempfile::tempdir().unwrap();
    let seed = support::TestServer::start_standalone(&root.path().join("a"), |c| {
        c.clustering.server_id = Some("a".into());
        c.clustering.raft_bootstrap_seed = true;
        cluster::fast(c);
    })
    .await;
    let url = seed.nats_url.clone().expect("embedded broker url");
    let mut servers = vec![seed];
    for id in ["b", "c"] {
        servers.push(cluster::start(&url, &root.path().join(id), id, |_| {}).await);
    }
    cluster::wait_formed(&url, &servers).await;
    let mut c = servers[1].client().await;
    cluster::retry_unavailable(|| {
        let mut c = c.clone();
        async move {
            c.create_stream(pb::CreateStreamRequest {
                replication_factor: -1,
                ..create_request("emb", "emb", 1)
            })
            .await
        }
    })
    .await
    .expect("create RF=-1 (all servers)");
    let md = cluster::wait_stream(&servers[0], "emb", Duration::from_secs(10), |s| {
        s.partitions[&0].isr.len() == 3
    })
    .await;
    let leader = md.partitions[&0].leader.clone();
    let mut history = cluster::checker::History::default();
    for i in 0..50 {
        let value = format!("e{i}");
        let offset = cluster::publish_all(&mut c, "emb", &value)
            .await
            .expect("ALL publish");
        history.acked.push((value, offset));
    }
    let mut readers = Vec::new();
    for s in &servers {
        readers.push((s.server_id.clone(), s.client().await));
    }
    cluster::check_replicas(&history, "emb", &leader, readers).await;
    // Followers refuse plain subscriptions (only the leader serves them) but serve readISRReplica ones.
    let follower = servers.iter().find(|s| s.server_id != leader).unwrap();
    let err = follower
        .client()
        .await
        .subscribe(pb::SubscribeRequest {
            stream: "emb".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // Stop the joiners first, the broker's server last.
    let seed = servers.remove(0);
    for s in servers {
        s.stop().await.unwrap();
    }
    seed.stop().await.unwrap();
}
