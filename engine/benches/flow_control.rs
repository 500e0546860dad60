//! `cargo bench -p engine --bench flow_control`: what flow control costs.
//! One engine process (all roles, embedded backend) per cell runs a 1-step
//! function (an `http` step against the reference server) under a fixed
//! rate of single events over 64 connections; each flow-control variant
//! is measured beside the same function without flow control, the two
//! cells alternating in every round so drift in the machine's load hits
//! both. Figures: events accepted per second and event-to-completed-run
//! latency (sampled events looked up in the runs API), each as a ratio to
//! the plain function's in the same round; the median ratio decides.
//!
//! A variant that holds runs back by design (a debounce period, a batch
//! timeout) adds that time to its latency: the table shows the latency
//! beside what the rule alone adds.
//!
//! `BENCH_RATE` (default 500 events/s), `BENCH_SECS` (default 10 per
//! cell), `BENCH_ROUNDS` (default 3).

mod common;

use std::time::Duration;

use engine::loadgen::{BenchConfig, Body, E2eConfig, Load, Report, Template};
use serde_json::{Value, json};

/// Connections of the load generator.
const CONNECTIONS: usize = 64;
/// One event: its `seq` differs from every other's, so a key can tell them apart.
const EVENT: &str = r#"{"name":"stackctl/bench","data":{"seq":{{seq}}},"ts":{{ts}}}"#;

/// A variant: its name, its flow-control settings (merged into the
/// function), and how long the rule alone holds a run back.
struct Variant {
    name: &'static str,
    rules: Value,
    held: Duration,
    /// Whether only some sampled events name a run: a batch's run is the
    /// run of its first event.
    batched: bool,
}

fn variants() -> Vec<Variant> {
    vec![
        Variant {
            // Well above the rate: the cost of reserving a start per run.
            name: "throttle 1000/s (not binding)",
            rules: json!({"throttle": {"limit": 1000, "period": "1s", "burst": 100}}),
            held: Duration::ZERO,
            batched: false,
        },
        Variant {
            name: "throttle 1000/s per key",
            rules: json!({"throttle": {"limit": 1000, "period": "1s", "burst": 100,
                                       "key": "string(event.data.seq % 100)"}}),
            held: Duration::ZERO,
            batched: false,
        },
        Variant {
            // Every event its own key: each starts a run once its second is quiet.
            name: "debounce 1s per event",
            rules: json!({"debounce": {"period": "1s", "key": "string(event.data.seq)"}}),
            held: Duration::from_secs(1),
            batched: false,
        },
        Variant {
            // At 500 events/s a batch of 10 fills in about 20 ms: the
            // timeout holds back only the last one.
            name: "batch_events 10, 1s",
            rules: json!({"batch_events": {"max_size": 10, "timeout": "1s"}}),
            held: Duration::ZERO,
            batched: true,
        },
    ]
}

