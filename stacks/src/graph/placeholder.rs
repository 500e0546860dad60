//! Placeholders in attribute strings for values known only while applying.
//!
//! Three forms, told apart by their punctuation:
//! - `${region}`: a [`CONTEXT`] value of the target account (region, account,
//!   default VPC, AMI, engine image and its CPU architecture), looked up once
//!   per apply;
//! - `${secret:name}`: a [`SECRETS`] value (event keys, tokens); kept out of
//!   the graph so plans and logs never show it. `${secret:name@version}`
//!   ([`secret_version`]) is instead the version of the SSM parameter that
//!   holds the secret: not secret itself, it changes exactly when the value
//!   does, so what refers to it changes too;
//! - `${ecs.cluster.arn}`: an output of another resource, named by logical id
//!   (which always has a dot) and one of its kind's [`outputs`](super::Kind::outputs);
//!   that resource is always among the dependencies.
//!
//! An array element that is exactly one placeholder may resolve to a list
//! (`["${default_subnets}"]` becomes every default subnet id).

use serde_json::Value;

use super::LogicalId;

/// Context placeholders the provider resolves from the account and region.
pub const CONTEXT: &[&str] = &[
    "region",
    "account",
    "vpc_id",
    "vpc_cidr",
    "default_subnets",
    "ami_id",
    "image",
    "cpu_architecture",
];

/// Secret placeholders (`${secret:NAME}`) the provider fills in at apply.
pub const SECRETS: &[&str] = &["event_keys", "api_token", "redis_auth_token", "state_url"];

/// One placeholder found in a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placeholder {
    /// `${name}`.
    Context(String),
    /// `${secret:name}`.
    Secret(String),
    /// `${logical.id.output}`.
    Output {
        /// The resource referred to.
        id: LogicalId,
        /// Which of its outputs.
        output: String,
    },
}

impl Placeholder {
    fn parse(inner: &str) -> Self {
        if let Some(name) = inner.strip_prefix("secret:") {
            Placeholder::Secret(name.to_string())
        } else if let Some((id, output)) = inner.rsplit_once('.') {
            Placeholder::Output {
                id: LogicalId::new(id),
                output: output.to_string(),
            }
        } else {
            Placeholder::Context(inner.to_string())
        }
    }

    /// The placeholder as written.
    pub fn to_text(&self) -> String {
        match self {
            Placeholder::Context(n) => format!("${{{n}}}"),
            Placeholder::Secret(n) => format!("${{secret:{n}}}"),
            Placeholder::Output { id, output } => format!("${{{id}.{output}}}"),
        }
    }
}

/// Builds `${id.output}`.
pub fn output(id: &str, output: &str) -> String {
    Placeholder::Output {
        id: LogicalId::new(id),
        output: output.to_string(),
    }
    .to_text()
}

/// Builds `${name}` for a [`CONTEXT`] value.
pub fn context(name: &str) -> String {
    Placeholder::Context(name.to_string()).to_text()
}

/// Builds `${secret:name}`.
pub fn secret(name: &str) -> String {
    Placeholder::Secret(name.to_string()).to_text()
}

/// What ends the name of a secret's version placeholder.
pub const VERSION_SUFFIX: &str = "@version";

/// Builds `${secret:name@version}`: the version of the SSM parameter that
/// holds the secret `name` (the provider keeps the secret there).
pub fn secret_version(name: &str) -> String {
    secret(&format!("{name}{VERSION_SUFFIX}"))
}

/// The secret whose version a secret placeholder's name asks for
/// (`event_keys@version` → `event_keys`); `None` for a value.
pub fn version_of(name: &str) -> Option<&str> {
    name.strip_suffix(VERSION_SUFFIX)
}

/// Splits a string into literal text and placeholders.
fn segments(text: &str) -> Vec<Result<&str, Placeholder>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        if start > 0 {
            out.push(Ok(&rest[..start]));
        }
        out.push(Err(Placeholder::parse(&rest[start + 2..start + 2 + len])));
        rest = &rest[start + 3 + len..];
    }
    if !rest.is_empty() {
        out.push(Ok(rest));
    }
    out
}

