//! Flow control end to end, in one process: a function's `throttle` (runs
//! over the limit start later, none dropped), `debounce` (only the last
//! event of a quiet period starts a run; `timeout` bounds the push-back),
//! `batch_events` (one run per batch of events, each event in one) and
//! `priority` (a freed concurrency slot goes to the higher-priority run).
//! Events go over HTTP to the event API; runs and step attempts are read
//! from the state store. Every test runs on the embedded backend
//! (`embedded::`) and on SQS + Redis (`sqs_redis::`).

use crate::common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::{DEADLINE, Stack, StepServer, TestBackend, function, poll};
use engine::backend::{Event, Message, Run, RunStatus, encode_events};
use engine::runner::now_ms;
use serde_json::Value;
use serde_json::json;

/// Waits until the work queue holds nothing, delayed jobs included.
async fn drain_work(stack: &Stack) {
    poll("the work queue to drain", DEADLINE, || async {
        let d = stack.backends.work.depth().await.expect("depth");
        (d.visible == 0 && d.in_flight == 0 && d.delayed == 0).then_some(())
    })
    .await;
}

/// Every run of `function_id`, oldest first.
async fn runs_of(stack: &Stack, function_id: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = stack
        .backends
        .state
        .list_runs(None, 10_000)
        .await
        .expect("list runs")
        .into_iter()
        .filter(|r| r.function_id == function_id)
        .collect();
    runs.sort_by_key(|r| r.created_at);
    runs
}

