//! Connections to one fal origin, reused: HTTP/1.1 keep-alive connections kept idle, or one
//! shared HTTP/2 connection; built on hyper's connection API.
//!
//! Why not hyper-util's pooled client: under callgrind its per-call checkout and return (a
//! SipHash map keyed by scheme and authority, a `Host` header formatted per call, an extra task
//! per call to return the connection) were ~8% of a status poll. Here each worker has one
//! [`Slot`] per configured fal base URL, found by index; the `Host` value is made once; an
//! HTTP/1.1 connection goes back to the slot when its answer has been read to the end (the
//! caller hands back the [`Reuse`]).
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
use http::uri::{Authority, Parts, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

/// TCP (connect timeout, no Nagle) with TLS and ALPN for `https://` origins.
pub type Connector = HttpsConnector<HttpConnector>;

/// A call's body: fal calls are small JSON bodies, read whole before they are sent.
type CallBody = Full<Bytes>;

/// Longest an HTTP/1.1 connection is kept idle before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Most of fal's answer read from an HTTP/1.1 connection at a time (hyper's default lets it grow
/// to ~400 KB). Large results then move through the proxy in turns of at most this much, so
/// 32 concurrent 3 MB results share the worker evenly (S4 p99 at 32 connections ~310 -> ~240
/// ms) and each connection's buffer stays small; the price is more reads per large result.
const READ_BUFFER: usize = 64 * 1024;

/// Connections tried for a call that could not leave because its connection had closed.
const UNSENT_TRIES: usize = 4;

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

/// A sender on a live connection.
enum Sender {
    H1(http1::SendRequest<CallBody>),
    H2(http2::SendRequest<CallBody>),
}

/// What a slot holds between calls.
#[derive(Default)]
struct Idle {
    /// Idle HTTP/1.1 connections and when each was put back, oldest first.
    h1: Vec<(http1::SendRequest<CallBody>, Instant)>,
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
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed during the call.
    #[error("fal's connection failed")]
    Http(#[source] hyper::Error),
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

/// An HTTP/1.1 connection whose answer is being read; [`Reuse::put`] it back once the answer
/// has been read to its end (dropping it closes the connection).
pub struct Reuse {
    slot: Arc<Slot>,
    sender: http1::SendRequest<CallBody>,
}

impl std::fmt::Debug for Reuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reuse").field("slot", &self.slot).finish()
    }
}

impl Reuse {
    /// Puts the connection back as idle (or closes it when the slot holds enough).
    pub fn put(self) {
        let mut idle = self.slot.lock();
        if idle.h1.len() < self.slot.max_idle {
            idle.h1.push((self.sender, Instant::now()));
        }
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

    /// Sends `request` (its URI in origin form, `/path?query`) on a reused or new connection.
    /// An HTTP/1.1 answer comes with the [`Reuse`] to hand back once its body is read.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<CallBody>,
    ) -> Result<(Response<Incoming>, Option<Reuse>), SendError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut error = match self.checkout().await? {
                Sender::H1(mut sender) => {
                    self.for_http1(&mut request);
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            let reuse = Reuse {
                                slot: self.clone(),
                                sender,
                            };
                            return Ok((response, Some(reuse)));
                        }
                        Err(e) => e,
                    }
                }
                Sender::H2(mut sender) => {
                    self.for_http2(&mut request);
                    match sender.try_send_request(request).await {
                        Ok(response) => return Ok((response, None)),
                        Err(e) => {
                            // The connection is going away (it took no new call) or gone: the
                            // next call connects anew. A failure of one stream keeps it.
                            if e.message().is_some() || sender.is_closed() {
                                self.lock().h2 = None;
                            }
                            e
                        }
                    }
                }
            };
            match error.take_message() {
                Some(unsent) if tries < UNSENT_TRIES => request = unsent,
                _ => return Err(SendError::Http(error.into_error())),
            }
        }
    }

    /// HTTP/1.1 wants the origin-form URI and a `Host` header.
    fn for_http1(&self, request: &mut Request<CallBody>) {
        if request.uri().scheme().is_some()
            && let Some(path) = request.uri().path_and_query().cloned()
        {
            *request.uri_mut() = Uri::from(path);
        }
        request
            .headers_mut()
            .insert(header::HOST, self.origin.host.clone());
    }

    /// HTTP/2 wants the absolute URI (its `:scheme` and `:authority`) and no `Host` header.
    fn for_http2(&self, request: &mut Request<CallBody>) {
        request.headers_mut().remove(header::HOST);
        if request.uri().scheme().is_none() {
            let mut parts = Parts::default();
            parts.scheme = Some(self.origin.scheme.clone());
            parts.authority = Some(self.origin.authority.clone());
            parts.path_and_query = request.uri().path_and_query().cloned();
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }

    /// A ready sender: the shared HTTP/2 connection, the most recently used idle HTTP/1.1
    /// connection that is still open, or a new connection.
    async fn checkout(&self) -> Result<Sender, SendError> {
        if let Some(sender) = self.reuse().await {
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
    async fn reuse(&self) -> Option<Sender> {
        if let Some(sender) = self.live_h2() {
            return Some(Sender::H2(sender));
        }
        loop {
            let mut sender = {
                let mut idle = self.lock();
                let (sender, since) = idle.h1.pop()?;
                if since.elapsed() > IDLE_TIMEOUT {
                    idle.h1.clear(); // the others were put back earlier still
                    return None;
                }
                sender
            };
            // Ready at once, or as soon as its task has seen the last answer's end; an error
            // means it closed: try the next one.
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(Sender::H1(sender));
            }
        }
    }

    /// Opens a connection, HTTP/2 if ALPN or the configuration says so, and drives it in a
    /// task of the current worker.
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
            let (sender, connection) = http1::Builder::new()
                .max_buf_size(READ_BUFFER)
                .handshake(io)
                .await
                .map_err(|e| SendError::Connect(Box::new(e)))?;
            tokio::spawn(drive(connection));
            Ok(Sender::H1(sender))
        }
    }

    /// Closes idle HTTP/1.1 connections past [`IDLE_TIMEOUT`] or already closed by fal.
    pub fn close_expired(&self) {
        let mut idle = self.lock();
        idle.h1
            .retain(|(sender, since)| !sender.is_closed() && since.elapsed() <= IDLE_TIMEOUT);
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
