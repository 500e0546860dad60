//! The desired AWS resource graph of a stack: every resource an `aws` spec
//! implies, with its deterministic physical name, tags, typed attributes and
//! dependencies, and the [`Plan`](plan::Plan) that says what applying it
//! would change.
//!
//! There is no state file: a resource is found again in AWS by its physical
//! name (and its `stackctl:stack` / `stackctl:resource` tags), so names are a
//! pure function of the stack name. The stack name is at most 20 characters
//! (lowercase letters, digits, single `-`), which keeps every name below its
//! AWS limit; [`Graph::build`] checks each name against its kind's limit too.
//!
//! | logical id                          | kind                           | physical name (`s` = stack)   | AWS limit |
//! | ----------------------------------- | ------------------------------ | ----------------------------- | --------- |
//! | `ec2.sg.event-api`                  | security group                 | `s-event-api`                 | 255       |
//! | `ec2.sg.runner`                     | security group                 | `s-runner`                    | 255       |
//! | `ec2.sg.executors`                  | security group                 | `s-executors`                 | 255       |
//! | `ec2.sg.redis`                      | security group                 | `s-redis`                     | 255       |
//! | `ec2.sg.lb` (`public`)              | security group                 | `s-lb`                        | 255       |
//! | `iam.role.execution`                | IAM role (ECS task execution)  | `s-execution`                 | 64        |
//! | `iam.role.task`                     | IAM role (ECS tasks)           | `s-task`                      | 64        |
//! | `iam.role.executors`                | IAM role (EC2 executors)       | `s-executors`                 | 64        |
//! | `iam.policy.{execution,task,executors}` | IAM inline role policy     | same as its role              | 128       |
//! | `iam.instance-profile.executors`    | IAM instance profile           | `s-executors`                 | 128       |
//! | `logs.{event-api,runner,executors}` | CloudWatch log group           | `/stackctl/s/{role}`          | 512       |
//! | `sqs.events`, `sqs.work`            | SQS queue                      | `s-events`, `s-work`          | 80        |
//! | `sqs.events-dlq`, `sqs.work-dlq`    | SQS dead-letter queue          | `s-events-dlq`, `s-work-dlq`  | 80        |
//! | `elasticache.subnet-group`          | ElastiCache subnet group       | `s-redis`                     | 255       |
//! | `elasticache.parameter-group`       | ElastiCache parameter group    | `s-redis`                     | 255       |
//! | `elasticache.redis`                 | ElastiCache replication group  | `s-redis`                     | 40        |
//! | `memorydb.subnet-group` (`memorydb`) | MemoryDB subnet group         | `s-redis`                     | 255       |
//! | `memorydb.user`                     | MemoryDB user (the engine's)   | `s-engine`                    | 40        |
//! | `memorydb.acl`                      | MemoryDB access control list   | `s-redis`                     | 40        |
//! | `memorydb.cluster`                  | MemoryDB cluster               | `s-redis`                     | 40        |
//! | `ecr.engine` (no `image.uri`)       | ECR repository                 | `s-engine`                    | 256       |
//! | `ecs.cluster`                       | ECS cluster                    | `s`                           | 255       |
//! | `ecs.taskdef.{event-api,runner}`    | ECS task definition family     | `s-event-api`, `s-runner`     | 255       |
//! | `ecs.service.{event-api,runner}`    | ECS service                    | `s-event-api`, `s-runner`     | 255       |
//! | `ec2.launch-template.executors`     | EC2 launch template            | `s-executors`                 | 128       |
//! | `autoscaling.group.executors`       | Auto Scaling Group             | `s-executors`                 | 255       |
//! | `elb.load-balancer` (`public`, `vpc_link`) | ALB (public) / internal NLB | `s-api`                   | 32        |
//! | `elb.target-group`                  | target group                   | `s-event-api`                 | 32        |
//! | `elb.listener`                      | listener (443 HTTPS, else 80)  | `s-api-443`, `s-api-80`       | -         |
//! | `apigateway.vpc-link` (`vpc_link`)  | API Gateway VPC link           | `s-api`                       | 255       |
//! | `apigateway.rest-api` (`vpc_link`)  | API Gateway REST API (+ `/e/{proxy+}`, `/health`, stage `v1`) | `s-api`     | 1024      |
//! | `cloudmap.namespace` (`internal_dns`) | Cloud Map private DNS namespace | `s.internal`             | 253       |
//! | `cloudmap.service`                  | Cloud Map service              | `event-api`                   | 127       |
//! | `scaling.target.{svc}`              | Application Auto Scaling target | `service/s/s-{svc}`          | 1600      |
//! | `scaling.policy.{svc}.{out,in,requests}` | Application Auto Scaling policy | `s-{svc}-scale-{out,in}` / `s-{svc}-requests` | 256 |
//! | `autoscaling.policy.executors.{out,in}` | ASG step scaling policy    | `s-executors-scale-{out,in}`  | 255       |
//! | `cloudwatch.alarm.{svc}.{out,in}`   | CloudWatch alarm               | `s-{svc}-scale-{out,in}`      | 255       |
//! | `cloudwatch.alarm.{events,work}-dlq` | CloudWatch alarm (DLQ not empty) | `s-{events,work}-dlq-not-empty` | 255    |
//! | `cloudwatch.alarm.events-age` (`observability.alarms`) | CloudWatch alarm | `s-events-age`     | 255       |
//! | `cloudwatch.alarm.event-api-5xx` (alarms, `public`/`vpc_link`) | CloudWatch alarm | `s-event-api-5xx` | 255 |
//! | `cloudwatch.alarm.event-api-lb-5xx` (alarms, `public`) | CloudWatch alarm | `s-event-api-lb-5xx` | 255 |
//! | `sns.alarms` (`observability.alarms.email`) | SNS topic              | `s-alarms`                    | 256       |
//!
//! Values only known while applying (the account, the default VPC, another
//! resource's ARN, secrets, the engine image and its CPU architecture) are
//! [`placeholder`]s inside attribute strings, so the graph itself never holds
//! a secret and never needs AWS (or a built image) to be built.

