//! One proxied call, from either route, top to bottom:
//! auth -> target -> body -> validate -> upstream -> relay.
//!
//! The two routes differ only in where the fal URL comes from (a header, or the path) and in
//! whether answers are rewritten to point back at the proxy; everything else happens here, in
//! this order, in one function.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::sync::Arc;

use crate::app::AppState;
use crate::body;
use crate::error::ApiError;
use crate::log::CallLog;
use crate::relay;
use crate::target::{CallKind, Refusal, Target, TargetError};
use crate::upstream;

/// Largest upstream JSON answer the native route buffers to rewrite URLs in (submit and status
/// answers are a few hundred bytes; anything larger is relayed untouched).
const MAX_REWRITE_BYTES: usize = 256 * 1024;

/// How the answer is shaped.
#[derive(Debug, Clone)]
pub enum Shape {
    /// fal-client protocol: answers go back exactly as fal sent them.
    Compat,
    /// Native routes: fal queue URLs are rewritten to `{public_base}/queue/...`.
    Native {
        /// Base URL of this proxy as the client sees it.
        public_base: String,
    },
}

/// Proxies one call to `raw_target` (a full fal URL).
pub async fn proxy(
    state: Arc<AppState>,
    request: Request,
    raw_target: &str,
    shape: Shape,
) -> Result<Response, ApiError> {
    let (parts, incoming_body) = request.into_parts();
    let mut log = CallLog::default();

    // 1. auth: who is calling.
    let principal = state.auth.authenticate(&parts.headers)?;
    log.client = Some(principal.id.clone());

    // 2. target: where it is going (pure; allowlists of hosts, paths, endpoints, webhooks).
    let target = state
        .rules
        .parse(&parts.method, raw_target)
        .map_err(target_error)?;
    log.kind = Some(target.kind);
    log.endpoint = target.endpoint.clone();

    // 3. body: read under the size and time limits (GETs carry none).
    let body = if parts.method == Method::GET {
        Bytes::new()
    } else {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        body::read(incoming_body, declared, state.body_limits).await?
    };

    // 4. validate: is the input acceptable (pure; schema + policy), before any money is spent.
    if target.kind.spends() || is_upload(target.kind) {
        require_json(&parts.headers)?;
    }
    if target.kind.spends() {
        let endpoint = target.endpoint.as_deref().unwrap_or_default();
        let validator = state.validators.get(endpoint).ok_or_else(|| {
            ApiError::Internal(format!(
                "no validator compiled for allowed endpoint {endpoint}"
            ))
        })?;
        validator.validate(&body).map_err(ApiError::Validation)?;
    } else if is_upload(target.kind)
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body).is_err()
    {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the upload request body must be a JSON object",
        ));
    }

    // 5. upstream: the call to fal (the only place the fal key is added).
    let headers = relay::forward_request_headers(&parts.headers);
    let upstream = state
        .fal
        .send(&target, parts.method.clone(), headers, body)
        .await?;
    log.fal_request_id = upstream
        .headers()
        .get("x-fal-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    // 6. relay: shape the answer, streaming bodies through.
    let mut response = match shape {
        Shape::Native { public_base } if rewrites(&target) => {
            rewrite_native(upstream, &target, public_base).await?
        }
        _ => relay::stream_through(upstream),
    };
    if log.fal_request_id.is_none() {
        log.fal_request_id = target.request_id.clone();
    }
    response.extensions_mut().insert(log);
    Ok(response)
}

fn target_error(e: TargetError) -> ApiError {
    match e.refusal {
        Refusal::BadRequest => ApiError::bad_request(e.code, e.message),
        Refusal::Forbidden => ApiError::forbidden(e.code, e.message),
        Refusal::MethodNotAllowed => ApiError::MethodNotAllowed { message: e.message },
    }
}

fn is_upload(kind: CallKind) -> bool {
    matches!(
        kind,
        CallKind::UploadInitiate
            | CallKind::UploadInitiateMultipart
            | CallKind::UploadCompleteMultipart
    )
}

/// Calls with a JSON body must say so (this also forces browsers to preflight them).
fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            message: "the request body must be sent as Content-Type: application/json".into(),
        })
    }
}

/// Which answers carry fal queue URLs worth rewriting on the native routes.
fn rewrites(target: &Target) -> bool {
    matches!(
        target.kind,
        CallKind::Submit | CallKind::Status | CallKind::StatusStream
    )
}

async fn rewrite_native(
    upstream: reqwest::Response,
    target: &Target,
    public_base: String,
) -> Result<Response, ApiError> {
    if target.kind == CallKind::StatusStream {
        let status = upstream.status();
        let headers = relay::relay_response_headers(upstream.headers());
        let stream = relay::rewrite_event_stream(upstream.bytes_stream(), public_base);
        let mut response = Response::new(Body::from_stream(stream));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        relay::mark_if_event_stream(response.headers_mut());
        return Ok(response);
    }
    let status = upstream.status();
    let headers = relay::relay_response_headers(upstream.headers());
    let mut stream = upstream.bytes_stream();
    let mut buffered = BytesMut::new();
    let body = loop {
        match stream.next().await {
            None => {
                let bytes = buffered.freeze();
                break Body::from(
                    relay::rewrite_queue_urls(&bytes, &public_base)
                        .map(Bytes::from)
                        .unwrap_or(bytes),
                );
            }
            Some(chunk) => {
                buffered.extend_from_slice(&chunk.map_err(|e| upstream::classify(&e))?);
                if buffered.len() > MAX_REWRITE_BYTES {
                    // Too large to be a queue answer: relay what was read and the rest as is.
                    let head =
                        futures_util::stream::once(std::future::ready(Ok::<_, reqwest::Error>(
                            buffered.freeze(),
                        )));
                    break Body::from_stream(head.chain(stream));
                }
            }
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The proxy's public base as this request sees it: `public_url`, else `Host` (and
/// `X-Forwarded-Proto` for the scheme, which only changes what this client is told).
pub fn public_base(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = match headers.get("x-forwarded-proto").map(HeaderValue::as_bytes) {
        Some(b"https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}
