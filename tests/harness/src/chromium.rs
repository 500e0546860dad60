//! Headless Chromium (Debian's `chromium`) for tests of web pages: load a URL
//! with a fresh profile, let its scripts run, and return the DOM they left.
//!
//! The browser reaches only loopback: every other address goes through a
//! proxy on a port where nothing listens (Chromium never proxies loopback),
//! and the background services that would call home are off.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{self, display_command, log_tail};

const COMPONENT: &str = "chromium";
/// Wall-clock limit of one page load. The virtual time budget is separate:
/// time spent waiting for the network does not count against it.
const LOAD_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Finds `chromium`. A missing browser is an error naming its package, so
/// the tests that need it fail rather than skip.
pub fn chromium() -> Result<Chromium> {
    let binary = process::find_binary(COMPONENT, "Debian package `chromium`", &[])?;
    Ok(Chromium { binary })
}

/// The headless browser.
#[derive(Debug, Clone)]
pub struct Chromium {
    binary: PathBuf,
}

impl Chromium {
    /// The binary found.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Loads `url` in a fresh profile, lets it run for up to `budget` of
    /// virtual time (timers are fast-forwarded; the network is awaited) and
    /// returns the serialized DOM.
    pub fn dump_dom(&self, url: &str, budget: Duration) -> Result<String> {
        let dir = process::temp_dir(COMPONENT)?;
        let profile = dir.path().join("profile");
        let out_path = dir.path().join("dom.html");
        let log_path = dir.path().join("chromium.log");
        let out = File::create(&out_path)
            .map_err(|e| Error::io(format!("create {}", out_path.display()), e))?;
        let log = File::create(&log_path)
            .map_err(|e| Error::io(format!("create {}", log_path.display()), e))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args([
            "--headless",
            // Tests run as root in containers, where the sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            // A container's /dev/shm is often too small for the renderer.
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--metrics-recording-only",
            "--proxy-server=http://127.0.0.1:9",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()))
        .arg("--dump-dom")
        .arg(url)
        // The browser's own settings dir, apart from the user's.
        .env("HOME", dir.path())
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log);
        // Its own process group, so a hung browser is killed with its helpers.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let command = display_command(&cmd);
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            component: COMPONENT,
            command: command.clone(),
            source,
        })?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < LOAD_TIMEOUT => std::thread::sleep(POLL_INTERVAL),
                Ok(None) => {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", child.id())])
                        .status();
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::NotReady {
                        component: COMPONENT,
                        waited: LOAD_TIMEOUT,
                        reason: format!("`{command}` did not finish"),
                        log: log_tail(&log_path),
                        log_path,
                    });
                }
                Err(e) => return Err(Error::io("wait for chromium", e)),
            }
        };
        let dom = std::fs::read_to_string(&out_path)
            .map_err(|e| Error::io(format!("read {}", out_path.display()), e))?;
        if !status.success() || dom.trim().is_empty() {
            return Err(Error::Command {
                command,
                status: status.to_string(),
                output: format!("no DOM; log:\n{}", log_tail(&log_path)),
            });
        }
        Ok(dom)
    }
}
