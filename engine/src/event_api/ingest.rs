//! `POST /e/{event_key}`: Inngest-compatible event ingestion. Checks run
//! cheapest first (capacity, key, content type, size, JSON, each event) and
//! the answer is 200 only after the event stream acknowledged the send, so
//! an acknowledged event is durable.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};
use crate::backend::Message;
use crate::trace::{Decision, Traceparent};
use tracing::Span;

/// The answer to an accepted send.
#[derive(Debug, serde::Serialize)]
pub struct Accepted {
    /// Internal ids of the events, in request order.
    pub ids: Vec<String>,
    /// Always 200.
    pub status: u16,
}

/// An event as sent, each field kept as its raw JSON text: checked without
/// building a `serde_json::Value` tree, and stored as sent (the runner
/// decodes it into an [`Event`](crate::backend::Event)).
#[derive(Debug, Deserialize)]
struct Incoming<'a> {
    #[serde(default, borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    user: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    ts: Option<&'a RawValue>,
    #[serde(default, borrow)]
    v: Option<&'a RawValue>,
}

/// A checked event, its text fields still the sender's JSON text.
struct Checked<'a> {
    name: &'a str,
    data: &'a str,
    user: Option<&'a str>,
    id: Option<&'a str>,
    ts: i64,
    v: Option<&'a str>,
}

