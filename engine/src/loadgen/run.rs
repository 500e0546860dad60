//! Driving a run: one worker task per connection taking request slots from
//! a shared counter. In fixed-rate mode slot `n` is due at
//! `Schedule::due(n)`; a worker that picks it up late (every connection was
//! busy) still measures from the due time, which is how a stalled server
//! shows in the percentiles instead of hiding behind fewer requests
//! (coordinated omission). In maximum-throughput mode each worker sends as
//! soon as its previous answer arrived. A ticker snapshots every interval
//! for the live line and the timeline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::client::{Conn, Endpoint, Failure, mask_key};
use super::payload::Body;
use super::schedule::{Schedule, Stage};
use super::stats::{self, Buckets, Latency, Part, Report, Sample};
use super::threshold::{Measured, Threshold};
use super::{LoadError, Observer, Sampler, e2e};

/// How load is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Load {
    /// Closed loop: as fast as the server answers, for `duration`.
    Max {
        /// How long.
        #[serde(with = "super::schedule::secs_f64")]
        duration: Duration,
    },
    /// Open model: requests due at a rate ramping through `stages` from `start_rate`.
    Rate {
        /// Requests per second at the start.
        start_rate: f64,
        /// The ramps (one stage at `start_rate` for a constant rate).
        stages: Vec<Stage>,
    },
}

impl Load {
    /// A constant `rate` for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Load::Rate {
            start_rate: rate,
            stages: vec![Stage {
                duration,
                target: rate,
            }],
        }
    }

    /// How long the load lasts.
    pub fn duration(&self) -> Duration {
        match self {
            Load::Max { duration } => *duration,
            Load::Rate { stages, .. } => stages.iter().map(|s| s.duration).sum(),
        }
    }
}

/// Event-to-completed-run measurement through the runs API.
#[derive(Debug, Clone)]
pub struct E2eConfig {
    /// Base URL of the runs API, e.g. `http://127.0.0.1:8288/v1`.
    pub runs_api: String,
    /// Its bearer token.
    pub token: String,
    /// At most this many events are sampled, spread over the run.
    pub samples: usize,
    /// How long to wait after the load for sampled runs to end.
    pub wait: Duration,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The full ingestion URL: `http://host:port/e/{event_key}`.
    pub url: String,
    /// `HOST[:PORT]` that connections go to instead of the URL's host
    /// (TLS still checks the URL's host name): a load balancer before the
    /// DNS record of its domain exists.
    pub connect_to: Option<String>,
    /// Keep-alive connections (concurrent requests at most).
    pub connections: usize,
    /// How load is applied.
    pub load: Load,
    /// Events in each request (1: one object; more: an array).
    pub events_per_request: u32,
    /// The body.
    pub body: Body,
    /// Per-request timeout; a request without an answer by then fails.
    pub timeout: Duration,
    /// Pass/fail criteria.
    pub thresholds: Vec<Threshold>,
    /// Measure event-to-completed-run latency.
    pub e2e: Option<E2eConfig>,
    /// Timeline and live-line interval.
    pub interval: Duration,
}

impl BenchConfig {
    /// A run against `url` with defaults: 10 connections, 10 s at maximum
    /// throughput, one built-in event per request, 10 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_to: None,
            connections: 10,
            load: Load::Max {
                duration: Duration::from_secs(10),
            },
            events_per_request: 1,
            body: Body::Builtin {
                name: "stackctl/bench".into(),
                pad: 0,
            },
            timeout: Duration::from_secs(10),
            thresholds: Vec::new(),
            e2e: None,
            interval: Duration::from_secs(1),
        }
    }

    fn check(&self) -> Result<(), LoadError> {
        let bad = |option, message: &str| {
            Err(LoadError::Option {
                option,
                message: message.to_string(),
            })
        };
        if self.connections == 0 {
            return bad("--connections", "must be at least 1");
        }
        if self.events_per_request == 0 {
            return bad("--events", "must be at least 1");
        }
        if self.load.duration().is_zero() {
            return bad("--duration", "must be more than zero");
        }
        if let Load::Rate { start_rate, stages } = &self.load {
            if !start_rate.is_finite() || *start_rate < 0.0 {
                return bad("--rate", "must be zero or more");
            }
            if stages.iter().all(|s| s.target == 0.0) && *start_rate == 0.0 {
                return bad("--rate", "the schedule sends nothing (every rate is 0)");
            }
        }
        if self.timeout.is_zero() || self.interval.is_zero() {
            return bad("--timeout", "must be more than zero");
        }
        if let Body::Builtin { name, .. } = &self.body {
            Body::check_name(name)?;
        }
        Ok(())
    }
}

/// Figures the live line shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Planned length of the load.
    pub planned: Duration,
}

