//! The event API process surface: event ingestion (`ingest`), the runs API
//! (`runs`), health and `/metrics`, as one axum router; plus the small
//! health/metrics server the runner and executor roles listen on.
//!
//! Health is two questions. `/health/live`: the process serves (a container
//! health check: failing it gets the task replaced). `/health/ready` (and
//! `/health`): the backends this role needs answer (a load balancer's
//! check: failing it takes the task out of rotation). The event API needs
//! only its event stream, so a state-store outage does not take it out of
//! the load balancer; the runner needs the event stream and the state
//! store, the executor the work queue and the state store.

mod error;
mod ingest;
mod runs;
pub mod runs_client;
pub mod seed;
mod ui;

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
pub use runs::{MAX_LIST_LIMIT, MAX_SCAN, ReplayFrom, Replayed, RunView};

use crate::Shutdown;
use crate::backend::{Backends, RunStatus};
use crate::config::{Config, Role};
use crate::metrics::Metrics;

/// Shared state of the HTTP handlers.
pub struct ApiState {
    config: Arc<Config>,
    backends: Backends,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    /// Request bytes in flight (`event_api.max_in_flight_bytes` permits).
    in_flight_bytes: Arc<Semaphore>,
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
        let bytes = config
            .event_api
            .max_in_flight_bytes
            .min(Semaphore::MAX_PERMITS);
        Arc::new(Self {
            config,
            backends,
            metrics,
            in_flight: Arc::new(Semaphore::new(permits)),
            in_flight_bytes: Arc::new(Semaphore::new(bytes)),
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
        .route("/runs/{id}/replay", post(runs::replay_run))
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
        .route("/ui", get(ui::page))
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
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets
/// in-flight requests finish; with the default header timeout.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> std::io::Result<()> {
    serve_with(
        listener,
        app,
        shutdown,
        crate::config::EventApiConfig::default()
            .header_timeout
            .std(),
    )
    .await
}

/// [`serve`] with `header_timeout`: a client that has not sent a request's
/// headers by then (a slow client, or an idle keep-alive connection) is
/// disconnected, so slow or idle clients cannot hold every connection.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: Shutdown,
    header_timeout: std::time::Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that went away or timed out is not an error here.
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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

async fn live(State(st): State<Arc<ApiState>>) -> Response {
    no_store(Json(json!({ "status": "ok", "role": st.role })).into_response())
}

async fn ready(State(st): State<Arc<ApiState>>) -> Response {
    let role = match st.role {
        "event-api" => Role::EventApi,
        "executor" => Role::Executor,
        _ => Role::Runner,
    };
    let check = st.backends.check(role);
    no_store(match check.await {
        Ok(()) => Json(json!({
            "status": "ok",
            "role": st.role,
            "backend": st.config.backend.kind(),
        }))
        .into_response(),
        Err(e) => ApiError::backend_unavailable("a backend this role needs does not answer", &e)
            .into_response(),
    })
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
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
            for status in RunStatus::ALL {
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
