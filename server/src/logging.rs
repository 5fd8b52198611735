//! Log output: `tracing` to stderr at the configured level (`RUST_LOG` overrides it).

use crate::config::Config;

/// Installs the global subscriber; safe to call more than once (later calls do nothing).
pub fn init(config: &Config) {
    let level = match config.logging.level.as_str() {
        "warning" => "warn",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal, so logs redirected to files or read by tools stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
