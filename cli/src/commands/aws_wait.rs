//! The `--no-wait` and `--wait-timeout` flags of `up` and `scale` for aws
//! stacks, turned into the timeouts `stacks::aws::wait` takes. A wait that
//! times out or fails exits 1 (`Exit::Error`) with what it waited for and
//! the last state seen.

use std::time::Duration;

use clap::Args;
use stacks::aws::wait::Timeouts;
use stacks::spec::Spec;

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
