//! Subscriptions and where their messages go.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::connection::Client;
use super::local::{LocalQueue, ReplyMux};
use super::sublist::Interest;

/// The owner id of subscriptions made in-process through [`super::EmbeddedBus`]. Client ids start at 1.
pub(crate) const IN_PROCESS: u64 = 0;

/// Where a subscription's messages go.
pub(crate) enum Target {
    /// A TCP client: encoded as `MSG`/`HMSG` into its outbound buffer.
    Client(Arc<Client>),
    /// An in-process subscriber: handed over as a [`crate::bus::BusMessage`] sharing the payload.
    Local(Arc<LocalQueue>),
    /// The in-process request/reply inbox: resolves a waiting request.
    Replies(Arc<ReplyMux>),
    /// An in-process handler ([`crate::bus::Bus::subscribe_handler`]), called in the publisher's context.
    Handler(crate::bus::BusHandler),
}

impl Target {
    /// Whether messages are handed over in-process (as a [`crate::bus::BusMessage`]).
    pub(crate) fn is_in_process(&self) -> bool {
        !matches!(self, Target::Client(_))
    }
}

/// One subscription: a TCP client's `SUB` or an in-process [`crate::bus::Bus::subscribe`].
pub(crate) struct Subscription {
    /// Unique within the broker (the index's key).
    pub(crate) id: u64,
    /// The client that made it, or [`IN_PROCESS`]; used for `echo: false` and no-responders.
    pub(crate) owner: u64,
    /// The subscribed subject, possibly with wildcards.
    pub(crate) subject: Box<[u8]>,
    /// The queue group, if any.
    pub(crate) queue: Option<Box<[u8]>>,
    /// The client's subscription id, echoed in `MSG` (empty for in-process subscriptions).
    pub(crate) sid: Box<[u8]>,
    /// Where messages go.
    pub(crate) target: Target,
    /// Unsubscribe after this many deliveries (`UNSUB <sid> <max>`); 0 = no limit.
    max: AtomicU64,
    /// Deliveries so far.
    delivered: AtomicU64,
    /// Set once the subscription is removed, so that a match result cached before the removal skips it.
    closed: AtomicBool,
}

impl Subscription {
    /// A new, open subscription.
    pub(crate) fn new(
        id: u64,
        owner: u64,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
        target: Target,
    ) -> Self {
        Subscription {
            id,
            owner,
            subject: subject.into(),
            queue: queue.map(Into::into),
            sid: sid.into(),
            target,
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether it has been removed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks it removed; returns false if it already was.
    pub(crate) fn mark_closed(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    /// Sets the auto-unsubscribe limit; returns true if it has already been reached (remove now).
    pub(crate) fn set_max(&self, max: u64) -> bool {
        self.max.store(max, Ordering::Release);
        self.delivered.load(Ordering::Acquire) >= max
    }

    /// Accounts for one delivery: `None` if the limit is already used up (skip), `Some(true)` if this delivery
    /// is the last one allowed (deliver, then remove), `Some(false)` otherwise.
    pub(crate) fn take_delivery(&self) -> Option<bool> {
        let n = self.delivered.fetch_add(1, Ordering::AcqRel) + 1;
        let max = self.max.load(Ordering::Acquire);
        if max == 0 {
            return Some(false);
        }
        match n.cmp(&max) {
            std::cmp::Ordering::Less => Some(false),
            std::cmp::Ordering::Equal => Some(true),
            std::cmp::Ordering::Greater => None,
        }
    }
}

impl Interest for Subscription {
    fn id(&self) -> u64 {
        self.id
    }

    fn subject(&self) -> &[u8] {
        &self.subject
    }

    fn queue(&self) -> Option<&[u8]> {
        self.queue.as_deref()
    }
}
