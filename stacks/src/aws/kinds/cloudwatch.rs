//! CloudWatch: the alarms that run step-scaling policies and those that
//! notify a person (through the stack's SNS topic). PutMetricAlarm creates
//! or replaces an alarm, so create and update are one request.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic, Tag};

use super::{Ctx, Deleted, Observed, Target, Work, api, attrs, outputs};
use crate::aws::error::Result;
use crate::aws::resolve::Outputs;
use crate::graph::{Attributes, CloudWatchAlarm};

fn cw_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) async fn read(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let cw = ctx.aws.cloudwatch();
    let out = cw
        .describe_alarms()
        .alarm_names(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeAlarms"))?;
    let Some(a) = out
        .metric_alarms
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.alarm_name.as_deref() == Some(t.name.as_str()))
    else {
        return Ok(None);
    };
    let arn = a.alarm_arn.clone().unwrap_or_default();
    let tags = cw
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(api!(t.subject(), "ListTagsForResource"))?
        .tags
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
        .collect();
    let attributes = Attributes::CloudWatchAlarm(CloudWatchAlarm {
        namespace: a.namespace.clone().unwrap_or_default(),
        metric_name: a.metric_name.clone().unwrap_or_default(),
        dimensions: a
            .dimensions()
            .iter()
            .filter_map(|d| Some((d.name.clone()?, d.value.clone()?)))
            .collect(),
        statistic: a
            .statistic
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        period_seconds: a.period.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        evaluation_periods: a
            .evaluation_periods
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
        threshold: a.threshold.unwrap_or(0.0),
        comparison_operator: a
            .comparison_operator
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        alarm_actions: a.alarm_actions().to_vec(),
        ok_actions: a.ok_actions().to_vec(),
        description: a.alarm_description.clone().filter(|d| !d.is_empty()),
        treat_missing_data: a.treat_missing_data.clone().filter(|t| t != "missing"),
    });
    Ok(Some(t.observed(tags, attributes, outputs([("arn", arn)]))))
}

pub(crate) async fn apply(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, CloudWatchAlarm);
    let subject = work.subject();
    let cw = ctx.aws.cloudwatch();
    let name = &work.desired.name;
    let attributes_changed = match &work.observed {
        Some(o) => o.resource.attributes != work.desired.attributes,
        None => true,
    };
    if attributes_changed {
        cw.put_metric_alarm()
            .alarm_name(name)
            .namespace(&desired.namespace)
            .metric_name(&desired.metric_name)
            .set_dimensions(Some(
                desired
                    .dimensions
                    .iter()
                    .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                    .collect(),
            ))
            .statistic(Statistic::from(desired.statistic.as_str()))
            .period(desired.period_seconds as i32)
            .evaluation_periods(desired.evaluation_periods as i32)
            .threshold(desired.threshold)
            .comparison_operator(ComparisonOperator::from(
                desired.comparison_operator.as_str(),
            ))
            .set_alarm_actions(Some(desired.alarm_actions.clone()))
            .set_ok_actions(Some(desired.ok_actions.clone()))
            .set_alarm_description(desired.description.clone())
            .set_treat_missing_data(desired.treat_missing_data.clone())
            .set_tags(work.observed.is_none().then(|| cw_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "PutMetricAlarm"))?;
    }
    let observed = match &work.observed {
        Some(o) => o.clone(),
        None => read(ctx, &work.target())
            .await?
            .ok_or_else(|| super::incomplete(&work.target(), "DescribeAlarms", "the new alarm"))?,
    };
    let arn = observed.outputs["arn"].clone();
    if work.observed.is_some() {
        let (set, remove) = work.tag_changes();
        if !set.is_empty() {
            cw.tag_resource()
                .resource_arn(&arn)
                .set_tags(Some(cw_tags(&set)))
                .send()
                .await
                .map_err(api!(subject.clone(), "TagResource"))?;
        }
        if !remove.is_empty() {
            cw.untag_resource()
                .resource_arn(&arn)
                .set_tag_keys(Some(remove))
                .send()
                .await
                .map_err(api!(subject.clone(), "UntagResource"))?;
        }
    }
    Ok(outputs([("arn", arn)]))
}

/// Deletes the alarm.
pub(crate) async fn delete(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .cloudwatch()
        .delete_alarms()
        .alarm_names(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteAlarms"))?;
    Ok(Deleted::Gone)
}
