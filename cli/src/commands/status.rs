//! `stackctl status [FILE]`: each process of a local stack (role, pid,
//! liveness, health, port) and the counts by service (`stacks::local::status`).
//! Exit 0 when every desired process is running and healthy, 1 otherwise.

use clap::Args;

use super::up::{StackFile, load, require_local};
use crate::output::{self, Exit, Output, outln};

/// Show the stack's processes, their health and the counts by service.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    stack: StackFile,
}

/// Runs `stackctl status`.
pub async fn run(args: StatusArgs, output: Output) -> anyhow::Result<Exit> {
    let loaded = match load(&args.stack, output)? {
        Ok(l) => l,
        Err(exit) => return Ok(exit),
    };
    if loaded.spec.provider == stacks::spec::Provider::Aws {
        return super::aws_status::run(&loaded, output).await;
    }
    require_local(&loaded, "status")?;
    let report = stacks::local::status(&loaded).await?;
    match output {
        Output::Json => output::print_json(&report)?,
        Output::Human => {
            if !report.up {
                outln!(
                    "stack `{}` is not up (nothing running is recorded in {})",
                    report.stack,
                    report.state_dir.display()
                )?;
                return Ok(Exit::Error);
            }
            outln!(
                "stack `{}` ({}): {}",
                report.stack,
                report.event_api,
                if report.healthy {
                    "healthy"
                } else {
                    "NOT healthy"
                }
            )?;
            outln!(
                "\n  {:<10} {:>7} {:>7} {:>7}",
                "SERVICE",
                "DESIRED",
                "RUNNING",
                "HEALTHY"
            )?;
            for (name, c) in &report.services {
                outln!(
                    "  {name:<10} {:>7} {:>7} {:>7}",
                    c.desired,
                    c.running,
                    c.healthy
                )?;
            }
            outln!(
                "\n  {:<12} {:>8} {:>6} {:<6} {:<8} LOG",
                "PROCESS",
                "PID",
                "PORT",
                "ALIVE",
                "HEALTH"
            )?;
            for p in &report.processes {
                outln!(
                    "  {:<12} {:>8} {:>6} {:<6} {:<8} {}",
                    p.name,
                    p.pid,
                    p.port,
                    if p.alive { "yes" } else { "no" },
                    if p.healthy { "ok" } else { "failing" },
                    p.log.display()
                )?;
            }
        }
    }
    Ok(if report.healthy {
        Exit::Ok
    } else {
        Exit::Error
    })
}
