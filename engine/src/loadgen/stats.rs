//! Measurements and the report: HDR histograms of latency (microseconds),
//! the k6-style summary figures computed from them, the per-interval
//! timeline, and the report's text rendering in k6's layout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::run::{BenchConfig, Load};
use super::schedule::Schedule;
use super::threshold::ThresholdResult;

/// Largest latency recorded exactly (an hour); longer ones are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// A new latency histogram: 1 µs to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

/// Records `d` in `h`, clamped into its range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS);
    // In range by construction, so this cannot fail.
    let _ = h.record(us);
}

/// Latency figures in milliseconds, k6's `http_req_duration` set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Minimum.
    pub min: f64,
    /// Median.
    pub med: f64,
    /// Mean.
    pub avg: f64,
    /// Maximum.
    pub max: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl Latency {
    /// The figures of `h` (microsecond samples); all zero when empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            min: ms(h.min()),
            med: ms(h.value_at_quantile(0.5)),
            avg: h.mean() / 1000.0,
            max: ms(h.max()),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
        }
    }

    /// Any percentile `q` (0..=100) of `h`, in milliseconds.
    pub fn percentile(h: &Histogram<u64>, q: f64) -> f64 {
        h.value_at_quantile(q / 100.0) as f64 / 1000.0
    }
}

/// A count and its rate per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counted {
    /// How many.
    pub count: u64,
    /// Per second over the run.
    pub rate: f64,
}

/// Failed requests: non-2xx answers and transport errors (connect, I/O, timeout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Failed {
    /// Failed / all requests (0..1).
    pub rate: f64,
    /// How many failed.
    pub count: u64,
    /// Requests in all.
    pub total: u64,
}

/// One interval of the timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start, at the end of the interval.
    pub t: f64,
    /// Requests the schedule asked for per second at that time (fixed-rate mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Requests completed per second in the interval.
    pub rate: f64,
    /// Requests that failed in the interval.
    pub failed: u64,
    /// Median latency in the interval, ms.
    pub p50: f64,
    /// 99th percentile in the interval, ms.
    pub p99: f64,
    /// Completed requests so far.
    pub total: u64,
    /// Gauges read by the sampler (service counts, queue depths), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, f64>,
}

/// A latency histogram as its non-empty buckets: (a value of the bucket,
/// count). Recording each value again with its count rebuilds the same
/// histogram, so figures of several generators merge exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Buckets(pub Vec<(u64, u64)>);

impl Buckets {
    /// The buckets of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Adds these buckets to `h`, each value clamped into its range.
    pub fn add_to(&self, h: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            // In range by the clamp, so this cannot fail.
            let _ = h.record_n(value.clamp(1, MAX_MICROS), count);
        }
    }
}

/// What one generator measured: the raw figures a [`Report`] is assembled
/// from, and what a load agent sends back (see [`super::agent`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// When the load started, ms since the epoch.
    #[serde(default)]
    pub start_wall_ms: i64,
    /// Seconds from the first due time to the last answer.
    pub duration_s: f64,
    /// Requests the schedule held (fixed-rate mode; 0 at maximum throughput).
    #[serde(default)]
    pub scheduled: u64,
    /// Requests completed.
    pub requests: u64,
    /// Of those, failed (non-2xx or no answer).
    pub failed: u64,
    /// Of those, 2xx.
    pub ok: u64,
    /// Requests the schedule held that were never sent.
    pub dropped: u64,
    /// Answers by HTTP status.
    pub status_codes: BTreeMap<u16, u64>,
    /// Transport errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every timed request (µs).
    pub latency: Buckets,
    /// One sample per interval.
    pub timeline: Vec<Sample>,
    /// Internal ids of the events sampled for e2e latency.
    #[serde(default)]
    pub sampled_ids: Vec<String>,
    /// Whether the load was stopped before its end.
    pub interrupted: bool,
}

