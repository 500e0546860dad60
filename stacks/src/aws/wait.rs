//! Truthful, bounded waits and the live state they read: ECS services
//! stable on the task definition just registered (and, behind a load
//! balancer, as many healthy targets as desired tasks), the executors' Auto
//! Scaling Group InService at its desired capacity on its launch template
//! version (no host of an older version left), and the ElastiCache
//! replication group `available` with a primary endpoint. `up` waits for
//! readiness after applying; `scale` waits until a new count holds;
//! `status` shows the same live state.
//!
//! Each wait polls with backoff until its condition holds, fails fast when
//! AWS says it never will (a rollout `FAILED`, a task of the new
//! deployment stopped by its own failure, a failed scaling activity, a
//! replication group `create-failed`), and gives up at its timeout with
//! what it waited for and the last state it saw. Waits run concurrently;
//! each reports what it waits for through [`Progress`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_autoscaling::types::{LifecycleState, ScalingActivityStatusCode};
use aws_sdk_ecs::types::{DesiredStatus, TaskStopCode};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;

use super::context::Aws;
use super::error::{AwsError, Subject};
use super::resolve::Outputs;
use crate::graph::{Graph, LogicalId};
use crate::progress::Progress;

/// First pause between two polls; it grows to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest pause between two polls.
const MAX_DELAY: Duration = Duration::from_secs(15);

/// Why a wait did not end well.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Reading the state failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The condition did not hold in time.
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The timeout.
        timeout: Duration,
        /// The last state seen.
        last: String,
    },
    /// AWS reports that the condition will not hold.
    #[error("{what} failed: {reason}")]
    Failed {
        /// What was waited for.
        what: String,
        /// AWS's reasons (stopped tasks, rollout state, scaling activities).
        reason: String,
    },
}

/// Upper bounds of the waits, by kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// ECS services.
    pub services: Duration,
    /// The executors' group.
    pub executors: Duration,
    /// Redis.
    pub redis: Duration,
}

impl Timeouts {
    /// The spec's `timeouts:` (which has defaults for every field).
    pub fn from_spec(t: &crate::spec::Timeouts) -> Self {
        Self {
            services: t.services.std(),
            executors: t.executors.std(),
            redis: t.redis.std(),
        }
    }

    /// One bound for every wait (`--wait-timeout`).
    pub fn all(d: Duration) -> Self {
        Self {
            services: d,
            executors: d,
            redis: d,
        }
    }
}

/// When a wait is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Ready after a deployment: services on the expected task definition,
    /// rollout completed and at least the desired count running (tasks above
    /// it are being drained by a scale-in and do not make the service less
    /// ready); groups with at least the desired capacity InService.
    Ready,
    /// A new count holds: desired and running (InService) both equal it.
    Count(u32),
}

/// One thing to wait for.
#[derive(Debug, Clone)]
pub enum Target {
    /// An ECS service.
    Service {
        /// Its role (`event-api`, `runner`), as the user names it.
        label: String,
        /// The cluster name.
        cluster: String,
        /// The service name.
        service: String,
        /// The task definition ARN the service must run, when known.
        task_definition: Option<String>,
        /// The load balancer target group its tasks register in: ready
        /// also means as many healthy targets as desired tasks.
        target_group: Option<String>,
        /// The condition.
        until: Until,
    },
    /// An Auto Scaling Group.
    Group {
        /// Its role (`executors`).
        label: String,
        /// The group name.
        name: String,
        /// The condition.
        until: Until,
    },
    /// The stack's Redis: an ElastiCache replication group or a MemoryDB
    /// cluster.
    Redis {
        /// Which service.
        service: RedisService,
        /// The replication group id or cluster name.
        id: String,
    },
}

/// The service a stack's Redis runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisService {
    /// An ElastiCache replication group.
    #[serde(rename = "elasticache")]
    ElastiCache,
    /// A MemoryDB cluster.
    #[serde(rename = "memorydb")]
    MemoryDb,
}

impl RedisService {
    /// The stack's Redis in `graph` (service and name), if it manages one.
    pub fn of(graph: &Graph) -> Option<(RedisService, String)> {
        [
            ("elasticache.redis", RedisService::ElastiCache),
            ("memorydb.cluster", RedisService::MemoryDb),
        ]
        .into_iter()
        .find_map(|(id, service)| {
            graph
                .get(&LogicalId::new(id))
                .map(|r| (service, r.name.clone()))
        })
    }

