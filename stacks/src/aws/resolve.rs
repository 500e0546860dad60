//! Turning desired attributes (with `${...}` placeholders) into concrete
//! ones, and normalizing both sides of a diff so only real differences
//! remain: set-like lists sorted, fields AWS cannot report copied over.
//!
//! Placeholders resolve from the account [`Env`], the stack's [`Inputs`]
//! and secrets, and the outputs of other resources. While planning, an
//! output of a resource that will be created or replaced is not known yet:
//! it resolves to [`UNKNOWN`], which differs from whatever AWS holds, so
//! the dependent shows the change it will get. While applying, every value
//! must be known.

use std::collections::BTreeMap;

use serde_json::Value;

use super::context::Env;
use super::error::{AwsError, Result, Subject};
use crate::arch::{Architecture, ArchitectureError};
use crate::graph::placeholder::{self, Placeholder};
use crate::graph::{Attributes, Kind, LogicalId, Resource};
use crate::spec::Spec;

/// What a value not known before applying reads as in a plan.
pub const UNKNOWN: &str = "(known after apply)";

/// What a field AWS did not report reads as; [`carry_unobservable`]
/// replaces it with the desired value, so it never shows as a change.
pub const NOT_REPORTED: &str = "(not reported)";

/// What a MemoryDB user's password reads as when it has one: set, value
/// unknown.
pub const PASSWORD_SET: &str = "(set)";

/// Outputs of one resource (`arn`, `id`, `url`, ...).
pub type Outputs = BTreeMap<String, String>;

/// What the stack needs besides AWS state: the engine image and the
/// secrets the spec holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// The stack name.
    pub stack: String,
    /// `--image URI`, else the spec's `image.uri`; `None`: the engine image
    /// is built from source and deployed from the stack's ECR repository.
    pub image: Option<String>,
    /// When the engine image was built from source for this command: its
    /// manifest digest (`sha256:...`), deployed as `repo@digest`. `None`
    /// with `image` also `None`: the image the stack deploys now from its
    /// repository is kept (`repo:latest` when nothing is deployed yet).
    pub image_digest: Option<String>,
    /// The engine image's CPU architecture, when this command knows it:
    /// the spec's `image.architecture`, x86_64 for a prebuilt image
    /// without one, or the built image's. `None`: the image is built from
    /// source but not by this command (`plan`, `status`), so the task
    /// definitions keep the architecture they run now, like the image.
    pub architecture: Option<Architecture>,
    /// The event keys, comma-separated (the engine's format); `up` stores
    /// them in SSM.
    pub event_keys: String,
    /// The runs API token, when the spec sets one (`up` stores it in SSM;
    /// otherwise a generated one is kept there).
    pub api_token: Option<String>,
    /// An external Redis URL (`state.url`).
    pub state_url: Option<String>,
}

impl Inputs {
    /// The inputs of a spec; `image` (from `--image`) wins over the spec's.
    pub fn from_spec(spec: &Spec, image: Option<String>) -> Self {
        let image = image.or_else(|| spec.image.uri.clone());
        // Without a registry round trip a prebuilt image's platform is
        // unknown: the spec says it, else x86_64 (what ECS assumes).
        let architecture = spec
            .image
            .architecture
            .or_else(|| image.is_some().then_some(Architecture::default()));
        Self {
            stack: spec.stack.clone(),
            image,
            image_digest: None,
            architecture,
            event_keys: spec
                .event_keys
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            api_token: spec.api_token.clone(),
            state_url: spec.state.url.clone(),
        }
    }
}

impl Inputs {
    /// Deploys the engine image built from source with this manifest
    /// digest, for `architecture` (its binary's; ignored when a prebuilt
    /// image is given). Refuses an architecture other than the one the
    /// spec declares.
    pub fn with_built_image(
        mut self,
        digest: impl Into<String>,
        architecture: Architecture,
    ) -> std::result::Result<Self, ArchitectureError> {
        if self.image.is_some() {
            return Ok(self);
        }
        if let Some(declared) = self.architecture
            && declared != architecture
        {
            return Err(ArchitectureError::Built {
                declared,
                built: architecture,
            });
        }
        self.image_digest = Some(digest.into());
        self.architecture = Some(architecture);
        Ok(self)
    }

    /// Whether the engine image comes from a build of the source (no
    /// `--image`, no `image.uri`).
    pub fn builds_image(&self) -> bool {
        self.image.is_none()
    }
}

/// Secret values by placeholder name (`redis_auth_token`, ...); `None`:
/// not generated yet.
pub type Secrets = BTreeMap<String, Option<String>>;

/// Everything placeholders resolve from.
pub(crate) struct Resolver<'a> {
    pub env: &'a Env,
    pub ami: Option<&'a str>,
    pub image: Option<String>,
    pub architecture: Architecture,
    pub secrets: &'a Secrets,
    pub outputs: &'a BTreeMap<LogicalId, Outputs>,
    /// Resources whose outputs are not known yet (plan only): all of them
    /// (empty list) or the ones named.
    pub pending: &'a BTreeMap<LogicalId, Vec<&'static str>>,
    /// Applying: an unknown value is an error rather than [`UNKNOWN`].
    pub strict: bool,
}

