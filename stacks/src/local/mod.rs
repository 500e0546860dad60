//! The local provider: a stack as engine processes on this machine, on the
//! embedded durable store. It owns the state directory (the database, one
//! engine config and one log per process, `state.json`), starting and
//! stopping processes, and verifying the stack end to end. It reports
//! progress through [`Progress`] and prints nothing itself.
//!
//! Verbs: [`up`] (idempotent: healthy processes with an unchanged config are
//! kept, dead or changed ones (re)started, then `/health` and a canary run
//! are checked), [`status`], [`down`] and [`scale`].

mod config;
mod process;
mod state;
mod verify;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use engine::backend::BackendConfig;
use engine::config::Role;
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

pub use crate::progress::{Phase, Progress, ProgressEvent, Silent};
pub use engine::canary::{CANARY_EVENT, CANARY_FUNCTION, CanaryReport, canary_function};
pub use process::{Launcher, Stopped};
pub use state::{Counts, ProcessRecord, STATE_FILE, StackState};

use crate::spec::{LoadedSpec, Provider};
use crate::stackref::write_atomic;

/// The event API's port when the spec sets none.
pub const DEFAULT_EVENT_API_PORT: u16 = 8288;
/// How long `down` and `scale` give a process to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// Why a local-provider operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The spec is for another provider.
    #[error(
        "stack `{stack}` has `provider: {provider}`; the local provider runs only `provider: local` stacks"
    )]
    WrongProvider {
        /// The stack.
        stack: String,
        /// Its provider.
        provider: &'static str,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `state.json` could not be read back.
    #[error("corrupt state file {}: {message}", path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another `stackctl` holds the stack's lock.
    #[error("another stackctl command is operating on this stack (lock {} is held); wait for it to finish", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The engine program could not be started.
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A port the spec fixes belongs to another program.
    #[error(
        "port {port} (for {name}) is in use by another program: stop it, or change the port in the spec (services.event-api.port, services.runner.port)"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The process that needs it.
        name: String,
    },
    /// Base port plus instance index leaves the port range.
    #[error("no port for {name}: {base} plus its index is above 65535; lower the port in the spec")]
    PortRange {
        /// The process.
        name: String,
        /// The spec's base port.
        base: u16,
    },
    /// A process exited while it was expected to run.
    #[error("{name} exited; the end of its log ({}):\n{tail}", log.display())]
    ProcessExited {
        /// The process.
        name: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {}s waiting for {what}; {hint}", waited.as_secs())]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// Where to look next.
        hint: String,
    },
    /// An HTTP call to the stack failed.
    #[error("cannot {action}: {message}")]
    Http {
        /// The call.
        action: String,
        /// The error.
        message: String,
    },
    /// The canary did not complete.
    #[error("end-to-end check failed: {0}")]
    Canary(#[from] engine::canary::CanaryError),
    /// The stack has no event key to send with.
    #[error("the spec has no event key; add one under event_keys")]
    NoEventKey,
    /// A command needs the stack up.
    #[error("the local stack `{stack}` is not up (no {} found): run `stackctl up` first", state_file.display())]
    NotUp {
        /// The stack.
        stack: String,
        /// The missing state file.
        state_file: PathBuf,
    },
    /// Processes survived `down`.
    #[error("{} process(es) could not be stopped: {}", names.len(), names.join(", "))]
    LeftRunning {
        /// Their names.
        names: Vec<String>,
    },
}

impl LocalError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A scalable service, named as on AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// The event API.
    EventApi,
    /// The runner.
    Runner,
    /// The executors.
    Executors,
}

impl Service {
    /// The engine role of the service's processes.
    pub fn role(self) -> Role {
        match self {
            Self::EventApi => Role::EventApi,
            Self::Runner => Role::Runner,
            Self::Executors => Role::Executor,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventApi => "event-api",
            Self::Runner => "runner",
            Self::Executors => "executors",
        }
    }
}

impl FromStr for Service {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "event-api" => Ok(Self::EventApi),
            "runner" => Ok(Self::Runner),
            "executors" => Ok(Self::Executors),
            other => Err(format!(
                "unknown service `{other}`: expected event-api, runner or executors"
            )),
        }
    }
}