    fn noun(self) -> &'static str {
        match self {
            RedisService::ElastiCache => "replication group",
            RedisService::MemoryDb => "MemoryDB cluster",
        }
    }
}

impl Target {
    /// What is waited for, in words.
    pub fn what(&self) -> String {
        match self {
            Target::Service { label, .. } => format!("service {label}"),
            Target::Group { label, .. } => label.clone(),
            Target::Redis { id, .. } => format!("Redis {id}"),
        }
    }

    fn key(&self) -> String {
        match self {
            Target::Service { label, .. } => format!("wait.service.{label}"),
            Target::Group { label, .. } => format!("wait.group.{label}"),
            Target::Redis { id, .. } => format!("wait.redis.{id}"),
        }
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        match self {
            Target::Service { .. } => t.services,
            Target::Group { .. } => t.executors,
            Target::Redis { .. } => t.redis,
        }
    }
}

/// What `up` waits for: every ECS service of the graph (on the task
/// definition in `outputs`), the executors' group and Redis.
pub fn targets(graph: &Graph, outputs: &BTreeMap<LogicalId, Outputs>) -> Vec<Target> {
    let mut out = Vec::new();
    let cluster = graph
        .get(&LogicalId::new("ecs.cluster"))
        .map(|r| r.name.clone());
    if let Some((service, id)) = RedisService::of(graph) {
        out.push(Target::Redis { service, id });
    }
    for label in ["event-api", "runner"] {
        let Some(svc) = graph.get(&LogicalId::new(format!("ecs.service.{label}"))) else {
            continue;
        };
        let Some(cluster) = &cluster else { continue };
        let task_definition = outputs
            .get(&LogicalId::new(format!("ecs.taskdef.{label}")))
            .and_then(|o| o.get("arn"))
            .filter(|a| !a.is_empty())
            .cloned();
        let target_group = (label == "event-api")
            .then(|| super::output_value(outputs, "elb.target-group", "arn"))
            .flatten()
            .filter(|a| !a.is_empty());
        out.push(Target::Service {
            label: label.to_string(),
            cluster: cluster.clone(),
            service: svc.name.clone(),
            task_definition,
            target_group,
            until: Until::Ready,
        });
    }
    if let Some(g) = graph.get(&LogicalId::new("autoscaling.group.executors")) {
        out.push(Target::Group {
            label: "executors".into(),
            name: g.name.clone(),
            until: Until::Ready,
        });
    }
    out
}

/// How one wait ended.
#[derive(Debug, Clone, Serialize)]
pub struct Waited {
    /// What was waited for.
    pub what: String,
    /// The state that ended it.
    pub state: String,
    /// How long it took.
    pub millis: u64,
}

/// Waits for every target at once; `since` is when the command began
/// changing things (older failures are not this command's). The first
/// failure or timeout ends every wait: the stack is not ready, and waiting
/// minutes more for the rest would only hide that.
pub async fn wait_all(
    aws: &Aws,
    targets: Vec<Target>,
    timeouts: &Timeouts,
    since: SystemTime,
    progress: &dyn Progress,
) -> Result<Vec<Waited>, WaitError> {
    // Polled together on this task: `progress` is borrowed, not 'static.
    let futures = targets.into_iter().map(|t| {
        let aws = aws.clone();
        let timeout = t.timeout(timeouts);
        async move { wait_one(&aws, &t, timeout, since, progress).await }
    });
    let mut running: FuturesUnordered<_> = futures.collect();
    let mut waited = Vec::new();
    while let Some(r) = running.next().await {
        waited.push(r?);
    }
    Ok(waited)
}

