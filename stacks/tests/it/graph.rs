//! The desired AWS resource graph: kinds per connection type, dependency
//! integrity and order, names within AWS limits, tags, IAM scope, and the
//! rendered user data and container environment.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use stacks::graph::placeholder::{self, Placeholder};
use stacks::graph::{Attributes, Graph, GraphError, Kind, LogicalId, TAG_RESOURCE, TAG_STACK};
use stacks::spec::Spec;

/// A spec like `examples/aws.yaml`: cpu scaling on the event API, sqs
/// scaling on the runner and the executors.
fn spec_json(stack: &str, connection: &str) -> Value {
    json!({
        "stack": stack,
        "provider": "aws",
        "region": "us-east-1",
        "tags": { "team": "platform", "stackctl:stack": "spoofed" },
        "network": { "event_api": connection },
        "services": {
            "event-api": {
                "count": 2, "cpu": 512, "memory": 1024,
                "scaling": {
                    "strategy": "cpu", "max": 6,
                    "scale_out": { "threshold": 80.0, "adjustment": 1, "cooldown": "180s" },
                    "scale_in": { "threshold": 40.0, "adjustment": -1, "cooldown": "300s" }
                }
            },
            "runner": {
                "count": 4, "cpu": 512, "memory": 1024,
                "scaling": {
                    "strategy": "sqs", "max": 12, "queue": "events",
                    "scale_out": { "threshold": 10.0, "adjustment": 2, "cooldown": "60s" },
                    "scale_in": { "threshold": 2.0, "adjustment": -1, "cooldown": "300s" }
                }
            }
        },
        "executors": {
            "instance_type": "t3.medium", "min": 1, "desired": 1, "max": 4,
            "scaling": {
                "strategy": "sqs", "max": 4, "queue": "work",
                "scale_out": { "threshold": 10.0, "adjustment": 1, "cooldown": "60s" },
                "scale_in": { "threshold": 2.0, "adjustment": -1, "cooldown": "300s" }
            }
        },
        "event_keys": { "default": "test-key" }
    })
}

fn spec(value: Value) -> Spec {
    serde_json::from_value(value).expect("test spec deserializes")
}

fn graph(stack: &str, connection: &str) -> Graph {
    Graph::from_spec(&spec(spec_json(stack, connection))).expect("graph builds")
}

/// The attributes of the resource `id`, which `g` must hold.
fn attributes<'g>(g: &'g Graph, id: &str) -> &'g Attributes {
    &g.get(&id.into())
        .unwrap_or_else(|| panic!("{id} in the graph"))
        .attributes
}

fn ids(g: &Graph) -> BTreeSet<&str> {
    g.resources().iter().map(|r| r.id.as_str()).collect()
}

const CONNECTIONS: [&str; 4] = ["internal", "internal_dns", "vpc_link", "public"];

/// Kinds every connection type has.
const COMMON: &[Kind] = &[
    Kind::SecurityGroup,
    Kind::IamRole,
    Kind::IamRolePolicy,
    Kind::IamInstanceProfile,
    Kind::LogGroup,
    Kind::SqsQueue,
    Kind::ElastiCacheSubnetGroup,
    Kind::ElastiCacheParameterGroup,
    Kind::ElastiCacheReplicationGroup,
    Kind::EcrRepository,
    Kind::EcsCluster,
    Kind::EcsTaskDefinition,
    Kind::EcsService,
    Kind::LaunchTemplate,
    Kind::AutoScalingGroup,
    Kind::ScalableTarget,
    Kind::ScalingPolicy,
    Kind::AsgScalingPolicy,
    Kind::CloudWatchAlarm,
];

