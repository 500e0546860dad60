//! `stackctl cost`, and the cost lines of `plan` and `bench`: the example
//! stack's estimate (human and JSON) from the shipped price table, a region
//! or instance type without a price as a clear error, `--prices FILE`;
//! `plan` on moto after the example was applied shows the monthly delta of
//! runner 4 -> 8 (and offline, the whole stack as the delta); `bench` on
//! the applied example ends with the cost per million events at the
//! running counts. And the figure the request-priced lines rest on: SQS
//! requests per event, counted by API action through a `FaultProxy` in
//! front of moto for each engine process on the SQS + Redis backends under
//! a small load, are not above what the price table says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    apply_example, assert_exit, aws_on, moto, repo_root, serve, stackctl, stackctl_on,
};
use serde_json::{Value, json};
use stacks::cost::PriceTable;

/// `stackctl cost ARGS` from the repository root, as JSON.
fn cost_json(args: &[&str]) -> Value {
    let out = stackctl()
        .arg("cost")
        .args(args)
        .args(["-o", "json"])
        .current_dir(repo_root())
        .env_remove("AWS_REGION")
        .output()
        .expect("stackctl runs");
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The `monthly` of the line `item` of an estimate's JSON.
fn monthly(doc: &Value, item: &str) -> f64 {
    doc["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["item"] == item)
        .unwrap_or_else(|| panic!("no line {item}: {doc:#}"))["monthly"]
        .as_f64()
        .unwrap()
}

#[track_caller]
fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() < 1e-6,
        "got {got}, want {want} (difference {})",
        got - want
    );
}