/// Waits for one target.
pub async fn wait_one(
    aws: &Aws,
    target: &Target,
    timeout: Duration,
    since: SystemTime,
    progress: &dyn Progress,
) -> Result<Waited, WaitError> {
    let what = target.what();
    let key = target.key();
    let started = Instant::now();
    let deadline = started + timeout;
    let mut delay = FIRST_DELAY;
    let mut last = String::new();
    loop {
        let step = match check(aws, target, since).await {
            Ok(s) => s,
            Err(e) => {
                progress.fail(&key, &format!("{what}: {e}"));
                return Err(e.into());
            }
        };
        match step {
            Step::Done(state) => {
                progress.ok(&key, &format!("{what}: {state}"));
                return Ok(Waited {
                    what,
                    state,
                    millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            Step::Failed(reason) => {
                progress.fail(&key, &format!("{what} failed: {reason}"));
                return Err(WaitError::Failed { what, reason });
            }
            Step::Pending(state) => {
                if state != last {
                    progress.start(&key, &format!("waiting for {what}: {state}"));
                    last = state;
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            progress.fail(
                &key,
                &format!("gave up on {what} after {timeout:?}: {last}"),
            );
            return Err(WaitError::Timeout {
                what,
                timeout,
                last,
            });
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 3 / 2).min(MAX_DELAY);
    }
}

enum Step {
    Done(String),
    Pending(String),
    Failed(String),
}

async fn check(aws: &Aws, target: &Target, since: SystemTime) -> Result<Step, AwsError> {
    match target {
        Target::Service {
            cluster,
            service,
            task_definition,
            target_group,
            until,
            ..
        } => {
            check_service(
                aws,
                cluster,
                service,
                task_definition.as_deref(),
                target_group.as_deref(),
                *until,
            )
            .await
        }
        Target::Group { name, until, .. } => check_group(aws, name, *until, since).await,
        Target::Redis { service, id } => check_redis(aws, *service, id).await,
    }
}

/// `:3` of `arn:...:task-definition/family:3`.
pub fn revision(task_definition: &str) -> String {
    task_definition
        .rsplit_once(':')
        .map(|(_, r)| format!(":{r}"))
        .unwrap_or_else(|| task_definition.to_string())
}

/// One deployment of an ECS service.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// `ecs-svc/...`.
    pub id: String,
    /// `PRIMARY`, `ACTIVE`, `INACTIVE`.
    pub status: String,
    /// Its task definition ARN.
    pub task_definition: String,
    /// `COMPLETED`, `IN_PROGRESS`, `FAILED` (with the circuit breaker).
    pub rollout_state: Option<String>,
    /// Why.
    pub rollout_reason: Option<String>,
    /// Desired tasks.
    pub desired: u32,
    /// Running tasks.
    pub running: u32,
}

/// The live state of an ECS service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceState {
    /// `ACTIVE`, `DRAINING`, `INACTIVE`.
    pub status: String,
    /// Desired tasks.
    pub desired: u32,
    /// Running tasks.
    pub running: u32,
    /// Pending tasks.
    pub pending: u32,
    /// The task definition the service is set to.
    pub task_definition: String,
    /// Its deployments, the primary first.
    pub deployments: Vec<Deployment>,
}

impl ServiceState {
    /// The `PRIMARY` deployment.
    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.status == "PRIMARY")
    }
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// Reads a service; `None` when it does not exist (or is inactive).
pub async fn service_state(
    aws: &Aws,
    cluster: &str,
    service: &str,
) -> Result<Option<ServiceState>, AwsError> {
    let subject = Subject::other("ecs service", service);
    let out = match aws
        .ecs()
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::api(subject, "DescribeServices", e);
            // No cluster, no service.
            return if e.is_not_found() { Ok(None) } else { Err(e) };
        }
    };
    let Some(s) = out
        .services
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.status.as_deref() != Some("INACTIVE"))
    else {
        return Ok(None);
    };
    let mut deployments: Vec<Deployment> = s
        .deployments()
        .iter()
        .map(|d| Deployment {
            id: d.id.clone().unwrap_or_default(),
            status: d.status.clone().unwrap_or_default(),
            task_definition: d.task_definition.clone().unwrap_or_default(),
            rollout_state: d.rollout_state.as_ref().map(|r| r.as_str().to_string()),
            rollout_reason: d.rollout_state_reason.clone(),
            desired: count(d.desired_count),
            running: count(d.running_count),
        })
        .collect();
    deployments.sort_by_key(|d| d.status != "PRIMARY");
    Ok(Some(ServiceState {
        status: s.status.clone().unwrap_or_default(),
        desired: count(s.desired_count),
        running: count(s.running_count),
        pending: count(s.pending_count),
        task_definition: s.task_definition.clone().unwrap_or_default(),
        deployments,
    }))
}

