//! Traces and the process's log subscriber: one trace per event, from the
//! event API's ingest span through the runner's run span to each step
//! attempt and its driver call on an executor, exported over OTLP
//! (HTTP/protobuf) and configured by the standard `OTEL_*` variables only.
//!
//! Off unless an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! or `OTEL_EXPORTER_OTLP_ENDPOINT`; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turn it off again). Off, no OpenTelemetry
//! layer is installed and the engine creates none of its spans (every call
//! site asks [`enabled`], one relaxed atomic load), so logging is what it was.
//! On, spans go through a batch span processor, flushed by
//! [`Telemetry::shutdown`]; the SDK reads the sampler
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the resource
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) and the exporter's
//! endpoint, headers and timeout from the environment.
//!
//! Context crosses processes as a W3C `traceparent` string: on each event of
//! an event-stream message (taken off the event by the runner, so no one
//! else sees it) and on the run record (read by executors with the run for
//! every job). Its sampled flag travels with it, so a parent-based sampler
//! decides once per trace, at ingestion.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, SpanId, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Span, Subscriber};
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// The header and variable names of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces (and so creates its spans).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the `OTEL_*` variables (read through `var`) ask for traces.
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let is =
        |name: &str, value: &str| var(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value));
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    if is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none") {
        return false;
    }
    set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT")
}

/// The tracer provider of a process that exports traces.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter. Call it
    /// outside the async runtime: the exporter's HTTP client blocks.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: traces: cannot flush the last spans: {e}");
        }
    }
}

/// Why traces could not be set up (logging then goes on without them).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The OTLP exporter could not be built from the environment.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// Installs the process's subscriber: logs on stderr in `format` (JSON
/// lines carry `trace_id` and `span_id` inside a traced span), filtered by
/// `RUST_LOG` (default `info`), and the OpenTelemetry layer when the
/// environment asks for traces. `service` names the process when neither
/// `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` does. A second call
/// keeps the first subscriber. Call it outside the async runtime.
pub fn init(format: LogFormat, service: &str) -> Option<Telemetry> {
    let telemetry = if wanted(|name| std::env::var(name).ok()) {
        match provider(service) {
            Ok(provider) => Some(Telemetry { provider }),
            Err(e) => {
                eprintln!("warning: traces are off: {e}");
                None
            }
        }
    } else {
        None
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: the local provider sends logs to files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds(tracing_subscriber::fmt::format().json()))
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![logs];
    if let Some(t) = &telemetry {
        // Only the engine's own spans: those of its libraries (hyper,
        // reqwest, the SDKs) would multiply the spans of every request.
        let targets =
            tracing_subscriber::filter::Targets::new().with_target("engine", tracing::Level::INFO);
        // Per span, none of the layer's extras (busy and idle times; thread,
        // source location, target and level attributes; the OpenTelemetry
        // context made current on every poll): they cost on every request,
        // sampled or not, and parents come from tracing's own span tree.
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(t.provider.tracer("stackctl-engine"))
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false)
                .with_target(false)
                .with_level(false)
                .with_context_activation(false)
                .with_filter(targets)
                .boxed(),
        );
    }
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        // Another subscriber is in place (a second call): its spans would
        // not reach this provider, so this process does not trace.
        if let Some(t) = telemetry {
            t.shutdown();
        }
        return None;
    }
    if telemetry.is_some() {
        ENABLED.store(true, Ordering::Relaxed);
    }
    telemetry
}

fn provider(service: &str) -> Result<SdkTracerProvider, TraceError> {
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let resource = if named {
        Resource::builder().build()
    } else {
        Resource::builder()
            .with_service_name(service.to_string())
            .build()
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Makes `traceparent` (a W3C `traceparent` value) the parent of `span`,
/// which must not have been entered yet; a missing or malformed value
/// leaves it where it is (a new trace, unless a span is current).
pub fn continue_from(span: &Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(parse) {
        let _ = span.set_parent(cx);
    }
    // Started now, so that log lines inside it find its ids (the layer does
    // not start a span when it is entered: see `init`).
    let _ = span.context();
}

/// `span`'s context as a W3C `traceparent` value (sampled or not, so that
/// the next process follows the same decision); `None` when traces are off.
pub fn traceparent(span: &Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let remote = cx.span();
    let sc = remote.span_context();
    sc.is_valid().then(|| format_traceparent(sc))
}

/// The current span's context as a `traceparent` value; `None` when traces
/// are off or no span is current.
pub fn current_traceparent() -> Option<String> {
    traceparent(&Span::current())
}

/// Whether a `traceparent` value says its trace is sampled.
pub fn is_sampled(traceparent: &str) -> bool {
    split(traceparent).is_some_and(|(_, _, flags)| flags & TraceFlags::SAMPLED.to_u8() != 0)
}

/// The trace id of a `traceparent` value, if it parses and was sampled
/// (so the trace exists in the tracing backend).
pub fn sampled_trace_id(traceparent: &str) -> Option<String> {
    let (trace_id, _, flags) = split(traceparent)?;
    (flags & TraceFlags::SAMPLED.to_u8() != 0).then(|| trace_id.to_string())
}

fn format_traceparent(sc: &SpanContext) -> String {
    let mut out = String::with_capacity(55);
    let _ = write!(
        out,
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    out
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, ids not all zero.
fn split(value: &str) -> Option<(&str, &str, u8)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if version.len() != 2 || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) {
        return None;
    }
    // Version 00 has exactly four parts; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16)
        .ok()
        .filter(|_| flags.len() == 2)?;
    Some((trace_id, span_id, flags))
}

fn parse(value: &str) -> Option<Context> {
    let (trace_id, span_id, flags) = split(value)?;
    let sc = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    sc.is_valid()
        .then(|| Context::new().with_remote_span_context(sc))
}

/// The JSON event format with `trace_id` and `span_id` first when the event
/// is inside a span the OpenTelemetry layer follows. Outside one (always,
/// when traces are off) it is the inner format, unbuffered.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = if enabled() {
            ctx.lookup_current().and_then(|span| {
                let extensions = span.extensions();
                let data = extensions.get::<OtelData>()?;
                Some((data.trace_id()?, data.span_id()?))
            })
        } else {
            None
        };
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let list: Vec<(String, String)> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| list.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn traces_need_an_endpoint_and_can_be_turned_off() {
        assert!(!wanted(vars(&[])));
        assert!(!wanted(vars(&[
            ("OTEL_SERVICE_NAME", "api"),
            ("OTEL_TRACES_SAMPLER", "always_on")
        ])));
        assert!(!wanted(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318"
        )])));
        assert!(wanted(vars(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces"
        )])));
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(!wanted(vars(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!wanted(vars(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(wanted(vars(&[endpoint, ("OTEL_SDK_DISABLED", "false")])));
    }

    #[test]
    fn traceparents_parse_and_print_back() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse(value).expect("a valid traceparent");
        assert!(cx.span().span_context().is_remote());
        assert_eq!(format_traceparent(cx.span().span_context()), value);
        assert_eq!(
            sampled_trace_id(value).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(parse(unsampled).is_some());
        assert_eq!(sampled_trace_id(unsampled), None);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-zbf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
