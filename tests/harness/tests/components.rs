//! Proves each component the harness starts is real and usable the way the
//! other crates' tests will use it. Tests run in parallel, each with its own
//! instances.

use std::process::Command;

use aws_sdk_sqs::config::Credentials;
use harness::{Moto, Podman, RedisServer, Registry, Reply};

/// Set only in the child process of the moto test (see there).
const SQS_CHILD_QUEUE: &str = "HARNESS_SQS_CHILD_QUEUE";
const SQS_TEST: &str = "moto_serves_sqs_to_a_client_configured_only_by_the_environment";
const SQS_BODY: &str = "hello through AWS_ENDPOINT_URL";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

/// The parent starts moto and re-runs this same test in a child process whose
/// environment comes from `Moto::configure_command`: in the child the SDK is
/// configured by `aws_config::load_from_env()` alone, exactly as `stackctl`
/// will be (setting env vars in-process is unsafe in edition 2024). The parent
/// then checks through its own client that the queue exists in its moto.
#[test]
fn moto_serves_sqs_to_a_client_configured_only_by_the_environment() {
    if let Ok(queue) = std::env::var(SQS_CHILD_QUEUE) {
        runtime().block_on(sqs_round_trip_from_env(&queue));
        return;
    }

    let moto = Moto::start().expect("moto_server must start");
    let queue = "harness-round-trip";
    let mut child = Command::new(std::env::current_exe().expect("test binary path"));
    moto.configure_command(&mut child)
        .env(SQS_CHILD_QUEUE, queue)
        .args(["--exact", SQS_TEST, "--nocapture", "--test-threads", "1"]);
    let output = child.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
    assert!(
        stdout.contains(&format!("received: {SQS_BODY}")),
        "{stdout}"
    );

    let urls = runtime().block_on(async {
        let client = explicit_sqs_client(&moto.endpoint()).await;
        client
            .list_queues()
            .send()
            .await
            .expect("list_queues")
            .queue_urls
            .unwrap_or_default()
    });
    assert!(
        urls.iter().any(|url| url.ends_with(&format!("/{queue}"))),
        "the child's queue is not in this moto: {urls:?}"
    );

    moto.reset().expect("reset");
    let after_reset = runtime().block_on(async {
        let client = explicit_sqs_client(&moto.endpoint()).await;
        client.list_queues().send().await.expect("list_queues")
    });
    assert!(
        after_reset.queue_urls.unwrap_or_default().is_empty(),
        "reset left queues behind"
    );
}

async fn sqs_round_trip_from_env(queue: &str) {
    let config = aws_config::load_from_env().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let url = client
        .create_queue()
        .queue_name(queue)
        .send()
        .await
        .expect("create_queue")
        .queue_url
        .expect("queue url");
    client
        .send_message()
        .queue_url(&url)
        .message_body(SQS_BODY)
        .send()
        .await
        .expect("send_message");
    let received = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .max_number_of_messages(1)
        .send()
        .await
        .expect("receive_message");
    let message = received
        .messages
        .unwrap_or_default()
        .pop()
        .expect("one message");
    assert_eq!(message.body(), Some(SQS_BODY));
    client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(message.receipt_handle().expect("receipt handle"))
        .send()
        .await
        .expect("delete_message");
    println!("received: {}", message.body().unwrap_or_default());
}

/// SQS loses no message and brings back none that was deleted while several
/// clients send and batch-delete on one queue with a backlog at once, as the
/// engine's processes do. moto's threaded server once rebuilt a queue's
/// message list on delete without the lock that sends append under: batches
/// of ten vanished and deleted messages came back.
#[test]
fn moto_sqs_keeps_every_message_under_concurrent_sends_and_deletes() {
    let moto = Moto::start().expect("moto_server must start");
    let out = Command::new(harness::moto_python().expect("moto's venv"))
        .arg(harness::repo_root().join("tests/harness/sqs_concurrent_probe.py"))
        .arg(moto.endpoint())
        .output()
        .expect("run the probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("probe's JSON");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["held"], report["expected"],
        "fewer: sent messages lost; more: deleted messages came back: {report}"
    );
}

