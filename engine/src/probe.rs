//! The engine binary's two client commands, for containers that have no
//! shell or curl: `health` (a container health check against the role's own
//! `/health`) and `canary` (the deployment check of [`crate::canary`], run
//! inside the stack's network, printing its outcome as one JSON line).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use crate::canary::{self, Outcome};
use crate::config::{ENV_API_TOKEN, ENV_EVENT_KEYS};

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

/// `health --port PORT`: 0 when `http://127.0.0.1:PORT/health` answers 2xx
/// within 3 s, 1 otherwise.
pub fn health(args: &[OsString]) -> ExitCode {
    let port = match flags(args, &["--port"]).and_then(|f| {
        f.into_iter()
            .next_back()
            .ok_or_else(|| "--port is required".to_string())
            .and_then(|(_, v)| v.parse::<u16>().map_err(|e| format!("--port {v}: {e}")))
    }) {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let url = format!("http://127.0.0.1:{port}/health");
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
    match flags(args, &["--url", "--timeout"]) {
        Ok(f) => {
            for (flag, value) in f {
                if flag == "--url" {
                    url = Some(value);
                } else {
                    match value.parse::<u64>() {
                        Ok(s) => timeout = Duration::from_secs(s),
                        Err(e) => return usage_error(&format!("--timeout {value}: {e}")),
                    }
                }
            }
        }
        Err(e) => return usage_error(&e),
    }
    let Some(url) = url else {
        return usage_error("--url is required");
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(key) = env(ENV_EVENT_KEYS).and_then(|k| {
        k.split(',')
            .map(str::trim)
            .find(|k| !k.is_empty())
            .map(str::to_owned)
    }) else {
        return usage_error(&format!("{ENV_EVENT_KEYS} is not set"));
    };
    let Some(token) = env(ENV_API_TOKEN) else {
        return usage_error(&format!("{ENV_API_TOKEN} is not set"));
    };
    let outcome = runtime().and_then(|rt| {
        rt.block_on(async {
            let client = client(Duration::from_secs(10))?;
            let progress = |p: canary::Progress<'_>| eprintln!("canary: {p:?}");
            Ok(
                match canary::check(&client, &url, &key, &token, timeout, &progress).await {
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
