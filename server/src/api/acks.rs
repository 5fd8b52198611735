//! Routes acks from NATS back to the RPC waiting for them.
//!
//! A gRPC publish travels through NATS like any other publish, and the partition leader answers on the
//! message's ack inbox. Rather than subscribing once per publish, the API subscribes once to
//! `<namespace>.ack.<nonce>.>` and hands out inboxes under that prefix; a handler decodes each ack and passes it
//! to whoever registered the inbox — a single `Publish` (one ack) or a `PublishAsync` session (many). When the
//! partition leader runs on this same server, it hands acks for these inboxes to the router in-process
//! ([`LocalInboxes`]) instead of publishing them (they are this server's private inboxes: nobody else asked for
//! them); acks from leaders on other servers arrive over NATS as `Ack` envelopes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use liftbridge_proto::{envelope, pb};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use crate::bus::{Bus, BusError, BusHandler, HandlerSubscription};
use crate::partition::outbox::LocalInboxes;

enum Waiter {
    Once(oneshot::Sender<pb::Ack>),
    Session(mpsc::UnboundedSender<pb::Ack>),
}

/// Hands out ack inboxes and delivers acks to them.
pub struct AckRouter {
    prefix: String,
    counter: AtomicU64,
    waiters: Mutex<HashMap<String, Waiter>>,
    /// The inbox subscription, kept for the router's life.
    subscription: OnceLock<HandlerSubscription>,
}

impl std::fmt::Debug for AckRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckRouter")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl AckRouter {
    /// Subscribes to the router's inbox prefix and starts delivering.
    pub async fn start(bus: Arc<dyn Bus>, namespace: &str) -> Result<Arc<AckRouter>, BusError> {
        let nonce: u64 = rand::rng().random();
        let prefix = format!("{namespace}.ack.{nonce:016x}");
        let router = Arc::new(AckRouter {
            prefix: prefix.clone(),
            counter: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
            subscription: OnceLock::new(),
        });
        let weak = Arc::downgrade(&router);
        let handler: BusHandler = Arc::new(move |message| {
            let Some(router) = weak.upgrade() else { return };
            match envelope::decode_ack(&message.payload) {
                Ok(ack) => router.deliver(Some(&message.subject), ack),
                Err(e) => {
                    tracing::debug!(subject = message.subject, error = %e, "ignoring malformed ack")
                }
            }
        });
        let subscription = bus
            .subscribe_handler(format!("{prefix}.>"), handler)
            .await?;
        let _ = router.subscription.set(subscription);
        Ok(router)
    }

    /// A fresh inbox under the router's prefix.
    pub fn new_inbox(&self) -> String {
        format!(
            "{}.{}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Whether `inbox` is one of the router's (and so delivered by it).
    pub fn owns(&self, inbox: &str) -> bool {
        inbox
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Registers an inbox for exactly one ack.
    pub fn expect_one(&self, inbox: &str) -> oneshot::Receiver<pb::Ack> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .insert(inbox.to_string(), Waiter::Once(tx));
        rx
    }

    /// Registers an inbox that receives acks until [`AckRouter::forget`].
    pub fn expect_many(&self, inbox: &str) -> mpsc::UnboundedReceiver<pb::Ack> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiters
            .lock()
            .insert(inbox.to_string(), Waiter::Session(tx));
        rx
    }

    /// Drops an inbox registration (after a timeout, or when a session ends).
    pub fn forget(&self, inbox: &str) {
        self.waiters.lock().remove(inbox);
    }

    /// Hands `ack` to whoever registered `inbox` (by default the ack's own inbox).
    fn deliver(&self, inbox: Option<&str>, ack: pb::Ack) {
        let mut waiters = self.waiters.lock();
        let key = inbox.unwrap_or(&ack.ack_inbox);
        match waiters.get(key) {
            Some(Waiter::Once(_)) => {
                if let Some(Waiter::Once(tx)) = waiters.remove(key) {
                    let _ = tx.send(ack);
                }
            }
            Some(Waiter::Session(tx)) => {
                if let Err(mpsc::error::SendError(ack)) = tx.send(ack) {
                    waiters.remove(inbox.unwrap_or(&ack.ack_inbox));
                }
            }
            None => {}
        }
    }
}

impl LocalInboxes for AckRouter {
    fn deliver_local(&self, ack: pb::Ack) -> Option<pb::Ack> {
        if !self.owns(&ack.ack_inbox) {
            return Some(ack);
        }
        self.deliver(None, ack);
        None
    }
}
