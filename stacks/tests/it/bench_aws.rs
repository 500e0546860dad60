//! `stackctl bench` on an aws stack, against the moto server: discovery
//! finds the Cloud Map name of the applied `examples/aws.yaml`, the event
//! key its event-API task definition carries and the runs-API token `up`
//! generated in SSM; a `public` stack's URL is its load balancer's DNS name;
//! an unreachable endpoint is reported with the fix; and a bench run against
//! a loopback HTTP server (the discovered address overridden, as `--url`
//! does) carries the ECS, Auto Scaling and SQS gauges set through the SDK in
//! its timeline, including a change made while it runs. Each test starts
//! its own moto.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aws_describe as describe;
use crate::support::{apply_plan, example_loaded, moto_and_aws};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use stacks::aws::{self, Aws, Inputs};
use stacks::bench::aws::{AwsNames, AwsSampler, check_reachable, discover};
use stacks::bench::{self, BenchConfig, Load, Observer, Progress, Sample, Sampler};
use stacks::graph::Graph;
use stacks::spec::{Connection, LoadedSpec};
use tokio_util::sync::CancellationToken;

async fn apply(aws: &Aws, loaded: &LoadedSpec) {
    let graph = Graph::build(loaded).expect("graph");
    let inputs = Inputs::from_spec(&loaded.spec, None);
    let plan = aws::plan(aws, &graph, &inputs).await.expect("plan");
    apply_plan(aws, &plan).await;
}

