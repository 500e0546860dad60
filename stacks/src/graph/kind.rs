//! The kinds of AWS resources a stack is made of, and everything the
//! provider knows of each without asking AWS, in one [`KindInfo`] per kind:
//! its label, AWS's limit on its name, whether it carries tags, when it
//! starts, which attribute changes replace it, its outputs, the order `down`
//! deletes it in and the parent AWS deletes it with. Each kind's arm of
//! [`Kind::info`] is a whole `KindInfo`, so a kind that misses one of them
//! does not compile; how it is read, applied and deleted is the exhaustive
//! dispatch in `aws::kinds`.

use std::fmt;

use serde::Serialize;

/// The kinds of AWS resources a stack is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// EC2 security group, with its ingress and egress rules folded in.
    SecurityGroup,
    /// IAM role.
    IamRole,
    /// IAM inline policy of a role.
    IamRolePolicy,
    /// IAM instance profile.
    IamInstanceProfile,
    /// CloudWatch Logs log group.
    LogGroup,
    /// SQS queue (a queue or a dead-letter queue).
    SqsQueue,
    /// ElastiCache subnet group.
    #[serde(rename = "elasticache_subnet_group")]
    ElastiCacheSubnetGroup,
    /// ElastiCache parameter group.
    #[serde(rename = "elasticache_parameter_group")]
    ElastiCacheParameterGroup,
    /// ElastiCache (Redis) replication group.
    #[serde(rename = "elasticache_replication_group")]
    ElastiCacheReplicationGroup,
    /// MemoryDB subnet group.
    #[serde(rename = "memorydb_subnet_group")]
    MemoryDbSubnetGroup,
    /// MemoryDB user.
    #[serde(rename = "memorydb_user")]
    MemoryDbUser,
    /// MemoryDB access control list.
    #[serde(rename = "memorydb_acl")]
    MemoryDbAcl,
    /// MemoryDB cluster.
    #[serde(rename = "memorydb_cluster")]
    MemoryDbCluster,
    /// ECR repository.
    EcrRepository,
    /// ECS cluster.
    EcsCluster,
    /// ECS task definition family.
    EcsTaskDefinition,
    /// ECS service.
    EcsService,
    /// EC2 launch template.
    LaunchTemplate,
    /// EC2 Auto Scaling Group.
    AutoScalingGroup,
    /// Elastic Load Balancing v2 load balancer (ALB or NLB).
    LoadBalancer,
    /// ELBv2 target group.
    TargetGroup,
    /// ELBv2 listener.
    Listener,
    /// API Gateway VPC link.
    ApiGatewayVpcLink,
    /// API Gateway REST API with its proxy integration and stage.
    ApiGatewayRestApi,
    /// Cloud Map private DNS namespace.
    ServiceDiscoveryNamespace,
    /// Cloud Map service.
    ServiceDiscoveryService,
    /// Application Auto Scaling scalable target.
    ScalableTarget,
    /// Application Auto Scaling policy.
    ScalingPolicy,
    /// EC2 Auto Scaling policy.
    AsgScalingPolicy,
    /// CloudWatch metric alarm.
    #[serde(rename = "cloudwatch_alarm")]
    CloudWatchAlarm,
    /// SNS topic (the alarms' notifications) with its email subscriptions.
    SnsTopic,
}

