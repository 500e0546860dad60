//! The stack's secrets kept as SSM SecureString parameters under
//! `/stackctl/{stack}/`: the ones the engine reads at start (the event keys,
//! the runs-API token, the Redis auth token; the graph's task definitions
//! name them in `secrets`, the executor user data fetches them) and the
//! Redis auth token ElastiCache (or the MemoryDB user) is created with.
//!
//! A secret the spec holds (the event keys, an `api_token`) is written with
//! its value, only while applying and only when the stored value differs
//! (`Overwrite=true`), so a second `up` writes nothing. A generated one (the
//! Redis auth token, the runs-API token when the spec sets none) is created
//! once with a conditional write (`Overwrite=false`), so two concurrent
//! first runs agree on one value. New parameters are tagged with the stack
//! so `down` finds them.
//!
//! Besides values, placeholders can ask for a secret's parameter version
//! (`${secret:event_keys@version}`): it changes exactly when the stored
//! value does and tells nothing about it, so an engine environment holding
//! it changes (and the services roll) when a secret does, although the
//! task definitions' `secrets` only name the parameters.

use std::collections::BTreeMap;
use std::io::Read as _;

use aws_sdk_ssm::types::{ParameterType, Tag};

use super::context::Aws;
use super::error::{AwsError, Result, Subject};
use super::resolve::{Inputs, Secrets};
use crate::graph::placeholder::{self, Placeholder};
use crate::graph::{Graph, TAG_STACK};

/// The SSM parameter of a stored secret.
pub fn parameter_name(stack: &str, secret: &str) -> String {
    crate::graph::secret_parameter_name(stack, secret)
}

/// Where the value of a secret kept in SSM comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The spec: stored, and overwritten when the spec changes.
    Spec(String),
    /// Generated once by the provider, then kept.
    Generated,
}

/// Where a secret kept in SSM comes from; `None`: not kept in SSM (an
/// external Redis URL, resolved into the configuration from the spec).
fn source(name: &str, inputs: &Inputs) -> Option<Source> {
    match name {
        "event_keys" => Some(Source::Spec(inputs.event_keys.clone())),
        "api_token" => Some(match &inputs.api_token {
            Some(token) => Source::Spec(token.clone()),
            None => Source::Generated,
        }),
        "redis_auth_token" => Some(Source::Generated),
        _ => None,
    }
}

