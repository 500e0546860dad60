//! The AWS provider on the moto server (issue 3 benchmark): wall time and
//! AWS API operations (reads / writes) of `stackctl up` from nothing, a
//! no-op `up`, and `plan`, for examples/aws.yaml.
//!
//!     cargo bench -p stackctl --bench aws_moto        # BENCH_ROUNDS=3 by default
//!
//! Every figure is the real `stackctl` binary as a child process against a
//! moto server and a docker-registry on loopback (started by the harness),
//! so wall times include process start, the engine image build (from the
//! small `/bin/echo` binary, `--engine-binary`) and its push. `up` reports
//! its own call counts in its JSON result (`aws_calls`); `plan` prints a
//! plan, so its counts come from the same library call in-process.
//! moto is reset before each round, so every round's first `up` starts from
//! nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use harness::{Moto, Registry};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Run {
    seconds: f64,
    reads: Option<u64>,
    writes: Option<u64>,
}

fn stackctl(moto: &Moto, registry: &Registry, cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackctl"));
    moto.configure_command(&mut cmd);
    cmd.args(args)
        .arg(repo_root().join("examples/aws.yaml"))
        .current_dir(cwd)
        .env_remove("STACKCTL_STACK")
        .env("STACKCTL_ENGINE_BINARY", "/bin/echo")
        .env("STACKCTL_REGISTRY_ENDPOINT", registry.url());
    let started = Instant::now();
    let out = cmd.output().expect("stackctl runs");
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "stackctl {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Option<serde_json::Value> = stdout
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok());
    let calls = result.as_ref().map(|r| &r["aws_calls"]);
    Run {
        seconds,
        reads: calls.and_then(|c| c["reads"].as_u64()),
        writes: calls.and_then(|c| c["writes"].as_u64()),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let moto = Moto::builder()
        .ecs_service_running(8)
        .start()
        .expect("moto_server starts (run scripts/test to install it)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_start = load();

    let mut fresh = Vec::new();
    let mut noop = Vec::new();
    let mut plan = Vec::new();
    let mut plan_calls = (0, 0);
    for round in 0..rounds {
        moto.reset().expect("moto resets");
        moto.keep_ecs_tasks_running()
            .expect("moto keeps tasks running");
        // A new registry too: the first push of every round uploads every blob.
        let registry = Registry::start().expect("docker-registry starts");
        let cwd = tempfile::tempdir().unwrap();
        let up = ["--output", "json", "up", "--no-verify", "-f"];
        let f = stackctl(&moto, &registry, cwd.path(), &up);
        let n = stackctl(&moto, &registry, cwd.path(), &up);
        assert_eq!(n.writes, Some(0), "a no-op up writes nothing");
        let p = stackctl(&moto, &registry, cwd.path(), &["plan", "-f"]);
        eprintln!(
            "round {round}: up {:.2} s ({:?} reads, {:?} writes), no-op up {:.2} s ({:?} reads), plan {:.2} s",
            f.seconds, f.reads, f.writes, n.seconds, n.reads, p.seconds
        );
        if round == 0 {
            plan_calls = rt.block_on(library_plan_calls(&moto));
        }
        fresh.push(f);
        noop.push(n);
        plan.push(p);
    }
    let load_end = load();

    let row = |name: &str, runs: &[Run], reads: Option<u64>, writes: Option<u64>| {
        let secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
        let min = secs.iter().copied().fold(f64::INFINITY, f64::min);
        let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        println!(
            "| {name} | {:.2} | {min:.2} | {} | {} |",
            median(secs),
            show(reads.or(runs[0].reads)),
            show(writes.or(runs[0].writes)),
        );
    };
    println!("\nexamples/aws.yaml on moto, {rounds} rounds");
    println!("| command | median s | min s | reads | writes |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    row("`up` from nothing", &fresh, None, None);
    row("`up`, nothing to change", &noop, None, None);
    row("`plan`", &plan, Some(plan_calls.0), Some(plan_calls.1));
    println!(
        "\nload average: start {} end {}",
        load_start.trim(),
        load_end.trim()
    );
}

/// The API operations of one `plan` of the example stack, in-process.
async fn library_plan_calls(moto: &Moto) -> (u64, u64) {
    let loaded = stacks::spec::load_with_env(repo_root().join("examples/aws.yaml"), &|_| None)
        .expect("the example loads");
    let graph = stacks::graph::Graph::build(&loaded).unwrap();
    let aws = stacks::aws::Aws::with_endpoint(
        &moto.endpoint(),
        harness::REGION,
        harness::ACCESS_KEY_ID,
        harness::SECRET_ACCESS_KEY,
    )
    .await
    .unwrap();
    let inputs = stacks::aws::Inputs::from_spec(&loaded.spec, None);
    stacks::aws::plan(&aws, &graph, &inputs).await.unwrap();
    let calls = aws.calls();
    (calls.reads, calls.writes)
}
