//! Applying a plan: a dependency-graph executor with bounded parallelism.
//! A resource starts as soon as everything it depends on is done (its
//! placeholders then resolve from their real outputs); among ready
//! resources the graph's apply order decides, which starts ElastiCache
//! (the slowest) first. A failure stops new work from starting, lets the
//! running actions finish, and every failure is reported.
//!
//! When the engine image is built from source, pushing it is one more node
//! of the graph: after the ECR repository, before every resource that runs
//! the image (task definitions, the launch template's user data).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tokio::task::JoinSet;

use super::context::Aws;
use super::error::{AwsError, Result, Subject};
use super::kinds::{self, Ctx, Work};
use super::plan::{AwsPlan, ecr_repository_uri};
use super::publish::{self, EngineImage};
use super::resolve::{self, Outputs, Resolver};
use super::secrets;
use crate::graph::plan::Action;
use crate::graph::{LogicalId, Resource, placeholder};
use crate::progress::Progress;

/// How `apply` runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Actions in flight at once.
    pub parallelism: usize,
    /// The engine image built from source: pushed to the stack's ECR
    /// repository before anything that runs it is created or changed.
    pub engine_image: Option<EngineImage>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            parallelism: 6,
            engine_image: None,
        }
    }
}

/// The logical id of the image push in the apply graph (and in progress).
pub const IMAGE_PUSH_ID: &str = "ecr.engine.image";
/// The stack's ECR repository.
const REPOSITORY_ID: &str = "ecr.engine";

/// Whether a resource runs the engine image (refers to `${context:image}`).
fn runs_engine_image(r: &Resource) -> bool {
    r.attributes
        .to_value()
        .to_string()
        .contains(&placeholder::context("image"))
}

/// What `apply` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// The resources acted on, in completion order.
    pub applied: Vec<(LogicalId, Action)>,
    /// Every resource's outputs after applying (`arn`, `id`, ...).
    pub outputs: BTreeMap<LogicalId, Outputs>,
    /// The engine image pushed (`repo@sha256:...`), when one was.
    pub image: Option<String>,
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Delete => "delete",
        Action::NoChange => "keep",
    }
}

fn done(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace => "replaced",
        Action::Delete => "deleted",
        Action::NoChange => "unchanged",
    }
}

