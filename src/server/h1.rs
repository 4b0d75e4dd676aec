//! One client connection: plain HTTP/1.1 requests (`head`) served here, the rest by hyper.
//!
//! hyper's server side was about a third of a status poll's instructions (its dispatcher, its
//! body channel, the service glue). Nearly every request a frontend sends is plain, so this
//! loop reads it whole, calls the app, and writes the answer with `Content-Length` (or chunked
//! when its length is unknown, as for a status stream). At the first request that is not plain
//! (or bytes that are not HTTP/1.1 at all, such as the HTTP/2 preface) the connection and every
//! byte read so far go to hyper, which serves it from then on exactly as it serves any other.
//!
//! The rules hyper applies are kept: the header-read timeout runs from the moment a request is
//! awaited; a client that closes its end while its request is answered has the answer dropped;
//! when draining begins an idle connection closes and a busy one closes after its answer.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::Serve;
use super::head::{self, Framing, Plain, Shape};
use super::prefixed::Prefixed;
use crate::drain::{Graceful, Signal};
use crate::error::ApiError;
use crate::timer::Sleep;

/// hyper's server, for the connections handed over.
pub type Hyper = auto::Builder<TokioExecutor>;

/// Why a connection ended early.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Room made in the read buffer when it runs low.
const READ_ROOM: usize = 8 * 1024;
/// Bodies up to this size go out in one write with their head.
const COALESCE: usize = 16 * 1024;

/// Serves `stream` with `service` until the client leaves, the header-read timeout passes
/// while waiting for a request, or draining closes it.
pub async fn serve<S: Serve>(
    stream: TcpStream,
    mut service: S,
    hyper: Arc<Hyper>,
    header_timeout: Duration,
    signal: Signal,
) -> Result<(), Error> {
    let mut conn = Conn {
        stream,
        buf: BytesMut::new(),
        out: Vec::new(),
        headers: Vec::new(),
        read_closed: false,
    };
    loop {
        let plain = match conn.next_request(header_timeout, &signal).await? {
            Next::Plain(plain) => plain,
            Next::HandOff => return conn.hand_off(service, &hyper, signal).await,
            Next::Closed => return Ok(()),
        };
        let (response, close) = match conn.request(plain) {
            Some(request) => {
                let Ok(()) = poll_fn(|cx| service.poll_ready(cx)).await;
                match conn.until(service.call(request)).await {
                    Some(Ok(response)) => (response, false),
                    None => return Ok(()), // the client left: its answer is dropped
                }
            }
            None => (
                ApiError::bad_request(
                    "malformed_request",
                    "the request target or a header value is not valid HTTP",
                )
                .into_response(),
                true,
            ),
        };
        if conn
            .respond(response, close || signal.is_draining())
            .await?
        {
            return Ok(());
        }
    }
}

/// What the next request is.
enum Next {
    Plain(Plain),
    HandOff,
    Closed,
}

/// A client connection and its buffers.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet used.
    buf: BytesMut,
    /// An answer's head being written (kept for its allocation).
    out: Vec<u8>,
    /// The current request's header names and where their values lie in `buf`.
    headers: Vec<(http::HeaderName, std::ops::Range<usize>)>,
    /// The client has closed its end.
    read_closed: bool,
}

