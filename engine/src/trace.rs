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
//! [`Telemetry::shutdown`]; the SDK reads the resource
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) and the exporter's
//! endpoint, headers and timeout from the environment. The sampler
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) is built here by the
//! SDK's own rules ([`sampler_from`]) and given to the SDK, and the engine
//! asks it first ([`decide`]): a span that would not be sampled is not made
//! at all, only the `traceparent` (flags `00`) it would have had is passed
//! on, so an unsampled request or run costs no span.
//!
//! Context crosses processes as a W3C `traceparent` string: on each event of
//! an event-stream message (taken off the event by the runner, so no one
//! else sees it) and on the run record (read by executors with the run for
//! every job). Its sampled flag travels with it, so a parent-based sampler
//! decides once per trace, at ingestion.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SamplingDecision, SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceState,
    TracerProvider as _,
};
use opentelemetry::{Context, SpanId, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SdkTracerProvider, ShouldSample,
};
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

/// The sampler given to the SDK, set before [`ENABLED`].
static SAMPLER: OnceLock<Sampler> = OnceLock::new();

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

/// Why the environment's OTLP protocol will not be used, if it names one
/// other than the one this engine exports with (HTTP/protobuf): an
/// endpoint meant for gRPC (port 4317) then answers nothing useful.
pub fn protocol_warning(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let (name, value) = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| {
        var(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    })?;
    (value.trim() != "http/protobuf").then(|| {
        format!(
            "{name}={value} is not supported: traces go over OTLP/HTTP with protobuf (a collector's port 4318, path /v1/traces); set {name}=http/protobuf and point the endpoint at that port"
        )
    })
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
    let env = |name: &str| std::env::var(name).ok();
    let sampler = sampler_from(env);
    let telemetry = if wanted(env) {
        if let Some(warning) = protocol_warning(env) {
            eprintln!("warning: traces: {warning}");
        }
        match provider(service, sampler.clone()) {
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
        layers.push(otel_layer(&t.provider).boxed());
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
        let _ = SAMPLER.set(sampler);
        ENABLED.store(true, Ordering::Relaxed);
    }
    telemetry
}

/// The OpenTelemetry layer of `provider`, as [`init`] installs it.
fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // Only the engine's own spans: those of its libraries (hyper,
    // reqwest, the SDKs) would multiply the spans of every request.
    let targets =
        tracing_subscriber::filter::Targets::new().with_target("engine", tracing::Level::INFO);
    // Per span, none of the layer's extras (busy and idle times; thread,
    // source location, target and level attributes; the OpenTelemetry
    // context made current on every poll): they cost on every sampled
    // request, and parents come from tracing's own span tree.
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("stackctl-engine"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_level(false)
        .with_context_activation(false)
        .with_filter(targets)
}

/// The sampler that `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
/// (read through `var`) name, by the rules of `opentelemetry_sdk`'s
/// `Config::default` (0.31): exact lower-case names, a ratio that does not
/// parse as a float means 1.0, and anything else (unset, unknown,
/// `jaeger_remote`, `xray`) is `parentbased_always_on`. The SDK is given
/// this very sampler, so [`decide`] and the SDK cannot disagree.
pub fn sampler_from(var: impl Fn(&str) -> Option<String>) -> Sampler {
    let ratio = || {
        var("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|r| r.parse::<f64>().ok())
            .unwrap_or(1.0)
    };
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match var("OTEL_TRACES_SAMPLER").as_deref() {
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio()),
        Some("parentbased_always_off") => parent_based(Sampler::AlwaysOff),
        Some("parentbased_traceidratio") => parent_based(Sampler::TraceIdRatioBased(ratio())),
        _ => parent_based(Sampler::AlwaysOn),
    }
}

fn provider(service: &str, sampler: Sampler) -> Result<SdkTracerProvider, TraceError> {
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
        .with_sampler(sampler)
        .with_id_generator(Ids::default())
        .build())
}

