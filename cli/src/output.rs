//! Output modes, exit codes, and the one place errors are printed.

use serde::Serialize;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Readable text; progress bars on a terminal, plain lines otherwise.
    Human,
    /// JSON on stdout (NDJSON events for long-running commands).
    Json,
}

/// The documented exit codes (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success (for `plan --detailed-exitcode`: no changes).
    Ok = 0,
    /// An error other than the ones below: I/O, AWS, a failed wait.
    Error = 1,
    /// The spec is invalid, or (`plan --detailed-exitcode`) there are changes.
    Invalid = 2,
    /// `bench`: the run completed but a `--threshold` was not met.
    ThresholdFailed = 3,
}

/// Prints a JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    print_line(&serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Writes one line to stdout. A reader that went away (`stackctl ... | head`)
/// is not an error worth a panic: the rest of the output is simply dropped.
pub fn print_line(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes `text` to stdout as it is (no newline added), like [`print_line`].
pub fn print_text(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    match write!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `println!` through [`print_line`], so every command's output survives a
/// reader that went away (`stackctl status | head -1`); it evaluates to the
/// write's `io::Result`.
macro_rules! outln {
    () => {
        $crate::output::print_line("")
    };
    ($($arg:tt)*) => {
        $crate::output::print_line(&format!($($arg)*))
    };
}
pub(crate) use outln;

/// Prints an error with its chain of causes: as text on stderr, or as a JSON
/// object on stdout with `--output json` so scripts always get JSON.
pub fn print_error(output: Output, err: &anyhow::Error) {
    match output {
        Output::Human => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
        }
        Output::Json => {
            let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
            let doc = serde_json::json!({ "error": err.to_string(), "causes": causes });
            let _ = print_line(&doc.to_string());
        }
    }
}
