//! What the benchmark programs share: the reference server (a minimal axum
//! app that reads the body and answers 200, run as a child process of the
//! bench program so it gets its own runtime like the engine does), engine
//! processes from the built `stackctl-engine`, the load generator
//! (`engine::loadgen`), Redis command counts and the machine's load.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use engine::loadgen::{self as bench, BenchConfig, Load, Quiet, Report};
use tokio_util::sync::CancellationToken;

/// The event key every server in the benchmarks accepts.
pub const KEY: &str = "bench-key";
/// The runs API token of bench engines.
pub const TOKEN: &str = "bench-token";
/// The argument that turns a bench program into the reference server.
pub const REFERENCE_ARG: &str = "--reference-server";

/// If this process was started as the reference server, serves until
/// killed and never returns.
pub fn maybe_serve_reference() {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == REFERENCE_ARG) else {
        return;
    };
    let port: u16 = args
        .get(i + 1)
        .and_then(|p| p.parse().ok())
        .expect("--reference-server PORT");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        use axum::body::Bytes;
        use axum::routing::post;
        let app = axum::Router::new()
            .route(
                "/e/{key}",
                post(|body: Bytes| async move {
                    // Reads the body, as the event API must, and answers like it.
                    let _len = body.len();
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        r#"{"ids":["01J0000000000000000000000"],"status":200}"#,
                    )
                }),
            )
            .route(
                "/step",
                post(|| async { axum::Json(serde_json::json!({"ok": true})) }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the reference server");
        axum::serve(listener, app).await.expect("reference server");
    });
    std::process::exit(0);
}

/// A child process killed on drop.
pub struct ChildGuard {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ChildGuard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls until `addr` accepts a connection and answers `GET path` (any status), or panics.
pub fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening");
        }
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the reference server as a child of this program.
pub fn start_reference() -> ChildGuard {
    start_reference_with(&[])
}

/// [`start_reference`] with environment variables (`TOKIO_WORKER_THREADS`).
pub fn start_reference_with(env: &[(&str, String)]) -> ChildGuard {
    let port = free_port();
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args([REFERENCE_ARG, &port.to_string()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .spawn()
        .expect("start the reference server");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, &mut child, "the reference server");
    ChildGuard { child, addr }
}

/// Starts `stackctl-engine` with `config` (JSON) and `roles`, logging into `dir`.
pub fn start_engine(dir: &Path, config: &engine::config::Config, roles: &str) -> ChildGuard {
    start_engine_binary(
        Path::new(env!("CARGO_BIN_EXE_stackctl-engine")),
        dir,
        config,
        roles,
    )
}

/// [`start_engine`] with another build of `stackctl-engine` (a baseline).
pub fn start_engine_binary(
    binary: &Path,
    dir: &Path,
    config: &engine::config::Config,
    roles: &str,
) -> ChildGuard {
    let path = dir.join("engine.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(config).expect("config JSON"),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.join("engine.log")).expect("log file");
    let mut child = Command::new(binary)
        .args(["--role", roles, "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start stackctl-engine");
    let addr = config.event_api.bind;
    wait_listening(addr, &mut child, "stackctl-engine");
    ChildGuard { child, addr }
}

/// An engine configuration on an embedded database in `dir`, its event API on a free port.
pub fn engine_config(dir: &Path) -> engine::config::Config {
    let mut c = engine::config::Config::new(engine::backend::BackendConfig::Embedded {
        path: dir.join("engine.db"),
    });
    c.event_api.bind = SocketAddr::from(([127, 0, 0, 1], free_port()));
    c.event_keys = vec![KEY.into()];
    c.api_token = Some(TOKEN.into());
    c
}

/// The load generator's runtime: as many workers as cores, like wrk's `-t`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `cfg` to the end on `rt`.
pub fn load(rt: &tokio::runtime::Runtime, cfg: BenchConfig) -> Report {
    rt.block_on(bench::run(cfg, &Quiet, None, CancellationToken::new()))
        .expect("bench run")
}

/// A closed-loop run: `conns` connections, `events` per request, for `secs`.
pub fn closed_loop(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    conns: usize,
    events: u32,
    time: Duration,
) -> Report {
    let mut c = BenchConfig::new(format!("http://{addr}/e/{KEY}"));
    c.connections = conns;
    c.events_per_request = events;
    c.load = Load::Max { duration: time };
    load(rt, c)
}

/// `INFO commandstats` of `redis`: calls by command name (commands run
/// inside Lua scripts included).
pub fn commandstats(redis: &harness::RedisServer) -> BTreeMap<String, u64> {
    let info = redis
        .command(&["INFO", "commandstats"])
        .expect("INFO")
        .as_text()
        .unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cmdstat_")?;
            let (name, fields) = rest.split_once(':')?;
            let calls = fields
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Counts the commands each client sends, by command name, from
/// `MONITOR`, until stopped.
pub struct Monitor {
    counts: Arc<std::sync::Mutex<BTreeMap<(String, String), u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    pub async fn start(addr: &str) -> Self {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("monitor");
        stream.write_all(b"MONITOR\r\n").await.expect("MONITOR");
        let mut lines = tokio::io::BufReader::new(stream).lines();
        let first = lines.next_line().await.expect("read").unwrap_or_default();
        assert_eq!(first, "+OK", "MONITOR answered {first}");
        let counts = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                // +1700000000.123456 [0 127.0.0.1:41234] "EVALSHA" ...
                let Some((head, rest)) = line.split_once("] ") else {
                    continue;
                };
                let client = head.split_whitespace().last().unwrap_or("?").to_string();
                let command = rest.split('"').nth(1).unwrap_or("?").to_ascii_lowercase();
                *c.lock().unwrap().entry((client, command)).or_insert(0) += 1;
            }
        });
        Self { counts, task }
    }

    pub fn stop(self) -> BTreeMap<(String, String), u64> {
        self.task.abort();
        self.counts.lock().unwrap().clone()
    }
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Seconds per cell: `BENCH_SECS` or `default`.
/// `BENCH_ROUNDS`, or `default`: how many alternating pairs of runs to make.
pub fn rounds(default: usize) -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

pub fn secs(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// CPU time (user and system, every thread) of process `pid` so far, from
/// `/proc/PID/stat` (clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15, the 12th and 13th after `)`.
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .expect("utime, stime")
        })
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Context switches (voluntary and not) of every thread of process `pid`
/// so far, from `/proc/PID/task/*/status`.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}
