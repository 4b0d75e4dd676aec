//! The embedded fake of fal (queue, sync run, storage, generated images), used by `--mock`,
//! `fal-proxy mock-fal` and the tests.
//!
//! Routes, relative to the mount:
//! - `/queue/{endpoint id}` and `/queue/{owner}/{alias}[/sub]/requests/{id}[/status[/stream]|/cancel]`
//!   (see `queue.rs`), `/run/{endpoint id}`, `/rest/storage/upload/...` (see `uploads.rs`): all
//!   require `Authorization: Key <anything>`.
//! - `/files/...`: uploads and generated images, open like pre-signed URLs and CDN links.
//!
//! Every request is recorded (see [`MockFal::received`]), bounded in count and body bytes.

mod clock;
mod gallery;
mod images;
mod input;
mod jobs;
mod queue;
mod storage;
mod stream;
#[cfg(test)]
mod tests;
mod uploads;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use bytes::Bytes;
use serde_json::json;

use crate::config::MockConfig;
use gallery::{IMAGE_CACHE_BYTES, ImageCache};
use jobs::{Job, JobStore, Timeline};
use storage::Storage;

/// Jobs remembered (oldest forgotten first).
const MAX_JOBS: usize = 10_000;
/// Requests remembered by [`MockFal::received`].
const MAX_RECORDS: usize = 10_000;
/// Total body bytes kept across remembered requests (oldest records dropped first).
const MAX_RECORD_BYTES: usize = 128 * 1024 * 1024;
/// Largest request body accepted (an upload, a part, or model input).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// The method.
    pub method: http::Method,
    /// The path relative to the mount, e.g. `/queue/fal-ai/nano-banana-pro/edit`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The headers as received.
    pub headers: http::HeaderMap,
    /// The body (empty when it was over [`MAX_BODY_BYTES`]).
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct Received {
    requests: VecDeque<ReceivedRequest>,
    body_bytes: usize,
}

struct Inner {
    timeline: Timeline,
    public_url: Option<String>,
    mount: String,
    jobs: Mutex<JobStore>,
    images: Mutex<ImageCache>,
    storage: Mutex<Storage>,
    received: Mutex<Received>,
}

/// The fake of fal: its state and its router. Cheap to clone (shared state).
#[derive(Clone)]
pub struct MockFal {
    inner: Arc<Inner>,
}

/// Locks a mutex, carrying on with the data if a previous holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A JSON `{"detail": message}` answer, fal's shape for errors.
fn detail(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "detail": message }))).into_response()
}

impl MockFal {
    /// `mount` is "" (served at the root) or a prefix like "/_mock" (the caller nests the router
    /// there).
    pub fn new(config: &MockConfig, mount: &str) -> Self {
        let public_url = config
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string());
        Self {
            inner: Arc::new(Inner {
                timeline: Timeline::from_config(config),
                public_url: public_url.filter(|u| !u.is_empty()),
                mount: mount.trim_end_matches('/').to_string(),
                jobs: Mutex::new(JobStore::new(MAX_JOBS)),
                images: Mutex::new(ImageCache::new(IMAGE_CACHE_BYTES)),
                storage: Mutex::new(Storage::default()),
                received: Mutex::new(Received::default()),
            }),
        }
    }

    /// The complete router with state; paths relative to the mount.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/queue/{*path}", any(queue::dispatch))
            .route("/run/{*path}", any(queue::run))
            .route(
                "/rest/storage/upload/initiate",
                post(uploads::initiate_single),
            )
            .route(
                "/rest/storage/upload/initiate-multipart",
                post(uploads::initiate_multipart),
            )
            .route(
                "/rest/storage/upload/complete-multipart",
                post(uploads::complete_rest),
            )
            .route(
                "/rest/{*path}",
                any(|| async { detail(StatusCode::NOT_FOUND, "Not Found") }),
            )
            .route_layer(middleware::from_fn(require_key));
        let files = Router::new()
            .route(
                "/files/upload/{token}",
                put(uploads::put_file).options(uploads::preflight),
            )
            .route(
                "/files/multipart/{token}/{part}",
                put(uploads::put_part).options(uploads::preflight),
            )
            .route(
                "/files/multipart/{token}/complete",
                post(uploads::complete_at_upload_url).options(uploads::preflight),
            )
            .route(
                "/files/gen/{id}/{file}",
                get(gallery::serve).options(uploads::preflight),
            )
            .route(
                "/files/{token}/{name}",
                get(uploads::get_file).options(uploads::preflight),
            );
        api.merge(files)
            .fallback(|| async { detail(StatusCode::NOT_FOUND, "Not Found") })
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(middleware::from_fn_with_state(self.clone(), record))
            .with_state(self.clone())
    }

    /// Every request received so far, oldest first (bounded to the last 10,000).
    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.inner.received)
            .requests
            .iter()
            .cloned()
            .collect()
    }

    /// The three upstream base URLs for a proxy reaching this fake at `origin` (e.g.
    /// `http://127.0.0.1:9000`): (queue, run, rest).
    pub fn base_urls(&self, origin: &str) -> (String, String, String) {
        let base = format!("{}{}", origin.trim_end_matches('/'), self.inner.mount);
        (
            format!("{base}/queue"),
            format!("{base}/run"),
            format!("{base}/rest"),
        )
    }

    /// The base of the URLs handed out for files: `public_url`, else `http://{Host}{mount}`.
    fn public_base(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.inner.public_url {
            return url.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}{}", self.inner.mount)
    }

    /// A copy of the job with this request id.
    fn job(&self, id: &str) -> Option<Job> {
        lock(&self.inner.jobs).get(id)
    }

    fn remember(&self, request: ReceivedRequest) {
        let mut received = lock(&self.inner.received);
        received.body_bytes += request.body.len();
        received.requests.push_back(request);
        while received.requests.len() > MAX_RECORDS
            || (received.body_bytes > MAX_RECORD_BYTES && received.requests.len() > 1)
        {
            if let Some(old) = received.requests.pop_front() {
                received.body_bytes -= old.body.len();
            }
        }
    }
}

/// Buffers the body (up to [`MAX_BODY_BYTES`]), records the request, then passes it on.
async fn record(State(mock): State<MockFal>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if parts.headers.get(header::HOST).is_none()
        && let Some(authority) = parts.uri.authority().and_then(|a| a.as_str().parse().ok())
    {
        // HTTP/2 carries the host in `:authority`; the file URLs need it.
        parts.headers.insert(header::HOST, authority);
    }
    let (body, refused) = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => (bytes, None),
        Err(e) => {
            let too_large = e
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let answer = if too_large {
                detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            } else {
                detail(StatusCode::BAD_REQUEST, "Could not read the request body")
            };
            (Bytes::new(), Some(answer))
        }
    };
    mock.remember(ReceivedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if let Some(answer) = refused {
        return answer;
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// fal's check: `Authorization: Key <something>`, else 401.
async fn require_key(request: Request, next: Next) -> Response {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let Some(value) = value else {
        return detail(StatusCode::UNAUTHORIZED, "Missing authorization header");
    };
    let key = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("key"))
        .map(|(_, key)| key.trim());
    match key {
        Some(key) if !key.is_empty() => next.run(request).await,
        _ => detail(
            StatusCode::UNAUTHORIZED,
            "Invalid authorization header: expected `Key <key>`",
        ),
    }
}
