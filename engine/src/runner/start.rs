//! Starting a run for an event under its function's flow control, shared
//! by the runner (events, cron ticks) and the executors (debounce jobs):
//!
//! - `idempotency`: the first run with a key claims it for 24 hours; later
//!   events with that key start nothing.
//! - `rate_limit`: a run over the limit is recorded as `skipped`.
//! - `throttle`: every run starts, but its first steps wait for the start
//!   it reserved (GCRA per key in the state store, see
//!   [`StateStore::reserve_start`]); the reservation belongs to the run, so
//!   an event delivered again finds it instead of taking another.
//! - `debounce`: an event does not start a run at once; it becomes its
//!   key's latest ([`StateStore::debounce`]) and sends a delayed job
//!   (`$debounce/<function>/<key>`) due when its quiet period (or the
//!   burst's timeout) ends. The job that comes due while its key's latest
//!   event is due starts that event's run (through everything above) and
//!   then removes it, only if no later event replaced it meanwhile. Run ids
//!   come from the event, so a job repeated after a crash starts nothing
//!   twice; every event sends its own job, so the latest always has one.
//! - `batch_events`: an event does not start a run at once; it joins its
//!   key's open batch ([`StateStore::batch_add`], atomic, one batch per
//!   event for good: a redelivered event finds its batch and joins none).
//!   A batch is named by the run id its first event would have, so its run
//!   is that event's run: the event that fills the batch starts it through
//!   everything above, and the event that opened it sends a delayed job
//!   (`$batch/<function>/<key>`, the batch's id as its run id) that seals
//!   and starts it at the timeout, or does nothing once the run exists.
//!   The events stay in the store under the batch id, read by the steps.
//!   The opener sends its job again when delivered again and the filler
//!   starts the run again, so a crash between gathering and starting
//!   loses nothing, and the deterministic run id starts nothing twice.
//!
//! [`StateStore::reserve_start`]: crate::backend::StateStore::reserve_start
//! [`StateStore::debounce`]: crate::backend::StateStore::debounce
//! [`StateStore::batch_add`]: crate::backend::StateStore::batch_add

use std::time::Duration;

use serde_json::Value;

use super::IDEMPOTENCY_TTL;
use super::flow::Flow;
use super::job::{Job, JobKind, now_ms, run_id};
use super::registry::{LoadedFunction, Registry};
use crate::backend::{BackendError, Debounced, Event, Run, RunStatus};
use crate::functions::{Debounce, Vars};
use crate::metrics::Metrics;
use crate::trace::Decision;

/// How long a throttled run's reservation is remembered after its start:
/// an event delivered again within it finds the run's reservation rather
/// than taking another.
const THROTTLE_KEEP: Duration = Duration::from_secs(3600);
/// How long a debounce key keeps its latest event past the last change:
/// longer than a queue keeps the job that will start its run.
const DEBOUNCE_KEEP: Duration = Duration::from_secs(7 * 86_400);
/// Prefix of the step id of a debounce job (`$debounce/<function>/<key>`).
const DEBOUNCE_PREFIX: &str = "$debounce/";
/// How long a batch's events (which its run's steps read) and its events'
/// memberships are kept after the batch last changed: as long as runs are
/// kept by default (`runner.run_retention`), and longer than the event
/// API's 24 h idempotency, within which redeliveries come.
const BATCH_KEEP: Duration = Duration::from_secs(7 * 86_400);
/// Prefix of the step id of a batch job (`$batch/<function>/<key>`).
const BATCH_PREFIX: &str = "$batch/";

/// The step id of the timeout job of `function_id`'s batches of `key`.
pub fn batch_id(function_id: &str, key: &str) -> String {
    format!("{BATCH_PREFIX}{function_id}/{key}")
}

/// The function id and key of a batch job's step id.
pub fn parse_batch_id(step_id: &str) -> Option<(&str, &str)> {
    step_id.strip_prefix(BATCH_PREFIX)?.split_once('/')
}

/// The state store key of `function_id`'s batches of `key`.
fn batch_store_key(function_id: &str, key: &str) -> String {
    format!("batch:{function_id}:{key}")
}

/// The step id of the debounce job of `function_id`'s `key`.
pub fn debounce_id(function_id: &str, key: &str) -> String {
    format!("{DEBOUNCE_PREFIX}{function_id}/{key}")
}

