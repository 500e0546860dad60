//! Crash tests with real processes: the built `stackctl-engine` binary runs
//! the event API, the runner and the executor as three processes over shared
//! backends, and the test SIGKILLs one of them mid-load. Each test runs twice
//! (`embedded::` and `sqs_redis::`): on one embedded database, and on SQS (a
//! moto server, reached through `AWS_ENDPOINT_URL`) with Redis state (a
//! `redis-server`).
//!
//! What "no step output is produced twice" means here, honestly: HTTP steps
//! are at-least-once (an executor killed while a step's request is in flight
//! never learns the answer, so the step runs again after the restart; no
//! engine can avoid that without the step's cooperation). The guarantees
//! asserted are the ones the engine does make:
//! 1. every run completes, each step with exactly one saved outcome;
//! 2. a step is never called again once its output is saved (the step server
//!    checks the database before every 2xx answer);
//! 3. successors see exactly the saved output of their predecessors (each
//!    answer carries a unique nonce; every call of `b` saw the nonce saved
//!    for `a`, every call of `c` the one saved for `b`);
//! 4. only steps in flight at the kill ran twice: at most the executor's
//!    concurrency (and their repeats answered before the output was saved).

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    EngineProcess, ProcessBackend, StepServer, TestBackend, function, output, poll,
    write_process_config_with,
};
use engine::backend::{RunStatus, StepOutcome};
use engine::functions::FunctionDef;
use serde_json::{Value, json};

const SLOW: Duration = Duration::from_secs(180);

