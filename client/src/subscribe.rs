//! Subscriptions: one task per partition reads the server stream into a bounded channel (the prefetch
//! buffer); the [`Subscription`] is the channel's receiving end, as a `Stream`.
//!
//! The read task hands messages over in batches: everything the gRPC stream has already received (up to
//! [`MAX_BATCH`] messages, never more than the prefetch) crosses the channel in one send, so a fast reader
//! pays one channel operation and one wake-up per batch instead of per message. The consumer still sees one
//! message at a time, in partition order.
//!
//! # How a subscription ends
//! | server says | the `Subscription` yields |
//! |---|---|
//! | stop position reached (`ResourceExhausted` "Stop offset reached"), reverse read reached the oldest message, stream empty with a stop position | `None`: a clean end |
//! | readonly partition fully read (`ResourceExhausted` "End of readonly partition") | `Err(EndOfReadonlyPartition)`, then `None` |
//! | partition paused (`FailedPrecondition` mid-stream) | `Err(Paused)`, then `None` |
//! | stream deleted (`NotFound` mid-stream) | `Err(StreamDeleted)`, then `None` |
//! | connection lost, server stopping, leader moved (`Unavailable` and other transport errors) | nothing: it resubscribes from the last offset + 1 (event [`Event::Resubscribing`], then [`Event::Resubscribed`]); after the resubscribe window, `Err(<last error>)`, then `None` |
//! | client closed | `Err(Closed)`, then `None` |
//!
//! Dropping a `Subscription` cancels its tasks at once, which drops the gRPC stream (an HTTP/2 reset the
//! server sees immediately).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, Stream};
use liftbridge_proto::pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::{Code, Streaming};

use crate::client::Inner;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::event::Event;
use crate::options::{RetryPolicy, StopPosition, SubscribeOptions};
use crate::received::{MessageCodec, ReceivedMessage};

/// A subscription to one partition, or to all partitions of a stream: a `Stream` of messages.
///
/// ```no_run
/// # async fn run(client: liftbridge::Client) -> liftbridge::Result<()> {
/// use futures::StreamExt;
/// use liftbridge::{StartPosition, SubscribeOptions};
///
/// let mut sub = client
///     .subscribe("orders", SubscribeOptions::new().start_at(StartPosition::Earliest))
///     .await?;
/// while let Some(msg) = sub.next().await {
///     let msg = msg?;
///     println!("{} {:?}", msg.offset(), msg.value());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Result<Vec<ReceivedMessage>>>,
    /// The rest of the batch received last, handed out before the channel is polled again.
    ready: std::vec::IntoIter<ReceivedMessage>,
    stream: String,
    partitions: Vec<i32>,
    /// Cancels the partition tasks when the subscription is dropped.
    _cancel: DropGuard,
}

impl Subscription {
    /// The stream subscribed to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The partitions subscribed to.
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }
}

impl Stream for Subscription {
    type Item = Result<ReceivedMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(msg) = self.ready.next() {
                return Poll::Ready(Some(Ok(msg)));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(batch))) => self.ready = batch.into_iter(),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.ready.len(), None)
    }
}

/// The most messages one batch carries from a partition's read task to the [`Subscription`].
pub const MAX_BATCH: usize = 256;

/// The channel between the read tasks and the [`Subscription`]: batches of at most `batch` messages, and
/// about `prefetch` messages buffered in all.
fn channel(prefetch: usize) -> (Batcher, mpsc::Receiver<Result<Vec<ReceivedMessage>>>) {
    let batch = prefetch.clamp(1, MAX_BATCH);
    let (tx, rx) = mpsc::channel((prefetch / batch).max(1));
    (Batcher { tx, batch }, rx)
}

/// The sending side of a subscription's channel, shared by its partition tasks.
#[derive(Clone)]
struct Batcher {
    tx: mpsc::Sender<Result<Vec<ReceivedMessage>>>,
    /// The most messages per batch.
    batch: usize,
}

/// What ended a server stream.
enum End {
    /// Normal end: stop position, start of a reverse read.
    Clean,
    /// Reported to the consumer, then the subscription ends.
    Fatal(Error),
    /// Worth resubscribing.
    Broken(Error),
}

/// Classifies the status that ended a running subscription.
fn classify(inner: &Inner, status: tonic::Status, stream: &str, partition: i32) -> End {
    let op = Op::Subscription { stream, partition };
    let lower = status.message().to_ascii_lowercase();
    match status.code() {
        Code::ResourceExhausted if lower.contains("readonly") => {
            End::Fatal(inner.map_status(status, op))
        }
        Code::ResourceExhausted => End::Clean,
        Code::FailedPrecondition if lower.contains("leader") => {
            End::Broken(inner.map_status(status, op))
        }
        Code::FailedPrecondition | Code::NotFound => End::Fatal(inner.map_status(status, op)),
        Code::Unavailable
        | Code::Unknown
        | Code::Aborted
        | Code::Cancelled
        | Code::DeadlineExceeded => End::Broken(inner.map_status(status, op)),
        _ => End::Fatal(inner.map_status(status, op)),
    }
}

