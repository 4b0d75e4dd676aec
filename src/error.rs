//! `ApiError`: the one place where anything that goes wrong becomes an HTTP response.
//!
//! Handlers return `Result<_, ApiError>` and use `?`. Every response body is JSON with a human
//! `message` and a machine `code`, except validation failures, which use fal's own FastAPI shape
//! (`{"detail":[{"loc","msg","type"}]}`) so the official clients raise their `ValidationError`.
//! Internal causes (upstream errors, I/O) are logged here and never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::validate::Violation;

/// Everything a request can fail with. Each variant's doc names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is malformed (bad target URL, bad query, bad id).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no credentials, or credentials that match no client. Carries `WWW-Authenticate`.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// 403: well-formed but not allowed (endpoint not on the allowlist, webhook URL not allowed,
    /// CORS origin refused).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404: no such route, or a request id this caller may not see.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 405: a method the route does not take.
    #[error("{message}")]
    MethodNotAllowed { message: String },
    /// 408: the client stopped sending its body (silence longer than the read timeout).
    #[error("the request body was not received in time")]
    BodyTimeout,
    /// 413: the body is larger than `server.max_body_bytes`.
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415: a body that must be JSON was sent with another content type.
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// 422: the input violates the endpoint's schema or policy; fal's `detail` shape.
    #[error("the input failed validation ({} problems)", .0.len())]
    Validation(Vec<Violation>),
    /// 402: the job would exceed the client's budget. Not 429, so the official clients do not
    /// retry it.
    #[error("this job would exceed the {} budget", .period)]
    BudgetExceeded {
        /// `daily` or `monthly`.
        period: &'static str,
        /// The budget, in micro-USD.
        limit: i64,
        /// Spent so far in the period, in micro-USD.
        used: i64,
        /// What this job costs, in micro-USD.
        cost: i64,
        /// When the period resets (unix seconds).
        resets_at: i64,
    },
    /// 409: a conflicting request is still being handled (an idempotent repeat in flight).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 422 with a code of this proxy's own (not a schema violation), e.g. a reused
    /// idempotency key.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 429: a rate limit (`rate_limited`) or the jobs-in-flight cap (`too_many_jobs`).
    #[error("{message}")]
    RateLimited {
        code: &'static str,
        message: String,
        /// `Retry-After` seconds.
        retry_after: u64,
        /// The limit that refused, for the `RateLimit` headers.
        rate: Option<crate::limits::RateState>,
    },
    /// 503: the identity provider's keys (JWKS) could not be fetched; the client cannot fix
    /// this, so it is not a 401 (which would make apps drop a valid session).
    #[error("the identity provider's signing keys could not be fetched; retry shortly")]
    AuthUnavailable,
    /// 503: the store could not be used. The cause is logged, not sent.
    #[error("the proxy's store is unavailable; retry shortly")]
    StoreUnavailable(String),
    /// 502: fal could not be reached, or the connection broke. The cause is logged, not sent.
    #[error("fal could not be reached")]
    UpstreamUnreachable(String),
    /// 504: fal did not answer within the configured timeout.
    #[error("fal did not answer in time")]
    UpstreamTimeout,
    /// 503: the proxy is at its concurrency limit or shutting down.
    #[error("the proxy is overloaded; retry shortly")]
    Overloaded,
    /// 500: a bug. The cause is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// Shorthand for a 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// Shorthand for a 403 with a code.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// A 405 for `method` on a route that does not take it.
    pub fn method_not_allowed(method: &axum::http::Method) -> Self {
        Self::MethodNotAllowed {
            message: format!("method {method} is not allowed on this route"),
        }
    }

    /// Shorthand for a 404 with a code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BudgetExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::StoreUnavailable(_) | Self::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::RateLimited { code, .. } => code,
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::AuthUnavailable => "auth_unavailable",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BodyTimeout => "body_timeout",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::Validation(_) => "invalid_input",
            Self::UpstreamUnreachable(_) => "upstream_unreachable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Overloaded => "overloaded",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::UpstreamUnreachable(cause) => {
                tracing::warn!(cause = %cause, "upstream unreachable");
            }
            Self::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            Self::StoreUnavailable(cause) => tracing::error!(cause = %cause, "store error"),
            _ => {}
        }
        let body = match &self {
            // fal's own shape, plus our code/message for humans; the official client reads `detail`.
            Self::Validation(violations) => json!({
                "detail": violations,
                "code": self.code(),
                "message": self.to_string(),
            }),
            Self::BudgetExceeded {
                period,
                limit,
                used,
                cost,
                resets_at,
            } => {
                let usd = crate::limits::cost::micros_to_usd;
                json!({
                    "code": self.code(),
                    "message": self.to_string(),
                    "budget": {
                        "period": period,
                        "limit_usd": usd(*limit),
                        "used_usd": usd(*used),
                        "remaining_usd": usd((limit - used).max(0)),
                        "job_cost_usd": usd(*cost),
                        "resets_at": resets_at,
                    }
                })
            }
            Self::RateLimited { retry_after, .. } => json!({
                "code": self.code(),
                "message": self.to_string(),
                "retry_after_secs": retry_after,
            }),
            _ => json!({ "code": self.code(), "message": self.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized { .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"fal-proxy\", Key realm=\"fal-proxy\""),
                );
            }
            Self::Overloaded | Self::StoreUnavailable(_) | Self::AuthUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::RateLimited {
                retry_after, rate, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                if let Some(rate) = rate {
                    crate::limits::headers::insert(headers, &rate);
                }
            }
            _ => {}
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
