//! `stackctl bench` on a `provider: aws` stack: finds the event API from
//! the spec's connection type (the load balancer's DNS name for `public`,
//! the API Gateway stage's invoke URL for `vpc_link`, the Cloud Map name
//! for `internal_dns`), its address inside the VPC (where load agents send
//! to), the event key the deployed event-API task definition carries and
//! the runs-API token (the one `up` stored in SSM, else the spec's); decides
//! where the load comes from ([`route`]: from here when the event API
//! answers here, else from agents inside the VPC); says how to reach the
//! endpoint when asked to check it; and samples the ECS services'
//! desired/running counts, the executor ASG's desired/InService and the SQS
//! queue depths for the timeline, so a user sees auto-scaling react.
//!
//! Resources are found by the deterministic names of the stack's graph,
//! one describe call per service, never through the tagging API.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_servicediscovery::types::{
    FilterCondition, NamespaceFilter, NamespaceFilterName, NamespaceType, ServiceFilter,
    ServiceFilterName,
};
use aws_sdk_sqs::types::QueueAttributeName;
use tokio::sync::OnceCell;

use super::{BenchError, LoadError, Sampler, Target};
use crate::aws::{Aws, AwsError, Subject};
use crate::graph::{Attributes, Graph, LogicalId};
use crate::spec::{Connection, LoadedSpec};

/// The engine variable holding the event keys (comma-separated).
const EVENT_KEYS_VAR: &str = engine::config::ENV_EVENT_KEYS;
/// The SQS depth attributes sampled, and the gauge suffix of each.
const DEPTHS: [(QueueAttributeName, &str); 3] = [
    (QueueAttributeName::ApproximateNumberOfMessages, "visible"),
    (
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        "in_flight",
    ),
    (
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        "delayed",
    ),
];

/// The physical names of what bench reads, from the stack's graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsNames {
    /// The stack.
    pub stack: String,
    /// The ECS cluster.
    pub cluster: String,
    /// (role, ECS service name): `event-api`, `runner`.
    pub services: Vec<(String, String)>,
    /// The executors' Auto Scaling group.
    pub asg: Option<String>,
    /// (label, SQS queue name): `events`, `work` and their DLQs.
    pub queues: Vec<(String, String)>,
    /// The load balancer in front of the event API (`public`, `vpc_link`).
    pub load_balancer: Option<String>,
    /// The API Gateway REST API publishing the event API and its stage
    /// (`vpc_link`).
    pub rest_api: Option<(String, String)>,
    /// Its listener's port.
    pub listener_port: u16,
    /// Cloud Map (namespace, service) of the event API (`internal_dns`).
    pub cloud_map: Option<(String, String)>,
    /// The event API's container port.
    pub port: u16,
    /// How the spec connects the event API.
    pub connection: Connection,
    /// The domain of an HTTPS `public` event API.
    pub domain: Option<String>,
}

impl AwsNames {
    /// The names of `loaded`'s resources.
    pub fn of(loaded: &LoadedSpec) -> Result<Self, BenchError> {
        let spec = &loaded.spec;
        let graph = Graph::build(loaded).map_err(|e| BenchError::Stack(e.to_string()))?;
        let name = |id: &str| graph.get(&LogicalId::from(id)).map(|r| r.name.clone());
        let services = ["event-api", "runner"]
            .into_iter()
            .filter_map(|role| Some((role.to_string(), name(&format!("ecs.service.{role}"))?)))
            .collect();
        let queues = ["events", "work", "events-dlq", "work-dlq"]
            .into_iter()
            .filter_map(|q| Some((q.to_string(), name(&format!("sqs.{q}"))?)))
            .collect();
        let cloud_map = name("cloudmap.namespace").zip(name("cloudmap.service"));
        Ok(Self {
            stack: spec.stack.clone(),
            cluster: name("ecs.cluster").unwrap_or_else(|| spec.stack.clone()),
            services,
            asg: name("autoscaling.group.executors"),
            queues,
            load_balancer: name("elb.load-balancer"),
            rest_api: match graph
                .get(&LogicalId::from("apigateway.rest-api"))
                .map(|r| (&r.name, &r.attributes))
            {
                Some((name, Attributes::ApiGatewayRestApi(a))) => {
                    Some((name.clone(), a.stage.clone()))
                }
                _ => None,
            },
            listener_port: match graph
                .get(&LogicalId::from("elb.listener"))
                .map(|r| &r.attributes)
            {
                Some(Attributes::Listener(l)) => l.port,
                _ => 80,
            },
            cloud_map,
            port: spec
                .services
                .event_api
                .port
                .unwrap_or(crate::local::DEFAULT_EVENT_API_PORT),
            connection: spec.network.event_api,
            domain: graph.event_api_domain.clone(),
        })
    }
}

