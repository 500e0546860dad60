//! The acceptance scenarios again with real processes: the `stackctl-engine`
//! binary runs the event API, the runner and the executor as three
//! processes sharing one embedded database; the test talks to them over
//! HTTP and reads the results from the same database.

use crate::common;

use common::{DEADLINE, EngineProcess, StepServer, function, output, poll, write_process_config};
use engine::backend::{self, BackendConfig, RunStatus, StepOutcome};
use engine::config::QueuesConfig;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_wait_and_retry_scenarios_across_three_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("engine.db");
    let steps = StepServer::start().await;
    let u = &steps.url;
    let dag = function(json!({
        "id": "dag",
        "triggers": [{"event": "demo/dag"}],
        "steps": [
            {"id": "fetch", "http": {"url": format!("{u}/ok/fetch")}},
            {"id": "pro", "after": ["fetch"], "if": "event.data.plan == 'pro'", "http": {"url": format!("{u}/ok/pro")}},
            {"id": "free", "after": ["fetch"], "if": "event.data.plan == 'free'", "http": {"url": format!("{u}/ok/free")}},
            {"id": "nap", "after": ["pro", "free"], "sleep": "200ms"},
            {"id": "finish", "after": ["nap"], "http": {"url": format!("{u}/ok/finish")}}
        ]
    }));
    let wait = function(json!({
        "id": "wait",
        "triggers": [{"event": "order/created"}],
        "steps": [{"id": "paid", "wait_for_event": {
            "event": "order/paid", "match": "async.data.order == event.data.order", "timeout": "10m"}}]
    }));
    let flaky = function(json!({
        "id": "flaky",
        "triggers": [{"event": "demo/flaky"}],
        "retries": {"attempts": 3, "backoff": "50ms"},
        "steps": [{"id": "call", "http": {"url": format!("{u}/flaky/2/call")}}]
    }));
    let rejected = function(json!({
        "id": "rejected",
        "triggers": [{"event": "demo/rejected"}],
        "steps": [{"id": "bad", "http": {"url": format!("{u}/status/400/bad")}}]
    }));
    let config = write_process_config(dir.path(), &db, &[dag, wait, flaky, rejected], "5s");
    let api = EngineProcess::spawn(&config, "event-api", dir.path().join("api.log"));
    let runner = EngineProcess::spawn(&config, "runner", dir.path().join("runner.log"));
    let executor = EngineProcess::spawn(&config, "executor", dir.path().join("executor.log"));
    let state = backend::open(
        &BackendConfig::Embedded { path: db },
        &QueuesConfig::default(),
    )
    .await
    .expect("open the database")
    .state;
    let c = api.client(state.clone()).await;

    let dag_event = c.send_event("demo/dag", json!({"plan": "pro"})).await;
    let created = c.send_event("order/created", json!({"order": 7})).await;
    let flaky_event = c.send_event("demo/flaky", json!({})).await;
    let rejected_event = c.send_event("demo/rejected", json!({})).await;
    poll("the wait to be recorded", DEADLINE, || async {
        (!state.waits_for("order/paid").await.unwrap().is_empty()).then_some(())
    })
    .await;
    c.send_event("order/paid", json!({"order": 8})).await;
    let paid = c.send_event("order/paid", json!({"order": 7})).await;

    let run = c.finished_as(&dag_event, RunStatus::Completed).await;
    let records = c.steps(&run.id).await;
    assert_eq!(records["free"].outcome, Some(StepOutcome::Skipped));
    assert_eq!(output(&records["nap"].outcome), &Value::Null);
    let finish = output(&records["finish"].outcome);
    assert_eq!(finish["seen"]["pro"]["tag"], "pro");
    assert!(finish["seen"].get("free").is_none());
    let nap = &records["nap"].attempts[0];
    assert!(nap.ended_at - nap.started_at >= 200, "{nap:?}");

    let run = c.finished_as(&created, RunStatus::Completed).await;
    assert_eq!(
        output(&c.steps(&run.id).await["paid"].outcome)["internal_id"],
        paid.as_str()
    );

    let run = c.finished_as(&flaky_event, RunStatus::Completed).await;
    assert_eq!(c.steps(&run.id).await["call"].attempts.len(), 3);

    let run = c.finished_as(&rejected_event, RunStatus::Failed).await;
    assert!(
        run.error.as_deref().unwrap_or("").contains("400"),
        "{run:?}"
    );

    let view = c.api_get(&format!("/runs/{}", run.id)).await;
    assert_eq!(view["status"], "failed");
    for p in [&api, &runner, &executor] {
        p.assert_running();
    }
}
