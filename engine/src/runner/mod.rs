//! The runner: consumes the event stream and, for each event, enforces the
//! sender's idempotency key, indexes it for waits recorded later, resolves
//! pending waits and `cancel_on`s it matches, and creates one run per
//! matching function (deterministic run id) with its first steps enqueued,
//! under the function's flow control (`start`: idempotency key, rate limit,
//! throttle, debounce, batches).
//! A message is acked only after all of that is durably recorded, so a crash
//! at any point redelivers it and the idempotent steps above repeat safely.

mod consume;
pub mod cron;
pub mod flow;
pub mod job;
pub mod registry;
pub mod start;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Shutdown;
use crate::backend::{BackendError, Backends, Event, Received, RunStatus};
use crate::config::{Config, Role};
use crate::functions::Vars;
use crate::metrics::Metrics;

pub use consume::{Consumer, consume, keep_visible};

/// How often runners delete runs past their retention.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Most runs deleted in one call.
const PURGE_BATCH: usize = 500;
pub use flow::{Flow, Progress};
pub use job::{Job, JobKind, now_ms, run_id};
pub use registry::{LoadedFunction, REFRESH_INTERVAL, Registry};
pub use start::Starter;

/// How long an event `id` makes repeats of it no-ops.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long events with a waited-for name stay indexed for waits recorded
/// after they arrived (a wait only looks back to when its step was
/// scheduled, so this bounds how long an executor backlog may be).
pub const WAIT_INDEX_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The backend failed in a way the runner cannot wait out.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The runner's per-process state.
struct Runner {
    flow: Flow,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

/// Runs the runner until `shutdown`.
pub async fn run(
    backends: Backends,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<(), RunnerError> {
    let registry = Arc::new(Registry::pinning(
        backends.state.clone(),
        config.functions.clone(),
        metrics.clone(),
    ));
    load_registry(&registry, &shutdown).await;
    let refresher = {
        let registry = registry.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            registry
                .keep_fresh(REFRESH_INTERVAL, stop.cancelled_owned())
                .await
        })
    };
    let runner = Arc::new(Runner {
        flow: Flow {
            backends: backends.clone(),
            metrics: metrics.clone(),
        },
        registry,
        metrics,
    });
    let crons = {
        let runner = runner.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { runner.keep_crons(stop).await })
    };
    let purger = {
        let runner = runner.clone();
        let stop = shutdown.clone();
        let retention = config.runner.run_retention.std();
        tokio::spawn(async move { runner.keep_purging(retention, stop).await })
    };
    let visibility = config.queues.events.visibility_timeout.std();
    tracing::info!(concurrency = config.runner.concurrency, "runner started");
    consume(
        Consumer {
            queue: backends.events.clone(),
            concurrency: config.runner.concurrency,
            visibility,
            max_receives: config.queues.events.max_receives,
            name: "events",
        },
        shutdown,
        || backends.check(Role::Runner),
        move |message| {
            let runner = runner.clone();
            async move { runner.handle_message(message).await }
        },
    )
    .await;
    refresher.abort();
    crons.abort();
    purger.abort();
    tracing::info!("runner stopped");
    Ok(())
}