/// The placeholders in one string, in order.
pub fn in_text(text: &str) -> Vec<Placeholder> {
    segments(text).into_iter().filter_map(Result::err).collect()
}

/// Every placeholder in a JSON value (all strings, recursively).
pub fn in_value(value: &Value) -> Vec<Placeholder> {
    let mut found = Vec::new();
    walk(value, &mut |s| found.extend(in_text(s)));
    found
}

fn walk(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| walk(v, f)),
        Value::Object(map) => map.values().for_each(|v| walk(v, f)),
        _ => {}
    }
}

/// Replaces every placeholder of a string. `lookup` returns a string, or an
/// array (joined with `,` inside text).
pub fn resolve_text<E>(
    text: &str,
    lookup: &mut impl FnMut(&Placeholder) -> Result<Value, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    for seg in segments(text) {
        match seg {
            Ok(lit) => out.push_str(lit),
            Err(p) => match lookup(&p)? {
                Value::String(s) => out.push_str(&s),
                Value::Array(items) => {
                    let parts: Vec<String> = items.iter().map(scalar_text).collect();
                    out.push_str(&parts.join(","));
                }
                other => out.push_str(&scalar_text(&other)),
            },
        }
    }
    Ok(out)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replaces every placeholder in a JSON value in place; an array element
/// that is exactly one placeholder resolving to an array is spliced in.
pub fn resolve_value<E>(
    value: &mut Value,
    lookup: &mut impl FnMut(&Placeholder) -> Result<Value, E>,
) -> Result<(), E> {
    match value {
        Value::String(s) => {
            *s = resolve_text(s, lookup)?;
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for mut item in std::mem::take(items) {
                if let Value::String(s) = &item
                    && let [Err(p)] = segments(s).as_slice()
                    && let Value::Array(many) = lookup(p)?
                {
                    out.extend(many);
                    continue;
                }
                resolve_value(&mut item, lookup)?;
                out.push(item);
            }
            *items = out;
        }
        Value::Object(map) => {
            for v in map.values_mut() {
                resolve_value(v, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_three_forms() {
        let found = in_text(
            "arn:aws:sqs:${region}:${account}:x ${secret:api_token} ${ecs.cluster.arn} $HOME ${",
        );
        assert_eq!(
            found,
            vec![
                Placeholder::Context("region".into()),
                Placeholder::Context("account".into()),
                Placeholder::Secret("api_token".into()),
                Placeholder::Output {
                    id: "ecs.cluster".into(),
                    output: "arn".into()
                },
            ]
        );
        assert_eq!(output("ecs.cluster", "arn"), "${ecs.cluster.arn}");
        assert_eq!(secret_version("api_token"), "${secret:api_token@version}");
        assert_eq!(
            in_text(&secret_version("api_token")),
            [Placeholder::Secret("api_token@version".into())]
        );
        assert_eq!(version_of("api_token@version"), Some("api_token"));
        assert_eq!(version_of("api_token"), None);
    }

    #[test]
    fn resolves_text_and_splices_lists() {
        let mut v = json!({
            "arn": "arn:aws:sqs:${region}:${account}:demo-events",
            "subnets": ["${default_subnets}", "subnet-extra"],
            "url": "redis://${elasticache.redis.primary_endpoint}:6379"
        });
        let mut lookup = |p: &Placeholder| -> Result<Value, String> {
            Ok(match p {
                Placeholder::Context(n) if n == "region" => json!("us-east-1"),
                Placeholder::Context(n) if n == "account" => json!("123456789012"),
                Placeholder::Context(n) if n == "default_subnets" => {
                    json!(["subnet-a", "subnet-b"])
                }
                Placeholder::Output { id, output } => json!(format!("{id}/{output}")),
                other => return Err(format!("unexpected {other:?}")),
            })
        };
        resolve_value(&mut v, &mut lookup).unwrap();
        assert_eq!(
            v,
            json!({
                "arn": "arn:aws:sqs:us-east-1:123456789012:demo-events",
                "subnets": ["subnet-a", "subnet-b", "subnet-extra"],
                "url": "redis://elasticache.redis/primary_endpoint:6379"
            })
        );
        let err = resolve_text("${secret:api_token}", &mut lookup).unwrap_err();
        assert!(err.contains("Secret"), "{err}");
    }
}
