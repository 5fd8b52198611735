//! The gRPC floor: what publishing costs when the server does no work at all.
//!
//! [`FloorServer`] speaks Liftbridge's API but stores nothing and touches no NATS: it claims to lead every
//! partition of every stream it is asked about, and acknowledges each published message the moment it reads
//! it, from the task that writes the responses. Driving it with the real client (`liftbridge-bench producer
//! --addr <floor>`) measures the client plus gRPC over HTTP/2 with a server that costs nothing; driving it with
//! [`run_raw`] (`liftbridge-bench floor-client`) measures the generated tonic client with no bookkeeping of ours
//! (default channel settings; in the measured runs it was no faster than our client synchronously, and about
//! twice as fast pipelined). Neither is Liftbridge; both bound what Liftbridge can reach on the same machine.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use liftbridge_proto::pb::api_server::{Api, ApiServer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::latency::Latencies;
use crate::{BenchError, Result};

/// The broker id the floor server reports for itself.
const FLOOR_ID: &str = "floor";

/// Partitions reported for every stream.
const FLOOR_PARTITIONS: i32 = 64;

/// A Liftbridge API that answers publishes at once and stores nothing; see the module docs.
#[derive(Debug, Clone)]
pub struct FloorServer {
    host: Arc<str>,
    port: i32,
    next_offset: Arc<AtomicI64>,
}

impl FloorServer {
    fn ack(&self, req: &pb::PublishRequest) -> pb::PublishResponse {
        pb::PublishResponse {
            ack: Some(pb::Ack {
                stream: req.stream.clone(),
                offset: self.next_offset.fetch_add(1, Ordering::Relaxed),
                correlation_id: req.correlation_id.clone(),
                ack_policy: req.ack_policy,
                ..Default::default()
            }),
            async_error: None,
            correlation_id: req.correlation_id.clone(),
        }
    }

    /// Partition `id` of any stream, led by the floor.
    fn partition(id: i32) -> pb::PartitionMetadata {
        pb::PartitionMetadata {
            id,
            leader: FLOOR_ID.into(),
            replicas: vec![FLOOR_ID.into()],
            isr: vec![FLOOR_ID.into()],
            ..Default::default()
        }
    }

    fn stream(&self, name: &str) -> pb::StreamMetadata {
        pb::StreamMetadata {
            name: name.into(),
            subject: name.into(),
            partitions: (0..FLOOR_PARTITIONS)
                .map(|id| (id, Self::partition(id)))
                .collect(),
            ..Default::default()
        }
    }
}

/// Every method the floor server does not serve.
fn not_served(method: &str) -> Status {
    Status::unimplemented(format!(
        "{method}: the floor server only answers metadata, stream creation and publishes"
    ))
}

