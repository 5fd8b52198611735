//! [`Bus`] over real NATS servers, through `async-nats`.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::{ConnectOptions, HeaderMap, Subject};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;

use super::{Bus, BusError, BusMessage, BusSubscription, Headers, validate_subject};

/// How to reach the NATS servers.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Server URLs (`nats://host:port`); the client picks one and fails over to the others.
    pub servers: Vec<String>,
    /// User for user/password auth.
    pub user: Option<String>,
    /// Password for user/password auth.
    pub password: Option<String>,
    /// Connection name shown in the NATS server's monitoring.
    pub name: Option<String>,
    /// Ask NATS not to deliver this connection's publishes to its own subscriptions.
    pub no_echo: bool,
}

/// A [`Bus`] on an `async-nats` client. Cheap to clone; all clones share one connection.
#[derive(Debug, Clone)]
pub struct NatsBus {
    /// The connection (reconnects forever in the background).
    client: async_nats::Client,
}

impl NatsBus {
    /// Connects to the first reachable server. The connection then reconnects by itself forever, as Liftbridge's
    /// does; while it is down, [`Bus::is_connected`] is false and publishes fail with [`BusError::Unavailable`].
    pub async fn connect(options: &NatsOptions) -> Result<NatsBus, BusError> {
        let url = options.servers.join(",");
        let mut connect = ConnectOptions::new()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((250 * attempts as u64).min(2_000))
            })
            .client_capacity(65_536)
            .subscription_capacity(65_536);
        if options.no_echo {
            connect = connect.no_echo();
        }
        if let Some(name) = &options.name {
            connect = connect.name(name.clone());
        }
        if let (Some(user), Some(password)) = (&options.user, &options.password) {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        let client = connect
            .connect(options.servers.clone())
            .await
            .map_err(|e| BusError::Connect {
                url: url.clone(),
                message: e.to_string(),
            })?;
        Ok(NatsBus { client })
    }

    /// The underlying client, for tests and tools.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn check_connected(&self) -> Result<(), BusError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            other => Err(BusError::Unavailable(format!("connection is {other}"))),
        }
    }
}

fn to_header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name.as_str(), value.as_str());
    }
    map
}

fn from_message(message: async_nats::Message) -> BusMessage {
    let headers = message
        .headers
        .as_ref()
        .map(|map| {
            map.iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| (name.to_string(), v.as_str().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    BusMessage {
        subject: message.subject.to_string(),
        reply: message.reply.map(|r| r.to_string()),
        headers,
        payload: message.payload,
    }
}

fn other(e: impl std::fmt::Display) -> BusError {
    BusError::Other(e.to_string())
}

impl Bus for NatsBus {
    fn publish(
        &self,
        subject: String,
        reply: Option<String>,
        headers: Headers,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            validate_subject(&subject)?;
            self.check_connected()?;
            let max = self.client.max_payload();
            if max > 0 && payload.len() > max {
                return Err(BusError::PayloadTooLarge {
                    size: payload.len(),
                    max,
                });
            }
            let subject = Subject::from(subject);
            let result = match (reply, headers.is_empty()) {
                (None, true) => self.client.publish(subject, payload).await,
                (None, false) => {
                    self.client
                        .publish_with_headers(subject, to_header_map(&headers), payload)
                        .await
                }
                (Some(reply), true) => {
                    self.client
                        .publish_with_reply(subject, Subject::from(reply), payload)
                        .await
                }
                (Some(reply), false) => {
                    self.client
                        .publish_with_reply_and_headers(
                            subject,
                            Subject::from(reply),
                            to_header_map(&headers),
                            payload,
                        )
                        .await
                }
            };
            result.map_err(other)
        })
    }

    fn subscribe(
        &self,
        subject: String,
        queue_group: Option<String>,
    ) -> BoxFuture<'_, Result<BusSubscription, BusError>> {
        Box::pin(async move {
            validate_subject(&subject)?;
            let subscriber = match queue_group {
                Some(group) => self.client.queue_subscribe(subject, group).await,
                None => self.client.subscribe(subject).await,
            }
            .map_err(other)?;
            // The Subscriber unsubscribes when dropped, and so does the mapped stream holding it.
            Ok(BusSubscription::new(subscriber.map(from_message)))
        })
    }

    fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<BusMessage, BusError>> {
        Box::pin(async move {
            validate_subject(&subject)?;
            self.check_connected()?;
            let request = async_nats::Request::new()
                .payload(payload)
                .timeout(Some(timeout));
            match self.client.send_request(subject.clone(), request).await {
                Ok(message) => Ok(from_message(message)),
                Err(e) => Err(match e.kind() {
                    async_nats::RequestErrorKind::TimedOut => {
                        BusError::Timeout { subject, timeout }
                    }
                    async_nats::RequestErrorKind::NoResponders => BusError::NoResponders(subject),
                    _ => other(e),
                }),
            }
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            self.client.flush().await.map_err(other)?;
            // async-nats' flush only empties the socket buffer. A request to a fresh inbox nobody listens on
            // comes back as "no responders" after the server has processed everything sent before it, so
            // subscriptions made before this call are in effect when it returns.
            let probe = self.client.new_inbox();
            let request = async_nats::Request::new().timeout(Some(Duration::from_secs(5)));
            match self.client.send_request(probe, request).await {
                Ok(_) => Ok(()),
                Err(e) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => Ok(()),
                    async_nats::RequestErrorKind::TimedOut => Err(BusError::Unavailable(
                        "NATS did not answer a flush round trip in 5 s".into(),
                    )),
                    _ => Err(other(e)),
                },
            }
        })
    }

    fn new_inbox(&self) -> String {
        self.client.new_inbox()
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }
}
