//! `observability` on moto: `traces: xray` registers the collector beside
//! the engine in both task definitions, starts it from the executors' user
//! data and grants the X-Ray actions; `alarms` creates the queue-age and
//! event-API 5xx alarms next to the dead-letter queues', all notifying the
//! stack's SNS topic (or a topic of the user's); everything reads back
//! without drift, and `down` removes the alarms and the stack's topic but
//! never a topic of the user's. Without the section none of it exists.
//! Each test starts its own moto; the stacks use an external Redis, so
//! `down` is clean on moto (see `aws_down`).

use std::time::Duration;

use base64::Engine as _;

use crate::aws_describe as describe;
use crate::support::{
    apply_plan, assert_converged, example, moto_and_aws, plan_spec, planned, sdk_config,
};
use stacks::aws::{self, Aws, DownOptions, DownReport, Inputs};
use stacks::graph::Graph;
use stacks::graph::plan::Action;
use stacks::spec::{Connection, Spec};

/// The example as stack `stack` on an external Redis with a `public`
/// (plain HTTP) event API, and `observability` from JSON (`null`: none).
fn stack(stack: &str, observability: serde_json::Value) -> Spec {
    let mut spec = example();
    spec.stack = stack.into();
    spec.state.url = Some("rediss://redis.example.internal:6379".into());
    spec.network.event_api = Connection::Public;
    spec.network.plain_http = true;
    spec.observability = serde_json::from_value(observability).expect("observability");
    spec
}

async fn down(aws: &Aws, spec: &Spec) -> DownReport {
    let graph = Graph::from_spec(spec).expect("graph");
    let opts = DownOptions {
        wait_timeout: Duration::from_secs(3),
        ..DownOptions::default()
    };
    aws::down(aws, &graph, &opts, &stacks::local::Silent)
        .await
        .unwrap_or_else(|e| panic!("down failed: {e}"))
}

/// `%XX` escapes decoded (IAM may answer policy documents URL-encoded).
fn url_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8")
}

async fn user_data(ec2: &aws_sdk_ec2::Client, template: &str) -> String {
    let launched = describe::latest_launch_template(ec2, template).await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(launched.user_data().expect("user data"))
        .expect("base64 user data");
    String::from_utf8(bytes).expect("UTF-8 user data")
}

/// Every metric alarm named `{prefix}*`.
async fn alarms(
    cw: &aws_sdk_cloudwatch::Client,
    prefix: &str,
) -> Vec<aws_sdk_cloudwatch::types::MetricAlarm> {
    cw.describe_alarms()
        .alarm_name_prefix(prefix)
        .send()
        .await
        .unwrap()
        .metric_alarms
        .unwrap_or_default()
}

async fn topic_arns(sns: &aws_sdk_sns::Client) -> Vec<String> {
    sns.list_topics()
        .send()
        .await
        .unwrap()
        .topics
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.topic_arn)
        .collect()
}