async fn check_service(
    aws: &Aws,
    cluster: &str,
    service: &str,
    expected: Option<&str>,
    target_group: Option<&str>,
    until: Until,
) -> Result<Step, AwsError> {
    let Some(s) = service_state(aws, cluster, service).await? else {
        return Ok(Step::Failed(format!(
            "service {service} does not exist in cluster {cluster}"
        )));
    };
    match (
        judge_service(aws, cluster, service, &s, expected, until).await?,
        target_group,
    ) {
        (Step::Done(state), Some(group)) => check_targets(aws, group, s.desired, state).await,
        (step, _) => Ok(step),
    }
}

/// The step of service `s` (just read) towards `until` on `expected`.
async fn judge_service(
    aws: &Aws,
    cluster: &str,
    service: &str,
    s: &ServiceState,
    expected: Option<&str>,
    until: Until,
) -> Result<Step, AwsError> {
    // The deployment of the task definition we registered (else the primary).
    let ours = match expected {
        Some(td) => s.deployments.iter().find(|d| d.task_definition == td),
        None => s.primary(),
    };
    let td_label = revision(expected.unwrap_or(&s.task_definition));
    let counts = format!("{}/{} running on taskdef {td_label}", s.running, s.desired);
    let Some(ours) = ours else {
        if expected.is_some_and(|td| td != s.task_definition) {
            return Ok(Step::Pending(format!(
                "{counts}; no deployment of it yet (the service runs {})",
                revision(&s.task_definition)
            )));
        }
        // The service is set to the task definition but lists no deployment
        // of it. ECS lists one from the moment UpdateService answers; an
        // implementation that does not track deployments is judged by the
        // service's own counts, and the state says so.
        let done = match until {
            Until::Ready => s.running >= s.desired,
            Until::Count(n) => s.desired == n && s.running == n,
        };
        let state = format!("{counts} (no deployment listed: judged by the service's counts)");
        return Ok(if done {
            Step::Done(state)
        } else {
            Step::Pending(state)
        });
    };
    if ours.rollout_state.as_deref() == Some("FAILED") {
        let mut reason = format!(
            "the rollout of taskdef {td_label} failed: {}",
            ours.rollout_reason.as_deref().unwrap_or("no reason given")
        );
        let stopped = stopped_tasks(aws, cluster, service, &ours.id).await?;
        if !stopped.is_empty() {
            reason.push_str(&format!("; stopped tasks: {}", stopped.join("; ")));
        }
        return Ok(Step::Failed(reason));
    }
    let done = match until {
        Until::Ready => {
            s.deployments.len() == 1
                && ours.status == "PRIMARY"
                && ours
                    .rollout_state
                    .as_deref()
                    .is_none_or(|r| r == "COMPLETED")
                && s.running >= s.desired
        }
        Until::Count(n) => s.desired == n && s.running == n,
    };
    if done {
        return Ok(Step::Done(format!(
            "{counts}{}",
            match until {
                Until::Ready => ", rollout completed",
                Until::Count(_) => "",
            }
        )));
    }
    // Not there yet: a task of this deployment that stopped by its own
    // failure means it will not get there (ECS would retry it until the
    // circuit breaker gives up, minutes later).
    let stopped = stopped_tasks(aws, cluster, service, &ours.id).await?;
    if !stopped.is_empty() {
        return Ok(Step::Failed(format!(
            "{counts}; tasks of the new deployment stopped: {}",
            stopped.join("; ")
        )));
    }
    let mut state = counts;
    if s.pending > 0 {
        state.push_str(&format!(", {} pending", s.pending));
    }
    if let Some(r) = &ours.rollout_state {
        state.push_str(&format!(" (rollout {r})"));
    }
    if s.deployments.len() > 1 {
        state.push_str(&format!(
            ", {} older deployment(s) draining",
            s.deployments.len() - 1
        ));
    }
    Ok(Step::Pending(state))
}

/// The health of a load balancer target group's registered targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetsHealth {
    /// Targets the load balancer sends to.
    pub healthy: u32,
    /// Every other target, by state (and reason): `initial`, `unhealthy
    /// (Target.ResponseCodeMismatch)`, `draining`, ...
    pub others: BTreeMap<String, u32>,
}

impl TargetsHealth {
    /// `2/2 healthy in the target group, 1 draining` for `desired` tasks.
    pub fn describe(&self, desired: u32) -> String {
        let mut out = format!("{}/{desired} healthy in the target group", self.healthy);
        for (what, n) in &self.others {
            out.push_str(&format!(", {n} {what}"));
        }
        out
    }
}

