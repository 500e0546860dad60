//! stackctl's integration tests: the binary run as a user would, against
//! real components (moto, the emulated AWS data plane, redis-server,
//! docker-registry, podman). One test binary: one link, one place for the
//! shared helpers.

mod aws_digest;
mod aws_down;
mod aws_emulated;
mod aws_ops;
mod aws_plan;
mod aws_sigkill;
mod aws_up;
mod aws_vpclink;
mod bench;
mod bench_aws;
mod cost;
mod image_cli;
mod local_sqs_redis;
mod local_stack;
mod plan;
mod runs;
mod spec_commands;
mod support;
