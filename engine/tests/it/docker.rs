//! The docker step driver against podman's Docker-compatible API (a real
//! container engine on a unix socket; there is no Docker daemon here), with
//! step images made from busybox-static in the test. Each test checks that
//! no container labelled by the driver is left behind.

use crate::common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Stack, TestBackend, function, output, poll};
use engine::backend::RunStatus;
use engine::config::{DockerDriverConfig, Role};
use engine::drivers::docker::LABEL_RUN_ID;
use engine::drivers::{DockerDriver, Driver, StepContext};
use engine::functions::{FunctionDef, Step};
use harness::Podman;
use serde_json::{Value, json};

/// Podman's API with a busybox image `localhost/steps:latest`.
async fn podman_with_image() -> (Podman, String) {
    tokio::task::spawn_blocking(|| {
        let podman = Podman::start().expect("podman's Docker API (see tests/harness)");
        let image = podman
            .busybox_image("steps")
            .expect("a busybox image in podman");
        (podman, image)
    })
    .await
    .expect("start podman")
}

/// The driver on podman's socket. Step containers get no network: they need
/// none, cannot send traffic anywhere, and parallel podman instances would
/// otherwise race on the host's iptables when setting up bridges.
fn driver(podman: &Podman) -> DockerDriver {
    DockerDriver::connect(podman.socket_path())
        .expect("connect to podman's socket")
        .with_network(Some("none".to_string()))
}

fn step(docker: Value) -> Step {
    serde_json::from_value(json!({"id": "work", "docker": docker})).expect("step parses")
}

fn ctx(run_id: &str) -> StepContext {
    StepContext {
        event: json!({"name": "demo/docker", "data": {"greeting": "hello"}}),
        events: None,
        steps: serde_json::Map::from_iter([("before".to_string(), json!({"n": 1}))]),
        run_id: run_id.to_string(),
        function_id: "f".to_string(),
        step_id: "work".to_string(),
        attempt: 1,
    }
}

/// Every container (running or not) carrying the driver's run label, as
/// podman's Docker API lists them (raw JSON: podman reports states such as
/// `stopped` that typed Docker clients reject).
async fn labelled_containers(podman: &Podman) -> Vec<Value> {
    // filters={"label":["stackctl.run_id"]}, URL-encoded.
    let path =
        format!("/containers/json?all=true&filters=%7B%22label%22%3A%5B%22{LABEL_RUN_ID}%22%5D%7D");
    let target = podman.target();
    let answer = tokio::task::spawn_blocking(move || harness::http::get(&target, &path))
        .await
        .expect("list task")
        .expect("GET /containers/json");
    assert_eq!(answer.status, 200, "{}", answer.text());
    serde_json::from_str::<Vec<Value>>(&answer.text()).expect("a JSON list of containers")
}