/// What one worker measured since the last snapshot, plus its running
/// totals; one lock per worker, so workers never contend with each other.
struct Interval {
    hist: Histogram<u64>,
    requests: u64,
    failed: u64,
}

/// What a worker measured.
struct Tally {
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    failed: u64,
    requests: u64,
    ok: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            failed: 0,
            requests: 0,
            ok: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.status {
            *self.status.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.failed += other.failed;
        self.requests += other.requests;
        self.ok += other.ok;
    }
}

struct Shared {
    ep: Endpoint,
    cfg: BenchConfig,
    schedule: Option<Schedule>,
    next: AtomicU64,
    /// Each worker's figures of the current interval.
    interval: Vec<Mutex<Interval>>,
    stop: CancellationToken,
    sample_every: u64,
    sampled: Mutex<Vec<Bytes>>,
    e2e_cap: usize,
}

/// When the load started, set once every connection is open.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    start_wall_ms: i64,
    /// No new request is sent from this instant on.
    last_send: Instant,
}

/// Runs the load, then (with `e2e`) waits for the sampled runs, then
/// evaluates the thresholds. `stop` ends the load early (the report says so).
pub async fn run(
    cfg: BenchConfig,
    observer: &dyn Observer,
    sampler: Option<Arc<dyn Sampler>>,
    stop: CancellationToken,
) -> Result<Report, LoadError> {
    let part = measure(cfg.clone(), observer, sampler, stop.clone()).await?;
    conclude(&cfg, vec![part], observer, stop).await
}

/// Merges the figures of one or more generators that ran `cfg` (each its
/// share of it) into one report, measures the sampled events' runs (with
/// `e2e`) and evaluates the thresholds on the merged histograms.
pub async fn conclude(
    cfg: &BenchConfig,
    parts: Vec<Part>,
    observer: &dyn Observer,
    stop: CancellationToken,
) -> Result<Report, LoadError> {
    let (mut report, all, ids) = Report::assemble(&mask_key(&cfg.url), cfg, parts);
    let mut e2e_hist = None;
    if let Some(e) = &cfg.e2e {
        observer.phase(&format!(
            "waiting up to {}s for the runs of {} sampled events",
            e.wait.as_secs(),
            ids.len()
        ));
        let (r, h) = e2e::measure(e, &ids, stop).await?;
        report.e2e = Some(r);
        e2e_hist = Some(h);
    }
    let measured = Measured {
        report: &report,
        requests: &all,
        e2e: e2e_hist.as_ref(),
    };
    let results = cfg
        .thresholds
        .iter()
        .map(|t| t.evaluate(&measured))
        .collect();
    report.thresholds = results;
    Ok(report)
}

