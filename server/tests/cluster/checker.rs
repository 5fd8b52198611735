//! The invariant checker for replication tests: every acknowledged message is readable exactly once, at the
//! offset its ack named, in publish order, on every replica checked.

use std::collections::HashMap;
use std::time::Duration;

use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// What a publisher saw: value → acked offset.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Acknowledged messages: value and the offset in their ack.
    pub acked: Vec<(String, i64)>,
    /// Publishes that failed or timed out (indeterminate: may or may not be in the log).
    pub indeterminate: usize,
}

/// Reads `stream/partition` from offset 0 to `end` (exclusive) through `client` (`isr`: read from an ISR
/// replica rather than the leader).
pub async fn read_all(
    client: &mut ApiClient<Channel>,
    stream: &str,
    partition: i32,
    end: i64,
    isr: bool,
) -> Result<Vec<(i64, String)>, tonic::Status> {
    if end <= 0 {
        return Ok(Vec::new());
    }
    let mut sub = client
        .subscribe(pb::SubscribeRequest {
            stream: stream.into(),
            partition,
            start_position: pb::StartPosition::Earliest as i32,
            stop_position: pb::StopPosition::StopOffset as i32,
            stop_offset: end - 1,
            read_isr_replica: isr,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Ok(Some(Ok(m))) => {
                if m.offset == 0 && m.value.is_empty() && m.stream.is_empty() {
                    continue; // handshake
                }
                out.push((m.offset, String::from_utf8_lossy(&m.value).into_owned()));
                if m.offset >= end - 1 {
                    return Ok(out);
                }
            }
            Ok(Some(Err(s))) if s.code() == tonic::Code::ResourceExhausted => return Ok(out),
            Ok(Some(Err(s))) => return Err(s),
            Ok(None) => return Ok(out),
            Err(_) => return Err(tonic::Status::deadline_exceeded("read stalled")),
        }
    }
}

/// Checks `log` (offset, value), read from one replica, against `history`. Returns a description of every
/// violation (empty = fine).
pub fn check(history: &History, log: &[(i64, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_value: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut previous = -1;
    for (offset, value) in log {
        if *offset != previous + 1 {
            problems.push(format!(
                "offset {offset} follows {previous}: gap or disorder"
            ));
        }
        previous = *offset;
        by_value.entry(value.as_str()).or_default().push(*offset);
    }
    for (value, offset) in &history.acked {
        match by_value.get(value.as_str()).map(Vec::as_slice) {
            None => problems.push(format!("acked {value} (offset {offset}) is lost")),
            Some([found]) if found == offset => {}
            Some([found]) => problems.push(format!("acked {value} at {offset} is read at {found}")),
            Some(many) => {
                problems.push(format!("{value} is stored {} times: {many:?}", many.len()))
            }
        }
    }
    // Acked messages keep their publish order (publishes are sequential per publisher).
    let mut last = -1;
    for (value, offset) in &history.acked {
        if *offset <= last {
            problems.push(format!(
                "acked {value} at {offset} is not after the previous ack ({last})"
            ));
        }
        last = *offset;
    }
    problems
}
