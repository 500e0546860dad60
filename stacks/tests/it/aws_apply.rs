//! The AWS provider against the moto server: applying the graph of
//! `examples/aws.yaml` creates every resource (checked with SDK describe
//! calls, independently of the provider's readers), the plan after it is
//! empty, a second apply makes no write call, a cpu change replaces the
//! task definition and updates the service, Redis replicas are added before
//! automatic failover is enabled and removed after it is disabled, the
//! engine image's architecture sets the task definitions' and the
//! executors' AMI, and the stack lock excludes a second holder until
//! released or expired. Each test starts its own moto.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::aws_describe as describe;
use crate::support::{Recorder, apply_plan, example, moto_and_aws, plan_spec, planned, sdk_config};
use stacks::arch::Architecture;
use stacks::aws::{self, ApplyOptions, Aws, AwsError, Inputs, StackLock};
use stacks::graph::plan::Action;
use stacks::graph::{Graph, LogicalId};
use stacks::spec::Spec;

async fn up(aws: &Aws, spec: &Spec) -> aws::ApplyReport {
    let plan = plan_spec(aws, spec).await;
    let progress = Recorder::default();
    let report = aws::apply(aws, &plan, &ApplyOptions::default(), &progress)
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let events = progress.0.lock().unwrap();
    let started = events
        .iter()
        .filter(|e| e.phase == stacks::local::Phase::Start)
        .count();
    assert_eq!(
        started,
        report.applied.len(),
        "one start line per applied resource"
    );
    report
}

/// Every member cache cluster of the example's replication group `rg` uses
/// the stack's parameter group.
async fn assert_members_use_the_stacks_parameter_group(
    cache: &aws_sdk_elasticache::Client,
    rg: &aws_sdk_elasticache::types::ReplicationGroup,
) {
    for member in rg.member_clusters() {
        assert_eq!(
            describe::cache_cluster_parameter_group(cache, member)
                .await
                .as_deref(),
            Some("reference-redis"),
            "{member}"
        );
    }
}

fn changes(plan: &aws::AwsPlan) -> Vec<String> {
    plan.plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoChange)
        .map(|c| {
            format!(
                "{:?} {} {:?}",
                c.action, c.resource.id, c.changed_attributes
            )
        })
        .collect()
}

