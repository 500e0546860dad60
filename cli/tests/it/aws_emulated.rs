//! The example AWS stack running on the emulated AWS of the harness
//! ([`harness::AwsEmulator`]): moto as the control plane, and real podman
//! containers for what it says should run. `stackctl up examples/aws.yaml`
//! builds and pushes the engine image; the data plane runs the event-API and
//! runner tasks and boots the executor host from the launch template's user
//! data, which fetches its secrets from SSM, logs in to "ECR" and starts the
//! executor with the host's Docker socket. Events then go through SQS (moto),
//! the runner, Redis (a real TLS redis-server with the group's auth token)
//! and an executor, with an HTTP step and a Docker step.
//!
//! `up` deploys the spec's functions (the test adds one with an HTTP step on
//! the example step service and a Docker step) and verifies the stack with
//! its canary from inside the VPC; `runs` lists, shows and replays its runs
//! through one-off tasks inside the VPC. With `observability: {traces:
//! xray}` each task runs the collector sidecar and the executor host its
//! collector (the data plane's stand-in, which relays to this test's OTLP
//! receiver): one trace follows an event through the three roles' containers
//! to its HTTP and Docker steps. The second test kills a runner and the
//! executor under load, runs a one-off task (RunTask) and boots a host whose
//! user data cannot read its SSM parameter.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{find_by, last_doc, now_ms, on_memorydb, repo_root, stackctl, strings};
use harness::{AwsEmulator, OtlpReceiver, ReceivedSpan};
use serde_json::{Value, json};

const EVENT_KEY: &str = "change-me-event-key";
const API_TOKEN: &str = "change-me-api-token";
const FUNCTION_EVENT: &str = "emulated/check";
/// Generous: every container of the stack starts on a 2-core machine that
/// runs other tests at the same time.
const CONVERGE: Duration = Duration::from_secs(180);

/// Marks a phase in the test's output (shown when it fails), with the time since start.
fn phase(start: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", start.elapsed().as_secs_f64());
}

/// The engine binary `up` ships: the one `scripts/test` builds before the
/// tests (`cargo build -p engine --bin stackctl-engine --features sqs,redis`),
/// beside `stackctl`. Not built from here: a cargo build of the engine alone
/// from inside the test run would invalidate the workspace's test build.
fn engine_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_stackctl")).with_file_name("stackctl-engine");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p engine --bin stackctl-engine --features sqs,redis` \
         (scripts/test does)",
        path.display()
    );
    path
}

/// The example step service (`examples/step-service`) on a free loopback
/// port; the emulator forwards that port to the containers.
struct StepService {
    child: std::process::Child,
    port: u16,
}

impl StepService {
    fn start() -> Self {
        let port = harness::free_port().unwrap();
        let child = Command::new("python3")
            .arg(repo_root().join("examples/step-service/step_service.py"))
            .env("STEP_SERVICE_PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs the step service");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the step service did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        StepService { child, port }
    }
}

impl Drop for StepService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One emulated AWS with the example stack's files in a work dir.
struct Stack {
    emu: AwsEmulator,
    /// The engine binary `up` ships; `None`: the running stackctl's own
    /// engine, as an installed stackctl outside any workspace does.
    engine: Option<PathBuf>,
    /// The busybox image the data plane pushed to its registry, for Docker steps.
    step_image: String,
    dir: tempfile::TempDir,
    _steps: StepService,
    /// Where the tasks' and hosts' collectors send the stack's traces.
    traces: OtlpReceiver,
}

impl Stack {
    async fn start(own_engine: bool) -> Self {
        tokio::task::spawn_blocking(move || {
            let steps = StepService::start();
            let traces = OtlpReceiver::start().expect("the OTLP receiver");
            let emu = AwsEmulator::builder()
                .forward(steps.port)
                .otel_collector(stacks::graph::OTEL_COLLECTOR_IMAGE, traces.port())
                .start()
                .expect("the AWS emulator starts (run scripts/test to install its parts)");
            let engine = (!own_engine).then(engine_binary);
            let step_image = emu.status().expect("data plane status")["step_image"]
                .as_str()
                .expect("the data plane names its step image")
                .to_string();
            let dir = tempfile::tempdir().unwrap();
            copy_dir(&repo_root().join("examples"), dir.path());
            std::fs::write(
                dir.path().join("functions/emulated-check.yaml"),
                check_function(""),
            )
            .unwrap();
            std::fs::write(
                dir.path().join("functions/emulated-cron.yaml"),
                CRON_FUNCTION,
            )
            .unwrap();
            Stack {
                emu,
                engine,
                step_image,
                dir,
                _steps: steps,
                traces,
            }
        })
        .await
        .unwrap()
    }

    fn spec(&self) -> PathBuf {
        self.dir.path().join("aws.yaml")
    }

