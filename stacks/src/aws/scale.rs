//! `scale` of an aws stack: the desired count of the `event-api` or
//! `runner` ECS service, or the desired capacity of the executors' Auto
//! Scaling Group. Where auto-scaling bounds govern the count (an
//! Application Auto Scaling target, the group's min/max), a count outside
//! them moves the nearer bound to it, so the bounds and the count stay
//! consistent and auto-scaling does not undo the change at once; with
//! `keep_bounds` such a count is refused with the reason instead. The
//! caller holds the stack lock and waits for the count (see [`wait`]).
//!
//! [`wait`]: super::wait

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use serde::Serialize;

use super::context::Aws;
use super::error::{AwsError, Subject};
use super::wait::{self, Target, Until};
use crate::graph::{Attributes, Graph, LogicalId};
use crate::local::Service;

/// Why `scale` did not change the count.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The resource is not in the graph or not in AWS.
    #[error("{0}")]
    Missing(String),
    /// The count is outside the auto-scaling bounds and `keep_bounds` was asked.
    #[error("{0}")]
    Refused(String),
}

/// What governs a count besides `scale`.
#[derive(Debug, Clone, Serialize)]
pub struct Bounds {
    /// `application-auto-scaling` or `auto-scaling-group`.
    pub by: &'static str,
    /// Minimum before.
    pub min: u32,
    /// Maximum before.
    pub max: u32,
    /// Minimum after.
    pub new_min: u32,
    /// Maximum after.
    pub new_max: u32,
}

/// What `scale` did.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// The service.
    pub service: Service,
    /// The AWS resource (service or group name).
    pub resource: String,
    /// Desired count before.
    pub from: u32,
    /// Desired count after.
    pub to: u32,
    /// The auto-scaling bounds, when they govern the count.
    pub bounds: Option<Bounds>,
    /// Whether scaling policies may change the count again later.
    pub policies: bool,
    /// What happens to the count at the next `up`.
    pub note: String,
    /// What to wait for until the count holds.
    #[serde(skip)]
    pub target: Target,
}

/// Moves `[min, max]` to include `n`, or refuses.
fn fit(
    what: &str,
    by: &'static str,
    min: u32,
    max: u32,
    n: u32,
    keep_bounds: bool,
) -> Result<Bounds, ScaleError> {
    let (new_min, new_max) = (min.min(n), max.max(n));
    if keep_bounds && (new_min, new_max) != (min, max) {
        return Err(ScaleError::Refused(format!(
            "{what} is governed by {by} with bounds [{min}, {max}]: {n} is outside them and \
             --keep-bounds keeps them; scale within the bounds, drop --keep-bounds to move the \
             bound, or change the spec's scaling bounds and run `stackctl up`"
        )));
    }
    Ok(Bounds {
        by,
        min,
        max,
        new_min,
        new_max,
    })
}

fn resource<'g>(graph: &'g Graph, id: &str) -> Result<&'g crate::graph::Resource, ScaleError> {
    graph.get(&LogicalId::new(id)).ok_or_else(|| {
        ScaleError::Missing(format!("stack `{}` has no `{id}` in its spec", graph.stack))
    })
}

/// Sets the count of `service` to `n`.
pub async fn scale(
    aws: &Aws,
    graph: &Graph,
    service: Service,
    n: u32,
    keep_bounds: bool,
) -> Result<ScaleReport, ScaleError> {
    match service {
        Service::EventApi | Service::Runner => {
            scale_service(aws, graph, service, n, keep_bounds).await
        }
        Service::Executors => scale_group(aws, graph, n, keep_bounds).await,
    }
}

