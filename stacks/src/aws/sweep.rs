//! The sweep after `down`: every service the provider uses is listed by the
//! stack's tag (`stackctl:stack`) and by the stack's name patterns
//! (`{stack}-*`, `/stackctl/{stack}/*`, `{stack}.internal`, the cluster
//! `{stack}` and its `service/{stack}/*` scaling targets), independently of
//! the graph, so resources an older spec created are found too. The
//! tagging API is not used: it misses launch templates, Auto Scaling
//! groups, IAM and Cloud Map, and lists deleted ElastiCache resources.
//! API Gateway VPC links and REST APIs are listed whole (their names are
//! not unique) and kept when named `{stack}-*` or tagged for the stack;
//! so are SNS topics, kept when named `{stack}-*`.
//!
//! Each find is sorted into:
//! - **leftover**: tagged for the stack, an untaggable resource under the
//!   stack's names, or an untagged resource with one of the stack's exact
//!   names (it is not the stack's, but it blocks the next `up`);
//! - **deleting**: the stack's, with its deletion under way;
//! - **unrelated**: shares the name prefix only, without the tag: someone
//!   else's, mentioned and never counted.
//!
//! IAM roles and instance profiles are found by name prefix only: IAM's
//! list calls do not return tags, and reading every role's tags would
//! cost a call per role in the account.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::context::{Aws, filter};
use super::error::{AwsError, Result, Subject};
use crate::graph::{Graph, Kind, TAG_STACK};

/// One resource the sweep found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Leftover {
    /// Kind label (`SQS queue`).
    pub kind: String,
    /// Name (or resource id).
    pub name: String,
    /// ARN or id, when AWS gives one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub arn: String,
    /// Why it is listed.
    pub reason: String,
}

/// What the sweep found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// What remains of the stack (or blocks it): `down` fails while any.
    pub leftovers: Vec<Leftover>,
    /// The stack's resources whose deletion is under way.
    pub deleting: Vec<Leftover>,
    /// Resources that share the stack's name prefix but are not its own.
    pub unrelated: Vec<Leftover>,
    /// Services the sweep could not list (each counts as not clean).
    pub errors: Vec<String>,
}

impl SweepReport {
    /// Whether nothing of the stack remains (deletions under way aside).
    pub fn clean(&self) -> bool {
        self.leftovers.is_empty() && self.errors.is_empty()
    }
}

/// The (kind label, name) pairs the stack's resources have or could have.
pub fn known_names(graph: &Graph) -> BTreeSet<(String, String)> {
    graph
        .resources()
        .iter()
        .map(|r| (r.kind.label().to_string(), r.name.clone()))
        .chain(
            super::plan::candidates(&graph.stack)
                .into_iter()
                .map(|t| (t.kind.label().to_string(), t.name)),
        )
        .collect()
}

/// One find, before sorting.
#[derive(Debug, Clone)]
struct Seen {
    kind: &'static str,
    name: String,
    arn: String,
    /// `None`: AWS cannot tag this kind (judged by name).
    tags: Option<BTreeMap<String, String>>,
    /// A deletion under way, in AWS's words.
    deleting: Option<String>,
}

impl Seen {
    fn new(kind: Kind, name: impl Into<String>, arn: impl Into<String>) -> Self {
        Self {
            kind: kind.label(),
            name: name.into(),
            arn: arn.into(),
            tags: Some(BTreeMap::new()),
            deleting: None,
        }
    }

    fn tags(mut self, tags: BTreeMap<String, String>) -> Self {
        self.tags = Some(tags);
        self
    }

    fn untaggable(mut self) -> Self {
        self.tags = None;
        self
    }

    fn deleting(mut self, state: Option<String>) -> Self {
        self.deleting = state;
        self
    }
}

/// An SSM parameter under `/stackctl/{stack}/`.
#[derive(Debug, Clone)]
pub(crate) struct Parameter {
    pub name: String,
    pub tags: BTreeMap<String, String>,
}

macro_rules! call {
    ($what:expr, $action:literal, $fut:expr) => {
        $fut.await
            .map_err(|e| AwsError::api(Subject::other("sweep", $what), $action, e))
    };
}