/// What `up` needs besides the spec.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// How to start an engine role.
    pub launcher: Launcher,
    /// `DOCKER_HOST`, if set (the docker driver's socket).
    pub docker_host: Option<String>,
}

/// How to reach a running stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// Base URL of the (first) event API.
    pub event_api: String,
    /// The event key to send with (`POST {event_api}/e/{event_key}`).
    pub event_key: String,
    /// Base URL of the runs API.
    pub runs_api: String,
    /// Bearer token of the runs API.
    pub api_token: String,
}

/// What `up` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpReport {
    /// The stack.
    pub stack: String,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// How to reach it.
    #[serde(flatten)]
    pub endpoints: Endpoints,
    /// Every process now running.
    pub processes: Vec<ProcessRecord>,
    /// What changed.
    pub changes: Changes,
    /// The end-to-end check.
    pub canary: CanaryReport,
}

/// Processes started, restarted, kept and stopped by one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Newly started.
    pub started: Vec<String>,
    /// Dead or with a changed configuration, started again.
    pub restarted: Vec<String>,
    /// Running and unchanged.
    pub kept: Vec<String>,
    /// Stopped because the count went down.
    pub stopped: Vec<String>,
}

/// The state directory of a stack: `local.state_dir` relative to the spec
/// file, or `.stackctl/<stack>` next to it.
pub fn state_dir(loaded: &LoadedSpec) -> Result<PathBuf, LocalError> {
    let spec = absolute(&loaded.path)?;
    let base = spec.parent().unwrap_or(Path::new("/"));
    Ok(match &loaded.spec.local.state_dir {
        Some(dir) => base.join(dir),
        None => base.join(".stackctl").join(&loaded.spec.stack),
    })
}

/// The backends of a local stack's engine, as its processes open them, but
/// never creating queues; `None` when the stack keeps its queues in the
/// embedded database and that does not exist (it never ran).
pub(crate) fn engine_backend(loaded: &LoadedSpec) -> Result<Option<BackendConfig>, LocalError> {
    ensure_local(loaded)?;
    let db = state_dir(loaded)?.join("engine.db");
    Ok(match config::backend_config(loaded, &db) {
        BackendConfig::SqsRedis {
            events_queue,
            work_queue,
            redis_url,
            redis_cluster,
            ..
        } => Some(BackendConfig::SqsRedis {
            events_queue,
            work_queue,
            redis_url,
            redis_cluster,
            create_queues: false,
        }),
        BackendConfig::Embedded { .. } | BackendConfig::EmbeddedRedis { .. } if !db.exists() => {
            None
        }
        BackendConfig::SqsEmbedded {
            events_queue,
            work_queue,
            path,
            ..
        } => Some(BackendConfig::SqsEmbedded {
            events_queue,
            work_queue,
            path,
            create_queues: false,
        }),
        other => Some(other),
    })
}

fn absolute(path: &Path) -> Result<PathBuf, LocalError> {
    std::fs::canonicalize(path).map_err(|source| LocalError::io("resolve", path, source))
}

fn ensure_local(loaded: &LoadedSpec) -> Result<(), LocalError> {
    match loaded.spec.provider {
        Provider::Local => Ok(()),
        Provider::Aws => Err(LocalError::WrongProvider {
            stack: loaded.spec.stack.clone(),
            provider: "aws",
        }),
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The stack's lock: held for the whole of `up`, `scale` and `down`, and
/// released by the kernel if `stackctl` dies.
fn lock(dir: &Path) -> Result<Flock<File>, LocalError> {
    std::fs::create_dir_all(dir).map_err(|source| LocalError::io("create", dir, source))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LocalError::io("open", &path, source))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| LocalError::Locked { path })
}

/// Everything a process configuration needs that comes from outside the spec.
struct Context<'a> {
    loaded: &'a LoadedSpec,
    dir: PathBuf,
    shared: config::Shared,
    launcher: &'a Launcher,
}

