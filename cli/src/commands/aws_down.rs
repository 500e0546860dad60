//! `stackctl down` for `provider: aws` stacks: takes the stack lock, deletes
//! every resource of the stack that exists (`stacks::aws::down`: reverse
//! dependency order, dependency retries, waits), deletes its SSM
//! parameters, sweeps every service for leftovers, then releases the lock.
//! Exit 0 when nothing of the stack remains (deletions AWS accepted and is
//! still finishing, such as ElastiCache's, aside), 1 otherwise.

use std::time::Duration;

use anyhow::Context as _;
use stacks::aws::{self, Aws, DownOptions, DownReport, StackLock};
use stacks::graph::Graph;
use stacks::spec::LoadedSpec;

use crate::output::{Exit, Output};
use crate::progress::Reporter;

/// What `down` of an aws stack takes from the command line.
pub struct AwsDown {
    /// Break a stale stack lock before taking it (`--force-unlock`).
    pub force_unlock: bool,
    /// How long one deletion may take (`--wait-timeout`); default: the
    /// spec's `timeouts.redis` (ElastiCache is the slowest to delete).
    pub wait_timeout: Option<Duration>,
}

/// Runs `stackctl down` for an aws stack (already confirmed).
pub async fn run(loaded: &LoadedSpec, opts: AwsDown, output: Output) -> anyhow::Result<Exit> {
    super::aws_up::require_credentials(loaded, "down")?;
    let stack = loaded.spec.stack.clone();
    let graph = Graph::build(loaded)
        .with_context(|| format!("cannot build the resources of stack `{stack}`"))?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .context("cannot load the AWS configuration")?;
    if opts.force_unlock
        && let Some(old) = aws::lock::force_unlock(&aws, &stack)
            .await
            .with_context(|| format!("cannot break the lock of stack `{stack}`"))?
    {
        eprintln!(
            "stackctl: broke the lock of stack `{stack}` held by {} for `{}`",
            old.owner, old.command
        );
    }
    let lock = StackLock::acquire(&aws, &stack, "down", aws::lock::DEFAULT_TTL)
        .await
        .with_context(|| format!("cannot take the lock of stack `{stack}`"))?;
    let options = DownOptions {
        wait_timeout: opts.wait_timeout.unwrap_or(loaded.spec.timeouts.redis.0),
        ..DownOptions::default()
    };
    let started = std::time::Instant::now();
    let reporter = Reporter::new(output);
    let result = aws::down(&aws, &graph, &options, &reporter).await;
    reporter.finish();
    let released = lock.release().await;
    let report = result.with_context(|| format!("`down` of stack `{stack}` failed"))?;
    released.with_context(|| format!("cannot release the lock of stack `{stack}`"))?;
    let calls = aws.calls();
    print_report(&report, output, started.elapsed(), &calls)?;
    Ok(if report.clean() {
        Exit::Ok
    } else {
        Exit::Error
    })
}

fn print_report(
    report: &DownReport,
    output: Output,
    elapsed: Duration,
    calls: &aws::CallCounts,
) -> anyhow::Result<()> {
    let stack = &report.stack;
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(report)?;
            doc["type"] = "result".into();
            doc["provider"] = "aws".into();
            doc["clean"] = report.clean().into();
            doc["elapsed_ms"] = (elapsed.as_millis() as u64).into();
            doc["calls"] = serde_json::json!({"reads": calls.reads, "writes": calls.writes});
            crate::output::print_line(&doc.to_string())?;
        }
        Output::Human => {
            let mut out = String::new();
            out.push_str(&format!(
                "\nstack `{stack}`: {} deleted, {} already gone, {} SSM parameters deleted ({:.1}s, {} API calls)\n",
                report.deleted.len(),
                report.already_gone.len(),
                report.parameters_deleted.len(),
                elapsed.as_secs_f64(),
                calls.reads + calls.writes,
            ));
            let section = |out: &mut String, title: &str, items: Vec<String>| {
                if !items.is_empty() {
                    out.push_str(&format!("{title}:\n"));
                    for i in items {
                        out.push_str(&format!("  - {i}\n"));
                    }
                }
            };
            let items = |v: &[aws::destroy::Item]| -> Vec<String> {
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
            if report.clean() {
                out.push_str(&format!("stack `{stack}` is down: nothing of it remains\n"));
            } else {
                out.push_str(&format!(
                    "stack `{stack}` is NOT fully down: see above; `stackctl down` again finishes what waited\n"
                ));
            }
            print!("{out}");
        }
    }
    Ok(())
}
