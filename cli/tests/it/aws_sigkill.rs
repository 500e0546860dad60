//! Crash convergence of `stackctl up` (issue 3 acceptance): `up` of the
//! example aws stack runs as a real process against the moto server and is
//! SIGKILLed at several points, each after a given number of resources were
//! reported applied on its NDJSON progress stream (so a kill lands while
//! other actions are in flight). The lock the dead process held makes a
//! plain re-run refuse, as documented; so does `--force-unlock` alone (the
//! lock was renewed moments ago: it looks alive); `--force-unlock --yes`
//! breaks it. The last
//! run completes, and then: no resource exists twice (checked per service
//! with SDK calls: names, tags, task definition revisions, launch template
//! versions, Cloud Map namespaces), `plan --detailed-exitcode` exits 0, a
//! further `up` changes nothing, and the lock is free.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{
    assert_exit, aws_on, last_doc, moto_and_registry, repo_root, stackctl_shipping,
};
use harness::{Moto, Registry};

const STACK: &str = "reference";

fn stackctl(moto: &Moto, registry: &Registry, cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = stackctl_shipping(moto, registry, "/bin/echo");
    cmd.args(args)
        .arg(repo_root().join("examples/aws.yaml"))
        .current_dir(cwd);
    cmd
}

/// Runs `up` and SIGKILLs it once `kill_after` more resources were reported
/// applied; returns the keys applied before the kill. Panics if `up` ended
/// on its own first (the kill point would then prove nothing).
fn up_and_kill(mut cmd: Command, kill_after: usize) -> Vec<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stackctl starts");
    let stdout = child.stdout.take().unwrap();
    let mut applied = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let key = event["key"].as_str().unwrap_or_default();
        // Resources only: not the image build or push steps.
        if event["type"] == "progress" && event["phase"] == "ok" && !key.starts_with("ecr.engine.")
        {
            applied.push(key.to_string());
            if applied.len() == kill_after {
                child.kill().expect("SIGKILL");
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        applied.len(),
        kill_after,
        "up ended ({status}) before {kill_after} resources were applied: {applied:?}\n{stderr}"
    );
    assert!(!status.success(), "killed, not finished: {status}");
    applied
}

fn run(mut cmd: Command) -> std::process::Output {
    cmd.output().expect("stackctl runs")
}

/// The names `name` finds in `items` (ARNs or SDK records).
fn names<T>(items: &[T], name: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    items.iter().filter_map(name).map(str::to_string).collect()
}

