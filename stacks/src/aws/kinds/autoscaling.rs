//! EC2 Auto Scaling: the executors' group and its step-scaling policies.
//! A step policy has no cooldown of its own in EC2 Auto Scaling: the
//! graph's cooldown is the policy's estimated instance warm-up, which is
//! what keeps the next step from firing too soon.

use std::collections::BTreeMap;

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, StepAdjustment, Tag};

use super::{Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, outputs, reread};
use crate::aws::error::Result;
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{self, Attributes, AutoScalingGroup, ScalingPolicy, StepScaling};

fn asg_tags(name: &str, tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(true)
                .build()
        })
        .collect()
}

pub(crate) async fn read_group(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let out = ctx
        .aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeAutoScalingGroups"))?;
    let Some(g) = out
        .auto_scaling_groups
        .unwrap_or_default()
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let lt = g.launch_template.as_ref();
    let mut subnets: Vec<String> = g
        .vpc_zone_identifier
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    subnets.sort();
    let attributes = Attributes::AutoScalingGroup(AutoScalingGroup {
        launch_template_id: lt
            .and_then(|l| l.launch_template_id.clone())
            .unwrap_or_default(),
        launch_template_version: lt.and_then(|l| l.version.clone()).unwrap_or_default(),
        min_size: u32::try_from(g.min_size.unwrap_or(0)).unwrap_or(0),
        max_size: u32::try_from(g.max_size.unwrap_or(0)).unwrap_or(0),
        desired_capacity: u32::try_from(g.desired_capacity.unwrap_or(0)).unwrap_or(0),
        scaling_managed: false,
        subnets,
        health_check_type: g.health_check_type.clone().unwrap_or_default(),
        health_check_grace_period_seconds: u32::try_from(g.health_check_grace_period.unwrap_or(0))
            .unwrap_or(0),
    });
    let tags = g
        .tags()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect();
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([("name", t.name.clone())]),
    )))
}

fn launch_template(g: &AutoScalingGroup) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_id(&g.launch_template_id)
        .version(&g.launch_template_version)
        .build()
}

