//! What the CLI tests share: the repository root, the stackctl command as a
//! test runs it (on moto too), checks and readers of its output, the moto
//! and registry servers, the SDK clients a test checks AWS with, a
//! loopback HTTP server, and for local stacks: a temp dir with their spec,
//! a check of a stackctl run that shows their logs, the pids and logs their
//! directory records, waits on those processes, and a guard that takes a
//! stack down.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::TaskDefinition;
use harness::{Moto, Registry};
use serde_json::Value;
use stacks::aws::{self, ApplyOptions, Aws, AwsPlan, Inputs};
use stacks::graph::Graph;
use stacks::spec::Spec;

/// The workspace root (examples/, tests/specs/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ lives in the workspace")
        .to_path_buf()
}

/// The stackctl binary under test, as a test runs it: no stack named by
/// the caller's environment (`STACKCTL_STACK`), no terminal to prompt on.
pub fn stackctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackctl"));
    cmd.env_remove("STACKCTL_STACK").stdin(Stdio::null());
    cmd
}

/// [`stackctl`] with `moto`'s AWS environment (endpoint, region,
/// credentials) in place of the caller's.
pub fn stackctl_on(moto: &Moto) -> Command {
    let mut cmd = stackctl();
    moto.configure_command(&mut cmd);
    cmd
}

/// [`stackctl_on`] for a spec that builds its engine image: `up` ships
/// `engine` and pushes to `registry`, standing in for ECR (moto's ECR has
/// no registry protocol).
pub fn stackctl_shipping(moto: &Moto, registry: &Registry, engine: impl AsRef<OsStr>) -> Command {
    let mut cmd = stackctl_on(moto);
    cmd.env("STACKCTL_ENGINE_BINARY", engine)
        .env("STACKCTL_REGISTRY_ENDPOINT", registry.url());
    cmd
}

/// Asserts that the command exited with `code`; the message shows its
/// stdout and stderr.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each non-empty line of stdout as JSON (`--output json` of the streaming
/// commands).
pub fn ndjson(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The string `field` of each of `items`.
pub fn strings<'a>(items: &'a [Value], field: &str) -> Vec<&'a str> {
    items
        .iter()
        .map(|item| {
            item[field]
                .as_str()
                .unwrap_or_else(|| panic!("no string {field}: {item}"))
        })
        .collect()
}

/// The first of `items` whose `field` is `value`.
pub fn find_by<'a>(items: &'a [Value], field: &str, value: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item[field] == value)
        .unwrap_or_else(|| panic!("none with {field} {value}: {items:?}"))
}

/// Milliseconds since the Unix epoch, now (CloudWatch and run timestamps).
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The last JSON document of stdout, pretty-printed or not.
pub fn last_doc(out: &Output) -> Value {
    serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .last()
        .expect("a JSON document on stdout")
        .expect("stdout is JSON")
}

/// `spec` (the text of examples/aws.yaml or a variant) with its `state.redis`
/// section (ElastiCache) replaced by a MemoryDB one.
pub fn on_memorydb(spec: &str) -> String {
    let redis = spec
        .find("  redis:\n")
        .and_then(|at| spec[at..].find("\n\n").map(|end| at..at + end))
        .expect("the example's state.redis section");
    let mut spec = spec.to_owned();
    spec.replace_range(
        redis,
        "  memorydb:\n    node_type: db.t4g.small\n    replicas: 1",
    );
    spec
}

/// A moto with its default behaviour, started off the async runtime.
pub async fn moto() -> Moto {
    tokio::task::spawn_blocking(|| {
        Moto::start().expect("moto_server starts (run scripts/test to install it)")
    })
    .await
    .expect("moto starts")
}

/// A moto whose ECS services report at least every service's desired count
/// running (`up` waits for them), started off the async runtime.
pub async fn moto_for_up() -> Moto {
    tokio::task::spawn_blocking(|| {
        Moto::builder()
            .ecs_service_running(8)
            .start()
            .expect("moto_server starts (run scripts/test to install it)")
    })
    .await
    .expect("moto starts")
}

/// [`moto_for_up`] and a docker-registry for the engine image.
pub async fn moto_and_registry() -> (Moto, Registry) {
    let moto = moto_for_up().await;
    let registry =
        tokio::task::spawn_blocking(|| Registry::start().expect("docker-registry starts"))
            .await
            .expect("registry starts");
    (moto, registry)
}

/// The SDK clients a test checks AWS with, on `moto` with its credentials.
pub async fn aws_on(moto: &Moto) -> Aws {
    Aws::with_endpoint(
        &moto.endpoint(),
        harness::REGION,
        harness::ACCESS_KEY_ID,
        harness::SECRET_ACCESS_KEY,
    )
    .await
    .unwrap()
}