/// `what` (a resource of the stack) does not exist.
fn not_up(names: &AwsNames, what: &str) -> BenchError {
    BenchError::Stack(format!(
        "{what} of stack `{}` does not exist: is it up? (`stackctl up`)",
        names.stack
    ))
}

fn aws_err(e: AwsError) -> BenchError {
    BenchError::Stack(e.to_string())
}

/// The stack's event API, event key and runs-API token, as deployed;
/// `address` (a forwarded port, `--url`) replaces the discovered address.
/// The URL is not checked for reachability: see [`check_reachable`].
pub async fn discover(
    aws: &Aws,
    loaded: &LoadedSpec,
    address: Option<&str>,
) -> Result<Target, BenchError> {
    let names = AwsNames::of(loaded)?;
    let base = match address {
        Some(a) => a.trim_end_matches('/').to_string(),
        None => event_api_url(aws, &names).await?,
    };
    let key = event_key(aws, loaded, &names).await?;
    // The token `up` stored in SSM (the spec's or a generated one) is the
    // one the deployed engine accepts; the spec's when nothing is stored.
    let stored = ssm_value(
        aws,
        &crate::aws::secrets::parameter_name(&names.stack, "api_token"),
    )
    .await
    .map_err(aws_err)?;
    let token = stored.or_else(|| loaded.spec.api_token.clone());
    let mut target = Target::from_url(&base, &key, token);
    // The engine's metrics are not published outside the VPC; the
    // timeline's gauges come from the AWS APIs instead (`AwsSampler`).
    target.metrics = None;
    Ok(target)
}

/// Where `bench`'s load comes from on an AWS stack.
#[derive(Debug, Clone)]
pub enum Route {
    /// From this machine, straight to the event API.
    Direct,
    /// From load agents inside the VPC ([`super::agents`]).
    Agents {
        /// How many.
        count: usize,
        /// Why the load does not come from here when nobody asked for
        /// agents (the event API is unreachable from here, and how).
        reason: Option<String>,
    },
}

/// The target of `bench` on an AWS stack (see [`discover`]) and where its
/// load comes from: `agents` when given, else from here when the event API
/// answers a TCP connection within `within`, else from one agent inside
/// the VPC. `address` (`--url`) always means from here.
pub async fn route(
    aws: &Aws,
    loaded: &LoadedSpec,
    address: Option<&str>,
    agents: Option<usize>,
    within: Duration,
) -> Result<(Target, Route), BenchError> {
    let target = discover(aws, loaded, address).await?;
    if let Some(count) = agents {
        return Ok((
            target,
            Route::Agents {
                count,
                reason: None,
            },
        ));
    }
    if address.is_some() {
        return Ok((target, Route::Direct));
    }
    match unreachable(&target.event_api, within).await? {
        None => Ok((target, Route::Direct)),
        Some(why) => Ok((
            target.clone(),
            Route::Agents {
                count: 1,
                reason: Some(format!(
                    "the event API at {} cannot be reached from here: {why}",
                    target.event_api
                )),
            },
        )),
    }
}