/// The health of the targets registered in the target group `arn`.
pub async fn target_health(aws: &Aws, arn: &str) -> Result<TargetsHealth, AwsError> {
    let out = aws
        .elbv2()
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| {
            AwsError::api(
                Subject::other("target group", arn),
                "DescribeTargetHealth",
                e,
            )
        })?;
    let mut health = TargetsHealth::default();
    for d in out.target_health_descriptions() {
        let h = d.target_health();
        match h.and_then(|h| h.state()) {
            Some(TargetHealthStateEnum::Healthy) => health.healthy += 1,
            state => {
                let what = match (state, h.and_then(|h| h.reason())) {
                    (Some(s), Some(r)) => format!("{} ({})", s.as_str(), r.as_str()),
                    (Some(s), None) => s.as_str().to_string(),
                    (None, _) => "unknown".to_string(),
                };
                *health.others.entry(what).or_default() += 1;
            }
        }
    }
    Ok(health)
}

/// A ready service behind a load balancer: ready once its target group has
/// as many healthy targets as the service desires tasks (the load balancer
/// sends to them only then). `desired` and `state` are the service's own.
async fn check_targets(
    aws: &Aws,
    group: &str,
    desired: u32,
    state: String,
) -> Result<Step, AwsError> {
    let health = target_health(aws, group).await?;
    let state = format!("{state}; {}", health.describe(desired));
    Ok(if health.healthy >= desired {
        Step::Done(state)
    } else {
        Step::Pending(state)
    })
}

/// Stop codes that say something outside the task stopped it: not a
/// failure of the deployment.
fn benign(code: Option<&TaskStopCode>) -> bool {
    matches!(
        code,
        Some(
            TaskStopCode::ServiceSchedulerInitiated
                | TaskStopCode::UserInitiated
                | TaskStopCode::SpotInterruption
                | TaskStopCode::TerminationNotice
        )
    )
}

/// The stopped tasks of one deployment of a service, each with its reason
/// and its containers' exit codes.
async fn stopped_tasks(
    aws: &Aws,
    cluster: &str,
    service: &str,
    deployment: &str,
) -> Result<Vec<String>, AwsError> {
    let subject = Subject::other("ecs service", service);
    let ecs = aws.ecs();
    let listed = ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "ListTasks", e))?;
    let arns = listed.task_arns.unwrap_or_default();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let described = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns.into_iter().take(100).collect()))
        .send()
        .await
        .map_err(|e| AwsError::api(subject, "DescribeTasks", e))?;
    let group = format!("service:{service}");
    let mut out = Vec::new();
    for t in described.tasks() {
        // Tasks of this deployment only: ECS starts them with the
        // deployment id as `startedBy` and the service as `group`.
        if t.group.as_deref() != Some(group.as_str())
            || t.started_by.as_deref() != Some(deployment)
            || t.last_status.as_deref() != Some("STOPPED")
            || benign(t.stop_code.as_ref())
        {
            continue;
        }
        let id = t
            .task_arn
            .as_deref()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("?");
        let mut line = format!(
            "task {id}: {}",
            t.stopped_reason.as_deref().unwrap_or("stopped")
        );
        if let Some(code) = &t.stop_code {
            line.push_str(&format!(" ({})", code.as_str()));
        }
        for c in t.containers() {
            let failed = c.exit_code.is_some_and(|x| x != 0) || c.reason.is_some();
            if failed {
                line.push_str(&format!(
                    "; container {} exit {}{}",
                    c.name.as_deref().unwrap_or("?"),
                    c.exit_code.map_or_else(|| "?".into(), |x| x.to_string()),
                    c.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ));
            }
        }
        out.push(line);
    }
    Ok(out)
}

/// The live state of an Auto Scaling Group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupState {
    /// Desired capacity.
    pub desired: u32,
    /// Minimum size.
    pub min: u32,
    /// Maximum size.
    pub max: u32,
    /// Instances InService and Healthy.
    pub in_service: u32,
    /// All instances, whatever their state.
    pub instances: u32,
    /// The launch template version the group launches, when it names one.
    pub launch_template_version: Option<String>,
    /// Instances InService and Healthy launched from that version.
    pub current: u32,
    /// Instances, whatever their state, launched from another version:
    /// hosts an instance refresh has yet to replace.
    pub outdated: u32,
}

