//! Backends: the event stream, the work queue and the state store, as
//! object-safe async traits with one factory ([`open`]). Every backend passes
//! the same conformance suite (`backend::conformance`). The embedded backend
//! (SQLite, multi-process) is the local default; SQS and Redis (issue 4) sit
//! behind cargo features.
//!
//! Semantics every backend keeps (the conformance suite checks them):
//! - A `send` that returns `Ok` is durable: a crash after it loses nothing.
//! - Queues are at-least-once: a received message is invisible for the
//!   visibility timeout, comes back unless acked, and moves to the dead-letter
//!   queue once it has been received `max_receives` times without an ack.
//! - State writes that must happen once (step outcomes, run creation, wait
//!   resolution, idempotency claims) are atomic compare-and-set operations
//!   that report whether this caller won.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{QueuesConfig, Role};
use crate::functions::FunctionDef;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqs")]
pub mod sqs;

/// A backend failure. `Unavailable` is transient (retry, or answer 503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot be reached or is overloaded; retry later.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A message or value is larger than the backend accepts.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Stored data could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Any other backend error, with the backend's own message.
    #[error("{0}")]
    Other(String),
}

/// Result alias for backend calls.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Opaque payload (the engine puts JSON here).
    pub body: Vec<u8>,
    /// Invisible until this much time has passed (capped at `Queue::max_delay`).
    pub delay: Duration,
}

/// A received message, invisible to other consumers until acked or its
/// visibility timeout passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Stable id of the message (the same on every delivery).
    pub id: String,
    /// Handle for `ack`/`extend`; valid for this delivery only.
    pub receipt: String,
    /// The payload as sent.
    pub body: Vec<u8>,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
    /// When it was sent (ms since the epoch), where the backend tells.
    pub sent_at: Option<i64>,
}

/// A message in a queue's dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The message's id.
    pub id: String,
    /// The payload as sent.
    pub body: Vec<u8>,
    /// Deliveries before it was dead-lettered (SQS: as counted so far).
    pub receive_count: u32,
    /// When it was first sent (ms since the epoch).
    pub sent_at: i64,
}

/// Approximate counts of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet acked.
    pub in_flight: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
    /// In the dead-letter queue.
    pub dead: u64,
    /// How long the oldest visible message has been ready to be received
    /// (ms), where the backend can tell cheaply; `None` when none is
    /// visible or the backend cannot tell (SQS: only CloudWatch's
    /// `ApproximateAgeOfOldestMessage` knows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_visible_ms: Option<u64>,
}

/// A durable at-least-once queue with delays and visibility timeouts: the
/// event stream (event API → runner) and the work queue (runner/executors →
/// executors) are both this.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Enqueues messages; `Ok` means every one of them is durable.
    async fn send(&self, messages: Vec<Message>) -> Result<()>;
    /// Receives up to `max` visible messages, waiting up to `wait` for the
    /// first one; each stays invisible for `visibility`.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Received>>;
    /// Deletes received messages. Acking a stale receipt is not an error.
    async fn ack(&self, receipts: &[String]) -> Result<()>;
    /// Keeps a received message invisible for `visibility` from now.
    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<()>;
    /// Approximate depth, for metrics and scaling.
    async fn depth(&self) -> Result<QueueDepth>;
    /// The longest delay `send` accepts (SQS: 15 minutes); callers split
    /// longer waits by re-enqueueing.
    fn max_delay(&self) -> Duration;
    /// The largest message body accepted, in bytes.
    fn max_message_bytes(&self) -> usize;
    /// Up to `max` messages of the dead-letter queue, oldest first where
    /// the backend can tell, left where they are.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>>;
    /// Moves up to `max` messages from the dead-letter queue back to the
    /// queue, as new messages (their deliveries counted from zero), and
    /// says how many moved. At least once: a failure part-way can leave a
    /// message in both, which the engine's handlers tolerate.
    async fn redrive(&self, max: usize) -> Result<usize>;
    /// The queue as `Any`, for a state store that can write to it in its
    /// own transactions (the embedded backend: queues and state in one
    /// database). `None`: only through this trait.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// The writes that end a step (see [`StateStore::end_step`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StepEnd {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step_id: String,
    /// Its outcome, written once.
    pub outcome: StepOutcome,
    /// When the outcome was reached (ms since the epoch); also the run's end.
    pub at: i64,
    /// The attempt that reached it, if any.
    pub attempt: Option<Attempt>,
    /// Jobs for the steps that may run next, sent to the work queue.
    pub jobs: Vec<Message>,
    /// Ends the run with this status and error (when this was its last step
    /// or it failed); `None` leaves it running.
    pub finish: Option<(RunStatus, Option<String>)>,
}

