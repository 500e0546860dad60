//! What the AWS provider hands the engine, checked on moto after `up` of
//! `examples/aws.yaml`: the registered task definitions (their environment,
//! plus their `secrets` read from SSM as ECS does when a task starts) and
//! the executor launch template's user data (its env file, plus the secrets
//! the boot script fetches from SSM) each make an engine configuration that
//! `engine::config` loads, on SQS + Redis, pointing at the stack's queue
//! URLs and at its Redis endpoint over TLS with the stack's auth token. The
//! token itself appears in neither the task definitions nor the user data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_config::BehaviorVersion;
use aws_sdk_sts::config::Credentials;
use base64::Engine as _;
use engine::backend::BackendConfig;
use engine::config::{Config, ENV_REDIS_AUTH_TOKEN};
use stacks::aws::{self, ApplyOptions, Aws, Inputs};
use stacks::graph::Graph;
use stacks::local::{Progress, ProgressEvent};
use stacks::spec::Spec;

struct Quiet;

impl Progress for Quiet {
    fn report(&self, _event: ProgressEvent) {}
}

fn example() -> Spec {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/aws.yaml");
    stacks::spec::load_with_env(&path, &|_| None)
        .expect("examples/aws.yaml loads")
        .spec
}

/// What every engine of the stack must be configured with.
struct Expected {
    events_url: String,
    work_url: String,
    redis_host: String,
    token: String,
}

/// The SSM parameter name in a parameter ARN (`...:parameter/NAME`).
fn parameter_of(arn: &str) -> &str {
    arn.split_once(":parameter")
        .map(|(_, name)| name)
        .unwrap_or_else(|| panic!("not an SSM parameter ARN: {arn}"))
}

async fn ssm_value(ssm: &aws_sdk_ssm::Client, name: &str) -> String {
    ssm.get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetParameter {name}: {e:?}"))
        .parameter
        .and_then(|p| p.value)
        .expect("parameter value")
}

/// Loads an engine configuration from an environment, as the engine
/// binary does, and checks its backend.
fn check(env: &BTreeMap<String, String>, expected: &Expected, what: &str) {
    let config = Config::load(None, |k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("{what}: the engine rejects its configuration: {e}"));
    match &config.backend {
        BackendConfig::SqsRedis {
            events_queue,
            work_queue,
            redis_url,
            create_queues,
        } => {
            assert_eq!(events_queue, &expected.events_url, "{what}");
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
    assert!(!config.event_keys.is_empty(), "{what}: event keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_definitions_and_user_data_configure_the_engine_on_the_stacks_queues_and_redis() {
    let moto = tokio::task::spawn_blocking(|| harness::Moto::start().expect("start moto"))
        .await
        .unwrap();
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"));
    let aws = Aws::load_with(loader, Some(harness::REGION))
        .await
        .expect("AWS context");
    let spec = example();
    let graph = Graph::build(&spec).expect("graph");
    let plan = aws::plan(&aws, &graph, &Inputs::from_spec(&spec, None))
        .await
        .expect("plan");
    aws::apply(&aws, &plan, &ApplyOptions::default(), &Quiet)
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));

    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new(harness::REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = |name: &'static str| {
        let sqs = sqs.clone();
        async move {
            sqs.get_queue_url()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let cache = aws_sdk_elasticache::Client::new(&config);
    let rg = cache
        .describe_replication_groups()
        .replication_group_id("reference-redis")
        .send()
        .await
        .unwrap()
        .replication_groups
        .unwrap();
    let ssm = aws_sdk_ssm::Client::new(&config);
    let expected = Expected {
        events_url: url("reference-events").await,
        work_url: url("reference-work").await,
        redis_host: rg[0].node_groups()[0]
            .primary_endpoint()
            .and_then(|e| e.address())
            .expect("primary endpoint")
            .to_string(),
        token: ssm_value(&ssm, "/stackctl/reference/redis-auth-token").await,
    };
    assert!(expected.token.len() >= 16, "a generated auth token");

    // The ECS services: environment plus secrets, as ECS assembles them.
    let ecs = aws_sdk_ecs::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let execution = iam
        .get_role_policy()
        .role_name("reference-execution")
        .policy_name("reference-execution")
        .send()
        .await
        .unwrap()
        .policy_document;
    let execution = urlencoding_decode(&execution);
    for family in ["reference-event-api", "reference-runner"] {
        let td = ecs
            .describe_task_definition()
            .task_definition(family)
            .send()
            .await
            .unwrap()
            .task_definition
            .unwrap();
        let c = &td.container_definitions()[0];
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
        assert!(
            env.values().all(|v| !v.contains(&expected.token)),
            "{family}: the auth token is in the plain environment"
        );
        let secrets = c.secrets();
        assert_eq!(secrets.len(), 1, "{family}: {secrets:?}");
        assert_eq!(secrets[0].name(), ENV_REDIS_AUTH_TOKEN);
        let arn = secrets[0].value_from();
        assert!(
            arn.starts_with("arn:aws:ssm:us-east-1:") && arn.contains(":parameter/"),
            "{family}: {arn}"
        );
        assert!(
            execution.contains(arn) && execution.contains("ssm:GetParameters"),
            "{family}: the execution role may read {arn}: {execution}"
        );
        env.insert(
            ENV_REDIS_AUTH_TOKEN.to_string(),
            ssm_value(&ssm, parameter_of(arn)).await,
        );
        check(&env, &expected, family);
    }

    // The executor hosts: the env file the user data writes, plus the
    // secrets it reads from SSM with the instance role.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_name("reference-executors")
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    let encoded = versions.launch_template_versions()[0]
        .launch_template_data()
        .and_then(|d| d.user_data())
        .expect("user data");
    let user_data = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64 user data"),
    )
    .expect("UTF-8 user data");
    assert!(
        !user_data.contains(&expected.token),
        "the auth token is in the user data"
    );
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
    assert_eq!(
        fetched,
        [(ENV_REDIS_AUTH_TOKEN, "/stackctl/reference/redis-auth-token")]
    );
    let executors = urlencoding_decode(
        &iam.get_role_policy()
            .role_name("reference-executors")
            .policy_name("reference-executors")
            .send()
            .await
            .unwrap()
            .policy_document,
    );
    assert!(
        executors.contains("ssm:GetParameter")
            && executors.contains(":parameter/stackctl/reference/redis-auth-token"),
        "the instance role may read the token: {executors}"
    );
    for (var, parameter) in fetched {
        env.insert(var.to_string(), ssm_value(&ssm, parameter).await);
    }
    check(&env, &expected, "executor user data");
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
