//! Stream administration: CreateStream, DeleteStream, PauseStream, SetStreamReadonly.

use liftbridge_proto::pb;
use tonic::Status;

use super::{ApiContext, PARTITION_START_WAIT, status};
use crate::bus::validate_subject;
use crate::metadata::{Op, StreamSettings, validate_stream_name};

/// Validates a `CreateStream` request and turns it into an op. Liftbridge's rules, plus ours for names.
pub fn create_op(ctx: &ApiContext, req: pb::CreateStreamRequest) -> Result<Op, Status> {
    validate_stream_name(&req.name).map_err(status::from_metadata)?;
    validate_subject(&req.subject).map_err(|e| {
        Status::invalid_argument(format!("invalid subject for stream {:?}: {e}", req.name))
    })?;
    if req.partitions < 0 {
        return Err(Status::invalid_argument(format!(
            "partitions must be 0 (= 1) or more, got {}",
            req.partitions
        )));
    }
    let partitions = req.partitions.max(1);
    if partitions > 1 && req.subject.rsplit('.').next() == Some(">") {
        return Err(Status::invalid_argument(format!(
            "a stream on {:?} cannot have {partitions} partitions: partition i listens on \"<subject>.i\", and \
             nothing may follow '>' in a NATS subject",
            req.subject
        )));
    }
    let servers = placement_servers(ctx);
    let cluster = i32::try_from(servers.len()).unwrap_or(i32::MAX);
    let replication_factor = match req.replication_factor {
        0 => 1,
        -1 => cluster,
        n if n < -1 => {
            return Err(Status::invalid_argument(format!(
                "replicationFactor must be -1 (all servers), 0 (= 1) or more, got {n}"
            )));
        }
        n if n > cluster => {
            return Err(Status::invalid_argument(format!(
                "replicationFactor {n} is larger than the cluster ({cluster} server{})",
                if cluster == 1 { "" } else { "s" }
            )));
        }
        n => n,
    };
    let group = (!req.group.is_empty()).then_some(req.group);
    if let Some(group) = &group
        && group.chars().any(char::is_whitespace)
    {
        return Err(Status::invalid_argument(format!(
            "invalid group {group:?}: contains whitespace"
        )));
    }
    let settings = StreamSettings {
        retention_max_bytes: req.retention_max_bytes.map(|v| v.value),
        retention_max_messages: req.retention_max_messages.map(|v| v.value),
        retention_max_age_ms: req.retention_max_age.map(|v| v.value),
        cleaner_interval_ms: req.cleaner_interval.map(|v| v.value),
        segment_max_bytes: req.segment_max_bytes.map(|v| v.value),
        segment_max_age_ms: req.segment_max_age.map(|v| v.value),
        compact_max_goroutines: req.compact_max_goroutines.map(|v| v.value),
        compact_enabled: req.compact_enabled.map(|v| v.value),
        auto_pause_time_ms: req.auto_pause_time.map(|v| v.value),
        auto_pause_disable_if_subscribers: req.auto_pause_disable_if_subscribers.map(|v| v.value),
        min_isr: req.min_isr.map(|v| v.value),
        optimistic_concurrency_control: req.optimistic_concurrency_control.map(|v| v.value),
        encryption: req.encryption.map(|v| v.value),
    };
    let negative = [
        ("retentionMaxBytes", settings.retention_max_bytes),
        ("retentionMaxMessages", settings.retention_max_messages),
        ("retentionMaxAge", settings.retention_max_age_ms),
        ("cleanerInterval", settings.cleaner_interval_ms),
        ("segmentMaxBytes", settings.segment_max_bytes),
        ("segmentMaxAge", settings.segment_max_age_ms),
        ("autoPauseTime", settings.auto_pause_time_ms),
    ]
    .into_iter()
    .find(|(_, v)| v.is_some_and(|v| v < 0));
    if let Some((field, Some(v))) = negative {
        return Err(Status::invalid_argument(format!(
            "{field} must not be negative, got {v}"
        )));
    }
    if let Some(min_isr) = settings.min_isr
        && (min_isr < 1 || min_isr > replication_factor)
    {
        return Err(Status::invalid_argument(format!(
            "minIsr must be between 1 and the replication factor ({replication_factor}), got {min_isr}"
        )));
    }
    if settings.encryption == Some(true)
        || (settings.encryption.is_none() && ctx.config.streams.encryption)
    {
        return Err(status::not_implemented("Encryption at rest"));
    }
    let count = usize::try_from(replication_factor).unwrap_or(1);
    let replicas =
        crate::metadata::placement::place(&ctx.metadata.snapshot(), &servers, partitions, count);
    Ok(Op::CreateStream {
        name: req.name,
        subject: req.subject,
        group,
        partitions,
        replicas,
        settings,
    })
}

