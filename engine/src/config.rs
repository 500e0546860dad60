//! The engine's configuration: one JSON document (a file given with
//! `--config`, or the whole document in `STACKCTL_ENGINE_CONFIG`), with a few
//! `STACKCTL_ENGINE_*` environment overrides for the values containers set
//! per task (binds, secrets, the database path). Unknown fields are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::backend::BackendConfig;
use crate::functions::{Duration, FunctionDef};

/// Environment variable holding the whole configuration as JSON.
pub const ENV_CONFIG: &str = "STACKCTL_ENGINE_CONFIG";
/// Comma-separated event keys; replaces `event_keys`.
pub const ENV_EVENT_KEYS: &str = "STACKCTL_ENGINE_EVENT_KEYS";
/// Bearer token of the runs API; replaces `api_token`.
pub const ENV_API_TOKEN: &str = "STACKCTL_ENGINE_API_TOKEN";
/// Path of the embedded database; replaces `backend` with an embedded one.
pub const ENV_DB_PATH: &str = "STACKCTL_ENGINE_DB_PATH";
/// Replaces `event_api.bind`.
pub const ENV_EVENT_API_BIND: &str = "STACKCTL_ENGINE_EVENT_API_BIND";
/// Replaces `runner.bind`.
pub const ENV_RUNNER_BIND: &str = "STACKCTL_ENGINE_RUNNER_BIND";
/// Replaces `executor.bind`.
pub const ENV_EXECUTOR_BIND: &str = "STACKCTL_ENGINE_EXECUTOR_BIND";
/// Replaces `executor.host`.
pub const ENV_EXECUTOR_HOST: &str = "STACKCTL_ENGINE_EXECUTOR_HOST";
/// Replaces `log_format` (`text` or `json`).
pub const ENV_LOG_FORMAT: &str = "STACKCTL_ENGINE_LOG_FORMAT";
/// The Redis password (the ElastiCache auth token); replaces the one in the
/// backend's `redis_url`. On AWS it comes from an SSM SecureString (the task
/// definition's `secrets`, or fetched by the executor host at boot), so the
/// token is never written into a task definition or user data.
pub const ENV_REDIS_AUTH_TOKEN: &str = "STACKCTL_ENGINE_REDIS_AUTH_TOKEN";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The JSON did not match the configuration format.
    #[error("invalid configuration in {origin}: {source}")]
    Parse {
        /// Where the document came from (a path or an environment variable).
        origin: String,
        /// The serde error, with line and column.
        source: serde_json::Error,
    },
    /// An environment override had a bad value.
    #[error("invalid value of {var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Neither a file nor `STACKCTL_ENGINE_CONFIG` nor `STACKCTL_ENGINE_DB_PATH` was given.
    #[error("no configuration: pass --config PATH or set {ENV_CONFIG} (or at least {ENV_DB_PATH})")]
    Missing,
    /// The values are individually fine but not together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// One engine role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// HTTP ingestion, runs API, /health and /metrics.
    EventApi,
    /// Consumes events, creates runs, resolves waits.
    Runner,
    /// Runs steps.
    Executor,
    /// Every role in one process.
    All,
}

