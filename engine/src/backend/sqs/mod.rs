//! The SQS backend: the event stream and the work queue as two standard SQS
//! queues, each with a dead-letter queue through its redrive policy.
//!
//! What SQS imposes and how this module meets the [`Queue`](super::Queue)
//! contract:
//! - Delays and visibility timeouts are whole seconds: both are rounded UP
//!   (a job is never delivered early); delays stop at 15 minutes
//!   ([`MAX_DELAY`]), so the engine re-enqueues longer sleeps.
//! - A message (with its attributes) and a whole batch hold at most 256 KiB.
//!   `send` packs batches of up to 10 entries under that size; a body too
//!   large for one message is refused with `TooLarge` (`max_message_bytes`
//!   says so upfront, and the event API splits a request's events over as
//!   many messages as it takes): every message lives in SQS alone, so what
//!   a queue acknowledged does not depend on the state store.
//! - Bodies are text: a body that is not valid SQS text is sent base64.
//! - Dead letters: SQS moves a message after the queue's `maxReceiveCount`
//!   receives; the provisioner sets the redrive policy, or [`ensure_queue`]
//!   does when the configuration asks the engine to create its queues.
//! - Concurrent `send`s, `ack`s and `extend`s of one process share batch
//!   calls (`batcher`): an entry waits only while the calls in flight are
//!   at their limit, so a lone request goes out at once and a busy process
//!   pays one SendMessageBatch, DeleteMessageBatch or
//!   ChangeMessageVisibilityBatch for many entries.
//! - Throttling, 5xx answers, timeouts and connection failures are
//!   `Unavailable` (the event API answers 503); other errors carry the AWS
//!   error code and message.

mod batcher;
mod error;
mod provision;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

pub use provision::{QueueUrls, ensure_queue};
pub use queue::SqsQueue;

use super::{Queue, Result};
use crate::config::QueuesConfig;

/// The longest delay SQS accepts.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// The most a message (body and attributes) or a whole batch may hold.
pub const MAX_SQS_BYTES: usize = 256 * 1024;
/// An SQS client from the environment (region, credentials and
/// `AWS_ENDPOINT_URL` as the SDK reads them), with timeouts that fit long
/// polling and fail fast on a dead endpoint.
pub async fn client() -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                // Long polls last up to 20 s.
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// Opens the event stream and the work queue with a [`client`] from the
/// environment. With `create`, the queues and their dead-letter queues are
/// created (or updated) from `queues` first.
pub async fn open_pair(
    events_queue: &str,
    work_queue: &str,
    create: bool,
    queues: &QueuesConfig,
) -> Result<(Arc<dyn Queue>, Arc<dyn Queue>)> {
    open_pair_with(client().await, events_queue, work_queue, create, queues).await
}

/// [`open_pair`] with a given client (tests point one at their own endpoint).
pub async fn open_pair_with(
    client: aws_sdk_sqs::Client,
    events_queue: &str,
    work_queue: &str,
    create: bool,
    queues: &QueuesConfig,
) -> Result<(Arc<dyn Queue>, Arc<dyn Queue>)> {
    let open = |name: &str, config: &crate::config::QueueConfig| {
        let (client, name, config) = (client.clone(), name.to_string(), config.clone());
        async move {
            let urls = if create {
                Some(ensure_queue(&client, &name, &config).await?)
            } else {
                None
            };
            let queue = SqsQueue::new(client, &name, urls);
            if !create {
                // Resolve now so a wrong name fails at start; an unreachable
                // endpoint is retried on first use instead.
                match queue.resolve().await {
                    Ok(_) | Err(super::BackendError::Unavailable(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, super::BackendError>(Arc::new(queue) as Arc<dyn Queue>)
        }
    };
    let events = open(events_queue, &queues.events).await?;
    let work = open(work_queue, &queues.work).await?;
    Ok((events, work))
}
