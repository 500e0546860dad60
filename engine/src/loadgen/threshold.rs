//! Pass/fail criteria for CI, k6-style: `p99<50ms`, `p(99.9)<=200ms`,
//! `med<10ms`, `failed<1%`, `rate>290`, `e2e_p99<25ms`, `dropped<1`.
//!
//! Grammar: `METRIC OP VALUE`, OP one of `<`, `<=`, `>`, `>=`. Latency
//! metrics (`min`, `med`, `avg`, `max`, `pN`, `p(N)`, each also with an
//! `e2e_` prefix) take a duration (`ms` when no unit); `failed` a percentage
//! (`1%`) or a fraction (`0.01`); `rate` and `events_rate` per second;
//! `reqs`, `events` and `dropped` counts.

use std::fmt;
use std::str::FromStr;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::LoadError;
use super::stats::{Latency, Report};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
        }
    }
}

/// What a threshold looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency figure, ms; `e2e` for event-to-completed latency.
    Latency {
        /// Which figure.
        stat: Stat,
        /// Event-to-completed instead of request latency.
        e2e: bool,
    },
    /// Failed / all requests.
    Failed,
    /// Requests per second.
    Rate,
    /// Events accepted per second.
    EventsRate,
    /// Requests completed.
    Reqs,
    /// Events accepted.
    Events,
    /// Requests never sent.
    Dropped,
}

/// A latency statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// Minimum.
    Min,
    /// Mean.
    Avg,
    /// Maximum.
    Max,
    /// A percentile (0..=100); the median is 50.
    Percentile(f64),
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written.
    pub expression: String,
    /// What it looks at.
    pub metric: Metric,
    /// How it compares.
    pub op: Op,
    /// The limit, in the metric's unit (ms, fraction, per second, count).
    pub limit: f64,
}

/// A threshold's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdResult {
    /// As written.
    pub expression: String,
    /// The measured value, in the metric's unit (ms, fraction, per second, count).
    pub actual: f64,
    /// The measured value for people.
    pub actual_display: String,
    /// Whether it held.
    pub ok: bool,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl FromStr for Threshold {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| LoadError::Option {
            option: "--threshold",
            message: format!(
                "`{s}`: {why}; expected e.g. `p99<50ms`, `med<=10ms`, `failed<1%`, `rate>290`, `e2e_p99<25ms`"
            ),
        };
        let expr: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let at = expr
            .find(['<', '>'])
            .ok_or_else(|| bad("no `<` or `>`".into()))?;
        let (name, rest) = expr.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let metric = parse_metric(name).ok_or_else(|| bad(format!("unknown metric `{name}`")))?;
        let limit = match metric {
            Metric::Latency { .. } => parse_ms(value),
            Metric::Failed => match value.strip_suffix('%') {
                Some(p) => p.parse::<f64>().ok().map(|p| p / 100.0),
                None => value.parse().ok(),
            },
            _ => value.strip_suffix("/s").unwrap_or(value).parse().ok(),
        }
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| bad(format!("cannot read the value `{value}`")))?;
        Ok(Self {
            expression: expr,
            metric,
            op,
            limit,
        })
    }
}

fn parse_metric(name: &str) -> Option<Metric> {
    let (e2e, stat) = match name.strip_prefix("e2e_") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let latency = |stat| Some(Metric::Latency { stat, e2e });
    match stat {
        "min" => latency(Stat::Min),
        "avg" => latency(Stat::Avg),
        "max" => latency(Stat::Max),
        "med" => latency(Stat::Percentile(50.0)),
        "failed" if !e2e => Some(Metric::Failed),
        "rate" if !e2e => Some(Metric::Rate),
        "events_rate" if !e2e => Some(Metric::EventsRate),
        "reqs" if !e2e => Some(Metric::Reqs),
        "events" if !e2e => Some(Metric::Events),
        "dropped" if !e2e => Some(Metric::Dropped),
        other => {
            let p = other.strip_prefix('p')?;
            let p = p
                .strip_prefix('(')
                .and_then(|p| p.strip_suffix(')'))
                .unwrap_or(p);
            let q: f64 = p.parse().ok()?;
            (0.0..=100.0).contains(&q).then_some(Metric::Latency {
                stat: Stat::Percentile(q),
                e2e,
            })
        }
    }
}

