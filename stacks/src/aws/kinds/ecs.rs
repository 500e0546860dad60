//! ECS: the cluster, the task definition families (a change registers a
//! new revision; the latest ACTIVE revision is what is compared, with
//! AWS's defaults normalized away) and the services (deployment circuit
//! breaker with rollback).

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ClusterField, ClusterSetting, ClusterSettingName,
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, CpuArchitecture,
    DeploymentCircuitBreaker, DeploymentConfiguration, HealthCheck, KeyValuePair, LaunchType,
    LoadBalancer, LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, OsFamily,
    PortMapping, RuntimePlatform, ServiceField, ServiceRegistry, Tag, TaskDefinitionField,
    TransportProtocol,
};

use super::{
    Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, not_found_is_none, outputs,
    reread,
};
use crate::aws::error::{AwsError, Result};
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{
    Attributes, Container, EcsCluster, EcsService, EcsTaskDefinition, ServiceLoadBalancer, Sidecar,
};

fn ecs_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tags_of(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

async fn sync_tags(ctx: &Ctx, work: &Work, arn: &str) -> Result<()> {
    let (set, remove) = work.tag_changes();
    let ecs = ctx.aws.ecs();
    if !set.is_empty() {
        ecs.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(ecs_tags(&set)))
            .send()
            .await
            .map_err(api!(work.subject(), "TagResource"))?;
    }
    if !remove.is_empty() {
        ecs.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(work.subject(), "UntagResource"))?;
    }
    Ok(())
}

pub(crate) async fn read_cluster(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let out = ctx
        .aws
        .ecs()
        .describe_clusters()
        .clusters(&t.name)
        .include(ClusterField::Tags)
        .include(ClusterField::Settings)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeClusters"))?;
    let Some(cluster) = out
        .clusters
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.status.as_deref() == Some("ACTIVE"))
    else {
        return Ok(None);
    };
    let mut capacity_providers = cluster.capacity_providers().to_vec();
    capacity_providers.sort();
    let attributes = Attributes::EcsCluster(EcsCluster {
        capacity_providers,
        container_insights: cluster.settings().iter().any(|s| {
            s.name == Some(ClusterSettingName::ContainerInsights)
                && s.value.as_deref().is_some_and(|v| v != "disabled")
        }),
    });
    Ok(Some(t.observed(
        tags_of(cluster.tags()),
        attributes,
        outputs([
            ("arn", cluster.cluster_arn.clone().unwrap_or_default()),
            ("name", t.name.clone()),
        ]),
    )))
}

fn insights(on: bool) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(if on { "enabled" } else { "disabled" })
        .build()
}

