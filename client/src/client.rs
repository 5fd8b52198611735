//! [`Client`], its builder, and the request machinery every operation shares: server selection, deadlines,
//! retries with backoff, leader routing and the single-flight metadata refresh.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use rand::Rng;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Response, Status};

use crate::connection::{ChannelSettings, Connections, normalize_addr};
use crate::error::{Error, ErrorKind, Op, Result, from_status};
use crate::event::{EVENT_BUFFER, Event, Events};
use crate::message::{Ack, Message};
use crate::metadata::{BrokerInfo, Metadata, MetadataCache, PartitionInfo, StreamInfo};
use crate::options::{
    DEFAULT_ACK_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DRAIN_GRACE, DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RECV_MESSAGE_SIZE,
    DEFAULT_MAX_SEND_MESSAGE_SIZE, DEFAULT_METADATA_REFRESH_INTERVAL, DEFAULT_PREFETCH,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_RESUBSCRIBE_WINDOW, RetryPolicy, StreamOptions,
    SubscribeOptions,
};
use crate::partition::{Partitioning, RoundRobinPartitioner};
use crate::publish::{AckFuture, Publishers};
use crate::subscribe::Subscription;
use crate::tls::TlsOptions;

/// Settings of a client, fixed when it is built.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) ack_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) metadata_refresh_interval: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) keepalive: Option<(Duration, Duration)>,
    pub(crate) resubscribe_window: Duration,
    pub(crate) prefetch: usize,
    pub(crate) max_recv_message_size: usize,
    pub(crate) max_send_message_size: usize,
    pub(crate) drain_grace: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            retry: RetryPolicy::default(),
            metadata_refresh_interval: DEFAULT_METADATA_REFRESH_INTERVAL,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            keepalive: Some((DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT)),
            resubscribe_window: DEFAULT_RESUBSCRIBE_WINDOW,
            prefetch: DEFAULT_PREFETCH,
            max_recv_message_size: DEFAULT_MAX_RECV_MESSAGE_SIZE,
            max_send_message_size: DEFAULT_MAX_SEND_MESSAGE_SIZE,
            drain_grace: DEFAULT_DRAIN_GRACE,
        }
    }
}

/// Builds a [`Client`]. Every option has a documented default (the `DEFAULT_*` constants in
/// [`options`](crate::options)).
///
/// ```no_run
/// # async fn run() -> liftbridge::Result<()> {
/// use std::time::Duration;
/// use liftbridge::{Client, Partitioning};
///
/// let client = Client::builder(["10.0.0.1:9292", "10.0.0.2:9292"])
///     .request_timeout(Duration::from_secs(3))
///     .max_in_flight(256)
///     .partitioning(Partitioning::Key)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .connect() is awaited"]
pub struct ClientBuilder {
    seeds: Vec<String>,
    opts: ClientOptions,
    tls: Option<TlsOptions>,
    partitioning: Partitioning,
}

