//! End to end, in one process: events sent over HTTP to the event API run
//! functions whose http steps call a step server started by the test.
//! Covers the DAG (`after`, `if` skips, a durable `sleep`), trigger filters,
//! event idempotency, a function's idempotency key, rate limit and timeouts, `cancel_on`, cancelling
//! through the runs API and per-key concurrency limits. Every test runs on the embedded backend
//! (`embedded::`) and on SQS + Redis (`sqs_redis::`).

use crate::common;

use std::time::Duration;

use common::{DEADLINE, Stack, StepServer, TestBackend, function, output, poll};
use engine::backend::{RunStatus, StepOutcome};
use engine::config::Role;
use serde_json::{Value, json};

/// Waits until every event message has been processed and acked.
async fn drain_events(stack: &Stack) {
    poll("the event stream to drain", DEADLINE, || async {
        let d = stack.backends.events.depth().await.expect("depth");
        (d.visible == 0 && d.in_flight == 0 && d.delayed == 0).then_some(())
    })
    .await;
}

async fn a_dag_with_a_skipped_branch_and_a_sleep_completes_with_the_right_outputs(
    backend: TestBackend,
) {
    let steps = StepServer::start().await;
    let u = &steps.url;
    let f = function(json!({
        "id": "three-steps",
        "triggers": [{"event": "demo/start"}],
        "steps": [
            {"id": "fetch", "http": {"url": format!("{u}/ok/fetch")}},
            {"id": "pro", "after": ["fetch"], "if": "event.data.plan == 'pro' && steps.fetch.tag == 'fetch'",
             "http": {"url": format!("{u}/ok/pro")}},
            {"id": "free", "after": ["fetch"], "if": "event.data.plan == 'free'",
             "http": {"url": format!("{u}/ok/free")}},
            {"id": "nap", "after": ["pro", "free"], "sleep": "200ms"},
            {"id": "finish", "after": ["nap"], "if": "has(steps.pro) && !has(steps.free)",
             "http": {"url": format!("{u}/ok/finish")}}
        ]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let id = stack
        .client
        .send_event("demo/start", json!({"plan": "pro"}))
        .await;
    let run = stack.client.finished_as(&id, RunStatus::Completed).await;
    assert_eq!(run.error, None);
    assert_eq!(run.function_id, "three-steps");

    let records = stack.client.steps(&run.id).await;
    assert_eq!(records.len(), 5, "{records:?}");
    assert_eq!(output(&records["fetch"].outcome)["tag"], "fetch");
    assert_eq!(
        output(&records["pro"].outcome)["seen"]["fetch"]["tag"],
        "fetch"
    );
    assert_eq!(records["free"].outcome, Some(StepOutcome::Skipped));
    assert_eq!(output(&records["nap"].outcome), &Value::Null);
    let finish = output(&records["finish"].outcome);
    assert_eq!(finish["tag"], "finish");
    let seen = finish["seen"].as_object().expect("seen");
    let mut seen_ids: Vec<&str> = seen.keys().map(String::as_str).collect();
    seen_ids.sort();
    assert_eq!(
        seen_ids,
        ["fetch", "nap", "pro"],
        "skipped steps are absent from `steps`"
    );

    // Each http step ran exactly once; the skipped one never.
    for (step, n) in [("fetch", 1), ("pro", 1), ("free", 0), ("finish", 1)] {
        assert_eq!(steps.calls_of(&run.id, step).len(), n, "calls of {step}");
    }
    // The sleep lasted at least its duration.
    let nap = &records["nap"].attempts;
    assert_eq!(nap.len(), 1);
    assert!(nap[0].ended_at - nap[0].started_at >= 200, "{nap:?}");
    let pro_done = records["pro"].ended_at.expect("pro ended");
    let finish_start = records["finish"].attempts[0].started_at;
    assert!(
        finish_start - pro_done >= 200,
        "finish started {}ms after pro",
        finish_start - pro_done
    );

    // The runs API shows the same.
    let view = stack.client.api_get(&format!("/runs/{}", run.id)).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["steps"].as_array().map(Vec::len), Some(5));
    stack.stop().await;
}

async fn trigger_filters_and_event_ids_decide_which_events_start_runs(backend: TestBackend) {
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "filtered",
        "triggers": [{"event": "demo/filtered", "if": "event.data.n > 1"}],
        "steps": [{"id": "only", "http": {"url": format!("{}/ok/only", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;
    let low = c.send_event("demo/filtered", json!({"n": 1})).await;
    let other = c.send_event("demo/unrelated", json!({"n": 5})).await;
    let first = c
        .send_one(json!({"id": "dup-1", "name": "demo/filtered", "data": {"n": 5}}))
        .await;
    let repeat = c
        .send_one(json!({"id": "dup-1", "name": "demo/filtered", "data": {"n": 5}}))
        .await;
    assert_ne!(
        first, repeat,
        "every accepted event gets its own internal id"
    );

    // The two events with one id may be handled at once (a runner takes a
    // batch of messages together): whichever claims the id first starts
    // the one run, the other none.
    drain_events(&stack).await;
    let mut with_id = Vec::new();
    for id in [&first, &repeat] {
        if !stack
            .backends
            .state
            .runs_for_event(id)
            .await
            .unwrap()
            .is_empty()
        {
            with_id.push(id);
        }
    }
    assert_eq!(with_id.len(), 1, "one run for the two events with id dup-1");
    c.finished_as(with_id[0], RunStatus::Completed).await;
    for (id, what) in [(&low, "filtered out"), (&other, "no trigger")] {
        let runs = stack.backends.state.runs_for_event(id).await.unwrap();
        assert!(runs.is_empty(), "{what} must not start a run: {runs:?}");
    }
    assert_eq!(steps.calls().len(), 1);
    stack.stop().await;
}

/// A function's idempotency key lets one event per key start a run (in 24
/// hours); another function triggered by the same events is not held back,
/// and an event whose key cannot be computed still starts its run.
async fn an_idempotency_key_starts_one_run_per_key(backend: TestBackend) {
    let steps = StepServer::start().await;
    let once = function(json!({
        "id": "once-per-order",
        "triggers": [{"event": "shop/order"}],
        "idempotency": "event.data.order",
        "steps": [{"id": "bill", "http": {"url": format!("{}/ok/bill", steps.url)}}]
    }));
    let every = function(json!({
        "id": "every-order",
        "triggers": [{"event": "shop/order"}],
        "steps": [{"id": "log", "sleep": "1ms"}]
    }));
    let stack = Stack::start_on(backend, vec![once, every]).await;
    let c = &stack.client;
    let first = c.send_event("shop/order", json!({"order": "A-1"})).await;
    let again = c.send_event("shop/order", json!({"order": "A-1"})).await;
    let other = c.send_event("shop/order", json!({"order": 7})).await;
    let keyless = c.send_event("shop/order", json!({})).await;
    drain_events(&stack).await;
    let functions_of = |id: &String| {
        let state = stack.backends.state.clone();
        let id = id.clone();
        async move {
            let runs = state.runs_for_event(&id).await.unwrap();
            let mut functions: Vec<String> = runs.into_iter().map(|r| r.function_id).collect();
            functions.sort();
            functions
        }
    };
    // The two events with one key may be handled at once: whichever claims
    // the key first starts the billing run, the other does not.
    let both = [functions_of(&first).await, functions_of(&again).await];
    let billed = both
        .iter()
        .position(|f| f.iter().any(|f| f == "once-per-order"))
        .expect("one of the key's events starts the billing run");
    assert_eq!(both[billed], ["every-order", "once-per-order"], "{both:?}");
    assert_eq!(
        both[1 - billed],
        ["every-order"],
        "the key seen again: {both:?}"
    );
    let keyed = if billed == 0 { &first } else { &again };
    for (id, what) in [(&other, "another key"), (&keyless, "no key")] {
        assert_eq!(
            functions_of(id).await,
            ["every-order", "once-per-order"],
            "{what}"
        );
    }
    for id in [keyed, &other, &keyless] {
        poll("the billing run to complete", DEADLINE, || async {
            let runs = stack.backends.state.runs_for_event(id).await.ok()?;
            runs.iter()
                .any(|r| r.function_id == "once-per-order" && r.status == RunStatus::Completed)
                .then_some(())
        })
        .await;
    }
    assert_eq!(steps.calls().len(), 3, "one bill per key and one without");
    stack.stop().await;
}

/// A rate limit starts at most `limit` runs per period and key; each event
/// over it is recorded as a skipped run saying why, and starts nothing.
async fn a_rate_limit_skips_the_runs_over_it_and_says_why(backend: TestBackend) {
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "limited",
        "triggers": [{"event": "api/call"}],
        "rate_limit": {"limit": 2, "period": "1m", "key": "event.data.user"},
        "steps": [{"id": "work", "http": {"url": format!("{}/ok/work", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;
    let mut ann = Vec::new();
    for _ in 0..4 {
        ann.push(c.send_event("api/call", json!({"user": "ann"})).await);
    }
    let bob = c.send_event("api/call", json!({"user": "bob"})).await;
    drain_events(&stack).await;
    let mut statuses = Vec::new();
    for id in ann.iter().chain([&bob]) {
        let runs = stack.backends.state.runs_for_event(id).await.unwrap();
        assert_eq!(
            runs.len(),
            1,
            "one run (or skipped run) per event: {runs:?}"
        );
        statuses.push(runs[0].status);
    }
    let skipped = statuses
        .iter()
        .filter(|s| **s == RunStatus::Skipped)
        .count();
    assert_eq!(skipped, 2, "ann's third and fourth calls: {statuses:?}");
    assert_ne!(
        statuses[4],
        RunStatus::Skipped,
        "bob has a window of his own"
    );
    for id in ann.iter().chain([&bob]) {
        let run = c.finished_run(id).await;
        match run.status {
            RunStatus::Completed => {}
            RunStatus::Skipped => assert_eq!(
                run.error.as_deref(),
                Some("rate limited: 2 runs already started in the last 1m for key `ann`"),
                "{run:?}"
            ),
            other => panic!("{other:?}: {run:?}"),
        }
    }
    assert_eq!(steps.calls().len(), 3, "two of ann's calls and bob's");
    stack.stop().await;
}

/// A function's `timeouts`: a run still running after `finish` is
/// cancelled with the reason; one whose first step is held back (here by a
/// concurrency limit of 1) for longer than `start` is cancelled before it
/// calls anything, while the run holding the slot completes.
async fn runs_past_their_timeouts_are_cancelled_with_the_reason(backend: TestBackend) {
    let steps = StepServer::start().await;
    let slow = function(json!({
        "id": "slow",
        "triggers": [{"event": "demo/slow"}],
        "timeouts": {"finish": "1s"},
        "steps": [{"id": "nap", "sleep": "1m"}]
    }));
    let queued = function(json!({
        "id": "queued",
        "triggers": [{"event": "demo/queued"}],
        "concurrency": {"limit": 1},
        "timeouts": {"start": "1s"},
        "steps": [{"id": "work", "http": {"url": format!("{}/slow/3000/work", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![slow, queued]).await;
    let c = &stack.client;
    let napping = c.send_event("demo/slow", json!({})).await;
    let first = c.send_event("demo/queued", json!({"n": 1})).await;
    poll("the first queued run's step to start", DEADLINE, || async {
        (steps.in_flight_now("work") == 1).then_some(())
    })
    .await;
    let second = c.send_event("demo/queued", json!({"n": 2})).await;

    let run = c.finished_as(&napping, RunStatus::Cancelled).await;
    assert_eq!(
        run.error.as_deref(),
        Some("timed out: not finished within 1s (timeouts.finish)"),
        "{run:?}"
    );
    let run = c.finished_as(&second, RunStatus::Cancelled).await;
    assert_eq!(
        run.error.as_deref(),
        Some("timed out: no step started within 1s (timeouts.start)"),
        "{run:?}"
    );
    assert!(
        stack.client.steps(&run.id).await.is_empty(),
        "it called nothing"
    );
    c.finished_as(&first, RunStatus::Completed).await;
    assert_eq!(
        steps.calls().len(),
        1,
        "only the first queued run's step ran"
    );
    stack.stop().await;
}

async fn cancel_on_events_and_the_runs_api_cancel_running_runs(backend: TestBackend) {
    let f = function(json!({
        "id": "cancellable",
        "triggers": [{"event": "order/created"}],
        "cancel_on": [{"event": "order/cancelled", "match": "async.data.order == event.data.order"}],
        "steps": [{"id": "wait", "wait_for_event": {"event": "order/never", "timeout": "10m"}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;
    let one = c.send_event("order/created", json!({"order": 1})).await;
    let two = c.send_event("order/created", json!({"order": 2})).await;
    poll("both runs to be waiting", DEADLINE, || async {
        (stack
            .backends
            .state
            .waits_for("order/never")
            .await
            .unwrap()
            .len()
            == 2)
            .then_some(())
    })
    .await;

    c.send_event("order/cancelled", json!({"order": 1})).await;
    let run1 = c.finished_as(&one, RunStatus::Cancelled).await;
    assert!(
        run1.error
            .as_deref()
            .unwrap_or("")
            .contains("order/cancelled"),
        "{run1:?}"
    );

    // The waits are dropped right after the run ends.
    let waiting = poll(
        "the cancelled run's wait to be dropped",
        DEADLINE,
        || async {
            let w = stack.backends.state.waits_for("order/never").await.unwrap();
            (w.len() == 1).then_some(w)
        },
    )
    .await;
    assert_ne!(waiting[0].run_id, run1.id);
    let cancels = stack
        .backends
        .state
        .waits_for("order/cancelled")
        .await
        .unwrap();
    assert!(cancels.iter().all(|w| w.run_id != run1.id), "{cancels:?}");

    let runs2 = stack.backends.state.runs_for_event(&two).await.unwrap();
    assert_eq!(runs2.len(), 1);
    assert_eq!(
        runs2[0].status,
        RunStatus::Running,
        "the other order's run goes on"
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/runs/{}/cancel", c.url, runs2[0].id))
        .bearer_auth(common::API_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    c.finished_as(&two, RunStatus::Cancelled).await;
    stack.stop().await;
}

async fn a_concurrency_limit_per_key_is_honoured(backend: TestBackend) {
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "limited",
        "triggers": [{"event": "demo/limited"}],
        "concurrency": {"limit": 1, "key": "event.data.user"},
        "steps": [{"id": "work", "http": {"url": format!("{}/slow/100/limited", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let ids = stack
        .client
        .send(json!([
            {"name": "demo/limited", "data": {"user": "u1"}},
            {"name": "demo/limited", "data": {"user": "u1"}},
            {"name": "demo/limited", "data": {"user": "u1"}},
            {"name": "demo/limited", "data": {"user": "u1"}}
        ]))
        .await;
    for id in &ids {
        stack.client.finished_as(id, RunStatus::Completed).await;
    }
    assert_eq!(steps.calls().len(), 4);
    assert_eq!(
        steps.max_in_flight("limited"),
        1,
        "one step at a time for user u1"
    );
    let calls = steps.calls();
    let first = calls.iter().map(|c| c.started).min().unwrap();
    let last = calls.iter().map(|c| c.ended).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(400),
        "four 100ms steps ran one after another"
    );
    stack.stop().await;
}

/// Copies of a step's job taken by another executor while the step runs (a
/// redelivery, a duplicated event): the step runs once, never twice at the
/// same time, and the copies find its outcome when they get their turn.
/// Each executor takes one job at a time, so the copies go to the one that
/// is not running the step.
async fn duplicate_jobs_never_run_a_step_twice_at_once(backend: TestBackend) {
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "once",
        "triggers": [{"event": "demo/once"}],
        "steps": [{"id": "work", "http": {"url": format!("{}/slow/1500/once", steps.url)}}]
    }));
    let stack = Stack::start_tuned(
        backend,
        vec![f],
        &[Role::Runner, Role::Executor, Role::Executor],
        |c| c.executor.concurrency = 1,
    )
    .await;
    let id = stack.client.send_event("demo/once", json!({})).await;
    let run_id = poll("the step to start", DEADLINE, || async {
        let run = stack.client.run_of(&id).await?;
        (steps.in_flight_now("once") == 1).then_some(run.id)
    })
    .await;
    let now = engine::runner::now_ms();
    let copy = engine::runner::Job::first(&run_id, "work", now)
        .to_message(now, stack.backends.work.max_delay());
    stack
        .backends
        .work
        .send(vec![copy.clone(), copy.clone(), copy])
        .await
        .expect("send copies of the job");
    let run = stack.client.finished_as(&id, RunStatus::Completed).await;
    // The copies are done with once they saw the outcome.
    poll("the copies to be handled", DEADLINE, || async {
        let d = stack.backends.work.depth().await.ok()?;
        (d.visible + d.in_flight + d.delayed == 0).then_some(())
    })
    .await;
    assert_eq!(steps.max_in_flight("once"), 1, "never two at once");
    assert_eq!(steps.calls_of(&run.id, "work").len(), 1, "run once");
    let records = stack.client.steps(&run.id).await;
    assert_eq!(records["work"].attempts.len(), 1, "{records:?}");
    stack.stop().await;
}

/// Runners delete runs that ended longer than `runner.run_retention` ago
/// (a runner looks when it starts, then every minute); running runs stay.
async fn ended_runs_are_deleted_after_their_retention(backend: TestBackend) {
    let f = function(json!({
        "id": "brief",
        "triggers": [{"event": "demo/brief"}],
        "steps": [{"id": "nap", "sleep": "10ms"}]
    }));
    let long = function(json!({
        "id": "long",
        "triggers": [{"event": "demo/long"}],
        "steps": [{"id": "nap", "sleep": "1h"}]
    }));
    let mut stack = Stack::start_tuned(
        backend,
        vec![f, long],
        &[Role::Runner, Role::Executor],
        |c| c.runner.run_retention = engine::functions::Duration::from_secs(1),
    )
    .await;
    let brief = stack.client.send_event("demo/brief", json!({})).await;
    let long = stack.client.send_event("demo/long", json!({})).await;
    let ended = stack.client.finished_as(&brief, RunStatus::Completed).await;
    let running = poll("the long run", DEADLINE, || stack.client.run_of(&long)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Another runner: it looks at once.
    stack.start_role(Role::Runner);
    poll("the ended run to be deleted", DEADLINE, || async {
        stack
            .client
            .state
            .get_run(&ended.id)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        stack
            .client
            .state
            .runs_for_event(&brief)
            .await
            .unwrap()
            .is_empty()
    );
    let still = stack.client.state.get_run(&running.id).await.unwrap();
    assert_eq!(still.map(|r| r.status), Some(RunStatus::Running));
    stack.stop().await;
}

common::on_every_backend!(
    a_dag_with_a_skipped_branch_and_a_sleep_completes_with_the_right_outputs,
    trigger_filters_and_event_ids_decide_which_events_start_runs,
    an_idempotency_key_starts_one_run_per_key,
    a_rate_limit_skips_the_runs_over_it_and_says_why,
    runs_past_their_timeouts_are_cancelled_with_the_reason,
    cancel_on_events_and_the_runs_api_cancel_running_runs,
    a_concurrency_limit_per_key_is_honoured,
    duplicate_jobs_never_run_a_step_twice_at_once,
    ended_runs_are_deleted_after_their_retention,
);
