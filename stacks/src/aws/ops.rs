//! The operations of the AWS provider that the CLI calls, one per command:
//! [`plan`](fn@plan), [`up`](super::up::up), [`status`], [`logs`], [`down`]
//! and [`scale`] (the bench target reads through [`open`]). Each takes the loaded spec
//! and a [`Progress`], and returns a typed, serializable report or an
//! [`OpError`] naming the step that failed. What they share is here: the
//! graph, the AWS context, breaking a stale lock, and the stack lock around
//! every change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::canary::AwsCanaryError;
use super::destroy::{DownOptions, DownReport};
use super::error::AwsError;
use super::lock::ForceUnlock;
use super::logs::{Follower, LogEvent};
use super::scale::{ScaleError, ScaleReport};
use super::wait::{GroupState, RedisState, ServiceState, TargetsHealth, Timeouts, WaitError};
use super::{Aws, StackLock};
use crate::arch::ArchitectureError;
use crate::cost::{CostChange, Footprint, PriceTable};
use crate::graph::plan::{Action, Plan};
use crate::graph::{Graph, GraphError, LogicalId, Resource};
use crate::image::ImageError;
use crate::local::Service;
use crate::progress::Progress;
use crate::spec::LoadedSpec;

/// Why an operation failed, with the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The spec's resources could not be built.
    #[error("cannot build the resources of stack `{stack}`")]
    Graph {
        /// The stack.
        stack: String,
        /// Why.
        source: GraphError,
    },
    /// The AWS configuration (credentials, region) could not be loaded.
    #[error("cannot load the AWS configuration")]
    Config(#[source] AwsError),
    /// The engine image could not be built.
    #[error("cannot build the engine image")]
    Image(#[source] ImageError),
    /// The engine image's architecture does not fit the stack.
    #[error("stack `{stack}` cannot run its engine image")]
    Architecture {
        /// The stack.
        stack: String,
        /// Why.
        source: ArchitectureError,
    },
    /// An AWS step failed: `what` says which.
    #[error("{what} of stack `{stack}`")]
    Aws {
        /// e.g. `cannot take the lock`.
        what: &'static str,
        /// The stack.
        stack: String,
        /// The AWS error.
        source: AwsError,
    },
    /// The stack did not become ready.
    #[error(
        "stack `{stack}` is not ready (the changes were made; `stackctl status` shows the live state)"
    )]
    NotReady {
        /// The stack.
        stack: String,
        /// What the waits saw.
        source: WaitError,
    },
    /// The canary did not complete.
    #[error(
        "`up` of stack `{stack}` failed its end-to-end check (the stack is left as it is: \
         `stackctl status`, `stackctl logs SERVICE`; `--no-verify` skips the check)"
    )]
    Canary {
        /// The stack.
        stack: String,
        /// The failed stage, or why the check could not run.
        source: AwsCanaryError,
    },
    /// The stack has no log group for a service.
    #[error("stack `{stack}` has no log group for {service}")]
    NoLogGroup {
        /// The stack.
        stack: String,
        /// The service.
        service: &'static str,
    },
    /// A service's logs could not be read.
    #[error("cannot read the logs of {service} ({group})")]
    Logs {
        /// The service.
        service: &'static str,
        /// Its log group.
        group: String,
        /// The AWS error.
        source: AwsError,
    },
    /// A service could not be scaled.
    #[error("cannot scale {service} of stack `{stack}` to {count}")]
    Scale {
        /// The service.
        service: &'static str,
        /// The count asked for.
        count: u32,
        /// The stack.
        stack: String,
        /// Why.
        source: ScaleError,
    },
}

impl OpError {
    /// An architecture error, for `map_err`.
    pub(crate) fn architecture(stack: &str) -> impl FnOnce(ArchitectureError) -> Self {
        let stack = stack.to_string();
        move |source| Self::Architecture { stack, source }
    }

    /// An AWS step's error, for `map_err`.
    pub(crate) fn aws(what: &'static str, stack: &str) -> impl FnOnce(AwsError) -> Self {
        let stack = stack.to_string();
        move |source| Self::Aws {
            what,
            stack,
            source,
        }
    }
}

/// AWS API operations a command made (retries not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Calls {
    /// Read operations.
    pub reads: u64,
    /// Write operations.
    pub writes: u64,
}