/// An event as the event API stores it (Inngest wire format plus our id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Internal id (ULID) assigned on ingestion and returned in `ids`.
    pub internal_id: String,
    /// The sender's `id`, the idempotency key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Event name, e.g. `user/signup`.
    pub name: String,
    /// Event payload (an object).
    #[serde(default)]
    pub data: Value,
    /// User context (an object), if sent.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub user: Value,
    /// Milliseconds since the epoch (sender's, or ingestion time).
    pub ts: i64,
    /// Event schema version, if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<String>,
    /// The W3C `traceparent` of the span that ingested the event (of an
    /// unsampled request, which has no span: the context that span would
    /// have had, flags `00`), when the event API traces: only on the event
    /// stream, the runner takes it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, steps scheduled or running.
    Running,
    /// Every step completed or skipped.
    Completed,
    /// A step failed after its retries.
    Failed,
    /// Cancelled by the API or a `cancel_on` event.
    Cancelled,
    /// Never started: over its function's rate limit (the error says so).
    Skipped,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 5] = [
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::Skipped,
    ];

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// A run of a function for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Deterministic from function id and event (so a redelivered event
    /// cannot create a second run).
    pub id: String,
    /// The function's id.
    pub function_id: String,
    /// The triggering event.
    pub event: Event,
    /// Current status.
    pub status: RunStatus,
    /// Why the run failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// When it reached a terminal status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// The W3C `traceparent` of the run's span (of an unsampled run, which
    /// has no span: the context it would have had, flags `00`), when the
    /// runner traces: the parent of its step attempts, sampled or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What became of a step; written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    /// Finished with an output (JSON; `null` for a timed-out wait).
    Completed {
        /// The step's output.
        output: Value,
    },
    /// Its `if` was false, or a predecessor was skipped and it has no other path.
    Skipped,
    /// Failed after its retries, or with a non-retryable error.
    Failed {
        /// The last error.
        error: String,
    },
}

/// A step's record within a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step id from the function.
    pub step_id: String,
    /// Attempts made so far (each with its error, if it failed).
    pub attempts: Vec<Attempt>,
    /// The outcome, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<StepOutcome>,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When the outcome was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
}

/// One attempt at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    /// Milliseconds since the epoch.
    pub ended_at: i64,
    /// The error, if the attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The executor host that made it (`executor.host`), when an executor did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Recorded when the attempt started and not ended yet: in progress, or
    /// interrupted (its executor stopped) when a later attempt exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub running: bool,
}

/// A pending `wait_for_event` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    /// The waiting run.
    pub run_id: String,
    /// The waiting step.
    pub step_id: String,
    /// Event name waited for.
    pub event_name: String,
    /// CEL over `event` and `async`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// Only events with `ts` at or after this count (the time the step was
    /// scheduled), so an event that arrived just before the wait was recorded
    /// still resolves it.
    pub since: i64,
    /// Milliseconds since the epoch when the wait times out.
    pub expires_at: i64,
}

/// The latest event of a debounce key's burst (see [`StateStore::debounce`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Debounced {
    /// The latest event.
    pub event: Event,
    /// When the burst's first event was debounced (ms since the epoch).
    pub since: i64,
    /// When its latest event was.
    pub last: i64,
}

