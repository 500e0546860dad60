//! The event API process surface: event ingestion (`ingest`), the runs API
//! (`runs`), `/health` and `/metrics`, as one axum router; plus the small
//! health/metrics server the runner and executor roles listen on.

mod error;
mod ingest;
mod runs;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use error::ApiError;
pub use ingest::Accepted;
pub use runs::{MAX_LIST_LIMIT, RunView};

use crate::Shutdown;
use crate::backend::{Backends, RunStatus};
use crate::config::Config;
use crate::metrics::Metrics;

/// Shared state of the HTTP handlers.
pub struct ApiState {
    config: Arc<Config>,
    backends: Backends,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    ids: Mutex<ulid::Generator>,
    role: &'static str,
}

impl ApiState {
    /// State for a process serving `role` (used in the metrics' labels and /health).
    pub fn new(
        config: Arc<Config>,
        backends: Backends,
        metrics: Arc<Metrics>,
        role: &'static str,
    ) -> Arc<Self> {
        let permits = config.event_api.max_in_flight;
        Arc::new(Self {
            config,
            backends,
            metrics,
            in_flight: Arc::new(Semaphore::new(permits)),
            ids: Mutex::new(ulid::Generator::new()),
            role,
        })
    }
}

/// The event API's routes: `POST /e/{event_key}`, `/v1/...`, `/health`, `/metrics`.
pub fn router(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/runs", get(runs::list_runs))
        .route("/runs/{id}", get(runs::get_run))
        .route("/runs/{id}/cancel", post(runs::cancel_run))
        .route("/events/{id}/runs", get(runs::runs_of_event))
        .route(
            "/functions",
            get(runs::list_functions).post(runs::put_functions),
        )
        .route(
            "/functions/{id}",
            axum::routing::delete(runs::delete_function),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            runs::require_token,
        ));
    Router::new()
        .route("/e/{event_key}", post(ingest::ingest))
        .nest("/v1", v1)
        .merge(health_routes())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), record))
        .with_state(state)
}

/// `/health` and `/metrics` only: what the runner and executor serve.
pub fn health_router(state: Arc<ApiState>) -> Router {
    health_routes()
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), record))
        .with_state(state)
}

fn health_routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets
/// in-flight requests finish.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Counts every request by route and status and times it.
async fn record(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // `MatchedPath` is a shared string: cloning it allocates nothing.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let resp = next.run(req).await;
    let status = resp.status();
    st.metrics.counter(
        "stackctl_http_requests_total",
        "HTTP requests by route and status.",
        &[
            ("role", st.role),
            ("route", route),
            ("status", status.as_str()),
        ],
        1,
    );
    st.metrics.observe(
        "stackctl_http_request_duration_seconds",
        "HTTP request latency by route.",
        &[("role", st.role), ("route", route)],
        start.elapsed().as_secs_f64(),
    );
    resp
}

async fn health(State(st): State<Arc<ApiState>>) -> Response {
    let check = async {
        st.backends.state.get_run("health-check").await?;
        st.backends.events.depth().await?;
        Ok::<_, crate::backend::BackendError>(())
    };
    match check.await {
        Ok(()) => Json(json!({
            "status": "ok",
            "role": st.role,
            "backend": st.config.backend.kind(),
        }))
        .into_response(),
        Err(e) => {
            let mut resp =
                ApiError::unavailable(format!("backend check failed: {e}")).into_response();
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            resp
        }
    }
}

async fn metrics(State(st): State<Arc<ApiState>>) -> Response {
    let m = &st.metrics;
    for (name, queue) in [("events", &st.backends.events), ("work", &st.backends.work)] {
        match queue.depth().await {
            Ok(d) => {
                for (state, n) in [
                    ("visible", d.visible),
                    ("in_flight", d.in_flight),
                    ("delayed", d.delayed),
                    ("dead", d.dead),
                ] {
                    m.gauge_set(
                        "stackctl_queue_messages",
                        "Messages in a queue by state.",
                        &[("queue", name), ("state", state)],
                        n as f64,
                    );
                }
            }
            Err(e) => {
                tracing::warn!(queue = name, error = %e, "cannot read queue depth for /metrics")
            }
        }
    }
    match st.backends.state.run_counts().await {
        Ok(counts) => {
            for status in [
                RunStatus::Running,
                RunStatus::Completed,
                RunStatus::Failed,
                RunStatus::Cancelled,
            ] {
                let label = serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                m.gauge_set(
                    "stackctl_runs",
                    "Runs by status.",
                    &[("status", &label)],
                    counts.get(&status).copied().unwrap_or(0) as f64,
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read run counts for /metrics"),
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
