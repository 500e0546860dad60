//! The `stackctl-engine` binary as a real process: it serves the event API
//! from a JSON config, every acknowledged event survives a SIGKILL, and
//! SIGTERM stops it cleanly.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engine::backend::{self, BackendConfig};
use engine::config::QueuesConfig;
use serde_json::{Value, json};

const KEY: &str = "process-key";

struct Engine {
    child: Child,
    url: String,
}

impl Drop for Engine {
    // A failing test must not leave an engine running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits (with a deadline) for its `listening` log line.
fn start(config: &std::path::Path) -> Engine {
    let child = Command::new(env!("CARGO_BIN_EXE_stackctl-engine"))
        .args(["--role", "event-api", "--log-format", "json", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stackctl-engine");
    let mut engine = Engine {
        child,
        url: String::new(),
    };
    let stderr = engine.child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    // Keep draining stderr so the engine never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the engine logs `listening` before the deadline");
        let Ok(log) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if log["fields"]["message"] == "listening" {
            let addr = log["fields"]["addr"].as_str().expect("addr");
            engine.url = format!("http://{addr}");
            return engine;
        }
    }
}

fn write_config(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let db = dir.join("engine.db");
    let config = json!({
        "roles": ["event-api"],
        "event_api": {"bind": "127.0.0.1:0"},
        "event_keys": [KEY],
        "api_token": "t",
        "backend": {"kind": "embedded", "path": db},
    });
    let path = dir.join("engine.json");
    std::fs::write(&path, config.to_string()).expect("write config");
    (path, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, db) = write_config(dir.path());
    let mut engine = start(&config);
    let http = reqwest::Client::new();

    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..100 {
        let (http, url) = (http.clone(), format!("{}/e/{KEY}", engine.url));
        tasks.spawn(async move {
            let events: Vec<Value> = (0..10)
                .map(|i| json!({"name": "load/test", "data": {"r": r, "i": i}}))
                .collect();
            let resp = http.post(url).json(&events).send().await.expect("send");
            assert_eq!(resp.status(), 200);
            let body: Value = resp.json().await.expect("json");
            crate::common::string_list(&body["ids"])
        });
    }
    let mut acked = HashSet::new();
    while let Some(ids) = tasks.join_next().await {
        acked.extend(ids.expect("join"));
    }
    assert_eq!(acked.len(), 1000);
    engine.child.kill().expect("SIGKILL");
    engine.child.wait().expect("wait");

    let backends = backend::open(
        &BackendConfig::Embedded { path: db.clone() },
        &QueuesConfig::default(),
    )
    .await
    .expect("reopen");
    let mut stored = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stored.len() < acked.len() && tokio::time::Instant::now() < deadline {
        for r in backends
            .events
            .receive(100, Duration::from_secs(300), Duration::from_millis(200))
            .await
            .expect("receive")
        {
            for e in backend::decode_events(&r.body).expect("decode") {
                assert!(stored.insert(e.internal_id), "stored once");
            }
        }
    }
    assert_eq!(
        stored, acked,
        "every acknowledged event is in the event stream"
    );
    drop(backends);

    let mut engine = start(&config);
    let resp = http
        .post(format!("{}/e/{KEY}", engine.url))
        .json(&json!({"name": "after/restart"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let health: Value = http
        .get(format!("{}/health", engine.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let status = Command::new("kill")
        .args(["-TERM", &engine.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = engine.child.try_wait().expect("try_wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the engine did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
}

#[test]
fn a_bad_config_is_reported_with_a_nonzero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"backend": {"kind": "embedded", "path": "x.db"}, "evnt_keys": []}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stackctl-engine"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `evnt_keys`"), "{stderr}");
}
