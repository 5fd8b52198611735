//! The gRPC API (`proto.API`), with Liftbridge's semantics and status codes.
//!
//! # Layout
//! - [`ApiService`]: implements the generated `Api` trait by delegating to one module per concern.
//! - [`admin`]: CreateStream, DeleteStream, PauseStream, SetStreamReadonly.
//! - [`publish`]: Publish, PublishAsync, PublishToSubject.
//! - [`subscribe`]: Subscribe (start and stop positions, reverse, resume).
//! - [`describe`]: FetchMetadata, FetchPartitionMetadata.
//! - [`acks`]: routes acks from NATS back to the waiting RPC.
//! - [`status`]: the one place errors become gRPC statuses.

pub mod acks;
pub mod admin;
pub mod delivery;
pub mod describe;
pub mod publish;
pub mod status;
pub mod subscribe;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use liftbridge_proto::pb;
use liftbridge_proto::pb::api_server::Api;
use tonic::{Request, Response, Status, Streaming};

use crate::bus::Bus;
use crate::config::Config;
use crate::metadata::Metadata;
use crate::partition::PartitionManager;

pub use self::acks::AckRouter;

/// How long `CreateStream` and a resuming publish wait for partitions to start (Liftbridge: 5 s, best effort).
pub const PARTITION_START_WAIT: Duration = Duration::from_secs(5);
/// How long a `Publish` without a gRPC deadline waits for its ack (Liftbridge does not wait at all: #347).
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(5);
/// How long a half-closed `PublishAsync` stream waits for its in-flight acks (Liftbridge: 5 s).
pub const PUBLISH_ASYNC_DRAIN: Duration = Duration::from_secs(5);

/// Everything the RPC handlers share.
#[derive(Debug)]
pub struct ApiContext {
    /// Server configuration.
    pub config: Arc<Config>,
    /// Cluster metadata.
    pub metadata: Metadata,
    /// Running partitions.
    pub partitions: PartitionManager,
    /// NATS.
    pub bus: Arc<dyn Bus>,
    /// Where publishes go out (and reach this server's own leaders in-process).
    pub intake: Arc<crate::partition::intake::Intake>,
    /// Ack inboxes.
    pub acks: Arc<AckRouter>,
    /// Live servers and their addresses.
    pub presence: crate::presence::Presence,
    /// The port clients should use (the listener's real port, which differs from the config when it is 0).
    pub advertised_port: u16,
    /// Turns true when the server begins shutting down; long-lived streams end on it.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for dyn Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bus")
    }
}

/// The `proto.API` service.
#[derive(Debug, Clone)]
pub struct ApiService {
    ctx: Arc<ApiContext>,
}

impl ApiService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<ApiContext>) -> ApiService {
        ApiService { ctx }
    }
}

