//! `stackctl status` for `provider: aws` stacks: every resource of the
//! stack with whether it exists and its drift from the spec (from
//! `stacks::aws::plan`). Exit 0 when everything exists without drift, 1
//! otherwise. Service states and desired/running counts are not read yet.

use anyhow::Context as _;
use stacks::aws::{self, Aws, Inputs};
use stacks::graph::Graph;
use stacks::graph::plan::Action;
use stacks::spec::LoadedSpec;

use crate::output::{self, Exit, Output};

/// Runs `stackctl status` for an aws stack.
pub async fn run(loaded: &LoadedSpec, output: Output) -> anyhow::Result<Exit> {
    super::aws_up::require_credentials(loaded, "status")?;
    let stack = &loaded.spec.stack;
    let graph = Graph::build(&loaded.spec)
        .with_context(|| format!("cannot build the resources of stack `{stack}`"))?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .context("cannot load the AWS configuration")?;
    let planned = aws::plan(&aws, &graph, &Inputs::from_spec(&loaded.spec, None))
        .await
        .with_context(|| format!("cannot read the state of stack `{stack}`"))?;
    let rows: Vec<serde_json::Value> = planned
        .plan
        .changes
        .iter()
        .map(|c| {
            let id = &c.resource.id;
            let state = match c.action {
                Action::Create => "missing",
                Action::Delete => "not in spec",
                Action::NoChange => "in sync",
                Action::Update | Action::Replace => "drifted",
            };
            serde_json::json!({
                "resource": id.to_string(),
                "kind": c.resource.kind.to_string(),
                "name": c.resource.name,
                "exists": planned.observed(id).is_some(),
                "state": state,
                "drift": c.changed_attributes,
            })
        })
        .collect();
    let in_sync = !planned.plan.has_changes();
    match output {
        Output::Json => output::print_json(&serde_json::json!({
            "stack": stack,
            "provider": "aws",
            "in_sync": in_sync,
            "resources": rows,
        }))?,
        Output::Human => {
            println!(
                "stack `{stack}` (aws, {}): {}",
                aws.region(),
                if in_sync {
                    "every resource exists as specified"
                } else {
                    "differs from its spec"
                }
            );
            for r in &rows {
                let drift = r["drift"]
                    .as_array()
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        let names: Vec<&str> = d.iter().filter_map(|v| v.as_str()).collect();
                        format!(" ({})", names.join(", "))
                    })
                    .unwrap_or_default();
                println!(
                    "  {:<28} {:<24} {}{drift}",
                    r["resource"].as_str().unwrap_or_default(),
                    r["kind"].as_str().unwrap_or_default(),
                    r["state"].as_str().unwrap_or_default(),
                );
            }
            println!("  (service states and desired/running counts are not shown yet)");
        }
    }
    Ok(if in_sync { Exit::Ok } else { Exit::Error })
}