/// The servers new replicas may go to: the cluster's members that are alive (this server alone when it is not
/// clustered).
fn placement_servers(ctx: &ApiContext) -> Vec<String> {
    let members = ctx.metadata.servers();
    let live: Vec<String> = ctx.presence.live().into_iter().map(|b| b.id).collect();
    members.into_iter().filter(|m| live.contains(m)).collect()
}

/// `CreateStream`: applies the op, then waits (best effort, like Liftbridge) until every partition runs so an
/// immediate publish is recorded.
pub async fn create_stream(
    ctx: &ApiContext,
    req: pb::CreateStreamRequest,
) -> Result<pb::CreateStreamResponse, Status> {
    let name = req.name.clone();
    let op = create_op(ctx, req)?;
    let ids: Vec<i32> = match &op {
        Op::CreateStream { partitions, .. } => (0..*partitions).collect(),
        _ => Vec::new(),
    };
    ctx.metadata
        .propose(op)
        .await
        .map_err(status::from_metadata)?;
    if !ctx
        .partitions
        .wait_running(&name, &ids, PARTITION_START_WAIT)
        .await
    {
        tracing::warn!(
            stream = name,
            "created, but not every partition started within {PARTITION_START_WAIT:?}"
        );
    }
    Ok(pb::CreateStreamResponse {})
}

fn check_name(name: &str) -> Result<(), Status> {
    if name.trim().is_empty() {
        return Err(Status::invalid_argument("no stream name provided"));
    }
    if name.starts_with("__") {
        return Err(Status::invalid_argument(format!(
            "stream {name:?} is reserved"
        )));
    }
    Ok(())
}

/// Applies an admin op on a named stream and waits (best effort) for it to take effect here.
async fn apply(ctx: &ApiContext, name: &str, op: Op) -> Result<(), Status> {
    check_name(name)?;
    let index = ctx
        .metadata
        .propose(op)
        .await
        .map_err(status::from_metadata)?;
    settle(ctx, index).await;
    Ok(())
}

/// `DeleteStream`.
pub async fn delete_stream(
    ctx: &ApiContext,
    req: pb::DeleteStreamRequest,
) -> Result<pb::DeleteStreamResponse, Status> {
    apply(
        ctx,
        &req.name,
        Op::DeleteStream {
            name: req.name.clone(),
        },
    )
    .await?;
    Ok(pb::DeleteStreamResponse {})
}

/// `PauseStream`: empty `partitions` pauses all.
pub async fn pause_stream(
    ctx: &ApiContext,
    req: pb::PauseStreamRequest,
) -> Result<pb::PauseStreamResponse, Status> {
    let op = Op::PauseStream {
        name: req.name.clone(),
        partitions: req.partitions,
        resume_all: req.resume_all,
    };
    apply(ctx, &req.name, op).await?;
    Ok(pb::PauseStreamResponse {})
}

/// `SetStreamReadonly`: empty `partitions` means all.
pub async fn set_stream_readonly(
    ctx: &ApiContext,
    req: pb::SetStreamReadonlyRequest,
) -> Result<pb::SetStreamReadonlyResponse, Status> {
    let op = Op::SetReadonly {
        name: req.name.clone(),
        partitions: req.partitions,
        readonly: req.readonly,
    };
    apply(ctx, &req.name, op).await?;
    Ok(pb::SetStreamReadonlyResponse {})
}

/// Waits (best effort) until this server's partitions reflect metadata index `index`, so that what a client does
/// right after an admin RPC sees its effect (a paused partition refuses subscriptions, a deleted stream's data is
/// gone).
async fn settle(ctx: &ApiContext, index: u64) {
    if !ctx
        .partitions
        .wait_reconciled(index, PARTITION_START_WAIT)
        .await
    {
        tracing::warn!(
            index,
            "metadata change not applied to local partitions within {PARTITION_START_WAIT:?}"
        );
    }
}

/// Resumes a paused partition (all partitions when the stream was paused with `resumeAll`) and waits until it
/// runs. Used by publishes and by `Subscribe{resume: true}`.
pub async fn resume_partition(
    ctx: &ApiContext,
    stream: &str,
    partition: i32,
) -> Result<(), Status> {
    let state = ctx
        .metadata
        .stream(stream)
        .ok_or_else(|| status::no_such_stream(stream))?;
    let partitions = if state.resume_all {
        Vec::new()
    } else {
        vec![partition]
    };
    ctx.metadata
        .propose(Op::ResumeStream {
            name: stream.to_string(),
            partitions,
        })
        .await
        .map_err(status::from_metadata)?;
    if ctx
        .partitions
        .wait_running(stream, &[partition], PARTITION_START_WAIT)
        .await
    {
        Ok(())
    } else {
        Err(Status::unavailable(format!(
            "partition {stream}/{partition} did not resume in time"
        )))
    }
}