impl Calls {
    /// What `aws` has made so far.
    pub fn of(aws: &Aws) -> Self {
        let c = aws.calls();
        Self {
            reads: c.reads,
            writes: c.writes,
        }
    }
}

/// A stack's graph and the AWS context to act on it.
#[derive(Debug)]
pub struct Opened {
    /// The stack name.
    pub stack: String,
    /// Its desired resources.
    pub graph: Graph,
    /// The AWS context (the spec's region wins).
    pub aws: Aws,
}

/// Builds the graph and loads the AWS context; with `force_unlock`, breaks
/// the lock first (reported as progress).
pub async fn open(
    loaded: &LoadedSpec,
    force_unlock: ForceUnlock,
    progress: &dyn Progress,
) -> Result<Opened, OpError> {
    let stack = loaded.spec.stack.clone();
    let graph = Graph::build(loaded).map_err(|source| OpError::Graph {
        stack: stack.clone(),
        source,
    })?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .map_err(OpError::Config)?;
    let opened = Opened { stack, graph, aws };
    break_lock(&opened, force_unlock, progress).await?;
    Ok(opened)
}

/// Breaks the stack's lock as `--force-unlock` (and `--yes`) allow,
/// reported as progress.
pub(crate) async fn break_lock(
    opened: &Opened,
    what: ForceUnlock,
    progress: &dyn Progress,
) -> Result<(), OpError> {
    let stack = &opened.stack;
    if let Some(old) = super::lock::force_unlock(&opened.aws, stack, what)
        .await
        .map_err(OpError::aws("cannot break the lock", stack))?
    {
        progress.info(&format!(
            "broke the lock of stack `{stack}` held by {} for `{}`",
            old.owner, old.command
        ));
    }
    Ok(())
}

/// Runs `work` under the stack lock (taken for `command`), releasing it
/// whatever `work` returns.
pub(crate) async fn locked<T>(
    opened: &Opened,
    command: &str,
    work: impl std::future::Future<Output = Result<T, OpError>>,
) -> Result<T, OpError> {
    let lock = StackLock::acquire(
        &opened.aws,
        &opened.stack,
        command,
        super::lock::DEFAULT_TTL,
    )
    .await
    .map_err(OpError::aws("cannot take the lock", &opened.stack))?;
    let result = lock.hold(work).await;
    let released = lock.release().await;
    let value = result?;
    released.map_err(OpError::aws("cannot release the lock", &opened.stack))?;
    Ok(value)
}

/// What `down` takes besides the spec.
#[derive(Debug, Clone, Default)]
pub struct DownStackOptions {
    /// Break the stack lock before taking it.
    pub force_unlock: ForceUnlock,
    /// How long one deletion may take; default: the spec's
    /// `timeouts.redis` (ElastiCache is the slowest to delete).
    pub wait_timeout: Option<Duration>,
}

/// What `down` did.
#[derive(Debug, Clone, Serialize)]
pub struct StackDown {
    /// Per resource, what happened, and the sweep.
    #[serde(flatten)]
    pub report: DownReport,
    /// `aws`.
    pub provider: &'static str,
    /// Whether nothing of the stack remains.
    pub clean: bool,
    /// How long it took.
    pub elapsed_ms: u64,
    /// What it cost in AWS API operations.
    pub calls: Calls,
}

/// Deletes every resource of the stack under its lock (reverse dependency
/// order, dependency retries, waits), its SSM parameters, and sweeps every
/// service for leftovers ([`super::destroy::down`]).
pub async fn down(
    loaded: &LoadedSpec,
    opts: DownStackOptions,
    progress: &dyn Progress,
) -> Result<StackDown, OpError> {
    let opened = open(loaded, opts.force_unlock, progress).await?;
    let options = DownOptions {
        wait_timeout: opts.wait_timeout.unwrap_or(loaded.spec.timeouts.redis.0),
        ..DownOptions::default()
    };
    let started = Instant::now();
    let report = locked(&opened, "down", async {
        super::destroy::down(&opened.aws, &opened.graph, &options, progress)
            .await
            .map_err(OpError::aws("`down` failed", &opened.stack))
    })
    .await?;
    Ok(StackDown {
        provider: "aws",
        clean: report.clean(),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        calls: Calls::of(&opened.aws),
        report,
    })
}

