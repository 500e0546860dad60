//! `stackctl down [FILE] --yes`: stops every process of a local stack
//! (`stacks::local::down`), keeping its data unless `--purge`; deletes every
//! AWS resource of an aws stack (`aws_down`). Without `--yes` it asks for
//! the stack's name on a terminal and refuses otherwise.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context as _;
use clap::Args;

use stacks::spec::Provider;

use super::up::{StackFile, load, require_local};
use crate::output::{Exit, Output, outln};
use crate::progress::Reporter;

/// Take the stack down: stop a local stack's processes (data kept unless --purge), or delete every AWS resource of an aws stack.
#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    stack: StackFile,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Also delete the state directory: the database (events, runs), configs and logs.
    #[arg(long)]
    purge: bool,
    /// (aws stacks) Break the stack lock left by a crashed `up`/`down` before taking it
    /// (one its holder still renews too, once `down` is confirmed).
    #[arg(long)]
    force_unlock: bool,
    /// (aws stacks) How long one deletion may take (e.g. `90s`, `20m`); default: the spec's
    /// `timeouts.redis`. A deletion AWS accepted but had not finished by then is reported as
    /// still deleting.
    #[arg(long, value_name = "DURATION", value_parser = stacks::bench::parse_duration)]
    wait_timeout: Option<std::time::Duration>,
}

/// Runs `stackctl down`.
pub async fn run(args: DownArgs, output: Output) -> anyhow::Result<Exit> {
    let loaded = match load(&args.stack, output)? {
        Ok(l) => l,
        Err(exit) => return Ok(exit),
    };
    let aws = loaded.spec.provider == Provider::Aws;
    if !aws {
        require_local(&loaded, "down")?;
    }
    let stack = &loaded.spec.stack;
    let what = if aws {
        "delete every AWS resource of"
    } else {
        "stop every process of"
    };
    if !args.yes {
        if !std::io::stdin().is_terminal() || output == Output::Json {
            anyhow::bail!(
                "refusing to {what} stack `{stack}` without --yes (no terminal to confirm on); nothing was changed"
            );
        }
        eprint!("{what} stack `{stack}`? type the stack name to confirm: ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("cannot read the confirmation")?;
        if answer.trim() != stack {
            anyhow::bail!("not confirmed: nothing was changed");
        }
    }
    if aws {
        let opts = super::aws_down::AwsDown {
            // Confirmed (--yes or typed): a lock still renewed may go too.
            force_unlock: super::aws_up::force_unlock(args.force_unlock, true),
            wait_timeout: args.wait_timeout,
        };
        return super::aws_down::run(&loaded, opts, output).await;
    }
    let reporter = Reporter::new(output);
    let result = stacks::local::down(&loaded, args.purge, &reporter).await;
    reporter.finish();
    let report = result.with_context(|| format!("`down` of stack `{stack}` did not finish"))?;
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(&report)?;
            doc["type"] = "result".into();
            outln!("{doc}")?;
        }
        Output::Human => {
            outln!(
                "stack `{stack}` is down: {} stopped, {} killed, {} already gone; {}",
                report.stopped.len(),
                report.killed.len(),
                report.already_gone.len(),
                if report.purged {
                    "its data was deleted".to_string()
                } else {
                    format!(
                        "data kept in {} (--purge deletes it)",
                        report.state_dir.display()
                    )
                }
            )?;
        }
    }
    Ok(Exit::Ok)
}
