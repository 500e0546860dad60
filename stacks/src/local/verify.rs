//! Checking that a local stack works: every process answers `/health`, and
//! a canary event sent through the event API becomes a completed run, read
//! back through the runs API. Every wait is bounded.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{CANARY_EVENT, CANARY_FUNCTION};
use super::process::{is_alive, log_tail};
use super::state::ProcessRecord;
use super::{LocalError, Progress};

const POLL: Duration = Duration::from_millis(100);

/// An HTTP client for loopback only: no proxy, short timeouts.
pub fn client() -> Result<reqwest::Client, LocalError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| LocalError::Http {
            action: "build an HTTP client".into(),
            message: e.to_string(),
        })
}

/// The health URL of a process.
pub fn health_url(p: &ProcessRecord) -> String {
    format!("http://127.0.0.1:{}/health", p.port)
}

/// Whether `GET /health` answers 2xx.
pub async fn is_healthy(client: &reqwest::Client, p: &ProcessRecord) -> bool {
    client
        .get(health_url(p))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Waits until every process answers `/health`, reporting each one as it
/// does; fails at once, with the end of its log, when a process exits.
pub async fn wait_healthy(
    client: &reqwest::Client,
    processes: &[ProcessRecord],
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&ProcessRecord> = processes.iter().collect();
    for p in &pending {
        progress.start(
            &format!("health:{}", p.name),
            &format!("waiting for {} to answer {}", p.name, health_url(p)),
        );
    }
    while !pending.is_empty() {
        let mut still = Vec::new();
        for p in pending {
            if is_healthy(client, p).await {
                progress.ok(
                    &format!("health:{}", p.name),
                    &format!("{} healthy (pid {}, port {})", p.name, p.pid, p.port),
                );
            } else if !is_alive(p.pid, &p.config) {
                let err = LocalError::ProcessExited {
                    name: p.name.clone(),
                    log: p.log.clone(),
                    tail: log_tail(&p.log, 20),
                };
                progress.fail(&format!("health:{}", p.name), &format!("{} exited", p.name));
                return Err(err);
            } else {
                still.push(p);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let p = pending[0];
            progress.fail(
                &format!("health:{}", p.name),
                &format!("{} not healthy in time", p.name),
            );
            return Err(LocalError::Timeout {
                what: format!("{} to answer {}", p.name, health_url(p)),
                waited: timeout,
                hint: format!("see its log: {}", p.log.display()),
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// The canary's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    /// The event's internal id (from `ids`).
    pub event_id: String,
    /// The run it triggered.
    pub run_id: String,
    /// Milliseconds from sending the event to seeing the run completed.
    pub millis: u64,
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
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// Sends the canary event and waits until its run completes.
pub async fn canary(
    client: &reqwest::Client,
    event_api: &str,
    event_key: &str,
    api_token: &str,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<CanaryReport, LocalError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let nonce = format!("{}-{}", std::process::id(), super::now_ms());
    let body = json!({ "name": CANARY_EVENT, "data": { "nonce": nonce } });
    progress.start(
        "canary:send",
        &format!("sending canary event {CANARY_EVENT}"),
    );
    let url = format!("{event_api}/e/{event_key}");
    let resp = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| http_error("send the canary event", &e))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        progress.fail("canary:send", "the event API refused the canary event");
        return Err(LocalError::Canary(format!(
            "POST {event_api}/e/<key> answered {status}: {text}"
        )));
    }
    let ingested: Ingested = serde_json::from_str(&text).map_err(|e| {
        LocalError::Canary(format!(
            "unexpected answer to the canary event ({e}): {text}"
        ))
    })?;
    let event_id =
        ingested.ids.into_iter().next().ok_or_else(|| {
            LocalError::Canary(format!("the event API returned no event id: {text}"))
        })?;
    progress.ok(
        "canary:send",
        &format!("canary event accepted (id {event_id})"),
    );

    progress.start("canary:run", "waiting for the canary run to complete");
    let runs_url = format!("{event_api}/v1/events/{event_id}/runs");
    let mut last = String::from("no run yet");
    let mut announced = false;
    loop {
        let resp = client
            .get(&runs_url)
            .bearer_auth(api_token)
            .send()
            .await
            .map_err(|e| http_error("read the canary's runs", &e))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            progress.fail("canary:run", "the runs API refused the request");
            return Err(LocalError::Canary(format!(
                "GET {runs_url} answered {status}: {text}"
            )));
        }
        let runs: RunsOfEvent = serde_json::from_str(&text).map_err(|e| {
            LocalError::Canary(format!("unexpected answer of the runs API ({e}): {text}"))
        })?;
        if let Some(run) = runs
            .runs
            .into_iter()
            .find(|r| r.function_id == CANARY_FUNCTION)
        {
            if !announced {
                progress.info(&format!("canary run {} created", run.id));
                announced = true;
            }
            match run.status.as_str() {
                "completed" => {
                    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    progress.ok(
                        "canary:run",
                        &format!("canary run {} completed in {millis} ms", run.id),
                    );
                    return Ok(CanaryReport {
                        event_id,
                        run_id: run.id,
                        millis,
                    });
                }
                "failed" | "cancelled" => {
                    progress.fail(
                        "canary:run",
                        &format!("canary run {} {}", run.id, run.status),
                    );
                    return Err(LocalError::Canary(format!(
                        "canary run {} {}: {}",
                        run.id,
                        run.status,
                        run.error.unwrap_or_default()
                    )));
                }
                other => last = format!("run {} is {other}", run.id),
            }
        }
        if Instant::now() >= deadline {
            progress.fail("canary:run", "the canary run did not complete in time");
            return Err(LocalError::Timeout {
                what: format!("the canary run of event {event_id} to complete ({last})"),
                waited: timeout,
                hint: "see the runner and executor logs in the state directory".into(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn http_error(action: &str, e: &reqwest::Error) -> LocalError {
    LocalError::Http {
        action: action.into(),
        message: format!("{e}{}", source_chain(e)),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
