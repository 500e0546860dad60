//! The event API and runs API over real HTTP on loopback, on a real embedded
//! database: every documented status code, the JSON errors, durability of
//! acknowledged events, overload and backend-unavailable answers, and that
//! the process keeps serving after bad input.

use std::sync::Arc;
use std::time::Duration;

use engine::Shutdown;
use engine::backend::{self, Attempt, BackendConfig, Backends, Event, Run, RunStatus, StepOutcome};
use engine::config::Config;
use engine::event_api::{self, ApiState};
use engine::metrics::Metrics;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "test-event-key";
const TOKEN: &str = "test-api-token";

struct Server {
    url: String,
    backends: Backends,
    http: reqwest::Client,
    shutdown: Shutdown,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(tune: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("engine.db");
    let mut config = Config::new(BackendConfig::Embedded { path: db.clone() });
    config.event_keys = vec!["another-key".into(), KEY.into()];
    config.api_token = Some(TOKEN.into());
    tune(&mut config);
    let config = Arc::new(config);
    let backends = backend::open(&config.backend, &config.queues)
        .await
        .expect("open");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let state = ApiState::new(
        Arc::clone(&config),
        backends.clone(),
        Arc::new(Metrics::new()),
        "event-api",
    );
    let shutdown = Shutdown::new();
    tokio::spawn(event_api::serve_with(
        listener,
        event_api::router(state),
        shutdown.clone(),
        config.event_api.header_timeout.std(),
    ));
    Server {
        url,
        backends,
        http: reqwest::Client::new(),
        shutdown,
        db,
        _dir: dir,
    }
}

impl Server {
    async fn send(
        &self,
        key: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}/e/{key}", self.url)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.expect("JSON body"))
    }

    async fn send_json(&self, body: &Value) -> (StatusCode, Value) {
        self.send(KEY, Some("application/json"), body.to_string())
            .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.expect("JSON body"))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.expect("JSON body"))
    }

    /// Every event in the event stream, in order.
    async fn stored_events(&self, expected: usize) -> Vec<Event> {
        let bodies = crate::common::receive_bodies(
            &*self.backends.events,
            expected,
            Duration::from_secs(10),
        )
        .await;
        bodies
            .iter()
            .flat_map(|b| backend::decode_events(b).expect("decode"))
            .collect()
    }
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, mentions: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], json!(expected.as_u16()), "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "error `{message}` should mention `{mentions}`"
    );
}