impl Resolver<'_> {
    /// The resource with concrete, normalized attributes.
    pub fn resolve(&self, resource: &Resource) -> Result<Resource> {
        let subject = Subject::new(&resource.id, &resource.name);
        let mut value = resource.attributes.to_value();
        placeholder::resolve_value(&mut value, &mut |p| self.lookup(&subject, p))?;
        let mut attributes =
            from_value(resource.kind, value).map_err(|e| AwsError::Unresolved {
                subject: subject.clone(),
                placeholder: "attributes".into(),
                reason: e.to_string(),
            })?;
        normalize(&mut attributes);
        Ok(Resource {
            attributes,
            ..resource.clone()
        })
    }

    fn unknown(&self, subject: &Subject, p: &Placeholder, reason: &str) -> Result<Value> {
        if self.strict {
            Err(AwsError::Unresolved {
                subject: subject.clone(),
                placeholder: p.to_text(),
                reason: reason.to_string(),
            })
        } else {
            Ok(Value::String(UNKNOWN.into()))
        }
    }

    fn lookup(&self, subject: &Subject, p: &Placeholder) -> Result<Value> {
        match p {
            Placeholder::Context(name) => Ok(match name.as_str() {
                "region" => Value::String(self.env.region.clone()),
                "account" => Value::String(self.env.account.clone()),
                "vpc_id" => Value::String(self.env.vpc_id.clone()),
                "vpc_cidr" => Value::String(self.env.vpc_cidr.clone()),
                "default_subnets" => Value::Array(
                    self.env
                        .subnets
                        .iter()
                        .cloned()
                        .map(Value::String)
                        .collect(),
                ),
                "ami_id" => match self.ami {
                    Some(ami) => Value::String(ami.to_string()),
                    None => return self.unknown(subject, p, "the AMI was not looked up"),
                },
                "cpu_architecture" => Value::String(self.architecture.ecs().to_string()),
                "image" => match &self.image {
                    Some(image) => Value::String(image.clone()),
                    None => return self.unknown(subject, p, "no engine image"),
                },
                _ => return self.unknown(subject, p, "not a context value"),
            }),
            Placeholder::Secret(name) => match self.secrets.get(name) {
                Some(Some(value)) => Ok(Value::String(value.clone())),
                _ => self.unknown(subject, p, "the secret does not exist yet"),
            },
            Placeholder::Output { id, output } => {
                if self
                    .pending
                    .get(id)
                    .is_some_and(|outs| outs.is_empty() || outs.contains(&output.as_str()))
                {
                    return self.unknown(subject, p, "the resource is not applied yet");
                }
                match self.outputs.get(id).and_then(|o| o.get(output)) {
                    Some(v) => Ok(Value::String(v.clone())),
                    None => self.unknown(subject, p, "the resource does not exist"),
                }
            }
        }
    }
}

/// Rebuilds typed attributes of `kind` from their JSON shape.
pub(crate) fn from_value(kind: Kind, value: Value) -> serde_json::Result<Attributes> {
    use serde_json::from_value as v;
    Ok(match kind {
        Kind::SecurityGroup => Attributes::SecurityGroup(v(value)?),
        Kind::IamRole => Attributes::IamRole(v(value)?),
        Kind::IamRolePolicy => Attributes::IamRolePolicy(v(value)?),
        Kind::IamInstanceProfile => Attributes::IamInstanceProfile(v(value)?),
        Kind::LogGroup => Attributes::LogGroup(v(value)?),
        Kind::SqsQueue => Attributes::SqsQueue(v(value)?),
        Kind::ElastiCacheSubnetGroup => Attributes::ElastiCacheSubnetGroup(v(value)?),
        Kind::ElastiCacheParameterGroup => Attributes::ElastiCacheParameterGroup(v(value)?),
        Kind::ElastiCacheReplicationGroup => Attributes::ElastiCacheReplicationGroup(v(value)?),
        Kind::MemoryDbSubnetGroup => Attributes::MemoryDbSubnetGroup(v(value)?),
        Kind::MemoryDbUser => Attributes::MemoryDbUser(v(value)?),
        Kind::MemoryDbAcl => Attributes::MemoryDbAcl(v(value)?),
        Kind::MemoryDbCluster => Attributes::MemoryDbCluster(v(value)?),
        Kind::EcrRepository => Attributes::EcrRepository(v(value)?),
        Kind::EcsCluster => Attributes::EcsCluster(v(value)?),
        Kind::EcsTaskDefinition => Attributes::EcsTaskDefinition(Box::new(v(value)?)),
        Kind::EcsService => Attributes::EcsService(Box::new(v(value)?)),
        Kind::LaunchTemplate => Attributes::LaunchTemplate(v(value)?),
        Kind::AutoScalingGroup => Attributes::AutoScalingGroup(v(value)?),
        Kind::LoadBalancer => Attributes::LoadBalancer(v(value)?),
        Kind::TargetGroup => Attributes::TargetGroup(v(value)?),
        Kind::Listener => Attributes::Listener(v(value)?),
        Kind::ApiGatewayVpcLink => Attributes::ApiGatewayVpcLink(v(value)?),
        Kind::ApiGatewayRestApi => Attributes::ApiGatewayRestApi(v(value)?),
        Kind::ServiceDiscoveryNamespace => Attributes::ServiceDiscoveryNamespace(v(value)?),
        Kind::ServiceDiscoveryService => Attributes::ServiceDiscoveryService(v(value)?),
        Kind::ScalableTarget => Attributes::ScalableTarget(v(value)?),
        Kind::ScalingPolicy | Kind::AsgScalingPolicy => Attributes::ScalingPolicy(v(value)?),
        Kind::CloudWatchAlarm => Attributes::CloudWatchAlarm(v(value)?),
        Kind::SnsTopic => Attributes::SnsTopic(v(value)?),
    })
}

