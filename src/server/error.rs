//! The one error type of the HTTP surface: internals go to the log, the
//! caller sees a status and a short, fixed message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a handler can fail with. The `Display` text of the inner error is
/// logged, never sent: it may name paths, SQL or a provider's answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Something the caller cannot fix. 500, body `internal error`.
    #[error("internal error: {0}")]
    Internal(String),
    /// Not ready to serve (the database is unreachable or not migrated). 503
    /// with a fixed reason the operator can act on.
    #[error("unavailable: {reason}: {detail}")]
    Unavailable {
        reason: &'static str,
        detail: String,
    },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(_) => {
                tracing::error!(error = %self, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
            ApiError::Unavailable { reason, .. } => {
                tracing::warn!(error = %self, "not ready");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                )
                    .into_response()
            }
        }
    }
}
