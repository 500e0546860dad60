//! The engine on its AWS backends: SQS queues (a moto server) and Redis
//! state (a real `redis-server`). End to end through the event API over
//! real HTTP: a run completes, a wait resumes, a retried step completes; a
//! request larger than one SQS message is kept in SQS alone, and one whose
//! send fails part-way says which events were stored; a Redis restart, a
//! Redis outage and an unreachable SQS endpoint lose no acknowledged event
//! and dead-letter nothing; a job that fails on every delivery, or whose run
//! is missing, is dead-lettered (failing its run where there is one).
//! Engine processes (the `stackctl-engine` binary, backends from its
//! configuration and `AWS_ENDPOINT_URL`) survive a SIGKILL of the executor,
//! and a chaos run (kill -9 of runner, executor and Redis, a Redis outage)
//! under a steady load loses and duplicates nothing.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    API_TOKEN, Client, DEADLINE, EVENT_KEY, EngineProcess, Stack, StepServer, function,
    moto_and_durable_redis, output, poll, receive_bodies, run_to_success, string_list,
};
use engine::Shutdown;
use engine::backend::redis::RedisState;
use engine::backend::{BackendError, Backends, Message, RunStatus};
use engine::config::{Config, Role};
use engine::functions::FunctionDef;
use engine::metrics::Metrics;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ------------------------------------------------------------ support

/// A TCP forwarder in front of moto that the test can take down (every
/// connection refused and cut) and bring back on the same port: an SQS
/// endpoint that goes away and returns.
struct Outage {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
    task: JoinHandle<()>,
}

