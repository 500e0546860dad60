//! [`SqsQueue`]: one SQS queue (and its dead-letter queue) as a
//! [`Queue`](crate::backend::Queue).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::OnceCell;

use super::batcher::Batcher;
use super::error::{STALE_RECEIPT_CODES, classify};
use super::provision::{QueueUrls, resolve};
use super::{MAX_DELAY, MAX_SQS_BYTES};
use crate::backend::{BackendError, DeadLetter, Message, Queue, QueueDepth, Received, Result};

/// Message attribute that says how the body is encoded; absent for plain text.
const ENCODING_ATTR: &str = "stackctl-body";
/// The body is base64 of the payload (it was not valid SQS text).
const ENCODING_BASE64: &str = "b64";
/// Room kept for the encoding attribute within [`MAX_SQS_BYTES`].
const ATTR_RESERVE: usize = 64;
/// How long a look at the dead-letter queue hides its messages (they are
/// made visible again right after).
const PEEK_VISIBILITY_SECS: i32 = 30;
/// How long a redrive has to move the messages it took.
const REDRIVE_VISIBILITY_SECS: i32 = 60;
/// Most entries in one SQS batch call.
const MAX_BATCH: usize = 10;
/// Most messages SQS returns from one receive.
const MAX_RECEIVE: usize = 10;
/// Longest SQS long poll, in seconds.
const MAX_WAIT_SECS: u64 = 20;
/// Longest SQS visibility timeout, in seconds.
const MAX_VISIBILITY_SECS: u64 = 12 * 3600;
/// SendMessageBatch calls in flight at once per queue and process: more
/// entries than fit wait and share the next call.
const SEND_IN_FLIGHT: usize = 4;
/// DeleteMessageBatch calls in flight at once per queue and process.
const DELETE_IN_FLIGHT: usize = 4;
/// ChangeMessageVisibilityBatch calls in flight at once per queue and process.
const EXTEND_IN_FLIGHT: usize = 2;
/// Tries for entries a batch call reports failed for a transient reason.
const BATCH_TRIES: u32 = 5;

/// One standard SQS queue with its dead-letter queue.
pub struct SqsQueue {
    client: Client,
    queue: String,
    urls: OnceCell<QueueUrls>,
    batchers: OnceCell<Batchers>,
}

/// The shared batch calls on the main queue.
struct Batchers {
    send: Batcher<Outgoing>,
    delete: Batcher<String>,
    extend: Batcher<(String, i32)>,
}

impl Batchers {
    fn start(client: &Client, queue: &str, url: &str) -> Self {
        let on = Arc::new(On {
            client: client.clone(),
            queue: queue.to_string(),
            url: url.to_string(),
        });
        let (a, b, c) = (on.clone(), on.clone(), on);
        Self {
            send: Batcher::start(
                "send_message_batch",
                MAX_BATCH,
                MAX_SQS_BYTES,
                SEND_IN_FLIGHT,
                move |batch: Vec<Outgoing>| {
                    let on = a.clone();
                    async move { on.send(&batch).await }
                },
            ),
            delete: Batcher::start(
                "delete_message_batch",
                MAX_BATCH,
                usize::MAX,
                DELETE_IN_FLIGHT,
                move |receipts: Vec<String>| {
                    let on = b.clone();
                    async move { on.delete(&receipts).await }
                },
            ),
            extend: Batcher::start(
                "change_message_visibility_batch",
                MAX_BATCH,
                usize::MAX,
                EXTEND_IN_FLIGHT,
                move |entries: Vec<(String, i32)>| {
                    let on = c.clone();
                    async move { on.extend(&entries).await }
                },
            ),
        }
    }
}

/// One queue URL and the client that calls it: the batch calls, each
/// answering one result per entry.
struct On {
    client: Client,
    queue: String,
    url: String,
}

