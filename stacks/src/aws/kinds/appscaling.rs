//! Application Auto Scaling: the ECS services' scalable targets (the
//! bounds) and their step or target-tracking policies. Both calls are
//! upserts, so create and update are the same request.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_applicationautoscaling::types::{
    AdjustmentType, MetricAggregationType, MetricType, PolicyType, PredefinedMetricSpecification,
    ScalableDimension, ServiceNamespace, StepAdjustment, StepScalingPolicyConfiguration,
    TargetTrackingScalingPolicyConfiguration,
};

use super::{Ctx, Deleted, Observed, Target, Work, api, attrs, outputs};
use crate::aws::error::Result;
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{self, Attributes, ScalableTarget, ScalingPolicy, StepScaling, TargetTracking};

/// The one dimension stackctl scales.
const DIMENSION: ScalableDimension = ScalableDimension::EcsServiceDesiredCount;

pub(crate) async fn read_target(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let scaling = ctx.aws.appscaling();
    let out = scaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(&t.name)
        .scalable_dimension(DIMENSION)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeScalableTargets"))?;
    let Some(target) = out.scalable_targets.unwrap_or_default().into_iter().next() else {
        return Ok(None);
    };
    let arn = target.scalable_target_arn.clone().unwrap_or_default();
    let attributes = Attributes::ScalableTarget(ScalableTarget {
        service_namespace: target.service_namespace.as_str().to_string(),
        resource_id: target.resource_id.clone(),
        scalable_dimension: target.scalable_dimension.as_str().to_string(),
        min_capacity: u32::try_from(target.min_capacity).unwrap_or(0),
        max_capacity: u32::try_from(target.max_capacity).unwrap_or(0),
    });
    let mut observed = t.observed(
        BTreeMap::new(),
        attributes,
        outputs([("resource_id", target.resource_id), ("arn", arn)]),
    );
    observed.tags_reported = false;
    Ok(Some(observed))
}

pub(crate) async fn apply_target(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ScalableTarget);
    let subject = work.subject();
    let scaling = ctx.aws.appscaling();
    let observed = work.observed.as_ref();
    if work.action == Action::Create || work.changed("min_capacity") || work.changed("max_capacity")
    {
        let tags: HashMap<String, String> = work.desired.tags.clone().into_iter().collect();
        scaling
            .register_scalable_target()
            .service_namespace(ServiceNamespace::from(desired.service_namespace.as_str()))
            .resource_id(&desired.resource_id)
            .scalable_dimension(ScalableDimension::from(desired.scalable_dimension.as_str()))
            .min_capacity(desired.min_capacity as i32)
            .max_capacity(desired.max_capacity as i32)
            // Tags only apply when the target is created.
            .set_tags((work.action == Action::Create).then_some(tags))
            .send()
            .await
            .map_err(api!(subject.clone(), "RegisterScalableTarget"))?;
    }
    // Tags are set when the target is registered and not read back.
    let mut arn = observed
        .and_then(|o| o.outputs.get("arn").cloned())
        .unwrap_or_default();
    if work.action == Action::Create
        && let Some(o) = read_target(ctx, &work.target()).await?
    {
        arn = o.outputs.get("arn").cloned().unwrap_or_default();
    }
    Ok(outputs([
        ("resource_id", desired.resource_id.clone()),
        ("arn", arn),
    ]))
}

