//! One client connection: plain HTTP/1.1 requests (`head`) served here, the rest by hyper.
//!
//! hyper's server side was about a third of a status poll's instructions; most of that is the
//! parsing and encoding any server does, the rest its dispatcher, body channel and service glue
//! (~1,500 instructions a poll, ~4%). Nearly every request a frontend sends is plain, so this
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
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::Serve;
use super::head::{self, Framing, Plain, Shape};
use super::prefixed::Prefixed;
use crate::drain::{Graceful, Signal};
use crate::error::ApiError;
use crate::landing;
use crate::timer::Sleep;

/// hyper's server, for the connections handed over.
pub type Hyper = auto::Builder<TokioExecutor>;

/// Why a connection ended early.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Room made in the read buffer when it runs low.
const READ_ROOM: usize = 8 * 1024;
/// The most body pieces that go out in one write. fal's HTTP/2 answers come in DATA frames of
/// 8-16 KB: a 3 MB result gathered 4 at a time took ~96 writes, each waking the client.
const BATCH: usize = 16;
/// Body pieces stop being gathered for one write once this many bytes are.
const BATCH_BYTES: usize = 256 * 1024;
/// The most slices of one write: the head, then a size line, data and line end per piece,
/// then the end of a chunked body.
const PARTS: usize = 2 + 3 * BATCH;
/// The most slices given to one `writev`: the head and a whole batch of `Content-Length` pieces.
const WRITE_SLICES: usize = 2 + BATCH;
/// The room an answer's head is encoded into at first (a status answer's head is ~300 bytes).
const HEAD_ROOM: usize = 512;

