//! `stackctl up` for `provider: aws` stacks: plans against the live
//! account, stops with zero writes when nothing changed, otherwise takes the
//! stack lock, plans again under it (the state may have moved while we
//! waited) and applies, reporting progress per resource.

use anyhow::Context as _;
use stacks::aws::{self, ApplyOptions, Aws, Inputs, StackLock};
use stacks::graph::Graph;
use stacks::spec::LoadedSpec;

use crate::output::{Exit, Output};
use crate::progress::Reporter;

/// What `up` of an aws stack takes from the command line.
pub struct AwsUp {
    /// The engine image to run instead of the spec's (`--image`).
    pub image: Option<String>,
    /// Break a stale stack lock before taking it (`--force-unlock`).
    pub force_unlock: bool,
    /// The engine binary to ship when the image is built from source
    /// (`--engine-binary`); else a release build in the workspace.
    pub engine_binary: Option<std::path::PathBuf>,
    /// Where the registry is reached, when not at the ECR repository's host
    /// (`--registry-endpoint`).
    pub registry_endpoint: Option<String>,
    /// Whether and how long to wait for readiness (`--no-wait`, `--wait-timeout`).
    pub wait: super::aws_wait::WaitArgs,
    /// Send the canary after the waits (not `--no-verify`).
    pub verify: bool,
    /// Send it even when nothing changed (`--verify`); otherwise a no-op
    /// `up` stays free of AWS writes (the canary's task is one).
    pub verify_unchanged: bool,
}