pub(crate) async fn apply_group(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, AutoScalingGroup);
    let subject = work.subject();
    let asg = ctx.aws.autoscaling();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(launch_template(desired))
            .min_size(desired.min_size as i32)
            .max_size(desired.max_size as i32)
            .desired_capacity(desired.desired_capacity as i32)
            .vpc_zone_identifier(desired.subnets.join(","))
            .health_check_type(&desired.health_check_type)
            .health_check_grace_period(desired.health_check_grace_period_seconds as i32)
            .set_tags(Some(asg_tags(name, &work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateAutoScalingGroup"));
        return match created {
            Ok(_) => Ok(outputs([("name", name.clone())])),
            Err(e) if e.is_already_exists() => {
                Box::pin(apply_group(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    if work.observed.is_none() {
        return Err(incomplete(
            &work.target(),
            "DescribeAutoScalingGroups",
            "the group",
        ));
    }
    let mut update = asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(name);
    let mut any = false;
    if work.changed("launch_template_id") || work.changed("launch_template_version") {
        update = update.launch_template(launch_template(desired));
        any = true;
    }
    if work.changed("min_size") || work.changed("max_size") {
        update = update
            .min_size(desired.min_size as i32)
            .max_size(desired.max_size as i32);
        any = true;
    }
    // Scaling policies own the capacity of a scaled group.
    if work.changed("desired_capacity") && !desired.scaling_managed {
        update = update.desired_capacity(desired.desired_capacity as i32);
        any = true;
    }
    if work.changed("subnets") {
        update = update.vpc_zone_identifier(desired.subnets.join(","));
        any = true;
    }
    if work.changed("health_check_type") || work.changed("health_check_grace_period_seconds") {
        update = update
            .health_check_type(&desired.health_check_type)
            .health_check_grace_period(desired.health_check_grace_period_seconds as i32);
        any = true;
    }
    if any {
        update
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateAutoScalingGroup"))?;
    }
    let (set, remove) = work.tag_changes();
    if !set.is_empty() {
        asg.create_or_update_tags()
            .set_tags(Some(asg_tags(name, &set)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateOrUpdateTags"))?;
    }
    if !remove.is_empty() {
        asg.delete_tags()
            .set_tags(Some(
                remove
                    .iter()
                    .map(|k| {
                        Tag::builder()
                            .resource_id(name)
                            .resource_type("auto-scaling-group")
                            .key(k)
                            .build()
                    })
                    .collect(),
            ))
            .send()
            .await
            .map_err(api!(subject.clone(), "DeleteTags"))?;
    }
    Ok(outputs([("name", name.clone())]))
}

pub(crate) async fn read_policy(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let out = ctx
        .aws
        .autoscaling()
        .describe_policies()
        .policy_names(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribePolicies"))?;
    let Some(p) = out
        .scaling_policies
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.policy_name.as_deref() == Some(t.name.as_str()))
    else {
        return Ok(None);
    };
    let policy_type = p.policy_type.clone().unwrap_or_default();
    let step_scaling = (policy_type == "StepScaling").then(|| StepScaling {
        adjustment_type: p.adjustment_type.clone().unwrap_or_default(),
        cooldown_seconds: p
            .estimated_instance_warmup
            .and_then(|w| u64::try_from(w).ok())
            .unwrap_or(0),
        metric_aggregation: p
            .metric_aggregation_type
            .clone()
            .unwrap_or_else(|| "Average".into()),
        steps: p
            .step_adjustments()
            .iter()
            .map(|s| graph::StepAdjustment {
                lower_bound: s.metric_interval_lower_bound,
                upper_bound: s.metric_interval_upper_bound,
                adjustment: s.scaling_adjustment.unwrap_or(0),
            })
            .collect(),
    });
    let attributes = Attributes::ScalingPolicy(ScalingPolicy {
        target: p.auto_scaling_group_name.clone().unwrap_or_default(),
        policy_type,
        step_scaling,
        target_tracking: None,
    });
    Ok(Some(t.observed(
        BTreeMap::new(),
        attributes,
        outputs([("arn", p.policy_arn.clone().unwrap_or_default())]),
    )))
}

pub(crate) async fn apply_policy(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ScalingPolicy);
    let subject = work.subject();
    let mut put = ctx
        .aws
        .autoscaling()
        .put_scaling_policy()
        .auto_scaling_group_name(&desired.target)
        .policy_name(&work.desired.name)
        .policy_type(&desired.policy_type);
    if let Some(step) = &desired.step_scaling {
        put = put
            .adjustment_type(&step.adjustment_type)
            .metric_aggregation_type(&step.metric_aggregation)
            .estimated_instance_warmup(step.cooldown_seconds as i32)
            .set_step_adjustments(Some(
                step.steps
                    .iter()
                    .map(|s| {
                        StepAdjustment::builder()
                            .set_metric_interval_lower_bound(s.lower_bound)
                            .set_metric_interval_upper_bound(s.upper_bound)
                            .scaling_adjustment(s.adjustment)
                            .build()
                    })
                    .collect(),
            ));
    }
    let out = put
        .send()
        .await
        .map_err(api!(subject.clone(), "PutScalingPolicy"))?;
    if let Some(arn) = out.policy_arn.filter(|a| !a.is_empty()) {
        return Ok(outputs([("arn", arn)]));
    }
    // Some implementations leave the ARN out of the answer: read it back.
    read_policy(ctx, &work.target())
        .await?
        .map(|o| o.outputs)
        .ok_or_else(|| incomplete(&work.target(), "PutScalingPolicy", "PolicyARN"))
}

/// The group's status (`Delete in progress`, or `present`), `None` once gone.
async fn group_status(ctx: &Ctx, o: &Observed) -> Result<Option<String>> {
    let out = ctx
        .aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DescribeAutoScalingGroups"))?;
    Ok(out
        .auto_scaling_groups
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|g| g.status.unwrap_or_else(|| "present".into())))
}

/// Deletes the group with its instances (`ForceDelete`) and waits, up to
/// `deadline`, until it is gone: the launch template and the instance
/// profile its instances use go after it.
pub(crate) async fn delete_group(
    ctx: &Ctx,
    o: &Observed,
    deadline: std::time::Instant,
) -> Result<Deleted> {
    match group_status(ctx, o).await? {
        None => return Ok(Deleted::AlreadyGone),
        Some(s) if s.starts_with("Delete") => {}
        Some(_) => {
            let deleted = ctx
                .aws
                .autoscaling()
                .delete_auto_scaling_group()
                .auto_scaling_group_name(&o.resource.name)
                .force_delete(true)
                .send()
                .await
                .map_err(api!(super::subject_of(o), "DeleteAutoScalingGroup"));
            match deleted {
                // EC2 Auto Scaling says "not found" with a ValidationError.
                Err(e)
                    if e.code() == Some("ValidationError")
                        && e.to_string().contains("not found") =>
                {
                    return Ok(Deleted::AlreadyGone);
                }
                other => other?,
            };
        }
    }
    super::wait_gone(deadline, std::time::Duration::from_secs(5), || {
        group_status(ctx, o)
    })
    .await
}

/// Deletes a scaling policy of the group (its alarms go first).
pub(crate) async fn delete_policy(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let Attributes::ScalingPolicy(p) = &o.resource.attributes else {
        unreachable!("a scaling policy reads as one");
    };
    let deleted = ctx
        .aws
        .autoscaling()
        .delete_policy()
        .auto_scaling_group_name(&p.target)
        .policy_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeletePolicy"));
    match deleted {
        Err(e) if e.code() == Some("ValidationError") && e.to_string().contains("not found") => {
            Ok(Deleted::AlreadyGone)
        }
        other => other.map(|_| Deleted::Gone),
    }
}
