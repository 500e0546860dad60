//! A stack's dead-letter queues, local or on AWS: what is in them (the
//! events or the step job each message holds, how often it was delivered)
//! and moving it back to its queue once the cause is fixed. The engine's
//! own queue backends do the reading and moving, so this works on every
//! backend a stack can use (embedded, SQS locally, SQS on AWS).

use std::sync::Arc;

use engine::backend::{BackendError, DeadLetter, Queue};
use serde::Serialize;

use crate::local::LocalError;
use crate::spec::{LoadedSpec, Provider};

/// One of a stack's two queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueName {
    /// The event stream (event API to runner).
    Events,
    /// The work queue (step jobs).
    Work,
}

impl QueueName {
    /// `events` or `work`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Work => "work",
        }
    }
}

/// What `dlq` looks at and does.
#[derive(Debug, Clone)]
pub struct DlqOptions {
    /// The queues whose dead letters to show (or move).
    pub queues: Vec<QueueName>,
    /// Most messages shown (or moved) per queue.
    pub limit: usize,
    /// Move the dead letters back to their queue instead of showing them.
    pub redrive: bool,
}

/// The dead letters of a stack's queues.
#[derive(Debug, Clone, Serialize)]
pub struct DlqReport {
    /// The stack.
    pub stack: String,
    /// `local` or `aws`.
    pub provider: &'static str,
    /// One entry per queue asked about.
    pub queues: Vec<DeadQueue>,
}

impl DlqReport {
    /// Whether every queue asked about has an empty dead-letter queue (after
    /// a redrive: is empty now).
    pub fn empty(&self) -> bool {
        self.queues.iter().all(|q| q.count == 0)
    }
}

/// One queue's dead letters.
#[derive(Debug, Clone, Serialize)]
pub struct DeadQueue {
    /// Which queue.
    pub queue: QueueName,
    /// Messages in its dead-letter queue (after the redrive, if any;
    /// approximate on SQS).
    pub count: u64,
    /// Up to the limit of them, oldest first (none after a redrive).
    pub letters: Vec<Letter>,
    /// With `redrive`: how many were moved back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven: Option<usize>,
}

/// A dead-lettered message.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    /// The message's id in its queue.
    pub id: String,
    /// When it was first sent (ms since the epoch).
    pub sent_at: i64,
    /// Deliveries it had.
    pub receive_count: u32,
    /// What it holds.
    #[serde(flatten)]
    pub content: Content,
}

/// What a dead-lettered message holds.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "content", rename_all = "snake_case")]
pub enum Content {
    /// Events of the event stream.
    Events {
        /// The events, in the order sent.
        events: Vec<EventRef>,
    },
    /// A step job of the work queue.
    Job {
        /// The run.
        run_id: String,
        /// The step.
        step_id: String,
        /// `step`, `wake` or `wait_timeout`.
        kind: String,
    },
    /// A body the engine cannot read (which is why it was dead-lettered).
    Undecodable {
        /// Its size.
        bytes: usize,
        /// Why it cannot be read.
        error: String,
    },
}

