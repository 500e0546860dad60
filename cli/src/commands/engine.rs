//! `stackctl engine --role R --config PATH` (hidden): runs engine roles in
//! this process, exactly as the `stackctl-engine` binary does
//! (`engine::entry`), so a local stack needs nothing but `stackctl`.
//! `main` dispatches it before setting up its own logging and runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use engine::config::{LogFormat, Role};

/// Run engine roles in this process (used by the local provider).
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Roles to run: event-api, runner, executor or all; repeatable or a comma list.
    #[arg(long = "role", value_name = "ROLE", value_delimiter = ',')]
    roles: Vec<Role>,
    /// The engine's JSON configuration (default: $STACKCTL_ENGINE_CONFIG).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format: text or json (default: the configuration's).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

/// Runs the engine until SIGTERM/SIGINT; must be called outside any runtime.
pub fn run(args: EngineArgs) -> ExitCode {
    engine::entry::run(engine::entry::Options {
        roles: args.roles,
        config: args.config,
        log_format: args.log_format,
    })
}
