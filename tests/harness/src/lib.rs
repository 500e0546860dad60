//! Starts real components for tests on free loopback ports: the moto server
//! (AWS), `redis-server`, Debian's `docker-registry` and podman's Docker API;
//! an emulated AWS whose ECS services, Auto Scaling instances and ElastiCache
//! groups run as real containers and processes ([`AwsEmulator`]);
//! test certificates from a CA of their own ([`TestCertificate`]);
//! Inngest's Python SDK in its venv ([`inngest_python`]);
//! headless Chromium for tests of web pages ([`chromium`]);
//! an OTLP/HTTP trace receiver ([`OtlpReceiver`]);
//! and a fault-injecting proxy that answers a seeded share of AWS calls with
//! throttling errors and 5xx.
//!
//! Each component is a struct whose `start()` spawns the process with its
//! output in a log file under a private temp dir, polls until it answers (with
//! a deadline, never a fixed sleep) and returns its address. Dropping it stops
//! the process and removes the dir. A component that cannot be found or does
//! not come up is an `Err` naming the binary, its package and the README's
//! test command; tests `expect()` it so they fail, never skip.
//!
//! The code is blocking std on purpose, so sync and tokio tests alike can use
//! it (from async code, start components before entering the runtime or in
//! `spawn_blocking`: a start blocks for up to a second).
//!
//! Keep components in test-local variables, not in `static`s: statics are
//! never dropped, so their processes would outlive the test binary.

mod aws_emulator;
mod chromium;
mod counts;
mod error;
mod fault_proxy;
pub mod http;
mod inngest;
mod moto;
mod otlp;
mod podman;
mod process;
mod redis;
mod registry;
mod tls;

pub use aws_emulator::{AwsEmulator, AwsEmulatorBuilder};
pub use chromium::{Chromium, chromium};
pub use counts::{counts_since, prometheus_sum};
pub use error::{Error, Result, TEST_COMMAND};
pub use fault_proxy::{FaultProxy, FaultStats};
pub use inngest::{inngest_python, inngest_send_retry_script};
pub use moto::{
    ACCESS_KEY_ID, Moto, MotoBuilder, REGION, SECRET_ACCESS_KEY, venv_python as moto_python,
};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use podman::Podman;
pub use process::{free_port, repo_root};
pub use redis::{RedisBuilder, RedisServer, Reply};
pub use registry::{Registry, RegistryAuth, RegistryBuilder};
pub use tls::TestCertificate;
