//! Coalescing of one kind of SQS batch call (SendMessageBatch,
//! DeleteMessageBatch, ChangeMessageVisibilityBatch) across the concurrent
//! callers of one process, the way the embedded store shares an fsync: an
//! entry goes out at once when no call is in flight; otherwise it waits
//! for the calls in flight to finish (or for a full batch, which may go out
//! beside them up to a limit), and the next call takes every entry that
//! queued meanwhile (up to the batch limits). A lone entry costs no wait;
//! under load each call carries many. Every caller learns its own entries'
//! outcome.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::backend::{BackendError, Result};

/// The longest a partial batch waits for the calls in flight before it goes
/// out beside them: longer than an SQS call takes, shorter than a stall.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// One entry waiting for a call.
struct Entry<T> {
    item: T,
    size: usize,
    done: oneshot::Sender<Result<()>>,
}

/// The entries of the next call.
struct Batch<T> {
    entries: Vec<Entry<T>>,
    bytes: usize,
}

impl<T> Batch<T> {
    /// Adds `e` if it fits in `max_bytes`, else keeps it for the next call
    /// in `carried` and answers false: this batch is closed.
    fn add(&mut self, e: Entry<T>, max_bytes: usize, carried: &mut Option<Entry<T>>) -> bool {
        if self.bytes + e.size <= max_bytes {
            self.bytes += e.size;
            self.entries.push(e);
            true
        } else {
            *carried = Some(e);
            false
        }
    }
}

