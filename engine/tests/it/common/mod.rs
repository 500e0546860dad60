//! Shared support for the engine's acceptance tests: a step server (a real
//! axum app on loopback that records every call), an in-process engine
//! stack (event API, runner and executor tasks, reached over real HTTP), and
//! engine processes (the built `stackctl-engine` binary) for crash tests,
//! each on either backend ([`TestBackend`]: one embedded database in a temp
//! dir, or SQS on a moto server with Redis state on a redis-server; the
//! [`on_every_backend!`] macro runs a test body on both). No mocks: every
//! piece is the real component on 127.0.0.1.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use engine::Shutdown;
use engine::backend::{self, Backends, Queue, Run, RunStatus, StateStore, StepOutcome, StepRecord};
use engine::config::{Config, QueuesConfig, Role};
use engine::functions::FunctionDef;
use engine::metrics::Metrics;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod sqs_client;
#[allow(unused_imports)]
pub use sqs_client::sqs_client_at;

/// How long a test waits for something that should happen quickly. Generous:
/// other builds share the machine's two cores.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// The event key the test stacks accept.
pub const EVENT_KEY: &str = "test-key";
/// The runs API token of the test stacks.
pub const API_TOKEN: &str = "test-token";

/// Polls `check` every few milliseconds until it gives `Some`, or panics
/// with `what` after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A function definition from JSON (panics on a bad test fixture).
pub fn function(def: Value) -> FunctionDef {
    let f: FunctionDef = serde_json::from_value(def).expect("test function parses");
    let problems = engine::functions::validate_function(&f);
    assert!(
        problems.is_empty(),
        "test function is invalid: {problems:?}"
    );
    f
}

/// The output of a completed step (panics on any other outcome).
pub fn output(outcome: &Option<StepOutcome>) -> &Value {
    match outcome {
        Some(StepOutcome::Completed { output }) => output,
        other => panic!("expected a completed step, got {other:?}"),
    }
}

/// The strings of a JSON array, such as the `ids` of an event API answer
/// (panics on anything else).
pub fn string_list(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a JSON array, not {list}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// Receives from `queue` until the messages hold `expected` events or
/// `timeout` has passed: the messages' bodies, in the order received.
pub async fn receive_bodies(queue: &dyn Queue, expected: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut events = 0;
    let deadline = Instant::now() + timeout;
    while events < expected && Instant::now() < deadline {
        let got = queue
            .receive(10, Duration::from_secs(60), Duration::from_secs(1))
            .await
            .expect("receive");
        for m in got {
            events += backend::decode_events(&m.body).expect("events").len();
            bodies.push(m.body);
        }
    }
    bodies
}

/// Runs `cmd` (`what` it is) to its end; panics with its stderr unless it
/// succeeded.
pub fn run_to_success(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- step server

/// One call the step server answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// From the posted run context.
    pub run_id: String,
    /// From the posted run context.
    pub step_id: String,
    /// From the posted run context.
    pub attempt: u64,
    /// The `steps` the executor posted (predecessor outputs).
    pub steps: Value,
    /// The route's tag (last path segment).
    pub tag: String,
    /// The status answered.
    pub status: u16,
    /// A number unique to this answer, included in 2xx bodies.
    pub nonce: u64,
    /// Whether the step already had a saved outcome when this call was
    /// answered (checked in the state store just before answering).
    pub after_saved: bool,
    /// When the handler started and finished.
    pub started: Instant,
    /// See `started`.
    pub ended: Instant,
}

#[derive(Default)]
struct StepState {
    calls: Mutex<Vec<Call>>,
    nonce: AtomicU64,
    /// (run, step) → calls so far, for `flaky` routes.
    seen: Mutex<HashMap<(String, String), u64>>,
    /// tag → (in flight now, most ever in flight).
    in_flight: Mutex<HashMap<String, (u32, u32)>>,
    /// tag → calls that arrived (answered or not).
    arrived: Mutex<HashMap<String, u32>>,
    store: Mutex<Option<Arc<dyn StateStore>>>,
}

/// A step service: `POST /ok/{tag}`, `/flaky/{fails}/{tag}` (500 for the
/// first `fails` calls of each (run, step), then 200), `/status/{code}/{tag}`
/// and `/slow/{ms}/{tag}`. A 2xx body is
/// `{"tag", "nonce", "attempt", "seen": <the steps it was given>}`.
pub struct StepServer {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    state: Arc<StepState>,
    task: JoinHandle<()>,
}

impl StepServer {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(StepState::default());
        let app = Router::new()
            .route("/ok/{tag}", post(ok))
            .route("/{kind}/{n}/{tag}", post(shaped))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind step server");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("step server");
        });
        Self {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Lets the server check, before each 2xx, whether the step already has
    /// a saved outcome (recorded as `Call::after_saved`).
    pub fn watch_outcomes(&self, store: Arc<dyn StateStore>) {
        *self.state.store.lock().unwrap() = Some(store);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Calls of one (run, step).
    pub fn calls_of(&self, run_id: &str, step_id: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.run_id == run_id && c.step_id == step_id)
            .collect()
    }

    /// Calls of routes tagged `tag` that arrived, answered or not (a caller
    /// that died mid-call never sees its answer).
    pub fn arrived(&self, tag: &str) -> u32 {
        self.state
            .arrived
            .lock()
            .unwrap()
            .get(tag)
            .copied()
            .unwrap_or(0)
    }

    /// Calls of routes tagged `tag` in flight now.
    pub fn in_flight_now(&self, tag: &str) -> u32 {
        self.state
            .in_flight
            .lock()
            .unwrap()
            .get(tag)
            .map(|v| v.0)
            .unwrap_or(0)
    }

    /// The most calls of routes tagged `tag` that were ever in flight at once.
    pub fn max_in_flight(&self, tag: &str) -> u32 {
        self.state
            .in_flight
            .lock()
            .unwrap()
            .get(tag)
            .map(|v| v.1)
            .unwrap_or(0)
    }
}