thread_local! {
    /// The trace id [`Sampled::start`] decided on for the root span it is
    /// about to start on this thread.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Random ids, except that a root span started by [`Sampled::start`] gets
/// the trace id its sampling decision was made on (the SDK decides again
/// on that id, and comes to the same answer).
#[derive(Debug, Default)]
struct Ids(RandomIdGenerator);

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .take()
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

/// A span's fate, decided before it is made: see [`decide`].
pub enum Decision {
    /// Not sampled: make no span, and pass this context (flags `00`) on in
    /// its place, so the next process follows the same decision.
    Unsampled(Traceparent),
    /// Sampled: make the span and start it with [`Sampled::start`].
    Sampled(Sampled),
}

/// A sampled span's place: under a parent, or a root on a given trace id.
pub struct Sampled {
    parent: Option<Context>,
    trace_id: TraceId,
}

impl Sampled {
    /// Starts `span` (made, not entered yet) where the decision was made,
    /// and returns its `traceparent`; `None` if the OpenTelemetry layer
    /// does not follow `span`.
    pub fn start(self, span: &Span) -> Option<Traceparent> {
        match self.parent {
            Some(cx) => {
                let _ = span.set_parent(cx);
            }
            None => NEXT_TRACE_ID.set(Some(self.trace_id)),
        }
        // Started now, so that log lines inside it find its ids (the layer
        // does not start a span when it is entered: see `init`).
        let cx = span.context();
        // Unused if the layer does not follow `span`: not for the next one.
        NEXT_TRACE_ID.set(None);
        let span_ref = cx.span();
        let sc = span_ref.span_context();
        sc.is_valid().then(|| Traceparent::of(sc))
    }
}

/// Whether a span made under `parent` (a W3C `traceparent` value; missing
/// or malformed: a new trace) would be sampled, asked of the SDK's sampler
/// without making the span; `None` when traces are off. The built-in
/// samplers look only at the parent and the trace id.
pub fn decide(parent: Option<&str>) -> Option<Decision> {
    if !enabled() {
        return None;
    }
    Some(decide_with(SAMPLER.get()?, parent, None))
}

/// As [`decide`], except that a new trace's id is derived from `key` (a
/// run's id) instead of drawn at random: every process that starts the
/// same run without a parent (each runner ticking the same cron time)
/// puts its span in the one trace and comes to the same sampling decision.
pub fn decide_keyed(parent: Option<&str>, key: &str) -> Option<Decision> {
    if !enabled() {
        return None;
    }
    Some(decide_with(SAMPLER.get()?, parent, Some(key)))
}

/// The trace id a new trace keyed by `key` gets: the first 16 bytes of
/// its SHA-256 (uniform, as the ratio sampler expects of trace ids).
fn keyed_trace_id(key: &str) -> TraceId {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TraceId::from_bytes(bytes)
}

pub(crate) fn decide_with(sampler: &Sampler, parent: Option<&str>, key: Option<&str>) -> Decision {
    let ids = RandomIdGenerator::default();
    let parent = parent.and_then(parse);
    let trace_id = match (&parent, key) {
        (Some(cx), _) => cx.span().span_context().trace_id(),
        (None, Some(key)) => Some(keyed_trace_id(key))
            .filter(|id| *id != TraceId::INVALID)
            .unwrap_or_else(|| ids.new_trace_id()),
        (None, None) => ids.new_trace_id(),
    };
    let result =
        sampler.should_sample(parent.as_ref(), trace_id, "", &SpanKind::Internal, &[], &[]);
    match result.decision {
        SamplingDecision::Drop => Decision::Unsampled(Traceparent::new(
            trace_id,
            ids.new_span_id(),
            TraceFlags::default(),
        )),
        // Recorded (if not sampled) by the SDK too: it gets its span.
        SamplingDecision::RecordOnly | SamplingDecision::RecordAndSample => {
            Decision::Sampled(Sampled { parent, trace_id })
        }
    }
}

tokio::task_local! {
    static UNSAMPLED: Traceparent;
}

/// Runs `work` (an unsampled run's step attempt, which has no span) with
/// `traceparent` as its context: [`current_traceparent`] inside it passes
/// the unsampled decision on to HTTP and Docker steps.
pub async fn unsampled<F: std::future::Future>(traceparent: Traceparent, work: F) -> F::Output {
    UNSAMPLED.scope(traceparent, work).await
}

/// A W3C `traceparent` value of version `00` made here: 55 ASCII bytes,
/// no allocation.
#[derive(Clone, Copy)]
pub struct Traceparent([u8; 55]);

impl Traceparent {
    fn new(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        let mut put = |at: usize, bytes: &[u8]| {
            for (i, b) in bytes.iter().enumerate() {
                out[at + 2 * i] = HEX[usize::from(b >> 4)];
                out[at + 2 * i + 1] = HEX[usize::from(b & 0x0f)];
            }
        };
        put(3, &trace_id.to_bytes());
        put(36, &span_id.to_bytes());
        put(53, &[flags.to_u8()]);
        Self(out)
    }

    fn of(sc: &SpanContext) -> Self {
        Self::new(sc.trace_id(), sc.span_id(), sc.trace_flags())
    }

    /// The same trace and flags with a new span id: the context of a span
    /// that would be this one's child.
    fn child(&self) -> Self {
        let mut out = *self;
        let span_id = RandomIdGenerator::default().new_span_id();
        let fresh = Self::new(TraceId::INVALID, span_id, TraceFlags::default());
        out.0[36..52].copy_from_slice(&fresh.0[36..52]);
        out
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// The current span's context as a `traceparent` value, or inside
/// [`unsampled`] without a span, a child of its unsampled context; `None`
/// when traces are off or there is neither.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let span = Span::current();
    if span.is_none() {
        return UNSAMPLED
            .try_with(|tp| tp.child().as_str().to_string())
            .ok();
    }
    traceparent(&span)
}

/// The trace id of a `traceparent` value, if it parses and was sampled
/// (so the trace exists in the tracing backend).
pub fn sampled_trace_id(traceparent: &str) -> Option<String> {
    let (trace_id, _, flags) = split(traceparent)?;
    (flags & TraceFlags::SAMPLED.to_u8() != 0).then(|| trace_id.to_string())
}

fn format_traceparent(sc: &SpanContext) -> String {
    Traceparent::of(sc).as_str().to_string()
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

/// A tracer provider and subscriber as [`init`] makes them, exporting to
/// memory, for tests of code that makes spans.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Captured(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Captured {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// Runs `work` under a subscriber with the OpenTelemetry layer of a
    /// provider on `sampler`; returns what it exported.
    pub(crate) fn exported(sampler: &Sampler, work: impl FnOnce()) -> Vec<SpanData> {
        let captured = Captured::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(captured.clone())
            .with_sampler(sampler.clone())
            .with_id_generator(Ids::default())
            .build();
        let subscriber = tracing_subscriber::registry().with(otel_layer(&provider));
        tracing::subscriber::with_default(subscriber, work);
        let _ = provider.force_flush();
        captured.0.lock().unwrap().clone()
    }

    /// The sampler of `OTEL_TRACES_SAMPLER=parentbased_traceidratio` at `ratio`.
    pub(crate) fn parent_based_ratio(ratio: &str) -> Sampler {
        sampler_from(|name| match name {
            "OTEL_TRACES_SAMPLER" => Some("parentbased_traceidratio".to_string()),
            "OTEL_TRACES_SAMPLER_ARG" => Some(ratio.to_string()),
            _ => None,
        })
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

    /// The trace id a decision is on, and whether it is sampled.
    fn outcome(decision: Decision) -> (TraceId, bool) {
        match decision {
            Decision::Sampled(s) => (s.trace_id, true),
            Decision::Unsampled(tp) => {
                let id = tp.as_str().split('-').nth(1).unwrap().to_string();
                (TraceId::from_hex(&id).unwrap(), false)
            }
        }
    }

    #[test]
    fn runs_started_without_a_parent_share_a_trace_and_a_decision_by_their_id() {
        let half = testing::parent_based_ratio("0.5");
        let mut sampled = 0;
        for n in 0..200 {
            let run = format!("run-{n}");
            let first = outcome(decide_with(&half, None, Some(&run)));
            // Another runner starting the same run: the same trace, the same fate.
            assert_eq!(outcome(decide_with(&half, None, Some(&run))), first);
            assert_ne!(first.0, TraceId::INVALID);
            sampled += usize::from(first.1);
        }
        // Both fates occur: the ids are spread as the ratio sampler expects.
        assert!(
            (50..150).contains(&sampled),
            "{sampled} of 200 sampled at 0.5"
        );
        assert_ne!(
            outcome(decide_with(&half, None, Some("run-a"))).0,
            outcome(decide_with(&half, None, Some("run-b"))).0
        );
        // A parent's trace goes first; no key: a random trace each time.
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (id, is_sampled) = outcome(decide_with(&half, Some(parent), Some("run-a")));
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(is_sampled, "a sampled parent's child is sampled");
        assert_ne!(
            outcome(decide_with(&half, None, None)).0,
            outcome(decide_with(&half, None, None)).0
        );
    }

    #[test]
    fn only_http_protobuf_is_taken_without_a_warning() {
        assert_eq!(protocol_warning(vars(&[])), None);
        assert_eq!(
            protocol_warning(vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])),
            None
        );
        let grpc = protocol_warning(vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
            .expect("grpc is refused");
        assert!(
            grpc.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"),
            "{grpc}"
        );
        // The traces-only variable decides over the general one.
        let json = protocol_warning(vars(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ]))
        .expect("http/json is refused");
        assert!(
            json.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json"),
            "{json}"
        );
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
    fn the_sampler_is_the_one_the_sdk_would_build() {
        let of = |name: &str, arg: Option<&str>| {
            let s = sampler_from(vars(
                &[("OTEL_TRACES_SAMPLER", name)]
                    .into_iter()
                    .chain(arg.map(|a| ("OTEL_TRACES_SAMPLER_ARG", a)))
                    .collect::<Vec<_>>(),
            ));
            format!("{s:?}")
        };
        assert_eq!(of("always_on", None), "AlwaysOn");
        assert_eq!(of("always_off", None), "AlwaysOff");
        assert_eq!(of("traceidratio", Some("0.25")), "TraceIdRatioBased(0.25)");
        assert_eq!(
            of("traceidratio", Some("x")),
            "TraceIdRatioBased(1.0)",
            "the SDK's fallback"
        );
        assert_eq!(
            of("parentbased_traceidratio", Some("0.01")),
            "ParentBased(TraceIdRatioBased(0.01))"
        );
        assert_eq!(of("parentbased_always_off", None), "ParentBased(AlwaysOff)");
        for other in ["parentbased_always_on", "xray", "ALWAYS_ON", ""] {
            assert_eq!(of(other, None), "ParentBased(AlwaysOn)", "{other}");
        }
        assert_eq!(
            format!("{:?}", sampler_from(vars(&[]))),
            "ParentBased(AlwaysOn)"
        );
    }

    #[test]
    fn made_traceparents_are_what_the_sdk_prints() {
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        let tp = Traceparent::new(trace_id, span_id, TraceFlags::SAMPLED);
        assert_eq!(tp.as_str(), format!("00-{trace_id}-{span_id}-01"));
        let child = tp.child();
        assert_eq!(&child.as_str()[..36], &tp.as_str()[..36]);
        assert_eq!(&child.as_str()[52..], "-01");
        assert_ne!(child.as_str(), tp.as_str());
        assert!(parse(child.as_str()).is_some());
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
