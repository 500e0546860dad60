//! `stackctl bench --agents N` on an AWS stack: the load comes from N
//! one-off ECS tasks of the engine image inside the stack's VPC
//! (`stackctl-engine bench-agent`, see [`engine::loadgen::agent`]), each
//! running its share of the rate and connections against the event API's
//! in-VPC address. Their figures come back through CloudWatch Logs and are
//! merged into one report (exact percentiles: each agent sends its whole
//! histogram). This is how `bench` reaches a stack with no address
//! reachable from where it runs, and how load grows past one machine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use engine::loadgen::agent::{AgentPlan, Collector};
use engine::loadgen::{conclude, mask_key, wall_ms};
use tokio_util::sync::CancellationToken;

use super::aws::{AwsNames, in_vpc_url};
use super::{BenchConfig, BenchError, Observer, Report, Sampler};
use crate::aws::Aws;
use crate::aws::task::{self, TaskError};

/// Time for the agents' tasks to start and their logs to arrive, on top of the load.
const TASK_MARGIN: Duration = Duration::from_secs(180);
/// Lines of a failed agent's log shown with the error.
const TAIL_LINES: usize = 20;

/// Runs `cfg`'s load from `agents` tasks inside the VPC and merges their
/// figures; `sampler`'s gauges are read meanwhile and put beside the merged
/// timeline. `stop` stops the agents (each reports what it sent so far).
pub async fn run(
    aws: &Aws,
    names: &AwsNames,
    cfg: &BenchConfig,
    agents: usize,
    observer: &dyn Observer,
    sampler: Option<Arc<dyn Sampler>>,
    stop: CancellationToken,
) -> Result<Report, BenchError> {
    if cfg.e2e.is_some() {
        return Err(BenchError::Agents(
            "--e2e reads the runs API from where bench runs, which load agents inside the VPC \
             do not serve; leave out --e2e, or pass --url with an address reachable from here"
                .into(),
        ));
    }
    let (base, connect_to) = in_vpc_url(aws, names).await?;
    let service = names
        .services
        .iter()
        .find(|(role, _)| role == "event-api")
        .map(|(_, s)| s.clone())
        .ok_or_else(|| BenchError::Stack("the stack has no event-API service".into()))?;
    let plans = AgentPlan::shares(cfg, &base, connect_to.as_deref(), agents);
    observer.phase(&format!(
        "starting {} load agent{} inside the VPC against {base}",
        plans.len(),
        if plans.len() == 1 { "" } else { "s" }
    ));
    let agent_err = |e: TaskError| BenchError::Agents(e.to_string());
    let mut started = Vec::with_capacity(plans.len());
    for plan in &plans {
        let command = vec![
            "bench-agent".to_string(),
            "--plan".to_string(),
            serde_json::to_string(plan).expect("a plan serializes"),
        ];
        match task::start(aws, &names.cluster, &service, command, 1, "stackctl-bench").await {
            Ok(t) => started.push(t),
            Err(e) => {
                for t in &started {
                    t.stop_all(aws, "stackctl bench: starting the other agents failed")
                        .await;
                }
                return Err(agent_err(e));
            }
        }
    }
    observer.phase(&format!(
        "{} load agent{} running; the summary follows in about {} s",
        plans.len(),
        if plans.len() == 1 { "" } else { "s" },
        cfg.load.duration().as_secs() + 30
    ));

    let gauges: Arc<Mutex<Vec<Reading>>> = Arc::default();
    let sampling = CancellationToken::new();
    let sampler_task = sampler.map(|s| {
        let gauges = Arc::clone(&gauges);
        engine::loadgen::sample_every(s, cfg.interval, sampling.clone(), move |read| {
            gauges
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((wall_ms(), read));
        })
    });

    let deadline = Instant::now() + cfg.load.duration() + cfg.timeout + TASK_MARGIN;
    let mut results = Vec::with_capacity(started.len());
    for t in &started {
        let waited = tokio::select! {
            r = t.wait(aws, deadline) => r,
            () = stop.cancelled() => {
                // Stopped agents print what they measured so far.
                for t in &started {
                    t.stop_all(aws, "stackctl bench: interrupted").await;
                }
                t.wait(aws, Instant::now() + Duration::from_secs(60)).await
            }
        };
        results.extend(waited.map_err(agent_err)?);
    }
    sampling.cancel();
    if let Some(t) = sampler_task {
        let _ = t.await;
    }

    let mut parts = Vec::with_capacity(results.len());
    for result in results {
        let (stopped, timed_out) = match result {
            Ok(s) => (s, false),
            Err(s) => (s, true),
        };
        let mut collector = Collector::default();
        for line in &stopped.lines {
            collector.push(line);
        }
        match collector.finish() {
            Ok(part) => parts.push(part),
            Err(why) => {
                return Err(BenchError::Agents(stopped.failure(
                    "agent task",
                    timed_out,
                    &why,
                    TAIL_LINES,
                )));
            }
        }
    }

    let first_start = parts.iter().map(|p| p.start_wall_ms).min().unwrap_or(0);
    let mut merged_cfg = cfg.clone();
    merged_cfg.url = format!("{base}/e/{}", key_of(&cfg.url));
    let mut report = conclude(&merged_cfg, parts, observer, stop).await?;
    report.target = mask_key(&merged_cfg.url);
    report.agents = Some(plans.len());
    let gauges = gauges.lock().unwrap_or_else(PoisonError::into_inner);
    for sample in &mut report.timeline {
        let at = first_start + (sample.t * 1000.0) as i64;
        if let Some((_, g)) = gauges.iter().rev().find(|(t, _)| *t <= at) {
            sample.gauges.clone_from(g);
        }
    }
    Ok(report)
}

/// Gauges read at a time (ms since the epoch).
type Reading = (i64, BTreeMap<String, f64>);

/// The event key in an ingestion URL (`.../e/KEY`).
fn key_of(url: &str) -> &str {
    url.rsplit_once("/e/").map_or("", |(_, k)| k)
}