#[test]
fn every_connection_type_has_its_resource_kinds() {
    let extra: BTreeMap<&str, Vec<Kind>> = BTreeMap::from([
        ("internal", vec![]),
        (
            "internal_dns",
            vec![
                Kind::ServiceDiscoveryNamespace,
                Kind::ServiceDiscoveryService,
            ],
        ),
        (
            "vpc_link",
            vec![
                Kind::LoadBalancer,
                Kind::TargetGroup,
                Kind::Listener,
                Kind::ApiGatewayVpcLink,
                Kind::ApiGatewayRestApi,
            ],
        ),
        (
            "public",
            vec![Kind::LoadBalancer, Kind::TargetGroup, Kind::Listener],
        ),
    ]);
    let mut seen = BTreeSet::new();
    for connection in CONNECTIONS {
        let g = graph("demo", connection);
        let expected: BTreeSet<Kind> = COMMON.iter().chain(&extra[connection]).copied().collect();
        assert_eq!(g.kinds(), expected, "kinds for {connection}");
        seen.extend(g.kinds());

        let ids = ids(&g);
        for id in [
            "ec2.sg.event-api",
            "ec2.sg.runner",
            "ec2.sg.executors",
            "ec2.sg.redis",
            "iam.role.execution",
            "iam.role.task",
            "iam.role.runner",
            "iam.role.executors",
            "iam.policy.task",
            "iam.policy.runner",
            "iam.instance-profile.executors",
            "logs.event-api",
            "logs.runner",
            "logs.executors",
            "sqs.events",
            "sqs.events-dlq",
            "sqs.work",
            "sqs.work-dlq",
            "elasticache.subnet-group",
            "elasticache.redis",
            "ecr.engine",
            "ecs.cluster",
            "ecs.taskdef.event-api",
            "ecs.taskdef.runner",
            "ecs.service.event-api",
            "ecs.service.runner",
            "ec2.launch-template.executors",
            "autoscaling.group.executors",
            "scaling.target.event-api",
            "scaling.policy.event-api.out",
            "scaling.policy.event-api.in",
            "cloudwatch.alarm.event-api.out",
            "cloudwatch.alarm.event-api.in",
            "scaling.target.runner",
            "scaling.policy.runner.out",
            "cloudwatch.alarm.runner.in",
            "autoscaling.policy.executors.out",
            "autoscaling.policy.executors.in",
            "cloudwatch.alarm.executors.out",
            "cloudwatch.alarm.executors.in",
        ] {
            assert!(ids.contains(id), "{connection}: missing {id}");
        }
        assert_eq!(
            ids.contains("ec2.sg.lb"),
            connection == "public",
            "{connection}: lb sg"
        );
    }

    // The load balancer pieces follow the connection type.
    let lb = |connection: &str| match &graph("demo", connection)
        .get(&"elb.load-balancer".into())
        .expect("load balancer")
        .attributes
    {
        Attributes::LoadBalancer(lb) => (lb.lb_type.clone(), lb.scheme.clone()),
        other => panic!("unexpected attributes {other:?}"),
    };
    assert_eq!(
        lb("public"),
        ("application".into(), "internet-facing".into())
    );
    assert_eq!(lb("vpc_link"), ("network".into(), "internal".into()));

    // vpc_link: the REST API goes through the link to the load balancer's
    // listener, published by one stage.
    let g = graph("demo", "vpc_link");
    let api = g
        .get(&"apigateway.rest-api".into())
        .expect("REST API for vpc_link");
    assert_eq!(api.name, "demo-api");
    let mut deps: Vec<&str> = api.dependencies.iter().map(LogicalId::as_str).collect();
    deps.sort();
    assert_eq!(deps, ["apigateway.vpc-link", "elb.load-balancer"]);
    match &api.attributes {
        Attributes::ApiGatewayRestApi(a) => {
            assert_eq!(a.endpoint_type, "REGIONAL");
            assert_eq!(a.stage, "v1");
            let base = format!(
                "http://{}:80",
                placeholder::output("elb.load-balancer", "dns_name")
            );
            assert_eq!(
                a.routes,
                BTreeMap::from([
                    ("/e/{proxy+}".to_string(), format!("{base}/e/{{proxy}}")),
                    ("/health".to_string(), format!("{base}/health")),
                    (
                        "/health/{proxy+}".to_string(),
                        format!("{base}/health/{{proxy}}")
                    ),
                ])
            );
            assert_eq!(
                a.vpc_link_id,
                placeholder::output("apigateway.vpc-link", "id")
            );
        }
        other => panic!("unexpected attributes {other:?}"),
    }

    // alb scaling (event API behind a public ALB) brings target tracking.
    let mut v = spec_json("demo", "public");
    v["services"]["event-api"]["scaling"] =
        json!({ "strategy": "alb", "max": 6, "target_requests": 1000 });
    let g = Graph::from_spec(&spec(v)).unwrap();
    let policy = g
        .get(&"scaling.policy.event-api.requests".into())
        .expect("target tracking policy");
    assert!(policy.dependencies.contains(&"elb.target-group".into()));
    seen.extend(g.kinds());

    // `state: {memorydb: ...}` brings MemoryDB instead of ElastiCache.
    let mut v = spec_json("demo", "internal");
    v["state"] = json!({ "memorydb": {} });
    seen.extend(Graph::from_spec(&spec(v)).unwrap().kinds());

    // Alarms that mail addresses bring the stack's SNS topic.
    let mut v = spec_json("demo", "internal");
    v["observability"] = json!({ "alarms": { "email": ["ops@example.com"] } });
    seen.extend(Graph::from_spec(&spec(v)).unwrap().kinds());

    let all: BTreeSet<Kind> = Kind::ALL.into_iter().collect();
    assert_eq!(seen, all, "every kind is produced by some spec");
}

#[test]
fn dependencies_exist_the_graph_is_acyclic_and_elasticache_starts_first() {
    for connection in CONNECTIONS {
        let g = graph("demo", connection);
        let order = g.apply_order();
        assert_eq!(
            order.len(),
            g.len(),
            "{connection}: every resource is ordered once"
        );
        let position: BTreeMap<&LogicalId, usize> =
            order.iter().enumerate().map(|(i, r)| (&r.id, i)).collect();
        assert_eq!(position.len(), g.len());
        for r in g.resources() {
            for dep in &r.dependencies {
                assert!(
                    g.get(dep).is_some(),
                    "{connection}: {} depends on missing {dep}",
                    r.id
                );
                assert!(
                    position[dep] < position[&r.id],
                    "{connection}: {dep} must come before {}",
                    r.id
                );
            }
        }
        // ElastiCache is the slowest: only what it needs comes before it.
        let redis: LogicalId = "elasticache.redis".into();
        let mut ancestors = BTreeSet::new();
        let mut todo = vec![&redis];
        while let Some(id) = todo.pop() {
            for dep in &g.get(id).unwrap().dependencies {
                if ancestors.insert(dep) {
                    todo.push(dep);
                }
            }
        }
        let before: Vec<&LogicalId> = order[..position[&redis]].iter().map(|r| &r.id).collect();
        assert_eq!(
            before.len(),
            ancestors.len(),
            "{connection}: before redis: {before:?}"
        );
        assert!(
            before.iter().all(|id| ancestors.contains(id)),
            "{connection}: {before:?}"
        );

        let depths = g.depths();
        for r in g.resources() {
            let expected = r
                .dependencies
                .iter()
                .map(|d| depths[d] + 1)
                .max()
                .unwrap_or(0);
            assert_eq!(depths[&r.id], expected);
        }
    }
}

