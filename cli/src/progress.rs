//! Drawing progress of long commands: indicatif spinners on a terminal,
//! plain timestamped lines otherwise (both on stderr), or NDJSON events on
//! stdout with `--output json`. Library code reports through
//! [`stacks::local::Progress`] and never prints.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use stacks::progress::{Phase, Progress, ProgressEvent};

use crate::output::Output;

enum Mode {
    Terminal {
        multi: MultiProgress,
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
    Lines,
    Json,
}

/// The progress reporter of one command.
pub struct Reporter {
    mode: Mode,
}

impl Reporter {
    /// Picks the mode from the output format and whether stderr is a terminal.
    pub fn new(output: Output) -> Self {
        let mode = match output {
            Output::Json => Mode::Json,
            Output::Human if std::io::stderr().is_terminal() => Mode::Terminal {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            },
            Output::Human => Mode::Lines,
        };
        Self { mode }
    }

    /// Stops spinners left running (after an error), leaving their last line.
    pub fn finish(&self) {
        if let Mode::Terminal { bars, .. } = &self.mode {
            let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
            for (_, bar) in bars.drain() {
                bar.abandon();
            }
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

fn symbol(phase: Phase) -> &'static str {
    match phase {
        Phase::Start => "…",
        Phase::Ok => "✓",
        Phase::Fail => "✗",
        Phase::Info => "·",
    }
}

/// `HH:MM:SSZ` of now, in UTC (no time-zone database needed).
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}Z", day / 3600, day / 60 % 60, day % 60)
}

impl Progress for Reporter {
    fn report(&self, event: ProgressEvent) {
        match &self.mode {
            Mode::Json => {
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let line = serde_json::json!({
                    "type": "progress",
                    "phase": event.phase,
                    "key": event.key,
                    "message": event.message,
                    "ts_ms": ts,
                });
                // Like every command's output, a reader that went away ends it quietly.
                let _ = crate::output::print_line(&line.to_string());
            }
            Mode::Lines => eprintln!("{} {} {}", clock(), symbol(event.phase), event.message),
            Mode::Terminal { multi, bars } => {
                let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                match event.phase {
                    Phase::Start => {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_message(event.message);
                        bar.enable_steady_tick(Duration::from_millis(100));
                        if let Some(old) = bars.insert(event.key, bar) {
                            old.finish_and_clear();
                        }
                    }
                    Phase::Ok | Phase::Fail => {
                        let line = format!("{} {}", symbol(event.phase), event.message);
                        match bars.remove(&event.key) {
                            Some(bar) => {
                                bar.set_style(
                                    ProgressStyle::with_template("{msg}")
                                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                                );
                                bar.finish_with_message(line);
                            }
                            None => {
                                let _ = multi.println(line);
                            }
                        }
                    }
                    Phase::Info => {
                        let _ = multi.println(format!("{} {}", symbol(event.phase), event.message));
                    }
                }
            }
        }
    }
}
