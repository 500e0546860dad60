//! `down` of the AWS provider against the moto server. What is left is
//! checked independently of the provider: with plain SDK describe/list
//! calls and with moto's Resource Groups Tagging API (`GetResources` by the
//! stack's tag). Each test starts its own moto.
//!
//! moto never finishes an ElastiCache deletion (the replication group stays
//! `deleting`) and does not implement `DeleteCacheSubnetGroup`: with the
//! example's ElastiCache, `down` reports the group as still deleting and
//! its subnet group and security group as pending (not clean), which these
//! tests assert exactly. Stacks on an external Redis (`state.url`) have no
//! ElastiCache and go down clean.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::aws_describe as describe;
use crate::support::{
    Recorder, connect, example, moto_and_aws, plan_spec, sdk_config, start_moto, up,
};
use harness::FaultProxy;
use stacks::aws::{self, ApplyOptions, Aws, DownOptions, DownReport};
use stacks::graph::{Graph, Kind};
use stacks::local::{Phase, Progress, ProgressEvent};
use stacks::spec::Spec;

const STACK: &str = "reference";

/// The example on an external Redis: no ElastiCache resources.
fn example_without_elasticache() -> Spec {
    let mut spec = example();
    spec.state.url = Some("rediss://redis.example.internal:6379".into());
    spec
}

async fn down(aws: &Aws, spec: &Spec) -> (DownReport, Vec<ProgressEvent>) {
    let graph = Graph::from_spec(spec).expect("graph");
    let progress = Recorder::default();
    let opts = DownOptions {
        // moto's ElastiCache never finishes deleting: do not wait for it.
        wait_timeout: Duration::from_secs(3),
        ..DownOptions::default()
    };
    let report = aws::down(aws, &graph, &opts, &progress)
        .await
        .unwrap_or_else(|e| panic!("down failed: {e}"));
    let events = progress.0.into_inner().unwrap();
    (report, events)
}

/// What moto's tagging API lists with the stack's tag, as `service:type`
/// ARN prefixes and names. The tagging API misses some services (launch
/// templates, Auto Scaling, IAM, Cloud Map): the SDK checks below cover them.
async fn tagged_by_tagging_api(endpoint: &str) -> Vec<String> {
    let body = serde_json::json!({
        "TagFilters": [{"Key": "stackctl:stack", "Values": [STACK]}]
    });
    let answer = reqwest::Client::new()
        .post(endpoint)
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", "ResourceGroupsTaggingAPI_20170126.GetResources")
        // moto routes by the credential scope's service; it checks no signature.
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/tagging/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("GetResources answers");
    assert!(
        answer.status().is_success(),
        "GetResources: {}",
        answer.status()
    );
    let doc: serde_json::Value = answer.json().await.expect("GetResources JSON");
    let arns: Vec<String> = doc["ResourceTagMappingList"]
        .as_array()
        .expect("ResourceTagMappingList")
        .iter()
        .map(|m| m["ResourceARN"].as_str().unwrap_or_default().to_string())
        .collect();
    // moto's tagging API keeps listing deleted ECS clusters and services
    // (INACTIVE, tags kept) and terminated instances: those are judged by
    // their describe calls instead (`remaining` checks ECS clusters).
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(endpoint).await);
    let mut live = Vec::new();
    for arn in arns {
        if arn.contains(":ecs:") && (arn.contains(":cluster/") || arn.contains(":service/")) {
            continue;
        }
        if let Some((_, id)) = arn.split_once(":instance/") {
            let described = ec2
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .unwrap();
            let terminated = described
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .all(|i| {
                    i.state().and_then(|s| s.name())
                        == Some(&aws_sdk_ec2::types::InstanceStateName::Terminated)
                });
            if terminated {
                continue;
            }
        }
        live.push(arn);
    }
    live.sort();
    live
}

