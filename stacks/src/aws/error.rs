//! Errors of the AWS provider. An AWS API failure keeps the resource it was
//! about (logical id and physical name), the action, AWS's error code and
//! message, and a [`Class`] that says whether retrying can help and whether
//! it is a dependency error (`down` retries those once dependents are gone).

use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::graph::LogicalId;

/// The resource an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Logical id (`sqs.events`), or a description for calls not tied to a
    /// resource (`account`).
    pub id: String,
    /// Physical name, when known.
    pub name: String,
}

impl Subject {
    /// A resource of the graph.
    pub fn new(id: &LogicalId, name: &str) -> Self {
        Self {
            id: id.to_string(),
            name: name.to_string(),
        }
    }

    /// Something that is not a graph resource (the account, the lock).
    pub fn other(what: &str, name: &str) -> Self {
        Self {
            id: what.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "`{}`", self.id)
        } else {
            write!(f, "`{}` ({})", self.id, self.name)
        }
    }
}

/// What kind of failure an AWS error is, for retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Throttling, a 5xx, a timeout or a dropped connection: the SDK already
    /// retried; trying the whole action again later may succeed.
    Retryable,
    /// Another resource still uses or depends on this one
    /// (`DependencyViolation`, `ResourceInUse`, ...): retry after it is gone.
    Dependency,
    /// The resource does not exist.
    NotFound,
    /// The resource exists already.
    AlreadyExists,
    /// Anything else: fix the cause first.
    Permanent,
}

impl Class {
    /// Sorts an AWS error code (and HTTP status) into a class.
    pub fn of(code: &str, status: Option<u16>) -> Self {
        const DEPENDENCY: &[&str] = &[
            "DependencyViolation",
            "ResourceInUse",
            "ResourceInUseException",
            "DeleteConflict",
            "InvalidCacheSubnetGroupState",
            "CacheSubnetGroupInUse",
            "InvalidReplicationGroupState",
            "InvalidCacheClusterState",
            "ResourceContention",
            "ScalingActivityInProgress",
            "ClusterContainsServicesException",
            "ClusterContainsTasksException",
            "ClusterContainsContainerInstancesException",
            "InvalidIPAddress.InUse",
            "ResourceInUseFault",
            "SubnetGroupInUseFault",
            "InvalidClusterStateFault",
            "InvalidACLStateFault",
            "InvalidUserStateFault",
        ];
        const RETRYABLE: &[&str] = &[
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestLimitExceeded",
            "RequestThrottled",
            "RequestThrottledException",
            "TooManyRequestsException",
            "ProvisionedThroughputExceededException",
            "SlowDown",
            "PriorRequestNotComplete",
            "ServiceUnavailable",
            "InternalError",
            "InternalFailure",
            "ServerException",
            "DispatchFailure",
            "Timeout",
            "ConcurrentModification",
            "ConcurrentModificationException",
            "ConcurrentUpdateException",
            "OperationAborted",
        ];
        if DEPENDENCY.contains(&code) {
            Class::Dependency
        } else if RETRYABLE.contains(&code) || status.is_some_and(|s| s >= 500) {
            Class::Retryable
        } else if code.contains("NotFound")
            || code.starts_with("NoSuch")
            || code.contains("DoesNotExist")
            || matches!(
                code,
                "NonExistentQueue"
                    | "AWS.SimpleQueueService.NonExistentQueue"
                    | "ParameterNotFound"
                    | "ServiceNotFoundException"
                    | "ClusterNotFoundException"
                    | "NamespaceNotFound"
                    | "ObjectNotFoundException"
            )
        {
            Class::NotFound
        } else if code.contains("AlreadyExists")
            || code.ends_with(".Duplicate")
            || matches!(
                code,
                "EntityAlreadyExists"
                    | "QueueAlreadyExists"
                    | "QueueNameExists"
                    | "ParameterAlreadyExists"
                    | "NamespaceAlreadyExists"
                    | "ServiceAlreadyExists"
                    | "ResourceAlreadyExistsException"
                    | "RepositoryAlreadyExistsException"
                    | "CacheSubnetGroupAlreadyExists"
                    | "ReplicationGroupAlreadyExists"
                    | "InvalidGroup.Duplicate"
                    | "InvalidPermission.Duplicate"
            )
        {
            Class::AlreadyExists
        } else {
            Class::Permanent
        }
    }

