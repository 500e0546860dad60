//! The per-stack lock, so two `up`/`down`/`scale` never interleave: an SSM
//! parameter `/stackctl/{stack}/lock` holding the owner, the command, a
//! random nonce and an expiry. SSM needs no infrastructure of its own and
//! its `PutParameter(Overwrite=false)` is an atomic create-if-absent.
//!
//! - Acquire: create the parameter; if it exists and has not expired, the
//!   stack is locked ([`AwsError::Locked`]). The lock parameter is never
//!   written again: nothing can overwrite another holder's lock.
//! - Lease: the holder renews its expiry every third of the lease in a
//!   parameter of its own, `/stackctl/{stack}/lock-lease/{nonce}`, which
//!   only it writes, after checking that the lock still holds its nonce; if
//!   the holder dies, the lock expires by itself.
//! - Work under the lock ([`StackLock::hold`]) checks [`check_held`] before
//!   each AWS write: once the lock is lost, or the holder's lease may have
//!   run out unrenewed (a stalled process), it stops before its next write.
//! - Break an expired lock: only the contender that creates the marker
//!   `/stackctl/{stack}/lock-break/{nonce}` (again create-if-absent) may
//!   delete that holder's lock, so two contenders cannot both break it.
//!   Markers are left for `down`'s sweep of `/stackctl/{stack}/`.
//! - Release: delete the parameter if it still holds our nonce, and our
//!   lease parameter.
//! - `--force-unlock`: [`force_unlock`] deletes an expired lock, and a live
//!   one (renewed within its lease) only when told its holder is dead.
//!
//! As with every lease, safety assumes clocks roughly agree and a holder
//! renews well before expiry; a holder that finds its lock gone or
//! replaced reports [`AwsError::LockLost`].

use std::sync::atomic::{AtomicU64, Ordering};
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
/// Work under the lock stops this long before the lease would run out
/// unrenewed, so its last write cannot land after a contender broke it.
const LEASE_MARGIN: u64 = 10;

/// What the lock parameter holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Who holds it (`user@pid`).
    pub owner: String,
    /// The command (`up`, `down`, `scale`).
    pub command: String,
    /// Random, tells this holding apart from any other.
    pub nonce: String,
    /// Seconds since the epoch when it expires unless renewed (as the
    /// holder's lease last said, when read through [`holder`]).
    pub expires_at: u64,
    /// The lease in seconds: the holder renews every third of it.
    #[serde(default = "default_ttl")]
    pub ttl: u64,
}

fn default_ttl() -> u64 {
    DEFAULT_TTL.as_secs()
}

impl LockInfo {
    /// Seconds since the holder last renewed (or took) the lock.
    pub fn renewed_secs_ago(&self) -> u64 {
        now().saturating_sub(self.expires_at.saturating_sub(self.ttl))
    }

    /// Renewed within two of its renewal intervals: the holder looks alive
    /// (a dead one misses its renewals).
    pub fn looks_alive(&self) -> bool {
        self.expires_at > now() && self.renewed_secs_ago() < 2 * (self.ttl / 3).max(1)
    }
}

/// What `--force-unlock` may break.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForceUnlock {
    /// Nothing: a lock is waited for, and broken only once it expired.
    #[default]
    No,
    /// A lock whose holder missed its renewals (it looks dead).
    Stale,
    /// Any lock, even one its holder still renews (`--yes`: the caller
    /// knows the holder is dead).
    Any,
}

/// The lock parameter's name.
pub fn parameter_name(stack: &str) -> String {
    format!("/stackctl/{stack}/lock")
}

/// The lease parameter of the holding `nonce`: its expiry, renewed.
fn lease_name(stack: &str, nonce: &str) -> String {
    format!("/stackctl/{stack}/lock-lease/{nonce}")
}

