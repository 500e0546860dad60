//! The runs API's replay (`POST /v1/runs/{id}/replay`) and list filters,
//! on every backend: a failed run replayed from its failed step after the
//! cause was fixed runs only that step and what follows it, with the
//! outputs of the steps before it copied; from the start it runs
//! everything; a function with `cancel_on` replays too; the answers for
//! what cannot be replayed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use engine::backend::{Run, RunStatus, StepOutcome};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::{self, API_TOKEN, DEADLINE, Stack, TestBackend, function, poll};

/// A step service whose `/b` fails (400: not retried) while `broken`; every
/// call's context is kept by step.
#[derive(Default)]
struct Service {
    broken: AtomicBool,
    calls: Mutex<HashMap<String, Vec<Value>>>,
}

impl Service {
    fn calls(&self, step: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .get(step)
            .cloned()
            .unwrap_or_default()
    }
}

async fn step(
    State(svc): State<Arc<Service>>,
    Path(step): Path<String>,
    Json(ctx): Json<Value>,
) -> (axum::http::StatusCode, Json<Value>) {
    let n = {
        let mut calls = svc.calls.lock().unwrap();
        let list = calls.entry(step.clone()).or_default();
        list.push(ctx.clone());
        list.len()
    };
    if step == "b" && svc.broken.load(Ordering::SeqCst) {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "b is broken"})),
        );
    }
    (
        axum::http::StatusCode::OK,
        Json(json!({"step": step, "call": n, "seen": ctx["steps"]})),
    )
}

async fn start_service() -> (String, Arc<Service>) {
    let svc = Arc::new(Service::default());
    svc.broken.store(true, Ordering::SeqCst);
    let app = Router::new()
        .route("/{step}", post(step))
        .with_state(svc.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), svc)
}

