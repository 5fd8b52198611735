//! TLS on the gRPC API (`tls.*`): server certificates, mutual TLS, and configuration mistakes that must stop the
//! server with a message naming the problem. Certificates are generated at test time (rcgen).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use liftbridge_proto::pb;
use liftbridge_proto::pb::api_client::ApiClient;
use liftbridge_server::config::{Config, TlsConfig};
use liftbridge_server::server::Server;
use liftbridge_testkit::{ExtendedKeyUsagePurpose, Pki};
use support::{TestServer, create_request};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Server TLS settings with a fresh certificate for `localhost` signed by `pki`.
fn server_tls(pki: &Pki, dir: &Path) -> TlsConfig {
    let (cert, key) = pki.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    TlsConfig {
        cert: Some(write(dir, "server.pem", &cert)),
        key: Some(write(dir, "server.key", &key)),
        ..TlsConfig::default()
    }
}

async fn tls_client(
    server: &TestServer,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> Result<ApiClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(ApiClient::new(channel))
}

/// Whether a connection attempt got no API: the connection or its first call failed.
async fn refused(connection: Result<ApiClient<Channel>, tonic::transport::Error>) -> bool {
    match connection {
        Err(_) => true,
        Ok(mut client) => client
            .fetch_metadata(pb::FetchMetadataRequest::default())
            .await
            .is_err(),
    }
}

async fn publish_one(client: &mut ApiClient<Channel>) -> Result<i64, tonic::Status> {
    client
        .create_stream(create_request("secure", "secure", 1))
        .await?;
    let ack = client
        .publish(pb::PublishRequest {
            stream: "secure".into(),
            value: bytes::Bytes::from_static(b"over tls"),
            ack_policy: pb::AckPolicy::Leader as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .ack
        .expect("an ack");
    Ok(ack.offset)
}

#[tokio::test]
async fn publish_over_tls_and_plain_text_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let tls = server_tls(&pki, dir.path());
    let server = TestServer::start_standalone(&dir.path().join("data"), |c| c.tls = tls).await;

    let mut client = tls_client(&server, &pki.ca_pem, None).await.unwrap();
    assert_eq!(publish_one(&mut client).await.unwrap(), 0);

    // A plain-text HTTP/2 client gets no API from a TLS server.
    let plain = ApiClient::connect(format!("http://{}", server.addr)).await;
    let plain_refused = refused(plain).await;
    assert!(
        plain_refused,
        "plain text must not reach a TLS server's API"
    );

    // A client that does not trust the server's CA fails the handshake.
    let other = Pki::new();
    let untrusted = refused(tls_client(&server, &other.ca_pem, None).await).await;
    assert!(
        untrusted,
        "a server certificate from an unknown CA must be refused"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_pki = Pki::new();
    let client_pki = Pki::new();
    let mut tls = server_tls(&server_pki, dir.path());
    tls.client_auth_enabled = true;
    tls.client_auth_ca = Some(write(dir.path(), "clients-ca.pem", &client_pki.ca_pem));
    let server = TestServer::start_standalone(&dir.path().join("data"), |c| c.tls = tls).await;

    // Without a client certificate: no API.
    let anonymous = refused(tls_client(&server, &server_pki.ca_pem, None).await).await;
    assert!(
        anonymous,
        "mutual TLS must refuse a client without a certificate"
    );

    // With a certificate signed by another CA: no API.
    let stranger = Pki::new().issue(&["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let foreign = refused(tls_client(&server, &server_pki.ca_pem, Some(stranger)).await).await;
    assert!(
        foreign,
        "mutual TLS must refuse a certificate from an unknown CA"
    );

    // With a certificate from the configured CA: the API works.
    let identity = client_pki.issue(&["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let mut client = tls_client(&server, &server_pki.ca_pem, Some(identity))
        .await
        .unwrap();
    assert_eq!(publish_one(&mut client).await.unwrap(), 0);
}

/// Runs a server with `tls` and returns the error it stops with (it must not start).
async fn start_error(tls: TlsConfig) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().join("data")),
        host: "127.0.0.1".into(),
        tls,
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        Server::run(listener, config, std::future::pending()),
    )
    .await
    .expect("a bad TLS setting stops the server at once");
    result
        .expect_err("the server must refuse this TLS setting")
        .to_string()
}

#[tokio::test]
async fn bad_tls_settings_stop_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let good = server_tls(&pki, dir.path());

    let only_cert = TlsConfig {
        cert: good.cert.clone(),
        ..TlsConfig::default()
    };
    assert!(start_error(only_cert).await.contains("tls.key"));

    let only_key = TlsConfig {
        key: good.key.clone(),
        ..TlsConfig::default()
    };
    assert!(start_error(only_key).await.contains("tls.cert"));

    let missing = TlsConfig {
        cert: Some(dir.path().join("nope.pem")),
        ..good.clone()
    };
    let message = start_error(missing).await;
    assert!(
        message.contains("tls.cert") && message.contains("nope.pem"),
        "{message}"
    );

    let not_pem = TlsConfig {
        key: Some(write(dir.path(), "garbage.key", "not a key")),
        ..good.clone()
    };
    let message = start_error(not_pem).await;
    assert!(
        message.contains("tls.key") && message.contains("no PEM"),
        "{message}"
    );

    let no_ca = TlsConfig {
        client_auth_enabled: true,
        ..good.clone()
    };
    assert!(start_error(no_ca).await.contains("tls.client.auth.ca"));

    let auth_without_tls = TlsConfig {
        client_auth_enabled: true,
        client_auth_ca: Some(write(dir.path(), "ca.pem", &pki.ca_pem)),
        ..TlsConfig::default()
    };
    assert!(
        start_error(auth_without_tls)
            .await
            .contains("needs tls.cert")
    );

    let authz = TlsConfig {
        client_authz_enabled: true,
        ..good
    };
    assert!(start_error(authz).await.contains("not implemented"));
}
