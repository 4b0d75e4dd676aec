//! The cap on requests handled at once. A request over the cap is shed at once with 503
//! `overloaded` (queueing would only turn overload into timeouts). The permit is held until the
//! response body ends, so long-lived status streams count for as long as they are open.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Takes a permit, or answers 503 `overloaded` at once.
pub fn admit(permits: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, ApiError> {
    permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded)
}

/// Holds `permit` until the response body has been sent (or dropped).
pub fn hold(response: Response, permit: OwnedSemaphorePermit) -> Response {
    response.map(|body| {
        Body::new(PermitBody {
            inner: body,
            _permit: permit,
        })
    })
}

/// A body that releases its permit when it is dropped (finished, or the client went away).
struct PermitBody {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for PermitBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
