//! `stackctl scale SERVICE N` for `provider: aws` stacks: under the stack
//! lock, sets the ECS desired count (`event-api`, `runner`) or the Auto
//! Scaling Group's desired capacity (`executors`), moving an auto-scaling
//! bound when N is outside it (or refusing with `--keep-bounds`), then
//! waits until the new count holds unless `--no-wait`: runs
//! [`stacks::aws::ops::scale`] and prints its report.

use stacks::aws::ops::{ScaleOptions, StackScale};
use stacks::local::Service;
use stacks::spec::LoadedSpec;

use super::aws_wait::WaitArgs;
use crate::output::{Exit, Output, outln};
use crate::progress::Reporter;

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
    super::aws_up::require_credentials(loaded, "scale").await?;
    let options = ScaleOptions {
        service: opts.service,
        count: opts.count,
        keep_bounds: opts.keep_bounds,
        wait: (!opts.wait.no_wait).then(|| opts.wait.timeouts(&loaded.spec)),
    };
    let reporter = Reporter::new(output);
    let result = stacks::aws::ops::scale(loaded, options, &reporter).await;
    reporter.finish();
    print(&result?, output)?;
    Ok(Exit::Ok)
}

fn print(scaled: &StackScale, output: Output) -> anyhow::Result<()> {
    let (report, waited) = (&scaled.report, scaled.waited);
    let moved = report
        .bounds
        .as_ref()
        .filter(|b| (b.new_min, b.new_max) != (b.min, b.max));
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(scaled)?;
            doc["type"] = "result".into();
            crate::output::print_line(&doc.to_string())?;
        }
        Output::Human => {
            outln!(
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
            )?;
            if let Some(b) = moved {
                outln!(
                    "bounds moved: {} [{}, {}] -> [{}, {}] so the count stays within them",
                    b.by,
                    b.min,
                    b.max,
                    b.new_min,
                    b.new_max
                )?;
            }
            if report.policies {
                outln!("note: scaling policies may change the count again when their alarms fire")?;
            }
            outln!("note: {}", report.note)?;
        }
    }
    Ok(())
}
