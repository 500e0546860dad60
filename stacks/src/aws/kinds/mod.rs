//! One module per AWS service, each with the same two entry points per
//! resource kind: `read` finds the resource by its deterministic name and
//! returns it in the typed shape of the desired attributes (plus its
//! outputs), and `apply` creates, updates in place or replaces it, each
//! action idempotent: a create that finds the resource already there (a
//! re-run after a crash, or a concurrent create) reads it back and updates
//! it instead. Deleting is part of `down` and lives next to these.

pub mod apigateway;
pub(crate) mod appscaling;
pub(crate) mod autoscaling;
pub(crate) mod cloudmap;
pub(crate) mod cloudwatch;
pub(crate) mod ec2;
pub(crate) mod ecr;
pub(crate) mod ecs;
pub(crate) mod elasticache;
pub(crate) mod elbv2;
pub(crate) mod iam;
pub(crate) mod logs;
pub(crate) mod memorydb;
pub(crate) mod sns;
pub(crate) mod sqs;

use std::collections::BTreeMap;

use super::context::{Aws, Env};
use super::error::{AwsError, Result, Subject};
use super::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{Attributes, Kind, LogicalId, Resource, TAG_STACK};

/// A resource as found in AWS.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Its id, kind, name, tags and attributes (no dependencies).
    pub resource: Resource,
    /// Its outputs (`arn`, `id`, ...).
    pub outputs: Outputs,
    /// Whether `resource.tags` were read. Scalable targets are owned
    /// through the ECS service they scale (their resource id names it) and
    /// their tags are not read back: they are taken as desired.
    pub tags_reported: bool,
}

/// What every reader and action needs besides the client.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub aws: Aws,
    pub stack: String,
    pub env: Env,
}

/// One resource to read: what the graph (or the list of possible resources)
/// calls it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub id: LogicalId,
    pub kind: Kind,
    pub name: String,
}

impl Target {
    pub fn subject(&self) -> Subject {
        Subject::new(&self.id, &self.name)
    }

    /// Builds the observed resource.
    pub fn observed(
        &self,
        tags: BTreeMap<String, String>,
        attributes: Attributes,
        outputs: Outputs,
    ) -> Observed {
        Observed {
            resource: Resource {
                id: self.id.clone(),
                kind: self.kind,
                name: self.name.clone(),
                tags,
                dependencies: Vec::new(),
                attributes,
            },
            outputs,
            tags_reported: true,
        }
    }
}

/// Reads one resource; `None` when it does not exist.
pub(crate) async fn read(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let found = match t.kind {
        Kind::SecurityGroup => ec2::read_security_group(ctx, t).await?,
        Kind::LaunchTemplate => ec2::read_launch_template(ctx, t).await?,
        Kind::IamRole => iam::read_role(ctx, t).await?,
        Kind::IamRolePolicy => iam::read_role_policy(ctx, t).await?,
        Kind::IamInstanceProfile => iam::read_instance_profile(ctx, t).await?,
        Kind::LogGroup => logs::read(ctx, t).await?,
        Kind::SqsQueue => sqs::read(ctx, t).await?,
        Kind::ElastiCacheSubnetGroup => elasticache::read_subnet_group(ctx, t).await?,
        Kind::ElastiCacheParameterGroup => elasticache::read_parameter_group(ctx, t).await?,
        Kind::ElastiCacheReplicationGroup => elasticache::read_replication_group(ctx, t).await?,
        Kind::MemoryDbSubnetGroup => memorydb::read_subnet_group(ctx, t).await?,
        Kind::MemoryDbUser => memorydb::read_user(ctx, t).await?,
        Kind::MemoryDbAcl => memorydb::read_acl(ctx, t).await?,
        Kind::MemoryDbCluster => memorydb::read_cluster(ctx, t).await?,
        Kind::EcrRepository => ecr::read(ctx, t).await?,
        Kind::EcsCluster => ecs::read_cluster(ctx, t).await?,
        Kind::EcsTaskDefinition => ecs::read_task_definition(ctx, t).await?,
        Kind::EcsService => ecs::read_service(ctx, t).await?,
        Kind::AutoScalingGroup => autoscaling::read_group(ctx, t).await?,
        Kind::AsgScalingPolicy => autoscaling::read_policy(ctx, t).await?,
        Kind::ScalableTarget => appscaling::read_target(ctx, t).await?,
        Kind::ScalingPolicy => appscaling::read_policy(ctx, t).await?,
        Kind::CloudWatchAlarm => cloudwatch::read(ctx, t).await?,
        Kind::ServiceDiscoveryNamespace => cloudmap::read_namespace(ctx, t).await?,
        Kind::ServiceDiscoveryService => cloudmap::read_service(ctx, t).await?,
        Kind::LoadBalancer => elbv2::read_load_balancer(ctx, t).await?,
        Kind::TargetGroup => elbv2::read_target_group(ctx, t).await?,
        Kind::Listener => elbv2::read_listener(ctx, t).await?,
        Kind::ApiGatewayVpcLink => apigateway::read_vpc_link(ctx, t).await?,
        Kind::ApiGatewayRestApi => apigateway::read_rest_api(ctx, t).await?,
        Kind::SnsTopic => sns::read(ctx, t).await?,
    };
    if let Some(o) = &found
        && t.kind.taggable()
        && o.tags_reported
    {
        check_ours(t, &o.resource.tags, &ctx.stack)?;
    }
    Ok(found)
}

