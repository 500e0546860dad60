//! `down`: deleting a stack's resources in reverse dependency order, with
//! bounded parallelism, then sweeping every service for what is left.
//!
//! 1. **Observe** every resource the stack has or could have left behind
//!    (the graph plus the plan's other candidates), by deterministic name.
//!    A resource with the stack's name but without its `stackctl:stack` tag
//!    is *refused*: never touched, reported. Untaggable resources (inline
//!    policies, scaling policies and targets) are the stack's only when the
//!    parent they belong to was found and is the stack's.
//! 2. **Delete** in reverse dependency order: a resource goes once
//!    everything that depends on it is gone (the graph's edges, and for
//!    resources no longer in the graph an order by kind). Dependency errors
//!    (`DependencyViolation`, `ResourceInUse`, `DeleteConflict`, an
//!    ElastiCache group in a transitional state, ...) and throttling left
//!    over after the SDK's own retries are retried with backoff until the
//!    wait deadline. Deletions that later ones need are waited for (ECS
//!    services INACTIVE before the cluster, the Auto Scaling group gone
//!    before its launch template and instance profile, the replication
//!    group gone before its subnet group and security group).
//! 3. A deletion AWS accepted but had not finished by the deadline is
//!    **in progress**, not a failure; whatever waits for it is **pending**
//!    and counts as left over (a later `down` finishes it).
//! 4. The stack's SSM parameters (secrets, lock-break markers)
//!    are deleted; the lock itself is released last, by its holder.
//! 5. The [`sweep`](super::sweep) lists every service by tag and name and
//!    reports what remains.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::context::Aws;
use super::error::{AwsError, Class, Result, Subject};
use super::kinds::{self, Ctx, Deleted, Observed, Target};
use super::sweep::{self, SweepReport};
use crate::graph::{Attributes, Graph, Kind, LogicalId, TAG_STACK};
use crate::progress::Progress;

/// Reads in flight at once while observing.
const READ_PARALLELISM: usize = 8;
/// First and longest pause between retries of a dependency error.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// How `down` runs.
#[derive(Debug, Clone)]
pub struct DownOptions {
    /// Deletions in flight at once.
    pub parallelism: usize,
    /// How long one resource may take: waiting for it to be gone, and
    /// retrying dependency errors while what uses it goes away.
    pub wait_timeout: Duration,
}

