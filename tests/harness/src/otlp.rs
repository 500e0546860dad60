//! An OTLP/HTTP trace receiver: `POST /v1/traces` with an
//! `ExportTraceServiceRequest` in protobuf (what OpenTelemetry SDKs send over
//! `http/protobuf`), decoded with the OTLP definitions of
//! `opentelemetry-proto` and kept as flat [`ReceivedSpan`]s for assertions.
//! One thread accepts on a free loopback port and one serves each
//! connection (keep-alive, `Content-Length` bodies: the shape exporters
//! use); anything else is answered 4xx and counted as rejected.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;

use crate::error::{Error, Result};

/// A span as received, its ids in lowercase hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The `service.name` of the resource that sent it.
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// OTLP `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// Attributes, each value as text (strings unquoted).
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    exports: AtomicUsize,
    rejected: AtomicUsize,
}

/// The receiver; dropping it stops it.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
            what: "bind the OTLP receiver".into(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            what: "the OTLP receiver's address".into(),
            source,
        })?;
        let received = Arc::new(Received::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("otlp-receiver".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        let received = Arc::clone(&received);
                        let _ = std::thread::Builder::new()
                            .name("otlp-connection".into())
                            .spawn(move || serve(stream, &received));
                    }
                })
                .map_err(|source| Error::Io {
                    what: "start the OTLP receiver's thread".into(),
                    source,
                })?
        };
        Ok(Self {
            addr,
            received,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT` (exporters add `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Export requests accepted so far.
    pub fn exports(&self) -> usize {
        self.received.exports.load(Ordering::SeqCst)
    }

    /// Requests answered 4xx (wrong path, method or body).
    pub fn rejected(&self) -> usize {
        self.received.rejected.load(Ordering::SeqCst)
    }

    /// Waits until at least `spans` spans of the trace `trace_id` (32 hex
    /// digits) arrived; those spans, in arrival order.
    pub fn wait_for_trace(
        &self,
        trace_id: &str,
        spans: usize,
        timeout: Duration,
    ) -> std::result::Result<Vec<ReceivedSpan>, String> {
        self.wait_for(
            &format!("{spans} spans of trace {trace_id}"),
            timeout,
            |received| {
                let of: Vec<ReceivedSpan> = received
                    .iter()
                    .filter(|s| s.trace_id == trace_id)
                    .cloned()
                    .collect();
                (of.len() >= spans).then_some(of)
            },
        )
    }

    /// Polls every 50 ms until `check` finds what it wants in the spans
    /// received, or fails after `timeout` with what arrived.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[ReceivedSpan]) -> Option<T>,
    ) -> std::result::Result<T, String> {
        let start = Instant::now();
        loop {
            let spans = self.spans();
            if let Some(found) = check(&spans) {
                return Ok(found);
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "the OTLP receiver did not get {what} within {timeout:?}; it got {} spans in {} exports ({} rejected): {spans:#?}",
                    spans.len(),
                    self.exports(),
                    self.rejected()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one connection's requests until it closes.
fn serve(stream: TcpStream, received: &Received) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut length = 0usize;
        let mut encoded = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "content-encoding" => encoded = !value.eq_ignore_ascii_case("identity"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = answer(&request_line, encoded, &body, received);
        if status != 200 {
            received.rejected.fetch_add(1, Ordering::SeqCst);
        }
        let reason = if status == 200 { "OK" } else { "Bad Request" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(request_line: &str, encoded: bool, body: &[u8], received: &Received) -> u16 {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "POST" || path != "/v1/traces" {
        return 404;
    }
    if encoded {
        return 415;
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return 400;
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    received.exports.fetch_add(1, Ordering::SeqCst);
    received
        .spans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(spans);
    200
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(text).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(l)) => format!("{:?}", attributes(&l.values)),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn post(addr: &str, path: &str, body: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    }

    #[test]
    fn decodes_posted_spans_and_rejects_the_rest() {
        let receiver = OtlpReceiver::start().unwrap();
        let addr = receiver
            .endpoint()
            .trim_start_matches("http://")
            .to_string();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("svc".into())),
                        }),
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01; 8],
                        name: "op".into(),
                        kind: 3,
                        attributes: vec![KeyValue {
                            key: "attempt".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(2)),
                            }),
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert!(post(&addr, "/v1/traces", &request.encode_to_vec()).contains(" 200 "));
        assert!(post(&addr, "/v1/metrics", b"").contains(" 404 "));
        assert!(post(&addr, "/v1/traces", b"\xff\xff").contains(" 400 "));
        let spans = receiver.spans();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].service, "svc");
        assert_eq!(spans[0].trace_id, "ab".repeat(16));
        assert_eq!(spans[0].span_id, "0101010101010101");
        assert_eq!(spans[0].parent_span_id, "");
        assert_eq!(spans[0].attr("attempt"), Some("2"));
        assert_eq!((receiver.exports(), receiver.rejected()), (1, 2));
    }
}