impl GroupState {
    /// Ready after a deployment: the desired capacity InService on the
    /// group's launch template version, and no host of another version.
    pub fn ready(&self) -> bool {
        self.current >= self.desired && self.outdated == 0
    }

    /// `2/2 instances InService` (with the version and the hosts of older
    /// versions when there are any).
    pub fn describe(&self) -> String {
        let mut s = format!("{}/{} instances InService", self.current, self.desired);
        if let Some(v) = &self.launch_template_version {
            s.push_str(&format!(" on launch template version {v}"));
        }
        if self.outdated > 0 {
            s.push_str(&format!(
                ", {} on an older version to replace",
                self.outdated
            ));
        }
        s
    }
}

/// Reads a group; `None` when it does not exist.
pub async fn group_state(aws: &Aws, name: &str) -> Result<Option<GroupState>, AwsError> {
    Ok(describe_group(aws, name)
        .await?
        .as_ref()
        .map(GroupState::of))
}

/// The group as Auto Scaling describes it; `None` when it does not exist.
pub(crate) async fn describe_group(
    aws: &Aws,
    name: &str,
) -> Result<Option<aws_sdk_autoscaling::types::AutoScalingGroup>, AwsError> {
    let out = aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| {
            AwsError::api(
                Subject::other("auto scaling group", name),
                "DescribeAutoScalingGroups",
                e,
            )
        })?;
    Ok(out
        .auto_scaling_groups
        .unwrap_or_default()
        .into_iter()
        .next())
}

/// The launch template version an instance was launched from.
pub(crate) fn instance_version(i: &aws_sdk_autoscaling::types::Instance) -> Option<&str> {
    i.launch_template
        .as_ref()
        .and_then(|t| t.version.as_deref())
}

