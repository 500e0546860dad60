//! The deployment check every stack runs after `up`: the built-in canary
//! function (one short durable sleep, so a run crosses the event stream, the
//! runner, the state store, the delayed work queue and an executor without
//! any outside service) and the client that sends its event through the
//! event API and follows its run through the runs API until it completes.
//!
//! The local provider calls [`check`] from `stackctl`, following the run
//! through the runs API; on AWS the same code runs inside the VPC as
//! `stackctl-engine canary` in a one-off task of the event API's task
//! definition, follows the run in the state store itself (a load balancer
//! need not publish the runs API), and its one-line JSON result is read
//! back from the task's log.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::{RunStatus, StateStore};
use crate::functions::{Duration as SpecDuration, FunctionDef, Step, Trigger};

/// The canary function's id.
pub const CANARY_FUNCTION: &str = "stackctl-canary";
/// The event that triggers it.
pub const CANARY_EVENT: &str = "stackctl/canary";

const POLL: Duration = Duration::from_millis(100);

/// The canary: one short `sleep` step.
pub fn canary_function() -> FunctionDef {
    FunctionDef {
        id: CANARY_FUNCTION.into(),
        name: Some("stackctl deployment check".into()),
        triggers: vec![Trigger::Event {
            event: CANARY_EVENT.into(),
            expression: None,
        }],
        retries: None,
        concurrency: None,
        cancel_on: Vec::new(),
        idempotency: None,
        rate_limit: None,
        throttle: None,
        debounce: None,
        batch_events: None,
        timeouts: None,
        priority: None,
        steps: vec![Step {
            id: "pause".into(),
            name: Some("short durable sleep".into()),
            after: Vec::new(),
            condition: None,
            retries: None,
            http: None,
            docker: None,
            sleep: Some(SpecDuration::from_millis(100)),
            wait_for_event: None,
        }],
    }
}

/// Where along the pipeline the canary stopped, and so which service is at
/// fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The event API did not accept the event (unreachable, refused, 5xx).
    Send,
    /// The event was accepted but no run was created (the runner).
    Run,
    /// A run was created but its step never completed (the executors).
    Step,
}

impl Stage {
    /// The stack service whose log explains a failure at this stage.
    pub fn service(self) -> &'static str {
        match self {
            Stage::Send => "event-api",
            Stage::Run => "runner",
            Stage::Step => "executors",
        }
    }

    /// What failed, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Send => "the event API did not accept the canary event",
            Stage::Run => "no run was created for the canary event",
            Stage::Step => "the canary run's step never completed",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Send => "send",
            Stage::Run => "run",
            Stage::Step => "step",
        })
    }
}

/// A completed canary run and how long each stage took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    /// The event's internal id (from `ids`).
    pub event_id: String,
    /// The run it triggered.
    pub run_id: String,
    /// Milliseconds from sending the event to seeing the run completed.
    pub millis: u64,
    /// Milliseconds until the event API acknowledged the event.
    pub accepted_millis: u64,
    /// Milliseconds until the run was first seen.
    pub run_millis: u64,
    /// The host of the executor that ran the canary's step (its attempt's
    /// `host`), when the runs API says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
}

/// Why the canary failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", stage.describe())]
pub struct CanaryError {
    /// The stage that failed.
    pub stage: Stage,
    /// What was seen.
    pub message: String,
}

impl CanaryError {
    fn new(stage: Stage, message: impl Into<String>) -> Self {
        Self {
            stage,
            message: message.into(),
        }
    }
}

/// Progress of a canary, for callers that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<'a> {
    /// The event is being sent.
    Sending,
    /// The event API acknowledged it.
    Accepted {
        /// The event's id.
        event_id: &'a str,
    },
    /// Its run exists.
    RunCreated {
        /// The run's id.
        run_id: &'a str,
    },
}

