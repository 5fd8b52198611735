//! Helpers shared by the client's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use futures::{Stream, StreamExt};
use liftbridge::{Client, Event, ReceivedMessage, StreamOptions};

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// Creates a stream named `name` on subject `name` with `partitions` partitions.
pub async fn create(client: &Client, name: &str, partitions: u32) {
    client
        .create_stream(StreamOptions::new(name, name).partitions(partitions))
        .await
        .expect("create stream");
}

/// The next item of `stream`, failing the test after [`WAIT`].
pub async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream item within the wait")
}

/// Reads `n` messages, failing on errors and after [`WAIT`].
pub async fn take<S>(sub: &mut S, n: usize) -> Vec<ReceivedMessage>
where
    S: Stream<Item = liftbridge::Result<ReceivedMessage>> + Unpin,
{
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match next(sub).await {
            Some(Ok(m)) => out.push(m),
            Some(Err(e)) => panic!("subscription error after {} messages: {e}", out.len()),
            None => panic!(
                "subscription ended after {} messages, wanted {n}",
                out.len()
            ),
        }
    }
    out
}

/// Waits for an event matching `pred`.
pub async fn wait_event<S>(events: &mut S, mut pred: impl FnMut(&Event) -> bool) -> Event
where
    S: Stream<Item = Event> + Unpin,
{
    loop {
        match next(events).await {
            Some(e) if pred(&e) => return e,
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
}

/// Polls `cond` every 20 ms until it returns true, failing after [`WAIT`].
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
