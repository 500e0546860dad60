//! `cargo bench -p engine --bench sqs_path`: what an event costs on the
//! engine's AWS data path, today's engine beside a baseline build of an
//! earlier revision, in the same run.
//!
//! Three `stackctl-engine` processes (event API, runner, executor) on the
//! SQS + Redis backends: SQS is a moto server behind one counting proxy per
//! process (so requests are counted by process and API action), state a
//! local `redis-server`. The load generator sends single events at a fixed
//! rate over 64 connections to a 1-step function (an `http` step against
//! the reference server). For each rate and each engine:
//! - SQS requests per accepted event at the event API, and per completed
//!   run at the runner and the executor, by action;
//! - the event-API process's CPU time per accepted event (`/proc/PID/stat`),
//!   beside the reference server's CPU time per request under the same load
//!   (what serving the HTTP requests alone costs on this machine), and
//!   the context switches of both per event (`/proc/PID/task/*/status`:
//!   how often their threads sleep and wake);
//! - Redis commands per completed run: those the engine's connections
//!   send (`MONITOR`; each is a round trip but the executor's two
//!   `HGETALL`s per step, one pipeline), and every command run including
//!   those inside Lua scripts (`INFO commandstats` deltas; the bench itself
//!   sends none while measuring but `INFO`);
//! - the event API's latency percentiles.
//!
//! A cell ends when every accepted event's step ran (the executor's
//! `stackctl_executor_steps_total`) and both queues are empty (their
//! attributes read from moto directly, not through a proxy), or after
//! [`DRAIN`], saying how many runs had no outcome then.
//!
//! The event API, the runner and the reference server run with the async
//! worker threads stackctl gives a service of the example's size (cpu 512:
//! one, `TOKIO_WORKER_THREADS`); the executor, which runs on whole
//! instances, with the runtime's default (one per CPU).
//!
//! `BENCH_RATES` (default `100,500,2000` events/s), `BENCH_SECS` (default
//! 10 per cell), `BENCH_BASELINE` (a revision, default [`BASELINE`]; built
//! once by `scripts/baseline-engine`) or `BENCH_BASELINE_ENGINE` (a built
//! binary), `BENCH_WORKERS` (the worker threads above, default 1).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::loadgen::{BenchConfig, Load, Report};
use serde_json::json;

mod common;
#[path = "../tests/it/common/sqs_client.rs"]
mod sqs_client;

/// The engine before the SQS batchers and the Redis round-trip work: the
/// figures "before".
const BASELINE: &str = "ac03598";
/// Connections of the load generator.
const CONNECTIONS: usize = 64;
/// The longest a cell waits for its runs after the load.
const DRAIN: Duration = Duration::from_secs(300);

/// `TOKIO_WORKER_THREADS` of the event API, the runner and the reference
/// server: `BENCH_WORKERS`, else 1 (what stackctl sets for cpu 512).
fn workers() -> (&'static str, String) {
    let n = std::env::var("BENCH_WORKERS").unwrap_or_else(|_| "1".into());
    ("TOKIO_WORKER_THREADS", n)
}

fn main() {
    common::maybe_serve_reference();
    let rates: Vec<f64> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "100,500,2000".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .expect("BENCH_RATES: numbers separated by commas")
        })
        .collect();
    let secs = common::secs(10);
    let baseline = baseline_engine();
    let engines = [
        ("before", baseline),
        ("now", PathBuf::from(env!("CARGO_BIN_EXE_stackctl-engine"))),
    ];
    let moto = harness::Moto::start().expect("start moto");
    let redis = harness::RedisServer::builder()
        .appendonly(true)
        .start()
        .expect("start redis-server");
    let steps = common::start_reference();
    let rt = common::runtime();
    let (var, n) = workers();
    println!(
        "SQS + Redis data path: 1-step runs, single events over {CONNECTIONS} connections, \
         {} s per cell, event API, runner and reference server with {var}={n}; load average {} \
         at the start",
        secs.as_secs(),
        common::loadavg()
    );
    let mut cell = 0;
    for &rate in &rates {
        let reference = reference_cpu(&rt, rate, secs);
        let mut figures = BTreeMap::new();
        // Alternate who goes first, so a machine slowing down does not
        // always favour the same engine.
        let order: Vec<_> = if cell % 2 == 0 {
            engines.iter().collect()
        } else {
            engines.iter().rev().collect()
        };
        for (label, binary) in order {
            cell += 1;
            let setup = Setup {
                moto: &moto,
                redis: &redis,
                step_url: format!("http://{}/step", steps.addr),
                binary,
                prefix: format!("bench{cell}"),
            };
            figures.insert(*label, setup.measure(&rt, rate, secs));
        }
        print_cell(rate, reference, &figures);
    }
    println!("load average {} at the end", common::loadavg());
}

