//! The desired attributes of each kind of resource, as one typed struct per
//! kind. Field names are the ones the provider compares: the observed state
//! read from AWS is built into the same structs, and [`Attributes::diff`]
//! lists the changed paths (`container.environment.RUST_LOG`), which
//! [`Kind::replaced_on`](super::Kind::replaced_on) sorts into "update in
//! place" or "replace".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An IAM policy document, serialized in AWS's own shape so it can be sent
/// as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// Always `2012-10-17`.
    pub version: String,
    /// The statements.
    pub statement: Vec<Statement>,
}

impl PolicyDocument {
    /// A document with these statements.
    pub fn new(statement: Vec<Statement>) -> Self {
        Self {
            version: "2012-10-17".into(),
            statement,
        }
    }

    /// A trust policy letting an AWS service (e.g. `ecs-tasks.amazonaws.com`)
    /// assume the role.
    pub fn trust(service: &str) -> Self {
        Self::new(vec![Statement {
            sid: None,
            effect: "Allow".into(),
            principal: Some(BTreeMap::from([("Service".into(), service.into())])),
            action: vec!["sts:AssumeRole".into()],
            resource: Vec::new(),
        }])
    }
}

/// One policy statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// Statement id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// `Allow`.
    pub effect: String,
    /// Principal (trust policies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<BTreeMap<String, String>>,
    /// Actions; never a wildcard.
    pub action: Vec<String>,
    /// Resource ARNs (absent in trust policies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource: Vec<String>,
}

impl Statement {
    /// An `Allow` statement.
    pub fn allow(sid: &str, action: &[&str], resource: Vec<String>) -> Self {
        Self {
            sid: Some(sid.into()),
            effect: "Allow".into(),
            principal: None,
            action: action.iter().map(|a| (*a).to_string()).collect(),
            resource,
        }
    }
}

/// Where a security group rule's traffic comes from or goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// An IPv4 CIDR block (or a placeholder such as `${vpc_cidr}`).
    Cidr(String),
    /// Another security group, by id placeholder (`${ec2.sg.runner.id}`).
    SecurityGroup(String),
}

/// One security group rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// `tcp`, or `-1` for all traffic.
    pub protocol: String,
    /// First port (`-1` with protocol `-1`).
    pub from_port: i32,
    /// Last port.
    pub to_port: i32,
    /// The other side.
    pub peer: Peer,
    /// Why the rule exists (shown in the console).
    pub description: String,
}

/// [`Kind::SecurityGroup`](super::Kind::SecurityGroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// Group description (immutable in AWS).
    pub description: String,
    /// VPC id.
    pub vpc_id: String,
    /// Inbound rules.
    pub ingress: Vec<Rule>,
    /// Outbound rules.
    pub egress: Vec<Rule>,
}

/// [`Kind::IamRole`](super::Kind::IamRole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IamRole {
    /// Role description.
    pub description: String,
    /// Who may assume it.
    pub assume_role_policy: PolicyDocument,
}

/// [`Kind::IamRolePolicy`](super::Kind::IamRolePolicy): an inline policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IamRolePolicy {
    /// The role it belongs to (`${iam.role.x.name}`).
    pub role_name: String,
    /// The policy.
    pub document: PolicyDocument,
}

/// [`Kind::IamInstanceProfile`](super::Kind::IamInstanceProfile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IamInstanceProfile {
    /// The one role in the profile (`${iam.role.x.name}`).
    pub role_name: String,
}

/// [`Kind::LogGroup`](super::Kind::LogGroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogGroup {
    /// Days to keep events.
    pub retention_days: u32,
}

/// Redrive of a queue to its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redrive {
    /// The DLQ's ARN (`${sqs.x-dlq.arn}`).
    pub dead_letter_target_arn: String,
    /// Receives before a message moves to the DLQ.
    pub max_receive_count: u32,
}

/// [`Kind::SqsQueue`](super::Kind::SqsQueue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqsQueue {
    /// Visibility timeout in seconds.
    pub visibility_timeout_seconds: u64,
    /// Retention in seconds.
    pub message_retention_seconds: u64,
    /// Long-polling wait in seconds.
    pub receive_wait_time_seconds: u32,
    /// SQS-managed server-side encryption.
    pub sqs_managed_sse: bool,
    /// Dead-lettering (queues, not DLQs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive: Option<Redrive>,
}

