//! The `docker` driver: runs a step as a container through the Docker Engine
//! API (a Docker daemon, or podman's compatible service) on the executor's host.
//!
//! One attempt: make sure the image is there (pull policy `if_missing`,
//! `always` or `never`), create a container labelled `stackctl.run_id`,
//! `stackctl.step_id` and `stackctl.attempt` with the step's command, env, CPU
//! and memory limits, attach to it, start it, write the step context as one
//! JSON line on its stdin and close stdin, collect stdout and stderr until it
//! exits, then remove it. The container is removed on every path: success,
//! error, timeout, and cancellation: its whole life runs in a task of its
//! own, and dropping the attempt (an executor shutting down) only tells that
//! task to kill and remove it, so no request to the daemon is cut half-way.
//! Only a process that dies outright can leave a container behind; the
//! labels find it (`docker ps -a --filter label=stackctl.run_id`).
//!
//! What the container sees:
//! - stdin: the [`StepContext`] as JSON, then end of file;
//! - `STACKCTL_RUN_ID`, `STACKCTL_FUNCTION_ID`, `STACKCTL_STEP_ID`,
//!   `STACKCTL_ATTEMPT`: always set;
//! - `STACKCTL_STEP_CONTEXT`: the same JSON as stdin when it is at most
//!   [`ENV_CONTEXT_MAX_BYTES`] (Linux caps one environment string at 128 KiB);
//!   unset above that, so large contexts must be read from stdin;
//! - the step's `env`; the driver's `STACKCTL_*` variables win over it.
//!
//! Results: exit code 0 and stdout that is JSON (the whole of stdout, or
//! failing that its last non-empty line, so a step may print progress lines
//! before its result; empty stdout is `null`) is the output. Invalid JSON
//! fails the step (permanent). A non-zero exit is retryable and reports the
//! exit code and the tail of stderr; the executor applies the step's retry
//! policy. After the step's timeout (default [`DEFAULT_TIMEOUT`], counted
//! from the start of the container, so a pull is not part of it) the
//! container is killed and the attempt is retryable. Stderr is the step's
//! log: it is logged through `tracing` and its tail goes into errors.
//!
//! Every container gets explicit `nofile` and `nproc` ulimits ([`ULIMIT`]):
//! runtimes that inherit a daemon's defaults above the host's hard limits
//! fail with "setrlimit: operation not permitted" (podman with runc does).
//! Pulls send no registry credentials: step images come from public
//! registries or are on the host already (`pull: never`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    KillContainerOptionsBuilder, LogsOptions, RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{Driver, DriverError, StepContext};
use crate::functions::{DockerStep, PullPolicy, Step};

/// Per-attempt timeout of steps that set none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest context also given in `STACKCTL_STEP_CONTEXT`.
pub const ENV_CONTEXT_MAX_BYTES: usize = 64 * 1024;
/// Label with the run id on every container the driver makes.
pub const LABEL_RUN_ID: &str = "stackctl.run_id";
/// Label with the step id on every container the driver makes.
pub const LABEL_STEP_ID: &str = "stackctl.step_id";
/// Label with the attempt number on every container the driver makes.
pub const LABEL_ATTEMPT: &str = "stackctl.attempt";
/// `nofile` and `nproc` (soft = hard) of every container.
pub const ULIMIT: i64 = 4096;
/// Largest stdout kept; more fails the step (an output is a JSON document).
const STDOUT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// How much of the end of stderr is kept for the log and errors.
const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// How much of stderr goes into a recorded error.
const ERROR_STDERR_CHARS: usize = 1024;
/// Timeout of each Docker API call (the step's own timeout bounds the wait).
const API_TIMEOUT_SECS: u64 = 120;
/// How long the output of a killed container is still read, so that its
/// attach session ends cleanly before the container is removed.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(10);
/// Longest a pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// The docker driver; one API client shared by every step.
#[derive(Debug, Clone)]
pub struct DockerDriver {
    docker: Docker,
    network: Option<String>,
}

