//! The engine binary's client commands, for containers that have no shell
//! or curl: `health` (a container health check against the role's own
//! `/health`), `canary` (the deployment check of [`crate::canary`], run
//! inside the stack's network, printing its outcome as one JSON line) and
//! `bench-agent` (a share of a load test from inside the stack's network,
//! see [`crate::loadgen::agent`]).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use crate::canary::{self, Outcome, RunsAt};
use crate::config::{Config, ENV_API_TOKEN, ENV_EVENT_KEYS};
use crate::loadgen::{self, agent};

fn flags(args: &[OsString], known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        if !known.contains(&flag.as_str()) {
            return Err(format!("unexpected argument `{arg}`"));
        }
        let value = value
            .or_else(|| it.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        out.push((flag, value));
    }
    Ok(out)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message} (see stackctl-engine --help)");
    ExitCode::from(2)
}

/// `health --port PORT [--check ready|live]`: 0 when
/// `http://127.0.0.1:PORT/health/{check}` answers 2xx within 3 s, 1
/// otherwise. `ready` (the default) asks whether the backends the role needs
/// answer; `live` only whether the process serves (a container health check:
/// a backend outage must not get every task replaced).
pub fn health(args: &[OsString]) -> ExitCode {
    let (mut port, mut check) = (None, "ready".to_string());
    match flags(args, &["--port", "--check"]) {
        Ok(f) => {
            for (flag, value) in f {
                if flag == "--port" {
                    match value.parse::<u16>() {
                        Ok(p) => port = Some(p),
                        Err(e) => return usage_error(&format!("--port {value}: {e}")),
                    }
                } else if value == "ready" || value == "live" {
                    check = value;
                } else {
                    return usage_error(&format!("--check {value}: expected `ready` or `live`"));
                }
            }
        }
        Err(e) => return usage_error(&e),
    }
    let Some(port) = port else {
        return usage_error("--port is required");
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let url = format!("http://127.0.0.1:{port}/health/{check}");
            let resp = client(Duration::from_secs(3))?
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("GET {url} answered {}", resp.status()))
            }
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `canary --url URL [--timeout SECONDS]`: see [`crate::canary::check`].
pub fn canary(args: &[OsString]) -> ExitCode {
    let mut url = None;
    let mut timeout = Duration::from_secs(120);
    let mut from_store = false;
    let mut connect_to = None;
    match flags(args, &["--url", "--timeout", "--runs", "--connect-to"]) {
        Ok(f) => {
            for (flag, value) in f {
                match flag.as_str() {
                    "--url" => url = Some(value),
                    "--connect-to" => connect_to = Some(value),
                    "--runs" => match value.as_str() {
                        "api" => from_store = false,
                        "store" => from_store = true,
                        _ => return usage_error(&format!("--runs {value}: expected api or store")),
                    },
                    _ => match value.parse::<u64>() {
                        Ok(s) => timeout = Duration::from_secs(s),
                        Err(e) => return usage_error(&format!("--timeout {value}: {e}")),
                    },
                }
            }
        }
        Err(e) => return usage_error(&e),
    }
    let Some(url) = url else {
        return usage_error("--url is required");
    };
    let Some(key) = event_key() else {
        return usage_error(&format!("{ENV_EVENT_KEYS} is not set"));
    };
    let token = env(ENV_API_TOKEN);
    if !from_store && token.is_none() {
        return usage_error(&format!("{ENV_API_TOKEN} is not set"));
    }
    let outcome = runtime().and_then(|rt| {
        rt.block_on(async {
            let client = canary_client(&url, connect_to.as_deref()).await?;
            let backends = if from_store {
                let config = Config::load_from_process(None).map_err(|e| e.to_string())?;
                Some(
                    crate::backend::open(&config.backend, &config.queues)
                        .await
                        .map_err(|e| format!("cannot open the state store: {e}"))?,
                )
            } else {
                None
            };
            let runs_at = match &backends {
                Some(b) => RunsAt::Store(b.state.as_ref()),
                None => RunsAt::Api {
                    base: &url,
                    token: token.as_deref().unwrap_or_default(),
                },
            };
            let progress = |p: canary::Progress<'_>| eprintln!("canary: {p:?}");
            Ok(
                match canary::check(&client, &url, &key, runs_at, timeout, &progress).await {
                    Ok(report) => Outcome::Completed(report),
                    Err(e) => Outcome::Failed(e),
                },
            )
        })
    });
    match outcome {
        Ok(outcome) => {
            println!(
                "{}",
                serde_json::to_string(&outcome).expect("an outcome serializes")
            );
            match outcome {
                Outcome::Completed(_) => ExitCode::SUCCESS,
                Outcome::Failed(_) => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The canary's HTTP client: TLS trusting the system's roots (and
/// `SSL_CERT_FILE`); with `connect_to` (`HOST[:PORT]`), connections to the
/// URL's host go to that address instead, so a certificate is checked
/// against the name clients use while the connection goes to a load
/// balancer whose DNS record the user has not made yet.
async fn canary_client(url: &str, connect_to: Option<&str>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .use_preconfigured_tls(loadgen::tls_config()?.as_ref().clone());
    if let Some(target) = connect_to {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("--url {url}: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("--url {url} has no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let (target_host, target_port) = match target.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|e| format!("--connect-to {target}: {e}"))?,
            ),
            None => (target, port),
        };
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((target_host, target_port))
            .await
            .map_err(|e| format!("--connect-to {target}: cannot resolve: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("--connect-to {target}: no address"));
        }
        builder = builder.resolve_to_addrs(host, &addrs);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The first of the event keys the engine's role would accept.
fn event_key() -> Option<String> {
    env(ENV_EVENT_KEYS).and_then(|k| {
        k.split(',')
            .map(str::trim)
            .find(|k| !k.is_empty())
            .map(str::to_owned)
    })
}

/// Progress of a load agent: a plain line on stderr every [`AGENT_EVERY`].
struct AgentProgress(std::sync::Mutex<Option<std::time::Instant>>);

/// How often a load agent logs its progress.
const AGENT_EVERY: Duration = Duration::from_secs(10);

impl loadgen::Observer for AgentProgress {
    fn tick(&self, s: &loadgen::Sample, p: &loadgen::Progress) {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= AGENT_EVERY) {
            *last = Some(std::time::Instant::now());
            eprintln!(
                "bench agent: {:.0}s/{}s requests {} ({:.1}/s) p99 {} failed {}",
                p.elapsed.as_secs_f64(),
                p.planned.as_secs(),
                s.total,
                s.rate,
                loadgen::ms(s.p99),
                s.failed
            );
        }
    }

    fn phase(&self, message: &str) {
        eprintln!("bench agent: {message}");
    }
}

/// `bench-agent --plan JSON`: runs one share of a load test (an
/// [`agent::AgentPlan`]) with the first key of `STACKCTL_ENGINE_EVENT_KEYS`
/// and prints its figures as result lines (see [`agent::result_lines`]).
/// SIGTERM or Ctrl-C ends the load early; what was measured is still
/// printed. Exit 0 when the load ran (whatever the answers), 1 when it
/// could not, 2 on bad arguments.
pub fn bench_agent(args: &[OsString]) -> ExitCode {
    let plan = match flags(args, &["--plan"]).and_then(|f| {
        let (_, json) = f
            .into_iter()
            .next_back()
            .ok_or_else(|| "--plan is required".to_string())?;
        serde_json::from_str::<agent::AgentPlan>(&json).map_err(|e| format!("--plan: {e}"))
    }) {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    let Some(key) = event_key() else {
        return usage_error(&format!("{ENV_EVENT_KEYS} is not set"));
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let stop = tokio_util::sync::CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                let term = async {
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(mut s) => {
                            s.recv().await;
                        }
                        Err(_) => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    () = term => {}
                }
                on_signal.cancel();
            });
            eprintln!(
                "bench agent: {} connection(s) against {} for {}",
                plan.connections,
                plan.base_url,
                loadgen::fmt_duration(plan.load.duration())
            );
            let progress = AgentProgress(std::sync::Mutex::new(None));
            agent::run(&plan, &key, &progress, stop)
                .await
                .map_err(|e| e.to_string())
        })
    });
    match result {
        Ok(part) => {
            for line in agent::result_lines(&part) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
