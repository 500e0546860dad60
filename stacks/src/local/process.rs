//! Engine processes on this machine: starting one in the background (its
//! own process group, so Ctrl-C of `stackctl` leaves it running; output to
//! its log file), telling whether a recorded pid is still that process, and
//! stopping it (SIGTERM, then SIGKILL after a deadline).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine::config::Role;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::LocalError;

/// How to run an engine role: a program and the arguments before
/// `--role R --config PATH` (for `stackctl` itself: its path and `engine`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    /// The program.
    pub program: PathBuf,
    /// Arguments placed before the role and config arguments.
    pub args: Vec<String>,
}

impl Launcher {
    /// The program's path and modification time, to notice a rebuild.
    pub fn identity(&self) -> String {
        let mtime = std::fs::metadata(&self.program)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        format!("{}@{mtime}", self.program.display())
    }
}

/// Environment variables the engine reads as overrides: cleared for local
/// processes so the configuration file alone decides (a user's shell
/// settings for a container must not move a local stack's ports).
const ENGINE_ENV: [&str; 8] = [
    engine::config::ENV_CONFIG,
    engine::config::ENV_EVENT_KEYS,
    engine::config::ENV_API_TOKEN,
    engine::config::ENV_DB_PATH,
    engine::config::ENV_EVENT_API_BIND,
    engine::config::ENV_RUNNER_BIND,
    engine::config::ENV_EXECUTOR_BIND,
    engine::config::ENV_LOG_FORMAT,
];

/// Starts `role` with `config` in the background, appending its output to
/// `log`; returns its pid. The child is not waited for: it outlives us.
pub fn spawn(
    launcher: &Launcher,
    role: Role,
    config: &Path,
    log: &Path,
    cwd: &Path,
) -> Result<u32, LocalError> {
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| LocalError::io("open", log, source))?;
    // A marker between runs, so a reader of the log can tell restarts apart.
    writeln!(
        out,
        "---- stackctl: starting {} at {} ms ----",
        role.as_str(),
        super::now_ms()
    )
    .map_err(|source| LocalError::io("write", log, source))?;
    let err = out
        .try_clone()
        .map_err(|source| LocalError::io("open", log, source))?;
    let mut cmd = Command::new(&launcher.program);
    cmd.args(&launcher.args)
        .arg("--role")
        .arg(role.as_str())
        .arg("--config")
        .arg(config)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    for var in ENGINE_ENV {
        cmd.env_remove(var);
    }
    let child = cmd.spawn().map_err(|source| LocalError::Spawn {
        program: launcher.program.clone(),
        source,
    })?;
    // Dropping the handle neither waits nor kills: the process is ours to
    // find again by pid (and is reaped by init once we exit).
    Ok(child.id())
}

/// Whether `pid` is alive and still the engine process started with
/// `config` (a recycled pid running something else is not).
pub fn is_alive(pid: u32, config: &Path) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !Path::new("/proc/self").exists() {
        // No procfs (macOS): the signal check is all there is.
        return true;
    }
    // A zombie (exited, not yet reaped) still answers signals.
    if let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) {
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if matches!(state, Some('Z' | 'X')) {
            return false;
        }
    }
    match std::fs::read(proc_dir.join("cmdline")) {
        Ok(cmdline) => {
            let wanted = config.as_os_str().as_encoded_bytes();
            cmdline.split(|b| *b == 0).any(|arg| arg == wanted)
        }
        Err(_) => false,
    }
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running.
    AlreadyGone,
    /// It exited after SIGTERM.
    Terminated,
    /// It ignored SIGTERM until the deadline and was killed.
    Killed,
    /// It is still there even after SIGKILL.
    Stuck,
}

/// Sends SIGTERM to each process, waits up to `grace` for all of them,
/// SIGKILLs the rest; returns how each one went, in order.
pub async fn stop_all(targets: &[(u32, PathBuf)], grace: Duration) -> Vec<Stopped> {
    let mut result: Vec<Stopped> = targets
        .iter()
        .map(|(pid, config)| {
            if is_alive(*pid, config) && signal(*pid, Signal::SIGTERM) {
                Stopped::Terminated
            } else {
                Stopped::AlreadyGone
            }
        })
        .collect();
    let still = |result: &[Stopped]| -> Vec<usize> {
        (0..targets.len())
            .filter(|&i| result[i] == Stopped::Terminated && is_alive(targets[i].0, &targets[i].1))
            .collect()
    };
    let deadline = Instant::now() + grace;
    while !still(&result).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stragglers = still(&result);
    for &i in &stragglers {
        signal(targets[i].0, Signal::SIGKILL);
        result[i] = Stopped::Killed;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !still_killed(targets, &result).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in still_killed(targets, &result) {
        result[i] = Stopped::Stuck;
    }
    result
}

fn still_killed(targets: &[(u32, PathBuf)], result: &[Stopped]) -> Vec<usize> {
    (0..targets.len())
        .filter(|&i| result[i] == Stopped::Killed && is_alive(targets[i].0, &targets[i].1))
        .collect()
}

/// Signals the process's group (each engine process leads its own), so a
/// helper it started goes too.
fn signal(pid: u32, sig: Signal) -> bool {
    i32::try_from(pid).is_ok_and(|raw| {
        kill(Pid::from_raw(-raw), sig).is_ok() || kill(Pid::from_raw(raw), sig).is_ok()
    })
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, LocalError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|source| LocalError::io("bind", Path::new("127.0.0.1:0"), source))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| LocalError::io("bind", Path::new("127.0.0.1:0"), source))
}

/// Whether something already listens on `127.0.0.1:port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_started_process_is_alive_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        // A shell stands in for the engine: what matters is that the config
        // path is on its command line, as it is for `--config PATH`.
        let config = dir.path().join("runner-0.json");
        std::fs::write(&config, "{}").unwrap();
        let log = dir.path().join("runner-0.log");
        let launcher = Launcher {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), "sleep 30; true".into(), "sh".into()],
        };
        let pid = spawn(&launcher, Role::Runner, &config, &log, dir.path()).unwrap();
        // `spawn` returns once the child exists; its command line in /proc
        // shows the new program only once exec has finished, which under
        // load can be a moment later.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_alive(pid, &config) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "pid {pid} never showed its config path; cmdline: {:?}",
                String::from_utf8_lossy(&cmdline)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !is_alive(pid, &dir.path().join("other.json")),
            "identity is checked by the config path"
        );
        let stopped = stop_all(&[(pid, config.clone())], Duration::from_secs(5)).await;
        assert_eq!(stopped, vec![Stopped::Terminated]);
        assert!(!is_alive(pid, &config));
        assert!(!is_alive(pid, &config), "a stopped process stays stopped");
        let stopped = stop_all(&[(pid, config.clone())], Duration::from_secs(1)).await;
        assert_eq!(stopped, vec![Stopped::AlreadyGone]);
        assert!(log_tail(&log, 5).contains("stackctl: starting runner"));
    }
}