/// examples/aws.yaml, with `edit` applied to its text, next to a copy of
/// its function files in `dir`.
fn example_variant(dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let root = repo_root();
    let functions = dir.join("functions");
    std::fs::create_dir_all(&functions).unwrap();
    for entry in std::fs::read_dir(root.join("examples/functions")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), functions.join(entry.file_name())).unwrap();
        }
    }
    let text = std::fs::read_to_string(root.join("examples/aws.yaml")).unwrap();
    let path = dir.join("aws.yaml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// The CLI's JSON says what the library computes (the library's test
/// checks every line by hand), with the total, the range and the cost per
/// million events; the human table names the lines and the prices' source.
#[test]
fn cost_prints_the_examples_estimate_as_json_and_as_a_table() {
    let t = PriceTable::shipped();
    let p = &t.regions["us-east-1"];
    let doc = cost_json(&["examples/aws.yaml", "--events-per-month", "10M"]);
    assert_eq!(doc["region"], "us-east-1");
    assert_eq!(doc["stack"], "reference");
    assert_eq!(doc["events_per_month"], 10_000_000);
    assert_eq!(doc["prices"]["as_of"], t.as_of.as_str());
    close(
        monthly(&doc, "runner vCPU"),
        4.0 * 0.5 * 730.0 * p.fargate["x86_64"].vcpu_hour,
    );
    close(
        monthly(&doc, "executors t3.medium"),
        730.0 * p.ec2_instance_hour["t3.medium"],
    );
    let sum: f64 = doc["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["monthly"].as_f64().unwrap())
        .sum();
    close(doc["monthly"].as_f64().unwrap(), sum);
    close(
        doc["per_million_events"].as_f64().unwrap(),
        sum / 10_000_000.0 * 1e6,
    );
    assert!(doc["monthly_max"].as_f64().unwrap() > doc["monthly"].as_f64().unwrap());

    let out = stackctl()
        .args(["cost", "examples/aws.yaml"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Monthly estimate for stack `reference` in us-east-1",
        "Fargate runner vCPU",
        "EC2 executors t3.medium",
        "ElastiCache Redis cache.t4g.small",
        "SQS idle polling",
        "total",
        "--events-per-month N",
        &t.source,
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

/// A region or an instance type the table has no price for is an error
/// that names it and the fix; `--prices FILE` with a price for it works.
#[test]
fn a_region_or_type_without_a_price_is_a_clear_error_and_prices_file_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = |spec: &Path, extra: &[&str]| {
        stackctl()
            .arg("cost")
            .arg(spec)
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let region = example_variant(dir.path(), |t| {
        t.replace("${AWS_REGION:-us-east-1}", "ap-south-2")
    });
    let out = run(&region, &[]);
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "no prices for region `ap-south-2`",
        "us-east-1, us-west-2",
        "--prices FILE",
    ] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }

    let sub = dir.path().join("c7g");
    std::fs::create_dir_all(&sub).unwrap();
    let instance = example_variant(&sub, |t| {
        t.replace("instance_type: t3.medium", "instance_type: c7g.large")
    });
    let out = run(&instance, &["-o", "json"]);
    assert_exit(&out, 1);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = doc.to_string();
    assert!(
        err.contains("EC2 instance type `c7g.large`") && err.contains("--prices FILE"),
        "{err}"
    );

    // The shipped table with a price for c7g.large.
    let dump = stackctl().args(["cost", "--dump-prices"]).output().unwrap();
    assert_exit(&dump, 0);
    let mut table: Value = serde_json::from_slice(&dump.stdout).unwrap();
    table["regions"]["us-east-1"]["ec2_instance_hour"]["c7g.large"] = json!(0.0725);
    let prices = dir.path().join("prices.json");
    std::fs::write(&prices, table.to_string()).unwrap();
    let out = run(
        &instance,
        &["--prices", prices.to_str().unwrap(), "-o", "json"],
    );
    assert_exit(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    close(monthly(&doc, "executors c7g.large"), 730.0 * 0.0725);
    assert_eq!(doc["architecture"], "arm64");
    assert_eq!(doc["prices"]["file"], prices.to_str().unwrap());
}

/// `plan` ends with the monthly delta of what it would change: offline
/// the whole stack (nothing exists), and on moto, after the example was
/// applied, runner 4 -> 8 adds four tasks' Fargate, public IPv4, idle
/// polling and logs, as the table prices them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_monthly_delta_of_runner_4_to_8() {
    let t = PriceTable::shipped();
    let p = &t.regions["us-east-1"];
    let u = &t.usage;
    let offline = stackctl()
        .args(["plan", "examples/aws.yaml", "--offline", "-o", "json"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_exit(&offline, 0);
    let doc: Value = serde_json::from_slice(&offline.stdout).unwrap();
    let whole = cost_json(&["examples/aws.yaml"]);
    assert_eq!(doc["cost"]["before"], 0.0, "{:#}", doc["cost"]);
    close(
        doc["cost"]["after"].as_f64().unwrap(),
        whole["monthly"].as_f64().unwrap(),
    );

    let moto = moto().await;
    apply_example(&aws_on(&moto).await).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = example_variant(dir.path(), |text| {
        let from = "  runner:\n    count: 4\n";
        assert!(text.contains(from), "examples/aws.yaml changed its runner");
        text.replace(from, "  runner:\n    count: 8\n")
    });
    let out = stackctl_on(&moto)
        .arg("plan")
        .arg(&spec)
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cost = &doc["cost"];
    let lines: BTreeMap<String, f64> = cost["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no cost lines: {cost:#}"))
        .iter()
        .map(|l| {
            (
                l["item"].as_str().unwrap().to_string(),
                l["delta"].as_f64().unwrap(),
            )
        })
        .collect();
    let hours = 730.0;
    let tasks = 4.0;
    let log_gb = tasks * u.log_bytes_per_task_hour * hours / 1e9;
    let mut want = BTreeMap::from([
        (
            "runner vCPU".to_string(),
            tasks * 0.5 * hours * p.fargate["x86_64"].vcpu_hour,
        ),
        (
            "runner memory".to_string(),
            tasks * 1.0 * hours * p.fargate["x86_64"].gb_hour,
        ),
        (
            "public IPv4 addresses".to_string(),
            tasks * hours * p.public_ipv4_hour,
        ),
        (
            "idle polling".to_string(),
            tasks * u.sqs_idle_requests_per_hour.runner * hours / 1e6 * p.sqs_requests_million,
        ),
        ("ingestion".to_string(), log_gb * p.logs_ingested_gb),
        (
            "storage".to_string(),
            log_gb * 14.0 / (hours / 24.0) * p.logs_stored_gb_month,
        ),
    ]);
    let total: f64 = want.values().sum();
    // The plan lists the lines that change by a cent or more.
    want.retain(|_, v| v.abs() >= 0.005);
    assert_eq!(
        lines.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{cost:#}"
    );
    for (item, delta) in &want {
        close(lines[item], *delta);
    }
    close(cost["delta"].as_f64().unwrap(), total);
    close(
        cost["after"].as_f64().unwrap() - cost["before"].as_f64().unwrap(),
        total,
    );

    let human = stackctl_on(&moto).arg("plan").arg(&spec).output().unwrap();
    assert_exit(&human, 0);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("Monthly cost: $"), "{text}");
    assert!(text.contains("at us-east-1 list prices of"), "{text}");
    assert!(text.contains("Fargate runner vCPU"), "{text}");
}

/// `bench` on an aws stack ends with the cost per million events at the
/// throughput it measured, the stack at the running counts it sampled:
/// moto reports 2 tasks running for every service, so the runner (4 in the
/// spec) is priced at 2, as `cost` prices a spec whose runner count is 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_on_an_aws_stack_ends_with_the_cost_per_million_events() {
    let moto = tokio::task::spawn_blocking(|| {
        harness::Moto::builder()
            .ecs_service_running(2)
            .start()
            .expect("moto_server starts")
    })
    .await
    .unwrap();
    let aws = aws_on(&moto).await;
    apply_example(&aws).await;
    let app = axum::Router::new().route(
        "/e/{key}",
        axum::routing::post(|| async { axum::http::StatusCode::OK }),
    );
    let addr = serve(app).await;
    let mut cmd = tokio::process::Command::from(stackctl_on(&moto));
    let out = cmd
        .args(["bench", "examples/aws.yaml", "--url"])
        .arg(format!("http://{addr}"))
        .args(["--rate", "20", "-d", "2s", "--sample-every", "200ms", "-q"])
        .args(["-o", "json"])
        .current_dir(repo_root())
        .output()
        .await
        .unwrap();
    assert_exit(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cost = &doc["cost"];
    assert_eq!(cost["counts_from"], "gauges", "{cost:#}");
    assert_eq!(
        cost["counts"],
        json!({"event-api": 2.0, "runner": 2.0, "executors": 1.0}),
        "{cost:#}"
    );
    let rate = doc["events_accepted"]["rate"].as_f64().unwrap();
    close(cost["events_per_second"].as_f64().unwrap(), rate);
    let dir = tempfile::tempdir().unwrap();
    let two = example_variant(dir.path(), |text| {
        text.replace("  runner:\n    count: 4\n", "  runner:\n    count: 2\n")
    });
    let at_two = cost_json(&[two.to_str().unwrap()]);
    close(
        cost["hourly"].as_f64().unwrap(),
        at_two["monthly"].as_f64().unwrap() / 730.0,
    );
    let events = (rate * 3600.0 * 730.0).round();
    close(
        cost["per_million_events"].as_f64().unwrap(),
        cost["monthly_at_this_rate"].as_f64().unwrap() / events * 1e6,
    );

    let out = tokio::process::Command::from(stackctl_on(&moto))
        .args(["bench", "examples/aws.yaml", "--url"])
        .arg(format!("http://{addr}"))
        .args(["--rate", "20", "-d", "1s", "-q"])
        .current_dir(repo_root())
        .output()
        .await
        .unwrap();
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("per million events at") && text.contains("runner 2 running"),
        "{text}"
    );
}

// ------------------------------------------- SQS requests per event

/// The rate the SQS figures are measured at: low enough that every event
/// goes alone (no batching to share calls), so the figures per event are
/// the most this engine spends.
const RATE: f64 = 10.0;
/// How long the load lasts.
const LOAD: Duration = Duration::from_secs(10);
/// How long the idle polling is counted.
const IDLE: Duration = Duration::from_secs(10);

/// One engine process with its own counting proxy to moto; killed on drop.
struct Process {
    child: Child,
    proxy: harness::FaultProxy,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn log_bytes(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }
}

fn spawn(moto: &harness::Moto, config: &Path, role: &str, dir: &Path) -> Process {
    let proxy = harness::FaultProxy::start(&format!("127.0.0.1:{}", moto.port()), 0.0, 1)
        .expect("start a counting proxy");
    let log = dir.join(format!("{role}.log"));
    let mut cmd = stackctl_on(moto);
    cmd.args(["engine", "--role", role, "--config"])
        .arg(config)
        // The engine's default log level, as on AWS.
        .env_remove("RUST_LOG")
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = cmd.spawn().expect("start stackctl engine");
    Process { child, proxy, log }
}

async fn steps_written(http: &reqwest::Client, executor: std::net::SocketAddr) -> u64 {
    let Ok(resp) = http.get(format!("http://{executor}/metrics")).send().await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    harness::prometheus_sum(&text, "stackctl_executor_steps_total")
}

/// Waits until the executor wrote `runs` step outcomes.
async fn drained(executor: std::net::SocketAddr, runs: u64, logs: &[&Process]) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let steps = steps_written(&http, executor).await;
        if steps >= runs {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {steps} of {runs} runs completed; logs:\n{}",
            logs.iter()
                .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn load(url: &str, rate: f64, duration: Duration) -> stacks::bench::Report {
    let mut cfg = stacks::bench::BenchConfig::new(url);
    cfg.connections = 8;
    cfg.load = stacks::bench::Load::constant(rate, duration);
    let report = stacks::bench::run(
        cfg,
        &stacks::bench::Quiet,
        None,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("the load runs");
    assert_eq!(
        report.http_req_failed.count, 0,
        "failed requests: {:?} {:?}",
        report.status_codes, report.errors
    );
    report
}

/// Three engine processes (event API, runner, executor) on SQS (moto,
/// behind one counting proxy each) and Redis, a 1-step function: the
/// idle polling of each consumer, and the SQS requests of each process
/// while `RATE` events/s for `LOAD` become completed runs, are at most what
/// the shipped table prices: its figures per event at this rate times the
/// events, plus its idle polling for the time the load and its drain took.
/// The log bytes each process writes (at the engine's default level) are
/// within the table's log figures too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_requests_per_event_measured_are_not_above_the_tables() {
    let table = PriceTable::shipped();
    let usage = &table.usage;
    let band = usage.sqs_band(RATE).expect("a band");
    let moto = moto().await;
    let redis = tokio::task::spawn_blocking(harness::RedisServer::start)
        .await
        .unwrap()
        .expect("redis-server starts");
    let step = serve(axum::Router::new().route(
        "/step",
        axum::routing::post(|| async { axum::Json(json!({"ok": true})) }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], harness::free_port().unwrap()));
    let executor = std::net::SocketAddr::from(([127, 0, 0, 1], harness::free_port().unwrap()));
    let queue = json!({"visibility_timeout": "30s", "max_receives": 5, "retention": "1d"});
    let config = dir.path().join("engine.json");
    let doc = json!({
        "backend": {"kind": "sqs_redis", "events_queue": "cost-events", "work_queue": "cost-work",
                    "redis_url": redis.url(), "create_queues": true},
        "event_keys": ["cost-key"],
        "api_token": "cost-token",
        "event_api": {"bind": api},
        "executor": {"bind": executor},
        "queues": {"events": queue, "work": queue},
        "functions": [{
            "id": "one-step",
            "triggers": [{"event": "stackctl/bench"}],
            "steps": [{"id": "call", "http": {"url": format!("http://{step}/step")}}]
        }],
        "log_format": "json"
    });
    std::fs::write(&config, serde_json::to_vec(&doc).unwrap()).unwrap();
    let procs = [
        spawn(&moto, &config, "event-api", dir.path()),
        spawn(&moto, &config, "runner", dir.path()),
        spawn(&moto, &config, "executor", dir.path()),
    ];
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("http://{executor}/metrics"))
        .send()
        .await
        .is_err()
        || http
            .get(format!("http://{api}/health"))
            .send()
            .await
            .is_err()
    {
        assert!(Instant::now() < deadline, "the engine did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("http://{api}/e/cost-key");
    let logs: Vec<&Process> = procs.iter().collect();

    // Warm up: connections, queues, the function registry.
    let warm = load(&url, 5.0, Duration::from_secs(1)).await;
    let mut done = warm.events_accepted.count;
    drained(executor, done, &logs).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Each process's SQS calls by action and log bytes since `mark`.
    let mark = || {
        (
            procs.each_ref().map(|p| p.proxy.actions()),
            procs.each_ref().map(Process::log_bytes),
        )
    };
    let since = |(actions, logs): ([BTreeMap<String, u64>; 3], [u64; 3])| {
        let calls: Vec<_> = procs
            .iter()
            .zip(&actions)
            .map(|(p, before)| harness::counts_since(before, &p.proxy.actions()))
            .collect();
        let log_bytes: Vec<u64> = procs
            .iter()
            .zip(logs)
            .map(|(p, b)| p.log_bytes() - b)
            .collect();
        (calls, log_bytes)
    };

    // Idle.
    let before = mark();
    let started = Instant::now();
    tokio::time::sleep(IDLE).await;
    let idle_hours = started.elapsed().as_secs_f64() / 3600.0;
    let (idle, idle_logs) = since(before);

    // Load, until every run completed.
    let before = mark();
    let started = Instant::now();
    let report = load(&url, RATE, LOAD).await;
    let events = report.events_accepted.count;
    done += events;
    drained(executor, done, &logs).await;
    let hours = started.elapsed().as_secs_f64() / 3600.0;
    let (busy, busy_logs) = since(before);

    let n = |m: &BTreeMap<String, u64>| m.values().sum::<u64>() as f64;
    let per_event: Vec<f64> = busy.iter().map(|m| n(m) / events as f64).collect();
    let idle_per_hour: Vec<f64> = idle.iter().map(|m| n(m) / idle_hours).collect();
    println!(
        "{events} events at {RATE}/s in {:.1} s: SQS requests per event: event API {:.3} {:?}, \
         runner {:.3} {:?}, executor {:.3} {:?}; idle an hour: event API {:.0} {:?}, runner {:.0} \
         {:?}, executor {:.0} {:?}; log bytes idle {idle_logs:?} in {:.1} s, busy {busy_logs:?}",
        hours * 3600.0,
        per_event[0],
        busy[0],
        per_event[1],
        busy[1],
        per_event[2],
        busy[2],
        idle_per_hour[0],
        idle[0],
        idle_per_hour[1],
        idle[1],
        idle_per_hour[2],
        idle[2],
        idle_hours * 3600.0,
    );
    assert!(
        events as f64 >= RATE * LOAD.as_secs_f64() * 0.9,
        "{events} events"
    );

    // Idle: the event API polls nothing; each consumer at most the table's
    // (one more for the poll in flight when the count started).
    assert_eq!(
        n(&idle[0]),
        0.0,
        "the idle event API called SQS: {:?}",
        idle[0]
    );
    let idle_table = &usage.sqs_idle_requests_per_hour;
    for (i, (role, per_hour)) in [
        ("runner", idle_table.runner),
        ("executor", idle_table.executor),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            n(&idle[i + 1]) <= per_hour * idle_hours + 1.0,
            "{role}: {} idle requests an hour, the table says {per_hour}",
            idle_per_hour[i + 1]
        );
    }
    // Under load: at most the table's per-event figures, plus idle polling
    // for the time it took (as the estimate adds them).
    let priced = [
        band.event_api * events as f64,
        band.runner * events as f64 + idle_table.runner * hours + 1.0,
        band.executor * events as f64 + idle_table.executor * hours + 1.0,
    ];
    for ((process, measured), priced) in ["event API", "runner", "executor"]
        .iter()
        .zip(&busy)
        .zip(priced)
    {
        assert!(
            n(measured) <= priced,
            "{process}: {} SQS requests for {events} events ({measured:?}), the table prices {priced:.1}",
            n(measured)
        );
    }
    // Logs: per task-hour and per event, within the table's figures.
    for (i, role) in ["event API", "runner", "executor"].iter().enumerate() {
        let idle_rate = idle_logs[i] as f64 / idle_hours;
        assert!(
            idle_rate <= usage.log_bytes_per_task_hour,
            "{role}: {idle_rate:.0} log bytes an hour idle, the table says {}",
            usage.log_bytes_per_task_hour
        );
    }
    let busy_total: u64 = busy_logs.iter().sum();
    let allowed =
        usage.log_bytes_per_event * events as f64 + usage.log_bytes_per_task_hour * 3.0 * hours;
    assert!(
        busy_total as f64 <= allowed,
        "{busy_total} log bytes under load, the table allows {allowed:.0}"
    );
}

/// The Price List documents the harness's moto serves (tests/harness/price_list.json).
fn price_list() -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join("tests/harness/price_list.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["PriceList"].as_array().unwrap().clone()
}

/// The on-demand price (its first tier that is not free) of the one
/// product of `service` with the attributes `attrs` in the served list.
fn served_price(list: &[Value], service: &str, attrs: &[(&str, &str)]) -> f64 {
    let found: Vec<&Value> = list
        .iter()
        .filter(|d| {
            d["serviceCode"] == service
                && attrs
                    .iter()
                    .all(|(k, v)| d["product"]["attributes"][*k] == *v)
        })
        .collect();
    assert_eq!(found.len(), 1, "{service} {attrs:?}: {found:#?}");
    let mut tiers: Vec<(f64, f64)> = found[0]["terms"]["OnDemand"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| t["priceDimensions"].as_object().unwrap().values())
        .map(|d| {
            (
                d["beginRange"].as_str().unwrap().parse().unwrap(),
                d["pricePerUnit"]["USD"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    tiers.sort_by(|a, b| a.0.total_cmp(&b.0));
    tiers.iter().find(|t| t.1 > 0.0).unwrap().1
}

/// What the example's lines cost in the served price list, by the table
/// entry each line names (per-request prices per million).
fn served_example_prices() -> BTreeMap<&'static str, f64> {
    let l = price_list();
    let usage = |service, usagetype| served_price(&l, service, &[("usagetype", usagetype)]);
    BTreeMap::from([
        (
            "fargate.x86_64.vcpu_hour",
            usage("AmazonECS", "USE1-Fargate-vCPU-Hours:perCPU"),
        ),
        (
            "fargate.x86_64.gb_hour",
            usage("AmazonECS", "USE1-Fargate-GB-Hours"),
        ),
        (
            "ec2_instance_hour.t3.medium",
            served_price(
                &l,
                "AmazonEC2",
                &[
                    ("instanceType", "t3.medium"),
                    ("operatingSystem", "Linux"),
                    ("regionCode", "us-east-1"),
                ],
            ),
        ),
        (
            "ebs_gp3_gb_month",
            served_price(&l, "AmazonEC2", &[("volumeApiName", "gp3")]),
        ),
        (
            "public_ipv4_hour",
            usage("AmazonVPC", "USE1-PublicIPv4:InUseAddress"),
        ),
        (
            "elasticache_node_hour.cache.t4g.small",
            served_price(
                &l,
                "AmazonElastiCache",
                &[
                    ("instanceType", "cache.t4g.small"),
                    ("cacheEngine", "Redis"),
                ],
            ),
        ),
        (
            "sqs_requests_million",
            usage("AWSQueueService", "USE1-Requests-Tier1") * 1e6,
        ),
        (
            "logs_ingested_gb",
            usage("AmazonCloudWatch", "USE1-DataProcessing-Bytes"),
        ),
        (
            "logs_stored_gb_month",
            usage("AmazonCloudWatch", "USE1-TimedStorage-ByteHrs"),
        ),
        (
            "alarm_month",
            usage("AmazonCloudWatch", "USE1-CW:AlarmMonitorUsage"),
        ),
        ("hosted_zone_month", usage("AmazonRoute53", "HostedZone")),
        (
            "cloud_map_instance_month",
            usage("AWSCloudMap", "USE1-RegisteredResource"),
        ),
    ])
}

/// A moto whose Price List API answers one product a page, so every query
/// that matches more than one (Fargate's on-demand and Spot vCPU) pages.
async fn moto_paging_prices() -> harness::Moto {
    tokio::task::spawn_blocking(|| {
        harness::Moto::builder()
            .env("MOTO_PRICING_PAGE_SIZE", "1")
            .start()
            .expect("moto_server starts (run scripts/test to install it)")
    })
    .await
    .unwrap()
}

/// `--live-prices` prices every line of the example from the Price List
/// API (the harness's moto serves it from tests/harness/price_list.json,
/// one product a page): each line's unit price is the served product's,
/// even over a `--prices` file whose figures are all wrong, and says
/// `live`; the JSON names the endpoint region and the SKU of each price;
/// the table shows `live` beside each unit price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_prices_come_from_the_price_list_api_and_every_line_says_so() {
    let moto = moto_paging_prices().await;
    let dir = tempfile::tempdir().unwrap();
    // A table whose every us-east-1 price is wrong: none may show.
    fn wrong(v: &mut Value) {
        match v {
            Value::Number(_) => *v = json!(99.0),
            Value::Object(m) => m.values_mut().for_each(wrong),
            _ => {}
        }
    }
    let mut table: Value = serde_json::from_str(PriceTable::shipped_text()).unwrap();
    wrong(&mut table["regions"]["us-east-1"]);
    let prices = dir.path().join("wrong.json");
    std::fs::write(&prices, table.to_string()).unwrap();

    let out = stackctl_on(&moto)
        .args(["cost", "examples/aws.yaml", "--live-prices"])
        .args(["--events-per-month", "10M", "--prices"])
        .arg(&prices)
        .args(["-o", "json"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let served = served_example_prices();
    let lines = doc["lines"].as_array().unwrap();
    assert!(lines.len() >= 12, "{doc:#}");
    for l in lines {
        let key = l["price_key"].as_str().unwrap();
        let want = served
            .get(key)
            .unwrap_or_else(|| panic!("line {} priced by {key}, not served", l["item"]));
        assert_eq!(l["price_source"], "live", "{l:#}");
        close(l["unit_price"].as_f64().unwrap(), *want);
        close(
            l["monthly"].as_f64().unwrap(),
            l["quantity"].as_f64().unwrap() * want,
        );
    }
    let live = &doc["prices"]["live"];
    assert_eq!(live["endpoint_region"], "us-east-1");
    assert_eq!(live["unpriced"], json!([]));
    let ec2 = live["fetched"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "ec2_instance_hour.t3.medium")
        .unwrap_or_else(|| panic!("{live:#}"));
    let linux = price_list()
        .into_iter()
        .find(|d| {
            d["product"]["attributes"]["instanceType"] == "t3.medium"
                && d["product"]["attributes"]["operatingSystem"] == "Linux"
                && d["product"]["attributes"]["regionCode"] == "us-east-1"
        })
        .unwrap();
    assert_eq!(ec2["sku"], linux["product"]["sku"]);
    assert_eq!(ec2["effective_date"], "2026-11-01T00:00:00Z");

    let human = stackctl_on(&moto)
        .args(["cost", "examples/aws.yaml", "--live-prices"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_exit(&human, 0);
    let text = String::from_utf8_lossy(&human.stdout);
    for want in [
        "live from the AWS Price List API",
        "us-east-1 endpoint",
        "$0.0416 live",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert!(!text.contains("marked `table`"), "{text}");
}

/// A product the price list lacks (an instance type it has no Linux price
/// for here) fails `--live-prices` with an error naming it and the query,
/// and the way out; `--fallback-to-table` prices that line from the table,
/// marked `table` (JSON and text), and the rest live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_missing_from_the_price_list_is_a_clear_error_unless_the_table_may_stand_in() {
    let moto = moto_paging_prices().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = example_variant(dir.path(), |t| {
        t.replace("instance_type: t3.medium", "instance_type: m6i.large")
    });
    let run = |extra: &[&str]| {
        stackctl_on(&moto)
            .arg("cost")
            .arg(&spec)
            .arg("--live-prices")
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "--live-prices: the AWS Price List API gave no price in region `us-east-1`",
        "EC2 instance type `m6i.large`: no product in the price list matches",
        "AmazonEC2: regionCode TERM_MATCH us-east-1, instanceType TERM_MATCH m6i.large",
        "--fallback-to-table",
    ] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
    assert!(!err.contains("Fargate"), "only what is missing: {err}");

    let out = run(&["--fallback-to-table", "-o", "json"]);
    assert_exit(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = PriceTable::shipped();
    let served = served_example_prices();
    for l in doc["lines"].as_array().unwrap() {
        if l["item"] == "executors m6i.large" {
            assert_eq!(l["price_source"], "table", "{l:#}");
            close(
                l["unit_price"].as_f64().unwrap(),
                table.regions["us-east-1"].ec2_instance_hour["m6i.large"],
            );
        } else {
            assert_eq!(l["price_source"], "live", "{l:#}");
            close(
                l["unit_price"].as_f64().unwrap(),
                served[l["price_key"].as_str().unwrap()],
            );
        }
    }
    let unpriced = &doc["prices"]["live"]["unpriced"];
    assert_eq!(unpriced.as_array().unwrap().len(), 1, "{unpriced:#}");
    assert_eq!(unpriced[0]["key"], "ec2_instance_hour.m6i.large");

    let out = run(&["--fallback-to-table"]);
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "lines live from the AWS Price List API",
        "the lines marked `table` from:",
        "no live price for EC2 instance type `m6i.large`",
        "$0.096 table",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

/// Without any AWS credentials `--live-prices` fails saying so (no
/// network call is made), and `--fallback-to-table` needs `--live-prices`.
#[test]
fn live_prices_without_credentials_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = stackctl();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .args(["cost", "examples/aws.yaml", "--live-prices"])
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no AWS credentials") && err.contains("Fargate vCPU (x86_64)"),
        "{err}"
    );

    let out = stackctl()
        .args(["cost", "examples/aws.yaml", "--fallback-to-table"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--live-prices"), "{err}");
}
