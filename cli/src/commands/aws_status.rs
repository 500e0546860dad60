//! `stackctl status` for `provider: aws` stacks: runs
//! [`stacks::aws::ops::status`] (every resource with whether it exists and
//! its drift from the spec, the live state of the ECS services, the
//! executors' group and Redis, and the event API's address) and prints it.
//! Exit 0 when everything exists without drift and runs at least its
//! desired count, 1 otherwise.

use stacks::aws::ops::StackStatus;
use stacks::aws::wait::RedisService;
use stacks::spec::LoadedSpec;

use crate::output::{self, Exit, Output};
use crate::progress::Reporter;

/// Runs `stackctl status` for an aws stack.
pub async fn run(loaded: &LoadedSpec, output: Output) -> anyhow::Result<Exit> {
    super::aws_up::require_credentials(loaded, "status").await?;
    let reporter = Reporter::new(output);
    let result = stacks::aws::ops::status(loaded, &reporter).await;
    reporter.finish();
    let status = result?;
    match output {
        Output::Json => output::print_json(&status)?,
        Output::Human => print_human(&status)?,
    }
    Ok(if status.in_sync && status.ready {
        Exit::Ok
    } else {
        Exit::Error
    })
}

fn print_human(s: &StackStatus) -> anyhow::Result<()> {
    let mut lines = vec![format!(
        "stack `{}` (aws, {}): {}",
        s.stack,
        s.region,
        if s.in_sync {
            "every resource exists as specified"
        } else {
            "differs from its spec"
        }
    )];
    if let Some(url) = &s.event_api {
        lines.push(format!("  event API: {url}"));
    }
    if let Some(dns) = &s.dns_target {
        lines.push(format!("  DNS: point the domain at {dns} (CNAME)"));
    }
    lines.push(format!(
        "\n  {:<10} {:>7} {:>7} {:>7}  DETAIL",
        "SERVICE", "DESIRED", "RUNNING", "PENDING"
    ));
    for (name, svc) in &s.services {
        lines.push(format!(
            "  {name:<10} {:>7} {:>7} {:>7}  {}",
            svc.desired, svc.running, svc.pending, svc.detail
        ));
    }
    if let Some(r) = &s.redis {
        let service = match r.service {
            RedisService::ElastiCache => "ElastiCache",
            RedisService::MemoryDb => "MemoryDB",
        };
        lines.push(format!(
            "  redis      {} {} ({service})",
            r.status,
            r.endpoint.as_deref().unwrap_or("(no endpoint yet)")
        ));
    }
    lines.extend(super::status::figure_lines(&s.figures));
    lines.push(String::new());
    for r in &s.resources {
        let drift = if r.drift.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.drift.join(", "))
        };
        let status = r
            .status
            .as_ref()
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default();
        lines.push(format!(
            "  {:<28} {:<24} {}{status}{drift}",
            r.resource, r.kind, r.state
        ));
    }
    for line in lines {
        output::print_line(&line)?;
    }
    Ok(())
}
