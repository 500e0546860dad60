//! `cargo bench -p engine --bench loadgen`: the load generator's maximum
//! throughput against wrk's (Debian `wrk`), same reference server, same
//! connections, same duration, same POST body. Runs alternate (wrk, bench,
//! three rounds, medians compared) so drift in the machine's load hits
//! both. Target: bench's requests/s at least 0.9x wrk's. `BENCH_SECS` sets
//! the seconds per run.

mod common;

use std::process::Command;
use std::time::Duration;

fn main() {
    common::maybe_serve_reference();
    let time = common::secs(10);
    println!(
        "load generator vs wrk (load average at start: {})",
        common::loadavg()
    );
    let server = common::start_reference();
    let rt = common::runtime();
    let body = r#"{"name":"stackctl/bench","data":{"seq":123456},"ts":1700000000000}"#;
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )
    .expect("write the wrk script");
    // Warm both up.
    let _ = common::closed_loop(&rt, server.addr, 16, 1, Duration::from_secs(1));

    println!(
        "\n  {:>5}  {:>12}  {:>12}  {:>6}  {:>10}  {:>10}",
        "conns", "wrk req/s", "bench req/s", "ratio", "wrk p99", "bench p99"
    );
    let mut worst = f64::INFINITY;
    for conns in [16usize, 64] {
        let mut wrk_rps = Vec::new();
        let mut bench_rps = Vec::new();
        let mut wrk_p99 = String::new();
        let mut bench_p99 = 0.0;
        for _ in 0..3 {
            let (rps, p99) = wrk(&script, server.addr, conns, time);
            wrk_rps.push(rps);
            wrk_p99 = p99;
            let r = common::closed_loop(&rt, server.addr, conns, 1, time);
            assert_eq!(r.http_req_failed.count, 0, "{:?}", r.errors);
            bench_rps.push(r.http_reqs.rate);
            bench_p99 = r.http_req_duration.p99;
        }
        // Medians of the rounds: one round disturbed by other work on the machine does not decide.
        let w = median(&mut wrk_rps);
        let b = median(&mut bench_rps);
        worst = worst.min(b / w);
        println!(
            "  {conns:>5}  {w:>12.0}  {b:>12.0}  {:>6.2}  {wrk_p99:>10}  {:>10}",
            b / w,
            stacks::bench::ms(bench_p99)
        );
    }
    println!(
        "\n  target: bench >= 0.9x wrk: {} (worst ratio {worst:.2}; load average at end: {})",
        if worst >= 0.9 { "met" } else { "MISSED" },
        common::loadavg()
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs wrk; returns requests/s and its p99 as printed.
fn wrk(
    script: &std::path::Path,
    addr: std::net::SocketAddr,
    conns: usize,
    time: Duration,
) -> (f64, String) {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{}s", time.as_secs()),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://{addr}/e/{}", common::KEY))
        .output()
        .expect("wrk runs (Debian package `wrk`)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    (rps, p99)
}
