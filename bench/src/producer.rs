//! The publish loops. Every publisher runs on its own connection and task:
//!
//! - synchronous (`--window 1`, no rate): send, wait for the ack, repeat;
//! - windowed (`--window W`): at most W messages await their ack, a new one goes out as soon as one is acked;
//! - batched (`--pub-batch B`): send B, wait until all B are acked, repeat;
//! - fixed rate (`--rate R`): message i is due at `start + i / rate`; its latency is counted from that time,
//!   not from when it could actually go out, so a stalled server shows up in the percentiles.
//!
//! In the pipelined modes a collector task awaits the acks as they arrive, so each latency is taken when its
//! ack completes rather than when the sender gets around to looking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::latency::Latencies;
use crate::payload::stamped;
use crate::progress::Progress;
use crate::report::Report;
use crate::target::{AckWait, Publisher, Target};
use crate::workload::Workload;
use crate::{BenchError, Result};

/// What one publisher measured.
#[derive(Debug, Default)]
struct Outcome {
    latencies: Latencies,
    acked: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Outcome {
    fn record(&mut self, result: Result<()>, latency: Duration, progress: &Progress) {
        match result {
            Ok(()) => {
                self.latencies.record(latency);
                self.acked += 1;
                progress.add(1);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies.merge(&other.latencies);
        self.acked += other.acked;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Creates the stream (unless `create` is false), runs the workload and reports. `progress` shows a progress
/// line on stderr for runs longer than a second.
pub async fn run(target: &Target, w: &Workload, create: bool, progress: bool) -> Result<Report> {
    w.validate()?;
    if create {
        target.prepare_stream(w, false).await?;
    }
    let mut publishers = Vec::with_capacity(w.publishers);
    for _ in 0..w.publishers {
        publishers.push(target.publisher(w).await?);
    }
    let counter = Progress::new();
    let line = progress.then(|| counter.show(format!("{} producer", target.system()), w.messages));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(w.publishers);
    for (index, publisher) in publishers.into_iter().enumerate() {
        let w = w.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = publish(&publisher, index, &w, start, &counter).await;
            publisher.close().await;
            outcome
        }));
    }
    let mut total = Outcome::default();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(outcome)) => total.merge(outcome),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => {
                failure = failure.or(Some(BenchError::Invalid(format!("publisher task: {e}"))))
            }
        }
    }
    let elapsed = start.elapsed();
    drop(line);
    if let Some(e) = failure {
        return Err(e);
    }
    let mut report = Report::new(target.system(), "producer", w, total.acked, elapsed);
    report.latency_us = total.latencies.summary();
    report.errors = total.errors;
    report.first_error = total.first_error;
    Ok(report)
}

/// One publisher's loop.
async fn publish(
    publisher: &Publisher,
    index: usize,
    w: &Workload,
    start: Instant,
    progress: &Progress,
) -> Result<Outcome> {
    let count = w.share(index);
    let id = index as u32;
    if w.window == 1 && w.pub_batch == 1 && w.rate == 0.0 {
        let mut out = Outcome::default();
        for i in 0..count {
            let sent = Instant::now();
            let ack = publisher.send(i, stamped(w.size, id, i)).await?;
            let result = ack.await;
            out.record(result, sent.elapsed(), progress);
        }
        return Ok(out);
    }

    let permits = w.in_flight();
    let window = Arc::new(Semaphore::new(permits));
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(collect(rx, progress.clone()));
    // Seconds between two messages of this publisher at a fixed rate.
    let period = (w.rate > 0.0).then(|| w.publishers as f64 / w.rate);
    for i in 0..count {
        if w.pub_batch > 1 && i > 0 && i % w.pub_batch as u64 == 0 {
            // The whole previous batch must be acknowledged before the next one starts.
            let all = window
                .acquire_many(permits as u32)
                .await
                .map_err(|_| BenchError::Invalid("window closed".into()))?;
            drop(all);
        }
        let permit = window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BenchError::Invalid("window closed".into()))?;
        let sent = match period {
            Some(p) => {
                let due = start + Duration::from_secs_f64(p * i as f64);
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let ack = publisher.send(i, stamped(w.size, id, i)).await?;
        if tx.send((sent, ack, permit)).is_err() {
            break;
        }
    }
    drop(tx);
    collector
        .await
        .map_err(|e| BenchError::Invalid(format!("ack collector: {e}")))
}

/// Awaits acks as they complete and records their latency; frees a window slot per ack.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<(Instant, AckWait, OwnedSemaphorePermit)>,
    progress: Progress,
) -> Outcome {
    let mut out = Outcome::default();
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            biased;
            Some((result, latency)) = pending.next(), if !pending.is_empty() => {
                out.record(result, latency, &progress);
            }
            next = rx.recv(), if open => match next {
                Some((sent, ack, permit)) => pending.push(async move {
                    let result = ack.await;
                    let latency = sent.elapsed();
                    drop::<OwnedSemaphorePermit>(permit);
                    (result, latency)
                }),
                None => open = false,
            },
        }
    }
    out
}
