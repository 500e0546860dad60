//! Key names. Braces mark the hash tag, so every key of one run (or one
//! event name, or one slot key) lands in one hash slot. On a Redis Cluster
//! (MemoryDB) the prefix itself is the hash tag: every key lands in one slot,
//! so the scripts that span runs and indexes run there unchanged.

use crate::backend::RunStatus;

/// The key names of one store: the prefix decides the hash slots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    prefix: &'static str,
}

impl Keys {
    /// Per-run hash slots: Redis with cluster mode disabled.
    pub(crate) const STANDALONE: Self = Self {
        prefix: "stackctl:",
    };
    /// One hash slot for everything: a Redis Cluster, where a script or a
    /// multi-key command must stay in one slot.
    pub(crate) const CLUSTER: Self = Self {
        prefix: "{stackctl}:",
    };

    /// The prefix of every key (the scripts that build run keys get it).
    pub(crate) fn prefix(self) -> &'static str {
        self.prefix
    }

    pub(crate) fn functions(self) -> String {
        format!("{}functions", self.prefix)
    }

    pub(crate) fn runs(self) -> String {
        format!("{}runs", self.prefix)
    }

    /// `ADD_WAIT`/`TAKE_WAIT` build a name's waits key from this and `}`.
    pub(crate) fn waits_prefix(self) -> String {
        format!("{}waits:{{", self.prefix)
    }

    pub(crate) fn claim(self, key: &str) -> String {
        format!("{}claim:{key}", self.prefix)
    }

    pub(crate) fn run(self, id: &str) -> String {
        format!("{}run:{{{id}}}", self.prefix)
    }

    pub(crate) fn steps(self, run_id: &str) -> String {
        format!("{}run:{{{run_id}}}:steps", self.prefix)
    }

    pub(crate) fn run_waits(self, run_id: &str) -> String {
        format!("{}run:{{{run_id}}}:waits", self.prefix)
    }

    pub(crate) fn runs_with(self, status: RunStatus) -> String {
        format!("{}runs:{}", self.prefix, status_str(status))
    }

    pub(crate) fn event_runs(self, internal_id: &str) -> String {
        format!("{}event-runs:{{{internal_id}}}", self.prefix)
    }

    pub(crate) fn waits(self, event_name: &str) -> String {
        format!("{}{event_name}}}", self.waits_prefix())
    }

    /// The by-ts, bodies and by-expiry keys of one event name.
    pub(crate) fn event_index(self, name: &str) -> [String; 3] {
        let p = self.prefix;
        [
            format!("{p}events:{{{name}}}:ts"),
            format!("{p}events:{{{name}}}:body"),
            format!("{p}events:{{{name}}}:exp"),
        ]
    }

    pub(crate) fn slot(self, key: &str) -> String {
        format!("{}slot:{{{key}}}", self.prefix)
    }

    /// A slot key's waiters for [`slot`](Self::slot) in rank order (sorted
    /// set: holder → rank) and their registrations' expiry (holder → ms),
    /// in the slot key's hash slot so one script reads all three.
    pub(crate) fn slot_waiters(self, key: &str) -> [String; 2] {
        let p = self.prefix;
        [
            format!("{p}slot:{{{key}}}:waiters"),
            format!("{p}slot:{{{key}}}:waiting-until"),
        ]
    }

    /// A throttle key's theoretical arrival time (a string) and its
    /// reservations (sorted set: holder → reserved start).
    pub(crate) fn throttle(self, key: &str) -> [String; 2] {
        let p = self.prefix;
        [
            format!("{p}throttle:{{{key}}}"),
            format!("{p}throttle:{{{key}}}:starts"),
        ]
    }

    /// A batch key's open batch (a string: its id) and the batch of one
    /// of its events (a string per event: the batch id).
    pub(crate) fn batch_key(self, key: &str, internal_id: &str) -> [String; 2] {
        let p = self.prefix;
        [
            format!("{p}batch-open:{{{key}}}"),
            format!("{p}batch-member:{{{key}}}:{internal_id}"),
        ]
    }

    /// `BATCH_ADD` builds a batch's key (hash: at, n, e1..en) from this,
    /// the batch id and `}`.
    pub(crate) fn batch_prefix(self) -> String {
        format!("{}batch:{{", self.prefix)
    }

    /// A batch's hash (at, n, e1..en: its events in the order they joined).
    pub(crate) fn batch(self, batch_id: &str) -> String {
        format!("{}{batch_id}}}", self.batch_prefix())
    }

    /// A debounce key's latest event (hash: id, event, since, last).
    pub(crate) fn debounce(self, key: &str) -> String {
        format!("{}debounce:{{{key}}}", self.prefix)
    }
}

/// One wait's field in its event name's waits hash.
pub(crate) fn wait_field(run_id: &str, step_id: &str) -> String {
    format!("{run_id}\n{step_id}")
}

pub(crate) fn status_str(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Skipped => "skipped",
    }
}

pub(crate) fn parse_status(s: &str) -> Option<RunStatus> {
    Some(match s {
        "running" => RunStatus::Running,
        "completed" => RunStatus::Completed,
        "failed" => RunStatus::Failed,
        "cancelled" => RunStatus::Cancelled,
        "skipped" => RunStatus::Skipped,
        _ => return None,
    })
}
