//! Cron triggers. Every runner ticks once a second and starts, for each cron
//! trigger, the run of its latest due time, as if a synthetic event named
//! [`CRON_EVENT`] had arrived at that time. Run ids are deterministic (from
//! the function and the due time), so any number of runners may tick; a due
//! time older than [`LOOKBACK`] when first seen (every runner was down) is
//! skipped rather than replayed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::backend::Event;

/// The name of the synthetic event that starts a cron run.
pub const CRON_EVENT: &str = "stackctl/cron";
/// How late a due time may be noticed and still start its run.
pub const LOOKBACK: Duration = Duration::from_secs(60);
/// How often runners look for due cron triggers.
pub const TICK: Duration = Duration::from_secs(1);

/// The latest time (ms since epoch) `cron` was due at or before `now`, if
/// that is at most [`LOOKBACK`] ago.
pub fn due(cron: &croner::Cron, now: DateTime<Utc>) -> Option<i64> {
    let at = cron.find_previous_occurrence(&now, true).ok()?;
    // croner keeps `now`'s fraction of a second in the occurrence; the due
    // time (and so the run id) must be the same whenever a runner ticks.
    let at = at.timestamp() * 1000;
    let age = now.timestamp_millis() - at;
    (0..=LOOKBACK.as_millis() as i64)
        .contains(&age)
        .then_some(at)
}

/// The synthetic event of a cron run due at `at`.
pub fn cron_event(function_id: &str, schedule: &str, at: i64) -> Event {
    Event {
        internal_id: format!("cron:{function_id}:{at}"),
        id: None,
        name: CRON_EVENT.to_string(),
        data: json!({"function_id": function_id, "cron": schedule, "scheduled_at": at}),
        user: serde_json::Value::Null,
        ts: at,
        v: None,
        traceparent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::registry::parse_cron;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_latest_due_time_within_the_lookback() {
        let every5 = parse_cron("*/5 * * * *").unwrap();
        let t = |s| at(s).timestamp_millis();
        assert_eq!(
            due(&every5, at("2026-01-01T00:05:30Z")),
            Some(t("2026-01-01T00:05:00Z"))
        );
        assert_eq!(
            due(&every5, at("2026-01-01T00:05:00Z")),
            Some(t("2026-01-01T00:05:00Z"))
        );
        assert_eq!(
            due(&every5, at("2026-01-01T00:07:30Z")),
            None,
            "older than the lookback"
        );
    }

    #[test]
    fn every_tick_of_a_minute_names_the_same_due_time() {
        let every = parse_cron("* * * * *").unwrap();
        let t = |s| at(s).timestamp_millis();
        for now in [
            "2026-01-01T00:05:00.481Z",
            "2026-01-01T00:05:01.484Z",
            "2026-01-01T00:05:37.002Z",
            "2026-01-01T00:05:59.999Z",
        ] {
            assert_eq!(
                due(&every, at(now)),
                Some(t("2026-01-01T00:05:00Z")),
                "{now}"
            );
        }
    }

    #[test]
    fn cron_events_are_deterministic() {
        let a = cron_event("f", "* * * * *", 60_000);
        assert_eq!(a, cron_event("f", "* * * * *", 60_000));
        assert_ne!(
            a.internal_id,
            cron_event("g", "* * * * *", 60_000).internal_id
        );
        assert_eq!(a.name, CRON_EVENT);
        assert_eq!(a.ts, 60_000);
    }
}
