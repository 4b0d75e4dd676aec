//! The plain HTTP/1.1 request that `server::h1` serves itself, and the head of its answer.
//! Pure: bytes in, a decision or bytes out.
//!
//! A request is plain when nothing in its framing is open to interpretation: HTTP/1.1, an
//! origin-form target, a common method other than `HEAD`, at most one `Content-Length` and no
//! `Transfer-Encoding`, no `Expect`, `Upgrade` or `Connection` other than `keep-alive`, and a
//! head and body small enough to hold whole. Anything else, including every malformed head, is
//! handed to hyper with the connection's bytes untouched, so hyper answers it as it always has.

use http::header::{CONNECTION, DATE};
use http::{HeaderName, Method, StatusCode};
use std::ops::Range;

use crate::ascii::eq_ignore_case;
use crate::upstream::frame::{has_no_body, header_line, is_framing, list_has, parse_decimal};

/// The most headers a plain request has.
pub const MAX_HEADERS: usize = 64;
/// The longest plain request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest plain request body (a larger one is streamed by hyper).
pub const MAX_BODY: usize = 64 * 1024;

/// What the start of a connection's buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    /// Not yet a whole head, and not too long to become a plain one.
    Partial,
    /// A plain request whose head is complete (its body may still be arriving).
    Plain(Plain),
    /// Anything else: hyper serves the connection from here on.
    HandOff,
}

/// A plain request's head, as positions in the buffer it was read from.
#[derive(Debug, PartialEq, Eq)]
pub struct Plain {
    /// The head's length, blank line included.
    pub head_len: usize,
    /// The body's length (`Content-Length`, 0 without one).
    pub body_len: usize,
    /// The method.
    pub method: Method,
    /// The request target (`/path?query`).
    pub target: Range<usize>,
}

impl Plain {
    /// Head and body together.
    pub fn len(&self) -> usize {
        self.head_len + self.body_len
    }
}

/// Reads the request at the start of `buf`. On [`Shape::Plain`], `headers` holds each
/// header's name and the position of its value in `buf`, in order.
pub fn classify(buf: &[u8], headers: &mut Vec<(HeaderName, Range<usize>)>) -> Shape {
    headers.clear();
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Shape::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Shape::HandOff,
    };
    if head_len > MAX_HEAD || request.version != Some(1) {
        return Shape::HandOff;
    }
    let Some(method) = request.method.and_then(plain_method) else {
        return Shape::HandOff;
    };
    let Some(path) = request.path.filter(|p| p.starts_with('/')) else {
        return Shape::HandOff;
    };
    let mut body_len = None;
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        // Each name that matters is the only one of its length among them.
        let framing: &[u8] = match name.len() {
            14 => b"content-length",
            10 => b"connection",
            17 => b"transfer-encoding",
            6 => b"expect",
            7 => b"upgrade",
            2 => b"te",
            _ => b"",
        };
        if !framing.is_empty() && eq_ignore_case(name, framing) {
            match framing {
                b"content-length" => match (body_len, parse_decimal(header.value)) {
                    (None, Some(n)) if n <= MAX_BODY as u64 => body_len = Some(n as usize),
                    _ => return Shape::HandOff,
                },
                b"connection" if eq_ignore_case(header.value, b"keep-alive") => {}
                _ => return Shape::HandOff,
            }
        }
        let Ok(header_name) = HeaderName::from_bytes(name) else {
            return Shape::HandOff;
        };
        headers.push((header_name, offset(buf, header.value)));
    }
    Shape::Plain(Plain {
        head_len,
        body_len: body_len.unwrap_or(0),
        method,
        target: offset(buf, path.as_bytes()),
    })
}

/// The methods a plain request may have (`HEAD` answers have their own framing rules).
fn plain_method(method: &str) -> Option<Method> {
    Some(match method {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "DELETE" => Method::DELETE,
        "PATCH" => Method::PATCH,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    })
}

/// Where `part` (a slice of `buf`) lies in `buf`.
fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// How an answer's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (1xx, 204, 304).
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    /// The framing of an answer with `status` whose body is exactly `exact` bytes, if known.
    pub fn of(status: StatusCode, exact: Option<u64>) -> Self {
        if has_no_body(status) {
            Framing::None
        } else {
            exact.map_or(Framing::Chunked, Framing::Length)
        }
    }
}

/// Writes an answer's head to `out`: the status line, its headers except the framing and
/// hop-by-hop ones (`framing` decides those), `date` if it has none, and `Connection: close` if
/// `close` or if its own `Connection` header says so. Returns whether the connection closes
/// after it.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &http::HeaderMap,
    framing: Framing,
    date: &[u8],
    mut close: bool,
) -> bool {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (name, value) in headers {
        if name == CONNECTION {
            close |= list_has(value.as_bytes(), b"close");
        }
        if is_framing(name) {
            continue;
        }
        dated |= name == DATE;
        header_line(out, name.as_str(), value.as_bytes());
    }
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            let mut digits = itoa::Buffer::new();
            header_line(out, "content-length", digits.format(n).as_bytes());
        }
        Framing::Chunked => header_line(out, "transfer-encoding", b"chunked"),
    }
    if close {
        header_line(out, "connection", b"close");
    }
    if !dated {
        header_line(out, "date", date);
    }
    out.extend_from_slice(b"\r\n");
    close
}

/// The size line of a chunk of `len` bytes (`{len:x}\r\n`), written into `line`.
pub fn chunk_line(len: usize, line: &mut [u8; 18]) -> &[u8] {
    let mut at = line.len() - 2;
    line[at..].copy_from_slice(b"\r\n");
    let mut n = len;
    loop {
        at -= 1;
        line[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &line[at..]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
