//! Connections to one fal origin, reused: HTTP/1.1 keep-alive connections kept idle, or one
//! shared HTTP/2 connection (the `h2` crate's, driven by a task of the worker that opened it).
//!
//! Why not hyper-util's pooled client: under callgrind its per-call checkout and return (a
//! SipHash map keyed by scheme and authority, a `Host` header formatted per call, an extra task
//! per call to return the connection) were ~8% of a status poll. Here each worker has one
//! [`Slot`] per configured fal base URL, found by index; the `Host` value is made once; an
//! HTTP/1.1 connection ([`super::h1`]) goes back to the slot when its answer has been read to
//! the end.
//!
//! What it keeps from hyper-util's client, on purpose:
//! - A call that never left because its connection closed first (a keep-alive connection fal
//!   closed while idle) is put on another connection, a bounded number of times.
//! - HTTP/2 is chosen by ALPN over TLS, or by prior knowledge (`fal.http2_prior_knowledge`);
//!   once an origin has answered in HTTP/2, new connections to it are made one at a time, so
//!   a burst of calls shares one connection instead of opening one each.
//! - Idle HTTP/1.1 connections are kept up to `fal.pool_max_idle_per_host` and for at most
//!   [`IDLE_TIMEOUT`]; the most recently used is taken first.
//!
//! Why `h2` directly and not hyper's HTTP/2 client over it: hyper spawns a task per call to
//! wait for its answer and hands the answer back through a channel; moving those large futures
//! about was ~4% of a status poll's CPU under `perf` (bench/README.md). Here the call's own
//! task sends the request and awaits the answer. What hyper added that is kept: content length
//! on a body, push refused, a header-list limit, 100 streams until fal's settings say more.
//! Not kept: hyper's adaptive flow-control window; the windows here are fixed
//! ([`H2_STREAM_WINDOW`], [`H2_CONNECTION_WINDOW`]).

use bytes::Bytes;
use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::BufReader;
use tower::ServiceExt as _;

use super::{frame, h1};
use crate::relay;
use axum::BoxError;

/// TCP (connect timeout, no Nagle) with TLS and ALPN for `https://` origins.
pub type Connector = HttpsConnector<HttpConnector>;

/// What an HTTP/2 stream may have arrived and unread (flow control): a 3 MB result needs two
/// window updates, not 48 as with the protocol's 64 KB default.
const H2_STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// What all streams of an HTTP/2 connection together may have arrived and unread: the most
/// memory fal's answers can hold per worker and origin before they are relayed on.
const H2_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Largest answer head accepted over HTTP/2 (decoded header list, as for HTTP/1.1).
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// What one read of an HTTP/2 connection may take. The `h2` crate asks for a frame or so at a
/// time (8-16 KB for a large answer's DATA frames); through this buffer a 3 MB result takes ~48
/// reads instead of ~380, for one copy more in user space.
const H2_READ_BUFFER: usize = 64 * 1024;

/// Streams opened at once before fal's settings say how many it takes (hyper's choice too).
const H2_FIRST_STREAMS: usize = 100;

/// Longest an HTTP/1.1 connection is kept idle before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Most of fal's answer read from an HTTP/1.1 connection at a time, once an answer has shown
/// itself large (a read filled the room). A 3 MB result takes 12 reads instead of 48: S4 at 32
/// connections, CPU per result ~2.2 -> ~1.3 ms and p99 ~250-440 -> ~90-110 ms against 64 KB
/// reads (bench/README.md). A connection lets this room go when it returns to the pool, so idle
/// connections stay small.
pub const READ_BUFFER: usize = 256 * 1024;

/// Whether `path` may be written as an HTTP/1.1 request target as it is: visible ASCII, starting
/// with `/` (the target rules allow far less; this keeps a mistake there from splitting a
/// request).
pub fn is_request_target(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic())
}

/// Connections tried for a call that could not leave because its connection had closed.
const UNSENT_TRIES: usize = 4;

