//! SNS: the stack's own topic for its alarms, with the email addresses
//! subscribed to it. A topic is found by the ARN its name has in the
//! stack's account and region; CreateTopic is idempotent (the same name
//! and tags answer the existing topic), and a subscription that waits for
//! its address to confirm counts as there (AWS lets it expire by itself).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_sns::types::Tag;

use super::{Ctx, Deleted, Observed, Target, Work, api, attrs, outputs};
use crate::aws::error::{AwsError, Result};
use crate::aws::resolve::Outputs;
use crate::graph::{Attributes, SnsTopic};

/// The subscriptions' protocol.
const EMAIL: &str = "email";
/// The ARN SNS reports for a subscription not confirmed yet.
const PENDING: &str = "PendingConfirmation";

fn topic_arn(ctx: &Ctx, name: &str) -> String {
    format!("arn:aws:sns:{}:{}:{name}", ctx.env.region, ctx.env.account)
}

fn sns_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| AwsError::Config(e.to_string()))
}

/// The email subscriptions of a topic: address → subscription ARN (or
/// `PendingConfirmation`).
async fn subscriptions(ctx: &Ctx, t: &Target, arn: &str) -> Result<BTreeMap<String, String>> {
    let pages = ctx
        .aws
        .sns()
        .list_subscriptions_by_topic()
        .topic_arn(arn)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(api!(t.subject(), "ListSubscriptionsByTopic"))?;
    Ok(pages
        .iter()
        .flat_map(|p| p.subscriptions())
        .filter(|s| s.protocol.as_deref() == Some(EMAIL))
        .filter_map(|s| {
            Some((
                s.endpoint.clone()?,
                s.subscription_arn.clone().unwrap_or_default(),
            ))
        })
        .collect())
}

pub(crate) async fn read(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let sns = ctx.aws.sns();
    let arn = topic_arn(ctx, &t.name);
    let got = sns
        .get_topic_attributes()
        .topic_arn(&arn)
        .send()
        .await
        .map_err(api!(t.subject(), "GetTopicAttributes"));
    if super::not_found_is_none(got)?.is_none() {
        return Ok(None);
    }
    let tags = sns
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(api!(t.subject(), "ListTagsForResource"))?
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    let email = subscriptions(ctx, t, &arn).await?.into_keys().collect();
    Ok(Some(t.observed(
        tags,
        Attributes::SnsTopic(SnsTopic { email }),
        outputs([("arn", arn)]),
    )))
}

pub(crate) async fn apply(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, SnsTopic);
    let subject = work.subject();
    let sns = ctx.aws.sns();
    let arn = match &work.observed {
        Some(o) => o.outputs["arn"].clone(),
        None => sns
            .create_topic()
            .name(&work.desired.name)
            .set_tags(Some(sns_tags(&work.desired.tags)?))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateTopic"))?
            .topic_arn
            .ok_or_else(|| super::incomplete(&work.target(), "CreateTopic", "TopicArn"))?,
    };
    if work.observed.is_some() {
        let (set, remove) = work.tag_changes();
        if !set.is_empty() {
            sns.tag_resource()
                .resource_arn(&arn)
                .set_tags(Some(sns_tags(&set)?))
                .send()
                .await
                .map_err(api!(subject.clone(), "TagResource"))?;
        }
        if !remove.is_empty() {
            sns.untag_resource()
                .resource_arn(&arn)
                .set_tag_keys(Some(remove))
                .send()
                .await
                .map_err(api!(subject.clone(), "UntagResource"))?;
        }
    }
    let existing = subscriptions(ctx, &work.target(), &arn).await?;
    let wanted: BTreeSet<&String> = desired.email.iter().collect();
    for address in &desired.email {
        if !existing.contains_key(address) {
            sns.subscribe()
                .topic_arn(&arn)
                .protocol(EMAIL)
                .endpoint(address)
                .send()
                .await
                .map_err(api!(subject.clone(), "Subscribe"))?;
        }
    }
    // A pending subscription has no ARN to unsubscribe: it lapses unconfirmed.
    for (address, subscription) in &existing {
        if !wanted.contains(address) && subscription != PENDING && !subscription.is_empty() {
            sns.unsubscribe()
                .subscription_arn(subscription)
                .send()
                .await
                .map_err(api!(subject.clone(), "Unsubscribe"))?;
        }
    }
    Ok(outputs([("arn", arn)]))
}

/// Deletes the topic and with it its subscriptions.
pub(crate) async fn delete(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let arn = super::output(o, "arn", "DeleteTopic")?;
    ctx.aws
        .sns()
        .delete_topic()
        .topic_arn(arn)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteTopic"))?;
    Ok(Deleted::Gone)
}
