//! `stackctl bench` as users run it (the real binary) against a trivial
//! axum server on loopback: thresholds set the exit code, failures show in
//! the JSON report, the target comes from a spec (or the last `up`), and
//! bad arguments are refused with a reason.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::support::{assert_exit, serve as serve_app, stackctl as stackctl_command};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;

const KEY: &str = "cli-key";

#[derive(Default)]
struct Server {
    requests: AtomicU64,
    status: u16,
}

async fn ingest(
    State(s): State<Arc<Server>>,
    UrlPath(key): UrlPath<String>,
) -> (StatusCode, &'static str) {
    if key != KEY {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"unknown key"}"#);
    }
    s.requests.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(s.status).unwrap(),
        r#"{"ids":["x"],"status":200}"#,
    )
}

async fn serve(status: u16) -> (SocketAddr, Arc<Server>) {
    let server = Arc::new(Server {
        status,
        ..Server::default()
    });
    let app = Router::new()
        .route("/e/{key}", post(ingest))
        .with_state(Arc::clone(&server));
    (serve_app(app).await, server)
}

/// A TLS front on loopback (a certificate for 127.0.0.1 from a CA of its
/// own, made with openssl) forwarding to `backend`, as API Gateway fronts
/// the event API; its port and the CA's PEM file.
async fn tls_front(backend: SocketAddr, dir: &Path) -> (u16, std::path::PathBuf) {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{ServerConfig, crypto::ring};

    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=bench test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
    ]);
    let certs = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut up = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (port, dir.join("ca.pem"))
}

async fn stackctl(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::from(stackctl_command())
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .expect("stackctl runs")
}

/// `args` followed by a `--threshold` for each of `thresholds`.
fn with_thresholds<'a>(args: &[&'a str], thresholds: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    for t in thresholds {
        all.extend(["--threshold", t]);
    }
    all
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_set_the_exit_code() {
    let (addr, server) = serve(200).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let base = [
        "bench", "--url", &url, "--key", KEY, "--rate", "100", "-d", "1s", "-o", "json",
    ];

    let pass = stackctl(
        dir.path(),
        &with_thresholds(&base, &["p99<10s", "failed<1%"]),
    )
    .await;
    assert_exit(&pass, 0);
    let doc = json(&pass);
    assert_eq!(doc["http_reqs"]["count"], 100);
    assert_eq!(doc["thresholds"][0]["ok"], true);
    assert_eq!(server.requests.load(Ordering::SeqCst), 100);

    // No HTTP answer takes under a microsecond: this one fails every time.
    let fail = stackctl(dir.path(), &with_thresholds(&base, &["p99<1us", "rate>1"])).await;
    assert_exit(&fail, 3);
    let doc = json(&fail);
    assert_eq!(doc["thresholds"][0]["ok"], false);
    assert_eq!(doc["thresholds"][1]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_failed_requests_in_the_summary() {
    let (addr, server) = serve(503).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let out = stackctl(
        dir.path(),
        &[
            "bench",
            "--url",
            &url,
            "--key",
            KEY,
            "-c",
            "2",
            "-d",
            "1s",
            "--threshold",
            "failed<1%",
        ],
    )
    .await;
    assert_exit(&out, 3);
    let text = String::from_utf8_lossy(&out.stdout);
    let n = server.requests.load(Ordering::SeqCst);
    assert!(n > 10, "{text}");
    assert!(text.contains("http_req_failed"), "{text}");
    assert!(text.contains(&format!("100.00%  {n} out of {n}")), "{text}");
    assert!(text.contains("503: "), "{text}");
    assert!(text.contains("✗ failed<1%"), "{text}");
    assert!(
        !text.contains(KEY),
        "the key leaked into the output:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_comes_from_the_spec_or_the_last_up() {
    let (addr, server) = serve(200).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("local.yaml");
    std::fs::write(
        &spec,
        format!(
            "stack: benchdemo
provider: local
services:
  event-api: {{count: 1, port: {}}}
  runner: {{count: 1}}
executors: {{min: 1, desired: 1, max: 1, drivers: [http]}}
event_keys: {{default: {KEY}}}
",
            addr.port()
        ),
    )
    .unwrap();
    let out = stackctl(
        dir.path(),
        &[
            "bench",
            "-f",
            "local.yaml",
            "--rate",
            "50",
            "-d",
            "1s",
            "-o",
            "json",
        ],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["http_reqs"]["count"], 50);
    assert_eq!(
        json(&out)["target"],
        format!("http://127.0.0.1:{}/e/***", addr.port())
    );

    // No argument: the spec recorded by the last `up` from this directory.
    std::fs::create_dir_all(dir.path().join(".stackctl")).unwrap();
    std::fs::write(
        dir.path().join(".stackctl/last"),
        format!("{}\n", spec.display()),
    )
    .unwrap();
    let out = stackctl(
        dir.path(),
        &["bench", "--rate", "50", "-d", "1s", "-o", "json"],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(server.requests.load(Ordering::SeqCst), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_verified_against_the_systems_roots() {
    let (addr, server) = serve(200).await;
    let dir = tempfile::tempdir().unwrap();
    let (port, ca) = tls_front(addr, dir.path()).await;
    let url = format!("https://127.0.0.1:{port}");
    let args = [
        "bench", "--url", &url, "--key", KEY, "--rate", "50", "-d", "1s", "-o", "json",
    ];

    // A certificate from a CA this machine does not trust: refused, and why.
    let out = tokio::process::Command::from(stackctl_command())
        .args(args)
        .current_dir(dir.path())
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .await
        .unwrap();
    // With --output json the error is a JSON object on stdout.
    let err = json(&out).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tls: invalid peer certificate"), "{err}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);

    // The same CA named by SSL_CERT_FILE, as the system's roots: every request answered.
    let out = tokio::process::Command::from(stackctl_command())
        .args(args)
        .current_dir(dir.path())
        .env("SSL_CERT_FILE", &ca)
        .output()
        .await
        .unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["http_reqs"]["count"], 50, "{report}");
    assert_eq!(report["status_codes"]["200"], 50, "{report}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 50);
    assert!(
        report["target"].as_str().unwrap().starts_with("https://"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port().unwrap().to_string();
    let closed = format!("http://127.0.0.1:{port}");
    // (the target's URL, given with a key; further arguments; exit code; what stderr says)
    let cases: [(Option<&str>, &[&str], i32, &str); 4] = [
        (None, &["-d", "1s"], 1, "no stack given"),
        (
            Some("http://127.0.0.1:9"),
            &["--threshold", "p99"],
            2,
            "expected e.g. `p99<50ms`",
        ),
        (
            Some("http://127.0.0.1:9"),
            &["--stage", "fast"],
            2,
            "DURATION:RATE",
        ),
        (Some(&closed), &["-d", "1s"], 1, "cannot connect"),
    ];
    for (url, more, code, says) in cases {
        let mut args = vec!["bench"];
        if let Some(url) = url {
            args.extend(["--url", url, "--key", "k"]);
        }
        args.extend_from_slice(more);
        let out = stackctl(dir.path(), &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
