//! The config loader against real Liftbridge configuration files (tests/data/liftbridge-configs, from
//! Liftbridge's own test suite) and against the environment and flag overrides.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use liftbridge_server::config::{Config, ConfigError, Flags, SyncPolicyKind, source};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/liftbridge-configs")
        .join(name)
}

fn load(name: &str) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    source::apply_file(&mut config, &data(name))?;
    Ok(config)
}

#[test]
fn full_yaml_loads_every_key() {
    let c = load("full.yaml").expect("full.yaml loads");
    assert_eq!(c.listen.as_deref(), Some("localhost:9293"));
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(c.port, 5050);
    assert_eq!(c.data_dir, Some(PathBuf::from("/foo")));
    assert_eq!(c.metadata_cache_max_age, Duration::from_secs(60));
    assert_eq!(c.batch.max_messages, 10);
    assert_eq!(c.batch.max_time, Duration::from_secs(1));
    assert_eq!(c.logging.level, "debug");
    assert!(c.logging.recovery && c.logging.raft && c.logging.nats);
    assert_eq!(c.streams.retention_max_bytes, 1024);
    assert_eq!(c.streams.retention_max_messages, 100);
    assert_eq!(c.streams.retention_max_age, Duration::from_secs(3600));
    assert_eq!(c.streams.cleaner_interval, Duration::from_secs(60));
    assert_eq!(c.streams.segment_max_bytes, 64);
    assert_eq!(c.streams.segment_max_age, Some(Duration::from_secs(60)));
    assert!(c.streams.compact_enabled);
    assert_eq!(c.streams.compact_max_goroutines, 2);
    assert_eq!(c.clustering.server_id.as_deref(), Some("foo"));
    assert_eq!(c.clustering.namespace, "bar");
    assert_eq!(c.clustering.raft_snapshot_retain, 10);
    assert_eq!(c.clustering.raft_snapshot_threshold, 100);
    assert_eq!(c.clustering.raft_cache_size, 5);
    assert_eq!(c.clustering.raft_bootstrap_peers, vec!["a", "b"]);
    assert_eq!(c.clustering.replica_max_lag_time, Duration::from_secs(60));
    assert_eq!(
        c.clustering.replica_max_leader_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(c.clustering.replica_max_idle_wait, Duration::from_secs(2));
    assert_eq!(c.clustering.replica_fetch_timeout, Duration::from_secs(3));
    assert_eq!(c.clustering.min_insync_replicas, 1);
    assert_eq!(c.clustering.replication_max_bytes, 1024);
    assert!(c.activity.enabled);
    assert_eq!(c.activity.publish_timeout, Duration::from_secs(60));
    assert_eq!(c.activity.publish_ack_policy, "leader");
    assert!(c.nats.embedded);
    assert_eq!(c.nats.embedded_config, Some(PathBuf::from("nats.conf")));
    assert_eq!(c.nats.servers, vec!["nats://localhost:4222"]);
    assert_eq!(c.nats.user.as_deref(), Some("user"));
    assert_eq!(c.nats.password.as_deref(), Some("pass"));
    assert_eq!(c.cursors.stream_partitions, 2);
    assert_eq!(c.cursors.stream_replication_factor, 3);
    assert_eq!(c.cursors.stream_auto_pause_time, Duration::from_secs(60));
    assert_eq!(c.groups.consumer_timeout, Duration::from_secs(60));
    assert_eq!(c.groups.coordinator_timeout, Duration::from_secs(120));
}

#[test]
fn simple_yaml_with_document_marker_loads() {
    let c = load("simple.yaml").expect("simple.yaml loads");
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(c.port, 5050);
    assert_eq!(c.logging.level, "debug");
    assert!(c.logging.recovery);
    assert_eq!(c.streams.retention_max_bytes, 1024);
}

#[test]
fn host_and_listen_load() {
    let c = load("host.yaml").unwrap();
    assert_eq!((c.host.as_str(), c.port), ("192.168.0.1", 4222));
    let c = load("listen.yaml").unwrap();
    assert_eq!(c.listen_addr(), "192.168.0.1:4222");
}

#[test]
fn standalone_tls_and_nats_auth_load() {
    let c = load("standalone.yaml").unwrap();
    assert!(c.clustering.raft_bootstrap_seed);
    assert_eq!(
        c.nats.embedded_config,
        Some(PathBuf::from("nats-server.conf"))
    );
    assert!(c.nats.use_embedded());
    assert!(c.logging.nats);

    let c = load("tls.yaml").unwrap();
    assert_eq!(
        c.tls.key,
        Some(PathBuf::from("./configs/certs/server/server-key.pem"))
    );
    assert_eq!(
        c.tls.cert,
        Some(PathBuf::from("./configs/certs/server/server-cert.pem"))
    );
    assert!(c.tls.client_auth_enabled);
    assert_eq!(
        c.tls.client_auth_ca,
        Some(PathBuf::from("./configs/certs/ca-cert.pem"))
    );
    assert_eq!(c.logging.level, "error");

    let c = load("nats-auth.yaml").unwrap();
    assert_eq!(c.nats.user.as_deref(), Some("admin"));
    assert_eq!(c.nats.password.as_deref(), Some("password"));
}

#[test]
fn unknown_key_is_refused_by_name() {
    let err = load("unknown-setting.yaml").unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, .. } if key == "foo.bar.baz"),
        "{err}"
    );
    assert!(err.to_string().contains("foo.bar.baz"));
}

