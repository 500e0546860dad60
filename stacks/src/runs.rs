//! A stack's runs, local or on AWS: list them (by function, status, time),
//! show one with its steps, attempts, timings and outputs, cancel one, and
//! replay one from the start or from its failed steps. Every operation is
//! one request to the engine's runs API (`/v1`), reached where it can be:
//!
//! - a local stack: its event API on loopback, with the token `up` wrote
//!   to the state directory (or the spec's);
//! - an AWS stack whose load balancer publishes `/v1` (`network.publish:
//!   all`) and answers from here: that address, with the token `up` stored
//!   in SSM. Replays never go this way: the event API's IAM role may send
//!   events only, and a replay sends step jobs;
//! - otherwise a one-off ECS task of the runner's task definition inside
//!   the VPC (`stackctl-engine runs-client`, [`engine::event_api::runs_client`]),
//!   which answers the request over the stack's own SQS queues and Redis
//!   with the runs API's own handlers and prints the answer to its log,
//!   read back from CloudWatch Logs. The runner's role may send step jobs
//!   and read Redis, and an internal event API needs no address.

use std::time::Duration;

use engine::backend::{Attempt, Event, Run, RunStatus, StepOutcome, StepRecord};
use engine::event_api::{ReplayFrom, Replayed, RunView};
use serde::Serialize;
use serde_json::Value;

use crate::spec::{LoadedSpec, Provider};

/// Time for a one-off task to start, answer and have its log read.
#[cfg(feature = "aws")]
const TASK_DEADLINE: Duration = Duration::from_secs(240);
/// Reads of a stopped task's log stream, a second apart, while its answer
/// is not all there yet.
#[cfg(feature = "aws")]
const LOG_REREADS: u32 = 10;
/// How long a direct request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a runs operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    /// The stack's runs API could not be found (not up, no token).
    #[error("{0}")]
    Stack(String),
    /// The AWS stack could not be opened.
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Aws(Box<crate::aws::ops::OpError>),
    /// The runs API could not be reached.
    #[error("cannot reach the runs API of stack `{stack}` at {url}: {message}")]
    Unreachable {
        /// The stack.
        stack: String,
        /// Where it was asked.
        url: String,
        /// Why, and what to do.
        message: String,
    },
    /// The one-off task inside the VPC failed.
    #[error("the runs-API task inside the VPC of stack `{stack}` failed: {message}")]
    Task {
        /// The stack.
        stack: String,
        /// What happened, with the end of its log.
        message: String,
    },
    /// The runs API answered an error.
    #[error("{what}: the runs API answered {status}: {message}")]
    Api {
        /// The request, e.g. `replay run 01K...`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The answer could not be read.
    #[error("{what}: cannot read the runs API's answer: {message}")]
    Decode {
        /// The request.
        what: String,
        /// Why.
        message: String,
    },
}

#[cfg(feature = "aws")]
impl From<crate::aws::ops::OpError> for RunsError {
    fn from(e: crate::aws::ops::OpError) -> Self {
        Self::Aws(Box::new(e))
    }
}

impl RunsError {
    /// Whether the run (or event) asked about does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }
}

/// What `list` selects.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only runs of this function.
    pub function: Option<String>,
    /// Only runs of this status.
    pub status: Option<RunStatus>,
    /// Only runs created within this long before now.
    pub since: Option<Duration>,
    /// Most runs listed.
    pub limit: usize,
}

/// Where the runs API was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Via {
    /// Over HTTP from here.
    Http {
        /// The runs API's base URL.
        url: String,
    },
    /// Through a one-off ECS task inside the VPC.
    Task {
        /// The ECS service whose task definition the task ran.
        service: String,
    },
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { url } => write!(f, "{url}"),
            Self::Task { service } => {
                write!(f, "a one-off task of ECS service {service} inside the VPC")
            }
        }
    }
}

/// One run in a list.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// Its function.
    pub function_id: String,
    /// Its status.
    pub status: RunStatus,
    /// The triggering event's name.
    pub event_name: String,
    /// The triggering event's internal id.
    pub event_id: String,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// How long it ran (so far, while running).
    pub duration_ms: i64,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunSummary {
    fn of(run: &Run, now: i64) -> Self {
        Self {
            id: run.id.clone(),
            function_id: run.function_id.clone(),
            status: run.status,
            event_name: run.event.name.clone(),
            event_id: run.event.internal_id.clone(),
            created_at: run.created_at,
            ended_at: run.ended_at,
            duration_ms: run.ended_at.unwrap_or(now).saturating_sub(run.created_at),
            error: run.error.clone(),
        }
    }
}

