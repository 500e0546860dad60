//! Reading a stack's CloudWatch Logs (`stackctl logs`): the log group of a
//! service comes from the graph (`logs.{service}`); events are read with
//! `FilterLogEvents` across every stream of the group, and followed by
//! polling. A follower re-reads a short window before the newest event it
//! has seen, because CloudWatch may make an event visible after newer
//! ones; event ids keep it from printing an event twice.

use std::collections::BTreeMap;

use serde::Serialize;

use super::context::Aws;
use super::error::{AwsError, Subject};
use crate::graph::{Graph, LogicalId};
use crate::local::Service;

/// How far back a follower looks again for late events.
const LATE_WINDOW_MS: i64 = 60_000;

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    /// The service (`runner`).
    pub service: String,
    /// When it was logged, ms since the epoch.
    pub timestamp_ms: i64,
    /// The log stream (one per task or instance).
    pub stream: String,
    /// The message.
    pub message: String,
    /// CloudWatch's event id.
    pub event_id: String,
}

/// The log group of `service` in `graph`.
pub fn log_group(graph: &Graph, service: Service) -> Option<String> {
    graph
        .get(&LogicalId::new(format!("logs.{}", service.as_str())))
        .map(|r| r.name.clone())
}

/// Every event of `group` from `start_ms` on (inclusive), oldest first.
pub async fn fetch(
    aws: &Aws,
    service: Service,
    group: &str,
    start_ms: i64,
) -> Result<Vec<LogEvent>, AwsError> {
    let subject = Subject::other("log group", group);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let mut last: Option<String> = None;
    loop {
        let page = aws
            .logs()
            .filter_log_events()
            .log_group_name(group)
            .start_time(start_ms)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| AwsError::api(subject.clone(), "FilterLogEvents", e))?;
        out.extend(page.events().iter().map(|e| LogEvent {
            service: service.as_str().to_string(),
            timestamp_ms: e.timestamp.unwrap_or(0),
            stream: e.log_stream_name.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            event_id: e.event_id.clone().unwrap_or_default(),
        }));
        // CloudWatch may answer an empty page with a token while it still
        // searches: follow tokens until none, or one repeats.
        match page.next_token {
            Some(t) if !t.is_empty() && last.as_deref() != Some(t.as_str()) => {
                last = Some(t.clone());
                token = Some(t);
            }
            _ => break,
        }
    }
    out.sort_by(|a, b| {
        (a.timestamp_ms, &a.stream, &a.event_id).cmp(&(b.timestamp_ms, &b.stream, &b.event_id))
    });
    Ok(out)
}

/// Follows a log group: each [`Follower::poll`] returns the events not
/// returned before.
#[derive(Debug)]
pub struct Follower {
    service: Service,
    group: String,
    since_ms: i64,
    newest_ms: i64,
    /// Ids of events in the re-read window, by timestamp.
    seen: BTreeMap<i64, Vec<String>>,
}

impl Follower {
    /// Starts at `since_ms`.
    pub fn new(service: Service, group: impl Into<String>, since_ms: i64) -> Self {
        Self {
            service,
            group: group.into(),
            since_ms,
            newest_ms: since_ms,
            seen: BTreeMap::new(),
        }
    }

    /// The events that appeared since the last poll.
    pub async fn poll(&mut self, aws: &Aws) -> Result<Vec<LogEvent>, AwsError> {
        let start = (self.newest_ms - LATE_WINDOW_MS).max(self.since_ms);
        let events = fetch(aws, self.service, &self.group, start).await?;
        let mut fresh = Vec::new();
        for e in events {
            let ids = self.seen.entry(e.timestamp_ms).or_default();
            if ids.contains(&e.event_id) {
                continue;
            }
            ids.push(e.event_id.clone());
            self.newest_ms = self.newest_ms.max(e.timestamp_ms);
            fresh.push(e);
        }
        let keep_from = (self.newest_ms - LATE_WINDOW_MS).max(self.since_ms);
        self.seen = self.seen.split_off(&keep_from);
        Ok(fresh)
    }
}