async fn assert_no_container_left(podman: &Podman) {
    let left = labelled_containers(podman).await;
    assert!(left.is_empty(), "containers left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_json_is_the_output_and_the_context_arrives_on_stdin_and_in_env() {
    let (podman, image) = podman_with_image().await;
    let d = driver(&podman);
    // Prints stdin back only if it equals STACKCTL_STEP_CONTEXT, after a
    // progress line (the output is the last line).
    let echo = step(json!({
        "image": image,
        "command": ["sh", "-c",
            "cat > /tmp/in; echo starting; [ \"$(cat /tmp/in)\" = \"$STACKCTL_STEP_CONTEXT\" ] && cat /tmp/in"],
        "cpus": 0.5,
        "memory_mb": 64
    }));
    let c = ctx("run-echo");
    let out = d.run(&echo, &c).await.expect("the echo step succeeds");
    assert_eq!(out, serde_json::to_value(&c).unwrap());
    assert_eq!(out["steps"]["before"]["n"], 1);

    let env = step(json!({
        "image": image,
        "command": ["sh", "-c",
            "echo to the log >&2; printf '{\"greeting\":\"%s\",\"run\":\"%s\",\"step\":\"%s\",\"attempt\":%s}' \"$GREETING\" \"$STACKCTL_RUN_ID\" \"$STACKCTL_STEP_ID\" \"$STACKCTL_ATTEMPT\""],
        "env": {"GREETING": "hi"}
    }));
    let out = d.run(&env, &ctx("run-env")).await.expect("the env step");
    assert_eq!(
        out,
        json!({"greeting": "hi", "run": "run-env", "step": "work", "attempt": 1})
    );

    // `network: none`: only loopback inside.
    let net = step(json!({"image": image, "command": ["sh", "-c",
        "printf '{\"interfaces\":\"%s\"}' \"$(ls /sys/class/net | tr '\\n' ' ')\""]}));
    assert_eq!(
        d.run(&net, &ctx("run-net")).await.unwrap(),
        json!({"interfaces": "lo "})
    );

    let empty = step(json!({"image": image, "command": ["true"]}));
    assert_eq!(d.run(&empty, &ctx("run-empty")).await.unwrap(), Value::Null);

    let not_json = step(json!({"image": image, "command": ["echo", "plain words"]}));
    let e = d.run(&not_json, &ctx("run-text")).await.unwrap_err();
    assert!(
        !e.is_retryable() && e.to_string().contains("no JSON output"),
        "{e}"
    );

    let failing = step(json!({"image": image,
        "command": ["sh", "-c", "echo something broke >&2; exit 3"]}));
    let e = d.run(&failing, &ctx("run-fail")).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("exited with code 3") && message.contains("something broke"),
        "{message}"
    );
    assert_no_container_left(&podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_container_is_killed_on_timeout_and_removed() {
    let (podman, image) = podman_with_image().await;
    let d = driver(&podman);
    let hang = step(json!({"image": image, "command": ["sleep", "60"], "timeout": "1s"}));
    let started = Instant::now();
    let e = d.run(&hang, &ctx("run-hang")).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("timed out after 1s"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the timeout did not stop the step: {:?}",
        started.elapsed()
    );
    assert_no_container_left(&podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_attempt_still_removes_its_container() {
    let (podman, image) = podman_with_image().await;
    let d = driver(&podman);
    let hang = step(json!({"image": image, "command": ["sleep", "60"]}));
    let c = ctx("run-cancelled");
    // Boxed, so that `drop` really drops the attempt's future.
    let mut attempt = Box::pin(d.run(&hang, &c));
    // Drop the attempt once its container exists (what an executor shutdown does).
    let deadline = Instant::now() + DEADLINE;
    loop {
        tokio::select! {
            r = &mut attempt => panic!("a 60 s step finished early: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if !labelled_containers(&podman).await.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the container never appeared");
    }
    drop(attempt);
    poll("the cancelled step's container to go", DEADLINE, || async {
        labelled_containers(&podman).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_never_with_a_missing_image_fails_permanently() {
    let (podman, image) = podman_with_image().await;
    let d = driver(&podman);
    let missing = step(json!({"image": "localhost/not-here:1", "pull": "never"}));
    let e = d.run(&missing, &ctx("run-missing")).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(
        e.to_string().contains("localhost/not-here:1") && e.to_string().contains("never"),
        "{e}"
    );
    // `never` with an image that is there runs it.
    let present = step(json!({"image": image, "pull": "never", "command": ["echo", "[1,2]"]}));
    assert_eq!(
        d.run(&present, &ctx("run-present")).await.unwrap(),
        json!([1, 2])
    );
    assert_no_container_left(&podman).await;
}

// ------------------------------------------------ through the engine, in-process

/// The event API, a runner and an executor whose configuration has the
/// docker driver on `socket`, over one embedded database.
async fn docker_stack(functions: Vec<FunctionDef>, socket: &std::path::Path) -> Stack {
    let roles = [Role::Runner, Role::Executor];
    Stack::start_tuned(TestBackend::Embedded, functions, &roles, |config| {
        // Through the JSON form: what a deployed executor reads.
        config.executor.drivers.docker = Some(
            serde_json::from_value::<DockerDriverConfig>(
                json!({"socket": format!("unix://{}", socket.display()), "network": "none"}),
            )
            .expect("docker driver config"),
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_runs_docker_steps_retries_failures_and_times_out_hangs() {
    let (podman, image) = podman_with_image().await;
    // Fails its first two attempts (the attempt number is in the env), then
    // answers with a field of the event it read on stdin.
    let flaky = function(json!({
        "id": "flaky-container",
        "triggers": [{"event": "demo/flaky"}],
        "retries": {"attempts": 3, "backoff": "20ms"},
        "steps": [
            {"id": "work", "docker": {"image": image, "pull": "never", "command": ["sh", "-c",
                "ctx=$(cat); if [ \"$STACKCTL_ATTEMPT\" -lt 3 ]; then echo \"attempt $STACKCTL_ATTEMPT failed\" >&2; exit 1; fi; \
                 echo \"$ctx\" | sed -n 's/.*\"greeting\":\"\\([a-z]*\\)\".*/{\"greeting\":\"\\1\"}/p'"]}},
            {"id": "then", "after": ["work"], "docker": {"image": image, "command": ["cat"]}}
        ]
    }));
    let broken = function(json!({
        "id": "broken-container",
        "triggers": [{"event": "demo/broken"}],
        "steps": [{"id": "work", "retries": {"attempts": 1, "backoff": "10ms"},
                   "docker": {"image": image, "command": ["sh", "-c", "echo no luck >&2; exit 1"]}}]
    }));
    let hang = function(json!({
        "id": "hanging-container",
        "triggers": [{"event": "demo/hang"}],
        "retries": {"attempts": 0},
        "steps": [{"id": "work", "docker": {"image": image, "command": ["sleep", "60"], "timeout": "1s"}}]
    }));
    let stack = docker_stack(vec![flaky, broken, hang], podman.socket_path()).await;
    let c = &stack.client;
    let flaky_id = c
        .send_event("demo/flaky", json!({"greeting": "hello"}))
        .await;
    let broken_id = c.send_event("demo/broken", json!({})).await;
    let hang_id = c.send_event("demo/hang", json!({})).await;

    let run = c.finished_as(&flaky_id, RunStatus::Completed).await;
    let records = c.steps(&run.id).await;
    let attempts = &records["work"].attempts;
    assert_eq!(
        attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        [1, 2, 3],
        "{attempts:?}"
    );
    for (a, n) in attempts[..2].iter().zip(1..) {
        let error = a.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("exited with code 1") && error.contains(&format!("attempt {n} failed")),
            "{a:?}"
        );
    }
    assert_eq!(attempts[2].error, None);
    assert_eq!(
        output(&records["work"].outcome),
        &json!({"greeting": "hello"})
    );
    // `cat` echoes the context: the successor saw the first step's output.
    let then = output(&records["then"].outcome);
    assert_eq!(then["steps"]["work"], json!({"greeting": "hello"}));
    assert_eq!(then["run_id"], run.id.as_str());

    let run = c.finished_as(&broken_id, RunStatus::Failed).await;
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("no luck") && error.contains("gave up after 2 attempts"),
        "{error}"
    );
    assert_eq!(c.steps(&run.id).await["work"].attempts.len(), 2);

    let run = c.finished_as(&hang_id, RunStatus::Failed).await;
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("timed out after 1s"), "{error}");
    let attempt = &c.steps(&run.id).await["work"].attempts[0];
    assert!(
        attempt.ended_at - attempt.started_at < 30_000,
        "killed on time: {attempt:?}"
    );

    stack.stop().await;
    assert_no_container_left(&podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_pulled_from_a_registry() {
    let (podman, reference, _registry) = tokio::task::spawn_blocking(|| {
        let registry = harness::Registry::start().expect("docker-registry (see tests/harness)");
        let podman = Podman::start_with_insecure_registries(&[registry.host_port()])
            .expect("podman's Docker API (see tests/harness)");
        let image = podman.busybox_image("steps").expect("a busybox image");
        // Only in the registry: podman's storage has it under another name.
        let reference = format!("{}/steps/pulled:v1", registry.host_port());
        common::run_to_success(
            podman
                .cli()
                .args(["push", "--quiet", "--tls-verify=false", &image])
                .arg(format!("docker://{reference}")),
            "podman push",
        );
        (podman, reference, registry)
    })
    .await
    .expect("setup");
    let d = driver(&podman);
    let pulled = step(json!({"image": reference, "command": ["echo", "{\"pulled\":true}"]}));
    assert_eq!(
        d.run(&pulled, &ctx("run-pull")).await.unwrap(),
        json!({"pulled": true})
    );
    // Now on the host: `never` finds it.
    let again = step(json!({"image": reference, "pull": "never", "command": ["echo", "2"]}));
    assert_eq!(d.run(&again, &ctx("run-again")).await.unwrap(), json!(2));

    // A tag the registry does not have fails for good.
    let missing = step(json!({"image": reference.replace(":v1", ":nope")}));
    let e = d.run(&missing, &ctx("run-nope")).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("cannot pull image"), "{e}");
    assert_no_container_left(&podman).await;
}