const XRAY_ACTIONS: [&str; 5] = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xray_and_alarms_are_created_read_back_without_drift_and_removed_by_down() {
    let (moto, aws) = moto_and_aws().await;
    let spec = stack(
        "obs",
        serde_json::json!({
            "traces": "xray",
            "sample": 0.1,
            "alarms": { "email": ["ops@example.com"], "queue_age": "10m" }
        }),
    );
    apply_plan(&aws, &plan_spec(&aws, &spec).await).await;
    let config = sdk_config(&moto.endpoint()).await;

    // The collector beside each engine container.
    let ecs = aws_sdk_ecs::Client::new(&config);
    for family in ["obs-event-api", "obs-runner"] {
        let td = describe::task_definition(&ecs, family).await;
        let containers = td.container_definitions();
        assert_eq!(containers.len(), 2, "{family}: {containers:?}");
        let (engine, collector) = (&containers[0], &containers[1]);
        assert_eq!(collector.name(), Some("aws-otel-collector"));
        assert_eq!(
            collector.image(),
            Some("public.ecr.aws/aws-observability/aws-otel-collector:v0.45.1")
        );
        assert_eq!(collector.essential(), Some(false), "{family}");
        assert_eq!(collector.command(), ["--config=/etc/ecs/ecs-xray.yaml"]);
        let logs = collector
            .log_configuration()
            .and_then(|l| l.options())
            .expect("collector logs");
        assert_eq!(
            logs["awslogs-group"],
            format!("/stackctl/obs/{}", &family[4..])
        );
        assert_eq!(engine.essential(), Some(true));
        let depends: Vec<(&str, &str)> = engine
            .depends_on()
            .iter()
            .map(|d| (d.container_name(), d.condition().as_str()))
            .collect();
        assert_eq!(depends, [("aws-otel-collector", "START")], "{family}");
        assert_eq!(
            engine.memory().unwrap_or(0) + collector.memory().unwrap_or(0),
            1024,
            "{family}: the containers share the task's memory"
        );
        let env: std::collections::BTreeMap<&str, &str> = engine
            .environment()
            .iter()
            .filter_map(|kv| Some((kv.name()?, kv.value()?)))
            .collect();
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://127.0.0.1:4318");
        assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
        assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.1");
        // The role's name in the X-Ray map: the family's, `{stack}-{role}`.
        assert_eq!(env["OTEL_SERVICE_NAME"], family);
    }

    // The executor hosts start it, before the executor.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let boot = user_data(&ec2, "obs-executors").await;
    let collector = boot
        .find("--name 'aws-otel-collector' --restart always")
        .unwrap_or_else(|| panic!("the user data starts the collector:\n{boot}"));
    assert!(collector < boot.find("--name stackctl-executor").unwrap());
    assert!(boot.contains("OTEL_SERVICE_NAME=obs-executor"), "{boot}");

    // The roles that send traces may.
    let iam = aws_sdk_iam::Client::new(&config);
    for role in ["obs-task", "obs-runner", "obs-executors"] {
        let policy = url_decoded(&describe::role_policy(&iam, role).await);
        for action in XRAY_ACTIONS {
            assert!(policy.contains(action), "{role}: {action} in {policy}");
        }
    }
    let execution = url_decoded(&describe::role_policy(&iam, "obs-execution").await);
    assert!(!execution.contains("xray:"), "{execution}");

    // The stack's topic, with the address subscribed and the stack's tags.
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = "arn:aws:sns:us-east-1:123456789012:obs-alarms";
    assert_eq!(topic_arns(&sns).await, [topic]);
    let tags = sns
        .list_tags_for_resource()
        .resource_arn(topic)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key == "stackctl:stack" && t.value == "obs"),
        "{tags:?}"
    );
    let subscribed = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .send()
        .await
        .unwrap();
    let emails: Vec<(&str, &str)> = subscribed
        .subscriptions()
        .iter()
        .map(|s| (s.protocol().unwrap_or(""), s.endpoint().unwrap_or("")))
        .collect();
    assert_eq!(emails, [("email", "ops@example.com")]);

    // Every reporting alarm notifies it, on ALARM and on OK.
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let found = alarms(&cw, "obs-").await;
    let mut reporting: Vec<&str> = Vec::new();
    for a in &found {
        let name = a.alarm_name().unwrap_or_default();
        if name.contains("-scale-") {
            continue;
        }
        reporting.push(name);
        assert_eq!(a.alarm_actions(), [topic], "{name}");
        assert_eq!(a.ok_actions(), [topic], "{name}");
        assert!(
            a.alarm_description().is_some_and(|d| !d.is_empty()),
            "{name}"
        );
    }
    reporting.sort();
    assert_eq!(
        reporting,
        [
            "obs-event-api-5xx",
            "obs-event-api-lb-5xx",
            "obs-events-age",
            "obs-events-dlq-not-empty",
            "obs-work-dlq-not-empty"
        ]
    );
    let age = found
        .iter()
        .find(|a| a.alarm_name() == Some("obs-events-age"))
        .unwrap();
    assert_eq!(
        (age.metric_name(), age.threshold(), age.treat_missing_data()),
        (
            Some("ApproximateAgeOfOldestMessage"),
            Some(600.0),
            Some("notBreaching")
        )
    );
    let api = found
        .iter()
        .find(|a| a.alarm_name() == Some("obs-event-api-5xx"))
        .unwrap();
    assert_eq!(api.metric_name(), Some("HTTPCode_Target_5XX_Count"));
    assert!(
        api.dimensions()
            .iter()
            .any(|d| d.name() == Some("LoadBalancer")
                && d.value().is_some_and(|v| v.starts_with("app/obs-api/"))),
        "{:?}",
        api.dimensions()
    );

    // The load balancer's own 5xx (no healthy task) have their alarm.
    let lb = found
        .iter()
        .find(|a| a.alarm_name() == Some("obs-event-api-lb-5xx"))
        .unwrap();
    assert_eq!(lb.metric_name(), Some("HTTPCode_ELB_5XX_Count"));
    assert_eq!(
        lb.dimensions()
            .iter()
            .filter_map(|d| d.name())
            .collect::<Vec<_>>(),
        ["LoadBalancer"]
    );

    // Read back as applied: nothing to change, nothing written.
    let graph = Graph::from_spec(&spec).unwrap();
    assert_converged(&aws, &graph, &Inputs::from_spec(&spec, None)).await;

    // Dropping the section plans the alarms' and the topic's deletion and
    // takes the collector out of the tasks.
    let plain = stack("obs", serde_json::Value::Null);
    let plan = plan_spec(&aws, &plain).await;
    for id in [
        "sns.alarms",
        "cloudwatch.alarm.events-age",
        "cloudwatch.alarm.event-api-5xx",
        "cloudwatch.alarm.event-api-lb-5xx",
    ] {
        assert_eq!(planned(&plan, id).0, Action::Delete, "{id}");
    }
    assert_eq!(planned(&plan, "ecs.taskdef.runner").0, Action::Replace);

    let report = down(&aws, &spec).await;
    assert!(report.clean(), "{report:#?}");
    assert!(alarms(&cw, "obs-").await.is_empty());
    assert!(topic_arns(&sns).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_observability_nothing_of_it_is_created() {
    let (moto, aws) = moto_and_aws().await;
    let spec = stack("plain", serde_json::Value::Null);
    apply_plan(&aws, &plan_spec(&aws, &spec).await).await;
    let config = sdk_config(&moto.endpoint()).await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    for family in ["plain-event-api", "plain-runner"] {
        let td = describe::task_definition(&ecs, family).await;
        assert_eq!(td.container_definitions().len(), 1, "{family}");
        let engine = &td.container_definitions()[0];
        assert!(engine.depends_on().is_empty());
        assert_eq!(engine.memory(), Some(1024));
        assert!(
            !engine
                .environment()
                .iter()
                .any(|kv| kv.name().is_some_and(|n| n.starts_with("OTEL_"))),
            "{family}"
        );
    }
    let boot = user_data(&aws_sdk_ec2::Client::new(&config), "plain-executors").await;
    assert!(!boot.contains("otel") && !boot.contains("OTEL_"), "{boot}");
    let iam = aws_sdk_iam::Client::new(&config);
    for role in [
        "plain-task",
        "plain-runner",
        "plain-executors",
        "plain-execution",
    ] {
        let policy = url_decoded(&describe::role_policy(&iam, role).await);
        assert!(!policy.contains("xray:"), "{role}: {policy}");
    }
    let sns = aws_sdk_sns::Client::new(&config);
    assert!(topic_arns(&sns).await.is_empty());
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let mut reporting: Vec<String> = Vec::new();
    for a in alarms(&cw, "plain-").await {
        let name = a.alarm_name().unwrap_or_default().to_string();
        if name.contains("-scale-") {
            continue;
        }
        assert!(
            a.alarm_actions().is_empty() && a.ok_actions().is_empty(),
            "{name}"
        );
        reporting.push(name);
    }
    reporting.sort();
    assert_eq!(
        reporting,
        ["plain-events-dlq-not-empty", "plain-work-dlq-not-empty"],
        "only the dead-letter queues' alarms, as before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_of_the_users_is_notified_and_left_alone_by_down() {
    let (moto, aws) = moto_and_aws().await;
    let config = sdk_config(&moto.endpoint()).await;
    let sns = aws_sdk_sns::Client::new(&config);
    let theirs = sns
        .create_topic()
        .name("team-ops")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let spec = stack(
        "mine",
        serde_json::json!({ "alarms": { "topic_arn": theirs } }),
    );
    apply_plan(&aws, &plan_spec(&aws, &spec).await).await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let age = alarms(&cw, "mine-events-age").await;
    assert_eq!(age.len(), 1);
    assert_eq!(age[0].alarm_actions(), [theirs.as_str()]);
    assert_eq!(
        topic_arns(&sns).await,
        std::slice::from_ref(&theirs),
        "no topic of the stack's"
    );

    let report = down(&aws, &spec).await;
    assert!(report.clean(), "{report:#?}");
    assert!(alarms(&cw, "mine-").await.is_empty());
    assert_eq!(topic_arns(&sns).await, [theirs], "the user's topic stays");
}
