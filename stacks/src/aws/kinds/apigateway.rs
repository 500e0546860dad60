//! API Gateway (REST APIs, v1): the `vpc_link` connection publishes the
//! event API through a VPC link to the stack's internal network load
//! balancer, and one regional REST API whose published resources (method
//! `ANY`; `/e/{proxy+}` and `/health`, or the greedy `/{proxy+}` for every
//! path) are `HTTP_PROXY` integrations through that link, deployed to one
//! stage. Resources it no longer publishes are deleted. Its invoke URL
//! (`https://{id}.execute-api.{region}.amazonaws.com/{stage}`) is the event
//! API's address.
//!
//! Neither VPC link nor REST API names are unique in AWS: both are found by
//! name among the account's (preferring one tagged for the stack), and their
//! tags come with the list answers. The integration's connection id is the
//! stage variable `${stageVariables.vpcLinkId}` and the stage holds the link
//! id: a new link then only changes the stage, and the link id is read back
//! from the stage (API Gateway's documented pattern for VPC links).
//!
//! Creating a VPC link is asynchronous (minutes on AWS): `apply` polls it
//! until `AVAILABLE`, fails on `FAILED`, and gives up after
//! [`VPC_LINK_TIMEOUT`]. Deleting one is asynchronous too and is polled
//! until it is gone, because the load balancer it targets cannot be deleted
//! before.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_apigateway::types::{
    ConnectionType, EndpointConfiguration, EndpointType, IntegrationType, Op, PatchOperation,
    RestApi, VpcLink, VpcLinkStatus,
};

use super::{
    Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, not_found_is_none, outputs,
    subject_of,
};
use crate::aws::error::{AwsError, Class, Result, Subject};
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{ApiGatewayRestApi, ApiGatewayVpcLink, Attributes, TAG_STACK};

/// How long a new VPC link may take to become `AVAILABLE`.
const VPC_LINK_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Pause between two polls of a VPC link.
const VPC_LINK_POLL: Duration = Duration::from_secs(5);
/// A greedy proxy resource's path part.
const PROXY_PART: &str = "{proxy+}";
/// The one method of each published resource.
const METHOD: &str = "ANY";
/// The stage variable holding the VPC link id.
const LINK_VARIABLE: &str = "vpcLinkId";
/// The integration's connection id: the stage variable.
const LINK_CONNECTION_ID: &str = "${stageVariables.vpcLinkId}";
/// Page size of the list calls (their maximum).
const PAGE: i32 = 500;

fn tags_of(tags: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn tag_map(tags: &BTreeMap<String, String>) -> HashMap<String, String> {
    tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Among same-named resources, the one tagged for `stack`, else the first
/// (which `read` then refuses as not the stack's).
fn pick<'a, T>(
    found: &'a [T],
    name: &str,
    stack: &str,
    name_of: impl Fn(&T) -> Option<&str>,
    tags_of: impl Fn(&T) -> Option<&HashMap<String, String>>,
) -> Option<&'a T> {
    let named = || found.iter().filter(|x| name_of(x) == Some(name));
    named()
        .find(|x| {
            tags_of(x)
                .and_then(|t| t.get(TAG_STACK))
                .map(String::as_str)
                == Some(stack)
        })
        .or_else(|| named().next())
}

/// The ARN API Gateway's tagging calls take.
fn arn(region: &str, path: &str) -> String {
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    format!("arn:{partition}:apigateway:{region}::{path}")
}

/// The invoke URL of a REST API's stage.
pub(crate) fn invoke_url(region: &str, api_id: &str, stage: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{api_id}.execute-api.{region}.{suffix}/{stage}")
}

fn replace(path: &str, value: &str) -> PatchOperation {
    PatchOperation::builder()
        .op(Op::Replace)
        .path(path)
        .value(value)
        .build()
}

/// Brings the tags of the resource at `path` to the desired ones.
async fn apply_tags(ctx: &Ctx, work: &Work, path: &str) -> Result<()> {
    let (set, remove) = work.tag_changes();
    let gateway = ctx.aws.apigateway();
    let resource_arn = arn(&ctx.env.region, path);
    if !set.is_empty() {
        gateway
            .tag_resource()
            .resource_arn(&resource_arn)
            .set_tags(Some(tag_map(&set)))
            .send()
            .await
            .map_err(api!(work.subject(), "TagResource"))?;
    }
    if !remove.is_empty() {
        gateway
            .untag_resource()
            .resource_arn(&resource_arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(work.subject(), "UntagResource"))?;
    }
    Ok(())
}