/// The gRPC method of `Subscribe` (the same path the generated client uses).
const SUBSCRIBE_PATH: &str = "/proto.API/Subscribe";

/// Opens a partition's server stream and consumes the handshake. `Ok(None)`: nothing to read (the stop
/// position is before the start, or the stream is empty with a stop position).
async fn open(
    inner: &Inner,
    stream: &str,
    partition: i32,
    opts: &SubscribeOptions,
    last: Option<i64>,
) -> Result<Option<Streaming<ReceivedMessage>>> {
    if let Some(last) = last {
        let done = if opts.reverse {
            last == 0 || matches!(opts.stop, Some(StopPosition::Offset(s)) if last <= s)
        } else {
            matches!(opts.stop, Some(StopPosition::Offset(s)) if last >= s)
        };
        if done {
            return Ok(None);
        }
    }
    let req = opts.to_request(stream, partition, last);
    let op = Op::Subscribe { stream, partition };
    let deadline = Instant::now() + inner.opts.request_timeout;
    let mut attempt: u32 = 0;
    let mut not_found_refreshed = false;
    loop {
        inner.check_open()?;
        let err = match open_once(inner, &req, opts.read_isr_replica, deadline).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        let retryable = match err.kind() {
            ErrorKind::NotLeader | ErrorKind::Unavailable | ErrorKind::Disconnected => true,
            ErrorKind::NoSuchStream | ErrorKind::NoSuchPartition if !not_found_refreshed => {
                not_found_refreshed = true;
                true
            }
            _ => false,
        };
        attempt += 1;
        let pause = inner.opts.retry.backoff(attempt - 1);
        if !retryable
            || attempt >= inner.opts.retry.max_attempts
            || Instant::now() + pause >= deadline
        {
            return Err(err);
        }
        tracing::debug!(%op, error = %err, attempt, "subscribe failed; refreshing metadata and retrying");
        inner.sleep_or_closed(pause).await?;
        let _ = inner.refresh_metadata().await;
    }
}

async fn open_once(
    inner: &Inner,
    req: &pb::SubscribeRequest,
    isr: bool,
    deadline: Instant,
) -> Result<Option<Streaming<ReceivedMessage>>> {
    let (stream, partition) = (req.stream.as_str(), req.partition);
    let op = Op::Subscribe { stream, partition };
    let addr = inner.partition_addr(stream, partition, isr).await?;
    let mut grpc = inner.connections.grpc(&addr)?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    // No grpc-timeout header: a server would cut the whole subscription off at the deadline. The deadline
    // bounds only the setup, here.
    let setup = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connecting: {e}")))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(SUBSCRIBE_PATH);
        let mut stream = grpc
            .server_streaming(tonic::Request::new(req.clone()), path, MessageCodec)
            .await?
            .into_inner();
        let handshake = stream.message().await?;
        Ok::<_, tonic::Status>((stream, handshake))
    };
    let result = match tokio::time::timeout(remaining, setup).await {
        Err(_) => Err(Error::timeout(&op.to_string(), inner.opts.request_timeout)),
        Ok(Ok((stream, Some(_handshake)))) => Ok(Some(stream)),
        Ok(Ok((_, None))) => Err(Error::disconnected(&op.to_string())),
        Ok(Err(status))
            if status.code() == Code::ResourceExhausted
                && !status.message().to_ascii_lowercase().contains("readonly") =>
        {
            // "Stream is empty" with a stop position: nothing to read.
            inner.connections.reached(&addr);
            return Ok(None);
        }
        Ok(Err(status)) => Err(inner.map_status(status, op)),
    };
    inner.connections.record(&addr, &result);
    result
}

/// Subscribes to one partition.
pub(crate) async fn subscribe(
    inner: &Arc<Inner>,
    stream: &str,
    opts: SubscribeOptions,
) -> Result<Subscription> {
    inner.check_open()?;
    opts.validate()?;
    let (tx, rx) = channel(opts.prefetch.unwrap_or(inner.opts.prefetch));
    let cancel = CancellationToken::new();
    let first = open(inner, stream, opts.partition, &opts, None).await?;
    if let Some(first) = first {
        tokio::spawn(run(
            inner.clone(),
            stream.to_string(),
            opts.partition,
            opts.clone(),
            first,
            tx,
            cancel.clone(),
        ));
    }
    Ok(Subscription {
        rx,
        ready: Vec::new().into_iter(),
        stream: stream.to_string(),
        partitions: vec![opts.partition],
        _cancel: cancel.drop_guard(),
    })
}

