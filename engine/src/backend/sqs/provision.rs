//! Finding a queue and its dead-letter queue, and creating both when the
//! engine is asked to (local stacks and tests; on AWS the provisioner owns
//! the queues).

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use super::error::{classify, code};
use crate::backend::{BackendError, Result};
use crate::config::QueueConfig;

/// SQS bounds on a queue's message retention.
const RETENTION_SECS: (u64, u64) = (60, 14 * 86_400);
/// SQS bound on a queue's visibility timeout.
const MAX_VISIBILITY_SECS: u64 = 12 * 3600;

/// Where a queue and its dead-letter queue are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    /// The queue.
    pub main: String,
    /// Its dead-letter queue, from the redrive policy; `None` without one.
    pub dead: Option<String>,
}

/// A queue name or URL.
pub(crate) fn is_url(queue: &str) -> bool {
    queue.starts_with("https://") || queue.starts_with("http://")
}

/// The queue's URL: `queue` itself when it is one, else looked up by name.
pub(crate) async fn queue_url(client: &Client, queue: &str, owner: Option<&str>) -> Result<String> {
    if is_url(queue) {
        return Ok(queue.to_string());
    }
    let out = client
        .get_queue_url()
        .queue_name(queue)
        .set_queue_owner_aws_account_id(owner.map(String::from))
        .send()
        .await
        .map_err(|e| classify(&format!("get_queue_url {queue}"), e))?;
    out.queue_url
        .ok_or_else(|| BackendError::Other(format!("sqs get_queue_url {queue}: no URL answered")))
}

/// Finds `queue` (a name or URL) and the dead-letter queue its redrive
/// policy names.
pub(crate) async fn resolve(client: &Client, queue: &str) -> Result<QueueUrls> {
    let main = queue_url(client, queue, None).await?;
    let attrs = client
        .get_queue_attributes()
        .queue_url(&main)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| classify(&format!("get_queue_attributes {queue}"), e))?;
    let policy = attrs
        .attributes
        .as_ref()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy));
    let dead = match policy {
        None => None,
        Some(policy) => {
            let arn = dead_letter_arn(policy).ok_or_else(|| {
                BackendError::Other(format!(
                    "sqs queue {queue}: redrive policy without deadLetterTargetArn: {policy}"
                ))
            })?;
            // arn:aws:sqs:REGION:ACCOUNT:NAME
            let mut parts = arn.rsplitn(3, ':');
            let name = parts.next().unwrap_or_default().to_string();
            let account = parts.next().map(String::from);
            Some(queue_url(client, &name, account.as_deref()).await?)
        }
    };
    Ok(QueueUrls { main, dead })
}

fn dead_letter_arn(policy: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(policy).ok()?;
    value["deadLetterTargetArn"].as_str().map(String::from)
}

fn secs_up(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Creates `name` and `name-dlq` (or brings existing ones to `config`): the
/// visibility timeout, the retention, and a redrive policy that moves a
/// message to the dead-letter queue after `config.max_receives` receives.
/// Idempotent.
pub async fn ensure_queue(client: &Client, name: &str, config: &QueueConfig) -> Result<QueueUrls> {
    if is_url(name) {
        return Err(BackendError::Other(format!(
            "cannot create queue `{name}`: give a queue name, not a URL"
        )));
    }
    let dead_name = format!("{name}-dlq");
    let dead = create_or_update(
        client,
        &dead_name,
        vec![(
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION_SECS.1.to_string(),
        )],
    )
    .await?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&dead)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| classify(&format!("get_queue_attributes {dead_name}"), e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| BackendError::Other(format!("sqs queue {dead_name}: no QueueArn")))?;
    let retention = secs_up(config.retention.std()).clamp(RETENTION_SECS.0, RETENTION_SECS.1);
    let visibility = secs_up(config.visibility_timeout.std()).min(MAX_VISIBILITY_SECS);
    let redrive = serde_json::json!({
        "deadLetterTargetArn": arn,
        "maxReceiveCount": config.max_receives,
    });
    let main = create_or_update(
        client,
        name,
        vec![
            (
                QueueAttributeName::VisibilityTimeout,
                visibility.to_string(),
            ),
            (
                QueueAttributeName::MessageRetentionPeriod,
                retention.to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ],
    )
    .await?;
    Ok(QueueUrls {
        main,
        dead: Some(dead),
    })
}

async fn create_or_update(
    client: &Client,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<String> {
    let mut create = client.create_queue().queue_name(name);
    for (k, v) in &attributes {
        create = create.attributes(k.clone(), v);
    }
    match create.send().await {
        Ok(out) => out.queue_url.ok_or_else(|| {
            BackendError::Other(format!("sqs create_queue {name}: no URL answered"))
        }),
        Err(e)
            if code(&e).is_some_and(|c| {
                c.contains("QueueAlreadyExists") || c.contains("QueueNameExists")
            }) =>
        {
            // Same name, other attributes: bring them to what is asked.
            let url = queue_url(client, name, None).await?;
            let mut set = client.set_queue_attributes().queue_url(&url);
            for (k, v) in attributes {
                set = set.attributes(k, v);
            }
            set.send()
                .await
                .map_err(|e| classify(&format!("set_queue_attributes {name}"), e))?;
            Ok(url)
        }
        Err(e) => Err(classify(&format!("create_queue {name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dead_letter_arn() {
        let p = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:s-events-dlq","maxReceiveCount":"5"}"#;
        assert_eq!(
            dead_letter_arn(p).as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:s-events-dlq")
        );
        assert_eq!(dead_letter_arn("{}"), None);
        assert!(is_url("https://sqs.us-east-1.amazonaws.com/1/q"));
        assert!(!is_url("stack-events"));
        assert_eq!(secs_up(std::time::Duration::from_millis(1500)), 2);
        assert_eq!(secs_up(std::time::Duration::from_secs(3)), 3);
    }
}
