//! The queue (`/queue/...`) and sync run (`/run/...`) routes, answering as fal does.
//!
//! A cancelled job (fal has no documented shape for it) reads as `COMPLETED` with
//! `"error": "Request was cancelled"` in its status, and its result is
//! `400 {"detail":"Request was cancelled"}`. Cancelling takes effect at once, whatever the phase.

use std::ops::Range;
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::clock::rfc3339;
use super::gallery::result_json;
use super::jobs::{CancelOutcome, Job, LOG_MESSAGES, Phase};
use super::{MockFal, detail, input, lock, stream};

/// What a `/queue` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    Submit,
    Status,
    Stream,
    Result,
    Cancel,
}

/// Splits `owner/alias[/sub...]` or `.../requests/{id}[/status[/stream]|/cancel]` into the app
/// (`owner/alias`, namespace kept), the request id (if any) and the call.
fn classify(path: &str) -> Option<(String, Option<String>, Call)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let app_len = if matches!(segments.first(), Some(&("workflows" | "comfy"))) {
        3
    } else {
        2
    };
    if segments.len() < app_len {
        return None;
    }
    let app = segments[..app_len].join("/");
    let at = (app_len..segments.len().saturating_sub(1)).find(|&i| segments[i] == "requests");
    let Some(at) = at else {
        return Some((app, None, Call::Submit));
    };
    let id = segments[at + 1].to_string();
    let call = match &segments[at + 2..] {
        [] => Call::Result,
        ["status"] => Call::Status,
        ["status", "stream"] => Call::Stream,
        ["cancel"] => Call::Cancel,
        _ => return None,
    };
    Some((app, Some(id), call))
}

/// Whether the query asks for logs (`logs=1` or `logs=true`).
fn wants_logs(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "logs" && (v == "1" || v.eq_ignore_ascii_case("true")))
}

fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-fal-request-id", value);
    }
    response
}

/// The status JSON of `job` in `phase`, with the log lines in `logs` (none when `None`).
pub fn status_body(mock: &MockFal, job: &Job, phase: Phase, logs: Option<Range<usize>>) -> Value {
    let response_url = job.response_url();
    let mut body = json!({
        "request_id": job.id,
        "response_url": response_url,
        "status_url": format!("{response_url}/status"),
        "cancel_url": format!("{response_url}/cancel"),
    });
    let written = match phase {
        Phase::InQueue { position } => {
            body["status"] = json!("IN_QUEUE");
            body["queue_position"] = json!(position);
            0
        }
        Phase::InProgress { logs } => {
            body["status"] = json!("IN_PROGRESS");
            logs
        }
        Phase::Completed {
            logs,
            inference,
            cancelled,
        } => {
            body["status"] = json!("COMPLETED");
            body["metrics"] = json!({ "inference_time": inference.as_secs_f64() });
            if cancelled {
                body["error"] = json!("Request was cancelled");
            }
            logs
        }
    };
    if let Some(range) = logs {
        let timeline = mock.inner.timeline;
        let lines: Vec<Value> = (range.start..range.end.min(written))
            .map(|i| {
                json!({
                    "message": LOG_MESSAGES[i],
                    "level": "INFO",
                    "source": "user",
                    "timestamp": rfc3339(job.submitted_wall + timeline.log_offset(i)),
                })
            })
            .collect();
        body["logs"] = json!(lines);
    }
    body
}

/// The phase of `job` now.
pub fn phase_now(mock: &MockFal, job: &Job) -> Phase {
    mock.inner
        .timeline
        .phase(job.submitted, Instant::now(), job.cancelled_at)
}

/// Parses a model input and records a new job for it; the error is fal's 422 body.
fn accept_job(mock: &MockFal, app: String, body: &[u8]) -> Result<Job, serde_json::Value> {
    let params = input::parse(body).map_err(|problems| json!({ "detail": problems }))?;
    let job = Job::new(app, params);
    lock(&mock.inner.jobs).insert(job.clone());
    Ok(job)
}

fn unprocessable(body: serde_json::Value) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

fn submit(mock: &MockFal, app: String, body: &[u8]) -> Response {
    let job = match accept_job(mock, app, body) {
        Ok(job) => job,
        Err(detail) => return unprocessable(detail),
    };
    let position = match phase_now(mock, &job) {
        Phase::InQueue { position } => position,
        _ => 0,
    };
    let response_url = job.response_url();
    let body = json!({
        "request_id": job.id,
        "response_url": response_url,
        "status_url": format!("{response_url}/status"),
        "cancel_url": format!("{response_url}/cancel"),
        "queue_position": position,
        "status": "IN_QUEUE",
    });
    with_request_id(axum::Json(body).into_response(), &job.id)
}

