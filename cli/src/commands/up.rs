//! `stackctl up [FILE]`: brings a stack up and verifies it end to end
//! (`stacks::local::up` for `provider: local`), records the spec as this
//! directory's last `up`, and prints how to send a first event. Also holds
//! what the stack commands share: finding and loading the spec.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use stacks::local::{Launcher, LocalError, UpOptions};
use stacks::spec::{LoadError, LoadedSpec, Provider};

use crate::output::{self, Exit, Output, outln};
use crate::progress::Reporter;

/// Which stack a command acts on: FILE, `-f FILE`, or the last `up` here.
#[derive(Debug, Args)]
pub struct StackFile {
    /// The stack spec (YAML); default: the spec of the last `stackctl up` from this directory.
    #[arg(value_name = "FILE", conflicts_with = "file")]
    spec: Option<PathBuf>,
    /// The stack spec, as an option.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

/// `-f FILE` only, for commands whose positional arguments mean something else.
#[derive(Debug, Args)]
pub struct StackFileFlag {
    /// The stack spec (YAML); default: the spec of the last `stackctl up` from this directory.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl StackFile {
    pub(crate) fn given(&self) -> Option<&Path> {
        self.spec.as_deref().or(self.file.as_deref())
    }
}

/// The spec, loaded; `Err(exit)` when it is invalid (its problems printed).
pub fn load_stack(
    given: Option<&Path>,
    output: Output,
) -> anyhow::Result<Result<LoadedSpec, Exit>> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let path = stacks::stackref::resolve(given, &cwd)?;
    match stacks::spec::load(&path) {
        Ok(loaded) => Ok(Ok(loaded)),
        Err(LoadError::Invalid(errors)) => {
            match output {
                Output::Human => eprint!("{}", errors.render()),
                Output::Json => output::print_json(&errors.to_json())?,
            }
            Ok(Err(Exit::Invalid))
        }
        Err(e) => Err(e.into()),
    }
}

/// Shows the spec's warnings on stderr. With `--output json` they go in the
/// command's JSON document instead (a `warnings` list, as `validate` prints).
pub fn show_warnings(loaded: &LoadedSpec, output: Output) {
    if output == Output::Human {
        eprint!("{}", loaded.warnings.render());
    }
}

/// Loads the stack named by `file`; see [`load_stack`].
pub fn load(file: &StackFile, output: Output) -> anyhow::Result<Result<LoadedSpec, Exit>> {
    load_stack(file.given(), output)
}

/// Refuses stacks of providers this build cannot operate.
pub fn require_local(loaded: &LoadedSpec, verb: &str) -> anyhow::Result<()> {
    match loaded.spec.provider {
        Provider::Local => Ok(()),
        Provider::Aws => anyhow::bail!(
            "`stackctl {verb}` for `provider: aws` stacks is not available in this build: the AWS provider is \
             the subject of issue 3 (`stackctl plan {}` shows the resources it would create); \
             `provider: local` stacks work",
            loaded.path.display()
        ),
    }
}

/// How `up` and `scale` start engine roles: this very binary, `stackctl engine`.
pub fn options() -> anyhow::Result<UpOptions> {
    let program = std::env::current_exe()
        .context("cannot find the stackctl executable to run engine roles")?;
    Ok(UpOptions {
        launcher: Launcher {
            program,
            args: vec!["engine".into()],
        },
        docker_host: std::env::var("DOCKER_HOST").ok(),
    })
}

/// Bring a stack up (or converge it), then verify it end to end.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    stack: StackFile,
    /// (aws stacks) The engine image URI to run instead of the spec's.
    #[arg(long, value_name = "URI")]
    image: Option<String>,
    /// (aws stacks) Break the stack lock left by a crashed `up`/`down` before taking it
    /// (one its holder still renews only with --yes).
    #[arg(long)]
    force_unlock: bool,
    /// (aws stacks) With --force-unlock: break the lock even while its holder still renews
    /// it (you know that holder is dead).
    #[arg(long, short = 'y', requires = "force_unlock")]
    yes: bool,
    /// (aws stacks) Ship this engine binary instead of `cargo build --profile dist -p engine` in the
    /// stackctl workspace, when the engine image is built from source (no --image, no image.uri).
    #[arg(long, value_name = "PATH", env = "STACKCTL_ENGINE_BINARY")]
    engine_binary: Option<PathBuf>,
    /// (aws stacks) Reach the image registry at this URL instead of the ECR repository's host
    /// (e.g. an ECR VPC endpoint); the image keeps the repository's name.
    #[arg(long, value_name = "URL", env = "STACKCTL_REGISTRY_ENDPOINT")]
    registry_endpoint: Option<String>,
    #[command(flatten)]
    wait: super::aws_wait::WaitArgs,
    /// (aws stacks) Skip the end-to-end check (a canary event sent from inside the VPC,
    /// followed until its run completes) after the waits.
    #[arg(long, conflicts_with = "verify")]
    no_verify: bool,
    /// (aws stacks) Run the end-to-end check even when nothing changed (it starts a one-off
    /// ECS task, so a no-op `up` skips it by default and makes no AWS writes).
    #[arg(long)]
    verify: bool,
}

