//! `stackctl bench [FILE | -f FILE | --url URL --key KEY]`: load-tests a
//! stack's event API with `stacks::bench::stack::run` and prints a k6-style
//! summary (or the report as JSON). Without a target it uses the last `up`'s spec. On a
//! `provider: aws` stack the endpoint, key and token come from AWS and the
//! timeline carries the ECS/ASG counts and SQS depths; `--url` without
//! `--key` overrides only the address (e.g. a forwarded port); when the
//! event API cannot be reached from here, or with `--agents N`, the load
//! comes from load agents inside the stack's VPC (`stacks::bench::agents`).
//! On an aws stack the summary ends with the cost per million events at the
//! throughput measured (`stacks::cost::of_bench`, the running counts sampled).
//! Exit 0, or 3 when a `--threshold` failed (1 on errors, 2 on an invalid spec).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use stacks::bench::stack::{E2e, Source};
use stacks::bench::{
    self, BenchConfig, Body, Load, Observer, Progress, Sample, Stage, Template, Threshold,
};
use stacks::spec::Provider;
use tokio_util::sync::CancellationToken;

use super::up::{StackFile, load};
use crate::output::{self, Exit, Output, outln};

/// Load-test the event API: fixed arrival rate or maximum throughput.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  stackctl bench                                   # the last `up`, max throughput, 10 s
  stackctl bench -f local.yaml --rate 300 -d 1m    # 300 requests/s for a minute
  stackctl bench --stage 30s:100 --stage 1m:300    # ramp to 100/s, then to 300/s
  stackctl bench --url http://127.0.0.1:8288 --key KEY --threshold 'p99<50ms' --threshold 'failed<1%'
  stackctl bench -f aws.yaml --timeline            # an aws stack: endpoint, key and scaling gauges from AWS
  stackctl bench -f aws.yaml --url http://127.0.0.1:9000   # same stack, through a forwarded port
  stackctl bench -f aws.yaml --agents 4 --rate 2000 -d 2m  # the load from 4 ECS tasks inside the VPC

Exit codes: 0 ok, 1 error, 2 invalid spec, 3 a threshold failed.")]
pub struct BenchArgs {
    #[command(flatten)]
    stack: StackFile,
    /// Base URL of the event API, e.g. http://127.0.0.1:8288. With --key and no FILE: that
    /// server alone. Without --key: the stack's (FILE or the last `up`) key, token and
    /// gauges, sent to this address instead of the discovered one.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The event key to send with (with --url).
    #[arg(long, value_name = "KEY", requires = "url")]
    key: Option<String>,
    /// (aws stacks) Generate the load from N one-off ECS tasks inside the stack's VPC, each
    /// with its share of the rate and connections, and merge their figures. Without it the
    /// load comes from here, or from one agent when the event API is unreachable from here.
    #[arg(long, value_name = "N", conflicts_with = "url", value_parser = clap::value_parser!(u16).range(1..=100))]
    agents: Option<u16>,
    /// (aws stacks) How often the ECS, Auto Scaling and SQS gauges are read during the run.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = bench::parse_duration)]
    sample_every: Duration,
    /// Runs API token for --e2e with --url (a spec's stack supplies its own).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "STACKCTL_API_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Keep-alive connections (the most requests in flight at once).
    #[arg(short = 'c', long, default_value_t = 10)]
    connections: usize,
    /// How long to run (without --stage).
    #[arg(short = 'd', long, default_value = "10s", value_parser = bench::parse_duration)]
    duration: Duration,
    /// Requests per second (open model). Without it and without --stage: maximum throughput.
    /// With --stage: the rate the first stage starts from (default 0).
    #[arg(short = 'r', long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// A ramp DURATION:RATE, repeatable: the rate moves linearly to RATE over DURATION.
    #[arg(
        long = "stage",
        value_name = "DURATION:RATE",
        conflicts_with = "duration"
    )]
    stages: Vec<Stage>,
    /// Events per request (more than 1: a JSON array).
    #[arg(short = 'e', long, default_value_t = 1)]
    events: u32,
    /// Name of the built-in event.
    #[arg(long, default_value = "stackctl/bench")]
    event_name: String,
    /// Size of the built-in event's `data.pad` string, in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 0,
        conflicts_with = "template"
    )]
    payload_bytes: usize,
    /// One event as a JSON file, with {{seq}}, {{uuid}} and {{ts}} replaced per event.
    #[arg(long, value_name = "FILE")]
    template: Option<PathBuf>,
    /// A request without an answer by then fails.
    #[arg(long, default_value = "10s", value_parser = bench::parse_duration)]
    timeout: Duration,
    /// Pass/fail criterion, repeatable: p99<50ms, med<10ms, p(99.9)<200ms, failed<1%, rate>290, e2e_p99<25ms.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<Threshold>,
    /// Also measure event-to-completed-run latency of sampled events through the runs API.
    #[arg(long)]
    e2e: bool,
    /// Events sampled for --e2e.
    #[arg(long, default_value_t = 500, requires = "e2e")]
    e2e_samples: usize,
    /// How long --e2e waits after the load for sampled runs to end.
    #[arg(long, default_value = "30s", value_parser = bench::parse_duration, requires = "e2e")]
    e2e_wait: Duration,
    /// Print the per-second timeline (rate, latency, the stack's queue depths) after the summary.
    #[arg(long)]
    timeline: bool,
    /// No live progress line.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// (aws stacks) The price table for the cost per million events (the shape `stackctl
    /// cost --dump-prices` prints) instead of the shipped one.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
}