/// `list`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct RunList {
    /// The stack.
    pub stack: String,
    /// `local` or `aws`.
    pub provider: &'static str,
    /// Where the runs API was reached.
    pub via: Via,
    /// Most recent first.
    pub runs: Vec<RunSummary>,
    /// More runs match than are listed (raise `--limit`, narrow `--since`).
    pub more: bool,
}

/// A step's state in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Completed with an output.
    Completed,
    /// Skipped (its `if`, or a skipped predecessor).
    Skipped,
    /// Failed after its retries.
    Failed,
    /// Picked up, no outcome yet.
    Running,
}

/// A step of a shown run.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// The step id.
    pub step_id: String,
    /// Its state.
    pub status: StepStatus,
    /// Its output, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When its first attempt started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When its outcome was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// From the first attempt's start to the outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Its outcome was copied from the run this one replays (it ended
    /// before this run was created).
    pub copied: bool,
    /// Every attempt, with its timings, error and executor host.
    pub attempts: Vec<Attempt>,
}

impl StepView {
    fn of(record: StepRecord, run_created: i64) -> Self {
        let (status, output, error) = match record.outcome {
            Some(StepOutcome::Completed { output }) => (StepStatus::Completed, Some(output), None),
            Some(StepOutcome::Skipped) => (StepStatus::Skipped, None, None),
            Some(StepOutcome::Failed { error }) => (StepStatus::Failed, None, Some(error)),
            None => (StepStatus::Running, None, None),
        };
        Self {
            step_id: record.step_id,
            status,
            output,
            error,
            started_at: record.started_at,
            ended_at: record.ended_at,
            duration_ms: record
                .started_at
                .zip(record.ended_at)
                .map(|(s, e)| e.saturating_sub(s)),
            copied: record.ended_at.is_some_and(|e| e < run_created),
            attempts: record.attempts,
        }
    }
}

/// `show`'s report: a run with its steps, in the order they started.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    /// The stack.
    pub stack: String,
    /// `local` or `aws`.
    pub provider: &'static str,
    /// Where the runs API was reached.
    pub via: Via,
    /// The run.
    pub run: RunSummary,
    /// Its triggering event.
    pub event: Event,
    /// Its steps.
    pub steps: Vec<StepView>,
    /// The id of its trace, when the engine traced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `cancel`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct Cancelled {
    /// The stack.
    pub stack: String,
    /// `local` or `aws`.
    pub provider: &'static str,
    /// Where the runs API was reached.
    pub via: Via,
    /// The run.
    pub id: String,
    /// Its status now.
    pub status: RunStatus,
    /// `true` if this call cancelled it; `false` if it had ended already.
    pub cancelled: bool,
}

/// `replay`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The stack.
    pub stack: String,
    /// `local` or `aws`.
    pub provider: &'static str,
    /// Where the runs API was reached.
    pub via: Via,
    /// The new run.
    #[serde(flatten)]
    pub replay: Replayed,
}

/// Lists the stack's runs, most recent first.
pub async fn list(loaded: &LoadedSpec, opts: &ListOptions) -> Result<RunList, RunsError> {
    list_via(RunsApi::open(loaded, Op::Read).await?, opts).await
}

/// [`list`] where the runs API answers over HTTP from here (a local stack,
/// an AWS stack whose load balancer publishes `/v1`); a stack reached only
/// through a one-off task inside the VPC is an error that says so.
pub async fn list_direct(loaded: &LoadedSpec, opts: &ListOptions) -> Result<RunList, RunsError> {
    list_via(RunsApi::open(loaded, Op::QuickRead).await?, opts).await
}

/// [`list_direct`] for an AWS stack whose AWS context the caller opened
/// already (`status`), so the stack is not opened a second time.
#[cfg(feature = "aws")]
pub async fn list_direct_on(
    aws: crate::aws::Aws,
    loaded: &LoadedSpec,
    opts: &ListOptions,
) -> Result<RunList, RunsError> {
    list_via(RunsApi::aws_on(loaded, Op::QuickRead, aws).await?, opts).await
}

