//! The ordered send queue behind pipelined `send()`.
//!
//! `index.js` gathers the `send()` calls of one tick into a batch and hands it over with one call; the batch
//! is queued here *synchronously* on the JS thread, so batches keep their call order. One task per client
//! hands the messages to the Rust client's `send` in that order (waiting while the in-flight window is full)
//! and, per batch, a task awaits the acks and resolves the batch's promise with one outcome per message.

use futures::future::join_all;
use liftbridge::{Client, Message};
use tokio::sync::{mpsc, oneshot};

use crate::error::to_napi;
use crate::message::{JsAck, SendOutcome};

/// One batch of `send()` calls.
struct Job {
    stream: String,
    messages: Vec<Message>,
    done: oneshot::Sender<Vec<SendOutcome>>,
}

/// The queue of a client; dropping it ends its task once the queued batches are handed over.
pub(crate) struct SendQueue {
    tx: mpsc::UnboundedSender<Job>,
}

impl SendQueue {
    /// Starts the queue's task on napi's tokio runtime.
    pub(crate) fn start(client: Client) -> SendQueue {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        napi::bindgen_prelude::spawn(async move {
            while let Some(job) = rx.recv().await {
                let mut pending = Vec::with_capacity(job.messages.len());
                for m in job.messages {
                    pending.push(client.send(&job.stream, m).await);
                }
                // Acks are awaited off the queue's task, so the next batch is handed over meanwhile.
                tokio::spawn(async move {
                    let outcomes = join_all(pending.into_iter().map(|p| async move {
                        match p {
                            Ok(ack) => ack.await,
                            Err(e) => Err(e),
                        }
                    }))
                    .await
                    .into_iter()
                    .map(|r| match r {
                        Ok(ack) => SendOutcome {
                            ack: Some(JsAck::from(ack)),
                            error: None,
                        },
                        Err(e) => SendOutcome {
                            ack: None,
                            error: Some(to_napi(e).reason),
                        },
                    })
                    .collect();
                    let _ = job.done.send(outcomes);
                });
            }
        });
        SendQueue { tx }
    }

    /// Queues a batch; the receiver gets one outcome per message, in order.
    pub(crate) fn push(
        &self,
        stream: String,
        messages: Vec<Message>,
    ) -> oneshot::Receiver<Vec<SendOutcome>> {
        let (done, rx) = oneshot::channel();
        // The task lives as long as this queue, so the send cannot fail while `self` exists; if it ever
        // did, dropping `done` makes the receiver report the batch as disconnected.
        let _ = self.tx.send(Job {
            stream,
            messages,
            done,
        });
        rx
    }
}
