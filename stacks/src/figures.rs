//! The figures `status` shows first, on both providers: per service that
//! consumes a queue (the runner: `events`, the executors: `work`) its
//! depth, the age of its oldest message and its dead-letter depth, and the
//! runs that failed in the last hour. A figure that cannot be read is
//! `unknown` with the reason, never 0.
//!
//! Locally the figures come from the event API's `/metrics` (the engine
//! reads its queues at each scrape) and the runs API; on AWS from SQS
//! (`GetQueueAttributes`), CloudWatch (`ApproximateAgeOfOldestMessage`)
//! and the runs API where it answers from here.

use std::collections::BTreeMap;
use std::time::Duration;

use engine::backend::RunStatus;
use serde::Serialize;

use crate::runs::{self, ListOptions};
use crate::spec::LoadedSpec;

/// The window of [`Figures::runs_failed_last_hour`].
pub const FAILED_WINDOW: Duration = Duration::from_secs(3600);
/// Most failed runs counted one by one.
const FAILED_LIMIT: usize = engine::event_api::MAX_LIST_LIMIT;
/// How long the engine's `/metrics` may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);

/// A figure, or why it is not known.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure<T> {
    /// Its value.
    Known(T),
    /// Why it could not be read.
    Unknown(String),
}

impl<T> Figure<T> {
    /// The value, if known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Self::Known(v) => Some(v),
            Self::Unknown(_) => None,
        }
    }

    fn unknown(reason: impl Into<String>) -> Self {
        Self::Unknown(reason.into())
    }
}

/// The queue a service consumes, as a person checks it first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueFigures {
    /// `events` (the runner's) or `work` (the executors').
    pub queue: &'static str,
    /// Messages ready to be received.
    pub depth: Figure<u64>,
    /// Seconds the oldest message has waited.
    pub oldest_age_seconds: Figure<f64>,
    /// Messages in its dead-letter queue.
    pub dead_letters: Figure<u64>,
}

/// Failed runs counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FailedRuns {
    /// Failed runs created in the window.
    pub count: u64,
    /// More failed than counted: `count` is a lower bound.
    pub more: bool,
}

impl std::fmt::Display for FailedRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.more {
            write!(f, "at least {}", self.count)
        } else {
            write!(f, "{}", self.count)
        }
    }
}

/// What `status` shows first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// By service: `runner` (queue `events`) and `executors` (queue `work`).
    pub services: BTreeMap<&'static str, QueueFigures>,
    /// Failed runs created in the last hour.
    pub runs_failed_last_hour: Figure<FailedRuns>,
}

/// The services that consume a queue, with the queue.
pub const CONSUMERS: [(&str, &str); 2] = [("runner", "events"), ("executors", "work")];

impl Figures {
    /// Every figure unknown for `reason`.
    pub fn unknown(reason: &str) -> Self {
        Self {
            services: CONSUMERS
                .iter()
                .map(|(service, queue)| {
                    (
                        *service,
                        QueueFigures {
                            queue,
                            depth: Figure::unknown(reason),
                            oldest_age_seconds: Figure::unknown(reason),
                            dead_letters: Figure::unknown(reason),
                        },
                    )
                })
                .collect(),
            runs_failed_last_hour: Figure::unknown(reason),
        }
    }
}

/// What to ask the runs API for: failed runs created in the last hour.
fn failed_last_hour_query() -> ListOptions {
    ListOptions {
        function: None,
        status: Some(RunStatus::Failed),
        since: Some(FAILED_WINDOW),
        limit: FAILED_LIMIT,
    }
}

/// Failed runs created in the last hour, from the runs API where it
/// answers over HTTP from here.
pub async fn failed_last_hour(loaded: &LoadedSpec) -> Figure<FailedRuns> {
    failed_runs(runs::list_direct(loaded, &failed_last_hour_query()).await)
}

/// The figure of a [`failed_last_hour_query`] answer.
fn failed_runs(answer: Result<runs::RunList, runs::RunsError>) -> Figure<FailedRuns> {
    match answer {
        Ok(list) => Figure::Known(FailedRuns {
            count: list.runs.len() as u64,
            more: list.more,
        }),
        Err(e) => Figure::unknown(format!("runs API: {e}")),
    }
}

