//! `state.json`: what the local provider started (pids, roles, ports,
//! configs, logs) and the counts it runs, rewritten atomically after every
//! change so a crash of `stackctl` never leaves it torn.

use std::path::{Path, PathBuf};

use engine::config::Role;
use serde::{Deserialize, Serialize};

use super::LocalError;
use crate::stackref::write_atomic;

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// The local stack as last left by `up`, `scale` or `down`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackState {
    /// Format version of this file.
    pub version: u32,
    /// The stack's name.
    pub stack: String,
    /// Absolute path of the spec used.
    pub spec: PathBuf,
    /// The event API's base port (instance `i` listens on `port + i`).
    pub event_api_port: u16,
    /// Process counts by service, as last applied (`scale` changes them).
    pub counts: Counts,
    /// Every engine process started and not stopped since.
    pub processes: Vec<ProcessRecord>,
    /// Milliseconds since the epoch of the last change.
    pub updated_at: i64,
}

/// Process counts by service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// `services.event-api.count`.
    #[serde(rename = "event-api")]
    pub event_api: u32,
    /// `services.runner.count`.
    pub runner: u32,
    /// `executors.desired`.
    pub executors: u32,
}

impl Counts {
    /// The count of `role`'s service.
    pub fn of(&self, role: Role) -> u32 {
        match role {
            Role::EventApi => self.event_api,
            Role::Runner => self.runner,
            Role::Executor | Role::All => self.executors,
        }
    }

    /// Sets the count of `role`'s service.
    pub fn set(&mut self, role: Role, n: u32) {
        match role {
            Role::EventApi => self.event_api = n,
            Role::Runner => self.runner = n,
            Role::Executor | Role::All => self.executors = n,
        }
    }
}

/// One engine process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// e.g. `executor-2`.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its index among the processes of its role.
    pub index: u32,
    /// Process id.
    pub pid: u32,
    /// Port of its `/health` (the event API's own port for the event API).
    pub port: u16,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    /// Its engine configuration file.
    pub config: PathBuf,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    /// The program it runs, with its modification time: `up` restarts a
    /// process whose program was rebuilt since.
    #[serde(default)]
    pub program: String,
}

impl StackState {
    /// Reads the state file of `state_dir`; `None` if there is none.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, LocalError> {
        let path = state_dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LocalError::io("read", &path, source)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LocalError::CorruptState {
                path,
                message: e.to_string(),
            })
    }

    /// Writes the state file atomically.
    pub fn save(&mut self, state_dir: &Path) -> Result<(), LocalError> {
        self.updated_at = super::now_ms();
        self.processes.sort_by_key(|p| (p.role, p.index));
        let path = state_dir.join(STATE_FILE);
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| LocalError::CorruptState {
            path: path.clone(),
            message: e.to_string(),
        })?;
        text.push(b'\n');
        write_atomic(&path, &text).map_err(|source| LocalError::io("write", &path, source))
    }

    /// The recorded process of `role` with this index.
    pub fn process(&self, role: Role, index: u32) -> Option<&ProcessRecord> {
        self.processes
            .iter()
            .find(|p| p.role == role && p.index == index)
    }
}

/// The name of a process: role and index, e.g. `runner-0`.
pub fn process_name(role: Role, index: u32) -> String {
    format!("{}-{index}", role.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_processes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StackState::load(dir.path()).unwrap().is_none());
        let rec = |role, index| ProcessRecord {
            name: process_name(role, index),
            role,
            index,
            pid: 42,
            port: 9000,
            started_at: 1,
            config: "c.json".into(),
            log: "l.log".into(),
            program: "/bin/stackctl@1".into(),
        };
        let mut s = StackState {
            version: 1,
            stack: "demo".into(),
            spec: "/x/local.yaml".into(),
            event_api_port: 8288,
            counts: Counts {
                event_api: 1,
                runner: 1,
                executors: 2,
            },
            processes: vec![
                rec(Role::Executor, 1),
                rec(Role::EventApi, 0),
                rec(Role::Executor, 0),
            ],
            updated_at: 0,
        };
        s.save(dir.path()).unwrap();
        let back = StackState::load(dir.path()).unwrap().unwrap();
        assert_eq!(back, s);
        let names: Vec<&str> = back.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["event-api-0", "executor-0", "executor-1"]);
        assert!(back.updated_at > 0);
        let text = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(text.contains("\"event-api\": 1"), "{text}");
    }
}
