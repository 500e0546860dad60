//! `stackctl up examples/local-sqs-redis.yaml` with `REDIS_URL` and
//! `AWS_ENDPOINT_URL` set (a real `redis-server` and a moto server on
//! loopback): the local stack runs on SQS queues and Redis state, is
//! healthy (its canary run completes), and an event sent to it completes a
//! run whose records are in Redis. And the reliability acceptance on that
//! data path: `kill -9` of the executor, the runner and the event API in
//! turn under a light load, each restored by `stackctl up`, loses no
//! acknowledged event, runs none twice and dead-letters nothing.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{
    LocalStackGuard, assert_stackctl_ok, last_doc, local_logs, local_pids, local_stack_dir,
    stackctl as stackctl_command, wait_gone,
};
use serde_json::{Value, json};

const KEY: &str = "sqs-redis-key";
const TOKEN: &str = "sqs-redis-token";
/// The name of the stack [`Stack`] runs.
const STACK: &str = "ksr";

/// `stackctl ARGS` in `dir`, on `moto`'s SQS and `redis`, with this file's
/// event key and API token.
fn command(
    dir: &Path,
    moto: &harness::Moto,
    redis: &harness::RedisServer,
    args: &[&str],
) -> Command {
    let mut cmd = stackctl_command();
    cmd.args(args)
        .current_dir(dir)
        .env("REDIS_URL", redis.url())
        .env("STACKCTL_EVENT_KEY", KEY)
        .env("STACKCTL_API_TOKEN", TOKEN);
    moto.configure_command(&mut cmd);
    cmd
}

fn stackctl(
    dir: &Path,
    moto: &harness::Moto,
    redis: &harness::RedisServer,
    args: &[&str],
) -> Output {
    command(dir, moto, redis, args)
        .output()
        .expect("run stackctl")
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

/// A small SQS + Redis stack (one process per role, a one-step function)
/// in a temp dir. Its queues' visibility timeout is short so that messages
/// a killed process held come back within the test's time. Dropping it runs
/// `down --yes` and kills whatever it recorded that is still there, so a
/// failed test leaves no engine process behind.
struct Stack<'a> {
    // First, so it is dropped while the directory it runs `down` in exists.
    _guard: LocalStackGuard,
    dir: tempfile::TempDir,
    port: u16,
    moto: &'a harness::Moto,
    redis: &'a harness::RedisServer,
}

impl<'a> Stack<'a> {
    fn new(moto: &'a harness::Moto, redis: &'a harness::RedisServer) -> Self {
        let (dir, port) = local_stack_dir(|port| {
            format!(
                r#"stack: {STACK}
provider: local
services:
  event-api: {{count: 1, port: {port}}}
  runner: {{count: 1}}
executors: {{min: 1, desired: 1, max: 1, drivers: [http]}}
queues:
  backend: sqs
  events: {{visibility_timeout: 5s, max_receives: 5}}
  work: {{visibility_timeout: 5s, max_receives: 5}}
state:
  url: ${{REDIS_URL}}
event_keys: {{default: {KEY}}}
api_token: {TOKEN}
timeouts: {{services: 60s, canary: 60s}}
functions:
  inline:
    - id: ticker
      triggers: [{{event: test/tick}}]
      steps:
        - {{id: tick, sleep: 100ms}}
"#
            )
        });
        let spec = dir.path().join("stack.yaml");
        let down = command(
            dir.path(),
            moto,
            redis,
            &["down", "--yes", "-f", &spec.to_string_lossy()],
        );
        Self {
            _guard: LocalStackGuard::new(dir.path(), STACK, down),
            dir,
            port,
            moto,
            redis,
        }
    }

    fn spec(&self) -> String {
        self.dir
            .path()
            .join("stack.yaml")
            .to_string_lossy()
            .into_owned()
    }

    fn target(&self) -> harness::http::Target {
        harness::http::Target::Tcp(format!("127.0.0.1:{}", self.port))
    }

    fn run(&self, args: &[&str]) -> Output {
        stackctl(self.dir.path(), self.moto, self.redis, args)
    }

    /// The last NDJSON line of a successful `--output json` command.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert_stackctl_ok(&out, args, || self.logs());
        last_doc(&out)
    }

    fn pid(&self, role: &str) -> u32 {
        match local_pids(self.dir.path(), STACK, role).unwrap_or_default()[..] {
            [pid] => pid,
            ref pids => panic!("one {role} expected, found {pids:?}"),
        }
    }

    /// The tail of every process log, for failure messages.
    fn logs(&self) -> String {
        local_logs(self.dir.path(), STACK, 20)
    }

    /// The runs of event `id` from the runs API; `None` while it does not
    /// answer.
    fn runs(&self, id: &str) -> Option<Vec<Value>> {
        let answer = harness::http::request_with(
            &self.target(),
            "GET",
            &format!("/v1/events/{id}/runs"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            None,
        )
        .ok()?;
        if answer.status != 200 {
            return None;
        }
        let body: Value = serde_json::from_slice(&answer.body).expect("JSON runs");
        Some(body["runs"].as_array().expect("runs").clone())
    }

    /// Messages in the stack's queues (visible, in flight, delayed, dead),
    /// both queues together, from the event API's `/metrics`.
    fn queued(&self) -> Option<u64> {
        let answer = harness::http::get(&self.target(), "/metrics").ok()?;
        if answer.status != 200 {
            return None;
        }
        let gauges: Vec<u64> = answer
            .text()
            .lines()
            .filter(|l| l.starts_with("stackctl_queue_messages{"))
            .map(|l| {
                let value = l.rsplit_once(' ').expect("a gauge value").1;
                value.parse::<f64>().expect("a number") as u64
            })
            .collect();
        // Both queues, each by four states: anything less is a depth that
        // could not be read, not an empty queue.
        (gauges.len() == 8).then(|| gauges.iter().sum())
    }
}

