//! The executor: leases step jobs from the work queue (visibility extended
//! while a step runs, bounded concurrency) and, per job, evaluates the
//! step's `if`, runs its action (a driver, a durable sleep, or a wait for an
//! event), records the attempt, writes the outcome once, retries with
//! backoff through delayed jobs, honours per-key concurrency limits and
//! moves the run on (successors, completion, failure).
//!
//! A job whose step already has an outcome only re-advances the run: a saved
//! output is never produced again, and a crash between saving and acking
//! cannot lose the successors.

pub mod backoff;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Shutdown;
use crate::backend::{
    Attempt, BackendError, Backends, Received, Run, RunStatus, StepEnd, StepOutcome, StepRecord,
    Wait,
};
use crate::config::{Config, Role};
use crate::drivers::{Driver, DriverError, Drivers, StepContext};
use crate::functions::{Action, Step, Vars};
use crate::metrics::Metrics;
use crate::runner::flow::{
    EVENTS_SCAN_LIMIT, RunTimeout, event_value, next_steps, parse_timeout_id, wait_matches,
};
use crate::runner::{
    Consumer, Flow, Job, JobKind, LoadedFunction, Progress, REFRESH_INTERVAL, Registry, Starter,
    consume, now_ms,
};
use crate::trace::Decision;

/// How long a claim fixing a sleep's deadline or a wait's start outlives it.
const TIMING_CLAIM_EXTRA: Duration = Duration::from_secs(7 * 86_400);
/// Delay before a job that found its concurrency key full tries again
/// (plus up to as much jitter).
const SLOT_RETRY: Duration = Duration::from_millis(100);
/// How long a job refused a slot keeps its place among a prioritized
/// function's waiters. It asks again after `SLOT_RETRY` plus jitter, but
/// SQS counts delays in whole seconds and rounds them up, so there the next
/// ask comes a second or more later; this outlasts that with room for a
/// slow receive, and a job that stopped asking (its executor died) holds
/// the others back no longer.
const PRIORITY_WAIT: Duration = Duration::from_secs(3);
/// The error of an attempt whose executor stopped before it ended.
const INTERRUPTED: &str = "interrupted: the executor stopped before the attempt ended";
/// Sleeps up to this long are waited out by the executor that runs the
/// step; longer ones go through a delayed job on the work queue.
const NAP_MAX: Duration = Duration::from_millis(100);
/// Delay before a job whose step another task of this process is working
/// on tries again.
const BUSY_RETRY: Duration = Duration::from_millis(200);
/// Bounds of the delay before a job whose step another executor holds the
/// lease of tries again (a quarter of the lease, plus jitter).
const LEASED_RETRY_MIN: Duration = Duration::from_millis(500);
const LEASED_RETRY_MAX: Duration = Duration::from_secs(15);
/// A job that arrives at most this much before its time waits it out here
/// rather than going back to the queue (jobs sent to arrive early, see
/// `Job::to_message_early`).
const EARLY_WAIT_MAX: i64 = 1000;

/// Why the executor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A driver could not be set up.
    #[error("cannot set up step drivers: {0}")]
    Drivers(#[from] DriverError),
    /// The backend failed in a way the executor cannot wait out.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Runs the executor with the drivers the configuration describes.
pub async fn run(
    backends: Backends,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<(), ExecutorError> {
    let drivers = Drivers::from_config(&config.executor.drivers)?;
    run_with_drivers(backends, config, metrics, drivers, shutdown).await
}

/// Runs the executor with these drivers until `shutdown`.
pub async fn run_with_drivers(
    backends: Backends,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    drivers: Drivers,
    shutdown: Shutdown,
) -> Result<(), ExecutorError> {
    let registry = Arc::new(Registry::new(backends.state.clone()));
    crate::runner::load_registry(&registry, &shutdown).await;
    let refresher = {
        let registry = registry.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            registry
                .keep_fresh(REFRESH_INTERVAL, stop.cancelled_owned())
                .await
        })
    };
    let visibility = config.queues.work.visibility_timeout.std();
    let executor = Arc::new(Executor {
        flow: Flow {
            backends: backends.clone(),
            metrics: metrics.clone(),
        },
        registry,
        drivers,
        metrics,
        slot_lease: visibility,
        busy: Mutex::new(HashSet::new()),
        host: config.executor.host_name(),
        max_receives: config.queues.work.max_receives,
        early_waits: tokio::sync::Semaphore::new((config.executor.concurrency / 4).max(1)),
    });
    tracing::info!(
        concurrency = config.executor.concurrency,
        host = executor.host.as_deref().unwrap_or("-"),
        "executor started"
    );
    consume(
        Consumer {
            queue: backends.work.clone(),
            concurrency: config.executor.concurrency,
            visibility,
            max_receives: config.queues.work.max_receives,
            name: "work",
        },
        shutdown,
        || backends.check(Role::Executor),
        move |message| {
            let executor = executor.clone();
            async move { executor.handle_message(message).await }
        },
    )
    .await;
    refresher.abort();
    tracing::info!("executor stopped");
    Ok(())
}

