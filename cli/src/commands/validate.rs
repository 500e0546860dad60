//! `stackctl validate FILE`: loads a spec and its function files and reports
//! every problem. Exit 0 when valid (warnings or not), 2 when invalid, 1 when
//! the file cannot be read.

use std::path::PathBuf;

use clap::Args;
use stacks::spec::{self, LoadError};

use crate::output::{self, Exit, Output, outln};

/// Check a stack spec and its functions; print every error with its place and fix.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The stack spec (YAML).
    file: PathBuf,
}

/// Runs `validate`.
pub fn run(args: ValidateArgs, out: Output) -> anyhow::Result<Exit> {
    match spec::load(&args.file) {
        Ok(loaded) => {
            let functions = loaded.functions.len();
            let warnings = loaded.warnings.diagnostics.len();
            super::up::show_warnings(&loaded, out);
            match out {
                Output::Json => output::print_json(&serde_json::json!({
                    "valid": true,
                    "errors": [],
                    "warnings": loaded.warnings.diagnostics,
                    "stack": loaded.spec.stack,
                    "provider": loaded.spec.provider,
                    "functions": functions,
                }))?,
                Output::Human => outln!(
                    "{} is valid: stack `{}` on {}, {functions} function{}{}",
                    args.file.display(),
                    loaded.spec.stack,
                    loaded.spec.provider,
                    if functions == 1 { "" } else { "s" },
                    match warnings {
                        0 => String::new(),
                        1 => " (1 warning)".into(),
                        n => format!(" ({n} warnings)"),
                    },
                )?,
            }
            Ok(Exit::Ok)
        }
        Err(LoadError::Invalid(errors)) => {
            match out {
                Output::Json => output::print_json(&errors.to_json())?,
                Output::Human => output::print_text(&errors.render())?,
            }
            Ok(Exit::Invalid)
        }
        Err(e @ LoadError::Read { .. }) => Err(e.into()),
    }
}
