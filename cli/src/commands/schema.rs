//! `stackctl schema`: prints the JSON Schema of stack specs (generated from
//! the spec's types), for editors and other tools.

use clap::Args;

use crate::output::{self, Exit, Output};

/// Print the JSON Schema of stack specs.
#[derive(Debug, Args)]
pub struct SchemaArgs {}

/// Runs `schema`. The schema is JSON whatever the output mode.
pub fn run(_args: SchemaArgs, _out: Output) -> anyhow::Result<Exit> {
    output::print_json(&stacks::spec::spec_schema())?;
    Ok(Exit::Ok)
}
