//! Throughput and latency of the embedded NATS broker, side by side with a real `nats-server` in the same run
//! (when one is installed): core NATS pub → sub over TCP with `async-nats` clients (128 B and 1 KiB), request/reply
//! round trips, and the in-process fast path (`EmbeddedBus` publish → in-process subscriber; TCP publish →
//! in-process subscriber, which is how messages reach partition leaders in standalone mode).
//!
//! `cargo bench -p liftbridge-server --bench broker` (set `BROKER_BENCH_SCALE=0.1` for a quick run). The broker
//! runs on its own two-thread runtime so that, like `nats-server`, it does not share the clients' threads.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_server::broker::{BrokerConfig, EmbeddedBroker};
use liftbridge_server::bus::Bus;
use liftbridge_testkit::NatsServer;

/// Messages per second received by a TCP subscriber (first → last) while one TCP client publishes `n`.
async fn core_pub_sub(url: &str, n: u64, size: usize) -> (f64, u64) {
    let sub_client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .expect("connect");
    let pub_client = async_nats::connect(url).await.expect("connect");
    let mut sub = sub_client.subscribe("core.bench").await.expect("subscribe");
    // Make sure the SUB is in place before publishing.
    let mut ready = sub_client.subscribe("core.ready").await.expect("subscribe");
    loop {
        pub_client
            .publish("core.ready", Bytes::new())
            .await
            .expect("publish");
        if tokio::time::timeout(Duration::from_millis(100), ready.next())
            .await
            .is_ok()
        {
            break;
        }
    }
    let receiver = tokio::spawn(async move {
        let mut got = 0u64;
        let mut first = None;
        let mut last = Instant::now();
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
            last = Instant::now();
            first.get_or_insert(last);
            got += 1;
            if got == n {
                break;
            }
        }
        (got, first.map(|f| last - f).unwrap_or_default())
    });
    let payload = Bytes::from(vec![b'x'; size]);
    for _ in 0..n {
        pub_client
            .publish("core.bench", payload.clone())
            .await
            .expect("publish");
    }
    pub_client.flush().await.expect("flush");
    let (got, elapsed) = receiver.await.expect("receiver");
    (got as f64 / elapsed.as_secs_f64().max(1e-9), got)
}

/// Messages per second through the server with raw-socket clients that cost next to nothing (pre-encoded
/// `PUB`s written in big chunks; the subscriber only counts bytes): the server's own routing capacity.
async fn raw_pub_sub(url: &str, n: u64, size: usize) -> (f64, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("nats://").to_string();
    async fn handshake(addr: &str, extra: &str) -> tokio::net::TcpStream {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .write_all(format!("CONNECT {{}}\r\n{extra}PING\r\n").as_bytes())
            .await
            .expect("write");
        let mut seen = Vec::new();
        while !seen.windows(6).any(|w| w == b"PONG\r\n") {
            let mut chunk = vec![0u8; 4096];
            let read = stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "closed during handshake");
            seen.extend_from_slice(&chunk[..read]);
        }
        stream
    }
    let mut sub = handshake(&addr, "SUB raw.bench 1\r\n").await;
    let mut publisher = handshake(&addr, "").await;
    let payload = vec![b'x'; size];
    let msg_len = format!("MSG raw.bench 1 {size}\r\n").len() + size + 2;
    let expected = n as usize * msg_len;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        let mut first = None;
        while got < expected {
            let read = sub.read(&mut buf).await.expect("read");
            if read == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            got += read;
        }
        (
            first.map(|f| f.elapsed()).unwrap_or_default(),
            got >= expected,
        )
    });
    let mut chunk = Vec::new();
    for _ in 0..1000 {
        chunk.extend_from_slice(format!("PUB raw.bench {size}\r\n").as_bytes());
        chunk.extend_from_slice(&payload);
        chunk.extend_from_slice(b"\r\n");
    }
    for _ in 0..n / 1000 {
        publisher.write_all(&chunk).await.expect("write");
    }
    let (elapsed, complete) = reader.await.expect("reader");
    (
        (n / 1000 * 1000) as f64 / elapsed.as_secs_f64().max(1e-9),
        complete,
    )
}

/// Request/reply round trips through the server: (p50, p99) in microseconds.
async fn request_latency(url: &str, n: usize) -> (u64, u64) {
    let responder = async_nats::connect(url).await.expect("connect");
    let requester = async_nats::connect(url).await.expect("connect");
    let mut service = responder.subscribe("rtt").await.expect("subscribe");
    responder.flush().await.expect("flush");
    let r = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(reply) = m.reply {
                let _ = r.publish(reply, m.payload).await;
            }
        }
    });
    let mut samples = Vec::with_capacity(n);
    let payload = Bytes::from(vec![b'x'; 128]);
    // Warm up until the responder is subscribed.
    while requester.request("rtt", payload.clone()).await.is_err() {}
    for _ in 0..n {
        let t = Instant::now();
        requester
            .request("rtt", payload.clone())
            .await
            .expect("request");
        samples.push(t.elapsed().as_micros() as u64);
    }
    task.abort();
    samples.sort_unstable();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q) as usize).min(samples.len() - 1))
            .copied()
            .unwrap_or(0)
    };
    (at(0.5), at(0.99))
}

