//! `up` of an aws stack as one operation: builds the engine image (the
//! task definitions name it by digest, so it is built before planning),
//! plans against the live account and stops there with zero writes when
//! nothing changed; otherwise takes the stack lock, plans again under it
//! (the state may have moved while it waited) and applies. Then it waits
//! for readiness (reads only, outside the lock: a `scale` meanwhile is just
//! part of the state it sees) and verifies the stack with the canary from
//! inside the VPC. Progress goes to a [`Progress`]; the result is a typed,
//! serializable [`UpReport`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use engine::canary::CanaryReport;
use serde::Serialize;

use super::canary::AwsCanaryError;
use super::error::AwsError;
use super::wait::{Timeouts, WaitError, Waited};
use super::{ApplyOptions, Aws, EngineImage, EngineSource, Inputs, StackLock};
use crate::graph::{Graph, GraphError, LogicalId};
use crate::image::ImageError;
use crate::progress::Progress;
use crate::spec::LoadedSpec;

/// When `up` runs the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Never (`--no-verify`).
    Never,
    /// After a change (the default): an `up` that changed nothing makes no
    /// AWS write, and the canary's one-off task would be one.
    IfChanged,
    /// Also when nothing changed (`--verify`).
    Always,
}

/// What `up` takes besides the spec.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The engine image to run instead of the spec's (`--image`).
    pub image: Option<String>,
    /// Break a stale stack lock before taking it.
    pub force_unlock: bool,
    /// The engine binary to ship when the image is built (`--engine-binary`).
    pub engine_binary: Option<PathBuf>,
    /// Directories to look for the stackctl workspace in, after the spec's
    /// (the current directory).
    pub search_from: Vec<PathBuf>,
    /// The running stackctl, which contains the engine: shipped when neither
    /// a binary nor a workspace is found.
    pub running: Option<PathBuf>,
    /// Where the registry is reached, when not at the ECR repository's host.
    pub registry_endpoint: Option<String>,
    /// How long to wait for readiness; `None`: do not wait (nor verify).
    pub wait: Option<Timeouts>,
    /// When to run the canary.
    pub verify: Verify,
}

/// One applied change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The logical id.
    pub resource: String,
    /// `create`, `update`, `replace` or `delete`.
    pub action: String,
}

/// AWS API operations a command made (retries not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Calls {
    /// Read operations.
    pub reads: u64,
    /// Write operations.
    pub writes: u64,
}

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// The stack.
    pub stack: String,
    /// `aws`.
    pub provider: &'static str,
    /// The changes applied (empty when the stack was up to date).
    pub applied: Vec<Applied>,
    /// Whether the canary's run completed.
    pub verified: bool,
    /// The canary's run, when `up` verified the stack.
    pub canary: Option<CanaryReport>,
    /// The engine image the task definitions name.
    pub image: Option<String>,
    /// The event API's address from outside the VPC, when it has one.
    pub event_api: Option<String>,
    /// What this command cost in AWS API operations.
    pub aws_calls: Calls,
    /// What the waits saw become ready; `None` without waiting.
    #[serde(skip)]
    pub waited: Option<Vec<Waited>>,
}

impl UpReport {
    /// Whether anything was applied.
    pub fn changed(&self) -> bool {
        !self.applied.is_empty()
    }
}

/// Why `up` failed, with the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
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
}

