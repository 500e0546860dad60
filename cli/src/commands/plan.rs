//! `stackctl plan FILE`: the AWS resources a spec implies and what applying
//! it would change, as a tree grouped by dependency depth or as JSON
//! (`stacks::graph`). With AWS credentials the observed state is read from
//! AWS (`stacks::aws::plan`); `--offline`, or no credentials, plans every
//! resource as a create. The plan ends with what it does to the monthly
//! cost (`stacks::cost`; `--prices FILE` for other prices).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use stacks::spec::LoadError;

use crate::output::{self, Exit, Output};
use crate::progress::Reporter;

/// Arguments of `stackctl plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The stack spec (an `aws` stack).
    #[arg(
        value_name = "FILE",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    spec: Option<PathBuf>,
    /// The stack spec, as an option.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Exit 0 when nothing would change and 2 when something would; errors
    /// (an invalid spec included) then exit 1.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Do not read AWS: every resource shows as a create.
    #[arg(long)]
    offline: bool,
    /// Deploy this prebuilt engine image instead of the spec's.
    #[arg(long, value_name = "URI")]
    image: Option<String>,
    /// When the engine image is built from source (no --image, no image.uri): build it from
    /// this engine binary and show whether its digest changes the stack. Without it the plan
    /// assumes the image the stack runs now (`up` always builds).
    #[arg(long, value_name = "PATH", env = "STACKCTL_ENGINE_BINARY")]
    engine_binary: Option<PathBuf>,
    /// Work out the monthly cost difference with this price table (the shape
    /// `stackctl cost --dump-prices` prints) instead of the shipped one.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
}

/// Runs `stackctl plan`.
pub async fn run(args: PlanArgs, output: Output) -> anyhow::Result<Exit> {
    let path = args
        .spec
        .or(args.file)
        .context("no spec file: pass FILE or -f FILE")?;
    let loaded = match stacks::spec::load(&path) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(errors)) => {
            match output {
                Output::Human => eprint!("{}", errors.render()),
                Output::Json => output::print_json(&errors.to_json())?,
            }
            return Ok(if args.detailed_exitcode {
                Exit::Error
            } else {
                Exit::Invalid
            });
        }
        Err(err) => return Err(err).with_context(|| format!("cannot plan {}", path.display())),
    };
    super::up::show_warnings(&loaded, output);
    let live = !args.offline && stacks::aws::context::credentials_available().await;
    if !args.offline && !live {
        eprintln!(
            "stackctl: no AWS credentials (none configured, no instance profile): planning offline (every resource a create); pass --offline to say so"
        );
    }
    let prices = match &args.prices {
        Some(file) => Some(stacks::cost::PriceTable::load(file)?),
        None => None,
    };
    let options = stacks::aws::ops::PlanOptions {
        live,
        image: args.image,
        engine_binary: args.engine_binary,
        prices,
    };
    let reporter = Reporter::new(output);
    let result = stacks::aws::ops::plan(&loaded, options, &reporter).await;
    reporter.finish();
    let plan = result.with_context(|| format!("cannot plan {}", path.display()))?;
    match output {
        Output::Human => output::print_line(plan.render_text().trim_end_matches('\n'))?,
        Output::Json => {
            let mut doc = serde_json::to_value(&plan)?;
            doc["warnings"] = serde_json::to_value(&loaded.warnings.diagnostics)?;
            output::print_json(&doc)?;
        }
    }
    Ok(if args.detailed_exitcode && plan.plan.has_changes() {
        Exit::Invalid
    } else {
        Exit::Ok
    })
}