/// An event in a dead-lettered message.
#[derive(Debug, Clone, Serialize)]
pub struct EventRef {
    /// The id the event API answered.
    pub internal_id: String,
    /// The event's name.
    pub name: String,
    /// The sender's `id`, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Why `dlq` failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The local stack's backends could not be found.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// The AWS stack could not be opened.
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Aws(#[from] crate::aws::ops::OpError),
    /// A queue backend failed.
    #[error("cannot {what} the {queue} dead-letter queue of stack `{stack}`")]
    Backend {
        /// `read` or `redrive`.
        what: &'static str,
        /// The stack.
        stack: String,
        /// Which queue.
        queue: &'static str,
        /// The backend's error.
        source: BackendError,
    },
}

/// Shows (or, with `redrive`, moves back) the dead letters of the stack's
/// queues.
pub async fn dlq(loaded: &LoadedSpec, opts: &DlqOptions) -> Result<DlqReport, DlqError> {
    let stack = loaded.spec.stack.clone();
    let (provider, queues) = match loaded.spec.provider {
        Provider::Aws => ("aws", aws_queues(loaded).await?),
        Provider::Local => ("local", local_queues(loaded).await?),
    };
    let mut report = DlqReport {
        stack: stack.clone(),
        provider,
        queues: Vec::new(),
    };
    for &name in &opts.queues {
        let failed = |what: &'static str| {
            let stack = stack.clone();
            move |source| DlqError::Backend {
                what,
                stack,
                queue: name.as_str(),
                source,
            }
        };
        let Some((events, work)) = &queues else {
            // A local stack that never ran has no queues yet.
            report.queues.push(DeadQueue {
                queue: name,
                count: 0,
                letters: Vec::new(),
                redriven: opts.redrive.then_some(0),
            });
            continue;
        };
        let queue = match name {
            QueueName::Events => events,
            QueueName::Work => work,
        };
        let redriven = if opts.redrive {
            Some(queue.redrive(opts.limit).await.map_err(failed("redrive"))?)
        } else {
            None
        };
        let letters = if opts.redrive {
            Vec::new()
        } else {
            queue
                .dead_letters(opts.limit)
                .await
                .map_err(failed("read"))?
                .into_iter()
                .map(|d| letter(name, d))
                .collect()
        };
        let count = queue.depth().await.map_err(failed("read"))?.dead;
        report.queues.push(DeadQueue {
            queue: name,
            count,
            letters,
            redriven,
        });
    }
    Ok(report)
}

type Pair = Option<(Arc<dyn Queue>, Arc<dyn Queue>)>;

async fn local_queues(loaded: &LoadedSpec) -> Result<Pair, DlqError> {
    let Some(backend) = crate::local::engine_backend(loaded)? else {
        return Ok(None);
    };
    let queues = crate::engine_config::queues(&loaded.spec);
    let opened = engine::backend::open(&backend, &queues)
        .await
        .map_err(open_failed(loaded))?;
    Ok(Some((opened.events, opened.work)))
}

#[cfg(feature = "aws")]
async fn aws_queues(loaded: &LoadedSpec) -> Result<Pair, DlqError> {
    use crate::graph::LogicalId;

    let opened = crate::aws::ops::open(
        loaded,
        crate::aws::lock::ForceUnlock::No,
        &crate::progress::Silent,
    )
    .await?;
    let name = |id: &str| {
        opened
            .graph
            .get(&LogicalId::new(id))
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    let queues = crate::engine_config::queues(&loaded.spec);
    let (events, work) = engine::backend::sqs::open_pair_with(
        opened.aws.sqs().clone(),
        &name("sqs.events"),
        &name("sqs.work"),
        false,
        &queues,
    )
    .await
    .map_err(open_failed(loaded))?;
    Ok(Some((events, work)))
}

#[cfg(not(feature = "aws"))]
async fn aws_queues(loaded: &LoadedSpec) -> Result<Pair, DlqError> {
    Err(DlqError::Local(LocalError::WrongProvider {
        stack: loaded.spec.stack.clone(),
        provider: "aws",
    }))
}

fn open_failed(loaded: &LoadedSpec) -> impl FnOnce(BackendError) -> DlqError + '_ {
    |source| DlqError::Backend {
        what: "read",
        stack: loaded.spec.stack.clone(),
        queue: "events and work",
        source,
    }
}

/// What a dead letter of `queue` holds, decoded as the engine would.
fn letter(queue: QueueName, d: DeadLetter) -> Letter {
    let content = match queue {
        QueueName::Events => match engine::backend::decode_events(&d.body) {
            Ok(events) => Content::Events {
                events: events
                    .into_iter()
                    .map(|e| EventRef {
                        internal_id: e.internal_id,
                        name: e.name,
                        id: e.id,
                    })
                    .collect(),
            },
            Err(e) => undecodable(&d.body, e.to_string()),
        },
        QueueName::Work => match engine::runner::Job::decode(&d.body) {
            Ok(job) => Content::Job {
                run_id: job.run_id,
                step_id: job.step_id,
                kind: serde_json::to_value(job.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            },
            Err(e) => undecodable(&d.body, e.to_string()),
        },
    };
    Letter {
        id: d.id,
        sent_at: d.sent_at,
        receive_count: d.receive_count,
        content,
    }
}

fn undecodable(body: &[u8], error: String) -> Content {
    Content::Undecodable {
        bytes: body.len(),
        error,
    }
}
