//! `cargo bench -p engine --bench docker_step`: what one step attempt costs
//! through the docker driver (podman's Docker API on a unix socket, a
//! busybox-static image already on the host: inspect image, create, attach,
//! start, context on stdin, `cat` echoes it, output parsed, exit code read,
//! container removed) next to the same step through the http driver (an axum
//! step service on loopback that echoes the posted context). Attempts run one
//! after another; prints min, median and p90 of `BENCH_RUNS` attempts each
//! (default 30) after 3 warm-up attempts, and the docker attempts' phases
//! from the driver's `step container timings` debug event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::drivers::{DockerDriver, Driver, HttpDriver, StepContext};
use engine::functions::Step;
use serde_json::json;

/// The phases (ms) of every `step container timings` event, by field name.
#[derive(Clone, Default)]
struct Phases(Arc<Mutex<BTreeMap<&'static str, Vec<f64>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Phases {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(Vec<(&'static str, f64)>);
        impl tracing::field::Visit for Fields {
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                self.0.push((field.name(), value));
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if !event.metadata().target().ends_with("drivers::docker") {
            return;
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let mut phases = self.0.lock().unwrap();
        for (name, ms) in fields.0 {
            phases.entry(name).or_default().push(ms);
        }
    }
}

fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

fn ctx(i: usize) -> StepContext {
    StepContext {
        event: json!({"name": "bench/step", "data": {"i": i}}),
        events: None,
        steps: serde_json::Map::new(),
        run_id: format!("bench-{i}"),
        function_id: "bench".to_string(),
        step_id: "echo".to_string(),
        attempt: 1,
    }
}

/// Min, median and p90 in milliseconds.
fn summary(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (ms(samples[0]), ms(at(0.5)), ms(at(0.9)))
}

async fn measure(driver: &dyn Driver, step: &Step, n: usize) -> Vec<Duration> {
    for i in 0..3 {
        driver.run(step, &ctx(i)).await.expect("warm-up attempt");
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let c = ctx(i);
        let started = Instant::now();
        let out = driver.run(step, &c).await.expect("attempt");
        samples.push(started.elapsed());
        assert_eq!(
            out["run_id"],
            c.run_id.as_str(),
            "the step echoes its context"
        );
    }
    samples
}

fn main() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    let n = runs();
    let phases = Phases::default();
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("engine::drivers::docker", tracing::Level::DEBUG);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(phases.clone().with_filter(filter)),
    )
    .expect("tracing subscriber");
    let podman = harness::Podman::start().expect("podman's Docker API (see tests/harness)");
    let image = podman.busybox_image("bench-step").expect("busybox image");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "one step attempt, {n} runs each (load average at start: {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/echo",
            axum::routing::post(|body: axum::Json<serde_json::Value>| async move { body }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/echo", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("step service") });

        let http_step: Step =
            serde_json::from_value(json!({"id": "echo", "http": {"url": url}})).unwrap();
        let docker_step: Step = serde_json::from_value(json!({
            "id": "echo",
            "docker": {"image": image, "command": ["cat"], "pull": "never"}
        }))
        .unwrap();
        let http: Arc<dyn Driver> = Arc::new(HttpDriver::new(Duration::from_secs(30)).unwrap());
        let docker: Arc<dyn Driver> =
            Arc::new(DockerDriver::connect(podman.socket_path()).expect("docker driver"));

        println!("| driver | min ms | median ms | p90 ms |");
        println!("| --- | --- | --- | --- |");
        for (name, driver, step) in [
            ("http (axum echo on loopback)", &http, &http_step),
            (
                "docker (podman 4.3 + runc, busybox `cat`)",
                &docker,
                &docker_step,
            ),
        ] {
            let (min, median, p90) = summary(measure(driver.as_ref(), step, n).await);
            println!("| {name} | {min:.2} | {median:.2} | {p90:.2} |");
        }
    });
    println!();
    println!("docker attempt phases (warm-up included)");
    println!("| phase | min ms | median ms | p90 ms |");
    println!("| --- | --- | --- | --- |");
    for (name, values) in phases.0.lock().unwrap().iter() {
        let samples = values
            .iter()
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .collect();
        let (min, median, p90) = summary(samples);
        println!("| {name} | {min:.2} | {median:.2} | {p90:.2} |");
    }
}