    fn note(self) -> &'static str {
        match self {
            Class::Retryable => " (retryable)",
            Class::Dependency => " (dependency: retry once what uses it is gone)",
            Class::NotFound | Class::AlreadyExists | Class::Permanent => "",
        }
    }
}

/// An error of the AWS provider.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An AWS API call failed.
    #[error("{subject}: {action} failed: {code}: {message}{}", class.note())]
    Api {
        /// The resource.
        subject: Subject,
        /// The API action, e.g. `CreateQueue`.
        action: &'static str,
        /// AWS's error code, e.g. `AccessDenied`.
        code: String,
        /// AWS's error message.
        message: String,
        /// Retryable, dependency, ...
        class: Class,
    },
    /// AWS answered, but without something it always sends.
    #[error("{subject}: {action} answered without {missing}")]
    Incomplete {
        /// The resource.
        subject: Subject,
        /// The API action.
        action: &'static str,
        /// The missing field.
        missing: &'static str,
    },
    /// A resource with the stack's name exists but does not carry the
    /// stack's tag: stackctl never adopts or changes it.
    #[error(
        "{subject} exists but is not tagged `stackctl:stack={stack}` (found {found}): it belongs to something else; rename the stack or remove it"
    )]
    NotOurs {
        /// The resource.
        subject: Subject,
        /// The stack.
        stack: String,
        /// The tag value found (or `no tag`).
        found: String,
    },
    /// The Redis auth token's parameter is gone while the ElastiCache group
    /// or MemoryDB user it was made for still requires it: a new token would
    /// lock every engine process out of Redis.
    #[error(
        "the Redis auth token parameter {parameter} is missing, but {holder} still requires \
         the token it held: a new token would lock the engine out of Redis. Put the token \
         back (aws ssm put-parameter --type SecureString --name {parameter} --value TOKEN \
         --tags Key=stackctl:stack,Value={stack}), or delete the stack's Redis \
         (`stackctl down`) so that `up` creates it with a new one"
    )]
    RedisTokenLost {
        /// The stack.
        stack: String,
        /// The SSM parameter.
        parameter: String,
        /// What holds the token (`ElastiCache group s-redis`, `MemoryDB user s-engine`).
        holder: String,
    },
    /// The AWS configuration (credentials, region) is unusable.
    #[error("AWS configuration: {0}")]
    Config(String),
    /// The account has no default VPC (or it has no subnets).
    #[error("region {region} has no default VPC with subnets: {detail}")]
    NoDefaultVpc {
        /// The region.
        region: String,
        /// What was found.
        detail: String,
    },
    /// A placeholder could not be resolved while applying.
    #[error("{subject}: cannot resolve `{placeholder}`: {reason}")]
    Unresolved {
        /// The resource.
        subject: Subject,
        /// The placeholder text.
        placeholder: String,
        /// Why.
        reason: String,
    },
    /// The provider cannot (yet) perform this action on this kind.
    #[error("{subject}: {action} of a {kind} is not supported yet")]
    Unsupported {
        /// The resource.
        subject: Subject,
        /// `replace`, `delete`.
        action: &'static str,
        /// The kind label.
        kind: &'static str,
    },
    /// Another command holds the stack's lock.
    #[error(
        "stack `{stack}` is locked by {owner} (command `{command}`) until {expires}; wait, or pass --force-unlock if that command is dead"
    )]
    Locked {
        /// The stack.
        stack: String,
        /// Who holds it.
        owner: String,
        /// What it runs.
        command: String,
        /// When it expires (RFC 3339 UTC, or seconds since the epoch).
        expires: String,
    },
    /// `--force-unlock` of a lock its holder still renews.
    #[error(
        "stack `{stack}` is locked by {owner} (command `{command}`), which renewed the lock \
         {renewed_secs_ago}s ago (it renews every {every}s): it looks alive. Wait for it, or, \
         if you know it is dead, pass --force-unlock with --yes"
    )]
    LockAlive {
        /// The stack.
        stack: String,
        /// Who holds it.
        owner: String,
        /// What it runs.
        command: String,
        /// Seconds since the holder last renewed.
        renewed_secs_ago: u64,
        /// How often the holder renews.
        every: u64,
    },
    /// The lock was lost while held (expired, or broken by `--force-unlock`).
    #[error("stack `{stack}`: the lock was lost while applying ({reason})")]
    LockLost {
        /// The stack.
        stack: String,
        /// What happened.
        reason: String,
    },
    /// Pushing the engine image to the stack's repository failed.
    #[error("{subject}: {action} failed: {source}")]
    Image {
        /// The repository.
        subject: Subject,
        /// `push`, `decode the ECR authorization token`.
        action: &'static str,
        /// What the registry client reported.
        #[source]
        source: Box<crate::image::ImageError>,
    },
    /// Apply stopped: every resource that failed.
    #[error("{} resource(s) failed:\n{}", .0.len(), render_list(.0))]
    Failed(Vec<AwsError>),
}

