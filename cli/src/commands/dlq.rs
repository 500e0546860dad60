//! `stackctl dlq [-f FILE] [QUEUE...] [--redrive] [--limit N]`: what is in a
//! stack's dead-letter queues (the events or step job of each message, how
//! often it was delivered), or, with `--redrive`, moving it back to its
//! queue (`stacks::dlq`). Local and aws stacks alike. Exit 0 when the
//! dead-letter queues asked about are empty (after a redrive: are empty
//! now), 1 otherwise.

use clap::{Args, ValueEnum};
use stacks::dlq::{Content, DlqOptions, QueueName};

use super::up::{StackFileFlag, load_stack};
use crate::output::{self, Exit, Output};

/// A queue, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Queue {
    /// The event stream.
    Events,
    /// The work queue (step jobs).
    Work,
}

/// Show what is in the stack's dead-letter queues, or move it back (--redrive).
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    stack: StackFileFlag,
    /// The queues (default: both).
    #[arg(value_name = "QUEUE", value_enum)]
    queues: Vec<Queue>,
    /// Move the dead letters back to their queue (once their cause is fixed).
    #[arg(long)]
    redrive: bool,
    /// Most messages shown (or moved) per queue.
    #[arg(long, default_value_t = 20, value_name = "N")]
    limit: usize,
}

/// Runs `stackctl dlq`.
pub async fn run(args: DlqArgs, output: Output) -> anyhow::Result<Exit> {
    let loaded = match load_stack(args.stack.file.as_deref(), output)? {
        Ok(l) => l,
        Err(exit) => return Ok(exit),
    };
    let mut queues: Vec<QueueName> = args
        .queues
        .iter()
        .map(|q| match q {
            Queue::Events => QueueName::Events,
            Queue::Work => QueueName::Work,
        })
        .collect();
    if queues.is_empty() {
        queues = vec![QueueName::Events, QueueName::Work];
    }
    queues.sort();
    queues.dedup();
    if loaded.spec.provider == stacks::spec::Provider::Aws {
        super::aws_up::require_credentials(&loaded, "dlq").await?;
    }
    let opts = DlqOptions {
        queues,
        limit: args.limit,
        redrive: args.redrive,
    };
    let report = stacks::dlq::dlq(&loaded, &opts).await?;
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(&report)?;
            doc["type"] = "result".into();
            output::print_line(&doc.to_string())?;
        }
        Output::Human => {
            for q in &report.queues {
                if let Some(moved) = q.redriven {
                    output::print_line(&format!(
                        "{}: {moved} moved back to the queue, {} left in its dead-letter queue",
                        q.queue.as_str(),
                        q.count
                    ))?;
                    continue;
                }
                output::print_line(&format!(
                    "{}: {} in its dead-letter queue",
                    q.queue.as_str(),
                    q.count
                ))?;
                for l in &q.letters {
                    let what = match &l.content {
                        Content::Events { events } => events
                            .iter()
                            .map(|e| format!("{} {}", e.name, e.internal_id))
                            .collect::<Vec<_>>()
                            .join(", "),
                        Content::Job {
                            run_id,
                            step_id,
                            kind,
                        } => format!("{kind} job of step `{step_id}`, run {run_id}"),
                        Content::Undecodable { bytes, error } => {
                            format!("{bytes} bytes the engine cannot read: {error}")
                        }
                    };
                    output::print_line(&format!(
                        "  {}  sent {}, {} deliveries: {what}",
                        l.id,
                        super::logs::rfc3339(l.sent_at),
                        l.receive_count
                    ))?;
                }
            }
            if !report.empty() && !args.redrive {
                output::print_line(
                    "fix the cause (`stackctl logs` shows it), then `stackctl dlq --redrive` moves them back",
                )?;
            }
        }
    }
    Ok(if report.empty() {
        Exit::Ok
    } else {
        Exit::Error
    })
}
