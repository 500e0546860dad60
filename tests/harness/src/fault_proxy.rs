//! A fault-injecting HTTP proxy for AWS SDK traffic: listens on a free
//! 127.0.0.1 port, forwards requests to an upstream (moto) and answers a
//! share of them itself with an error AWS could send, in the wire shape of
//! the request's protocol, so the SDK's retry policy (and the code above
//! it) is exercised for real:
//!
//! - a throttling error: HTTP 400 `ThrottlingException` for awsJson
//!   (`X-Amz-Target`), `Throttling` in a query-protocol `<ErrorResponse>`,
//!   `RequestLimitExceeded` in EC2's `<Response>`; HTTP 429
//!   `TooManyRequestsException` for restJson1 (API Gateway);
//! - `503 SlowDown` (`ServiceUnavailableException` for restJson1);
//! - `500 InternalError` (`InternalServerErrorException` for restJson1).
//!
//! A faulted request never reaches the upstream (so it is always safe to
//! retry). Requests are counted by API action ([`FaultProxy::actions`]):
//! with a rate of 0 the proxy only counts. Which requests fail is decided by a seeded generator, in order
//! of arrival: the same seed gives the same fault sequence.
//!
//! Blocking std code (one thread per client connection), like the rest of
//! the harness. Keep-alive connections are served request by request; each
//! forwarded request opens a fresh upstream connection.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};

const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// What the proxy did so far.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    faults: AtomicU64,
    throttles: AtomicU64,
    unavailable: AtomicU64,
    internal: AtomicU64,
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests received.
    pub requests: u64,
    /// Requests answered with an injected error.
    pub faults: u64,
    /// ... of which throttling errors (400).
    pub throttles: u64,
    /// ... of which 503 SlowDown.
    pub unavailable: u64,
    /// ... of which 500 InternalError.
    pub internal: u64,
}

/// splitmix64: tiny, seedable, good enough to pick faults.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Shared {
    upstream: String,
    rate: f64,
    rng: Mutex<Rng>,
    counters: Counters,
    stop: AtomicBool,
    /// Requests still forwarded before every one is faulted (`None`: by `rate`).
    budget: Mutex<Option<u64>>,
    /// Requests by API action (`SendMessageBatch`, ...).
    actions: Mutex<BTreeMap<String, u64>>,
}