/// Loads the registry, retrying until it works or shutdown: a backend that
/// is still starting must not stop the role.
pub(crate) async fn load_registry(registry: &Registry, shutdown: &Shutdown) {
    loop {
        match registry.refresh().await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "cannot load the function registry yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

impl Runner {
    /// Handles one event-stream message; `Err` leaves it for redelivery.
    async fn handle_message(&self, message: Arc<Received>) -> Result<(), BackendError> {
        let queue = &self.flow.backends.events;
        let started = Instant::now();
        if message.receive_count == 1
            && let Some(sent) = message.sent_at
        {
            self.metrics.queue_lag("events", now_ms() - sent);
        }
        let events = crate::backend::decode_events(&message.body).inspect_err(|e| {
            tracing::error!(message_id = %message.id, error = %e, "undecodable event message; leaving it for the dead-letter queue");
        })?;
        for mut event in events {
            // Off the event before anything stores or evaluates it.
            let traced_from = event.traceparent.take();
            let event = &event;
            self.handle_event(event, traced_from.as_deref()).await.inspect_err(|e| {
                tracing::warn!(event = %event.internal_id, error = %e, "event processing failed; it will be retried");
            })?;
        }
        if let Err(e) = queue.ack(std::slice::from_ref(&message.receipt)).await {
            tracing::warn!(error = %e, "cannot ack an event message; it will be processed again");
        }
        self.metrics
            .runner_message_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Everything one event causes. Idempotent.
    async fn handle_event(
        &self,
        event: &Event,
        traced_from: Option<&str>,
    ) -> Result<(), BackendError> {
        let state = &self.flow.backends.state;
        if let Some(id) = &event.id {
            let owner = state
                .claim(&format!("event:{id}"), &event.internal_id, IDEMPOTENCY_TTL)
                .await?;
            if owner != event.internal_id {
                self.count_event("duplicate");
                return Ok(());
            }
        }
        let value =
            serde_json::to_value(event).map_err(|e| BackendError::Corrupt(e.to_string()))?;
        if self.registry.is_waited(&event.name) {
            state.index_event(event, WAIT_INDEX_RETENTION).await?;
            self.resolve_waits(event, &value).await?;
        }
        let mut seen = HashSet::new();
        for (f, trigger) in self.registry.triggered_by(&event.name) {
            if seen.contains(&f.def.id) {
                continue;
            }
            if let Some(expr) = f.exprs.triggers.get(&trigger) {
                match expr.eval_bool(&Vars::new().with("event", &value)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(function = %f.def.id, error = %e, "trigger filter failed; not triggering");
                        continue;
                    }
                }
            }
            seen.insert(f.def.id.clone());
            let starter = Starter {
                traced_from,
                ..self.starter()
            };
            if !starter.batch(&f, event, &value).await?
                && !starter.debounce(&f, event, &value).await?
            {
                starter.start(&f, event, &value).await?;
            }
        }
        self.count_event("processed");
        Ok(())
    }

    /// Starts runs under the functions' flow control.
    fn starter(&self) -> Starter<'_> {
        Starter {
            flow: &self.flow,
            metrics: &self.metrics,
            traced_from: None,
        }
    }

    async fn resolve_waits(&self, event: &Event, value: &Value) -> Result<(), BackendError> {
        let state = &self.flow.backends.state;
        for wait in state.waits_for(&event.name).await? {
            if event.ts > wait.expires_at {
                continue;
            }
            let Some(run) = state.get_run(&wait.run_id).await? else {
                state.take_wait(&wait.run_id, &wait.step_id).await?;
                continue;
            };
            if run.status != RunStatus::Running {
                state.take_wait(&wait.run_id, &wait.step_id).await?;
                continue;
            }
            let Some(f) = self.registry.get(&run.function_id).await? else {
                continue;
            };
            if let Some(index) = flow::parse_cancel_wait(&wait.step_id) {
                let expr = f.exprs.cancel_matches.get(&index);
                if flow::wait_matches(expr, &run, wait.since, value, &event.internal_id, event.ts) {
                    let reason = format!(
                        "cancelled by event `{}` ({})",
                        event.name, event.internal_id
                    );
                    if self
                        .flow
                        .end_run(&f, &run, RunStatus::Cancelled, Some(reason))
                        .await?
                    {
                        self.count_wait("cancelled");
                    }
                }
                continue;
            }
            let expr = f.exprs.wait_matches.get(&wait.step_id);
            if flow::wait_matches(expr, &run, wait.since, value, &event.internal_id, event.ts)
                && self
                    .flow
                    .resolve_wait(&f, &run, &wait.step_id, wait.since, value.clone())
                    .await?
            {
                self.count_wait("resolved");
            }
        }
        Ok(())
    }

    /// Starts due cron runs every [`cron::TICK`] until `stop`.
    async fn keep_crons(&self, stop: Shutdown) {
        let mut fired = HashMap::new();
        let mut tick = tokio::time::interval(cron::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.tick_crons(chrono::Utc::now(), &mut fired).await {
                        tracing::warn!(error = %e, "cannot start cron runs; retrying on the next tick");
                    }
                }
            }
        }
    }

    /// Deletes runs that ended more than `retention` ago, every
    /// [`PURGE_EVERY`] until `stop`, in batches. Every runner does it: the
    /// deletes are idempotent, and one runner is enough to keep up.
    async fn keep_purging(&self, retention: Duration, stop: Shutdown) {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let before = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            loop {
                match self
                    .flow
                    .backends
                    .state
                    .purge_finished(before, PURGE_BATCH)
                    .await
                {
                    Ok(n) => {
                        if n > 0 {
                            self.metrics.runner_runs_purged.inc_by(n as u64);
                            tracing::info!(runs = n, "deleted runs past their retention");
                        }
                        if n < PURGE_BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot delete runs past their retention; retrying later");
                        break;
                    }
                }
            }
        }
    }

    /// Starts the run of every cron trigger due at `now` that this runner
    /// has not started yet (`fired`: latest due time started, by function
    /// and trigger). Idempotent across runners.
    async fn tick_crons(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        fired: &mut HashMap<(String, usize), i64>,
    ) -> Result<(), BackendError> {
        for f in self.registry.with_crons() {
            for (index, schedule) in &f.crons {
                let Some(at) = cron::due(schedule, now) else {
                    continue;
                };
                let key = (f.def.id.clone(), *index);
                if fired.get(&key) == Some(&at) {
                    continue;
                }
                let event = cron::cron_event(&f.def.id, schedule.as_str(), at);
                let value = serde_json::to_value(&event)
                    .map_err(|e| BackendError::Corrupt(e.to_string()))?;
                self.starter().start(&f, &event, &value).await?;
                fired.insert(key, at);
            }
        }
        Ok(())
    }

    fn count_event(&self, outcome: &'static str) {
        self.metrics
            .runner_events
            .get_or_create(&crate::metrics::OutcomeLabel { outcome })
            .inc();
    }

    fn count_wait(&self, outcome: &'static str) {
        self.metrics
            .runner_waits
            .get_or_create(&crate::metrics::OutcomeLabel { outcome })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendConfig;
    use crate::config::QueuesConfig;

    #[tokio::test]
    async fn cron_triggers_start_one_run_per_due_time_across_runners() {
        let dir = tempfile::tempdir().unwrap();
        let backends = crate::backend::open(
            &BackendConfig::Embedded {
                path: dir.path().join("engine.db"),
            },
            &QueuesConfig::default(),
        )
        .await
        .unwrap();
        let f: crate::functions::FunctionDef = serde_json::from_value(serde_json::json!({
            "id": "every-minute",
            "triggers": [{"cron": "* * * * *"}],
            "steps": [{"id": "nap", "sleep": "1s"}]
        }))
        .unwrap();
        backends.state.put_function(&f).await.unwrap();
        let runner = || async {
            let registry = Arc::new(Registry::new(backends.state.clone()));
            registry.refresh().await.unwrap();
            Runner {
                flow: Flow {
                    backends: backends.clone(),
                    metrics: Arc::new(Metrics::new()),
                },
                registry,
                metrics: Arc::new(Metrics::new()),
            }
        };
        // Two runners tick every second, out of step with each other, over
        // five minutes (five due times); each remembers only what it fired.
        let first = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let (one, two) = (runner().await, runner().await);
        let (mut fired_one, mut fired_two) = (HashMap::new(), HashMap::new());
        for second in 0..300 {
            let now = first + chrono::Duration::seconds(second);
            one.tick_crons(now, &mut fired_one).await.unwrap();
            let later = now + chrono::Duration::milliseconds(400);
            two.tick_crons(later, &mut fired_two).await.unwrap();
        }

        let all = backends.state.list_runs(None, 100).await.unwrap();
        assert_eq!(all.len(), 5, "one run per minute: {all:?}");
        for minute in 1..=5 {
            let due = first.timestamp_millis() + (minute - 1) * 60_000;
            let internal_id = format!("cron:every-minute:{due}");
            let runs = backends.state.runs_for_event(&internal_id).await.unwrap();
            assert_eq!(runs.len(), 1, "minute {minute}: {runs:?}");
            assert_eq!(runs[0].event.name, cron::CRON_EVENT);
            assert_eq!(runs[0].event.ts, due);
            assert_eq!(runs[0].status, RunStatus::Running);
        }
        let depth = backends.work.depth().await.unwrap();
        assert!(depth.visible >= 5, "each run's step is enqueued: {depth:?}");
    }
}