/// Runs `stackctl up` for an aws stack.
pub async fn run(loaded: &LoadedSpec, opts: AwsUp, output: Output) -> anyhow::Result<Exit> {
    require_credentials(loaded, "up")?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // Recorded before any write: if `up` fails half-way, `status` and
    // `down` without FILE still find the stack.
    stacks::stackref::record_last(&cwd, &loaded.path)?;
    let stack = loaded.spec.stack.clone();
    let graph = Graph::build(loaded)
        .with_context(|| format!("cannot build the resources of stack `{stack}`"))?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .context("cannot load the AWS configuration")?;
    let mut inputs = Inputs::from_spec(&loaded.spec, opts.image);
    // Deploy by digest: build before planning, so the plan compares the
    // digest the task definitions would get (unchanged engine, no change).
    let engine_image = if inputs.builds_image() {
        let built = build_engine_image(loaded, opts.engine_binary.as_deref(), output).await?;
        inputs = inputs.with_built_image(built.manifest_digest.to_string());
        Some(aws::EngineImage {
            image: std::sync::Arc::new(built),
            registry_endpoint: opts.registry_endpoint,
        })
    } else {
        None
    };
    if opts.force_unlock
        && let Some(old) = aws::lock::force_unlock(&aws, &stack)
            .await
            .with_context(|| format!("cannot break the lock of stack `{stack}`"))?
    {
        eprintln!(
            "stackctl: broke the lock of stack `{stack}` held by {} for `{}`",
            old.owner, old.command
        );
    }
    let first = aws::plan(&aws, &graph, &inputs)
        .await
        .with_context(|| format!("cannot read the state of stack `{stack}`"))?;
    // Failures the waits report must be newer than this.
    let since = std::time::SystemTime::now();
    if !first.plan.has_changes() {
        // The task definitions name this digest; make sure the registry
        // still serves it (no AWS write, and none when it does).
        if let Some(engine) = &engine_image
            && let Some(pushed) = aws::publish::ensure_pushed(&aws, &first, engine)
                .await
                .with_context(|| format!("cannot check the engine image of stack `{stack}`"))?
        {
            eprintln!(
                "stackctl: the engine image was missing from its repository; pushed {pushed} again"
            );
        }
        // Up to date is not the same as ready: wait (reads only) before
        // saying so.
        let outputs = first
            .all_observed()
            .iter()
            .map(|(id, o)| (id.clone(), o.outputs.clone()))
            .collect();
        let waited = super::aws_wait::run(
            &aws,
            aws::wait::targets(&graph, &outputs),
            &opts.wait,
            &loaded.spec,
            since,
            output,
        )
        .await?;
        let canary = verify(
            &aws,
            &graph,
            &outputs,
            &loaded.spec,
            opts.verify_unchanged,
            waited.is_some(),
            output,
        )
        .await?;
        // Taking the lock is itself a write: an up-to-date stack gets none.
        print_result(
            &UpResult {
                stack: &stack,
                applied: &[],
                image: first.engine_image(),
                event_api: aws::event_api_url(&graph, &outputs).as_deref(),
                calls: &aws.calls(),
                canary: canary.as_ref(),
            },
            output,
            "is up to date: nothing to change",
        )?;
        print_readiness(
            waited.as_deref(),
            canary.as_ref(),
            "nothing changed; `up --verify` checks anyway",
            output,
        );
        return Ok(Exit::Ok);
    }
    let lock = StackLock::acquire(&aws, &stack, "up", aws::lock::DEFAULT_TTL)
        .await
        .with_context(|| format!("cannot take the lock of stack `{stack}`"))?;
    let reporter = Reporter::new(output);
    let result = async {
        let planned = aws::plan(&aws, &graph, &inputs)
            .await
            .with_context(|| format!("cannot read the state of stack `{stack}`"))?;
        let apply_opts = ApplyOptions {
            engine_image,
            ..ApplyOptions::default()
        };
        aws::apply(&aws, &planned, &apply_opts, &reporter)
            .await
            .with_context(|| format!("`up` of stack `{stack}` failed"))
    }
    .await;
    reporter.finish();
    let released = lock.release().await;
    let report = result?;
    released.with_context(|| format!("cannot release the lock of stack `{stack}`"))?;
    // Waiting only reads, so it does not hold the lock: a `scale` meanwhile
    // is simply part of the state the waits see.
    let waited = super::aws_wait::run(
        &aws,
        aws::wait::targets(&graph, &report.outputs),
        &opts.wait,
        &loaded.spec,
        since,
        output,
    )
    .await?;
    let canary = verify(
        &aws,
        &graph,
        &report.outputs,
        &loaded.spec,
        opts.verify,
        waited.is_some(),
        output,
    )
    .await?;
    let applied: Vec<(String, String)> = report
        .applied
        .iter()
        .map(|(id, action)| (id.to_string(), format!("{action:?}").to_lowercase()))
        .collect();
    print_result(
        &UpResult {
            stack: &stack,
            applied: &applied,
            image: first.engine_image(),
            event_api: aws::event_api_url(&graph, &report.outputs).as_deref(),
            calls: &aws.calls(),
            canary: canary.as_ref(),
        },
        output,
        &format!("is applied: {} resources changed", applied.len()),
    )?;
    print_readiness(waited.as_deref(), canary.as_ref(), "--no-verify", output);
    Ok(Exit::Ok)
}

/// Runs the canary inside the VPC after the waits, unless `--no-verify` or
/// `--no-wait` (nothing is known to be running then).
async fn verify(
    aws: &Aws,
    graph: &Graph,
    outputs: &std::collections::BTreeMap<stacks::graph::LogicalId, aws::Outputs>,
    spec: &stacks::spec::Spec,
    asked: bool,
    waited: bool,
    output: Output,
) -> anyhow::Result<Option<engine::canary::CanaryReport>> {
    if !asked || !waited {
        return Ok(None);
    }
    let reporter = Reporter::new(output);
    let result = aws::canary::run(aws, graph, outputs, spec.timeouts.canary.std(), &reporter).await;
    reporter.finish();
    let report = result.with_context(|| {
        format!(
            "`up` of stack `{}` failed its end-to-end check (the stack is left as it is: \
             `stackctl status`, `stackctl logs SERVICE`; `--no-verify` skips the check)",
            spec.stack
        )
    })?;
    Ok(Some(report))
}

