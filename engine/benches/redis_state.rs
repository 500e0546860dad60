//! `cargo bench -p engine --bench redis_state`: the Redis state store under
//! the whole engine (event API over HTTP, runner and executor in this
//! process; queues embedded, so every Redis call is state) on a local
//! `redis-server` (appendonly on). For a 1-step function with an `http`
//! step (a step server in this process), one with a `sleep: 1ms` step and
//! a chain of three `http` steps:
//! 1. Redis commands per completed run: every command the engine's
//!    connection sends, read from `MONITOR` (commands run inside Lua
//!    scripts are listed as `lua` and not counted), by command, next to
//!    the `INFO commandstats` deltas of the same phase. Each is a round
//!    trip except the executor's two `HGETALL`s per step, one pipeline.
//! 2. Completed runs per second with MONITOR off, events sent in batches
//!    of 100. `BENCH_RUNS` sets the runs of phase 2 (default 2000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::Shutdown;
use engine::backend::{BackendConfig, RunStatus};
use engine::config::Config;
use engine::functions::FunctionDef;
use engine::metrics::Metrics;
use serde_json::json;

mod common;
use common::{Monitor, commandstats};

const EVENT_KEY: &str = "bench-key";

async fn completed(state: &Arc<dyn engine::backend::StateStore>) -> u64 {
    state
        .run_counts()
        .await
        .expect("run_counts")
        .get(&RunStatus::Completed)
        .copied()
        .unwrap_or(0)
}

/// Sends `n` events in batches of 100 and waits until `total` runs completed.
async fn drive(
    http: &reqwest::Client,
    url: &str,
    state: &Arc<dyn engine::backend::StateStore>,
    n: usize,
    total: u64,
) -> Duration {
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let batch: Vec<_> = (sent..(sent + 100).min(n))
            .map(|i| json!({"name": "bench/run", "data": {"i": i}}))
            .collect();
        sent += batch.len();
        let resp = http
            .post(format!("{url}/e/{EVENT_KEY}"))
            .json(&batch)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "event API: {}", resp.status());
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while completed(state).await < total {
        assert!(Instant::now() < deadline, "runs did not complete in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// A step service answering every POST with a small JSON output.
async fn step_server() -> String {
    let app = axum::Router::new().route(
        "/step",
        axum::routing::post(|| async { axum::Json(json!({"ok": true})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/step", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("step server") });
    url
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let step_url = rt.block_on(step_server());
    let http =
        |id: &str, after: &[&str]| json!({"id": id, "after": after, "http": {"url": step_url}});
    for (label, steps) in [
        ("1-step runs (http step)", vec![http("call", &[])]),
        (
            "1-step runs (sleep: 1ms step)",
            vec![json!({"id": "pause", "sleep": "1ms"})],
        ),
        (
            "3-step runs (http steps a -> b -> c)",
            vec![http("a", &[]), http("b", &["a"]), http("c", &["b"])],
        ),
    ] {
        bench(&rt, label, steps, runs);
    }
}

fn bench(rt: &tokio::runtime::Runtime, label: &str, steps: Vec<serde_json::Value>, runs: usize) {
    let redis = harness::RedisServer::builder()
        .appendonly(true)
        .start()
        .expect("start redis-server");
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let mut config = Config::new(BackendConfig::EmbeddedRedis {
            path: dir.path().join("queues.db"),
            redis_url: redis.url(),
            redis_cluster: false,
        });
        config.event_keys = vec![EVENT_KEY.into()];
        let f: FunctionDef = serde_json::from_value(json!({
            "id": "bench",
            "triggers": [{"event": "bench/run"}],
            "steps": steps
        }))
        .expect("function");
        config.functions = vec![f.clone()];
        let config = Arc::new(config);
        let backends = engine::backend::open(&config.backend, &config.queues)
            .await
            .expect("open backends");
        backends.state.put_function(&f).await.expect("register");
        let shutdown = Shutdown::new();
        let metrics = Arc::new(Metrics::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = engine::event_api::router(engine::event_api::ApiState::new(
            config.clone(),
            backends.clone(),
            metrics.clone(),
            "event-api",
        ));
        let mut tasks = vec![tokio::spawn({
            let sd = shutdown.clone();
            async move {
                engine::event_api::serve(listener, app, sd)
                    .await
                    .expect("event API")
            }
        })];
        let (b, c, m, sd) = (
            backends.clone(),
            config.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            engine::runner::run(b, c, m, sd).await.expect("runner")
        }));
        let (b, c, m, sd) = (
            backends.clone(),
            config.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            engine::executor::run(b, c, m, sd).await.expect("executor")
        }));
        // The bench's own polling goes through a separate connection.
        let poller: Arc<dyn engine::backend::StateStore> = Arc::new(
            engine::backend::redis::RedisState::open(&redis.url(), false)
                .await
                .expect("poller"),
        );
        let http = reqwest::Client::new();

        // Warm up: connections, scripts loaded, the registry read.
        drive(&http, &url, &poller, 50, 50).await;

        // Phase 1: round trips.
        let measured = 200usize;
        let before = commandstats(&redis);
        let monitor = Monitor::start(&redis.addr()).await;
        drive(&http, &url, &poller, measured, 50 + measured as u64).await;
        let seen = monitor.stop();
        let after = commandstats(&redis);
        // The engine's one multiplexed connection sent the most commands;
        // the poller's run_counts pipelines and INFO are other clients.
        let mut per_client: BTreeMap<&str, u64> = BTreeMap::new();
        for ((client, _), n) in &seen {
            *per_client.entry(client.as_str()).or_default() += n;
        }
        let engine_client = per_client
            .iter()
            .filter(|(client, _)| **client != "lua")
            .max_by_key(|(_, n)| **n)
            .map(|(client, _)| client.to_string())
            .unwrap_or_default();
        let per_run = |n: u64| n as f64 / measured as f64;
        let engine_commands = per_client.get(engine_client.as_str()).copied().unwrap_or(0);
        let inside_scripts = per_client.get("lua").copied().unwrap_or(0);
        println!("Redis state store, {label}, {measured} runs measured");
        println!(
            "  commands per completed run (engine connection, MONITOR; the executor's two \
             HGETALLs per step are one pipelined round trip): {:.2}",
            per_run(engine_commands)
        );
        for ((client, command), n) in &seen {
            if *client == engine_client {
                println!("    {command:<18} {:>7.2}", per_run(*n));
            }
        }
        println!(
            "  commands run inside Lua scripts per run: {:.2}",
            per_run(inside_scripts)
        );
        println!(
            "  INFO commandstats deltas per run (all clients, script-internal calls included):"
        );
        for (name, calls) in &after {
            let delta = calls - before.get(name).copied().unwrap_or(0);
            if delta > 0 && !name.starts_with("info") && !name.starts_with("monitor") {
                println!("    {name:<18} {:>7.2}", per_run(delta));
            }
        }

        // Phase 2: throughput.
        let done_before = completed(&poller).await;
        let took = drive(&http, &url, &poller, runs, done_before + runs as u64).await;
        println!(
            "  throughput: {runs} runs in {:.2} s = {:.0} completed runs/s (load average {})",
            took.as_secs_f64(),
            runs as f64 / took.as_secs_f64(),
            common::loadavg()
        );
        shutdown.cancel();
        for t in tasks {
            let _ = t.await;
        }
    });
}
