//! The stackctl engine: an event-driven durable-function engine with an
//! event API, a runner and executors, on an embedded durable store locally
//! and on SQS + Redis in AWS.

pub mod backend;
pub mod functions;
