//! One HTTP/1.1 connection to fal, driven by the call that uses it: the request is written and
//! the answer read in the caller's own task, with [`super::frame`] doing the parsing.
//!
//! Why not hyper's HTTP/1.1 client connection: under callgrind it was ~20,000 instructions of
//! a ~57,000-instruction status poll (its own connection task woken per call, a channel to it
//! and back, a full `HeaderMap` built and hashed for the answer, a `Request` built to be taken
//! apart again). Here a call is one write and, for a small answer, one read, and nothing runs
//! between calls. HTTP/2 still goes through hyper (`pool`).
//!
//! Between calls the connection sits in its slot with nothing polling it; [`Conn::is_usable`]
//! checks it before reuse (fal closed it, or sent bytes nobody asked for: not usable).

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use std::future::Future as _;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead as _, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use super::frame::{self, Decoder, FrameError, Head, Step};
use super::pool::Call;
use crate::landing;

/// What the connector gives: TCP, or TLS over TCP.
pub type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Largest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Below this much free room, the read buffer is grown (by [`FIRST_READ`], or by
/// [`super::pool::READ_BUFFER`] once a read has filled it).
const MIN_ROOM: usize = 4 * 1024;

/// The room a connection's buffer starts with: enough for status and submit answers, so that
/// hundreds of kept-alive connections do not each hold 64 KB.
const FIRST_READ: usize = 8 * 1024;

/// A body up to this size is written with the head in one write; a larger one follows it.
const COALESCE: usize = 16 * 1024;

/// The room a call's head is encoded into at first (a status call's is ~250 bytes).
const HEAD_ROOM: usize = 512;

/// Why a call on a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request could not be written: fal has not seen it, so it may go on another
    /// connection.
    #[error("could not send the call: {0}")]
    Unsent(#[source] std::io::Error),
    /// Reading the answer failed.
    #[error("reading fal's answer failed: {0}")]
    Read(#[source] std::io::Error),
    /// fal closed the connection before answering.
    #[error("fal closed the connection before answering")]
    Closed,
    /// The answer is not valid HTTP/1.1.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A connection, idle or carrying one call.
pub struct Conn {
    /// Boxed: a TLS stream is over 1 KB, and the connection moves in and out of its slot.
    io: Box<TokioIo<Stream>>,
    /// Bytes read and not yet used (empty between calls: an answer's first read goes through
    /// [`crate::landing`]).
    buf: BytesMut,
    /// How much room the buffer is grown by.
    grow: usize,
}

impl Conn {
    /// A fresh connection.
    pub fn new(io: Stream) -> Self {
        Self {
            io: Box::new(TokioIo::new(io)),
            buf: BytesMut::new(),
            grow: FIRST_READ,
        }
    }

    /// The connection as it should wait in the pool: holding no read room (the next answer
    /// goes through [`crate::landing`]), and reading the next answer in small turns until it
    /// too shows itself large.
    fn relaxed(mut self) -> Self {
        self.buf = BytesMut::new();
        self.grow = FIRST_READ;
        self
    }

    /// Whether an idle connection can carry a call: fal has not closed it and has sent nothing
    /// (a readable idle connection is either at its end or out of step). Does not wait.
    pub fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        // Any byte at all makes the connection unusable, so a few bytes of room will do.
        let mut scratch = [0u8; 64];
        let read = Pin::new(&mut *self.io).poll_read(&mut cx, &mut ReadBuf::new(&mut scratch));
        matches!(read, Poll::Pending)
    }

    /// Sends one call and reads its answer's head, keeping the headers `keep` accepts; the
    /// body follows through the returned [`Body`], which gives the connection back once read
    /// to its end. `path_and_query` must be a valid request target (visible ASCII).
    pub async fn call(
        mut self,
        call: Call<'_>,
        host: &HeaderValue,
        keep: fn(&[u8]) -> Option<HeaderName>,
    ) -> Result<(Head, Body), CallError> {
        let Call {
            method,
            path: path_and_query,
            own,
            headers,
            body,
        } = call;
        let small = body.len() <= COALESCE;
        // A new allocation, warm from the last call's (see [`crate::landing`]).
        let mut out = Vec::with_capacity(HEAD_ROOM + if small { body.len() } else { 0 });
        frame::encode_head(
            &mut out,
            method,
            path_and_query,
            host,
            own,
            headers,
            body.len(),
        );
        if small {
            out.extend_from_slice(body);
        }
        self.io.write_all(&out).await.map_err(CallError::Unsent)?;
        if !small {
            self.io.write_all(body).await.map_err(CallError::Unsent)?;
        }
        self.io.flush().await.map_err(CallError::Unsent)?;
        drop(out);
        loop {
            // (Empty at first: nothing comes before the call.)
            if !self.buf.is_empty()
                && let Some(head) = frame::parse_head(&mut self.buf, MAX_HEAD, method, keep)?
            {
                if head.status.is_informational() {
                    if head.status.as_u16() == 101 {
                        return Err(FrameError::Head("unasked-for protocol switch".into()).into());
                    }
                    continue; // 100 Continue, 103 Early Hints: the answer follows
                }
                let body = Body {
                    conn: Some(self),
                    decoder: Decoder::new(head.framing),
                    keep: head.keep_alive,
                };
                return Ok((head, body));
            }
            if self.fill().await.map_err(CallError::Read)? == 0 {
                return Err(CallError::Closed);
            }
        }
    }

    /// Reads what has arrived (waiting for something); 0 at the connection's end.
    async fn fill(&mut self) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Reads at most [`super::pool::READ_BUFFER`] bytes, so a large answer moves through in
    /// even turns and each connection's buffer stays small.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        const MOST: usize = super::pool::READ_BUFFER;
        if self.buf.is_empty() && self.grow == FIRST_READ {
            self.buf = ready!(landing::poll_read(&mut *self.io, cx))?;
            if self.buf.len() == landing::SIZE {
                self.grow = MOST; // a large answer: read the rest in the larger turns
            }
            return Poll::Ready(Ok(self.buf.len()));
        }
        if self.buf.capacity() - self.buf.len() < MIN_ROOM {
            self.buf.reserve(self.grow);
        }
        let room = (self.buf.capacity() - self.buf.len()).min(MOST);
        let limited = (&mut self.buf).limit(MOST);
        let read = ready!(pin!(self.io.read_buf(&mut { limited })).poll(cx));
        if read.as_ref().is_ok_and(|&n| n >= room) {
            self.grow = MOST; // a large answer: read it in the larger turns
        }
        Poll::Ready(read)
    }
}

/// An answer's body, read from its connection as the caller asks for it.
pub struct Body {
    /// `None` after a failure (the connection is dropped, so closed).
    conn: Option<Conn>,
    decoder: Decoder,
    /// The connection may carry another call once the body has ended.
    keep: bool,
}

impl Body {
    /// The next piece of the body, `None` at its end.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, CallError>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            let failed = match self.decoder.step(&mut conn.buf) {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::More) => match ready!(conn.poll_fill(cx)) {
                    Ok(0) => match self.decoder.eof() {
                        Ok(()) => {
                            self.keep = false;
                            return Poll::Ready(None);
                        }
                        Err(e) => CallError::Frame(e),
                    },
                    Ok(_) => continue,
                    Err(e) => CallError::Read(e),
                },
                Err(e) => CallError::Frame(e),
            };
            self.conn = None;
            return Poll::Ready(Some(Err(failed)));
        }
    }

    /// The bytes of the body still to come, if the answer gave its length.
    pub fn exact_length(&self) -> Option<u64> {
        match self.decoder {
            Decoder::Length(n) => Some(n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_end(&self) -> bool {
        self.decoder.is_done()
    }

    /// The connection, if the body has ended and it may carry another call (nothing extra
    /// arrived after the body).
    pub fn take_reusable(&mut self) -> Option<Conn> {
        if !(self.keep && self.decoder.is_done()) {
            return None;
        }
        self.conn
            .take()
            .filter(|conn| conn.buf.is_empty())
            .map(Conn::relaxed)
    }
}

#[cfg(test)]
mod tests;