impl ClientBuilder {
    /// How long connecting may take: [`connect`](ClientBuilder::connect) keeps trying the seeds (with backoff)
    /// for this long, and each later TCP connection gets this long. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.opts.connect_timeout = timeout;
        self
    }

    /// Deadline of each admin, metadata and subscribe-setup operation, retries included. Default 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.opts.request_timeout = timeout;
        self
    }

    /// How long a published message waits for its ack before failing with
    /// [`ErrorKind::AckTimeout`]. Default 5 s.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.opts.ack_timeout = timeout;
        self
    }

    /// Retry policy of operations that are safe to retry. Default: 10 attempts, 50 ms base, ×2, 2 s cap,
    /// full jitter.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.opts.retry = policy;
        self
    }

    /// How often the metadata cache is refreshed in the background; zero turns it off (it is still refreshed
    /// on errors). Default 30 s.
    pub fn metadata_refresh_interval(mut self, interval: Duration) -> Self {
        self.opts.metadata_refresh_interval = interval;
        self
    }

    /// Most messages awaiting their ack at once; [`Client::send`] waits for room beyond it (backpressure).
    /// Default 1024.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.opts.max_in_flight = n.max(1);
        self
    }

    /// HTTP/2 keepalive: ping every `interval` (also while idle) and drop a connection whose ping is not
    /// answered within `timeout`. Default 30 s / 10 s.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.opts.keepalive = Some((interval, timeout));
        self
    }

    /// Turns HTTP/2 keepalive pings off.
    pub fn no_keepalive(mut self) -> Self {
        self.opts.keepalive = None;
        self
    }

    /// How long a broken subscription keeps trying to resubscribe. Default 30 s.
    pub fn resubscribe_window(mut self, window: Duration) -> Self {
        self.opts.resubscribe_window = window;
        self
    }

    /// Messages each subscription buffers ahead of its consumer. Default 1024.
    pub fn prefetch(mut self, messages: usize) -> Self {
        self.opts.prefetch = messages.max(1);
        self
    }

    /// Largest gRPC messages received and sent. Default 16 MiB / 4 MiB.
    pub fn max_message_sizes(mut self, recv: usize, send: usize) -> Self {
        self.opts.max_recv_message_size = recv;
        self.opts.max_send_message_size = send;
        self
    }

    /// How long [`Client::close`] waits for in-flight acks. Default 5 s.
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.opts.drain_grace = grace;
        self
    }

    /// Connects with TLS (see [`TlsOptions`]).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How messages without an explicit partition are routed. Default: partition 0 (as go-liftbridge).
    pub fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = partitioning;
        self
    }

    /// Connects: succeeds as soon as any seed answers a metadata request, trying the seeds in parallel (and
    /// again with backoff) until the connect timeout passes. Must be called on a tokio runtime, which the
    /// client then uses for its background work.
    pub async fn connect(self) -> Result<Client> {
        if self.seeds.is_empty() {
            return Err(Error::config(
                "no server address given: pass at least one host:port to Client::builder",
            ));
        }
        let mut seeds = Vec::with_capacity(self.seeds.len());
        for s in &self.seeds {
            let addr = normalize_addr(s)?;
            if !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        let tls = self.tls.as_ref().map(TlsOptions::to_tonic).transpose()?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let opts = self.opts;
        let settings = ChannelSettings {
            tls,
            connect_timeout: opts.connect_timeout,
            keepalive_interval: opts.keepalive.map(|k| k.0),
            keepalive_timeout: opts
                .keepalive
                .map(|k| k.1)
                .unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT),
            max_recv_message_size: opts.max_recv_message_size,
            max_send_message_size: opts.max_send_message_size,
        };
        let inner = Arc::new(Inner {
            connections: Connections::new(settings, events.clone()),
            metadata: MetadataCache::default(),
            publishers: Publishers::new(opts.max_in_flight),
            events,
            closed: CancellationToken::new(),
            partitioning: self.partitioning,
            round_robin: RoundRobinPartitioner::new(),
            seeds,
            opts,
        });
        inner.bootstrap().await?;
        if !inner.opts.metadata_refresh_interval.is_zero() {
            spawn_refresher(&inner);
        }
        Ok(Client { inner })
    }
}

/// Refreshes the metadata every interval until the client is closed or dropped (it holds only a weak
/// reference, so it never keeps a dropped client alive).
fn spawn_refresher(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let closed = inner.closed.clone();
    let every = inner.opts.metadata_refresh_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = closed.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(inner) = weak.upgrade() else { return };
            if let Err(e) = inner.refresh_metadata().await {
                tracing::debug!(error = %e, "periodic metadata refresh failed");
            }
        }
    });
}

/// A Liftbridge client: a cheap, cloneable handle (clones share connections, metadata, publish streams and
/// the in-flight window). See the [crate documentation](crate) for a tour.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// What every clone of a [`Client`] shares.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) opts: ClientOptions,
    /// The addresses given to the builder, normalized; always tried besides the servers from metadata, so a
    /// cluster whose advertised addresses are unreachable from here still answers through them.
    pub(crate) seeds: Vec<String>,
    pub(crate) connections: Connections,
    pub(crate) metadata: MetadataCache,
    pub(crate) publishers: Publishers,
    pub(crate) events: broadcast::Sender<Event>,
    /// Cancelled by `close()`: stops background tasks, subscriptions and new operations.
    pub(crate) closed: CancellationToken,
    pub(crate) partitioning: Partitioning,
    pub(crate) round_robin: RoundRobinPartitioner,
}

