//! The runs API under `/v1`, behind `Authorization: Bearer <api_token>`:
//! runs with their steps, runs of an event, the function registry, cancel
//! and replay.
//!
//! A replay is a new run of the same function for the same event (so
//! `/v1/events/{id}/runs` lists it beside the original). From `failed`, the
//! steps that completed or were skipped are copied into it as they were
//! (outcome and attempts, with their original times) before the run exists,
//! so no job ever finds the run without them and they are not run again;
//! the steps whose predecessors all have such an outcome are scheduled.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};
use crate::backend::{Run, RunStatus, StepOutcome, StepRecord};
use crate::functions::{FunctionDef, validate_function};
use crate::runner::flow::{Flow, timeout_jobs};
use crate::runner::{Job, LoadedFunction, now_ms};

/// Largest `limit` of `GET /v1/runs`.
pub const MAX_LIST_LIMIT: usize = 1000;
const DEFAULT_LIST_LIMIT: usize = 50;
/// Most recent runs `GET /v1/runs?function=` looks through: the state
/// stores index runs by time and status only, so a function's runs are
/// found among these (`more` says when older ones may match too).
pub const MAX_SCAN: usize = 5000;

/// A run with its steps, as `GET /v1/runs/{id}` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// Its step records (attempts, outcomes, timestamps).
    pub steps: Vec<StepRecord>,
    /// The id of the run's trace, when the run was traced and sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// A run as the runs API answers: its trace context stays inside.
fn answered(mut run: Run) -> Run {
    run.traceparent = None;
    run
}

pub(super) async fn require_token(
    State(st): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = st.config.api_token.as_deref() else {
        return ApiError::unauthorized("the runs API is disabled: no api_token is configured")
            .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return ApiError::unauthorized("missing or wrong bearer token").into_response();
    }
    next.run(req).await
}

pub(super) async fn get_run(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let run = st
        .backends
        .state
        .get_run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    let steps = st.backends.state.steps(&id).await?;
    let trace_id = run
        .traceparent
        .as_deref()
        .and_then(crate::trace::sampled_trace_id);
    Ok(Json(RunView {
        run: answered(run),
        steps,
        trace_id,
    }))
}

pub(super) async fn runs_of_event(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let runs: Vec<Run> = st
        .backends
        .state
        .runs_for_event(&id)
        .await?
        .into_iter()
        .map(answered)
        .collect();
    Ok(Json(json!({ "runs": runs })))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
    /// Only runs of this function.
    function: Option<String>,
    /// Only runs created at or after this time (ms since the epoch).
    since: Option<i64>,
}

pub(super) async fn list_runs(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            serde_json::from_value::<RunStatus>(Value::String(s.to_string())).map_err(|_| {
                ApiError::bad_request(format!(
                    "unknown status `{s}`: expected running, completed, failed or cancelled"
                ))
            })?,
        ),
    };
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let function = q.function.as_deref().filter(|f| !f.is_empty());
    let since = q.since.unwrap_or(i64::MIN);
    // One more than asked tells whether there are more; runs come newest
    // first, so `since` cuts a prefix.
    let scan = match function {
        Some(_) => MAX_SCAN.max(limit + 1),
        None => limit + 1,
    };
    let scanned = st.backends.state.list_runs(status, scan).await?;
    let window_full = scanned.len() == scan;
    let oldest_in_range = scanned.last().is_some_and(|r| r.created_at >= since);
    let mut matching = scanned
        .into_iter()
        .filter(|r| r.created_at >= since && function.is_none_or(|f| r.function_id == f));
    let runs: Vec<Run> = matching.by_ref().take(limit).map(answered).collect();
    let more = matching.next().is_some() || (function.is_some() && window_full && oldest_in_range);
    Ok(Json(json!({ "runs": runs, "more": more })))
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayFrom {
    /// Every step runs again.
    Start,
    /// The steps that completed (or were skipped) keep their outcomes; the
    /// failed ones, and whatever had not run, run.
    #[default]
    Failed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    from: ReplayFrom,
}

/// What `POST /v1/runs/{id}/replay` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replayed {
    /// The new run.
    pub id: String,
    /// The run it replays.
    pub replay_of: String,
    /// Where it started.
    pub from: ReplayFrom,
    /// The function.
    pub function_id: String,
    /// The event both runs are for (internal id).
    pub event_id: String,
    /// The new run's status (`running`).
    pub status: RunStatus,
    /// Steps whose outcome was copied from the replayed run.
    pub copied: Vec<String>,
    /// Steps scheduled to run first.
    pub scheduled: Vec<String>,
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