/// The event API's base URL for the spec's connection type.
pub async fn event_api_url(aws: &Aws, names: &AwsNames) -> Result<String, BenchError> {
    match names.connection {
        Connection::VpcLink => {
            let (api, stage) = names
                .rest_api
                .as_ref()
                .ok_or_else(|| BenchError::Stack("the stack has no API Gateway REST API".into()))?;
            let found = crate::aws::rest_api_invoke_url(aws, &names.stack, api, stage)
                .await
                .map_err(aws_err)?;
            found.ok_or_else(|| {
                not_up(
                    names,
                    &format!("the API Gateway REST API `{api}` (stage `{stage}`)"),
                )
            })
        }
        Connection::Public => match &names.domain {
            Some(domain) => Ok(format!("https://{domain}")),
            None => load_balancer_url(aws, names).await,
        },
        Connection::InternalDns => {
            let (ns, service) = names
                .cloud_map
                .as_ref()
                .ok_or_else(|| BenchError::Stack("the stack has no Cloud Map service".into()))?;
            let ns_id = find_namespace(aws, ns)
                .await?
                .ok_or_else(|| not_up(names, &format!("the Cloud Map namespace `{ns}`")))?;
            if !has_service(aws, ns, &ns_id, service).await? {
                return Err(not_up(
                    names,
                    &format!("the Cloud Map service `{service}.{ns}`"),
                ));
            }
            Ok(format!("http://{service}.{ns}:{}", names.port))
        }
        Connection::Internal => Err(BenchError::Stack(format!(
            "stack `{}` has `network.event_api: internal`: its event API has no address outside \
             the VPC (only the tasks' private IPs, port {}). Run bench from inside the VPC with \
             --url http://TASK_IP:{}, or forward a port to a task and pass --url http://127.0.0.1:PORT",
            names.stack, names.port, names.port
        ))),
    }
}

/// The event API's address inside the VPC, where load agents send from:
/// the Cloud Map name (`internal_dns`) or the load balancer's DNS name
/// (`public`, and the internal one behind a `vpc_link`); for an HTTPS
/// `public` event API, its domain and the load balancer's `DNS:443` to
/// connect to (the domain's record is the user's to make).
pub async fn in_vpc_url(
    aws: &Aws,
    names: &AwsNames,
) -> Result<(String, Option<String>), BenchError> {
    match names.connection {
        Connection::InternalDns => Ok((event_api_url(aws, names).await?, None)),
        Connection::Public if names.domain.is_some() => {
            let dns = load_balancer_dns(aws, names).await?;
            Ok((
                event_api_url(aws, names).await?,
                Some(format!("{dns}:{}", names.listener_port)),
            ))
        }
        Connection::Public | Connection::VpcLink => {
            Ok((load_balancer_url(aws, names).await?, None))
        }
        Connection::Internal => Err(BenchError::Stack(format!(
            "stack `{}` has `network.event_api: internal`: its event API has no name inside the \
             VPC either (only the tasks' private IPs), so load agents have nothing to aim at; \
             use internal_dns, vpc_link or public, or pass --url",
            names.stack
        ))),
    }
}

/// `http://DNS[:port]` of the stack's load balancer (its listener).
async fn load_balancer_url(aws: &Aws, names: &AwsNames) -> Result<String, BenchError> {
    let dns = load_balancer_dns(aws, names).await?;
    Ok(match names.listener_port {
        80 => format!("http://{dns}"),
        port => format!("http://{dns}:{port}"),
    })
}

/// The DNS name of the stack's load balancer.
async fn load_balancer_dns(aws: &Aws, names: &AwsNames) -> Result<String, BenchError> {
    let lb = names
        .load_balancer
        .as_deref()
        .ok_or_else(|| BenchError::Stack("the stack has no load balancer".into()))?;
    let out = aws
        .elbv2()
        .describe_load_balancers()
        .names(lb)
        .send()
        .await
        .map_err(|e| {
            AwsError::api(
                Subject::other("load balancer", lb),
                "DescribeLoadBalancers",
                e,
            )
        });
    let out = match out {
        Ok(o) => o,
        Err(e) if e.is_not_found() => {
            return Err(not_up(names, &format!("the load balancer `{lb}`")));
        }
        Err(e) => return Err(aws_err(e)),
    };
    out.load_balancers()
        .iter()
        .find_map(|l| l.dns_name())
        .map(str::to_string)
        .ok_or_else(|| not_up(names, &format!("the load balancer `{lb}`")))
}