mod attributes;
mod build;
mod kind;
mod names;
pub mod placeholder;
pub mod plan;
pub mod template;

pub use build::OTEL_COLLECTOR_IMAGE;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

pub use attributes::*;
pub use kind::{Kind, KindInfo};
pub use names::{STACK_NAME_MAX, check_stack_name, secret_parameter_name};

use crate::arch::{Architecture, ArchitectureError};
use crate::spec::{LoadedSpec, Spec};
use engine::functions::FunctionDef;

/// Tag carrying the stack name on every taggable resource.
pub const TAG_STACK: &str = "stackctl:stack";
/// Tag carrying the resource's logical id on every taggable resource.
pub const TAG_RESOURCE: &str = "stackctl:resource";

/// Why the graph of a spec could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// The spec is not for AWS.
    #[error(
        "stack `{stack}` uses `provider: local`: plan shows AWS resources and needs `provider: aws` (a local stack starts with `stackctl up`)"
    )]
    NotAws {
        /// The stack name.
        stack: String,
    },
    /// The stack name cannot be the root of AWS resource names.
    #[error("stack name `{name}` is not usable in AWS resource names: {reason}")]
    StackName {
        /// The stack name.
        name: String,
        /// What rule it breaks.
        reason: String,
    },
    /// A physical name is longer than AWS accepts for its kind.
    #[error("{kind} name `{name}` is {len} characters, above AWS's limit of {limit}")]
    NameTooLong {
        /// The resource kind.
        kind: Kind,
        /// The physical name.
        name: String,
        /// Its length.
        len: usize,
        /// The AWS limit.
        limit: usize,
    },
    /// `alb` scaling needs an application load balancer in front of the service.
    #[error(
        "{target} uses `alb` scaling, which needs an application load balancer: only the event API with `network.event_api: public` has one; use the `cpu` or `sqs` strategy instead"
    )]
    AlbScalingWithoutAlb {
        /// `event-api`, `runner` or `executors`.
        target: String,
    },
    /// An `sqs` strategy names a queue the stack does not have.
    #[error("{target} scales on queue `{queue}`, but the stack's queues are `events` and `work`")]
    UnknownScalingQueue {
        /// `event-api`, `runner` or `executors`.
        target: String,
        /// The queue named.
        queue: String,
    },
    /// A resource was added twice (a bug in the builder).
    #[error("resource `{0}` is defined twice")]
    Duplicate(LogicalId),
    /// A resource depends on one not added before it (a bug in the builder).
    #[error("resource `{id}` depends on `{missing}`, which is not defined before it")]
    UnknownDependency {
        /// The resource.
        id: LogicalId,
        /// The dependency not found.
        missing: LogicalId,
    },
    /// A template could not be rendered (a bug in a template).
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    /// The engine configuration of a role does not fit where AWS keeps it.
    #[error(
        "{role}: the engine configuration is {len} bytes with the spec's functions, above the {limit} a task definition leaves for it; make the function files smaller (long inline step inputs, many functions in one stack)"
    )]
    EngineConfigTooLarge {
        /// `event-api` or `runner`.
        role: String,
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// A resource's stable logical id, e.g. `sqs.events` or `ecs.service.runner`.
/// It is the `stackctl:resource` tag and never changes for a given role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct LogicalId(String);

impl LogicalId {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LogicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for LogicalId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// One AWS resource of the stack, desired (from the spec) or observed (read
/// from AWS by the provider, in the same shape so the two can be diffed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    /// Stable logical id; also the `stackctl:resource` tag.
    pub id: LogicalId,
    /// What it is.
    pub kind: Kind,
    /// Deterministic physical name.
    pub name: String,
    /// Tags (empty for kinds AWS cannot tag).
    pub tags: BTreeMap<String, String>,
    /// Logical ids this resource needs to exist first.
    pub dependencies: Vec<LogicalId>,
    /// The attributes AWS is told to hold.
    pub attributes: Attributes,
}

/// The resources of one stack, acyclic by construction: a resource can only
/// be added after everything it depends on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    /// The stack name.
    pub stack: String,
    /// The spec's region, if it sets one (otherwise the AWS config's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The name clients use for an HTTPS `public` event API
    /// (`network.https.domain`): what its certificate is checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_api_domain: Option<String>,
    resources: Vec<Resource>,
    #[serde(skip)]
    index: BTreeMap<LogicalId, usize>,
}