/// [`Kind::ElastiCacheSubnetGroup`](super::Kind::ElastiCacheSubnetGroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElastiCacheSubnetGroup {
    /// Description.
    pub description: String,
    /// Subnets (`${default_subnets}`).
    pub subnet_ids: Vec<String>,
}

/// [`Kind::ElastiCacheReplicationGroup`](super::Kind::ElastiCacheReplicationGroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElastiCacheReplicationGroup {
    /// Description.
    pub description: String,
    /// `redis`.
    pub engine: String,
    /// Engine version.
    pub engine_version: String,
    /// Node type.
    pub node_type: String,
    /// Replicas next to the primary.
    pub replicas: u32,
    /// On when there are replicas.
    pub automatic_failover: bool,
    /// On when there are replicas.
    pub multi_az: bool,
    /// Days of automatic snapshots kept (0: none).
    pub snapshot_retention_days: u32,
    /// Port.
    pub port: u16,
    /// Subnet group (`${elasticache.subnet-group.name}`).
    pub subnet_group: String,
    /// Parameter group (`${elasticache.parameter-group.name}`).
    pub parameter_group: String,
    /// Security groups.
    pub security_group_ids: Vec<String>,
    /// TLS in transit.
    pub transit_encryption: bool,
    /// Encryption at rest.
    pub at_rest_encryption: bool,
    /// Auth token (`${secret:redis_auth_token}`), when auth is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
}

/// [`Kind::ElastiCacheParameterGroup`](super::Kind::ElastiCacheParameterGroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElastiCacheParameterGroup {
    /// Parameter group family (`redis7`).
    pub family: String,
    /// Description.
    pub description: String,
    /// The parameters set (name -> value); the others keep the family's defaults.
    pub parameters: BTreeMap<String, String>,
}

/// [`Kind::MemoryDbSubnetGroup`](super::Kind::MemoryDbSubnetGroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryDbSubnetGroup {
    /// Description.
    pub description: String,
    /// Subnets (`${default_subnets}`).
    pub subnet_ids: Vec<String>,
}

/// [`Kind::MemoryDbUser`](super::Kind::MemoryDbUser): the engine's user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryDbUser {
    /// Redis ACL rules (`on ~* &* +@all`).
    pub access_string: String,
    /// Its password (`${secret:redis_auth_token}`); only whether one is
    /// set reads back.
    pub password: String,
}

/// [`Kind::MemoryDbAcl`](super::Kind::MemoryDbAcl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryDbAcl {
    /// Its users (`${memorydb.user.name}`).
    pub user_names: Vec<String>,
}

/// [`Kind::MemoryDbCluster`](super::Kind::MemoryDbCluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryDbCluster {
    /// Description.
    pub description: String,
    /// Engine version.
    pub engine_version: String,
    /// Node type.
    pub node_type: String,
    /// Shards (one: the engine keeps every key in one hash slot).
    pub shards: u32,
    /// Replicas per shard.
    pub replicas: u32,
    /// Days of automatic snapshots kept (0: none).
    pub snapshot_retention_days: u32,
    /// Port.
    pub port: u16,
    /// Subnet group (`${memorydb.subnet-group.name}`).
    pub subnet_group: String,
    /// Parameter group (the default one's `maxmemory-policy` is `noeviction`).
    pub parameter_group: String,
    /// Access control list (`${memorydb.acl.name}`).
    pub acl: String,
    /// Security groups.
    pub security_group_ids: Vec<String>,
    /// TLS (MemoryDB requires it for any ACL but `open-access`).
    pub tls: bool,
}

/// [`Kind::EcrRepository`](super::Kind::EcrRepository).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcrRepository {
    /// `MUTABLE` or `IMMUTABLE`.
    pub image_tag_mutability: String,
    /// Scan images on push.
    pub scan_on_push: bool,
    /// `AES256`.
    pub encryption: String,
}

/// [`Kind::EcsCluster`](super::Kind::EcsCluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsCluster {
    /// Capacity providers.
    pub capacity_providers: Vec<String>,
    /// CloudWatch Container Insights.
    pub container_insights: bool,
}

/// The one container of an engine task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// Container name (the role).
    pub name: String,
    /// Image URI (`${image}`).
    pub image: String,
    /// Arguments after the image's entrypoint.
    pub command: Vec<String>,
    /// Port the role listens on.
    pub port: u16,
    /// Environment, rendered from `templates/engine.env`.
    pub environment: BTreeMap<String, String>,
    /// Environment variables ECS fills from SSM parameters when the task
    /// starts (name → parameter ARN): secrets never stored in the task
    /// definition itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// `awslogs` log group.
    pub log_group: String,
    /// `awslogs` stream prefix.
    pub log_stream_prefix: String,
    /// Hard memory limit in MiB (equal to the task's).
    pub memory: u32,
    /// The container health check's command (`["CMD", program, args...]`);
    /// empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check: Vec<String>,
    /// Containers of the task this one starts after (name → ECS condition,
    /// e.g. `START`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, String>,
}