async fn list_via(api: RunsApi, opts: &ListOptions) -> Result<RunList, RunsError> {
    let mut query = vec![format!("limit={}", opts.limit.max(1))];
    if let Some(f) = &opts.function {
        query.push(format!("function={}", encode(f)));
    }
    if let Some(s) = opts.status {
        query.push(format!("status={}", status_str(s)));
    }
    let now = now_ms();
    if let Some(since) = opts.since {
        let ago = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
        query.push(format!("since={}", now.saturating_sub(ago)));
    }
    let path = format!("/v1/runs?{}", query.join("&"));
    let body: Value = api.call("list runs", "GET", &path, None).await?;
    let runs: Vec<Run> = decode("list runs", body["runs"].clone())?;
    Ok(RunList {
        stack: api.stack.clone(),
        provider: api.provider,
        via: api.via.clone(),
        runs: runs.iter().map(|r| RunSummary::of(r, now)).collect(),
        more: body["more"].as_bool().unwrap_or(false),
    })
}

/// One run with its steps.
pub async fn show(loaded: &LoadedSpec, run_id: &str) -> Result<RunDetail, RunsError> {
    let api = RunsApi::open(loaded, Op::Read).await?;
    let what = format!("show run {run_id}");
    let body = api
        .call(&what, "GET", &format!("/v1/runs/{}", encode(run_id)), None)
        .await?;
    let view: RunView = decode(&what, body)?;
    let created = view.run.created_at;
    let mut steps: Vec<StepView> = view
        .steps
        .into_iter()
        .map(|s| StepView::of(s, created))
        .collect();
    steps.sort_by(|a, b| {
        (a.started_at.or(a.ended_at), &a.step_id).cmp(&(b.started_at.or(b.ended_at), &b.step_id))
    });
    Ok(RunDetail {
        stack: api.stack.clone(),
        provider: api.provider,
        via: api.via.clone(),
        run: RunSummary::of(&view.run, now_ms()),
        event: view.run.event,
        steps,
        trace_id: view.trace_id,
    })
}

/// Cancels a running run (an ended one is left as it is).
pub async fn cancel(loaded: &LoadedSpec, run_id: &str) -> Result<Cancelled, RunsError> {
    let api = RunsApi::open(loaded, Op::Read).await?;
    let what = format!("cancel run {run_id}");
    let body = api
        .call(
            &what,
            "POST",
            &format!("/v1/runs/{}/cancel", encode(run_id)),
            None,
        )
        .await?;
    Ok(Cancelled {
        stack: api.stack.clone(),
        provider: api.provider,
        via: api.via.clone(),
        id: run_id.to_string(),
        status: decode(&what, body["status"].clone())?,
        cancelled: body["cancelled"].as_bool().unwrap_or(false),
    })
}

/// Replays an ended run as a new run of the same function and event.
pub async fn replay(
    loaded: &LoadedSpec,
    run_id: &str,
    from: ReplayFrom,
) -> Result<ReplayReport, RunsError> {
    let api = RunsApi::open(loaded, Op::Replay).await?;
    let what = format!("replay run {run_id}");
    let body = api
        .call(
            &what,
            "POST",
            &format!("/v1/runs/{}/replay", encode(run_id)),
            Some(serde_json::json!({ "from": from })),
        )
        .await?;
    Ok(ReplayReport {
        stack: api.stack.clone(),
        provider: api.provider,
        via: api.via.clone(),
        replay: decode(&what, body)?,
    })
}

/// What an operation does, which decides how an AWS stack is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Reads, and cancelling (a write to the state store only).
    Read,
    /// Sends step jobs to the work queue.
    Replay,
    /// Reads only over HTTP from here, never through a one-off task
    /// (which takes a minute or more): for `status`.
    QuickRead,
}

/// The runs API of one stack, and how it is reached.
struct RunsApi {
    stack: String,
    provider: &'static str,
    via: Via,
    transport: Transport,
}

enum Transport {
    Http {
        base: String,
        token: String,
        client: reqwest::Client,
    },
    #[cfg(feature = "aws")]
    Task {
        aws: crate::aws::Aws,
        cluster: String,
        service: String,
    },
}

impl RunsApi {
    async fn open(loaded: &LoadedSpec, op: Op) -> Result<Self, RunsError> {
        match loaded.spec.provider {
            Provider::Local => Self::local(loaded),
            Provider::Aws => Self::aws(loaded, op).await,
        }
    }