fn sort<T: serde::Serialize>(items: &mut [T]) {
    items.sort_by_cached_key(|i| serde_json::to_string(i).unwrap_or_default());
}

/// Sorts the lists AWS treats as sets, so order never shows as a change.
pub(crate) fn normalize(attributes: &mut Attributes) {
    match attributes {
        Attributes::SecurityGroup(sg) => {
            sort(&mut sg.ingress);
            sort(&mut sg.egress);
        }
        Attributes::ElastiCacheSubnetGroup(g) => g.subnet_ids.sort(),
        Attributes::ElastiCacheReplicationGroup(g) => g.security_group_ids.sort(),
        Attributes::MemoryDbSubnetGroup(g) => g.subnet_ids.sort(),
        Attributes::MemoryDbAcl(a) => a.user_names.sort(),
        Attributes::MemoryDbCluster(c) => c.security_group_ids.sort(),
        Attributes::EcsCluster(c) => c.capacity_providers.sort(),
        Attributes::EcsTaskDefinition(t) => t.requires_compatibilities.sort(),
        Attributes::EcsService(s) => {
            s.subnets.sort();
            s.security_groups.sort();
            sort(&mut s.load_balancers);
            s.service_registries.sort();
        }
        Attributes::LaunchTemplate(t) => t.security_group_ids.sort(),
        Attributes::AutoScalingGroup(g) => g.subnets.sort(),
        Attributes::LoadBalancer(lb) => {
            lb.subnets.sort();
            lb.security_groups.sort();
        }
        Attributes::ApiGatewayVpcLink(l) => l.target_arns.sort(),
        Attributes::SnsTopic(t) => t.email.sort(),
        Attributes::IamRole(_)
        | Attributes::IamRolePolicy(_)
        | Attributes::IamInstanceProfile(_)
        | Attributes::LogGroup(_)
        | Attributes::SqsQueue(_)
        | Attributes::ElastiCacheParameterGroup(_)
        | Attributes::MemoryDbUser(_)
        | Attributes::EcrRepository(_)
        | Attributes::TargetGroup(_)
        | Attributes::Listener(_)
        | Attributes::ApiGatewayRestApi(_)
        | Attributes::ServiceDiscoveryNamespace(_)
        | Attributes::ServiceDiscoveryService(_)
        | Attributes::ScalableTarget(_)
        | Attributes::ScalingPolicy(_)
        | Attributes::CloudWatchAlarm(_) => {}
    }
}

/// Copies into `observed` the desired values AWS never reports back (a
/// Redis auth token, whether auto-scaling owns a count, a private DNS
/// namespace's VPC), so they cannot show as changes.
pub(crate) fn carry_unobservable(desired: &Attributes, observed: &mut Attributes) {
    match (desired, observed) {
        (
            Attributes::ElastiCacheReplicationGroup(d),
            Attributes::ElastiCacheReplicationGroup(o),
        ) => {
            // Only whether a token is set is observable.
            if d.auth_token.is_some() && o.auth_token.is_some() {
                o.auth_token.clone_from(&d.auth_token);
            }
            if o.engine_version == NOT_REPORTED {
                o.engine_version.clone_from(&d.engine_version);
            }
            if o.subnet_group == NOT_REPORTED {
                o.subnet_group.clone_from(&d.subnet_group);
            }
            if o.parameter_group == NOT_REPORTED {
                o.parameter_group.clone_from(&d.parameter_group);
            }
            if o.security_group_ids.iter().any(|s| s == NOT_REPORTED) {
                o.security_group_ids.clone_from(&d.security_group_ids);
            }
        }
        // Only whether a password is set is observable.
        (Attributes::MemoryDbUser(d), Attributes::MemoryDbUser(o))
            if o.password == PASSWORD_SET =>
        {
            o.password.clone_from(&d.password);
        }
        (Attributes::EcsService(d), Attributes::EcsService(o)) => {
            o.scaling_managed = d.scaling_managed;
        }
        (Attributes::AutoScalingGroup(d), Attributes::AutoScalingGroup(o)) => {
            o.scaling_managed = d.scaling_managed;
        }
        (Attributes::ServiceDiscoveryNamespace(d), Attributes::ServiceDiscoveryNamespace(o)) => {
            o.vpc_id.clone_from(&d.vpc_id);
        }
        _ => {}
    }
}
