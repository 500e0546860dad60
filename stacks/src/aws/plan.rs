//! Observed state and the plan: every resource the stack has or could have
//! is read from AWS by its deterministic name (concurrently), then the
//! desired graph, with placeholders resolved from what was read, is diffed
//! against it field by field.

use std::collections::BTreeMap;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::context::{Aws, Env};
use super::error::{AwsError, Result};
use super::kinds::{self, Ctx, Observed, Target};
use super::resolve::{self, Inputs, Outputs, Resolver, Secrets};
use super::secrets;
use crate::arch::Architecture;
use crate::graph::plan::{Action, Plan};
use crate::graph::{Graph, Kind, LogicalId, Resource};

/// Reads in flight at once while observing.
const READ_PARALLELISM: usize = 8;

/// A plan together with what it was computed from, which `apply` needs.
#[derive(Debug, Clone)]
pub struct AwsPlan {
    /// The changes.
    pub plan: Plan,
    pub(crate) graph: Graph,
    pub(crate) observed: BTreeMap<LogicalId, Observed>,
    pub(crate) env: Env,
    pub(crate) ami: Option<String>,
    pub(crate) image: Option<String>,
    pub(crate) architecture: Architecture,
    pub(crate) inputs: Inputs,
}

impl AwsPlan {
    /// What was found for a resource.
    pub fn observed(&self, id: &LogicalId) -> Option<&Observed> {
        self.observed.get(id)
    }

    /// The engine image the stack runs once applied (`repo@sha256:...`
    /// when built from source).
    pub fn engine_image(&self) -> Option<&str> {
        self.image.as_deref()
    }

    /// The engine image's CPU architecture, which the task definitions and
    /// the executors' AMI follow.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// Every resource found, by logical id.
    pub fn all_observed(&self) -> &BTreeMap<LogicalId, Observed> {
        &self.observed
    }
}

/// Every resource a stack of this name could have, beyond its current
/// graph: what a spec change can leave behind (found again to delete it).
pub(crate) fn candidates(stack: &str) -> Vec<Target> {
    let d = |s: &str| format!("{stack}-{s}");
    let mut out: Vec<(String, Kind, String)> = vec![
        ("ec2.sg.lb".into(), Kind::SecurityGroup, d("lb")),
        ("ec2.sg.redis".into(), Kind::SecurityGroup, d("redis")),
        (
            "elasticache.subnet-group".into(),
            Kind::ElastiCacheSubnetGroup,
            d("redis"),
        ),
        (
            "elasticache.parameter-group".into(),
            Kind::ElastiCacheParameterGroup,
            d("redis"),
        ),
        (
            "elasticache.redis".into(),
            Kind::ElastiCacheReplicationGroup,
            d("redis"),
        ),
        (
            "memorydb.subnet-group".into(),
            Kind::MemoryDbSubnetGroup,
            d("redis"),
        ),
        ("memorydb.user".into(), Kind::MemoryDbUser, d("engine")),
        ("memorydb.acl".into(), Kind::MemoryDbAcl, d("redis")),
        ("memorydb.cluster".into(), Kind::MemoryDbCluster, d("redis")),
        ("ecr.engine".into(), Kind::EcrRepository, d("engine")),
        (
            "cloudmap.namespace".into(),
            Kind::ServiceDiscoveryNamespace,
            format!("{stack}.internal"),
        ),
        (
            "cloudmap.service".into(),
            Kind::ServiceDiscoveryService,
            "event-api".into(),
        ),
        (
            "apigateway.rest-api".into(),
            Kind::ApiGatewayRestApi,
            d("api"),
        ),
        (
            "apigateway.vpc-link".into(),
            Kind::ApiGatewayVpcLink,
            d("api"),
        ),
        ("sns.alarms".into(), Kind::SnsTopic, d("alarms")),
        (
            "cloudwatch.alarm.events-age".into(),
            Kind::CloudWatchAlarm,
            d("events-age"),
        ),
        (
            "cloudwatch.alarm.event-api-5xx".into(),
            Kind::CloudWatchAlarm,
            d("event-api-5xx"),
        ),
        (
            "cloudwatch.alarm.event-api-lb-5xx".into(),
            Kind::CloudWatchAlarm,
            d("event-api-lb-5xx"),
        ),
    ];
    for svc in ["event-api", "runner"] {
        out.push((
            format!("scaling.target.{svc}"),
            Kind::ScalableTarget,
            format!("service/{stack}/{stack}-{svc}"),
        ));
        out.push((
            format!("scaling.policy.{svc}.requests"),
            Kind::ScalingPolicy,
            d(&format!("{svc}-requests")),
        ));
        for side in ["out", "in"] {
            out.push((
                format!("scaling.policy.{svc}.{side}"),
                Kind::ScalingPolicy,
                d(&format!("{svc}-scale-{side}")),
            ));
        }
    }
    for side in ["out", "in"] {
        out.push((
            format!("autoscaling.policy.executors.{side}"),
            Kind::AsgScalingPolicy,
            d(&format!("executors-scale-{side}")),
        ));
    }
    for svc in ["event-api", "runner", "executors"] {
        for side in ["out", "in"] {
            out.push((
                format!("cloudwatch.alarm.{svc}.{side}"),
                Kind::CloudWatchAlarm,
                d(&format!("{svc}-scale-{side}")),
            ));
        }
    }
    out.into_iter()
        .map(|(id, kind, name)| Target {
            id: LogicalId::new(id),
            kind,
            name,
        })
        .collect()
}