type Boxed<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Api for FloorServer {
    async fn create_stream(
        &self,
        _: Request<pb::CreateStreamRequest>,
    ) -> std::result::Result<Response<pb::CreateStreamResponse>, Status> {
        Ok(Response::new(pb::CreateStreamResponse {}))
    }

    async fn delete_stream(
        &self,
        _: Request<pb::DeleteStreamRequest>,
    ) -> std::result::Result<Response<pb::DeleteStreamResponse>, Status> {
        Ok(Response::new(pb::DeleteStreamResponse {}))
    }

    async fn pause_stream(
        &self,
        _: Request<pb::PauseStreamRequest>,
    ) -> std::result::Result<Response<pb::PauseStreamResponse>, Status> {
        Err(not_served("PauseStream"))
    }

    async fn set_stream_readonly(
        &self,
        _: Request<pb::SetStreamReadonlyRequest>,
    ) -> std::result::Result<Response<pb::SetStreamReadonlyResponse>, Status> {
        Err(not_served("SetStreamReadonly"))
    }

    type SubscribeStream = Boxed<pb::Message>;

    async fn subscribe(
        &self,
        _: Request<pb::SubscribeRequest>,
    ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
        Err(not_served("Subscribe"))
    }

    /// The floor itself as the only broker, and the streams asked for (each as led by it). Unlike a real server,
    /// a request naming no stream gets none back: the floor has no list of streams.
    async fn fetch_metadata(
        &self,
        request: Request<pb::FetchMetadataRequest>,
    ) -> std::result::Result<Response<pb::FetchMetadataResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::FetchMetadataResponse {
            brokers: vec![pb::Broker {
                id: FLOOR_ID.into(),
                host: self.host.to_string(),
                port: self.port,
                partition_count: FLOOR_PARTITIONS,
                leader_count: FLOOR_PARTITIONS,
            }],
            stream_metadata: req.streams.iter().map(|s| self.stream(s)).collect(),
            group_metadata: Vec::new(),
        }))
    }

    async fn fetch_partition_metadata(
        &self,
        request: Request<pb::FetchPartitionMetadataRequest>,
    ) -> std::result::Result<Response<pb::FetchPartitionMetadataResponse>, Status> {
        let partition = request.into_inner().partition;
        let metadata = (0..FLOOR_PARTITIONS)
            .contains(&partition)
            .then(|| Self::partition(partition));
        Ok(Response::new(pb::FetchPartitionMetadataResponse {
            metadata,
        }))
    }

    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> std::result::Result<Response<pb::PublishResponse>, Status> {
        Ok(Response::new(self.ack(request.get_ref())))
    }

    type PublishAsyncStream = Boxed<pb::PublishResponse>;

    async fn publish_async(
        &self,
        request: Request<Streaming<pb::PublishRequest>>,
    ) -> std::result::Result<Response<Self::PublishAsyncStream>, Status> {
        let server = self.clone();
        // Requests are read by the response stream itself: no task of ours between reading and answering.
        let responses = request.into_inner().filter_map(move |req| {
            let resp = match req {
                Ok(req) if req.ack_policy == pb::AckPolicy::None as i32 => None,
                Ok(req) => Some(Ok(server.ack(&req))),
                Err(status) => Some(Err(status)),
            };
            std::future::ready(resp)
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn publish_to_subject(
        &self,
        _: Request<pb::PublishToSubjectRequest>,
    ) -> std::result::Result<Response<pb::PublishToSubjectResponse>, Status> {
        Err(not_served("PublishToSubject"))
    }

    async fn set_cursor(
        &self,
        _: Request<pb::SetCursorRequest>,
    ) -> std::result::Result<Response<pb::SetCursorResponse>, Status> {
        Err(not_served("SetCursor"))
    }

    async fn fetch_cursor(
        &self,
        _: Request<pb::FetchCursorRequest>,
    ) -> std::result::Result<Response<pb::FetchCursorResponse>, Status> {
        Err(not_served("FetchCursor"))
    }

    async fn join_consumer_group(
        &self,
        _: Request<pb::JoinConsumerGroupRequest>,
    ) -> std::result::Result<Response<pb::JoinConsumerGroupResponse>, Status> {
        Err(not_served("JoinConsumerGroup"))
    }

    async fn leave_consumer_group(
        &self,
        _: Request<pb::LeaveConsumerGroupRequest>,
    ) -> std::result::Result<Response<pb::LeaveConsumerGroupResponse>, Status> {
        Err(not_served("LeaveConsumerGroup"))
    }

    async fn fetch_consumer_group_assignments(
        &self,
        _: Request<pb::FetchConsumerGroupAssignmentsRequest>,
    ) -> std::result::Result<Response<pb::FetchConsumerGroupAssignmentsResponse>, Status> {
        Err(not_served("FetchConsumerGroupAssignments"))
    }

    async fn report_consumer_group_coordinator(
        &self,
        _: Request<pb::ReportConsumerGroupCoordinatorRequest>,
    ) -> std::result::Result<Response<pb::ReportConsumerGroupCoordinatorResponse>, Status> {
        Err(not_served("ReportConsumerGroupCoordinator"))
    }
}

/// Binds `listen` (port 0 picks a free one) and returns the bound address with the future that serves until
/// `shutdown` resolves.
pub async fn serve(
    listen: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(
    std::net::SocketAddr,
    impl std::future::Future<Output = Result<()>>,
)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let server = FloorServer {
        host: addr.ip().to_string().into(),
        port: i32::from(addr.port()),
        next_offset: Arc::new(AtomicI64::new(0)),
    };
    // Like the Liftbridge server: no Nagle on accepted connections.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = async move {
        tonic::transport::Server::builder()
            .add_service(ApiServer::new(server))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| BenchError::Grpc(format!("floor server: {e}")))
    };
    Ok((addr, served))
}

