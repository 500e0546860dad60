//! The load generator against real HTTP servers started here on loopback
//! (trivial axum apps that count what they receive): counts agree with the
//! server's, 5xx answers count as failed, the fixed rate holds, and a
//! server stall shows in the percentiles (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use stacks::bench::{self, BenchConfig, Load, Quiet, Threshold};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    /// Every `fail_every`-th request gets a 500 (0: never).
    fail_every: u64,
    /// Arrival times of requests, for the rate check.
    arrivals: std::sync::Mutex<Vec<Instant>>,
    /// Stall once for this long, at the request numbered `stall_at`.
    stall: Option<(u64, Duration)>,
    stalled: AtomicBool,
    /// Held while stalling: every request waits for it, like a server-wide pause.
    gate: tokio::sync::Mutex<()>,
}

async fn ingest(State(seen): State<Arc<Seen>>, body: Bytes) -> (StatusCode, String) {
    let n = seen.requests.fetch_add(1, Ordering::SeqCst) + 1;
    seen.arrivals.lock().unwrap().push(Instant::now());
    let value: serde_json::Value = serde_json::from_slice(&body).expect("bench sends JSON");
    let events = value.as_array().map_or(1, Vec::len) as u64;
    if let Some((at, how_long)) = seen.stall
        && n >= at
        && !seen.stalled.swap(true, Ordering::SeqCst)
    {
        let _held = seen.gate.lock().await;
        tokio::time::sleep(how_long).await;
    } else {
        drop(seen.gate.lock().await);
    }
    if seen.fail_every > 0 && n % seen.fail_every == 0 {
        seen.errors.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"boom"}"#.into(),
        );
    }
    seen.events.fetch_add(events, Ordering::SeqCst);
    let ids: Vec<String> = (0..events).map(|i| format!("\"id{n}-{i}\"")).collect();
    (
        StatusCode::OK,
        format!("{{\"ids\":[{}],\"status\":200}}", ids.join(",")),
    )
}