/// Marks a step as being worked on by this process until dropped.
struct BusyGuard<'a> {
    set: &'a Mutex<HashSet<(String, String)>>,
    key: (String, String),
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.key);
        }
    }
}

/// The result of asking for a concurrency slot.
enum Slot {
    /// The function has no limit.
    Unlimited,
    /// Granted: (key, holder), to release after the attempt.
    Held(String, String),
    /// Every slot of the key is taken.
    Full,
    /// The key expression failed; the step fails with this error.
    BadKey(String),
}

struct Executor {
    flow: Flow,
    registry: Arc<Registry>,
    drivers: Drivers,
    metrics: Arc<Metrics>,
    slot_lease: Duration,
    /// Steps a task of this process is working on: a duplicate job waits
    /// instead of running the step a second time alongside.
    busy: Mutex<HashSet<(String, String)>>,
    /// Recorded on every attempt (`executor.host`).
    host: Option<String>,
    /// Deliveries of a job before the work queue dead-letters it.
    max_receives: u32,
    /// Early jobs waiting out their last second here; bounded so that
    /// waiting never takes more than a quarter of the concurrency.
    early_waits: tokio::sync::Semaphore,
}

impl Executor {
    /// Handles one job; `Err` leaves it for redelivery.
    async fn handle_message(&self, message: Arc<Received>) -> Result<(), BackendError> {
        let queue = &self.flow.backends.work;
        let job = Job::decode(&message.body).map_err(|e| {
            tracing::error!(message_id = %message.id, error = %e, "undecodable job; leaving it for the dead-letter queue");
            BackendError::Corrupt(format!("job message: {e}"))
        })?;
        if message.receive_count == 1
            && let Some(sent) = message.sent_at
        {
            // A delayed job was due at its `not_before`, not at its send.
            let due = job.not_before.map_or(sent, |t| t.max(sent));
            self.metrics.queue_lag("work", now_ms() - due);
        }
        let started = Instant::now();
        let result = self.process(job.clone()).await;
        self.metrics
            .executor_job_seconds
            .get_or_create(&crate::metrics::KindLabel {
                kind: kind_label(job.kind),
            })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                if let Err(e) = queue.ack(std::slice::from_ref(&message.receipt)).await {
                    tracing::warn!(error = %e, "cannot ack a job; it will be processed again");
                }
                Ok(())
            }
            Err(e @ BackendError::Unavailable(_)) => {
                tracing::warn!(run_id = %job.run_id, step = %job.step_id, error = %e, "job met a backend outage; it will be retried");
                Err(e)
            }
            Err(e) if message.receive_count >= self.max_receives => {
                tracing::error!(run_id = %job.run_id, step = %job.step_id, error = %e, deliveries = message.receive_count, "job failed on its last delivery; it goes to the dead-letter queue and its run fails");
                self.fail_dead_lettered(&job, &e, message.receive_count)
                    .await;
                Err(e)
            }
            Err(e) => {
                tracing::warn!(run_id = %job.run_id, step = %job.step_id, error = %e, "job failed; it will be retried");
                Err(e)
            }
        }
    }

    /// Fails the run of a job that the work queue is about to dead-letter,
    /// so that it does not stay `running` with nothing left to move it on.
    async fn fail_dead_lettered(&self, job: &Job, cause: &BackendError, deliveries: u32) {
        let error = format!(
            "the job of step `{}` failed on each of its {deliveries} deliveries and went to the \
             work dead-letter queue; last error: {cause}",
            job.step_id
        );
        let ended = async {
            let state = &self.flow.backends.state;
            let Some(run) = state.get_run(&job.run_id).await? else {
                return Ok::<_, BackendError>(());
            };
            if run.status != RunStatus::Running {
                return Ok(());
            }
            match self.registry.get(&run.function_id).await? {
                Some(f) => {
                    self.flow
                        .end_run(&f, &run, RunStatus::Failed, Some(error))
                        .await?
                }
                None => {
                    state
                        .finish_run(&run.id, RunStatus::Failed, Some(error), now_ms())
                        .await?
                }
            };
            Ok::<_, BackendError>(())
        };
        if let Err(e) = ended.await {
            tracing::error!(run_id = %job.run_id, error = %e, "cannot mark the run of a dead-lettered job failed");
        }
    }

    fn mark_busy(&self, job: &Job) -> Option<BusyGuard<'_>> {
        let key = (job.run_id.clone(), job.step_id.clone());
        let mut set = self.busy.lock().ok()?;
        if !set.insert(key.clone()) {
            return None;
        }
        Some(BusyGuard {
            set: &self.busy,
            key,
        })
    }

    async fn later(&self, job: &Job, delay: Duration) -> Result<(), BackendError> {
        let mut again = job.clone();
        again.not_before = Some(now_ms() + delay.as_millis() as i64);
        self.flow.enqueue(&[again]).await
    }

    /// Everything one job causes; `Ok` means the job may be acked.
    async fn process(&self, job: Job) -> Result<(), BackendError> {
        let state = &self.flow.backends.state;
        if let Some(early) = job.remaining(now_ms()) {
            // Arrived before its time: the queue caps delays, or the job
            // was sent to arrive within a second of it.
            let Some(_waiting) = (early <= EARLY_WAIT_MAX)
                .then(|| self.early_waits.try_acquire().ok())
                .flatten()
            else {
                return self.flow.enqueue(&[job]).await;
            };
            tokio::time::sleep(Duration::from_millis(early.unsigned_abs())).await;
        }
        // Taken before reading outcomes, so that a duplicate either waits
        // or sees the outcome the first one wrote.
        let Some(_busy) = self.mark_busy(&job) else {
            return self.later(&job, BUSY_RETRY).await;
        };
        if matches!(job.kind, JobKind::Debounce | JobKind::Batch) {
            let starter = Starter {
                flow: &self.flow,
                metrics: &self.metrics,
                traced_from: None,
            };
            return if job.kind == JobKind::Batch {
                starter.fire_batch(&self.registry, &job).await
            } else {
                starter.fire_debounce(&self.registry, &job).await
            };
        }
        if job.kind != JobKind::Step {
            // Sleeps and waits agree through claims; only steps call drivers.
            return self.handle(job).await;
        }
        // The step's lease, across executors: taken before reading outcomes
        // (the holder writes its outcome before giving the lease back, so a
        // copy of the job that gets the lease next sees it) and renewed
        // while the step runs; a holder that dies lets it lapse.
        let key = format!("step:{}:{}", job.run_id, job.step_id);
        let holder = ulid::Ulid::new().to_string();
        if !state
            .acquire_slot(&key, &holder, 1, self.slot_lease)
            .await?
        {
            return self.leased_elsewhere(&job).await;
        }
        let result = match self
            .renewing(&key, &holder, 1, self.handle(job.clone()))
            .await
        {
            Ok(result) => result,
            Err(lost) => return self.lost(&job, &key, lost).await,
        };
        if let Err(e) = state.release_slot(&key, &holder).await {
            tracing::warn!(error = %e, "cannot give back a step's lease; it lapses on its own");
        }
        result
    }

    /// A job whose step another holder's lease covers: it comes back when
    /// that lease has had time to end (the holder's outcome is then seen).
    async fn leased_elsewhere(&self, job: &Job) -> Result<(), BackendError> {
        let wait = (self.slot_lease / 4).clamp(LEASED_RETRY_MIN, LEASED_RETRY_MAX);
        let jitter = wait.mul_f64(backoff::random_unit() / 2.0);
        self.later(job, wait + jitter).await
    }

    /// The work under the lease `key` was stopped because the lease ended
    /// (see [`Executor::renewing`]). Its attempt stays recorded as started,
    /// so whoever runs the step next counts it as interrupted.
    async fn lost(&self, job: &Job, key: &str, lost: LeaseLost) -> Result<(), BackendError> {
        self.metrics.executor_leases_lost.inc();
        match lost {
            LeaseLost::Taken => {
                tracing::warn!(key, run = %job.run_id, step = %job.step_id, "another holder took the lease; attempt stopped");
                self.leased_elsewhere(job).await
            }
            // An outage: the consumer pauses and gives the job back.
            LeaseLost::Unrenewed(e) => {
                tracing::warn!(key, run = %job.run_id, step = %job.step_id, error = %e, "the lease ran out unrenewed; attempt stopped");
                Err(BackendError::Unavailable(format!(
                    "the lease {key} could not be renewed before it ran out: {e}"
                )))
            }
        }
    }

    /// A job that may act (its step's lease held, for a step).
    async fn handle(&self, job: Job) -> Result<(), BackendError> {
        let state = &self.flow.backends.state;
        let (run, steps) = state.run_with_steps(&job.run_id).await?;
        let Some(run) = run else {
            // Runs are written before their first job is sent, so the state
            // store lost this one (or a replica lags behind): retried, then
            // dead-lettered where `stackctl dlq` shows it, never dropped.
            self.metrics.executor_jobs_without_run.inc();
            return Err(BackendError::Corrupt(format!(
                "run {} of this job is not in the state store",
                job.run_id
            )));
        };
        if run.status != RunStatus::Running {
            return Ok(());
        }
        let Some(f) = self.registry.get(&run.function_id).await? else {
            let error = format!("function `{}` is not registered any more", run.function_id);
            state
                .finish_run(&run.id, RunStatus::Failed, Some(error), now_ms())
                .await?;
            return Ok(());
        };
        if job.kind == JobKind::RunTimeout {
            return self.time_out(&f, &run, &job, &steps).await;
        }
        // A step this process's cached definition lacks may come from an
        // update the last reload did not see yet: ask the store again
        // before failing the run.
        let f = match f.step(&job.step_id) {
            Some(_) => f,
            None => self
                .registry
                .get_fresh(&run.function_id)
                .await?
                .unwrap_or(f),
        };
        let Some(step) = f.step(&job.step_id) else {
            let error = format!(
                "function `{}` has no step `{}` any more",
                f.def.id, job.step_id
            );
            self.flow
                .end_run(&f, &run, RunStatus::Failed, Some(error))
                .await?;
            return Ok(());
        };
        let progress = Progress::from_records(steps);
        if progress.outcomes.contains_key(&step.id) {
            // A duplicate or redelivered job: the work is saved; make sure
            // the run moved on (the first one may have crashed before).
            return self.flow.advance(&f, &run, &step.id, progress).await;
        }
        match job.kind {
            JobKind::Step => self.run_step(&f, &run, step, &job, progress).await,
            JobKind::Wake => {
                let attempt = Attempt {
                    number: 1,
                    started_at: job.scheduled_at,
                    ended_at: now_ms(),
                    error: None,
                    host: self.host.clone(),
                    running: false,
                };
                self.complete(
                    &f,
                    &run,
                    &step.id,
                    StepOutcome::Completed {
                        output: Value::Null,
                    },
                    progress,
                    Some(attempt),
                )
                .await
            }
            JobKind::WaitTimeout => {
                self.flow
                    .resolve_wait(&f, &run, &step.id, job.scheduled_at, Value::Null)
                    .await?;
                Ok(())
            }
            JobKind::RunTimeout => unreachable!("run timeouts are handled before the step lookup"),
            JobKind::Debounce | JobKind::Batch => {
                unreachable!("debounce and batch jobs are handled before the run lookup")
            }
        }
    }

    /// One of the function's `timeouts` came due for a running run: it is
    /// cancelled with the reason, unless (for `start`) a step of it has
    /// been picked up already. A function that no longer has that timeout
    /// leaves the run alone.
    async fn time_out(
        &self,
        f: &LoadedFunction,
        run: &Run,
        job: &Job,
        steps: &[StepRecord],
    ) -> Result<(), BackendError> {
        let timeouts = f.def.timeouts.as_ref();
        let reason = match parse_timeout_id(&job.step_id) {
            Some(RunTimeout::Start) => match timeouts.and_then(|t| t.start) {
                Some(limit) if steps.is_empty() => {
                    format!("timed out: no step started within {limit} (timeouts.start)")
                }
                _ => return Ok(()),
            },
            Some(RunTimeout::Finish) => match timeouts.and_then(|t| t.finish) {
                Some(limit) => format!("timed out: not finished within {limit} (timeouts.finish)"),
                None => return Ok(()),
            },
            None => {
                return Err(BackendError::Corrupt(format!(
                    "a run timeout job names no timeout: `{}`",
                    job.step_id
                )));
            }
        };
        self.metrics.executor_runs_timed_out.inc();
        self.flow
            .end_run(f, run, RunStatus::Cancelled, Some(reason))
            .await?;
        Ok(())
    }

    /// Writes an outcome (if none exists) and moves the run on.
    ///
    /// What follows the outcome is decided from `progress` and written with
    /// it in one go ([`StateStore::end_step`]: with the embedded backend one
    /// transaction, so a step that ends its run costs one durable write):
    /// the attempt, the jobs of successors that only wait for this step, and
    /// the end of the run when this was its last step or it failed. What the
    /// snapshot cannot decide (a successor with several `after`s, a parallel
    /// branch that may have finished meanwhile) is done after, from a fresh
    /// read, as [`Flow::advance`] does. A job that finds the outcome already
    /// written only advances the run (the writer may have crashed before).
    ///
    /// [`StateStore::end_step`]: crate::backend::StateStore::end_step
    async fn complete(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step_id: &str,
        outcome: StepOutcome,
        mut progress: Progress,
        attempt: Option<Attempt>,
    ) -> Result<(), BackendError> {
        let state = &self.flow.backends.state;
        let status = outcome_label(&outcome);
        let now = now_ms();
        progress.started.insert(step_id.to_string());
        progress
            .outcomes
            .insert(step_id.to_string(), outcome.clone());
        let next = next_steps(f, run, step_id, &progress, now);
        let max = self.flow.backends.work.max_delay();
        let end = StepEnd {
            run_id: run.id.clone(),
            step_id: step_id.to_string(),
            outcome,
            at: now,
            attempt: attempt.clone(),
            jobs: next.jobs.iter().map(|j| j.to_message(now, max)).collect(),
            finish: next.finish.clone(),
        };
        if !state
            .end_step(end, self.flow.backends.work.as_ref())
            .await?
        {
            // Another job wrote the outcome first: keep this attempt on
            // record and make sure the run moved on.
            let progress = self.flow.progress(&run.id).await?;
            let record = async {
                match attempt {
                    Some(a) => state.record_attempt(&run.id, step_id, a).await,
                    None => Ok(()),
                }
            };
            let (recorded, advanced) =
                tokio::join!(record, self.flow.advance(f, run, step_id, progress));
            recorded?;
            return advanced;
        }
        self.metrics
            .executor_steps
            .get_or_create(&crate::metrics::StatusLabel { status })
            .inc();
        if let Some((status, _)) = &next.finish {
            tracing::debug!(run_id = %run.id, function = %f.def.id, ?status, "run ended");
            self.flow.count_run_end(run, *status, now);
            self.flow.drop_waits(f, run, *status).await?;
        }
        if !next.settled {
            let sent: Vec<String> = next.jobs.into_iter().map(|j| j.step_id).collect();
            let progress = self.flow.progress(&run.id).await?;
            self.flow
                .advance_except(f, run, step_id, progress, &sent)
                .await?;
        }
        Ok(())
    }

    async fn run_step(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step: &Step,
        job: &Job,
        progress: Progress,
    ) -> Result<(), BackendError> {
        let event = event_value(run);
        if let Some(condition) = f.exprs.conditions.get(&step.id) {
            let vars = Vars::new()
                .with("event", &event)
                .with("steps", &Value::Object(progress.outputs()));
            match condition.eval_bool(&vars) {
                Ok(true) => {}
                Ok(false) => {
                    return self
                        .complete(f, run, &step.id, StepOutcome::Skipped, progress, None)
                        .await;
                }
                Err(e) => {
                    let failed = StepOutcome::Failed {
                        error: format!("`if` of step `{}`: {e}", step.id),
                    };
                    return self
                        .complete(f, run, &step.id, failed, progress, None)
                        .await;
                }
            }
        }
        let Some(action) = step.action() else {
            let failed = StepOutcome::Failed {
                error: "a step must set exactly one of http, docker, sleep and wait_for_event"
                    .to_string(),
            };
            return self
                .complete(f, run, &step.id, failed, progress, None)
                .await;
        };
        match action {
            Action::Sleep(duration) => {
                self.start_sleep(f, run, step, duration.std(), progress)
                    .await
            }
            Action::WaitForEvent(wait) => {
                self.start_wait(f, run, step, job, &wait.event, wait.timeout.std(), progress)
                    .await
            }
            Action::Http(_) | Action::Docker(_) => {
                let driver = match self.drivers.for_action(action) {
                    Ok(Some(d)) => Ok(d),
                    Ok(None) => Err(format!("no driver runs step `{}`", step.id)),
                    Err(e) => Err(e.to_string()),
                };
                let driver = match driver {
                    Ok(d) => d,
                    Err(error) => {
                        let failed = StepOutcome::Failed { error };
                        return self
                            .complete(f, run, &step.id, failed, progress, None)
                            .await;
                    }
                };
                let number = progress.attempts.get(&step.id).copied().unwrap_or(0) + 1;
                let attempt = self.attempt(f, run, step, job, driver, event, progress);
                match crate::trace::decide(run.traceparent.as_deref()) {
                    None => attempt.await,
                    Some(Decision::Unsampled(traceparent)) => {
                        crate::trace::unsampled(traceparent, attempt).await
                    }
                    Some(Decision::Sampled(sampled)) => {
                        let span = attempt_span(f, run, &step.id, number);
                        let _ = sampled.start(&span);
                        tracing::Instrument::instrument(attempt, span).await
                    }
                }
            }
        }
    }

    async fn start_sleep(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step: &Step,
        duration: Duration,
        progress: Progress,
    ) -> Result<(), BackendError> {
        let now = now_ms();
        if duration <= NAP_MAX {
            // Cheaper to wait here than to go through a delayed job (three
            // durable writes and a poll). A crash repeats the nap, which
            // costs at most its length.
            tokio::time::sleep(duration).await;
            let attempt = Attempt {
                number: 1,
                started_at: now,
                ended_at: now_ms(),
                error: None,
                host: self.host.clone(),
                running: false,
            };
            let done = StepOutcome::Completed {
                output: Value::Null,
            };
            return self
                .complete(f, run, &step.id, done, progress, Some(attempt))
                .await;
        }
        let ms = duration.as_millis() as i64;
        // Duplicate jobs agree on one deadline: the first proposal wins.
        let key = format!("sleep:{}:{}", run.id, step.id);
        let proposal = now + ms;
        let owner = self
            .flow
            .backends
            .state
            .claim(&key, &proposal.to_string(), duration + TIMING_CLAIM_EXTRA)
            .await?;
        let until: i64 = owner.parse().unwrap_or(proposal);
        if until <= now {
            let attempt = Attempt {
                number: 1,
                started_at: until - ms,
                ended_at: now,
                error: None,
                host: self.host.clone(),
                running: false,
            };
            return self
                .complete(
                    f,
                    run,
                    &step.id,
                    StepOutcome::Completed {
                        output: Value::Null,
                    },
                    progress,
                    Some(attempt),
                )
                .await;
        }
        let wake = Job {
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            attempt: 1,
            kind: JobKind::Wake,
            scheduled_at: until - ms,
            not_before: Some(until),
        };
        self.flow.enqueue(&[wake]).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_wait(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step: &Step,
        job: &Job,
        event_name: &str,
        timeout: Duration,
        progress: Progress,
    ) -> Result<(), BackendError> {
        let state = &self.flow.backends.state;
        let key = format!("wait:{}:{}", run.id, step.id);
        let owner = state
            .claim(
                &key,
                &job.scheduled_at.to_string(),
                timeout + TIMING_CLAIM_EXTRA,
            )
            .await?;
        let since: i64 = owner.parse().unwrap_or(job.scheduled_at);
        let expires_at = since + timeout.as_millis() as i64;
        let wait = Wait {
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            event_name: event_name.to_string(),
            matches: step.wait_for_event.as_ref().and_then(|w| w.matches.clone()),
            since,
            expires_at,
        };
        state.add_wait(&wait).await?;
        // The wait is recorded, so the runner resolves any later event; an
        // event indexed before that is found here (no lost wake-up).
        let expr = f.exprs.wait_matches.get(&step.id);
        for e in state
            .events_since(event_name, since, EVENTS_SCAN_LIMIT)
            .await?
        {
            if e.ts > expires_at {
                break;
            }
            let value =
                serde_json::to_value(&e).map_err(|err| BackendError::Corrupt(err.to_string()))?;
            if wait_matches(expr, run, since, &value, &e.internal_id, e.ts) {
                self.flow
                    .resolve_wait(f, run, &step.id, since, value)
                    .await?;
                return Ok(());
            }
        }
        if expires_at <= now_ms() {
            self.flow
                .resolve_wait(f, run, &step.id, since, Value::Null)
                .await?;
            return Ok(());
        }
        drop(progress);
        let timeout_job = Job {
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            attempt: 1,
            kind: JobKind::WaitTimeout,
            scheduled_at: since,
            not_before: Some(expires_at),
        };
        self.flow.enqueue(&[timeout_job]).await
    }

    /// The events of a batched run (its batch, stored apart from the run
    /// record), for the step's context; `None` for a function that does
    /// not batch. A batch no longer kept leaves the run's own event.
    async fn batch_events(
        &self,
        f: &LoadedFunction,
        run: &Run,
    ) -> Result<Option<Vec<Value>>, BackendError> {
        if f.def.batch_events.is_none() {
            return Ok(None);
        }
        let events = match self.flow.backends.state.batch(&run.id).await? {
            Some(batch) => batch.events,
            None => vec![run.event.clone()],
        };
        events
            .iter()
            .map(|e| serde_json::to_value(e).map_err(|e| BackendError::Corrupt(e.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Takes a concurrency slot if the function has a limit.
    async fn take_slot(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step: &Step,
        event: &Value,
    ) -> Result<Slot, BackendError> {
        let Some(limit) = &f.def.concurrency else {
            return Ok(Slot::Unlimited);
        };
        let partition = match &f.exprs.concurrency_key {
            Some(expr) => match expr.eval_key(&Vars::new().with("event", event)) {
                Ok(k) => k,
                Err(e) => return Ok(Slot::BadKey(format!("concurrency key: {e}"))),
            },
            None => String::new(),
        };
        let key = format!("concurrency:{}:{partition}", f.def.id);
        let holder = format!("{}:{}", run.id, step.id);
        let state = &self.flow.backends.state;
        let granted = match &f.exprs.priority {
            Some(expr) => {
                let seconds = expr
                    .eval_priority(&Vars::new().with("event", event))
                    .unwrap_or_else(|e| {
                        tracing::warn!(run_id = %run.id, function = %f.def.id, error = %e, "priority counts as 0");
                        0
                    });
                let rank = run.created_at.saturating_sub(seconds * 1000);
                state
                    .acquire_slot_ranked(
                        &key,
                        &holder,
                        limit.limit,
                        self.slot_lease,
                        rank,
                        PRIORITY_WAIT,
                    )
                    .await?
            }
            None => {
                state
                    .acquire_slot(&key, &holder, limit.limit, self.slot_lease)
                    .await?
            }
        };
        Ok(if granted {
            Slot::Held(key, holder)
        } else {
            Slot::Full
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step: &Step,
        job: &Job,
        driver: &dyn Driver,
        event: Value,
        progress: Progress,
    ) -> Result<(), BackendError> {
        let state = &self.flow.backends.state;
        let number = progress.attempts.get(&step.id).copied().unwrap_or(0) + 1;
        let retries = step
            .retries
            .clone()
            .or_else(|| f.def.retries.clone())
            .unwrap_or_default();
        // An attempt recorded as started and never ended: its executor
        // stopped during it (this one holds the step's lease now). It
        // counts toward the retries like a failed one.
        if let Some(unfinished) = progress.unfinished.get(&step.id) {
            let interrupted = Attempt {
                running: false,
                error: Some(INTERRUPTED.into()),
                ..unfinished.clone()
            };
            state.record_attempt(&run.id, &step.id, interrupted).await?;
            if number > retries.attempts + 1 {
                let failed = StepOutcome::Failed {
                    error: format!(
                        "gave up after {} attempts: the last was interrupted ({INTERRUPTED})",
                        number - 1
                    ),
                };
                return self
                    .complete(f, run, &step.id, failed, progress, None)
                    .await;
            }
        }
        let slot = match self.take_slot(f, run, step, &event).await? {
            Slot::Unlimited => None,
            Slot::Held(key, holder) => Some((key, holder)),
            Slot::Full => {
                let jitter = SLOT_RETRY.mul_f64(backoff::random_unit());
                return self.later(job, SLOT_RETRY + jitter).await;
            }
            Slot::BadKey(error) => {
                let failed = StepOutcome::Failed { error };
                return self
                    .complete(f, run, &step.id, failed, progress, None)
                    .await;
            }
        };
        let events = self.batch_events(f, run).await?;
        let ctx = StepContext {
            event,
            events,
            steps: progress.outputs(),
            run_id: run.id.clone(),
            function_id: f.def.id.clone(),
            step_id: step.id.clone(),
            attempt: number,
        };
        let started = now_ms();
        // Recorded before the driver runs, so that an attempt its executor
        // does not live to finish still counts.
        state
            .record_attempt(
                &run.id,
                &step.id,
                Attempt {
                    number,
                    started_at: started,
                    ended_at: started,
                    error: None,
                    host: self.host.clone(),
                    running: true,
                },
            )
            .await?;
        let clock = Instant::now();
        let run_driver = driver.run(step, &ctx);
        let result = match &slot {
            Some((key, holder)) => {
                let limit = f.def.concurrency.as_ref().map(|c| c.limit).unwrap_or(1);
                match self.renewing(key, holder, limit, run_driver).await {
                    Ok(result) => result,
                    Err(lost) => return self.lost(job, key, lost).await,
                }
            }
            None => run_driver.await,
        };
        let ended = now_ms();
        self.metrics
            .step_duration
            .get_or_create(&crate::metrics::StepLabels {
                function: f.def.id.clone(),
                driver: driver_label(step),
                result: if result.is_ok() { "ok" } else { "error" },
            })
            .observe(clock.elapsed().as_secs_f64());
        let outcome = async {
            let attempt = Attempt {
                number,
                started_at: started,
                ended_at: ended,
                error: result.as_ref().err().map(|e| e.to_string()),
                host: self.host.clone(),
                running: false,
            };
            match result {
                Ok(output) => {
                    self.complete(
                        f,
                        run,
                        &step.id,
                        StepOutcome::Completed { output },
                        progress,
                        Some(attempt),
                    )
                    .await
                }
                Err(e) if e.is_retryable() && number <= retries.attempts => {
                    self.metrics.executor_retries.inc();
                    // Recorded first: the retry's attempt number counts it.
                    state.record_attempt(&run.id, &step.id, attempt).await?;
                    let delay = backoff::backoff(&retries, number, backoff::random_unit());
                    let retry = Job {
                        run_id: run.id.clone(),
                        step_id: step.id.clone(),
                        attempt: number + 1,
                        kind: JobKind::Step,
                        scheduled_at: job.scheduled_at,
                        not_before: Some(ended + delay.as_millis() as i64),
                    };
                    self.flow.enqueue(&[retry]).await
                }
                Err(e) => {
                    let error = if e.is_retryable() {
                        format!("{e} (gave up after {number} attempts)")
                    } else {
                        e.to_string()
                    };
                    self.complete(
                        f,
                        run,
                        &step.id,
                        StepOutcome::Failed { error },
                        progress,
                        Some(attempt),
                    )
                    .await
                }
            }
        }
        .await;
        if let Some((key, holder)) = &slot
            && let Err(e) = state.release_slot(key, holder).await
        {
            tracing::warn!(error = %e, "cannot release a concurrency slot; it frees itself when its lease ends");
        }
        outcome
    }

    /// Runs `work`, renewing the slot `key` of `holder` (a concurrency slot,
    /// a step's lease, taken just before) while it runs. The work is
    /// stopped (dropped) once the slot is no longer surely held: another
    /// holder has it, or renewals failed until shortly before it would run
    /// out. Past that point another executor may take the slot and call
    /// the same driver beside this one.
    async fn renewing<T>(
        &self,
        key: &str,
        holder: &str,
        limit: u32,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, LeaseLost> {
        tokio::pin!(work);
        let lease = self.slot_lease;
        let every = (lease / 3).max(Duration::from_millis(100));
        // Stop this long before the lease would run out: the store's clock
        // counts from when it granted the lease, a little before this.
        let margin = every / 2;
        let mut held_until = tokio::time::Instant::now() + lease;
        let mut last_error = None;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let ends =
                tokio::time::sleep_until(held_until.checked_sub(margin).unwrap_or(held_until));
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = tick.tick() => {
                    let asked = tokio::time::Instant::now();
                    match self.flow.backends.state.acquire_slot(key, holder, limit, lease).await {
                        Ok(true) => held_until = asked + lease,
                        Ok(false) => return Err(LeaseLost::Taken),
                        Err(e) => {
                            tracing::warn!(key, error = %e, "cannot renew a lease");
                            last_error = Some(e);
                        }
                    }
                }
                () = ends => {
                    return Err(LeaseLost::Unrenewed(last_error.unwrap_or_else(|| {
                        BackendError::Unavailable("no renewal answered in time".into())
                    })));
                }
            }
        }
    }
}

/// Why a lease ended before the work under it did.
enum LeaseLost {
    /// Another holder has it: this one's ran out while it was not renewed
    /// (a paused process, a slow store).
    Taken,
    /// The store did not answer renewals until the lease was about to run out.
    Unrenewed(BackendError),
}

fn driver_label(step: &Step) -> &'static str {
    match step.action() {
        Some(Action::Docker(_)) => "docker",
        _ => "http",
    }
}

/// The span of a sampled step attempt, to be started under its run's span
/// (`Run::traceparent`).
fn attempt_span(f: &LoadedFunction, run: &Run, step_id: &str, number: u32) -> tracing::Span {
    tracing::info_span!(
        "step attempt",
        otel.kind = "internal",
        run_id = %run.id,
        step_id = %step_id,
        attempt = number,
        function = %f.def.id,
    )
}

fn kind_label(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Step => "step",
        JobKind::Wake => "wake",
        JobKind::WaitTimeout => "wait_timeout",
        JobKind::RunTimeout => "run_timeout",
        JobKind::Debounce => "debounce",
        JobKind::Batch => "batch",
    }
}

fn outcome_label(outcome: &StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Completed { .. } => "completed",
        StepOutcome::Skipped => "skipped",
        StepOutcome::Failed { .. } => "failed",
    }
}
