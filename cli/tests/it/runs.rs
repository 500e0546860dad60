//! `stackctl runs` on a real local stack, as a user runs it: events sent
//! over HTTP, then the runs listed, shown, cancelled and replayed through the
//! `stackctl` binary, in JSON and as text. A step service in the test fails
//! one step until it is "fixed", so a failed run can be replayed from its
//! failed step.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::post;
use serde_json::{Value, json};

use crate::support::{
    LocalStackGuard, assert_exit, assert_stackctl_ok, last_doc, local_logs, local_stack_dir, serve,
    stackctl,
};

const STACK: &str = "runs";
const KEY: &str = "runs-key";
const TOKEN: &str = "runs-token";

/// Fails `/charge` (400, not retried) while `broken`; counts `/reserve` calls.
#[derive(Default)]
struct Shop {
    broken: AtomicBool,
    reserves: AtomicU32,
}

async fn step(
    State(shop): State<Arc<Shop>>,
    Path(step): Path<String>,
    Json(ctx): Json<Value>,
) -> (axum::http::StatusCode, Json<Value>) {
    match step.as_str() {
        "reserve" => {
            let n = shop.reserves.fetch_add(1, Ordering::SeqCst) + 1;
            (axum::http::StatusCode::OK, Json(json!({"reservation": n})))
        }
        "charge" if shop.broken.load(Ordering::SeqCst) => (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "card declined"})),
        ),
        _ => (
            axum::http::StatusCode::OK,
            Json(json!({"step": step, "after": ctx["steps"]})),
        ),
    }
}

struct Stack {
    _guard: LocalStackGuard,
    dir: tempfile::TempDir,
    port: u16,
}

impl Stack {
    fn new(steps: &str) -> Self {
        let (dir, port) = local_stack_dir(|port| {
            format!(
                r#"stack: {STACK}
provider: local
services:
  event-api: {{count: 1, port: {port}}}
  runner: {{count: 1}}
executors: {{min: 1, desired: 1, max: 1, drivers: [http]}}
event_keys: {{default: {KEY}}}
api_token: {TOKEN}
timeouts: {{services: 60s, canary: 60s}}
functions:
  inline:
    - id: order
      triggers: [{{event: shop/order}}]
      steps:
        - {{id: reserve, http: {{url: "{steps}/reserve"}}}}
        - {{id: charge, after: [reserve], http: {{url: "{steps}/charge"}}}}
        - {{id: ship, after: [charge], http: {{url: "{steps}/ship"}}}}
    - id: napper
      triggers: [{{event: shop/nap}}]
      steps:
        - {{id: nap, sleep: 1h}}
"#
            )
        });
        let spec = dir.path().join("stack.yaml");
        let mut down = stackctl();
        down.args(["down", "--yes", "-f", &spec.to_string_lossy()])
            .current_dir(dir.path());
        Self {
            _guard: LocalStackGuard::new(dir.path(), STACK, down),
            dir,
            port,
        }
    }

    fn spec(&self) -> String {
        self.dir
            .path()
            .join("stack.yaml")
            .to_string_lossy()
            .into_owned()
    }

