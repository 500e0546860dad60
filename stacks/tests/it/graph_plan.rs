//! Plans: everything a create without observation; diffs against observed
//! resources sorted into update in place, replace, delete and no change;
//! the human rendering (snapshot) and the JSON shape.

use serde_json::{Value, json};
use stacks::graph::plan::{Action, Plan};
use stacks::graph::{Attributes, Graph, Resource};
use stacks::spec::Spec;

fn spec_json() -> Value {
    json!({
        "stack": "demo",
        "provider": "aws",
        "region": "us-east-1",
        "network": { "event_api": "internal_dns" },
        "services": {
            "event-api": {
                "count": 2,
                "scaling": {
                    "strategy": "cpu", "max": 6,
                    "scale_out": { "threshold": 80.0, "adjustment": 1, "cooldown": "180s" },
                    "scale_in": { "threshold": 40.0, "adjustment": -1, "cooldown": "300s" }
                }
            },
            "runner": { "count": 4 }
        },
        "executors": { "min": 1, "desired": 1, "max": 4 },
        "event_keys": { "default": "test-key" }
    })
}

fn graph(v: Value) -> Graph {
    let spec: Spec = serde_json::from_value(v).expect("spec");
    Graph::from_spec(&spec).expect("graph")
}

fn change<'a>(plan: &'a Plan, id: &str) -> &'a stacks::graph::plan::Change {
    plan.changes
        .iter()
        .find(|c| c.resource.id.as_str() == id)
        .unwrap_or_else(|| panic!("no change for {id}"))
}

#[test]
fn without_observation_everything_is_a_create_in_apply_order() {
    let g = graph(spec_json());
    let plan = Plan::create_all(&g);
    assert_eq!(plan.changes.len(), g.len());
    assert_eq!(plan.summary.create, g.len());
    assert!(plan.changes.iter().all(|c| c.action == Action::Create));
    assert!(plan.has_changes());
    let order: Vec<&str> = g.apply_order().iter().map(|r| r.id.as_str()).collect();
    let planned: Vec<&str> = plan
        .changes
        .iter()
        .map(|c| c.resource.id.as_str())
        .collect();
    assert_eq!(planned, order);
    assert_eq!(
        plan.summary_line(),
        format!(
            "Plan: {} to create, 0 to update, 0 to replace, 0 to delete, 0 unchanged.",
            g.len()
        )
    );
}

#[test]
fn diff_sorts_changes_into_update_replace_delete_and_no_change() {
    let desired = graph(spec_json());
    let observed: Vec<Resource> = desired.resources().to_vec();
    let same = Plan::diff(&desired, &observed);
    assert!(!same.has_changes(), "{}", same.render_text());
    assert_eq!(same.summary.no_change, desired.len());

    // What AWS holds: the current spec, plus a leftover of an older one.
    let mut observed = observed;
    let mut leftover = observed
        .iter()
        .find(|r| r.id.as_str() == "logs.runner")
        .unwrap()
        .clone();
    leftover.id = "logs.old-role".into();
    leftover.name = "/stackctl/demo/old-role".into();
    observed.push(leftover);
    for r in &mut observed {
        match &mut r.attributes {
            // Auto-scaling moved the event API; the spec's count must not fight it.
            Attributes::EcsService(s) if s.scaling_managed => s.desired_count = 5,
            Attributes::LogGroup(l) if r.id.as_str() == "logs.event-api" => l.retention_days = 7,
            _ => {}
        }
        if r.id.as_str() == "sqs.work" {
            r.tags.insert("team".into(), "old".into());
        }
    }

    let mut v = spec_json();
    v["services"]["runner"]["cpu"] = json!(1024);
    v["services"]["runner"]["memory"] = json!(2048);
    v["services"]["runner"]["count"] = json!(3);
    let desired = graph(v);
    let plan = Plan::diff(&desired, &observed);

    let td = change(&plan, "ecs.taskdef.runner");
    assert_eq!(td.action, Action::Replace);
    assert_eq!(td.changed_attributes, ["container.memory", "cpu", "memory"]);

    let runner = change(&plan, "ecs.service.runner");
    assert_eq!(
        (runner.action, runner.changed_attributes.as_slice()),
        (Action::Update, &["desired_count".to_string()][..])
    );
    assert_eq!(
        change(&plan, "ecs.service.event-api").action,
        Action::NoChange
    );

    let logs = change(&plan, "logs.event-api");
    assert_eq!(
        (logs.action, logs.changed_attributes.as_slice()),
        (Action::Update, &["retention_days".to_string()][..])
    );

    let work = change(&plan, "sqs.work");
    assert_eq!(
        (work.action, work.changed_attributes.as_slice()),
        (Action::Update, &["tags.team".to_string()][..])
    );

    let last = plan.changes.last().unwrap();
    assert_eq!(
        (last.action, last.resource.id.as_str()),
        (Action::Delete, "logs.old-role")
    );

    assert_eq!(plan.summary.replace, 1);
    assert_eq!(plan.summary.update, 3);
    assert_eq!(plan.summary.delete, 1);
    assert_eq!(plan.summary.no_change, desired.len() - 4);
    insta::assert_snapshot!("plan_diff", plan.render_text());
}

