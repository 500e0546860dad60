//! Where local processes run, for [`crate::engine_config`]: one embedded
//! database in the state directory shared by every process (plus SQS or
//! Redis when the spec asks for them), the spec's event keys and token, the
//! Docker socket, and each process's own loopback port.

use std::path::{Path, PathBuf};

use engine::backend::BackendConfig;
use engine::config::{Config, Role};

use crate::engine_config::{Placement, engine_config};
use crate::spec::{Driver, LoadedSpec, QueueBackend};

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

/// The configuration of a process of `role` whose health port (the event
/// API's own port for the event API) is `port`: [`engine_config`] placed
/// on this machine.
pub fn process_config(loaded: &LoadedSpec, shared: &Shared, role: Role, port: u16) -> Config {
    let functions: Vec<_> = loaded.function_defs().cloned().collect();
    let placement = Placement::Local {
        backend: backend_config(loaded, &shared.db),
        port,
        event_api_port: shared.event_api_port,
        event_keys: shared.event_keys.clone(),
        api_token: shared.api_token.clone(),
        docker_socket: shared.docker_socket.clone(),
    };
    engine_config(&loaded.spec, &functions, role, &placement)
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
        (false, Some(redis_url)) => BackendConfig::EmbeddedRedis {
            path,
            redis_url,
            redis_cluster: false,
        },
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
            redis_cluster: false,
            create_queues: true,
        },
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
    use engine::functions::Duration;

    const SPEC: &str = "stack: demo
provider: local
services:
  event-api: {count: 1, port: 18288}
  runner: {count: 2}
executors: {min: 1, desired: 1, max: 3, drivers: [http], concurrency: 4}
event_keys: {default: k-123}
queues:
  work: {visibility_timeout: 45s}
state: {run_retention: 2d}
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
        assert!(
            c.functions.is_empty(),
            "executors read functions from the state store"
        );
        let runner = process_config(&loaded, &shared(), Role::Runner, 40002);
        let ids: Vec<&str> = runner.functions.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["hello", engine::canary::CANARY_FUNCTION]);
        assert_eq!(runner.runner.run_retention, Duration::from_secs(2 * 86_400));
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
}
