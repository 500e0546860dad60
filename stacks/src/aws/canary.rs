//! The end-to-end check of an AWS stack, from inside its VPC: a one-off ECS
//! task of the event API's own task definition (same image, subnets,
//! security group and SSM secrets) runs `stackctl-engine canary` against the
//! event API's in-VPC address, and its outcome comes back through ECS
//! (`DescribeTasks`: the exit code) and CloudWatch Logs (the outcome line).
//! On failure the report names the stage and carries the end of the log of
//! the service at fault. A completed run also says which executor host ran
//! its step; that host must be an instance of the executors' group on the
//! group's launch template version, so a stack whose new hosts never took
//! work does not pass.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use engine::canary::{CanaryError, CanaryReport, Outcome, Stage};

use super::context::Aws;
use super::error::AwsError;
use super::resolve::Outputs;
use super::rollout::{self, HostInstance};
use super::task::{self, TaskError};
use crate::graph::{Attributes, Graph, LogicalId};
use crate::progress::Progress;

/// Time for the task to start and its log to arrive, on top of the canary's own timeout.
const TASK_MARGIN: Duration = Duration::from_secs(120);
/// Lines of the failing service's log shown with a failure.
const TAIL_LINES: usize = 20;
/// Canary runs whose step a host of an older launch template version (one
/// being replaced) took, before that counts as a failure.
const STALE_ATTEMPTS: u32 = 3;

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

impl From<TaskError> for AwsCanaryError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Aws(e) => Self::Aws(e),
            TaskError::Setup(m) => Self::Setup(m),
        }
    }
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

/// Where the canary reaches the event API inside the VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InVpc {
    /// The base URL: the Cloud Map name (`internal_dns`), else the load
    /// balancer's DNS name and listener port (`public` over plain HTTP, and
    /// the internal load balancer behind a `vpc_link`), else
    /// `https://DOMAIN` for an HTTPS `public` event API.
    pub url: String,
    /// For HTTPS: the load balancer's `DNS:PORT`, where connections to the
    /// domain go (its DNS record is the user's to make, and the canary
    /// checks the certificate against the domain).
    pub connect_to: Option<String>,
}

/// The event API's address inside the VPC; `None` for `internal`.
pub fn in_vpc_event_api(graph: &Graph, outputs: &BTreeMap<LogicalId, Outputs>) -> Option<InVpc> {
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
        return Some(InVpc {
            url: format!("http://{}.{}:{port}", service.name, namespace.name),
            connect_to: None,
        });
    }
    let dns = super::output_value(outputs, "elb.load-balancer", "dns_name")?;
    let listener =
        graph
            .get(&LogicalId::new("elb.listener"))
            .and_then(|l| match &l.attributes {
                Attributes::Listener(l) => Some(l),
                _ => None,
            })?;
    Some(match &graph.event_api_domain {
        Some(domain) if listener.protocol == "HTTPS" => InVpc {
            url: format!("https://{domain}"),
            connect_to: Some(format!("{dns}:{}", listener.port)),
        },
        _ if listener.port != 80 => InVpc {
            url: format!("http://{dns}:{}", listener.port),
            connect_to: None,
        },
        _ => InVpc {
            url: format!("http://{dns}"),
            connect_to: None,
        },
    })
}

/// A canary run that completed, and the executor host that ran its step.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The canary's report.
    pub canary: CanaryReport,
    /// The executors' instance that ran the step, when the stack has a group.
    pub executor: Option<HostInstance>,
}