/// Refuses a resource that has the stack's name but not its tag.
fn check_ours(t: &Target, tags: &BTreeMap<String, String>, stack: &str) -> Result<()> {
    match tags.get(TAG_STACK) {
        Some(s) if s == stack => Ok(()),
        other => Err(AwsError::NotOurs {
            subject: t.subject(),
            stack: stack.to_string(),
            found: other.map_or_else(|| "no tag".to_string(), |s| format!("`{s}`")),
        }),
    }
}

/// One change to carry out, with concrete attributes.
#[derive(Debug, Clone)]
pub(crate) struct Work {
    pub action: Action,
    /// The desired resource, placeholders resolved.
    pub desired: Resource,
    /// What AWS held when planned.
    pub observed: Option<Observed>,
}

impl Work {
    pub fn subject(&self) -> Subject {
        Subject::new(&self.desired.id, &self.desired.name)
    }

    pub fn target(&self) -> Target {
        Target {
            id: self.desired.id.clone(),
            kind: self.desired.kind,
            name: self.desired.name.clone(),
        }
    }

    /// The tags to add or change and the keys to remove.
    pub fn tag_changes(&self) -> (BTreeMap<String, String>, Vec<String>) {
        tag_changes(
            &self.desired.tags,
            self.observed.as_ref().map(|o| &o.resource.tags),
        )
    }

    /// Whether an attribute path (or one below it) changed.
    pub fn changed(&self, path: &str) -> bool {
        let Some(o) = &self.observed else {
            return true;
        };
        self.desired
            .attributes
            .diff(&o.resource.attributes)
            .iter()
            .any(|p| p == path || p.starts_with(&format!("{path}.")))
    }
}

