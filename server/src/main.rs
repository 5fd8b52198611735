//! `liftbridge`: flags → config → runtime → `Server::run`.

use anyhow::Context;
use clap::Parser;
use liftbridge_server::config::{Config, Flags};
use liftbridge_server::server::Server;

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let config = Config::load(&flags)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        liftbridge_server::logging::init(&config);
        let addr = config.listen_addr();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Server::run(listener, config, liftbridge_server::signal::shutdown()).await?;
        Ok(())
    })
}
