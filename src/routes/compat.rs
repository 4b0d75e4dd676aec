//! The fal-client compatible route (`/api/fal/proxy` by default): the request names the real fal
//! URL in `x-fal-target-url`, exactly as `@fal-ai/client` sends it with `proxyUrl` set.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use std::sync::Arc;

use super::call::{Shape, proxy};
use crate::app::AppState;
use crate::error::ApiError;

/// The header carrying the fal URL.
pub const TARGET_HEADER: &str = "x-fal-target-url";

/// `GET|POST|PUT {compat_path}` with `x-fal-target-url`.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    if ![Method::GET, Method::POST, Method::PUT].contains(request.method()) {
        return Err(ApiError::method_not_allowed(request.method()));
    }
    let mut targets = request.headers().get_all(TARGET_HEADER).iter();
    let raw = match (targets.next(), targets.next()) {
        (Some(value), None) => value.to_str().map(str::to_owned).map_err(|_| {
            ApiError::bad_request("invalid_target", "x-fal-target-url must be plain ASCII")
        })?,
        (None, _) => {
            return Err(ApiError::bad_request(
                "missing_target_url",
                "the x-fal-target-url header is required on this route",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_target",
                "x-fal-target-url may appear only once",
            ));
        }
    };
    proxy(state, request, &raw, Shape::Compat).await
}
