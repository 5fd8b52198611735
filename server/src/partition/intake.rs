//! The intake: how publishes taken by this server's API reach NATS and this server's own partition leaders.
//!
//! Every API publish goes out on NATS, so plain NATS subscribers see it and every stream attached to its subject
//! records it, on every server. On an external NATS server, a partition leader on the server that took the
//! publish would get it back only after a broker round trip. The intake saves that trip: it owns a second NATS
//! connection opened with `no_echo` (NATS never hands a message back to the connection that published it), API
//! publishes go out on it, and the subscriptions of this server's partition leaders are made on it too. A leader
//! therefore never gets this server's API publishes from NATS; the intake hands each one to every local leader
//! whose subject matches, in-process, right after publishing it. Publishes from anyone else (other servers,
//! NATS clients, this server's other connection) reach those leaders over NATS as before. Each message is
//! recorded exactly once per stream.
//!
//! Streams in a NATS queue group (`group`) keep their subscription on the main connection: NATS picks one
//! member of the group per message, which an in-process copy could not respect. On the embedded broker the
//! intake is a plain pass-through (its in-process path has no round trip to save).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::Stream;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::bus::{Bus, BusError, BusMessage, BusSubscription};

/// How many in-process messages may wait for one leader before an API publish waits for room.
const LOCAL_CAPACITY: usize = 65_536;

/// A local leader's subscription: its subject (wildcards allowed) and where its in-process copies go.
struct Route {
    id: u64,
    pattern: String,
    tx: mpsc::Sender<BusMessage>,
}

/// Publishes for the API and subscribes partition leaders; see the module docs.
pub struct Intake {
    /// The `no_echo` connection, or the main bus when the intake only passes through.
    bus: Arc<dyn Bus>,
    /// Whether leaders subscribe here and get API publishes in-process.
    local: bool,
    routes: RwLock<Vec<Route>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("local", &self.local)
            .field("routes", &self.routes.read().len())
            .finish()
    }
}

impl Intake {
    /// An intake publishing on `bus` as it is (the embedded broker).
    pub fn pass_through(bus: Arc<dyn Bus>) -> Arc<Intake> {
        Arc::new(Intake {
            bus,
            local: false,
            routes: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// An intake on `no_echo_bus`, a NATS connection that does not receive its own publishes.
    pub fn local(no_echo_bus: Arc<dyn Bus>) -> Arc<Intake> {
        Arc::new(Intake {
            bus: no_echo_bus,
            local: true,
            routes: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// Whether partition leaders should subscribe through [`Intake::subscribe`].
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Subscribes a partition leader to `subject` (no queue group): messages from NATS, and this server's API
    /// publishes in-process. Dropping the subscription ends both.
    pub async fn subscribe(self: &Arc<Self>, subject: String) -> Result<BusSubscription, BusError> {
        let nats = self.bus.subscribe(subject.clone(), None).await?;
        if !self.local {
            return Ok(nats);
        }
        let (tx, rx) = mpsc::channel(LOCAL_CAPACITY);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.routes.write().push(Route {
            id,
            pattern: subject,
            tx,
        });
        let local = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(BusSubscription::new(Merged {
            inner: futures::stream::select(nats, local),
            _route: RouteGuard {
                intake: Arc::downgrade(self),
                id,
            },
        }))
    }

    /// Publishes `payload` to `subject`, then hands it to this server's leaders on that subject.
    pub async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        if !self.local {
            return self.bus.publish(subject, None, Vec::new(), payload).await;
        }
        self.bus
            .publish(subject.clone(), None, Vec::new(), payload.clone())
            .await?;
        let targets = self.targets(&subject);
        dispatch(&targets, subject, payload).await;
        Ok(())
    }

    /// Publishes `(subject, payload)` pairs in order and hands each one that went out to this server's leaders
    /// on its subject; reports each one's outcome (same order).
    pub async fn publish_batch(&self, messages: Vec<(String, Bytes)>) -> Vec<Result<(), BusError>> {
        if !self.local {
            return self.bus.publish_batch(messages).await;
        }
        let results = self.bus.publish_batch(messages.clone()).await;
        // A batch nearly always targets one subject: look its leaders up once.
        let mut cached: Option<(String, Vec<mpsc::Sender<BusMessage>>)> = None;
        for ((subject, payload), result) in messages.into_iter().zip(&results) {
            if result.is_err() {
                continue;
            }
            if cached.as_ref().is_none_or(|(s, _)| *s != subject) {
                cached = Some((subject.clone(), self.targets(&subject)));
            }
            if let Some((_, targets)) = &cached {
                dispatch(targets, subject, payload).await;
            }
        }
        results
    }

    /// Waits until NATS has processed everything published through the intake and its subscriptions are in
    /// effect.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.bus.flush().await
    }

    fn targets(&self, subject: &str) -> Vec<mpsc::Sender<BusMessage>> {
        self.routes
            .read()
            .iter()
            .filter(|r| crate::broker::subject::matches(r.pattern.as_bytes(), subject.as_bytes()))
            .map(|r| r.tx.clone())
            .collect()
    }

    fn remove(&self, id: u64) {
        self.routes.write().retain(|r| r.id != id);
    }
}

/// Hands one published message to each local leader in `targets` (waiting for room if one is far behind).
async fn dispatch(targets: &[mpsc::Sender<BusMessage>], subject: String, payload: Bytes) {
    for tx in targets {
        let message = BusMessage {
            subject: subject.clone(),
            reply: None,
            headers: Vec::new(),
            payload: payload.clone(),
        };
        match tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                // The leader stopped meanwhile if this fails: its subscription is gone, as on NATS.
                let _ = tx.send(message).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Removes a leader's route when its subscription is dropped.
struct RouteGuard {
    intake: std::sync::Weak<Intake>,
    id: u64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        if let Some(intake) = self.intake.upgrade() {
            intake.remove(self.id);
        }
    }
}

/// NATS and in-process messages of one leader, in one stream.
struct Merged<S> {
    inner: S,
    _route: RouteGuard,
}

impl<S: Stream<Item = BusMessage> + Unpin> Stream for Merged<S> {
    type Item = BusMessage;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<BusMessage>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}