/// 100 events sent within a second against a throttle of 10/s with a
/// burst of 1: every event gets a run and every run completes, but their
/// steps start no faster than GCRA allows. With an interval T = 100 ms,
/// the k-th start (k ≥ 1) is reserved at the first one's time plus
/// (k - 1)·T, never before the first event was sent; so the k-th earliest
/// step start is at least `sent + (k - 1)·T`, at most limit + burst = 11
/// start in any second (plus what scheduling jitter can bunch), and the
/// last starts about 9.8 s after the first.
async fn a_throttle_starts_runs_over_its_limit_later_and_drops_none(backend: TestBackend) {
    const LIMIT: usize = 10;
    const BURST: usize = 1;
    const INTERVAL: i64 = 100;
    /// What executor pick-up and moto's receives may bunch together.
    const JITTER: usize = 3;
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "throttled",
        "triggers": [{"event": "api/call"}],
        "throttle": {"limit": LIMIT, "period": "1s", "burst": BURST},
        "steps": [{"id": "work", "http": {"url": format!("{}/ok/work", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;

    let sent_at = now_ms();
    let mut ids = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for batch in 0..10 {
        tick.tick().await;
        let events: Vec<_> = (0..10)
            .map(|i| json!({"name": "api/call", "data": {"n": batch * 10 + i}}))
            .collect();
        ids.extend(c.send(json!(events)).await);
    }
    let sent_in = now_ms() - sent_at;
    assert!(sent_in < 1500, "the 100 events took {sent_in} ms to send");

    let mut starts = Vec::new();
    for id in &ids {
        let run = c.finished_as(id, RunStatus::Completed).await;
        let work = &c.steps(&run.id).await["work"];
        starts.push(work.attempts[0].started_at);
    }
    starts.sort_unstable();
    assert_eq!(starts.len(), 100, "none dropped");
    assert_eq!(steps.calls().len(), 100, "each run's step ran once");

    for (k, start) in starts.iter().enumerate().skip(1) {
        let earliest = sent_at + (k as i64 - 1) * INTERVAL;
        assert!(
            *start >= earliest,
            "start {k} at +{} ms, before its earliest reservation +{} ms: {starts:?}",
            start - sent_at,
            earliest - sent_at
        );
    }
    for (i, from) in starts.iter().enumerate() {
        let within = starts[i..].iter().take_while(|s| **s < from + 1000).count();
        assert!(
            within <= LIMIT + BURST + JITTER,
            "{within} starts within a second of +{} ms: {starts:?}",
            from - sent_at
        );
    }
    let first = starts[0];
    let first_second = starts.iter().filter(|s| **s < first + 1000).count();
    assert!(
        (LIMIT - JITTER..=LIMIT + BURST + JITTER).contains(&first_second),
        "{first_second} runs started in the first second: {starts:?}"
    );
    let span = starts[99] - first;
    assert!(
        (9_800 - 2 * INTERVAL..=12_000).contains(&span),
        "the last run started {span} ms after the first: {starts:?}"
    );
    assert!(
        first - sent_at < 2_000,
        "the first run waited {} ms",
        first - sent_at
    );
    stack.stop().await;
}

/// A throttled run's start is reserved once: its event delivered again
/// (here: sent to the event stream a second time, as a redelivery would)
/// neither starts its step before the reserved time nor takes another
/// start from the runs after it. One run per 3 s: A now, B at +3 s, and C,
/// sent after B's redelivery, at +6 s (not +9 s).
async fn a_redelivered_event_keeps_its_throttled_start(backend: TestBackend) {
    /// What a delayed job's delivery and pick-up may add.
    const LATE: i64 = 1_500;
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "paced",
        "triggers": [{"event": "api/call"}],
        "throttle": {"limit": 1, "period": "3s"},
        "steps": [{"id": "work", "http": {"url": format!("{}/ok/work", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;
    let started = |id: String| async move {
        let run = c.finished_as(&id, RunStatus::Completed).await;
        c.steps(&run.id).await["work"].attempts[0].started_at
    };

    let sent = now_ms();
    // One request: its events are handled in order, so a reserves first
    // (two requests may be handled at once, in either order).
    let ids = c
        .send(json!([
            {"name": "api/call", "data": {"n": "a"}},
            {"name": "api/call", "data": {"n": "b"}}
        ]))
        .await;
    let [a, b] = <[String; 2]>::try_from(ids).expect("two ids");
    let b_run = poll("b's run", DEADLINE, || c.run_of(&b)).await;
    stack
        .backends
        .events
        .send(vec![Message {
            body: encode_events(std::slice::from_ref(&b_run.event)),
            delay: Duration::ZERO,
        }])
        .await
        .expect("send b again");
    poll("the event stream to drain", DEADLINE, || async {
        let d = stack.backends.events.depth().await.expect("depth");
        (d.visible == 0 && d.in_flight == 0 && d.delayed == 0).then_some(())
    })
    .await;
    let c_id = c.send_event("api/call", json!({"n": "c"})).await;

    // Reserved from a's start, which is no sooner than it was sent.
    let a_at = started(a).await;
    let b_at = started(b).await;
    let c_at = started(c_id).await;
    assert!(
        a_at - sent < LATE,
        "a started {} ms after it was sent",
        a_at - sent
    );
    assert!(
        (sent + 3_000..=sent + 3_000 + LATE).contains(&b_at),
        "b started {} ms after a was sent",
        b_at - sent
    );
    assert!(
        (sent + 6_000..=sent + 6_000 + LATE).contains(&c_at),
        "c started {} ms after a was sent",
        c_at - sent
    );
    assert_eq!(steps.calls().len(), 3, "b's step ran once");
    assert_eq!(runs_of(&stack, "paced").await.len(), 3);
    stack.stop().await;
}

/// A debounce of 500 ms over a burst of events (50 ms apart) starts exactly
/// one run, with the burst's last event, once 500 ms passed without
/// another; another key's event has a quiet period of its own; a second
/// burst after the first run started starts a second run.
async fn a_debounce_starts_one_run_with_the_last_event_of_a_burst(backend: TestBackend) {
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "debounced",
        "triggers": [{"event": "doc/edited"}],
        "debounce": {"period": "500ms", "key": "event.data.doc"},
        "steps": [{"id": "sync", "http": {"url": format!("{}/ok/sync", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;

    let mut burst = Vec::new();
    let mut last_sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for n in 0..8 {
        tick.tick().await;
        last_sent = now_ms();
        burst.push(
            c.send_event("doc/edited", json!({"doc": "a", "n": n}))
                .await,
        );
    }
    let other = c
        .send_event("doc/edited", json!({"doc": "b", "n": 0}))
        .await;

    let last = burst.last().unwrap();
    let run = c.finished_as(last, RunStatus::Completed).await;
    assert_eq!(run.event.data["n"], 8 - 1, "the run has the last event");
    assert!(
        run.created_at >= last_sent + 500,
        "created {} ms after the last event was sent",
        run.created_at - last_sent
    );
    c.finished_as(&other, RunStatus::Completed).await;
    drain_work(&stack).await;
    for id in &burst[..burst.len() - 1] {
        assert_eq!(c.run_of(id).await, None, "event {id} was replaced");
    }
    assert_eq!(
        runs_of(&stack, "debounced").await.len(),
        2,
        "one run per key"
    );

    let mut second = Vec::new();
    for n in 0..3 {
        second.push(
            c.send_event("doc/edited", json!({"doc": "a", "n": 100 + n}))
                .await,
        );
    }
    let run = c
        .finished_as(second.last().unwrap(), RunStatus::Completed)
        .await;
    assert_eq!(run.event.data["n"], 102);
    drain_work(&stack).await;
    for id in &second[..2] {
        assert_eq!(c.run_of(id).await, None, "event {id} was replaced");
    }
    let runs = runs_of(&stack, "debounced").await;
    assert_eq!(runs.len(), 3, "a second burst, a second run: {runs:?}");
    assert_eq!(steps.calls().len(), 3);
    stack.stop().await;
}

/// Under a stream of events every 200 ms that never leaves a quiet second,
/// a debounce of 1 s with a timeout of 2 s still starts runs: the first
/// once the burst is 2 s old (never sooner), with the latest event then;
/// each next burst likewise; and once the stream stops, one more with the
/// last event, within its quiet second.
async fn a_debounce_timeout_bounds_the_push_back_under_a_stream(backend: TestBackend) {
    /// What a delayed job's delivery may add (SQS delays are whole seconds).
    const LATE: i64 = 1_500;
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "streamed",
        "triggers": [{"event": "sensor/reading"}],
        "debounce": {"period": "1s", "timeout": "2s"},
        "steps": [{"id": "store", "http": {"url": format!("{}/ok/store", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;

    let first_sent = now_ms();
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    for n in 0..30 {
        tick.tick().await;
        let at = now_ms();
        sent.push((at, c.send_event("sensor/reading", json!({"n": n})).await));
    }
    let stream_end = now_ms();

    let last = &sent.last().unwrap().1;
    c.finished_as(last, RunStatus::Completed).await;
    drain_work(&stack).await;
    let runs = runs_of(&stack, "streamed").await;
    assert!(runs.len() >= 2, "{runs:?}");
    let first = &runs[0];
    let waited = first.created_at - first_sent;
    assert!(
        (2_000..=2_000 + LATE).contains(&waited),
        "the first run started {waited} ms after the stream began"
    );
    assert!(
        first.created_at < stream_end,
        "the timeout started it while the stream went on"
    );
    let n = first.event.data["n"].as_i64().unwrap();
    assert!(n >= 5, "it has the latest event of the burst, not #{n}");
    for pair in runs.windows(2) {
        let gap = pair[1].created_at - pair[0].created_at;
        assert!(
            gap <= 2_000 + LATE + 200,
            "{gap} ms between runs under a steady stream: {runs:?}"
        );
    }
    let final_run = runs.last().unwrap();
    assert_eq!(&final_run.event.internal_id, last, "the last event's run");
    // Its burst's timeout may come first, else its quiet second.
    let at = sent.last().unwrap().0;
    assert!(
        (at..=at + 1_000 + LATE).contains(&final_run.created_at),
        "{} ms after the last event",
        final_run.created_at - at
    );
    let with_runs: std::collections::HashSet<&str> =
        runs.iter().map(|r| r.event.internal_id.as_str()).collect();
    assert_eq!(with_runs.len(), runs.len(), "one run per event at most");
    assert_eq!(steps.calls().len(), runs.len());
    stack.stop().await;
}

/// A step service that keeps every run context posted to it (`POST /`)
/// and answers how many `events` it had.
struct Recorder {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Recorder {
    async fn start() -> Self {
        async fn record(
            State(bodies): State<Arc<Mutex<Vec<Value>>>>,
            Json(body): Json<Value>,
        ) -> Json<Value> {
            let n = body["events"].as_array().map_or(0, Vec::len);
            bodies.lock().unwrap().push(body);
            Json(json!({ "events": n }))
        }
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/", post(record))
            .with_state(bodies.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("recorder") });
        Self { url, bodies }
    }

    /// The run contexts posted for `run_id`.
    fn of(&self, run_id: &str) -> Vec<Value> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .filter(|b| b["run_id"] == run_id)
            .cloned()
            .collect()
    }

    /// The internal ids of the `events` the one call of `run_id` was given,
    /// checking that its `event` is the first of them.
    fn events_of(&self, run_id: &str) -> Vec<String> {
        let calls = self.of(run_id);
        assert_eq!(calls.len(), 1, "one call for run {run_id}: {calls:?}");
        let events = calls[0]["events"].as_array().expect("events").clone();
        assert_eq!(calls[0]["event"], events[0], "`event` is the first");
        events
            .iter()
            .map(|e| e["internal_id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A batched function: its one step posts to `recorder`.
fn batched(
    id: &str,
    event: &str,
    batch: Value,
    recorder: &Recorder,
) -> engine::functions::FunctionDef {
    function(json!({
        "id": id,
        "triggers": [{"event": event}],
        "batch_events": batch,
        "steps": [{"id": "bulk", "http": {"url": recorder.url}}]
    }))
}

/// Waits for `n` completed runs of `function_id` and returns them, oldest
/// first, after the work queue drained (so that no timeout job left could
/// start another).
async fn completed_runs(stack: &Stack, function_id: &str, n: usize) -> Vec<Run> {
    poll(
        &format!("{n} completed runs of {function_id}"),
        DEADLINE,
        || async {
            let runs = runs_of(stack, function_id).await;
            (runs
                .iter()
                .filter(|r| r.status == RunStatus::Completed)
                .count()
                >= n)
                .then_some(())
        },
    )
    .await;
    drain_work(stack).await;
    runs_of(stack, function_id).await
}

/// 25 events against a batch of at most 10 with a 3 s timeout start
/// exactly 3 runs: two of 10 events when they fill up, and one of the 5
/// left once its first event is 3 s old. Every event is in exactly one
/// run, and the step is given all of its run's events, `event` first.
async fn a_batch_starts_one_run_per_max_size_events_and_the_rest_at_its_timeout(
    backend: TestBackend,
) {
    let recorder = Recorder::start().await;
    let f = batched(
        "bulk-write",
        "row/added",
        json!({"max_size": 10, "timeout": "3s"}),
        &recorder,
    );
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;

    let sent_at = now_ms();
    let events: Vec<_> = (0..25)
        .map(|n| json!({"name": "row/added", "data": {"n": n}}))
        .collect();
    let ids = c.send(json!(events)).await;
    assert_eq!(ids.len(), 25);

    let runs = completed_runs(&stack, "bulk-write", 3).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    for run in &runs {
        let events = recorder.events_of(&run.id);
        assert_eq!(
            run.event.internal_id, events[0],
            "the run's event is its first"
        );
        let partial = events.len() < 10;
        if partial {
            assert!(
                run.created_at - sent_at >= 3_000,
                "the batch of {} started {} ms after the events were sent, before its timeout",
                events.len(),
                run.created_at - sent_at
            );
        }
        sizes.push(events.len());
        seen.extend(events);
    }
    sizes.sort_unstable();
    assert_eq!(sizes, [5, 10, 10]);
    seen.sort_unstable();
    let mut all = ids.clone();
    all.sort_unstable();
    assert_eq!(seen, all, "every event in exactly one run");
    assert_eq!(recorder.bodies.lock().unwrap().len(), 3);
    stack.stop().await;
}

/// Events of different keys gather in batches of their own: 3 of one
/// account fill a batch at once, 2 of another start theirs at the
/// timeout, each run with its own account's events only.
async fn events_with_different_keys_batch_separately(backend: TestBackend) {
    let recorder = Recorder::start().await;
    let f = batched(
        "per-account",
        "account/event",
        json!({"max_size": 3, "timeout": "2s", "key": "event.data.account"}),
        &recorder,
    );
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;

    let mut of = std::collections::HashMap::<&str, Vec<String>>::new();
    for (n, account) in ["a", "b", "a", "b", "a"].into_iter().enumerate() {
        let id = c
            .send_event("account/event", json!({"account": account, "n": n}))
            .await;
        of.entry(account).or_default().push(id);
    }

    let runs = completed_runs(&stack, "per-account", 2).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    for run in &runs {
        let account = run.event.data["account"].as_str().unwrap();
        let mut events = recorder.events_of(&run.id);
        events.sort_unstable();
        let mut expected = of[account].clone();
        expected.sort_unstable();
        assert_eq!(
            events, expected,
            "account {account}'s run has its events only"
        );
    }
    stack.stop().await;
}

/// Puts `events` on the event stream again, as a redelivery would.
async fn redeliver(stack: &Stack, events: &[Event]) {
    stack
        .backends
        .events
        .send(vec![Message {
            body: encode_events(events),
            delay: Duration::ZERO,
        }])
        .await
        .expect("redeliver");
}

/// An event delivered again joins no second batch and starts nothing
/// twice: the three events of a batch whose run started, delivered again,
/// start no run and join the next batch neither; an event delivered twice
/// while its batch is open is in it once (else it would fill the batch of
/// three at once instead of its timeout starting a run of two).
async fn a_redelivered_event_joins_no_second_batch(backend: TestBackend) {
    let recorder = Recorder::start().await;
    let f = batched(
        "once",
        "item/added",
        json!({"max_size": 3, "timeout": "2s"}),
        &recorder,
    );
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;

    let mut first = Vec::new();
    for n in 0..3 {
        first.push(c.send_event("item/added", json!({"n": n})).await);
    }
    let runs = completed_runs(&stack, "once", 1).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let call = recorder.of(&runs[0].id).remove(0);
    let events: Vec<Event> = serde_json::from_value(call["events"].clone()).expect("events");
    let mut got: Vec<&str> = events.iter().map(|e| e.internal_id.as_str()).collect();
    got.sort_unstable();
    first.sort_unstable();
    assert_eq!(got, first);
    redeliver(&stack, &events).await;

    let fresh = c.send_event("item/added", json!({"n": 3})).await;
    let made = Event {
        internal_id: ulid::Ulid::new().to_string(),
        id: None,
        name: "item/added".into(),
        data: json!({"n": 4}),
        user: Value::Null,
        ts: now_ms(),
        v: None,
        traceparent: None,
    };
    redeliver(&stack, std::slice::from_ref(&made)).await;
    redeliver(&stack, std::slice::from_ref(&made)).await;

    let runs = completed_runs(&stack, "once", 2).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let second = recorder.events_of(&runs[1].id);
    let expected: HashSet<String> = [fresh, made.internal_id.clone()].into();
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second.into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(
        recorder.bodies.lock().unwrap().len(),
        2,
        "no run started twice"
    );
    stack.stop().await;
}

/// With one concurrency slot held by run A, run L (priority 0) starts
/// waiting for it, and run H (priority 60 s) arrives a little later: H's
/// step gets the slot when A's ends, though L asked for it first and was
/// created first. One step at a time throughout.
async fn a_higher_priority_run_takes_a_freed_slot_first(backend: TestBackend) {
    let steps = StepServer::start().await;
    let f = function(json!({
        "id": "prioritized",
        "triggers": [{"event": "job/queued"}],
        "concurrency": {"limit": 1},
        "priority": {"run": "event.data.vip ? 60 : 0"},
        "steps": [{"id": "work", "http": {"url": format!("{}/slow/2000/work", steps.url)}}]
    }));
    let stack = Stack::start_on(backend, vec![f]).await;
    let c = &stack.client;

    let a = c
        .send_event("job/queued", json!({"who": "a", "vip": false}))
        .await;
    poll("A's step to hold the slot", DEADLINE, || async {
        (steps.in_flight_now("work") == 1).then_some(())
    })
    .await;
    let l = c
        .send_event("job/queued", json!({"who": "l", "vip": false}))
        .await;
    // Lets L's step find the slot taken and start waiting before H exists.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let h = c
        .send_event("job/queued", json!({"who": "h", "vip": true}))
        .await;
    assert_eq!(
        steps.in_flight_now("work"),
        1,
        "A still holds the slot when H arrives, so L and H contend for it"
    );

    let mut started = Vec::new();
    for id in [&a, &l, &h] {
        let run = c.finished_as(id, RunStatus::Completed).await;
        started.push((
            run.created_at,
            c.steps(&run.id).await["work"].attempts[0].started_at,
        ));
    }
    let [
        (a_created, a_start),
        (l_created, l_start),
        (h_created, h_start),
    ] = started[..]
    else {
        unreachable!("three runs")
    };
    assert!(
        a_created <= l_created && l_created < h_created,
        "{started:?}"
    );
    assert!(a_start < h_start, "A held the slot first: {started:?}");
    assert!(
        h_start < l_start,
        "the higher-priority run H started before L: {started:?}"
    );
    assert_eq!(steps.max_in_flight("work"), 1, "one step at a time");
    assert_eq!(steps.calls().len(), 3, "each step ran once");
}

common::on_every_backend!(
    a_throttle_starts_runs_over_its_limit_later_and_drops_none,
    a_redelivered_event_keeps_its_throttled_start,
    a_debounce_starts_one_run_with_the_last_event_of_a_burst,
    a_debounce_timeout_bounds_the_push_back_under_a_stream,
    a_batch_starts_one_run_per_max_size_events_and_the_rest_at_its_timeout,
    events_with_different_keys_batch_separately,
    a_redelivered_event_joins_no_second_batch,
    a_higher_priority_run_takes_a_freed_slot_first,
);
