//! `stackctl up examples/local-sqs-redis.yaml` with `REDIS_URL` and
//! `AWS_ENDPOINT_URL` set (a real `redis-server` and a moto server on
//! loopback): the local stack runs on SQS queues and Redis state, is
//! healthy (its canary run completes), and an event sent to it completes a
//! run whose records are in Redis.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::stackctl as stackctl_command;
use serde_json::{Value, json};

fn stackctl(
    dir: &Path,
    moto: &harness::Moto,
    redis: &harness::RedisServer,
    args: &[&str],
) -> Output {
    let mut cmd = stackctl_command();
    cmd.args(args)
        .current_dir(dir)
        .env("REDIS_URL", redis.url())
        .env("STACKCTL_EVENT_KEY", "sqs-redis-key")
        .env("STACKCTL_API_TOKEN", "sqs-redis-token");
    moto.configure_command(&mut cmd);
    cmd.output().expect("run stackctl")
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_sqs_redis_example_comes_up_healthy_and_runs_events() {
    let moto = harness::Moto::start().expect("start moto");
    let redis = harness::RedisServer::builder()
        .appendonly(true)
        .start()
        .expect("start redis-server");
    let root = harness::repo_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = harness::free_port().expect("free port");
    // The example on a free event-API port, runner ports picked by stackctl.
    let spec = std::fs::read_to_string(root.join("examples/local-sqs-redis.yaml"))
        .expect("read the example")
        .replace("port: 8298", &format!("port: {port}"))
        .replace("    port: 8299\n", "");
    std::fs::write(dir.path().join("local-sqs-redis.yaml"), spec).expect("write spec");
    let functions = dir.path().join("functions");
    std::fs::create_dir(&functions).expect("functions dir");
    for entry in std::fs::read_dir(root.join("examples/functions")).expect("functions") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, functions.join(path.file_name().unwrap())).expect("copy");
        }
    }

    let up = ok(
        stackctl(dir.path(), &moto, &redis, &["up", "local-sqs-redis.yaml"]),
        "stackctl up",
    );
    assert!(up.contains("canary run"), "{up}");
    assert!(up.contains("completed"), "{up}");

    let target = harness::http::Target::Tcp(format!("127.0.0.1:{port}"));
    let answer = harness::http::post_json(
        &target,
        "/e/sqs-redis-key",
        &json!({"name": "stackctl/canary", "data": {}}).to_string(),
    )
    .expect("send an event");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer: Value = serde_json::from_str(&answer.text()).expect("JSON answer");
    let id = answer["ids"][0].as_str().expect("an id").to_string();
    // The run is in Redis (not in the embedded database): its event's runs
    // index names it, and its hash holds its status.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = |args: &[&str]| {
            let reply = redis.command(args).expect("redis");
            match reply {
                harness::Reply::Array(Some(items)) => {
                    items.first().and_then(harness::Reply::as_text)
                }
                other => other.as_text(),
            }
        };
        let status = text(&["ZRANGE", &format!("stackctl:event-runs:{{{id}}}"), "0", "0"])
            .and_then(|run| text(&["HGET", &format!("stackctl:run:{{{run}}}"), "status"]));
        if status.as_deref() == Some("completed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run of event {id} never completed in Redis: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    ok(
        stackctl(
            dir.path(),
            &moto,
            &redis,
            &["down", "--yes", "local-sqs-redis.yaml"],
        ),
        "stackctl down",
    );
}