/// The stack's SSM parameters with their tags.
pub(crate) async fn parameters(aws: &Aws, stack: &str) -> Result<Vec<Parameter>> {
    let ssm = aws.ssm();
    let path = format!("/stackctl/{stack}");
    let pages = call!(
        &path,
        "GetParametersByPath",
        ssm.get_parameters_by_path()
            .path(&path)
            .recursive(true)
            .into_paginator()
            .send()
            .try_collect()
    )?;
    let names: Vec<String> = pages
        .iter()
        .flat_map(|page| page.parameters())
        .filter_map(|p| p.name.clone())
        .collect();
    let mut out = Vec::new();
    for name in names {
        let tags = call!(
            &name,
            "ListTagsForResource",
            ssm.list_tags_for_resource()
                .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                .resource_id(&name)
                .send()
        );
        let tags = match tags {
            Ok(t) => t
                .tag_list()
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        out.push(Parameter { name, tags });
    }
    Ok(out)
}

async fn security_groups(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let ec2 = aws.ec2();
    let mut out: BTreeMap<String, Seen> = BTreeMap::new();
    for f in [
        filter(&format!("tag:{TAG_STACK}"), stack),
        filter("group-name", &format!("{stack}-*")),
    ] {
        let page = call!(
            stack,
            "DescribeSecurityGroups",
            ec2.describe_security_groups().filters(f).send()
        )?;
        for sg in page.security_groups() {
            let id = sg.group_id.clone().unwrap_or_default();
            let tags = sg
                .tags()
                .iter()
                .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
                .collect();
            out.insert(
                id.clone(),
                Seen::new(
                    Kind::SecurityGroup,
                    sg.group_name.clone().unwrap_or_default(),
                    id,
                )
                .tags(tags),
            );
        }
    }
    Ok(out.into_values().collect())
}

async fn launch_templates(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let ec2 = aws.ec2();
    let templates = call!(
        stack,
        "DescribeLaunchTemplates",
        ec2.describe_launch_templates()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let mut out = Vec::new();
    for lt in &templates {
        let name = lt.launch_template_name.clone().unwrap_or_default();
        let tags: BTreeMap<String, String> = lt
            .tags()
            .iter()
            .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
            .collect();
        if name.starts_with(&format!("{stack}-"))
            || tags.get(TAG_STACK).map(String::as_str) == Some(stack)
        {
            out.push(
                Seen::new(
                    Kind::LaunchTemplate,
                    name,
                    lt.launch_template_id.clone().unwrap_or_default(),
                )
                .tags(tags),
            );
        }
    }
    Ok(out)
}

async fn iam(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let iam = aws.iam();
    let prefix = format!("{stack}-");
    let mut out = Vec::new();
    let roles = call!(
        stack,
        "ListRoles",
        iam.list_roles()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    for role in roles.iter().filter(|r| r.role_name.starts_with(&prefix)) {
        let tags = call!(
            &role.role_name,
            "ListRoleTags",
            iam.list_role_tags().role_name(&role.role_name).send()
        )?;
        out.push(
            Seen::new(Kind::IamRole, role.role_name.clone(), role.arn.clone()).tags(
                tags.tags()
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
            ),
        );
    }
    let profiles = call!(
        stack,
        "ListInstanceProfiles",
        iam.list_instance_profiles()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    for p in profiles
        .iter()
        .filter(|p| p.instance_profile_name.starts_with(&prefix))
    {
        let got = call!(
            &p.instance_profile_name,
            "GetInstanceProfile",
            iam.get_instance_profile()
                .instance_profile_name(&p.instance_profile_name)
                .send()
        )?;
        let tags = got
            .instance_profile
            .as_ref()
            .map(|p| {
                p.tags()
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(
            Seen::new(
                Kind::IamInstanceProfile,
                p.instance_profile_name.clone(),
                p.arn.clone(),
            )
            .tags(tags),
        );
    }
    Ok(out)
}

async fn log_groups(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let logs = aws.logs();
    let prefix = format!("/stackctl/{stack}/");
    let groups = call!(
        &prefix,
        "DescribeLogGroups",
        logs.describe_log_groups()
            .log_group_name_prefix(&prefix)
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let mut out = Vec::new();
    for g in &groups {
        let name = g.log_group_name.clone().unwrap_or_default();
        let arn = g.arn.clone().unwrap_or_default();
        let arn = arn.strip_suffix(":*").unwrap_or(&arn).to_string();
        let tags = call!(
            &name,
            "ListTagsForResource",
            logs.list_tags_for_resource().resource_arn(&arn).send()
        )?;
        out.push(
            Seen::new(Kind::LogGroup, name, arn)
                .tags(tags.tags.unwrap_or_default().into_iter().collect()),
        );
    }
    Ok(out)
}

async fn queues(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let sqs = aws.sqs();
    let prefix = format!("{stack}-");
    let page = call!(
        &prefix,
        "ListQueues",
        sqs.list_queues().queue_name_prefix(&prefix).send()
    )?;
    let mut out = Vec::new();
    for url in page.queue_urls() {
        let tags = call!(
            url,
            "ListQueueTags",
            sqs.list_queue_tags().queue_url(url).send()
        );
        let tags = match tags {
            Ok(t) => t.tags.unwrap_or_default().into_iter().collect(),
            // Deleted between the two calls.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let name = url.rsplit('/').next().unwrap_or(url).to_string();
        out.push(Seen::new(Kind::SqsQueue, name, url.clone()).tags(tags));
    }
    Ok(out)
}

async fn elasticache_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = call!(
        arn,
        "ListTagsForResource",
        aws.elasticache()
            .list_tags_for_resource()
            .resource_name(arn)
            .send()
    )?;
    Ok(out
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect())
}

async fn memorydb_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    if arn.is_empty() {
        return Ok(BTreeMap::new());
    }
    let out = call!(
        arn,
        "ListTags",
        aws.memorydb().list_tags().resource_arn(arn).send()
    )?;
    Ok(out
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect())
}

/// MemoryDB clusters, ACLs, users and subnet groups named `{stack}-*`.
async fn memorydb(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let db = aws.memorydb();
    let prefix = format!("{stack}-");
    let ours = |name: &Option<String>| name.as_deref().is_some_and(|n| n.starts_with(&prefix));
    let clusters = call!(
        stack,
        "DescribeClusters",
        db.describe_clusters()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let acls = call!(
        stack,
        "DescribeACLs",
        db.describe_acls()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let users = call!(
        stack,
        "DescribeUsers",
        db.describe_users()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let subnet_groups = call!(
        stack,
        "DescribeSubnetGroups",
        db.describe_subnet_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let found = clusters
        .into_iter()
        .filter(|c| ours(&c.name))
        .map(|c| {
            let deleting = c.status.filter(|s| s == "deleting");
            (Kind::MemoryDbCluster, c.name, c.arn, deleting)
        })
        .chain(
            acls.into_iter()
                .filter(|a| ours(&a.name))
                .map(|a| (Kind::MemoryDbAcl, a.name, a.arn, None)),
        )
        .chain(
            users
                .into_iter()
                .filter(|u| ours(&u.name))
                .map(|u| (Kind::MemoryDbUser, u.name, u.arn, None)),
        )
        .chain(
            subnet_groups
                .into_iter()
                .filter(|g| ours(&g.name))
                .map(|g| (Kind::MemoryDbSubnetGroup, g.name, g.arn, None)),
        );
    let mut out = Vec::new();
    for (kind, name, arn, deleting) in found {
        let arn = arn.unwrap_or_default();
        let tags = memorydb_tags(aws, &arn).await?;
        out.push(
            Seen::new(kind, name.unwrap_or_default(), arn)
                .tags(tags)
                .deleting(deleting),
        );
    }
    Ok(out)
}

async fn elasticache(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let cache = aws.elasticache();
    let prefix = format!("{stack}-");
    let mut out = Vec::new();
    let groups = call!(
        stack,
        "DescribeReplicationGroups",
        cache
            .describe_replication_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    for g in &groups {
        let id = g.replication_group_id.clone().unwrap_or_default();
        if !id.starts_with(&prefix) {
            continue;
        }
        let arn = g.arn.clone().unwrap_or_default();
        let tags = elasticache_tags(aws, &arn).await?;
        let status = g.status.clone().unwrap_or_default();
        out.push(
            Seen::new(Kind::ElastiCacheReplicationGroup, id, arn)
                .tags(tags)
                .deleting((status == "deleting").then_some(status)),
        );
    }
    let subnet_groups = call!(
        stack,
        "DescribeCacheSubnetGroups",
        cache
            .describe_cache_subnet_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let parameter_groups = call!(
        stack,
        "DescribeCacheParameterGroups",
        cache
            .describe_cache_parameter_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let groups = subnet_groups
        .into_iter()
        .map(|g| {
            let name = g.cache_subnet_group_name;
            (Kind::ElastiCacheSubnetGroup, name, g.arn)
        })
        .chain(parameter_groups.into_iter().map(|g| {
            let name = g.cache_parameter_group_name;
            (Kind::ElastiCacheParameterGroup, name, g.arn)
        }));
    for (kind, name, arn) in groups {
        let name = name.unwrap_or_default();
        if !name.starts_with(&prefix) {
            continue;
        }
        let arn = arn.unwrap_or_default();
        let tags = if arn.is_empty() {
            BTreeMap::new()
        } else {
            elasticache_tags(aws, &arn).await?
        };
        out.push(Seen::new(kind, name, arn).tags(tags));
    }
    Ok(out)
}

async fn ecr(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let ecr = aws.ecr();
    let prefix = format!("{stack}-");
    let repositories = call!(
        stack,
        "DescribeRepositories",
        ecr.describe_repositories()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let mut out = Vec::new();
    for r in &repositories {
        let name = r.repository_name.clone().unwrap_or_default();
        if !name.starts_with(&prefix) {
            continue;
        }
        let arn = r.repository_arn.clone().unwrap_or_default();
        let tags = call!(
            &name,
            "ListTagsForResource",
            ecr.list_tags_for_resource().resource_arn(&arn).send()
        )?;
        out.push(
            Seen::new(Kind::EcrRepository, name, arn).tags(
                tags.tags()
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
            ),
        );
    }
    Ok(out)
}

fn ecs_tags(tags: &[aws_sdk_ecs::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

async fn ecs(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    use aws_sdk_ecs::types::{
        ClusterField, ServiceField, TaskDefinitionFamilyStatus, TaskDefinitionField,
    };
    let ecs = aws.ecs();
    let prefix = format!("{stack}-");
    let mut out = Vec::new();
    let arns: Vec<String> = call!(
        stack,
        "ListClusters",
        ecs.list_clusters()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let clusters: Vec<String> = arns
        .into_iter()
        .filter(|arn| {
            let name = arn.rsplit('/').next().unwrap_or(arn);
            name == stack || name.starts_with(&prefix)
        })
        .collect();
    for arn in clusters {
        let got = call!(
            &arn,
            "DescribeClusters",
            ecs.describe_clusters()
                .clusters(&arn)
                .include(ClusterField::Tags)
                .send()
        )?;
        for c in got.clusters() {
            if c.status.as_deref() != Some("ACTIVE") {
                continue;
            }
            let name = c.cluster_name.clone().unwrap_or_default();
            out.push(
                Seen::new(Kind::EcsCluster, name.clone(), arn.clone()).tags(ecs_tags(c.tags())),
            );
            let services: Vec<String> = call!(
                &name,
                "ListServices",
                ecs.list_services()
                    .cluster(&arn)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
            )?;
            for batch in services.chunks(10) {
                let got = call!(
                    &name,
                    "DescribeServices",
                    ecs.describe_services()
                        .cluster(&arn)
                        .set_services(Some(batch.to_vec()))
                        .include(ServiceField::Tags)
                        .send()
                )?;
                for s in got.services() {
                    let status = s.status.clone().unwrap_or_default();
                    if status == "INACTIVE" {
                        continue;
                    }
                    out.push(
                        Seen::new(
                            Kind::EcsService,
                            s.service_name.clone().unwrap_or_default(),
                            s.service_arn.clone().unwrap_or_default(),
                        )
                        .tags(ecs_tags(s.tags()))
                        .deleting((status == "DRAINING").then_some(status)),
                    );
                }
            }
        }
    }
    let families: Vec<String> = call!(
        &prefix,
        "ListTaskDefinitionFamilies",
        ecs.list_task_definition_families()
            .family_prefix(&prefix)
            .status(TaskDefinitionFamilyStatus::Active)
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    for family in &families {
        let got = call!(
            family,
            "DescribeTaskDefinition",
            ecs.describe_task_definition()
                .task_definition(family)
                .include(TaskDefinitionField::Tags)
                .send()
        );
        let got = match got {
            Ok(g) => g,
            // No ACTIVE revision left (deregistered meanwhile).
            Err(AwsError::Api { code, .. }) if code == "ClientException" => continue,
            Err(e) => return Err(e),
        };
        let arn = got
            .task_definition
            .as_ref()
            .and_then(|t| t.task_definition_arn.clone())
            .unwrap_or_default();
        out.push(
            Seen::new(Kind::EcsTaskDefinition, family.clone(), arn).tags(ecs_tags(got.tags())),
        );
    }
    Ok(out)
}

async fn autoscaling(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let asg = aws.autoscaling();
    let prefix = format!("{stack}-");
    let mut out = Vec::new();
    let groups = call!(
        stack,
        "DescribeAutoScalingGroups",
        asg.describe_auto_scaling_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    for g in &groups {
        let name = g.auto_scaling_group_name.clone().unwrap_or_default();
        let tags: BTreeMap<String, String> = g
            .tags()
            .iter()
            .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
            .collect();
        if name.starts_with(&prefix) || tags.get(TAG_STACK).map(String::as_str) == Some(stack) {
            let status = g.status.clone();
            out.push(
                Seen::new(
                    Kind::AutoScalingGroup,
                    name,
                    g.auto_scaling_group_arn.clone().unwrap_or_default(),
                )
                .tags(tags)
                .deleting(status.filter(|s| s.starts_with("Delete"))),
            );
        }
    }
    let policies = call!(
        stack,
        "DescribePolicies",
        asg.describe_policies()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    for p in &policies {
        let name = p.policy_name.clone().unwrap_or_default();
        let group = p.auto_scaling_group_name.clone().unwrap_or_default();
        if name.starts_with(&prefix) || group.starts_with(&prefix) {
            out.push(
                Seen::new(
                    Kind::AsgScalingPolicy,
                    name,
                    p.policy_arn.clone().unwrap_or_default(),
                )
                .untaggable(),
            );
        }
    }
    Ok(out)
}

async fn appscaling(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    use aws_sdk_applicationautoscaling::types::ServiceNamespace;
    let scaling = aws.appscaling();
    let ours = format!("service/{stack}/");
    let prefix = format!("{stack}-");
    let mut out = Vec::new();
    let targets = call!(
        stack,
        "DescribeScalableTargets",
        scaling
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    for t in targets.iter().filter(|t| t.resource_id.starts_with(&ours)) {
        out.push(
            Seen::new(
                Kind::ScalableTarget,
                t.resource_id.clone(),
                t.scalable_target_arn.clone().unwrap_or_default(),
            )
            .untaggable(),
        );
    }
    let policies = call!(
        stack,
        "DescribeScalingPolicies",
        scaling
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Ecs)
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    for p in policies
        .iter()
        .filter(|p| p.resource_id.starts_with(&ours) || p.policy_name.starts_with(&prefix))
    {
        out.push(
            Seen::new(
                Kind::ScalingPolicy,
                p.policy_name.clone(),
                p.policy_arn.clone(),
            )
            .untaggable(),
        );
    }
    Ok(out)
}

async fn alarms(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let cw = aws.cloudwatch();
    let prefix = format!("{stack}-");
    let pages = call!(
        &prefix,
        "DescribeAlarms",
        cw.describe_alarms()
            .alarm_name_prefix(&prefix)
            .into_paginator()
            .send()
            .try_collect()
    )?;
    let mut out = Vec::new();
    for a in pages.iter().flat_map(|page| page.metric_alarms()) {
        let arn = a.alarm_arn.clone().unwrap_or_default();
        let tags = call!(
            &arn,
            "ListTagsForResource",
            cw.list_tags_for_resource().resource_arn(&arn).send()
        )?;
        out.push(
            Seen::new(
                Kind::CloudWatchAlarm,
                a.alarm_name.clone().unwrap_or_default(),
                arn,
            )
            .tags(
                tags.tags()
                    .iter()
                    .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
                    .collect(),
            ),
        );
    }
    Ok(out)
}

/// SNS topics named `{stack}-*` (the alarms' topic), with their tags.
async fn topics(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let sns = aws.sns();
    let prefix = format!("{stack}-");
    let pages = call!(
        &prefix,
        "ListTopics",
        sns.list_topics().into_paginator().send().try_collect()
    )?;
    let mut out = Vec::new();
    for arn in pages
        .iter()
        .flat_map(|page| page.topics())
        .filter_map(|t| t.topic_arn.clone())
    {
        let name = arn.rsplit(':').next().unwrap_or_default().to_string();
        if !name.starts_with(&prefix) {
            continue;
        }
        let tags = call!(
            &arn,
            "ListTagsForResource",
            sns.list_tags_for_resource().resource_arn(&arn).send()
        );
        let tags = match tags {
            Ok(t) => t
                .tags()
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        out.push(Seen::new(Kind::SnsTopic, name, arn).tags(tags));
    }
    Ok(out)
}

async fn cloudmap_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = call!(
        arn,
        "ListTagsForResource",
        aws.cloudmap()
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
    )?;
    Ok(out
        .tags()
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect())
}

async fn cloudmap(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    use aws_sdk_servicediscovery::types::{FilterCondition, ServiceFilter, ServiceFilterName};
    let map = aws.cloudmap();
    let ours = format!("{stack}.internal");
    let mut out = Vec::new();
    let pages = call!(
        stack,
        "ListNamespaces",
        map.list_namespaces().into_paginator().send().try_collect()
    )?;
    let namespaces: Vec<(String, String, String)> = pages
        .iter()
        .flat_map(|page| page.namespaces())
        .filter(|ns| ns.name.as_deref() == Some(ours.as_str()))
        .map(|ns| {
            (
                ns.name.clone().unwrap_or_default(),
                ns.id.clone().unwrap_or_default(),
                ns.arn.clone().unwrap_or_default(),
            )
        })
        .collect();
    for (name, id, arn) in namespaces {
        let tags = cloudmap_tags(aws, &arn).await?;
        out.push(Seen::new(Kind::ServiceDiscoveryNamespace, name, arn).tags(tags));
        let f = ServiceFilter::builder()
            .name(ServiceFilterName::NamespaceId)
            .values(&id)
            .condition(FilterCondition::Eq)
            .build()
            .map_err(|e| AwsError::Config(e.to_string()))?;
        let page = call!(&id, "ListServices", map.list_services().filters(f).send())?;
        for s in page.services() {
            let arn = s.arn.clone().unwrap_or_default();
            let tags = cloudmap_tags(aws, &arn).await?;
            out.push(
                Seen::new(
                    Kind::ServiceDiscoveryService,
                    s.name.clone().unwrap_or_default(),
                    arn,
                )
                .tags(tags),
            );
        }
    }
    Ok(out)
}

async fn elb_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = call!(
        arn,
        "DescribeTags",
        aws.elbv2().describe_tags().resource_arns(arn).send()
    )?;
    Ok(out
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect())
}

/// Load balancers and target groups (their listeners go with the load
/// balancer).
async fn elbv2(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    let elb = aws.elbv2();
    let prefix = format!("{stack}-");
    let mut out = Vec::new();
    let balancers = call!(
        stack,
        "DescribeLoadBalancers",
        elb.describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let groups = call!(
        stack,
        "DescribeTargetGroups",
        elb.describe_target_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
    )?;
    let named = balancers
        .iter()
        .map(|lb| {
            let (name, arn) = (lb.load_balancer_name(), lb.load_balancer_arn());
            (Kind::LoadBalancer, name, arn)
        })
        .chain(groups.iter().map(|tg| {
            let (name, arn) = (tg.target_group_name(), tg.target_group_arn());
            (Kind::TargetGroup, name, arn)
        }));
    for (kind, name, arn) in named {
        let name = name.unwrap_or_default();
        if !name.starts_with(&prefix) {
            continue;
        }
        let arn = arn.unwrap_or_default().to_string();
        let tags = elb_tags(aws, &arn).await?;
        out.push(Seen::new(kind, name, arn).tags(tags));
    }
    Ok(out)
}

/// API Gateway VPC links and REST APIs named `{stack}-*` or tagged for the
/// stack (their names are not unique; their tags come with the lists).
async fn apigateway(aws: &Aws, stack: &str) -> Result<Vec<Seen>> {
    use super::kinds::apigateway::{rest_apis, vpc_links};
    let prefix = format!("{stack}-");
    let subject = Subject::other("sweep", stack);
    let ours = |name: &str, tags: &BTreeMap<String, String>| {
        name.starts_with(&prefix) || tags.get(TAG_STACK).is_some_and(|s| s == stack)
    };
    let tags = |t: Option<&std::collections::HashMap<String, String>>| -> BTreeMap<String, String> {
        t.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for link in vpc_links(aws, &subject).await? {
        let name = link.name().unwrap_or_default();
        let tags = tags(link.tags());
        if !ours(name, &tags) {
            continue;
        }
        let deleting = link
            .status()
            .filter(|s| s.as_str() == "DELETING")
            .map(|s| s.as_str().to_string());
        out.push(
            Seen::new(Kind::ApiGatewayVpcLink, name, link.id().unwrap_or_default())
                .tags(tags)
                .deleting(deleting),
        );
    }
    for api in rest_apis(aws, &subject).await? {
        let name = api.name().unwrap_or_default();
        let tags = tags(api.tags());
        if !ours(name, &tags) {
            continue;
        }
        out.push(Seen::new(Kind::ApiGatewayRestApi, name, api.id().unwrap_or_default()).tags(tags));
    }
    Ok(out)
}

/// Lists every service for what is left of `stack`; `known` are the
/// stack's (kind label, name) pairs; `held_lock` are the lock parameters
/// the caller still holds (the lock and its lease: not leftovers).
pub async fn sweep(
    aws: &Aws,
    stack: &str,
    known: &BTreeSet<(String, String)>,
    held_lock: &[String],
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let (
        sg,
        lt,
        iam_found,
        logs,
        sqs,
        cache,
        memdb,
        repos,
        ecs_found,
        asg,
        scaling,
        cw,
        map,
        params,
        elb,
        gateway,
        sns,
    ) = tokio::join!(
        security_groups(aws, stack),
        launch_templates(aws, stack),
        iam(aws, stack),
        log_groups(aws, stack),
        queues(aws, stack),
        elasticache(aws, stack),
        memorydb(aws, stack),
        ecr(aws, stack),
        ecs(aws, stack),
        autoscaling(aws, stack),
        appscaling(aws, stack),
        alarms(aws, stack),
        cloudmap(aws, stack),
        parameters(aws, stack),
        elbv2(aws, stack),
        apigateway(aws, stack),
        topics(aws, stack),
    );
    let params = params.map(|ps| {
        ps.into_iter()
            .filter(|p| !held_lock.contains(&p.name))
            .map(|p| Seen {
                kind: "SSM parameter",
                name: p.name.clone(),
                arn: String::new(),
                tags: Some(p.tags),
                deleting: None,
            })
            .collect::<Vec<_>>()
    });
    let mut seen = Vec::new();
    for (service, found) in [
        ("EC2 security groups", sg),
        ("EC2 launch templates", lt),
        ("IAM", iam_found),
        ("CloudWatch Logs", logs),
        ("SQS", sqs),
        ("ElastiCache", cache),
        ("MemoryDB", memdb),
        ("ECR", repos),
        ("ECS", ecs_found),
        ("EC2 Auto Scaling", asg),
        ("Application Auto Scaling", scaling),
        ("CloudWatch alarms", cw),
        ("Cloud Map", map),
        ("SSM", params),
        ("Elastic Load Balancing", elb),
        ("API Gateway", gateway),
        ("SNS", sns),
    ] {
        match found {
            Ok(items) => seen.extend(items),
            Err(e) => report.errors.push(format!("{service}: {e}")),
        }
    }
    for s in seen {
        let tag = s.tags.as_ref().map(|t| t.get(TAG_STACK).cloned());
        let ours = match &tag {
            // Untaggable kinds are listed only under the stack's names.
            None => true,
            Some(t) => t.as_deref() == Some(stack),
        };
        let known_name = known.contains(&(s.kind.to_string(), s.name.clone()));
        let (bucket, reason) = if ours && s.deleting.is_some() {
            (
                &mut report.deleting,
                format!(
                    "deletion under way (`{}`)",
                    s.deleting.as_deref().unwrap_or_default()
                ),
            )
        } else if ours {
            (
                &mut report.leftovers,
                match tag {
                    None => {
                        "belongs to the stack (its name or resource id is the stack's)".to_string()
                    }
                    Some(_) => format!("tagged `{TAG_STACK}={stack}`"),
                },
            )
        } else if known_name {
            (
                &mut report.leftovers,
                format!(
                    "has the stack's name but is not tagged `{TAG_STACK}={stack}` ({}): left alone, and it blocks `up`",
                    match tag.flatten() {
                        Some(other) => format!("tagged for `{other}`"),
                        None => "no tag".to_string(),
                    }
                ),
            )
        } else {
            (
                &mut report.unrelated,
                format!(
                    "shares the stack's name prefix but is not tagged `{TAG_STACK}={stack}`: not the stack's"
                ),
            )
        };
        bucket.push(Leftover {
            kind: s.kind.to_string(),
            name: s.name,
            arn: s.arn,
            reason,
        });
    }
    report.leftovers.sort();
    report.deleting.sort();
    report.unrelated.sort();
    Ok(report)
}
