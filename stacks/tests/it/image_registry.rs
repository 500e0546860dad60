//! Builds engine images and pushes them to a real `docker-registry` on
//! loopback, then checks them with `skopeo` and runs one with `podman`.
//!
//! The image is built from `/bin/echo`: a small dynamically linked binary, so
//! the shared-library resolution is exercised, and its output shows that the
//! entrypoint and default command are right when the image runs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::RegistryAuth;
use serde_json::Value;
use stacks::image::{
    self, BlobKind, BuildOptions, BuiltImage, Credentials, ImageError, ImageRef, PushOptions,
    PushReport,
};

const TEST_BINARY: &str = "/bin/echo";
const USER: &str = "pusher";
const PASSWORD: &str = "s3cret-pass";
const TOKEN_SERVICE: &str = "test-registry";
const TOKEN_ISSUER: &str = "test-issuer";
/// bcrypt (cost 4) of PASSWORD: the only hash format docker-registry's htpasswd accepts.
const PASSWORD_BCRYPT: &str = "$2b$04$c9uMGYoqq.oR7P08GABg3.ZzOSyG6QIdZJ0yF/d9tHxA/EARjNtra";

/// How the registry authenticates clients.
enum Auth<'a> {
    None,
    /// Basic auth for USER / PASSWORD.
    Htpasswd,
    /// Bearer tokens from a token service at `realm`, signed by `root_cert`'s key.
    Token {
        realm: &'a str,
        root_cert: &'a Path,
    },
}

/// The harness's `docker-registry` on loopback, with this test's auth.
struct Registry {
    inner: harness::Registry,
    /// Holds the htpasswd file while the registry runs.
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(auth: Auth<'_>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let auth = match auth {
            Auth::None => RegistryAuth::None,
            Auth::Htpasswd => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{USER}:{PASSWORD_BCRYPT}\n")).unwrap();
                RegistryAuth::Htpasswd { path }
            }
            Auth::Token { realm, root_cert } => RegistryAuth::Token {
                realm: realm.to_owned(),
                service: TOKEN_SERVICE.to_owned(),
                issuer: TOKEN_ISSUER.to_owned(),
                root_cert_bundle: root_cert.to_path_buf(),
            },
        };
        let inner = harness::Registry::builder()
            .auth(auth)
            .start()
            .expect("docker-registry (see tests/harness)");
        Registry { inner, _dir: dir }
    }

    fn host(&self) -> String {
        self.inner.host_port()
    }

    fn target(&self, repo_and_tag: &str) -> ImageRef {
        format!("{}/{repo_and_tag}", self.host()).parse().unwrap()
    }
}

fn free_port() -> u16 {
    harness::free_port().expect("a free loopback port")
}

fn options(binary: &Path) -> BuildOptions {
    BuildOptions {
        source_date_epoch: 0,
        source: "https://example.invalid/stackctl".to_owned(),
        version: "9.8.7".to_owned(),
        revision: Some("0123456789abcdef".to_owned()),
        ..BuildOptions::new(binary)
    }
}

fn build_test_image() -> BuiltImage {
    image::build(&options(Path::new(TEST_BINARY))).unwrap()
}

async fn push(
    image: &BuiltImage,
    target: &ImageRef,
    opts: &PushOptions,
) -> Result<PushReport, ImageError> {
    image::push(image, target, opts, &mut |_| {}).await
}

/// The test image of a copy of [`TEST_BINARY`] with `suffix` appended:
/// another binary, so another binary layer.
fn build_changed_image(suffix: &[u8]) -> BuiltImage {
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("engine");
    let mut bytes = std::fs::read(TEST_BINARY).unwrap();
    bytes.extend_from_slice(suffix);
    std::fs::write(&changed, bytes).unwrap();
    image::build(&options(&changed)).unwrap()
}

/// Push options that log in as [`USER`] with `password`.
fn login(password: &str) -> PushOptions {
    PushOptions {
        credentials: Some(Credentials::new(USER, password)),
        ..PushOptions::default()
    }
}

/// Pushes `built` to `target` as [`USER`]: refused with a wrong password,
/// then pushed with the right one, every blob uploaded. Returns the options
/// that logged in and the report.
async fn push_as_user(built: &BuiltImage, target: &ImageRef) -> (PushOptions, PushReport) {
    let err = push(built, target, &login("wrong")).await.unwrap_err();
    assert!(matches!(err, ImageError::Auth(_)), "wrong password: {err}");

    let right = login(PASSWORD);
    let report = push(built, target, &right).await.unwrap();
    assert!(report.blobs.iter().all(|b| b.uploaded));
    (right, report)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn skopeo_inspect(reference: &str, config: bool) -> Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false", "--no-tags"]);
    if config {
        cmd.arg("--config");
    }
    cmd.arg(reference);
    serde_json::from_slice(&run(&mut cmd).stdout).unwrap()
}