#[derive(Debug, Deserialize)]
struct Ingested {
    ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RunsOfEvent {
    runs: Vec<RunSummary>,
}

#[derive(Debug, Deserialize)]
struct RunSummary {
    id: String,
    function_id: String,
    status: RunStatus,
    #[serde(default)]
    error: Option<String>,
}

/// Where the canary follows its run.
#[derive(Clone, Copy)]
pub enum RunsAt<'a> {
    /// The runs API under this base URL, with its bearer token.
    Api {
        /// The base URL (`/v1/...` is appended).
        base: &'a str,
        /// The runs-API token.
        token: &'a str,
    },
    /// The state store the stack's roles share.
    Store(&'a dyn StateStore),
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sends the canary event to `event_api` (a base URL) and waits until its
/// run, followed at `runs`, completes, at most `timeout` in all. A send that
/// cannot connect is retried until the deadline: a service that has just
/// started may not answer yet.
pub async fn check(
    client: &reqwest::Client,
    event_api: &str,
    event_key: &str,
    runs_at: RunsAt<'_>,
    timeout: Duration,
    progress: &(dyn Fn(Progress<'_>) + Send + Sync),
) -> Result<CanaryReport, CanaryError> {
    let event_api = event_api.trim_end_matches('/');
    let started = Instant::now();
    let deadline = started + timeout;
    let nonce = ulid::Ulid::new().to_string();
    let body = json!({ "name": CANARY_EVENT, "data": { "nonce": nonce } });
    progress(Progress::Sending);
    let url = format!("{event_api}/e/{event_key}");
    let text = loop {
        match client.post(&url).json(&body).send().await {
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if status.is_success() {
                    break text;
                }
                if !status.is_server_error() || Instant::now() >= deadline {
                    return Err(CanaryError::new(
                        Stage::Send,
                        format!(
                            "POST {event_api}/e/<key> answered {status}: {}",
                            text.trim()
                        ),
                    ));
                }
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(CanaryError::new(
                    Stage::Send,
                    format!("POST {event_api}/e/<key>: {}", crate::error_chain(&e)),
                ));
            }
            Err(_) => {}
        }
        tokio::time::sleep(POLL * 5).await;
    };
    let ingested: Ingested = serde_json::from_str(&text).map_err(|e| {
        CanaryError::new(
            Stage::Send,
            format!("unexpected answer to the canary event ({e}): {text}"),
        )
    })?;
    let event_id = ingested.ids.into_iter().next().ok_or_else(|| {
        CanaryError::new(
            Stage::Send,
            format!("the event API returned no event id: {text}"),
        )
    })?;
    let accepted_millis = millis(started.elapsed());
    progress(Progress::Accepted {
        event_id: &event_id,
    });

    let mut run: Option<(String, u64)> = None;
    let mut last = String::new();
    loop {
        match poll_runs(client, runs_at, &event_id).await {
            Ok(runs) => {
                if let Some(r) = runs.into_iter().find(|r| r.function_id == CANARY_FUNCTION) {
                    if run.is_none() {
                        progress(Progress::RunCreated { run_id: &r.id });
                        run = Some((r.id.clone(), millis(started.elapsed())));
                    }
                    match r.status {
                        RunStatus::Completed => {
                            let millis = millis(started.elapsed());
                            let executor = executor_host(client, runs_at, &r.id).await;
                            return Ok(CanaryReport {
                                event_id,
                                run_millis: run.map_or(0, |(_, ms)| ms),
                                run_id: r.id,
                                millis,
                                accepted_millis,
                                executor,
                            });
                        }
                        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Skipped => {
                            return Err(CanaryError::new(
                                Stage::Step,
                                format!(
                                    "canary run {} {}: {}",
                                    r.id,
                                    status_name(r.status),
                                    r.error.unwrap_or_default()
                                ),
                            ));
                        }
                        other => last = format!("run {} is {}", r.id, status_name(other)),
                    }
                }
            }
            // The runs API is served by the event API that just accepted
            // the event (and the state store is the one it wrote the event's
            // id claim to): an error here is the event API's.
            Err(e) if Instant::now() >= deadline => return Err(CanaryError::new(Stage::Send, e)),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            let waited = timeout.as_secs_f64();
            return Err(match run {
                None => CanaryError::new(
                    Stage::Run,
                    format!(
                        "event {event_id} was accepted but no run of `{CANARY_FUNCTION}` appeared in {waited:.0} s{}",
                        suffix(&last)
                    ),
                ),
                Some((id, _)) => CanaryError::new(
                    Stage::Step,
                    format!("run {id} was created but did not complete in {waited:.0} s ({last})"),
                ),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn suffix(last: &str) -> String {
    if last.is_empty() {
        String::new()
    } else {
        format!(" (last answer: {last})")
    }
}

fn status_name(status: RunStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status:?}"))
}

/// The host recorded on the last attempt of the canary's step (best
/// effort: the run has completed, which is the check; the host only says
/// which executor did it).
async fn executor_host(
    client: &reqwest::Client,
    runs_at: RunsAt<'_>,
    run_id: &str,
) -> Option<String> {
    let steps = match runs_at {
        RunsAt::Store(state) => state.steps(run_id).await.ok()?,
        RunsAt::Api { base, token } => {
            let view: crate::event_api::RunView = client
                .get(format!("{base}/v1/runs/{run_id}"))
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?
                .json()
                .await
                .ok()?;
            view.steps
        }
    };
    steps
        .into_iter()
        .flat_map(|s| s.attempts)
        .filter_map(|a| a.host)
        .next_back()
}

async fn poll_runs(
    client: &reqwest::Client,
    runs_at: RunsAt<'_>,
    event_id: &str,
) -> Result<Vec<RunSummary>, String> {
    let (base, token) = match runs_at {
        RunsAt::Store(state) => {
            let runs = state
                .runs_for_event(event_id)
                .await
                .map_err(|e| format!("reading the runs of event {event_id}: {e}"))?;
            return Ok(runs
                .into_iter()
                .map(|r| RunSummary {
                    id: r.id,
                    function_id: r.function_id,
                    status: r.status,
                    error: r.error,
                })
                .collect());
        }
        RunsAt::Api { base, token } => (base.trim_end_matches('/'), token),
    };
    let url = format!("{base}/v1/events/{event_id}/runs");
    let resp = client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::error_chain(&e)))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("GET {url} answered {status}: {}", text.trim()));
    }
    serde_json::from_str::<RunsOfEvent>(&text)
        .map(|r| r.runs)
        .map_err(|e| format!("unexpected answer of the runs API ({e}): {text}"))
}

/// The one line `stackctl-engine canary` prints on stdout: the report or
/// the error, tagged so that it can be found among other log lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "canary", rename_all = "snake_case")]
pub enum Outcome {
    /// The run completed.
    Completed(CanaryReport),
    /// A stage failed.
    Failed(CanaryError),
}

impl Outcome {
    /// Finds the outcome among lines of output (the last one wins).
    pub fn find(lines: &[String]) -> Option<Self> {
        lines
            .iter()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_is_a_valid_function() {
        let problems = crate::functions::validate_function(&canary_function());
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn outcomes_round_trip_through_a_log_line() {
        let ok = Outcome::Completed(CanaryReport {
            event_id: "e".into(),
            run_id: "r".into(),
            millis: 9,
            accepted_millis: 1,
            run_millis: 3,
            executor: Some("ip-10-0-1-7.ec2.internal".into()),
        });
        let failed = Outcome::Failed(CanaryError::new(Stage::Run, "none"));
        let lines = vec![
            "starting".to_string(),
            serde_json::to_string(&ok).unwrap(),
            "{\"level\":\"info\"}".to_string(),
        ];
        assert_eq!(Outcome::find(&lines), Some(ok));
        let line = serde_json::to_string(&failed).unwrap();
        assert!(line.contains("\"stage\":\"run\""), "{line}");
        assert_eq!(Outcome::find(&[line]), Some(failed));
    }
}
