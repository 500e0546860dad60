//! `event_api: vpc_link` against the moto server: the example stack with
//! that connection type (on an external Redis, so `down` can finish) applies
//! fully. SDK calls, independent of the provider's readers, find a VPC link
//! targeting the internal network load balancer, and a regional REST API
//! tagged for the stack whose `/e/{proxy+}`, `/health` and `/health/{proxy+}`
//! resources (and no other) have an `ANY` method with an `HTTP_PROXY`
//! integration through the link to the load balancer's listener, deployed
//! to stage `v1` (whose `vpcLinkId` variable is the link). The stage's
//! invoke URL is what `apply` reports and `bench` finds. A second plan is
//! empty and a second apply makes no write call; `publish: all` turns the
//! resources into the one greedy `/{proxy+}`; `down` deletes the API and
//! the link and the sweep finds nothing.
//!
//! moto does not report an integration's `connectionId`; the provider takes
//! a missing one as the stage variable it always sets (see
//! `stacks::aws::kinds::apigateway`).

use std::path::Path;
use std::time::Duration;

use crate::aws_describe as describe;
use crate::support::{apply_plan, assert_converged, example_in, moto_and_aws};
use stacks::aws::{self, DownOptions, Inputs};
use stacks::graph::{Graph, Kind, LogicalId};
use stacks::spec::LoadedSpec;

const STACK: &str = "reference";

