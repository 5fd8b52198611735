//! Partition leader failover: with AckPolicy ALL, every acknowledged message survives the loss of the leader,
//! readable exactly once at its acked offset, in order, on every ISR member.

mod cluster;
mod support;

use std::time::Duration;

use cluster::checker::{self, History};
use liftbridge_proto::pb;
use support::{NatsServer, create_request};

async fn publish_all(
    client: &mut liftbridge_proto::pb::api_client::ApiClient<tonic::transport::Channel>,
    stream: &str,
    value: &str,
) -> Result<i64, tonic::Status> {
    let mut req = tonic::Request::new(pb::PublishRequest {
        stream: stream.into(),
        value: value.as_bytes().to_vec().into(),
        ack_policy: pb::AckPolicy::All as i32,
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    let resp = client.publish(req).await?.into_inner();
    Ok(resp.ack.map_or(-1, |a| a.offset))
}

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
