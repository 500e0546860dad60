//! One-off ECS tasks run like a service's own tasks: the task definition of
//! the service's primary deployment (same image, role, SSM secrets and log
//! group) in the service's subnets and security groups, with the container's
//! command replaced. The canary and the load agents of `bench` run this way
//! inside a stack's VPC; their results come back through ECS
//! (`DescribeTasks`) and CloudWatch Logs (each task's log stream).

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, LaunchType, NetworkConfiguration,
    TaskOverride,
};

use super::context::Aws;
use super::error::{AwsError, Subject};

/// How often the tasks' state is read.
const POLL: Duration = Duration::from_secs(1);
/// Tasks one RunTask call may start.
const RUN_TASK_MAX: usize = 10;

/// Why one-off tasks could not be run.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The stack lacks what the task needs (no service, no deployment).
    #[error("{0}")]
    Setup(String),
}

/// Tasks started by [`start`].
#[derive(Debug, Clone)]
pub struct OneOffs {
    /// The cluster.
    pub cluster: String,
    /// The container's log group.
    pub group: String,
    /// (task ARN, log stream) of each task.
    pub tasks: Vec<(String, String)>,
}

/// A task that stopped, with its log.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// The task ARN.
    pub task: String,
    /// Every line of its log stream.
    pub lines: Vec<String>,
    /// Its container's exit code, if it has one.
    pub exit_code: Option<i32>,
    /// Why it stopped: the stop code and ECS's reason.
    pub reason: String,
}

impl Stopped {
    /// Says why a task's answer was unusable (`why`), with how it ended
    /// (stopped, or not finished by its deadline: `timed_out`) and the last
    /// `tail` lines of its log, for an operator to act on.
    pub fn failure(&self, what: &str, timed_out: bool, why: &str, tail: usize) -> String {
        let start = self.lines.len().saturating_sub(tail);
        let tail = &self.lines[start..];
        format!(
            "{what} {} {} ({}, exit code {}): {why}; the end of its log:\n    {}",
            self.task,
            if timed_out {
                "did not finish in time"
            } else {
                "stopped"
            },
            self.reason,
            self.exit_code.map_or("none".to_string(), |c| c.to_string()),
            if tail.is_empty() {
                "(no log lines)".to_string()
            } else {
                tail.join("\n    ")
            }
        )
    }
}

/// Starts `count` tasks of `service`'s primary task definition running
/// `command`, tagged `started_by`.
pub async fn start(
    aws: &Aws,
    cluster: &str,
    service: &str,
    command: Vec<String>,
    count: usize,
    started_by: &str,
) -> Result<OneOffs, TaskError> {
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
        .ok_or_else(|| TaskError::Setup(format!("ECS service {service} does not exist")))?;
    let task_definition = svc
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.task_definition())
        .map(str::to_owned)
        .ok_or_else(|| TaskError::Setup(format!("ECS service {service} has no deployment")))?;
    let network = svc
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .cloned()
        .ok_or_else(|| TaskError::Setup(format!("ECS service {service} has no awsvpc network")))?;
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
            TaskError::Setup(format!(
                "task definition {task_definition} has no container"
            ))
        })?;
    let container_name = container.name().unwrap_or_default().to_string();
    let log = container
        .log_configuration()
        .map(|l| l.options().cloned().unwrap_or_default())
        .unwrap_or_default();
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(network.subnets().to_vec()))
        .set_security_groups(Some(network.security_groups().to_vec()))
        .assign_public_ip(
            network
                .assign_public_ip()
                .cloned()
                .unwrap_or(AssignPublicIp::Disabled),
        )
        .build()
        .map_err(|e| TaskError::Setup(e.to_string()))?;
    let prefix = log
        .get("awslogs-stream-prefix")
        .map_or("ecs", String::as_str)
        .to_string();
    let mut out = OneOffs {
        cluster: cluster.to_string(),
        group: log.get("awslogs-group").cloned().unwrap_or_default(),
        tasks: Vec::with_capacity(count),
    };
    while out.tasks.len() < count {
        let batch = (count - out.tasks.len()).min(RUN_TASK_MAX);
        let run = aws
            .ecs()
            .run_task()
            .cluster(cluster)
            .task_definition(&task_definition)
            .launch_type(LaunchType::Fargate)
            .count(i32::try_from(batch).unwrap_or(1))
            .started_by(started_by)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc.clone())
                    .build(),
            )
            .overrides(
                TaskOverride::builder()
                    .container_overrides(
                        ContainerOverride::builder()
                            .name(&container_name)
                            .set_command(Some(command.clone()))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::api(Subject::other("ecs cluster", cluster), "RunTask", e));
        let run = match run {
            Ok(r) => r,
            Err(e) => {
                out.stop_all(aws, "stackctl: starting the other tasks failed")
                    .await;
                return Err(e.into());
            }
        };
        if let Some(f) = run.failures().first() {
            out.stop_all(aws, "stackctl: starting the other tasks failed")
                .await;
            return Err(TaskError::Setup(format!(
                "RunTask failed: {} {}",
                f.reason().unwrap_or_default(),
                f.detail().unwrap_or_default()
            )));
        }
        let before = out.tasks.len();
        out.tasks.extend(run.tasks().iter().filter_map(|t| {
            let arn = t.task_arn()?.to_string();
            let id = arn.rsplit('/').next().unwrap_or_default().to_string();
            Some((arn, format!("{prefix}/{container_name}/{id}")))
        }));
        if out.tasks.len() == before {
            out.stop_all(aws, "stackctl: starting the other tasks failed")
                .await;
            return Err(TaskError::Setup("RunTask started no task".into()));
        }
    }
    Ok(out)
}

