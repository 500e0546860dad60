//! `stackctl plan` run as a binary on the examples: JSON lists every
//! resource kind for each connection type, exit codes follow
//! `--detailed-exitcode`, the spec's warnings are shown without stopping the
//! plan, and local or invalid specs are refused.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use crate::support::{on_memorydb, repo_root, stackctl as stackctl_command};
use serde_json::Value;

fn stackctl(args: &[&str]) -> Output {
    stackctl_command()
        .args(args)
        .current_dir(repo_root())
        // The examples read these with defaults; a developer's values must not leak in.
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("stackctl runs")
}

fn json_plan(path: &str) -> Value {
    let out = stackctl(&["plan", path, "--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plan --output json prints JSON")
}

fn kinds(plan: &Value) -> BTreeSet<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_string())
        .collect()
}

const COMMON: &[&str] = &[
    "security_group",
    "iam_role",
    "iam_role_policy",
    "iam_instance_profile",
    "log_group",
    "sqs_queue",
    "elasticache_subnet_group",
    "elasticache_parameter_group",
    "elasticache_replication_group",
    "ecr_repository",
    "ecs_cluster",
    "ecs_task_definition",
    "ecs_service",
    "launch_template",
    "auto_scaling_group",
    "scalable_target",
    "scaling_policy",
    "asg_scaling_policy",
    "cloudwatch_alarm",
];

