//! `stackctl up` of the example aws stack against the moto server: the
//! first run creates every resource (NDJSON progress, then a result line),
//! leaves the stack lock released and the live state equal to the spec; a
//! second run finds nothing to change. `stackctl status` reports every
//! resource missing before and in sync after.
//!
//! The spec builds the engine image from source: `up` ships a small binary
//! (`STACKCTL_ENGINE_BINARY`) and pushes to a local registry standing in for
//! ECR (`STACKCTL_REGISTRY_ENDPOINT`; moto's ECR has no registry protocol).

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{Moto, Registry};
use stacks::aws::{self, Aws, Inputs};
use stacks::graph::Graph;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn up(
    moto: &Moto,
    registry: &Registry,
    cwd: &Path,
) -> (std::process::Output, Vec<serde_json::Value>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackctl"));
    moto.configure_command(&mut cmd);
    cmd.env("STACKCTL_ENGINE_BINARY", "/bin/echo")
        .env("STACKCTL_REGISTRY_ENDPOINT", registry.url());
    let out = cmd
        .args(["--output", "json", "up", "--no-verify", "-f"])
        .arg(repo_root().join("examples/aws.yaml"))
        .current_dir(cwd)
        .env_remove("STACKCTL_STACK")
        .output()
        .expect("stackctl runs");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out, lines)
}

fn status(moto: &Moto, cwd: &Path) -> (Option<i32>, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackctl"));
    moto.configure_command(&mut cmd);
    let out = cmd
        .args(["--output", "json", "status", "-f"])
        .arg(repo_root().join("examples/aws.yaml"))
        .current_dir(cwd)
        .env_remove("STACKCTL_STACK")
        .output()
        .expect("stackctl runs");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status prints JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_creates_the_example_stack_then_finds_nothing_to_change() {
    let (moto, registry) = tokio::task::spawn_blocking(|| {
        // At least every service's desired count: `up` waits for them.
        let moto = Moto::builder()
            .ecs_service_running(8)
            .start()
            .expect("moto_server starts (run scripts/test to install it)");
        (moto, Registry::start().expect("docker-registry starts"))
    })
    .await
    .unwrap();
    let cwd = tempfile::tempdir().unwrap();

    let (code, before) = status(&moto, cwd.path());
    assert_eq!(code, Some(1), "{before}");
    let resources = before["resources"].as_array().unwrap();
    assert!(!resources.is_empty(), "{before}");
    assert!(
        resources
            .iter()
            .all(|r| r["state"] == "missing" && r["exists"] == false),
        "{before}"
    );

    let (first, lines) = up(&moto, &registry, cwd.path());
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let result = lines.last().expect("a result line");
    assert_eq!(result["type"], "result", "{lines:?}");
    let applied = result["applied"].as_array().unwrap();
    assert!(applied.iter().any(|a| a["action"] == "create"), "{result}");
    assert!(
        lines.len() > applied.len(),
        "progress events come before the result: {lines:?}"
    );

    let loaded =
        stacks::spec::load_with_env(repo_root().join("examples/aws.yaml"), &|_| None).unwrap();
    let spec = loaded.spec.clone();
    let aws = Aws::with_endpoint(
        &moto.endpoint(),
        harness::REGION,
        harness::ACCESS_KEY_ID,
        harness::SECRET_ACCESS_KEY,
    )
    .await
    .unwrap();
    let graph = Graph::build(&loaded).unwrap();
    let planned = aws::plan(&aws, &graph, &Inputs::from_spec(&spec, None))
        .await
        .unwrap();
    assert!(
        !planned.plan.has_changes(),
        "{}",
        planned.plan.render_text()
    );
    assert!(
        aws::lock::holder(&aws, &spec.stack)
            .await
            .unwrap()
            .is_none(),
        "the lock is released after up"
    );

    let (code, after) = status(&moto, cwd.path());
    assert_eq!(code, Some(0), "{after}");
    assert_eq!(after["in_sync"], true, "{after}");
    assert_eq!(
        after["resources"].as_array().map(Vec::len),
        Some(resources.len()),
        "{after}"
    );
    assert!(
        after["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "in sync" && r["exists"] == true),
        "{after}"
    );

    let (second, lines) = up(&moto, &registry, cwd.path());
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let result = lines.last().expect("a result line");
    assert_eq!(
        result["applied"].as_array().map(Vec::len),
        Some(0),
        "{result}"
    );
}
