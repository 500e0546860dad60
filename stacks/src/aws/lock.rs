//! The per-stack lock, so two `up`/`down`/`scale` never interleave: an SSM
//! parameter `/stackctl/{stack}/lock` holding the owner, the command, a
//! random nonce and an expiry. SSM needs no infrastructure of its own and
//! its `PutParameter(Overwrite=false)` is an atomic create-if-absent.
//!
//! - Acquire: create the parameter; if it exists and has not expired, the
//!   stack is locked ([`AwsError::Locked`]).
//! - Lease: the holder renews the expiry every third of the lease; if the
//!   holder dies, the lock expires by itself.
//! - Break an expired lock: only the contender that creates the marker
//!   `/stackctl/{stack}/lock-break/{nonce}` (again create-if-absent) may
//!   delete that holder's lock, so two contenders cannot both break it.
//!   Markers are left for `down`'s sweep of `/stackctl/{stack}/`.
//! - Release: delete the parameter if it still holds our nonce.
//! - `--force-unlock`: [`force_unlock`] deletes whatever lock is there.
//!
//! As with every lease, safety assumes clocks roughly agree and a holder
//! renews well before expiry; a holder that finds its lock gone or
//! replaced reports [`AwsError::LockLost`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ssm::types::{ParameterType, Tag};
use serde::{Deserialize, Serialize};

use super::context::Aws;
use super::error::{AwsError, Result, Subject};
use crate::graph::TAG_STACK;

/// Default lease: long enough to ride out a slow renewal, short enough
/// that a crashed holder does not block the next command for long.
pub const DEFAULT_TTL: Duration = Duration::from_secs(120);

/// Contenders retry a lock being broken by someone else this many times.
const BREAK_RETRIES: u32 = 10;

/// What the lock parameter holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Who holds it (`user@pid`).
    pub owner: String,
    /// The command (`up`, `down`, `scale`).
    pub command: String,
    /// Random, tells this holding apart from any other.
    pub nonce: String,
    /// Seconds since the epoch when it expires unless renewed.
    pub expires_at: u64,
}