impl Drop for StepServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    st: &StepState,
    ctx: Value,
    tag: String,
    code: u16,
    delay: Duration,
) -> (StatusCode, Json<Value>) {
    let started = Instant::now();
    *st.arrived.lock().unwrap().entry(tag.clone()).or_default() += 1;
    {
        let mut f = st.in_flight.lock().unwrap();
        let e = f.entry(tag.clone()).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let run_id = ctx["run_id"].as_str().unwrap_or_default().to_string();
    let step_id = ctx["step_id"].as_str().unwrap_or_default().to_string();
    let store = st.store.lock().unwrap().clone();
    let after_saved = match (&store, (200..300).contains(&code)) {
        (Some(store), true) => store
            .steps(&run_id)
            .await
            .map(|records| {
                records
                    .iter()
                    .any(|r| r.step_id == step_id && r.outcome.is_some())
            })
            .unwrap_or(false),
        _ => false,
    };
    let nonce = st.nonce.fetch_add(1, Ordering::SeqCst) + 1;
    let body = if (200..300).contains(&code) {
        json!({"tag": tag, "nonce": nonce, "attempt": ctx["attempt"], "seen": ctx["steps"]})
    } else {
        json!({"error": format!("step server answers {code} for {tag}")})
    };
    st.in_flight.lock().unwrap().get_mut(&tag).expect("entry").0 -= 1;
    st.calls.lock().unwrap().push(Call {
        run_id,
        step_id,
        attempt: ctx["attempt"].as_u64().unwrap_or(0),
        steps: ctx["steps"].clone(),
        tag,
        status: code,
        nonce,
        after_saved,
        started,
        ended: Instant::now(),
    });
    (StatusCode::from_u16(code).unwrap(), Json(body))
}

async fn ok(
    State(st): State<Arc<StepState>>,
    UrlPath(tag): UrlPath<String>,
    Json(ctx): Json<Value>,
) -> (StatusCode, Json<Value>) {
    answer(&st, ctx, tag, 200, Duration::ZERO).await
}

/// `/flaky/{fails}/{tag}`, `/status/{code}/{tag}` and `/slow/{ms}/{tag}`.
async fn shaped(
    State(st): State<Arc<StepState>>,
    UrlPath((kind, n, tag)): UrlPath<(String, u64, String)>,
    Json(ctx): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let (code, delay) = match kind.as_str() {
        "flaky" => {
            let key = (
                ctx["run_id"].as_str().unwrap_or_default().to_string(),
                ctx["step_id"].as_str().unwrap_or_default().to_string(),
            );
            let calls = {
                let mut seen = st.seen.lock().unwrap();
                let calls = seen.entry(key).or_default();
                *calls += 1;
                *calls
            };
            (if calls <= n { 500 } else { 200 }, Duration::ZERO)
        }
        "status" => (u16::try_from(n).expect("a status code"), Duration::ZERO),
        "slow" => (200, Duration::from_millis(n)),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such route"})),
            );
        }
    };
    answer(&st, ctx, tag, code, delay).await
}