// --- VPC link ----------------------------------------------------------------

/// Every VPC link of the account and region.
pub(crate) async fn vpc_links(aws: &crate::aws::Aws, subject: &Subject) -> Result<Vec<VpcLink>> {
    aws.apigateway()
        .get_vpc_links()
        .into_paginator()
        .page_size(PAGE)
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "GetVpcLinks", e))
}

fn link_observed(t: &Target, link: &VpcLink) -> Result<Observed> {
    let id = link
        .id()
        .ok_or_else(|| incomplete(t, "GetVpcLinks", "id"))?
        .to_string();
    let mut target_arns = link.target_arns().to_vec();
    target_arns.sort();
    Ok(t.observed(
        tags_of(link.tags()),
        Attributes::ApiGatewayVpcLink(ApiGatewayVpcLink {
            description: link.description().unwrap_or_default().to_string(),
            target_arns,
        }),
        outputs([
            ("id", id),
            (
                "status",
                link.status().map_or("", |s| s.as_str()).to_string(),
            ),
        ]),
    ))
}

pub(crate) async fn read_vpc_link(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    // A link being deleted (a recent `down`) is no longer the stack's link.
    let links: Vec<VpcLink> = vpc_links(&ctx.aws, &t.subject())
        .await?
        .into_iter()
        .filter(|l| l.status() != Some(&VpcLinkStatus::Deleting))
        .collect();
    pick(&links, &t.name, &ctx.stack, VpcLink::name, VpcLink::tags)
        .map(|l| link_observed(t, l))
        .transpose()
}

/// Polls a new VPC link until it is `AVAILABLE`.
async fn wait_available(ctx: &Ctx, work: &Work, id: &str) -> Result<()> {
    let deadline = Instant::now() + VPC_LINK_TIMEOUT;
    loop {
        let link = ctx
            .aws
            .apigateway()
            .get_vpc_link()
            .vpc_link_id(id)
            .send()
            .await
            .map_err(api!(work.subject(), "GetVpcLink"))?;
        let status = link.status().cloned();
        match status {
            Some(VpcLinkStatus::Available) => return Ok(()),
            Some(VpcLinkStatus::Failed | VpcLinkStatus::Deleting) => {
                return Err(AwsError::Api {
                    subject: work.subject(),
                    action: "CreateVpcLink",
                    code: format!(
                        "VpcLink{}",
                        if status == Some(VpcLinkStatus::Failed) {
                            "Failed"
                        } else {
                            "Deleting"
                        }
                    ),
                    message: link
                        .status_message()
                        .unwrap_or("the VPC link will not become AVAILABLE")
                        .to_string(),
                    class: Class::Permanent,
                });
            }
            other if Instant::now() + VPC_LINK_POLL > deadline => {
                return Err(AwsError::Api {
                    subject: work.subject(),
                    action: "CreateVpcLink",
                    code: "Timeout".into(),
                    message: format!(
                        "VPC link {id} is still {} after {}s{}",
                        other.as_ref().map_or("without a status", |s| s.as_str()),
                        VPC_LINK_TIMEOUT.as_secs(),
                        link.status_message()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    ),
                    class: Class::Retryable,
                });
            }
            _ => tokio::time::sleep(VPC_LINK_POLL).await,
        }
    }
}