async fn find_namespace(aws: &Aws, name: &str) -> Result<Option<String>, BenchError> {
    let filter = NamespaceFilter::builder()
        .name(NamespaceFilterName::Type)
        .values(NamespaceType::DnsPrivate.as_str())
        .condition(FilterCondition::Eq)
        .build()
        .map_err(|e| BenchError::Load(LoadError::Internal(e.to_string())))?;
    let mut token = None;
    loop {
        let out = aws
            .cloudmap()
            .list_namespaces()
            .filters(filter.clone())
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                aws_err(AwsError::api(
                    Subject::other("Cloud Map namespace", name),
                    "ListNamespaces",
                    e,
                ))
            })?;
        if let Some(ns) = out.namespaces().iter().find(|n| n.name() == Some(name)) {
            return Ok(ns.id().map(str::to_string));
        }
        token = out.next_token;
        if token.is_none() {
            return Ok(None);
        }
    }
}

async fn has_service(aws: &Aws, ns: &str, ns_id: &str, service: &str) -> Result<bool, BenchError> {
    let filter = ServiceFilter::builder()
        .name(ServiceFilterName::NamespaceId)
        .values(ns_id)
        .condition(FilterCondition::Eq)
        .build()
        .map_err(|e| BenchError::Load(LoadError::Internal(e.to_string())))?;
    let mut token = None;
    loop {
        let out = aws
            .cloudmap()
            .list_services()
            .filters(filter.clone())
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                aws_err(AwsError::api(
                    Subject::other("Cloud Map service", &format!("{service}.{ns}")),
                    "ListServices",
                    e,
                ))
            })?;
        if out.services().iter().any(|s| s.name() == Some(service)) {
            return Ok(true);
        }
        token = out.next_token;
        if token.is_none() {
            return Ok(false);
        }
    }
}

/// The key requests are sent with: the spec's `default` key (else its
/// first) when the deployed event API accepts it, else the first key the
/// deployed task definition holds. The deployed value wins because `up`
/// may have run with other `${STACKCTL_EVENT_KEY}` values than this shell has.
async fn event_key(aws: &Aws, loaded: &LoadedSpec, names: &AwsNames) -> Result<String, BenchError> {
    let spec = &loaded.spec;
    let wanted = spec
        .event_keys
        .get("default")
        .or_else(|| spec.event_keys.values().next())
        .cloned();
    let deployed = deployed_event_keys(aws, names).await?;
    match (wanted, deployed) {
        (Some(w), Some(keys)) if keys.contains(&w) => Ok(w),
        (_, Some(keys)) if !keys.is_empty() => Ok(keys[0].clone()),
        (Some(w), _) => Ok(w),
        (None, _) => Err(BenchError::NoEventKey),
    }
}