    fn stackctl(&self, args: &[&str]) -> Output {
        let mut cmd = stackctl();
        self.emu.configure_command(&mut cmd);
        match &self.engine {
            Some(engine) => cmd.env("STACKCTL_ENGINE_BINARY", engine),
            None => cmd.env_remove("STACKCTL_ENGINE_BINARY"),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("STACKCTL_EVENT_KEY")
            .env_remove("STACKCTL_API_TOKEN")
            .env(
                "STEP_URL",
                format!("http://{}:{}", self.emu.gateway(), self._steps.port),
            )
            .env("STEP_IMAGE", &self.step_image)
            .output()
            .expect("stackctl runs")
    }

    /// Runs stackctl in a blocking task and asserts its exit code.
    async fn run(self: &Arc<Self>, args: &[&str], code: i32) -> Output {
        let me = Arc::clone(self);
        let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = owned.iter().map(String::as_str).collect();
            me.stackctl(&args)
        })
        .await
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "stackctl {args:?}:\n{}\n{}\ndata plane log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.emu.log()
        );
        out
    }

    async fn wait_for<T: Send + 'static>(
        self: &Arc<Self>,
        what: &str,
        check: impl FnMut(&Value) -> Result<T, String> + Send + 'static,
    ) -> T {
        let me = Arc::clone(self);
        let what = what.to_string();
        tokio::task::spawn_blocking(move || me.emu.wait_for(&what, CONVERGE, check))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn status(&self) -> Value {
        self.emu.status().expect("data plane status")
    }
}

/// The last JSON line of a command's output (its result).
fn last_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap()).unwrap()
}

/// The test's function file: an HTTP step on the step service, then, for
/// events that ask for it, a Docker step on the executor host's engine (a
/// container per step is too heavy for the load phases on 2 cores).
/// `extra` is appended to the steps (a new version of the function).
fn check_function(extra: &str) -> String {
    format!(
        r#"id: emulated-check
name: An HTTP step, then a Docker step
triggers:
  - event: {FUNCTION_EVENT}
steps:
  - id: call
    http:
      url: ${{STEP_URL}}/step
  - id: box
    after: [call]
    if: event.data.boxed == true
    docker:
      image: ${{STEP_IMAGE}}
      command: ["sh", "-c", "cat >/dev/null; echo '{{\"boxed\": true}}'"]
      pull: if_missing
      timeout: 2m
{extra}"#
    )
}

/// A cron function of the test's stacks: every minute, one HTTP step.
const CRON_FUNCTION: &str = r#"id: emulated-cron
name: Every minute, one HTTP step
triggers:
  - cron: "* * * * *"
steps:
  - id: tick
    http:
      url: ${STEP_URL}/cron
"#;

/// Checks that every minute due after `since_ms` (and long enough ago for
/// its run to have ended) started exactly one run of the cron function,
/// whose step ran once, however many runners ticked; the ticks checked.
async fn cron_ran_once_per_tick(api: &Api, since_ms: i64) -> usize {
    let last_due = now_ms() - 15_000;
    let first = (since_ms / 60_000 + 1) * 60_000;
    let mut ticks = 0;
    let mut at = first;
    while at <= last_due {
        // Cron runs are keyed by the function and the due time.
        let runs = api.runs_of(&format!("cron:emulated-cron:{at}")).await;
        assert_eq!(runs.len(), 1, "one run for the tick at {at}: {runs:?}");
        let run = api.run(runs[0]["id"].as_str().unwrap()).await;
        assert_eq!(run["status"], "completed", "{run}");
        let steps = run["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 1, "the tick's step ran once: {run}");
        ticks += 1;
        at += 60_000;
    }
    ticks
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Running containers of an ECS service (by its name's suffix).
fn tasks<'a>(status: &'a Value, service: &str) -> Vec<&'a Value> {
    status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["kind"] == "task"
                && c["state"] == "running"
                && c["service"].as_str().is_some_and(|s| s.ends_with(service))
        })
        .collect()
}

/// Instances whose boot script finished with `boot` (ok, failed).
fn instances(status: &Value, boot: &str) -> usize {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["boot"] == boot)
        .count()
}

/// Executor containers running on the emulated hosts.
fn executors(status: &Value) -> Vec<&Value> {
    status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "stackctl-executor" && c["state"] == "running")
        .collect()
}

fn counts(status: &Value) -> String {
    format!(
        "event-api {}, runner {}, instances ok {} failed {}, executors {}, errors {}",
        tasks(status, "event-api").len(),
        tasks(status, "runner").len(),
        instances(status, "ok"),
        instances(status, "failed"),
        executors(status).len(),
        status["errors"]
    )
}