/// Says what was (and was not) verified: the waits and the canary.
fn print_readiness(
    waited: Option<&[aws::wait::Waited]>,
    canary: Option<&engine::canary::CanaryReport>,
    skipped: &str,
    output: Output,
) {
    if output != Output::Human {
        return;
    }
    match waited {
        Some(waited) => {
            for w in waited {
                println!("  ready: {}: {}", w.what, w.state);
            }
            match canary {
                Some(c) => println!(
                    "  verified end to end: canary run {} completed in {} ms (from inside the VPC)",
                    c.run_id, c.millis
                ),
                None => println!("  not verified end to end ({skipped})"),
            }
        }
        None => println!(
            "  not waited (--no-wait): services, executors and Redis may still be starting; \
             `stackctl status` shows their state"
        ),
    }
}

/// Builds the engine image from `--engine-binary`, or with cargo in the
/// stackctl workspace holding the spec (or the current directory).
pub async fn build_engine_image(
    loaded: &LoadedSpec,
    binary: Option<&std::path::Path>,
    output: Output,
) -> anyhow::Result<stacks::image::BuiltImage> {
    let spec_dir = loaded
        .path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // Outside a workspace, ship the engine this very binary contains.
    let running = std::env::current_exe().ok();
    let source = aws::EngineSource::find(binary, &[&spec_dir, &cwd], running.as_deref())?;
    let reporter = Reporter::new(output);
    let what = match &source {
        aws::EngineSource::Binary(p) => format!("build engine image from {}", p.display()),
        aws::EngineSource::Running(p) => format!(
            "build engine image from this stackctl ({}), which contains the engine",
            p.display()
        ),
        aws::EngineSource::Workspace(d) => format!(
            "build engine image (cargo build --profile dist -p engine in {})",
            d.display()
        ),
    };
    stacks::local::Progress::start(&reporter, "ecr.engine.build", &what);
    let built = tokio::task::spawn_blocking(move || aws::publish::build(&source))
        .await
        .context("the image build task failed")?;
    match &built {
        Ok(image) => stacks::local::Progress::ok(
            &reporter,
            "ecr.engine.build",
            &format!("built {}", image.manifest_digest),
        ),
        Err(e) => stacks::local::Progress::fail(&reporter, "ecr.engine.build", &e.to_string()),
    }
    reporter.finish();
    built.context("cannot build the engine image")
}

/// Refuses to go on without configured AWS credentials: otherwise the SDK
/// would probe the instance metadata service of whatever machine this is.
pub fn require_credentials(loaded: &LoadedSpec, verb: &str) -> anyhow::Result<()> {
    if aws::context::credentials_configured() {
        return Ok(());
    }
    anyhow::bail!(
        "`stackctl {verb}` of `provider: aws` stack `{}` needs AWS credentials: none are configured \
         (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials); \
         `stackctl plan {} --offline` works without them",
        loaded.spec.stack,
        loaded.path.display()
    )
}

/// What `up` of an aws stack did, for its result line.
struct UpResult<'a> {
    stack: &'a str,
    /// (resource, action) of each change applied.
    applied: &'a [(String, String)],
    image: Option<&'a str>,
    event_api: Option<&'a str>,
    calls: &'a aws::CallCounts,
    /// The canary's run, when `up` verified the stack.
    canary: Option<&'a engine::canary::CanaryReport>,
}

fn print_result(r: &UpResult<'_>, output: Output, human: &str) -> anyhow::Result<()> {
    let UpResult {
        stack,
        applied,
        image,
        event_api,
        calls,
        canary,
    } = *r;
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "type": "result",
                "stack": stack,
                "provider": "aws",
                "applied": applied.iter().map(|(id, a)| serde_json::json!({"resource": id, "action": a})).collect::<Vec<_>>(),
                "verified": canary.is_some(),
                "canary": canary,
                "image": image,
                "event_api": event_api,
                // What this command cost in AWS API operations (retries not counted).
                "aws_calls": {"reads": calls.reads, "writes": calls.writes},
            });
            println!("{doc}");
        }
        Output::Human => {
            println!("\nstack `{stack}` {human}");
            if let Some(image) = image {
                println!("  engine image {image}");
            }
            if let Some(url) = event_api {
                println!("  event API    {url}");
            }
        }
    }
    Ok(())
}
