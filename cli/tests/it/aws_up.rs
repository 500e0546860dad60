//! `stackctl up` of the example aws stack against the moto server: the
//! first run creates every resource (NDJSON progress, then a result line),
//! leaves the stack lock released and the live state equal to the spec; a
//! second run finds nothing to change. `stackctl status` reports every
//! resource missing before and in sync after.
//!
//! The spec builds the engine image from source: `up` ships a small binary
//! (`STACKCTL_ENGINE_BINARY`) and pushes to a local registry standing in for
//! ECR (`STACKCTL_REGISTRY_ENDPOINT`; moto's ECR has no registry protocol).
//! An arm64 engine (an ELF header written by the test: moto never runs it)
//! is refused on the example's x86_64 executors before any AWS write, and
//! on Graviton executors registers ARM64 task definitions and a launch
//! template with the arm64 AMI.

use std::path::{Path, PathBuf};

use crate::support::{
    assert_exit, aws_on, last_doc, moto_and_registry, ndjson, plan_example, repo_root, stackctl_on,
    stackctl_shipping, task_definition, task_definition_arns,
};
use harness::{Moto, Registry};
use stacks::aws::{self, Inputs};

/// `up --output json` of the example, which must succeed; its NDJSON lines.
fn up(moto: &Moto, registry: &Registry, cwd: &Path) -> Vec<serde_json::Value> {
    let out = stackctl_shipping(moto, registry, "/bin/echo")
        .args(["--output", "json", "up", "--no-verify", "-f"])
        .arg(repo_root().join("examples/aws.yaml"))
        .current_dir(cwd)
        .output()
        .expect("stackctl runs");
    assert_exit(&out, 0);
    ndjson(&out)
}

/// Whether every row of `status --output json` is in `state`, and exists or not.
fn all_rows(status: &serde_json::Value, state: &str, exists: bool) -> bool {
    status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["state"] == state && r["exists"] == exists)
}

fn status(moto: &Moto, cwd: &Path) -> (Option<i32>, serde_json::Value) {
    let out = stackctl_on(moto)
        .args(["--output", "json", "status", "-f"])
        .arg(repo_root().join("examples/aws.yaml"))
        .current_dir(cwd)
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
    let (moto, registry) = moto_and_registry().await;
    let cwd = tempfile::tempdir().unwrap();

    let (code, before) = status(&moto, cwd.path());
    assert_eq!(code, Some(1), "{before}");
    let resources = before["resources"].as_array().unwrap();
    assert!(!resources.is_empty(), "{before}");
    assert!(all_rows(&before, "missing", false), "{before}");

    let lines = up(&moto, &registry, cwd.path());
    let result = lines.last().expect("a result line");
    assert_eq!(result["type"], "result", "{lines:?}");
    let applied = result["applied"].as_array().unwrap();
    assert!(applied.iter().any(|a| a["action"] == "create"), "{result}");
    assert!(
        lines.len() > applied.len(),
        "progress events come before the result: {lines:?}"
    );

    let aws = aws_on(&moto).await;
    let (spec, planned) = plan_example(&aws, |spec| Inputs::from_spec(spec, None)).await;
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
    assert!(all_rows(&after, "in sync", true), "{after}");

    let lines = up(&moto, &registry, cwd.path());
    let result = lines.last().expect("a result line");
    assert_eq!(
        result["applied"].as_array().map(Vec::len),
        Some(0),
        "{result}"
    );
}

/// `examples/aws.yaml` (with its function files) in `dir`, its executors on
/// `instance_type`.
fn example_on(dir: &Path, instance_type: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/aws.yaml")).unwrap();
    assert!(text.contains("instance_type: t3.medium"), "{text}");
    let text = text.replace(
        "instance_type: t3.medium",
        &format!("instance_type: {instance_type}"),
    );
    let functions = dir.join("functions");
    std::fs::create_dir_all(&functions).unwrap();
    for entry in std::fs::read_dir(repo_root().join("examples/functions")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), functions.join(entry.file_name())).unwrap();
    }
    let path = dir.join(format!("aws-{instance_type}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `stackctl ARGS SPEC` shipping `engine`.
fn stackctl_with(
    moto: &Moto,
    registry: &Registry,
    engine: &Path,
    args: &[&str],
    spec: &Path,
) -> std::process::Output {
    stackctl_shipping(moto, registry, engine)
        .args(args)
        .arg(spec)
        .current_dir(spec.parent().unwrap())
        .output()
        .expect("stackctl runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arm64_engine_runs_on_arm64_task_definitions_and_graviton_executors_only() {
    use stacks::arch::Architecture;
    use stacks::image::elf;

    let (moto, registry) = moto_and_registry().await;
    let aws = aws_on(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    // Engine binaries by their ELF headers, whatever this host is.
    let engine = |arch: Architecture| {
        let path = dir.path().join(format!("stackctl-engine-{arch}"));
        std::fs::write(&path, elf::fixture(arch, false)).unwrap();
        path
    };
    let (arm64, x86_64) = (engine(Architecture::Arm64), engine(Architecture::X86_64));
    let example = repo_root().join("examples/aws.yaml");
    let graviton = example_on(dir.path(), "t4g.medium");

    // Refused before any AWS write, naming the instance type and the fix.
    for (engine, spec, expected) in [
        (
            &arm64,
            &example,
            "executors.instance_type `t3.medium` is an x86_64 instance type, but the engine image is arm64: use an arm64 instance type (e.g. `t4g.medium` for arm64)",
        ),
        (
            &x86_64,
            &graviton,
            "executors.instance_type `t4g.medium` is an arm64 instance type, but the engine image is x86_64: use an x86_64 instance type (e.g. `t3.medium` for x86_64)",
        ),
    ] {
        let out = stackctl_with(&moto, &registry, engine, &["up", "--no-verify", "-f"], spec);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    let written = aws
        .ecr()
        .describe_repositories()
        .send()
        .await
        .unwrap()
        .repositories
        .unwrap_or_default();
    assert!(written.is_empty(), "{written:?}");
    let families = task_definition_arns(&aws).await;
    assert!(families.is_empty(), "{families:?}");

    // Graviton executors run it: ARM64 task definitions, the arm64 AMI.
    let out = stackctl_with(
        &moto,
        &registry,
        &arm64,
        &["--output", "json", "up", "--no-verify", "-f"],
        &graviton,
    );
    assert_exit(&out, 0);
    let result = last_doc(&out);
    assert_eq!(result["architecture"], "arm64", "{result}");
    for family in ["reference-event-api", "reference-runner"] {
        let td = task_definition(&aws, family).await;
        let platform = td.runtime_platform.unwrap();
        assert_eq!(
            platform.cpu_architecture.map(|a| a.as_str().to_string()),
            Some("ARM64".to_string()),
            "{family}"
        );
    }
    let arm_ami = aws
        .ssm()
        .get_parameter()
        .name(Architecture::Arm64.ami_parameter())
        .send()
        .await
        .unwrap()
        .parameter
        .and_then(|p| p.value)
        .unwrap();
    let launch = aws
        .ec2()
        .describe_launch_template_versions()
        .launch_template_name("reference-executors")
        .versions("$Latest")
        .send()
        .await
        .unwrap()
        .launch_template_versions
        .unwrap_or_default()
        .remove(0)
        .launch_template_data
        .unwrap();
    assert_eq!(launch.image_id, Some(arm_ami));

    // The same engine again: nothing to change.
    let plan = stackctl_with(
        &moto,
        &registry,
        &arm64,
        &["plan", "--detailed-exitcode", "-f"],
        &graviton,
    );
    assert_exit(&plan, 0);
}