fn parse_ms(v: &str) -> Option<f64> {
    if v.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return v.parse().ok();
    }
    super::schedule::parse_duration(v)
        .ok()
        .map(|d| d.as_secs_f64() * 1000.0)
}

/// The histograms thresholds on any percentile need, besides the report.
pub struct Measured<'a> {
    /// The report's figures.
    pub report: &'a Report,
    /// Request latency, µs.
    pub requests: &'a Histogram<u64>,
    /// Event-to-completed latency, µs, when measured.
    pub e2e: Option<&'a Histogram<u64>>,
}

impl Threshold {
    /// Evaluates the threshold. A latency threshold with no samples fails.
    pub fn evaluate(&self, m: &Measured<'_>) -> ThresholdResult {
        let r = m.report;
        let (actual, display) = match self.metric {
            Metric::Latency { stat, e2e } => {
                let h = if e2e { m.e2e } else { Some(m.requests) };
                match h.filter(|h| !h.is_empty()) {
                    None => {
                        return ThresholdResult {
                            expression: self.expression.clone(),
                            actual: f64::NAN,
                            actual_display: "no samples".into(),
                            ok: false,
                        };
                    }
                    Some(h) => {
                        let l = Latency::of(h);
                        let v = match stat {
                            Stat::Min => l.min,
                            Stat::Avg => l.avg,
                            Stat::Max => l.max,
                            Stat::Percentile(q) => Latency::percentile(h, q),
                        };
                        (v, super::stats::ms(v))
                    }
                }
            }
            Metric::Failed => (
                r.http_req_failed.rate,
                format!("{:.2}%", r.http_req_failed.rate * 100.0),
            ),
            Metric::Rate => (r.http_reqs.rate, format!("{:.2}/s", r.http_reqs.rate)),
            Metric::EventsRate => (
                r.events_accepted.rate,
                format!("{:.2}/s", r.events_accepted.rate),
            ),
            Metric::Reqs => (r.http_reqs.count as f64, r.http_reqs.count.to_string()),
            Metric::Events => (
                r.events_accepted.count as f64,
                r.events_accepted.count.to_string(),
            ),
            Metric::Dropped => (r.dropped as f64, r.dropped.to_string()),
        };
        ThresholdResult {
            expression: self.expression.clone(),
            actual,
            actual_display: display,
            ok: self.op.holds(actual, self.limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    #[test]
    fn thresholds_parse_with_units() {
        let p = t("p99 < 50ms");
        assert_eq!(
            p.metric,
            Metric::Latency {
                stat: Stat::Percentile(99.0),
                e2e: false
            }
        );
        assert_eq!((p.op, p.limit), (Op::Lt, 50.0));
        assert_eq!(t("p(99.9)<=1s").limit, 1000.0);
        assert_eq!(
            t("p(99.9)<=1s").metric,
            Metric::Latency {
                stat: Stat::Percentile(99.9),
                e2e: false
            }
        );
        assert_eq!(t("med<7").limit, 7.0);
        assert_eq!(t("failed<1%").limit, 0.01);
        assert_eq!(t("failed<0.05").limit, 0.05);
        assert_eq!((t("rate>290").op, t("rate>290").limit), (Op::Gt, 290.0));
        assert_eq!(
            t("e2e_p50<5ms").metric,
            Metric::Latency {
                stat: Stat::Percentile(50.0),
                e2e: true
            }
        );
        assert_eq!(t("dropped<1").metric, Metric::Dropped);
    }

    #[test]
    fn bad_thresholds_say_what_is_wrong() {
        for (s, why) in [
            ("p99", "no `<`"),
            ("latency<5ms", "unknown metric"),
            ("p101<5ms", "unknown metric"),
            ("e2e_rate>5", "unknown metric"),
            ("p99<fast", "cannot read"),
        ] {
            let err = s.parse::<Threshold>().unwrap_err().to_string();
            assert!(err.contains(why), "{s}: {err}");
        }
    }
}