/// One call, borrowed: sent as it is on HTTP/1.1, turned into an `http` request on HTTP/2.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The method.
    pub method: &'a Method,
    /// The origin-form target, `/path?query`, visible ASCII only (see [`is_request_target`]).
    pub path: &'a str,
    /// The headers the proxy sets itself (the fal key, its user agent), in place of any of the
    /// same name in `headers`.
    pub own: &'a [(HeaderName, HeaderValue)],
    /// The client's headers that go on; framing headers are added by the connection.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a Bytes,
}

/// fal's answer: its head, its body still to be read.
#[derive(Debug)]
pub struct Answer {
    /// fal's status.
    pub status: StatusCode,
    /// fal's headers that may reach the client ([`relay::is_relayed`]).
    pub headers: HeaderMap,
    /// The body.
    pub body: AnswerBody,
}

/// An answer's body: from one of our HTTP/1.1 connections (handed back to `slot` once read to
/// its end; dropped earlier, the connection closes) or an HTTP/2 stream (dropped before its
/// end, the stream is reset: fal stops sending).
pub enum AnswerBody {
    /// HTTP/1.1.
    H1 {
        /// The body and its connection.
        body: h1::Body,
        /// Where the connection goes back.
        slot: Arc<Slot>,
    },
    /// HTTP/2.
    H2 {
        /// The stream's data.
        body: h2::RecvStream,
        /// Its `Content-Length`, if fal gave one.
        length: Option<u64>,
    },
}

impl std::fmt::Debug for AnswerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::H1 { .. } => "AnswerBody::H1",
            Self::H2 { .. } => "AnswerBody::H2",
        })
    }
}

impl AnswerBody {
    /// The bytes of the body still to come, if fal gave its length.
    pub fn exact_length(&self) -> Option<u64> {
        match self {
            Self::H1 { body, .. } => body.exact_length(),
            Self::H2 { body, length } => {
                if body.is_end_stream() {
                    Some(0)
                } else {
                    *length
                }
            }
        }
    }