impl GroupState {
    /// The state of a group as Auto Scaling describes it.
    pub(crate) fn of(g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> Self {
        let healthy = |i: &&aws_sdk_autoscaling::types::Instance| {
            i.lifecycle_state == Some(LifecycleState::InService)
                && i.health_status.as_deref() == Some("Healthy")
        };
        let version = g
            .launch_template
            .as_ref()
            .and_then(|t| t.version.clone())
            // `$Latest` or `$Default` name no number to compare hosts with.
            .filter(|v| !v.starts_with('$'));
        let on_version = |i: &aws_sdk_autoscaling::types::Instance| match &version {
            Some(v) => instance_version(i).is_none_or(|iv| iv == v),
            None => true,
        };
        let n = |c: usize| u32::try_from(c).unwrap_or(u32::MAX);
        let in_service = g.instances().iter().filter(healthy).count();
        let current = g
            .instances()
            .iter()
            .filter(healthy)
            .filter(|i| on_version(i))
            .count();
        let outdated = g.instances().iter().filter(|i| !on_version(i)).count();
        Self {
            desired: count(g.desired_capacity.unwrap_or(0)),
            min: count(g.min_size.unwrap_or(0)),
            max: count(g.max_size.unwrap_or(0)),
            in_service: n(in_service),
            instances: n(g.instances().len()),
            launch_template_version: version,
            current: n(current),
            outdated: n(outdated),
        }
    }
}

async fn check_group(
    aws: &Aws,
    name: &str,
    until: Until,
    since: SystemTime,
) -> Result<Step, AwsError> {
    let Some(g) = group_state(aws, name).await? else {
        return Ok(Step::Failed(format!("group {name} does not exist")));
    };
    let state = match until {
        Until::Ready => g.describe(),
        Until::Count(_) => format!("{}/{} instances InService", g.in_service, g.desired),
    };
    let done = match until {
        Until::Ready => g.ready(),
        Until::Count(n) => g.desired == n && g.in_service == n,
    };
    if done {
        return Ok(Step::Done(state));
    }
    if until == Until::Ready && g.outdated > 0 {
        match super::rollout::latest_refresh(aws, name).await? {
            Some(r) if r.active() => {
                return Ok(Step::Pending(format!("{state}; {}", r.describe())));
            }
            Some(r) if r.failed() && r.started.is_none_or(|t| t >= since) => {
                return Ok(Step::Failed(format!("{state}; {}", r.describe())));
            }
            _ => {
                return Ok(Step::Failed(format!(
                    "{state}, and no instance refresh is replacing them: \
                     `stackctl up` starts one"
                )));
            }
        }
    }
    // A launch that failed since we began will not come back by itself
    // soon (AWS retries with backoff): report it instead of waiting.
    let out = aws
        .autoscaling()
        .describe_scaling_activities()
        .auto_scaling_group_name(name)
        .max_records(20)
        .send()
        .await
        .map_err(|e| {
            AwsError::api(
                Subject::other("auto scaling group", name),
                "DescribeScalingActivities",
                e,
            )
        })?;
    let failed: Vec<String> = out
        .activities()
        .iter()
        .filter(|a| {
            matches!(
                a.status_code,
                Some(ScalingActivityStatusCode::Failed | ScalingActivityStatusCode::Cancelled)
            ) && a
                .start_time
                .and_then(|t| SystemTime::try_from(t).ok())
                .is_some_and(|t| t >= since)
        })
        .map(|a| {
            format!(
                "{}: {}",
                a.description.as_deref().unwrap_or("scaling activity"),
                a.status_message.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    if !failed.is_empty() {
        return Ok(Step::Failed(format!("{state}; {}", failed.join("; "))));
    }
    Ok(Step::Pending(state))
}

/// The live state of the stack's Redis.
#[derive(Debug, Clone, Serialize)]
pub struct RedisState {
    /// ElastiCache or MemoryDB.
    pub service: RedisService,
    /// `creating`, `available`, `modifying`/`updating`, `deleting`,
    /// `create-failed`, ...
    pub status: String,
    /// `host:port` the engine connects to (the primary, or MemoryDB's
    /// cluster endpoint), once known.
    pub endpoint: Option<String>,
}

/// Reads a replication group or MemoryDB cluster; `None` when it does not
/// exist.
pub async fn redis_state(
    aws: &Aws,
    service: RedisService,
    id: &str,
) -> Result<Option<RedisState>, AwsError> {
    let subject = || Subject::other(service.noun(), id);
    let not_found = |e: AwsError| if e.is_not_found() { Ok(None) } else { Err(e) };
    let address = |address: Option<&str>, port: Option<i32>| {
        let host = address.filter(|a| !a.is_empty())?;
        Some(format!("{host}:{}", port.unwrap_or(6379)))
    };
    let (status, endpoint) = match service {
        RedisService::ElastiCache => {
            let out = aws
                .elasticache()
                .describe_replication_groups()
                .replication_group_id(id)
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    return not_found(AwsError::api(subject(), "DescribeReplicationGroups", e));
                }
            };
            let Some(g) = out
                .replication_groups
                .unwrap_or_default()
                .into_iter()
                .next()
            else {
                return Ok(None);
            };
            let endpoint = g
                .node_groups()
                .iter()
                .find_map(|n| n.primary_endpoint.as_ref())
                .or(g.configuration_endpoint.as_ref())
                .and_then(|e| address(e.address.as_deref(), e.port));
            (g.status.unwrap_or_default(), endpoint)
        }
        RedisService::MemoryDb => {
            let out = aws
                .memorydb()
                .describe_clusters()
                .cluster_name(id)
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) => return not_found(AwsError::api(subject(), "DescribeClusters", e)),
            };
            let Some(c) = out.clusters.unwrap_or_default().into_iter().next() else {
                return Ok(None);
            };
            let endpoint = c
                .cluster_endpoint
                .as_ref()
                .and_then(|e| address(e.address.as_deref(), Some(e.port)));
            (c.status.unwrap_or_default(), endpoint)
        }
    };
    Ok(Some(RedisState {
        service,
        status,
        endpoint,
    }))
}

async fn check_redis(aws: &Aws, service: RedisService, id: &str) -> Result<Step, AwsError> {
    let Some(r) = redis_state(aws, service, id).await? else {
        return Ok(Step::Failed(format!(
            "{} {id} does not exist",
            service.noun()
        )));
    };
    Ok(match (r.status.as_str(), &r.endpoint) {
        ("available", Some(ep)) => Step::Done(format!("available at {ep}")),
        ("available", None) => Step::Pending("available, endpoint not known yet".into()),
        ("create-failed" | "deleting" | "deleted", _) => {
            Step::Failed(format!("status {}", r.status))
        }
        (other, _) => Step::Pending(other.to_string()),
    })
}
