//! Native REST routes mirroring fal's layout under the proxy's own origin, for apps without a
//! fal SDK:
//!
//! | proxy route | fal URL |
//! | --- | --- |
//! | `POST /queue/{endpoint_id}` | `POST https://queue.fal.run/{endpoint_id}` |
//! | `GET /queue/{owner}/{alias}/requests/{id}/status[/stream]` | same path on queue.fal.run |
//! | `GET /queue/{owner}/{alias}/requests/{id}` | result |
//! | `PUT /queue/{owner}/{alias}/requests/{id}/cancel` | cancel |
//! | `POST /run/{endpoint_id}` | `POST https://fal.run/{endpoint_id}` |
//! | `POST /storage/upload/initiate?storage_type=fal-cdn-v3` | `https://rest.fal.ai/storage/...` |
//!
//! The raw (still percent-encoded) path is used, so the target rules see exactly what the client
//! sent. Answers have their `status_url`/`response_url`/`cancel_url` pointed back at the proxy.

use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::Arc;

use super::call::{Shape, peer, proxy, public_base};
use crate::app::AppState;
use crate::error::ApiError;
use crate::target::FalHost;

/// `/queue/...`
pub async fn queue(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    forward(state, request, "/queue", FalHost::Queue).await
}

/// `/run/...`
pub async fn run(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    forward(state, request, "/run", FalHost::Run).await
}

/// `/storage/...`
pub async fn storage(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    forward(state, request, "", FalHost::Rest).await
}

async fn forward(
    state: Arc<AppState>,
    request: Request,
    prefix: &str,
    host: FalHost,
) -> Result<Response, ApiError> {
    let uri = request.uri();
    let rest = uri.path().strip_prefix(prefix).unwrap_or(uri.path());
    let raw = match uri.query() {
        Some(q) => format!("https://{}{rest}?{q}", host.name()),
        None => format!("https://{}{rest}", host.name()),
    };
    let shape = Shape::Native {
        public_base: public_base(&state, request.headers()),
    };
    proxy(state, peer(&request), request, &raw, shape).await
}