/// How many times each name occurs; the ones seen more than once.
fn duplicates(names: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_killed_at_several_points_converges_without_duplicates() {
    let (moto, registry) = moto_and_registry().await;
    let cwd = tempfile::tempdir().unwrap();
    let up = |extra: &[&str]| {
        let mut args = vec!["--output", "json", "up", "--no-verify"];
        args.extend_from_slice(extra);
        args.push("-f");
        stackctl(&moto, &registry, cwd.path(), &args)
    };

    // First kill: early, with the first resources (the slow Redis among
    // those started) in flight.
    let first = up_and_kill(up(&[]), 3);

    // The dead process still holds the lock: a plain re-run refuses.
    // (With `--output json` the error is a JSON document on stdout.)
    let refused = run(up(&[]));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("--force-unlock"), "{said}");

    // The dead holder renewed its lease moments ago: it looks alive, and
    // `--force-unlock` alone refuses to break it.
    let alive = run(up(&["--force-unlock"]));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&alive.stdout),
        String::from_utf8_lossy(&alive.stderr)
    );
    assert_eq!(alive.status.code(), Some(1), "{said}");
    assert!(
        said.contains("looks alive") && said.contains("--yes"),
        "{said}"
    );

    // Two more kills further in, each after breaking the dead holder's lock
    // (we know it is dead: we killed it).
    let second = up_and_kill(up(&["--force-unlock", "--yes"]), 10);
    let third = up_and_kill(up(&["--force-unlock", "--yes"]), 10);
    assert!(
        second.iter().all(|k| !first.contains(k)) || third.iter().all(|k| !second.contains(k)),
        "re-runs go on rather than start over: {first:?} / {second:?} / {third:?}"
    );

    // The last run finishes.
    assert_exit(&run(up(&["--force-unlock", "--yes"])), 0);

    // Converged: nothing left to change, nothing more applied.
    let plan = run(stackctl(
        &moto,
        &registry,
        cwd.path(),
        &["plan", "--detailed-exitcode", "-f"],
    ));
    assert_exit(&plan, 0);
    let again = run(up(&[]));
    assert_exit(&again, 0);
    let result = last_doc(&again);
    assert_eq!(
        result["applied"].as_array().map(Vec::len),
        Some(0),
        "{result}"
    );

    // No duplicates, counted independently of stackctl.
    let aws = aws_on(&moto).await;
    assert!(
        stacks::aws::lock::holder(&aws, STACK)
            .await
            .unwrap()
            .is_none(),
        "the lock is free"
    );

    let groups = aws
        .ec2()
        .describe_security_groups()
        .filters(stacks::aws::context::filter("tag:stackctl:stack", STACK))
        .send()
        .await
        .unwrap();
    let group_names = names(groups.security_groups(), |g| g.group_name());
    assert!(!group_names.is_empty());
    assert_eq!(
        duplicates(group_names.clone()),
        BTreeMap::new(),
        "{group_names:?}"
    );

    for family in ["reference-event-api", "reference-runner"] {
        let revisions = aws
            .ecs()
            .list_task_definitions()
            .family_prefix(family)
            .send()
            .await
            .unwrap();
        assert_eq!(
            revisions.task_definition_arns().len(),
            1,
            "one task definition revision for {family}: {:?}",
            revisions.task_definition_arns()
        );
    }
    let clusters = aws.ecs().list_clusters().send().await.unwrap();
    let cluster_names = names(clusters.cluster_arns(), |a| a.rsplit('/').next());
    assert_eq!(duplicates(cluster_names), BTreeMap::new());
    let services = aws
        .ecs()
        .list_services()
        .cluster(STACK)
        .send()
        .await
        .unwrap();
    let service_names = names(services.service_arns(), |a| a.rsplit('/').next());
    assert_eq!(service_names.len(), 2, "{service_names:?}");
    assert_eq!(
        duplicates(service_names.clone()),
        BTreeMap::new(),
        "{service_names:?}"
    );

    let versions = aws
        .ec2()
        .describe_launch_template_versions()
        .launch_template_name("reference-executors")
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.launch_template_versions().len(),
        1,
        "one launch template version"
    );
    let asgs = aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap();
    let asg_names = names(asgs.auto_scaling_groups(), |g| g.auto_scaling_group_name());
    assert_eq!(asg_names, vec!["reference-executors".to_string()]);

    let namespaces = aws.cloudmap().list_namespaces().send().await.unwrap();
    let namespace_names = names(namespaces.namespaces(), |n| n.name());
    assert_eq!(
        namespace_names,
        vec!["reference.internal".to_string()],
        "one Cloud Map namespace"
    );
    let discovery = aws.cloudmap().list_services().send().await.unwrap();
    let discovery_names = names(discovery.services(), |s| s.name());
    assert_eq!(discovery_names, vec!["event-api".to_string()]);

    let queues = aws
        .sqs()
        .list_queues()
        .queue_name_prefix(STACK)
        .send()
        .await
        .unwrap();
    assert_eq!(queues.queue_urls().len(), 4, "{:?}", queues.queue_urls());
    let repos = aws.ecr().describe_repositories().send().await.unwrap();
    assert_eq!(repos.repositories().len(), 1);
    let alarms = aws.cloudwatch().describe_alarms().send().await.unwrap();
    let alarm_names = names(alarms.metric_alarms(), |a| a.alarm_name());
    assert_eq!(duplicates(alarm_names), BTreeMap::new());
}