pub(crate) async fn apply_vpc_link(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ApiGatewayVpcLink);
    let subject = work.subject();
    let gateway = ctx.aws.apigateway();
    if work.action == Action::Create {
        let out = gateway
            .create_vpc_link()
            .name(&work.desired.name)
            .description(&desired.description)
            .set_target_arns(Some(desired.target_arns.clone()))
            .set_tags(Some(tag_map(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateVpcLink"))?;
        let id = out
            .id()
            .ok_or_else(|| incomplete(&work.target(), "CreateVpcLink", "id"))?
            .to_string();
        if out.status() != Some(&VpcLinkStatus::Available) {
            wait_available(ctx, work, &id).await?;
        }
        return Ok(outputs([("id", id), ("status", "AVAILABLE".into())]));
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "GetVpcLinks", "id"))?;
    let id = super::output(observed, "id", "GetVpcLinks")?.to_string();
    if work.changed("description") {
        gateway
            .update_vpc_link()
            .vpc_link_id(&id)
            .patch_operations(replace("/description", &desired.description))
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateVpcLink"))?;
    }
    apply_tags(ctx, work, &format!("/vpclinks/{id}")).await?;
    // A link left PENDING by an interrupted `up` is waited for here.
    if observed.outputs.get("status").map(String::as_str) != Some("AVAILABLE") {
        wait_available(ctx, work, &id).await?;
    }
    Ok(outputs([("id", id), ("status", "AVAILABLE".into())]))
}

/// Deletes the link and polls until it is gone (the load balancer it
/// targets cannot be deleted before), up to `deadline`.
pub(crate) async fn delete_vpc_link(ctx: &Ctx, o: &Observed, deadline: Instant) -> Result<Deleted> {
    let subject = subject_of(o);
    let id = super::output(o, "id", "DeleteVpcLink")?.to_string();
    let gateway = ctx.aws.apigateway().clone();
    gateway
        .delete_vpc_link()
        .vpc_link_id(&id)
        .send()
        .await
        .map_err(api!(subject.clone(), "DeleteVpcLink"))?;
    super::wait_gone(deadline, VPC_LINK_POLL, || {
        let (gateway, id, subject) = (gateway.clone(), id.clone(), subject.clone());
        async move {
            let got = gateway
                .get_vpc_link()
                .vpc_link_id(&id)
                .send()
                .await
                .map_err(api!(subject, "GetVpcLink"));
            Ok(not_found_is_none(got)?.map(|l| {
                l.status()
                    .map_or_else(|| "DELETING".to_string(), |s| s.as_str().to_string())
            }))
        }
    })
    .await
}

// --- REST API ------------------------------------------------------------------

/// Every REST API of the account and region.
pub(crate) async fn rest_apis(aws: &crate::aws::Aws, subject: &Subject) -> Result<Vec<RestApi>> {
    aws.apigateway()
        .get_rest_apis()
        .into_paginator()
        .page_size(PAGE)
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "GetRestApis", e))
}

/// The invoke URL of the stack's REST API `name` at `stage` (`None` when
/// the API, tagged for `stack`, or its stage does not exist): the event
/// API's address for `vpc_link` stacks (`stackctl bench`, `status`).
pub async fn rest_api_invoke_url(
    aws: &crate::aws::Aws,
    stack: &str,
    name: &str,
    stage: &str,
) -> Result<Option<String>> {
    let subject = Subject::other("API Gateway REST API", name);
    let apis = rest_apis(aws, &subject).await?;
    let Some(id) = apis
        .iter()
        .filter(|a| a.name() == Some(name))
        .find(|a| a.tags().and_then(|t| t.get(TAG_STACK)).map(String::as_str) == Some(stack))
        .and_then(|a| a.id())
    else {
        return Ok(None);
    };
    let got = aws
        .apigateway()
        .get_stage()
        .rest_api_id(id)
        .stage_name(stage)
        .send()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "GetStage", e));
    Ok(not_found_is_none(got)?.map(|_| invoke_url(aws.region(), id, stage)))
}

/// What a REST API holds besides its own fields.
#[derive(Debug, Default)]
struct Inside {
    root_id: Option<String>,
    /// Every resource but the root: path -> id.
    resources: BTreeMap<String, String>,
    /// Paths whose resource has the method.
    methods: BTreeSet<String>,
    /// Published routes: path -> the URI of its link proxy integration.
    routes: BTreeMap<String, String>,
}

async fn read_inside(ctx: &Ctx, subject: &Subject, api_id: &str) -> Result<Inside> {
    let gateway = ctx.aws.apigateway();
    let mut inside = Inside::default();
    let resources = gateway
        .get_resources()
        .rest_api_id(api_id)
        .embed("methods")
        .into_paginator()
        .page_size(PAGE)
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "GetResources", e))?;
    for r in &resources {
        let (Some(path), Some(id)) = (r.path(), r.id()) else {
            continue;
        };
        if path == "/" {
            inside.root_id = Some(id.to_string());
            continue;
        }
        inside.resources.insert(path.to_string(), id.to_string());
        let Some(method) = r.resource_methods().and_then(|m| m.get(METHOD)) else {
            continue;
        };
        inside.methods.insert(path.to_string());
        let uri = match method.method_integration() {
            Some(i) => integration_uri(i),
            None => {
                // Not embedded: ask for it.
                let got = gateway
                    .get_integration()
                    .rest_api_id(api_id)
                    .resource_id(id)
                    .http_method(METHOD)
                    .send()
                    .await
                    .map_err(|e| AwsError::api(subject.clone(), "GetIntegration", e));
                match not_found_is_none(got)? {
                    Some(i)
                        if is_link_proxy(i.r#type(), i.connection_type(), i.connection_id()) =>
                    {
                        i.uri().unwrap_or_default().to_string()
                    }
                    _ => String::new(),
                }
            }
        };
        if !uri.is_empty() {
            inside.routes.insert(path.to_string(), uri);
        }
    }
    Ok(inside)
}

