//! Shaping what crosses the proxy: which headers go up and come back (pure allowlists), how
//! fal's URLs are rewritten on the native routes (pure), and how response bodies are streamed
//! through chunk by chunk.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use crate::ascii::eq_ignore_case;
use crate::upstream::FalResponse;

/// Client request headers forwarded to fal; everything else (cookies, `authorization`,
/// `x-fal-target-url`, hop-by-hop headers, ...) stays here.
static FORWARDED_REQUEST_HEADERS: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("x-fal-queue-priority"),
    HeaderName::from_static("x-fal-runner-hint"),
    HeaderName::from_static("x-fal-request-timeout"),
    HeaderName::from_static("x-fal-object-lifecycle-preference"),
    HeaderName::from_static("x-fal-store-io"),
];

/// Whether a fal response header (its name in any case) may reach the client: `content-type`,
/// `cache-control`, `retry-after`, `content-disposition`, `etag`, `last-modified`, and `x-fal-*`
/// ones but `x-fal-target-url`. Never `set-cookie`, hop-by-hop headers, `content-length` or
/// `content-encoding`: the body is re-framed by this server.
pub fn is_relayed(name: &[u8]) -> bool {
    !matches!(classify(name), Relayed::No)
}

/// The name of a relayed fal response header ([`is_relayed`]) as a header name, without
/// parsing it again for the standard ones; `None` if it is not relayed.
pub fn relayed_name(name: &[u8]) -> Option<HeaderName> {
    match classify(name) {
        Relayed::No => None,
        Relayed::Standard(name) => Some(name),
        Relayed::Fal => HeaderName::from_bytes(name).ok(),
    }
}

/// What [`is_relayed`] decided about a name.
enum Relayed {
    No,
    /// One of the standard names, as its constant.
    Standard(HeaderName),
    /// An `x-fal-*` name.
    Fal,
}

fn classify(name: &[u8]) -> Relayed {
    const FAL: &[u8] = b"x-fal-";
    if name.len() > FAL.len() && eq_ignore_case(&name[..FAL.len()], FAL) {
        return if eq_ignore_case(name, b"x-fal-target-url") {
            Relayed::No
        } else {
            Relayed::Fal
        };
    }
    // By length first: every answer header is checked, most are not relayed.
    let is = |relayed: &[u8]| eq_ignore_case(name, relayed);
    Relayed::Standard(match name.len() {
        4 if is(b"etag") => header::ETAG,
        11 if is(b"retry-after") => header::RETRY_AFTER,
        12 if is(b"content-type") => header::CONTENT_TYPE,
        13 if is(b"cache-control") => header::CACHE_CONTROL,
        13 if is(b"last-modified") => header::LAST_MODIFIED,
        19 if is(b"content-disposition") => header::CONTENT_DISPOSITION,
        _ => return Relayed::No,
    })
}