/// Where an event went in a batch (see [`StateStore::batch_add`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Batched {
    /// The batch's id: the `candidate` of the event that opened it.
    pub id: String,
    /// How many events it holds now.
    pub size: u32,
    /// When it was opened (ms since the epoch).
    pub opened_at: i64,
}

/// A batch's events, in the order they joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The events; the first opened the batch.
    pub events: Vec<Event>,
    /// When it was opened (ms since the epoch).
    pub opened_at: i64,
}

/// Runs, steps, waits, idempotency keys, concurrency slots, throttle,
/// debounce and batch state and the function registry.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Registers (or replaces) a function.
    async fn put_function(&self, function: &FunctionDef) -> Result<()>;
    /// Every registered function, by id.
    async fn list_functions(&self) -> Result<Vec<FunctionDef>>;
    /// Removes a function; `false` if it did not exist.
    async fn delete_function(&self, id: &str) -> Result<bool>;

    /// Claims `key` for `owner` for `ttl`. Returns the owner that holds it
    /// now: `owner` itself when this call won or `owner` already held it.
    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<String>;

    /// Stores an event in the by-name index used to resolve waits recorded
    /// after the event arrived. Kept at least for `retention`.
    async fn index_event(&self, event: &Event, retention: Duration) -> Result<()>;
    /// Indexed events with this name and `ts >= since`, oldest first.
    async fn events_since(&self, name: &str, since: i64, limit: usize) -> Result<Vec<Event>>;

    /// Creates a run unless one with this id exists; `true` if created.
    async fn create_run(&self, run: &Run) -> Result<bool>;
    /// A run by id.
    async fn get_run(&self, run_id: &str) -> Result<Option<Run>>;
    /// Runs triggered by the event with this internal id.
    async fn runs_for_event(&self, internal_id: &str) -> Result<Vec<Run>>;
    /// Most recent runs first, optionally of one status.
    async fn list_runs(&self, status: Option<RunStatus>, limit: usize) -> Result<Vec<Run>>;
    /// Moves a running run to a terminal status; `false` if it had already ended.
    async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<String>,
        at: i64,
    ) -> Result<bool>;
    /// Deletes up to `limit` runs that ended before `before` (ms since the
    /// epoch), with their steps, waits and index entries; how many it
    /// deleted. Running runs are never deleted.
    async fn purge_finished(&self, before: i64, limit: usize) -> Result<usize>;
    /// Counts of runs by status (for /metrics).
    async fn run_counts(&self) -> Result<BTreeMap<RunStatus, u64>>;

    /// Appends an attempt to a step's record (creating the record).
    async fn record_attempt(&self, run_id: &str, step_id: &str, attempt: Attempt) -> Result<()>;
    /// Writes a step's outcome once: `true` if this call wrote it, `false`
    /// if an outcome already existed (which is then left unchanged).
    async fn set_outcome(
        &self,
        run_id: &str,
        step_id: &str,
        outcome: &StepOutcome,
        at: i64,
    ) -> Result<bool>;
    /// Every step record of a run.
    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>>;
    /// A run and its step records, read together (one round trip where the
    /// store can).
    async fn run_with_steps(&self, run_id: &str) -> Result<(Option<Run>, Vec<StepRecord>)> {
        let (run, steps) = tokio::join!(self.get_run(run_id), self.steps(run_id));
        Ok((run?, steps?))
    }

    /// Records a pending wait.
    async fn add_wait(&self, wait: &Wait) -> Result<()>;
    /// Pending waits for this event name.
    async fn waits_for(&self, event_name: &str) -> Result<Vec<Wait>>;
    /// Removes a wait; `true` if this call removed it (exactly one of the
    /// matching event and the timeout wins).
    async fn take_wait(&self, run_id: &str, step_id: &str) -> Result<bool>;

    /// Takes one of `limit` slots of `key` for `holder` until `lease`
    /// passes; `true` if granted (or already held by `holder`).
    async fn acquire_slot(
        &self,
        key: &str,
        holder: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool>;
    /// Gives a slot back.
    async fn release_slot(&self, key: &str, holder: &str) -> Result<()>;

    /// Reserves a start time for `holder` under `key`'s throttle: one start
    /// per `interval`, and up to `burst` more at once after a quiet spell
    /// (GCRA, with a theoretical arrival time per key; the store's clock
    /// decides). Returns the reserved start (ms since the epoch, never
    /// before now). Never refuses: a start past the others is reserved. The
    /// same holder asking again gets its reservation back, without taking
    /// another, until `keep` after the reserved start.
    async fn reserve_start(
        &self,
        key: &str,
        holder: &str,
        interval: Duration,
        burst: u32,
        keep: Duration,
    ) -> Result<i64>;

    /// Makes `event`, debounced at `at`, the latest of `key`'s burst: a new
    /// burst starts at `at` when the key holds none. An event older than
    /// the one held (a lower internal id: a redelivery after a later event
    /// arrived) changes nothing, and the one held again keeps its times.
    /// The key lapses `ttl` after the last change. Returns what the key
    /// holds now.
    async fn debounce(&self, key: &str, event: &Event, at: i64, ttl: Duration)
    -> Result<Debounced>;
    /// What `key` holds, if anything.
    async fn debounced(&self, key: &str) -> Result<Option<Debounced>>;
    /// Removes what `key` holds if its event is still `internal_id`
    /// (compare-and-delete); `true` if this call removed it.
    async fn take_debounced(&self, key: &str, internal_id: &str) -> Result<bool>;

    /// Puts `event` into `key`'s open batch, in one atomic step: an event
    /// already in a batch of `key` (a redelivery) joins none and gets that
    /// batch back; else it joins the open batch, or opens one (id
    /// `candidate`, opened `at`) when the key has none; the batch that
    /// reaches `max_size` events is sealed (the next event opens another).
    /// The batch and the event's membership are kept for `keep`.
    async fn batch_add(
        &self,
        key: &str,
        candidate: &str,
        event: &Event,
        max_size: u32,
        at: i64,
        keep: Duration,
    ) -> Result<Batched>;
    /// Seals `key`'s open batch if it is `batch_id`: no event joins it
    /// any more. Sealing a sealed batch changes nothing.
    async fn seal_batch(&self, key: &str, batch_id: &str) -> Result<()>;
    /// The batch `batch_id`, if it exists.
    async fn batch(&self, batch_id: &str) -> Result<Option<Batch>>;

    /// Creates `run` and, only if this call created it, sends `jobs` (its
    /// first steps) to `work`; `true` if created. The default does the two
    /// in that order, so a job never names a run that does not exist; a
    /// store that shares a database with `work` does both in one
    /// transaction (one durable write on the way from event to first step).
    async fn create_run_and_send(
        &self,
        run: &Run,
        work: &dyn Queue,
        jobs: Vec<Message>,
    ) -> Result<bool> {
        create_run_then_send(self, run, work, jobs).await
    }

    /// Writes a step's outcome once and, only if this call wrote it,
    /// records the attempt, sends the jobs to `work` and ends the run as
    /// `end.finish` says; `true` if this call wrote the outcome. The default
    /// does these in that order (a crash part-way leaves the outcome, from
    /// which a redelivered job moves the run on again); a store that shares
    /// a database with `work` does them in one transaction.
    async fn end_step(&self, end: StepEnd, work: &dyn Queue) -> Result<bool> {
        end_step_in_order(self, end, work).await
    }

    /// [`acquire_slot`](Self::acquire_slot) in rank order, in one atomic
    /// step: waiters whose registration expired are dropped; `holder`
    /// renews a slot it holds; else it takes a free slot only if fewer
    /// live waiters rank better (lower `rank`, ties by lower holder id) than
    /// there are free slots, and stops waiting; else it registers (or
    /// refreshes) itself as a waiter with `rank` until `wait` from now.
    /// `true` if granted or renewed. A waiter must ask again within `wait`
    /// to keep its place, so one that stopped asking blocks no one for
    /// longer than that.
    async fn acquire_slot_ranked(
        &self,
        key: &str,
        holder: &str,
        limit: u32,
        lease: Duration,
        rank: i64,
        wait: Duration,
    ) -> Result<bool>;
}

