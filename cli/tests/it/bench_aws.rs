//! `stackctl bench` on the example aws stack, applied on the moto server:
//! with no FILE it takes the stack of the last `up` from this directory,
//! finds the event key the deployed event API holds, sends to the address
//! `--url` gives (a loopback server standing in for a forwarded port; the
//! stack's Cloud Map name resolves only inside a VPC) and puts the ECS,
//! Auto Scaling and SQS gauges read from moto in the JSON timeline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::support::{apply_example, assert_exit, aws_on, moto, queue_url, serve, stackctl};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

/// The example's key when STACKCTL_EVENT_KEY is not set.
const KEY: &str = "change-me-event-key";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/aws.yaml")
        .canonicalize()
        .unwrap()
}

async fn count(State(n): State<Arc<AtomicU64>>, UrlPath(key): UrlPath<String>) -> StatusCode {
    if key != KEY {
        return StatusCode::UNAUTHORIZED;
    }
    n.fetch_add(1, Ordering::SeqCst);
    StatusCode::ACCEPTED
}

/// An event API on loopback that counts the events sent with [`KEY`].
async fn event_api() -> (SocketAddr, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/e/{key}", post(count))
        .with_state(Arc::clone(&n));
    (serve(app).await, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_without_a_file_uses_the_last_aws_up_and_samples_it() {
    let moto = moto().await;
    let aws = aws_on(&moto).await;
    apply_example(&aws).await;
    let events = queue_url(&aws, "reference-events").await;
    for i in 0..4 {
        aws.sqs()
            .send_message()
            .queue_url(&events)
            .message_body(format!("{i}"))
            .send()
            .await
            .unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    // What `up` records.
    stacks::stackref::record_last(dir.path(), &example()).unwrap();
    let (addr, served) = event_api().await;
    let url = format!("http://{addr}");
    let mut cmd = tokio::process::Command::from(stackctl());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("STACKCTL_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .envs(moto.aws_env())
        .args([
            "bench",
            "--url",
            &url,
            "--rate",
            "20",
            "-d",
            "2s",
            "--sample-every",
            "200ms",
            "-o",
            "json",
        ])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_exit(&out, 0);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(doc["http_reqs"]["count"], 40);
    assert_eq!(doc["http_req_failed"]["count"], 0, "{doc}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        40,
        "sent with the stack's key"
    );
    assert_eq!(doc["target"], format!("{url}/e/***"));
    let last = doc["timeline"].as_array().unwrap().last().unwrap();
    let gauges = &last["gauges"];
    assert_eq!(gauges["sqs.events.visible"], 4.0, "{last}");
    assert_eq!(gauges["sqs.work.visible"], 0.0, "{last}");
    assert_eq!(gauges["ecs.runner.desired"], 4.0, "{last}");
    assert_eq!(gauges["ecs.event-api.desired"], 2.0, "{last}");
    assert_eq!(gauges["asg.executors.desired"], 1.0, "{last}");
    assert_eq!(gauges["asg.executors.in_service"], 1.0, "{last}");
}
