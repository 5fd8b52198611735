//! Connects with TLS (optionally mutual TLS) and prints the cluster's brokers.
//!
//! ```sh
//! cargo run -p liftbridge-examples --bin tls -- 127.0.0.1:9292 ca.pem [client.pem client.key] [server-name]
//! ```
//!
//! Without a CA file the system roots are trusted. The server name defaults to the host dialled; give one
//! when connecting by IP address to a server whose certificate names a host.

use liftbridge::{Client, TlsOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9292".into());
    let mut tls = TlsOptions::new();
    if let Some(ca) = args.get(1) {
        tls = tls.ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (args.get(2), args.get(3)) {
        tls = tls.client_identity_files(cert, key);
    }
    if let Some(name) = args.get(4) {
        tls = tls.server_name(name);
    }
    let client = Client::builder([addr]).tls(tls).connect().await?;
    for broker in client.fetch_metadata().await?.brokers() {
        println!("broker {} at {}", broker.id(), broker.addr());
    }
    client.close().await;
    Ok(())
}