/// Subscribes to every partition, merged.
pub(crate) async fn subscribe_all(
    inner: &Arc<Inner>,
    stream: &str,
    opts: SubscribeOptions,
) -> Result<Subscription> {
    inner.check_open()?;
    opts.validate()?;
    let count = inner.partition_count(stream).await?;
    let partitions: Vec<i32> = (0..i32::try_from(count).unwrap_or(i32::MAX)).collect();
    let (tx, rx) = channel(opts.prefetch.unwrap_or(inner.opts.prefetch));
    let cancel = CancellationToken::new();
    let opts_ref = &opts;
    let opened = futures::future::try_join_all(
        partitions
            .iter()
            .map(|&p| async move { open(inner, stream, p, opts_ref, None).await.map(|s| (p, s)) }),
    )
    .await?;
    for (p, s) in opened {
        if let Some(s) = s {
            tokio::spawn(run(
                inner.clone(),
                stream.to_string(),
                p,
                opts.clone(),
                s,
                tx.clone(),
                cancel.clone(),
            ));
        }
    }
    Ok(Subscription {
        rx,
        ready: Vec::new().into_iter(),
        stream: stream.to_string(),
        partitions,
        _cancel: cancel.drop_guard(),
    })
}

/// Reads one partition until it ends, resubscribing when its stream breaks.
async fn run(
    inner: Arc<Inner>,
    stream: String,
    partition: i32,
    opts: SubscribeOptions,
    mut current: Streaming<ReceivedMessage>,
    tx: Batcher,
    cancel: CancellationToken,
) {
    let mut last: Option<i64> = None;
    loop {
        let end = loop {
            let item = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = inner.closed.cancelled() => {
                    let _ = tx.tx.try_send(Err(Error::closed()));
                    return;
                }
                item = current.message() => item,
            };
            // The first message, then whatever else the stream already holds, without waiting.
            let mut batch = Vec::new();
            let mut item = item;
            let end = loop {
                match item {
                    Ok(Some(msg)) => {
                        last = Some(msg.offset());
                        batch.push(msg);
                    }
                    Ok(None) => {
                        break Some(End::Broken(Error::disconnected(&format!(
                            "subscription to {stream}/{partition} (the server ended the stream without a status)"
                        ))));
                    }
                    Err(status) => break Some(classify(&inner, status, &stream, partition)),
                }
                if batch.len() >= tx.batch {
                    break None;
                }
                match current.message().now_or_never() {
                    Some(next) => item = next,
                    None => break None,
                }
            };
            if !batch.is_empty() {
                let sent = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    sent = tx.tx.send(Ok(batch)) => sent,
                };
                if sent.is_err() {
                    return;
                }
            }
            if let Some(end) = end {
                break end;
            }
        };
        let error = match end {
            End::Clean => return,
            End::Fatal(e) => {
                let _ = tx.tx.send(Err(e)).await;
                return;
            }
            End::Broken(e) if !opts.resubscribe => {
                let _ = tx.tx.send(Err(e)).await;
                return;
            }
            End::Broken(e) => e,
        };
        let _ = inner.events.send(Event::Resubscribing {
            stream: stream.clone(),
            partition,
            error: error.clone(),
        });
        tracing::debug!(stream, partition, %error, ?last, "subscription broke; resubscribing");
        match resubscribe(&inner, &stream, partition, &opts, last, &cancel, error).await {
            Ok(Some(s)) => {
                current = s;
                let _ = inner.events.send(Event::Resubscribed {
                    stream: stream.clone(),
                    partition,
                    offset: last.map(|l| if opts.reverse { l - 1 } else { l + 1 }),
                });
            }
            Ok(None) => return,
            Err(e) => {
                let _ = tx.tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Tries to open the partition again, from after `last`, with backoff, for up to the resubscribe window.
async fn resubscribe(
    inner: &Inner,
    stream: &str,
    partition: i32,
    opts: &SubscribeOptions,
    last: Option<i64>,
    cancel: &CancellationToken,
    mut error: Error,
) -> Result<Option<Streaming<ReceivedMessage>>> {
    let window = inner.opts.resubscribe_window;
    let deadline = Instant::now() + window;
    let backoff = RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    };
    let mut attempt = 0;
    loop {
        let pause = backoff.backoff(attempt).max(Duration::from_millis(20));
        attempt += 1;
        if Instant::now() + pause >= deadline {
            return Err(Error::new(
                error.kind(),
                format!(
                    "gave up resubscribing to {stream}/{partition} after {window:?} (raise the resubscribe window \
                     to wait longer): {}",
                    error.message()
                ),
            )
            .with_source(error));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            _ = inner.closed.cancelled() => return Err(Error::closed()),
            _ = tokio::time::sleep(pause) => {}
        }
        let _ = inner.refresh_metadata().await;
        match open(inner, stream, partition, opts, last).await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_retryable() => error = e,
            Err(e) => return Err(e),
        }
    }
}
