//! Publishes round-robin over a 3-partition stream, then reads every partition through one merged
//! subscription (order is kept within each partition).
//!
//! ```sh
//! cargo run -p liftbridge-examples --bin subscribe_all_partitions -- 127.0.0.1:9292 spread
//! ```

use futures::StreamExt;
use liftbridge::{
    Client, Partitioning, StartPosition, StopPosition, StreamOptions, SubscribeOptions,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9292".into());
    let stream = args.next().unwrap_or_else(|| "spread".into());
    let client = Client::builder([addr])
        .partitioning(Partitioning::RoundRobin)
        .connect()
        .await?;
    client
        .create_stream_if_not_exists(StreamOptions::new(&stream, &stream).partitions(3))
        .await?;
    for i in 0..9 {
        client.publish(&stream, format!("message {i}")).await?;
    }

    let mut subscription = client
        .subscribe_all(
            &stream,
            SubscribeOptions::new()
                .start_at(StartPosition::Earliest)
                .stop_at(StopPosition::Latest),
        )
        .await?;
    println!("reading partitions {:?}", subscription.partitions());
    while let Some(message) = subscription.next().await {
        let message = message?;
        println!(
            "partition {} offset {}: {}",
            message.partition(),
            message.offset(),
            String::from_utf8_lossy(message.value())
        );
    }
    client.close().await;
    Ok(())
}
