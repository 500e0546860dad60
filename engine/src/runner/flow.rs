//! Run orchestration shared by the runner and the executors: starting a run
//! (first steps, `cancel_on` waits), advancing it once a step has an outcome
//! (successors, completion, failure), resolving waits and ending runs.
//!
//! Every operation here is idempotent, because it may be repeated after a
//! crash (the message that caused it is acked only after it returns) or run
//! concurrently by two processes: outcomes are write-once, run ends are
//! compare-and-set, and a duplicate job finds its step's outcome and does
//! nothing but (re)advance.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::job::{Job, JobKind, now_ms};
use super::registry::LoadedFunction;
use crate::backend::{
    Attempt, BackendError, Backends, Run, RunStatus, StepOutcome, StepRecord, Wait,
};
use crate::functions::{Expression, Vars};
use crate::metrics::Metrics;

/// How long the dedupe claim of a multi-predecessor step's scheduling is
/// kept: longer than any message is retained, so a redelivered predecessor
/// job still finds it.
const SCHEDULE_CLAIM_TTL: Duration = Duration::from_secs(7 * 86_400);
/// How long a `cancel_on` wait stays pending at most.
const CANCEL_WAIT_TTL_MS: i64 = 400 * 86_400_000;
/// Most indexed events scanned when a wait is recorded.
pub(crate) const EVENTS_SCAN_LIMIT: usize = 1000;
/// Prefix of the step id of a `cancel_on` wait (`$cancel/<index>`); `$`
/// cannot start a step id, so these never collide with real steps.
const CANCEL_PREFIX: &str = "$cancel/";

/// The outcomes of a run's steps (and which steps have a record at all).
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Outcome by step id.
    pub outcomes: HashMap<String, StepOutcome>,
    /// Steps that have a record (an attempt or an outcome): they have been
    /// scheduled and picked up at least once.
    pub started: HashSet<String>,
    /// Attempts recorded per step.
    pub attempts: HashMap<String, u32>,
    /// Steps whose last attempt was recorded as started and never ended:
    /// that attempt, interrupted when a new one is about to start.
    pub unfinished: HashMap<String, Attempt>,
}

impl Progress {
    /// Builds from the state store's records.
    pub fn from_records(records: Vec<StepRecord>) -> Self {
        let mut p = Self::default();
        for r in records {
            p.started.insert(r.step_id.clone());
            p.attempts
                .insert(r.step_id.clone(), r.attempts.len() as u32);
            if let Some(last) = r.attempts.last().filter(|a| a.running) {
                p.unfinished.insert(r.step_id.clone(), last.clone());
            }
            if let Some(o) = r.outcome {
                p.outcomes.insert(r.step_id, o);
            }
        }
        p
    }

    /// Completed steps' outputs by id: the `steps` variable of expressions
    /// and of the step context. Skipped steps are absent.
    pub fn outputs(&self) -> Map<String, Value> {
        self.outcomes
            .iter()
            .filter_map(|(id, o)| match o {
                StepOutcome::Completed { output } => Some((id.clone(), output.clone())),
                _ => None,
            })
            .collect()
    }
}

/// The `event` variable: the stored event as JSON.
pub fn event_value(run: &Run) -> Value {
    serde_json::to_value(&run.event).unwrap_or(Value::Null)
}

/// Prefix of the step id of a run timeout's job (`$timeout/start`,
/// `$timeout/finish`).
const TIMEOUT_PREFIX: &str = "$timeout/";

/// Which of a function's `timeouts` a run timeout job is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTimeout {
    /// The run must have started a step by then.
    Start,
    /// The run must have ended by then.
    Finish,
}

/// The step id of a run timeout's job.
pub fn timeout_id(which: RunTimeout) -> String {
    let name = match which {
        RunTimeout::Start => "start",
        RunTimeout::Finish => "finish",
    };
    format!("{TIMEOUT_PREFIX}{name}")
}

/// Which timeout a run timeout job's step id is for.
pub fn parse_timeout_id(step_id: &str) -> Option<RunTimeout> {
    match step_id.strip_prefix(TIMEOUT_PREFIX)? {
        "start" => Some(RunTimeout::Start),
        "finish" => Some(RunTimeout::Finish),
        _ => None,
    }
}