async fn result(mock: &MockFal, job: &Job, headers: &HeaderMap) -> Response {
    match phase_now(mock, job) {
        Phase::Completed {
            cancelled: true, ..
        } => detail(StatusCode::BAD_REQUEST, "Request was cancelled"),
        Phase::Completed { .. } => match result_json(mock, job, &mock.public_base(headers)).await {
            Ok(body) => axum::Json(body).into_response(),
            Err(response) => response,
        },
        _ => detail(StatusCode::BAD_REQUEST, "Request is still in progress"),
    }
}

fn cancel(mock: &MockFal, id: &str) -> Response {
    let outcome = lock(&mock.inner.jobs).cancel(id, Instant::now(), &mock.inner.timeline);
    match outcome {
        CancelOutcome::Requested => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "status": "CANCELLATION_REQUESTED" })),
        )
            .into_response(),
        CancelOutcome::AlreadyCompleted => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "status": "ALREADY_COMPLETED" })),
        )
            .into_response(),
        CancelOutcome::NotFound => detail(StatusCode::NOT_FOUND, "Request not found"),
    }
}

/// Every `/queue/{*path}` request.
pub async fn dispatch(
    State(mock): State<MockFal>,
    method: Method,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((app, id, call)) = classify(&path) else {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    };
    let allowed = match call {
        Call::Submit => Method::POST,
        Call::Cancel => Method::PUT,
        _ => Method::GET,
    };
    if method != allowed && !(allowed == Method::GET && method == Method::HEAD) {
        return detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let Some(id) = id else {
        return submit(&mock, app, &body);
    };
    let Some(job) = mock.job(&id) else {
        return detail(StatusCode::NOT_FOUND, "Request not found");
    };
    let response = match call {
        Call::Submit => return detail(StatusCode::NOT_FOUND, "Not Found"),
        Call::Status => {
            let phase = phase_now(&mock, &job);
            let logs = wants_logs(query.as_deref()).then_some(0..LOG_MESSAGES.len());
            axum::Json(status_body(&mock, &job, phase, logs)).into_response()
        }
        Call::Stream => stream::respond(mock.clone(), job.id.clone(), wants_logs(query.as_deref())),
        Call::Result => result(&mock, &job, &headers).await,
        Call::Cancel => cancel(&mock, &job.id),
    };
    with_request_id(response, &job.id)
}

/// `POST /run/{*endpoint}`: holds the connection for the whole (fake) generation, then answers
/// the result itself.
pub async fn run(
    State(mock): State<MockFal>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let app = match classify(&path) {
        Some((app, None, Call::Submit)) => app,
        _ => return detail(StatusCode::NOT_FOUND, "Not Found"),
    };
    // Kept in the job store too, so its image URLs can be served afterwards.
    let job = match accept_job(&mock, app, &body) {
        Ok(job) => job,
        Err(detail) => return unprocessable(detail),
    };
    tokio::time::sleep(mock.inner.timeline.total()).await;
    let response = match result_json(&mock, &job, &mock.public_base(&headers)).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(response) => response,
    };
    with_request_id(response, &job.id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_like_fal() {
        let app = |s: &str| s.to_string();
        assert_eq!(
            classify("fal-ai/nano-banana-pro/edit"),
            Some((app("fal-ai/nano-banana-pro"), None, Call::Submit))
        );
        assert_eq!(
            classify("workflows/me/flow"),
            Some((app("workflows/me/flow"), None, Call::Submit))
        );
        let id = Some("abc".to_string());
        assert_eq!(
            classify("fal-ai/x/requests/abc"),
            Some((app("fal-ai/x"), id.clone(), Call::Result))
        );
        assert_eq!(
            classify("fal-ai/x/edit/requests/abc/status"),
            Some((app("fal-ai/x"), id.clone(), Call::Status))
        );
        assert_eq!(
            classify("fal-ai/x/requests/abc/status/stream"),
            Some((app("fal-ai/x"), id.clone(), Call::Stream))
        );
        assert_eq!(
            classify("comfy/o/a/requests/abc/cancel"),
            Some((app("comfy/o/a"), id, Call::Cancel))
        );
        assert_eq!(classify("fal-ai"), None);
        assert_eq!(classify("fal-ai/x/requests/abc/nope"), None);
        assert!(wants_logs(Some("logs=1")) && wants_logs(Some("a=b&logs=true")));
        assert!(!wants_logs(Some("logs=0")) && !wants_logs(None));
    }
}
