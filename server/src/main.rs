//! `liftbridge`: flags → config → `Server::run`.

use anyhow::Context;
use clap::Parser;
use liftbridge_server::config::{Config, Flags};
use liftbridge_server::server::Server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let config = Config::load(&flags)?;
    liftbridge_server::logging::init(&config);
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    Server::run(listener, config, liftbridge_server::signal::shutdown()).await?;
    Ok(())
}