/// Runs `stackctl up`.
pub async fn run(args: UpArgs, output: Output) -> anyhow::Result<Exit> {
    let loaded = match load(&args.stack, output)? {
        Ok(l) => l,
        Err(exit) => return Ok(exit),
    };
    show_warnings(&loaded, output);
    if loaded.spec.provider == Provider::Aws {
        let opts = super::aws_up::AwsUp {
            image: args.image,
            force_unlock: super::aws_up::force_unlock(args.force_unlock, args.yes),
            engine_binary: args.engine_binary,
            registry_endpoint: args.registry_endpoint,
            wait: args.wait,
            verify: if args.no_verify {
                stacks::aws::up::Verify::Never
            } else if args.verify {
                stacks::aws::up::Verify::Always
            } else {
                stacks::aws::up::Verify::IfChanged
            },
        };
        return super::aws_up::run(&loaded, opts, output).await;
    }
    require_local(&loaded, "up")?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // Recorded before starting anything: if `up` fails half-way, `status`
    // and `down` without FILE still find the stack to clean up.
    stacks::stackref::record_last(&cwd, &loaded.path)?;
    let reporter = Reporter::new(output);
    let result = stacks::local::up(&loaded, &options()?, &reporter).await;
    reporter.finish();
    let report = result.map_err(|e| with_hint(e, &loaded))?;
    let ep = &report.endpoints;
    let curl = format!(
        "curl -sS -X POST {}/e/{} -H 'content-type: application/json' -d '{{\"name\":\"{}\",\"data\":{{}}}}'",
        ep.event_api,
        ep.event_key,
        first_event_name(&loaded)
    );
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "type": "result",
                "stack": report.stack,
                "provider": "local",
                "verified": true,
                "event_api": ep.event_api,
                "event_key": ep.event_key,
                "runs_api": ep.runs_api,
                "api_token": ep.api_token,
                "state_dir": report.state_dir,
                "processes": report.processes,
                "changes": report.changes,
                "canary": report.canary,
                "curl": curl,
                "warnings": loaded.warnings.diagnostics,
            });
            outln!("{doc}")?;
        }
        Output::Human => {
            let c = &report.changes;
            outln!(
                "\nstack `{}` is up: {} started, {} restarted, {} kept, {} stopped; canary run completed in {} ms",
                report.stack,
                c.started.len(),
                c.restarted.len(),
                c.kept.len(),
                c.stopped.len(),
                report.canary.millis
            )?;
            outln!("  event API   {}", ep.event_api)?;
            outln!("  event key   {}", ep.event_key)?;
            outln!(
                "  runs API    {} (Authorization: Bearer {})",
                ep.runs_api,
                ep.api_token
            )?;
            outln!("  state       {}", report.state_dir.display())?;
            outln!("\nsend a first event:\n  {curl}")?;
            outln!(
                "then see its runs:\n  curl -sS -H 'Authorization: Bearer {}' {}/events/<id from the answer>/runs",
                ep.api_token,
                ep.runs_api
            )?;
        }
    }
    Ok(Exit::Ok)
}

/// An event name one of the stack's functions is triggered by, for the
/// example `curl`.
fn first_event_name(loaded: &LoadedSpec) -> String {
    loaded
        .function_defs()
        .flat_map(|f| &f.triggers)
        .find_map(|t| match t {
            engine::functions::Trigger::Event { event, .. } => Some(event.clone()),
            engine::functions::Trigger::Cron { .. } => None,
        })
        .unwrap_or_else(|| "demo/hello".into())
}

/// Adds what to do next to errors where it is not obvious.
fn with_hint(err: LocalError, loaded: &LoadedSpec) -> anyhow::Error {
    let hint = match &err {
        LocalError::ProcessExited { .. } | LocalError::Timeout { .. } | LocalError::Canary(_) => {
            Some(format!(
                "the processes were left running for inspection: `stackctl status {0}`, then `stackctl down {0} --yes`",
                loaded.path.display()
            ))
        }
        _ => None,
    };
    let err = anyhow::Error::new(err);
    match hint {
        Some(h) => err.context(format!(
            "`up` of stack `{}` failed ({h})",
            loaded.spec.stack
        )),
        None => err.context(format!("`up` of stack `{}` failed", loaded.spec.stack)),
    }
}