/// The lock, with its expiry as the holder's lease says (the lock's own
/// when the holder never renewed).
async fn read_with_lease(aws: &Aws, stack: &str) -> Result<Option<LockInfo>> {
    let Some(mut held) = read(aws, stack).await? else {
        return Ok(None);
    };
    let lease = aws
        .ssm()
        .get_parameter()
        .name(lease_name(stack, &held.nonce))
        .send()
        .await
        .map_err(|e| AwsError::api(subject(stack), "GetParameter", e));
    match lease {
        Ok(out) => {
            if let Some(at) = out
                .parameter
                .and_then(|p| p.value)
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                held.expires_at = held.expires_at.max(at);
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    Ok(Some(held))
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
    delete_named(aws, &parameter_name(stack)).await
}

async fn delete_named(aws: &Aws, name: &str) -> Result<()> {
    let deleted = aws
        .ssm()
        .delete_parameter()
        .name(name)
        .send()
        .await
        .map_err(|e| AwsError::api(Subject::other("lock", name), "DeleteParameter", e));
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

/// Whether a holding still holds: lost (taken or removed), or its lease
/// renewed until when.
#[derive(Debug, Clone)]
struct Lease {
    stack: String,
    parameters: [String; 2],
    lost: Arc<Mutex<Option<String>>>,
    /// Seconds since the epoch until which the lease is known renewed.
    valid_until: Arc<AtomicU64>,
}

impl Lease {
    fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn check(&self) -> Result<()> {
        let reason = self.lost().or_else(|| {
            (now() + LEASE_MARGIN >= self.valid_until.load(Ordering::SeqCst))
                .then(|| "its lease ran out before it could be renewed".to_string())
        });
        match reason {
            Some(reason) => Err(AwsError::LockLost {
                stack: self.stack.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

tokio::task_local! {
    static HELD: Lease;
}

/// Fails with [`AwsError::LockLost`] when the stack lock this task works
/// under ([`StackLock::hold`]) was lost or its lease may have run out:
/// called before each AWS write of an apply, a `down` or a `scale`. `Ok`
/// outside a lock.
pub fn check_held() -> Result<()> {
    HELD.try_with(Lease::check).unwrap_or(Ok(()))
}

/// The parameters of the lock this task works under (the lock and its
/// lease), which `down` must not delete while it holds them.
pub fn held_parameters() -> Vec<String> {
    HELD.try_with(|l| l.parameters.to_vec()).unwrap_or_default()
}

/// A held lock; renewed in the background until [`StackLock::release`].
#[derive(Debug)]
pub struct StackLock {
    aws: Aws,
    stack: String,
    info: LockInfo,
    lease: Lease,
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
            ttl: ttl.as_secs().max(3),
        };
        let ttl_secs = ttl.as_secs().max(3);
        for _ in 0..BREAK_RETRIES {
            info.expires_at = now() + ttl_secs;
            let value = serde_json::to_string(&info).expect("lock info serializes");
            if create(aws, stack, &parameter_name(stack), &value).await? {
                let lease = Lease {
                    stack: stack.to_string(),
                    parameters: [parameter_name(stack), lease_name(stack, &info.nonce)],
                    lost: Arc::new(Mutex::new(None)),
                    valid_until: Arc::new(AtomicU64::new(info.expires_at)),
                };
                // Tagged at creation (SSM takes no tags with Overwrite),
                // so that `down`'s sweep knows it for the stack's.
                let lease_value = info.expires_at.to_string();
                create(aws, stack, &lease.parameters[1], &lease_value).await?;
                let renewer =
                    tokio::spawn(renew(aws.clone(), info.clone(), ttl_secs, lease.clone()));
                return Ok(Self {
                    aws: aws.clone(),
                    stack: stack.to_string(),
                    info,
                    lease,
                    renewer,
                });
            }
            let Some(held) = read_with_lease(aws, stack).await? else {
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
                delete_named(aws, &lease_name(stack, &held.nonce)).await?;
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
        self.lease.lost()
    }

    /// Runs `work` as this lock's holder: its [`check_held`] calls fail
    /// once the lock is lost.
    pub async fn hold<F: std::future::Future>(&self, work: F) -> F::Output {
        HELD.scope(self.lease.clone(), work).await
    }

    /// Stops renewing and deletes the lock if it is still ours, and our lease.
    pub async fn release(self) -> Result<()> {
        self.renewer.abort();
        if let Some(reason) = self.lost() {
            return Err(AwsError::LockLost {
                stack: self.stack.clone(),
                reason,
            });
        }
        if let Some(held) = read(&self.aws, &self.stack).await?
            && held.nonce == self.info.nonce
        {
            delete(&self.aws, &self.stack).await?;
        }
        delete_named(&self.aws, &self.lease.parameters[1]).await
    }
}

impl Drop for StackLock {
    fn drop(&mut self) {
        // Not released (an error path): the lease runs out by itself.
        self.renewer.abort();
    }
}

async fn renew(aws: Aws, info: LockInfo, ttl: u64, lease: Lease) {
    let every = Duration::from_secs((ttl / 3).max(1));
    let stack = lease.stack.clone();
    loop {
        tokio::time::sleep(every).await;
        let set_lost = |reason: String| {
            *lease.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
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
        let until = now() + ttl;
        // Only this holder writes its lease parameter: a renewal cannot
        // overwrite anyone else's lock.
        let renewed = aws
            .ssm()
            .put_parameter()
            .name(&lease.parameters[1])
            .value(until.to_string())
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await;
        if renewed.is_ok() {
            lease.valid_until.store(until, Ordering::SeqCst);
        }
    }
}

/// Deletes the stack's lock (`--force-unlock`) and returns what it held.
/// A lock whose holder keeps renewing it looks alive: it is deleted only
/// with [`ForceUnlock::Any`], otherwise [`AwsError::LockAlive`].
pub async fn force_unlock(aws: &Aws, stack: &str, what: ForceUnlock) -> Result<Option<LockInfo>> {
    if what == ForceUnlock::No {
        return Ok(None);
    }
    let Some(held) = read_with_lease(aws, stack).await? else {
        return Ok(None);
    };
    if what == ForceUnlock::Stale && held.looks_alive() {
        return Err(AwsError::LockAlive {
            stack: stack.to_string(),
            owner: held.owner.clone(),
            command: held.command.clone(),
            renewed_secs_ago: held.renewed_secs_ago(),
            every: (held.ttl / 3).max(1),
        });
    }
    delete(aws, stack).await?;
    delete_named(aws, &lease_name(stack, &held.nonce)).await?;
    Ok(Some(held))
}

/// The current holder, if any (expired or not), with its lease's expiry.
pub async fn holder(aws: &Aws, stack: &str) -> Result<Option<LockInfo>> {
    read_with_lease(aws, stack).await
}
