//! `stackctl bench`'s targets: finding a stack's event API, key, token and
//! gauges from its spec (local stacks, [`Target`]) or through AWS
//! ([`aws`], feature `aws`, which also runs load agents inside the VPC),
//! and the one operation that benchmarks either ([`stack::run`]).
//! The load generator itself is [`engine::loadgen`], re-exported here.
//!
//! It prints nothing: progress goes to an [`Observer`], the result is a
//! [`Report`] the caller renders.

#[cfg(feature = "aws")]
pub mod agents;
#[cfg(feature = "aws")]
pub mod aws;
pub mod stack;
mod target;

pub use engine::loadgen::{BenchConfig, agent};
pub use engine::loadgen::{
    Body, Counted, E2eConfig, E2eReport, Failed, Latency, Load, LoadError, ModeReport, Observer,
    Progress, Quiet, Report, Sample, Sampler, Schedule, Stage, Template, Threshold,
    ThresholdResult, fmt_duration, mask_key, ms, parse_duration, run,
};
pub use target::{MetricsSampler, Target, parse_prometheus, prometheus_sum};

/// Why a bench could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The load generator failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The spec has no event key.
    #[error("the spec has no event key; add one under event_keys, or pass --url and --key")]
    NoEventKey,
    /// The stack's endpoints could not be read.
    #[error("cannot find the stack's endpoints: {0}")]
    Stack(String),
    /// A `provider: aws` stack's event API is found through AWS
    /// (`bench::aws::discover`, feature `aws`), not from the spec alone.
    #[error(
        "the event API of a `provider: aws` stack is found through AWS (`bench::aws::discover`); \
         pass --url URL --key KEY to a build without the AWS provider"
    )]
    AwsDiscovery,
    /// `--e2e` cannot be measured against this target.
    #[error("--e2e: {0}")]
    E2e(String),
    /// Load agents inside the stack's network failed.
    #[error("load agents: {0}")]
    Agents(String),
}
