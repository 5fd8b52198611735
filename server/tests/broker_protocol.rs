//! The embedded broker's client protocol, byte for byte, over raw TCP sockets: INFO, verbose `+OK`, pedantic
//! subject errors, split reads, pipelining, headers, no-responders, echo, UNSUB max, pings, auth, and every kind
//! of bad input (each gets nats-server's `-ERR` and a disconnect of that client only).

use std::time::Duration;

use liftbridge_server::broker::{BrokerAuth, BrokerConfig, EmbeddedBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::{broker_config as config, start_broker as start};

const WAIT: Duration = Duration::from_secs(10);

/// A client speaking the protocol by hand.
struct Raw {
    stream: TcpStream,
    /// Bytes received and not yet consumed by an `expect`.
    buf: Vec<u8>,
    /// The INFO line received on connect.
    info: serde_json::Value,
}

impl Raw {
    /// Connects and reads the INFO line.
    async fn connect(broker: &EmbeddedBroker) -> Raw {
        let stream = TcpStream::connect(broker.local_addr())
            .await
            .expect("connect");
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            info: serde_json::Value::Null,
        };
        let line = raw.expect("\r\n").await;
        let json = line
            .strip_prefix("INFO ")
            .unwrap_or_else(|| panic!("first line is not INFO: {line:?}"));
        raw.info = serde_json::from_str(json.trim_end()).expect("INFO is JSON");
        raw
    }

    /// Connects and sends `CONNECT <json>`, with `verbose` and `pedantic` off unless `json` sets them (as real
    /// clients do; nats-server's defaults for absent fields are on, see `defaults_are_nats_servers`).
    async fn connect_with(broker: &EmbeddedBroker, json: &str) -> Raw {
        let mut options: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).expect("test CONNECT options are JSON");
        options.entry("verbose").or_insert(false.into());
        options.entry("pedantic").or_insert(false.into());
        let mut raw = Raw::connect(broker).await;
        raw.send(&format!(
            "CONNECT {}\r\n",
            serde_json::Value::Object(options)
        ))
        .await;
        raw
    }

    async fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads until `needle` has arrived; returns everything up to and including it.
    async fn expect(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(at) = find(&self.buf, needle.as_bytes()) {
                let taken: Vec<u8> = self.buf.drain(..at + needle.len()).collect();
                return String::from_utf8_lossy(&taken).into_owned();
            }
            self.buf.reserve(65536);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {needle:?}; received so far: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                });
            if matches!(read, Ok(0) | Err(_)) {
                panic!(
                    "connection closed while waiting for {needle:?}; received: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads until the server closes the connection; returns what arrived before.
    async fn expect_closed(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.buf.reserve(65536);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "connection still open; received: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                });
            if matches!(read, Ok(0) | Err(_)) {
                let rest = std::mem::take(&mut self.buf);
                return String::from_utf8_lossy(&rest).into_owned();
            }
        }
    }

    /// Sends PING and returns everything received before the PONG.
    async fn sync(&mut self) -> String {
        self.send("PING\r\n").await;
        let got = self.expect("PONG\r\n").await;
        got.strip_suffix("PONG\r\n").unwrap_or(&got).to_string()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn info_describes_the_server() {
    let broker = start(BrokerConfig {
        max_payload: 65536,
        ..config()
    })
    .await;
    let raw = Raw::connect(&broker).await;
    let info = &raw.info;
    assert!(
        info["server_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{info}"
    );
    assert!(
        info["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.")),
        "{info}"
    );
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 65536);
    assert_eq!(info["port"], broker.local_addr().port());
    assert_eq!(info["host"], "127.0.0.1");
    assert!(info.get("auth_required").is_none(), "{info}");
    assert!(info["client_id"].as_u64().is_some_and(|id| id >= 1));
    broker.shutdown().await;
}

#[tokio::test]
async fn defaults_are_nats_servers() {
    // Before CONNECT, and for fields a CONNECT leaves out, nats-server's defaults apply: verbose and pedantic on.
    let broker = start(config()).await;
    let mut raw = Raw::connect(&broker).await;
    raw.send("SUB foo 1\r\nPUB foo 1\r\nx\r\n").await;
    assert_eq!(raw.sync().await, "+OK\r\n+OK\r\nMSG foo 1 1\r\nx\r\n");
    raw.send("CONNECT {}\r\nPUB foo.* 1\r\nx\r\n").await;
    assert_eq!(
        raw.sync().await,
        "+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\n"
    );
    raw.send("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPUB foo.* 1\r\nx\r\n")
        .await;
    assert_eq!(raw.sync().await, "");
    broker.shutdown().await;
}

#[tokio::test]
async fn verbose_acknowledges_every_operation() {
    let broker = start(config()).await;
    let mut raw = Raw::connect_with(&broker, r#"{"verbose":true}"#).await;
    assert_eq!(raw.expect("\r\n").await, "+OK\r\n");
    raw.send("SUB foo 1\r\n").await;
    assert_eq!(raw.expect("\r\n").await, "+OK\r\n");
    raw.send("PUB foo 5\r\nhello\r\n").await;
    // As from nats-server: the PUB's +OK comes before the message it delivers to the publisher itself.
    assert_eq!(
        raw.expect("hello\r\n").await,
        "+OK\r\nMSG foo 1 5\r\nhello\r\n"
    );
    raw.send("UNSUB 1\r\n").await;
    assert_eq!(raw.expect("\r\n").await, "+OK\r\n");
    // PING is answered with PONG, not +OK.
    assert_eq!(raw.sync().await, "");
    broker.shutdown().await;
}

#[tokio::test]
async fn subject_errors_keep_the_connection() {
    let broker = start(config()).await;
    // Not pedantic: structural errors are refused, partial wildcards are literals.
    let mut raw = Raw::connect_with(&broker, "{}").await;
    raw.send("SUB a..b 1\r\n").await;
    assert_eq!(raw.sync().await, "-ERR 'Invalid Subject'\r\n");
    raw.send("SUB a.>.b 2\r\n").await;
    assert_eq!(raw.sync().await, "-ERR 'Invalid Subject'\r\n");
    raw.send("SUB foo*.bar 3\r\nPUB foo*.bar 1\r\nx\r\n").await;
    assert_eq!(raw.sync().await, "MSG foo*.bar 3 1\r\nx\r\n");

    // Pedantic: a wildcard or empty token in a publish subject gets an -ERR (nats-server still routes the
    // message, matching the wildcard as a literal token); partial wildcards stay literals.
    let mut pedantic = Raw::connect_with(&broker, r#"{"pedantic":true}"#).await;
    pedantic.send("SUB foo*.bar 1\r\nSUB foo.* 2\r\n").await;
    assert_eq!(pedantic.sync().await, "");
    pedantic.send("PUB foo.* 1\r\nx\r\n").await;
    assert_eq!(
        pedantic.sync().await,
        "-ERR 'Invalid Publish Subject'\r\nMSG foo.* 2 1\r\nx\r\n"
    );
    pedantic
        .send("PUB foo..bar 1\r\nx\r\nPUB foo.bar 1\r\ny\r\n")
        .await;
    assert_eq!(
        pedantic.sync().await,
        "-ERR 'Invalid Publish Subject'\r\nMSG foo.bar 2 1\r\ny\r\n"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn commands_split_at_every_byte() {
    let broker = start(config()).await;
    let mut raw = Raw::connect(&broker).await;
    let block = "NATS/1.0\r\nK: v\r\n\r\n";
    let input = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true}}\r\nSUB split.* 42\r\nHPUB split.x reply {} {}\r\n{block}hello\r\nPUB split.y 3\r\nabc\r\nPING\r\n",
        block.len(),
        block.len() + 5
    );
    for byte in input.as_bytes() {
        raw.send_bytes(std::slice::from_ref(byte)).await;
        raw.stream.flush().await.expect("flush");
    }
    let got = raw.expect("PONG\r\n").await;
    assert_eq!(
        got,
        format!(
            "HMSG split.x 42 reply {} {}\r\n{block}hello\r\nMSG split.y 42 3\r\nabc\r\nPONG\r\n",
            block.len(),
            block.len() + 5
        )
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn pipelined_commands_in_one_write() {
    let broker = start(config()).await;
    let mut raw = Raw::connect(&broker).await;
    let mut input = String::from("CONNECT {\"verbose\":false}\r\nSUB p 1\r\nSUB p 2\r\n");
    for i in 0..100 {
        input.push_str(&format!("PUB p {}\r\n{i}\r\n", i.to_string().len()));
    }
    input.push_str("UNSUB 2\r\nPUB p 3\r\nend\r\nPING\r\n");
    raw.send(&input).await;
    let got = raw.expect("PONG\r\n").await;
    // Per subscription, in publish order (the order between two subscriptions of one message is unspecified,
    // as in nats-server).
    let mut per_sid: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    let mut lines = got.split("\r\n");
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("MSG p ") {
            let sid = rest.split(' ').next().unwrap();
            per_sid.entry(sid).or_default().push(lines.next().unwrap());
        } else {
            assert!(
                line == "PONG" || line.is_empty(),
                "unexpected line {line:?}"
            );
        }
    }
    let numbers: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let mut with_end: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let only_numbers = with_end.clone();
    with_end.push("end");
    assert_eq!(per_sid["1"], with_end);
    assert_eq!(per_sid["2"], only_numbers);
    assert!(got.ends_with("end\r\nPONG\r\n"), "{got:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn case_insensitive_operations_and_tabs() {
    let broker = start(config()).await;
    let mut raw = Raw::connect(&broker).await;
    raw.send("connect {\"verbose\":false}\r\nsub\tq  7\r\npub q\t2\r\nhi\r\nping extra\r\n")
        .await;
    assert_eq!(raw.expect("PONG\r\n").await, "MSG q 7 2\r\nhi\r\nPONG\r\n");
    broker.shutdown().await;
}

/// Sends `input` and expects `-ERR '<error>'` followed by a disconnect, while another client is unaffected.
async fn violation(broker: &EmbeddedBroker, input: &[u8], error: &str) {
    let mut bystander = Raw::connect_with(broker, "{}").await;
    bystander.send("SUB ok 1\r\n").await;
    bystander.sync().await;

    let mut raw = Raw::connect_with(broker, "{}").await;
    raw.send_bytes(input).await;
    let rest = raw.expect_closed().await;
    assert!(
        rest.ends_with(&format!("-ERR '{error}'\r\n")),
        "input {:?}: expected -ERR '{error}', got {rest:?}",
        String::from_utf8_lossy(&input[..input.len().min(80)])
    );

    bystander.send("PUB ok 2\r\nok\r\n").await;
    assert_eq!(bystander.sync().await, "MSG ok 1 2\r\nok\r\n");
}

#[tokio::test]
async fn bad_input_gets_an_error_and_a_disconnect() {
    let broker = start(BrokerConfig {
        max_payload: 1024,
        ..config()
    })
    .await;
    violation(&broker, b"GARBAGE\r\n", "Unknown Protocol Operation").await;
    violation(&broker, b"XYZ", "Unknown Protocol Operation").await;
    violation(
        &broker,
        &[0xff, 0x00, 0x13, b'\n'],
        "Unknown Protocol Operation",
    )
    .await;
    violation(
        &broker,
        b"PUB foo 3\r\nhello\r\n",
        "Unknown Protocol Operation",
    )
    .await;
    violation(&broker, b"PUB foo\r\n", "Unknown Protocol Operation").await;
    violation(&broker, b"PUB foo -5\r\n", "Unknown Protocol Operation").await;
    violation(&broker, b"SUB\r\n", "Unknown Protocol Operation").await;
    violation(&broker, b"UNSUB 1 many\r\n", "Unknown Protocol Operation").await;
    violation(
        &broker,
        b"CONNECT {not json}\r\n",
        "Unknown Protocol Operation",
    )
    .await;
    violation(
        &broker,
        b"HPUB foo 6 5\r\nabcde\r\n",
        "Unknown Protocol Operation",
    )
    .await;
    violation(&broker, b"PUB foo 2048\r\n", "Maximum Payload Violation").await;
    violation(
        &broker,
        b"HPUB foo 12 4096\r\n",
        "Maximum Payload Violation",
    )
    .await;
    let mut long = b"PUB ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    violation(&broker, &long, "Maximum Control Line Exceeded").await;
    long.extend_from_slice(b" 1\r\nx\r\n");
    violation(&broker, &long, "Maximum Control Line Exceeded").await;
    // A control line of exactly the limit is fine.
    let mut raw = Raw::connect_with(&broker, "{}").await;
    let subject = "s".repeat(4096 - "SUB  1".len());
    raw.send(&format!("SUB {subject} 1\r\n")).await;
    assert_eq!(raw.sync().await, "");
    assert_eq!(broker.stats().connections, 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn headers_reach_header_clients_and_are_stripped_for_others() {
    let broker = start(config()).await;
    let mut with = Raw::connect_with(&broker, r#"{"headers":true}"#).await;
    let mut without = Raw::connect_with(&broker, "{}").await;
    with.send("SUB h 1\r\n").await;
    without.send("SUB h 2\r\n").await;
    with.sync().await;
    without.sync().await;
    let block = "NATS/1.0\r\nTrace-Id: 7\r\n\r\n";
    let mut publisher = Raw::connect_with(&broker, r#"{"headers":true}"#).await;
    publisher
        .send(&format!(
            "HPUB h {} {}\r\n{block}body\r\n",
            block.len(),
            block.len() + 4
        ))
        .await;
    publisher.sync().await;
    assert_eq!(
        with.sync().await,
        format!(
            "HMSG h 1 {} {}\r\n{block}body\r\n",
            block.len(),
            block.len() + 4
        )
    );
    assert_eq!(without.sync().await, "MSG h 2 4\r\nbody\r\n");
    broker.shutdown().await;
}

#[tokio::test]
async fn no_responders_status_for_requesters_that_ask() {
    let broker = start(config()).await;
    let mut raw = Raw::connect_with(&broker, r#"{"headers":true,"no_responders":true}"#).await;
    raw.send("SUB _INBOX.abc.* 9\r\nPUB nobody.home _INBOX.abc.1 2\r\nhi\r\n")
        .await;
    assert_eq!(
        raw.sync().await,
        "HMSG _INBOX.abc.1 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    );
    // Without no_responders (or without headers) nothing is sent.
    let mut plain = Raw::connect_with(&broker, r#"{"headers":true}"#).await;
    plain
        .send("SUB _INBOX.def.* 9\r\nPUB nobody.home _INBOX.def.1 2\r\nhi\r\n")
        .await;
    assert_eq!(plain.sync().await, "");
    // With a responder there is no 503.
    let mut responder = Raw::connect_with(&broker, "{}").await;
    responder.send("SUB svc 1\r\n").await;
    responder.sync().await;
    raw.send("PUB svc _INBOX.abc.2 2\r\nhi\r\n").await;
    assert_eq!(raw.sync().await, "");
    assert_eq!(responder.sync().await, "MSG svc 1 _INBOX.abc.2 2\r\nhi\r\n");
    broker.shutdown().await;
}

#[tokio::test]
async fn echo_false_skips_own_subscriptions() {
    let broker = start(config()).await;
    let mut quiet = Raw::connect_with(&broker, r#"{"echo":false}"#).await;
    let mut other = Raw::connect_with(&broker, "{}").await;
    quiet.send("SUB e 1\r\n").await;
    other.send("SUB e 1\r\n").await;
    quiet.sync().await;
    other.sync().await;
    quiet.send("PUB e 1\r\nx\r\n").await;
    assert_eq!(quiet.sync().await, "");
    assert_eq!(other.sync().await, "MSG e 1 1\r\nx\r\n");
    other.send("PUB e 1\r\ny\r\n").await;
    assert_eq!(other.sync().await, "MSG e 1 1\r\ny\r\n");
    assert_eq!(quiet.sync().await, "MSG e 1 1\r\ny\r\n");
    broker.shutdown().await;
}

#[tokio::test]
async fn unsub_with_max_delivers_exactly_max() {
    let broker = start(config()).await;
    let mut raw = Raw::connect_with(&broker, "{}").await;
    raw.send("SUB m 1\r\nUNSUB 1 2\r\nPUB m 1\r\na\r\nPUB m 1\r\nb\r\nPUB m 1\r\nc\r\n")
        .await;
    assert_eq!(raw.sync().await, "MSG m 1 1\r\na\r\nMSG m 1 1\r\nb\r\n");
    assert_eq!(broker.stats().subscriptions, 0);
    // A limit already reached unsubscribes at once; the sid can then be reused.
    raw.send("SUB n 5\r\nPUB n 1\r\na\r\nUNSUB 5 1\r\nPUB n 1\r\nb\r\nSUB n 5\r\nPUB n 1\r\nc\r\n")
        .await;
    assert_eq!(raw.sync().await, "MSG n 5 1\r\na\r\nMSG n 5 1\r\nc\r\n");
    broker.shutdown().await;
}

#[tokio::test]
async fn queue_group_members_share_messages() {
    let broker = start(config()).await;
    let mut a = Raw::connect_with(&broker, "{}").await;
    let mut b = Raw::connect_with(&broker, "{}").await;
    a.send("SUB work g 1\r\nSUB work 2\r\n").await;
    b.send("SUB work g 1\r\nSUB work.* g 3\r\n").await;
    a.sync().await;
    b.sync().await;
    let mut publisher = Raw::connect_with(&broker, "{}").await;
    let mut input = String::new();
    for _ in 0..200 {
        input.push_str("PUB work 1\r\nx\r\n");
    }
    publisher.send(&input).await;
    publisher.sync().await;
    let got_a = a.sync().await;
    let got_b = b.sync().await;
    let group_a = got_a.matches("MSG work 1 ").count();
    let plain_a = got_a.matches("MSG work 2 ").count();
    let group_b = got_b.matches("MSG work 1 ").count();
    assert_eq!(plain_a, 200);
    assert_eq!(group_a + group_b, 200, "each message once per group");
    assert!(
        group_a > 0 && group_b > 0,
        "both members get work: {group_a} / {group_b}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn silent_clients_are_dropped_as_stale() {
    let broker = start(BrokerConfig {
        ping_interval: Duration::from_millis(250),
        ..config()
    })
    .await;
    let mut lively = Raw::connect_with(&broker, "{}").await;
    let mut silent = Raw::connect_with(&broker, "{}").await;
    // The lively client answers two pings.
    for _ in 0..3 {
        lively.expect("PING\r\n").await;
        lively.send("PONG\r\n").await;
    }
    let rest = silent.expect_closed().await;
    assert_eq!(rest, "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n");
    lively.expect("PING\r\n").await;
    lively.send("PONG\r\n").await;
    assert_eq!(lively.sync().await.replace("PING\r\n", ""), "");
    broker.shutdown().await;
}

#[tokio::test]
async fn auth_is_enforced_on_the_wire() {
    let broker = start(BrokerConfig {
        auth: Some(BrokerAuth::Token("s3cret".into())),
        auth_timeout: Duration::from_millis(500),
        ..config()
    })
    .await;
    let mut raw = Raw::connect(&broker).await;
    assert_eq!(raw.info["auth_required"], true);
    // Operations before CONNECT.
    raw.send("SUB x 1\r\n").await;
    assert_eq!(
        raw.expect_closed().await,
        "-ERR 'Authorization Violation'\r\n"
    );
    // Bad token.
    let mut raw = Raw::connect_with(&broker, r#"{"auth_token":"nope"}"#).await;
    assert_eq!(
        raw.expect_closed().await,
        "-ERR 'Authorization Violation'\r\n"
    );
    // No CONNECT at all.
    let mut raw = Raw::connect(&broker).await;
    assert_eq!(
        raw.expect_closed().await,
        "-ERR 'Authentication Timeout'\r\n"
    );
    // Good token.
    let mut raw = Raw::connect_with(&broker, r#"{"auth_token":"s3cret","verbose":true}"#).await;
    assert_eq!(raw.expect("\r\n").await, "+OK\r\n");
    raw.send("SUB x 1\r\nPUB x 1\r\nz\r\n").await;
    assert_eq!(raw.sync().await, "+OK\r\n+OK\r\nMSG x 1 1\r\nz\r\n");
    broker.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_frees_the_port() {
    let broker = start(config()).await;
    let addr = broker.local_addr();
    let mut raw = Raw::connect_with(&broker, "{}").await;
    raw.sync().await;
    broker.shutdown().await;
    assert_eq!(raw.expect_closed().await, "");
    let listener = tokio::net::TcpListener::bind(addr).await;
    assert!(
        listener.is_ok(),
        "port {addr} is free after shutdown: {listener:?}"
    );
}

#[tokio::test]
async fn connection_limit() {
    let broker = start(BrokerConfig {
        max_connections: 1,
        ..config()
    })
    .await;
    let mut first = Raw::connect_with(&broker, "{}").await;
    first.sync().await;
    let mut second = TcpStream::connect(broker.local_addr())
        .await
        .expect("connect");
    let mut got = String::new();
    tokio::time::timeout(WAIT, second.read_to_string(&mut got))
        .await
        .expect("closed in time")
        .expect("read");
    assert_eq!(got, "-ERR 'maximum connections exceeded'\r\n");
    first.sync().await;
    broker.shutdown().await;
}
