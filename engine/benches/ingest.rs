//! `cargo bench -p engine --bench ingest`: the event API's ingestion
//! (`stackctl-engine --role event-api`, embedded backend in a temp dir,
//! every 2xx fsynced) next to a reference server (minimal axum, reads the
//! body, answers 200) under the same load generator: requests/s and p50/p99
//! at 1, 16 and 64 connections with 1 and 100 events per request. Then
//! event-to-completed-run latency of a 1-step function (`sleep: 1ms`) at 500
//! events/s with every role running (`--role all`). Prints a table and the
//! issue's targets. `BENCH_SECS` sets the seconds per cell (default 5).

mod common;

use std::time::Duration;

use stacks::bench::{BenchConfig, Body, E2eConfig, Load, Report, ms};

struct Row {
    server: &'static str,
    events: u32,
    conns: usize,
    report: Report,
}

fn main() {
    common::maybe_serve_reference();
    let time = common::secs(5);
    println!(
        "event API ingestion (load average at start: {})",
        common::loadavg()
    );
    let rt = common::runtime();
    let reference = common::start_reference();
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = common::start_engine(dir.path(), &common::engine_config(dir.path()), "event-api");

    let mut rows = Vec::new();
    for (server, addr) in [("reference", reference.addr), ("engine", engine.addr)] {
        // Warm-up: connections, page cache, the database's first pages.
        let _ = common::closed_loop(&rt, addr, 16, 1, Duration::from_secs(1));
        for events in [1u32, 100] {
            for conns in [1usize, 16, 64] {
                let report = common::closed_loop(&rt, addr, conns, events, time);
                assert_eq!(
                    report.http_req_failed.count, 0,
                    "{server}: {:?} {:?}",
                    report.status_codes, report.errors
                );
                rows.push(Row {
                    server,
                    events,
                    conns,
                    report,
                });
            }
        }
    }
    drop(engine);
    drop(reference);

    println!(
        "\n  {:<10} {:>6} {:>6} {:>10} {:>11} {:>9} {:>9} {:>9}",
        "server", "ev/req", "conns", "req/s", "events/s", "p50", "p99", "vs ref"
    );
    for r in &rows {
        let reference = rows
            .iter()
            .find(|x| x.server == "reference" && x.events == r.events && x.conns == r.conns)
            .map_or(f64::NAN, |x| x.report.http_reqs.rate);
        println!(
            "  {:<10} {:>6} {:>6} {:>10.0} {:>11.0} {:>9} {:>9} {:>8.0}%",
            r.server,
            r.events,
            r.conns,
            r.report.http_reqs.rate,
            r.report.events_accepted.rate,
            ms(r.report.http_req_duration.med),
            ms(r.report.http_req_duration.p99),
            r.report.http_reqs.rate / reference * 100.0
        );
    }

    let e2e = e2e_run(&rt, time.max(Duration::from_secs(10)));
    let l = e2e.e2e.clone().unwrap_or_default();
    println!(
        "\n  event-to-completed, 1-step function (sleep 1ms), 500 events/s for {:.0}s, {} connections:\n    \
         p50 {}  p90 {}  p99 {}  max {}  ({} of {} sampled measured; runs {:?}); request p50 {} p99 {}",
        e2e.duration_s,
        e2e.connections,
        ms(l.latency.med),
        ms(l.latency.p90),
        ms(l.latency.p99),
        ms(l.latency.max),
        l.measured,
        l.sampled,
        l.runs,
        ms(e2e.http_req_duration.med),
        ms(e2e.http_req_duration.p99),
    );

    let cell = |server: &str, events: u32, conns: usize| {
        rows.iter()
            .find(|x| x.server == server && x.events == events && x.conns == conns)
            .map(|x| &x.report)
            .expect("cell measured")
    };
    let (e64, r64) = (cell("engine", 1, 64), cell("reference", 1, 64));
    let share = e64.http_reqs.rate / r64.http_reqs.rate;
    let batch = cell("engine", 100, 16)
        .events_accepted
        .rate
        .max(cell("engine", 100, 64).events_accepted.rate);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\n  targets (issue 7):");
    println!(
        "    single-event ingestion at 64 connections >= 50% of reference: {:.0}% -> {}",
        share * 100.0,
        verdict(share >= 0.5)
    );
    println!(
        "    ... with p99 < 10ms: {} -> {}",
        ms(e64.http_req_duration.p99),
        verdict(e64.http_req_duration.p99 < 10.0)
    );
    println!(
        "    100-event batches > 300,000 events/s: {batch:.0} -> {}",
        verdict(batch > 300_000.0)
    );
    println!(
        "    event-to-completed p50 < 5ms: {} -> {}",
        ms(l.latency.med),
        verdict(l.measured > 0 && l.latency.med < 5.0)
    );
    println!(
        "    event-to-completed p99 < 25ms: {} -> {}",
        ms(l.latency.p99),
        verdict(l.measured > 0 && l.latency.p99 < 25.0)
    );
    println!("\n  load average at end: {}", common::loadavg());
}

/// 500 events/s into an engine running every role, with a 1-step function on the event.
fn e2e_run(rt: &tokio::runtime::Runtime, time: Duration) -> Report {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = common::engine_config(dir.path());
    config.functions = vec![
        serde_json::from_value(serde_json::json!({
            "id": "bench-one-step",
            "triggers": [{"event": "bench/e2e"}],
            "steps": [{"id": "nap", "sleep": "1ms"}]
        }))
        .expect("function"),
    ];
    let engine = common::start_engine(dir.path(), &config, "all");
    let base = format!("http://{}", engine.addr);
    let mut c = BenchConfig::new(format!("{base}/e/{}", common::KEY));
    c.connections = 16;
    c.load = Load::constant(500.0, time);
    c.body = Body::Builtin {
        name: "bench/e2e".into(),
        pad: 0,
    };
    c.e2e = Some(E2eConfig {
        runs_api: format!("{base}/v1"),
        token: common::TOKEN.into(),
        samples: 1000,
        wait: Duration::from_secs(120),
    });
    let report = common::load(rt, c);
    assert_eq!(
        report.http_req_failed.count, 0,
        "{:?} {:?}",
        report.status_codes, report.errors
    );
    drop(engine);
    report
}