/// Applies the load of `cfg` (without its e2e wait and thresholds) and
/// returns this generator's figures. `stop` ends the load early.
pub async fn measure(
    cfg: BenchConfig,
    observer: &dyn Observer,
    sampler: Option<Arc<dyn Sampler>>,
    stop: CancellationToken,
) -> Result<Part, LoadError> {
    cfg.check()?;
    let ep = Endpoint::resolve(&cfg.url, cfg.connect_to.as_deref()).await?;
    let schedule = match &cfg.load {
        Load::Max { .. } => None,
        Load::Rate { start_rate, stages } => Some(Schedule::ramping(*start_rate, stages)),
    };
    let planned = cfg.load.duration();
    let e2e_cap = cfg.e2e.as_ref().map_or(0, |e| e.samples);
    let sample_every = match (&schedule, e2e_cap) {
        (_, 0) => u64::MAX,
        (Some(s), cap) => (s.total_requests() / cap as u64).max(1),
        // Unknown total: about 2,000 requests/s for the planned time.
        (None, cap) => (planned.as_secs().max(1) * 2000 / cap as u64).max(1),
    };
    let grace = if schedule.is_some() {
        cfg.timeout
    } else {
        Duration::ZERO
    };
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        interval: (0..cfg.connections)
            .map(|_| {
                Mutex::new(Interval {
                    hist: stats::histogram(),
                    requests: 0,
                    failed: 0,
                })
            })
            .collect(),
        stop: stop.child_token(),
        sample_every,
        sampled: Mutex::new(Vec::new()),
        e2e_cap,
        schedule,
        ep,
        cfg,
    });

    let gauges: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
    let sampler_task = sampler.map(|s| {
        let gauges = Arc::clone(&gauges);
        super::sample_every(s, shared.cfg.interval, shared.stop.clone(), move |read| {
            gauges
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(read);
        })
    });

    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(shared.cfg.connections);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), LoadError>>(threads);
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Clock>);
    let mut done = Vec::with_capacity(threads);
    for t in 0..threads {
        let (tx, rx) = tokio::sync::oneshot::channel();
        done.push(rx);
        let indices: Vec<usize> = (t..shared.cfg.connections).step_by(threads).collect();
        let (shared, ready, go) = (Arc::clone(&shared), ready_tx.clone(), go_rx.clone());
        std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || {
                let _ = tx.send(load_thread(shared, indices, ready, go));
            })
            .map_err(|e| LoadError::Internal(format!("cannot start a load thread: {e}")))?;
    }
    drop(ready_tx);
    for _ in 0..threads {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            // Dropping `go_tx` (on return) releases the other threads.
            Some(Err(e)) => return Err(e),
            None => {
                return Err(LoadError::Internal(
                    "a load thread ended before connecting".into(),
                ));
            }
        }
    }
    let start = Instant::now();
    let clock = Clock {
        start,
        start_wall_ms: wall_ms(),
        last_send: start + planned + grace,
    };
    let _ = go_tx.send(Some(clock));
    let mut workers = std::pin::pin!(async move {
        let mut all = Vec::new();
        for rx in done {
            all.extend(rx.await.unwrap_or_default());
        }
        all
    });

    let mut timeline = Vec::new();
    let mut tally = Tally::new();
    // Every request's latency: the interval histograms are merged in at
    // each snapshot, so a worker records each request once.
    let mut all = stats::histogram();
    let mut ticker =
        tokio::time::interval_at((start + shared.cfg.interval).into(), shared.cfg.interval);
    let mut last = (0u64, 0u64, start);
    loop {
        tokio::select! {
            tallies = &mut workers => {
                let expected = shared.cfg.connections;
                if tallies.len() != expected {
                    return Err(LoadError::Internal(format!("{} of {expected} load workers died", expected - tallies.len())));
                }
                for t in tallies {
                    tally.merge(t);
                }
                break;
            }
            _ = ticker.tick() => {
                let sample = snapshot(&shared, clock.start, &mut last, &gauges, &mut all);
                observer.tick(&sample, &Progress { elapsed: start.elapsed(), planned });
                timeline.push(sample);
            }
            () = stop.cancelled(), if !shared.stop.is_cancelled() => shared.stop.cancel(),
        }
    }
    let finished = Instant::now();
    let interrupted = stop.is_cancelled();
    // The last partial interval, so the timeline adds up to the total.
    if totals(&shared).0 > last.0 {
        let sample = snapshot(&shared, clock.start, &mut last, &gauges, &mut all);
        observer.tick(
            &sample,
            &Progress {
                elapsed: start.elapsed(),
                planned,
            },
        );
        timeline.push(sample);
    }
    shared.stop.cancel();
    if let Some(t) = sampler_task {
        let _ = t.await;
    }

    let scheduled = shared.schedule.as_ref().map(Schedule::total_requests);
    let bodies = std::mem::take(
        &mut *shared
            .sampled
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    Ok(Part {
        start_wall_ms: clock.start_wall_ms,
        duration_s: finished.duration_since(start).as_secs_f64(),
        scheduled: scheduled.unwrap_or(0),
        requests: tally.requests,
        failed: tally.failed,
        ok: tally.ok,
        dropped: scheduled.map_or(0, |s| s.saturating_sub(tally.requests)),
        status_codes: tally.status,
        errors: tally.errors,
        latency: Buckets::of(&all),
        timeline,
        sampled_ids: e2e::ids_of(&bodies),
        interrupted,
    })
}

fn snapshot(
    shared: &Shared,
    start: Instant,
    last: &mut (u64, u64, Instant),
    gauges: &Mutex<BTreeMap<String, f64>>,
    all: &mut Histogram<u64>,
) -> Sample {
    let now = Instant::now();
    let mut h = stats::histogram();
    let (mut requests, mut failed) = (0, 0);
    for m in &shared.interval {
        let mut w = m.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = h.add(&w.hist);
        w.hist.reset();
        requests += w.requests;
        failed += w.failed;
    }
    // Same bounds on both sides, so adding cannot fail.
    let _ = all.add(&h);
    let secs = now.duration_since(last.2).as_secs_f64().max(1e-9);
    let elapsed = now.duration_since(start);
    let l = Latency::of(&h);
    let sample = Sample {
        t: elapsed.as_secs_f64(),
        target_rate: shared.schedule.as_ref().map(|s| s.rate_at(elapsed)),
        rate: (requests - last.0) as f64 / secs,
        failed: failed - last.1,
        p50: l.med,
        p99: l.p99,
        total: requests,
        gauges: gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    };
    *last = (requests, failed, now);
    sample
}

/// Requests and failures so far, over every worker.
fn totals(shared: &Shared) -> (u64, u64) {
    shared.interval.iter().fold((0, 0), |(r, f), m| {
        let w = m.lock().unwrap_or_else(PoisonError::into_inner);
        (r + w.requests, f + w.failed)
    })
}

