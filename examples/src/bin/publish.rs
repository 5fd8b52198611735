//! Publishes a few keyed messages with headers and waits for each ack.
//!
//! ```sh
//! cargo run -p liftbridge-examples --bin publish -- 127.0.0.1:9292 orders
//! ```

use liftbridge::{Client, Message, Partitioning, StreamOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9292".into());
    let stream = args.next().unwrap_or_else(|| "orders".into());
    // Keyed messages go to the partition go-liftbridge would pick: CRC-32 of the key.
    let client = Client::builder([addr])
        .partitioning(Partitioning::Key)
        .connect()
        .await?;
    client
        .create_stream_if_not_exists(
            StreamOptions::new(format!("{stream}.events"), &stream).partitions(3),
        )
        .await?;

    for i in 0..10 {
        let message = Message::new(format!("order #{i}"))
            .key(format!("customer-{}", i % 4))
            .header("source", "example");
        let ack = client.publish(&stream, message).await?;
        println!(
            "acked: partition {} offset {} (correlation id {})",
            ack.partition().unwrap_or_default(),
            ack.offset(),
            ack.correlation_id()
        );
    }
    client.close().await;
    Ok(())
}