/// Replays an ended run as a new run of its function for the same event,
/// from the start or from its failed steps (body `{"from": "start" |
/// "failed"}`, default `failed`).
pub(super) async fn replay_run(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Replayed>, ApiError> {
    let from = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayFrom::default()
    } else {
        serde_json::from_slice::<ReplayBody>(&body)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "body: {e}: expected {{\"from\": \"start\"}} or {{\"from\": \"failed\"}}"
                ))
            })?
            .from
    };
    let state = &st.backends.state;
    let (run, steps) = state.run_with_steps(&id).await?;
    let run = run.ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    match (run.status, from) {
        (RunStatus::Running, _) => {
            return Err(conflict(format!(
                "run `{id}` is still running: cancel it first (POST /v1/runs/{id}/cancel) or let it end"
            )));
        }
        (RunStatus::Completed, ReplayFrom::Failed) => {
            return Err(conflict(format!(
                "run `{id}` completed: no step failed to replay from; replay it from the start"
            )));
        }
        _ => {}
    }
    let def = state
        .list_functions()
        .await?
        .into_iter()
        .find(|f| f.id == run.function_id)
        .ok_or_else(|| {
            conflict(format!(
                "function `{}` of run `{id}` is not registered any more: nothing to replay",
                run.function_id
            ))
        })?;
    let f = LoadedFunction::load(def).map_err(|e| {
        conflict(format!(
            "function `{}` of run `{id}` does not compile: {e}",
            run.function_id
        ))
    })?;
    let now = now_ms();
    let new_id = ulid::Ulid::new().to_string();
    // Only outcomes of steps the function (as registered now) still has.
    let copied: Vec<StepRecord> = match from {
        ReplayFrom::Start => Vec::new(),
        ReplayFrom::Failed => steps
            .into_iter()
            .filter(|r| f.step(&r.step_id).is_some())
            .filter(|r| {
                matches!(
                    r.outcome,
                    Some(StepOutcome::Completed { .. } | StepOutcome::Skipped)
                )
            })
            .collect(),
    };
    for record in &copied {
        let Some(outcome) = &record.outcome else {
            continue;
        };
        state
            .set_outcome(
                &new_id,
                &record.step_id,
                outcome,
                record.ended_at.unwrap_or(now),
            )
            .await?;
        for attempt in &record.attempts {
            state
                .record_attempt(&new_id, &record.step_id, attempt.clone())
                .await?;
        }
    }
    let done: std::collections::HashSet<&str> = copied.iter().map(|r| r.step_id.as_str()).collect();
    // Ready as the executor decides after an outcome: every `after` has one.
    let ready: Vec<String> = f
        .def
        .steps
        .iter()
        .filter(|s| !done.contains(s.id.as_str()))
        .filter(|s| s.after.iter().all(|a| done.contains(a.as_str())))
        .map(|s| s.id.clone())
        .collect();
    let replay = Run {
        id: new_id.clone(),
        status: RunStatus::Running,
        error: None,
        created_at: now,
        ended_at: None,
        traceparent: None,
        ..run.clone()
    };
    let flow = Flow {
        backends: st.backends.clone(),
        metrics: st.metrics.clone(),
    };
    let mut jobs: Vec<Job> = ready.iter().map(|s| Job::first(&new_id, s, now)).collect();
    if f.def.cancel_on.is_empty() {
        jobs.extend(timeout_jobs(&f, &new_id, now));
        let max = st.backends.work.max_delay();
        let messages = jobs.iter().map(|j| j.to_message(now, max)).collect();
        state
            .create_run_and_send(&replay, st.backends.work.as_ref(), messages)
            .await?;
    } else {
        // `cancel_on` waits are recorded before any step runs, as the runner
        // does; `start_run` also sends the first steps not copied.
        state.create_run(&replay).await?;
        flow.start_run(&f, &replay, false).await?;
        jobs.retain(|j| f.step(&j.step_id).is_some_and(|s| !s.after.is_empty()));
        flow.enqueue(&jobs).await?;
    }
    tracing::info!(run_id = %new_id, replay_of = %id, ?from, "run replayed");
    Ok(Json(Replayed {
        id: new_id,
        replay_of: id,
        from,
        function_id: run.function_id,
        event_id: run.event.internal_id,
        status: RunStatus::Running,
        copied: copied.into_iter().map(|r| r.step_id).collect(),
        scheduled: ready,
    }))
}

/// Registers one function, or an array of them (all validated before any is stored).
pub(super) async fn put_functions(
    State(st): State<Arc<ApiState>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut functions = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let f: FunctionDef = serde_json::from_value(item)
            .map_err(|e| ApiError::invalid(format!("function {i}: {e}")))?;
        let problems = validate_function(&f);
        if !problems.is_empty() {
            let list: Vec<String> = problems
                .iter()
                .map(|p| {
                    let at = p.path.to_string();
                    if at.is_empty() {
                        p.to_string()
                    } else {
                        format!("{at}: {p}")
                    }
                })
                .collect();
            return Err(ApiError::invalid(format!(
                "function `{}`: {}",
                f.id,
                list.join("; ")
            )));
        }
        functions.push(f);
    }
    for f in &functions {
        st.backends.state.put_function(f).await?;
    }
    let ids: Vec<&str> = functions.iter().map(|f| f.id.as_str()).collect();
    Ok((StatusCode::OK, Json(json!({ "registered": ids }))))
}

pub(super) async fn list_functions(
    State(st): State<Arc<ApiState>>,
) -> Result<Json<Value>, ApiError> {
    let functions = st.backends.state.list_functions().await?;
    Ok(Json(json!({ "functions": functions })))
}

pub(super) async fn delete_function(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if st.backends.state.delete_function(&id).await? {
        Ok(Json(json!({ "deleted": id })))
    } else {
        Err(ApiError::not_found(format!("no function `{id}`")))
    }
}

/// Cancels a running run; cancelling an ended run answers its status with
/// `cancelled: false` (idempotent for retried calls).
pub(super) async fn cancel_run(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let state = &st.backends.state;
    if state.get_run(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no run `{id}`")));
    }
    let now = crate::backend::embedded::now_ms();
    let cancelled = state
        .finish_run(
            &id,
            RunStatus::Cancelled,
            Some("cancelled through the runs API".into()),
            now,
        )
        .await?;
    let run = state
        .get_run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    if cancelled {
        let seconds = now.saturating_sub(run.created_at).max(0) as f64 / 1000.0;
        st.metrics.run_ended(&run.function_id, "cancelled", seconds);
    }
    Ok(Json(
        json!({ "id": id, "status": run.status, "cancelled": cancelled }),
    ))
}
