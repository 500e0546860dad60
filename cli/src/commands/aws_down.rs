//! `stackctl down` for `provider: aws` stacks: runs
//! [`stacks::aws::ops::down`] and prints its report. Exit 0 when nothing of
//! the stack remains (deletions AWS accepted and is still finishing, such as
//! ElastiCache's, aside), 1 otherwise.

use std::time::Duration;

use stacks::aws::ops::{DownStackOptions, StackDown};
use stacks::spec::LoadedSpec;

use crate::output::{Exit, Output};
use crate::progress::Reporter;

/// What `down` of an aws stack takes from the command line.
pub struct AwsDown {
    /// Break a stale stack lock before taking it (`--force-unlock`).
    pub force_unlock: stacks::aws::ForceUnlock,
    /// How long one deletion may take (`--wait-timeout`); default: the
    /// spec's `timeouts.redis` (ElastiCache is the slowest to delete).
    pub wait_timeout: Option<Duration>,
}

/// Runs `stackctl down` for an aws stack (already confirmed).
pub async fn run(loaded: &LoadedSpec, opts: AwsDown, output: Output) -> anyhow::Result<Exit> {
    super::aws_up::require_credentials(loaded, "down").await?;
    let reporter = Reporter::new(output);
    let result = stacks::aws::ops::down(
        loaded,
        DownStackOptions {
            force_unlock: opts.force_unlock,
            wait_timeout: opts.wait_timeout,
        },
        &reporter,
    )
    .await;
    reporter.finish();
    let down = result?;
    print_report(&down, output)?;
    Ok(if down.clean { Exit::Ok } else { Exit::Error })
}

fn print_report(down: &StackDown, output: Output) -> anyhow::Result<()> {
    let report = &down.report;
    let stack = &report.stack;
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(down)?;
            doc["type"] = "result".into();
            crate::output::print_line(&doc.to_string())?;
        }
        Output::Human => {
            let mut out = String::new();
            out.push_str(&format!(
                "\nstack `{stack}`: {} deleted, {} already gone, {} SSM parameters deleted ({:.1}s, {} API calls)\n",
                report.deleted.len(),
                report.already_gone.len(),
                report.parameters_deleted.len(),
                down.elapsed_ms as f64 / 1000.0,
                down.calls.reads + down.calls.writes,
            ));
            let section = |out: &mut String, title: &str, items: Vec<String>| {
                if !items.is_empty() {
                    out.push_str(&format!("{title}:\n"));
                    for i in items {
                        out.push_str(&format!("  - {i}\n"));
                    }
                }
            };
            let items = |v: &[stacks::aws::destroy::Item]| -> Vec<String> {
                v.iter()
                    .map(|i| format!("{} {} ({}): {}", i.kind, i.name, i.id, i.reason))
                    .collect()
            };
            section(
                &mut out,
                "still deleting (finishes by itself)",
                items(&report.in_progress),
            );
            section(&mut out, "failed", items(&report.failed));
            section(
                &mut out,
                "left alone (not the stack's)",
                items(&report.refused),
            );
            section(
                &mut out,
                "left over (found by the sweep)",
                report
                    .sweep
                    .leftovers
                    .iter()
                    .map(|l| format!("{} {}: {}", l.kind, l.name, l.reason))
                    .collect(),
            );
            section(&mut out, "could not sweep", report.sweep.errors.clone());
            section(
                &mut out,
                "not the stack's (same name prefix, no tag; ignored)",
                report
                    .sweep
                    .unrelated
                    .iter()
                    .map(|l| format!("{} {}", l.kind, l.name))
                    .collect(),
            );
            if down.clean {
                out.push_str(&format!("stack `{stack}` is down: nothing of it remains\n"));
            } else {
                out.push_str(&format!(
                    "stack `{stack}` is NOT fully down: see above; `stackctl down` again finishes what waited\n"
                ));
            }
            crate::output::print_line(out.trim_end_matches('\n'))?;
        }
    }
    Ok(())
}
