//! CORS for browsers: which origins may call, what a preflight allows, what responses expose.
//!
//! Written here rather than taken from `tower-http` because the rule "a refused origin gets no
//! CORS headers at all, and is refused server-side too" is stricter than its layer allows.
//! [`OriginPattern`] and [`CorsPolicy::is_allowed`] are pure.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Request headers a preflight may ask for (the official client's, plus `idempotency-key`).
const ALLOWED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-fal-target-url",
    "x-fal-queue-priority",
    "x-fal-runner-hint",
    "x-fal-request-timeout",
    "x-fal-object-lifecycle-preference",
    "x-fal-store-io",
];

/// Response headers a browser script may read.
const EXPOSED: &str = "x-fal-request-id, x-fal-request-timeout-type, x-fal-proxy-request-id, retry-after, ratelimit, ratelimit-policy, idempotency-replayed";

/// One entry of `cors.allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// Any origin (`*`).
    Any,
    /// Exactly this origin, e.g. `https://app.example.com`.
    Exact(String),
    /// `scheme://*.domain[:port]`: any subdomain (at any depth) of `domain`, not the domain itself.
    Subdomains {
        /// `https://` or `http://`.
        scheme: String,
        /// `.example.com` (with the leading dot).
        suffix: String,
        /// `:8443` or empty.
        port: String,
    },
}

impl OriginPattern {
    /// Parses a configured origin pattern; the error says what is wrong.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw == "*" {
            return Ok(Self::Any);
        }
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or("an origin looks like https://host[:port]")?;
        if scheme != "https" && scheme != "http" {
            return Err("the scheme must be http or https".into());
        }
        if rest.is_empty() || rest.contains('/') || raw != raw.to_ascii_lowercase() {
            return Err("an origin is lowercase scheme://host[:port], with no path".into());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (h, format!(":{p}"))
            }
            Some(_) => return Err("the port must be digits".into()),
            None => (rest, String::new()),
        };
        let valid_host = |h: &str| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        if let Some(domain) = host.strip_prefix("*.") {
            if !valid_host(domain) || !domain.contains('.') && domain != "localhost" {
                return Err("a wildcard needs a domain with a dot after it (*.example.com)".into());
            }
            return Ok(Self::Subdomains {
                scheme: format!("{scheme}://"),
                suffix: format!(".{domain}"),
                port,
            });
        }
        if !valid_host(host) {
            return Err("the host has characters a host cannot have".into());
        }
        Ok(Self::Exact(raw.to_string()))
    }

    /// Whether this pattern admits `origin` (as a browser sends it).
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => exact == origin,
            Self::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let Some(rest) = origin.strip_prefix(scheme.as_str()) else {
                    return false;
                };
                let (host, origin_port) = match rest.find(':') {
                    Some(i) => rest.split_at(i),
                    None => (rest, ""),
                };
                if origin_port != port {
                    return false;
                }
                match host.strip_suffix(suffix.as_str()) {
                    Some(sub) => {
                        !sub.is_empty()
                            && !sub.starts_with('.')
                            && sub
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    }
                    None => false,
                }
            }
        }
    }
}

/// The configured origins, compiled.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    patterns: Vec<OriginPattern>,
    max_age: HeaderValue,
}

impl CorsPolicy {
    /// Compiles `cors.allowed_origins` (already checked by config validation).
    pub fn new(origins: &[String], max_age_secs: u64) -> Result<Self, String> {
        let patterns = origins
            .iter()
            .map(|o| OriginPattern::parse(o))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            patterns,
            max_age: HeaderValue::from(max_age_secs),
        })
    }

    /// Whether a cross-origin caller from `origin` is allowed.
    pub fn is_allowed(&self, origin: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(origin))
    }
}

/// Is `origin` the proxy's own origin (same host and port as the request's `Host`)?
fn is_same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

/// What [`admit`] decided for a request.
pub enum Admission {
    /// Not a cross-origin browser call, or one from the proxy's own origin: no CORS headers.
    Plain,
    /// An allowed origin: the response gets [`decorate`]d for it.
    Allowed(String),
    /// Answered here: a preflight, or a refused origin.
    Answered(Response),
}

/// Answers preflights, refuses foreign origins, and says whether the response must carry CORS
/// headers. Runs before auth, so a browser sees a clean CORS failure.
pub fn admit(policy: &CorsPolicy, request: &Request) -> Admission {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        // Not a browser cross-origin call (servers, curl, same-origin GETs).
        return Admission::Plain;
    };
    let allowed = policy.is_allowed(origin);
    let same_origin = is_same_origin(origin, request.headers());
    let is_preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if is_preflight {
        if !allowed {
            return Admission::Answered(refused());
        }
        return Admission::Answered(preflight(policy, origin, request.headers()));
    }
    if !allowed && !same_origin {
        // Browsers would hide the answer anyway; refusing here also stops form posts and
        // no-cors requests from spending money on behalf of a foreign page.
        return Admission::Answered(refused());
    }
    if allowed {
        Admission::Allowed(origin.to_owned())
    } else {
        Admission::Plain
    }
}

fn refused() -> Response {
    ApiError::forbidden(
        "origin_not_allowed",
        "this origin is not in cors.allowed_origins",
    )
    .into_response()
}

fn preflight(policy: &CorsPolicy, origin: &str, request_headers: &HeaderMap) -> Response {
    let asked = request_headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let allowed_headers: Vec<&str> = asked
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .filter(|h| {
            let lower = h.to_ascii_lowercase();
            ALLOWED_REQUEST_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-fal-")
        })
        .collect();
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT"),
    );
    let list = if allowed_headers.is_empty() {
        ALLOWED_REQUEST_HEADERS.join(", ")
    } else {
        allowed_headers.join(", ")
    };
    if let Ok(value) = HeaderValue::from_str(&list) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, policy.max_age.clone());
    headers.insert(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    *response.body_mut() = Body::empty();
    response
}

/// The CORS headers of a response to an allowed origin.
pub fn decorate(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_patterns() {
        let exact = OriginPattern::parse("https://app.example.com").unwrap();
        assert!(exact.matches("https://app.example.com"));
        assert!(!exact.matches("https://app.example.com.evil.net"));
        assert!(!exact.matches("http://app.example.com"));

        let wild = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(wild.matches("https://a.example.com"));
        assert!(wild.matches("https://a.b.example.com"));
        assert!(!wild.matches("https://example.com"));
        assert!(!wild.matches("https://evilexample.com"));
        assert!(!wild.matches("https://a.example.com:8443"));
        assert!(!wild.matches("http://a.example.com"));
        assert!(!wild.matches("https://a.example.com.evil.net"));

        let ported = OriginPattern::parse("http://*.localhost:3000").unwrap();
        assert!(ported.matches("http://app.localhost:3000"));
        assert!(!ported.matches("http://app.localhost:3001"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "app.example.com",
            "ftp://x.com",
            "https://x.com/",
            "https://X.com",
            "https://*.com",
            "https://x.com:abc",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