/// A container next to the engine in its task (the OpenTelemetry
/// collector): not essential, so its failure never stops the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Container name.
    pub name: String,
    /// Image URI (pinned).
    pub image: String,
    /// Arguments after the image's entrypoint.
    pub command: Vec<String>,
    /// Environment.
    pub environment: BTreeMap<String, String>,
    /// `awslogs` log group (the role's).
    pub log_group: String,
    /// `awslogs` stream prefix.
    pub log_stream_prefix: String,
    /// Hard memory limit in MiB (taken from the task's, off the engine's).
    pub memory: u32,
    /// The container health check's command; empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check: Vec<String>,
}

/// [`Kind::EcsTaskDefinition`](super::Kind::EcsTaskDefinition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsTaskDefinition {
    /// CPU units.
    pub cpu: u32,
    /// Memory in MiB.
    pub memory: u32,
    /// `awsvpc`.
    pub network_mode: String,
    /// `FARGATE`.
    pub requires_compatibilities: Vec<String>,
    /// `X86_64` or `ARM64`: the engine image's (`${cpu_architecture}`).
    pub cpu_architecture: String,
    /// Execution role (`${iam.role.execution.arn}`).
    pub execution_role_arn: String,
    /// Task role (`${iam.role.task.arn}`).
    pub task_role_arn: String,
    /// The engine's container.
    pub container: Container,
    /// Containers next to it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Sidecar>,
}

/// A load balancer attachment of an ECS service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceLoadBalancer {
    /// Target group (`${elb.target-group.arn}`).
    pub target_group_arn: String,
    /// Container name.
    pub container_name: String,
    /// Container port.
    pub container_port: u16,
}

/// [`Kind::EcsService`](super::Kind::EcsService).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsService {
    /// Cluster (`${ecs.cluster.arn}`).
    pub cluster: String,
    /// Task definition (`${ecs.taskdef.x.arn}`).
    pub task_definition: String,
    /// Desired tasks; when auto-scaling governs the service, only its bounds
    /// are compared.
    pub desired_count: u32,
    /// Whether a scalable target owns `desired_count`.
    pub scaling_managed: bool,
    /// `FARGATE`.
    pub launch_type: String,
    /// Subnets.
    pub subnets: Vec<String>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Public IP: the default VPC has no NAT, and tasks must reach ECR and SQS.
    pub assign_public_ip: bool,
    /// Deployment circuit breaker.
    pub circuit_breaker: bool,
    /// Roll back a failed deployment.
    pub rollback: bool,
    /// Deployment minimum healthy percent.
    pub minimum_healthy_percent: u32,
    /// Deployment maximum percent.
    pub maximum_percent: u32,
    /// Load balancer attachments.
    pub load_balancers: Vec<ServiceLoadBalancer>,
    /// Cloud Map registries (`${cloudmap.service.arn}`).
    pub service_registries: Vec<String>,
    /// Grace period before load-balancer health checks count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<u32>,
}

/// [`Kind::LaunchTemplate`](super::Kind::LaunchTemplate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTemplate {
    /// AMI (`${ami_id}`: Amazon Linux 2023 for the engine image's
    /// architecture, from [`Architecture::ami_parameter`](crate::arch::Architecture::ami_parameter)).
    pub image_id: String,
    /// Instance type.
    pub instance_type: String,
    /// Instance profile (`${iam.instance-profile.executors.arn}`).
    pub instance_profile_arn: String,
    /// Security groups.
    pub security_group_ids: Vec<String>,
    /// Public IP (no NAT in the default VPC).
    pub associate_public_ip_address: bool,
    /// IMDSv2 only.
    pub http_tokens: String,
    /// 2, so containers on the host reach the metadata service.
    pub http_put_response_hop_limit: u32,
    /// Boot script, rendered from `templates/executor-user-data.sh`
    /// (plain text here; base64-encoded when sent).
    pub user_data: String,
}

