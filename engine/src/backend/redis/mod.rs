//! The Redis state store (ElastiCache on AWS, any `redis-server` locally):
//! runs, step records, waits, the event index, idempotency claims,
//! concurrency slots, the function registry, and the bodies too large for
//! SQS.
//!
//! One multiplexed connection per handle ([`redis::aio::ConnectionManager`])
//! pipelines concurrent calls and reconnects on its own; while Redis is
//! unreachable calls fail with `Unavailable`. Every call is one round trip:
//! a single command, or a Lua script (`scripts`) where a write must be atomic
//! (scripts are the compare-and-set: write-once outcomes, run creation and
//! ending, single-winner waits, slots). A Redis restart that empties the
//! script cache is handled by the client (`NOSCRIPT` → load → retry).
//!
//! Keys (prefix `stackctl:`): every key of one run carries the run id as
//! its hash tag (`stackctl:run:{ID}`, `stackctl:run:{ID}:steps`,
//! `stackctl:run:{ID}:waits`), so they share one hash slot. Indexes that span
//! runs (`stackctl:runs*`, `stackctl:waits:{NAME}`) and the two wait scripts
//! touch keys of two slots: use Redis with cluster mode disabled (the shape
//! the AWS provider creates).
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

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

pub use state::RedisState;

use super::BackendError;

/// The variable naming a PEM bundle of the CAs that TLS connections trust.
const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects (lazily: an unreachable server at start is retried on use) and
/// checks the server once: a wrong password or URL fails here, an
/// unreachable server only logs.
pub(crate) async fn connect(url: &str) -> Result<ConnectionManager, BackendError> {
    if url.starts_with("rediss://") {
        // Several crates in one binary may enable different rustls crypto
        // providers; redis's TLS config takes the process default. An error
        // means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let roots = match std::env::var_os(SSL_CERT_FILE) {
        Some(path) if url.starts_with("rediss://") => Some(std::fs::read(&path).map_err(|e| {
            BackendError::Other(format!(
                "cannot read the CA bundle {SSL_CERT_FILE}={}: {e}",
                path.to_string_lossy()
            ))
        })?),
        _ => None,
    };
    let client = match roots {
        Some(root_cert) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        ),
        None => redis::Client::open(url),
    }
    .map_err(|e| BackendError::Other(format!("redis URL {}: {e}", redact(url))))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(1));
    let mut conn = ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| BackendError::Other(format!("redis {}: {e}", redact(url))))?;
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