impl OneOffs {
    /// Waits until every task stopped, reading each one's log once it did.
    /// At `deadline` the tasks still running are stopped and reported as
    /// the `Err` of their slot.
    pub async fn wait(
        &self,
        aws: &Aws,
        deadline: Instant,
    ) -> Result<Vec<Result<Stopped, Stopped>>, TaskError> {
        let mut done: Vec<Option<Result<Stopped, Stopped>>> = vec![None; self.tasks.len()];
        loop {
            let pending: Vec<usize> = (0..self.tasks.len())
                .filter(|&i| done[i].is_none())
                .collect();
            if pending.is_empty() {
                return Ok(done.into_iter().flatten().collect());
            }
            for chunk in pending.chunks(100) {
                let out = aws
                    .ecs()
                    .describe_tasks()
                    .cluster(&self.cluster)
                    .set_tasks(Some(
                        chunk.iter().map(|&i| self.tasks[i].0.clone()).collect(),
                    ))
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError::api(
                            Subject::other("ecs cluster", &self.cluster),
                            "DescribeTasks",
                            e,
                        )
                    })?;
                for t in out.tasks() {
                    if t.last_status() != Some("STOPPED") {
                        continue;
                    }
                    let Some(i) = chunk
                        .iter()
                        .copied()
                        .find(|&i| Some(self.tasks[i].0.as_str()) == t.task_arn())
                    else {
                        continue;
                    };
                    let (task, stream) = &self.tasks[i];
                    done[i] = Some(Ok(Stopped {
                        task: task.clone(),
                        lines: stream_lines(aws, &self.group, stream).await,
                        exit_code: t.containers().first().and_then(|c| c.exit_code()),
                        reason: format!(
                            "{}: {}",
                            t.stop_code().map_or("no stop code", |c| c.as_str()),
                            t.stopped_reason().unwrap_or_default()
                        ),
                    }));
                }
            }
            if Instant::now() >= deadline {
                for (slot, (task, stream)) in done.iter_mut().zip(&self.tasks) {
                    if slot.is_some() {
                        continue;
                    }
                    // Leave nothing running behind the check.
                    let _ = aws
                        .ecs()
                        .stop_task()
                        .cluster(&self.cluster)
                        .task(task)
                        .reason("stackctl: timed out")
                        .send()
                        .await;
                    *slot = Some(Err(Stopped {
                        task: task.clone(),
                        lines: stream_lines(aws, &self.group, stream).await,
                        exit_code: None,
                        reason: "did not stop in time".into(),
                    }));
                }
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops every task (best effort: used when giving up).
    pub async fn stop_all(&self, aws: &Aws, reason: &str) {
        for (task, _) in &self.tasks {
            let _ = aws
                .ecs()
                .stop_task()
                .cluster(&self.cluster)
                .task(task)
                .reason(reason)
                .send()
                .await;
        }
    }
}

/// Every line of one log stream (empty when it does not exist; a line
/// saying why when it cannot be read).
pub async fn stream_lines(aws: &Aws, group: &str, stream: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_task_how_it_ended_and_the_end_of_its_log() {
        let stopped = Stopped {
            task: "arn:task/1".into(),
            lines: (1..=5).map(|i| format!("line {i}")).collect(),
            exit_code: Some(3),
            reason: "EssentialContainerExited: exited".into(),
        };
        assert_eq!(
            stopped.failure("agent task", false, "no report", 2),
            "agent task arn:task/1 stopped (EssentialContainerExited: exited, exit code 3): \
             no report; the end of its log:\n    line 4\n    line 5"
        );
        let silent = Stopped {
            lines: Vec::new(),
            exit_code: None,
            ..stopped
        };
        assert_eq!(
            silent.failure("task", true, "no answer", 20),
            "task arn:task/1 did not finish in time (EssentialContainerExited: exited, exit \
             code none): no answer; the end of its log:\n    (no log lines)"
        );
    }
}