/// Plans `spec` and checks that nothing is to change.
async fn assert_plans_nothing(aws: &Aws, spec: &Spec) {
    let plan = plan_spec(aws, spec).await;
    assert!(!plan.plan.has_changes(), "{:#?}", changes(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_the_example_stack_then_plans_nothing_and_writes_nothing() {
    let (moto, aws) = moto_and_aws().await;
    let spec = example();
    let graph = Graph::from_spec(&spec).unwrap();

    let first = plan_spec(&aws, &spec).await;
    assert_eq!(
        first.plan.summary.create,
        graph.len(),
        "{:?}",
        changes(&first)
    );

    let report = up(&aws, &spec).await;
    assert_eq!(report.applied.len(), graph.len());

    // Independent checks with plain SDK clients.
    let config = sdk_config(&moto.endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = describe::queue_url(&sqs, "reference-events").await;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let redrive = &attrs[&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy];
    assert!(redrive.contains("reference-events-dlq"), "{redrive}");
    assert_eq!(
        attrs[&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout],
        "30"
    );
    let tags = sqs.list_queue_tags().queue_url(&url).send().await.unwrap();
    assert_eq!(
        tags.tags.unwrap()["stackctl:stack"],
        "reference",
        "queues carry the stack tag"
    );

    let ec2 = aws_sdk_ec2::Client::new(&config);
    let sgs = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("reference-redis")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .security_groups
        .unwrap();
    let redis_sg = &sgs[0];
    assert_eq!(redis_sg.ip_permissions().len(), 1);
    assert_eq!(
        redis_sg.ip_permissions()[0].user_id_group_pairs().len(),
        3,
        "Redis is reachable from the event API, runner and executors only"
    );
    assert!(
        redis_sg.ip_permissions_egress().is_empty(),
        "the default egress rule is revoked"
    );

    let iam = aws_sdk_iam::Client::new(&config);
    let policy = describe::role_policy(&iam, "reference-task").await;
    assert!(!policy.contains("\"*\""), "no wildcard resources for tasks");
    let profile = iam
        .get_instance_profile()
        .instance_profile_name("reference-executors")
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap();
    assert_eq!(profile.roles()[0].role_name, "reference-executors");

    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix("/stackctl/reference/")
        .send()
        .await
        .unwrap()
        .log_groups
        .unwrap();
    assert_eq!(groups.len(), 3);
    assert!(groups.iter().all(|g| g.retention_in_days == Some(14)));

    let ecs = aws_sdk_ecs::Client::new(&config);
    let services = describe::services(
        &ecs,
        "reference",
        &["reference-runner", "reference-event-api"],
    )
    .await;
    assert_eq!(services.len(), 2);
    for s in &services {
        let breaker = s
            .deployment_configuration()
            .and_then(|d| d.deployment_circuit_breaker())
            .expect("circuit breaker");
        assert!(breaker.enable && breaker.rollback);
    }
    let td = describe::task_definition(&ecs, "reference-runner").await;
    assert_eq!(td.cpu(), Some("512"));
    let env: BTreeMap<_, _> = td.container_definitions()[0]
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
        .collect();
    // TLS; the auth token comes from the task definition's `secrets`
    // (aws_engine_config checks the whole configuration).
    assert!(env["STACKCTL_ENGINE_CONFIG"].contains("rediss://"));
    assert!(
        !env["STACKCTL_ENGINE_CONFIG"].contains("${"),
        "placeholders resolved"
    );

    let cache = aws_sdk_elasticache::Client::new(&config);
    let rg = describe::replication_group(&cache, "reference-redis").await;
    assert_eq!(rg.transit_encryption_enabled, Some(true));
    assert_eq!(rg.auth_token_enabled, Some(true));
    // A full Redis refuses writes instead of evicting run records, claims
    // or leases: the group's members use the stack's parameter group.
    let set = cache
        .describe_cache_parameters()
        .cache_parameter_group_name("reference-redis")
        .source("user")
        .send()
        .await
        .unwrap();
    let parameters: Vec<(Option<&str>, Option<&str>)> = set
        .parameters()
        .iter()
        .map(|p| (p.parameter_name(), p.parameter_value()))
        .collect();
    assert_eq!(parameters, [(Some("maxmemory-policy"), Some("noeviction"))]);
    assert_members_use_the_stacks_parameter_group(&cache, &rg).await;

    let asg = aws_sdk_autoscaling::Client::new(&config);
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("reference-executors")
        .send()
        .await
        .unwrap()
        .auto_scaling_groups
        .unwrap();
    assert_eq!(groups[0].max_size, Some(4));
    let scaling = aws_sdk_applicationautoscaling::Client::new(&config);
    let targets = scaling
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap()
        .scalable_targets
        .unwrap();
    assert_eq!(targets.len(), 2);
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let alarms = cw
        .describe_alarms()
        .alarm_name_prefix("reference-")
        .send()
        .await
        .unwrap()
        .metric_alarms
        .unwrap();
    assert_eq!(
        alarms.len(),
        8,
        "out and in alarms for three scaled roles, one per dead-letter queue"
    );

    // Plan after apply: nothing to do.
    assert_plans_nothing(&aws, &spec).await;

    // Re-apply: zero write calls.
    let before = aws.calls();
    let report = up(&aws, &spec).await;
    let after = aws.calls();
    assert!(report.applied.is_empty());
    assert_eq!(
        after.writes - before.writes,
        0,
        "writes: {:?}",
        after.write_operations()
    );
    assert!(after.reads > before.reads, "the plan did read");

    // A group on the engine's default parameter group (a stack made before
    // the stack had its own, or changed by hand) is moved back onto it.
    cache
        .modify_replication_group()
        .replication_group_id("reference-redis")
        .cache_parameter_group_name("default.redis7")
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let drift = plan_spec(&aws, &spec).await;
    assert_eq!(
        changes(&drift),
        ["Update elasticache.redis [\"parameter_group\"]"],
        "{:#?}",
        changes(&drift)
    );
    up(&aws, &spec).await;
    let member = &rg.member_clusters()[0];
    assert_eq!(
        describe::cache_cluster_parameter_group(&cache, member)
            .await
            .as_deref(),
        Some("reference-redis")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_runner_cpu_replaces_its_task_definition_and_updates_the_service() {
    let (moto, aws) = moto_and_aws().await;
    let mut spec = example();
    up(&aws, &spec).await;

    spec.services.runner.cpu = 1024;
    let plan = plan_spec(&aws, &spec).await;
    let action = |id: &str| planned(&plan, id);
    assert_eq!(
        action("ecs.taskdef.runner"),
        (Action::Replace, vec!["cpu".to_string()])
    );
    assert_eq!(
        action("ecs.service.runner"),
        (Action::Update, vec!["task_definition".to_string()])
    );
    assert_eq!(action("ecs.taskdef.event-api").0, Action::NoChange);
    assert_eq!(
        plan.plan.summary.replace + plan.plan.summary.update,
        2,
        "{:#?}",
        changes(&plan)
    );

    let report = apply_plan(&aws, &plan).await;
    let new_td = &report.outputs[&LogicalId::new("ecs.taskdef.runner")]["arn"];
    assert!(new_td.ends_with(":2"), "{new_td}");

    let config = sdk_config(&moto.endpoint()).await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    let service = describe::service(&ecs, "reference", "reference-runner").await;
    assert_eq!(service.task_definition(), Some(new_td.as_str()));
    let td = describe::task_definition(&ecs, new_td).await;
    assert_eq!(td.cpu(), Some("1024"));

    assert_plans_nothing(&aws, &spec).await;
}

/// The CPU architecture of the latest revision of `family`.
async fn cpu_architecture(aws: &Aws, family: &str) -> String {
    describe::task_definition(aws.ecs(), family)
        .await
        .runtime_platform
        .and_then(|p| p.cpu_architecture)
        .map(|a| a.as_str().to_string())
        .unwrap_or_default()
}

/// The AMI and instance type of the executors' latest launch template version.
async fn executor_launch(aws: &Aws) -> (String, String) {
    let data = describe::latest_launch_template(aws.ec2(), "reference-executors").await;
    (
        data.image_id.unwrap_or_default(),
        data.instance_type
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
    )
}

/// The AMI the public SSM parameter for `arch` names.
async fn ami_of(aws: &Aws, arch: Architecture) -> String {
    describe::parameter(aws.ssm(), arch.ami_parameter())
        .await
        .value
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_images_architecture_sets_the_task_definitions_and_the_executor_ami() {
    let (_moto, aws) = moto_and_aws().await;
    let mut spec = example();
    let (x86_ami, arm_ami) = (
        ami_of(&aws, Architecture::X86_64).await,
        ami_of(&aws, Architecture::Arm64).await,
    );
    assert_ne!(x86_ami, arm_ami);

    // Nothing says otherwise: x86_64.
    up(&aws, &spec).await;
    for family in ["reference-event-api", "reference-runner"] {
        assert_eq!(cpu_architecture(&aws, family).await, "X86_64", "{family}");
    }
    assert_eq!(
        executor_launch(&aws).await,
        (x86_ami.clone(), "t3.medium".to_string())
    );

    // An arm64 engine image (declared here; `up` learns a built one's from
    // its binary) on Graviton executors.
    spec.executors.instance_type = "t4g.medium".into();
    spec.image.architecture = Some(Architecture::Arm64);
    let graph = Graph::from_spec(&spec).unwrap();
    let inputs = Inputs::from_spec(&spec, None);
    assert_eq!(inputs.architecture, Some(Architecture::Arm64));
    let plan = aws::plan(&aws, &graph, &inputs).await.unwrap();
    assert_eq!(plan.architecture(), Architecture::Arm64);
    let action = |id: &str| planned(&plan, id);
    for id in ["ecs.taskdef.event-api", "ecs.taskdef.runner"] {
        assert_eq!(
            action(id),
            (Action::Replace, vec!["cpu_architecture".to_string()]),
            "{id}: a new revision"
        );
    }
    assert_eq!(
        action("ec2.launch-template.executors"),
        (
            Action::Update,
            vec!["image_id".to_string(), "instance_type".to_string()]
        ),
        "a new launch template version"
    );
    let text = plan.plan.render_text();
    assert!(text.contains("changed: cpu_architecture"), "{text}");

    apply_plan(&aws, &plan).await;
    for family in ["reference-event-api", "reference-runner"] {
        assert_eq!(cpu_architecture(&aws, family).await, "ARM64", "{family}");
    }
    assert_eq!(
        executor_launch(&aws).await,
        (arm_ami, "t4g.medium".to_string())
    );

    // A plan that builds nothing keeps the architecture the stack runs.
    spec.image.architecture = None;
    let after = aws::plan(&aws, &graph, &Inputs::from_spec(&spec, None))
        .await
        .unwrap();
    assert_eq!(after.architecture(), Architecture::Arm64);
    assert!(!after.plan.has_changes(), "{:#?}", changes(&after));
}

#[test]
fn a_built_image_must_have_the_architecture_the_spec_declares() {
    let mut spec = example();
    let built = Inputs::from_spec(&spec, None);
    assert_eq!(built.architecture, None, "known once built");
    let arm = built
        .clone()
        .with_built_image("sha256:00", Architecture::Arm64)
        .unwrap();
    assert_eq!(arm.architecture, Some(Architecture::Arm64));

    spec.image.architecture = Some(Architecture::Arm64);
    let err = Inputs::from_spec(&spec, None)
        .with_built_image("sha256:00", Architecture::X86_64)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the spec says the engine image is arm64 (`image.architecture`), but the engine binary it is built from is x86_64"),
        "{err}"
    );

    // A prebuilt image is x86_64 unless the spec says otherwise.
    spec.image.architecture = None;
    let prebuilt = Inputs::from_spec(&spec, Some("registry.example/engine:1".into()));
    assert_eq!(prebuilt.architecture, Some(Architecture::X86_64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_with_the_stacks_name_but_not_its_tag_is_refused() {
    let (_moto, aws) = moto_and_aws().await;
    aws.sqs()
        .create_queue()
        .queue_name("reference-work")
        .send()
        .await
        .unwrap();
    let spec = example();
    let graph = Graph::from_spec(&spec).unwrap();
    let err = aws::plan(&aws, &graph, &Inputs::from_spec(&spec, None))
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::NotOurs { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("`sqs.work` (reference-work)"), "{text}");
}

/// The lock parameter's SSM version (how often it was written).
async fn lock_version(aws: &Aws, stack: &str) -> i64 {
    describe::parameter(aws.ssm(), &aws::lock::parameter_name(stack))
        .await
        .version
}

/// A holder renews its lease without ever writing the lock itself (so a
/// renewal cannot overwrite another holder's lock), and work under a lock
/// that was lost stops before its next AWS write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_stops_the_apply_before_its_next_write() {
    let (_moto, aws) = moto_and_aws().await;
    let spec = example();
    // A 3 s lease: renewed every second.
    let lock = StackLock::acquire(&aws, &spec.stack, "up", Duration::from_secs(3))
        .await
        .unwrap();
    let renewed = |l: &StackLock| l.info().nonce.clone();
    let nonce = renewed(&lock);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held = aws::lock::holder(&aws, &spec.stack).await.unwrap().unwrap();
        if held.expires_at > lock.info().expires_at {
            assert_eq!(held.nonce, nonce);
            break;
        }
        assert!(Instant::now() < deadline, "the lease was never renewed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        lock_version(&aws, &spec.stack).await,
        1,
        "the lock was rewritten"
    );

    // Another command breaks it (it knows this one is dead).
    aws::lock::force_unlock(&aws, &spec.stack, aws::ForceUnlock::Any)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lock.lost().is_none() {
        assert!(Instant::now() < deadline, "the holder never noticed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let plan = plan_spec(&aws, &spec).await;
    assert!(plan.plan.has_changes());
    let err = lock
        .hold(aws::apply(
            &aws,
            &plan,
            &ApplyOptions::default(),
            &Recorder::default(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::LockLost { .. }), "{err}");
    // Nothing was written: the next plan still creates everything.
    let again = plan_spec(&aws, &spec).await;
    assert_eq!(again.plan.changes.len(), plan.plan.changes.len());
    assert!(
        again
            .plan
            .changes
            .iter()
            .all(|c| c.action == Action::Create),
        "an apply after the lock was lost wrote something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_lock_excludes_a_second_holder_until_released_or_expired() {
    let (_moto, aws) = moto_and_aws().await;
    let ttl = Duration::from_secs(60);
    let first = StackLock::acquire(&aws, "demo", "up", ttl).await.unwrap();
    let err = StackLock::acquire(&aws, "demo", "down", ttl)
        .await
        .unwrap_err();
    match &err {
        AwsError::Locked { command, .. } => assert_eq!(command, "up"),
        other => panic!("expected Locked, got {other}"),
    }
    assert!(err.to_string().contains("--force-unlock"), "{err}");
    first.release().await.unwrap();
    let second = StackLock::acquire(&aws, "demo", "down", ttl).await.unwrap();

    // --force-unlock refuses a lock its holder still renews, unless told
    // the holder is dead (--yes); then it removes it and the holder notices.
    let err = aws::lock::force_unlock(&aws, "demo", aws::ForceUnlock::Stale)
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::LockAlive { .. }), "{err}");
    assert!(err.to_string().contains("--yes"), "{err}");
    let removed = aws::lock::force_unlock(&aws, "demo", aws::ForceUnlock::Any)
        .await
        .unwrap();
    assert_eq!(removed.unwrap().command, "down");
    drop(second);

    // A holder that dies stops renewing: its lock expires by itself.
    let short = Duration::from_secs(3);
    let dead = StackLock::acquire(&aws, "demo", "up", short).await.unwrap();
    drop(dead);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match StackLock::acquire(&aws, "demo", "scale", ttl).await {
            Ok(lock) => {
                assert_eq!(lock.info().command, "scale");
                lock.release().await.unwrap();
                break;
            }
            Err(AwsError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("the expired lock was never broken: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memorydb_is_created_read_back_without_drift_and_resized_in_place() {
    let (moto, aws) = moto_and_aws().await;
    let mut spec = example();
    spec.state.memorydb = Some(stacks::spec::MemoryDb::default());
    let report = up(&aws, &spec).await;
    let endpoint = &report.outputs[&LogicalId::new("memorydb.cluster")]["endpoint"];
    assert!(
        endpoint.starts_with("clustercfg.reference-redis."),
        "{endpoint}"
    );
    assert_plans_nothing(&aws, &spec).await;

    // Independent checks: the cluster uses the stack's ACL, which holds the
    // engine's user, whose password is the stored auth token.
    let config = sdk_config(&moto.endpoint()).await;
    let db = aws_sdk_memorydb::Client::new(&config);
    let cluster = db
        .describe_clusters()
        .cluster_name("reference-redis")
        .send()
        .await
        .unwrap()
        .clusters
        .unwrap()
        .remove(0);
    assert_eq!(cluster.acl_name(), Some("reference-redis"));
    assert_eq!(cluster.tls_enabled(), Some(true));
    assert_eq!(cluster.number_of_shards(), Some(1));
    let acl = db
        .describe_acls()
        .acl_name("reference-redis")
        .send()
        .await
        .unwrap()
        .acls
        .unwrap()
        .remove(0);
    assert_eq!(acl.user_names(), ["reference-engine"]);
    let user = db
        .describe_users()
        .user_name("reference-engine")
        .send()
        .await
        .unwrap()
        .users
        .unwrap()
        .remove(0);
    assert_eq!(
        user.authentication().and_then(|a| a.password_count()),
        Some(1)
    );
    assert_eq!(user.access_string(), Some("on ~* &* +@all"));
    assert!(
        report
            .outputs
            .keys()
            .all(|id| !id.as_str().starts_with("elasticache.")),
        "no ElastiCache beside MemoryDB"
    );

    // More replicas and snapshot days: one update in place.
    spec.state.memorydb = Some(stacks::spec::MemoryDb {
        replicas: 2,
        snapshot_retention_days: 7,
        ..stacks::spec::MemoryDb::default()
    });
    let plan = plan_spec(&aws, &spec).await;
    assert_eq!(
        changes(&plan),
        [r#"Update memorydb.cluster ["replicas", "snapshot_retention_days"]"#],
    );
    apply_plan(&aws, &plan).await;
    assert_plans_nothing(&aws, &spec).await;
}

/// ElastiCache refuses automatic failover and Multi-AZ on a replication
/// group without a replica (the emulator refuses it as AWS does): a stack
/// made with `replicas: 0` gets its replica before they are enabled, and
/// going back to 0 turns them off before the replica is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replicas_come_before_failover_and_go_after_it() {
    use aws_sdk_elasticache::types::{AutomaticFailoverStatus, MultiAzStatus};

    let (moto, aws) = moto_and_aws().await;
    let cache = aws_sdk_elasticache::Client::new(&sdk_config(&moto.endpoint()).await);
    let mut spec = example();
    spec.state.redis.replicas = 0;
    up(&aws, &spec).await;
    let rg = describe::replication_group(&cache, "reference-redis").await;
    assert_eq!(rg.member_clusters().len(), 1, "{:?}", rg.member_clusters());
    assert_eq!(
        rg.automatic_failover,
        Some(AutomaticFailoverStatus::Disabled)
    );
    assert_eq!(rg.multi_az, Some(MultiAzStatus::Disabled));
    assert_plans_nothing(&aws, &spec).await;

    for (replicas, on) in [(1, true), (0, false)] {
        spec.state.redis.replicas = replicas;
        let plan = plan_spec(&aws, &spec).await;
        assert_eq!(
            changes(&plan),
            [r#"Update elasticache.redis ["automatic_failover", "multi_az", "replicas"]"#],
            "replicas: {replicas}"
        );
        apply_plan(&aws, &plan).await;

        let rg = describe::replication_group(&cache, "reference-redis").await;
        assert_eq!(
            rg.member_clusters().len(),
            replicas as usize + 1,
            "replicas: {replicas}: {:?}",
            rg.member_clusters()
        );
        let (failover, multi_az) = if on {
            (AutomaticFailoverStatus::Enabled, MultiAzStatus::Enabled)
        } else {
            (AutomaticFailoverStatus::Disabled, MultiAzStatus::Disabled)
        };
        assert_eq!(
            rg.automatic_failover,
            Some(failover),
            "replicas: {replicas}"
        );
        assert_eq!(rg.multi_az, Some(multi_az), "replicas: {replicas}");
        // Every member, the new replica too, is one of the group's cache
        // clusters on the stack's parameter group.
        assert_members_use_the_stacks_parameter_group(&cache, &rg).await;
        assert_plans_nothing(&aws, &spec).await;
    }
}
