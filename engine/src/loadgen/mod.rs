//! The load generator behind `stackctl bench` and the engine's benchmarks:
//! HTTP/1.1 keep-alive load on an event API over N connections, either at
//! a fixed (optionally ramping) arrival rate with latency measured from
//! each request's due time, or at maximum throughput; HDR histograms; a
//! k6-style summary; thresholds for CI; event-to-completed-run latency
//! through the runs API; and a sampler hook that puts the stack's own
//! gauges (queue depths, service counts) beside the latency timeline.
//!
//! It lives in the engine so the engine image can generate load from inside
//! a stack's network (`stackctl-engine bench-agent`, see [`agent`]): the
//! figures of several generators merge into one [`Report`] exactly, since
//! each sends its whole latency histogram.
//!
//! It prints nothing: progress goes to an [`Observer`], the result is a
//! [`Report`] the caller renders.

pub mod agent;
mod client;
mod e2e;
mod payload;
mod run;
mod schedule;
mod stats;
mod threshold;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use client::{mask_key, tls_config};
pub use payload::{Body, Template};
pub use run::{BenchConfig, E2eConfig, Load, Progress, conclude, measure, run, wall_ms};
pub use schedule::{Schedule, Stage, fmt_duration, parse_duration};
pub use stats::{
    Buckets, Counted, E2eReport, Failed, Latency, ModeReport, Part, Report, Sample, ms,
};
pub use threshold::{Threshold, ThresholdResult};

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An option has a bad value.
    #[error("{option}: {message}")]
    Option {
        /// The option.
        option: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A file could not be read.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The target did not accept connections before the run.
    #[error("cannot connect to {url} ({message}): is the stack up? (`stackctl status`)")]
    Unreachable {
        /// The target, key masked.
        url: String,
        /// The connect error.
        message: String,
    },
    /// The runs API refused or failed a lookup.
    #[error("runs API {url}: {message}")]
    RunsApi {
        /// The URL called.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A bug: a worker task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Receives progress while a run goes on.
pub trait Observer: Send + Sync {
    /// One interval ended.
    fn tick(&self, sample: &Sample, progress: &Progress);
    /// A phase began (e.g. waiting for runs).
    fn phase(&self, message: &str);
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn tick(&self, _: &Sample, _: &Progress) {}
    fn phase(&self, _: &str) {}
}

/// Reads gauges of the stack under load (service counts, queue depths) once
/// per interval; they appear in the timeline beside the latency. Reads that
/// fail return an empty map; a slow read is abandoned after one interval.
pub trait Sampler: Send + Sync {
    /// The current value of each gauge, by name.
    fn sample(&self) -> Pin<Box<dyn Future<Output = BTreeMap<String, f64>> + Send + '_>>;
}

/// Reads `sampler` every `every` until `stop`, handing each non-empty read
/// to `on_read`; a read slower than `every` is abandoned.
pub fn sample_every(
    sampler: Arc<dyn Sampler>,
    every: Duration,
    stop: CancellationToken,
    mut on_read: impl FnMut(BTreeMap<String, f64>) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let read = tokio::time::timeout(every, sampler.sample())
                .await
                .unwrap_or_default();
            if !read.is_empty() {
                on_read(read);
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
    })
}