/// The function id and key of a debounce job's step id (function ids
/// have no `/`; a key may).
pub fn parse_debounce_id(step_id: &str) -> Option<(&str, &str)> {
    step_id.strip_prefix(DEBOUNCE_PREFIX)?.split_once('/')
}

/// The state store key of `function_id`'s debounce `key`.
fn debounce_store_key(function_id: &str, key: &str) -> String {
    format!("debounce:{function_id}:{key}")
}

/// When the run of what a debounce key holds may start: at the end of the
/// latest event's quiet period, or once the burst is `timeout` old.
fn debounce_due(d: &Debounce, held: &Debounced) -> i64 {
    let quiet = held.last.saturating_add(millis(d.period.std()));
    match d.timeout {
        Some(t) => quiet.min(held.since.saturating_add(millis(t.std()))),
        None => quiet,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Starts runs; see the module docs.
pub struct Starter<'a> {
    /// Queues and state.
    pub flow: &'a Flow,
    /// Where the skip, throttle and debounce counts go.
    pub metrics: &'a Metrics,
    /// The `traceparent` the event was ingested under, the parent of the
    /// span of a run it starts.
    pub traced_from: Option<&'a str>,
}

impl Starter<'_> {
    /// Starts (or, for a redelivered event, carries on) the run of `f` for
    /// `event` (`value` is its JSON), now or at its throttled start.
    /// Idempotent.
    pub async fn start(
        &self,
        f: &LoadedFunction,
        event: &Event,
        value: &Value,
    ) -> Result<(), BackendError> {
        let id = run_id(&f.def.id, &event.internal_id, event.ts);
        if !self.first_of_its_key(f, &id, value).await? {
            self.count_skip(f, "idempotency");
            return Ok(());
        }
        // A span only for a sampled run; an unsampled one passes its
        // decision on in its `traceparent` alone. Without a parent the
        // trace id follows from the run id, so runners starting the same
        // run (a cron time) agree on its trace and on sampling it.
        let (span, traceparent) = match crate::trace::decide_keyed(self.traced_from, &id) {
            None => (tracing::Span::none(), None),
            Some(Decision::Unsampled(traceparent)) => (tracing::Span::none(), Some(traceparent)),
            Some(Decision::Sampled(sampled)) => {
                let span = tracing::info_span!(
                    "run",
                    otel.kind = "internal",
                    run_id = %id,
                    function = %f.def.id,
                    event_name = %event.name,
                );
                let traceparent = sampled.start(&span);
                (span, traceparent)
            }
        };
        let run = Run {
            id,
            function_id: f.def.id.clone(),
            event: event.clone(),
            status: RunStatus::Running,
            error: None,
            created_at: now_ms(),
            ended_at: None,
            traceparent: traceparent.as_ref().map(|t| t.as_str().to_string()),
        };
        tracing::Instrument::instrument(self.create(f, run, value), span).await
    }

    /// The rest of [`start`](Self::start) once the run is made: rate limit,
    /// throttle, then the run and its first jobs.
    async fn create(
        &self,
        f: &LoadedFunction,
        run: Run,
        value: &Value,
    ) -> Result<(), BackendError> {
        let state = &self.flow.backends.state;
        if let Some(reason) = self.rate_limited(f, &run.id, value).await? {
            // Recorded as a run that ended at once, so the event shows why
            // it started nothing. A run that exists already (a redelivery
            // of an event that did start one) carries on below.
            if state.create_run(&run).await? {
                state
                    .finish_run(&run.id, RunStatus::Skipped, Some(reason), now_ms())
                    .await?;
                self.count_skip(f, "rate_limit");
                return Ok(());
            }
        }
        let start_at = self.throttled(f, &run.id, value).await?;
        // Without `cancel_on`, the run and its first jobs are one write.
        if let Some(created) = self.flow.create_and_start_at(f, &run, start_at).await? {
            if created {
                self.count_run(f, start_at);
                return Ok(());
            }
        } else if state.create_run(&run).await? {
            self.count_run(f, start_at);
            return self.flow.start_run_at(f, &run, true, start_at).await;
        }
        // A redelivery: carry on with the stored run.
        let Some(run) = state.get_run(&run.id).await? else {
            return Err(BackendError::Other(format!(
                "run {} exists but cannot be read",
                run.id
            )));
        };
        if run.status == RunStatus::Running {
            self.flow.start_run_at(f, &run, false, start_at).await?;
        }
        Ok(())
    }

    /// Whether the run `run_id` may start under the function's idempotency
    /// key: the key is claimed for 24 hours by the first run that has it
    /// (claimed again by the same run when its event is delivered again).
    /// A key that cannot be computed from the event does not hold the run
    /// back: it is logged and the run starts.
    async fn first_of_its_key(
        &self,
        f: &LoadedFunction,
        run_id: &str,
        event: &Value,
    ) -> Result<bool, BackendError> {
        let Some(expr) = &f.exprs.idempotency_key else {
            return Ok(true);
        };
        let key = match expr.eval_key(&Vars::new().with("event", event)) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(function = %f.def.id, error = %e, "idempotency key failed; the run starts");
                return Ok(true);
            }
        };
        let owner = self
            .flow
            .backends
            .state
            .claim(
                &format!("idempotency:{}:{key}", f.def.id),
                run_id,
                IDEMPOTENCY_TTL,
            )
            .await?;
        Ok(owner == run_id)
    }

    /// Why the run `run_id` may not start under the function's rate limit,
    /// if it may not. Each run that starts holds a place in the limit's
    /// window (by key) for the period; the same run asking again (its event
    /// delivered again) keeps its place. A key the event cannot give counts
    /// toward the function's window as a whole.
    async fn rate_limited(
        &self,
        f: &LoadedFunction,
        run_id: &str,
        event: &Value,
    ) -> Result<Option<String>, BackendError> {
        let Some(rate) = &f.def.rate_limit else {
            return Ok(None);
        };
        let key = match &f.exprs.rate_limit_key {
            None => String::new(),
            Some(expr) => expr
                .eval_key(&Vars::new().with("event", event))
                .unwrap_or_else(|e| {
                    tracing::warn!(function = %f.def.id, error = %e, "rate limit key failed; counted without a key");
                    String::new()
                }),
        };
        let granted = self
            .flow
            .backends
            .state
            .acquire_slot(
                &format!("rate:{}:{key}", f.def.id),
                run_id,
                rate.limit,
                rate.period.std(),
            )
            .await?;
        Ok((!granted).then(|| {
            let of = if key.is_empty() {
                String::new()
            } else {
                format!(" for key `{key}`")
            };
            format!(
                "rate limited: {} runs already started in the last {}{of}",
                rate.limit, rate.period
            )
        }))
    }

    /// The start reserved for the run `run_id` under the function's
    /// throttle (ms since the epoch), if it has one: runs are spaced
    /// `period / limit` apart per key, `burst` more allowed at once. The
    /// same run asking again gets the same start. A key the event cannot
    /// give counts toward the function's throttle as a whole.
    async fn throttled(
        &self,
        f: &LoadedFunction,
        run_id: &str,
        event: &Value,
    ) -> Result<Option<i64>, BackendError> {
        let Some(throttle) = &f.def.throttle else {
            return Ok(None);
        };
        let key = match &f.exprs.throttle_key {
            None => String::new(),
            Some(expr) => expr
                .eval_key(&Vars::new().with("event", event))
                .unwrap_or_else(|e| {
                    tracing::warn!(function = %f.def.id, error = %e, "throttle key failed; counted without a key");
                    String::new()
                }),
        };
        let start = self
            .flow
            .backends
            .state
            .reserve_start(
                &format!("throttle:{}:{key}", f.def.id),
                run_id,
                throttle.period.std() / throttle.limit.max(1),
                throttle.burst,
                THROTTLE_KEEP,
            )
            .await?;
        Ok(Some(start))
    }

    /// Debounces `event` for `f` when the function debounces: the event
    /// becomes its key's latest and a job due at the end of its quiet
    /// period is sent. `false` when the run is to start now instead (no
    /// debounce, or a key the event cannot give: logged, the run is not
    /// held back).
    pub async fn debounce(
        &self,
        f: &LoadedFunction,
        event: &Event,
        value: &Value,
    ) -> Result<bool, BackendError> {
        let Some(debounce) = &f.def.debounce else {
            return Ok(false);
        };
        let key = match &f.exprs.debounce_key {
            None => String::new(),
            Some(expr) => match expr.eval_key(&Vars::new().with("event", value)) {
                Ok(key) => key,
                Err(e) => {
                    tracing::warn!(function = %f.def.id, error = %e, "debounce key failed; the run starts now");
                    return Ok(false);
                }
            },
        };
        let now = now_ms();
        let ttl = debounce.timeout.unwrap_or(debounce.period).std() + DEBOUNCE_KEEP;
        let held = self
            .flow
            .backends
            .state
            .debounce(&debounce_store_key(&f.def.id, &key), event, now, ttl)
            .await?;
        let job = Job {
            run_id: run_id(&f.def.id, &event.internal_id, event.ts),
            step_id: debounce_id(&f.def.id, &key),
            attempt: 1,
            kind: JobKind::Debounce,
            scheduled_at: now,
            not_before: Some(debounce_due(debounce, &held)),
        };
        self.flow.enqueue(&[job]).await?;
        Metrics::per_function(&self.metrics.runner_events_debounced, &f.def.id);
        Ok(true)
    }

    /// A debounce job came due: starts the run of its key's latest event
    /// if that event's time has come (else a later event's job comes due
    /// when it does), then removes it unless a later event replaced it
    /// meanwhile (that one's own job starts its run). A function that no
    /// longer debounces starts the event it held at once; one that no
    /// longer exists leaves it to lapse.
    pub async fn fire_debounce(&self, registry: &Registry, job: &Job) -> Result<(), BackendError> {
        let Some((function_id, key)) = parse_debounce_id(&job.step_id) else {
            return Err(BackendError::Corrupt(format!(
                "a debounce job names no function: `{}`",
                job.step_id
            )));
        };
        let Some(f) = registry.get(function_id).await? else {
            tracing::warn!(
                function = function_id,
                "debounce job of a function that is not registered any more; dropped"
            );
            return Ok(());
        };
        let state = &self.flow.backends.state;
        let store_key = debounce_store_key(function_id, key);
        let Some(held) = state.debounced(&store_key).await? else {
            return Ok(());
        };
        let due = f
            .def
            .debounce
            .as_ref()
            .map_or(i64::MIN, |d| debounce_due(d, &held));
        if due > now_ms() {
            return Ok(());
        }
        let value =
            serde_json::to_value(&held.event).map_err(|e| BackendError::Corrupt(e.to_string()))?;
        self.start(&f, &held.event, &value).await?;
        state
            .take_debounced(&store_key, &held.event.internal_id)
            .await?;
        Ok(())
    }

    /// Gathers `event` into a batch when the function batches: it joins
    /// its key's open batch (or opens one, whose timeout job it sends); the
    /// event that fills a batch starts its run. `false` when the function
    /// does not batch. A key the event cannot give puts the event into the
    /// function's batches without a key (logged).
    pub async fn batch(
        &self,
        f: &LoadedFunction,
        event: &Event,
        value: &Value,
    ) -> Result<bool, BackendError> {
        let Some(batching) = &f.def.batch_events else {
            return Ok(false);
        };
        let key = match &f.exprs.batch_key {
            None => String::new(),
            Some(expr) => expr
                .eval_key(&Vars::new().with("event", value))
                .unwrap_or_else(|e| {
                    tracing::warn!(function = %f.def.id, error = %e, "batch key failed; batched without a key");
                    String::new()
                }),
        };
        let candidate = run_id(&f.def.id, &event.internal_id, event.ts);
        let batched = self
            .flow
            .backends
            .state
            .batch_add(
                &batch_store_key(&f.def.id, &key),
                &candidate,
                event,
                batching.max_size,
                now_ms(),
                BATCH_KEEP,
            )
            .await?;
        if batched.id == candidate {
            // Sent again on a redelivery too: the job that finds the run
            // started does nothing.
            let job = Job {
                run_id: batched.id.clone(),
                step_id: batch_id(&f.def.id, &key),
                attempt: 1,
                kind: JobKind::Batch,
                scheduled_at: batched.opened_at,
                not_before: Some(
                    batched
                        .opened_at
                        .saturating_add(millis(batching.timeout.std())),
                ),
            };
            self.flow.enqueue(&[job]).await?;
        }
        Metrics::per_function(&self.metrics.runner_events_batched, &f.def.id);
        if batched.size >= batching.max_size {
            self.start_batch(f, &batched.id).await?;
        }
        Ok(true)
    }

    /// A batch job came due: seals the batch (no event joins it after
    /// this) and starts its run, unless the run exists already (the batch
    /// filled up, or the job is a repeat). A function that is not
    /// registered any more leaves the batch to lapse.
    pub async fn fire_batch(&self, registry: &Registry, job: &Job) -> Result<(), BackendError> {
        let Some((function_id, key)) = parse_batch_id(&job.step_id) else {
            return Err(BackendError::Corrupt(format!(
                "a batch job names no function: `{}`",
                job.step_id
            )));
        };
        let state = &self.flow.backends.state;
        if state.get_run(&job.run_id).await?.is_some() {
            return Ok(());
        }
        let Some(f) = registry.get(function_id).await? else {
            tracing::warn!(
                function = function_id,
                "batch job of a function that is not registered any more; dropped"
            );
            return Ok(());
        };
        state
            .seal_batch(&batch_store_key(function_id, key), &job.run_id)
            .await?;
        self.start_batch(&f, &job.run_id).await
    }

    /// Starts (or carries on) the run of the sealed batch `batch_id`: the
    /// run of its first event, whose id the batch has.
    async fn start_batch(&self, f: &LoadedFunction, batch_id: &str) -> Result<(), BackendError> {
        let Some(batch) = self.flow.backends.state.batch(batch_id).await? else {
            tracing::warn!(function = %f.def.id, batch = batch_id, "batch not found; nothing to start");
            return Ok(());
        };
        let Some(first) = batch.events.first() else {
            return Ok(());
        };
        let value =
            serde_json::to_value(first).map_err(|e| BackendError::Corrupt(e.to_string()))?;
        self.start(f, first, &value).await
    }

    /// Counts a run not started for `reason` (idempotency: the key was seen
    /// within 24 h; rate_limit: over the function's rate limit).
    fn count_skip(&self, f: &LoadedFunction, reason: &'static str) {
        self.metrics
            .runner_runs_skipped
            .get_or_create(&crate::metrics::SkipLabels {
                function: f.def.id.clone(),
                reason,
            })
            .inc();
    }

    /// Counts a run created, and one put off by a throttle.
    fn count_run(&self, f: &LoadedFunction, start_at: Option<i64>) {
        Metrics::per_function(&self.metrics.runner_runs_created, &f.def.id);
        if start_at.is_some_and(|at| at > now_ms()) {
            Metrics::per_function(&self.metrics.runner_runs_throttled, &f.def.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_round_trip_with_any_key() {
        let id = batch_id("bulk", "acct/7");
        assert_eq!(parse_batch_id(&id), Some(("bulk", "acct/7")));
        assert_eq!(parse_batch_id(&batch_id("bulk", "")), Some(("bulk", "")));
        assert_eq!(parse_batch_id(&debounce_id("bulk", "k")), None);
    }

    #[test]
    fn debounce_ids_round_trip_with_any_key() {
        let id = debounce_id("sync", "acct/7");
        assert_eq!(parse_debounce_id(&id), Some(("sync", "acct/7")));
        assert_eq!(
            parse_debounce_id(&debounce_id("sync", "")),
            Some(("sync", ""))
        );
        assert_eq!(parse_debounce_id("$timeout/start"), None);
    }

    #[test]
    fn a_debounce_is_due_after_the_quiet_period_or_the_timeout() {
        let d: Debounce =
            serde_json::from_value(serde_json::json!({"period": "500ms", "timeout": "2s"}))
                .unwrap();
        let held = |since, last| Debounced {
            event: serde_json::from_value(
                serde_json::json!({"internal_id": "e", "name": "n", "ts": 0}),
            )
            .unwrap(),
            since,
            last,
        };
        assert_eq!(debounce_due(&d, &held(1000, 1000)), 1500);
        assert_eq!(
            debounce_due(&d, &held(1000, 2800)),
            3000,
            "the timeout bounds it"
        );
        let no_timeout = Debounce { timeout: None, ..d };
        assert_eq!(debounce_due(&no_timeout, &held(1000, 2800)), 3300);
    }
}
