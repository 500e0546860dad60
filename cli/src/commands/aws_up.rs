//! `stackctl up` for `provider: aws` stacks: parses what the command line
//! adds to the spec, runs [`stacks::aws::up::up`] and prints its report.

use std::path::PathBuf;

use anyhow::Context as _;
use stacks::aws::up::{UpOptions, UpReport, Verify};
use stacks::spec::LoadedSpec;

use crate::output::{self, Exit, Output};
use crate::progress::Reporter;

/// What `up` of an aws stack takes from the command line.
pub struct AwsUp {
    /// The engine image to run instead of the spec's (`--image`).
    pub image: Option<String>,
    /// What lock to break before taking it (`--force-unlock`, `--yes`).
    pub force_unlock: stacks::aws::ForceUnlock,
    /// The engine binary to ship when the image is built (`--engine-binary`).
    pub engine_binary: Option<PathBuf>,
    /// Where the registry is reached, when not at the ECR repository's host
    /// (`--registry-endpoint`).
    pub registry_endpoint: Option<String>,
    /// Whether and how long to wait for readiness (`--no-wait`, `--wait-timeout`).
    pub wait: super::aws_wait::WaitArgs,
    /// `--no-verify`, `--verify`, or neither.
    pub verify: Verify,
}

/// Runs `stackctl up` for an aws stack.
pub async fn run(loaded: &LoadedSpec, opts: AwsUp, output: Output) -> anyhow::Result<Exit> {
    require_credentials(loaded, "up").await?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // Recorded before any write: if `up` fails half-way, `status` and
    // `down` without FILE still find the stack.
    stacks::stackref::record_last(&cwd, &loaded.path)?;
    let options = UpOptions {
        image: opts.image,
        force_unlock: opts.force_unlock,
        engine_binary: opts.engine_binary,
        search_from: vec![cwd],
        // Outside a workspace, ship the engine this very binary contains.
        running: std::env::current_exe().ok(),
        registry_endpoint: opts.registry_endpoint,
        wait: (!opts.wait.no_wait).then(|| opts.wait.timeouts(&loaded.spec)),
        verify: opts.verify,
    };
    let reporter = Reporter::new(output);
    let result = stacks::aws::up::up(loaded, options, &reporter).await;
    reporter.finish();
    let report = result?;
    print(loaded, &report, opts.verify, output)?;
    Ok(Exit::Ok)
}

/// What `--force-unlock` (with `--yes` or not) may break.
pub fn force_unlock(force: bool, yes: bool) -> stacks::aws::ForceUnlock {
    match (force, yes) {
        (false, _) => stacks::aws::ForceUnlock::No,
        (true, false) => stacks::aws::ForceUnlock::Stale,
        (true, true) => stacks::aws::ForceUnlock::Any,
    }
}

/// Refuses to go on without AWS credentials (configured, or an instance
/// profile), with what to set instead of an SDK error on the first call.
pub async fn require_credentials(loaded: &LoadedSpec, verb: &str) -> anyhow::Result<()> {
    if stacks::aws::context::credentials_available().await {
        return Ok(());
    }
    anyhow::bail!(
        "`stackctl {verb}` of `provider: aws` stack `{}` needs AWS credentials: none are configured \
         and no instance profile answered (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
         or write ~/.aws/credentials); `stackctl plan {} --offline` works without them",
        loaded.spec.stack,
        loaded.path.display()
    )
}

fn print(
    loaded: &LoadedSpec,
    report: &UpReport,
    verify: Verify,
    output: Output,
) -> anyhow::Result<()> {
    if output == Output::Json {
        let mut doc = serde_json::to_value(report)?;
        doc["type"] = "result".into();
        doc["warnings"] = serde_json::to_value(&loaded.warnings.diagnostics)?;
        output::print_line(&doc.to_string())?;
        return Ok(());
    }
    let mut lines = vec![String::new()];
    lines.push(if report.changed() {
        format!(
            "stack `{}` is applied: {} resources changed",
            report.stack,
            report.applied.len()
        )
    } else {
        format!("stack `{}` is up to date: nothing to change", report.stack)
    });
    if let Some(image) = &report.image {
        lines.push(format!("  engine image {image} ({})", report.architecture));
    }
    if let Some(url) = &report.event_api {
        lines.push(format!("  event API    {url}"));
    }
    if let Some(dns) = &report.dns_target {
        lines.push(format!("  DNS          point the domain at {dns} (CNAME)"));
    }
    if let Some(r) = &report.refresh {
        let done = if report.waited.is_some() {
            "replaced"
        } else {
            "is replacing"
        };
        lines.push(format!(
            "  executors    instance refresh {} {done} the hosts of older launch template versions",
            r.id
        ));
    }
    match &report.waited {
        Some(waited) => {
            for w in waited {
                lines.push(format!("  ready: {}: {}", w.what, w.state));
            }
            lines.push(match (&report.canary, verify) {
                (Some(c), _) => format!(
                    "  verified end to end: canary run {} completed in {} ms (from inside the VPC{})",
                    c.run_id,
                    c.millis,
                    report.executor.as_ref().map_or(String::new(), |e| format!(
                        "; its step ran on executor {}, launch template version {}",
                        e.instance_id,
                        e.launch_template_version.as_deref().unwrap_or("?")
                    ))
                ),
                (None, Verify::Never) => "  not verified end to end (--no-verify)".into(),
                (None, _) => {
                    "  not verified end to end (nothing changed; `up --verify` checks anyway)"
                        .into()
                }
            });
        }
        None => lines.push(
            "  not waited (--no-wait): services, executors and Redis may still be starting; \
             `stackctl status` shows their state"
                .into(),
        ),
    }
    for line in lines {
        output::print_line(&line)?;
    }
    Ok(())
}
