//! The engine configuration each local process gets, derived from the spec:
//! one embedded database in the state directory shared by every process,
//! the spec's event keys, token, queue settings and functions (plus the
//! built-in canary function), and the process's own listen address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use engine::backend::BackendConfig;
use engine::config::{Config, DockerDriverConfig, QueueConfig, Role};
use engine::functions::{Duration, FunctionDef, Step, Trigger};

use crate::spec::{Driver, LoadedSpec, Queue, QueueBackend};

/// The canary function `up` runs to verify the stack end to end.
pub const CANARY_FUNCTION: &str = "stackctl-canary";
/// The event that triggers it.
pub const CANARY_EVENT: &str = "stackctl/canary";

/// The canary: one short `sleep` step, so a run goes through the runner,
/// the delayed work queue and an executor without any outside service.
pub fn canary_function() -> FunctionDef {
    FunctionDef {
        id: CANARY_FUNCTION.into(),
        name: Some("stackctl deployment check".into()),
        triggers: vec![Trigger::Event {
            event: CANARY_EVENT.into(),
            expression: None,
        }],
        retries: None,
        concurrency: None,
        cancel_on: Vec::new(),
        steps: vec![Step {
            id: "pause".into(),
            name: Some("short durable sleep".into()),
            after: Vec::new(),
            condition: None,
            retries: None,
            http: None,
            docker: None,
            sleep: Some(Duration::from_millis(100)),
            wait_for_event: None,
        }],
    }
}

/// What the configuration of every process of a stack shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The embedded database.
    pub db: PathBuf,
    /// Accepted event keys.
    pub event_keys: Vec<String>,
    /// The runs API token.
    pub api_token: String,
    /// The first event API's port.
    pub event_api_port: u16,
    /// The Docker Engine socket, when the spec wants the docker driver and one exists.
    pub docker_socket: Option<PathBuf>,
}

/// The configuration of process `index` of `role`, whose health port
/// (the event API's own port for the event API) is `port`.
pub fn process_config(loaded: &LoadedSpec, shared: &Shared, role: Role, port: u16) -> Config {
    let spec = &loaded.spec;
    let mut c = Config::new(backend_config(loaded, &shared.db));
    c.roles = vec![role];
    let local = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    c.event_api.bind = local(if role == Role::EventApi {
        port
    } else {
        shared.event_api_port
    });
    // Settings of one role go only into that role's configuration, so that
    // changing them restarts only its processes.
    match role {
        Role::Runner => c.runner.bind = Some(local(port)),
        Role::Executor => {
            c.executor.bind = Some(local(port));
            c.executor.concurrency = usize::try_from(spec.executors.concurrency)
                .unwrap_or(1)
                .max(1);
            c.executor.drivers.docker =
                shared
                    .docker_socket
                    .clone()
                    .map(|socket| DockerDriverConfig {
                        socket,
                        network: None,
                    });
        }
        Role::EventApi | Role::All => {}
    }
    c.event_keys = shared.event_keys.clone();
    c.api_token = Some(shared.api_token.clone());
    c.queues.events = queue(&spec.queues.events);
    c.queues.work = queue(&spec.queues.work);
    c.functions = loaded.function_defs().cloned().collect();
    c.functions.retain(|f| f.id != CANARY_FUNCTION);
    c.functions.push(canary_function());
    c
}

/// The engine backends the spec asks for: SQS queues with `queues.backend:
/// sqs` (named `STACK-events`/`STACK-work`, created by the engine, endpoint
/// from `AWS_ENDPOINT_URL`), Redis state with `state.url`, and the embedded
/// database `db` for whatever is left.
pub fn backend_config(loaded: &LoadedSpec, db: &Path) -> BackendConfig {
    let spec = &loaded.spec;
    let (events_queue, work_queue) = (
        format!("{}-events", spec.stack),
        format!("{}-work", spec.stack),
    );
    let path = db.to_path_buf();
    match (
        spec.queues.backend == Some(QueueBackend::Sqs),
        spec.state.url.clone(),
    ) {
        (false, None) => BackendConfig::Embedded { path },
        (false, Some(redis_url)) => BackendConfig::EmbeddedRedis { path, redis_url },
        (true, None) => BackendConfig::SqsEmbedded {
            events_queue,
            work_queue,
            path,
            create_queues: true,
        },
        (true, Some(redis_url)) => BackendConfig::SqsRedis {
            events_queue,
            work_queue,
            redis_url,
            create_queues: true,
        },
    }
}

fn queue(q: &Queue) -> QueueConfig {
    QueueConfig {
        visibility_timeout: q.visibility_timeout,
        max_receives: q.max_receives,
        retention: q.retention,
    }
}

/// The Docker Engine socket to hand the executors, if the spec lists the
/// docker driver: `DOCKER_HOST` when it is a `unix://` socket, else
/// `/var/run/docker.sock` when it exists.
pub fn docker_socket(loaded: &LoadedSpec, docker_host: Option<String>) -> Option<PathBuf> {
    if !loaded.spec.executors.drivers.contains(&Driver::Docker) {
        return None;
    }
    if let Some(host) = docker_host {
        return host.strip_prefix("unix://").map(PathBuf::from);
    }
    let default = Path::new("/var/run/docker.sock");
    default.exists().then(|| default.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "stack: demo
provider: local
services:
  event-api: {count: 1, port: 18288}
  runner: {count: 2}
executors: {min: 1, desired: 1, max: 3, drivers: [http], concurrency: 4}
event_keys: {default: k-123}
queues:
  work: {visibility_timeout: 45s}
functions:
  inline:
    - id: hello
      triggers: [{event: demo/hello}]
      steps: [{id: wait, sleep: 1s}]
";

    fn shared() -> Shared {
        Shared {
            db: "/s/engine.db".into(),
            event_keys: vec!["k-123".into()],
            api_token: "tok".into(),
            event_api_port: 18288,
            docker_socket: None,
        }
    }

    #[test]
    fn each_role_gets_its_bind_and_everything_else_from_the_spec() {
        let loaded = crate::spec::load_str(Path::new("/x/local.yaml"), SPEC, &|_| None).unwrap();
        let c = process_config(&loaded, &shared(), Role::Executor, 40001);
        assert_eq!(c.roles, vec![Role::Executor]);
        assert_eq!(c.executor.bind, Some("127.0.0.1:40001".parse().unwrap()));
        assert_eq!(c.executor.concurrency, 4);
        assert_eq!(c.queues.work.visibility_timeout, Duration::from_secs(45));
        assert_eq!(c.api_token.as_deref(), Some("tok"));
        let ids: Vec<&str> = c.functions.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["hello", CANARY_FUNCTION]);
        let api = process_config(&loaded, &shared(), Role::EventApi, 18289);
        assert_eq!(api.event_api.bind, "127.0.0.1:18289".parse().unwrap());
        assert_eq!(
            api.executor,
            Config::new(api.backend.clone()).executor,
            "executor settings stay out"
        );
        // The document must be one the engine itself accepts.
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(Config::from_json(&text, "test").unwrap(), c);
        assert_eq!(
            docker_socket(&loaded, Some("unix:///x.sock".into())),
            None,
            "http-only spec"
        );
    }

    #[test]
    fn canary_is_a_valid_function() {
        let problems = engine::functions::validate_function(&canary_function());
        assert!(problems.is_empty(), "{problems:?}");
    }
}