/// The event keys in the event-API service's task definition (a plain
/// variable or a secret read from SSM); `None` when the service is not deployed.
async fn deployed_event_keys(
    aws: &Aws,
    names: &AwsNames,
) -> Result<Option<Vec<String>>, BenchError> {
    let Some((_, service)) = names.services.iter().find(|(r, _)| r == "event-api") else {
        return Ok(None);
    };
    let subject = Subject::other("ECS service", service);
    let out = aws
        .ecs()
        .describe_services()
        .cluster(&names.cluster)
        .services(service)
        .send()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::api(subject, "DescribeServices", e);
            // No cluster yet: nothing deployed.
            return if e.is_not_found() {
                Ok(None)
            } else {
                Err(aws_err(e))
            };
        }
    };
    let Some(taskdef) = out
        .services()
        .iter()
        .filter(|s| s.status() != Some("INACTIVE"))
        .find_map(|s| s.task_definition())
    else {
        return Ok(None);
    };
    let out = aws
        .ecs()
        .describe_task_definition()
        .task_definition(taskdef)
        .send()
        .await
        .map_err(|e| {
            aws_err(AwsError::api(
                Subject::other("ECS task definition", taskdef),
                "DescribeTaskDefinition",
                e,
            ))
        })?;
    let containers = out
        .task_definition()
        .map(|t| t.container_definitions())
        .unwrap_or_default();
    for c in containers {
        if let Some(v) = c
            .environment()
            .iter()
            .find(|kv| kv.name() == Some(EVENT_KEYS_VAR))
            .and_then(|kv| kv.value())
        {
            return Ok(Some(split_keys(v)));
        }
        if let Some(from) = c
            .secrets()
            .iter()
            .find(|s| s.name() == EVENT_KEYS_VAR)
            .map(|s| s.value_from())
        {
            return Ok(ssm_value(aws, from)
                .await
                .map_err(aws_err)?
                .map(|v| split_keys(&v)));
        }
    }
    Ok(None)
}

