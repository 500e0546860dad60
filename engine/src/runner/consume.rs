//! The consumer loop shared by the runner and the executors: receive from a
//! queue with bounded concurrency, hand each message to a handler task, keep
//! its visibility extended while the handler works, and on shutdown stop
//! receiving and let in-flight handlers finish (up to a grace period).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::Shutdown;
use crate::backend::{Queue, Received};

/// How long one receive call waits for a first message.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);
/// Pause after a failed receive (the backend is down or overloaded).
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(500);
/// How long in-flight handlers get to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Most messages asked for in one receive.
const RECEIVE_BATCH: usize = 64;
/// Visibility given back to a message whose handler failed, so it is
/// retried soon instead of after the whole visibility timeout.
pub const RETRY_VISIBILITY: Duration = Duration::from_secs(1);

/// Runs `handler` on every message of `queue`, at most `concurrency` at a
/// time, until `shutdown`. The handler acks (or not) itself.
pub async fn consume<H, Fut>(
    queue: Arc<dyn Queue>,
    concurrency: usize,
    visibility: Duration,
    shutdown: Shutdown,
    name: &'static str,
    handler: H,
) where
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(concurrency));
    while !shutdown.is_cancelled() {
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closes"),
            _ = shutdown.cancelled() => break,
        };
        let max = (permits.available_permits() + 1).min(RECEIVE_BATCH);
        let received = match queue.receive(max, visibility, RECEIVE_WAIT).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(queue = name, error = %e, "receive failed");
                drop(first);
                tokio::select! {
                    _ = tokio::time::sleep(RECEIVE_ERROR_PAUSE) => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        let mut first = Some(first);
        for message in received {
            let permit = match first.take() {
                Some(p) => p,
                None => permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore never closes"),
            };
            let queue = queue.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let receipt = message.receipt.clone();
                keep_visible(queue.as_ref(), &receipt, visibility, handler(message)).await;
                drop(permit);
            });
        }
    }
    // Every permit back means every handler has finished.
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            queue = name,
            "shutdown grace period over; unfinished messages will be redelivered"
        );
    }
}

/// Runs `work`, extending the message's visibility every third of the
/// timeout until it finishes.
pub async fn keep_visible<T>(
    queue: &dyn Queue,
    receipt: &str,
    visibility: Duration,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let every = (visibility / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                if let Err(e) = queue.extend(receipt, visibility).await {
                    tracing::warn!(error = %e, "cannot extend a message's visibility");
                }
            }
        }
    }
}
