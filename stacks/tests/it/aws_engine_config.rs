//! What the AWS provider hands the engine, checked on moto after `up` of
//! `examples/aws.yaml`: the registered task definitions (their environment,
//! plus their `secrets` read from SSM as ECS does when a task starts) and
//! the executor launch template's user data (its env file, plus the secrets
//! the boot script fetches from SSM) each make an engine configuration that
//! `engine::config` loads, on SQS + Redis, pointing at the stack's queue
//! URLs and at its Redis endpoint over TLS with the stack's auth token, and
//! with the spec's event keys and runs-API token. No secret (auth token,
//! event key, runs-API token) appears in the task definitions or the user
//! data: the SSM parameters hold them, and the roles may read exactly those.
//!
//! A changed secret in the spec is stored by `up` (never by `plan`), which
//! registers new task definition revisions (their environment carries the
//! parameters' versions) and a new launch template version; a second `up`
//! writes nothing.

use std::collections::BTreeMap;

use crate::aws_describe as describe;
use crate::support::{apply_plan, example, moto_and_aws, plan_spec, planned, sdk_config, up};
use base64::Engine as _;
use engine::backend::BackendConfig;
use engine::config::{Config, ENV_API_TOKEN, ENV_EVENT_KEYS, ENV_REDIS_AUTH_TOKEN};
use stacks::aws::{self, Aws, Inputs};
use stacks::graph::plan::Action;
use stacks::graph::{Graph, LogicalId};

/// What every engine of the stack must be configured with.
struct Expected {
    events_url: String,
    work_url: String,
    redis_host: String,
    token: String,
    event_key: String,
    api_token: String,
}

impl Expected {
    /// The secret values, none of which may appear in plain text.
    fn secrets(&self) -> [&str; 3] {
        [&self.token, &self.event_key, &self.api_token]
    }
}

/// `examples/aws.yaml`'s event key and runs-API token without variables.
const EVENT_KEY: &str = "change-me-event-key";
const API_TOKEN: &str = "change-me-api-token";

/// The SSM parameter name in a parameter ARN (`...:parameter/NAME`).
fn parameter_of(arn: &str) -> &str {
    arn.split_once(":parameter")
        .map(|(_, name)| name)
        .unwrap_or_else(|| panic!("not an SSM parameter ARN: {arn}"))
}

/// Loads an engine configuration from an environment, as the engine
/// binary does, and checks its backend.
fn check(env: &BTreeMap<String, String>, expected: &Expected, what: &str, serves_events: bool) {
    let config = Config::load(None, |k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("{what}: the engine rejects its configuration: {e}"));
    match &config.backend {
        BackendConfig::SqsRedis {
            events_queue,
            work_queue,
            redis_url,
            redis_cluster,
            create_queues,
        } => {
            assert_eq!(events_queue, &expected.events_url, "{what}");
            assert!(
                !redis_cluster,
                "{what}: ElastiCache is one Redis, not a cluster"
            );
            assert_eq!(work_queue, &expected.work_url, "{what}");
            assert_eq!(
                redis_url,
                &format!("rediss://:{}@{}:6379", expected.token, expected.redis_host),
                "{what}: TLS, the stack's endpoint and auth token"
            );
            assert!(!create_queues, "{what}: the provider owns the queues");
        }
        other => panic!("{what}: backend {other:?}"),
    }
    if serves_events {
        assert_eq!(config.event_keys, [expected.event_key.as_str()], "{what}");
        assert_eq!(
            config.api_token.as_deref(),
            Some(expected.api_token.as_str()),
            "{what}"
        );
    } else {
        // Only the event API serves events and runs: nothing else holds
        // the event keys or the runs-API token.
        assert!(
            config.event_keys.is_empty(),
            "{what}: {:?}",
            config.event_keys
        );
        assert_eq!(config.api_token, None, "{what}");
    }
}