/// Independent SDK checks: everything of the stack that still exists,
/// as `kind name` lines (ElastiCache with its status).
async fn remaining(endpoint: &str) -> BTreeSet<String> {
    let config = sdk_config(endpoint).await;
    let mut out = BTreeSet::new();
    let prefix = format!("{STACK}-");

    let ec2 = aws_sdk_ec2::Client::new(&config);
    let sgs = ec2.describe_security_groups().send().await.unwrap();
    for sg in sgs.security_groups() {
        let name = sg.group_name().unwrap_or_default();
        let tagged = sg
            .tags()
            .iter()
            .any(|t| t.key() == Some("stackctl:stack") && t.value() == Some(STACK));
        if tagged || name.starts_with(&prefix) {
            out.insert(format!("sg {name}"));
        }
    }
    let lts = ec2.describe_launch_templates().send().await.unwrap();
    for lt in lts.launch_templates() {
        out.insert(format!(
            "lt {}",
            lt.launch_template_name().unwrap_or_default()
        ));
    }

    let iam = aws_sdk_iam::Client::new(&config);
    for r in iam.list_roles().send().await.unwrap().roles() {
        if r.role_name().starts_with(&prefix) {
            out.insert(format!("role {}", r.role_name()));
        }
    }
    for p in iam
        .list_instance_profiles()
        .send()
        .await
        .unwrap()
        .instance_profiles()
    {
        if p.instance_profile_name().starts_with(&prefix) {
            out.insert(format!("profile {}", p.instance_profile_name()));
        }
    }

    let sqs = aws_sdk_sqs::Client::new(&config);
    for url in sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .unwrap()
        .queue_urls()
    {
        out.insert(format!("queue {}", url.rsplit('/').next().unwrap()));
    }

    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    for g in logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/stackctl/{STACK}/"))
        .send()
        .await
        .unwrap()
        .log_groups()
    {
        out.insert(format!("logs {}", g.log_group_name().unwrap_or_default()));
    }

    let ecs = aws_sdk_ecs::Client::new(&config);
    let clusters = ecs
        .describe_clusters()
        .clusters(STACK)
        .send()
        .await
        .unwrap();
    for c in clusters.clusters() {
        if c.status() == Some("ACTIVE") {
            out.insert(format!("cluster {}", c.cluster_name().unwrap_or_default()));
        }
    }
    // ACTIVE revisions (moto keeps listing a family after its revisions
    // are deregistered and deleted, so families are not the measure).
    let revisions = ecs
        .list_task_definitions()
        .family_prefix(&prefix)
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    for arn in revisions.task_definition_arns() {
        let family = arn.rsplit('/').next().unwrap().rsplit_once(':').unwrap().0;
        out.insert(format!("taskdef {family}"));
    }

    let asg = aws_sdk_autoscaling::Client::new(&config);
    for g in asg
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()
    {
        out.insert(format!(
            "asg {}",
            g.auto_scaling_group_name().unwrap_or_default()
        ));
    }
    for p in asg
        .describe_policies()
        .send()
        .await
        .unwrap()
        .scaling_policies()
    {
        out.insert(format!(
            "asg-policy {}",
            p.policy_name().unwrap_or_default()
        ));
    }

    let scaling = aws_sdk_applicationautoscaling::Client::new(&config);
    let ns = aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs;
    for t in scaling
        .describe_scalable_targets()
        .service_namespace(ns.clone())
        .send()
        .await
        .unwrap()
        .scalable_targets()
    {
        out.insert(format!("target {}", t.resource_id()));
    }
    for p in scaling
        .describe_scaling_policies()
        .service_namespace(ns)
        .send()
        .await
        .unwrap()
        .scaling_policies()
    {
        out.insert(format!("policy {}", p.policy_name()));
    }

    let cw = aws_sdk_cloudwatch::Client::new(&config);
    for a in cw
        .describe_alarms()
        .alarm_name_prefix(&prefix)
        .send()
        .await
        .unwrap()
        .metric_alarms()
    {
        out.insert(format!("alarm {}", a.alarm_name().unwrap_or_default()));
    }

    let ecr = aws_sdk_ecr::Client::new(&config);
    for r in ecr
        .describe_repositories()
        .send()
        .await
        .unwrap()
        .repositories()
    {
        out.insert(format!("ecr {}", r.repository_name().unwrap_or_default()));
    }

    let map = aws_sdk_servicediscovery::Client::new(&config);
    for n in map.list_namespaces().send().await.unwrap().namespaces() {
        out.insert(format!("namespace {}", n.name().unwrap_or_default()));
    }

    let cache = aws_sdk_elasticache::Client::new(&config);
    for g in cache
        .describe_replication_groups()
        .send()
        .await
        .unwrap()
        .replication_groups()
    {
        out.insert(format!(
            "redis {} {}",
            g.replication_group_id().unwrap_or_default(),
            g.status().unwrap_or_default()
        ));
    }
    for g in cache
        .describe_cache_subnet_groups()
        .send()
        .await
        .unwrap()
        .cache_subnet_groups()
    {
        let name = g.cache_subnet_group_name().unwrap_or_default();
        if name.starts_with(&prefix) {
            out.insert(format!("subnet-group {name}"));
        }
    }
    for g in cache
        .describe_cache_parameter_groups()
        .send()
        .await
        .unwrap()
        .cache_parameter_groups()
    {
        let name = g.cache_parameter_group_name().unwrap_or_default();
        if name.starts_with(&prefix) {
            out.insert(format!("parameter-group {name}"));
        }
    }

    let ssm = aws_sdk_ssm::Client::new(&config);
    for p in ssm
        .get_parameters_by_path()
        .path(format!("/stackctl/{STACK}"))
        .recursive(true)
        .send()
        .await
        .unwrap()
        .parameters()
    {
        out.insert(format!("ssm {}", p.name().unwrap_or_default()));
    }
    out
}

