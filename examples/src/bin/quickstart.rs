//! Quick start against a running server: create a stream, publish a few messages with acks, read them back.
//!
//! ```sh
//! cargo run -p liftbridge-examples --bin quickstart -- 127.0.0.1:9292
//! ```
//!
//! Until the Rust client SDK lands this talks to the server through the generated gRPC client of
//! `liftbridge-proto`, which is exactly what any Liftbridge client does on the wire.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9292".into());
    let mut client = connect(&addr).await?;

    let stream = "quickstart";
    let create = pb::CreateStreamRequest {
        subject: "quickstart.events".into(),
        name: stream.into(),
        partitions: 1,
        ..Default::default()
    };
    match client.create_stream(create).await {
        Ok(_) => println!("created stream {stream:?} on subject quickstart.events"),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            println!("stream {stream:?} already exists")
        }
        Err(status) => return Err(status).context("create stream"),
    }

    for i in 0..5 {
        let request = pb::PublishRequest {
            stream: stream.into(),
            key: format!("key-{i}").into_bytes().into(),
            value: format!("hello #{i}").into_bytes().into(),
            ack_policy: pb::AckPolicy::Leader as i32,
            expected_offset: -1,
            ..Default::default()
        };
        let ack = client
            .publish(request)
            .await?
            .into_inner()
            .ack
            .context("no ack")?;
        println!("published hello #{i} -> offset {}", ack.offset);
    }

    let subscribe = pb::SubscribeRequest {
        stream: stream.into(),
        start_position: pb::StartPosition::Earliest as i32,
        stop_position: pb::StopPosition::StopLatest as i32,
        ..Default::default()
    };
    let mut messages = client.subscribe(subscribe).await?.into_inner();
    let _handshake = messages.next().await.context("no handshake")??;
    let mut count = 0;
    while let Some(item) = messages.next().await {
        match item {
            Ok(m) => {
                count += 1;
                println!(
                    "read offset {} key {:?} value {:?}",
                    m.offset,
                    String::from_utf8_lossy(&m.key),
                    String::from_utf8_lossy(&m.value)
                );
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => break,
            Err(status) => return Err(status).context("subscribe"),
        }
    }
    if count == 0 {
        bail!("read nothing back");
    }
    println!("read {count} messages back; done");
    Ok(())
}

async fn connect(addr: &str) -> anyhow::Result<ApiClient<tonic::transport::Channel>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match ApiClient::connect(format!("http://{addr}")).await {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("waiting for the server at {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot reach {addr}")),
        }
    }
}
