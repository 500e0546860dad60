//! `stackctl init [--provider aws|local] [FILE]`: writes a commented starter
//! spec from `templates/init-*.yaml`, never over an existing file unless
//! `--force`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use crate::output::{self, Exit, Output, outln};

/// Write a commented starter stack spec.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the stack runs.
    #[arg(long, value_enum, default_value_t = InitProvider::Local)]
    provider: InitProvider,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
    /// The file to write (default: `local.yaml` or `aws.yaml`, after the provider).
    file: Option<PathBuf>,
}

/// The providers `init` has a template for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InitProvider {
    /// ECS, EC2 Auto Scaling, SQS and ElastiCache.
    Aws,
    /// Processes on this machine.
    Local,
}

impl InitProvider {
    /// The file name users type for this provider's spec.
    fn default_file(self) -> &'static str {
        match self {
            Self::Aws => "aws.yaml",
            Self::Local => "local.yaml",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Self::Aws => stacks::spec::templates::INIT_AWS,
            Self::Local => stacks::spec::templates::INIT_LOCAL,
        }
    }
}

/// Runs `init`.
pub fn run(args: InitArgs, out: Output) -> anyhow::Result<Exit> {
    let file = args
        .file
        .unwrap_or_else(|| PathBuf::from(args.provider.default_file()));
    if file.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            file.display()
        );
    }
    std::fs::write(&file, args.provider.template())
        .with_context(|| format!("cannot write {}", file.display()))?;
    match out {
        Output::Json => output::print_json(&serde_json::json!({
            "file": file,
            "provider": args.provider.to_possible_value().map(|v| v.get_name().to_string()),
        }))?,
        Output::Human => outln!(
            "wrote {}; check it with `stackctl validate {}`",
            file.display(),
            file.display()
        )?,
    }
    Ok(Exit::Ok)
}
