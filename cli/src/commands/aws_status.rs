//! `stackctl status` for `provider: aws` stacks: every resource of the
//! stack with whether it exists and its drift from the spec (from
//! `stacks::aws::plan`), and the live state of what runs: ECS services
//! (desired/running/pending, rollout, task definition), the executors'
//! group (desired/InService, bounds) and Redis (status, endpoint), read
//! with `stacks::aws::wait`'s readers, and the event API's address (the
//! API Gateway stage for `vpc_link`, the load balancer for `public`). Exit 0 when everything exists
//! without drift and runs at least its desired count, 1 otherwise.

use anyhow::Context as _;
use stacks::aws::wait::{self, GroupState, RedisState, ServiceState};
use stacks::aws::{self, Aws, Inputs};
use stacks::graph::plan::Action;
use stacks::graph::{Graph, LogicalId};
use stacks::spec::LoadedSpec;

use crate::output::{self, Exit, Output};

/// Runs `stackctl status` for an aws stack.
pub async fn run(loaded: &LoadedSpec, output: Output) -> anyhow::Result<Exit> {
    super::aws_up::require_credentials(loaded, "status")?;
    let stack = &loaded.spec.stack;
    let graph = Graph::build(loaded)
        .with_context(|| format!("cannot build the resources of stack `{stack}`"))?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .context("cannot load the AWS configuration")?;
    let planned = aws::plan(&aws, &graph, &Inputs::from_spec(&loaded.spec, None))
        .await
        .with_context(|| format!("cannot read the state of stack `{stack}`"))?;
    let live = read_live(&aws, &graph).await?;
    let rows: Vec<serde_json::Value> = planned
        .plan
        .changes
        .iter()
        .map(|c| {
            let id = &c.resource.id;
            let state = match c.action {
                Action::Create => "missing",
                Action::Delete => "not in spec",
                Action::NoChange => "in sync",
                Action::Update | Action::Replace => "drifted",
            };
            let mut row = serde_json::json!({
                "resource": id.to_string(),
                "kind": c.resource.kind.to_string(),
                "name": c.resource.name,
                "exists": planned.observed(id).is_some(),
                "state": state,
                "drift": c.changed_attributes,
                "status": null,
            });
            live.annotate(id.as_str(), &mut row);
            row
        })
        .collect();
    let outputs = planned
        .all_observed()
        .iter()
        .map(|(id, o)| (id.clone(), o.outputs.clone()))
        .collect();
    let event_api = aws::event_api_url(&graph, &outputs);
    let in_sync = !planned.plan.has_changes();
    let ready = live.ready();
    match output {
        Output::Json => output::print_json(&serde_json::json!({
            "stack": stack,
            "provider": "aws",
            "in_sync": in_sync,
            "ready": ready,
            "event_api": event_api,
            "services": live.services_json(),
            "redis": live.redis,
            "resources": rows,
        }))?,
        Output::Human => {
            println!(
                "stack `{stack}` (aws, {}): {}",
                aws.region(),
                if in_sync {
                    "every resource exists as specified"
                } else {
                    "differs from its spec"
                }
            );
            if let Some(url) = &event_api {
                println!("  event API: {url}");
            }
            println!(
                "\n  {:<10} {:>7} {:>7} {:>7}  DETAIL",
                "SERVICE", "DESIRED", "RUNNING", "PENDING"
            );
            for (name, svc) in live.services_json().as_object().into_iter().flatten() {
                println!(
                    "  {name:<10} {:>7} {:>7} {:>7}  {}",
                    svc["desired"],
                    svc["running"],
                    svc["pending"],
                    svc["detail"].as_str().unwrap_or_default()
                );
            }
            if let Some(r) = &live.redis {
                println!(
                    "  redis      {} {}",
                    r.status,
                    r.endpoint.as_deref().unwrap_or("(no endpoint yet)")
                );
            }
            println!();
            for r in &rows {
                let drift = r["drift"]
                    .as_array()
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        let names: Vec<&str> = d.iter().filter_map(|v| v.as_str()).collect();
                        format!(" ({})", names.join(", "))
                    })
                    .unwrap_or_default();
                let status = r["status"]
                    .as_str()
                    .map(|s| format!(" [{s}]"))
                    .unwrap_or_default();
                println!(
                    "  {:<28} {:<24} {}{status}{drift}",
                    r["resource"].as_str().unwrap_or_default(),
                    r["kind"].as_str().unwrap_or_default(),
                    r["state"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    Ok(if in_sync && ready {
        Exit::Ok
    } else {
        Exit::Error
    })
}

/// What runs, read live (absent when the resource does not exist).
struct Live {
    services: Vec<(&'static str, Option<ServiceState>)>,
    executors: Option<GroupState>,
    redis: Option<RedisState>,
}

async fn read_live(aws: &Aws, graph: &Graph) -> anyhow::Result<Live> {
    let name = |id: &str| graph.get(&LogicalId::new(id)).map(|r| r.name.clone());
    let cluster = name("ecs.cluster").unwrap_or_default();
    let service = |label: &'static str| {
        let svc = name(&format!("ecs.service.{label}"));
        let cluster = cluster.clone();
        async move {
            match svc {
                Some(s) => wait::service_state(aws, &cluster, &s).await,
                None => Ok(None),
            }
        }
    };
    let group = name("autoscaling.group.executors");
    let redis = name("elasticache.redis");
    let (event_api, runner, executors, redis) = tokio::join!(
        service("event-api"),
        service("runner"),
        async {
            match &group {
                Some(g) => wait::group_state(aws, g).await,
                None => Ok(None),
            }
        },
        async {
            match &redis {
                Some(r) => wait::redis_state(aws, r).await,
                None => Ok(None),
            }
        },
    );
    let context = "cannot read the live state of the stack";
    Ok(Live {
        services: vec![
            ("event-api", event_api.context(context)?),
            ("runner", runner.context(context)?),
        ],
        executors: executors.context(context)?,
        redis: redis.context(context)?,
    })
}

impl Live {
    /// Every service runs at least its desired count; Redis is available.
    fn ready(&self) -> bool {
        self.services
            .iter()
            .all(|(_, s)| s.as_ref().is_some_and(|s| s.running >= s.desired))
            && self
                .executors
                .as_ref()
                .is_some_and(|g| g.in_service >= g.desired)
            && self.redis.as_ref().is_some_and(|r| r.status == "available")
    }

    /// `{service: {desired, running, pending, ...}}`, stable field names;
    /// a service that does not exist has zero counts and `exists: false`.
    fn services_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (label, s) in &self.services {
            let doc = match s {
                Some(s) => {
                    let primary = s.primary();
                    serde_json::json!({
                        "exists": true,
                        "status": s.status,
                        "desired": s.desired,
                        "running": s.running,
                        "pending": s.pending,
                        "task_definition": s.task_definition,
                        "rollout": primary.and_then(|d| d.rollout_state.clone()),
                        "deployments": s.deployments.len(),
                        "detail": format!(
                            "taskdef {}, rollout {}, {} deployment(s)",
                            wait::revision(&s.task_definition),
                            primary.and_then(|d| d.rollout_state.as_deref()).unwrap_or("-"),
                            s.deployments.len()
                        ),
                    })
                }
                None => missing(),
            };
            out.insert((*label).to_string(), doc);
        }
        let executors = match &self.executors {
            Some(g) => serde_json::json!({
                "exists": true,
                "status": "ACTIVE",
                "desired": g.desired,
                "running": g.in_service,
                "pending": g.instances.saturating_sub(g.in_service),
                "min": g.min,
                "max": g.max,
                "detail": format!("{} instance(s), bounds [{}, {}]", g.instances, g.min, g.max),
            }),
            None => missing(),
        };
        out.insert("executors".into(), executors);
        serde_json::Value::Object(out)
    }

    /// Adds the live status and counts to a resource row.
    fn annotate(&self, id: &str, row: &mut serde_json::Value) {
        if let Some(label) = id.strip_prefix("ecs.service.")
            && let Some((_, Some(s))) = self.services.iter().find(|(l, _)| *l == label)
        {
            row["status"] = s.status.clone().into();
            row["desired"] = s.desired.into();
            row["running"] = s.running.into();
        } else if id == "autoscaling.group.executors"
            && let Some(g) = &self.executors
        {
            row["status"] = format!("{}/{} InService", g.in_service, g.desired).into();
            row["desired"] = g.desired.into();
            row["running"] = g.in_service.into();
        } else if id == "elasticache.redis"
            && let Some(r) = &self.redis
        {
            row["status"] = r.status.clone().into();
        }
    }
}

fn missing() -> serde_json::Value {
    serde_json::json!({
        "exists": false,
        "status": null,
        "desired": 0,
        "running": 0,
        "pending": 0,
        "detail": "does not exist",
    })
}