/// The jobs that enforce the function's `timeouts` on a run created at
/// `created_at`: each comes due when its timeout does.
pub fn timeout_jobs(f: &LoadedFunction, run_id: &str, created_at: i64) -> Vec<Job> {
    let Some(t) = &f.def.timeouts else {
        return Vec::new();
    };
    [(RunTimeout::Start, t.start), (RunTimeout::Finish, t.finish)]
        .into_iter()
        .filter_map(|(which, after)| {
            let after = i64::try_from(after?.std().as_millis()).unwrap_or(i64::MAX);
            Some(Job {
                run_id: run_id.to_string(),
                step_id: timeout_id(which),
                attempt: 1,
                kind: JobKind::RunTimeout,
                scheduled_at: created_at,
                not_before: Some(created_at.saturating_add(after)),
            })
        })
        .collect()
}

/// The job of a run's first step `step_id`, not to be acted on before
/// `start_at` when the run's start was put off.
fn first_job(run_id: &str, step_id: &str, since: i64, start_at: Option<i64>) -> Job {
    Job {
        not_before: start_at,
        ..Job::first(run_id, step_id, since)
    }
}

/// The step id of the wait that implements `cancel_on[index]`.
pub fn cancel_wait_id(index: usize) -> String {
    format!("{CANCEL_PREFIX}{index}")
}

/// The `cancel_on` index of a cancel wait's step id.
pub fn parse_cancel_wait(step_id: &str) -> Option<usize> {
    step_id.strip_prefix(CANCEL_PREFIX)?.parse().ok()
}

/// Whether `candidate` resolves a wait of `run` recorded `since`: it is not
/// the run's own trigger, it is not older than the wait, and `expr` (over
/// `event` = the trigger and `async` = the candidate) holds. An expression
/// that fails to evaluate does not match (logged).
pub fn wait_matches(
    expr: Option<&Expression>,
    run: &Run,
    since: i64,
    candidate: &Value,
    candidate_id: &str,
    candidate_ts: i64,
) -> bool {
    if candidate_id == run.event.internal_id || candidate_ts < since {
        return false;
    }
    let Some(expr) = expr else { return true };
    let vars = Vars::new()
        .with("event", &event_value(run))
        .with("async", candidate);
    match expr.eval_bool(&vars) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(run_id = %run.id, error = %e, "wait match failed to evaluate; treated as no match");
            false
        }
    }
}

/// What follows a step's outcome, decided from a progress snapshot that
/// includes it, so that it can be written with the outcome in one go
/// ([`StateStore::end_step`](crate::backend::StateStore::end_step)).
#[derive(Debug, Clone, PartialEq)]
pub struct NextSteps {
    /// Jobs of the successors that became ready (each has this step as its
    /// only `after`, so no other step can schedule it).
    pub jobs: Vec<Job>,
    /// How the run ends, if this outcome ends it.
    pub finish: Option<(RunStatus, Option<String>)>,
    /// `false` when the snapshot cannot decide everything: a successor with
    /// several `after`s is ready (its scheduling claim is needed), or a step
    /// that does not depend on this one has no outcome in the snapshot (it
    /// may have one by now). Then, once the outcome is written, re-read the
    /// progress and [`Flow::advance_except`] the jobs already sent.
    pub settled: bool,
}