thread_local! {
    /// The header names and value positions of the request being taken apart ([`head::classify`]);
    /// shared by the thread's connections for the reason [`crate::landing`] gives, used without
    /// a pause between.
    static HEADERS: RefCell<Vec<(http::HeaderName, std::ops::Range<usize>)>> =
        const { RefCell::new(Vec::new()) };
}

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
    };
    loop {
        let request = match conn.next_request(header_timeout, &signal).await? {
            Next::Request(request) => request,
            // Boxed: hyper's connection future (~1.9 KB) would otherwise sit in every
            // connection's task, handed over or not (the task is ~1.9 KB instead of 3.0).
            Next::HandOff => return Box::pin(conn.hand_off(service, &hyper, signal)).await,
            Next::Closed => return Ok(()),
        };
        let (response, close) = match request {
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
// Returned once per request and taken apart at once: boxing the request would cost an
// allocation per request to save a move.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A plain request, taken out of the buffer; `None` if its target or a header value is
    /// not valid HTTP.
    Request(Option<Request>),
    HandOff,
    Closed,
}

/// A client connection and the bytes read from it.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet used (a new allocation for each request: see [`crate::landing`]).
    buf: BytesMut,
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
                let next =
                    HEADERS.with_borrow_mut(|headers| match head::classify(&self.buf, headers) {
                        Shape::Plain(plain) if self.buf.len() >= plain.len() => {
                            Some(Next::Request(self.request(plain, headers)))
                        }
                        Shape::Plain(_) | Shape::HandOff => Some(Next::HandOff),
                        Shape::Partial => None,
                    });
                if let Some(next) = next {
                    return Ok(next);
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
        if self.buf.is_empty() {
            // Replaces the last request's buffer (whose memory is cold by now).
            self.buf = ready!(landing::poll_read(&mut self.stream, cx))?;
            return Poll::Ready(Ok(self.buf.len()));
        }
        if self.buf.capacity() - self.buf.len() < READ_ROOM / 2 {
            self.buf.reserve(READ_ROOM);
        }
        pin!(self.stream.read_buf(&mut self.buf)).poll(cx)
    }

    /// Takes the request `plain` describes out of `buf`, with the `headers` that
    /// [`head::classify`] found in it; `None` if its target or a header value is not valid
    /// (`head` checked their framing only).
    fn request(
        &mut self,
        plain: Plain,
        found: &mut Vec<(http::HeaderName, std::ops::Range<usize>)>,
    ) -> Option<Request> {
        let head = self.buf.split_to(plain.head_len).freeze();
        let body = self.buf.split_to(plain.body_len).freeze();
        let uri = Uri::from_maybe_shared(head.slice(plain.target)).ok()?;
        let mut headers = HeaderMap::with_capacity(found.len());
        for (name, value) in found.drain(..) {
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
        if !self.buf.is_empty() {
            return false;
        }
        // A small read of its own: the request being answered still holds `buf`'s memory.
        let mut scratch = [0u8; 512];
        let mut read = ReadBuf::new(&mut scratch);
        match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => true,
            Poll::Ready(Ok(())) => {
                self.buf.extend_from_slice(read.filled());
                false
            }
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        }
    }

    /// Writes `response`, saying the connection closes after it if `close` or if the answer
    /// asks so; returns whether it does. Body pieces that are ready together go out in one
    /// write with the head (if still unsent); whatever is pending is written before waiting
    /// for more, so a stream's head and events are never held back.
    async fn respond(&mut self, response: Response, close: bool) -> Result<bool, Error> {
        let (parts, mut body) = response.into_parts();
        let framing = Framing::of(parts.status, body.size_hint().exact());
        // A new allocation, warm from the last answer's, rather than memory of this
        // connection's own (see [`crate::landing`]).
        let mut out = Vec::with_capacity(HEAD_ROOM);
        let close = with_date(|date| {
            head::encode_head(&mut out, parts.status, &parts.headers, framing, date, close)
        });
        drop(parts);
        let mut head = Some(out);
        let mut batch = Batch::default();
        let mut sent = 0u64;
        let mut ended = framing == Framing::None;
        while !ended {
            let ready = poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
            let frame = match ready {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    self.write(&mut head, &mut batch, framing, false).await?;
                    self.until(body.frame()).await.ok_or(Gone)?
                }
            };
            match frame {
                Some(frame) => sent += batch.push(frame?) as u64,
                None => ended = true,
            }
            if let Framing::Length(length) = framing
                && (sent > length || ended && sent != length)
            {
                return Err("the answer's body does not match its length".into());
            }
            if ended || batch.is_full() {
                self.write(&mut head, &mut batch, framing, ended).await?;
            }
        }
        if head.is_some() {
            self.write(&mut head, &mut batch, framing, false).await?; // no body: the head alone
        }
        Ok(close)
    }

    /// Writes the unsent head, if any, and the pieces in `batch` (emptying it) in `framing`;
    /// with `last`, the end of a chunked body too.
    async fn write(
        &mut self,
        head: &mut Option<Vec<u8>>,
        batch: &mut Batch,
        framing: Framing,
        last: bool,
    ) -> io::Result<()> {
        let out = head.take();
        let mut lines = [[0u8; 18]; BATCH];
        let mut parts: [&[u8]; PARTS] = [b""; PARTS];
        parts[0] = out.as_deref().unwrap_or_default();
        let mut at = 1;
        for (data, line) in batch.pieces[..batch.len].iter().zip(&mut lines) {
            if framing == Framing::Chunked {
                parts[at] = head::chunk_line(data.len(), line);
                parts[at + 1] = data;
                parts[at + 2] = b"\r\n";
                at += 3;
            } else {
                parts[at] = data;
                at += 1;
            }
        }
        if last && framing == Framing::Chunked {
            parts[at] = b"0\r\n\r\n";
        }
        let result = write_all(&mut self.stream, &mut parts).await;
        batch.clear();
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

/// Body pieces gathered for one write.
#[derive(Default)]
struct Batch {
    pieces: [Bytes; BATCH],
    len: usize,
    bytes: usize,
}

impl Batch {
    /// Adds a frame's data (trailers and empty pieces are dropped: HTTP/1.1 answers here carry
    /// neither); returns its length.
    fn push(&mut self, frame: http_body::Frame<Bytes>) -> usize {
        match frame.into_data() {
            Ok(data) if !data.is_empty() => {
                let len = data.len();
                self.pieces[self.len] = data;
                self.len += 1;
                self.bytes += len;
                len
            }
            _ => 0,
        }
    }

    /// No room for another piece in this write.
    fn is_full(&self) -> bool {
        self.len == BATCH || self.bytes >= BATCH_BYTES
    }

    fn clear(&mut self) {
        self.pieces[..self.len].fill(Bytes::new());
        self.len = 0;
        self.bytes = 0;
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
        let mut slices = [IoSlice::new(b""); WRITE_SLICES];
        for (slice, part) in slices.iter_mut().zip(rest) {
            *slice = IoSlice::new(part);
        }
        let mut n = stream
            .write_vectored(&slices[..rest.len().min(WRITE_SLICES)])
            .await?;
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