/// Runs the canary task and waits for its outcome, at most the canary
/// timeout plus the time a task needs to start; then checks the executor
/// host that ran the step.
pub async fn run(
    aws: &Aws,
    graph: &Graph,
    outputs: &BTreeMap<LogicalId, Outputs>,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Verified, AwsCanaryError> {
    let name = |id: &str| {
        graph
            .get(&LogicalId::new(id))
            .map(|r| r.name.clone())
            .ok_or_else(|| AwsCanaryError::Setup(format!("the stack has no `{id}`")))
    };
    let cluster = name("ecs.cluster")?;
    let service = name("ecs.service.event-api")?;
    let target = in_vpc_event_api(graph, outputs).ok_or_else(|| {
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
        &format!("running the canary inside the VPC against {}", target.url),
    );
    let mut attempt = 1;
    let error = loop {
        match run_task(aws, &cluster, &service, &target, timeout, progress).await {
            Ok(Outcome::Completed(report)) => match check_executor(aws, graph, &report).await {
                Ok(executor) => {
                    let on = executor.as_ref().map_or(String::new(), |e| {
                        format!(
                            ", its step on executor {} (launch template version {})",
                            e.instance_id,
                            e.launch_template_version.as_deref().unwrap_or("?")
                        )
                    });
                    progress.ok(
                        "canary",
                        &format!(
                            "canary run {} completed in {} ms (task {:.1} s){on}",
                            report.run_id,
                            report.millis,
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    return Ok(Verified {
                        canary: report,
                        executor,
                    });
                }
                // A host being replaced may take one more job while it
                // drains: send another canary for a current host to take.
                Err(Check::Stale(failure)) if attempt < STALE_ATTEMPTS => {
                    progress.info(&format!("{}; running the canary again", failure.message));
                    attempt += 1;
                }
                Err(Check::Stale(failure) | Check::Failed(failure)) => {
                    break failed(aws, graph, failure, since).await;
                }
            },
            Ok(Outcome::Failed(failure)) => break failed(aws, graph, failure, since).await,
            Err(e) => break e,
        }
    };
    progress.fail(
        "canary",
        error
            .stage()
            .map_or("the canary did not finish", Stage::describe),
    );
    Err(error)
}

/// Why the host that ran the canary's step does not do.
enum Check {
    /// A host outside the group's current version (one being replaced, or
    /// already detached from the group): worth another canary run.
    Stale(CanaryError),
    /// Anything else.
    Failed(CanaryError),
}

/// The executors' instance that ran the canary's step, which must be on
/// the group's launch template version. Reading AWS failing is no verdict
/// on the stack and is reported as such.
async fn check_executor(
    aws: &Aws,
    graph: &Graph,
    report: &CanaryReport,
) -> Result<Option<HostInstance>, Check> {
    let Some(group) = graph.get(&LogicalId::new("autoscaling.group.executors")) else {
        return Ok(None);
    };
    let step = |message: String| CanaryError {
        stage: Stage::Step,
        message,
    };
    let host = report.executor.as_deref().ok_or_else(|| {
        Check::Failed(step(format!(
            "canary run {} completed, but its step's attempt names no executor host",
            report.run_id
        )))
    })?;
    let lookup = rollout::host_instance(aws, &group.name, host)
        .await
        .map_err(|e| Check::Failed(step(format!("cannot look up executor host {host}: {e}"))))?;
    let version = lookup.group_version;
    match lookup.instance {
        None => Err(Check::Stale(step(format!(
            "canary run {} completed on host {host}, which is no instance of the executors' \
             group {}: no executor of the group has run a step",
            report.run_id, group.name
        )))),
        Some(i)
            if version.is_some()
                && i.launch_template_version.is_some()
                && i.launch_template_version != version =>
        {
            Err(Check::Stale(step(format!(
                "canary run {} completed on executor {} of launch template version {}, not \
                 the group's version {}: no executor of the current version has run a step",
                report.run_id,
                i.instance_id,
                i.launch_template_version.as_deref().unwrap_or("?"),
                version.as_deref().unwrap_or("?")
            ))))
        }
        Some(i) => Ok(Some(i)),
    }
}

/// A failed stage, with the end of the log of the service at fault.
async fn failed(
    aws: &Aws,
    graph: &Graph,
    failure: CanaryError,
    since: SystemTime,
) -> AwsCanaryError {
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
    target: &InVpc,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Outcome, AwsCanaryError> {
    // The run is followed in the state store: a load balancer publishes
    // only the event paths unless the spec says otherwise.
    let mut command = vec![
        "canary".to_string(),
        "--url".to_string(),
        target.url.clone(),
        "--runs".to_string(),
        "store".to_string(),
        "--timeout".to_string(),
        timeout.as_secs().max(1).to_string(),
    ];
    if let Some(address) = &target.connect_to {
        command.extend(["--connect-to".to_string(), address.clone()]);
    }
    let tasks = task::start(aws, cluster, service, command, 1, "stackctl-canary").await?;
    progress.info(&format!("canary task {} started", tasks.tasks[0].0));
    let stopped = tasks
        .wait(aws, Instant::now() + timeout + TASK_MARGIN)
        .await?
        .remove(0);
    let stopped = match stopped {
        Ok(s) => s,
        Err(s) => {
            return Err(AwsCanaryError::Task {
                task: s.task,
                what: format!(
                    "did not stop within {} s",
                    (timeout + TASK_MARGIN).as_secs()
                ),
                log_tail: s.lines,
            });
        }
    };
    if let Some(outcome) = Outcome::find(&stopped.lines) {
        return Ok(outcome);
    }
    let exit = stopped
        .exit_code
        .map_or("no exit code".to_string(), |c| format!("exit code {c}"));
    Err(AwsCanaryError::Task {
        task: stopped.task,
        what: format!(
            "stopped ({exit}, {}) without printing an outcome",
            stopped.reason
        ),
        log_tail: stopped
            .lines
            .iter()
            .rev()
            .take(TAIL_LINES)
            .rev()
            .cloned()
            .collect(),
    })
}