/// A local stack's figures from its event API at `base` (`http://host:port`).
pub async fn local(loaded: &LoadedSpec, base: &str) -> Figures {
    let (metrics, failed) = tokio::join!(scrape(base), failed_last_hour(loaded));
    let mut figures = match metrics {
        Ok(text) => of_metrics(&text),
        Err(reason) => Figures::unknown(&reason),
    };
    figures.runs_failed_last_hour = failed;
    figures
}

async fn scrape(base: &str) -> Result<String, String> {
    let url = format!("{base}/metrics");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(METRICS_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    resp.text()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))
}

/// The queue figures of the engine's `/metrics` text.
fn of_metrics(text: &str) -> Figures {
    let samples = crate::bench::parse_prometheus(text);
    let find = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| *n == name && labels.iter().all(|(k, v)| l.get(k) == Some(v)))
            .map(|(_, _, v)| *v)
    };
    let services = CONSUMERS
        .iter()
        .map(|(service, queue)| {
            let missing = |what: &str| format!("the engine's /metrics has no {what}");
            let count = |name: &str, labels: &[(&str, &str)]| match find(name, labels) {
                Some(v) => Figure::Known(v.max(0.0) as u64),
                None => Figure::unknown(missing(name)),
            };
            let depth = count(
                "stackctl_queue_messages",
                &[("queue", queue), ("state", "visible")],
            );
            let dead_letters = count("stackctl_queue_dead_letters", &[("queue", queue)]);
            let oldest_age_seconds = match find(
                "stackctl_queue_oldest_message_age_seconds",
                &[("queue", queue)],
            ) {
                Some(v) => Figure::Known(v),
                None => Figure::unknown(
                    "this backend does not tell the age of its oldest message (on SQS, \
                     CloudWatch's ApproximateAgeOfOldestMessage does)",
                ),
            };
            (
                *service,
                QueueFigures {
                    queue,
                    depth,
                    oldest_age_seconds,
                    dead_letters,
                },
            )
        })
        .collect();
    Figures {
        services,
        runs_failed_last_hour: Figure::unknown("not read"),
    }
}

/// One queue of an AWS stack, as `status` found it.
#[cfg(feature = "aws")]
#[derive(Debug, Clone)]
pub struct AwsQueue {
    /// The service that consumes it.
    pub service: &'static str,
    /// `events` or `work`.
    pub queue: &'static str,
    /// Its SQS name (CloudWatch's `QueueName` dimension).
    pub name: String,
    /// Its URL, when it exists.
    pub url: Option<String>,
    /// Its dead-letter queue's URL, when it exists.
    pub dead_letter_url: Option<String>,
}

/// An AWS stack's figures: depths from SQS, ages from CloudWatch, failed
/// runs from the runs API where it answers from here.
#[cfg(feature = "aws")]
pub async fn aws(aws: &crate::aws::Aws, loaded: &LoadedSpec, queues: &[AwsQueue]) -> Figures {
    let each = futures_util::future::join_all(queues.iter().map(|q| aws_queue(aws, q)));
    let failed = async {
        failed_runs(runs::list_direct_on(aws.clone(), loaded, &failed_last_hour_query()).await)
    };
    let (services, failed) = tokio::join!(each, failed);
    Figures {
        services: services.into_iter().collect(),
        runs_failed_last_hour: failed,
    }
}

#[cfg(feature = "aws")]
async fn aws_queue(aws: &crate::aws::Aws, q: &AwsQueue) -> (&'static str, QueueFigures) {
    let counts = |url: Option<String>| async move {
        match url {
            Some(url) => sqs_counts(aws, &url).await,
            None => Err("the queue does not exist".to_string()),
        }
    };
    let (main, dead, age) = tokio::join!(
        counts(q.url.clone()),
        counts(q.dead_letter_url.clone()),
        oldest_age(aws, &q.name),
    );
    let depth = match &main {
        Ok((visible, _)) => Figure::Known(*visible),
        Err(e) => Figure::unknown(e.clone()),
    };
    let dead_letters = match dead {
        Ok((visible, invisible)) => Figure::Known(visible + invisible),
        Err(e) => Figure::unknown(e),
    };
    let oldest_age_seconds = match (age, &main) {
        (Ok(Some(age)), _) => Figure::Known(age),
        // An empty queue has no oldest message to wait: CloudWatch has no
        // datapoint for a queue that was idle, and none is needed.
        (Ok(None), Ok((0, _))) => Figure::Known(0.0),
        (Ok(None), _) => Figure::unknown(format!(
            "CloudWatch has no ApproximateAgeOfOldestMessage datapoint for queue {} in the \
             last {} minutes",
            q.name,
            AGE_WINDOW.as_secs() / 60
        )),
        (Err(e), _) => Figure::unknown(e),
    };
    (
        q.service,
        QueueFigures {
            queue: q.queue,
            depth,
            oldest_age_seconds,
            dead_letters,
        },
    )
}

