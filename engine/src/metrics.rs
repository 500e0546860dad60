//! Process metrics in the Prometheus text format: counters, gauges and
//! latency histograms keyed by name and labels, rendered on `GET /metrics`.
//! Hand-rolled because the exposition format is a few lines of text and the
//! engine needs nothing else from a metrics library.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

#[derive(Debug)]
enum Series {
    Value(f64),
    Histogram {
        counts: [u64; BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Type,
    series: BTreeMap<String, Series>,
}

/// A registry of metric families; cheap to update from many tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    write_labels(&mut out, labels);
    out
}

/// Appends `{k="v",...}` (nothing for no labels), escaping the values.
fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

thread_local! {
    /// Where a series' labels are rendered to look it up: updating an
    /// existing series (every request) allocates nothing.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Type,
        labels: &[(&str, &str)],
        f: impl FnOnce(&mut Series),
    ) {
        KEY.with_borrow_mut(|key| {
            // Rendered before locking, so the lock is held for the update only.
            key.clear();
            write_labels(key, labels);
            let Ok(mut families) = self.families.lock() else {
                return;
            };
            let family = families.entry(name).or_insert_with(|| Family {
                help,
                kind,
                series: BTreeMap::new(),
            });
            if family.kind != kind {
                return;
            }
            if let Some(series) = family.series.get_mut(key.as_str()) {
                f(series);
                return;
            }
            let mut series = match kind {
                Type::Histogram => Series::Histogram {
                    counts: [0; BUCKETS.len()],
                    sum: 0.0,
                    count: 0,
                },
                _ => Series::Value(0.0),
            };
            f(&mut series);
            family.series.insert(key.clone(), series);
        });
    }

    /// Adds `n` to a counter.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], n: u64) {
        self.with(name, help, Type::Counter, labels, |s| {
            if let Series::Value(v) = s {
                *v += n as f64;
            }
        });
    }

    /// Sets a gauge.
    pub fn gauge_set(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.with(name, help, Type::Gauge, labels, |s| {
            if let Series::Value(v) = s {
                *v = value;
            }
        });
    }

    /// Records one observation (in seconds) in a histogram.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        seconds: f64,
    ) {
        self.with(name, help, Type::Histogram, labels, |s| {
            if let Series::Histogram { counts, sum, count } = s {
                if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
                    counts[i] += 1;
                }
                *sum += seconds;
                *count += 1;
            }
        });
    }

    /// The current value of a counter or gauge (for tests and status output).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let families = self.families.lock().ok()?;
        match families.get(name)?.series.get(&render_labels(labels))? {
            Series::Value(v) => Some(*v),
            Series::Histogram { count, .. } => Some(*count as f64),
        }
    }

    /// Every family in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(families) = self.families.lock() else {
            return out;
        };
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, series) in &family.series {
                match series {
                    Series::Value(v) => {
                        let _ = writeln!(out, "{name}{labels} {v}");
                    }
                    Series::Histogram { counts, sum, count } => {
                        // Bucket lines need `le` added to the series' own labels.
                        let inner = labels.trim_start_matches('{').trim_end_matches('}');
                        let sep = if inner.is_empty() { "" } else { "," };
                        let mut cumulative = 0;
                        for (bound, n) in BUCKETS.iter().zip(counts) {
                            cumulative += n;
                            let _ = writeln!(
                                out,
                                "{name}_bucket{{{inner}{sep}le=\"{bound}\"}} {cumulative}"
                            );
                        }
                        let _ = writeln!(out, "{name}_bucket{{{inner}{sep}le=\"+Inf\"}} {count}");
                        let _ = writeln!(out, "{name}_sum{labels} {sum}");
                        let _ = writeln!(out, "{name}_count{labels} {count}");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::new();
        m.counter("reqs_total", "Requests.", &[("status", "200")], 2);
        m.counter("reqs_total", "Requests.", &[("status", "200")], 1);
        m.gauge_set("depth", "Depth.", &[("queue", "a\"b")], 7.0);
        m.observe("lat_seconds", "Latency.", &[], 0.003);
        m.observe("lat_seconds", "Latency.", &[], 100.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE reqs_total counter\nreqs_total{status=\"200\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("depth{queue=\"a\\\"b\"} 7"), "{text}");
        assert!(
            text.contains("lat_seconds_bucket{le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("lat_seconds_count 2\n"), "{text}");
        assert_eq!(m.value("reqs_total", &[("status", "200")]), Some(3.0));
    }
}