/// The lock parameter's name.
pub fn parameter_name(stack: &str) -> String {
    format!("/stackctl/{stack}/lock")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn subject(stack: &str) -> Subject {
    Subject::other("lock", &parameter_name(stack))
}

async fn read(aws: &Aws, stack: &str) -> Result<Option<LockInfo>> {
    let got = aws
        .ssm()
        .get_parameter()
        .name(parameter_name(stack))
        .send()
        .await
        .map_err(|e| AwsError::api(subject(stack), "GetParameter", e));
    match got {
        Ok(out) => Ok(out
            .parameter
            .and_then(|p| p.value)
            .and_then(|v| serde_json::from_str(&v).ok())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `/stackctl/{stack}/...` with `Overwrite=false`: `Ok(false)` when
/// it exists already.
async fn create(aws: &Aws, stack: &str, name: &str, value: &str) -> Result<bool> {
    let put = aws
        .ssm()
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::String)
        .overwrite(false)
        .tags(
            Tag::builder()
                .key(TAG_STACK)
                .value(stack)
                .build()
                .map_err(|e| AwsError::Config(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| AwsError::api(Subject::other("lock", name), "PutParameter", e));
    match put {
        Ok(_) => Ok(true),
        Err(e) if e.is_already_exists() => Ok(false),
        Err(e) => Err(e),
    }
}

async fn delete(aws: &Aws, stack: &str) -> Result<()> {
    let deleted = aws
        .ssm()
        .delete_parameter()
        .name(parameter_name(stack))
        .send()
        .await
        .map_err(|e| AwsError::api(subject(stack), "DeleteParameter", e));
    match deleted {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

fn nonce() -> String {
    // Uniqueness matters, not secrecy: fall back to time and pid if the
    // random source is unreadable.
    super::secrets::random_token().unwrap_or_else(|_| {
        format!(
            "{:x}-{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            std::process::id()
        )
    })
}

/// A held lock; renewed in the background until [`StackLock::release`].
#[derive(Debug)]
pub struct StackLock {
    aws: Aws,
    stack: String,
    info: LockInfo,
    lost: Arc<Mutex<Option<String>>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl StackLock {
    /// Takes the stack's lock for `command`, or fails with
    /// [`AwsError::Locked`] naming the holder.
    pub async fn acquire(aws: &Aws, stack: &str, command: &str, ttl: Duration) -> Result<Self> {
        let owner = format!(
            "{}@pid{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            std::process::id()
        );
        let mut info = LockInfo {
            owner,
            command: command.to_string(),
            nonce: nonce(),
            expires_at: 0,
        };
        let ttl_secs = ttl.as_secs().max(3);
        for _ in 0..BREAK_RETRIES {
            info.expires_at = now() + ttl_secs;
            let value = serde_json::to_string(&info).expect("lock info serializes");
            if create(aws, stack, &parameter_name(stack), &value).await? {
                let lost = Arc::new(Mutex::new(None));
                let renewer = tokio::spawn(renew(
                    aws.clone(),
                    stack.to_string(),
                    info.clone(),
                    ttl_secs,
                    lost.clone(),
                ));
                return Ok(Self {
                    aws: aws.clone(),
                    stack: stack.to_string(),
                    info,
                    lost,
                    renewer,
                });
            }
            let Some(held) = read(aws, stack).await? else {
                // Released between our create and our read: try again.
                continue;
            };
            if held.expires_at > now() {
                return Err(AwsError::Locked {
                    stack: stack.to_string(),
                    owner: held.owner,
                    command: held.command,
                    expires: format!("{} (epoch seconds)", held.expires_at),
                });
            }
            // Expired: only the contender that wins this holder's marker breaks it.
            let marker = format!("/stackctl/{stack}/lock-break/{}", held.nonce);
            if create(aws, stack, &marker, &info.nonce).await?
                && read(aws, stack)
                    .await?
                    .is_some_and(|h| h.nonce == held.nonce)
            {
                delete(aws, stack).await?;
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Err(AwsError::LockLost {
            stack: stack.to_string(),
            reason: "could not take the lock: other commands kept taking it".into(),
        })
    }

    /// What this lock holds.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Why the lock was lost while held, if it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops renewing and deletes the lock if it is still ours.
    pub async fn release(self) -> Result<()> {
        self.renewer.abort();
        if let Some(reason) = self.lost() {
            return Err(AwsError::LockLost {
                stack: self.stack.clone(),
                reason,
            });
        }
        match read(&self.aws, &self.stack).await? {
            Some(held) if held.nonce == self.info.nonce => delete(&self.aws, &self.stack).await,
            _ => Ok(()),
        }
    }
}

impl Drop for StackLock {
    fn drop(&mut self) {
        // Not released (an error path): the lease runs out by itself.
        self.renewer.abort();
    }
}

async fn renew(
    aws: Aws,
    stack: String,
    mut info: LockInfo,
    ttl: u64,
    lost: Arc<Mutex<Option<String>>>,
) {
    let every = Duration::from_secs((ttl / 3).max(1));
    loop {
        tokio::time::sleep(every).await;
        let set_lost = |reason: String| {
            *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        };
        match read(&aws, &stack).await {
            Ok(Some(held)) if held.nonce == info.nonce => {}
            Ok(Some(held)) => {
                return set_lost(format!("{} took it", held.owner));
            }
            Ok(None) => return set_lost("it was removed (--force-unlock?)".into()),
            // A failed renewal is retried at the next tick; the lease is
            // three ticks long.
            Err(_) => continue,
        }
        info.expires_at = now() + ttl;
        let value = serde_json::to_string(&info).expect("lock info serializes");
        let _ = aws
            .ssm()
            .put_parameter()
            .name(parameter_name(&stack))
            .value(value)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await;
    }
}

/// Deletes the stack's lock whoever holds it (`--force-unlock`); returns
/// what it held.
pub async fn force_unlock(aws: &Aws, stack: &str) -> Result<Option<LockInfo>> {
    let held = read(aws, stack).await?;
    if held.is_some() {
        delete(aws, stack).await?;
    }
    Ok(held)
}

/// The current holder, if any (expired or not).
pub async fn holder(aws: &Aws, stack: &str) -> Result<Option<LockInfo>> {
    read(aws, stack).await
}