/// Now, in milliseconds since the epoch.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One load thread: a single-threaded runtime driving its share of the
/// connections, like one of wrk's threads (no work stealing, no cross-thread
/// wake-ups on the hot path). Opens its connections, reports ready, waits
/// for the start, and returns each worker's tally.
fn load_thread(
    shared: Arc<Shared>,
    indices: Vec<usize>,
    ready: tokio::sync::mpsc::Sender<Result<(), LoadError>>,
    mut go: tokio::sync::watch::Receiver<Option<Clock>>,
) -> Vec<Tally> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.blocking_send(Err(LoadError::Internal(format!(
                "cannot start a runtime: {e}"
            ))));
            return Vec::new();
        }
    };
    rt.block_on(async move {
        // Connections are made before the clock starts, so the first
        // requests do not pay for handshakes (and an unreachable target fails fast).
        let mut conns = Vec::with_capacity(indices.len());
        for i in indices {
            match Conn::open(&shared.ep).await {
                Ok(c) => conns.push((i, c)),
                Err(f) => {
                    let _ = ready
                        .send(Err(LoadError::Unreachable {
                            url: shared.ep.display.clone(),
                            message: f.key(),
                        }))
                        .await;
                    return Vec::new();
                }
            }
        }
        let _ = ready.send(Ok(())).await;
        drop(ready);
        let clock = match go.wait_for(Option::is_some).await {
            Ok(c) => *c,
            Err(_) => None,
        };
        // No clock: the run was abandoned before it started.
        let Some(clock) = clock else {
            return Vec::new();
        };
        let mut set = tokio::task::JoinSet::new();
        for (i, c) in conns {
            set.spawn(worker(Arc::clone(&shared), clock, i, c));
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(t) = joined {
                out.push(t);
            }
        }
        out
    })
}

async fn worker(shared: Arc<Shared>, clock: Clock, index: usize, conn: Conn) -> Tally {
    let mut tally = Tally::new();
    let mut conn = Some(conn);
    let mut body = String::new();
    let cfg = &shared.cfg;
    let max_end = clock.start + cfg.load.duration();
    let stride = cfg.connections as u64;
    let mut own = index as u64;
    loop {
        if shared.stop.is_cancelled() {
            break;
        }
        let now = Instant::now();
        let (seq, due) = match &shared.schedule {
            Some(s) => {
                let seq = shared.next.fetch_add(1, Ordering::Relaxed);
                match s.due(seq) {
                    Some(d) => (seq, clock.start + d),
                    None => break,
                }
            }
            None => {
                if now >= max_end {
                    break;
                }
                // Closed loop: no shared counter to contend on; worker i
                // numbers its requests i, i+N, i+2N, ...
                own += stride;
                (own - stride, now)
            }
        };
        if due > now {
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = shared.stop.cancelled() => break,
            }
            if Instant::now() >= clock.last_send {
                break;
            }
        } else if now >= clock.last_send {
            break;
        }
        let sampled = seq.is_multiple_of(shared.sample_every);
        let ts_ms = clock.start_wall_ms
            + i64::try_from(due.duration_since(clock.start).as_millis()).unwrap_or(0);
        cfg.body
            .render_to(&mut body, seq, cfg.events_per_request, ts_ms);
        let body = body.as_bytes();
        if conn.as_mut().is_some_and(|c| !c.is_open(Instant::now())) {
            conn = None;
        }
        let result = match conn.as_mut() {
            Some(c) => c.post(&shared.ep, body, cfg.timeout, sampled).await,
            None => match Conn::open(&shared.ep).await {
                Ok(mut c) => {
                    let r = c.post(&shared.ep, body, cfg.timeout, sampled).await;
                    conn = Some(c);
                    r
                }
                Err(f) => Err(f),
            },
        };
        let latency = due.elapsed();
        tally.requests += 1;
        let (failed, timed) = match result {
            Ok((status, body)) => {
                *tally.status.entry(status).or_default() += 1;
                let ok = (200..300).contains(&status);
                if ok {
                    tally.ok += 1;
                    if sampled {
                        let mut s = shared
                            .sampled
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if s.len() < shared.e2e_cap {
                            s.push(body);
                        }
                    }
                }
                (!ok, true)
            }
            Err(f) => {
                let timeout = matches!(f, Failure::Timeout);
                let refused = matches!(f, Failure::Connect(_));
                *tally.errors.entry(f.key()).or_default() += 1;
                conn = None;
                if refused {
                    // A down server refuses at once: pace retries instead of spinning a core.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (true, timeout)
            }
        };
        if failed {
            tally.failed += 1;
        }
        let mut w = shared.interval[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if timed {
            stats::record(&mut w.hist, latency);
        }
        w.requests += 1;
        w.failed += u64::from(failed);
    }
    tally
}
