//! The engine's `/metrics` after a known workload: per-function run counts
//! and durations, step latencies, queue lag, the dead-letter depth, the
//! in-flight gauge, and the names that existed before (which `stackctl
//! bench`, the harness and dashboards read). Each test runs on the embedded
//! backend (`embedded::`) and on SQS + Redis (`sqs_redis::`).

use std::time::Duration;

use crate::common;

use common::{Stack, StepServer, TestBackend, function, poll};
use engine::backend::{Message, RunStatus};
use engine::config::Role;
use serde_json::json;

/// The text of the stack's `/metrics`, after checking its content type.
async fn scrape(stack: &Stack) -> String {
    let resp = reqwest::Client::new()
        .get(format!("{}/metrics", stack.client.url))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    resp.text().await.expect("metrics text")
}

/// The value of the one sample named exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn assert_sample(text: &str, series: &str, expected: f64) {
    assert_eq!(
        sample(text, series),
        Some(expected),
        "`{series}` in\n{text}"
    );
}

async fn one_completed_and_one_failed_run_are_counted_and_timed(backend: TestBackend) {
    let steps = StepServer::start().await;
    let ok = function(json!({
        "id": "ok",
        "triggers": [{"event": "demo/ok"}],
        "steps": [{"id": "call", "http": {"url": format!("{}/ok/call", steps.url)}}]
    }));
    let bad = function(json!({
        "id": "bad",
        "triggers": [{"event": "demo/bad"}],
        "steps": [{"id": "call", "http": {"url": format!("{}/status/400/call", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![ok, bad]).await;
    let ok_id = stack.client.send_event("demo/ok", json!({})).await;
    let bad_id = stack.client.send_event("demo/bad", json!({})).await;
    stack.client.finished_as(&ok_id, RunStatus::Completed).await;
    stack.client.finished_as(&bad_id, RunStatus::Failed).await;

    // Every step job and both event messages were received at least once.
    let at_least = [
        ("stackctl_queue_lag_seconds_count{queue=\"events\"}", 2.0),
        ("stackctl_queue_lag_seconds_count{queue=\"work\"}", 2.0),
        ("stackctl_executor_job_seconds_count{kind=\"step\"}", 2.0),
        ("stackctl_runner_message_seconds_count", 2.0),
    ];
    // The executor counts a run's end as it writes it and times the job when
    // its processing returns, a moment later: poll for both.
    let text = poll("both runs counted", Duration::from_secs(10), || async {
        let text = scrape(&stack).await;
        let ended = sample(
            &text,
            "stackctl_runs_ended_total{function=\"bad\",status=\"failed\"}",
        );
        let timed = at_least
            .iter()
            .all(|(series, n)| sample(&text, series).is_some_and(|v| v >= *n));
        (ended == Some(1.0) && timed).then_some(text)
    })
    .await;
    for (series, value) in [
        (
            "stackctl_runs_ended_total{function=\"ok\",status=\"completed\"}",
            1.0,
        ),
        (
            "stackctl_run_duration_seconds_count{function=\"ok\",status=\"completed\"}",
            1.0,
        ),
        (
            "stackctl_run_duration_seconds_count{function=\"bad\",status=\"failed\"}",
            1.0,
        ),
        (
            "stackctl_step_duration_seconds_count{function=\"ok\",driver=\"http\",result=\"ok\"}",
            1.0,
        ),
        (
            "stackctl_step_duration_seconds_count{function=\"bad\",driver=\"http\",result=\"error\"}",
            1.0,
        ),
        // This very request is in flight while the text is rendered.
        ("stackctl_http_requests_in_flight{role=\"event-api\"}", 1.0),
        // Names that existed before, with their meaning.
        ("stackctl_events_accepted_total", 2.0),
        (
            "stackctl_http_requests_total{role=\"event-api\",route=\"/e/{event_key}\",status=\"200\"}",
            2.0,
        ),
        (
            "stackctl_http_request_duration_seconds_count{role=\"event-api\",route=\"/e/{event_key}\"}",
            2.0,
        ),
        ("stackctl_runner_events_total{outcome=\"processed\"}", 2.0),
        ("stackctl_runner_runs_created_total{function=\"ok\"}", 1.0),
        ("stackctl_runner_runs_created_total{function=\"bad\"}", 1.0),
        ("stackctl_executor_steps_total{status=\"completed\"}", 1.0),
        ("stackctl_executor_steps_total{status=\"failed\"}", 1.0),
        ("stackctl_runs{status=\"completed\"}", 1.0),
        ("stackctl_runs{status=\"failed\"}", 1.0),
        (
            "stackctl_queue_messages{queue=\"work\",state=\"dead\"}",
            0.0,
        ),
        ("stackctl_queue_dead_letters{queue=\"work\"}", 0.0),
        ("stackctl_queue_dead_letters{queue=\"events\"}", 0.0),
    ] {
        assert_sample(&text, series, value);
    }
    for family in [
        "# TYPE stackctl_http_request_duration_seconds histogram",
        "# TYPE stackctl_run_duration_seconds histogram",
        "# TYPE stackctl_step_duration_seconds histogram",
        "# TYPE stackctl_queue_lag_seconds histogram",
        "# TYPE stackctl_runs_ended counter",
    ] {
        assert!(text.lines().any(|l| l == family), "missing `{family}`");
    }
    stack.stop().await;
}

async fn a_dead_lettered_job_shows_in_the_dead_letter_gauge(backend: TestBackend) {
    let stack = Stack::start_tuned(backend, vec![], &[Role::Executor], |c| {
        c.queues.work.max_receives = 2;
    })
    .await;
    // A job no executor can decode fails every delivery until the queue
    // dead-letters it.
    stack
        .backends
        .work
        .send(vec![Message {
            body: b"not a job".to_vec(),
            delay: Duration::ZERO,
        }])
        .await
        .expect("send");
    let text = poll("the job dead-lettered", Duration::from_secs(30), || async {
        let text = scrape(&stack).await;
        (sample(&text, "stackctl_queue_dead_letters{queue=\"work\"}") == Some(1.0)).then_some(text)
    })
    .await;
    assert_sample(
        &text,
        "stackctl_queue_messages{queue=\"work\",state=\"dead\"}",
        1.0,
    );
    assert_sample(&text, "stackctl_queue_dead_letters{queue=\"events\"}", 0.0);
    stack.stop().await;
}

common::on_every_backend!(
    one_completed_and_one_failed_run_are_counted_and_timed,
    a_dead_lettered_job_shows_in_the_dead_letter_gauge,
);

/// The embedded queue knows when each message became ready: with no
/// executor, the work queue's one job ages in the gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_ready_message_ages_on_the_embedded_queue() {
    let f = function(json!({
        "id": "waits",
        "triggers": [{"event": "demo/waits"}],
        "steps": [{"id": "call", "http": {"url": "http://127.0.0.1:9/never"}}]
    }));
    let stack = Stack::start_roles(vec![f], &[Role::Runner]).await;
    let series = "stackctl_queue_oldest_message_age_seconds{queue=\"work\"}";
    let text = scrape(&stack).await;
    assert_sample(&text, series, 0.0);
    stack.client.send_event("demo/waits", json!({})).await;
    let age = poll("the job to age", Duration::from_secs(10), || async {
        let text = scrape(&stack).await;
        sample(&text, series).filter(|age| *age >= 0.3)
    })
    .await;
    assert!(age < 10.0, "{age}");
    let text = scrape(&stack).await;
    assert_sample(
        &text,
        "stackctl_queue_messages{queue=\"work\",state=\"visible\"}",
        1.0,
    );
    stack.stop().await;
}
