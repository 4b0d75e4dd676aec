//! The fal-client compatible route (`/api/fal/proxy` by default): the request names the real fal
//! URL in `x-fal-target-url`, exactly as `@fal-ai/client` sends it with `proxyUrl` set.

use axum::extract::{Request, State};
use axum::http::{HeaderName, Method};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;

use super::call::{Shape, peer, proxy};
use crate::app::AppState;
use crate::error::ApiError;

/// The header carrying the fal URL.
pub const TARGET_HEADER: &str = "x-fal-target-url";
/// [`TARGET_HEADER`] as a header name (looked up on every call).
const TARGET: HeaderName = HeaderName::from_static(TARGET_HEADER);

/// `GET|POST|PUT {compat_path}` with `x-fal-target-url`.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    answer(state, peer(&request), request).await
}

/// [`handle`], for a request from `peer`.
pub async fn answer(
    state: Arc<AppState>,
    peer: SocketAddr,
    request: Request,
) -> Result<Response, ApiError> {
    if ![Method::GET, Method::POST, Method::PUT].contains(request.method()) {
        return Err(ApiError::method_not_allowed(request.method()));
    }
    let mut targets = request.headers().get_all(TARGET).iter();
    // A clone of the value shares its bytes: the URL is not copied.
    let raw = match (targets.next(), targets.next()) {
        (Some(value), None) => value.clone(),
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
    let raw = raw.to_str().map_err(|_| {
        ApiError::bad_request("invalid_target", "x-fal-target-url must be plain ASCII")
    })?;
    proxy(state, peer, request, raw, Shape::Compat).await
}
