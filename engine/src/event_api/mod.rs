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
    /// Requests being served (`stackctl_http_requests_in_flight` of this role).
    requests_in_flight: prometheus_client::metrics::gauge::Gauge,
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
        let requests_in_flight = metrics
            .http_in_flight
            .get_or_create_owned(&crate::metrics::RoleLabel { role });
        Arc::new(Self {
            config,
            backends,
            metrics,
            requests_in_flight,
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
    st.requests_in_flight.inc();
    // Decremented on drop: a request whose client went away is cancelled
    // inside `next.run` and never reaches the lines after it.
    let _in_flight = InFlight(&st.requests_in_flight);
    let resp = next.run(req).await;
    st.metrics.http_request(
        st.role,
        route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
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
    use crate::metrics::{QueueLabel, QueueStateLabels, StatusLabel};
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
                    m.queue_messages
                        .get_or_create(&QueueStateLabels { queue: name, state })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                m.queue_dead_letters
                    .get_or_create(&QueueLabel { queue: name })
                    .set(i64::try_from(d.dead).unwrap_or(i64::MAX));
                let oldest = &m.queue_oldest_age;
                match d.oldest_visible_ms {
                    Some(ms) => {
                        oldest
                            .get_or_create(&QueueLabel { queue: name })
                            .set(ms as f64 / 1000.0);
                    }
                    // Unknown to this backend, or no message waits: no
                    // series rather than a misleading 0 for the former.
                    None if d.visible == 0 => {
                        oldest.get_or_create(&QueueLabel { queue: name }).set(0.0);
                    }
                    None => {
                        oldest.remove(&QueueLabel { queue: name });
                    }
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
                let n = counts.get(&status).copied().unwrap_or(0);
                m.runs
                    .get_or_create(&StatusLabel {
                        status: crate::metrics::status_label(status),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read run counts for /metrics"),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        m.render(),
    )
        .into_response()
}