#[tokio::test]
async fn accepts_one_event_or_an_array_and_stores_them() {
    let s = start(|_| {}).await;
    let (status, body) = s
        .send_json(&json!({"name": "app/signup", "data": {"user": 1}, "id": "dedup-1", "ts": 1_700_000_000_000_i64, "v": "2024-01-01"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], 200);
    let first_id = body["ids"][0].as_str().expect("an id").to_string();
    assert_eq!(first_id.len(), 26, "a ULID");

    let batch = json!([
        {"name": "app/a", "data": {"n": 1}},
        {"name": "app/b", "user": {"email": "x@example.invalid"}},
        {"name": "app/c", "data": null, "ts": 0}
    ]);
    let (status, body) = s.send(KEY, None, batch.to_string()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a missing content type is accepted: {body}"
    );
    let ids = crate::common::string_list(&body["ids"]);
    assert_eq!(ids.len(), 3);

    let events = s.stored_events(4).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].internal_id, first_id);
    assert_eq!(events[0].id.as_deref(), Some("dedup-1"));
    assert_eq!(events[0].ts, 1_700_000_000_000);
    assert_eq!(events[0].data, json!({"user": 1}));
    assert_eq!(events[0].v.as_deref(), Some("2024-01-01"));
    let names: Vec<&str> = events[1..].iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["app/a", "app/b", "app/c"]);
    assert_eq!(
        events[1..]
            .iter()
            .map(|e| e.internal_id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(events[2].user, json!({"email": "x@example.invalid"}));
    assert_eq!(
        events[3].data,
        json!({}),
        "null data becomes an empty object"
    );
    assert!(events[3].ts > 1_700_000_000_000, "ts 0 means now");
}

#[tokio::test]
async fn bad_input_gets_its_status_and_the_server_keeps_serving() {
    let s = start(|c| {
        c.event_api.max_event_bytes = 1024;
        c.event_api.max_body_bytes = 64 * 1024;
        c.event_api.max_events_per_request = 10;
    })
    .await;
    let ok = json!({"name": "app/ok"});

    let (st, b) = s.send(KEY, Some("application/json"), "{\"name\": ").await;
    assert_error(st, &b, StatusCode::BAD_REQUEST, "malformed JSON");
    let (st, b) = s.send(KEY, Some("application/json"), "").await;
    assert_error(st, &b, StatusCode::BAD_REQUEST, "empty");
    let (st, b) = s
        .send(KEY, Some("application/json"), "[{\"name\":\"a\"},]")
        .await;
    assert_error(st, &b, StatusCode::BAD_REQUEST, "malformed JSON");

    let (st, b) = s.send_json(&json!({"data": {}})).await;
    assert_error(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`name` is missing",
    );
    let (st, b) = s.send_json(&json!([ok, {"name": "  "}])).await;
    assert_error(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "event 1: `name` is empty",
    );
    let (st, b) = s.send_json(&json!({"name": 5})).await;
    assert_error(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`name` must be a string",
    );
    let (st, b) = s.send_json(&json!({"name": "a", "data": [1]})).await;
    assert_error(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`data` must be an object",
    );
    let (st, b) = s.send_json(&json!({"name": "a", "ts": "yesterday"})).await;
    assert_error(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "`ts`");
    let (st, b) = s.send_json(&json!({"name": "a", "id": 7})).await;
    assert_error(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`id` must be a string",
    );
    let (st, b) = s.send_json(&json!("just a string")).await;
    assert_error(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "expected an event object",
    );
    let (st, b) = s.send_json(&json!([])).await;
    assert_error(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "no events");

    let (st, b) = s
        .send_json(&json!({"name": "big", "data": {"pad": "x".repeat(2000)}}))
        .await;
    assert_error(st, &b, StatusCode::PAYLOAD_TOO_LARGE, "event 0 is");
    let many: Vec<Value> = (0..11).map(|i| json!({"name": format!("e{i}")})).collect();
    let (st, b) = s.send_json(&json!(many)).await;
    assert_error(st, &b, StatusCode::PAYLOAD_TOO_LARGE, "11 events");
    let (st, b) = s
        .send(KEY, Some("application/json"), " ".repeat(70 * 1024))
        .await;
    assert_error(
        st,
        &b,
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body exceeds",
    );

    let (st, b) = s
        .send("wrong-key", Some("application/json"), ok.to_string())
        .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED, "unknown event key");
    let (st, b) = s
        .send(
            &KEY[..KEY.len() - 1],
            Some("application/json"),
            ok.to_string(),
        )
        .await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED, "unknown event key");

    let (st, b) = s.send(KEY, Some("text/plain"), ok.to_string()).await;
    assert_error(
        st,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    );
    let (st, b) = s
        .send(
            KEY,
            Some("application/x-www-form-urlencoded"),
            ok.to_string(),
        )
        .await;
    assert_error(
        st,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "x-www-form-urlencoded",
    );
    let (st, b) = s
        .send(KEY, Some("application/json; charset=utf-8"), ok.to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");

    let (st, b) = s.get("/nowhere", None).await;
    assert_error(st, &b, StatusCode::NOT_FOUND, "no such endpoint");

    // Nothing rejected reached the stream; the server still accepts good events.
    let (st, b) = s.send_json(&ok).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let d = s.backends.events.depth().await.expect("depth");
    assert_eq!(
        d.visible, 2,
        "only the two accepted requests were stored: {d:?}"
    );
}