/// The event API through the data plane's loopback address of the service.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn new(stack: &Arc<Stack>) -> Self {
        let me = Arc::clone(stack);
        let addr = tokio::task::spawn_blocking(move || {
            me.emu
                .service_address("reference-event-api")
                .expect("event-API address")
        })
        .await
        .unwrap();
        Api {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Sends one event; its id when the API acknowledged it.
    async fn send(&self, n: u64, boxed: bool) -> Option<String> {
        let resp = self
            .http
            .post(format!("{}/e/{EVENT_KEY}", self.base))
            .json(&json!({"name": FUNCTION_EVENT, "data": {"n": n, "boxed": boxed}}))
            .send()
            .await
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        let body: Value = resp.json().await.ok()?;
        body["ids"][0].as_str().map(str::to_owned)
    }

    async fn runs_of(&self, event: &str) -> Vec<Value> {
        let Ok(resp) = self
            .http
            .get(format!("{}/v1/events/{event}/runs", self.base))
            .bearer_auth(API_TOKEN)
            .send()
            .await
        else {
            return Vec::new();
        };
        let body: Value = resp.json().await.unwrap_or_default();
        body["runs"].as_array().cloned().unwrap_or_default()
    }

    async fn run(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/runs/{id}", self.base))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the event's one run completed; the run with its steps.
    async fn completed_run(&self, event: &str) -> Value {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let found = self.runs_of(event).await;
            if let Some(run) = found.first() {
                assert_ne!(run["status"], "failed", "{run}");
                if run["status"] == "completed" {
                    return self.run(run["id"].as_str().unwrap()).await;
                }
            }
            assert!(
                Instant::now() < deadline,
                "event {event} did not complete: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until each event has exactly one run, completed, whose steps
    /// each have one saved outcome (the Docker step's only when `boxed`).
    async fn all_completed(&self, events: &[String], boxed: bool) -> Vec<Value> {
        let deadline = Instant::now() + CONVERGE;
        let mut pending: BTreeSet<&String> = events.iter().collect();
        let mut runs = Vec::new();
        while !pending.is_empty() {
            let mut done = Vec::new();
            for &event in &pending {
                let found = self.runs_of(event).await;
                assert!(
                    found.len() <= 1,
                    "event {event} started {} runs",
                    found.len()
                );
                if let Some(run) = found.first() {
                    assert_ne!(run["status"], "failed", "{run}");
                    if run["status"] == "completed" {
                        done.push(event);
                        runs.push(self.run(run["id"].as_str().unwrap()).await);
                    }
                }
            }
            for event in done {
                pending.remove(event);
            }
            if !pending.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "{} of {} acknowledged events never completed, e.g. {:?}",
                    pending.len(),
                    events.len(),
                    pending.iter().next()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        for run in &runs {
            let steps = run["steps"].as_array().unwrap();
            assert_eq!(steps.len(), 2, "{run}");
            assert_eq!(steps[0]["outcome"]["status"], "completed", "{run}");
            if boxed {
                assert_eq!(steps[1]["outcome"]["status"], "completed", "{run}");
                assert_eq!(steps[1]["outcome"]["output"]["boxed"], true, "{run}");
            } else {
                assert_eq!(steps[1]["outcome"]["status"], "skipped", "{run}");
            }
            assert_eq!(steps[0]["outcome"]["output"]["path"], "/step", "{run}");
        }
        runs
    }
}

/// Sends events at about `rate` per second until stopped; the acknowledged ids.
fn send_at_rate(
    api: Arc<Api>,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate));
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            n += 1;
            if let Some(id) = api.send(n, false).await {
                acked.push(id);
            }
        }
        acked
    })
}

