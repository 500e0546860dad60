//! Inngest's Python SDK (PyPI `inngest`), in the repo's `.venv-inngest`
//! (made by `scripts/test`), for tests that send events the way the SDK does.

use std::path::PathBuf;

use crate::error::Result;
use crate::process;

/// The Python interpreter that has the `inngest` package:
/// `$INNGEST_PYTHON`, else the repo's `.venv-inngest/bin/python`. Never the
/// `PATH`'s python, which would lack the SDK: a missing venv is an error.
pub fn inngest_python() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("INNGEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([process::repo_root().join(".venv-inngest/bin/python")])
        .collect();
    process::find_only(
        "python",
        "PyPI package `inngest` (the venv `.venv-inngest`)",
        &candidates,
    )
}

/// The script that sends a batch with the SDK through a proxy losing the
/// first answer (`tests/harness/inngest_send_retry.py`).
pub fn inngest_send_retry_script() -> PathBuf {
    process::repo_root().join("tests/harness/inngest_send_retry.py")
}