impl DockerDriver {
    /// A driver talking to the Docker Engine API on this unix socket (a path,
    /// or `unix://` and a path). Nothing is sent until the first step runs;
    /// a socket that does not exist yet is an error, since an executor that
    /// was told to run docker steps cannot.
    pub fn connect(socket: &Path) -> Result<Self, DriverError> {
        let path = socket.to_string_lossy();
        let docker =
            Docker::connect_with_unix(&path, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| {
                    DriverError::Permanent(format!("cannot use the Docker API socket {path}: {e}"))
                })?;
        Ok(Self {
            docker,
            network: None,
        })
    }

    /// Puts step containers on this network (`bridge`, `host`, `none` or a
    /// network's name); `None` leaves the engine's default.
    pub fn with_network(mut self, network: Option<String>) -> Self {
        self.network = network;
        self
    }

    /// Pulls `image` as the policy says; `never` with a missing image fails
    /// permanently.
    async fn ensure_image(&self, image: &str, pull: PullPolicy) -> Result<(), DriverError> {
        let present = match pull {
            PullPolicy::Always => false,
            PullPolicy::IfMissing | PullPolicy::Never => {
                match self.docker.inspect_image(image).await {
                    Ok(_) => true,
                    Err(DockerError::DockerResponseServerError {
                        status_code: 404, ..
                    }) => false,
                    Err(e) => return Err(api_error(&format!("inspect image {image}"), e)),
                }
            }
        };
        if present {
            return Ok(());
        }
        if pull == PullPolicy::Never {
            return Err(DriverError::Permanent(format!(
                "image {image} is not on the executor host and the step's pull policy is `never`"
            )));
        }
        let (from_image, tag) = split_reference(image);
        let mut options = CreateImageOptionsBuilder::default().from_image(from_image);
        if let Some(tag) = tag {
            options = options.tag(tag);
        }
        let pulling = async {
            let mut progress = self.docker.create_image(Some(options.build()), None, None);
            while let Some(item) = progress.next().await {
                item.map_err(|e| pull_error(image, e))?;
            }
            Ok(())
        };
        tracing::info!(%image, "pulling a step image");
        tokio::time::timeout(PULL_TIMEOUT, pulling)
            .await
            .map_err(|_| {
                DriverError::Retryable(format!(
                    "pulling image {image} timed out after {}",
                    human(PULL_TIMEOUT)
                ))
            })?
    }

    async fn create(
        &self,
        name: &str,
        spec: &DockerStep,
        ctx: &StepContext,
        context_json: &str,
        traceparent: Option<&str>,
    ) -> Result<(), DriverError> {
        let labels = HashMap::from([
            (LABEL_RUN_ID.to_string(), ctx.run_id.clone()),
            (LABEL_STEP_ID.to_string(), ctx.step_id.clone()),
            (LABEL_ATTEMPT.to_string(), ctx.attempt.to_string()),
        ]);
        let ulimits = ["nofile", "nproc"]
            .into_iter()
            .map(|name| ResourcesUlimits {
                name: Some(name.to_string()),
                soft: Some(ULIMIT),
                hard: Some(ULIMIT),
            })
            .collect();
        let host_config = HostConfig {
            nano_cpus: spec.cpus.map(|c| (c * 1e9).round() as i64),
            memory: spec
                .memory_mb
                .map(|mb| i64::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX)),
            ulimits: Some(ulimits),
            network_mode: self.network.clone(),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(environment(spec, ctx, context_json, traceparent)),
            labels: Some(labels),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            // Closing the attached stdin then gives the process end of file.
            stdin_once: Some(true),
            tty: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .map_err(|e| match e {
                DockerError::DockerResponseServerError {
                    status_code: 404,
                    message,
                } => DriverError::Permanent(format!(
                    "cannot create a container of {}: {message}",
                    spec.image
                )),
                e => api_error(&format!("create a container of {}", spec.image), e),
            })?;
        for warning in created.warnings {
            tracing::warn!(container = %name, %warning, "Docker warned when creating a step container");
        }
        Ok(())
    }

