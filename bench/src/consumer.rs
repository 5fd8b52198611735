//! Reading a stream back from the start: throughput, and a check that every message came back in order.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use liftbridge::{StartPosition, StopPosition, SubscribeOptions};

use crate::payload::OrderCheck;
use crate::progress::Progress;
use crate::report::Report;
use crate::target::{Target, nats_connect, nats_err};
use crate::workload::Workload;
use crate::{BenchError, Result};

/// The longest pause between two messages before a read is declared stuck.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages per JetStream pull request.
const PULL_BATCH: usize = 1000;

/// Reads `w.messages` messages from the start of the stream (every partition, merged) and reports.
pub async fn run(target: &Target, w: &Workload, progress: bool) -> Result<Report> {
    w.validate()?;
    let counter = Progress::new();
    let mut check = OrderCheck::new();
    let label = format!("{} consumer", target.system());
    let (elapsed, cleanup) = match target {
        Target::Liftbridge { .. } => {
            let client = target.liftbridge_client(1).await?;
            let opts = SubscribeOptions::new()
                .start_at(StartPosition::Earliest)
                .stop_at(StopPosition::Latest);
            let start = Instant::now();
            let mut sub = if w.partitions > 1 {
                client.subscribe_all(&w.stream, opts).await?
            } else {
                client.subscribe(&w.stream, opts).await?
            };
            let line = progress.then(|| counter.show(label, w.messages));
            while check.received() < w.messages {
                match tokio::time::timeout(IDLE_TIMEOUT, sub.next()).await {
                    Ok(Some(msg)) => {
                        let msg = msg?;
                        check.observe(msg.partition(), Some(msg.offset()), msg.value());
                        counter.add(1);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        return Err(BenchError::Timeout(format!(
                            "no message for {IDLE_TIMEOUT:?} after {} of {}",
                            check.received(),
                            w.messages
                        )));
                    }
                }
            }
            let elapsed = start.elapsed();
            drop(line);
            drop(sub);
            client.close().await;
            (elapsed, None)
        }
        Target::JetStream { url } => {
            let js = jetstream::new(nats_connect(url).await?);
            let stream = js.get_stream(&w.stream).await.map_err(nats_err)?;
            let name = format!("bench{}", std::process::id());
            let start = Instant::now();
            let pull: consumer::PullConsumer = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    ack_policy: consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .map_err(nats_err)?;
            let mut messages = pull
                .stream()
                .max_messages_per_batch(PULL_BATCH)
                .messages()
                .await
                .map_err(nats_err)?;
            let line = progress.then(|| counter.show(label, w.messages));
            while check.received() < w.messages {
                match tokio::time::timeout(IDLE_TIMEOUT, messages.next()).await {
                    Ok(Some(msg)) => {
                        let msg = msg.map_err(nats_err)?;
                        check.observe(0, None, &msg.payload);
                        counter.add(1);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        return Err(BenchError::Timeout(format!(
                            "no message for {IDLE_TIMEOUT:?} after {} of {}",
                            check.received(),
                            w.messages
                        )));
                    }
                }
            }
            let elapsed = start.elapsed();
            drop(line);
            drop(messages);
            (elapsed, Some((stream, name)))
        }
    };
    if let Some((stream, name)) = cleanup {
        let _ = stream.delete_consumer(&name).await;
    }
    let mut report = Report::new(target.system(), "consumer", w, check.received(), elapsed);
    report.in_order = check.in_order();
    report.order_violations = check.violations();
    if let Some(v) = check.first_violation() {
        report.first_error = Some(v.to_string());
    }
    Ok(report)
}