/// The client headers that may go to fal.
pub fn forward_request_headers(incoming: &HeaderMap) -> HeaderMap {
    // One pass over the client's few headers (one lookup per allowed name cost 8 hashes).
    // Allocated on the first forwarded header (six entries), none for a request with none.
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        if FORWARDED_REQUEST_HEADERS.contains(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The fal response headers that may reach the client ([`is_relayed`]), taken out of a whole
/// answer's map (HTTP/2; our HTTP/1.1 reader keeps only these in the first place).
pub fn relay_response_headers(upstream: HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    // `into_iter` names each header once, before its first value; `None` means "as before".
    let mut kept: Option<HeaderName> = None;
    for (name, value) in upstream {
        if let Some(name) = name {
            kept = is_relayed(name.as_str().as_bytes()).then_some(name);
        }
        if let Some(name) = &kept {
            out.append(name.clone(), value);
        }
    }
    out
}

/// Builds the client response for an upstream one, streaming its body through untouched.
pub fn stream_through(upstream: FalResponse) -> Response {
    let length = upstream.body.exact_length();
    let mut response = Response::new(unchanged_body(upstream.body, length));
    *response.status_mut() = upstream.status;
    *response.headers_mut() = upstream.headers;
    mark_if_event_stream(response.headers_mut());
    response
}

pin_project_lite::pin_project! {
    /// A body relayed byte for byte, with fal's length when fal gave one: the client then gets
    /// `Content-Length` framing as nginx would pass on, not chunked framing (smaller, cheaper to
    /// parse, and the server need not poll the body once more to learn it has ended).
    struct Unchanged<S> {
        #[pin]
        stream: S,
        // Bytes still to come, if known.
        left: Option<u64>,
    }
}

impl<S, E> http_body::Body for Unchanged<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, E>>> {
        let this = self.project();
        this.stream.poll_next(cx).map(|next| {
            next.map(|chunk| {
                chunk.map(|data| {
                    if let Some(left) = this.left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    http_body::Frame::data(data)
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.left == Some(0)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.left.map_or_else(
            http_body::SizeHint::default,
            http_body::SizeHint::with_exact,
        )
    }
}

/// The client body for `stream`, which carries fal's answer unchanged: `length` is fal's
/// exact length, if it gave one.
pub fn unchanged_body<S, E>(stream: S, length: Option<u64>) -> Body
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<axum::BoxError> + 'static,
{
    Body::new(Unchanged {
        stream,
        left: length,
    })
}

/// Event streams must not be buffered by anything in between; says whether this is one.
pub fn mark_if_event_stream(headers: &mut HeaderMap) -> bool {
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_sse {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
    }
    is_sse
}

/// The fal queue URL prefix that native-route answers rewrite.
const FAL_QUEUE_PREFIX: &str = "https://queue.fal.run/";
/// The keys whose values are rewritten.
const URL_KEYS: &[&str] = &["status_url", "response_url", "cancel_url"];

/// Rewrites `status_url`, `response_url` and `cancel_url` in a JSON object from
/// `https://queue.fal.run/...` to `{public_base}/queue/...`. Returns `None` when the body is not
/// a JSON object or nothing needed rewriting (then the original bytes are relayed as they are).
///
/// Only the string literals of those values are replaced, so key order, formatting and every
/// other byte of fal's answer stay as fal wrote them.
pub fn rewrite_queue_urls(body: &[u8], public_base: &str) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let text = std::str::from_utf8(body).ok()?;
    let mut out: Option<String> = None;
    for key in URL_KEYS {
        let Some(Value::String(url)) = object.get(*key) else {
            continue;
        };
        let Some(rest) = url.strip_prefix(FAL_QUEUE_PREFIX) else {
            continue;
        };
        let old = serde_json::to_string(url).ok()?;
        let new = serde_json::to_string(&format!("{public_base}/queue/{rest}")).ok()?;
        let current = out.as_deref().unwrap_or(text);
        if current.contains(&old) {
            out = Some(current.replace(&old, &new));
        }
    }
    out.map(String::into_bytes)
}

/// Rewrites the `data:` lines of a server-sent-event stream with [`rewrite_queue_urls`], line by
/// line as they arrive; every other byte passes through unchanged and nothing waits for more
/// than one line.
pub fn rewrite_event_stream<S, E>(
    upstream: S,
    public_base: String,
) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let mut pending = BytesMut::new();
    upstream.map(move |chunk| {
        let chunk = chunk?;
        pending.extend_from_slice(&chunk);
        let mut out = BytesMut::with_capacity(pending.len() + 64);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(end + 1);
            match line.strip_prefix(b"data:") {
                Some(data) => {
                    let json = data.trim_ascii();
                    match rewrite_queue_urls(json, &public_base) {
                        Some(new) => {
                            out.extend_from_slice(b"data: ");
                            out.extend_from_slice(&new);
                            out.extend_from_slice(b"\n");
                        }
                        None => out.extend_from_slice(&line),
                    }
                }
                None => out.extend_from_slice(&line),
            }
        }
        Ok(out.freeze())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_headers_are_an_allowlist() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("authorization", "Bearer client-key"),
            ("cookie", "session=1"),
            ("x-fal-target-url", "https://queue.fal.run/x/y"),
            ("x-fal-queue-priority", "low"),
            ("connection", "keep-alive"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-fal-unknown", "1"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = forward_request_headers(&h);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-fal-queue-priority"]);
    }

    #[test]
    fn response_headers_drop_cookies_and_framing() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("set-cookie", "a=b"),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("x-fal-request-id", "abc"),
            ("server", "x"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h.append("set-cookie", HeaderValue::from_static("c=d"));
        h.append("x-fal-request-id", HeaderValue::from_static("def"));
        let out = relay_response_headers(h);
        let mut names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-type", "x-fal-request-id"]);
        let ids: Vec<_> = out.get_all("x-fal-request-id").iter().collect();
        assert_eq!(ids, ["abc", "def"]);
    }

    #[test]
    fn relayed_names_are_matched_in_any_case() {
        for name in [
            "content-type",
            "Cache-Control",
            "RETRY-AFTER",
            "content-disposition",
            "ETag",
            "Last-Modified",
            "x-fal-request-id",
            "X-Fal-Billable-Units",
        ] {
            assert!(is_relayed(name.as_bytes()), "{name}");
            let relayed = relayed_name(name.as_bytes()).unwrap();
            assert_eq!(relayed.as_str(), name.to_ascii_lowercase());
        }
        for name in [
            "x-fal-target-url",
            "X-FAL-TARGET-URL",
            "x-fal-",
            "set-cookie",
            "content-length",
            "content-encoding",
            "transfer-encoding",
            "connection",
            "server",
            "etags",
            "content-typ",
            "",
        ] {
            assert!(!is_relayed(name.as_bytes()), "{name}");
            assert!(relayed_name(name.as_bytes()).is_none(), "{name}");
        }
    }

    #[test]
    fn queue_urls_are_rewritten_to_the_proxy() {
        let body = br#"{"request_id":"r1","status_url":"https://queue.fal.run/fal-ai/x/requests/r1/status","other":"https://queue.fal.run/keep"}"#;
        let out = rewrite_queue_urls(body, "http://proxy:8080").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["status_url"],
            "http://proxy:8080/queue/fal-ai/x/requests/r1/status"
        );
        assert_eq!(v["other"], "https://queue.fal.run/keep");
        assert!(rewrite_queue_urls(br#"{"a":1}"#, "http://p").is_none());
        assert!(rewrite_queue_urls(b"not json", "http://p").is_none());
    }

    #[tokio::test]
    async fn event_streams_are_rewritten_line_by_line_across_chunks() {
        let chunks: Vec<Result<Bytes, ()>> = vec![
            Ok(Bytes::from_static(
                b"data: {\"status\":\"IN_QUEUE\",\"response_url\":\"https://queue.",
            )),
            Ok(Bytes::from_static(b"fal.run/a/b/requests/1\"}\n\n: ping\n")),
        ];
        let out: Vec<_> =
            rewrite_event_stream(futures_util::stream::iter(chunks), "http://p".into())
                .collect()
                .await;
        let text: String = out
            .into_iter()
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(
            text,
            "data: {\"status\":\"IN_QUEUE\",\"response_url\":\"http://p/queue/a/b/requests/1\"}\n\n: ping\n"
        );
    }
}
