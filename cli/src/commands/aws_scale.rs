//! `stackctl scale SERVICE N` for `provider: aws` stacks: under the stack
//! lock, sets the ECS desired count (`event-api`, `runner`) or the Auto
//! Scaling Group's desired capacity (`executors`), moving an auto-scaling
//! bound when N is outside it (or refusing with `--keep-bounds`), then
//! waits until the new count holds unless `--no-wait`
//! (`stacks::aws::scale`, `stacks::aws::wait`).

use anyhow::Context as _;
use stacks::aws::scale::ScaleReport;
use stacks::aws::{self, Aws, StackLock};
use stacks::graph::Graph;
use stacks::local::Service;
use stacks::spec::LoadedSpec;

use super::aws_wait::WaitArgs;
use crate::output::{Exit, Output};

/// What `scale` of an aws stack takes from the command line.
pub struct AwsScale {
    /// The service.
    pub service: Service,
    /// The new count.
    pub count: u32,
    /// Refuse a count outside the auto-scaling bounds (`--keep-bounds`).
    pub keep_bounds: bool,
    /// `--no-wait`, `--wait-timeout`.
    pub wait: WaitArgs,
}

/// Runs `stackctl scale` for an aws stack.
pub async fn run(loaded: &LoadedSpec, opts: AwsScale, output: Output) -> anyhow::Result<Exit> {
    super::aws_up::require_credentials(loaded, "scale")?;
    let stack = loaded.spec.stack.clone();
    let graph = Graph::build(loaded)
        .with_context(|| format!("cannot build the resources of stack `{stack}`"))?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .context("cannot load the AWS configuration")?;
    let since = std::time::SystemTime::now();
    let lock = StackLock::acquire(&aws, &stack, "scale", aws::lock::DEFAULT_TTL)
        .await
        .with_context(|| format!("cannot take the lock of stack `{stack}`"))?;
    let result = aws::scale::scale(&aws, &graph, opts.service, opts.count, opts.keep_bounds)
        .await
        .with_context(|| {
            format!(
                "cannot scale {} of stack `{stack}` to {}",
                opts.service.as_str(),
                opts.count
            )
        });
    let report = match result {
        Ok(report) => {
            // Held while waiting: the count must not move under the wait.
            let waited = super::aws_wait::run(
                &aws,
                vec![report.target.clone()],
                &opts.wait,
                &loaded.spec,
                since,
                output,
            )
            .await;
            waited.map(|w| (report, w))
        }
        Err(e) => Err(e),
    };
    let released = lock.release().await;
    let (report, waited) = report?;
    released.with_context(|| format!("cannot release the lock of stack `{stack}`"))?;
    print(&report, waited.is_some(), output)?;
    Ok(Exit::Ok)
}

fn print(report: &ScaleReport, waited: bool, output: Output) -> anyhow::Result<()> {
    let moved = report
        .bounds
        .as_ref()
        .filter(|b| (b.new_min, b.new_max) != (b.min, b.max));
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(report)?;
            doc["type"] = "result".into();
            doc["provider"] = "aws".into();
            doc["waited"] = waited.into();
            println!("{doc}");
        }
        Output::Human => {
            println!(
                "{} ({}) scaled from {} to {}{}",
                report.service.as_str(),
                report.resource,
                report.from,
                report.to,
                if waited {
                    ": the new count holds"
                } else {
                    " (not waited: --no-wait)"
                }
            );
            if let Some(b) = moved {
                println!(
                    "bounds moved: {} [{}, {}] -> [{}, {}] so the count stays within them",
                    b.by, b.min, b.max, b.new_min, b.new_max
                );
            }
            if report.policies {
                println!(
                    "note: scaling policies may change the count again when their alarms fire"
                );
            }
            println!("note: {}", report.note);
        }
    }
    Ok(())
}
