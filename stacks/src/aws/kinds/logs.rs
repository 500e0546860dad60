//! CloudWatch Logs: the roles' log groups and their retention.

use std::collections::BTreeMap;

use super::{Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, outputs, reread};
use crate::aws::error::Result;
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{Attributes, LogGroup};

/// The group's ARN as the tagging calls want it (without the `:*` that
/// DescribeLogGroups appends).
fn bare_arn(arn: &str) -> String {
    arn.strip_suffix(":*").unwrap_or(arn).to_string()
}

pub(crate) async fn read(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let logs = ctx.aws.logs();
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeLogGroups"))?;
    let Some(group) = out
        .log_groups
        .unwrap_or_default()
        .into_iter()
        .find(|g| g.log_group_name.as_deref() == Some(t.name.as_str()))
    else {
        return Ok(None);
    };
    let arn = bare_arn(
        group
            .arn
            .as_deref()
            .ok_or_else(|| incomplete(t, "DescribeLogGroups", "arn"))?,
    );
    let tags = logs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(api!(t.subject(), "ListTagsForResource"))?;
    let attributes = Attributes::LogGroup(LogGroup {
        retention_days: group
            .retention_in_days
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
    });
    let tags: BTreeMap<String, String> = tags.tags.unwrap_or_default().into_iter().collect();
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([("arn", arn), ("name", t.name.clone())]),
    )))
}

pub(crate) async fn apply(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, LogGroup);
    let subject = work.subject();
    let logs = ctx.aws.logs();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = logs
            .create_log_group()
            .log_group_name(name)
            .set_tags(Some(work.desired.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateLogGroup"));
        match created {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        // Retention is a second call: read back what is there.
        return Box::pin(apply(ctx, &reread(ctx, work).await?)).await;
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeLogGroups", "the group"))?;
    if work.changed("retention_days") {
        logs.put_retention_policy()
            .log_group_name(name)
            .retention_in_days(desired.retention_days as i32)
            .send()
            .await
            .map_err(api!(subject.clone(), "PutRetentionPolicy"))?;
    }
    let arn = &observed.outputs["arn"];
    let (set, remove) = work.tag_changes();
    if !set.is_empty() {
        logs.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(set.into_iter().collect()))
            .send()
            .await
            .map_err(api!(subject.clone(), "TagResource"))?;
    }
    if !remove.is_empty() {
        logs.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(subject.clone(), "UntagResource"))?;
    }
    Ok(observed.outputs.clone())
}

/// Deletes the log group and its streams.
pub(crate) async fn delete(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .logs()
        .delete_log_group()
        .log_group_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteLogGroup"))?;
    Ok(Deleted::Gone)
}
