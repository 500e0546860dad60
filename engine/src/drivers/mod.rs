//! Step drivers: how an executor runs a step's work and gets its output.
//! A driver is an object-safe async trait; its errors say whether a retry
//! can help ([`DriverError::Retryable`]) or not ([`DriverError::Permanent`]),
//! and the executor applies the step's retry policy to the former.

#[cfg(feature = "docker")]
pub mod docker;
pub mod http;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::functions::{Action, Step};

#[cfg(feature = "docker")]
pub use docker::DockerDriver;
pub use http::HttpDriver;

/// Why a step attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// Transient (5xx, timeout, connection refused): retry with backoff.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (4xx, malformed output): the step fails.
    #[error("{0}")]
    Permanent(String),
}

impl DriverError {
    /// Whether the executor may retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// What a step sees: the run's context, POSTed by the http driver and given
/// on stdin by the docker driver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepContext {
    /// The triggering event (Inngest format plus `internal_id`).
    pub event: Value,
    /// Every event of a batched run (a function with `batch_events`), in
    /// the order they joined its batch, `event` first; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Value>>,
    /// Outputs of the run's completed steps, by step id (skipped steps are
    /// absent, so `has(steps.x)` tells whether `x` ran).
    pub steps: Map<String, Value>,
    /// The run.
    pub run_id: String,
    /// The function.
    pub function_id: String,
    /// This step.
    pub step_id: String,
    /// 1-based attempt number.
    pub attempt: u32,
}

/// Awaits one driver call inside its client `span` and marks the span as
/// failed (OpenTelemetry's status) when the call fails.
pub(crate) async fn in_client_span(
    span: tracing::Span,
    call: impl std::future::Future<Output = Result<Value, DriverError>>,
) -> Result<Value, DriverError> {
    let result = tracing::Instrument::instrument(call, span.clone()).await;
    if let Err(e) = &result {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_description", e.to_string());
    }
    result
}

/// Runs one kind of step.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Runs one attempt of `step` and returns its output.
    async fn run(&self, step: &Step, ctx: &StepContext) -> Result<Value, DriverError>;
}

/// The drivers an executor has, by step action.
#[derive(Clone)]
pub struct Drivers {
    /// The `http` driver.
    pub http: Arc<dyn Driver>,
    /// The `docker` driver, when the executor has a Docker engine.
    pub docker: Option<Arc<dyn Driver>>,
}

impl Drivers {
    /// Only the http driver, with this default per-attempt timeout.
    pub fn http_only(default_timeout: std::time::Duration) -> Result<Self, DriverError> {
        Ok(Self {
            http: Arc::new(HttpDriver::new(default_timeout)?),
            docker: None,
        })
    }

    /// The drivers an executor configuration asks for.
    pub fn from_config(config: &crate::config::DriversConfig) -> Result<Self, DriverError> {
        Ok(Self {
            http: Arc::new(HttpDriver::with_limit(
                config.http.default_timeout.std(),
                config.http.max_response_bytes,
            )?),
            docker: config.docker.as_ref().map(docker_driver).transpose()?,
        })
    }

    /// The driver for a step's action; `None` for actions the executor runs
    /// itself (sleep, wait) — an error when the driver is not configured.
    pub fn for_action(&self, action: Action<'_>) -> Result<Option<&dyn Driver>, DriverError> {
        match action {
            Action::Http(_) => Ok(Some(self.http.as_ref())),
            Action::Docker(_) => match &self.docker {
                Some(d) => Ok(Some(d.as_ref())),
                None => Err(DriverError::Permanent(
                    "this executor has no docker driver (set executor.drivers.docker)".to_string(),
                )),
            },
            Action::Sleep(_) | Action::WaitForEvent(_) => Ok(None),
        }
    }
}

#[cfg(feature = "docker")]
fn docker_driver(
    config: &crate::config::DockerDriverConfig,
) -> Result<Arc<dyn Driver>, DriverError> {
    Ok(Arc::new(
        DockerDriver::connect(&config.socket)?.with_network(config.network.clone()),
    ))
}

#[cfg(not(feature = "docker"))]
fn docker_driver(
    config: &crate::config::DockerDriverConfig,
) -> Result<Arc<dyn Driver>, DriverError> {
    Err(DriverError::Permanent(format!(
        "executor.drivers.docker is set ({}), but this engine was built without the `docker` feature",
        config.socket.display()
    )))
}
