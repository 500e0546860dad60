//! What applying a graph would change: one [`Change`] per resource, with
//! the action (create, update in place, replace, delete, no change) and the
//! changed attribute paths, plus its human and JSON renderings.
//!
//! [`Plan::diff`] compares the desired graph with observed resources in the
//! same shape (read from AWS by the provider); without observation,
//! [`Plan::create_all`] plans everything as a create.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Graph, Kind, LogicalId, Resource};

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// It does not exist yet.
    Create,
    /// It exists; the changed attributes can be applied in place.
    Update,
    /// It exists; a changed attribute cannot change in place, so a new one
    /// replaces it (for a task definition: a new revision).
    Replace,
    /// It exists with the stack's tags but the spec no longer implies it.
    Delete,
    /// It exists as desired.
    NoChange,
}

impl Action {
    /// The symbol in human output.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::NoChange => "=",
        }
    }
}

/// One resource's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// What happens.
    pub action: Action,
    /// The desired resource (the observed one for a delete).
    #[serde(flatten)]
    pub resource: Resource,
    /// Dotted attribute paths that differ (`name` when the name changed,
    /// `tags.KEY` for tags); empty for creates, deletes and no change.
    pub changed_attributes: Vec<String>,
}

/// Counts per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Resources to create.
    pub create: usize,
    /// Resources to update in place.
    pub update: usize,
    /// Resources to replace.
    pub replace: usize,
    /// Resources to delete.
    pub delete: usize,
    /// Resources already as desired.
    pub no_change: usize,
}

/// The changes that would bring AWS to the desired graph, in apply order
/// (deletes last, dependents before what they depend on).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The stack name.
    pub stack: String,
    /// The spec's region, if it sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Counts per action.
    pub summary: Summary,
    /// One change per resource.
    pub changes: Vec<Change>,
}

impl Plan {
    /// Every resource of the graph as a create (nothing observed).
    pub fn create_all(graph: &Graph) -> Self {
        Self::diff(graph, &[])
    }

    /// Compares the desired graph with the resources observed in AWS.
    /// `observed` holds the stack's resources in the shape of [`Resource`]
    /// (found by name and tags), in apply order, so deletes can run in
    /// reverse.
    pub fn diff(graph: &Graph, observed: &[Resource]) -> Self {
        let by_id: BTreeMap<&LogicalId, &Resource> = observed.iter().map(|r| (&r.id, r)).collect();
        let mut changes: Vec<Change> = graph
            .apply_order()
            .into_iter()
            .map(|desired| match by_id.get(&desired.id) {
                None => Change {
                    action: Action::Create,
                    resource: desired.clone(),
                    changed_attributes: Vec::new(),
                },
                Some(seen) => compare(desired, seen),
            })
            .collect();
        changes.extend(
            observed
                .iter()
                .rev()
                .filter(|r| graph.get(&r.id).is_none())
                .map(|r| Change {
                    action: Action::Delete,
                    resource: r.clone(),
                    changed_attributes: Vec::new(),
                }),
        );
        let mut summary = Summary::default();
        for c in &changes {
            *match c.action {
                Action::Create => &mut summary.create,
                Action::Update => &mut summary.update,
                Action::Replace => &mut summary.replace,
                Action::Delete => &mut summary.delete,
                Action::NoChange => &mut summary.no_change,
            } += 1;
        }
        Self {
            stack: graph.stack.clone(),
            region: graph.region.clone(),
            summary,
            changes,
        }
    }

    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoChange)
    }

    /// The summary line, e.g. `Plan: 31 to create, 0 to update, ...`.
    pub fn summary_line(&self) -> String {
        let s = self.summary;
        format!(
            "Plan: {} to create, {} to update, {} to replace, {} to delete, {} unchanged.",
            s.create, s.update, s.replace, s.delete, s.no_change
        )
    }

    /// The human rendering: changes grouped by dependency depth ("wave"):
    /// everything in a wave can be applied in parallel once the waves above
    /// are done. Unchanged resources are only counted.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let region = self
            .region
            .as_deref()
            .unwrap_or("from the AWS configuration");
        let _ = writeln!(out, "Plan for stack `{}` (region {region})", self.stack);

        let mut depth: BTreeMap<&LogicalId, usize> = BTreeMap::new();
        let mut waves: BTreeMap<usize, Vec<&Change>> = BTreeMap::new();
        let mut deletes = Vec::new();
        for c in &self.changes {
            if c.action == Action::Delete {
                deletes.push(c);
                continue;
            }
            let d = c
                .resource
                .dependencies
                .iter()
                .filter_map(|dep| depth.get(dep).map(|d| d + 1))
                .max()
                .unwrap_or(0);
            depth.insert(&c.resource.id, d);
            if c.action != Action::NoChange {
                waves.entry(d).or_default().push(c);
            }
        }
        let id_width = self
            .changes
            .iter()
            .map(|c| c.resource.id.as_str().len())
            .max()
            .unwrap_or(0);
        let kind_width = self
            .changes
            .iter()
            .map(|c| c.resource.kind.label().len())
            .max()
            .unwrap_or(0);
        for (d, changes) in &waves {
            let _ = writeln!(out);
            if *d == 0 {
                let _ = writeln!(out, "wave 1 (no dependencies)");
            } else {
                let _ = writeln!(out, "wave {}", d + 1);
            }
            for c in changes {
                line(&mut out, c, id_width, kind_width);
            }
        }
        if !deletes.is_empty() {
            let _ = writeln!(out, "\nto delete (reverse dependency order)");
            for c in deletes {
                line(&mut out, c, id_width, kind_width);
            }
        }
        let _ = writeln!(out, "\n{}", self.summary_line());
        out
    }
}

