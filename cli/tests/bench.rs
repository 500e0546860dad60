//! `stackctl bench` as users run it (the real binary) against a trivial
//! axum server on loopback: thresholds set the exit code, failures show in
//! the JSON report, the target comes from a spec (or the last `up`), and
//! bad arguments are refused with a reason.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;

const KEY: &str = "cli-key";

#[derive(Default)]
struct Server {
    requests: AtomicU64,
    status: u16,
}

async fn ingest(
    State(s): State<Arc<Server>>,
    UrlPath(key): UrlPath<String>,
) -> (StatusCode, &'static str) {
    if key != KEY {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"unknown key"}"#);
    }
    s.requests.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(s.status).unwrap(),
        r#"{"ids":["x"],"status":200}"#,
    )
}

async fn serve(status: u16) -> (SocketAddr, Arc<Server>) {
    let server = Arc::new(Server {
        status,
        ..Server::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/e/{key}", post(ingest))
        .with_state(Arc::clone(&server));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, server)
}

async fn stackctl(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_stackctl"))
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .expect("stackctl runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_set_the_exit_code() {
    let (addr, server) = serve(200).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let base = [
        "bench", "--url", &url, "--key", KEY, "--rate", "100", "-d", "1s", "-o", "json",
    ];

    let pass = stackctl(
        dir.path(),
        &[
            &base[..],
            &["--threshold", "p99<10s", "--threshold", "failed<1%"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    let doc = json(&pass);
    assert_eq!(doc["http_reqs"]["count"], 100);
    assert_eq!(doc["thresholds"][0]["ok"], true);
    assert_eq!(server.requests.load(Ordering::SeqCst), 100);

    // No HTTP answer takes under a microsecond: this one fails every time.
    let fail = stackctl(
        dir.path(),
        &[
            &base[..],
            &["--threshold", "p99<1us", "--threshold", "rate>1"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(
        fail.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&fail.stderr)
    );
    let doc = json(&fail);
    assert_eq!(doc["thresholds"][0]["ok"], false);
    assert_eq!(doc["thresholds"][1]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_failed_requests_in_the_summary() {
    let (addr, server) = serve(503).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let out = stackctl(
        dir.path(),
        &[
            "bench",
            "--url",
            &url,
            "--key",
            KEY,
            "-c",
            "2",
            "-d",
            "1s",
            "--threshold",
            "failed<1%",
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let n = server.requests.load(Ordering::SeqCst);
    assert!(n > 10, "{text}");
    assert!(text.contains("http_req_failed"), "{text}");
    assert!(text.contains(&format!("100.00%  {n} out of {n}")), "{text}");
    assert!(text.contains("503: "), "{text}");
    assert!(text.contains("✗ failed<1%"), "{text}");
    assert!(
        !text.contains(KEY),
        "the key leaked into the output:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_comes_from_the_spec_or_the_last_up() {
    let (addr, server) = serve(200).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("local.yaml");
    std::fs::write(
        &spec,
        format!(
            "stack: benchdemo
provider: local
services:
  event-api: {{count: 1, port: {}}}
  runner: {{count: 1}}
executors: {{min: 1, desired: 1, max: 1, drivers: [http]}}
event_keys: {{default: {KEY}}}
",
            addr.port()
        ),
    )
    .unwrap();
    let out = stackctl(
        dir.path(),
        &[
            "bench",
            "-f",
            "local.yaml",
            "--rate",
            "50",
            "-d",
            "1s",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["http_reqs"]["count"], 50);
    assert_eq!(
        json(&out)["target"],
        format!("http://127.0.0.1:{}/e/***", addr.port())
    );

    // No argument: the spec recorded by the last `up` from this directory.
    std::fs::create_dir_all(dir.path().join(".stackctl")).unwrap();
    std::fs::write(
        dir.path().join(".stackctl/last"),
        format!("{}\n", spec.display()),
    )
    .unwrap();
    let out = stackctl(
        dir.path(),
        &["bench", "--rate", "50", "-d", "1s", "-o", "json"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = stackctl(dir.path(), &["bench", "-d", "1s"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no stack given"));

    let out = stackctl(
        dir.path(),
        &[
            "bench",
            "--url",
            "http://127.0.0.1:9",
            "--key",
            "k",
            "--threshold",
            "p99",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected e.g. `p99<50ms`"));

    let out = stackctl(
        dir.path(),
        &[
            "bench",
            "--url",
            "http://127.0.0.1:9",
            "--key",
            "k",
            "--stage",
            "fast",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DURATION:RATE"));

    let port = harness::free_port().unwrap().to_string();
    let url = format!("http://127.0.0.1:{port}");
    let out = stackctl(
        dir.path(),
        &["bench", "--url", &url, "--key", "k", "-d", "1s"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
