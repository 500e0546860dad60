//! `cargo bench -p engine --bench redis_state`: the Redis state store under
//! the whole engine (event API over HTTP, runner and executor in this
//! process; queues embedded, so every Redis call is state) on a local
//! `redis-server` (appendonly on). For a 1-step function with an `http`
//! step (a step server in this process) and one with a `sleep: 1ms` step:
//! 1. Redis round trips per completed run: every command the engine's
//!    connection sends, read from `MONITOR` (commands run inside Lua
//!    scripts are listed as `lua` and not counted), next to the
//!    `INFO commandstats` deltas of the same phase. Target: at most 8.
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
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EVENT_KEY: &str = "bench-key";

fn commandstats(redis: &harness::RedisServer) -> BTreeMap<String, u64> {
    let info = redis
        .command(&["INFO", "commandstats"])
        .expect("INFO")
        .as_text()
        .unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cmdstat_")?;
            let (name, fields) = rest.split_once(':')?;
            let calls = fields
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Counts the commands each client sends, from `MONITOR`, until stopped.
struct Monitor {
    counts: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    async fn start(addr: &str) -> Self {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("monitor");
        stream.write_all(b"MONITOR\r\n").await.expect("MONITOR");
        let mut lines = BufReader::new(stream).lines();
        let first = lines.next_line().await.expect("read").unwrap_or_default();
        assert_eq!(first, "+OK", "MONITOR answered {first}");
        let counts = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                // +1700000000.123456 [0 127.0.0.1:41234] "EVALSHA" ...
                let Some(client) = line.split('[').nth(1).and_then(|s| s.split(']').next()) else {
                    continue;
                };
                let client = client.split_whitespace().nth(1).unwrap_or("?").to_string();
                *c.lock().unwrap().entry(client).or_insert(0) += 1;
            }
        });
        Self { counts, task }
    }

    fn stop(self) -> BTreeMap<String, u64> {
        self.task.abort();
        self.counts.lock().unwrap().clone()
    }
}

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
    for (label, step) in [
        (
            "http step",
            json!({"id": "call", "http": {"url": step_url}}),
        ),
        ("sleep: 1ms step", json!({"id": "pause", "sleep": "1ms"})),
    ] {
        bench(&rt, label, step, runs);
    }
}

fn bench(rt: &tokio::runtime::Runtime, label: &str, step: serde_json::Value, runs: usize) {
    let redis = harness::RedisServer::builder()
        .appendonly(true)
        .start()
        .expect("start redis-server");
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let mut config = Config::new(BackendConfig::EmbeddedRedis {
            path: dir.path().join("queues.db"),
            redis_url: redis.url(),
        });
        config.event_keys = vec![EVENT_KEY.into()];
        let f: FunctionDef = serde_json::from_value(json!({
            "id": "one-step",
            "triggers": [{"event": "bench/run"}],
            "steps": [step]
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
            engine::backend::redis::RedisState::open(&redis.url())
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
        let per_client = monitor.stop();
        let after = commandstats(&redis);
        // The engine's one multiplexed connection sent the most commands;
        // the poller's run_counts pipelines and INFO are other clients.
        let engine_commands = per_client
            .iter()
            .filter(|(client, _)| client.as_str() != "lua")
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        let inside_scripts = per_client.get("lua").copied().unwrap_or(0);
        println!("Redis state store, 1-step runs ({label}), {measured} runs measured");
        println!(
            "  round trips per completed run (engine connection, MONITOR): {:.2}  (target <= 8)",
            engine_commands as f64 / measured as f64
        );
        println!(
            "  commands run inside Lua scripts per run: {:.2}",
            inside_scripts as f64 / measured as f64
        );
        println!(
            "  INFO commandstats deltas per run (all clients, script-internal calls included):"
        );
        for (name, calls) in &after {
            let delta = calls - before.get(name).copied().unwrap_or(0);
            if delta > 0 && !name.starts_with("info") && !name.starts_with("monitor") {
                println!("    {name:<18} {:>7.2}", delta as f64 / measured as f64);
            }
        }

        // Phase 2: throughput.
        let done_before = completed(&poller).await;
        let took = drive(&http, &url, &poller, runs, done_before + runs as u64).await;
        println!(
            "  throughput: {runs} runs in {:.2} s = {:.0} completed runs/s (load average {})",
            took.as_secs_f64(),
            runs as f64 / took.as_secs_f64(),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        shutdown.cancel();
        for t in tasks {
            let _ = t.await;
        }
    });
}