fn split_keys(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

/// An SSM parameter's decrypted value (by name or ARN); `None` when absent.
async fn ssm_value(aws: &Aws, parameter: &str) -> Result<Option<String>, AwsError> {
    let got = aws
        .ssm()
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| AwsError::api(Subject::other("secret", parameter), "GetParameter", e));
    match got {
        Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why the event API at `base` cannot be reached from here within
/// `within` (`None`: it accepted a TCP connection).
async fn unreachable(base: &str, within: Duration) -> Result<Option<String>, BenchError> {
    let uri: hyper::http::Uri = base.parse().map_err(|e| LoadError::Option {
        option: "--url",
        message: format!("`{base}`: {e}"),
    })?;
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let why = match tokio::time::timeout(within, tokio::net::lookup_host((host.as_str(), port)))
        .await
    {
        Err(_) => format!("resolving `{host}` took longer than {}s", within.as_secs()),
        Ok(Err(e)) => format!("`{host}` does not resolve here ({e})"),
        Ok(Ok(mut addrs)) => match addrs.next() {
            None => format!("`{host}` has no address"),
            Some(addr) => {
                match tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => return Ok(None),
                    Ok(Err(e)) => format!("connecting to {addr} failed ({e})"),
                    Err(_) => format!("connecting to {addr} timed out after {}s", within.as_secs()),
                }
            }
        },
    };
    Ok(Some(why))
}

/// Checks the event API at `base` (`http://host[:port]`) resolves and
/// accepts a TCP connection from this machine within `within`; the error
/// names the connection type and the fix (`--url`).
pub async fn check_reachable(
    base: &str,
    connection: Connection,
    within: Duration,
) -> Result<(), BenchError> {
    let Some(why) = unreachable(base, within).await? else {
        return Ok(());
    };
    let (kind, fix) = match connection {
        Connection::InternalDns => (
            "a Cloud Map private DNS name, which resolves only inside the stack's VPC",
            "run `stackctl bench` from a machine in the VPC, or forward a port to the event API \
             (e.g. an SSM port-forwarding session to a task) and pass --url http://127.0.0.1:PORT",
        ),
        Connection::VpcLink => (
            "an API Gateway stage in front of an internal network load balancer",
            "check that the stage is deployed and its VPC link AVAILABLE (`stackctl status`), \
             or pass --url with the load balancer's address from inside the VPC or a forwarded port",
        ),
        Connection::Public => (
            "an internet-facing load balancer",
            "check that the load balancer is active, its security group admits this machine on \
             the listener's port, and the domain of an HTTPS event API has its DNS record (a \
             CNAME to the load balancer's DNS name in `stackctl status`), or pass --url",
        ),
        Connection::Internal => ("a private address", "pass --url"),
    };
    Err(BenchError::Stack(format!(
        "the event API is at {base} ({kind}), but {why}. Fix: {fix}; --url keeps the stack's \
         event key and the AWS gauges in the timeline"
    )))
}

/// Samples the stack's scaling gauges through the AWS APIs at most every
/// `every` (between reads the timeline keeps the last values):
/// `ecs.{role}.desired|running|pending`, `asg.executors.desired|in_service`
/// and `sqs.{queue}.visible|in_flight|delayed`. A failed read leaves the
/// gauges it would have set out of that sample.
pub struct AwsSampler {
    aws: Aws,
    names: AwsNames,
    every: Duration,
    last: Mutex<Option<Instant>>,
    queue_urls: OnceCell<Vec<(String, String)>>,
}

impl AwsSampler {
    /// A sampler of `names`' resources, reading at most every `every`.
    pub fn new(aws: Aws, names: AwsNames, every: Duration) -> Self {
        Self {
            aws,
            names,
            every,
            last: Mutex::new(None),
            queue_urls: OnceCell::new(),
        }
    }

    /// Reads every gauge now.
    pub async fn read(&self) -> BTreeMap<String, f64> {
        let (ecs, asg, sqs) = tokio::join!(self.ecs(), self.asg(), self.sqs());
        let mut out = ecs;
        out.extend(asg);
        out.extend(sqs);
        out
    }

    async fn ecs(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        if self.names.services.is_empty() {
            return out;
        }
        let mut call = self
            .aws
            .ecs()
            .describe_services()
            .cluster(&self.names.cluster);
        for (_, s) in &self.names.services {
            call = call.services(s);
        }
        let Ok(resp) = call.send().await else {
            return out;
        };
        for s in resp.services() {
            let Some((role, _)) = self
                .names
                .services
                .iter()
                .find(|(_, n)| Some(n.as_str()) == s.service_name())
            else {
                continue;
            };
            out.insert(format!("ecs.{role}.desired"), f64::from(s.desired_count()));
            out.insert(format!("ecs.{role}.running"), f64::from(s.running_count()));
            out.insert(format!("ecs.{role}.pending"), f64::from(s.pending_count()));
        }
        out
    }

    async fn asg(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let Some(name) = &self.names.asg else {
            return out;
        };
        let Ok(resp) = self
            .aws
            .autoscaling()
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
        else {
            return out;
        };
        if let Some(g) = resp.auto_scaling_groups().first() {
            let in_service = g
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
                .count();
            out.insert(
                "asg.executors.desired".into(),
                f64::from(g.desired_capacity().unwrap_or(0)),
            );
            out.insert("asg.executors.in_service".into(), in_service as f64);
        }
        out
    }

    /// The queues' URLs, looked up once (the ones that exist).
    async fn urls(&self) -> &[(String, String)] {
        self.queue_urls
            .get_or_init(|| async {
                let mut urls = Vec::new();
                for (label, name) in &self.names.queues {
                    if let Ok(r) = self.aws.sqs().get_queue_url().queue_name(name).send().await
                        && let Some(u) = r.queue_url
                    {
                        urls.push((label.clone(), u));
                    }
                }
                urls
            })
            .await
    }

    async fn sqs(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        // A handful of small reads, one after the other: at most every few seconds.
        for (label, url) in self.urls().await {
            let mut call = self.aws.sqs().get_queue_attributes().queue_url(url);
            for (attr, _) in &DEPTHS {
                call = call.attribute_names(attr.clone());
            }
            if let Ok(r) = call.send().await
                && let Some(attrs) = r.attributes()
            {
                for (attr, suffix) in &DEPTHS {
                    if let Some(v) = attrs.get(attr).and_then(|v| v.parse::<f64>().ok()) {
                        out.insert(format!("sqs.{label}.{suffix}"), v);
                    }
                }
            }
        }
        out
    }
}

impl Sampler for AwsSampler {
    fn sample(&self) -> Pin<Box<dyn Future<Output = BTreeMap<String, f64>> + Send + '_>> {
        Box::pin(async move {
            {
                let mut last = self
                    .last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                if last.is_some_and(|t| now.duration_since(t) < self.every) {
                    return BTreeMap::new();
                }
                *last = Some(now);
            }
            self.read().await
        })
    }
}
