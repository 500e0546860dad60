//! `stackctl status [FILE]`: each process of a local stack (role, pid,
//! liveness, health, port), the counts by service (`stacks::local::status`)
//! and the figures a person checks first (`stacks::figures`: queue depth and
//! age, dead letters, failed runs). Exit 0 when every desired process is
//! running and healthy, 1 otherwise.

use clap::Args;
use stacks::figures::{Figure, Figures, human_age};

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
            for line in figure_lines(&report.figures) {
                outln!("{line}")?;
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

/// The figures as lines: a table of the queues the services consume, the
/// failed runs, then why each unknown figure is unknown.
pub(super) fn figure_lines(figures: &Figures) -> Vec<String> {
    let mut reasons = Vec::new();
    let mut show =
        |what: String, shown: Option<String>, reason: Option<&String>| match (shown, reason) {
            (Some(v), _) => v,
            (None, reason) => {
                reasons.push(format!(
                    "  {what}: unknown ({})",
                    reason.map_or("no reason given", String::as_str)
                ));
                "unknown".to_string()
            }
        };
    let mut lines = vec![format!(
        "\n  {:<10} {:<7} {:>7} {:>10} {:>12}",
        "SERVICE", "QUEUE", "DEPTH", "OLDEST", "DEAD LETTERS"
    )];
    for (service, q) in &figures.services {
        let depth = show(
            format!("{service} queue depth"),
            q.depth.known().map(u64::to_string),
            reason(&q.depth),
        );
        let oldest = show(
            format!("{service} oldest message"),
            q.oldest_age_seconds.known().map(|s| human_age(*s)),
            reason(&q.oldest_age_seconds),
        );
        let dead = show(
            format!("{service} dead letters"),
            q.dead_letters.known().map(u64::to_string),
            reason(&q.dead_letters),
        );
        lines.push(format!(
            "  {service:<10} {:<7} {depth:>7} {oldest:>10} {dead:>12}",
            q.queue
        ));
    }
    let failed = show(
        "failed runs".to_string(),
        figures
            .runs_failed_last_hour
            .known()
            .map(ToString::to_string),
        reason(&figures.runs_failed_last_hour),
    );
    lines.push(format!("\n  runs failed in the last hour: {failed}"));
    lines.extend(reasons);
    lines
}

fn reason<T>(figure: &Figure<T>) -> Option<&String> {
    match figure {
        Figure::Known(_) => None,
        Figure::Unknown(reason) => Some(reason),
    }
}