/// [`Kind::AutoScalingGroup`](super::Kind::AutoScalingGroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoScalingGroup {
    /// Launch template id.
    pub launch_template_id: String,
    /// Launch template version.
    pub launch_template_version: String,
    /// Minimum size.
    pub min_size: u32,
    /// Maximum size.
    pub max_size: u32,
    /// Desired capacity.
    pub desired_capacity: u32,
    /// Whether scaling policies own the desired capacity.
    pub scaling_managed: bool,
    /// Subnets.
    pub subnets: Vec<String>,
    /// `EC2`.
    pub health_check_type: String,
    /// Seconds before health checks count.
    pub health_check_grace_period_seconds: u32,
}

/// [`Kind::LoadBalancer`](super::Kind::LoadBalancer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// `application` or `network`.
    #[serde(rename = "type")]
    pub lb_type: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    /// Subnets.
    pub subnets: Vec<String>,
    /// Security groups (application load balancers).
    pub security_groups: Vec<String>,
}

/// A target group health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `HTTP`.
    pub protocol: String,
    /// Path.
    pub path: String,
    /// Seconds between checks.
    pub interval_seconds: u32,
    /// Successes to become healthy.
    pub healthy_threshold: u32,
    /// Failures to become unhealthy.
    pub unhealthy_threshold: u32,
}

/// [`Kind::TargetGroup`](super::Kind::TargetGroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroup {
    /// `HTTP` or `TCP`.
    pub protocol: String,
    /// Target port.
    pub port: u16,
    /// `ip` (Fargate tasks).
    pub target_type: String,
    /// VPC.
    pub vpc_id: String,
    /// Health check.
    pub health_check: HealthCheck,
    /// Seconds to drain a deregistering target.
    pub deregistration_delay_seconds: u32,
}

/// [`Kind::Listener`](super::Kind::Listener).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    /// Load balancer.
    pub load_balancer_arn: String,
    /// `HTTPS`, `HTTP` or `TCP`.
    pub protocol: String,
    /// Port.
    pub port: u16,
    /// Forward target.
    pub target_group_arn: String,
    /// The ACM certificate of an `HTTPS` listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// The TLS policy of an `HTTPS` listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
    /// The request paths (ELB path patterns) forwarded to the target group,
    /// by one listener rule; any other path answers 404. Empty: the default
    /// action forwards every path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// [`Kind::ApiGatewayVpcLink`](super::Kind::ApiGatewayVpcLink).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiGatewayVpcLink {
    /// Description.
    pub description: String,
    /// Network load balancers.
    pub target_arns: Vec<String>,
}

/// [`Kind::ApiGatewayRestApi`](super::Kind::ApiGatewayRestApi): a REST API
/// whose published resources (method `ANY` each) are `HTTP_PROXY`
/// integrations through the VPC link, and the stage (with its deployment)
/// that publishes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiGatewayRestApi {
    /// Description.
    pub description: String,
    /// Endpoint type (`REGIONAL`).
    pub endpoint_type: String,
    /// Each published resource path and where its integration sends
    /// requests: `/e/{proxy+}` to
    /// `http://<load balancer DNS name>:<listener port>/e/{proxy}`; a
    /// greedy `{proxy+}` part passes the rest of the path on.
    pub routes: BTreeMap<String, String>,
    /// The VPC link the integration goes through, held by the stage
    /// variable `vpcLinkId` (the integration's connection id refers to it).
    pub vpc_link_id: String,
    /// The stage that publishes the API (`v1`).
    pub stage: String,
}

/// [`Kind::ServiceDiscoveryNamespace`](super::Kind::ServiceDiscoveryNamespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDiscoveryNamespace {
    /// Description.
    pub description: String,
    /// VPC of the private hosted zone.
    pub vpc_id: String,
}

/// [`Kind::ServiceDiscoveryService`](super::Kind::ServiceDiscoveryService).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDiscoveryService {
    /// Namespace (`${cloudmap.namespace.id}`).
    pub namespace_id: String,
    /// `A` (awsvpc tasks).
    pub dns_record_type: String,
    /// DNS TTL.
    pub dns_ttl_seconds: u32,
    /// `MULTIVALUE`.
    pub routing_policy: String,
    /// ECS-reported health: failures before deregistration.
    pub health_check_failure_threshold: u32,
}

/// [`Kind::ScalableTarget`](super::Kind::ScalableTarget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalableTarget {
    /// `ecs`.
    pub service_namespace: String,
    /// `service/{cluster}/{service}`.
    pub resource_id: String,
    /// `ecs:service:DesiredCount`.
    pub scalable_dimension: String,
    /// Lower bound.
    pub min_capacity: u32,
    /// Upper bound.
    pub max_capacity: u32,
}