impl Report {
    /// The report of `parts` (generators that each ran a share of `cfg`,
    /// at the same time), before e2e and thresholds; with every request's
    /// latency histogram and the sampled event ids. Timeline samples are
    /// merged by interval: rates, failures and totals add up, p50 and p99
    /// are the slowest generator's.
    pub fn assemble(
        target: &str,
        cfg: &BenchConfig,
        parts: Vec<Part>,
    ) -> (Self, Histogram<u64>, Vec<String>) {
        let mut all = histogram();
        let mut status: BTreeMap<String, u64> = BTreeMap::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let (mut requests, mut failed, mut ok, mut dropped, mut scheduled) = (0, 0, 0, 0, 0);
        let mut duration_s = 0f64;
        let mut ids = Vec::new();
        let mut interrupted = false;
        for p in &parts {
            p.latency.add_to(&mut all);
            for (k, v) in &p.status_codes {
                *status.entry(k.to_string()).or_default() += v;
            }
            for (k, v) in &p.errors {
                *errors.entry(k.clone()).or_default() += v;
            }
            requests += p.requests;
            failed += p.failed;
            ok += p.ok;
            dropped += p.dropped;
            scheduled += p.scheduled;
            duration_s = duration_s.max(p.duration_s);
            interrupted |= p.interrupted;
        }
        // Generators that started apart: the window from the first start to the last end.
        if parts.len() > 1 {
            let first = parts.iter().map(|p| p.start_wall_ms).min().unwrap_or(0);
            let last = parts
                .iter()
                .map(|p| p.start_wall_ms as f64 / 1000.0 + p.duration_s)
                .fold(0f64, f64::max);
            duration_s = duration_s.max(last - first as f64 / 1000.0);
        }
        let timeline = merge_timelines(&parts);
        for p in parts {
            ids.extend(p.sampled_ids);
        }
        let elapsed = duration_s.max(1e-9);
        let events = ok * u64::from(cfg.events_per_request);
        let report = Report {
            target: target.to_string(),
            mode: match &cfg.load {
                Load::Max { .. } => ModeReport::Max,
                Load::Rate { start_rate, stages } => ModeReport::Rate {
                    start_rate: *start_rate,
                    stages: stages.clone(),
                    scheduled: if scheduled == 0 {
                        Schedule::ramping(*start_rate, stages).total_requests()
                    } else {
                        scheduled
                    },
                },
            },
            connections: cfg.connections,
            events_per_request: cfg.events_per_request,
            duration_s: elapsed,
            http_req_duration: Latency::of(&all),
            http_req_failed: Failed {
                rate: if requests == 0 {
                    0.0
                } else {
                    failed as f64 / requests as f64
                },
                count: failed,
                total: requests,
            },
            http_reqs: Counted {
                count: requests,
                rate: requests as f64 / elapsed,
            },
            events_accepted: Counted {
                count: events,
                rate: events as f64 / elapsed,
            },
            dropped,
            status_codes: status,
            errors,
            e2e: None,
            timeline,
            thresholds: Vec::new(),
            interrupted,
            agents: None,
        };
        (report, all, ids)
    }
}

/// The timelines of generators that ran at the same time, interval by interval.
fn merge_timelines(parts: &[Part]) -> Vec<Sample> {
    if let [one] = parts {
        return one.timeline.clone();
    }
    let len = parts.iter().map(|p| p.timeline.len()).max().unwrap_or(0);
    (0..len)
        .map(|i| {
            let mut out = Sample::default();
            for p in parts {
                let Some(s) = p.timeline.get(i).or(p.timeline.last()) else {
                    continue;
                };
                // A generator that already ended adds its total, not its rate.
                let current = i < p.timeline.len();
                out.t = out.t.max(s.t);
                out.total += s.total;
                if current {
                    out.rate += s.rate;
                    out.failed += s.failed;
                    out.p50 = out.p50.max(s.p50);
                    out.p99 = out.p99.max(s.p99);
                    out.target_rate = match (out.target_rate, s.target_rate) {
                        (Some(a), Some(b)) => Some(a + b),
                        (a, b) => a.or(b),
                    };
                }
                out.gauges.extend(s.gauges.clone());
            }
            out
        })
        .collect()
}