/// The stream type of server-streaming responses.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Api for ApiService {
    async fn create_stream(
        &self,
        request: Request<pb::CreateStreamRequest>,
    ) -> Result<Response<pb::CreateStreamResponse>, Status> {
        admin::create_stream(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_stream(
        &self,
        request: Request<pb::DeleteStreamRequest>,
    ) -> Result<Response<pb::DeleteStreamResponse>, Status> {
        admin::delete_stream(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn pause_stream(
        &self,
        request: Request<pb::PauseStreamRequest>,
    ) -> Result<Response<pb::PauseStreamResponse>, Status> {
        admin::pause_stream(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_stream_readonly(
        &self,
        request: Request<pb::SetStreamReadonlyRequest>,
    ) -> Result<Response<pb::SetStreamReadonlyResponse>, Status> {
        admin::set_stream_readonly(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    type SubscribeStream = ResponseStream<pb::Message>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        // Served through `delivery::ApiRoutes` (encoded without building messages); this is the same stream as
        // `pb::Message`s, for whoever serves the generated service alone.
        let deliveries = subscribe::subscribe(&self.ctx, request.into_inner()).await?;
        let messages = deliveries.map(|item| item.map(delivery::Delivery::into_message));
        Ok(Response::new(Box::pin(messages) as Self::SubscribeStream))
    }

    async fn fetch_metadata(
        &self,
        request: Request<pb::FetchMetadataRequest>,
    ) -> Result<Response<pb::FetchMetadataResponse>, Status> {
        describe::fetch_metadata(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn fetch_partition_metadata(
        &self,
        request: Request<pb::FetchPartitionMetadataRequest>,
    ) -> Result<Response<pb::FetchPartitionMetadataResponse>, Status> {
        describe::fetch_partition_metadata(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let wait = grpc_timeout(request.metadata()).unwrap_or(DEFAULT_ACK_WAIT);
        publish::publish(&self.ctx, request.into_inner(), wait)
            .await
            .map(Response::new)
    }

    type PublishAsyncStream = ResponseStream<pb::PublishResponse>;

    async fn publish_async(
        &self,
        request: Request<Streaming<pb::PublishRequest>>,
    ) -> Result<Response<Self::PublishAsyncStream>, Status> {
        Ok(Response::new(publish::publish_async(
            self.ctx.clone(),
            request.into_inner(),
        )))
    }

    async fn publish_to_subject(
        &self,
        request: Request<pb::PublishToSubjectRequest>,
    ) -> Result<Response<pb::PublishToSubjectResponse>, Status> {
        let wait = grpc_timeout(request.metadata()).unwrap_or(DEFAULT_ACK_WAIT);
        publish::publish_to_subject(&self.ctx, request.into_inner(), wait)
            .await
            .map(Response::new)
    }

    async fn set_cursor(
        &self,
        _request: Request<pb::SetCursorRequest>,
    ) -> Result<Response<pb::SetCursorResponse>, Status> {
        Err(status::not_implemented("Cursors (SetCursor)"))
    }

    async fn fetch_cursor(
        &self,
        _request: Request<pb::FetchCursorRequest>,
    ) -> Result<Response<pb::FetchCursorResponse>, Status> {
        Err(status::not_implemented("Cursors (FetchCursor)"))
    }

    async fn join_consumer_group(
        &self,
        _request: Request<pb::JoinConsumerGroupRequest>,
    ) -> Result<Response<pb::JoinConsumerGroupResponse>, Status> {
        Err(status::not_implemented(
            "Consumer groups (JoinConsumerGroup)",
        ))
    }

    async fn leave_consumer_group(
        &self,
        _request: Request<pb::LeaveConsumerGroupRequest>,
    ) -> Result<Response<pb::LeaveConsumerGroupResponse>, Status> {
        Err(status::not_implemented(
            "Consumer groups (LeaveConsumerGroup)",
        ))
    }

    async fn fetch_consumer_group_assignments(
        &self,
        _request: Request<pb::FetchConsumerGroupAssignmentsRequest>,
    ) -> Result<Response<pb::FetchConsumerGroupAssignmentsResponse>, Status> {
        Err(status::not_implemented(
            "Consumer groups (FetchConsumerGroupAssignments)",
        ))
    }

    async fn report_consumer_group_coordinator(
        &self,
        _request: Request<pb::ReportConsumerGroupCoordinatorRequest>,
    ) -> Result<Response<pb::ReportConsumerGroupCoordinatorResponse>, Status> {
        Err(status::not_implemented(
            "Consumer groups (ReportConsumerGroupCoordinator)",
        ))
    }
}

/// Reads the caller's deadline from the `grpc-timeout` header (`<digits><unit>`, unit one of `H M S m u n`).
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeout() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(grpc_timeout(&md), None);
        md.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(grpc_timeout(&md), Some(Duration::from_millis(250)));
        md.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(grpc_timeout(&md), Some(Duration::from_secs(3)));
        md.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(grpc_timeout(&md), None);
    }
}