/// The library's plan of examples/aws.yaml (read with no variables set)
/// against the live state on `aws`, with the inputs `inputs` makes of the
/// spec; the spec too.
pub async fn plan_example(aws: &Aws, inputs: impl FnOnce(&Spec) -> Inputs) -> (Spec, AwsPlan) {
    let loaded = stacks::spec::load_with_env(repo_root().join("examples/aws.yaml"), &|_| None)
        .expect("examples/aws.yaml loads");
    let graph = Graph::build(&loaded).unwrap();
    let planned = aws::plan(aws, &graph, &inputs(&loaded.spec)).await.unwrap();
    (loaded.spec, planned)
}

/// Deploys examples/aws.yaml through the library (no `stackctl` process),
/// with the image its spec names.
pub async fn apply_example(aws: &Aws) {
    let (_, planned) = plan_example(aws, |spec| Inputs::from_spec(spec, None)).await;
    aws::apply(
        aws,
        &planned,
        &ApplyOptions::default(),
        &stacks::local::Silent,
    )
    .await
    .unwrap_or_else(|e| panic!("apply failed: {e}"));
}

/// The latest revision of the ECS task definition `family`.
pub async fn task_definition(aws: &Aws, family: &str) -> TaskDefinition {
    aws.ecs()
        .describe_task_definition()
        .task_definition(family)
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap()
}

/// Every revision of every ECS task definition family, sorted.
pub async fn task_definition_arns(aws: &Aws) -> Vec<String> {
    let mut arns = aws
        .ecs()
        .list_task_definitions()
        .send()
        .await
        .unwrap()
        .task_definition_arns
        .unwrap_or_default();
    arns.sort();
    arns
}

/// The URL of the SQS queue `name`.
pub async fn queue_url(aws: &Aws, name: &str) -> String {
    aws.sqs()
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Serves `app` on a free loopback port for the rest of the test; its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A new temp dir holding a local stack's spec, `stack.yaml`: what `spec`
/// makes of a free port for the event API. The dir and that port.
pub fn local_stack_dir(spec: impl FnOnce(u16) -> String) -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = harness::free_port().expect("free port");
    std::fs::write(dir.path().join("stack.yaml"), spec(port)).expect("write spec");
    (dir, port)
}

/// Asserts that `stackctl ARGS` succeeded (`out` its output); the message
/// shows its stdout and stderr and, to tell why, `logs` (the tails of the
/// stack's process logs).
#[track_caller]
pub fn assert_stackctl_ok(out: &Output, args: &[&str], logs: impl FnOnce() -> String) {
    assert!(
        out.status.success(),
        "stackctl {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}\nlogs:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
}

/// The roles of a local stack's processes.
pub const LOCAL_ROLES: [&str; 3] = ["event-api", "runner", "executor"];

/// The pids that local stack `stack`, run from `dir`, records for its
/// processes of `role` (in `<dir>/.stackctl/<stack>/state.json`); `None`
/// when there is no state file to read.
pub fn local_pids(dir: &Path, stack: &str, role: &str) -> Option<Vec<u32>> {
    let text =
        std::fs::read_to_string(dir.join(".stackctl").join(stack).join("state.json")).ok()?;
    let state: Value = serde_json::from_str(&text).expect("state.json is JSON");
    Some(
        state["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter(|p| p["role"] == role)
            .map(|p| u32::try_from(p["pid"].as_u64().expect("pid")).expect("pid fits"))
            .collect(),
    )
}

/// The last `lines` lines of each process log of local stack `stack`, run
/// from `dir` (under `<dir>/.stackctl/<stack>/logs`), each after a
/// `== PATH` line; empty when there are no logs. For failure messages.
pub fn local_logs(dir: &Path, stack: &str, lines: usize) -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(dir.join(".stackctl").join(stack).join("logs")) {
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out.push_str(&format!("== {}\n", e.path().display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Whether `pid` is a live (not zombie) process.
pub fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// Waits up to `within` for all of `pids` to exit; those still running at
/// the deadline (empty when all exited).
pub fn wait_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| running(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes a local stack down when dropped: runs its `down` command, then
/// kills (`kill -9`) each process the stack recorded before that which is
/// still running.
pub struct LocalStackGuard {
    dir: PathBuf,
    stack: &'static str,
    down: Command,
}

impl LocalStackGuard {
    /// A guard for local stack `stack`, run from `dir`; `down` is the
    /// `stackctl down --yes` that takes it down.
    pub fn new(dir: &Path, stack: &'static str, down: Command) -> Self {
        Self {
            dir: dir.to_path_buf(),
            stack,
            down,
        }
    }
}

impl Drop for LocalStackGuard {
    fn drop(&mut self) {
        // Read before `down`, which clears the record: whatever it leaves
        // running (after a test that failed midway) is still killed, so no
        // engine process outlives the test.
        let pids: Vec<u32> = LOCAL_ROLES
            .iter()
            .flat_map(|r| local_pids(&self.dir, self.stack, r).unwrap_or_default())
            .collect();
        let _ = self.down.output();
        for pid in pids {
            if running(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}
