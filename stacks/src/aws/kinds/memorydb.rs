//! MemoryDB: the subnet group, the engine's user (password authentication),
//! the access control list holding it, and the cluster (one shard, TLS).
//! A user's password cannot be read back: only whether one is set is
//! compared, as for an ElastiCache auth token.

use std::collections::BTreeMap;

use aws_sdk_memorydb::types::{
    AuthenticationMode, InputAuthenticationType, ReplicaConfigurationRequest, Tag,
};

use super::{
    Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, not_found_is_none, outputs,
    reread,
};
use crate::aws::error::Result;
use crate::aws::resolve::{Outputs, PASSWORD_SET};
use crate::graph::plan::Action;
use crate::graph::{Attributes, MemoryDbAcl, MemoryDbCluster, MemoryDbSubnetGroup, MemoryDbUser};

fn memorydb_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

async fn read_tags(ctx: &Ctx, t: &Target, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = ctx
        .aws
        .memorydb()
        .list_tags()
        .resource_arn(arn)
        .send()
        .await
        .map_err(api!(t.subject(), "ListTags"))?;
    Ok(out
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect())
}

async fn sync_tags(ctx: &Ctx, work: &Work, arn: &str) -> Result<()> {
    let (set, remove) = work.tag_changes();
    let db = ctx.aws.memorydb();
    if !set.is_empty() {
        db.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(memorydb_tags(&set)))
            .send()
            .await
            .map_err(api!(work.subject(), "TagResource"))?;
    }
    if !remove.is_empty() {
        db.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(work.subject(), "UntagResource"))?;
    }
    Ok(())
}

/// The ARN of a resource AWS described without one.
fn arn(ctx: &Ctx, kind: &str, name: &str) -> String {
    format!(
        "arn:aws:memorydb:{}:{}:{kind}/{name}",
        ctx.env.region, ctx.env.account
    )
}

/// The outputs every MemoryDB kind but the cluster has.
fn named(name: &str, arn: String) -> Outputs {
    outputs([("name", name.to_string()), ("arn", arn)])
}

pub(crate) async fn read_subnet_group(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let got = ctx
        .aws
        .memorydb()
        .describe_subnet_groups()
        .subnet_group_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeSubnetGroups"));
    let Some(group) = not_found_is_none(got)?
        .and_then(|out| out.subnet_groups.unwrap_or_default().into_iter().next())
    else {
        return Ok(None);
    };
    let arn = group
        .arn
        .clone()
        .unwrap_or_else(|| arn(ctx, "subnetgroup", &t.name));
    let mut subnet_ids: Vec<String> = group
        .subnets()
        .iter()
        .filter_map(|s| s.identifier.clone())
        .collect();
    subnet_ids.sort();
    let attributes = Attributes::MemoryDbSubnetGroup(MemoryDbSubnetGroup {
        description: group.description.clone().unwrap_or_default(),
        subnet_ids,
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(tags, attributes, named(&t.name, arn))))
}

