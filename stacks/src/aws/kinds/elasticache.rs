//! ElastiCache: the subnet group, the parameter group (the engine settings
//! the stack needs, such as `maxmemory-policy noeviction`) and the Redis
//! replication group (auth token and in-transit encryption). The auth token
//! cannot be read back: only whether one is set is compared. A parameter
//! group's parameters read back as those set by the user: AWS defaults are
//! not the stack's business.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_elasticache::types::{AutomaticFailoverStatus, MultiAzStatus, ParameterNameValue, Tag};

use super::{
    Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, not_found_is_none, outputs,
    reread,
};
use crate::aws::error::{AwsError, Class, Result};
use crate::aws::resolve::{NOT_REPORTED, Outputs};
use crate::graph::plan::Action;
use crate::graph::{
    Attributes, ElastiCacheParameterGroup, ElastiCacheReplicationGroup, ElastiCacheSubnetGroup,
};

/// What an observed auth token reads as: set, value unknown.
const TOKEN_SET: &str = "(set)";

fn cache_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

async fn read_tags(ctx: &Ctx, t: &Target, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = ctx
        .aws
        .elasticache()
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(api!(t.subject(), "ListTagsForResource"))?;
    Ok(out
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect())
}

async fn sync_tags(ctx: &Ctx, work: &Work, arn: &str) -> Result<()> {
    let (set, remove) = work.tag_changes();
    let cache = ctx.aws.elasticache();
    if !set.is_empty() {
        cache
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(cache_tags(&set)))
            .send()
            .await
            .map_err(api!(work.subject(), "AddTagsToResource"))?;
    }
    if !remove.is_empty() {
        cache
            .remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(work.subject(), "RemoveTagsFromResource"))?;
    }
    Ok(())
}

fn subnet_group_arn(ctx: &Ctx, name: &str) -> String {
    format!(
        "arn:aws:elasticache:{}:{}:subnetgroup:{name}",
        ctx.env.region, ctx.env.account
    )
}

pub(crate) async fn read_subnet_group(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let got = ctx
        .aws
        .elasticache()
        .describe_cache_subnet_groups()
        .cache_subnet_group_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeCacheSubnetGroups"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let Some(group) = got
        .cache_subnet_groups
        .unwrap_or_default()
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let arn = group
        .arn
        .clone()
        .unwrap_or_else(|| subnet_group_arn(ctx, &t.name));
    let mut subnet_ids: Vec<String> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier.clone())
        .collect();
    subnet_ids.sort();
    let attributes = Attributes::ElastiCacheSubnetGroup(ElastiCacheSubnetGroup {
        description: group
            .cache_subnet_group_description
            .clone()
            .unwrap_or_default(),
        subnet_ids,
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([("name", t.name.clone()), ("arn", arn)]),
    )))
}

