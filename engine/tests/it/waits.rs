//! `wait_for_event`: a matching event resumes the run (a non-matching one is
//! ignored), the wait times out with `null`, and an event that arrives
//! before the wait is recorded still resolves it (no lost wake-up). Every
//! test runs on the embedded backend (`embedded::`) and on SQS + Redis
//! (`sqs_redis::`).

use crate::common;

use common::{DEADLINE, Stack, StepServer, TestBackend, function, output, poll};
use engine::backend::RunStatus;
use engine::config::Role;
use engine::functions::FunctionDef;
use serde_json::{Value, json};

fn waiting_function(url: &str, timeout: &str) -> FunctionDef {
    function(json!({
        "id": "await-payment",
        "triggers": [{"event": "order/created"}],
        "steps": [
            {"id": "payment", "wait_for_event": {
                "event": "order/paid",
                "match": "async.data.order == event.data.order",
                "timeout": timeout
            }},
            {"id": "after", "after": ["payment"], "http": {"url": format!("{url}/ok/after")}}
        ]
    }))
}

/// How many waits for an `order/paid` event are recorded.
async fn payment_waits(stack: &Stack) -> usize {
    let waits = stack.backends.state.waits_for("order/paid").await;
    waits.unwrap().len()
}

async fn a_matching_event_resumes_the_run_and_others_are_ignored(backend: TestBackend) {
    let steps = StepServer::start().await;
    let stack = Stack::start_on(backend, vec![waiting_function(&steps.url, "10m")]).await;
    let c = &stack.client;
    let created = c.send_event("order/created", json!({"order": 1})).await;
    poll("the wait to be recorded", DEADLINE, || async {
        (payment_waits(&stack).await > 0).then_some(())
    })
    .await;

    // Another order's payment does not match; the run keeps waiting.
    let other = c.send_event("order/paid", json!({"order": 2})).await;
    poll(
        "the non-matching event to be processed",
        DEADLINE,
        || async {
            let d = stack.backends.events.depth().await.unwrap();
            (d.visible == 0 && d.in_flight == 0).then_some(())
        },
    )
    .await;
    let runs = stack.backends.state.runs_for_event(&created).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Running);
    assert_eq!(payment_waits(&stack).await, 1);

    let paid = c
        .send_event("order/paid", json!({"order": 1, "amount": 30}))
        .await;
    let run = c.finished_as(&created, RunStatus::Completed).await;
    let records = c.steps(&run.id).await;
    let got = output(&records["payment"].outcome);
    assert_eq!(
        got["internal_id"],
        paid.as_str(),
        "the wait's output is the matching event"
    );
    assert_ne!(got["internal_id"], other.as_str());
    assert_eq!(got["data"]["amount"], 30);
    assert_eq!(
        output(&records["after"].outcome)["seen"]["payment"]["data"]["order"],
        1
    );
    assert_eq!(payment_waits(&stack).await, 0);
    stack.stop().await;
}

async fn a_wait_times_out_with_null(backend: TestBackend) {
    let steps = StepServer::start().await;
    let stack = Stack::start_on(backend, vec![waiting_function(&steps.url, "300ms")]).await;
    let c = &stack.client;
    let created = c.send_event("order/created", json!({"order": 9})).await;
    let run = c.finished_as(&created, RunStatus::Completed).await;
    let records = c.steps(&run.id).await;
    assert_eq!(output(&records["payment"].outcome), &Value::Null);
    let waited = &records["payment"].attempts[0];
    assert!(waited.ended_at - waited.started_at >= 300, "{waited:?}");
    let after = output(&records["after"].outcome);
    assert_eq!(after["seen"]["payment"], Value::Null);
    assert_eq!(payment_waits(&stack).await, 0);
    stack.stop().await;
}

async fn an_event_that_arrives_before_the_wait_is_recorded_resolves_it(backend: TestBackend) {
    let steps = StepServer::start().await;
    // No executor yet: the runner creates the run and processes the payment
    // before any executor can record the wait.
    let mut stack = Stack::start_roles_on(
        backend,
        vec![waiting_function(&steps.url, "10m")],
        &[Role::Runner],
    )
    .await;
    let ids = stack
        .client
        .send(json!([
            {"name": "order/created", "data": {"order": 5}},
            {"name": "order/paid", "data": {"order": 5}}
        ]))
        .await;
    let (created, paid) = (&ids[0], &ids[1]);
    poll("the runner to process both events", DEADLINE, || async {
        let d = stack.backends.events.depth().await.unwrap();
        let runs = stack.backends.state.runs_for_event(created).await.unwrap();
        (d.visible == 0 && d.in_flight == 0 && runs.len() == 1).then_some(())
    })
    .await;
    assert_eq!(payment_waits(&stack).await, 0, "no wait is recorded yet");

    stack.start_role(Role::Executor);
    let run = stack
        .client
        .finished_as(created, RunStatus::Completed)
        .await;
    let records = stack.client.steps(&run.id).await;
    assert_eq!(
        output(&records["payment"].outcome)["internal_id"],
        paid.as_str()
    );
    assert_eq!(payment_waits(&stack).await, 0);
    stack.stop().await;
}

common::on_every_backend!(
    a_matching_event_resumes_the_run_and_others_are_ignored,
    a_wait_times_out_with_null,
    an_event_that_arrives_before_the_wait_is_recorded_resolves_it,
);
