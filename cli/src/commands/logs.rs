//! `stackctl logs SERVICE [--since 10m] [-F/--follow] [-f FILE]`: a
//! service's CloudWatch Logs of an aws stack (`stacks::aws::ops::logs`), one
//! event per line: `TIME STREAM MESSAGE`, or NDJSON with `--output json`.
//!
//! `-f` means `--file` here as in every stackctl command that acts on a
//! stack; following is `--follow` or `-F` (as `tail -F`), so `-f FILE`
//! never changes meaning between commands.

use std::time::Duration;

use clap::Args;
use stacks::aws::logs::LogEvent;
use stacks::local::Service;
use stacks::spec::Provider;

use super::up::{StackFileFlag, load_stack};
use crate::output::{self, Exit, Output};

/// How often `--follow` polls CloudWatch Logs.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Show a service's logs from CloudWatch Logs (aws stacks).
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    stack: StackFileFlag,
    /// The service: event-api, runner or executors.
    #[arg(value_name = "SERVICE")]
    service: Service,
    /// Start this long ago, e.g. `10m`, `2h`, `30s`.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = stacks::bench::parse_duration)]
    since: Duration,
    /// Keep printing new events until interrupted (short `-F`: `-f` is `--file`).
    #[arg(short = 'F', long)]
    follow: bool,
}

/// Runs `stackctl logs`.
pub async fn run(args: LogsArgs, output: Output) -> anyhow::Result<Exit> {
    let loaded = match load_stack(args.stack.file.as_deref(), output)? {
        Ok(l) => l,
        Err(exit) => return Ok(exit),
    };
    if loaded.spec.provider != Provider::Aws {
        anyhow::bail!(
            "`stackctl logs` reads CloudWatch Logs of `provider: aws` stacks; a local stack's logs are files \
             (`stackctl status {}` lists them)",
            loaded.path.display()
        );
    }
    super::aws_up::require_credentials(&loaded, "logs").await?;
    let mut tail =
        stacks::aws::ops::logs(&loaded, args.service, args.since, &stacks::progress::Silent)
            .await?;
    let first = tail.poll().await?;
    print_events(&first, output)?;
    if !args.follow {
        return Ok(Exit::Ok);
    }
    // One listener for the whole follow, so an interrupt during a poll counts.
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(Exit::Ok),
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        let events = tokio::select! {
            _ = &mut stop => return Ok(Exit::Ok),
            polled = tail.poll() => polled?,
        };
        print_events(&events, output)?;
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of ms since the epoch (UTC, no tz database).
pub(crate) fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn print_events(events: &[LogEvent], output: Output) -> anyhow::Result<()> {
    for e in events {
        let line = match output {
            Output::Json => {
                let mut doc = serde_json::to_value(e)?;
                doc["time"] = rfc3339(e.timestamp_ms).into();
                doc.to_string()
            }
            Output::Human => format!(
                "{} {} {}",
                rfc3339(e.timestamp_ms),
                e.stream,
                e.message.trim_end_matches('\n')
            ),
        };
        output::print_line(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_300_000_000), "2026-12-03T12:13:20.000Z");
    }
}
