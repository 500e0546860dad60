//! The embedded queues: rows of one `messages` table, per queue name, with
//! a visibility time, a receive count and a dead flag (the dead-letter queue).
//!
//! Waiting receivers are woken at once by sends from the same handle and
//! poll for other processes' sends with an interval that starts at 1 ms
//! after activity and doubles up to 50 ms while idle.
//!
//! Hand-off: while receivers of this handle are waiting (the roles of one
//! process share a handle), a send stores up to as many messages as they
//! asked for already received once (receive count 1, invisible for their
//! visibility timeout) in the same transaction, and passes them to them in
//! memory after the commit. That spares the receive's own durable write
//! and a database read on the way from one stage to the next, and changes
//! nothing a crash can see: a process that dies with a handed-off message
//! leaves it in flight, and it comes back when its visibility ends, as any
//! received message would.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use super::{Db, GcClock, ms, now_ms, sql_err};
use crate::backend::{BackendError, DeadLetter, Message, Queue, QueueDepth, Received, Result};
use crate::config::QueueConfig;

/// Longest delay accepted; the same as SQS so that the local stack splits
/// long sleeps exactly like the AWS one.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Largest message body.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
const MIN_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(50);

/// One named queue in the embedded database.
pub struct EmbeddedQueue {
    pub(super) db: Arc<Db>,
    name: &'static str,
    max_receives: u32,
    retention_ms: i64,
    notify: Notify,
    poll_us: AtomicU64,
    gc: GcClock,
    local: Mutex<Local>,
}

/// The hand-off between this handle's senders and its waiting receivers.
#[derive(Debug, Default)]
struct Local {
    /// How many messages the receivers waiting now asked for, in all.
    wanted: usize,
    /// The visibility timeout the latest of them asked for.
    visibility: Duration,
    /// Leases promised by sends that have not committed yet.
    reserved: usize,
    /// Messages stored as received, waiting to be taken, with the time
    /// their lease ends (ms since the epoch).
    ready: VecDeque<(Received, i64)>,
}

/// Leases a send reserved for waiting receivers (see [`EmbeddedQueue::begin_send`]);
/// gives back what it did not use when dropped.
pub(crate) struct Lease<'a> {
    queue: &'a EmbeddedQueue,
    /// How many of the send's undelayed messages to store as received.
    count: usize,
    /// Their visibility timeout in ms.
    visibility_ms: i64,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.count > 0
            && let Ok(mut local) = self.queue.local.lock()
        {
            local.reserved = local.reserved.saturating_sub(self.count);
        }
    }
}

/// What a send's transaction leased: to hand over after the commit.
pub(crate) type Leased = Vec<(Received, i64)>;

/// Registers a receiver as waiting for as long as it lives.
struct Waiting<'a> {
    queue: &'a EmbeddedQueue,
    max: usize,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut local) = self.queue.local.lock() {
            local.wanted = local.wanted.saturating_sub(self.max);
        }
    }
}

impl EmbeddedQueue {
    pub(crate) fn new(db: Arc<Db>, name: &'static str, config: &QueueConfig) -> Self {
        Self {
            db,
            name,
            max_receives: config.max_receives,
            retention_ms: ms(config.retention.std()),
            notify: Notify::new(),
            poll_us: AtomicU64::new(MIN_POLL.as_micros() as u64),
            gc: GcClock::default(),
            local: Mutex::new(Local::default()),
        }
    }