#[tokio::test]
async fn too_many_requests_in_flight_get_503_with_retry_after() {
    let s = start(|c| c.event_api.max_in_flight = 1).await;
    // Hold the only permit: a request whose body never finishes arriving.
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let slow_body = format!("{:<100}", json!({"name": "slow"}));
    let (head, tail) = slow_body.split_at(4);
    let request = format!(
        "POST /e/{KEY} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
        slow_body.len()
    );
    slow.write_all(request.as_bytes()).await.expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, body, retry_after) = loop {
        let resp = s
            .http
            .post(format!("{}/e/{KEY}", s.url))
            .header("content-type", "application/json")
            .body(json!({"name": "x"}).to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = resp.json().await.expect("json");
        // The slow request may not have been accepted yet: poll until it holds the permit.
        if status != StatusCode::OK || tokio::time::Instant::now() > deadline {
            break (status, body, retry);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "too many requests",
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Finishing the slow request frees the permit again.
    slow.write_all(tail.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("an answer to the slow request")
        .expect("read");
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (st, b) = s.send_json(&json!({"name": "after"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

/// Opens a connection and sends `text`, leaving the request unfinished.
async fn unfinished(s: &Server, text: &str) -> tokio::net::TcpStream {
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(text.as_bytes()).await.expect("write");
    conn
}

/// Whatever the server sends until it closes the connection (bounded).
async fn until_closed(conn: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out))
        .await
        .expect("the server closes the connection in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn request_bytes_in_flight_are_bounded_too() {
    // Room for one 1000-byte body and a small one, not for two large ones.
    let s = start(|c| {
        c.event_api.max_body_bytes = 1000;
        c.event_api.max_in_flight_bytes = 1500;
    })
    .await;
    let head = |len: usize| {
        format!(
            "POST /e/{KEY} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        )
    };
    // A 1000-byte request whose body is still arriving holds its bytes.
    let _slow = unfinished(&s, &format!("{}{{", head(1000))).await;
    let body = |n: usize| format!("{:<n$}", json!({"name": "x"}).to_string());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, answer) = loop {
        let (st, b) = s.send(KEY, Some("application/json"), body(600)).await;
        // The slow request may not hold its bytes yet: poll until it does.
        if st != StatusCode::OK || tokio::time::Instant::now() > deadline {
            break (st, b);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_error(
        status,
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "too many request bytes",
    );
    // A small request still fits beside it.
    let (st, b) = s.send(KEY, Some("application/json"), body(300)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let s = start(|c| {
        c.event_api.header_timeout = engine::functions::Duration::from_secs(1);
        c.event_api.body_timeout = engine::functions::Duration::from_secs(1);
    })
    .await;
    // Headers that never end: the connection is closed.
    let mut conn = unfinished(&s, &format!("POST /e/{KEY} HTTP/1.1\r\nhost: x\r\n")).await;
    let said = until_closed(&mut conn).await;
    assert!(!said.contains("200 OK"), "{said}");
    // An idle keep-alive connection is closed as well.
    let mut idle = unfinished(&s, "").await;
    until_closed(&mut idle).await;
    // A body that stops arriving: 408.
    let mut conn = unfinished(
        &s,
        &format!(
            "POST /e/{KEY} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
        ),
    )
    .await;
    let said = until_closed(&mut conn).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    // The server still serves everyone else.
    let (st, b) = s.send_json(&json!({"name": "after"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn an_unavailable_backend_gets_503_and_nothing_is_acknowledged() {
    let s = start(|_| {}).await;
    // Another process holding the write lock longer than the busy timeout.
    let blocker = rusqlite::Connection::open(&s.db).expect("open");
    blocker.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let (st, b) = s.send_json(&json!({"name": "blocked"})).await;
    assert_error(st, &b, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    blocker.execute_batch("ROLLBACK").expect("unlock");
    drop(blocker);
    let (st, b) = s.send_json(&json!({"name": "after"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let events = s.stored_events(1).await;
    assert_eq!(
        events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["after"]
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let s = start(|_| {}).await;
    for path in ["/health", "/health/ready", "/health/live"] {
        let (st, b) = s.get(path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        assert_eq!(b["status"], "ok", "{path}");
    }
    let (_, b) = s.get("/health/ready", None).await;
    assert_eq!(b["backend"], "embedded");
    for _ in 0..3 {
        assert_eq!(
            s.send_json(&json!([{"name": "a"}, {"name": "b"}])).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(s.send("nope", None, "{}").await.0, StatusCode::UNAUTHORIZED);
    let t = 1_700_000_000_000;
    let run = Run {
        id: "run-1".into(),
        function_id: "f".into(),
        event: s.stored_events(6).await.remove(0),
        status: RunStatus::Running,
        error: None,
        created_at: t,
        ended_at: None,
        traceparent: None,
    };
    s.backends.state.create_run(&run).await.expect("create");
    let resp = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.expect("text");
    for line in [
        "stackctl_events_accepted_total 6",
        "stackctl_http_requests_total{role=\"event-api\",route=\"/e/{event_key}\",status=\"200\"} 3",
        "stackctl_http_requests_total{role=\"event-api\",route=\"/e/{event_key}\",status=\"401\"} 1",
        "stackctl_http_request_duration_seconds_count{role=\"event-api\",route=\"/e/{event_key}\"} 4",
        "stackctl_queue_messages{queue=\"events\",state=\"in_flight\"} 3",
        "stackctl_queue_messages{queue=\"work\",state=\"visible\"} 0",
        "stackctl_runs{status=\"running\"} 1",
        "stackctl_runs{status=\"completed\"} 0",
        "# TYPE stackctl_http_request_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
}

#[tokio::test]
async fn runs_api_needs_the_token_and_serves_runs_steps_and_functions() {
    let s = start(|_| {}).await;
    let (st, b) = s.get("/v1/runs", None).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED, "bearer token");
    let (st, b) = s.get("/v1/runs", Some("wrong")).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED, "bearer token");

    let (_, sent) = s
        .send_json(&json!({"name": "app/order", "data": {"id": 7}}))
        .await;
    let internal_id = sent["ids"][0].as_str().unwrap().to_string();
    let event = s.stored_events(1).await.remove(0);
    let state = &s.backends.state;
    for (i, id) in ["run-a", "run-b"].iter().enumerate() {
        let run = Run {
            id: id.to_string(),
            function_id: "fulfil".into(),
            event: event.clone(),
            status: RunStatus::Running,
            error: None,
            created_at: 1000 + i as i64,
            ended_at: None,
            traceparent: None,
        };
        state.create_run(&run).await.unwrap();
    }
    state
        .record_attempt(
            "run-a",
            "charge",
            Attempt {
                number: 1,
                started_at: 1100,
                ended_at: 1150,
                error: Some("HTTP 500".into()),
                host: None,
                running: false,
            },
        )
        .await
        .unwrap();
    state
        .record_attempt(
            "run-a",
            "charge",
            Attempt {
                number: 2,
                started_at: 1200,
                ended_at: 1250,
                error: None,
                host: Some("ip-10-0-1-7.ec2.internal".into()),
                running: false,
            },
        )
        .await
        .unwrap();
    state
        .set_outcome(
            "run-a",
            "charge",
            &StepOutcome::Completed {
                output: json!({"charged": true}),
            },
            1250,
        )
        .await
        .unwrap();
    state
        .finish_run("run-a", RunStatus::Completed, None, 1300)
        .await
        .unwrap();

    let (st, run) = s.get("/v1/runs/run-a", Some(TOKEN)).await;
    assert_eq!(st, StatusCode::OK, "{run}");
    assert_eq!(run["id"], "run-a");
    assert_eq!(run["status"], "completed");
    assert_eq!(run["ended_at"], 1300);
    assert_eq!(run["event"]["internal_id"], internal_id.as_str());
    assert_eq!(run["steps"][0]["step_id"], "charge");
    assert_eq!(
        run["steps"][0]["outcome"],
        json!({"status": "completed", "output": {"charged": true}})
    );
    assert_eq!(run["steps"][0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(run["steps"][0]["attempts"][0]["error"], "HTTP 500");
    assert!(run["steps"][0]["attempts"][0].get("host").is_none());
    assert_eq!(
        run["steps"][0]["attempts"][1]["host"],
        "ip-10-0-1-7.ec2.internal"
    );
    assert_eq!(run["steps"][0]["started_at"], 1100);

    let (st, b) = s.get("/v1/runs/nope", Some(TOKEN)).await;
    assert_error(st, &b, StatusCode::NOT_FOUND, "no run `nope`");
    let (_, b) = s
        .get(&format!("/v1/events/{internal_id}/runs"), Some(TOKEN))
        .await;
    let ids: Vec<&str> = b["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["run-a", "run-b"]);
    let (_, b) = s.get("/v1/runs?status=running", Some(TOKEN)).await;
    assert_eq!(b["runs"].as_array().unwrap().len(), 1);
    assert_eq!(b["runs"][0]["id"], "run-b");
    let (_, b) = s.get("/v1/runs?limit=1", Some(TOKEN)).await;
    assert_eq!(b["runs"].as_array().unwrap().len(), 1);
    assert_eq!(b["runs"][0]["id"], "run-b", "most recent first");
    let (st, b) = s.get("/v1/runs?status=sleeping", Some(TOKEN)).await;
    assert_error(st, &b, StatusCode::BAD_REQUEST, "unknown status");

    let (st, b) = s.post("/v1/runs/run-b/cancel", json!(null)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"id": "run-b", "status": "cancelled", "cancelled": true})
    );
    let (_, b) = s.post("/v1/runs/run-b/cancel", json!(null)).await;
    assert_eq!(b["cancelled"], false, "cancelling twice is harmless");
    let (_, b) = s.post("/v1/runs/run-a/cancel", json!(null)).await;
    assert_eq!(
        b,
        json!({"id": "run-a", "status": "completed", "cancelled": false})
    );
    let (st, b) = s.post("/v1/runs/nope/cancel", json!(null)).await;
    assert_error(st, &b, StatusCode::NOT_FOUND, "no run");
    let cancelled = state.get_run("run-b").await.unwrap().unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(cancelled.error.unwrap().contains("cancelled"));

    let function = json!({
        "id": "fulfil",
        "triggers": [{"event": "app/order"}],
        "steps": [{"id": "charge", "http": {"url": "http://127.0.0.1:9/charge"}}]
    });
    let (st, b) = s.post("/v1/functions", function.clone()).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["registered"], json!(["fulfil"]));
    let (st, b) = s.post("/v1/functions", json!({"id": "Bad Id", "triggers": [{"event": "x"}], "steps": [{"id": "s", "sleep": "1s"}]})).await;
    assert_error(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid function id",
    );
    let (st, b) = s
        .post(
            "/v1/functions",
            json!({"id": "x", "triggers": [], "stepz": []}),
        )
        .await;
    assert_error(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "stepz");
    let resp = s
        .http
        .post(format!("{}/v1/functions", s.url))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (_, b) = s.get("/v1/functions", Some(TOKEN)).await;
    assert_eq!(b["functions"], json!([function]));
}

#[tokio::test]
async fn the_runs_api_is_closed_without_a_token() {
    let s = start(|c| c.api_token = None).await;
    let (st, b) = s.get("/v1/functions", Some("anything")).await;
    assert_error(st, &b, StatusCode::UNAUTHORIZED, "no api_token");
}