/// How far back CloudWatch is asked for the age of the oldest message.
#[cfg(feature = "aws")]
const AGE_WINDOW: Duration = Duration::from_secs(300);

/// `ApproximateNumberOfMessages` and `...NotVisible` of the queue at `url`.
#[cfg(feature = "aws")]
async fn sqs_counts(aws: &crate::aws::Aws, url: &str) -> Result<(u64, u64), String> {
    use aws_sdk_sqs::types::QueueAttributeName as Attr;
    let got = aws
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Attr::ApproximateNumberOfMessages)
        .attribute_names(Attr::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| {
            crate::aws::AwsError::api(
                crate::aws::Subject::other("sqs queue", url),
                "GetQueueAttributes",
                e,
            )
            .to_string()
        })?;
    let a = got.attributes.unwrap_or_default();
    let num = |k: Attr| {
        a.get(&k)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "GetQueueAttributes of {url} answered without {}",
                    k.as_str()
                )
            })
    };
    Ok((
        num(Attr::ApproximateNumberOfMessages)?,
        num(Attr::ApproximateNumberOfMessagesNotVisible)?,
    ))
}

/// The latest `ApproximateAgeOfOldestMessage` (maximum per minute) of
/// queue `name` within [`AGE_WINDOW`]; `None` without a datapoint.
#[cfg(feature = "aws")]
async fn oldest_age(aws: &crate::aws::Aws, name: &str) -> Result<Option<f64>, String> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let now = std::time::SystemTime::now();
    let got = aws
        .cloudwatch()
        .get_metric_statistics()
        .namespace("AWS/SQS")
        .metric_name("ApproximateAgeOfOldestMessage")
        .dimensions(Dimension::builder().name("QueueName").value(name).build())
        .start_time(DateTime::from(now - AGE_WINDOW))
        .end_time(DateTime::from(now))
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .map_err(|e| {
            crate::aws::AwsError::api(
                crate::aws::Subject::other("cloudwatch metric", name),
                "GetMetricStatistics",
                e,
            )
            .to_string()
        })?;
    Ok(got
        .datapoints
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| Some((d.timestamp?, d.maximum?)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, age)| age))
}

/// Seconds as a person reads them: `0.4s`, `12s`, `3m 20s`, `2h 5m`.
pub fn human_age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{}m {}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h {}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_figures_come_from_the_engine_metrics_and_missing_ones_are_unknown() {
        let text = "# TYPE stackctl_queue_messages gauge\n\
            stackctl_queue_messages{queue=\"events\",state=\"visible\"} 4\n\
            stackctl_queue_messages{queue=\"work\",state=\"visible\"} 0\n\
            stackctl_queue_dead_letters{queue=\"events\"} 0\n\
            stackctl_queue_dead_letters{queue=\"work\"} 2\n\
            stackctl_queue_oldest_message_age_seconds{queue=\"events\"} 1.5\n\
            # EOF\n";
        let f = of_metrics(text);
        let runner = &f.services["runner"];
        assert_eq!(runner.queue, "events");
        assert_eq!(runner.depth, Figure::Known(4));
        assert_eq!(runner.dead_letters, Figure::Known(0));
        assert_eq!(runner.oldest_age_seconds, Figure::Known(1.5));
        let executors = &f.services["executors"];
        assert_eq!(executors.depth, Figure::Known(0));
        assert_eq!(executors.dead_letters, Figure::Known(2));
        assert!(
            matches!(&executors.oldest_age_seconds, Figure::Unknown(r) if r.contains("ApproximateAgeOfOldestMessage")),
            "{executors:?}"
        );
        let json = serde_json::to_value(&f.services["executors"]).unwrap();
        assert_eq!(json["depth"], serde_json::json!({"known": 0}));
        assert!(json["oldest_age_seconds"]["unknown"].is_string(), "{json}");
    }

    #[test]
    fn ages_read_like_a_person_says_them() {
        assert_eq!(human_age(0.42), "0.4s");
        assert_eq!(human_age(42.0), "42s");
        assert_eq!(human_age(200.0), "3m 20s");
        assert_eq!(human_age(7500.0), "2h 5m");
    }
}