/// examples/aws.yaml with another event API connection type, next to a copy
/// of its function files.
fn example_with_connection(dir: &Path, connection: &str) -> String {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("examples/aws.yaml")).unwrap();
    assert!(
        text.contains("event_api: internal_dns"),
        "examples/aws.yaml changed its connection line"
    );
    let text = text.replace(
        "event_api: internal_dns",
        &if connection == "public" {
            "event_api: public\n  plain_http: true".to_string()
        } else {
            format!("event_api: {connection}")
        },
    );
    let functions = dir.join("functions");
    std::fs::create_dir_all(&functions).unwrap();
    for entry in std::fs::read_dir(root.join("examples/functions")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), functions.join(entry.file_name())).unwrap();
        }
    }
    let path = dir.join(format!("aws-{connection}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// What a person reads: the example's plan offline (no account needed),
/// and the same stack on MemoryDB. The step URL is set so the loopback
/// warnings (stderr) stay out of the way.
#[test]
fn the_examples_plan_reads_as_the_snapshots_say() {
    let dir = tempfile::tempdir().unwrap();
    let memorydb = example_with_connection(dir.path(), "internal_dns");
    let text = std::fs::read_to_string(&memorydb).unwrap();
    std::fs::write(&memorydb, on_memorydb(&text)).unwrap();
    for (name, spec) in [
        ("elasticache", "examples/aws.yaml"),
        ("memorydb", &memorydb),
    ] {
        let out = stackctl_command()
            .args(["plan", "--offline", spec])
            .current_dir(repo_root())
            .env("AWS_REGION", "us-east-1")
            .env("STEP_URL", "http://steps.internal:8300")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        insta::assert_snapshot!(name, String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn json_plan_of_the_aws_example_lists_every_resource_kind() {
    let plan = json_plan("examples/aws.yaml");
    let mut expected: BTreeSet<String> = COMMON.iter().map(|k| k.to_string()).collect();
    expected.extend([
        "service_discovery_namespace".into(),
        "service_discovery_service".into(),
    ]);
    assert_eq!(kinds(&plan), expected);

    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(
        plan["summary"]["create"].as_u64().unwrap() as usize,
        changes.len()
    );
    for c in changes {
        assert_eq!(c["action"], "create");
        assert!(c["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(c["attributes"].is_object(), "{c}");
        assert!(c["dependencies"].is_array());
    }
    let ids: BTreeSet<&str> = changes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    for c in changes {
        for dep in c["dependencies"].as_array().unwrap() {
            assert!(
                ids.contains(dep.as_str().unwrap()),
                "{} depends on unknown {dep}",
                c["id"]
            );
        }
    }
}

#[test]
fn plan_shows_the_specs_warnings_and_goes_on() {
    let plan = |args: &[&str], step_url: Option<&str>| {
        let mut command = stackctl_command();
        command
            .args(["plan", "--offline", "examples/aws.yaml"])
            .args(args)
            .current_dir(repo_root())
            .env_remove("STEP_URL")
            .env("AWS_REGION", "us-east-1");
        if let Some(url) = step_url {
            command.env("STEP_URL", url);
        }
        let out = command.output().expect("stackctl runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };

    let (stdout, stderr) = plan(&[], None);
    assert!(stdout.starts_with("Plan for stack `reference`"), "{stdout}");
    assert!(
        stderr.contains("warning: step `charge` of function `charge-pro-plan` calls `http://127.0.0.1:8300/charge`, a loopback address")
            && stderr.contains("--> examples/functions/billing.yaml:14:14")
            && stderr.contains("4 warnings"),
        "{stderr}"
    );
    let (stdout, _) = plan(&["--output", "json"], None);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["warnings"].as_array().map(Vec::len), Some(4), "{doc}");
    assert_eq!(
        doc["warnings"][0]["file"],
        "examples/functions/billing.yaml"
    );
    assert!(doc["changes"].as_array().is_some_and(|c| !c.is_empty()));

    let internal = Some("http://steps.internal:8300");
    let (_, stderr) = plan(&[], internal);
    assert!(!stderr.contains("warning"), "{stderr}");
    let (stdout, _) = plan(&["--output", "json"], internal);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["warnings"], serde_json::json!([]));
}

#[test]
fn each_connection_type_brings_its_load_balancer_pieces() {
    let dir = tempfile::tempdir().unwrap();
    for (connection, extra) in [
        ("internal", &[][..]),
        ("public", &["load_balancer", "target_group", "listener"][..]),
        (
            "vpc_link",
            &[
                "load_balancer",
                "target_group",
                "listener",
                "api_gateway_vpc_link",
                "api_gateway_rest_api",
            ][..],
        ),
    ] {
        let path = example_with_connection(dir.path(), connection);
        let plan = json_plan(&path);
        let mut expected: BTreeSet<String> = COMMON.iter().map(|k| k.to_string()).collect();
        expected.extend(extra.iter().map(|k| k.to_string()));
        assert_eq!(kinds(&plan), expected, "{connection}");
    }
}

#[test]
fn human_plan_exit_codes_and_refusals() {
    let out = stackctl(&["plan", "-f", "examples/aws.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("Plan for stack `reference` (region us-east-1)"),
        "{text}"
    );
    assert!(text.contains("+   sqs.events "), "{text}");
    assert!(text.contains("after: sqs.events-dlq"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("Plan: ")
            && l.ends_with(" to create, 0 to update, 0 to replace, 0 to delete, 0 unchanged.")),
        "{text}"
    );

    let out = stackctl(&["plan", "examples/aws.yaml", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "changes exit 2 with --detailed-exitcode"
    );

    let out = stackctl(&["plan", "examples/local.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("needs `provider: aws`"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "stack: demo\nprovider: aws\nservices: 3\n").unwrap();
    let bad = bad.to_str().unwrap();
    let out = stackctl(&["plan", bad]);
    assert_eq!(out.status.code(), Some(2), "an invalid spec exits 2");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.yaml:"),
        "errors carry file:line:col"
    );
    let out = stackctl(&["plan", bad, "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "with --detailed-exitcode, 2 only means changes"
    );

    let out = stackctl(&["plan", "does-not-exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_public_event_api_without_a_certificate_is_refused_with_the_place_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = example_with_connection(dir.path(), "public");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\n  plain_http: true", "")).unwrap();
    let out = stackctl(&["plan", &path]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The place: the `event_api` line of the spec (line 26 of the example).
    assert!(shown.contains(&format!("{path}:26:")), "{shown}");
    assert!(
        shown.contains("a `public` event API needs HTTPS"),
        "{shown}"
    );
    assert!(
        shown.contains("certificate_arn") && shown.contains("plain_http: true"),
        "the fix names both ways: {shown}"
    );
    let out = stackctl(&["plan", &path, "--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["errors"][0]["path"], "network.event_api", "{doc}");
    assert_eq!(doc["errors"][0]["line"], 26, "{doc}");
}