impl Role {
    /// The roles this one stands for (`all` expands to the three).
    pub fn expand(roles: &[Role]) -> Vec<Role> {
        let mut out: Vec<Role> = Vec::new();
        for r in roles {
            let add: &[Role] = match r {
                Role::All => &[Role::EventApi, Role::Runner, Role::Executor],
                Role::EventApi => &[Role::EventApi],
                Role::Runner => &[Role::Runner],
                Role::Executor => &[Role::Executor],
            };
            for a in add {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out.sort();
        out
    }

    /// The name used on the command line and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::EventApi => "event-api",
            Role::Runner => "runner",
            Role::Executor => "executor",
            Role::All => "all",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "event-api" => Ok(Role::EventApi),
            "runner" => Ok(Role::Runner),
            "executor" => Ok(Role::Executor),
            "all" => Ok(Role::All),
            other => Err(format!(
                "unknown role `{other}`: expected event-api, runner, executor or all"
            )),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for CloudWatch and log shippers).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`: expected text or json"
            )),
        }
    }
}

/// The whole engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Roles this process runs when `--role` is not given. Default: `["all"]`.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// The event API (ingestion, runs API, /health, /metrics).
    #[serde(default)]
    pub event_api: EventApiConfig,
    /// The runner.
    #[serde(default)]
    pub runner: RunnerConfig,
    /// The executor.
    #[serde(default)]
    pub executor: ExecutorConfig,
    /// Secrets accepted in `POST /e/{event_key}`. Empty: every send is refused (401).
    #[serde(default)]
    pub event_keys: Vec<String>,
    /// Bearer token of the runs API (`/v1/...`). Unset: the runs API refuses every call (401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<String>,
    /// Where queues and state live.
    pub backend: BackendConfig,
    /// Settings of the event stream and the work queue.
    #[serde(default)]
    pub queues: QueuesConfig,
    /// Functions registered (replacing any with the same id) when the process starts.
    #[serde(default)]
    pub functions: Vec<FunctionDef>,
    /// Log output format (`--log-format` overrides it). Default `text`.
    #[serde(default)]
    pub log_format: LogFormat,
}

fn default_roles() -> Vec<Role> {
    vec![Role::All]
}

/// The event API's listener and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventApiConfig {
    /// Listen address. Default `127.0.0.1:8288`; port 0 picks a free one (logged).
    #[serde(default = "default_event_api_bind")]
    pub bind: SocketAddr,
    /// Largest request body in bytes (413 above). Default 4 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest single event, as sent, in bytes (413 above). Default 256 KiB, like Inngest.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Most events in one request (413 above). Default 5000.
    #[serde(default = "default_max_events_per_request")]
    pub max_events_per_request: usize,
    /// Requests handled at once; more get 503 with Retry-After. Default 1024.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Request bytes in flight at most (declared `Content-Length`, else
    /// `max_body_bytes`, reserved until the request is answered); beyond it
    /// 503 with `Retry-After`, so that large concurrent posts cannot
    /// exhaust the process's memory. Default 64 MiB.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// A client must send a request's headers within this long (also how
    /// long an idle keep-alive connection stays open). Default 30s.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Duration,
    /// A client must send a request's whole body within this long. Default 60s.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Duration,
}

fn default_event_api_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8288))
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_event_bytes() -> usize {
    256 * 1024
}
fn default_max_events_per_request() -> usize {
    5000
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_max_in_flight_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for EventApiConfig {
    fn default() -> Self {
        Self {
            bind: default_event_api_bind(),
            max_body_bytes: default_max_body_bytes(),
            max_event_bytes: default_max_event_bytes(),
            max_events_per_request: default_max_events_per_request(),
            max_in_flight: default_max_in_flight(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
        }
    }
}

/// The runner's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerConfig {
    /// Listen address of the runner's `/health` and `/metrics`. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// Event messages processed at once. Default 64.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long a run is kept after it ended (with its steps); runners
    /// delete older ones. Default 7d.
    #[serde(default = "default_run_retention")]
    pub run_retention: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            bind: None,
            concurrency: default_concurrency(),
            run_retention: default_run_retention(),
        }
    }
}

fn default_run_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_concurrency() -> usize {
    64
}

/// The executor's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    /// Listen address of the executor's `/health` and `/metrics`. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// Steps run at once. Default 64.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Step drivers.
    #[serde(default)]
    pub drivers: DriversConfig,
    /// The name recorded on every attempt this executor makes (on AWS the
    /// EC2 instance's host name, set per host through
    /// `STACKCTL_ENGINE_EXECUTOR_HOST`), so that a step can be traced to the
    /// machine and deployment that ran it. Unset: this machine's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            bind: None,
            concurrency: default_concurrency(),
            drivers: DriversConfig::default(),
            host: None,
        }
    }
}

impl ExecutorConfig {
    /// The name this executor records on its attempts: `host`, else the
    /// machine's host name (`None` where the system does not say).
    pub fn host_name(&self) -> Option<String> {
        self.host.clone().or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
    }
}

/// Step drivers available to the executor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriversConfig {
    /// The `http` driver (always available).
    #[serde(default)]
    pub http: HttpDriverConfig,
    /// The `docker` driver; unset: docker steps fail with a clear error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerDriverConfig>,
}

/// The `http` driver's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDriverConfig {
    /// Per-attempt timeout for steps that set none. Default `30s`.
    #[serde(default = "default_http_timeout")]
    pub default_timeout: Duration,
    /// Largest response body a step may answer with; a larger one fails the
    /// step. Default 4 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

impl Default for HttpDriverConfig {
    fn default() -> Self {
        Self {
            default_timeout: default_http_timeout(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

fn default_max_response_bytes() -> usize {
    crate::drivers::http::DEFAULT_MAX_RESPONSE_BYTES
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The `docker` driver's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerDriverConfig {
    /// Docker Engine API socket (a path, or `unix://` and a path). Default
    /// `/var/run/docker.sock`.
    #[serde(default = "default_docker_socket")]
    pub socket: PathBuf,
    /// Network of step containers: `bridge`, `host`, `none` or a network's
    /// name. Unset: the Docker engine's default (`bridge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

fn default_docker_socket() -> PathBuf {
    PathBuf::from("/var/run/docker.sock")
}

/// Settings of both queues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesConfig {
    /// The event stream (event API → runner).
    #[serde(default = "QueueConfig::events_default")]
    pub events: QueueConfig,
    /// The work queue (step jobs).
    #[serde(default = "QueueConfig::work_default")]
    pub work: QueueConfig,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        Self {
            events: QueueConfig::events_default(),
            work: QueueConfig::work_default(),
        }
    }
}

