//! One proxied call, from either route, top to bottom:
//! auth -> target -> rate limit -> ownership -> body -> validate -> spend -> upstream -> relay.
//!
//! The two routes differ only in where the fal URL comes from (a header, or the path) and in
//! whether answers are rewritten to point back at the proxy; everything else happens here, in
//! this order, in one function.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::ownership;
use super::spend::{self, Begin, Outcome};
use crate::app::AppState;
use crate::auth::Principal;
use crate::body;
use crate::error::ApiError;
use crate::limits::{self, Class, RateState, Verdict};
use crate::log::CallLog;
use crate::relay;
use crate::target::{CallKind, Refusal, Target, TargetError};
use crate::upstream;

/// Largest upstream answer buffered to read or rewrite (submit and status answers are a few
/// hundred bytes; anything larger is relayed untouched).
const MAX_BUFFERED: usize = 256 * 1024;

/// Largest answer of known length read whole before it is relayed ([`relay_read`]); larger
/// ones (results with images inline) stream through.
const READ_WHOLE: u64 = 64 * 1024;

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

/// fal's header naming the request id of a submit.
const FAL_REQUEST_ID: HeaderName = HeaderName::from_static("x-fal-request-id");

type ByteStream = BoxStream<'static, Result<Bytes, upstream::BodyError>>;

/// Proxies one call from `peer` (the socket's far end) to `raw_target` (a full fal URL).
pub async fn proxy(
    state: Arc<AppState>,
    peer: SocketAddr,
    request: Request,
    raw_target: &str,
    shape: Shape,
) -> Result<Response, ApiError> {
    let (parts, incoming_body) = request.into_parts();

    // 1. auth: who is calling.
    let principal = state.auth.authenticate(&parts.headers, peer).await?;

    // 2. target: where it is going (pure; allowlists of hosts, paths, endpoints, webhooks).
    let target = state
        .rules
        .parse(&parts.method, raw_target)
        .map_err(target_error)?;

    // 3. limits: may they, now (nothing is read or sent before this says yes).
    let rate = rate_limit(&state, &principal, class_of(target.kind))?;

    let result = async {
        // 4. ownership: a request id is readable only by the client that submitted it.
        if target.kind.is_request_call() {
            ownership::check(&state, &principal, &target).await?;
        }

        // 5. body: read under the size and time limits (GETs carry none).
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

        // 6. validate: is the input acceptable (pure; schema + policy), before any spend.
        let forward = relay::forward_request_headers(&parts.headers);
        if target.kind.spends() || target.kind.is_upload() {
            require_json(&parts.headers)?;
        }
        if !target.kind.spends() {
            if target.kind.is_upload() && !is_json_object(&body) {
                return Err(ApiError::bad_request(
                    "invalid_json",
                    "the upload request body must be a JSON object",
                ));
            }
            // 8-9. upstream + relay for calls that spend nothing.
            let upstream = state
                .fal
                .send(&target, parts.method.clone(), forward, body)
                .await?;
            return Ok(relay_read(&state, upstream, &target, &shape).await);
        }
        let endpoint = target.endpoint.as_deref().unwrap_or_default();
        let validator = state.validators.get(endpoint).ok_or_else(|| {
            ApiError::Internal(format!(
                "no validator compiled for allowed endpoint {endpoint}"
            ))
        })?;
        let input = validator.validate(&body).map_err(ApiError::Validation)?;

        // 7. spend: idempotency, jobs in flight, budget (reserved before fal is called).
        let spend =
            match spend::begin(&state, &principal, &target, &parts.headers, &body, &input).await? {
                Begin::Go(spend) => spend,
                Begin::Replay(stored) => {
                    let body = Bytes::from(stored.body.clone());
                    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
                    return Ok(respond(
                        status,
                        spend::replay_headers(&stored),
                        body,
                        &shape,
                    ));
                }
            };

        // 8. upstream: in its own task, so the bookkeeping finishes even if the client leaves.
        // Boxed: the task then holds a pointer, and spawning moves 8 bytes instead of copying
        // the whole future (it holds hyper's) through the task's set-up several times.
        let task = tokio::spawn(Box::pin(spend_upstream(
            state.clone(),
            target.clone(),
            parts.method.clone(),
            forward,
            body,
            spend,
        )));
        let answer = task
            .await
            .map_err(|e| ApiError::Internal(format!("upstream task failed: {e}")))??;

        // 9. relay.
        Ok(match answer {
            Answer::Buffered(status, headers, bytes) => respond(status, headers, bytes, &shape),
            Answer::Streaming(upstream) => relay::stream_through(upstream),
        })
    }
    .await;

    let mut response = match result {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    limits::headers::insert(response.headers_mut(), &rate);
    if crate::log::access_enabled() {
        let fal_request_id = response
            .headers()
            .get(FAL_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| target.request_id.as_deref().map(str::to_owned));
        let log = CallLog {
            kind: Some(target.kind),
            endpoint: target.endpoint.clone(),
            client: Some(principal.id.clone()),
            fal_request_id,
        };
        response.extensions_mut().insert(log);
    }
    Ok(response)
}

/// The peer of a request whose socket is not known: an address no trusted-proxy range can
/// contain, so forwarding headers are never believed for it.
pub const UNKNOWN_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The socket peer of a request (`ConnectInfo`, which [`super::dispatch::Dispatch`] sets on
/// what it hands the router), or [`UNKNOWN_PEER`].
pub fn peer(request: &Request) -> SocketAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(UNKNOWN_PEER, |c| c.0)
}

/// The rate-limit class of a call.
fn class_of(kind: CallKind) -> Class {
    if kind.spends() {
        Class::Submit
    } else if kind.is_upload() {
        Class::Upload
    } else {
        Class::Poll
    }
}

/// Takes one call of `class` for the caller, or refuses it with 429 `rate_limited`.
pub fn rate_limit(
    state: &AppState,
    principal: &Principal,
    class: Class,
) -> Result<RateState, ApiError> {
    match state.rates.check(&principal.plan, class, &principal.id) {
        Verdict::Allowed(rate) => Ok(rate),
        Verdict::Limited { state, retry_after } => Err(ApiError::RateLimited {
            code: "rate_limited",
            message: format!("too many {} calls; retry in {retry_after} s", class.name()),
            retry_after,
            rate: Some(state),
        }),
    }
}

/// What the spending call's task hands back.
enum Answer {
    /// A submit's answer, read whole (small) to learn its request id.
    Buffered(StatusCode, HeaderMap, Bytes),
    /// Anything else, still streaming.
    Streaming(upstream::FalResponse),
}

async fn spend_upstream(
    state: Arc<AppState>,
    target: Target,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    spend: spend::Spend,
) -> Result<Answer, ApiError> {
    let upstream = match state.fal.send(&target, method, headers, body).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let outcome = if matches!(e, ApiError::UpstreamTimeout) {
                Outcome::Unknown
            } else {
                Outcome::Refused
            };
            spend.settle(&state, outcome).await;
            return Err(e);
        }
    };
    let status = upstream.status;
    if !status.is_success() {
        spend.settle(&state, Outcome::Refused).await;
        return Ok(Answer::Streaming(upstream));
    }
    let header_id = upstream
        .headers
        .get(FAL_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if target.kind != CallKind::Submit {
        spend
            .settle(
                &state,
                Outcome::Accepted {
                    request_id: header_id,
                    answer: None,
                },
            )
            .await;
        return Ok(Answer::Streaming(upstream));
    }
    let headers = upstream.headers;
    let bytes = match collect(upstream.body, MAX_BUFFERED).await {
        Ok(bytes) => bytes,
        Err(e) => {
            spend.settle(&state, Outcome::Unknown).await;
            return Err(e);
        }
    };
    let request_id = submit_request_id(&bytes).or(header_id);
    spend
        .settle(
            &state,
            Outcome::Accepted {
                request_id,
                answer: Some((status.as_u16(), &headers, &bytes)),
            },
        )
        .await;
    Ok(Answer::Buffered(status, headers, bytes))
}