impl Graph {
    /// Builds the desired graph of an `aws` spec with all its functions
    /// (inline and from its function files).
    pub fn build(loaded: &LoadedSpec) -> Result<Self, GraphError> {
        let functions: Vec<FunctionDef> = loaded.function_defs().cloned().collect();
        build::build(&loaded.spec, &functions)
    }

    /// Builds the graph of a spec whose function files were not read: its
    /// inline functions only. For specs without function files.
    pub fn from_spec(spec: &Spec) -> Result<Self, GraphError> {
        build::build(spec, &spec.functions.inline)
    }

    pub(crate) fn empty(stack: &str, region: Option<String>) -> Self {
        Self {
            stack: stack.to_string(),
            region,
            event_api_domain: None,
            resources: Vec::new(),
            index: BTreeMap::new(),
        }
    }

    /// Adds a resource whose dependencies are all present already.
    pub(crate) fn add(&mut self, resource: Resource) -> Result<(), GraphError> {
        if self.index.contains_key(&resource.id) {
            return Err(GraphError::Duplicate(resource.id));
        }
        if let Some(missing) = resource
            .dependencies
            .iter()
            .find(|d| !self.index.contains_key(*d))
        {
            return Err(GraphError::UnknownDependency {
                id: resource.id.clone(),
                missing: missing.clone(),
            });
        }
        if let Some(limit) = resource.kind.name_limit()
            && resource.name.len() > limit
        {
            return Err(GraphError::NameTooLong {
                kind: resource.kind,
                name: resource.name.clone(),
                len: resource.name.len(),
                limit,
            });
        }
        self.index.insert(resource.id.clone(), self.resources.len());
        self.resources.push(resource);
        Ok(())
    }

