//! A partition leader is cut off from NATS (its connection goes through a proxy the test cuts) while AckPolicy
//! ALL publishes go on: the controller replaces it from the ISR; when NATS comes back the old leader learns the
//! new metadata, truncates by leader epoch, catches up and rejoins the ISR. Nothing acked is lost or doubled.

mod cluster;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster::{Publisher, check_replicas, wait_partition};
use parking_lot::Mutex;
use support::{NatsServer, TestServer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy to NATS that can be cut (every connection dropped, new ones refused) and healed.
struct Proxy {
    url: String,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (cut, links) = (cut.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: connection refused in effect
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().push(link);
                }
            })
        };
        Proxy {
            url,
            cut,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test]
async fn leader_isolated_from_nats_and_back() {
    let nats = NatsServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut proxies = Vec::new();
    let mut servers: Vec<TestServer> = Vec::new();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let proxy = Proxy::start(nats.port).await;
        servers.push(
            cluster::start(&proxy.url, &root.path().join(id), id, |c| {
                c.clustering.raft_bootstrap_seed = i == 0;
            })
            .await,
        );
        proxies.push(proxy);
    }
    cluster::wait_formed(&nats.url, &servers).await;
    let mut admin = servers[0].client().await;
    let p = cluster::create_with_isr(&mut admin, cluster::replicated("np", 3), 3).await;
    let leader = p.leader.clone();
    let victim = servers.iter().position(|s| s.server_id == leader).unwrap();
    let witness = (victim + 1) % servers.len();
    let mut c = servers[witness].client().await;
    let publisher = Publisher::start(c.clone(), "np");
    publisher.wait_acked(100, Duration::from_secs(30)).await;

    proxies[victim].cut();
    let p = wait_partition(&mut c, "np", Duration::from_secs(20), |p| {
        p.leader != leader
    })
    .await;
    let new_leader = p.leader.clone();
    let acked = publisher.acked();
    publisher
        .wait_acked(acked + 200, Duration::from_secs(30))
        .await;

    proxies[victim].heal();
    wait_partition(&mut c, "np", Duration::from_secs(40), |p| p.isr.len() == 3).await;
    let acked = publisher.acked();
    publisher
        .wait_acked(acked + 50, Duration::from_secs(30))
        .await;
    let history = publisher.finish().await;
    let mut readers = Vec::new();
    for s in &servers {
        readers.push((s.server_id.clone(), s.client().await));
    }
    check_replicas(&history, "np", &new_leader, readers).await;
    for s in servers {
        s.stop().await.unwrap();
    }
}