/// Reads every resource of the graph, and every other resource the stack
/// could have left behind, from AWS.
pub(crate) async fn observe(ctx: &Ctx, graph: &Graph) -> Result<BTreeMap<LogicalId, Observed>> {
    let mut targets: Vec<Target> = graph
        .resources()
        .iter()
        .map(|r| Target {
            id: r.id.clone(),
            kind: r.kind,
            name: r.name.clone(),
        })
        .collect();
    targets.extend(
        candidates(&graph.stack)
            .into_iter()
            .filter(|c| graph.get(&c.id).is_none()),
    );
    let limit = std::sync::Arc::new(Semaphore::new(READ_PARALLELISM));
    let mut set = JoinSet::new();
    for t in targets {
        let ctx = ctx.clone();
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let found = kinds::read(&ctx, &t).await;
            (t, found)
        });
    }
    let mut observed = BTreeMap::new();
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (t, found) = joined.expect("observe tasks do not panic");
        match found {
            Ok(Some(o)) => {
                observed.insert(t.id, o);
            }
            Ok(None) => {}
            // Something with our name that is not ours is only a problem
            // when the graph wants that name.
            Err(AwsError::NotOurs { .. }) if graph.get(&t.id).is_none() => {}
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(observed),
        1 => Err(errors.remove(0)),
        _ => Err(AwsError::Failed(errors)),
    }
}

/// Reads the stack's state from AWS and plans the changes that bring it to
/// `graph`.
pub async fn plan(aws: &Aws, graph: &Graph, inputs: &Inputs) -> Result<AwsPlan> {
    let env = aws.env().await?.clone();
    let ctx = Ctx {
        aws: aws.clone(),
        stack: graph.stack.clone(),
        env: env.clone(),
    };
    let observed = observe(&ctx, graph).await?;
    let redis = secrets::redis_requiring_token(&observed);
    let secrets = secrets::load(aws, graph, inputs, false, redis.as_deref()).await?;
    let image = engine_image(graph, inputs, &env, &observed);
    let architecture = engine_architecture(graph, inputs, &observed);
    let ami = if graph.kinds().contains(&Kind::LaunchTemplate) {
        Some(aws.ami(architecture).await?.to_string())
    } else {
        None
    };
    let plan = diff(
        graph,
        &observed,
        &env,
        ami.as_deref(),
        image.clone(),
        architecture,
        &secrets,
    )?;
    Ok(AwsPlan {
        plan,
        graph: graph.clone(),
        observed,
        env,
        ami,
        image,
        architecture,
        inputs: inputs.clone(),
    })
}

/// The engine image the task definitions and user data run: the prebuilt
/// one given, else the stack's ECR repository by the digest just built;
/// without a build (`plan`, `status`), the image the stack's task
/// definitions run now from that repository, so not building shows no
/// image change (`repo:latest` when nothing runs yet).
pub(crate) fn engine_image(
    graph: &Graph,
    inputs: &Inputs,
    env: &Env,
    observed: &BTreeMap<LogicalId, Observed>,
) -> Option<String> {
    if let Some(image) = &inputs.image {
        return Some(image.clone());
    }
    let repo = graph.get(&LogicalId::new("ecr.engine"))?;
    let uri = ecr_repository_uri(env, &repo.name);
    if let Some(digest) = &inputs.image_digest {
        return Some(format!("{uri}@{digest}"));
    }
    let deployed = observed
        .values()
        .find_map(|o| match &o.resource.attributes {
            crate::graph::Attributes::EcsTaskDefinition(t)
                if t.container.image.starts_with(&format!("{uri}@"))
                    || t.container.image.starts_with(&format!("{uri}:")) =>
            {
                Some(t.container.image.clone())
            }
            _ => None,
        });
    Some(deployed.unwrap_or_else(|| format!("{uri}:latest")))
}

