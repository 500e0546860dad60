//! Typed SDK describe calls the AWS tests check a stack with: one call by
//! name, unwrapped to the one thing asked for. Each takes the client to use,
//! so a test can keep checking with plain SDK clients, independently of the
//! provider's (or with the provider's, where it reads as the provider does).

use aws_sdk_ec2::types::ResponseLaunchTemplateData;
use aws_sdk_ecs::types::{Service, TaskDefinition};
use aws_sdk_elasticache::types::ReplicationGroup;
use aws_sdk_elasticloadbalancingv2::types::{Listener, LoadBalancer, Rule};
use aws_sdk_ssm::types::Parameter;

/// The URL of the queue `name`.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// The SSM parameter `name` as stored (a SecureString stays encrypted).
pub async fn parameter(ssm: &aws_sdk_ssm::Client, name: &str) -> Parameter {
    ssm.get_parameter()
        .name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetParameter {name}: {e:?}"))
        .parameter
        .unwrap()
}

/// The decrypted value of the SSM parameter `name`.
pub async fn parameter_value(ssm: &aws_sdk_ssm::Client, name: &str) -> String {
    ssm.get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetParameter {name}: {e:?}"))
        .parameter
        .and_then(|p| p.value)
        .expect("parameter value")
}

/// The inline policy document of the role `name`, whose one policy has the
/// role's name (as the provider names them), as IAM answers it (URL-encoded).
pub async fn role_policy(iam: &aws_sdk_iam::Client, name: &str) -> String {
    iam.get_role_policy()
        .role_name(name)
        .policy_name(name)
        .send()
        .await
        .unwrap()
        .policy_document
}

/// The ElastiCache replication group `id`.
pub async fn replication_group(cache: &aws_sdk_elasticache::Client, id: &str) -> ReplicationGroup {
    cache
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .unwrap()
        .replication_groups
        .unwrap()
        .remove(0)
}

/// The parameter group the ElastiCache cluster `id` (a group's member) uses.
pub async fn cache_cluster_parameter_group(
    cache: &aws_sdk_elasticache::Client,
    id: &str,
) -> Option<String> {
    cache
        .describe_cache_clusters()
        .cache_cluster_id(id)
        .send()
        .await
        .unwrap()
        .cache_clusters
        .unwrap()
        .remove(0)
        .cache_parameter_group
        .and_then(|g| g.cache_parameter_group_name)
}

/// A task definition: a family's latest revision, or one revision by ARN.
pub async fn task_definition(ecs: &aws_sdk_ecs::Client, family_or_arn: &str) -> TaskDefinition {
    ecs.describe_task_definition()
        .task_definition(family_or_arn)
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap()
}

/// The ECS services `names` of `cluster`, in that order.
pub async fn services(ecs: &aws_sdk_ecs::Client, cluster: &str, names: &[&str]) -> Vec<Service> {
    ecs.describe_services()
        .cluster(cluster)
        .set_services(Some(names.iter().map(|n| n.to_string()).collect()))
        .send()
        .await
        .unwrap()
        .services
        .unwrap()
}

/// The ECS service `name` of `cluster`.
pub async fn service(ecs: &aws_sdk_ecs::Client, cluster: &str, name: &str) -> Service {
    services(ecs, cluster, &[name]).await.remove(0)
}

/// What the latest version of the launch template `name` launches.
pub async fn latest_launch_template(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> ResponseLaunchTemplateData {
    ec2.describe_launch_template_versions()
        .launch_template_name(name)
        .versions("$Latest")
        .send()
        .await
        .unwrap()
        .launch_template_versions
        .unwrap_or_default()
        .remove(0)
        .launch_template_data
        .unwrap()
}

/// The load balancer `name`.
pub async fn load_balancer(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
) -> LoadBalancer {
    elb.describe_load_balancers()
        .names(name)
        .send()
        .await
        .unwrap()
        .load_balancers
        .unwrap()
        .remove(0)
}

/// The listeners of the load balancer `arn`.
pub async fn listeners_of(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arn: &str,
) -> Vec<Listener> {
    elb.describe_listeners()
        .load_balancer_arn(arn)
        .send()
        .await
        .unwrap()
        .listeners
        .unwrap_or_default()
}

/// The rules of the listener `arn`, its default rule included.
pub async fn listener_rules(elb: &aws_sdk_elasticloadbalancingv2::Client, arn: &str) -> Vec<Rule> {
    elb.describe_rules()
        .listener_arn(arn)
        .send()
        .await
        .unwrap()
        .rules
        .unwrap_or_default()
}
