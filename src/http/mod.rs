//! The admin HTTP endpoints, on loopback by default:
//! `/healthz` (the process is serving), `/readyz` (every enabled mapping is polling),
//! `/metrics` (Prometheus text) and `/mappings` (JSON state of each mapping).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics::render_prometheus;
use crate::telemetry::Registry;

pub(crate) fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/mappings", get(mappings))
        .with_state(registry)
}

async fn readyz(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    if registry.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: some mappings are not polling yet\n",
        )
    }
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_prometheus(&registry.all()),
    )
}

async fn mappings(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let list: Vec<serde_json::Value> = registry.all().iter().map(|m| m.snapshot()).collect();
    Json(serde_json::json!({ "mappings": list }))
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}: {source}")]
pub(crate) struct BindError {
    pub(crate) what: &'static str,
    pub(crate) addr: SocketAddr,
    #[source]
    pub(crate) source: std::io::Error,
}

/// Binds the admin endpoints' listener (so a bad address fails at start-up) and returns the
/// serving future.
pub(crate) async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()>, BindError> {
    serve_router(addr, router(registry), shutdown, "the admin HTTP endpoints").await
}

/// Binds `addr` and returns the future that serves `app` until `shutdown`; `what` names the
/// server in logs and errors. A listener beyond loopback is logged as a warning.
pub(crate) async fn serve_router(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
    what: &'static str,
) -> Result<impl std::future::Future<Output = ()>, BindError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { what, addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    if !addr.ip().is_loopback() {
        tracing::warn!(%local, what, "listening beyond loopback");
    }
    tracing::info!(addr = %local, what, "listening");
    Ok(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, what, "server stopped");
        }
    })
}