fn line(out: &mut String, c: &Change, id_width: usize, kind_width: usize) {
    let r = &c.resource;
    let _ = writeln!(
        out,
        "  {:<3} {:<id_width$}  {:<kind_width$}  {}",
        c.action.symbol(),
        r.id.as_str(),
        r.kind.label(),
        r.name,
    );
    if !c.changed_attributes.is_empty() {
        let _ = writeln!(out, "        changed: {}", c.changed_attributes.join(", "));
    }
    if !r.dependencies.is_empty() && c.action != Action::Delete {
        let deps: Vec<&str> = r.dependencies.iter().map(LogicalId::as_str).collect();
        let _ = writeln!(out, "        after: {}", deps.join(", "));
    }
}

/// Attribute paths a desired resource leaves to someone else: auto-scaling
/// owns the desired count of a scaled service or group.
fn ignored_paths(desired: &Resource) -> &'static [&'static str] {
    match &desired.attributes {
        super::Attributes::EcsService(s) if s.scaling_managed => &["desired_count"],
        super::Attributes::AutoScalingGroup(g) if g.scaling_managed => &["desired_capacity"],
        _ => &[],
    }
}

fn matches(path: &str, rule: &str) -> bool {
    rule == "*"
        || path == rule
        || path
            .strip_prefix(rule)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn compare(desired: &Resource, observed: &Resource) -> Change {
    let ignored = ignored_paths(desired);
    let mut changed: Vec<String> = desired
        .attributes
        .diff(&observed.attributes)
        .into_iter()
        .filter(|p| !ignored.iter().any(|i| matches(p, i)))
        .collect();
    let keys: std::collections::BTreeSet<&String> =
        desired.tags.keys().chain(observed.tags.keys()).collect();
    changed.extend(
        keys.into_iter()
            .filter(|k| desired.tags.get(*k) != observed.tags.get(*k))
            .map(|k| format!("tags.{k}")),
    );
    let renamed = desired.name != observed.name || desired.kind != observed.kind;
    if renamed {
        changed.insert(0, "name".into());
    }
    let replace = renamed
        || changed
            .iter()
            .filter(|p| !p.starts_with("tags."))
            .any(|p| replaced(desired.kind, p));
    let action = if replace {
        Action::Replace
    } else if changed.is_empty() {
        Action::NoChange
    } else {
        Action::Update
    };
    Change {
        action,
        resource: desired.clone(),
        changed_attributes: changed,
    }
}

fn replaced(kind: Kind, path: &str) -> bool {
    kind.replaced_on().iter().any(|rule| matches(path, rule))
}