fn main() {
    let scale: f64 = std::env::var("BROKER_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let scaled = |n: u64| ((n as f64 * scale) as u64).max(1000);
    let broker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("broker")
        .enable_all()
        .build()
        .expect("runtime");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = BrokerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..BrokerConfig::default()
    };
    let broker = broker_rt
        .block_on(EmbeddedBroker::start(config, None))
        .expect("broker");
    let embedded_url = broker.client_url();
    let nats = NatsServer::try_start_on(None).ok();
    if nats.is_none() {
        println!(
            "note: nats-server not found; reporting the embedded broker alone (apt-get install -y nats-server)"
        );
    }

    println!("core pub -> sub over TCP (async-nats clients, one publisher, one subscriber)");
    for (size, n) in [(128usize, scaled(2_000_000)), (1024, scaled(500_000))] {
        let (embedded, got_e) = client_rt.block_on(core_pub_sub(&embedded_url, n, size));
        let line = format!(
            "  {size:>5} B x {n}: embedded {:>10.0} msg/s ({:>7.1} MB/s, got {got_e})",
            embedded,
            embedded * size as f64 / 1e6
        );
        match &nats {
            Some(nats) => {
                let (reference, got_n) = client_rt.block_on(core_pub_sub(&nats.url, n, size));
                println!(
                    "{line} | nats-server {reference:>10.0} msg/s (got {got_n}) | ratio {:.2}",
                    embedded / reference
                );
            }
            None => println!("{line}"),
        }
    }

    println!("core pub -> sub, raw-socket clients (the server's routing capacity)");
    for (size, n) in [(128usize, scaled(5_000_000)), (1024, scaled(1_000_000))] {
        let (embedded, complete) = client_rt.block_on(raw_pub_sub(&embedded_url, n, size));
        let cut = if complete {
            ""
        } else {
            " (INCOMPLETE: subscriber cut off)"
        };
        let line = format!("  {size:>5} B x {n}: embedded {embedded:>10.0} msg/s{cut}");
        match &nats {
            Some(nats) => {
                let (reference, complete) = client_rt.block_on(raw_pub_sub(&nats.url, n, size));
                let cut = if complete {
                    ""
                } else {
                    " (INCOMPLETE: subscriber cut off)"
                };
                println!(
                    "{line} | nats-server {reference:>10.0} msg/s{cut} | ratio {:.2}",
                    embedded / reference
                );
            }
            None => println!("{line}"),
        }
    }

    println!("request/reply round trip, 128 B (p50 / p99)");
    let rounds = scaled(20_000) as usize;
    let (p50, p99) = client_rt.block_on(request_latency(&embedded_url, rounds));
    let mut line = format!("  embedded {p50} us / {p99} us");
    if let Some(nats) = &nats {
        let (p50, p99) = client_rt.block_on(request_latency(&nats.url, rounds));
        line.push_str(&format!(" | nats-server {p50} us / {p99} us"));
    }
    println!("{line}");

    println!("in-process fast path");
    let bus = broker.bus();
    for size in [128usize, 1024] {
        let n = scaled(2_000_000);
        let rate = broker_rt.block_on(async {
            let mut sub = bus
                .subscribe("local.bench".into(), None)
                .await
                .expect("subscribe");
            let payload = Bytes::from(vec![b'x'; size]);
            let publisher = bus.clone();
            let started = Instant::now();
            let producer = tokio::spawn(async move {
                // Publishers wait briefly when the subscriber's queue is three quarters full.
                for _ in 0..n {
                    publisher
                        .publish("local.bench".into(), None, Vec::new(), payload.clone())
                        .await
                        .expect("publish");
                }
            });
            let mut got = 0;
            while got < n {
                if tokio::time::timeout(Duration::from_secs(3), sub.next())
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    break;
                }
                got += 1;
            }
            producer.await.expect("producer");
            got as f64 / started.elapsed().as_secs_f64()
        });
        println!(
            "  EmbeddedBus publish -> in-process subscriber, {size:>5} B: {rate:>10.0} msg/s (dropped so far {})",
            broker.stats().local_dropped
        );
    }
    let n = scaled(2_000_000);
    let bus2 = broker.bus();
    let mut local = broker_rt
        .block_on(bus2.subscribe("edge.bench".into(), None))
        .expect("subscribe");
    let counter = broker_rt.spawn(async move {
        let mut got = 0u64;
        let mut first = None;
        let mut last = Instant::now();
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(3), local.next()).await {
            last = Instant::now();
            first.get_or_insert(last);
            got += 1;
            if got == n {
                break;
            }
        }
        (got, first.map(|f| last - f).unwrap_or_default())
    });
    client_rt.block_on(async {
        let client = async_nats::connect(&embedded_url).await.expect("connect");
        let payload = Bytes::from(vec![b'x'; 128]);
        for _ in 0..n {
            client
                .publish("edge.bench", payload.clone())
                .await
                .expect("publish");
        }
        client.flush().await.expect("flush");
    });
    let (got, elapsed) = broker_rt.block_on(counter).expect("counter");
    println!(
        "  TCP publish -> in-process subscriber,   128 B: {:>10.0} msg/s (got {got}/{n}, dropped {})",
        got as f64 / elapsed.as_secs_f64().max(1e-9),
        broker.stats().local_dropped
    );
    drop(nats);
    broker_rt.block_on(broker.shutdown());
}