/// What follows `step_id`'s outcome (in `progress`) in run `run`; see [`NextSteps`].
pub fn next_steps(
    f: &LoadedFunction,
    run: &Run,
    step_id: &str,
    progress: &Progress,
    now: i64,
) -> NextSteps {
    if let Some(StepOutcome::Failed { error }) = progress.outcomes.get(step_id) {
        return NextSteps {
            jobs: Vec::new(),
            finish: Some((
                RunStatus::Failed,
                Some(format!("step `{step_id}` failed: {error}")),
            )),
            settled: true,
        };
    }
    let mut settled = true;
    let mut jobs = Vec::new();
    for next in f.successors(step_id) {
        if progress.started.contains(&next.id) {
            continue;
        }
        let ready = next.after.iter().all(|a| {
            matches!(
                progress.outcomes.get(a),
                Some(StepOutcome::Completed { .. } | StepOutcome::Skipped)
            )
        });
        if !ready {
            continue;
        }
        if next.after.len() > 1 {
            settled = false;
            continue;
        }
        jobs.push(Job::first(&run.id, &next.id, now));
    }
    let pending: Vec<&str> = f
        .def
        .steps
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| !progress.outcomes.contains_key(*id))
        .collect();
    let mut finish = None;
    if pending.is_empty() {
        let failed = progress.outcomes.iter().find_map(|(id, o)| match o {
            StepOutcome::Failed { error } => Some(format!("step `{id}` failed: {error}")),
            _ => None,
        });
        finish = Some(match failed {
            Some(reason) => (RunStatus::Failed, Some(reason)),
            None => (RunStatus::Completed, None),
        });
    } else {
        // A step downstream of this one cannot have been scheduled before
        // this outcome exists, so its missing outcome is not news; any other
        // step may have finished since the snapshot.
        let downstream = descendants(f, step_id);
        if pending.iter().any(|id| !downstream.contains(id)) {
            settled = false;
        }
    }
    NextSteps {
        jobs,
        finish,
        settled,
    }
}

/// The steps that depend on `step_id`, directly or through others.
fn descendants<'f>(f: &'f LoadedFunction, step_id: &str) -> HashSet<&'f str> {
    let mut seen = HashSet::new();
    let mut todo = vec![step_id];
    while let Some(id) = todo.pop() {
        for next in f.successors(id) {
            if seen.insert(next.id.as_str()) {
                todo.push(next.id.as_str());
            }
        }
    }
    seen
}

/// Orchestration over the engine's backends.
#[derive(Clone)]
pub struct Flow {
    /// Queues and state.
    pub backends: Backends,
    /// Where runs that end are counted.
    pub metrics: Arc<Metrics>,
}

impl Flow {
    /// Counts `run` ended with `status` at `at` (ms since the epoch), for
    /// the caller whose write ended it.
    pub fn count_run_end(&self, run: &Run, status: RunStatus, at: i64) {
        let seconds = at.saturating_sub(run.created_at).max(0) as f64 / 1000.0;
        self.metrics.run_ended(
            &run.function_id,
            crate::metrics::status_label(status),
            seconds,
        );
    }