/// The `request_id` string of fal's answer to a submit (a JSON object), if it has one. Only
/// that field is read: the rest of the answer is skipped, not built into a `Value`.
fn submit_request_id(answer: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        request_id: Option<std::borrow::Cow<'a, str>>,
    }
    if answer.trim_ascii_start().first() != Some(&b'{') {
        return None; // a derived struct would also accept an array
    }
    let answer: Answer<'_> = serde_json::from_slice(answer).ok()?;
    answer.request_id.map(std::borrow::Cow::into_owned)
}

/// Reads `stream` to its end, failing past `limit` bytes. An answer that arrives in one piece
/// (as a small one does) is kept as it is, not copied.
async fn collect<S>(mut stream: S, limit: usize) -> Result<Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, upstream::BodyError>> + Unpin,
{
    let mut first = Bytes::new();
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_api())?;
        if first.is_empty() && buffer.is_empty() {
            first = chunk;
        } else {
            if buffer.is_empty() {
                buffer.extend_from_slice(&std::mem::take(&mut first));
            }
            buffer.extend_from_slice(&chunk);
        }
        if first.len().max(buffer.len()) > limit {
            return Err(ApiError::UpstreamUnreachable(
                "fal's answer was unexpectedly large".into(),
            ));
        }
    }
    Ok(if buffer.is_empty() {
        first
    } else {
        buffer.freeze()
    })
}

