//! Reads a stream partition from the beginning. By default it stops at the newest message present when it
//! subscribed; pass `follow` to keep reading new messages (Ctrl-C to stop).
//!
//! ```sh
//! cargo run -p liftbridge-examples --bin subscribe -- 127.0.0.1:9292 orders 0 follow
//! ```

use futures::StreamExt;
use liftbridge::{Client, Event, StartPosition, StopPosition, SubscribeOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9292".into());
    let stream = args.next().unwrap_or_else(|| "orders".into());
    let partition: i32 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    let follow = args.next().as_deref() == Some("follow");
    let client = Client::connect([addr]).await?;

    // Resubscriptions after failures happen by themselves; the events say when.
    let mut events = client.events();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Event::Resubscribing { .. } | Event::Resubscribed { .. } = event {
                eprintln!("event: {event:?}");
            }
        }
    });

    let mut options = SubscribeOptions::new()
        .partition(partition)
        .start_at(StartPosition::Earliest);
    if !follow {
        options = options.stop_at(StopPosition::Latest);
    }
    let mut subscription = client.subscribe(&stream, options).await?;
    while let Some(message) = subscription.next().await {
        let message = message?;
        println!(
            "{}/{} offset {}: key {:?} value {:?} headers {:?}",
            message.stream(),
            message.partition(),
            message.offset(),
            String::from_utf8_lossy(message.key()),
            String::from_utf8_lossy(message.value()),
            message.headers().keys().collect::<Vec<_>>()
        );
    }
    println!("reached the stop position");
    client.close().await;
    Ok(())
}
