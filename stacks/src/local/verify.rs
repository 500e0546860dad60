//! Checking that a local stack works: every process answers `/health`, and
//! a canary event sent through the event API becomes a completed run, read
//! back through the runs API. Every wait is bounded.

use std::time::{Duration, Instant};

use engine::canary::{CANARY_EVENT, CanaryReport};

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

/// Sends the canary event and waits until its run completes
/// ([`engine::canary::check`]), reporting each stage.
pub async fn canary(
    client: &reqwest::Client,
    event_api: &str,
    event_key: &str,
    api_token: &str,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<CanaryReport, LocalError> {
    let shown = |p: engine::canary::Progress<'_>| match p {
        engine::canary::Progress::Sending => {}
        engine::canary::Progress::Accepted { event_id } => {
            progress.info(&format!("canary event accepted (id {event_id})"));
        }
        engine::canary::Progress::RunCreated { run_id } => {
            progress.info(&format!("canary run {run_id} created"));
        }
    };
    progress.start("canary", &format!("sending canary event {CANARY_EVENT}"));
    let runs_at = engine::canary::RunsAt::Api {
        base: event_api,
        token: api_token,
    };
    let result =
        engine::canary::check(client, event_api, event_key, runs_at, timeout, &shown).await;
    match result {
        Ok(report) => {
            progress.ok(
                "canary",
                &format!(
                    "canary run {} completed in {} ms",
                    report.run_id, report.millis
                ),
            );
            Ok(report)
        }
        Err(e) => {
            progress.fail("canary", e.stage.describe());
            Err(LocalError::Canary(e))
        }
    }
}
