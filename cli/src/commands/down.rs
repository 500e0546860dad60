//! `stackctl down [FILE] --yes`: stops every process of a local stack
//! (`stacks::local::down`), keeping its data unless `--purge`. Without
//! `--yes` it asks for the stack's name on a terminal and refuses otherwise.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context as _;
use clap::Args;

use super::up::{StackFile, load, require_local};
use crate::output::{Exit, Output};
use crate::progress::Reporter;

/// Stop the stack's processes (data is kept unless --purge).
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
}

/// Runs `stackctl down`.
pub async fn run(args: DownArgs, output: Output) -> anyhow::Result<Exit> {
    let loaded = match load(&args.stack, output)? {
        Ok(l) => l,
        Err(exit) => return Ok(exit),
    };
    require_local(&loaded, "down")?;
    let stack = &loaded.spec.stack;
    if !args.yes {
        if !std::io::stdin().is_terminal() || output == Output::Json {
            anyhow::bail!(
                "refusing to stop stack `{stack}` without --yes (no terminal to confirm on)"
            );
        }
        eprint!("stop every process of stack `{stack}`? type the stack name to confirm: ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("cannot read the confirmation")?;
        if answer.trim() != stack {
            anyhow::bail!("not confirmed: nothing was stopped");
        }
    }
    let reporter = Reporter::new(output);
    let result = stacks::local::down(&loaded, args.purge, &reporter).await;
    reporter.finish();
    let report = result.with_context(|| format!("`down` of stack `{stack}` did not finish"))?;
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(&report)?;
            doc["type"] = "result".into();
            println!("{doc}");
        }
        Output::Human => {
            println!(
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
            );
        }
    }
    Ok(Exit::Ok)
}