impl<'a> Context<'a> {
    fn new(
        loaded: &'a LoadedSpec,
        launcher: &'a Launcher,
        docker_host: Option<String>,
    ) -> Result<Self, LocalError> {
        let dir = state_dir(loaded)?;
        for sub in ["config", "logs"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|source| LocalError::io("create", &d, source))?;
        }
        let api_token = api_token(loaded, &dir)?;
        let shared = config::Shared {
            db: dir.join("engine.db"),
            event_keys: loaded.spec.event_keys.values().cloned().collect(),
            api_token,
            event_api_port: event_api_port(loaded),
            docker_socket: config::docker_socket(loaded, docker_host),
        };
        Ok(Self {
            loaded,
            dir,
            shared,
            launcher,
        })
    }

    fn endpoints(&self) -> Result<Endpoints, LocalError> {
        let event_api = format!("http://127.0.0.1:{}", self.shared.event_api_port);
        Ok(Endpoints {
            runs_api: format!("{event_api}/v1"),
            event_api,
            event_key: event_key(self.loaded)?,
            api_token: self.shared.api_token.clone(),
        })
    }

    /// Brings the processes recorded in `state` to `state.counts`.
    async fn converge(
        &self,
        state: &mut StackState,
        progress: &dyn Progress,
    ) -> Result<Changes, LocalError> {
        let mut changes = Changes::default();
        let extra: Vec<ProcessRecord> = state
            .processes
            .iter()
            .filter(|p| p.index >= state.counts.of(p.role))
            .cloned()
            .collect();
        if !extra.is_empty() {
            stop(&extra, progress).await?;
            state
                .processes
                .retain(|p| p.index < state.counts.of(p.role));
            changes.stopped = extra.iter().map(|p| p.name.clone()).collect();
            state.save(&self.dir)?;
        }
        for role in [Role::EventApi, Role::Runner, Role::Executor] {
            for index in 0..state.counts.of(role) {
                self.converge_one(state, role, index, &mut changes, progress)
                    .await?;
            }
        }
        Ok(changes)
    }

    async fn converge_one(
        &self,
        state: &mut StackState,
        role: Role,
        index: u32,
        changes: &mut Changes,
        progress: &dyn Progress,
    ) -> Result<(), LocalError> {
        let name = state::process_name(role, index);
        let previous = state.process(role, index).cloned();
        let alive = previous
            .as_ref()
            .is_some_and(|p| process::is_alive(p.pid, &p.config));
        // The event API's port (and the runner's, when the spec sets one) is
        // fixed: instance i listens on base + i. Others keep their port.
        let fixed = match role {
            Role::EventApi => Some(event_api_port(self.loaded)),
            Role::Runner => self.loaded.spec.services.runner.port,
            Role::Executor | Role::All => None,
        };
        let port = match (fixed, &previous) {
            (Some(base), _) => u16::try_from(index)
                .ok()
                .and_then(|i| base.checked_add(i))
                .ok_or_else(|| LocalError::PortRange {
                    name: name.clone(),
                    base,
                })?,
            (None, Some(p)) if alive || !process::port_in_use(p.port) => p.port,
            (None, _) => process::free_port()?,
        };
        let config_path = self.dir.join("config").join(format!("{name}.json"));
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let doc = config::process_config(self.loaded, &self.shared, role, port);
        let mut text = serde_json::to_vec_pretty(&doc).map_err(|e| LocalError::CorruptState {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        text.push(b'\n');
        let program = self.launcher.identity();
        let unchanged = std::fs::read(&config_path).is_ok_and(|old| old == text)
            && previous.as_ref().is_some_and(|p| p.program == program);
        if alive && unchanged {
            changes.kept.push(name);
            return Ok(());
        }
        if let Some(p) = previous.as_ref().filter(|_| alive) {
            progress.info(&format!(
                "{name}: configuration or program changed, restarting"
            ));
            stop(std::slice::from_ref(p), progress).await?;
        }
        if fixed.is_some() && process::port_in_use(port) {
            return Err(LocalError::PortInUse { port, name });
        }
        write_atomic(&config_path, &text)
            .map_err(|source| LocalError::io("write", &config_path, source))?;
        progress.start(&format!("start:{name}"), &format!("starting {name}"));
        let pid = process::spawn(self.launcher, role, &config_path, &log, &self.dir)?;
        progress.ok(
            &format!("start:{name}"),
            &format!("started {name} (pid {pid}, port {port})"),
        );
        state
            .processes
            .retain(|p| !(p.role == role && p.index == index));
        state.processes.push(ProcessRecord {
            name: name.clone(),
            role,
            index,
            pid,
            port,
            started_at: now_ms(),
            config: config_path,
            log,
            program,
        });
        // Recorded at once: a crash of stackctl right after must not orphan the process.
        state.save(&self.dir)?;
        if previous.is_some() {
            changes.restarted.push(name);
        } else {
            changes.started.push(name);
        }
        Ok(())
    }
}

async fn stop(
    processes: &[ProcessRecord],
    progress: &dyn Progress,
) -> Result<Vec<Stopped>, LocalError> {
    for p in processes {
        progress.start(
            &format!("stop:{}", p.name),
            &format!("stopping {} (pid {})", p.name, p.pid),
        );
    }
    let targets: Vec<(u32, PathBuf)> = processes
        .iter()
        .map(|p| (p.pid, p.config.clone()))
        .collect();
    let outcome = process::stop_all(&targets, STOP_GRACE).await;
    let mut stuck = Vec::new();
    for (p, how) in processes.iter().zip(&outcome) {
        let key = format!("stop:{}", p.name);
        match how {
            Stopped::AlreadyGone => progress.ok(&key, &format!("{} was not running", p.name)),
            Stopped::Terminated => progress.ok(&key, &format!("{} stopped", p.name)),
            Stopped::Killed => progress.ok(
                &key,
                &format!(
                    "{} killed (no exit within {}s of SIGTERM)",
                    p.name,
                    STOP_GRACE.as_secs()
                ),
            ),
            Stopped::Stuck => {
                progress.fail(&key, &format!("{} is still running after SIGKILL", p.name));
                stuck.push(p.name.clone());
            }
        }
    }
    if stuck.is_empty() {
        Ok(outcome)
    } else {
        Err(LocalError::LeftRunning { names: stuck })
    }
}

fn event_api_port(loaded: &LoadedSpec) -> u16 {
    loaded
        .spec
        .services
        .event_api
        .port
        .unwrap_or(DEFAULT_EVENT_API_PORT)
}

/// The key `up` sends with and prints: the one named `default`, else the first.
fn event_key(loaded: &LoadedSpec) -> Result<String, LocalError> {
    let keys = &loaded.spec.event_keys;
    keys.get("default")
        .or_else(|| keys.values().next())
        .cloned()
        .ok_or(LocalError::NoEventKey)
}

/// The spec's `api_token`, else one generated once into the state directory.
fn api_token(loaded: &LoadedSpec, dir: &Path) -> Result<String, LocalError> {
    if let Some(t) = &loaded.spec.api_token {
        return Ok(t.clone());
    }
    let path = dir.join("api_token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(LocalError::io("read", &path, source)),
    }
    let mut bytes = [0u8; 24];
    let urandom = Path::new("/dev/urandom");
    std::io::Read::read_exact(
        &mut File::open(urandom).map_err(|source| LocalError::io("open", urandom, source))?,
        &mut bytes,
    )
    .map_err(|source| LocalError::io("read", urandom, source))?;
    let token = hex::encode(bytes);
    write_atomic(&path, format!("{token}\n").as_bytes())
        .map_err(|source| LocalError::io("write", &path, source))?;
    Ok(token)
}

fn spec_counts(loaded: &LoadedSpec) -> Counts {
    let s = &loaded.spec;
    Counts {
        event_api: s.services.event_api.count,
        runner: s.services.runner.count,
        executors: s.executors.desired,
    }
}

/// Starts (or keeps) the stack's processes at the spec's counts, waits for
/// their `/health`, and verifies a canary run end to end.
pub async fn up(
    loaded: &LoadedSpec,
    opts: &UpOptions,
    progress: &dyn Progress,
) -> Result<UpReport, LocalError> {
    ensure_local(loaded)?;
    let ctx = Context::new(loaded, &opts.launcher, opts.docker_host.clone())?;
    let _lock = lock(&ctx.dir)?;
    progress.info(&format!("state directory {}", ctx.dir.display()));
    if loaded
        .spec
        .executors
        .drivers
        .contains(&crate::spec::Driver::Docker)
        && ctx.shared.docker_socket.is_none()
    {
        progress.info("docker driver: no Docker socket found (DOCKER_HOST or /var/run/docker.sock); docker steps will fail");
    }
    let endpoints = ctx.endpoints()?;
    let previous = StackState::load(&ctx.dir)?;
    let mut state = StackState {
        version: 1,
        stack: loaded.spec.stack.clone(),
        spec: absolute(&loaded.path)?,
        event_api_port: ctx.shared.event_api_port,
        counts: spec_counts(loaded),
        processes: previous.map(|p| p.processes).unwrap_or_default(),
        updated_at: 0,
    };
    let changes = ctx.converge(&mut state, progress).await?;
    state.save(&ctx.dir)?;
    let client = verify::client()?;
    verify::wait_healthy(
        &client,
        &state.processes,
        loaded.spec.timeouts.services.std(),
        progress,
    )
    .await?;
    let canary = verify::canary(
        &client,
        &endpoints.event_api,
        &endpoints.event_key,
        &endpoints.api_token,
        loaded.spec.timeouts.canary.std(),
        progress,
    )
    .await?;
    Ok(UpReport {
        stack: loaded.spec.stack.clone(),
        state_dir: ctx.dir,
        endpoints,
        processes: state.processes,
        changes,
        canary,
    })
}

/// One process as `status` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessStatus {
    /// e.g. `executor-0`.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Process id.
    pub pid: u32,
    /// Its health port.
    pub port: u16,
    /// Whether the process exists.
    pub alive: bool,
    /// Whether `/health` answered 2xx.
    pub healthy: bool,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    /// Its log file.
    pub log: PathBuf,
}

