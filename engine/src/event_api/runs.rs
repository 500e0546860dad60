//! The runs API under `/v1`, behind `Authorization: Bearer <api_token>`:
//! runs with their steps, runs of an event, the function registry, cancel.

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
use crate::backend::{Run, RunStatus, StepRecord};
use crate::functions::{FunctionDef, validate_function};

/// Largest `limit` of `GET /v1/runs`.
pub const MAX_LIST_LIMIT: usize = 1000;
const DEFAULT_LIST_LIMIT: usize = 50;

/// A run with its steps, as `GET /v1/runs/{id}` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// Its step records (attempts, outcomes, timestamps).
    pub steps: Vec<StepRecord>,
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
    Ok(Json(RunView { run, steps }))
}

pub(super) async fn runs_of_event(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let runs = st.backends.state.runs_for_event(&id).await?;
    Ok(Json(json!({ "runs": runs })))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
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
    let runs = st.backends.state.list_runs(status, limit).await?;
    Ok(Json(json!({ "runs": runs })))
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
    Ok(Json(
        json!({ "id": id, "status": run.status, "cancelled": cancelled }),
    ))
}