/// The example stack, its spec changed by `edit`, up on a new emulator and
/// checked ready (tasks healthy on the pushed image, the executor host
/// booted, the canary verified); `own_engine`: `up` ships the running
/// stackctl's engine.
async fn ready_stack_with(
    start: Instant,
    own_engine: bool,
    edit: impl FnOnce(&Stack, &str) -> String,
) -> (Arc<Stack>, Arc<Api>) {
    let stack = Arc::new(Stack::start(own_engine).await);
    let text = edit(&stack, &std::fs::read_to_string(stack.spec()).unwrap());
    std::fs::write(stack.spec(), &text).unwrap();
    phase(start, "emulator started");
    let spec = stack.spec().display().to_string();
    let out = stack.run(&["--output", "json", "up", "-f", &spec], 0).await;
    let result = last_json(&out);
    if text.contains("\n  event_api: vpc_link") || text.contains("\n  event_api: public") {
        // Behind a load balancer, ready means its target group has a
        // healthy target per event-API task (the data plane registers the
        // tasks that pass their health check, as ECS does).
        let progress = String::from_utf8_lossy(&out.stdout);
        assert!(
            progress.contains("2/2 healthy in the target group"),
            "{progress}"
        );
    }
    let image = result["image"]
        .as_str()
        .expect("up names the image")
        .to_string();
    assert!(image.contains("@sha256:"), "deployed by digest: {image}");

    // `up` waited for the services: the data plane reports their tasks
    // healthy only when the containers answer /health.
    let status = stack.status();
    assert_eq!(tasks(&status, "event-api").len(), 2, "{}", counts(&status));
    assert_eq!(tasks(&status, "runner").len(), 4, "{}", counts(&status));
    for task in tasks(&status, "") {
        assert_eq!(
            task["image"],
            image.as_str(),
            "tasks run the pushed image by digest"
        );
    }
    stack
        .wait_for("the executor host boots", |s| {
            (instances(s, "ok") == 1 && executors(s).len() == 1)
                .then_some(())
                .ok_or_else(|| counts(s))
        })
        .await;
    let status = stack.status();
    assert_eq!(executors(&status)[0]["image"], image.as_str());
    // The canary's step ran on that host, launched from the group's
    // launch template version (as Auto Scaling reports it).
    assert_eq!(
        result["executor"]["instance_id"],
        executors(&status)[0]["instance"],
        "{result}"
    );
    assert_eq!(
        result["executor"]["launch_template_version"], "1",
        "{result}"
    );

    // `up` said so only after its canary's run completed, sent from a
    // one-off task inside the VPC through the event API's Cloud Map name.
    assert_eq!(result["verified"], true, "{result}");
    assert!(
        result["canary"]["run_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{result}"
    );
    phase(start, "executor host booted, canary verified");
    let api = Arc::new(Api::new(&stack).await);
    (stack, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_stack_runs_scales_rolls_and_goes_down_on_the_emulator() {
    let start = Instant::now();
    // Every trace goes to X-Ray through the collectors.
    let (stack, api) = ready_stack_with(start, false, |_, spec| {
        let commented = "# observability:\n#   traces: xray\n#   sample: 0.05\n";
        assert!(
            spec.contains(commented),
            "the example's observability section"
        );
        spec.replacen(
            commented,
            "observability:\n  traces: xray\n  sample: 1.0\n",
            1,
        )
    })
    .await;
    let spec = stack.spec().display().to_string();
    let deployed_ms = now_ms();

    // Events through SQS, the runner, Redis and an executor.
    let mut events = Vec::new();
    for n in 0..5 {
        events.push(api.send(n, true).await.expect("acknowledged"));
    }
    let runs = api.all_completed(&events, true).await;
    one_trace_per_event(&stack, &runs[0]).await;
    phase(start, "an event's trace seen through the collectors");
    let out = stack.run(&["status", "-f", &spec], 0).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("event-api") && text.contains("runner"),
        "{text}"
    );

    // The group's Redis applies the stack's parameter group: a full Redis
    // refuses writes rather than evict run records, claims or leases.
    let redis = stack.status()["redis"].clone();
    assert_eq!(redis[0]["parameter_group"], "reference-redis", "{redis}");
    assert_eq!(redis[0]["maxmemory_policy"], "noeviction", "{redis}");

    phase(start, "5 events completed, status ok");
    runs_from_inside_the_vpc(&stack, &api, &spec, start).await;
    // `bench` with no address: the Cloud Map name does not resolve here,
    // so the load comes from an agent task inside the VPC.
    let report = bench_in_the_vpc(&stack, &spec, &["-r", "20", "-d", "4s"], 1, 80).await;
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .contains("event-api.reference.internal"),
        "{report}"
    );

    phase(start, "bench through an agent in the VPC");
    // Scaling: ECS tasks and Auto Scaling instances, each host through its boot script.
    stack.run(&["scale", "-f", &spec, "runner", "6"], 0).await;
    stack
        .run(&["scale", "-f", &spec, "executors", "3"], 0)
        .await;
    stack
        .wait_for("6 runners and 3 booted executor hosts", |s| {
            (tasks(s, "runner").len() == 6 && instances(s, "ok") == 3 && executors(s).len() == 3)
                .then_some(())
                .ok_or_else(|| counts(s))
        })
        .await;

    phase(start, "scaled");
    // A changed runner cpu rolls the runner tasks while events keep coming.
    let text = std::fs::read_to_string(stack.spec()).unwrap();
    let at = text.find("  runner:").unwrap();
    let cpu = at + text[at..].find("cpu: 512").unwrap();
    let changed = format!(
        "{}cpu: 1024{}",
        &text[..cpu],
        &text[cpu + "cpu: 512".len()..]
    )
    .replacen(
        "memory: 1024\n    port: 8289",
        "memory: 2048\n    port: 8289",
        1,
    );
    std::fs::write(stack.spec(), changed).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_at_rate(Arc::clone(&api), 5, Arc::clone(&stop));
    stack.run(&["up", "-f", &spec], 0).await;
    stop.store(true, Ordering::Relaxed);
    let acked = sender.await.unwrap();
    assert!(
        acked.len() >= 5,
        "events were acknowledged during the roll: {}",
        acked.len()
    );
    let status = stack.status();
    let runners = tasks(&status, "runner");
    assert!(
        runners
            .iter()
            .all(|t| t["task_definition"].as_str().unwrap().ends_with(":2")),
        "every runner runs the new task definition: {runners:?}"
    );
    api.all_completed(&acked, false).await;

    phase(start, "events sent during the roll completed");
    // A changed function file: `plan` names the function, `up` rolls the
    // services, and the next event runs the new version.
    std::fs::write(
        stack.dir.path().join("functions/emulated-check.yaml"),
        check_function("  - id: v2\n    after: [call]\n    sleep: 10ms\n"),
    )
    .unwrap();
    let out = stack
        .run(&["plan", "-f", &spec, "--detailed-exitcode"], 2)
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("functions.emulated-check") && !text.contains("functions.hello"),
        "{text}"
    );
    let out = stack.run(&["--output", "json", "up", "-f", &spec], 0).await;
    let result = last_json(&out);
    assert_eq!(result["verified"], true, "{result}");
    let event = api.send(7, false).await.expect("acknowledged");
    let run = api.completed_run(&event).await;
    let steps = BTreeSet::from_iter(strings(run["steps"].as_array().unwrap(), "step_id"));
    assert_eq!(steps, BTreeSet::from(["call", "box", "v2"]), "{run}");
    // Nothing changed: no AWS write (and so no canary task).
    let out = stack.run(&["--output", "json", "up", "-f", &spec], 0).await;
    let result = last_json(&out);
    assert_eq!(result["aws_calls"]["writes"], 0, "{result}");
    assert_eq!(result["verified"], false, "{result}");

    phase(start, "a changed function rolled out");
    // The runner's output is in CloudWatch Logs.
    let out = stack
        .run(&["logs", "-f", &spec, "runner", "--since", "1h"], 0)
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("runner started"), "{text}");
    // A task of cpu 512 runs one worker thread (TOKIO_WORKER_THREADS).
    assert!(text.contains(r#""worker_threads":1"#), "{text}");

    phase(start, "logs shown");
    // Four runners ticked every second: each minute started one run.
    let ticks = cron_ran_once_per_tick(&api, deployed_ms).await;
    assert!(ticks >= 2, "the test saw {ticks} cron ticks");

    phase(start, "cron ran once per tick");
    // down leaves no container and nothing of the stack (ElastiCache included).
    let out = stack
        .run(&["--output", "json", "down", "-f", &spec, "--yes"], 0)
        .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    phase(start, "down done");
    // The data plane stops a group's redis-server in the round that sees
    // the group deleted, which may come after the one that saw the last
    // container go.
    stack
        .wait_for("every container and redis-server is gone", move |s| {
            let redis = s["redis"].as_array().unwrap().len();
            let left = s["containers"].as_array().unwrap().len()
                + s["instances"].as_array().unwrap().len()
                + redis;
            (left == 0)
                .then_some(())
                .ok_or_else(|| format!("{left} left: {}, redis {redis}; down: {text}", counts(s)))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_one_off_tasks_and_a_broken_boot_on_the_emulator() {
    let start = Instant::now();
    // A step job leased by a killed executor comes back when its SQS
    // visibility timeout ends: 5 minutes in the example spec, 30 s here.
    // This stack ships the engine inside the running stackctl, as an
    // installed stackctl outside any workspace does.
    // The event API is `public` over HTTPS with an ACM certificate for
    // DOMAIN: the canary reaches it through the load balancer's TLS
    // listener inside the VPC, which publishes only the event paths. The
    // state is in MemoryDB: a Redis Cluster over TLS that the engine joins
    // as its own user.
    let (stack, api) = ready_stack_with(start, true, |stack, spec| {
        let certificate = harness::TestCertificate::issue(stack.dir.path(), DOMAIN).unwrap();
        let arn = stack.emu.moto().import_certificate(&certificate).unwrap();
        on_memorydb(spec)
            .replacen("visibility_timeout: 5m", "visibility_timeout: 30s", 1)
            .replacen(
                "event_api: internal_dns",
                &format!(
                    "event_api: public\n  https:\n    certificate_arn: {arn}\n    domain: {DOMAIN}"
                ),
                1,
            )
    })
    .await;
    let spec = stack.spec().display().to_string();
    through_the_load_balancer(&stack).await;
    let status = stack.status();
    let memorydb = &status["memorydb"][0];
    assert_eq!(memorydb["name"], "reference-redis", "{status}");
    assert_eq!(memorydb["tls"], true, "{memorydb}");
    assert_eq!(memorydb["users"], json!(["reference-engine"]), "{memorydb}");
    assert_eq!(status["redis"], json!([]), "no ElastiCache: {status}");
    let out = stack
        .run(&["--output", "json", "status", "-f", &spec], 0)
        .await;
    let redis = &last_doc(&out)["redis"];
    assert_eq!(redis["service"], "memorydb", "{redis}");
    assert_eq!(redis["status"], "available", "{redis}");

    // kill -9 of a runner and of the executor while events arrive.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_at_rate(Arc::clone(&api), 5, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = stack.status();
    let runner = tasks(&status, "runner")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let executor = executors(&status)[0]["id"].as_str().unwrap().to_string();
    for container in [&runner, &executor] {
        let me = Arc::clone(&stack);
        let container = container.clone();
        tokio::task::spawn_blocking(move || me.emu.kill_container(&container))
            .await
            .unwrap()
            .expect("kill -9");
    }
    stack
        .wait_for("a new runner task and the executor back", move |s| {
            let runners = tasks(s, "runner");
            (runners.len() == 4
                && runners.iter().all(|t| t["id"] != runner.as_str())
                && executors(s).len() == 1)
                .then_some(())
                .ok_or_else(|| counts(s))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = sender.await.unwrap();
    assert!(acked.len() >= 10, "{}", acked.len());
    phase(start, "replaced");
    api.all_completed(&acked, false).await;
    phase(start, "events sent during the kills completed");
    assert!(stack.status()["replaced"]["reference-runner"].as_u64() >= Some(1));

    // A one-off task (RunTask) runs once: its exit code comes back through
    // DescribeTasks and its output through CloudWatch Logs.
    let me = Arc::clone(&stack);
    let (code, lines) = tokio::task::spawn_blocking(move || one_off_version(&me.emu))
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines}");
    assert!(lines.contains("stackctl-engine "), "{lines}");
    phase(start, "one-off task reported");

    // A boot script that cannot read its SSM parameter: the host never
    // runs an executor, and the data plane reports the failed boot.
    let me = Arc::clone(&stack);
    tokio::task::spawn_blocking(move || {
        aws(
            &me.emu,
            &[
                "ssm",
                "delete-parameter",
                "--name",
                "/stackctl/reference/redis-auth-token",
            ],
        )
    })
    .await
    .unwrap();
    stack
        .run(&["scale", "-f", &spec, "executors", "2"], 0)
        .await;
    stack
        .wait_for("the second host's boot fails", |s| {
            (instances(s, "failed") == 1)
                .then_some(())
                .ok_or_else(|| counts(s))
        })
        .await;
    phase(start, "broken boot seen");
    let status = stack.status();
    assert_eq!(executors(&status).len(), 1, "{}", counts(&status));
    let failed = find_by(status["instances"].as_array().unwrap(), "boot", "failed");
    let log = std::fs::read_to_string(failed["boot_log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("cannot read SSM parameter /stackctl/reference/redis-auth-token"),
        "{log}"
    );

    stack.run(&["down", "-f", &spec, "--yes"], 0).await;
}

/// The domain of the HTTPS event API of the crash test's stack.
const DOMAIN: &str = "events.example.test";

/// The run's trace, as the collectors of the event-API task, the runner task
/// and the executor host passed it on: ingest -> run -> each step's attempt
/// -> its HTTP call or container, each span from its role's service.
async fn one_trace_per_event(stack: &Arc<Stack>, run: &Value) {
    let trace_id = run["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the runs API gives the trace id: {run}"))
        .to_string();
    let me = Arc::clone(stack);
    let spans = tokio::task::spawn_blocking(move || {
        me.traces
            .wait_for_trace(&trace_id, 6, CONVERGE)
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap();
    let one = |what: &str, service: &str, pick: &dyn Fn(&ReceivedSpan) -> bool| {
        let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| pick(s)).collect();
        assert_eq!(found.len(), 1, "one {what} span: {spans:#?}");
        assert_eq!(found[0].service, service, "{what}: {:?}", found[0]);
        found[0].clone()
    };
    let ingest = one("ingest", "reference-event-api", &|s| {
        s.name == "POST /e/{event_key}"
    });
    assert_eq!(ingest.parent_span_id, "", "the event's request is the root");
    let run_span = one("run", "reference-runner", &|s| s.name == "run");
    assert_eq!(
        run_span.parent_span_id, ingest.span_id,
        "the run under its event"
    );
    assert_eq!(run_span.attr("run_id"), run["id"].as_str());
    for (step, call) in [("call", "POST"), ("box", "docker run")] {
        let attempt = one(step, "reference-executor", &|s| {
            s.name == "step attempt" && s.attr("step_id") == Some(step)
        });
        assert_eq!(
            attempt.parent_span_id, run_span.span_id,
            "{step} under the run"
        );
        let driver = one(call, "reference-executor", &|s| s.name == call);
        assert_eq!(
            driver.parent_span_id, attempt.span_id,
            "{call} under {step}"
        );
    }
}

/// From this machine to the load balancer's HTTPS listener, trusting the
/// certificate's CA: events are accepted, the runs API and metrics are not
/// published.
async fn through_the_load_balancer(stack: &Stack) {
    let status = stack.status();
    let listener = status["load_balancers"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["protocol"] == "HTTPS"))
        .unwrap_or_else(|| panic!("an HTTPS listener in {status}"));
    let address: std::net::SocketAddr = format!(
        "{}:{}",
        listener["address"].as_str().unwrap(),
        listener["port"]
    )
    .parse()
    .unwrap();
    let ca = std::fs::read(stack.dir.path().join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve(DOMAIN, address)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("https://{DOMAIN}");
    let sent = http
        .post(format!("{base}/e/{EVENT_KEY}"))
        .json(&json!({"name": "probe/through-lb", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200, "{:?}", sent.text().await);
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    for path in ["/v1/runs", "/metrics"] {
        let hidden = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(hidden.status(), 404, "{path} is not published");
        let body = hidden.text().await.unwrap();
        assert!(body.contains("not published"), "{path}: {body}");
    }
}

/// The AWS CLI on the emulator's moto; its JSON answer (null when it printed none).
fn aws(emu: &AwsEmulator, args: &[&str]) -> Value {
    let out = emu
        .aws_cli()
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Runs the runner's task definition once with the command `--version`
/// (RunTask, through the AWS CLI as any client would); its container's exit
/// code once the task stopped, and its log lines.
fn one_off_version(emu: &AwsEmulator) -> (i64, String) {
    let aws = |args: &[&str]| aws(emu, args);
    let overrides = json!({"containerOverrides": [{"name": "runner", "command": ["--version"]}]});
    let subnet = aws(&["ec2", "describe-subnets"])["Subnets"][0]["SubnetId"].clone();
    let group = aws(&[
        "ec2",
        "describe-security-groups",
        "--filters",
        "Name=group-name,Values=reference-runner",
    ])["SecurityGroups"][0]["GroupId"]
        .clone();
    let network = json!({"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}});
    let run = aws(&[
        "ecs",
        "run-task",
        "--cluster",
        "reference",
        "--task-definition",
        "reference-runner",
        "--launch-type",
        "FARGATE",
        "--overrides",
        &overrides.to_string(),
        "--network-configuration",
        &network.to_string(),
    ]);
    let arn = run["tasks"][0]["taskArn"]
        .as_str()
        .expect("a task")
        .to_string();
    let deadline = Instant::now() + CONVERGE;
    let task = loop {
        let task = aws(&[
            "ecs",
            "describe-tasks",
            "--cluster",
            "reference",
            "--tasks",
            &arn,
        ])["tasks"][0]
            .clone();
        if task["lastStatus"] == "STOPPED" {
            break task;
        }
        assert!(
            Instant::now() < deadline,
            "the one-off task never stopped: {task}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(task["stopCode"], "EssentialContainerExited", "{task}");
    let id = arn.rsplit('/').next().unwrap();
    let events = aws(&[
        "logs",
        "filter-log-events",
        "--log-group-name",
        "/stackctl/reference/runner",
        "--log-stream-name-prefix",
        &format!("runner/runner/{id}"),
    ]);
    let lines = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    (
        task["containers"][0]["exitCode"].as_i64().unwrap_or(-1),
        lines,
    )
}

/// `bench --output json` with no address (the load comes from agent tasks
/// inside the VPC) and `more` arguments; its report, checked to come from
/// `agents` agents with `requests` requests, each answered 200.
async fn bench_in_the_vpc(
    stack: &Arc<Stack>,
    spec: &str,
    more: &[&str],
    agents: u64,
    requests: u64,
) -> Value {
    let args = [&["--output", "json", "bench", "-f", spec][..], more].concat();
    let report = last_doc(&stack.run(&args, 0).await);
    assert_eq!(report["agents"], agents, "{report}");
    assert_eq!(report["http_reqs"]["count"], requests, "{report}");
    assert_eq!(report["status_codes"]["200"], requests, "{report}");
    report
}

/// `up --verify` on a stack with a broken stage: exit 1, naming the stage
/// and showing the end of the log of the service at fault.
async fn up_fails_at(stack: &Arc<Stack>, spec: &str, stage: &str, service: &str) {
    let out = stack.run(&["up", "-f", spec, "--verify"], 1).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(stage) && err.contains(&format!("the end of the {service} log")),
        "{err}"
    );
}

/// Sets an ECS service's desired count to 0 behind `up`'s back (it is
/// auto-scaled, so `up` leaves the count alone) and waits until no task runs.
async fn stop_service(stack: &Arc<Stack>, service: &'static str) {
    aws(
        &stack.emu,
        &[
            "ecs",
            "update-service",
            "--cluster",
            "reference",
            "--service",
            &format!("reference-{service}"),
            "--desired-count",
            "0",
        ],
    );
    stack
        .wait_for(&format!("no {service} task"), move |s| {
            tasks(s, service)
                .is_empty()
                .then_some(())
                .ok_or_else(|| counts(s))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_names_the_stage_that_fails_its_canary_on_the_emulator() {
    let start = Instant::now();
    // A short canary timeout: each broken stage below waits it out. The
    // event API sits behind a VPC link's network load balancer, which the
    // canary reaches by its DNS name inside the VPC.
    let (stack, _api) = ready_stack_with(start, false, |_, s| {
        s.replace("canary: 2m", "canary: 30s")
            .replace("event_api: internal_dns", "event_api: vpc_link")
    })
    .await;
    let spec = stack.spec().display().to_string();

    // `bench` with no address: the stage's invoke URL does not resolve
    // here, so the load comes from an agent inside the VPC.
    bench_in_the_vpc(&stack, &spec, &["-r", "20", "-d", "2s"], 1, 40).await;
    phase(start, "bench with no address");
    // Two load agents inside the VPC, through the network load balancer;
    // one summary of both.
    let more = ["--agents", "2", "-r", "40", "-d", "4s"];
    let report = bench_in_the_vpc(&stack, &spec, &more, 2, 160).await;
    assert_eq!(report["http_req_duration"]["count"], 160, "{report}");
    phase(start, "bench from two agents");
    // `status` shows the load balancer's view of the event API.
    let out = stack
        .run(&["--output", "json", "status", "-f", &spec], 0)
        .await;
    let status = last_doc(&out);
    assert_eq!(
        status["services"]["event-api"]["targets"]["healthy"], 2,
        "{status}"
    );
    assert_eq!(status["ready"], true, "{status}");

    // A changed executor setting is a new launch template version, which no
    // running host picks up by itself: `up` replaces the host (an instance
    // refresh, new host first) and its canary's step runs on the new one.
    let old_host = executors(&stack.status())[0]["instance"]
        .as_str()
        .unwrap()
        .to_string();
    // The canary waits for the new host to boot (its full timeout: not a
    // deployed setting, so changing it changes nothing in AWS).
    let text = std::fs::read_to_string(stack.spec()).unwrap();
    std::fs::write(
        stack.spec(),
        text.replacen("  concurrency: 16\n", "  concurrency: 8\n", 1)
            .replace("canary: 30s", "canary: 2m"),
    )
    .unwrap();
    let out = stack.run(&["--output", "json", "up", "-f", &spec], 0).await;
    let result = last_json(&out);
    assert!(result["refresh"]["id"].is_string(), "{result}");
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(
        result["executor"]["launch_template_version"], "2",
        "{result}"
    );
    let new_host = result["executor"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_host, old_host, "{result}");
    stack
        .wait_for("only the new host runs an executor", move |s| {
            let hosts: Vec<&str> = executors(s)
                .iter()
                .filter_map(|c| c["instance"].as_str())
                .collect();
            (hosts == [new_host.as_str()])
                .then_some(())
                .ok_or_else(|| counts(s))
        })
        .await;
    let text = std::fs::read_to_string(stack.spec()).unwrap();
    std::fs::write(stack.spec(), text.replace("canary: 2m", "canary: 30s")).unwrap();
    phase(start, "executor host replaced");

    // A hung executor: the run is created, its step never runs.
    let executor = executors(&stack.status())[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    stack.emu.pause_container(&executor).unwrap();
    up_fails_at(
        &stack,
        &spec,
        "the canary run's step never completed",
        "executors",
    )
    .await;
    stack.emu.unpause_container(&executor).unwrap();
    phase(start, "hung executor named");

    // No runner: the event is accepted, no run is created.
    stop_service(&stack, "runner").await;
    up_fails_at(
        &stack,
        &spec,
        "no run was created for the canary event",
        "runner",
    )
    .await;
    phase(start, "missing runner named");

    // No event API: nothing accepts the event.
    stop_service(&stack, "event-api").await;
    up_fails_at(
        &stack,
        &spec,
        "the event API did not accept the canary event",
        "event-api",
    )
    .await;
    phase(start, "missing event API named");
}

/// `stackctl runs --output json ARGS` on the stack; its result.
async fn runs_json(stack: &Arc<Stack>, args: &[&str]) -> Value {
    let args = [&["--output", "json", "runs"][..], args].concat();
    last_json(&stack.run(&args, 0).await)
}

/// `stackctl runs list|show|replay` on a stack that publishes no runs API:
/// each request is answered by a one-off runner task inside the VPC and read
/// back from its log. A run is listed and shown, and its replay from the
/// start completes.
async fn runs_from_inside_the_vpc(stack: &Arc<Stack>, api: &Api, spec: &str, start: Instant) {
    // Event data far larger than one printed piece of the task's answer
    // (2 KiB): the answers come back from the log in several lines.
    let pad = "x".repeat(6000);
    let sent: Value = api
        .http
        .post(format!("{}/e/{EVENT_KEY}", api.base))
        .json(&json!({"name": FUNCTION_EVENT, "data": {"n": 1, "boxed": false, "pad": pad}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = sent["ids"][0].as_str().expect("acknowledged").to_string();
    let run = api.completed_run(&event).await;
    let id = run["id"].as_str().unwrap().to_string();
    phase(start, "an event's run completed");

    let list = runs_json(stack, &["list", spec, "--function", "emulated-check"]).await;
    assert_eq!(list["via"]["kind"], "task", "{list}");
    let listed = find_by(list["runs"].as_array().unwrap(), "id", &id);
    assert_eq!(listed["status"], "completed", "{list}");
    phase(start, "runs list");

    let shown = runs_json(stack, &["show", spec, &id]).await;
    assert_eq!(shown["run"]["status"], "completed", "{shown}");
    assert_eq!(shown["event"]["data"]["pad"], pad.as_str(), "{shown}");
    let steps = shown["steps"].as_array().unwrap();
    assert_eq!(
        find_by(steps, "step_id", "call")["status"],
        "completed",
        "{shown}"
    );
    assert_eq!(
        find_by(steps, "step_id", "box")["status"],
        "skipped",
        "{shown}"
    );
    // The API's refusal comes back through the task too: exit 1, its message.
    let out = stack.run(&["runs", "show", spec, "01NOSUCHRUN"], 1).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no run `01NOSUCHRUN`"), "{err}");
    phase(start, "runs show");

    // A replay sends step jobs from the runner's task, whose role may.
    let replay = runs_json(stack, &["replay", spec, &id, "--from", "start"]).await;
    assert_eq!(replay["replay_of"], id.as_str(), "{replay}");
    let new_id = replay["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id, "{replay}");
    let deadline = Instant::now() + CONVERGE;
    while api.run(&new_id).await["status"] != "completed" {
        assert!(
            Instant::now() < deadline,
            "the replay never completed: {}",
            api.run(&new_id).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let shown = runs_json(stack, &["show", spec, &new_id]).await;
    assert_eq!(shown["run"]["status"], "completed", "{shown}");
    let steps = shown["steps"].as_array().unwrap();
    assert_eq!(
        find_by(steps, "step_id", "call")["status"],
        "completed",
        "{shown}"
    );
    assert!(steps.iter().all(|s| s["copied"] == false), "{shown}");
    phase(start, "runs replay --from start completed");
}
