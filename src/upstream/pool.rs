//! Connections to one fal origin, reused: HTTP/1.1 keep-alive connections kept idle, or one
//! shared HTTP/2 connection (hyper's).
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

use bytes::Bytes;
use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

use super::h1;
use crate::relay;
use axum::BoxError;

/// TCP (connect timeout, no Nagle) with TLS and ALPN for `https://` origins.
pub type Connector = HttpsConnector<HttpConnector>;

/// A call's body for hyper (HTTP/2): fal calls are small JSON bodies, read whole before they
/// are sent.
type CallBody = Full<Bytes>;

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

/// One call, borrowed: sent as it is on HTTP/1.1, turned into a hyper request on HTTP/2.
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
/// its end; dropped earlier, the connection closes) or a hyper HTTP/2 stream.
pub enum AnswerBody {
    /// HTTP/1.1.
    H1 {
        /// The body and its connection.
        body: h1::Body,
        /// Where the connection goes back.
        slot: Arc<Slot>,
    },
    /// HTTP/2.
    H2(Incoming),
}

impl std::fmt::Debug for AnswerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::H1 { .. } => "AnswerBody::H1",
            Self::H2(_) => "AnswerBody::H2",
        })
    }
}

impl AnswerBody {
    /// The bytes of the body still to come, if fal gave its length.
    pub fn exact_length(&self) -> Option<u64> {
        match self {
            Self::H1 { body, .. } => body.exact_length(),
            Self::H2(body) => body.size_hint().exact(),
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
            Self::H2(body) => loop {
                return match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => Poll::Ready(Some(Ok(data))),
                        Err(_) => continue, // trailers
                    },
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                };
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
    H2(http2::SendRequest<CallBody>),
}

/// What a slot holds between calls.
#[derive(Default)]
struct Idle {
    /// Idle HTTP/1.1 connections and when each was put back, oldest first.
    h1: Vec<(h1::Conn, Instant)>,
    /// The shared HTTP/2 connection.
    h2: Option<http2::SendRequest<CallBody>>,
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
                Sender::H2(mut sender) => {
                    match sender.try_send_request(self.for_http2(call)?).await {
                        Ok(response) => {
                            let (parts, body) = response.into_parts();
                            return Ok(Answer {
                                status: parts.status,
                                headers: relay::relay_response_headers(parts.headers),
                                body: AnswerBody::H2(body),
                            });
                        }
                        Err(mut e) => {
                            // The connection is going away (it took no new call) or gone: the
                            // next call connects anew. A failure of one stream keeps it.
                            let unsent = e.take_message().is_some();
                            if unsent || sender.is_closed() {
                                self.lock().h2 = None;
                            }
                            if !(unsent && tries < UNSENT_TRIES) {
                                return Err(SendError::Http(e.into_error().into()));
                            }
                        }
                    }
                }
            }
        }
    }

    /// The call as a hyper HTTP/2 request: the absolute URI (its `:scheme` and `:authority`).
    fn for_http2(&self, call: Call<'_>) -> Result<Request<CallBody>, SendError> {
        let mut parts = Parts::default();
        parts.scheme = Some(self.origin.scheme.clone());
        parts.authority = Some(self.origin.authority.clone());
        parts.path_and_query =
            Some(PathAndQuery::try_from(call.path).map_err(|e| SendError::Http(e.into()))?);
        let uri = Uri::from_parts(parts).map_err(|e| SendError::Http(e.into()))?;
        let mut request = Request::new(Full::new(call.body.clone()));
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = call.headers.clone();
        request.headers_mut().remove(http::header::HOST);
        for (name, value) in call.own {
            request.headers_mut().insert(name, value.clone());
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

    /// The shared HTTP/2 sender if its connection is open.
    fn live_h2(&self) -> Option<http2::SendRequest<CallBody>> {
        let mut idle = self.lock();
        match &idle.h2 {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
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
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .adaptive_window(true)
                .handshake(io)
                .await
                .map_err(|e| SendError::Connect(Box::new(e)))?;
            tokio::spawn(drive(connection));
            let mut idle = self.lock();
            idle.speaks_h2 = true;
            idle.h2 = Some(sender.clone());
            Ok(Sender::H2(sender))
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

/// Runs a connection until it ends.
async fn drive<C>(connection: C)
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "fal connection ended");
    }
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
