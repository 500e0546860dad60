//! The engine's metrics: every family the roles update, registered once in a
//! `prometheus-client` registry and rendered on `GET /metrics` in the
//! OpenMetrics text format.
//!
//! Each family is a typed field, so an update is a lookup of its label set
//! (a read lock and a hash, no strings rendered) and an atomic add; series
//! of different families never share a lock. Labels stay bounded: roles,
//! routes the router matched, queues, statuses, function ids and step
//! drivers, never run or event ids.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Upper bounds (seconds) of the run-duration buckets: runs sleep and wait
/// for events, so they last up to days.
pub const RUN_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
    86400.0,
];

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most distinct routes labelled; past it a route counts as `other` (the
/// router's routes are far fewer: this only bounds a mistake).
const MAX_ROUTES: usize = 64;

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

fn run_length() -> Histogram {
    Histogram::new(RUN_BUCKETS)
}

fn latency_family<L: EncodeLabelSet + Clone + Eq + std::hash::Hash>() -> Histograms<L> {
    Family::new_with_constructor(latency as fn() -> Histogram)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// `role`, `route`, `status` of an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HttpLabels {
    /// The process's role (`event-api`, `runner`, `executor`).
    pub role: &'static str,
    /// The route the router matched (`unmatched` for none).
    pub route: &'static str,
    /// The response status code.
    pub status: u16,
}

/// `role` and `route` of an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The process's role.
    pub role: &'static str,
    /// The route the router matched.
    pub route: &'static str,
}

/// A process's role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RoleLabel {
    /// `event-api`, `runner` or `executor`.
    pub role: &'static str,
}

/// A queue (`events`, `work`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueueLabel {
    /// The queue.
    pub queue: &'static str,
}

/// A queue and a state of its messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueueStateLabels {
    /// The queue.
    pub queue: &'static str,
    /// `visible`, `in_flight`, `delayed` or `dead`.
    pub state: &'static str,
}

/// A status (of runs, of step outcomes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabel {
    /// The status.
    pub status: &'static str,
}

/// An outcome (of events, of waits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: &'static str,
}

/// A kind of step job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    /// The job's kind.
    pub kind: &'static str,
}

/// A function.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FunctionLabel {
    /// The function's id.
    pub function: String,
}

/// A function and why a run of it was not started.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SkipLabels {
    /// The function's id.
    pub function: String,
    /// `idempotency`, `rate_limit`, ...
    pub reason: &'static str,
}

/// A function and how a run of it ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RunEndLabels {
    /// The function's id.
    pub function: String,
    /// `completed`, `failed` or `cancelled`.
    pub status: &'static str,
}

/// A function and the driver of one of its steps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StepLabels {
    /// The function's id.
    pub function: String,
    /// `http` or `docker`.
    pub driver: &'static str,
    /// `ok`, or `error` when the attempt failed.
    pub result: &'static str,
}