/// The items of a JSON array of strings.
fn strings(array: &Value) -> Vec<&str> {
    array
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn build_is_reproducible_and_a_new_binary_keeps_the_base_layer() {
    let first = build_test_image();
    let second = build_test_image();
    assert_eq!(first.manifest_digest, second.manifest_digest);
    assert_eq!(first.manifest, second.manifest);
    assert_eq!(first.config, second.config);

    // A different binary: only the binary layer (and so config and manifest) changes.
    let third = build_changed_image(b"\0changed");
    assert_eq!(third.layers[0].digest, first.layers[0].digest);
    assert_ne!(third.layers[1].digest, first.layers[1].digest);
    assert_ne!(third.manifest_digest, first.manifest_digest);

    // SOURCE_DATE_EPOCH changes every timestamp, so every digest.
    let later = image::build(&BuildOptions {
        source_date_epoch: 1_700_000_000,
        ..options(Path::new(TEST_BINARY))
    })
    .unwrap();
    assert_ne!(later.layers[0].digest, first.layers[0].digest);

    // The base layer carries the loader and libc that /bin/echo links.
    let base_files = &first.layers[0].files;
    assert!(
        base_files.iter().any(|f| f.contains("libc.so")),
        "{base_files:?}"
    );
    assert!(
        base_files.iter().any(|f| f.contains("ld-linux")),
        "{base_files:?}"
    );
    assert!(base_files.contains(&"/etc/passwd".to_owned()));
    assert!(base_files.contains(&image::CA_CERTIFICATES.to_owned()));
    assert_eq!(first.layers[1].files, vec![image::ENGINE_PATH.to_owned()]);
}

#[test]
fn oci_layout_is_readable_by_skopeo() {
    let built = build_test_image();
    let dir = tempfile::tempdir().unwrap();
    built.write_oci_layout(dir.path(), Some("test")).unwrap();
    let layout = format!("oci:{}:test", dir.path().display());
    let inspect = skopeo_inspect(&layout, false);
    assert_eq!(inspect["Digest"], built.manifest_digest.as_str());
    assert_eq!(inspect["Architecture"], built.platform.architecture);
    assert_eq!(inspect["Os"], "linux");
    let layers = strings(&inspect["Layers"]);
    let ours: Vec<&str> = built.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(layers, ours);

    // Every blob file is named by its own sha256.
    for entry in std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let digest = image::Digest::sha256(&std::fs::read(&path).unwrap());
        assert_eq!(digest.hex(), path.file_name().unwrap().to_str().unwrap());
    }
}