fn render_list(errors: &[AwsError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl AwsError {
    /// Builds an [`AwsError::Api`] from an SDK error: the service's code and
    /// message, or for transport failures a synthetic code and the full
    /// error chain.
    pub fn api<E>(subject: Subject, action: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = raw_status(&err);
        let (code, message) = match &err {
            SdkError::ServiceError(_) => (
                err.code().unwrap_or("Unknown").to_string(),
                err.message()
                    .map(str::to_string)
                    .unwrap_or_else(|| DisplayErrorContext(&err).to_string()),
            ),
            SdkError::TimeoutError(_) => ("Timeout".into(), DisplayErrorContext(&err).to_string()),
            SdkError::DispatchFailure(_) => (
                "DispatchFailure".into(),
                DisplayErrorContext(&err).to_string(),
            ),
            _ => (
                err.code().unwrap_or("ResponseError").to_string(),
                DisplayErrorContext(&err).to_string(),
            ),
        };
        let class = Class::of(&code, status);
        AwsError::Api {
            subject,
            action,
            code,
            message,
            class,
        }
    }

    /// The class of an API error (`Permanent` for the other variants).
    pub fn class(&self) -> Class {
        match self {
            AwsError::Api { class, .. } => *class,
            _ => Class::Permanent,
        }
    }

    /// Whether the resource was not found.
    pub fn is_not_found(&self) -> bool {
        self.class() == Class::NotFound
    }

    /// Whether the resource exists already.
    pub fn is_already_exists(&self) -> bool {
        self.class() == Class::AlreadyExists
    }

    /// AWS's error code, for API errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn raw_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            err.raw_response().map(|r| r.status().as_u16())
        }
        _ => None,
    }
}

/// Shorthand for results of the AWS provider.
pub type Result<T, E = AwsError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes() {
        assert_eq!(
            Class::of("DependencyViolation", Some(400)),
            Class::Dependency
        );
        assert_eq!(
            Class::of("ThrottlingException", Some(400)),
            Class::Retryable
        );
        assert_eq!(Class::of("Whatever", Some(503)), Class::Retryable);
        assert_eq!(Class::of("NoSuchEntity", Some(404)), Class::NotFound);
        assert_eq!(
            Class::of("InvalidGroup.NotFound", Some(400)),
            Class::NotFound
        );
        assert_eq!(
            Class::of("EntityAlreadyExists", Some(409)),
            Class::AlreadyExists
        );
        assert_eq!(Class::of("AccessDenied", Some(403)), Class::Permanent);
    }

    #[test]
    fn display_shows_resource_action_code_and_message() {
        let err = AwsError::Api {
            subject: Subject::new(&LogicalId::new("sqs.events"), "demo-events"),
            action: "CreateQueue",
            code: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
            class: Class::Retryable,
        };
        assert_eq!(
            err.to_string(),
            "`sqs.events` (demo-events): CreateQueue failed: ThrottlingException: Rate exceeded (retryable)"
        );
    }
}
