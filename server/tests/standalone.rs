//! Standalone mode: one `liftbridge` process with its embedded NATS broker is the whole system.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_proto::{envelope, pb};
use support::{TestServer, create_request, nats_round_trip};

const WAIT: Duration = Duration::from_secs(10);

fn publish_request(stream: &str, value: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        stream: stream.into(),
        value: Bytes::from(value.to_string()),
        expected_offset: -1,
        ..Default::default()
    }
}

async fn read(
    client: &mut liftbridge_proto::pb::api_client::ApiClient<tonic::transport::Channel>,
    stream: &str,
    n: usize,
) -> Vec<pb::Message> {
    let req = pb::SubscribeRequest {
        stream: stream.into(),
        start_position: pb::StartPosition::Earliest as i32,
        ..Default::default()
    };
    let mut sub = client.subscribe(req).await.unwrap().into_inner();
    let handshake = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(handshake, pb::Message::default());
    let mut out = Vec::new();
    while out.len() < n {
        out.push(
            tokio::time::timeout(WAIT, sub.next())
                .await
                .expect("in time")
                .unwrap()
                .unwrap(),
        );
    }
    out
}

#[tokio::test]
async fn standalone_server_with_tcp_nats_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_standalone(dir.path(), |_| {}).await;
    let url = server
        .nats_url
        .clone()
        .expect("a standalone server runs the embedded broker");
    let mut client = server.client().await;
    client
        .create_stream(create_request("events", "events", 1))
        .await
        .unwrap();

    // gRPC publish → stored and acked, and seen by a plain NATS subscriber over TCP.
    let nats = async_nats::connect(&url)
        .await
        .expect("NATS clients can connect to the embedded broker");
    let mut plain = nats.subscribe("events").await.unwrap();
    nats_round_trip(&nats).await;
    let ack = client
        .publish(publish_request("events", "grpc"))
        .await
        .unwrap()
        .into_inner()
        .ack
        .unwrap();
    assert_eq!(ack.offset, 0);
    let seen = tokio::time::timeout(WAIT, plain.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        envelope::decode_message(&seen.payload).unwrap().value,
        Bytes::from_static(b"grpc")
    );

    // Plain NATS publish over TCP → stored with subject/reply headers.
    nats.publish_with_reply("events", "r.1", Bytes::from_static(b"plain"))
        .await
        .unwrap();
    // Envelope over TCP with an ack inbox → Ack envelope back over TCP.
    let mut acks = nats.subscribe("client.acks").await.unwrap();
    nats_round_trip(&nats).await;
    let msg = pb::Message {
        value: Bytes::from_static(b"env"),
        headers: HashMap::from([("h".into(), Bytes::from_static(b"1"))]),
        ack_inbox: "client.acks".into(),
        correlation_id: "x".into(),
        offset: -1,
        ..Default::default()
    };
    nats.publish("events", envelope::encode_message(&msg, true))
        .await
        .unwrap();
    let ack = tokio::time::timeout(WAIT, acks.next())
        .await
        .unwrap()
        .unwrap();
    let ack = envelope::decode_ack(&ack.payload).unwrap();
    assert_eq!((ack.offset, ack.correlation_id.as_str()), (2, "x"));

    let got = read(&mut client, "events", 3).await;
    assert_eq!(got[1].value, Bytes::from_static(b"plain"));
    assert_eq!(got[1].reply_subject, "r.1");
    assert_eq!(got[2].headers.get("h"), Some(&Bytes::from_static(b"1")));
}

#[tokio::test]
async fn standalone_publish_async_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_standalone(dir.path(), |_| {}).await;
    let mut client = server.client().await;
    client
        .create_stream(create_request("bulk", "bulk", 1))
        .await
        .unwrap();
    const N: usize = 10_000;
    let requests = futures::stream::iter((0..N).map(|i| {
        let mut req = publish_request("bulk", &format!("m{i}"));
        req.correlation_id = i.to_string();
        req
    }));
    let mut responses = client.publish_async(requests).await.unwrap().into_inner();
    let mut acked = 0;
    while let Some(resp) = tokio::time::timeout(WAIT, responses.next())
        .await
        .expect("acks in time")
    {
        let resp = resp.unwrap();
        assert!(resp.async_error.is_none(), "{resp:?}");
        acked += 1;
    }
    assert_eq!(acked, N);
    server.stop().await.unwrap();

    let server = TestServer::start_standalone(dir.path(), |_| {}).await;
    let mut client = server.client().await;
    let got = read(&mut client, "bulk", N).await;
    assert_eq!(got.last().unwrap().offset, N as i64 - 1);
    assert_eq!(got[1234].value, Bytes::from_static(b"m1234"));
}

#[tokio::test]
async fn embedded_port_in_use_suggests_external_nats() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = liftbridge_server::config::Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    config.nats.embedded_host = Some("127.0.0.1".into());
    config.nats.embedded_port = Some(port);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = liftbridge_server::server::Server::run(listener, config, std::future::pending())
        .await
        .expect_err("the broker cannot bind a taken port");
    let text = err.to_string();
    assert!(
        text.contains("already in use") && text.contains(&format!("-n nats://127.0.0.1:{port}")),
        "{text}"
    );
}

#[tokio::test]
async fn embedded_config_file_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats-server.conf");
    std::fs::write(&conf, "# embedded broker\nport: 0\nhost: 127.0.0.1\nauthorization {\n  user: lift\n  password: s3cret\n}\n")
        .unwrap();
    let server = TestServer::start_standalone(dir.path(), |c| {
        c.nats.embedded_config = Some(conf.clone());
        c.nats.embedded_port = None;
        c.nats.embedded_host = None;
    })
    .await;
    let url = server.nats_url.clone().unwrap();
    assert!(
        async_nats::connect(&url).await.is_err(),
        "credentials are required"
    );
    let nats = async_nats::ConnectOptions::with_user_and_password("lift".into(), "s3cret".into())
        .connect(&url)
        .await
        .unwrap();
    let mut client = server.client().await;
    client
        .create_stream(create_request("authd", "authd", 1))
        .await
        .unwrap();
    nats.publish("authd", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    nats_round_trip(&nats).await;
    assert_eq!(
        read(&mut client, "authd", 1).await[0].value,
        Bytes::from_static(b"hi")
    );

    // An unsupported broker setting is refused by name.
    std::fs::write(&conf, "port: 0\njetstream: enabled\n").unwrap();
    let mut config = liftbridge_server::config::Config {
        data_dir: Some(dir.path().join("other")),
        ..Default::default()
    };
    config.nats.embedded_config = Some(conf.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = liftbridge_server::server::Server::run(listener, config, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("jetstream"), "{err}");
}