    /// Sends jobs to the work queue (one batch).
    pub async fn enqueue(&self, jobs: &[Job]) -> Result<(), BackendError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let max = self.backends.work.max_delay();
        let messages = jobs.iter().map(|j| j.to_message(now, max)).collect();
        self.backends.work.send(messages).await
    }

    /// The run's step progress.
    pub async fn progress(&self, run_id: &str) -> Result<Progress, BackendError> {
        Ok(Progress::from_records(
            self.backends.state.steps(run_id).await?,
        ))
    }

    /// Creates `run` and enqueues its first steps in one write when the
    /// function has no `cancel_on` (whose waits must be recorded first);
    /// `None` when it has, or `Some(created)`.
    pub async fn create_and_start(
        &self,
        f: &LoadedFunction,
        run: &Run,
    ) -> Result<Option<bool>, BackendError> {
        self.create_and_start_at(f, run, None).await
    }

    /// [`create_and_start`](Self::create_and_start), the first steps held
    /// back until `start_at` (ms since the epoch; a throttle's reservation).
    pub async fn create_and_start_at(
        &self,
        f: &LoadedFunction,
        run: &Run,
        start_at: Option<i64>,
    ) -> Result<Option<bool>, BackendError> {
        if !f.def.cancel_on.is_empty() {
            return Ok(None);
        }
        let since = run.event.ts.min(run.created_at);
        let now = now_ms();
        let max = self.backends.work.max_delay();
        let jobs = f
            .first_steps()
            .map(|s| first_job(&run.id, &s.id, since, start_at).to_message_early(now, max))
            .chain(
                timeout_jobs(f, &run.id, run.created_at)
                    .iter()
                    .map(|j| j.to_message(now, max)),
            )
            .collect();
        self.backends
            .state
            .create_run_and_send(run, self.backends.work.as_ref(), jobs)
            .await
            .map(Some)
    }

    /// Starts a run that was just created (`fresh`) or found existing after
    /// a redelivery: records its `cancel_on` waits and enqueues its first
    /// steps (those not picked up yet, when not fresh).
    pub async fn start_run(
        &self,
        f: &LoadedFunction,
        run: &Run,
        fresh: bool,
    ) -> Result<(), BackendError> {
        self.start_run_at(f, run, fresh, None).await
    }

    /// [`start_run`](Self::start_run), the first steps held back until
    /// `start_at` (ms since the epoch; a throttle's reservation).
    pub async fn start_run_at(
        &self,
        f: &LoadedFunction,
        run: &Run,
        fresh: bool,
        start_at: Option<i64>,
    ) -> Result<(), BackendError> {
        let state = &self.backends.state;
        let since = run.event.ts.min(run.created_at);
        for (i, cancel) in f.def.cancel_on.iter().enumerate() {
            let wait = Wait {
                run_id: run.id.clone(),
                step_id: cancel_wait_id(i),
                event_name: cancel.event.clone(),
                matches: cancel.matches.clone(),
                since,
                expires_at: run.created_at.saturating_add(CANCEL_WAIT_TTL_MS),
            };
            state.add_wait(&wait).await?;
            // A cancel event that arrived between the trigger and now.
            for e in state
                .events_since(&cancel.event, since, EVENTS_SCAN_LIMIT)
                .await?
            {
                let value = serde_json::to_value(&e).unwrap_or(Value::Null);
                if wait_matches(
                    f.exprs.cancel_matches.get(&i),
                    run,
                    since,
                    &value,
                    &e.internal_id,
                    e.ts,
                ) {
                    let reason = format!("cancelled by event `{}` ({})", e.name, e.internal_id);
                    self.end_run(f, run, RunStatus::Cancelled, Some(reason))
                        .await?;
                    return Ok(());
                }
            }
        }
        let started = if fresh {
            HashSet::new()
        } else {
            self.progress(&run.id).await?.started
        };
        let now = now_ms();
        let max = self.backends.work.max_delay();
        let mut messages: Vec<_> = f
            .first_steps()
            .filter(|s| !started.contains(&s.id))
            .map(|s| first_job(&run.id, &s.id, since, start_at).to_message_early(now, max))
            .collect();
        // Again on a redelivery too: a duplicate timeout job is harmless.
        messages.extend(
            timeout_jobs(f, &run.id, run.created_at)
                .iter()
                .map(|j| j.to_message(now, max)),
        );
        if messages.is_empty() {
            return Ok(());
        }
        self.backends.work.send(messages).await
    }

    /// Moves a run on after `step_id` got an outcome (`progress` must
    /// include it): a failure fails the run; otherwise every successor whose
    /// `after` steps all have outcomes is enqueued, and the run completes
    /// once every step has one. Safe to repeat.
    pub async fn advance(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step_id: &str,
        progress: Progress,
    ) -> Result<(), BackendError> {
        self.advance_except(f, run, step_id, progress, &[]).await
    }

    /// [`advance`](Self::advance), without enqueueing the steps in `sent`
    /// (their jobs went out with the outcome, see [`next_steps`]).
    pub async fn advance_except(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step_id: &str,
        mut progress: Progress,
        sent: &[String],
    ) -> Result<(), BackendError> {
        if let Some(StepOutcome::Failed { error }) = progress.outcomes.get(step_id) {
            let reason = format!("step `{step_id}` failed: {error}");
            self.end_run(f, run, RunStatus::Failed, Some(reason))
                .await?;
            return Ok(());
        }
        // Outcomes are write-once, so a snapshot that already has them all
        // is final; otherwise re-read after our own write so that of two
        // concurrent finishers at least the later one sees both outcomes.
        if f.def
            .steps
            .iter()
            .any(|s| !progress.outcomes.contains_key(&s.id))
        {
            progress = self.progress(&run.id).await?;
        }
        let now = now_ms();
        let mut jobs = Vec::new();
        for next in f.successors(step_id) {
            if progress.started.contains(&next.id) || sent.contains(&next.id) {
                continue;
            }
            let ready = next.after.iter().all(|a| {
                matches!(
                    progress.outcomes.get(a),
                    Some(StepOutcome::Completed { .. } | StepOutcome::Skipped)
                )
            });
            if !ready {
                continue;
            }
            if next.after.len() > 1 {
                // Several predecessors may each see the step ready; the
                // claim names one of them (deterministically, so that one's
                // redelivered job still enqueues it after a crash).
                let key = format!("schedule:{}:{}", run.id, next.id);
                let owner = self
                    .backends
                    .state
                    .claim(&key, step_id, SCHEDULE_CLAIM_TTL)
                    .await?;
                if owner != step_id {
                    continue;
                }
            }
            jobs.push(Job::first(&run.id, &next.id, now));
        }
        self.enqueue(&jobs).await?;
        let all_done = f
            .def
            .steps
            .iter()
            .all(|s| progress.outcomes.contains_key(&s.id));
        if all_done {
            let failed = progress.outcomes.iter().find_map(|(id, o)| match o {
                StepOutcome::Failed { error } => Some(format!("step `{id}` failed: {error}")),
                _ => None,
            });
            match failed {
                Some(reason) => {
                    self.end_run(f, run, RunStatus::Failed, Some(reason))
                        .await?
                }
                None => self.end_run(f, run, RunStatus::Completed, None).await?,
            };
        }
        Ok(())
    }

    /// Resolves a wait step with `output` (the matching event, or `null` on
    /// timeout). The outcome write decides the winner between an event and
    /// the timeout; the loser still advances the run (the winner may have
    /// crashed before doing so) and the wait record is removed last, so a
    /// crash anywhere leaves it to be resolved again. `true` if this call won.
    pub async fn resolve_wait(
        &self,
        f: &LoadedFunction,
        run: &Run,
        step_id: &str,
        since: i64,
        output: Value,
    ) -> Result<bool, BackendError> {
        let state = &self.backends.state;
        let now = now_ms();
        let won = state
            .set_outcome(&run.id, step_id, &StepOutcome::Completed { output }, now)
            .await?;
        if won {
            let attempt = Attempt {
                number: 1,
                started_at: since,
                ended_at: now,
                error: None,
                host: None,
                running: false,
            };
            state.record_attempt(&run.id, step_id, attempt).await?;
        }
        let progress = self.progress(&run.id).await?;
        self.advance(f, run, step_id, progress).await?;
        state.take_wait(&run.id, step_id).await?;
        Ok(won)
    }

    /// Ends a run (if it is still running) and drops its pending waits
    /// (`cancel_on`s and `wait_for_event` steps), so none lingers.
    pub async fn end_run(
        &self,
        f: &LoadedFunction,
        run: &Run,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<bool, BackendError> {
        let state = &self.backends.state;
        let at = now_ms();
        let ended = state.finish_run(&run.id, status, error, at).await?;
        if ended {
            tracing::debug!(run_id = %run.id, function = %f.def.id, ?status, "run ended");
            self.count_run_end(run, status, at);
        }
        self.drop_waits(f, run, status).await?;
        Ok(ended)
    }

    /// Drops the pending waits of a run that ended with `status`: its
    /// `cancel_on`s, and its `wait_for_event` steps unless it completed.
    pub async fn drop_waits(
        &self,
        f: &LoadedFunction,
        run: &Run,
        status: RunStatus,
    ) -> Result<(), BackendError> {
        let state = &self.backends.state;
        for i in 0..f.def.cancel_on.len() {
            state.take_wait(&run.id, &cancel_wait_id(i)).await?;
        }
        if status != RunStatus::Completed {
            for step in f.def.steps.iter().filter(|s| s.wait_for_event.is_some()) {
                state.take_wait(&run.id, &step.id).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Event;
    use serde_json::json;

    fn run() -> Run {
        Run {
            id: "r".into(),
            function_id: "f".into(),
            event: Event {
                internal_id: "e1".into(),
                id: None,
                name: "order/created".into(),
                data: json!({"order": 7}),
                user: Value::Null,
                ts: 1000,
                v: None,
                traceparent: None,
            },
            status: RunStatus::Running,
            error: None,
            created_at: 1001,
            ended_at: None,
            traceparent: None,
        }
    }

    fn function(steps: Value) -> LoadedFunction {
        LoadedFunction::load(
            serde_json::from_value(json!({
                "id": "f", "triggers": [{"event": "order/created"}], "steps": steps
            }))
            .unwrap(),
        )
        .unwrap()
    }

    fn done(ids: &[&str]) -> Progress {
        let mut p = Progress::default();
        for id in ids {
            p.started.insert(id.to_string());
            p.outcomes
                .insert(id.to_string(), StepOutcome::Completed { output: json!(1) });
        }
        p
    }

    #[test]
    fn next_steps_decides_what_the_snapshot_can() {
        let chain = function(json!([
            {"id": "a", "sleep": "1s"},
            {"id": "b", "after": ["a"], "sleep": "1s"},
            {"id": "c", "after": ["b"], "sleep": "1s"}
        ]));
        let n = next_steps(&chain, &run(), "a", &done(&["a"]), 5);
        let ids: Vec<&str> = n.jobs.iter().map(|j| j.step_id.as_str()).collect();
        assert_eq!(ids, ["b"]);
        assert!(n.settled, "what is left depends on `a`");
        assert_eq!(n.finish, None);
        let n = next_steps(&chain, &run(), "c", &done(&["a", "b", "c"]), 5);
        assert!(n.jobs.is_empty() && n.settled);
        assert_eq!(n.finish, Some((RunStatus::Completed, None)));

        let fan = function(json!([
            {"id": "a", "sleep": "1s"},
            {"id": "b", "sleep": "1s"},
            {"id": "j", "after": ["a", "b"], "sleep": "1s"}
        ]));
        let n = next_steps(&fan, &run(), "a", &done(&["a"]), 5);
        assert!(n.jobs.is_empty());
        assert!(!n.settled, "`b` may have finished since the snapshot");
        let n = next_steps(&fan, &run(), "b", &done(&["a", "b"]), 5);
        assert!(n.jobs.is_empty(), "a join goes through its claim");
        assert!(!n.settled);

        let mut failed = done(&["a"]);
        failed.outcomes.insert(
            "b".into(),
            StepOutcome::Failed {
                error: "boom".into(),
            },
        );
        let n = next_steps(&fan, &run(), "b", &failed, 5);
        assert!(n.jobs.is_empty() && n.settled);
        assert_eq!(
            n.finish,
            Some((RunStatus::Failed, Some("step `b` failed: boom".into())))
        );
    }

    #[test]
    fn cancel_wait_ids_round_trip() {
        assert_eq!(parse_cancel_wait(&cancel_wait_id(3)), Some(3));
        assert_eq!(parse_cancel_wait("wait-for-payment"), None);
    }

    #[test]
    fn waits_match_on_time_identity_and_expression() {
        let r = run();
        let expr = Expression::compile("async.data.order == event.data.order").unwrap();
        let yes = json!({"name": "order/paid", "data": {"order": 7}});
        let no = json!({"name": "order/paid", "data": {"order": 8}});
        assert!(wait_matches(Some(&expr), &r, 1000, &yes, "e2", 1000));
        assert!(!wait_matches(Some(&expr), &r, 1000, &no, "e2", 1000));
        assert!(
            !wait_matches(Some(&expr), &r, 1000, &yes, "e2", 999),
            "older than the wait"
        );
        assert!(
            !wait_matches(None, &r, 0, &yes, "e1", 2000),
            "the run's own trigger"
        );
        assert!(wait_matches(None, &r, 0, &no, "e3", 2000));
        let broken = Expression::compile("async.data.missing == 1").unwrap();
        assert!(!wait_matches(Some(&broken), &r, 0, &yes, "e2", 2000));
    }

    #[test]
    fn progress_lists_outputs_of_completed_steps_only() {
        let rec = |id: &str, outcome: Option<StepOutcome>, attempts: u32| StepRecord {
            step_id: id.into(),
            attempts: (1..=attempts)
                .map(|n| Attempt {
                    number: n,
                    started_at: 0,
                    ended_at: 0,
                    error: None,
                    host: None,
                    running: false,
                })
                .collect(),
            outcome,
            started_at: None,
            ended_at: None,
        };
        let p = Progress::from_records(vec![
            rec("a", Some(StepOutcome::Completed { output: json!(1) }), 1),
            rec("b", Some(StepOutcome::Skipped), 0),
            rec("c", None, 2),
        ]);
        assert_eq!(Value::Object(p.outputs()), json!({"a": 1}));
        assert_eq!(p.started.len(), 3);
        assert_eq!(p.attempts["c"], 2);
        assert!(!p.outcomes.contains_key("c"));
    }
}
