//! The names of the price table's entries (`ec2_instance_hour.t3.medium`,
//! `fargate.arm64.vcpu_hour`): how a priced line names the price it uses,
//! and how `--live-prices` names the prices it fetched.

use super::footprint::StateEngine;
use crate::arch::Architecture;

/// EBS gp3 storage per GB-month.
pub const EBS_GP3: &str = "ebs_gp3_gb_month";
/// A public IPv4 address per hour.
pub const PUBLIC_IPV4: &str = "public_ipv4_hour";
/// An API Gateway VPC link per hour.
pub const VPC_LINK: &str = "vpc_link_hour";
/// API Gateway REST API requests per million.
pub const REST_API: &str = "rest_api_requests_million";
/// SQS standard-queue requests per million.
pub const SQS: &str = "sqs_requests_million";
/// CloudWatch Logs ingestion per GB.
pub const LOGS_INGESTED: &str = "logs_ingested_gb";
/// CloudWatch Logs storage per GB-month.
pub const LOGS_STORED: &str = "logs_stored_gb_month";
/// A CloudWatch alarm per month.
pub const ALARM: &str = "alarm_month";
/// A Route 53 hosted zone per month.
pub const HOSTED_ZONE: &str = "hosted_zone_month";
/// A Cloud Map registered instance per month.
pub const CLOUD_MAP: &str = "cloud_map_instance_month";

/// Fargate's `vcpu_hour` or `gb_hour` for an architecture.
pub fn fargate(arch: Architecture, what: &str) -> String {
    format!("fargate.{}.{what}", arch.as_str())
}

/// An EC2 instance type's hour.
pub fn ec2(instance_type: &str) -> String {
    format!("ec2_instance_hour.{instance_type}")
}

/// An ElastiCache or MemoryDB node type's hour.
pub fn state(engine: StateEngine, node_type: &str) -> String {
    match engine {
        StateEngine::ElastiCache => format!("elasticache_node_hour.{node_type}"),
        StateEngine::MemoryDb => format!("memorydb_node_hour.{node_type}"),
    }
}

/// A load balancer's `hour` or `lcu_hour` by type (`application`,
/// `network`).
pub fn lb(lb_type: &str, what: &str) -> String {
    if lb_type == "network" {
        format!("nlb_{what}")
    } else {
        format!("alb_{what}")
    }
}
