//! The Redis state store (ElastiCache on AWS, any `redis-server` locally):
//! runs, step records, waits, the event index, idempotency claims,
//! concurrency slots, the function registry, and the bodies too large for
//! SQS.
//!
//! One multiplexed connection per handle pipelines concurrent calls and
//! reconnects on its own ([`redis::aio::ConnectionManager`]; on a Redis
//! Cluster such as MemoryDB, the cluster client, which follows the slots and
//! a failover); while Redis is unreachable calls fail with `Unavailable`.
//! Every call is one round trip: a single command, or a Lua script
//! (`scripts`) where a write must be atomic (scripts are the compare-and-set:
//! write-once outcomes, run creation and ending, single-winner waits, slots).
//! A Redis restart that empties the script cache is handled by the client
//! (`NOSCRIPT` → load → retry).
//!
//! Keys (prefix `stackctl:`): every key of one run carries the run id as
//! its hash tag (`stackctl:run:{ID}`, `stackctl:run:{ID}:steps`,
//! `stackctl:run:{ID}:waits`), so they share one hash slot. Indexes that span
//! runs (`stackctl:runs*`, `stackctl:waits:{NAME}`) and the two wait scripts
//! touch keys of two slots, which Redis allows with cluster mode disabled.
//! On a cluster the prefix is `{stackctl}:`: one slot holds every key, so
//! one shard serves the store (MemoryDB's shards add replicas and
//! durability here, not capacity).
//!
//! URLs: `redis://[:PASSWORD@]HOST:PORT[/DB]`; `rediss://` for TLS (the
//! ElastiCache auth token goes in PASSWORD, URL-encoded); a `#insecure`
//! fragment skips certificate verification (self-signed local servers only).
//! TLS trusts the Mozilla roots built in, or, when `SSL_CERT_FILE` names a PEM
//! bundle (OpenSSL's convention), exactly the certificates in it: a Redis
//! behind a private CA.

mod keys;
mod scripts;
mod state;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

pub use state::RedisState;

use super::BackendError;

/// The variable naming a PEM bundle of the CAs that TLS connections trust.
const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one Redis server or to a Redis Cluster. Cloning shares it.
#[derive(Clone)]
pub(crate) enum Conn {
    /// Cluster mode disabled (ElastiCache's replication group, any
    /// `redis-server`).
    Single(ConnectionManager),
    /// A Redis Cluster (MemoryDB): commands go to the node owning their slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Connects (lazily: an unreachable server at start is retried on use) and
/// checks the server once: a wrong password or URL fails here, an
/// unreachable server only logs. `cluster` speaks the Redis Cluster protocol
/// from `url` as the first node (MemoryDB's cluster endpoint).
pub(crate) async fn connect(url: &str, cluster: bool) -> Result<Conn, BackendError> {
    let tls = url.starts_with("rediss://");
    if tls {
        // Several crates in one binary may enable different rustls crypto
        // providers; redis's TLS config takes the process default. An error
        // means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let certificates = match std::env::var_os(SSL_CERT_FILE) {
        Some(path) if tls => Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&path).map_err(|e| {
                BackendError::Other(format!(
                    "cannot read the CA bundle {SSL_CERT_FILE}={}: {e}",
                    path.to_string_lossy()
                ))
            })?),
        }),
        _ => None,
    };
    let bad_url = |e: RedisError| BackendError::Other(format!("redis URL {}: {e}", redact(url)));
    let mut conn = if cluster {
        let mut builder = ClusterClientBuilder::new([url])
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(3)
            .max_retry_wait(1_000);
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates);
        }
        let client = builder.build().map_err(bad_url)?;
        Conn::Cluster(client.get_pending_async_connection_with_config(ClusterConfig::new()))
    } else {
        let client = match certificates {
            Some(certificates) => redis::Client::build_with_tls(url, certificates),
            None => redis::Client::open(url),
        }
        .map_err(bad_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        Conn::Single(
            ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| BackendError::Other(format!("redis {}: {e}", redact(url))))?,
        )
    };
    match redis::cmd("PING").query_async::<String>(&mut conn).await {
        Ok(_) => {}
        Err(e) => match classify(e) {
            BackendError::Unavailable(reason) => {
                tracing::warn!(url = %redact(url), "redis is not reachable yet: {reason}");
            }
            other => {
                return Err(BackendError::Other(format!(
                    "redis {}: {other}",
                    redact(url)
                )));
            }
        },
    }
    Ok(conn)
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Connection trouble, timeouts, a server loading its data or a replica
/// during failover are transient; the rest is the server's own message.
pub(crate) fn classify(e: RedisError) -> BackendError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
        || e.code().is_some_and(|c| c == "OOM" || c == "BUSY");
    if transient {
        BackendError::Unavailable(format!("redis: {e}"))
    } else {
        BackendError::Other(format!("redis: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("rediss://:s3cret@cache.example:6379/0"),
            "rediss://***@cache.example:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    }
}
