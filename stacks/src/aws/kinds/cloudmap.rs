//! Cloud Map: the private DNS namespace and the event API's service, for
//! the `internal_dns` connection. Creating a namespace is asynchronous:
//! the operation is polled (with a deadline) until it succeeds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_servicediscovery::types::{
    DnsConfig, DnsConfigChange, DnsRecord, FilterCondition, HealthCheckCustomConfig,
    NamespaceFilter, NamespaceFilterName, NamespaceType, OperationStatus, RecordType,
    RoutingPolicy, ServiceChange, ServiceFilter, ServiceFilterName, Tag,
};

use super::{Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, outputs, reread};
use crate::aws::error::{AwsError, Result};
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{Attributes, LogicalId, ServiceDiscoveryNamespace, ServiceDiscoveryService};

/// How long a namespace may take to be created.
const NAMESPACE_TIMEOUT: Duration = Duration::from_secs(300);

fn map_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

async fn read_tags(ctx: &Ctx, t: &Target, arn: &str) -> Result<BTreeMap<String, String>> {
    Ok(ctx
        .aws
        .cloudmap()
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(api!(t.subject(), "ListTagsForResource"))?
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect())
}

async fn sync_tags(ctx: &Ctx, work: &Work, arn: &str) -> Result<()> {
    let (set, remove) = work.tag_changes();
    let map = ctx.aws.cloudmap();
    if !set.is_empty() {
        map.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(map_tags(&set)))
            .send()
            .await
            .map_err(api!(work.subject(), "TagResource"))?;
    }
    if !remove.is_empty() {
        map.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(work.subject(), "UntagResource"))?;
    }
    Ok(())
}

/// The private DNS namespace called `name`, as (id, arn, description).
async fn find_namespace(
    ctx: &Ctx,
    t: &Target,
    name: &str,
) -> Result<Option<(String, String, String)>> {
    let filter = NamespaceFilter::builder()
        .name(NamespaceFilterName::Type)
        .values(NamespaceType::DnsPrivate.as_str())
        .condition(FilterCondition::Eq)
        .build()
        .map_err(|e| AwsError::Config(e.to_string()))?;
    let mut token = None;
    loop {
        let out = ctx
            .aws
            .cloudmap()
            .list_namespaces()
            .filters(filter.clone())
            .set_next_token(token)
            .send()
            .await
            .map_err(api!(t.subject(), "ListNamespaces"))?;
        if let Some(ns) = out
            .namespaces()
            .iter()
            .find(|n| n.name.as_deref() == Some(name))
        {
            return Ok(Some((
                ns.id.clone().unwrap_or_default(),
                ns.arn.clone().unwrap_or_default(),
                ns.description.clone().unwrap_or_default(),
            )));
        }
        token = out.next_token;
        if token.is_none() {
            return Ok(None);
        }
    }
}

pub(crate) async fn read_namespace(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let Some((id, arn, description)) = find_namespace(ctx, t, &t.name).await? else {
        return Ok(None);
    };
    let tags = read_tags(ctx, t, &arn).await?;
    // The VPC is not reported back; resolve::carry_unobservable fills it.
    let attributes = Attributes::ServiceDiscoveryNamespace(ServiceDiscoveryNamespace {
        description,
        vpc_id: String::new(),
    });
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([("id", id), ("arn", arn)]),
    )))
}