/// The example with the event key `key` and no runs-API token (`up`
/// generates one).
fn example_with_key(key: &str) -> LoadedSpec {
    let mut loaded = example_loaded();
    loaded.spec.event_keys.insert("default".into(), key.into());
    loaded.spec.api_token = None;
    loaded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_cloud_map_name_the_deployed_key_and_the_ssm_token() {
    let (_moto, aws) = moto_and_aws().await;
    // Deployed with this key and a generated runs-API token (none in the spec).
    let loaded = example_with_key("key-at-up");
    apply(&aws, &loaded).await;

    // bench runs later, in a shell where the spec's key resolves differently.
    let later = example_with_key("key-in-this-shell");
    let target = discover(&aws, &later, None).await.expect("discovery");
    assert_eq!(target.event_api, "http://event-api.reference.internal:8288");
    assert_eq!(
        target.event_key, "key-at-up",
        "the key the deployed event API accepts"
    );
    assert_eq!(
        target.ingest_url(),
        "http://event-api.reference.internal:8288/e/key-at-up"
    );
    // `up` stored the token it generated.
    let stored = describe::parameter_value(aws.ssm(), "/stackctl/reference/api-token").await;
    assert_eq!(target.api_token.as_deref(), Some(stored.as_str()));
    assert_eq!(target.metrics, None, "no engine metrics outside the VPC");

    let names = AwsNames::of(&loaded).unwrap();
    assert_eq!(names.cluster, "reference");
    assert_eq!(
        names.services,
        vec![
            ("event-api".to_string(), "reference-event-api".to_string()),
            ("runner".to_string(), "reference-runner".to_string())
        ]
    );
    assert_eq!(names.asg.as_deref(), Some("reference-executors"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_stack_is_reached_through_its_load_balancer_and_errors_say_how_to_fix() {
    let (_moto, aws) = moto_and_aws().await;
    let mut loaded = example_loaded();
    loaded.spec.network.event_api = Connection::Public;

    let missing = discover(&aws, &loaded, None).await.unwrap_err().to_string();
    assert!(
        missing.contains("reference-api") && missing.contains("stackctl up"),
        "{missing}"
    );

    // The load balancer as `up` names it, made with the SDK.
    let env = aws.env().await.expect("default VPC").clone();
    let created = aws
        .elbv2()
        .create_load_balancer()
        .name("reference-api")
        .set_subnets(Some(env.subnets.clone()))
        .send()
        .await
        .expect("create the load balancer");
    let dns = created.load_balancers()[0].dns_name().unwrap().to_string();
    let target = discover(&aws, &loaded, None).await.expect("discovery");
    assert_eq!(target.event_api, format!("http://{dns}"));
    assert_eq!(target.event_key, "change-me-event-key", "the spec's key");
    assert_eq!(target.api_token.as_deref(), Some("change-me-api-token"));

    // Unreachable: a loopback port nobody listens on (no traffic leaves the machine).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = check_reachable(
        &format!("http://127.0.0.1:{closed}"),
        Connection::InternalDns,
        Duration::from_secs(2),
    )
    .await
    .unwrap_err()
    .to_string();
    for part in ["connecting to 127.0.0.1", "Cloud Map", "inside", "--url"] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = server.local_addr().unwrap();
    check_reachable(
        &format!("http://{open}"),
        Connection::Public,
        Duration::from_secs(2),
    )
    .await
    .expect("a listening port is reachable");

    loaded.spec.network.event_api = Connection::Internal;
    let internal = discover(&aws, &loaded, None).await.unwrap_err().to_string();
    assert!(internal.contains("--url"), "{internal}");
    let forwarded = discover(&aws, &loaded, Some("http://127.0.0.1:9000/"))
        .await
        .expect("--url replaces the address");
    assert_eq!(
        forwarded.ingest_url(),
        "http://127.0.0.1:9000/e/change-me-event-key"
    );
}

/// A loopback event API that accepts one key and counts requests.
struct Ingest {
    key: String,
    requests: AtomicU64,
}

async fn ingest(
    State(s): State<Arc<Ingest>>,
    UrlPath(key): UrlPath<String>,
) -> (StatusCode, &'static str) {
    if key != s.key {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"unknown key"}"#);
    }
    s.requests.fetch_add(1, Ordering::SeqCst);
    (StatusCode::OK, r#"{"ids":["x"],"status":200}"#)
}

async fn serve(key: &str) -> (SocketAddr, Arc<Ingest>) {
    let state = Arc::new(Ingest {
        key: key.into(),
        requests: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/e/{key}", post(ingest))
        .with_state(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

/// Passes each interval's gauges to the test while the run goes on.
struct Watch(tokio::sync::mpsc::UnboundedSender<Sample>);

impl Observer for Watch {
    fn tick(&self, sample: &Sample, _: &Progress) {
        let _ = self.0.send(sample.clone());
    }
    fn phase(&self, _: &str) {}
}

async fn send(aws: &Aws, url: &str, n: usize) {
    for i in 0..n {
        aws.sqs()
            .send_message()
            .queue_url(url)
            .message_body(format!("{{\"n\":{i}}}"))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_carries_the_counts_and_depths_set_through_the_sdk() {
    let (_moto, aws) = moto_and_aws().await;
    let loaded = example_loaded();
    apply(&aws, &loaded).await;

    // State set through the SDK, as auto-scaling and traffic would.
    let events = describe::queue_url(aws.sqs(), "reference-events").await;
    let work = describe::queue_url(aws.sqs(), "reference-work").await;
    send(&aws, &events, 7).await;
    send(&aws, &work, 3).await;
    aws.ecs()
        .update_service()
        .cluster("reference")
        .service("reference-runner")
        .desired_count(6)
        .send()
        .await
        .unwrap();
    aws.autoscaling()
        .set_desired_capacity()
        .auto_scaling_group_name("reference-executors")
        .desired_capacity(3)
        .send()
        .await
        .unwrap();

    // The discovered key (the deployed one, here the example's default)
    // and a loopback server in place of the address, as `--url` does.
    let (addr, server) = serve("change-me-event-key").await;
    let local = discover(&aws, &loaded, Some(&format!("http://{addr}")))
        .await
        .expect("discovery");
    let sampler = AwsSampler::new(
        aws.clone(),
        AwsNames::of(&loaded).unwrap(),
        Duration::from_millis(200),
    );
    let direct = sampler.read().await;
    let expected = [
        ("sqs.events.visible", 7.0),
        ("sqs.work.visible", 3.0),
        ("sqs.events-dlq.visible", 0.0),
        ("ecs.runner.desired", 6.0),
        ("ecs.runner.running", 6.0),
        ("ecs.event-api.desired", 2.0),
        // moto starts no task for a service it was not told to run.
        ("ecs.event-api.running", 0.0),
        ("asg.executors.desired", 3.0),
        ("asg.executors.in_service", 3.0),
    ];
    for (gauge, value) in expected {
        assert_eq!(direct.get(gauge), Some(&value), "{gauge} in {direct:?}");
    }

    let mut cfg = BenchConfig::new(local.ingest_url());
    cfg.connections = 2;
    cfg.load = Load::constant(50.0, Duration::from_secs(6));
    cfg.interval = Duration::from_millis(250);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let observer = Watch(tx);
    let stop = CancellationToken::new();
    // While the load runs: once the timeline shows 7 events queued, 5 more
    // arrive and the runner scales to 8; later samples must show both.
    let changer = {
        let aws = aws.clone();
        let events = events.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut changed = false;
            while let Some(s) = rx.recv().await {
                let visible = s.gauges.get("sqs.events.visible").copied();
                seen2.lock().unwrap().push(visible);
                if !changed && visible == Some(7.0) {
                    changed = true;
                    send(&aws, &events, 5).await;
                    aws.ecs()
                        .update_service()
                        .cluster("reference")
                        .service("reference-runner")
                        .desired_count(8)
                        .send()
                        .await
                        .unwrap();
                }
            }
            changed
        });
        (task, seen)
    };
    let sampler: Arc<dyn Sampler> = Arc::new(sampler);
    let report = bench::run(cfg, &observer, Some(sampler), stop)
        .await
        .expect("bench runs");
    drop(observer);
    let changed = changer.0.await.unwrap();
    assert!(
        changed,
        "no sample showed 7 queued events: {:?}",
        changer.1.lock().unwrap()
    );

    let served = server.requests.load(Ordering::SeqCst);
    assert_eq!(report.http_reqs.count, served);
    assert_eq!(report.http_req_failed.count, 0, "{:?}", report.errors);
    assert!(served >= 250, "6 s at 50/s sent only {served}");
    let series = |gauge: &str| -> Vec<f64> {
        report
            .timeline
            .iter()
            .filter_map(|s| s.gauges.get(gauge).copied())
            .collect()
    };
    let depth = series("sqs.events.visible");
    let first_7 = depth.iter().position(|v| *v == 7.0).expect("7 queued");
    let first_12 = depth.iter().position(|v| *v == 12.0);
    assert!(
        first_12.is_some_and(|i| i > first_7),
        "the timeline shows 7 then 12 queued events: {depth:?}"
    );
    let runner = series("ecs.runner.desired");
    assert_eq!(runner.first(), Some(&6.0), "{runner:?}");
    assert_eq!(runner.last(), Some(&8.0), "{runner:?}");
    assert_eq!(series("asg.executors.in_service").last(), Some(&3.0));

    // The JSON report carries the gauges beside the latency of each interval.
    let json = serde_json::to_value(&report).unwrap();
    let last = json["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["gauges"]["sqs.events.visible"], 12.0, "{last}");
    assert!(last["p99"].is_number(), "{last}");
    let text = report.render_timeline();
    assert!(
        text.contains("ecs.runner.desired") && text.contains("sqs.events.visible"),
        "{text}"
    );
}
