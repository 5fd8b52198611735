//! `min.insync.replicas`: when the ISR is smaller, AckPolicy ALL publishes fail fast with a clear error (not an
//! ack timeout); LEADER publishes still work; ALL works again once replicas catch up and rejoin.

mod cluster;
mod support;

use std::time::{Duration, Instant};

use liftbridge_proto::pb;
use support::{NatsServer, create_request};

fn publish(value: &str, policy: pb::AckPolicy) -> tonic::Request<pb::PublishRequest> {
    let mut req = tonic::Request::new(pb::PublishRequest {
        stream: "m".into(),
        value: value.as_bytes().to_vec().into(),
        ack_policy: policy as i32,
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(5));
    req
}

#[tokio::test]
async fn all_publishes_fail_fast_below_min_isr() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut servers = cluster::start_cluster(&nats.url, root.path(), 3).await;
    let mut c = servers[0].client().await;
    cluster::retry_unavailable(|| {
        let mut c = c.clone();
        async move {
            c.create_stream(pb::CreateStreamRequest {
                replication_factor: 3,
                min_isr: Some(pb::NullableInt32 { value: 3 }),
                ..create_request("m", "m", 1)
            })
            .await
        }
    })
    .await
    .expect("create");
    // minIsr above the replication factor is bad input.
    let err = c
        .create_stream(pb::CreateStreamRequest {
            replication_factor: 2,
            min_isr: Some(pb::NullableInt32 { value: 3 }),
            ..create_request("m2", "m2", 1)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let md = cluster::wait_stream(&servers[0], "m", Duration::from_secs(10), |s| {
        s.partitions[&0].isr.len() == 3
    })
    .await;
    let leader = md.partitions[&0].leader.clone();
    c.publish(publish("ok", pb::AckPolicy::All))
        .await
        .expect("ALL with a full ISR");

    // A follower goes away: the leader shrinks the ISR after the lag time (the metadata group keeps its majority).
    let leader_at = servers.iter().position(|s| s.server_id == leader).unwrap();
    let leader_server = servers.remove(leader_at);
    let follower = servers.remove(0);
    let stopped = [follower.server_id.clone()];
    follower.stop().await.unwrap();
    let mut c = leader_server.client().await;
    cluster::wait_stream(&leader_server, "m", Duration::from_secs(15), |s| {
        s.partitions[&0].isr.len() == 2
    })
    .await;

    let started = Instant::now();
    let err = c
        .publish(publish("refused", pb::AckPolicy::All))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fails fast, not by timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("not enough in-sync replicas"),
        "{err:?}"
    );
    // LEADER acks do not need the ISR.
    c.publish(publish("leader-ack", pb::AckPolicy::Leader))
        .await
        .expect("LEADER below min ISR");

    // A follower returns, catches up and rejoins; ALL works again.
    let back = cluster::start(
        &nats.url,
        &root.path().join(&stopped[0]),
        &stopped[0],
        |_| {},
    )
    .await;
    cluster::wait_stream(&leader_server, "m", Duration::from_secs(20), |s| {
        s.partitions[&0].isr.len() == 3
    })
    .await;
    let ack = c
        .publish(publish("again", pb::AckPolicy::All))
        .await
        .expect("ALL with ISR back at 3");
    assert_eq!(
        ack.into_inner().ack.unwrap().offset,
        2,
        "refused publish was not written"
    );
    back.stop().await.unwrap();
    for s in servers {
        s.stop().await.unwrap();
    }
    leader_server.stop().await.unwrap();
}
