//! The operations of the AWS provider that the CLI calls, one per command:
//! [`up`](super::up::up), [`down`] and [`scale`] (with `status`, `logs` and
//! the bench target reading through [`open`]). Each takes the loaded spec
//! and a [`Progress`], and returns a typed, serializable report or an
//! [`OpError`] naming the step that failed. What they share is here: the
//! graph, the AWS context, breaking a stale lock, and the stack lock around
//! every change.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::canary::AwsCanaryError;
use super::destroy::{DownOptions, DownReport};
use super::error::AwsError;
use super::scale::{ScaleError, ScaleReport};
use super::wait::{Timeouts, WaitError};
use super::{Aws, StackLock};
use crate::graph::{Graph, GraphError};
use crate::image::ImageError;
use crate::local::Service;
use crate::progress::Progress;
use crate::spec::LoadedSpec;

/// Why an operation failed, with the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The spec's resources could not be built.
    #[error("cannot build the resources of stack `{stack}`")]
    Graph {
        /// The stack.
        stack: String,
        /// Why.
        source: GraphError,
    },
    /// The AWS configuration (credentials, region) could not be loaded.
    #[error("cannot load the AWS configuration")]
    Config(#[source] AwsError),
    /// The engine image could not be built.
    #[error("cannot build the engine image")]
    Image(#[source] ImageError),
    /// An AWS step failed: `what` says which.
    #[error("{what} of stack `{stack}`")]
    Aws {
        /// e.g. `cannot take the lock`.
        what: &'static str,
        /// The stack.
        stack: String,
        /// The AWS error.
        source: AwsError,
    },
    /// The stack did not become ready.
    #[error(
        "stack `{stack}` is not ready (the changes were made; `stackctl status` shows the live state)"
    )]
    NotReady {
        /// The stack.
        stack: String,
        /// What the waits saw.
        source: WaitError,
    },
    /// The canary did not complete.
    #[error(
        "`up` of stack `{stack}` failed its end-to-end check (the stack is left as it is: \
         `stackctl status`, `stackctl logs SERVICE`; `--no-verify` skips the check)"
    )]
    Canary {
        /// The stack.
        stack: String,
        /// The failed stage, or why the check could not run.
        source: AwsCanaryError,
    },
    /// A service could not be scaled.
    #[error("cannot scale {service} of stack `{stack}` to {count}")]
    Scale {
        /// The service.
        service: &'static str,
        /// The count asked for.
        count: u32,
        /// The stack.
        stack: String,
        /// Why.
        source: ScaleError,
    },
}

impl OpError {
    /// An AWS step's error, for `map_err`.
    pub(crate) fn aws(what: &'static str, stack: &str) -> impl FnOnce(AwsError) -> Self {
        let stack = stack.to_string();
        move |source| Self::Aws {
            what,
            stack,
            source,
        }
    }
}

/// AWS API operations a command made (retries not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Calls {
    /// Read operations.
    pub reads: u64,
    /// Write operations.
    pub writes: u64,
}

impl Calls {
    /// What `aws` has made so far.
    pub fn of(aws: &Aws) -> Self {
        let c = aws.calls();
        Self {
            reads: c.reads,
            writes: c.writes,
        }
    }
}

/// A stack's graph and the AWS context to act on it.
#[derive(Debug)]
pub struct Opened {
    /// The stack name.
    pub stack: String,
    /// Its desired resources.
    pub graph: Graph,
    /// The AWS context (the spec's region wins).
    pub aws: Aws,
}

/// Builds the graph and loads the AWS context; with `force_unlock`, breaks
/// a stale lock first (reported as progress).
pub async fn open(
    loaded: &LoadedSpec,
    force_unlock: bool,
    progress: &dyn Progress,
) -> Result<Opened, OpError> {
    let stack = loaded.spec.stack.clone();
    let graph = Graph::build(loaded).map_err(|source| OpError::Graph {
        stack: stack.clone(),
        source,
    })?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .map_err(OpError::Config)?;
    if force_unlock
        && let Some(old) = super::lock::force_unlock(&aws, &stack)
            .await
            .map_err(OpError::aws("cannot break the lock", &stack))?
    {
        progress.info(&format!(
            "broke the lock of stack `{stack}` held by {} for `{}`",
            old.owner, old.command
        ));
    }
    Ok(Opened { stack, graph, aws })
}

