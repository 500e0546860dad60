//! The engine image (issue 6 benchmark): build time and size of the image
//! `stackctl image build` makes, next to a reference made in the same run
//! (the same files through `tar | gzip -6 | sha256sum`, the work a
//! Dockerfile-less `docker build` of a `COPY`-only image comes down to), then
//! pushes to a real `docker-registry` on loopback: the first push uploads
//! every blob, the second none.
//!
//!     cargo build --profile dist -p engine --bin stackctl-engine --features sqs,redis
//!     cargo bench -p stacks --bench image      # BENCH_ROUNDS=5 builds by default
//!
//! `BENCH_BINARY=PATH` measures another binary (the default is the `dist`
//! build above, the one `stackctl image build` and `up` ship).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::Registry;
use stacks::image::{self, BuildOptions, PushOptions};

fn main() {
    let binary = binary();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    println!("engine image build (load average at start: {})", loadavg());
    println!(
        "  binary: {} ({})",
        binary.display(),
        mib(file_size(&binary))
    );

    let opts = BuildOptions::new(&binary);
    let mut builds = Vec::with_capacity(rounds);
    let mut references = Vec::with_capacity(rounds);
    let mut built = None;
    let mut reference_size = 0;
    for round in 0..rounds {
        // Alternate who goes first so the page cache and the other work on
        // the machine favour neither.
        let mut build = || {
            let started = Instant::now();
            let image = image::build(&opts).expect("image builds");
            builds.push(started.elapsed());
            image
        };
        let image = if round % 2 == 0 {
            let image = build();
            let (t, size) = reference(&image);
            references.push(t);
            reference_size = size;
            image
        } else {
            let (t, _) = reference(built.as_ref().expect("built in round 0"));
            references.push(t);
            build()
        };
        if let Some(previous) = &built {
            let previous: &image::BuiltImage = previous;
            assert_eq!(
                previous.manifest_digest, image.manifest_digest,
                "two builds of the same inputs gave different digests"
            );
        }
        built = Some(image);
    }
    let built = built.expect("at least one round");

    let build_median = median(&mut builds);
    let reference_median = median(&mut references);
    println!("\n  {rounds} builds, each next to a reference run (median):");
    println!(
        "    stackctl image build   {:>8.0} ms",
        build_median.as_secs_f64() * 1e3
    );
    println!(
        "    tar | gzip -6 | sha256 {:>8.0} ms",
        reference_median.as_secs_f64() * 1e3
    );
    println!(
        "    build / reference      {:>8.2}",
        build_median.as_secs_f64() / reference_median.as_secs_f64()
    );
    println!(
        "  digest {} (the same in every round)",
        built.manifest_digest
    );

    println!("\n  layer                       files   tar         gzip");
    for (name, layer) in ["base (users, CA, libraries)", "engine binary"]
        .iter()
        .zip(&built.layers)
    {
        println!(
            "    {:<26} {:>4}   {:>9}   {:>9}",
            name,
            layer.files.len(),
            mib(layer.uncompressed_size),
            mib(layer.blob.len() as u64)
        );
    }
    println!(
        "    image (blobs + manifest)              {:>9}   reference .tar.gz {}",
        mib(built.size()),
        mib(reference_size)
    );

    // Pushes: a new registry, so the first push uploads everything.
    let registry = Registry::start().expect("docker-registry starts");
    let target: image::ImageRef = format!("{}/stackctl/engine:bench", registry.host_port())
        .parse()
        .expect("image reference");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let push_opts = PushOptions {
        credentials: None,
        plain_http: true,
        endpoint: None,
    };
    let push = || {
        let started = Instant::now();
        let report = rt
            .block_on(image::push(&built, &target, &push_opts, &mut |_| {}))
            .expect("push");
        (started.elapsed(), report)
    };
    let (first, first_report) = push();
    let (second, second_report) = push();
    assert_eq!(
        second_report.pushed_bytes, 0,
        "the second push uploaded blobs"
    );
    println!("\n  push to docker-registry on loopback:");
    println!(
        "    first  {:>8.0} ms  {} uploaded",
        first.as_secs_f64() * 1e3,
        mib(first_report.pushed_bytes)
    );
    println!(
        "    second {:>8.0} ms  {} uploaded, {} already there",
        second.as_secs_f64() * 1e3,
        mib(second_report.pushed_bytes),
        mib(second_report.skipped_bytes)
    );
    println!("\n  load average at end: {}", loadavg());
}

/// The image's files through the standard tools, the same work the build
/// does: one tar of them, its sha256 (the diff id), gzip at level 6 (the
/// build's `Compression::default()`), and the sha256 of the result.
fn reference(image: &image::BuiltImage) -> (Duration, u64) {
    let files: Vec<&str> = image
        .layers
        .iter()
        .flat_map(|l| &l.files)
        .map(String::as_str)
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("reference.tar.gz");
    // The engine's path in the image is not on the host: tar the host's
    // copy under its own name instead.
    let host_files: Vec<String> = files
        .iter()
        .map(|f| {
            if *f == image::ENGINE_PATH {
                binary().display().to_string()
            } else {
                (*f).to_owned()
            }
        })
        .collect();
    let script = format!(
        "tar -cPf - --dereference {} | tee >(sha256sum >/dev/null) | gzip -6 | tee {} | sha256sum >/dev/null",
        host_files.join(" "),
        out.display()
    );
    let started = Instant::now();
    let status = Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .stdin(Stdio::null())
        .status()
        .expect("bash runs");
    let elapsed = started.elapsed();
    assert!(status.success(), "the reference pipeline failed: {script}");
    (elapsed, file_size(&out))
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BENCH_BINARY") {
        return PathBuf::from(path);
    }
    // This bench runs from <target>/release/deps/; the dist build is <target>/dist/.
    let exe = std::env::current_exe().expect("bench path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the bench runs from <target>/<profile>/deps");
    let path = target.join("dist").join("stackctl-engine");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --profile dist -p engine --bin stackctl-engine \
         --features sqs,redis` first, or set BENCH_BINARY",
        path.display()
    );
    path
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
