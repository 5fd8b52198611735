//! Which servers are alive, and where clients reach them.
//!
//! Every server announces itself (`{id, host, port}`) on `<ns>.presence` at a fixed interval and records the
//! announcements of the others. A server not heard from within a few intervals is not live. `FetchMetadata`
//! lists the live servers as brokers, placement only uses live servers, and the controller replaces a partition
//! leader it has not heard from for `clustering.replica.max.leader.timeout`.

use std::collections::HashMap;
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
}

impl Inner {
    fn new(me: BrokerInfo, interval: Duration) -> Inner {
        let seen = HashMap::from([(me.id.clone(), (me.clone(), Instant::now()))]);
        Inner {
            me,
            interval,
            seen: RwLock::new(seen),
            tasks: parking_lot::Mutex::new(Vec::new()),
        }
    }
}

impl Presence {
    /// A registry knowing only this server (single-server mode: nothing is announced).
    pub fn local(me: BrokerInfo) -> Presence {
        Presence {
            inner: Arc::new(Inner::new(me, Duration::from_secs(1))),
        }
    }

    /// Starts announcing `me` every `interval` on `<namespace>.presence` and listening to the others.
    pub async fn start(
        bus: Arc<dyn Bus>,
        namespace: &str,
        me: BrokerInfo,
        interval: Duration,
    ) -> Result<Presence, BusError> {
        let inner = Arc::new(Inner::new(me, interval));
        let subject = format!("{namespace}.presence");
        let mut subscription = bus.subscribe(subject.clone(), None).await?;
        bus.flush().await?;
        let weak = Arc::downgrade(&inner);
        let listen = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let Some(inner) = weak.upgrade() else { break };
                if let Ok(info) = serde_json::from_slice::<BrokerInfo>(&message.payload) {
                    inner
                        .seen
                        .write()
                        .insert(info.id.clone(), (info, Instant::now()));
                }
            }
        });
        let payload = Bytes::from(serde_json::to_vec(&inner.me).unwrap_or_default());
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

    /// Stops announcing.
    pub fn stop(&self) {
        for task in self.inner.tasks.lock().drain(..) {
            task.abort();
        }
    }
}