/// Whether an integration is the proxy through the VPC link (a connection
/// id AWS does not report is taken as the stage variable's).
fn is_link_proxy(
    kind: Option<&IntegrationType>,
    connection: Option<&ConnectionType>,
    connection_id: Option<&str>,
) -> bool {
    kind == Some(&IntegrationType::HttpProxy)
        && connection == Some(&ConnectionType::VpcLink)
        && connection_id.is_none_or(|c| c == LINK_CONNECTION_ID)
}

/// The URI of an integration that is the proxy through the link, else
/// empty (which shows as a change and is put again).
fn integration_uri(i: &aws_sdk_apigateway::types::Integration) -> String {
    if is_link_proxy(i.r#type(), i.connection_type(), i.connection_id()) {
        i.uri().unwrap_or_default().to_string()
    } else {
        String::new()
    }
}

pub(crate) async fn read_rest_api(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let subject = t.subject();
    let apis = rest_apis(&ctx.aws, &subject).await?;
    let Some(found) = pick(&apis, &t.name, &ctx.stack, RestApi::name, RestApi::tags) else {
        return Ok(None);
    };
    let id = found
        .id()
        .ok_or_else(|| incomplete(t, "GetRestApis", "id"))?
        .to_string();
    let tags = tags_of(found.tags());
    // Someone else's API with the stack's name: `read` refuses it; its
    // insides are none of the stack's business.
    if tags.get(TAG_STACK) != Some(&ctx.stack) {
        return Ok(Some(t.observed(
            tags,
            rest_api_attributes(found, BTreeMap::new(), String::new(), String::new()),
            outputs([("id", id)]),
        )));
    }
    let inside = read_inside(ctx, &subject, &id).await?;
    let stages = ctx
        .aws
        .apigateway()
        .get_stages()
        .rest_api_id(&id)
        .send()
        .await
        .map_err(api!(subject.clone(), "GetStages"))?;
    let stage = stages
        .item()
        .iter()
        .find(|s| s.stage_name().is_some_and(|n| !n.is_empty()));
    let stage_name = stage
        .and_then(|s| s.stage_name())
        .unwrap_or_default()
        .to_string();
    let vpc_link_id = stage
        .and_then(|s| s.variables())
        .and_then(|v| v.get(LINK_VARIABLE))
        .cloned()
        .unwrap_or_default();
    let mut out: Outputs = outputs([("id", id.clone())]);
    if !stage_name.is_empty() {
        out.insert(
            "invoke_url".into(),
            invoke_url(&ctx.env.region, &id, &stage_name),
        );
    }
    if let Some(root) = inside
        .root_id
        .or_else(|| found.root_resource_id().map(str::to_string))
    {
        out.insert("root_resource_id".into(), root);
    }
    Ok(Some(t.observed(
        tags,
        rest_api_attributes(found, inside.routes, vpc_link_id, stage_name),
        out,
    )))
}

fn rest_api_attributes(
    api: &RestApi,
    routes: BTreeMap<String, String>,
    vpc_link_id: String,
    stage: String,
) -> Attributes {
    Attributes::ApiGatewayRestApi(ApiGatewayRestApi {
        description: api.description().unwrap_or_default().to_string(),
        endpoint_type: api
            .endpoint_configuration()
            .and_then(|c| c.types().first())
            .map_or("EDGE", |t| t.as_str())
            .to_string(),
        routes,
        vpc_link_id,
        stage,
    })
}

