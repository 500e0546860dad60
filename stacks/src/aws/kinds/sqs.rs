//! SQS: the `events` and `work` queues and their dead-letter queues
//! (redrive, SQS-managed encryption, long polling).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use serde_json::Value;

use super::{
    Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, not_found_is_none, outputs,
    reread,
};
use crate::aws::error::Result;
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{Attributes, Redrive, SqsQueue};

fn queue_attributes(q: &SqsQueue) -> HashMap<Attr, String> {
    let mut map = HashMap::from([
        (
            Attr::VisibilityTimeout,
            q.visibility_timeout_seconds.to_string(),
        ),
        (
            Attr::MessageRetentionPeriod,
            q.message_retention_seconds.to_string(),
        ),
        (
            Attr::ReceiveMessageWaitTimeSeconds,
            q.receive_wait_time_seconds.to_string(),
        ),
        (Attr::SqsManagedSseEnabled, q.sqs_managed_sse.to_string()),
    ]);
    map.insert(
        Attr::RedrivePolicy,
        q.redrive
            .as_ref()
            .map(|r| {
                serde_json::json!({
                    "deadLetterTargetArn": r.dead_letter_target_arn,
                    "maxReceiveCount": r.max_receive_count,
                })
                .to_string()
            })
            .unwrap_or_default(),
    );
    map
}

fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(crate) async fn read(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let sqs = ctx.aws.sqs();
    let url = sqs
        .get_queue_url()
        .queue_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "GetQueueUrl"));
    let Some(url) = not_found_is_none(url)? else {
        return Ok(None);
    };
    let url = url
        .queue_url
        .ok_or_else(|| incomplete(t, "GetQueueUrl", "QueueUrl"))?;
    let got = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(Attr::All)
        .send()
        .await
        .map_err(api!(t.subject(), "GetQueueAttributes"))?;
    let a = got.attributes.unwrap_or_default();
    let num = |k: Attr| a.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let redrive = a
        .get(&Attr::RedrivePolicy)
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map(|v| Redrive {
            dead_letter_target_arn: v
                .get("deadLetterTargetArn")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            max_receive_count: number(v.get("maxReceiveCount")).unwrap_or(0) as u32,
        });
    let attributes = Attributes::SqsQueue(SqsQueue {
        visibility_timeout_seconds: num(Attr::VisibilityTimeout),
        message_retention_seconds: num(Attr::MessageRetentionPeriod),
        receive_wait_time_seconds: num(Attr::ReceiveMessageWaitTimeSeconds) as u32,
        sqs_managed_sse: a
            .get(&Attr::SqsManagedSseEnabled)
            .is_some_and(|v| v == "true"),
        redrive,
    });
    let arn = a
        .get(&Attr::QueueArn)
        .cloned()
        .ok_or_else(|| incomplete(t, "GetQueueAttributes", "QueueArn"))?;
    let tags = sqs
        .list_queue_tags()
        .queue_url(&url)
        .send()
        .await
        .map_err(api!(t.subject(), "ListQueueTags"))?;
    let tags: BTreeMap<String, String> = tags.tags.unwrap_or_default().into_iter().collect();
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([("arn", arn), ("url", url)]),
    )))
}

pub(crate) async fn apply(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, SqsQueue);
    let subject = work.subject();
    let sqs = ctx.aws.sqs();
    if work.action == Action::Create {
        let mut attributes = queue_attributes(desired);
        if desired.redrive.is_none() {
            attributes.remove(&Attr::RedrivePolicy);
        }
        let created = sqs
            .create_queue()
            .queue_name(&work.desired.name)
            .set_attributes(Some(attributes))
            .set_tags(Some(work.desired.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateQueue"));
        return match created {
            Ok(_) => {
                // The ARN is not in CreateQueue's answer.
                let again = reread(ctx, work).await?;
                again
                    .observed
                    .map(|o| o.outputs)
                    .ok_or_else(|| incomplete(&work.target(), "GetQueueUrl", "the new queue"))
            }
            // Same name, other attributes: update it in place.
            Err(e) if e.is_already_exists() => {
                Box::pin(apply(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "GetQueueUrl", "the queue"))?;
    let url = &observed.outputs["url"];
    let Attributes::SqsQueue(seen) = &observed.resource.attributes else {
        unreachable!("a queue reads as one");
    };
    let have = queue_attributes(seen);
    let changed: HashMap<Attr, String> = queue_attributes(desired)
        .into_iter()
        .filter(|(k, v)| have.get(k) != Some(v))
        .collect();
    if !changed.is_empty() {
        sqs.set_queue_attributes()
            .queue_url(url)
            .set_attributes(Some(changed))
            .send()
            .await
            .map_err(api!(subject.clone(), "SetQueueAttributes"))?;
    }
    let (set, remove) = work.tag_changes();
    if !set.is_empty() {
        sqs.tag_queue()
            .queue_url(url)
            .set_tags(Some(set.into_iter().collect()))
            .send()
            .await
            .map_err(api!(subject.clone(), "TagQueue"))?;
    }
    if !remove.is_empty() {
        sqs.untag_queue()
            .queue_url(url)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(subject.clone(), "UntagQueue"))?;
    }
    Ok(observed.outputs.clone())
}

/// Deletes the queue (and the messages in it).
pub(crate) async fn delete(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let url = super::output(o, "url", "GetQueueUrl")?;
    ctx.aws
        .sqs()
        .delete_queue()
        .queue_url(url)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteQueue"))?;
    Ok(Deleted::Gone)
}
