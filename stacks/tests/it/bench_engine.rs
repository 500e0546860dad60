//! The load generator against the real engine (all roles in this process
//! over an embedded database in a temp dir, reached over loopback HTTP):
//! bench's request and event counts equal the event API's own `/metrics`
//! counters, and `--e2e` measures sampled events through to completed runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::backend::BackendConfig;
use engine::config::{Config, Role};
use engine::functions::FunctionDef;
use stacks::bench::{self, BenchConfig, Body, E2eConfig, Load, Quiet, Target};
use tokio_util::sync::CancellationToken;

const KEY: &str = "bench-key";
const TOKEN: &str = "bench-token";

struct Engine {
    target: Target,
    shutdown: engine::Shutdown,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start_engine() -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port().unwrap();
    let mut config = Config::new(BackendConfig::Embedded {
        path: dir.path().join("engine.db"),
    });
    config.event_api.bind = ([127, 0, 0, 1], port).into();
    config.event_keys = vec![KEY.into()];
    config.api_token = Some(TOKEN.into());
    let f: FunctionDef = serde_json::from_value(serde_json::json!({
        "id": "bench-one-step",
        "triggers": [{"event": "bench/e2e"}],
        "steps": [{"id": "nap", "sleep": "1ms"}]
    }))
    .unwrap();
    config.functions = vec![f];
    let shutdown = engine::Shutdown::new();
    let sd = shutdown.clone();
    let task = tokio::spawn(async move {
        engine::entry::serve(Arc::new(config), &[Role::All], sd)
            .await
            .expect("engine serves");
    });
    let target = Target::from_url(&format!("http://127.0.0.1:{port}"), KEY, Some(TOKEN.into()));
    let health = format!("{}/health", target.event_api);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the engine did not answer {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Engine {
        target,
        shutdown,
        task,
        _dir: dir,
    }
}

impl Engine {
    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.target.event_api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the engine stops")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_counts_equal_the_event_apis_counters() {
    let engine = start_engine().await;
    let mut c = BenchConfig::new(engine.target.ingest_url());
    c.connections = 8;
    c.events_per_request = 5;
    c.load = Load::Max {
        duration: Duration::from_secs(2),
    };
    let r = bench::run(c, &Quiet, None, CancellationToken::new())
        .await
        .unwrap();
    assert!(r.http_reqs.count > 50, "{r:?}");
    assert_eq!(r.http_req_failed.count, 0, "{:?}", r.status_codes);
    let text = engine.metrics().await;
    let served = bench::prometheus_sum(
        &text,
        "stackctl_http_requests_total",
        &[("route", "/e/{event_key}")],
    );
    let accepted = bench::prometheus_sum(&text, "stackctl_events_accepted_total", &[]);
    assert_eq!(served as u64, r.http_reqs.count, "{text}");
    assert_eq!(accepted as u64, r.events_accepted.count, "{text}");
    assert_eq!(r.events_accepted.count, r.http_reqs.count * 5);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_measures_sampled_events_to_completed_runs() {
    let engine = start_engine().await;
    let mut c = BenchConfig::new(engine.target.ingest_url());
    c.connections = 4;
    c.load = Load::constant(50.0, Duration::from_secs(2));
    c.body = Body::Builtin {
        name: "bench/e2e".into(),
        pad: 16,
    };
    c.e2e = Some(E2eConfig {
        runs_api: engine.target.runs_api.clone().unwrap(),
        token: TOKEN.into(),
        samples: 20,
        wait: Duration::from_secs(60),
    });
    c.thresholds = vec![
        "e2e_p99<60s".parse().unwrap(),
        "e2e_min>=0ms".parse().unwrap(),
    ];
    let r = bench::run(c, &Quiet, None, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.http_reqs.count, 100);
    let e = r.e2e.as_ref().expect("e2e report");
    assert_eq!(e.sampled, 20, "{e:?}");
    assert_eq!(e.measured, 20, "{e:?}");
    assert_eq!(e.runs.get("completed"), Some(&20), "{e:?}");
    // A 1 ms sleep step cannot complete before the event was sent.
    assert!(e.latency.min >= 1.0, "{e:?}");
    assert!(r.thresholds_ok(), "{:?}", r.thresholds);
    engine.stop().await;
}
