//! Load balancer, target group and listener apply (elbv2) against the moto
//! server, for `event_api: public`: the example stack with that connection
//! type applies fully; SDK describe calls (independent of the provider's
//! readers) find an internet-facing application load balancer in the
//! default subnets behind the `lb` security group, an `ip` target group
//! health-checking `/health` on the event API's port, an HTTP listener on
//! port 80 forwarding to it, and the event API's ECS service registered
//! with that target group. The plan after it is empty and a second apply
//! makes no write call. `vpc_link` (a network load balancer behind API
//! Gateway) is tested in `aws_apigateway.rs`.

use std::path::Path;

use crate::aws_describe as describe;
use crate::support::{apply_plan, assert_converged, example_in, moto_and_aws};
use harness::TestCertificate;
use stacks::aws::{self, Inputs};
use stacks::graph::{Graph, LogicalId};
use stacks::spec::Spec;

/// The example spec with another connection type, in a temp dir (with the
/// function files it refers to); `network` is YAML added under `network:`.
fn example_with(connection: &str, network: &str, dir: &Path) -> Spec {
    example_in(dir, &format!("event_api: {connection}\n{network}")).spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_event_api_gets_a_load_balancer_target_group_and_listener() {
    let (moto, aws) = moto_and_aws().await;
    let dir = tempfile::tempdir().unwrap();
    let certificate = TestCertificate::issue(dir.path(), "events.example.test").unwrap();
    let certificate_arn = moto.import_certificate(&certificate).unwrap();
    let https = format!(
        "  https:\n    certificate_arn: {certificate_arn}\n    domain: events.example.test\n"
    );
    let spec = example_with("public", &https, dir.path());
    let graph = Graph::from_spec(&spec).unwrap();
    for id in ["elb.load-balancer", "elb.target-group", "elb.listener"] {
        assert!(
            graph.get(&LogicalId::new(id)).is_some(),
            "{id} in the graph"
        );
    }
    let inputs = Inputs::from_spec(&spec, None);
    let plan = aws::plan(&aws, &graph, &inputs).await.unwrap();
    let report = apply_plan(&aws, &plan).await;
    let out = |id: &str, key: &str| report.outputs[&LogicalId::new(id)][key].clone();
    // Clients use the domain; its DNS record points at the load balancer.
    assert_eq!(
        aws::event_api_url(&graph, &report.outputs).as_deref(),
        Some("https://events.example.test")
    );
    assert_eq!(
        aws::event_api_dns_target(&graph, &report.outputs),
        Some(out("elb.load-balancer", "dns_name"))
    );

    // Checked with the SDK, not the provider's readers.
    let elb = aws.elbv2();
    let lb = describe::load_balancer(elb, "reference-api").await;
    assert_eq!(
        lb.load_balancer_arn(),
        Some(out("elb.load-balancer", "arn").as_str())
    );
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("application"));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    assert_eq!(lb.security_groups(), [out("ec2.sg.lb", "id")]);
    let env = aws.env().await.unwrap();
    let mut subnets: Vec<&str> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id())
        .collect();
    subnets.sort();
    assert_eq!(
        subnets,
        env.subnets.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let tags = elb
        .describe_tags()
        .resource_arns(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_descriptions()[0]
            .tags()
            .iter()
            .any(|t| t.key() == Some("stackctl:stack") && t.value() == Some("reference")),
        "{tags:?}"
    );

    let tgs = elb
        .describe_target_groups()
        .names("reference-event-api")
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    let tg_arn = tg.target_group_arn().unwrap().to_string();
    assert_eq!(tg_arn, out("elb.target-group", "arn"));
    assert_eq!(tg.protocol().map(|p| p.as_str()), Some("HTTP"));
    assert_eq!(tg.port(), Some(8288));
    assert_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"));
    assert_eq!(tg.vpc_id(), Some(env.vpc_id.as_str()));
    assert_eq!(tg.health_check_path(), Some("/health/ready"));
    assert_eq!(tg.health_check_interval_seconds(), Some(15));
    let attrs = elb
        .describe_target_group_attributes()
        .target_group_arn(&tg_arn)
        .send()
        .await
        .unwrap();
    assert!(
        attrs
            .attributes()
            .iter()
            .any(|a| a.key() == Some("deregistration_delay.timeout_seconds")
                && a.value() == Some("30")),
        "{attrs:?}"
    );

    let listeners = describe::listeners_of(elb, lb.load_balancer_arn().unwrap()).await;
    assert_eq!(listeners.len(), 1);
    let listener = &listeners[0];
    // HTTPS only, with the spec's certificate; the security group admits
    // clients on 443 alone.
    assert_eq!(listener.port(), Some(443));
    assert_eq!(listener.protocol().map(|p| p.as_str()), Some("HTTPS"));
    assert_eq!(
        listener.certificates()[0].certificate_arn(),
        Some(certificate_arn.as_str())
    );
    assert_eq!(
        listener.ssl_policy(),
        Some("ELBSecurityPolicy-TLS13-1-2-2021-06")
    );
    let groups = aws
        .ec2()
        .describe_security_groups()
        .group_ids(out("ec2.sg.lb", "id"))
        .send()
        .await
        .unwrap();
    let ports: Vec<(Option<i32>, Option<i32>)> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .map(|p| (p.from_port(), p.to_port()))
        .collect();
    assert_eq!(ports, [(Some(443), Some(443))]);
    // Only the event paths are published: anything else is a 404 of the
    // load balancer's own.
    let default = &listener.default_actions()[0];
    assert_eq!(default.r#type().map(|t| t.as_str()), Some("fixed-response"));
    assert_eq!(
        default
            .fixed_response_config()
            .and_then(|f| f.status_code()),
        Some("404")
    );
    let published = |rules: &[aws_sdk_elasticloadbalancingv2::types::Rule]| {
        rules
            .iter()
            .filter(|r| r.is_default() != Some(true))
            .map(|r| {
                let paths: Vec<String> = r
                    .conditions()
                    .iter()
                    .filter_map(|c| c.path_pattern_config())
                    .flat_map(|p| p.values().to_vec())
                    .collect();
                let target = r.actions()[0].target_group_arn().map(str::to_string);
                (paths, target)
            })
            .collect::<Vec<_>>()
    };
    let listener_arn = listener.listener_arn().unwrap().to_string();
    let rules = describe::listener_rules(elb, &listener_arn).await;
    assert_eq!(
        published(&rules),
        [(
            vec!["/e/*".to_string(), "/health".into(), "/health/*".into()],
            Some(tg_arn.clone())
        )]
    );

    let service = describe::service(aws.ecs(), "reference", "reference-event-api").await;
    assert_eq!(
        service.load_balancers()[0].target_group_arn(),
        Some(tg_arn.as_str()),
        "the event API's tasks register with the target group"
    );

    // Converged: no change planned, and a second apply writes nothing.
    assert_converged(&aws, &graph, &inputs).await;

    // `publish: all`: the listener forwards every path by default and its
    // rule is gone; then converged again.
    let https_all = format!("{https}  publish: all\n");
    let spec = example_with("public", &https_all, dir.path());
    let graph = Graph::from_spec(&spec).unwrap();
    let inputs = Inputs::from_spec(&spec, None);
    let plan = aws::plan(&aws, &graph, &inputs).await.unwrap();
    let text = plan.plan.render_text();
    assert!(text.contains("changed: paths"), "{text}");
    apply_plan(&aws, &plan).await;
    let listeners = elb
        .describe_listeners()
        .listener_arns(&listener_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listeners.listeners()[0].default_actions()[0].target_group_arn(),
        Some(tg_arn.as_str())
    );
    let rules = describe::listener_rules(elb, &listener_arn).await;
    assert_eq!(published(&rules), []);
    let again = aws::plan(&aws, &graph, &inputs).await.unwrap();
    assert!(!again.plan.has_changes(), "{}", again.plan.render_text());

    // From plain HTTP to HTTPS and back, the one listener is modified in
    // place: no port stays open beside the new one.
    for (network, port, protocol) in [
        ("  plain_http: true\n".to_string(), 80, "HTTP"),
        (https.clone(), 443, "HTTPS"),
    ] {
        let spec = example_with("public", &network, dir.path());
        let graph = Graph::from_spec(&spec).unwrap();
        let plan = aws::plan(&aws, &graph, &Inputs::from_spec(&spec, None))
            .await
            .unwrap();
        apply_plan(&aws, &plan).await;
        let listeners = describe::listeners_of(elb, lb.load_balancer_arn().unwrap()).await;
        let shape: Vec<(Option<i32>, Option<&str>)> = listeners
            .iter()
            .map(|l| (l.port(), l.protocol().map(|p| p.as_str())))
            .collect();
        assert_eq!(shape, [(Some(port), Some(protocol))], "{network}");
        assert_eq!(listeners[0].listener_arn(), Some(listener_arn.as_str()));
    }
}