pub(super) async fn ingest(
    State(st): State<Arc<ApiState>>,
    Path(key): Path<String>,
    request: Request,
) -> Result<Json<Accepted>, ApiError> {
    if !crate::trace::enabled() {
        return accept(st, key, request, None).await;
    }
    let Some(decision) = crate::trace::decide(sent_traceparent(request.headers())) else {
        return accept(st, key, request, None).await;
    };
    let (span, traceparent) = traced(decision);
    let accepting = accept(
        st,
        key,
        request,
        traceparent.as_ref().map(Traceparent::as_str),
    );
    // Most requests, at a low sampling ratio: no span to enter or record.
    let Some(span) = span else {
        return accepting.await;
    };
    let result = tracing::Instrument::instrument(accepting, span.clone()).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

/// The `traceparent` header a sender continues its trace with, if any.
fn sent_traceparent(headers: &HeaderMap) -> Option<&str> {
    // A `HeaderName`, not a `&str`, which would be parsed on every lookup.
    static TRACEPARENT: HeaderName = HeaderName::from_static(crate::trace::TRACEPARENT);
    headers.get(&TRACEPARENT).and_then(|v| v.to_str().ok())
}

/// The ingest span (of a sampled request only) and the context the
/// request's events carry.
fn traced(decision: Decision) -> (Option<Span>, Option<Traceparent>) {
    match decision {
        Decision::Unsampled(traceparent) => (None, Some(traceparent)),
        Decision::Sampled(sampled) => {
            let span = ingest_span();
            let traceparent = sampled.start(&span);
            (Some(span), traceparent)
        }
    }
}

/// An HTTP server span as OpenTelemetry's conventions name it; made only
/// for a sampled request, whose events then carry its context.
fn ingest_span() -> Span {
    tracing::info_span!(
        "POST /e/{event_key}",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/e/{event_key}",
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// The ingestion itself; `traceparent` goes on every event.
async fn accept(
    st: Arc<ApiState>,
    key: String,
    request: Request,
    traceparent: Option<&str>,
) -> Result<Json<Accepted>, ApiError> {
    // The request itself rather than a `HeaderMap` extractor, which clones
    // every header on every request.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let _permit = st
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many requests in flight; retry shortly"))?;
    if !key_matches(&st.config.event_keys, &key) {
        return Err(ApiError::unauthorized("unknown event key"));
    }
    check_content_type(headers)?;
    let limits = &st.config.event_api;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(body_too_large(limits.max_body_bytes));
    }
    // What the body may take in memory, held until the answer: many large
    // posts at once get 503 rather than the process's last memory.
    let reserve =
        u32::try_from(declared.unwrap_or(limits.max_body_bytes).max(1)).unwrap_or(u32::MAX);
    let _bytes = st
        .in_flight_bytes
        .clone()
        .try_acquire_many_owned(reserve)
        .map_err(|_| ApiError::unavailable("too many request bytes in flight; retry shortly"))?;
    let read = tokio::time::timeout(
        limits.body_timeout.std(),
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                limits.body_timeout.as_secs()
            ),
        )
    })?;
    let bytes = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(body_too_large(limits.max_body_bytes));
        }
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let raws = split_events(&bytes)?;
    if raws.is_empty() {
        return Err(ApiError::invalid("the request contains no events"));
    }
    if raws.len() > limits.max_events_per_request {
        return Err(ApiError::too_large(format!(
            "{} events in one request; the limit is {}",
            raws.len(),
            limits.max_events_per_request
        )));
    }
    let mut now = crate::backend::embedded::now_ms();
    let mut ids = Vec::with_capacity(raws.len());
    if let Some(seed) = event_id_seed(headers) {
        // The ids Inngest gives (see `seed`). An event without `ts` takes the
        // seed's time, when the client built the request, so that a repeat
        // of the request stores exactly the same events: the runner then
        // takes it for a redelivery (same internal ids, so the same run ids
        // and wait-index entries) and nothing happens twice.
        now = seed.millis();
        ids.extend(seed.ids(raws.len()));
    } else if let Ok(mut generator) = st.ids.lock() {
        // Monotonic ids keep a request's events in order; overflow within one ms falls back to random.
        ids.extend(
            (0..raws.len()).map(|_| generator.generate().unwrap_or_else(|_| ulid::Ulid::new())),
        );
    }
    ids.resize_with(raws.len(), ulid::Ulid::new);
    let ids: Vec<String> = ids.iter().map(ulid::Ulid::to_string).collect();
    // Every event encoded into one buffer; `ends` marks where each stops.
    let mut encoded = Vec::with_capacity(bytes.len() + raws.len() * 64);
    let mut ends = Vec::with_capacity(raws.len());
    for (i, (raw, internal_id)) in raws.iter().zip(&ids).enumerate() {
        let size = raw.get().len();
        if size > limits.max_event_bytes {
            return Err(ApiError::too_large(format!(
                "event {i} is {size} bytes; the limit is {} bytes",
                limits.max_event_bytes
            )));
        }
        let event = check_event(i, raw, now)?;
        write_event(&mut encoded, internal_id, &event, traceparent);
        ends.push(encoded.len());
    }
    let slices: Vec<&[u8]> = ends
        .iter()
        .scan(0, |start, &end| {
            let slice = &encoded[*start..end];
            *start = end;
            Some(slice)
        })
        .collect();
    let messages = pack(&slices, st.backends.events.max_message_bytes())?;
    send(&st, messages, &ids).await?;
    st.metrics.events_accepted.inc_by(ids.len() as u64);
    Ok(Json(Accepted { ids, status: 200 }))
}

/// Sends a request's messages (`(message, number of events)`, in request
/// order), one send each, in order, so that a failure part-way can say
/// which events were stored: the answer is then the failure with `stored`
/// listing the ids of the events that did go in, for the client to leave
/// out of its retry (a retry of the whole request would store them twice).
async fn send(
    st: &ApiState,
    messages: Vec<(Message, usize)>,
    ids: &[String],
) -> Result<(), ApiError> {
    let mut stored = 0;
    for (message, count) in messages {
        if let Err(e) = st.backends.events.send(vec![message]).await {
            if stored == 0 {
                return Err(e.into());
            }
            let error = ApiError::from(e);
            let message = format!(
                "{} ({stored} of {} events were stored, listed in `stored`: send only the \
                 others again, or give events an `id` so that a repeated send is recognised)",
                error.message,
                ids.len()
            );
            return Err(ApiError::new(error.status, message).with_stored(ids[..stored].to_vec()));
        }
        stored += count;
    }
    Ok(())
}

