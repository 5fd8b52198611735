//! [`NativeClient`]: the Rust client behind the JS `Client` class.

use liftbridge::Client;
use napi::bindgen_prelude::{Env, PromiseRaw};
use napi_derive::napi;

use crate::error::{IntoNapi, coded, invalid};
use crate::event::NativeEvents;
use crate::message::{JsAck, NativeMessage, SendOutcome};
use crate::metadata::{JsMetadata, JsPartitionInfo, JsStreamInfo};
use crate::options::{ConnectOptions, NativeStreamOptions, NativeSubscribeOptions};
use crate::publisher::SendQueue;
use crate::subscription::NativeSubscription;

/// Connects to a cluster through `seeds` (`host:port`); resolves once a seed answered.
#[napi]
pub async fn connect(
    seeds: Vec<String>,
    options: Option<ConnectOptions>,
) -> napi::Result<NativeClient> {
    if seeds.is_empty() {
        return Err(invalid("give at least one server address (host:port)"));
    }
    let builder = options.unwrap_or_default().apply(Client::builder(seeds))?;
    let client = builder.connect().await.napi()?;
    let queue = SendQueue::start(client.clone());
    Ok(NativeClient { client, queue })
}

/// A connected client. Cheap to share; `close()` ends it for every holder.
#[napi]
pub struct NativeClient {
    client: Client,
    queue: SendQueue,
}

#[napi]
impl NativeClient {
    /// Creates a stream; with `ifNotExists`, an existing one is fine. Resolves with whether it was created.
    #[napi]
    pub async fn create_stream(
        &self,
        subject: String,
        name: String,
        options: Option<NativeStreamOptions>,
        if_not_exists: Option<bool>,
    ) -> napi::Result<bool> {
        let opts = options.unwrap_or_default().into_options(subject, name)?;
        if if_not_exists.unwrap_or(false) {
            self.client.create_stream_if_not_exists(opts).await.napi()
        } else {
            self.client.create_stream(opts).await.napi().map(|()| true)
        }
    }

    /// Deletes a stream.
    #[napi]
    pub async fn delete_stream(&self, name: String) -> napi::Result<()> {
        self.client.delete_stream(&name).await.napi()
    }

    /// Pauses partitions of a stream (all when empty).
    #[napi]
    pub async fn pause_stream(
        &self,
        name: String,
        partitions: Vec<i32>,
        resume_all: bool,
    ) -> napi::Result<()> {
        self.client
            .pause_stream(&name, &partitions, resume_all)
            .await
            .napi()
    }

    /// Sets or clears the readonly flag of partitions of a stream (all when empty).
    #[napi]
    pub async fn set_stream_readonly(
        &self,
        name: String,
        partitions: Vec<i32>,
        readonly: bool,
    ) -> napi::Result<()> {
        self.client
            .set_stream_readonly(&name, &partitions, readonly)
            .await
            .napi()
    }

    /// The cluster's metadata, fetched now.
    #[napi]
    pub async fn fetch_metadata(&self) -> napi::Result<JsMetadata> {
        let m = self.client.fetch_metadata().await.napi()?;
        Ok(JsMetadata::from(&m))
    }

    /// One stream's metadata, fetched now.
    #[napi]
    pub async fn fetch_stream_metadata(&self, name: String) -> napi::Result<JsStreamInfo> {
        let s = self.client.fetch_stream_metadata(&name).await.napi()?;
        Ok(JsStreamInfo::from(&s))
    }

    /// A partition's metadata from its leader (high watermark and newest offset included).
    #[napi]
    pub async fn fetch_partition_metadata(
        &self,
        stream: String,
        partition: i32,
    ) -> napi::Result<JsPartitionInfo> {
        let p = self
            .client
            .fetch_partition_metadata(&stream, partition)
            .await
            .napi()?;
        Ok(JsPartitionInfo::from(&p))
    }

    /// Publishes one message and waits for its ack.
    #[napi(ts_return_type = "Promise<JsAck>")]
    pub fn publish<'env>(
        &self,
        env: &'env Env,
        stream: String,
        message: NativeMessage,
    ) -> napi::Result<PromiseRaw<'env, JsAck>> {
        let message = message.into_message()?;
        let client = self.client.clone();
        env.spawn_future(async move {
            let ack = client.publish(&stream, message).await.napi()?;
            Ok(JsAck::from(ack))
        })
    }

    /// Queues messages for pipelined publishing, in call order; resolves once all their acks (or errors)
    /// are in, with one outcome per message.
    #[napi(ts_return_type = "Promise<Array<SendOutcome>>")]
    pub fn send_batch<'env>(
        &self,
        env: &'env Env,
        stream: String,
        messages: Vec<NativeMessage>,
    ) -> napi::Result<PromiseRaw<'env, Vec<SendOutcome>>> {
        let messages = messages
            .into_iter()
            .map(NativeMessage::into_message)
            .collect::<napi::Result<Vec<_>>>()?;
        let n = messages.len();
        let rx = self.queue.push(stream, messages);
        env.spawn_future(async move {
            rx.await.map_err(|_| {
                coded(
                    liftbridge::ErrorKind::Disconnected,
                    format!("the send queue stopped with {n} messages awaiting their ack"),
                )
            })
        })
    }

    /// Publishes a message to a NATS subject through the server; resolves with the first ack, or `null` with
    /// ack policy `none`.
    #[napi(ts_return_type = "Promise<JsAck | null>")]
    pub fn publish_to_subject<'env>(
        &self,
        env: &'env Env,
        subject: String,
        message: NativeMessage,
    ) -> napi::Result<PromiseRaw<'env, Option<JsAck>>> {
        let message = message.into_message()?;
        let client = self.client.clone();
        env.spawn_future(async move {
            let ack = client.publish_to_subject(&subject, message).await.napi()?;
            Ok(ack.map(JsAck::from))
        })
    }

    /// Subscribes to a partition (or all partitions) of a stream.
    #[napi]
    pub async fn subscribe(
        &self,
        stream: String,
        options: Option<NativeSubscribeOptions>,
    ) -> napi::Result<NativeSubscription> {
        let (opts, all) = options.unwrap_or_default().into_options()?;
        let sub = if all {
            self.client.subscribe_all(&stream, opts).await
        } else {
            self.client.subscribe(&stream, opts).await
        }
        .napi()?;
        Ok(NativeSubscription::new(sub))
    }

    /// Waits until the stream exists and every partition has a leader (polling with backoff), for up to
    /// `timeoutMs`; rejects with `timeout` then.
    #[napi]
    pub async fn wait_for_stream(
        &self,
        name: String,
        timeout_ms: f64,
    ) -> napi::Result<JsStreamInfo> {
        let timeout = crate::options::millis("timeoutMs", timeout_ms)?;
        let s = self.client.wait_for_stream(&name, timeout).await.napi()?;
        Ok(JsStreamInfo::from(&s))
    }

    /// The client's events from now on.
    #[napi]
    pub fn events(&self) -> NativeEvents {
        NativeEvents::new(self.client.events())
    }

    /// Closes the client: in-flight publishes get the drain grace period, subscriptions end. Idempotent.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.client.close().await;
        Ok(())
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.client.is_closed()
    }
}