/// A running proxy; stopped on drop.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("upstream", &self.shared.upstream)
            .field("rate", &self.shared.rate)
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:PORT`) that faults a share
    /// `rate` (0.0-1.0) of requests, chosen by `seed`.
    pub fn start(upstream: &str, rate: f64, seed: u64) -> Result<Self> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Io { what, source }
        };
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(io("bind the fault proxy's port"))?;
        let port = listener
            .local_addr()
            .map_err(io("read the fault proxy's port"))?
            .port();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            rate: rate.clamp(0.0, 1.0),
            rng: Mutex::new(Rng(seed)),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            budget: Mutex::new(None),
            actions: Mutex::new(BTreeMap::new()),
        });
        let accept_shared = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if accept_shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = accept_shared.clone();
                    let _ = std::thread::Builder::new()
                        .name("fault-proxy-conn".into())
                        .spawn(move || {
                            let _ = serve(conn, &shared);
                        });
                }
            })
            .map_err(io("start the fault proxy's thread"))?;
        Ok(Self {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, forwards the next `n` requests and answers every one
    /// after them `503` (an outage that starts at a known request).
    pub fn fail_after(&self, n: u64) {
        *self.shared.budget.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
    }

    /// Requests so far by API action (`SendMessageBatch`, `ReceiveMessage`,
    /// ...; faulted ones included): the proxy with rate 0 counts calls.
    pub fn actions(&self) -> BTreeMap<String, u64> {
        self.shared
            .actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> FaultStats {
        let c = &self.shared.counters;
        FaultStats {
            requests: c.requests.load(Ordering::SeqCst),
            faults: c.faults.load(Ordering::SeqCst),
            throttles: c.throttles.load(Ordering::SeqCst),
            unavailable: c.unavailable.load(Ordering::SeqCst),
            internal: c.internal.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// One request as read from the client.
struct Request {
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The API action: the `X-Amz-Target` operation (JSON protocols), else
    /// the query protocol's `Action`, else the method and path.
    fn action(&self) -> String {
        if let Some(target) = self.header("x-amz-target") {
            return target.rsplit('.').next().unwrap_or(target).to_owned();
        }
        let form = String::from_utf8_lossy(&self.body);
        let query = self.head.split(' ').nth(1).unwrap_or_default();
        form.split('&')
            .chain(query.split_once('?').map_or("", |(_, q)| q).split('&'))
            .find_map(|pair| pair.strip_prefix("Action="))
            .map_or_else(
                || {
                    self.head
                        .split(" HTTP/")
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                },
                str::to_owned,
            )
    }

    /// The signing service from `Authorization` (`.../REGION/SERVICE/aws4_request`).
    fn service(&self) -> String {
        self.header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').nth(3))
            .unwrap_or_default()
            .to_owned()
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = String::new();
    if reader.read_line(&mut head)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
    } else {
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        head: head.trim_end().to_owned(),
        headers,
        body,
    }))
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    while let Some(req) = read_request(&mut reader)? {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let c = &shared.counters;
        c.requests.fetch_add(1, Ordering::SeqCst);
        *shared
            .actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(req.action())
            .or_default() += 1;
        let budgeted = {
            let mut budget = shared.budget.lock().unwrap_or_else(|e| e.into_inner());
            match budget.as_mut() {
                Some(0) => Some(true),
                Some(n) => {
                    *n -= 1;
                    Some(false)
                }
                None => None,
            }
        };
        let (fault, pick) = match budgeted {
            Some(fault) => (fault, 1),
            None => {
                let mut rng = shared.rng.lock().unwrap_or_else(|e| e.into_inner());
                (rng.unit() < shared.rate, rng.next() % 3)
            }
        };
        let response = if fault {
            c.faults.fetch_add(1, Ordering::SeqCst);
            match pick {
                0 => {
                    c.throttles.fetch_add(1, Ordering::SeqCst);
                    fault_response(&req, 400)
                }
                1 => {
                    c.unavailable.fetch_add(1, Ordering::SeqCst);
                    fault_response(&req, 503)
                }
                _ => {
                    c.internal.fetch_add(1, Ordering::SeqCst);
                    fault_response(&req, 500)
                }
            }
        } else {
            match forward(&req, &shared.upstream) {
                Ok(r) => r,
                Err(e) => plain(
                    502,
                    "text/plain",
                    None,
                    format!("fault proxy: upstream: {e}"),
                ),
            }
        };
        writer.write_all(&response)?;
        writer.flush()?;
    }
    Ok(())
}

fn plain(status: u16, content_type: &str, code: Option<&str>, body: String) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: fault-proxy\r\n",
        body.len()
    );
    if let Some(code) = code {
        out.push_str(&format!("x-amzn-ErrorType: {code}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// The wire protocol of a request, which its error must be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// awsJson1.0/1.1: `X-Amz-Target` names the operation.
    AwsJson,
    /// restJson1 (API Gateway): operations by method and path, JSON errors
    /// with the code in `x-amzn-ErrorType`; throttling is 429.
    RestJson,
    /// EC2's query protocol: `<Response><Errors>`.
    Ec2,
    /// The query protocol of IAM, STS, Auto Scaling, ElastiCache, ...
    Query,
}

/// Services on restJson1 among those stackctl calls.
const REST_JSON_SERVICES: &[&str] = &["apigateway"];

fn protocol(req: &Request) -> Protocol {
    let service = req.service();
    if req.header("x-amz-target").is_some() {
        Protocol::AwsJson
    } else if REST_JSON_SERVICES.contains(&service.as_str()) {
        Protocol::RestJson
    } else if service == "ec2" {
        Protocol::Ec2
    } else if req
        .header("content-type")
        .is_some_and(|c| c.contains("json"))
    {
        Protocol::AwsJson
    } else {
        Protocol::Query
    }
}

/// An AWS error in the request's protocol shape.
fn fault_response(req: &Request, status: u16) -> Vec<u8> {
    let protocol = protocol(req);
    let (status, code, message) = match (status, protocol) {
        (400, Protocol::RestJson) => (
            429,
            "TooManyRequestsException",
            "Too Many Requests (fault proxy)",
        ),
        (400, Protocol::AwsJson) => (400, "ThrottlingException", "Rate exceeded (fault proxy)"),
        (400, Protocol::Ec2) => (
            400,
            "RequestLimitExceeded",
            "Request limit exceeded (fault proxy)",
        ),
        (400, Protocol::Query) => (400, "Throttling", "Rate exceeded (fault proxy)"),
        (503, Protocol::RestJson) => (
            503,
            "ServiceUnavailableException",
            "Service unavailable (fault proxy)",
        ),
        (503, _) => (
            503,
            "SlowDown",
            "Please reduce your request rate (fault proxy)",
        ),
        (_, Protocol::RestJson) => (
            500,
            "InternalServerErrorException",
            "Internal server error (fault proxy)",
        ),
        _ => (
            500,
            "InternalError",
            "We encountered an internal error (fault proxy)",
        ),
    };
    match protocol {
        Protocol::AwsJson => {
            let body = format!(r#"{{"__type":"{code}","message":"{message}"}}"#);
            plain(status, "application/x-amz-json-1.1", Some(code), body)
        }
        Protocol::RestJson => {
            let body = format!(r#"{{"message":"{message}"}}"#);
            plain(status, "application/json", Some(code), body)
        }
        Protocol::Ec2 => plain(
            status,
            "text/xml",
            None,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
            ),
        ),
        Protocol::Query => plain(
            status,
            "text/xml",
            None,
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>",
                if status == 400 { "Sender" } else { "Receiver" }
            ),
        ),
    }
}

/// Sends the request upstream on a fresh connection and returns the
/// response re-framed with a Content-Length (keep-alive towards the client).
fn forward(req: &Request, upstream: &str) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut out = format!("{}\r\n", req.head);
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        req.body.len()
    ));
    up.write_all(out.as_bytes())?;
    up.write_all(&req.body)?;
    up.flush()?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("incomplete upstream response"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("HTTP/1.1 502 Bad Gateway");
    let mut headers = Vec::new();
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.trim().eq_ignore_ascii_case("chunked");
            continue;
        }
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
            continue;
        }
        headers.push(format!("{k}: {}", v.trim()));
    }
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    let mut response = format!("{status_line}\r\n");
    for h in headers {
        response.push_str(&h);
        response.push_str("\r\n");
    }
    response.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

fn dechunk(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = |m: &str| std::io::Error::other(m.to_owned());
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&rest[..eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let picks = |seed| {
            let mut rng = Rng(seed);
            (0..200).map(|_| rng.unit() < 0.1).collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert_ne!(picks(7), picks(8));
        let share = picks(7).iter().filter(|f| **f).count();
        assert!((8..=40).contains(&share), "about 10% of 200: {share}");
    }

    #[test]
    fn faults_take_the_request_protocol_shape() {
        let req = |headers: Vec<(&str, &str)>| Request {
            head: "POST / HTTP/1.1".into(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            body: Vec::new(),
        };
        let json = String::from_utf8(fault_response(
            &req(vec![(
                "X-Amz-Target",
                "AmazonEC2ContainerServiceV20141113.ListClusters",
            )]),
            400,
        ))
        .unwrap();
        assert!(json.starts_with("HTTP/1.1 400"), "{json}");
        assert!(json.contains(r#""__type":"ThrottlingException""#), "{json}");
        let ec2 = String::from_utf8(fault_response(
            &req(vec![(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host",
            )]),
            400,
        ))
        .unwrap();
        assert!(ec2.contains("<Code>RequestLimitExceeded</Code>"), "{ec2}");
        let iam = String::from_utf8(fault_response(
            &req(vec![(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request",
            )]),
            500,
        ))
        .unwrap();
        assert!(iam.starts_with("HTTP/1.1 500"), "{iam}");
        assert!(iam.contains("<Code>InternalError</Code>"), "{iam}");
        // API Gateway (restJson1): a GET has no body and no target header,
        // and its SDK reads only JSON errors; throttling is 429.
        let gateway = String::from_utf8(fault_response(
            &req(vec![(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/apigateway/aws4_request",
            )]),
            400,
        ))
        .unwrap();
        assert!(gateway.starts_with("HTTP/1.1 429"), "{gateway}");
        assert!(
            gateway.contains("x-amzn-ErrorType: TooManyRequestsException"),
            "{gateway}"
        );
        assert!(gateway.contains(r#"{"message":"#), "{gateway}");
    }
}
