//! The `x-inngest-event-id-seed` header: a request sent again with the same
//! seed gets the same event ids and starts nothing twice, on each backend;
//! different seeds give different ids; a malformed seed is ignored; and
//! Inngest's Python SDK retrying a send whose answer was lost (through a
//! proxy that drops the first answer) has its events stored once.

use crate::common;

use std::collections::HashSet;

use base64::Engine as _;
use common::{DEADLINE, EVENT_KEY, Stack, StepServer, TestBackend, function, poll, string_list};
use engine::backend::RunStatus;
use engine::event_api::seed::{HEADER, Seed};
use serde_json::{Value, json};

/// A fresh seed value as the SDKs make one: `{millis},{base64 of 10 random bytes}`.
fn new_seed() -> String {
    let random = ulid::Ulid::new().random().to_be_bytes();
    let entropy = base64::engine::general_purpose::STANDARD.encode(&random[6..]);
    format!("{},{entropy}", engine::runner::now_ms())
}

/// POSTs `body` to the stack's event API with `seed` as the seed header:
/// the status and the answer.
async fn send_seeded(stack: &Stack, seed: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/e/{EVENT_KEY}", stack.client.url))
        .json(body);
    if let Some(seed) = seed {
        req = req.header(HEADER, seed);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}

async fn send_ok(stack: &Stack, seed: Option<&str>, body: &Value) -> Vec<String> {
    let (status, answer) = send_seeded(stack, seed, body).await;
    assert_eq!(status, 200, "{answer}");
    string_list(&answer["ids"])
}

/// A function run by every `seed/order` event: one http step.
fn order_function(steps: &StepServer) -> engine::functions::FunctionDef {
    function(json!({
        "id": "fulfil",
        "triggers": [{"event": "seed/order"}],
        "steps": [{"id": "charge", "http": {"url": format!("{}/ok/charge", steps.url)}}]
    }))
}

/// Waits until the event stream holds nothing (every copy processed, acked).
async fn drain_events(stack: &Stack) {
    poll("the event stream to drain", DEADLINE, || async {
        let d = stack.backends.events.depth().await.expect("depth");
        (d.visible == 0 && d.in_flight == 0 && d.delayed == 0).then_some(())
    })
    .await;
}

/// Every run the state store holds.
async fn all_runs(stack: &Stack) -> Vec<engine::backend::Run> {
    stack
        .backends
        .state
        .list_runs(None, 1000)
        .await
        .expect("list runs")
}

/// Each event of `ids` ends with exactly one completed run, whose step was
/// called once; the stack holds `total` runs.
async fn one_run_each(stack: &Stack, steps: &StepServer, ids: &[String], total: usize) {
    drain_events(stack).await;
    for id in ids {
        let run = stack.client.finished_as(id, RunStatus::Completed).await;
        let runs = stack.backends.state.runs_for_event(id).await.unwrap();
        assert_eq!(runs.len(), 1, "event {id}: {runs:?}");
        poll("the charge step's outcome", DEADLINE, || async {
            (!stack.client.steps(&run.id).await.is_empty()).then_some(())
        })
        .await;
        assert_eq!(
            steps.calls_of(&run.id, "charge").len(),
            1,
            "event {id}: the step ran once"
        );
    }
    assert_eq!(all_runs(stack).await.len(), total);
}

async fn a_request_sent_again_with_its_seed_starts_nothing_twice(backend: TestBackend) {
    let steps = StepServer::start().await;
    let stack = Stack::start_on(backend, vec![order_function(&steps)]).await;
    let seed = new_seed();
    let body = json!([
        {"name": "seed/order", "data": {"n": 1}},
        {"name": "seed/order", "data": {"n": 2}, "id": "client-key-2"},
    ]);

    // Sent twice back to back (a retry racing the first copy's processing),
    // then once more after the runs ended.
    let first = send_ok(&stack, Some(&seed), &body).await;
    let again = send_ok(&stack, Some(&seed), &body).await;
    assert_eq!(first, again, "the same seed gives the same ids");
    let expected: Vec<String> = Seed::parse(&seed)
        .unwrap()
        .ids(2)
        .map(|u| u.to_string())
        .collect();
    assert_eq!(first, expected, "the ids Inngest derives from the seed");
    one_run_each(&stack, &steps, &first, 2).await;
    let late = send_ok(&stack, Some(&seed), &body).await;
    assert_eq!(late, first);
    one_run_each(&stack, &steps, &first, 2).await;

    // Stored as one event each: an event without `ts` took the seed's time,
    // so every copy is the same event.
    let run = stack.client.finished_run(&first[0]).await;
    assert_eq!(run.event.ts, Seed::parse(&seed).unwrap().millis());
    assert_eq!(run.event.id, None, "no `id` is made up for the event");
    let run = stack.client.finished_run(&first[1]).await;
    assert_eq!(run.event.id.as_deref(), Some("client-key-2"));

    // A new seed is a new request: new ids. The event without an `id` is a
    // new event; the one with `id` is still a repeat of that idempotency key.
    let other = send_ok(&stack, Some(&new_seed()), &body).await;
    assert_eq!(other.len(), 2);
    assert!(other.iter().all(|id| !first.contains(id)), "{other:?}");
    one_run_each(&stack, &steps, &other[..1], 3).await;
    assert!(
        stack
            .backends
            .state
            .runs_for_event(&other[1])
            .await
            .unwrap()
            .is_empty(),
        "`id` dedupes across seeds"
    );
    stack.stop().await;
}

async fn inngest_python_sdk_retrying_a_lost_answer_stores_the_batch_once(backend: TestBackend) {
    let steps = StepServer::start().await;
    let stack = Stack::start_on(backend, vec![order_function(&steps)]).await;
    let python = harness::inngest_python().expect("Inngest's Python SDK");
    let script = harness::inngest_send_retry_script();
    let url = stack.client.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
            .arg(EVENT_KEY)
            .output()
            .expect("run the SDK script")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK script failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the SDK script's report: {e}: {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let ids = string_list(&report["ids"]);
    assert_eq!(ids.len(), 3, "{report}");
    let attempts = report["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "the SDK sent the batch twice: {report}");
    let (a, b) = (&attempts[0], &attempts[1]);
    assert_eq!(
        a["seed"], b["seed"],
        "one seed for the request and its retry"
    );
    assert_eq!(a["body"], b["body"], "the same batch");
    for attempt in attempts {
        assert_eq!(attempt["status"], 200, "{attempt}");
        assert_eq!(
            string_list(&attempt["answer"]["ids"]),
            ids,
            "both sends got the same ids"
        );
    }
    let seed = Seed::parse(a["seed"].as_str().expect("a seed header")).expect("a valid seed");
    let expected: Vec<String> = seed.ids(3).map(|u| u.to_string()).collect();
    assert_eq!(ids, expected);
    one_run_each(&stack, &steps, &ids, 3).await;
    let run = stack.client.finished_run(&ids[2]).await;
    assert_eq!(run.event.id.as_deref(), Some("py-order-3"));
    assert_eq!(run.event.data, json!({"n": 3}));
    stack.stop().await;
}

common::on_every_backend!(
    a_request_sent_again_with_its_seed_starts_nothing_twice,
    inngest_python_sdk_retrying_a_lost_answer_stores_the_batch_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_give_distinct_ids_and_a_malformed_seed_is_ignored() {
    let stack = Stack::start_roles(Vec::new(), &[]).await;
    let body = json!([{"name": "seed/x"}, {"name": "seed/x"}, {"name": "seed/x"}]);

    // The vector from Inngest's doc comment on the header.
    let ids = send_ok(&stack, Some("1743130137367,eii2YKXRVTJPuA=="), &body).await;
    assert_eq!(
        ids,
        [
            "01JQDAE4RQF8MBCR55T5AK4KXS",
            "01JQDAE4RQF8MBCR55T5AK4KXT",
            "01JQDAE4RQF8MBCR55T5AK4KXV"
        ]
    );

    let mut seen = HashSet::new();
    for _ in 0..5 {
        for id in send_ok(&stack, Some(&new_seed()), &body).await {
            assert!(seen.insert(id.clone()), "{id} given twice");
        }
    }

    // Ignored as Inngest's event API ignores it: accepted, with fresh ids.
    for bad in ["", "nope", "1743130137367,short", "-5,eii2YKXRVTJPuA=="] {
        let a = send_ok(&stack, Some(bad), &body).await;
        let b = send_ok(&stack, Some(bad), &body).await;
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|id| !b.contains(id)), "{bad:?}: {a:?} {b:?}");
    }
    stack.stop().await;
}