/// What `scale` takes besides the spec.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// The service.
    pub service: Service,
    /// The new count.
    pub count: u32,
    /// Refuse a count outside the auto-scaling bounds.
    pub keep_bounds: bool,
    /// How long to wait for the count to hold; `None`: do not wait.
    pub wait: Option<Timeouts>,
}

/// What `scale` did.
#[derive(Debug, Clone, Serialize)]
pub struct StackScale {
    /// The change.
    #[serde(flatten)]
    pub report: ScaleReport,
    /// `aws`.
    pub provider: &'static str,
    /// Whether it waited until the new count held.
    pub waited: bool,
}

/// Sets a service's count under the stack lock, moving an auto-scaling
/// bound when the count is outside it (unless `keep_bounds`), then waits
/// (still under the lock: the count must not move under the wait).
pub async fn scale(
    loaded: &LoadedSpec,
    opts: ScaleOptions,
    progress: &dyn Progress,
) -> Result<StackScale, OpError> {
    let opened = open(loaded, ForceUnlock::No, progress).await?;
    let since = SystemTime::now();
    locked(&opened, "scale", async {
        let report = super::scale::scale(
            &opened.aws,
            &opened.graph,
            opts.service,
            opts.count,
            opts.keep_bounds,
        )
        .await
        .map_err(|source| OpError::Scale {
            service: opts.service.as_str(),
            count: opts.count,
            stack: opened.stack.clone(),
            source,
        })?;
        if let Some(timeouts) = &opts.wait {
            super::wait::wait_all(
                &opened.aws,
                vec![report.target.clone()],
                timeouts,
                since,
                progress,
            )
            .await
            .map_err(|source| OpError::NotReady {
                stack: opened.stack.clone(),
                source,
            })?;
        }
        Ok(StackScale {
            report,
            provider: "aws",
            waited: opts.wait.is_some(),
        })
    })
    .await
}

/// One resource of the stack as `status` sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceStatus {
    /// The logical id.
    pub resource: String,
    /// Its kind, in words.
    pub kind: String,
    /// Its physical name.
    pub name: String,
    /// Whether it exists.
    pub exists: bool,
    /// `missing`, `not in spec`, `in sync` or `drifted`.
    pub state: &'static str,
    /// The attributes that differ from the spec.
    pub drift: Vec<String>,
    /// Its live status, for what runs (services, executors, Redis).
    pub status: Option<String>,
    /// Desired count, for what runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    /// Running count, for what runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
}

/// One service (`event-api`, `runner`, `executors`) as `status` sees it;
/// one that does not exist has zero counts and `exists: false`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Whether it exists.
    pub exists: bool,
    /// ECS's status (`ACTIVE`); `None` when it does not exist.
    pub status: Option<String>,
    /// Desired count.
    pub desired: u32,
    /// Running (ECS) or InService (executors).
    pub running: u32,
    /// Starting.
    pub pending: u32,
    /// The task definition of an ECS service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// The primary deployment's rollout state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// Deployments of an ECS service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployments: Option<usize>,
    /// The executors' lower bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// The executors' upper bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// The event API's load balancer target group (`public`, `vpc_link`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<TargetsHealth>,
    /// One line for people.
    pub detail: String,
}

impl ServiceStatus {
    fn missing() -> Self {
        Self {
            exists: false,
            status: None,
            desired: 0,
            running: 0,
            pending: 0,
            task_definition: None,
            rollout: None,
            deployments: None,
            min: None,
            max: None,
            targets: None,
            detail: "does not exist".into(),
        }
    }

    fn of_service(s: &ServiceState) -> Self {
        let primary = s.primary();
        let rollout = primary.and_then(|d| d.rollout_state.clone());
        Self {
            exists: true,
            status: Some(s.status.clone()),
            desired: s.desired,
            running: s.running,
            pending: s.pending,
            task_definition: Some(s.task_definition.clone()),
            detail: format!(
                "taskdef {}, rollout {}, {} deployment(s)",
                super::wait::revision(&s.task_definition),
                rollout.as_deref().unwrap_or("-"),
                s.deployments.len()
            ),
            rollout,
            deployments: Some(s.deployments.len()),
            min: None,
            max: None,
            targets: None,
        }
    }

