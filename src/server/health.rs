//! Liveness, readiness and metrics: what an orchestrator and Prometheus ask.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ServerApp;
use super::error::ApiError;
use crate::exposition;
use crate::store::StoreError;

/// `GET /healthz`: 200 while the process runs and serves requests.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when the database answers and is migrated; 503 with
/// the reason otherwise (`database unreachable`, `database not migrated`).
pub async fn readyz(State(app): State<Arc<dyn ServerApp>>) -> Result<&'static str, ApiError> {
    match app.check_ready().await {
        Ok(()) => Ok("ready\n"),
        Err(StoreError::Migrate(detail)) => Err(ApiError::Unavailable {
            reason: "database not migrated",
            detail,
        }),
        Err(other) => Err(ApiError::Unavailable {
            reason: "database unreachable",
            detail: other.to_string(),
        }),
    }
}

/// `GET /metrics`: the Prometheus text exposition format, version 0.0.4
/// (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        exposition::render(),
    )
}