/// A complete (buffered) answer, rewritten for the native routes.
fn respond(status: StatusCode, headers: HeaderMap, body: Bytes, shape: &Shape) -> Response {
    let body = match shape {
        Shape::Native { public_base } => relay::rewrite_queue_urls(&body, public_base)
            .map(Bytes::from)
            .unwrap_or(body),
        Shape::Compat => body,
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Relays the answer to a call that spends nothing, noticing finished jobs on the way.
async fn relay_read(
    state: &Arc<AppState>,
    upstream: upstream::FalResponse,
    target: &Target,
    shape: &Shape,
) -> Response {
    let status = upstream.status;
    let mut headers = upstream.headers;
    let event_stream = relay::mark_if_event_stream(&mut headers);
    let length = upstream.body.exact_length();
    if !event_stream
        && target.kind != CallKind::StatusStream
        && length.is_some_and(|n| n <= READ_WHOLE)
    {
        // A small answer of known length (a status, a result in `sync_mode` aside) is read
        // whole before answering: fal's connection is free again at once, and one that breaks
        // off mid-answer becomes a clean error instead of a cut body.
        let body = match collect(upstream.body, MAX_BUFFERED).await {
            Ok(body) => body,
            Err(e) => return e.into_response(),
        };
        if let Some(id) = &target.request_id {
            let finished = match target.kind {
                CallKind::Status => status.is_success() && ownership::is_completed(&body),
                _ => finishes(target.kind, status),
            };
            if finished {
                ownership::finish_later(state, id);
            }
        }
        let body = match (shape, target.kind) {
            (Shape::Native { public_base }, CallKind::Status) => {
                relay::rewrite_queue_urls(&body, public_base)
                    .map(Bytes::from)
                    .unwrap_or(body)
            }
            _ => body,
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return response;
    }
    let mut stream: ByteStream = upstream.body.boxed();
    if let Some(id) = &target.request_id {
        match target.kind {
            CallKind::Status | CallKind::StatusStream if status.is_success() => {
                stream = ownership::observe_completion(stream, state.clone(), id.clone()).boxed();
            }
            kind if finishes(kind, status) => ownership::finish_later(state, id),
            _ => {}
        }
    }
    let body = match (shape, target.kind) {
        (Shape::Native { public_base }, CallKind::StatusStream) => {
            Body::from_stream(relay::rewrite_event_stream(stream, public_base.clone()))
        }
        (Shape::Native { public_base }, CallKind::Status) => {
            rewrite_small(stream, public_base).await
        }
        _ => relay::unchanged_body(stream, length),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Whether fal's `status` answer to a call of `kind` (other than a status) means the job is
/// over: a result was fetched, or a cancel was accepted or came too late.
fn finishes(kind: CallKind, status: StatusCode) -> bool {
    match kind {
        CallKind::Result => status.is_success(),
        CallKind::Cancel => status.is_success() || status == StatusCode::BAD_REQUEST,
        _ => false,
    }
}

/// Buffers a small answer to rewrite its URLs; a large one is relayed untouched.
async fn rewrite_small(mut stream: ByteStream, public_base: &str) -> Body {
    let mut buffered = BytesMut::new();
    loop {
        match stream.next().await {
            None => {
                let bytes = buffered.freeze();
                return Body::from(
                    relay::rewrite_queue_urls(&bytes, public_base)
                        .map(Bytes::from)
                        .unwrap_or(bytes),
                );
            }
            Some(Ok(chunk)) => {
                buffered.extend_from_slice(&chunk);
                if buffered.len() > MAX_BUFFERED {
                    let head =
                        futures_util::stream::once(std::future::ready(Ok(buffered.freeze())));
                    return Body::from_stream(head.chain(stream));
                }
            }
            Some(Err(e)) => {
                // The client sees a cut body, as it would from fal itself.
                tracing::warn!(error = %e, "upstream body broke");
                return Body::from(buffered.freeze());
            }
        }
    }
}

fn target_error(e: TargetError) -> ApiError {
    match e.refusal {
        Refusal::BadRequest => ApiError::bad_request(e.code, e.message),
        Refusal::Forbidden => ApiError::forbidden(e.code, e.message),
        Refusal::MethodNotAllowed => ApiError::MethodNotAllowed { message: e.message },
    }
}

fn is_json_object(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body).is_ok()
}

/// Calls with a JSON body must say so (this also forces browsers to preflight them).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// The proxy's public base as this request sees it: `public_url`, else `Host` (and
/// `X-Forwarded-Proto` for the scheme, which only changes what this client is told).
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
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

#[cfg(test)]
mod tests {
    use super::submit_request_id;

    #[test]
    fn reads_the_request_id_of_a_submit_answer_and_nothing_else() {
        let id = |answer: &str| submit_request_id(answer.as_bytes());
        assert_eq!(
            id(r#"{"status":"IN_QUEUE","request_id":"abc-1","queue_position":0,"logs":null}"#),
            Some("abc-1".into())
        );
        assert_eq!(id(" \n{\"request_id\":\"a\\u0062c\"}"), Some("abc".into()));
        assert_eq!(id(r#"{"status":"IN_QUEUE"}"#), None);
        assert_eq!(id(r#"{"request_id":7}"#), None);
        assert_eq!(id(r#"{"request_id":null}"#), None);
        assert_eq!(id(r#"["abc"]"#), None);
        assert_eq!(id(r#"{"request_id":"abc""#), None);
        assert_eq!(id(""), None);
    }
}
