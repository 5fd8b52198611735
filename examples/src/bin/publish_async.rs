//! Pipelined publishing: many messages in flight on one stream, acks awaited concurrently, with the client's
//! in-flight window applying backpressure.
//!
//! ```sh
//! cargo run --release -p liftbridge-examples --bin publish_async -- 127.0.0.1:9292 bulk 100000
//! ```

use std::time::Instant;

use liftbridge::{Client, StreamOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9292".into());
    let stream = args.next().unwrap_or_else(|| "bulk".into());
    let count: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let client = Client::builder([addr]).max_in_flight(512).connect().await?;
    client
        .create_stream_if_not_exists(StreamOptions::new(&stream, &stream))
        .await?;

    let started = Instant::now();
    // `send` returns as soon as the message is queued; its AckFuture is awaited by a separate task, so the
    // sender never waits for a round trip — only for room in the window.
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::channel(1024);
    let checker = tokio::spawn(async move {
        let mut last = -1;
        while let Some(ack) = acks_rx.recv().await {
            let ack: liftbridge::AckFuture = ack;
            last = ack.await?.offset();
        }
        anyhow::Ok(last)
    });
    let payload = bytes::Bytes::from(vec![b'x'; 128]);
    for _ in 0..count {
        let ack = client.send(&stream, payload.clone()).await?;
        acks_tx.send(ack).await?;
    }
    drop(acks_tx);
    let last = checker.await??;
    let elapsed = started.elapsed();
    println!(
        "{count} messages acked in {elapsed:.2?} ({:.0} msg/s), last offset {last}",
        count as f64 / elapsed.as_secs_f64()
    );
    client.close().await;
    Ok(())
}
