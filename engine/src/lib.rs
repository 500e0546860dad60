//! The stackctl engine: an event-driven durable-function engine with an
//! event API, a runner and executors, on an embedded durable store locally
//! and on SQS + Redis in AWS.

pub mod backend;
pub mod canary;
pub mod config;
pub mod drivers;
pub mod entry;
pub mod event_api;
pub mod executor;
pub mod functions;
pub mod loadgen;
pub mod metrics;
pub mod probe;
pub mod runner;
pub mod trace;

/// The signal every role watches to stop: cancelled on SIGTERM/SIGINT.
pub use tokio_util::sync::CancellationToken as Shutdown;

/// An error with its sources (`top: cause: cause`), for errors whose own
/// message hides the cause one level down (HTTP and SDK clients).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
