//! The `http` driver: POSTs the run context as JSON to the step's URL. A 2xx
//! JSON body (or an empty one, as `null`) is the output; 5xx, 408, 429,
//! timeouts and connection errors are retryable; any other status fails the
//! step. Redirects are not followed (a POST must not silently become a GET).
//! A response body larger than `max_response_bytes` fails the step (it is
//! read no further): an output is stored with the run, and a runaway service
//! must not take the executor's memory.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::Value;

use super::{Driver, DriverError, StepContext};
use crate::functions::Step;

/// How much of an error response body goes into the recorded error.
const ERROR_BODY_CHARS: usize = 512;

/// The http driver; one connection pool shared by every step.
#[derive(Debug, Clone)]
pub struct HttpDriver {
    client: reqwest::Client,
    default_timeout: Duration,
    max_response_bytes: usize,
}

/// The default cap on a response body (`drivers.http.max_response_bytes`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

impl HttpDriver {
    /// A driver whose attempts time out after `default_timeout` unless the
    /// step sets its own `timeout`, reading at most
    /// [`DEFAULT_MAX_RESPONSE_BYTES`] of a response.
    pub fn new(default_timeout: Duration) -> Result<Self, DriverError> {
        Self::with_limit(default_timeout, DEFAULT_MAX_RESPONSE_BYTES)
    }