/// Every metric family of an engine process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    routes: RwLock<HashSet<&'static str>>,
    /// `stackctl_http_requests_total{role,route,status}`.
    pub http_requests: Family<HttpLabels, Counter>,
    /// `stackctl_http_request_duration_seconds{role,route}`.
    pub http_duration: Histograms<RouteLabels>,
    /// `stackctl_http_requests_in_flight{role}`.
    pub http_in_flight: Family<RoleLabel, Gauge>,
    /// `stackctl_events_accepted_total`.
    pub events_accepted: Counter,
    /// `stackctl_queue_messages{queue,state}`, read at each scrape.
    pub queue_messages: Family<QueueStateLabels, Gauge>,
    /// `stackctl_queue_dead_letters{queue}`: the dead-letter queue's depth,
    /// read at each scrape.
    pub queue_dead_letters: Family<QueueLabel, Gauge>,
    /// `stackctl_queue_oldest_message_age_seconds{queue}`, read at each
    /// scrape where the backend knows it (embedded).
    pub queue_oldest_age: Family<QueueLabel, FloatGauge>,
    /// `stackctl_queue_lag_seconds{queue}`: from when a message was due to
    /// its first receipt.
    pub queue_lag: Histograms<QueueLabel>,
    /// `stackctl_runs{status}`, read at each scrape.
    pub runs: Family<StatusLabel, Gauge>,
    /// `stackctl_runs_ended_total{function,status}`.
    pub runs_ended: Family<RunEndLabels, Counter>,
    /// `stackctl_run_duration_seconds{function,status}`.
    pub run_duration: Family<RunEndLabels, Histogram, fn() -> Histogram>,
    /// `stackctl_step_duration_seconds{function,driver,result}`.
    pub step_duration: Histograms<StepLabels>,
    /// `stackctl_runner_message_seconds`.
    pub runner_message_seconds: Histogram,
    /// `stackctl_runner_events_total{outcome}`.
    pub runner_events: Family<OutcomeLabel, Counter>,
    /// `stackctl_runner_waits_total{outcome}`.
    pub runner_waits: Family<OutcomeLabel, Counter>,
    /// `stackctl_runner_runs_created_total{function}`.
    pub runner_runs_created: Family<FunctionLabel, Counter>,
    /// `stackctl_runner_runs_throttled_total{function}`.
    pub runner_runs_throttled: Family<FunctionLabel, Counter>,
    /// `stackctl_runner_runs_skipped_total{function,reason}`.
    pub runner_runs_skipped: Family<SkipLabels, Counter>,
    /// `stackctl_runner_events_debounced_total{function}`.
    pub runner_events_debounced: Family<FunctionLabel, Counter>,
    /// `stackctl_runner_events_batched_total{function}`.
    pub runner_events_batched: Family<FunctionLabel, Counter>,
    /// `stackctl_runner_runs_purged_total`.
    pub runner_runs_purged: Counter,
    /// `stackctl_runner_functions_restored_total`.
    pub runner_functions_restored: Counter,
    /// `stackctl_executor_job_seconds{kind}`.
    pub executor_job_seconds: Histograms<KindLabel>,
    /// `stackctl_executor_steps_total{status}`.
    pub executor_steps: Family<StatusLabel, Counter>,
    /// `stackctl_executor_retries_total`.
    pub executor_retries: Counter,
    /// `stackctl_executor_leases_lost_total`.
    pub executor_leases_lost: Counter,
    /// `stackctl_executor_jobs_without_run_total`.
    pub executor_jobs_without_run: Counter,
    /// `stackctl_executor_runs_timed_out_total`.
    pub executor_runs_timed_out: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` under `name` (a counter's without its `_total`,
/// which the encoder adds); `help` ends with the period the registry adds.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help.trim_end_matches('.'), metric.clone());
    metric
}

impl Metrics {
    /// Every family registered, with no series yet.
    pub fn new() -> Self {
        let mut r = Registry::default();
        Self {
            http_requests: register(
                &mut r,
                "stackctl_http_requests",
                "HTTP requests by route and status.",
                Family::default(),
            ),
            http_duration: register(
                &mut r,
                "stackctl_http_request_duration_seconds",
                "HTTP request latency by route.",
                latency_family(),
            ),
            http_in_flight: register(
                &mut r,
                "stackctl_http_requests_in_flight",
                "HTTP requests being served.",
                Family::default(),
            ),
            events_accepted: register(
                &mut r,
                "stackctl_events_accepted",
                "Events durably accepted by the event API.",
                Counter::default(),
            ),
            queue_messages: register(
                &mut r,
                "stackctl_queue_messages",
                "Messages in a queue by state.",
                Family::default(),
            ),
            queue_dead_letters: register(
                &mut r,
                "stackctl_queue_dead_letters",
                "Messages in a queue's dead-letter queue.",
                Family::default(),
            ),
            queue_oldest_age: register(
                &mut r,
                "stackctl_queue_oldest_message_age_seconds",
                "Age of the oldest message ready to be received (since it became ready), \
                 where the backend knows it.",
                Family::default(),
            ),
            queue_lag: register(
                &mut r,
                "stackctl_queue_lag_seconds",
                "Time from when a message was due (sent, or its job's start time) to its \
                 first receipt.",
                latency_family(),
            ),
            runs: register(
                &mut r,
                "stackctl_runs",
                "Runs by status.",
                Family::default(),
            ),
            runs_ended: register(
                &mut r,
                "stackctl_runs_ended",
                "Runs ended, by function and status (completed, failed, cancelled).",
                Family::default(),
            ),
            run_duration: register(
                &mut r,
                "stackctl_run_duration_seconds",
                "Time from a run's creation to its end, by function and status.",
                Family::new_with_constructor(run_length as fn() -> Histogram),
            ),
            step_duration: register(
                &mut r,
                "stackctl_step_duration_seconds",
                "Driver time of one step attempt, by function, driver and result (ok, error).",
                latency_family(),
            ),
            runner_message_seconds: register(
                &mut r,
                "stackctl_runner_message_seconds",
                "Time to process one event-stream message.",
                latency(),
            ),
            runner_events: register(
                &mut r,
                "stackctl_runner_events",
                "Events processed by the runner, by outcome (processed, duplicate).",
                Family::default(),
            ),
            runner_waits: register(
                &mut r,
                "stackctl_runner_waits",
                "Waits ended by an event, by outcome (resolved, cancelled).",
                Family::default(),
            ),
            runner_runs_created: register(
                &mut r,
                "stackctl_runner_runs_created",
                "Runs created, by function.",
                Family::default(),
            ),
            runner_runs_throttled: register(
                &mut r,
                "stackctl_runner_runs_throttled",
                "Runs whose start a throttle put off, by function.",
                Family::default(),
            ),
            runner_runs_skipped: register(
                &mut r,
                "stackctl_runner_runs_skipped",
                "Runs not started, by function and reason (idempotency, rate_limit).",
                Family::default(),
            ),
            runner_events_debounced: register(
                &mut r,
                "stackctl_runner_events_debounced",
                "Events held back by a function's debounce, by function.",
                Family::default(),
            ),
            runner_events_batched: register(
                &mut r,
                "stackctl_runner_events_batched",
                "Events gathered into a function's batches, by function.",
                Family::default(),
            ),
            runner_runs_purged: register(
                &mut r,
                "stackctl_runner_runs_purged",
                "Ended runs deleted after the run retention.",
                Counter::default(),
            ),
            runner_functions_restored: register(
                &mut r,
                "stackctl_runner_functions_restored",
                "Reloads of the function registry that found configured functions missing \
                 from the state store (its data was lost) and put them back.",
                Counter::default(),
            ),
            executor_job_seconds: register(
                &mut r,
                "stackctl_executor_job_seconds",
                "Time to process one step job, by kind.",
                latency_family(),
            ),
            executor_steps: register(
                &mut r,
                "stackctl_executor_steps",
                "Step outcomes written, by status (completed, skipped, failed).",
                Family::default(),
            ),
            executor_retries: register(
                &mut r,
                "stackctl_executor_retries",
                "Step attempts that failed and were scheduled again.",
                Counter::default(),
            ),
            executor_leases_lost: register(
                &mut r,
                "stackctl_executor_leases_lost",
                "Step attempts stopped because their lease ended before they did.",
                Counter::default(),
            ),
            executor_jobs_without_run: register(
                &mut r,
                "stackctl_executor_jobs_without_run",
                "Step jobs whose run the state store does not have.",
                Counter::default(),
            ),
            executor_runs_timed_out: register(
                &mut r,
                "stackctl_executor_runs_timed_out",
                "Runs cancelled by their function's timeouts.",
                Counter::default(),
            ),
            registry: r,
            routes: RwLock::new(HashSet::new()),
        }
    }

    /// `route` as a label that lives as long as the process: the router's
    /// routes are a handful, each stored once.
    fn route(&self, route: &str) -> &'static str {
        if let Ok(routes) = self.routes.read()
            && let Some(r) = routes.get(route)
        {
            return r;
        }
        let Ok(mut routes) = self.routes.write() else {
            return "other";
        };
        if let Some(r) = routes.get(route) {
            return r;
        }
        if routes.len() >= MAX_ROUTES {
            return "other";
        }
        let r: &'static str = Box::leak(route.to_owned().into_boxed_str());
        routes.insert(r);
        r
    }

    /// Counts and times one HTTP request of `role` on `route`.
    pub fn http_request(&self, role: &'static str, route: &str, status: u16, seconds: f64) {
        let route = self.route(route);
        self.http_requests
            .get_or_create(&HttpLabels {
                role,
                route,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { role, route })
            .observe(seconds);
    }

    /// Counts a run of `function` that ended with `status` (a terminal
    /// status's name) after `seconds`.
    pub fn run_ended(&self, function: &str, status: &'static str, seconds: f64) {
        let labels = RunEndLabels {
            function: function.to_string(),
            status,
        };
        self.runs_ended.get_or_create(&labels).inc();
        self.run_duration.get_or_create(&labels).observe(seconds);
    }

    /// Records a message of `queue` first received `lag_ms` after it was due.
    pub fn queue_lag(&self, queue: &'static str, lag_ms: i64) {
        self.queue_lag
            .get_or_create(&QueueLabel { queue })
            .observe(lag_ms.max(0) as f64 / 1000.0);
    }

    /// Counts one event of `function` in the family `family`.
    pub fn per_function(family: &Family<FunctionLabel, Counter>, function: &str) {
        family
            .get_or_create(&FunctionLabel {
                function: function.to_string(),
            })
            .inc();
    }

    /// Every family in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A run status's label: its name in the runs API.
pub fn status_label(status: crate::backend::RunStatus) -> &'static str {
    use crate::backend::RunStatus;
    match status {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Skipped => "skipped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::new();
        m.http_request("event-api", "/e/{event_key}", 200, 0.003);
        m.http_request("event-api", "/e/{event_key}", 200, 100.0);
        m.http_request("event-api", "/e/{event_key}", 401, 0.001);
        m.events_accepted.inc_by(3);
        m.queue_messages
            .get_or_create(&QueueStateLabels {
                queue: "work",
                state: "dead",
            })
            .set(7);
        m.run_ended("fn-\"a\"", "failed", 2.0);
        let text = m.render();
        for line in [
            "# TYPE stackctl_http_requests counter",
            "stackctl_http_requests_total{role=\"event-api\",route=\"/e/{event_key}\",status=\"200\"} 2",
            "stackctl_http_requests_total{role=\"event-api\",route=\"/e/{event_key}\",status=\"401\"} 1",
            "stackctl_http_request_duration_seconds_bucket{le=\"0.0025\",role=\"event-api\",route=\"/e/{event_key}\"} 1",
            "stackctl_http_request_duration_seconds_count{role=\"event-api\",route=\"/e/{event_key}\"} 3",
            "stackctl_events_accepted_total 3",
            "stackctl_queue_messages{queue=\"work\",state=\"dead\"} 7",
            "stackctl_runs_ended_total{function=\"fn-\\\"a\\\"\",status=\"failed\"} 1",
            "stackctl_run_duration_seconds_count{function=\"fn-\\\"a\\\"\",status=\"failed\"} 1",
            "# HELP stackctl_events_accepted Events durably accepted by the event API.",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        // One stored label per route however many requests it served.
        assert_eq!(m.routes.read().unwrap().len(), 1);
    }
}