/// Brings an aws stack up; see the module documentation.
pub async fn up(
    loaded: &LoadedSpec,
    opts: UpOptions,
    progress: &dyn Progress,
) -> Result<UpReport, UpError> {
    let stack = loaded.spec.stack.clone();
    let aws_err = |what: &'static str| {
        let stack = stack.clone();
        move |source: AwsError| UpError::Aws {
            what,
            stack,
            source,
        }
    };
    let graph = Graph::build(loaded).map_err(|source| UpError::Graph {
        stack: stack.clone(),
        source,
    })?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .map_err(UpError::Config)?;
    let mut inputs = Inputs::from_spec(&loaded.spec, opts.image.clone());
    // Deploy by digest: build before planning, so the plan compares the
    // digest the task definitions would get (unchanged engine, no change).
    let engine_image = if inputs.builds_image() {
        let built = build_engine_image(
            loaded,
            opts.engine_binary.as_deref(),
            &opts.search_from,
            opts.running.as_deref(),
            progress,
        )
        .await?;
        inputs = inputs.with_built_image(built.manifest_digest.to_string());
        Some(EngineImage {
            image: Arc::new(built),
            registry_endpoint: opts.registry_endpoint.clone(),
        })
    } else {
        None
    };
    if opts.force_unlock
        && let Some(old) = super::lock::force_unlock(&aws, &stack)
            .await
            .map_err(aws_err("cannot break the lock"))?
    {
        progress.info(&format!(
            "broke the lock of stack `{stack}` held by {} for `{}`",
            old.owner, old.command
        ));
    }
    let first = super::plan(&aws, &graph, &inputs)
        .await
        .map_err(aws_err("cannot read the state"))?;
    // Failures the waits report must be newer than this.
    let since = SystemTime::now();
    let image = first.engine_image().map(str::to_owned);
    let (applied, outputs) = if first.plan.has_changes() {
        // Taking the lock is itself a write: only a change takes it.
        let lock = StackLock::acquire(&aws, &stack, "up", super::lock::DEFAULT_TTL)
            .await
            .map_err(aws_err("cannot take the lock"))?;
        let result = async {
            let planned = super::plan(&aws, &graph, &inputs)
                .await
                .map_err(aws_err("cannot read the state"))?;
            let apply_opts = ApplyOptions {
                engine_image,
                ..ApplyOptions::default()
            };
            super::apply(&aws, &planned, &apply_opts, progress)
                .await
                .map_err(aws_err("`up` failed"))
        }
        .await;
        let released = lock.release().await;
        let report = result?;
        released.map_err(aws_err("cannot release the lock"))?;
        let applied = report
            .applied
            .iter()
            .map(|(id, action)| Applied {
                resource: id.to_string(),
                action: format!("{action:?}").to_lowercase(),
            })
            .collect();
        (applied, report.outputs)
    } else {
        // The task definitions name this digest; make sure the registry
        // still serves it (no AWS write, and none when it does).
        if let Some(engine) = &engine_image
            && let Some(pushed) = super::publish::ensure_pushed(&aws, &first, engine)
                .await
                .map_err(aws_err("cannot check the engine image"))?
        {
            progress.info(&format!(
                "the engine image was missing from its repository; pushed {pushed} again"
            ));
        }
        let outputs: BTreeMap<LogicalId, super::Outputs> = first
            .all_observed()
            .iter()
            .map(|(id, o)| (id.clone(), o.outputs.clone()))
            .collect();
        (Vec::new(), outputs)
    };
    // Up to date is not the same as ready: wait (reads only) before saying so.
    let targets = super::wait::targets(&graph, &outputs);
    let waited = match &opts.wait {
        Some(timeouts) if !targets.is_empty() => Some(
            super::wait::wait_all(&aws, targets, timeouts, since, progress)
                .await
                .map_err(|source| UpError::NotReady {
                    stack: stack.clone(),
                    source,
                })?,
        ),
        _ => None,
    };
    let verify = match opts.verify {
        Verify::Never => false,
        Verify::IfChanged => !applied.is_empty(),
        Verify::Always => true,
    };
    // Without the waits nothing is known to run yet: no canary either.
    let canary = if verify && waited.is_some() {
        Some(
            super::canary::run(
                &aws,
                &graph,
                &outputs,
                loaded.spec.timeouts.canary.std(),
                progress,
            )
            .await
            .map_err(|source| UpError::Canary {
                stack: stack.clone(),
                source,
            })?,
        )
    } else {
        None
    };
    let calls = aws.calls();
    Ok(UpReport {
        stack,
        provider: "aws",
        applied,
        verified: canary.is_some(),
        canary,
        image,
        event_api: super::event_api_url(&graph, &outputs),
        aws_calls: Calls {
            reads: calls.reads,
            writes: calls.writes,
        },
        waited,
    })
}

/// Builds the engine image from `binary`, with cargo in the stackctl
/// workspace holding the spec (or one of `search_from`), or from the
/// `running` stackctl, in that order.
pub async fn build_engine_image(
    loaded: &LoadedSpec,
    binary: Option<&std::path::Path>,
    search_from: &[PathBuf],
    running: Option<&std::path::Path>,
    progress: &dyn Progress,
) -> Result<crate::image::BuiltImage, UpError> {
    let mut dirs: Vec<PathBuf> = loaded
        .path
        .parent()
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(search_from.iter().cloned());
    let dirs: Vec<&std::path::Path> = dirs.iter().map(PathBuf::as_path).collect();
    let source = EngineSource::find(binary, &dirs, running).map_err(UpError::Image)?;
    let what = match &source {
        EngineSource::Binary(p) => format!("build engine image from {}", p.display()),
        EngineSource::Running(p) => format!(
            "build engine image from this stackctl ({}), which contains the engine",
            p.display()
        ),
        EngineSource::Workspace(d) => format!(
            "build engine image (cargo build --profile dist -p engine in {})",
            d.display()
        ),
    };
    progress.start("ecr.engine.build", &what);
    let built = tokio::task::spawn_blocking(move || super::publish::build(&source))
        .await
        .map_err(|e| {
            UpError::Image(ImageError::Cargo(format!(
                "the image build task failed: {e}"
            )))
        })?;
    match &built {
        Ok(image) => progress.ok(
            "ecr.engine.build",
            &format!("built {}", image.manifest_digest),
        ),
        Err(e) => progress.fail("ecr.engine.build", &e.to_string()),
    }
    built.map_err(UpError::Image)
}