/// Desired and actual counts of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServiceCount {
    /// As last applied by `up` or `scale`.
    pub desired: u32,
    /// Processes alive.
    pub running: u32,
    /// Processes healthy.
    pub healthy: u32,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// The stack.
    pub stack: String,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Whether the stack is up: `up` ran and no `down` since.
    pub up: bool,
    /// Base URL of the event API.
    pub event_api: String,
    /// Counts by service: `event-api`, `runner`, `executors`.
    pub services: std::collections::BTreeMap<&'static str, ServiceCount>,
    /// Every recorded process.
    pub processes: Vec<ProcessStatus>,
    /// Whether every desired process is running and healthy.
    pub healthy: bool,
    /// Queue depths and ages, dead letters and failed runs.
    pub figures: crate::figures::Figures,
}

/// Each recorded process with its liveness and health, and counts by service.
pub async fn status(loaded: &LoadedSpec) -> Result<StatusReport, LocalError> {
    ensure_local(loaded)?;
    let dir = state_dir(loaded)?;
    let state = StackState::load(&dir)?;
    let client = verify::client()?;
    let mut processes = Vec::new();
    for p in state.iter().flat_map(|s| &s.processes) {
        let alive = process::is_alive(p.pid, &p.config);
        let healthy = alive && verify::is_healthy(&client, p).await;
        processes.push(ProcessStatus {
            name: p.name.clone(),
            role: p.role,
            pid: p.pid,
            port: p.port,
            alive,
            healthy,
            started_at: p.started_at,
            log: p.log.clone(),
        });
    }
    let counts = state.as_ref().map(|s| s.counts).unwrap_or_default();
    let mut services = std::collections::BTreeMap::new();
    for svc in [Service::EventApi, Service::Runner, Service::Executors] {
        let of = |f: fn(&ProcessStatus) -> bool| {
            let n = processes
                .iter()
                .filter(|p| p.role == svc.role() && f(p))
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        services.insert(
            svc.as_str(),
            ServiceCount {
                desired: counts.of(svc.role()),
                running: of(|p| p.alive),
                healthy: of(|p| p.healthy),
            },
        );
    }
    let up = state
        .as_ref()
        .is_some_and(|s| !s.processes.is_empty() || s.counts != Counts::default());
    let healthy = up
        && services
            .values()
            .all(|c| c.healthy == c.desired && c.running == c.desired);
    let event_api = format!(
        "http://127.0.0.1:{}",
        state
            .as_ref()
            .map_or(event_api_port(loaded), |s| s.event_api_port)
    );
    let figures = if up {
        crate::figures::local(loaded, &event_api).await
    } else {
        crate::figures::Figures::unknown("the stack is not up")
    };
    Ok(StatusReport {
        stack: loaded.spec.stack.clone(),
        up,
        event_api,
        state_dir: dir,
        services,
        processes,
        healthy,
        figures,
    })
}

/// What `down` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownReport {
    /// The stack.
    pub stack: String,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Exited after SIGTERM.
    pub stopped: Vec<String>,
    /// Killed after the grace period.
    pub killed: Vec<String>,
    /// Recorded but already gone.
    pub already_gone: Vec<String>,
    /// Whether the state directory (data included) was deleted.
    pub purged: bool,
}

