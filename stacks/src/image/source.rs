//! Where the image's inputs come from: a release build of the engine binary
//! through cargo (the workspace's `dist` profile), and the git revision for
//! the image's labels.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::ImageError;

/// Runs `cargo build --profile dist -p engine --bin stackctl-engine` in
/// `workspace` and returns the binary's path as cargo reports it (so a
/// custom target dir or `CARGO_TARGET_DIR` just works). Cargo's own progress
/// goes to this process's stderr.
pub fn build_engine_release(workspace: &Path) -> Result<PathBuf, ImageError> {
    build_engine(workspace, true)
}

/// [`build_engine_release`], or a dev-profile build when `release` is false
/// (tests use it: it reuses what `cargo test` already compiled).
pub fn build_engine(workspace: &Path, release: bool) -> Result<PathBuf, ImageError> {
    // Under `cargo run`, CARGO names the cargo that built us; else the one on PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build");
    if release {
        // Release code without debug info: see `[profile.dist]` in the
        // workspace's Cargo.toml.
        cmd.args(["--profile", "dist"]);
    }
    let mut child = cmd
        .args([
            "-p",
            "engine",
            "--bin",
            "stackctl-engine",
            // On AWS the engine runs on SQS and ElastiCache Redis.
            "--features",
            "sqs,redis",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| ImageError::Cargo(format!("cannot run {}: {e}", cargo.to_string_lossy())))?;

    #[derive(Deserialize)]
    struct Message {
        reason: String,
        #[serde(default)]
        target: Option<Target>,
        #[serde(default)]
        executable: Option<PathBuf>,
    }
    #[derive(Deserialize)]
    struct Target {
        name: String,
    }

    let mut executable = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| ImageError::Cargo(format!("reading cargo output: {e}")))?;
            let Ok(msg) = serde_json::from_str::<Message>(&line) else {
                continue;
            };
            if msg.reason == "compiler-artifact"
                && msg.target.is_some_and(|t| t.name == "stackctl-engine")
                && msg.executable.is_some()
            {
                executable = msg.executable;
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| ImageError::Cargo(format!("waiting for cargo: {e}")))?;
    if !status.success() {
        return Err(ImageError::Cargo(format!(
            "cargo build exited with {status} in {} (use --binary to give a built engine)",
            workspace.display()
        )));
    }
    executable
        .ok_or_else(|| ImageError::Cargo("cargo reported no stackctl-engine executable".to_owned()))
}

/// The commit checked out in `dir`, with `-dirty` when tracked files have
/// changes; `None` outside a git work tree or without git.
pub fn git_revision(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"]).filter(|h| !h.is_empty())?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_revision_names_the_checked_out_commit() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let rev = git_revision(repo).expect("the crate is in a git work tree");
        let hash = rev.trim_end_matches("-dirty");
        assert_eq!(hash.len(), 40, "{rev}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{rev}");

        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(git_revision(elsewhere.path()), None);
    }
}