    /// A driver that reads at most `max_response_bytes` of a response.
    pub fn with_limit(
        default_timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, DriverError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stackctl-engine/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DriverError::Permanent(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            default_timeout,
            max_response_bytes,
        })
    }

    /// The body, unless it is larger than the cap (then a permanent error:
    /// the same service would answer the same way again).
    async fn body(
        &self,
        url: &str,
        status: StatusCode,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, DriverError> {
        let cap = self.max_response_bytes;
        let too_large = || {
            DriverError::Permanent(format!(
                "{url} answered {status} with a body larger than {cap} bytes \
                 (drivers.http.max_response_bytes)"
            ))
        };
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(url, e))? {
            if body.len() + chunk.len() > cap {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Whether a non-2xx status is worth retrying.
pub fn status_is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

fn snippet(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(ERROR_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

#[async_trait]
impl Driver for HttpDriver {
    async fn run(&self, step: &Step, ctx: &StepContext) -> Result<Value, DriverError> {
        // No span under an unsampled attempt (which has none): it would
        // be the root of a trace of its own.
        if !crate::trace::enabled() || tracing::Span::current().is_none() {
            return self.call(step, ctx).await;
        }
        let url = step.http.as_ref().map(|h| h.url.as_str()).unwrap_or("");
        let parsed = reqwest::Url::parse(url).ok();
        // An HTTP client span as OpenTelemetry's conventions name it.
        let span = tracing::info_span!(
            "POST",
            otel.kind = "client",
            http.request.method = "POST",
            url.full = %url,
            server.address = parsed.as_ref().and_then(|u| u.host_str()).unwrap_or(""),
            server.port = parsed.as_ref().and_then(|u| u.port_or_known_default()).unwrap_or(0),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        super::in_client_span(span, self.call(step, ctx)).await
    }
}

impl HttpDriver {
    /// One attempt, inside the driver call's span when its attempt has a
    /// (sampled) span: the `traceparent` header names that span.
    async fn call(&self, step: &Step, ctx: &StepContext) -> Result<Value, DriverError> {
        let Some(http) = &step.http else {
            return Err(DriverError::Permanent(format!(
                "step `{}` has no http settings",
                step.id
            )));
        };
        let timeout = http
            .timeout
            .map(|t| t.std())
            .unwrap_or(self.default_timeout);
        let mut request = self.client.post(&http.url).timeout(timeout).json(ctx);
        for (name, value) in &http.headers {
            request = request.header(name, value);
        }
        if let Some(traceparent) = crate::trace::current_traceparent()
            && !http
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case(crate::trace::TRACEPARENT))
        {
            request = request.header(crate::trace::TRACEPARENT, traceparent);
        }
        let sent = request.send().await;
        if crate::trace::enabled() {
            let span = tracing::Span::current();
            match &sent {
                Ok(r) if !r.status().is_success() => {
                    span.record("http.response.status_code", r.status().as_u16());
                    span.record("error.type", r.status().as_str());
                }
                Ok(r) => {
                    span.record("http.response.status_code", r.status().as_u16());
                }
                Err(e) if e.is_timeout() => {
                    span.record("error.type", "timeout");
                }
                Err(_) => {
                    span.record("error.type", "_OTHER");
                }
            }
        }
        let response = sent.map_err(|e| classify(&http.url, e))?;
        let status = response.status();
        let body = self.body(&http.url, status, response).await?;
        if status.is_success() {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body).map_err(|e| {
                DriverError::Permanent(format!(
                    "{} answered {status} with a body that is not JSON ({e}): {}",
                    http.url,
                    snippet(&String::from_utf8_lossy(&body))
                ))
            });
        }
        let message = format!(
            "{} answered {status}: {}",
            http.url,
            snippet(&String::from_utf8_lossy(&body))
        );
        if status.is_redirection() {
            Err(DriverError::Permanent(format!(
                "{message} (redirects are not followed)"
            )))
        } else if status_is_retryable(status) {
            Err(DriverError::Retryable(message))
        } else {
            Err(DriverError::Permanent(message))
        }
    }
}

fn classify(url: &str, e: reqwest::Error) -> DriverError {
    if e.is_timeout() {
        DriverError::Retryable(format!("{url} timed out"))
    } else if e.is_builder() {
        DriverError::Permanent(format!("invalid request to {url}: {e}"))
    } else {
        // Connection refused/reset, DNS, a body cut short: the service may
        // be restarting, so a later attempt can succeed.
        let mut message = format!("request to {url} failed: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        DriverError::Retryable(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for code in [500, 502, 503, 504, 408, 429] {
            assert!(
                status_is_retryable(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(
                !status_is_retryable(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn step(url: String) -> Step {
        serde_json::from_value(
            serde_json::json!({"id": "s", "http": {"url": url, "headers": {"x-test": "yes"}}}),
        )
        .unwrap()
    }

    fn ctx() -> StepContext {
        StepContext {
            event: serde_json::json!({"name": "e"}),
            events: None,
            steps: serde_json::Map::new(),
            run_id: "r".into(),
            function_id: "f".into(),
            step_id: "s".into(),
            attempt: 1,
        }
    }

    #[tokio::test]
    async fn answers_are_classified() {
        use axum::http::{HeaderMap, StatusCode as S};
        use axum::routing::post;
        let app = axum::Router::new()
            .route("/json", post(|h: HeaderMap, body: String| async move {
                let ctx: Value = serde_json::from_str(&body).unwrap();
                axum::Json(serde_json::json!({"header": h["x-test"].to_str().unwrap(), "run": ctx["run_id"]}))
            }))
            .route("/empty", post(|| async { S::NO_CONTENT }))
            .route("/text", post(|| async { "not json" }))
            .route("/redirect", post(|| async { (S::FOUND, [("location", "/json")]) }))
            .route("/busy", post(|| async { (S::TOO_MANY_REQUESTS, "slow down") }))
            .route("/gone", post(|| async { (S::GONE, "no such thing") }))
            .route("/huge", post(|| async { "x".repeat(4096) }))
            .route(
                "/stream",
                post(|| async {
                    // No Content-Length: the cap applies while reading.
                    let chunks = (0..64).map(|_| Ok::<_, std::io::Error>("y".repeat(256)));
                    axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                }),
            );
        let url = serve(app).await;
        let d = HttpDriver::with_limit(Duration::from_secs(5), 1024).unwrap();
        let out = d.run(&step(format!("{url}/json")), &ctx()).await.unwrap();
        assert_eq!(out, serde_json::json!({"header": "yes", "run": "r"}));
        assert_eq!(
            d.run(&step(format!("{url}/empty")), &ctx()).await.unwrap(),
            Value::Null
        );
        let e = d
            .run(&step(format!("{url}/text")), &ctx())
            .await
            .unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("not JSON"),
            "{e}"
        );
        let e = d
            .run(&step(format!("{url}/redirect")), &ctx())
            .await
            .unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("redirects"),
            "{e}"
        );
        let e = d
            .run(&step(format!("{url}/busy")), &ctx())
            .await
            .unwrap_err();
        assert!(
            e.is_retryable() && e.to_string().contains("slow down"),
            "{e}"
        );
        let e = d
            .run(&step(format!("{url}/gone")), &ctx())
            .await
            .unwrap_err();
        assert!(!e.is_retryable() && e.to_string().contains("410"), "{e}");
        for path in ["huge", "stream"] {
            let e = d
                .run(&step(format!("{url}/{path}")), &ctx())
                .await
                .unwrap_err();
            assert!(
                !e.is_retryable() && e.to_string().contains("larger than 1024 bytes"),
                "{path}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn connection_errors_are_retryable() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = HttpDriver::new(Duration::from_secs(5)).unwrap();
        let e = d
            .run(&step(format!("http://127.0.0.1:{port}/x")), &ctx())
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("request to"), "{e}");
    }

    #[test]
    fn snippets_are_bounded() {
        let long = "x".repeat(2000);
        assert_eq!(snippet(&long).chars().count(), ERROR_BODY_CHARS + 1);
        assert_eq!(snippet("  short \n"), "short");
    }
}