/// [`StateStore::create_run_and_send`] as separate writes, in order.
pub(crate) async fn create_run_then_send<S: StateStore + ?Sized>(
    state: &S,
    run: &Run,
    work: &dyn Queue,
    jobs: Vec<Message>,
) -> Result<bool> {
    let created = state.create_run(run).await?;
    if created && !jobs.is_empty() {
        work.send(jobs).await?;
    }
    Ok(created)
}

/// [`StateStore::end_step`] as separate writes, in order.
pub(crate) async fn end_step_in_order<S: StateStore + ?Sized>(
    state: &S,
    end: StepEnd,
    work: &dyn Queue,
) -> Result<bool> {
    let StepEnd {
        run_id,
        step_id,
        outcome,
        at,
        attempt,
        jobs,
        finish,
    } = end;
    if !state.set_outcome(&run_id, &step_id, &outcome, at).await? {
        return Ok(false);
    }
    if let Some(attempt) = attempt {
        state.record_attempt(&run_id, &step_id, attempt).await?;
    }
    if !jobs.is_empty() {
        work.send(jobs).await?;
    }
    if let Some((status, error)) = finish {
        state.finish_run(&run_id, status, error, at).await?;
    }
    Ok(true)
}

/// Which backend to use for queues and for state. The SQS and Redis kinds
/// always parse; opening one needs the engine's `sqs`/`redis` cargo features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// One SQLite database file shared by every engine process on this host.
    Embedded {
        /// Path of the database file.
        path: std::path::PathBuf,
    },
    /// SQS queues and Redis state: the AWS shape.
    SqsRedis {
        /// The event stream: a queue name (resolved in the SDK's account and
        /// region) or a queue URL.
        events_queue: String,
        /// The work queue: a queue name or URL.
        work_queue: String,
        /// `redis://[:password@]host:port[/db]`, or `rediss://` for TLS.
        redis_url: String,
        /// `redis_url` is a Redis Cluster (MemoryDB): the cluster protocol,
        /// every key in one hash slot.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redis_cluster: bool,
        /// Create the queues and their dead-letter queues when missing (local
        /// stacks; on AWS the provisioner owns them).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        create_queues: bool,
    },
    /// SQS queues with the embedded (SQLite) state store.
    SqsEmbedded {
        /// The event stream: a queue name or URL.
        events_queue: String,
        /// The work queue: a queue name or URL.
        work_queue: String,
        /// Path of the database file holding the state.
        path: std::path::PathBuf,
        /// Create the queues and their dead-letter queues when missing.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        create_queues: bool,
    },
    /// Embedded (SQLite) queues with Redis state.
    EmbeddedRedis {
        /// Path of the database file holding the queues.
        path: std::path::PathBuf,
        /// `redis://[:password@]host:port[/db]`, or `rediss://` for TLS.
        redis_url: String,
        /// `redis_url` is a Redis Cluster (MemoryDB): the cluster protocol,
        /// every key in one hash slot.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redis_cluster: bool,
    },
}

