//! Child-process plumbing shared by every component: finding binaries, free
//! ports, spawning with output captured to a log file, polling for readiness
//! against a deadline, and stopping (SIGTERM, then SIGKILL) on drop.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Generous: a cold python import of moto takes seconds while cargo compiles on
/// the same two cores. A component that crashes is reported at once anyway.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_BYTES: u64 = 8 * 1024;

/// The workspace root: the nearest ancestor holding `Cargo.lock` or `.git`
/// of the working directory (cargo runs every test in its crate's
/// directory), else of the harness's own manifest dir. The working directory
/// comes first because a target dir shared by two checkouts of the workspace
/// can hand this crate, compiled in the other one, a manifest dir that is not
/// this checkout's (or no longer exists).
pub fn repo_root() -> PathBuf {
    let root_of = |start: &Path| {
        start
            .ancestors()
            .find(|dir| dir.join("Cargo.lock").is_file() || dir.join(".git").exists())
            .map(Path::to_path_buf)
    };
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::current_dir()
        .ok()
        .and_then(|cwd| root_of(&cwd))
        .or_else(|| root_of(built))
        .unwrap_or_else(|| built.to_path_buf())
}

/// A port on 127.0.0.1 that was free a moment ago. Another process may take it
/// before the component binds it, so callers retry the start on "address in use".
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::io("bind 127.0.0.1:0 to find a free port", e))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| Error::io("read the free port", e))
}

/// Looks for `binary` in `candidates` (explicit paths, in order), then in
/// `PATH`, then in the sbin dirs that a non-root `PATH` lacks (runc lives there).
pub(crate) fn find_binary(
    binary: &'static str,
    package: &'static str,
    candidates: &[PathBuf],
) -> Result<PathBuf> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    let searched: Vec<PathBuf> = candidates
        .iter()
        .cloned()
        .chain(path_dirs.iter().chain(&sbin).map(|dir| dir.join(binary)))
        .collect();
    first_executable(binary, package, &searched, || describe_search(candidates))
}

/// Like [`find_binary`], looking only in `candidates`.
pub(crate) fn find_only(
    binary: &'static str,
    package: &'static str,
    candidates: &[PathBuf],
) -> Result<PathBuf> {
    first_executable(binary, package, candidates, || {
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The first of `paths` that is an executable file, else `MissingBinary`
/// saying where it was looked for (`searched`).
fn first_executable(
    binary: &'static str,
    package: &'static str,
    paths: &[PathBuf],
    searched: impl FnOnce() -> String,
) -> Result<PathBuf> {
    paths
        .iter()
        .find(|path| is_executable(path))
        .cloned()
        .ok_or_else(|| Error::MissingBinary {
            binary,
            package,
            searched: searched(),
        })
}

fn describe_search(candidates: &[PathBuf]) -> String {
    let mut places: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    places.push("PATH".into());
    places.push("/usr/sbin".into());
    places.join(", ")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Renders a command line for error messages.
pub(crate) fn display_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a short helper command to completion; its output goes into the error.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let command = display_command(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("run `{command}`"), e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Command {
            command,
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

/// The last few KB of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One running component process whose stdout and stderr go to a log file.
/// Dropping it stops the process and waits for it.
#[derive(Debug)]
pub(crate) struct Proc {
    component: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and output appended to `log_path`.
    pub(crate) fn spawn(
        component: &'static str,
        mut cmd: Command,
        log_path: &Path,
    ) -> Result<Self> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| Error::io(format!("open {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io("duplicate the log handle", e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| Error::Spawn {
                component,
                command: display_command(&cmd),
                source,
            })?;
        Ok(Proc {
            component,
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn log(&self) -> String {
        log_tail(&self.log_path)
    }

    /// An `Exited` error if the process is gone.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        let status = match self.child.as_mut() {
            None => Some("stopped".to_owned()),
            Some(child) => child
                .try_wait()
                .map_err(|e| Error::io(format!("poll {}", self.component), e))?
                .map(|s| s.to_string()),
        };
        match status {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                component: self.component,
                status,
                log_path: self.log_path.clone(),
                log: self.log(),
            }),
        }
    }

    /// Polls `probe` until it returns `Ok`, the process exits, or the timeout
    /// passes. `probe` returns `Err(reason)` while the component is not ready.
    pub(crate) fn wait_ready<T>(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> std::result::Result<T, String>,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let reason = match probe() {
                Ok(value) => return Ok(value),
                Err(reason) => reason,
            };
            if started.elapsed() > timeout {
                return Err(Error::NotReady {
                    component: self.component,
                    waited: started.elapsed(),
                    reason,
                    log_path: self.log_path.clone(),
                    log: self.log(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGTERM, wait up to a grace period, then SIGKILL. Idempotent.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // std only sends SIGKILL; a graceful stop (redis flushing its AOF,
            // podman tearing down) needs SIGTERM, sent by the shell's builtin.
            let _ = Command::new("sh")
                .args(["-c", "kill -TERM \"$1\"", "sh", &child.id().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL at once: a crash, for tests of recovery.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "harness: {} log ({}), last lines:\n{}",
                self.component,
                self.log_path.display(),
                self.log()
            );
        }
        self.stop();
    }
}

/// A fresh temp dir named after the component.
pub(crate) fn temp_dir(component: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("harness-{component}-"))
        .tempdir()
        .map_err(|e| Error::io(format!("create a temp dir for {component}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_holds_the_workspace_lockfile() {
        assert!(repo_root().join("Cargo.lock").is_file());
    }

    #[test]
    fn a_missing_binary_names_its_package_and_the_test_command() {
        let err = find_binary("no-such-binary-xyz", "Debian package `nothing`", &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no-such-binary-xyz"), "{text}");
        assert!(text.contains("Debian package `nothing`"), "{text}");
        assert!(text.contains("scripts/test"), "{text}");
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn a_process_that_exits_early_reports_its_log() {
        let dir = temp_dir("selftest").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom-on-stderr >&2; exit 3"]);
        let mut proc = Proc::spawn("selftest", cmd, &dir.path().join("log")).unwrap();
        let err = proc
            .wait_ready(Duration::from_secs(10), || Err::<(), _>("never".into()))
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Exited { .. }), "{text}");
        assert!(text.contains("boom-on-stderr"), "{text}");
    }
}
