//! Which servers are alive, and where clients reach them.
//!
//! Every server announces itself (`{id, host, port}`) on `<ns>.presence` at a fixed interval and records the
//! announcements of the others. A server not heard from within a few intervals is not live. `FetchMetadata`
//! lists the live servers as brokers, placement only uses live servers, and the controller replaces a partition
//! leader it has not heard from for `clustering.replica.max.leader.timeout`.
//!
//! A server that stops cleanly says goodbye (the same announcement with `"leaving": true`) once its partitions
//! are closed: the others forget it at once, so the controller moves its partitions' leadership on its next
//! check instead of waiting out the leader timeout (a rolling restart costs about one controller tick per
//! server, not `max.leader.timeout`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::bus::{Bus, BusError};

/// A server as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Server id.
    pub id: String,
    /// Host advertised to clients.
    pub host: String,
    /// gRPC port.
    pub port: u16,
}

/// What goes on `<ns>.presence`: the server, and whether it is stopping.
#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    #[serde(flatten)]
    info: BrokerInfo,
    /// Set once, by a server that is stopping cleanly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    leaving: bool,
}

/// The live-server registry (cheap to clone).
#[derive(Debug, Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    me: BrokerInfo,
    interval: Duration,
    /// Last announcement heard from each server (this one included).
    seen: RwLock<HashMap<String, (BrokerInfo, Instant)>>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    /// Servers that said goodbye and have not announced themselves since.
    left: RwLock<HashSet<String>>,
    /// Where announcements go (none for a server running alone).
    channel: Option<(Arc<dyn Bus>, String)>,
}

impl Inner {
    fn new(me: BrokerInfo, interval: Duration, channel: Option<(Arc<dyn Bus>, String)>) -> Inner {
        let seen = HashMap::from([(me.id.clone(), (me.clone(), Instant::now()))]);
        Inner {
            me,
            interval,
            seen: RwLock::new(seen),
            tasks: parking_lot::Mutex::new(Vec::new()),
            left: RwLock::new(HashSet::new()),
            channel,
        }
    }
}

impl Presence {
    /// A registry knowing only this server (single-server mode: nothing is announced).
    pub fn local(me: BrokerInfo) -> Presence {
        Presence {
            inner: Arc::new(Inner::new(me, Duration::from_secs(1), None)),
        }
    }

    /// Starts announcing `me` every `interval` on `<namespace>.presence` and listening to the others.
    pub async fn start(
        bus: Arc<dyn Bus>,
        namespace: &str,
        me: BrokerInfo,
        interval: Duration,
    ) -> Result<Presence, BusError> {
        let subject = format!("{namespace}.presence");
        let inner = Arc::new(Inner::new(
            me,
            interval,
            Some((bus.clone(), subject.clone())),
        ));
        let mut subscription = bus.subscribe(subject.clone(), None).await?;
        bus.flush().await?;
        let weak = Arc::downgrade(&inner);
        let listen = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let Some(inner) = weak.upgrade() else { break };
                match serde_json::from_slice::<Announcement>(&message.payload) {
                    Ok(a) if a.leaving => {
                        if a.info.id != inner.me.id {
                            tracing::info!(server = a.info.id, "server left the cluster");
                            inner.seen.write().remove(&a.info.id);
                            inner.left.write().insert(a.info.id);
                        }
                    }
                    Ok(a) => {
                        if inner.left.read().contains(&a.info.id) {
                            inner.left.write().remove(&a.info.id);
                        }
                        inner
                            .seen
                            .write()
                            .insert(a.info.id.clone(), (a.info, Instant::now()));
                    }
                    Err(e) => tracing::debug!(error = %e, "unreadable presence announcement"),
                }
            }
        });
        let payload = Bytes::from(
            serde_json::to_vec(&Announcement {
                info: inner.me.clone(),
                leaving: false,
            })
            .unwrap_or_default(),
        );
        let weak = Arc::downgrade(&inner);
        let announce = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if weak.upgrade().is_none() {
                    break;
                }
                let _ = bus
                    .publish(subject.clone(), None, Vec::new(), payload.clone())
                    .await;
            }
        });
        inner.tasks.lock().extend([listen, announce]);
        Ok(Presence { inner })
    }

    /// This server.
    pub fn me(&self) -> &BrokerInfo {
        &self.inner.me
    }

    /// Servers heard from within the last three intervals (this one always), sorted by id.
    pub fn live(&self) -> Vec<BrokerInfo> {
        let window = self.inner.interval * 3;
        let mut live: Vec<BrokerInfo> = self
            .inner
            .seen
            .read()
            .values()
            .filter(|(info, at)| info.id == self.inner.me.id || at.elapsed() <= window)
            .map(|(info, _)| info.clone())
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        live
    }

    /// How long ago `server` was last heard from (`None`: never; zero for this server).
    pub fn silent_for(&self, server: &str) -> Option<Duration> {
        if server == self.inner.me.id {
            return Some(Duration::ZERO);
        }
        self.inner
            .seen
            .read()
            .get(server)
            .map(|(_, at)| at.elapsed())
    }

    /// Whether `server` said goodbye (a clean stop) and has not announced itself since.
    pub fn has_left(&self, server: &str) -> bool {
        self.inner.left.read().contains(server)
    }

    /// Stops announcing.
    pub fn stop(&self) {
        for task in self.inner.tasks.lock().drain(..) {
            task.abort();
        }
    }

    /// Stops announcing and tells the other servers this one is leaving (see the module docs); call it once
    /// this server leads nothing any more. A no-op for a server running alone.
    pub async fn leave(&self) -> Result<(), BusError> {
        self.stop();
        let Some((bus, subject)) = &self.inner.channel else {
            return Ok(());
        };
        let payload = serde_json::to_vec(&Announcement {
            info: self.inner.me.clone(),
            leaving: true,
        })
        .unwrap_or_default();
        bus.publish(subject.clone(), None, Vec::new(), Bytes::from(payload))
            .await?;
        bus.flush().await
    }
}
