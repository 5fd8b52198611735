//! TLS and mutual TLS, end to end: certificates generated at test time (rcgen), the test server's proxy
//! terminating TLS in front of a real server.

mod common;

use common::*;
use liftbridge::testing::{ServerTls, TestServer};
use liftbridge::{ErrorKind, StartPosition, SubscribeOptions, TlsOptions};
use liftbridge_testkit::{ExtendedKeyUsagePurpose, Pki};

async fn tls_server(pki: &Pki, names: &[&str], client_ca: Option<&Pki>) -> TestServer {
    let (cert, key) = pki.issue(names, ExtendedKeyUsagePurpose::ServerAuth);
    TestServer::builder()
        .tls(ServerTls {
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            client_ca_pem: client_ca.map(|c| c.ca_pem.clone().into_bytes()),
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn tls_round_trip_with_a_private_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki, &["localhost", "127.0.0.1"], None).await;
    let client = server
        .client_builder()
        .tls(TlsOptions::new().ca_pem(pki.ca_pem.clone()))
        .connect()
        .await
        .unwrap();
    create(&client, "secure", 1).await;
    let ack = client.publish("secure", "over tls").await.unwrap();
    assert_eq!(ack.offset(), 0);
    let mut sub = client
        .subscribe(
            "secure",
            SubscribeOptions::new().start_at(StartPosition::Earliest),
        )
        .await
        .unwrap();
    assert_eq!(take(&mut sub, 1).await[0].value(), "over tls".as_bytes());
}

#[tokio::test]
async fn untrusted_server_is_a_tls_error() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = tls_server(&pki, &["127.0.0.1"], None).await;
    let err = server
        .client_builder()
        .tls(TlsOptions::new().ca_pem(other.ca_pem.clone()))
        .connect_timeout(std::time::Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    // A plain-text client cannot talk to it either.
    let err = server
        .client_builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(!matches!(err.kind(), ErrorKind::Config), "{err}");
}

#[tokio::test]
async fn server_name_override() {
    let pki = Pki::new();
    let server = tls_server(&pki, &["liftbridge.test"], None).await;
    let err = server
        .client_builder()
        .tls(TlsOptions::new().ca_pem(pki.ca_pem.clone()))
        .connect_timeout(std::time::Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Tls,
        "the certificate is not for 127.0.0.1: {err}"
    );
    let client = server
        .client_builder()
        .tls(
            TlsOptions::new()
                .ca_pem(pki.ca_pem.clone())
                .server_name("liftbridge.test"),
        )
        .connect()
        .await
        .unwrap();
    client.fetch_metadata().await.unwrap();
}

#[tokio::test]
async fn mutual_tls_from_files() {
    let pki = Pki::new();
    let clients = Pki::new();
    let server = tls_server(&pki, &["127.0.0.1"], Some(&clients)).await;

    let err = server
        .client_builder()
        .tls(TlsOptions::new().ca_pem(pki.ca_pem.clone()))
        .connect_timeout(std::time::Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Tls | ErrorKind::Unavailable),
        "no client certificate: {err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = clients.issue(&["client-1"], ExtendedKeyUsagePurpose::ClientAuth);
    let paths = [
        ("ca.pem", pki.ca_pem.clone()),
        ("client.pem", cert),
        ("client.key", key),
    ]
    .map(|(name, pem)| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    });
    let client = server
        .client_builder()
        .tls(
            TlsOptions::new()
                .ca_file(&paths[0])
                .client_identity_files(&paths[1], &paths[2]),
        )
        .connect()
        .await
        .unwrap();
    create(&client, "m", 1).await;
    client.publish("m", "hello").await.unwrap();
}

#[tokio::test]
async fn tls_configuration_errors_fail_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("not-a-key.pem");
    std::fs::write(
        &key_path,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let pki = Pki::new();
    let (cert, _) = pki.issue(&["c"], ExtendedKeyUsagePurpose::ClientAuth);
    let cert_path = dir.path().join("c.pem");
    std::fs::write(&cert_path, cert).unwrap();
    // Nothing listens on port 1: these must fail on the configuration, not on the network.
    let err = liftbridge::Client::builder(["127.0.0.1:1"])
        .tls(TlsOptions::new().client_identity_files(&cert_path, &key_path))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls);
    assert!(err.to_string().contains("private key"), "{err}");
    let err = liftbridge::Client::builder(["127.0.0.1:1"])
        .tls(TlsOptions::new().ca_pem("garbage"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls);
    let err = liftbridge::Client::builder(["127.0.0.1:1"])
        .tls(TlsOptions::new().ca_file(dir.path().join("missing.pem")))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls);
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