/// Engine processes on one backend, with their configuration (registering
/// the test's functions) and their logs in a temp dir.
struct Processes {
    backend: ProcessBackend,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Processes {
    /// Starts the servers of `kind` and writes the configuration.
    fn new(kind: TestBackend, functions: &[FunctionDef], work_visibility: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = ProcessBackend::start(kind, dir.path());
        let config =
            write_process_config_with(dir.path(), backend.config(), functions, work_visibility);
        Self {
            backend,
            config,
            dir,
        }
    }

    /// Starts an engine process in `role`, logging to `log` in the temp dir.
    fn spawn(&self, role: &str, log: &str) -> EngineProcess {
        EngineProcess::spawn_on(&self.backend, &self.config, role, self.dir.path().join(log))
    }
}

async fn sigkill_of_the_executor_mid_load_loses_no_run_and_reproduces_no_saved_output(
    kind: TestBackend,
) {
    // Fewer on SQS + Redis: moto (one Python process) answers every queue
    // call there, and the suite shares 2 cores.
    let runs: usize = match kind {
        TestBackend::Embedded => 200,
        TestBackend::SqsRedis => 60,
    };
    let steps = StepServer::start().await;
    let u = &steps.url;
    let f = function(json!({
        "id": "chain",
        "triggers": [{"event": "demo/chain"}],
        "retries": {"attempts": 5, "backoff": "100ms"},
        "steps": [
            {"id": "a", "http": {"url": format!("{u}/slow/40/a")}},
            {"id": "b", "after": ["a"], "http": {"url": format!("{u}/slow/40/b")}},
            {"id": "c", "after": ["b"], "http": {"url": format!("{u}/ok/c")}}
        ]
    }));
    // A longer visibility on SQS: the executor extends it through moto,
    // which answers slowly when the suite loads the machine, and a message
    // whose extension came late is delivered again (counting toward the DLQ).
    let visibility = match kind {
        TestBackend::Embedded => "2s",
        TestBackend::SqsRedis => "5s",
    };
    let engines = Processes::new(kind, &[f], visibility);
    let state = engines.backend.state().await;
    steps.watch_outcomes(state.clone());

    let api = engines.spawn("event-api", "api.log");
    let _runner = engines.spawn("runner", "runner.log");
    let executor = engines.spawn("executor", "executor-1.log");
    let client = api.client(state.clone()).await;

    let mut ids = Vec::new();
    for batch in 0..runs / 20 {
        let events: Vec<Value> = (0..20)
            .map(|i| json!({"name": "demo/chain", "data": {"i": batch * 20 + i}}))
            .collect();
        ids.extend(client.send(Value::Array(events)).await);
    }
    assert_eq!(ids.len(), runs);

    // Kill once about a quarter of the step calls (three per run) were answered.
    poll("the executor to be well into the load", SLOW, || async {
        executor.assert_running();
        (steps.calls().len() >= runs * 3 / 4).then_some(())
    })
    .await;
    executor.kill();
    let calls_at_kill = steps.calls().len();
    let completed_at_kill = state
        .list_runs(Some(RunStatus::Completed), 10_000)
        .await
        .unwrap()
        .len();
    assert!(completed_at_kill < runs, "the kill must land mid-load");

    let _executor2 = engines.spawn("executor", "executor-2.log");
    poll("every run to complete after the restart", SLOW, || async {
        let done = state
            .list_runs(Some(RunStatus::Completed), 10_000)
            .await
            .unwrap()
            .len();
        (done == runs).then_some(())
    })
    .await;

    let calls = steps.calls();
    let mut by_step: HashMap<(String, String), Vec<&common::Call>> = HashMap::new();
    for c in &calls {
        by_step
            .entry((c.run_id.clone(), c.step_id.clone()))
            .or_default()
            .push(c);
    }
    let mut repeated = 0;
    for id in &ids {
        let runs = state.runs_for_event(id).await.unwrap();
        assert_eq!(runs.len(), 1, "one run per event");
        let run = &runs[0];
        assert_eq!(run.status, RunStatus::Completed, "{run:?}");
        let records = client.steps(&run.id).await;
        let (a, b, c) = (
            output(&records["a"].outcome),
            output(&records["b"].outcome),
            output(&records["c"].outcome),
        );
        // 3. successors saw the saved output, whichever attempt produced it.
        assert_eq!(b["seen"]["a"]["nonce"], a["nonce"], "run {}", run.id);
        assert_eq!(c["seen"]["b"]["nonce"], b["nonce"], "run {}", run.id);
        for (step, pred, pred_out) in [("b", "a", a), ("c", "b", b)] {
            for call in by_step
                .get(&(run.id.clone(), step.to_string()))
                .into_iter()
                .flatten()
            {
                assert_eq!(
                    call.steps[pred]["nonce"], pred_out["nonce"],
                    "a call of {step} in run {} saw another {pred}",
                    run.id
                );
            }
        }
        for step in ["a", "b", "c"] {
            let answered: Vec<_> = by_step
                .get(&(run.id.clone(), step.to_string()))
                .into_iter()
                .flatten()
                .filter(|c| (200..300).contains(&c.status))
                .collect();
            assert!(
                !answered.is_empty(),
                "step {step} of run {} was never called",
                run.id
            );
            // The saved output is one of the answers given.
            let nonce = output(&records[step].outcome)["nonce"].as_u64().unwrap();
            assert!(answered.iter().any(|c| c.nonce == nonce));
            if answered.len() > 1 {
                repeated += 1;
            }
        }
    }
    // 2. never called again after its output was saved.
    let late: Vec<_> = calls.iter().filter(|c| c.after_saved).collect();
    assert!(
        late.is_empty(),
        "steps called after their output was saved: {late:?}"
    );
    // 4. only what was in flight at the kill ran again (executor concurrency 64).
    assert!(repeated <= 64, "{repeated} steps ran more than once");
    eprintln!(
        "executor killed after {calls_at_kill} step calls ({completed_at_kill} runs completed); \
         {repeated} in-flight steps ran again after the restart; {} calls in all",
        calls.len()
    );
    api.assert_running();
}

async fn sigkill_of_the_event_api_after_1000_acknowledged_events_loses_none(kind: TestBackend) {
    // Fewer on SQS + Redis (200): every acknowledgement is a SendMessage
    // answered by moto, one Python process on the suite's 2 shared cores.
    let acked_target: usize = match kind {
        TestBackend::Embedded => 1000,
        TestBackend::SqsRedis => 200,
    };
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "ping",
        "triggers": [{"event": "demo/ping"}],
        "steps": [{"id": "pong", "http": {"url": format!("{}/ok/pong", steps.url)}}]
    }));
    let engines = Processes::new(kind, &[f], "5s");
    let state = engines.backend.state().await;

    let api = engines.spawn("event-api", "api-1.log");
    let _runner = engines.spawn("runner", "runner.log");
    let _executor = engines.spawn("executor", "executor.log");
    let url = format!("{}/e/{}", api.event_api_url().await, common::EVENT_KEY);

    // 16 senders, one event per request, until 1,000 (200) are acknowledged; the
    // process is killed at once, with requests still in flight.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(tokio::sync::Notify::new());
    let mut senders = Vec::new();
    for s in 0..16 {
        let (acked, count, reached, url) =
            (acked.clone(), count.clone(), reached.clone(), url.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                let body = json!({"name": "demo/ping", "data": {"sender": s, "i": i}});
                let Ok(resp) = http.post(&url).json(&body).send().await else {
                    return;
                };
                if resp.status() != 200 {
                    return;
                }
                let Ok(answer) = resp.json::<Value>().await else {
                    return;
                };
                let id = answer["ids"][0].as_str().expect("id").to_string();
                acked.lock().unwrap().push(id);
                if count.fetch_add(1, Ordering::SeqCst) + 1 == acked_target {
                    reached.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(SLOW, reached.notified())
        .await
        .expect("the target of acknowledged events");
    api.kill();
    for s in senders {
        s.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= acked_target, "{} acknowledged", acked.len());

    // A restarted event API serves again.
    let api2 = engines.spawn("event-api", "api-2.log");
    let client = api2.client(state.clone()).await;
    let health = reqwest::get(format!("{}/health", client.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let after = client.send_event("demo/ping", json!({"after": true})).await;

    poll(
        "a completed run for every acknowledged event",
        SLOW,
        || async {
            let done = state
                .list_runs(Some(RunStatus::Completed), 100_000)
                .await
                .unwrap();
            let events: HashSet<&str> = done.iter().map(|r| r.event.internal_id.as_str()).collect();
            (acked.iter().all(|id| events.contains(id.as_str())) && events.contains(after.as_str()))
                .then_some(())
        },
    )
    .await;
    for id in acked.iter().take(50) {
        assert_eq!(
            state.runs_for_event(id).await.unwrap().len(),
            1,
            "exactly one run per event"
        );
    }
    let all = state.list_runs(None, 100_000).await.unwrap();
    let distinct: HashSet<&str> = all.iter().map(|r| r.event.internal_id.as_str()).collect();
    assert_eq!(distinct.len(), all.len(), "no event started two runs");
    eprintln!(
        "{} events acknowledged before the kill; all processed",
        acked.len()
    );
    api2.assert_running();
}

/// An attempt whose executor is killed during it counts toward the step's
/// retries: with one retry, a step that hangs through two executors that
/// are both killed fails with the reason instead of being called a third
/// time (or until its job is dead-lettered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_cut_short_by_a_crash_count_toward_the_retries() {
    let steps = StepServer::start().await;
    let u = &steps.url;
    let f = function(json!({
        "id": "hangs",
        "triggers": [{"event": "demo/hang"}],
        "retries": {"attempts": 1, "backoff": "100ms"},
        "steps": [{"id": "a", "http": {"url": format!("{u}/slow/600000/hang")}}]
    }));
    let engines = Processes::new(TestBackend::Embedded, &[f], "2s");
    let state = engines.backend.state().await;
    let api = engines.spawn("event-api", "api.log");
    let _runner = engines.spawn("runner", "runner.log");
    let client = api.client(state.clone()).await;
    let id = client.send_event("demo/hang", json!({})).await;

    for n in 1..=2 {
        let executor = engines.spawn("executor", &format!("executor-{n}.log"));
        poll(&format!("attempt {n} to reach the step"), SLOW, || async {
            executor.assert_running();
            (steps.arrived("hang") >= n).then_some(())
        })
        .await;
        executor.kill();
    }
    let _executor = engines.spawn("executor", "executor-3.log");
    let run = poll("the run to fail", SLOW, || async {
        let runs = state.runs_for_event(&id).await.unwrap();
        runs.into_iter().find(|r| r.status == RunStatus::Failed)
    })
    .await;
    assert_eq!(steps.arrived("hang"), 2, "no third attempt");
    let records = state.steps(&run.id).await.unwrap();
    let attempts = &records[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        attempts.iter().all(|a| !a.running
            && a.error
                .as_deref()
                .is_some_and(|e| e.contains("interrupted"))),
        "{attempts:?}"
    );
    match &records[0].outcome {
        Some(StepOutcome::Failed { error }) => {
            assert!(error.contains("gave up after 2 attempts"), "{error}");
        }
        other => panic!("a failed step, not {other:?}"),
    }
}

common::on_every_backend!(
    sigkill_of_the_executor_mid_load_loses_no_run_and_reproduces_no_saved_output,
    sigkill_of_the_event_api_after_1000_acknowledged_events_loses_none,
);