/// The baseline binary: `BENCH_BASELINE_ENGINE`, else built from
/// `BENCH_BASELINE` (or [`BASELINE`]) by `scripts/baseline-engine`.
fn baseline_engine() -> PathBuf {
    if let Ok(path) = std::env::var("BENCH_BASELINE_ENGINE") {
        return PathBuf::from(path);
    }
    let rev = std::env::var("BENCH_BASELINE").unwrap_or_else(|_| BASELINE.into());
    let script = harness::repo_root().join("scripts/baseline-engine");
    eprintln!("building the baseline engine ({rev}); a first build takes minutes");
    let out = Command::new(&script)
        .arg(&rev)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/baseline-engine");
    assert!(out.status.success(), "scripts/baseline-engine {rev} failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// What one cell runs on.
struct Setup<'a> {
    moto: &'a harness::Moto,
    redis: &'a harness::RedisServer,
    step_url: String,
    binary: &'a Path,
    /// Queue names of this cell start with it.
    prefix: String,
}

/// One cell's figures.
struct Figures {
    report: Report,
    /// SQS requests by process and action during the load (event API) or
    /// until every run completed (runner, executor).
    sqs: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Event-API CPU time during the load.
    api_cpu: Duration,
    /// Context switches of the event-API process's threads under the load.
    api_switches: u64,
    /// Redis commands by name until every run completed, those inside
    /// scripts included.
    redis: BTreeMap<String, u64>,
    /// Redis commands the engine processes sent, by name.
    sent: BTreeMap<String, u64>,
    runs: u64,
    drained: Duration,
    /// Runs without a step outcome when the drain gave up.
    missing: u64,
}

/// One engine process with its own counting proxy to moto.
struct Process {
    child: Child,
    proxy: harness::FaultProxy,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Setup<'_> {
    fn measure(&self, rt: &tokio::runtime::Runtime, rate: f64, secs: Duration) -> Figures {
        self.redis.command(&["FLUSHALL"]).expect("FLUSHALL");
        let dir = tempfile::tempdir().expect("temp dir");
        let api_addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let executor_addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let config = dir.path().join("engine.json");
        let queue = json!({"visibility_timeout": "30s", "max_receives": 5, "retention": "1d"});
        let doc = json!({
            "backend": {"kind": "sqs_redis", "events_queue": format!("{}-events", self.prefix),
                        "work_queue": format!("{}-work", self.prefix),
                        "redis_url": self.redis.url(), "create_queues": true},
            "event_keys": [common::KEY],
            "api_token": common::TOKEN,
            "event_api": {"bind": api_addr},
            "executor": {"bind": executor_addr},
            "queues": {"events": queue, "work": queue},
            "functions": [{
                "id": "one-step",
                "triggers": [{"event": "stackctl/bench"}],
                "steps": [{"id": "call", "http": {"url": self.step_url}}]
            }],
            "log_format": "json"
        });
        std::fs::write(&config, serde_json::to_vec(&doc).expect("JSON")).expect("config");
        let mut api = self.spawn(&config, "event-api", dir.path());
        common::wait_listening(api_addr, &mut api.child, "the event API");
        let runner = self.spawn(&config, "runner", dir.path());
        let mut executor = self.spawn(&config, "executor", dir.path());
        common::wait_listening(executor_addr, &mut executor.child, "the executor");
        let url = format!("http://{api_addr}/e/{}", common::KEY);
        let sqs = sqs_client::sqs_client_at(&self.moto.endpoint());
        let queues = rt.block_on(queue_urls(
            &sqs,
            [
                format!("{}-events", self.prefix),
                format!("{}-work", self.prefix),
            ],
        ));

        // Warm up: connections, scripts, the registry, the queues.
        let warm = run_load(rt, &url, Load::constant(20.0, Duration::from_secs(1)));
        let mut done = warm.events_accepted.count;
        let warm_missing = rt.block_on(drained(&sqs, &queues, executor_addr, done));
        assert_eq!(warm_missing, 0, "the warm-up's runs did not complete");

        let sqs_before = [&api, &runner, &executor].map(|p| p.proxy.actions());
        let monitor = rt.block_on(common::Monitor::start(&self.redis.addr()));
        let redis_before = common::commandstats(self.redis);
        let cpu_before = common::cpu_time(api.child.id());
        let switches_before = common::context_switches(api.child.id());
        let report = run_load(rt, &url, Load::constant(rate, secs));
        let api_cpu = common::cpu_time(api.child.id()).saturating_sub(cpu_before);
        let api_switches = common::context_switches(api.child.id()).saturating_sub(switches_before);
        let api_sqs = harness::counts_since(&sqs_before[0], &api.proxy.actions());
        let accepted = report.events_accepted.count;
        done += accepted;
        let start = Instant::now();
        let missing = rt.block_on(drained(&sqs, &queues, executor_addr, done));
        let drained = start.elapsed();
        let redis = harness::counts_since(&redis_before, &common::commandstats(self.redis))
            .into_iter()
            .filter(|(name, _)| name != "info" && name != "flushall" && name != "monitor")
            .collect();
        let mut sent = BTreeMap::new();
        for ((client, command), n) in rt.block_on(async { monitor.stop() }) {
            // `lua` lists the commands scripts run; INFO is the bench's.
            if client != "lua" && command != "info" {
                *sent.entry(command).or_default() += n;
            }
        }
        let sqs = BTreeMap::from([
            ("event-api", api_sqs),
            (
                "runner",
                harness::counts_since(&sqs_before[1], &runner.proxy.actions()),
            ),
            (
                "executor",
                harness::counts_since(&sqs_before[2], &executor.proxy.actions()),
            ),
        ]);
        Figures {
            report,
            sqs,
            api_cpu,
            api_switches,
            redis,
            sent,
            runs: accepted,
            drained,
            missing,
        }
    }

    fn spawn(&self, config: &Path, role: &str, dir: &Path) -> Process {
        let proxy = harness::FaultProxy::start(&format!("127.0.0.1:{}", self.moto.port()), 0.0, 1)
            .expect("start a counting proxy");
        let log = std::fs::File::create(dir.join(format!("{role}.log"))).expect("log file");
        let mut cmd = Command::new(self.binary);
        cmd.args(["--role", role, "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.moto.configure_command(&mut cmd);
        cmd.env("AWS_ENDPOINT_URL", proxy.endpoint());
        if role != "executor" {
            let (var, n) = workers();
            cmd.env(var, n);
        }
        let child = cmd.spawn().expect("start stackctl-engine");
        Process { child, proxy }
    }
}

fn run_load(rt: &tokio::runtime::Runtime, url: &str, load: Load) -> Report {
    let mut c = BenchConfig::new(url);
    c.connections = CONNECTIONS;
    c.load = load;
    let report = common::load(rt, c);
    assert_eq!(
        report.http_req_failed.count, 0,
        "failed requests: {:?} {:?}",
        report.status_codes, report.errors
    );
    report
}

/// Waits until the executor wrote `runs` step outcomes and both queues are
/// empty (nothing visible, nothing in flight), for at most [`DRAIN`]: the
/// runs still without an outcome then (0 when all completed).
async fn drained(
    sqs: &aws_sdk_sqs::Client,
    queues: &[String; 2],
    executor: SocketAddr,
    runs: u64,
) -> u64 {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + DRAIN;
    loop {
        let steps = steps_written(&http, executor).await;
        if steps >= runs && queues_empty(sqs, queues).await {
            return 0;
        }
        if Instant::now() >= deadline {
            eprintln!("only {steps} of {runs} runs completed in {DRAIN:?}");
            return runs.saturating_sub(steps);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn steps_written(http: &reqwest::Client, executor: SocketAddr) -> u64 {
    let Ok(resp) = http.get(format!("http://{executor}/metrics")).send().await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    harness::prometheus_sum(&text, "stackctl_executor_steps_total")
}

/// The URLs of the queues named `names` (the engine created them).
async fn queue_urls(sqs: &aws_sdk_sqs::Client, names: [String; 2]) -> [String; 2] {
    let mut urls = [String::new(), String::new()];
    for (url, name) in urls.iter_mut().zip(names) {
        *url = sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .expect("GetQueueUrl")
            .queue_url
            .unwrap_or_default();
    }
    urls
}

async fn queues_empty(sqs: &aws_sdk_sqs::Client, queues: &[String; 2]) -> bool {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    for url in queues {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .unwrap_or_default();
        if [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .any(|a| attrs.get(a).is_some_and(|v| v != "0"))
        {
            return false;
        }
    }
    true
}

/// CPU time per request of the reference server (an axum app that reads
/// the body and answers 200) under the same load: what serving the HTTP
/// requests alone costs on this machine.
/// Also its context switches per request.
fn reference_cpu(rt: &tokio::runtime::Runtime, rate: f64, secs: Duration) -> (Duration, f64) {
    let reference = common::start_reference_with(&[workers()]);
    let url = format!("http://{}/e/{}", reference.addr, common::KEY);
    run_load(rt, &url, Load::constant(20.0, Duration::from_secs(1)));
    let before = common::cpu_time(reference.pid());
    let switches = common::context_switches(reference.pid());
    let report = run_load(rt, &url, Load::constant(rate, secs));
    let requests = report.http_reqs.count.max(1);
    (
        (common::cpu_time(reference.pid()).saturating_sub(before)) / requests as u32,
        common::context_switches(reference.pid()).saturating_sub(switches) as f64 / requests as f64,
    )
}

fn print_cell(
    rate: f64,
    (reference, reference_switches): (Duration, f64),
    figures: &BTreeMap<&str, Figures>,
) {
    let labels: Vec<&str> = ["before", "now"]
        .into_iter()
        .filter(|l| figures.contains_key(l))
        .collect();
    println!("\n{rate} events/s");
    let row = |name: &str, f: &dyn Fn(&Figures) -> String| {
        let cells: Vec<String> = labels.iter().map(|l| f(&figures[l])).collect();
        println!("  {name:<44} {}", cells.join("  |  "));
    };
    println!("  {:<44} {}", "", labels.join("  |  "));
    row("events accepted", &|f| {
        f.report.events_accepted.count.to_string()
    });
    row("event API latency ms (median / p99)", &|f| {
        format!(
            "{:.1} / {:.1}",
            f.report.http_req_duration.med, f.report.http_req_duration.p99
        )
    });
    let api_cpu =
        |f: &Figures| f.api_cpu.as_secs_f64() / f.report.events_accepted.count.max(1) as f64;
    row("event API CPU per event (us)", &|f| {
        format!("{:.0}", api_cpu(f) * 1e6)
    });
    println!(
        "  {:<44} {:.0}",
        "reference server CPU per request (us)",
        reference.as_secs_f64() * 1e6
    );
    row("event API CPU per event / reference", &|f| {
        format!("{:.2}", api_cpu(f) / reference.as_secs_f64().max(1e-9))
    });
    row("event API context switches per event", &|f| {
        format!(
            "{:.2}",
            f.api_switches as f64 / f.report.events_accepted.count.max(1) as f64
        )
    });
    println!(
        "  {:<44} {:.2}",
        "reference server context switches per request", reference_switches
    );
    for process in ["event-api", "runner", "executor"] {
        let per = if process == "event-api" {
            "event"
        } else {
            "run"
        };
        row(&format!("SQS requests per {per}: {process}"), &|f| {
            let n: u64 = f.sqs[process].values().sum();
            format!("{:.2}", n as f64 / f.runs.max(1) as f64)
        });
        let actions: std::collections::BTreeSet<&String> = labels
            .iter()
            .flat_map(|l| figures[l].sqs[process].keys())
            .collect();
        for action in actions {
            row(&format!("  {action}"), &|f| {
                let n = f.sqs[process].get(action).copied().unwrap_or(0);
                format!("{:.2}", n as f64 / f.runs.max(1) as f64)
            });
        }
    }
    let by_name = |title: &str, pick: fn(&Figures) -> &BTreeMap<String, u64>| {
        row(title, &|f| {
            let n: u64 = pick(f).values().sum();
            format!("{:.2}", n as f64 / f.runs.max(1) as f64)
        });
        let names: std::collections::BTreeSet<&String> = labels
            .iter()
            .flat_map(|l| pick(&figures[l]).keys())
            .collect();
        for name in names {
            row(&format!("  {name}"), &|f| {
                let n = pick(f).get(name).copied().unwrap_or(0);
                format!("{:.2}", n as f64 / f.runs.max(1) as f64)
            });
        }
    };
    by_name("Redis commands sent per run (MONITOR)", |f| &f.sent);
    by_name("Redis commands run per run (scripts' too)", |f| &f.redis);
    row("runs drained after the load (s)", &|f| {
        format!("{:.1}", f.drained.as_secs_f64())
    });
    row("runs without an outcome then", &|f| f.missing.to_string());
}
