//! `stackctl scale [-f FILE] SERVICE N`: sets the number of processes of
//! `event-api`, `runner` or `executors` of a local stack
//! (`stacks::local::scale`), or of an aws stack (`aws_scale`: ECS desired
//! count, Auto Scaling Group desired capacity). The spec file is not edited.

use clap::Args;
use stacks::local::Service;

use super::up::{StackFileFlag, load_stack, options, require_local};
use crate::output::{Exit, Output, outln};
use crate::progress::Reporter;

/// Set how many processes (tasks, instances) a service runs.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    stack: StackFileFlag,
    /// The service: event-api, runner or executors.
    #[arg(value_name = "SERVICE")]
    service: Service,
    /// How many to run.
    #[arg(value_name = "N")]
    count: u32,
    /// (aws stacks) Refuse N outside the auto-scaling bounds instead of moving the bound.
    #[arg(long)]
    keep_bounds: bool,
    #[command(flatten)]
    wait: super::aws_wait::WaitArgs,
}

/// Runs `stackctl scale`.
pub async fn run(args: ScaleArgs, output: Output) -> anyhow::Result<Exit> {
    let loaded = match load_stack(args.stack.file.as_deref(), output)? {
        Ok(l) => l,
        Err(exit) => return Ok(exit),
    };
    if loaded.spec.provider == stacks::spec::Provider::Aws {
        let opts = super::aws_scale::AwsScale {
            service: args.service,
            count: args.count,
            keep_bounds: args.keep_bounds,
            wait: args.wait,
        };
        return super::aws_scale::run(&loaded, opts, output).await;
    }
    require_local(&loaded, "scale")?;
    let reporter = Reporter::new(output);
    let result =
        stacks::local::scale(&loaded, args.service, args.count, &options()?, &reporter).await;
    reporter.finish();
    let report = result?;
    let note = format!(
        "the spec file is not edited: the next `stackctl up` returns {} to {} from the spec",
        report.service.as_str(),
        report.spec_count
    );
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(&report)?;
            doc["type"] = "result".into();
            doc["note"] = note.into();
            outln!("{doc}")?;
        }
        Output::Human => {
            outln!(
                "{} scaled from {} to {} ({} started, {} stopped)",
                report.service.as_str(),
                report.from,
                report.to,
                report.changes.started.len() + report.changes.restarted.len(),
                report.changes.stopped.len()
            )?;
            outln!("note: {note}")?;
        }
    }
    Ok(Exit::Ok)
}