/// Shares batch calls of one kind among concurrent callers.
pub(super) struct Batcher<T> {
    tx: mpsc::UnboundedSender<Entry<T>>,
    what: &'static str,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the batcher's task (on the current tokio runtime): calls
    /// `call` with at most `max_entries` entries of at most `max_bytes` in
    /// all, at most `in_flight` calls at once. `call` answers one result per
    /// entry, in order. The task ends when the batcher is dropped.
    pub fn start<F, Fut>(
        what: &'static str,
        max_entries: usize,
        max_bytes: usize,
        in_flight: usize,
        call: F,
    ) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<()>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Entry<T>>();
        let call = Arc::new(call);
        let limit = in_flight.max(1);
        let permits = Arc::new(Semaphore::new(limit));
        // A call is in flight while one of its permits is out.
        let busy = {
            let permits = permits.clone();
            move || permits.available_permits() < limit
        };
        let finished = Arc::new(Notify::new());
        tokio::spawn(async move {
            let mut carried: Option<Entry<T>> = None;
            loop {
                let first = match carried.take() {
                    Some(e) => e,
                    None => match rx.recv().await {
                        Some(e) => e,
                        None => return,
                    },
                };
                let mut batch = Batch {
                    bytes: first.size,
                    entries: vec![first],
                };
                let mut open = true;
                while open && batch.entries.len() < max_entries {
                    match rx.try_recv() {
                        Ok(e) => open = batch.add(e, max_bytes, &mut carried),
                        Err(_) => break,
                    }
                }
                // A partial batch waits for the calls in flight to finish,
                // gathering what arrives meanwhile, so a steady trickle
                // fills batches instead of taking one call each; a full
                // batch goes out beside them, up to `in_flight` calls, and so
                // does a partial one after `MAX_WAIT` (a call that slow is
                // stalled, not busy).
                if open && batch.entries.len() < max_entries && busy() {
                    let waited_enough = tokio::time::sleep(MAX_WAIT);
                    tokio::pin!(waited_enough);
                    while open && batch.entries.len() < max_entries && busy() {
                        tokio::select! {
                            e = rx.recv() => match e {
                                Some(e) => open = batch.add(e, max_bytes, &mut carried),
                                None => break,
                            },
                            () = finished.notified() => {}
                            () = &mut waited_enough => break,
                        }
                    }
                }
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let (call, finished) = (call.clone(), finished.clone());
                tokio::spawn(async move {
                    let (items, dones): (Vec<T>, Vec<_>) =
                        batch.entries.into_iter().map(|e| (e.item, e.done)).unzip();
                    let n = items.len();
                    let mut results = call(items).await;
                    results.resize_with(n, || {
                        Err(BackendError::Other(format!(
                            "sqs {what}: no result for an entry"
                        )))
                    });
                    for (done, result) in dones.into_iter().zip(results) {
                        // A caller that gave up no longer listens.
                        let _ = done.send(result);
                    }
                    drop(permit);
                    finished.notify_one();
                });
            }
        });
        Self { tx, what }
    }

    /// Submits `(item, size)` entries and waits until each was in a call:
    /// `Ok` when all succeeded, else the first entry's error.
    pub async fn submit(&self, entries: Vec<(T, usize)>) -> Result<()> {
        let mut waits = Vec::with_capacity(entries.len());
        for (item, size) in entries {
            let (done, wait) = oneshot::channel();
            self.tx
                .send(Entry { item, size, done })
                .map_err(|_| self.stopped())?;
            waits.push(wait);
        }
        let mut first_error = None;
        for wait in waits {
            let result = wait.await.unwrap_or_else(|_| Err(self.stopped()));
            if let Err(e) = result
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn stopped(&self) -> BackendError {
        BackendError::Unavailable(format!(
            "sqs {}: the batching task stopped (its runtime shut down)",
            self.what
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A batcher whose calls take `delay` and fail entry `unlucky`, with the
    /// entries of each call it made.
    #[allow(clippy::type_complexity)]
    fn recording(
        in_flight: usize,
        delay: Duration,
        unlucky: Option<u32>,
    ) -> (Arc<Batcher<u32>>, Arc<Mutex<Vec<Vec<u32>>>>) {
        let calls: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let seen = calls.clone();
        let batcher = Batcher::start("test", 10, 1000, in_flight, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.clone());
            async move {
                tokio::time::sleep(delay).await;
                items
                    .iter()
                    .map(|&i| {
                        if Some(i) == unlucky {
                            Err(BackendError::Other("unlucky".into()))
                        } else {
                            Ok(())
                        }
                    })
                    .collect()
            }
        });
        (Arc::new(batcher), calls)
    }

    #[tokio::test]
    async fn concurrent_entries_share_calls_and_each_caller_gets_its_result() {
        let (batcher, calls) = recording(1, Duration::from_millis(20), Some(13));
        let mut tasks = Vec::new();
        for i in 0..25u32 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(
                async move { (i, b.submit(vec![(i, 10)]).await) },
            ));
        }
        for t in tasks {
            let (i, result) = t.await.unwrap();
            assert_eq!(result.is_err(), i == 13, "entry {i}: {result:?}");
        }
        let calls = calls.lock().unwrap();
        let entries: usize = calls.iter().map(Vec::len).sum();
        assert_eq!(entries, 25);
        assert!(calls.iter().all(|c| c.len() <= 10), "{calls:?}");
        // One call at a time: the first goes alone, the rest queue behind it.
        assert!(
            calls.len() <= 4,
            "{} calls for 25 entries: {calls:?}",
            calls.len()
        );
    }

    /// Entries arriving one by one while a call is in flight wait for it
    /// and share the next call, even when more calls could be in flight.
    #[tokio::test]
    async fn a_trickle_fills_batches_behind_the_call_in_flight() {
        let (batcher, calls) = recording(4, Duration::from_millis(20), None);
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move { b.submit(vec![(i, 10)]).await }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let calls: Vec<usize> = calls.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(calls.iter().sum::<usize>(), 40);
        // One entry per 2 ms and 20 ms per call: about 10 entries per call
        // after the first (four calls in flight would take one or two each).
        assert!(calls.len() <= 10, "{} calls: {calls:?}", calls.len());
    }

    /// A call that stalls holds back the entries behind it only for
    /// `MAX_WAIT`; then they go out beside it.
    #[tokio::test]
    async fn a_stalled_call_holds_later_entries_back_only_briefly() {
        let first = Arc::new(AtomicBool::new(true));
        let batcher = Arc::new(Batcher::start(
            "test",
            10,
            1000,
            4,
            move |items: Vec<u32>| {
                let stall = first.swap(false, Ordering::SeqCst);
                async move {
                    if stall {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    items.iter().map(|_| Ok(())).collect()
                }
            },
        ));
        let stalled = {
            let b = batcher.clone();
            tokio::spawn(async move { b.submit(vec![(1, 10)]).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = std::time::Instant::now();
        batcher.submit(vec![(2, 10)]).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= MAX_WAIT / 2 && took < Duration::from_secs(2),
            "the second entry took {took:?}"
        );
        stalled.abort();
    }

    #[tokio::test]
    async fn a_batch_keeps_to_its_byte_limit() {
        let calls: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let seen = calls.clone();
        let batcher = Batcher::start("test", 10, 100, 1, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.clone());
            async move { items.iter().map(|_| Ok(())).collect() }
        });
        batcher
            .submit((0..5).map(|i| (i, 40)).collect())
            .await
            .unwrap();
        let calls = calls.lock().unwrap();
        assert!(calls.iter().all(|c| c.len() <= 2), "{calls:?}");
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 5);
    }
}