    fn of_group(g: &GroupState) -> Self {
        Self {
            exists: true,
            status: Some("ACTIVE".into()),
            desired: g.desired,
            running: g.in_service,
            pending: g.instances.saturating_sub(g.in_service),
            task_definition: None,
            rollout: None,
            deployments: None,
            min: Some(g.min),
            max: Some(g.max),
            targets: None,
            detail: format!(
                "{} instance(s), bounds [{}, {}]{}",
                g.instances,
                g.min,
                g.max,
                match (&g.launch_template_version, g.outdated) {
                    (Some(v), 0) => format!(", launch template version {v}"),
                    (Some(v), n) => format!(
                        ", launch template version {v} ({n} on an older version to replace)"
                    ),
                    (None, _) => String::new(),
                }
            ),
        }
    }
}

/// A stack's state: every resource against its spec, and what runs.
#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    /// The stack.
    pub stack: String,
    /// `aws`.
    pub provider: &'static str,
    /// The region.
    pub region: String,
    /// Every resource exists as specified.
    pub in_sync: bool,
    /// Every service runs at least its desired count (and a load balancer's
    /// target group has as many healthy targets as event-API tasks are
    /// desired), and Redis is available.
    pub ready: bool,
    /// The event API's address from outside the VPC, when it has one.
    pub event_api: Option<String>,
    /// For an HTTPS `public` event API: the load balancer DNS name its
    /// domain must point at (a CNAME record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_target: Option<String>,
    /// `event-api`, `runner` and `executors`.
    pub services: BTreeMap<String, ServiceStatus>,
    /// The Redis replication group or MemoryDB cluster.
    pub redis: Option<RedisState>,
    /// Every resource, in apply order.
    pub resources: Vec<ResourceStatus>,
    /// Queue depths and ages, dead letters and failed runs.
    pub figures: crate::figures::Figures,
}

