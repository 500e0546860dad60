//! What of a stack AWS bills for, read off resources in the graph's shape:
//! the desired graph (`cost`, `plan`) or the resources observed in AWS
//! (`plan`'s "before"). Services are tied to their task definitions and
//! scalable targets by logical id (`ecs.service.X`, `ecs.taskdef.X`,
//! `scaling.target.X`), which both shapes share.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::arch::Architecture;
use crate::graph::{Attributes, Kind, Resource};

/// The billable parts of a stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Footprint {
    /// The engine image's CPU architecture (Fargate's rate follows it).
    pub architecture: Architecture,
    /// ECS services on Fargate, by role (`event-api`, `runner`).
    pub services: Vec<ServiceUse>,
    /// The executors' Auto Scaling group.
    pub executors: Option<ExecutorUse>,
    /// ElastiCache or MemoryDB.
    pub state: Option<StateUse>,
    /// Load balancers.
    pub load_balancers: Vec<LoadBalancerUse>,
    /// API Gateway VPC links.
    pub vpc_links: u32,
    /// API Gateway REST APIs.
    pub rest_apis: u32,
    /// CloudWatch alarms.
    pub alarms: u32,
    /// The longest retention of the stack's log groups, in days.
    pub log_retention_days: u32,
    /// Cloud Map namespaces (each a private hosted zone).
    pub cloud_map_namespaces: u32,
}

/// One ECS service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceUse {
    /// The role: `event-api`, `runner`.
    pub name: String,
    /// CPU units of a task (1024 a vCPU).
    pub cpu: u32,
    /// Memory of a task in MiB.
    pub memory: u32,
    /// Tasks (an average when measured).
    pub count: f64,
    /// Auto-scaling's lower bound (the count without scaling).
    pub min: f64,
    /// Auto-scaling's upper bound (the count without scaling).
    pub max: f64,
    /// Whether auto-scaling owns the count.
    pub scaling_managed: bool,
    /// Whether each task has a public IPv4 address.
    pub public_ip: bool,
    /// Whether its tasks are Cloud Map instances.
    pub cloud_map: bool,
}

/// The executors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutorUse {
    /// EC2 instance type.
    pub instance_type: String,
    /// Instances (an average when measured).
    pub desired: f64,
    /// The group's minimum.
    pub min: f64,
    /// The group's maximum.
    pub max: f64,
    /// Whether scaling policies own the desired capacity.
    pub scaling_managed: bool,
    /// Whether each instance has a public IPv4 address.
    pub public_ip: bool,
}

/// Which managed Redis holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateEngine {
    /// An ElastiCache replication group.
    ElastiCache,
    /// A MemoryDB cluster.
    MemoryDb,
}

/// The state store's nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateUse {
    /// ElastiCache or MemoryDB.
    pub engine: StateEngine,
    /// Node type.
    pub node_type: String,
    /// Nodes: primaries and replicas.
    pub nodes: u32,
    /// Replicas per primary.
    pub replicas: u32,
}

/// One load balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadBalancerUse {
    /// `application` or `network`.
    pub lb_type: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
}

