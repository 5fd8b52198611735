//! One lazily connected HTTP/2 channel per server address, shared by every RPC and stream to that server.
//!
//! A tonic `Channel` reconnects by itself, so a channel is created once per address and kept: after a server
//! restart the next request dials again. Channels are created on the caller's tokio runtime (no runtime of our
//! own) the first time an address is used. This module also tracks, per address, whether the last request
//! reached the server, to report [`Event::Connected`] / [`Event::Disconnected`] transitions.

use std::collections::HashMap;
use std::time::Duration;

use liftbridge_proto::pb::api_client::ApiClient;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;

/// The port Liftbridge listens on by default.
pub const DEFAULT_PORT: u16 = 9292;

/// Settings every channel is built with.
#[derive(Debug, Clone)]
pub(crate) struct ChannelSettings {
    pub(crate) tls: Option<ClientTlsConfig>,
    pub(crate) connect_timeout: Duration,
    pub(crate) keepalive_interval: Option<Duration>,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) max_recv_message_size: usize,
    pub(crate) max_send_message_size: usize,
}

/// The per-address channels.
#[derive(Debug)]
pub(crate) struct Connections {
    settings: ChannelSettings,
    /// `host:port` → channel. Never shrinks: a cluster has few servers, and a channel to a dead one costs
    /// nothing until used.
    channels: Mutex<HashMap<String, Channel>>,
    /// `host:port` → whether the last request reached it; drives the connection events.
    reachable: Mutex<HashMap<String, bool>>,
    events: broadcast::Sender<Event>,
}

impl Connections {
    pub(crate) fn new(settings: ChannelSettings, events: broadcast::Sender<Event>) -> Self {
        Connections {
            settings,
            channels: Mutex::new(HashMap::new()),
            reachable: Mutex::new(HashMap::new()),
            events,
        }
    }

    /// The shared channel to `addr` (`host:port`), created on first use.
    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock();
        match channels.get(addr) {
            Some(c) => Ok(c.clone()),
            None => {
                let c = self.endpoint(addr)?.connect_lazy();
                channels.insert(addr.to_string(), c.clone());
                Ok(c)
            }
        }
    }

    /// An API client for `addr` (`host:port`), over the shared channel.
    pub(crate) fn api(&self, addr: &str) -> Result<ApiClient<Channel>> {
        Ok(ApiClient::new(self.channel(addr)?)
            .max_decoding_message_size(self.settings.max_recv_message_size)
            .max_encoding_message_size(self.settings.max_send_message_size))
    }

    /// A raw gRPC client for `addr`, over the shared channel, for calls made with a codec of our own.
    pub(crate) fn grpc(&self, addr: &str) -> Result<tonic::client::Grpc<Channel>> {
        Ok(tonic::client::Grpc::new(self.channel(addr)?)
            .max_decoding_message_size(self.settings.max_recv_message_size)
            .max_encoding_message_size(self.settings.max_send_message_size))
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint> {
        let scheme = if self.settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| {
                Error::config(format!("invalid server address {addr:?}: {e}")).with_source(e)
            })?
            .connect_timeout(self.settings.connect_timeout)
            .tcp_nodelay(true)
            .keep_alive_timeout(self.settings.keepalive_timeout);
        if let Some(interval) = self.settings.keepalive_interval {
            endpoint = endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_while_idle(true);
        }
        if let Some(tls) = &self.settings.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| {
                Error::new(ErrorKind::Tls, format!("TLS configuration for {addr}: {e}"))
                    .with_source(e)
            })?;
        }
        Ok(endpoint)
    }

    /// Records that a request to `addr` reached the server.
    pub(crate) fn reached(&self, addr: &str) {
        let mut reachable = self.reachable.lock();
        if reachable.get(addr) != Some(&true) {
            reachable.insert(addr.to_string(), true);
            drop(reachable);
            tracing::debug!(addr, "server reachable");
            let _ = self.events.send(Event::Connected {
                addr: addr.to_string(),
            });
        }
    }

    /// Records that a request to `addr` could not reach the server.
    pub(crate) fn unreachable(&self, addr: &str, error: &Error) {
        let mut reachable = self.reachable.lock();
        if reachable.get(addr) != Some(&false) {
            reachable.insert(addr.to_string(), false);
            drop(reachable);
            tracing::debug!(addr, %error, "server unreachable");
            let _ = self.events.send(Event::Disconnected {
                addr: addr.to_string(),
                error: error.clone(),
            });
        }
    }

    /// Records the outcome of a request to `addr`.
    pub(crate) fn record<T>(&self, addr: &str, result: &Result<T>) {
        match result {
            Ok(_) => self.reached(addr),
            Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Tls) => {
                self.unreachable(addr, e)
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {}
            // Any answer from the server means it was reached.
            Err(_) => self.reached(addr),
        }
    }
}

/// Turns a user-given server address into `host:port`: accepts `host`, `host:port`, `[v6]:port` and
/// `http(s)://host:port` (the scheme is dropped: TLS is decided by the TLS options).
pub(crate) fn normalize_addr(input: &str) -> Result<String> {
    let trimmed = input.trim();
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', ' ']) {
        return Err(Error::config(format!(
            "invalid server address {input:?}: expected host:port"
        )));
    }
    let has_port = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((_, after)) => after.starts_with(':'),
            None => {
                return Err(Error::config(format!(
                    "invalid server address {input:?}: unclosed '['"
                )));
            }
        }
    } else {
        rest.matches(':').count() == 1
    };
    let addr = if has_port {
        rest.to_string()
    } else if rest.contains(':') && !rest.starts_with('[') {
        // A bare IPv6 address.
        format!("[{rest}]:{DEFAULT_PORT}")
    } else {
        format!("{rest}:{DEFAULT_PORT}")
    };
    let port = addr.rsplit(':').next().unwrap_or_default();
    if port.parse::<u16>().is_err() {
        return Err(Error::config(format!(
            "invalid server address {input:?}: port {port:?} is not a number from 0 to 65535"
        )));
    }
    Ok(addr)
}

/// `host:port` of a broker from metadata (IPv6 hosts get brackets).
pub(crate) fn broker_addr(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(normalize_addr("localhost").unwrap(), "localhost:9292");
        assert_eq!(normalize_addr("127.0.0.1:1").unwrap(), "127.0.0.1:1");
        assert_eq!(normalize_addr("http://h:2/").unwrap(), "h:2");
        assert_eq!(normalize_addr("https://h:3").unwrap(), "h:3");
        assert_eq!(normalize_addr("[::1]:4").unwrap(), "[::1]:4");
        assert_eq!(normalize_addr("::1").unwrap(), "[::1]:9292");
        assert!(normalize_addr("h:x").is_err());
        assert!(normalize_addr("").is_err());
        assert!(normalize_addr("h:99999").is_err());
        assert_eq!(broker_addr("::1", 5), "[::1]:5");
        assert_eq!(broker_addr("h", 5), "h:5");
    }
}
