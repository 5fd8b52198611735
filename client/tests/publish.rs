//! Publishing: acks, partitioners, headers, ack policies, OCC, pipelining, backpressure, fail-fast.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use liftbridge::testing::TestServer;
use liftbridge::{
    AckPolicy, ErrorKind, Message, Partitioner, Partitioning, StartPosition, StreamOptions,
    SubscribeOptions,
};

#[tokio::test]
async fn publish_waits_for_the_ack() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    create(&client, "orders", 1).await;
    for i in 0..3 {
        let ack = client.publish("orders", format!("m{i}")).await.unwrap();
        assert_eq!(ack.offset(), i);
        assert_eq!(ack.stream(), "orders");
        assert_eq!(ack.partition(), Some(0));
        assert_eq!(ack.ack_policy(), AckPolicy::Leader);
        assert!(!ack.correlation_id().is_empty());
        assert!(ack.commit_timestamp() >= ack.reception_timestamp());
    }
    client.close().await;
}
