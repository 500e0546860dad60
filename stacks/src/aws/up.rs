//! `up` of an aws stack as one operation: builds the engine image (the
//! task definitions name it by digest, so it is built before planning),
//! refuses it when the executors' instance type cannot run its
//! architecture, plans against the live account and stops there with zero writes when
//! nothing changed; otherwise takes the stack lock, plans again under it
//! (the state may have moved while it waited) and applies. Executor hosts
//! launched from an older launch template version are replaced by an
//! instance refresh ([`super::rollout`]). Then it waits
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

use super::ops::{Calls, OpError};
use super::rollout::{HostInstance, Refresh};
use super::wait::{Timeouts, Waited};
use super::{ApplyOptions, EngineImage, EngineSource, Inputs};
use crate::arch::Architecture;
use crate::graph::LogicalId;
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
    /// Break the stack lock before taking it.
    pub force_unlock: super::lock::ForceUnlock,
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
    /// The executors' instance that ran the canary's step.
    pub executor: Option<HostInstance>,
    /// The instance refresh replacing executor hosts of older launch
    /// template versions, when one was started or found under way.
    pub refresh: Option<Refresh>,
    /// The engine image the task definitions name.
    pub image: Option<String>,
    /// Its CPU architecture, which the task definitions and the executors'
    /// AMI and instance type follow.
    pub architecture: Architecture,
    /// The event API's address from outside the VPC, when it has one.
    pub event_api: Option<String>,
    /// For an HTTPS `public` event API: the load balancer DNS name its
    /// domain must point at (a CNAME record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_target: Option<String>,
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

/// Brings an aws stack up; see the module documentation.
pub async fn up(
    loaded: &LoadedSpec,
    opts: UpOptions,
    progress: &dyn Progress,
) -> Result<UpReport, OpError> {
    // The lock is broken (a write) only once the image is known to fit.
    let opened = super::ops::open(loaded, super::lock::ForceUnlock::No, progress).await?;
    let (stack, graph, aws) = (&opened.stack, &opened.graph, &opened.aws);
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
        inputs = inputs
            .with_built_image(built.manifest_digest.to_string(), built.architecture)
            .map_err(OpError::architecture(stack))?;
        Some(EngineImage {
            image: Arc::new(built),
            registry_endpoint: opts.registry_endpoint.clone(),
        })
    } else {
        None
    };
    graph
        .check_architecture(inputs.architecture.unwrap_or_default())
        .map_err(OpError::architecture(stack))?;
    super::ops::break_lock(&opened, opts.force_unlock, progress).await?;
    let first = super::plan(aws, graph, &inputs)
        .await
        .map_err(OpError::aws("cannot read the state", stack))?;
    // Failures the waits report must be newer than this.
    let since = SystemTime::now();
    let image = first.engine_image().map(str::to_owned);
    let architecture = first.architecture();
    let (applied, outputs) = if first.plan.has_changes() {
        // Taking the lock is itself a write: only a change takes it.
        let report = super::ops::locked(&opened, "up", async {
            let planned = super::plan(aws, graph, &inputs)
                .await
                .map_err(OpError::aws("cannot read the state", stack))?;
            let apply_opts = ApplyOptions {
                engine_image,
                ..ApplyOptions::default()
            };
            super::apply(aws, &planned, &apply_opts, progress)
                .await
                .map_err(OpError::aws("`up` failed", stack))
        })
        .await?;
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
            && let Some(pushed) = super::publish::ensure_pushed(aws, &first, engine)
                .await
                .map_err(OpError::aws("cannot check the engine image", stack))?
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
    // A host boots once from its launch template: hosts of an older version
    // are replaced (a write only when there are some). AWS runs one refresh
    // per group at a time, so a concurrent `up` finds this one and waits.
    let refresh = match graph.get(&LogicalId::new("autoscaling.group.executors")) {
        Some(group) => super::rollout::roll(aws, &group.name, progress)
            .await
            .map_err(OpError::aws("cannot replace the executor hosts", stack))?,
        None => None,
    };
    // Up to date is not the same as ready: wait (reads only) before saying so.
    let targets = super::wait::targets(graph, &outputs);
    let waited = match &opts.wait {
        Some(timeouts) if !targets.is_empty() => Some(
            super::wait::wait_all(aws, targets, timeouts, since, progress)
                .await
                .map_err(|source| OpError::NotReady {
                    stack: stack.clone(),
                    source,
                })?,
        ),
        _ => None,
    };
    let verify = match opts.verify {
        Verify::Never => false,
        Verify::IfChanged => !applied.is_empty() || refresh.is_some(),
        Verify::Always => true,
    };
    // Without the waits nothing is known to run yet: no canary either.
    let verified = if verify && waited.is_some() {
        Some(
            super::canary::run(
                aws,
                graph,
                &outputs,
                loaded.spec.timeouts.canary.std(),
                progress,
            )
            .await
            .map_err(|source| OpError::Canary {
                stack: stack.clone(),
                source,
            })?,
        )
    } else {
        None
    };
    Ok(UpReport {
        stack: stack.clone(),
        provider: "aws",
        applied,
        verified: verified.is_some(),
        executor: verified.as_ref().and_then(|v| v.executor.clone()),
        canary: verified.map(|v| v.canary),
        refresh,
        image,
        architecture,
        event_api: super::event_api_url(graph, &outputs),
        dns_target: super::event_api_dns_target(graph, &outputs),
        aws_calls: Calls::of(aws),
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
) -> Result<crate::image::BuiltImage, OpError> {
    let mut dirs: Vec<PathBuf> = loaded
        .path
        .parent()
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(search_from.iter().cloned());
    let dirs: Vec<&std::path::Path> = dirs.iter().map(PathBuf::as_path).collect();
    let source = EngineSource::find(binary, &dirs, running).map_err(OpError::Image)?;
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
            OpError::Image(ImageError::Cargo(format!(
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
    built.map_err(OpError::Image)
}