impl Default for DownOptions {
    fn default() -> Self {
        Self {
            parallelism: 6,
            wait_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// One resource `down` acted on or reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Logical id (`sqs.events`).
    pub id: String,
    /// Kind label.
    pub kind: String,
    /// Physical name.
    pub name: String,
    /// Why it is listed here (empty for plain deletions).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What `down` did and what is left.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    /// The stack.
    pub stack: String,
    /// Deleted (and gone), in completion order.
    pub deleted: Vec<Item>,
    /// Found, but gone by the time it was deleted.
    pub already_gone: Vec<Item>,
    /// Deletion accepted, still running at the deadline (e.g. ElastiCache
    /// `deleting`): not left over, it finishes by itself.
    pub in_progress: Vec<Item>,
    /// Not deleted because what it waits for is in progress or failed.
    pub pending: Vec<Item>,
    /// Deleting failed.
    pub failed: Vec<Item>,
    /// Has the stack's name but not its tag: left alone.
    pub refused: Vec<Item>,
    /// SSM parameters of the stack deleted (secrets, lock-break markers).
    pub parameters_deleted: Vec<String>,
    /// What the sweep found afterwards.
    pub sweep: SweepReport,
}

impl DownReport {
    /// Whether nothing of the stack remains (deletions still in progress
    /// aside). A service the sweep could not list may hold anything: not
    /// clean.
    pub fn clean(&self) -> bool {
        self.sweep.clean()
            && self.pending.is_empty()
            && self.failed.is_empty()
            && self.refused.is_empty()
    }
}

fn item(o: &Observed, reason: impl Into<String>) -> Item {
    Item {
        id: o.resource.id.to_string(),
        kind: o.resource.kind.label().to_string(),
        name: o.resource.name.clone(),
        reason: reason.into(),
    }
}

/// Whether an error means "something still uses it; try again later".
/// EC2 says so for a security group still attached to a network interface
/// with `InvalidGroup.InUse`, or `InvalidParameterValue`/`DependencyViolation`.
pub(crate) fn retry_later(e: &AwsError) -> bool {
    match e {
        AwsError::Api {
            class: Class::Dependency | Class::Retryable,
            ..
        } => true,
        AwsError::Api { code, message, .. } => {
            let m = message.to_ascii_lowercase();
            matches!(code.as_str(), "InvalidGroup.InUse" | "CannotDelete")
                || (code == "InvalidParameterValue"
                    && (m.contains("in use") || m.contains("dependent") || m.contains("attached")))
                || (code == "InvalidParameterException" && m.contains("in use"))
        }
        _ => false,
    }
}

/// For each resource, everything it (transitively) depends on in the
/// graph. Security groups referring to each other are not an order: the
/// referring rules are revoked when the referred group is deleted.
fn ancestors(graph: &Graph) -> BTreeMap<LogicalId, BTreeSet<LogicalId>> {
    let mut out: BTreeMap<LogicalId, BTreeSet<LogicalId>> = BTreeMap::new();
    // Insertion order puts dependencies first.
    for r in graph.resources() {
        let mut set = BTreeSet::new();
        for d in &r.dependencies {
            let dep = graph.get(d).expect("dependencies are in the graph");
            if r.kind == Kind::SecurityGroup && dep.kind == Kind::SecurityGroup {
                continue;
            }
            set.insert(d.clone());
            set.extend(out.get(d).cloned().unwrap_or_default());
        }
        out.insert(r.id.clone(), set);
    }
    out
}

/// Why an untaggable resource is (or is not) the stack's: it belongs to a
/// parent that was found with the stack's tag.
fn owned_through_parent(
    o: &Observed,
    found: &BTreeMap<LogicalId, Observed>,
    stack: &str,
) -> std::result::Result<(), String> {
    let has = |kind: Kind, name: &str| {
        found
            .values()
            .any(|f| f.resource.kind == kind && f.resource.name == name)
    };
    let ecs_owner = |resource_id: &str| {
        // `service/{cluster}/{service}`
        let mut parts = resource_id.split('/').skip(1);
        let (cluster, service) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        cluster == stack && (has(Kind::EcsService, service) || has(Kind::EcsCluster, cluster))
    };
    let ok = match &o.resource.attributes {
        Attributes::IamRolePolicy(p) => has(Kind::IamRole, &p.role_name),
        Attributes::ScalableTarget(t) => ecs_owner(&t.resource_id),
        Attributes::ScalingPolicy(p) if o.resource.kind == Kind::AsgScalingPolicy => {
            has(Kind::AutoScalingGroup, &p.target)
        }
        Attributes::ScalingPolicy(p) => ecs_owner(&p.target),
        _ => o.resource.tags.get(TAG_STACK).map(String::as_str) == Some(stack),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cannot prove it is the stack's: AWS cannot tag a {} and the stack's {} was not found",
            o.resource.kind.label(),
            match o.resource.kind {
                Kind::IamRolePolicy => "role",
                Kind::AsgScalingPolicy => "Auto Scaling group",
                _ => "ECS service or cluster",
            }
        ))
    }
}

/// Everything found, split into the stack's resources and refusals.
struct Found {
    ours: BTreeMap<LogicalId, Observed>,
    refused: Vec<Item>,
    failed: Vec<Item>,
}

async fn observe(ctx: &Ctx, graph: &Graph) -> Found {
    let mut targets: Vec<Target> = graph
        .resources()
        .iter()
        .map(|r| Target {
            id: r.id.clone(),
            kind: r.kind,
            name: r.name.clone(),
        })
        .collect();
    targets.extend(
        super::plan::candidates(&graph.stack)
            .into_iter()
            .filter(|c| graph.get(&c.id).is_none()),
    );
    let limit = Arc::new(Semaphore::new(READ_PARALLELISM));
    let mut set = JoinSet::new();
    for t in targets {
        let ctx = ctx.clone();
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let found = kinds::read(&ctx, &t).await;
            (t, found)
        });
    }
    let mut found = Found {
        ours: BTreeMap::new(),
        refused: Vec::new(),
        failed: Vec::new(),
    };
    let mut all = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        let (t, result) = joined.expect("observe tasks do not panic");
        let as_item = |reason: String| Item {
            id: t.id.to_string(),
            kind: t.kind.label().to_string(),
            name: t.name.clone(),
            reason,
        };
        match result {
            Ok(Some(o)) => {
                all.insert(t.id.clone(), o);
            }
            Ok(None) => {}
            Err(e @ AwsError::NotOurs { .. }) => found.refused.push(as_item(e.to_string())),
            Err(e) => found.failed.push(as_item(format!("cannot read it: {e}"))),
        }
    }
    for (id, o) in &all {
        let checked = if o.resource.kind.taggable() && o.tags_reported {
            // `kinds::read` refused foreign tags already.
            Ok(())
        } else {
            owned_through_parent(o, &all, &ctx.stack)
        };
        match checked {
            Ok(()) => {
                found.ours.insert(id.clone(), o.clone());
            }
            Err(reason) => found.refused.push(item(o, reason)),
        }
    }
    found.refused.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// Deletes one resource, retrying dependency errors with backoff until