/// Settings of one queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// How long a received message stays invisible before it is redelivered
    /// (consumers extend it for long work). Default `30s` for events, `60s` for work.
    pub visibility_timeout: Duration,
    /// Receives without an ack before a message moves to the dead-letter queue. Default 5.
    pub max_receives: u32,
    /// How long an unacknowledged message (and a dead one) is kept. Default `4d`, like SQS.
    pub retention: Duration,
}

impl QueueConfig {
    fn events_default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receives: 5,
            retention: Duration::from_secs(4 * 86_400),
        }
    }

    fn work_default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(60),
            ..Self::events_default()
        }
    }
}

impl Config {
    /// A configuration with defaults for everything but the backend.
    pub fn new(backend: BackendConfig) -> Self {
        Self {
            roles: default_roles(),
            event_api: EventApiConfig::default(),
            runner: RunnerConfig::default(),
            executor: ExecutorConfig::default(),
            event_keys: Vec::new(),
            api_token: None,
            backend,
            queues: QueuesConfig::default(),
            functions: Vec::new(),
            log_format: LogFormat::default(),
        }
    }

    /// Parses a JSON document.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = serde_json::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        config.check()?;
        Ok(config)
    }

    /// Loads from `path` if given, else from `STACKCTL_ENGINE_CONFIG`, then
    /// applies the `STACKCTL_ENGINE_*` overrides read through `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match (path, env(ENV_CONFIG)) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_json(&text, &path.display().to_string())?
            }
            (None, Some(text)) => Self::from_json(&text, ENV_CONFIG)?,
            (None, None) => match env(ENV_DB_PATH) {
                Some(db) => Self::new(BackendConfig::Embedded { path: db.into() }),
                None => return Err(ConfigError::Missing),
            },
        };
        config.apply_env(env)?;
        config.check()?;
        Ok(config)
    }

    /// Loads with the process environment.
    pub fn load_from_process(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load(path, |k| std::env::var(k).ok())
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: FromStr>(var: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                var,
                message: e.to_string(),
            })
        }
        if let Some(v) = env(ENV_EVENT_KEYS) {
            self.event_keys = v
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = env(ENV_API_TOKEN) {
            self.api_token = Some(v).filter(|t| !t.is_empty());
        }
        if let Some(v) = env(ENV_DB_PATH) {
            self.backend = BackendConfig::Embedded { path: v.into() };
        }
        if let Some(v) = env(ENV_EVENT_API_BIND) {
            self.event_api.bind = parse(ENV_EVENT_API_BIND, &v)?;
        }
        if let Some(v) = env(ENV_RUNNER_BIND) {
            self.runner.bind = Some(parse(ENV_RUNNER_BIND, &v)?);
        }
        if let Some(v) = env(ENV_EXECUTOR_BIND) {
            self.executor.bind = Some(parse(ENV_EXECUTOR_BIND, &v)?);
        }
        if let Some(v) = env(ENV_EXECUTOR_HOST).filter(|h| !h.trim().is_empty()) {
            self.executor.host = Some(v.trim().to_string());
        }
        if let Some(v) = env(ENV_LOG_FORMAT) {
            self.log_format = parse(ENV_LOG_FORMAT, &v)?;
        }
        if let Some(token) = env(ENV_REDIS_AUTH_TOKEN).filter(|t| !t.is_empty()) {
            let url = match &mut self.backend {
                BackendConfig::SqsRedis { redis_url, .. }
                | BackendConfig::EmbeddedRedis { redis_url, .. } => redis_url,
                _ => {
                    return Err(ConfigError::Env {
                        var: ENV_REDIS_AUTH_TOKEN,
                        message: "the backend has no redis_url to apply it to".into(),
                    });
                }
            };
            *url = with_redis_password(url, &token).map_err(|message| ConfigError::Env {
                var: ENV_REDIS_AUTH_TOKEN,
                message,
            })?;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.event_api.max_event_bytes == 0 || self.event_api.max_body_bytes == 0 {
            return bad("event_api.max_event_bytes and max_body_bytes must be positive");
        }
        if self.event_api.max_events_per_request == 0 || self.event_api.max_in_flight == 0 {
            return bad("event_api.max_events_per_request and max_in_flight must be positive");
        }
        if self.event_api.max_in_flight_bytes < self.event_api.max_body_bytes {
            return bad("event_api.max_in_flight_bytes must be at least max_body_bytes");
        }
        if self.event_api.header_timeout.std().is_zero()
            || self.event_api.body_timeout.std().is_zero()
        {
            return bad("event_api.header_timeout and body_timeout must be positive");
        }
        if self.runner.run_retention.std().is_zero() {
            return bad("runner.run_retention must be positive");
        }
        if self.runner.concurrency == 0 || self.executor.concurrency == 0 {
            return bad("runner.concurrency and executor.concurrency must be positive");
        }
        for (name, q) in [("events", &self.queues.events), ("work", &self.queues.work)] {
            if q.max_receives == 0 {
                return Err(ConfigError::Invalid(format!(
                    "queues.{name}.max_receives must be at least 1"
                )));
            }
            if q.visibility_timeout.std().is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "queues.{name}.visibility_timeout must be positive"
                )));
            }
        }
        if self.event_keys.iter().any(|k| k.is_empty()) {
            return bad("event_keys must not contain an empty key");
        }
        Ok(())
    }
}