    /// The next data of the body (trailers are dropped); `None` at its end.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        match self {
            Self::H1 { body, slot } => {
                let next = body.poll_chunk(cx);
                if let Poll::Ready(None) = next {
                    slot.put_back(body);
                }
                next.map(|chunk| chunk.map(|r| r.map_err(Into::into)))
            }
            // Trailers are never polled for: `None` at the end of the data.
            Self::H2 { body, .. } => match body.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    // Taken: fal may send as much more (a failure here means the stream has
                    // ended, and the next poll says so).
                    let _ = body.flow_control().release_capacity(data.len());
                    Poll::Ready(Some(Ok(data)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for AnswerBody {
    /// A body whose end was read, but not yet seen as `None` (its length was known), still
    /// gives its connection back.
    fn drop(&mut self) {
        if let Self::H1 { body, slot } = self
            && body.is_end()
        {
            slot.put_back(body);
        }
    }
}

/// One configured fal base URL, taken apart once at start-up.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `scheme://authority/`: what the connector dials.
    dial: Uri,
    scheme: Scheme,
    authority: Authority,
    /// `Host` for HTTP/1.1: the authority without user info.
    host: HeaderValue,
    /// The base URL's path (`""` or `/prefix`); calls' paths are appended to it.
    pub prefix: String,
}

impl Origin {
    /// Takes apart a base URL as `config` validated it (`scheme://host[:port][/path]`).
    pub fn parse(base: &str) -> Result<Self, String> {
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("`{base}` is not a URL: {e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(format!("`{base}` has no scheme or no host"));
        };
        let host_text = authority.as_str().rsplit('@').next().unwrap_or_default();
        let host = HeaderValue::from_str(host_text)
            .map_err(|_| format!("`{base}` has a host not allowed in a header"))?;
        let dial = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("`{base}`: {e}"))?;
        Ok(Self {
            dial,
            scheme,
            authority,
            host,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `scheme://host[:port]` for logs and `Debug` (never the base URL's user info).
    pub fn name(&self) -> String {
        format!(
            "{}://{}",
            self.scheme,
            self.host.to_str().unwrap_or_default()
        )
    }
}

/// A connection ready for a call.
enum Sender {
    H1(h1::Conn),
    H2(H2),
}

/// The shared HTTP/2 connection: a handle to open streams on, and whether the connection has
/// ended (set by the task driving it).
#[derive(Clone)]
struct H2 {
    sender: h2::client::SendRequest<Bytes>,
    ended: Arc<AtomicBool>,
}

impl H2 {
    fn is_open(&self) -> bool {
        !self.ended.load(Ordering::Relaxed)
    }

    fn is(&self, other: &H2) -> bool {
        Arc::ptr_eq(&self.ended, &other.ended)
    }
}

/// How an HTTP/2 call failed.
enum H2Failure {
    /// fal has not processed it: it may go on another connection.
    Unsent(h2::Error),
    /// It may have been processed.
    Failed(BoxError),
}

/// What a slot holds between calls.
#[derive(Default)]
struct Idle {
    /// Idle HTTP/1.1 connections and when each was put back, oldest first.
    h1: Vec<(h1::Conn, Instant)>,
    /// The shared HTTP/2 connection.
    h2: Option<H2>,
    /// The origin has answered in HTTP/2: connect one at a time.
    speaks_h2: bool,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (DNS, TCP, TLS, or the HTTP/2 handshake).
    #[error("cannot connect to fal")]
    Connect(#[source] BoxError),
    /// The connection failed during the call.
    #[error("fal's connection failed")]
    Http(#[source] BoxError),
}

/// The connections of one worker to one origin.
pub struct Slot {
    origin: Origin,
    connector: Connector,
    /// Speak HTTP/2 without ALPN (`fal.http2_prior_knowledge`).
    h2_only: bool,
    max_idle: usize,
    idle: Mutex<Idle>,
    /// Held while connecting to an origin known to speak HTTP/2.
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("origin", &self.origin.name())
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// An empty slot for `origin`.
    pub fn new(origin: Origin, connector: Connector, h2_only: bool, max_idle: usize) -> Self {
        Self {
            origin,
            connector,
            h2_only,
            max_idle,
            idle: Mutex::new(Idle {
                speaks_h2: h2_only,
                ..Idle::default()
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The origin this slot connects to.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // Nothing here panics while holding the lock; a poisoned one still holds valid data.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts an HTTP/1.1 connection back as idle, if its body ended cleanly (or closes it
    /// when the slot holds enough).
    fn put_back(&self, body: &mut h1::Body) {
        if let Some(conn) = body.take_reusable() {
            let mut idle = self.lock();
            if idle.h1.len() < self.max_idle {
                idle.h1.push((conn, Instant::now()));
            }
        }
    }

    /// Sends `call` on a reused or new connection.
    pub async fn send(self: &Arc<Self>, call: Call<'_>) -> Result<Answer, SendError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.checkout().await? {
                Sender::H1(conn) => {
                    let sent = conn
                        .call(call, &self.origin.host, relay::relayed_name)
                        .await;
                    match sent {
                        Ok((head, body)) => {
                            return Ok(Answer {
                                status: head.status,
                                headers: head.headers,
                                body: AnswerBody::H1 {
                                    body,
                                    slot: self.clone(),
                                },
                            });
                        }
                        Err(h1::CallError::Unsent(_)) if tries < UNSENT_TRIES => {}
                        Err(e) => return Err(SendError::Http(e.into())),
                    }
                }
                Sender::H2(conn) => match self.call_h2(&conn, call).await {
                    Ok(answer) => return Ok(answer),
                    Err(failure) => {
                        // The connection is going away (it took no new stream) or gone: the
                        // next call connects anew. A failure of one stream keeps it.
                        let unsent = matches!(failure, H2Failure::Unsent(_));
                        if unsent || !conn.is_open() {
                            let mut idle = self.lock();
                            if idle.h2.as_ref().is_some_and(|h2| h2.is(&conn)) {
                                idle.h2 = None;
                            }
                        }
                        match failure {
                            H2Failure::Unsent(_) if tries < UNSENT_TRIES => {}
                            H2Failure::Unsent(e) => return Err(SendError::Http(e.into())),
                            H2Failure::Failed(e) => return Err(SendError::Http(e)),
                        }
                    }
                },
            }
        }
    }

    /// One call on a stream of the shared HTTP/2 connection: the head, then the body (held by
    /// the connection and sent as fal's flow control allows), then fal's answer head.
    async fn call_h2(&self, conn: &H2, call: Call<'_>) -> Result<Answer, H2Failure> {
        let request = self.for_http2(call).map_err(H2Failure::Failed)?;
        let mut sender = conn
            .sender
            .clone()
            .ready()
            .await
            .map_err(H2Failure::Unsent)?;
        let end = call.body.is_empty();
        let (response, mut stream) = sender
            .send_request(request, end)
            .map_err(H2Failure::Unsent)?;
        if !end {
            stream
                .send_data(call.body.clone(), true)
                .map_err(|e| H2Failure::Failed(e.into()))?;
        }
        let response = response.await.map_err(|e| {
            if unprocessed(&e) {
                H2Failure::Unsent(e)
            } else {
                H2Failure::Failed(e.into())
            }
        })?;
        let (parts, body) = response.into_parts();
        let length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| frame::parse_decimal(v.as_bytes()));
        Ok(Answer {
            status: parts.status,
            headers: relay::relay_response_headers(parts.headers),
            body: AnswerBody::H2 { body, length },
        })
    }

    /// The call as an HTTP/2 request: the absolute URI (its `:scheme` and `:authority`), the
    /// proxy's own headers, the client's that go on, and `Content-Length` as for HTTP/1.1.
    fn for_http2(&self, call: Call<'_>) -> Result<Request<()>, BoxError> {
        let mut parts = Parts::default();
        parts.scheme = Some(self.origin.scheme.clone());
        parts.authority = Some(self.origin.authority.clone());
        parts.path_and_query = Some(PathAndQuery::try_from(call.path)?);
        let mut request = Request::new(());
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = Uri::from_parts(parts)?;
        let headers = request.headers_mut();
        headers.reserve(call.own.len() + call.headers.len() + 1);
        for (name, value) in call.own {
            headers.insert(name, value.clone());
        }
        for (name, value) in call.headers {
            let replaced = call.own.iter().any(|(own, _)| own == name);
            if !(replaced || frame::is_framing(name) || name == http::header::HOST) {
                headers.append(name, value.clone());
            }
        }
        if let Some(length) = frame::content_length(call.method, call.body.len()) {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        Ok(request)
    }

    /// A ready sender: the shared HTTP/2 connection, the most recently used idle HTTP/1.1
    /// connection that is still open, or a new connection.
    async fn checkout(&self) -> Result<Sender, SendError> {
        if let Some(sender) = self.reuse() {
            return Ok(sender);
        }
        // Boxed: connecting (TCP, TLS, handshakes) is the cold path and its future is large;
        // inline, every call's future would carry it and be copied that much bigger.
        Box::pin(self.connect_new()).await
    }

    /// A new connection; one at a time to an origin known to speak HTTP/2, which then serves
    /// the callers that waited.
    async fn connect_new(&self) -> Result<Sender, SendError> {
        if !self.lock().speaks_h2 {
            return self.connect().await;
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(sender) = self.live_h2() {
            return Ok(Sender::H2(sender));
        }
        self.connect().await
    }

    /// The shared HTTP/2 connection if it is open.
    fn live_h2(&self) -> Option<H2> {
        let mut idle = self.lock();
        match &idle.h2 {
            Some(h2) if h2.is_open() => Some(h2.clone()),
            Some(_) => {
                idle.h2 = None;
                None
            }
            None => None,
        }
    }

    /// A reused connection, if one is open and ready.
    fn reuse(&self) -> Option<Sender> {
        if let Some(sender) = self.live_h2() {
            return Some(Sender::H2(sender));
        }
        loop {
            let mut conn = {
                let mut idle = self.lock();
                let (conn, since) = idle.h1.pop()?;
                if since.elapsed() > IDLE_TIMEOUT {
                    idle.h1.clear(); // the others were put back earlier still
                    return None;
                }
                conn
            };
            // Closed by fal while idle (or out of step): try the next one.
            if conn.is_usable() {
                return Some(Sender::H1(conn));
            }
        }
    }

    /// Opens a connection, HTTP/2 if ALPN or the configuration says so (driven by a task of
    /// the current worker), else HTTP/1.1 (driven by the calls it carries).
    async fn connect(&self) -> Result<Sender, SendError> {
        let io = self
            .connector
            .clone()
            .oneshot(self.origin.dial.clone())
            .await
            .map_err(SendError::Connect)?;
        if self.h2_only || io.connected().is_negotiated_h2() {
            let (sender, connection) = h2::client::Builder::new()
                .initial_window_size(H2_STREAM_WINDOW)
                .initial_connection_window_size(H2_CONNECTION_WINDOW)
                .max_header_list_size(H2_MAX_HEADER_LIST)
                .initial_max_send_streams(H2_FIRST_STREAMS)
                .enable_push(false)
                .handshake(BufReader::with_capacity(H2_READ_BUFFER, TokioIo::new(io)))
                .await
                .map_err(|e| SendError::Connect(Box::new(e)))?;
            let conn = H2 {
                sender,
                ended: Arc::new(AtomicBool::new(false)),
            };
            tokio::spawn(drive(connection, conn.ended.clone()));
            let mut idle = self.lock();
            idle.speaks_h2 = true;
            idle.h2 = Some(conn.clone());
            Ok(Sender::H2(conn))
        } else {
            Ok(Sender::H1(h1::Conn::new(io)))
        }
    }

    /// Closes idle HTTP/1.1 connections past [`IDLE_TIMEOUT`] or already closed by fal.
    pub fn close_expired(&self) {
        let mut idle = self.lock();
        idle.h1
            .retain_mut(|(conn, since)| since.elapsed() <= IDLE_TIMEOUT && conn.is_usable());
    }
}

/// Whether fal says it did not process a stream (RFC 9113, section 8.7), so that it may go on
/// another connection: refused, or above the last stream a graceful `GOAWAY` still serves.
fn unprocessed(error: &h2::Error) -> bool {
    error.is_remote()
        && match error.reason() {
            Some(h2::Reason::REFUSED_STREAM) => error.is_reset(),
            Some(h2::Reason::NO_ERROR) => error.is_go_away(),
            _ => false,
        }
}

/// Runs an HTTP/2 connection until it ends, then marks it ended.
async fn drive<C>(connection: C, ended: Arc<AtomicBool>)
where
    C: Future<Output = Result<(), h2::Error>>,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "fal connection ended");
    }
    ended.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::Origin;

    #[test]
    fn an_origin_keeps_its_path_prefix_and_names_its_host_without_user_info() {
        let origin = Origin::parse("https://user:pw@queue.fal.run:8443/_mock/queue").unwrap();
        assert_eq!(origin.prefix, "/_mock/queue");
        assert_eq!(origin.host, "queue.fal.run:8443");
        assert_eq!(origin.name(), "https://queue.fal.run:8443");
        assert_eq!(
            origin.dial.to_string(),
            "https://user:pw@queue.fal.run:8443/"
        );

        let plain = Origin::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(plain.prefix, "");
        assert_eq!(plain.host, "127.0.0.1:9000");
        assert!(Origin::parse("queue.fal.run").is_err());
    }
}
