//! Load agents: generators that run somewhere else (a one-off ECS task of
//! the engine image inside a stack's VPC) and send their figures back as
//! log lines. The caller splits one [`BenchConfig`] into [`AgentPlan`]
//! shares (rate and connections divided among the agents), each agent runs
//! its share with [`run`] and prints its [`Part`] as [`result_lines`], the
//! caller reads them back with [`Collector`] and merges the parts with
//! [`super::run::conclude`], so the summary has the exact percentiles of
//! all requests.
//!
//! The event key is not part of the plan (plans travel in task overrides,
//! which anyone allowed to describe tasks can read): an agent sends with
//! the first key of its own `STACKCTL_ENGINE_EVENT_KEYS`, like the canary.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::payload::Body;
use super::run::{BenchConfig, Load, measure};
use super::schedule::Stage;
use super::stats::Part;
use super::{LoadError, Observer};

/// The tag of an agent's result lines.
pub const RESULT_TAG: &str = "bench_agent";
/// Result lines carry at most this many bytes of the part's JSON each, well
/// under the 16 KiB at which container runtimes split a log line.
const CHUNK: usize = 8 * 1024;

/// One agent's share of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentPlan {
    /// The event API's base URL as the agent reaches it (no `/e/KEY`).
    pub base_url: String,
    /// Where connections go instead of the base URL's host
    /// ([`BenchConfig::connect_to`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_to: Option<String>,
    /// This agent's connections.
    pub connections: usize,
    /// This agent's load.
    pub load: Load,
    /// Events per request.
    pub events_per_request: u32,
    /// The request body.
    pub body: Body,
    /// Per-request timeout, ms.
    pub timeout_ms: u64,
    /// Timeline interval, ms.
    pub interval_ms: u64,
}

impl AgentPlan {
    /// `cfg` (whose URL the agents do not use) split into `agents` equal
    /// shares against `base_url`: each runs the whole schedule at
    /// 1/`agents` of its rates, with its share of the connections (at least one).
    pub fn shares(
        cfg: &BenchConfig,
        base_url: &str,
        connect_to: Option<&str>,
        agents: usize,
    ) -> Vec<Self> {
        let n = agents.max(1);
        let load = match &cfg.load {
            Load::Max { duration } => Load::Max {
                duration: *duration,
            },
            Load::Rate { start_rate, stages } => Load::Rate {
                start_rate: start_rate / n as f64,
                stages: stages
                    .iter()
                    .map(|s| Stage {
                        duration: s.duration,
                        target: s.target / n as f64,
                    })
                    .collect(),
            },
        };
        (0..n)
            .map(|i| Self {
                base_url: base_url.trim_end_matches('/').to_string(),
                connect_to: connect_to.map(str::to_string),
                // Spread the remainder so the shares add up to the total.
                connections: (cfg.connections / n + usize::from(i < cfg.connections % n)).max(1),
                load: load.clone(),
                events_per_request: cfg.events_per_request,
                body: cfg.body.clone(),
                timeout_ms: u64::try_from(cfg.timeout.as_millis()).unwrap_or(u64::MAX),
                interval_ms: u64::try_from(cfg.interval.as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }

    /// The run this plan describes, sending with `event_key`.
    pub fn config(&self, event_key: &str) -> BenchConfig {
        let mut cfg = BenchConfig::new(format!("{}/e/{event_key}", self.base_url));
        cfg.connect_to.clone_from(&self.connect_to);
        cfg.connections = self.connections;
        cfg.load = self.load.clone();
        cfg.events_per_request = self.events_per_request;
        cfg.body = self.body.clone();
        cfg.timeout = Duration::from_millis(self.timeout_ms);
        cfg.interval = Duration::from_millis(self.interval_ms);
        cfg
    }
}

/// Runs `plan` with `event_key` and returns its figures.
pub async fn run(
    plan: &AgentPlan,
    event_key: &str,
    observer: &dyn Observer,
    stop: CancellationToken,
) -> Result<Part, LoadError> {
    measure(plan.config(event_key), observer, None, stop).await
}

/// One result line: a chunk of a part's JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Chunk {
    seq: usize,
    of: usize,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    bench_agent: Chunk,
}

/// `part` as the lines an agent prints (in order, each a JSON object
/// tagged [`RESULT_TAG`]).
pub fn result_lines(part: &Part) -> Vec<String> {
    let json = serde_json::to_string(part).expect("a part serializes");
    let mut chunks = Vec::new();
    let mut rest = json.as_str();
    while !rest.is_empty() {
        let mut end = rest.len().min(CHUNK);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        chunks.push(&rest[..end]);
        rest = &rest[end..];
    }
    let of = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(seq, json)| {
            serde_json::to_string(&Line {
                bench_agent: Chunk {
                    seq,
                    of,
                    json: json.to_string(),
                },
            })
            .expect("a line serializes")
        })
        .collect()
}

/// Reads one agent's log lines back into its part; other lines are ignored.
#[derive(Debug, Default)]
pub struct Collector {
    chunks: Vec<Option<String>>,
}

impl Collector {
    /// Takes one log line.
    pub fn push(&mut self, line: &str) {
        let line = line.trim();
        if !line.starts_with('{') || !line.contains(RESULT_TAG) {
            return;
        }
        let Ok(Line { bench_agent: c }) = serde_json::from_str::<Line>(line) else {
            return;
        };
        if c.of == 0 || c.seq >= c.of {
            return;
        }
        if self.chunks.len() != c.of {
            self.chunks = vec![None; c.of];
        }
        self.chunks[c.seq] = Some(c.json);
    }