/// Event-to-completed-run latency of sampled events, from the runs API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct E2eReport {
    /// Events sampled (their ids read from the answers).
    pub sampled: u64,
    /// Of those, events whose runs all ended.
    pub measured: u64,
    /// Events with no run by the deadline (no function matched, or the runner is behind).
    pub without_run: u64,
    /// Events with a run still running at the deadline.
    pub unfinished: u64,
    /// Runs by final status.
    pub runs: BTreeMap<String, u64>,
    /// Latency from the event's `ts` to its last run's `ended_at`, ms (millisecond resolution).
    pub latency: Latency,
}

/// How the run was driven.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModeReport {
    /// Open model: requests due on a schedule.
    Rate {
        /// The starting rate.
        start_rate: f64,
        /// The stages.
        stages: Vec<super::Stage>,
        /// Requests the schedule held.
        scheduled: u64,
    },
    /// Closed loop: each connection sends as soon as the previous answer arrived.
    Max,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Where requests went (the event key masked).
    pub target: String,
    /// How the run was driven.
    pub mode: ModeReport,
    /// Connections used.
    pub connections: usize,
    /// Events in each request.
    pub events_per_request: u32,
    /// Seconds from the first request's due time to the last answer.
    pub duration_s: f64,
    /// Latency of answered requests (and timeouts), measured from the time
    /// each request was due, so queueing in a stalled server is not hidden.
    pub http_req_duration: Latency,
    /// Failed requests.
    pub http_req_failed: Failed,
    /// Requests completed.
    pub http_reqs: Counted,
    /// Events in 2xx answers.
    pub events_accepted: Counted,
    /// Requests the schedule held that were never sent (the run was stopped,
    /// or connections were all busy until the grace time after the end).
    pub dropped: u64,
    /// Answers by HTTP status.
    pub status_codes: BTreeMap<String, u64>,
    /// Transport errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// With `--e2e`: event-to-completed-run latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2eReport>,
    /// One sample per interval.
    pub timeline: Vec<Sample>,
    /// Thresholds and whether each held.
    pub thresholds: Vec<ThresholdResult>,
    /// Whether the run was stopped before its end (Ctrl-C).
    pub interrupted: bool,
    /// Load agents the requests came from (`bench --agents`); none: this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<usize>,
}

impl Report {
    /// Whether every threshold held.
    pub fn thresholds_ok(&self) -> bool {
        self.thresholds.iter().all(|t| t.ok)
    }