impl Conn {
    /// Waits until `buf` holds a whole plain request, or anything that is not one. The
    /// header-read timeout runs while the head is incomplete; an idle connection closes when
    /// draining begins. A plain head whose body has not all arrived with it goes to hyper too:
    /// the app's body-read timeout then watches the rest as it arrives.
    async fn next_request(&mut self, timeout: Duration, signal: &Signal) -> io::Result<Next> {
        let mut sleep = None;
        loop {
            if !self.buf.is_empty() {
                match head::classify(&self.buf, &mut self.headers) {
                    Shape::Plain(plain) if self.buf.len() >= plain.len() => {
                        return Ok(Next::Plain(plain));
                    }
                    Shape::Plain(_) | Shape::HandOff => return Ok(Next::HandOff),
                    Shape::Partial => {}
                }
            }
            let sleep = sleep.get_or_insert_with(|| Sleep::new(timeout));
            let idle = self.buf.is_empty();
            let read = poll_fn(|cx| {
                if idle && signal.is_draining() {
                    return Poll::Ready(None);
                }
                if let Poll::Ready(read) = self.poll_fill(cx) {
                    return Poll::Ready(Some(read));
                }
                match Pin::new(&mut *sleep).poll(cx) {
                    Poll::Ready(()) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match read {
                Some(Ok(0)) | None => return Ok(Next::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// Reads what has arrived into `buf`; 0 at the connection's end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_ROOM / 2 {
            self.buf.reserve(READ_ROOM);
        }
        pin!(self.stream.read_buf(&mut self.buf)).poll(cx)
    }

    /// Takes the request `plain` describes out of `buf`; `None` if its target or a header
    /// value is not valid (`head` checked their framing only).
    fn request(&mut self, plain: Plain) -> Option<Request> {
        let head = self.buf.split_to(plain.head_len).freeze();
        let body = self.buf.split_to(plain.body_len).freeze();
        let uri = Uri::from_maybe_shared(head.slice(plain.target)).ok()?;
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in self.headers.drain(..) {
            headers.append(
                name,
                HeaderValue::from_maybe_shared(head.slice(value)).ok()?,
            );
        }
        let mut request = Request::new(if body.is_empty() {
            Body::empty()
        } else {
            Body::from(body)
        });
        *request.method_mut() = plain.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Some(request)
    }

    /// Runs `work` to its end; `None` if the client closes its end first.
    async fn until<F: Future>(&mut self, work: F) -> Option<F::Output> {
        let mut work = pin!(work);
        poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            if self.peer_gone(cx) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the client has closed its end (or the connection failed). Bytes of a next
    /// request that arrive meanwhile are kept, and then nothing more is read until it is due.
    fn peer_gone(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.buf.is_empty() || self.read_closed {
            return false;
        }
        // A small read of its own: the request being answered still holds `buf`'s memory.
        let mut scratch = [0u8; 512];
        let mut read = ReadBuf::new(&mut scratch);
        match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                self.read_closed = true;
                true
            }
            Poll::Ready(Ok(())) => {
                self.buf.extend_from_slice(read.filled());
                false
            }
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        }
    }

    /// Writes `response`, saying the connection closes after it if `close` or if the answer
    /// asks so; returns whether it does.
    async fn respond(&mut self, response: Response, close: bool) -> Result<bool, Error> {
        let (parts, mut body) = response.into_parts();
        let framing = Framing::of(parts.status, body.size_hint().exact());
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let close = with_date(|date| {
            head::encode_head(&mut out, parts.status, &parts.headers, framing, date, close)
        });
        drop(parts);
        let mut head = Some(out);
        let mut sent = 0u64;
        if framing != Framing::None {
            while let Some(frame) = self.until(body.frame()).await.ok_or(Gone)? {
                let Ok(data) = frame?.into_data() else {
                    continue; // trailers: HTTP/1.1 answers here carry none
                };
                if data.is_empty() {
                    continue;
                }
                sent += data.len() as u64;
                if let Framing::Length(length) = framing
                    && sent > length
                {
                    return Err("the answer's body is longer than its length".into());
                }
                self.send_data(&mut head, data, framing).await?;
            }
        }
        match framing {
            Framing::Length(length) if sent != length => {
                return Err("the answer's body is shorter than its length".into());
            }
            Framing::Chunked => self.send(&mut head, &[b"0\r\n\r\n"]).await?,
            _ => self.send(&mut head, &[]).await?,
        }
        Ok(close)
    }

    /// Writes one piece of an answer's body (after its head, if that is still unsent).
    async fn send_data(
        &mut self,
        head: &mut Option<Vec<u8>>,
        data: Bytes,
        framing: Framing,
    ) -> io::Result<()> {
        if framing == Framing::Chunked {
            let mut line = [0u8; 18];
            let line = head::chunk_line(data.len(), &mut line);
            return self.send(head, &[line, &data, b"\r\n"]).await;
        }
        match head {
            Some(out) if data.len() <= COALESCE => {
                out.extend_from_slice(&data);
                Ok(())
            }
            _ => self.send(head, &[&data]).await,
        }
    }

    /// Writes the unsent head, if any, then `parts`, all of them.
    async fn send(&mut self, head: &mut Option<Vec<u8>>, parts: &[&[u8]]) -> io::Result<()> {
        let out = head.take();
        let first: &[u8] = out.as_deref().unwrap_or_default();
        let mut all = [first, b"", b"", b""];
        for (slot, part) in all[1..].iter_mut().zip(parts) {
            *slot = part;
        }
        let result = write_all(&mut self.stream, &mut all).await;
        if let Some(out) = out {
            self.out = out;
        }
        result
    }

    /// Hands the connection, with the bytes read and not yet used, to hyper.
    async fn hand_off<S: Serve>(
        self,
        service: S,
        hyper: &Hyper,
        signal: Signal,
    ) -> Result<(), Error> {
        let io = TokioIo::new(Prefixed::new(self.buf.freeze(), self.stream));
        let service =
            service.map_request(|request: Request<hyper::body::Incoming>| request.map(Body::new));
        let connection =
            hyper.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
        Graceful::new(connection, signal).await
    }
}

/// The client closed its end while its answer was being written.
#[derive(Debug)]
struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client closed the connection")
    }
}

impl std::error::Error for Gone {}

/// Writes every byte of `parts`, in order, with as few writes as the socket allows.
async fn write_all(stream: &mut TcpStream, parts: &mut [&[u8]]) -> io::Result<()> {
    let mut at = 0;
    loop {
        while parts.get(at).is_some_and(|part| part.is_empty()) {
            at += 1;
        }
        let rest = &parts[at..];
        match rest {
            [] => return Ok(()),
            [only] => return stream.write_all(only).await,
            _ => {}
        }
        let mut slices = [IoSlice::new(b""); 4];
        for (slice, part) in slices.iter_mut().zip(rest) {
            *slice = IoSlice::new(part);
        }
        let mut n = stream.write_vectored(&slices[..rest.len().min(4)]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        for part in parts[at..].iter_mut() {
            let whole: &[u8] = part;
            let used = n.min(whole.len());
            *part = &whole[used..];
            n -= used;
        }
    }
}

thread_local! {
    /// This second's `Date` value, and the second.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Calls `f` with the current `Date` header value (formatted once a second per thread).
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        f(text.as_bytes())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
