//! The metadata (Raft) leader fails: another voter takes over, metadata RPCs keep working from any server, and a
//! `CreateStream` racing the failure either takes effect once or fails with a retryable error.

mod cluster;
mod support;

use std::time::Duration;

use liftbridge_proto::pb;
use support::{NatsServer, create_request};

/// Asks the cluster (over NATS) who the metadata leader is.
async fn raft_leader(nats: &async_nats::Client) -> Option<String> {
    let reply = nats
        .request("liftbridge-default.raft.cluster", bytes::Bytes::new())
        .await
        .ok()?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    answer["leader"].as_str().map(str::to_string)
}

#[tokio::test]
async fn metadata_leader_killed_during_create_stream() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut servers = cluster::start_cluster(&nats.url, root.path(), 3).await;
    let probe = async_nats::connect(&nats.url).await.unwrap();
    let old = raft_leader(&probe).await.expect("a metadata leader");
    let at = servers.iter().position(|s| s.server_id == old).unwrap();
    let victim = servers.remove(at);

    // CreateStream through a follower, while the leader goes away.
    let mut c = servers[0].client().await;
    let create = {
        let mut c = c.clone();
        tokio::spawn(async move {
            c.create_stream(pb::CreateStreamRequest {
                replication_factor: 2,
                ..create_request("during", "during", 2)
            })
            .await
        })
    };
    victim.stop().await.unwrap();
    match create.await.unwrap() {
        Ok(_) => {}
        Err(e) => assert_eq!(
            e.code(),
            tonic::Code::Unavailable,
            "only a retryable failure: {e:?}"
        ),
    }
    // The client's retry: created now, or it already was.
    let retried = cluster::retry_unavailable(|| {
        let mut c = c.clone();
        async move {
            c.create_stream(pb::CreateStreamRequest {
                replication_factor: 2,
                ..create_request("during", "during", 2)
            })
            .await
        }
    })
    .await;
    match retried {
        Ok(_) => {}
        Err(e) => assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}"),
    }
    // A new leader among the survivors.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match raft_leader(&probe).await {
            Some(l) if l != old && servers.iter().any(|s| s.server_id == l) => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "no new metadata leader: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stream exists once, everywhere, and metadata changes still go through from either server.
    for s in &servers {
        cluster::wait_stream(s, "during", Duration::from_secs(10), |m| {
            m.partitions.len() == 2
        })
        .await;
        let mut c = s.client().await;
        c.set_stream_readonly(pb::SetStreamReadonlyRequest {
            name: "during".into(),
            partitions: vec![],
            readonly: s.server_id == servers[0].server_id,
        })
        .await
        .expect("metadata change after failover");
    }
    let md = c
        .fetch_metadata(pb::FetchMetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        md.stream_metadata
            .iter()
            .filter(|s| s.name == "during")
            .count(),
        1
    );
    assert_eq!(
        md.brokers.len(),
        2,
        "the dead server is no longer listed: {:?}",
        md.brokers
    );
    for s in servers {
        s.stop().await.unwrap();
    }
}