pub(crate) async fn apply_cluster(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, EcsCluster);
    let subject = work.subject();
    let ecs = ctx.aws.ecs();
    let name = &work.desired.name;
    if work.action == Action::Create {
        // CreateCluster is idempotent on AWS, but an emulator may overwrite
        // an existing cluster: check first, so a re-run never resets one.
        let again = reread(ctx, work).await?;
        if again.observed.is_some() {
            return Box::pin(apply_cluster(ctx, &again)).await;
        }
        let out = ecs
            .create_cluster()
            .cluster_name(name)
            .set_capacity_providers(Some(desired.capacity_providers.clone()))
            .settings(insights(desired.container_insights))
            .set_tags(Some(ecs_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateCluster"))?;
        let arn = out
            .cluster
            .and_then(|c| c.cluster_arn)
            .ok_or_else(|| incomplete(&work.target(), "CreateCluster", "clusterArn"))?;
        return Ok(outputs([("arn", arn), ("name", name.clone())]));
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeClusters", "the cluster"))?;
    if work.changed("capacity_providers") {
        ecs.put_cluster_capacity_providers()
            .cluster(name)
            .set_capacity_providers(Some(desired.capacity_providers.clone()))
            .set_default_capacity_provider_strategy(Some(Vec::new()))
            .send()
            .await
            .map_err(api!(subject.clone(), "PutClusterCapacityProviders"))?;
    }
    if work.changed("container_insights") {
        ecs.update_cluster_settings()
            .cluster(name)
            .settings(insights(desired.container_insights))
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateClusterSettings"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

/// The awslogs options stackctl sets; `awslogs-region` is implied by the
/// region and not part of the compared attributes.
const LOG_GROUP: &str = "awslogs-group";
const LOG_PREFIX: &str = "awslogs-stream-prefix";
/// Container health checks: every 10 s, 3 failures of 5 s make the task
/// unhealthy (ECS replaces it); failures in the first 15 s do not count.
const HEALTH_INTERVAL_SECS: i32 = 10;
const HEALTH_TIMEOUT_SECS: i32 = 5;
const HEALTH_RETRIES: i32 = 3;
const HEALTH_START_PERIOD_SECS: i32 = 15;

fn log_options(c: &ContainerDefinition) -> std::collections::HashMap<String, String> {
    c.log_configuration
        .as_ref()
        .and_then(|l| l.options.clone())
        .unwrap_or_default()
}

fn environment_of(c: &ContainerDefinition) -> BTreeMap<String, String> {
    c.environment()
        .iter()
        .filter_map(|kv| Some((kv.name.clone()?, kv.value.clone().unwrap_or_default())))
        .collect()
}

fn log_configuration(ctx: &Ctx, group: &str, prefix: &str) -> Result<LogConfiguration> {
    LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options(LOG_GROUP, group)
        .options("awslogs-region", &ctx.env.region)
        .options(LOG_PREFIX, prefix)
        .build()
        .map_err(|e| AwsError::Config(e.to_string()))
}

fn health_check(command: &[String]) -> Result<Option<HealthCheck>> {
    (!command.is_empty())
        .then(|| {
            HealthCheck::builder()
                .set_command(Some(command.to_vec()))
                .interval(HEALTH_INTERVAL_SECS)
                .timeout(HEALTH_TIMEOUT_SECS)
                .retries(HEALTH_RETRIES)
                .start_period(HEALTH_START_PERIOD_SECS)
                .build()
        })
        .transpose()
        .map_err(|e| AwsError::Config(e.to_string()))
}

fn key_values(env: &BTreeMap<String, String>) -> Vec<KeyValuePair> {
    env.iter()
        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
        .collect()
}

/// A sidecar's container definition: not essential, so that its failure
/// leaves the engine running.
fn sidecar_definition(ctx: &Ctx, s: &Sidecar) -> Result<ContainerDefinition> {
    Ok(ContainerDefinition::builder()
        .name(&s.name)
        .image(&s.image)
        .essential(false)
        .set_command(Some(s.command.clone()))
        .set_environment(Some(key_values(&s.environment)))
        .log_configuration(log_configuration(ctx, &s.log_group, &s.log_stream_prefix)?)
        .memory(s.memory as i32)
        .set_health_check(health_check(&s.health_check)?)
        .build())
}

pub(crate) async fn read_task_definition(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    // Describing a family answers with its latest ACTIVE revision.
    let got = ctx
        .aws
        .ecs()
        .describe_task_definition()
        .task_definition(&t.name)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeTaskDefinition"));
    let got = match got {
        // ECS has no NotFound code here: an unknown family is a ClientException.
        Err(AwsError::Api { code, .. }) if code == "ClientException" => return Ok(None),
        other => other?,
    };
    let tags = tags_of(got.tags());
    let td = got
        .task_definition
        .ok_or_else(|| incomplete(t, "DescribeTaskDefinition", "taskDefinition"))?;
    let arn = td
        .task_definition_arn
        .clone()
        .ok_or_else(|| incomplete(t, "DescribeTaskDefinition", "taskDefinitionArn"))?;
    // The engine's container is registered first, its sidecars after it.
    let (c, sidecars) = td
        .container_definitions()
        .split_first()
        .ok_or_else(|| incomplete(t, "DescribeTaskDefinition", "containerDefinitions"))?;
    let log = log_options(c);
    let mut requires_compatibilities: Vec<String> = td
        .requires_compatibilities()
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    requires_compatibilities.sort();
    let attributes = Attributes::EcsTaskDefinition(Box::new(EcsTaskDefinition {
        cpu: td.cpu.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0),
        memory: td
            .memory
            .as_deref()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
        network_mode: td
            .network_mode
            .as_ref()
            .map_or("bridge", |m| m.as_str())
            .to_string(),
        requires_compatibilities,
        cpu_architecture: td
            .runtime_platform
            .as_ref()
            .and_then(|p| p.cpu_architecture.as_ref())
            .map_or("X86_64", |a| a.as_str())
            .to_string(),
        execution_role_arn: td.execution_role_arn.clone().unwrap_or_default(),
        task_role_arn: td.task_role_arn.clone().unwrap_or_default(),
        container: Container {
            name: c.name.clone().unwrap_or_default(),
            image: c.image.clone().unwrap_or_default(),
            command: c.command().to_vec(),
            port: c
                .port_mappings()
                .first()
                .and_then(|p| p.container_port)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0),
            environment: environment_of(c),
            secrets: c
                .secrets()
                .iter()
                .map(|s| (s.name.clone(), s.value_from.clone()))
                .collect(),
            log_group: log.get(LOG_GROUP).cloned().unwrap_or_default(),
            log_stream_prefix: log.get(LOG_PREFIX).cloned().unwrap_or_default(),
            memory: c.memory.and_then(|m| u32::try_from(m).ok()).unwrap_or(0),
            health_check: c
                .health_check()
                .map(|h| h.command().to_vec())
                .unwrap_or_default(),
            depends_on: c
                .depends_on()
                .iter()
                .map(|d| (d.container_name.clone(), d.condition.as_str().to_string()))
                .collect(),
        },
        sidecars: sidecars
            .iter()
            .map(|s| {
                let log = log_options(s);
                Sidecar {
                    name: s.name.clone().unwrap_or_default(),
                    image: s.image.clone().unwrap_or_default(),
                    command: s.command().to_vec(),
                    environment: environment_of(s),
                    log_group: log.get(LOG_GROUP).cloned().unwrap_or_default(),
                    log_stream_prefix: log.get(LOG_PREFIX).cloned().unwrap_or_default(),
                    memory: s.memory.and_then(|m| u32::try_from(m).ok()).unwrap_or(0),
                    health_check: s
                        .health_check()
                        .map(|h| h.command().to_vec())
                        .unwrap_or_default(),
                }
            })
            .collect(),
    }));
    Ok(Some(t.observed(tags, attributes, outputs([("arn", arn)]))))
}

pub(crate) async fn apply_task_definition(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, EcsTaskDefinition);
    let subject = work.subject();
    if work.action == Action::Update {
        // Only tags differ (any attribute change registers a revision).
        let observed = work
            .observed
            .as_ref()
            .ok_or_else(|| incomplete(&work.target(), "DescribeTaskDefinition", "the family"))?;
        sync_tags(ctx, work, &observed.outputs["arn"]).await?;
        return Ok(observed.outputs.clone());
    }
    let c = &desired.container;
    let container = ContainerDefinition::builder()
        .name(&c.name)
        .image(&c.image)
        .essential(true)
        .set_command(Some(c.command.clone()))
        .port_mappings(
            PortMapping::builder()
                .container_port(i32::from(c.port))
                .protocol(TransportProtocol::Tcp)
                .build(),
        )
        .set_environment(Some(key_values(&c.environment)))
        // ECS reads these from SSM when a task starts; the task definition
        // holds only the parameter ARNs.
        .set_secrets(
            (!c.secrets.is_empty())
                .then(|| {
                    c.secrets
                        .iter()
                        .map(|(name, from)| {
                            aws_sdk_ecs::types::Secret::builder()
                                .name(name)
                                .value_from(from)
                                .build()
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|e| AwsError::Config(e.to_string()))?,
        )
        .log_configuration(log_configuration(ctx, &c.log_group, &c.log_stream_prefix)?)
        .memory(c.memory as i32)
        .set_health_check(health_check(&c.health_check)?)
        .set_depends_on(
            (!c.depends_on.is_empty())
                .then(|| {
                    c.depends_on
                        .iter()
                        .map(|(name, condition)| {
                            ContainerDependency::builder()
                                .container_name(name)
                                .condition(ContainerCondition::from(condition.as_str()))
                                .build()
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|e| AwsError::Config(e.to_string()))?,
        )
        .build();
    let mut containers = vec![container];
    for s in &desired.sidecars {
        containers.push(sidecar_definition(ctx, s)?);
    }
    let out = ctx
        .aws
        .ecs()
        .register_task_definition()
        .family(&work.desired.name)
        .cpu(desired.cpu.to_string())
        .memory(desired.memory.to_string())
        .network_mode(NetworkMode::from(desired.network_mode.as_str()))
        .set_requires_compatibilities(Some(
            desired
                .requires_compatibilities
                .iter()
                .map(|c| Compatibility::from(c.as_str()))
                .collect(),
        ))
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::from(desired.cpu_architecture.as_str()))
                .operating_system_family(OsFamily::Linux)
                .build(),
        )
        .execution_role_arn(&desired.execution_role_arn)
        .task_role_arn(&desired.task_role_arn)
        .set_container_definitions(Some(containers))
        .set_tags(Some(ecs_tags(&work.desired.tags)))
        .send()
        .await
        .map_err(api!(subject, "RegisterTaskDefinition"))?;
    let arn = out
        .task_definition
        .and_then(|t| t.task_definition_arn)
        .ok_or_else(|| {
            incomplete(
                &work.target(),
                "RegisterTaskDefinition",
                "taskDefinitionArn",
            )
        })?;
    Ok(outputs([("arn", arn)]))
}

pub(crate) async fn read_service(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let got = ctx
        .aws
        .ecs()
        .describe_services()
        .cluster(&ctx.stack)
        .services(&t.name)
        .include(ServiceField::Tags)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeServices"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let Some(s) = got
        .services
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.status.as_deref() == Some("ACTIVE"))
    else {
        return Ok(None);
    };
    let vpc = s
        .network_configuration
        .as_ref()
        .and_then(|n| n.awsvpc_configuration.as_ref());
    let mut subnets = vpc.map(|v| v.subnets().to_vec()).unwrap_or_default();
    subnets.sort();
    let mut security_groups = vpc
        .map(|v| v.security_groups().to_vec())
        .unwrap_or_default();
    security_groups.sort();
    let deployment = s.deployment_configuration.as_ref();
    let breaker = deployment.and_then(|d| d.deployment_circuit_breaker.as_ref());
    let mut service_registries: Vec<String> = s
        .service_registries()
        .iter()
        .filter_map(|r| r.registry_arn.clone())
        .collect();
    service_registries.sort();
    let attributes = Attributes::EcsService(Box::new(EcsService {
        cluster: s.cluster_arn.clone().unwrap_or_default(),
        task_definition: s.task_definition.clone().unwrap_or_default(),
        desired_count: u32::try_from(s.desired_count).unwrap_or(0),
        scaling_managed: false,
        launch_type: s
            .launch_type
            .as_ref()
            .map(|l| l.as_str().to_string())
            .unwrap_or_default(),
        subnets,
        security_groups,
        assign_public_ip: vpc
            .and_then(|v| v.assign_public_ip.as_ref())
            .is_some_and(|a| *a == AssignPublicIp::Enabled),
        circuit_breaker: breaker.is_some_and(|b| b.enable),
        rollback: breaker.is_some_and(|b| b.rollback),
        minimum_healthy_percent: deployment
            .and_then(|d| d.minimum_healthy_percent)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(100),
        maximum_percent: deployment
            .and_then(|d| d.maximum_percent)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(200),
        load_balancers: s
            .load_balancers()
            .iter()
            .map(|lb| ServiceLoadBalancer {
                target_group_arn: lb.target_group_arn.clone().unwrap_or_default(),
                container_name: lb.container_name.clone().unwrap_or_default(),
                container_port: lb
                    .container_port
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(0),
            })
            .collect(),
        service_registries,
        // AWS reports 0 for "not set".
        health_check_grace_period_seconds: s
            .health_check_grace_period_seconds
            .filter(|g| *g > 0)
            .and_then(|g| u32::try_from(g).ok()),
    }));
    Ok(Some(t.observed(
        tags_of(s.tags()),
        attributes,
        outputs([
            ("arn", s.service_arn.clone().unwrap_or_default()),
            ("name", t.name.clone()),
        ]),
    )))
}

fn network(s: &EcsService) -> Result<NetworkConfiguration> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(s.subnets.clone()))
        .set_security_groups(Some(s.security_groups.clone()))
        .assign_public_ip(if s.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| AwsError::Config(e.to_string()))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

fn deployment(s: &EcsService) -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(s.circuit_breaker)
                .rollback(s.rollback)
                .build(),
        )
        .minimum_healthy_percent(s.minimum_healthy_percent as i32)
        .maximum_percent(s.maximum_percent as i32)
        .build()
}

fn load_balancers(s: &EcsService) -> Vec<LoadBalancer> {
    s.load_balancers
        .iter()
        .map(|lb| {
            LoadBalancer::builder()
                .target_group_arn(&lb.target_group_arn)
                .container_name(&lb.container_name)
                .container_port(i32::from(lb.container_port))
                .build()
        })
        .collect()
}

fn registries(s: &EcsService) -> Vec<ServiceRegistry> {
    s.service_registries
        .iter()
        .map(|arn| ServiceRegistry::builder().registry_arn(arn).build())
        .collect()
}

pub(crate) async fn apply_service(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, EcsService);
    let subject = work.subject();
    let ecs = ctx.aws.ecs();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = ecs
            .create_service()
            .cluster(&desired.cluster)
            .service_name(name)
            .task_definition(&desired.task_definition)
            .desired_count(desired.desired_count as i32)
            .launch_type(LaunchType::from(desired.launch_type.as_str()))
            .network_configuration(network(desired)?)
            .deployment_configuration(deployment(desired))
            .set_load_balancers(Some(load_balancers(desired)))
            .set_service_registries(Some(registries(desired)))
            .set_health_check_grace_period_seconds(
                desired.health_check_grace_period_seconds.map(|g| g as i32),
            )
            .set_tags(Some(ecs_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateService"));
        return match created {
            Ok(_) => {
                // Read back and converge anything the create did not take
                // (an implementation may drop the deployment settings).
                let mut again = reread(ctx, work).await?;
                let Some(o) = again.observed.as_mut() else {
                    return Err(incomplete(
                        &work.target(),
                        "DescribeServices",
                        "the new service",
                    ));
                };
                crate::aws::resolve::carry_unobservable(
                    &work.desired.attributes,
                    &mut o.resource.attributes,
                );
                if o.resource.attributes == work.desired.attributes {
                    Ok(o.outputs.clone())
                } else {
                    Box::pin(apply_service(ctx, &again)).await
                }
            }
            // "Creation of service was not idempotent": it exists with
            // other settings (a crashed run): update it instead.
            Err(e) => {
                let again = reread(ctx, work).await?;
                if again.observed.is_some() {
                    Box::pin(apply_service(ctx, &again)).await
                } else {
                    Err(e)
                }
            }
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeServices", "the service"))?;
    let mut update = ecs.update_service().cluster(&desired.cluster).service(name);
    let mut any = false;
    if work.changed("task_definition") {
        update = update.task_definition(&desired.task_definition);
        any = true;
    }
    // Auto-scaling owns the count of a scaled service.
    if work.changed("desired_count") && !desired.scaling_managed {
        update = update.desired_count(desired.desired_count as i32);
        any = true;
    }
    if work.changed("subnets")
        || work.changed("security_groups")
        || work.changed("assign_public_ip")
    {
        update = update.network_configuration(network(desired)?);
        any = true;
    }
    if work.changed("circuit_breaker")
        || work.changed("rollback")
        || work.changed("minimum_healthy_percent")
        || work.changed("maximum_percent")
    {
        update = update.deployment_configuration(deployment(desired));
        any = true;
    }
    if work.changed("load_balancers") {
        update = update.set_load_balancers(Some(load_balancers(desired)));
        any = true;
    }
    if work.changed("health_check_grace_period_seconds") {
        update = update.set_health_check_grace_period_seconds(
            desired
                .health_check_grace_period_seconds
                .map(|g| g as i32)
                .or(Some(0)),
        );
        any = true;
    }
    if any {
        update
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateService"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

/// Deletes the cluster. AWS refuses (`ClusterContains*`) while services or
/// tasks remain, which `down` retries as a dependency error.
pub(crate) async fn delete_cluster(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .ecs()
        .delete_cluster()
        .cluster(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteCluster"))?;
    Ok(Deleted::Gone)
}

/// Deregisters every ACTIVE revision of the family that carries the stack's
/// tag, then deletes them (a deregistered revision lingers as INACTIVE
/// until deleted). A revision without the tag is someone else's and is
/// left alone; it then shows up in the sweep.
pub(crate) async fn delete_task_definition(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let subject = super::subject_of(o);
    let ecs = ctx.aws.ecs();
    let mut revisions = Vec::new();
    let mut token = None;
    loop {
        let page = ecs
            .list_task_definitions()
            .family_prefix(&o.resource.name)
            .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
            .set_next_token(token)
            .send()
            .await
            .map_err(api!(subject.clone(), "ListTaskDefinitions"))?;
        revisions.extend(page.task_definition_arns().iter().cloned());
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let mut deregistered = Vec::new();
    for arn in revisions {
        // `family_prefix` matches other families that start the same way.
        let family = arn
            .rsplit('/')
            .next()
            .and_then(|f| f.rsplit_once(':'))
            .map(|(f, _)| f);
        if family != Some(o.resource.name.as_str()) {
            continue;
        }
        let got = ecs
            .describe_task_definition()
            .task_definition(&arn)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(api!(subject.clone(), "DescribeTaskDefinition"))?;
        if tags_of(got.tags()).get(crate::graph::TAG_STACK) != Some(&ctx.stack) {
            continue;
        }
        ecs.deregister_task_definition()
            .task_definition(&arn)
            .send()
            .await
            .map_err(api!(subject.clone(), "DeregisterTaskDefinition"))?;
        deregistered.push(arn);
    }
    for batch in deregistered.chunks(10) {
        ecs.delete_task_definitions()
            .set_task_definitions(Some(batch.to_vec()))
            .send()
            .await
            .map_err(api!(subject.clone(), "DeleteTaskDefinitions"))?;
    }
    Ok(Deleted::Gone)
}

/// The service's status (`ACTIVE`, `DRAINING`), `None` once INACTIVE or gone.
async fn service_status(ctx: &Ctx, o: &Observed) -> Result<Option<String>> {
    let got = ctx
        .aws
        .ecs()
        .describe_services()
        .cluster(&ctx.stack)
        .services(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DescribeServices"));
    Ok(not_found_is_none(got)?.and_then(|out| {
        out.services
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.status)
            .find(|s| s != "INACTIVE")
    }))
}

/// Scales the service to zero and deletes it, then waits (up to
/// `deadline`) until it has drained and is INACTIVE: the cluster, the task
/// definitions' roles and the security groups its tasks use can only go
/// after that.
pub(crate) async fn delete_service(
    ctx: &Ctx,
    o: &Observed,
    deadline: std::time::Instant,
) -> Result<Deleted> {
    let subject = super::subject_of(o);
    let ecs = ctx.aws.ecs();
    if service_status(ctx, o).await?.as_deref() == Some("ACTIVE") {
        ecs.update_service()
            .cluster(&ctx.stack)
            .service(&o.resource.name)
            .desired_count(0)
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateService"))?;
        ecs.delete_service()
            .cluster(&ctx.stack)
            .service(&o.resource.name)
            .force(true)
            .send()
            .await
            .map_err(api!(subject, "DeleteService"))?;
    }
    super::wait_gone(deadline, std::time::Duration::from_secs(5), || {
        service_status(ctx, o)
    })
    .await
}