/// Polls `count` until it reaches `at_least`; false at the deadline.
fn wait_count(count: impl Fn() -> usize, at_least: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while count() < at_least {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The reliability acceptance on the AWS data path: a `kill -9` of each role
/// in turn (executor, runner, event API) under a light, steady load, each
/// restored by `stackctl up`, loses no acknowledged event and runs none
/// twice, and dead-letters nothing.
#[test]
fn killed_roles_restored_by_up_lose_no_acknowledged_event() {
    let moto = harness::Moto::start().expect("start moto");
    let redis = harness::RedisServer::builder()
        .appendonly(true)
        .start()
        .expect("start redis-server");
    let stack = Stack::new(&moto, &redis);
    let spec = stack.spec();
    let up = stack.json(&["up", &spec, "--output", "json"]);
    assert_eq!(
        up["changes"]["started"].as_array().map(Vec::len),
        Some(3),
        "{up}"
    );

    // One event every 50 ms; an event counts only once the event API
    // answered 200 for it, so those sent while it is down are not owed a run.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acked, stop, target) = (Arc::clone(&acked), Arc::clone(&stop), stack.target());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sent += 1;
                let event = json!({"name": "test/tick", "data": {"n": sent}}).to_string();
                if let Ok(answer) = harness::http::post_json(&target, &format!("/e/{KEY}"), &event)
                    && answer.status == 200
                {
                    let body: Value = serde_json::from_slice(&answer.body).expect("JSON answer");
                    let id = body["ids"][0].as_str().expect("an id").to_string();
                    acked.lock().unwrap().push(id);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            sent
        })
    };
    let acked_count = || acked.lock().unwrap().len();

    // Each kill lands while events are flowing through every role: at this
    // rate the executor holds a job or two of the step's 100 ms nap.
    for (role, name) in [
        ("executor", "executor-0"),
        ("runner", "runner-0"),
        ("event-api", "event-api-0"),
    ] {
        assert!(
            wait_count(acked_count, acked_count() + 20, Duration::from_secs(30)),
            "the load stalled before the {role} was killed\n{}",
            stack.logs()
        );
        let pid = stack.pid(role);
        let killed = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success(), "kill -9 {pid}");
        assert!(
            wait_gone(&[pid], Duration::from_secs(10)).is_empty(),
            "{role} {pid} still there"
        );
        let up = stack.json(&["up", &spec, "--output", "json"]);
        assert_eq!(up["changes"]["restarted"], json!([name]), "{up}");
        assert_ne!(stack.pid(role), pid, "{role} has a new process");
    }
    // The restored event API takes events again.
    assert!(
        wait_count(acked_count, acked_count() + 20, Duration::from_secs(30)),
        "the restored event API acknowledges nothing\n{}",
        stack.logs()
    );
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().expect("the load");
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() > 50,
        "{} of {sent} events acknowledged",
        acked.len()
    );

    // Every acknowledged event gets its run; the wait ends only when none
    // has completed for a while (the work a killed process held comes back
    // after a visibility timeout).
    let mut pending: Vec<&str> = acked.iter().map(String::as_str).collect();
    let mut progress = Instant::now();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|id| {
            !stack
                .runs(id)
                .is_some_and(|runs| runs.iter().any(|r| r["status"] == "completed"))
        });
        if pending.len() < before {
            progress = Instant::now();
        }
        assert!(
            progress.elapsed() < Duration::from_secs(30),
            "{} of {} acknowledged events have no completed run, e.g. {:?}\n{}",
            pending.len(),
            acked.len(),
            &pending[..pending.len().min(5)],
            stack.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing left in the queues: no redelivery can still add a run, so
    // the counts below are final.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queued = stack.queued();
        if queued == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queues never drained: {queued:?} messages\n{}",
            stack.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for id in &acked {
        let runs = stack.runs(id).expect("the runs API answers");
        assert_eq!(
            runs.len(),
            1,
            "event {id} has {} runs: {runs:?}",
            runs.len()
        );
        assert_eq!(runs[0]["status"], "completed", "event {id}: {runs:?}");
    }
    let dlq = stack.run(&["dlq", "-f", &spec]);
    assert_eq!(
        dlq.status.code(),
        Some(0),
        "dead letters:\n{}\n{}",
        String::from_utf8_lossy(&dlq.stdout),
        String::from_utf8_lossy(&dlq.stderr)
    );

    let down = stack.json(&["down", "--yes", "-f", &spec, "--output", "json"]);
    assert_eq!(down["stopped"].as_array().map(Vec::len), Some(3), "{down}");
}
