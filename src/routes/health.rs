//! Liveness and readiness probes, and the JSON answers for unknown routes and methods.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::app::AppState;
use crate::error::ApiError;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: ready to take traffic (503 once draining for shutdown).
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.draining.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
    } else {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    }
}

/// Any path no route claims.
pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

/// A route that exists but not with this method.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::method_not_allowed(&method)
}
