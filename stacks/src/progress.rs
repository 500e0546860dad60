//! How an operation of either provider reports what it is doing while it
//! runs: a [`Progress`] receives start/ok/fail/info events keyed by action;
//! the CLI draws them (bars on a terminal, plain lines otherwise, NDJSON
//! with `--output json`).

use serde::Serialize;

/// The phase of a progress event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A check or action began.
    Start,
    /// It succeeded.
    Ok,
    /// It failed.
    Fail,
    /// A fact worth showing, not tied to a check.
    Info,
}

/// One progress event; `key` ties a `start` to its `ok` or `fail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgressEvent {
    /// What happened.
    pub phase: Phase,
    /// Identifies the action, e.g. `health:runner-0`.
    pub key: String,
    /// For people.
    pub message: String,
}

/// Where the provider reports what it is doing; the CLI draws it.
pub trait Progress: Send + Sync {
    /// Receives one event.
    fn report(&self, event: ProgressEvent);

    /// Reports that `key` started.
    fn start(&self, key: &str, message: &str) {
        self.emit(Phase::Start, key, message);
    }
    /// Reports that `key` succeeded.
    fn ok(&self, key: &str, message: &str) {
        self.emit(Phase::Ok, key, message);
    }
    /// Reports that `key` failed.
    fn fail(&self, key: &str, message: &str) {
        self.emit(Phase::Fail, key, message);
    }
    /// Reports a fact.
    fn info(&self, message: &str) {
        self.emit(Phase::Info, "", message);
    }
    /// Builds and reports an event.
    fn emit(&self, phase: Phase, key: &str, message: &str) {
        self.report(ProgressEvent {
            phase,
            key: key.to_string(),
            message: message.to_string(),
        });
    }
}

/// A [`Progress`] that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn report(&self, _: ProgressEvent) {}
}