// ------------------------------------------------------------ in-process stack

/// Sends events to an event API and reads runs from the state store.
#[derive(Clone)]
pub struct Client {
    /// Event API base URL.
    pub url: String,
    /// The state store (the same database the engine uses).
    pub state: Arc<dyn StateStore>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the event API at `url` over `state`.
    pub fn new(url: String, state: Arc<dyn StateStore>) -> Self {
        Self {
            url,
            state,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs one event or an array to `/e/{key}`; asserts a 200 and returns the ids.
    pub async fn send(&self, events: Value) -> Vec<String> {
        let resp = self
            .http
            .post(format!("{}/e/{EVENT_KEY}", self.url))
            .json(&events)
            .send()
            .await
            .expect("send events");
        let status = resp.status();
        let body: Value = resp.json().await.expect("JSON answer");
        assert_eq!(status, 200, "event API answered {status}: {body}");
        string_list(&body["ids"])
    }

    /// Sends one event and returns its internal id.
    pub async fn send_one(&self, event: Value) -> String {
        let ids = self.send(event).await;
        assert_eq!(ids.len(), 1);
        ids.into_iter().next().unwrap()
    }

    /// Sends one event named `name` with `data` and returns its internal id.
    pub async fn send_event(&self, name: &str, data: Value) -> String {
        self.send_one(json!({"name": name, "data": data})).await
    }

    /// The run of the event with this internal id, once there is one.
    pub async fn run_of(&self, internal_id: &str) -> Option<Run> {
        let runs = self.state.runs_for_event(internal_id).await.ok()?;
        runs.into_iter().next()
    }

    /// Waits until the event with this internal id has exactly one run in
    /// a terminal status, and returns it.
    pub async fn finished_run(&self, internal_id: &str) -> Run {
        poll(
            &format!("a finished run for event {internal_id}"),
            DEADLINE,
            || async {
                let runs = self
                    .state
                    .runs_for_event(internal_id)
                    .await
                    .expect("runs_for_event");
                assert!(runs.len() <= 1, "one run per function per event: {runs:?}");
                runs.into_iter().find(|r| r.status.is_terminal())
            },
        )
        .await
    }

    /// Like [`Client::finished_run`], asserting that the run ended `status`.
    pub async fn finished_as(&self, internal_id: &str, status: RunStatus) -> Run {
        let run = self.finished_run(internal_id).await;
        assert_eq!(run.status, status, "{run:?}");
        run
    }

    /// A run's step records by step id.
    pub async fn steps(&self, run_id: &str) -> HashMap<String, StepRecord> {
        self.state
            .steps(run_id)
            .await
            .expect("steps")
            .into_iter()
            .map(|r| (r.step_id.clone(), r))
            .collect()
    }

    /// `GET` on the runs API with the token.
    pub async fn api_get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/v1{path}", self.url))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("runs API");
        assert!(
            resp.status().is_success(),
            "GET /v1{path}: {}",
            resp.status()
        );
        resp.json().await.expect("JSON")
    }
}

/// An engine in this process: the event API (real HTTP on loopback), a
/// runner and an executor as tasks, over one embedded database, SQS + Redis
/// (see [`TestBackend`]) or backends the test opened itself.
pub struct Stack {
    /// A temp dir, holding the embedded database if there is one.
    pub dir: tempfile::TempDir,
    /// The configuration the roles run with.
    pub config: Arc<Config>,
    /// The backends (shared by the roles and the test).
    pub backends: Backends,
    /// Talks to the event API.
    pub client: Client,
    /// The metrics every role of the stack updates (as in one
    /// `--role all` process), served on the event API's `/metrics`.
    pub metrics: Arc<Metrics>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
    /// moto and redis-server when the stack runs on SQS + Redis.
    _servers: Option<(harness::Moto, harness::RedisServer)>,
}

/// Which backends an acceptance test runs on. The end-to-end, wait, retry
/// and crash tests run on each (see [`on_every_backend!`]): the embedded
/// database, and SQS (a moto server) with Redis state (a `redis-server`),
/// each test with its own servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// One SQLite file in a temp dir.
    Embedded,
    /// SQS queues on moto, Redis state on redis-server (the AWS shape).
    SqsRedis,
}