/// Runs `stackctl bench`.
pub async fn run(args: BenchArgs, output: Output) -> anyhow::Result<Exit> {
    let loaded = match (&args.url, &args.key, args.stack.given()) {
        (Some(_), Some(_), None) => None,
        _ => match load(&args.stack, output)? {
            Ok(l) => Some(l),
            Err(exit) => return Ok(exit),
        },
    };
    let source = match &loaded {
        None => Source::Url {
            url: args.url.clone().unwrap_or_default(),
            key: args.key.clone().unwrap_or_default(),
            token: args.token.clone(),
        },
        Some(loaded) => {
            if loaded.spec.provider == Provider::Aws {
                super::aws_up::require_credentials(loaded, "bench").await?;
            }
            Source::Stack {
                loaded,
                url: args.url.clone(),
                key: args.key.clone(),
                token: args.token.clone(),
                agents: args.agents.map(usize::from),
                sample_every: args.sample_every,
            }
        }
    };
    let e2e = args.e2e.then_some(E2e {
        samples: args.e2e_samples,
        wait: args.e2e_wait,
    });
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let live = Live::new(args.quiet, output);
    let report = bench::stack::run(source, config(&args)?, e2e, &live, stop).await;
    live.finish();
    let what = match &loaded {
        Some(l) => format!("stack `{}`", l.spec.stack),
        None => bench::mask_key(args.url.as_deref().unwrap_or_default()),
    };
    let report = report.with_context(|| format!("bench against {what} failed"))?;
    // An aws stack's run ends with its cost per million events at the
    // throughput measured, the stack at the counts it ran at.
    let cost = loaded
        .as_ref()
        .filter(|l| l.spec.provider == Provider::Aws)
        .map(|l| {
            stacks::cost::PriceTable::load_or_shipped(args.prices.as_deref())
                .and_then(|table| stacks::cost::of_bench(l, &report, &table))
        });
    match output {
        Output::Json => {
            let mut doc = serde_json::to_value(&report)?;
            match &cost {
                Some(Ok(cost)) => doc["cost"] = serde_json::to_value(cost)?,
                Some(Err(e)) => doc["cost"] = serde_json::json!({ "unpriced": e.to_string() }),
                None => {}
            }
            output::print_json(&doc)?;
        }
        Output::Human => {
            output::print_text(&report.render())?;
            match &cost {
                Some(Ok(cost)) => outln!("{}", cost.render_text())?,
                Some(Err(e)) => outln!("  cost: not priced: {e}")?,
                None => {}
            }
            if args.timeline {
                outln!("\n  timeline\n{}", report.render_timeline())?;
            }
        }
    }
    Ok(if report.thresholds_ok() {
        Exit::Ok
    } else {
        Exit::ThresholdFailed
    })
}