    /// The queue's name in the `messages` table.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Checks `messages` and reserves leases for this handle's waiting
    /// receivers; then [`insert`](Self::insert) in a transaction and
    /// [`end_send`](Self::end_send) after it.
    pub(crate) fn begin_send(&self, messages: &[Message]) -> Result<Lease<'_>> {
        if let Some(m) = messages.iter().find(|m| m.body.len() > MAX_MESSAGE_BYTES) {
            return Err(BackendError::TooLarge(format!(
                "message of {} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit",
                m.body.len()
            )));
        }
        let mut lease = Lease {
            queue: self,
            count: 0,
            visibility_ms: 0,
        };
        if let Ok(mut local) = self.local.lock()
            && local.wanted > 0
        {
            let open = local
                .wanted
                .saturating_sub(local.ready.len() + local.reserved);
            let undelayed = messages.iter().filter(|m| m.delay.is_zero()).count();
            lease.count = open.min(undelayed);
            lease.visibility_ms = ms(local.visibility);
            local.reserved += lease.count;
        }
        Ok(lease)
    }

    /// Inserts `messages` into `queue` inside the caller's transaction, the
    /// first `lease.count` undelayed ones as already received; returns those.
    pub(crate) fn insert(
        c: &Connection,
        queue: &str,
        messages: Vec<Message>,
        lease: (usize, i64),
        now: i64,
    ) -> Result<Leased> {
        let (mut to_lease, visibility) = lease;
        let mut leased = Vec::with_capacity(to_lease);
        let mut insert = c
            .prepare_cached(
                "INSERT INTO messages (queue, body, visible_at, sent_at, receive_count) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sql_err)?;
        for m in messages {
            if to_lease > 0 && m.delay.is_zero() {
                to_lease -= 1;
                let until = now + visibility;
                insert
                    .execute(params![queue, m.body, until, now, 1])
                    .map_err(sql_err)?;
                let seq = c.last_insert_rowid();
                leased.push((
                    Received {
                        id: seq.to_string(),
                        receipt: format!("{seq}.1"),
                        body: m.body,
                        receive_count: 1,
                        sent_at: Some(now),
                    },
                    until,
                ));
            } else {
                let delay = ms(m.delay.min(MAX_DELAY));
                insert
                    .execute(params![queue, m.body, now + delay, now, 0])
                    .map_err(sql_err)?;
            }
        }
        Ok(leased)
    }

    /// After the send's transaction: hands what it leased to the waiting
    /// receivers and wakes them.
    pub(crate) fn end_send(&self, lease: Lease<'_>, leased: Leased) {
        if !leased.is_empty()
            && let Ok(mut local) = self.local.lock()
        {
            local.ready.extend(leased);
        }
        drop(lease);
        self.notify.notify_waiters();
    }

    /// The lease's count and visibility, for [`insert`](Self::insert).
    pub(crate) fn lease_terms(lease: &Lease<'_>) -> (usize, i64) {
        (lease.count, lease.visibility_ms)
    }

    /// Takes up to `max` handed-off messages whose lease has not ended.
    fn take_ready(&self, max: usize) -> Vec<Received> {
        let Ok(mut local) = self.local.lock() else {
            return Vec::new();
        };
        if local.ready.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((message, until)) = local.ready.pop_front() else {
                break;
            };
            // A lease that ended is visible in the database again: leave it there.
            if until > now {
                out.push(message);
            }
        }
        out
    }

    fn start_waiting(&self, max: usize, visibility: Duration) -> Waiting<'_> {
        if let Ok(mut local) = self.local.lock() {
            local.wanted += max;
            local.visibility = visibility;
        }
        Waiting { queue: self, max }
    }

    /// Receives whatever is visible now, without waiting.
    async fn receive_now(&self, max: usize, visibility: Duration) -> Result<Vec<Received>> {
        let queue = self.name;
        let max_receives = i64::from(self.max_receives);
        let vis = ms(visibility);
        let now = now_ms();
        let sweep = self.gc.due(now).then_some(self.retention_ms);
        self.db
            .write(move |c| {
                if let Some(retention) = sweep {
                    c.execute(
                        "DELETE FROM messages WHERE queue = ?1 AND sent_at < ?2",
                        params![queue, now - retention],
                    )
                    .map_err(sql_err)?;
                }
                let mut out = Vec::new();
                let mut select = c
                    .prepare_cached(
                        "SELECT seq, body, receive_count, sent_at FROM messages \
                         WHERE queue = ?1 AND dead = 0 AND visible_at <= ?2 \
                         ORDER BY visible_at, seq LIMIT ?3",
                    )
                    .map_err(sql_err)?;
                loop {
                    let want = max - out.len();
                    let rows: Vec<(i64, Vec<u8>, i64, i64)> = select
                        .query_map(params![queue, now, want as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .map_err(sql_err)?
                        .collect::<std::result::Result<_, _>>()
                        .map_err(sql_err)?;
                    let exhausted = rows.len() < want;
                    for (seq, body, count, sent_at) in rows {
                        if count >= max_receives {
                            c.execute("UPDATE messages SET dead = 1 WHERE seq = ?1", [seq])
                                .map_err(sql_err)?;
                            continue;
                        }
                        c.execute(
                            "UPDATE messages SET receive_count = ?2, visible_at = ?3 WHERE seq = ?1",
                            params![seq, count + 1, now + vis],
                        )
                        .map_err(sql_err)?;
                        out.push(Received {
                            id: seq.to_string(),
                            receipt: format!("{seq}.{}", count + 1),
                            body,
                            receive_count: (count + 1) as u32,
                            sent_at: Some(sent_at),
                        });
                    }
                    if exhausted || out.len() >= max {
                        return Ok(out);
                    }
                }
            })
            .await
    }

    /// When the next message becomes visible, if any is waiting.
    async fn next_visible(&self) -> Result<Option<i64>> {
        let queue = self.name;
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT MIN(visible_at) FROM messages WHERE queue = ?1 AND dead = 0",
                    [queue],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map_err(sql_err)
            })
            .await
    }

    fn poll_interval(&self, found: bool) -> Duration {
        let next = if found {
            MIN_POLL.as_micros() as u64
        } else {
            (self.poll_us.load(Ordering::Relaxed) * 2).min(MAX_POLL.as_micros() as u64)
        };
        self.poll_us.store(next, Ordering::Relaxed);
        Duration::from_micros(next)
    }
}