impl On {
    /// Sends one batch, retrying the entries SQS failed for a transient
    /// reason; an entry SQS refuses (sender fault) fails alone.
    async fn send(&self, batch: &[Outgoing]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = (0..batch.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        for attempt in 0..BATCH_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
            let mut call = self.client.send_message_batch().queue_url(&self.url);
            for &i in &pending {
                let m = &batch[i];
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .delay_seconds(m.delay_secs);
                if let Some(encoding) = m.encoding {
                    match string_attr(encoding) {
                        Ok(attr) => entry = entry.message_attributes(ENCODING_ATTR, attr),
                        Err(e) => return fail_all(e, batch.len()),
                    }
                }
                match entry.build() {
                    Ok(entry) => call = call.entries(entry),
                    Err(e) => {
                        return fail_all(
                            BackendError::Other(format!("sqs batch entry: {e}")),
                            batch.len(),
                        );
                    }
                }
            }
            let out = match call.send().await {
                Ok(out) => out,
                Err(e) => {
                    let e = classify(&format!("send_message_batch {}", self.queue), e);
                    for &i in &pending {
                        results[i] = Some(Err(e.clone()));
                    }
                    return finish(results);
                }
            };
            let mut retry = Vec::new();
            for f in &out.failed {
                let Ok(i) = f.id.parse::<usize>() else {
                    continue;
                };
                if f.sender_fault {
                    results[i] = Some(Err(BackendError::Other(format!(
                        "sqs send_message_batch {}: {}: {}",
                        self.queue,
                        f.code,
                        f.message.as_deref().unwrap_or("no message")
                    ))));
                } else {
                    retry.push(i);
                }
            }
            for &i in &pending {
                if results[i].is_none() && !retry.contains(&i) {
                    results[i] = Some(Ok(()));
                }
            }
            pending = retry;
            if pending.is_empty() {
                return finish(results);
            }
        }
        for &i in &pending {
            results[i] = Some(Err(BackendError::Unavailable(format!(
                "sqs send_message_batch {}: an entry still failing after {BATCH_TRIES} tries",
                self.queue
            ))));
        }
        finish(results)
    }

    /// Deletes one batch; a receipt that is stale (the message was acked or
    /// delivered again since) counts as deleted.
    async fn delete(&self, receipts: &[String]) -> Vec<Result<()>> {
        let built: std::result::Result<Vec<_>, _> = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
            })
            .collect();
        let action = "delete_message_batch";
        let entries = match built {
            Ok(built) => built,
            Err(e) => {
                let error = BackendError::Other(format!("sqs {action} entry: {e}"));
                return fail_all(error, receipts.len());
            }
        };
        let sent = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await;
        match sent {
            Ok(out) => self.entry_results(action, receipts.len(), &out.failed),
            Err(e) => fail_all(
                classify(&format!("{action} {}", self.queue), e),
                receipts.len(),
            ),
        }
    }

    /// Changes the visibility of one batch of (receipt, seconds); a stale
    /// receipt is left alone, like the embedded queue does.
    async fn extend(&self, entries: &[(String, i32)]) -> Vec<Result<()>> {
        let built: std::result::Result<Vec<_>, _> = entries
            .iter()
            .enumerate()
            .map(|(i, (receipt, secs))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(*secs)
                    .build()
            })
            .collect();
        let action = "change_message_visibility_batch";
        let built = match built {
            Ok(built) => built,
            Err(e) => {
                let error = BackendError::Other(format!("sqs {action} entry: {e}"));
                return fail_all(error, entries.len());
            }
        };
        let sent = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(built))
            .send()
            .await;
        match sent {
            Ok(out) => self.entry_results(action, entries.len(), &out.failed),
            Err(e) => fail_all(
                classify(&format!("{action} {}", self.queue), e),
                entries.len(),
            ),
        }
    }

    /// One result per entry from a batch answer's failures: stale receipts
    /// count as done.
    fn entry_results(
        &self,
        action: &str,
        n: usize,
        failed: &[BatchResultErrorEntry],
    ) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = (0..n).map(|_| Ok(())).collect();
        for f in failed {
            let Ok(i) = f.id.parse::<usize>() else {
                continue;
            };
            if i >= n || STALE_RECEIPT_CODES.contains(&f.code.as_str()) {
                continue;
            }
            let text = format!(
                "sqs {action} {}: {}: {}",
                self.queue,
                f.code,
                f.message.as_deref().unwrap_or("no message")
            );
            results[i] = Err(if f.sender_fault {
                BackendError::Other(text)
            } else {
                BackendError::Unavailable(text)
            });
        }
        results
    }
}