/// Runs `work` under the stack lock (taken for `command`), releasing it
/// whatever `work` returns.
pub(crate) async fn locked<T>(
    opened: &Opened,
    command: &str,
    work: impl std::future::Future<Output = Result<T, OpError>>,
) -> Result<T, OpError> {
    let lock = StackLock::acquire(
        &opened.aws,
        &opened.stack,
        command,
        super::lock::DEFAULT_TTL,
    )
    .await
    .map_err(OpError::aws("cannot take the lock", &opened.stack))?;
    let result = work.await;
    let released = lock.release().await;
    let value = result?;
    released.map_err(OpError::aws("cannot release the lock", &opened.stack))?;
    Ok(value)
}

/// What `down` takes besides the spec.
#[derive(Debug, Clone, Default)]
pub struct DownStackOptions {
    /// Break a stale stack lock before taking it.
    pub force_unlock: bool,
    /// How long one deletion may take; default: the spec's
    /// `timeouts.redis` (ElastiCache is the slowest to delete).
    pub wait_timeout: Option<Duration>,
}

/// What `down` did.
#[derive(Debug, Clone, Serialize)]
pub struct StackDown {
    /// Per resource, what happened, and the sweep.
    #[serde(flatten)]
    pub report: DownReport,
    /// `aws`.
    pub provider: &'static str,
    /// Whether nothing of the stack remains.
    pub clean: bool,
    /// How long it took.
    pub elapsed_ms: u64,
    /// What it cost in AWS API operations.
    pub calls: Calls,
}

/// Deletes every resource of the stack under its lock (reverse dependency
/// order, dependency retries, waits), its SSM parameters, and sweeps every
/// service for leftovers ([`super::destroy::down`]).
pub async fn down(
    loaded: &LoadedSpec,
    opts: DownStackOptions,
    progress: &dyn Progress,
) -> Result<StackDown, OpError> {
    let opened = open(loaded, opts.force_unlock, progress).await?;
    let options = DownOptions {
        wait_timeout: opts.wait_timeout.unwrap_or(loaded.spec.timeouts.redis.0),
        ..DownOptions::default()
    };
    let started = Instant::now();
    let report = locked(&opened, "down", async {
        super::destroy::down(&opened.aws, &opened.graph, &options, progress)
            .await
            .map_err(OpError::aws("`down` failed", &opened.stack))
    })
    .await?;
    Ok(StackDown {
        provider: "aws",
        clean: report.clean(),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        calls: Calls::of(&opened.aws),
        report,
    })
}

/// What `scale` takes besides the spec.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// The service.
    pub service: Service,
    /// The new count.
    pub count: u32,
    /// Refuse a count outside the auto-scaling bounds.
    pub keep_bounds: bool,
    /// How long to wait for the count to hold; `None`: do not wait.
    pub wait: Option<Timeouts>,
}

/// What `scale` did.
#[derive(Debug, Clone, Serialize)]
pub struct StackScale {
    /// The change.
    #[serde(flatten)]
    pub report: ScaleReport,
    /// `aws`.
    pub provider: &'static str,
    /// Whether it waited until the new count held.
    pub waited: bool,
}

/// Sets a service's count under the stack lock, moving an auto-scaling
/// bound when the count is outside it (unless `keep_bounds`), then waits
/// (still under the lock: the count must not move under the wait).
pub async fn scale(
    loaded: &LoadedSpec,
    opts: ScaleOptions,
    progress: &dyn Progress,
) -> Result<StackScale, OpError> {
    let opened = open(loaded, false, progress).await?;
    let since = SystemTime::now();
    locked(&opened, "scale", async {
        let report = super::scale::scale(
            &opened.aws,
            &opened.graph,
            opts.service,
            opts.count,
            opts.keep_bounds,
        )
        .await
        .map_err(|source| OpError::Scale {
            service: opts.service.as_str(),
            count: opts.count,
            stack: opened.stack.clone(),
            source,
        })?;
        if let Some(timeouts) = &opts.wait {
            super::wait::wait_all(
                &opened.aws,
                vec![report.target.clone()],
                timeouts,
                since,
                progress,
            )
            .await
            .map_err(|source| OpError::NotReady {
                stack: opened.stack.clone(),
                source,
            })?;
        }
        Ok(StackScale {
            report,
            provider: "aws",
            waited: opts.wait.is_some(),
        })
    })
    .await
}