pub(crate) async fn apply_namespace(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ServiceDiscoveryNamespace);
    let subject = work.subject();
    let map = ctx.aws.cloudmap();
    if work.action == Action::Create {
        let created = map
            .create_private_dns_namespace()
            .name(&work.desired.name)
            .vpc(&desired.vpc_id)
            .description(&desired.description)
            // Same request id on a re-run: Cloud Map answers with the first operation.
            .creator_request_id(format!("stackctl-{}", work.desired.name))
            .set_tags(Some(map_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreatePrivateDnsNamespace"));
        match created {
            Ok(out) => {
                if let Some(op) = out.operation_id {
                    wait_operation(ctx, work, &op).await?;
                }
            }
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        let again = reread(ctx, work).await?;
        return again
            .observed
            .map(|o| o.outputs)
            .ok_or_else(|| incomplete(&work.target(), "ListNamespaces", "the new namespace"));
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "ListNamespaces", "the namespace"))?;
    if work.changed("description") {
        return Err(AwsError::Unsupported {
            subject,
            action: "description change",
            kind: work.desired.kind.label(),
        });
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

async fn wait_operation(ctx: &Ctx, work: &Work, operation: &str) -> Result<()> {
    let deadline = Instant::now() + NAMESPACE_TIMEOUT;
    loop {
        let out = ctx
            .aws
            .cloudmap()
            .get_operation()
            .operation_id(operation)
            .send()
            .await
            .map_err(api!(work.subject(), "GetOperation"))?;
        let op = out.operation;
        match op.as_ref().and_then(|o| o.status.clone()) {
            Some(OperationStatus::Success) | None => return Ok(()),
            Some(OperationStatus::Fail) => {
                return Err(AwsError::Api {
                    subject: work.subject(),
                    action: "CreatePrivateDnsNamespace",
                    code: op
                        .as_ref()
                        .and_then(|o| o.error_code.clone())
                        .unwrap_or_else(|| "OperationFailed".into()),
                    message: op
                        .as_ref()
                        .and_then(|o| o.error_message.clone())
                        .unwrap_or_default(),
                    class: crate::aws::error::Class::Permanent,
                });
            }
            Some(_) if Instant::now() > deadline => {
                return Err(AwsError::Api {
                    subject: work.subject(),
                    action: "CreatePrivateDnsNamespace",
                    code: "Timeout".into(),
                    message: format!(
                        "operation {operation} did not finish within {}s",
                        NAMESPACE_TIMEOUT.as_secs()
                    ),
                    class: crate::aws::error::Class::Retryable,
                });
            }
            Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

pub(crate) async fn read_service(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let ns_name = format!("{}.internal", ctx.stack);
    let ns_target = Target {
        id: LogicalId::new("cloudmap.namespace"),
        kind: crate::graph::Kind::ServiceDiscoveryNamespace,
        name: ns_name.clone(),
    };
    let Some((ns_id, _, _)) = find_namespace(ctx, &ns_target, &ns_name).await? else {
        return Ok(None);
    };
    let map = ctx.aws.cloudmap();
    let filter = ServiceFilter::builder()
        .name(ServiceFilterName::NamespaceId)
        .values(&ns_id)
        .condition(FilterCondition::Eq)
        .build()
        .map_err(|e| AwsError::Config(e.to_string()))?;
    let out = map
        .list_services()
        .filters(filter)
        .send()
        .await
        .map_err(api!(t.subject(), "ListServices"))?;
    let Some(summary) = out
        .services()
        .iter()
        .find(|s| s.name.as_deref() == Some(t.name.as_str()))
    else {
        return Ok(None);
    };
    let id = summary.id.clone().unwrap_or_default();
    let service = map
        .get_service()
        .id(&id)
        .send()
        .await
        .map_err(api!(t.subject(), "GetService"))?
        .service
        .ok_or_else(|| incomplete(t, "GetService", "Service"))?;
    let arn = service.arn.clone().unwrap_or_default();
    let dns = service.dns_config.as_ref();
    let record = dns.and_then(|d| d.dns_records().first());
    #[allow(deprecated)] // stackctl sets the threshold to the only value AWS still accepts (1).
    let failure_threshold = service
        .health_check_custom_config
        .as_ref()
        .and_then(|h| h.failure_threshold)
        .and_then(|f| u32::try_from(f).ok())
        .unwrap_or(1);
    let attributes = Attributes::ServiceDiscoveryService(ServiceDiscoveryService {
        namespace_id: service.namespace_id.clone().unwrap_or(ns_id),
        dns_record_type: record
            .map(|r| r.r#type.as_str().to_string())
            .unwrap_or_default(),
        dns_ttl_seconds: record.and_then(|r| u32::try_from(r.ttl).ok()).unwrap_or(0),
        routing_policy: dns
            .and_then(|d| d.routing_policy.as_ref())
            .map_or("MULTIVALUE", |r| r.as_str())
            .to_string(),
        health_check_failure_threshold: failure_threshold,
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([("arn", arn), ("id", id)]),
    )))
}

fn dns_record(s: &ServiceDiscoveryService) -> Result<DnsRecord> {
    DnsRecord::builder()
        .r#type(RecordType::from(s.dns_record_type.as_str()))
        .ttl(i64::from(s.dns_ttl_seconds))
        .build()
        .map_err(|e| AwsError::Config(e.to_string()))
}

pub(crate) async fn apply_service(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ServiceDiscoveryService);
    let subject = work.subject();
    let map = ctx.aws.cloudmap();
    if work.action == Action::Create {
        #[allow(deprecated)] // see read_service
        let health = HealthCheckCustomConfig::builder()
            .failure_threshold(desired.health_check_failure_threshold as i32)
            .build();
        let created = map
            .create_service()
            .name(&work.desired.name)
            .namespace_id(&desired.namespace_id)
            .creator_request_id(format!("stackctl-{}-{}", ctx.stack, work.desired.name))
            .dns_config(
                DnsConfig::builder()
                    .routing_policy(RoutingPolicy::from(desired.routing_policy.as_str()))
                    .dns_records(dns_record(desired)?)
                    .build()
                    .map_err(|e| AwsError::Config(e.to_string()))?,
            )
            .health_check_custom_config(health)
            .set_tags(Some(map_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateService"));
        return match created {
            Ok(out) => {
                let s = out
                    .service
                    .ok_or_else(|| incomplete(&work.target(), "CreateService", "Service"))?;
                Ok(outputs([
                    ("arn", s.arn.unwrap_or_default()),
                    ("id", s.id.unwrap_or_default()),
                ]))
            }
            Err(e) if e.is_already_exists() => {
                Box::pin(apply_service(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "ListServices", "the service"))?;
    if work.changed("dns_ttl_seconds") {
        map.update_service()
            .id(&observed.outputs["id"])
            .service(
                ServiceChange::builder()
                    .dns_config(
                        DnsConfigChange::builder()
                            .dns_records(dns_record(desired)?)
                            .build()
                            .map_err(|e| AwsError::Config(e.to_string()))?,
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateService"))?;
    }
    sync_tags(ctx, work, &observed.outputs["arn"]).await?;
    Ok(observed.outputs.clone())
}

/// Deletes the Cloud Map service. AWS refuses (`ResourceInUse`) while
/// instances are registered; ECS deregisters them as its service drains.
pub(crate) async fn delete_service(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let id = super::output(o, "id", "GetService")?;
    ctx.aws
        .cloudmap()
        .delete_service()
        .id(id)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteService"))?;
    Ok(Deleted::Gone)
}

/// Deletes the namespace (asynchronous: its operation is polled up to
/// `deadline`; its hosted zone goes with it).
pub(crate) async fn delete_namespace(
    ctx: &Ctx,
    o: &Observed,
    deadline: Instant,
) -> Result<Deleted> {
    let subject = super::subject_of(o);
    let id = super::output(o, "id", "ListNamespaces")?;
    let map = ctx.aws.cloudmap();
    let out = map
        .delete_namespace()
        .id(id)
        .send()
        .await
        .map_err(api!(subject.clone(), "DeleteNamespace"))?;
    let Some(operation) = out.operation_id else {
        return Ok(Deleted::Gone);
    };
    super::wait_gone(deadline, Duration::from_secs(2), || {
        let (map, operation, subject) = (map.clone(), operation.clone(), subject.clone());
        async move {
            let out = map
                .get_operation()
                .operation_id(&operation)
                .send()
                .await
                .map_err(api!(subject.clone(), "GetOperation"))?;
            let op = out.operation;
            match op.as_ref().and_then(|o| o.status.clone()) {
                Some(OperationStatus::Success) | None => Ok(None),
                Some(OperationStatus::Fail) => Err(AwsError::Api {
                    subject: subject.clone(),
                    action: "DeleteNamespace",
                    code: op
                        .as_ref()
                        .and_then(|o| o.error_code.clone())
                        .unwrap_or_else(|| "OperationFailed".into()),
                    message: op
                        .as_ref()
                        .and_then(|o| o.error_message.clone())
                        .unwrap_or_default(),
                    class: crate::aws::error::Class::of(
                        op.as_ref()
                            .and_then(|o| o.error_code.as_deref())
                            .unwrap_or("OperationFailed"),
                        None,
                    ),
                }),
                Some(other) => Ok(Some(other.as_str().to_string())),
            }
        }
    })
    .await
}