/// The load: everything but the address and the end-to-end settings,
/// which come from the target.
fn config(args: &BenchArgs) -> anyhow::Result<BenchConfig> {
    let mut cfg = BenchConfig::new(String::new());
    cfg.connections = args.connections;
    cfg.load = match (args.stages.is_empty(), args.rate) {
        (false, start) => Load::Rate {
            start_rate: start.unwrap_or(0.0),
            stages: args.stages.clone(),
        },
        (true, Some(rate)) => Load::constant(rate, args.duration),
        (true, None) => Load::Max {
            duration: args.duration,
        },
    };
    cfg.events_per_request = args.events;
    cfg.body = match &args.template {
        Some(path) => Body::Template(Template::load(path)?),
        None => Body::Builtin {
            name: args.event_name.clone(),
            pad: args.payload_bytes,
        },
    };
    cfg.timeout = args.timeout;
    cfg.thresholds = args.thresholds.clone();
    Ok(cfg)
}

/// The live line on stderr: rewritten in place on a terminal, a plain line
/// every few seconds otherwise (CI logs), nothing with --quiet.
struct Live {
    mode: LiveMode,
    last_plain: std::sync::Mutex<Option<Instant>>,
}

#[derive(PartialEq)]
enum LiveMode {
    Off,
    Terminal,
    Plain,
}

/// Plain progress lines are at most this frequent.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Live {
    fn new(quiet: bool, output: Output) -> Self {
        let tty = std::io::stderr().is_terminal();
        let mode = match (quiet, tty, output) {
            (true, _, _) => LiveMode::Off,
            (false, true, _) => LiveMode::Terminal,
            (false, false, Output::Human) => LiveMode::Plain,
            // JSON consumers read stdout; keep their stderr quiet too.
            (false, false, Output::Json) => LiveMode::Off,
        };
        Self {
            mode,
            last_plain: std::sync::Mutex::new(None),
        }
    }

    fn finish(&self) {
        if self.mode == LiveMode::Terminal {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

impl Observer for Live {
    fn tick(&self, s: &Sample, p: &Progress) {
        let line = format!(
            "{:>5.1}s/{}  reqs {}  {:.1}/s{}  p50 {}  p99 {}  failed {}{}",
            p.elapsed.as_secs_f64(),
            bench::fmt_duration(p.planned),
            s.total,
            s.rate,
            s.target_rate
                .map(|t| format!(" (target {t:.0}/s)"))
                .unwrap_or_default(),
            bench::ms(s.p50),
            bench::ms(s.p99),
            s.failed,
            s.gauges
                .iter()
                .filter(|(k, _)| {
                    k.ends_with(".visible") || k.ends_with("running") || k.ends_with("in_service")
                })
                .map(|(k, v)| format!("  {k}={v}"))
                .collect::<String>()
        );
        match self.mode {
            LiveMode::Off => {}
            LiveMode::Terminal => {
                eprint!("\r\x1b[K{line}");
                let _ = std::io::stderr().flush();
            }
            LiveMode::Plain => {
                let mut last = self
                    .last_plain
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    *last = Some(Instant::now());
                    eprintln!("{line}");
                }
            }
        }
    }

    fn phase(&self, message: &str) {
        match self.mode {
            LiveMode::Off => {}
            LiveMode::Terminal => eprint!("\r\x1b[K{message}"),
            LiveMode::Plain => eprintln!("{message}"),
        }
    }
}