/// The example spec with `event_api: vpc_link` on an external Redis, in a
/// temp dir (with the function files it refers to).
fn vpc_link_example(dir: &Path) -> LoadedSpec {
    let mut loaded = example_in(dir, "event_api: vpc_link");
    loaded.spec.state.url = Some("rediss://redis.example.internal:6379".into());
    loaded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_link_publishes_the_event_api_through_a_rest_api_stage() {
    let (_moto, aws) = moto_and_aws().await;
    let dir = tempfile::tempdir().unwrap();
    let loaded = vpc_link_example(dir.path());
    let spec = &loaded.spec;
    let graph = Graph::from_spec(spec).unwrap();
    assert!(graph.kinds().contains(&Kind::ApiGatewayVpcLink));
    assert!(graph.kinds().contains(&Kind::ApiGatewayRestApi));
    assert!(!graph.kinds().contains(&Kind::ElastiCacheReplicationGroup));
    let inputs = Inputs::from_spec(spec, None);
    let plan = aws::plan(&aws, &graph, &inputs).await.unwrap();
    let report = apply_plan(&aws, &plan).await;
    let out = |id: &str, key: &str| report.outputs[&LogicalId::new(id)][key].clone();

    // Checked with the SDK, not the provider's readers.
    let lb = describe::load_balancer(aws.elbv2(), "reference-api").await;
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("network"));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internal"));
    let lb_arn = lb.load_balancer_arn().unwrap().to_string();
    let lb_dns = lb.dns_name().unwrap().to_string();

    let gateway = aws.apigateway();
    let links = gateway.get_vpc_links().send().await.unwrap();
    assert_eq!(links.items().len(), 1, "{links:?}");
    let link = &links.items()[0];
    let link_id = link.id().unwrap().to_string();
    assert_eq!(link_id, out("apigateway.vpc-link", "id"));
    assert_eq!(link.name(), Some("reference-api"));
    assert_eq!(link.target_arns(), std::slice::from_ref(&lb_arn));
    assert_eq!(link.status().map(|s| s.as_str()), Some("AVAILABLE"));
    let tags = link.tags().unwrap();
    assert_eq!(tags.get("stackctl:stack").map(String::as_str), Some(STACK));
    assert_eq!(
        tags.get("stackctl:resource").map(String::as_str),
        Some("apigateway.vpc-link")
    );

    let apis = gateway.get_rest_apis().send().await.unwrap();
    assert_eq!(apis.items().len(), 1, "{apis:?}");
    let api = &apis.items()[0];
    let api_id = api.id().unwrap().to_string();
    assert_eq!(api_id, out("apigateway.rest-api", "id"));
    assert_eq!(api.name(), Some("reference-api"));
    assert_eq!(
        api.endpoint_configuration().map(|c| c
            .types()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()),
        Some(vec!["REGIONAL"])
    );
    assert_eq!(
        api.tags()
            .and_then(|t| t.get("stackctl:stack"))
            .map(String::as_str),
        Some(STACK)
    );
    // Each published resource: its method and its integration's URI, and
    // whether the rest of the path is passed on.
    let published = |api_id: String| {
        let gateway = gateway.clone();
        async move {
            let resources = gateway
                .get_resources()
                .rest_api_id(&api_id)
                .send()
                .await
                .unwrap();
            let mut out = Vec::new();
            for r in resources.items() {
                let path = r.path().unwrap().to_string();
                if path == "/" {
                    continue;
                }
                let Ok(method) = gateway
                    .get_method()
                    .rest_api_id(&api_id)
                    .resource_id(r.id().unwrap())
                    .http_method("ANY")
                    .send()
                    .await
                else {
                    out.push((path, None));
                    continue;
                };
                assert_eq!(method.authorization_type(), Some("NONE"));
                let integration = gateway
                    .get_integration()
                    .rest_api_id(&api_id)
                    .resource_id(r.id().unwrap())
                    .http_method("ANY")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(integration.r#type().map(|t| t.as_str()), Some("HTTP_PROXY"));
                assert_eq!(
                    integration.connection_type().map(|t| t.as_str()),
                    Some("VPC_LINK")
                );
                // moto leaves `connectionId` out; AWS reports the stage variable.
                if let Some(c) = integration.connection_id() {
                    assert_eq!(c, "${stageVariables.vpcLinkId}");
                }
                let greedy = method
                    .request_parameters()
                    .and_then(|p| p.get("method.request.path.proxy"))
                    == Some(&true)
                    && integration
                        .request_parameters()
                        .and_then(|p| p.get("integration.request.path.proxy"))
                        .map(String::as_str)
                        == Some("method.request.path.proxy");
                out.push((path, Some((integration.uri().unwrap().to_string(), greedy))));
            }
            out.sort();
            out
        }
    };
    let route = |path: &str, uri: &str, greedy: bool| {
        (
            path.to_string(),
            Some((format!("http://{lb_dns}:80{uri}"), greedy)),
        )
    };
    assert_eq!(
        published(api_id.clone()).await,
        [
            // The parent of the greedy resource, without a method.
            ("/e".to_string(), None),
            route("/e/{proxy+}", "/e/{proxy}", true),
            route("/health", "/health", false),
            route("/health/{proxy+}", "/health/{proxy}", true),
        ]
    );

    let stages = gateway
        .get_stages()
        .rest_api_id(&api_id)
        .send()
        .await
        .unwrap();
    assert_eq!(stages.item().len(), 1, "{stages:?}");
    let stage = &stages.item()[0];
    assert_eq!(stage.stage_name(), Some("v1"));
    assert_eq!(
        stage.variables().and_then(|v| v.get("vpcLinkId")),
        Some(&link_id),
        "the stage variable names the link"
    );
    let deployments = gateway
        .get_deployments()
        .rest_api_id(&api_id)
        .send()
        .await
        .unwrap();
    assert!(
        deployments
            .items()
            .iter()
            .any(|d| d.id() == stage.deployment_id()),
        "the stage serves a deployment: {deployments:?}"
    );

    // The event API's address is the stage's invoke URL, for `up`,
    // `status` and `bench`.
    let url = format!("https://{api_id}.execute-api.us-east-1.amazonaws.com/v1");
    assert_eq!(out("apigateway.rest-api", "invoke_url"), url);
    assert_eq!(
        aws::event_api_url(&graph, &report.outputs).as_deref(),
        Some(url.as_str())
    );
    let names = stacks::bench::aws::AwsNames::of(&loaded).unwrap();
    assert_eq!(
        stacks::bench::aws::event_api_url(&aws, &names)
            .await
            .unwrap(),
        url
    );

    // Converged: no change planned, and a second apply writes nothing.
    assert_converged(&aws, &graph, &inputs).await;

    // `publish: all`: one greedy resource for every path, the others gone.
    let mut all = loaded.clone();
    all.spec.network.publish = stacks::spec::Publish::All;
    let graph_all = Graph::from_spec(&all.spec).unwrap();
    let plan = aws::plan(&aws, &graph_all, &inputs).await.unwrap();
    apply_plan(&aws, &plan).await;
    assert_eq!(
        published(api_id.clone()).await,
        [route("/{proxy+}", "/{proxy}", true)]
    );
    let again = aws::plan(&aws, &graph_all, &inputs).await.unwrap();
    assert!(!again.plan.has_changes(), "{}", again.plan.render_text());

    // `down` deletes the API before the link and the link before the load
    // balancer; nothing of the stack is left.
    let down = aws::down(
        &aws,
        &graph,
        &DownOptions {
            parallelism: 6,
            wait_timeout: Duration::from_secs(30),
        },
        &stacks::local::Silent,
    )
    .await
    .unwrap();
    assert!(down.clean(), "{down:#?}");
    for id in ["apigateway.rest-api", "apigateway.vpc-link"] {
        assert!(
            down.deleted.iter().any(|i| i.id == id),
            "{id} deleted: {down:#?}"
        );
    }
    assert!(
        gateway
            .get_vpc_links()
            .send()
            .await
            .unwrap()
            .items()
            .is_empty()
    );
    assert!(
        gateway
            .get_rest_apis()
            .send()
            .await
            .unwrap()
            .items()
            .is_empty()
    );
}
