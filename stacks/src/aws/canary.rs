//! The end-to-end check of an AWS stack, from inside its VPC: a one-off ECS
//! task of the event API's own task definition (same image, subnets,
//! security group and SSM secrets) runs `stackctl-engine canary` against the
//! event API's in-VPC address, and its outcome comes back through ECS
//! (`DescribeTasks`: the exit code) and CloudWatch Logs (the outcome line).
//! On failure the report names the stage and carries the end of the log of
//! the service at fault.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, LaunchType, NetworkConfiguration,
    TaskOverride,
};
use engine::canary::{CanaryError, CanaryReport, Outcome, Stage};

use super::context::Aws;
use super::error::{AwsError, Subject};
use super::resolve::Outputs;
use crate::graph::{Attributes, Graph, LogicalId};
use crate::progress::Progress;

/// How often the task's state is read.
const POLL: Duration = Duration::from_secs(1);
/// Time for the task to start and its log to arrive, on top of the canary's own timeout.
const TASK_MARGIN: Duration = Duration::from_secs(120);
/// Lines of the failing service's log shown with a failure.
const TAIL_LINES: usize = 20;

/// Why the AWS canary did not report a completed run.
#[derive(Debug, thiserror::Error)]
pub enum AwsCanaryError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The stack lacks what the canary needs (no event-API service yet).
    #[error("cannot run the canary: {0}")]
    Setup(String),
    /// The canary ran and a stage failed.
    #[error("{failure}\n  the end of the {service} log:\n{}", tail_text(.log_tail))]
    Failed {
        /// The stage and what was seen.
        failure: CanaryError,
        /// The service at fault (`event-api`, `runner`, `executors`).
        service: String,
        /// The last lines of its log.
        log_tail: Vec<String>,
    },
    /// The canary task itself did not run to the end.
    #[error("the canary task {task} {what}; the end of its log:\n{}", tail_text(.log_tail))]
    Task {
        /// The task ARN.
        task: String,
        /// What happened (stopped without an outcome, did not stop in time).
        what: String,
        /// The last lines of its log.
        log_tail: Vec<String>,
    },
}

impl AwsCanaryError {
    /// The failed stage, when the canary got far enough to name one.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Self::Failed { failure, .. } => Some(failure.stage),
            _ => None,
        }
    }
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        return "    (no log lines)".into();
    }
    lines
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The event API's address inside the VPC: its Cloud Map name
/// (`internal_dns`), else its load balancer's DNS name and listener port
/// (`public`, and the internal load balancer behind a `vpc_link`).
pub fn in_vpc_event_api_url(
    graph: &Graph,
    outputs: &BTreeMap<LogicalId, Outputs>,
) -> Option<String> {
    let port = graph
        .get(&LogicalId::new("ecs.taskdef.event-api"))
        .and_then(|r| match &r.attributes {
            Attributes::EcsTaskDefinition(t) => Some(t.container.port),
            _ => None,
        })?;
    if let (Some(service), Some(namespace)) = (
        graph.get(&LogicalId::new("cloudmap.service")),
        graph.get(&LogicalId::new("cloudmap.namespace")),
    ) {
        return Some(format!("http://{}.{}:{port}", service.name, namespace.name));
    }
    let dns = super::output_value(outputs, "elb.load-balancer", "dns_name")?;
    Some(
        match graph
            .get(&LogicalId::new("elb.listener"))
            .map(|l| &l.attributes)
        {
            Some(Attributes::Listener(l)) if l.port != 80 => format!("http://{dns}:{}", l.port),
            _ => format!("http://{dns}"),
        },
    )
}