async fn scale_service(
    aws: &Aws,
    graph: &Graph,
    service: Service,
    n: u32,
    keep_bounds: bool,
) -> Result<ScaleReport, ScaleError> {
    let label = service.as_str();
    let cluster = resource(graph, "ecs.cluster")?.name.clone();
    let svc = resource(graph, &format!("ecs.service.{label}"))?;
    let name = svc.name.clone();
    let spec_count = match &svc.attributes {
        Attributes::EcsService(s) => s.desired_count,
        _ => 0,
    };
    let subject = Subject::new(&svc.id, &name);
    let Some(state) = wait::service_state(aws, &cluster, &name).await? else {
        return Err(ScaleError::Missing(format!(
            "ECS service {name} does not exist in cluster {cluster}: run `stackctl up` first"
        )));
    };
    let resource_id = format!("service/{cluster}/{name}");
    let found = aws
        .appscaling()
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(&resource_id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "DescribeScalableTargets", e))?;
    let target = found.scalable_targets().first().cloned();
    let mut bounds = None;
    if let Some(t) = &target {
        let b = fit(
            &format!("{label} (ECS service {name})"),
            "application-auto-scaling",
            u32::try_from(t.min_capacity).unwrap_or(0),
            u32::try_from(t.max_capacity).unwrap_or(0),
            n,
            keep_bounds,
        )?;
        if (b.new_min, b.new_max) != (b.min, b.max) {
            super::lock::check_held()?;
            // Registering an existing target updates its bounds.
            aws.appscaling()
                .register_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&resource_id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .min_capacity(b.new_min as i32)
                .max_capacity(b.new_max as i32)
                .send()
                .await
                .map_err(|e| AwsError::api(subject.clone(), "RegisterScalableTarget", e))?;
        }
        bounds = Some(b);
    }
    if state.desired != n {
        super::lock::check_held()?;
        aws.ecs()
            .update_service()
            .cluster(&cluster)
            .service(&name)
            .desired_count(n as i32)
            .send()
            .await
            .map_err(|e| AwsError::api(subject.clone(), "UpdateService", e))?;
    }
    let policies = match &target {
        Some(_) => {
            let p = aws
                .appscaling()
                .describe_scaling_policies()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&resource_id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| AwsError::api(subject.clone(), "DescribeScalingPolicies", e))?;
            !p.scaling_policies().is_empty()
        }
        None => false,
    };
    let note = match &bounds {
        Some(b) if (b.new_min, b.new_max) != (b.min, b.max) => format!(
            "the next `stackctl up` restores the spec's scaling bounds [{}, {}]; auto-scaling keeps the count within them",
            b.min, b.max
        ),
        Some(_) => "the next `stackctl up` leaves the count to auto-scaling".to_string(),
        None => format!(
            "the spec file is not edited: the next `stackctl up` returns {label} to {spec_count}"
        ),
    };
    Ok(ScaleReport {
        service,
        resource: name.clone(),
        from: state.desired,
        to: n,
        bounds,
        policies,
        note,
        target: Target::Service {
            label: label.to_string(),
            cluster,
            service: name,
            task_definition: None,
            target_group: None,
            until: Until::Count(n),
        },
    })
}

async fn scale_group(
    aws: &Aws,
    graph: &Graph,
    n: u32,
    keep_bounds: bool,
) -> Result<ScaleReport, ScaleError> {
    let g = resource(graph, "autoscaling.group.executors")?;
    let name = g.name.clone();
    let (spec_count, managed) = match &g.attributes {
        Attributes::AutoScalingGroup(a) => (a.desired_capacity, a.scaling_managed),
        _ => (0, false),
    };
    let subject = Subject::new(&g.id, &name);
    let Some(state) = wait::group_state(aws, &name).await? else {
        return Err(ScaleError::Missing(format!(
            "Auto Scaling Group {name} does not exist: run `stackctl up` first"
        )));
    };
    let b = fit(
        &format!("executors (Auto Scaling Group {name})"),
        "auto-scaling-group",
        state.min,
        state.max,
        n,
        keep_bounds,
    )?;
    let moved = (b.new_min, b.new_max) != (b.min, b.max);
    if state.desired != n || moved {
        super::lock::check_held()?;
        aws.autoscaling()
            .update_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .min_size(b.new_min as i32)
            .max_size(b.new_max as i32)
            .desired_capacity(n as i32)
            .send()
            .await
            .map_err(|e| AwsError::api(subject, "UpdateAutoScalingGroup", e))?;
    }
    let note = if moved {
        format!(
            "the next `stackctl up` restores the spec's bounds [{}, {}]{}",
            b.min,
            b.max,
            if managed { "" } else { " and desired capacity" }
        )
    } else if managed {
        "the next `stackctl up` leaves the capacity to the scaling policies".to_string()
    } else {
        format!(
            "the spec file is not edited: the next `stackctl up` returns executors to {spec_count}"
        )
    };
    Ok(ScaleReport {
        service: Service::Executors,
        resource: name.clone(),
        from: state.desired,
        to: n,
        bounds: Some(b),
        policies: managed,
        note,
        target: Target::Group {
            label: "executors".into(),
            name,
            until: Until::Count(n),
        },
    })
}
