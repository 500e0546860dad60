//! `stackctl runs list|show|cancel|replay`: a stack's runs through the
//! engine's runs API (`stacks::runs`), local and aws stacks alike (an aws
//! stack's from inside its VPC when the API is not published). Exit 0 on
//! success, 1 when the run does not exist, the runs API refused the request
//! or could not be reached, 2 when the spec is invalid.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use engine::backend::RunStatus;
use engine::event_api::ReplayFrom;
use stacks::runs::{
    Cancelled, ListOptions, ReplayReport, RunDetail, RunList, StepStatus, Via, status_str,
};

use super::logs::rfc3339;
use super::up::{StackFile, load_stack};
use crate::output::{self, Exit, Output, outln};

/// List, show, cancel and replay the stack's runs.
#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// The stack's runs, most recent first (by function, status, time).
    List(ListArgs),
    /// A run with its steps: attempts, timings, outputs and errors.
    Show(RunRef),
    /// Cancel a running run (an ended run is left as it is).
    Cancel(RunRef),
    /// Start a new run of an ended run's function for the same event.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    stack: StackFile,
    /// Only runs of this function (its id).
    #[arg(long, value_name = "FUNCTION")]
    function: Option<String>,
    /// Only runs of this status.
    #[arg(long, value_enum, value_name = "STATUS")]
    status: Option<Status>,
    /// Only runs created within this long, e.g. `10m`, `2h`, `1d`.
    #[arg(long, value_name = "DURATION", value_parser = stacks::bench::parse_duration)]
    since: Option<Duration>,
    /// Most runs listed (at most 1000).
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
}

/// A run status, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Status {
    Running,
    Completed,
    Failed,
    Cancelled,
    Skipped,
}

impl From<Status> for RunStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Running => Self::Running,
            Status::Completed => Self::Completed,
            Status::Failed => Self::Failed,
            Status::Cancelled => Self::Cancelled,
            Status::Skipped => Self::Skipped,
        }
    }
}

/// `[FILE] RUN_ID`: with one value it is the run, the stack being `-f FILE`
/// or the last `up`'s.
#[derive(Debug, Args)]
struct RunRef {
    /// The stack spec (YAML; default: the last `stackctl up` from here), then the run id;
    /// or only the run id.
    #[arg(value_name = "FILE|RUN_ID")]
    first: String,
    /// The run id, after FILE.
    #[arg(value_name = "RUN_ID")]
    run_id: Option<String>,
    /// The stack spec, as an option.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl RunRef {
    /// The stack file given, if any, and the run id.
    fn split(&self) -> anyhow::Result<(Option<PathBuf>, &str)> {
        match (&self.run_id, &self.file) {
            (Some(_), Some(file)) => anyhow::bail!(
                "the stack is given twice (`{}` and -f {}): pass FILE RUN_ID or -f FILE RUN_ID",
                self.first,
                file.display()
            ),
            (Some(run), None) => Ok((Some(PathBuf::from(&self.first)), run)),
            (None, file) => Ok((file.clone(), &self.first)),
        }
    }
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    run: RunRef,
    /// `failed`: keep the outputs of the steps that completed and run the
    /// failed ones and what follows them; `start`: run every step again.
    #[arg(long, value_enum, default_value_t = FromStep::Failed, value_name = "FROM")]
    from: FromStep,
}

/// Where a replay starts, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FromStep {
    Start,
    Failed,
}

/// Runs `stackctl runs`.
pub async fn run(args: RunsArgs, output: Output) -> anyhow::Result<Exit> {
    match args.command {
        RunsCommand::List(a) => {
            let Some(loaded) = load(a.stack.given().map(PathBuf::from), output).await? else {
                return Ok(Exit::Invalid);
            };
            let opts = ListOptions {
                function: a.function,
                status: a.status.map(RunStatus::from),
                since: a.since,
                limit: usize::from(a.limit),
            };
            let list = stacks::runs::list(&loaded, &opts).await?;
            match output {
                Output::Json => print_result(&list)?,
                Output::Human => print_list(&list)?,
            }
        }
        RunsCommand::Show(r) => {
            let (file, id) = r.split()?;
            let Some(loaded) = load(file, output).await? else {
                return Ok(Exit::Invalid);
            };
            let detail = stacks::runs::show(&loaded, id).await?;
            match output {
                Output::Json => print_result(&detail)?,
                Output::Human => print_detail(&detail)?,
            }
        }
        RunsCommand::Cancel(r) => {
            let (file, id) = r.split()?;
            let Some(loaded) = load(file, output).await? else {
                return Ok(Exit::Invalid);
            };
            let c = stacks::runs::cancel(&loaded, id).await?;
            match output {
                Output::Json => print_result(&c)?,
                Output::Human => print_cancelled(&c)?,
            }
        }
        RunsCommand::Replay(a) => {
            let (file, id) = a.run.split()?;
            let Some(loaded) = load(file, output).await? else {
                return Ok(Exit::Invalid);
            };
            let from = match a.from {
                FromStep::Start => ReplayFrom::Start,
                FromStep::Failed => ReplayFrom::Failed,
            };
            let r = stacks::runs::replay(&loaded, id, from).await?;
            match output {
                Output::Json => print_result(&r)?,
                Output::Human => print_replay(&r, &loaded.path)?,
            }
        }
    }
    Ok(Exit::Ok)
}

