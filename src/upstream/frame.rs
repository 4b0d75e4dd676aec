//! HTTP/1.1 message framing for calls to fal. PURE: bytes in, bytes or decisions out; no I/O.
//!
//! - [`encode_head`] writes a call's request line and headers.
//! - [`parse_head`] reads an answer's status line and headers.
//! - [`framing`] decides how the answer's body ends (RFC 9112 §6.3).
//! - [`Decoder`] cuts body chunks out of the bytes read so far (length, chunked, or to close).
//!
//! [`super::h1`] does the reading and writing around these.

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use std::mem::MaybeUninit;

use crate::ascii::eq_ignore_case;

/// Most headers an answer may carry.
const MAX_HEADERS: usize = 100;

/// Longest chunk-size line, and most bytes of trailers, accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Why an answer could not be read as HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The status line or a header is malformed.
    #[error("malformed answer head: {0}")]
    Head(String),
    /// The head is longer than the limit.
    #[error("answer head longer than {0} bytes")]
    HeadTooLong(usize),
    /// `Content-Length` and `Transfer-Encoding` disagree, or `Content-Length` is not a number.
    #[error("answer framing: {0}")]
    Framing(&'static str),
    /// A chunked body is malformed.
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
}

/// Writes `METHOD path HTTP/1.1`, `Host`, the proxy's `own` headers, `headers` but those `own`
/// replaces (framing and hop-by-hop headers are left out too: they are this layer's), then
/// `Content-Length` for a body or a method that carries one.
pub fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    host: &HeaderValue,
    own: &[(HeaderName, HeaderValue)],
    headers: &HeaderMap,
    body_len: usize,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in own {
        header_line(out, name.as_str(), value.as_bytes());
    }
    for (name, value) in headers {
        let replaced = own.iter().any(|(own, _)| own == name);
        if !(replaced || is_framing(name) || name == header::HOST) {
            header_line(out, name.as_str(), value.as_bytes());
        }
    }
    if let Some(length) = content_length(method, body_len) {
        let mut digits = itoa::Buffer::new();
        header_line(out, "content-length", digits.format(length).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Content-Length` a call states: its body's length when it has one or its method
/// carries one (a `POST` with an empty body says 0), none for a bodiless read.
pub fn content_length(method: &Method, body_len: usize) -> Option<usize> {
    let bodyless = matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
    );
    (body_len > 0 || !bodyless).then_some(body_len)
}

/// Writes one header line, `name: value`.
pub fn header_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Headers that frame the message or concern only this hop.
pub fn is_framing(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name == header::TE
        || name == header::UPGRADE
        || name == "keep-alive"
        || name == "proxy-connection"
}

/// An answer's head.
#[derive(Debug)]
pub struct Head {
    /// The status.
    pub status: StatusCode,
    /// The headers the caller keeps (see [`parse_head`]), their values sharing the bytes read.
    pub headers: HeaderMap,
    /// How the body ends.
    pub framing: Framing,
    /// Whether the connection may carry another call once the body has been read.
    pub keep_alive: bool,
}

/// Reads the head of the answer to a `method` call from the start of `buf`. `Ok(None)`: not all
/// of it has arrived (at most `limit` bytes are waited for). On success the head's bytes are
/// taken out of `buf`. Only headers whose name `keep` accepts (in the case fal sent it; it
/// gives the name to use) are made into the head's map; the framing headers are read either
/// way.
pub fn parse_head(
    buf: &mut BytesMut,
    limit: usize,
    method: &Method,
    keep: fn(&[u8]) -> Option<HeaderName>,
) -> Result<Option<Head>, FrameError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut response, buf, &mut slots)
        .map_err(|e| FrameError::Head(e.to_string()))?;
    let httparse::Status::Complete(length) = status else {
        return if buf.len() > limit {
            Err(FrameError::HeadTooLong(limit))
        } else {
            Ok(None)
        };
    };
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| FrameError::Head("status code".into()))?;
    let raw: &[httparse::Header<'_>] = response.headers;
    let framing = framing(method, status, raw)?;
    let keep_alive = framing != Framing::Close && keeps_alive(version, raw);
    // Where each header lies in `buf` (the head is at most `limit` bytes), so that the kept
    // values can share the head's bytes once they are frozen.
    let start = buf.as_ptr() as usize;
    let mut spans = [[0usize; 4]; MAX_HEADERS];
    for (span, h) in spans.iter_mut().zip(raw) {
        let name = h.name.as_ptr() as usize - start;
        let value = h.value.as_ptr() as usize - start;
        *span = [name, name + h.name.len(), value, value + h.value.len()];
    }
    let spans = &spans[..raw.len()];
    let bytes = buf.split_to(length).freeze();
    // Grown on the first kept header to six entries: room for a few relayed ones and the
    // proxy's own (rate limits, request id). A larger `with_capacity` is a slower allocation.
    let mut headers = HeaderMap::new();
    for &[name_from, name_to, from, to] in spans {
        let Some(name) = keep(&bytes[name_from..name_to]) else {
            continue;
        };
        let value = HeaderValue::from_maybe_shared(bytes.slice(from..to))
            .map_err(|_| FrameError::Head(format!("value of {name}")))?;
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        headers,
        framing,
        keep_alive,
    }))
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until fal closes the connection.
    Close,
}

/// The values of the headers named `name` (any case), split at commas and trimmed.
fn tokens<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'static str,
) -> impl Iterator<Item = &'h [u8]> {
    headers
        .iter()
        .filter(move |h| eq_ignore_case(h.name.as_bytes(), name.as_bytes()))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// How the body of an answer with `status` and `headers` to a `method` call ends (RFC 9112
/// §6.3). A `Content-Length` with differing values, or beside `Transfer-Encoding`, is refused
/// rather than guessed at.
pub fn framing(
    method: &Method,
    status: StatusCode,
    headers: &[httparse::Header<'_>],
) -> Result<Framing, FrameError> {
    if *method == Method::HEAD || has_no_body(status) {
        return Ok(Framing::Empty);
    }
    let has = |name: &str| {
        headers
            .iter()
            .any(|h| eq_ignore_case(h.name.as_bytes(), name.as_bytes()))
    };
    if has("transfer-encoding") {
        if has("content-length") {
            return Err(FrameError::Framing(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        let last = tokens(headers, "transfer-encoding")
            .filter(|coding| !coding.is_empty())
            .last();
        return Ok(match last {
            Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            _ => Framing::Close,
        });
    }
    let mut length = None;
    for part in tokens(headers, "content-length") {
        let n = parse_decimal(part).ok_or(FrameError::Framing("Content-Length is not a number"))?;
        if length.is_some_and(|seen| seen != n) {
            return Err(FrameError::Framing("Content-Length values differ"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// Whether an answer with `status` has no body, whatever its headers say (1xx, 204, 304).
pub fn has_no_body(status: StatusCode) -> bool {
    status.is_informational() || matches!(status.as_u16(), 204 | 304)
}

/// Whether the comma-separated header value `list` holds `token` (any case).
pub fn list_has(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the connection may carry another call after this answer (and its body, read to the
/// end): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
pub fn keeps_alive(version: Version, headers: &[httparse::Header<'_>]) -> bool {
    let says = |token: &[u8]| {
        headers
            .iter()
            .filter(|h| eq_ignore_case(h.name.as_bytes(), b"connection"))
            .any(|h| list_has(h.value, token))
    };
    match version {
        Version::HTTP_10 => says(b"keep-alive"),
        _ => !says(b"close"),
    }
}

/// A non-empty run of ASCII digits as a number, if it fits (no sign, spaces or list).
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// What [`Decoder::step`] found in the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A piece of the body.
    Data(Bytes),
    /// More bytes must be read first.
    More,
    /// The body has ended; any bytes left in the buffer follow it.
    End,
}

/// Cuts a body out of a connection's read buffer as it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoder {
    /// This many bytes are left.
    Length(u64),
    /// Until the connection closes ([`Decoder::eof`] ends it).
    Close,
    /// Chunked, in one of its states.
    Chunked(Chunk),
    /// Ended.
    Done,
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this much left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Inside the trailers, this many bytes seen.
    Trailers(usize),
}

impl Decoder {
    /// The decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked(Chunk::Size),
            Framing::Close => Self::Close,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// The next step with the bytes in `buf` (taking out what it uses).
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, FrameError> {
        loop {
            match self {
                Self::Done => return Ok(Step::End),
                Self::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= take as u64;
                    if *left == 0 {
                        *self = Self::Done;
                    }
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                Self::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Self::Chunked(chunk) => match chunk_step(chunk, buf)? {
                    ChunkStep::Data(data) => return Ok(Step::Data(data)),
                    ChunkStep::More => return Ok(Step::More),
                    ChunkStep::Next => {}
                    ChunkStep::End => *self = Self::Done,
                },
            }
        }
    }

    /// The connection reached its end: fine only for a body that lasts until then.
    pub fn eof(&mut self) -> Result<(), FrameError> {
        match self {
            Self::Close | Self::Done => {
                *self = Self::Done;
                Ok(())
            }
            Self::Length(_) | Self::Chunked(_) => Err(FrameError::Framing(
                "connection closed before the body's end",
            )),
        }
    }
}

/// One move of the chunked decoder.
enum ChunkStep {
    Data(Bytes),
    More,
    /// State changed; go on.
    Next,
    End,
}

fn chunk_step(chunk: &mut Chunk, buf: &mut BytesMut) -> Result<ChunkStep, FrameError> {
    match *chunk {
        Chunk::Size => {
            let Some(line) = take_line(buf, MAX_CHUNK_LINE, "chunk-size line too long")? else {
                return Ok(ChunkStep::More);
            };
            let size = chunk_size(&line)?;
            *chunk = if size == 0 {
                Chunk::Trailers(0)
            } else {
                Chunk::Data(size)
            };
            Ok(ChunkStep::Next)
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(ChunkStep::More);
            }
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let rest = left - take as u64;
            *chunk = if rest == 0 {
                Chunk::DataEnd
            } else {
                Chunk::Data(rest)
            };
            Ok(ChunkStep::Data(buf.split_to(take).freeze()))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(ChunkStep::More);
            }
            if &buf[..2] != b"\r\n" {
                return Err(FrameError::Chunk("chunk data not followed by CRLF"));
            }
            buf.advance(2);
            *chunk = Chunk::Size;
            Ok(ChunkStep::Next)
        }
        Chunk::Trailers(seen) => {
            let Some(line) = take_line(buf, MAX_TRAILERS - seen, "trailers too long")? else {
                return Ok(ChunkStep::More);
            };
            if line.is_empty() {
                return Ok(ChunkStep::End);
            }
            // Trailers are dropped (fal sends none that a client needs).
            *chunk = Chunk::Trailers(seen + line.len() + 2);
            Ok(ChunkStep::Next)
        }
    }
}

/// A CRLF-ended line taken from the front of `buf` (without its CRLF); `None` if it has not all
/// arrived, an error if it is longer than `limit`.
fn take_line(
    buf: &mut BytesMut,
    limit: usize,
    too_long: &'static str,
) -> Result<Option<BytesMut>, FrameError> {
    let Some(at) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > limit {
            Err(FrameError::Chunk(too_long))
        } else {
            Ok(None)
        };
    };
    if at > limit {
        return Err(FrameError::Chunk(too_long));
    }
    if at == 0 || buf[at - 1] != b'\r' {
        return Err(FrameError::Chunk("line not ended by CRLF"));
    }
    let mut line = buf.split_to(at + 1);
    line.truncate(at - 1);
    Ok(Some(line))
}

/// The size on a chunk-size line (hex digits, then optional extensions after `;`).
fn chunk_size(line: &[u8]) -> Result<u64, FrameError> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let rest = line[digits..].trim_ascii_start();
    if digits == 0 || digits > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err(FrameError::Chunk("bad chunk size"));
    }
    line[..digits].iter().try_fold(0u64, |n, &d| {
        let v = (d as char)
            .to_digit(16)
            .ok_or(FrameError::Chunk("bad chunk size"))?;
        Ok(n * 16 + u64::from(v))
    })
}

#[cfg(test)]
mod tests;