/// Generates, for each named `async fn NAME(backend: TestBackend)` of the
/// test file, the tests `embedded::NAME` and `sqs_redis::NAME`, so the same
/// body runs on both backends in the normal suite (filter by module).
#[allow(unused_macros)] // not every test binary that includes this module uses it
macro_rules! on_every_backend {
    ($($test:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::common::TestBackend::Embedded).await
                }
            )+
        }
        mod sqs_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::common::TestBackend::SqsRedis).await
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_every_backend;

/// Backends on a fresh moto + redis-server pair, the queues created from
/// `config.queues` (which is switched to the SQS + Redis shape).
async fn sqs_redis_backends(
    config: &mut Config,
) -> (Backends, (harness::Moto, harness::RedisServer)) {
    let (moto, redis) = tokio::task::block_in_place(|| {
        (
            harness::Moto::start().expect("start moto"),
            harness::RedisServer::start().expect("start redis-server"),
        )
    });
    config.backend = sqs_redis_backend("test", &redis.url());
    let backends = open_sqs_redis(&moto.endpoint(), &redis.url(), "test", &config.queues).await;
    (backends, (moto, redis))
}

/// The SQS + Redis backend section: queues `{prefix}-events` and
/// `{prefix}-work` (created by the engine), state on `redis_url`.
pub fn sqs_redis_backend(prefix: &str, redis_url: &str) -> backend::BackendConfig {
    backend::BackendConfig::SqsRedis {
        events_queue: format!("{prefix}-events"),
        work_queue: format!("{prefix}-work"),
        redis_url: redis_url.into(),
        redis_cluster: false,
        create_queues: true,
    }
}

/// Opens backends on SQS at `sqs_endpoint` (queues `{prefix}-events` and
/// `{prefix}-work`, created with `queues`) and Redis state at `redis_url`.
pub async fn open_sqs_redis(
    sqs_endpoint: &str,
    redis_url: &str,
    prefix: &str,
    queues: &QueuesConfig,
) -> Backends {
    let state = Arc::new(
        backend::redis::RedisState::open(redis_url, false)
            .await
            .expect("open Redis"),
    );
    let (events, work) = backend::sqs::open_pair_with(
        sqs_client_at(sqs_endpoint),
        &format!("{prefix}-events"),
        &format!("{prefix}-work"),
        true,
        queues,
    )
    .await
    .expect("open SQS queues");
    Backends {
        events,
        work,
        state,
    }
}

/// A test configuration over `backend`: test key and token, short work
/// visibility.
pub fn test_config_on(backend: backend::BackendConfig) -> Config {
    let mut config = Config::new(backend);
    config.event_keys = vec![EVENT_KEY.to_string()];
    config.api_token = Some(API_TOKEN.to_string());
    config.queues.work.visibility_timeout = engine::functions::Duration::from_secs(5);
    config.queues.work.max_receives = 50;
    config
}

/// [`test_config_on`] the embedded database at `db`.
pub fn test_config(db: &Path) -> Config {
    test_config_on(backend::BackendConfig::Embedded {
        path: db.to_path_buf(),
    })
}

impl Stack {
    /// Registers `functions`, then starts the event API, a runner and an
    /// executor on the embedded backend.
    pub async fn start(functions: Vec<FunctionDef>) -> Self {
        Self::start_on(TestBackend::Embedded, functions).await
    }

    /// Like [`Stack::start`], on `backend`.
    pub async fn start_on(backend: TestBackend, functions: Vec<FunctionDef>) -> Self {
        Self::start_roles_on(backend, functions, &[Role::Runner, Role::Executor]).await
    }

    /// Like [`Stack::start`], with only these of the runner and executor.
    pub async fn start_roles(functions: Vec<FunctionDef>, roles: &[Role]) -> Self {
        Self::start_roles_on(TestBackend::Embedded, functions, roles).await
    }

    /// Like [`Stack::start_on`], with only these of the runner and executor.
    pub async fn start_roles_on(
        backend: TestBackend,
        functions: Vec<FunctionDef>,
        roles: &[Role],
    ) -> Self {
        Self::start_tuned(backend, functions, roles, |_| {}).await
    }