/// The secret names the graph's placeholders use (`name` or `name@version`).
fn used(graph: &Graph) -> Vec<String> {
    let mut names: Vec<String> = graph
        .resources()
        .iter()
        .flat_map(|r| placeholder::in_value(&r.attributes.to_value()))
        .filter_map(|p| match p {
            Placeholder::Secret(name) => Some(name),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A secret's parameter as stored, or as it will be once applied.
#[derive(Debug, Clone, Default)]
struct Stored {
    /// The value; `None`: to be generated.
    value: Option<String>,
    /// The parameter version; `None`: it will change when applied.
    version: Option<i64>,
}

/// The secrets (and secret versions) the graph's placeholders use, from the
/// spec and from SSM. `create` (apply) stores the spec's values that differ
/// from SSM's and generates the missing ones; otherwise (plan) nothing is
/// written and what applying would change stays `None` (unknown).
///
/// `redis_group` names what holds the Redis auth token
/// ([`redis_requiring_token`]): its parameter must then exist (a new one
/// would not open it).
pub(crate) async fn load(
    aws: &Aws,
    graph: &Graph,
    inputs: &Inputs,
    create: bool,
    redis_group: Option<&str>,
) -> Result<Secrets> {
    let used = used(graph);
    let mut stored: BTreeMap<&str, Stored> = BTreeMap::new();
    for name in &used {
        let base = placeholder::version_of(name).unwrap_or(name);
        if stored.contains_key(base) {
            continue;
        }
        if let Some(src) = source(base, inputs) {
            let found = sync(aws, &inputs.stack, base, &src, create, redis_group).await?;
            stored.insert(base, found);
        }
    }
    let mut secrets = Secrets::new();
    for name in &used {
        let value = if let Some(base) = placeholder::version_of(name) {
            stored
                .get(base)
                .and_then(|s| s.version)
                .map(|v| v.to_string())
        } else if let Some(s) = stored.get(name.as_str()) {
            s.value.clone()
        } else if name == "state_url" {
            inputs.state_url.clone()
        } else {
            None
        };
        secrets.insert(name.clone(), value);
    }
    Ok(secrets)
}

/// What holds the stack's Redis auth token in `observed`, if anything: the
/// live ElastiCache group when it requires one, or the MemoryDB user with a
/// password (`ElastiCache group s-redis`, `MemoryDB user s-engine`).
pub(crate) fn redis_requiring_token(
    observed: &BTreeMap<crate::graph::LogicalId, super::kinds::Observed>,
) -> Option<String> {
    use crate::graph::{Attributes, LogicalId};
    let holder = |id: &str| observed.get(&LogicalId::new(id));
    if let Some(o) = holder("elasticache.redis")
        && matches!(&o.resource.attributes, Attributes::ElastiCacheReplicationGroup(g) if g.auth_token.is_some())
    {
        return Some(format!("ElastiCache group {}", o.resource.name));
    }
    holder("memorydb.user")
        .filter(|o| matches!(&o.resource.attributes, Attributes::MemoryDbUser(u) if !u.password.is_empty()))
        .map(|o| format!("MemoryDB user {}", o.resource.name))
}

/// The parameter's value and version; `None` when it does not exist.
async fn read(aws: &Aws, parameter: &str) -> Result<Option<Stored>> {
    let got = aws
        .ssm()
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| AwsError::api(Subject::other("secret", parameter), "GetParameter", e));
    match got {
        Ok(out) => Ok(out.parameter.map(|p| Stored {
            value: p.value,
            version: Some(p.version),
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Brings one secret's parameter to its source (`create`), or says what it
/// holds and what applying would change (plan).
async fn sync(
    aws: &Aws,
    stack: &str,
    name: &str,
    src: &Source,
    create: bool,
    redis_group: Option<&str>,
) -> Result<Stored> {
    let parameter = parameter_name(stack, name);
    let current = read(aws, &parameter).await?;
    if name == "redis_auth_token"
        && current.is_none()
        && let Some(holder) = redis_group
    {
        return Err(AwsError::RedisTokenLost {
            stack: stack.to_string(),
            parameter,
            holder: holder.to_string(),
        });
    }
    let wanted = match src {
        Source::Spec(v) => Some(v.as_str()),
        Source::Generated => None,
    };
    match (current, wanted) {
        // Up to date, or generated before.
        (Some(c), Some(w)) if c.value.as_deref() == Some(w) => Ok(c),
        (Some(c), None) => Ok(c),
        // The spec's value is new or changed.
        (_, Some(w)) if !create => Ok(Stored {
            value: Some(w.to_string()),
            version: None,
        }),
        (None, None) if !create => Ok(Stored::default()),
        (Some(_), Some(w)) => {
            let version = put(aws, stack, name, &parameter, w, src, true).await?;
            Ok(Stored {
                value: Some(w.to_string()),
                version: Some(version),
            })
        }
        (None, wanted) => {
            let value = match wanted {
                Some(w) => w.to_string(),
                None => random_token().map_err(|e| {
                    AwsError::Config(format!("cannot read random bytes for {name}: {e}"))
                })?,
            };
            match put(aws, stack, name, &parameter, &value, src, false).await {
                Ok(version) => Ok(Stored {
                    value: Some(value),
                    version: Some(version),
                }),
                // Another run created it first: keep a generated one, or
                // bring it to the spec's value.
                Err(e) if e.is_already_exists() => match (read(aws, &parameter).await?, wanted) {
                    (Some(c), Some(w)) if c.value.as_deref() != Some(w) => {
                        let version = put(aws, stack, name, &parameter, w, src, true).await?;
                        Ok(Stored {
                            value: Some(w.to_string()),
                            version: Some(version),
                        })
                    }
                    (Some(c), _) => Ok(c),
                    (None, _) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
    }
}

/// Writes a SecureString parameter and answers its new version. A new one
/// (`overwrite` false: fails if it exists) carries the stack tag; AWS takes
/// no tags with `Overwrite=true`, and an overwritten one has them already.
async fn put(
    aws: &Aws,
    stack: &str,
    name: &str,
    parameter: &str,
    value: &str,
    src: &Source,
    overwrite: bool,
) -> Result<i64> {
    // Secrets are written while applying: not once the stack lock is lost.
    super::lock::check_held()?;
    let origin = match src {
        Source::Spec(_) => "from the spec",
        Source::Generated => "generated",
    };
    let mut put = aws
        .ssm()
        .put_parameter()
        .name(parameter)
        .value(value)
        .r#type(ParameterType::SecureString)
        .overwrite(overwrite)
        .description(format!("stackctl {stack}: {name} {origin}"));
    if !overwrite {
        put = put.tags(
            Tag::builder()
                .key(TAG_STACK)
                .value(stack)
                .build()
                .map_err(|e| AwsError::Config(e.to_string()))?,
        );
    }
    let out = put
        .send()
        .await
        .map_err(|e| AwsError::api(Subject::other("secret", parameter), "PutParameter", e))?;
    Ok(out.version)
}

/// 32 random bytes as 64 hex characters: valid as a Redis AUTH token
/// (16-128 printable characters, no `@`, `"` or `/`) and as a URL userinfo.
pub(crate) fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}
