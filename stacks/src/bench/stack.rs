//! `bench` as one operation for both providers: finds the target (a bare
//! event API, a local stack from its spec, or an AWS stack through AWS),
//! decides where the load comes from (here, or load agents inside the
//! stack's VPC), fills in the address and the end-to-end settings, runs the
//! load generator with the stack's gauges and returns its [`Report`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    BenchConfig, BenchError, E2eConfig, MetricsSampler, Observer, Report, Sampler, Target,
};
use crate::spec::{LoadedSpec, Provider};

/// What is benchmarked.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// An event API alone (`--url` and `--key`): no stack behind it.
    Url {
        /// Its base URL.
        url: String,
        /// The event key.
        key: String,
        /// The runs-API token, for end-to-end latency.
        token: Option<String>,
    },
    /// A stack from its spec; each override replaces what the stack says.
    Stack {
        /// The spec.
        loaded: &'a LoadedSpec,
        /// Another address of the event API (e.g. a forwarded port): only
        /// the address changes, the runs API and gauges stay the stack's.
        url: Option<String>,
        /// Another event key.
        key: Option<String>,
        /// Another runs-API token.
        token: Option<String>,
        /// (aws stacks) Load agents inside the VPC; `None`: from here when
        /// the event API is reachable, else one agent.
        agents: Option<usize>,
        /// (aws stacks) How often the ECS, Auto Scaling and SQS gauges are read.
        sample_every: Duration,
    },
}

/// End-to-end latency of sampled events through the runs API (`--e2e`).
#[derive(Debug, Clone, Copy)]
pub struct E2e {
    /// Events sampled.
    pub samples: usize,
    /// How long to wait after the load for sampled runs to end.
    pub wait: Duration,
}

/// Load agents inside an AWS stack's VPC.
#[cfg(feature = "aws")]
struct Agents {
    aws: crate::aws::Aws,
    names: super::aws::AwsNames,
    count: usize,
}

/// Where the load comes from.
enum Origin {
    Here,
    #[cfg(feature = "aws")]
    Agents(Box<Agents>),
}

/// Runs `cfg` (its `url` and `e2e` are filled in from the target) against
/// `source`; progress and phases go to `observer`, `stop` ends the load early.
pub async fn run(
    source: Source<'_>,
    mut cfg: BenchConfig,
    e2e: Option<E2e>,
    observer: &dyn Observer,
    stop: CancellationToken,
) -> Result<Report, BenchError> {
    let (target, sampler, from) = match source {
        Source::Url { url, key, token } => {
            let target = Target::from_url(&url, &key, token);
            let sampler = metrics_sampler(&target);
            (target, sampler, Origin::Here)
        }
        Source::Stack {
            loaded,
            url,
            key,
            token,
            agents,
            sample_every,
        } => {
            let (mut target, sampler, from) = match loaded.spec.provider {
                Provider::Local => {
                    if agents.is_some() {
                        return Err(BenchError::Agents(format!(
                            "--agents runs load agents inside an AWS stack's VPC; `{}` is a \
                             local stack",
                            loaded.spec.stack
                        )));
                    }
                    let target = Target::from_spec(loaded)?;
                    let sampler = metrics_sampler(&target);
                    (target, sampler, Origin::Here)
                }
                Provider::Aws => {
                    aws_target(loaded, url.as_deref(), agents, sample_every, observer).await?
                }
            };
            if let Some(url) = url {
                target.event_api = url.trim_end_matches('/').to_string();
            }
            if let Some(key) = key {
                target.event_key = key;
            }
            if token.is_some() {
                target.api_token = token;
            }
            (target, sampler, from)
        }
    };
    cfg.url = target.ingest_url();
    if let Some(e2e) = e2e {
        let runs_api = target.runs_api.clone().ok_or_else(|| {
            BenchError::E2e("it needs the runs API, which this target does not name".into())
        })?;
        let token = target.api_token.clone().ok_or_else(|| {
            BenchError::E2e(
                "it needs the runs API token: pass --token (or STACKCTL_API_TOKEN), or run \
                 `stackctl up` for a local stack"
                    .into(),
            )
        })?;
        cfg.e2e = Some(E2eConfig {
            runs_api,
            token,
            samples: e2e.samples.max(1),
            wait: e2e.wait,
        });
    }
    match from {
        Origin::Here => super::run(cfg, observer, sampler, stop)
            .await
            .map_err(BenchError::from),
        #[cfg(feature = "aws")]
        Origin::Agents(a) => {
            super::agents::run(&a.aws, &a.names, &cfg, a.count, observer, sampler, stop).await
        }
    }
}

fn metrics_sampler(t: &Target) -> Option<Arc<dyn Sampler>> {
    t.metrics
        .as_ref()
        .map(|m| Arc::new(MetricsSampler::new(m.clone())) as Arc<dyn Sampler>)
}

/// An aws stack's target (found through AWS), its ECS/ASG/SQS sampler, and
/// where the load comes from.
#[cfg(feature = "aws")]
async fn aws_target(
    loaded: &LoadedSpec,
    url: Option<&str>,
    agents: Option<usize>,
    sample_every: Duration,
    observer: &dyn Observer,
) -> Result<(Target, Option<Arc<dyn Sampler>>, Origin), BenchError> {
    let aws = crate::aws::Aws::load(loaded.spec.region.as_deref())
        .await
        .map_err(|e| BenchError::Stack(format!("cannot load the AWS configuration: {e}")))?;
    let (target, route) =
        super::aws::route(&aws, loaded, url, agents, Duration::from_secs(5)).await?;
    let names = super::aws::AwsNames::of(loaded)?;
    let sampler = super::aws::AwsSampler::new(aws.clone(), names.clone(), sample_every);
    let from = match route {
        super::aws::Route::Direct => Origin::Here,
        super::aws::Route::Agents { count, reason } => {
            if let Some(reason) = reason {
                observer.phase(&format!(
                    "{reason}; the load comes from {count} agent inside the VPC instead \
                     (--agents N for more, --url for a forwarded port)"
                ));
            }
            Origin::Agents(Box::new(Agents { aws, names, count }))
        }
    };
    Ok((target, Some(Arc::new(sampler) as Arc<dyn Sampler>), from))
}

#[cfg(not(feature = "aws"))]
async fn aws_target(
    _: &LoadedSpec,
    _: Option<&str>,
    _: Option<usize>,
    _: Duration,
    _: &dyn Observer,
) -> Result<(Target, Option<Arc<dyn Sampler>>, Origin), BenchError> {
    Err(BenchError::AwsDiscovery)
}
