//! Where a partition's acks go.
//!
//! An ack is an `Ack` envelope published to the message's ack inbox. Most publishes reach a partition through a
//! gRPC call on this very server, whose ack inbox belongs to this server's ack router
//! ([`crate::api::AckRouter`]): those acks are handed to the router in-process instead of crossing NATS twice
//! (out to the broker and back), which on an external NATS server is a broker round trip per ack. Every other
//! inbox (another server's router, a NATS client's own inbox, a caller-named gRPC ack inbox) gets the ack over
//! NATS, in one burst per call.

use std::sync::Arc;

use liftbridge_proto::{envelope, pb};

use crate::bus::Bus;

/// Inboxes this server delivers to in-process.
pub trait LocalInboxes: Send + Sync {
    /// Delivers `ack` if its inbox is one of ours; otherwise hands it back.
    fn deliver_local(&self, ack: pb::Ack) -> Option<pb::Ack>;
}

/// Sends acks: in-process to this server's own inboxes, over NATS to the rest. Cheap to clone.
#[derive(Clone)]
pub struct AckOutbox {
    bus: Arc<dyn Bus>,
    local: Option<Arc<dyn LocalInboxes>>,
}

impl std::fmt::Debug for AckOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckOutbox")
            .field("local", &self.local.is_some())
            .finish()
    }
}

impl AckOutbox {
    /// An outbox publishing on `bus`, delivering to `local` inboxes in-process.
    pub fn new(bus: Arc<dyn Bus>, local: Option<Arc<dyn LocalInboxes>>) -> Self {
        AckOutbox { bus, local }
    }

    /// Sends `acks` (in order per inbox). NATS failures are logged: the publisher times out and retries.
    pub async fn send(&self, acks: Vec<pb::Ack>) {
        if acks.is_empty() {
            return;
        }
        let mut remote = Vec::new();
        for ack in acks {
            let ack = match &self.local {
                Some(local) => match local.deliver_local(ack) {
                    None => continue,
                    Some(ack) => ack,
                },
                None => ack,
            };
            let payload = envelope::encode_ack(&ack, false);
            remote.push((ack.ack_inbox, payload));
        }
        if remote.is_empty() {
            return;
        }
        for result in self.bus.publish_batch(remote).await {
            if let Err(e) = result {
                tracing::debug!(error = %e, "could not publish ack");
            }
        }
    }
}
