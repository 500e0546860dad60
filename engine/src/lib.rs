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
pub mod metrics;
pub mod probe;
pub mod runner;

/// The signal every role watches to stop: cancelled on SIGTERM/SIGINT.
pub use tokio_util::sync::CancellationToken as Shutdown;