/// Aborts the task when dropped (the sender of a pipelined run, however the run ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checks that `resp` acks message `index` (the floor server answers in order).
fn check_ack(resp: &pb::PublishResponse, index: u64) -> Result<()> {
    match &resp.ack {
        Some(ack) if ack.correlation_id == index.to_string() => Ok(()),
        _ => Err(BenchError::Grpc(format!(
            "expected the ack of message {index}, got {resp:?}"
        ))),
    }
}

/// The next response of the stream; its end or failure is an error.
async fn next_response(
    responses: &mut Streaming<pb::PublishResponse>,
) -> Result<pb::PublishResponse> {
    responses
        .message()
        .await
        .map_err(|s| BenchError::Grpc(format!("PublishAsync: {s}")))?
        .ok_or_else(|| BenchError::Grpc("PublishAsync ended early".into()))
}

/// What [`run_raw`] measured.
#[derive(Debug)]
pub struct RawResult {
    /// Messages acknowledged.
    pub messages: u64,
    /// Wall time from the first send to the last ack.
    pub elapsed: Duration,
    /// Publish-to-ack latency.
    pub latency: Latencies,
}

/// Publishes `messages` messages of `size` bytes on one `PublishAsync` stream with the generated tonic client,
/// at most `window` unacknowledged, matching acks in order (the floor server answers in order). The least work a
/// Rust gRPC client can do per message: one request encoded, one response decoded. With `window` 1 one task
/// sends and reads; otherwise a sender task keeps the window full while this one reads.
pub async fn run_raw(addr: &str, messages: u64, size: usize, window: usize) -> Result<RawResult> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| BenchError::Invalid(format!("floor server address {addr:?}: {e}")))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| BenchError::Grpc(format!("connecting to {addr}: {e}")))?;
    let mut client = ApiClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::PublishRequest>(window.max(1));
    let mut responses = client
        .publish_async(ReceiverStream::new(rx))
        .await
        .map_err(|s| BenchError::Grpc(format!("PublishAsync: {s}")))?
        .into_inner();
    let value = Bytes::from(vec![0u8; size]);
    let request = move |i: u64| pb::PublishRequest {
        stream: "floor".into(),
        value: value.clone(),
        correlation_id: i.to_string(),
        ack_policy: pb::AckPolicy::Leader as i32,
        ..Default::default()
    };
    let mut latency = Latencies::new();
    if window <= 1 {
        // Synchronous: send, read the response in this same task, repeat (no task of ours in between).
        let started = Instant::now();
        for i in 0..messages {
            let sent = Instant::now();
            tx.send(request(i))
                .await
                .map_err(|_| BenchError::Grpc("PublishAsync request stream closed".into()))?;
            let resp = next_response(&mut responses).await?;
            latency.record(sent.elapsed());
            check_ack(&resp, i)?;
        }
        return Ok(RawResult {
            messages,
            elapsed: started.elapsed(),
            latency,
        });
    }
    let window = Arc::new(Semaphore::new(window));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let started = Instant::now();
    let _sender = AbortOnDrop({
        let window = window.clone();
        tokio::spawn(async move {
            for i in 0..messages {
                let Ok(permit) = window.acquire().await else {
                    return;
                };
                permit.forget();
                let _ = sent_tx.send(Instant::now());
                if tx.send(request(i)).await.is_err() {
                    return;
                }
            }
        })
    });
    let mut acked = 0;
    while acked < messages {
        let resp = next_response(&mut responses).await?;
        let sent = sent_rx
            .recv()
            .await
            .ok_or_else(|| BenchError::Grpc("sender stopped".into()))?;
        latency.record(sent.elapsed());
        check_ack(&resp, acked)?;
        acked += 1;
        window.add_permits(1);
    }
    let elapsed = started.elapsed();
    Ok(RawResult {
        messages: acked,
        elapsed,
        latency,
    })
}