/// Stops every process (SIGTERM, SIGKILL after [`STOP_GRACE`]); keeps the
/// data unless `purge`.
pub async fn down(
    loaded: &LoadedSpec,
    purge: bool,
    progress: &dyn Progress,
) -> Result<DownReport, LocalError> {
    ensure_local(loaded)?;
    let dir = state_dir(loaded)?;
    let mut report = DownReport {
        stack: loaded.spec.stack.clone(),
        state_dir: dir.clone(),
        stopped: Vec::new(),
        killed: Vec::new(),
        already_gone: Vec::new(),
        purged: false,
    };
    if !dir.exists() {
        progress.info(&format!(
            "nothing to stop: {} does not exist",
            dir.display()
        ));
        return Ok(report);
    }
    let lock_guard = lock(&dir)?;
    if let Some(mut state) = StackState::load(&dir)? {
        let processes = std::mem::take(&mut state.processes);
        let result = stop(&processes, progress).await;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                // Keep the survivors on record so a later `down` finds them.
                state.processes = processes
                    .into_iter()
                    .filter(|p| process::is_alive(p.pid, &p.config))
                    .collect();
                state.save(&dir)?;
                return Err(e);
            }
        };
        for (p, how) in processes.iter().zip(outcome) {
            let list = match how {
                Stopped::Terminated => &mut report.stopped,
                Stopped::Killed => &mut report.killed,
                Stopped::AlreadyGone | Stopped::Stuck => &mut report.already_gone,
            };
            list.push(p.name.clone());
        }
        state.counts = Counts::default();
        state.save(&dir)?;
    } else {
        progress.info("no processes recorded");
    }
    if purge {
        drop(lock_guard);
        std::fs::remove_dir_all(&dir).map_err(|source| LocalError::io("delete", &dir, source))?;
        progress.ok(
            "purge",
            &format!("deleted {} (database, configs, logs)", dir.display()),
        );
        report.purged = true;
    }
    Ok(report)
}