    /// The resources in insertion order (dependencies before dependents).
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// A resource by logical id.
    pub fn get(&self, id: &LogicalId) -> Option<&Resource> {
        self.index.get(id).map(|&i| &self.resources[i])
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether the graph has no resources.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Refuses an engine image of `architecture` when the executors'
    /// instance type cannot run it (before anything is written: a mismatch
    /// would only show as executors that never start).
    pub fn check_architecture(&self, architecture: Architecture) -> Result<(), ArchitectureError> {
        self.resources
            .iter()
            .filter_map(|r| match &r.attributes {
                Attributes::LaunchTemplate(t) => Some(t.instance_type.as_str()),
                _ => None,
            })
            .try_for_each(|instance_type| architecture.check_instance_type(instance_type))
    }

    /// Every kind present.
    pub fn kinds(&self) -> BTreeSet<Kind> {
        self.resources.iter().map(|r| r.kind).collect()
    }

    /// Dependency depth of each resource: 0 for no dependencies, otherwise
    /// one more than its deepest dependency.
    pub fn depths(&self) -> BTreeMap<LogicalId, usize> {
        let mut depth: BTreeMap<LogicalId, usize> = BTreeMap::new();
        // Insertion order puts dependencies first, so one pass suffices.
        for r in &self.resources {
            let d = r
                .dependencies
                .iter()
                .map(|dep| depth[dep] + 1)
                .max()
                .unwrap_or(0);
            depth.insert(r.id.clone(), d);
        }
        depth
    }

    /// A topological order for applying: among the resources whose
    /// dependencies are done, the highest priority first, then by logical
    /// id, so the order is deterministic. A resource's priority is the
    /// highest [`Kind::priority`] of itself and everything that depends on
    /// it, so what ElastiCache (the slowest) needs is created first and
    /// ElastiCache starts as early as it can.
    pub fn apply_order(&self) -> Vec<&Resource> {
        let priority = self.effective_priorities();
        let mut remaining: Vec<usize> = self
            .resources
            .iter()
            .map(|r| r.dependencies.len())
            .collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); self.resources.len()];
        for (i, r) in self.resources.iter().enumerate() {
            for d in &r.dependencies {
                dependents[self.index[d]].push(i);
            }
        }
        let key = |i: usize| (std::cmp::Reverse(priority[i]), &self.resources[i].id, i);
        let mut ready: BTreeSet<_> = (0..self.resources.len())
            .filter(|&i| remaining[i] == 0)
            .map(key)
            .collect();
        let mut order = Vec::with_capacity(self.resources.len());
        while let Some((_, _, i)) = ready.pop_first() {
            order.push(&self.resources[i]);
            for &dependent in &dependents[i] {
                remaining[dependent] -= 1;
                if remaining[dependent] == 0 {
                    ready.insert(key(dependent));
                }
            }
        }
        order
    }

    fn effective_priorities(&self) -> Vec<u8> {
        let mut priority: Vec<u8> = self.resources.iter().map(|r| r.kind.priority()).collect();
        // Dependents come after their dependencies, so a reverse pass sees
        // every dependent's final priority before its dependencies.
        for i in (0..self.resources.len()).rev() {
            for d in &self.resources[i].dependencies {
                let j = self.index[d];
                priority[j] = priority[j].max(priority[i]);
            }
        }
        priority
    }
}
