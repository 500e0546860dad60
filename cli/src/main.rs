//! The `stackctl` binary: parses arguments, runs one command, and is the one
//! place that prints errors and chooses the exit code.

mod commands;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::Command;
use crate::output::{Exit, Output};

/// Provision and operate a self-hosted durable-function engine on AWS or locally.
#[derive(Debug, Parser)]
#[command(name = "stackctl", version, about, long_about = None)]
struct Cli {
    /// Output format: `human` (default) or `json` (one JSON document, or NDJSON events for long commands).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides it.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    // Installed as `stackctl-engine` (the engine image `up` builds from an
    // installed stackctl), this binary is the engine's command line.
    let mut args = std::env::args_os();
    if let Some(program) = args.next()
        && std::path::Path::new(&program).file_stem()
            == Some(std::ffi::OsStr::new("stackctl-engine"))
    {
        return engine::entry::main_with_args(std::iter::once(program).chain(args));
    }
    let cli = Cli::parse();
    // Engine roles set up their own logging and runtime (engine::entry).
    if let Command::Engine(args) = cli.command {
        return commands::engine::run(args);
    }
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Error as u8);
        }
    };
    match runtime.block_on(commands::run(cli.command, cli.output)) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => {
            output::print_error(cli.output, &err);
            ExitCode::from(Exit::Error as u8)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