    /// Attaches (before starting, so no output is missed) and starts.
    async fn attach_and_start(&self, id: &str) -> Result<AttachContainerResults, DriverError> {
        let options = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = self
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(|e| api_error("attach to the step container", e))?;
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| api_error("start the step container", e))?;
        Ok(attached)
    }

    /// Feeds stdin, collects the output until the container exits, and
    /// reads its exit code.
    async fn collect(
        &self,
        id: &str,
        attached: AttachContainerResults,
        context_json: &str,
    ) -> Result<Finished, DriverError> {
        let mut input = attached.input;
        let feed = async move {
            let mut line = context_json.as_bytes().to_vec();
            line.push(b'\n');
            // A step that never reads stdin may exit first: a broken pipe
            // here is its business, not an error of the attempt.
            if let Err(e) = input.write_all(&line).await {
                tracing::debug!(error = %e, "step container did not take its stdin");
            }
            let _ = input.shutdown().await;
        };
        let mut output = attached.output;
        let collect = async move {
            let mut out = Collected::default();
            // A broken attach session is not the step's failure: the log
            // below has what it wrote.
            let mut broken = None;
            while let Some(item) = output.next().await {
                match item {
                    Ok(item) => out.add(item),
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            (out, broken)
        };
        let ((), (mut collected, broken)) = tokio::join!(feed, collect);
        let code = self.exit_code(id).await?;
        if let Some(e) = &broken {
            tracing::debug!(container = %id, error = %e, "attach session broke; reading the log");
        }
        // A successful step whose attached stdout is not JSON: the session
        // may have carried the runtime's own error instead of the step's
        // output (podman 4.3 writes "write unixpacket ...: broken pipe" into
        // it when the step stops reading stdin early).
        let unreadable = code == 0
            && !collected.stdout_overflow
            && parse_output(&String::from_utf8_lossy(&collected.stdout)).is_err();
        if broken.is_some() || collected.stdout.is_empty() || unreadable {
            // An attach session to a container that exits at once can end
            // (or be reset) before the runtime copied its last output into
            // it (seen with podman 4.3 under load); the stopped container's
            // log has it all. Read only then: the usual step costs no extra
            // call.
            match self.logged(id).await {
                Ok(Some(logged)) => collected = logged,
                Ok(None) => {}
                Err(e) if broken.is_some() => return Err(e),
                Err(e) => tracing::debug!(container = %id, error = %e, "no log to read"),
            }
        }
        Ok(Finished { code, collected })
    }

    /// The stopped container's stdout and stderr from its log; `None` when
    /// it logged no stdout either.
    async fn logged(&self, id: &str) -> Result<Option<Collected>, DriverError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            ..LogsOptions::default()
        };
        let mut logs = self.docker.logs(id, Some(options));
        let mut out = Collected::default();
        while let Some(item) = logs.next().await {
            out.add(item.map_err(|e| api_error("read the step container's log", e))?);
        }
        Ok((!out.stdout.is_empty()).then_some(out))
    }

    async fn exit_code(&self, id: &str) -> Result<i64, DriverError> {
        let mut wait = self.docker.wait_container(id, None::<WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard turns a non-zero exit into this error.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(api_error("wait for the step container", e)),
            None => Err(DriverError::Retryable(
                "the Docker API closed the wait for the step container without an exit code"
                    .to_string(),
            )),
        }
    }
}

/// What a finished container left.
struct Finished {
    code: i64,
    collected: Collected,
}

/// Stdout (bounded; overflow noted) and the tail of stderr.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stdout_overflow: bool,
    stderr: Vec<u8>,
}

impl Collected {
    fn add(&mut self, item: LogOutput) {
        match item {
            LogOutput::StdOut { message } | LogOutput::Console { message } => self.stdout(&message),
            LogOutput::StdErr { message } => self.stderr(&message),
            LogOutput::StdIn { .. } => {}
        }
    }

    fn stdout(&mut self, bytes: &[u8]) {
        let room = STDOUT_MAX_BYTES.saturating_sub(self.stdout.len());
        if bytes.len() > room {
            self.stdout_overflow = true;
        }
        self.stdout
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
        if self.stderr.len() > STDERR_TAIL_BYTES * 2 {
            let cut = self.stderr.len() - STDERR_TAIL_BYTES;
            self.stderr.drain(..cut);
        }
    }

    fn stderr_tail(&self) -> String {
        let start = self.stderr.len().saturating_sub(STDERR_TAIL_BYTES);
        String::from_utf8_lossy(&self.stderr[start..]).into_owned()
    }
}

/// Force-removes a container; a missing one is fine (a create that failed).
async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(())
        | Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "cannot remove a step container; it is labelled {LABEL_RUN_ID}");
        }
    }
}

