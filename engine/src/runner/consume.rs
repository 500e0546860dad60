//! The consumer loop shared by the runner and the executors: receive from a
//! queue with bounded concurrency, hand each message to a handler task, keep
//! its visibility extended while the handler works, and on shutdown stop
//! receiving and let in-flight handlers finish (up to a grace period).
//!
//! A handler that fails tells an outage from a bad message. A message that
//! fails on its own (`Err` other than `Unavailable`) comes back after
//! [`RETRY_VISIBILITY`] and, after the queue's `max_receives` deliveries,
//! goes to the dead-letter queue. An `Unavailable` error means a backend the
//! role needs is down: the loop stops receiving (each receive would count
//! against a good message's deliveries) and probes the backends with a
//! growing pause until they answer; a message whose last delivery met the
//! outage is put back as a fresh copy rather than dead-lettered.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::Shutdown;
use crate::backend::{BackendError, Message, Queue, Received};

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
const RETRY_VISIBILITY: Duration = Duration::from_secs(1);
/// Visibility given back to a message whose handler met an outage: other
/// processes that have not noticed it yet leave the message alone a while.
const OUTAGE_VISIBILITY: Duration = Duration::from_secs(5);
/// First and longest pause between probes of a backend that is down.
const PROBE_FIRST: Duration = Duration::from_millis(250);
const PROBE_MAX: Duration = Duration::from_secs(5);

/// The queue a [`consume`] loop serves and how.
pub struct Consumer {
    /// Where the messages come from.
    pub queue: Arc<dyn Queue>,
    /// Most handlers at work at once.
    pub concurrency: usize,
    /// Visibility timeout of a received message (extended while handled).
    pub visibility: Duration,
    /// Deliveries after which the queue dead-letters a message.
    pub max_receives: u32,
    /// The queue's name in logs.
    pub name: &'static str,
}

/// Runs `handler` on every message of the consumer's queue, at most
/// `concurrency` at a time, until `shutdown`. The handler acks the message
/// itself when it is done with it; an `Err` leaves it for redelivery (see the
/// module doc). `probe` answers whether the backends the role needs are up.
pub async fn consume<H, Fut, P, PFut>(consumer: Consumer, shutdown: Shutdown, probe: P, handler: H)
where
    H: Fn(Arc<Received>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BackendError>> + Send + 'static,
    P: Fn() -> PFut,
    PFut: Future<Output = Result<(), BackendError>>,
{
    let Consumer {
        queue,
        concurrency,
        visibility,
        max_receives,
        name,
    } = consumer;
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(concurrency));
    let outage = Arc::new(AtomicBool::new(false));
    while !shutdown.is_cancelled() {
        if outage.load(Ordering::SeqCst) {
            if !wait_until_up(&probe, &shutdown, name).await {
                break;
            }
            outage.store(false, Ordering::SeqCst);
        }
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closes"),
            _ = shutdown.cancelled() => break,
        };
        if outage.load(Ordering::SeqCst) {
            // A handler met an outage while this loop waited for a permit.
            continue;
        }
        let max = (permits.available_permits() + 1).min(RECEIVE_BATCH);
        let received = match queue.receive(max, visibility, RECEIVE_WAIT).await {
            Ok(r) => r,
            Err(e @ BackendError::Unavailable(_)) => {
                tracing::warn!(queue = name, error = %e, "receive failed; receiving paused until the backends answer");
                outage.store(true, Ordering::SeqCst);
                continue;
            }
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
            let outage = outage.clone();
            tokio::spawn(async move {
                // Shared with the handler: a failed one is given back below.
                let message = Arc::new(message);
                let result = keep_visible(
                    queue.as_ref(),
                    &message.receipt,
                    visibility,
                    handler(message.clone()),
                )
                .await;
                if let Err(e) = result {
                    let met_outage = matches!(e, BackendError::Unavailable(_));
                    if met_outage && !outage.swap(true, Ordering::SeqCst) {
                        tracing::warn!(queue = name, error = %e, "a backend is unavailable; receiving paused until it answers");
                    }
                    give_back(queue.as_ref(), &message, met_outage, max_receives, name).await;
                }
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

/// Probes until the backends answer (`true`) or shutdown (`false`).
async fn wait_until_up<P, PFut>(probe: &P, shutdown: &Shutdown, name: &str) -> bool
where
    P: Fn() -> PFut,
    PFut: Future<Output = Result<(), BackendError>>,
{
    let mut pause = PROBE_FIRST;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return false,
        }
        match probe().await {
            Ok(()) => {
                tracing::info!(queue = name, "backends answer again; receiving resumed");
                return true;
            }
            Err(e) => tracing::debug!(queue = name, error = %e, "backends still unavailable"),
        }
        pause = (pause * 2).min(PROBE_MAX);
    }
}

/// Makes a message whose handler failed visible again: soon after a failure
/// of its own, later after an outage. A message whose last delivery met an
/// outage is sent again as a fresh copy (and the original acked), since the
/// queue would dead-letter it on its next receive though nothing is wrong
/// with it; if that is not possible now it keeps its place.
async fn give_back(
    queue: &dyn Queue,
    message: &Received,
    met_outage: bool,
    max_receives: u32,
    name: &str,
) {
    if !met_outage {
        let _ = queue.extend(&message.receipt, RETRY_VISIBILITY).await;
        return;
    }
    if message.receive_count >= max_receives {
        let copy = Message {
            body: message.body.clone(),
            delay: OUTAGE_VISIBILITY,
        };
        match queue.send(vec![copy]).await {
            Ok(()) => {
                // An ack lost here leaves two copies: handlers are idempotent.
                if let Err(e) = queue.ack(std::slice::from_ref(&message.receipt)).await {
                    tracing::warn!(queue = name, error = %e, "cannot ack a message put back after an outage");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(queue = name, error = %e, "cannot put back a message on its last delivery; it may be dead-lettered");
            }
        }
    }
    let _ = queue.extend(&message.receipt, OUTAGE_VISIBILITY).await;
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