/// Carries out `plan`. Resources with no change are not touched (no
/// write call at all), so applying an up-to-date stack writes nothing.
pub async fn apply(
    aws: &Aws,
    plan: &AwsPlan,
    opts: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport> {
    let ctx = Ctx {
        aws: aws.clone(),
        stack: plan.graph.stack.clone(),
        env: plan.env.clone(),
    };
    let push_id = LogicalId::new(IMAGE_PUSH_ID);
    let repo_id = LogicalId::new(REPOSITORY_ID);
    let mut report = ApplyReport {
        image: None,
        applied: Vec::new(),
        outputs: plan
            .observed
            .iter()
            .map(|(id, o)| (id.clone(), o.outputs.clone()))
            .collect(),
    };
    if !plan.plan.has_changes() {
        return Ok(report);
    }
    let redis = secrets::redis_requiring_token(&plan.observed);
    let secrets = secrets::load(aws, &plan.graph, &plan.inputs, true, redis.as_deref()).await?;

    let changes: BTreeMap<&LogicalId, Action> = plan
        .plan
        .changes
        .iter()
        .map(|c| (&c.resource.id, c.action))
        .collect();
    // Position in the graph's apply order: the tie-break among ready work.
    let mut order: BTreeMap<&LogicalId, usize> = plan
        .graph
        .apply_order()
        .into_iter()
        .enumerate()
        .map(|(i, r)| (&r.id, i))
        .collect();
    let todo: BTreeSet<&LogicalId> = changes
        .iter()
        .filter(|(_, a)| !matches!(a, Action::NoChange | Action::Delete))
        .map(|(id, _)| *id)
        .collect();
    let mut waiting: BTreeMap<&LogicalId, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&LogicalId, Vec<&LogicalId>> = BTreeMap::new();
    for id in &todo {
        let r = plan
            .graph
            .get(id)
            .expect("planned resources are in the graph");
        let deps: Vec<&LogicalId> = r.dependencies.iter().filter(|d| todo.contains(d)).collect();
        waiting.insert(id, deps.len());
        for d in deps {
            dependents.entry(d).or_default().push(id);
        }
    }
    // The push: only when something that runs the image changes (an
    // unchanged digest leaves every task definition as it is).
    let image_users: Vec<&LogicalId> = todo
        .iter()
        .copied()
        .filter(|id| plan.graph.get(id).is_some_and(runs_engine_image))
        .collect();
    let repo = plan.graph.get(&repo_id);
    let push = opts
        .engine_image
        .as_ref()
        .zip(repo)
        .filter(|_| !image_users.is_empty());
    if push.is_some() {
        order.insert(&push_id, order.get(&repo_id).copied().unwrap_or(0));
        let repo_pending = todo.get(&repo_id).copied();
        waiting.insert(&push_id, usize::from(repo_pending.is_some()));
        if let Some(repo_ref) = repo_pending {
            dependents.entry(repo_ref).or_default().push(&push_id);
        }
        for user in &image_users {
            *waiting.get_mut(user).expect("image users are planned") += 1;
            dependents.entry(&push_id).or_default().push(user);
        }
    }
    let mut ready: BTreeSet<(usize, &LogicalId)> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| (order[id], *id))
        .collect();

    let mut failures: Vec<AwsError> = Vec::new();
    let mut running: JoinSet<(LogicalId, Action, Result<Outputs>)> = JoinSet::new();
    let parallelism = opts.parallelism.max(1);
    loop {
        while failures.is_empty() && running.len() < parallelism {
            let Some((_, id)) = ready.pop_first() else {
                break;
            };
            // No write once the stack lock is lost: another command may
            // be changing the stack now.
            if let Err(e) = super::lock::check_held() {
                progress.fail(id.as_str(), &e.to_string());
                failures.push(e);
                break;
            }
            if *id == push_id
                && let Some((engine, repo)) = push
            {
                let uri = ecr_repository_uri(&plan.env, &repo.name);
                let key = id.to_string();
                progress.start(
                    &key,
                    &format!("push engine image {} to {uri}", engine.digest()),
                );
                let (aws, engine, id) = (aws.clone(), engine.clone(), id.clone());
                let subject = Subject::new(&repo.id, &repo.name);
                running.spawn(async move {
                    let pushed = publish::push(&aws, &subject, &uri, &engine)
                        .await
                        .map(|pushed| kinds::outputs([("reference", pushed.reference)]));
                    (id, Action::Create, pushed)
                });
                continue;
            }
            let desired = plan
                .graph
                .get(id)
                .expect("planned resources are in the graph");
            let action = changes[id];
            let resolver = Resolver {
                env: &plan.env,
                ami: plan.ami.as_deref(),
                image: plan.image.clone(),
                architecture: plan.architecture,
                secrets: &secrets,
                outputs: &report.outputs,
                pending: &BTreeMap::new(),
                strict: true,
            };
            let key = id.to_string();
            let what = format!("{} {} {}", verb(action), desired.kind.label(), desired.name);
            progress.start(&key, &what);
            let resolved = match resolver.resolve(desired) {
                Ok(r) => r,
                Err(e) => {
                    progress.fail(&key, &e.to_string());
                    failures.push(e);
                    break;
                }
            };
            // Compare against what the plan compared: normalized, with the
            // fields AWS does not report taken as desired.
            let observed = plan.observed.get(id).cloned().map(|mut o| {
                resolve::normalize(&mut o.resource.attributes);
                resolve::carry_unobservable(&resolved.attributes, &mut o.resource.attributes);
                if !o.tags_reported {
                    o.resource.tags.clone_from(&resolved.tags);
                }
                o
            });
            let work = Work {
                action,
                desired: resolved,
                observed,
            };
            let ctx = ctx.clone();
            let id = id.clone();
            running.spawn(async move {
                let result = kinds::apply(&ctx, &work).await;
                (id, action, result)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (id, action, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                failures.push(AwsError::Config(format!("an apply task failed: {e}")));
                continue;
            }
        };
        let key = id.to_string();
        match result {
            Ok(outputs) => {
                let id_ref: &LogicalId = if id == push_id {
                    progress.ok(&key, "pushed");
                    report.image = outputs.get("reference").cloned();
                    &push_id
                } else {
                    progress.ok(&key, done(action));
                    report.outputs.insert(id.clone(), outputs);
                    report.applied.push((id.clone(), action));
                    todo.get(&id).expect("applied resources were planned")
                };
                for dependent in dependents.get(id_ref).into_iter().flatten() {
                    let n = waiting.get_mut(dependent).expect("dependents are planned");
                    *n -= 1;
                    if *n == 0 {
                        ready.insert((order[dependent], dependent));
                    }
                }
            }
            Err(e) => {
                progress.fail(&key, &e.to_string());
                failures.push(e);
            }
        }
    }
    // Deleting what the spec no longer has is `down`'s machinery (part 2).
    for c in plan
        .plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
    {
        failures.push(AwsError::Unsupported {
            subject: Subject::new(&c.resource.id, &c.resource.name),
            action: "delete",
            kind: c.resource.kind.label(),
        });
    }
    if failures.is_empty() {
        Ok(report)
    } else if failures.len() == 1 {
        Err(failures.remove(0))
    } else {
        Err(AwsError::Failed(failures))
    }
}