impl Footprint {
    /// The footprint of `resources` (a stack's, in the graph's shape).
    pub fn of<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Self {
        let by_id: BTreeMap<&str, &Resource> =
            resources.into_iter().map(|r| (r.id.as_str(), r)).collect();
        let mut fp = Self::default();
        let mut task_arch = None;
        for (id, r) in &by_id {
            match &r.attributes {
                Attributes::EcsService(s) => {
                    let name = id.strip_prefix("ecs.service.").unwrap_or(id).to_string();
                    let taskdef = match by_id
                        .get(format!("ecs.taskdef.{name}").as_str())
                        .map(|t| &t.attributes)
                    {
                        Some(Attributes::EcsTaskDefinition(t)) => Some(t),
                        _ => None,
                    };
                    let Some(t) = taskdef else { continue };
                    task_arch = task_arch.or(Architecture::from_ecs(&t.cpu_architecture));
                    let count = f64::from(s.desired_count);
                    let (min, max) = match by_id
                        .get(format!("scaling.target.{name}").as_str())
                        .map(|t| &t.attributes)
                    {
                        Some(Attributes::ScalableTarget(st)) if s.scaling_managed => {
                            (f64::from(st.min_capacity), f64::from(st.max_capacity))
                        }
                        _ => (count, count),
                    };
                    fp.services.push(ServiceUse {
                        name,
                        cpu: t.cpu,
                        memory: t.memory,
                        count,
                        min,
                        max,
                        scaling_managed: s.scaling_managed,
                        public_ip: s.assign_public_ip,
                        cloud_map: !s.service_registries.is_empty(),
                    });
                }
                Attributes::AutoScalingGroup(g) => {
                    let template = by_id.values().find_map(|other| match &other.attributes {
                        Attributes::LaunchTemplate(lt) if other.kind == Kind::LaunchTemplate => {
                            Some(lt)
                        }
                        _ => None,
                    });
                    let Some(lt) = template else { continue };
                    fp.executors = Some(ExecutorUse {
                        instance_type: lt.instance_type.clone(),
                        desired: f64::from(g.desired_capacity),
                        min: f64::from(g.min_size),
                        max: f64::from(g.max_size),
                        scaling_managed: g.scaling_managed,
                        public_ip: lt.associate_public_ip_address,
                    });
                }
                Attributes::ElastiCacheReplicationGroup(g) => {
                    fp.state = Some(StateUse {
                        engine: StateEngine::ElastiCache,
                        node_type: g.node_type.clone(),
                        nodes: 1 + g.replicas,
                        replicas: g.replicas,
                    });
                }
                Attributes::MemoryDbCluster(c) => {
                    fp.state = Some(StateUse {
                        engine: StateEngine::MemoryDb,
                        node_type: c.node_type.clone(),
                        nodes: c.shards.max(1) * (1 + c.replicas),
                        replicas: c.replicas,
                    });
                }
                Attributes::LoadBalancer(lb) => fp.load_balancers.push(LoadBalancerUse {
                    lb_type: lb.lb_type.clone(),
                    scheme: lb.scheme.clone(),
                }),
                Attributes::ApiGatewayVpcLink(_) => fp.vpc_links += 1,
                Attributes::ApiGatewayRestApi(_) => fp.rest_apis += 1,
                Attributes::CloudWatchAlarm(_) => fp.alarms += 1,
                Attributes::LogGroup(g) => {
                    fp.log_retention_days = fp.log_retention_days.max(g.retention_days);
                }
                Attributes::ServiceDiscoveryNamespace(_) => fp.cloud_map_namespaces += 1,
                _ => {}
            }
        }
        // `up` runs the executors' instance type's architecture only, so
        // it is the image's when the task definitions do not say.
        fp.architecture = task_arch
            .or_else(|| {
                fp.executors
                    .as_ref()
                    .map(|e| Architecture::of_instance_type(&e.instance_type))
            })
            .unwrap_or_default();
        fp
    }

    /// What AWS will run once `self` (the desired resources) is applied
    /// over `before` (those observed): where auto-scaling owns a count,
    /// applying moves only its bounds, so the running count stays as
    /// observed, brought inside the new bounds.
    pub fn settled_over(mut self, before: &Footprint) -> Self {
        for s in &mut self.services {
            if let Some(b) = before.services.iter().find(|b| b.name == s.name)
                && s.scaling_managed
            {
                s.count = b.count.clamp(s.min, s.max.max(s.min));
            }
        }
        if let (Some(e), Some(b)) = (&mut self.executors, &before.executors)
            && e.scaling_managed
        {
            e.desired = b.desired.clamp(e.min, e.max.max(e.min));
        }
        self
    }

    /// Tasks and instances running at the counts (`at` picks the count,
    /// the lower or the upper bound of each).
    pub(crate) fn consumers(&self, at: At) -> (f64, f64, f64) {
        let runners = self
            .services
            .iter()
            .filter(|s| s.name == "runner")
            .map(|s| at.of(s.count, s.min, s.max))
            .sum();
        let tasks = self
            .services
            .iter()
            .map(|s| at.of(s.count, s.min, s.max))
            .sum();
        let executors = self
            .executors
            .as_ref()
            .map_or(0.0, |e| at.of(e.desired, e.min, e.max));
        (tasks, runners, executors)
    }
}

/// Which count of a scaled part a figure is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// The count it runs at (desired).
    Count,
    /// Auto-scaling's lower bound.
    Min,
    /// Auto-scaling's upper bound.
    Max,
}

impl At {
    pub(crate) fn of(self, count: f64, min: f64, max: f64) -> f64 {
        match self {
            Self::Count => count,
            Self::Min => min,
            Self::Max => max,
        }
    }
}