async fn serve(seen: Arc<Seen>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/e/{key}", post(ingest))
        .with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn config(addr: SocketAddr, load: Load, connections: usize) -> BenchConfig {
    let mut c = BenchConfig::new(format!("http://{addr}/e/secret-key"));
    c.load = load;
    c.connections = connections;
    c
}

async fn run(c: BenchConfig) -> bench::Report {
    bench::run(c, &Quiet, None, CancellationToken::new())
        .await
        .expect("bench runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_match_the_servers_counter() {
    let seen = Arc::new(Seen::default());
    let addr = serve(Arc::clone(&seen)).await;
    let mut c = config(
        addr,
        Load::Max {
            duration: Duration::from_secs(1),
        },
        4,
    );
    c.events_per_request = 3;
    let r = run(c).await;
    let served = seen.requests.load(Ordering::SeqCst);
    assert!(served > 100, "a second of load sent only {served} requests");
    assert_eq!(r.http_reqs.count, served);
    assert_eq!(r.events_accepted.count, seen.events.load(Ordering::SeqCst));
    assert_eq!(r.events_accepted.count, served * 3);
    assert_eq!(r.http_req_failed.count, 0);
    assert_eq!(r.status_codes.get("200"), Some(&served));
    assert_eq!(r.http_req_duration.count, served);
    assert!(r.http_req_duration.min > 0.0 && r.http_req_duration.max >= r.http_req_duration.p99);
    assert!(!r.target.contains("secret-key"), "{}", r.target);
    assert_eq!(r.timeline.last().map(|s| s.total), Some(served));
    let text = r.render();
    for part in [
        "http_req_duration",
        "p(99.9)=",
        "http_req_failed",
        "http_reqs",
        "events_accepted",
    ] {
        assert!(text.contains(part), "{part} missing from\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_count_as_failed_and_trip_thresholds() {
    let seen = Arc::new(Seen {
        fail_every: 4,
        ..Seen::default()
    });
    let addr = serve(Arc::clone(&seen)).await;
    let mut c = config(addr, Load::constant(200.0, Duration::from_secs(1)), 2);
    c.thresholds = vec![
        "failed<1%".parse::<Threshold>().unwrap(),
        "p99<10s".parse().unwrap(),
        "reqs>=200".parse().unwrap(),
    ];
    let r = run(c).await;
    let errors = seen.errors.load(Ordering::SeqCst);
    assert_eq!(r.http_reqs.count, 200);
    assert_eq!(r.http_req_failed.count, errors);
    assert_eq!(errors, 50);
    assert_eq!(r.status_codes.get("500"), Some(&50));
    assert!((r.http_req_failed.rate - 0.25).abs() < 1e-9);
    assert_eq!(r.events_accepted.count, 150);
    let verdicts: Vec<bool> = r.thresholds.iter().map(|t| t.ok).collect();
    assert_eq!(verdicts, vec![false, true, true], "{:?}", r.thresholds);
    assert!(!r.thresholds_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_clear_error() {
    let port = harness::free_port().unwrap();
    let c = BenchConfig::new(format!("http://127.0.0.1:{port}/e/k"));
    let err = bench::run(c, &Quiet, None, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_holds_within_two_percent_at_300_per_second() {
    let seen = Arc::new(Seen::default());
    let addr = serve(Arc::clone(&seen)).await;
    let r = run(config(
        addr,
        Load::constant(300.0, Duration::from_secs(4)),
        8,
    ))
    .await;
    assert_eq!(r.http_reqs.count, 1200);
    assert_eq!(r.dropped, 0);
    let arrivals = seen.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 1200);
    let span = arrivals
        .last()
        .unwrap()
        .duration_since(arrivals[0])
        .as_secs_f64();
    let rate = (arrivals.len() - 1) as f64 / span;
    assert!(
        (rate - 300.0).abs() / 300.0 < 0.02,
        "server saw {rate:.1} requests/s"
    );
    // The second of the run must also be at the rate, not a burst then a pause.
    let first = arrivals[0];
    let in_second_two = arrivals
        .iter()
        .filter(|t| (1.0..2.0).contains(&t.duration_since(first).as_secs_f64()))
        .count();
    assert!(
        (294..=306).contains(&in_second_two),
        "{in_second_two} requests in the 2nd second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_stall_shows_in_p99() {
    // 100 requests/s for 4 s; the 100th request stalls the whole server for
    // 1 s. About 100 requests fall due during the stall: measured from
    // their due time they wait up to a second, so p99 is near 1 s and p90
    // far above the normal sub-millisecond latency. A generator that timed
    // from the actual send would show a single slow request (p99 ~ 1 ms).
    let seen = Arc::new(Seen {
        stall: Some((100, Duration::from_secs(1))),
        ..Seen::default()
    });
    let addr = serve(Arc::clone(&seen)).await;
    let r = run(config(
        addr,
        Load::constant(100.0, Duration::from_secs(4)),
        2,
    ))
    .await;
    let d = r.http_req_duration;
    assert_eq!(r.http_reqs.count, 400);
    assert!(d.max >= 950.0, "{d:?}");
    assert!(d.p99 >= 800.0, "p99 {} ms hides the stall: {d:?}", d.p99);
    assert!(d.p90 >= 200.0, "p90 {} ms hides the stall: {d:?}", d.p90);
    assert!(d.med < 100.0, "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramping_stages_send_what_the_schedule_holds() {
    let seen = Arc::new(Seen::default());
    let addr = serve(Arc::clone(&seen)).await;
    let load = Load::Rate {
        start_rate: 0.0,
        stages: vec![
            "1s:200".parse().unwrap(),
            "1s:200".parse().unwrap(),
            "1s:0".parse().unwrap(),
        ],
    };
    let r = run(config(addr, load, 4)).await;
    // 100 + 200 + 100 requests.
    assert_eq!(r.http_reqs.count, 400);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 400);
    let arrivals = seen.arrivals.lock().unwrap().clone();
    let first = arrivals[0];
    let in_first_half = arrivals
        .iter()
        .filter(|t| t.duration_since(first) < Duration::from_millis(500))
        .count();
    // 0 -> 100/s over the first half second: 25 requests.
    assert!((20..=30).contains(&in_first_half), "{in_first_half}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_the_run_early_and_says_so() {
    let seen = Arc::new(Seen::default());
    let addr = serve(Arc::clone(&seen)).await;
    let stop = CancellationToken::new();
    let canceller = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let c = config(addr, Load::constant(100.0, Duration::from_secs(30)), 2);
    let r = bench::run(c, &Quiet, None, stop).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(r.interrupted);
    assert!(r.dropped > 2000, "{}", r.dropped);
    assert_eq!(r.http_reqs.count, seen.requests.load(Ordering::SeqCst));
}

/// How the hand-written server below answers.
#[derive(Clone, Copy)]
enum Framing {
    /// In turn: `100 Continue` then a chunked body; a `Content-Length` body
    /// with `Connection: close`; an HTTP/1.0 body ended by closing.
    Mixed,
    /// HTTP/1.1 with `Content-Length`; a connection idle for
    /// [`KEEP_ALIVE`] is closed without notice (a keep-alive timeout on the
    /// server's side).
    SilentClose,
}

/// How long a `SilentClose` server keeps an idle connection.
const KEEP_ALIVE: Duration = Duration::from_millis(10);

/// A minimal HTTP/1.1 server written on a raw socket, so the answers'
/// framing is exactly what the test asks for; counts requests.
async fn raw_server(framing: Framing, served: Arc<AtomicU64>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: the head, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    let n = served.fetch_add(1, Ordering::SeqCst);
                    let (answer, close): (&[u8], bool) = match (framing, n % 3) {
                        (Framing::Mixed, 0) => (
                            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"ids\"\r\n7\r\n:[\"x\"]}\r\n0\r\nX-Trailer: 1\r\n\r\n",
                            false,
                        ),
                        (Framing::Mixed, 1) => (
                            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                            true,
                        ),
                        (Framing::Mixed, _) => (b"HTTP/1.0 200 OK\r\n\r\n{\"ids\":[]}", true),
                        (Framing::SilentClose, _) => {
                            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false)
                        }
                    };
                    if sock.write_all(answer).await.is_err() || close {
                        let _ = sock.shutdown().await;
                        return;
                    }
                    if matches!(framing, Framing::SilentClose) && buf.is_empty() {
                        let mut chunk = [0u8; 4096];
                        match tokio::time::timeout(KEEP_ALIVE, sock.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            Ok(_) => return,
                            Err(_) => {
                                let _ = sock.shutdown().await;
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_closing_and_http_1_0_answers_are_read_and_counted() {
    let served = Arc::new(AtomicU64::new(0));
    let addr = raw_server(Framing::Mixed, Arc::clone(&served)).await;
    let r = run(config(
        addr,
        Load::Max {
            duration: Duration::from_millis(800),
        },
        4,
    ))
    .await;
    let n = served.load(Ordering::SeqCst);
    assert!(n >= 30, "only {n} requests");
    assert_eq!(r.http_reqs.count, n);
    assert_eq!(r.http_req_failed.count, 0, "{:?}", r.errors);
    let created = r.status_codes.get("201").copied().unwrap_or(0);
    let ok = r.status_codes.get("200").copied().unwrap_or(0);
    assert_eq!(created + ok, n);
    // Every third answer is the 201; the workers run concurrently, so allow one per worker.
    assert!(created.abs_diff(n / 3) <= 4, "{created} of {n}");

    // A server that drops keep-alive connections idle for 10 ms without
    // notice, and requests 100 ms apart on each connection: every connection
    // is dropped between requests, and replaced before the next one, not
    // counted as failed (without the check, nearly every request after the
    // first on a connection would fail). Only a close that races a request
    // (the server's timer starved until the next request is on its way)
    // fails one, and is counted as the failure it is.
    let served = Arc::new(AtomicU64::new(0));
    let addr = raw_server(Framing::SilentClose, Arc::clone(&served)).await;
    let r = run(config(
        addr,
        Load::constant(20.0, Duration::from_secs(2)),
        2,
    ))
    .await;
    assert!(r.http_reqs.count >= 38, "{}", r.http_reqs.count);
    assert_eq!(
        r.http_reqs.count - r.http_req_failed.count,
        served.load(Ordering::SeqCst),
        "{:?}",
        r.errors
    );
    assert!(r.http_req_failed.count <= 1, "{:?}", r.errors);
}