/// Reads the stack: the plan against the live account (existence and
/// drift) and the live state of its services, executors and Redis.
pub async fn status(loaded: &LoadedSpec, progress: &dyn Progress) -> Result<StackStatus, OpError> {
    let opened = open(loaded, ForceUnlock::No, progress).await?;
    let (stack, graph, aws) = (&opened.stack, &opened.graph, &opened.aws);
    let planned = super::plan(aws, graph, &super::Inputs::from_spec(&loaded.spec, None))
        .await
        .map_err(OpError::aws("cannot read the state", stack))?;
    let name = |id: &str| graph.get(&LogicalId::new(id)).map(|r| r.name.clone());
    let cluster = name("ecs.cluster").unwrap_or_default();
    let service = |label: &'static str| {
        let svc = name(&format!("ecs.service.{label}"));
        let cluster = cluster.clone();
        async move {
            match svc {
                Some(s) => super::wait::service_state(aws, &cluster, &s).await,
                None => Ok(None),
            }
        }
    };
    let group = name("autoscaling.group.executors");
    let redis = super::wait::RedisService::of(graph);
    let (event_api, runner, executors, redis) = tokio::join!(
        service("event-api"),
        service("runner"),
        async {
            match &group {
                Some(g) => super::wait::group_state(aws, g).await,
                None => Ok(None),
            }
        },
        async {
            match &redis {
                Some((service, id)) => super::wait::redis_state(aws, *service, id).await,
                None => Ok(None),
            }
        },
    );
    let live = OpError::aws("cannot read the live state", stack);
    let (event_api, runner, executors, redis) = match (event_api, runner, executors, redis) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return Err(live(e)),
    };
    // The event API's target group, when a load balancer fronts it.
    let targets = match planned
        .observed(&LogicalId::new("elb.target-group"))
        .and_then(|o| o.outputs.get("arn"))
    {
        Some(arn) => Some(
            super::wait::target_health(aws, arn)
                .await
                .map_err(OpError::aws("cannot read the live state", stack))?,
        ),
        None => None,
    };
    let services_live = [("event-api", &event_api), ("runner", &runner)];
    let ready = services_live
        .iter()
        .all(|(_, s)| s.as_ref().is_some_and(|s| s.running >= s.desired))
        && targets
            .as_ref()
            .is_none_or(|t| event_api.as_ref().is_some_and(|s| t.healthy >= s.desired))
        && executors.as_ref().is_some_and(GroupState::ready)
        && redis.as_ref().is_some_and(|r| r.status == "available");
    let mut services: BTreeMap<String, ServiceStatus> = services_live
        .iter()
        .map(|(label, s)| {
            (
                (*label).to_string(),
                s.as_ref()
                    .map_or_else(ServiceStatus::missing, ServiceStatus::of_service),
            )
        })
        .collect();
    if let (Some(t), Some(row)) = (targets, services.get_mut("event-api"))
        && row.exists
    {
        row.detail = format!("{}, {}", row.detail, t.describe(row.desired));
        row.targets = Some(t);
    }
    services.insert(
        "executors".into(),
        executors
            .as_ref()
            .map_or_else(ServiceStatus::missing, ServiceStatus::of_group),
    );
    let resources = planned
        .plan
        .changes
        .iter()
        .map(|c| {
            let id = c.resource.id.as_str();
            let (status, desired, running) = if let Some(label) = id.strip_prefix("ecs.service.")
                && let Some((_, Some(s))) = services_live.iter().find(|(l, _)| *l == label)
            {
                (Some(s.status.clone()), Some(s.desired), Some(s.running))
            } else if id == "autoscaling.group.executors"
                && let Some(g) = &executors
            {
                (
                    Some(format!("{}/{} InService", g.in_service, g.desired)),
                    Some(g.desired),
                    Some(g.in_service),
                )
            } else if id == "elasticache.redis"
                && let Some(r) = &redis
            {
                (Some(r.status.clone()), None, None)
            } else {
                (None, None, None)
            };
            ResourceStatus {
                resource: id.to_string(),
                kind: c.resource.kind.to_string(),
                name: c.resource.name.clone(),
                exists: planned.observed(&c.resource.id).is_some(),
                state: match c.action {
                    Action::Create => "missing",
                    Action::Delete => "not in spec",
                    Action::NoChange => "in sync",
                    Action::Update | Action::Replace => "drifted",
                },
                drift: c.changed_attributes.clone(),
                status,
                desired,
                running,
            }
        })
        .collect();
    let outputs: BTreeMap<LogicalId, super::Outputs> = planned
        .all_observed()
        .iter()
        .map(|(id, o)| (id.clone(), o.outputs.clone()))
        .collect();
    let url = |id: &str| {
        outputs
            .get(&LogicalId::new(id))
            .and_then(|o| o.get("url"))
            .cloned()
    };
    let queues: Vec<crate::figures::AwsQueue> = crate::figures::CONSUMERS
        .iter()
        .map(|(service, queue)| crate::figures::AwsQueue {
            service,
            queue,
            name: name(&format!("sqs.{queue}")).unwrap_or_default(),
            url: url(&format!("sqs.{queue}")),
            dead_letter_url: url(&format!("sqs.{queue}-dlq")),
        })
        .collect();
    let figures = crate::figures::aws(aws, loaded, &queues).await;
    Ok(StackStatus {
        stack: stack.clone(),
        provider: "aws",
        region: aws.region().to_string(),
        in_sync: !planned.plan.has_changes(),
        ready,
        event_api: super::event_api_url(graph, &outputs),
        dns_target: super::event_api_dns_target(graph, &outputs),
        services,
        redis,
        resources,
        figures,
    })
}

/// A service's CloudWatch Logs from some time on, read (and followed) by
/// polling: each [`LogTail::poll`] returns the events not returned before.
#[derive(Debug)]
pub struct LogTail {
    aws: Aws,
    service: Service,
    group: String,
    follower: Follower,
}

impl LogTail {
    /// The events that arrived since the last poll (the first: since the start).
    pub async fn poll(&mut self) -> Result<Vec<LogEvent>, OpError> {
        self.follower
            .poll(&self.aws)
            .await
            .map_err(|source| OpError::Logs {
                service: self.service.as_str(),
                group: self.group.clone(),
                source,
            })
    }
}

/// Opens `service`'s logs from `since` ago.
pub async fn logs(
    loaded: &LoadedSpec,
    service: Service,
    since: Duration,
    progress: &dyn Progress,
) -> Result<LogTail, OpError> {
    let opened = open(loaded, ForceUnlock::No, progress).await?;
    let group =
        super::logs::log_group(&opened.graph, service).ok_or_else(|| OpError::NoLogGroup {
            stack: opened.stack.clone(),
            service: service.as_str(),
        })?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let since_ms = now_ms.saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
    Ok(LogTail {
        follower: Follower::new(service, &group, since_ms),
        aws: opened.aws,
        service,
        group,
    })
}