/// One step of a step-scaling policy; bounds are relative to the alarm
/// threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepAdjustment {
    /// Lower bound of the metric interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_bound: Option<f64>,
    /// Upper bound of the metric interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_bound: Option<f64>,
    /// Capacity change.
    pub adjustment: i32,
}

/// Step scaling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepScaling {
    /// `ChangeInCapacity`.
    pub adjustment_type: String,
    /// Cooldown after an adjustment.
    pub cooldown_seconds: u64,
    /// `Average`.
    pub metric_aggregation: String,
    /// Steps.
    pub steps: Vec<StepAdjustment>,
}

/// Target tracking settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetTracking {
    /// Predefined metric, e.g. `ALBRequestCountPerTarget`.
    pub predefined_metric: String,
    /// Resource label (`{lb arn suffix}/{tg arn suffix}`).
    pub resource_label: String,
    /// Value to hold.
    pub target_value: f64,
    /// Cooldown after scaling out.
    pub scale_out_cooldown_seconds: u64,
    /// Cooldown after scaling in.
    pub scale_in_cooldown_seconds: u64,
}

/// [`Kind::ScalingPolicy`](super::Kind::ScalingPolicy) and
/// [`Kind::AsgScalingPolicy`](super::Kind::AsgScalingPolicy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingPolicy {
    /// What it scales: a scalable target's resource id
    /// (`${scaling.target.x.resource_id}`) or an ASG name
    /// (`${autoscaling.group.executors.name}`).
    pub target: String,
    /// `StepScaling` or `TargetTrackingScaling`.
    pub policy_type: String,
    /// Step settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_scaling: Option<StepScaling>,
    /// Target tracking settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_tracking: Option<TargetTracking>,
}

/// [`Kind::CloudWatchAlarm`](super::Kind::CloudWatchAlarm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudWatchAlarm {
    /// Metric namespace (`AWS/ECS`, `AWS/SQS`, `AWS/EC2`).
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Dimensions.
    pub dimensions: BTreeMap<String, String>,
    /// `Average` (scaling) or `Maximum` (dead-letter queue depth).
    pub statistic: String,
    /// Seconds per period.
    pub period_seconds: u32,
    /// Periods that must breach.
    pub evaluation_periods: u32,
    /// Threshold.
    pub threshold: f64,
    /// `GreaterThanOrEqualToThreshold`, `LessThanOrEqualToThreshold` or
    /// `GreaterThanThreshold`.
    pub comparison_operator: String,
    /// Policies to run (`${scaling.policy.x.arn}`) or the SNS topic to
    /// notify; none for an alarm that only reports.
    pub alarm_actions: Vec<String>,
    /// The SNS topic told when the alarm returns to OK.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ok_actions: Vec<String>,
    /// What the alarm means and what to look at: the text a person reads in
    /// the notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `notBreaching` for metrics only published when something happens
    /// (5xx counts); none: AWS's default (`missing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treat_missing_data: Option<String>,
}

/// [`Kind::SnsTopic`](super::Kind::SnsTopic): the stack's own topic for
/// its alarms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnsTopic {
    /// Email addresses subscribed (sorted); a pending confirmation counts.
    pub email: Vec<String>,
}

/// The attributes of a resource, one variant per kind (serialized as the
/// inner struct; the kind is carried next to it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Attributes {
    SecurityGroup(SecurityGroup),
    IamRole(IamRole),
    IamRolePolicy(IamRolePolicy),
    IamInstanceProfile(IamInstanceProfile),
    LogGroup(LogGroup),
    SqsQueue(SqsQueue),
    ElastiCacheSubnetGroup(ElastiCacheSubnetGroup),
    ElastiCacheParameterGroup(ElastiCacheParameterGroup),
    ElastiCacheReplicationGroup(ElastiCacheReplicationGroup),
    MemoryDbSubnetGroup(MemoryDbSubnetGroup),
    MemoryDbUser(MemoryDbUser),
    MemoryDbAcl(MemoryDbAcl),
    MemoryDbCluster(MemoryDbCluster),
    EcrRepository(EcrRepository),
    EcsCluster(EcsCluster),
    EcsTaskDefinition(Box<EcsTaskDefinition>),
    EcsService(Box<EcsService>),
    LaunchTemplate(LaunchTemplate),
    AutoScalingGroup(AutoScalingGroup),
    LoadBalancer(LoadBalancer),
    TargetGroup(TargetGroup),
    Listener(Listener),
    ApiGatewayVpcLink(ApiGatewayVpcLink),
    ApiGatewayRestApi(ApiGatewayRestApi),
    ServiceDiscoveryNamespace(ServiceDiscoveryNamespace),
    ServiceDiscoveryService(ServiceDiscoveryService),
    ScalableTarget(ScalableTarget),
    ScalingPolicy(ScalingPolicy),
    CloudWatchAlarm(CloudWatchAlarm),
    SnsTopic(SnsTopic),
}