#[tokio::test]
async fn push_shows_in_skopeo_and_a_second_push_uploads_nothing() {
    let registry = Registry::start(Auth::None);
    let built = build_test_image();
    let target = registry.target("stackctl/engine:test");

    let mut events = Vec::new();
    let first = image::push(&built, &target, &PushOptions::default(), &mut |e| {
        events.push(format!("{e:?}"))
    })
    .await
    .unwrap();
    assert_eq!(
        first.reference,
        format!(
            "{}/stackctl/engine@{}",
            registry.host(),
            built.manifest_digest
        )
    );
    assert!(first.blobs.iter().all(|b| b.uploaded), "{first:?}");
    assert_eq!(first.skipped_bytes, 0);
    assert_eq!(
        first.pushed_bytes,
        built.size() - built.manifest.len() as u64
    );
    assert_eq!(events.len(), 2 * first.blobs.len() + 1, "{events:?}");

    let by_digest = skopeo_inspect(&format!("docker://{}", first.reference), false);
    assert_eq!(by_digest["Digest"], built.manifest_digest.as_str());
    let labels = &by_digest["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://example.invalid/stackctl"
    );
    assert_eq!(labels["org.opencontainers.image.version"], "9.8.7");
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        "0123456789abcdef"
    );

    let config = skopeo_inspect(&format!("docker://{}", first.reference), true);
    let runtime = &config["config"];
    assert_eq!(
        runtime["Entrypoint"],
        serde_json::json!([image::ENGINE_PATH])
    );
    assert_eq!(runtime["Cmd"], serde_json::json!(["--role", "all"]));
    assert_eq!(runtime["User"], "65532:65532");
    assert!(runtime["ExposedPorts"]["8288/tcp"].is_object());
    let env = strings(&runtime["Env"]);
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert!(env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));

    // The tag points at the same manifest.
    let by_tag = skopeo_inspect(&format!("docker://{target}"), false);
    assert_eq!(by_tag["Digest"], built.manifest_digest.as_str());

    // Same inputs again: same digest, and the registry already has every blob.
    let rebuilt = build_test_image();
    assert_eq!(rebuilt.manifest_digest, built.manifest_digest);
    let second = push(&rebuilt, &target, &PushOptions::default())
        .await
        .unwrap();
    assert!(second.blobs.iter().all(|b| !b.uploaded), "{second:?}");
    assert_eq!(second.pushed_bytes, 0);
    assert_eq!(second.skipped_bytes, first.pushed_bytes);
    assert_eq!(second.reference, first.reference);

    // A new binary to another repository of the same registry: untagged push by digest.
    let v2 = build_changed_image(b"\0v2");
    let v2_report = push(&v2, &target, &PushOptions::default()).await.unwrap();
    let uploaded: Vec<BlobKind> = v2_report
        .blobs
        .iter()
        .filter(|b| b.uploaded)
        .map(|b| b.kind)
        .collect();
    // The base layer is shared with the first image and stays in the registry.
    assert_eq!(uploaded, vec![BlobKind::Layer, BlobKind::Config]);
    assert_eq!(v2_report.skipped_bytes, built.layers[0].blob.len() as u64);

    let untagged = registry.target("stackctl/other");
    let report = push(&v2, &untagged, &PushOptions::default()).await.unwrap();
    assert_eq!(report.tag, None);
    let inspect = skopeo_inspect(&format!("docker://{}", report.reference), false);
    assert_eq!(inspect["Digest"], v2.manifest_digest.as_str());
}

#[tokio::test]
async fn push_with_basic_auth() {
    let registry = Registry::start(Auth::Htpasswd);
    let built = build_test_image();
    let target = registry.target("secured/engine:v1");

    let err = push(&built, &target, &PushOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::Auth(_)),
        "pushing without credentials: {err}"
    );

    let (_, report) = push_as_user(&built, &target).await;
    let inspect = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("docker://{}", report.reference),
    ]));
    let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect["Digest"], built.manifest_digest.as_str());
}

/// podman with its own storage in `dir`, so the test neither sees nor
/// disturbs the host's images and containers.
fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args(["--storage-driver", "vfs"]);
    cmd
}

/// Pushes `built` as `repo_and_tag` to a registry of its own (no auth) and
/// pulls it into podman storage of its own. Returns the registry (running
/// while held), the push's report and the storage.
async fn push_and_pull(
    built: &BuiltImage,
    repo_and_tag: &str,
) -> (Registry, PushReport, tempfile::TempDir) {
    let registry = Registry::start(Auth::None);
    let report = push(
        built,
        &registry.target(repo_and_tag),
        &PushOptions::default(),
    )
    .await
    .unwrap();
    let storage = tempfile::tempdir().unwrap();
    run(podman(storage.path()).args(["pull", "--quiet", "--tls-verify=false", &report.reference]));
    (registry, report, storage)
}

