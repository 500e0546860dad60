//! Event-to-completed-run latency: the internal ids of sampled events (from
//! their `200 {"ids": [...]}` answers) are looked up in the runs API
//! (`GET /v1/events/{id}/runs`) until every run has ended or the wait is
//! over. Latency is the last run's `ended_at` minus the event's `ts` (which
//! the built-in body sets to the request's due time), both server-side
//! milliseconds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::body::Bytes;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::LoadError;
use super::run::E2eConfig;
use super::stats::{self, E2eReport, Latency};

/// Runs looked up at once.
const PARALLEL: usize = 8;

#[derive(Deserialize)]
struct Accepted {
    ids: Vec<String>,
}

#[derive(Deserialize)]
struct Runs {
    runs: Vec<RunDoc>,
}

#[derive(Deserialize)]
struct RunDoc {
    status: String,
    event: EventDoc,
    #[serde(default)]
    ended_at: Option<i64>,
}

#[derive(Deserialize)]
struct EventDoc {
    ts: i64,
}

/// The event ids in answers of the event API (answers it cannot read are skipped).
pub fn ids_of(bodies: &[Bytes]) -> Vec<String> {
    bodies
        .iter()
        .filter_map(|b| serde_json::from_slice::<Accepted>(b).ok())
        .flat_map(|a| a.ids)
        .collect()
}

enum Outcome {
    Done {
        latency_ms: i64,
        statuses: Vec<String>,
    },
    NoRun,
    Unfinished,
}

/// Waits for the runs of `ids` and measures them.
pub async fn measure(
    cfg: &E2eConfig,
    ids: &[String],
    stop: CancellationToken,
) -> Result<(E2eReport, Histogram<u64>), LoadError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| LoadError::Internal(format!("cannot build an HTTP client: {e}")))?;
    let deadline = Instant::now() + cfg.wait;
    let base = cfg.runs_api.trim_end_matches('/').to_string();
    let mut pending: Vec<String> = ids.to_vec();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut delay = Duration::from_millis(50);
    loop {
        let mut set = tokio::task::JoinSet::new();
        let mut still = Vec::new();
        for chunk in pending.chunks(pending.len().div_ceil(PARALLEL).max(1)) {
            let chunk = chunk.to_vec();
            let client = client.clone();
            let base = base.clone();
            let token = cfg.token.clone();
            set.spawn(async move {
                let mut out = Vec::new();
                for id in chunk {
                    let r = lookup(&client, &base, &token, &id).await;
                    out.push((id, r));
                }
                out
            });
        }
        while let Some(joined) = set.join_next().await {
            let results =
                joined.map_err(|e| LoadError::Internal(format!("a runs API lookup died: {e}")))?;
            for (id, r) in results {
                match r? {
                    Outcome::Done {
                        latency_ms,
                        statuses,
                    } => {
                        outcomes.insert(
                            id,
                            Outcome::Done {
                                latency_ms,
                                statuses,
                            },
                        );
                    }
                    other => {
                        outcomes.insert(id.clone(), other);
                        still.push(id);
                    }
                }
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline || stop.is_cancelled() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))) => {}
            () = stop.cancelled() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    let mut h = stats::histogram();
    let mut report = E2eReport {
        sampled: ids.len() as u64,
        ..E2eReport::default()
    };
    for o in outcomes.into_values() {
        match o {
            Outcome::Done {
                latency_ms,
                statuses,
            } => {
                report.measured += 1;
                stats::record(
                    &mut h,
                    Duration::from_millis(u64::try_from(latency_ms).unwrap_or(0)),
                );
                for s in statuses {
                    *report.runs.entry(s).or_default() += 1;
                }
            }
            Outcome::NoRun => report.without_run += 1,
            Outcome::Unfinished => report.unfinished += 1,
        }
    }
    report.latency = Latency::of(&h);
    Ok((report, h))
}

async fn lookup(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> Result<Outcome, LoadError> {
    let url = format!("{base}/events/{id}/runs");
    let fail = |message: String| LoadError::RunsApi {
        url: url.clone(),
        message,
    };
    let resp = client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        return Err(fail(format!(
            "HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    let runs: Runs =
        serde_json::from_str(&text).map_err(|e| fail(format!("unexpected answer ({e})")))?;
    if runs.runs.is_empty() {
        return Ok(Outcome::NoRun);
    }
    let mut last_end = i64::MIN;
    for r in &runs.runs {
        match (r.status.as_str(), r.ended_at) {
            ("running", _) | (_, None) => return Ok(Outcome::Unfinished),
            (_, Some(end)) => last_end = last_end.max(end),
        }
    }
    let ts = runs.runs[0].event.ts;
    Ok(Outcome::Done {
        latency_ms: (last_end - ts).max(0),
        statuses: runs.runs.into_iter().map(|r| r.status).collect(),
    })
}