pub(crate) async fn apply_subnet_group(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ElastiCacheSubnetGroup);
    let subject = work.subject();
    let cache = ctx.aws.elasticache();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = cache
            .create_cache_subnet_group()
            .cache_subnet_group_name(name)
            .cache_subnet_group_description(&desired.description)
            .set_subnet_ids(Some(desired.subnet_ids.clone()))
            .set_tags(Some(cache_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateCacheSubnetGroup"));
        return match created {
            Ok(out) => Ok(outputs([
                ("name", name.clone()),
                (
                    "arn",
                    out.cache_subnet_group
                        .and_then(|g| g.arn)
                        .unwrap_or_else(|| subnet_group_arn(ctx, name)),
                ),
            ])),
            Err(e) if e.is_already_exists() => {
                Box::pin(apply_subnet_group(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeCacheSubnetGroups", "the group"))?;
    if work.changed("description") || work.changed("subnet_ids") {
        cache
            .modify_cache_subnet_group()
            .cache_subnet_group_name(name)
            .cache_subnet_group_description(&desired.description)
            .set_subnet_ids(Some(desired.subnet_ids.clone()))
            .send()
            .await
            .map_err(api!(subject.clone(), "ModifyCacheSubnetGroup"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

fn parameter_group_arn(ctx: &Ctx, name: &str) -> String {
    format!(
        "arn:aws:elasticache:{}:{}:parametergroup:{name}",
        ctx.env.region, ctx.env.account
    )
}

pub(crate) async fn read_parameter_group(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let cache = ctx.aws.elasticache();
    let got = cache
        .describe_cache_parameter_groups()
        .cache_parameter_group_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeCacheParameterGroups"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let Some(group) = got
        .cache_parameter_groups
        .unwrap_or_default()
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let arn = group
        .arn
        .clone()
        .unwrap_or_else(|| parameter_group_arn(ctx, &t.name));
    let set = cache
        .describe_cache_parameters()
        .cache_parameter_group_name(&t.name)
        .source("user")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api!(t.subject(), "DescribeCacheParameters"))?;
    let parameters = set
        .into_iter()
        .filter_map(|p| Some((p.parameter_name?, p.parameter_value.unwrap_or_default())))
        .collect();
    let attributes = Attributes::ElastiCacheParameterGroup(ElastiCacheParameterGroup {
        family: group.cache_parameter_group_family.unwrap_or_default(),
        description: group.description.unwrap_or_default(),
        parameters,
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([("name", t.name.clone()), ("arn", arn)]),
    )))
}

pub(crate) async fn apply_parameter_group(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ElastiCacheParameterGroup);
    let subject = work.subject();
    let cache = ctx.aws.elasticache();
    let name = &work.desired.name;
    let out = if work.action == Action::Create {
        let created = cache
            .create_cache_parameter_group()
            .cache_parameter_group_name(name)
            .cache_parameter_group_family(&desired.family)
            .description(&desired.description)
            .set_tags(Some(cache_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateCacheParameterGroup"));
        match created {
            Ok(out) => outputs([
                ("name", name.clone()),
                (
                    "arn",
                    out.cache_parameter_group
                        .and_then(|g| g.arn)
                        .unwrap_or_else(|| parameter_group_arn(ctx, name)),
                ),
            ]),
            Err(e) if e.is_already_exists() => {
                return Box::pin(apply_parameter_group(ctx, &reread(ctx, work).await?)).await;
            }
            Err(e) => return Err(e),
        }
    } else {
        let observed = work.observed.as_ref().ok_or_else(|| {
            incomplete(&work.target(), "DescribeCacheParameterGroups", "the group")
        })?;
        sync_tags(ctx, work, &observed.outputs["arn"]).await?;
        observed.outputs.clone()
    };
    if work.action == Action::Create || work.changed("parameters") {
        // At most 20 parameters per call; the stack sets a few.
        let values: Vec<ParameterNameValue> = desired
            .parameters
            .iter()
            .map(|(k, v)| {
                ParameterNameValue::builder()
                    .parameter_name(k)
                    .parameter_value(v)
                    .build()
            })
            .collect();
        for chunk in values.chunks(20) {
            cache
                .modify_cache_parameter_group()
                .cache_parameter_group_name(name)
                .set_parameter_name_values(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(api!(subject.clone(), "ModifyCacheParameterGroup"))?;
        }
    }
    Ok(out)
}

/// Deletes the parameter group. AWS refuses while a replication group
/// (even one being deleted) uses it: `down` deletes it after the group.
pub(crate) async fn delete_parameter_group(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .elasticache()
        .delete_cache_parameter_group()
        .cache_parameter_group_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteCacheParameterGroup"))?;
    Ok(Deleted::Gone)
}

pub(crate) async fn read_replication_group(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let cache = ctx.aws.elasticache();
    let got = cache
        .describe_replication_groups()
        .replication_group_id(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeReplicationGroups"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let Some(rg) = got
        .replication_groups
        .unwrap_or_default()
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let arn = rg
        .arn
        .clone()
        .ok_or_else(|| incomplete(t, "DescribeReplicationGroups", "ARN"))?;
    // Engine version, security groups and subnet group live on the members.
    // A member being replaced (or not reported at all) cannot be described:
    // its fields then read as NOT_REPORTED and are not compared.
    let member = match rg.member_clusters().first() {
        Some(id) => super::not_found_is_none(
            cache
                .describe_cache_clusters()
                .cache_cluster_id(id)
                .send()
                .await
                .map_err(api!(t.subject(), "DescribeCacheClusters")),
        )?
        .and_then(|out| out.cache_clusters.unwrap_or_default().into_iter().next()),
        None => None,
    };
    let primary = rg
        .node_groups()
        .first()
        .and_then(|g| g.primary_endpoint.as_ref());
    let port = primary
        .and_then(|e| e.port)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
    let mut security_group_ids: Vec<String> = member
        .as_ref()
        .map(|m| {
            m.security_groups()
                .iter()
                .filter_map(|s| s.security_group_id.clone())
                .collect()
        })
        .unwrap_or_else(|| vec![NOT_REPORTED.to_string()]);
    security_group_ids.sort();
    let attributes = Attributes::ElastiCacheReplicationGroup(ElastiCacheReplicationGroup {
        description: rg.description.clone().unwrap_or_default(),
        engine: rg
            .engine
            .clone()
            .or_else(|| member.as_ref().and_then(|m| m.engine.clone()))
            .unwrap_or_else(|| "redis".into()),
        engine_version: member
            .as_ref()
            .and_then(|m| m.engine_version.clone())
            .unwrap_or_else(|| NOT_REPORTED.into()),
        node_type: rg.cache_node_type.clone().unwrap_or_default(),
        replicas: u32::try_from(rg.member_clusters().len().saturating_sub(1)).unwrap_or(0),
        automatic_failover: matches!(
            rg.automatic_failover,
            Some(AutomaticFailoverStatus::Enabled | AutomaticFailoverStatus::Enabling)
        ),
        multi_az: rg.multi_az == Some(MultiAzStatus::Enabled),
        snapshot_retention_days: rg
            .snapshot_retention_limit
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
        port,
        subnet_group: member
            .as_ref()
            .and_then(|m| m.cache_subnet_group_name.clone())
            .unwrap_or_else(|| NOT_REPORTED.into()),
        parameter_group: member
            .as_ref()
            .and_then(|m| m.cache_parameter_group.as_ref())
            .and_then(|g| g.cache_parameter_group_name.clone())
            .unwrap_or_else(|| NOT_REPORTED.into()),
        security_group_ids,
        transit_encryption: rg.transit_encryption_enabled.unwrap_or(false),
        at_rest_encryption: rg.at_rest_encryption_enabled.unwrap_or(false),
        auth_token: rg
            .auth_token_enabled
            .unwrap_or(false)
            .then(|| TOKEN_SET.to_string()),
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([
            (
                "primary_endpoint",
                primary.and_then(|e| e.address.clone()).unwrap_or_default(),
            ),
            ("port", port.to_string()),
            ("arn", arn),
        ]),
    )))
}

pub(crate) async fn apply_replication_group(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ElastiCacheReplicationGroup);
    let subject = work.subject();
    let cache = ctx.aws.elasticache();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = cache
            .create_replication_group()
            .replication_group_id(name)
            .replication_group_description(&desired.description)
            .engine(&desired.engine)
            .engine_version(&desired.engine_version)
            .cache_node_type(&desired.node_type)
            .num_cache_clusters(desired.replicas as i32 + 1)
            .automatic_failover_enabled(desired.automatic_failover)
            .multi_az_enabled(desired.multi_az)
            .snapshot_retention_limit(desired.snapshot_retention_days as i32)
            .port(i32::from(desired.port))
            .cache_subnet_group_name(&desired.subnet_group)
            .cache_parameter_group_name(&desired.parameter_group)
            .set_security_group_ids(Some(desired.security_group_ids.clone()))
            .transit_encryption_enabled(desired.transit_encryption)
            .at_rest_encryption_enabled(desired.at_rest_encryption)
            .set_auth_token(desired.auth_token.clone())
            .set_tags(Some(cache_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateReplicationGroup"));
        match created {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {
                return Box::pin(apply_replication_group(ctx, &reread(ctx, work).await?)).await;
            }
            Err(e) => return Err(e),
        }
        // The endpoint is known once the group is described.
        let again = reread(ctx, work).await?;
        let observed = again.observed.ok_or_else(|| {
            incomplete(&work.target(), "DescribeReplicationGroups", "the new group")
        })?;
        return Ok(observed.outputs);
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeReplicationGroups", "the group"))?;
    let Attributes::ElastiCacheReplicationGroup(seen) = &observed.resource.attributes else {
        unreachable!("a replication group reads as one");
    };
    // ElastiCache refuses automatic failover and Multi-AZ on a group with
    // no replica (InvalidParameterCombination), whether being enabled or
    // kept while the last replica goes: replicas are added before the
    // ModifyReplicationGroup that may enable them, and removed after the
    // one that disables them.
    let adding = work.changed("replicas") && desired.replicas > seen.replicas;
    let removing = work.changed("replicas") && desired.replicas < seen.replicas;
    // The call that may have left the group `modifying`: ElastiCache
    // refuses the next one (InvalidReplicationGroupState) until it is
    // `available` again.
    let mut previous: Option<&'static str> = None;
    if adding {
        cache
            .increase_replica_count()
            .replication_group_id(name)
            .new_replica_count(desired.replicas as i32)
            .apply_immediately(true)
            .send()
            .await
            .map_err(api!(subject.clone(), "IncreaseReplicaCount"))?;
        previous = Some("IncreaseReplicaCount");
    }
    let mut modify = cache
        .modify_replication_group()
        .replication_group_id(name)
        .apply_immediately(true);
    let mut any = false;
    if work.changed("description") {
        modify = modify.replication_group_description(&desired.description);
        any = true;
    }
    if work.changed("engine_version") {
        modify = modify.engine_version(&desired.engine_version);
        any = true;
    }
    if work.changed("node_type") {
        modify = modify.cache_node_type(&desired.node_type);
        any = true;
    }
    if work.changed("automatic_failover") {
        modify = modify.automatic_failover_enabled(desired.automatic_failover);
        any = true;
    }
    if work.changed("multi_az") {
        modify = modify.multi_az_enabled(desired.multi_az);
        any = true;
    }
    if work.changed("snapshot_retention_days") {
        modify = modify.snapshot_retention_limit(desired.snapshot_retention_days as i32);
        any = true;
    }
    if work.changed("security_group_ids") {
        modify = modify.set_security_group_ids(Some(desired.security_group_ids.clone()));
        any = true;
    }
    if work.changed("auth_token") {
        modify = modify.set_auth_token(desired.auth_token.clone());
        any = true;
    }
    if work.changed("parameter_group") {
        modify = modify.cache_parameter_group_name(&desired.parameter_group);
        any = true;
    }
    if any {
        if let Some(after) = previous {
            wait_until_available(ctx, observed, after, "ModifyReplicationGroup").await?;
        }
        modify
            .send()
            .await
            .map_err(api!(subject.clone(), "ModifyReplicationGroup"))?;
        previous = Some("ModifyReplicationGroup");
    }
    if removing {
        if let Some(after) = previous {
            wait_until_available(ctx, observed, after, "DecreaseReplicaCount").await?;
        }
        cache
            .decrease_replica_count()
            .replication_group_id(name)
            .new_replica_count(desired.replicas as i32)
            .apply_immediately(true)
            .send()
            .await
            .map_err(api!(subject.clone(), "DecreaseReplicaCount"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

/// Deletes the subnet group. AWS refuses while a replication group being
/// deleted still uses it: `down` deletes it only once the group is gone.
pub(crate) async fn delete_subnet_group(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .elasticache()
        .delete_cache_subnet_group()
        .cache_subnet_group_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteCacheSubnetGroup"))?;
    Ok(Deleted::Gone)
}

/// The replication group's status, `None` when it is gone.
async fn replication_group_status(ctx: &Ctx, o: &Observed) -> Result<Option<String>> {
    let got = ctx
        .aws
        .elasticache()
        .describe_replication_groups()
        .replication_group_id(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DescribeReplicationGroups"));
    Ok(not_found_is_none(got)?.and_then(|out| {
        out.replication_groups
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|g| g.status.unwrap_or_else(|| "unknown".into()))
    }))
}

/// How long one change of a replication group (`after`: a replica added or
/// removed, failover or Multi-AZ switched) may keep it from `available`
/// before the next change gives up; adding a replica takes AWS 10 to 20
/// minutes.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How often a busy replication group's status is read.
const CHANGE_POLL: Duration = Duration::from_secs(10);

/// Waits until the replication group is `available` again after `after`
/// left it `modifying`, since ElastiCache refuses `next` (and every other
/// change) until then (InvalidReplicationGroupState). A group being
/// deleted, or gone, will not be: an error, as is one still busy after
/// [`CHANGE_TIMEOUT`].
async fn wait_until_available(
    ctx: &Ctx,
    o: &Observed,
    after: &'static str,
    next: &'static str,
) -> Result<()> {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        let status = replication_group_status(ctx, o).await?;
        let (code, message) = match status.as_deref() {
            Some("available") => return Ok(()),
            None => (
                "ReplicationGroupNotFoundFault",
                format!(
                    "replication group {} is gone since {after}",
                    o.resource.name
                ),
            ),
            Some("deleting") => (
                "InvalidReplicationGroupState",
                format!(
                    "replication group {} is being deleted since {after}",
                    o.resource.name
                ),
            ),
            Some(state) if Instant::now() + CHANGE_POLL > deadline => (
                "Timeout",
                format!(
                    "replication group {} is still `{state}` {} minutes after {after}; \
                     ElastiCache accepts {next} only once it is `available`: run `up` again then",
                    o.resource.name,
                    CHANGE_TIMEOUT.as_secs() / 60
                ),
            ),
            Some(_) => {
                tokio::time::sleep(CHANGE_POLL).await;
                continue;
            }
        };
        return Err(AwsError::Api {
            subject: super::subject_of(o),
            action: next,
            code: code.into(),
            message,
            class: Class::of(code, None),
        });
    }
}

/// Deletes the replication group (no final snapshot) and waits until it is
/// gone (see [`super::delete_and_wait`]).
pub(crate) async fn delete_replication_group(
    ctx: &Ctx,
    o: &Observed,
    deadline: std::time::Instant,
) -> Result<Deleted> {
    super::delete_and_wait(
        deadline,
        || replication_group_status(ctx, o),
        || async {
            ctx.aws
                .elasticache()
                .delete_replication_group()
                .replication_group_id(&o.resource.name)
                .retain_primary_cluster(false)
                .send()
                .await
                .map_err(api!(super::subject_of(o), "DeleteReplicationGroup"))?;
            Ok(())
        },
    )
    .await
}