pub(crate) async fn apply_rest_api(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, ApiGatewayRestApi);
    let subject = work.subject();
    let gateway = ctx.aws.apigateway();
    let mut out: Outputs = work
        .observed
        .as_ref()
        .map(|o| o.outputs.clone())
        .unwrap_or_default();
    let created = work.action == Action::Create;
    if created {
        let api = gateway
            .create_rest_api()
            .name(&work.desired.name)
            .description(&desired.description)
            .endpoint_configuration(
                EndpointConfiguration::builder()
                    .types(EndpointType::from(desired.endpoint_type.as_str()))
                    .build(),
            )
            .set_tags(Some(tag_map(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateRestApi"))?;
        let id = api
            .id()
            .ok_or_else(|| incomplete(&work.target(), "CreateRestApi", "id"))?
            .to_string();
        out.insert("id".into(), id);
        if let Some(root) = api.root_resource_id() {
            out.insert("root_resource_id".into(), root.to_string());
        }
    }
    let id = out
        .get("id")
        .cloned()
        .ok_or_else(|| incomplete(&work.target(), "GetRestApis", "id"))?;
    if !created && work.changed("description") {
        gateway
            .update_rest_api()
            .rest_api_id(&id)
            .patch_operations(replace("/description", &desired.description))
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateRestApi"))?;
    }
    // The published resources, their method and integration, and no
    // other; a changed integration needs a new deployment.
    let mut redeploy = false;
    if created || work.changed("routes") {
        put_routes(ctx, work, &id, &desired.routes).await?;
        redeploy = true;
    }
    let observed_stage = work
        .observed
        .as_ref()
        .and_then(|o| match &o.resource.attributes {
            Attributes::ApiGatewayRestApi(a) => Some(a.stage.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let has_stage = !created && observed_stage == desired.stage;
    if redeploy || !has_stage {
        let deployment = gateway
            .create_deployment()
            .rest_api_id(&id)
            .description(format!("stackctl {}", ctx.stack))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateDeployment"))?;
        let deployment_id = deployment
            .id()
            .ok_or_else(|| incomplete(&work.target(), "CreateDeployment", "id"))?
            .to_string();
        if has_stage {
            let mut req = gateway
                .update_stage()
                .rest_api_id(&id)
                .stage_name(&desired.stage)
                .patch_operations(replace("/deploymentId", &deployment_id));
            if work.changed("vpc_link_id") {
                req = req.patch_operations(replace(
                    &format!("/variables/{LINK_VARIABLE}"),
                    &desired.vpc_link_id,
                ));
            }
            req.send()
                .await
                .map_err(api!(subject.clone(), "UpdateStage"))?;
        } else {
            gateway
                .create_stage()
                .rest_api_id(&id)
                .stage_name(&desired.stage)
                .deployment_id(&deployment_id)
                .variables(LINK_VARIABLE, &desired.vpc_link_id)
                .set_tags(Some(tag_map(&work.desired.tags)))
                .send()
                .await
                .map_err(api!(subject.clone(), "CreateStage"))?;
        }
    } else if work.changed("vpc_link_id") {
        gateway
            .update_stage()
            .rest_api_id(&id)
            .stage_name(&desired.stage)
            .patch_operations(replace(
                &format!("/variables/{LINK_VARIABLE}"),
                &desired.vpc_link_id,
            ))
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateStage"))?;
    }
    if !created {
        apply_tags(ctx, work, &format!("/restapis/{id}")).await?;
    }
    out.insert(
        "invoke_url".into(),
        invoke_url(&ctx.env.region, &id, &desired.stage),
    );
    Ok(out)
}

/// Makes the API's resources exactly `routes`: each with method `ANY` and
/// its link proxy integration (a greedy `{proxy+}` resource passes the rest
/// of the path on), its parents created as needed; resources outside every
/// route are deleted.
async fn put_routes(
    ctx: &Ctx,
    work: &Work,
    id: &str,
    routes: &BTreeMap<String, String>,
) -> Result<()> {
    let subject = work.subject();
    let gateway = ctx.aws.apigateway();
    let inside = read_inside(ctx, &subject, id).await?;
    let root = inside
        .root_id
        .clone()
        .ok_or_else(|| incomplete(&work.target(), "GetResources", "/"))?;
    let mut ids = inside.resources.clone();
    for (path, uri) in routes {
        let mut parent = root.clone();
        let mut at = String::new();
        for part in path.trim_start_matches('/').split('/') {
            at = format!("{at}/{part}");
            parent = match ids.get(&at) {
                Some(existing) => existing.clone(),
                None => {
                    let made = gateway
                        .create_resource()
                        .rest_api_id(id)
                        .parent_id(&parent)
                        .path_part(part)
                        .send()
                        .await
                        .map_err(api!(subject.clone(), "CreateResource"))?;
                    let made = made
                        .id()
                        .ok_or_else(|| incomplete(&work.target(), "CreateResource", "id"))?
                        .to_string();
                    ids.insert(at.clone(), made.clone());
                    made
                }
            };
        }
        let greedy = path.ends_with(PROXY_PART);
        if !inside.methods.contains(path) {
            let mut method = gateway
                .put_method()
                .rest_api_id(id)
                .resource_id(&parent)
                .http_method(METHOD)
                .authorization_type("NONE");
            if greedy {
                method = method.request_parameters("method.request.path.proxy", true);
            }
            method
                .send()
                .await
                .map_err(api!(subject.clone(), "PutMethod"))?;
        }
        if inside.routes.get(path) != Some(uri) {
            // PutIntegration replaces an integration that is there.
            let mut integration = gateway
                .put_integration()
                .rest_api_id(id)
                .resource_id(&parent)
                .http_method(METHOD)
                .r#type(IntegrationType::HttpProxy)
                .integration_http_method(METHOD)
                .uri(uri)
                .connection_type(ConnectionType::VpcLink)
                .connection_id(LINK_CONNECTION_ID);
            if greedy {
                integration = integration.request_parameters(
                    "integration.request.path.proxy",
                    "method.request.path.proxy",
                );
            }
            integration
                .send()
                .await
                .map_err(api!(subject.clone(), "PutIntegration"))?;
        }
    }
    // Innermost first (a path sorts after its parent's), each one: no
    // resource is left under a deleted parent, whatever the endpoint does
    // with children.
    for (path, resource) in inside.resources.iter().rev() {
        let kept = routes
            .keys()
            .any(|r| r == path || r.starts_with(&format!("{path}/")));
        if kept {
            continue;
        }
        let gone = gateway
            .delete_resource()
            .rest_api_id(id)
            .resource_id(resource)
            .send()
            .await
            .map_err(api!(subject.clone(), "DeleteResource"));
        not_found_is_none(gone)?;
    }
    Ok(())
}

/// Deletes the stage, then the REST API (with its deployments, resources
/// and methods).
pub(crate) async fn delete_rest_api(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let subject = subject_of(o);
    let id = super::output(o, "id", "DeleteRestApi")?;
    let gateway = ctx.aws.apigateway();
    if let Attributes::ApiGatewayRestApi(a) = &o.resource.attributes
        && !a.stage.is_empty()
    {
        let deleted = gateway
            .delete_stage()
            .rest_api_id(id)
            .stage_name(&a.stage)
            .send()
            .await
            .map_err(api!(subject.clone(), "DeleteStage"));
        not_found_is_none(deleted)?;
    }
    gateway
        .delete_rest_api()
        .rest_api_id(id)
        .send()
        .await
        .map_err(api!(subject, "DeleteRestApi"))?;
    Ok(Deleted::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_arns() {
        assert_eq!(
            invoke_url("us-east-1", "abc123", "v1"),
            "https://abc123.execute-api.us-east-1.amazonaws.com/v1"
        );
        assert_eq!(
            invoke_url("cn-north-1", "abc123", "v1"),
            "https://abc123.execute-api.cn-north-1.amazonaws.com.cn/v1"
        );
        assert_eq!(
            arn("us-east-1", "/vpclinks/x1"),
            "arn:aws:apigateway:us-east-1::/vpclinks/x1"
        );
    }

    #[test]
    fn only_the_link_proxy_counts() {
        let proxy = Some(&IntegrationType::HttpProxy);
        let link = Some(&ConnectionType::VpcLink);
        assert!(is_link_proxy(proxy, link, Some(LINK_CONNECTION_ID)));
        assert!(is_link_proxy(proxy, link, None));
        assert!(!is_link_proxy(proxy, link, Some("abc123")));
        assert!(!is_link_proxy(
            proxy,
            Some(&ConnectionType::Internet),
            Some(LINK_CONNECTION_ID)
        ));
        assert!(!is_link_proxy(
            Some(&IntegrationType::Http),
            link,
            Some(LINK_CONNECTION_ID)
        ));
    }
}
