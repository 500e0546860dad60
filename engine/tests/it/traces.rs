//! Traces across real processes: the event API, the runner and the executor
//! run as three `stackctl-engine` processes over one embedded database,
//! configured by the standard `OTEL_*` variables to export to the harness's
//! OTLP/HTTP receiver; an event whose function has an HTTP step (a server
//! of this test that records the `traceparent` it gets) and a Docker step
//! (podman's Docker API, a busybox image that prints its `TRACEPARENT`)
//! must come back as one connected trace. Without an endpoint, nothing of
//! it happens.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{DEADLINE, EngineProcess, function, output, write_process_config};
use engine::backend::{self, BackendConfig, RunStatus, StateStore};
use engine::config::QueuesConfig;
use harness::{OtlpReceiver, Podman, ReceivedSpan};
use serde_json::{Value, json};

/// OTLP `SpanKind`s.
const INTERNAL: i32 = 1;
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// An HTTP step service that records the `traceparent` header of each call.
struct Hook {
    url: String,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let app =
            Router::new()
                .route(
                    "/step",
                    post(
                        |State(seen): State<Arc<Mutex<Vec<Option<String>>>>>,
                         headers: HeaderMap| async move {
                            let traceparent = headers
                                .get("traceparent")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            seen.lock().unwrap().push(traceparent);
                            Json(json!({"hooked": true}))
                        },
                    ),
                )
                .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the hook");
        let url = format!("http://{}/step", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("hook server");
        });
        Self { url, seen, task }
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The process configuration with the executor's docker driver on `podman`.
fn with_docker(config: &Path, podman: &Podman) {
    let mut value: Value = serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap();
    value["executor"] = json!({"drivers": {"docker": {
        "socket": format!("unix://{}", podman.socket_path().display()),
        "network": "none"
    }}});
    std::fs::write(config, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// The three roles as processes, each with `env` set.
fn spawn_roles(dir: &Path, config: &Path, env: &[(&str, String)]) -> Vec<EngineProcess> {
    ["event-api", "runner", "executor"]
        .iter()
        .map(|role| {
            EngineProcess::spawn_with(
                config,
                role,
                dir.join(format!("{role}.log")),
                |cmd: &mut Command| {
                    for (k, v) in env {
                        cmd.env(k, v);
                    }
                },
            )
        })
        .collect()
}

async fn open_state(db: &Path) -> Arc<dyn StateStore> {
    backend::open(
        &BackendConfig::Embedded {
            path: db.to_path_buf(),
        },
        &QueuesConfig::default(),
    )
    .await
    .expect("open the database")
    .state
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    pick: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} span in {spans:#?}");
    found[0]
}

/// The JSON log lines of a process's log.
fn log_lines(process: &EngineProcess) -> Vec<Value> {
    process
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_an_event_through_three_processes_to_its_http_and_docker_steps() {
    let (podman, image, receiver) = tokio::task::spawn_blocking(|| {
        let podman = Podman::start().expect("podman's Docker API (see tests/harness)");
        let image = podman
            .busybox_image("traced")
            .expect("a busybox image in podman");
        let receiver = OtlpReceiver::start().expect("the OTLP receiver");
        (podman, image, receiver)
    })
    .await
    .expect("start components");
    let hook = Hook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("engine.db");
    let traced = function(json!({
        "id": "traced",
        "triggers": [{"event": "demo/traced"}],
        "steps": [
            {"id": "call", "http": {"url": hook.url}},
            {"id": "box", "after": ["call"], "docker": {"image": image, "pull": "never", "command": ["sh", "-c",
                "echo inside the container >&2; echo \"{\\\"traceparent\\\":\\\"$TRACEPARENT\\\"}\""]}}
        ]
    }));
    let config = write_process_config(dir.path(), &db, &[traced], "30s");
    with_docker(&config, &podman);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        (
            "OTEL_TRACES_SAMPLER",
            "parentbased_traceidratio".to_string(),
        ),
        ("OTEL_TRACES_SAMPLER_ARG", "1.0".to_string()),
        // Spans leave within 200 ms instead of the default 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
    ];
    let procs = spawn_roles(dir.path(), &config, &env);
    let state = open_state(&db).await;
    let c = procs[0].client(state.clone()).await;

    let event = c.send_event("demo/traced", json!({"n": 1})).await;
    let run = c.finished_as(&event, RunStatus::Completed).await;
    let view = c.api_get(&format!("/runs/{}", run.id)).await;
    let trace_id = view["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("GET /v1/runs/{{id}} has the trace id: {view}"))
        .to_string();
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    assert!(view.get("traceparent").is_none(), "{view}");
    assert!(view["event"].get("traceparent").is_none(), "{view}");

    let spans = receiver
        .wait_for_trace(&trace_id, 6, DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let ingest = one(&spans, "ingest", |s| s.kind == SERVER);
    assert_eq!(ingest.service, "stackctl-event-api");
    assert_eq!(ingest.name, "POST /e/{event_key}");
    assert_eq!(ingest.parent_span_id, "", "the ingest span is the root");
    assert_eq!(ingest.attr("http.route"), Some("/e/{event_key}"));
    assert_eq!(ingest.attr("http.response.status_code"), Some("200"));

    let run_span = one(&spans, "run", |s| s.name == "run");
    assert_eq!(run_span.service, "stackctl-runner");
    assert_eq!(run_span.parent_span_id, ingest.span_id, "run under ingest");
    assert_eq!(run_span.attr("run_id"), Some(run.id.as_str()));
    assert_eq!(run_span.attr("function"), Some("traced"));

    let attempt = |step: &str| {
        let a = one(&spans, step, |s| {
            s.name == "step attempt" && s.attr("step_id") == Some(step)
        });
        assert_eq!(a.service, "stackctl-executor");
        assert_eq!(a.kind, INTERNAL);
        assert_eq!(
            a.parent_span_id, run_span.span_id,
            "{step}'s attempt under the run"
        );
        assert_eq!(a.attr("run_id"), Some(run.id.as_str()));
        assert_eq!(a.attr("attempt"), Some("1"));
        assert_eq!(a.attr("function"), Some("traced"));
        a.clone()
    };
    let (call, boxed) = (attempt("call"), attempt("box"));

    let http = one(&spans, "http client", |s| {
        s.kind == CLIENT && s.name == "POST"
    });
    assert_eq!(http.service, "stackctl-executor");
    assert_eq!(
        http.parent_span_id, call.span_id,
        "the HTTP call under its attempt"
    );
    assert_eq!(http.attr("http.request.method"), Some("POST"));
    assert_eq!(http.attr("url.full"), Some(hook.url.as_str()));
    assert_eq!(http.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(http.attr("http.response.status_code"), Some("200"));
    let docker = one(&spans, "docker", |s| s.name == "docker run");
    assert_eq!(docker.kind, CLIENT);
    assert_eq!(
        docker.parent_span_id, boxed.span_id,
        "the container under its attempt"
    );
    assert_eq!(docker.attr("container.image.name"), Some(image.as_str()));

    // What the steps saw names the driver call's span in this trace.
    assert_eq!(
        hook.seen(),
        vec![Some(format!("00-{trace_id}-{}-01", http.span_id))],
        "the HTTP step's traceparent"
    );
    let records = c.steps(&run.id).await;
    assert_eq!(
        output(&records["box"].outcome)["traceparent"],
        format!("00-{trace_id}-{}-01", docker.span_id),
        "the Docker step's TRACEPARENT"
    );

    // A log line written inside a traced span carries its ids.
    let executor_lines = log_lines(&procs[2]);
    let stderr_line = executor_lines
        .iter()
        .find(|l| l["fields"]["message"] == "step container stderr")
        .unwrap_or_else(|| panic!("the container's stderr is logged: {executor_lines:#?}"));
    assert_eq!(stderr_line["trace_id"], trace_id.as_str(), "{stderr_line}");
    assert_eq!(
        stderr_line["span_id"],
        docker.span_id.as_str(),
        "{stderr_line}"
    );
    let outside = executor_lines
        .iter()
        .find(|l| l["fields"]["message"] == "executor started")
        .unwrap_or_else(|| panic!("the executor logs its start: {executor_lines:#?}"));
    assert!(outside.get("trace_id").is_none(), "{outside}");
    assert_eq!(receiver.rejected(), 0, "every export decoded");
    for p in &procs {
        p.assert_running();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_otlp_endpoint_nothing_is_traced_and_runs_work() {
    let hook = Hook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("engine.db");
    let plain = function(json!({
        "id": "plain",
        "triggers": [{"event": "demo/plain"}],
        "steps": [{"id": "call", "http": {"url": hook.url}}]
    }));
    let config = write_process_config(dir.path(), &db, &[plain], "30s");
    // Every variable but an endpoint: traces stay off.
    let env = [
        ("OTEL_SERVICE_NAME", "untraced".to_string()),
        ("OTEL_TRACES_SAMPLER", "always_on".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
    ];
    let procs = spawn_roles(dir.path(), &config, &env);
    let state = open_state(&db).await;
    let c = procs[0].client(state.clone()).await;

    let event = c.send_event("demo/plain", json!({})).await;
    let run = c.finished_as(&event, RunStatus::Completed).await;
    assert_eq!(run.traceparent, None, "no trace context is stored");
    let view = c.api_get(&format!("/runs/{}", run.id)).await;
    assert!(view.get("trace_id").is_none(), "{view}");
    assert_eq!(hook.seen(), vec![None], "no traceparent header is sent");
    for p in &procs {
        let lines = log_lines(p);
        assert!(!lines.is_empty(), "JSON logs");
        assert!(
            lines
                .iter()
                .all(|l| l.get("trace_id").is_none() && l.get("span").is_none()),
            "no span, no trace id in the logs: {lines:#?}"
        );
        p.assert_running();
    }
}