/// The request's `x-inngest-event-id-seed`, if it has one that parses. One
/// that does not is ignored, as Inngest's event API does: the events get
/// fresh ids and the request is accepted.
fn event_id_seed(headers: &HeaderMap) -> Option<super::seed::Seed> {
    let value = headers.get(super::seed::HEADER)?;
    let seed = value.to_str().ok().and_then(super::seed::Seed::parse);
    if seed.is_none() {
        tracing::debug!(value = ?value, "ignoring a malformed {} header", super::seed::HEADER);
    }
    seed
}

fn body_too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!("the request body exceeds {limit} bytes"))
}

/// Compares against every key without stopping early, each in constant time.
fn key_matches(keys: &[String], key: &str) -> bool {
    let mut found = subtle::Choice::from(0);
    for k in keys {
        found |= k.as_bytes().ct_eq(key.as_bytes());
    }
    found.into()
}

/// `application/json` (any parameters, or a `+json` type) or no content type
/// at all; anything else is 415 so that form posts are not mistaken for events.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type `{essence}` is not accepted; send application/json"),
        ))
    }
}

/// One event object or an array of them, each kept as its raw text.
fn split_events(bytes: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let malformed = |e: serde_json::Error| ApiError::bad_request(format!("malformed JSON: {e}"));
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(bytes).map_err(malformed),
        Some(b'{') => serde_json::from_slice::<&RawValue>(bytes)
            .map(|r| vec![r])
            .map_err(malformed),
        None => Err(ApiError::bad_request("malformed JSON: the body is empty")),
        Some(_) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
            Err(ApiError::invalid(
                "expected an event object or an array of events",
            ))
        }
    }
}

/// Checks one event the way decoding it into an [`Event`](crate::backend::Event) would, naming
/// the first field that is wrong.
fn check_event<'a>(i: usize, raw: &'a RawValue, now: i64) -> Result<Checked<'a>, ApiError> {
    let bad = |m: &str| ApiError::invalid(format!("event {i}: {m}"));
    let incoming: Incoming<'a> = serde_json::from_str(raw.get()).map_err(|e| {
        ApiError::invalid(format!("event {i}: expected an object with a `name`: {e}"))
    })?;
    let name = match incoming.name.map(RawValue::get) {
        None => return Err(bad("`name` is missing")),
        Some(text) => match json_str(text) {
            Some(s) if !s.trim().is_empty() => text,
            Some(_) => return Err(bad("`name` is empty")),
            None => return Err(bad("`name` must be a string")),
        },
    };
    let data = match incoming.data.map(RawValue::get) {
        None => "{}",
        Some(text) if text.starts_with('{') => check_value(i, "data", text)?,
        Some(_) => return Err(bad("`data` must be an object")),
    };
    let user = match incoming.user.map(RawValue::get) {
        None => None,
        Some(text) if text.starts_with('{') => Some(check_value(i, "user", text)?),
        Some(_) => return Err(bad("`user` must be an object")),
    };
    let id = match incoming.id.map(RawValue::get) {
        None => None,
        Some(text) => match json_str(text) {
            Some(s) if s.is_empty() => None,
            Some(_) => Some(text),
            None => return Err(bad("`id` must be a string")),
        },
    };
    let ts = match incoming.ts.map(RawValue::get) {
        None => now,
        // Integers only, as `Value::as_i64` would take them: `5.0` and `1e3` are refused.
        Some(text) => match text.parse::<i64>() {
            Ok(0) => now,
            Ok(t) if t > 0 => t,
            _ => {
                return Err(bad(
                    "`ts` must be a positive integer (milliseconds since the epoch)",
                ));
            }
        },
    };
    let v = match incoming.v.map(RawValue::get) {
        None => None,
        Some(text) if json_str(text).is_some() => Some(text),
        Some(_) => return Err(bad("`v` must be a string")),
    };
    Ok(Checked {
        name,
        data,
        user,
        id,
        ts,
        v,
    })
}

