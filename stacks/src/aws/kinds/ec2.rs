//! EC2: security groups (rules folded in, synced rule by rule) and the
//! executors' launch template (a change is a new version).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    IpPermission, IpRange, LaunchTemplateHttpTokensState,
    LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest, RequestLaunchTemplateData,
    ResourceType, Tag, TagSpecification, UserIdGroupPair,
};
use base64::Engine as _;

use super::{Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, outputs, reread};
use crate::aws::context::filter;
use crate::aws::error::Result;
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{Attributes, LaunchTemplate, Peer, Rule, SecurityGroup, TAG_STACK};

fn tags_of(tags: Option<&[Tag]>) -> BTreeMap<String, String> {
    tags.unwrap_or_default()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_spec(kind: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

/// Applies tag changes to an EC2 resource id.
async fn sync_tags(ctx: &Ctx, work: &Work, resource_id: &str) -> Result<()> {
    let (set, remove) = work.tag_changes();
    if !set.is_empty() {
        ctx.aws
            .ec2()
            .create_tags()
            .resources(resource_id)
            .set_tags(Some(ec2_tags(&set)))
            .send()
            .await
            .map_err(api!(work.subject(), "CreateTags"))?;
    }
    if !remove.is_empty() {
        ctx.aws
            .ec2()
            .delete_tags()
            .resources(resource_id)
            .set_tags(Some(
                remove
                    .iter()
                    .map(|k| Tag::builder().key(k).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(api!(work.subject(), "DeleteTags"))?;
    }
    Ok(())
}

fn rules(permissions: Option<&[IpPermission]>) -> Vec<Rule> {
    let mut out = Vec::new();
    for p in permissions.unwrap_or_default() {
        let protocol = p.ip_protocol.clone().unwrap_or_else(|| "-1".into());
        let (from_port, to_port) = if protocol == "-1" {
            (-1, -1)
        } else {
            (p.from_port.unwrap_or(-1), p.to_port.unwrap_or(-1))
        };
        let rule = |peer: Peer, description: Option<&String>| Rule {
            protocol: protocol.clone(),
            from_port,
            to_port,
            peer,
            description: description.cloned().unwrap_or_default(),
        };
        for r in p.ip_ranges() {
            if let Some(cidr) = &r.cidr_ip {
                out.push(rule(Peer::Cidr(cidr.clone()), r.description.as_ref()));
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = &g.group_id {
                out.push(rule(
                    Peer::SecurityGroup(id.clone()),
                    g.description.as_ref(),
                ));
            }
        }
    }
    out
}

pub(crate) async fn read_security_group(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let out = ctx
        .aws
        .ec2()
        .describe_security_groups()
        .filters(filter("group-name", &t.name))
        .filters(filter("vpc-id", &ctx.env.vpc_id))
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeSecurityGroups"))?;
    let Some(sg) = out.security_groups.unwrap_or_default().into_iter().next() else {
        return Ok(None);
    };
    let id = sg
        .group_id
        .clone()
        .ok_or_else(|| incomplete(t, "DescribeSecurityGroups", "GroupId"))?;
    let mut attributes = Attributes::SecurityGroup(SecurityGroup {
        description: sg.description.clone().unwrap_or_default(),
        vpc_id: sg.vpc_id.clone().unwrap_or_default(),
        ingress: rules(sg.ip_permissions.as_deref()),
        egress: rules(sg.ip_permissions_egress.as_deref()),
    });
    crate::aws::resolve::normalize(&mut attributes);
    Ok(Some(t.observed(
        tags_of(sg.tags.as_deref()),
        attributes,
        outputs([("id", id)]),
    )))
}

/// Rules match when they allow the same traffic; descriptions are compared
/// separately (they can change in place).
fn same_traffic(a: &Rule, b: &Rule) -> bool {
    a.protocol == b.protocol
        && a.from_port == b.from_port
        && a.to_port == b.to_port
        && a.peer == b.peer
}

fn permission(r: &Rule) -> IpPermission {
    let mut b = IpPermission::builder().ip_protocol(&r.protocol);
    if r.protocol != "-1" {
        b = b.from_port(r.from_port).to_port(r.to_port);
    }
    let description = (!r.description.is_empty()).then(|| r.description.clone());
    match &r.peer {
        Peer::Cidr(cidr) => b.ip_ranges(
            IpRange::builder()
                .cidr_ip(cidr)
                .set_description(description)
                .build(),
        ),
        Peer::SecurityGroup(group) => b.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(group)
                .set_description(description)
                .build(),
        ),
    }
    .build()
}

pub(crate) async fn apply_security_group(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, SecurityGroup);
    let subject = work.subject();
    if work.action == Action::Create {
        let created = ctx
            .aws
            .ec2()
            .create_security_group()
            .group_name(&work.desired.name)
            .description(&desired.description)
            .vpc_id(&desired.vpc_id)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, &work.desired.tags))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateSecurityGroup"));
        match created {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        // A new group comes with AWS's default egress rule: read what is
        // really there before syncing the rules.
        return Box::pin(apply_security_group(ctx, &reread(ctx, work).await?)).await;
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeSecurityGroups", "the group"))?;
    let id = observed.outputs["id"].clone();
    let Attributes::SecurityGroup(seen) = &observed.resource.attributes else {
        unreachable!("a security group reads as one");
    };
    for egress in [false, true] {
        let (want, have) = if egress {
            (&desired.egress, &seen.egress)
        } else {
            (&desired.ingress, &seen.ingress)
        };
        let revoke: Vec<IpPermission> = have
            .iter()
            .filter(|h| !want.iter().any(|w| same_traffic(w, h)))
            .map(permission)
            .collect();
        let authorize: Vec<IpPermission> = want
            .iter()
            .filter(|w| !have.iter().any(|h| same_traffic(w, h)))
            .map(permission)
            .collect();
        let describe: Vec<IpPermission> = want
            .iter()
            .filter(|w| {
                have.iter()
                    .any(|h| same_traffic(w, h) && h.description != w.description)
            })
            .map(permission)
            .collect();
        let ec2 = ctx.aws.ec2();
        if !revoke.is_empty() {
            if egress {
                ec2.revoke_security_group_egress()
                    .group_id(&id)
                    .set_ip_permissions(Some(revoke))
                    .send()
                    .await
                    .map_err(api!(subject.clone(), "RevokeSecurityGroupEgress"))?;
            } else {
                ec2.revoke_security_group_ingress()
                    .group_id(&id)
                    .set_ip_permissions(Some(revoke))
                    .send()
                    .await
                    .map_err(api!(subject.clone(), "RevokeSecurityGroupIngress"))?;
            }
        }
        if !authorize.is_empty() {
            let result = if egress {
                ec2.authorize_security_group_egress()
                    .group_id(&id)
                    .set_ip_permissions(Some(authorize))
                    .send()
                    .await
                    .map(drop)
                    .map_err(api!(subject.clone(), "AuthorizeSecurityGroupEgress"))
            } else {
                ec2.authorize_security_group_ingress()
                    .group_id(&id)
                    .set_ip_permissions(Some(authorize))
                    .send()
                    .await
                    .map(drop)
                    .map_err(api!(subject.clone(), "AuthorizeSecurityGroupIngress"))
            };
            // A rule added by a crashed run is already there.
            match result {
                Err(e) if !e.is_already_exists() => return Err(e),
                _ => {}
            }
        }
        if !describe.is_empty() {
            if egress {
                ec2.update_security_group_rule_descriptions_egress()
                    .group_id(&id)
                    .set_ip_permissions(Some(describe))
                    .send()
                    .await
                    .map_err(api!(
                        subject.clone(),
                        "UpdateSecurityGroupRuleDescriptionsEgress"
                    ))?;
            } else {
                ec2.update_security_group_rule_descriptions_ingress()
                    .group_id(&id)
                    .set_ip_permissions(Some(describe))
                    .send()
                    .await
                    .map_err(api!(
                        subject.clone(),
                        "UpdateSecurityGroupRuleDescriptionsIngress"
                    ))?;
            }
        }
    }
    sync_tags(ctx, work, &id).await?;
    Ok(outputs([("id", id)]))
}

pub(crate) async fn read_launch_template(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let found = ctx
        .aws
        .ec2()
        .describe_launch_templates()
        .launch_template_names(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeLaunchTemplates"));
    let Some(found) = super::not_found_is_none(found)? else {
        return Ok(None);
    };
    let Some(lt) = found
        .launch_templates
        .unwrap_or_default()
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let id = lt
        .launch_template_id
        .clone()
        .ok_or_else(|| incomplete(t, "DescribeLaunchTemplates", "LaunchTemplateId"))?;
    let latest = lt.latest_version_number.unwrap_or(1);
    let versions = ctx
        .aws
        .ec2()
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .versions(latest.to_string())
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeLaunchTemplateVersions"))?;
    let data = versions
        .launch_template_versions
        .unwrap_or_default()
        .into_iter()
        .next()
        .and_then(|v| v.launch_template_data)
        .ok_or_else(|| incomplete(t, "DescribeLaunchTemplateVersions", "LaunchTemplateData"))?;
    let nic = data.network_interfaces().first();
    let mut security_group_ids: Vec<String> = match nic {
        Some(n) => n.groups().to_vec(),
        None => data.security_group_ids().to_vec(),
    };
    security_group_ids.sort();
    let user_data = data
        .user_data
        .as_deref()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let metadata = data.metadata_options.as_ref();
    let attributes = Attributes::LaunchTemplate(LaunchTemplate {
        image_id: data.image_id.clone().unwrap_or_default(),
        instance_type: data
            .instance_type
            .as_ref()
            .map(|i| i.as_str().to_string())
            .unwrap_or_default(),
        instance_profile_arn: data
            .iam_instance_profile
            .as_ref()
            .and_then(|p| p.arn.clone())
            .unwrap_or_default(),
        security_group_ids,
        associate_public_ip_address: nic
            .and_then(|n| n.associate_public_ip_address)
            .unwrap_or(false),
        http_tokens: metadata
            .and_then(|m| m.http_tokens.as_ref())
            .map(|h| h.as_str().to_string())
            .unwrap_or_else(|| "optional".into()),
        http_put_response_hop_limit: metadata
            .and_then(|m| m.http_put_response_hop_limit)
            .and_then(|h| u32::try_from(h).ok())
            .unwrap_or(1),
        user_data,
    });
    Ok(Some(t.observed(
        tags_of(lt.tags.as_deref()),
        attributes,
        outputs([("id", id), ("latest_version", latest.to_string())]),
    )))
}

fn launch_template_data(lt: &LaunchTemplate) -> RequestLaunchTemplateData {
    RequestLaunchTemplateData::builder()
        .image_id(&lt.image_id)
        .instance_type(lt.instance_type.as_str().into())
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .arn(&lt.instance_profile_arn)
                .build(),
        )
        .network_interfaces(
            LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                .device_index(0)
                .associate_public_ip_address(lt.associate_public_ip_address)
                .set_groups(Some(lt.security_group_ids.clone()))
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::from(lt.http_tokens.as_str()))
                .http_put_response_hop_limit(lt.http_put_response_hop_limit as i32)
                .build(),
        )
        .user_data(base64::engine::general_purpose::STANDARD.encode(&lt.user_data))
        .build()
}

pub(crate) async fn apply_launch_template(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, LaunchTemplate);
    let subject = work.subject();
    if work.action == Action::Create {
        let created = ctx
            .aws
            .ec2()
            .create_launch_template()
            .launch_template_name(&work.desired.name)
            .launch_template_data(launch_template_data(desired))
            .tag_specifications(tag_spec(ResourceType::LaunchTemplate, &work.desired.tags))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateLaunchTemplate"));
        return match created {
            Ok(out) => {
                let lt = out.launch_template.ok_or_else(|| {
                    incomplete(&work.target(), "CreateLaunchTemplate", "LaunchTemplate")
                })?;
                Ok(outputs([
                    ("id", lt.launch_template_id.unwrap_or_default()),
                    (
                        "latest_version",
                        lt.latest_version_number.unwrap_or(1).to_string(),
                    ),
                ]))
            }
            Err(e) if e.is_already_exists() => {
                let again = reread(ctx, work).await?;
                if again.observed.is_some() {
                    Box::pin(apply_launch_template(ctx, &again)).await
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeLaunchTemplates", "the template"))?;
    let id = observed.outputs["id"].clone();
    let mut latest = observed.outputs["latest_version"].clone();
    if observed.resource.attributes != work.desired.attributes {
        let out = ctx
            .aws
            .ec2()
            .create_launch_template_version()
            .launch_template_id(&id)
            .launch_template_data(launch_template_data(desired))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateLaunchTemplateVersion"))?;
        if let Some(v) = out.launch_template_version.and_then(|v| v.version_number) {
            latest = v.to_string();
        }
    }
    sync_tags(ctx, work, &id).await?;
    Ok(outputs([("id", id), ("latest_version", latest)]))
}

/// Deletes a security group. The stack's other groups may allow traffic
/// from it (Redis from the tasks): AWS refuses to delete a group another
/// group's rules refer to, so those rules are revoked first, from the
/// stack's own (tagged) groups only.
pub(crate) async fn delete_security_group(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let subject = super::subject_of(o);
    let id = super::output(o, "id", "DescribeSecurityGroups")?;
    let ec2 = ctx.aws.ec2();
    let ours = ec2
        .describe_security_groups()
        .filters(filter(&format!("tag:{TAG_STACK}"), &ctx.stack))
        .send()
        .await
        .map_err(api!(subject.clone(), "DescribeSecurityGroups"))?;
    for sg in ours.security_groups.unwrap_or_default() {
        let Some(other) = sg.group_id.as_deref().filter(|g| *g != id) else {
            continue;
        };
        for egress in [false, true] {
            let perms = if egress {
                sg.ip_permissions_egress()
            } else {
                sg.ip_permissions()
            };
            let referring: Vec<IpPermission> = perms
                .iter()
                .filter(|p| {
                    p.user_id_group_pairs()
                        .iter()
                        .any(|g| g.group_id.as_deref() == Some(id))
                })
                .map(|p| {
                    let mut b = IpPermission::builder()
                        .set_ip_protocol(p.ip_protocol.clone())
                        .set_from_port(p.from_port)
                        .set_to_port(p.to_port);
                    b = b.user_id_group_pairs(UserIdGroupPair::builder().group_id(id).build());
                    b.build()
                })
                .collect();
            if referring.is_empty() {
                continue;
            }
            let revoked = if egress {
                ec2.revoke_security_group_egress()
                    .group_id(other)
                    .set_ip_permissions(Some(referring))
                    .send()
                    .await
                    .map(drop)
                    .map_err(api!(subject.clone(), "RevokeSecurityGroupEgress"))
            } else {
                ec2.revoke_security_group_ingress()
                    .group_id(other)
                    .set_ip_permissions(Some(referring))
                    .send()
                    .await
                    .map(drop)
                    .map_err(api!(subject.clone(), "RevokeSecurityGroupIngress"))
            };
            match revoked {
                // Revoked meanwhile (a concurrent delete of the other group).
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
        }
    }
    ec2.delete_security_group()
        .group_id(id)
        .send()
        .await
        .map_err(api!(subject, "DeleteSecurityGroup"))?;
    Ok(Deleted::Gone)
}

/// Deletes the launch template (every version).
pub(crate) async fn delete_launch_template(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let id = super::output(o, "id", "DescribeLaunchTemplates")?;
    ctx.aws
        .ec2()
        .delete_launch_template()
        .launch_template_id(id)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteLaunchTemplate"))?;
    Ok(Deleted::Gone)
}