    fn local(loaded: &LoadedSpec) -> Result<Self, RunsError> {
        let target =
            crate::bench::Target::from_spec(loaded).map_err(|e| RunsError::Stack(e.to_string()))?;
        let token = target.api_token.ok_or_else(|| {
            RunsError::Stack(format!(
                "stack `{}` has no runs-API token: the spec sets no `api_token` and `stackctl up {}` \
                 has not run (it writes one into the state directory)",
                loaded.spec.stack,
                loaded.path.display()
            ))
        })?;
        Ok(Self::http(loaded, "local", target.event_api, token))
    }

    fn http(loaded: &LoadedSpec, provider: &'static str, base: String, token: String) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            stack: loaded.spec.stack.clone(),
            provider,
            via: Via::Http {
                url: format!("{base}/v1"),
            },
            transport: Transport::Http {
                base,
                token,
                client,
            },
        }
    }

    #[cfg(not(feature = "aws"))]
    async fn aws(loaded: &LoadedSpec, _op: Op) -> Result<Self, RunsError> {
        Err(RunsError::Stack(format!(
            "stack `{}` has `provider: aws`, and this build has no AWS provider",
            loaded.spec.stack
        )))
    }

    #[cfg(feature = "aws")]
    async fn aws(loaded: &LoadedSpec, op: Op) -> Result<Self, RunsError> {
        Self::published(loaded, op)?;
        let opened = crate::aws::ops::open(
            loaded,
            crate::aws::lock::ForceUnlock::No,
            &crate::progress::Silent,
        )
        .await?;
        Self::aws_on(loaded, op, opened.aws).await
    }

    /// Whether the stack's load balancer publishes the runs API; for a
    /// quick read, an unpublished one is an error (before any AWS call).
    #[cfg(feature = "aws")]
    fn published(loaded: &LoadedSpec, op: Op) -> Result<bool, RunsError> {
        use crate::spec::{Connection, Publish};

        let network = &loaded.spec.network;
        let published = network.publish == Publish::All
            && matches!(network.event_api, Connection::Public | Connection::VpcLink);
        if op == Op::QuickRead && !published {
            return Err(RunsError::Stack(format!(
                "stack `{}` publishes no runs API outside its VPC (`network.publish: all` \
                 does), and a one-off task inside it takes a minute or more",
                loaded.spec.stack
            )));
        }
        Ok(published)
    }

    /// The runs API of an AWS stack through an opened AWS context.
    #[cfg(feature = "aws")]
    async fn aws_on(loaded: &LoadedSpec, op: Op, aws: crate::aws::Aws) -> Result<Self, RunsError> {
        use crate::bench::aws::{AwsNames, check_reachable, discover};

        let published = Self::published(loaded, op)?;
        let stack_err = |e: crate::bench::BenchError| RunsError::Stack(e.to_string());
        let names = AwsNames::of(loaded).map_err(stack_err)?;
        if published && matches!(op, Op::Read | Op::QuickRead) {
            let target = discover(&aws, loaded, None).await.map_err(stack_err)?;
            let reachable =
                check_reachable(&target.event_api, names.connection, Duration::from_secs(3))
                    .await
                    .is_ok();
            if let (true, Some(token)) = (reachable, target.api_token) {
                return Ok(Self::http(loaded, "aws", target.event_api, token));
            }
            if op == Op::QuickRead {
                return Err(RunsError::Stack(format!(
                    "the runs API of stack `{}` at {} does not answer from here",
                    loaded.spec.stack, target.event_api
                )));
            }
        }
        let service = names
            .services
            .iter()
            .find(|(role, _)| role == "runner")
            .map(|(_, s)| s.clone())
            .ok_or_else(|| {
                RunsError::Stack(format!("stack `{}` has no runner service", names.stack))
            })?;
        Ok(Self {
            stack: loaded.spec.stack.clone(),
            provider: "aws",
            via: Via::Task {
                service: service.clone(),
            },
            transport: Transport::Task {
                aws,
                cluster: names.cluster,
                service,
            },
        })
    }

    /// One request; the answer's JSON when it is a 2xx.
    async fn call(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, RunsError> {
        let (status, text) = match &self.transport {
            Transport::Http {
                base,
                token,
                client,
            } => {
                let url = format!("{base}{path}");
                let mut req = match method {
                    "POST" => client.post(&url),
                    _ => client.get(&url),
                };
                req = req.bearer_auth(token);
                if let Some(b) = &body {
                    req = req.json(b);
                }
                let resp = req.send().await.map_err(|e| RunsError::Unreachable {
                    stack: self.stack.clone(),
                    url: format!("{base}/v1"),
                    message: format!(
                        "{}; is the stack up? (`stackctl status`, `stackctl up FILE`)",
                        error_chain(&e)
                    ),
                })?;
                let status = resp.status().as_u16();
                let text = resp.text().await.map_err(|e| RunsError::Decode {
                    what: what.to_string(),
                    message: error_chain(&e),
                })?;
                (status, text)
            }
            #[cfg(feature = "aws")]
            Transport::Task {
                aws,
                cluster,
                service,
            } => {
                let request = engine::event_api::runs_client::Request {
                    method: method.to_string(),
                    path: path.to_string(),
                    body,
                };
                self.in_vpc(aws, cluster, service, &request).await?
            }
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| RunsError::Decode {
            what: what.to_string(),
            message: format!("{e} (HTTP {status}: {})", clip(&text)),
        })?;
        if !(200..300).contains(&status) {
            let message = value["error"]
                .as_str()
                .map_or_else(|| clip(&text), str::to_string);
            return Err(RunsError::Api {
                what: what.to_string(),
                status,
                message,
            });
        }
        Ok(value)
    }

    /// Runs `request` in a one-off task and reads its answer from the log.
    #[cfg(feature = "aws")]
    async fn in_vpc(
        &self,
        aws: &crate::aws::Aws,
        cluster: &str,
        service: &str,
        request: &engine::event_api::runs_client::Request,
    ) -> Result<(u16, String), RunsError> {
        use crate::aws::task;
        use engine::event_api::runs_client::Collector;

        let failed = |message: String| RunsError::Task {
            stack: self.stack.clone(),
            message,
        };
        let command = vec![
            "runs-client".to_string(),
            "--request".to_string(),
            serde_json::to_string(request).expect("a request serializes"),
        ];
        let started = task::start(aws, cluster, service, command, 1, "stackctl-runs")
            .await
            .map_err(|e| failed(e.to_string()))?;
        let waited = started
            .wait(aws, std::time::Instant::now() + TASK_DEADLINE)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let Some(result) = waited.into_iter().next() else {
            return Err(failed("RunTask started no task".into()));
        };
        let (mut stopped, timed_out) = match result {
            Ok(s) => (s, false),
            Err(s) => (s, true),
        };
        let collect = |lines: &[String]| {
            let mut collector = Collector::default();
            for line in lines {
                collector.push(line);
            }
            collector.finish()
        };
        let mut answer = collect(&stopped.lines);
        // CloudWatch Logs may show a stream's last events a little after
        // the task stopped: a task that answered (exit 0) gets a few reads.
        if !timed_out && stopped.exit_code == Some(0) {
            let stream = started.tasks.first().map(|(_, s)| s.as_str());
            let mut reads = 0;
            while let (Err(_), Some(stream)) = (&answer, stream) {
                if reads == LOG_REREADS {
                    break;
                }
                reads += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                stopped.lines = task::stream_lines(aws, &started.group, stream).await;
                answer = collect(&stopped.lines);
            }
        }
        answer.map_err(|why| failed(stopped.failure("task", timed_out, &why, 20)))
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, RunsError> {
    serde_json::from_value(value).map_err(|e| RunsError::Decode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// `running`, `failed`, ... as the runs API spells them.
pub fn status_str(status: RunStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Percent-encodes what is not unreserved in a URL path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn clip(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("shop/order.paid v2"), "shop%2Forder.paid%20v2");
        assert_eq!(encode("01K-abc_~"), "01K-abc_~");
    }

    #[test]
    fn a_step_that_ended_before_its_run_was_copied() {
        let rec = StepRecord {
            step_id: "a".into(),
            attempts: Vec::new(),
            outcome: Some(StepOutcome::Completed {
                output: serde_json::json!(1),
            }),
            started_at: Some(10),
            ended_at: Some(20),
        };
        let v = StepView::of(rec.clone(), 100);
        assert!(v.copied);
        assert_eq!(v.duration_ms, Some(10));
        assert_eq!(v.status, StepStatus::Completed);
        assert!(!StepView::of(rec, 15).copied);
    }
}