async fn explicit_sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(harness::REGION))
        .credentials_provider(Credentials::new(
            harness::ACCESS_KEY_ID,
            harness::SECRET_ACCESS_KEY,
            None,
            None,
            "harness",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

#[test]
fn moto_accepts_a_state_manager_transition() {
    let moto = Moto::builder()
        .ecs_service_running(2)
        .start()
        .expect("moto_server must start");
    moto.keep_ecs_tasks_running()
        .expect("set-transition for ecs::task");
    let answer = harness::http::get(
        &harness::http::Target::Tcp(format!("127.0.0.1:{}", moto.port())),
        "/moto-api/state-manager/get-transition?model_name=ecs::task",
    )
    .expect("get-transition");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let transition: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(transition["progression"], "manual", "{transition}");
}

#[test]
fn redis_sets_and_gets_over_the_raw_protocol() {
    let redis = RedisServer::start().expect("redis-server must start");
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(
        redis.command(&["SET", "greeting", "hello"]).unwrap(),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        redis.command(&["GET", "greeting"]).unwrap().as_text(),
        Some("hello".into())
    );
    assert_eq!(
        redis.command(&["GET", "missing"]).unwrap(),
        Reply::Bulk(None)
    );
}

#[test]
fn redis_with_a_password_and_aof_keeps_data_and_port_across_restarts() {
    let mut redis = RedisServer::builder()
        .password("s3cret")
        .appendonly(true)
        .start()
        .expect("redis-server must start");
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://:s3cret@127.0.0.1:{port}/"));
    redis.command(&["SET", "durable", "yes"]).unwrap();

    redis.stop();
    assert!(!redis.is_running());
    assert!(
        std::net::TcpStream::connect(redis.addr()).is_err(),
        "port still answers after stop"
    );
    redis.start_again().expect("start on the same port");
    assert_eq!(redis.port(), port);
    assert_eq!(
        redis.command(&["GET", "durable"]).unwrap().as_text(),
        Some("yes".into())
    );
    assert!(
        std::fs::read_dir(redis.data_dir()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("appendonly")),
        "no AOF in {}",
        redis.data_dir().display()
    );

    // A crash (SIGKILL) and a restart: AOF data written a moment ago is still
    // there because redis fsyncs it on the graceful stop above; new writes may
    // be lost in a crash, which is what crash tests want to provoke.
    redis.kill();
    redis.restart().expect("restart after a crash");
    assert_eq!(
        redis.command(&["GET", "durable"]).unwrap().as_text(),
        Some("yes".into())
    );
}

#[test]
fn redis_without_auth_is_refused_when_a_password_is_set() {
    let redis = RedisServer::builder()
        .password("pw")
        .start()
        .expect("redis-server must start");
    let mut stream = std::net::TcpStream::connect(redis.addr()).unwrap();
    use std::io::{Read, Write};
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("-NOAUTH"), "{answer}");
}

#[test]
fn registry_answers_the_v2_api() {
    let registry = Registry::start().expect("docker-registry must start");
    let v2 = registry.get("/v2/").expect("GET /v2/");
    assert_eq!(v2.status, 200);
    assert_eq!(
        v2.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    let catalog = registry.get("/v2/_catalog").expect("GET /v2/_catalog");
    assert_eq!(catalog.status, 200);
    let catalog: serde_json::Value = serde_json::from_slice(&catalog.body).unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([]));
}

#[test]
fn podman_serves_the_docker_api_and_runs_a_busybox_container() {
    let podman = Podman::start().expect("podman must start");
    assert!(podman.docker_host().starts_with("unix://"));
    let version = podman.get("/version").expect("GET /version");
    assert_eq!(version.status, 200);
    let version: serde_json::Value = serde_json::from_slice(&version.body).unwrap();
    assert!(version["ApiVersion"].is_string(), "{version}");

    let image = podman
        .busybox_image("harness-busybox")
        .expect("busybox image");
    assert_eq!(image, "localhost/harness-busybox:latest");
    let create = serde_json::json!({
        "Image": image,
        "Cmd": ["sh", "-c", "echo hello from busybox; echo to stderr >&2; exit 7"],
        // runc here refuses podman's default rlimits: always set them.
        "HostConfig": { "Ulimits": [
            { "Name": "nofile", "Soft": 1024, "Hard": 1024 },
            { "Name": "nproc", "Soft": 1024, "Hard": 1024 },
        ]},
    });
    let created = podman
        .post_json("/v1.41/containers/create", &create.to_string())
        .and_then(|r| r.success("create"))
        .expect("create container");
    let created: serde_json::Value = serde_json::from_slice(&created.body).unwrap();
    let id = created["Id"].as_str().expect("container id").to_owned();

    podman
        .request("POST", &format!("/v1.41/containers/{id}/start"))
        .and_then(|r| r.success("start"))
        .expect("start container");
    let waited = podman
        .request("POST", &format!("/v1.41/containers/{id}/wait"))
        .and_then(|r| r.success("wait"))
        .expect("wait for container");
    let waited: serde_json::Value = serde_json::from_slice(&waited.body).unwrap();
    assert_eq!(waited["StatusCode"], 7, "{waited}");

    let logs = podman
        .get(&format!(
            "/v1.41/containers/{id}/logs?stdout=true&stderr=true"
        ))
        .and_then(|r| r.success("logs"))
        .expect("container logs");
    let (stdout, stderr) = demux_docker_stream(&logs.body);
    assert_eq!(stdout, "hello from busybox\n");
    assert_eq!(stderr, "to stderr\n");

    podman
        .request("DELETE", &format!("/v1.41/containers/{id}?force=true"))
        .and_then(|r| r.success("delete"))
        .expect("remove container");
    let gone = podman
        .get(&format!("/v1.41/containers/{id}/json"))
        .expect("inspect");
    assert_eq!(gone.status, 404, "container still there: {}", gone.text());
}

#[test]
fn podman_pushes_a_busybox_image_to_the_registry() {
    let registry = Registry::start().expect("docker-registry must start");
    let podman = Podman::start().expect("podman must start");
    let image = podman.busybox_image("pushme:v1").expect("busybox image");
    let destination = format!("{}/team/pushme:v1", registry.host_port());
    let output = podman
        .cli()
        .args([
            "push",
            "--quiet",
            "--tls-verify=false",
            &image,
            &destination,
        ])
        .output()
        .expect("run podman push");
    assert!(
        output.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tags = registry.get("/v2/team/pushme/tags/list").expect("GET tags");
    assert_eq!(tags.status, 200, "{}", tags.text());
    let tags: serde_json::Value = serde_json::from_slice(&tags.body).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
}

/// Splits Docker's multiplexed log stream (8-byte frame headers) into stdout and stderr.
fn demux_docker_stream(mut bytes: &[u8]) -> (String, String) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while bytes.len() >= 8 {
        let size = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let payload = &bytes[8..(8 + size).min(bytes.len())];
        match bytes[0] {
            2 => stderr.extend_from_slice(payload),
            _ => stdout.extend_from_slice(payload),
        }
        bytes = &bytes[(8 + size).min(bytes.len())..];
    }
    (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