/// What is known of a kind without asking AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// A short human label (`SQS queue`).
    pub label: &'static str,
    /// The longest physical name AWS accepts (`None`: no name of its own,
    /// or no limit a stack name can reach).
    pub name_limit: Option<usize>,
    /// Whether AWS lets it carry tags. Untaggable resources (inline
    /// policies, scaling policies) are found through their parent instead.
    pub taggable: bool,
    /// Start order among resources ready at the same time: higher first
    /// (see [`super::Graph::apply_order`]).
    pub priority: u8,
    /// Attribute paths whose change cannot be applied in place: the resource
    /// is replaced. `*` means every change replaces (immutable resources).
    /// A path matches itself and everything below it.
    pub replaced_on: &'static [&'static str],
    /// Outputs other resources may refer to with `${logical.id.output}`.
    pub outputs: &'static [&'static str],
    /// Outputs that change when it is updated in place (a launch template's
    /// new version): a plan shows dependents' uses of them as unknown.
    pub outputs_changed_by_update: &'static [&'static str],
    /// `down`'s order for resources outside the graph (left by an older
    /// spec): lower ranks are deleted first.
    pub teardown_rank: u8,
    /// The kind whose deletion takes this one with it (an inline policy goes
    /// with its role, a listener with its load balancer): the sweep after
    /// `down` looks for that parent instead; every other kind it lists itself.
    pub deleted_with: Option<Kind>,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 31] = [
        Kind::SecurityGroup,
        Kind::IamRole,
        Kind::IamRolePolicy,
        Kind::IamInstanceProfile,
        Kind::LogGroup,
        Kind::SqsQueue,
        Kind::ElastiCacheSubnetGroup,
        Kind::ElastiCacheParameterGroup,
        Kind::ElastiCacheReplicationGroup,
        Kind::MemoryDbSubnetGroup,
        Kind::MemoryDbUser,
        Kind::MemoryDbAcl,
        Kind::MemoryDbCluster,
        Kind::EcrRepository,
        Kind::EcsCluster,
        Kind::EcsTaskDefinition,
        Kind::EcsService,
        Kind::LaunchTemplate,
        Kind::AutoScalingGroup,
        Kind::LoadBalancer,
        Kind::TargetGroup,
        Kind::Listener,
        Kind::ApiGatewayVpcLink,
        Kind::ApiGatewayRestApi,
        Kind::ServiceDiscoveryNamespace,
        Kind::ServiceDiscoveryService,
        Kind::ScalableTarget,
        Kind::ScalingPolicy,
        Kind::AsgScalingPolicy,
        Kind::CloudWatchAlarm,
        Kind::SnsTopic,
    ];

    /// What is known of this kind.
    pub const fn info(self) -> KindInfo {
        match self {
            Kind::SecurityGroup => KindInfo {
                label: "security group",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &["description", "vpc_id"],
                outputs: &["id"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::IamRole => KindInfo {
                label: "IAM role",
                name_limit: Some(64),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["arn", "name"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::IamRolePolicy => KindInfo {
                label: "IAM role policy",
                name_limit: Some(128),
                taggable: false,
                priority: 0,
                replaced_on: &[],
                outputs: &[],
                outputs_changed_by_update: &[],
                teardown_rank: 5,
                deleted_with: Some(Kind::IamRole),
            },
            Kind::IamInstanceProfile => KindInfo {
                label: "IAM instance profile",
                name_limit: Some(128),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["arn", "name"],
                outputs_changed_by_update: &[],
                teardown_rank: 5,
                deleted_with: None,
            },
            Kind::LogGroup => KindInfo {
                label: "log group",
                name_limit: Some(512),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["arn", "name"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::SqsQueue => KindInfo {
                label: "SQS queue",
                name_limit: Some(80),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["arn", "url"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::ElastiCacheSubnetGroup => KindInfo {
                label: "ElastiCache subnet group",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["name"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::ElastiCacheParameterGroup => KindInfo {
                label: "ElastiCache parameter group",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &["family"],
                outputs: &["name"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::ElastiCacheReplicationGroup => KindInfo {
                label: "ElastiCache replication group",
                name_limit: Some(40),
                taggable: true,
                // 5-15 minutes to create: started first.
                priority: 100,
                replaced_on: &[
                    "engine",
                    "subnet_group",
                    "transit_encryption",
                    "at_rest_encryption",
                    "port",
                ],
                outputs: &["primary_endpoint", "port"],
                outputs_changed_by_update: &[],
                teardown_rank: 5,
                deleted_with: None,
            },
            Kind::MemoryDbSubnetGroup => KindInfo {
                label: "MemoryDB subnet group",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["name"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::MemoryDbUser => KindInfo {
                label: "MemoryDB user",
                name_limit: Some(40),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["name"],
                outputs_changed_by_update: &[],
                // Once no ACL holds it.
                teardown_rank: 7,
                deleted_with: None,
            },
            Kind::MemoryDbAcl => KindInfo {
                label: "MemoryDB ACL",
                name_limit: Some(40),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["name"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::MemoryDbCluster => KindInfo {
                label: "MemoryDB cluster",
                name_limit: Some(40),
                taggable: true,
                // 5-15 minutes to create: started first.
                priority: 100,
                replaced_on: &["subnet_group", "tls", "port", "shards"],
                outputs: &["endpoint", "port"],
                outputs_changed_by_update: &[],
                teardown_rank: 5,
                deleted_with: None,
            },
            Kind::EcrRepository => KindInfo {
                label: "ECR repository",
                name_limit: Some(256),
                taggable: true,
                priority: 0,
                replaced_on: &["encryption"],
                outputs: &["arn", "uri"],
                outputs_changed_by_update: &[],
                teardown_rank: 6,
                deleted_with: None,
            },
            Kind::EcsCluster => KindInfo {
                label: "ECS cluster",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["arn", "name"],
                outputs_changed_by_update: &[],
                teardown_rank: 5,
                deleted_with: None,
            },
            Kind::EcsTaskDefinition => KindInfo {
                label: "ECS task definition",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                // Immutable: a change registers a new revision.
                replaced_on: &["*"],
                outputs: &["arn"],
                outputs_changed_by_update: &[],
                teardown_rank: 4,
                deleted_with: None,
            },
            Kind::EcsService => KindInfo {
                label: "ECS service",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &["cluster", "launch_type", "service_registries"],
                outputs: &["arn", "name"],
                outputs_changed_by_update: &[],
                teardown_rank: 3,
                deleted_with: None,
            },
            Kind::LaunchTemplate => KindInfo {
                label: "launch template",
                name_limit: Some(128),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["id", "latest_version"],
                outputs_changed_by_update: &["latest_version"],
                teardown_rank: 4,
                deleted_with: None,
            },
            Kind::AutoScalingGroup => KindInfo {
                label: "Auto Scaling group",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["name"],
                outputs_changed_by_update: &[],
                teardown_rank: 3,
                deleted_with: None,
            },
            Kind::LoadBalancer => KindInfo {
                label: "load balancer",
                name_limit: Some(32),
                taggable: true,
                // A few minutes to create.
                priority: 50,
                replaced_on: &["scheme", "type"],
                outputs: &["arn", "arn_suffix", "dns_name"],
                outputs_changed_by_update: &[],
                teardown_rank: 4,
                deleted_with: None,
            },
            Kind::TargetGroup => KindInfo {
                label: "target group",
                name_limit: Some(32),
                taggable: true,
                priority: 0,
                replaced_on: &["protocol", "port", "target_type", "vpc_id"],
                outputs: &["arn", "arn_suffix"],
                outputs_changed_by_update: &[],
                teardown_rank: 4,
                deleted_with: None,
            },
            Kind::Listener => KindInfo {
                label: "listener",
                name_limit: None,
                taggable: true,
                priority: 0,
                replaced_on: &["load_balancer_arn"],
                outputs: &["arn"],
                outputs_changed_by_update: &[],
                teardown_rank: 3,
                deleted_with: Some(Kind::LoadBalancer),
            },
            Kind::ApiGatewayVpcLink => KindInfo {
                label: "API Gateway VPC link",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &["target_arns"],
                outputs: &["id"],
                outputs_changed_by_update: &[],
                teardown_rank: 3,
                deleted_with: None,
            },
            Kind::ApiGatewayRestApi => KindInfo {
                label: "API Gateway REST API",
                name_limit: Some(1024),
                taggable: true,
                priority: 0,
                replaced_on: &["endpoint_type"],
                outputs: &["id", "invoke_url"],
                outputs_changed_by_update: &[],
                teardown_rank: 2,
                deleted_with: None,
            },
            Kind::ServiceDiscoveryNamespace => KindInfo {
                label: "Cloud Map namespace",
                name_limit: Some(253),
                taggable: true,
                priority: 0,
                replaced_on: &["vpc_id"],
                outputs: &["id"],
                outputs_changed_by_update: &[],
                teardown_rank: 5,
                deleted_with: None,
            },
            Kind::ServiceDiscoveryService => KindInfo {
                label: "Cloud Map service",
                name_limit: Some(127),
                taggable: true,
                priority: 0,
                replaced_on: &["namespace_id", "dns_record_type", "routing_policy"],
                outputs: &["arn", "id"],
                outputs_changed_by_update: &[],
                teardown_rank: 4,
                deleted_with: None,
            },
            Kind::ScalableTarget => KindInfo {
                label: "scalable target",
                name_limit: Some(1600),
                taggable: true,
                priority: 0,
                replaced_on: &["service_namespace", "resource_id", "scalable_dimension"],
                outputs: &["resource_id"],
                outputs_changed_by_update: &[],
                teardown_rank: 2,
                deleted_with: None,
            },
            Kind::ScalingPolicy => KindInfo {
                label: "scaling policy",
                name_limit: Some(256),
                taggable: false,
                priority: 0,
                replaced_on: &["policy_type"],
                outputs: &["arn"],
                outputs_changed_by_update: &[],
                teardown_rank: 1,
                deleted_with: None,
            },
            Kind::AsgScalingPolicy => KindInfo {
                label: "ASG scaling policy",
                name_limit: Some(255),
                taggable: false,
                priority: 0,
                replaced_on: &["policy_type"],
                outputs: &["arn"],
                outputs_changed_by_update: &[],
                teardown_rank: 1,
                deleted_with: None,
            },
            Kind::CloudWatchAlarm => KindInfo {
                label: "CloudWatch alarm",
                name_limit: Some(255),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["arn"],
                outputs_changed_by_update: &[],
                teardown_rank: 0,
                deleted_with: None,
            },
            Kind::SnsTopic => KindInfo {
                label: "SNS topic",
                name_limit: Some(256),
                taggable: true,
                priority: 0,
                replaced_on: &[],
                outputs: &["arn"],
                outputs_changed_by_update: &[],
                // After the alarms that notify it.
                teardown_rank: 1,
                deleted_with: None,
            },
        }
    }

    /// A short human label.
    pub fn label(self) -> &'static str {
        self.info().label
    }

    /// See [`KindInfo::name_limit`].
    pub fn name_limit(self) -> Option<usize> {
        self.info().name_limit
    }

    /// See [`KindInfo::taggable`].
    pub fn taggable(self) -> bool {
        self.info().taggable
    }

    /// See [`KindInfo::priority`].
    pub fn priority(self) -> u8 {
        self.info().priority
    }

    /// See [`KindInfo::replaced_on`].
    pub fn replaced_on(self) -> &'static [&'static str] {
        self.info().replaced_on
    }

    /// See [`KindInfo::outputs`].
    pub fn outputs(self) -> &'static [&'static str] {
        self.info().outputs
    }

    /// See [`KindInfo::deleted_with`].
    pub fn deleted_with(self) -> Option<Kind> {
        self.info().deleted_with
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
