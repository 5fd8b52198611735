//! Creates a stream with a few options (unless it exists) and prints its metadata.
//!
//! ```sh
//! cargo run -p liftbridge-examples --bin create_stream -- 127.0.0.1:9292 orders
//! ```

use std::time::Duration;

use liftbridge::{Client, StreamOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9292".into());
    let name = args.next().unwrap_or_else(|| "orders".into());
    let client = Client::connect([addr]).await?;

    let options = StreamOptions::new(format!("{name}.events"), &name)
        .partitions(3)
        .retention_max_age(Duration::from_secs(7 * 24 * 3600))
        .segment_max_bytes(64 << 20);
    if client.create_stream_if_not_exists(options).await? {
        println!("created stream {name:?}");
    } else {
        println!("stream {name:?} already exists");
    }
    let info = client
        .wait_for_stream(&name, Duration::from_secs(10))
        .await?;
    println!("subject {}", info.subject());
    for (id, p) in info.partitions() {
        let leader = client.leader_of(&name, *id).await?;
        println!(
            "partition {id}: leader {} at {}, replicas {:?}, isr {:?}",
            p.leader(),
            leader.addr(),
            p.replicas(),
            p.isr()
        );
    }
    client.close().await;
    Ok(())
}
