//! `cargo bench -p engine --bench traces`: what traces cost the event API.
//! Two `stackctl-engine --role event-api` processes, each on its own
//! embedded database in a temp dir: one without OpenTelemetry variables
//! (traces off), one exporting to the harness's OTLP/HTTP receiver with
//! `OTEL_TRACES_SAMPLER=parentbased_traceidratio` and
//! `OTEL_TRACES_SAMPLER_ARG=0.01` (1 % of ingest requests sampled, and
//! only those get a span; every request's events still get their
//! `traceparent`, flags `00` when unsampled). The same
//! load generator runs single-event requests at 64 connections against each,
//! in alternating pairs, and the median of the pairs' throughput ratios
//! (traced / untraced) is the figure (target: at least 0.9).
//! `BENCH_SECS` sets the seconds per run (default 5), `BENCH_ROUNDS` the
//! pairs (default 5).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use engine::loadgen::{Report, ms};

/// An engine process killed on drop.
struct Engine {
    child: Child,
    addr: SocketAddr,
}

impl Engine {
    /// SIGTERM, as a deployment stops it (the traced one then flushes its
    /// last spans), and a kill if it has not exited within 10 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The event API on a fresh database in `dir`, with `env` set.
fn start(dir: &Path, env: &[(&str, String)]) -> Engine {
    let config = common::engine_config(dir);
    let path = dir.join("engine.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("config"))
        .expect("write config");
    let log = std::fs::File::create(dir.join("engine.log")).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackctl-engine"));
    cmd.args(["--role", "event-api", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start stackctl-engine");
    let addr = config.event_api.bind;
    common::wait_listening(addr, &mut child, "stackctl-engine");
    Engine { child, addr }
}

fn main() {
    let time = common::secs(5);
    let rounds = common::rounds(5);
    println!(
        "event API ingestion with traces at 1 % sampling vs without (load average at start: {})",
        common::loadavg()
    );
    let receiver = harness::OtlpReceiver::start().expect("the OTLP receiver");
    let rt = common::runtime();
    let (off_dir, on_dir) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    let off = start(off_dir.path(), &[]);
    let on = start(
        on_dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_SERVICE_NAME", "bench-event-api".to_string()),
            (
                "OTEL_TRACES_SAMPLER",
                "parentbased_traceidratio".to_string(),
            ),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01".to_string()),
        ],
    );
    for addr in [off.addr, on.addr] {
        // Warm-up: connections, page cache, the database's first pages.
        let _ = common::closed_loop(&rt, addr, 16, 1, Duration::from_secs(1));
    }
    let run = |addr| {
        let report = common::closed_loop(&rt, addr, 64, 1, time);
        assert_eq!(
            report.http_req_failed.count, 0,
            "{:?} {:?}",
            report.status_codes, report.errors
        );
        report
    };
    let mut pairs: Vec<(Report, Report)> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (untraced, traced) = if round % 2 == 0 {
            let u = run(off.addr);
            (u, run(on.addr))
        } else {
            let t = run(on.addr);
            (run(off.addr), t)
        };
        pairs.push((untraced, traced));
    }
    on.stop();
    off.stop();

    println!(
        "\n  single events at 64 connections, {rounds} alternating pairs of {} s (traced / untraced req/s, p99 of each):",
        time.as_secs()
    );
    let mut ratios: Vec<f64> = Vec::with_capacity(rounds);
    for (u, t) in &pairs {
        let ratio = t.http_reqs.rate / u.http_reqs.rate;
        ratios.push(ratio);
        println!(
            "    {:>6.0} / {:>6.0} = {:.3}   p99 {} / {}",
            t.http_reqs.rate,
            u.http_reqs.rate,
            ratio,
            ms(t.http_req_duration.p99),
            ms(u.http_req_duration.p99)
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let sent: f64 = pairs.iter().map(|(_, t)| t.http_reqs.count as f64).sum();
    let spans = receiver.spans().len();
    println!(
        "\n  spans the traced engine exported (flushed at SIGTERM): {spans} for {sent:.0} measured requests and its warm-up ({:.2} %)",
        spans as f64 / sent.max(1.0) * 100.0
    );
    println!(
        "  target: traced throughput >= 0.9 of untraced (median pair): {median:.3} -> {}",
        if median >= 0.9 { "met" } else { "MISSED" }
    );
}