    /// Like [`Stack::start_roles_on`], with `tune` applied to the engine's
    /// configuration first.
    pub async fn start_tuned(
        backend: TestBackend,
        functions: Vec<FunctionDef>,
        roles: &[Role],
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&dir.path().join("engine.db"));
        tune(&mut config);
        let (backends, servers) = match backend {
            TestBackend::SqsRedis => {
                let (backends, servers) = sqs_redis_backends(&mut config).await;
                (backends, Some(servers))
            }
            TestBackend::Embedded => (
                backend::open(&config.backend, &config.queues)
                    .await
                    .expect("open backends"),
                None,
            ),
        };
        Self::assemble(dir, config, backends, servers, &functions, roles).await
    }

    /// Registers `functions` in `backends` the test opened itself, then
    /// starts the event API and `roles` with `config`.
    pub async fn start_over(
        config: Config,
        backends: Backends,
        functions: Vec<FunctionDef>,
        roles: &[Role],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::assemble(dir, config, backends, None, &functions, roles).await
    }

    async fn assemble(
        dir: tempfile::TempDir,
        config: Config,
        backends: Backends,
        servers: Option<(harness::Moto, harness::RedisServer)>,
        functions: &[FunctionDef],
        roles: &[Role],
    ) -> Self {
        let config = Arc::new(config);
        for f in functions {
            backends
                .state
                .put_function(f)
                .await
                .expect("register function");
        }
        let shutdown = Shutdown::new();
        let metrics = Arc::new(Metrics::new());
        let (url, api) = spawn_event_api(&config, &backends, &metrics, &shutdown).await;
        let client = Client::new(url, backends.state.clone());
        let mut stack = Self {
            dir,
            config,
            backends,
            client,
            metrics,
            shutdown,
            tasks: vec![api],
            _servers: servers,
        };
        for role in roles {
            stack.start_role(*role);
        }
        stack
    }

    /// Starts a runner or an executor task.
    pub fn start_role(&mut self, role: Role) {
        let (b, c, m, sd) = (
            self.backends.clone(),
            self.config.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        );
        let task = match role {
            Role::Runner => {
                tokio::spawn(async move { engine::runner::run(b, c, m, sd).await.expect("runner") })
            }
            Role::Executor => {
                tokio::spawn(
                    async move { engine::executor::run(b, c, m, sd).await.expect("executor") },
                )
            }
            other => panic!("start_role({other:?}) is not supported"),
        };
        self.tasks.push(task);
    }

    /// Stops every role and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            t.await.expect("role task");
        }
    }
}

// ------------------------------------------------------------ engine processes

/// A `stackctl-engine` child process with its log in a file; SIGKILLed on drop.
pub struct EngineProcess {
    child: Mutex<Child>,
    /// Its stderr (JSON log lines).
    pub log: PathBuf,
}

/// The backends of engine processes: the embedded database in a directory,
/// or SQS on a moto server (reached through `AWS_ENDPOINT_URL`, as on a
/// local stack) with Redis state on a redis-server (appendonly on).
pub struct ProcessBackend {
    /// Which of the two.
    pub kind: TestBackend,
    db: PathBuf,
    servers: Option<(harness::Moto, harness::RedisServer)>,
}

/// A fresh moto server and a redis-server with appendonly on (it keeps
/// its data over a restart).
pub fn moto_and_durable_redis() -> (harness::Moto, harness::RedisServer) {
    tokio::task::block_in_place(|| {
        (
            harness::Moto::start().expect("start moto"),
            harness::RedisServer::builder()
                .appendonly(true)
                .start()
                .expect("start redis-server"),
        )
    })
}

impl ProcessBackend {
    /// Starts what `kind` needs; the embedded database goes in `dir`.
    pub fn start(kind: TestBackend, dir: &Path) -> Self {
        let servers = match kind {
            TestBackend::Embedded => None,
            TestBackend::SqsRedis => Some(moto_and_durable_redis()),
        };
        Self {
            kind,
            db: dir.join("engine.db"),
            servers,
        }
    }

    /// The `backend` section of the processes' configuration.
    pub fn config(&self) -> Value {
        match &self.servers {
            None => json!({"kind": "embedded", "path": self.db}),
            Some((_, redis)) => json!({
                "kind": "sqs_redis",
                "events_queue": "crash-events",
                "work_queue": "crash-work",
                "redis_url": redis.url(),
                "create_queues": true
            }),
        }
    }

    /// A handle on the state the processes share.
    pub async fn state(&self) -> Arc<dyn StateStore> {
        match &self.servers {
            None => {
                backend::open(
                    &backend::BackendConfig::Embedded {
                        path: self.db.clone(),
                    },
                    &engine::config::QueuesConfig::default(),
                )
                .await
                .expect("open the database")
                .state
            }
            Some((_, redis)) => Arc::new(
                backend::redis::RedisState::open(&redis.url(), false)
                    .await
                    .expect("open Redis"),
            ),
        }
    }