/// Runs the canary task and waits for its outcome, at most the canary
/// timeout plus the time a task needs to start.
pub async fn run(
    aws: &Aws,
    graph: &Graph,
    outputs: &BTreeMap<LogicalId, Outputs>,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<CanaryReport, AwsCanaryError> {
    let name = |id: &str| {
        graph
            .get(&LogicalId::new(id))
            .map(|r| r.name.clone())
            .ok_or_else(|| AwsCanaryError::Setup(format!("the stack has no `{id}`")))
    };
    let cluster = name("ecs.cluster")?;
    let service = name("ecs.service.event-api")?;
    let url = in_vpc_event_api_url(graph, outputs).ok_or_else(|| {
        AwsCanaryError::Setup(
            "the event API has no address inside the VPC (`network.event_api: internal` has \
             neither a DNS name nor a load balancer); use internal_dns, vpc_link or public, \
             or skip the check with --no-verify"
                .into(),
        )
    })?;
    let started = Instant::now();
    let since = SystemTime::now();
    progress.start(
        "canary",
        &format!("running the canary inside the VPC against {url}"),
    );
    let error = match run_task(aws, &cluster, &service, &url, timeout, progress).await {
        Ok(Outcome::Completed(report)) => {
            progress.ok(
                "canary",
                &format!(
                    "canary run {} completed in {} ms (task {:.1} s)",
                    report.run_id,
                    report.millis,
                    started.elapsed().as_secs_f64()
                ),
            );
            return Ok(report);
        }
        Ok(Outcome::Failed(failure)) => {
            let log_tail = match super::logs::log_group(graph, service_of(failure.stage)) {
                Some(group) => tail(aws, &group, since).await,
                None => Vec::new(),
            };
            AwsCanaryError::Failed {
                service: failure.stage.service().to_string(),
                failure,
                log_tail,
            }
        }
        Err(e) => e,
    };
    progress.fail(
        "canary",
        error
            .stage()
            .map_or("the canary did not finish", Stage::describe),
    );
    Err(error)
}

fn service_of(stage: Stage) -> crate::local::Service {
    match stage {
        Stage::Send => crate::local::Service::EventApi,
        Stage::Run => crate::local::Service::Runner,
        Stage::Step => crate::local::Service::Executors,
    }
}

/// The last lines logged to `group` since `since` (best effort: a failure
/// to read them must not hide the canary's own error).
async fn tail(aws: &Aws, group: &str, since: SystemTime) -> Vec<String> {
    let since_ms = since
        .checked_sub(Duration::from_secs(60))
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    match super::logs::fetch(aws, crate::local::Service::EventApi, group, since_ms).await {
        Ok(events) => {
            let skip = events.len().saturating_sub(TAIL_LINES);
            events
                .into_iter()
                .skip(skip)
                .map(|e| format!("[{}] {}", e.stream, e.message.trim_end()))
                .collect()
        }
        Err(e) => vec![format!("(cannot read the log group {group}: {e})")],
    }
}

async fn run_task(
    aws: &Aws,
    cluster: &str,
    service: &str,
    url: &str,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Outcome, AwsCanaryError> {
    let subject = Subject::other("ecs service", service);
    let described = aws
        .ecs()
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| AwsError::api(subject, "DescribeServices", e))?;
    let svc = described
        .services()
        .iter()
        .find(|s| s.status() != Some("INACTIVE"))
        .ok_or_else(|| AwsCanaryError::Setup(format!("ECS service {service} does not exist")))?;
    let task_definition = svc
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.task_definition())
        .map(str::to_owned)
        .ok_or_else(|| AwsCanaryError::Setup(format!("ECS service {service} has no deployment")))?;
    let network = svc
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .cloned()
        .ok_or_else(|| {
            AwsCanaryError::Setup(format!("ECS service {service} has no awsvpc network"))
        })?;
    let taskdef = aws
        .ecs()
        .describe_task_definition()
        .task_definition(&task_definition)
        .send()
        .await
        .map_err(|e| {
            AwsError::api(
                Subject::other("ecs task definition", &task_definition),
                "DescribeTaskDefinition",
                e,
            )
        })?;
    let container = taskdef
        .task_definition()
        .and_then(|t| t.container_definitions().first())
        .cloned()
        .ok_or_else(|| {
            AwsCanaryError::Setup(format!(
                "task definition {task_definition} has no container"
            ))
        })?;
    let container_name = container.name().unwrap_or_default().to_string();
    let log = container
        .log_configuration()
        .map(|l| l.options().cloned().unwrap_or_default())
        .unwrap_or_default();
    let command = vec![
        "canary".to_string(),
        "--url".to_string(),
        url.to_string(),
        "--timeout".to_string(),
        timeout.as_secs().max(1).to_string(),
    ];
    let run = aws
        .ecs()
        .run_task()
        .cluster(cluster)
        .task_definition(&task_definition)
        .launch_type(LaunchType::Fargate)
        .count(1)
        .started_by("stackctl-canary")
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .set_subnets(Some(network.subnets().to_vec()))
                        .set_security_groups(Some(network.security_groups().to_vec()))
                        .assign_public_ip(
                            network
                                .assign_public_ip()
                                .cloned()
                                .unwrap_or(AssignPublicIp::Disabled),
                        )
                        .build()
                        .map_err(|e| AwsCanaryError::Setup(e.to_string()))?,
                )
                .build(),
        )
        .overrides(
            TaskOverride::builder()
                .container_overrides(
                    ContainerOverride::builder()
                        .name(&container_name)
                        .set_command(Some(command))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::api(Subject::other("ecs cluster", cluster), "RunTask", e))?;
    if let Some(f) = run.failures().first() {
        return Err(AwsCanaryError::Setup(format!(
            "RunTask failed: {} {}",
            f.reason().unwrap_or_default(),
            f.detail().unwrap_or_default()
        )));
    }
    let task_arn = run
        .tasks()
        .first()
        .and_then(|t| t.task_arn())
        .map(str::to_owned)
        .ok_or_else(|| AwsCanaryError::Setup("RunTask started no task".into()))?;
    progress.info(&format!("canary task {task_arn} started"));
    let task_id = task_arn.rsplit('/').next().unwrap_or_default().to_string();
    let group = log.get("awslogs-group").cloned().unwrap_or_default();
    let stream = format!(
        "{}/{container_name}/{task_id}",
        log.get("awslogs-stream-prefix")
            .map_or("ecs", String::as_str)
    );
    let deadline = Instant::now() + timeout + TASK_MARGIN;
    let stopped = loop {
        let out = aws
            .ecs()
            .describe_tasks()
            .cluster(cluster)
            .tasks(&task_arn)
            .send()
            .await
            .map_err(|e| {
                AwsError::api(Subject::other("ecs task", &task_arn), "DescribeTasks", e)
            })?;
        if let Some(t) = out.tasks().first()
            && t.last_status() == Some("STOPPED")
        {
            break t.clone();
        }
        if Instant::now() >= deadline {
            // Leave nothing running behind the check.
            let _ = aws
                .ecs()
                .stop_task()
                .cluster(cluster)
                .task(&task_arn)
                .reason("stackctl canary timed out")
                .send()
                .await;
            return Err(AwsCanaryError::Task {
                task: task_arn,
                what: format!(
                    "did not stop within {} s",
                    (timeout + TASK_MARGIN).as_secs()
                ),
                log_tail: stream_lines(aws, &group, &stream).await,
            });
        }
        tokio::time::sleep(POLL).await;
    };
    let lines = stream_lines(aws, &group, &stream).await;
    if let Some(outcome) = Outcome::find(&lines) {
        return Ok(outcome);
    }
    let exit = stopped
        .containers()
        .first()
        .and_then(|c| c.exit_code())
        .map_or("no exit code".to_string(), |c| format!("exit code {c}"));
    Err(AwsCanaryError::Task {
        task: task_arn,
        what: format!(
            "stopped ({}, {exit}: {}) without printing an outcome",
            stopped
                .stop_code()
                .map_or("no stop code".to_string(), |c| c.as_str().to_string()),
            stopped.stopped_reason().unwrap_or_default()
        ),
        log_tail: lines.iter().rev().take(TAIL_LINES).rev().cloned().collect(),
    })
}

/// Every line of one log stream (empty when it does not exist).
async fn stream_lines(aws: &Aws, group: &str, stream: &str) -> Vec<String> {
    if group.is_empty() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = match aws
            .logs()
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let e = AwsError::api(Subject::other("log stream", stream), "GetLogEvents", e);
                if !e.is_not_found() {
                    lines.push(format!("(cannot read log stream {stream}: {e})"));
                }
                return lines;
            }
        };
        let before = lines.len();
        lines.extend(
            page.events()
                .iter()
                .filter_map(|e| e.message().map(str::to_owned)),
        );
        match page.next_forward_token() {
            Some(t) if lines.len() > before && token.as_deref() != Some(t) => {
                token = Some(t.to_string());
            }
            _ => return lines,
        }
    }
}