#[async_trait]
impl Driver for DockerDriver {
    async fn run(&self, step: &Step, ctx: &StepContext) -> Result<Value, DriverError> {
        // No span under an unsampled attempt (which has none): it would
        // be the root of a trace of its own.
        if !crate::trace::enabled() || tracing::Span::current().is_none() {
            return self.call(step, ctx).await;
        }
        let image = step.docker.as_ref().map(|d| d.image.as_str()).unwrap_or("");
        let span = tracing::info_span!(
            "docker run",
            otel.kind = "client",
            container.image.name = %image,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        super::in_client_span(span, self.call(step, ctx)).await
    }
}

impl DockerDriver {
    /// One attempt, inside the driver call's span when its attempt has a
    /// (sampled) span.
    async fn call(&self, step: &Step, ctx: &StepContext) -> Result<Value, DriverError> {
        let Some(spec) = &step.docker else {
            return Err(DriverError::Permanent(format!(
                "step `{}` has no docker settings",
                step.id
            )));
        };
        let timeout = spec.timeout.map(|t| t.std()).unwrap_or(DEFAULT_TIMEOUT);
        let context_json = serde_json::to_string(ctx)
            .map_err(|e| DriverError::Permanent(format!("cannot encode the step context: {e}")))?;
        self.ensure_image(&spec.image, spec.pull).await?;
        // The container's whole life is a task of its own, so that an
        // attempt dropped at any point (executor shutdown) never leaves a
        // request to the daemon half-done: dropping the attempt only
        // cancels `stop`, and the task kills and removes the container.
        let stop = CancellationToken::new();
        let _stop_on_drop = stop.clone().drop_guard();
        let task = tokio::spawn(self.clone().lifecycle(
            spec.clone(),
            ctx.clone(),
            context_json,
            crate::trace::current_traceparent(),
            timeout,
            stop,
        ));
        let finished = task
            .await
            .map_err(|e| DriverError::Retryable(format!("the docker step's task failed: {e}")))??;
        finish(&spec.image, ctx, finished)
    }
}

impl DockerDriver {
    /// Create, start, feed, collect (until exit, the timeout or `stop`),
    /// then always remove the container.
    async fn lifecycle(
        self,
        spec: DockerStep,
        ctx: StepContext,
        context_json: String,
        traceparent: Option<String>,
        timeout: Duration,
        stop: CancellationToken,
    ) -> Result<Finished, DriverError> {
        // Named before it exists, so that it can be removed even when the
        // create answer is lost.
        let id = format!(
            "stackctl-step-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let began = Instant::now();
        let (mut created, mut started) = (None, None);
        let result = async {
            self.create(&id, &spec, &ctx, &context_json, traceparent.as_deref())
                .await?;
            created = Some(Instant::now());
            if stop.is_cancelled() {
                return Err(cancelled());
            }
            let attached = self.attach_and_start(&id).await?;
            started = Some(Instant::now());
            let kill = || async {
                let options = KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build();
                if let Err(e) = self.docker.kill_container(&id, Some(options)).await {
                    tracing::debug!(container = %id, error = %e, "kill of a step container");
                }
            };
            let collecting = self.collect(&id, attached, &context_json);
            tokio::pin!(collecting);
            let reason = tokio::select! {
                r = &mut collecting => return r,
                () = tokio::time::sleep(timeout) => DriverError::Retryable(format!(
                    "container of {} timed out after {}",
                    spec.image,
                    human(timeout)
                )),
                () = stop.cancelled() => cancelled(),
            };
            kill().await;
            // The attach session ends when the killed container does: read
            // to there, so that removal never races a live session.
            let _ = tokio::time::timeout(DRAIN_AFTER_KILL, &mut collecting).await;
            Err(reason)
        }
        .await;
        let ended = Instant::now();
        remove(&self.docker, &id).await;
        if let (Some(created), Some(started)) = (created, started) {
            let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1000.0;
            tracing::debug!(
                container = %id,
                create_ms = ms(began, created),
                start_ms = ms(created, started),
                run_ms = ms(started, ended),
                remove_ms = ms(ended, Instant::now()),
                "step container timings"
            );
        }
        result
    }
}

fn cancelled() -> DriverError {
    DriverError::Retryable("the attempt was cancelled".to_string())
}

/// Turns a finished container into the attempt's result, logging stderr.
fn finish(image: &str, ctx: &StepContext, finished: Finished) -> Result<Value, DriverError> {
    let Finished { code, collected } = finished;
    let stderr = collected.stderr_tail();
    if !stderr.trim().is_empty() {
        tracing::info!(
            run_id = %ctx.run_id,
            step_id = %ctx.step_id,
            attempt = ctx.attempt,
            exit_code = code,
            stderr = %stderr.trim_end(),
            "step container stderr"
        );
    }
    if code != 0 {
        return Err(DriverError::Retryable(format!(
            "container of {image} exited with code {code}{}",
            stderr_suffix(&stderr)
        )));
    }
    if collected.stdout_overflow {
        return Err(DriverError::Permanent(format!(
            "container of {image} wrote more than {STDOUT_MAX_BYTES} bytes to stdout"
        )));
    }
    parse_output(&String::from_utf8_lossy(&collected.stdout)).map_err(|e| {
        DriverError::Permanent(format!(
            "container of {image} printed no JSON output: {e}{}",
            stderr_suffix(&stderr)
        ))
    })
}

/// The step output in stdout: all of it as JSON, else its last non-empty
/// line; nothing at all is `null`.
pub fn parse_output(stdout: &str) -> Result<Value, String> {
    let trimmed = stdout.trim();
    if trimmed.is_empty() {
        return Ok(Value::Null);
    }
    if let Ok(v) = serde_json::from_str(trimmed) {
        return Ok(v);
    }
    let last = trimmed
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("last line `{}` ({e})", snippet(last, 200)))
}

/// The container's environment: the step's, then the driver's variables
/// (with `TRACEPARENT`, the W3C trace context of the driver call, when the
/// executor traces).
fn environment(
    spec: &DockerStep,
    ctx: &StepContext,
    context_json: &str,
    traceparent: Option<&str>,
) -> Vec<String> {
    let mut env: BTreeMap<String, String> = spec.env.clone();
    if let Some(traceparent) = traceparent {
        env.insert("TRACEPARENT".into(), traceparent.to_string());
    }
    env.insert("STACKCTL_RUN_ID".into(), ctx.run_id.clone());
    env.insert("STACKCTL_FUNCTION_ID".into(), ctx.function_id.clone());
    env.insert("STACKCTL_STEP_ID".into(), ctx.step_id.clone());
    env.insert("STACKCTL_ATTEMPT".into(), ctx.attempt.to_string());
    if context_json.len() <= ENV_CONTEXT_MAX_BYTES {
        env.insert("STACKCTL_STEP_CONTEXT".into(), context_json.to_string());
    } else {
        env.remove("STACKCTL_STEP_CONTEXT");
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `fromImage` and `tag` of a pull: without a tag the Docker API would pull
/// every tag of the repository, so a bare name means `latest`.
fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], Some(&image[name_start + i + 1..])),
        None => (image, Some("latest")),
    }
}

