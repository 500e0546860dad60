//! The stack's generated secrets (the Redis auth token, and the runs-API
//! token when the spec sets none), kept as SSM SecureString parameters
//! under `/stackctl/{stack}/`. They are created with a conditional write
//! (`Overwrite=false`), so two concurrent first runs agree on one value,
//! and tagged with the stack so `down` finds them.

use std::io::Read as _;

use aws_sdk_ssm::types::{ParameterType, Tag};

use super::context::Aws;
use super::error::{AwsError, Result, Subject};
use super::resolve::{Inputs, Secrets};
use crate::graph::placeholder::{self, Placeholder};
use crate::graph::{Graph, TAG_STACK};

/// Secrets the provider generates when the spec does not hold them.
const GENERATED: &[&str] = &["redis_auth_token", "api_token"];

/// The SSM parameter of a generated secret.
pub fn parameter_name(stack: &str, secret: &str) -> String {
    crate::graph::secret_parameter_name(stack, secret)
}

/// The secret names the graph's placeholders use.
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

/// The secrets from the spec and from SSM; `create` generates and stores
/// the missing ones (apply), otherwise they stay `None` (plan).
pub(crate) async fn load(
    aws: &Aws,
    graph: &Graph,
    inputs: &Inputs,
    create: bool,
) -> Result<Secrets> {
    let mut secrets = Secrets::new();
    for name in used(graph) {
        let value = match name.as_str() {
            "event_keys" => Some(inputs.event_keys.clone()),
            "state_url" => inputs.state_url.clone(),
            "api_token" if inputs.api_token.is_some() => inputs.api_token.clone(),
            n if GENERATED.contains(&n) => stored(aws, &inputs.stack, n, create).await?,
            _ => None,
        };
        secrets.insert(name, value);
    }
    Ok(secrets)
}

async fn read(aws: &Aws, parameter: &str) -> Result<Option<String>> {
    let got = aws
        .ssm()
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| AwsError::api(Subject::other("secret", parameter), "GetParameter", e));
    match got {
        Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

async fn stored(aws: &Aws, stack: &str, name: &str, create: bool) -> Result<Option<String>> {
    let parameter = parameter_name(stack, name);
    if let Some(v) = read(aws, &parameter).await? {
        return Ok(Some(v));
    }
    if !create {
        return Ok(None);
    }
    let subject = Subject::other("secret", &parameter);
    let value = random_token()
        .map_err(|e| AwsError::Config(format!("cannot read random bytes for {name}: {e}")))?;
    let put = aws
        .ssm()
        .put_parameter()
        .name(&parameter)
        .value(&value)
        .r#type(ParameterType::SecureString)
        .overwrite(false)
        .description(format!("stackctl {stack}: generated {name}"))
        .tags(
            Tag::builder()
                .key(TAG_STACK)
                .value(stack)
                .build()
                .map_err(|e| AwsError::Config(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "PutParameter", e));
    match put {
        Ok(_) => Ok(Some(value)),
        // Another run created it first: use theirs.
        Err(e) if e.is_already_exists() => read(aws, &parameter).await,
        Err(e) => Err(e),
    }
}

/// 32 random bytes as 64 hex characters: valid as a Redis AUTH token
/// (16-128 printable characters, no `@`, `"` or `/`) and as a URL userinfo.
pub(crate) fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}