/// What `scale` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScaleReport {
    /// The service.
    pub service: Service,
    /// The count before.
    pub from: u32,
    /// The count now.
    pub to: u32,
    /// What changed.
    pub changes: Changes,
    /// The count in the spec file, which `scale` does not edit (the next
    /// `up` returns to it).
    pub spec_count: u32,
}

/// Sets the number of processes of `service` to `n`, starting or stopping
/// processes, and waits for new ones to be healthy.
pub async fn scale(
    loaded: &LoadedSpec,
    service: Service,
    n: u32,
    opts: &UpOptions,
    progress: &dyn Progress,
) -> Result<ScaleReport, LocalError> {
    ensure_local(loaded)?;
    let ctx = Context::new(loaded, &opts.launcher, opts.docker_host.clone())?;
    let _lock = lock(&ctx.dir)?;
    let Some(mut state) = StackState::load(&ctx.dir)?.filter(|s| !s.processes.is_empty()) else {
        return Err(LocalError::NotUp {
            stack: loaded.spec.stack.clone(),
            state_file: ctx.dir.join(STATE_FILE),
        });
    };
    let role = service.role();
    let from = state.counts.of(role);
    state.counts.set(role, n);
    let changes = ctx.converge(&mut state, progress).await?;
    state.save(&ctx.dir)?;
    let fresh: Vec<ProcessRecord> = state
        .processes
        .iter()
        .filter(|p| changes.started.contains(&p.name) || changes.restarted.contains(&p.name))
        .cloned()
        .collect();
    let client = verify::client()?;
    verify::wait_healthy(
        &client,
        &fresh,
        loaded.spec.timeouts.services.std(),
        progress,
    )
    .await?;
    Ok(ScaleReport {
        service,
        from,
        to: n,
        changes,
        spec_count: spec_counts(loaded).of(role),
    })
}