/// The engine image's architecture: the one the inputs know; without a
/// build, the one the stack's task definitions run now, so not building
/// shows no change (x86_64 when nothing runs yet).
pub(crate) fn engine_architecture(
    graph: &Graph,
    inputs: &Inputs,
    observed: &BTreeMap<LogicalId, Observed>,
) -> Architecture {
    if let Some(architecture) = inputs.architecture {
        return architecture;
    }
    observed
        .iter()
        .filter(|(id, _)| graph.get(id).is_some())
        .find_map(|(_, o)| match &o.resource.attributes {
            crate::graph::Attributes::EcsTaskDefinition(t) => {
                Architecture::from_ecs(&t.cpu_architecture)
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME`: what ECR calls the
/// repository's URI.
pub(crate) fn ecr_repository_uri(env: &Env, name: &str) -> String {
    format!(
        "{}.dkr.ecr.{}.amazonaws.com/{name}",
        env.account, env.region
    )
}

/// Diffs desired against observed. Outputs of resources about to be
/// created or replaced are unknown, which shows as a change in everything
/// that refers to them; that changes those resources' actions in turn, so
/// this repeats until the set of pending outputs is stable.
fn diff(
    graph: &Graph,
    observed: &BTreeMap<LogicalId, Observed>,
    env: &Env,
    ami: Option<&str>,
    image: Option<String>,
    architecture: Architecture,
    secrets: &Secrets,
) -> Result<Plan> {
    let outputs: BTreeMap<LogicalId, Outputs> = observed
        .iter()
        .map(|(id, o)| (id.clone(), o.outputs.clone()))
        .collect();
    let mut pending: BTreeMap<LogicalId, Vec<&'static str>> = BTreeMap::new();
    loop {
        let resolver = Resolver {
            env,
            ami,
            image: image.clone(),
            architecture,
            secrets,
            outputs: &outputs,
            pending: &pending,
            strict: false,
        };
        let mut resolved = Graph::empty(&graph.stack, graph.region.clone());
        resolved
            .event_api_domain
            .clone_from(&graph.event_api_domain);
        let mut seen: Vec<Resource> = Vec::new();
        for r in graph.resources() {
            let desired = resolver.resolve(r)?;
            if let Some(o) = observed.get(&r.id) {
                let mut o = o.resource.clone();
                resolve::normalize(&mut o.attributes);
                resolve::carry_unobservable(&desired.attributes, &mut o.attributes);
                if !observed[&r.id].tags_reported {
                    o.tags.clone_from(&desired.tags);
                }
                seen.push(o);
            }
            resolved
                .add(desired)
                .map_err(|e| AwsError::Config(format!("graph: {e}")))?;
        }
        seen.extend(
            observed
                .values()
                .filter(|o| graph.get(&o.resource.id).is_none())
                .map(|o| o.resource.clone()),
        );
        let mut plan = Plan::diff(&resolved, &seen);
        let next: BTreeMap<LogicalId, Vec<&'static str>> = plan
            .changes
            .iter()
            .filter_map(|c| match c.action {
                Action::Create | Action::Replace => Some((c.resource.id.clone(), Vec::new())),
                Action::Update => {
                    let outs = c.resource.kind.info().outputs_changed_by_update;
                    (!outs.is_empty()).then(|| (c.resource.id.clone(), outs.to_vec()))
                }
                Action::Delete | Action::NoChange => None,
            })
            .collect();
        if next == pending {
            // Show the desired resources with their placeholders: resolved
            // attributes hold secrets.
            for c in &mut plan.changes {
                if let Some(desired) = graph.get(&c.resource.id)
                    && c.action != Action::Delete
                {
                    c.resource = desired.clone();
                }
            }
            return Ok(plan);
        }
        pending = next;
    }
}