/// Tags to set and tag keys to remove to go from `observed` to `desired`.
pub(crate) fn tag_changes(
    desired: &BTreeMap<String, String>,
    observed: Option<&BTreeMap<String, String>>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let empty = BTreeMap::new();
    let observed = observed.unwrap_or(&empty);
    let set = desired
        .iter()
        .filter(|(k, v)| observed.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = observed
        .keys()
        .filter(|k| !desired.contains_key(*k) && !k.starts_with("aws:"))
        .cloned()
        .collect();
    (set, remove)
}

/// Carries out one change and returns the resource's outputs.
pub(crate) async fn apply(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    if work.action == Action::Replace && work.desired.kind != Kind::EcsTaskDefinition {
        // Replacing means deleting first, which is `down`'s machinery.
        return Err(AwsError::Unsupported {
            subject: work.subject(),
            action: "replace",
            kind: work.desired.kind.label(),
        });
    }
    match work.desired.kind {
        Kind::SecurityGroup => ec2::apply_security_group(ctx, work).await,
        Kind::LaunchTemplate => ec2::apply_launch_template(ctx, work).await,
        Kind::IamRole => iam::apply_role(ctx, work).await,
        Kind::IamRolePolicy => iam::apply_role_policy(ctx, work).await,
        Kind::IamInstanceProfile => iam::apply_instance_profile(ctx, work).await,
        Kind::LogGroup => logs::apply(ctx, work).await,
        Kind::SqsQueue => sqs::apply(ctx, work).await,
        Kind::ElastiCacheSubnetGroup => elasticache::apply_subnet_group(ctx, work).await,
        Kind::ElastiCacheParameterGroup => elasticache::apply_parameter_group(ctx, work).await,
        Kind::ElastiCacheReplicationGroup => elasticache::apply_replication_group(ctx, work).await,
        Kind::MemoryDbSubnetGroup => memorydb::apply_subnet_group(ctx, work).await,
        Kind::MemoryDbUser => memorydb::apply_user(ctx, work).await,
        Kind::MemoryDbAcl => memorydb::apply_acl(ctx, work).await,
        Kind::MemoryDbCluster => memorydb::apply_cluster(ctx, work).await,
        Kind::EcrRepository => ecr::apply(ctx, work).await,
        Kind::EcsCluster => ecs::apply_cluster(ctx, work).await,
        Kind::EcsTaskDefinition => ecs::apply_task_definition(ctx, work).await,
        Kind::EcsService => ecs::apply_service(ctx, work).await,
        Kind::AutoScalingGroup => autoscaling::apply_group(ctx, work).await,
        Kind::AsgScalingPolicy => autoscaling::apply_policy(ctx, work).await,
        Kind::ScalableTarget => appscaling::apply_target(ctx, work).await,
        Kind::ScalingPolicy => appscaling::apply_policy(ctx, work).await,
        Kind::CloudWatchAlarm => cloudwatch::apply(ctx, work).await,
        Kind::ServiceDiscoveryNamespace => cloudmap::apply_namespace(ctx, work).await,
        Kind::ServiceDiscoveryService => cloudmap::apply_service(ctx, work).await,
        Kind::LoadBalancer => elbv2::apply_load_balancer(ctx, work).await,
        Kind::TargetGroup => elbv2::apply_target_group(ctx, work).await,
        Kind::Listener => elbv2::apply_listener(ctx, work).await,
        Kind::ApiGatewayVpcLink => apigateway::apply_vpc_link(ctx, work).await,
        Kind::ApiGatewayRestApi => apigateway::apply_rest_api(ctx, work).await,
        Kind::SnsTopic => sns::apply(ctx, work).await,
    }
}

/// After a create found the resource already there: reads it back, so the
/// update path can bring it to the desired state.
pub(crate) async fn reread(ctx: &Ctx, work: &Work) -> Result<Work> {
    let observed = read(ctx, &work.target()).await?;
    Ok(Work {
        action: Action::Update,
        desired: work.desired.clone(),
        observed,
    })
}

/// Outputs from `(name, value)` pairs.
pub(crate) fn outputs<const N: usize>(pairs: [(&str, String); N]) -> Outputs {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Builds the error for a field AWS left out.
pub(crate) fn incomplete(t: &Target, action: &'static str, missing: &'static str) -> AwsError {
    AwsError::Incomplete {
        subject: t.subject(),
        action,
        missing,
    }
}

/// Maps an SDK error of `action` on `t`.
macro_rules! api {
    ($subject:expr, $action:literal) => {
        |e| $crate::aws::error::AwsError::api($subject, $action, e)
    };
}
pub(crate) use api;

/// Sends a read request; a not-found error becomes `Ok(None)`.
pub(crate) fn not_found_is_none<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The typed attributes of a kind, or a bug report.
macro_rules! attrs {
    ($work:expr, $variant:ident) => {
        match &$work.desired.attributes {
            $crate::graph::Attributes::$variant(a) => a,
            _ => unreachable!("the graph pairs each kind with its attributes"),
        }
    };
}
pub(crate) use attrs;

/// What deleting one resource achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Deleted, and gone as far as the next deletion is concerned.
    Gone,
    /// It was not there any more.
    AlreadyGone,
    /// AWS accepted the deletion but it had not finished by the deadline
    /// (its state, e.g. `deleting`, `DRAINING`).
    InProgress(String),
}

/// Deletes one resource that `down` found and proved to be the stack's.
/// Deletions that later deletions must wait for (ECS services, the Auto
/// Scaling group, the replication group, the MemoryDB cluster, a Cloud Map
/// namespace) poll until
/// the resource is gone or `deadline` passes. A not-found answer at any
/// step means someone else finished the job: [`Deleted::AlreadyGone`].
pub(crate) async fn delete(
    ctx: &Ctx,
    o: &Observed,
    deadline: std::time::Instant,
) -> Result<Deleted> {
    let result = match o.resource.kind {
        Kind::SecurityGroup => ec2::delete_security_group(ctx, o).await,
        Kind::LaunchTemplate => ec2::delete_launch_template(ctx, o).await,
        Kind::IamRole => iam::delete_role(ctx, o).await,
        Kind::IamRolePolicy => iam::delete_role_policy(ctx, o).await,
        Kind::IamInstanceProfile => iam::delete_instance_profile(ctx, o).await,
        Kind::LogGroup => logs::delete(ctx, o).await,
        Kind::SqsQueue => sqs::delete(ctx, o).await,
        Kind::ElastiCacheSubnetGroup => elasticache::delete_subnet_group(ctx, o).await,
        Kind::ElastiCacheParameterGroup => elasticache::delete_parameter_group(ctx, o).await,
        Kind::ElastiCacheReplicationGroup => {
            elasticache::delete_replication_group(ctx, o, deadline).await
        }
        Kind::MemoryDbSubnetGroup => memorydb::delete_subnet_group(ctx, o).await,
        Kind::MemoryDbUser => memorydb::delete_user(ctx, o).await,
        Kind::MemoryDbAcl => memorydb::delete_acl(ctx, o).await,
        Kind::MemoryDbCluster => memorydb::delete_cluster(ctx, o, deadline).await,
        Kind::EcrRepository => ecr::delete(ctx, o).await,
        Kind::EcsCluster => ecs::delete_cluster(ctx, o).await,
        Kind::EcsTaskDefinition => ecs::delete_task_definition(ctx, o).await,
        Kind::EcsService => ecs::delete_service(ctx, o, deadline).await,
        Kind::AutoScalingGroup => autoscaling::delete_group(ctx, o, deadline).await,
        Kind::AsgScalingPolicy => autoscaling::delete_policy(ctx, o).await,
        Kind::ScalableTarget => appscaling::delete_target(ctx, o).await,
        Kind::ScalingPolicy => appscaling::delete_policy(ctx, o).await,
        Kind::CloudWatchAlarm => cloudwatch::delete(ctx, o).await,
        Kind::ServiceDiscoveryNamespace => cloudmap::delete_namespace(ctx, o, deadline).await,
        Kind::ServiceDiscoveryService => cloudmap::delete_service(ctx, o).await,
        Kind::LoadBalancer => elbv2::delete_load_balancer(ctx, o).await,
        Kind::TargetGroup => elbv2::delete_target_group(ctx, o).await,
        Kind::Listener => elbv2::delete_listener(ctx, o).await,
        Kind::ApiGatewayVpcLink => apigateway::delete_vpc_link(ctx, o, deadline).await,
        Kind::ApiGatewayRestApi => apigateway::delete_rest_api(ctx, o).await,
        Kind::SnsTopic => sns::delete(ctx, o).await,
    };
    match result {
        Err(e) if e.is_not_found() => Ok(Deleted::AlreadyGone),
        other => other,
    }
}

/// The subject of an observed resource, for errors.
pub(crate) fn subject_of(o: &Observed) -> Subject {
    Subject::new(&o.resource.id, &o.resource.name)
}

/// An output the reader always sets, or a bug report.
pub(crate) fn output<'a>(
    o: &'a Observed,
    name: &'static str,
    action: &'static str,
) -> Result<&'a str> {
    o.outputs
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AwsError::Incomplete {
            subject: subject_of(o),
            action,
            missing: name,
        })
}