fn main() {
    common::maybe_serve_reference();
    let rate: f64 = std::env::var("BENCH_RATE")
        .ok()
        .map(|r| r.parse().expect("BENCH_RATE: events per second"))
        .unwrap_or(500.0);
    let secs = common::secs(10);
    let rounds = common::rounds(3);
    println!(
        "flow control: a 1-step function at {rate} events/s over {CONNECTIONS} connections, \
         {} s per cell, {rounds} rounds; load average {} at the start",
        secs.as_secs(),
        common::loadavg()
    );
    let reference = common::start_reference();
    let step_url = format!("http://{}/step", reference.addr);
    let rt = common::runtime();
    println!(
        "\n  {:<32} {:>10} {:>10} {:>7}  {:>22} {:>22} {:>7}",
        "variant", "plain ev/s", "ev/s", "ratio", "plain e2e p50/p99 ms", "e2e p50/p99 ms", "ratio"
    );
    for variant in variants() {
        let mut events_ratios = Vec::new();
        let mut latency_ratios = Vec::new();
        for round in 0..rounds {
            // Alternate who goes first.
            let (plain, with) = if round % 2 == 0 {
                let plain = cell(&rt, &step_url, &json!({}), rate, secs);
                (plain, cell(&rt, &step_url, &variant.rules, rate, secs))
            } else {
                let with = cell(&rt, &step_url, &variant.rules, rate, secs);
                (cell(&rt, &step_url, &json!({}), rate, secs), with)
            };
            let (p, w) = (e2e(&plain, false), e2e(&with, variant.batched));
            // The rule's own hold is not overhead.
            let held = variant.held.as_secs_f64() * 1000.0;
            let events_ratio = with.events_accepted.rate / plain.events_accepted.rate;
            let latency_ratio = (w.0 - held).max(0.0) / p.0.max(0.001);
            println!(
                "  {:<32} {:>10.0} {:>10.0} {:>7.2}  {:>22} {:>22} {:>7.2}",
                format!("{} (round {})", variant.name, round + 1),
                plain.events_accepted.rate,
                with.events_accepted.rate,
                events_ratio,
                format!("{:.0} / {:.0}", p.0, p.1),
                format!("{:.0} / {:.0}", w.0, w.1),
                latency_ratio,
            );
            events_ratios.push(events_ratio);
            latency_ratios.push(latency_ratio);
        }
        println!(
            "  {:<32} {:>10} {:>10} {:>7.2}  {:>22} {:>22} {:>7.2}",
            format!("{}: median", variant.name),
            "",
            "",
            median(&mut events_ratios),
            "",
            format!("(less {} ms held)", variant.held.as_millis()),
            median(&mut latency_ratios),
        );
    }
    println!("\nload average {} at the end", common::loadavg());
}

/// One cell: a fresh engine with the function under `rules`, the load, and
/// the load generator's report (with its end-to-end sample).
fn cell(
    rt: &tokio::runtime::Runtime,
    step_url: &str,
    rules: &Value,
    rate: f64,
    secs: Duration,
) -> Report {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = common::engine_config(dir.path());
    let mut function = json!({
        "id": "one-step",
        "triggers": [{"event": "stackctl/bench"}],
        "steps": [{"id": "call", "http": {"url": step_url}}]
    });
    if let (Some(f), Some(r)) = (function.as_object_mut(), rules.as_object()) {
        f.extend(r.clone());
    }
    config.functions = vec![serde_json::from_value(function).expect("function definition")];
    let engine = common::start_engine(dir.path(), &config, "all");
    let mut c = BenchConfig::new(format!("http://{}/e/{}", engine.addr, common::KEY));
    c.connections = CONNECTIONS;
    c.load = Load::constant(rate, secs);
    c.body = Body::Template(Template::parse(EVENT).expect("event template"));
    c.e2e = Some(E2eConfig {
        runs_api: format!("http://{}/v1", engine.addr),
        token: common::TOKEN.into(),
        samples: 200,
        wait: Duration::from_secs(60),
    });
    let report = common::load(rt, c);
    assert_eq!(
        report.http_req_failed.count, 0,
        "failed requests: {:?} {:?}",
        report.status_codes, report.errors
    );
    report
}

/// Event-to-completed-run latency of a cell's sampled events: (median, p99)
/// in ms. With `batched`, only the sampled events that opened a batch name
/// a run (the others' runs are their batches' runs).
fn e2e(report: &Report, batched: bool) -> (f64, f64) {
    let e2e = report.e2e.as_ref().expect("an end-to-end sample");
    let without_run = if batched { 0 } else { e2e.without_run };
    assert_eq!(
        (without_run, e2e.unfinished),
        (0, 0),
        "sampled events without a finished run: {e2e:?}"
    );
    assert!(e2e.measured > 0, "no sampled run finished: {e2e:?}");
    (e2e.latency.med, e2e.latency.p99)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
