//! One module per command; each parses its own arguments and calls the
//! `stacks` library. Commands return the exit code; errors go up to `main`.

mod image;
mod init;
mod plan;
mod schema;
mod validate;
// local stack verbs (and the hidden `engine` the local provider runs)
mod aws_down;
mod aws_scale;
mod aws_status;
mod aws_up;
mod aws_wait;
mod bench;
mod cost;
mod dlq;
mod down;
pub mod engine;
mod logs;
mod runs;
mod scale;
mod status;
mod up;

use clap::Subcommand;

use crate::output::{Exit, Output};

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build (and push) the engine's container image, without a Docker daemon.
    Image(image::ImageArgs),
    /// Check a stack spec and its functions; print every error with its place and fix.
    Validate(validate::ValidateArgs),
    /// Write a commented starter stack spec.
    Init(init::InitArgs),
    /// Print the JSON Schema of stack specs.
    Schema(schema::SchemaArgs),
    /// Show the AWS resources a spec implies and what `up` would change.
    Plan(plan::PlanArgs),
    /// Estimate what an aws stack costs a month, line by line, from a price table.
    Cost(cost::CostArgs),
    /// Bring a stack up (or converge it) and verify it end to end.
    Up(up::UpArgs),
    /// Show the stack's processes, their health and the counts by service.
    Status(status::StatusArgs),
    /// Take the stack down: stop a local stack (data kept unless --purge), delete an aws stack.
    Down(down::DownArgs),
    /// Set how many processes (tasks, instances) a service runs: event-api, runner or executors.
    Scale(scale::ScaleArgs),
    /// Show a service's logs from CloudWatch Logs (aws stacks); -F follows.
    Logs(logs::LogsArgs),
    /// Show what is in the stack's dead-letter queues, or move it back (--redrive).
    Dlq(dlq::DlqArgs),
    /// List, show, cancel and replay the stack's runs (local and aws stacks).
    Runs(runs::RunsArgs),
    /// Load-test the event API (fixed arrival rate or maximum throughput), k6-style summary.
    Bench(Box<bench::BenchArgs>),
    /// Run engine roles in this process (started by the local provider).
    #[command(hide = true)]
    Engine(engine::EngineArgs),
}

/// Runs one command.
pub async fn run(command: Command, output: Output) -> anyhow::Result<Exit> {
    match command {
        Command::Image(args) => image::run(args, output).await,
        Command::Validate(args) => validate::run(args, output),
        Command::Init(args) => init::run(args, output),
        Command::Schema(args) => schema::run(args, output),
        Command::Plan(args) => plan::run(args, output).await,
        Command::Cost(args) => cost::run(args, output).await,
        Command::Up(args) => up::run(args, output).await,
        Command::Status(args) => status::run(args, output).await,
        Command::Down(args) => down::run(args, output).await,
        Command::Scale(args) => scale::run(args, output).await,
        Command::Logs(args) => logs::run(args, output).await,
        Command::Bench(args) => bench::run(*args, output).await,
        Command::Dlq(args) => dlq::run(args, output).await,
        Command::Runs(args) => runs::run(args, output).await,
        // `main` runs it before starting a runtime; reaching here is a bug in main.
        Command::Engine(_) => anyhow::bail!("`stackctl engine` must be dispatched by main"),
    }
}