/// What `plan` takes besides the spec.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Read the live account; `false`: every resource is a create.
    pub live: bool,
    /// The engine image to deploy instead of the spec's (`--image`).
    pub image: Option<String>,
    /// Build the engine image from this binary and plan with its digest;
    /// `None`: assume the image the stack runs now.
    pub engine_binary: Option<PathBuf>,
    /// The prices the monthly difference is worked out with; `None`: the
    /// table shipped with the tool.
    pub prices: Option<PriceTable>,
}

/// A plan and what it does to the monthly cost.
#[derive(Debug, Clone, Serialize)]
pub struct CostedPlan {
    /// The changes.
    #[serde(flatten)]
    pub plan: Plan,
    /// The monthly difference, or why it has no price.
    pub cost: PlanCost,
}

/// The monthly difference of a plan, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PlanCost {
    /// Priced.
    Priced(CostChange),
    /// Not priced (a region or type the price table lacks), and why.
    Unpriced {
        /// Why, with the fix.
        unpriced: String,
    },
}

impl CostedPlan {
    /// The plan's human rendering with the monthly difference after it.
    pub fn render_text(&self) -> String {
        let cost = match &self.cost {
            PlanCost::Priced(change) => change.render_text(),
            PlanCost::Unpriced { unpriced } => format!("Monthly cost: not priced: {unpriced}\n"),
        };
        format!("{}\n{cost}", self.plan.render_text())
    }
}

/// The monthly difference between the observed resources and what the
/// plan leaves (the resources it does not delete).
fn plan_cost(
    plan: &Plan,
    region: &str,
    observed: &[&Resource],
    prices: Option<&PriceTable>,
) -> PlanCost {
    let shipped;
    let table = match prices {
        Some(t) => t,
        None => {
            shipped = PriceTable::shipped();
            &shipped
        }
    };
    let before = Footprint::of(observed.iter().copied());
    let after = Footprint::of(
        plan.changes
            .iter()
            .filter(|c| c.action != Action::Delete)
            .map(|c| &c.resource),
    )
    .settled_over(&before);
    match crate::cost::change(&plan.stack, region, &before, &after, table) {
        Ok(change) => PlanCost::Priced(change),
        Err(e) => PlanCost::Unpriced {
            unpriced: e.to_string(),
        },
    }
}

/// What applying the spec would change, and what that does to the monthly cost.
pub async fn plan(
    loaded: &LoadedSpec,
    opts: PlanOptions,
    progress: &dyn Progress,
) -> Result<CostedPlan, OpError> {
    let stack = &loaded.spec.stack;
    let mut inputs = super::Inputs::from_spec(&loaded.spec, opts.image);
    if !opts.live {
        let graph = Graph::build(loaded).map_err(|source| OpError::Graph {
            stack: stack.clone(),
            source,
        })?;
        if let Some(architecture) = inputs.architecture {
            graph
                .check_architecture(architecture)
                .map_err(OpError::architecture(stack))?;
        }
        let plan = Plan::create_all(&graph);
        let cost = match crate::cost::region_of(loaded, None) {
            Ok(region) => plan_cost(&plan, &region, &[], opts.prices.as_ref()),
            Err(e) => PlanCost::Unpriced {
                unpriced: e.to_string(),
            },
        };
        return Ok(CostedPlan { plan, cost });
    }
    let opened = open(loaded, ForceUnlock::No, progress).await?;
    if inputs.builds_image()
        && let Some(binary) = &opts.engine_binary
    {
        let built =
            super::up::build_engine_image(loaded, Some(binary), &[], None, progress).await?;
        inputs = inputs
            .with_built_image(built.manifest_digest.to_string(), built.architecture)
            .map_err(OpError::architecture(stack))?;
    }
    // Only an architecture this command knows: without a build, `up`'s
    // image may be another than the one the stack runs now.
    if let Some(architecture) = inputs.architecture {
        opened
            .graph
            .check_architecture(architecture)
            .map_err(OpError::architecture(stack))?;
    }
    let planned = super::plan(&opened.aws, &opened.graph, &inputs)
        .await
        .map_err(OpError::aws("cannot read the state", &opened.stack))?;
    let observed: Vec<&Resource> = planned
        .all_observed()
        .values()
        .map(|o| &o.resource)
        .collect();
    let cost = plan_cost(
        &planned.plan,
        opened.aws.region(),
        &observed,
        opts.prices.as_ref(),
    );
    Ok(CostedPlan {
        plan: planned.plan,
        cost,
    })
}
