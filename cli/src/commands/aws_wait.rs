//! The waiting step of `up` and `scale` for aws stacks: the `--no-wait` and
//! `--wait-timeout` flags, and running `stacks::aws::wait` with progress.
//! A wait that times out or fails exits 1 (`Exit::Error`) with what it
//! waited for and the last state seen.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Args;
use stacks::aws::Aws;
use stacks::aws::wait::{self, Target, Timeouts, Waited};
use stacks::spec::Spec;

use crate::output::Output;
use crate::progress::Reporter;

/// How long to wait for the stack to be ready (aws stacks).
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// (aws stacks) Return once the changes are made, without waiting for services, executors and Redis.
    #[arg(long)]
    pub no_wait: bool,
    /// (aws stacks) Bound on every wait, e.g. `90s` or `15m`; default: the spec's `timeouts:`.
    #[arg(long, value_name = "DURATION", conflicts_with = "no_wait", value_parser = stacks::bench::parse_duration)]
    pub wait_timeout: Option<Duration>,
}

impl WaitArgs {
    /// The timeouts: `--wait-timeout` for every wait, else the spec's.
    pub fn timeouts(&self, spec: &Spec) -> Timeouts {
        match self.wait_timeout {
            Some(d) => Timeouts::all(d),
            None => Timeouts::from_spec(&spec.timeouts),
        }
    }
}

/// Waits for `targets` unless `--no-wait`; `None` when skipped.
pub async fn run(
    aws: &Aws,
    targets: Vec<Target>,
    args: &WaitArgs,
    spec: &Spec,
    since: SystemTime,
    output: Output,
) -> anyhow::Result<Option<Vec<Waited>>> {
    if args.no_wait || targets.is_empty() {
        return Ok(None);
    }
    let reporter = Reporter::new(output);
    let result = wait::wait_all(aws, targets, &args.timeouts(spec), since, &reporter).await;
    reporter.finish();
    let waited = result.with_context(|| {
        format!(
            "stack `{}` is not ready (the changes were made; `stackctl status` shows the live state)",
            spec.stack
        )
    })?;
    Ok(Some(waited))
}
