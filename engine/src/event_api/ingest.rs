//! `POST /e/{event_key}`: Inngest-compatible event ingestion. Checks run
//! cheapest first (capacity, key, content type, size, JSON, each event) and
//! the answer is 200 only after the event stream acknowledged the send, so
//! an acknowledged event is durable.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};
use crate::backend::{Event, Message, encode_events};

/// The answer to an accepted send.
#[derive(Debug, serde::Serialize)]
pub struct Accepted {
    /// Internal ids of the events, in request order.
    pub ids: Vec<String>,
    /// Always 200.
    pub status: u16,
}

/// An event as sent, with loosely typed fields so each mistake can be named.
#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(default)]
    name: Value,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    user: Value,
    #[serde(default)]
    id: Value,
    #[serde(default)]
    ts: Value,
    #[serde(default)]
    v: Value,
}

pub(super) async fn ingest(
    State(st): State<Arc<ApiState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Accepted>, ApiError> {
    let _permit = st
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many requests in flight; retry shortly"))?;
    if !key_matches(&st.config.event_keys, &key) {
        return Err(ApiError::unauthorized("unknown event key"));
    }
    check_content_type(&headers)?;
    let limits = &st.config.event_api;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(body_too_large(limits.max_body_bytes));
    }
    let bytes = match Limited::new(body, limits.max_body_bytes).collect().await {
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
    let now = crate::backend::embedded::now_ms();
    let mut events = Vec::with_capacity(raws.len());
    let mut ids = Vec::with_capacity(raws.len());
    if let Ok(mut generator) = st.ids.lock() {
        // Monotonic ids keep a request's events in order; overflow within one ms falls back to random.
        ids.extend(
            (0..raws.len()).map(|_| generator.generate().unwrap_or_else(|_| ulid::Ulid::new())),
        );
    }
    ids.resize_with(raws.len(), ulid::Ulid::new);
    for (i, (raw, internal_id)) in raws.iter().zip(ids).enumerate() {
        let size = raw.get().len();
        if size > limits.max_event_bytes {
            return Err(ApiError::too_large(format!(
                "event {i} is {size} bytes; the limit is {} bytes",
                limits.max_event_bytes
            )));
        }
        events.push(to_event(i, raw, internal_id, now)?);
    }
    let messages = pack(&events, st.backends.events.max_message_bytes())?;
    st.backends.events.send(messages).await?;
    st.metrics.counter(
        "stackctl_events_accepted_total",
        "Events durably accepted by the event API.",
        &[],
        events.len() as u64,
    );
    Ok(Json(Accepted {
        ids: events.into_iter().map(|e| e.internal_id).collect(),
        status: 200,
    }))
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

fn to_event(
    i: usize,
    raw: &RawValue,
    internal_id: ulid::Ulid,
    now: i64,
) -> Result<Event, ApiError> {
    let bad = |m: String| ApiError::invalid(format!("event {i}: {m}"));
    let incoming: Incoming = serde_json::from_str(raw.get())
        .map_err(|e| bad(format!("expected an object with a `name`: {e}")))?;
    let name = match incoming.name {
        Value::String(s) if !s.trim().is_empty() => s,
        Value::String(_) => return Err(bad("`name` is empty".into())),
        Value::Null => return Err(bad("`name` is missing".into())),
        _ => return Err(bad("`name` must be a string".into())),
    };
    let data = match incoming.data {
        Value::Null => Value::Object(Default::default()),
        v @ Value::Object(_) => v,
        _ => return Err(bad("`data` must be an object".into())),
    };
    let user = match incoming.user {
        v @ (Value::Null | Value::Object(_)) => v,
        _ => return Err(bad("`user` must be an object".into())),
    };
    let id = match incoming.id {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s),
        _ => return Err(bad("`id` must be a string".into())),
    };
    let ts = match incoming.ts {
        Value::Null => now,
        Value::Number(n) => match n.as_i64() {
            Some(0) => now,
            Some(t) if t > 0 => t,
            _ => {
                return Err(bad(
                    "`ts` must be a positive integer (milliseconds since the epoch)".into(),
                ));
            }
        },
        _ => {
            return Err(bad(
                "`ts` must be a positive integer (milliseconds since the epoch)".into(),
            ));
        }
    };
    let v = match incoming.v {
        Value::Null => None,
        Value::String(s) => Some(s),
        _ => return Err(bad("`v` must be a string".into())),
    };
    Ok(Event {
        internal_id: internal_id.to_string(),
        id,
        name,
        data,
        user,
        ts,
        v,
    })
}

/// Groups events into as few messages as the queue's size limit allows.
fn pack(events: &[Event], max_bytes: usize) -> Result<Vec<Message>, ApiError> {
    let mut messages = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let mut end = events.len();
        loop {
            let body = encode_events(&events[start..end]);
            if body.len() <= max_bytes {
                messages.push(Message {
                    body,
                    delay: std::time::Duration::ZERO,
                });
                start = end;
                break;
            }
            if end - start == 1 {
                return Err(ApiError::too_large(format!(
                    "event {start} is {} bytes once stored; the event stream accepts {max_bytes}",
                    body.len()
                )));
            }
            end = start + (end - start).div_ceil(2);
        }
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        let keys = vec!["abc".to_string(), "def".to_string()];
        assert!(key_matches(&keys, "def"));
        assert!(!key_matches(&keys, "de"));
        assert!(!key_matches(&[], "abc"));
    }

    #[test]
    fn pack_splits_to_fit() {
        let event = |n: usize| Event {
            internal_id: format!("{n:026}"),
            id: None,
            name: "a".into(),
            data: serde_json::json!({"pad": "x".repeat(100)}),
            user: Value::Null,
            ts: 1,
            v: None,
        };
        let events: Vec<Event> = (0..10).map(event).collect();
        let one = encode_events(&events[..1]).len();
        let messages = pack(&events, one * 3 + 2).unwrap();
        assert!(messages.len() >= 4, "{}", messages.len());
        let total: usize = messages
            .iter()
            .map(|m| crate::backend::decode_events(&m.body).unwrap().len())
            .sum();
        assert_eq!(total, 10);
        assert!(pack(&events, one - 1).is_err());
    }
}
