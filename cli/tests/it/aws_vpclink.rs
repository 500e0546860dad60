//! `stackctl up`, `plan`, `status` and `down` of a `network.event_api:
//! vpc_link` stack against the moto server: the example spec with that
//! connection type, a prebuilt image and an external Redis (moto never
//! finishes an ElastiCache deletion), written to a temp dir. `up` creates
//! the VPC link targeting the network load balancer, the REST API with its
//! proxy integration through the link and the stage, and prints the
//! stage's invoke URL, which `status` shows too; a second `up` makes no
//! write; `plan --detailed-exitcode` exits 0; `down --yes` exits 0, its
//! sweep (every service by tag and name) finds nothing, and neither link
//! nor API is left. Checked with SDK calls of the test's own.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{moto_for_up, ndjson, repo_root, stackctl as stackctl_command};
use harness::Moto;
use stacks::aws::Aws;

/// Writes the vpc_link variant of examples/aws.yaml (and its functions)
/// into `dir`; returns the spec's path.
fn write_spec(dir: &Path) -> PathBuf {
    let examples = repo_root().join("examples");
    let text = std::fs::read_to_string(examples.join("aws.yaml")).unwrap();
    for needle in ["event_api: internal_dns", "\nstate:\n", "\nnetwork:\n"] {
        assert!(text.contains(needle), "examples/aws.yaml has {needle:?}");
    }
    let text = text
        .replace("event_api: internal_dns", "event_api: vpc_link")
        .replace(
            "\nstate:\n",
            "\nstate:\n  url: rediss://redis.example.internal:6379\n",
        )
        .replace(
            "\nnetwork:\n",
            "\nimage:\n  uri: public.ecr.aws/stackctl/engine:test\n\nnetwork:\n",
        );
    std::fs::create_dir_all(dir.join("functions")).unwrap();
    for f in std::fs::read_dir(examples.join("functions")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join("functions").join(f.file_name())).unwrap();
    }
    let path = dir.join("aws.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn stackctl(moto: &Moto, spec: &Path, args: &[&str]) -> Output {
    let mut cmd = stackctl_command();
    moto.configure_command(&mut cmd);
    cmd.args(args)
        .arg("-f")
        .arg(spec)
        .current_dir(spec.parent().unwrap())
        .output()
        .expect("stackctl runs")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_link_stack_goes_up_converges_and_comes_down() {
    // Services report running, but nothing registers in the target group
    // here (no task runs): `up` does not wait (--no-wait). The emulated data
    // plane, where tasks run, is where `up` waits for the target group's
    // health (aws_emulated).
    let moto = moto_for_up().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path());

    let up = stackctl(
        &moto,
        &spec,
        &["--output", "json", "up", "--no-verify", "--no-wait"],
    );
    ok(&up, "up");
    let lines = ndjson(&up);
    let result = lines.last().expect("a result line");
    assert_eq!(result["type"], "result", "{lines:?}");
    let applied: Vec<&str> = result["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "create")
        .filter_map(|a| a["resource"].as_str())
        .collect();
    for id in [
        "elb.load-balancer",
        "apigateway.vpc-link",
        "apigateway.rest-api",
    ] {
        assert!(applied.contains(&id), "{id} created: {result}");
    }

    // Checked with the SDK.
    let aws = Aws::with_endpoint(&moto.endpoint(), harness::REGION, "testing", "testing")
        .await
        .unwrap();
    let lbs = aws
        .elbv2()
        .describe_load_balancers()
        .names("reference-api")
        .send()
        .await
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("network"));
    let gateway = aws.apigateway();
    let links = gateway.get_vpc_links().send().await.unwrap();
    assert_eq!(links.items().len(), 1, "{links:?}");
    let link = &links.items()[0];
    assert_eq!(
        link.target_arns(),
        [lb.load_balancer_arn().unwrap().to_string()]
    );
    let apis = gateway.get_rest_apis().send().await.unwrap();
    assert_eq!(apis.items().len(), 1, "{apis:?}");
    let api_id = apis.items()[0].id().unwrap().to_string();
    let resources = gateway
        .get_resources()
        .rest_api_id(&api_id)
        .send()
        .await
        .unwrap();
    let proxy = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/e/{proxy+}"))
        .unwrap_or_else(|| panic!("{resources:?}"));
    let integration = gateway
        .get_integration()
        .rest_api_id(&api_id)
        .resource_id(proxy.id().unwrap())
        .http_method("ANY")
        .send()
        .await
        .unwrap();
    assert_eq!(
        integration.connection_type().map(|t| t.as_str()),
        Some("VPC_LINK")
    );
    assert_eq!(
        integration.uri(),
        Some(format!("http://{}:80/e/{{proxy}}", lb.dns_name().unwrap()).as_str())
    );
    let stage = gateway
        .get_stage()
        .rest_api_id(&api_id)
        .stage_name("v1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stage
            .variables()
            .and_then(|v| v.get("vpcLinkId"))
            .map(String::as_str),
        link.id()
    );
    let url = format!("https://{api_id}.execute-api.us-east-1.amazonaws.com/v1");
    assert_eq!(result["event_api"], url.as_str(), "{result}");

    // Converged: a second `up` writes nothing, `plan` sees no change.
    let again = stackctl(
        &moto,
        &spec,
        &["--output", "json", "up", "--no-verify", "--no-wait"],
    );
    ok(&again, "second up");
    let result = ndjson(&again).pop().expect("a result line");
    assert_eq!(
        result["applied"].as_array().map(Vec::len),
        Some(0),
        "{result}"
    );
    assert_eq!(result["aws_calls"]["writes"], 0, "{result}");
    assert_eq!(result["event_api"], url.as_str(), "{result}");
    let plan = stackctl(&moto, &spec, &["plan", "--detailed-exitcode"]);
    ok(&plan, "plan --detailed-exitcode");

    let status = stackctl(&moto, &spec, &["--output", "json", "status"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| {
        panic!(
            "status prints JSON ({e}): {}",
            String::from_utf8_lossy(&status.stderr)
        )
    });
    assert_eq!(doc["in_sync"], true, "{doc}");
    assert_eq!(doc["event_api"], url.as_str(), "{doc}");

    let down = stackctl(
        &moto,
        &spec,
        &["--output", "json", "down", "--yes", "--wait-timeout", "30s"],
    );
    ok(&down, "down --yes");
    assert!(
        gateway
            .get_vpc_links()
            .send()
            .await
            .unwrap()
            .items()
            .is_empty()
    );
    assert!(
        gateway
            .get_rest_apis()
            .send()
            .await
            .unwrap()
            .items()
            .is_empty()
    );
    // The sweep (every service, by tag and name) found nothing left.
    let result = ndjson(&down).pop().expect("a result line");
    assert_eq!(result["clean"], true, "{result}");
}
