//! The engine process's entry point as a library, so that both the
//! `stackctl-engine` binary and `stackctl engine` (the local provider runs
//! roles from the `stackctl` binary itself) run the same code: argument
//! parsing, logging, the async runtime, signal handling and [`serve`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::Shutdown;
use crate::backend::{self, BackendError};
use crate::config::{Config, ConfigError, LogFormat, Role};
use crate::event_api::{self, ApiState};
use crate::functions::validate_function;
use crate::metrics::Metrics;
use crate::{executor, runner};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Why the engine stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backends could not be opened or used.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    /// A listener could not be bound.
    #[error("{role}: cannot listen on {addr}: {source}")]
    Bind {
        /// The role.
        role: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An HTTP server failed.
    #[error("{role}: HTTP server failed: {source}")]
    Serve {
        /// The role.
        role: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A role stopped with an error.
    #[error("{role}: {source}")]
    Role {
        /// The role.
        role: &'static str,
        /// Its error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A role's task panicked.
    #[error("a role panicked: {0}")]
    Panicked(String),
    /// The async runtime or a signal handler could not be set up.
    #[error("cannot start: {0}")]
    Startup(#[source] std::io::Error),
}

impl EntryError {
    fn role(role: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Role {
            role,
            source: Box::new(e),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Roles to run; empty means the configuration's `roles`.
    pub roles: Vec<Role>,
    /// The configuration file; `None` means `STACKCTL_ENGINE_CONFIG` and friends.
    pub config: Option<PathBuf>,
    /// Overrides the configuration's `log_format`.
    pub log_format: Option<LogFormat>,
}

const USAGE: &str = "usage: stackctl-engine [--role event-api|runner|executor|all]... [--config PATH] [--log-format text|json]
       stackctl-engine health --port PORT
       stackctl-engine canary --url URL [--timeout SECONDS]
       stackctl-engine bench-agent --plan JSON
       stackctl-engine runs-client --request JSON

  --role ROLE        role to run; repeatable or a comma list (default: the config's `roles`, else all)
  --config PATH      the engine's JSON configuration (default: $STACKCTL_ENGINE_CONFIG)
  --log-format FMT   text or json (default: the config's `log_format`)

  health             exits 0 when the role listening on 127.0.0.1:PORT answers /health (container health checks)
  canary             sends the canary event to the event API at URL and waits for its run to complete;
                     prints one JSON line (the outcome) and exits 0 when the run completed, 1 otherwise.
                     The event key and runs-API token come from $STACKCTL_ENGINE_EVENT_KEYS (the first)
                     and $STACKCTL_ENGINE_API_TOKEN
  bench-agent        runs one load agent's share of `stackctl bench --agents` (a JSON plan) against the
                     event API with the first key of $STACKCTL_ENGINE_EVENT_KEYS; prints its figures as
                     JSON lines tagged `bench_agent`
  runs-client        answers one runs-API request (JSON: method, path, body) over the backends of this
                     process's configuration; prints the answer as JSON lines tagged `runs_client`
";

/// Parses the engine's arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--role" => {
                for r in value("--role")?.split(',').filter(|r| !r.trim().is_empty()) {
                    opts.roles.push(r.parse()?);
                }
            }
            "--config" => opts.config = Some(PathBuf::from(value("--config")?)),
            "--log-format" => opts.log_format = Some(value("--log-format")?.parse()?),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(opts)
}

/// Runs the engine as a program: parses `args` (program name first),
/// then [`run`]. Prints usage and errors on stderr.
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let mut args = args.into_iter();
    let _program = args.next();
    let rest: Vec<OsString> = args.collect();
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if rest.iter().any(|a| a == "--version" || a == "-V") {
        println!("stackctl-engine {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match rest.first().and_then(|a| a.to_str()) {
        Some("health") => return crate::probe::health(&rest[1..]),
        Some("canary") => return crate::probe::canary(&rest[1..]),
        Some("bench-agent") => return crate::probe::bench_agent(&rest[1..]),
        Some("runs-client") => return crate::event_api::runs_client::main(&rest[1..]),
        _ => {}
    }
    match parse_args(rest) {
        Ok(opts) => run(opts),
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Loads the configuration, sets up logging and a runtime, and serves until
/// SIGTERM or SIGINT. Must not be called from inside a tokio runtime.
pub fn run(opts: Options) -> ExitCode {
    let config = match Config::load_from_process(opts.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let roles = if opts.roles.is_empty() {
        config.roles.clone()
    } else {
        opts.roles
    };
    let telemetry = crate::trace::init(
        opts.log_format.unwrap_or(config.log_format),
        &service_name(&roles),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        spawn_signal_handler(shutdown.clone()).map_err(EntryError::Startup)?;
        serve(Arc::new(config), &roles, shutdown).await
    });
    // After the runtime, as the exporter's blocking HTTP client requires.
    drop(runtime);
    if let Some(t) = telemetry {
        t.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "engine stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the backends, registers the configuration's functions and runs
/// `roles` (`all` expands) until `shutdown` is cancelled or a role fails; a
/// failing role cancels the others. The event API listens on
/// `event_api.bind`; the runner and executor serve `/health` and `/metrics`
/// on their `bind` when one is set. Each listener logs `listening` with its
/// address (useful with port 0).
pub async fn serve(
    config: Arc<Config>,
    roles: &[Role],
    shutdown: Shutdown,
) -> Result<(), EntryError> {
    let roles = Role::expand(roles);
    for f in &config.functions {
        let problems = validate_function(f);
        if let Some(p) = problems.first() {
            return Err(EntryError::Config(ConfigError::Invalid(format!(
                "function `{}` at {}: {p}",
                f.id, p.path
            ))));
        }
    }
    let backends = backend::open(&config.backend, &config.queues).await?;
    for f in &config.functions {
        backends.state.put_function(f).await?;
    }
    let metrics = Arc::new(Metrics::new());
    tracing::info!(
        roles = ?roles,
        functions = config.functions.len(),
        // TOKIO_WORKER_THREADS, else one per CPU the process may use.
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "engine starting"
    );
    let mut tasks: JoinSet<Result<(), EntryError>> = JoinSet::new();
    for &role in &roles {
        let name = role.as_str();
        let state = ApiState::new(
            Arc::clone(&config),
            backends.clone(),
            Arc::clone(&metrics),
            name,
        );
        let (bind, app) = match role {
            Role::EventApi => (Some(config.event_api.bind), event_api::router(state)),
            Role::Runner => (config.runner.bind, event_api::health_router(state)),
            Role::Executor => (config.executor.bind, event_api::health_router(state)),
            Role::All => continue,
        };
        if let Some(addr) = bind {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| EntryError::Bind {
                    role: name,
                    addr,
                    source,
                })?;
            let local = listener.local_addr().map_err(EntryError::Startup)?;
            tracing::info!(role = name, addr = %local, "listening");
            let sd = shutdown.clone();
            let header_timeout = config.event_api.header_timeout.std();
            tasks.spawn(async move {
                event_api::serve_with(listener, app, sd, header_timeout)
                    .await
                    .map_err(|source| EntryError::Serve { role: name, source })
            });
        }
        let (b, c, m, sd) = (
            backends.clone(),
            Arc::clone(&config),
            Arc::clone(&metrics),
            shutdown.clone(),
        );
        match role {
            Role::Runner => {
                tasks.spawn(async move {
                    runner::run(b, c, m, sd)
                        .await
                        .map_err(|e| EntryError::role(name, e))
                });
            }
            Role::Executor => {
                tasks.spawn(async move {
                    executor::run(b, c, m, sd)
                        .await
                        .map_err(|e| EntryError::role(name, e))
                });
            }
            Role::EventApi | Role::All => {}
        }
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.unwrap_or_else(|e| Err(EntryError::Panicked(e.to_string())));
        if let Err(e) = outcome {
            tracing::error!(error = %e, "a role failed; stopping the others");
            shutdown.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        } else if !shutdown.is_cancelled() {
            // A role that ends on its own leaves the process half-working: stop.
            shutdown.cancel();
        }
    }
    tracing::info!("engine stopped");
    result
}

fn spawn_signal_handler(shutdown: Shutdown) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// The trace service name of a process running `roles`, unless the
/// environment names it: `stackctl-<role>` for one role.
fn service_name(roles: &[Role]) -> String {
    match roles {
        [role] if *role != Role::All => format!("stackctl-{}", role.as_str()),
        _ => "stackctl-engine".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn roles_repeat_and_split_on_commas() {
        let o = parse_args(args(&[
            "--role",
            "runner,executor",
            "--role=event-api",
            "--config",
            "/x.json",
        ]))
        .unwrap();
        assert_eq!(o.roles, vec![Role::Runner, Role::Executor, Role::EventApi]);
        assert_eq!(o.config, Some(PathBuf::from("/x.json")));
        assert_eq!(o.log_format, None);
    }

    #[test]
    fn bad_arguments_are_reported() {
        assert!(
            parse_args(args(&["--role", "web"]))
                .unwrap_err()
                .contains("unknown role")
        );
        assert!(
            parse_args(args(&["--config"]))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse_args(args(&["--frobnicate"]))
                .unwrap_err()
                .contains("unexpected")
        );
        let o = parse_args(args(&["--log-format", "json"])).unwrap();
        assert_eq!(o.log_format, Some(LogFormat::Json));
    }
}