/// The contents of a JSON string literal (`None` if `text` is not one).
/// `text` is already valid JSON, so a literal without escapes is its own contents.
fn json_str(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Walks an object the way building a `Value` from it would, so that what
/// the runner cannot decode later (a number out of range) is refused now,
/// without allocating the tree.
fn check_value<'a>(i: usize, field: &str, text: &'a str) -> Result<&'a str, ApiError> {
    serde_json::from_str::<Walk>(text)
        .map(|_| text)
        .map_err(|e| ApiError::invalid(format!("event {i}: `{field}`: {e}")))
}

/// A JSON value visited in full and thrown away (see [`check_value`]).
/// Unlike `IgnoredAny`, which only skips over numbers, it parses them.
struct Walk;

impl<'de> Deserialize<'de> for Walk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Walk)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk {
    type Value = Walk;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_unit<E>(self) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_none<E>(self) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
        while seq.next_element::<Walk>()?.is_some() {}
        Ok(Walk)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value::<Walk>()?;
        }
        Ok(Walk)
    }
}

/// Appends one event as stored: the JSON of an [`Event`](crate::backend::Event), its text fields
/// copied from the request as they were sent.
fn write_event(out: &mut Vec<u8>, internal_id: &str, e: &Checked<'_>, traceparent: Option<&str>) {
    use std::io::Write as _;
    out.extend_from_slice(b"{\"internal_id\":\"");
    out.extend_from_slice(internal_id.as_bytes());
    out.extend_from_slice(b"\",\"name\":");
    out.extend_from_slice(e.name.as_bytes());
    if let Some(id) = e.id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.as_bytes());
    }
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(e.data.as_bytes());
    if let Some(user) = e.user {
        out.extend_from_slice(b",\"user\":");
        out.extend_from_slice(user.as_bytes());
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, ",\"ts\":{}", e.ts);
    if let Some(v) = e.v {
        out.extend_from_slice(b",\"v\":");
        out.extend_from_slice(v.as_bytes());
    }
    // Hex digits and dashes only (a `trace::Traceparent`): no escaping.
    if let Some(traceparent) = traceparent {
        out.extend_from_slice(b",\"traceparent\":\"");
        out.extend_from_slice(traceparent.as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// Groups encoded events (`[`-separated JSON objects, see [`write_event`])
/// into as few event-stream messages (JSON arrays) as the queue's size
/// limit allows, in order; each with the number of events it holds.
fn pack(events: &[&[u8]], max_bytes: usize) -> Result<Vec<(Message, usize)>, ApiError> {
    let mut messages = Vec::new();
    let mut body: Vec<u8> =
        Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
    let mut count = 0;
    for (i, event) in events.iter().enumerate() {
        if event.len() + 2 > max_bytes {
            return Err(ApiError::too_large(format!(
                "event {i} is {} bytes once stored; the event stream accepts {max_bytes}",
                event.len() + 2
            )));
        }
        if !body.is_empty() && body.len() + 1 + event.len() + 1 > max_bytes {
            body.push(b']');
            let message = Message {
                body: std::mem::take(&mut body),
                delay: std::time::Duration::ZERO,
            };
            messages.push((message, std::mem::take(&mut count)));
        }
        body.push(if body.is_empty() { b'[' } else { b',' });
        body.extend_from_slice(event);
        count += 1;
    }
    if !body.is_empty() {
        body.push(b']');
        let message = Message {
            body,
            delay: std::time::Duration::ZERO,
        };
        messages.push((message, count));
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Event;

    #[test]
    fn keys_compare_exactly() {
        let keys = vec!["abc".to_string(), "def".to_string()];
        assert!(key_matches(&keys, "def"));
        assert!(!key_matches(&keys, "de"));
        assert!(!key_matches(&[], "abc"));
    }

    /// Encodes `events` (JSON texts) as the handler does, ids `0`, `1`, ...
    fn encode(events: &[&str], now: i64) -> Result<(Vec<u8>, Vec<usize>), ApiError> {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for (i, text) in events.iter().enumerate() {
            let raw: &RawValue = serde_json::from_str(text).unwrap();
            write_event(&mut out, &i.to_string(), &check_event(i, raw, now)?, None);
            ends.push(out.len());
        }
        Ok((out, ends))
    }

    fn decode_one(text: &str, now: i64) -> Result<Event, ApiError> {
        let (out, _) = encode(&[text], now)?;
        Ok(serde_json::from_slice(&out).expect("the stored event decodes"))
    }

    #[test]
    fn events_are_stored_as_sent() {
        let e = decode_one(
            r#"{ "name" : "a\"b/\u00e9", "data": {"x": [1, 2.5, {"y": null}]}, "user": {"u": 1},
                 "id": "k1", "ts": 42, "v": "2", "other": [1] }"#,
            7,
        )
        .unwrap();
        assert_eq!(
            e,
            Event {
                internal_id: "0".into(),
                id: Some("k1".into()),
                name: "a\"b/\u{e9}".into(),
                data: serde_json::json!({"x": [1, 2.5, {"y": null}]}),
                user: serde_json::json!({"u": 1}),
                ts: 42,
                v: Some("2".into()),
                traceparent: None,
            }
        );
        let e = decode_one(
            r#"{"name": "n", "id": "", "ts": 0, "user": null, "data": null}"#,
            7,
        )
        .unwrap();
        assert_eq!(e.id, None);
        assert_eq!(e.ts, 7, "ts 0 means now");
        assert_eq!(e.data, serde_json::json!({}));
        assert_eq!(e.user, serde_json::Value::Null);
    }

    #[test]
    fn each_wrong_field_is_named() {
        let cases = [
            (r#""x""#, "expected an object"),
            (r#"{"data": {}}"#, "`name` is missing"),
            (r#"{"name": null}"#, "`name` is missing"),
            (r#"{"name": "  "}"#, "`name` is empty"),
            (r#"{"name": 5}"#, "`name` must be a string"),
            (r#"{"name": "n", "data": [1]}"#, "`data` must be an object"),
            (r#"{"name": "n", "data": {"big": 1e400}}"#, "`data`"),
            (r#"{"name": "n", "user": "u"}"#, "`user` must be an object"),
            (r#"{"name": "n", "id": 3}"#, "`id` must be a string"),
            (
                r#"{"name": "n", "ts": 1.5}"#,
                "`ts` must be a positive integer",
            ),
            (
                r#"{"name": "n", "ts": -4}"#,
                "`ts` must be a positive integer",
            ),
            (
                r#"{"name": "n", "ts": "1"}"#,
                "`ts` must be a positive integer",
            ),
            (r#"{"name": "n", "v": 2}"#, "`v` must be a string"),
            (r#"{"name": "n", "name": "m"}"#, "duplicate field"),
        ];
        for (text, want) in cases {
            let err = decode_one(text, 1).expect_err(text);
            assert_eq!(
                err.status,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{text}"
            );
            assert!(err.message.contains(want), "{text}: {}", err.message);
        }
    }

    #[test]
    fn pack_splits_to_fit() {
        let pad = "x".repeat(100);
        let texts: Vec<String> = (0..10)
            .map(|n| format!(r#"{{"name": "a", "data": {{"n": {n}, "pad": "{pad}"}}}}"#))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (out, ends) = encode(&refs, 1).unwrap();
        let mut start = 0;
        let slices: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let s = &out[start..end];
                start = end;
                s
            })
            .collect();
        let one = slices[0].len() + 2;
        let messages = pack(&slices, one * 3).unwrap();
        assert!(messages.len() >= 4, "{}", messages.len());
        let mut order = Vec::new();
        for (m, count) in &messages {
            assert!(m.body.len() <= one * 3);
            assert_eq!(
                crate::backend::decode_events(&m.body).unwrap().len(),
                *count
            );
            for e in crate::backend::decode_events(&m.body).unwrap() {
                order.push(e.data["n"].as_i64().unwrap());
            }
        }
        assert_eq!(order, (0..10).collect::<Vec<_>>(), "all, in order");
        assert_eq!(pack(&slices, 1 << 20).unwrap().len(), 1);
        assert!(pack(&slices, one - 1).is_err());
    }

    #[test]
    fn a_traced_request_puts_its_traceparent_on_each_event() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let raw: &RawValue = serde_json::from_str(r#"{"name": "a", "data": {"x": 1}}"#).unwrap();
        let mut out = Vec::new();
        write_event(&mut out, "0", &check_event(0, raw, 5).unwrap(), Some(tp));
        let e: Event = serde_json::from_slice(&out).unwrap();
        assert_eq!(e.traceparent.as_deref(), Some(tp));
        assert_eq!(e.data, serde_json::json!({"x": 1}));
    }

    #[test]
    fn an_unsampled_request_makes_no_span_and_a_sampled_parent_is_continued() {
        use crate::trace::testing::{exported, parent_based_ratio};
        let request = |sampler: &opentelemetry_sdk::trace::Sampler, sent: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(sent) = sent {
                headers.insert("traceparent", sent.parse().unwrap());
            }
            traced(crate::trace::decide_with(
                sampler,
                sent_traceparent(&headers),
                None,
            ))
        };
        let parts = |tp: &Traceparent| {
            let parts: Vec<String> = tp.as_str().split('-').map(str::to_string).collect();
            assert_eq!(parts.len(), 4, "{tp:?}");
            (parts[1].clone(), parts[2].clone(), parts[3].clone())
        };
        let (parent_trace, parent_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");

        // Not sampled, no parent: no span, a new trace's context, flags 00.
        let none = parent_based_ratio("0.0");
        let spans = exported(&none, || {
            let (span, tp) = request(&none, None);
            assert!(span.is_none());
            let tp = tp.expect("a traceparent for the events");
            let (trace, _, flags) = parts(&tp);
            assert_eq!(flags, "00");
            assert_ne!(trace, "0".repeat(32));
            assert!(crate::trace::sampled_trace_id(tp.as_str()).is_none());
        });
        assert!(spans.is_empty(), "{spans:?}");

        // An unsampled parent, whatever the ratio: no span, its trace, flags 00.
        let all = parent_based_ratio("1.0");
        let sent = format!("00-{parent_trace}-{parent_span}-00");
        let spans = exported(&all, || {
            let (span, tp) = request(&all, Some(&sent));
            assert!(span.is_none());
            let (trace, span_id, flags) = parts(&tp.unwrap());
            assert_eq!((trace.as_str(), flags.as_str()), (parent_trace, "00"));
            assert_ne!(span_id, parent_span);
        });
        assert!(spans.is_empty(), "{spans:?}");

        // A sampled parent, even at ratio 0: its trace goes on, in a span.
        let sent = format!("00-{parent_trace}-{parent_span}-01");
        let mut carried = None;
        let spans = exported(&none, || {
            let (span, tp) = request(&none, Some(&sent));
            assert!(span.is_some());
            carried = tp;
        });
        let (trace, span_id, flags) = parts(&carried.expect("a traceparent"));
        assert_eq!((trace.as_str(), flags.as_str()), (parent_trace, "01"));
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        assert_eq!(span.name, "POST /e/{event_key}");
        assert_eq!(span.span_context.trace_id().to_string(), parent_trace);
        assert_eq!(span.span_context.span_id().to_string(), span_id);
        assert_eq!(span.parent_span_id.to_string(), parent_span);

        // A sampled root: the span is on the trace id the decision was made on.
        let mut carried = None;
        let spans = exported(&all, || carried = request(&all, None).1);
        let (trace, span_id, flags) = parts(&carried.expect("a traceparent"));
        assert_eq!(flags, "01");
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!(spans[0].span_context.trace_id().to_string(), trace);
        assert_eq!(spans[0].span_context.span_id().to_string(), span_id);
        assert_eq!(spans[0].parent_span_id, opentelemetry::SpanId::INVALID);
    }
}
