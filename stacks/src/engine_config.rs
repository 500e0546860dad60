//! The engine's typed configuration ([`engine::config::Config`]) of every
//! process of a stack, on either provider, from one function: the spec, the
//! role and where the process runs ([`Placement`]). The local provider
//! writes the result to each process's config file; the AWS graph renders it
//! into the containers' `STACKCTL_ENGINE_CONFIG`. What both share (queue
//! settings, functions with the built-in canary, executor drivers and
//! concurrency) is decided here once, so the providers cannot drift apart.

use std::net::SocketAddr;
use std::path::PathBuf;

use engine::backend::BackendConfig;
use engine::canary::{CANARY_FUNCTION, canary_function};
use engine::config::{Config, DockerDriverConfig, QueueConfig, QueuesConfig, Role};
use engine::functions::FunctionDef;

use crate::spec::{Driver, Queue, Spec};

/// Where a process runs, and what that decides about its configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// A process on this machine: listens on loopback, gets the event keys
    /// and the runs-API token in its configuration.
    Local {
        /// The backends (the embedded database and what the spec adds).
        backend: BackendConfig,
        /// The process's own port (the event API's for the event API).
        port: u16,
        /// The stack's event API port (every role gets it).
        event_api_port: u16,
        /// Accepted event keys.
        event_keys: Vec<String>,
        /// The runs-API token.
        api_token: String,
        /// The Docker Engine socket for the docker driver, if there is one.
        docker_socket: Option<PathBuf>,
    },
    /// A container in AWS: listens on every interface, reaches SQS and
    /// Redis by URL (placeholders the AWS provider resolves while applying),
    /// and gets its secrets from SSM through its environment, never here.
    Aws {
        /// The events queue URL.
        events_queue: String,
        /// The work queue URL.
        work_queue: String,
        /// The Redis URL (without the auth token).
        redis_url: String,
        /// Whether it is a Redis Cluster (MemoryDB).
        redis_cluster: bool,
        /// The role's own port.
        port: u16,
        /// The Docker Engine socket on the executor hosts.
        docker_socket: PathBuf,
    },
}

/// The configuration of one process of `role`. `functions` are the spec's
/// (inline and from files); the canary is added. Executors get no functions:
/// the event API and the runner register them when they start, and every
/// role reads them from the state store, so that executors (whose boot
/// configuration travels in EC2 user data, at most 16 KB) run whatever
/// the current deployment registered.
pub fn engine_config(
    spec: &Spec,
    functions: &[FunctionDef],
    role: Role,
    placement: &Placement,
) -> Config {
    let (backend, bind_ip, port) = match placement {
        Placement::Local { backend, port, .. } => (backend.clone(), [127, 0, 0, 1], *port),
        Placement::Aws {
            events_queue,
            work_queue,
            redis_url,
            redis_cluster,
            port,
            ..
        } => (
            BackendConfig::SqsRedis {
                events_queue: events_queue.clone(),
                work_queue: work_queue.clone(),
                redis_url: redis_url.clone(),
                redis_cluster: *redis_cluster,
                create_queues: false,
            },
            [0, 0, 0, 0],
            *port,
        ),
    };
    let bind = |p: u16| SocketAddr::from((bind_ip, p));
    let mut c = Config::new(backend);
    c.roles = vec![role];
    c.queues = queues(spec);
    // Settings of one role go only into that role's configuration, so that
    // changing them restarts (or rolls) only its processes.
    match role {
        Role::EventApi => c.event_api.bind = bind(port),
        Role::Runner => {
            c.runner.bind = Some(bind(port));
            c.runner.run_retention = spec.state.run_retention;
        }
        Role::Executor => {
            c.executor.bind = Some(bind(port));
            c.executor.concurrency = usize::try_from(spec.executors.concurrency)
                .unwrap_or(1)
                .max(1);
            let socket = match placement {
                Placement::Local { docker_socket, .. } => docker_socket.clone(),
                Placement::Aws { docker_socket, .. } => Some(docker_socket.clone()),
            };
            if spec.executors.drivers.contains(&Driver::Docker) {
                c.executor.drivers.docker = socket.map(|socket| DockerDriverConfig {
                    socket,
                    network: None,
                });
            }
        }
        Role::All => {}
    }
    if role != Role::Executor {
        c.functions = functions
            .iter()
            .filter(|f| f.id != CANARY_FUNCTION)
            .cloned()
            .collect();
        c.functions.push(canary_function());
    }
    if let Placement::Local {
        event_api_port,
        event_keys,
        api_token,
        ..
    } = placement
    {
        if role != Role::EventApi {
            c.event_api.bind = bind(*event_api_port);
        }
        c.event_keys.clone_from(event_keys);
        c.api_token = Some(api_token.clone());
    }
    c
}

/// The engine's settings of the spec's two queues.
pub fn queues(spec: &Spec) -> QueuesConfig {
    QueuesConfig {
        events: queue(&spec.queues.events),
        work: queue(&spec.queues.work),
    }
}

fn queue(q: &Queue) -> QueueConfig {
    QueueConfig {
        visibility_timeout: q.visibility_timeout,
        max_receives: q.max_receives,
        retention: q.retention,
    }
}