/// A moto of the test's own, the provider's AWS context on it and plain
/// SDK configuration for independent checks.
async fn start() -> (harness::Moto, Aws, aws_config::SdkConfig) {
    let (moto, aws) = moto_and_aws().await;
    let config = sdk_config(&moto.endpoint()).await;
    (moto, aws, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_definitions_and_user_data_configure_the_engine_on_the_stacks_queues_and_redis() {
    let (_moto, aws, config) = start().await;
    let spec = example();
    assert_eq!(spec.event_keys["default"], EVENT_KEY);
    assert_eq!(spec.api_token.as_deref(), Some(API_TOKEN));
    up(&aws, &spec).await;

    let sqs = aws_sdk_sqs::Client::new(&config);
    let cache = aws_sdk_elasticache::Client::new(&config);
    let rg = describe::replication_group(&cache, "reference-redis").await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    let expected = Expected {
        events_url: describe::queue_url(&sqs, "reference-events").await,
        work_url: describe::queue_url(&sqs, "reference-work").await,
        redis_host: rg.node_groups()[0]
            .primary_endpoint()
            .and_then(|e| e.address())
            .expect("primary endpoint")
            .to_string(),
        token: describe::parameter_value(&ssm, "/stackctl/reference/redis-auth-token").await,
        event_key: EVENT_KEY.into(),
        api_token: API_TOKEN.into(),
    };
    assert!(expected.token.len() >= 16, "a generated auth token");
    // The spec's secrets are stored as SecureString parameters, tagged for `down`.
    for (name, value) in [
        ("/stackctl/reference/event-keys", EVENT_KEY),
        ("/stackctl/reference/api-token", API_TOKEN),
    ] {
        assert_eq!(describe::parameter_value(&ssm, name).await, value, "{name}");
        let p = describe::parameter(&ssm, name).await;
        assert_eq!(
            p.r#type,
            Some(aws_sdk_ssm::types::ParameterType::SecureString),
            "{name}"
        );
        assert_ne!(
            p.value.as_deref(),
            Some(value),
            "{name}: encrypted unless asked"
        );
        let tags = ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
            .unwrap();
        assert!(
            tags.tag_list()
                .iter()
                .any(|t| t.key == "stackctl:stack" && t.value == "reference"),
            "{name}: {tags:?}"
        );
    }

    // The ECS services: environment plus secrets, as ECS assembles them.
    let ecs = aws_sdk_ecs::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let execution = urlencoding_decode(&describe::role_policy(&iam, "reference-execution").await);
    for family in ["reference-event-api", "reference-runner"] {
        let td = describe::task_definition(&ecs, family).await;
        let c = &td.container_definitions()[0];
        // ECS checks the role with the engine binary itself (no curl in the image).
        let health = c.health_check().expect("a container health check");
        assert_eq!(
            &health.command()[..3],
            ["CMD", stacks::image::ENGINE_PATH, "health"],
            "{family}"
        );
        // Liveness: a backend outage must not get every task replaced.
        assert_eq!(&health.command()[5..], ["--check", "live"], "{family}");
        let mut env: BTreeMap<String, String> = c
            .environment()
            .iter()
            .map(|kv| {
                (
                    kv.name().unwrap().to_string(),
                    kv.value().unwrap().to_string(),
                )
            })
            .collect();
        for secret in expected.secrets() {
            assert!(
                env.values().all(|v| !v.contains(secret)),
                "{family}: a secret is in the plain environment: {env:?}"
            );
        }
        for var in [ENV_REDIS_AUTH_TOKEN, ENV_EVENT_KEYS, ENV_API_TOKEN] {
            assert!(!env.contains_key(var), "{family}: {var} in the environment");
        }
        let serves_events = family == "reference-event-api";
        assert_eq!(
            env["STACKCTL_ENGINE_SECRETS_VERSION"],
            if serves_events {
                "api_token=1,event_keys=1,redis_auth_token=1"
            } else {
                "redis_auth_token=1"
            },
            "{family}"
        );
        let secrets: BTreeMap<&str, &str> = c
            .secrets()
            .iter()
            .map(|s| (s.name(), s.value_from()))
            .collect();
        let names: BTreeMap<&str, &str> = secrets
            .iter()
            .map(|(var, arn)| (*var, parameter_of(arn)))
            .collect();
        let mut wanted =
            BTreeMap::from([(ENV_REDIS_AUTH_TOKEN, "/stackctl/reference/redis-auth-token")]);
        if serves_events {
            wanted.insert(ENV_API_TOKEN, "/stackctl/reference/api-token");
            wanted.insert(ENV_EVENT_KEYS, "/stackctl/reference/event-keys");
        }
        assert_eq!(names, wanted, "{family}");
        for (var, arn) in secrets {
            assert!(
                arn.starts_with("arn:aws:ssm:us-east-1:123456789012:parameter/"),
                "{family}: {arn}"
            );
            assert!(
                execution.contains(arn) && execution.contains("ssm:GetParameters"),
                "{family}: the execution role may read {arn}: {execution}"
            );
            env.insert(
                var.to_string(),
                describe::parameter_value(&ssm, parameter_of(arn)).await,
            );
        }
        check(&env, &expected, family, serves_events);
    }
    // The execution role reads exactly the three parameters: no wildcard.
    assert_eq!(execution.matches(":parameter/").count(), 3, "{execution}");
    assert!(!execution.contains("ssm:*") && !execution.contains("parameter/*"));

    // The executor hosts: the env file the user data writes, plus the
    // secrets it reads from SSM with the instance role.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let launched = describe::latest_launch_template(&ec2, "reference-executors").await;
    let encoded = launched.user_data().expect("user data");
    let user_data = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64 user data"),
    )
    .expect("UTF-8 user data");
    for secret in expected.secrets() {
        assert!(
            !user_data.contains(secret),
            "a secret is in the user data:\n{user_data}"
        );
    }
    let env_file = user_data
        .split_once("<<'STACKCTL_ENV'\n")
        .and_then(|(_, rest)| rest.split_once("\nSTACKCTL_ENV\n"))
        .map(|(file, _)| file)
        .expect("the env file heredoc");
    let mut env: BTreeMap<String, String> = env_file
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let fetched: Vec<(&str, &str)> = user_data
        .lines()
        .filter_map(|l| l.strip_prefix("engine_secret "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(var, parameter)| (var, parameter.trim_matches('\'')))
        .collect();
    // Executors read only the Redis auth token: not the event keys, not
    // the runs-API token.
    assert_eq!(
        fetched,
        [(ENV_REDIS_AUTH_TOKEN, "/stackctl/reference/redis-auth-token")]
    );
    // Host networking and one metadata hop, tokens required (the hop limit
    // binds only the token request, so IMDSv1 must be off): the executor
    // reaches the instance role, the containers of docker steps do not; the Docker
    // socket is mounted because the example enables the docker driver.
    assert!(user_data.contains("--network host"), "{user_data}");
    assert!(
        user_data.contains("--volume /var/run/docker.sock:/var/run/docker.sock"),
        "{user_data}"
    );
    let metadata = launched.metadata_options().expect("metadata options");
    assert_eq!(metadata.http_put_response_hop_limit(), Some(1));
    assert_eq!(
        metadata.http_tokens(),
        Some(&aws_sdk_ec2::types::LaunchTemplateHttpTokensState::Required)
    );
    let executors = urlencoding_decode(&describe::role_policy(&iam, "reference-executors").await);
    for (_, parameter) in &fetched {
        assert!(
            executors.contains("ssm:GetParameter")
                && executors.contains(&format!(":parameter{parameter}")),
            "the instance role may read {parameter}: {executors}"
        );
    }
    assert_eq!(executors.matches(":parameter/").count(), 1, "{executors}");
    assert!(!executors.contains("ssm:*") && !executors.contains("parameter/*"));
    for (var, parameter) in fetched {
        env.insert(
            var.to_string(),
            describe::parameter_value(&ssm, parameter).await,
        );
    }
    check(&env, &expected, "executor user data", false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_is_stored_by_up_not_plan_and_rolls_the_engine() {
    let (_moto, aws, config) = start().await;
    let mut spec = example();
    up(&aws, &spec).await;
    let ssm = aws_sdk_ssm::Client::new(&config);

    // A new key: the plan reads, writes nothing, and shows the event API's
    // new revision without the value.
    const ROTATED: &str = "rotated-event-key";
    spec.event_keys.insert("default".into(), ROTATED.into());
    let graph = Graph::from_spec(&spec).unwrap();
    let before = aws.calls();
    let plan = plan_spec(&aws, &spec).await;
    assert_eq!(
        aws.calls().writes,
        before.writes,
        "plan wrote: {:?}",
        aws.calls().write_operations()
    );
    assert_eq!(
        describe::parameter_value(&ssm, "/stackctl/reference/event-keys").await,
        EVENT_KEY
    );
    let change = |id: &str| planned(&plan, id);
    // Only the event API holds the event keys: only it rolls.
    assert_eq!(
        change("ecs.taskdef.event-api"),
        (
            Action::Replace,
            vec!["container.environment.STACKCTL_ENGINE_SECRETS_VERSION".to_string()]
        )
    );
    assert_eq!(change("ecs.service.event-api").0, Action::Update);
    for id in [
        "ecs.taskdef.runner",
        "ecs.service.runner",
        "ec2.launch-template.executors",
    ] {
        assert_eq!(change(id).0, Action::NoChange, "{id}");
    }
    for id in ["iam.policy.execution", "iam.policy.executors"] {
        assert_eq!(change(id).0, Action::NoChange, "{id}: same parameters");
    }
    let shown = format!(
        "{}\n{}",
        plan.plan.render_text(),
        serde_json::to_string(&plan.plan).unwrap()
    );
    for secret in [ROTATED, EVENT_KEY, API_TOKEN] {
        assert!(!shown.contains(secret), "the plan shows a secret:\n{shown}");
    }

    // `up` stores it (one write to SSM) and registers new revisions.
    let before = aws.calls();
    let report = apply_plan(&aws, &plan).await;
    let after = aws.calls();
    let puts = |calls: &stacks::aws::CallCounts| -> u64 {
        calls
            .write_operations()
            .iter()
            .filter(|(op, _)| op.ends_with("PutParameter"))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(
        puts(&after) - puts(&before),
        1,
        "{:?}",
        after.write_operations()
    );
    assert_eq!(
        describe::parameter_value(&ssm, "/stackctl/reference/event-keys").await,
        ROTATED
    );
    for (name, version) in [
        ("/stackctl/reference/event-keys", 2),
        ("/stackctl/reference/api-token", 1),
    ] {
        assert_eq!(
            describe::parameter(&ssm, name).await.version,
            version,
            "{name}"
        );
    }
    let ecs = aws_sdk_ecs::Client::new(&config);
    for (id, service) in [("ecs.taskdef.event-api", "reference-event-api")] {
        let arn = &report.outputs[&LogicalId::new(id)]["arn"];
        assert!(arn.ends_with(":2"), "{arn}");
        let td = describe::task_definition(&ecs, arn).await;
        let env = td.container_definitions()[0].environment();
        let version = env
            .iter()
            .find(|kv| kv.name() == Some("STACKCTL_ENGINE_SECRETS_VERSION"))
            .and_then(|kv| kv.value());
        assert_eq!(
            version,
            Some("api_token=1,event_keys=2,redis_auth_token=1"),
            "{id}"
        );
        assert!(
            env.iter()
                .all(|kv| !kv.value().unwrap_or_default().contains(ROTATED)),
            "{id}: {env:?}"
        );
        let running = describe::service(&ecs, "reference", service).await;
        assert_eq!(running.task_definition(), Some(arn.as_str()), "{service}");
    }

    // Converged: nothing planned, and a second `up` writes nothing.
    crate::support::assert_converged(&aws, &graph, &Inputs::from_spec(&spec, None)).await;
}

/// The Redis auth token's parameter deleted behind `up`'s back: a new token
/// would not open the live ElastiCache group and would lock every engine
/// process out of Redis, so `plan` (and with it `up`) refuses, naming the
/// parameter and the way back, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_redis_token_parameter_is_refused_not_replaced() {
    let (_moto, aws, config) = start().await;
    let spec = example();
    up(&aws, &spec).await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    ssm.delete_parameter()
        .name("/stackctl/reference/redis-auth-token")
        .send()
        .await
        .unwrap();
    let graph = Graph::from_spec(&spec).unwrap();
    let before = aws.calls().writes;
    let err = aws::plan(&aws, &graph, &Inputs::from_spec(&spec, None))
        .await
        .unwrap_err();
    assert!(matches!(err, aws::AwsError::RedisTokenLost { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/stackctl/reference/redis-auth-token") && text.contains("put-parameter"),
        "{text}"
    );
    assert_eq!(
        aws.calls().writes,
        before,
        "{:?}",
        aws.calls().write_operations()
    );
    assert!(
        ssm.get_parameter()
            .name("/stackctl/reference/redis-auth-token")
            .send()
            .await
            .is_err(),
        "no new token was stored"
    );
}

/// IAM answers policy documents URL-encoded (RFC 3986).
fn urlencoding_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