    /// `stackctl ARGS` in the stack's directory, stdin closed.
    fn run(&self, args: &[&str]) -> Output {
        tokio::task::block_in_place(|| {
            stackctl()
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .expect("run stackctl")
        })
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_stackctl_ok(&out, args, || local_logs(self.dir.path(), STACK, 15));
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        last_doc(&self.ok(&all))
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok(args).stdout).into_owned()
    }

    async fn send(&self, name: &str, data: Value) -> String {
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/e/{KEY}", self.port))
            .json(&json!({"name": name, "data": data}))
            .send()
            .await
            .expect("send event");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["ids"][0].as_str().unwrap().to_string()
    }

    /// Polls `stackctl runs show RUN --output json` until the run ended.
    async fn ended(&self, run_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let doc = self.json(&["runs", "show", &self.spec(), run_id]);
            if doc["run"]["status"] != "running" {
                return doc;
            }
            assert!(Instant::now() < deadline, "run {run_id} did not end: {doc}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `stackctl runs list` for the one run of `function` for `event`.
    async fn run_of(&self, function: &str, event: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = self.json(&["runs", "list", &self.spec(), "--function", function]);
            if let Some(run) = list["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["event_id"] == event)
            {
                return run["id"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "no run of {function}: {list}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn step_of<'a>(detail: &'a Value, id: &str) -> &'a Value {
    detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {detail}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_shown_cancelled_and_replayed_on_a_local_stack() {
    let shop = Arc::new(Shop::default());
    shop.broken.store(true, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/{step}", post(step))
        .with_state(shop.clone());
    let steps = format!("http://{}", serve(app).await);
    let stack = Stack::new(&steps);
    let spec = stack.spec();
    stack.ok(&["up", &spec]);

    // A run that fails at `charge`.
    let event = stack.send("shop/order", json!({"order": 42})).await;
    let run_id = stack.run_of("order", &event).await;
    let failed = stack.ended(&run_id).await;
    assert_eq!(failed["type"], "result");
    assert_eq!(failed["provider"], "local");
    assert_eq!(failed["via"]["kind"], "http");
    assert_eq!(failed["run"]["status"], "failed", "{failed}");
    assert_eq!(failed["event"]["data"], json!({"order": 42}));
    let reserve = step_of(&failed, "reserve");
    assert_eq!(reserve["status"], "completed");
    assert_eq!(reserve["output"], json!({"reservation": 1}));
    assert_eq!(reserve["copied"], false);
    let attempt = &reserve["attempts"][0];
    assert_eq!(attempt["number"], 1);
    assert!(attempt["ended_at"].as_i64() >= attempt["started_at"].as_i64());
    assert!(attempt["host"].is_string(), "{attempt}");
    let charge = step_of(&failed, "charge");
    assert_eq!(charge["status"], "failed");
    assert!(
        charge["error"].as_str().unwrap().contains("400"),
        "{charge}"
    );

    // The same as text, with the run id alone (the stack of the last `up`).
    let text = stack.text(&["runs", "show", &run_id]);
    assert!(
        text.starts_with(&format!("run {run_id} of function `order`: failed")),
        "{text}"
    );
    assert!(
        text.contains("step reserve: completed, 1 attempt"),
        "{text}"
    );
    assert!(text.contains(r#"output   {"reservation":1}"#), "{text}");
    assert!(text.contains("step charge: failed"), "{text}");

    let list = stack.json(&["runs", "list", &spec, "--status", "failed"]);
    assert_eq!(list["runs"][0]["id"], run_id.as_str(), "{list}");
    assert_eq!(list["runs"][0]["function_id"], "order");
    assert!(
        list["runs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("charge")
    );
    let list = stack.json(&[
        "runs",
        "list",
        &spec,
        "--status",
        "completed",
        "--function",
        "order",
    ]);
    assert_eq!(list["runs"], json!([]), "{list}");

    // Fixed: replayed from the failed step, `reserve` keeps its output.
    shop.broken.store(false, Ordering::SeqCst);
    let replay = stack.json(&["runs", "replay", &spec, &run_id]);
    assert_eq!(replay["replay_of"], run_id.as_str(), "{replay}");
    assert_eq!(replay["from"], "failed");
    assert_eq!(replay["copied"], json!(["reserve"]));
    assert_eq!(replay["scheduled"], json!(["charge"]));
    let new_id = replay["id"].as_str().unwrap().to_string();
    let done = stack.ended(&new_id).await;
    assert_eq!(done["run"]["status"], "completed", "{done}");
    assert_eq!(done["event"]["internal_id"], event.as_str());
    assert_eq!(step_of(&done, "reserve")["copied"], true);
    assert_eq!(
        step_of(&done, "reserve")["output"],
        json!({"reservation": 1})
    );
    assert_eq!(
        step_of(&done, "ship")["output"]["after"]["reserve"],
        json!({"reservation": 1})
    );
    assert_eq!(
        shop.reserves.load(Ordering::SeqCst),
        1,
        "not reserved twice"
    );
    let text = stack.text(&["runs", "show", &spec, &new_id]);
    assert!(
        text.contains("step reserve: completed, 1 attempt")
            && text.contains("(outcome copied from the replayed run)"),
        "{text}"
    );

    // A completed run replays from the start only.
    let out = stack.run(&["runs", "replay", &spec, &new_id, "--output", "json"]);
    assert_exit(&out, 1);
    let err = last_doc(&out);
    assert!(
        err["error"].as_str().unwrap().contains("409")
            && err["error"].as_str().unwrap().contains("from the start"),
        "{err}"
    );
    let text = stack.text(&["runs", "replay", "-f", &spec, &new_id, "--from", "start"]);
    assert!(
        text.starts_with("run ") && text.contains(&format!("replays run {new_id} from the start")),
        "{text}"
    );
    assert!(text.contains("running: reserve"), "{text}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while shop.reserves.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "the replay from the start never reserved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Cancel a running run; cancelling again changes nothing.
    let nap = stack.send("shop/nap", json!({})).await;
    let nap_id = stack.run_of("napper", &nap).await;
    let text = stack.text(&["runs", "cancel", &spec, &nap_id]);
    assert_eq!(text.trim(), format!("run {nap_id} cancelled"));
    let again = stack.json(&["runs", "cancel", &spec, &nap_id]);
    assert_eq!(again["cancelled"], false);
    assert_eq!(again["status"], "cancelled");
    let cancelled = stack.json(&["runs", "show", &spec, &nap_id]);
    assert_eq!(cancelled["run"]["status"], "cancelled");
    assert!(
        cancelled["run"]["error"]
            .as_str()
            .unwrap()
            .contains("runs API")
    );

    // The list: newest first, limits, time window, and as a table.
    let all = stack.json(&["runs", "list", &spec, "--function", "order"]);
    assert_eq!(all["runs"].as_array().unwrap().len(), 3, "{all}");
    assert_eq!(all["runs"][2]["id"], run_id.as_str(), "oldest last");
    assert_eq!(all["more"], false);
    let two = stack.json(&["runs", "list", &spec, "--limit", "2"]);
    assert_eq!(two["runs"].as_array().unwrap().len(), 2);
    assert_eq!(two["runs"][0]["id"], nap_id.as_str());
    assert_eq!(two["more"], true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let recent = stack.json(&["runs", "list", &spec, "--since", "1s"]);
    assert_eq!(recent["runs"], json!([]), "{recent}");
    let table = stack.text(&["runs", "list", &spec]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("RUN") && header.contains("FUNCTION") && header.contains("DURATION"),
        "{table}"
    );
    assert!(
        table.contains(&nap_id) && table.contains("cancelled"),
        "{table}"
    );
    assert!(
        table.contains("card declined") || table.contains("charge"),
        "{table}"
    );

    // Errors say what is wrong.
    let out = stack.run(&["runs", "show", &spec, "no-such-run"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no run `no-such-run`"), "{stderr}");
    let out = stack.run(&["runs", "show", &spec, "x", "-f", &spec]);
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));

    stack.ok(&["down", &spec, "--yes"]);
    let out = stack.run(&["runs", "list", &spec, "--output", "json"]);
    assert_exit(&out, 1);
    let err = last_doc(&out);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the runs API"),
        "{err}"
    );
}
