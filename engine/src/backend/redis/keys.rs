//! Key names. Braces mark the hash tag, so every key of one run (or one
//! event name, or one slot key) lands in one hash slot.

use crate::backend::RunStatus;

const PREFIX: &str = "stackctl:";

pub(crate) const FUNCTIONS: &str = "stackctl:functions";
pub(crate) const RUNS: &str = "stackctl:runs";
/// `ADD_WAIT`/`TAKE_WAIT` build a name's waits key from this and `}`.
pub(crate) const WAITS_PREFIX: &str = "stackctl:waits:{";

pub(crate) fn claim(key: &str) -> String {
    format!("{PREFIX}claim:{key}")
}

pub(crate) fn run(id: &str) -> String {
    format!("{PREFIX}run:{{{id}}}")
}

pub(crate) fn steps(run_id: &str) -> String {
    format!("{PREFIX}run:{{{run_id}}}:steps")
}

pub(crate) fn run_waits(run_id: &str) -> String {
    format!("{PREFIX}run:{{{run_id}}}:waits")
}

pub(crate) fn runs_with(status: RunStatus) -> String {
    format!("{RUNS}:{}", status_str(status))
}

pub(crate) fn event_runs(internal_id: &str) -> String {
    format!("{PREFIX}event-runs:{{{internal_id}}}")
}

pub(crate) fn waits(event_name: &str) -> String {
    format!("{WAITS_PREFIX}{event_name}}}")
}

/// One wait's field in its event name's waits hash.
pub(crate) fn wait_field(run_id: &str, step_id: &str) -> String {
    format!("{run_id}\n{step_id}")
}

/// The by-ts, bodies and by-expiry keys of one event name.
pub(crate) fn event_index(name: &str) -> [String; 3] {
    [
        format!("{PREFIX}events:{{{name}}}:ts"),
        format!("{PREFIX}events:{{{name}}}:body"),
        format!("{PREFIX}events:{{{name}}}:exp"),
    ]
}

pub(crate) fn slot(key: &str) -> String {
    format!("{PREFIX}slot:{{{key}}}")
}

pub(crate) fn status_str(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

pub(crate) fn parse_status(s: &str) -> Option<RunStatus> {
    Some(match s {
        "running" => RunStatus::Running,
        "completed" => RunStatus::Completed,
        "failed" => RunStatus::Failed,
        "cancelled" => RunStatus::Cancelled,
        _ => return None,
    })
}

pub(crate) const STATUSES: [RunStatus; 4] = [
    RunStatus::Running,
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
];