fn fail_all(e: BackendError, n: usize) -> Vec<Result<()>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

fn finish(results: Vec<Option<Result<()>>>) -> Vec<Result<()>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(BackendError::Other("sqs: an entry was not sent".into()))))
        .collect()
}

/// A message ready for a batch entry.
struct Outgoing {
    body: String,
    encoding: Option<&'static str>,
    delay_secs: i32,
}

impl Outgoing {
    /// What SQS counts against its size limits.
    fn size(&self) -> usize {
        self.body.len()
            + self
                .encoding
                .map_or(0, |e| ENCODING_ATTR.len() + "String".len() + e.len())
    }
}

fn secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Whether SQS accepts `text` as a message body (its XML character range).
fn is_sqs_text(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

impl SqsQueue {
    /// A queue by name or URL; `urls` when already known (just created).
    pub fn new(client: Client, queue: &str, urls: Option<QueueUrls>) -> Self {
        Self {
            client,
            queue: queue.to_string(),
            urls: OnceCell::new_with(urls),
            batchers: OnceCell::new(),
        }
    }

    /// The shared batch calls on the main queue, started on first use (on
    /// the runtime that uses the queue).
    async fn batchers(&self) -> Result<&Batchers> {
        let url = self.resolve().await?.main.clone();
        Ok(self
            .batchers
            .get_or_init(|| async { Batchers::start(&self.client, &self.queue, &url) })
            .await)
    }

    /// The queue's and its dead-letter queue's URLs, looked up once.
    pub async fn resolve(&self) -> Result<&QueueUrls> {
        self.urls
            .get_or_try_init(|| resolve(&self.client, &self.queue))
            .await
    }

    /// The batch entry of `message`; a body SQS cannot hold is refused
    /// (every byte of a message stays in SQS).
    fn outgoing(&self, message: Message) -> Result<Outgoing> {
        let delay_secs = secs_up(message.delay.min(MAX_DELAY)) as i32;
        let (body, encoding) = match String::from_utf8(message.body) {
            Ok(text) if is_sqs_text(&text) => (text, None),
            Ok(text) => (BASE64.encode(text.as_bytes()), Some(ENCODING_BASE64)),
            Err(e) => (BASE64.encode(e.as_bytes()), Some(ENCODING_BASE64)),
        };
        let out = Outgoing {
            body,
            encoding,
            delay_secs,
        };
        if out.size() > MAX_SQS_BYTES {
            return Err(BackendError::TooLarge(format!(
                "a message of {} bytes{} exceeds the SQS limit of {MAX_SQS_BYTES} bytes",
                out.size(),
                if out.encoding.is_some() {
                    " (base64: the body is not SQS text)"
                } else {
                    ""
                }
            )));
        }
        Ok(out)
    }

    fn incoming(&self, m: aws_sdk_sqs::types::Message) -> Received {
        let receive_count = m
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let sent_at = m
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|v| v.parse().ok());
        let encoding = m
            .message_attributes
            .as_ref()
            .and_then(|a| a.get(ENCODING_ATTR))
            .and_then(|v| v.string_value.clone());
        let id = m.message_id.unwrap_or_default();
        let text = m.body.unwrap_or_default();
        // A body that cannot be restored is delivered empty: its consumer
        // fails to decode it and it ends in the dead-letter queue, instead
        // of blocking the messages received with it.
        let body = match encoding.as_deref() {
            None => text.into_bytes(),
            Some(ENCODING_BASE64) => BASE64.decode(&text).unwrap_or_else(|e| {
                tracing::error!(queue = %self.queue, message = %id, "undecodable base64 body: {e}");
                Vec::new()
            }),
            Some(other) => {
                tracing::error!(queue = %self.queue, message = %id, "unknown body encoding `{other}`");
                Vec::new()
            }
        };
        Received {
            id,
            receipt: m.receipt_handle.unwrap_or_default(),
            body,
            receive_count,
            sent_at,
        }
    }

    /// Up to ten messages of the dead-letter queue `dead`, each with its
    /// send time, invisible for `visibility` seconds. Waits a second: a
    /// long poll asks every SQS server, so an empty answer means empty.
    async fn receive_dead(
        &self,
        dead: &str,
        want: usize,
        visibility: i32,
    ) -> Result<Vec<(Received, i64)>> {
        let got = self
            .client
            .receive_message()
            .queue_url(dead)
            .max_number_of_messages(want.min(MAX_RECEIVE) as i32)
            .visibility_timeout(visibility)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names(ENCODING_ATTR)
            .send()
            .await
            .map_err(|e| classify(&format!("receive_message {dead}"), e))?
            .messages
            .unwrap_or_default();
        Ok(got
            .into_iter()
            .map(|m| {
                let sent_at = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                (self.incoming(m), sent_at)
            })
            .collect())
    }

    /// Sends `batch` to the queue at `url` (the main queue or its
    /// dead-letter queue) outside the shared batchers: the first error.
    async fn send_batch(&self, url: &str, batch: Vec<Outgoing>) -> Result<()> {
        self.on(url).send(&batch).await.into_iter().collect()
    }

    /// Deletes `receipts` from the queue at `url`: the first error.
    async fn delete_batch(&self, url: &str, receipts: Vec<String>) -> Result<()> {
        self.on(url).delete(&receipts).await.into_iter().collect()
    }

    fn on(&self, url: &str) -> On {
        On {
            client: self.client.clone(),
            queue: self.queue.clone(),
            url: url.to_string(),
        }
    }

    async fn counts(&self, url: &str) -> Result<(u64, u64, u64)> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| classify(&format!("get_queue_attributes {url}"), e))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |name: QueueAttributeName| {
            attrs
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        ))
    }
}