#[test]
fn a_redis_setting_that_cannot_change_in_place_replaces_it_and_reaches_its_users() {
    let observed: Vec<Resource> = graph(spec_json()).resources().to_vec();
    let mut v = spec_json();
    v["state"] = json!({ "redis": { "transit_encryption": false, "auth": false } });
    let plan = Plan::diff(&graph(v), &observed);

    let redis = change(&plan, "elasticache.redis");
    assert_eq!(redis.action, Action::Replace);
    assert_eq!(
        redis.changed_attributes,
        ["auth_token", "transit_encryption"]
    );
    // The engine's Redis URL changes with it: new task definitions, new user data.
    // Without auth the task no longer reads the token from SSM (nor has
    // its parameter's version in the environment); the runner had no other
    // secret, so its whole `secrets` goes.
    for (id, secrets) in [
        (
            "ecs.taskdef.event-api",
            "container.secrets.STACKCTL_ENGINE_REDIS_AUTH_TOKEN",
        ),
        ("ecs.taskdef.runner", "container.secrets"),
    ] {
        let td = change(&plan, id);
        assert_eq!(td.action, Action::Replace, "{id}");
        assert_eq!(
            td.changed_attributes,
            [
                "container.environment.STACKCTL_ENGINE_CONFIG.backend.redis_url",
                "container.environment.STACKCTL_ENGINE_SECRETS_VERSION",
                secrets,
            ],
            "{id}"
        );
    }
    let lt = change(&plan, "ec2.launch-template.executors");
    assert_eq!(
        (lt.action, lt.changed_attributes.as_slice()),
        (Action::Update, &["user_data".to_string()][..])
    );
    // Without auth the roles lose their grant on the token's parameter.
    let mut updated: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Update)
        .map(|c| c.resource.id.as_str())
        .collect();
    updated.sort_unstable();
    assert_eq!(
        updated,
        [
            "ec2.launch-template.executors",
            "iam.policy.execution",
            "iam.policy.executors"
        ]
    );
    assert_eq!(plan.summary.replace, 3);
}

#[test]
fn human_plan_of_a_new_stack() {
    let plan = Plan::create_all(&graph(spec_json()));
    insta::assert_snapshot!("plan_create", plan.render_text());
}

#[test]
fn json_plan_carries_every_field_of_every_resource() {
    let plan = Plan::create_all(&graph(spec_json()));
    let v = serde_json::to_value(&plan).unwrap();
    assert_eq!(v["stack"], "demo");
    assert_eq!(v["summary"]["create"], plan.changes.len());
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), plan.changes.len());
    for c in changes {
        for key in [
            "action",
            "id",
            "kind",
            "name",
            "tags",
            "dependencies",
            "attributes",
            "changed_attributes",
        ] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
        assert_eq!(c["action"], "create");
    }
    let queue = changes.iter().find(|c| c["id"] == "sqs.events").unwrap();
    assert_eq!(queue["kind"], "sqs_queue");
    assert_eq!(queue["name"], "demo-events");
    assert_eq!(queue["dependencies"], json!(["sqs.events-dlq"]));
    assert_eq!(
        queue["attributes"]["redrive"]["dead_letter_target_arn"],
        "${sqs.events-dlq.arn}"
    );
}