pub(crate) async fn apply_subnet_group(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, MemoryDbSubnetGroup);
    let subject = work.subject();
    let db = ctx.aws.memorydb();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = db
            .create_subnet_group()
            .subnet_group_name(name)
            .description(&desired.description)
            .set_subnet_ids(Some(desired.subnet_ids.clone()))
            .set_tags(Some(memorydb_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateSubnetGroup"));
        return match created {
            Ok(out) => Ok(named(
                name,
                out.subnet_group
                    .and_then(|g| g.arn)
                    .unwrap_or_else(|| arn(ctx, "subnetgroup", name)),
            )),
            Err(e) if e.is_already_exists() => {
                Box::pin(apply_subnet_group(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeSubnetGroups", "the group"))?;
    if work.changed("description") || work.changed("subnet_ids") {
        db.update_subnet_group()
            .subnet_group_name(name)
            .description(&desired.description)
            .set_subnet_ids(Some(desired.subnet_ids.clone()))
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateSubnetGroup"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

/// Deletes the subnet group. AWS refuses while a cluster (even one being
/// deleted) uses it: `down` deletes it once the cluster is gone.
pub(crate) async fn delete_subnet_group(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .memorydb()
        .delete_subnet_group()
        .subnet_group_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteSubnetGroup"))?;
    Ok(Deleted::Gone)
}

fn password_mode(password: &str) -> AuthenticationMode {
    AuthenticationMode::builder()
        .r#type(InputAuthenticationType::Password)
        .passwords(password)
        .build()
}

pub(crate) async fn read_user(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let got = ctx
        .aws
        .memorydb()
        .describe_users()
        .user_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeUsers"));
    let Some(user) =
        not_found_is_none(got)?.and_then(|out| out.users.unwrap_or_default().into_iter().next())
    else {
        return Ok(None);
    };
    let arn = user
        .arn
        .clone()
        .unwrap_or_else(|| arn(ctx, "user", &t.name));
    let passwords = user
        .authentication()
        .and_then(|a| a.password_count)
        .unwrap_or(0);
    let attributes = Attributes::MemoryDbUser(MemoryDbUser {
        access_string: user.access_string.clone().unwrap_or_default(),
        password: if passwords > 0 {
            PASSWORD_SET.into()
        } else {
            String::new()
        },
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(tags, attributes, named(&t.name, arn))))
}

pub(crate) async fn apply_user(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, MemoryDbUser);
    let subject = work.subject();
    let db = ctx.aws.memorydb();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = db
            .create_user()
            .user_name(name)
            .access_string(&desired.access_string)
            .authentication_mode(password_mode(&desired.password))
            .set_tags(Some(memorydb_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateUser"));
        return match created {
            Ok(out) => Ok(named(
                name,
                out.user
                    .and_then(|u| u.arn)
                    .unwrap_or_else(|| arn(ctx, "user", name)),
            )),
            Err(e) if e.is_already_exists() => {
                Box::pin(apply_user(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeUsers", "the user"))?;
    if work.changed("access_string") || work.changed("password") {
        db.update_user()
            .user_name(name)
            .access_string(&desired.access_string)
            .authentication_mode(password_mode(&desired.password))
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateUser"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

/// Deletes the user; `down` deletes the ACL holding it first.
pub(crate) async fn delete_user(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .memorydb()
        .delete_user()
        .user_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteUser"))?;
    Ok(Deleted::Gone)
}

pub(crate) async fn read_acl(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let got = ctx
        .aws
        .memorydb()
        .describe_acls()
        .acl_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeACLs"));
    let Some(acl) =
        not_found_is_none(got)?.and_then(|out| out.acls.unwrap_or_default().into_iter().next())
    else {
        return Ok(None);
    };
    let arn = acl.arn.clone().unwrap_or_else(|| arn(ctx, "acl", &t.name));
    let mut user_names = acl.user_names().to_vec();
    user_names.sort();
    let attributes = Attributes::MemoryDbAcl(MemoryDbAcl { user_names });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(tags, attributes, named(&t.name, arn))))
}

pub(crate) async fn apply_acl(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, MemoryDbAcl);
    let subject = work.subject();
    let db = ctx.aws.memorydb();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = db
            .create_acl()
            .acl_name(name)
            .set_user_names(Some(desired.user_names.clone()))
            .set_tags(Some(memorydb_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateACL"));
        return match created {
            Ok(out) => Ok(named(
                name,
                out.acl
                    .and_then(|a| a.arn)
                    .unwrap_or_else(|| arn(ctx, "acl", name)),
            )),
            Err(e) if e.is_already_exists() => {
                Box::pin(apply_acl(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeACLs", "the ACL"))?;
    let Attributes::MemoryDbAcl(seen) = &observed.resource.attributes else {
        unreachable!("an ACL reads as one");
    };
    let add: Vec<String> = desired
        .user_names
        .iter()
        .filter(|u| !seen.user_names.contains(u))
        .cloned()
        .collect();
    let remove: Vec<String> = seen
        .user_names
        .iter()
        .filter(|u| !desired.user_names.contains(u))
        .cloned()
        .collect();
    if !add.is_empty() || !remove.is_empty() {
        db.update_acl()
            .acl_name(name)
            .set_user_names_to_add((!add.is_empty()).then_some(add))
            .set_user_names_to_remove((!remove.is_empty()).then_some(remove))
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateACL"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

/// Deletes the ACL. AWS refuses while a cluster uses it: `down` deletes it
/// once the cluster is gone.
pub(crate) async fn delete_acl(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .memorydb()
        .delete_acl()
        .acl_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteACL"))?;
    Ok(Deleted::Gone)
}

pub(crate) async fn read_cluster(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let got = ctx
        .aws
        .memorydb()
        .describe_clusters()
        .cluster_name(&t.name)
        .show_shard_details(true)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeClusters"));
    let Some(c) =
        not_found_is_none(got)?.and_then(|out| out.clusters.unwrap_or_default().into_iter().next())
    else {
        return Ok(None);
    };
    let arn = c
        .arn
        .clone()
        .ok_or_else(|| incomplete(t, "DescribeClusters", "ARN"))?;
    let endpoint = c.cluster_endpoint.as_ref();
    let port = endpoint
        .and_then(|e| u16::try_from(e.port).ok())
        .unwrap_or(0);
    // Replicas per shard: the nodes of the first shard but its primary.
    let replicas = c
        .shards()
        .first()
        .and_then(|s| s.number_of_nodes.or(i32::try_from(s.nodes().len()).ok()))
        .and_then(|n| u32::try_from(n.saturating_sub(1)).ok())
        .unwrap_or(0);
    let mut security_group_ids: Vec<String> = c
        .security_groups()
        .iter()
        .filter_map(|s| s.security_group_id.clone())
        .collect();
    security_group_ids.sort();
    let attributes = Attributes::MemoryDbCluster(MemoryDbCluster {
        description: c.description.clone().unwrap_or_default(),
        engine_version: c.engine_version.clone().unwrap_or_default(),
        node_type: c.node_type.clone().unwrap_or_default(),
        shards: c
            .number_of_shards
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        replicas,
        snapshot_retention_days: c
            .snapshot_retention_limit
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
        port,
        subnet_group: c.subnet_group_name.clone().unwrap_or_default(),
        parameter_group: c.parameter_group_name.clone().unwrap_or_default(),
        acl: c.acl_name.clone().unwrap_or_default(),
        security_group_ids,
        tls: c.tls_enabled.unwrap_or(false),
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([
            (
                "endpoint",
                endpoint.and_then(|e| e.address.clone()).unwrap_or_default(),
            ),
            ("port", port.to_string()),
            ("arn", arn),
        ]),
    )))
}

pub(crate) async fn apply_cluster(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, MemoryDbCluster);
    let subject = work.subject();
    let db = ctx.aws.memorydb();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = db
            .create_cluster()
            .cluster_name(name)
            .description(&desired.description)
            .engine_version(&desired.engine_version)
            .node_type(&desired.node_type)
            .num_shards(desired.shards as i32)
            .num_replicas_per_shard(desired.replicas as i32)
            .snapshot_retention_limit(desired.snapshot_retention_days as i32)
            .port(i32::from(desired.port))
            .subnet_group_name(&desired.subnet_group)
            .parameter_group_name(&desired.parameter_group)
            .acl_name(&desired.acl)
            .set_security_group_ids(Some(desired.security_group_ids.clone()))
            .tls_enabled(desired.tls)
            .set_tags(Some(memorydb_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateCluster"));
        match created {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {
                return Box::pin(apply_cluster(ctx, &reread(ctx, work).await?)).await;
            }
            Err(e) => return Err(e),
        }
        // The endpoint is known once the cluster is described.
        let again = reread(ctx, work).await?;
        let observed = again
            .observed
            .ok_or_else(|| incomplete(&work.target(), "DescribeClusters", "the new cluster"))?;
        return Ok(observed.outputs);
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeClusters", "the cluster"))?;
    // Engine version, node type and replicas go in calls of their own, so
    // that one refused resize does not hold back the other changes.
    let mut updates = Vec::new();
    let base = || db.update_cluster().cluster_name(name);
    if work.changed("description")
        || work.changed("security_group_ids")
        || work.changed("snapshot_retention_days")
        || work.changed("parameter_group")
        || work.changed("acl")
    {
        updates.push(
            base()
                .description(&desired.description)
                .set_security_group_ids(Some(desired.security_group_ids.clone()))
                .snapshot_retention_limit(desired.snapshot_retention_days as i32)
                .parameter_group_name(&desired.parameter_group)
                .acl_name(&desired.acl),
        );
    }
    if work.changed("engine_version") {
        updates.push(base().engine_version(&desired.engine_version));
    }
    if work.changed("node_type") {
        updates.push(base().node_type(&desired.node_type));
    }
    if work.changed("replicas") {
        updates.push(
            base().replica_configuration(
                ReplicaConfigurationRequest::builder()
                    .replica_count(desired.replicas as i32)
                    .build(),
            ),
        );
    }
    for update in updates {
        update
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateCluster"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

/// The cluster's status, `None` when it is gone.
async fn cluster_status(ctx: &Ctx, o: &Observed) -> Result<Option<String>> {
    let got = ctx
        .aws
        .memorydb()
        .describe_clusters()
        .cluster_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DescribeClusters"));
    Ok(not_found_is_none(got)?.and_then(|out| {
        out.clusters
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|c| c.status.unwrap_or_else(|| "unknown".into()))
    }))
}

/// Deletes the cluster (no final snapshot) and waits until it is gone (see
/// [`super::delete_and_wait`]): its ACL, subnet group and security group
/// can only be deleted then.
pub(crate) async fn delete_cluster(
    ctx: &Ctx,
    o: &Observed,
    deadline: std::time::Instant,
) -> Result<Deleted> {
    super::delete_and_wait(
        deadline,
        || cluster_status(ctx, o),
        || async {
            ctx.aws
                .memorydb()
                .delete_cluster()
                .cluster_name(&o.resource.name)
                .send()
                .await
                .map_err(api!(super::subject_of(o), "DeleteCluster"))?;
            Ok(())
        },
    )
    .await
}