fn string_attr(value: &str) -> Result<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| BackendError::Other(format!("sqs message attribute: {e}")))
}

/// Packs messages in order into batches of at most [`MAX_BATCH`] entries and
/// [`MAX_SQS_BYTES`] in all.
fn batches(messages: Vec<Outgoing>) -> Vec<Vec<Outgoing>> {
    let mut out: Vec<Vec<Outgoing>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let size = m.size();
        match out.last_mut() {
            Some(batch) if batch.len() < MAX_BATCH && bytes + size <= MAX_SQS_BYTES => {
                bytes += size;
                batch.push(m);
            }
            _ => {
                bytes = size;
                out.push(vec![m]);
            }
        }
    }
    out
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, messages: Vec<Message>) -> Result<()> {
        let entries = messages
            .into_iter()
            .map(|m| {
                let out = self.outgoing(m)?;
                let size = out.size();
                Ok((out, size))
            })
            .collect::<Result<Vec<_>>>()?;
        self.batchers().await?.send.submit(entries).await
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Received>> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let url = self.resolve().await?.main.clone();
        let visibility = secs_up(visibility).min(MAX_VISIBILITY_SECS) as i32;
        let mut wait = secs_up(wait).min(MAX_WAIT_SECS) as i32;
        loop {
            let want = (max - out.len()).min(MAX_RECEIVE);
            let got = self
                .client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(want as i32)
                .visibility_timeout(visibility)
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_attribute_names(ENCODING_ATTR)
                .send()
                .await
                .map_err(|e| classify(&format!("receive_message {}", self.queue), e))?
                .messages
                .unwrap_or_default();
            let n = got.len();
            out.extend(got.into_iter().map(|m| self.incoming(m)));
            // SQS hands out at most ten at a time: ask again at once while
            // full batches come back.
            if n < want || out.len() >= max {
                return Ok(out);
            }
            wait = 0;
        }
    }

    async fn ack(&self, receipts: &[String]) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut seen = HashSet::new();
        let unique: Vec<(String, usize)> = receipts
            .iter()
            .filter(|r| seen.insert(r.as_str()))
            .map(|r| (r.clone(), r.len()))
            .collect();
        self.batchers().await?.delete.submit(unique).await
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<()> {
        let secs = secs_up(visibility).min(MAX_VISIBILITY_SECS) as i32;
        // Like the embedded queue: extending a message that was acked or
        // redelivered since does nothing.
        self.batchers()
            .await?
            .extend
            .submit(vec![((receipt.to_string(), secs), receipt.len())])
            .await
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let urls = self.resolve().await?;
        let main = self.counts(&urls.main);
        let dead = async {
            match &urls.dead {
                Some(url) => self.counts(url).await.map(|(v, i, d)| v + i + d),
                None => Ok(0),
            }
        };
        let ((visible, in_flight, delayed), dead) =
            futures_util::future::try_join(main, dead).await?;
        Ok(QueueDepth {
            visible,
            in_flight,
            delayed,
            dead,
            oldest_visible_ms: None,
        })
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        let Some(dead) = self.resolve().await?.dead.clone() else {
            return Ok(Vec::new());
        };
        let mut out: Vec<DeadLetter> = Vec::new();
        let mut receipts = Vec::new();
        let mut seen = HashSet::new();
        while out.len() < max {
            let got = self
                .receive_dead(&dead, max - out.len(), PEEK_VISIBILITY_SECS)
                .await?;
            if got.is_empty() {
                break;
            }
            for (m, sent_at) in got {
                if seen.insert(m.id.clone()) {
                    receipts.push(m.receipt);
                    out.push(DeadLetter {
                        id: m.id,
                        body: m.body,
                        receive_count: m.receive_count,
                        sent_at,
                    });
                }
            }
        }
        // Visible again at once, for the next look or a redrive.
        for chunk in receipts.chunks(MAX_BATCH) {
            let mut call = self
                .client
                .change_message_visibility_batch()
                .queue_url(&dead);
            for (i, receipt) in chunk.iter().enumerate() {
                call = call.entries(
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| BackendError::Other(format!("sqs batch entry: {e}")))?,
                );
            }
            call.send()
                .await
                .map_err(|e| classify(&format!("change_message_visibility_batch {dead}"), e))?;
        }
        out.sort_by_key(|d| d.sent_at);
        Ok(out)
    }

    async fn redrive(&self, max: usize) -> Result<usize> {
        let urls = self.resolve().await?;
        let Some(dead) = urls.dead.clone() else {
            return Ok(0);
        };
        let main = urls.main.clone();
        let mut moved = 0;
        while moved < max {
            let got = self
                .receive_dead(&dead, max - moved, REDRIVE_VISIBILITY_SECS)
                .await?;
            if got.is_empty() {
                break;
            }
            let receipts: Vec<String> = got.iter().map(|(m, _)| m.receipt.clone()).collect();
            let outgoing = got
                .into_iter()
                .map(|(m, _)| {
                    self.outgoing(Message {
                        body: m.body,
                        delay: Duration::ZERO,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            // Sent before deleted: a failure in between leaves a copy in
            // both queues, never in neither.
            for batch in batches(outgoing) {
                self.send_batch(&main, batch).await?;
            }
            moved += receipts.len();
            self.delete_batch(&dead, receipts).await?;
        }
        Ok(moved)
    }

    fn max_delay(&self) -> Duration {
        MAX_DELAY
    }

    fn max_message_bytes(&self) -> usize {
        MAX_SQS_BYTES - ATTR_RESERVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(n: usize) -> Outgoing {
        Outgoing {
            body: "x".repeat(n),
            encoding: None,
            delay_secs: 0,
        }
    }

    #[test]
    fn batches_respect_count_and_size() {
        let sizes: Vec<usize> = batches((0..25).map(|_| out(10)).collect())
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big = 100 * 1024;
        let sizes: Vec<usize> = batches(vec![out(big), out(big), out(big), out(10)])
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [2, 2]);
    }

    #[test]
    fn sqs_text_excludes_control_characters() {
        assert!(is_sqs_text("{\"a\":\"é\\n\"}\n\t"));
        assert!(!is_sqs_text("a\u{0}b"));
        assert!(!is_sqs_text("\u{FFFF}"));
        assert_eq!(secs_up(Duration::from_millis(1)), 1);
        assert_eq!(secs_up(Duration::ZERO), 0);
    }
}