    /// The part, once every chunk arrived; `Err` says what is missing or wrong.
    pub fn finish(self) -> Result<Part, String> {
        if self.chunks.is_empty() {
            return Err("no result line".into());
        }
        let total = self.chunks.len();
        let mut json = String::new();
        for (i, c) in self.chunks.into_iter().enumerate() {
            json.push_str(
                &c.ok_or_else(|| format!("result line {} of {total} is missing", i + 1))?,
            );
        }
        serde_json::from_str(&json).map_err(|e| format!("the result does not parse: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::stats::{Buckets, Sample};

    #[test]
    fn shares_add_up_to_the_whole_run() {
        let mut cfg = BenchConfig::new("http://ignored/e/k");
        cfg.connections = 5;
        cfg.load = Load::constant(300.0, Duration::from_secs(10));
        let plans = AgentPlan::shares(&cfg, "http://api.internal:8288/", None, 2);
        assert_eq!(
            plans.iter().map(|p| p.connections).collect::<Vec<_>>(),
            [3, 2]
        );
        let Load::Rate { start_rate, stages } = &plans[1].load else {
            panic!("{:?}", plans[1].load)
        };
        assert!((start_rate - 150.0).abs() < 1e-9);
        assert!((stages[0].target - 150.0).abs() < 1e-9);
        assert_eq!(plans[0].config("key").url, "http://api.internal:8288/e/key");
    }

    #[test]
    fn a_part_survives_its_result_lines_among_other_log_lines() {
        let part = Part {
            duration_s: 10.0,
            requests: 3,
            ok: 3,
            latency: Buckets(vec![(1500, 2), (90_000, 1)]),
            // Long enough to need several lines.
            sampled_ids: (0..2000).map(|i| format!("01JEVENT{i:08}")).collect(),
            timeline: vec![Sample {
                t: 1.0,
                total: 3,
                ..Sample::default()
            }],
            ..Part::default()
        };
        let lines = result_lines(&part);
        assert!(lines.len() > 2, "{}", lines.len());
        assert!(lines.iter().all(|l| l.len() < 16 * 1024));
        let mut c = Collector::default();
        c.push("starting the load agent");
        for l in lines.iter().rev() {
            c.push(l);
            c.push(r#"{"level":"info","msg":"unrelated"}"#);
        }
        assert_eq!(c.finish().unwrap(), part);

        let mut partial = Collector::default();
        partial.push(&lines[0]);
        let err = partial.finish().unwrap_err();
        assert!(err.contains("is missing"), "{err}");
        assert_eq!(Collector::default().finish().unwrap_err(), "no result line");
    }
}
