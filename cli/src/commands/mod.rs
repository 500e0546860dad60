//! One module per command; each parses its own arguments and calls the
//! `stacks` library. Commands return the exit code; errors go up to `main`.

use clap::Subcommand;

use crate::output::{Exit, Output};

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs one command.
pub async fn run(command: Command, output: Output) -> anyhow::Result<Exit> {
    let _ = output;
    match command {}
}