fn pull_error(image: &str, e: DockerError) -> DriverError {
    let message = format!("cannot pull image {image}: {e}");
    let lower = message.to_lowercase();
    let permanent = matches!(
        e,
        DockerError::DockerResponseServerError { status_code, .. } if (400..500).contains(&status_code)
    ) || [
        "not found",
        "manifest unknown",
        "unauthorized",
        "denied",
        "invalid reference",
    ]
    .iter()
    .any(|m| lower.contains(m));
    if permanent {
        DriverError::Permanent(message)
    } else {
        DriverError::Retryable(message)
    }
}

/// A Docker API failure: the daemon answering 5xx, restarting or
/// unreachable may recover, so those are retryable; a 4xx is not.
fn api_error(what: &str, e: DockerError) -> DriverError {
    let message = format!("cannot {what}: {e}");
    match e {
        DockerError::DockerResponseServerError { status_code, .. }
            if (400..500).contains(&status_code) =>
        {
            DriverError::Permanent(message)
        }
        _ => DriverError::Retryable(message),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    // The end of stderr is where the reason usually is.
    let chars = trimmed.chars().count();
    let tail: String = if chars > ERROR_STDERR_CHARS {
        let skip = chars - ERROR_STDERR_CHARS;
        format!("…{}", trimmed.chars().skip(skip).collect::<String>())
    } else {
        trimmed.to_string()
    };
    format!("; stderr: {tail}")
}

fn snippet(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_all_of_stdout_or_its_last_line() {
        assert_eq!(parse_output("").unwrap(), Value::Null);
        assert_eq!(parse_output(" \n").unwrap(), Value::Null);
        assert_eq!(
            parse_output("{\n  \"a\": 1\n}\n").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            parse_output("working...\ndone\n{\"ok\":true}\n\n").unwrap(),
            serde_json::json!({"ok": true})
        );
        let e = parse_output("hello\nworld").unwrap_err();
        assert!(e.contains("`world`"), "{e}");
    }

    #[test]
    fn references_get_a_tag_unless_pinned() {
        assert_eq!(split_reference("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_reference("127.0.0.1:5000/x/bb"),
            ("127.0.0.1:5000/x/bb", Some("latest"))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x/bb:v2"),
            ("127.0.0.1:5000/x/bb", Some("v2"))
        );
        let pinned = "repo/x@sha256:0123";
        assert_eq!(split_reference(pinned), (pinned, None));
    }

    fn ctx() -> StepContext {
        StepContext {
            event: serde_json::json!({"name": "e"}),
            events: None,
            steps: serde_json::Map::new(),
            run_id: "r1".into(),
            function_id: "f".into(),
            step_id: "s".into(),
            attempt: 2,
        }
    }

    #[test]
    fn environment_carries_the_context_and_the_driver_wins() {
        let spec: DockerStep = serde_json::from_value(serde_json::json!({
            "image": "x", "env": {"A": "1", "STACKCTL_RUN_ID": "spoofed"}
        }))
        .unwrap();
        let env = environment(&spec, &ctx(), "{\"small\":true}", None);
        assert!(env.contains(&"A=1".to_string()), "{env:?}");
        assert!(env.contains(&"STACKCTL_RUN_ID=r1".to_string()), "{env:?}");
        assert!(env.contains(&"STACKCTL_ATTEMPT=2".to_string()), "{env:?}");
        assert!(env.contains(&"STACKCTL_STEP_CONTEXT={\"small\":true}".to_string()));
        let big = "x".repeat(ENV_CONTEXT_MAX_BYTES + 1);
        let env = environment(
            &spec,
            &ctx(),
            &big,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert!(env.contains(
            &"TRACEPARENT=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string()
        ));
        assert!(!env.iter().any(|v| v.starts_with("STACKCTL_STEP_CONTEXT=")));
        assert!(env.contains(&"STACKCTL_STEP_ID=s".to_string()));
    }

    #[test]
    fn stderr_keeps_its_tail_and_stdout_is_bounded() {
        let mut c = Collected::default();
        for _ in 0..5 {
            c.stderr(&vec![b'a'; STDERR_TAIL_BYTES]);
        }
        c.stderr(b"the end");
        let tail = c.stderr_tail();
        assert_eq!(tail.len(), STDERR_TAIL_BYTES);
        assert!(tail.ends_with("the end"));
        let suffix = stderr_suffix(&tail);
        assert!(suffix.starts_with("; stderr: …") && suffix.ends_with("the end"));
        c.stdout(&vec![b'1'; STDOUT_MAX_BYTES]);
        assert!(!c.stdout_overflow);
        c.stdout(b"2");
        assert!(c.stdout_overflow);
        assert_eq!(c.stdout.len(), STDOUT_MAX_BYTES);
    }

    #[test]
    fn errors_are_classified() {
        let e = api_error(
            "x",
            DockerError::DockerResponseServerError {
                status_code: 409,
                message: "conflict".into(),
            },
        );
        assert!(!e.is_retryable(), "{e}");
        let e = api_error(
            "x",
            DockerError::DockerResponseServerError {
                status_code: 500,
                message: "boom".into(),
            },
        );
        assert!(e.is_retryable() && e.to_string().contains("boom"), "{e}");
        let e = pull_error(
            "nope",
            DockerError::DockerStreamError {
                error: "manifest unknown".into(),
            },
        );
        assert!(!e.is_retryable(), "{e}");
        let e = pull_error(
            "x",
            DockerError::DockerStreamError {
                error: "connection reset by peer".into(),
            },
        );
        assert!(e.is_retryable(), "{e}");
    }
}
