//! `stackctl down` of the example aws stack against the moto server:
//! without `--yes` and without a terminal it refuses (exit 1) and changes
//! nothing; with `--yes --output json` it prints NDJSON progress and a
//! result, releases the stack lock, and exits 1 because moto leaves the
//! ElastiCache group `deleting` (its subnet group and security group wait
//! for it), which the result lists. The library tests
//! (`stacks/tests/it/aws_down.rs`) check what remains in detail.

use std::path::Path;
use std::process::Output;

use crate::support::{aws_on, moto_for_up, ndjson, plan_example, repo_root, stackctl_on, strings};
use harness::Moto;
use stacks::aws::{self, Inputs};

fn stackctl(moto: &Moto, cwd: &Path, args: &[&str]) -> Output {
    stackctl_on(moto)
        .args(args)
        .arg("-f")
        .arg(repo_root().join("examples/aws.yaml"))
        .current_dir(cwd)
        .output()
        .expect("stackctl runs")
}

/// The prebuilt image `up` deploys: building and pushing one is the subject
/// of aws_digest.
const IMAGE: &str = "public.ecr.aws/stackctl/engine:test";

async fn changes(moto: &Moto) -> usize {
    let aws = aws_on(moto).await;
    let (_, plan) = plan_example(&aws, |spec| {
        Inputs::from_spec(spec, Some(IMAGE.to_string()))
    })
    .await;
    plan.plan.summary.create + plan.plan.summary.update + plan.plan.summary.replace
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_without_yes_then_deletes_the_stack_with_yes() {
    let moto = moto_for_up().await;
    let cwd = tempfile::tempdir().unwrap();
    let up = stackctl(
        &moto,
        cwd.path(),
        &[
            "--output",
            "json",
            "up",
            "--no-verify",
            "--image",
            "public.ecr.aws/stackctl/engine:test",
        ],
    );
    assert!(
        up.status.success(),
        "up: {}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(changes(&moto).await, 0, "the stack is up");

    // No --yes, no terminal: refused, nothing changed.
    let refused = stackctl(&moto, cwd.path(), &["down"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to delete every AWS resource of stack `reference` without --yes"),
        "{stderr}"
    );
    let refused_json = stackctl(&moto, cwd.path(), &["--output", "json", "down"]);
    assert_eq!(refused_json.status.code(), Some(1));
    let doc = &ndjson(&refused_json)[0];
    assert!(
        doc["error"].as_str().unwrap().contains("without --yes"),
        "{doc}"
    );
    assert_eq!(changes(&moto).await, 0, "a refused down changes nothing");

    let down = stackctl(
        &moto,
        cwd.path(),
        &["--output", "json", "down", "--yes", "--wait-timeout", "2s"],
    );
    let lines = ndjson(&down);
    let result = lines.last().expect("a result line");
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(
        down.status.code(),
        Some(1),
        "moto never finishes the ElastiCache deletion: {result}"
    );
    assert_eq!(result["clean"], false);
    let progress: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["type"] == "progress").collect();
    let starts = progress.iter().filter(|l| l["phase"] == "start").count();
    let deleted = result["deleted"].as_array().unwrap().len();
    assert!(deleted >= 30, "{result}");
    assert_eq!(
        starts,
        deleted + result["in_progress"].as_array().unwrap().len(),
        "one progress line per resource acted on"
    );
    assert_eq!(
        result["in_progress"][0]["id"], "elasticache.redis",
        "{result}"
    );
    let leftovers = strings(result["sweep"]["leftovers"].as_array().unwrap(), "name");
    assert_eq!(
        leftovers,
        ["reference-redis", "reference-redis", "reference-redis"],
        "{result}"
    );
    assert!(result["calls"]["writes"].as_u64().unwrap() > 0);

    // The lock was released.
    let aws = aws_on(&moto).await;
    assert_eq!(aws::lock::holder(&aws, "reference").await.unwrap(), None);
}