/// The stack's spec (`None`: invalid, its problems printed); for an aws
/// stack, after checking there are credentials.
async fn load(
    file: Option<PathBuf>,
    output: Output,
) -> anyhow::Result<Option<stacks::spec::LoadedSpec>> {
    let loaded = match load_stack(file.as_deref(), output)? {
        Ok(l) => l,
        Err(_) => return Ok(None),
    };
    if loaded.spec.provider == stacks::spec::Provider::Aws {
        super::aws_up::require_credentials(&loaded, "runs").await?;
    }
    Ok(Some(loaded))
}

fn print_result<T: serde::Serialize>(report: &T) -> anyhow::Result<()> {
    let mut doc = serde_json::to_value(report)?;
    doc["type"] = "result".into();
    output::print_line(&doc.to_string())?;
    Ok(())
}

/// `1.2 s`, `340 ms`, `2m 05s`.
fn duration(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn via_note(via: &Via) -> String {
    match via {
        Via::Http { .. } => String::new(),
        Via::Task { .. } => format!(" (through {via})"),
    }
}

fn print_list(list: &RunList) -> anyhow::Result<()> {
    if list.runs.is_empty() {
        outln!(
            "no runs match in stack `{}`{}",
            list.stack,
            via_note(&list.via)
        )?;
        return Ok(());
    }
    let rows: Vec<[String; 6]> = list
        .runs
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.function_id.clone(),
                status_str(r.status),
                r.event_name.clone(),
                rfc3339(r.created_at),
                duration(r.duration_ms),
            ]
        })
        .collect();
    let header = ["RUN", "FUNCTION", "STATUS", "EVENT", "CREATED", "DURATION"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    outln!("{}", line(header))?;
    for (row, run) in rows.iter().zip(&list.runs) {
        outln!("{}", line(row.each_ref().map(String::as_str)))?;
        if let Some(error) = &run.error {
            outln!("    {error}")?;
        }
    }
    if list.more {
        outln!("(more runs match: raise --limit or narrow with --since, --status, --function)")?;
    }
    if let Via::Task { .. } = list.via {
        outln!("(read through {})", list.via)?;
    }
    Ok(())
}

fn print_detail(d: &RunDetail) -> anyhow::Result<()> {
    let r = &d.run;
    let mut head = format!(
        "run {} of function `{}`: {}",
        r.id,
        r.function_id,
        status_str(r.status)
    );
    if let Some(error) = &r.error {
        head.push_str(&format!(" ({error})"));
    }
    outln!("{head}")?;
    outln!(
        "  event    {} {} at {}",
        d.event.name,
        d.event.internal_id,
        rfc3339(d.event.ts)
    )?;
    outln!("  data     {}", d.event.data)?;
    match r.ended_at {
        Some(end) => outln!(
            "  created  {}, ended {} ({})",
            rfc3339(r.created_at),
            rfc3339(end),
            duration(r.duration_ms)
        )?,
        None => outln!(
            "  created  {} ({} so far)",
            rfc3339(r.created_at),
            duration(r.duration_ms)
        )?,
    }
    if let Some(trace_id) = &d.trace_id {
        outln!("  trace    {trace_id}")?;
    }
    if d.steps.is_empty() {
        outln!("  no step has started")?;
    }
    for s in &d.steps {
        let status = match s.status {
            StepStatus::Completed => "completed",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::Running => "running",
        };
        let took = s.duration_ms.map(duration).unwrap_or_default();
        let copied = if s.copied {
            "  (outcome copied from the replayed run)"
        } else {
            ""
        };
        outln!(
            "  step {}: {status}, {} attempt{} {took}{copied}",
            s.step_id,
            s.attempts.len(),
            if s.attempts.len() == 1 { "" } else { "s" },
        )?;
        if let Some(out) = &s.output {
            outln!("    output   {out}")?;
        }
        if let Some(error) = &s.error {
            outln!("    error    {error}")?;
        }
        for a in &s.attempts {
            let mut line = format!(
                "    attempt {} at {}, {}",
                a.number,
                rfc3339(a.started_at),
                if a.running {
                    "not ended".to_string()
                } else {
                    duration(a.ended_at.saturating_sub(a.started_at))
                }
            );
            if let Some(host) = &a.host {
                line.push_str(&format!(" on {host}"));
            }
            if let Some(error) = &a.error {
                line.push_str(&format!(": {error}"));
            }
            outln!("{line}")?;
        }
    }
    if let Via::Task { .. } = d.via {
        outln!("(read through {})", d.via)?;
    }
    Ok(())
}

fn print_cancelled(c: &Cancelled) -> anyhow::Result<()> {
    if c.cancelled {
        outln!("run {} cancelled{}", c.id, via_note(&c.via))?;
    } else {
        outln!(
            "run {} had already ended ({}): nothing to cancel",
            c.id,
            status_str(c.status)
        )?;
    }
    Ok(())
}

fn print_replay(r: &ReplayReport, spec: &std::path::Path) -> anyhow::Result<()> {
    let p = &r.replay;
    let from = match p.from {
        ReplayFrom::Start => "from the start",
        ReplayFrom::Failed => "from its failed steps",
    };
    outln!(
        "run {} replays run {} {from}{}",
        p.id,
        p.replay_of,
        via_note(&r.via)
    )?;
    if !p.copied.is_empty() {
        outln!("  kept the outcomes of: {}", p.copied.join(", "))?;
    }
    outln!("  running: {}", p.scheduled.join(", "))?;
    outln!(
        "  follow it with `stackctl runs show {} {}`",
        spec.display(),
        p.id
    )?;
    Ok(())
}