/// Which failures an operation may be retried after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and idempotent writes: after any retryable error.
    Idempotent,
    /// Writes that must not be applied twice: only when the request surely never reached a server.
    NotSent,
}

/// A request with a deadline (the `grpc-timeout` header), so no server ever works on it longer than the
/// caller waits. Never used for streams, whose deadline would cut them off.
pub(crate) fn request<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(timeout);
    req
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.is_cancelled() {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// Tries the seeds in parallel until one answers `FetchMetadata`, for up to the connect timeout.
    async fn bootstrap(&self) -> Result<()> {
        let deadline = Instant::now() + self.opts.connect_timeout;
        let mut attempt = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut tries: FuturesUnordered<_> = self
                .seeds
                .iter()
                .map(|addr| async move {
                    let result = self
                        .call_once(
                            addr,
                            Op::Metadata,
                            remaining.max(Duration::from_millis(1)),
                            |mut api, t| async move {
                                api.fetch_metadata(request(pb::FetchMetadataRequest::default(), t))
                                    .await
                            },
                        )
                        .await;
                    (addr, result)
                })
                .collect();
            let mut errors = Vec::new();
            while let Some((addr, result)) = tries.next().await {
                match result {
                    Ok(resp) => {
                        self.install_metadata(Metadata::from_proto(resp));
                        tracing::debug!(addr, "connected");
                        return Ok(());
                    }
                    Err(e) => errors.push((addr, e)),
                }
            }
            attempt += 1;
            let fatal = errors
                .iter()
                .any(|(_, e)| matches!(e.kind(), ErrorKind::Tls | ErrorKind::Config));
            let backoff = self.opts.retry.backoff(attempt);
            if fatal || Instant::now() + backoff >= deadline {
                let kind = if errors.iter().all(|(_, e)| e.kind() == ErrorKind::Tls) {
                    ErrorKind::Tls
                } else {
                    ErrorKind::Unavailable
                };
                let detail: Vec<String> = errors.iter().map(|(a, e)| format!("{a}: {e}")).collect();
                let mut err = Error::new(
                    kind,
                    format!(
                        "could not connect to any of {:?} within {:?}: check the addresses and that a server \
                         runs there [{}]",
                        self.seeds,
                        self.opts.connect_timeout,
                        detail.join("; ")
                    ),
                );
                if let Some((_, last)) = errors.pop() {
                    err = err.with_source(last);
                }
                return Err(err);
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// One attempt of an RPC on `addr`, bounded by `timeout`, with its outcome recorded for connection events.
    async fn call_once<T, F, Fut>(
        &self,
        addr: &str,
        op: Op<'_>,
        timeout: Duration,
        f: F,
    ) -> Result<T>
    where
        F: FnOnce(ApiClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let api = self.connections.api(addr)?;
        let result = match tokio::time::timeout(timeout, f(api, timeout)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(self.map_status(status, op)),
            Err(_) => Err(Error::timeout(&op.to_string(), timeout)),
        };
        self.connections.record(addr, &result);
        result
    }

    /// Maps a status, recognising TLS handshake failures.
    pub(crate) fn map_status(&self, status: Status, op: Op<'_>) -> Error {
        let tls = status.code() == tonic::Code::Unavailable && crate::tls::is_tls_failure(&status);
        let err = from_status(status, op);
        if tls {
            Error::new(
                ErrorKind::Tls,
                format!(
                    "{op}: the TLS handshake failed; check the CA, the server name and the client certificate \
                     ({})",
                    err.message()
                ),
            )
            .with_source(err)
        } else {
            err
        }
    }

    /// Every address worth trying for an any-server RPC: the servers from metadata, then the seeds.
    fn addresses(&self) -> Vec<String> {
        let mut addrs = self.metadata.snapshot().broker_addrs();
        for seed in &self.seeds {
            if !addrs.contains(seed) {
                addrs.push(seed.clone());
            }
        }
        addrs
    }

    /// Calls an RPC that any server answers, rotating over servers on retryable failures, with backoff,
    /// within the request timeout.
    pub(crate) async fn call_any<T, F, Fut>(&self, op: Op<'_>, retry: Retry, mut f: F) -> Result<T>
    where
        F: FnMut(ApiClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        self.check_open()?;
        let deadline = Instant::now() + self.opts.request_timeout;
        let addrs = self.addresses();
        let start = rand::rng().random_range(0..addrs.len().max(1));
        let mut attempt: u32 = 0;
        loop {
            let addr = &addrs[(start + attempt as usize) % addrs.len()];
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::timeout(&op.to_string(), self.opts.request_timeout));
            }
            let err = match self.call_once(addr, op, remaining, &mut f).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retryable = match retry {
                Retry::Idempotent => err.kind() == ErrorKind::Unavailable,
                Retry::NotSent => err.not_sent(),
            };
            attempt += 1;
            if !retryable || attempt >= self.opts.retry.max_attempts {
                return Err(err);
            }
            let pause = self.opts.retry.backoff(attempt - 1);
            if Instant::now() + pause >= deadline {
                return Err(err);
            }
            tracing::debug!(%op, addr, error = %err, attempt, "retrying");
            self.sleep_or_closed(pause).await?;
        }
    }

    /// Calls an RPC that only a partition's leader answers. Not-leader, unavailable and not-found answers
    /// refresh the metadata (single flight) and retry, within the request timeout.
    pub(crate) async fn call_leader<T, F, Fut>(
        &self,
        op: Op<'_>,
        stream: &str,
        partition: i32,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut(ApiClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        self.check_open()?;
        let deadline = Instant::now() + self.opts.request_timeout;
        let mut attempt: u32 = 0;
        let mut not_found_refreshed = false;
        loop {
            let addr = match self.partition_addr(stream, partition, false).await {
                Ok(addr) => addr,
                Err(e) if e.kind() == ErrorKind::NotLeader => {
                    attempt += 1;
                    let pause = self.opts.retry.backoff(attempt);
                    if attempt >= self.opts.retry.max_attempts || Instant::now() + pause >= deadline
                    {
                        return Err(e);
                    }
                    self.sleep_or_closed(pause).await?;
                    let _ = self.refresh_metadata().await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::timeout(&op.to_string(), self.opts.request_timeout));
            }
            let err = match self.call_once(&addr, op, remaining, &mut f).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retryable = match err.kind() {
                ErrorKind::NotLeader | ErrorKind::Unavailable => true,
                ErrorKind::NoSuchStream | ErrorKind::NoSuchPartition if !not_found_refreshed => {
                    not_found_refreshed = true;
                    true
                }
                _ => false,
            };
            attempt += 1;
            let pause = self.opts.retry.backoff(attempt - 1);
            if !retryable
                || attempt >= self.opts.retry.max_attempts
                || Instant::now() + pause >= deadline
            {
                return Err(err);
            }
            tracing::debug!(%op, addr = &*addr, error = %err, attempt, "refreshing metadata and retrying");
            self.sleep_or_closed(pause).await?;
            let _ = self.refresh_metadata().await;
        }
    }

    pub(crate) async fn sleep_or_closed(&self, pause: Duration) -> Result<()> {
        tokio::select! {
            _ = tokio::time::sleep(pause) => Ok(()),
            _ = self.closed.cancelled() => Err(Error::closed()),
        }
    }

    /// Installs fresh metadata and publishes the events it implies.
    fn install_metadata(&self, metadata: Metadata) {
        for event in self.metadata.install(metadata) {
            let _ = self.events.send(event);
        }
    }

    /// Refreshes the whole metadata cache. Concurrent callers share one request: whoever waited while another
    /// refresh ran gets that refresh's result.
    pub(crate) async fn refresh_metadata(&self) -> Result<Arc<Metadata>> {
        let seen = self.metadata.generation();
        let _turn = self.metadata.refresh_lock.lock().await;
        if self.metadata.generation() != seen {
            return Ok(self.metadata.snapshot());
        }
        let resp = self
            .call_any(Op::Metadata, Retry::Idempotent, |mut api, t| async move {
                api.fetch_metadata(request(pb::FetchMetadataRequest::default(), t))
                    .await
            })
            .await?;
        self.install_metadata(Metadata::from_proto(resp));
        Ok(self.metadata.snapshot())
    }

    /// Fetches the metadata of some streams and merges it into the cache.
    pub(crate) async fn fetch_streams(&self, streams: &[String]) -> Result<Arc<Metadata>> {
        let resp = self
            .call_any(Op::Metadata, Retry::Idempotent, |mut api, t| {
                let req = pb::FetchMetadataRequest {
                    streams: streams.to_vec(),
                    groups: Vec::new(),
                };
                async move { api.fetch_metadata(request(req, t)).await }
            })
            .await?;
        let fresh = Metadata::from_proto(resp);
        let _turn = self.metadata.refresh_lock.lock().await;
        let merged = self.metadata.snapshot().merged(fresh, streams);
        self.install_metadata(merged);
        Ok(self.metadata.snapshot())
    }

    /// The number of partitions of `stream`, from the cache (refreshed once when the stream is not in it).
    pub(crate) async fn partition_count(&self, stream: &str) -> Result<usize> {
        if let Some(n) = self.metadata.snapshot().partition_count(stream) {
            return Ok(n);
        }
        self.fetch_streams(&[stream.to_string()])
            .await?
            .partition_count(stream)
            .ok_or_else(|| no_such_stream(stream))
    }

    /// The address to reach partition `stream`/`partition` at: its leader, or with `isr` a random in-sync
    /// replica. Refreshes the cache once when it does not know the partition or its leader.
    pub(crate) async fn partition_addr(
        &self,
        stream: &str,
        partition: i32,
        isr: bool,
    ) -> Result<Arc<str>> {
        if let Some(addr) = self.cached_addr(stream, partition, isr) {
            return Ok(addr);
        }
        let metadata = self.fetch_streams(&[stream.to_string()]).await?;
        let Some(info) = metadata.stream(stream) else {
            return Err(no_such_stream(stream));
        };
        if info.partition(partition).is_none() {
            return Err(Error::new(
                ErrorKind::NoSuchPartition,
                format!(
                    "stream {stream:?} has no partition {partition} (it has {}): use a partition below the count",
                    info.partitions().len()
                ),
            ));
        }
        if let Some(addr) = addr_in(&metadata, stream, partition, isr) {
            return Ok(addr);
        }
        let mut err = Error::new(
            ErrorKind::NotLeader,
            format!(
                "partition {stream}/{partition} has no leader right now (a leader election may be under way); \
                 retry shortly"
            ),
        );
        // Nothing was sent anywhere: a publish may retry this safely (and does, within its deadline).
        err.mark_not_sent();
        Err(err)
    }

    /// [`Inner::partition_addr`] from the cache alone: `None` when the cache does not know the partition or its
    /// leader (the caller then fetches).
    pub(crate) fn cached_addr(&self, stream: &str, partition: i32, isr: bool) -> Option<Arc<str>> {
        addr_in(&self.metadata.snapshot(), stream, partition, isr)
    }
}

/// The leader's address of `stream`/`partition` in `metadata` (with `isr`, a random in-sync replica's when it
/// has any), if `metadata` knows them.
pub(crate) fn addr_in(
    metadata: &Metadata,
    stream: &str,
    partition: i32,
    isr: bool,
) -> Option<Arc<str>> {
    let p = metadata.stream(stream)?.partition(partition)?;
    if isr && !p.isr().is_empty() {
        let pick = &p.isr()[rand::rng().random_range(0..p.isr().len())];
        if let Some(b) = metadata.broker(pick) {
            return Some(b.shared_addr());
        }
    }
    metadata.broker(p.leader()).map(|b| b.shared_addr())
}

fn no_such_stream(stream: &str) -> Error {
    Error::new(
        ErrorKind::NoSuchStream,
        format!(
            "stream {stream:?} does not exist: create it first (create_stream), or check its name"
        ),
    )
}

impl Client {
    /// A builder for a client that connects to the cluster through `seeds` (`host:port`, port 9292 when
    /// omitted). One answering seed is enough; the others are fallbacks.
    pub fn builder<I, S>(seeds: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            seeds: seeds.into_iter().map(Into::into).collect(),
            opts: ClientOptions::default(),
            tls: None,
            partitioning: Partitioning::default(),
        }
    }

    /// Connects with default options: `Client::builder(seeds).connect()`.
    pub async fn connect<I, S>(seeds: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Client::builder(seeds).connect().await
    }

    // ---- admin ------------------------------------------------------------------------------------------

    /// Creates a stream. Fails with [`ErrorKind::StreamExists`] if the name is taken.
    ///
    /// Retried only when the request surely never reached a server (a retry after an ambiguous failure could
    /// report the stream as existing when this very call created it); use
    /// [`create_stream_if_not_exists`](Client::create_stream_if_not_exists) for a fully retried creation.
    pub async fn create_stream(&self, options: StreamOptions) -> Result<()> {
        options.validate()?;
        let req = options.to_request();
        let op = Op::CreateStream { stream: &req.name };
        self.inner
            .call_any(op, Retry::NotSent, |mut api, t| {
                let req = req.clone();
                async move { api.create_stream(request(req, t)).await }
            })
            .await?;
        Ok(())
    }

    /// Creates a stream unless one with this name exists: returns `true` when this call created it. Safe to
    /// retry, so it is retried on any retryable error.
    pub async fn create_stream_if_not_exists(&self, options: StreamOptions) -> Result<bool> {
        options.validate()?;
        let req = options.to_request();
        let op = Op::CreateStream { stream: &req.name };
        let result = self
            .inner
            .call_any(op, Retry::Idempotent, |mut api, t| {
                let req = req.clone();
                async move { api.create_stream(request(req, t)).await }
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::StreamExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a stream and all its data. Fails with [`ErrorKind::NoSuchStream`] if it does not exist.
    pub async fn delete_stream(&self, name: &str) -> Result<()> {
        let op = Op::DeleteStream { stream: name };
        self.inner
            .call_any(op, Retry::NotSent, |mut api, t| {
                let req = pb::DeleteStreamRequest {
                    name: name.to_string(),
                };
                async move { api.delete_stream(request(req, t)).await }
            })
            .await?;
        Ok(())
    }

    /// Pauses `partitions` of a stream (all of them when empty). A paused partition frees its resources and
    /// resumes when published to; with `resume_all`, publishing to one resumes them all.
    pub async fn pause_stream(
        &self,
        name: &str,
        partitions: &[i32],
        resume_all: bool,
    ) -> Result<()> {
        let op = Op::AlterStream {
            stream: name,
            what: "pausing",
        };
        self.inner
            .call_any(op, Retry::Idempotent, |mut api, t| {
                let req = pb::PauseStreamRequest {
                    name: name.to_string(),
                    partitions: partitions.to_vec(),
                    resume_all,
                };
                async move { api.pause_stream(request(req, t)).await }
            })
            .await?;
        Ok(())
    }

    /// Sets (`readonly = true`) or clears the readonly flag of `partitions` of a stream (all when empty).
    /// Publishing to a readonly partition fails with [`ErrorKind::Readonly`]; subscriptions end with
    /// [`ErrorKind::EndOfReadonlyPartition`] once they have read everything.
    pub async fn set_stream_readonly(
        &self,
        name: &str,
        partitions: &[i32],
        readonly: bool,
    ) -> Result<()> {
        let op = Op::AlterStream {
            stream: name,
            what: if readonly {
                "setting readonly"
            } else {
                "clearing readonly on"
            },
        };
        self.inner
            .call_any(op, Retry::Idempotent, |mut api, t| {
                let req = pb::SetStreamReadonlyRequest {
                    name: name.to_string(),
                    partitions: partitions.to_vec(),
                    readonly,
                };
                async move { api.set_stream_readonly(request(req, t)).await }
            })
            .await?;
        Ok(())
    }

    /// Fetches the metadata of the whole cluster (and refreshes the cache with it).
    pub async fn fetch_metadata(&self) -> Result<Metadata> {
        self.inner.check_open()?;
        Ok((*self.inner.refresh_metadata().await?).clone())
    }

    /// Fetches one stream's metadata (and refreshes the cache with it).
    pub async fn fetch_stream_metadata(&self, name: &str) -> Result<StreamInfo> {
        self.inner
            .fetch_streams(&[name.to_string()])
            .await?
            .stream(name)
            .cloned()
            .ok_or_else(|| no_such_stream(name))
    }

    /// Fetches a partition's metadata from its leader, including the high watermark and newest offset.
    pub async fn fetch_partition_metadata(
        &self,
        stream: &str,
        partition: i32,
    ) -> Result<PartitionInfo> {
        let op = Op::PartitionMetadata { stream, partition };
        let resp = self
            .inner
            .call_leader(op, stream, partition, |mut api, t| {
                let req = pb::FetchPartitionMetadataRequest {
                    stream: stream.to_string(),
                    partition,
                };
                async move { api.fetch_partition_metadata(request(req, t)).await }
            })
            .await?;
        resp.metadata.map(PartitionInfo::from_proto).ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                "FetchPartitionMetadata answered without metadata",
            )
        })
    }

    /// The cached metadata (refreshed in the background and on errors); no request is made.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.inner.metadata.snapshot()
    }

    /// The number of partitions of a stream, from the cache (fetched when the stream is not cached).
    pub async fn partition_count(&self, stream: &str) -> Result<usize> {
        self.inner.partition_count(stream).await
    }

    /// The server leading a partition, from the cache (fetched when not cached).
    pub async fn leader_of(&self, stream: &str, partition: i32) -> Result<BrokerInfo> {
        self.inner.partition_addr(stream, partition, false).await?;
        let metadata = self.inner.metadata.snapshot();
        metadata.leader(stream, partition).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::NotLeader,
                format!("partition {stream}/{partition} has no leader right now; retry shortly"),
            )
        })
    }

    /// Waits until the stream exists and every partition has a leader, polling with backoff for up to
    /// `timeout` (fails with [`ErrorKind::Timeout`] then). Useful after another process created the stream.
    pub async fn wait_for_stream(&self, name: &str, timeout: Duration) -> Result<StreamInfo> {
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            match self.inner.fetch_streams(&[name.to_string()]).await {
                Ok(m) => {
                    if let Some(s) = m.stream(name).filter(|s| s.is_ready()) {
                        return Ok(s.clone());
                    }
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(_) => {}
            }
            let pause = self
                .inner
                .opts
                .retry
                .backoff(attempt)
                .max(Duration::from_millis(10));
            attempt = (attempt + 1).min(10);
            if Instant::now() + pause >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "stream {name:?} was not ready (created, every partition led) within {timeout:?}"
                    ),
                ));
            }
            self.inner.sleep_or_closed(pause).await?;
        }
    }

    // ---- publish ----------------------------------------------------------------------------------------

    /// Publishes a message to a stream and waits for its ack (per its [`AckPolicy`](crate::AckPolicy); with
    /// `AckPolicy::None` the returned ack is made locally once the message is handed to the connection, with
    /// offset -1).
    ///
    /// Goes over the long-lived `PublishAsync` stream to the partition leader. A publish that surely never
    /// reached a server (connection refused) is retried with backoff within the request timeout; any other
    /// failure is returned, since the message may have been written.
    pub async fn publish(&self, stream: &str, message: impl Into<Message>) -> Result<Ack> {
        let message = message.into();
        let deadline = Instant::now() + self.inner.opts.request_timeout;
        let mut attempt: u32 = 0;
        loop {
            let result = match crate::publish::send(&self.inner, stream, message.clone()).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.not_sent() => {
                    attempt += 1;
                    let pause = self.inner.opts.retry.backoff(attempt - 1);
                    if attempt >= self.inner.opts.retry.max_attempts
                        || Instant::now() + pause >= deadline
                    {
                        return Err(e);
                    }
                    tracing::debug!(stream, error = %e, attempt, "publish not sent; retrying");
                    self.inner.sleep_or_closed(pause).await?;
                    let _ = self.inner.refresh_metadata().await;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::NoSuchStream | ErrorKind::NoSuchPartition
                    ) =>
                {
                    // The cache may be stale (stream deleted or recreated): the next publish routes afresh.
                    let _ = self.inner.refresh_metadata().await;
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// Sends a message to a stream without waiting for its ack: resolves once the message is handed to the
    /// publish stream, returning an [`AckFuture`] for the ack. This is how to pipeline: many messages in
    /// flight on one stream, acks awaited later (or concurrently).
    ///
    /// Waits while [`max_in_flight`](ClientBuilder::max_in_flight) messages already await their ack
    /// (backpressure). If the publish stream breaks, every pending `AckFuture` fails at once with the
    /// retryable [`ErrorKind::Disconnected`]; one whose ack does not come within the ack timeout fails with
    /// [`ErrorKind::AckTimeout`]. Dropping an `AckFuture` just discards the ack.
    pub async fn send(&self, stream: &str, message: impl Into<Message>) -> Result<AckFuture> {
        crate::publish::send(&self.inner, stream, message.into()).await
    }

    /// Publishes a message to a NATS subject (through the server): every stream recording the subject stores
    /// it. Returns the first ack, or `None` with `AckPolicy::None`. Headers, key, correlation id and ack inbox
    /// are sent; the message's partition settings do not apply.
    pub async fn publish_to_subject(
        &self,
        subject: &str,
        message: impl Into<Message>,
    ) -> Result<Option<Ack>> {
        let message = message.into();
        let no_ack = message.ack_policy == crate::AckPolicy::None;
        let timeout = if no_ack {
            self.inner.opts.request_timeout
        } else {
            self.inner.opts.ack_timeout
        };
        let req = pb::PublishToSubjectRequest {
            key: message.key,
            value: message.value,
            subject: subject.to_string(),
            headers: message.headers,
            ack_inbox: message.ack_inbox,
            correlation_id: message.correlation_id,
            ack_policy: message.ack_policy.to_proto() as i32,
        };
        let op = Op::PublishToSubject { subject };
        let resp = self
            .inner
            .call_any(op, Retry::NotSent, |mut api, t| {
                let req = req.clone();
                async move { api.publish_to_subject(request(req, t.min(timeout))).await }
            })
            .await?;
        match resp.ack {
            None => Ok(None),
            Some(ack) => {
                match pb::ack::Error::try_from(ack.ack_error).unwrap_or(pb::ack::Error::Unknown) {
                    pb::ack::Error::Ok => Ok(Some(Ack::from_proto(ack, None))),
                    err => Err(crate::error::from_ack_error(err, &ack.stream)),
                }
            }
        }
    }

    // ---- subscribe --------------------------------------------------------------------------------------

    /// Subscribes to one partition of a stream (`options.partition`, default 0). Errors known up front (no
    /// such stream or partition, paused, invalid options) are returned here; the rest arrive on the stream.
    ///
    /// The subscription resubscribes by itself from the last offset + 1 when its stream breaks or the leader
    /// moves (for up to the resubscribe window). A stop position ends it with `None`.
    pub async fn subscribe(&self, stream: &str, options: SubscribeOptions) -> Result<Subscription> {
        crate::subscribe::subscribe(&self.inner, stream, options.with_fixed_start()).await
    }

    /// Subscribes to every partition of a stream, merged into one [`Subscription`] (order is kept within each
    /// partition; [`ReceivedMessage::partition`](crate::ReceivedMessage::partition) says which). It ends when
    /// every partition's subscription has ended.
    pub async fn subscribe_all(
        &self,
        stream: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        crate::subscribe::subscribe_all(&self.inner, stream, options.with_fixed_start()).await
    }

    // ---- lifecycle --------------------------------------------------------------------------------------

    /// The client's connection and cluster events (see [`Event`]). Each call returns a new receiver that sees
    /// events from now on.
    pub fn events(&self) -> Events {
        Events::new(self.inner.events.subscribe())
    }

    /// Closes the client (all clones): new operations fail with [`ErrorKind::Closed`], in-flight publishes get
    /// up to the drain grace period to be acked (then fail with `Closed`), subscriptions end with a `Closed`
    /// error and background work stops. Idempotent.
    pub async fn close(&self) {
        if self.inner.closed.is_cancelled() {
            return;
        }
        self.inner.closed.cancel();
        self.inner
            .publishers
            .drain(self.inner.opts.drain_grace)
            .await;
        let _ = self.inner.events.send(Event::Closed);
    }

    /// Whether [`close`](Client::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }
}