pub(crate) async fn read_policy(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let out = ctx
        .aws
        .appscaling()
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .policy_names(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeScalingPolicies"))?;
    let Some(p) = out
        .scaling_policies
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.policy_name == t.name)
    else {
        return Ok(None);
    };
    let step_scaling = p
        .step_scaling_policy_configuration
        .as_ref()
        .map(|c| StepScaling {
            adjustment_type: c
                .adjustment_type
                .as_ref()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default(),
            cooldown_seconds: c.cooldown.and_then(|c| u64::try_from(c).ok()).unwrap_or(0),
            metric_aggregation: c
                .metric_aggregation_type
                .as_ref()
                .map_or("Average", |m| m.as_str())
                .to_string(),
            steps: c
                .step_adjustments()
                .iter()
                .map(|s| graph::StepAdjustment {
                    lower_bound: s.metric_interval_lower_bound,
                    upper_bound: s.metric_interval_upper_bound,
                    adjustment: s.scaling_adjustment,
                })
                .collect(),
        });
    let target_tracking = p
        .target_tracking_scaling_policy_configuration
        .as_ref()
        .map(|c| TargetTracking {
            predefined_metric: c
                .predefined_metric_specification
                .as_ref()
                .map(|m| m.predefined_metric_type.as_str().to_string())
                .unwrap_or_default(),
            resource_label: c
                .predefined_metric_specification
                .as_ref()
                .and_then(|m| m.resource_label.clone())
                .unwrap_or_default(),
            target_value: c.target_value,
            scale_out_cooldown_seconds: c
                .scale_out_cooldown
                .and_then(|c| u64::try_from(c).ok())
                .unwrap_or(0),
            scale_in_cooldown_seconds: c
                .scale_in_cooldown
                .and_then(|c| u64::try_from(c).ok())
                .unwrap_or(0),
        });
    let attributes = Attributes::ScalingPolicy(ScalingPolicy {
        target: p.resource_id.clone(),
        policy_type: p.policy_type.as_str().to_string(),
        step_scaling,
        target_tracking,
    });
    Ok(Some(t.observed(
        BTreeMap::new(),
        attributes,
        outputs([("arn", p.policy_arn.clone())]),
    )))
}

pub(crate) async fn apply_policy(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ScalingPolicy);
    let mut put = ctx
        .aws
        .appscaling()
        .put_scaling_policy()
        .policy_name(&work.desired.name)
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&desired.target)
        .scalable_dimension(DIMENSION)
        .policy_type(PolicyType::from(desired.policy_type.as_str()));
    if let Some(step) = &desired.step_scaling {
        put = put.step_scaling_policy_configuration(
            StepScalingPolicyConfiguration::builder()
                .adjustment_type(AdjustmentType::from(step.adjustment_type.as_str()))
                .cooldown(step.cooldown_seconds as i32)
                .metric_aggregation_type(MetricAggregationType::from(
                    step.metric_aggregation.as_str(),
                ))
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
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| crate::aws::error::AwsError::Config(e.to_string()))?,
                ))
                .build(),
        );
    }
    if let Some(tt) = &desired.target_tracking {
        put = put.target_tracking_scaling_policy_configuration(
            TargetTrackingScalingPolicyConfiguration::builder()
                .target_value(tt.target_value)
                .predefined_metric_specification(
                    PredefinedMetricSpecification::builder()
                        .predefined_metric_type(MetricType::from(tt.predefined_metric.as_str()))
                        .resource_label(&tt.resource_label)
                        .build()
                        .map_err(|e| crate::aws::error::AwsError::Config(e.to_string()))?,
                )
                .scale_out_cooldown(tt.scale_out_cooldown_seconds as i32)
                .scale_in_cooldown(tt.scale_in_cooldown_seconds as i32)
                .build()
                .map_err(|e| crate::aws::error::AwsError::Config(e.to_string()))?,
        );
    }
    let out = put
        .send()
        .await
        .map_err(api!(work.subject(), "PutScalingPolicy"))?;
    Ok(outputs([("arn", out.policy_arn)]))
}

/// Deregisters the scalable target (AWS deletes its policies with it).
pub(crate) async fn delete_target(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let Attributes::ScalableTarget(t) = &o.resource.attributes else {
        unreachable!("a scalable target reads as one");
    };
    ctx.aws
        .appscaling()
        .deregister_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&t.resource_id)
        .scalable_dimension(DIMENSION)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeregisterScalableTarget"))?;
    Ok(Deleted::Gone)
}

/// Deletes a scaling policy (a target-tracking policy's alarms go with it).
pub(crate) async fn delete_policy(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let Attributes::ScalingPolicy(p) = &o.resource.attributes else {
        unreachable!("a scaling policy reads as one");
    };
    ctx.aws
        .appscaling()
        .delete_scaling_policy()
        .policy_name(&o.resource.name)
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&p.target)
        .scalable_dimension(DIMENSION)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteScalingPolicy"))?;
    Ok(Deleted::Gone)
}