/// What moto leaves of a stack with ElastiCache after `down`: the group
/// stays `deleting` and its subnet group and security group wait for it.
fn moto_elasticache_gap() -> BTreeSet<String> {
    [
        "parameter-group reference-redis",
        "redis reference-redis deleting",
        "sg reference-redis",
        "subnet-group reference-redis",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

fn names(items: &[aws::destroy::Item]) -> BTreeSet<String> {
    items.iter().map(|i| i.id.clone()).collect()
}

fn assert_elasticache_gap_reported(report: &DownReport) {
    assert_eq!(
        names(&report.in_progress),
        BTreeSet::from(["elasticache.redis".to_string()]),
        "{report:#?}"
    );
    assert_eq!(
        names(&report.pending),
        BTreeSet::from([
            "ec2.sg.redis".to_string(),
            "elasticache.parameter-group".to_string(),
            "elasticache.subnet-group".to_string()
        ]),
        "{report:#?}"
    );
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    let leftovers: BTreeSet<(String, String)> = report
        .sweep
        .leftovers
        .iter()
        .map(|l| (l.kind.clone(), l.name.clone()))
        .collect();
    assert_eq!(
        leftovers,
        BTreeSet::from([
            (
                "ElastiCache parameter group".to_string(),
                "reference-redis".to_string()
            ),
            (
                "ElastiCache subnet group".to_string(),
                "reference-redis".to_string()
            ),
            ("security group".to_string(), "reference-redis".to_string()),
        ]),
        "{:#?}",
        report.sweep
    );
    assert!(
        report
            .sweep
            .leftovers
            .iter()
            .all(|l| l.reason.contains("waits for elasticache.redis (deleting)")),
        "leftovers say what they wait for: {:#?}",
        report.sweep.leftovers
    );
    assert_eq!(report.sweep.deleting.len(), 1, "{:#?}", report.sweep);
    assert!(!report.clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_after_up_leaves_nothing_with_the_stack_tags() {
    let (moto, aws) = moto_and_aws().await;
    let spec = example();
    let graph = Graph::from_spec(&spec).unwrap();
    up(&aws, &spec).await;
    assert!(remaining(&moto.endpoint()).await.len() > 25);

    let before = aws.calls();
    let started = std::time::Instant::now();
    let (report, events) = down(&aws, &spec).await;
    let elapsed = started.elapsed();
    let after = aws.calls();
    // The benchmark figure (BENCHMARKS.md, "AWS provider on moto").
    eprintln!(
        "down of examples/aws.yaml on moto: {:.2}s, {} reads, {} writes (wait timeout 3s)",
        elapsed.as_secs_f64(),
        after.reads - before.reads,
        after.writes - before.writes
    );

    // Every resource was deleted but the three moto cannot finish.
    let expected: BTreeSet<String> = graph
        .resources()
        .iter()
        .filter(|r| {
            !matches!(
                r.kind,
                Kind::ElastiCacheReplicationGroup
                    | Kind::ElastiCacheSubnetGroup
                    | Kind::ElastiCacheParameterGroup
            ) && r.id.as_str() != "ec2.sg.redis"
        })
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(names(&report.deleted), expected, "{report:#?}");
    assert_elasticache_gap_reported(&report);
    for secret in ["api-token", "event-keys", "redis-auth-token"] {
        assert!(
            report
                .parameters_deleted
                .contains(&format!("/stackctl/{STACK}/{secret}")),
            "{secret}: {:?}",
            report.parameters_deleted
        );
    }
    // One start and one end line per resource acted on.
    let started = events.iter().filter(|e| e.phase == Phase::Start).count();
    assert_eq!(started, report.deleted.len() + report.in_progress.len());

    // Independent checks: only moto's ElastiCache gap is left.
    assert_eq!(remaining(&moto.endpoint()).await, moto_elasticache_gap());
    let tagged = tagged_by_tagging_api(&moto.endpoint()).await;
    assert!(
        tagged
            .iter()
            .all(|arn| arn.contains(":elasticache:") || arn.contains(":security-group/")),
        "only the ElastiCache group, its subnet group and security group keep the tag: {tagged:#?}"
    );
    assert!(
        after.writes > before.writes && after.writes - before.writes < 120,
        "{after:?}"
    );

    // A second `down` deletes nothing more and reports the same.
    let (again, _) = down(&aws, &spec).await;
    assert!(again.deleted.is_empty(), "{again:#?}");
    assert_elasticache_gap_reported(&again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_without_elasticache_is_clean_and_a_second_down_writes_nothing() {
    let (moto, aws) = moto_and_aws().await;
    let spec = example_without_elasticache();
    let graph = Graph::from_spec(&spec).unwrap();
    assert!(!graph.kinds().contains(&Kind::ElastiCacheReplicationGroup));
    up(&aws, &spec).await;

    let before = aws.calls();
    let started = std::time::Instant::now();
    let (report, _) = down(&aws, &spec).await;
    let elapsed = started.elapsed();
    let after = aws.calls();
    eprintln!(
        "down of examples/aws.yaml without ElastiCache on moto: {:.2}s, {} reads, {} writes",
        elapsed.as_secs_f64(),
        after.reads - before.reads,
        after.writes - before.writes
    );
    assert!(report.clean(), "{report:#?}");
    assert_eq!(report.deleted.len(), graph.len(), "{report:#?}");
    assert!(report.sweep.deleting.is_empty(), "{:#?}", report.sweep);
    assert_eq!(remaining(&moto.endpoint()).await, BTreeSet::new());
    assert_eq!(
        tagged_by_tagging_api(&moto.endpoint()).await,
        Vec::<String>::new()
    );

    let before = aws.calls();
    let (again, _) = down(&aws, &spec).await;
    let after = aws.calls();
    assert!(again.clean(), "{again:#?}");
    assert!(again.deleted.is_empty() && again.already_gone.is_empty());
    assert_eq!(
        after.writes,
        before.writes,
        "{:?}",
        after.write_operations()
    );
}

/// Signals after `n` resources were applied.
struct StopAfter {
    applied: AtomicUsize,
    n: usize,
    tx: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Progress for StopAfter {
    fn report(&self, event: ProgressEvent) {
        if event.phase == Phase::Ok
            && self.applied.fetch_add(1, Ordering::SeqCst) + 1 == self.n
            && let Some(tx) = self.tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_after_an_interrupted_up_cleans_up() {
    let (moto, aws) = moto_and_aws().await;
    let spec = example();
    let graph = Graph::from_spec(&spec).unwrap();
    let plan = plan_spec(&aws, &spec).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stop = Arc::new(StopAfter {
        applied: AtomicUsize::new(0),
        n: 14,
        tx: std::sync::Mutex::new(Some(tx)),
    });
    let apply = {
        let aws = aws.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            aws::apply(&aws, &plan, &ApplyOptions::default(), stop.as_ref()).await
        })
    };
    // Interrupt `up` midway, as a crash would: in-flight calls are dropped.
    rx.await.expect("up got 14 resources in");
    apply.abort();
    let _ = apply.await;
    let partial = remaining(&moto.endpoint()).await;
    assert!(
        partial.len() >= 14 && partial.len() < graph.len(),
        "a partial stack: {partial:#?}"
    );

    let (report, _) = down(&aws, &spec).await;
    // moto does not implement DeleteCacheSubnetGroup (HTTP 500): the only
    // failure allowed is that one.
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.id == "elasticache.subnet-group"),
        "{:#?}",
        report.failed
    );
    assert!(report.refused.is_empty(), "{:#?}", report.refused);
    let left = remaining(&moto.endpoint()).await;
    assert!(
        left.is_subset(&moto_elasticache_gap()),
        "only moto's ElastiCache gap may remain: {left:#?}"
    );
    if !partial.iter().any(|r| {
        r.starts_with("redis ")
            || r.starts_with("subnet-group ")
            || r.starts_with("parameter-group ")
    }) {
        assert_eq!(left, BTreeSet::new(), "{report:#?}");
        assert!(report.clean(), "{report:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_resource_with_the_stack_name_is_left_alone_and_reported() {
    let (moto, aws) = moto_and_aws().await;
    let spec = example_without_elasticache();
    up(&aws, &spec).await;
    let config = sdk_config(&moto.endpoint()).await;
    // Someone else's queue and role that happen to have the stack's names:
    // delete the stack's own, then create untagged ones in their place.
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = describe::queue_url(&sqs, "reference-work-dlq").await;
    sqs.delete_queue().queue_url(&url).send().await.unwrap();
    sqs.create_queue()
        .queue_name("reference-work-dlq")
        .send()
        .await
        .unwrap();
    let iam = aws_sdk_iam::Client::new(&config);
    iam.delete_role_policy()
        .role_name("reference-task")
        .policy_name("reference-task")
        .send()
        .await
        .unwrap();
    iam.delete_role()
        .role_name("reference-task")
        .send()
        .await
        .unwrap();
    iam.create_role()
        .role_name("reference-task")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    // And a queue that only shares the prefix: not the stack's, not counted.
    sqs.create_queue()
        .queue_name("reference-unrelated")
        .send()
        .await
        .unwrap();

    let (report, events) = down(&aws, &spec).await;
    let refused: BTreeSet<String> = report.refused.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        refused,
        BTreeSet::from(["iam.role.task".to_string(), "sqs.work-dlq".to_string()]),
        "{report:#?}"
    );
    assert!(
        report
            .refused
            .iter()
            .all(|r| r.reason.contains("not tagged")),
        "{:#?}",
        report.refused
    );
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("left alone") && e.message.contains("reference-work-dlq")),
        "the refusal is on the progress stream"
    );
    // Both are still there, untouched, and reported as left over.
    let left = remaining(&moto.endpoint()).await;
    assert_eq!(
        left,
        BTreeSet::from([
            "queue reference-unrelated".to_string(),
            "queue reference-work-dlq".to_string(),
            "role reference-task".to_string(),
        ])
    );
    let leftovers: BTreeSet<&str> = report
        .sweep
        .leftovers
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        leftovers,
        BTreeSet::from(["reference-task", "reference-work-dlq"]),
        "{:#?}",
        report.sweep
    );
    assert!(
        report
            .sweep
            .unrelated
            .iter()
            .any(|l| l.name == "reference-unrelated"),
        "{:#?}",
        report.sweep
    );
    assert!(!report.clean());
    // Everything else of the stack is gone: the role policy's parent was
    // not the stack's, so it was refused too if it existed (it does not).
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_survive_throttling_and_server_errors() {
    let moto = tokio::task::spawn_blocking(start_moto).await.unwrap();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", moto.port()), 0.10, 20261203)
        .expect("fault proxy starts");
    let aws = connect(&proxy.endpoint()).await;
    let spec = example();
    up(&aws, &spec).await;
    let after_up = proxy.stats();
    let (report, _) = down(&aws, &spec).await;
    let stats = proxy.stats();
    assert!(
        after_up.faults >= 5 && stats.faults > after_up.faults,
        "faults were injected during up and down: {stats:?}"
    );
    assert!(
        stats.throttles > 0 && stats.unavailable > 0 && stats.internal > 0,
        "{stats:?}"
    );
    let share = stats.faults as f64 / stats.requests as f64;
    assert!((0.05..0.16).contains(&share), "about 10%: {stats:?}");
    assert_elasticache_gap_reported(&report);
    assert_eq!(remaining(&moto.endpoint()).await, moto_elasticache_gap());
}

/// Stacks whose graphs together hold every kind (the test below checks
/// that): the example (ElastiCache, Cloud Map), a `public` event API on
/// MemoryDB scaled on its load balancer's requests with alarms mailed
/// through the stack's SNS topic, and a `vpc_link` one.
fn stacks_of_every_kind() -> Vec<Spec> {
    let mut dns = example();
    dns.stack = "every-dns".into();
    let mut public = example();
    public.stack = "every-public".into();
    public.network.event_api = stacks::spec::Connection::Public;
    public.network.plain_http = true;
    public.services.event_api.scaling = Some(
        serde_json::from_value(serde_json::json!({
            "strategy": "alb", "max": 6, "target_requests": 1000
        }))
        .expect("alb scaling"),
    );
    public.state.memorydb = Some(stacks::spec::MemoryDb::default());
    public.observability = Some(
        serde_json::from_value(serde_json::json!({
            "traces": "xray", "alarms": { "email": ["ops@example.com"] }
        }))
        .expect("observability"),
    );
    let mut link = example();
    link.stack = "every-link".into();
    link.network.event_api = stacks::spec::Connection::VpcLink;
    vec![dns, public, link]
}

/// `down` ends with a sweep that lists every service by the stack's tag
/// and names, independently of the graph: it must find every resource `up`
/// created, of every kind (or, for a kind AWS deletes with its parent, that
/// parent), or a resource it misses would leak while `down` says clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_finds_every_resource_up_created_of_every_kind() {
    let (_moto, aws) = moto_and_aws().await;
    let mut kinds = BTreeSet::new();
    for spec in stacks_of_every_kind() {
        up(&aws, &spec).await;
        let graph = Graph::from_spec(&spec).expect("graph");
        kinds.extend(graph.kinds());
        let known = aws::sweep::known_names(&graph);
        let report = aws::sweep::sweep(&aws, &spec.stack, &known, &[])
            .await
            .expect("sweep");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let found: BTreeSet<(String, String)> = report
            .leftovers
            .iter()
            .chain(&report.deleting)
            .map(|l| (l.kind.clone(), l.name.clone()))
            .collect();
        for r in graph.resources() {
            let (kind, name) = match r.kind.deleted_with() {
                None => (r.kind, r.name.clone()),
                Some(parent) => {
                    let p = r
                        .dependencies
                        .iter()
                        .filter_map(|d| graph.get(d))
                        .find(|d| d.kind == parent)
                        .unwrap_or_else(|| panic!("{} depends on its {parent}", r.id));
                    (parent, p.name.clone())
                }
            };
            assert!(
                found.contains(&(kind.label().to_string(), name.clone())),
                "{}: the sweep misses the {kind} `{name}` ({}); it found {found:#?}",
                spec.stack,
                r.id
            );
        }
    }
    let all: BTreeSet<Kind> = Kind::ALL.into_iter().collect();
    assert_eq!(kinds, all, "the stacks above hold every kind");
}
