//! Finding the stack a command acts on: the spec file given (`-f FILE` or
//! positionally), or else the spec of the last `up` run from the current
//! directory, recorded in `.stackctl/last`.

use std::path::{Path, PathBuf};

/// Where the last `up`'s spec path is recorded, relative to the directory
/// `up` ran in.
pub const LAST_UP_FILE: &str = ".stackctl/last";

/// Why the stack could not be found or recorded.
#[derive(Debug, thiserror::Error)]
pub enum StackRefError {
    /// No file was given and no `up` ran here.
    #[error("no stack given: pass FILE or -f FILE, or run stackctl up FILE first")]
    NoStack,
    /// The recorded spec is gone.
    #[error("the last `stackctl up` from this directory used {}, which no longer exists: pass FILE or -f FILE", path.display())]
    LastMissing {
        /// The recorded path.
        path: PathBuf,
    },
    /// Reading or writing the record failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The spec to use: `given` if there is one, else the one recorded by the
/// last `up` in `cwd`.
pub fn resolve(given: Option<&Path>, cwd: &Path) -> Result<PathBuf, StackRefError> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let record = cwd.join(LAST_UP_FILE);
    let text = match std::fs::read_to_string(&record) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StackRefError::NoStack),
        Err(source) => {
            return Err(StackRefError::Io {
                action: "read",
                path: record,
                source,
            });
        }
    };
    let path = PathBuf::from(text.trim_end_matches(['\n', '\r']));
    if path.as_os_str().is_empty() {
        return Err(StackRefError::NoStack);
    }
    if !path.is_file() {
        return Err(StackRefError::LastMissing { path });
    }
    Ok(path)
}

/// Records `spec` (made absolute) as the last `up` from `cwd`.
pub fn record_last(cwd: &Path, spec: &Path) -> Result<(), StackRefError> {
    let absolute = std::fs::canonicalize(spec).map_err(|source| StackRefError::Io {
        action: "resolve",
        path: spec.to_path_buf(),
        source,
    })?;
    let record = cwd.join(LAST_UP_FILE);
    let mut text = absolute.to_string_lossy().into_owned();
    text.push('\n');
    write_atomic(&record, text.as_bytes()).map_err(|source| StackRefError::Io {
        action: "write",
        path: record,
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader sees the old content or the new, never a torn write. Creates the
/// parent directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // Private: state files hold event keys and the runs API token.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_file_wins_and_missing_record_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let given = Path::new("x.yaml");
        assert_eq!(
            resolve(Some(given), dir.path()).unwrap(),
            PathBuf::from("x.yaml")
        );
        let err = resolve(None, dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no stack given: pass FILE or -f FILE, or run stackctl up FILE first"
        );
    }

    #[test]
    fn recorded_spec_is_used_until_it_disappears() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("stack.yaml");
        std::fs::write(&spec, "stack: a\n").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        record_last(elsewhere.path(), &spec).unwrap();
        let found = resolve(None, elsewhere.path()).unwrap();
        assert_eq!(found, std::fs::canonicalize(&spec).unwrap());
        std::fs::remove_file(&spec).unwrap();
        let err = resolve(None, elsewhere.path()).unwrap_err();
        assert!(matches!(err, StackRefError::LastMissing { .. }), "{err}");
    }
}
