//! Reading request bodies under the protective limits: a size cap, a silence timeout (a client
//! that stops sending is cut off), and a total deadline (a trickle cannot hold a connection).

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

use crate::error::ApiError;

/// The limits a body is read under.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// Longest silence between two chunks.
    pub idle: Duration,
    /// Longest the whole body may take.
    pub total: Duration,
}

/// Reads the whole body, or fails with 413 (too large) or 408 (too slow).
///
/// `declared` is the request's `Content-Length`, checked before anything is read.
pub async fn read(
    body: Body,
    declared: Option<u64>,
    limits: BodyLimits,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge {
        limit: limits.max_bytes,
    };
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(too_large);
    }
    let deadline = Instant::now() + limits.total;
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    loop {
        let idle_deadline = (Instant::now() + limits.idle).min(deadline);
        let frame = match timeout_at(idle_deadline, body.frame()).await {
            Err(_) => return Err(ApiError::BodyTimeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(
                    "body_read_failed",
                    format!("the request body could not be read: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        len += chunk.len();
        if len > limits.max_bytes {
            return Err(too_large);
        }
        // One chunk (the common case) is kept without copying.
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf =
                    BytesMut::with_capacity(declared.map_or(f.len() + chunk.len(), |d| d as usize));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}
