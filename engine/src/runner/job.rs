//! The work queue's message: a [`Job`] asks an executor to act on one step
//! of one run. Jobs may be delivered more than once and duplicated by
//! concurrent schedulers; everything an executor does with one is idempotent.
//! Also the deterministic run id (one run per function per event).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::Message;

/// What an executor should do with a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Run the step (or an attempt of it): evaluate `if`, then its action.
    Step,
    /// A `sleep` step's deadline has come: complete it.
    Wake,
    /// A `wait_for_event` step's timeout has come: complete it with `null`
    /// unless an event resolved it first.
    WaitTimeout,
    /// One of the function's `timeouts` has come (the step id says which,
    /// see `flow::timeout_id`): cancel the run unless it is past that point.
    RunTimeout,
    /// A debounced event's quiet period may be over (the step id names the
    /// function and key, see `start::debounce_id`): start the run of the
    /// key's latest event if its time has come.
    Debounce,
    /// A batch's timeout has come (the step id names the function and key,
    /// see `start::batch_id`; the run id is the batch's): seal it and start
    /// its run unless it started already.
    Batch,
}

/// A step job on the work queue (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step_id: String,
    /// 1-based attempt this job is for (retries enqueue `attempt + 1`).
    pub attempt: u32,
    /// What to do.
    pub kind: JobKind,
    /// When the step was scheduled (ms since epoch): a wait only counts
    /// events from then on.
    pub scheduled_at: i64,
    /// Not to be acted on before this time (ms since epoch). Queues cap
    /// delays (SQS: 15 minutes), so a job that arrives early is sent again
    /// with the remaining delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
}

impl Job {
    /// A job to run `step_id` from its first attempt.
    pub fn first(run_id: &str, step_id: &str, now: i64) -> Self {
        Self {
            run_id: run_id.to_string(),
            step_id: step_id.to_string(),
            attempt: 1,
            kind: JobKind::Step,
            scheduled_at: now,
            not_before: None,
        }
    }

    /// The queue message, delayed until `not_before` (capped at `max_delay`).
    pub fn to_message(&self, now: i64, max_delay: Duration) -> Message {
        let delay = self
            .not_before
            .map(|t| Duration::from_millis(t.saturating_sub(now).max(0) as u64))
            .unwrap_or_default()
            .min(max_delay);
        Message {
            body: serde_json::to_vec(self).expect("a job always serializes"),
            delay,
        }
    }

    /// The queue message of a job that should be acted on as close to
    /// `not_before` as can be: delayed only to the last whole second
    /// before it, so it arrives up to a second early on every queue (SQS
    /// counts delays in whole seconds and rounds them up, which would make
    /// it up to a second late) and the executor waits out the rest.
    pub fn to_message_early(&self, now: i64, max_delay: Duration) -> Message {
        let mut message = self.to_message(now, max_delay);
        if message.delay < max_delay {
            message.delay = Duration::from_secs(message.delay.as_secs());
        }
        message
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Milliseconds left before the job may be acted on.
    pub fn remaining(&self, now: i64) -> Option<i64> {
        self.not_before.map(|t| t - now).filter(|ms| *ms > 0)
    }
}

/// The id of the run of `function_id` for the event with `internal_id`: a
/// ULID whose time part is the event's time (so ids sort by event time) and
/// whose random part is a hash of both ids (so a redelivered event maps to
/// the same run).
pub fn run_id(function_id: &str, internal_id: &str, event_ts: i64) -> String {
    let mut hash = Sha256::new();
    hash.update(function_id.as_bytes());
    hash.update([0u8]);
    hash.update(internal_id.as_bytes());
    let digest = hash.finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let ts = event_ts.clamp(0, (1 << 48) - 1) as u64;
    ulid::Ulid::from_parts(ts, u128::from_be_bytes(random)).to_string()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_deterministic_and_distinct() {
        let a = run_id("f", "01J0000000000000000000000A", 1_700_000_000_000);
        assert_eq!(
            a,
            run_id("f", "01J0000000000000000000000A", 1_700_000_000_000)
        );
        assert_ne!(
            a,
            run_id("g", "01J0000000000000000000000A", 1_700_000_000_000)
        );
        assert_ne!(
            a,
            run_id("f", "01J0000000000000000000000B", 1_700_000_000_000)
        );
        let parsed = ulid::Ulid::from_string(&a).unwrap();
        assert_eq!(parsed.timestamp_ms(), 1_700_000_000_000);
        // Out-of-range times still give a valid id.
        ulid::Ulid::from_string(&run_id("f", "x", -5)).unwrap();
    }

    #[test]
    fn delays_are_capped_and_never_negative() {
        let mut job = Job::first("r", "s", 1000);
        assert_eq!(
            job.to_message(1000, Duration::from_secs(900)).delay,
            Duration::ZERO
        );
        job.not_before = Some(1500);
        assert_eq!(
            job.to_message(1000, Duration::from_secs(900)).delay,
            Duration::from_millis(500)
        );
        assert_eq!(
            job.to_message(2000, Duration::from_secs(900)).delay,
            Duration::ZERO
        );
        job.not_before = Some(1000 + 3_600_000);
        assert_eq!(
            job.to_message(1000, Duration::from_secs(900)).delay,
            Duration::from_secs(900)
        );
        assert_eq!(job.remaining(1000), Some(3_600_000));
        assert_eq!(job.remaining(1000 + 3_600_000), None);
    }

    #[test]
    fn early_messages_arrive_within_a_second_before_their_time() {
        let mut job = Job::first("r", "s", 1000);
        let max = Duration::from_secs(900);
        job.not_before = Some(1000 + 2_700);
        assert_eq!(
            job.to_message_early(1000, max).delay,
            Duration::from_secs(2)
        );
        job.not_before = Some(1000 + 700);
        assert_eq!(job.to_message_early(1000, max).delay, Duration::ZERO);
        job.not_before = Some(1000 + 3_600_000);
        assert_eq!(job.to_message_early(1000, max).delay, max, "the cap stays");
    }

    #[test]
    fn jobs_round_trip_as_json() {
        let mut job = Job::first("r", "s", 5);
        job.kind = JobKind::WaitTimeout;
        job.not_before = Some(9);
        let body = job.to_message(0, Duration::from_secs(1)).body;
        assert_eq!(Job::decode(&body).unwrap(), job);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("\"kind\":\"wait_timeout\""), "{text}");
    }
}