    /// The summary in k6's layout.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mode = match &self.mode {
            ModeReport::Max => "maximum throughput (closed loop)".to_string(),
            ModeReport::Rate {
                start_rate, stages, ..
            } => {
                if stages.len() == 1 && (stages[0].target - start_rate).abs() < f64::EPSILON {
                    format!(
                        "fixed rate {}/s for {}",
                        stages[0].target,
                        super::schedule::fmt_duration(stages[0].duration)
                    )
                } else {
                    let s: Vec<String> = stages.iter().map(ToString::to_string).collect();
                    format!("ramping arrival rate from {start_rate}/s: {}", s.join(" "))
                }
            }
        };
        let _ = writeln!(out, "\n  target: {}", self.target);
        if let Some(n) = self.agents {
            let _ = writeln!(
                out,
                "  from:   {n} load agent(s) inside the stack's network"
            );
        }
        let _ = writeln!(
            out,
            "  mode:   {mode}, {} connection(s), {} event(s)/request\n",
            self.connections, self.events_per_request
        );
        let d = &self.http_req_duration;
        line(
            &mut out,
            "http_req_duration",
            &format!(
                "avg={} min={} med={} max={} p(90)={} p(99)={} p(99.9)={}",
                ms(d.avg),
                ms(d.min),
                ms(d.med),
                ms(d.max),
                ms(d.p90),
                ms(d.p99),
                ms(d.p999)
            ),
        );
        let f = &self.http_req_failed;
        line(
            &mut out,
            "http_req_failed",
            &format!("{:.2}%  {} out of {}", f.rate * 100.0, f.count, f.total),
        );
        line(
            &mut out,
            "http_reqs",
            &format!("{}  {:.2}/s", self.http_reqs.count, self.http_reqs.rate),
        );
        line(
            &mut out,
            "events_accepted",
            &format!(
                "{}  {:.2}/s",
                self.events_accepted.count, self.events_accepted.rate
            ),
        );
        if self.dropped > 0 {
            line(&mut out, "dropped_requests", &self.dropped.to_string());
        }
        if let Some(e) = &self.e2e {
            let l = &e.latency;
            line(
                &mut out,
                "event_to_completed",
                &format!(
                    "avg={} min={} med={} max={} p(90)={} p(99)={} ({} of {} sampled events measured)",
                    ms(l.avg),
                    ms(l.min),
                    ms(l.med),
                    ms(l.max),
                    ms(l.p90),
                    ms(l.p99),
                    e.measured,
                    e.sampled
                ),
            );
            if e.without_run > 0 || e.unfinished > 0 {
                line(
                    &mut out,
                    "e2e_incomplete",
                    &format!(
                        "{} without a run, {} still running at the deadline",
                        e.without_run, e.unfinished
                    ),
                );
            }
        }
        if !self.errors.is_empty() || self.status_codes.keys().any(|k| !k.starts_with('2')) {
            let mut parts: Vec<String> = self
                .status_codes
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            parts.extend(self.errors.iter().map(|(k, v)| format!("{k}: {v}")));
            line(&mut out, "answers", &parts.join(", "));
        }
        if !self.thresholds.is_empty() {
            out.push_str("\n  thresholds\n");
            for t in &self.thresholds {
                let _ = writeln!(
                    out,
                    "    {} {:<20} actual {}",
                    if t.ok { "✓" } else { "✗" },
                    t.expression,
                    t.actual_display
                );
            }
        }
        if self.interrupted {
            out.push_str("\n  (interrupted before the end)\n");
        }
        out
    }
}

impl Report {
    /// The timeline as a table: one row per interval, the sampler's gauges
    /// (service counts, queue depths) beside the latency.
    pub fn render_timeline(&self) -> String {
        let mut names: Vec<&String> = self.timeline.iter().flat_map(|s| s.gauges.keys()).collect();
        names.sort();
        names.dedup();
        let mut out = String::new();
        let _ = write!(
            out,
            "  {:>7} {:>8} {:>9} {:>9} {:>9} {:>7}",
            "t", "target/s", "reqs/s", "p50", "p99", "failed"
        );
        for n in &names {
            let _ = write!(out, " {n:>w$}", w = n.len().max(8));
        }
        out.push('\n');
        for s in &self.timeline {
            let target = s
                .target_rate
                .map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
            let _ = write!(
                out,
                "  {:>6.1}s {target:>8} {:>9.1} {:>9} {:>9} {:>7}",
                s.t,
                s.rate,
                ms(s.p50),
                ms(s.p99),
                s.failed
            );
            for n in &names {
                let v = s
                    .gauges
                    .get(*n)
                    .map_or_else(|| "-".to_string(), |v| format!("{v}"));
                let _ = write!(out, " {v:>w$}", w = n.len().max(8));
            }
            out.push('\n');
        }
        out
    }
}

fn line(out: &mut String, name: &str, value: &str) {
    let dots = 30usize.saturating_sub(name.len());
    let _ = writeln!(out, "    {name}{}: {value}", ".".repeat(dots));
}

/// Formats milliseconds as k6 does: µs below 1 ms, s from 1 s.
pub fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{:.0}µs", v * 1000.0)
    } else if v < 1000.0 {
        format!("{v:.2}ms")
    } else {
        format!("{:.2}s", v / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_figures_come_from_the_histogram() {
        let mut h = histogram();
        for i in 1..=1000u64 {
            record(&mut h, Duration::from_micros(i * 1000));
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.min - 1.0).abs() < 0.01, "{l:?}");
        assert!((l.med - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(Latency::of(&histogram()), Latency::default());
        assert_eq!(ms(0.5), "500µs");
        assert_eq!(ms(12.345), "12.35ms");
        assert_eq!(ms(1500.0), "1.50s");
    }
}
