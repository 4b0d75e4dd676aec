//! Logging: the subscriber set-up and the one access line per request.
//!
//! Handlers put a [`CallLog`] in the response's extensions; the access-log middleware reads it
//! after the handler and writes one line with method, route kind, endpoint, status, latency,
//! client id and fal request id. Header values are never logged, so neither the fal key nor a
//! client key can appear.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use std::sync::Arc;
use std::time::Instant;
use tracing_subscriber::EnvFilter;

use crate::around::{Around, Before};
use crate::config::LogFormat;
use crate::target::CallKind;

/// The response header carrying this proxy's own id for a request (also in its log line).
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-fal-proxy-request-id");

/// Is the access line written at all (`info` for this module)? When it is not, handlers need
/// not gather what it would say.
pub fn access_enabled() -> bool {
    tracing::enabled!(tracing::Level::INFO)
}

/// What a handler learned about a call, for its log line.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    /// What kind of fal call it was.
    pub kind: Option<CallKind>,
    /// The endpoint id named.
    pub endpoint: Option<Arc<str>>,
    /// The authenticated client id.
    pub client: Option<Arc<str>>,
    /// fal's request id, when known.
    pub fal_request_id: Option<String>,
}

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The access step: stamps each response with a request id and, at `info`, writes one line
/// per request (probes and the fake's own traffic at `debug`).
#[derive(Debug, Clone, Copy)]
pub struct Access;

/// What the access line needs from the request: its id, and (when the line is written) when it
/// started, its method and its path.
pub struct Started {
    id: HeaderValue,
    line: Option<(Instant, Method, String)>,
}

impl Around for Access {
    type State = Started;

    fn before(&self, request: &Request) -> Before<Started> {
        // Below `info` neither line is written: nothing to measure or gather.
        let line = access_enabled().then(|| {
            let path = request.uri().path().to_owned();
            (Instant::now(), request.method().clone(), path)
        });
        Before::Go(Started {
            id: new_request_id(),
            line,
        })
    }

    fn after(started: Started, mut response: Response) -> Response {
        if let Some((at, method, path)) = &started.line {
            write_line(method, path, &mut response, &started.id, *at);
        }
        response.headers_mut().insert(REQUEST_ID_HEADER, started.id);
        response
    }
}

/// The access line of one request.
fn write_line(
    method: &Method,
    path: &str,
    response: &mut Response,
    id: &HeaderValue,
    started: Instant,
) {
    let call = response
        .extensions_mut()
        .remove::<CallLog>()
        .unwrap_or_default();
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let request_id = id.to_str().unwrap_or("-");
    // Probes and the fake's own traffic are logged at debug so they do not drown the rest.
    if path.starts_with("/healthz") || path.starts_with("/readyz") || path.starts_with("/_mock/") {
        tracing::debug!(%method, path, status, latency_ms, request_id, "request");
    } else {
        tracing::info!(
            %method,
            route = call.kind.map_or(route_name(path), CallKind::as_str),
            endpoint = call.endpoint.as_deref().unwrap_or("-"),
            status,
            latency_ms = (latency_ms * 10.0).round() / 10.0,
            client = call.client.as_deref().unwrap_or("-"),
            fal_request_id = call.fal_request_id.as_deref().unwrap_or("-"),
            request_id,
            "request"
        );
    }
}

fn route_name(path: &str) -> &'static str {
    if path.starts_with("/queue/") || path.starts_with("/run/") || path.starts_with("/storage/") {
        "native"
    } else if path == "/" {
        "root"
    } else {
        "other"
    }
}

/// 24 hex digits, unique within the process and across processes in practice: a random
/// 32-bit prefix per thread, then a per-thread 64-bit counter from a random start. Request ids
/// only correlate log lines, so they need not be unpredictable, and a counter costs a few
/// instructions where drawing 12 random bytes per request cost ~200.
fn new_request_id() -> HeaderValue {
    thread_local! {
        static NEXT: (u32, std::cell::Cell<u64>) = (rand::random(), std::cell::Cell::new(rand::random()));
    }
    let (prefix, count) = NEXT.with(|(prefix, next)| {
        let count = next.get();
        next.set(count.wrapping_add(1));
        (*prefix, count)
    });
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&prefix.to_be_bytes());
    bytes[4..].copy_from_slice(&count.to_be_bytes());
    let mut text = [0u8; 24];
    hex::encode_to_slice(bytes, &mut text)
        .ok()
        .and_then(|()| HeaderValue::from_bytes(&text).ok())
        .unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_24_hex_digits_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        for id in [&a, &b] {
            let text = id.to_str().unwrap();
            assert_eq!(text.len(), 24, "{text}");
            assert!(
                text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{text}"
            );
        }
        assert_ne!(a, b);
        // Another thread draws its own prefix.
        let c = std::thread::spawn(new_request_id).join().unwrap();
        assert_ne!(a.as_bytes()[..8], c.as_bytes()[..8]);
    }
}