/// Deletes a resource whose deletion runs for minutes (a replication group,
/// a MemoryDB cluster) and waits, up to `deadline`, until it is gone, since
/// what it uses can only be deleted then. `status` reads its state (`None`:
/// gone); one already `deleting` (an earlier `down`) is only waited for.
pub(crate) async fn delete_and_wait<S, SFut, D, DFut>(
    deadline: std::time::Instant,
    mut status: S,
    delete: D,
) -> Result<Deleted>
where
    S: FnMut() -> SFut,
    SFut: std::future::Future<Output = Result<Option<String>>>,
    D: FnOnce() -> DFut,
    DFut: std::future::Future<Output = Result<()>>,
{
    match status().await? {
        None => return Ok(Deleted::AlreadyGone),
        Some(s) if s == "deleting" => {}
        Some(_) => delete().await?,
    }
    wait_gone(deadline, std::time::Duration::from_secs(10), status).await
}

/// Polls `gone` every `every` until it says the resource is gone
/// (`Ok(None)`), or returns its last state when `deadline` passes.
pub(crate) async fn wait_gone<F, Fut>(
    deadline: std::time::Instant,
    every: std::time::Duration,
    mut gone: F,
) -> Result<Deleted>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    loop {
        match gone().await? {
            None => return Ok(Deleted::Gone),
            Some(state) if std::time::Instant::now() + every > deadline => {
                return Ok(Deleted::InProgress(state));
            }
            Some(_) => tokio::time::sleep(every).await,
        }
    }
}
