//! The engine's integration tests: the backend conformance suite on each
//! backend, the roles end to end in one process and as processes, crashes,
//! retries, waits, flow control and the Docker driver against podman. One test binary: one
//! link, one place for the shared helpers (`common`).

mod aws_backends;
mod common;
mod conformance_embedded;
mod conformance_sqs_redis;
mod crash;
mod docker;
mod e2e;
mod e2e_processes;
mod event_api;
mod event_api_process;
mod event_id_seed;
mod flow_control;
mod metrics;
mod retries;
mod runs_page;
mod runs_replay;
mod traces;
mod waits;
