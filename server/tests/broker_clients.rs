//! The embedded broker against a real, independent NATS client (`async-nats`) over TCP, and its in-process
//! fast path ([`EmbeddedBus`]) sharing the same subject space: pub/sub, wildcards, queue groups, UNSUB max,
//! headers, request/reply both ways, no-responders, max_payload, auth, slow consumers, bounded in-process queues,
//! reconnect after a broker restart, shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::{ConnectOptions, HeaderMap};
use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use liftbridge_server::broker::{BrokerAuth, BrokerConfig, BrokerError, EmbeddedBroker};
use liftbridge_server::bus::{Bus, BusError};
use tokio::io::AsyncWriteExt;

mod support;

use support::{broker_config as config, start_broker as start, wait_until};

const WAIT: Duration = Duration::from_secs(10);

async fn client(broker: &EmbeddedBroker) -> async_nats::Client {
    tokio::time::timeout(WAIT, async_nats::connect(broker.client_url()))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// The next message of a subscription (async-nats or in-process), within the wait.
async fn next<S: Stream + Unpin>(sub: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// Makes sure everything `publisher` published so far has been routed by the broker and has reached
/// `subscriber`'s subscriptions (async-nats' `flush` only flushes the socket). A marker goes from `publisher` to an
/// inbox of `subscriber`: the broker handles a connection's operations in order, and a client receives its
/// messages in order, so once the marker is in, so is everything routed before it.
async fn sync(publisher: &async_nats::Client, subscriber: &async_nats::Client) {
    let inbox = subscriber.new_inbox();
    let mut marker = subscriber.subscribe(inbox.clone()).await.unwrap();
    // The subscriber's own publish arrives after its SUB was processed.
    subscriber
        .publish(inbox.clone(), Bytes::from_static(b"self"))
        .await
        .unwrap();
    assert_eq!(next(&mut marker).await.payload, Bytes::from_static(b"self"));
    publisher
        .publish(inbox, Bytes::from_static(b"sync"))
        .await
        .unwrap();
    assert_eq!(next(&mut marker).await.payload, Bytes::from_static(b"sync"));
}

/// Everything already delivered to `sub` (call after [`sync`]).
fn drain<S: Stream + Unpin>(sub: &mut S) -> Vec<S::Item> {
    let mut out = Vec::new();
    while let Some(Some(message)) = tokio::task::unconstrained(sub.next()).now_or_never() {
        out.push(message);
    }
    out
}

#[tokio::test]
async fn publish_and_subscribe() {
    let broker = start(config()).await;
    let nc = client(&broker).await;
    let mut sub = nc.subscribe("greet.joe").await.unwrap();
    nc.publish("greet.joe", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let message = next(&mut sub).await;
    assert_eq!(message.subject.as_str(), "greet.joe");
    assert_eq!(message.payload, Bytes::from_static(b"hello"));
    assert!(message.reply.is_none() && message.headers.is_none());
    // Empty and large payloads.
    let big = Bytes::from(vec![7u8; 900 * 1024]);
    nc.publish("greet.joe", Bytes::new()).await.unwrap();
    nc.publish("greet.joe", big.clone()).await.unwrap();
    assert!(next(&mut sub).await.payload.is_empty());
    assert_eq!(next(&mut sub).await.payload, big);
    broker.shutdown().await;
}

#[tokio::test]
async fn wildcards() {
    let broker = start(config()).await;
    let nc = client(&broker).await;
    let mut subs = Vec::new();
    for pattern in ["a.*", "a.>", ">", "*.b", "a.b.*"] {
        subs.push((pattern, nc.subscribe(pattern).await.unwrap()));
    }
    for subject in ["a.b.c", "x.y", "a", "z.b", "a.b"] {
        nc.publish(subject, Bytes::from_static(b"x")).await.unwrap();
    }
    sync(&nc, &nc).await;
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("a.*", vec!["a.b"]),
        ("a.>", vec!["a.b.c", "a.b"]),
        (">", vec!["a.b.c", "x.y", "a", "z.b", "a.b"]),
        ("*.b", vec!["z.b", "a.b"]),
        ("a.b.*", vec!["a.b.c"]),
    ]);
    for (pattern, sub) in &mut subs {
        let got: Vec<String> = drain(sub)
            .iter()
            .map(|m| m.subject.to_string())
            .filter(|s| !s.starts_with("_INBOX."))
            .collect();
        assert_eq!(got, expected[pattern], "{pattern}");
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn queue_groups_deliver_each_message_once_per_group() {
    let broker = start(config()).await;
    let publisher = client(&broker).await;
    let (c1, c2) = (client(&broker).await, client(&broker).await);
    let mut members = vec![
        c1.queue_subscribe("jobs", "workers".into()).await.unwrap(),
        c1.queue_subscribe("jobs", "workers".into()).await.unwrap(),
        c2.queue_subscribe("jobs", "workers".into()).await.unwrap(),
    ];
    let mut auditors = c2.queue_subscribe("jobs", "auditors".into()).await.unwrap();
    let mut plain = c2.subscribe("jobs").await.unwrap();
    sync(&c1, &c1).await;
    sync(&c2, &c2).await;
    for i in 0..300u32 {
        publisher
            .publish("jobs", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    sync(&publisher, &c1).await;
    sync(&publisher, &c2).await;
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for member in &mut members {
        let got = drain(member);
        assert!(!got.is_empty(), "every member gets some work");
        total += got.len();
        seen.extend(got.into_iter().map(|m| m.payload));
    }
    assert_eq!(
        (total, seen.len()),
        (300, 300),
        "each message exactly once in the group"
    );
    assert_eq!(drain(&mut auditors).len(), 300);
    assert_eq!(drain(&mut plain).len(), 300);
    broker.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_after_max_messages() {
    let broker = start(config()).await;
    let nc = client(&broker).await;
    let mut sub = nc.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    sync(&nc, &nc).await;
    for i in 0..10u8 {
        nc.publish("limited", Bytes::from(vec![i])).await.unwrap();
    }
    let mut got = Vec::new();
    while let Some(message) = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
    {
        got.push(message.payload[0]);
    }
    assert_eq!(got, [0, 1, 2]);
    assert!(wait_until(WAIT, || broker.stats().subscriptions == 0).await);
    broker.shutdown().await;
}

#[tokio::test]
async fn headers_round_trip() {
    let broker = start(config()).await;
    let bus = broker.bus();
    let nc = client(&broker).await;
    let mut tcp_sub = nc.subscribe("with.headers").await.unwrap();
    let mut local_sub = bus.subscribe("with.headers".into(), None).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Trace-Id", "abc-123");
    headers.append("Multi", "one");
    headers.append("Multi", "two");
    nc.publish_with_headers("with.headers", headers.clone(), Bytes::from_static(b"body"))
        .await
        .unwrap();
    let message = next(&mut tcp_sub).await;
    let got = message.headers.expect("headers");
    assert_eq!(got.get("Trace-Id").map(|v| v.as_str()), Some("abc-123"));
    let multi: Vec<&str> = got.get_all("Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(message.payload, Bytes::from_static(b"body"));

    let local = next(&mut local_sub).await;
    assert_eq!(local.payload, Bytes::from_static(b"body"));
    let mut pairs = local.headers.clone();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("Multi".to_string(), "one".to_string()),
            ("Multi".into(), "two".into()),
            ("Trace-Id".into(), "abc-123".into())
        ]
    );

    // In-process headers reach TCP subscribers.
    bus.publish(
        "with.headers".into(),
        Some("reply.here".into()),
        vec![("Origin".into(), "bus".into())],
        Bytes::from_static(b"from bus"),
    )
    .await
    .unwrap();
    let message = next(&mut tcp_sub).await;
    assert_eq!(
        message.reply.as_ref().map(|r| r.as_str()),
        Some("reply.here")
    );
    assert_eq!(
        message
            .headers
            .expect("headers")
            .get("Origin")
            .map(|v| v.as_str()),
        Some("bus")
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn tcp_and_in_process_share_one_subject_space() {
    let broker = start(config()).await;
    let bus = broker.bus();
    let nc = client(&broker).await;
    let mut local = bus.subscribe("stream.>".into(), None).await.unwrap();
    let mut tcp = nc.subscribe("stream.>").await.unwrap();
    sync(&nc, &nc).await;

    // TCP publish → in-process subscriber.
    nc.publish_with_reply("stream.a", "ack.1", Bytes::from_static(b"tcp"))
        .await
        .unwrap();
    let message = next(&mut local).await;
    assert_eq!(
        (
            message.subject.as_str(),
            message.reply.as_deref(),
            &message.payload[..]
        ),
        ("stream.a", Some("ack.1"), &b"tcp"[..])
    );
    assert_eq!(next(&mut tcp).await.payload, Bytes::from_static(b"tcp"));

    // In-process publish → TCP subscriber, and the in-process subscriber gets the very same bytes (no copy).
    let payload = Bytes::from(vec![1u8; 4096]);
    bus.publish("stream.b".into(), None, Vec::new(), payload.clone())
        .await
        .unwrap();
    let message = next(&mut local).await;
    assert_eq!(
        message.payload.as_ptr(),
        payload.as_ptr(),
        "in-process delivery shares the payload"
    );
    assert_eq!(next(&mut tcp).await.payload, payload);
    bus.flush().await.unwrap();
    assert!(bus.is_connected());
    broker.shutdown().await;
}

#[tokio::test]
async fn request_reply_between_tcp_and_in_process() {
    let broker = start(config()).await;
    let bus = broker.bus();
    let nc = client(&broker).await;

    // In-process responder, TCP requester.
    let mut service = bus
        .subscribe("svc.upper".into(), Some("svc".into()))
        .await
        .unwrap();
    let responder_bus = bus.clone();
    let responder = tokio::spawn(async move {
        while let Some(request) = service.next().await {
            let reply = request.reply.expect("requests carry a reply subject");
            let upper = Bytes::from(request.payload.to_ascii_uppercase());
            responder_bus
                .publish(reply, None, Vec::new(), upper)
                .await
                .unwrap();
        }
    });
    let reply = tokio::time::timeout(WAIT, nc.request("svc.upper", Bytes::from_static(b"hi")))
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(reply.payload, Bytes::from_static(b"HI"));

    // In-process requester: to the in-process responder and to a TCP responder.
    let reply = bus
        .request("svc.upper".into(), Bytes::from_static(b"local"), WAIT)
        .await
        .unwrap();
    assert_eq!(reply.payload, Bytes::from_static(b"LOCAL"));
    let mut tcp_service = nc.subscribe("svc.echo").await.unwrap();
    let nc2 = nc.clone();
    tokio::spawn(async move {
        while let Some(request) = tcp_service.next().await {
            if let Some(reply) = request.reply {
                nc2.publish(reply, request.payload).await.unwrap();
            }
        }
    });
    sync(&nc, &nc).await;
    for i in 0..50u32 {
        let payload = Bytes::from(i.to_string());
        let reply = bus
            .request("svc.echo".into(), payload.clone(), WAIT)
            .await
            .unwrap();
        assert_eq!(reply.payload, payload);
    }
    // Concurrent in-process requests each get their own reply.
    let replies = futures::future::join_all((0..20u32).map(|i| {
        let bus = bus.clone();
        async move {
            bus.request("svc.upper".into(), Bytes::from(format!("r{i}")), WAIT)
                .await
        }
    }))
    .await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap().payload, Bytes::from(format!("R{i}")));
    }
    // A request nobody answers times out.
    let _silent = bus.subscribe("svc.silent".into(), None).await.unwrap();
    let err = bus
        .request("svc.silent".into(), Bytes::new(), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err}");
    responder.abort();
    broker.shutdown().await;
}

#[tokio::test]
async fn no_responders() {
    let broker = start(config()).await;
    let bus = broker.bus();
    let nc = client(&broker).await;
    let err = tokio::time::timeout(WAIT, nc.request("nobody.home", Bytes::new()))
        .await
        .expect("answered at once, not timed out")
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    let err = bus
        .request("nobody.home".into(), Bytes::new(), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BusError::NoResponders(ref s) if s == "nobody.home"),
        "{err}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn max_payload_is_announced_and_enforced() {
    let broker = start(BrokerConfig {
        max_payload: 1024,
        ..config()
    })
    .await;
    let nc = client(&broker).await;
    assert_eq!(nc.server_info().max_payload, 1024);
    assert!(nc.server_info().headers);
    let err = nc
        .publish("big", Bytes::from(vec![0u8; 2048]))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::client::PublishErrorKind::MaxPayloadExceeded
    );
    let err = broker
        .bus()
        .publish("big".into(), None, Vec::new(), Bytes::from(vec![0u8; 2048]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BusError::PayloadTooLarge {
                size: 2048,
                max: 1024
            }
        ),
        "{err}"
    );
    // The server enforces it too, for clients that do not check (see broker_protocol.rs for the raw -ERR).
    let mut raw = tokio::net::TcpStream::connect(broker.local_addr())
        .await
        .unwrap();
    raw.write_all(b"CONNECT {}\r\nPUB big 4096\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_string(&mut raw, &mut got),
    )
    .await
    .expect("closed in time")
    .unwrap();
    assert!(
        got.ends_with("-ERR 'Maximum Payload Violation'\r\n"),
        "{got:?}"
    );
    // Other clients are unaffected.
    let mut sub = nc.subscribe("small").await.unwrap();
    nc.publish("small", Bytes::from_static(b"ok"))
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload, Bytes::from_static(b"ok"));
    broker.shutdown().await;
}

#[tokio::test]
async fn user_password_auth() {
    let broker = start(BrokerConfig {
        auth: Some(BrokerAuth::UserPassword {
            user: "alice".into(),
            password: "wonderland".into(),
        }),
        ..config()
    })
    .await;
    let connect = |user: &str, password: &str| {
        ConnectOptions::new()
            .user_and_password(user.into(), password.into())
            .connect(broker.client_url())
    };
    let nc = tokio::time::timeout(WAIT, connect("alice", "wonderland"))
        .await
        .expect("in time")
        .expect("good credentials connect");
    let mut sub = nc.subscribe("private").await.unwrap();
    nc.publish("private", Bytes::from_static(b"ok"))
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload, Bytes::from_static(b"ok"));
    for (user, password) in [("alice", "wrong"), ("bob", "wonderland"), ("", "")] {
        let err = tokio::time::timeout(WAIT, connect(user, password))
            .await
            .expect("in time")
            .expect_err("bad credentials are refused");
        assert_eq!(
            err.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{err}"
        );
    }
    let err = tokio::time::timeout(WAIT, async_nats::connect(broker.client_url()))
        .await
        .expect("in time")
        .expect_err("no credentials are refused");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn token_auth() {
    let broker = start(BrokerConfig {
        auth: Some(BrokerAuth::Token("t0ken".into())),
        ..config()
    })
    .await;
    let nc = tokio::time::timeout(
        WAIT,
        ConnectOptions::with_token("t0ken".into()).connect(broker.client_url()),
    )
    .await
    .expect("in time")
    .expect("good token connects");
    nc.flush().await.unwrap();
    let err = tokio::time::timeout(
        WAIT,
        ConnectOptions::with_token("nope".into()).connect(broker.client_url()),
    )
    .await
    .expect("in time")
    .expect_err("bad token is refused");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn slow_consumer_is_disconnected_and_others_keep_working() {
    let broker = start(BrokerConfig {
        max_pending: 256 * 1024,
        max_payload: 64 * 1024,
        ..config()
    })
    .await;
    // A subscriber that never reads its socket.
    let mut stuck = tokio::net::TcpStream::connect(broker.local_addr())
        .await
        .unwrap();
    stuck
        .write_all(b"CONNECT {}\r\nSUB firehose 1\r\nPING\r\n")
        .await
        .unwrap();
    let publisher = client(&broker).await;
    let watcher = client(&broker).await;
    let mut healthy = watcher.subscribe("firehose").await.unwrap();
    sync(&watcher, &watcher).await;
    assert!(wait_until(WAIT, || broker.stats().subscriptions == 2).await);
    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
    let mut sent = 0u64;
    let mut received = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while broker.stats().slow_consumers == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck client was never cut off"
        );
        for _ in 0..64 {
            publisher.publish("firehose", chunk.clone()).await.unwrap();
            sent += 1;
        }
        publisher.flush().await.unwrap();
        // Keep the healthy subscriber drained so that it is never the slow one.
        while received < sent {
            next(&mut healthy).await;
            received += 1;
        }
    }
    assert!(
        wait_until(WAIT, || broker.stats().connections == 2).await,
        "{:?}",
        broker.stats()
    );
    assert_eq!(broker.stats().subscriptions, 1);
    // Everyone else carries on.
    publisher
        .publish("firehose", Bytes::from_static(b"after"))
        .await
        .unwrap();
    let mut last = next(&mut healthy).await;
    while last.payload != Bytes::from_static(b"after") {
        last = next(&mut healthy).await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn in_process_subscriber_queues_are_bounded() {
    let broker = start(BrokerConfig {
        in_process_pending_msgs: 10,
        ..config()
    })
    .await;
    let bus = broker.bus();
    let mut slow = bus.subscribe("busy".into(), None).await.unwrap();
    let mut fine = bus.subscribe("busy".into(), None).await.unwrap();
    for i in 0..25u8 {
        bus.publish("busy".into(), None, Vec::new(), Bytes::from(vec![i]))
            .await
            .unwrap();
        assert_eq!(
            next(&mut fine).await.payload[0],
            i,
            "a subscriber that keeps up loses nothing"
        );
    }
    assert_eq!(broker.stats().local_dropped, 15);
    assert_eq!(bus.dropped(), 15);
    let kept: Vec<u8> = drain(&mut slow).iter().map(|m| m.payload[0]).collect();
    assert_eq!(
        kept,
        (0..10).collect::<Vec<u8>>(),
        "the oldest are kept, later ones dropped"
    );
    // Once drained, it receives again.
    bus.publish(
        "busy".into(),
        None,
        Vec::new(),
        Bytes::from_static(b"again"),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut slow).await.payload, Bytes::from_static(b"again"));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_to_a_busy_in_process_subscriber_are_absorbed_not_dropped() {
    // A queue of 100 messages and a burst of 20,000 from TCP: publishers wait briefly at 75 instead of dropping.
    let broker = start(BrokerConfig {
        in_process_pending_msgs: 100,
        ..config()
    })
    .await;
    let bus = broker.bus();
    let mut partition = bus.subscribe("orders".into(), None).await.unwrap();
    let consumer = tokio::spawn(async move {
        let mut expected = 0u32;
        while expected < 20_000 {
            let message = next(&mut partition).await;
            assert_eq!(
                message.payload,
                Bytes::from(expected.to_string()),
                "in order, none lost"
            );
            expected += 1;
        }
    });
    let nc = client(&broker).await;
    for i in 0..20_000u32 {
        nc.publish("orders", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    nc.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), consumer)
        .await
        .expect("consumer done in time")
        .unwrap();
    assert_eq!(broker.stats().local_dropped, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn in_process_queue_groups_and_dropped_subscriptions() {
    let broker = start(config()).await;
    let bus = broker.bus();
    let nc = client(&broker).await;
    let mut a = bus
        .subscribe("work".into(), Some("g".into()))
        .await
        .unwrap();
    let mut b = bus
        .subscribe("work".into(), Some("g".into()))
        .await
        .unwrap();
    let mut c = nc.queue_subscribe("work", "g".into()).await.unwrap();
    sync(&nc, &nc).await;
    for i in 0..90u32 {
        nc.publish("work", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    sync(&nc, &nc).await;
    let total = drain(&mut a).len() + drain(&mut b).len() + drain(&mut c).len();
    assert_eq!(total, 90);
    assert!(
        wait_until(WAIT, || broker.stats().subscriptions == 3).await,
        "{:?}",
        broker.stats()
    );
    drop(a);
    drop(b);
    assert_eq!(
        broker.stats().subscriptions,
        1,
        "in-process subscriptions end when dropped"
    );
    for _ in 0..10 {
        nc.publish("work", Bytes::from_static(b"x")).await.unwrap();
    }
    sync(&nc, &nc).await;
    assert_eq!(
        drain(&mut c).len(),
        10,
        "the remaining member gets everything"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn bus_validates_subjects() {
    let broker = start(config()).await;
    let bus = broker.bus();
    for bad in ["", "a..b", "a.*", "a.>", "a b"] {
        let err = bus
            .publish(bad.into(), None, Vec::new(), Bytes::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject { .. }),
            "{bad:?}: {err}"
        );
    }
    for bad_reply in ["", "a b", "a..b", "x\r\n"] {
        let err = bus
            .publish(
                "ok".into(),
                Some(bad_reply.into()),
                Vec::new(),
                Bytes::new(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject { .. }),
            "{bad_reply:?}: {err}"
        );
    }
    let err = bus
        .publish(
            "ok".into(),
            None,
            vec![("Bad\nName".into(), "v".into())],
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Other(_)), "{err}");
    for bad in ["", "a..b", "a.>.b", "a*.b"] {
        let err = bus.subscribe(bad.into(), None).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(
        bus.subscribe("ok".into(), Some("bad group".into()))
            .await
            .is_err()
    );
    let inbox = bus.new_inbox();
    assert!(inbox.starts_with("_INBOX.") && inbox != bus.new_inbox());
    broker.shutdown().await;
}

#[tokio::test]
async fn clients_reconnect_after_the_broker_restarts() {
    let first = start(config()).await;
    let addr = first.local_addr();
    let nc = tokio::time::timeout(
        WAIT,
        ConnectOptions::new()
            .retry_on_initial_connect()
            .reconnect_delay_callback(|_| Duration::from_millis(50))
            .connect(first.client_url()),
    )
    .await
    .expect("in time")
    .unwrap();
    let mut sub = nc.subscribe("survives").await.unwrap();
    nc.publish("survives", Bytes::from_static(b"before"))
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload, Bytes::from_static(b"before"));

    first.shutdown().await;
    assert!(
        wait_until(WAIT, || nc.connection_state()
            != async_nats::connection::State::Connected)
        .await,
        "the client notices the broker is gone"
    );
    let second = start(BrokerConfig {
        port: addr.port(),
        ..config()
    })
    .await;
    assert!(
        wait_until(WAIT, || nc.connection_state()
            == async_nats::connection::State::Connected)
        .await,
        "the client reconnects"
    );
    // The client re-subscribed on reconnect; publish from another client until it shows up.
    let other = client(&second).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        other
            .publish("survives", Bytes::from_static(b"after"))
            .await
            .unwrap();
        other.flush().await.unwrap();
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(100), sub.next()).await
        {
            assert_eq!(message.payload, Bytes::from_static(b"after"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message after reconnect"
        );
    }
    second.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_everything() {
    let broker = start(config()).await;
    let bus = broker.bus();
    let nc = client(&broker).await;
    let mut local = bus.subscribe("x".into(), None).await.unwrap();
    bus.publish("x".into(), None, Vec::new(), Bytes::from_static(b"queued"))
        .await
        .unwrap();
    let stats = broker.stats();
    assert_eq!((stats.connections, stats.subscriptions), (1, 1));
    broker.shutdown().await;
    // What was queued is still delivered, then the subscription ends.
    assert_eq!(
        next(&mut local).await.payload,
        Bytes::from_static(b"queued")
    );
    assert!(
        tokio::time::timeout(WAIT, local.next())
            .await
            .expect("ends")
            .is_none()
    );
    assert!(!bus.is_connected());
    assert!(matches!(
        bus.publish("x".into(), None, Vec::new(), Bytes::new())
            .await,
        Err(BusError::Unavailable(_))
    ));
    assert!(matches!(
        bus.subscribe("x".into(), None).await,
        Err(BusError::Unavailable(_))
    ));
    assert!(matches!(bus.flush().await, Err(BusError::Unavailable(_))));
    assert!(
        wait_until(WAIT, || nc.connection_state()
            != async_nats::connection::State::Connected)
        .await,
        "TCP clients are disconnected"
    );
}

#[tokio::test]
async fn a_taken_port_suggests_the_nats_server_there() {
    let holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = holder.local_addr().unwrap().port();
    let err = EmbeddedBroker::start(BrokerConfig { port, ..config() }, None)
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::AddrInUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("-n nats://127.0.0.1:{port}")),
        "{message}"
    );
    assert!(message.contains("already in use"), "{message}");
    // A bound listener can be handed over instead.
    let broker = EmbeddedBroker::start(config(), Some(holder)).await.unwrap();
    assert_eq!(broker.local_addr().port(), port);
    assert_eq!(broker.client_url(), format!("nats://127.0.0.1:{port}"));
    broker.shutdown().await;
    // Invalid settings are refused before binding.
    let err = EmbeddedBroker::start(
        BrokerConfig {
            max_payload: 0,
            ..config()
        },
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BrokerError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_nats_server_config_file_drives_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("embedded.conf");
    std::fs::write(
        &path,
        "# nats.embedded.config\nlisten: 127.0.0.1:-1\nserver_name: \"lb-embedded\"\n\
         authorization {\n  token: \"3secret\"  // quoted: it starts with a digit\n}\n\
         max_payload = 2KB\nping_interval: \"1m\"\n",
    )
    .unwrap();
    let config = BrokerConfig::from_file(&path).unwrap();
    let broker = start(config).await;
    let nc = tokio::time::timeout(
        WAIT,
        ConnectOptions::with_token("3secret".into()).connect(broker.client_url()),
    )
    .await
    .expect("in time")
    .expect("token from the file works");
    let info = nc.server_info();
    assert_eq!(
        (info.max_payload, info.server_name.as_str()),
        (2048, "lb-embedded")
    );
    assert!(info.auth_required);
    std::fs::write(&path, "listen: 127.0.0.1:-1\ncluster { port: 6222 }\n").unwrap();
    let err = BrokerConfig::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("embedded.conf:2") && err.contains("`cluster`"),
        "{err}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn many_subscriptions_stay_fast() {
    let broker = start(config()).await;
    let bus = broker.bus();
    let mut subs = Vec::new();
    for i in 0..5000 {
        subs.push(bus.subscribe(format!("dev.{i}.temp"), None).await.unwrap());
    }
    let mut wild = bus.subscribe("dev.*.temp".into(), None).await.unwrap();
    let started = std::time::Instant::now();
    for i in 0..5000 {
        bus.publish(
            format!("dev.{i}.temp"),
            None,
            Vec::new(),
            Bytes::from_static(b"21"),
        )
        .await
        .unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(drain(&mut wild).len(), 5000);
    for sub in &mut subs {
        assert_eq!(drain(sub).len(), 1);
    }
    // A linear scan would be 25 million subject comparisons; the trie does this in milliseconds.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    drop(subs);
    assert_eq!(broker.stats().subscriptions, 1);
    broker.shutdown().await;
}