fn parse_receipt(receipt: &str) -> Option<(i64, i64)> {
    let (seq, count) = receipt.split_once('.')?;
    Some((seq.parse().ok()?, count.parse().ok()?))
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, messages: Vec<Message>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let lease = self.begin_send(&messages)?;
        let terms = Self::lease_terms(&lease);
        let queue = self.name;
        let single = messages.len() == 1;
        let insert = move |c: &Connection| Self::insert(c, queue, messages, terms, now_ms());
        let leased = if single {
            self.db.write_one_statement(insert).await?
        } else {
            self.db.write(insert).await?
        };
        self.end_send(lease, leased);
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Received>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let handed = self.take_ready(max);
            if !handed.is_empty() {
                return Ok(handed);
            }
            let next = self.next_visible().await?;
            let now = now_ms();
            if next.is_some_and(|t| t <= now) {
                let got = self.receive_now(max, visibility).await?;
                if !got.is_empty() {
                    self.poll_interval(true);
                    return Ok(got);
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            let mut nap = self.poll_interval(false).min(left);
            if let Some(t) = next.filter(|t| *t > now) {
                nap = nap.min(Duration::from_millis((t - now) as u64));
            }
            // Only while blocked here: a receiver that is busy reading the
            // database or about to return is not promised messages.
            let _waiting = self.start_waiting(max, visibility);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn ack(&self, receipts: &[String]) -> Result<()> {
        let parsed: Vec<(i64, i64)> = receipts.iter().filter_map(|r| parse_receipt(r)).collect();
        if parsed.is_empty() {
            return Ok(());
        }
        let queue = self.name;
        self.db
            .write(move |c| {
                let mut delete = c
                    .prepare_cached(
                        "DELETE FROM messages WHERE seq = ?1 AND receive_count = ?2 AND queue = ?3 AND dead = 0",
                    )
                    .map_err(sql_err)?;
                for (seq, count) in parsed {
                    delete.execute(params![seq, count, queue]).map_err(sql_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<()> {
        let Some((seq, count)) = parse_receipt(receipt) else {
            return Err(BackendError::Other(format!(
                "malformed receipt `{receipt}`"
            )));
        };
        let queue = self.name;
        let until = now_ms() + ms(visibility);
        self.db
            .write(move |c| {
                c.execute(
                    "UPDATE messages SET visible_at = ?1 \
                     WHERE seq = ?2 AND receive_count = ?3 AND queue = ?4 AND dead = 0",
                    params![until, seq, count, queue],
                )
                .map_err(sql_err)?;
                Ok(())
            })
            .await
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let queue = self.name;
        let now = now_ms();
        self.db
            .read(move |c| {
                let row = c
                    .query_row(
                        "SELECT \
                           COALESCE(SUM(dead = 0 AND visible_at <= ?2), 0), \
                           COALESCE(SUM(dead = 0 AND visible_at > ?2 AND receive_count > 0), 0), \
                           COALESCE(SUM(dead = 0 AND visible_at > ?2 AND receive_count = 0), 0), \
                           COALESCE(SUM(dead = 1), 0), \
                           MIN(CASE WHEN dead = 0 AND visible_at <= ?2 THEN visible_at END) \
                         FROM messages WHERE queue = ?1",
                        params![queue, now],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, i64>(2)?,
                                r.get::<_, i64>(3)?,
                                r.get::<_, Option<i64>>(4)?,
                            ))
                        },
                    )
                    .optional()
                    .map_err(sql_err)?
                    .unwrap_or_default();
                Ok(QueueDepth {
                    visible: row.0 as u64,
                    in_flight: row.1 as u64,
                    delayed: row.2 as u64,
                    dead: row.3 as u64,
                    // Since it became visible: its send, its delay's end,
                    // or the end of the lease of a delivery that failed.
                    oldest_visible_ms: row.4.map(|at| now.saturating_sub(at).max(0) as u64),
                })
            })
            .await
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        let queue = self.name;
        self.db
            .read(move |c| {
                let mut select = c
                    .prepare_cached(
                        "SELECT seq, body, receive_count, sent_at FROM messages \
                         WHERE queue = ?1 AND dead = 1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(sql_err)?;
                let rows = select
                    .query_map(params![queue, max as i64], |r| {
                        Ok(DeadLetter {
                            id: r.get::<_, i64>(0)?.to_string(),
                            body: r.get(1)?,
                            receive_count: r.get::<_, i64>(2)? as u32,
                            sent_at: r.get(3)?,
                        })
                    })
                    .map_err(sql_err)?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(sql_err)?;
                Ok(rows)
            })
            .await
    }

    async fn redrive(&self, max: usize) -> Result<usize> {
        let queue = self.name;
        let now = now_ms();
        self.db
            .write(move |c| {
                let moved = c
                    .execute(
                        "UPDATE messages SET dead = 0, receive_count = 0, visible_at = ?2 \
                         WHERE seq IN (SELECT seq FROM messages WHERE queue = ?1 AND dead = 1 \
                         ORDER BY seq LIMIT ?3)",
                        params![queue, now, max as i64],
                    )
                    .map_err(sql_err)?;
                Ok(moved)
            })
            .await
    }

    fn max_delay(&self) -> Duration {
        MAX_DELAY
    }

    fn max_message_bytes(&self) -> usize {
        MAX_MESSAGE_BYTES
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
