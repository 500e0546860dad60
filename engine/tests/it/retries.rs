//! Retries and failures of http steps: 5xx is retried with backoff until it
//! succeeds (each attempt recorded), a 4xx fails the step and the run with
//! the error recorded, exhausted retries and timeouts fail with a clear error.
//! Every test runs on the embedded backend (`embedded::`) and on SQS + Redis
//! (`sqs_redis::`).

use crate::common;

use common::{Stack, StepServer, TestBackend, function};
use engine::backend::{RunStatus, StepOutcome};
use serde_json::json;

async fn a_step_failing_twice_with_500_completes_on_the_third_attempt(backend: TestBackend) {
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "flaky",
        "triggers": [{"event": "demo/flaky"}],
        "retries": {"attempts": 3, "backoff": "50ms"},
        "steps": [{"id": "call", "http": {"url": format!("{}/flaky/2/call", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let id = stack.client.send_event("demo/flaky", json!({})).await;
    let run = stack.client.finished_as(&id, RunStatus::Completed).await;

    let record = &stack.client.steps(&run.id).await["call"];
    let attempts = &record.attempts;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(
        attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for a in &attempts[..2] {
        assert!(a.error.as_deref().unwrap_or("").contains("500"), "{a:?}");
    }
    assert_eq!(attempts[2].error, None);
    // Backoff: 50ms doubled, at least half of it with jitter.
    assert!(
        attempts[1].started_at - attempts[0].ended_at >= 25,
        "{attempts:?}"
    );
    assert!(
        attempts[2].started_at - attempts[1].ended_at >= 50,
        "{attempts:?}"
    );
    match &record.outcome {
        Some(StepOutcome::Completed { output }) => assert_eq!(output["attempt"], 3),
        other => panic!("{other:?}"),
    }
    let calls = steps.calls_of(&run.id, "call");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    stack.stop().await;
}

async fn a_400_fails_the_step_and_the_run_with_the_error_recorded(backend: TestBackend) {
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "rejected",
        "triggers": [{"event": "demo/rejected"}],
        "retries": {"attempts": 3, "backoff": "50ms"},
        "steps": [
            {"id": "bad", "http": {"url": format!("{}/status/400/bad", steps.url)}},
            {"id": "never", "after": ["bad"], "http": {"url": format!("{}/ok/never", steps.url)}}
        ]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let id = stack.client.send_event("demo/rejected", json!({})).await;
    let run = stack.client.finished_as(&id, RunStatus::Failed).await;
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("bad") && error.contains("400"), "{error}");

    let records = stack.client.steps(&run.id).await;
    assert_eq!(records["bad"].attempts.len(), 1, "a 4xx is not retried");
    match &records["bad"].outcome {
        Some(StepOutcome::Failed { error }) => {
            assert!(error.contains("400 Bad Request"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!records.contains_key("never"));
    assert!(steps.calls_of(&run.id, "never").is_empty());
    let view = stack.client.api_get(&format!("/runs/{}", run.id)).await;
    assert_eq!(view["status"], "failed");
    assert!(
        view["error"].as_str().unwrap_or("").contains("400"),
        "{view}"
    );
    stack.stop().await;
}

async fn exhausted_retries_and_timeouts_fail_the_run(backend: TestBackend) {
    let steps = StepServer::start().await;
    let always_503 = function(json!({
        "id": "down",
        "triggers": [{"event": "demo/down"}],
        "steps": [{"id": "call", "retries": {"attempts": 1, "backoff": "10ms"},
                   "http": {"url": format!("{}/status/503/down", steps.url)}}]
    }));
    let too_slow = function(json!({
        "id": "slow",
        "triggers": [{"event": "demo/slow"}],
        "retries": {"attempts": 0},
        "steps": [{"id": "call", "http": {"url": format!("{}/slow/2000/slow", steps.url), "timeout": "200ms"}}]
    }));
    let stack = Stack::start_on(backend, vec![always_503, too_slow]).await;
    let down = stack.client.send_event("demo/down", json!({})).await;
    let slow = stack.client.send_event("demo/slow", json!({})).await;

    let run = stack.client.finished_as(&down, RunStatus::Failed).await;
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("503") && error.contains("gave up after 2 attempts"),
        "{error}"
    );
    assert_eq!(stack.client.steps(&run.id).await["call"].attempts.len(), 2);

    let run = stack.client.finished_as(&slow, RunStatus::Failed).await;
    let error = run.error.unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    stack.stop().await;
}

common::on_every_backend!(
    a_step_failing_twice_with_500_completes_on_the_third_attempt,
    a_400_fails_the_step_and_the_run_with_the_error_recorded,
    exhausted_retries_and_timeouts_fail_the_run,
);