#[test]
fn invalid_listen_is_refused_by_name() {
    let err = load("invalid-listen.yaml").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("listen") && text.contains("4222x"), "{text}");
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        ("port: 70000", "port"),
        ("port: abc", "port"),
        ("streams.retention.max.age: 10", "streams.retention.max.age"),
        (
            "streams.retention.max.age: 10 parsecs",
            "streams.retention.max.age",
        ),
        (
            "streams.retention.max.bytes: -1",
            "streams.retention.max.bytes",
        ),
        ("logging.level: loud", "logging.level"),
        ("streams.sync.policy: sometimes", "streams.sync.policy"),
        (
            "clustering.min.insync.replicas: 0",
            "clustering.min.insync.replicas",
        ),
        ("clustering.namespace: a.b", "clustering.namespace"),
        ("nats.embedded: maybe", "nats.embedded"),
    ];
    for (yaml, key) in cases {
        let mut c = Config::default();
        let err = source::apply_yaml(&mut c, yaml, "test").unwrap_err();
        assert!(err.to_string().contains(key), "{yaml}: {err}");
    }
    let mut c = Config::default();
    assert!(matches!(
        source::apply_yaml(&mut c, "- a\n- b", "test"),
        Err(ConfigError::Yaml { .. })
    ));
    assert!(matches!(
        source::apply_yaml(&mut c, "a: [", "test"),
        Err(ConfigError::Yaml { .. })
    ));
    assert!(
        source::apply_yaml(&mut c, "", "test").is_ok(),
        "an empty file is an empty config"
    );
}