/// `deadline`.
async fn delete_one(
    ctx: &Ctx,
    o: &Observed,
    deadline: Instant,
    notes: &mpsc::UnboundedSender<String>,
) -> Result<Deleted> {
    let key = o.resource.id.to_string();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match kinds::delete(ctx, o, deadline).await {
            Err(e) if retry_later(&e) && Instant::now() + backoff < deadline => {
                // The receiver lives as long as `down`; a send cannot fail
                // while anyone listens.
                let _ = notes.send(format!(
                    "{key}: retrying in {}s: {e}",
                    backoff.as_secs_f32()
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// Deletes the stack's SSM parameters under `/stackctl/{stack}/` that carry
/// its tag, except `keep` (the lock, released by its holder).
async fn delete_parameters(
    aws: &Aws,
    stack: &str,
    keep: &[String],
) -> Result<(Vec<String>, Vec<Item>)> {
    let mut deleted = Vec::new();
    let mut refused = Vec::new();
    for p in sweep::parameters(aws, stack).await? {
        if keep.contains(&p.name) {
            continue;
        }
        super::lock::check_held()?;
        if p.tags.get(TAG_STACK).map(String::as_str) != Some(stack) {
            refused.push(Item {
                id: "ssm.parameter".into(),
                kind: "SSM parameter".into(),
                name: p.name.clone(),
                reason: format!("not tagged `{TAG_STACK}={stack}`: left alone"),
            });
            continue;
        }
        let gone = aws
            .ssm()
            .delete_parameter()
            .name(&p.name)
            .send()
            .await
            .map_err(|e| AwsError::api(Subject::other("parameter", &p.name), "DeleteParameter", e));
        match gone {
            Ok(_) => deleted.push(p.name),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok((deleted, refused))
}

/// Deletes everything of `graph`'s stack that exists (and is the stack's),
/// then sweeps. Errors of single resources do not stop the others: they
/// are in the report, whose [`DownReport::clean`] says whether anything
/// remains. `Err` is for failures that prevent `down` as a whole (no
/// account access).
pub async fn down(
    aws: &Aws,
    graph: &Graph,
    opts: &DownOptions,
    progress: &dyn Progress,
) -> Result<DownReport> {
    let env = aws.env().await?.clone();
    let stack = graph.stack.clone();
    let ctx = Ctx {
        aws: aws.clone(),
        stack: stack.clone(),
        env,
    };
    let mut report = DownReport {
        stack: stack.clone(),
        ..DownReport::default()
    };
    let found = observe(&ctx, graph).await;
    for r in &found.refused {
        progress.info(&format!("left alone: {} {} — {}", r.kind, r.name, r.reason));
    }
    report.refused = found.refused;
    report.failed = found.failed;
    let ours = found.ours;

    // Who must be gone before whom: `blockers[a]` are deleted before `a`.
    let ancestors = ancestors(graph);
    let mut blockers: BTreeMap<&LogicalId, BTreeSet<&LogicalId>> = BTreeMap::new();
    for a in ours.keys() {
        let mut set = BTreeSet::new();
        for b in ours.keys().filter(|b| *b != a) {
            let ka = ours[a].resource.kind;
            let kb = ours[b].resource.kind;
            let before = match (graph.get(a), graph.get(b)) {
                (Some(_), Some(_)) => ancestors.get(b).is_some_and(|s| s.contains(a)),
                // One of them is not in the graph: order by kind.
                _ => kb.info().teardown_rank < ka.info().teardown_rank,
            };
            if before {
                set.insert(b);
            }
        }
        blockers.insert(a, set);
    }
    // Start the slowest deletions first among those ready.
    let start_rank = |id: &LogicalId| match ours[id].resource.kind {
        Kind::ElastiCacheReplicationGroup | Kind::MemoryDbCluster => 0,
        Kind::EcsService | Kind::AutoScalingGroup => 1,
        _ => 2,
    };
    let mut done: BTreeSet<&LogicalId> = BTreeSet::new();
    let mut stuck: BTreeMap<&LogicalId, String> = BTreeMap::new();
    let mut started: BTreeSet<&LogicalId> = BTreeSet::new();
    let mut running: JoinSet<(LogicalId, Result<Deleted>)> = JoinSet::new();
    let (notes_tx, mut notes_rx) = mpsc::unbounded_channel::<String>();
    let parallelism = opts.parallelism.max(1);
    loop {
        let mut ready: Vec<&LogicalId> = blockers
            .iter()
            .filter(|(id, bs)| !started.contains(*id) && bs.iter().all(|b| done.contains(b)))
            .map(|(id, _)| *id)
            .collect();
        ready.sort_by_key(|id| (start_rank(id), (*id).clone()));
        for id in ready {
            if running.len() >= parallelism {
                break;
            }
            // No deletion once the stack lock is lost.
            super::lock::check_held()?;
            started.insert(id);
            let o = ours[id].clone();
            progress.start(
                id.as_str(),
                &format!("delete {} {}", o.resource.kind.label(), o.resource.name),
            );
            let ctx = ctx.clone();
            let deadline = Instant::now() + opts.wait_timeout;
            let task_id = id.clone();
            let notes = notes_tx.clone();
            running.spawn(async move {
                let result = delete_one(&ctx, &o, deadline, &notes).await;
                (task_id, result)
            });
        }
        let joined = loop {
            tokio::select! {
                Some(note) = notes_rx.recv() => progress.info(&note),
                joined = running.join_next() => break joined,
            }
        };
        let Some(joined) = joined else {
            break;
        };
        let (id, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                report.failed.push(Item {
                    id: "down".into(),
                    kind: String::new(),
                    name: String::new(),
                    reason: format!("a delete task failed: {e}"),
                });
                continue;
            }
        };
        let key = ours
            .get_key_value(&id)
            .map(|(k, _)| k)
            .expect("deleted resources were found");
        let o = &ours[key];
        match result {
            Ok(Deleted::Gone) => {
                progress.ok(
                    key.as_str(),
                    &format!("deleted {} {}", o.resource.kind.label(), o.resource.name),
                );
                report.deleted.push(item(o, ""));
                done.insert(key);
            }
            Ok(Deleted::AlreadyGone) => {
                progress.ok(
                    key.as_str(),
                    &format!(
                        "{} {} was already gone",
                        o.resource.kind.label(),
                        o.resource.name
                    ),
                );
                report.already_gone.push(item(o, ""));
                done.insert(key);
            }
            Ok(Deleted::InProgress(state)) => {
                let why = format!(
                    "deletion accepted; still `{state}` after {}s (it finishes by itself)",
                    opts.wait_timeout.as_secs()
                );
                progress.ok(
                    key.as_str(),
                    &format!("{} {}: {why}", o.resource.kind.label(), o.resource.name),
                );
                report.in_progress.push(item(o, why.clone()));
                stuck.insert(key, format!("waits for {key} ({state})"));
            }
            Err(e) => {
                progress.fail(key.as_str(), &e.to_string());
                report.failed.push(item(o, e.to_string()));
                stuck.insert(key, format!("waits for {key}, whose deletion failed"));
            }
        }
    }
    // Whatever never started waits for something in progress or failed.
    for (id, bs) in &blockers {
        if started.contains(id) {
            continue;
        }
        let mut why: Vec<String> = bs.iter().filter_map(|b| stuck.get(b).cloned()).collect();
        if why.is_empty() {
            why.push("waits for resources that were not deleted".into());
        }
        let o = &ours[*id];
        let reason = format!("not deleted: {}; run `stackctl down` again", why.join(", "));
        progress.info(&format!(
            "pending: {} {} — {reason}",
            o.resource.kind.label(),
            o.resource.name
        ));
        report.pending.push(item(o, reason));
    }

    // The lock this `down` holds (and its lease) stay until it is released.
    let held = super::lock::held_parameters();
    let (deleted, refused) = delete_parameters(aws, &stack, &held).await?;
    for name in &deleted {
        progress.ok(name, &format!("deleted SSM parameter {name}"));
    }
    report.parameters_deleted = deleted;
    report.refused.extend(refused);

    let mut known = sweep::known_names(graph);
    known.extend(
        report
            .refused
            .iter()
            .map(|r| (r.kind.clone(), r.name.clone())),
    );
    let mut sweep = sweep::sweep(aws, &stack, &known, &held).await?;
    // Explain leftovers `down` knows about with its own reason.
    let reasons: BTreeMap<(&str, &str), &str> = report
        .pending
        .iter()
        .chain(&report.failed)
        .chain(&report.refused)
        .map(|i| ((i.kind.as_str(), i.name.as_str()), i.reason.as_str()))
        .collect();
    for l in &mut sweep.leftovers {
        if let Some(r) = reasons.get(&(l.kind.as_str(), l.name.as_str())) {
            l.reason = format!("{}; {r}", l.reason);
        }
    }
    for l in &sweep.leftovers {
        progress.info(&format!("left over: {} {} — {}", l.kind, l.name, l.reason));
    }
    report.sweep = sweep;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_the_sweep_could_not_list_is_not_clean() {
        let mut report = DownReport::default();
        assert!(report.clean());
        report
            .sweep
            .errors
            .push("elasticache: DescribeReplicationGroups failed: AccessDenied".into());
        assert!(!report.clean());
    }
}
