//! `cargo bench -p engine --bench loadgen`: the load generator's maximum
//! throughput against wrk's (Debian `wrk`), same reference server, same
//! connections, same duration, same POST body. Runs alternate in pairs
//! (wrk then bench, then bench then wrk, ...) so drift in the machine's
//! load hits both; each pair gives a ratio and the median ratio decides.
//! Target: bench's requests/s at least 0.9x wrk's. `BENCH_SECS` sets the
//! seconds per run (default 10), `BENCH_ROUNDS` the pairs (default 5).

mod common;

use std::process::Command;
use std::time::Duration;

fn main() {
    common::maybe_serve_reference();
    let time = common::secs(10);
    let rounds = common::rounds(5);
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

    let mut summary = Vec::new();
    let mut worst = f64::INFINITY;
    for conns in [16usize, 64] {
        println!(
            "\n  {conns} connections, {rounds} pairs of {}s runs",
            time.as_secs()
        );
        println!(
            "  {:>5}  {:>12}  {:>12}  {:>6}  {:>10}  {:>10}",
            "pair", "wrk req/s", "bench req/s", "ratio", "wrk p99", "bench p99"
        );
        let mut wrk_rps = Vec::new();
        let mut bench_rps = Vec::new();
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let run_bench = || {
                let r = common::closed_loop(&rt, server.addr, conns, 1, time);
                assert_eq!(r.http_req_failed.count, 0, "{:?}", r.errors);
                r
            };
            // Alternate who goes first, so a trend in the machine's load favours neither.
            let ((w, wrk_p99), r) = if round % 2 == 0 {
                let w = wrk(&script, server.addr, conns, time);
                (w, run_bench())
            } else {
                let r = run_bench();
                (wrk(&script, server.addr, conns, time), r)
            };
            let b = r.http_reqs.rate;
            println!(
                "  {:>5}  {w:>12.0}  {b:>12.0}  {:>6.2}  {wrk_p99:>10}  {:>10}",
                round + 1,
                b / w,
                engine::loadgen::ms(r.http_req_duration.p99)
            );
            wrk_rps.push(w);
            bench_rps.push(b);
            ratios.push(b / w);
        }
        // Medians: one pair disturbed by other work on the machine does not decide.
        let ratio = median(&mut ratios);
        worst = worst.min(ratio);
        summary.push((conns, median(&mut wrk_rps), median(&mut bench_rps), ratio));
    }
    println!(
        "\n  {:>5}  {:>16}  {:>18}  {:>12}",
        "conns", "median wrk req/s", "median bench req/s", "median ratio"
    );
    for (conns, w, b, ratio) in summary {
        println!("  {conns:>5}  {w:>16.0}  {b:>18.0}  {ratio:>12.2}");
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
