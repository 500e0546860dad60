//! The local provider end to end, through the real `stackctl` binary: `up`
//! starts real engine processes (`stackctl engine`) on a free event-API port
//! in a temp dir, and the tests talk to them over loopback HTTP.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{
    LOCAL_ROLES, LocalStackGuard, assert_stackctl_ok, last_doc, local_logs, local_pids,
    local_stack_dir, running, stackctl, wait_gone,
};
use serde_json::{Value, json};

const STACK: &str = "lt";
const KEY: &str = "test-key";
const TOKEN: &str = "test-token";

/// A local stack in a temp dir; dropping it runs `down --yes` and kills
/// anything recorded that is still there.
struct Stack {
    // First, so it is dropped while the directory it runs `down` in exists.
    _guard: LocalStackGuard,
    dir: tempfile::TempDir,
    port: u16,
}

impl Stack {
    fn new() -> Self {
        let (dir, port) = local_stack_dir(|port| {
            format!(
                r#"stack: {STACK}
provider: local
services:
  event-api: {{count: 1, port: {port}}}
  runner: {{count: 1}}
executors: {{min: 1, desired: 1, max: 3, drivers: [http]}}
event_keys: {{default: {KEY}}}
api_token: {TOKEN}
timeouts: {{services: 60s, canary: 60s}}
functions:
  inline:
    - id: branchy
      triggers: [{{event: test/branch}}]
      steps:
        - {{id: first, sleep: 10ms}}
        - {{id: taken, after: [first], if: "event.data.go == true", sleep: 10ms}}
        - {{id: not-taken, after: [first], if: "event.data.go == false", sleep: 10ms}}
    - id: napper
      triggers: [{{event: test/nap}}]
      steps:
        - {{id: nap, sleep: 2s}}
        - {{id: wake, after: [nap], sleep: 10ms}}
    - id: doomed
      triggers: [{{event: test/doom}}]
      retries: {{attempts: 0}}
      steps:
        - {{id: call, http: {{url: "http://127.0.0.1:9/nothing"}}}}
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

    fn spec(&self) -> PathBuf {
        self.dir.path().join("stack.yaml")
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `stackctl ARGS` in the stack's directory, stdin closed.
    fn stackctl(&self, args: &[&str]) -> Output {
        stackctl()
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run stackctl")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.stackctl(args);
        assert_stackctl_ok(&out, args, || self.logs());
        out
    }

    /// The `--output json` result: the whole output when it is one document
    /// (`status`), else the last NDJSON line (`up`, `scale`, `down`).
    fn json(&self, args: &[&str]) -> Value {
        last_doc(&self.ok(args))
    }

    fn pids(&self, role: &str) -> Vec<u32> {
        local_pids(self.dir.path(), STACK, role).expect("state.json")
    }

    fn all_pids(&self) -> Vec<u32> {
        LOCAL_ROLES.iter().flat_map(|r| self.pids(r)).collect()
    }

    fn logs(&self) -> String {
        local_logs(self.dir.path(), STACK, 15)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn send(api: &str, event: Value) -> String {
    let resp = client()
        .post(format!("{api}/e/{KEY}"))
        .json(&event)
        .send()
        .await
        .expect("send event");
    assert_eq!(resp.status(), 200, "event refused");
    let body: Value = resp.json().await.expect("json answer");
    body["ids"][0].as_str().expect("an id").to_string()
}

/// Polls the runs of `event_id` until the run of `function` satisfies `done`.
async fn wait_run(
    api: &str,
    event_id: &str,
    function: &str,
    done: impl Fn(&str) -> bool,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let resp = client()
            .get(format!("{api}/v1/events/{event_id}/runs"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if let Ok(resp) = resp
            && resp.status().is_success()
        {
            let body: Value = resp.json().await.expect("json runs");
            if let Some(run) = body["runs"]
                .as_array()
                .and_then(|runs| runs.iter().find(|r| r["function_id"] == function))
            {
                if done(run["status"].as_str().unwrap_or("")) {
                    return run.clone();
                }
                last = run.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run of {function} for event {event_id} not done in {within:?}; last seen: {last}");
}

async fn get_run(api: &str, run_id: &str) -> Value {
    client()
        .get(format!("{api}/v1/runs/{run_id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get run")
        .json()
        .await
        .expect("run json")
}

/// Waits for the run of `function` for `event_id` to finish, asserts that
/// it completed, and returns its detail (steps and outcomes).
async fn completed_run(api: &str, event_id: &str, function: &str) -> Value {
    let run = wait_run(
        api,
        event_id,
        function,
        |s| s != "running",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    get_run(api, run["id"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_events_scales_and_goes_down() {
    let stack = Stack::new();
    let spec = stack.spec().to_string_lossy().into_owned();

    let up = stack.json(&["up", &spec, "--output", "json"]);
    assert_eq!(up["event_api"], stack.api());
    assert_eq!(up["event_key"], KEY);
    assert_eq!(up["runs_api"], format!("{}/v1", stack.api()));
    assert_eq!(
        up["canary"]["run_id"].as_str().map(str::is_empty),
        Some(false)
    );
    assert_eq!(up["changes"]["started"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        std::fs::read_to_string(stack.dir.path().join(".stackctl/last"))
            .unwrap()
            .trim(),
        std::fs::canonicalize(stack.spec())
            .unwrap()
            .to_string_lossy()
    );

    // An event runs a function: one branch taken, the other skipped.
    let id = send(
        &stack.api(),
        json!({"name": "test/branch", "data": {"go": true}}),
    )
    .await;
    let detail = completed_run(&stack.api(), &id, "branchy").await;
    let outcome = |step: &str| {
        detail["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step_id"] == step)
            .map(|s| s["outcome"]["status"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(outcome("first"), "completed", "{detail}");
    assert_eq!(outcome("taken"), "completed", "{detail}");
    assert_eq!(outcome("not-taken"), "skipped", "{detail}");

    // A run that fails: its step's one attempt finds nothing listening.
    let doomed = send(&stack.api(), json!({"name": "test/doom", "data": {}})).await;
    let run = wait_run(
        &stack.api(),
        &doomed,
        "doomed",
        |s| s != "running",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run["status"], "failed", "{run}");

    // status, without FILE: the last `up` from this directory.
    let status = stack.json(&["status", "--output", "json"]);
    assert_eq!(status["healthy"], true, "{status}");
    // The figures: the queues the runner and the executors consume, read
    // from the engine's /metrics, and the failed run from the runs API.
    let figures = &status["figures"];
    assert_eq!(
        figures["runs_failed_last_hour"],
        json!({"known": {"count": 1, "more": false}}),
        "{figures}"
    );
    for (service, queue) in [("runner", "events"), ("executors", "work")] {
        let q = &figures["services"][service];
        assert_eq!(q["queue"], queue, "{figures}");
        assert!(q["depth"]["known"].is_u64(), "{figures}");
        assert_eq!(q["dead_letters"], json!({"known": 0}), "{figures}");
        assert!(q["oldest_age_seconds"]["known"].is_number(), "{figures}");
    }
    let human = String::from_utf8_lossy(&stack.ok(&["status"]).stdout).into_owned();
    assert!(human.contains("runs failed in the last hour: 1"), "{human}");
    let row = human
        .lines()
        .find(|l| l.trim_start().starts_with("executors") && l.contains("work"))
        .unwrap_or_else(|| panic!("no executors queue row in\n{human}"));
    assert!(!row.contains("unknown"), "{human}");
    assert!(human.contains("DEAD LETTERS"), "{human}");
    let procs = status["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 3);
    assert!(
        procs
            .iter()
            .all(|p| p["alive"] == true && p["healthy"] == true),
        "{status}"
    );

    // scale executors 3: three executor processes, all healthy.
    let scaled = stack.json(&["scale", "executors", "3", "--output", "json"]);
    assert_eq!(
        (scaled["from"].as_u64(), scaled["to"].as_u64()),
        (Some(1), Some(3)),
        "{scaled}"
    );
    assert!(
        scaled["note"].as_str().unwrap().contains("not edited"),
        "{scaled}"
    );
    let executors = stack.pids("executor");
    assert_eq!(executors.len(), 3);
    assert!(executors.iter().all(|p| running(*p)));
    let status = stack.json(&["status", "--output", "json"]);
    assert_eq!(
        status["services"]["executors"],
        json!({"desired": 3, "running": 3, "healthy": 3})
    );

    // `up` again converges back to the spec: unchanged processes are kept.
    let before = stack.pids("event-api");
    let again = stack.json(&["up", "--output", "json"]);
    assert_eq!(
        again["changes"]["kept"].as_array().map(Vec::len),
        Some(3),
        "{again}"
    );
    assert_eq!(
        again["changes"]["stopped"].as_array().map(Vec::len),
        Some(2),
        "{again}"
    );
    assert_eq!(
        stack.pids("event-api"),
        before,
        "the event API was kept, not restarted"
    );
    assert_eq!(
        wait_gone(&executors[1..], Duration::from_secs(20)),
        Vec::<u32>::new()
    );

    // A dead process is restarted; one whose configuration changed too.
    let runner = stack.pids("runner")[0];
    Command::new("kill")
        .args(["-9", &runner.to_string()])
        .status()
        .expect("kill");
    assert_eq!(
        wait_gone(&[runner], Duration::from_secs(10)),
        Vec::<u32>::new()
    );
    let spec_text = std::fs::read_to_string(stack.spec()).unwrap();
    let edited = spec_text.replace("drivers: [http]}", "drivers: [http], concurrency: 8}");
    assert_ne!(edited, spec_text);
    std::fs::write(stack.spec(), edited).unwrap();
    let again = stack.json(&["up", "--output", "json"]);
    let mut restarted: Vec<String> =
        serde_json::from_value(again["changes"]["restarted"].clone()).unwrap();
    restarted.sort();
    assert_eq!(restarted, ["executor-0", "runner-0"], "{again}");
    assert_eq!(again["changes"]["kept"], json!(["event-api-0"]), "{again}");

    // down refuses without --yes when there is no terminal to confirm on.
    let refused = stack.stackctl(&["down"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--yes"),
        "{refused:?}"
    );
    let pids = stack.all_pids();
    assert!(
        pids.iter().all(|p| running(*p)),
        "nothing was stopped by the refused down"
    );

    let down = stack.json(&["down", "--yes", "--output", "json"]);
    assert_eq!(down["stopped"].as_array().map(Vec::len), Some(3), "{down}");
    assert_eq!(
        wait_gone(&pids, Duration::from_secs(20)),
        Vec::<u32>::new(),
        "processes left after down"
    );
    let status = stack.stackctl(&["status"]);
    assert!(
        !status.status.success(),
        "a stack that is down is not healthy"
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("not up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_again_resumes_an_unfinished_run() {
    let stack = Stack::new();
    let spec = stack.spec().to_string_lossy().into_owned();
    stack.json(&["up", &spec, "--output", "json"]);

    let id = send(&stack.api(), json!({"name": "test/nap", "data": {}})).await;
    let run = wait_run(
        &stack.api(),
        &id,
        "napper",
        |_| true,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        run["status"], "running",
        "the 2s sleep is still going: {run}"
    );
    let pids = stack.all_pids();
    stack.json(&["down", "--yes", "--output", "json"]);
    assert_eq!(wait_gone(&pids, Duration::from_secs(20)), Vec::<u32>::new());

    let up = stack.json(&["up", &spec, "--output", "json"]);
    assert_eq!(
        up["changes"]["restarted"].as_array().map(Vec::len),
        Some(0),
        "{up}"
    );
    let detail = completed_run(&stack.api(), &id, "napper").await;
    let steps = detail["steps"].as_array().unwrap();
    assert!(
        steps.iter().all(|s| s["outcome"]["status"] == "completed"),
        "every step completed after the restart: {detail}"
    );
}

/// A message the runner cannot read goes to the events dead-letter queue
/// after its deliveries; `dlq` shows it (exit 1) and `dlq --redrive` moves
/// it back (exit 0: the dead-letter queue is empty now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_shows_a_dead_lettered_message_and_moves_it_back() {
    let stack = Stack::new();
    let spec = stack.spec().to_string_lossy().into_owned();
    let empty = stack.stackctl(&["dlq", "-f", &spec, "--output", "json"]);
    assert_eq!(
        empty.status.code(),
        Some(0),
        "a stack that never ran has none"
    );
    stack.json(&["up", &spec, "--output", "json"]);

    // Written beside the engine processes, into the same database.
    let backends = engine::backend::open(
        &engine::backend::BackendConfig::Embedded {
            path: stack.dir.path().join(".stackctl/lt/engine.db"),
        },
        &engine::config::QueuesConfig::default(),
    )
    .await
    .expect("open the stack's database");
    backends
        .events
        .send(vec![engine::backend::Message {
            body: b"not an event".to_vec(),
            delay: Duration::ZERO,
        }])
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(60);
    let shown = loop {
        let out = stack.stackctl(&["dlq", "events", "-f", &spec, "--output", "json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        if doc["queues"][0]["count"] == 1 {
            assert_eq!(out.status.code(), Some(1), "{doc}");
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "never dead-lettered: {doc}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let letter = &shown["queues"][0]["letters"][0];
    assert_eq!(letter["content"], "undecodable", "{shown}");
    assert_eq!(letter["bytes"], 12, "{shown}");
    assert_eq!(letter["receive_count"], 5, "every delivery failed: {shown}");
    let human = stack.stackctl(&["dlq", "-f", &spec]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("events: 1 in its dead-letter queue") && text.contains("--redrive"),
        "{text}"
    );

    let moved = stack.json(&[
        "dlq",
        "events",
        "--redrive",
        "-f",
        &spec,
        "--output",
        "json",
    ]);
    assert_eq!(moved["queues"][0]["redriven"], 1, "{moved}");
    assert_eq!(moved["queues"][0]["count"], 0, "{moved}");
}

#[test]
fn commands_without_a_stack_say_how_to_name_one() {
    let dir = tempfile::tempdir().unwrap();
    for verb in ["status", "down"] {
        let out = stackctl()
            .arg(verb)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{verb}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no stack given: pass FILE or -f FILE, or run stackctl up FILE first"),
            "{verb}: {err}"
        );
    }
}

#[test]
fn aws_stacks_are_refused_honestly() {
    let dir = tempfile::tempdir().unwrap();
    let aws = harness::repo_root().join("examples/aws.yaml");
    // `up` and `status` operate aws stacks (aws_up), but never
    // without credentials, configured or from an instance profile.
    for (verb, expected) in [
        ("up", "needs AWS credentials"),
        ("status", "needs AWS credentials"),
        // `down` asks for confirmation before anything else.
        ("down", "without --yes (no terminal to confirm on)"),
    ] {
        let out = stackctl()
            .args([verb, &aws.to_string_lossy()])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env_remove("AWS_CONFIG_FILE")
            // No instance profile either, and no probe of the metadata
            // service (off loopback) to find that out.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{verb}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expected) && err.to_lowercase().contains("aws"),
            "{verb}: {err}"
        );
    }
    assert!(
        !dir.path().join(".stackctl").exists(),
        "a refused up records nothing"
    );
}
