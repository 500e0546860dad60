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
}

/// Runs `stackctl up` for an aws stack.
pub async fn run(loaded: &LoadedSpec, opts: AwsUp, output: Output) -> anyhow::Result<Exit> {
    require_credentials(loaded, "up")?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // Recorded before any write: if `up` fails half-way, `status` and
    // `down` without FILE still find the stack.
    stacks::stackref::record_last(&cwd, &loaded.path)?;
    let stack = loaded.spec.stack.clone();
    let graph = Graph::build(&loaded.spec)
        .with_context(|| format!("cannot build the resources of stack `{stack}`"))?;
    let aws = Aws::load(loaded.spec.region.as_deref())
        .await
        .context("cannot load the AWS configuration")?;
    let inputs = Inputs::from_spec(&loaded.spec, opts.image);
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
    if !first.plan.has_changes() {
        // Taking the lock is itself a write: an up-to-date stack gets none.
        print_result(&stack, &[], output, "is up to date: nothing to change")?;
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
        aws::apply(&aws, &planned, &ApplyOptions::default(), &reporter)
            .await
            .with_context(|| format!("`up` of stack `{stack}` failed"))
    }
    .await;
    reporter.finish();
    let released = lock.release().await;
    let report = result?;
    released.with_context(|| format!("cannot release the lock of stack `{stack}`"))?;
    let applied: Vec<(String, String)> = report
        .applied
        .iter()
        .map(|(id, action)| (id.to_string(), format!("{action:?}").to_lowercase()))
        .collect();
    print_result(
        &stack,
        &applied,
        output,
        &format!("is applied: {} resources changed", applied.len()),
    )?;
    // Nothing here waits for services to become healthy or runs the canary:
    // say so rather than claim the stack is verified.
    if output == Output::Human {
        println!(
            "  not verified: this build does not yet wait for ECS services, instances or Redis to become ready, \
             nor send a canary event; check with the AWS console or `aws ecs describe-services`"
        );
    }
    Ok(Exit::Ok)
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

fn print_result(
    stack: &str,
    applied: &[(String, String)],
    output: Output,
    human: &str,
) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "type": "result",
                "stack": stack,
                "provider": "aws",
                "applied": applied.iter().map(|(id, a)| serde_json::json!({"resource": id, "action": a})).collect::<Vec<_>>(),
                "verified": false,
            });
            println!("{doc}");
        }
        Output::Human => println!("\nstack `{stack}` {human}"),
    }
    Ok(())
}