async fn api_post(stack: &Stack, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1{path}", stack.client.url))
        .bearer_auth(API_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("runs API");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}

async fn ended(stack: &Stack, run_id: &str) -> Run {
    poll(&format!("run {run_id} to end"), DEADLINE, || async {
        stack
            .backends
            .state
            .get_run(run_id)
            .await
            .ok()
            .flatten()
            .filter(|r| r.status.is_terminal())
    })
    .await
}

fn ids(list: &Value) -> Vec<String> {
    list["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

async fn a_failed_run_replays_from_its_failed_step_or_from_the_start(backend: TestBackend) {
    let (url, svc) = start_service().await;
    let f = function(json!({
        "id": "replayed",
        "triggers": [{"event": "demo/replay"}],
        "steps": [
            {"id": "a", "http": {"url": format!("{url}/a")}},
            {"id": "b", "after": ["a"], "http": {"url": format!("{url}/b")}},
            {"id": "c", "after": ["b"], "http": {"url": format!("{url}/c")}}
        ]
    }));
    let other = function(json!({
        "id": "other",
        "triggers": [{"event": "demo/other"}],
        "steps": [{"id": "nap", "sleep": "10ms"}]
    }));
    let stack = Stack::start_on(backend, vec![f, other]).await;
    let event = stack
        .client
        .send_event("demo/replay", json!({"order": 7}))
        .await;
    let other_event = stack.client.send_event("demo/other", json!({})).await;
    let original = poll("the run", DEADLINE, || stack.client.run_of(&event)).await;
    let original = ended(&stack, &original.id).await;
    assert_eq!(original.status, RunStatus::Failed, "{original:?}");
    let first = stack.client.steps(&original.id).await;
    let a_output = common::output(&first["a"].outcome).clone();
    assert!(matches!(
        first["b"].outcome,
        Some(StepOutcome::Failed { .. })
    ));
    assert!(!first.contains_key("c"));

    // The cause is fixed; only `b` and what follows run again.
    svc.broken.store(false, Ordering::SeqCst);
    let (status, replay) = api_post(
        &stack,
        &format!("/runs/{}/replay", original.id),
        Some(json!({"from": "failed"})),
    )
    .await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["replay_of"], original.id.as_str());
    assert_eq!(replay["from"], "failed");
    assert_eq!(replay["function_id"], "replayed");
    assert_eq!(replay["event_id"], event.as_str());
    assert_eq!(replay["copied"], json!(["a"]));
    assert_eq!(replay["scheduled"], json!(["b"]));
    let new_id = replay["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, original.id);
    let again = ended(&stack, &new_id).await;
    assert_eq!(again.status, RunStatus::Completed, "{again:?}");
    assert_eq!(again.event, original.event, "the same event");
    assert_eq!(svc.calls("a").len(), 1, "`a` is not run again");
    assert_eq!(svc.calls("b").len(), 2);
    assert_eq!(svc.calls("c").len(), 1);
    let b_ctx = svc.calls("b").pop().unwrap();
    assert_eq!(b_ctx["run_id"], new_id.as_str());
    assert_eq!(
        b_ctx["steps"]["a"], a_output,
        "`b` sees `a`'s copied output"
    );
    let replayed = stack.client.steps(&new_id).await;
    assert_eq!(common::output(&replayed["a"].outcome), &a_output);
    assert_eq!(
        replayed["a"].attempts, first["a"].attempts,
        "copied as it was"
    );
    assert!(replayed["a"].ended_at.unwrap() < again.created_at);
    assert!(replayed["b"].ended_at.unwrap() >= again.created_at);

    // The event's runs are the original and its replay.
    let runs = stack.client.api_get(&format!("/events/{event}/runs")).await;
    let mut listed = ids(&runs);
    listed.sort();
    let mut expected = vec![original.id.clone(), new_id.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    // A completed run has nothing failed to replay from; from the start it
    // runs every step.
    let (status, body) = api_post(&stack, &format!("/runs/{new_id}/replay"), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("from the start"),
        "{body}"
    );
    let (status, fresh) = api_post(
        &stack,
        &format!("/runs/{new_id}/replay"),
        Some(json!({"from": "start"})),
    )
    .await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["copied"], json!([]));
    assert_eq!(fresh["scheduled"], json!(["a"]));
    let fresh_id = fresh["id"].as_str().unwrap().to_string();
    assert_eq!(ended(&stack, &fresh_id).await.status, RunStatus::Completed);
    assert_eq!(svc.calls("a").len(), 2, "from the start `a` runs again");
    assert_eq!(svc.calls("c").len(), 2);

    // Filters of the list.
    let list = stack.client.api_get("/runs?function=replayed").await;
    assert_eq!(ids(&list).len(), 3, "{list}");
    assert_eq!(ids(&list)[0], fresh_id, "most recent first");
    assert_eq!(list["more"], false);
    let list = stack
        .client
        .api_get("/runs?function=replayed&limit=2")
        .await;
    assert_eq!(ids(&list), [fresh_id.clone(), new_id.clone()]);
    assert_eq!(list["more"], true);
    let list = stack
        .client
        .api_get("/runs?function=replayed&status=failed")
        .await;
    assert_eq!(ids(&list), [original.id.as_str()]);
    let other_run = stack.client.finished_run(&other_event).await;
    let list = stack.client.api_get("/runs?function=other").await;
    assert_eq!(ids(&list), [other_run.id.as_str()]);
    let list = stack
        .client
        .api_get(&format!("/runs?since={}", again.created_at))
        .await;
    assert_eq!(ids(&list), [fresh_id.clone(), new_id.clone()]);
    let list = stack
        .client
        .api_get(&format!(
            "/runs?since={}",
            engine::runner::now_ms() + 60_000
        ))
        .await;
    assert!(ids(&list).is_empty());

    // What cannot be replayed, and why.
    let (status, body) = api_post(&stack, "/runs/nope/replay", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api_post(
        &stack,
        &format!("/runs/{}/replay", original.id),
        Some(json!({"from": "middle"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = reqwest::Client::new()
        .post(format!(
            "{}/v1/runs/{}/replay",
            stack.client.url, original.id
        ))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401, "{body:?}");
    stack.stop().await;
}

/// A function with `cancel_on` records its cancel waits for the replay
/// (only events after the replay cancel it), and a running run cannot be
/// replayed until it ended.
async fn a_run_with_cancel_on_replays_and_a_running_run_does_not(backend: TestBackend) {
    let f = function(json!({
        "id": "napper",
        "triggers": [{"event": "demo/nap"}],
        "cancel_on": [{"event": "demo/wake", "match": "async.data.id == event.data.id"}],
        "steps": [
            {"id": "first", "sleep": "10ms"},
            {"id": "long", "after": ["first"], "sleep": "1h"}
        ]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let event = stack.client.send_event("demo/nap", json!({"id": 1})).await;
    let run = poll("the run", DEADLINE, || stack.client.run_of(&event)).await;
    poll("`first` to complete", DEADLINE, || async {
        let steps = stack.client.steps(&run.id).await;
        steps.get("first")?.outcome.as_ref().map(|_| ())
    })
    .await;
    let (status, body) = api_post(&stack, &format!("/runs/{}/replay", run.id), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("still running"),
        "{body}"
    );
    let (status, _) = api_post(&stack, &format!("/runs/{}/cancel", run.id), None).await;
    assert_eq!(status, 200);
    assert_eq!(ended(&stack, &run.id).await.status, RunStatus::Cancelled);

    let (status, replay) = api_post(&stack, &format!("/runs/{}/replay", run.id), None).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["copied"], json!(["first"]));
    assert_eq!(replay["scheduled"], json!(["long"]));
    let new_id = replay["id"].as_str().unwrap().to_string();
    // `long` sleeps through a delayed job, which leaves no record yet.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let now = stack
        .backends
        .state
        .get_run(&new_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.status, RunStatus::Running, "{now:?}");
    // Its cancel_on wait holds: a matching event cancels the replay.
    stack.client.send_event("demo/wake", json!({"id": 1})).await;
    let cancelled = ended(&stack, &new_id).await;
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(
        cancelled.error.unwrap_or_default().contains("demo/wake"),
        "cancelled by the event"
    );
    stack.stop().await;
}

common::on_every_backend!(
    a_failed_run_replays_from_its_failed_step_or_from_the_start,
    a_run_with_cancel_on_replays_and_a_running_run_does_not,
);

/// `stackctl-engine runs-client`, as the one-off task inside an AWS stack's
/// VPC runs it: a configuration without a runs-API token (the runner's),
/// the request as JSON, the answer as `runs_client` lines among its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_client_answers_a_request_over_its_own_backends() {
    use engine::event_api::runs_client::{Collector, Request};

    let f = function(json!({
        "id": "brief",
        "triggers": [{"event": "demo/brief"}],
        "steps": [{"id": "nap", "sleep": "10ms"}]
    }));
    let stack = Stack::start(vec![f]).await;
    let event = stack.client.send_event("demo/brief", json!({})).await;
    let run = stack.client.finished_run(&event).await;
    let mut config = (*stack.config).clone();
    config.api_token = None;
    let run_client = |request: Request| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stackctl-engine"))
            .args([
                "runs-client",
                "--request",
                &serde_json::to_string(&request).unwrap(),
            ])
            .env(
                engine::config::ENV_CONFIG,
                serde_json::to_string(&config).unwrap(),
            )
            .env_remove(engine::config::ENV_API_TOKEN)
            .output()
            .expect("run stackctl-engine runs-client");
        assert!(out.status.success(), "{out:?}");
        let mut collector = Collector::default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            collector.push(line);
        }
        let (status, body) = collector.finish().expect("an answer");
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };
    let (status, body) = tokio::task::block_in_place(|| {
        run_client(Request {
            method: "GET".into(),
            path: "/v1/runs?function=brief".into(),
            body: None,
        })
    });
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), [run.id.as_str()]);
    let (status, body) = tokio::task::block_in_place(|| {
        run_client(Request {
            method: "POST".into(),
            path: format!("/v1/runs/{}/replay", run.id),
            body: Some(json!({"from": "start"})),
        })
    });
    assert_eq!(status, 200, "{body}");
    let replay = body["id"].as_str().unwrap().to_string();
    assert_eq!(ended(&stack, &replay).await.status, RunStatus::Completed);
    let (status, body) = tokio::task::block_in_place(|| {
        run_client(Request {
            method: "GET".into(),
            path: "/v1/runs/nope".into(),
            body: None,
        })
    });
    assert_eq!(status, 404, "{body}");
    stack.stop().await;
}