#[test]
fn placeholders_refer_to_dependencies_and_known_values() {
    for connection in CONNECTIONS {
        let g = graph("demo", connection);
        for r in g.resources() {
            for p in placeholder::in_value(&r.attributes.to_value()) {
                match &p {
                    Placeholder::Context(name) => {
                        assert!(
                            placeholder::CONTEXT.contains(&name.as_str()),
                            "{}: {p:?}",
                            r.id
                        )
                    }
                    Placeholder::Secret(name) => {
                        // A secret's value, or its parameter's version.
                        let secret = placeholder::version_of(name).unwrap_or(name);
                        assert!(placeholder::SECRETS.contains(&secret), "{}: {p:?}", r.id)
                    }
                    Placeholder::Output { id, output } => {
                        assert!(
                            r.dependencies.contains(id),
                            "{}: {p:?} is not a dependency",
                            r.id
                        );
                        let kind = g.get(id).unwrap().kind;
                        assert!(
                            kind.outputs().contains(&output.as_str()),
                            "{}: {kind:?} has no output {output}",
                            r.id
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn names_follow_the_scheme_and_are_deterministic() {
    let g = graph("demo", "public");
    assert_eq!(g, graph("demo", "public"));
    let name = |id: &str| g.get(&id.into()).unwrap().name.clone();
    for (id, expected) in [
        ("sqs.events", "demo-events"),
        ("sqs.events-dlq", "demo-events-dlq"),
        ("sqs.work", "demo-work"),
        ("sqs.work-dlq", "demo-work-dlq"),
        ("elasticache.redis", "demo-redis"),
        ("ecs.cluster", "demo"),
        ("ecs.service.runner", "demo-runner"),
        ("ecs.taskdef.event-api", "demo-event-api"),
        ("iam.role.task", "demo-task"),
        ("logs.runner", "/stackctl/demo/runner"),
        ("elb.load-balancer", "demo-api"),
        ("elb.target-group", "demo-event-api"),
        ("autoscaling.group.executors", "demo-executors"),
        ("scaling.target.runner", "service/demo/demo-runner"),
        ("cloudwatch.alarm.runner.out", "demo-runner-scale-out"),
    ] {
        assert_eq!(name(id), expected, "{id}");
    }
    assert_eq!(
        graph("demo", "internal_dns")
            .get(&"cloudmap.namespace".into())
            .unwrap()
            .name,
        "demo.internal"
    );
}

#[test]
fn a_twenty_character_stack_name_stays_within_aws_limits() {
    let stack = "abcdefghij-klmnopqrs";
    assert_eq!(stack.len(), 20);
    for connection in CONNECTIONS {
        let g = graph(stack, connection);
        for r in g.resources() {
            if let Some(limit) = r.kind.name_limit() {
                assert!(r.name.len() <= limit, "{}: `{}` over {limit}", r.id, r.name);
            }
            let hard = match r.kind {
                Kind::LoadBalancer | Kind::TargetGroup => 32,
                Kind::ElastiCacheReplicationGroup => 40,
                Kind::IamRole => 64,
                Kind::SqsQueue => 80,
                _ => continue,
            };
            assert!(r.name.len() <= hard, "{}: `{}`", r.id, r.name);
        }
        let redis = g.get(&"elasticache.redis".into()).unwrap();
        assert_eq!(redis.name, redis.name.to_lowercase());
    }

    let err = Graph::from_spec(&spec(spec_json("abcdefghij-klmnopqrst", "public"))).unwrap_err();
    assert!(matches!(err, GraphError::StackName { .. }), "{err}");
    assert!(err.to_string().contains("21 characters"), "{err}");
}

#[test]
fn tags_identify_stack_and_resource_and_keep_spec_tags() {
    let g = graph("demo", "public");
    for r in g.resources() {
        if !r.kind.taggable() {
            assert!(r.tags.is_empty(), "{}", r.id);
            continue;
        }
        assert_eq!(
            r.tags.get(TAG_STACK).map(String::as_str),
            Some("demo"),
            "{}",
            r.id
        );
        assert_eq!(
            r.tags.get(TAG_RESOURCE).map(String::as_str),
            Some(r.id.as_str())
        );
        assert_eq!(r.tags.get("team").map(String::as_str), Some("platform"));
    }
}

#[test]
fn iam_policies_have_no_wildcard_actions_and_each_service_only_its_own_queue_actions() {
    let g = graph("demo", "internal_dns");
    for r in g.resources() {
        let Attributes::IamRolePolicy(policy) = &r.attributes else {
            continue;
        };
        for s in &policy.document.statement {
            for a in &s.action {
                assert!(!a.contains('*'), "{}: action {a}", r.id);
            }
            if s.resource.iter().any(|res| res == "*") {
                assert_eq!(
                    s.action,
                    vec!["ecr:GetAuthorizationToken"],
                    "{}: `*` resource",
                    r.id
                );
            }
        }
    }
    // Each service's role: every queue found and measured, and only the
    // message actions of its own work, on its own queues.
    let q = |name: &str| format!("arn:aws:sqs:${{region}}:${{account}}:demo-{name}");
    let all_queues: Vec<String> = ["events", "events-dlq", "work", "work-dlq"]
        .into_iter()
        .map(q)
        .collect();
    let take = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
    ];
    for (policy, log, expected) in [
        (
            "iam.policy.task",
            "event-api",
            vec![("SendEvents", vec!["sqs:SendMessage"], vec![q("events")])],
        ),
        (
            "iam.policy.runner",
            "runner",
            vec![
                ("TakeEvents", take.to_vec(), vec![q("events")]),
                ("SendJobs", vec!["sqs:SendMessage"], vec![q("work")]),
            ],
        ),
        (
            "iam.policy.executors",
            "executors",
            vec![("TakeJobs", take.to_vec(), vec![q("work")])],
        ),
    ] {
        let Attributes::IamRolePolicy(p) = attributes(&g, policy) else {
            panic!("{policy}");
        };
        let sqs: Vec<(&str, Vec<&str>, Vec<String>)> = p
            .document
            .statement
            .iter()
            .filter(|s| s.action.iter().any(|a| a.starts_with("sqs:")))
            .map(|s| {
                (
                    s.sid.as_deref().unwrap_or_default(),
                    s.action.iter().map(String::as_str).collect(),
                    s.resource.clone(),
                )
            })
            .collect();
        let mut want = vec![(
            "FindQueues",
            vec!["sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
            all_queues.clone(),
        )];
        want.extend(expected);
        assert_eq!(sqs, want, "{policy}");
        let logs: Vec<&str> = p
            .document
            .statement
            .iter()
            .filter(|s| s.sid.as_deref() == Some("Logs"))
            .flat_map(|s| s.resource.iter().map(String::as_str))
            .collect();
        assert_eq!(
            logs,
            [format!(
                "arn:aws:logs:${{region}}:${{account}}:log-group:/stackctl/demo/{log}:*"
            )],
            "{policy}"
        );
    }
    // Each service runs with its own task role.
    for (taskdef, role) in [
        ("ecs.taskdef.event-api", "iam.role.task"),
        ("ecs.taskdef.runner", "iam.role.runner"),
    ] {
        let Attributes::EcsTaskDefinition(td) = attributes(&g, taskdef) else {
            panic!("{taskdef}");
        };
        assert_eq!(td.task_role_arn, format!("${{{role}.arn}}"), "{taskdef}");
    }
}

#[test]
fn alb_scaling_needs_a_public_event_api_and_sqs_scaling_a_known_queue() {
    let mut v = spec_json("demo", "internal_dns");
    v["services"]["event-api"]["scaling"] =
        json!({ "strategy": "alb", "max": 4, "target_requests": 500 });
    let err = Graph::from_spec(&spec(v)).unwrap_err();
    assert!(
        matches!(&err, GraphError::AlbScalingWithoutAlb { target } if target == "event-api"),
        "{err}"
    );

    let mut v = spec_json("demo", "public");
    v["executors"]["scaling"] = json!({ "strategy": "alb", "max": 4, "target_requests": 500 });
    let err = Graph::from_spec(&spec(v)).unwrap_err();
    assert!(
        matches!(&err, GraphError::AlbScalingWithoutAlb { target } if target == "executors"),
        "{err}"
    );

    let mut v = spec_json("demo", "public");
    v["services"]["runner"]["scaling"]["queue"] = json!("jobs");
    let err = Graph::from_spec(&spec(v)).unwrap_err();
    assert!(err.to_string().contains("`jobs`"), "{err}");

    let mut v = spec_json("demo", "public");
    v["provider"] = json!("local");
    assert!(matches!(
        Graph::from_spec(&spec(v)),
        Err(GraphError::NotAws { .. })
    ));
}

#[test]
fn fixed_counts_and_prebuilt_images_leave_out_scaling_and_ecr() {
    let mut v = spec_json("demo", "internal");
    v["services"]["event-api"]
        .as_object_mut()
        .unwrap()
        .remove("scaling");
    v["services"]["runner"]
        .as_object_mut()
        .unwrap()
        .remove("scaling");
    v["executors"].as_object_mut().unwrap().remove("scaling");
    v["image"] = json!({ "uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/engine@sha256:00" });
    let g = Graph::from_spec(&spec(v)).unwrap();
    for kind in [
        Kind::ScalableTarget,
        Kind::ScalingPolicy,
        Kind::AsgScalingPolicy,
        Kind::EcrRepository,
    ] {
        assert!(!g.kinds().contains(&kind), "{kind:?}");
    }
    // The only alarms left watch the dead-letter queues.
    let alarms: Vec<&str> = g
        .resources()
        .iter()
        .filter(|r| r.kind == Kind::CloudWatchAlarm)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(
        alarms,
        ["cloudwatch.alarm.events-dlq", "cloudwatch.alarm.work-dlq"]
    );
    let Attributes::IamRolePolicy(exec) = attributes(&g, "iam.policy.execution") else {
        panic!("execution policy");
    };
    assert!(
        exec.document
            .statement
            .iter()
            .any(|s| s.resource == ["arn:aws:ecr:us-east-1:123456789012:repository/engine"]),
        "pull permission on the prebuilt image's repository"
    );
}

#[test]
fn container_environment_and_user_data_are_rendered_from_templates() {
    let g = graph("demo", "internal_dns");
    let Attributes::EcsTaskDefinition(td) = attributes(&g, "ecs.taskdef.runner") else {
        panic!("task definition");
    };
    assert_eq!(td.container.command, ["--role", "runner"]);
    let env = &td.container.environment;
    // No secret in the plain environment: only the versions of their SSM
    // parameters, so a changed secret makes a new task definition revision.
    for var in [
        "STACKCTL_ENGINE_EVENT_KEYS",
        "STACKCTL_ENGINE_API_TOKEN",
        "STACKCTL_ENGINE_REDIS_AUTH_TOKEN",
    ] {
        assert!(!env.contains_key(var), "{var}: {env:?}");
    }
    // The runner holds only the Redis auth token: the event keys and the
    // runs-API token are the event API's alone.
    assert_eq!(
        env["STACKCTL_ENGINE_SECRETS_VERSION"],
        "redis_auth_token=${secret:redis_auth_token@version}"
    );
    let config: Value =
        serde_json::from_str(&env["STACKCTL_ENGINE_CONFIG"]).expect("config is JSON");
    assert_eq!(config["runner"]["bind"], "0.0.0.0:8289");
    // The runner registers the functions, the canary among them.
    let functions: Vec<&str> = config["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(functions.contains(&"stackctl-canary"), "{functions:?}");
    assert_eq!(config["backend"]["events_queue"], "${sqs.events.url}");
    assert_eq!(config["backend"]["work_queue"], "${sqs.work.url}");
    // TLS, and no auth token in the environment: ECS puts it in
    // STACKCTL_ENGINE_REDIS_AUTH_TOKEN from its SSM parameter.
    assert_eq!(
        config["backend"]["redis_url"],
        "rediss://${elasticache.redis.primary_endpoint}:6379"
    );
    assert!(
        env.values().flat_map(|v| placeholder::in_text(v)).all(
            |p| !matches!(p, Placeholder::Secret(name) if placeholder::version_of(&name).is_none())
        ),
        "no secret value in the environment: {env:?}"
    );
    let arn =
        |name: &str| format!("arn:aws:ssm:${{region}}:${{account}}:parameter/stackctl/demo/{name}");
    assert_eq!(
        td.container.secrets,
        BTreeMap::from([(
            engine::config::ENV_REDIS_AUTH_TOKEN.to_string(),
            arn("redis-auth-token")
        )])
    );
    let Attributes::EcsTaskDefinition(api) = attributes(&g, "ecs.taskdef.event-api") else {
        panic!("task definition");
    };
    assert_eq!(
        api.container.secrets,
        BTreeMap::from([
            (engine::config::ENV_API_TOKEN.to_string(), arn("api-token")),
            (
                engine::config::ENV_EVENT_KEYS.to_string(),
                arn("event-keys")
            ),
            (
                engine::config::ENV_REDIS_AUTH_TOKEN.to_string(),
                arn("redis-auth-token")
            ),
        ])
    );
    // The roles read exactly their parameters, with one action each: ECS
    // the services', the executor hosts only the Redis auth token.
    for (policy, action, resources) in [
        (
            "iam.policy.execution",
            "ssm:GetParameters",
            vec![arn("api-token"), arn("event-keys"), arn("redis-auth-token")],
        ),
        (
            "iam.policy.executors",
            "ssm:GetParameter",
            vec![arn("redis-auth-token")],
        ),
    ] {
        let Attributes::IamRolePolicy(p) = attributes(&g, policy) else {
            panic!("{policy}");
        };
        let ssm: Vec<_> = p
            .document
            .statement
            .iter()
            .filter(|s| s.action.iter().any(|a| a.starts_with("ssm:")))
            .collect();
        assert_eq!(ssm.len(), 1, "{policy}: {ssm:?}");
        assert_eq!(ssm[0].action, [action], "{policy}");
        assert_eq!(ssm[0].resource, resources, "{policy}");
    }
    assert_eq!(config["queues"]["events"]["retention"], "4d");
    // The document is a valid engine configuration on SQS + Redis.
    let parsed = engine::config::Config::from_json(&config.to_string(), "graph")
        .expect("engine accepts the config");
    assert_eq!(parsed.backend.kind(), engine::backend::Kind::SqsRedis);

    let Attributes::LaunchTemplate(lt) = attributes(&g, "ec2.launch-template.executors") else {
        panic!("launch template");
    };
    let ud = &lt.user_data;
    assert!(!ud.contains("{{"), "unrendered template value:\n{ud}");
    assert!(ud.starts_with("#!/bin/bash"));
    assert!(ud.contains("IMAGE='${image}'"));
    assert!(ud.contains("awslogs-group='/stackctl/demo/executors'"));
    let line = ud
        .lines()
        .find(|l| l.starts_with("STACKCTL_ENGINE_CONFIG="))
        .expect("config in the env file");
    let config: Value =
        serde_json::from_str(line.trim_start_matches("STACKCTL_ENGINE_CONFIG=")).unwrap();
    assert_eq!(
        config["executor"]["drivers"]["docker"]["socket"],
        "/var/run/docker.sock"
    );
    // The host reads the secrets from SSM at boot; user data never holds them.
    for name in ["redis_auth_token", "event_keys", "api_token"] {
        assert!(!ud.contains(&format!("${{secret:{name}}}")), "{ud}");
    }
    assert!(
        ud.contains(
            "engine_secret STACKCTL_ENGINE_REDIS_AUTH_TOKEN '/stackctl/demo/redis-auth-token'"
        ),
        "{ud}"
    );
    for var in ["STACKCTL_ENGINE_API_TOKEN", "STACKCTL_ENGINE_EVENT_KEYS"] {
        assert!(
            !ud.contains(&format!("engine_secret {var}")),
            "{var}:\n{ud}"
        );
    }
    assert!(
        ud.contains(
            "\nSTACKCTL_ENGINE_SECRETS_VERSION=redis_auth_token=${secret:redis_auth_token@version}\n"
        ),
        "{ud}"
    );

    assert_valid_bash(ud);
}

/// `bash -n` accepts the script.
fn assert_valid_bash(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data.sh");
    std::fs::write(&path, script).unwrap();
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .expect("bash runs");
    assert!(status.success(), "bash -n rejects the user data:\n{script}");
}

/// The host's Docker socket is root on the host: executors get it only
/// when the spec enables the docker driver.
#[test]
fn the_docker_socket_is_mounted_only_for_the_docker_driver() {
    let user_data = |drivers: Value| {
        let mut v = spec_json("demo", "internal");
        v["executors"]["drivers"] = drivers;
        let g = Graph::from_spec(&spec(v)).unwrap();
        let Attributes::LaunchTemplate(lt) = attributes(&g, "ec2.launch-template.executors") else {
            panic!("launch template");
        };
        lt.user_data.clone()
    };
    let with = user_data(json!(["http", "docker"]));
    assert!(
        with.contains("--volume /var/run/docker.sock:/var/run/docker.sock"),
        "{with}"
    );
    let without = user_data(json!(["http"]));
    assert!(!without.contains("docker.sock"), "{without}");
    assert!(without.contains("--network host"), "{without}");
    assert_valid_bash(&without);
}

#[test]
fn scaling_bounds_come_from_the_strategy_and_default_to_the_count() {
    let mut v = spec_json("demo", "internal");
    v["executors"]["scaling"]["min"] = json!(2);
    v["executors"]["scaling"]["max"] = json!(9);
    let g = Graph::from_spec(&spec(v)).unwrap();
    let Attributes::ScalableTarget(t) = attributes(&g, "scaling.target.runner") else {
        panic!("scalable target");
    };
    assert_eq!(
        (t.min_capacity, t.max_capacity),
        (4, 12),
        "min defaults to the service count"
    );
    assert_eq!(t.resource_id, "service/demo/demo-runner");
    let Attributes::AutoScalingGroup(asg) = attributes(&g, "autoscaling.group.executors") else {
        panic!("asg");
    };
    assert_eq!(
        (asg.min_size, asg.desired_capacity, asg.max_size),
        (2, 2, 9),
        "desired is kept within the bounds"
    );
    assert!(asg.scaling_managed);
    let Attributes::CloudWatchAlarm(alarm) = attributes(&g, "cloudwatch.alarm.executors.out")
    else {
        panic!("alarm");
    };
    assert_eq!(alarm.metric_name, "ApproximateNumberOfMessagesVisible");
    assert_eq!(alarm.dimensions["QueueName"], "demo-work");
    assert_eq!(alarm.threshold, 10.0);
    assert_eq!(
        alarm.alarm_actions,
        ["${autoscaling.policy.executors.out.arn}"]
    );
}

/// A Fargate container sees more CPUs than its task may use: the engine
/// gets one async worker per whole vCPU of its task, at least one.
#[test]
fn the_engines_worker_threads_follow_each_tasks_cpu() {
    let mut v = spec_json("demo", "internal");
    v["services"]["runner"]["cpu"] = json!(4096);
    v["services"]["runner"]["memory"] = json!(8192);
    let g = Graph::from_spec(&spec(v)).unwrap();
    for (id, workers) in [("ecs.taskdef.event-api", "1"), ("ecs.taskdef.runner", "4")] {
        let Attributes::EcsTaskDefinition(td) = attributes(&g, id) else {
            panic!("{id}");
        };
        assert_eq!(
            td.container
                .environment
                .get("TOKIO_WORKER_THREADS")
                .map(String::as_str),
            Some(workers),
            "{id}"
        );
    }
    // Executors run on whole instances: the runtime counts their CPUs.
    let Attributes::LaunchTemplate(lt) = attributes(&g, "ec2.launch-template.executors") else {
        panic!("launch template");
    };
    assert!(
        !lt.user_data.contains("TOKIO_WORKER_THREADS"),
        "{}",
        lt.user_data
    );
}

#[test]
fn task_definitions_follow_the_engine_images_architecture_and_executors_must_run_it() {
    use stacks::arch::{Architecture, ArchitectureError};

    let g = graph("demo", "internal");
    for id in ["ecs.taskdef.event-api", "ecs.taskdef.runner"] {
        let Attributes::EcsTaskDefinition(td) = attributes(&g, id) else {
            panic!("{id}");
        };
        // Known once the image is: the provider resolves it per command.
        assert_eq!(td.cpu_architecture, "${cpu_architecture}", "{id}");
    }
    let Attributes::LaunchTemplate(lt) = attributes(&g, "ec2.launch-template.executors") else {
        panic!("launch template");
    };
    assert_eq!(lt.image_id, "${ami_id}");

    // The example's t3.medium runs x86_64 only.
    assert_eq!(g.check_architecture(Architecture::X86_64), Ok(()));
    let err = g.check_architecture(Architecture::Arm64).unwrap_err();
    assert!(
        matches!(&err, ArchitectureError::InstanceType { instance_type, .. } if instance_type == "t3.medium"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("t3.medium"), "{text}");
    assert!(text.contains("engine image is arm64"), "{text}");
    assert!(text.contains("`t4g.medium` for arm64"), "{text}");

    let mut v = spec_json("demo", "internal");
    v["executors"]["instance_type"] = json!("t4g.medium");
    v["image"] = json!({ "architecture": "arm64" });
    let s = spec(v);
    assert_eq!(s.image.architecture, Some(Architecture::Arm64));
    let g = Graph::from_spec(&s).unwrap();
    assert_eq!(g.check_architecture(Architecture::Arm64), Ok(()));
    let err = g.check_architecture(Architecture::X86_64).unwrap_err();
    assert!(err.to_string().contains("`t3.medium` for x86_64"), "{err}");
}

#[test]
fn the_spec_names_a_prebuilt_images_architecture_as_x86_64_or_arm64() {
    use stacks::arch::Architecture;
    use stacks::spec::{LoadError, load_str};

    let text = |arch: &str| {
        format!(
            "stack: demo\nprovider: aws\nimage:\n  uri: registry.example/engine:1\n  architecture: {arch}\n\
             services:\n  event-api: {{count: 1}}\n  runner: {{count: 1}}\n\
             executors: {{instance_type: t4g.small, min: 1, desired: 1, max: 1}}\nevent_keys: {{default: k}}\n"
        )
    };
    let path = std::path::Path::new("s.yaml");
    let loaded = load_str(path, &text("arm64"), &|_| None).expect("arm64 is valid");
    assert_eq!(loaded.spec.image.architecture, Some(Architecture::Arm64));
    match load_str(path, &text("amd64"), &|_| None) {
        Err(LoadError::Invalid(errors)) => {
            let d = &errors.diagnostics[0];
            assert_eq!(
                (d.path.as_str(), d.line),
                ("image.architecture", 5),
                "{d:?}"
            );
        }
        other => panic!("amd64 must be refused: {:?}", other.map(|l| l.spec.image)),
    }
}

#[test]
fn memorydb_replaces_elasticache_with_a_tls_cluster_the_engine_joins_as_its_own_user() {
    let mut value = spec_json("demo", "internal_dns");
    value["state"] = json!({ "memorydb": { "replicas": 2, "snapshot_retention_days": 3 } });
    let g = Graph::from_spec(&spec(value)).expect("graph builds");
    let ids = ids(&g);
    for id in [
        "memorydb.subnet-group",
        "memorydb.user",
        "memorydb.acl",
        "memorydb.cluster",
        "ec2.sg.redis",
    ] {
        assert!(ids.contains(id), "{id}: {ids:?}");
    }
    assert!(
        !ids.iter().any(|id| id.starts_with("elasticache.")),
        "no ElastiCache beside MemoryDB: {ids:?}"
    );
    let attrs = |id: &str| attributes(&g, id).clone();
    let Attributes::MemoryDbCluster(cluster) = attrs("memorydb.cluster") else {
        panic!("cluster");
    };
    assert_eq!(
        (
            cluster.shards,
            cluster.replicas,
            cluster.snapshot_retention_days
        ),
        (1, 2, 3)
    );
    assert!(
        cluster.tls,
        "TLS: the ACL's user authenticates with a password"
    );
    assert_eq!(cluster.node_type, "db.t4g.small");
    assert_eq!(cluster.acl, "${memorydb.acl.name}");
    assert_eq!(cluster.security_group_ids, ["${ec2.sg.redis.id}"]);
    let Attributes::MemoryDbUser(user) = attrs("memorydb.user") else {
        panic!("user");
    };
    assert_eq!(user.password, "${secret:redis_auth_token}");
    let Attributes::MemoryDbAcl(acl) = attrs("memorydb.acl") else {
        panic!("acl");
    };
    assert_eq!(acl.user_names, ["${memorydb.user.name}"]);
    let user_name = &g.get(&"memorydb.user".into()).unwrap().name;
    assert_eq!(user_name, "demo-engine");
    // The slowest resource starts first, as ElastiCache does.
    let order: Vec<&str> = g.apply_order().iter().map(|r| r.id.as_str()).collect();
    let at = |id: &str| order.iter().position(|o| *o == id).expect(id);
    assert!(at("memorydb.cluster") < at("ecs.cluster"), "{order:?}");

    // Every role joins the cluster as that user over TLS, with the password
    // from its SSM parameter.
    for role in ["event-api", "runner"] {
        let Attributes::EcsTaskDefinition(td) = attrs(&format!("ecs.taskdef.{role}")) else {
            panic!("task definition");
        };
        let config: Value =
            serde_json::from_str(&td.container.environment["STACKCTL_ENGINE_CONFIG"]).unwrap();
        assert_eq!(
            config["backend"]["redis_url"],
            "rediss://demo-engine@${memorydb.cluster.endpoint}:6379",
            "{role}"
        );
        assert_eq!(config["backend"]["redis_cluster"], true, "{role}");
        assert!(
            td.container
                .secrets
                .contains_key(engine::config::ENV_REDIS_AUTH_TOKEN),
            "{role}: {:?}",
            td.container.secrets
        );
    }
}

/// A spec that says nothing of its state gets a Redis that survives a node
/// loss: one replica in another AZ with automatic failover, and daily
/// snapshots.
#[test]
fn a_spec_without_state_settings_gets_a_replicated_redis_with_snapshots() {
    let g = graph("demo", "internal_dns");
    let Attributes::ElastiCacheReplicationGroup(rg) = attributes(&g, "elasticache.redis") else {
        panic!("elasticache.redis is a replication group");
    };
    assert_eq!(
        (
            rg.replicas,
            rg.automatic_failover,
            rg.multi_az,
            rg.snapshot_retention_days
        ),
        (1, true, true, 1),
        "{rg:?}"
    );
}

/// `spec_json` with an `observability` section.
fn observed_spec(connection: &str, observability: Value) -> Spec {
    let mut v = spec_json("demo", connection);
    v["observability"] = observability;
    spec(v)
}

#[test]
fn observability_without_traces_or_alarms_changes_nothing() {
    for connection in CONNECTIONS {
        let plain = graph("demo", connection);
        for section in [json!({}), json!({ "traces": "none", "sample": 0.5 })] {
            let g = Graph::from_spec(&observed_spec(connection, section.clone())).unwrap();
            assert_eq!(g, plain, "{connection} {section}");
        }
    }
}

#[test]
fn xray_puts_a_collector_beside_every_engine_with_the_xray_actions() {
    let g = Graph::from_spec(&observed_spec(
        "internal_dns",
        json!({ "traces": "xray", "sample": 0.25 }),
    ))
    .unwrap();
    for (role, engine_role) in [("event-api", "event-api"), ("runner", "runner")] {
        let Attributes::EcsTaskDefinition(td) = attributes(&g, &format!("ecs.taskdef.{role}"))
        else {
            panic!("task definition");
        };
        let [collector] = td.sidecars.as_slice() else {
            panic!("{role}: one sidecar, got {:?}", td.sidecars);
        };
        assert_eq!(collector.name, "aws-otel-collector");
        assert_eq!(
            collector.image,
            "public.ecr.aws/aws-observability/aws-otel-collector:v0.45.1"
        );
        assert_eq!(collector.command, ["--config=/etc/ecs/ecs-xray.yaml"]);
        assert_eq!(collector.log_group, format!("/stackctl/demo/{role}"));
        assert_eq!(
            td.container.memory + collector.memory,
            td.memory,
            "{role}: the containers share the task's memory"
        );
        assert_eq!(
            td.container.depends_on,
            BTreeMap::from([("aws-otel-collector".to_string(), "START".to_string())])
        );
        let env = &td.container.environment;
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://127.0.0.1:4318");
        assert_eq!(env["OTEL_SERVICE_NAME"], format!("demo-{engine_role}"));
        assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
        assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.25");
    }
    let xray = |policy: &str| -> Vec<String> {
        let Attributes::IamRolePolicy(p) = attributes(&g, policy) else {
            panic!("{policy}");
        };
        p.document
            .statement
            .iter()
            .filter(|s| s.sid.as_deref() == Some("XRay"))
            .flat_map(|s| {
                assert_eq!(s.resource, ["*"], "X-Ray has no resource-level permissions");
                s.action.clone()
            })
            .collect()
    };
    let actions = [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    ];
    for policy in [
        "iam.policy.task",
        "iam.policy.runner",
        "iam.policy.executors",
    ] {
        assert_eq!(xray(policy), actions, "{policy}");
    }
    assert!(
        xray("iam.policy.execution").is_empty(),
        "ECS itself sends no traces"
    );
    let Attributes::LaunchTemplate(lt) = attributes(&g, "ec2.launch-template.executors") else {
        panic!("launch template");
    };
    let collector = lt
        .user_data
        .find("--name 'aws-otel-collector' --restart always")
        .expect("the user data starts the collector");
    let executor = lt
        .user_data
        .find("--name stackctl-executor")
        .expect("and the executor");
    assert!(collector < executor, "the collector starts first");
    for expected in [
        "--network host",
        "'public.ecr.aws/aws-observability/aws-otel-collector:v0.45.1' '--config=/etc/ecs/ecs-xray.yaml'",
        "--log-opt awslogs-group='/stackctl/demo/executors'",
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318",
        "OTEL_SERVICE_NAME=demo-executor",
        "OTEL_TRACES_SAMPLER_ARG=0.25",
    ] {
        assert!(lt.user_data.contains(expected), "{expected}");
    }
    // Without traces, none of it.
    let plain = graph("demo", "internal_dns");
    let Attributes::LaunchTemplate(lt) = attributes(&plain, "ec2.launch-template.executors") else {
        panic!("launch template");
    };
    assert!(!lt.user_data.contains("otel"), "{}", lt.user_data);
}

#[test]
fn alarms_notify_the_stacks_topic_or_the_one_given() {
    let alarm = |g: &Graph, id: &str| -> stacks::graph::CloudWatchAlarm {
        match attributes(g, id) {
            Attributes::CloudWatchAlarm(a) => a.clone(),
            other => panic!("{id}: {other:?}"),
        }
    };
    let topic = placeholder::output("sns.alarms", "arn");
    let g = Graph::from_spec(&observed_spec(
        "public",
        json!({ "alarms": { "email": ["b@example.com", "a@example.com"], "queue_age": "10m" } }),
    ))
    .unwrap();
    let Attributes::SnsTopic(t) = attributes(&g, "sns.alarms") else {
        panic!("topic");
    };
    assert_eq!(t.email, ["a@example.com", "b@example.com"]);
    assert_eq!(g.get(&"sns.alarms".into()).unwrap().name, "demo-alarms");
    for id in [
        "cloudwatch.alarm.events-dlq",
        "cloudwatch.alarm.work-dlq",
        "cloudwatch.alarm.events-age",
        "cloudwatch.alarm.event-api-5xx",
        "cloudwatch.alarm.event-api-lb-5xx",
    ] {
        let a = alarm(&g, id);
        assert_eq!(a.alarm_actions, std::slice::from_ref(&topic), "{id}");
        assert_eq!(a.ok_actions, std::slice::from_ref(&topic), "{id}");
        assert!(a.description.is_some(), "{id}");
        assert!(
            g.get(&id.into())
                .unwrap()
                .dependencies
                .contains(&"sns.alarms".into()),
            "{id}"
        );
    }
    let age = alarm(&g, "cloudwatch.alarm.events-age");
    assert_eq!(
        (
            age.metric_name.as_str(),
            age.threshold,
            age.dimensions["QueueName"].as_str()
        ),
        ("ApproximateAgeOfOldestMessage", 600.0, "demo-events")
    );
    let api = alarm(&g, "cloudwatch.alarm.event-api-5xx");
    assert_eq!(
        (
            api.namespace.as_str(),
            api.metric_name.as_str(),
            api.threshold
        ),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", 5.0)
    );
    assert_eq!(
        api.dimensions["TargetGroup"],
        placeholder::output("elb.target-group", "arn_suffix")
    );
    assert_eq!(api.treat_missing_data.as_deref(), Some("notBreaching"));
    // The load balancer's own 5xx (503 without a healthy target) count apart.
    let lb = alarm(&g, "cloudwatch.alarm.event-api-lb-5xx");
    assert_eq!(
        (lb.metric_name.as_str(), lb.threshold),
        ("HTTPCode_ELB_5XX_Count", 5.0)
    );
    assert_eq!(
        lb.dimensions.keys().collect::<Vec<_>>(),
        ["LoadBalancer"],
        "the whole load balancer, not a target group"
    );

    // API Gateway counts a `vpc_link` event API's errors.
    let arn = "arn:aws:sns:us-east-1:123456789012:team-ops";
    let g = Graph::from_spec(&observed_spec(
        "vpc_link",
        json!({ "alarms": { "topic_arn": arn, "api_errors_per_minute": 2 } }),
    ))
    .unwrap();
    assert!(
        g.get(&"sns.alarms".into()).is_none(),
        "a topic of the user's"
    );
    let api = alarm(&g, "cloudwatch.alarm.event-api-5xx");
    assert_eq!(
        (
            api.namespace.as_str(),
            api.metric_name.as_str(),
            api.threshold
        ),
        ("AWS/ApiGateway", "5XXError", 2.0)
    );
    assert_eq!(api.dimensions["ApiName"], "demo-api");
    assert!(
        g.get(&"cloudwatch.alarm.event-api-lb-5xx".into()).is_none(),
        "API Gateway's count includes its integration's failures"
    );
    assert_eq!(api.alarm_actions, [arn]);
    assert_eq!(alarm(&g, "cloudwatch.alarm.work-dlq").ok_actions, [arn]);

    // Nothing counts an internal event API's answers; without a topic the
    // alarms notify nobody.
    let g = Graph::from_spec(&observed_spec("internal_dns", json!({ "alarms": {} }))).unwrap();
    assert!(g.get(&"cloudwatch.alarm.event-api-5xx".into()).is_none());
    assert!(g.get(&"sns.alarms".into()).is_none());
    assert!(
        alarm(&g, "cloudwatch.alarm.events-age")
            .alarm_actions
            .is_empty()
    );

    // Without the section: only the dead-letter queues' alarms, silent.
    let g = graph("demo", "public");
    for id in [
        "sns.alarms",
        "cloudwatch.alarm.events-age",
        "cloudwatch.alarm.event-api-5xx",
        "cloudwatch.alarm.event-api-lb-5xx",
    ] {
        assert!(g.get(&id.into()).is_none(), "{id}");
    }
    let dlq = alarm(&g, "cloudwatch.alarm.events-dlq");
    assert!(dlq.alarm_actions.is_empty() && dlq.ok_actions.is_empty() && dlq.description.is_none());
}
