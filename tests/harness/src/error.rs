//! The one error type of the harness: every way a component can fail to start,
//! answer or stop, with the component's log attached when it helps.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The README's test command, named in every "missing component" error so a
/// failing test tells the reader how to get a machine that can run it.
pub const TEST_COMMAND: &str = "scripts/test";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "`{binary}` not found (looked in {searched}); it comes from {package}. \
         Run the test suite with `{TEST_COMMAND}`, which installs every component the tests need"
    )]
    MissingBinary {
        binary: &'static str,
        package: &'static str,
        searched: String,
    },

    #[error("could not start {component} (`{command}`): {source}")]
    Spawn {
        component: &'static str,
        command: String,
        #[source]
        source: io::Error,
    },

    #[error("{component} exited ({status}) before it was ready; log {log_path}:\n{log}")]
    Exited {
        component: &'static str,
        status: String,
        log_path: PathBuf,
        log: String,
    },

    #[error("{component} was not ready after {waited:?} ({reason}); log {log_path}:\n{log}")]
    NotReady {
        component: &'static str,
        waited: Duration,
        reason: String,
        log_path: PathBuf,
        log: String,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("HTTP {method} {target}{path}: {detail}")]
    Http {
        method: String,
        target: String,
        path: String,
        detail: String,
    },

    #[error("{what} answered HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },

    #[error("redis at {addr}: {detail}")]
    Redis { addr: String, detail: String },

    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