    /// Points an engine process at these backends (moto's endpoint and
    /// credentials in its environment; nothing for the embedded database).
    pub fn configure(&self, cmd: &mut Command) {
        if let Some((moto, _)) = &self.servers {
            moto.configure_command(cmd);
        }
    }
}

/// Writes a JSON configuration for engine processes over `db`.
pub fn write_process_config(
    dir: &Path,
    db: &Path,
    functions: &[FunctionDef],
    work_visibility: &str,
) -> PathBuf {
    write_process_config_with(
        dir,
        json!({"kind": "embedded", "path": db}),
        functions,
        work_visibility,
    )
}

/// Writes a JSON configuration for engine processes with this `backend` section.
pub fn write_process_config_with(
    dir: &Path,
    backend: Value,
    functions: &[FunctionDef],
    work_visibility: &str,
) -> PathBuf {
    let config = json!({
        "backend": backend,
        "event_keys": [EVENT_KEY],
        "api_token": API_TOKEN,
        "event_api": {"bind": "127.0.0.1:0"},
        "queues": {
            "events": {"visibility_timeout": "5s", "max_receives": 50, "retention": "1d"},
            "work": {"visibility_timeout": work_visibility, "max_receives": 50, "retention": "1d"}
        },
        "functions": functions,
        "log_format": "json"
    });
    let path = dir.join("engine.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).expect("write config");
    path
}

impl EngineProcess {
    /// Starts the binary with `--role role --config config`.
    pub fn spawn(config: &Path, role: &str, log: PathBuf) -> Self {
        Self::spawn_with(config, role, log, |_| {})
    }

    /// Like [`EngineProcess::spawn`], pointed at `backend`'s servers.
    pub fn spawn_on(backend: &ProcessBackend, config: &Path, role: &str, log: PathBuf) -> Self {
        Self::spawn_with(config, role, log, |cmd| backend.configure(cmd))
    }

    /// Like [`EngineProcess::spawn`], pointed at `moto` (its endpoint and
    /// credentials in the environment).
    pub fn spawn_at(moto: &harness::Moto, config: &Path, role: &str, log: PathBuf) -> Self {
        Self::spawn_with(config, role, log, |cmd| {
            moto.configure_command(cmd);
        })
    }

    /// Like [`EngineProcess::spawn`], with `configure` applied to the
    /// command (its environment, say) before it starts.
    pub fn spawn_with(
        config: &Path,
        role: &str,
        log: PathBuf,
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackctl-engine"));
        cmd.args(["--role", role, "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn stackctl-engine");
        Self {
            child: Mutex::new(child),
            log,
        }
    }

    /// The address of the listener the process logged for `role`.
    pub async fn listening(&self, role: &str) -> SocketAddr {
        let log = self.log.clone();
        let role = role.to_string();
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let f = &v["fields"];
                if f["message"] == "listening" && f["role"] == role.as_str() {
                    return f["addr"]
                        .as_str()
                        .expect("addr")
                        .parse()
                        .expect("socket address");
                }
            }
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!("engine process exited ({status}) before listening:\n{text}");
            }
            assert!(
                start.elapsed() < DEADLINE,
                "engine never logged `listening`:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The base URL of the event API this process serves.
    pub async fn event_api_url(&self) -> String {
        format!("http://{}", self.listening("event-api").await)
    }

    /// A client for the event API this process serves, reading `state`.
    pub async fn client(&self, state: Arc<dyn StateStore>) -> Client {
        Client::new(self.event_api_url().await, state)
    }

    /// SIGKILL, then reap.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with its log) if the process has exited.
    pub fn assert_running(&self) {
        let status = self.child.lock().unwrap().try_wait();
        if let Ok(Some(status)) = status {
            panic!("engine process exited ({status}):\n{}", self.log_text());
        }
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Serves the event API of `config` over `backends` on a free loopback port
/// until `shutdown`: its URL and its task.
pub async fn spawn_event_api(
    config: &Arc<Config>,
    backends: &Backends,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind event API");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = engine::event_api::router(engine::event_api::ApiState::new(
        config.clone(),
        backends.clone(),
        metrics.clone(),
        "event-api",
    ));
    let sd = shutdown.clone();
    let task = tokio::spawn(async move {
        engine::event_api::serve(listener, app, sd)
            .await
            .expect("event API");
    });
    (url, task)
}