#[test]
fn our_sync_keys_load() {
    let mut c = Config::default();
    assert_eq!(c.streams.sync_policy, SyncPolicyKind::Interval);
    source::apply_yaml(
        &mut c,
        "streams:\n  sync:\n    policy: always\n    interval: 250ms\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.streams.sync_policy, SyncPolicyKind::Always);
    assert_eq!(c.streams.sync_interval, Duration::from_millis(250));
}

#[test]
fn runtime_worker_threads_loads_and_refuses_bad_counts() {
    let mut c = Config::default();
    assert_eq!(c.worker_threads, None);
    source::apply_yaml(&mut c, "runtime.worker.threads: 1\n", "t").unwrap();
    assert_eq!(c.worker_threads, Some(1));
    source::apply_yaml(&mut c, "runtime:\n  worker:\n    threads: 0\n", "t").unwrap();
    assert_eq!(c.worker_threads, None, "0 means one per CPU");
    source::apply_env(
        &mut c,
        [("LIFTBRIDGE_RUNTIME_WORKER_THREADS".into(), "3".into())],
    )
    .unwrap();
    assert_eq!(c.worker_threads, Some(3));
    source::apply_yaml(&mut c, "runtime.worker.threads: 1024\n", "t").unwrap();
    assert_eq!(c.worker_threads, Some(1024));
    source::apply_yaml(&mut c, "runtime.worker.threads: 3\n", "t").unwrap();
    let err = source::apply_env(
        &mut c,
        [("LIFTBRIDGE_RUNTIME_WORKER_THREADS".into(), "two".into())],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("environment variable LIFTBRIDGE_RUNTIME_WORKER_THREADS"),
        "{err}"
    );
    for bad in ["-1", "1025", "100000", "many"] {
        let err = source::apply_yaml(&mut c, &format!("runtime.worker.threads: {bad}\n"), "t")
            .unwrap_err();
        assert!(
            err.to_string().contains("runtime.worker.threads"),
            "{bad}: {err}"
        );
    }
    assert_eq!(c.worker_threads, Some(3), "a refused value changes nothing");
}

#[test]
fn environment_overrides_nested_keys() {
    let mut c = Config::default();
    let vars = [
        ("LIFTBRIDGE_CLUSTERING_SERVER_ID", "env-id"),
        ("LIFTBRIDGE_STREAMS_RETENTION_MAX_AGE", "2h"),
        ("LIFTBRIDGE_NATS_SERVERS", "nats://a:1,nats://b:2"),
        ("LIFTBRIDGE_STREAMS_COMPACT_ENABLED", "true"),
        ("LIFTBRIDGE_ENCRYPTION_KEY", "not-a-setting"),
        ("PATH", "/bin"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    source::apply_env(&mut c, vars).unwrap();
    assert_eq!(c.clustering.server_id.as_deref(), Some("env-id"));
    assert_eq!(c.streams.retention_max_age, Duration::from_secs(7200));
    assert_eq!(c.nats.servers, vec!["nats://a:1", "nats://b:2"]);
    assert!(c.streams.compact_enabled);

    let err = source::apply_env(&mut c, [("LIFTBRIDGE_PORT".into(), "x".into())]).unwrap_err();
    assert!(err.to_string().contains("LIFTBRIDGE_PORT"), "{err}");
}

#[test]
fn flags_override_file() {
    let flags = Flags::try_parse_from([
        "liftbridge",
        "-c",
        data("full.yaml").to_str().unwrap(),
        "-p",
        "7000",
        "-d",
        "/data",
        "--id",
        "flag-id",
        "-n",
        "nats://x:4222,nats://y:4222",
        "--raft-bootstrap-seed",
        "-l",
        "warn",
    ])
    .unwrap();
    let mut c = Config::default();
    source::apply_file(&mut c, flags.config.as_ref().unwrap()).unwrap();
    flags.apply(&mut c).unwrap();
    assert_eq!(c.port, 7000);
    assert_eq!(c.data_dir, Some(PathBuf::from("/data")));
    assert_eq!(c.clustering.server_id.as_deref(), Some("flag-id"));
    assert_eq!(c.nats.servers, vec!["nats://x:4222", "nats://y:4222"]);
    assert!(c.clustering.raft_bootstrap_seed);
    assert_eq!(c.logging.level, "warn");
    // The file's values survive where no flag was given.
    assert_eq!(c.host, "0.0.0.0");
}

#[test]
fn defaults_match_liftbridge() {
    let c = Config::default();
    assert_eq!(c.port, 9292);
    assert_eq!(c.listen_addr(), "0.0.0.0:9292");
    assert_eq!(
        c.data_dir(),
        PathBuf::from("/tmp/liftbridge/liftbridge-default")
    );
    assert_eq!(c.batch.max_messages, 1024);
    assert_eq!(c.streams.segment_max_bytes, 268_435_456);
    assert_eq!(c.segment_max_age(), Duration::from_secs(168 * 3600));
    assert_eq!(c.clustering.replication_max_bytes, 1_048_576);
    assert!(
        c.nats.use_embedded(),
        "no NATS servers configured means the embedded broker"
    );
}
