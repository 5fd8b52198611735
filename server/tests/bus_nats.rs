//! The async-nats Bus against a real nats-server.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use liftbridge_server::bus::nats::NatsOptions;
use liftbridge_server::bus::{Bus, BusError, NatsBus};
use support::{NatsServer, wait_until};

const WAIT: Duration = Duration::from_secs(10);

async fn connect(server: &NatsServer) -> NatsBus {
    NatsBus::connect(&NatsOptions {
        servers: vec![server.url.clone()],
        ..Default::default()
    })
    .await
    .expect("connect")
}

#[tokio::test]
async fn publish_subscribe_with_headers_and_reply() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let mut sub = bus.subscribe("orders.*".into(), None).await.unwrap();
    bus.flush().await.unwrap();
    bus.publish(
        "orders.new".into(),
        Some("reply.here".into()),
        vec![("k".into(), "v".into())],
        Bytes::from_static(b"hello"),
    )
    .await
    .unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.subject, "orders.new");
    assert_eq!(msg.reply.as_deref(), Some("reply.here"));
    assert_eq!(msg.headers, vec![("k".to_string(), "v".to_string())]);
    assert_eq!(msg.payload, Bytes::from_static(b"hello"));
}

#[tokio::test]
async fn queue_group_delivers_once() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let mut a = bus
        .subscribe("work".into(), Some("g".into()))
        .await
        .unwrap();
    let mut b = bus
        .subscribe("work".into(), Some("g".into()))
        .await
        .unwrap();
    bus.flush().await.unwrap();
    for i in 0..100u32 {
        bus.publish("work".into(), None, vec![], Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    bus.flush().await.unwrap();
    let mut seen = 0;
    while seen < 100 {
        tokio::select! {
            Some(_) = a.next() => seen += 1,
            Some(_) = b.next() => seen += 1,
            _ = tokio::time::sleep(WAIT) => panic!("only {seen} of 100 delivered"),
        }
    }
    // Nothing is delivered twice: both subscriptions are now empty.
    let extra = tokio::time::timeout(Duration::from_millis(200), async {
        tokio::select! { m = a.next() => m, m = b.next() => m }
    })
    .await;
    assert!(extra.is_err(), "a message was delivered twice");
}

#[tokio::test]
async fn request_reply_timeout_and_no_responders() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let mut service = bus.subscribe("svc.echo".into(), None).await.unwrap();
    let responder = bus.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(reply) = m.reply {
                responder
                    .publish(reply, None, vec![], m.payload)
                    .await
                    .unwrap();
            }
        }
    });
    bus.flush().await.unwrap();
    let reply = bus
        .request("svc.echo".into(), Bytes::from_static(b"ping"), WAIT)
        .await
        .unwrap();
    assert_eq!(reply.payload, Bytes::from_static(b"ping"));

    let err = bus
        .request("svc.nobody".into(), Bytes::new(), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BusError::NoResponders(_) | BusError::Timeout { .. }),
        "{err}"
    );

    let _silent = bus.subscribe("svc.silent".into(), None).await.unwrap();
    bus.flush().await.unwrap();
    let err = bus
        .request(
            "svc.silent".into(),
            Bytes::new(),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn invalid_subjects_are_refused() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    for bad in ["", "a..b", "a b", "a.>.b"] {
        let err = bus
            .publish(bad.into(), None, vec![], Bytes::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[tokio::test]
async fn outage_is_reported_then_recovered() {
    let mut server = NatsServer::start();
    let port = server.port;
    let bus = connect(&server).await;
    assert!(bus.is_connected());
    server.stop();
    assert!(
        wait_until(WAIT, || !bus.is_connected()).await,
        "disconnect not noticed"
    );
    let err = bus
        .publish("x".into(), None, vec![], Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Unavailable(_)), "{err}");

    let _server = NatsServer::start_on(Some(port));
    assert!(
        wait_until(Duration::from_secs(20), || bus.is_connected()).await,
        "no reconnect"
    );
    let mut sub = bus.subscribe("after".into(), None).await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("after".into(), None, vec![], Bytes::from_static(b"ok"))
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.payload, Bytes::from_static(b"ok"));
}

#[tokio::test]
async fn connect_failure_names_the_url() {
    let server = NatsServer::start();
    let url = server.url.clone();
    drop(server);
    let err = NatsBus::connect(&NatsOptions {
        servers: vec![url.clone()],
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
}