/// The engine's three backends.
#[derive(Clone)]
pub struct Backends {
    /// Event API → runner.
    pub events: Arc<dyn Queue>,
    /// Step jobs.
    pub work: Arc<dyn Queue>,
    /// Everything else.
    pub state: Arc<dyn StateStore>,
}

impl Backends {
    /// Whether the backends `role` works with answer, one cheap read each:
    /// the event API needs the events queue only; the runner the events
    /// queue and the state; the executor the work queue and the state.
    /// Readiness and a consumer paused by an outage ask this.
    pub async fn check(&self, role: Role) -> Result<()> {
        match role {
            Role::EventApi => {
                self.events.depth().await?;
            }
            Role::Executor => {
                let (queue, state) =
                    tokio::join!(self.work.depth(), self.state.get_run("health-check"));
                queue?;
                state?;
            }
            Role::Runner | Role::All => {
                let (queue, state) =
                    tokio::join!(self.events.depth(), self.state.get_run("health-check"));
                queue?;
                state?;
            }
        }
        Ok(())
    }
}

/// The kinds of backend the factory can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// SQLite on local disk, shared by the processes of one host.
    Embedded,
    /// SQS queues, Redis state.
    SqsRedis,
    /// SQS queues, SQLite state.
    SqsEmbedded,
    /// SQLite queues, Redis state.
    EmbeddedRedis,
}