#[tokio::test]
async fn pushed_image_pulls_and_runs_in_podman() {
    let built = build_test_image();
    let (_registry, report, storage) = push_and_pull(&built, "stackctl/engine:run").await;

    let user = run(podman(storage.path()).args([
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{.Config.WorkingDir}}",
        &report.reference,
    ]));
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        format!("{} {}", image::USER, image::HOME)
    );

    // The image's binary is /bin/echo: it prints the default command, which
    // shows the entrypoint, the copied libraries and the loader all work.
    let out = run(podman(storage.path()).args([
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        &report.reference,
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "--role all\n");
    let left = run(podman(storage.path()).args(["ps", "--all", "--quiet"]));
    assert!(left.stdout.is_empty(), "containers left behind");
}

/// A small Docker token service (the protocol of distribution's `token`
/// auth) for the Bearer flow: it checks Basic credentials and issues RS256
/// JWTs, signed by `openssl` with a key whose self-signed certificate the
/// registry trusts, granting what the `scope` asks for.
struct TokenService {
    port: u16,
    root_cert: PathBuf,
    /// Scopes asked for, one entry per token issued.
    issued: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TokenService {
    fn start() -> TokenService {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=test-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = run(Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert))
        .stdout;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (issued, stop) = (issued.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve_token(stream, &key, &der, &issued);
                    }
                }
            })
        };
        TokenService {
            port,
            root_cert: cert,
            issued,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        std::net::TcpStream::connect(("127.0.0.1", self.port)).ok();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

fn serve_token(
    mut stream: std::net::TcpStream,
    key: &Path,
    cert_der: &[u8],
    issued: &std::sync::Mutex<Vec<String>>,
) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use std::io::{BufRead, BufReader, Write};

    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let url = reqwest::Url::parse(&format!("http://token{path}")).unwrap();
    let query = |k: &str| {
        url.query_pairs()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
    };
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let (status, body) = if authorization.as_deref() != Some(expected.as_str()) {
        (
            "401 Unauthorized",
            r#"{"details":"bad credentials"}"#.to_owned(),
        )
    } else {
        let scope = query("scope").unwrap_or_default();
        issued.lock().unwrap().push(scope.clone());
        // "repository:NAME:pull,push" -> grant exactly that.
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header =
            serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(cert_der)]});
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER, "sub": USER, "aud": query("service").unwrap_or_default(),
            "iat": now, "nbf": now - 10, "exp": now + 300, "jti": format!("{now}-{}", issued.lock().unwrap().len()),
            "access": [{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}],
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut openssl = Command::new("openssl")
            .args(["dgst", "-sha256", "-binary", "-sign"])
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        openssl
            .stdin
            .take()
            .unwrap()
            .write_all(signing_input.as_bytes())
            .unwrap();
        let signature = openssl.wait_with_output().unwrap().stdout;
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
        ("200 OK", serde_json::json!({ "token": token }).to_string())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

#[tokio::test]
async fn push_with_bearer_token_auth() {
    let tokens = TokenService::start();
    let realm = tokens.realm();
    let registry = Registry::start(Auth::Token {
        realm: &realm,
        root_cert: &tokens.root_cert,
    });
    let built = build_test_image();
    let target = registry.target("tokened/engine:v1");

    let (right, _) = push_as_user(&built, &target).await;
    // One token, asked for with push rights, served every request of the push.
    assert_eq!(
        *tokens.issued.lock().unwrap(),
        vec!["repository:tokened/engine:pull,push".to_owned()]
    );
    let again = push(&built, &target, &right).await.unwrap();
    assert_eq!(again.pushed_bytes, 0);
}

/// Removes a podman container when dropped, so a failed assertion leaves nothing running.
struct ContainerGuard<'a> {
    storage: &'a Path,
    name: String,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        podman(self.storage)
            .args(["rm", "--force", "--time", "2", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok();
    }
}

#[tokio::test]
async fn engine_image_starts_and_answers_health_in_podman() {
    // The real engine (dev profile, which `cargo test` has mostly built already).
    let started = Instant::now();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let built = tokio::task::spawn_blocking(move || {
        let engine = image::build_engine(workspace, false).unwrap();
        image::build(&options(&engine)).unwrap()
    })
    .await
    .unwrap();
    eprintln!(
        "engine image {} ({} bytes) built in {:?}",
        built.manifest_digest,
        built.size(),
        started.elapsed()
    );
    let (_registry, report, storage) = push_and_pull(&built, "stackctl/engine:health").await;
    let port = free_port();
    let container = ContainerGuard {
        storage: storage.path(),
        name: format!("stackctl-image-test-{port}"),
    };
    // Host networking keeps the engine on 127.0.0.1 without a CNI setup.
    run(podman(storage.path()).args([
        "run",
        "--detach",
        "--name",
        &container.name,
        "--runtime",
        "runc",
        "--network",
        "host",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--env",
        &format!("STACKCTL_ENGINE_DB_PATH={}/engine.db", image::HOME),
        "--env",
        &format!("STACKCTL_ENGINE_EVENT_API_BIND=127.0.0.1:{port}"),
        &report.reference,
    ]));

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    let health: Value = loop {
        match client.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => break resp.json().await.unwrap(),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => {
                let logs = podman(storage.path())
                    .args(["logs", &container.name])
                    .output()
                    .unwrap();
                panic!(
                    "no /health answer in 30 s: {other:?}\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
    };
    assert_eq!(health["status"], "ok", "{health}");

    // The engine runs as the image's non-root user.
    let top = run(podman(storage.path()).args(["top", &container.name, "user", "comm"]));
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["nonroot", "stackctl-engine"]),
        "{top}"
    );
}