impl Attributes {
    /// The attributes as JSON (the shape diffs and `--output json` use).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("attribute structs always serialize")
    }

    /// Dotted paths whose values differ between `self` (desired) and
    /// `observed`. Objects are compared key by key, and so are strings that
    /// hold JSON objects (the engine configuration in a container's
    /// environment) and arrays of objects with an `id` (its functions, by
    /// id), so that a plan names the function that changed; other arrays and
    /// scalars are compared as a whole.
    pub fn diff(&self, observed: &Attributes) -> Vec<String> {
        let mut changed = Vec::new();
        diff_values("", &self.to_value(), &observed.to_value(), &mut changed);
        changed
    }
}

fn diff_values(path: &str, desired: &Value, observed: &Value, out: &mut Vec<String>) {
    match (desired, observed) {
        (Value::Object(d), Value::Object(o)) => {
            let keys: std::collections::BTreeSet<&String> = d.keys().chain(o.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (d.get(key), o.get(key)) {
                    (Some(a), Some(b)) => diff_values(&sub, a, b, out),
                    _ => out.push(sub),
                }
            }
        }
        (Value::String(a), Value::String(b)) if a != b => match (json_object(a), json_object(b)) {
            (Some(a), Some(b)) => diff_values(path, &a, &b, out),
            _ => out.push(path.to_string()),
        },
        (Value::Array(a), Value::Array(b)) if a != b => match (by_id(a), by_id(b)) {
            (Some(a), Some(b)) => diff_values(path, &a, &b, out),
            _ => out.push(path.to_string()),
        },
        (a, b) if a != b => out.push(path.to_string()),
        _ => {}
    }
}

/// A string's JSON object, if it holds one.
fn json_object(s: &str) -> Option<Value> {
    if !s.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(s)
        .ok()
        .filter(Value::is_object)
}

/// An array of objects with distinct string `id`s, as an object keyed by id.
fn by_id(items: &[Value]) -> Option<Value> {
    let mut map = serde_json::Map::new();
    for item in items {
        let id = item.get("id")?.as_str()?;
        if map.insert(id.to_string(), item.clone()).is_some() {
            return None;
        }
    }
    Some(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_nested_paths() {
        let a = Attributes::LogGroup(LogGroup { retention_days: 14 });
        let b = Attributes::LogGroup(LogGroup { retention_days: 7 });
        assert_eq!(a.diff(&b), vec!["retention_days"]);
        assert!(a.diff(&a.clone()).is_empty());

        let q = |redrive: Option<Redrive>| {
            Attributes::SqsQueue(SqsQueue {
                visibility_timeout_seconds: 30,
                message_retention_seconds: 60,
                receive_wait_time_seconds: 20,
                sqs_managed_sse: true,
                redrive,
            })
        };
        let r = |n| {
            Some(Redrive {
                dead_letter_target_arn: "arn".into(),
                max_receive_count: n,
            })
        };
        assert_eq!(q(r(5)).diff(&q(r(6))), vec!["redrive.max_receive_count"]);
        assert_eq!(q(r(5)).diff(&q(None)), vec!["redrive"]);
    }

    #[test]
    fn diff_names_the_function_that_changed_inside_a_json_environment_value() {
        let config = |steps: &str| {
            serde_json::json!({
                "env": format!(
                    r#"{{"functions":[{{"id":"a","steps":[]}},{{"id":"b","steps":{steps}}}],"log":"json"}}"#
                )
            })
        };
        let mut out = Vec::new();
        diff_values("", &config("[1]"), &config("[2]"), &mut out);
        assert_eq!(out, vec!["env.functions.b.steps"]);
        let mut out = Vec::new();
        diff_values("", &json!({"e": "x"}), &json!({"e": "y"}), &mut out);
        assert_eq!(out, vec!["e"], "plain strings stay whole");
        let mut out = Vec::new();
        diff_values("", &json!({"l": [1, 2]}), &json!({"l": [2]}), &mut out);
        assert_eq!(out, vec!["l"], "arrays without ids stay whole");
    }
}