impl Outage {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (target, cut) = (target.clone(), cut2.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Self {
            addr,
            up,
            cut,
            task,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn aws_config(redis_url: &str) -> Config {
    let mut config = common::test_config_on(common::sqs_redis_backend("e2e", redis_url));
    // Short timeouts so a message whose handler died comes back quickly.
    config.queues.events.visibility_timeout = engine::functions::Duration::from_secs(2);
    config.queues.work.visibility_timeout = engine::functions::Duration::from_secs(5);
    config.queues.events.max_receives = 100;
    config.queues.work.max_receives = 100;
    config
}

/// The test's queues on `sqs_endpoint` and its state on `redis_url`.
async fn open_backends(config: &Config, sqs_endpoint: &str, redis_url: &str) -> Backends {
    common::open_sqs_redis(sqs_endpoint, redis_url, "e2e", &config.queues).await
}

/// An engine in this process on SQS + Redis (the event API over real HTTP,
/// a runner and an executor as tasks): opens the backends through
/// `sqs_endpoint` and registers `functions`.
async fn aws_stack(functions: Vec<FunctionDef>, sqs_endpoint: &str, redis_url: &str) -> Stack {
    aws_stack_with(functions, sqs_endpoint, redis_url, |_| {}).await
}

/// [`aws_stack`] with `tune` applied to the engine's configuration.
async fn aws_stack_with(
    functions: Vec<FunctionDef>,
    sqs_endpoint: &str,
    redis_url: &str,
    tune: impl FnOnce(&mut Config),
) -> Stack {
    let mut config = aws_config(redis_url);
    tune(&mut config);
    let backends = open_backends(&config, sqs_endpoint, redis_url).await;
    Stack::start_over(config, backends, functions, &[Role::Runner, Role::Executor]).await
}

/// moto, and a redis-server reached through an [`Outage`]: its URL.
async fn redis_behind_an_outage() -> (harness::Moto, harness::RedisServer, Outage, String) {
    let (moto, redis) = moto_and_durable_redis();
    let outage = Outage::start(redis.addr()).await;
    let redis_url = format!("redis://{}/", outage.addr);
    (moto, redis, outage, redis_url)
}

/// `count` events `load/item` of round `round`.
fn load_items(round: u32, count: u32) -> Value {
    (0..count)
        .map(|i| json!({"name": "load/item", "data": {"round": round, "i": i}}))
        .collect()
}

/// The function `id`: on each `load/item` event, one step `work` that
/// calls `step_url`.
fn work_function(id: &str, step_url: String) -> FunctionDef {
    function(json!({
        "id": id,
        "triggers": [{"event": "load/item"}],
        "steps": [{"id": "work", "http": {"url": step_url}}]
    }))
}

fn one_step(url: &str) -> FunctionDef {
    work_function("one-step", format!("{url}/ok/work"))
}

/// Waits until every event in `ids` has a completed run; returns how many.
///
/// The deadline is on progress, not on the total: the wait fails only when
/// no further event got its completed run for [`DEADLINE`]. A lost event
/// (or an engine that never reconnects) shows as such a stall; a machine
/// slowed by other builds only makes the wait longer (the test runner's
/// own timeout still bounds it). Only the events still missing are asked
/// about again, so the polling itself does not load the engine's Redis.
/// On a stall the panic shows what became of the events without one.
async fn all_completed(client: &Client, ids: &[String]) -> usize {
    let mut missing: Vec<String> = ids.to_vec();
    let mut progress_at = tokio::time::Instant::now();
    loop {
        let before = missing.len();
        let mut still = Vec::with_capacity(before);
        for id in missing {
            match client.state.runs_for_event(&id).await {
                Ok(runs) => {
                    assert!(runs.len() <= 1, "one run per event: {runs:?}");
                    if !runs.iter().any(|r| r.status == RunStatus::Completed) {
                        still.push(id);
                    }
                }
                Err(_) => still.push(id),
            }
        }
        missing = still;
        if missing.is_empty() {
            return ids.len();
        }
        if missing.len() < before {
            progress_at = tokio::time::Instant::now();
        } else if progress_at.elapsed() >= DEADLINE {
            let mut report = String::new();
            for id in missing.iter().take(5) {
                let runs = client.state.runs_for_event(id).await;
                report.push_str(&format!("event {id}: runs {runs:?}\n"));
                for run in runs.iter().flatten() {
                    let steps = client.state.steps(&run.id).await;
                    report.push_str(&format!("  steps {steps:?}\n"));
                }
            }
            panic!(
                "{} of {} events still have no completed run, none completed in the last {:?}; \
                 first ones:\n{report}",
                missing.len(),
                ids.len(),
                DEADLINE
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_with_a_wait_and_a_retried_step_completes_on_sqs_and_redis() {
    let (moto, redis) = moto_and_durable_redis();
    let steps = StepServer::start().await;
    let u = &steps.url;
    let f = function(json!({
        "id": "approve",
        "triggers": [{"event": "order/created"}],
        "steps": [
            {"id": "fetch", "http": {"url": format!("{u}/flaky/2/fetch")},
             "retries": {"attempts": 4, "backoff": "10ms"}},
            {"id": "approval", "after": ["fetch"],
             "wait_for_event": {"event": "order/approved", "match": "async.data.order == event.data.order", "timeout": "10m"}},
            {"id": "ship", "after": ["approval"], "http": {"url": format!("{u}/ok/ship")}}
        ]
    }));
    let stack = aws_stack(vec![f], &moto.endpoint(), &redis.url()).await;
    let id = stack
        .client
        .send_event("order/created", json!({"order": 7}))
        .await;
    let run_id = poll("the run to wait for approval", DEADLINE, || async {
        let run = stack.client.run_of(&id).await?;
        let waits = stack.client.state.waits_for("order/approved").await.ok()?;
        waits.iter().any(|w| w.run_id == run.id).then_some(run.id)
    })
    .await;
    stack
        .client
        .send(json!([
            {"name": "order/approved", "data": {"order": 8}},
            {"name": "order/approved", "data": {"order": 7, "by": "ops"}}
        ]))
        .await;
    let run = stack.client.finished_as(&id, RunStatus::Completed).await;
    assert_eq!(run.id, run_id);
    let records = stack.client.steps(&run.id).await;
    assert_eq!(records["fetch"].attempts.len(), 3, "two 500s, then 200");
    assert_eq!(output(&records["approval"].outcome)["data"]["by"], "ops");
    assert_eq!(output(&records["ship"].outcome)["tag"], "ship");
    assert_eq!(steps.calls_of(&run.id, "ship").len(), 1);
    stack.stop().await;
}

/// An event API alone (no runner, no executor) on `backends`: its send URL
/// and what stops it.
async fn event_api_alone(config: &Arc<Config>, backends: Backends) -> (String, Shutdown) {
    let shutdown = Shutdown::new();
    let metrics = Arc::new(Metrics::new());
    let (url, _) = common::spawn_event_api(config, &backends, &metrics, &shutdown).await;
    (format!("{url}/e/{EVENT_KEY}"), shutdown)
}

/// An event API alone whose SQS calls go through a [`harness::FaultProxy`]
/// in front of moto, with the same queues also opened without the proxy.
struct ProxiedEventApi {
    proxy: harness::FaultProxy,
    /// The queues, reached directly.
    direct: Backends,
    /// Where to POST events.
    url: String,
    shutdown: Shutdown,
    _servers: (harness::Moto, harness::RedisServer),
}

impl ProxiedEventApi {
    async fn start() -> Self {
        let (moto, redis) = moto_and_durable_redis();
        let proxy = tokio::task::block_in_place(|| {
            harness::FaultProxy::start(&format!("127.0.0.1:{}", moto.port()), 0.0, 1)
        })
        .expect("start the proxy");
        let config = Arc::new(aws_config(&redis.url()));
        let through = open_backends(&config, &proxy.endpoint(), &redis.url()).await;
        let direct = open_backends(&config, &moto.endpoint(), &redis.url()).await;
        let (url, shutdown) = event_api_alone(&config, through).await;
        Self {
            proxy,
            direct,
            url,
            shutdown,
            _servers: (moto, redis),
        }
    }
}

/// The internal ids of the events in one queue message.
fn event_ids(body: &[u8]) -> Vec<String> {
    let events = engine::backend::decode_events(body).expect("events");
    events.into_iter().map(|e| e.internal_id).collect()
}

/// 60 events of 20 KiB each: about five SQS messages' worth in one request.
fn big_batch() -> Vec<Value> {
    let pad = "x".repeat(20 * 1024);
    (0..60)
        .map(|i| json!({"name": "load/big", "data": {"i": i, "pad": pad}}))
        .collect()
}

/// POSTs [`big_batch`] to the event API at `url`: the status and the body.
async fn send_big_batch(url: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&big_batch())
        .send()
        .await
        .expect("the event API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON answer"))
}

/// A request larger than one SQS message is acknowledged once all of it is
/// in SQS, split over as many messages as it takes, with the state store
/// unreachable the whole time (the event API needs SQS alone); a message
/// SQS cannot hold is refused, never kept anywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_one_sqs_message_is_kept_in_sqs_alone() {
    let (moto, _redis, outage, redis_url) = redis_behind_an_outage().await;
    let config = Arc::new(aws_config(&redis_url));
    let backends = open_backends(&config, &moto.endpoint(), &redis_url).await;
    outage.down();
    let (url, shutdown) = event_api_alone(&config, backends.clone()).await;
    let (status, body) = send_big_batch(&url).await;
    assert_eq!(status, 200);
    let ids = string_list(&body["ids"]);
    assert_eq!(ids.len(), 60);

    let limit = backends.events.max_message_bytes();
    let bodies = receive_bodies(&*backends.events, 60, DEADLINE).await;
    let mut stored = Vec::new();
    for body in &bodies {
        assert!(body.len() <= limit, "{} > {limit}", body.len());
        let events = engine::backend::decode_events(body).expect("events");
        stored.extend(
            events
                .into_iter()
                .map(|e| (e.internal_id, e.data["i"].as_u64().expect("i"))),
        );
    }
    stored.sort();
    let mut expected: Vec<(String, u64)> =
        ids.iter().zip(0..).map(|(id, i)| (id.clone(), i)).collect();
    expected.sort();
    assert_eq!(stored, expected, "every event, once, in SQS");
    let messages = bodies.len();
    assert!(messages >= 5, "1.2 MB over {messages} messages");

    let err = backends
        .events
        .send(vec![Message {
            body: vec![b'a'; 300 * 1024],
            delay: Duration::ZERO,
        }])
        .await
        .expect_err("a message above the SQS limit");
    assert!(matches!(err, BackendError::TooLarge(_)), "{err}");
    shutdown.cancel();
}

/// A request split over several SQS messages whose send fails part-way is
/// answered 503 with the ids of the events that were stored, and exactly
/// those are in SQS: the client can retry the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_fails_part_way_says_which_events_were_stored() {
    let api = ProxiedEventApi::start().await;
    // About five messages' worth; SQS answers the first send only.
    api.proxy.fail_after(1);
    let (status, body) = send_big_batch(&api.url).await;
    assert_eq!(status, 503);
    let mut stored = string_list(&body["stored"]);
    assert!(
        !stored.is_empty() && stored.len() < 60,
        "part of the request was stored: {body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("send only the others again"),
        "{body}"
    );

    let mut found = Vec::new();
    loop {
        let got = api
            .direct
            .events
            .receive(10, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .expect("receive");
        if got.is_empty() {
            break;
        }
        for m in got {
            found.extend(event_ids(&m.body));
        }
    }
    found.sort();
    stored.sort();
    assert_eq!(
        found, stored,
        "exactly the events said to be stored are in SQS"
    );
    api.shutdown.cancel();
}

/// Concurrent requests to one event API share SendMessageBatch calls: 64
/// clients sending single events pay at most half a call per event (a
/// call each before), and every acknowledged event is in SQS once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_sqs_batch_calls() {
    const CLIENTS: usize = 64;
    const EACH: usize = 10;
    let api = ProxiedEventApi::start().await;
    let calls = |name: &str| api.proxy.actions().get(name).copied().unwrap_or(0);
    let before = calls("SendMessageBatch");

    let http = reqwest::Client::new();
    let senders: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, url) = (http.clone(), api.url.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..EACH {
                    let resp = http
                        .post(&url)
                        .json(&json!({"name": "load/one", "data": {"c": c, "i": i}}))
                        .send()
                        .await
                        .expect("the event API answers");
                    assert_eq!(resp.status(), 200);
                    let body: Value = resp.json().await.unwrap();
                    ids.push(body["ids"][0].as_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    let events = (CLIENTS * EACH) as u64;
    let sends = calls("SendMessageBatch") - before;
    assert!(
        sends * 2 <= events,
        "{sends} SendMessageBatch calls for {events} events"
    );
    eprintln!(
        "{events} single-event requests from {CLIENTS} clients: {sends} SendMessageBatch calls"
    );

    let bodies = receive_bodies(&*api.direct.events, acked.len(), DEADLINE).await;
    let mut found: Vec<String> = bodies.iter().flat_map(|b| event_ids(b)).collect();
    found.sort();
    acked.sort();
    assert_eq!(found, acked, "every acknowledged event once in SQS");
    api.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_load_loses_no_acknowledged_event() {
    let (moto, mut redis) = moto_and_durable_redis();
    let steps = StepServer::start().await;
    let stack = aws_stack(vec![one_step(&steps.url)], &moto.endpoint(), &redis.url()).await;
    let mut ids = Vec::new();
    for round in 0..10 {
        if round == 4 {
            // SIGTERM (redis writes its AOF), then the same port again.
            tokio::task::block_in_place(|| redis.start_again()).expect("restart redis");
        }
        ids.extend(stack.client.send(load_items(round, 20)).await);
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(all_completed(&stack.client, &ids).await, 200);
    let runs: HashSet<String> = steps.calls().into_iter().map(|c| c.run_id).collect();
    assert_eq!(runs.len(), 200, "every run's step was called");
    poll("the event stream to drain", DEADLINE, || async {
        let d = stack.backends.events.depth().await.ok()?;
        (d.visible + d.in_flight + d.delayed + d.dead == 0).then_some(())
    })
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_sqs_endpoint_gets_503_and_recovers_on_its_own() {
    let (moto, redis) = moto_and_durable_redis();
    let outage = Outage::start(format!("127.0.0.1:{}", moto.port())).await;
    let steps = StepServer::start().await;
    let stack = aws_stack(vec![one_step(&steps.url)], &outage.endpoint(), &redis.url()).await;
    let before = stack
        .client
        .send_event("load/item", json!({"when": "before"}))
        .await;

    outage.down();
    let http = reqwest::Client::new();
    let url = format!("{}/e/{EVENT_KEY}", stack.client.url);
    for i in 0..3 {
        let resp = http
            .post(&url)
            .json(&json!({"name": "load/item", "data": {"when": "during", "i": i}}))
            .send()
            .await
            .expect("the event API answers");
        assert_eq!(resp.status(), 503, "never 2xx while SQS is unreachable");
        assert!(resp.headers().contains_key("retry-after"));
        // The client learns an error id, not the backend's addresses.
        let body = resp.text().await.unwrap();
        assert!(body.contains("error id"), "{body}");
        assert!(
            !body.contains(&outage.addr.port().to_string()) && !body.contains("123456789012"),
            "{body}"
        );
    }

    outage.restore();
    let after = poll("the event API to accept again", DEADLINE, || async {
        let resp = http
            .post(&url)
            .json(&json!({"name": "load/item", "data": {"when": "after"}}))
            .send()
            .await
            .ok()?;
        if resp.status() == 503 {
            return None;
        }
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.ok()?;
        body["ids"][0].as_str().map(String::from)
    })
    .await;
    assert_eq!(all_completed(&stack.client, &[before, after]).await, 2);
    let during = steps.calls().iter().filter(|c| c.tag == "work").count();
    assert_eq!(during, 2, "refused events made no run");
    stack.stop().await;
}

/// Redis unreachable for far longer than a failing message's redeliveries
/// last (five receives, the default, about a second apart) while events
/// keep arriving: the event API keeps acknowledging them (it needs SQS
/// only), the runner and the executor stop receiving until Redis answers
/// again, and then every acknowledged event completes with both
/// dead-letter queues empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_store_outage_dead_letters_no_acknowledged_work() {
    let (moto, _redis, outage, redis_url) = redis_behind_an_outage().await;
    let steps = StepServer::start().await;
    let defaults = engine::config::QueuesConfig::default();
    let stack = aws_stack_with(
        vec![one_step(&steps.url)],
        &moto.endpoint(),
        &redis_url,
        |c| {
            c.queues.events.max_receives = defaults.events.max_receives;
            c.queues.work.max_receives = defaults.work.max_receives;
        },
    )
    .await;
    // About 40 events a second: a request of 4 events every 100 ms, for
    // 2 s before the outage, 12 s during it and 1 s after.
    let mut ids = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for round in 0..150 {
        if round == 20 {
            outage.down();
        }
        if round == 140 {
            outage.restore();
        }
        tick.tick().await;
        ids.extend(stack.client.send(load_items(round, 4)).await);
    }
    assert_eq!(ids.len(), 600);
    assert_eq!(all_completed(&stack.client, &ids).await, 600);
    let runs: HashSet<String> = steps.calls().into_iter().map(|c| c.run_id).collect();
    assert_eq!(runs.len(), 600, "every run's step was called");
    for (name, queue) in [
        ("events", &stack.backends.events),
        ("work", &stack.backends.work),
    ] {
        let depth = queue.depth().await.expect("depth");
        assert_eq!(
            depth.dead, 0,
            "nothing in the {name} dead-letter queue: {depth:?}"
        );
    }
    stack.stop().await;
}

/// A job that fails on every delivery for a reason of its own (here its
/// run's step records were overwritten with a value of the wrong type) goes
/// to the work dead-letter queue after `max_receives` deliveries, and its
/// run is marked failed with the reason instead of staying `running`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_job_fails_its_run_with_the_reason() {
    let (moto, redis) = moto_and_durable_redis();
    let f = function(json!({
        "id": "nap-then-work",
        "triggers": [{"event": "load/item"}],
        "steps": [
            {"id": "nap", "sleep": "1s"},
            {"id": "after", "after": ["nap"], "sleep": "3s"}
        ]
    }));
    let stack = aws_stack_with(vec![f], &moto.endpoint(), &redis.url(), |c| {
        c.queues.work.max_receives = 2;
    })
    .await;
    let id = stack.client.send_event("load/item", json!({})).await;
    let run = poll("a step record of the run", DEADLINE, || async {
        let run = stack.client.run_of(&id).await?;
        let steps = stack.client.state.steps(&run.id).await.ok()?;
        (!steps.is_empty()).then_some(run)
    })
    .await;
    let key = format!("stackctl:run:{{{}}}:steps", run.id);
    tokio::task::block_in_place(|| redis.command(&["SET", &key, "not a hash"]))
        .expect("overwrite the step records");

    let failed = poll("the run to fail", DEADLINE, || async {
        let run = stack.client.state.get_run(&run.id).await.ok()??;
        (run.status == RunStatus::Failed).then_some(run)
    })
    .await;
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("the job of step `")
            && error.contains("dead-letter queue")
            && error.contains("WRONGTYPE"),
        "{error}"
    );
    poll(
        "the job in the work dead-letter queue",
        DEADLINE,
        || async {
            let depth = stack.backends.work.depth().await.ok()?;
            (depth.dead == 1).then_some(())
        },
    )
    .await;
    stack.stop().await;
}

/// A step job whose run the state store does not have (it lost the run) is
/// not acked as if done: it is retried, then kept in the work dead-letter
/// queue for `stackctl dlq` to show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_run_is_missing_is_dead_lettered_not_dropped() {
    let (moto, redis) = moto_and_durable_redis();
    let stack = aws_stack_with(Vec::new(), &moto.endpoint(), &redis.url(), |c| {
        c.queues.work.max_receives = 2;
    })
    .await;
    let job = json!({"run_id": "01JMISSINGRUN", "step_id": "work", "attempt": 1,
                     "kind": "step", "scheduled_at": 1});
    stack
        .backends
        .work
        .send(vec![Message {
            body: job.to_string().into_bytes(),
            delay: Duration::ZERO,
        }])
        .await
        .expect("send");
    poll(
        "the job in the work dead-letter queue",
        DEADLINE,
        || async {
            let depth = stack.backends.work.depth().await.ok()?;
            (depth.dead == 1 && depth.visible + depth.in_flight == 0).then_some(())
        },
    )
    .await;
    let dead = stack
        .backends
        .work
        .dead_letters(10)
        .await
        .expect("dead letters");
    let body: Value = serde_json::from_slice(&dead[0].body).expect("a job");
    assert_eq!(body["run_id"], "01JMISSINGRUN");
    stack.stop().await;
}

/// Readiness follows what each role needs: with the state store (Redis)
/// unreachable, the event API (SQS only) stays ready and keeps accepting
/// events, while the runner and the executor are not ready; every role
/// stays live, so a container health check does not replace the tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_store_outage_leaves_the_event_api_ready_and_every_role_live() {
    let (moto, _redis, outage, redis_url) = redis_behind_an_outage().await;
    let config = Arc::new(aws_config(&redis_url));
    let backends = open_backends(&config, &moto.endpoint(), &redis_url).await;
    let shutdown = Shutdown::new();
    let mut urls = std::collections::BTreeMap::new();
    for role in ["event-api", "runner", "executor"] {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        urls.insert(role, format!("http://{}", listener.local_addr().unwrap()));
        let st = engine::event_api::ApiState::new(
            config.clone(),
            backends.clone(),
            Arc::new(Metrics::new()),
            role,
        );
        let app = if role == "event-api" {
            engine::event_api::router(st)
        } else {
            engine::event_api::health_router(st)
        };
        tokio::spawn(engine::event_api::serve(listener, app, shutdown.clone()));
    }
    let http = reqwest::Client::new();
    let status = |path: String| {
        let http = http.clone();
        async move {
            http.get(&path)
                .send()
                .await
                .expect("answers")
                .status()
                .as_u16()
        }
    };
    for role in ["event-api", "runner", "executor"] {
        assert_eq!(
            status(format!("{}/health/ready", urls[role])).await,
            200,
            "{role}"
        );
    }

    outage.down();
    for role in ["event-api", "runner", "executor"] {
        assert_eq!(
            status(format!("{}/health/live", urls[role])).await,
            200,
            "{role}"
        );
    }
    assert_eq!(
        status(format!("{}/health/ready", urls["event-api"])).await,
        200
    );
    for role in ["runner", "executor"] {
        assert_eq!(
            status(format!("{}/health/ready", urls[role])).await,
            503,
            "{role}"
        );
        assert_eq!(
            status(format!("{}/health", urls[role])).await,
            503,
            "{role}"
        );
    }
    let resp = http
        .post(format!("{}/e/{EVENT_KEY}", urls["event-api"]))
        .json(&json!({"name": "load/item", "data": {"when": "redis down"}}))
        .send()
        .await
        .expect("the event API answers");
    assert_eq!(resp.status(), 200, "ingestion needs SQS only");

    outage.restore();
    for role in ["runner", "executor"] {
        let url = format!("{}/health/ready", urls[role]);
        poll("readiness once Redis is back", DEADLINE, || {
            let url = url.clone();
            async { (status(url).await == 200).then_some(()) }
        })
        .await;
    }
    shutdown.cancel();
}

// ------------------------------------------------------------ processes

/// Writes `dir/engine.json` for engine processes on SQS queues
/// `<prefix>-events` and `<prefix>-work` (3 s visibility, dead-lettered after
/// `max_receives`) and Redis at `redis_url`, registering `f`; its path.
fn write_process_config(
    dir: &Path,
    prefix: &str,
    redis_url: &str,
    max_receives: u32,
    f: &FunctionDef,
) -> PathBuf {
    let queue =
        json!({"visibility_timeout": "3s", "max_receives": max_receives, "retention": "1d"});
    let config = json!({
        "backend": {"kind": "sqs_redis", "events_queue": format!("{prefix}-events"),
                    "work_queue": format!("{prefix}-work"), "redis_url": redis_url,
                    "create_queues": true},
        "event_keys": [EVENT_KEY],
        "api_token": API_TOKEN,
        "event_api": {"bind": "127.0.0.1:0"},
        "queues": {"events": queue, "work": queue},
        "functions": [f],
        "log_format": "json"
    });
    let path = dir.join("engine.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

/// Engine processes on moto (reached through `AWS_ENDPOINT_URL`) with one
/// configuration ([`write_process_config`]), their logs beside it in a
/// temp dir.
struct AwsProcesses<'a> {
    moto: &'a harness::Moto,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl<'a> AwsProcesses<'a> {
    /// Writes the configuration (see [`write_process_config`]).
    fn new(
        moto: &'a harness::Moto,
        prefix: &str,
        redis_url: &str,
        max_receives: u32,
        f: &FunctionDef,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write_process_config(dir.path(), prefix, redis_url, max_receives, f);
        Self { moto, config, dir }
    }

    /// The log file of the process called `name`.
    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Starts the process called `name` in `role`.
    fn spawn(&self, role: &str, name: &str) -> EngineProcess {
        EngineProcess::spawn_at(self.moto, &self.config, role, self.log(name))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_processes_on_sqs_and_redis_survive_a_sigkill_of_the_executor() {
    let (moto, redis) = moto_and_durable_redis();
    let steps = StepServer::start().await;
    let f = work_function("slowish", format!("{}/slow/20/work", steps.url));
    let engines = AwsProcesses::new(&moto, "proc", &redis.url(), 100, &f);
    let api = engines.spawn("event-api,runner", "api");
    let url = api.event_api_url().await;
    let executor = engines.spawn("executor", "ex1");
    let state = Arc::new(RedisState::open(&redis.url(), false).await.expect("redis"));
    steps.watch_outcomes(state.clone());
    let client = Client::new(url, state);
    let mut ids = Vec::new();
    for round in 0..5 {
        ids.extend(client.send(load_items(round, 20)).await);
    }
    poll("some steps to run", DEADLINE, || async {
        (steps.calls().len() >= 10).then_some(())
    })
    .await;
    executor.kill();
    let _executor = engines.spawn("executor", "ex2");
    assert_eq!(all_completed(&client, &ids).await, 100);
    // A step whose output was saved is never produced again.
    let late: Vec<_> = steps
        .calls()
        .into_iter()
        .filter(|c| c.after_saved)
        .collect();
    assert!(
        late.is_empty(),
        "steps ran after their output was saved: {late:?}"
    );
    api.kill();
}

/// A Redis that restarts without its data (persistence off) loses the
/// function registry with everything else. The runner puts its configured
/// functions back at its next reload and says so (log and metric), so the
/// events sent after the loss start their runs, instead of finding no
/// function and starting nothing in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_gets_the_functions_back_and_says_so() {
    let (moto, mut redis) = tokio::task::block_in_place(|| {
        (
            harness::Moto::start().expect("start moto"),
            harness::RedisServer::builder()
                .start()
                .expect("start redis-server"),
        )
    });
    let steps = StepServer::start().await;
    let engines = AwsProcesses::new(&moto, "lost", &redis.url(), 3, &one_step(&steps.url));
    let api = engines.spawn("event-api", "api");
    let url = api.event_api_url().await;
    let _runner = engines.spawn("runner", "runner");
    let _executor = engines.spawn("executor", "executor");
    let state = Arc::new(RedisState::open(&redis.url(), false).await.expect("redis"));
    let client = Client::new(url, state);
    let before = client.send(load_items(0, 10)).await;
    assert_eq!(all_completed(&client, &before).await, 10);

    tokio::task::block_in_place(|| {
        redis.kill();
        redis.start_again()
    })
    .expect("restart redis");
    // The first call on the old connection fails; the client reconnects.
    let runs = poll("the restarted Redis to answer", DEADLINE, || async {
        client.state.runs_for_event(&before[0]).await.ok()
    })
    .await;
    assert!(runs.is_empty(), "the restarted Redis is empty: {runs:?}");
    // The runner keeps its last registry while a reload fails, so events
    // would still find the function before the first reload that reaches
    // the empty Redis; only once that reload has put the function back do
    // the new events prove the store has it again.
    poll("the runner to put its functions back", DEADLINE, || async {
        std::fs::read_to_string(engines.log("runner"))
            .ok()
            .filter(|l| l.contains("the state store lost registered functions"))
    })
    .await;
    let after = client.send(load_items(1, 10)).await;
    assert_eq!(all_completed(&client, &after).await, 10);
    api.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_state_over_tls_with_an_auth_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    run_to_success(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null()),
        "openssl (Debian package `openssl`)",
    );
    let tls_port = harness::free_port().expect("free port");
    let redis = tokio::task::block_in_place(|| {
        harness::RedisServer::builder()
            .password("s3cret-token")
            .arg("--tls-port")
            .arg(tls_port.to_string())
            .arg("--tls-cert-file")
            .arg(cert.display().to_string())
            .arg("--tls-key-file")
            .arg(key.display().to_string())
            .arg("--tls-auth-clients")
            .arg("no")
            .start()
            .expect("start redis-server with TLS")
    });
    // ElastiCache's shape: TLS plus an auth token. `#insecure`: the test's
    // certificate is self-signed.
    let url = format!("rediss://:s3cret-token@127.0.0.1:{tls_port}/#insecure");
    let state = RedisState::open(&url, false).await.expect("open over TLS");
    let store: &dyn engine::backend::StateStore = &state;
    // The first claim wins; a later one is answered with its holder.
    for claimant in ["me", "you"] {
        let holder = store.claim("k", claimant, Duration::from_secs(60)).await;
        assert_eq!(holder.unwrap(), "me", "claimed by {claimant}");
    }
    let seen = redis.command(&["GET", "stackctl:claim:k"]).expect("GET");
    assert_eq!(seen.as_text().as_deref(), Some("me"), "written over TLS");

    let wrong = format!("rediss://:wrong@127.0.0.1:{tls_port}/#insecure");
    let err = RedisState::open(&wrong, false)
        .await
        .err()
        .expect("a wrong auth token fails at open");
    assert!(
        !matches!(err, BackendError::Unavailable(_)),
        "a wrong token is not transient: {err}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the token is not shown: {err}"
    );
}

// ------------------------------------------------------------ chaos

/// Sends `events_per_request` events every `every` until `stop`, retrying a
/// request the event API refused with 503 (it stored none of it); the ids
/// it was answered. Each tick's request goes out on its own task, so a slow
/// answer (a busy machine, an outage being waited out) does not hold back
/// the ticks after it: the rate is what the event API is offered, whatever
/// its latency.
async fn steady_load(
    url: String,
    every: Duration,
    events_per_request: u32,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let batch = load_items(round, events_per_request);
        let (http, url) = (http.clone(), url.clone());
        requests.spawn(async move {
            loop {
                let resp = http
                    .post(format!("{url}/e/{EVENT_KEY}"))
                    .json(&batch)
                    .send()
                    .await
                    .expect("the event API answers");
                if resp.status() == 503 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
                let body: Value = resp.json().await.expect("JSON");
                return string_list(&body["ids"]);
            }
        });
        round += 1;
    }
    let mut ids = Vec::new();
    while let Some(answered) = requests.join_next().await {
        ids.extend(answered.expect("a load request"));
    }
    ids
}

/// Chaos on engine processes over SQS and Redis under a steady load of 200
/// events a second: kill -9 of the runner and of an executor (each started
/// again), kill -9 of Redis (persistence on, every write synced) started
/// again, and Redis unreachable for 30 s. Every acknowledged event ends as
/// exactly one completed run, both dead-letter queues stay empty, no
/// step's driver is called twice at the same time and none after its
/// output was saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_under_load_loses_and_duplicates_nothing() {
    let (moto, mut redis) = tokio::task::block_in_place(|| {
        (
            harness::Moto::start().expect("start moto"),
            harness::RedisServer::builder()
                .appendonly(true)
                .arg("--appendfsync")
                .arg("always")
                .start()
                .expect("start redis-server"),
        )
    });
    let outage = Outage::start(redis.addr()).await;
    let redis_url = format!("redis://{}/", outage.addr);
    let steps = StepServer::start().await;
    let f = work_function("chaos", format!("{}/slow/20/work", steps.url));
    let engines = AwsProcesses::new(&moto, "chaos", &redis_url, 5, &f);
    let api = engines.spawn("event-api", "api");
    let url = api.event_api_url().await;
    let runner = engines.spawn("runner", "runner-1");
    let executor = engines.spawn("executor", "executor-1");
    let state = Arc::new(RedisState::open(&redis.url(), false).await.expect("redis"));
    steps.watch_outcomes(state.clone());

    let stop = Arc::new(AtomicBool::new(false));
    // 10 events every 50 ms: 200 a second.
    let load = tokio::spawn(steady_load(
        url.clone(),
        Duration::from_millis(50),
        10,
        stop.clone(),
    ));
    let at = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    let started = std::time::Instant::now();
    at(2).await;
    runner.kill();
    let _runner = engines.spawn("runner", "runner-2");
    at(2).await;
    executor.kill();
    let _executor = engines.spawn("executor", "executor-2");
    at(2).await;
    tokio::task::block_in_place(|| {
        redis.kill();
        redis.start_again()
    })
    .expect("restart redis");
    at(2).await;
    outage.down();
    at(30).await;
    outage.restore();
    at(2).await;
    stop.store(true, Ordering::SeqCst);
    let ids = load.await.expect("load");
    // 40 s at 200 a second (every request is answered: the sender waits for
    // the last ones); less only if the sender's own ticks starved.
    assert!(
        ids.len() >= 7_000,
        "{} events sent in {:?}",
        ids.len(),
        started.elapsed()
    );

    let client = Client::new(url, state);
    assert_eq!(all_completed(&client, &ids).await, ids.len());
    let calls = steps.calls();
    let mut by_run: std::collections::HashMap<&str, Vec<_>> = std::collections::HashMap::new();
    for c in &calls {
        by_run.entry(c.run_id.as_str()).or_default().push(c);
    }
    assert_eq!(by_run.len(), ids.len(), "every run's step was called");
    for (run, mut calls) in by_run {
        calls.sort_by_key(|c| c.started);
        for pair in calls.windows(2) {
            assert!(
                pair[0].ended <= pair[1].started,
                "run {run}: two calls of its step at once: {calls:?}"
            );
        }
    }
    let late: Vec<_> = calls.iter().filter(|c| c.after_saved).collect();
    assert!(
        late.is_empty(),
        "steps ran after their output was saved: {late:?}"
    );
    for queue in ["chaos-events", "chaos-work"] {
        assert_eq!(
            dead_depth(&moto, queue).await,
            0,
            "the dead-letter queue of {queue}"
        );
    }
    api.kill();
}

/// Messages in the dead-letter queue of `queue` (its redrive policy's target).
async fn dead_depth(moto: &harness::Moto, queue: &str) -> u64 {
    let (events, _) = engine::backend::sqs::open_pair_with(
        common::sqs_client_at(&moto.endpoint()),
        queue,
        queue,
        false,
        &engine::config::QueuesConfig::default(),
    )
    .await
    .expect("open the queue");
    events.depth().await.expect("depth").dead
}

/// An HTTP step endpoint on raw TCP whose first call is never answered:
/// it notes when the caller gives that call up (closes the connection).
/// Later calls are answered `{}` at once.
struct HangingStep {
    url: String,
    first_closed: Arc<tokio::sync::Notify>,
    task: JoinHandle<()>,
}

impl HangingStep {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/step", listener.local_addr().unwrap());
        let first_closed = Arc::new(tokio::sync::Notify::new());
        let closed = first_closed.clone();
        let task = tokio::spawn(async move {
            let mut first = true;
            while let Ok((conn, _)) = listener.accept().await {
                let (hang, closed) = (std::mem::take(&mut first), closed.clone());
                tokio::spawn(HangingStep::serve(conn, hang, closed));
            }
        });
        Self {
            url,
            first_closed,
            task,
        }
    }

    /// Reads one request; holds it until the caller closes (`hang`) or
    /// answers it.
    async fn serve(mut conn: TcpStream, hang: bool, closed: Arc<tokio::sync::Notify>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0;
        // The request's head, then its body by its length.
        loop {
            match conn.read(&mut buf[read..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
            let text = String::from_utf8_lossy(&buf[..read]).to_lowercase();
            if let Some(head) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if read >= head + 4 + length {
                    break;
                }
            }
        }
        if hang {
            // The caller closing the connection ends the read with 0.
            while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
            closed.notify_one();
            return;
        }
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
        let _ = conn.write_all(answer.as_bytes()).await;
    }

    /// Waits until the caller gave up the first call, at most `within`.
    async fn first_call_given_up(&self, within: Duration) {
        tokio::time::timeout(within, self.first_closed.notified())
            .await
            .expect("the executor to stop the attempt whose lease it lost");
    }
}

impl Drop for HangingStep {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A function whose one step calls `url` with a minute's timeout, so that
/// only a lost lease makes the executor give the call up early.
fn hanging_function(url: &str) -> FunctionDef {
    function(json!({
        "id": "hangs",
        "triggers": [{"event": "demo/hang"}],
        "steps": [{"id": "work", "http": {"url": url, "timeout": "1m"}}]
    }))
}

/// Waits until the step of the run of event `id` has an attempt; the run's id.
async fn first_attempt_started(stack: &Stack, id: &str) -> String {
    poll("the step's first attempt to start", DEADLINE, || async {
        let run = stack.client.run_of(id).await?;
        let records = stack.client.steps(&run.id).await;
        let started = records.get("work").is_some_and(|r| !r.attempts.is_empty());
        started.then_some(run.id)
    })
    .await
}

/// The run completes with two attempts of its step: the first, stopped,
/// counted as interrupted, the second answered.
async fn completed_after_an_interrupted_attempt(stack: &Stack, id: &str) {
    let run = stack.client.finished_as(id, RunStatus::Completed).await;
    let records = stack.client.steps(&run.id).await;
    let attempts = &records["work"].attempts;
    assert_eq!(attempts.len(), 2, "{records:?}");
    assert!(
        attempts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("interrupted")),
        "{records:?}"
    );
    assert_eq!(attempts[1].error, None, "{records:?}");
}

/// An executor whose step lease another holder took (its own ran out while
/// it could not renew it, e.g. a paused process) stops the step's call at
/// its next renewal instead of finishing it beside the new holder; the step
/// runs again once the lease is free, the stopped attempt counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_whose_step_lease_was_taken_stops_the_step() {
    let (moto, redis) = moto_and_durable_redis();
    let step = HangingStep::start().await;
    let stack = aws_stack_with(
        vec![hanging_function(&step.url)],
        &moto.endpoint(),
        &redis.url(),
        |c| c.queues.work.visibility_timeout = engine::functions::Duration::from_secs(3),
    )
    .await;
    let id = stack.client.send_event("demo/hang", json!({})).await;
    let run_id = first_attempt_started(&stack, &id).await;
    // Another holder in the lease's place until 4 s from now.
    let keys = redis.command(&["KEYS", "*slot:*step:*"]).expect("KEYS");
    let harness::Reply::Array(Some(keys)) = keys else {
        panic!("KEYS answered {keys:?}");
    };
    assert_eq!(keys.len(), 1, "one step lease: {keys:?}");
    let key = keys[0].as_text().unwrap();
    assert!(key.contains(&run_id), "{key}");
    let until = (engine::runner::now_ms() + 4_000).to_string();
    redis.command(&["DEL", &key]).expect("DEL");
    redis
        .command(&["ZADD", &key, &until, "another-holder"])
        .expect("ZADD");
    // Renewals come every second (a third of the 3 s lease).
    step.first_call_given_up(Duration::from_secs(10)).await;
    completed_after_an_interrupted_attempt(&stack, &id).await;
    stack.stop().await;
}

/// An executor that cannot renew its step lease (the state store
/// unreachable) stops the step's call by the time the lease runs out, so no
/// executor that takes the lease afterwards calls it beside this one; the
/// step runs again once the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_cannot_renew_its_step_lease_stops_the_step_in_time() {
    let (moto, _redis, outage, redis_url) = redis_behind_an_outage().await;
    let step = HangingStep::start().await;
    let stack = aws_stack_with(
        vec![hanging_function(&step.url)],
        &moto.endpoint(),
        &redis_url,
        |c| c.queues.work.visibility_timeout = engine::functions::Duration::from_secs(3),
    )
    .await;
    let id = stack.client.send_event("demo/hang", json!({})).await;
    first_attempt_started(&stack, &id).await;
    outage.down();
    // The lease runs out 3 s after its last renewal, which came before the
    // cut (1 s of slack for a loaded machine's timers).
    step.first_call_given_up(Duration::from_secs(4)).await;
    outage.restore();
    completed_after_an_interrupted_attempt(&stack, &id).await;
    stack.stop().await;
}