impl BackendConfig {
    /// Which kind of backend this configures.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Embedded { .. } => Kind::Embedded,
            Self::SqsRedis { .. } => Kind::SqsRedis,
            Self::SqsEmbedded { .. } => Kind::SqsEmbedded,
            Self::EmbeddedRedis { .. } => Kind::EmbeddedRedis,
        }
    }
}

/// Builds the backends `config` describes. Opening the same store twice
/// (even from two processes) gives two handles that see each other's writes.
pub async fn open(config: &BackendConfig, queues: &QueuesConfig) -> Result<Backends> {
    match config {
        BackendConfig::Embedded { path } => embedded::open(path, queues).await,
        BackendConfig::SqsRedis {
            events_queue,
            work_queue,
            redis_url,
            redis_cluster,
            create_queues,
        } => {
            let state = open_redis(redis_url, *redis_cluster).await?;
            let (events, work) = open_sqs(events_queue, work_queue, *create_queues, queues).await?;
            Ok(Backends {
                events,
                work,
                state,
            })
        }
        BackendConfig::SqsEmbedded {
            events_queue,
            work_queue,
            path,
            create_queues,
        } => {
            let embedded = embedded::open(path, queues).await?;
            let (events, work) = open_sqs(events_queue, work_queue, *create_queues, queues).await?;
            Ok(Backends {
                events,
                work,
                state: embedded.state,
            })
        }
        BackendConfig::EmbeddedRedis {
            path,
            redis_url,
            redis_cluster,
        } => {
            let state = open_redis(redis_url, *redis_cluster).await?;
            let embedded = embedded::open(path, queues).await?;
            Ok(Backends { state, ..embedded })
        }
    }
}

#[cfg_attr(all(feature = "sqs", feature = "redis"), allow(dead_code))]
fn not_built(feature: &str) -> BackendError {
    BackendError::Other(format!(
        "this engine was built without the `{feature}` cargo feature"
    ))
}

#[cfg(feature = "sqs")]
async fn open_sqs(
    events_queue: &str,
    work_queue: &str,
    create_queues: bool,
    queues: &QueuesConfig,
) -> Result<(Arc<dyn Queue>, Arc<dyn Queue>)> {
    sqs::open_pair(events_queue, work_queue, create_queues, queues).await
}

#[cfg(not(feature = "sqs"))]
async fn open_sqs(
    _events_queue: &str,
    _work_queue: &str,
    _create_queues: bool,
    _queues: &QueuesConfig,
) -> Result<(Arc<dyn Queue>, Arc<dyn Queue>)> {
    Err(not_built("sqs"))
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str, cluster: bool) -> Result<Arc<dyn StateStore>> {
    Ok(Arc::new(redis::RedisState::open(url, cluster).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_url: &str, _cluster: bool) -> Result<Arc<dyn StateStore>> {
    Err(not_built("redis"))
}

/// Encodes events as one event-stream message body: a JSON array of
/// [`Event`]s (the event API batches the events of a request).
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_vec(events).unwrap_or_default()
}

/// Decodes an event-stream message body written by [`encode_events`].
pub fn decode_events(body: &[u8]) -> Result<Vec<Event>> {
    serde_json::from_slice(body).map_err(|e| BackendError::Corrupt(format!("event message: {e}")))
}