/// `url` (`redis://` or `rediss://`) with its password set to `password`,
/// percent-encoded (the Redis client decodes it); a user name is kept.
fn with_redis_password(url: &str, password: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("the backend's redis_url has no scheme".into());
    };
    if scheme != "redis" && scheme != "rediss" {
        return Err(format!(
            "the backend's redis_url is `{scheme}://`, expected redis:// or rediss://"
        ));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((info, host)) => (info.split_once(':').map_or(info, |(u, _)| u), host),
        None => ("", authority),
    };
    let mut encoded = String::with_capacity(password.len());
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("{scheme}://{user}:{encoded}@{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_redis_auth_token_from_the_environment_replaces_the_urls_password() {
        let doc = r#"{"backend": {"kind": "sqs_redis", "events_queue": "e", "work_queue": "w",
                      "redis_url": "rediss://:old@cache.example:6379/0#insecure"}}"#;
        let c = Config::load(
            None,
            env(&[(ENV_CONFIG, doc), (ENV_REDIS_AUTH_TOKEN, "t0k/en@x%")]),
        )
        .unwrap();
        match c.backend {
            BackendConfig::SqsRedis { redis_url, .. } => assert_eq!(
                redis_url,
                "rediss://:t0k%2Fen%40x%25@cache.example:6379/0#insecure"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            with_redis_password("redis://app:pw@h:1", "n").unwrap(),
            "redis://app:n@h:1"
        );
        assert_eq!(
            with_redis_password("redis://h:1", "n").unwrap(),
            "redis://:n@h:1"
        );
        let embedded = r#"{"backend": {"kind": "embedded", "path": "/tmp/x.db"}}"#;
        let err = Config::load(
            None,
            env(&[(ENV_CONFIG, embedded), (ENV_REDIS_AUTH_TOKEN, "t")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains(ENV_REDIS_AUTH_TOKEN), "{err}");
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn minimal_document_gets_defaults() {
        let c = Config::from_json(
            r#"{"backend":{"kind":"embedded","path":"/tmp/x.db"}}"#,
            "test",
        )
        .unwrap();
        assert_eq!(c.roles, vec![Role::All]);
        assert_eq!(c.event_api.max_event_bytes, 256 * 1024);
        assert_eq!(c.event_api.max_events_per_request, 5000);
        assert_eq!(c.queues.work.visibility_timeout, Duration::from_secs(60));
        assert_eq!(c.queues.events.max_receives, 5);
        assert!(c.api_token.is_none());
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = Config::from_json(
            r#"{"backend":{"kind":"embedded","path":"/tmp/x.db"},"event_api":{"bnd":"127.0.0.1:1"}}"#,
            "test",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `bnd`"), "{err}");
    }

    #[test]
    fn env_overrides_apply_over_the_document() {
        let doc = r#"{"backend":{"kind":"embedded","path":"/tmp/x.db"},"event_keys":["a"]}"#;
        let c = Config::load(
            None,
            env(&[
                (ENV_CONFIG, doc),
                (ENV_EVENT_KEYS, "k1, k2"),
                (ENV_API_TOKEN, "tok"),
                (ENV_RUNNER_BIND, "127.0.0.1:9001"),
                (ENV_LOG_FORMAT, "json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.event_keys, vec!["k1".to_string(), "k2".to_string()]);
        assert_eq!(c.api_token.as_deref(), Some("tok"));
        assert_eq!(c.runner.bind, Some("127.0.0.1:9001".parse().unwrap()));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn db_path_alone_is_enough_and_bad_env_is_reported() {
        let c = Config::load(None, env(&[(ENV_DB_PATH, "/tmp/y.db")])).unwrap();
        assert_eq!(
            c.backend,
            BackendConfig::Embedded {
                path: "/tmp/y.db".into()
            }
        );
        let err = Config::load(
            None,
            env(&[(ENV_DB_PATH, "/tmp/y.db"), (ENV_EXECUTOR_BIND, "nope")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains(ENV_EXECUTOR_BIND), "{err}");
        assert!(matches!(
            Config::load(None, env(&[])),
            Err(ConfigError::Missing)
        ));
    }

    #[test]
    fn roles_expand_and_parse() {
        assert_eq!(
            Role::expand(&[Role::Runner, Role::All]),
            vec![Role::EventApi, Role::Runner, Role::Executor]
        );
        assert_eq!("event-api".parse::<Role>().unwrap(), Role::EventApi);
        assert!("web".parse::<Role>().is_err());
    }
}
