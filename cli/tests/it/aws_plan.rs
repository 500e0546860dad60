//! `stackctl plan` against the moto server: with AWS reachable it reads
//! the live state, so after the example stack is applied (through the
//! library) `--detailed-exitcode` exits 0, and `--offline` still plans
//! every resource as a create (exit 2). A prebuilt arm64 image on x86_64
//! executors is refused, offline too. Credentials from an instance profile
//! (moto's instance metadata service) are accepted.

use crate::support::{apply_example, assert_exit, aws_on, moto, repo_root, stackctl, stackctl_on};
use harness::Moto;

fn plan(moto: &Moto, extra: &[&str]) -> std::process::Output {
    stackctl_on(moto)
        .args(["plan", "examples/aws.yaml", "--detailed-exitcode"])
        .args(extra)
        .current_dir(repo_root())
        .output()
        .expect("stackctl runs")
}

/// A CI runner on EC2 has no credential variables or files, only an
/// instance profile: the instance metadata service (moto serves one on its
/// endpoint) is asked, and `plan` and `status` go to AWS with its
/// credentials instead of refusing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_an_instance_profile_are_accepted() {
    let moto = moto().await;
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        stackctl_on(&moto)
            .args(args)
            .current_dir(repo_root())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "false")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", moto.endpoint())
            .output()
            .expect("stackctl runs")
    };
    let out = run(&["plan", "examples/aws.yaml", "--detailed-exitcode"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("planning offline"), "{err}");
    // Nothing is deployed: `status` reads AWS and says so (exit 1), rather
    // than refusing for want of credentials.
    let out = run(&["status", "examples/aws.yaml"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("needs AWS credentials"), "{text}");
    assert!(text.contains("event-api"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_live_state_and_exits_0_when_nothing_changes() {
    let moto = moto().await;

    let before = plan(&moto, &[]);
    assert_exit(&before, 2);

    apply_example(&aws_on(&moto).await).await;

    let after = plan(&moto, &[]);
    assert_exit(&after, 0);
    let text = String::from_utf8_lossy(&after.stdout);
    assert!(text.contains("0 to create, 0 to update"), "{text}");
    for secret in ["change-me-event-key", "change-me-api-token"] {
        assert!(
            !text.contains(secret) && !String::from_utf8_lossy(&before.stdout).contains(secret),
            "the plan prints {secret}"
        );
    }

    let offline = plan(&moto, &["--offline"]);
    assert_eq!(offline.status.code(), Some(2));
}

#[test]
fn a_prebuilt_arm64_image_needs_graviton_executors() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo_root().join("examples/aws.yaml")).unwrap();
    let functions = dir.path().join("functions");
    std::fs::create_dir_all(&functions).unwrap();
    for entry in std::fs::read_dir(repo_root().join("examples/functions")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), functions.join(entry.file_name())).unwrap();
    }
    let plan = |instance_type: &str| {
        let text = format!(
            "{}\nimage:\n  uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/engine:1\n  architecture: arm64\n",
            example.replace(
                "instance_type: t3.medium",
                &format!("instance_type: {instance_type}")
            )
        );
        let spec = dir.path().join("aws.yaml");
        std::fs::write(&spec, text).unwrap();
        stackctl()
            .args(["plan", "--offline", "--detailed-exitcode"])
            .arg(&spec)
            .current_dir(dir.path())
            .output()
            .expect("stackctl runs")
    };

    let refused = plan("t3.medium");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`t3.medium` is an x86_64 instance type, but the engine image is arm64"),
        "{stderr}"
    );
    assert!(stderr.contains("`t4g.medium` for arm64"), "{stderr}");

    let planned = plan("c7g.large");
    assert_exit(&planned, 2);
}
